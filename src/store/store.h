/* SPDX-License-Identifier: Apache-2.0 */
/* The store: EMP's state in Redis (users, sessions, apps, the reconciler's schedule and leases).
 * The only module that speaks Redis. It knows records and keys, not HTTP nor cluster backends.
 * Every function is safe to call from any thread: each thread uses its own connection, made on
 * first use and made again after an error, so the server recovers by itself once Redis is back. */
#ifndef EMP_STORE_H
#define EMP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emp/error.h"
#include "emp/hist.h"
#include "emp/names.h"

struct store;

/* Opens a store for url: "redis://[:password@]host[:port][/db]" or "unix:///path/to/socket". No
 * connection is made yet. Returns 0 or -EINVAL (err says what is wrong with the URL). Free with
 * store_close(). */
int store_open(const char *url, struct store **ret_store, struct emp_error *err);
/* Accepts NULL. Connections of other threads are freed when those threads end. */
void store_close(struct store *store);
/* Serves the hot reads (sessions, and apps read with them) from a cache of at most max_entries
 * records in this process, kept exact by Redis' client tracking: every change of a cached key,
 * by any emp-server, drops it. While the invalidation channel is down the cache is off. */
int store_enable_cache(struct store *store, size_t max_entries, struct emp_error *err);
/* The URL without its password, for messages and logs. Owned by the store. */
const char *store_display_url(const struct store *store);
/* Round trip to Redis. Returns 0, or -EIO with err saying Redis is unreachable. */
int store_ping(struct store *store, struct emp_error *err);

/* Every function below returns 0 on success, -ENOENT when the record does not exist, -EEXIST when
 * it already does, -EIO (err set, code store_unavailable) when Redis cannot be reached, and
 * -ENOMEM. */

/* ---- users and sessions ---- */

#define STORE_HASH_MAX 160 /* longest password hash accepted (Argon2id strings are ~100) */

struct store_user {
    char username[NAMES_LABEL_MAX + 1];
    char password_hash[STORE_HASH_MAX];
    int64_t created_ms;
};

int store_user_create(struct store *store, const struct store_user *user, struct emp_error *err);
int store_user_get(struct store *store, const char *username, struct store_user *ret_user,
                   struct emp_error *err);

/* Sessions are keyed by the hex SHA-256 digest of the token; Redis expires them at expires_ms. */
int store_session_create(struct store *store, const char *digest, const char *username,
                         int64_t expires_ms, struct emp_error *err);
/* Fills ret_username (NAMES_LABEL_MAX + 1 bytes) and *ret_expires_ms. */
int store_session_get(struct store *store, const char *digest, char *ret_username,
                      int64_t *ret_expires_ms, struct emp_error *err);
int store_session_delete(struct store *store, const char *digest, struct emp_error *err);

/* Failed-login counters per username over a sliding window that starts at the first failure. */
int store_login_failure_add(struct store *store, const char *username, int window_s,
                            int64_t *ret_count, int64_t *ret_retry_after_s, struct emp_error *err);
int store_login_failure_get(struct store *store, const char *username, int64_t *ret_count,
                            int64_t *ret_retry_after_s, struct emp_error *err);
int store_login_failure_clear(struct store *store, const char *username, struct emp_error *err);

/* ---- apps ---- */

enum app_state {
    APP_DEPLOYING,
    APP_RUNNING,
    APP_STOPPED,
    APP_FAILED,
    APP_REMOVING,
    APP_STATE__COUNT
};
enum app_desired { DESIRED_RUNNING, DESIRED_STOPPED, DESIRED_REMOVED, DESIRED__COUNT };

const char *app_state_name(enum app_state state);
const char *app_desired_name(enum app_desired desired);

struct store_app {
    char id[NAMES_UUID_LEN + 1];
    char owner[NAMES_LABEL_MAX + 1];
    char name[NAMES_LABEL_MAX + 1];
    char *spec_json; /* canonical spec (spec_to_json) */
    int64_t created_ms;
    int64_t updated_ms;
    /* desired state: written by the API, each change bumps generation */
    enum app_desired desired;
    int desired_replicas;
    int64_t generation;
    /* observed state: written by the reconciler */
    enum app_state state;
    char *reason;  /* why it failed or what it waits for; NULL when there is nothing to say */
    char *address; /* external address; NULL until there is one */
    int ready_replicas;
    int64_t observed_generation;
    bool deployed;   /* the backend may hold objects of this app */
    int failures;    /* failed reconcile attempts in a row, for backoff */
    int restarts;    /* replicas the backend restarted */
    char *last_exit; /* how the last restarted replica ended; NULL if none did */
    char *binding;   /* what the backend asked to be given back (cluster_status.binding) */
    bool purge;      /* with DESIRED_REMOVED: delete the app's persistent data too */
};

