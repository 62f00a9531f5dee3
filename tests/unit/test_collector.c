/* SPDX-License-Identifier: Apache-2.0 */
/* The collector against a real redis-server: spans in from several threads, counts in the store,
 * exactly, also when ingestion outruns the flusher (the aggregator drains into parked batches,
 * and ingestion waits for the flusher when those are all taken, which the collector reports as
 * the store limiting ingestion). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "collector.h"
#include "emp/names.h"
#include "emp/timeutil.h"
#include "redis_fixture.h"
#include "store.h"

#define APPS     40
#define MESSAGES 120 /* per thread */
#define THREADS  2

struct ctx {
    struct redis_fixture redis;
    struct store *store;
    char ids[APPS][NAMES_UUID_LEN + 1];
};

static const char spec_json[] = "{\"name\":\"x\",\"command\":[\"x\"],\"port\":80}";

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct emp_error err = {0};
    if (!c || redis_fixture_start(&c->redis) < 0 || store_open(c->redis.url, &c->store, &err) < 0)
        return -1;
    for (int i = 0; i < APPS; i++) {
        struct store_app app = {0};
        snprintf(c->ids[i], sizeof(c->ids[i]), "00000000-0000-4000-8000-%012d", i);
        memcpy(app.id, c->ids[i], sizeof(app.id));
        snprintf(app.owner, sizeof(app.owner), "alice");
        snprintf(app.name, sizeof(app.name), "app-%d", i);
        app.spec_json = (char *)spec_json;
        app.created_ms = app.updated_ms = time_now_ms();
        app.desired = DESIRED_RUNNING;
        app.desired_replicas = 1;
        app.generation = 1;
        app.state = APP_RUNNING;
        if (store_app_create(c->store, &app, APPS, &err) < 0)
            return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    store_close(c->store);
    redis_fixture_stop(&c->redis);
    free(c);
    return 0;
}

struct feeder {
    struct collector *collector;
    int thread;
    int64_t ts_us;
    int64_t bad;
};

/* MESSAGES messages of one SERVER span per app each, as a reporter of every app would send. */
static void *feed(void *arg)
{
    struct feeder *f = arg;
    size_t cap = APPS * 256;
    char *buf = malloc(cap);
    for (int m = 0; m < MESSAGES && buf; m++) {
        size_t n = 0;
        n += (size_t)snprintf(buf + n, cap - n, "[");
        for (int a = 0; a < APPS; a++)
            n += (size_t)snprintf(buf + n, cap - n,
                                  "%s{\"traceId\":\"%016x\",\"id\":\"%016x\",\"kind\":\"SERVER\","
                                  "\"name\":\"get\",\"timestamp\":%lld,\"duration\":%d,"
                                  "\"localEndpoint\":{\"serviceName\":\"alice/app-%d\"}}",
                                  a ? "," : "", (unsigned)(f->thread * 1000000 + m * 1000 + a + 1),
                                  (unsigned)(a + 1), (long long)f->ts_us, 1000 + a, a);
        n += (size_t)snprintf(buf + n, cap - n, "]");
        struct span_parse_result r;
        collector_add(f->collector, buf, n, &r);
        f->bad += r.bad_message || r.bad_spans || r.spans != APPS;
    }
    free(buf);
    return NULL;
}

/* Writes a message of copies SERVER spans of each of the first apps apps (trace ids from seed,
 * not 0) into buf; its length. */
static size_t server_spans(char *buf, size_t cap, unsigned seed, int copies, int apps,
                           int64_t ts_us)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < copies; k++)
        for (int a = 0; a < apps; a++)
            n += (size_t)snprintf(buf + n, cap - n,
                                  "%s{\"traceId\":\"%08x%08x\",\"id\":\"%016x\",\"kind\":"
                                  "\"SERVER\",\"timestamp\":%lld,\"duration\":%d,"
                                  "\"localEndpoint\":{\"serviceName\":\"alice/app-%d\"}}",
                                  n > 1 ? "," : "", seed, (unsigned)(k * APPS + a),
                                  (unsigned)(a + 1), (long long)ts_us, 1000 + a, a);
    n += (size_t)snprintf(buf + n, cap - n, "]");
    return n;
}

