/* SPDX-License-Identifier: Apache-2.0 */
/* The naming rules EMP enforces: DNS-1035 labels for usernames and app names (they name Kubernetes
 * namespaces and Services), Kubernetes' environment variable names, and app ids (UUIDs). */
#ifndef EMP_NAMES_H
#define EMP_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "emp/error.h"

#define NAMES_LABEL_MAX 40  /* usernames and app names */
#define NAMES_ENV_MAX   253 /* Kubernetes' limit for an env var name */
#define NAMES_UUID_LEN  36

/* True if s is a DNS-1035 label of at most max characters: a lowercase letter, then lowercase
 * letters, digits and '-', not ending in '-'. */
bool names_is_dns_label(const char *s, size_t max);

/* Checks a username or app name (what = "name", "username") and fills err with a message that
 * quotes the input, says the rule and suggests a valid spelling. Also refuses labels shaped like an
 * app id, so that a path segment is unambiguous. Returns 0 or -EINVAL. */
int names_check_label(const char *what, const char *s, struct emp_error *err);

/* Kubernetes' rule for env var names: letters, digits, '_', '-', '.', not starting with a digit. */
bool names_is_env_name(const char *s);

/* True for the reserved env names EMP sets itself: KAFKAADDRESS, PORT and EMP_*. */
bool names_is_reserved_env(const char *s);

/* True for the canonical lowercase text form of a UUID (8-4-4-4-12 hex digits). */
bool names_is_uuid(const char *s);

#endif
