/* SPDX-License-Identifier: Apache-2.0 */
/* Records why a command failed and prints it the way the CLI contract says: human lines on stderr,
 * or the server's error body as received with -o json. */
#include "failure.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "emp/jsonutil.h"
#include "output.h"

void failure_init(struct failure *f)
{
    memset(f, 0, sizeof(*f));
}

void failure_clear(struct failure *f)
{
    if (!f)
        return;
    free(f->details);
    free(f->body);
    failure_init(f);
}

bool failure_is_set(const struct failure *f)
{
    return f && f->status != FAILURE_NONE;
}

static int record(struct failure *f, enum failure_status status, int errno_value,
                  enum emp_errcode code, const char *fmt, va_list ap)
{
    if (!f || f->status != FAILURE_NONE)
        return errno_value;
    f->status = status;
    f->error.code = code;
    vsnprintf(f->error.message, sizeof(f->error.message), fmt, ap);
    return errno_value;
}

int failure_usage(struct failure *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = record(f, FAILURE_USAGE, -EINVAL, EMP_ERR_BAD_REQUEST, fmt, ap);
    va_end(ap);
    return r;
}

int failure_unreachable(struct failure *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = record(f, FAILURE_UNREACHABLE, -EHOSTUNREACH, EMP_ERR_INTERNAL, fmt, ap);
    va_end(ap);
    return r;
}

int failure_failed(struct failure *f, int errno_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r =
        record(f, FAILURE_FAILED, errno_value < 0 ? errno_value : -EIO, EMP_ERR_INTERNAL, fmt, ap);
    va_end(ap);
    return r;
}

/* Copies the details of an API error body; NULL when it has fewer than two. */
static struct emp_errlist *details_from_body(const json_t *body)
{
    const json_t *list = json_object_get(json_object_get(body, "error"), "details");
    if (json_array_size(list) < 2)
        return NULL;
    struct emp_errlist *details = malloc(sizeof(*details));
    if (!details)
        return NULL;
    emp_errlist_init(details);
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        struct emp_error one = {0};
        json_t *wrapped = json_pack("{s:O}", "error", item);
        if (wrapped && jsonu_error_from_body(wrapped, &one) == 0)
            emp_errlist_add(details, one.code, one.field, "%s", one.message);
        json_decref(wrapped);
    }
    return details;
}

int failure_server(struct failure *f, const char *server_url, long http_status, const char *body,
                   size_t body_len)
{
    if (!f || f->status != FAILURE_NONE)
        return -EREMOTEIO;
    struct emp_error parse_err = {0};
    json_t *doc = jsonu_parse(body, body_len, &parse_err);
    struct emp_error answer = {0};
    if (!doc || jsonu_error_from_body(doc, &answer) < 0) {
        json_decref(doc);
        return failure_unreachable(f,
                                   "emp-server at %s answered HTTP %ld without a JSON error: is "
                                   "--server (or EMP_SERVER) the address of emp-server?",
                                   server_url, http_status);
    }
    f->status = FAILURE_FAILED;
    f->error = answer;
    f->details = details_from_body(doc);
    json_decref(doc);
    size_t keep = body_len < FAILURE_BODY_MAX ? body_len : FAILURE_BODY_MAX;
    f->body = malloc(keep + 1);
    if (f->body) {
        memcpy(f->body, body, keep);
        f->body[keep] = '\0';
        f->body_len = keep;
    }
    return -EREMOTEIO;
}

int failure_spec(struct failure *f, const char *file, const struct emp_errlist *errs)
{
    if (!f || f->status != FAILURE_NONE)
        return -EINVAL;
    f->status = FAILURE_USAGE;
    f->spec_error = true;
    if (errs->count == 0) {
        f->error.code = EMP_ERR_INVALID_FIELD;
        snprintf(f->error.message, sizeof(f->error.message), "%s is not a valid app spec", file);
        return -EINVAL;
    }
    f->error = errs->items[0];
    emp_error_prefix(&f->error, "%s: ", file);
    if (errs->count > 1) {
        f->details = malloc(sizeof(*f->details));
        if (f->details)
            memcpy(f->details, errs, sizeof(*errs));
    }
    return -EINVAL;
}

void failure_prefix(struct failure *f, const char *fmt, ...)
{
    if (!f || f->status == FAILURE_NONE)
        return;
    char prefix[EMP_ERR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    emp_error_prefix(&f->error, "%s", prefix);
}

static void print_json(const struct failure *f, FILE *err)
{
    if (f->body) {
        output_json(err, f->body, f->body_len);
        return;
    }
    json_t *doc = jsonu_error_body(&f->error, f->details);
    char *text = doc ? jsonu_dump(doc) : NULL;
    if (text)
        output_json(err, text, strlen(text));
    free(text);
    json_decref(doc);
}

void failure_print(const struct failure *f, bool json, FILE *err)
{
    if (!failure_is_set(f))
        return;
    if (json && (f->body || f->spec_error)) {
        print_json(f, err);
        return;
    }
    fputs("emp: ", err);
    output_text(err, f->error.message);
    fputc('\n', err);
    if (!f->details || f->details->count < 2)
        return;
    for (size_t i = 0; i < f->details->count; i++) {
        const struct emp_error *item = &f->details->items[i];
        fputs("  - ", err);
        if (item->field[0]) {
            output_text(err, item->field);
            fputs(": ", err);
        }
        output_text(err, item->message);
        fputc('\n', err);
    }
    if (f->details->dropped)
        fprintf(err, "  - and %zu more problems\n", f->details->dropped);
}

int failure_exit_status(const struct failure *f)
{
    return f ? (int)f->status : 0;
}
