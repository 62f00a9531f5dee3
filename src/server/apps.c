/* SPDX-License-Identifier: Apache-2.0 */
/* App operations: permission checks, validation, and optimistic read-decide-write cycles on the
 * store, so that two concurrent changes to one app both land or one is retried, never lost. */
#include "apps.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "emp/names.h"
#include "emp/spec.h"
#include "emp/timeutil.h"

#define CAS_ATTEMPTS 16

struct apps {
    struct store *store;
    struct cluster *cluster;
    struct apps_config config;
};

int apps_new(struct store *store, struct cluster *cluster, const struct apps_config *config,
             struct apps **ret_apps)
{
    struct apps *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->store = store;
    a->cluster = cluster;
    a->config = *config;
    *ret_apps = a;
    return 0;
}

void apps_free(struct apps *apps)
{
    free(apps);
}

static void wake(struct apps *a)
{
    if (a->config.wake)
        a->config.wake(a->config.wake_ctx);
}

bool apps_visible(const struct auth_principal *caller, const struct store_app *app)
{
    return caller->role == ROLE_SCHEDULER ||
           (caller->role == ROLE_DEVELOPER && strcmp(caller->username, app->owner) == 0);
}

static int not_found(const char *ref, struct emp_error *err)
{
    return emp_error_set(err, -ENOENT, EMP_ERR_NOT_FOUND, NULL,
                         "no app '%.64s' among your apps: see `emp list`", ref);
}

static int developer_only(const struct auth_principal *caller, const char *what,
                          struct emp_error *err)
{
    if (caller->role == ROLE_DEVELOPER)
        return 0;
    return emp_error_set(err, -EPERM, EMP_ERR_FORBIDDEN, NULL,
                         "the scheduler credential may list and read apps and set their replicas, "
                         "not %s",
                         what);
}

/* Every app that spec's envs refer to (${app:NAME}) is one of owner's, or spec's own. */
static int check_refs(struct apps *apps, const char *owner, const struct emp_spec *spec,
                      struct emp_errlist *errs)
{
    char names[SPEC_REFS_MAX][NAMES_LABEL_MAX + 1];
    size_t n = spec_refs(spec, names);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], spec->name) == 0)
            continue;
        char id[NAMES_UUID_LEN + 1];
        struct emp_error err = {0};
        int rc = store_app_find(apps->store, owner, names[i], id, &err);
        if (rc == -ENOENT) {
            emp_errlist_add(errs, EMP_ERR_INVALID_FIELD, "envs",
                            "envs refer to ${app:%s}, but you have no app called '%s': deploy it "
                            "first (an env may refer only to your own apps)",
                            names[i], names[i]);
            r = -EINVAL;
        } else if (rc < 0) {
            emp_errlist_add(errs, err.code, NULL, "%s", err.message);
            return rc;
        }
    }
    return r;
}

int apps_deploy(struct apps *apps, const struct auth_principal *caller, const char *body,
                size_t body_len, struct store_app **ret_app, struct emp_errlist *errs)
{
    struct emp_error err = {0};
    if (developer_only(caller, "deploy apps", &err) < 0) {
        emp_errlist_add(errs, err.code, NULL, "%s", err.message);
        return -EPERM;
    }
    struct emp_spec *spec = NULL;
    struct store_app *app = NULL;
    int r = spec_parse(body, body_len, &spec, errs);
    if (r < 0)
        return r;
    uuid_t uuid;
    char id[NAMES_UUID_LEN + 1];
    uuid_generate_random(uuid);
    uuid_unparse_lower(uuid, id);
    struct cluster_app capp = {
        .id = id,
        .owner = caller->username,
        .name = spec->name,
        .spec = spec,
        .replicas = spec->replicas_initial,
    };
    r = cluster_validate(apps->cluster, &capp, &err);
    if (r < 0)
        goto fail;
    r = check_refs(apps, caller->username, spec, errs);
    if (r < 0)
        goto out;
    app = calloc(1, sizeof(*app));
    if (!app) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(app->id, id, sizeof(id));
    snprintf(app->owner, sizeof(app->owner), "%s", caller->username);
    snprintf(app->name, sizeof(app->name), "%s", spec->name);
    app->spec_json = spec_to_json(spec, SPEC_JSON_DEFAULT);
    if (!app->spec_json) {
        r = -ENOMEM;
        goto out;
    }
    app->created_ms = app->updated_ms = time_now_ms();
    app->desired = DESIRED_RUNNING;
    app->desired_replicas = spec->replicas_initial;
    app->generation = 1;
    app->state = APP_DEPLOYING;
    r = store_app_create(apps->store, app, apps->config.max_apps_per_user, &err);
    if (r == -EEXIST) {
        char existing[NAMES_UUID_LEN + 1] = "";
        store_app_find(apps->store, caller->username, spec->name, existing, NULL);
        emp_error_set(&err, r, EMP_ERR_CONFLICT, "name",
                      "you already have an app called '%s'%s%s%s: choose another name, or remove "
                      "that app first",
                      spec->name, existing[0] ? " (id " : "", existing, existing[0] ? ")" : "");
    } else if (r == -EDQUOT) {
        emp_error_set(&err, r, EMP_ERR_CONFLICT, NULL,
                      "you have %d apps, the most one account may have: remove one first",
                      apps->config.max_apps_per_user);
    }
    if (r < 0)
        goto fail;
    wake(apps);
    *ret_app = app;
    app = NULL;
    r = 0;
    goto out;
fail:
    emp_errlist_add(errs, err.code, err.field, "%s", err.message);
out:
    store_app_free(app);
    spec_free(spec);
    return r;
}

