/* SPDX-License-Identifier: Apache-2.0 */
/* The aggregator: requests, errors and latency per app and bucket, self time, and dependency
 * edges joined from both halves of each call in both of Zipkin's conventions, with leaves to
 * uninstrumented services; late, early and unknown spans are refused and counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aggregate.h"
#include "trace_fixture.h"

#define NOW 1800000000000000LL /* µs */

static struct agg *new_agg(void)
{
    return fixture_agg(600);
}

static struct agg_batch drain(struct agg *a)
{
    agg_tick(a, NOW + 10 * 1000000, true);
    struct agg_batch b;
    assert_int_equal(agg_drain(a, &b), 0);
    return b;
}

static const struct agg_series *series(const struct agg_batch *b, const char *app)
{
    for (size_t i = 0; i < b->series_count; i++)
        if (strcmp(b->series[i].app_id, app) == 0)
            return &b->series[i];
    return NULL;
}

static const struct agg_edge *edge(const struct agg_batch *b, const char *caller,
                                   const char *callee)
{
    for (size_t i = 0; i < b->edges_count; i++)
        if (strcmp(b->edges[i].caller, caller) == 0 && strcmp(b->edges[i].callee, callee) == 0)
            return &b->edges[i];
    return NULL;
}

static uint64_t hist_total(const struct agg_hist *h)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < h->len; i++)
        n += h->entries[i].count;
    return n;
}

/* The q-quantile of a drain's histogram, as a reader computes it from the store's. */
static double agg_quantile(const struct agg_hist *h, double q)
{
    struct hist_entry *e = calloc(h->len ? h->len : 1, sizeof(*e));
    assert_non_null(e);
    for (uint32_t i = 0; i < h->len; i++)
        e[i] = (struct hist_entry){.bucket = h->entries[i].bucket, .count = h->entries[i].count};
    double v = hist_quantile(e, h->len, q);
    free(e);
    return v;
}

/* A -> B -> C, B slow: 100 traces in the shared-span convention (the server shares the client's
 * id) or the child convention (the server is a child of the client), spans in a scrambled order.
 * flag_shared: the server spans say "shared" whatever their ids, as py_zipkin's do. */
