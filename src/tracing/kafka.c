/* SPDX-License-Identifier: Apache-2.0 */
/* The consumer thread polls and puts each message in the inbox; worker threads take messages from
 * it, several at a time, and hand them to the collector, in parallel. Messages leave the inbox in
 * offset order: the oldest is retired once it and all before it are counted, and retiring remembers
 * per partition which offset had been reached when (a mark every 100 ms). Once a second the
 * consumer thread commits, per partition, the offset of the newest mark that the collector says is
 * in the store. Before partitions are revoked (a rebalance) and at stop, it lets the workers count
 * what the inbox holds, flushes the collector and commits everything consumed, so that a clean
 * handover or shutdown counts each message exactly once.
 *
 * Flow control is the inbox's, not librdkafka's: the consumer thread keeps librdkafka's prefetch
 * queue near empty, pauses the partitions while the inbox is full and resumes them when it has
 * drained. (librdkafka before 2.4 stops fetching for a whole second once its own queue is full,
 * librdkafka#2879; a consumer catching up would idle most of that second.) Pausing drops what
 * librdkafka prefetched since the last poll, and it fetches that again from the position after
 * the last message polled: nothing is lost or read twice. */
#include "kafka.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
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
#define WORKERS         2
#define WORK_BATCH      16         /* messages a worker takes from the inbox at once, at most */
#define INBOX_SLOTS     65536u     /* messages (a power of two) */
#define INBOX_BYTES     (32 << 20) /* by default: --kafka-inbox-mb */
#define WAIT_MS         20         /* while paused: the consumer waits this long for room at once */
#define WAKE_TIMEOUT_MS 1000

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

struct slot {
    rd_kafka_message_t *message;
    bool counted;
};

/* Messages between the consumer thread and the workers: slots [tail, taken) are being counted,
 * [taken, head) wait for a worker. Under lock. */
struct inbox {
    pthread_mutex_t lock; /* also the partitions' marks */
    pthread_cond_t work;  /* a message to take, or the end */
    pthread_cond_t room;  /* a message retired */
    struct slot *slots;   /* INBOX_SLOTS */
    uint64_t tail, taken, head;
    size_t bytes;
    size_t high;      /* bytes at which the partitions are paused (resumed at half) */
    bool store_bound; /* the collector waits for the store: paused at a quarter of high */
    bool closed;      /* the workers count what is left and end */
};

