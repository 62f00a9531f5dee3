/* SPDX-License-Identifier: Apache-2.0 */
/* Sharded hash map with LRU eviction. An entry is either pending (a read of it is in flight, under
 * a ticket) or ready (it holds a value). Invalidations remove entries in either state, which is
 * what makes a late read's value lose to a change that came before it finished. */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "emp/hash.h"

#define SHARDS  16
#define KEY_MAX 112

struct entry {
    char key[KEY_MAX];
    uint64_t hash;
    uint64_t ticket; /* of the read that may fill it */
    bool ready;
    void *value;
    const struct cache_value_ops *ops;
    struct entry *chain;
    struct entry *lru_prev, *lru_next; /* lru_prev towards the most recently used */
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, max;
    struct entry *lru_head, *lru_tail; /* most and least recently used */
};

struct cache {
    atomic_bool enabled;
    atomic_uint_fast64_t next_ticket;
    size_t max_entries;
    struct shard shards[SHARDS];
};

int cache_new(size_t max_entries, struct cache **ret_cache)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->max_entries = max_entries;
    atomic_init(&c->next_ticket, 1);
    atomic_init(&c->enabled, false);
    size_t per_shard = (max_entries + SHARDS - 1) / SHARDS;
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->max = per_shard;
        s->nbuckets = 16;
        while (s->nbuckets < per_shard * 2)
            s->nbuckets *= 2;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (!s->buckets) {
            cache_free(c);
            return -ENOMEM;
        }
    }
    *ret_cache = c;
    return 0;
}

static void lru_unlink(struct shard *s, struct entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct shard *s, struct entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = e;
    s->lru_head = e;
    if (!s->lru_tail)
        s->lru_tail = e;
}

static struct entry **find_slot(struct shard *s, const char *key, uint64_t hash)
{
    struct entry **p = &s->buckets[hash & (s->nbuckets - 1)];
    while (*p && ((*p)->hash != hash || strcmp((*p)->key, key) != 0))
        p = &(*p)->chain;
    return p;
}

static void remove_entry(struct shard *s, struct entry **slot)
{
    struct entry *e = *slot;
    *slot = e->chain;
    lru_unlink(s, e);
    if (e->ready && e->ops)
        e->ops->free(e->value);
    free(e);
    s->count--;
}

static struct shard *shard_of(struct cache *c, uint64_t hash)
{
    return &c->shards[(hash >> 59) % SHARDS];
}

void cache_free(struct cache *cache)
{
    if (!cache)
        return;
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &cache->shards[i];
        if (s->buckets)
            for (size_t b = 0; b < s->nbuckets; b++)
                while (s->buckets[b])
                    remove_entry(s, &s->buckets[b]);
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(cache);
}

void cache_set_enabled(struct cache *cache, bool enabled)
{
    atomic_store(&cache->enabled, enabled && cache->max_entries > 0);
    if (!enabled)
        cache_clear(cache);
}

bool cache_enabled(const struct cache *cache)
{
    return atomic_load(&cache->enabled);
}

int cache_get(struct cache *cache, const char *key, const struct cache_value_ops *ops, void *out)
{
    if (!atomic_load(&cache->enabled))
        return 0;
    uint64_t hash = emp_hash_text(key);
    struct shard *s = shard_of(cache, hash);
    pthread_mutex_lock(&s->lock);
    struct entry *e = *find_slot(s, key, hash);
    int r = 0;
    if (e && e->ready) {
        r = ops->copy(e->value, out) < 0 ? -ENOMEM : 1;
        lru_unlink(s, e);
        lru_push(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

uint64_t cache_begin(struct cache *cache, const char *key)
{
    if (!atomic_load(&cache->enabled) || strlen(key) >= KEY_MAX)
        return 0;
    uint64_t hash = emp_hash_text(key);
    struct shard *s = shard_of(cache, hash);
    uint64_t ticket = atomic_fetch_add(&cache->next_ticket, 1);
    pthread_mutex_lock(&s->lock);
    struct entry **slot = find_slot(s, key, hash);
    struct entry *e = *slot;
    if (e && e->ready) {
        ticket = 0; /* filled meanwhile by another read */
    } else if (e) {
        e->ticket = ticket; /* the newest read is the one that may fill it */
    } else {
        while (s->count >= s->max && s->lru_tail) {
            struct entry *victim = s->lru_tail;
            remove_entry(s, find_slot(s, victim->key, victim->hash));
        }
        slot = find_slot(s, key, hash); /* an eviction may have moved the chain */
        e = calloc(1, sizeof(*e));
        if (!e) {
            ticket = 0;
        } else {
            strcpy(e->key, key);
            e->hash = hash;
            e->ticket = ticket;
            *slot = e;
            lru_push(s, e);
            s->count++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ticket;
}

void cache_finish(struct cache *cache, const char *key, uint64_t ticket,
                  const struct cache_value_ops *ops, void *value)
{
    bool stored = false;
    if (ticket) {
        uint64_t hash = emp_hash_text(key);
        struct shard *s = shard_of(cache, hash);
        pthread_mutex_lock(&s->lock);
        struct entry *e = *find_slot(s, key, hash);
        if (e && !e->ready && e->ticket == ticket && atomic_load(&cache->enabled)) {
            e->value = value;
            e->ops = ops;
            e->ready = true;
            stored = true;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (!stored)
        ops->free(value);
}

void cache_invalidate(struct cache *cache, const char *key)
{
    uint64_t hash = emp_hash_text(key);
    struct shard *s = shard_of(cache, hash);
    pthread_mutex_lock(&s->lock);
    struct entry **slot = find_slot(s, key, hash);
    if (*slot)
        remove_entry(s, slot);
    pthread_mutex_unlock(&s->lock);
}

void cache_clear(struct cache *cache)
{
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &cache->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++)
            while (s->buckets[b])
                remove_entry(s, &s->buckets[b]);
        pthread_mutex_unlock(&s->lock);
    }
}
