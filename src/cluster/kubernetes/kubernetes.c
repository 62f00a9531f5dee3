/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes backend: apps as Deployments (or StatefulSets with a headless Service) and a
 * Service each, in a namespace per user, through the REST API (kube_client). What the cluster holds
 * is known from informers (one LIST and a WATCH per kind), so status costs no API call; changes
 * seen there are reported to the reconciler. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "emp/log.h"
#include "emp/timeutil.h"
#include "kube_client.h"
#include "kube_config.h"
#include "kube_informer.h"
#include "kube_manifest.h"

#define APPLY_ATTEMPTS  4
#define DELETE_ATTEMPTS 3
#define REMOVE_WAIT_MS  30000
/* How long what EMP itself wrote (a created workload, a replica count) outranks an informer that
 * has not seen it yet: a watch event takes a moment to arrive, and until then the reconciler would
 * act again on the old state (create what exists, scale what is scaled). Past this, the informer
 * wins, so a change made behind EMP's back is repaired. Kubernetes' own controllers call these
 * "expectations". */
#define EXPECT_MS       10000
#define EXPECT_PRUNE_AT 4096 /* entries before expired ones are swept */
#define PROBLEM_KINDS   4    /* distinct pod problems an app's reason names */

struct kube {
    struct cluster_config config;
    struct kube_config *kube_config;
    struct kube_client *client;
    struct kube_manifest_options options;
    char *kafka_address, *zipkin_url, *service_type, *volume_size;
    struct kube_informer *deployments, *statefulsets, *services, *pods;
    pthread_mutex_t lock;
    /* one namespace is created at a time, so that workers deploying a new user's first apps
     * together do not all try to create it */
    pthread_mutex_t namespace_lock;
    json_t *namespaces; /* the ones known to exist */
    json_t *expected;   /* app id -> {"replicas": N, "until": monotonic ms}: EMP's own writes */
};

static void changed(void *ctx, const char *app_id)
{
    struct kube *k = ctx;
    if (k->config.changed)
        k->config.changed(k->config.changed_token, app_id);
}

/* ---- small helpers ---- */

static const char *label(json_t *obj, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static const char *obj_name(json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
}

static json_int_t int_at(json_t *obj, const char *a, const char *b)
{
    return json_integer_value(json_object_get(json_object_get(obj, a), b));
}

/* The object of the app called name in an informer's list, or NULL. Borrowed from objects. */
static json_t *named(json_t *objects, const char *name)
{
    size_t i;
    json_t *obj;
    json_array_foreach(objects, i, obj)
    {
        const char *n = obj_name(obj);
        if (n && strcmp(n, name) == 0)
            return obj;
    }
    return NULL;
}

static struct kube_informer *workloads_of(struct kube *k, const struct cluster_app *app)
{
    return app->spec->stateless ? k->deployments : k->statefulsets;
}

static void headless_name(const struct cluster_app *app, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", app->name, KUBE_HEADLESS_SUFFIX);
}

/* ---- expectations: what EMP wrote and the informers may not show yet ---- */

static void expect(struct kube *k, const char *app_id, int replicas)
{
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&k->lock);
    if (json_object_size(k->expected) >= EXPECT_PRUNE_AT) {
        const char *id;
        json_t *e, *tmp;
        json_object_foreach_safe(k->expected, tmp, id, e)
        {
            if (json_integer_value(json_object_get(e, "until")) < now)
                json_object_del(k->expected, id);
        }
    }
    json_object_set_new(
        k->expected, app_id,
        json_pack("{s:i, s:I}", "replicas", replicas, "until", (json_int_t)(now + EXPECT_MS)));
    pthread_mutex_unlock(&k->lock);
}

/* The replica count EMP last wrote for the app, if that was recent; -1 when there is none. */
static int expected_replicas(struct kube *k, const char *app_id)
{
    int replicas = -1;
    pthread_mutex_lock(&k->lock);
    json_t *e = json_object_get(k->expected, app_id);
    if (e && json_integer_value(json_object_get(e, "until")) >= time_mono_ms())
        replicas = (int)json_integer_value(json_object_get(e, "replicas"));
    else if (e)
        json_object_del(k->expected, app_id);
    pthread_mutex_unlock(&k->lock);
    return replicas;
}

static void forget_expectation(struct kube *k, const char *app_id)
{
    pthread_mutex_lock(&k->lock);
    json_object_del(k->expected, app_id);
    pthread_mutex_unlock(&k->lock);
}

/* The error of a call made before the informers have listed once: why they could not, if they
 * tried and failed. */
static int not_synced(struct kube *k, struct emp_error *err)
{
    char why[EMP_ERR_MESSAGE_MAX] = "";
    struct kube_informer *all[] = {k->deployments, k->statefulsets, k->services, k->pods};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (kube_informer_error(all[i], why, sizeof(why)))
            return emp_error_set(err, -EAGAIN, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                 "cannot read the state of the Kubernetes cluster: %s", why);
    return emp_error_set(err, -EAGAIN, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                         "the state of the Kubernetes cluster at %s is still being read",
                         k->kube_config->server);
}

