/* SPDX-License-Identifier: Apache-2.0 */
/* App operations against a real redis-server: who may do what to which app, what each change
 * records, and the refusals a user sees. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apps.h"
#include "redis_fixture.h"

/* a backend whose only opinion is the local backend's: it needs a command */
static int needs_command(void *state, const struct cluster_app *app, struct emp_error *err)
{
    if (!app->spec->command)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "command",
                             "this backend runs command: add one");
    return 0;
}

static const struct cluster_backend_ops picky_ops = {.name = "picky", .validate = needs_command};

struct ctx {
    struct redis_fixture redis;
    struct store *store;
    struct cluster *cluster;
    struct apps *apps;
    int wakes;
};

static void count_wake(void *arg)
{
    ((struct ctx *)arg)->wakes++;
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct emp_error err = {0};
    if (redis_fixture_start(&c->redis) < 0 || store_open(c->redis.url, &c->store, &err) < 0 ||
        cluster_open_ops(&picky_ops, &(struct cluster_config){0}, &c->cluster, &err) < 0)
        return -1;
    struct apps_config config = {.max_apps_per_user = 3, .wake = count_wake, .wake_ctx = c};
    if (apps_new(c->store, c->cluster, &config, &c->apps) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    apps_free(c->apps);
    cluster_close(c->cluster);
    store_close(c->store);
    redis_fixture_stop(&c->redis);
    free(c);
    return 0;
}

static const struct auth_principal alice = {.role = ROLE_DEVELOPER, .username = "alice"};
static const struct auth_principal bob = {.role = ROLE_DEVELOPER, .username = "bob"};
static const struct auth_principal scheduler = {.role = ROLE_SCHEDULER};

static struct store_app *deploy(struct ctx *c, const struct auth_principal *who, const char *name)
{
    char spec[256];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"%s\",\"command\":[\"./run\"],\"port\":8080,"
             "\"envs\":[{\"name\":\"SECRET\",\"value\":\"s3cret\"}],"
             "\"replicas\":{\"min\":1,\"max\":4,\"initial\":2}}",
             name);
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    struct store_app *app = NULL;
    int r = apps_deploy(c->apps, who, spec, strlen(spec), &app, &errs);
    if (r < 0)
        fail_msg("deploy %s: %s", name, errs.count ? errs.items[0].message : "?");
    return app;
}

static void test_deploy(void **state)
{
    struct ctx *c = *state;
    struct store_app *app = deploy(c, &alice, "songs");
    assert_int_equal(app->state, APP_DEPLOYING);
    assert_int_equal(app->desired, DESIRED_RUNNING);
    assert_int_equal(app->desired_replicas, 2);
    assert_int_equal(app->generation, 1);
    assert_string_equal(app->owner, "alice");
    assert_true(names_is_uuid(app->id));
    assert_int_equal(c->wakes, 1);

    struct store_app *got;
    struct emp_error err = {0};
    assert_int_equal(apps_get(c->apps, &alice, app->id, &got, &err), 0);
    assert_string_equal(got->name, "songs");
    store_app_free(got);
    assert_int_equal(apps_get(c->apps, &alice, "songs", &got, &err), 0);
    assert_string_equal(got->id, app->id);
    store_app_free(got);

    /* a second songs for alice is a conflict that names the first */
    const char *dup = "{\"name\":\"songs\",\"command\":[\"x\"],\"port\":1}";
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(apps_deploy(c->apps, &alice, dup, strlen(dup), &got, &errs), -EEXIST);
    assert_int_equal(errs.items[0].code, EMP_ERR_CONFLICT);
    assert_non_null(strstr(errs.items[0].message, app->id));
    /* ... but bob may have his own songs */
    store_app_free(deploy(c, &bob, "songs"));

    /* the backend's own requirement */
    const char *no_command = "{\"name\":\"img\",\"docker_image\":\"a/b:1\",\"port\":1}";
    emp_errlist_init(&errs);
    assert_int_equal(apps_deploy(c->apps, &alice, no_command, strlen(no_command), &got, &errs),
                     -EINVAL);
    assert_string_equal(errs.items[0].field, "command");

    /* the account's limit (3) */
    store_app_free(deploy(c, &alice, "two"));
    store_app_free(deploy(c, &alice, "three"));
    const char *fourth = "{\"name\":\"four\",\"command\":[\"x\"],\"port\":1}";
    emp_errlist_init(&errs);
    assert_int_equal(apps_deploy(c->apps, &alice, fourth, strlen(fourth), &got, &errs), -EDQUOT);
    assert_non_null(strstr(errs.items[0].message, "3 apps"));
    store_app_free(app);
}