struct kafka {
    char *topic;
    struct collector *collector;
    rd_kafka_t *consumer, *producer;
    pthread_t thread;
    pthread_t workers[WORKERS];
    size_t worker_count;
    atomic_bool stopping;
    struct inbox inbox;
    bool paused;                  /* the consumer thread's */
    struct partition *partitions; /* PARTITIONS_MAX; marks under inbox.lock */
    int64_t last_commit_ms;
    int64_t last_error_log_ms;
    atomic_ullong consumed, committed_offsets, produced, produce_failed, assigned, pauses;
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
    pthread_mutex_lock(&k->inbox.lock);
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
    pthread_mutex_unlock(&k->inbox.lock);
    if (list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(k->consumer, list, all ? 0 : 1);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("kafka offsets were not committed", "error=\"%s\"", rd_kafka_err2str(err));
        else
            atomic_fetch_add(&k->committed_offsets, (unsigned long long)list->cnt);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* The bytes at which the inbox is full now. While the store limits how fast the workers count,
 * more messages waiting for them would only take memory (the run of bench/tracing.sh that counts
 * an hour of 1,000 services, say), so it is full at a quarter; otherwise the inbox is long enough
 * that the workers do not run out while librdkafka fetches what was dropped at a pause. */
static size_t inbox_high(const struct inbox *in)
{
    return in->store_bound ? in->high / 4 : in->high;
}

static bool inbox_full(const struct inbox *in)
{
    return in->bytes >= inbox_high(in) || in->head - in->tail >= INBOX_SLOTS / 2;
}

/* Down to half of full: what is left keeps the workers busy while the fetches start again. */
static bool inbox_low(const struct inbox *in)
{
    return in->bytes <= inbox_high(in) / 2 && in->head - in->tail <= INBOX_SLOTS / 4;
}

/* Retires the oldest messages while they are counted: marks their partitions, frees them. Under
 * inbox.lock. */
static void retire(struct kafka *k)
{
    struct inbox *in = &k->inbox;
    uint64_t tail = in->tail;
    while (tail < in->taken && in->slots[tail % INBOX_SLOTS].counted) {
        struct slot *s = &in->slots[tail % INBOX_SLOTS];
        mark(k, s->message->partition, s->message->offset + 1);
        in->bytes -= s->message->len;
        rd_kafka_message_destroy(s->message);
        *s = (struct slot){0};
        tail++;
    }
    if (tail != in->tail) {
        bool was_full = in->head - in->tail == INBOX_SLOTS;
        atomic_fetch_add(&k->consumed, tail - in->tail);
        in->tail = tail;
        /* only what someone waits for: a slot for push, low for flow, empty for drain (a wake
         * for every message cost a context switch each) */
        if (was_full || inbox_low(in) || in->tail == in->head)
            pthread_cond_broadcast(&in->room);
    }
}

static void *work_main(void *arg)
{
    struct kafka *k = arg;
    struct inbox *in = &k->inbox;
    struct collector_message batch[WORK_BATCH];
    pthread_mutex_lock(&in->lock);
    for (;;) {
        while (in->taken == in->head && !in->closed)
            pthread_cond_wait(&in->work, &in->lock);
        if (in->taken == in->head)
            break; /* closed, and all taken */
        /* the slots stay this worker's until they are counted: the tail cannot pass them. It
         * takes several, counted in one go, but half of what waits at most: the other worker
         * gets the rest */
        uint64_t first = in->taken, waiting = in->head - in->taken;
        size_t n = waiting > 1 ? (size_t)(waiting + 1) / 2 : 1;
        if (n > WORK_BATCH)
            n = WORK_BATCH;
        in->taken += n;
        pthread_mutex_unlock(&in->lock);
        for (size_t i = 0; i < n; i++) {
            const rd_kafka_message_t *m = in->slots[(first + i) % INBOX_SLOTS].message;
            batch[i] = (struct collector_message){m->payload, m->len};
        }
        collector_add_many(k->collector, batch, n);
        pthread_mutex_lock(&in->lock);
        for (size_t i = 0; i < n; i++)
            in->slots[(first + i) % INBOX_SLOTS].counted = true;
        retire(k);
    }
    pthread_mutex_unlock(&in->lock);
    return NULL;
}

/* Puts a message in the inbox, waiting while every slot is taken. */
static void push(struct kafka *k, rd_kafka_message_t *m)
{
    struct inbox *in = &k->inbox;
    pthread_mutex_lock(&in->lock);
    while (in->head - in->tail == INBOX_SLOTS)
        pthread_cond_wait(&in->room, &in->lock);
    in->slots[in->head++ % INBOX_SLOTS] = (struct slot){m, false};
    in->bytes += m->len;
    pthread_mutex_unlock(&in->lock);
    pthread_cond_signal(&in->work);
}

/* Makes the broker threads that fetch parts look at them again. librdkafka notes a resume only
 * when such a thread next wakes up, which an idle one does once a second (before 2.4 also when its
 * prefetch queue was full); a request to the broker wakes it at once. This asks each leader of
 * parts for their end offsets, one ListOffsets request per broker, and waits for the answers. */
static void wake_fetchers(struct kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *ask = rd_kafka_topic_partition_list_copy(parts);
    if (!ask)
        return;
    for (int i = 0; i < ask->cnt; i++)
        ask->elems[i].offset = RD_KAFKA_OFFSET_END; /* a timestamp of -1: the end */
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(k->consumer, ask, WAKE_TIMEOUT_MS);
    if (err)
        log_debug("kafka fetchers were not woken", "error=\"%s\"", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(ask);
}

/* Pauses or resumes parts (NULL: every assigned partition). */
static void pause_resume(struct kafka *k, rd_kafka_topic_partition_list_t *parts, bool pause)
{
    rd_kafka_topic_partition_list_t *all = NULL;
    if (!parts) {
        if (rd_kafka_assignment(k->consumer, &all) != RD_KAFKA_RESP_ERR_NO_ERROR || !all)
            return;
        parts = all;
    }
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(k->consumer, parts)
                                    : rd_kafka_resume_partitions(k->consumer, parts);
    if (err)
        log_warn(pause ? "kafka partitions were not paused" : "kafka partitions were not resumed",
                 "error=\"%s\"", rd_kafka_err2str(err));
    else if (!pause)
        wake_fetchers(k, parts);
    if (all) {
        rd_kafka_topic_partition_list_destroy(all);
        if (!err)
            k->paused = pause;
        if (!err && pause)
            atomic_fetch_add(&k->pauses, 1);
    }
}

/* Pauses the partitions when the inbox is full. While they are paused, waits (WAIT_MS at most)
 * for the inbox to drain, and resumes them once it has. */
static void flow(struct kafka *k)
{
    struct inbox *in = &k->inbox;
    bool store_bound = collector_store_bound(k->collector);
    pthread_mutex_lock(&in->lock);
    in->store_bound = store_bound;
    if (k->paused) {
        struct timespec until = time_deadline(WAIT_MS);
        while (!inbox_low(in))
            if (pthread_cond_timedwait(&in->room, &in->lock, &until) != 0)
                break;
    }
    bool full = inbox_full(in), low = inbox_low(in);
    bool behind = in->bytes >= inbox_high(in) / 4 || in->head - in->tail >= INBOX_SLOTS / 8;
    pthread_mutex_unlock(&in->lock);
    collector_set_behind(k->collector, behind);
    if (!k->paused && full)
        pause_resume(k, NULL, true);
    else if (k->paused && low)
        pause_resume(k, NULL, false);
}

/* Waits (STOP_FLUSH_MS at most) until the workers have counted all that the inbox holds. */
static bool drain(struct kafka *k)
{
    struct inbox *in = &k->inbox;
    struct timespec until = time_deadline(STOP_FLUSH_MS);
    pthread_mutex_lock(&in->lock);
    while (in->tail != in->head)
        if (pthread_cond_timedwait(&in->room, &in->lock, &until) != 0)
            break;
    bool empty = in->tail == in->head;
    pthread_mutex_unlock(&in->lock);
    return empty;
}

static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka *k = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pthread_mutex_lock(&k->inbox.lock);
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
        pthread_mutex_unlock(&k->inbox.lock);
        log_info("kafka partitions assigned", "topic=%s count=%d", k->topic, parts->cnt);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (k->paused) /* the new ones too, until the inbox has room */
            pause_resume(k, parts, true);
    } else {
        /* revoked (or the group failed): what was consumed is counted and committed first, so
         * that the next owner starts after it */
        struct emp_error e = {0};
        if (k->paused) /* a partition given back comes back unpaused */
            pause_resume(k, parts, false);
        if (drain(k) && collector_flush_all(k->collector, &e) == 0)
            commit_done(k, true);
        else
            log_warn("kafka partitions handed on before their counts reached the store: they "
                     "will be counted again",
                     NULL);
        pthread_mutex_lock(&k->inbox.lock);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t id = parts->elems[i].partition;
            if (id >= 0 && id < PARTITIONS_MAX)
                k->partitions[id].assigned = false;
        }
        pthread_mutex_unlock(&k->inbox.lock);
        log_info("kafka partitions revoked", "topic=%s count=%d", k->topic, parts->cnt);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else
            rd_kafka_assign(rk, NULL);
    }
    unsigned long long assigned = 0;
    pthread_mutex_lock(&k->inbox.lock);
    for (int32_t i = 0; i < PARTITIONS_MAX; i++)
        assigned += k->partitions[i].assigned ? 1 : 0;
    pthread_mutex_unlock(&k->inbox.lock);
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
        flow(k);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, k->paused ? 0 : POLL_MS);
        if (m && !m->err) {
            push(k, m); /* the inbox's now */
        } else if (m) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                on_error(k->consumer, m->err, rd_kafka_message_errstr(m), k);
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

