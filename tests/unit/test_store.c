/* SPDX-License-Identifier: Apache-2.0 */
/* The store against a real redis-server: records, indexes, optimistic updates, the reconciler's
 * schedule and leases, and recovery when Redis goes away and comes back. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "emp/timeutil.h"
#include "redis_fixture.h"
#include "aggregate.h"
#include "store.h"
#include "trace_fixture.h"

struct ctx {
    struct redis_fixture redis;
    struct store *store;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    if (redis_fixture_start(&c->redis) < 0)
        return -1;
    struct emp_error err = {0};
    if (store_open(c->redis.url, &c->store, &err) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    store_close(c->store);
    redis_fixture_stop(&c->redis);
    free(c);
    return 0;
}

static const char spec_json[] = "{\"name\":\"x\",\"command\":[\"x\"],\"port\":80}";

static void make_app(struct store_app *app, const char *id, const char *owner, const char *name)
{
    memset(app, 0, sizeof(*app));
    snprintf(app->id, sizeof(app->id), "%s", id);
    snprintf(app->owner, sizeof(app->owner), "%s", owner);
    snprintf(app->name, sizeof(app->name), "%s", name);
    app->spec_json = (char *)spec_json;
    app->created_ms = app->updated_ms = time_now_ms();
    app->desired = DESIRED_RUNNING;
    app->desired_replicas = 2;
    app->generation = 1;
    app->state = APP_DEPLOYING;
}

static void id_for(int n, char *buf)
{
    snprintf(buf, NAMES_UUID_LEN + 1, "00000000-0000-4000-8000-%012d", n);
}

static void test_urls(void **state)
{
    struct store *s = NULL;
    struct emp_error err = {0};
    assert_int_equal(store_open("http://localhost", &s, &err), -EINVAL);
    assert_non_null(strstr(err.message, "redis://"));
    emp_error_clear(&err);
    assert_int_equal(store_open("redis://host:99999", &s, &err), -EINVAL);
    assert_non_null(strstr(err.message, "port"));
    emp_error_clear(&err);
    assert_int_equal(store_open("unix://relative/path", &s, &err), -EINVAL);
    emp_error_clear(&err);
    assert_int_equal(store_open("redis://:hunter2@127.0.0.1:6390/3", &s, &err), 0);
    /* the password never shows */
    assert_null(strstr(store_display_url(s), "hunter2"));
    assert_string_equal(store_display_url(s), "redis://:***@127.0.0.1:6390/3");
    store_close(s);
}

static void test_users_and_sessions(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct store_user u = {
        .username = "alice", .password_hash = "$argon2id$v=19$fake", .created_ms = 1234};
    assert_int_equal(store_user_create(c->store, &u, &err), 0);
    assert_int_equal(store_user_create(c->store, &u, &err), -EEXIST);
    struct store_user got;
    assert_int_equal(store_user_get(c->store, "alice", &got, &err), 0);
    assert_string_equal(got.password_hash, u.password_hash);
    assert_int_equal(got.created_ms, 1234);
    assert_int_equal(store_user_get(c->store, "bob", &got, &err), -ENOENT);

    char user[NAMES_LABEL_MAX + 1];
    int64_t expires;
    int64_t at = time_now_ms() + 100000;
    assert_int_equal(store_session_create(c->store, "d1", "alice", at, &err), 0);
    assert_int_equal(store_session_get(c->store, "d1", user, &expires, &err), 0);
    assert_string_equal(user, "alice");
    assert_int_equal(expires, at);
    assert_int_equal(store_session_delete(c->store, "d1", &err), 0);
    assert_int_equal(store_session_get(c->store, "d1", user, &expires, &err), -ENOENT);
    assert_int_equal(store_session_delete(c->store, "d1", &err), -ENOENT);

    /* Redis expires sessions by itself */
    assert_int_equal(store_session_create(c->store, "d2", "alice", time_now_ms() + 50, &err), 0);
    struct timespec pause = {.tv_nsec = 150 * 1000 * 1000};
    nanosleep(&pause, NULL);
    assert_int_equal(store_session_get(c->store, "d2", user, &expires, &err), -ENOENT);
}

static void test_login_failures(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    int64_t count, ttl;
    assert_int_equal(store_login_failure_get(c->store, "carol", &count, &ttl, &err), 0);
    assert_int_equal(count, 0);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(store_login_failure_add(c->store, "carol", 60, &count, &ttl, &err), 0);
        assert_int_equal(count, i);
        assert_true(ttl > 0 && ttl <= 60);
    }
    assert_int_equal(store_login_failure_clear(c->store, "carol", &err), 0);
    assert_int_equal(store_login_failure_get(c->store, "carol", &count, &ttl, &err), 0);
    assert_int_equal(count, 0);
}

static void test_apps(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct store_app app;
    char id[NAMES_UUID_LEN + 1];
    id_for(1, id);
    make_app(&app, id, "dave", "web");
    assert_int_equal(store_app_create(c->store, &app, 3, &err), 0);
    char other[NAMES_UUID_LEN + 1];
    id_for(2, other);
    make_app(&app, other, "dave", "web");
    assert_int_equal(store_app_create(c->store, &app, 3, &err), -EEXIST);
    /* the refused create left nothing behind */
    struct store_app *got = NULL;
    assert_int_equal(store_app_get(c->store, other, &got, &err), -ENOENT);

    char found[NAMES_UUID_LEN + 1];
    assert_int_equal(store_app_find(c->store, "dave", "web", found, &err), 0);
    assert_string_equal(found, id);
    assert_int_equal(store_app_find(c->store, "erin", "web", found, &err), -ENOENT);

    assert_int_equal(store_app_get(c->store, id, &got, &err), 0);
    assert_string_equal(got->owner, "dave");
    assert_string_equal(got->spec_json, spec_json);
    assert_int_equal(got->desired, DESIRED_RUNNING);
    assert_int_equal(got->desired_replicas, 2);
    assert_int_equal(got->state, APP_DEPLOYING);
    assert_null(got->reason);
    assert_null(got->address);
    store_app_free(got);

    /* quota */
    char id3[NAMES_UUID_LEN + 1], id4[NAMES_UUID_LEN + 1], id5[NAMES_UUID_LEN + 1];
    id_for(3, id3);
    id_for(4, id4);
    id_for(5, id5);
    make_app(&app, id3, "dave", "api");
    assert_int_equal(store_app_create(c->store, &app, 3, &err), 0);
    make_app(&app, id4, "dave", "db");
    assert_int_equal(store_app_create(c->store, &app, 3, &err), 0);
    make_app(&app, id5, "dave", "extra");
    assert_int_equal(store_app_create(c->store, &app, 3, &err), -EDQUOT);
}

