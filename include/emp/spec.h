/* SPDX-License-Identifier: Apache-2.0 */
/* The app spec (app.json): its model, its validation (REQ-4: every problem named, with what would
 * be accepted) and its canonical JSON form. The same code runs in `emp deploy` and in emp-server.
 */
#ifndef EMP_SPEC_H
#define EMP_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emp/error.h"
#include "emp/names.h"
#include "emp/quality.h"

/* Bounds on everything a spec can make the server hold. */
#define SPEC_IMAGE_MAX            512
#define SPEC_ENVS_MAX             128
#define SPEC_ENV_VALUE_MAX        32768
#define SPEC_COMMAND_MAX          64
#define SPEC_ARG_MAX              4096
#define SPEC_REPLICAS_MAX         1000
#define SPEC_HEALTH_PATH_MAX      1024
#define SPEC_CPU_MAX_MILLIS       256000      /* 256 cores */
#define SPEC_MEMORY_MIN           (1LL << 20) /* 1Mi */
#define SPEC_MEMORY_MAX           (1LL << 40) /* 1Ti */
#define SPEC_DEFAULT_MAX_REPLICAS 10

struct spec_env {
    char *name;
    char *value;
};

struct spec_metric {
    char *values;            /* as the user wrote it */
    struct qm_target target; /* target.kind says which metric */
};

struct emp_spec {
    char *name;
    char *docker_image; /* NULL when absent */
    char **command;     /* NULL-terminated argv, NULL when absent */
    size_t command_len;
    bool stateless;
    int port;
    struct spec_env *envs;
    size_t envs_len;
    struct spec_metric *metrics;
    size_t metrics_len;
    char *cpu;            /* as written ("250m"), NULL when absent */
    int64_t cpu_millis;   /* 0 when absent */
    char *memory;         /* as written ("256Mi"), NULL when absent */
    int64_t memory_bytes; /* 0 when absent */
    int replicas_min;
    int replicas_max;
    int replicas_initial;
    char *health_path; /* NULL when absent */
};

/* Parses and validates a spec from JSON text. On success *ret_spec is a new spec (spec_free) and 0
 * is returned. Otherwise -EINVAL, and errs lists every problem (the first is the most basic one:
 * malformed JSON, or the first invalid field in document order). */
int spec_parse(const char *text, size_t len, struct emp_spec **ret_spec, struct emp_errlist *errs);

enum spec_json_flags {
    SPEC_JSON_DEFAULT = 0,
    SPEC_JSON_OMIT_ENVS = 1 << 0, /* for callers that may not read envs (the scheduler role) */
};

/* The canonical JSON text of a spec, defaults filled in. malloc'd; free() it. NULL on ENOMEM. */
char *spec_to_json(const struct emp_spec *spec, enum spec_json_flags flags);

/* Reads replicas.min and .max out of the text spec_to_json() wrote, without parsing all of it
 * (the API shows them with every app). Returns 0, or -EINVAL for other text. */
int spec_json_replica_bounds(const char *canonical, int *ret_min, int *ret_max);

/* Adds or replaces the quality metric named metric (REQ-8). Returns 0, or -EINVAL with err naming
 * the problem, leaving spec unchanged. */
int spec_set_metric(struct emp_spec *spec, const char *metric, const char *values,
                    struct emp_error *err);

/* Finds the declared target of a kind; NULL if the app declares none. */
const struct spec_metric *spec_find_metric(const struct emp_spec *spec, enum qm_kind kind);

/* References to other apps in env values: "${app:NAME}" anywhere in a value stands for the address
 * (HOST:PORT) at which the app NAME of the same user is reached from this app's replicas. The
 * backend decides what the address is when it starts a replica (see cluster_app_address). */
#define SPEC_REF_PREFIX "${app:"
#define SPEC_REFS_MAX   32 /* distinct apps one spec may reference */

/* Finds the first reference in value at or after *pos. Returns 1 with name (at least
 * NAMES_LABEL_MAX + 1 bytes) filled, *ret_start at its "$" and *pos just past its "}"; 0 when
 * there is none; -EINVAL when "${app:" is not followed by an app name and "}". */
int spec_ref_next(const char *value, size_t *pos, size_t *ret_start, char *name);

/* The apps spec references, each once, in the order they first appear: fills names (SPEC_REFS_MAX
 * of NAMES_LABEL_MAX + 1 bytes) and returns how many. A parsed spec's references are valid. */
size_t spec_refs(const struct emp_spec *spec, char (*names)[NAMES_LABEL_MAX + 1]);

/* value with each reference replaced by what resolve() writes for its name into buf (size bytes,
 * NUL-terminated); resolve returns 0 or a negative errno with err set, which stops the expansion.
 * Returns 0 with a malloc'd *ret, or a negative errno. */
typedef int (*spec_ref_resolve_fn)(void *ctx, const char *name, char *buf, size_t size,
                                   struct emp_error *err);
int spec_ref_expand(const char *value, spec_ref_resolve_fn resolve, void *ctx, char **ret,
                    struct emp_error *err);

/* Accepts NULL. */
void spec_free(struct emp_spec *spec);

#endif