/* Lets the workers count what the inbox holds, and waits until they have ended. */
static void close_inbox(struct kafka *k)
{
    pthread_mutex_lock(&k->inbox.lock);
    k->inbox.closed = true;
    pthread_mutex_unlock(&k->inbox.lock);
    pthread_cond_broadcast(&k->inbox.work);
    for (size_t i = 0; i < k->worker_count; i++)
        pthread_join(k->workers[i], NULL);
    k->worker_count = 0;
}

/* After close_inbox: the workers left nothing in it. */
static void free_inbox(struct kafka *k)
{
    free(k->inbox.slots);
    pthread_cond_destroy(&k->inbox.room);
    pthread_cond_destroy(&k->inbox.work);
    pthread_mutex_destroy(&k->inbox.lock);
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

/* The fetch answers (fetch.max.bytes each) are allocated by librdkafka's broker thread and freed
 * by the workers, a burst at a time. glibc gives the top of a thread's heap back to the kernel
 * once 2 MiB of it is free, and takes it back a page at a time, each page faulted and zeroed:
 * 20,000-30,000 faults a million spans, a quarter of the broker thread's time. It keeps 32 MiB
 * now (10,000 faults, the broker thread's CPU a quarter less in bench/tracing.sh; the memory
 * run's peak is 14 MiB higher). */
static void keep_freed_memory(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 4 << 20); /* set, it no longer moves: answers come from the heap */
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
}