static void test_list_pages(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    const char *names[] = {"echo", "alpha", "delta", "charlie", "bravo"};
    for (int i = 0; i < 5; i++) {
        struct store_app app;
        char id[NAMES_UUID_LEN + 1];
        id_for(100 + i, id);
        make_app(&app, id, "frank", names[i]);
        assert_int_equal(store_app_create(c->store, &app, 100, &err), 0);
    }
    const char *expected[] = {"alpha", "bravo", "charlie", "delta", "echo"};
    char cursor[64] = "";
    int seen = 0, pages = 0;
    for (;;) {
        struct store_app **apps;
        size_t n;
        char *next;
        assert_int_equal(store_app_list(c->store, "frank", cursor, 2, &apps, &n, &next, &err), 0);
        pages++;
        for (size_t i = 0; i < n; i++)
            assert_string_equal(apps[i]->name, expected[seen++]);
        store_app_list_free(apps, n);
        if (!next)
            break;
        snprintf(cursor, sizeof(cursor), "%s", next);
        free(next);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);

    /* an owner without apps */
    struct store_app **apps;
    size_t n;
    char *next;
    assert_int_equal(store_app_list(c->store, "nobody", "", 10, &apps, &n, &next, &err), 0);
    assert_int_equal(n, 0);
    assert_null(next);
    store_app_list_free(apps, n);

    /* every app, in id order */
    assert_int_equal(store_app_list(c->store, NULL, "", 1000, &apps, &n, &next, &err), 0);
    assert_true(n >= 5);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(apps[i - 1]->id, apps[i]->id) < 0);
    store_app_list_free(apps, n);
}

static void test_update_and_observe(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct store_app app;
    char id[NAMES_UUID_LEN + 1];
    id_for(200, id);
    make_app(&app, id, "gina", "svc");
    assert_int_equal(store_app_create(c->store, &app, 100, &err), 0);

    struct store_app_change change = {
        .desired = DESIRED_STOPPED, .desired_replicas = 4, .spec_json = NULL, .state = -1};
    int64_t gen;
    assert_int_equal(store_app_update(c->store, id, 1, &change, &gen, &err), 0);
    assert_int_equal(gen, 2);
    /* a writer that read generation 1 must read again */
    assert_int_equal(store_app_update(c->store, id, 1, &change, &gen, &err), -ESTALE);
    char missing[NAMES_UUID_LEN + 1];
    id_for(999, missing);
    assert_int_equal(store_app_update(c->store, missing, 1, &change, &gen, &err), -ENOENT);

    struct store_app_observed obs = {.state = APP_FAILED,
                                     .reason = "image not found",
                                     .address = "10.0.0.1:80",
                                     .ready_replicas = 1,
                                     .observed_generation = 2,
                                     .deployed = true,
                                     .failures = 3};
    assert_int_equal(store_app_set_observed(c->store, id, &obs, &err), 0);
    struct store_app *got;
    assert_int_equal(store_app_get(c->store, id, &got, &err), 0);
    assert_int_equal(got->desired, DESIRED_STOPPED);
    assert_int_equal(got->desired_replicas, 4);
    assert_int_equal(got->generation, 2); /* observations do not count as changes */
    assert_int_equal(got->state, APP_FAILED);
    assert_string_equal(got->reason, "image not found");
    assert_string_equal(got->address, "10.0.0.1:80");
    assert_true(got->deployed);
    assert_int_equal(got->failures, 3);
    store_app_free(got);
    obs.reason = NULL;
    obs.address = NULL;
    assert_int_equal(store_app_set_observed(c->store, id, &obs, &err), 0);
    assert_int_equal(store_app_get(c->store, id, &got, &err), 0);
    assert_null(got->reason);
    assert_null(got->address);
    store_app_free(got);
    assert_int_equal(store_app_set_observed(c->store, missing, &obs, &err), -ENOENT);
}

