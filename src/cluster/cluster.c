/* SPDX-License-Identifier: Apache-2.0 */
/* The backend registry and the call wrappers. Backends register by name here; a name whose backend
 * is not compiled in keeps its entry with no ops, so emp-server can say exactly what is missing. */
#include "cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef EMP_HAVE_CLUSTER_LOCAL
extern const struct cluster_backend_ops cluster_local_ops;
#endif
#ifdef EMP_HAVE_CLUSTER_KUBERNETES
extern const struct cluster_backend_ops cluster_kubernetes_ops;
#endif

static const struct {
    const char *name;
    const struct cluster_backend_ops *ops; /* NULL: not built */
} registry[] = {
#ifdef EMP_HAVE_CLUSTER_LOCAL
    {"local", &cluster_local_ops},
#else
    {"local", NULL},
#endif
#ifdef EMP_HAVE_CLUSTER_KUBERNETES
    {"kubernetes", &cluster_kubernetes_ops},
#else
    {"kubernetes", NULL},
#endif
};

struct cluster {
    char name[32];
    const struct cluster_backend_ops *ops; /* NULL: not built */
    void *state;
    pthread_mutex_t lock; /* the listener below */
    void (*on_change)(void *ctx, const char *app_id);
    void *on_change_ctx;
};

static void forward_change(void *token, const char *app_id)
{
    struct cluster *c = token;
    pthread_mutex_lock(&c->lock);
    if (c->on_change)
        c->on_change(c->on_change_ctx, app_id);
    pthread_mutex_unlock(&c->lock);
}

void cluster_on_change(struct cluster *cluster, void (*fn)(void *ctx, const char *app_id),
                       void *ctx)
{
    pthread_mutex_lock(&cluster->lock);
    cluster->on_change = fn;
    cluster->on_change_ctx = ctx;
    pthread_mutex_unlock(&cluster->lock);
}

const char *cluster_known_names(void)
{
    return "local, kubernetes";
}

static int open_handle(const char *name, const struct cluster_backend_ops *ops,
                       const struct cluster_config *config, struct cluster **ret_cluster,
                       struct emp_error *err)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    strncpy(c->name, name, sizeof(c->name) - 1);
    c->ops = ops;
    pthread_mutex_init(&c->lock, NULL);
    struct cluster_config own = config ? *config : (struct cluster_config){0};
    own.changed = forward_change;
    own.changed_token = c;
    int r = 0;
    if (ops && ops->state_size) {
        c->state = calloc(1, ops->state_size);
        if (!c->state) {
            r = -ENOMEM;
            goto fail;
        }
    }
    if (ops && ops->init) {
        r = ops->init(c->state, &own, err);
        if (r < 0) {
            emp_error_prefix(err, "cluster backend '%s': ", name);
            /* destroy copes with what init left half built */
            if (ops->destroy)
                ops->destroy(c->state);
            goto fail;
        }
    }
    *ret_cluster = c;
    return 0;
fail:
    pthread_mutex_destroy(&c->lock);
    free(c->state);
    free(c);
    return r;
}

int cluster_open(const char *name, const struct cluster_config *config,
                 struct cluster **ret_cluster, struct emp_error *err)
{
    for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
        if (strcmp(registry[i].name, name) == 0)
            return open_handle(name, registry[i].ops, config, ret_cluster, err);
    return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "cluster",
                         "unknown cluster backend '%.64s': use one of %s", name,
                         cluster_known_names());
}

int cluster_open_unavailable(const char *name, struct cluster **ret_cluster)
{
    return open_handle(name, NULL, NULL, ret_cluster, NULL);
}

int cluster_open_ops(const struct cluster_backend_ops *ops, const struct cluster_config *config,
                     struct cluster **ret_cluster, struct emp_error *err)
{
    return open_handle(ops->name, ops, config, ret_cluster, err);
}

void cluster_close(struct cluster *cluster)
{
    if (!cluster)
        return;
    if (cluster->ops && cluster->ops->destroy)
        cluster->ops->destroy(cluster->state);
    pthread_mutex_destroy(&cluster->lock);
    free(cluster->state);
    free(cluster);
}

const char *cluster_name(const struct cluster *cluster)
{
    return cluster->name;
}

bool cluster_available(const struct cluster *cluster)
{
    return cluster->ops != NULL;
}

unsigned cluster_caps(const struct cluster *cluster)
{
    return cluster->ops ? cluster->ops->caps : 0;
}

static int not_built(const struct cluster *c, struct emp_error *err)
{
    return emp_error_set(err, -ENOTSUP, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                         "cluster backend '%s' is not available in this build of emp-server: "
                         "start emp-server with --cluster set to a backend it was built with",
                         c->name);
}

static int no_slot(const struct cluster *c, const char *op, struct emp_error *err)
{
    return emp_error_set(err, -EOPNOTSUPP, EMP_ERR_NOT_SUPPORTED, NULL,
                         "cluster backend '%s' does not support %s", c->name, op);
}

/* Every wrapper: not built, then empty slot, then the call. */
#define CALL(c, err, slot, ...)                                                                    \
    (!(c)->ops         ? not_built((c), (err))                                                     \
     : !(c)->ops->slot ? no_slot((c), #slot, (err))                                                \
                       : (c)->ops->slot((c)->state, __VA_ARGS__))

int cluster_validate(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err)
{
    /* A backend without checks accepts what the spec module accepted; one that was not built
     * accepts too, so that the app is recorded and its status says why it does not run. */
    if (!cluster->ops || !cluster->ops->validate)
        return 0;
    return cluster->ops->validate(cluster->state, app, err);
}

int cluster_address_of(struct cluster *cluster, const struct cluster_app *app, char *buf,
                       size_t size, struct emp_error *err)
{
    return CALL(cluster, err, address_of, app, buf, size, err);
}

int cluster_deploy(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err)
{
    return CALL(cluster, err, deploy, app, err);
}

int cluster_scale(struct cluster *cluster, const struct cluster_app *app, int replicas,
                  struct emp_error *err)
{
    return CALL(cluster, err, scale, app, replicas, err);
}

int cluster_stop(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err)
{
    return CALL(cluster, err, stop, app, err);
}

int cluster_start(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err)
{
    return CALL(cluster, err, start, app, err);
}

int cluster_remove(struct cluster *cluster, const struct cluster_app *app, bool purge,
                   struct emp_error *err)
{
    return CALL(cluster, err, remove, app, purge, err);
}

int cluster_status(struct cluster *cluster, const struct cluster_app *app,
                   struct cluster_status *ret_status, struct emp_error *err)
{
    return CALL(cluster, err, status, app, ret_status, err);
}
