/* SPDX-License-Identifier: Apache-2.0 */
/* The consumer thread polls, hands each message to the collector, and remembers per partition
 * which offset it had reached when (a mark every 100 ms). Once a second it commits, per partition,
 * the offset of the newest mark that the collector says is in the store. Before partitions are
 * revoked (a rebalance) and at stop, it flushes the collector and commits everything it consumed,
 * so that a clean handover or shutdown counts each message exactly once. */
#include "kafka.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "emp/log.h"
#include "emp/timeutil.h"

#define PARTITIONS_MAX  1024
#define MARKS           256
#define MARK_SPAN_MS    100
#define COMMIT_EVERY_MS 1000
#define POLL_MS         100
#define STOP_FLUSH_MS   5000

/* Offsets before next_offset were all given to the collector by last_ms. */
struct mark {
    int64_t next_offset;
    int64_t first_ms, last_ms;
};

struct partition {
    bool assigned;
    int64_t committed;
    struct mark marks[MARKS];
    size_t count;
};

struct kafka {
    char *topic;
    struct collector *collector;
    rd_kafka_t *consumer, *producer;
    pthread_t thread;
    atomic_bool stopping;
    struct partition *partitions; /* PARTITIONS_MAX; the consumer thread's (and rebalances') */
    int64_t last_commit_ms;
    int64_t last_error_log_ms;
    atomic_ullong consumed, committed_offsets, produced, produce_failed, assigned;
};

static void mark(struct kafka *k, int32_t partition, int64_t next_offset)
{
    if (partition < 0 || partition >= PARTITIONS_MAX)
        return;
    struct partition *p = &k->partitions[partition];
    int64_t now = time_mono_ms();
    if (p->count && now - p->marks[p->count - 1].first_ms < MARK_SPAN_MS) {
        p->marks[p->count - 1].next_offset = next_offset;
        p->marks[p->count - 1].last_ms = now;
        return;
    }
    if (p->count == MARKS) {
        /* forgetting the oldest mark only delays its commit to the next mark's */
        memmove(&p->marks[0], &p->marks[1], (MARKS - 1) * sizeof(p->marks[0]));
        p->count--;
    }
    p->marks[p->count++] = (struct mark){next_offset, now, now};
}

/* Commits, for every partition, the newest offset whose messages are all in the store (all: every
 * offset consumed; the caller flushed the collector). */
static void commit_done(struct kafka *k, bool all)
{
    int64_t done_before = all ? INT64_MAX : collector_done_before(k->collector);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    if (!list)
        return;
    for (int32_t i = 0; i < PARTITIONS_MAX; i++) {
        struct partition *p = &k->partitions[i];
        if (!p->assigned || !p->count)
            continue;
        size_t done = 0;
        while (done < p->count && p->marks[done].last_ms < done_before)
            done++;
        if (!done)
            continue;
        int64_t offset = p->marks[done - 1].next_offset;
        memmove(&p->marks[0], &p->marks[done], (p->count - done) * sizeof(p->marks[0]));
        p->count -= done;
        if (offset > p->committed) {
            rd_kafka_topic_partition_list_add(list, k->topic, i)->offset = offset;
            p->committed = offset;
        }
    }
    if (list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(k->consumer, list, all ? 0 : 1);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("kafka offsets were not committed", "error=\"%s\"", rd_kafka_err2str(err));
        else
            atomic_fetch_add(&k->committed_offsets, (unsigned long long)list->cnt);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka *k = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t id = parts->elems[i].partition;
            if (id >= 0 && id < PARTITIONS_MAX) {
                struct partition *p = &k->partitions[id];
                memset(p, 0, sizeof(*p));
                p->assigned = true;
                p->committed = -1;
            } else {
                log_warn("a kafka partition beyond what emp-server tracks is not committed",
                         "partition=%d max=%d", id, PARTITIONS_MAX - 1);
            }
        }
        log_info("kafka partitions assigned", "topic=%s count=%d", k->topic, parts->cnt);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
    } else {
        /* revoked (or the group failed): what was consumed is counted and committed first, so
         * that the next owner starts after it */
        struct emp_error e = {0};
        if (collector_flush_all(k->collector, &e) == 0)
            commit_done(k, true);
        else
            log_warn("kafka partitions handed on before their counts reached the store: they "
                     "will be counted again",
                     NULL);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t id = parts->elems[i].partition;
            if (id >= 0 && id < PARTITIONS_MAX)
                k->partitions[id].assigned = false;
        }
        log_info("kafka partitions revoked", "topic=%s count=%d", k->topic, parts->cnt);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else
            rd_kafka_assign(rk, NULL);
    }
    unsigned long long assigned = 0;
    for (int32_t i = 0; i < PARTITIONS_MAX; i++)
        assigned += k->partitions[i].assigned ? 1 : 0;
    atomic_store(&k->assigned, assigned);
}

