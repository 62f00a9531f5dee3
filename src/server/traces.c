/* SPDX-License-Identifier: Apache-2.0 */
/* Trace metrics as the API shows them. Windows end at the last whole bucket (so a window's numbers
 * do not shrink as a bucket fills): 10 s buckets for windows up to 15 minutes, 1 minute buckets up
 * to an hour. A developer sees the apps they own, and of the services that call them only those
 * they own by name (other users' callers are summed as one); the scheduler sees everything. */
#include "traces.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "apps.h"
#include "collector.h"
#include "emp/hist.h"
#include "emp/names.h"
#include "emp/textio.h"
#include "emp/timeutil.h"
#include "kafka.h"
#include "store.h"

#define WINDOW_DEFAULT_S  60
#define WINDOW_FINE_MAX_S STORE_TRACE_FINE_KEEP_S
#define WINDOW_MAX_S      3600
#define SUMMARY_WINDOW_S  300
#define GRAPH_APPS_MAX    1000
#define OTHER_USERS       "(other users' services)"

struct traces {
    struct store *store;
    struct apps *apps;
    struct collector *collector;
    struct kafka *kafka;
    char *zipkin_url;
};

int traces_new(struct store *store, struct apps *apps, struct collector *collector,
               struct kafka *kafka, const struct traces_config *config, struct traces **ret)
{
    struct traces *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->store = store;
    t->apps = apps;
    t->collector = collector;
    t->kafka = kafka;
    t->zipkin_url = strdup(config->zipkin_url ? config->zipkin_url : "");
    if (!t->zipkin_url) {
        free(t);
        return -ENOMEM;
    }
    size_t len = strlen(t->zipkin_url);
    while (len > 0 && t->zipkin_url[len - 1] == '/')
        t->zipkin_url[--len] = '\0';
    *ret = t;
    return 0;
}

void traces_free(struct traces *t)
{
    if (!t)
        return;
    free(t->zipkin_url);
    free(t);
}

/* ---- spans in ---- */

/* Inflates a gzip (or zlib) body into a new buffer of at most TRACES_BODY_MAX bytes. */
static int inflate_body(const char *body, size_t len, char **ret, size_t *ret_len,
                        struct emp_error *err)
{
    z_stream z = {0};
    if (inflateInit2(&z, 15 + 32) != Z_OK) /* +32: gzip or zlib, by the header */
        return -ENOMEM;
    size_t cap = len * 4 < 65536 ? 65536 : len * 4;
    if (cap > TRACES_BODY_MAX)
        cap = TRACES_BODY_MAX;
    char *out = malloc(cap + 1);
    int r = 0;
    if (!out) {
        r = -ENOMEM;
        goto out;
    }
    z.next_in = (unsigned char *)body;
    z.avail_in = (unsigned)len;
    for (;;) {
        z.next_out = (unsigned char *)out + z.total_out;
        z.avail_out = (unsigned)(cap - z.total_out);
        int zr = inflate(&z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_BUF_ERROR && z.avail_in == 0) {
            r = emp_error_set(err, -EINVAL, EMP_ERR_BAD_REQUEST, NULL,
                              "the gzip body is truncated: send the whole stream");
            goto out;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            r = emp_error_set(err, -EINVAL, EMP_ERR_BAD_REQUEST, NULL,
                              "the body is not valid gzip (%s): send JSON, or gzip'd JSON with "
                              "Content-Encoding: gzip",
                              z.msg ? z.msg : "bad data");
            goto out;
        }
        if (z.avail_out == 0) {
            if (cap >= TRACES_BODY_MAX) {
                r = emp_error_set(err, -E2BIG, EMP_ERR_PAYLOAD_TOO_LARGE, NULL,
                                  "the spans inflate to more than %d bytes: send fewer spans per "
                                  "request",
                                  TRACES_BODY_MAX);
                goto out;
            }
            cap = cap * 2 > TRACES_BODY_MAX ? TRACES_BODY_MAX : cap * 2;
            char *grown = realloc(out, cap + 1);
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            out = grown;
        }
    }
    *ret_len = z.total_out;
    out[*ret_len] = '\0';
    *ret = out;
    out = NULL;
out:
    inflateEnd(&z);
    free(out);
    return r;
}

