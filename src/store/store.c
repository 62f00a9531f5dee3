/* SPDX-License-Identifier: Apache-2.0 */
/* EMP's Redis layer. Keys (all under "emp:"):
 *   user:{u}            hash   username, password_hash, created_at
 *   user:{u}:appnames   hash   app name -> app id (uniqueness of names per user)
 *   user:{u}:apps       zset   app names, score 0 (paging in name order)
 *   session:{digest}    string username, expiring with the session
 *   loginfail:{u}       string failed logins in the current window
 *   app:{id}            hash   the app record (see struct store_app)
 *   apps                zset   every app id, score 0 (paging for the scheduler)
 *   recon:due           zset   app id -> when the reconciler should look at it next (ms)
 *   lease:{id}          string the reconciler instance working on the app, expiring
 * Multi-key changes run as Lua scripts, so each is atomic and concurrent writers never lose one. */
#include "store.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "emp/log.h"
#include "emp/timeutil.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 3000
#define LIST_LIMIT_MAX     1000

struct store {
    char host[256];
    int port;
    char unix_path[512];
    char password[256];
    int db;
    char display_url[600];
    pthread_key_t conn_key;
    /* the client-side cache: the tracker thread holds a connection subscribed to Redis'
     * invalidation messages; connections that fill the cache have tracking redirected to it */
    struct cache *cache;
    pthread_t tracker;
    bool tracker_started;
    atomic_bool stopping;
    atomic_llong tracking_id;   /* the tracker connection's client id, 0 while it has none */
    atomic_uint tracking_epoch; /* bumped each time the tracker (re)subscribes */
};

struct conn {
    redisContext *ctx;
    char script_sha[16][41]; /* loaded lazily, per connection */
    unsigned tracking_epoch; /* the epoch this connection's tracking is redirected for, or 0 */
};

/* ---- scripts ---- */

enum script_id {
    SCRIPT_APP_CREATE,
    SCRIPT_APP_UPDATE,
    SCRIPT_APP_OBSERVED,
    SCRIPT_APP_DELETE,
    SCRIPT_RECON_CLAIM,
    SCRIPT_RECON_RELEASE,
    SCRIPT_LIST,
    SCRIPT_LOGIN_FAILURE,
    SCRIPT_USER_CREATE,
    SCRIPT_RECON_RENEW,
    SCRIPT_RECON_ALL_DUE,
    SCRIPT_NODE_CLAIM,
    SCRIPT_NODE_RELEASE,
    SCRIPT__COUNT
};

static const char *const scripts[SCRIPT__COUNT] = {
    /* KEYS: app, appnames, userapps, apps, due. ARGV: id, name, now, max_apps, field, value, ... */
    [SCRIPT_APP_CREATE] = "if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end\n"
                          "if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end\n"
                          "redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])\n"
                          "redis.call('HSET', KEYS[1], unpack(ARGV, 5))\n"
                          "redis.call('ZADD', KEYS[3], 0, ARGV[2])\n"
                          "redis.call('ZADD', KEYS[4], 0, ARGV[1])\n"
                          "redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])\n"
                          "return 1\n",
    /* KEYS: app, due. ARGV: id, expected generation, now, field, value, ... */
    [SCRIPT_APP_UPDATE] = "local gen = redis.call('HGET', KEYS[1], 'generation')\n"
                          "if not gen then return -1 end\n"
                          "if gen ~= ARGV[2] then return -2 end\n"
                          "local next = tonumber(gen) + 1\n"
                          "if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end\n"
                          "redis.call('HSET', KEYS[1], 'generation', next, 'updated_at', ARGV[3])\n"
                          "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
                          "return next\n",
    /* KEYS: app. ARGV: field, value, ... ; fields whose value is "" are deleted */
    [SCRIPT_APP_OBSERVED] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                            "for i = 1, #ARGV, 2 do\n"
                            "  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])\n"
                            "  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
                            "end\n"
                            "return 1\n",
    /* KEYS: app, appnames, userapps, apps, due, lease. ARGV: id, name */
    [SCRIPT_APP_DELETE] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                          "if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then\n"
                          "  redis.call('HDEL', KEYS[2], ARGV[2])\n"
                          "  redis.call('ZREM', KEYS[3], ARGV[2])\n"
                          "end\n"
                          "redis.call('DEL', KEYS[1], KEYS[6])\n"
                          "redis.call('ZREM', KEYS[4], ARGV[1])\n"
                          "redis.call('ZREM', KEYS[5], ARGV[1])\n"
                          "return 1\n",
    /* KEYS: due. ARGV: now, lease_ms, holder, lease key prefix. Claiming moves the app's check time
     * past the lease, so that a crashed holder's apps come back once its leases expire. */
    [SCRIPT_RECON_CLAIM] =
        "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 16)\n"
        "for _, id in ipairs(due) do\n"
        "  if redis.call('SET', ARGV[4] .. id, ARGV[3], 'NX', 'PX', ARGV[2]) then\n"
        "    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)\n"
        "    return id\n"
        "  end\n"
        "end\n"
        "return false\n",
    /* KEYS: due, lease, app. ARGV: id, holder, next, seen generation, now */
    [SCRIPT_RECON_RELEASE] =
        "if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end\n"
        "local gen = redis.call('HGET', KEYS[3], 'generation')\n"
        "if not gen then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end\n"
        "local at = ARGV[3]\n"
        "if gen ~= ARGV[4] then at = ARGV[5] end\n"
        /* claiming put the check past the lease: if it is due now, somebody (a backend's change
         * report, store_recon_expedite) asked for a look while we worked */
        "local due = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
        "if due and tonumber(due) <= tonumber(ARGV[5]) then at = ARGV[5] end\n"
        "redis.call('ZADD', KEYS[1], at, ARGV[1])\n"
        "return 1\n",
    /* KEYS: index zset, names hash or "". ARGV: cursor, limit. Returns ids (and names). */
    [SCRIPT_LIST] = "local start = '-'\n"
                    "if ARGV[1] ~= '' then start = '(' .. ARGV[1] end\n"
                    "local members = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, "
                    "tonumber(ARGV[2]))\n"
                    "if KEYS[2] == '' or #members == 0 then return {members, members} end\n"
                    "return {members, redis.call('HMGET', KEYS[2], unpack(members))}\n",
    /* KEYS: counter. ARGV: window seconds. Returns {count, ttl}. */
    [SCRIPT_LOGIN_FAILURE] = "local n = redis.call('INCR', KEYS[1])\n"
                             "if n == 1 or redis.call('TTL', KEYS[1]) < 0 then "
                             "redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                             "return {n, redis.call('TTL', KEYS[1])}\n",
    /* KEYS: user. ARGV: username, password hash, created_at */
    [SCRIPT_USER_CREATE] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
                           "redis.call('HSET', KEYS[1], 'username', ARGV[1], 'password_hash', "
                           "ARGV[2], 'created_at', ARGV[3])\n"
                           "return 1\n",
    /* KEYS: due. ARGV: now. Every app due now; in batches, so that 100,000 apps fit Lua's
     * argument limits. */
    [SCRIPT_RECON_ALL_DUE] = "local ids = redis.call('ZRANGE', KEYS[1], 0, -1)\n"
                             "for i = 1, #ids, 1000 do\n"
                             "  local batch = {}\n"
                             "  for j = i, math.min(i + 999, #ids) do\n"
                             "    batch[#batch + 1] = ARGV[1]\n"
                             "    batch[#batch + 1] = ids[j]\n"
                             "  end\n"
                             "  redis.call('ZADD', KEYS[1], unpack(batch))\n"
                             "end\n"
                             "return #ids\n",
    /* KEYS: node lease. ARGV: node, ttl_ms. Returns the holder. */
    [SCRIPT_NODE_CLAIM] = "local holder = redis.call('GET', KEYS[1])\n"
                          "if holder and holder ~= ARGV[1] then return holder end\n"
                          "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                          "return ARGV[1]\n",
    /* KEYS: node lease. ARGV: node */
    [SCRIPT_NODE_RELEASE] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
        "return 1\n",
    /* KEYS: lease. ARGV: holder, lease_ms */
    [SCRIPT_RECON_RENEW] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                           "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                           "return 1\n",
};