int apps_get(struct apps *apps, const struct auth_principal *caller, const char *ref,
             struct store_app **ret_app, struct emp_error *err)
{
    char id[NAMES_UUID_LEN + 1];
    int r;
    if (names_is_uuid(ref)) {
        snprintf(id, sizeof(id), "%s", ref);
    } else {
        if (caller->role != ROLE_DEVELOPER || !names_is_dns_label(ref, NAMES_LABEL_MAX))
            return not_found(ref, err);
        r = store_app_find(apps->store, caller->username, ref, id, err);
        if (r == -ENOENT)
            return not_found(ref, err);
        if (r < 0)
            return r;
    }
    struct store_app *app;
    r = store_app_get(apps->store, id, &app, err);
    if (r == -ENOENT)
        return not_found(ref, err);
    if (r < 0)
        return r;
    if (!apps_visible(caller, app)) {
        store_app_free(app);
        return not_found(ref, err);
    }
    *ret_app = app;
    return 0;
}

int apps_list(struct apps *apps, const struct auth_principal *caller, const char *cursor,
              size_t limit, struct store_app ***ret_apps, size_t *ret_count, char **ret_next_cursor,
              struct emp_error *err)
{
    if (limit == 0 || limit > APPS_PAGE_MAX)
        limit = APPS_PAGE_DEFAULT;
    const char *owner = caller->role == ROLE_SCHEDULER ? NULL : caller->username;
    return store_app_list(apps->store, owner, cursor, limit, ret_apps, ret_count, ret_next_cursor,
                          err);
}

/* What a change decides from the app as read: fills *change, or fails with err. */
typedef int (*decide_fn)(const struct store_app *app, void *arg, struct store_app_change *change,
                         char **owned_spec, struct emp_error *err);

/* Reads, decides and writes with the generation read, until the write lands. */
static int change_app(struct apps *apps, const struct auth_principal *caller, const char *ref,
                      decide_fn decide, void *arg, struct store_app **ret_app,
                      struct emp_error *err)
{
    for (int attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        struct store_app *app;
        int r = apps_get(apps, caller, ref, &app, err);
        if (r < 0)
            return r;
        struct store_app_change change = {
            .desired = -1, .desired_replicas = -1, .state = -1, .purge = -1};
        char *spec_json = NULL;
        r = decide(app, arg, &change, &spec_json, err);
        if (r < 0) {
            store_app_free(app);
            return r;
        }
        change.spec_json = spec_json;
        int64_t generation;
        r = store_app_update(apps->store, app->id, app->generation, &change, &generation, err);
        if (r == -ESTALE) {
            free(spec_json);
            store_app_free(app);
            continue;
        }
        if (r == -ENOENT) {
            free(spec_json);
            store_app_free(app);
            return not_found(ref, err);
        }
        if (r < 0) {
            free(spec_json);
            store_app_free(app);
            return r;
        }
        /* what the caller gets back is the app as it now is in the store */
        if (change.desired >= 0)
            app->desired = (enum app_desired)change.desired;
        if (change.desired_replicas >= 0)
            app->desired_replicas = change.desired_replicas;
        if (change.state >= 0)
            app->state = (enum app_state)change.state;
        if (change.purge >= 0)
            app->purge = change.purge;
        if (spec_json) {
            free(app->spec_json);
            app->spec_json = spec_json;
        }
        app->generation = generation;
        app->updated_ms = time_now_ms();
        wake(apps);
        *ret_app = app;
        return 0;
    }
    return emp_error_set(err, -EBUSY, EMP_ERR_BUSY, NULL,
                         "app '%.64s' is being changed by many requests at once: retry", ref);
}