int kafka_start(const struct kafka_config *config, struct kafka **ret, struct emp_error *err)
{
    keep_freed_memory();
    struct kafka *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->topic = strdup(config->topic);
    k->collector = config->collector;
    k->partitions = calloc(PARTITIONS_MAX, sizeof(*k->partitions));
    k->inbox.slots = calloc(INBOX_SLOTS, sizeof(*k->inbox.slots));
    k->inbox.high = config->inbox_bytes ? config->inbox_bytes : INBOX_BYTES;
    pthread_mutex_init(&k->inbox.lock, NULL);
    pthread_cond_init(&k->inbox.work, NULL);
    pthread_cond_init(&k->inbox.room, NULL);
    char why[512];
    int r = -ENOMEM;
    if (!k->topic || !k->partitions || !k->inbox.slots)
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
        /* prefetched messages, at most. The consumer thread keeps this queue near empty (the
         * inbox bounds what waits), so it holds about one fetch answer; it must hold the largest
         * (receive.message.max.bytes), for once full it makes librdkafka before 2.4 stop
         * fetching for a second (librdkafka#2879) */
        set(conf, "queued.max.messages.kbytes", "24576", err) < 0 ||
        /* a fetch answer is one allocation, and the messages librdkafka hands out lie in it: it
         * is freed only once the last of them is, so what the inbox holds keeps many answers
         * alive, partly. With answers of 4 MiB, a 48 MiB inbox kept emp-server at 124-129 MiB
         * in bench/tracing.sh's memory run; with 1 MiB (the least librdkafka takes: it must
         * not be below message.max.bytes), at 97-123 MiB (101-111 with the default 32, before
         * keep_freed_memory added about 14), and the fetches cost no more */
        set(conf, "fetch.max.bytes", "1048576", err) < 0 ||
        /* how long a broker may hold a fetch with nothing to answer: partitions resumed while
         * one is held wait for it (500 ms by default: the last messages of a backlog waited
         * that long after every resume) */
        set(conf, "fetch.wait.max.ms", "100", err) < 0 ||
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
    int t = 0;
    while (k->worker_count < WORKERS && t == 0)
        if ((t = pthread_create(&k->workers[k->worker_count], NULL, work_main, k)) == 0)
            k->worker_count++;
    if (t == 0)
        t = pthread_create(&k->thread, NULL, consume_main, k);
    if (t) {
        r = emp_error_set(err, -t, EMP_ERR_INTERNAL, NULL,
                          "the Kafka consumer could not start a thread: %s", strerror(t));
        goto fail;
    }
    *ret = k;
    return 0;
fail:
    close_inbox(k);
    if (k->consumer) {
        rd_kafka_consumer_close(k->consumer);
        rd_kafka_destroy(k->consumer);
    }
    if (k->producer)
        rd_kafka_destroy(k->producer);
    free_inbox(k);
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
    /* no backlog of this consumer's waits any more */
    collector_set_behind(k->collector, false);
    close_inbox(k); /* the workers count what it holds */
    /* spans of HTTP requests still in the producer: delivered, or counted here */
    rd_kafka_flush(k->producer, STOP_FLUSH_MS);
    struct emp_error err = {0};
    if (collector_flush_all(k->collector, &err) == 0)
        commit_done(k, true);
    rd_kafka_consumer_close(k->consumer); /* leaves the group: the others take over at once */
    rd_kafka_destroy(k->consumer);
    rd_kafka_destroy(k->producer);
    free_inbox(k);
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
    ret->pauses = atomic_load(&k->pauses);
}
