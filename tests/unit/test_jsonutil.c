/* SPDX-License-Identifier: Apache-2.0 */
/* JSON helpers: where a parse failed, which fields are unknown, and the API's error body. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emp/jsonutil.h"

static void test_parse_errors(void **state)
{
    struct emp_error err = {0};
    assert_null(jsonu_parse("{\"a\":\n 1,}", 10, &err));
    assert_int_equal(err.code, EMP_ERR_MALFORMED_JSON);
    assert_non_null(strstr(err.message, "line 2"));
    emp_error_clear(&err);
    assert_null(jsonu_parse("", 0, &err));
    assert_non_null(strstr(err.message, "empty"));
    emp_error_clear(&err);
    assert_null(jsonu_parse("{\"a\":1,\"a\":2}", 13, &err));
    assert_non_null(strstr(err.message, "duplicate"));
    json_t *ok = jsonu_parse("{\"a\":1}", 7, &err);
    assert_non_null(ok);
    json_decref(ok);
}

static void test_unknown_fields(void **state)
{
    static const char *const known[] = {"min", "max", NULL};
    json_t *obj = json_pack("{s:i, s:i, s:i}", "min", 1, "mx", 2, "maxx", 3);
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(jsonu_check_known(obj, known, "replicas.", &errs), 2);
    assert_int_equal(errs.count, 2);
    assert_int_equal(errs.items[0].code, EMP_ERR_UNKNOWN_FIELD);
    assert_string_equal(errs.items[0].field, "replicas.mx");
    assert_non_null(strstr(errs.items[0].message, "accepted fields of replicas are min, max"));
    json_decref(obj);
}

static void test_error_body_round_trip(void **state)
{
    struct emp_error err = {0};
    emp_error_set(&err, -EINVAL, EMP_ERR_INVALID_FIELD, "port", "port 0 is out of range");
    struct emp_errlist details;
    emp_errlist_init(&details);
    emp_errlist_add(&details, EMP_ERR_INVALID_FIELD, "port", "port 0 is out of range");
    emp_errlist_add(&details, EMP_ERR_MISSING_FIELD, "name", "name is missing");
    json_t *body = jsonu_error_body(&err, &details);
    char *text = jsonu_dump(body);
    assert_string_equal(text, "{\"error\":{\"code\":\"invalid_field\",\"message\":\"port 0 is out "
                              "of range\",\"field\":\"port\",\"details\":[{\"code\":\"invalid_"
                              "field\",\"message\":\"port 0 is out of range\",\"field\":\"port\"},"
                              "{\"code\":\"missing_field\",\"message\":\"name is missing\","
                              "\"field\":\"name\"}]}}");
    struct emp_error back = {0};
    assert_int_equal(jsonu_error_from_body(body, &back), 0);
    assert_int_equal(back.code, EMP_ERR_INVALID_FIELD);
    assert_string_equal(back.field, "port");
    assert_string_equal(back.message, "port 0 is out of range");
    free(text);
    json_decref(body);
}

static void test_first_error_wins(void **state)
{
    struct emp_error err = {0};
    emp_error_set(&err, -EIO, EMP_ERR_STORE_UNAVAILABLE, NULL, "redis is down");
    emp_error_set(&err, -EINVAL, EMP_ERR_INTERNAL, NULL, "something later");
    emp_error_prefix(&err, "deploy app '%s': ", "x");
    assert_int_equal(err.code, EMP_ERR_STORE_UNAVAILABLE);
    assert_string_equal(err.message, "deploy app 'x': redis is down");
    assert_int_equal(emp_errcode_http_status(err.code), 503);
    assert_string_equal(emp_errcode_name(EMP_ERR_THROTTLED), "too_many_requests");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_error_body_round_trip),
        cmocka_unit_test(test_first_error_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