/* Messages that never reached Kafka: counted here, as if they had come back from it. */
static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kafka *k = opaque;
    if (!m->err) {
        atomic_fetch_add(&k->produced, 1);
        return;
    }
    atomic_fetch_add(&k->produce_failed, 1);
    collector_add(k->collector, m->payload, m->len, NULL);
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    struct kafka *k = opaque;
    int64_t now = time_mono_ms();
    if (now - k->last_error_log_ms < 10000) /* brokers away: once every 10 s is enough */
        return;
    k->last_error_log_ms = now;
    char why[300];
    log_warn("kafka", "error=%s code=%s", log_quote(why, sizeof(why), reason),
             rd_kafka_err2name((rd_kafka_resp_err_t)code));
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4) { /* syslog levels: warning and worse */
        char text[400];
        log_warn("librdkafka", "facility=%s message=%s", fac, log_quote(text, sizeof(text), buf));
    }
}

static void *consume_main(void *arg)
{
    struct kafka *k = arg;
    while (!atomic_load(&k->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, POLL_MS);
        if (m) {
            if (!m->err) {
                collector_add(k->collector, m->payload, m->len, NULL);
                mark(k, m->partition, m->offset + 1);
                atomic_fetch_add(&k->consumed, 1);
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                on_error(k->consumer, m->err, rd_kafka_message_errstr(m), k);
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(k->producer, 0);
        int64_t now = time_mono_ms();
        if (now - k->last_commit_ms >= COMMIT_EVERY_MS) {
            commit_done(k, false);
            k->last_commit_ms = now;
        }
    }
    return NULL;
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, struct emp_error *err)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, name,
                             "Kafka refuses %s=%.100s: %s", name, value, why);
    return 0;
}