int traces_ingest(struct traces *t, const char *content_type, const char *content_encoding,
                  const char *body, size_t len, size_t *ret_spans, size_t *ret_bad_spans,
                  struct emp_error *err)
{
    if (content_type && strncasecmp(content_type, "application/json", 16) != 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_UNSUPPORTED_MEDIA, NULL,
                             "spans in %.60s are not taken: send a JSON list of Zipkin v2 spans "
                             "(Content-Type: application/json)",
                             content_type);
    char *inflated = NULL;
    if (content_encoding && strcasecmp(content_encoding, "identity") != 0) {
        if (strcasecmp(content_encoding, "gzip") != 0)
            return emp_error_set(err, -EINVAL, EMP_ERR_UNSUPPORTED_MEDIA, NULL,
                                 "Content-Encoding %.40s is not taken: send gzip or none",
                                 content_encoding);
        int r = inflate_body(body, len, &inflated, &len, err);
        if (r < 0)
            return r;
        body = inflated;
    }
    struct span_parse_result parsed;
    int r = 0;
    bool produced = false;
    if (t->kafka) {
        /* Kafka counts them (whichever emp-server consumes the partition): check, then pass on */
        collector_check(body, len, &parsed);
        if (!parsed.bad_message && parsed.spans > 0)
            produced = kafka_produce(t->kafka, body, len) == 0;
        if (!produced) /* counted here: bad messages too, so that they show in the stats */
            collector_add(t->collector, body, len, &parsed);
    } else {
        collector_add(t->collector, body, len, &parsed);
    }
    if (parsed.bad_message) {
        r = emp_error_set(err, -EINVAL, EMP_ERR_BAD_REQUEST, NULL,
                          "the spans could not be read: %s; send a JSON list of Zipkin v2 spans "
                          "(zipkin2-api.yaml)",
                          parsed.why);
        goto out;
    }
    if (ret_spans)
        *ret_spans = parsed.spans;
    if (ret_bad_spans)
        *ret_bad_spans = parsed.bad_spans;
out:
    free(inflated);
    return r;
}

/* ---- windows ---- */

static int parse_window(const char *text, int64_t *ret_window_s, int *ret_resolution_s,
                        struct emp_error *err)
{
    int64_t w = WINDOW_DEFAULT_S;
    if (text && (time_parse_duration(text, &w) < 0 || w < STORE_TRACE_FINE_S || w > WINDOW_MAX_S ||
                 w % (w <= WINDOW_FINE_MAX_S ? STORE_TRACE_FINE_S : STORE_TRACE_COARSE_S)))
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "window",
                             "window '%.40s' is not accepted: use a multiple of 10s up to 15m, or "
                             "of 1m up to 1h (60s, 5m, 1h)",
                             text);
    *ret_window_s = w;
    *ret_resolution_s = w <= WINDOW_FINE_MAX_S ? STORE_TRACE_FINE_S : STORE_TRACE_COARSE_S;
    return 0;
}

static int64_t window_end(int resolution_s)
{
    int64_t now_s = time_now_ms() / 1000;
    return now_s - now_s % resolution_s;
}

static json_t *ms_or_null(const struct hist_entry *h, size_t n, double q)
{
    if (!n)
        return json_null();
    return json_real(round(hist_quantile(h, n, q) / 10.0) / 100.0); /* µs to ms, 2 decimals */
}

static json_t *percentiles(const struct hist_entry *h, size_t n, bool all)
{
    json_t *o = json_object();
    json_object_set_new(o, "p50", ms_or_null(h, n, 0.50));
    if (all)
        json_object_set_new(o, "p90", ms_or_null(h, n, 0.90));
    json_object_set_new(o, "p95", ms_or_null(h, n, 0.95));
    json_object_set_new(o, "p99", ms_or_null(h, n, 0.99));
    return o;
}

