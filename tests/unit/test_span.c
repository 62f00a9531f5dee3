/* SPDX-License-Identifier: Apache-2.0 */
/* The Zipkin v2 span parser: what it reads from a span, its limits, and what it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emp/hash.h"
#include "span.h"

static struct span *room;
static struct span got[4];
static size_t got_count;

static void keep(void *ctx, const struct span *spans, size_t count)
{
    got_count = count < 4 ? count : 4;
    memcpy(got, spans, got_count * sizeof(*spans));
}

static struct span_parse_result parse(const char *text)
{
    struct span_parse_result r;
    got_count = 0;
    memset(got, 0, sizeof(got));
    span_parse_list(text, strlen(text), room, keep, NULL, &r);
    return r;
}

/* A list of one span of service "a/b" with extra fields (text after the id). */
static struct span_parse_result parse_one(const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000002\","
             "\"localEndpoint\":{\"serviceName\":\"a/b\"}%s}]",
             extra);
    return parse(text);
}

/* The hashes a span carries are those of its names as delivered (lowercased, decoded). */
static void assert_hashes(const struct span *s)
{
    assert_true(s->local_hash == emp_hash_text(s->local_service));
    assert_true(s->remote_hash == emp_hash_text(s->remote_service));
}

static void test_every_field(void **state)
{
    struct span_parse_result r =
        parse(" [ {\"traceId\": \"463ac35c9f6413ad48485a3953bb6124\", \"id\":\"48485a3953bb6124\","
              "\"parentId\":\"a2fb4a1d1a96d312\", \"kind\":\"SERVER\", \"name\":\"get /\","
              "\"timestamp\":1472470996199000,\"duration\":207000,\"shared\":true,"
              "\"localEndpoint\":{\"serviceName\":\"Alice/Web\",\"ipv4\":\"10.0.0.1\",\"port\":80},"
              "\"remoteEndpoint\":{\"serviceName\":\"mysql\"},"
              "\"annotations\":[{\"timestamp\":1,\"value\":\"x\"}],"
              "\"tags\":{\"http.status_code\":\"503\",\"error\":\"\",\"other\":\"v\"},\"debug\":"
              "false} ]\n");
    assert_false(r.bad_message);
    assert_int_equal(r.spans, 1);
    assert_int_equal(r.bad_spans, 0);
    assert_int_equal(got_count, 1);
    const struct span *s = &got[0];
    assert_true(s->trace_hi == 0x463ac35c9f6413adULL && s->trace_lo == 0x48485a3953bb6124ULL);
    assert_true(s->id == 0x48485a3953bb6124ULL);
    assert_true(s->has_parent && s->parent_id == 0xa2fb4a1d1a96d312ULL);
    assert_int_equal(s->kind, SPAN_SERVER);
    assert_true(s->timestamp_us == 1472470996199000LL);
    assert_int_equal(s->duration_us, 207000);
    assert_true(s->shared);
    assert_true(s->error);
    assert_int_equal(s->http_status, 503);
    assert_string_equal(s->local_service, "alice/web"); /* lowercased, as Zipkin does */
    assert_string_equal(s->remote_service, "mysql");
    assert_hashes(s);
}

static void test_escapes(void **state)
{
    /* escaped keys are the same keys; escaped names are decoded */
    struct span_parse_result r =
        parse("[{\"trace\\u0049d\":\"0000000000000001\",\"id\":\"0000000000000002\","
              "\"kind\":\"CLI\\u0045NT\",\"localEndpoint\":{\"serviceName\":\"a\\/b\"},"
              "\"remoteEndpoint\":{\"serviceName\":\"x\\\"y\\\\z\\n\"}}]");
    assert_false(r.bad_message);
    assert_int_equal(r.spans, 1);
    assert_true(got[0].trace_lo == 1 && got[0].id == 2);
    assert_int_equal(got[0].kind, SPAN_CLIENT);
    assert_string_equal(got[0].local_service, "a/b");
    assert_string_equal(got[0].remote_service, "x\"y\\z\n");
    assert_hashes(&got[0]);
    assert_false(got[0].has_parent);
    assert_false(got[0].error);
    assert_int_equal(got[0].http_status, 0);
}

/* A span whose "name" is a string of len bytes, written plain or with one escape at its end. */
static struct span_parse_result parse_long_name(size_t len, bool escaped)
{
    size_t size = len + 256;
    char *text = malloc(size);
    assert_non_null(text);
    int n = snprintf(text, size,
                     "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000002\","
                     "\"localEndpoint\":{\"serviceName\":\"a/b\"},\"name\":\"");
    memset(text + n, 'x', len);
    if (escaped)
        memcpy(text + n + len - 2, "\\n", 2); /* two bytes of text, one byte of string */
    snprintf(text + n + len, size - (size_t)n - len, "%s\"}]", escaped ? "x" : "");
    struct span_parse_result r = parse(text);
    free(text);
    return r;
}