static bool synced(struct kube *k)
{
    return kube_informer_synced(k->deployments) && kube_informer_synced(k->statefulsets) &&
           kube_informer_synced(k->services) && kube_informer_synced(k->pods);
}

/* ---- applying objects ---- */

static void forget_namespace(struct kube *k, const char *owner)
{
    char ns[64];
    kube_namespace_name(owner, ns, sizeof(ns));
    pthread_mutex_lock(&k->lock);
    json_object_del(k->namespaces, ns);
    pthread_mutex_unlock(&k->lock);
}

static bool namespace_known(struct kube *k, const char *ns)
{
    pthread_mutex_lock(&k->lock);
    bool known = json_object_get(k->namespaces, ns) != NULL;
    pthread_mutex_unlock(&k->lock);
    return known;
}

static int ensure_namespace(struct kube *k, const char *owner, struct emp_error *err)
{
    char ns[64];
    kube_namespace_name(owner, ns, sizeof(ns));
    if (namespace_known(k, ns))
        return 0;
    pthread_mutex_lock(&k->namespace_lock);
    int r = 0;
    if (!namespace_known(k, ns)) {
        json_t *body = kube_namespace(owner);
        struct kube_response resp = {0};
        r = kube_request(k->client, "POST", "/api/v1/namespaces", body, NULL, &resp, err);
        json_decref(body);
        if (r == 0 && resp.status != 201 && resp.status != 409) {
            char what[128];
            snprintf(what, sizeof(what), "create namespace %s", ns);
            r = kube_error(k->client, what, &resp, err);
        }
        kube_response_clear(&resp);
        if (r == 0) {
            pthread_mutex_lock(&k->lock);
            json_object_set_new(k->namespaces, ns, json_true());
            pthread_mutex_unlock(&k->lock);
        }
    }
    pthread_mutex_unlock(&k->namespace_lock);
    return r;
}

/* Creates or replaces the object desired (at collection/name). An object of that name that EMP
 * does not manage, or that belongs to another app, is reported and left alone. keep_fields are
 * spec fields copied from the existing object into a replacement (a Service's clusterIP). */
static int apply(struct kube *k, const char *collection, const char *kind, json_t *desired,
                 const char *app_id, const char *const *keep_fields, struct emp_error *err)
{
    const char *name = obj_name(desired);
    char path[1024], what[512];
    snprintf(path, sizeof(path), "%s/%s", collection, name);
    snprintf(what, sizeof(what), "create or update %s %s", kind, name);
    for (int attempt = 0; attempt < APPLY_ATTEMPTS; attempt++) {
        struct kube_response resp = {0};
        /* create first: for a new app (the common case) one call does it */
        int r = kube_request(k->client, "POST", collection, desired, NULL, &resp, err);
        if (r < 0)
            return r;
        long status = resp.status;
        if (status == 201 || status == 200) {
            kube_response_clear(&resp);
            return 0;
        }
        if (status != 409) {
            r = kube_error(k->client, what, &resp, err);
            kube_response_clear(&resp);
            return r;
        }
        kube_response_clear(&resp);
        /* it exists: whose is it? */
        r = kube_request(k->client, "GET", path, NULL, NULL, &resp, err);
        if (r < 0)
            return r;
        if (resp.status == 404) {
            kube_response_clear(&resp);
            continue; /* deleted meanwhile: create again */
        }
        if (resp.status != 200) {
            r = kube_error(k->client, what, &resp, err);
            kube_response_clear(&resp);
            return r;
        }
        json_t *existing = resp.json;
        const char *manager = label(existing, KUBE_LABEL_MANAGED_BY);
        const char *owner_app = label(existing, KUBE_LABEL_APP_ID);
        if (!manager || strcmp(manager, KUBE_MANAGER) != 0) {
            r = emp_error_set(err, -EEXIST, EMP_ERR_CONFLICT, "name",
                              "%s %s already exists in namespace %s and EMP does not manage it: "
                              "remove it, or give the app another name",
                              kind, name,
                              json_string_value(json_object_get(
                                  json_object_get(desired, "metadata"), "namespace")));
            kube_response_clear(&resp);
            return r;
        }
        if (!owner_app || strcmp(owner_app, app_id) != 0) {
            r = emp_error_set(err, -EEXIST, EMP_ERR_CONFLICT, "name",
                              "%s %s belongs to another EMP app (%s), which is still being "
                              "removed: retry once it is gone",
                              kind, name, owner_app ? owner_app : "unknown");
            kube_response_clear(&resp);
            return r;
        }
        json_t *replacement = json_deep_copy(desired);
        json_t *meta = json_object_get(replacement, "metadata");
        json_object_set(meta, "resourceVersion",
                        json_object_get(json_object_get(existing, "metadata"), "resourceVersion"));
        for (const char *const *f = keep_fields; f && *f; f++) {
            json_t *kept = json_object_get(json_object_get(existing, "spec"), *f);
            if (kept)
                json_object_set(json_object_get(replacement, "spec"), *f, kept);
        }
        kube_response_clear(&resp);
        r = kube_request(k->client, "PUT", path, replacement, NULL, &resp, err);
        json_decref(replacement);
        if (r < 0)
            return r;
        status = resp.status;
        if (status == 200 || status == 201) {
            kube_response_clear(&resp);
            return 0;
        }
        if (status != 409) {
            r = kube_error(k->client, what, &resp, err);
            kube_response_clear(&resp);
            return r;
        }
        kube_response_clear(&resp); /* changed meanwhile (stale resourceVersion): again */
    }
    return emp_error_set(err, -EBUSY, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                         "%s: it keeps changing under EMP's feet; retrying later", what);
}