/* ---- connections ---- */

static void conn_free(void *p)
{
    struct conn *c = p;
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    free(c);
}

static int parse_url(struct store *s, const char *url, struct emp_error *err)
{
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path[0] != '/' || strlen(path) >= sizeof(s->unix_path))
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
                                 "Redis URL '%s' is not valid: use unix:///absolute/path/to/socket",
                                 url);
        snprintf(s->unix_path, sizeof(s->unix_path), "%s", path);
        snprintf(s->display_url, sizeof(s->display_url), "unix://%s", path);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return emp_error_set(
            err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
            "Redis URL '%.200s' is not valid: use redis://[:password@]host[:port][/db] "
            "or unix:///path/to/socket",
            url);
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((size_t)(at - pw) >= sizeof(s->password))
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
                                 "the password in the Redis URL is too long");
        memcpy(s->password, pw, (size_t)(at - pw));
        s->password[at - pw] = '\0';
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hostport_len = slash ? (size_t)(slash - p) : strlen(p);
    char hostport[300];
    if (hostport_len == 0 || hostport_len >= sizeof(hostport))
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
                             "Redis URL has no host: use redis://host[:port][/db]");
    memcpy(hostport, p, hostport_len);
    hostport[hostport_len] = '\0';
    s->port = 6379;
    char *colon = strrchr(hostport, ':');
    if (colon && !strchr(hostport, ']')) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
                                 "the port in Redis URL '%.200s' is not valid: use 1 to 65535",
                                 url);
        s->port = (int)port;
        *colon = '\0';
    }
    snprintf(s->host, sizeof(s->host), "%s", hostport);
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "redis-url",
                                 "the database in Redis URL '%.200s' is not a number", url);
        s->db = (int)db;
    }
    snprintf(s->display_url, sizeof(s->display_url), "redis://%s%s:%d/%d",
             s->password[0] ? ":***@" : "", s->host, s->port, s->db);
    return 0;
}

int store_open(const char *url, struct store **ret_store, struct emp_error *err)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int r = parse_url(s, url, err);
    if (r < 0) {
        free(s);
        return r;
    }
    if (pthread_key_create(&s->conn_key, conn_free) != 0) {
        free(s);
        return -ENOMEM;
    }
    *ret_store = s;
    return 0;
}

void store_close(struct store *store)
{
    if (!store)
        return;
    if (store->tracker_started) {
        atomic_store(&store->stopping, true);
        pthread_join(store->tracker, NULL);
    }
    cache_free(store->cache);
    conn_free(pthread_getspecific(store->conn_key));
    pthread_setspecific(store->conn_key, NULL);
    pthread_key_delete(store->conn_key);
    free(store);
}

const char *store_display_url(const struct store *store)
{
    return store->display_url;
}

static int unavailable(struct store *s, struct emp_error *err, const char *why)
{
    return emp_error_set(err, -EIO, EMP_ERR_STORE_UNAVAILABLE, NULL,
                         "the state store (Redis at %s) is unavailable: %s; retry once it is back",
                         s->display_url, why);
}

static void conn_reset(struct conn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
    memset(c->script_sha, 0, sizeof(c->script_sha));
}

/* A new connection to the store's Redis, authenticated and on its database. */
static int connect_ctx(struct store *s, redisContext **ret_ctx, struct emp_error *err)
{
    struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_MS / 1000,
                         .tv_usec = (CONNECT_TIMEOUT_MS % 1000) * 1000};
    redisContext *ctx = s->unix_path[0] ? redisConnectUnixWithTimeout(s->unix_path, tv)
                                        : redisConnectWithTimeout(s->host, s->port, tv);
    if (!ctx)
        return -ENOMEM;
    if (ctx->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", ctx->errstr);
        redisFree(ctx);
        return unavailable(s, err, why);
    }
    struct timeval cmd_tv = {.tv_sec = COMMAND_TIMEOUT_MS / 1000,
                             .tv_usec = (COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisSetTimeout(ctx, cmd_tv);
    if (s->password[0] || s->db) {
        redisReply *reply = s->password[0] ? redisCommand(ctx, "AUTH %s", s->password) : NULL;
        bool ok = !s->password[0] || (reply && reply->type != REDIS_REPLY_ERROR);
        if (reply)
            freeReplyObject(reply);
        if (ok && s->db) {
            reply = redisCommand(ctx, "SELECT %d", s->db);
            ok = reply && reply->type != REDIS_REPLY_ERROR;
            if (reply)
                freeReplyObject(reply);
        }
        if (!ok) {
            redisFree(ctx);
            return unavailable(s, err, "authentication or database selection failed");
        }
    }
    *ret_ctx = ctx;
    return 0;
}

/* The calling thread's connection, connected. */
static int conn_get(struct store *s, struct conn **ret, struct emp_error *err)
{
    struct conn *c = pthread_getspecific(s->conn_key);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        pthread_setspecific(s->conn_key, c);
    }
    if (!c->ctx) {
        int r = connect_ctx(s, &c->ctx, err);
        if (r < 0)
            return r;
        c->tracking_epoch = 0;
    }
    *ret = c;
    return 0;
}

