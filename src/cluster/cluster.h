/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster backend interface: what the reconciler asks of a cluster (deploy, scale, stop, start,
 * remove, status), one vtable per backend, and the registry that picks a backend by name. Backends
 * know neither Redis nor HTTP requests: they get an app's spec and answer with its status. */
#ifndef EMP_CLUSTER_H
#define EMP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "emp/error.h"
#include "emp/spec.h"

#define CLUSTER_REASON_MAX  512
#define CLUSTER_ADDRESS_MAX 256
#define CLUSTER_BINDING_MAX 64

/* What a backend is told of an app. Pointers are borrowed for the length of the call. */
struct cluster_app {
    const char *id;
    const char *owner;
    const char *name;
    const struct emp_spec *spec;
    int replicas;        /* the desired count */
    const char *binding; /* what the backend last reported in cluster_status.binding, or NULL */
};

/* What a backend reports of an app. */
struct cluster_status {
    bool exists;          /* the backend holds the app (running or stopped) */
    bool stopped;         /* it holds it stopped: start() brings it back */
    bool failed;          /* it cannot run as asked; reason says why */
    int replicas_desired; /* the count the backend works towards now */
    int replicas_ready;
    char reason[CLUSTER_REASON_MAX];   /* "" when there is nothing to say */
    char address[CLUSTER_ADDRESS_MAX]; /* external address, "" while there is none */
    /* What the backend wants to find again when it sees the app anew (after a restart of
     * emp-server, or when its own state was lost), such as the local gateway's port. The
     * reconciler stores it with the app and hands it back in cluster_app.binding. */
    char binding[CLUSTER_BINDING_MAX];
    int restarts;                       /* replicas restarted after they ended or failed checks */
    char last_exit[CLUSTER_REASON_MAX]; /* how the last one ended, "" if none did */
};

/* How the Kubernetes backend reaches its cluster and shapes apps (see its flags). */
struct cluster_kube_config {
    const char *server;             /* --kube-server */
    const char *token_file;         /* --kube-token-file */
    const char *ca_file;            /* --kube-ca */
    const char *kubeconfig;         /* --kubeconfig */
    const char *context;            /* --kube-context */
    const char *service_type;       /* LoadBalancer, NodePort or ClusterIP */
    const char *volume_size;        /* each stateful replica's claim */
    const char *apps_kafka_address; /* KAFKAADDRESS inside the cluster */
};

/* Settings every backend may read; each backend documents which it uses. 0 or NULL: the
 * backend's default. */
struct cluster_config {
    const char *state_dir;     /* where a backend may keep files */
    const char *kafka_address; /* what apps get as KAFKAADDRESS */
    const char *zipkin_url;    /* what apps get as EMP_ZIPKIN_URL */
    int gateway_port_min;      /* local: the range of gateway ports */
    int gateway_port_max;
    int gateway_max_connections; /* local: client connections of all gateways together */
    int stop_grace_ms;           /* SIGTERM, then SIGKILL after this long */
    int ready_timeout_ms;        /* a replica not ready by then has failed */
    struct cluster_kube_config kube;
    /* Filled by cluster_open(): a backend calls changed(changed_token, app_id) when it sees an
     * app's status change by itself (a replica became ready, crashed), so that it is looked at
     * again at once. Safe from any thread; does not call back into the backend. */
    void (*changed)(void *token, const char *app_id);
    void *changed_token;
};

enum cluster_caps {
    CLUSTER_CAP_STATEFUL = 1 << 0,      /* keeps data of stateless:false apps across stop/scale */
    CLUSTER_CAP_NEEDS_COMMAND = 1 << 1, /* runs spec.command */
    CLUSTER_CAP_NEEDS_IMAGE = 1 << 2,   /* runs spec.docker_image */
    /* what the backend runs ends with emp-server (the local backend's processes): after a start,
     * every app must be looked at at once, not at its next scheduled check */
    CLUSTER_CAP_EPHEMERAL = 1 << 3,
    /* the backend is this host (the local backend): one emp-server per Redis reconciles it */
    CLUSTER_CAP_SINGLE_NODE = 1 << 4,
};

