/* SPDX-License-Identifier: Apache-2.0 */
/* The collector: parse and resolve services to apps outside the lock (each thread has its own room
 * for the spans of the messages it counts in one go), count a go's under it at once, flush from a
 * thread of its own. A batch the store did not take is kept and sent again (a bounded number of
 * them), so that a Redis outage delays counts rather than losing them; while one waits,
 * collector_done_before() does not move, and Kafka offsets are not committed. */
#include "collector.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "aggregate.h"
#include "emp/log.h"
#include "emp/names.h"
#include "emp/timeutil.h"
#include "store.h"

#define RESOLVE_SLOTS  (1u << 14) /* services remembered */
#define RESOLVE_WAYS   4u         /* slots a service may take (a power of two) */
#define RESOLVE_TTL_MS 30000      /* how long a service's app (or its absence) is believed */
#define UNSENT_MAX     32         /* batches kept while the store is unavailable */
#define PARKED_MAX     2          /* batches drained by ingestion while the flusher is busy */
#define GO_MESSAGES    64         /* messages counted in one go, at most */
#define STORE_BOUND_MS 1000       /* how long a wait for the store says it limits ingestion */

/* What a service name was found to be. */
struct resolved {
    uint64_t hash; /* of service */
    char service[2 * NAMES_LABEL_MAX + 2];
    char app_id[AGG_ID_MAX]; /* "" when it is no app */
    int64_t until_ms;
};

/* A batch on its way to the store, with the stats it carries and the id of its write: sent
 * again after an error, the store applies each of its steps once. */
struct unsent {
    struct agg_batch batch;
    struct store_trace_stats stats;
    uint64_t write_id;
};

struct collector {
    struct collector_config config;
    pthread_mutex_t lock; /* the aggregator, the counters, the unsent batches */
    struct agg *agg;
    pthread_mutex_t resolve_lock;   /* taken after lock, when both are */
    struct resolved *resolve_cache; /* RESOLVE_SLOTS, in sets of RESOLVE_WAYS; resolve_lock */
    struct collector_counters counters;
    struct store_trace_stats stats_unsent; /* counted, not yet added to the store */
    struct agg_counters agg_seen;          /* the aggregator's counters at the last flush */
    struct unsent unsent[UNSENT_MAX];      /* the flusher's (under flush_lock) */
    size_t unsent_count;
    uint64_t next_write_id;
    /* what ingestion drained because the aggregator filled up while the flusher was writing to
     * the store; the flusher takes them over every round (under lock) */
    struct agg_batch parked[PARKED_MAX];
    size_t parked_count;
    pthread_cond_t unparked;
    atomic_int waiting_for_store;     /* threads that wait in add_messages for a parked slot */
    atomic_llong waited_for_store_ms; /* when one last stopped waiting (time_mono_ms()) */
    pthread_mutex_t flush_lock;       /* one flush at a time */
    pthread_t flusher;
    pthread_cond_t wake;
    bool stopping;
    atomic_llong done_before_ms;
    atomic_bool behind; /* collector_set_behind */
};

/* "USERNAME/APPNAME" is the app APPNAME of USERNAME, as known at now (time_mono_ms()); hash is
 * emp_hash_text(service). Under resolve_lock. */
