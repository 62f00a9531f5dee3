/* SPDX-License-Identifier: Apache-2.0 */
/* The commands and options of emp as data, a parser over them, and the help they print. Keeping
 * them in one table is what makes --help, the parser and the completion scripts agree. */
#include "args.h"

#include <errno.h>
#include <string.h>

#include "emp/timeutil.h"

#define OPT(id) (1u << (id))

const struct args_option args_options[ARGS__OPTION_COUNT] = {
    [ARGS_OPT_SERVER] = {.name = "server",
                         .value_name = "URL",
                         .global = true,
                         .help = "emp-server's URL (else $EMP_SERVER, else the current server of "
                                 "the credentials file, else http://127.0.0.1:7420)"},
    [ARGS_OPT_OUTPUT] = {.name = "output",
                         .short_name = 'o',
                         .value_name = "FORMAT",
                         .global = true,
                         .help = "table (the default: for people) or json (the server's answer "
                                 "as received, for scripts); emp graph also takes dot"},
    [ARGS_OPT_HELP] = {.name = "help",
                       .short_name = 'h',
                       .global = true,
                       .help = "show this help and exit"},
    [ARGS_OPT_VERSION] = {.name = "version",
                          .global = true,
                          .help = "print emp's version and exit"},
    [ARGS_OPT_USERNAME] = {.name = "username",
                           .value_name = "NAME",
                           .help = "the account's username (asked on the terminal if not given)"},
    [ARGS_OPT_PASSWORD_STDIN] = {.name = "password-stdin",
                                 .help = "read the password from the first line of stdin instead "
                                         "of asking on the terminal"},
    [ARGS_OPT_WAIT] = {.name = "wait",
                       .help = "wait until the app is running (exit 0) or has failed (exit 1), "
                               "showing its progress on stderr"},
    [ARGS_OPT_PURGE] = {.name = "purge",
                        .help = "also delete the app's persistent data (stateful apps keep it "
                                "otherwise)"},
    [ARGS_OPT_TIMEOUT] = {.name = "timeout",
                          .value_name = "DURATION",
                          .help = "how long --wait waits, e.g. 90s, 5m, 1h (default 5m)"},
    [ARGS_OPT_WINDOW] = {.name = "window",
                         .value_name = "DURATION",
                         .help = "the time the numbers cover, up to now: a multiple of 10s up to "
                                 "15m, or of 1m up to 1h (default 60s)"},
    [ARGS_OPT_WATCH] = {.name = "watch",
                        .help = "show the numbers again every 2 seconds, in place, until "
                                "interrupted"},
};

static const struct args_operand app_operand = {"APP", ARGS_OPERAND_APP,
                                                "the app's id, or its name"};

