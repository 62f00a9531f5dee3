/* SPDX-License-Identifier: Apache-2.0 */
/* The store's cache map: hits, bounds, and the rule that a change seen while a read is in flight
 * wins over the value that read brings back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"

static int freed;

static int int_copy(const void *value, void *out)
{
    *(int *)out = *(const int *)value;
    return 0;
}

static void int_free(void *value)
{
    freed++;
    free(value);
}

static const struct cache_value_ops ops = {int_copy, int_free};

static int *boxed(int n)
{
    int *p = malloc(sizeof(*p));
    *p = n;
    return p;
}

static void put(struct cache *c, const char *key, int n)
{
    cache_finish(c, key, cache_begin(c, key), &ops, boxed(n));
}

static void test_hit_and_miss(void **state)
{
    struct cache *c;
    assert_int_equal(cache_new(64, &c), 0);
    int out = 0;
    /* disabled until the store hears of changes */
    put(c, "k", 1);
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    cache_set_enabled(c, true);
    put(c, "k", 2);
    assert_int_equal(cache_get(c, "k", &ops, &out), 1);
    assert_int_equal(out, 2);
    assert_int_equal(cache_get(c, "other", &ops, &out), 0);
    cache_invalidate(c, "k");
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    put(c, "k", 3);
    cache_set_enabled(c, false); /* clears */
    cache_set_enabled(c, true);
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    cache_free(c);
}

static void test_change_during_read_wins(void **state)
{
    struct cache *c;
    assert_int_equal(cache_new(64, &c), 0);
    cache_set_enabled(c, true);
    int out;
    /* the read starts, the key changes, the old value arrives: it must not be kept */
    uint64_t ticket = cache_begin(c, "k");
    assert_true(ticket != 0);
    cache_invalidate(c, "k");
    freed = 0;
    cache_finish(c, "k", ticket, &ops, boxed(1));
    assert_int_equal(freed, 1);
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    /* the same with a clear */
    ticket = cache_begin(c, "k");
    cache_clear(c);
    cache_finish(c, "k", ticket, &ops, boxed(1));
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    /* two reads in flight: only the newer may fill */
    uint64_t first = cache_begin(c, "k");
    uint64_t second = cache_begin(c, "k");
    cache_finish(c, "k", first, &ops, boxed(10));
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    cache_finish(c, "k", second, &ops, boxed(20));
    assert_int_equal(cache_get(c, "k", &ops, &out), 1);
    assert_int_equal(out, 20);
    /* a pending read does not hide a miss */
    cache_begin(c, "p");
    assert_int_equal(cache_get(c, "p", &ops, &out), 0);
    cache_free(c);
}

static void test_bounded_lru(void **state)
{
    struct cache *c;
    assert_int_equal(cache_new(160, &c), 0); /* 10 per shard */
    cache_set_enabled(c, true);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        put(c, key, i);
    }
    int kept = 0, out;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        kept += cache_get(c, key, &ops, &out);
    }
    assert_true(kept <= 160);
    assert_true(kept > 80);
    /* the most recent ones are what is left */
    snprintf(key, sizeof(key), "key-%d", 4999);
    assert_int_equal(cache_get(c, key, &ops, &out), 1);
    assert_int_equal(out, 4999);
    cache_free(c);

    /* a cache of size 0 never holds anything */
    assert_int_equal(cache_new(0, &c), 0);
    cache_set_enabled(c, true);
    assert_false(cache_enabled(c));
    put(c, "k", 1);
    assert_int_equal(cache_get(c, "k", &ops, &out), 0);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_change_during_read_wins),
        cmocka_unit_test(test_bounded_lru),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
