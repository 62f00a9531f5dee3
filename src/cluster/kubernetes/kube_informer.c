/* SPDX-License-Identifier: Apache-2.0 */
/* LIST then WATCH, the way client-go's reflector does it: the list's resourceVersion starts the
 * watch, every event moves it on, bookmarks too, and a watch that the server ends is resumed from
 * there; 410 Gone (history compacted) lists again. */
#include "kube_informer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emp/log.h"
#include "kube_manifest.h"

#define WATCH_TIMEOUT_S 300
#define RETRY_MS        1000

struct kube_informer {
    struct kube_client *client;
    char path[256];
    char selector[512];                /* escaped for the query */
    json_t *(*transform)(json_t *obj); /* what is kept of each object; NULL: all of it */
    void (*changed)(void *ctx, const char *app_id);
    void *ctx;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    json_t *by_app; /* app id -> { "namespace/name": object } */
    json_t *by_key; /* "namespace/name" -> app id */
    bool synced;
    char error[EMP_ERR_MESSAGE_MAX]; /* why the last LIST failed, "" once one succeeded */
    char resource_version[64];
    atomic_ulong lists;
};

static const char *app_of(json_t *obj)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(obj, "metadata"), "labels"), KUBE_LABEL_APP_ID));
}

static void key_of(json_t *obj, char *buf, size_t size)
{
    json_t *meta = json_object_get(obj, "metadata");
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    snprintf(buf, size, "%s/%s", ns ? ns : "", name ? name : "");
}

/* Lock held. Removes key from the cache; returns its app id (owned by a copy in ret). */
static void forget(struct kube_informer *inf, const char *key, char *ret_app, size_t size)
{
    ret_app[0] = '\0';
    const char *app = json_string_value(json_object_get(inf->by_key, key));
    if (!app)
        return;
    snprintf(ret_app, size, "%s", app);
    json_t *objects = json_object_get(inf->by_app, ret_app);
    json_object_del(objects, key);
    if (json_object_size(objects) == 0)
        json_object_del(inf->by_app, ret_app);
    json_object_del(inf->by_key, key);
}

/* What the cache keeps of obj: a new reference (json_decref). */
static json_t *kept(struct kube_informer *inf, json_t *obj)
{
    return inf->transform ? inf->transform(obj) : json_incref(obj);
}

/* Lock held. Stores kept (a reference is taken) as the object key of app. */
static void store(struct kube_informer *inf, const char *key, const char *app, json_t *kept_obj)
{
    json_t *objects = json_object_get(inf->by_app, app);
    if (!objects) {
        objects = json_object();
        json_object_set_new(inf->by_app, app, objects);
    }
    json_object_set(objects, key, kept_obj);
    json_object_set_new(inf->by_key, key, json_string(app));
}

/* Lock held. Stores what the cache keeps of obj. */
static void remember(struct kube_informer *inf, json_t *obj, char *ret_old_app, size_t size)
{
    char key[400];
    key_of(obj, key, sizeof(key));
    forget(inf, key, ret_old_app, size);
    const char *app = app_of(obj);
    if (!app)
        return; /* not one of EMP's apps' objects after all */
    json_t *k = kept(inf, obj);
    store(inf, key, app, k);
    json_decref(k);
}