static void test_delete_leaves_nothing(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct store_app app;
    char id[NAMES_UUID_LEN + 1];
    id_for(300, id);
    make_app(&app, id, "hank", "gone");
    assert_int_equal(store_app_create(c->store, &app, 100, &err), 0);
    char claimed[NAMES_UUID_LEN + 1];
    /* take its lease too, so that the lease key exists */
    while (store_recon_claim(c->store, "t", time_now_ms(), 10000, claimed, &err) == 0 &&
           strcmp(claimed, id) != 0)
        ;
    assert_int_equal(store_app_delete(c->store, id, &err), 0);
    assert_int_equal(store_app_delete(c->store, id, &err), -ENOENT);
    char out[256];
    char args[128];
    snprintf(args, sizeof(args), "--scan --pattern '*%s*'", id);
    assert_int_equal(redis_fixture_cli(&c->redis, args, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(
        redis_fixture_cli(&c->redis, "HGET emp:user:hank:appnames gone", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    snprintf(args, sizeof(args), "ZSCORE emp:recon:due %s", id);
    assert_int_equal(redis_fixture_cli(&c->redis, args, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* the name is free again */
    assert_int_equal(store_app_create(c->store, &app, 100, &err), 0);
}

static void test_schedule_and_leases(void **state)
{
    struct redis_fixture redis;
    assert_int_equal(redis_fixture_start(&redis), 0);
    struct store *s;
    struct emp_error err = {0};
    assert_int_equal(store_open(redis.url, &s, &err), 0);
    char id[NAMES_UUID_LEN + 1], got[NAMES_UUID_LEN + 1];
    int64_t now = time_now_ms();
    assert_int_equal(store_recon_claim(s, "a", now, 1000, got, &err), -ENOENT);
    struct store_app app;
    id_for(1, id);
    make_app(&app, id, "ivan", "one");
    assert_int_equal(store_app_create(s, &app, 100, &err), 0);
    assert_int_equal(store_recon_claim(s, "a", time_now_ms(), 1000, got, &err), 0);
    assert_string_equal(got, id);
    /* leased: nobody else gets it, not even when it is due again */
    assert_int_equal(store_recon_claim(s, "b", time_now_ms() + 5000, 1000, got, &err), -ENOENT);
    assert_int_equal(store_recon_renew(s, id, "b", 1000, &err), -ENOENT);
    assert_int_equal(store_recon_renew(s, id, "a", 1000, &err), 0);
    /* released with a check in a minute: not due now */
    assert_int_equal(store_recon_release(s, id, "a", time_now_ms() + 60000, 1, &err), 0);
    assert_int_equal(store_recon_claim(s, "b", time_now_ms(), 1000, got, &err), -ENOENT);
    int64_t due;
    assert_int_equal(store_recon_next_due(s, &due, &err), 0);
    assert_true(due > time_now_ms() + 50000);
    /* a change of desired state makes it due at once */
    struct store_app_change change = {
        .desired = DESIRED_STOPPED, .desired_replicas = -1, .state = -1};
    assert_int_equal(store_app_update(s, id, 1, &change, NULL, &err), 0);
    assert_int_equal(store_recon_claim(s, "b", time_now_ms(), 1000, got, &err), 0);
    /* a change while the reconciler works: releasing makes it due at once, not in a minute */
    assert_int_equal(store_app_update(s, id, 2, &change, NULL, &err), 0);
    assert_int_equal(store_recon_release(s, id, "b", time_now_ms() + 60000, 2, &err), 0);
    assert_int_equal(store_recon_claim(s, "c", time_now_ms(), 100, got, &err), 0);
    /* a holder that dies: its lease runs out and the app comes back */
    assert_int_equal(store_recon_claim(s, "d", time_now_ms(), 1000, got, &err), -ENOENT);
    struct timespec pause = {.tv_nsec = 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    assert_int_equal(store_recon_claim(s, "d", time_now_ms(), 1000, got, &err), 0);
    assert_string_equal(got, id);
    store_close(s);
    redis_fixture_stop(&redis);
}

static void test_recovers_after_outage(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    assert_int_equal(store_ping(c->store, &err), 0);
    redis_fixture_pause(&c->redis);
    assert_int_equal(store_ping(c->store, &err), -EIO);
    assert_int_equal(err.code, EMP_ERR_STORE_UNAVAILABLE);
    assert_non_null(strstr(err.message, c->redis.socket_path));
    emp_error_clear(&err);
    struct store_user u;
    assert_int_equal(store_user_get(c->store, "alice", &u, &err), -EIO);
    assert_int_equal(redis_fixture_restart(&c->redis), 0);
    /* the same store handle works again once Redis has loaded its data (it answers LOADING
     * until then), and the data survived (AOF) */
    int r = -EIO;
    for (int i = 0; i < 200 && r == -EIO; i++) {
        emp_error_clear(&err);
        r = store_user_get(c->store, "alice", &u, &err);
        if (r == -EIO) {
            struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    assert_int_equal(r, 0);
    assert_string_equal(u.username, "alice");
}

struct racer {
    struct store *store;
    const char *id;
    int done;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct emp_error err = {0};
    for (int i = 0; i < 50; i++) {
        for (;;) {
            struct store_app *app;
            if (store_app_get(r->store, r->id, &app, &err) < 0)
                return NULL;
            struct store_app_change change = {
                .desired = -1, .desired_replicas = app->desired_replicas + 1, .state = -1};
            int rc = store_app_update(r->store, r->id, app->generation, &change, NULL, &err);
            store_app_free(app);
            if (rc == 0)
                break;
            if (rc != -ESTALE)
                return NULL;
        }
        r->done++;
    }
    return NULL;
}

static void test_no_lost_writes(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct store_app app;
    char id[NAMES_UUID_LEN + 1];
    id_for(400, id);
    make_app(&app, id, "judy", "racy");
    app.desired_replicas = 0;
    assert_int_equal(store_app_create(c->store, &app, 100, &err), 0);
    pthread_t threads[4];
    struct racer racers[4];
    for (int i = 0; i < 4; i++) {
        racers[i] = (struct racer){.store = c->store, .id = id};
        pthread_create(&threads[i], NULL, race, &racers[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(racers[i].done, 50);
    struct store_app *got;
    assert_int_equal(store_app_get(c->store, id, &got, &err), 0);
    /* every increment landed: 200 read-modify-write cycles from 4 threads */
    assert_int_equal(got->desired_replicas, 200);
    assert_int_equal(got->generation, 201);
    store_app_free(got);
}

/* Calls of a command Redis has served so far (INFO commandstats). */
static long long calls_of(const struct redis_fixture *redis, const char *command)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof(cmd), "redis-cli -s '%s' INFO commandstats", redis->socket_path);
    FILE *p = popen(cmd, "r");
    long long calls = 0;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "cmdstat_%s:calls=", command);
    while (p && fgets(line, sizeof(line), p))
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            calls = atoll(line + strlen(prefix));
    if (p)
        pclose(p);
    return calls;
}

/* Reads through `cached` until want(user, app) holds, for up to a second. */
static bool eventually(struct store *cached, const char *digest, const char *id,
                       bool (*want)(const char *user, const struct store_app *app))
{
    for (int i = 0; i < 200; i++) {
        char user[NAMES_LABEL_MAX + 1];
        int64_t expires;
        struct store_app *app = NULL;
        struct emp_error err = {0};
        if (store_session_and_app(cached, digest, id, user, &expires, &app, &err) == 0) {
            bool ok = want(user, app);
            store_app_free(app);
            if (ok)
                return true;
        }
        struct timespec pause = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return false;
}

static bool session_gone(const char *user, const struct store_app *app)
{
    return user[0] == '\0';
}

static bool stopped_with_4(const char *user, const struct store_app *app)
{
    return app && app->desired == DESIRED_STOPPED && app->desired_replicas == 4;
}

static bool app_gone(const char *user, const struct store_app *app)
{
    return user[0] && !app;
}

static void test_cache_is_exact(void **state)
{
    struct redis_fixture redis;
    assert_int_equal(redis_fixture_start(&redis), 0);
    struct store *cached, *other;
    struct emp_error err = {0};
    assert_int_equal(store_open(redis.url, &cached, &err), 0);
    assert_int_equal(store_enable_cache(cached, 1000, &err), 0);
    assert_int_equal(store_open(redis.url, &other, &err), 0); /* another emp-server */
    char id[NAMES_UUID_LEN + 1];
    id_for(1, id);
    struct store_app app;
    make_app(&app, id, "kim", "cached");
    assert_int_equal(store_app_create(other, &app, 100, &err), 0);
    assert_int_equal(store_session_create(other, "dd", "kim", time_now_ms() + 60000, &err), 0);

    /* once the tracker listens, repeated reads are served without Redis */
    char user[NAMES_LABEL_MAX + 1];
    int64_t expires;
    struct store_app *got = NULL;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(store_session_and_app(cached, "dd", id, user, &expires, &got, &err), 0);
        assert_string_equal(user, "kim");
        assert_non_null(got);
        store_app_free(got);
        struct timespec pause = {.tv_nsec = 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    long long before = calls_of(&redis, "hgetall");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(store_session_and_app(cached, "dd", id, user, &expires, &got, &err), 0);
        assert_int_equal(got->generation, 1);
        store_app_free(got);
    }
    assert_int_equal(calls_of(&redis, "hgetall"), before);

    /* a change by the other server is seen */
    struct store_app_change change = {
        .desired = DESIRED_STOPPED, .desired_replicas = 4, .state = -1, .purge = -1};
    assert_int_equal(store_app_update(other, id, 1, &change, NULL, &err), 0);
    assert_true(eventually(cached, "dd", id, stopped_with_4));
    /* and so is a deletion */
    assert_int_equal(store_app_delete(other, id, &err), 0);
    assert_true(eventually(cached, "dd", id, app_gone));
    /* a logout on the other server ends the session here too */
    assert_int_equal(store_session_delete(other, "dd", &err), 0);
    assert_true(eventually(cached, "dd", NULL, session_gone));

    /* the invalidation channel breaks: the cache goes off, answers stay right, and it comes
     * back */
    assert_int_equal(store_session_create(other, "ee", "kim", time_now_ms() + 60000, &err), 0);
    char out[64];
    assert_int_equal(redis_fixture_cli(&redis, "CLIENT KILL TYPE pubsub", out, sizeof(out)), 0);
    assert_int_equal(store_session_delete(other, "ee", &err), 0);
    assert_true(eventually(cached, "ee", NULL, session_gone));

    store_close(cached);
    store_close(other);
    redis_fixture_stop(&redis);
}

/* ---- trace metrics ---- */

static struct agg *trace_agg(void)
{
    return fixture_agg(3600);
}

/* Drains a into the store as one consumer would, at now_ms. */
static void trace_flush(struct store *store, struct agg *a, int64_t now_ms, int64_t wait_ms)
{
    agg_tick(a, now_ms * 1000 + 3600000000LL, true);
    struct agg_batch b;
    assert_int_equal(agg_drain(a, &b), 0);
    struct emp_error err = {0};
    assert_int_equal(store_trace_add(store, &b, NULL, 0, now_ms, wait_ms, &err), 0);
    agg_batch_free(&b);
}

static uint64_t entries_total(const struct hist_entry *e, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += e[i].count;
    return total;
}

static const struct store_trace_peer *peer(const struct store_trace_peer *p, size_t n,
                                           const char *service)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].service, service) == 0)
            return &p[i];
    return NULL;
}

static void assert_same_hist(const struct hist_entry *a, size_t a_len, const struct hist_entry *b,
                             size_t b_len)
{
    assert_int_equal(a_len, b_len);
    for (size_t i = 0; i < a_len; i++) {
        assert_int_equal(a[i].bucket, b[i].bucket);
        assert_int_equal(a[i].count, b[i].count);
    }
}

/* The coarse window of a minute holds exactly what its fine windows hold: requests, errors, every
 * histogram bucket, every edge. */
static void assert_same_window(const struct store_trace_window *fine,
                               const struct store_trace_window *coarse)
{
    assert_int_equal(coarse->requests, fine->requests);
    assert_int_equal(coarse->errors, fine->errors);
    assert_same_hist(coarse->latency, coarse->latency_len, fine->latency, fine->latency_len);
    assert_same_hist(coarse->self, coarse->self_len, fine->self, fine->self_len);
    assert_int_equal(coarse->outgoing_len, fine->outgoing_len);
    for (size_t i = 0; i < fine->outgoing_len; i++) {
        const struct store_trace_peer *f = &fine->outgoing[i];
        const struct store_trace_peer *c = peer(coarse->outgoing, coarse->outgoing_len, f->service);
        assert_non_null(c);
        assert_int_equal(c->calls, f->calls);
        assert_int_equal(c->errors, f->errors);
        assert_same_hist(c->latency, c->latency_len, f->latency, f->latency_len);
    }
}

/* Two consumers count spans of one app into the same buckets: the store adds them up, in fine and
 * coarse buckets alike, and the percentiles come from the merged histogram. */
static void test_trace_counts_add_up(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t base = now_s - now_s % 60 - 120; /* a whole minute, two minutes ago */
    struct agg *one = trace_agg(), *two = trace_agg();
    for (int i = 0; i < 600; i++) {
        /* 1 ms .. 600 ms, one per 100 ms of the minute; every 10th fails */
        struct span s = fixture_span(1000 + (uint64_t)i, 1, 0, SPAN_SERVER, "alice/web", NULL,
                                     (base * 1000000) + (int64_t)i * 100000, (i + 1) * 1000);
        if (i % 10 == 0)
            s.http_status = 500;
        /* and a call of each to alice/db, whose server span is its child: an edge */
        int64_t took = (i % 50 + 1) * 100;
        struct span call = fixture_span(1000 + (uint64_t)i, 2, 1, SPAN_CLIENT, "alice/web",
                                        "alice/db", s.timestamp_us + 100, took);
        struct span served = fixture_span(1000 + (uint64_t)i, 3, 2, SPAN_SERVER, "alice/db", NULL,
                                          s.timestamp_us + 150, took - 50);
        struct span all[] = {s, call, served};
        agg_add(i % 2 ? one : two, all, 3, now_s * 1000000);
    }
    trace_flush(c->store, one, now_s * 1000, 1000);
    trace_flush(c->store, two, now_s * 1000, 1000);
    agg_free(one);
    agg_free(two);
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-web", base + 60, 60, 10, &w, &err), 0);
    assert_int_equal(w.requests, 600);
    assert_int_equal(w.errors, 60);
    assert_int_equal(entries_total(w.latency, w.latency_len), 600);
    double p95 = hist_quantile(w.latency, w.latency_len, 0.95);
    assert_true(p95 >= 570000 * (1 - HIST_RELATIVE_ERROR) &&
                p95 <= 570000 * (1 + HIST_RELATIVE_ERROR));
    const struct store_trace_peer *db = peer(w.outgoing, w.outgoing_len, "alice/db");
    assert_non_null(db);
    assert_int_equal(db->calls, 600);
    /* the same minute from the coarse buckets, to the last histogram bucket; 10 s of it from the
     * fine ones */
    struct store_trace_window coarse;
    assert_int_equal(store_trace_window_get(c->store, "id-web", base + 60, 60, 60, &coarse, &err),
                     0);
    assert_int_equal(coarse.requests, 600);
    assert_int_equal(coarse.resolution_s, 60);
    assert_same_window(&w, &coarse);
    store_trace_window_free(&coarse);
    store_trace_window_free(&w);
    assert_int_equal(store_trace_window_get(c->store, "id-web", base + 10, 10, 10, &w, &err), 0);
    assert_int_equal(w.requests, 100);
    store_trace_window_free(&w);
    /* windows that do not fit the resolution are refused */
    assert_int_equal(store_trace_window_get(c->store, "id-web", base + 5, 10, 10, &w, &err),
                     -EINVAL);
    assert_int_equal(store_trace_window_get(c->store, "id-web", base, 30, 60, &w, &err), -EINVAL);
}

/* A call whose halves went to two consumers is joined in the store: one edge, with the callee's
 * app, seen from both ends. A call nobody answers becomes a leaf once its wait is over. */
static void test_trace_join_across_consumers(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t base = now_s - now_s % 60 - 60;
    int64_t ts = base * 1000000 + 5000000;
    struct agg *one = trace_agg(), *two = trace_agg();
    struct span a_server = fixture_span(77, 1, 0, SPAN_SERVER, "alice/front", NULL, ts, 9000);
    struct span a_call = fixture_span(77, 2, 1, SPAN_CLIENT, "alice/front", "alice/back", ts, 8000);
    struct span b_server = fixture_span(77, 3, 2, SPAN_SERVER, "alice/back", NULL, ts, 7000);
    struct span lone = fixture_span(78, 5, 4, SPAN_CLIENT, "alice/front", "alice/gone", ts, 3000);
    agg_add(one, &a_server, 1, now_s * 1000000);
    agg_add(one, &a_call, 1, now_s * 1000000);
    agg_add(one, &lone, 1, now_s * 1000000);
    agg_add(two, &b_server, 1, now_s * 1000000);
    trace_flush(c->store, one, now_s * 1000, 1000);
    trace_flush(c->store, two, now_s * 1000, 1000);
    agg_free(one);
    agg_free(two);
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-front", base + 60, 60, 10, &w, &err), 0);
    assert_int_equal(w.outgoing_len, 1); /* the lone call still waits */
    const struct store_trace_peer *back = peer(w.outgoing, w.outgoing_len, "alice/back");
    assert_non_null(back);
    assert_int_equal(back->calls, 1);
    assert_string_equal(back->app_id, "id-back");
    store_trace_window_free(&w);
    assert_int_equal(store_trace_window_get(c->store, "id-back", base + 60, 60, 10, &w, &err), 0);
    assert_int_equal(w.requests, 1);
    assert_int_equal(w.incoming_len, 1);
    assert_string_equal(w.incoming[0].service, "alice/front");
    assert_string_equal(w.incoming[0].app_id, "id-front");
    assert_int_equal(w.incoming[0].calls, 1);
    store_trace_window_free(&w);
    /* once the wait is over (any later write sweeps), the lone call is a leaf to its remote */
    assert_int_equal(store_trace_add(c->store, NULL, NULL, 0, now_s * 1000 + 2000, 1000, &err), 0);
    assert_int_equal(store_trace_window_get(c->store, "id-front", base + 60, 60, 10, &w, &err), 0);
    const struct store_trace_peer *gone = peer(w.outgoing, w.outgoing_len, "alice/gone");
    assert_non_null(gone);
    assert_int_equal(gone->calls, 1);
    assert_string_equal(gone->app_id, "id-gone");
    assert_int_equal(entries_total(gone->latency, gone->latency_len), 1);
    store_trace_window_free(&w);
    /* and nothing is left waiting */
    char cmd[400], out[32] = "";
    snprintf(cmd, sizeof(cmd), "redis-cli -s '%s' ZCARD emp:tj:due", c->redis.socket_path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, sizeof(out), f));
    pclose(f);
    assert_string_equal(out, "0\n");
}

/* What redis-cli prints for a command (its first line, without the newline). */
static void cli(struct ctx *c, const char *command, char *out, size_t size)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "redis-cli -s '%s' %s", c->redis.socket_path, command);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    out[0] = '\0';
    if (!fgets(out, (int)size, f))
        out[0] = '\0';
    pclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* The coarse and the fine windows of one minute of id-web, compared; returns its requests. */
static uint64_t same_minute(struct ctx *c, int64_t minute)
{
    struct emp_error err = {0};
    struct store_trace_window fine, coarse;
    assert_int_equal(store_trace_window_get(c->store, "id-web", minute + 60, 60, 10, &fine, &err),
                     0);
    assert_int_equal(store_trace_window_get(c->store, "id-web", minute + 60, 60, 60, &coarse, &err),
                     0);
    assert_same_window(&fine, &coarse);
    uint64_t requests = coarse.requests;
    store_trace_window_free(&fine);
    store_trace_window_free(&coarse);
    return requests;
}

/* Spans of one minute (n of them from first, 100 ms apart, each with a call to alice/db) counted
 * by one consumer and written at now_ms. */
static void write_minute(struct ctx *c, int64_t minute, int first, int n, int64_t now_ms)
{
    struct agg *a = trace_agg();
    for (int i = first; i < first + n; i++) {
        int64_t ts = minute * 1000000 + (int64_t)(i % 600) * 100000;
        struct span s = fixture_span(5000 + (uint64_t)i, 1, 0, SPAN_SERVER, "alice/web", NULL, ts,
                                     (i % 90 + 1) * 1000);
        struct span call = fixture_span(5000 + (uint64_t)i, 2, 1, SPAN_CLIENT, "alice/web",
                                        "alice/db", ts + 100, (i % 40 + 1) * 100);
        struct span served = fixture_span(5000 + (uint64_t)i, 3, 2, SPAN_SERVER, "alice/db", NULL,
                                          ts + 150, (i % 40 + 1) * 100 - 50);
        struct span all[] = {s, call, served};
        agg_add(a, all, 3, now_ms * 1000);
    }
    trace_flush(c->store, a, now_ms, 1000);
    agg_free(a);
}

/* A minute's counts go to its fine buckets only; STORE_TRACE_ROLL_AFTER_S after it ended the next
 * write rolls it up into its coarse buckets once; what comes later goes to both. Its coarse window
 * equals its fine one all along, to the last histogram bucket. */
static void test_trace_roll_up(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t minute = now_s - now_s % 60 - 240; /* four minutes ago: its keys are kept */
    char key[128], out[64];
    snprintf(key, sizeof(key), "emp:tm:id-web:60:%lld", (long long)minute);
    int64_t before_ms = (minute + 70) * 1000; /* 10 s after the minute: not due */
    int64_t due_ms = (minute + 60 + STORE_TRACE_ROLL_AFTER_S + 1) * 1000;

    write_minute(c, minute, 0, 300, before_ms);
    write_minute(c, minute, 300, 300, before_ms); /* two flushes, as the counts arrive */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "EXISTS %s", key);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "0");                 /* nothing written coarse yet */
    assert_int_equal(same_minute(c, minute), 600); /* the coarse window reads the fine buckets */

    struct emp_error err = {0};
    assert_int_equal(store_trace_add(c->store, NULL, NULL, 0, due_ms, 1000, &err), 0);
    snprintf(cmd, sizeof(cmd), "HGET %s r", key);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "600"); /* rolled up */
    snprintf(cmd, sizeof(cmd), "HGET %s R", key);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "1");
    snprintf(cmd, sizeof(cmd), "HGET emp:to:id-web:60:%lld c:alice/db", (long long)minute);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "600");
    snprintf(cmd, sizeof(cmd), "HGET emp:ti:id-db:60:%lld c:id-web", (long long)minute);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "600"); /* the callee's minute too */
    assert_int_equal(same_minute(c, minute), 600);

    /* once only, however often writes come; late counts go to both buckets */
    assert_int_equal(store_trace_add(c->store, NULL, NULL, 0, due_ms + 5000, 1000, &err), 0);
    write_minute(c, minute, 600, 30, due_ms + 10000);
    assert_int_equal(store_trace_add(c->store, NULL, NULL, 0, due_ms + 20000, 1000, &err), 0);
    snprintf(cmd, sizeof(cmd), "HGET %s r", key);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "630");
    assert_int_equal(same_minute(c, minute), 630);
    snprintf(cmd, sizeof(cmd), "ZSCORE emp:troll id-web:%lld", (long long)minute);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, ""); /* nothing left to roll up */
}