static bool resolve_locked(struct collector *c, const char *service, uint64_t hash, int64_t now,
                           char *ret_id)
{
    /* a set of RESOLVE_WAYS slots: two services that hash alike do not evict each other (each
     * eviction is a Redis round trip, for every span of both) */
    struct resolved *set = &c->resolve_cache[hash & (RESOLVE_SLOTS - RESOLVE_WAYS)];
    struct resolved *r = &set[0];
    bool known = false;
    for (size_t i = 0; i < RESOLVE_WAYS; i++) {
        if (set[i].hash == hash && strcmp(set[i].service, service) == 0) {
            r = &set[i];
            known = true;
            break;
        }
        if (set[i].until_ms < r->until_ms) /* else the one that expires first makes room */
            r = &set[i];
    }
    if (known && r->until_ms > now) {
        if (!r->app_id[0])
            return false;
        memcpy(ret_id, r->app_id, AGG_ID_MAX);
        return true;
    }
    const char *slash = strchr(service, '/');
    size_t user_len = slash ? (size_t)(slash - service) : 0;
    if (!slash || user_len == 0 || user_len > NAMES_LABEL_MAX ||
        strlen(slash + 1) > NAMES_LABEL_MAX)
        return false;
    char user[NAMES_LABEL_MAX + 1];
    memcpy(user, service, user_len);
    user[user_len] = '\0';
    if (!names_is_dns_label(user, NAMES_LABEL_MAX) ||
        !names_is_dns_label(slash + 1, NAMES_LABEL_MAX))
        return false; /* cannot be an app's name: not looked up, not remembered */
    char id[NAMES_UUID_LEN + 1];
    struct emp_error err = {0};
    int rc = store_app_find(c->config.store, user, slash + 1, id, &err);
    if (rc < 0 && rc != -ENOENT)
        return false; /* the store is away: not remembered, asked again next time */
    snprintf(r->service, sizeof(r->service), "%s", service);
    snprintf(r->app_id, sizeof(r->app_id), "%s", rc == 0 ? id : "");
    r->hash = hash;
    r->until_ms = now + RESOLVE_TTL_MS;
    if (rc < 0)
        return false;
    memcpy(ret_id, id, AGG_ID_MAX);
    return true;
}

/* agg_resolve_fn, for the services a call names (under lock). */
static bool resolve(void *ctx, const char *service, uint64_t hash, char *ret_id)
{
    struct collector *c = ctx;
    pthread_mutex_lock(&c->resolve_lock);
    bool found = resolve_locked(c, service, hash, time_mono_ms(), ret_id);
    pthread_mutex_unlock(&c->resolve_lock);
    return found;
}

/* The app id of each span's service ("" when it is none), before the spans are counted. */
static void resolve_all(struct collector *c, const struct span *spans, size_t count,
                        char (*ret_ids)[AGG_ID_MAX])
{
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&c->resolve_lock);
    for (size_t i = 0; i < count; i++)
        if (!resolve_locked(c, spans[i].local_service, spans[i].local_hash, now, ret_ids[i]))
            ret_ids[i][0] = '\0';
    pthread_mutex_unlock(&c->resolve_lock);
}

/* What a parse delivered: the valid spans, to count under the lock. */
struct delivery {
    const struct span *spans;
    size_t count;
};

static void deliver(void *ctx, const struct span *spans, size_t count)
{
    struct delivery *d = ctx;
    d->spans = spans;
    d->count = count;
}

/* A thread's room for the messages it counts in one go: their spans (one message may fill up
 * what is left past COLLECTOR_BATCH_SPANS), their app ids and their slots in the aggregator's
 * table; pages are touched as used */
#define ROOM_SPANS (COLLECTOR_BATCH_SPANS + SPAN_LIST_MAX)
struct room {
    struct span spans[ROOM_SPANS];
    char app_ids[ROOM_SPANS][AGG_ID_MAX];
    struct agg_slots slots[ROOM_SPANS];
};

static _Thread_local struct room *room;

static void free_room(void *p)
{
    free(p);
}

static pthread_key_t room_key;
static pthread_once_t room_once = PTHREAD_ONCE_INIT;

static void make_room_key(void)
{
    pthread_key_create(&room_key, free_room);
}

/* This thread's room for a message, or NULL. */
static struct room *thread_room(void)
{
    if (!room) {
        pthread_once(&room_once, make_room_key);
        room = malloc(sizeof(*room));
        if (room)
            pthread_setspecific(room_key, room); /* freed when the thread ends */
    }
    return room;
}

static void out_of_memory(struct span_parse_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->bad_message = true;
    snprintf(ret->why, sizeof(ret->why), "out of memory");
}

static void ignore(void *ctx, const struct span *spans, size_t count)
{
}

void collector_check(const char *buf, size_t len, struct span_parse_result *ret)
{
    if (!thread_room()) {
        out_of_memory(ret);
        return;
    }
    span_parse_list(buf, len, room->spans, ignore, NULL, ret);
}

