/* SPDX-License-Identifier: Apache-2.0 */
/* Terminal prompts on /dev/tty. Echo is turned off with termios for secrets and turned back on by
 * a signal handler too, so Ctrl-C during a password prompt does not leave the terminal silent. */
#include "prompt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "emp/textio.h"

static const int restored_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
#define RESTORED_COUNT (sizeof(restored_signals) / sizeof(restored_signals[0]))

/* What the signal handler needs to give the terminal its echo back. */
static volatile sig_atomic_t echo_off_fd = -1;
static struct termios echo_saved;

static void restore_echo_and_reraise(int sig)
{
    int saved_errno = errno;
    if (echo_off_fd >= 0)
        tcsetattr(echo_off_fd, TCSAFLUSH, &echo_saved);
    raise(sig); /* SA_RESETHAND: delivered with the default action once we return */
    errno = saved_errno;
}

/* Reads bytes up to '\n' or end of input. Returns the length (without '\n'), -E2BIG after
 * discarding the rest of a line that does not fit, -ECANCELED at end of input before any byte, or
 * -errno. */
static ssize_t read_line(int fd, char *buf, size_t size)
{
    size_t len = 0;
    bool too_long = false;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0) {
            if (len == 0 && !too_long)
                return -ECANCELED;
            break;
        }
        if (c == '\n')
            break;
        if (len + 1 >= size) {
            too_long = true;
            continue;
        }
        buf[len++] = c;
    }
    buf[len] = '\0';
    if (too_long) {
        explicit_bzero(buf, size);
        return -E2BIG;
    }
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    return (ssize_t)len;
}

int prompt_ask(const char *question, bool secret, const char *no_tty_hint, char *buf, size_t size,
               struct failure *fail)
{
    if (size > PROMPT_LINE_MAX + 1)
        size = PROMPT_LINE_MAX + 1;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        /* "Password: " -> "password" for the message */
        char what[64];
        size_t len = strcspn(question, ":");
        snprintf(what, sizeof(what), "%.*s", (int)(len < sizeof(what) ? len : sizeof(what) - 1),
                 question);
        if (what[0] >= 'A' && what[0] <= 'Z')
            what[0] = (char)(what[0] - 'A' + 'a');
        failure_usage(fail, "there is no terminal to ask for the %s: pass %s", what, no_tty_hint);
        return -ENXIO;
    }
    struct sigaction old_actions[RESTORED_COUNT];
    bool echo_changed = false;
    int r = textio_write_all(fd, question, strlen(question));
    if (r < 0) {
        r = failure_usage(fail, "cannot ask on the terminal (%s): pass %s", strerror(-r),
                          no_tty_hint);
        goto out;
    }
    if (secret) {
        struct termios quiet;
        if (tcgetattr(fd, &echo_saved) < 0) {
            r = failure_usage(fail, "cannot turn off echo on the terminal (%s): pass %s",
                              strerror(errno), no_tty_hint);
            goto out;
        }
        quiet = echo_saved;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHOE | ECHOK);
        quiet.c_lflag |= ECHONL; /* the Enter key still moves to the next line */
        struct sigaction restore = {.sa_handler = restore_echo_and_reraise,
                                    .sa_flags = SA_RESETHAND};
        sigemptyset(&restore.sa_mask);
        for (size_t i = 0; i < RESTORED_COUNT; i++)
            sigaction(restored_signals[i], &restore, &old_actions[i]);
        echo_off_fd = fd;
        echo_changed = true;
        if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
            r = failure_usage(fail, "cannot turn off echo on the terminal (%s): pass %s",
                              strerror(errno), no_tty_hint);
            goto out;
        }
    }
    ssize_t len = read_line(fd, buf, size);
    if (len == -E2BIG)
        r = failure_usage(fail, "the answer is longer than %zu characters", size - 1);
    else if (len == -ECANCELED)
        r = failure_usage(fail, "no answer was given (end of input)");
    else if (len < 0)
        r = failure_usage(fail, "cannot read from the terminal: %s", strerror((int)-len));
    else
        r = 0;
out:
    if (echo_changed) {
        tcsetattr(fd, TCSAFLUSH, &echo_saved);
        echo_off_fd = -1;
        for (size_t i = 0; i < RESTORED_COUNT; i++)
            sigaction(restored_signals[i], &old_actions[i], NULL);
    }
    close(fd);
    return r;
}

int prompt_read_line_fd(int fd, char *buf, size_t size, struct failure *fail)
{
    ssize_t len = read_line(fd, buf, size);
    if (len == -ECANCELED) {
        buf[0] = '\0';
        return 0; /* empty stdin: an empty line, which the server refuses with its own words */
    }
    if (len == -E2BIG)
        return failure_usage(fail, "the first line of stdin is longer than %zu characters",
                             size - 1);
    if (len < 0)
        return failure_failed(fail, (int)len, "cannot read stdin: %s", strerror((int)-len));
    return 0;
}