const struct args_command args_commands[ARGS__COMMAND_COUNT] = {
    [ARGS_CREATE_ACCOUNT] = {.words = "create account",
                             .options = OPT(ARGS_OPT_USERNAME) | OPT(ARGS_OPT_PASSWORD_STDIN),
                             .summary = "Create an account on emp-server",
                             .description =
                                 "Creates an account. The username is a DNS label (lowercase "
                                 "letters, digits and '-',\nstarting with a letter, at most 40 "
                                 "characters); the password has at least 8 characters.\nBoth are "
                                 "asked on the terminal unless --username and --password-stdin "
                                 "give them\n(the password is asked twice)."},
    [ARGS_LOGIN] = {.words = "login",
                    .options = OPT(ARGS_OPT_USERNAME) | OPT(ARGS_OPT_PASSWORD_STDIN),
                    .summary = "Log in and save the token for this server",
                    .description =
                        "Logs in and saves the token in $XDG_CONFIG_HOME/emp/credentials.json "
                        "(mode 0600);\nlater commands send it to this server, which becomes the "
                        "current one. The token\nitself is not printed."},
    [ARGS_LOGOUT] = {.words = "logout",
                     .summary = "Log out: revoke the token and forget it",
                     .description = "Revokes the saved token on the server, then forgets it (also "
                                    "when the server says it\nhas already expired)."},
    [ARGS_WHOAMI] = {.words = "whoami",
                     .summary = "Show who the token belongs to",
                     .description = "Shows the account (or the scheduler role) the token belongs "
                                    "to, and when it expires."},
    [ARGS_DEPLOY] =
        {.words = "deploy",
         .operands = {{"FILE", ARGS_OPERAND_FILE,
                       "the app spec (app.json, at most 1 MiB); - reads it from stdin"}},
         .operands_min = 1,
         .operands_max = 1,
         .options = OPT(ARGS_OPT_WAIT) | OPT(ARGS_OPT_TIMEOUT),
         .summary = "Deploy a new app from its spec",
         .description = "Deploys the app that FILE describes. The file is checked first with "
                        "the same rules as\nemp-server's: if anything is wrong, every problem "
                        "is listed, nothing is sent and emp\nexits with 2."},
    [ARGS_LIST] = {.words = "list",
                   .summary = "List your apps",
                   .description = "Lists your apps (every page of them) with their state, ready "
                                  "replicas and address."},
    [ARGS_INFO] = {.words = "info",
                   .operands = {app_operand},
                   .operands_min = 1,
                   .operands_max = 1,
                   .summary = "Show everything about one app",
                   .description = "Shows an app's state, replicas, address and spec."},
    [ARGS_STOP] = {.words = "stop",
                   .operands = {app_operand},
                   .operands_min = 1,
                   .operands_max = 1,
                   .summary = "Stop a running app",
                   .description = "Stops every instance of the app. A stateful app keeps its "
                                  "data; `emp start` brings it back."},
    [ARGS_START] = {.words = "start",
                    .operands = {app_operand},
                    .operands_min = 1,
                    .operands_max = 1,
                    .summary = "Start a stopped app",
                    .description = "Starts a stopped app again, with the replica count it had."},
    [ARGS_REMOVE] = {.words = "remove",
                     .operands = {app_operand},
                     .operands_min = 1,
                     .operands_max = 1,
                     .options = OPT(ARGS_OPT_PURGE),
                     .summary = "Remove an app completely",
                     .description = "Removes the app from the cluster, then every record of it. "
                                    "The data of a stateful app\nis kept (a new app of the same "
                                    "name finds it again) unless --purge is given."},
    [ARGS_SCALE] = {.words = "scale",
                    .operands = {app_operand,
                                 {"N", ARGS_OPERAND_OTHER,
                                  "the number of replicas, within the app's replicas.min and max"}},
                    .operands_min = 2,
                    .operands_max = 2,
                    .summary = "Set an app's replica count",
                    .description = "Sets how many instances of the app run. A stopped app keeps "
                                   "the count for its next start."},
    [ARGS_UPDATE_METRICS] = {.words = "update metrics",
                             .operands = {app_operand,
                                          {"METRIC", ARGS_OPERAND_METRIC,
                                           "latency, throughput, availability or error_rate"},
                                          {"VALUES", ARGS_OPERAND_OTHER,
                                           "the target: 'p95 < 200ms', '100 rps', '>= 99.9%' or "
                                           "'< 1%'"}},
                             .operands_min = 3,
                             .operands_max = 3,
                             .summary = "Change one of an app's quality metrics",
                             .description = "Adds the quality metric to the app, or replaces its "
                                            "target, while the app runs.\nQuote VALUES: "
                                            "emp update metrics songs-ms latency 'p99 < 500ms'"},
    [ARGS_TRACING] = {.words = "tracing",
                      .operands = {app_operand},
                      .operands_min = 1,
                      .operands_max = 1,
                      .summary = "Show an app's tracing: its service, Zipkin link, last minutes",
                      .description = "Prints the service name the app's spans must carry "
                                     "(localEndpoint.serviceName\nUSERNAME/APPNAME), the link to "
                                     "its traces in the Zipkin UI, and what its spans\nsaid over "
                                     "the last 5 minutes."},
    [ARGS_METRICS] = {.words = "metrics",
                      .operands = {app_operand},
                      .operands_min = 1,
                      .operands_max = 1,
                      .options = OPT(ARGS_OPT_WINDOW) | OPT(ARGS_OPT_WATCH),
                      .summary = "Show an app's request rate, errors, latency and dependencies",
                      .description =
                          "Shows what the app's spans say over the window: requests and their "
                          "rate (also per\nready replica), the error rate, latency percentiles, "
                          "the time spent in the app's own\ncode, and the services it calls and "
                          "is called by. Numbers end at the last whole\n10 s (or 1 min) "
                          "bucket."},
    [ARGS_GRAPH] = {.words = "graph",
                    .options = OPT(ARGS_OPT_WINDOW),
                    .summary = "Show the dependency graph of your services",
                    .description = "Prints which of your services call which services, with "
                                   "call counts, error rates\nand latency, over the window. "
                                   "With -o dot, as a Graphviz graph:\n  emp graph -o dot | dot "
                                   "-Tsvg > graph.svg"},
    [ARGS_COMPLETION] = {.words = "completion",
                         .operands = {{"SHELL", ARGS_OPERAND_SHELL, "bash or zsh"}},
                         .operands_min = 1,
                         .operands_max = 1,
                         .summary = "Print a shell completion script",
                         .description = "Prints a completion script for emp's commands and "
                                        "options. For bash, add to ~/.bashrc:\n  source <(emp "
                                        "completion bash)\nFor zsh, add to ~/.zshrc (after "
                                        "compinit):\n  source <(emp completion zsh)"},
};