static double ratio(uint64_t part, uint64_t whole)
{
    return whole ? (double)part / (double)whole : 0.0;
}

static double rate(uint64_t count, int64_t window_s)
{
    return round((double)count / (double)window_s * 1000.0) / 1000.0;
}

/* The owner part of "owner/name", into buf. */
static void owner_of(const char *service, char *buf, size_t size)
{
    const char *slash = strchr(service, '/');
    size_t n = slash ? (size_t)(slash - service) : 0;
    if (n >= size)
        n = 0;
    memcpy(buf, service, n);
    buf[n] = '\0';
}

static json_t *peer_json(const struct store_trace_peer *p, const char *service, bool show_app,
                         int64_t window_s)
{
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", ms_or_null(p->latency, p->latency_len, 0.50));
    json_object_set_new(lat, "p95", ms_or_null(p->latency, p->latency_len, 0.95));
    json_object_set_new(lat, "p99", ms_or_null(p->latency, p->latency_len, 0.99));
    return json_pack("{s:s, s:o, s:I, s:I, s:f, s:f, s:o}", "service", service, "app_id",
                     show_app && p->app_id ? json_string(p->app_id) : json_null(), "calls",
                     (json_int_t)p->calls, "errors", (json_int_t)p->errors, "error_rate",
                     ratio(p->errors, p->calls), "rate_rps", rate(p->calls, window_s), "latency_ms",
                     lat);
}

/* The dependencies of app as caller may see them. */
/* Whether caller may see who p is: the scheduler sees every service, a developer their own. */
static bool peer_visible(const struct store_trace_peer *p, const struct auth_principal *caller,
                         const struct store_app *app)
{
    char owner[NAMES_LABEL_MAX + 1];
    owner_of(p->service, owner, sizeof(owner));
    return caller->role == ROLE_SCHEDULER || strcmp(owner, app->owner) == 0;
}

/* The calls into app from the services caller may not see named (other users'), summed into
 * *ret, whose histogram is written to entries (HIST_BUCKETS of them). False when there are none. */
static bool sum_other_users(const struct store_trace_window *w, const struct auth_principal *caller,
                            const struct store_app *app, struct store_trace_peer *ret,
                            struct hist_entry *entries)
{
    *ret = (struct store_trace_peer){0};
    uint64_t *counts = NULL;
    for (size_t i = 0; i < w->incoming_len; i++) {
        const struct store_trace_peer *p = &w->incoming[i];
        if (peer_visible(p, caller, app))
            continue;
        if (!counts && !(counts = calloc(HIST_BUCKETS, sizeof(*counts))))
            return false;
        ret->calls += p->calls;
        ret->errors += p->errors;
        for (size_t j = 0; j < p->latency_len; j++)
            counts[p->latency[j].bucket] += p->latency[j].count;
    }
    if (!counts)
        return false;
    size_t n = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++)
        if (counts[b])
            entries[n++] = (struct hist_entry){.bucket = (uint16_t)b, .count = counts[b]};
    ret->latency = entries;
    ret->latency_len = n;
    free(counts);
    return true;
}

static json_t *dependencies(const struct store_trace_window *w, const struct auth_principal *caller,
                            const struct store_app *app, int64_t window_s)
{
    bool all = caller->role == ROLE_SCHEDULER;
    json_t *out = json_array(), *in = json_array();
    for (size_t i = 0; i < w->outgoing_len; i++) {
        const struct store_trace_peer *p = &w->outgoing[i];
        char owner[NAMES_LABEL_MAX + 1];
        owner_of(p->service, owner, sizeof(owner));
        /* the caller named the service itself; the app id only of its own apps */
        json_array_append_new(
            out, peer_json(p, p->service, all || strcmp(owner, app->owner) == 0, window_s));
    }
    for (size_t i = 0; i < w->incoming_len; i++) {
        const struct store_trace_peer *p = &w->incoming[i];
        if (peer_visible(p, caller, app))
            json_array_append_new(in, peer_json(p, p->service, true, window_s));
    }
    struct hist_entry *entries = malloc(HIST_BUCKETS * sizeof(*entries));
    struct store_trace_peer others;
    if (entries && sum_other_users(w, caller, app, &others, entries))
        json_array_append_new(in, peer_json(&others, OTHER_USERS, false, window_s));
    free(entries);
    return json_pack("{s:o, s:o}", "outgoing", out, "incoming", in);
}

