/* SPDX-License-Identifier: Apache-2.0 */
/* JSON helpers over jansson for the modules whose job is JSON documents (the app spec, the API
 * handlers, the CLI): strict parsing with messages a person can act on, and field checks. */
#ifndef EMP_JSONUTIL_H
#define EMP_JSONUTIL_H

#include <jansson.h>
#include <stddef.h>

#include "emp/error.h"

/* Parses a JSON document from buf, rejecting duplicate keys. On failure fills err with
 * malformed_json and where ("at line 2, column 5"). Returns a new reference (json_decref) or NULL.
 */
json_t *jsonu_parse(const char *buf, size_t len, struct emp_error *err);

/* "a string", "a number", "an object", ... for messages such as "port must be an integer, not a
 * string". */
const char *jsonu_type_name(const json_t *value);

/* Adds an unknown_field problem for every key of obj not in known (NULL-terminated), naming the
 * accepted keys. prefix is the path of obj ("" at the top, "replicas." inside). Returns the number
 * of unknown keys. */
int jsonu_check_known(const json_t *obj, const char *const *known, const char *prefix,
                      struct emp_errlist *errs);

/* Compact text of value; free() it. NULL on allocation failure. */
char *jsonu_dump(const json_t *value);

/* The error body of the API: {"error":{"code","message","field"?,"details"?}}. details, when given
 * and holding more than one problem, lists them all. Returns a new reference. */
json_t *jsonu_error_body(const struct emp_error *err, const struct emp_errlist *details);

/* Reads an error body back into err (the CLI). Returns 0 if body had the API's error shape. */
int jsonu_error_from_body(const json_t *body, struct emp_error *err);

#endif
