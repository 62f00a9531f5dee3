/* SPDX-License-Identifier: Apache-2.0 */
/* Level-triggered reconciliation: for one app at a time, read the desired state, ask the backend
 * what it holds, act on the difference, record what was seen. The schedule (when to look at each
 * app next) and the leases live in the store, so work survives restarts and is shared by every
 * emp-server on one Redis. Backend calls happen only here, never on a request thread. */
#include "reconciler.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "emp/log.h"
#include "emp/names.h"
#include "emp/spec.h"
#include "emp/timeutil.h"

#define HOLDER_MAX 128
#define URGENT_MAX 256

struct recon {
    struct store *store;
    struct cluster *cluster;
    struct recon_config config;
    char holder[HOLDER_MAX];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    unsigned pending_wakes;
    /* apps a backend said changed by themselves, to be looked at at once (bounded: when full,
     * the converge polling still finds them) */
    char urgent[URGENT_MAX][NAMES_UUID_LEN + 1];
    size_t urgent_count;
    bool expedite_all; /* every app is due now, once the store can be told */
    /* the single-node lease: reconciling waits while it is not held */
    char node[HOLDER_MAX];
    bool node_held;
    int64_t node_renew_ms; /* monotonic time of the next renewal */
    int64_t node_valid_ms; /* held until then without a renewal */
    bool node_lost_logged;
    pthread_t *threads;
    int nthreads;
    int64_t store_error_logged_ms;
};

void recon_config_defaults(struct recon_config *config)
{
    *config = (struct recon_config){
        .workers = 2,
        .resync_ms = 60000,
        .converge_ms = 500,
        .backoff_min_ms = 1000,
        .backoff_max_ms = 60000,
        .lease_ms = 30000,
        .poll_ms = 250,
        .node_ttl_ms = 15000,
    };
}

const char *recon_holder(const struct recon *recon)
{
    return recon->holder;
}

static int64_t backoff_ms(const struct recon *r, int failures)
{
    int64_t delay = r->config.backoff_min_ms;
    for (int i = 1; i < failures && delay < r->config.backoff_max_ms; i++)
        delay *= 2;
    if (delay > r->config.backoff_max_ms)
        delay = r->config.backoff_max_ms;
    /* up to 10% jitter, so that apps failing together do not retry together */
    unsigned jitter = 0;
    if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) != sizeof(jitter))
        jitter = 0;
    return delay + (int64_t)(jitter % (unsigned)(delay / 10 + 1));
}

static void log_transition(const struct store_app *app, const struct store_app_observed *obs)
{
    if (app->state == obs->state &&
        ((!app->reason && !obs->reason) ||
         (app->reason && obs->reason && strcmp(app->reason, obs->reason) == 0)))
        return;
    char reason[600];
    enum log_level level = obs->state == APP_FAILED ? LOG_WARN : LOG_INFO;
    log_msg(level, "app state changed", "app=%s owner=%s name=%s from=%s to=%s ready=%d reason=%s",
            app->id, app->owner, app->name, app_state_name(app->state), app_state_name(obs->state),
            obs->ready_replicas, log_quote(reason, sizeof(reason), obs->reason ? obs->reason : ""));
}

/* The desired state is DESIRED_RUNNING: bring the backend there. Returns when to look next.
 * reason and address (CLUSTER_REASON_MAX and CLUSTER_ADDRESS_MAX bytes) hold what obs points to. */
/* ---- references to other apps in envs ---- */

struct ref_ctx {
    struct recon *r;
    const struct cluster_app *self;
};