static void test_string_limit(void **state)
{
    assert_false(parse_long_name(SPAN_STRING_MAX, false).bad_message);
    assert_true(parse_long_name(SPAN_STRING_MAX + 1, false).bad_message);
    assert_false(parse_long_name(SPAN_STRING_MAX, true).bad_message);
    assert_true(parse_long_name(SPAN_STRING_MAX + 1, true).bad_message);
    struct span_parse_result r = parse_long_name(SPAN_STRING_MAX + 1, false);
    assert_non_null(strstr(r.why, "longer than the limit"));
}

/* A remote service name of len bytes with c at position at (c a quote or backslash is escaped):
 * every position against the eight-byte words the scanner reads. */
static struct span_parse_result parse_name_with(size_t len, size_t at, char c, char *name)
{
    char extra[256];
    memset(name, 'a', len);
    name[len] = '\0';
    size_t n = (size_t)snprintf(extra, sizeof(extra), ",\"remoteEndpoint\":{\"serviceName\":\"");
    for (size_t i = 0; i < len; i++) {
        if (i == at && (c == '"' || c == '\\'))
            extra[n++] = '\\';
        extra[n++] = i == at ? c : 'a';
    }
    snprintf(extra + n, sizeof(extra) - n, "\"}");
    if (at < len)
        name[at] = c;
    return parse_one(extra);
}

static void test_string_positions(void **state)
{
    char name[64];
    for (size_t len = 0; len < 40; len++) {
        for (size_t at = 0; at < len; at++) {
            assert_int_equal(parse_name_with(len, at, '"', name).spans, 1);
            assert_string_equal(got[0].remote_service, name);
            assert_int_equal(parse_name_with(len, at, '\\', name).spans, 1);
            assert_string_equal(got[0].remote_service, name);
            assert_hashes(&got[0]);
            assert_true(parse_name_with(len, at, '\t', name).bad_message); /* raw control byte */
            assert_true(parse_name_with(len, at, '\x01', name).bad_message);
            assert_int_equal(parse_name_with(len, at, (char)0xc3, name).spans, 1); /* UTF-8 */
            assert_int_equal(parse_name_with(len, at, ' ', name).spans, 1);
            assert_string_equal(got[0].remote_service, name);
        }
    }
}

static void test_service_name_limit(void **state)
{
    char name[SPAN_SERVICE_MAX + 1];
    char extra[600];
    memset(name, 'a', sizeof(name));
    name[SPAN_SERVICE_MAX - 1] = '\0'; /* 255 bytes: the longest name */
    snprintf(extra, sizeof(extra), ",\"remoteEndpoint\":{\"serviceName\":\"%s\"}", name);
    assert_int_equal(parse_one(extra).spans, 1);
    assert_int_equal(strlen(got[0].remote_service), SPAN_SERVICE_MAX - 1);
    assert_hashes(&got[0]);
    name[SPAN_SERVICE_MAX - 1] = 'a';
    name[SPAN_SERVICE_MAX] = '\0';
    snprintf(extra, sizeof(extra), ",\"remoteEndpoint\":{\"serviceName\":\"%s\"}", name);
    struct span_parse_result r = parse_one(extra);
    assert_false(r.bad_message);
    assert_int_equal(r.spans, 0);
    assert_int_equal(r.bad_spans, 1);
}