/* A write sent again with its id (as the collector does after an error, when some of its steps
 * may have been applied) is applied once, in every one of its steps, stats included; another id
 * is another write. */
static void test_trace_write_once(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t ts = (now_s - 30) * 1000000;
    struct agg *a = trace_agg();
    enum { APPS = 3000 }; /* about 33,000 arguments: several steps */
    for (int i = 0; i < APPS; i++) {
        char service[32];
        snprintf(service, sizeof(service), "alice/once-%d", i);
        struct span s = fixture_span(90000 + (uint64_t)i, 1, 0, SPAN_SERVER, service, NULL, ts,
                                     (i % 300 + 1) * 1000);
        agg_add(a, &s, 1, now_s * 1000000);
    }
    agg_tick(a, now_s * 1000000 + 3600000000LL, true);
    struct agg_batch b;
    assert_int_equal(agg_drain(a, &b), 0);
    agg_free(a);
    struct store_trace_stats stats = {.spans = APPS};
    struct emp_error err = {0};
    const char *sum = "EVAL \"local n = 0 for _, k in ipairs(redis.call('KEYS', "
                      "'emp:tm:id-once-*:10:*')) do n = n + redis.call('HGET', k, 'r') end "
                      "return n\" 0";
    char out[64], before[64];
    cli(c, "HGET emp:tstat spans", before, sizeof(before));
    long long spans_before = atoll(before);
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_trace_add(c->store, &b, &stats, 0x5eed, now_s * 1000, 1000, &err),
                         0);
    cli(c, sum, out, sizeof(out));
    assert_string_equal(out, "3000");
    cli(c, "HGET emp:tstat spans", out, sizeof(out));
    assert_int_equal(atoll(out) - spans_before, APPS);
    cli(c, "KEYS emp:tw:0000000000005eed:3", out, sizeof(out));
    assert_string_equal(out, "emp:tw:0000000000005eed:3"); /* it went in four steps or more */
    assert_int_equal(store_trace_add(c->store, &b, NULL, 0x5eee, now_s * 1000, 1000, &err), 0);
    cli(c, sum, out, sizeof(out));
    assert_string_equal(out, "6000");
    agg_batch_free(&b);
}