static void run_chain_flagged(bool shared_ids, bool flag_shared, unsigned shuffle_seed)
{
    struct agg *a = new_agg();
    enum { TRACES = 100, PER = 5 };
    struct span all[TRACES * PER];
    size_t n = 0;
    for (uint64_t t = 1; t <= TRACES; t++) {
        int64_t ts = NOW - 5000000;
        uint64_t ab = t * 10 + 2, bc = t * 10 + 4;
        all[n++] = fixture_span(t, t * 10 + 1, 0, SPAN_SERVER, "alice/a", NULL, ts, 300000);
        all[n++] =
            fixture_span(t, ab, t * 10 + 1, SPAN_CLIENT, "alice/a", "alice/b", ts + 1000, 280000);
        struct span b_server =
            shared_ids
                ? fixture_span(t, ab, t * 10 + 1, SPAN_SERVER, "alice/b", NULL, ts + 2000, 270000)
                : fixture_span(t, t * 10 + 3, ab, SPAN_SERVER, "alice/b", NULL, ts + 2000, 270000);
        b_server.shared = shared_ids || flag_shared;
        all[n++] = b_server;
        uint64_t b_id = shared_ids ? ab : t * 10 + 3;
        all[n++] = fixture_span(t, bc, b_id, SPAN_CLIENT, "alice/b", "alice/c", ts + 3000, 20000);
        struct span c_server =
            shared_ids
                ? fixture_span(t, bc, b_id, SPAN_SERVER, "alice/c", NULL, ts + 4000, 15000)
                : fixture_span(t, t * 10 + 5, bc, SPAN_SERVER, "alice/c", NULL, ts + 4000, 15000);
        c_server.shared = shared_ids || flag_shared;
        if (t % 10 == 0)
            c_server.http_status = 503;
        all[n++] = c_server;
    }
    /* spans come out of order */
    srand(shuffle_seed);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        struct span tmp = all[i];
        all[i] = all[j];
        all[j] = tmp;
    }
    for (size_t i = 0; i < n; i += 7)
        agg_add(a, all + i, n - i < 7 ? n - i : 7, NOW);
    struct agg_batch b = drain(a);
    const struct agg_series *sa = series(&b, "id-a"), *sb = series(&b, "id-b"),
                            *sc = series(&b, "id-c");
    assert_non_null(sa);
    assert_non_null(sb);
    assert_non_null(sc);
    assert_int_equal(sa->requests, TRACES);
    assert_int_equal(sb->requests, TRACES);
    assert_int_equal(sc->requests, TRACES);
    assert_int_equal(sc->errors, TRACES / 10);
    assert_int_equal(sa->errors, 0);
    assert_int_equal(hist_total(&sa->latency), TRACES);
    /* self time: a waits 280 ms of its 300, b waits 20 ms of its 270: b's own code is slow */
    assert_int_equal(hist_total(&sa->self), TRACES);
    double a_self = agg_quantile(&sa->self, 0.5);
    double b_self = agg_quantile(&sb->self, 0.5);
    assert_true(a_self > 20000 * (1 - HIST_RELATIVE_ERROR) &&
                a_self < 20000 * (1 + HIST_RELATIVE_ERROR));
    assert_true(b_self > 250000 * (1 - HIST_RELATIVE_ERROR) &&
                b_self < 250000 * (1 + HIST_RELATIVE_ERROR));
    const struct agg_edge *e_ab = edge(&b, "alice/a", "alice/b");
    const struct agg_edge *e_bc = edge(&b, "alice/b", "alice/c");
    assert_non_null(e_ab);
    assert_non_null(e_bc);
    assert_int_equal(e_ab->calls, TRACES);
    assert_int_equal(e_bc->calls, TRACES);
    assert_string_equal(e_ab->callee_app, "id-b");
    assert_int_equal(b.edges_count, 2); /* no A -> C, no leaves: every call found its server */
    assert_int_equal(b.halves_count, 0);
    assert_int_equal(agg_pending(a), 0);
    agg_batch_free(&b);
    agg_free(a);
}

static void run_chain(bool shared_ids, unsigned shuffle_seed)
{
    run_chain_flagged(shared_ids, false, shuffle_seed);
}

static void test_chain_shared_ids(void **state)
{
    run_chain(true, 1);
    run_chain(true, 2);
}

static void test_chain_child_spans(void **state)
{
    run_chain(false, 1);
    run_chain(false, 3);
}

static void test_chain_py_zipkin(void **state)
{
    run_chain_flagged(false, true, 1);
    run_chain_flagged(false, true, 4);
}

static void test_leaf_and_errors(void **state)
{
    struct agg *a = new_agg();
    struct span s[] = {
        fixture_span(7, 1, 0, SPAN_SERVER, "alice/web", NULL, NOW - 1000000, 5000),
        fixture_span(7, 2, 1, SPAN_CLIENT, "alice/web", "postgres", NOW - 999000, 4000),
        fixture_span(8, 3, 0, SPAN_KIND_NONE, "alice/web", NULL, NOW - 1000000, 100), /* a root */
        fixture_span(8, 4, 3, SPAN_KIND_NONE, "alice/web", NULL, NOW - 1000000,
                     50), /* local work */
    };
    s[1].error = true;
    agg_add(a, s, 4, NOW);
    struct agg_batch b = drain(a);
    const struct agg_series *web = series(&b, "id-web");
    assert_int_equal(web->requests, 2); /* the server span and the root without kind */
    const struct agg_edge *db = edge(&b, "alice/web", "postgres");
    assert_non_null(db); /* a client span nobody answered: a leaf */
    assert_int_equal(db->calls, 1);
    assert_int_equal(db->errors, 1);
    assert_string_equal(db->callee_app, "");
    agg_batch_free(&b);
    agg_free(a);
}