static json_t *time_json(int64_t s)
{
    char buf[TIME_RFC3339_LEN];
    return json_string(time_format_rfc3339(s * 1000, buf));
}

static void service_of(const struct store_app *app, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", app->owner, app->name);
}

/* The metrics of one app that caller may see. */
static int app_metrics(struct traces *t, const struct auth_principal *caller,
                       const struct store_app *app, int64_t window_s, int resolution_s,
                       json_t **ret, struct emp_error *err)
{
    int64_t end = window_end(resolution_s);
    struct store_trace_window w;
    int r = store_trace_window_get(t->store, app->id, end, window_s, resolution_s, &w, err);
    if (r < 0)
        return r;
    char service[2 * NAMES_LABEL_MAX + 2];
    service_of(app, service, sizeof(service));
    double rps = rate(w.requests, window_s);
    int ready = app->ready_replicas;
    int desired = app->desired == DESIRED_RUNNING ? app->desired_replicas : 0;
    json_t *o = json_object();
    json_object_set_new(o, "app_id", json_string(app->id));
    json_object_set_new(o, "service", json_string(service));
    json_object_set_new(o, "window_s", json_integer(window_s));
    json_object_set_new(o, "resolution_s", json_integer(resolution_s));
    json_object_set_new(o, "from", time_json(end - window_s));
    json_object_set_new(o, "to", time_json(end));
    json_object_set_new(o, "requests", json_integer((json_int_t)w.requests));
    json_object_set_new(o, "errors", json_integer((json_int_t)w.errors));
    json_object_set_new(o, "rate_rps", json_real(rps));
    json_object_set_new(o, "error_rate", json_real(ratio(w.errors, w.requests)));
    json_object_set_new(o, "latency_ms", percentiles(w.latency, w.latency_len, true));
    json_object_set_new(o, "self_time_ms", percentiles(w.self, w.self_len, false));
    json_object_set_new(o, "latency_relative_error", json_real(HIST_RELATIVE_ERROR));
    json_object_set_new(o, "replicas", json_pack("{s:i, s:i}", "desired", desired, "ready", ready));
    json_object_set_new(o, "rate_per_replica_rps",
                        ready > 0 ? json_real(round(rps / ready * 1000.0) / 1000.0) : json_null());
    json_object_set_new(o, "dependencies", dependencies(&w, caller, app, window_s));
    store_trace_window_free(&w);
    *ret = o;
    return 0;
}

int traces_metrics(struct traces *t, const struct auth_principal *caller, const char *ref,
                   const char *window, json_t **ret, struct emp_error *err)
{
    int64_t window_s = 0;
    int resolution_s = STORE_TRACE_FINE_S;
    int r = parse_window(window, &window_s, &resolution_s, err);
    if (r < 0)
        return r;
    struct store_app *app;
    r = apps_get(t->apps, caller, ref, &app, err);
    if (r < 0)
        return r;
    r = app_metrics(t, caller, app, window_s, resolution_s, ret, err);
    store_app_free(app);
    return r;
}

