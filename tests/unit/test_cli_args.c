/* SPDX-License-Identifier: Apache-2.0 */
/* The command line of emp: every usage mistake is exit status 2 with a message that names it,
 * options go before or after the command words, and --help wins over other mistakes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "args.h"
#include "failure.h"

/* Parses a NULL-terminated list of words after "emp". Returns args_parse()'s result. */
static int parse(struct args_invocation *inv, struct failure *fail, ...)
{
    static char *argv[ARGS_COUNT_MAX + 8];
    int argc = 0;
    argv[argc++] = "emp";
    va_list ap;
    va_start(ap, fail);
    for (char *word; (word = va_arg(ap, char *));)
        argv[argc++] = word;
    va_end(ap);
    argv[argc] = NULL;
    failure_init(fail);
    return args_parse(argc, argv, inv, fail);
}

/* The line must be refused with exit status 2 and a message holding mentioned. */
#define assert_usage_error(mentioned, ...)                                                         \
    do {                                                                                           \
        struct args_invocation inv_;                                                               \
        struct failure fail_;                                                                      \
        assert_true(parse(&inv_, &fail_, __VA_ARGS__, NULL) < 0);                                  \
        assert_int_equal(failure_exit_status(&fail_), 2);                                          \
        if (!strstr(fail_.error.message, mentioned))                                               \
            fail_msg("'%s' is not in '%s'", mentioned, fail_.error.message);                       \
        failure_clear(&fail_);                                                                     \
    } while (0)

static void test_usage_errors_exit_2(void **state)
{
    assert_usage_error("frobnicate", "frobnicate");
    assert_usage_error("did you mean `emp list`", "lsit");
    assert_usage_error("--frobnicate", "list", "--frobnicate");
    assert_usage_error("--wait", "list", "--wait");       /* another command's option */
    assert_usage_error("missing APP", "info");            /* missing argument */
    assert_usage_error("missing N", "scale", "songs-ms"); /* the second one */
    assert_usage_error("missing VALUES", "update", "metrics", "a", "latency");
    assert_usage_error("'extra'", "info", "a", "extra"); /* too many */
    assert_usage_error("needs a subcommand", "create");  /* a group alone */
    assert_usage_error("unknown command 'create acount'", "create", "acount");
    assert_usage_error("yaml", "-o", "yaml", "list");        /* bad output format */
    assert_usage_error("needs a value", "list", "--server"); /* option without its value */
    assert_usage_error("takes no value", "deploy", "f", "--wait=yes");
    assert_usage_error("'5x'", "deploy", "f", "--wait", "--timeout", "5x");
    assert_usage_error("--timeout", "deploy", "f", "--timeout", "5m"); /* without --wait */
    assert_usage_error("no command", "-o", "json");
}

static void test_options_before_between_and_after(void **state)
{
    struct args_invocation inv;
    struct failure fail;
    assert_int_equal(parse(&inv, &fail, "--server", "http://a:1", "-o", "json", "info", "x", NULL),
                     0);
    assert_int_equal(inv.command, ARGS_INFO);
    assert_string_equal(inv.server, "http://a:1");
    assert_int_equal(inv.format, ARGS_FORMAT_JSON);
    assert_int_equal(inv.operands_len, 1);
    assert_string_equal(inv.operands[0], "x");

    assert_int_equal(parse(&inv, &fail, "update", "--output=json", "metrics", "app", "latency",
                           "--server=http://b:2", "p99 < 1s", NULL),
                     0);
    assert_int_equal(inv.command, ARGS_UPDATE_METRICS);
    assert_int_equal(inv.format, ARGS_FORMAT_JSON);
    assert_string_equal(inv.server, "http://b:2");
    assert_string_equal(inv.operands[2], "p99 < 1s");

    assert_int_equal(parse(&inv, &fail, "deploy", "app.json", "--wait", "--timeout", "90s", NULL),
                     0);
    assert_true(inv.wait);
    assert_int_equal(inv.timeout_s, 90);
    assert_int_equal(parse(&inv, &fail, "deploy", "--wait", "-ojson", "-", NULL), 0);
    assert_int_equal(inv.timeout_s, ARGS_DEFAULT_WAIT); /* 5 minutes */
    assert_string_equal(inv.operands[0], "-");          /* stdin */

    /* "--" ends the options: what follows is an argument even if it starts with '-' */
    assert_int_equal(parse(&inv, &fail, "update", "metrics", "app", "latency", "--", "--odd", NULL),
                     0);
    assert_string_equal(inv.operands[2], "--odd");
    /* a negative number is a (bad) number for the command to refuse, not an unknown option */
    assert_int_equal(parse(&inv, &fail, "scale", "app", "-1", NULL), 0);
    assert_string_equal(inv.operands[1], "-1");
}