/* Messages handed over together, as a Kafka worker does: goes of 1 to 20 messages of different
 * apps, some of them malformed or of bad spans only, one larger than a go's room, and the
 * aggregator drained in the middle of goes: every count is the one of each message's spans. */
static void test_messages_counted_together_add_up(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t bucket = now_s - now_s % 10 - 30, ts_us = bucket * 1000000 + 5000000;
    struct collector_config config = {
        .store = c->store,
        .lateness_s = 600,
        .join_ms = 10,
        .flush_ms = 3600 * 1000,
        .park_at = 8,
    };
    struct collector *col;
    struct emp_error err = {0};
    assert_int_equal(collector_new(&config, &col, &err), 0);
    enum { GOES = 30, PER_GO = 20, BIG = 30 }; /* BIG * APPS spans: more than a go's room */
    static char bufs[PER_GO][BIG * APPS * 200];
    struct collector_message go[PER_GO];
    int64_t messages = 0, bad_messages = 0, bad_spans = 0, spans = 0, requests[APPS] = {0};
    for (int g = 0; g < GOES; g++) {
        int count = 1 + g % PER_GO;
        for (int m = 0; m < count; m++) {
            unsigned seed = (unsigned)(g * 100 + m + 1);
            int apps = 1 + (g * 7 + m * 3) % APPS;
            size_t n;
            if (m == 3) { /* cut off: a malformed message, nothing of it counted */
                n = server_spans(bufs[m], sizeof(bufs[m]), seed, 1, apps, ts_us) / 2;
                bad_messages++;
            } else if (m == 5) { /* a valid list of bad spans only */
                n = (size_t)snprintf(bufs[m], sizeof(bufs[m]), "[{\"id\":\"zz\"},{}]");
                bad_spans += 2;
            } else {
                int copies = g == 7 && m == 2 ? BIG : 1;
                n = server_spans(bufs[m], sizeof(bufs[m]), seed, copies, apps, ts_us);
                for (int a = 0; a < apps; a++)
                    requests[a] += copies;
                spans += copies * apps;
            }
            go[m] = (struct collector_message){bufs[m], n};
            messages++;
        }
        collector_add_many(col, go, (size_t)count);
    }
    struct collector_counters cc;
    collector_counters(col, &cc);
    assert_int_equal(cc.messages, messages);
    assert_int_equal(cc.bad_messages, bad_messages);
    assert_int_equal(cc.bad_spans, bad_spans);
    assert_int_equal(cc.spans, spans);
    collector_free(col);
    for (int a = 0; a < APPS; a++) {
        struct store_trace_window w;
        assert_int_equal(store_trace_window_get(c->store, c->ids[a], bucket + 10, 10, 10, &w, &err),
                         0);
        if ((int64_t)w.requests != requests[a])
            fail_msg("app-%d: %llu requests counted, %lld sent", a, (unsigned long long)w.requests,
                     (long long)requests[a]);
        store_trace_window_free(&w);
    }
    struct store_trace_stats st;
    assert_int_equal(store_trace_stats_get(c->store, &st, &err), 0);
    assert_int_equal(st.messages, messages);
    assert_int_equal(st.bad_messages, bad_messages);
    assert_int_equal(st.bad_spans, bad_spans);
    assert_int_equal(st.spans, spans);
}

