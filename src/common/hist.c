/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket arithmetic of the log-linear histogram: below HIST_SUB a bucket per microsecond, above
 * it HIST_SUB buckets for each power of two, each as wide as the power divided by HIST_SUB. */
#include "emp/hist.h"

#include <math.h>

static unsigned log2_floor(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

unsigned hist_bucket(uint64_t value)
{
    if (value < HIST_SUB)
        return (unsigned)value;
    unsigned e = log2_floor(value); /* >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(value >> (e - HIST_SUB_BITS)) - HIST_SUB;
    unsigned bucket = HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB + sub;
    return bucket < HIST_BUCKETS ? bucket : HIST_BUCKETS - 1;
}

void hist_range(unsigned bucket, uint64_t *ret_low, uint64_t *ret_high)
{
    if (bucket < HIST_SUB) {
        *ret_low = bucket;
        *ret_high = bucket + 1u;
        return;
    }
    unsigned e = (bucket - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
    unsigned sub = (bucket - HIST_SUB) % HIST_SUB;
    uint64_t width = 1ull << (e - HIST_SUB_BITS);
    *ret_low = (1ull << e) + sub * width;
    *ret_high = *ret_low + width;
}

double hist_value(unsigned bucket)
{
    uint64_t low, high;
    hist_range(bucket, &low, &high);
    if (bucket < HIST_SUB)
        return (double)low;
    return ((double)low + (double)high) / 2.0;
}

double hist_quantile(const struct hist_entry *entries, size_t count, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += entries[i].count;
    if (total == 0)
        return 0;
    /* nearest rank: the smallest value with at least q of the counts at or below it */
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < count; i++) {
        seen += entries[i].count;
        if (seen >= rank)
            return hist_value(entries[i].bucket);
    }
    return hist_value(entries[count - 1].bucket);
}
