/* SPDX-License-Identifier: Apache-2.0 */
/* Zipkin v2 spans (zipkin2-api.yaml): a parser of the JSON list that Zipkin's collectors take
 * (one Kafka message, or one POST /api/v2/spans body), keeping what EMP aggregates and checking
 * what it keeps. It copies nothing it does not need, allocates nothing per span, and bounds
 * everything: message size, spans per message, tags per span, string lengths, nesting. */
#ifndef EMP_SPAN_H
#define EMP_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPAN_MESSAGE_MAX (5 * 1024 * 1024) /* bytes of one list */
#define SPAN_LIST_MAX    10000             /* spans in one list */
#define SPAN_TAGS_MAX    256               /* tags of one span */
#define SPAN_SERVICE_MAX 256               /* a service name, with its NUL */
#define SPAN_STRING_MAX  (64 * 1024)       /* any other string */
#define SPAN_DEPTH_MAX   16

enum span_kind { SPAN_KIND_NONE, SPAN_CLIENT, SPAN_SERVER, SPAN_PRODUCER, SPAN_CONSUMER };

struct span {
    uint64_t trace_hi, trace_lo; /* traceId: 64 or 128 bits */
    uint64_t id;
    uint64_t parent_id; /* 0: a root span */
    bool has_parent;
    enum span_kind kind;
    int64_t timestamp_us; /* 0 when absent */
    int64_t duration_us;  /* 0 when absent */
    bool shared;
    bool error;      /* tag "error" */
    int http_status; /* tag "http.status_code", 0 when absent */
    /* emp_hash_text() of each name, as the parser computed it while it copied the name: the
     * tables that names key do not hash them again */
    uint64_t local_hash, remote_hash;
    /* the names last: the parser clears what comes before them at once */
    char local_service[SPAN_SERVICE_MAX]; /* localEndpoint.serviceName, lowercased as Zipkin does */
    char remote_service[SPAN_SERVICE_MAX]; /* remoteEndpoint.serviceName, "" when absent */
};

/* What a parse saw. */
struct span_parse_result {
    size_t spans;     /* delivered */
    size_t bad_spans; /* skipped: wrong types, bad ids, too many tags, ... */
    bool bad_message; /* the list itself was not valid: nothing of it was delivered */
    char why[160];    /* the first problem, for logs */
};

/* Parses a JSON list of spans. If the list is valid JSON within the limits, every span that is
 * valid is passed to deliver (with the array and its length); invalid ones are counted. If the
 * list is not (malformed, truncated, too large, too many spans), nothing is delivered and
 * bad_message is set. spans is caller-provided room for SPAN_LIST_MAX spans. */
void span_parse_list(const char *buf, size_t len, struct span *spans,
                     void (*deliver)(void *ctx, const struct span *spans, size_t count), void *ctx,
                     struct span_parse_result *ret);

/* The error rule of EMP's metrics: tag error, or an HTTP status of 500 and more. */
static inline bool span_failed(const struct span *s)
{
    return s->error || s->http_status >= 500;
}

#endif
