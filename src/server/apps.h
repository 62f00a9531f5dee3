/* SPDX-License-Identifier: Apache-2.0 */
/* The app operations behind the API (REQ-3 ... REQ-13): who may do what to which app, and the
 * desired-state changes they make in the store. They never call a cluster backend's operations:
 * they record intent and wake the reconciler, which does the work. */
#ifndef EMP_APPS_H
#define EMP_APPS_H

#include <stddef.h>

#include "auth.h"
#include "cluster.h"
#include "emp/error.h"
#include "store.h"

#define APPS_PAGE_DEFAULT 50
#define APPS_PAGE_MAX     200

struct apps_config {
    int max_apps_per_user;
    void (*wake)(void *ctx); /* tells the reconciler there is work; may be NULL */
    void *wake_ctx;
};

struct apps;

/* store and cluster are borrowed and must outlive the result. Free with apps_free(). */
int apps_new(struct store *store, struct cluster *cluster, const struct apps_config *config,
             struct apps **ret_apps);
void apps_free(struct apps *apps);

/* Every function returns 0 and, where there is one, a new record in *ret_app (store_app_free), or a
 * negative errno with err (or errs) saying what went wrong in words for the caller. A developer
 * sees only their own apps: another's answer not_found, exactly as a missing one. */

/* Deploys the spec in body for caller (REQ-3, REQ-4). errs lists every problem of the spec. */
int apps_deploy(struct apps *apps, const struct auth_principal *caller, const char *body,
                size_t body_len, struct store_app **ret_app, struct emp_errlist *errs);

/* ref is an app id, or the name of one of caller's apps. */
int apps_get(struct apps *apps, const struct auth_principal *caller, const char *ref,
             struct store_app **ret_app, struct emp_error *err);

/* Whether caller may see app at all (it is theirs, or caller is the scheduler). */
bool apps_visible(const struct auth_principal *caller, const struct store_app *app);

int apps_list(struct apps *apps, const struct auth_principal *caller, const char *cursor,
              size_t limit, struct store_app ***ret_apps, size_t *ret_count, char **ret_next_cursor,
              struct emp_error *err);

/* REQ-10, REQ-11: desired = DESIRED_STOPPED or DESIRED_RUNNING (DESIRED_REMOVED removes without
 * purging). */
int apps_set_desired(struct apps *apps, const struct auth_principal *caller, const char *ref,
                     enum app_desired desired, struct store_app **ret_app, struct emp_error *err);

/* REQ-12: removes the app; purge also deletes the persistent data of a stateful app, which is
 * kept otherwise. */
int apps_remove(struct apps *apps, const struct auth_principal *caller, const char *ref, bool purge,
                struct store_app **ret_app, struct emp_error *err);

/* The scale endpoint: replicas within the app's min..max. Open to the owner and the scheduler. */
int apps_scale(struct apps *apps, const struct auth_principal *caller, const char *ref,
               long long replicas, struct store_app **ret_app, struct emp_error *err);

/* REQ-8: adds or replaces one quality metric. */
int apps_set_metric(struct apps *apps, const struct auth_principal *caller, const char *ref,
                    const char *metric, const char *values, struct store_app **ret_app,
                    struct emp_error *err);

#endif
