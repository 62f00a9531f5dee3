/* SPDX-License-Identifier: Apache-2.0 */
/* Quality metrics (REQ-5, REQ-8): the four metric kinds a user may declare and the syntax of their
 * values. Parsing only; what the scheduler does with a target is not this module's business. */
#ifndef EMP_QUALITY_H
#define EMP_QUALITY_H

#include "emp/error.h"

enum qm_kind { QM_LATENCY, QM_THROUGHPUT, QM_AVAILABILITY, QM_ERROR_RATE, QM__COUNT };

#define QM_VALUES_MAX 64 /* longest values string accepted */

struct qm_target {
    enum qm_kind kind;
    int percentile;      /* latency: 50, 90, 95 or 99 */
    double threshold_ms; /* latency: the bound, in milliseconds */
    double rps;          /* throughput */
    double percent;      /* availability (at least) and error_rate (below) */
};

/* Maps "latency" etc. to its kind. Returns 0 or -EINVAL. */
int qm_kind_parse(const char *name, enum qm_kind *ret_kind);
const char *qm_kind_name(enum qm_kind kind);
/* "latency, throughput, availability, error_rate" */
const char *qm_known_names(void);
/* The accepted form of the values of a kind, with an example, for error messages. */
const char *qm_accepted_form(enum qm_kind kind);

/* Parses the values string of a metric, e.g. "p95 < 200ms". field names the field in messages.
 * Returns 0 and fills *ret, or -EINVAL with err saying what is wrong and what would be accepted. */
int qm_parse(enum qm_kind kind, const char *values, const char *field, struct qm_target *ret,
             struct emp_error *err);

#endif
