/* SPDX-License-Identifier: Apache-2.0 */
/* The reconciler against a real redis-server and a recording backend (an in-memory cluster that
 * logs every call): it converges apps to their desired state, retries with backoff, repairs drift,
 * and never lets two reconcilers act on one app at once. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cluster.h"
#include "emp/spec.h"
#include "emp/timeutil.h"
#include "reconciler.h"
#include "redis_fixture.h"
#include "store.h"

/* ---- the recording backend ---- */

#define MAX_APPS 64

struct fake_app {
    char id[NAMES_UUID_LEN + 1];
    bool exists, stopped;
    int replicas;
    int ready;
    atomic_int in_call;
};

static struct {
    pthread_mutex_t lock;
    struct fake_app apps[MAX_APPS];
    char log[8192];
    int fail_deploys;    /* the next N deploys fail */
    bool slow_ready;     /* replicas become ready one status call after they were asked for */
    int call_sleep_ms;   /* each call takes this long */
    atomic_int overlaps; /* calls that found another call on the same app in progress */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct fake_app *fake_find(const char *id)
{
    for (int i = 0; i < MAX_APPS; i++)
        if (strcmp(fake.apps[i].id, id) == 0)
            return &fake.apps[i];
    for (int i = 0; i < MAX_APPS; i++)
        if (!fake.apps[i].id[0]) {
            snprintf(fake.apps[i].id, sizeof(fake.apps[i].id), "%s", id);
            return &fake.apps[i];
        }
    return NULL;
}

static struct fake_app *enter(const char *op, const struct cluster_app *app, int n)
{
    pthread_mutex_lock(&fake.lock);
    struct fake_app *a = fake_find(app->id);
    size_t used = strlen(fake.log);
    if (n >= 0)
        snprintf(fake.log + used, sizeof(fake.log) - used, "%s(%s,%d) ", op, app->name, n);
    else
        snprintf(fake.log + used, sizeof(fake.log) - used, "%s(%s) ", op, app->name);
    pthread_mutex_unlock(&fake.lock);
    if (atomic_fetch_add(&a->in_call, 1) > 0)
        atomic_fetch_add(&fake.overlaps, 1);
    if (fake.call_sleep_ms) {
        struct timespec t = {.tv_nsec = fake.call_sleep_ms * 1000000L};
        nanosleep(&t, NULL);
    }
    return a;
}

static int leave(struct fake_app *a, int r)
{
    atomic_fetch_sub(&a->in_call, 1);
    return r;
}

static int f_deploy(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct fake_app *a = enter("deploy", app, app->replicas);
    if (fake.fail_deploys > 0) {
        fake.fail_deploys--;
        return leave(a, emp_error_set(err, -EIO, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                      "image %s cannot be pulled", app->spec->docker_image));
    }
    a->exists = true;
    a->stopped = false;
    a->replicas = app->replicas;
    a->ready = fake.slow_ready ? 0 : app->replicas;
    return leave(a, 0);
}

static int f_scale(void *state, const struct cluster_app *app, int replicas, struct emp_error *err)
{
    struct fake_app *a = enter("scale", app, replicas);
    a->replicas = replicas;
    a->ready = fake.slow_ready ? a->ready : replicas;
    return leave(a, 0);
}

static int f_stop(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct fake_app *a = enter("stop", app, -1);
    a->stopped = true;
    a->ready = 0;
    return leave(a, 0);
}

static int f_start(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct fake_app *a = enter("start", app, -1);
    a->stopped = false;
    a->ready = a->replicas;
    return leave(a, 0);
}

static int f_remove(void *state, const struct cluster_app *app, bool purge, struct emp_error *err)
{
    struct fake_app *a = enter("remove", app, -1);
    a->exists = false;
    return leave(a, 0);
}

static int f_status(void *state, const struct cluster_app *app, struct cluster_status *st,
                    struct emp_error *err)
{
    pthread_mutex_lock(&fake.lock);
    struct fake_app *a = fake_find(app->id);
    pthread_mutex_unlock(&fake.lock);
    st->exists = a->exists;
    st->stopped = a->stopped;
    st->replicas_desired = a->stopped ? 0 : a->replicas;
    st->replicas_ready = a->ready;
    if (a->exists && !a->stopped)
        snprintf(st->address, sizeof(st->address), "127.0.0.1:%d", 30000 + (int)(a - fake.apps));
    /* slow_ready: what was asked is ready by the next look */
    if (fake.slow_ready && a->exists && !a->stopped)
        a->ready = a->replicas;
    return 0;
}

static const struct cluster_backend_ops recording_ops = {
    .name = "recording",
    .caps = CLUSTER_CAP_STATEFUL,
    .deploy = f_deploy,
    .scale = f_scale,
    .stop = f_stop,
    .start = f_start,
    .remove = f_remove,
    .status = f_status,
};

/* ---- fixtures ---- */

struct ctx {
    struct redis_fixture redis;
    struct store *store;
    struct cluster *cluster;
    struct recon *recon;
};

static struct recon_config fast_config(int workers)
{
    struct recon_config config;
    recon_config_defaults(&config);
    config.workers = workers;
    config.converge_ms = 0;
    config.backoff_min_ms = 200;
    config.backoff_max_ms = 800;
    config.poll_ms = 10;
    return config;
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct emp_error err = {0};
    memset(fake.apps, 0, sizeof(fake.apps));
    fake.log[0] = '\0';
    fake.fail_deploys = 0;
    fake.slow_ready = false;
    fake.call_sleep_ms = 0;
    atomic_store(&fake.overlaps, 0);
    if (redis_fixture_start(&c->redis) < 0 || store_open(c->redis.url, &c->store, &err) < 0 ||
        cluster_open_ops(&recording_ops, &(struct cluster_config){0}, &c->cluster, &err) < 0)
        return -1;
    struct recon_config config = fast_config(0);
    if (recon_start(c->store, c->cluster, &config, &c->recon, &err) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    recon_stop(c->recon);
    cluster_close(c->cluster);
    store_close(c->store);
    redis_fixture_stop(&c->redis);
    free(c);
    return 0;
}

static void create_app(struct store *store, int n, const char *name, int replicas)
{
    char spec_text[256];
    snprintf(spec_text, sizeof(spec_text),
             "{\"name\":\"%s\",\"docker_image\":\"img/%s:1\",\"port\":80,"
             "\"replicas\":{\"min\":1,\"max\":10,\"initial\":%d}}",
             name, name, replicas);
    struct emp_spec *spec;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(spec_parse(spec_text, strlen(spec_text), &spec, &errs), 0);
    struct store_app app = {0};
    snprintf(app.id, sizeof(app.id), "00000000-0000-4000-8000-%012d", n);
    snprintf(app.owner, sizeof(app.owner), "owner");
    snprintf(app.name, sizeof(app.name), "%s", name);
    app.spec_json = spec_to_json(spec, SPEC_JSON_DEFAULT);
    app.created_ms = app.updated_ms = time_now_ms();
    app.desired = DESIRED_RUNNING;
    app.desired_replicas = replicas;
    app.generation = 1;
    app.state = APP_DEPLOYING;
    struct emp_error err = {0};
    assert_int_equal(store_app_create(store, &app, 1000, &err), 0);
    free(app.spec_json);
    spec_free(spec);
}

static struct store_app *get(struct ctx *c, int n)
{
    char id[NAMES_UUID_LEN + 1];
    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", n);
    struct store_app *app = NULL;
    struct emp_error err = {0};
    if (store_app_get(c->store, id, &app, &err) < 0)
        return NULL;
    return app;
}

static void change(struct ctx *c, int n, int desired, int replicas)
{
    struct store_app *app = get(c, n);
    struct store_app_change ch = {.desired = desired,
                                  .desired_replicas = replicas,
                                  .state = desired == DESIRED_REMOVED ? APP_REMOVING : -1};
    struct emp_error err = {0};
    assert_int_equal(store_app_update(c->store, app->id, app->generation, &ch, NULL, &err), 0);
    store_app_free(app);
}

/* Runs the reconciler until nothing is due. Returns how many apps it looked at. */
static int drain(struct ctx *c)
{
    int done = 0;
    while (recon_run_once(c->recon) == 0)
        done++;
    return done;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- tests ---- */

static void test_deploy_scale_stop_start_remove(void **state)
{
    struct ctx *c = *state;
    create_app(c->store, 1, "web", 2);
    assert_int_equal(drain(c), 1);
    assert_string_equal(fake.log, "deploy(web,2) ");
    struct store_app *app = get(c, 1);
    assert_int_equal(app->state, APP_RUNNING);
    assert_int_equal(app->ready_replicas, 2);
    assert_int_equal(app->observed_generation, 1);
    assert_true(app->deployed);
    assert_non_null(app->address);
    assert_null(app->reason);
    store_app_free(app);

    /* nothing to do until something changes */
    assert_int_equal(drain(c), 0);

    change(c, 1, -1, 5);
    assert_int_equal(drain(c), 1);
    assert_string_equal(fake.log, "deploy(web,2) scale(web,5) ");
    app = get(c, 1);
    assert_int_equal(app->ready_replicas, 5);
    assert_int_equal(app->observed_generation, 2);
    store_app_free(app);

    change(c, 1, DESIRED_STOPPED, -1);
    drain(c);
    app = get(c, 1);
    assert_int_equal(app->state, APP_STOPPED);
    assert_int_equal(app->ready_replicas, 0);
    assert_null(app->address);
    store_app_free(app);

    /* start brings it back with the count it had */
    change(c, 1, DESIRED_RUNNING, -1);
    drain(c);
    app = get(c, 1);
    assert_int_equal(app->state, APP_RUNNING);
    assert_int_equal(app->ready_replicas, 5);
    store_app_free(app);
    assert_string_equal(fake.log, "deploy(web,2) scale(web,5) stop(web) start(web) ");

    change(c, 1, DESIRED_REMOVED, -1);
    drain(c);
    assert_null(get(c, 1));
    assert_false(fake_find("00000000-0000-4000-8000-000000000001")->exists);
}

/* Removed before it was ever deployed: the backend is told anyway (it may hold a reservation). */
static void test_remove_before_deploy(void **state)
{
    struct ctx *c = *state;
    create_app(c->store, 6, "early", 1);
    change(c, 6, DESIRED_REMOVED, -1);
    drain(c);
    assert_null(get(c, 6));
    assert_string_equal(fake.log, "remove(early) ");
}

static void test_converging_shows_progress(void **state)
{
    struct ctx *c = *state;
    fake.slow_ready = true;
    create_app(c->store, 2, "slow", 3);
    assert_int_equal(recon_run_once(c->recon), 0);
    struct store_app *app = get(c, 2);
    assert_int_equal(app->state, APP_DEPLOYING);
    assert_string_equal(app->reason, "0 of 3 replicas ready");
    store_app_free(app);
    /* converging apps come due again soon (converge_ms) */
    assert_int_equal(recon_run_once(c->recon), 0);
    app = get(c, 2);
    assert_int_equal(app->state, APP_RUNNING);
    assert_null(app->reason);
    store_app_free(app);
}

static void test_failure_backoff_and_recovery(void **state)
{
    struct ctx *c = *state;
    fake.fail_deploys = 2;
    create_app(c->store, 3, "bad", 1);
    assert_int_equal(drain(c), 1);
    struct store_app *app = get(c, 3);
    assert_int_equal(app->state, APP_FAILED);
    assert_string_equal(app->reason, "image img/bad:1 cannot be pulled");
    assert_int_equal(app->failures, 1);
    store_app_free(app);
    /* not retried at once ... */
    assert_int_equal(drain(c), 0);
    int64_t due;
    struct emp_error err = {0};
    assert_int_equal(store_recon_next_due(c->store, &due, &err), 0);
    int64_t wait = due - time_now_ms();
    assert_true(wait > 100 && wait <= 220);
    /* ... but after the backoff, which doubles */
    sleep_ms((int)wait + 10);
    assert_int_equal(drain(c), 1);
    app = get(c, 3);
    assert_int_equal(app->failures, 2);
    store_app_free(app);
    assert_int_equal(store_recon_next_due(c->store, &due, &err), 0);
    wait = due - time_now_ms();
    assert_true(wait > 300 && wait <= 440);
    sleep_ms((int)wait + 10);
    assert_int_equal(drain(c), 1);
    app = get(c, 3);
    assert_int_equal(app->state, APP_RUNNING);
    assert_int_equal(app->failures, 0);
    assert_null(app->reason);
    store_app_free(app);
    assert_string_equal(fake.log, "deploy(bad,1) deploy(bad,1) deploy(bad,1) ");
}

static void test_repairs_drift(void **state)
{
    struct ctx *c = *state;
    struct recon_config config = fast_config(0);
    config.resync_ms = 100;
    struct recon *r;
    struct emp_error err = {0};
    assert_int_equal(recon_start(c->store, c->cluster, &config, &r, &err), 0);
    create_app(c->store, 4, "drifty", 2);
    while (recon_run_once(r) == 0)
        ;
    /* someone deletes the app behind EMP's back */
    fake_find("00000000-0000-4000-8000-000000000004")->exists = false;
    sleep_ms(150);
    while (recon_run_once(r) == 0)
        ;
    assert_string_equal(fake.log, "deploy(drifty,2) deploy(drifty,2) ");
    recon_stop(r);
}

static void test_unbuilt_backend(void **state)
{
    struct ctx *c = *state;
    struct cluster *unbuilt;
    struct emp_error err = {0};
    assert_int_equal(cluster_open_unavailable("kubernetes", &unbuilt), 0);
    assert_false(cluster_available(unbuilt));
    struct recon_config config = fast_config(0);
    struct recon *r;
    assert_int_equal(recon_start(c->store, unbuilt, &config, &r, &err), 0);
    create_app(c->store, 5, "nowhere", 1);
    assert_int_equal(recon_run_once(r), 0);
    struct store_app *app = get(c, 5);
    assert_int_equal(app->state, APP_FAILED);
    assert_non_null(strstr(app->reason, "cluster backend 'kubernetes' is not available"));
    assert_false(app->deployed);
    store_app_free(app);
    /* nothing can exist in a cluster that was never reached: remove just forgets the app */
    change(c, 5, DESIRED_REMOVED, -1);
    assert_int_equal(recon_run_once(r), 0);
    assert_null(get(c, 5));
    recon_stop(r);
    cluster_close(unbuilt);
    /* an unknown backend name is refused with the known ones */
    emp_error_clear(&err);
    assert_int_equal(cluster_open("docker", &(struct cluster_config){0}, &unbuilt, &err), -EINVAL);
    assert_non_null(strstr(err.message, "local, kubernetes"));
}

static void test_one_reconciler_per_app(void **state)
{
    struct ctx *c = *state;
    fake.call_sleep_ms = 3;
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof(name), "app%d", i);
        create_app(c->store, 100 + i, name, 1);
    }
    /* two emp-servers on one Redis, two workers each */
    struct recon_config config = fast_config(2);
    struct recon *a, *b;
    struct emp_error err = {0};
    assert_int_equal(recon_start(c->store, c->cluster, &config, &a, &err), 0);
    assert_int_equal(recon_start(c->store, c->cluster, &config, &b, &err), 0);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 12; i++)
            change(c, 100 + i, -1, 2 + round);
        recon_wake(a);
        recon_wake(b);
        sleep_ms(150);
    }
    int64_t deadline = time_mono_ms() + 5000;
    for (int i = 0; i < 12; i++) {
        struct store_app *app;
        while ((app = get(c, 100 + i)) && app->observed_generation != app->generation &&
               time_mono_ms() < deadline) {
            store_app_free(app);
            sleep_ms(20);
        }
        assert_non_null(app);
        assert_int_equal(app->observed_generation, app->generation);
        assert_int_equal(app->ready_replicas, 6);
        store_app_free(app);
    }
    recon_stop(a);
    recon_stop(b);
    assert_int_equal(atomic_load(&fake.overlaps), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deploy_scale_stop_start_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_before_deploy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_converging_shows_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_backoff_and_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repairs_drift, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unbuilt_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_reconciler_per_app, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