/* One message of a go: what its parse said, and where its spans lie in the room. */
struct parsed {
    struct span_parse_result result;
    size_t first, count;
};

/* Counts messages[0, count) in goes of about COLLECTOR_BATCH_SPANS spans: parsed, resolved and
 * their slots computed outside the lock, counted under it in one go. Fills rets[i] (rets may be
 * NULL). */
static void add_messages(struct collector *c, const struct collector_message *messages,
                         size_t count, struct span_parse_result *rets)
{
    if (!thread_room()) {
        for (size_t i = 0; rets && i < count; i++)
            out_of_memory(&rets[i]);
        return;
    }
    struct parsed go[GO_MESSAGES];
    size_t next = 0;
    while (next < count) {
        /* parsing needs no lock: as many messages as fit in the room */
        size_t n = 0, used = 0;
        for (; next + n < count && used < COLLECTOR_BATCH_SPANS && n < GO_MESSAGES; n++) {
            struct delivery d = {0};
            const struct collector_message *m = &messages[next + n];
            span_parse_list(m->buf, m->len, room->spans + used, deliver, &d, &go[n].result);
            go[n].first = used;
            go[n].count = d.count;
            used += d.count;
        }
        if (used) {
            resolve_all(c, room->spans, used, room->app_ids);
            agg_slots_of(c->agg, room->spans, used, room->slots);
        }
        int64_t now_us = time_now_ms() * 1000;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < n; i++) {
            const struct parsed *p = &go[i];
            c->counters.messages++;
            c->stats_unsent.messages++;
            if (p->result.bad_message) {
                c->counters.bad_messages++;
                c->stats_unsent.bad_messages++;
                continue;
            }
            c->counters.spans += p->result.spans;
            c->counters.bad_spans += p->result.bad_spans;
            c->stats_unsent.bad_spans += p->result.bad_spans;
            if (!p->count)
                continue;
            if (agg_must_drain(c->agg)) {
                /* the flusher is behind (writing to the store): what the aggregator holds waits
                 * in a parked batch, so that it never fills up and loses counts; with all of
                 * those taken, this thread waits for the flusher, which takes them every round,
                 * whether the store answers or not */
                if (c->parked_count == PARKED_MAX && !c->stopping) {
                    atomic_fetch_add(&c->waiting_for_store, 1);
                    while (c->parked_count == PARKED_MAX && !c->stopping) {
                        pthread_cond_signal(&c->wake); /* parked in this go: not yet woken */
                        pthread_cond_wait(&c->unparked, &c->lock);
                    }
                    atomic_store(&c->waited_for_store_ms, time_mono_ms());
                    atomic_fetch_sub(&c->waiting_for_store, 1);
                }
                if (c->parked_count < PARKED_MAX)
                    agg_drain(c->agg, &c->parked[c->parked_count++]);
            }
            agg_add_resolved(c->agg, room->spans + p->first,
                             (const char(*)[AGG_ID_MAX])room->app_ids[p->first],
                             room->slots + p->first, p->count, now_us);
        }
        if (used)
            c->counters.last_span_at_ms = time_now_ms();
        bool full = c->parked_count > 0;
        pthread_mutex_unlock(&c->lock);
        if (full)
            pthread_cond_signal(&c->wake);
        for (size_t i = 0; rets && i < n; i++)
            rets[next + i] = go[i].result;
        next += n;
    }
}

void collector_add(struct collector *c, const char *buf, size_t len, struct span_parse_result *ret)
{
    struct collector_message m = {buf, len};
    add_messages(c, &m, 1, ret);
}

void collector_add_many(struct collector *c, const struct collector_message *messages, size_t count)
{
    add_messages(c, messages, count, NULL);
}

