/* SPDX-License-Identifier: Apache-2.0 */
/* A strict, single-pass JSON reader for lists of Zipkin v2 spans. The whole list is checked
 * before any span is handed on, so that a truncated message counts as one bad message rather
 * than as a partial one. Fields EMP does not use are checked for JSON syntax and skipped. */
#include "span.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "emp/hash.h"

struct reader {
    const char *p, *end;
    char why[160];
    bool failed;
};

static bool fail(struct reader *r, const char *why)
{
    if (!r->failed) {
        r->failed = true;
        snprintf(r->why, sizeof(r->why), "%s", why);
    }
    return false;
}

/* Whitespace, from r->p on: out of line, for next_byte. */
static __attribute__((noinline)) void skip_ws_loop(struct reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* The first byte of the next token, with r->p at it ('\0' at the end). It runs between every two
 * tokens, some hundred times a span: inlined, which GCC does not do of itself here, and the
 * whitespace loop is entered only when the byte at r->p is at most ' ' (every whitespace byte
 * is), which it never is in compact JSON (what Zipkin's libraries write). */
static inline __attribute__((always_inline)) char next_byte(struct reader *r)
{
    if (__builtin_expect(r->p < r->end && (unsigned char)*r->p > ' ', 1))
        return *r->p;
    skip_ws_loop(r);
    return r->p < r->end ? *r->p : '\0';
}

static inline __attribute__((always_inline)) void skip_ws(struct reader *r)
{
    (void)next_byte(r);
}

static inline __attribute__((always_inline)) bool eat(struct reader *r, char c)
{
    if (next_byte(r) == c) {
        r->p++;
        return true;
    }
    return false;
}

/* After an item of a list or an object: 1 when ',' says another comes, 0 when close ends it, -1
 * when neither is there. One look at the next token, not one for each. */
static inline __attribute__((always_inline)) int after_item(struct reader *r, char close)
{
    char c = next_byte(r);
    if (c == ',' || c == close) {
        r->p++;
        return c == ',';
    }
    return -1;
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether a text read (len its full length) is the literal word. */
#define KEY_IS(text, len, word)                                                                    \
    ((len) == sizeof(word) - 1 && memcmp(text, word, sizeof(word) - 1) == 0)

/* The first byte from p on that ends a string's plain run: '"', '\\', a control character, or
 * end. Sixteen bytes at a time where SSE2 is there (every x86-64): a span is mostly strings. */
static inline __attribute__((always_inline)) const char *plain_end(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i control = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(_mm_max_epu8(v, control), control));
        int mask = _mm_movemask_epi8(stop);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

static bool read_escaped(struct reader *r, char *scratch, size_t size, const char **ret,
                         size_t *ret_len);

/* Reads a string: *ret points at its text and *ret_len is its (unescaped) length. A string
 * without escapes is not copied (*ret points into the message, not NUL-terminated); one with
 * escapes is decoded into scratch (at most size-1 bytes of it, NUL-terminated; scratch may be NULL
 * to only check it) and *ret is scratch, so a text of size bytes or more was cut. \u sequences
 * become '?' when outside ASCII (names EMP keeps are ASCII). Inlined where strings are read,
 * keys and values, thirty-odd times a span: the bench's spans parse in 262 ns instead of 298. A
 * string with an escape goes on in read_escaped. */
static inline __attribute__((always_inline)) bool
read_text(struct reader *r, char *scratch, size_t size, const char **ret, size_t *ret_len)
{
    if (next_byte(r) != '"')
        return fail(r, "a string was expected");
    r->p++;
    const char *q = plain_end(r->p, r->end);
    if (q < r->end && *q == '"') {
        size_t n = (size_t)(q - r->p);
        if (n > SPAN_STRING_MAX)
            return fail(r, "a string longer than the limit");
        *ret = r->p;
        *ret_len = n;
        r->p = q + 1;
        return true;
    }
    return read_escaped(r, scratch, size, ret, ret_len);
}

/* A member's key and the ':' after it, as read_text reads a string. In compact JSON the ':' is
 * the byte after the key's quote, and is taken without a look for whitespace. */
static inline __attribute__((always_inline)) bool
read_key(struct reader *r, char *scratch, size_t size, const char **key, size_t *key_len)
{
    if (!read_text(r, scratch, size, key, key_len))
        return false;
    if (r->p < r->end && *r->p == ':') {
        r->p++;
        return true;
    }
    return eat(r, ':') || fail(r, "':' was expected");
}

/* The rest of read_text: a string with an escape, or a bad one, from r->p (after its quote). */
static bool read_escaped(struct reader *r, char *scratch, size_t size, const char **ret,
                         size_t *ret_len)
{
    char *out = scratch;
    size_t len = 0;
    while (r->p < r->end) {
        char c = *r->p++;
        if (c == '"') {
            if (out && size)
                out[len < size ? len : size - 1] = '\0';
            *ret = out ? out : "";
            *ret_len = len;
            return true;
        }
        if ((unsigned char)c < 0x20)
            return fail(r, "a control character in a string");
        if (c == '\\') {
            if (r->p >= r->end)
                break;
            char e = *r->p++;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = e;
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                if (r->end - r->p < 4)
                    return fail(r, "a truncated \\u escape");
                int v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(r->p[i]);
                    if (h < 0)
                        return fail(r, "a bad \\u escape");
                    v = v * 16 + h;
                }
                r->p += 4;
                c = v < 0x80 ? (char)v : '?';
                break;
            }
            default:
                return fail(r, "a bad escape in a string");
            }
        }
        if (len >= SPAN_STRING_MAX)
            return fail(r, "a string longer than the limit");
        if (out && len + 1 < size)
            out[len] = c;
        len++;
    }
    return fail(r, "an unterminated string");
}