static rd_kafka_conf_t *base_conf(struct kafka *k, const struct kafka_config *config,
                                  struct emp_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return NULL;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (set(conf, "bootstrap.servers", config->brokers, err) < 0 ||
        set(conf, "client.id", "emp-server", err) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int kafka_start(const struct kafka_config *config, struct kafka **ret, struct emp_error *err)
{
    struct kafka *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->topic = strdup(config->topic);
    k->collector = config->collector;
    k->partitions = calloc(PARTITIONS_MAX, sizeof(*k->partitions));
    char why[512];
    int r = -ENOMEM;
    if (!k->topic || !k->partitions)
        goto fail;
    r = -EINVAL;
    rd_kafka_conf_t *conf = base_conf(k, config, err);
    if (!conf)
        goto fail;
    char session[24], heartbeat[24];
    int session_ms = config->session_timeout_ms > 0 ? config->session_timeout_ms : 10000;
    snprintf(session, sizeof(session), "%d", session_ms);
    snprintf(heartbeat, sizeof(heartbeat), "%d", session_ms / 3 > 0 ? session_ms / 3 : 1);
    /* offsets are committed by hand, after counting; the consumer's buffers are bounded */
    if (set(conf, "group.id", config->group, err) < 0 ||
        set(conf, "enable.auto.commit", "false", err) < 0 ||
        set(conf, "enable.auto.offset.store", "false", err) < 0 ||
        set(conf, "auto.offset.reset", "earliest", err) < 0 ||
        set(conf, "session.timeout.ms", session, err) < 0 ||
        set(conf, "heartbeat.interval.ms", heartbeat, err) < 0 ||
        /* Prefetched messages, at most. Once this is full, librdkafka before 2.4 stops fetching
         * for a whole second (librdkafka#2879), so a consumer catching up idles unless the queue
         * holds about a second of its work: with 16 MiB it idled 80 % of the time, 32 MiB keep
         * it busy at the pace the store takes counts (bench/tracing.sh) within the memory bound. */
        set(conf, "queued.max.messages.kbytes", "32768", err) < 0 ||
        set(conf, "fetch.max.bytes", "4194304", err) < 0 ||
        set(conf, "receive.message.max.bytes", "16777216", err) < 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance);
    k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!k->consumer) {
        rd_kafka_conf_destroy(conf);
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kafka-brokers",
                          "the Kafka consumer could not be made: %s", why);
        goto fail;
    }
    rd_kafka_poll_set_consumer(k->consumer);
    conf = base_conf(k, config, err);
    if (!conf)
        goto fail;
    if (set(conf, "queue.buffering.max.kbytes", "16384", err) < 0 ||
        set(conf, "linger.ms", "5", err) < 0 || set(conf, "message.timeout.ms", "30000", err) < 0 ||
        set(conf, "message.max.bytes", "8388608", err) < 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!k->producer) {
        rd_kafka_conf_destroy(conf);
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kafka-brokers",
                          "the Kafka producer could not be made: %s", why);
        goto fail;
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t sub = rd_kafka_subscribe(k->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (sub) {
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kafka-topic",
                          "cannot subscribe to Kafka topic %.100s: %s", k->topic,
                          rd_kafka_err2str(sub));
        goto fail;
    }
    k->last_commit_ms = time_mono_ms();
    int t = pthread_create(&k->thread, NULL, consume_main, k);
    if (t) {
        r = emp_error_set(err, -t, EMP_ERR_INTERNAL, NULL,
                          "the Kafka consumer could not start a thread: %s", strerror(t));
        goto fail;
    }
    *ret = k;
    return 0;
fail:
    if (k->consumer) {
        rd_kafka_consumer_close(k->consumer);
        rd_kafka_destroy(k->consumer);
    }
    if (k->producer)
        rd_kafka_destroy(k->producer);
    free(k->partitions);
    free(k->topic);
    free(k);
    return r;
}

void kafka_stop(struct kafka *k)
{
    if (!k)
        return;
    atomic_store(&k->stopping, true);
    pthread_join(k->thread, NULL);
    /* spans of HTTP requests still in the producer: delivered, or counted here */
    rd_kafka_flush(k->producer, STOP_FLUSH_MS);
    struct emp_error err = {0};
    if (collector_flush_all(k->collector, &err) == 0)
        commit_done(k, true);
    rd_kafka_consumer_close(k->consumer); /* leaves the group: the others take over at once */
    rd_kafka_destroy(k->consumer);
    rd_kafka_destroy(k->producer);
    free(k->partitions);
    free(k->topic);
    free(k);
}

int kafka_produce(struct kafka *k, const char *buf, size_t len)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        k->producer, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_VALUE((void *)buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
        atomic_fetch_add(&k->produce_failed, 1);
        return -EAGAIN;
    }
    return 0;
}

void kafka_counters(struct kafka *k, struct kafka_counters *ret)
{
    ret->consumed = atomic_load(&k->consumed);
    ret->committed_offsets = atomic_load(&k->committed_offsets);
    ret->produced = atomic_load(&k->produced);
    ret->produce_failed = atomic_load(&k->produce_failed);
    ret->assigned_partitions = atomic_load(&k->assigned);
}