/* Reads one reply; on I/O failure drops the connection so that the next call reconnects. */
static int read_reply(struct store *s, struct conn *c, redisReply **ret, struct emp_error *err)
{
    void *reply = NULL;
    if (redisGetReply(c->ctx, &reply) != REDIS_OK || !reply) {
        char why[160];
        snprintf(why, sizeof(why), "%s", c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
        conn_reset(c);
        return unavailable(s, err, why);
    }
    redisReply *r = reply;
    if (r->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "Redis answered '%.150s'", r->str);
        bool noscript = strncmp(r->str, "NOSCRIPT", 8) == 0;
        freeReplyObject(r);
        if (noscript)
            return -ENOEXEC;
        return unavailable(s, err, why);
    }
    *ret = r;
    return 0;
}

/* Reads the n replies of a pipeline into replies. On an I/O failure the connection is dropped (the
 * replies still due would be out of step); an error reply fails the whole pipeline. */
static int pipeline_read(struct store *s, struct conn *c, size_t n, redisReply **replies,
                         struct emp_error *err)
{
    for (size_t i = 0; i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(c->ctx, &reply) != REDIS_OK || !reply) {
            char why[160];
            snprintf(why, sizeof(why), "%s",
                     c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
            conn_reset(c);
            for (size_t j = 0; j < i; j++)
                freeReplyObject(replies[j]);
            return unavailable(s, err, why);
        }
        replies[i] = reply;
    }
    for (size_t i = 0; i < n; i++) {
        if (replies[i]->type == REDIS_REPLY_ERROR) {
            char why[200];
            snprintf(why, sizeof(why), "Redis answered '%.150s'", replies[i]->str);
            for (size_t j = 0; j < n; j++)
                freeReplyObject(replies[j]);
            return unavailable(s, err, why);
        }
    }
    return 0;
}

/* Runs one command given as argv. */
static int command(struct store *s, redisReply **ret, struct emp_error *err, int argc,
                   const char **argv, const size_t *lens)
{
    struct conn *c;
    int r = conn_get(s, &c, err);
    if (r < 0)
        return r;
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK) {
        conn_reset(c);
        return -ENOMEM;
    }
    return read_reply(s, c, ret, err);
}

/* Formats a command with printf-style arguments (%s, %b, %lld as hiredis understands them). */
static int commandf(struct store *s, redisReply **ret, struct emp_error *err, const char *fmt, ...)
{
    struct conn *c;
    int r = conn_get(s, &c, err);
    if (r < 0)
        return r;
    va_list ap;
    va_start(ap, fmt);
    int ok = redisvAppendCommand(c->ctx, fmt, ap);
    va_end(ap);
    if (ok != REDIS_OK) {
        conn_reset(c);
        return -ENOMEM;
    }
    return read_reply(s, c, ret, err);
}

static int script_sha(struct store *s, struct conn *c, enum script_id id, struct emp_error *err)
{
    if (c->script_sha[id][0])
        return 0;
    redisReply *reply;
    int r = commandf(s, &reply, err, "SCRIPT LOAD %s", scripts[id]);
    if (r < 0)
        return r;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(c->script_sha[id], reply->str, 41);
    freeReplyObject(reply);
    return c->script_sha[id][0] ? 0 : unavailable(s, err, "SCRIPT LOAD failed");
}

/* EVALSHA of one of the scripts above, loading it first when this connection has not. */
static int script(struct store *s, enum script_id id, redisReply **ret, struct emp_error *err,
                  int numkeys, int argc, const char **argv, const size_t *lens)
{
    const char *full[64];
    size_t full_lens[64];
    if (argc + 3 > 64)
        return -E2BIG;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c;
        int r = conn_get(s, &c, err);
        if (r < 0)
            return r;
        r = script_sha(s, c, id, err);
        if (r < 0)
            return r;
        char nk[16];
        snprintf(nk, sizeof(nk), "%d", numkeys);
        full[0] = "EVALSHA";
        full_lens[0] = 7;
        full[1] = c->script_sha[id];
        full_lens[1] = 40;
        full[2] = nk;
        full_lens[2] = strlen(nk);
        for (int i = 0; i < argc; i++) {
            full[3 + i] = argv[i];
            full_lens[3 + i] = lens ? lens[i] : strlen(argv[i]);
        }
        r = command(s, ret, err, argc + 3, full, full_lens);
        if (r != -ENOEXEC)
            return r;
        c->script_sha[id][0] = '\0'; /* Redis lost its script cache: load again */
    }
    return unavailable(s, err, "the script cache keeps failing");
}

int store_ping(struct store *store, struct emp_error *err)
{
    redisReply *reply;
    int r = commandf(store, &reply, err, "PING");
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

/* ---- the client-side cache ----
 *
 * Redis' server-assisted client-side caching (CLIENT TRACKING): a connection that fills the cache
 * has tracking on in OPTIN mode, redirected to the tracker's connection, and marks each read it
 * caches with CLIENT CACHING yes. Redis then tells the tracker about every change of a key read
 * that way (writes of any emp-server, expiry, FLUSHALL), and the tracker drops it from the cache.
 * Whenever the tracker cannot listen, the cache is off and empty: reads go to Redis. */

static void handle_invalidation(struct store *s, redisReply *msg)
{
    if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 ||
        msg->element[0]->type != REDIS_REPLY_STRING || strcmp(msg->element[0]->str, "message") != 0)
        return;
    redisReply *keys = msg->element[2];
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++)
            if (keys->element[i]->type == REDIS_REPLY_STRING)
                cache_invalidate(s->cache, keys->element[i]->str);
    } else {
        cache_clear(s->cache); /* a null list: everything (FLUSHALL, FLUSHDB) */
    }
}