static void test_isolation(void **state)
{
    struct ctx *c = *state;
    struct store_app *app = deploy(c, &alice, "private");
    struct store_app *got;
    struct emp_error err = {0};
    /* bob sees no difference between alice's app and no app at all */
    assert_int_equal(apps_get(c->apps, &bob, app->id, &got, &err), -ENOENT);
    assert_int_equal(err.code, EMP_ERR_NOT_FOUND);
    emp_error_clear(&err);
    assert_int_equal(apps_get(c->apps, &bob, "private", &got, &err), -ENOENT);
    emp_error_clear(&err);
    assert_int_equal(apps_set_desired(c->apps, &bob, app->id, DESIRED_REMOVED, &got, &err),
                     -ENOENT);
    emp_error_clear(&err);
    assert_int_equal(apps_scale(c->apps, &bob, app->id, 3, &got, &err), -ENOENT);
    emp_error_clear(&err);
    assert_int_equal(apps_set_metric(c->apps, &bob, app->id, "latency", "p95 < 1s", &got, &err),
                     -ENOENT);
    struct store_app **list;
    size_t n;
    char *next;
    assert_int_equal(apps_list(c->apps, &bob, "", 50, &list, &n, &next, &err), 0);
    assert_int_equal(n, 0);
    store_app_list_free(list, n);
    /* alice's app is untouched */
    assert_int_equal(apps_get(c->apps, &alice, app->id, &got, &err), 0);
    assert_int_equal(got->generation, 1);
    store_app_free(got);
    store_app_free(app);
}

static void test_changes(void **state)
{
    struct ctx *c = *state;
    struct store_app *app = deploy(c, &alice, "svc");
    struct store_app *got;
    struct emp_error err = {0};
    assert_int_equal(apps_scale(c->apps, &alice, "svc", 4, &got, &err), 0);
    assert_int_equal(got->desired_replicas, 4);
    assert_int_equal(got->generation, 2);
    store_app_free(got);
    assert_int_equal(apps_scale(c->apps, &alice, "svc", 5, &got, &err), -ERANGE);
    assert_int_equal(err.code, EMP_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(err.message, "use 1 to 4"));
    emp_error_clear(&err);
    assert_int_equal(apps_scale(c->apps, &alice, "svc", 0, &got, &err), -ERANGE);
    emp_error_clear(&err);

    assert_int_equal(apps_set_metric(c->apps, &alice, "svc", "throughput", "50 rps", &got, &err),
                     0);
    assert_non_null(strstr(got->spec_json, "{\"metric\":\"throughput\",\"values\":\"50 rps\"}"));
    store_app_free(got);
    assert_int_equal(apps_set_metric(c->apps, &alice, "svc", "latency", "soon", &got, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "p95 < 200ms"));
    emp_error_clear(&err);

    assert_int_equal(apps_set_desired(c->apps, &alice, "svc", DESIRED_STOPPED, &got, &err), 0);
    assert_int_equal(got->desired, DESIRED_STOPPED);
    store_app_free(got);
    /* stopping twice is fine */
    assert_int_equal(apps_set_desired(c->apps, &alice, "svc", DESIRED_STOPPED, &got, &err), 0);
    store_app_free(got);
    assert_int_equal(apps_set_desired(c->apps, &alice, "svc", DESIRED_REMOVED, &got, &err), 0);
    assert_int_equal(got->state, APP_REMOVING);
    store_app_free(got);
    /* a removing app can no longer be changed, but removing again is fine */
    assert_int_equal(apps_set_desired(c->apps, &alice, "svc", DESIRED_RUNNING, &got, &err), -EBUSY);
    assert_int_equal(err.code, EMP_ERR_CONFLICT);
    emp_error_clear(&err);
    assert_int_equal(apps_scale(c->apps, &alice, "svc", 2, &got, &err), -EBUSY);
    emp_error_clear(&err);
    assert_int_equal(apps_set_desired(c->apps, &alice, "svc", DESIRED_REMOVED, &got, &err), 0);
    store_app_free(got);
    store_app_free(app);
}

static void test_scheduler_role(void **state)
{
    struct ctx *c = *state;
    struct store_app *a = deploy(c, &alice, "one");
    struct store_app *b = deploy(c, &bob, "two");
    struct store_app *got;
    struct emp_error err = {0};
    assert_int_equal(apps_get(c->apps, &scheduler, a->id, &got, &err), 0);
    store_app_free(got);
    /* by id only: names are per user */
    assert_int_equal(apps_get(c->apps, &scheduler, "one", &got, &err), -ENOENT);
    emp_error_clear(&err);
    assert_int_equal(apps_scale(c->apps, &scheduler, b->id, 3, &got, &err), 0);
    assert_int_equal(got->desired_replicas, 3);
    store_app_free(got);
    assert_int_equal(apps_set_desired(c->apps, &scheduler, a->id, DESIRED_STOPPED, &got, &err),
                     -EPERM);
    assert_int_equal(err.code, EMP_ERR_FORBIDDEN);
    emp_error_clear(&err);
    assert_int_equal(apps_set_metric(c->apps, &scheduler, a->id, "latency", "p95<1s", &got, &err),
                     -EPERM);
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    const char *spec = "{\"name\":\"x\",\"command\":[\"x\"],\"port\":1}";
    assert_int_equal(apps_deploy(c->apps, &scheduler, spec, strlen(spec), &got, &errs), -EPERM);
    struct store_app **list;
    size_t n;
    char *next;
    assert_int_equal(apps_list(c->apps, &scheduler, "", 50, &list, &n, &next, &err), 0);
    assert_int_equal(n, 2);
    store_app_list_free(list, n);
    store_app_free(a);
    store_app_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deploy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scheduler_role, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
