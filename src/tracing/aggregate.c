/* SPDX-License-Identifier: Apache-2.0 */
/* The aggregator. Counts that need one span only (requests, errors, latency) are taken at once;
 * what needs two (an edge needs the client and the server half of a call, self time needs a
 * server span and the client calls inside it) waits in a pending table, keyed by trace and span
 * id, until its other half comes or its window passes. A call whose server never comes is an
 * edge to the uninstrumented service its client named (remoteEndpoint), as in Zipkin's linker. */
#include "aggregate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- pending halves ---- */

enum role {
    ROLE_SERVER_ID, /* a server span, by its id (the shared-span convention's key) */
    ROLE_CALL,      /* a client span waiting for its server, by its id */
    ROLE_CHILDREN,  /* the calls a service made inside span `id`, by that id and service */
};

/* A service name that pending halves hold (once, however many hold it), and the app its spans
 * were last resolved to: a pending half's app is its service's ("" while it was only named as a
 * remote service), so that records need not carry it. */
struct name {
    uint64_t hash;
    struct name *next; /* in its slot of the name table, or in the free list */
    uint32_t refs;
    char app_id[AGG_ID_MAX];
    char text[SPAN_SERVICE_MAX];
};

/* A service name and its hash (emp_hash_text()), as spans and names carry them. */
struct service_ref {
    const char *name;
    uint64_t hash;
};

static struct service_ref service_ref_of(const struct name *n)
{
    return (struct service_ref){n->text, n->hash};
}

static bool same_service(const struct service_ref *x, const struct service_ref *y)
{
    return x->hash == y->hash && strcmp(x->name, y->name) == 0;
}

/* Whether n is the name of service. */
static bool name_is(const struct name *n, const struct service_ref *service)
{
    struct service_ref ref = service_ref_of(n);
    return same_service(&ref, service);
}

/* Two cache lines, aligned: the table far outgrows the cache, and a record costs a miss for
 * each line of it that is read. */
struct pending {
    /* the first line: what a lookup reads of each record it passes (the key, the chain, the
     * role) and what most finds need next (the names) */
    uint64_t trace_hi, trace_lo, id;
    uint64_t service_hash;          /* in the key of ROLE_CHILDREN only: whose calls */
    struct pending *next_in_bucket; /* in its slot, or in the free list */
    struct name *names[2]; /* its service, and the remote one (NULL when none); a name is held
                            * once, so equal names are equal pointers */
    uint32_t slot;         /* of its key in the table (agg_slots) */
    uint8_t role;          /* enum role */
    bool has_parent : 1, shared : 1, error : 1;
    bool matched : 1; /* a server whose caller was found, a call whose server was */
    /* the second: what it carries */
    uint64_t parent_id;
    int64_t timestamp_us;
    int64_t duration_us;
    int64_t children_us; /* the calls' sum: ROLE_CHILDREN's, or what ROLE_SERVER_ID took over */
    int64_t deadline_us;
    /* the child convention's pair, while both wait: a ROLE_CALL and the server span that came
     * after it naming it as parent (the latest such), each the other's link */
    struct pending *link;
    uint32_t parent_slot;  /* of its parent's id (agg_slots) */
    uint32_t older, newer; /* by deadline (arrival order): pool positions + 1, 0 for none */
    uint16_t series_drain, series_at; /* ROLE_SERVER_ID's series: at position series_at - 1 of
                                       * the series while the drains are series_drain (mod
                                       * 2^16: a record waits for far fewer) */
} __attribute__((aligned(64)));
_Static_assert(sizeof(struct pending) == 128, "a pending record is two cache lines");

static const char *service_of(const struct pending *p)
{
    return p->names[0]->text;
}

/* The app of p's service, as resolved when a span of it last came. */
static const char *app_of(const struct pending *p)
{
    return p->names[0]->app_id;
}

static const char *remote_of(const struct pending *p)
{
    return p->names[1] ? p->names[1]->text : "";
}

#define HIST_OWED 8 /* dense counts that wait for their cell to come from memory */

struct agg {
    struct agg_config config;
    struct agg_counters counters;
    /* pending halves: records of a pool allocated once (its pages touched as they are used),
     * chained in a table by key, and the service names they carry */
    struct pending *pool, *free_pending;
    size_t pool_used; /* records ever taken from the pool */
    struct pending **table;
    size_t table_size; /* a power of two */
    size_t pending;
    struct pending *oldest, *newest;
    struct name *name_pool, *free_names;
    size_t names_used;
    struct name **name_table; /* NAME_SLOTS */
    /* counted since the last drain, with an index each (hash -> position + 1, open addressing
     * over INDEX_SIZE slots, cleared by the drain) */
    struct agg_series *series;
    size_t series_count, series_cap;
    struct agg_edge *edges;
    size_t edges_count, edges_cap;
    uint32_t *series_index;
    uint32_t *edges_index;
    struct agg_half *halves;
    size_t halves_count, halves_cap;
    struct agg_text *text; /* the names that edges and halves point to */
    size_t bytes;    /* what series, edges, halves, their histograms and names took from the heap */
    uint32_t drains; /* how many drains there were */
    uint64_t seed;   /* of the table's slots: random, so that no one can choose ids that collide */
    /* counts into dense histograms not yet made: each cell was asked for when its value came,
     * and is added to a few values later (hist_add), when it has come from memory */
    struct {
        struct agg_hist *hist;
        uint16_t bucket;
    } owed[HIST_OWED];
    uint32_t owed_count, owed_next; /* how many; the oldest, when all HIST_OWED are */
};