/* ---- parsing ---- */

struct scanned {
    const char *words[ARGS_COUNT_MAX]; /* the arguments that are not options, in order */
    unsigned words_len;
    bool seen[ARGS__OPTION_COUNT];
    const char *values[ARGS__OPTION_COUNT];
    const char *first_seen_as[ARGS__OPTION_COUNT]; /* how it was spelt, for messages */
};

static const struct args_option *find_long(const char *name, size_t len, enum args_option_id *id)
{
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        if (strlen(args_options[i].name) == len && strncmp(args_options[i].name, name, len) == 0) {
            *id = (enum args_option_id)i;
            return &args_options[i];
        }
    }
    return NULL;
}

static const struct args_option *find_short(char c, enum args_option_id *id)
{
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        if (args_options[i].short_name && args_options[i].short_name == c) {
            *id = (enum args_option_id)i;
            return &args_options[i];
        }
    }
    return NULL;
}

/* "-5" is a (bad) number for `emp scale`, not an option. */
static bool looks_negative_number(const char *arg)
{
    return arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9';
}

/* Sorts argv into words and options. Records only the first problem in fail and keeps going, so
 * that --help later on the line still counts. */
static void scan(int argc, char *const *argv, struct scanned *s, struct failure *fail)
{
    bool options_ended = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_ended || arg[0] != '-' || arg[1] == '\0' || looks_negative_number(arg)) {
            if (s->words_len < ARGS_COUNT_MAX)
                s->words[s->words_len++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_ended = true;
            continue;
        }
        enum args_option_id id;
        const struct args_option *opt;
        const char *value = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            opt = find_long(name, eq ? (size_t)(eq - name) : strlen(name), &id);
            if (!opt) {
                failure_usage(fail, "unknown option '%.*s': see `emp --help`",
                              eq ? (int)(eq - arg) : (int)strlen(arg), arg);
                continue;
            }
            if (eq && !opt->value_name) {
                failure_usage(fail, "option --%s takes no value (it was given '%.100s')", opt->name,
                              eq + 1);
                continue;
            }
            if (eq)
                value = eq + 1;
        } else {
            opt = find_short(arg[1], &id);
            if (!opt) {
                failure_usage(fail, "unknown option '%.100s': see `emp --help`", arg);
                continue;
            }
            if (arg[2] != '\0') {
                if (!opt->value_name) {
                    failure_usage(fail, "unknown option '%.100s': see `emp --help`", arg);
                    continue;
                }
                value = arg + 2;
            }
        }
        if (opt->value_name && !value) {
            if (i + 1 >= argc) {
                failure_usage(fail, "option %s needs a value: %s %s", arg, arg, opt->value_name);
                continue;
            }
            value = argv[++i];
        }
        s->seen[id] = true;
        s->values[id] = value; /* the last one given wins, as usual for options */
        if (!s->first_seen_as[id])
            s->first_seen_as[id] = arg;
    }
}

/* The command whose words the first words of the line are; *ret_used says how many. */
static enum args_command_id match_command(const struct scanned *s, unsigned *ret_used)
{
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *words = args_commands[i].words;
        const char *space = strchr(words, ' ');
        if (!space) {
            if (s->words_len >= 1 && strcmp(s->words[0], words) == 0) {
                *ret_used = 1;
                return (enum args_command_id)i;
            }
            continue;
        }
        size_t first_len = (size_t)(space - words);
        if (s->words_len >= 2 && strlen(s->words[0]) == first_len &&
            strncmp(s->words[0], words, first_len) == 0 && strcmp(s->words[1], space + 1) == 0) {
            *ret_used = 2;
            return (enum args_command_id)i;
        }
    }
    return ARGS_NO_COMMAND;
}