/* Moves the aggregator's counters since the last flush into the stats to add. Under lock. */
static void take_agg_counters(struct collector *c)
{
    const struct agg_counters *now = agg_counters(c->agg);
    struct agg_counters *seen = &c->agg_seen;
    struct store_trace_stats *st = &c->stats_unsent;
    st->spans += now->spans - seen->spans;
    st->unknown_service += now->unknown - seen->unknown;
    st->too_late += now->too_late - seen->too_late;
    st->too_early += now->too_early - seen->too_early;
    st->no_timestamp += now->no_timestamp - seen->no_timestamp;
    st->pending_dropped += now->pending_dropped - seen->pending_dropped;
    st->duplicates += now->duplicates - seen->duplicates;
    c->counters.unknown_service = now->unknown;
    c->counters.too_late = now->too_late;
    c->counters.too_early = now->too_early;
    *seen = *now;
}

/* Adds a batch to those the flusher sends; with UNSENT_MAX waiting (the store has been away for
 * long), the oldest counts are given up. Under flush_lock and lock. */
static void queue_unsent(struct collector *c, struct agg_batch *batch)
{
    if (c->unsent_count == UNSENT_MAX) {
        agg_batch_free(&c->unsent[0].batch);
        memmove(&c->unsent[0], &c->unsent[1], (UNSENT_MAX - 1) * sizeof(c->unsent[0]));
        c->unsent_count--;
        c->counters.dropped_batches++;
    }
    c->unsent[c->unsent_count++] = (struct unsent){.batch = *batch, .write_id = c->next_write_id++};
}

/* One flush: finish the joins that are due (all, when force), drain, and add every batch not yet
 * in the store. Returns 0 when the store has them all. */
static int flush(struct collector *c, bool force, struct emp_error *err)
{
    pthread_mutex_lock(&c->flush_lock);
    int64_t started = time_mono_ms();
    pthread_mutex_lock(&c->lock);
    agg_tick(c->agg, time_now_ms() * 1000, force);
    take_agg_counters(c);
    for (size_t i = 0; i < c->parked_count; i++)
        queue_unsent(c, &c->parked[i]);
    c->parked_count = 0;
    pthread_cond_broadcast(&c->unparked);
    struct agg_batch batch;
    agg_drain(c->agg, &batch);
    queue_unsent(c, &batch);
    /* the stats go with this round's last batch: sent again with it if need be, and applied
     * once with it */
    c->unsent[c->unsent_count - 1].stats = c->stats_unsent;
    memset(&c->stats_unsent, 0, sizeof(c->stats_unsent));
    c->counters.pending = agg_pending(c->agg);
    pthread_mutex_unlock(&c->lock);

    /* the store is written outside the lock: ingestion goes on meanwhile. A batch that failed
     * is sent again with the same write id, so the steps of it that had been applied are not
     * applied again */
    int r = 0;
    size_t sent = 0;
    for (; sent < c->unsent_count; sent++) {
        struct unsent *u = &c->unsent[sent];
        r = store_trace_add(c->config.store, &u->batch, &u->stats, u->write_id, time_now_ms(),
                            c->config.join_wait_ms, err);
        if (r < 0)
            break;
    }
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < sent; i++)
        agg_batch_free(&c->unsent[i].batch);
    memmove(&c->unsent[0], &c->unsent[sent], (c->unsent_count - sent) * sizeof(c->unsent[0]));
    c->unsent_count -= sent;
    c->counters.unsent_batches = c->unsent_count;
    pthread_mutex_unlock(&c->lock);
    if (r == 0) {
        /* what came before this flush started, less what may still wait for its other half
         * (children of a server wait a window and a half), is in the store */
        int64_t done = force ? started : started - c->config.join_ms * 3 / 2 - 1;
        if (done > atomic_load(&c->done_before_ms))
            atomic_store(&c->done_before_ms, done);
    }
    pthread_mutex_unlock(&c->flush_lock);
    return r;
}