/* spec_ref_resolve_fn: the address of the app name of the same owner, as the backend gives it. */
static int resolve_ref(void *arg, const char *name, char *buf, size_t size, struct emp_error *err)
{
    struct ref_ctx *ctx = arg;
    if (strcmp(name, ctx->self->name) == 0)
        return cluster_address_of(ctx->r->cluster, ctx->self, buf, size, err);
    char id[NAMES_UUID_LEN + 1];
    struct store_app *other = NULL;
    struct emp_spec *spec = NULL;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    int rc = store_app_find(ctx->r->store, ctx->self->owner, name, id, err);
    if (rc == 0)
        rc = store_app_get(ctx->r->store, id, &other, err);
    if (rc == -ENOENT || (rc == 0 && other->desired == DESIRED_REMOVED)) {
        rc = emp_error_set(err, -ENOENT, EMP_ERR_INVALID_FIELD, NULL,
                           "its envs refer to ${app:%s}, but there is no app '%s' any more: deploy "
                           "it again, or deploy this app without the reference",
                           name, name);
    } else if (rc == 0 &&
               spec_parse(other->spec_json, strlen(other->spec_json), &spec, &errs) < 0) {
        rc = emp_error_set(err, -EINVAL, EMP_ERR_INTERNAL, NULL,
                           "the stored spec of app '%s', which its envs refer to, does not parse",
                           name);
    } else if (rc == 0) {
        struct cluster_app capp = {
            .id = other->id,
            .owner = other->owner,
            .name = other->name,
            .spec = spec,
            .replicas = other->desired_replicas,
            .binding = other->binding,
        };
        rc = cluster_address_of(ctx->r->cluster, &capp, buf, size, err);
    }
    spec_free(spec);
    store_app_free(other);
    return rc;
}

/* Replaces every ${app:NAME} in spec's env values by that app's address. */
static int resolve_refs(struct recon *r, const struct cluster_app *capp, struct emp_spec *spec,
                        struct emp_error *err)
{
    struct ref_ctx ctx = {.r = r, .self = capp};
    for (size_t i = 0; i < spec->envs_len; i++) {
        if (!strstr(spec->envs[i].value, SPEC_REF_PREFIX))
            continue;
        char *value;
        int rc = spec_ref_expand(spec->envs[i].value, resolve_ref, &ctx, &value, err);
        if (rc < 0)
            return rc;
        free(spec->envs[i].value);
        spec->envs[i].value = value;
    }
    return 0;
}

static int64_t converge_running(struct recon *r, const struct store_app *app,
                                const struct cluster_app *capp, struct emp_spec *spec,
                                struct store_app_observed *obs, char *reason, char *address,
                                char *last_exit, char *binding)
{
    struct emp_error err = {0};
    if (!cluster_available(r->cluster)) {
        cluster_deploy(r->cluster, capp, &err); /* only for its message */
        goto failed;
    }
    if (!app->deployed) {
        /* recorded before the first call, so that a crash in between cannot leak cluster objects
         * that a later remove would not know to delete */
        obs->deployed = true;
        if (store_app_set_observed(r->store, app->id, obs, &err) < 0)
            goto retry;
    }
    struct cluster_status st = {0};
    if (cluster_status(r->cluster, capp, &st, &err) < 0)
        goto retry;
    int rc = 0;
    /* what replicas start with: references to other apps resolved now (a running app keeps the
     * addresses it was started with) */
    if ((!st.exists || st.stopped) && resolve_refs(r, capp, spec, &err) < 0) {
        if (err.code != EMP_ERR_INVALID_FIELD)
            goto retry;
        goto failed;
    }
    if (!st.exists)
        rc = cluster_deploy(r->cluster, capp, &err);
    else if (st.stopped)
        rc = cluster_start(r->cluster, capp, &err);
    else if (st.replicas_desired != capp->replicas)
        rc = cluster_scale(r->cluster, capp, capp->replicas, &err);
    if (rc < 0)
        goto failed;
    if (!st.exists || st.stopped || st.replicas_desired != capp->replicas) {
        memset(&st, 0, sizeof(st));
        if (cluster_status(r->cluster, capp, &st, &err) < 0)
            goto retry;
    }
    obs->ready_replicas = st.replicas_ready;
    obs->restarts = st.restarts;
    if (st.binding[0]) {
        snprintf(binding, CLUSTER_BINDING_MAX, "%s", st.binding);
        obs->binding = binding;
    }
    snprintf(last_exit, CLUSTER_REASON_MAX, "%s", st.last_exit);
    obs->last_exit = last_exit[0] ? last_exit : NULL;
    snprintf(address, CLUSTER_ADDRESS_MAX, "%s", st.address);
    obs->address = address[0] ? address : NULL;
    if (st.failed) {
        snprintf(reason, CLUSTER_REASON_MAX, "%s", st.reason[0] ? st.reason : "the app fails");
        obs->reason = reason;
        obs->state = APP_FAILED;
        obs->failures = app->failures + 1;
        return backoff_ms(r, obs->failures);
    }
    obs->failures = 0;
    if (st.exists && !st.stopped && st.replicas_desired == capp->replicas &&
        st.replicas_ready >= capp->replicas) {
        obs->state = APP_RUNNING;
        obs->reason = NULL;
        return r->config.resync_ms;
    }
    /* on its way: an app that was running stays running while it scales */
    obs->state = app->state == APP_RUNNING && st.replicas_ready > 0 ? APP_RUNNING : APP_DEPLOYING;
    if (st.reason[0]) {
        snprintf(reason, CLUSTER_REASON_MAX, "%s", st.reason);
        obs->reason = reason;
    } else {
        snprintf(reason, CLUSTER_REASON_MAX, "%d of %d replicas ready", st.replicas_ready,
                 capp->replicas);
        obs->reason = reason;
    }
    return r->config.converge_ms;

failed:
    snprintf(reason, CLUSTER_REASON_MAX, "%s", err.message);
    obs->reason = reason;
    obs->state = APP_FAILED;
    obs->ready_replicas = 0;
    obs->failures = app->failures + 1;
    return backoff_ms(r, obs->failures);
retry:
    /* the cluster (or the store) could not be asked: keep the state, say why, try again */
    snprintf(reason, CLUSTER_REASON_MAX, "%s", err.message);
    obs->reason = reason;
    obs->failures = app->failures + 1;
    return backoff_ms(r, obs->failures);
}

