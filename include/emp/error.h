/* SPDX-License-Identifier: Apache-2.0 */
/* Errors that reach a person: a stable code, the HTTP status it maps to, the field it concerns and
 * a one-line message. Internal functions return 0 or a negative errno; this struct carries the
 * words. */
#ifndef EMP_ERROR_H
#define EMP_ERROR_H

#include <stdbool.h>
#include <stddef.h>

enum emp_errcode {
    EMP_OK = 0,
    EMP_ERR_MALFORMED_JSON,      /* 400 */
    EMP_ERR_BAD_REQUEST,         /* 400 */
    EMP_ERR_UNAUTHORIZED,        /* 401 */
    EMP_ERR_FORBIDDEN,           /* 403 */
    EMP_ERR_NOT_FOUND,           /* 404 */
    EMP_ERR_METHOD_NOT_ALLOWED,  /* 405 */
    EMP_ERR_CONFLICT,            /* 409 */
    EMP_ERR_PAYLOAD_TOO_LARGE,   /* 413 */
    EMP_ERR_UNSUPPORTED_MEDIA,   /* 415 */
    EMP_ERR_INVALID_FIELD,       /* 422 */
    EMP_ERR_MISSING_FIELD,       /* 422 */
    EMP_ERR_UNKNOWN_FIELD,       /* 422 */
    EMP_ERR_OUT_OF_RANGE,        /* 422 */
    EMP_ERR_THROTTLED,           /* 429 */
    EMP_ERR_INTERNAL,            /* 500 */
    EMP_ERR_STORE_UNAVAILABLE,   /* 503 */
    EMP_ERR_CLUSTER_UNAVAILABLE, /* 503 */
    EMP_ERR_NOT_SUPPORTED,       /* 501 */
    EMP_ERR_BUSY,                /* 503 */
    EMP_ERR__COUNT
};

#define EMP_ERR_FIELD_MAX   128
#define EMP_ERR_MESSAGE_MAX 512

struct emp_error {
    enum emp_errcode code;
    char field[EMP_ERR_FIELD_MAX];
    char message[EMP_ERR_MESSAGE_MAX];
};

/* A list of problems, for validation that reports every problem at once. Bounded: after
 * EMP_ERRLIST_MAX entries further ones are counted in `dropped` but not kept. */
#define EMP_ERRLIST_MAX 64
struct emp_errlist {
    struct emp_error items[EMP_ERRLIST_MAX];
    size_t count;
    size_t dropped;
};

/* The stable, machine-readable name of a code ("invalid_field"). */
const char *emp_errcode_name(enum emp_errcode code);
/* The HTTP status a code maps to. */
int emp_errcode_http_status(enum emp_errcode code);

/* Fills err if it is still empty (the first failure wins). field may be NULL. Returns -errno_value
 * so that callers can write `return emp_error_set(err, -EINVAL, ...)`. err may be NULL. */
int emp_error_set(struct emp_error *err, int errno_value, enum emp_errcode code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Prepends context ("deploy app 'x': ") to an error that is already set. */
void emp_error_prefix(struct emp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool emp_error_is_set(const struct emp_error *err);
void emp_error_clear(struct emp_error *err);

/* Appends a problem to the list. */
void emp_errlist_add(struct emp_errlist *list, enum emp_errcode code, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void emp_errlist_init(struct emp_errlist *list);

#endif