static void collection_of(const struct cluster_app *app, const char *resource, char *buf,
                          size_t size)
{
    char ns[64];
    kube_namespace_name(app->owner, ns, sizeof(ns));
    bool apps_group = strcmp(resource, "deployments") == 0 || strcmp(resource, "statefulsets") == 0;
    snprintf(buf, size, "%s/namespaces/%s/%s", apps_group ? "/apis/apps/v1" : "/api/v1", ns,
             resource);
}

/* ---- operations ---- */

static int kube_validate(void *state, const struct cluster_app *app, struct emp_error *err)
{
    if (!app->spec->docker_image)
        return emp_error_set(err, -EINVAL, EMP_ERR_MISSING_FIELD, "docker_image",
                             "app '%s' has no docker_image: the Kubernetes backend runs an image, "
                             "so add \"docker_image\": \"registry/repository:tag\" to the spec "
                             "(command is what the local backend runs)",
                             app->name);
    return 0;
}

/* Creates what the informers do not show of the app's objects (all of them for a new app; the
 * one deleted behind EMP's back when repairing). *ret_replicas: the replica count of the
 * workload now. */
static int apply_missing(struct kube *k, const struct cluster_app *app, int *ret_replicas,
                         struct emp_error *err)
{
    static const char *const service_kept[] = {"clusterIP", "clusterIPs", NULL};
    char collection[512], headless[128];
    headless_name(app, headless, sizeof(headless));
    json_t *services = kube_informer_objects(k->services, app->id);
    json_t *workloads = kube_informer_objects(workloads_of(k, app), app->id);
    int r = 0;
    if (!app->spec->stateless && !named(services, headless)) {
        json_t *doc = kube_headless_service(app);
        collection_of(app, "services", collection, sizeof(collection));
        r = apply(k, collection, "Service", doc, app->id, service_kept, err);
        json_decref(doc);
    }
    json_t *workload = named(workloads, app->name);
    *ret_replicas = workload ? (int)int_at(workload, "spec", "replicas") : app->replicas;
    if (r == 0 && !workload) {
        json_t *doc = kube_workload(app, &k->options);
        collection_of(app, kube_workload_resource(app), collection, sizeof(collection));
        r = apply(k, collection, app->spec->stateless ? "Deployment" : "StatefulSet", doc, app->id,
                  NULL, err);
        json_decref(doc);
    }
    if (r == 0 && !named(services, app->name)) {
        json_t *doc = kube_service(app, &k->options);
        collection_of(app, "services", collection, sizeof(collection));
        r = apply(k, collection, "Service", doc, app->id, service_kept, err);
        json_decref(doc);
    }
    json_decref(services);
    json_decref(workloads);
    return r;
}

static int kube_deploy(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct kube *k = state;
    int r = kube_validate(state, app, err);
    if (r < 0)
        return r;
    if (!synced(k))
        return not_synced(k, err);
    int replicas = app->replicas;
    for (int attempt = 0;; attempt++) {
        r = ensure_namespace(k, app->owner, err);
        if (r == 0)
            r = apply_missing(k, app, &replicas, err);
        if (r != -ENOENT || attempt > 0)
            break;
        /* 404 on create: the namespace was deleted behind EMP's back; make it again */
        forget_namespace(k, app->owner);
        emp_error_clear(err);
    }
    if (r == 0)
        expect(k, app->id, replicas);
    return r;
}

static int kube_scale(void *state, const struct cluster_app *app, int replicas,
                      struct emp_error *err)
{
    struct kube *k = state;
    char collection[512], path[1024], what[256];
    collection_of(app, kube_workload_resource(app), collection, sizeof(collection));
    snprintf(path, sizeof(path), "%s/%s/scale", collection, app->name);
    snprintf(what, sizeof(what), "scale %s to %d", app->name, replicas);
    json_t *patch = kube_scale_patch(replicas);
    struct kube_response resp = {0};
    int r =
        kube_request(k->client, "PATCH", path, patch, "application/merge-patch+json", &resp, err);
    json_decref(patch);
    if (r == 0 && resp.status != 200)
        r = kube_error(k->client, what, &resp, err);
    kube_response_clear(&resp);
    if (r == 0)
        expect(k, app->id, replicas);
    return r;
}

