/* SPDX-License-Identifier: Apache-2.0 */
/* Strict JSON parsing and the API's error body, shared by emp-server and the emp CLI. */
#include "emp/jsonutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *jsonu_parse(const char *buf, size_t len, struct emp_error *err)
{
    json_error_t jerr;
    if (len == 0) {
        emp_error_set(err, -EINVAL, EMP_ERR_MALFORMED_JSON, NULL,
                      "the request body is empty: send a JSON document");
        return NULL;
    }
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc) {
        emp_error_set(err, -EINVAL, EMP_ERR_MALFORMED_JSON, NULL,
                      "the body is not valid JSON: %s at line %d, column %d", jerr.text, jerr.line,
                      jerr.column);
        return NULL;
    }
    return doc;
}

const char *jsonu_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

int jsonu_check_known(const json_t *obj, const char *const *known, const char *prefix,
                      struct emp_errlist *errs)
{
    int unknown = 0;
    const char *key;
    json_t *value;
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (const char *const *k = known; *k; k++)
        used += (size_t)snprintf(list + used, used < sizeof(list) ? sizeof(list) - used : 0, "%s%s",
                                 k == known ? "" : ", ", *k);
    json_object_foreach((json_t *)obj, key, value)
    {
        bool found = false;
        for (const char *const *k = known; *k && !found; k++)
            found = strcmp(*k, key) == 0;
        if (found)
            continue;
        unknown++;
        char field[EMP_ERR_FIELD_MAX];
        snprintf(field, sizeof(field), "%s%.100s", prefix, key);
        emp_errlist_add(errs, EMP_ERR_UNKNOWN_FIELD, field,
                        "unknown field '%s': the accepted fields%s%.*s are %s", field,
                        prefix[0] ? " of " : "", prefix[0] ? (int)strlen(prefix) - 1 : 0, prefix,
                        list);
    }
    return unknown;
}

char *jsonu_dump(const json_t *value)
{
    /* 15 significant digits: what was computed, without binary noise (0.05, not
     * 0.05000000000000001) */
    return json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
}

static json_t *error_object(const struct emp_error *err)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    json_object_set_new(obj, "code", json_string(emp_errcode_name(err->code)));
    json_object_set_new(obj, "message", json_string(err->message));
    if (err->field[0])
        json_object_set_new(obj, "field", json_string(err->field));
    return obj;
}

json_t *jsonu_error_body(const struct emp_error *err, const struct emp_errlist *details)
{
    json_t *inner = error_object(err);
    if (!inner)
        return NULL;
    if (details && details->count > 1) {
        json_t *list = json_array();
        for (size_t i = 0; i < details->count; i++)
            json_array_append_new(list, error_object(&details->items[i]));
        json_object_set_new(inner, "details", list);
    }
    json_t *body = json_object();
    json_object_set_new(body, "error", inner);
    return body;
}

int jsonu_error_from_body(const json_t *body, struct emp_error *err)
{
    const json_t *inner = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(inner, "code"));
    const char *message = json_string_value(json_object_get(inner, "message"));
    if (!code || !message)
        return -EINVAL;
    enum emp_errcode found = EMP_ERR_INTERNAL;
    for (int i = 1; i < EMP_ERR__COUNT; i++)
        if (strcmp(emp_errcode_name((enum emp_errcode)i), code) == 0)
            found = (enum emp_errcode)i;
    const char *field = json_string_value(json_object_get(inner, "field"));
    emp_error_clear(err);
    emp_error_set(err, 0, found, field, "%s", message);
    return 0;
}
