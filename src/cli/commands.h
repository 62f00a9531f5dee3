/* SPDX-License-Identifier: Apache-2.0 */
/* The commands of emp: each turns a parsed invocation into REST calls to emp-server (through
 * client.h) and prints the answer, as a table, a key/value block, a one-line confirmation or the
 * server's JSON. Parsing the command line is args.h's job; printing a failure is main's. */
#ifndef EMP_CLI_COMMANDS_H
#define EMP_CLI_COMMANDS_H

#include <stdbool.h>
#include <stdio.h>

#include "args.h"
#include "failure.h"

#define CMD_DEFAULT_SERVER "http://127.0.0.1:7420"
#define CMD_SPEC_FILE_MAX  (1024 * 1024) /* the server's request body limit */
#define CMD_APP_REF_MAX    127           /* the API's limit for {app} */
#define CMD_POLL_MS        200           /* deploy --wait asks this often ... */
#define CMD_POLL_FIRST_MS  20            /* ... after first asking this soon, doubling */
#define CMD_LIST_PAGE      200           /* apps per page of GET /v1/apps */
#define CMD_LIST_PAGES_MAX 1000          /* emp list stops after this many pages */

/* What the process gives a command: where to write, and the environment it may consult. Nothing
 * here is owned by the command. */
struct cmd_env {
    FILE *out;               /* results: tables, blocks, confirmations, JSON */
    FILE *err;               /* progress of deploy --wait, notes */
    int in_fd;               /* --password-stdin reads the first line of it */
    bool err_is_terminal;    /* progress rewrites one line in place */
    const char *server_env;  /* $EMP_SERVER, or NULL */
    const char *token_env;   /* $EMP_TOKEN, or NULL */
    const char *config_home; /* $XDG_CONFIG_HOME, or NULL */
    const char *home;        /* $HOME, or NULL */
};

/* Runs inv->command (not ARGS_NO_COMMAND). Returns 0, or a negative errno with fail saying why
 * and which exit status that is. */
int cmd_run(const struct args_invocation *inv, const struct cmd_env *env, struct failure *fail);

#endif
