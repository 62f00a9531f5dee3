/* SPDX-License-Identifier: Apache-2.0 */
/* The tracing side of the API: Zipkin's collector endpoint (spans in), and what the store's trace
 * counts say about an app (metrics, its dependencies, the graph of a user's services, the Zipkin
 * link). It decides who may see what and turns histograms into percentiles; the HTTP shapes are
 * api.c's, the counting is the collector's. */
#ifndef EMP_TRACES_H
#define EMP_TRACES_H

#include <jansson.h>
#include <stddef.h>

#include "auth.h"
#include "emp/error.h"

struct store;
struct apps;
struct collector;
struct kafka;

struct traces_config {
    const char *zipkin_url; /* base of Zipkin UI links, without a trailing '/' */
};

struct traces;

/* All pointers are borrowed; kafka may be NULL (spans are then counted here directly). */
int traces_new(struct store *store, struct apps *apps, struct collector *collector,
               struct kafka *kafka, const struct traces_config *config, struct traces **ret);
void traces_free(struct traces *traces);

#define TRACES_BODY_MAX (5 * 1024 * 1024) /* a POST /api/v2/spans body, also once inflated */

/* POST /api/v2/spans: a JSON list of Zipkin v2 spans, gzip'd if content_encoding says so. Returns
 * 0 when it was taken (202), or an error naming what is wrong (400, 413, 415). *ret_spans and
 * *ret_bad_spans (may be NULL) say what the list held. */
int traces_ingest(struct traces *traces, const char *content_type, const char *content_encoding,
                  const char *body, size_t len, size_t *ret_spans, size_t *ret_bad_spans,
                  struct emp_error *err);

/* GET /v1/apps/{ref}/metrics?window=: *ret is a new reference. window may be NULL (60s). */
int traces_metrics(struct traces *traces, const struct auth_principal *caller, const char *ref,
                   const char *window, json_t **ret, struct emp_error *err);
/* GET /v1/apps/{ref}/tracing: the service name, the Zipkin link and the last minutes in short. */
int traces_tracing(struct traces *traces, const struct auth_principal *caller, const char *ref,
                   json_t **ret, struct emp_error *err);
/* GET /v1/graph?window=: the caller's services (every app's, for the scheduler) and the calls
 * between them and to services outside. */
int traces_graph(struct traces *traces, const struct auth_principal *caller, const char *window,
                 json_t **ret, struct emp_error *err);
/* GET /v1/tracing: how ingestion goes (counts from every emp-server, and this one's). */
int traces_status(struct traces *traces, json_t **ret, struct emp_error *err);

#endif