/* Frees a record from store_app_get() or a list. Accepts NULL. */
void store_app_free(struct store_app *app);
void store_app_list_free(struct store_app **apps, size_t count);

/* Creates app (all fields as given; generation should be 1) and schedules it for the reconciler
 * now. -EEXIST when the owner already has an app of that name; -EDQUOT when the owner already has
 * max_apps apps. */
int store_app_create(struct store *store, const struct store_app *app, int max_apps,
                     struct emp_error *err);
/* *ret_app is a new record (store_app_free). */
int store_app_get(struct store *store, const char *id, struct store_app **ret_app,
                  struct emp_error *err);
/* The id of owner's app called name, into ret_id (NAMES_UUID_LEN + 1 bytes). */
int store_app_find(struct store *store, const char *owner, const char *name, char *ret_id,
                   struct emp_error *err);

/* The request path's fast case in one round trip: the session of digest and the app of id. Either
 * may be missing: *ret_username is "" when the session is not known, *ret_app NULL when the app is
 * not. */
int store_session_and_app(struct store *store, const char *digest, const char *id,
                          char *ret_username, int64_t *ret_expires_ms, struct store_app **ret_app,
                          struct emp_error *err);

/* A page of apps in name order (owner != NULL: that owner's apps) or in id order (owner == NULL:
 * all apps, for the scheduler). cursor is "" or the next_cursor of the page before.
 * *ret_next_cursor is malloc'd, or NULL on the last page. */
int store_app_list(struct store *store, const char *owner, const char *cursor, size_t limit,
                   struct store_app ***ret_apps, size_t *ret_count, char **ret_next_cursor,
                   struct emp_error *err);

/* A change of desired state. Fields left at their "unset" value stay as they are. */
struct store_app_change {
    int desired;           /* an enum app_desired, or -1 */
    int desired_replicas;  /* or -1 */
    const char *spec_json; /* or NULL */
    int state;             /* an enum app_state the API sets at once (removing), or -1 */
    int purge;             /* with a remove: 1 deletes persistent data, 0 keeps it; or -1 */
};

/* Applies change if the app's generation is still expected_generation (optimistic concurrency: the
 * caller read the app, decided, and writes only if nobody wrote in between), bumps generation,
 * and schedules the app for the reconciler now. -ESTALE if the generation moved on: read again and
 * retry. *ret_generation (may be NULL) is the new generation. */
int store_app_update(struct store *store, const char *id, int64_t expected_generation,
                     const struct store_app_change *change, int64_t *ret_generation,
                     struct emp_error *err);

/* What the reconciler saw. Leaves desired state alone, so it never races the API. */
struct store_app_observed {
    enum app_state state;
    const char *reason;  /* NULL clears it */
    const char *address; /* NULL clears it */
    int ready_replicas;
    int64_t observed_generation;
    bool deployed;
    int failures;
    int restarts;
    const char *last_exit; /* NULL clears it */
    const char *binding;   /* NULL clears it */
};
int store_app_set_observed(struct store *store, const char *id,
                           const struct store_app_observed *observed, struct emp_error *err);

/* Removes the app and every key and index entry of it. */
int store_app_delete(struct store *store, const char *id, struct emp_error *err);

/* ---- the reconciler's schedule ---- */

/* Takes the lease on one app that is due (its check time is at or before now_ms and nobody else
 * holds its lease), for lease_ms, in holder's name. Writes its id to ret_id. -ENOENT when nothing
 * is due. */
int store_recon_claim(struct store *store, const char *holder, int64_t now_ms, int64_t lease_ms,
                      char *ret_id, struct emp_error *err);
/* Extends a held lease. -ENOENT if holder no longer holds it. */
int store_recon_renew(struct store *store, const char *id, const char *holder, int64_t lease_ms,
                      struct emp_error *err);
/* Releases the lease and schedules the next check at next_ms, or now if the app's generation moved
 * past seen_generation while the reconciler worked. */
int store_recon_release(struct store *store, const char *id, const char *holder, int64_t next_ms,
                        int64_t seen_generation, struct emp_error *err);
/* Moves the app's next check to now_ms if it was due later; an app that is gone stays gone. */
int store_recon_expedite(struct store *store, const char *id, int64_t now_ms,
                         struct emp_error *err);
/* Takes or renews, for ttl_ms, the lease that makes node the one emp-server that reconciles a
 * backend of which there can be only one per Redis (kind "local"). -EBUSY when another node
 * holds it: its name goes to ret_holder (holder_size bytes). */