static int kube_stop(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct kube *k = state;
    if (!synced(k))
        return not_synced(k, err);
    /* only EMP's own workload of the app (a name taken by someone else's is left alone), and only
     * when it runs: a stopped app is looked at again every resync, at no cost */
    json_t *ws = kube_informer_objects(workloads_of(k, app), app->id);
    json_t *workload = named(ws, app->name);
    int cached = workload ? (int)int_at(workload, "spec", "replicas") : -1;
    json_decref(ws);
    int expected = expected_replicas(k, app->id);
    if ((expected >= 0 ? expected : cached) <= 0)
        return 0;
    /* replicas 0: the count to come back to is the one EMP keeps with the app */
    int r = kube_scale(state, app, 0, err);
    if (r == -ENOENT) {
        emp_error_clear(err);
        return 0; /* nothing runs: it is stopped */
    }
    return r;
}

static int kube_start(void *state, const struct cluster_app *app, struct emp_error *err)
{
    int r = kube_scale(state, app, app->replicas, err);
    if (r == -ENOENT) {
        emp_error_clear(err);
        return kube_deploy(state, app, err);
    }
    return r;
}

/* Deletes the object at path (a collection and a name) if it is the app's: labelled as EMP's and
 * as this app's. Someone else's object of that name is left alone. The DELETE names the uid that
 * was checked, so an object made anew meanwhile is not deleted in its place. */
static int delete_owned(struct kube *k, const struct cluster_app *app, const char *path,
                        const char *what, struct emp_error *err)
{
    for (int attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
        struct kube_response resp = {0};
        int r = kube_request(k->client, "GET", path, NULL, NULL, &resp, err);
        if (r == 0 && resp.status == 404) {
            kube_response_clear(&resp);
            return 0;
        }
        if (r == 0 && resp.status != 200)
            r = kube_error(k->client, what, &resp, err);
        if (r < 0) {
            kube_response_clear(&resp);
            return r;
        }
        const char *manager = label(resp.json, KUBE_LABEL_MANAGED_BY);
        const char *owner_app = label(resp.json, KUBE_LABEL_APP_ID);
        if (!manager || strcmp(manager, KUBE_MANAGER) != 0 || !owner_app ||
            strcmp(owner_app, app->id) != 0) {
            kube_response_clear(&resp);
            return 0; /* not the app's */
        }
        json_t *options =
            json_pack("{s:s, s:s, s:s, s:{s:O}}", "apiVersion", "v1", "kind", "DeleteOptions",
                      "propagationPolicy", "Background", "preconditions", "uid",
                      json_object_get(json_object_get(resp.json, "metadata"), "uid"));
        kube_response_clear(&resp);
        if (!options)
            return -ENOMEM;
        r = kube_request(k->client, "DELETE", path, options, NULL, &resp, err);
        json_decref(options);
        long status = resp.status;
        if (r == 0 && status != 200 && status != 202 && status != 404 && status != 409)
            r = kube_error(k->client, what, &resp, err);
        kube_response_clear(&resp);
        if (r < 0 || status != 409)
            return r;
        /* 409: the uid differs, it was made anew meanwhile: look again */
    }
    return emp_error_set(err, -EBUSY, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                         "%s: it keeps being made anew; retrying later", what);
}

/* Deletes the app's volume claims: those labelled with its name in its namespace, which are also
 * the claims an earlier app of the same name left (its StatefulSet found them again by name). */
static int purge_claims(struct kube *k, const struct cluster_app *app, struct emp_error *err)
{
    char collection[512], selector[256], escaped[512], path[1200];
    collection_of(app, "persistentvolumeclaims", collection, sizeof(collection));
    snprintf(selector, sizeof(selector), "%s=%s,%s=%s", KUBE_LABEL_MANAGED_BY, KUBE_MANAGER,
             KUBE_LABEL_NAME, app->name);
    kube_query_escape(selector, escaped, sizeof(escaped));
    snprintf(path, sizeof(path), "%s?labelSelector=%s", collection, escaped);
    struct kube_response resp = {0};
    int r = kube_request(k->client, "GET", path, NULL, NULL, &resp, err);
    if (r == 0 && resp.status != 200)
        r = kube_error(k->client, "list the app's volume claims", &resp, err);
    size_t i;
    json_t *claim;
    json_array_foreach(json_object_get(resp.json, "items"), i, claim)
    {
        if (r < 0)
            break;
        if (json_object_get(json_object_get(claim, "metadata"), "deletionTimestamp"))
            continue; /* going already */
        char one[1024], what[256];
        snprintf(one, sizeof(one), "%s/%s", collection, obj_name(claim));
        snprintf(what, sizeof(what), "delete volume claim %s", obj_name(claim));
        struct kube_response gone = {0};
        r = kube_request(k->client, "DELETE", one, NULL, NULL, &gone, err);
        if (r == 0 && gone.status != 200 && gone.status != 202 && gone.status != 404)
            r = kube_error(k->client, what, &gone, err);
        kube_response_clear(&gone);
    }
    kube_response_clear(&resp);
    return r;
}

static bool gone(struct kube *k, const struct cluster_app *app)
{
    json_t *w = kube_informer_objects(workloads_of(k, app), app->id);
    json_t *s = kube_informer_objects(k->services, app->id);
    bool none = json_array_size(w) == 0 && json_array_size(s) == 0;
    json_decref(w);
    json_decref(s);
    return none;
}