static void test_bad_ids(void **state)
{
    const char *bad[] = {
        "\"0000000000000ABC\"",                 /* uppercase: the spec says lowercase hex */
        "\"000000000000000g\"",                 /* not hex */
        "\"00000000000001\"",                   /* 14 digits */
        "\"0000000000000000\"",                 /* zero */
        "\"00000000000000010000000000000001\"", /* 128 bits: only a trace id may be */
        "12",                                   /* not a string */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "[{\"traceId\":\"0000000000000001\",\"id\":%s,"
                 "\"localEndpoint\":{\"serviceName\":\"a/b\"}},"
                 "{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000003\","
                 "\"localEndpoint\":{\"serviceName\":\"a/b\"}}]",
                 bad[i]);
        struct span_parse_result r = parse(text);
        assert_false(r.bad_message);
        assert_int_equal(r.bad_spans, 1);
        assert_int_equal(r.spans, 1); /* the good one after it */
        assert_true(got[0].id == 3);
    }
    /* a 128-bit trace id is read in two halves; uppercase is refused there too */
    struct span_parse_result r =
        parse("[{\"traceId\":\"00000000000000020000000000000003\",\"id\":\"0000000000000001\","
              "\"localEndpoint\":{\"serviceName\":\"a/b\"}}]");
    assert_int_equal(r.spans, 1);
    assert_true(got[0].trace_hi == 2 && got[0].trace_lo == 3);
    r = parse("[{\"traceId\":\"0000000000000002000000000000000F\",\"id\":\"0000000000000001\","
              "\"localEndpoint\":{\"serviceName\":\"a/b\"}}]");
    assert_int_equal(r.bad_spans, 1);
    /* a 64-bit trace id whose 33rd byte on is a quote (the name's), and ids written with escapes
     * (JSON allows them; they are read as any string is) */
    r = parse(
        "[{\"traceId\":\"0000000000000004\",\"name\":\"abcdef\",\"id\":\"\\u0030000000000000005\","
        "\"parentId\":\"000000000000000\\u0036\",\"localEndpoint\":{\"serviceName\":\"a/b\"}}]");
    assert_int_equal(r.spans, 1);
    assert_true(got[0].trace_hi == 0 && got[0].trace_lo == 4);
    assert_true(got[0].id == 5 && got[0].parent_id == 6);
}

/* Every byte (but those that end a string or the message) at the first, last and middle places of
 * each half of an id: taken with its value where it is a lowercase hex digit, refused anywhere
 * else, and the other digits read as they are. */
static void test_id_bytes(void **state)
{
    (void)state;
    const int places[] = {0, 7, 8, 15, 16, 23, 24, 31};
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
        for (int b = 0x20; b <= 0xff; b++) {
            if (b == '"' || b == '\\')
                continue;
            char id[33];
            memcpy(id, "0123456789abcdef1032547698badcfe", 33);
            id[places[i]] = (char)b;
            char text[512];
            snprintf(text, sizeof(text),
                     "[{\"traceId\":\"%s\",\"id\":\"%.16s\","
                     "\"localEndpoint\":{\"serviceName\":\"a/b\"}}]",
                     id, id + (places[i] < 16 ? 0 : 16));
            struct span_parse_result r = parse(text);
            assert_false(r.bad_message);
            bool hex = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f');
            assert_int_equal(r.spans, hex ? 1 : 0);
            assert_int_equal(r.bad_spans, hex ? 0 : 1);
            if (!hex)
                continue;
            char half[17];
            memcpy(half, id, 16);
            half[16] = '\0';
            uint64_t hi = strtoull(half, NULL, 16), lo = strtoull(id + 16, NULL, 16);
            assert_true(got[0].trace_hi == hi && got[0].trace_lo == lo);
            assert_true(got[0].id == (places[i] < 16 ? hi : lo));
        }
}

static void test_bad_messages(void **state)
{
    const char *bad[] = {
        "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000002", /* truncated */
        "[{\"traceId\":\"0000000000000001\",\"na\tme\":1}]",            /* control character */
        "[{\"traceId\":\"00000000\\q00000001\"}]",                      /* bad escape */
        "[{\"traceId\":\"\\u00\"}]",                                    /* short \u escape */
        "{}",
        "[] x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct span_parse_result r = parse(bad[i]);
        assert_true(r.bad_message);
        assert_int_equal(got_count, 0);
    }
}

static void test_bad_fields(void **state)
{
    const char *bad[] = {
        ",\"kind\":\"SERVERS\"", ",\"kind\":1",          ",\"duration\":-1",
        ",\"timestamp\":1.5",    ",\"shared\":\"true\"", ",\"tags\":{\"error\":true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct span_parse_result r = parse_one(bad[i]);
        if (i == 3) { /* a fraction where an integer belongs: the list itself is refused */
            assert_true(r.bad_message);
            continue;
        }
        assert_false(r.bad_message);
        assert_int_equal(r.bad_spans, 1);
    }
    assert_int_equal(parse_one(",\"kind\":\"PRODUCER\"").spans, 1);
    assert_int_equal(got[0].kind, SPAN_PRODUCER);
}

/* Integers of every length up to the largest a span field holds, and the first beyond it; digits
 * that run into the end of the message or into a fraction. */