int store_node_claim(struct store *store, const char *kind, const char *node, int64_t ttl_ms,
                     char *ret_holder, size_t holder_size, struct emp_error *err);
/* Gives the lease up if node holds it. */
int store_node_release(struct store *store, const char *kind, const char *node,
                       struct emp_error *err);
/* Makes every app due at now_ms (after a start of emp-server whose backend lost its state). */
int store_recon_expedite_all(struct store *store, int64_t now_ms, struct emp_error *err);
/* The earliest check time of any app, or -ENOENT when there are no apps. */
int store_recon_next_due(struct store *store, int64_t *ret_due_ms, struct emp_error *err);

/* ---- trace metrics ----
 * What the tracing aggregator counted, kept in a mergeable form: every count is added (HINCRBY, or
 * a packed histogram's buckets summed into the field by the script), so any number of emp-servers
 * may add to the same buckets and any one answers for all. Counts go into fine (10 s) buckets;
 * STORE_TRACE_ROLL_AFTER_S after a minute ends, whichever emp-server writes next rolls it up into
 * the coarse (60 s) buckets once, and counts later than that go to both. Redis expires fine
 * buckets after STORE_TRACE_FINE_KEEP_S and coarse ones after STORE_TRACE_COARSE_KEEP_S; a coarse
 * window reads the fine buckets of minutes not rolled up. */

#define STORE_TRACE_FINE_S        10
#define STORE_TRACE_COARSE_S      60
#define STORE_TRACE_FINE_KEEP_S   900  /* 15 minutes of 10 s buckets */
#define STORE_TRACE_COARSE_KEEP_S 7200 /* 2 hours of 60 s buckets */
#define STORE_TRACE_ROLL_AFTER_S  120  /* a minute is rolled up this long after it ended */
#define STORE_TRACE_WRITE_KEEP_S  3600 /* how long the store remembers a write it applied */

struct agg_batch;

/* Counters of the ingestion itself, added to those in Redis. */
struct store_trace_stats {
    uint64_t messages, bad_messages, spans, bad_spans, unknown_service, too_late, too_early,
        no_timestamp, pending_dropped, duplicates;
};

/* Adds a drained batch (its halves wait in Redis for halves that other consumers drain) and
 * stats (may be NULL). join_wait_ms: how long a call without its server waits for it before it
 * counts as a leaf. Large batches go in several steps, each atomic. write_id (0: none) names
 * the write: sent again with the same id (after an error, when some of its steps may have been
 * applied), each step is applied once, for up to STORE_TRACE_WRITE_KEEP_S. */
int store_trace_add(struct store *store, const struct agg_batch *batch,
                    const struct store_trace_stats *stats, uint64_t write_id, int64_t now_ms,
                    int64_t join_wait_ms, struct emp_error *err);
/* Marks as rolled up the minutes whose 1 min buckets an emp-server from before roll-ups wrote
 * (it wrote each count to both buckets): run at start, before counting. *ret_marked (may be
 * NULL): how many. */
int store_trace_adopt(struct store *store, int64_t now_ms, long long *ret_marked,
                      struct emp_error *err);
int store_trace_stats_get(struct store *store, struct store_trace_stats *ret_stats,
                          struct emp_error *err);

/* Calls between an app and one peer in a window. */
struct store_trace_peer {
    char *service; /* the peer's service name */
    char *app_id;  /* the peer's app id, or NULL when it is no EMP app */
    uint64_t calls, errors;
    struct hist_entry *latency; /* as the caller saw the calls */
    size_t latency_len;
};

/* An app's numbers summed over a window. */
struct store_trace_window {
    int resolution_s; /* the buckets it was summed from */
    uint64_t requests, errors;
    struct hist_entry *latency, *self;
    size_t latency_len, self_len;
    struct store_trace_peer *outgoing, *incoming; /* by service name */
    size_t outgoing_len, incoming_len;
};

/* Sums the buckets of app_id that start in [end_s - window_s, end_s). end_s and window_s are
 * multiples of the resolution: STORE_TRACE_FINE_S for windows up to STORE_TRACE_FINE_KEEP_S that
 * are still within it, STORE_TRACE_COARSE_S otherwise (-EINVAL if they are not). Free with
 * store_trace_window_free(). */
int store_trace_window_get(struct store *store, const char *app_id, int64_t end_s, int64_t window_s,
                           int resolution_s, struct store_trace_window *ret, struct emp_error *err);
void store_trace_window_free(struct store_trace_window *window);

#endif
