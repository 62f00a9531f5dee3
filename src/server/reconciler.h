/* SPDX-License-Identifier: Apache-2.0 */
/* The reconciler: worker threads that make the cluster match the desired state in the store. Each
 * app is looked at when it changes, while it converges, after failures (with backoff) and
 * periodically (to repair drift); a lease in the store keeps two emp-servers off one app. */
#ifndef EMP_RECONCILER_H
#define EMP_RECONCILER_H

#include <stdint.h>

#include "cluster.h"
#include "emp/error.h"
#include "store.h"

struct recon_config {
    int workers;
    int64_t resync_ms;      /* next look at an app that is as desired */
    int64_t converge_ms;    /* next look at an app on its way (replicas starting) */
    int64_t backoff_min_ms; /* first retry after a failure, doubling ... */
    int64_t backoff_max_ms; /* ... up to this */
    int64_t lease_ms;
    int64_t poll_ms; /* how often idle workers look for due work changed by other servers */
    /* For a backend with CLUSTER_CAP_SINGLE_NODE: this emp-server's name as the one node that
     * reconciles it (a lease in the store, renewed while the workers run). */
    const char *node;
    int64_t node_ttl_ms;
};

/* Sensible values for all of the above. */
void recon_config_defaults(struct recon_config *config);

struct recon;

/* Starts config->workers threads (0: none: this emp-server only serves the API, or tests call
 * recon_run_once). store and cluster are borrowed. For a single-node backend, fails with -EBUSY
 * and err naming the other node when another emp-server reconciles it. Free with recon_stop(). */
int recon_start(struct store *store, struct cluster *cluster, const struct recon_config *config,
                struct recon **ret_recon, struct emp_error *err);
/* Wakes idle workers: there is new work. Safe from any thread; ctx is a struct recon. */
void recon_wake(void *ctx);
/* A backend saw app_id change by itself (cluster_on_change): look at it at once. Safe from any
 * thread, never blocks on the store; ctx is a struct recon. */
void recon_app_changed(void *ctx, const char *app_id);
/* Stops the workers, letting each finish the app it works on. Accepts NULL. */
void recon_stop(struct recon *recon);

/* Claims and reconciles one due app on the calling thread. Returns 0 if it did one, -ENOENT if none
 * was due, or a negative errno from the store. */
int recon_run_once(struct recon *recon);

/* This instance's lease holder name ("host:pid:random"). */
const char *recon_holder(const struct recon *recon);

#endif