#define BYTES(b) (0x0101010101010101ULL * (b)) /* b in each byte of a word */

/* An integer (the spec's int64 fields). Fractions and exponents are refused. */
static bool read_int(struct reader *r, int64_t *ret)
{
    skip_ws(r);
    bool negative = false;
    if (r->p < r->end && *r->p == '-') {
        negative = true;
        r->p++;
    }
    const char *start = r->p;
    uint64_t v = 0;
    /* eight digits at a time while they come (a timestamp has 16), as long as eight more cannot
     * overflow: a digit at a time is a branch each */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* the first digit is the lowest byte */
    uint64_t word;
    while (r->end - r->p >= 8 && v < 10000000000ULL) {
        memcpy(&word, r->p, 8);
        if (((word - BYTES('0')) | (word + BYTES(0x7f - '9'))) & BYTES(0x80))
            break; /* not eight digits */
        word = (word & BYTES(0x0f)) * 2561 >> 8;
        word = (word & 0x00ff00ff00ff00ffULL) * 6553601 >> 16;
        word = (word & 0x0000ffff0000ffffULL) * 42949672960001ULL >> 32;
        v = v * 100000000 + (word & 0xffffffffULL);
        r->p += 8;
    }
#endif
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return fail(r, "an integer too large");
        v = v * 10 + (uint64_t)(*r->p - '0');
        r->p++;
    }
    if (r->p == start)
        return fail(r, "a number was expected");
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
        return fail(r, "an integer was expected");
    if (v > (uint64_t)INT64_MAX)
        return fail(r, "an integer too large");
    *ret = negative ? -(int64_t)v : (int64_t)v;
    return true;
}

static bool read_literal(struct reader *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return fail(r, "an unexpected token");
    r->p += n;
    return true;
}

