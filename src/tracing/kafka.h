/* SPDX-License-Identifier: Apache-2.0 */
/* Spans through Kafka (librdkafka): a consumer in a group that gives each message (a JSON list of
 * Zipkin v2 spans, as Zipkin's Kafka collector reads them) to the collector and commits offsets
 * only for messages whose spans are in the store; and a producer that puts on the same topic the
 * spans that came over HTTP, so that a Zipkin server reading Kafka sees every span. Delivery is
 * at least once: after a crash, messages since the last commit are counted again. */
#ifndef EMP_KAFKA_H
#define EMP_KAFKA_H

#include <stddef.h>

#include "emp/error.h"

struct collector;

struct kafka_config {
    const char *brokers; /* host:port,... */
    const char *topic;   /* "zipkin" */
    const char *group;   /* "emp-tracing" */
    int session_timeout_ms;
    size_t inbox_bytes; /* consumed messages waiting to be counted, at most (about) */
    struct collector *collector;
};

struct kafka;

/* Starts consuming (a thread of its own) and makes the producer. Brokers need not be up yet:
 * librdkafka connects when they are. Returns 0, or -EINVAL with err when the configuration is
 * refused. */
int kafka_start(const struct kafka_config *config, struct kafka **ret, struct emp_error *err);
/* Counts and commits what was consumed, leaves the group, delivers what the producer holds (for up
 * to a few seconds), and frees. Accepts NULL. */
void kafka_stop(struct kafka *kafka);

/* Puts one message of spans on the topic (copied). -EAGAIN when the producer's queue is full: the
 * caller counts the spans itself. A message that cannot be delivered later is counted by the
 * collector then, so that no span is lost and none is counted twice. */
int kafka_produce(struct kafka *kafka, const char *buf, size_t len);

/* What the consumer did, for the server's view of ingestion. */
struct kafka_counters {
    unsigned long long consumed, committed_offsets, produced, produce_failed, assigned_partitions;
    unsigned long long pauses; /* times the partitions were paused because the inbox was full */
};
void kafka_counters(struct kafka *kafka, struct kafka_counters *ret);

#endif
