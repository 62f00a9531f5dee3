/* SPDX-License-Identifier: Apache-2.0 */
/* The value syntax of quality metrics, as PRODUCT.md gives it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "emp/quality.h"

static struct qm_target parse_ok(enum qm_kind kind, const char *values)
{
    struct qm_target t;
    struct emp_error err = {0};
    int r = qm_parse(kind, values, "values", &t, &err);
    if (r != 0)
        fail_msg("'%s' was refused: %s", values, err.message);
    return t;
}

static void refused(enum qm_kind kind, const char *values)
{
    struct qm_target t;
    struct emp_error err = {0};
    if (qm_parse(kind, values, "values", &t, &err) == 0)
        fail_msg("'%s' was accepted for %s", values, qm_kind_name(kind));
    /* the message quotes the input and gives the accepted form */
    assert_non_null(strstr(err.message, qm_accepted_form(kind)));
    assert_string_equal(err.field, "values");
}

static void test_latency(void **state)
{
    struct qm_target t = parse_ok(QM_LATENCY, "p95 < 200ms");
    assert_int_equal(t.percentile, 95);
    assert_true(t.threshold_ms == 200.0);
    t = parse_ok(QM_LATENCY, "p99<1.5s");
    assert_int_equal(t.percentile, 99);
    assert_true(t.threshold_ms == 1500.0);
    t = parse_ok(QM_LATENCY, "  p50 <  30 ms ");
    assert_int_equal(t.percentile, 50);
    refused(QM_LATENCY, "p95 > 200ms");
    refused(QM_LATENCY, "p75 < 200ms");
    refused(QM_LATENCY, "p95 < 200");
    refused(QM_LATENCY, "p95 < -1ms");
    refused(QM_LATENCY, "p95 < 0ms");
    refused(QM_LATENCY, "p95 < 200ms extra");
    refused(QM_LATENCY, "p95 < 1e3ms");
    refused(QM_LATENCY, "");
}

static void test_throughput(void **state)
{
    struct qm_target t = parse_ok(QM_THROUGHPUT, "100 rps");
    assert_true(t.rps == 100.0);
    t = parse_ok(QM_THROUGHPUT, "2.5rps");
    assert_true(t.rps == 2.5);
    refused(QM_THROUGHPUT, "100");
    refused(QM_THROUGHPUT, "0 rps");
    refused(QM_THROUGHPUT, "lots rps");
}

static void test_availability_and_errors(void **state)
{
    struct qm_target t = parse_ok(QM_AVAILABILITY, ">= 99.9%");
    assert_true(t.percent > 99.89 && t.percent < 99.91);
    t = parse_ok(QM_ERROR_RATE, "< 1%");
    assert_true(t.percent == 1.0);
    refused(QM_AVAILABILITY, "99.9%");
    refused(QM_AVAILABILITY, ">= 101%");
    refused(QM_AVAILABILITY, ">= 0%");
    refused(QM_ERROR_RATE, "<= 1%");
    refused(QM_ERROR_RATE, "< 1");
}

static void test_kinds(void **state)
{
    enum qm_kind kind;
    assert_int_equal(qm_kind_parse("latency", &kind), 0);
    assert_int_equal(kind, QM_LATENCY);
    assert_int_equal(qm_kind_parse("error_rate", &kind), 0);
    assert_int_equal(kind, QM_ERROR_RATE);
    assert_int_equal(qm_kind_parse("cpu", &kind), -EINVAL);
    assert_int_equal(qm_kind_parse("Latency", &kind), -EINVAL);
}

static void test_long_values(void **state)
{
    char values[200];
    memset(values, ' ', sizeof(values) - 1);
    values[sizeof(values) - 1] = '\0';
    memcpy(values, "100 rps", 7);
    struct qm_target t;
    struct emp_error err = {0};
    assert_int_equal(qm_parse(QM_THROUGHPUT, values, "values", &t, &err), -EINVAL);
    assert_non_null(strstr(err.message, "at most 64"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_throughput),
        cmocka_unit_test(test_availability_and_errors),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_long_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
