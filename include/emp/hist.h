/* SPDX-License-Identifier: Apache-2.0 */
/* Latency histograms with bounded relative error: log-linear buckets (32 linear steps in every
 * power of two), so two histograms merge by adding their counts, bucket by bucket, wherever they
 * were counted. Values are microseconds. A quantile read from a histogram is within
 * HIST_RELATIVE_ERROR of a value that holds that rank among the values counted. */
#ifndef EMP_HIST_H
#define EMP_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS       5
#define HIST_SUB            (1u << HIST_SUB_BITS)    /* linear steps per power of two */
#define HIST_BUCKETS        1024                     /* covers 0 µs to about 19 hours */
#define HIST_RELATIVE_ERROR (1.0 / (2.0 * HIST_SUB)) /* a bucket's half width, relative */

/* The bucket of a value (values beyond the last bucket's range go into it). */
unsigned hist_bucket(uint64_t value_us);
/* The value a bucket stands for: the middle of its range (exact below HIST_SUB µs). */
double hist_value(unsigned bucket);
/* The range [low, high) of a bucket. */
void hist_range(unsigned bucket, uint64_t *ret_low, uint64_t *ret_high);

/* A histogram as (bucket, count) pairs in ascending bucket order. */
struct hist_entry {
    uint16_t bucket;
    uint64_t count;
};

/* The q-quantile (0 < q <= 1, nearest rank) of the counts, in microseconds; 0 for none. */
double hist_quantile(const struct hist_entry *entries, size_t count, double q);

#endif