/* Reconciles the app whose lease this thread holds. */
static void reconcile(struct recon *r, const char *id)
{
    struct emp_error err = {0};
    struct store_app *app = NULL;
    struct emp_spec *spec = NULL;
    int rc = store_app_get(r->store, id, &app, &err);
    if (rc == -ENOENT) {
        store_recon_release(r->store, id, r->holder, 0, 0, NULL);
        return;
    }
    if (rc < 0)
        return; /* the lease expires and the app comes due again */

    char reason[CLUSTER_REASON_MAX] = "";
    char address[CLUSTER_ADDRESS_MAX] = "";
    char last_exit[CLUSTER_REASON_MAX] = "";
    char binding[CLUSTER_BINDING_MAX] = "";
    struct store_app_observed obs = {
        .state = app->state,
        .reason = app->reason,
        .address = app->address,
        .ready_replicas = app->ready_replicas,
        .observed_generation = app->generation,
        .deployed = app->deployed,
        .failures = app->failures,
        .restarts = app->restarts,
        .last_exit = app->last_exit,
        .binding = app->binding,
    };
    int64_t next_ms;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    if (spec_parse(app->spec_json, strlen(app->spec_json), &spec, &errs) < 0) {
        snprintf(reason, sizeof(reason), "the stored spec does not parse: %s",
                 errs.count ? errs.items[0].message : "unknown problem");
        obs.state = APP_FAILED;
        obs.reason = reason;
        next_ms = r->config.backoff_max_ms;
        goto record;
    }
    struct cluster_app capp = {
        .id = app->id,
        .owner = app->owner,
        .name = app->name,
        .spec = spec,
        .replicas = app->desired_replicas,
        .binding = app->binding,
    };
    switch (app->desired) {
    case DESIRED_REMOVED:
        /* an app never deployed is removed from the backend too (it may hold something for it,
         * such as the gateway port that another app's ${app:NAME} reserved); one that a backend
         * not built into this binary never saw only loses its records */
        if ((app->deployed || cluster_available(r->cluster)) &&
            cluster_remove(r->cluster, &capp, app->purge, &err) < 0) {
            snprintf(reason, sizeof(reason), "%s", err.message);
            obs.state = APP_REMOVING;
            obs.reason = reason;
            obs.failures = app->failures + 1;
            next_ms = backoff_ms(r, obs.failures);
            break;
        }
        rc = store_app_delete(r->store, app->id, &err);
        if (rc == 0 || rc == -ENOENT) {
            log_msg(LOG_INFO, "app removed", "app=%s owner=%s name=%s", app->id, app->owner,
                    app->name);
            goto out;
        }
        next_ms = r->config.backoff_min_ms;
        break;
    case DESIRED_STOPPED:
        if (app->deployed && cluster_stop(r->cluster, &capp, &err) < 0) {
            snprintf(reason, sizeof(reason), "%s", err.message);
            obs.reason = reason;
            obs.failures = app->failures + 1;
            next_ms = backoff_ms(r, obs.failures);
            break;
        }
        obs.state = APP_STOPPED;
        obs.reason = NULL;
        obs.address = NULL;
        obs.ready_replicas = 0;
        obs.failures = 0;
        next_ms = r->config.resync_ms;
        break;
    case DESIRED_RUNNING:
    default:
        next_ms = converge_running(r, app, &capp, spec, &obs, reason, address, last_exit, binding);
        break;
    }
record:
    log_transition(app, &obs);
    if (store_app_set_observed(r->store, app->id, &obs, &err) < 0 && emp_error_is_set(&err))
        log_msg(LOG_WARN, "cannot record app status", "app=%s", app->id);
    store_recon_release(r->store, app->id, r->holder, time_now_ms() + next_ms, app->generation,
                        NULL);
out:
    spec_free(spec);
    store_app_free(app);
}