/* Skips any JSON value, checking its syntax. */
static bool skip_value(struct reader *r, int depth)
{
    if (depth > SPAN_DEPTH_MAX)
        return fail(r, "nesting deeper than the limit");
    skip_ws(r);
    if (r->p >= r->end)
        return fail(r, "a value was expected");
    char c = *r->p;
    const char *text;
    size_t len;
    if (c == '"')
        return read_text(r, NULL, 0, &text, &len);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        r->p++;
        if (eat(r, close))
            return true;
        for (;;) {
            if (c == '{') {
                if (!read_key(r, NULL, 0, &text, &len))
                    return false;
            }
            if (!skip_value(r, depth + 1))
                return false;
            int more = after_item(r, close);
            if (more <= 0)
                return more == 0 || fail(r, "',' was expected");
        }
    }
    if (c == 't')
        return read_literal(r, "true");
    if (c == 'f')
        return read_literal(r, "false");
    if (c == 'n')
        return read_literal(r, "null");
    /* a number: JSON's grammar */
    const char *s = r->p;
    if (*r->p == '-')
        r->p++;
    if (r->p >= r->end || !is_digit(*r->p))
        return fail(r, "an unexpected token");
    while (r->p < r->end && is_digit(*r->p))
        r->p++;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p >= r->end || !is_digit(*r->p))
            return fail(r, "a bad number");
        while (r->p < r->end && is_digit(*r->p))
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || !is_digit(*r->p))
            return fail(r, "a bad number");
        while (r->p < r->end && is_digit(*r->p))
            r->p++;
    }
    return r->p > s;
}

/* The type of the next value, without consuming it. */
static inline __attribute__((always_inline)) char peek(struct reader *r)
{
    return next_byte(r);
}

/* Per span: whether its fields are valid (syntax problems fail the whole reader instead). */
struct span_check {
    bool ok;
    char why[96];
};

static void invalid(struct span_check *c, const char *why)
{
    if (c->ok) {
        c->ok = false;
        snprintf(c->why, sizeof(c->why), "%s", why);
    }
}

#if defined(__SSE2__) && defined(__x86_64__)
/* 16 lowercase hex digits, checked and read in one 16-byte register: a tenth of the
 * instructions of two eight-digit words. */
static bool hex16(const char *s, uint64_t *ret)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)s);
    /* a byte minus '0' (or 'a') is a digit's value when at most 9 (a letter's minus 10 when at
     * most 5), as unsigned bytes: below '0' it wraps to a large one */
    __m128i d = _mm_sub_epi8(x, _mm_set1_epi8('0'));
    __m128i l = _mm_sub_epi8(x, _mm_set1_epi8('a'));
    __m128i is_d = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    __m128i is_l = _mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(5)), l);
    if (_mm_movemask_epi8(_mm_or_si128(is_d, is_l)) != 0xffff)
        return false;
    __m128i nibbles = _mm_or_si128(_mm_and_si128(is_d, d),
                                   _mm_and_si128(is_l, _mm_add_epi8(l, _mm_set1_epi8(10))));
    /* each 16-bit lane holds two digits, the first (the high nibble) in its low byte */
    __m128i high = _mm_slli_epi16(_mm_and_si128(nibbles, _mm_set1_epi16(0x00ff)), 4);
    __m128i bytes = _mm_or_si128(high, _mm_srli_epi16(nibbles, 8));
    uint64_t v = (uint64_t)_mm_cvtsi128_si64(_mm_packus_epi16(bytes, bytes));
    *ret = __builtin_bswap64(v); /* the first two digits are the top byte */
    return true;
}
#elif __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Eight lowercase hex digits at s, the first the lowest byte of a word, checked and read in one
 * go: a digit at a time through a table, the 64 digits of a span's ids made the bench's spans
 * parse in 260 ns instead of 249. */
static bool hex8(const char *s, uint32_t *ret)
{
    uint64_t x;
    memcpy(&x, s, 8);
    /* a byte below 0x80 plus a constant below 0x80 stays below 0x100: no carry reaches the next
     * byte, and the sum's top bit says whether the byte reached 0x80 minus the constant */
    uint64_t digit = (x + BYTES(0x80 - '0')) & ~(x + BYTES(0x80 - '9' - 1));
    uint64_t letter = (x + BYTES(0x80 - 'a')) & ~(x + BYTES(0x80 - 'f' - 1));
    if ((x & BYTES(0x80)) || ((digit | letter) & BYTES(0x80)) != BYTES(0x80))
        return false;
    uint64_t v = (x & BYTES(0x0f)) + ((letter >> 7) & BYTES(1)) * 9; /* a nibble a byte */
    v = ((v & 0x000f000f000f000fULL) << 4) | ((v >> 8) & 0x000f000f000f000fULL);
    v = ((v & 0x000000ff000000ffULL) << 8) | ((v >> 16) & 0x000000ff000000ffULL);
    *ret = (uint32_t)(((v & 0xffffULL) << 16) | ((v >> 32) & 0xffffULL));
    return true;
}