/* Whether word is the first word of a two-word command ("create", "update"). */
static bool is_group(const char *word)
{
    size_t len = strlen(word);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *words = args_commands[i].words;
        if (strncmp(words, word, len) == 0 && words[len] == ' ')
            return true;
    }
    return false;
}

/* The edit distance of a and b (both short), for "did you mean". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    size_t row[33];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

static int unknown_command(const struct scanned *s, struct failure *fail)
{
    const char *word = s->words[0];
    if (is_group(word) && s->words_len == 1) {
        const char *sub = "";
        for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
            if (strncmp(args_commands[i].words, word, strlen(word)) == 0 &&
                args_commands[i].words[strlen(word)] == ' ')
                sub = args_commands[i].words + strlen(word) + 1;
        return failure_usage(fail, "`emp %s` needs a subcommand: emp %s %s (see `emp --help`)",
                             word, word, sub);
    }
    char given[128];
    if (is_group(word))
        snprintf(given, sizeof(given), "%.60s %.60s", word, s->words[1]);
    else
        snprintf(given, sizeof(given), "%.100s", word);
    const char *best = NULL;
    size_t best_distance = 3;
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        size_t d = distance(given, args_commands[i].words);
        if (d < best_distance) {
            best = args_commands[i].words;
            best_distance = d;
        }
    }
    if (best)
        return failure_usage(fail, "unknown command '%s': did you mean `emp %s`?", given, best);
    return failure_usage(fail, "unknown command '%s': see `emp --help` for the commands", given);
}

/* "emp deploy FILE [--wait] [--timeout DURATION]" into buf. */
static void usage_string(const struct args_command *cmd, char *buf, size_t size)
{
    size_t len = (size_t)snprintf(buf, size, "emp %s", cmd->words);
    for (unsigned i = 0; i < cmd->operands_max && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, " %s", cmd->operands[i].name);
    for (int i = 0; i < ARGS__OPTION_COUNT && len < size; i++) {
        const struct args_option *opt = &args_options[i];
        if (!(cmd->options & OPT(i)))
            continue;
        if (opt->value_name)
            len +=
                (size_t)snprintf(buf + len, size - len, " [--%s %s]", opt->name, opt->value_name);
        else
            len += (size_t)snprintf(buf + len, size - len, " [--%s]", opt->name);
    }
}

static int check_operands(const struct args_command *cmd, const struct scanned *s, unsigned used,
                          struct args_invocation *inv, struct failure *fail)
{
    char usage[256];
    usage_string(cmd, usage, sizeof(usage));
    unsigned given = s->words_len - used;
    if (given < cmd->operands_min)
        return failure_usage(fail, "missing %s: usage: %s", cmd->operands[given].name, usage);
    if (given > cmd->operands_max)
        return failure_usage(fail, "unexpected argument '%.100s': usage: %s",
                             s->words[used + cmd->operands_max], usage);
    for (unsigned i = 0; i < given; i++)
        inv->operands[i] = s->words[used + i];
    inv->operands_len = given;
    return 0;
}

static int check_options(const struct args_command *cmd, const struct scanned *s,
                         struct failure *fail)
{
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        if (!s->seen[i] || args_options[i].global || (cmd->options & OPT(i)))
            continue;
        return failure_usage(fail, "`emp %s` has no option %s: see `emp %s --help`", cmd->words,
                             s->first_seen_as[i], cmd->words);
    }
    return 0;
}