/* Subscribes a new connection to the invalidations and listens until it breaks. */
static void tracker_session(struct store *s)
{
    redisContext *ctx;
    if (connect_ctx(s, &ctx, NULL) < 0)
        return;
    redisReply *reply = redisCommand(ctx, "CLIENT ID");
    long long id = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    if (reply)
        freeReplyObject(reply);
    reply = id ? redisCommand(ctx, "SUBSCRIBE __redis__:invalidate") : NULL;
    bool subscribed = reply && reply->type == REDIS_REPLY_ARRAY;
    if (reply)
        freeReplyObject(reply);
    if (!subscribed) {
        redisFree(ctx);
        return;
    }
    cache_clear(s->cache);
    atomic_store(&s->tracking_id, id);
    atomic_fetch_add(&s->tracking_epoch, 1);
    cache_set_enabled(s->cache, true);
    while (!atomic_load(&s->stopping)) {
        void *msg = NULL;
        while (redisGetReplyFromReader(ctx, &msg) == REDIS_OK && msg) {
            handle_invalidation(s, msg);
            freeReplyObject(msg);
            msg = NULL;
        }
        struct pollfd pfd = {.fd = ctx->fd, .events = POLLIN};
        int n = poll(&pfd, 1, 200);
        if (n < 0 || (n > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) ||
            (n > 0 && redisBufferRead(ctx) != REDIS_OK))
            break;
    }
    /* nobody hears of changes any more: nothing may be served from the cache */
    cache_set_enabled(s->cache, false);
    atomic_store(&s->tracking_id, 0);
    redisFree(ctx);
}

static void *tracker_main(void *arg)
{
    struct store *s = arg;
    while (!atomic_load(&s->stopping)) {
        tracker_session(s);
        for (int i = 0; i < 5 && !atomic_load(&s->stopping); i++)
            poll(NULL, 0, 100);
    }
    return NULL;
}

int store_enable_cache(struct store *store, size_t max_entries, struct emp_error *err)
{
    if (store->cache || max_entries == 0)
        return 0;
    int r = cache_new(max_entries, &store->cache);
    if (r < 0)
        return r;
    if (pthread_create(&store->tracker, NULL, tracker_main, store) != 0) {
        cache_free(store->cache);
        store->cache = NULL;
        return emp_error_set(err, -EAGAIN, EMP_ERR_INTERNAL, NULL,
                             "cannot start the store's cache thread");
    }
    store->tracker_started = true;
    return 0;
}

/* Whether reads on c may fill the cache now, turning tracking on for it first. Returns the
 * epoch that fills must still be in, or 0 when they may not. */
static unsigned tracking_ready(struct store *s, struct conn *c)
{
    if (!s->cache || !cache_enabled(s->cache))
        return 0;
    long long id = atomic_load(&s->tracking_id);
    unsigned epoch = atomic_load(&s->tracking_epoch);
    if (!id)
        return 0;
    if (c->tracking_epoch == epoch)
        return epoch;
    /* off first: a connection redirected to a tracker that went away keeps that redirect */
    redisReply *reply = redisCommand(c->ctx, "CLIENT TRACKING off");
    if (reply)
        freeReplyObject(reply);
    reply = redisCommand(c->ctx, "CLIENT TRACKING on REDIRECT %lld OPTIN", id);
    bool ok = reply && reply->type == REDIS_REPLY_STATUS;
    if (reply)
        freeReplyObject(reply);
    if (!reply)
        conn_reset(c);
    if (!ok)
        return 0;
    c->tracking_epoch = epoch;
    return epoch;
}

/* Stores a value read under ticket, unless the tracker re-subscribed since (its invalidations
 * of that read may be lost). */
static void fill(struct store *s, const char *key, uint64_t ticket, unsigned epoch,
                 const struct cache_value_ops *ops, void *value)
{
    if (atomic_load(&s->tracking_epoch) != epoch)
        ticket = 0;
    cache_finish(s->cache, key, ticket, ops, value);
}

/* After this server wrote key: its cached copy goes now, not when Redis' invalidation arrives,
 * so that a request sees what the request before it wrote (Redis tells the other servers). Also
 * after a failed write, which may have been applied before its reply was lost. */
static void forget(struct store *s, const char *key)
{
    if (s->cache)
        cache_invalidate(s->cache, key);
}

/* ---- keys ---- */

#define KEY_MAX 128

static void key_user(char *buf, const char *username)
{
    snprintf(buf, KEY_MAX, "emp:user:%s", username);
}
static void key_appnames(char *buf, const char *username)
{
    snprintf(buf, KEY_MAX, "emp:user:%s:appnames", username);
}
static void key_userapps(char *buf, const char *username)
{
    snprintf(buf, KEY_MAX, "emp:user:%s:apps", username);
}
static void key_app(char *buf, const char *id)
{
    snprintf(buf, KEY_MAX, "emp:app:%s", id);
}
static void key_lease(char *buf, const char *id)
{
    snprintf(buf, KEY_MAX, "emp:lease:%s", id);
}
#define KEY_APPS      "emp:apps"
#define KEY_DUE       "emp:recon:due"
#define KEY_LEASE_PFX "emp:lease:"

/* ---- users and sessions ---- */

int store_user_create(struct store *store, const struct store_user *user, struct emp_error *err)
{
    char key[KEY_MAX];
    key_user(key, user->username);
    char created[32];
    snprintf(created, sizeof(created), "%" PRId64, user->created_ms);
    const char *argv[] = {key, user->username, user->password_hash, created};
    redisReply *reply;
    int r = script(store, SCRIPT_USER_CREATE, &reply, err, 1, 4, argv, NULL);
    if (r < 0)
        return r;
    bool created_now = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return created_now ? 0 : -EEXIST;
}

static const char *reply_field(const redisReply *hash, const char *name, size_t *ret_len)
{
    if (!hash || hash->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const redisReply *k = hash->element[i];
        const redisReply *v = hash->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 &&
            v->type == REDIS_REPLY_STRING) {
            if (ret_len)
                *ret_len = v->len;
            return v->str;
        }
    }
    return NULL;
}

static int64_t reply_field_int(const redisReply *hash, const char *name)
{
    const char *v = reply_field(hash, name, NULL);
    return v ? strtoll(v, NULL, 10) : 0;
}

int store_user_get(struct store *store, const char *username, struct store_user *ret_user,
                   struct emp_error *err)
{
    char key[KEY_MAX];
    key_user(key, username);
    redisReply *reply;
    int r = commandf(store, &reply, err, "HGETALL %s", key);
    if (r < 0)
        return r;
    const char *hash = reply_field(reply, "password_hash", NULL);
    if (!hash || strlen(hash) >= STORE_HASH_MAX) {
        freeReplyObject(reply);
        return -ENOENT;
    }
    struct store_user u = {0};
    snprintf(u.username, sizeof(u.username), "%s", username);
    snprintf(u.password_hash, sizeof(u.password_hash), "%s", hash);
    u.created_ms = reply_field_int(reply, "created_at");
    freeReplyObject(reply);
    *ret_user = u;
    return 0;
}

