/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded, thread-safe map from Redis key names to copies of what was read from them, for the
 * store's client-side cache. It knows nothing of Redis: the store fills it and tells it which keys
 * changed. Fills are two-phase (begin, then finish) so that an invalidation that arrives while a
 * read is in flight wins over the value that read returns. */
#ifndef EMP_STORE_CACHE_H
#define EMP_STORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache;

/* The value of an entry: copied into a caller's buffer on a hit, freed on eviction. */
struct cache_value_ops {
    /* Copies value into out; returns 0 or -ENOMEM. */
    int (*copy)(const void *value, void *out);
    void (*free)(void *value);
};

/* max_entries == 0 makes a cache that never holds anything. Free with cache_free(). */
int cache_new(size_t max_entries, struct cache **ret_cache);
void cache_free(struct cache *cache);

/* While disabled, every lookup misses and nothing is stored (the store disables the cache while
 * it cannot hear of changes). Disabling clears it. */
void cache_set_enabled(struct cache *cache, bool enabled);
bool cache_enabled(const struct cache *cache);

/* 1 and the value copied into out on a hit, 0 on a miss, -ENOMEM if the copy failed. */
int cache_get(struct cache *cache, const char *key, const struct cache_value_ops *ops, void *out);

/* Announces a read of key; returns a ticket for cache_finish(), 0 when the cache is disabled. */
uint64_t cache_begin(struct cache *cache, const char *key);
/* Stores value for key if no invalidation of key (nor a clear) came since cache_begin(ticket);
 * otherwise frees it with ops->free. value is owned by the cache from here on. */
void cache_finish(struct cache *cache, const char *key, uint64_t ticket,
                  const struct cache_value_ops *ops, void *value);

/* key changed: forget it (also an announced read of it). */
void cache_invalidate(struct cache *cache, const char *key);
/* Forgets everything. */
void cache_clear(struct cache *cache);

#endif
