/* SPDX-License-Identifier: Apache-2.0 */
/* Timestamps of the API and the durations of flags. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "emp/timeutil.h"

static void test_rfc3339(void **state)
{
    char buf[TIME_RFC3339_LEN];
    assert_string_equal(time_format_rfc3339(1796325733123, buf), "2026-12-03T19:22:13.123Z");
    int64_t ms;
    assert_int_equal(time_parse_rfc3339("2026-12-03T19:22:13.123Z", &ms), 0);
    assert_int_equal(ms, 1796325733123);
    assert_int_equal(time_parse_rfc3339("2026-12-03T19:22:13Z", &ms), 0);
    assert_int_equal(ms, 1796325733000);
    assert_int_equal(time_parse_rfc3339("2026-12-03 19:22:13", &ms), -EINVAL);
    assert_int_equal(time_parse_rfc3339("2026-12-03T19:22:13+01:00", &ms), -EINVAL);
    int64_t now = time_now_ms();
    assert_int_equal(time_parse_rfc3339(time_format_rfc3339(now, buf), &ms), 0);
    assert_int_equal(ms, now);
}

static void test_durations(void **state)
{
    int64_t s;
    assert_int_equal(time_parse_duration("90", &s), 0);
    assert_int_equal(s, 90);
    assert_int_equal(time_parse_duration("15m", &s), 0);
    assert_int_equal(s, 900);
    assert_int_equal(time_parse_duration("24h", &s), 0);
    assert_int_equal(s, 86400);
    assert_int_equal(time_parse_duration("7d", &s), 0);
    assert_int_equal(s, 7 * 86400);
    assert_int_equal(time_parse_duration("-5s", &s), -EINVAL);
    assert_int_equal(time_parse_duration("5w", &s), -EINVAL);
    assert_int_equal(time_parse_duration("", &s), -EINVAL);
    assert_int_equal(time_parse_duration("99999999999999999d", &s), -EINVAL);
}

/* A deadline is that far ahead of the wall clock, its nanoseconds normalised. */
static void test_deadline(void **state)
{
    for (int64_t ms = 0; ms < 2500; ms += 7) {
        struct timespec before, after;
        clock_gettime(CLOCK_REALTIME, &before);
        struct timespec d = time_deadline(ms);
        clock_gettime(CLOCK_REALTIME, &after);
        assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
        int64_t d_ns = (int64_t)d.tv_sec * 1000000000LL + d.tv_nsec;
        assert_true(d_ns >= (int64_t)before.tv_sec * 1000000000LL + before.tv_nsec + ms * 1000000);
        assert_true(d_ns <= (int64_t)after.tv_sec * 1000000000LL + after.tv_nsec + ms * 1000000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