int store_session_create(struct store *store, const char *digest, const char *username,
                         int64_t expires_ms, struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:session:%s", digest);
    redisReply *reply;
    int r =
        commandf(store, &reply, err, "SET %s %s PXAT %lld", key, username, (long long)expires_ms);
    forget(store, key);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

int store_session_get(struct store *store, const char *digest, char *ret_username,
                      int64_t *ret_expires_ms, struct emp_error *err)
{
    struct store_app *none = NULL;
    int r = store_session_and_app(store, digest, NULL, ret_username, ret_expires_ms, &none, err);
    if (r < 0)
        return r;
    return ret_username[0] ? 0 : -ENOENT;
}

int store_session_delete(struct store *store, const char *digest, struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:session:%s", digest);
    redisReply *reply;
    int r = commandf(store, &reply, err, "DEL %s", key);
    forget(store, key);
    if (r < 0)
        return r;
    bool deleted = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
    freeReplyObject(reply);
    return deleted ? 0 : -ENOENT;
}

static int login_counter(redisReply *reply, int64_t *ret_count, int64_t *ret_ttl)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return -EPROTO;
    *ret_count = reply->element[0]->integer;
    *ret_ttl = reply->element[1]->integer;
    return 0;
}

int store_login_failure_add(struct store *store, const char *username, int window_s,
                            int64_t *ret_count, int64_t *ret_retry_after_s, struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:loginfail:%s", username);
    char window[16];
    snprintf(window, sizeof(window), "%d", window_s);
    const char *argv[] = {key, window};
    redisReply *reply;
    int r = script(store, SCRIPT_LOGIN_FAILURE, &reply, err, 1, 2, argv, NULL);
    if (r < 0)
        return r;
    r = login_counter(reply, ret_count, ret_retry_after_s);
    freeReplyObject(reply);
    return r;
}

int store_login_failure_get(struct store *store, const char *username, int64_t *ret_count,
                            int64_t *ret_retry_after_s, struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:loginfail:%s", username);
    struct conn *c;
    int r = conn_get(store, &c, err);
    if (r < 0)
        return r;
    redisAppendCommand(c->ctx, "GET %s", key);
    redisAppendCommand(c->ctx, "TTL %s", key);
    redisReply *replies[2];
    r = pipeline_read(store, c, 2, replies, err);
    if (r < 0)
        return r;
    redisReply *count = replies[0], *ttl = replies[1];
    *ret_count = count->type == REDIS_REPLY_STRING ? strtoll(count->str, NULL, 10) : 0;
    *ret_retry_after_s = ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0 ? ttl->integer : 0;
    freeReplyObject(count);
    freeReplyObject(ttl);
    return 0;
}