/* One const instance per backend, filled with designated initialisers in the backend's own file.
 * Every operation returns 0 or a negative errno with err set; operations are idempotent (deploying
 * what is deployed, stopping what is stopped, removing what is gone all succeed). */
struct cluster_backend_ops {
    const char *name;
    unsigned caps;
    size_t state_size;
    int (*init)(void *state, const struct cluster_config *config, struct emp_error *err);
    void (*destroy)(void *state);
    /* Checks, without touching the cluster, that the backend can run app (for example that the
     * local backend has a command to run). Called on the request path: must not block. */
    int (*validate)(void *state, const struct cluster_app *app, struct emp_error *err);
    int (*deploy)(void *state, const struct cluster_app *app, struct emp_error *err);
    int (*scale)(void *state, const struct cluster_app *app, int replicas, struct emp_error *err);
    int (*stop)(void *state, const struct cluster_app *app, struct emp_error *err);
    int (*start)(void *state, const struct cluster_app *app, struct emp_error *err);
    int (*remove)(void *state, const struct cluster_app *app, bool purge, struct emp_error *err);
    int (*status)(void *state, const struct cluster_app *app, struct cluster_status *ret_status,
                  struct emp_error *err);
    /* Where the other apps of app's owner reach app, as HOST:PORT: what their ${app:NAME} envs
     * become (see spec_ref_next). app need not be deployed yet; the address is the one it will
     * have. Must not block. */
    int (*address_of)(void *state, const struct cluster_app *app, char *buf, size_t size,
                      struct emp_error *err);
};

struct cluster;

/* Opens the backend called name ("local", "kubernetes"). A known backend that this binary was built
 * without still opens: every call then fails with cluster_unavailable saying so. An unknown name
 * fails with the list of known ones. Free with cluster_close(). */
int cluster_open(const char *name, const struct cluster_config *config,
                 struct cluster **ret_cluster, struct emp_error *err);
/* A handle for a backend called name that this binary lacks: every call fails with
 * cluster_unavailable saying so (what cluster_open gives for a backend not built; tests use it). */
int cluster_open_unavailable(const char *name, struct cluster **ret_cluster);
/* Opens a handle over given ops (tests drive the reconciler through a recording backend). */
int cluster_open_ops(const struct cluster_backend_ops *ops, const struct cluster_config *config,
                     struct cluster **ret_cluster, struct emp_error *err);
/* Accepts NULL. */
void cluster_close(struct cluster *cluster);

/* Who hears of the changes a backend sees by itself (see cluster_config.changed). */
void cluster_on_change(struct cluster *cluster, void (*fn)(void *ctx, const char *app_id),
                       void *ctx);

const char *cluster_name(const struct cluster *cluster);
/* False for a backend that was not built: its calls can have had no effect on any cluster. */
bool cluster_available(const struct cluster *cluster);
unsigned cluster_caps(const struct cluster *cluster);
/* "local, kubernetes" */
const char *cluster_known_names(void);

/* Wrappers that answer not_supported for an empty slot and cluster_unavailable for a backend that
 * was not built. */
int cluster_validate(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err);
int cluster_deploy(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err);
int cluster_scale(struct cluster *cluster, const struct cluster_app *app, int replicas,
                  struct emp_error *err);
int cluster_stop(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err);
int cluster_start(struct cluster *cluster, const struct cluster_app *app, struct emp_error *err);
int cluster_remove(struct cluster *cluster, const struct cluster_app *app, bool purge,
                   struct emp_error *err);
int cluster_address_of(struct cluster *cluster, const struct cluster_app *app, char *buf,
                       size_t size, struct emp_error *err);
int cluster_status(struct cluster *cluster, const struct cluster_app *app,
                   struct cluster_status *ret_status, struct emp_error *err);

#endif