/* Minutes that an emp-server from before roll-ups wrote to both buckets are marked rolled up at
 * start, so that a 1 min window does not add their 10 s buckets to them; minutes written the way
 * this one writes are left alone. */
static void test_trace_adopt(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t old = now_s - now_s % 60 - 300;
    char cmd[200], out[64];
    /* as the old writer left them: the same counts in the 10 s and the 1 min buckets */
    const char *kinds[][3] = {{"tm", "id-was", "r 5"}, {"ti", "id-callee", "c:id-was 3"}};
    for (size_t k = 0; k < 2; k++)
        for (int res = 10; res <= 60; res += 50) {
            snprintf(cmd, sizeof(cmd), "HINCRBY emp:%s:%s:%d:%lld %s", kinds[k][0], kinds[k][1],
                     res, (long long)old, kinds[k][2]);
            cli(c, cmd, out, sizeof(out));
        }
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-was", old + 60, 60, 60, &w, &err), 0);
    assert_int_equal(w.requests, 10); /* counted twice until adopted */
    store_trace_window_free(&w);
    int64_t mine = old - 120; /* a minute of id-web's no other test writes */
    write_minute(c, mine, 0, 10, (mine + 70) * 1000); /* this writer's, not rolled up yet */

    long long marked = -1;
    assert_int_equal(store_trace_adopt(c->store, now_s * 1000, &marked, &err), 0);
    assert_int_equal(marked, 2); /* id-was's minute, and id-callee's (calls in only) */
    assert_int_equal(store_trace_window_get(c->store, "id-was", old + 60, 60, 60, &w, &err), 0);
    assert_int_equal(w.requests, 5);
    store_trace_window_free(&w);
    assert_int_equal(store_trace_window_get(c->store, "id-callee", old + 60, 60, 60, &w, &err), 0);
    assert_int_equal(w.incoming_len, 1);
    assert_int_equal(w.incoming[0].calls, 3);
    store_trace_window_free(&w);
    snprintf(cmd, sizeof(cmd), "HGET emp:tm:id-web:60:%lld R", (long long)mine);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, ""); /* this writer's minute waits for its roll-up */
    assert_int_equal(same_minute(c, mine), 10);
    assert_int_equal(store_trace_adopt(c->store, now_s * 1000, &marked, &err), 0);
    assert_int_equal(marked, 0); /* once */
}