/* Halves whose other half this aggregator never saw are handed over for the store to join: a
 * call to an app whose server went elsewhere, and a server whose caller did. */
static void test_halves(void **state)
{
    struct agg *a = new_agg();
    struct span s[] = {
        fixture_span(9, 1, 0, SPAN_SERVER, "alice/web", NULL, NOW - 1000000, 5000),
        fixture_span(9, 2, 1, SPAN_CLIENT, "alice/web", "alice/api", NOW - 999000, 4000),
        fixture_span(10, 5, 4, SPAN_SERVER, "alice/api", NULL, NOW - 999000, 3000),
    };
    s[2].shared = true;
    agg_add(a, s, 3, NOW);
    struct agg_batch b = drain(a);
    assert_int_equal(b.edges_count, 0); /* no edge to guess */
    assert_int_equal(b.halves_count, 2);
    const struct agg_half *call = b.halves[0].server ? &b.halves[1] : &b.halves[0];
    const struct agg_half *server = b.halves[0].server ? &b.halves[0] : &b.halves[1];
    assert_false(call->server);
    assert_int_equal(call->id, 2);
    assert_string_equal(call->app_id, "id-web");
    assert_string_equal(call->remote, "alice/api");
    assert_int_equal(call->duration_us, 4000);
    int64_t ts_s = (NOW - 999000) / 1000000;
    assert_int_equal(call->bucket, ts_s - ts_s % 10);
    assert_true(server->server);
    assert_int_equal(server->id, 5);
    assert_int_equal(server->parent_id, 4);
    assert_true(server->shared);
    assert_string_equal(server->service, "alice/api");
    assert_int_equal(agg_counters(a)->halves, 2);
    agg_batch_free(&b);
    agg_free(a);
}

static void test_refusals(void **state)
{
    struct agg *a = new_agg();
    struct span s[] = {
        fixture_span(1, 1, 0, SPAN_SERVER, "bob/other", NULL, NOW, 10), /* no EMP app here */
        fixture_span(1, 2, 0, SPAN_SERVER, "alice/a", NULL, NOW - 3600000000LL,
                     10), /* an hour late */
        fixture_span(1, 3, 0, SPAN_SERVER, "alice/a", NULL, NOW + 3600000000LL,
                     10), /* from the future */
        fixture_span(1, 4, 0, SPAN_SERVER, "alice/a", NULL, NOW - 300000000LL,
                     10), /* late, accepted */
    };
    agg_add(a, s, 4, NOW);
    const struct agg_counters *c = agg_counters(a);
    assert_int_equal(c->unknown, 1);
    assert_int_equal(c->too_late, 1);
    assert_int_equal(c->too_early, 1);
    assert_int_equal(c->spans, 1);
    struct agg_batch b = drain(a);
    assert_int_equal(b.series_count, 1);
    /* bucketed by the span's time, not by when it came */
    int64_t ts_s = (NOW - 300000000LL) / 1000000;
    assert_int_equal(b.series[0].bucket, ts_s - ts_s % 10);
    agg_batch_free(&b);
    agg_free(a);
}

static void test_bounded_pending(void **state)
{
    struct agg *a = new_agg(); /* pending_max 1000 */
    for (uint64_t t = 1; t <= 5000; t++) {
        struct span s = fixture_span(t, t, 0, SPAN_SERVER, "alice/a", NULL, NOW, 100);
        agg_add(a, &s, 1, NOW);
        assert_true(agg_pending(a) <= 1000);
    }
    assert_true(agg_counters(a)->pending_dropped >= 4000);
    struct agg_batch b = drain(a);
    assert_int_equal(series(&b, "id-a")->requests, 5000); /* counted anyway */
    assert_int_equal(hist_total(&series(&b, "id-a")->self), 5000);
    agg_batch_free(&b);
    agg_free(a);
}

