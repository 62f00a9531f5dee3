/* SPDX-License-Identifier: Apache-2.0 */
/* The value syntax of quality metrics, as PRODUCT.md states it. Whitespace between tokens is
 * optional
 * ("p95<200ms" and "p95 < 200 ms" are the same target). */
#include "emp/quality.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *form;
} kinds[QM__COUNT] = {
    [QM_LATENCY] = {"latency", "'p50|p90|p95|p99 < N ms|s', for example 'p95 < 200ms'"},
    [QM_THROUGHPUT] = {"throughput", "'N rps', for example '100 rps'"},
    [QM_AVAILABILITY] = {"availability", "'>= N%' with 0 < N <= 100, for example '>= 99.9%'"},
    [QM_ERROR_RATE] = {"error_rate", "'< N%' with 0 < N <= 100, for example '< 1%'"},
};

int qm_kind_parse(const char *name, enum qm_kind *ret_kind)
{
    for (int i = 0; i < QM__COUNT; i++) {
        if (strcmp(name, kinds[i].name) == 0) {
            *ret_kind = (enum qm_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *qm_kind_name(enum qm_kind kind)
{
    return (unsigned)kind < QM__COUNT ? kinds[kind].name : "unknown";
}

const char *qm_known_names(void)
{
    return "latency, throughput, availability, error_rate";
}

const char *qm_accepted_form(enum qm_kind kind)
{
    return (unsigned)kind < QM__COUNT ? kinds[kind].form : "";
}

static void skip_spaces(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static bool eat(const char **p, const char *token)
{
    size_t len = strlen(token);
    if (strncmp(*p, token, len) != 0)
        return false;
    *p += len;
    return true;
}

/* A plain decimal number: digits with an optional fraction, no sign, no exponent, no inf/nan. */
static bool parse_number(const char **p, double *ret)
{
    const char *s = *p;
    const char *q = s;
    while (*q >= '0' && *q <= '9')
        q++;
    if (*q == '.') {
        q++;
        if (!(*q >= '0' && *q <= '9'))
            return false;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (q == s || q - s > 24)
        return false;
    char buf[32];
    memcpy(buf, s, (size_t)(q - s));
    buf[q - s] = '\0';
    *ret = strtod(buf, NULL);
    *p = q;
    return isfinite(*ret);
}

static int parse_latency(const char *p, struct qm_target *t)
{
    skip_spaces(&p);
    if (*p != 'p')
        return -EINVAL;
    p++;
    char *end;
    long pct = strtol(p, &end, 10);
    if (end == p || (pct != 50 && pct != 90 && pct != 95 && pct != 99))
        return -EINVAL;
    p = end;
    skip_spaces(&p);
    if (!eat(&p, "<"))
        return -EINVAL;
    skip_spaces(&p);
    double n;
    if (!parse_number(&p, &n) || n <= 0)
        return -EINVAL;
    skip_spaces(&p);
    double scale;
    if (eat(&p, "ms"))
        scale = 1.0;
    else if (eat(&p, "s"))
        scale = 1000.0;
    else
        return -EINVAL;
    skip_spaces(&p);
    if (*p)
        return -EINVAL;
    t->percentile = (int)pct;
    t->threshold_ms = n * scale;
    return t->threshold_ms <= 3600.0 * 1000.0 ? 0 : -EINVAL;
}

static int parse_throughput(const char *p, struct qm_target *t)
{
    skip_spaces(&p);
    double n;
    if (!parse_number(&p, &n) || n <= 0 || n > 1e9)
        return -EINVAL;
    skip_spaces(&p);
    if (!eat(&p, "rps"))
        return -EINVAL;
    skip_spaces(&p);
    if (*p)
        return -EINVAL;
    t->rps = n;
    return 0;
}

static int parse_percent(const char *p, const char *op, bool exclusive_zero, struct qm_target *t)
{
    skip_spaces(&p);
    if (!eat(&p, op))
        return -EINVAL;
    skip_spaces(&p);
    double n;
    if (!parse_number(&p, &n) || n > 100.0 || (exclusive_zero && n <= 0))
        return -EINVAL;
    skip_spaces(&p);
    if (!eat(&p, "%"))
        return -EINVAL;
    skip_spaces(&p);
    if (*p)
        return -EINVAL;
    t->percent = n;
    return 0;
}

int qm_parse(enum qm_kind kind, const char *values, const char *field, struct qm_target *ret,
             struct emp_error *err)
{
    struct qm_target t = {.kind = kind};
    int r = -EINVAL;
    size_t len = strlen(values);
    if (len <= QM_VALUES_MAX) {
        switch (kind) {
        case QM_LATENCY:
            r = parse_latency(values, &t);
            break;
        case QM_THROUGHPUT:
            r = parse_throughput(values, &t);
            break;
        case QM_AVAILABILITY:
            r = parse_percent(values, ">=", true, &t);
            break;
        case QM_ERROR_RATE:
            r = parse_percent(values, "<", true, &t);
            break;
        default:
            break;
        }
    }
    if (r < 0) {
        if (len > QM_VALUES_MAX)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, field,
                                 "%s values are %zu characters long: at most %d are accepted, in "
                                 "the form %s",
                                 qm_kind_name(kind), len, QM_VALUES_MAX, qm_accepted_form(kind));
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, field,
                             "%s values '%s' are not valid: use %s", qm_kind_name(kind), values,
                             qm_accepted_form(kind));
    }
    *ret = t;
    return 0;
}