static int check_values(const struct scanned *s, struct args_invocation *inv, struct failure *fail)
{
    const char *format = s->values[ARGS_OPT_OUTPUT];
    if (format && strcmp(format, "json") == 0)
        inv->format = ARGS_FORMAT_JSON;
    else if (format && strcmp(format, "dot") == 0 && inv->command == ARGS_GRAPH)
        inv->format = ARGS_FORMAT_DOT;
    else if (format && strcmp(format, "dot") == 0)
        return failure_usage(fail, "-o dot is for `emp graph`: use -o table or -o json");
    else if (format && strcmp(format, "table") != 0)
        return failure_usage(fail, "output format '%.100s' is not known: use -o table or -o json%s",
                             format, inv->command == ARGS_GRAPH ? " (or -o dot)" : "");
    inv->server = s->values[ARGS_OPT_SERVER];
    inv->username = s->values[ARGS_OPT_USERNAME];
    inv->password_stdin = s->seen[ARGS_OPT_PASSWORD_STDIN];
    inv->wait = s->seen[ARGS_OPT_WAIT];
    inv->purge = s->seen[ARGS_OPT_PURGE];
    inv->window = s->values[ARGS_OPT_WINDOW];
    inv->watch = s->seen[ARGS_OPT_WATCH];
    if (inv->window) {
        int64_t seconds;
        if (time_parse_duration(inv->window, &seconds) < 0 || seconds < 10 || seconds > 3600)
            return failure_usage(fail,
                                 "--window '%.100s' is not valid: use a multiple of 10s up to 15m, "
                                 "or of 1m up to 1h, such as 60s, 5m or 1h",
                                 inv->window);
    }
    if (inv->watch && inv->format == ARGS_FORMAT_JSON)
        return failure_usage(fail, "--watch shows a table: leave out -o json (or poll the API)");
    const char *timeout = s->values[ARGS_OPT_TIMEOUT];
    if (timeout) {
        int64_t seconds;
        if (time_parse_duration(timeout, &seconds) < 0 || seconds <= 0 || seconds > 7 * 24 * 3600)
            return failure_usage(fail,
                                 "--timeout '%.100s' is not valid: use a duration from 1s to 7d "
                                 "such as 90s, 5m or 1h",
                                 timeout);
        if (!inv->wait)
            return failure_usage(fail, "--timeout only applies to --wait: add --wait");
        inv->timeout_s = seconds;
    }
    return 0;
}

int args_parse(int argc, char *const *argv, struct args_invocation *ret, struct failure *fail)
{
    if (argc > ARGS_COUNT_MAX + 1)
        return failure_usage(fail, "too many arguments (%d): emp takes at most %d", argc - 1,
                             ARGS_COUNT_MAX);
    for (int i = 1; i < argc; i++)
        if (strlen(argv[i]) > ARGS_ARG_MAX)
            return failure_usage(fail, "argument %d is longer than %d bytes", i, ARGS_ARG_MAX);

    struct scanned s = {0};
    struct failure scan_fail;
    failure_init(&scan_fail);
    scan(argc, argv, &s, &scan_fail);

    struct args_invocation inv = {.command = ARGS_NO_COMMAND, .timeout_s = ARGS_DEFAULT_WAIT};
    inv.help = s.seen[ARGS_OPT_HELP];
    inv.version = s.seen[ARGS_OPT_VERSION];
    unsigned used = 0;
    if (s.words_len > 0)
        inv.command = match_command(&s, &used);

    int r = 0;
    if (inv.help) {
        /* help wins over every other mistake, but not over an unknown command */
        if (inv.command == ARGS_NO_COMMAND && s.words_len > 0) {
            if (is_group(s.words[0]) && s.words_len == 1)
                inv.help_group = s.words[0];
            else
                r = unknown_command(&s, fail);
        }
        goto out;
    }
    if (inv.version)
        goto out;
    if (failure_is_set(&scan_fail)) {
        *fail = scan_fail;
        failure_init(&scan_fail);
        r = -EINVAL;
        goto out;
    }
    if (s.words_len == 0) {
        r = failure_usage(fail, "no command given: run `emp --help` to see the commands");
        goto out;
    }
    if (inv.command == ARGS_NO_COMMAND) {
        r = unknown_command(&s, fail);
        goto out;
    }
    const struct args_command *cmd = &args_commands[inv.command];
    if ((r = check_options(cmd, &s, fail)) < 0 ||
        (r = check_operands(cmd, &s, used, &inv, fail)) < 0 ||
        (r = check_values(&s, &inv, fail)) < 0)
        goto out;
out:
    failure_clear(&scan_fail);
    if (r == 0)
        *ret = inv;
    return r;
}

/* ---- help ---- */

static void print_usage_line(const struct args_command *cmd, FILE *out)
{
    char usage[256];
    usage_string(cmd, usage, sizeof(usage));
    fputs(usage, out);
}

void args_print_usage(enum args_command_id command, FILE *out)
{
    if (command == ARGS_NO_COMMAND) {
        fputs("emp [--server URL] [-o table|json] COMMAND [ARGUMENTS] [OPTIONS]", out);
        return;
    }
    print_usage_line(&args_commands[command], out);
}

#define HELP_WIDTH  100 /* help lines wrap before this column */
#define HELP_INDENT 28  /* where the descriptions of options and arguments start */

/* "  NAME   description" with the description wrapped at HELP_WIDTH, continuation lines indented
 * to HELP_INDENT. */