/* A -> B, each span sent COPIES times while its first copy waits (a sender's retries, a
 * redelivery), in both conventions: every copy after the first is a duplicate, counted apart and
 * nowhere else, and keeps nothing waiting; a copy that comes after its first copy's window has
 * passed counts again. */
static void run_copies(bool shared_ids)
{
    struct agg *a = new_agg();
    enum { TRACES = 20, COPIES = 30 };
    struct span all[TRACES * 3];
    size_t n = 0;
    for (uint64_t t = 1; t <= TRACES; t++) {
        int64_t ts = NOW - 5000000;
        uint64_t call = t * 10 + 2;
        all[n++] = fixture_span(t, t * 10 + 1, 0, SPAN_SERVER, "alice/a", NULL, ts, 300000);
        all[n++] =
            fixture_span(t, call, t * 10 + 1, SPAN_CLIENT, "alice/a", "alice/b", ts + 1000, 280000);
        all[n] = shared_ids ? fixture_span(t, call, t * 10 + 1, SPAN_SERVER, "alice/b", NULL,
                                           ts + 2000, 270000)
                            : fixture_span(t, t * 10 + 3, call, SPAN_SERVER, "alice/b", NULL,
                                           ts + 2000, 270000);
        all[n++].shared = shared_ids;
    }
    agg_add(a, all, n, NOW);
    size_t waiting = agg_pending(a);
    for (int copy = 1; copy < COPIES; copy++) {
        agg_add(a, all, n, NOW);
        assert_int_equal(agg_pending(a), waiting);
    }
    assert_int_equal(agg_counters(a)->duplicates, (COPIES - 1) * n);
    assert_int_equal(agg_counters(a)->spans, COPIES * n);
    struct agg_batch b = drain(a);
    assert_int_equal(series(&b, "id-a")->requests, TRACES);
    assert_int_equal(series(&b, "id-b")->requests, TRACES);
    assert_int_equal(hist_total(&series(&b, "id-a")->latency), TRACES);
    assert_int_equal(hist_total(&series(&b, "id-a")->self), TRACES);
    double a_self = agg_quantile(&series(&b, "id-a")->self, 0.5);
    assert_true(a_self > 20000 * (1 - HIST_RELATIVE_ERROR) &&
                a_self < 20000 * (1 + HIST_RELATIVE_ERROR)); /* its call's 280 ms once */
    assert_int_equal(edge(&b, "alice/a", "alice/b")->calls, TRACES);
    assert_int_equal(b.edges_count, 1);
    assert_int_equal(b.halves_count, 0);
    agg_batch_free(&b);
    /* the first copies are done (drain() finished every wait): a copy now counts again */
    agg_add(a, all, n, NOW);
    assert_int_equal(agg_counters(a)->duplicates, (COPIES - 1) * n);
    b = drain(a);
    assert_int_equal(series(&b, "id-b")->requests, TRACES);
    assert_int_equal(edge(&b, "alice/a", "alice/b")->calls, TRACES);
    agg_batch_free(&b);
    agg_free(a);
}

static void test_copies(void **state)
{
    run_copies(false);
    run_copies(true);
    /* a server span of another service with the same id is no copy: both are requests */
    struct agg *a = new_agg();
    struct span s[] = {
        fixture_span(5, 7, 6, SPAN_SERVER, "alice/b", NULL, NOW - 1000000, 3000),
        fixture_span(5, 7, 6, SPAN_SERVER, "alice/c", NULL, NOW - 1000000, 3000),
        fixture_span(5, 8, 6, SPAN_CLIENT, "alice/b", "alice/d", NOW - 999000, 1000),
        fixture_span(5, 8, 6, SPAN_CLIENT, "alice/c", "alice/d", NOW - 999000, 1000),
    };
    agg_add(a, s, 4, NOW);
    assert_int_equal(agg_counters(a)->duplicates, 0);
    struct agg_batch b = drain(a);
    assert_int_equal(series(&b, "id-b")->requests, 1);
    assert_int_equal(series(&b, "id-c")->requests, 1);
    agg_batch_free(&b);
    agg_free(a);
}