#define TEXT_CHUNK (64u << 10) /* bytes of names a chunk holds */

struct agg_text {
    struct agg_text *next; /* the chunk filled before */
    size_t used;
    char data[TEXT_CHUNK];
};

#define INDEX_SIZE  (1u << 16)          /* slots of each index */
#define NAME_SLOTS  (2 * AGG_NAMES_MAX) /* slots of the name table (a power of two) */
#define HALVES_MAX  16384               /* unjoined halves: time to drain */
#define ENTRIES_MAX (INDEX_SIZE / 2)    /* what an index holds, at most: a message more fits */
_Static_assert(ENTRIES_MAX < UINT16_MAX, "a series position fits a pending record's 16 bits");
#define AHEAD 4 /* spans whose slots are asked for before they are needed */

/* The position of the first entry of h whose bucket is not below bucket (h->len if none). Without
 * branches on the entries: latencies land in buckets no branch predictor guesses, and a search
 * that mispredicts every other step cost more than all the rest of counting a value. */
static uint32_t hist_find(const struct agg_hist *h, uint16_t bucket)
{
    if (!h->len)
        return 0;
    const struct agg_hist_entry *base = h->entries;
    for (uint32_t n = h->len; n > 1; n -= n / 2)
        base = base[n / 2].bucket < bucket ? base + n / 2 : base;
    return (uint32_t)(base - h->entries) + (base->bucket < bucket);
}

/* A dense histogram's range grown to take bucket in, with room for as many buckets again on the
 * side it grew, within [0, HIST_BUCKETS); false when out of memory (nothing changed). */
static bool hist_widen(struct agg *a, struct agg_hist *h, uint16_t bucket)
{
    unsigned low = h->low, high = (unsigned)h->low + h->span;
    if (bucket < low)
        low = 2u * bucket >= low ? 2u * bucket - low : 0;
    else
        high = 2u * (bucket + 1u) - high < HIST_BUCKETS ? 2u * (bucket + 1u) - high : HIST_BUCKETS;
    uint32_t *grown = realloc(h->counts, (high - low) * sizeof(*grown));
    if (!grown)
        return false;
    a->bytes += (high - low - h->span) * sizeof(*grown);
    unsigned shift = h->low - low;
    memmove(grown + shift, grown, h->span * sizeof(*grown));
    memset(grown, 0, shift * sizeof(*grown));
    memset(grown + shift + h->span, 0, (high - low - shift - h->span) * sizeof(*grown));
    h->counts = grown;
    h->low = (uint16_t)low;
    h->span = (uint16_t)(high - low);
    return true;
}

/* The histogram's AGG_HIST_SPARSE entries turned into counts over their range and bucket's. */
static bool hist_densify(struct agg *a, struct agg_hist *h, uint16_t bucket)
{
    uint16_t low = h->entries[0].bucket, high = h->entries[h->len - 1].bucket;
    h->low = bucket < low ? bucket : low;
    h->span = (uint16_t)((bucket > high ? bucket : high) + 1 - h->low);
    h->counts = calloc(h->span, sizeof(*h->counts));
    if (!h->counts)
        return false;
    a->bytes += h->span * sizeof(*h->counts);
    for (uint32_t i = 0; i < h->len; i++)
        h->counts[h->entries[i].bucket - h->low] = h->entries[i].count;
    h->len = 0;
    return true;
}

/* One more in a histogram's count, which stays at its largest value once there. */
static void count_one(uint32_t *count)
{
    if (*count < UINT32_MAX)
        ++*count;
}

/* One value counted into a dense histogram whose range holds bucket. */
static void hist_count(struct agg_hist *h, uint16_t bucket)
{
    count_one(&h->counts[bucket - h->low]);
}

/* The owed counts made: before the histograms move (their arrays grow, a drain) or are read. */
static void hist_pay(struct agg *a)
{
    for (uint32_t i = 0; i < a->owed_count; i++)
        hist_count(a->owed[i].hist, a->owed[i].bucket);
    a->owed_count = a->owed_next = 0;
}

/* Counts one value into a histogram. A dense one's cell is mostly not in the cache (there are
 * thousands of histograms, and the messages stream through the cache between counts): it is
 * asked for now and counted HIST_OWED values later. */
static void hist_add(struct agg *a, struct agg_hist *h, uint64_t value)
{
    uint16_t bucket = (uint16_t)hist_bucket(value);
    if (h->counts) {
        if ((unsigned)(bucket - h->low) >= h->span && !hist_widen(a, h, bucket))
            return;
        __builtin_prefetch(&h->counts[bucket - h->low], 1);
        uint32_t at = a->owed_count;
        if (at == HIST_OWED) {
            at = a->owed_next;
            a->owed_next = (at + 1) % HIST_OWED;
            hist_count(a->owed[at].hist, a->owed[at].bucket);
        } else {
            a->owed_count++;
        }
        a->owed[at].hist = h;
        a->owed[at].bucket = bucket;
        return;
    }
    uint32_t lo = hist_find(h, bucket);
    if (lo < h->len && h->entries[lo].bucket == bucket) {
        count_one(&h->entries[lo].count);
        return;
    }
    if (h->len == AGG_HIST_SPARSE) {
        if (hist_densify(a, h, bucket))
            h->counts[bucket - h->low] = 1;
        return;
    }
    if (h->len == h->cap) {
        uint32_t cap = AGG_HIST_SPARSE;
        struct agg_hist_entry *grown = realloc(h->entries, cap * sizeof(*grown));
        if (!grown)
            return;
        a->bytes += (cap - h->cap) * sizeof(*grown);
        h->entries = grown;
        h->cap = cap;
    }
    memmove(&h->entries[lo + 1], &h->entries[lo], (h->len - lo) * sizeof(*h->entries));
    h->entries[lo] = (struct agg_hist_entry){.bucket = bucket, .count = 1};
    h->len++;
}