static void print_item(const char *name, const char *text, FILE *out)
{
    int used = fprintf(out, "  %-*s ", HELP_INDENT - 3, name);
    if (used > HELP_INDENT) {
        fprintf(out, "\n%*s", HELP_INDENT, "");
        used = HELP_INDENT;
    }
    const char *p = text;
    while (*p) {
        size_t word = strcspn(p, " ");
        if (used > HELP_INDENT && used + 1 + (int)word > HELP_WIDTH) {
            fprintf(out, "\n%*s", HELP_INDENT, "");
            used = HELP_INDENT;
        } else if (used > HELP_INDENT) {
            fputc(' ', out);
            used++;
        }
        fwrite(p, 1, word, out);
        used += (int)word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

static void print_option(const struct args_option *opt, FILE *out)
{
    char spelling[64];
    if (opt->short_name)
        snprintf(spelling, sizeof(spelling), "-%c, --%s%s%s", opt->short_name, opt->name,
                 opt->value_name ? " " : "", opt->value_name ? opt->value_name : "");
    else
        snprintf(spelling, sizeof(spelling), "    --%s%s%s", opt->name, opt->value_name ? " " : "",
                 opt->value_name ? opt->value_name : "");
    print_item(spelling, opt->help, out);
}

static void print_global_options(FILE *out)
{
    fputs("\nGlobal options (before or after the command):\n", out);
    for (int i = 0; i < ARGS__OPTION_COUNT; i++)
        if (args_options[i].global)
            print_option(&args_options[i], out);
}

static void print_command_help(const struct args_command *cmd, FILE *out)
{
    fputs("Usage: ", out);
    print_usage_line(cmd, out);
    fprintf(out, "\n\n%s\n", cmd->description);
    if (cmd->operands_max) {
        fputs("\nArguments:\n", out);
        for (unsigned i = 0; i < cmd->operands_max; i++)
            print_item(cmd->operands[i].name, cmd->operands[i].help, out);
    }
    if (cmd->options) {
        fputs("\nOptions:\n", out);
        for (int i = 0; i < ARGS__OPTION_COUNT; i++)
            if (cmd->options & OPT(i))
                print_option(&args_options[i], out);
    }
    print_global_options(out);
}

static void print_command_list(const char *group, FILE *out)
{
    size_t group_len = group ? strlen(group) : 0;
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const struct args_command *cmd = &args_commands[i];
        if (group && !(strncmp(cmd->words, group, group_len) == 0 && cmd->words[group_len] == ' '))
            continue;
        char usage[96];
        int len = snprintf(usage, sizeof(usage), "%s", cmd->words);
        for (unsigned j = 0; j < cmd->operands_max && len < (int)sizeof(usage); j++)
            len += snprintf(usage + len, sizeof(usage) - (size_t)len, " %s", cmd->operands[j].name);
        fprintf(out, "  %-34s %s\n", usage, cmd->summary);
    }
}

void args_print_help(const struct args_invocation *inv, FILE *out)
{
    if (inv->command != ARGS_NO_COMMAND) {
        print_command_help(&args_commands[inv->command], out);
        return;
    }
    if (inv->help_group) {
        fprintf(out, "Usage: emp %s COMMAND\n\nCommands:\n", inv->help_group);
        print_command_list(inv->help_group, out);
        fprintf(out, "\nRun `emp %s COMMAND --help` for a command's arguments and options.\n",
                inv->help_group);
        return;
    }
    fputs("emp: deploy and manage apps on EMP, the Elastic Microservices Platform.\n\nUsage: ",
          out);
    args_print_usage(ARGS_NO_COMMAND, out);
    fputs("\n\nCommands:\n", out);
    print_command_list(NULL, out);
    fputs("\nAPP is an app's id or its name.\n", out);
    print_global_options(out);
    fputs("\nEnvironment:\n", out);
    print_item("EMP_SERVER", "emp-server's URL, when --server is not given", out);
    print_item("EMP_TOKEN",
               "a bearer token to send instead of the saved one (e.g. the scheduler's)", out);
    print_item("XDG_CONFIG_HOME", "where emp/credentials.json is kept (default ~/.config)", out);
    fputs("\nExit status:\n"
          "  0  done\n"
          "  1  emp-server answered an error, or deploy --wait saw the app fail or time out\n"
          "  2  usage error: unknown command or option, missing or bad argument, invalid app "
          "spec\n"
          "  3  emp-server cannot be reached, or did not answer JSON\n"
          "\nRun `emp COMMAND --help` for a command's arguments and options.\n",
          out);
}
