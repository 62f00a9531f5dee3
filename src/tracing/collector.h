/* SPDX-License-Identifier: Apache-2.0 */
/* The collector: where span messages (a Kafka message, a POST /api/v2/spans body) come in, from
 * any thread. It parses them, maps each service name to its app, counts them in one aggregator,
 * and a thread of its own adds what was counted to the store every flush interval. It also says up
 * to when everything it was given is in the store, so that the Kafka consumer commits offsets only
 * for spans that are counted. Not for reading metrics back (the store does that). */
#ifndef EMP_COLLECTOR_H
#define EMP_COLLECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emp/error.h"
#include "span.h"

struct store;

struct collector_config {
    struct store *store;
    int64_t lateness_s;   /* spans older than this are refused (600) */
    int64_t future_s;     /* spans this far ahead are refused (60) */
    int64_t join_ms;      /* a half of a call waits this long here for its other half (2000) */
    int64_t join_wait_ms; /* and this long in the store, for other consumers' halves (10000) */
    int64_t flush_ms;     /* how often counts go to the store (1000) */
    size_t pending_max;   /* halves waiting here, at most (100000) */
    size_t park_at;       /* series or edges that make ingestion drain the aggregator itself */
};

struct collector;

int collector_new(const struct collector_config *config, struct collector **ret,
                  struct emp_error *err);
/* Counts what is still pending, adds it to the store, and frees. Accepts NULL. */
void collector_free(struct collector *collector);

/* Parses and counts one message; fills *ret (may be NULL). Thread-safe. */
void collector_add(struct collector *collector, const char *buf, size_t len,
                   struct span_parse_result *ret);

/* A message for collector_add_many. */
struct collector_message {
    const char *buf;
    size_t len;
};

/* Parses and counts messages as collector_add does each, taking the aggregator's lock once for
 * as many of them as hold about COLLECTOR_BATCH_SPANS spans together (64 messages at most): a
 * queue's worker hands over what it took from the queue at once, and two workers do not wait on
 * each other for every message. Thread-safe. */
#define COLLECTOR_BATCH_SPANS 1024
void collector_add_many(struct collector *collector, const struct collector_message *messages,
                        size_t count);

/* Parses one message without counting it, to tell whether it is valid. Thread-safe. */
void collector_check(const char *buf, size_t len, struct span_parse_result *ret);

/* Whether what feeds the collector is catching up on a backlog (the Kafka consumer, while a
 * quarter of its inbox or more waits to be counted). Meanwhile the flusher writes every
 * COLLECTOR_BEHIND_FLUSHES flush intervals instead of every one, unless the aggregator fills up
 * first: what a flush costs the store grows with the series and edges it carries, not with the
 * spans, so a backlog is counted into fewer, larger writes, and the store (which shares the
 * machine) takes less of the CPU that counting needs. The metrics lag by that much more while
 * the backlog lasts, which they do by the backlog's age anyway. Thread-safe. */
#define COLLECTOR_BEHIND_FLUSHES 4
void collector_set_behind(struct collector *collector, bool behind);

/* Whether counting had to wait for the store lately (a thread waits now, or did within the last
 * second): the store limits ingestion then, and more messages queued for counting would only
 * take memory. Thread-safe. */
bool collector_store_bound(struct collector *collector);

/* Everything given to collector_add before this time (time_mono_ms()) is in the store. */
int64_t collector_done_before(struct collector *collector);
/* Finishes every join now and adds everything to the store (before a Kafka rebalance gives
 * partitions away, and at shutdown). Returns 0, or the store's error. */
int collector_flush_all(struct collector *collector, struct emp_error *err);

/* Counters since start, for the server's own view of ingestion. */
struct collector_counters {
    uint64_t messages, bad_messages, spans, bad_spans, unknown_service, too_late, too_early,
        pending, unsent_batches, dropped_batches;
    int64_t last_span_at_ms; /* when the last span was counted (time_now_ms()), 0 before */
};
void collector_counters(struct collector *collector, struct collector_counters *ret);

#endif