static void test_integers(void **state)
{
    char digits[24], extra[64];
    uint64_t v = 0;
    for (int n = 1; n <= 19; n++) {
        digits[n - 1] = (char)('0' + (n * 7) % 10);
        digits[n] = '\0';
        v = v * 10 + (uint64_t)((n * 7) % 10);
        snprintf(extra, sizeof(extra), ",\"duration\":%s,\"timestamp\":%s", digits, digits);
        struct span_parse_result r = parse_one(extra);
        assert_int_equal(r.spans, 1);
        assert_true(got[0].duration_us == (int64_t)v && got[0].timestamp_us == (int64_t)v);
    }
    assert_int_equal(parse_one(",\"timestamp\":9223372036854775807").spans, 1);
    assert_true(got[0].timestamp_us == INT64_MAX);
    assert_int_equal(parse_one(",\"timestamp\":0000000000000000012").spans, 1);
    assert_true(got[0].timestamp_us == 12);
    const char *bad[] = {
        ",\"timestamp\":9223372036854775808",  /* INT64_MAX + 1 */
        ",\"timestamp\":18446744073709551616", /* 2^64 */
        ",\"timestamp\":99999999999999999999999", ",\"timestamp\":12345678.5",
        ",\"timestamp\":1234567812345678e3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(parse_one(bad[i]).bad_message);
    /* a message that ends in the digits */
    assert_true(parse("[{\"timestamp\":12345678").bad_message);
    assert_true(parse("[{\"timestamp\":1234567812345678").bad_message);
}

/* The span of test_every_field, written compact and with whitespace (each kind, and runs of it)
 * between every two tokens: the same span either way. Whitespace or a control byte inside a
 * token, or a control byte between tokens, makes the list bad. */
static void test_whitespace(void **state)
{
    const char *compact =
        "[{\"traceId\":\"463ac35c9f6413ad48485a3953bb6124\",\"id\":\"48485a3953bb6124\","
        "\"parentId\":\"a2fb4a1d1a96d312\",\"kind\":\"SERVER\",\"name\":\"get /\","
        "\"timestamp\":1472470996199000,\"duration\":207000,\"shared\":true,"
        "\"localEndpoint\":{\"serviceName\":\"Alice/Web\",\"ipv4\":\"10.0.0.1\",\"port\":80},"
        "\"remoteEndpoint\":{\"serviceName\":\"mysql\"},\"annotations\":[{\"timestamp\":1,"
        "\"value\":\"x\"},{}],\"tags\":{\"http.status_code\":\"503\",\"error\":\"\"},"
        "\"debug\":false,\"empty\":[]}]";
    assert_int_equal(parse(compact).spans, 1);
    struct span want = got[0];
    const char *gaps[] = {" ", "\t", "\n", "\r", " \r\n\t  "};
    for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
        char spaced[2048];
        size_t n = 0;
        bool in_string = false;
        memcpy(spaced, gaps[g], strlen(gaps[g])); /* before the list, too */
        n += strlen(gaps[g]);
        for (const char *c = compact; *c; c++) {
            spaced[n++] = *c;
            if (*c == '"')
                in_string = !in_string;
            if (!in_string && strchr("[]{}:,\"", *c)) {
                memcpy(spaced + n, gaps[g], strlen(gaps[g]));
                n += strlen(gaps[g]);
            }
        }
        spaced[n] = '\0';
        struct span_parse_result r = parse(spaced);
        assert_false(r.bad_message);
        assert_int_equal(r.spans, 1);
        assert_memory_equal(&got[0], &want, offsetof(struct span, local_service));
        assert_string_equal(got[0].local_service, want.local_service);
        assert_string_equal(got[0].remote_service, want.remote_service);
    }
    const char *bad[] = {
        "[{\"traceId\" :\"0000000000000001\"}\x01]", /* a control byte between tokens */
        "[{\"traceId\":\"0000000000000001\"}\f]",    /* form feed: not JSON's whitespace */
        "[{\"traceId\":\"0000000000000001\"},\v{}]",
        "[{\"timestamp\":12 34}]",
        "[{\"shared\":tr ue}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(parse(bad[i]).bad_message);
    /* a NUL byte between tokens: the text goes on after it, and is still refused */
    static const char nul[] = "[{\"traceId\":\"0000000000000001\"}\0]";
    struct span_parse_result r;
    span_parse_list(nul, sizeof(nul) - 1, room, keep, NULL, &r);
    assert_true(r.bad_message);
}

int main(void)
{
    room = malloc(SPAN_LIST_MAX * sizeof(*room));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field),        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_string_limit),       cmocka_unit_test(test_string_positions),
        cmocka_unit_test(test_service_name_limit), cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_id_bytes),           cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_bad_fields),         cmocka_unit_test(test_integers),
        cmocka_unit_test(test_whitespace),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(room);
    return failed;
}