static uint64_t hist_sum(const struct hist_entry *h, size_t n, unsigned bucket)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (bucket == HIST_BUCKETS || h[i].bucket == bucket)
            total += h[i].count;
    return total;
}

/* A bucket that holds histograms in the older layout (a field a histogram bucket, as emp-servers
 * wrote them before histograms were packed into one field) and packed ones: a window adds up
 * both, and the roll-up carries both into the coarse bucket, to the last histogram bucket. */
static void test_trace_older_layout(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t minute = now_s - now_s % 60 - 540; /* a minute of id-web's no other test writes */
    char cmd[200], out[64];
    const char *older[] = {"tm r 4",   "tm l100 3",       "tm l300 1",
                           "tm s90 4", "to c:alice/db 4", "to l:alice/db:120 4"};
    for (size_t i = 0; i < sizeof(older) / sizeof(older[0]); i++) {
        snprintf(cmd, sizeof(cmd), "HINCRBY emp:%.2s:id-web:10:%lld %s", older[i],
                 (long long)minute, older[i] + 3);
        cli(c, cmd, out, sizeof(out));
    }
    int64_t due_ms = (minute + 60 + STORE_TRACE_ROLL_AFTER_S + 1) * 1000;
    write_minute(c, minute, 0, 30, (minute + 70) * 1000); /* packed, into the same buckets */

    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-web", minute + 60, 60, 10, &w, &err), 0);
    assert_int_equal(w.requests, 34);
    assert_int_equal(hist_sum(w.latency, w.latency_len, HIST_BUCKETS), 34);
    assert_true(hist_sum(w.latency, w.latency_len, 100) >= 3);
    assert_true(hist_sum(w.latency, w.latency_len, 300) >= 1);
    assert_int_equal(hist_sum(w.self, w.self_len, HIST_BUCKETS), 34);
    assert_int_equal(w.outgoing_len, 1);
    assert_int_equal(w.outgoing[0].calls, 34);
    assert_int_equal(hist_sum(w.outgoing[0].latency, w.outgoing[0].latency_len, HIST_BUCKETS), 34);
    assert_true(hist_sum(w.outgoing[0].latency, w.outgoing[0].latency_len, 120) >= 4);
    store_trace_window_free(&w);
    assert_int_equal(same_minute(c, minute), 34); /* before the roll-up: the fine buckets */
    assert_int_equal(store_trace_add(c->store, NULL, NULL, 0, due_ms, 1000, &err), 0);
    snprintf(cmd, sizeof(cmd), "HGET emp:tm:id-web:60:%lld R", (long long)minute);
    cli(c, cmd, out, sizeof(out));
    assert_string_equal(out, "1");
    assert_int_equal(same_minute(c, minute), 34); /* the coarse bucket: both layouts' counts */
}