/* Waiting halves hold their service names once each, and at most AGG_NAMES_MAX of them: calls to
 * 20,000 different uninstrumented services finish early as more come, each counted once. */
static void test_bounded_names(void **state)
{
    struct agg_config config = fixture_config(600);
    config.pending_max = 50000;
    struct agg *a = fixture_agg_with(&config);
    enum { CALLS = 20000 };
    for (uint64_t t = 1; t <= CALLS; t++) {
        char remote[32];
        snprintf(remote, sizeof(remote), "db-%llu", (unsigned long long)t);
        struct span s = fixture_span(t, t, 0, SPAN_CLIENT, "alice/web", remote, NOW, 100);
        agg_add(a, &s, 1, NOW);
        assert_true(agg_pending(a) < AGG_NAMES_MAX); /* alice/web's name is held too */
    }
    assert_int_equal(agg_counters(a)->pending_dropped, CALLS - (AGG_NAMES_MAX - 1));
    struct agg_batch b = drain(a);
    assert_int_equal(b.edges_count, CALLS);
    uint64_t calls = 0;
    for (size_t i = 0; i < b.edges_count; i++) {
        assert_string_equal(b.edges[i].caller, "alice/web");
        assert_int_equal(strncmp(b.edges[i].callee, "db-", 3), 0);
        calls += b.edges[i].calls;
    }
    assert_int_equal(calls, CALLS);
    assert_non_null(edge(&b, "alice/web", "db-1"));     /* finished early */
    assert_non_null(edge(&b, "alice/web", "db-20000")); /* finished at the drain */
    agg_batch_free(&b);
    agg_free(a);
}

/* What the counts take from the heap bounds them too, not only how many series there are: 60
 * series with wide histograms ask for a drain long before 22,768 series would. */
static void test_drains_by_memory(void **state)
{
    struct agg_config config = fixture_config(600);
    config.park_bytes = 32 * 1024; /* some 30 series of 1 KiB */
    struct agg *a = fixture_agg_with(&config);
    uint64_t id = 1;
    size_t added = 0;
    bool asked = false;
    for (int64_t bucket = 0; bucket < 60 && !asked; bucket++) {
        for (int64_t k = 0; k < 50; k++, id++) {
            /* 1 ms to 50 ms, 1 ms apart: some 50 histogram buckets in each series */
            int64_t dur = 1000 * (k + 1);
            struct span s =
                fixture_span(id, id, 0, SPAN_SERVER, "alice/a", NULL, NOW - bucket * 10000000, dur);
            agg_add(a, &s, 1, NOW);
            added++;
        }
        asked = agg_must_drain(a);
    }
    assert_true(asked);
    struct agg_batch b = drain(a);
    assert_true(b.series_count < 60); /* well before the series' own bound */
    uint64_t requests = 0;
    for (size_t i = 0; i < b.series_count; i++)
        requests += b.series[i].requests;
    assert_int_equal(requests, added);
    agg_batch_free(&b);
    assert_false(agg_must_drain(a)); /* a drain starts the count anew */
    agg_free(a);
}

/* A server span still waiting for its calls when its request is drained: its self time, counted
 * when its wait ends, goes to the next batch, and the batch handed over is not touched again. */
static void test_self_time_after_drain(void **state)
{
    (void)state;
    struct agg *a = new_agg();
    struct span s = fixture_span(1, 1, 0, SPAN_SERVER, "alice/a", NULL, NOW - 1000000, 5000);
    agg_add(a, &s, 1, NOW);
    struct agg_batch first;
    assert_int_equal(agg_drain(a, &first), 0);
    assert_int_equal(first.series_count, 1);
    assert_int_equal(first.series[0].requests, 1);
    assert_int_equal(hist_total(&first.series[0].self), 0);
    struct agg_batch second = drain(a); /* its wait ends */
    assert_int_equal(hist_total(&first.series[0].self), 0);
    const struct agg_series *sa = series(&second, "id-a");
    assert_non_null(sa);
    assert_int_equal(sa->requests, 0);
    assert_int_equal(hist_total(&sa->self), 1);
    agg_batch_free(&first);
    agg_batch_free(&second);
    agg_free(a);
}