int traces_tracing(struct traces *t, const struct auth_principal *caller, const char *ref,
                   json_t **ret, struct emp_error *err)
{
    struct store_app *app;
    int r = apps_get(t->apps, caller, ref, &app, err);
    if (r < 0)
        return r;
    json_t *summary = NULL;
    r = app_metrics(t, caller, app, SUMMARY_WINDOW_S, STORE_TRACE_FINE_S, &summary, err);
    if (r < 0) {
        store_app_free(app);
        return r;
    }
    char service[2 * NAMES_LABEL_MAX + 2], encoded[3 * sizeof(service)], link[1024];
    service_of(app, service, sizeof(service));
    encoded[0] = '\0';
    textio_url_encode(encoded, sizeof(encoded), service); /* the '/' of the service name */
    snprintf(link, sizeof(link), "%s/zipkin/?serviceName=%s", t->zipkin_url, encoded);
    *ret = json_pack("{s:s, s:s, s:s, s:s, s:o}", "app_id", app->id, "service", service,
                     "zipkin_url", t->zipkin_url, "link", link, "summary", summary);
    store_app_free(app);
    return *ret ? 0 : -ENOMEM;
}

/* ---- the graph ---- */

struct graph {
    json_t *nodes; /* service -> node */
    json_t *edges; /* array */
};

static json_t *node_of(struct graph *g, const char *service, const char *app_id, bool app)
{
    json_t *n = json_object_get(g->nodes, service);
    if (!n) {
        n = json_pack("{s:s, s:o, s:b}", "service", service, "app_id",
                      app_id ? json_string(app_id) : json_null(), "emp_app", app);
        json_object_set_new(g->nodes, service, n);
    }
    return n;
}

static json_t *edge_json(const char *from, const char *to, const struct store_trace_peer *p,
                         int64_t window_s)
{
    json_t *lat = json_object();
    json_object_set_new(lat, "p50", ms_or_null(p->latency, p->latency_len, 0.5));
    json_object_set_new(lat, "p95", ms_or_null(p->latency, p->latency_len, 0.95));
    json_object_set_new(lat, "p99", ms_or_null(p->latency, p->latency_len, 0.99));
    return json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:o}", "from", from, "to", to, "calls",
                     (json_int_t)p->calls, "errors", (json_int_t)p->errors, "error_rate",
                     ratio(p->errors, p->calls), "rate_rps", rate(p->calls, window_s), "latency_ms",
                     lat);
}

