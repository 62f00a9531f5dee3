/* SPDX-License-Identifier: Apache-2.0 */
/* What the tests of the aggregator and of the store's trace metrics share: an aggregator whose
 * services "alice/NAME" are the apps "id-NAME" (anything else is no EMP app), and spans built
 * from their fields. Include after cmocka.h. */
#ifndef EMP_TEST_TRACE_FIXTURE_H
#define EMP_TEST_TRACE_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aggregate.h"
#include "emp/hash.h"

static bool fixture_resolve(void *ctx, const char *service, uint64_t hash, char *ret_id)
{
    (void)ctx;
    assert_true(hash == emp_hash_text(service)); /* the aggregator hands on the name's hash */
    if (strncmp(service, "alice/", 6) != 0)
        return false;
    snprintf(ret_id, AGG_ID_MAX, "id-%s", service + 6);
    return true;
}

/* 10 s buckets, spans up to lateness_s old, halves joined within 1 s, 1,000 of them waiting. */
static struct agg_config fixture_config(int64_t lateness_s)
{
    return (struct agg_config){.bucket_s = 10,
                               .lateness_s = lateness_s,
                               .future_s = 60,
                               .join_ms = 1000,
                               .pending_max = 1000,
                               .resolve = fixture_resolve};
}

static struct agg *fixture_agg_with(const struct agg_config *config)
{
    struct agg *a;
    assert_int_equal(agg_new(config, &a), 0);
    return a;
}

static struct agg *fixture_agg(int64_t lateness_s)
{
    struct agg_config config = fixture_config(lateness_s);
    return fixture_agg_with(&config);
}

static struct span fixture_span(uint64_t trace, uint64_t id, uint64_t parent, enum span_kind kind,
                                const char *service, const char *remote, int64_t ts, int64_t dur)
{
    struct span s = {.trace_lo = trace,
                     .id = id,
                     .parent_id = parent,
                     .has_parent = parent != 0,
                     .kind = kind,
                     .timestamp_us = ts,
                     .duration_us = dur};
    snprintf(s.local_service, sizeof(s.local_service), "%s", service);
    snprintf(s.remote_service, sizeof(s.remote_service), "%s", remote ? remote : "");
    s.local_hash = emp_hash_text(s.local_service); /* as the parser hashes what it copies */
    s.remote_hash = emp_hash_text(s.remote_service);
    return s;
}

#endif
