/* SPDX-License-Identifier: Apache-2.0 */
/* Shell completion scripts for emp (bash and zsh), written from the command table of args.h so
 * that they always offer exactly the commands and options the parser accepts. */
#ifndef EMP_CLI_COMPLETION_H
#define EMP_CLI_COMPLETION_H

#include <stdio.h>

/* "bash zsh" */
const char *completion_shells(void);

/* Writes the completion script for shell ("bash" or "zsh") to out. Returns 0, or -EINVAL for a
 * shell it has no script for. */
int completion_print(const char *shell, FILE *out);

#endif
