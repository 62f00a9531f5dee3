/* SPDX-License-Identifier: Apache-2.0 */
/* Why an emp command failed, in words for a person and as the exit status the contract gives that
 * kind of failure (1 the server said no, 2 usage, 3 unreachable). Filled once, where the failure
 * is found; printed once, by main. */
#ifndef EMP_CLI_FAILURE_H
#define EMP_CLI_FAILURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "emp/error.h"

enum failure_status {
    FAILURE_NONE = 0,
    FAILURE_FAILED = 1,      /* the server answered an error, or the command's goal failed */
    FAILURE_USAGE = 2,       /* bad arguments or input: nothing was sent */
    FAILURE_UNREACHABLE = 3, /* no answer from emp-server, or an answer that is not JSON */
};

#define FAILURE_BODY_MAX (64 * 1024) /* the most of a server's error body kept for printing */

/* The first failure recorded wins; later ones are ignored, so that callers may add context with
 * failure_prefix() but never overwrite the cause. */
struct failure {
    enum failure_status status;
    struct emp_error error;      /* the one-line message (error.message) */
    struct emp_errlist *details; /* every problem when there are several, or NULL; owned */
    char *body;                  /* the server's error body as received, or NULL; owned */
    size_t body_len;
    bool spec_error; /* details come from local validation in the API's shape */
};

void failure_init(struct failure *f);
/* Frees what f owns and empties it. Accepts NULL. */
void failure_clear(struct failure *f);
bool failure_is_set(const struct failure *f);

/* Each records a failure of its kind (if f is still empty) and returns the negative errno the
 * caller should return: -EINVAL for usage, -EHOSTUNREACH for unreachable, errno_value (negative)
 * for failed. */
int failure_usage(struct failure *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int failure_unreachable(struct failure *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int failure_failed(struct failure *f, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error answer of emp-server (HTTP status >= 400) with its body. A body in the API's error shape
 * becomes an exit-1 failure carrying the message and every detail; anything else (a proxy's HTML
 * page) is an exit-3 failure naming server_url. Returns -EREMOTEIO or -EHOSTUNREACH. */
int failure_server(struct failure *f, const char *server_url, long http_status, const char *body,
                   size_t body_len);

/* Every problem local validation of an app spec found (errs->count >= 1), as an exit-2 failure;
 * the message says which file. Returns -EINVAL. */
int failure_spec(struct failure *f, const char *file, const struct emp_errlist *errs);

/* Adds context in front of the message ("deploy app.json: "). */
void failure_prefix(struct failure *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints f to err: "emp: MESSAGE" and one "  - FIELD: MESSAGE" line per problem when there are
 * several. With json, a server's error body goes out exactly as received (and a local spec error
 * in the same shape), followed by a newline. */
void failure_print(const struct failure *f, bool json, FILE *err);

/* The process exit status for f: 0 when empty. */
int failure_exit_status(const struct failure *f);

#endif