int store_login_failure_clear(struct store *store, const char *username, struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:loginfail:%s", username);
    redisReply *reply;
    int r = commandf(store, &reply, err, "DEL %s", key);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

/* ---- apps ---- */

static const char *const state_names[APP_STATE__COUNT] = {
    [APP_DEPLOYING] = "deploying", [APP_RUNNING] = "running",   [APP_STOPPED] = "stopped",
    [APP_FAILED] = "failed",       [APP_REMOVING] = "removing",
};
static const char *const desired_names[DESIRED__COUNT] = {
    [DESIRED_RUNNING] = "running",
    [DESIRED_STOPPED] = "stopped",
    [DESIRED_REMOVED] = "removed",
};

const char *app_state_name(enum app_state state)
{
    return (unsigned)state < APP_STATE__COUNT ? state_names[state] : "unknown";
}

const char *app_desired_name(enum app_desired desired)
{
    return (unsigned)desired < DESIRED__COUNT ? desired_names[desired] : "unknown";
}

static int lookup_name(const char *const *names, int count, const char *value)
{
    for (int i = 0; value && i < count; i++)
        if (strcmp(names[i], value) == 0)
            return i;
    return -1;
}

void store_app_free(struct store_app *app)
{
    if (!app)
        return;
    free(app->spec_json);
    free(app->reason);
    free(app->address);
    free(app->last_exit);
    free(app->binding);
    free(app);
}

void store_app_list_free(struct store_app **apps, size_t count)
{
    if (!apps)
        return;
    for (size_t i = 0; i < count; i++)
        store_app_free(apps[i]);
    free(apps);
}

static char *dup_field(const redisReply *hash, const char *name)
{
    size_t len;
    const char *v = reply_field(hash, name, &len);
    return v ? strndup(v, len) : NULL;
}

/* Builds a record from an HGETALL reply. -ENOENT for an empty (missing) hash. */
static int app_from_reply(const redisReply *hash, struct store_app **ret)
{
    const char *id = reply_field(hash, "id", NULL);
    const char *spec = reply_field(hash, "spec", NULL);
    if (!id || !spec)
        return -ENOENT;
    struct store_app *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    snprintf(a->id, sizeof(a->id), "%s", id);
    const char *owner = reply_field(hash, "owner", NULL);
    const char *name = reply_field(hash, "name", NULL);
    snprintf(a->owner, sizeof(a->owner), "%s", owner ? owner : "");
    snprintf(a->name, sizeof(a->name), "%s", name ? name : "");
    a->spec_json = dup_field(hash, "spec");
    a->reason = dup_field(hash, "reason");
    a->address = dup_field(hash, "address");
    a->created_ms = reply_field_int(hash, "created_at");
    a->updated_ms = reply_field_int(hash, "updated_at");
    int desired = lookup_name(desired_names, DESIRED__COUNT, reply_field(hash, "desired", NULL));
    a->desired = desired < 0 ? DESIRED_RUNNING : (enum app_desired)desired;
    a->desired_replicas = (int)reply_field_int(hash, "desired_replicas");
    a->generation = reply_field_int(hash, "generation");
    int state = lookup_name(state_names, APP_STATE__COUNT, reply_field(hash, "state", NULL));
    a->state = state < 0 ? APP_DEPLOYING : (enum app_state)state;
    a->ready_replicas = (int)reply_field_int(hash, "ready_replicas");
    a->observed_generation = reply_field_int(hash, "observed_generation");
    a->deployed = reply_field_int(hash, "deployed") != 0;
    a->failures = (int)reply_field_int(hash, "failures");
    a->restarts = (int)reply_field_int(hash, "restarts");
    a->last_exit = dup_field(hash, "last_exit");
    a->binding = dup_field(hash, "binding");
    a->purge = reply_field_int(hash, "purge") != 0;
    if (!a->spec_json) {
        store_app_free(a);
        return -ENOMEM;
    }
    *ret = a;
    return 0;
}

int store_app_create(struct store *store, const struct store_app *app, int max_apps,
                     struct emp_error *err)
{
    char k_app[KEY_MAX], k_names[KEY_MAX], k_userapps[KEY_MAX];
    key_app(k_app, app->id);
    key_appnames(k_names, app->owner);
    key_userapps(k_userapps, app->owner);
    char now[24], created[24], updated[24], replicas[16], gen[24], max[16];
    snprintf(now, sizeof(now), "%" PRId64, app->created_ms);
    snprintf(created, sizeof(created), "%" PRId64, app->created_ms);
    snprintf(updated, sizeof(updated), "%" PRId64, app->updated_ms);
    snprintf(replicas, sizeof(replicas), "%d", app->desired_replicas);
    snprintf(gen, sizeof(gen), "%" PRId64, app->generation);
    snprintf(max, sizeof(max), "%d", max_apps);
    const char *argv[] = {
        k_app,
        k_names,
        k_userapps,
        KEY_APPS,
        KEY_DUE,
        app->id,
        app->name,
        now,
        max,
        "id",
        app->id,
        "owner",
        app->owner,
        "name",
        app->name,
        "spec",
        app->spec_json,
        "created_at",
        created,
        "updated_at",
        updated,
        "desired",
        app_desired_name(app->desired),
        "desired_replicas",
        replicas,
        "generation",
        gen,
        "state",
        app_state_name(app->state),
    };
    redisReply *reply;
    int r = script(store, SCRIPT_APP_CREATE, &reply, err, 5, (int)(sizeof(argv) / sizeof(argv[0])),
                   argv, NULL);
    forget(store, k_app);
    if (r < 0)
        return r;
    long long result = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -2;
    freeReplyObject(reply);
    if (result == 0)
        return -EEXIST;
    if (result == -1)
        return -EDQUOT;
    return result == 1 ? 0 : -EPROTO;
}

int store_app_get(struct store *store, const char *id, struct store_app **ret_app,
                  struct emp_error *err)
{
    char key[KEY_MAX];
    key_app(key, id);
    redisReply *reply;
    int r = commandf(store, &reply, err, "HGETALL %s", key);
    if (r < 0)
        return r;
    r = app_from_reply(reply, ret_app);
    freeReplyObject(reply);
    return r;
}

int store_app_find(struct store *store, const char *owner, const char *name, char *ret_id,
                   struct emp_error *err)
{
    char key[KEY_MAX];
    key_appnames(key, owner);
    redisReply *reply;
    int r = commandf(store, &reply, err, "HGET %s %s", key, name);
    if (r < 0)
        return r;
    r = -ENOENT;
    if (reply->type == REDIS_REPLY_STRING && reply->len == NAMES_UUID_LEN) {
        memcpy(ret_id, reply->str, NAMES_UUID_LEN + 1);
        r = 0;
    }
    freeReplyObject(reply);
    return r;
}

/* ---- cached values ---- */

struct session_value {
    bool exists;
    char username[NAMES_LABEL_MAX + 1];
    int64_t expires_ms;
};

static int session_copy(const void *value, void *out)
{
    memcpy(out, value, sizeof(struct session_value));
    return 0;
}

static const struct cache_value_ops session_ops = {session_copy, free};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct store_app *app_dup(const struct store_app *a)
{
    struct store_app *copy = malloc(sizeof(*copy));
    if (!copy)
        return NULL;
    *copy = *a;
    copy->spec_json = dup_or_null(a->spec_json);
    copy->reason = dup_or_null(a->reason);
    copy->address = dup_or_null(a->address);
    copy->last_exit = dup_or_null(a->last_exit);
    copy->binding = dup_or_null(a->binding);
    if (!copy->spec_json || (a->reason && !copy->reason) || (a->address && !copy->address) ||
        (a->last_exit && !copy->last_exit) || (a->binding && !copy->binding)) {
        store_app_free(copy);
        return NULL;
    }
    return copy;
}

/* The cached value of an app key: the record, or NULL for "no such app". */
struct app_value {
    struct store_app *app;
};

static int app_copy(const void *value, void *out)
{
    const struct app_value *v = value;
    struct store_app **ret = out;
    *ret = v->app ? app_dup(v->app) : NULL;
    return v->app && !*ret ? -ENOMEM : 0;
}

static void app_value_free(void *value)
{
    struct app_value *v = value;
    if (v)
        store_app_free(v->app);
    free(v);
}

static const struct cache_value_ops app_ops = {app_copy, app_value_free};

int store_session_and_app(struct store *store, const char *digest, const char *id,
                          char *ret_username, int64_t *ret_expires_ms, struct store_app **ret_app,
                          struct emp_error *err)
{
    char k_session[KEY_MAX], k_app[KEY_MAX];
    snprintf(k_session, sizeof(k_session), "emp:session:%s", digest);
    if (id)
        key_app(k_app, id);
    struct session_value session = {0};
    struct store_app *app = NULL;
    bool have_session = false, have_app = !id;
    if (store->cache) {
        have_session = cache_get(store->cache, k_session, &session_ops, &session) == 1;
        if (id)
            have_app = cache_get(store->cache, k_app, &app_ops, &app) == 1;
    }
    int r = 0;
    if (!have_session || !have_app) {
        struct conn *c;
        r = conn_get(store, &c, err);
        if (r < 0) {
            store_app_free(app);
            return r;
        }
        unsigned epoch = tracking_ready(store, c);
        uint64_t t_session = 0, t_app = 0;
        size_t n = 0;
        /* pipelined: one round trip for whatever the cache did not have */
        if (!have_session) {
            if (epoch) {
                t_session = cache_begin(store->cache, k_session);
                redisAppendCommand(c->ctx, "CLIENT CACHING yes");
                n++;
            }
            redisAppendCommand(c->ctx, "GET %s", k_session);
            redisAppendCommand(c->ctx, "PEXPIRETIME %s", k_session);
            n += 2;
        }
        if (!have_app) {
            if (epoch) {
                t_app = cache_begin(store->cache, k_app);
                redisAppendCommand(c->ctx, "CLIENT CACHING yes");
                n++;
            }
            redisAppendCommand(c->ctx, "HGETALL %s", k_app);
            n++;
        }
        redisReply *replies[6];
        r = pipeline_read(store, c, n, replies, err);
        if (r < 0) {
            store_app_free(app);
            return r;
        }
        size_t next = 0;
        if (!have_session) {
            next += epoch ? 1 : 0;
            redisReply *user = replies[next++], *expiry = replies[next++];
            if (user->type == REDIS_REPLY_STRING && user->len <= NAMES_LABEL_MAX) {
                session.exists = true;
                memcpy(session.username, user->str, user->len + 1);
                session.expires_ms = expiry->type == REDIS_REPLY_INTEGER ? expiry->integer : 0;
            }
            /* only sessions that exist are kept: tokens that do not must not push out those
             * that do */
            struct session_value *copy = t_session && session.exists ? malloc(sizeof(*copy)) : NULL;
            if (copy) {
                *copy = session;
                fill(store, k_session, t_session, epoch, &session_ops, copy);
            }
        }
        if (!have_app) {
            next += epoch ? 1 : 0;
            r = app_from_reply(replies[next++], &app);
            if (r == -ENOENT) {
                r = 0;
                app = NULL;
            }
            struct app_value *value = r == 0 && t_app ? calloc(1, sizeof(*value)) : NULL;
            if (value) {
                value->app = app ? app_dup(app) : NULL;
                if (app && !value->app)
                    t_app = 0;
                fill(store, k_app, t_app, epoch, &app_ops, value);
            }
        }
        for (size_t i = 0; i < n; i++)
            freeReplyObject(replies[i]);
        if (r < 0) {
            store_app_free(app);
            return r;
        }
    }
    /* Redis expires the key, and says so to the cache; the clock check covers the moments in
     * between */
    if (session.exists && session.expires_ms > 0 && session.expires_ms <= time_now_ms())
        session.exists = false;
    ret_username[0] = '\0';
    if (session.exists)
        snprintf(ret_username, NAMES_LABEL_MAX + 1, "%s", session.username);
    *ret_expires_ms = session.expires_ms;
    *ret_app = app;
    return 0;
}

int store_app_list(struct store *store, const char *owner, const char *cursor, size_t limit,
                   struct store_app ***ret_apps, size_t *ret_count, char **ret_next_cursor,
                   struct emp_error *err)
{
    char k_index[KEY_MAX], k_names[KEY_MAX];
    if (owner) {
        key_userapps(k_index, owner);
        key_appnames(k_names, owner);
    } else {
        snprintf(k_index, sizeof(k_index), "%s", KEY_APPS);
        k_names[0] = '\0';
    }
    if (limit == 0 || limit > LIST_LIMIT_MAX)
        limit = LIST_LIMIT_MAX;
    char limit_text[16];
    snprintf(limit_text, sizeof(limit_text), "%zu", limit + 1);
    const char *argv[] = {k_index, k_names, cursor ? cursor : "", limit_text};
    redisReply *reply;
    int r = script(store, SCRIPT_LIST, &reply, err, 2, 4, argv, NULL);
    if (r < 0)
        return r;
    struct store_app **apps = NULL;
    size_t count = 0;
    char *next = NULL;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        r = -EPROTO;
        goto out;
    }
    redisReply *members = reply->element[0];
    redisReply *ids = reply->element[1];
    size_t n = members->elements < limit ? members->elements : limit;
    if (members->elements > limit)
        next = strdup(members->element[limit - 1]->str);
    apps = calloc(n ? n : 1, sizeof(*apps));
    if (!apps || (members->elements > limit && !next)) {
        r = -ENOMEM;
        goto out;
    }
    struct conn *c;
    r = conn_get(store, &c, err);
    if (r < 0)
        goto out;
    size_t asked = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids->element[i]->type != REDIS_REPLY_STRING)
            continue; /* an index entry whose app vanished meanwhile */
        char key[KEY_MAX];
        key_app(key, ids->element[i]->str);
        redisAppendCommand(c->ctx, "HGETALL %s", key);
        asked++;
    }
    redisReply **hashes = calloc(asked ? asked : 1, sizeof(*hashes));
    if (!hashes) {
        conn_reset(c);
        r = -ENOMEM;
        goto out;
    }
    r = pipeline_read(store, c, asked, hashes, err);
    if (r < 0) {
        free(hashes);
        goto out;
    }
    for (size_t i = 0; i < asked; i++) {
        struct store_app *a;
        if (app_from_reply(hashes[i], &a) == 0)
            apps[count++] = a;
        freeReplyObject(hashes[i]);
    }
    free(hashes);
    *ret_apps = apps;
    *ret_count = count;
    *ret_next_cursor = next;
    apps = NULL;
    next = NULL;
    r = 0;
