/* SPDX-License-Identifier: Apache-2.0 */
/* Asking the person at the terminal: a username (echoed) or a password (not echoed, via termios)
 * on /dev/tty, so prompts work while stdin and stdout are redirected; and --password-stdin's
 * "first line of stdin". It reads; what is done with the answer is the caller's business. */
#ifndef EMP_CLI_PROMPT_H
#define EMP_CLI_PROMPT_H

#include <stdbool.h>
#include <stddef.h>

#include "failure.h"

#define PROMPT_LINE_MAX 1024 /* the longest answer accepted (the server's password limit) */

/* Writes question ("Password: ") to /dev/tty and reads one line from it into buf (size bytes, at
 * most PROMPT_LINE_MAX + 1), without its line ending. With secret, the terminal does not echo what
 * is typed (echo comes back even on Ctrl-C). Returns 0; -ENXIO with a usage failure when there is
 * no terminal (the message says to pass no_tty_hint); else -EINVAL with a usage failure (too long
 * an answer, end of input). */
int prompt_ask(const char *question, bool secret, const char *no_tty_hint, char *buf, size_t size,
               struct failure *fail);

/* Reads the first line of fd (stdin) into buf (size bytes), stripping a trailing "\n" or "\r\n".
 * Empty stdin gives an empty line. Returns 0, -EINVAL (usage failure) when the line does not fit,
 * or -errno. */
int prompt_read_line_fd(int fd, char *buf, size_t size, struct failure *fail);

#endif