static void test_every_span_is_counted_when_ingestion_outruns_the_flusher(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t bucket = now_s - now_s % 10 - 30;
    struct collector_config config = {
        .store = c->store,
        .lateness_s = 600,
        .join_ms = 10,
        .flush_ms = 3600 * 1000, /* never by the clock: only because the aggregator fills up */
        .park_at = 8,            /* every message fills it: 40 series */
    };
    struct collector *col;
    struct emp_error err = {0};
    assert_int_equal(collector_new(&config, &col, &err), 0);
    assert_false(collector_store_bound(col));
    pthread_t threads[THREADS];
    struct feeder feeders[THREADS];
    for (int t = 0; t < THREADS; t++) {
        feeders[t] = (struct feeder){col, t, bucket * 1000000 + 5000000, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, feed, &feeders[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(feeders[t].bad, 0);
    }
    /* the feeders waited for the flusher: the store limited ingestion (the Kafka consumer keeps
     * fewer messages waiting then), and a second after the last wait it no longer does */
    int64_t fed_ms = time_mono_ms();
    assert_true(collector_store_bound(col));
    while (collector_store_bound(col) && time_mono_ms() - fed_ms < 3000)
        usleep(10000);
    assert_false(collector_store_bound(col));
    int64_t bound_ms = time_mono_ms() - fed_ms;
    if (bound_ms > 1100)
        fail_msg("the store was said to limit ingestion %lld ms after the last wait",
                 (long long)bound_ms);
    struct collector_counters cc;
    collector_counters(col, &cc);
    assert_int_equal(cc.messages, THREADS * MESSAGES);
    assert_int_equal(cc.spans, THREADS * MESSAGES * APPS);
    collector_free(col); /* adds what is left */
    assert_int_equal(cc.dropped_batches, 0);
    for (int a = 0; a < APPS; a++) {
        struct store_trace_window w;
        assert_int_equal(store_trace_window_get(c->store, c->ids[a], bucket + 10, 10, 10, &w, &err),
                         0);
        if (w.requests != THREADS * MESSAGES)
            fail_msg("app-%d: %llu requests counted, %d sent", a, (unsigned long long)w.requests,
                     THREADS * MESSAGES);
        store_trace_window_free(&w);
    }
    struct store_trace_stats st;
    assert_int_equal(store_trace_stats_get(c->store, &st, &err), 0);
    assert_int_equal(st.spans, THREADS * MESSAGES * APPS);
    assert_int_equal(st.messages, THREADS * MESSAGES);
}

/* Milliseconds until the store holds spans spans in all (10 s at most: then 10000). */
static int64_t ms_until_stored(struct ctx *c, uint64_t spans)
{
    int64_t start = time_mono_ms();
    struct emp_error err = {0};
    struct store_trace_stats st = {0};
    while (time_mono_ms() - start < 10000) {
        assert_int_equal(store_trace_stats_get(c->store, &st, &err), 0);
        if (st.spans >= spans)
            return time_mono_ms() - start;
        usleep(5000);
    }
    return 10000;
}

/* While its source is behind, the flusher writes every COLLECTOR_BEHIND_FLUSHES intervals, not
 * every one; a full aggregator is written at once all the same; and once the source has caught
 * up, every interval again. */
static void test_flushes_held_while_behind(void **state)
{
    struct ctx *c = *state;
    int64_t now_s = time_now_ms() / 1000;
    int64_t ts_us = (now_s - now_s % 10 - 30) * 1000000 + 5000000;
    struct collector_config config = {
        .store = c->store, .lateness_s = 600, .join_ms = 10, .flush_ms = 200, .park_at = 8};
    struct collector *col;
    struct emp_error err = {0};
    assert_int_equal(collector_new(&config, &col, &err), 0);
    static char buf[APPS * 256];
    uint64_t sent = 0;
    collector_set_behind(col, true);
    size_t n = server_spans(buf, sizeof(buf), 1, 1, 3, ts_us);
    collector_add(col, buf, n, NULL);
    sent += 3;
    /* the flush 3 intervals on, at the earliest (the first may be under way) */
    int64_t held = ms_until_stored(c, sent);
    if (held < 2 * 200 || held >= 10000)
        fail_msg("a flush while behind came %lld ms after the spans", (long long)held);
    n = server_spans(buf, sizeof(buf), 2, 1, APPS, ts_us); /* 40 series: past park_at */
    collector_add(col, buf, n, NULL);
    collector_add(col, buf, n, NULL); /* parks what the first one counted */
    sent += 2 * APPS;
    int64_t parked = ms_until_stored(c, sent - APPS);
    if (parked > 1000)
        fail_msg("a parked batch waited %lld ms while behind", (long long)parked);
    collector_set_behind(col, false);
    assert_true(ms_until_stored(c, sent) < 10000);
    n = server_spans(buf, sizeof(buf), 3, 1, 3, ts_us);
    collector_add(col, buf, n, NULL);
    sent += 3;
    int64_t caught_up = ms_until_stored(c, sent);
    if (caught_up > 1000)
        fail_msg("a flush after catching up came %lld ms after the spans", (long long)caught_up);
    collector_free(col);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_every_span_is_counted_when_ingestion_outruns_the_flusher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_counted_together_add_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flushes_held_while_behind, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