out:
    store_app_list_free(apps, count);
    free(next);
    freeReplyObject(reply);
    return r;
}

int store_app_update(struct store *store, const char *id, int64_t expected_generation,
                     const struct store_app_change *change, int64_t *ret_generation,
                     struct emp_error *err)
{
    char k_app[KEY_MAX];
    key_app(k_app, id);
    char expected[24], now[24], replicas[16];
    snprintf(expected, sizeof(expected), "%" PRId64, expected_generation);
    snprintf(now, sizeof(now), "%" PRId64, time_now_ms());
    const char *argv[16] = {k_app, KEY_DUE, id, expected, now};
    int argc = 5;
    if (change->desired >= 0) {
        argv[argc++] = "desired";
        argv[argc++] = app_desired_name((enum app_desired)change->desired);
    }
    if (change->desired_replicas >= 0) {
        snprintf(replicas, sizeof(replicas), "%d", change->desired_replicas);
        argv[argc++] = "desired_replicas";
        argv[argc++] = replicas;
    }
    if (change->spec_json) {
        argv[argc++] = "spec";
        argv[argc++] = change->spec_json;
    }
    if (change->state >= 0) {
        argv[argc++] = "state";
        argv[argc++] = app_state_name((enum app_state)change->state);
    }
    if (change->purge >= 0) {
        argv[argc++] = "purge";
        argv[argc++] = change->purge ? "1" : "0";
    }
    redisReply *reply;
    int r = script(store, SCRIPT_APP_UPDATE, &reply, err, 2, argc, argv, NULL);
    forget(store, k_app);
    if (r < 0)
        return r;
    long long result = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -3;
    freeReplyObject(reply);
    if (result == -1)
        return -ENOENT;
    if (result == -2)
        return -ESTALE;
    if (result < 0)
        return -EPROTO;
    if (ret_generation)
        *ret_generation = result;
    return 0;
}