/* A histogram in the batch's form: its counts, if it has them, as entries. Out of memory, it is
 * left empty (its values are not in the batch, as a value is not when a histogram cannot grow). */
static void hist_settle(struct agg_hist *h)
{
    if (!h->counts)
        return;
    uint32_t n = 0;
    for (uint32_t i = 0; i < h->span; i++)
        n += h->counts[i] != 0;
    struct agg_hist_entry *entries =
        n > h->cap ? realloc(h->entries, n * sizeof(*entries)) : h->entries;
    if (entries) {
        h->entries = entries;
        h->cap = n > h->cap ? n : h->cap;
        for (uint32_t i = 0; i < h->span; i++)
            if (h->counts[i])
                entries[h->len++] = (struct agg_hist_entry){(uint16_t)(h->low + i), h->counts[i]};
    }
    free(h->counts);
    h->counts = NULL;
    h->low = h->span = 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

/* A key's slot: by trace and id only, so that the halves of one span id (its server, the call
 * that shares it, the calls made inside it) share one, which the span's lookups after the first
 * find in the cache, and which can be asked for before the span is counted (agg_add_resolved). */
static size_t slot(const struct agg *a, uint64_t hi, uint64_t lo, uint64_t id)
{
    /* every bit of the three ids reaches the slot's bits: sums, products and left shifts carry
     * only upwards, and ids that differ only in their high bits (a tracer's time-based prefix,
     * say) would share their slots, a chain walked by every lookup (splitmix64's finalizer); and
     * the seed keeps a sender from computing ids that all fall in one slot */
    uint64_t h = lo ^ a->seed ^ (hi * 0x9e3779b97f4a7c15ULL) ^ (id * 0xc2b2ae3d27d4eb4fULL);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return (size_t)(h & (a->table_size - 1));
}

/* The half of role keyed by (hi, lo, id, service) in slot at, NULL when none waits. */
static struct pending *find(struct agg *a, uint32_t at, uint64_t hi, uint64_t lo, uint64_t id,
                            uint64_t service, enum role role)
{
    for (struct pending *p = a->table[at]; p; p = p->next_in_bucket)
        if (p->role == role && p->id == id && p->trace_lo == lo && p->trace_hi == hi &&
            p->service_hash == service)
            return p;
    return NULL;
}

/* What waits under one span id of a trace, in one walk of the slot it shares: the call
 * (ROLE_CALL) and the server span (ROLE_SERVER_ID) found first, NULL each when none does, and
 * whether of the role `own` one of service self waits (a copy of a span of self with this id). */
struct by_id {
    struct pending *call, *server;
    bool own;
};

static struct by_id find_by_id(struct agg *a, uint32_t at, uint64_t hi, uint64_t lo, uint64_t id,
                               enum role own, const struct service_ref *self)
{
    struct by_id out = {NULL, NULL, false};
    for (struct pending *p = a->table[at]; p; p = p->next_in_bucket) {
        if (p->id != id || p->trace_lo != lo || p->trace_hi != hi || p->service_hash != 0)
            continue;
        if (p->role == ROLE_CALL && !out.call)
            out.call = p;
        else if (p->role == ROLE_SERVER_ID && !out.server)
            out.server = p;
        if (p->role == own && !out.own && name_is(p->names[0], self))
            out.own = true;
    }
    return out;
}

/* The name text (hash: its emp_hash_text()), held once more, its app now app_id (unless NULL:
 * a remote service's); NULL when AGG_NAMES_MAX names are held. */
static struct name *name_hold(struct agg *a, const char *text, uint64_t hash, const char *app_id)
{
    struct name **slot = &a->name_table[hash & (NAME_SLOTS - 1)];
    for (struct name *n = *slot; n; n = n->next)
        if (n->hash == hash && strcmp(n->text, text) == 0) {
            n->refs++;
            if (app_id)
                memcpy(n->app_id, app_id, AGG_ID_MAX);
            return n;
        }
    struct name *n = a->free_names;
    if (n)
        a->free_names = n->next;
    else if (a->names_used < AGG_NAMES_MAX)
        n = &a->name_pool[a->names_used++];
    else
        return NULL;
    n->hash = hash;
    n->refs = 1;
    snprintf(n->app_id, sizeof(n->app_id), "%s", app_id ? app_id : "");
    snprintf(n->text, sizeof(n->text), "%s", text);
    n->next = *slot;
    *slot = n;
    return n;
}

static void name_release(struct agg *a, struct name *n)
{
    if (!n || --n->refs > 0)
        return;
    struct name **link = &a->name_table[n->hash & (NAME_SLOTS - 1)];
    while (*link != n)
        link = &(*link)->next;
    *link = n->next;
    n->next = a->free_names;
    a->free_names = n;
}

/* The record at a position of the older/newer list (NULL for 0), and a record's position. */
static struct pending *pending_at(const struct agg *a, uint32_t position)
{
    return position ? &a->pool[position - 1] : NULL;
}

static uint32_t position_of(const struct agg *a, const struct pending *p)
{
    return p ? (uint32_t)(p - a->pool) + 1 : 0;
}

static void unlink_pending(struct agg *a, struct pending *p)
{
    struct pending **link = &a->table[p->slot];
    while (*link && *link != p)
        link = &(*link)->next_in_bucket;
    if (*link)
        *link = p->next_in_bucket;
    struct pending *older = pending_at(a, p->older), *newer = pending_at(a, p->newer);
    if (older)
        older->newer = p->newer;
    else
        a->oldest = newer;
    if (newer)
        newer->older = p->older;
    else
        a->newest = older;
    a->pending--;
}

/* The pair of a call and its child-convention server undone (either may be NULL). */
static void unpair(struct pending *p)
{
    if (p && p->link) {
        p->link->link = NULL;
        p->link = NULL;
    }
}

/* Unlinks p and gives its record and names back. */
static void drop(struct agg *a, struct pending *p)
{
    unpair(p);
    unlink_pending(a, p);
    name_release(a, p->names[0]);
    name_release(a, p->names[1]);
    p->next_in_bucket = a->free_pending;
    a->free_pending = p;
}

/* A server span found its caller: it waits on only for its own calls (self time). */
static void matched_server(struct pending *server)
{
    server->matched = true;
    unpair(server);
}

static void finish(struct agg *a, struct pending *p);

/* A new pending half of span s (its names and numbers copied, app_id and ts as resolved), keyed
 * by id (the span's own or its parent's) in slot at; slots are the span's. */
static struct pending *add_pending(struct agg *a, const struct span *s, const char *app_id,
                                   const struct agg_slots *slots, int64_t ts, uint64_t id,
                                   uint32_t at, uint64_t service, enum role role, int64_t now_us)
{
    while (a->pending >= a->config.pending_max && a->oldest) {
        a->counters.pending_dropped++;
        finish(a, a->oldest); /* room for the new one: the oldest is done early */
    }
    struct name *service_name, *remote_name = NULL;
    while (!(service_name = name_hold(a, s->local_service, s->local_hash, app_id)) ||
           (s->remote_service[0] &&
            !(remote_name = name_hold(a, s->remote_service, s->remote_hash, NULL)))) {
        name_release(a, service_name); /* every name is held: the oldest halves are done early */
        if (!a->oldest)
            return NULL;
        a->counters.pending_dropped++;
        finish(a, a->oldest);
    }
    struct pending *p = a->free_pending;
    if (p)
        a->free_pending = p->next_in_bucket;
    else
        p = &a->pool[a->pool_used++]; /* pending < pending_max: the pool has room */
    memset(p, 0, sizeof(*p));
    p->names[0] = service_name;
    p->names[1] = remote_name;
    p->parent_id = s->parent_id;
    p->has_parent = s->has_parent;
    p->shared = s->shared;
    p->timestamp_us = ts;
    p->duration_us = s->duration_us;
    p->error = span_failed(s);
    p->trace_hi = s->trace_hi;
    p->trace_lo = s->trace_lo;
    p->id = id;
    p->service_hash = service;
    p->role = (uint8_t)role;
    p->deadline_us = now_us + a->config.join_ms * 1000;
    p->slot = at;
    p->parent_slot = slots->parent;
    p->next_in_bucket = a->table[at];
    a->table[at] = p;
    p->older = position_of(a, a->newest);
    if (a->newest)
        a->newest->newer = position_of(a, p);
    else
        a->oldest = p;
    a->newest = p;
    a->pending++;
    return p;
}

/* ---- what is counted ---- */

static int64_t bucket_of(const struct agg *a, int64_t timestamp_us)
{
    int64_t s = timestamp_us / 1000000;
    return s - s % a->config.bucket_s;
}

/* A copy of name (shorter than SPAN_SERVICE_MAX) among the names of the batch, NULL when out of
 * memory. */
static const char *text_copy(struct agg *a, const char *name)
{
    if (!name[0])
        return "";
    size_t n = strlen(name) + 1;
    struct agg_text *t = a->text;
    if (!t || TEXT_CHUNK - t->used < n) {
        if (!(t = malloc(sizeof(*t))))
            return NULL;
        t->next = a->text;
        t->used = 0;
        a->text = t;
        a->bytes += sizeof(*t);
    }
    char *copy = memcpy(t->data + t->used, name, n);
    t->used += n;
    return copy;
}

static void *grow(struct agg *a, void *array, size_t *cap, size_t size)
{
    hist_pay(a); /* the histograms in series and edges may move */
    size_t next = *cap ? *cap * 2 : 16;
    void *grown = realloc(array, next * size);
    if (grown) {
        a->bytes += (next - *cap) * size;
        *cap = next;
    }
    return grown;
}

/* The position of a key in an index, or of the empty slot where it goes. */
static size_t probe(const uint32_t *index, uint64_t h,
                    bool (*same)(const struct agg *, uint32_t, const void *), const struct agg *a,
                    const void *key)
{
    size_t i = (size_t)(h & (INDEX_SIZE - 1));
    while (index[i] && !same(a, index[i] - 1, key))
        i = (i + 1) & (INDEX_SIZE - 1);
    return i;
}

struct series_key {
    const char *app_id;
    int64_t bucket;
};

static bool same_series(const struct agg *a, uint32_t at, const void *k)
{
    const struct series_key *key = k;
    return a->series[at].bucket == key->bucket && strcmp(a->series[at].app_id, key->app_id) == 0;
}

/* The series of app_id, whose service's name hashes to service: one app is one service, so the
 * name's hash, already at hand, serves as the id's (were an app ever two services, its series
 * would come twice in a batch, which the store adds up all the same). */
static struct agg_series *series_of(struct agg *a, const char *app_id, uint64_t service,
                                    int64_t bucket)
{
    struct series_key key = {app_id, bucket};
    size_t i = probe(a->series_index, mix(service, (uint64_t)bucket), same_series, a, &key);
    if (a->series_index[i])
        return &a->series[a->series_index[i] - 1];
    if (a->series_count >= ENTRIES_MAX)
        return NULL; /* the caller drains well before (agg_must_drain) */
    if (a->series_count == a->series_cap) {
        struct agg_series *grown = grow(a, a->series, &a->series_cap, sizeof(*grown));
        if (!grown)
            return NULL;
        a->series = grown;
    }
    struct agg_series *s = &a->series[a->series_count++];
    memset(s, 0, sizeof(*s));
    memcpy(s->app_id, app_id, AGG_ID_MAX);
    s->bucket = bucket;
    a->series_index[i] = (uint32_t)a->series_count;
    return s;
}

struct edge_key {
    const char *caller_app;
    const char *callee;
    int64_t bucket;
};

static bool same_edge(const struct agg *a, uint32_t at, const void *k)
{
    const struct edge_key *key = k;
    const struct agg_edge *e = &a->edges[at];
    return e->bucket == key->bucket && strcmp(e->caller_app, key->caller_app) == 0 &&
           strcmp(e->callee, key->callee) == 0;
}

/* The edge from caller_app (its service caller, whose name hashes to caller_hash) to callee. */
static struct agg_edge *edge_of(struct agg *a, const char *caller_app, const char *caller,
                                uint64_t caller_hash, const struct service_ref *callee,
                                const char *callee_app, int64_t bucket)
{
    struct edge_key key = {caller_app, callee->name, bucket};
    uint64_t h = mix(mix(caller_hash, callee->hash), (uint64_t)bucket);
    size_t i = probe(a->edges_index, h, same_edge, a, &key);
    if (a->edges_index[i])
        return &a->edges[a->edges_index[i] - 1];
    if (a->edges_count >= ENTRIES_MAX)
        return NULL;
    if (a->edges_count == a->edges_cap) {
        struct agg_edge *grown = grow(a, a->edges, &a->edges_cap, sizeof(*grown));
        if (!grown)
            return NULL;
        a->edges = grown;
    }
    const char *caller_copy = text_copy(a, caller), *callee_copy = text_copy(a, callee->name);
    if (!caller_copy || !callee_copy)
        return NULL;
    struct agg_edge *e = &a->edges[a->edges_count++];
    memset(e, 0, sizeof(*e));
    memcpy(e->caller_app, caller_app, AGG_ID_MAX);
    e->caller = caller_copy;
    e->callee = callee_copy;
    snprintf(e->callee_app, sizeof(e->callee_app), "%s", callee_app ? callee_app : "");
    e->bucket = bucket;
    a->edges_index[i] = (uint32_t)a->edges_count;
    return e;
}

/* A call: its caller (app, service) and what the caller saw of it. */
struct call {
    const char *app_id;
    struct service_ref service;
    int64_t timestamp_us, duration_us;
    bool error;
};

/* callee_failed: the callee's server span failed (a call fails when either side says so). */
static void count_edge(struct agg *a, const struct call *call, const struct service_ref *callee,
                       const char *callee_app, bool callee_failed)
{
    if (same_service(&call->service, callee))
        return; /* a service calling itself is no dependency */
    struct agg_edge *e = edge_of(a, call->app_id, call->service.name, call->service.hash, callee,
                                 callee_app, bucket_of(a, call->timestamp_us));
    if (!e)
        return;
    e->calls++;
    if (call->error || callee_failed)
        e->errors++;
    if (call->duration_us > 0)
        hist_add(a, &e->latency, (uint64_t)call->duration_us);
}

static struct call call_of(const struct pending *p)
{
    return (struct call){app_of(p), service_ref_of(p->names[0]), p->timestamp_us, p->duration_us,
                         p->error};
}

/* A half that found no other half here: another consumer may hold it (the store joins them). */
static void add_half(struct agg *a, const struct pending *p, bool server)
{
    if (a->halves_count == a->halves_cap) {
        struct agg_half *grown = grow(a, a->halves, &a->halves_cap, sizeof(*grown));
        if (!grown)
            return;
        a->halves = grown;
    }
    const char *service = text_copy(a, service_of(p)), *remote = text_copy(a, remote_of(p));
    if (!service || !remote)
        return;
    struct agg_half *h = &a->halves[a->halves_count++];
    memset(h, 0, sizeof(*h));
    h->server = server;
    h->trace_hi = p->trace_hi;
    h->trace_lo = p->trace_lo;
    h->id = p->id;
    h->parent_id = p->parent_id;
    h->has_parent = p->has_parent;
    h->shared = p->shared;
    memcpy(h->app_id, app_of(p), AGG_ID_MAX);
    h->service = service;
    h->remote = remote;
    if (!server && h->remote[0] &&
        !a->config.resolve(a->config.resolve_ctx, h->remote, p->names[1]->hash, h->remote_app))
        h->remote_app[0] = '\0';
    h->bucket = bucket_of(a, p->timestamp_us);
    h->duration_us = p->duration_us;
    h->error = p->error;
    a->counters.halves++;
}

/* The series a waiting server span's request was counted in, NULL when a drain came since. */
static struct agg_series *kept_series(const struct agg *a, const struct pending *p)
{
    return p->series_at && p->series_drain == (uint16_t)a->drains ? &a->series[p->series_at - 1]
                                                                  : NULL;
}

/* A half whose window passed (or that must make room): what it still owes is counted now. */
static void finish(struct agg *a, struct pending *p)
{
    if (p->role == ROLE_SERVER_ID) {
        struct pending *kids =
            find(a, p->slot, p->trace_hi, p->trace_lo, p->id, p->names[0]->hash, ROLE_CHILDREN);
        int64_t waited = p->children_us + (kids ? kids->children_us : 0);
        if (p->duration_us > 0) {
            int64_t self = p->duration_us - waited;
            struct agg_series *s = kept_series(a, p);
            if (!s)
                s = series_of(a, app_of(p), p->names[0]->hash, bucket_of(a, p->timestamp_us));
            if (s)
                hist_add(a, &s->self, (uint64_t)(self > 0 ? self : 0));
        }
        if (kids)
            drop(a, kids);
        if (!p->matched && p->has_parent) {
            /* the child convention: its caller's client span is its parent */
            struct pending *call =
                find(a, p->parent_slot, p->trace_hi, p->trace_lo, p->parent_id, 0, ROLE_CALL);
            if (call && call->names[0] != p->names[0]) {
                struct call c = call_of(call);
                struct service_ref callee = service_ref_of(p->names[0]);
                count_edge(a, &c, &callee, app_of(p), p->error);
                p->matched = true;
                drop(a, call);
            }
        }
        if (!p->matched && p->has_parent)
            add_half(a, p, true);
    } else if (p->role == ROLE_CALL) {
        /* the child convention: a server span whose parent is this call, paired with it when
         * it came (take_server); one that came before the call finishes before it, and looks
         * for the call itself */
        struct pending *server = p->link;
        if (server && server->names[0] != p->names[0]) {
            struct call call = call_of(p);
            struct service_ref callee = service_ref_of(server->names[0]);
            count_edge(a, &call, &callee, app_of(server), server->error);
            matched_server(server);
            p->matched = true;
        }
    }
    if (p->role == ROLE_CALL && !p->matched) {
        /* no server answered here. If the client named a service that is no EMP app, none ever
         * will: a leaf, the service the client named, as in Zipkin's linker. Otherwise the server
         * may have gone to another consumer. */
        char ignored[AGG_ID_MAX];
        if (p->names[1] && !a->config.resolve(a->config.resolve_ctx, p->names[1]->text,
                                              p->names[1]->hash, ignored)) {
            struct call call = call_of(p);
            struct service_ref remote = service_ref_of(p->names[1]);
            count_edge(a, &call, &remote, NULL, false);
        } else {
            add_half(a, p, false);
        }
    }
    drop(a, p);
}

/* A server span (or a root span without kind): a request, and maybe the second half of a call. */
static void take_server(struct agg *a, const struct span *s, const char *app_id,
                        const struct agg_slots *slots, int64_t ts, int64_t now)
{
    /* its caller's client span, if it came first and shares this span's id (Zipkin's shared
     * spans); and this span itself (its service's server span of this id), if it came before and
     * waits: a copy (a sender's retry, a redelivery) is not counted twice while its first copy
     * waits, nor kept twice (copies of a half would pile up in its slot, and every lookup there
     * would walk them) */
    struct service_ref self = {s->local_service, s->local_hash};
    struct by_id found =
        find_by_id(a, slots->id, s->trace_hi, s->trace_lo, s->id, ROLE_SERVER_ID, &self);
    if (found.own) {
        a->counters.duplicates++;
        return;
    }
    struct pending *call = found.call;
    struct agg_series *series = series_of(a, app_id, s->local_hash, bucket_of(a, ts));
    if (!series)
        return;
    /* where its self time goes too, kept as a position: the array moves as it grows */
    uint16_t series_at = (uint16_t)(series - a->series + 1); /* < ENTRIES_MAX */
    series->requests++;
    if (span_failed(s))
        series->errors++;
    if (s->duration_us > 0)
        hist_add(a, &series->latency, (uint64_t)s->duration_us);
    else
        a->counters.no_timestamp++;
    /* the caller's client span found above. The other convention (the server a child of the
     * client span) is tried only when the window ends (finish): an id can be a client's and,
     * shared, its server's at once, and children of the server name it as their parent, so the
     * parent is only a fallback. */
    bool matched = false;
    if (call && !name_is(call->names[0], &self)) {
        struct call c = call_of(call);
        count_edge(a, &c, &self, app_id, span_failed(s));
        matched = true;
        drop(a, call);
    }
    /* waits for its own calls (self time) and, if unmatched, for its caller's client span */
    struct pending *by_id =
        add_pending(a, s, app_id, slots, ts, s->id, slots->id, 0, ROLE_SERVER_ID, now);
    if (!by_id)
        return;
    by_id->matched = matched;
    by_id->series_drain = (uint16_t)a->drains;
    by_id->series_at = series_at;
    /* calls inside it that came first: their sum is its now, so it cannot expire before it */
    struct pending *kids =
        find(a, slots->id, s->trace_hi, s->trace_lo, s->id, by_id->names[0]->hash, ROLE_CHILDREN);
    if (kids) {
        by_id->children_us = kids->children_us;
        drop(a, kids);
    }
    /* the child convention (py_zipkin says shared even for a server span with an id of its
     * own: the ids tell): a call that waits already, whose id is this span's parent, is paired
     * with it, to be counted when the call's window ends; a call that comes later finishes
     * after this span, which looks for it then */
    if (!matched && s->has_parent) {
        struct pending *parent =
            find(a, slots->parent, s->trace_hi, s->trace_lo, s->parent_id, 0, ROLE_CALL);
        if (parent) {
            unpair(parent);
            parent->link = by_id;
            by_id->link = parent;
        }
    }
}

/* A client span: time its service waited inside its parent span, and the first (or second) half
 * of a call. */
static void take_client(struct agg *a, const struct span *s, const char *app_id,
                        const struct agg_slots *slots, int64_t ts, int64_t now)
{
    /* a copy of this call, as take_server's: its first copy waits for its server, or has found
     * the server that shares its id (which waits on for its own calls) */
    struct service_ref self = {s->local_service, s->local_hash};
    struct by_id found =
        find_by_id(a, slots->id, s->trace_hi, s->trace_lo, s->id, ROLE_CALL, &self);
    const struct pending *server = found.server;
    if (found.own || (server && server->matched && !name_is(server->names[0], &self))) {
        a->counters.duplicates++;
        return;
    }
    if (s->has_parent && s->duration_us > 0) {
        uint64_t service = s->local_hash;
        struct pending *kids =
            find(a, slots->parent, s->trace_hi, s->trace_lo, s->parent_id, service, ROLE_CHILDREN);
        if (!kids) {
            kids = add_pending(a, s, app_id, slots, ts, s->parent_id, slots->parent, service,
                               ROLE_CHILDREN, now);
            /* a sum outlives its server span's own wait: give it a window and a half */
            if (kids)
                kids->deadline_us += a->config.join_ms * 500;
        }
        if (kids)
            kids->children_us += s->duration_us;
    }
    struct call call = {app_id, self, ts, s->duration_us, span_failed(s)};
    /* its server, if that came first and shares this id (looked for again: found.server may
     * have been finished to make room for the sum above); a server that is a child of this span
     * is looked for when the window ends (finish) */
    struct pending *by_id = find(a, slots->id, s->trace_hi, s->trace_lo, s->id, 0, ROLE_SERVER_ID);
    if (by_id && !by_id->matched && !name_is(by_id->names[0], &call.service)) {
        struct service_ref callee = service_ref_of(by_id->names[0]);
        count_edge(a, &call, &callee, app_of(by_id), by_id->error);
        matched_server(by_id);
        return;
    }
    add_pending(a, s, app_id, slots, ts, s->id, slots->id, 0, ROLE_CALL, now);
}

void agg_add(struct agg *a, const struct span *spans, size_t count, int64_t now_us)
{
    for (size_t i = 0; i < count; i++) {
        char app_id[AGG_ID_MAX];
        if (!a->config.resolve(a->config.resolve_ctx, spans[i].local_service, spans[i].local_hash,
                               app_id))
            app_id[0] = '\0';
        struct agg_slots slots;
        agg_slots_of(a, &spans[i], 1, &slots);
        agg_add_resolved(a, &spans[i], (const char(*)[AGG_ID_MAX])app_id, &slots, 1, now_us);
    }
}

void agg_slots_of(const struct agg *a, const struct span *spans, size_t count,
                  struct agg_slots *ret)
{
    for (size_t i = 0; i < count; i++) {
        const struct span *s = &spans[i];
        ret[i].id = (uint32_t)slot(a, s->trace_hi, s->trace_lo, s->id);
        ret[i].parent = (uint32_t)slot(a, s->trace_hi, s->trace_lo, s->parent_id);
    }
}

void agg_add_resolved(struct agg *a, const struct span *spans, const char (*app_ids)[AGG_ID_MAX],
                      const struct agg_slots *slots, size_t count, int64_t now_us)
{
    for (size_t i = 0; i < count; i++) {
        const struct span *s = &spans[i];
        const char *app_id = app_ids[i];
        /* the pending table is far larger than the cache, and counting is mostly waiting for
         * it: the slots of a span a few on, the first record in the slots of a span two on
         * (asked for two spans ago), and what the halves finished next need (while the table
         * is full, every new half finishes the oldest), are asked for now */
        if (i + AHEAD < count) {
            __builtin_prefetch(&a->table[slots[i + AHEAD].id]);
            if (spans[i + AHEAD].has_parent)
                __builtin_prefetch(&a->table[slots[i + AHEAD].parent]);
        }
        if (i + AHEAD / 2 < count) {
            struct pending *p = a->table[slots[i + AHEAD / 2].id];
            if (p)
                __builtin_prefetch(p);
            if (spans[i + AHEAD / 2].has_parent && (p = a->table[slots[i + AHEAD / 2].parent]))
                __builtin_prefetch(p);
        }
        if (a->oldest && a->oldest->newer) {
            /* the half finished next (asked for a span ago): the slots where it looks up its
             * other halves by its id and its parent, and the half after it */
            const struct pending *next = pending_at(a, a->oldest->newer);
            if (next->newer)
                __builtin_prefetch(pending_at(a, next->newer));
            __builtin_prefetch(&a->table[next->slot]);
            if (next->has_parent)
                __builtin_prefetch(&a->table[next->parent_slot]);
            const struct agg_series *series = kept_series(a, next);
            if (series)
                __builtin_prefetch(series);
        }
        if (!app_id[0]) {
            a->counters.unknown++;
            continue;
        }
        int64_t ts = s->timestamp_us;
        if (ts == 0) {
            a->counters.no_timestamp++;
            ts = now_us;
        } else if (ts < now_us - a->config.lateness_s * 1000000) {
            a->counters.too_late++;
            continue;
        } else if (ts > now_us + a->config.future_s * 1000000) {
            a->counters.too_early++;
            continue;
        }
        a->counters.spans++;
        bool root = !s->has_parent;
        if (s->kind == SPAN_SERVER || (s->kind == SPAN_KIND_NONE && root))
            take_server(a, s, app_id, &slots[i], ts, now_us);
        else if (s->kind == SPAN_CLIENT || s->kind == SPAN_PRODUCER)
            take_client(a, s, app_id, &slots[i], ts, now_us);
    }
    hist_pay(a);
}

void agg_tick(struct agg *a, int64_t now_us, bool force)
{
    while (a->oldest && (force || a->oldest->deadline_us <= now_us))
        finish(a, a->oldest);
    hist_pay(a);
}

int agg_drain(struct agg *a, struct agg_batch *ret)
{
    hist_pay(a);
    for (size_t i = 0; i < a->series_count; i++) {
        hist_settle(&a->series[i].latency);
        hist_settle(&a->series[i].self);
    }
    for (size_t i = 0; i < a->edges_count; i++)
        hist_settle(&a->edges[i].latency);
    *ret = (struct agg_batch){a->series, a->series_count, a->edges, a->edges_count,
                              a->halves, a->halves_count, a->text};
    a->text = NULL;
    a->series = NULL;
    a->series_count = a->series_cap = 0;
    a->edges = NULL;
    a->edges_count = a->edges_cap = 0;
    a->halves = NULL;
    a->halves_count = a->halves_cap = 0;
    a->bytes = 0;
    a->drains++;
    memset(a->series_index, 0, INDEX_SIZE * sizeof(*a->series_index));
    memset(a->edges_index, 0, INDEX_SIZE * sizeof(*a->edges_index));
    return 0;
}

void agg_batch_free(struct agg_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->series_count; i++) {
        free(b->series[i].latency.entries);
        free(b->series[i].self.entries);
    }
    for (size_t i = 0; i < b->edges_count; i++)
        free(b->edges[i].latency.entries);
    free(b->series);
    free(b->edges);
    free(b->halves);
    while (b->text) {
        struct agg_text *next = b->text->next;
        free(b->text);
        b->text = next;
    }
    *b = (struct agg_batch){0};
}

