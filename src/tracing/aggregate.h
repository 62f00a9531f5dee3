/* SPDX-License-Identifier: Apache-2.0 */
/* Turns spans into the numbers EMP keeps per app and per dependency edge, in 10 s buckets of
 * span time: requests, errors, latency and self-time histograms, and calls between services. It
 * joins the two halves of each call (the caller's CLIENT span and the callee's SERVER span, in
 * both of Zipkin's conventions: one shared span id, or the server a child of the client) and each
 * server span with the client calls it made, within a bounded window, as Zipkin's dependency
 * linker does over a trace's span tree. In memory only; what it counts is drained into batches
 * that the store adds to Redis. Not thread-safe: one caller at a time. */
#ifndef EMP_AGGREGATE_H
#define EMP_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emp/hist.h"
#include "span.h"

#define AGG_ID_MAX      37         /* an app id and its NUL */
#define AGG_PARK_BYTES  (12 << 20) /* what the counts since the last drain may take, about */
#define AGG_NAMES_MAX   16384      /* different service names that waiting halves hold, at most */
#define AGG_PENDING_MAX (1u << 26) /* agg_config.pending_max, at most (table slots fit 32 bits) */
#define AGG_HIST_SPARSE 8          /* buckets a histogram keeps as entries while it is counted */

/* Maps a span's service name (hash: its emp_hash_text()) to the id of the app it is
 * ("alice/songs-ms"), writing it into ret_id (AGG_ID_MAX bytes); false when the service is no EMP
 * app. */
typedef bool (*agg_resolve_fn)(void *ctx, const char *service, uint64_t hash, char *ret_id);

struct agg_config {
    int64_t bucket_s;   /* width of a bucket (10) */
    int64_t lateness_s; /* spans older than this (by their timestamp) are refused */
    int64_t future_s;   /* spans this far ahead of the clock are refused (skew) */
    int64_t join_ms;    /* how long a half of a call waits for the other half */
    size_t pending_max; /* halves kept waiting, at most */
    size_t park_at;     /* series or edges at which agg_must_drain says so (and at most that) */
    size_t park_bytes;  /* or heap bytes they take (AGG_PARK_BYTES when 0) */
    agg_resolve_fn resolve;
    void *resolve_ctx;
};

/* A histogram bucket of a drain: 8 bytes (a drain holds far fewer than 2^32 spans), so that a
 * search in a histogram touches half the cache lines. */
struct agg_hist_entry {
    uint16_t bucket;
    uint32_t count;
};

/* A histogram's buckets that are not empty, in ascending order: what a batch holds. While it is
 * counted, a histogram of more than AGG_HIST_SPARSE buckets is kept as an array of counts over
 * its buckets' range instead (counts, NULL in a batch), which a value finds its count in at
 * once: a search through hundreds of entries far from the cache waited for a line per step. */
struct agg_hist {
    struct agg_hist_entry *entries;
    uint32_t len, cap;
    uint32_t *counts; /* counts[b - low] for low <= b < low + span */
    uint16_t low, span;
};

/* One app's numbers in one bucket. */
struct agg_series {
    char app_id[AGG_ID_MAX];
    int64_t bucket; /* its start, seconds since the epoch */
    uint64_t requests, errors;
    struct agg_hist latency; /* server-side durations */
    struct agg_hist self;    /* durations minus the calls made inside */
};

/* Calls from one app to one service in one bucket. */
struct agg_edge {
    char caller_app[AGG_ID_MAX];
    const char *caller;          /* the caller's service name (in the batch's text) */
    const char *callee;          /* the callee's service name (in the batch's text) */
    char callee_app[AGG_ID_MAX]; /* "" when the callee is no EMP app */
    int64_t bucket;
    uint64_t calls, errors;
    struct agg_hist latency; /* as the caller saw each call */
};

/* Half of a call that found no other half in this aggregator's window: a server span whose
 * caller's client span it did not see, or a client span whose server span it did not see. Another
 * consumer may have seen the other half (the store joins them); a call whose server never comes
 * is a leaf to the service its client named. */
struct agg_half {
    bool server;
    uint64_t trace_hi, trace_lo, id;
    uint64_t parent_id;
    bool has_parent, shared;
    char app_id[AGG_ID_MAX];
    const char *service;         /* in the batch's text */
    const char *remote;          /* a call's remoteEndpoint.serviceName, "" when none */
    char remote_app[AGG_ID_MAX]; /* its app id, "" when it names no EMP app */
    int64_t bucket;              /* a call's bucket */
    int64_t duration_us;         /* a call's duration as the caller saw it */
    bool error;
};

/* The service names of a batch's edges and halves, in chunks that do not move: a name takes its
 * length, not SPAN_SERVICE_MAX. */
struct agg_text;

/* What one drain hands over. */
struct agg_batch {
    struct agg_series *series;
    size_t series_count;
    struct agg_edge *edges;
    size_t edges_count;
    struct agg_half *halves;
    size_t halves_count;
    struct agg_text *text;
};

/* Counts of what was refused, for the metrics of the ingestion itself. */
struct agg_counters {
    uint64_t spans;           /* taken */
    uint64_t unknown;         /* of a service that is no EMP app */
    uint64_t too_late;        /* older than lateness_s */
    uint64_t too_early;       /* beyond future_s */
    uint64_t no_timestamp;    /* without a timestamp or duration where one is needed */
    uint64_t pending_dropped; /* halves finalised early because pending_max was reached */
    uint64_t halves;          /* halves handed over unjoined */
    uint64_t duplicates;      /* spans that came again while their first copy waited: not counted */
};

struct agg;

int agg_new(const struct agg_config *config, struct agg **ret_agg);
void agg_free(struct agg *agg);

/* Counts spans received at now_us (the clock, µs since the epoch). */
void agg_add(struct agg *agg, const struct span *spans, size_t count, int64_t now_us);

/* Where a span's keys (its id, its parent's) fall in the aggregator's table. */
struct agg_slots {
    uint32_t id, parent;
};
/* The slots of each span. It reads only what agg_new set, so it needs no lock: a caller that
 * holds the aggregator under one computes them before it takes it. */
void agg_slots_of(const struct agg *agg, const struct span *spans, size_t count,
                  struct agg_slots *ret);
/* agg_add, with the app id of each span's service already resolved (app_ids[i], "" when it is
 * no app) and its slots computed (agg_slots_of): the caller does both before it takes the lock
 * it holds the aggregator under. */
void agg_add_resolved(struct agg *agg, const struct span *spans, const char (*app_ids)[AGG_ID_MAX],
                      const struct agg_slots *slots, size_t count, int64_t now_us);
/* Finishes the joins whose window has passed (or all of them, when force: at shutdown). */
void agg_tick(struct agg *agg, int64_t now_us, bool force);

/* Hands over what was counted since the last drain into *ret, and starts anew. Free it with
 * agg_batch_free(); any count may be 0. */
int agg_drain(struct agg *agg, struct agg_batch *ret);
/* Frees what a batch holds and empties it; accepts NULL. */
void agg_batch_free(struct agg_batch *batch);

/* Whether it must be drained before the next message is added: beyond this, counts would be
 * lost (one message adds at most SPAN_LIST_MAX series and edges). */
bool agg_must_drain(const struct agg *agg);

/* Halves still waiting for their other half. */
size_t agg_pending(const struct agg *agg);
const struct agg_counters *agg_counters(const struct agg *agg);

#endif