static void test_help_and_version_win(void **state)
{
    struct args_invocation inv;
    struct failure fail;
    /* a missing FILE does not stop `emp deploy --help` */
    assert_int_equal(parse(&inv, &fail, "deploy", "--help", NULL), 0);
    assert_true(inv.help);
    assert_int_equal(inv.command, ARGS_DEPLOY);
    assert_int_equal(parse(&inv, &fail, "list", "--bogus", "-h", NULL), 0);
    assert_true(inv.help);
    assert_int_equal(parse(&inv, &fail, "create", "--help", NULL), 0);
    assert_int_equal(inv.command, ARGS_NO_COMMAND);
    assert_string_equal(inv.help_group, "create");
    assert_int_equal(parse(&inv, &fail, "--help", NULL), 0);
    assert_null(inv.help_group);
    assert_int_equal(parse(&inv, &fail, "--version", NULL), 0);
    assert_true(inv.version);
    /* but an unknown command stays an error */
    assert_usage_error("frobnicate", "frobnicate", "--help");
}

static void test_help_shows_usage_arguments_and_options(void **state)
{
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        struct args_invocation inv = {.command = (enum args_command_id)i, .help = true};
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        args_print_help(&inv, f);
        fclose(f);
        char usage[128];
        snprintf(usage, sizeof(usage), "Usage: emp %s", args_commands[i].words);
        assert_non_null(strstr(text, usage));
        for (unsigned j = 0; j < args_commands[i].operands_max; j++)
            assert_non_null(strstr(text, args_commands[i].operands[j].name));
        for (int o = 0; o < ARGS__OPTION_COUNT; o++) {
            char option[64];
            snprintf(option, sizeof(option), "--%s", args_options[o].name);
            if (args_options[o].global || (args_commands[i].options & (1u << o)))
                assert_non_null(strstr(text, option));
        }
        free(text);
    }
    /* the top-level help lists every command */
    struct args_invocation top = {.command = ARGS_NO_COMMAND, .help = true};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    args_print_help(&top, f);
    fclose(f);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
        assert_non_null(strstr(text, args_commands[i].words));
    free(text);
}

static void test_bounds(void **state)
{
    char *long_arg = malloc(ARGS_ARG_MAX + 2);
    memset(long_arg, 'a', ARGS_ARG_MAX + 1);
    long_arg[ARGS_ARG_MAX + 1] = '\0';
    assert_usage_error("longer than", "info", long_arg);
    free(long_arg);

    char *argv[ARGS_COUNT_MAX + 3];
    argv[0] = "emp";
    for (int i = 1; i < ARGS_COUNT_MAX + 2; i++)
        argv[i] = "x";
    argv[ARGS_COUNT_MAX + 2] = NULL;
    struct args_invocation inv;
    struct failure fail;
    failure_init(&fail);
    assert_true(args_parse(ARGS_COUNT_MAX + 2, argv, &inv, &fail) < 0);
    assert_int_equal(failure_exit_status(&fail), 2);
    failure_clear(&fail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_options_before_between_and_after),
        cmocka_unit_test(test_help_and_version_win),
        cmocka_unit_test(test_help_shows_usage_arguments_and_options),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