static void notify(struct kube_informer *inf, const char *app)
{
    if (app && app[0] && inf->changed)
        inf->changed(inf->ctx, app);
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Lists every page; replaces the cache. Returns 0 or -errno. */
static int relist(struct kube_informer *inf)
{
    json_t *items = json_array();
    char cont[2048] = "";
    char rv[64] = "";
    int r = 0;
    for (;;) {
        char path[4096], cont_q[2100] = "";
        if (cont[0]) {
            char escaped[2048 * 3];
            kube_query_escape(cont, escaped, sizeof(escaped));
            snprintf(cont_q, sizeof(cont_q), "&continue=%s", escaped);
        }
        snprintf(path, sizeof(path), "%s?labelSelector=%s&limit=%d%s", inf->path, inf->selector,
                 KUBE_LIST_PAGE, cont_q);
        struct kube_response resp = {0};
        struct emp_error err = {0};
        r = kube_request(inf->client, "GET", path, NULL, NULL, &resp, &err);
        if (r == 0 && resp.status == 410) {
            /* the continue token expired: start the list again */
            kube_response_clear(&resp);
            json_array_clear(items);
            cont[0] = '\0';
            continue;
        }
        if (r == 0 && resp.status != 200)
            r = kube_error(inf->client, "list", &resp, &err);
        if (r < 0) {
            /* logged once per cause, not once per retry */
            pthread_mutex_lock(&inf->lock);
            bool news = strcmp(inf->error, err.message) != 0;
            snprintf(inf->error, sizeof(inf->error), "%s", err.message);
            pthread_mutex_unlock(&inf->lock);
            if (news) {
                char quoted[600];
                log_msg(LOG_WARN, "cannot list Kubernetes objects, retrying", "path=%s detail=%s",
                        inf->path, log_quote(quoted, sizeof(quoted), err.message));
            }
            kube_response_clear(&resp);
            break;
        }
        atomic_fetch_add(&inf->lists, 1);
        /* only what the cache keeps outlives the page: [key, app id, what is kept] */
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(resp.json, "items"), i, item)
        {
            char key[400];
            key_of(item, key, sizeof(key));
            const char *app = app_of(item);
            if (app)
                json_array_append_new(items, json_pack("[s, s, o]", key, app, kept(inf, item)));
        }
        json_t *meta = json_object_get(resp.json, "metadata");
        const char *next = json_string_value(json_object_get(meta, "continue"));
        const char *version = json_string_value(json_object_get(meta, "resourceVersion"));
        if (version)
            snprintf(rv, sizeof(rv), "%s", version);
        snprintf(cont, sizeof(cont), "%s", next ? next : "");
        kube_response_clear(&resp);
        if (!cont[0])
            break;
    }
    if (r < 0) {
        json_decref(items);
        return r;
    }
    json_t *touched = json_object();
    pthread_mutex_lock(&inf->lock);
    const char *app;
    json_t *unused;
    json_object_foreach(inf->by_app, app, unused) json_object_set_new(touched, app, json_true());
    json_object_clear(inf->by_app);
    json_object_clear(inf->by_key);
    size_t i;
    json_t *entry;
    json_array_foreach(items, i, entry)
    {
        const char *key = json_string_value(json_array_get(entry, 0));
        const char *owner = json_string_value(json_array_get(entry, 1));
        store(inf, key, owner, json_array_get(entry, 2));
        json_object_set_new(touched, owner, json_true());
    }
    snprintf(inf->resource_version, sizeof(inf->resource_version), "%s", rv);
    inf->synced = true;
    bool recovered = inf->error[0] != '\0';
    inf->error[0] = '\0';
    pthread_mutex_unlock(&inf->lock);
    if (recovered)
        log_msg(LOG_INFO, "Kubernetes objects listed again", "path=%s", inf->path);
    json_object_foreach(touched, app, unused) notify(inf, app);
    json_decref(touched);
    json_decref(items);
    return 0;
}

struct watch_ctx {
    struct kube_informer *inf;
    bool expired;
};

static int on_event(void *arg, json_t *event)
{
    struct watch_ctx *w = arg;
    struct kube_informer *inf = w->inf;
    const char *type = json_string_value(json_object_get(event, "type"));
    json_t *obj = json_object_get(event, "object");
    if (!type || !obj)
        return 0;
    if (strcmp(type, "ERROR") == 0) {
        /* a Status: 410 means the history is gone and only a new list helps */
        if (json_integer_value(json_object_get(obj, "code")) == 410)
            w->expired = true;
        return 1;
    }
    const char *rv =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    char old[64] = "", now[64] = "";
    pthread_mutex_lock(&inf->lock);
    if (rv)
        snprintf(inf->resource_version, sizeof(inf->resource_version), "%s", rv);
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        remember(inf, obj, old, sizeof(old));
        if (app_of(obj))
            snprintf(now, sizeof(now), "%s", app_of(obj));
    } else if (strcmp(type, "DELETED") == 0) {
        char key[400];
        key_of(obj, key, sizeof(key));
        forget(inf, key, old, sizeof(old));
    }
    pthread_mutex_unlock(&inf->lock);
    notify(inf, old);
    if (strcmp(old, now) != 0)
        notify(inf, now);
    return 0;
}