int traces_graph(struct traces *t, const struct auth_principal *caller, const char *window,
                 json_t **ret, struct emp_error *err)
{
    int64_t window_s = 0;
    int resolution_s = STORE_TRACE_FINE_S;
    int r = parse_window(window, &window_s, &resolution_s, err);
    if (r < 0)
        return r;
    int64_t end = window_end(resolution_s);
    struct graph g = {json_object(), json_array()};
    bool all = caller->role == ROLE_SCHEDULER, truncated = false;
    struct hist_entry *entries = all ? NULL : malloc(HIST_BUCKETS * sizeof(*entries));
    char *cursor = NULL;
    size_t seen = 0;
    do {
        struct store_app **apps;
        size_t count;
        char *next = NULL;
        r = apps_list(t->apps, caller, cursor ? cursor : "", 100, &apps, &count, &next, err);
        free(cursor);
        cursor = next;
        if (r < 0)
            break;
        for (size_t i = 0; i < count && r == 0; i++) {
            if (seen++ >= GRAPH_APPS_MAX) {
                truncated = true;
                break;
            }
            struct store_app *app = apps[i];
            struct store_trace_window w;
            r = store_trace_window_get(t->store, app->id, end, window_s, resolution_s, &w, err);
            if (r < 0)
                break;
            char service[2 * NAMES_LABEL_MAX + 2];
            service_of(app, service, sizeof(service));
            json_t *n = node_of(&g, service, app->id, true);
            json_object_set_new(n, "emp_app", json_true());
            json_object_set_new(n, "app_id", json_string(app->id));
            json_object_set_new(n, "requests", json_integer((json_int_t)w.requests));
            json_object_set_new(n, "rate_rps", json_real(rate(w.requests, window_s)));
            json_object_set_new(n, "error_rate", json_real(ratio(w.errors, w.requests)));
            json_object_set_new(n, "latency_ms", percentiles(w.latency, w.latency_len, false));
            json_object_set_new(n, "self_time_ms", percentiles(w.self, w.self_len, false));
            for (size_t j = 0; j < w.outgoing_len; j++) {
                const struct store_trace_peer *p = &w.outgoing[j];
                char owner[NAMES_LABEL_MAX + 1];
                owner_of(p->service, owner, sizeof(owner));
                bool mine = all || strcmp(owner, app->owner) == 0;
                node_of(&g, p->service, mine ? p->app_id : NULL, p->app_id != NULL);
                json_array_append_new(g.edges, edge_json(service, p->service, p, window_s));
            }
            /* calls from other users' services: one unnamed caller (the scheduler sees them as
             * the outgoing calls of their own apps) */
            struct store_trace_peer others;
            if (!all && entries && sum_other_users(&w, caller, app, &others, entries)) {
                node_of(&g, OTHER_USERS, NULL, false);
                json_array_append_new(g.edges, edge_json(OTHER_USERS, service, &others, window_s));
            }
            store_trace_window_free(&w);
        }
        store_app_list_free(apps, count);
    } while (r == 0 && cursor && !truncated);
    free(cursor);
    free(entries);
    if (r < 0) {
        json_decref(g.nodes);
        json_decref(g.edges);
        return r;
    }
    json_t *nodes = json_array();
    const char *key;
    json_t *value;
    json_object_foreach(g.nodes, key, value) json_array_append(nodes, value);
    json_decref(g.nodes);
    *ret = json_pack("{s:I, s:o, s:o, s:o, s:o, s:b}", "window_s", (json_int_t)window_s, "from",
                     time_json(end - window_s), "to", time_json(end), "services", nodes, "calls",
                     g.edges, "truncated", truncated);
    return *ret ? 0 : -ENOMEM;
}

int traces_status(struct traces *t, json_t **ret, struct emp_error *err)
{
    struct store_trace_stats st;
    int r = store_trace_stats_get(t->store, &st, err);
    if (r < 0)
        return r;
    struct collector_counters cc;
    collector_counters(t->collector, &cc);
    json_t *kafka = json_null();
    if (t->kafka) {
        struct kafka_counters kc;
        kafka_counters(t->kafka, &kc);
        kafka = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "consumed_messages",
                          (json_int_t)kc.consumed, "committed_offsets",
                          (json_int_t)kc.committed_offsets, "produced_messages",
                          (json_int_t)kc.produced, "produce_failures",
                          (json_int_t)kc.produce_failed, "assigned_partitions",
                          (json_int_t)kc.assigned_partitions, "pauses", (json_int_t)kc.pauses);
    }
    *ret = json_pack(
        "{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o}",
        "all_servers", "messages", (json_int_t)st.messages, "bad_messages",
        (json_int_t)st.bad_messages, "spans", (json_int_t)st.spans, "bad_spans",
        (json_int_t)st.bad_spans, "unknown_service", (json_int_t)st.unknown_service, "too_late",
        (json_int_t)st.too_late, "too_early", (json_int_t)st.too_early, "no_timestamp",
        (json_int_t)st.no_timestamp, "pending_dropped", (json_int_t)st.pending_dropped,
        "duplicates", (json_int_t)st.duplicates, "this_server", "messages", (json_int_t)cc.messages,
        "bad_messages", (json_int_t)cc.bad_messages, "spans", (json_int_t)cc.spans, "bad_spans",
        (json_int_t)cc.bad_spans, "pending_halves", (json_int_t)cc.pending, "unsent_batches",
        (json_int_t)cc.unsent_batches, "dropped_batches", (json_int_t)cc.dropped_batches,
        "last_span_at_ms", (json_int_t)cc.last_span_at_ms, "kafka", kafka);
    return *ret ? 0 : -ENOMEM;
}