static int kube_remove(void *state, const struct cluster_app *app, bool purge,
                       struct emp_error *err)
{
    struct kube *k = state;
    char collection[512], path[1024], what[256];
    collection_of(app, kube_workload_resource(app), collection, sizeof(collection));
    snprintf(path, sizeof(path), "%s/%s", collection, app->name);
    snprintf(what, sizeof(what), "delete the %s of app '%s'",
             app->spec->stateless ? "Deployment" : "StatefulSet", app->name);
    int r = delete_owned(k, app, path, what, err);
    collection_of(app, "services", collection, sizeof(collection));
    if (r == 0) {
        snprintf(path, sizeof(path), "%s/%s", collection, app->name);
        snprintf(what, sizeof(what), "delete the Service of app '%s'", app->name);
        r = delete_owned(k, app, path, what, err);
    }
    if (r == 0 && !app->spec->stateless) {
        char headless[128];
        headless_name(app, headless, sizeof(headless));
        snprintf(path, sizeof(path), "%s/%s", collection, headless);
        snprintf(what, sizeof(what), "delete the headless Service of app '%s'", app->name);
        r = delete_owned(k, app, path, what, err);
    }
    if (r == 0 && purge && !app->spec->stateless)
        r = purge_claims(k, app, err);
    if (r < 0)
        return r;
    forget_expectation(k, app->id);
    /* the "waits until they are gone": as the watch shows it */
    int64_t deadline = time_mono_ms() + REMOVE_WAIT_MS;
    while (!gone(k, app)) {
        if (time_mono_ms() > deadline)
            return emp_error_set(err, -ETIMEDOUT, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                 "the objects of app '%s' are still being deleted", app->name);
        struct timespec pause = {.tv_nsec = 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* ---- status ---- */

/* One cause that keeps some of an app's pods from running. */
struct problem {
    char why[64];      /* the container's waiting reason, or "Unschedulable" */
    bool oom;          /* its last exit was OOMKilled */
    char pod[128];     /* the first pod with it */
    char message[320]; /* what Kubernetes says of it there */
    int pods;
};

/* What the app's pods say, gathered over all of them. */
struct pod_report {
    struct problem problems[PROBLEM_KINDS];
    size_t count;
    int pods; /* those not being deleted */
    int restarts;
    char latest_exit[64]; /* finishedAt of last_exit */
    char last_exit[CLUSTER_REASON_MAX];
};

static bool fatal_waiting(const char *why)
{
    static const char *const fatal[] = {"ImagePullBackOff",
                                        "ErrImagePull",
                                        "InvalidImageName",
                                        "CrashLoopBackOff",
                                        "CreateContainerConfigError",
                                        "CreateContainerError",
                                        NULL};
    for (const char *const *f = fatal; *f; f++)
        if (strcmp(why, *f) == 0)
            return true;
    return false;
}

static void note_problem(struct pod_report *rep, const char *why, bool oom, const char *pod,
                         const char *message)
{
    for (size_t i = 0; i < rep->count; i++) {
        struct problem *p = &rep->problems[i];
        if (strcmp(p->why, why) == 0 && p->oom == oom) {
            p->pods++;
            return;
        }
    }
    if (rep->count == PROBLEM_KINDS)
        return;
    struct problem *p = &rep->problems[rep->count++];
    snprintf(p->why, sizeof(p->why), "%s", why);
    p->oom = oom;
    snprintf(p->pod, sizeof(p->pod), "%s", pod ? pod : "");
    snprintf(p->message, sizeof(p->message), "%s", message ? message : "");
    p->pods = 1;
}

static void read_pods(json_t *pods, struct pod_report *rep)
{
    size_t i;
    json_t *pod;
    json_array_foreach(pods, i, pod)
    {
        if (json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp"))
            continue;
        rep->pods++;
        const char *name = obj_name(pod);
        json_t *status = json_object_get(pod, "status");
        bool noted = false;
        size_t c;
        json_t *cs;
        json_array_foreach(json_object_get(status, "containerStatuses"), c, cs)
        {
            rep->restarts += (int)json_integer_value(json_object_get(cs, "restartCount"));
            json_t *waiting = json_object_get(json_object_get(cs, "state"), "waiting");
            const char *why = json_string_value(json_object_get(waiting, "reason"));
            json_t *last = json_object_get(json_object_get(cs, "lastState"), "terminated");
            const char *last_why = json_string_value(json_object_get(last, "reason"));
            const char *finished = json_string_value(json_object_get(last, "finishedAt"));
            if (last && finished && strcmp(finished, rep->latest_exit) > 0) {
                snprintf(rep->latest_exit, sizeof(rep->latest_exit), "%s", finished);
                snprintf(rep->last_exit, sizeof(rep->last_exit),
                         "pod %s: container %s ended with exit code %lld (%s)", name,
                         json_string_value(json_object_get(cs, "name")),
                         (long long)json_integer_value(json_object_get(last, "exitCode")),
                         last_why ? last_why : "terminated");
            }
            if (why && !noted && fatal_waiting(why)) {
                note_problem(rep, why, last_why && strcmp(last_why, "OOMKilled") == 0, name,
                             json_string_value(json_object_get(waiting, "message")));
                noted = true;
            }
        }
        size_t k;
        json_t *cond;
        json_array_foreach(json_object_get(status, "conditions"), k, cond)
        {
            const char *type = json_string_value(json_object_get(cond, "type"));
            const char *st = json_string_value(json_object_get(cond, "status"));
            const char *why = json_string_value(json_object_get(cond, "reason"));
            if (!noted && type && strcmp(type, "PodScheduled") == 0 && st &&
                strcmp(st, "False") == 0 && why && strcmp(why, "Unschedulable") == 0) {
                note_problem(rep, why, false, name,
                             json_string_value(json_object_get(cond, "message")));
                noted = true;
            }
        }
    }
}

/* The reason of an app whose pods have problems, each with what the developer can do about it.
 * Waiting does not cure any of these. */
static void describe_problems(const struct pod_report *rep, const struct cluster_app *app,
                              char *buf, size_t size)
{
    size_t used = 0;
    char ns[64];
    kube_namespace_name(app->owner, ns, sizeof(ns));
    for (size_t i = 0; i < rep->count && used + 1 < size; i++) {
        const struct problem *p = &rep->problems[i];
        char where[200];
        snprintf(where, sizeof(where), "%d of %d pods, e.g. %s", p->pods, rep->pods, p->pod);
        const char *sep = used ? "; " : "";
        int n;
        if (strcmp(p->why, "ImagePullBackOff") == 0 || strcmp(p->why, "ErrImagePull") == 0 ||
            strcmp(p->why, "InvalidImageName") == 0)
            n = snprintf(buf + used, size - used,
                         "%s%s: the cluster cannot pull image \"%s\" (%s): check docker_image, "
                         "and that the cluster may pull from its registry; Kubernetes says: %s",
                         sep, p->why, app->spec->docker_image ? app->spec->docker_image : "", where,
                         p->message);
        else if (strcmp(p->why, "CrashLoopBackOff") == 0 && p->oom)
            n = snprintf(buf + used, size - used,
                         "%sCrashLoopBackOff after OOMKilled: the container runs out of memory "
                         "(%s; its limit is resources.memory, %s): raise resources.memory, or "
                         "make the app use less",
                         sep, where, app->spec->memory ? app->spec->memory : "none set");
        else if (strcmp(p->why, "CrashLoopBackOff") == 0)
            n = snprintf(buf + used, size - used,
                         "%sCrashLoopBackOff: the container keeps exiting (%s): its logs say why "
                         "(kubectl logs -n %s %s --previous)",
                         sep, where, ns, p->pod);
        else if (strcmp(p->why, "Unschedulable") == 0)
            n = snprintf(buf + used, size - used,
                         "%spods cannot be scheduled (%s): %s: lower resources (cpu %s, memory "
                         "%s) or the replica count, or add nodes to the cluster",
                         sep, where, p->message, app->spec->cpu ? app->spec->cpu : "-",
                         app->spec->memory ? app->spec->memory : "-");
        else
            n = snprintf(buf + used, size - used,
                         "%s%s: the container cannot be created (%s): check envs and the spec; "
                         "Kubernetes says: %s",
                         sep, p->why, where, p->message);
        if (n < 0)
            break;
        used += (size_t)n < size - used ? (size_t)n : size - used - 1;
    }
}

static void service_address(json_t *service, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!service)
        return;
    json_t *spec = json_object_get(service, "spec");
    const char *type = json_string_value(json_object_get(spec, "type"));
    json_t *port = json_array_get(json_object_get(spec, "ports"), 0);
    long long number = (long long)json_integer_value(json_object_get(port, "port"));
    if (type && strcmp(type, "LoadBalancer") == 0) {
        json_t *ingress = json_array_get(
            json_object_get(json_object_get(json_object_get(service, "status"), "loadBalancer"),
                            "ingress"),
            0);
        const char *host = json_string_value(json_object_get(ingress, "ip"));
        if (!host)
            host = json_string_value(json_object_get(ingress, "hostname"));
        if (host)
            snprintf(buf, size, "%s:%lld", host, number);
    } else if (type && strcmp(type, "NodePort") == 0) {
        long long node_port = (long long)json_integer_value(json_object_get(port, "nodePort"));
        if (node_port)
            snprintf(buf, size, "*:%lld", node_port); /* that port on every node */
    } else {
        const char *ip = json_string_value(json_object_get(spec, "clusterIP"));
        if (ip && strcmp(ip, "None") != 0)
            snprintf(buf, size, "%s:%lld", ip, number);
    }
}

static int kube_status(void *state, const struct cluster_app *app, struct cluster_status *st,
                       struct emp_error *err)
{
    struct kube *k = state;
    memset(st, 0, sizeof(*st));
    if (!synced(k))
        return not_synced(k, err);
    char headless[128];
    headless_name(app, headless, sizeof(headless));
    json_t *ws = kube_informer_objects(workloads_of(k, app), app->id);
    json_t *services = kube_informer_objects(k->services, app->id);
    json_t *workload = named(ws, app->name);
    json_t *service = named(services, app->name);
    bool complete = workload && service && (app->spec->stateless || named(services, headless));
    int cached = workload ? (int)int_at(workload, "spec", "replicas") : -1;
    int expected = expected_replicas(k, app->id);
    if (expected >= 0 && complete && cached == expected) {
        forget_expectation(k, app->id); /* the informers caught up */
        expected = -1;
    }
    /* an object missing, and not one EMP has just made: the app is (re)deployed, which makes
     * what is missing */
    if (!complete && expected < 0)
        goto out;
    st->exists = true;
    st->replicas_desired = expected >= 0 ? expected : cached;
    st->replicas_ready = workload ? (int)int_at(workload, "status", "readyReplicas") : 0;
    st->stopped = st->replicas_desired == 0;
    service_address(service, st->address, sizeof(st->address));
    json_t *pods = kube_informer_objects(k->pods, app->id);
    struct pod_report rep = {0};
    read_pods(pods, &rep);
    json_decref(pods);
    st->restarts = rep.restarts;
    snprintf(st->last_exit, sizeof(st->last_exit), "%s", rep.last_exit);
    describe_problems(&rep, app, st->reason, sizeof(st->reason));
    bool blocking = rep.count > 0;
    /* a Deployment that gave up progressing has failed too */
    size_t i;
    json_t *cond;
    json_array_foreach(json_object_get(json_object_get(workload, "status"), "conditions"), i, cond)
    {
        const char *why = json_string_value(json_object_get(cond, "reason"));
        const char *message = json_string_value(json_object_get(cond, "message"));
        if (why && strcmp(why, "ProgressDeadlineExceeded") == 0 && !st->reason[0]) {
            blocking = true;
            snprintf(st->reason, sizeof(st->reason), "ProgressDeadlineExceeded: %s",
                     message ? message : "the rollout made no progress");
        }
    }
    st->failed = blocking && st->replicas_ready == 0 && st->replicas_desired > 0;
    if (!st->reason[0] && !st->stopped && st->replicas_ready < st->replicas_desired)
        snprintf(st->reason, sizeof(st->reason), "%d of %d replicas ready", st->replicas_ready,
                 st->replicas_desired);
out:
    json_decref(ws);
    json_decref(services);
    return 0;
}

/* ---- life ---- */

/* ---- what the informers keep: the fields the functions above read, nothing else ---- */

/* Sets dst[key] to src[key] (shared), when src has it. */
static void keep(json_t *dst, json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);
    if (v)
        json_object_set(dst, key, v);
}

static json_t *slim_metadata(json_t *obj)
{
    json_t *meta = json_object_get(obj, "metadata"), *out = json_object();
    keep(out, meta, "name");
    keep(out, meta, "deletionTimestamp");
    return out;
}

static json_t *slim_workload(json_t *obj)
{
    json_t *spec = json_object(), *status = json_object(), *conditions = json_array();
    keep(spec, json_object_get(obj, "spec"), "replicas");
    json_t *full = json_object_get(obj, "status");
    keep(status, full, "readyReplicas");
    size_t i;
    json_t *cond;
    json_array_foreach(json_object_get(full, "conditions"), i, cond)
    {
        const char *why = json_string_value(json_object_get(cond, "reason"));
        if (why && strcmp(why, "ProgressDeadlineExceeded") == 0)
            json_array_append(conditions, cond);
    }
    json_object_set_new(status, "conditions", conditions);
    return json_pack("{s:o, s:o, s:o}", "metadata", slim_metadata(obj), "spec", spec, "status",
                     status);
}

static json_t *slim_service(json_t *obj)
{
    json_t *full = json_object_get(obj, "spec"), *spec = json_object(), *port = json_object();
    keep(spec, full, "type");
    keep(spec, full, "clusterIP");
    json_t *first = json_array_get(json_object_get(full, "ports"), 0);
    keep(port, first, "port");
    keep(port, first, "nodePort");
    json_object_set_new(spec, "ports", json_pack("[o]", port));
    json_t *ingress =
        json_object_get(json_object_get(json_object_get(obj, "status"), "loadBalancer"), "ingress");
    json_t *status = json_pack("{s:{s:[]}}", "loadBalancer", "ingress");
    if (json_array_size(ingress) > 0)
        json_array_append(json_object_get(json_object_get(status, "loadBalancer"), "ingress"),
                          json_array_get(ingress, 0));
    return json_pack("{s:o, s:o, s:o}", "metadata", slim_metadata(obj), "spec", spec, "status",
                     status);
}

static json_t *slim_pod(json_t *obj)
{
    json_t *full = json_object_get(obj, "status");
    json_t *containers = json_array(), *conditions = json_array();
    size_t i;
    json_t *cs;
    json_array_foreach(json_object_get(full, "containerStatuses"), i, cs)
    {
        json_t *c = json_object(), *state = json_object(), *last = json_object();
        keep(c, cs, "name");
        keep(c, cs, "restartCount");
        keep(state, json_object_get(cs, "state"), "waiting");
        keep(last, json_object_get(cs, "lastState"), "terminated");
        json_object_set_new(c, "state", state);
        json_object_set_new(c, "lastState", last);
        json_array_append_new(containers, c);
    }
    json_t *cond;
    json_array_foreach(json_object_get(full, "conditions"), i, cond)
    {
        const char *type = json_string_value(json_object_get(cond, "type"));
        if (type && strcmp(type, "PodScheduled") == 0)
            json_array_append(conditions, cond);
    }
    return json_pack("{s:o, s:{s:o, s:o}}", "metadata", slim_metadata(obj), "status",
                     "containerStatuses", containers, "conditions", conditions);
}

static char *dup_or(const char *s, const char *fallback)
{
    return s ? strdup(s) : fallback ? strdup(fallback) : NULL;
}

static int kube_init(void *state, const struct cluster_config *config, struct emp_error *err)
{
    struct kube *k = state;
    k->config = *config;
    pthread_mutex_init(&k->lock, NULL);
    pthread_mutex_init(&k->namespace_lock, NULL);
    k->namespaces = json_object();
    k->expected = json_object();
    const struct cluster_kube_config *kc = &config->kube;
    struct kube_config_source source = {
        .server = kc->server,
        .token_file = kc->token_file,
        .ca_file = kc->ca_file,
        .kubeconfig = kc->kubeconfig,
        .context = kc->context,
    };
    int r = kube_config_load(&source, &k->kube_config, err);
    if (r < 0)
        return r;
    if (kc->service_type && strcmp(kc->service_type, "LoadBalancer") != 0 &&
        strcmp(kc->service_type, "NodePort") != 0 && strcmp(kc->service_type, "ClusterIP") != 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kube-service-type",
                             "--kube-service-type '%.40s' is not valid: use LoadBalancer, "
                             "NodePort or ClusterIP",
                             kc->service_type);
    k->kafka_address = dup_or(kc->apps_kafka_address, config->kafka_address);
    k->zipkin_url = dup_or(config->zipkin_url, NULL);
    k->service_type = dup_or(kc->service_type, "LoadBalancer");
    k->volume_size = dup_or(kc->volume_size, "1Gi");
    k->options = (struct kube_manifest_options){
        .kafka_address = k->kafka_address,
        .zipkin_url = k->zipkin_url,
        .service_type = k->service_type,
        .volume_size = k->volume_size,
    };
    r = kube_client_new(k->kube_config, &k->client, err);
    if (r < 0)
        return r;
    const char *sel = KUBE_SELECTOR_MANAGED;
    if ((r = kube_informer_start(k->client, "/apis/apps/v1/deployments", sel, slim_workload,
                                 changed, k, &k->deployments, err)) < 0 ||
        (r = kube_informer_start(k->client, "/apis/apps/v1/statefulsets", sel, slim_workload,
                                 changed, k, &k->statefulsets, err)) < 0 ||
        (r = kube_informer_start(k->client, "/api/v1/services", sel, slim_service, changed, k,
                                 &k->services, err)) < 0 ||
        (r = kube_informer_start(k->client, "/api/v1/pods", sel, slim_pod, changed, k, &k->pods,
                                 err)) < 0)
        return r;
    log_msg(LOG_INFO, "Kubernetes backend", "server=%s via=%s", k->kube_config->server,
            k->kube_config->source);
    return 0;
}

static void kube_destroy(void *state)
{
    struct kube *k = state;
    kube_informer_stop(k->deployments);
    kube_informer_stop(k->statefulsets);
    kube_informer_stop(k->services);
    kube_informer_stop(k->pods);
    kube_client_free(k->client);
    kube_config_free(k->kube_config);
    free(k->kafka_address);
    free(k->zipkin_url);
    free(k->service_type);
    free(k->volume_size);
    json_decref(k->namespaces);
    json_decref(k->expected);
    pthread_mutex_destroy(&k->lock);
    pthread_mutex_destroy(&k->namespace_lock);
}

/* The app's Service by its cluster DNS name (NAME.NAMESPACE.svc, which resolves whatever the
 * cluster's domain) and port: what pods of the same user reach it at. */
static int kube_address_of(void *state, const struct cluster_app *app, char *buf, size_t size,
                           struct emp_error *err)
{
    char ns[128];
    kube_namespace_name(app->owner, ns, sizeof(ns));
    snprintf(buf, size, "%s.%s.svc:%d", app->name, ns, app->spec->port);
    return 0;
}

const struct cluster_backend_ops cluster_kubernetes_ops = {
    .name = "kubernetes",
    .caps = CLUSTER_CAP_STATEFUL | CLUSTER_CAP_NEEDS_IMAGE,
    .state_size = sizeof(struct kube),
    .init = kube_init,
    .destroy = kube_destroy,
    .validate = kube_validate,
    .deploy = kube_deploy,
    .scale = kube_scale,
    .stop = kube_stop,
    .start = kube_start,
    .remove = kube_remove,
    .status = kube_status,
    .address_of = kube_address_of,
};