/* Names of the longest length a span may carry, more of them than one chunk of a batch's names
 * holds: every edge and half hands each over whole. */
static void test_long_names(void **state)
{
    (void)state;
    struct agg *a = new_agg();
    enum { N = 300 };
    static char leaf[N][SPAN_SERVICE_MAX], app[N][SPAN_SERVICE_MAX];
    for (uint64_t i = 0; i < N; i++) {
        memset(leaf[i], 'l', SPAN_SERVICE_MAX - 1);
        memset(app[i], 'a', SPAN_SERVICE_MAX - 1);
        memcpy(app[i], "alice/", 6);
        snprintf(leaf[i] + SPAN_SERVICE_MAX - 5, 5, "%04u", (unsigned)i);
        snprintf(app[i] + SPAN_SERVICE_MAX - 5, 5, "%04u", (unsigned)i);
        struct span s[2] = {
            fixture_span(i + 1, 1, 0, SPAN_CLIENT, "alice/web", leaf[i], NOW - 1000000, 100),
            fixture_span(i + 1, 2, 0, SPAN_CLIENT, "alice/web", app[i], NOW - 1000000, 100),
        };
        assert_int_equal(strlen(s[0].remote_service), SPAN_SERVICE_MAX - 1);
        agg_add(a, s, 2, NOW);
    }
    struct agg_batch b = drain(a);
    assert_int_equal(b.edges_count, N);  /* leaves: no EMP app */
    assert_int_equal(b.halves_count, N); /* calls to apps whose servers went elsewhere */
    for (size_t i = 0; i < N; i++) {
        assert_non_null(edge(&b, "alice/web", leaf[i]));
        bool found = false;
        for (size_t j = 0; j < b.halves_count && !found; j++)
            found = strcmp(b.halves[j].remote, app[i]) == 0 &&
                    strcmp(b.halves[j].service, "alice/web") == 0;
        assert_true(found);
    }
    agg_batch_free(&b);
    agg_free(a);
}

/* A batch's histogram against the counts of each bucket counted apart: every non-empty bucket
 * once, ascending, with its count, and none else. */
static void check_hist(const struct agg_hist *h, const uint64_t *expected)
{
    assert_null(h->counts);
    uint32_t at = 0;
    for (unsigned bucket = 0; bucket < HIST_BUCKETS; bucket++) {
        if (!expected[bucket])
            continue;
        assert_true(at < h->len);
        assert_int_equal(h->entries[at].bucket, bucket);
        assert_int_equal(h->entries[at].count, expected[bucket]);
        at++;
    }
    assert_int_equal(at, h->len);
}

/* Drains what durations[0..n) count into alice/a's one series and checks its latency histogram
 * against the buckets counted here. */
static void check_latencies(const int64_t *durations, size_t n)
{
    struct agg *a = new_agg();
    static uint64_t expected[HIST_BUCKETS];
    memset(expected, 0, sizeof(expected));
    for (size_t i = 0; i < n; i++) {
        struct span s = fixture_span(i + 1, i + 1, 0, SPAN_SERVER, "alice/a", NULL, NOW - 1000000,
                                     durations[i]);
        agg_add(a, &s, 1, NOW);
        expected[hist_bucket((uint64_t)durations[i])]++;
    }
    struct agg_batch b = drain(a);
    const struct agg_series *sa = series(&b, "id-a");
    assert_non_null(sa);
    check_hist(&sa->latency, expected);
    agg_batch_free(&b);
    agg_free(a);
}

/* A histogram of a few buckets and one of hundreds, which the aggregator keeps in another form
 * while it counts: values rising, falling, scattered over the whole range (from 1 µs to beyond
 * the last bucket's), and a few values many times. */
