/* SPDX-License-Identifier: Apache-2.0 */
/* The error struct and the table that ties each stable error code to its name and HTTP status. */
#include "emp/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int http_status;
} codes[EMP_ERR__COUNT] = {
    [EMP_OK] = {"ok", 200},
    [EMP_ERR_MALFORMED_JSON] = {"malformed_json", 400},
    [EMP_ERR_BAD_REQUEST] = {"bad_request", 400},
    [EMP_ERR_UNAUTHORIZED] = {"unauthorized", 401},
    [EMP_ERR_FORBIDDEN] = {"forbidden", 403},
    [EMP_ERR_NOT_FOUND] = {"not_found", 404},
    [EMP_ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
    [EMP_ERR_CONFLICT] = {"conflict", 409},
    [EMP_ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413},
    [EMP_ERR_UNSUPPORTED_MEDIA] = {"unsupported_media_type", 415},
    [EMP_ERR_INVALID_FIELD] = {"invalid_field", 422},
    [EMP_ERR_MISSING_FIELD] = {"missing_field", 422},
    [EMP_ERR_UNKNOWN_FIELD] = {"unknown_field", 422},
    [EMP_ERR_OUT_OF_RANGE] = {"out_of_range", 422},
    [EMP_ERR_THROTTLED] = {"too_many_requests", 429},
    [EMP_ERR_INTERNAL] = {"internal", 500},
    [EMP_ERR_STORE_UNAVAILABLE] = {"store_unavailable", 503},
    [EMP_ERR_CLUSTER_UNAVAILABLE] = {"cluster_unavailable", 503},
    [EMP_ERR_NOT_SUPPORTED] = {"not_supported", 501},
    [EMP_ERR_BUSY] = {"busy", 503},
};

const char *emp_errcode_name(enum emp_errcode code)
{
    if ((unsigned)code >= EMP_ERR__COUNT)
        return "internal";
    return codes[code].name;
}

int emp_errcode_http_status(enum emp_errcode code)
{
    if ((unsigned)code >= EMP_ERR__COUNT)
        return 500;
    return codes[code].http_status;
}

static void fill(struct emp_error *err, enum emp_errcode code, const char *field, const char *fmt,
                 va_list ap)
{
    err->code = code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

int emp_error_set(struct emp_error *err, int errno_value, enum emp_errcode code, const char *field,
                  const char *fmt, ...)
{
    if (err && err->code == EMP_OK) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, field, fmt, ap);
        va_end(ap);
    }
    return errno_value;
}

void emp_error_prefix(struct emp_error *err, const char *fmt, ...)
{
    if (!err || err->code == EMP_OK)
        return;
    char prefix[EMP_ERR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char joined[EMP_ERR_MESSAGE_MAX];
    snprintf(joined, sizeof(joined), "%s%s", prefix, err->message);
    memcpy(err->message, joined, sizeof(joined));
}

bool emp_error_is_set(const struct emp_error *err)
{
    return err && err->code != EMP_OK;
}

void emp_error_clear(struct emp_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

void emp_errlist_init(struct emp_errlist *list)
{
    list->count = 0;
    list->dropped = 0;
}

void emp_errlist_add(struct emp_errlist *list, enum emp_errcode code, const char *field,
                     const char *fmt, ...)
{
    if (list->count >= EMP_ERRLIST_MAX) {
        list->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fill(&list->items[list->count++], code, field, fmt, ap);
    va_end(ap);
}
