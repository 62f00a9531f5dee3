/* SPDX-License-Identifier: Apache-2.0 */
/* emp, the command-line client of EMP: parses the command line, answers --help and --version,
 * runs the command and turns its failure, if any, into a message and the exit status of the CLI
 * contract (0 ok, 1 the server said no, 2 usage, 3 unreachable). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "client.h"
#include "commands.h"
#include "failure.h"

int main(int argc, char **argv)
{
    struct failure fail;
    failure_init(&fail);
    struct args_invocation inv;
    int status = 0;

    if (args_parse(argc, argv, &inv, &fail) < 0) {
        failure_print(&fail, false, stderr);
        status = failure_exit_status(&fail);
        goto out;
    }
    if (inv.help) {
        args_print_help(&inv, stdout);
        goto out;
    }
    if (inv.version) {
        puts("emp " EMP_VERSION);
        goto out;
    }
    if (client_global_init() < 0) {
        fputs("emp: cannot initialise libcurl\n", stderr);
        status = FAILURE_FAILED;
        goto out;
    }
    const struct cmd_env env = {
        .out = stdout,
        .err = stderr,
        .in_fd = STDIN_FILENO,
        .err_is_terminal = isatty(STDERR_FILENO) == 1,
        .server_env = getenv("EMP_SERVER"),
        .token_env = getenv("EMP_TOKEN"),
        .config_home = getenv("XDG_CONFIG_HOME"),
        .home = getenv("HOME"),
    };
    if (cmd_run(&inv, &env, &fail) < 0) {
        fflush(stdout); /* what the command printed comes before its failure */
        failure_print(&fail, inv.format == ARGS_FORMAT_JSON, stderr);
        status = failure_exit_status(&fail);
    }
    client_global_cleanup();
out:
    failure_clear(&fail);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "emp: cannot write the output: %s\n", strerror(errno));
        if (status == 0)
            status = FAILURE_FAILED;
    }
    return status;
}