int store_app_set_observed(struct store *store, const char *id,
                           const struct store_app_observed *observed, struct emp_error *err)
{
    char k_app[KEY_MAX];
    key_app(k_app, id);
    /* zeros and empty strings are not stored (the script deletes the field): a missing field
     * reads as 0 or NULL, and the record stays small */
    char ready[16] = "", gen[24] = "", failures[16] = "", restarts[16] = "";
    if (observed->ready_replicas)
        snprintf(ready, sizeof(ready), "%d", observed->ready_replicas);
    if (observed->failures)
        snprintf(failures, sizeof(failures), "%d", observed->failures);
    if (observed->restarts)
        snprintf(restarts, sizeof(restarts), "%d", observed->restarts);
    if (observed->observed_generation)
        snprintf(gen, sizeof(gen), "%" PRId64, observed->observed_generation);
    const char *argv[] = {
        k_app,
        "state",
        app_state_name(observed->state),
        "reason",
        observed->reason ? observed->reason : "",
        "address",
        observed->address ? observed->address : "",
        "ready_replicas",
        ready,
        "observed_generation",
        gen,
        "deployed",
        observed->deployed ? "1" : "",
        "failures",
        failures,
        "restarts",
        restarts,
        "last_exit",
        observed->last_exit ? observed->last_exit : "",
        "binding",
        observed->binding ? observed->binding : "",
    };
    redisReply *reply;
    int r = script(store, SCRIPT_APP_OBSERVED, &reply, err, 1,
                   (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL);
    forget(store, k_app);
    if (r < 0)
        return r;
    bool found = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return found ? 0 : -ENOENT;
}

int store_app_delete(struct store *store, const char *id, struct emp_error *err)
{
    struct store_app *app;
    int r = store_app_get(store, id, &app, err);
    if (r < 0)
        return r;
    char k_app[KEY_MAX], k_names[KEY_MAX], k_userapps[KEY_MAX], k_lease[KEY_MAX];
    key_app(k_app, id);
    key_appnames(k_names, app->owner);
    key_userapps(k_userapps, app->owner);
    key_lease(k_lease, id);
    const char *argv[] = {k_app, k_names, k_userapps, KEY_APPS, KEY_DUE, k_lease, id, app->name};
    redisReply *reply;
    r = script(store, SCRIPT_APP_DELETE, &reply, err, 6, 8, argv, NULL);
    forget(store, k_app);
    store_app_free(app);
    if (r < 0)
        return r;
    bool deleted = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return deleted ? 0 : -ENOENT;
}

/* ---- the reconciler's schedule ---- */

int store_recon_claim(struct store *store, const char *holder, int64_t now_ms, int64_t lease_ms,
                      char *ret_id, struct emp_error *err)
{
    char now[24], lease[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    snprintf(lease, sizeof(lease), "%" PRId64, lease_ms);
    const char *argv[] = {KEY_DUE, now, lease, holder, KEY_LEASE_PFX};
    redisReply *reply;
    int r = script(store, SCRIPT_RECON_CLAIM, &reply, err, 1, 5, argv, NULL);
    if (r < 0)
        return r;
    r = -ENOENT;
    if (reply->type == REDIS_REPLY_STRING && reply->len == NAMES_UUID_LEN) {
        memcpy(ret_id, reply->str, NAMES_UUID_LEN + 1);
        r = 0;
    }
    freeReplyObject(reply);
    return r;
}

int store_recon_renew(struct store *store, const char *id, const char *holder, int64_t lease_ms,
                      struct emp_error *err)
{
    char k_lease[KEY_MAX];
    key_lease(k_lease, id);
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRId64, lease_ms);
    const char *argv[] = {k_lease, holder, lease};
    redisReply *reply;
    int r = script(store, SCRIPT_RECON_RENEW, &reply, err, 1, 3, argv, NULL);
    if (r < 0)
        return r;
    bool ours = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return ours ? 0 : -ENOENT;
}

int store_recon_release(struct store *store, const char *id, const char *holder, int64_t next_ms,
                        int64_t seen_generation, struct emp_error *err)
{
    char k_lease[KEY_MAX], k_app[KEY_MAX];
    key_lease(k_lease, id);
    key_app(k_app, id);
    char next[24], seen[24], now[24];
    snprintf(next, sizeof(next), "%" PRId64, next_ms);
    snprintf(seen, sizeof(seen), "%" PRId64, seen_generation);
    snprintf(now, sizeof(now), "%" PRId64, time_now_ms());
    const char *argv[] = {KEY_DUE, k_lease, k_app, id, holder, next, seen, now};
    redisReply *reply;
    int r = script(store, SCRIPT_RECON_RELEASE, &reply, err, 3, 8, argv, NULL);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

int store_recon_expedite(struct store *store, const char *id, int64_t now_ms, struct emp_error *err)
{
    /* XX: only apps still scheduled; LT: only ever earlier */
    redisReply *reply;
    int r = commandf(store, &reply, err, "ZADD %s XX LT %lld %s", KEY_DUE, (long long)now_ms, id);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

int store_node_claim(struct store *store, const char *kind, const char *node, int64_t ttl_ms,
                     char *ret_holder, size_t holder_size, struct emp_error *err)
{
    char key[KEY_MAX], ttl[24];
    snprintf(key, sizeof(key), "emp:node:%s", kind);
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    const char *argv[] = {key, node, ttl};
    redisReply *reply;
    int r = script(store, SCRIPT_NODE_CLAIM, &reply, err, 1, 3, argv, NULL);
    if (r < 0)
        return r;
    bool ours = reply->type == REDIS_REPLY_STRING && strcmp(reply->str, node) == 0;
    if (!ours && reply->type == REDIS_REPLY_STRING)
        snprintf(ret_holder, holder_size, "%s", reply->str);
    freeReplyObject(reply);
    return ours ? 0 : -EBUSY;
}

int store_node_release(struct store *store, const char *kind, const char *node,
                       struct emp_error *err)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "emp:node:%s", kind);
    const char *argv[] = {key, node};
    redisReply *reply;
    int r = script(store, SCRIPT_NODE_RELEASE, &reply, err, 1, 2, argv, NULL);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

int store_recon_expedite_all(struct store *store, int64_t now_ms, struct emp_error *err)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    const char *argv[] = {KEY_DUE, now};
    redisReply *reply;
    int r = script(store, SCRIPT_RECON_ALL_DUE, &reply, err, 1, 2, argv, NULL);
    if (r < 0)
        return r;
    freeReplyObject(reply);
    return 0;
}

int store_recon_next_due(struct store *store, int64_t *ret_due_ms, struct emp_error *err)
{
    redisReply *reply;
    int r = commandf(store, &reply, err, "ZRANGE %s 0 0 WITHSCORES", KEY_DUE);
    if (r < 0)
        return r;
    r = -ENOENT;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        *ret_due_ms = (int64_t)strtod(reply->element[1]->str, NULL);
        r = 0;
    }
    freeReplyObject(reply);
    return r;
}