/* 16 lowercase hex digits. */
static bool hex16(const char *s, uint64_t *ret)
{
    uint32_t high, low;
    if (!hex8(s, &high) || !hex8(s + 8, &low))
        return false;
    *ret = (uint64_t)high << 32 | low;
    return true;
}
#else
/* A lowercase hex digit's value plus one, 0 for any other byte: ids are lowercase hex */
static const unsigned char hex_plus_one[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* 16 lowercase hex digits. */
static bool hex16(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    int bad = 0;
    for (int i = 0; i < 16; i++) {
        int h = hex_plus_one[(unsigned char)s[i]] - 1;
        bad |= h;
        v = v << 4 | (uint64_t)(h & 15);
    }
    *ret = v;
    return bad >= 0;
}
#endif

/* An id of 16 or 32 lowercase hex digits (the spec's), in two 64-bit halves. */
static bool parse_hex_id(const char *s, size_t len, uint64_t *hi, uint64_t *lo)
{
    if (len == 16) {
        *hi = 0;
        return hex16(s, lo);
    }
    return len == 32 && hex16(s, hi) && hex16(s + 16, lo);
}

static bool read_id(struct reader *r, struct span_check *c, bool trace, uint64_t *hi, uint64_t *lo,
                    const char *what)
{
    if (peek(r) != '"') {
        invalid(c, what);
        return skip_value(r, 1);
    }
    /* the id as instrumentation writes it, 16 or 32 hex digits and the closing quote, is read
     * where it lies: a scan for the string's end mispredicts where it stops, an id at a time */
    const char *p = r->p + 1;
    ptrdiff_t fixed = trace && r->end - p > 32 && p[32] == '"' ? 32 : 16;
    uint64_t fast_hi, fast_lo;
    if (r->end - p > fixed && p[fixed] == '"' &&
        parse_hex_id(p, (size_t)fixed, &fast_hi, &fast_lo) && (fast_hi || fast_lo)) {
        *hi = fast_hi;
        *lo = fast_lo;
        r->p = p + fixed + 1;
        return true;
    }
    char buf[40];
    const char *text;
    size_t len;
    if (!read_text(r, buf, sizeof(buf), &text, &len))
        return false;
    uint64_t h = 0, l = 0;
    if (len >= sizeof(buf) || !parse_hex_id(text, len, &h, &l) || (!trace && len != 16) ||
        (h == 0 && l == 0))
        invalid(c, what);
    *hi = h;
    *lo = l;
    return true;
}

/* {"serviceName": "...", ...}: the service name, lowercased, and its hash (emp_hash_text). */
static bool read_endpoint(struct reader *r, struct span_check *c, char *service, uint64_t *hash)
{
    if (peek(r) != '{') {
        if (peek(r) == 'n')
            return read_literal(r, "null");
        invalid(c, "an endpoint that is not an object");
        return skip_value(r, 1);
    }
    r->p++;
    if (eat(r, '}'))
        return true;
    for (;;) {
        char scratch[32];
        const char *key;
        size_t klen;
        if (!read_key(r, scratch, sizeof(scratch), &key, &klen))
            return false;
        if (KEY_IS(key, klen, "serviceName") && peek(r) == '"') {
            const char *name;
            size_t len;
            if (!read_text(r, service, SPAN_SERVICE_MAX, &name, &len))
                return false;
            if (len >= SPAN_SERVICE_MAX) {
                invalid(c, "a service name longer than the limit");
                len = 0;
            }
            uint64_t h = EMP_HASH_INIT;
            for (size_t i = 0; i < len; i++) { /* name may be service itself */
                service[i] = (char)tolower((unsigned char)name[i]);
                h = emp_hash_byte(h, (unsigned char)service[i]);
            }
            service[len] = '\0';
            *hash = h;
        } else if (!skip_value(r, 2)) {
            return false;
        }
        int more = after_item(r, '}');
        if (more <= 0)
            return more == 0 || fail(r, "',' was expected");
    }
}

static bool read_tags(struct reader *r, struct span_check *c, struct span *s)
{
    if (peek(r) != '{') {
        invalid(c, "tags that are not an object");
        return skip_value(r, 1);
    }
    r->p++;
    if (eat(r, '}'))
        return true;
    size_t tags = 0;
    for (;;) {
        char scratch[32];
        const char *key, *value;
        size_t klen, vlen;
        if (!read_key(r, scratch, sizeof(scratch), &key, &klen))
            return false;
        if (++tags > SPAN_TAGS_MAX)
            invalid(c, "more tags than the limit");
        if (peek(r) != '"') {
            invalid(c, "a tag value that is not a string");
            if (!skip_value(r, 2))
                return false;
        } else if (KEY_IS(key, klen, "error")) {
            if (!read_text(r, NULL, 0, &value, &vlen))
                return false;
            s->error = true; /* any value: Zipkin's rule */
        } else if (KEY_IS(key, klen, "http.status_code")) {
            char v[16];
            if (!read_text(r, v, sizeof(v), &value, &vlen))
                return false;
            int code = 0;
            for (size_t i = 0; i < vlen && i < sizeof(v) - 1 && is_digit(value[i]); i++)
                code = code * 10 + (value[i] - '0');
            s->http_status = code < 1000 ? code : 0;
        } else if (!read_text(r, NULL, 0, &value, &vlen)) {
            return false;
        }
        int more = after_item(r, '}');
        if (more <= 0)
            return more == 0 || fail(r, "',' was expected");
    }
}

static bool read_bool(struct reader *r, struct span_check *c, bool *out)
{
    char p = peek(r);
    if (p == 't') {
        *out = true;
        return read_literal(r, "true");
    }
    if (p == 'f') {
        *out = false;
        return read_literal(r, "false");
    }
    invalid(c, "a boolean was expected");
    return skip_value(r, 1);
}

static bool read_integer_field(struct reader *r, struct span_check *c, int64_t *out,
                               const char *what)
{
    char p = peek(r);
    if (p != '-' && !(p >= '0' && p <= '9')) {
        invalid(c, what);
        return skip_value(r, 1);
    }
    if (!read_int(r, out))
        return false;
    return true;
}

/* One span object. Returns false on a syntax error (the message is bad); c says whether the
 * span itself is valid. */
static bool read_span(struct reader *r, struct span *s, struct span_check *c)
{
    _Static_assert(offsetof(struct span, remote_service) ==
                           offsetof(struct span, local_service) + SPAN_SERVICE_MAX &&
                       offsetof(struct span, remote_service) + SPAN_SERVICE_MAX ==
                           sizeof(struct span),
                   "the two names end struct span: what comes before them is cleared at once");
    memset(s, 0, offsetof(struct span, local_service)); /* the names: only their first byte */
    s->local_service[0] = s->remote_service[0] = '\0';
    s->local_hash = s->remote_hash = EMP_HASH_INIT;
    c->ok = true;
    c->why[0] = '\0';
    if (peek(r) != '{') {
        invalid(c, "a span that is not an object");
        return skip_value(r, 0);
    }
    r->p++;
    bool has_trace = false, has_id = false;
    if (!eat(r, '}')) {
        for (;;) {
            char scratch[32];
            const char *key;
            size_t klen;
            if (!read_key(r, scratch, sizeof(scratch), &key, &klen))
                return false;
            uint64_t unused;
            bool ok;
            if (KEY_IS(key, klen, "traceId")) {
                ok = read_id(r, c, true, &s->trace_hi, &s->trace_lo, "a bad traceId");
                has_trace = true;
            } else if (KEY_IS(key, klen, "id")) {
                ok = read_id(r, c, false, &unused, &s->id, "a bad id");
                has_id = true;
            } else if (KEY_IS(key, klen, "parentId")) {
                ok = read_id(r, c, false, &unused, &s->parent_id, "a bad parentId");
                s->has_parent = true;
            } else if (KEY_IS(key, klen, "kind")) {
                if (peek(r) != '"') {
                    invalid(c, "a kind that is not a string");
                    ok = skip_value(r, 1);
                } else {
                    char kind_scratch[16];
                    const char *kind;
                    size_t len;
                    ok = read_text(r, kind_scratch, sizeof(kind_scratch), &kind, &len);
                    if (ok && KEY_IS(kind, len, "CLIENT"))
                        s->kind = SPAN_CLIENT;
                    else if (ok && KEY_IS(kind, len, "SERVER"))
                        s->kind = SPAN_SERVER;
                    else if (ok && KEY_IS(kind, len, "PRODUCER"))
                        s->kind = SPAN_PRODUCER;
                    else if (ok && KEY_IS(kind, len, "CONSUMER"))
                        s->kind = SPAN_CONSUMER;
                    else if (ok)
                        invalid(c, "an unknown kind");
                }
            } else if (KEY_IS(key, klen, "timestamp")) {
                ok = read_integer_field(r, c, &s->timestamp_us, "a bad timestamp");
                if (ok && s->timestamp_us < 0)
                    invalid(c, "a negative timestamp");
            } else if (KEY_IS(key, klen, "duration")) {
                ok = read_integer_field(r, c, &s->duration_us, "a bad duration");
                if (ok && s->duration_us < 0)
                    invalid(c, "a negative duration");
            } else if (KEY_IS(key, klen, "localEndpoint")) {
                ok = read_endpoint(r, c, s->local_service, &s->local_hash);
            } else if (KEY_IS(key, klen, "remoteEndpoint")) {
                ok = read_endpoint(r, c, s->remote_service, &s->remote_hash);
            } else if (KEY_IS(key, klen, "tags")) {
                ok = read_tags(r, c, s);
            } else if (KEY_IS(key, klen, "shared")) {
                ok = read_bool(r, c, &s->shared);
            } else {
                ok = skip_value(r, 1); /* name, annotations, debug, ... */
            }
            if (!ok)
                return false;
            int more = after_item(r, '}');
            if (more < 0)
                return fail(r, "',' was expected between fields");
            if (!more)
                break;
        }
    }
    if (!has_trace || !has_id)
        invalid(c, "a span without traceId or id");
    if (!s->local_service[0])
        invalid(c, "a span without localEndpoint.serviceName");
    return true;
}

#define PREFETCH_AHEAD 1024 /* bytes: about three spans on */

void span_parse_list(const char *buf, size_t len, struct span *spans,
                     void (*deliver)(void *ctx, const struct span *spans, size_t count), void *ctx,
                     struct span_parse_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct reader r = {.p = buf, .end = buf + len};
    size_t count = 0, bad = 0;
    if (len > SPAN_MESSAGE_MAX) {
        fail(&r, "a message larger than the limit");
        goto bad;
    }
    if (!eat(&r, '[')) {
        fail(&r, "a list of spans was expected");
        goto bad;
    }
    if (!eat(&r, ']')) {
        for (;;) {
            if (count + bad >= SPAN_LIST_MAX) {
                fail(&r, "more spans in one message than the limit");
                goto bad;
            }
            /* a message is read once, from memory the cache does not hold: the lines of a span
             * a few on (some 350 bytes) are asked for before the parse gets there */
            for (int line = 0; line < 6; line++)
                if (r.end - r.p > PREFETCH_AHEAD + line * 64)
                    __builtin_prefetch(r.p + PREFETCH_AHEAD + line * 64);
            struct span_check check;
            if (!read_span(&r, &spans[count], &check))
                goto bad;
            if (check.ok)
                count++;
            else
                bad++;
            int more = after_item(&r, ']');
            if (more < 0) {
                fail(&r, "',' was expected between spans");
                goto bad;
            }
            if (!more)
                break;
        }
    }
    skip_ws(&r);
    if (r.p != r.end) {
        fail(&r, "text after the list");
        goto bad;
    }
    ret->spans = count;
    ret->bad_spans = bad;
    if (count)
        deliver(ctx, spans, count);
    return;
bad:
    ret->bad_message = true;
    snprintf(ret->why, sizeof(ret->why), "%s (byte %zu)", r.why, (size_t)(r.p - buf));
}