static void test_histograms(void **state)
{
    (void)state;
    enum { N = 20000 };
    static int64_t d[N];
    size_t n = 0;
    for (int64_t v = 1; v <= 5; v++) /* few buckets */
        d[n++] = v * 1000;
    check_latencies(d, n);
    n = 0;
    for (int64_t v = 1000; v < 200000; v += 997) /* rising: the range grows upwards */
        d[n++] = v;
    check_latencies(d, n);
    n = 0;
    for (int64_t v = 200000; v > 1000; v -= 997) /* falling: it grows downwards */
        d[n++] = v;
    check_latencies(d, n);
    n = 0;
    uint64_t x = 88172645463325252ULL;
    for (; n < N; n++) { /* scattered, from 1 µs to far beyond the last bucket */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        d[n] = (int64_t)(1 + (x >> (x % 64)) % (1ULL << 50));
    }
    check_latencies(d, n);
    n = 0;
    for (int k = 0; k < 2000; k++) /* one bucket more than the entries hold, many values each */
        for (int64_t v = 9; v >= 1; v--)
            d[n++] = v * 10000;
    check_latencies(d, n);
}

/* Many series counted in one go, their values interleaved: dense histograms are counted a few
 * values late (their cells asked for from memory first), also while the series array grows and
 * while full pending halves are finished (self time): every count still lands, in its series. */
static void test_histograms_in_one_go(void **state)
{
    (void)state;
    enum { SERVICES = 40, PER = 300, N = SERVICES * PER };
    static struct span spans[N];
    static char ids[N][AGG_ID_MAX];
    static uint64_t expected[SERVICES][HIST_BUCKETS];
    memset(expected, 0, sizeof(expected));
    uint64_t x = 2463534242ULL;
    size_t i = 0;
    /* service k from round k on: series come while the first ones are dense, the array grows */
    for (size_t round = 0; i < N; round++)
        for (size_t k = 0; k < SERVICES && k <= round; k++) {
            if (round - k >= PER)
                continue;
            char service[32];
            snprintf(service, sizeof(service), "alice/s%zu", k);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int64_t d = (int64_t)(100 + x % 2000000); /* 100 µs to 2 s: hundreds of buckets */
            spans[i] = fixture_span(i + 1, i + 1, 0, SPAN_SERVER, service, NULL, NOW - 1000000, d);
            assert_true(fixture_resolve(NULL, service, spans[i].local_hash, ids[i]));
            expected[k][hist_bucket((uint64_t)d)]++;
            i++;
        }
    struct agg *a = new_agg(); /* 1,000 halves wait: most are finished while counting */
    static struct agg_slots slots[N];
    agg_slots_of(a, spans, N, slots);
    agg_add_resolved(a, spans, (const char(*)[AGG_ID_MAX])ids, slots, N, NOW);
    struct agg_batch b = drain(a);
    assert_int_equal(b.series_count, SERVICES);
    for (size_t k = 0; k < SERVICES; k++) {
        char id[32];
        snprintf(id, sizeof(id), "id-s%zu", k);
        const struct agg_series *s = series(&b, id);
        assert_non_null(s);
        assert_int_equal(s->requests, PER);
        check_hist(&s->latency, expected[k]);
        check_hist(&s->self, expected[k]); /* no calls: self time is the latency */
    }
    agg_batch_free(&b);
    agg_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_shared_ids),
        cmocka_unit_test(test_chain_child_spans),
        cmocka_unit_test(test_chain_py_zipkin),
        cmocka_unit_test(test_leaf_and_errors),
        cmocka_unit_test(test_halves),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bounded_pending),
        cmocka_unit_test(test_copies),
        cmocka_unit_test(test_bounded_names),
        cmocka_unit_test(test_drains_by_memory),
        cmocka_unit_test(test_histograms),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_self_time_after_drain),
        cmocka_unit_test(test_histograms_in_one_go),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