bool agg_must_drain(const struct agg *a)
{
    size_t at = a->config.park_at;
    return a->series_count >= at || a->edges_count >= at || a->halves_count >= HALVES_MAX ||
           a->bytes >= a->config.park_bytes;
}

size_t agg_pending(const struct agg *a)
{
    return a->pending;
}

const struct agg_counters *agg_counters(const struct agg *a)
{
    return &a->counters;
}

int agg_new(const struct agg_config *config, struct agg **ret_agg)
{
    struct agg *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->config = *config;
    if (a->config.bucket_s <= 0)
        a->config.bucket_s = 10;
    if (a->config.pending_max == 0)
        a->config.pending_max = 100000;
    if (a->config.park_at == 0 || a->config.park_at > ENTRIES_MAX - SPAN_LIST_MAX)
        a->config.park_at = ENTRIES_MAX - SPAN_LIST_MAX;
    if (a->config.park_bytes == 0)
        a->config.park_bytes = AGG_PARK_BYTES;
    if (a->config.pending_max > AGG_PENDING_MAX)
        a->config.pending_max = AGG_PENDING_MAX;
    a->table_size = 1; /* 4 to 8 slots a half: most lookups find their slot empty or theirs */
    while (a->table_size < 4 * a->config.pending_max)
        a->table_size *= 2;
    a->table = calloc(a->table_size, sizeof(*a->table));
    if (getrandom(&a->seed, sizeof(a->seed), GRND_NONBLOCK) != sizeof(a->seed))
        a->seed = (uint64_t)(uintptr_t)a ^ (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
    /* aligned, each record on its own lines; add_pending clears a record as it takes it */
    a->pool = aligned_alloc(_Alignof(struct pending), a->config.pending_max * sizeof(*a->pool));
    a->name_pool = calloc(AGG_NAMES_MAX, sizeof(*a->name_pool));
    a->name_table = calloc(NAME_SLOTS, sizeof(*a->name_table));
    a->series_index = calloc(INDEX_SIZE, sizeof(*a->series_index));
    a->edges_index = calloc(INDEX_SIZE, sizeof(*a->edges_index));
    if (!a->table || !a->pool || !a->name_pool || !a->name_table || !a->series_index ||
        !a->edges_index) {
        agg_free(a);
        return -ENOMEM;
    }
    *ret_agg = a;
    return 0;
}

void agg_free(struct agg *a)
{
    if (!a)
        return;
    free(a->table);
    free(a->pool);
    free(a->name_pool);
    free(a->name_table);
    struct agg_batch rest;
    agg_drain(a, &rest);
    agg_batch_free(&rest);
    free(a->series_index);
    free(a->edges_index);
    free(a);
}
