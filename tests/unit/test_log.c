/* SPDX-License-Identifier: Apache-2.0 */
/* Log lines: one line per event, logfmt, values a user controls quoted so that they cannot forge
 * a line or a key. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "emp/log.h"

/* Runs fn with stderr redirected, and returns what it wrote (static buffer). */
static const char *capture(void (*fn)(void))
{
    static char out[4096];
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(pipe_fds[1]);
    ssize_t n = read(pipe_fds[0], out, sizeof(out) - 1);
    close(pipe_fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void log_hostile(void)
{
    char quoted[128];
    log_set_request_id("abc123");
    log_msg(LOG_INFO, "request", "path=%s",
            log_quote(quoted, sizeof(quoted), "/x\nlevel=error msg=forged \"q\""));
    log_set_request_id(NULL);
    log_msg(LOG_DEBUG, "hidden", NULL);
}

static void test_line_format(void **state)
{
    log_set_level(LOG_INFO);
    const char *out = capture(log_hostile);
    /* one line: the newline of the value is escaped, quotes too */
    assert_non_null(strstr(out, " level=info req=abc123 msg=request path=\"/x\\x0alevel=error "
                                "msg=forged \\\"q\\\"\"\n"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    assert_int_equal(strncmp(out, "time=", 5), 0);
    assert_null(strstr(out, "hidden")); /* below the level */
}

static void test_quote(void **state)
{
    char buf[32];
    assert_string_equal(log_quote(buf, sizeof(buf), "plain"), "plain");
    assert_string_equal(log_quote(buf, sizeof(buf), ""), "\"\"");
    assert_string_equal(log_quote(buf, sizeof(buf), "a=b"), "\"a=b\"");
    /* too long: cut, still quoted and terminated */
    log_quote(buf, sizeof(buf), "a b c d e f g h i j k l m n o p q r s t u v w x y z");
    assert_true(strlen(buf) < sizeof(buf));
    assert_int_equal(buf[0], '"');
}

static void test_levels(void **state)
{
    enum log_level level;
    assert_int_equal(log_level_parse("warn", &level), 0);
    assert_int_equal(level, LOG_WARN);
    assert_int_equal(log_level_parse("WARNING", &level), 0);
    assert_int_equal(log_level_parse("loud", &level), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