/* Flushes into one fine bucket of id-web: servers of the given durations. */
static void write_durations(struct ctx *c, int64_t bucket, const int64_t *durations, int n,
                            uint64_t first_trace)
{
    struct agg *a = trace_agg();
    for (int i = 0; i < n; i++) {
        struct span s = fixture_span(first_trace + (uint64_t)i, 1, 0, SPAN_SERVER, "alice/web",
                                     NULL, bucket * 1000000 + i * 1000, durations[i]);
        agg_add(a, &s, 1, (bucket + 20) * 1000000);
    }
    trace_flush(c->store, a, (bucket + 20) * 1000, 1000);
    agg_free(a);
}

/* What later flushes add to a packed histogram is merged bucket by bucket: a histogram of about
 * the same size, a few buckets into many, buckets past the last one held, and fewer than HIST_FEW
 * (fields of their own); every bucket's count is the sum. */
static void test_trace_histogram_merges(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t bucket = now_s - now_s % 60 - 600; /* a minute of id-web's no other test writes */
    static uint64_t expected[HIST_BUCKETS];
    memset(expected, 0, sizeof(expected));
    int64_t many[80], some[60], few[8], beyond[6];
    for (int i = 0; i < 80; i++) /* some 80 buckets apart */
        many[i] = 40 + (int64_t)i * 7 * (i + 1);
    for (int i = 0; i < 60; i++) /* about as many, half of them new */
        some[i] = i % 2 ? many[i] : many[i] + 1 + i * 3;
    for (int i = 0; i < 8; i++) /* a few into many: two new, six met */
        few[i] = i < 2 ? 30 + i : many[10 * i];
    for (int i = 0; i < 6; i++) /* past the last bucket held: one met, five after it */
        beyond[i] = many[79] + (int64_t)i * 20000;
    int64_t *runs[] = {many, some, few, few, beyond};
    int lens[] = {80, 60, 8, 3, 6};
    for (int r = 0; r < 5; r++) {
        write_durations(c, bucket, runs[r], lens[r], 7000 + (uint64_t)r * 1000);
        for (int i = 0; i < lens[r]; i++)
            expected[hist_bucket((uint64_t)runs[r][i])]++;
    }
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-web", bucket + 10, 10, 10, &w, &err), 0);
    assert_int_equal(w.requests, 80 + 60 + 8 + 3 + 6);
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        uint64_t got = hist_sum(w.latency, w.latency_len, b);
        if (got != expected[b])
            fail_msg("latency bucket %u: %llu counted, %llu sent", b, (unsigned long long)got,
                     (unsigned long long)expected[b]);
        assert_int_equal(hist_sum(w.self, w.self_len, b), expected[b]);
    }
    store_trace_window_free(&w);
}

