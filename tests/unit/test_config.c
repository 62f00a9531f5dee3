/* SPDX-License-Identifier: Apache-2.0 */
/* emp-server's settings: defaults, environment variables, flags (which win), and clear refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static int parse(char **argv, struct server_config *config, enum config_outcome *outcome,
                 struct emp_error *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return config_parse(argc, argv, config, outcome, err);
}

static void test_defaults(void **state)
{
    unsetenv("EMP_LISTEN");
    unsetenv("EMP_THREADS");
    setenv("HOME", "/home/tester", 1);
    unsetenv("XDG_STATE_HOME");
    struct server_config config;
    enum config_outcome outcome;
    struct emp_error err = {0};
    char *argv[] = {"emp-server", NULL};
    assert_int_equal(parse(argv, &config, &outcome, &err), 0);
    assert_int_equal(outcome, CONFIG_RUN);
    assert_string_equal(config.listen_host, "127.0.0.1");
    assert_int_equal(config.listen_port, 7420);
    assert_null(config.redis_url);
    assert_string_equal(config.cluster, "local");
    assert_string_equal(config.state_dir, "/home/tester/.local/state/emp");
    assert_int_equal(config.token_ttl_s, 24 * 3600);
    assert_true(config.threads >= 1);
    config_free(&config);
}

static void test_env_and_flags(void **state)
{
    setenv("EMP_LISTEN", "0.0.0.0:9000", 1);
    setenv("EMP_TOKEN_TTL", "2h", 1);
    setenv("EMP_REDIS_URL", "redis://r:6379", 1);
    struct server_config config;
    enum config_outcome outcome;
    struct emp_error err = {0};
    char *argv[] = {"emp-server", "--listen", "[::1]:8000", "--threads=3", NULL};
    assert_int_equal(parse(argv, &config, &outcome, &err), 0);
    assert_string_equal(config.listen_host, "::1"); /* the flag wins over EMP_LISTEN */
    assert_int_equal(config.listen_port, 8000);
    assert_int_equal(config.threads, 3);
    assert_int_equal(config.token_ttl_s, 7200);
    assert_string_equal(config.redis_url, "redis://r:6379");
    config_free(&config);
    unsetenv("EMP_LISTEN");
    unsetenv("EMP_TOKEN_TTL");
    unsetenv("EMP_REDIS_URL");
}

static void refused(char **argv, const char *needle)
{
    struct server_config config;
    enum config_outcome outcome;
    struct emp_error err = {0};
    assert_int_equal(parse(argv, &config, &outcome, &err), -EINVAL);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
    config_free(&config);
}

static void test_refusals(void **state)
{
    refused((char *[]){"emp-server", "--listen", "7420", NULL}, "HOST:PORT");
    refused((char *[]){"emp-server", "--listen", "h:70000", NULL}, "HOST:PORT");
    refused((char *[]){"emp-server", "--threads", "many", NULL}, "integer from 0 to 256");
    refused((char *[]){"emp-server", "--token-ttl", "5", NULL}, "from 60s");
    refused((char *[]){"emp-server", "--colour", NULL}, "unknown option '--colour'");
    refused((char *[]){"emp-server", "--cluster", NULL}, "needs a value");
    refused((char *[]){"emp-server", "serve", NULL}, "unexpected argument 'serve'");
    setenv("EMP_MAX_APPS_PER_USER", "0", 1);
    refused((char *[]){"emp-server", NULL}, "environment variable EMP_MAX_APPS_PER_USER");
    unsetenv("EMP_MAX_APPS_PER_USER");
}

static void test_help(void **state)
{
    struct server_config config;
    enum config_outcome outcome;
    struct emp_error err = {0};
    assert_int_equal(parse((char *[]){"emp-server", "--help", NULL}, &config, &outcome, &err), 0);
    assert_int_equal(outcome, CONFIG_HELP);
    config_free(&config);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    config_print_help(out);
    fclose(out);
    /* every flag and its variable */
    assert_non_null(strstr(text, "--redis-url URL"));
    assert_non_null(strstr(text, "EMP_REDIS_URL"));
    assert_non_null(strstr(text, "--scheduler-token-file FILE"));
    assert_non_null(strstr(text, "default 127.0.0.1:7420"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_flags),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