static void *flusher_main(void *arg)
{
    struct collector *c = arg;
    bool warned = false;
    int held = 0; /* intervals passed without a flush, while behind */
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        struct timespec until = time_deadline(c->config.flush_ms);
        if (c->parked_count == 0)
            pthread_cond_timedwait(&c->wake, &c->lock, &until);
        if (c->stopping)
            break;
        if (c->parked_count == 0 && atomic_load(&c->behind) && ++held < COLLECTOR_BEHIND_FLUSHES)
            continue;
        held = 0;
        pthread_mutex_unlock(&c->lock);
        struct emp_error err = {0};
        int r = flush(c, false, &err);
        if (r < 0 && !warned) {
            char why[300];
            log_warn("trace counts wait for the store", "error=%s",
                     log_quote(why, sizeof(why), err.message));
        } else if (r == 0 && warned)
            log_info("trace counts reach the store again", NULL);
        warned = r < 0;
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

void collector_set_behind(struct collector *c, bool behind)
{
    atomic_store(&c->behind, behind);
}

int collector_flush_all(struct collector *c, struct emp_error *err)
{
    return flush(c, true, err);
}

bool collector_store_bound(struct collector *c)
{
    if (atomic_load(&c->waiting_for_store) > 0)
        return true;
    long long waited = atomic_load(&c->waited_for_store_ms);
    return waited && time_mono_ms() - waited < STORE_BOUND_MS;
}

int64_t collector_done_before(struct collector *c)
{
    return atomic_load(&c->done_before_ms);
}

void collector_counters(struct collector *c, struct collector_counters *ret)
{
    pthread_mutex_lock(&c->lock);
    *ret = c->counters;
    ret->pending = agg_pending(c->agg);
    pthread_mutex_unlock(&c->lock);
}

int collector_new(const struct collector_config *config, struct collector **ret,
                  struct emp_error *err)
{
    struct collector *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->config = *config;
    /* write ids: random, so that those of emp-servers sharing a Redis do not meet */
    if (getrandom(&c->next_write_id, sizeof(c->next_write_id), 0) != sizeof(c->next_write_id))
        c->next_write_id = (uint64_t)time_now_ms() << 20 ^ (uint64_t)getpid();
    c->next_write_id |= 1;
    if (c->config.lateness_s <= 0)
        c->config.lateness_s = 600;
    if (c->config.future_s <= 0)
        c->config.future_s = 60;
    if (c->config.join_ms <= 0)
        c->config.join_ms = 2000;
    if (c->config.join_wait_ms <= 0)
        c->config.join_wait_ms = 10000;
    if (c->config.flush_ms <= 0)
        c->config.flush_ms = 1000;
    if (c->config.pending_max == 0)
        c->config.pending_max = 100000;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->flush_lock, NULL);
    pthread_mutex_init(&c->resolve_lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->unparked, NULL);
    c->resolve_cache = calloc(RESOLVE_SLOTS, sizeof(*c->resolve_cache));
    struct agg_config ac = {.bucket_s = STORE_TRACE_FINE_S,
                            .lateness_s = c->config.lateness_s,
                            .future_s = c->config.future_s,
                            .join_ms = c->config.join_ms,
                            .pending_max = c->config.pending_max,
                            .park_at = c->config.park_at,
                            .resolve = resolve,
                            .resolve_ctx = c};
    if (!c->resolve_cache || agg_new(&ac, &c->agg) < 0) {
        free(c->resolve_cache);
        free(c);
        return -ENOMEM;
    }
    atomic_store(&c->done_before_ms, time_mono_ms());
    int r = pthread_create(&c->flusher, NULL, flusher_main, c);
    if (r != 0) {
        agg_free(c->agg);
        free(c->resolve_cache);
        free(c);
        return emp_error_set(err, -r, EMP_ERR_INTERNAL, NULL,
                             "the tracing collector could not start a thread: %s", strerror(r));
    }
    *ret = c;
    return 0;
}

void collector_free(struct collector *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_cond_broadcast(&c->unparked);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->flusher, NULL);
    struct emp_error err = {0};
    if (flush(c, true, &err) < 0) {
        char why[300];
        log_warn("the last trace counts did not reach the store", "error=%s",
                 log_quote(why, sizeof(why), err.message));
    }
    for (size_t i = 0; i < c->unsent_count; i++)
        agg_batch_free(&c->unsent[i].batch);
    agg_free(c->agg);
    free(c->resolve_cache);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->unparked);
    pthread_mutex_destroy(&c->flush_lock);
    pthread_mutex_destroy(&c->resolve_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