int recon_run_once(struct recon *recon)
{
    char id[NAMES_UUID_LEN + 1];
    struct emp_error err = {0};
    int r = store_recon_claim(recon->store, recon->holder, time_now_ms(), recon->config.lease_ms,
                              id, &err);
    if (r < 0)
        return r;
    reconcile(recon, id);
    return 0;
}

/* Makes the apps backends reported due now. */
static void schedule_urgent(struct recon *r)
{
    char ids[URGENT_MAX][NAMES_UUID_LEN + 1];
    pthread_mutex_lock(&r->lock);
    size_t n = r->urgent_count;
    memcpy(ids, r->urgent, n * sizeof(ids[0]));
    r->urgent_count = 0;
    pthread_mutex_unlock(&r->lock);
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++)
        store_recon_expedite(r->store, ids[i], now, NULL);
}

void recon_app_changed(void *ctx, const char *app_id)
{
    struct recon *r = ctx;
    if (!r || !names_is_uuid(app_id))
        return;
    pthread_mutex_lock(&r->lock);
    bool known = false;
    for (size_t i = 0; i < r->urgent_count && !known; i++)
        known = strcmp(r->urgent[i], app_id) == 0;
    if (!known && r->urgent_count < URGENT_MAX)
        memcpy(r->urgent[r->urgent_count++], app_id, NAMES_UUID_LEN + 1);
    if (r->pending_wakes < (unsigned)r->nthreads)
        r->pending_wakes++;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* Renews the single-node lease when due. Returns whether this emp-server may reconcile. */
static bool node_ok(struct recon *r)
{
    if (!r->node[0])
        return true;
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&r->lock);
    bool due = now >= r->node_renew_ms;
    if (due)
        r->node_renew_ms = now + 1000; /* one renewal at a time; a failed one is retried soon */
    pthread_mutex_unlock(&r->lock);
    if (due) {
        char holder[HOLDER_MAX] = "";
        int rc = store_node_claim(r->store, "local", r->node, r->config.node_ttl_ms, holder,
                                  sizeof(holder), NULL);
        pthread_mutex_lock(&r->lock);
        if (rc == 0) {
            r->node_held = true;
            r->node_valid_ms = now + r->config.node_ttl_ms;
            r->node_renew_ms = now + r->config.node_ttl_ms / 3;
            r->node_lost_logged = false;
        } else if (rc == -EBUSY) {
            r->node_held = false;
            if (!r->node_lost_logged)
                log_msg(LOG_ERROR,
                        "another emp-server reconciles this Redis' apps on its own host: this one "
                        "stops reconciling until that one is gone",
                        "other=%s", holder);
            r->node_lost_logged = true;
        }
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_lock(&r->lock);
    bool ok = r->node_held && now < r->node_valid_ms;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static void *worker(void *arg)
{
    struct recon *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        bool stopping = r->stopping;
        bool urgent = r->urgent_count > 0;
        bool all = r->expedite_all;
        pthread_mutex_unlock(&r->lock);
        if (stopping)
            break;
        if (!node_ok(r)) {
            struct timespec pause = {.tv_nsec = 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (all && store_recon_expedite_all(r->store, time_now_ms(), NULL) == 0) {
            pthread_mutex_lock(&r->lock);
            r->expedite_all = false;
            pthread_mutex_unlock(&r->lock);
        }
        if (urgent)
            schedule_urgent(r);
        int rc = recon_run_once(r);
        if (rc == 0)
            continue;
        int64_t wait_ms = r->config.poll_ms;
        if (rc != -ENOENT) {
            /* the store is unreachable: say so once a minute, not per attempt */
            int64_t now = time_mono_ms();
            pthread_mutex_lock(&r->lock);
            bool say = now - r->store_error_logged_ms > 60000 || r->store_error_logged_ms == 0;
            if (say)
                r->store_error_logged_ms = now;
            pthread_mutex_unlock(&r->lock);
            if (say)
                log_msg(LOG_WARN, "reconciler cannot reach the store, retrying", "store=%s",
                        store_display_url(r->store));
            wait_ms = 1000;
        }
        struct timespec deadline = time_deadline(wait_ms);
        pthread_mutex_lock(&r->lock);
        while (!r->stopping && r->pending_wakes == 0)
            if (pthread_cond_timedwait(&r->wake, &r->lock, &deadline) != 0)
                break;
        if (r->pending_wakes > 0)
            r->pending_wakes--;
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

void recon_wake(void *ctx)
{
    struct recon *r = ctx;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    if (r->pending_wakes < (unsigned)r->nthreads)
        r->pending_wakes++;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

int recon_start(struct store *store, struct cluster *cluster, const struct recon_config *config,
                struct recon **ret_recon, struct emp_error *err)
{
    struct recon *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->store = store;
    r->cluster = cluster;
    r->config = *config;
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    unsigned nonce = 0;
    if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
        nonce = (unsigned)time(NULL);
    snprintf(r->holder, sizeof(r->holder), "%s:%d:%08x", host, (int)getpid(), nonce);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    /* a backend whose apps ended with the last emp-server gets them all back at once */
    r->expedite_all = (cluster_caps(cluster) & CLUSTER_CAP_EPHEMERAL) != 0;
    if ((cluster_caps(cluster) & CLUSTER_CAP_SINGLE_NODE) && config->workers > 0 && config->node) {
        snprintf(r->node, sizeof(r->node), "%s", config->node);
        char holder[HOLDER_MAX] = "";
        int rc = store_node_claim(store, "local", r->node, config->node_ttl_ms, holder,
                                  sizeof(holder), NULL);
        if (rc == -EBUSY) {
            int e = emp_error_set(err, -EBUSY, EMP_ERR_CONFLICT, "cluster",
                                  "another emp-server (%s) runs the apps of this Redis on the "
                                  "local backend, whose replicas are its own processes: stop it, "
                                  "start this one with --reconcile-workers 0 to serve only the "
                                  "API, or give it another Redis",
                                  holder);
            pthread_mutex_destroy(&r->lock);
            pthread_cond_destroy(&r->wake);
            free(r);
            return e;
        }
        if (rc == 0) {
            r->node_held = true;
            r->node_valid_ms = time_mono_ms() + config->node_ttl_ms;
            r->node_renew_ms = time_mono_ms() + config->node_ttl_ms / 3;
        }
    }
    if (config->workers > 0) {
        r->threads = calloc((size_t)config->workers, sizeof(*r->threads));
        if (!r->threads) {
            recon_stop(r);
            return -ENOMEM;
        }
    }
    for (int i = 0; i < config->workers; i++) {
        if (pthread_create(&r->threads[i], NULL, worker, r) != 0) {
            recon_stop(r);
            return emp_error_set(err, -EAGAIN, EMP_ERR_INTERNAL, NULL,
                                 "cannot start reconciler thread %d", i);
        }
        r->nthreads++;
    }
    *ret_recon = r;
    return 0;
}

void recon_stop(struct recon *recon)
{
    if (!recon)
        return;
    pthread_mutex_lock(&recon->lock);
    recon->stopping = true;
    pthread_cond_broadcast(&recon->wake);
    pthread_mutex_unlock(&recon->lock);
    for (int i = 0; i < recon->nthreads; i++)
        pthread_join(recon->threads[i], NULL);
    if (recon->node[0] && recon->node_held)
        store_node_release(recon->store, "local", recon->node, NULL);
    free(recon->threads);
    pthread_mutex_destroy(&recon->lock);
    pthread_cond_destroy(&recon->wake);
    free(recon);
}
