/* SPDX-License-Identifier: Apache-2.0 */
/* The naming rules: what a user may call an account, an app and an env var. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "emp/names.h"

static void test_dns_labels(void **state)
{
    assert_true(names_is_dns_label("songs-ms", 40));
    assert_true(names_is_dns_label("a", 40));
    assert_true(names_is_dns_label("a1-b2", 40));
    assert_false(names_is_dns_label("", 40));
    assert_false(names_is_dns_label("songs_ms", 40));
    assert_false(names_is_dns_label("Songs", 40));
    assert_false(names_is_dns_label("1songs", 40));
    assert_false(names_is_dns_label("songs-", 40));
    assert_false(names_is_dns_label("-songs", 40));
    assert_false(names_is_dns_label("so ngs", 40));
    char forty[41], forty_one[42];
    memset(forty, 'a', 40);
    forty[40] = '\0';
    memset(forty_one, 'a', 41);
    forty_one[41] = '\0';
    assert_true(names_is_dns_label(forty, 40));
    assert_false(names_is_dns_label(forty_one, 40));
}

static void test_check_label_messages(void **state)
{
    struct emp_error err = {0};
    assert_int_equal(names_check_label("name", "songs_ms", &err), -EINVAL);
    assert_int_equal(err.code, EMP_ERR_INVALID_FIELD);
    assert_string_equal(err.field, "name");
    /* quotes the input and suggests a spelling that would be accepted */
    assert_non_null(strstr(err.message, "'songs_ms'"));
    assert_non_null(strstr(err.message, "(for example 'songs-ms')"));

    emp_error_clear(&err);
    assert_int_equal(names_check_label("username", "9Lives", &err), -EINVAL);
    assert_non_null(strstr(err.message, "'a-9lives'"));

    emp_error_clear(&err);
    assert_int_equal(names_check_label("name", "0f8fad5b-d9cb-469f-a165-70867728950e", &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "app id"));

    emp_error_clear(&err);
    assert_int_equal(names_check_label("name", "", &err), -EINVAL);
    assert_non_null(strstr(err.message, "must not be empty"));

    emp_error_clear(&err);
    assert_int_equal(names_check_label("name", "songs-ms", &err), 0);
    assert_false(emp_error_is_set(&err));
}

static void test_env_names(void **state)
{
    assert_true(names_is_env_name("DB_HOST"));
    assert_true(names_is_env_name("my.var-1"));
    assert_true(names_is_env_name("_x"));
    assert_false(names_is_env_name("1X"));
    assert_false(names_is_env_name("A B"));
    assert_false(names_is_env_name("A=B"));
    assert_false(names_is_env_name(""));
    assert_true(names_is_reserved_env("PORT"));
    assert_true(names_is_reserved_env("KAFKAADDRESS"));
    assert_true(names_is_reserved_env("EMP_APP_ID"));
    assert_false(names_is_reserved_env("PORTS"));
    assert_false(names_is_reserved_env("EMPTY"));
}

static void test_uuids(void **state)
{
    assert_true(names_is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert_false(names_is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
    assert_false(names_is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
    assert_false(names_is_uuid("0f8fad5bxd9cb-469f-a165-70867728950e"));
    assert_false(names_is_uuid("songs-ms"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns_labels),
        cmocka_unit_test(test_check_label_messages),
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_uuids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
