/* SPDX-License-Identifier: Apache-2.0 */
/* The command line of emp: the table of commands and options (which --help and the completion
 * scripts are generated from), and the parser that turns argv into an invocation. It checks the
 * shape of a command line; what the arguments mean is for the commands to judge. */
#ifndef EMP_CLI_ARGS_H
#define EMP_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "failure.h"

#define ARGS_ARG_MAX       4096 /* the longest argument accepted */
#define ARGS_COUNT_MAX     64   /* the most arguments accepted */
#define ARGS_OPERANDS_MAX  3
#define ARGS_DEFAULT_WAIT  (5 * 60) /* seconds deploy --wait waits unless --timeout says */
#define ARGS_WATCH_EVERY_S 2        /* metrics --watch refreshes this often */

enum args_command_id {
    ARGS_NO_COMMAND = -1, /* only --help or --version */
    ARGS_CREATE_ACCOUNT,
    ARGS_LOGIN,
    ARGS_LOGOUT,
    ARGS_WHOAMI,
    ARGS_DEPLOY,
    ARGS_LIST,
    ARGS_INFO,
    ARGS_STOP,
    ARGS_START,
    ARGS_REMOVE,
    ARGS_SCALE,
    ARGS_UPDATE_METRICS,
    ARGS_TRACING,
    ARGS_METRICS,
    ARGS_GRAPH,
    ARGS_COMPLETION,
    ARGS__COMMAND_COUNT
};

enum args_option_id {
    ARGS_OPT_SERVER,
    ARGS_OPT_OUTPUT,
    ARGS_OPT_HELP,
    ARGS_OPT_VERSION,
    ARGS_OPT_USERNAME,
    ARGS_OPT_PASSWORD_STDIN,
    ARGS_OPT_WAIT,
    ARGS_OPT_TIMEOUT,
    ARGS_OPT_PURGE,
    ARGS_OPT_WINDOW,
    ARGS_OPT_WATCH,
    ARGS__OPTION_COUNT
};

/* What an operand is, for shell completion. */
enum args_operand_kind {
    ARGS_OPERAND_NONE,
    ARGS_OPERAND_APP,    /* an app's name or id */
    ARGS_OPERAND_FILE,   /* a file name */
    ARGS_OPERAND_METRIC, /* a quality metric name */
    ARGS_OPERAND_SHELL,  /* bash or zsh */
    ARGS_OPERAND_OTHER,  /* free text: a number, values */
};

struct args_option {
    const char *name;       /* "server" for --server */
    char short_name;        /* 'o' for -o, or 0 */
    const char *value_name; /* "URL"; NULL for a flag */
    bool global;            /* accepted by every command */
    const char *help;
};

struct args_operand {
    const char *name; /* "APP" */
    enum args_operand_kind kind;
    const char *help;
};

struct args_command {
    const char *words; /* "create account" */
    struct args_operand operands[ARGS_OPERANDS_MAX];
    unsigned operands_min;
    unsigned operands_max;
    unsigned options; /* bits (1u << enum args_option_id) of the command's own options */
    const char *summary;
    const char *description;
};

extern const struct args_option args_options[ARGS__OPTION_COUNT];
extern const struct args_command args_commands[ARGS__COMMAND_COUNT];

enum args_format { ARGS_FORMAT_TABLE, ARGS_FORMAT_JSON, ARGS_FORMAT_DOT /* emp graph only */ };

/* A parsed command line. The strings point into argv and live as long as it does. */
struct args_invocation {
    enum args_command_id command;
    const char *operands[ARGS_OPERANDS_MAX];
    unsigned operands_len;
    const char *server; /* --server, or NULL */
    enum args_format format;
    bool help;
    const char *help_group; /* `emp create --help`: the first word of the commands to list */
    bool version;
    const char *username; /* --username, or NULL */
    bool password_stdin;
    bool wait;
    int64_t timeout_s; /* ARGS_DEFAULT_WAIT unless --timeout */
    bool purge;
    const char *window; /* --window, or NULL (the server's default) */
    bool watch;
};

/* Parses argv (options may come before, between and after the command words; "--" ends them).
 * Fills *ret and returns 0; with --help or --version, other mistakes are forgiven. Otherwise
 * returns -EINVAL with a usage failure that says what is wrong and where to look. */
int args_parse(int argc, char *const *argv, struct args_invocation *ret, struct failure *fail);

/* The help --help prints: of inv->command, of the commands of inv->help_group, or of emp. */
void args_print_help(const struct args_invocation *inv, FILE *out);

/* "emp deploy FILE [--wait] [--timeout DURATION]" */
void args_print_usage(enum args_command_id command, FILE *out);

#endif