/* Buckets expire: Redis drops fine buckets after STORE_TRACE_FINE_KEEP_S and coarse ones later. */
static void test_trace_buckets_expire(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t old = now_s - STORE_TRACE_FINE_KEEP_S - 120; /* fine bucket past keeping */
    old -= old % 60;
    struct agg *a = trace_agg();
    struct span s = fixture_span(9, 1, 0, SPAN_SERVER, "alice/old", NULL, old * 1000000, 1000);
    agg_add(a, &s, 1, now_s * 1000000);
    trace_flush(c->store, a, now_s * 1000, 1000);
    agg_free(a);
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-old", old + 60, 60, 10, &w, &err), 0);
    assert_int_equal(w.requests, 0);
    store_trace_window_free(&w);
    assert_int_equal(store_trace_window_get(c->store, "id-old", old + 60, 60, 60, &w, &err), 0);
    assert_int_equal(w.requests, 1);
    store_trace_window_free(&w);
}

/* A late count whose 10 s bucket has less than two minutes to live goes to its 1 min bucket
 * only, where a 1 min window reads it: in the 10 s bucket, it would be lost if that expired
 * before the minute was rolled up. One with more time to live goes to its 10 s bucket. */
static void test_trace_count_near_fine_expiry(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t soon = now_s - STORE_TRACE_FINE_KEEP_S + 30; /* expires within a minute */
    soon -= soon % 60;
    soon += 50; /* the last 10 s bucket of its minute: expires 10 + 900 s after it starts */
    int64_t later = soon + 300; /* expires in some 6 minutes */
    struct agg *a = trace_agg();
    struct span s[] = {
        fixture_span(11, 1, 0, SPAN_SERVER, "alice/edge", NULL, soon * 1000000, 1000),
        fixture_span(12, 1, 0, SPAN_SERVER, "alice/edge2", NULL, later * 1000000, 1000),
    };
    agg_add(a, s, 2, now_s * 1000000);
    trace_flush(c->store, a, now_s * 1000, 1000);
    agg_free(a);
    struct emp_error err = {0};
    struct store_trace_window w;
    assert_int_equal(store_trace_window_get(c->store, "id-edge", soon + 10, 10, 10, &w, &err), 0);
    assert_int_equal(w.requests, 0); /* not in the 10 s bucket */
    store_trace_window_free(&w);
    int64_t minute = soon - soon % 60;
    assert_int_equal(store_trace_window_get(c->store, "id-edge", minute + 60, 60, 60, &w, &err), 0);
    assert_int_equal(w.requests, 1); /* in the 1 min one */
    store_trace_window_free(&w);
    assert_int_equal(store_trace_window_get(c->store, "id-edge2", later + 10, 10, 10, &w, &err), 0);
    assert_int_equal(w.requests, 1);
    store_trace_window_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_users_and_sessions),
        cmocka_unit_test(test_login_failures),
        cmocka_unit_test(test_apps),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_update_and_observe),
        cmocka_unit_test(test_delete_leaves_nothing),
        cmocka_unit_test(test_schedule_and_leases),
        cmocka_unit_test(test_no_lost_writes),
        cmocka_unit_test(test_recovers_after_outage),
        cmocka_unit_test(test_cache_is_exact),
        cmocka_unit_test(test_trace_counts_add_up),
        cmocka_unit_test(test_trace_join_across_consumers),
        cmocka_unit_test(test_trace_buckets_expire),
        cmocka_unit_test(test_trace_roll_up),
        cmocka_unit_test(test_trace_write_once),
        cmocka_unit_test(test_trace_adopt),
        cmocka_unit_test(test_trace_older_layout),
        cmocka_unit_test(test_trace_histogram_merges),
        cmocka_unit_test(test_trace_count_near_fine_expiry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