static void *run(void *arg)
{
    struct kube_informer *inf = arg;
    bool need_list = true;
    while (!atomic_load(&inf->stop)) {
        if (need_list) {
            if (relist(inf) < 0) {
                for (int i = 0; i < RETRY_MS / 100 && !atomic_load(&inf->stop); i++)
                    sleep_ms(100);
                continue;
            }
            need_list = false;
        }
        char path[4096];
        pthread_mutex_lock(&inf->lock);
        snprintf(path, sizeof(path),
                 "%s?labelSelector=%s&watch=1&allowWatchBookmarks=true&timeoutSeconds=%d"
                 "&resourceVersion=%s",
                 inf->path, inf->selector, WATCH_TIMEOUT_S, inf->resource_version);
        pthread_mutex_unlock(&inf->lock);
        struct watch_ctx w = {.inf = inf};
        struct emp_error err = {0};
        atomic_fetch_add(&inf->lists, 1);
        int r = kube_watch(inf->client, path, on_event, &w, &inf->stop, &err);
        if (atomic_load(&inf->stop))
            break;
        if (w.expired || r == 410) {
            need_list = true;
        } else if (r != 0) {
            /* the server is unreachable or refused: try again, listing anew to miss nothing */
            need_list = true;
            for (int i = 0; i < RETRY_MS / 100 && !atomic_load(&inf->stop); i++)
                sleep_ms(100);
        }
    }
    return NULL;
}

int kube_informer_start(struct kube_client *client, const char *path, const char *selector,
                        json_t *(*transform)(json_t *obj),
                        void (*changed)(void *ctx, const char *app_id), void *ctx,
                        struct kube_informer **ret_informer, struct emp_error *err)
{
    struct kube_informer *inf = calloc(1, sizeof(*inf));
    if (!inf)
        return -ENOMEM;
    inf->client = client;
    inf->transform = transform;
    snprintf(inf->path, sizeof(inf->path), "%s", path);
    kube_query_escape(selector, inf->selector, sizeof(inf->selector));
    inf->changed = changed;
    inf->ctx = ctx;
    inf->by_app = json_object();
    inf->by_key = json_object();
    pthread_mutex_init(&inf->lock, NULL);
    if (pthread_create(&inf->thread, NULL, run, inf) != 0) {
        json_decref(inf->by_app);
        json_decref(inf->by_key);
        free(inf);
        return emp_error_set(err, -EAGAIN, EMP_ERR_INTERNAL, NULL,
                             "cannot start the thread that watches %s", path);
    }
    *ret_informer = inf;
    return 0;
}

void kube_informer_stop(struct kube_informer *inf)
{
    if (!inf)
        return;
    atomic_store(&inf->stop, true);
    pthread_join(inf->thread, NULL);
    json_decref(inf->by_app);
    json_decref(inf->by_key);
    pthread_mutex_destroy(&inf->lock);
    free(inf);
}

bool kube_informer_synced(struct kube_informer *inf)
{
    pthread_mutex_lock(&inf->lock);
    bool synced = inf->synced;
    pthread_mutex_unlock(&inf->lock);
    return synced;
}

json_t *kube_informer_objects(struct kube_informer *inf, const char *app_id)
{
    json_t *out = json_array();
    pthread_mutex_lock(&inf->lock);
    const char *key;
    json_t *obj;
    /* deep copies: the watch thread may replace these objects while the caller reads them */
    json_object_foreach(json_object_get(inf->by_app, app_id), key, obj)
        json_array_append_new(out, json_deep_copy(obj));
    pthread_mutex_unlock(&inf->lock);
    return out;
}

json_t *kube_informer_apps(struct kube_informer *inf)
{
    json_t *out = json_object();
    pthread_mutex_lock(&inf->lock);
    const char *app;
    json_t *unused;
    json_object_foreach(inf->by_app, app, unused) json_object_set_new(out, app, json_true());
    pthread_mutex_unlock(&inf->lock);
    return out;
}

bool kube_informer_error(struct kube_informer *inf, char *buf, size_t size)
{
    pthread_mutex_lock(&inf->lock);
    bool failing = inf->error[0] != '\0';
    snprintf(buf, size, "%s", inf->error);
    pthread_mutex_unlock(&inf->lock);
    return failing;
}

unsigned long kube_informer_lists(struct kube_informer *inf)
{
    return atomic_load(&inf->lists);
}