static int refuse_if_removing(const struct store_app *app, struct emp_error *err)
{
    if (app->desired != DESIRED_REMOVED)
        return 0;
    return emp_error_set(err, -EBUSY, EMP_ERR_CONFLICT, NULL,
                         "app '%s' is being removed: it can no longer be changed", app->name);
}

struct desired_arg {
    enum app_desired desired;
    bool purge;
};

static int decide_desired(const struct store_app *app, void *arg, struct store_app_change *change,
                          char **owned_spec, struct emp_error *err)
{
    const struct desired_arg *want = arg;
    if (want->desired != DESIRED_REMOVED) {
        int r = refuse_if_removing(app, err);
        if (r < 0)
            return r;
    }
    change->desired = (int)want->desired;
    if (want->desired == DESIRED_REMOVED) {
        change->state = APP_REMOVING;
        change->purge = want->purge;
    }
    return 0;
}

int apps_set_desired(struct apps *apps, const struct auth_principal *caller, const char *ref,
                     enum app_desired desired, struct store_app **ret_app, struct emp_error *err)
{
    static const char *const what[] = {"start apps", "stop apps", "remove apps"};
    int r = developer_only(caller, what[desired], err);
    if (r < 0)
        return r;
    struct desired_arg arg = {desired, false};
    return change_app(apps, caller, ref, decide_desired, &arg, ret_app, err);
}

int apps_remove(struct apps *apps, const struct auth_principal *caller, const char *ref, bool purge,
                struct store_app **ret_app, struct emp_error *err)
{
    int r = developer_only(caller, "remove apps", err);
    if (r < 0)
        return r;
    struct desired_arg arg = {DESIRED_REMOVED, purge};
    return change_app(apps, caller, ref, decide_desired, &arg, ret_app, err);
}

static int read_spec(const struct store_app *app, struct emp_spec **ret, struct emp_error *err)
{
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    int r = spec_parse(app->spec_json, strlen(app->spec_json), ret, &errs);
    if (r < 0)
        return emp_error_set(err, r, EMP_ERR_INTERNAL, NULL,
                             "the stored spec of app '%s' does not parse: %s", app->name,
                             errs.count ? errs.items[0].message : "unknown problem");
    return 0;
}

static int decide_scale(const struct store_app *app, void *arg, struct store_app_change *change,
                        char **owned_spec, struct emp_error *err)
{
    long long replicas = *(long long *)arg;
    int r = refuse_if_removing(app, err);
    if (r < 0)
        return r;
    struct emp_spec *spec;
    r = read_spec(app, &spec, err);
    if (r < 0)
        return r;
    int min = spec->replicas_min, max = spec->replicas_max;
    spec_free(spec);
    if (replicas < min || replicas > max)
        return emp_error_set(err, -ERANGE, EMP_ERR_OUT_OF_RANGE, "replicas",
                             "replicas %lld is outside the range of app '%s': use %d to %d (its "
                             "replicas.min and replicas.max)",
                             replicas, app->name, min, max);
    change->desired_replicas = (int)replicas;
    return 0;
}

int apps_scale(struct apps *apps, const struct auth_principal *caller, const char *ref,
               long long replicas, struct store_app **ret_app, struct emp_error *err)
{
    return change_app(apps, caller, ref, decide_scale, &replicas, ret_app, err);
}

struct metric_arg {
    const char *metric;
    const char *values;
};

static int decide_metric(const struct store_app *app, void *arg, struct store_app_change *change,
                         char **owned_spec, struct emp_error *err)
{
    const struct metric_arg *m = arg;
    int r = refuse_if_removing(app, err);
    if (r < 0)
        return r;
    struct emp_spec *spec;
    r = read_spec(app, &spec, err);
    if (r < 0)
        return r;
    r = spec_set_metric(spec, m->metric, m->values, err);
    if (r == 0) {
        *owned_spec = spec_to_json(spec, SPEC_JSON_DEFAULT);
        if (!*owned_spec)
            r = -ENOMEM;
    }
    spec_free(spec);
    return r;
}

int apps_set_metric(struct apps *apps, const struct auth_principal *caller, const char *ref,
                    const char *metric, const char *values, struct store_app **ret_app,
                    struct emp_error *err)
{
    int r = developer_only(caller, "change quality metrics", err);
    if (r < 0)
        return r;
    struct metric_arg arg = {metric, values};
    return change_app(apps, caller, ref, decide_metric, &arg, ret_app, err);
}
