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
 *   tm:{app}:{res}:{b}  hash   trace metrics of an app in the bucket of res seconds starting at b:
 *                              r (requests), e (errors), L / S (latency / self-time histogram,
 *                              packed: HIST_PACKED) and l{i} / s{i} (their bucket i, counters:
 *                              a flush's few buckets, HIST_FEW; the older layout)
 *   to:{app}:{res}:{b}  hash   its calls out: c:{callee}, e:{callee}, L:{callee} and
 *                              l:{callee}:{i} (histogram), a:{callee} (the callee's app id)
 *   ti:{app}:{res}:{b}  hash   calls in, by caller app id: c:, e:, L:, l:..:{i}, n:{caller}
 *   tj:{c|s|p}:{t}:{id} string halves of calls waiting for their other half; tj:due zset
 *   troll               zset   {app}:{minute} -> when that minute of the app is rolled up (ms)
 *   tw:{write}:{step}   string a step of a trace write that was applied, expiring
 *   tstat               hash   counters of the ingestion
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
#include <sys/socket.h>

#include "aggregate.h"
#include "cache.h"
#include "emp/log.h"
#include "emp/timeutil.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 3000
#define LIST_LIMIT_MAX     1000
/* minutes of apps that one trace script rolls up, at most; a flush asks again while it is full */
#define TRACE_ROLLS_PER_CALL 64
/* a count whose 10 s bucket has less than this to live goes to its 1 min bucket only: written to
 * the 10 s bucket, it would be lost if that expired before its minute is rolled up, which a
 * backlog of minutes due (TRACE_ROLLS_PER_CALL a call) or a long flush delays by seconds */
#define TRACE_FINE_MARGIN_S 120
#define STRINGIFY(x)        #x
#define TEXT_OF(x)          STRINGIFY(x)
/* A histogram in Redis is one field: each of its buckets as HIST_PACKED bytes, little-endian (the
 * bucket in 2, its count in 6), in ascending order; HIST_PACKED_FORMAT is that for Lua's struct */
#define HIST_PACKED           8
#define HIST_PACKED_FORMAT    "<HI6"
#define HIST_PACKED_COUNT_MAX ((UINT64_C(1) << 48) - 1)
/* what a flush adds to a histogram, up to this many buckets, goes to a field a bucket (l{i},
 * s{i}, l:{peer}:{i}: one HINCRBY each) instead: cheaper than merging, for few (sparse series,
 * late spans) */
#define HIST_FEW 4

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
    SCRIPT_TRACE_ADD,
    SCRIPT_TRACE_ADOPT,
    SCRIPT__COUNT
};

struct conn {
    redisContext *ctx;
    char script_sha[SCRIPT__COUNT][41]; /* loaded lazily, per connection */
    unsigned tracking_epoch; /* the epoch this connection's tracking is redirected for, or 0 */
};

/* ---- scripts ---- */

static const char *const scripts[SCRIPT__COUNT] = {
    /* KEYS: app, appnames, userapps, apps, due. ARGV: id, name, now, max_apps, fields... */
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
    /* KEYS: due. ARGV: now, lease_ms, holder, lease key prefix. Claiming moves the app's check
     * time past the lease, so that a crashed holder's apps come back once its leases expire. */
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
    /* the comment and the Lua kept as written: clang-format would reflow the list of records,
     * split the long Lua lines and re-indent the rest (one line of Lua a line) */
    /* clang-format off */
    /* No KEYS: the keys follow from the records (one Redis, not a cluster). ARGV: now_ms, join
     * keys' ttl_ms, join wait_ms, fine keep_s, coarse keep_s, roll-up grace_s, the step's id
     * ("" for none: a step with an id and records is applied once, however often it is sent; one
     * without records leaves no mark), then records:
     *   S app bucket requests errors latency self   an app's series
     *   E caller_app caller callee callee_app bucket calls errors latency   an edge
     *     (latency, self: a histogram, its buckets as HIST_PACKED bytes each, ascending; see
     *     arg_hist)
     *   H server trace id parent shared service app remote remote_app bucket hist_bucket error
     *     (a server half is found by its id, or by its parent: py_zipkin marks servers shared
     *     whatever their id, so the flag does not tell the convention)
     *   T field increment   a counter of the ingestion
     * Counts go into the 10 s buckets (keys as in store_trace_window_get). Each minute of an app
     * is rolled up into its 60 s buckets once, grace_s after it ended (emp:troll says when): the
     * six fine buckets' sums are added and the coarse m bucket marked R. A count for a minute
     * rolled up already goes to its fine and its coarse bucket; one whose fine bucket would have
     * expired, or would expire within TRACE_FINE_MARGIN_S, goes to the coarse bucket only. So
     * every count is in the coarse buckets once.
     * A histogram is one field (L, S, L:{peer}) packed as the records carry it: what a call adds
     * to a field is gathered first and merged with what the field holds once, at the end (a
     * Redis call from Lua costs far more than the Lua a bucket takes); what adds HIST_FEW
     * buckets or fewer goes to fields of one bucket each (l{i}, s{i}, l:{peer}:{i}, as
     * emp-servers wrote every histogram before), counters rolled up like r and e. Readers add
     * both. Halves wait under emp:tj:{c|s|p}:{trace}:{id} for a half from another consumer;
     * calls nobody answered become leaves when emp:tj:due says their wait is over. Returns
     * joined, waiting and leaf calls, and the minutes rolled up (at most TRACE_ROLLS_PER_CALL). */
    [SCRIPT_TRACE_ADD] =
        "local now, join_ttl, join_wait = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])\n"
        "local keep_fine, keep_coarse = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
        "local grace = tonumber(ARGV[6])\n"
        "if ARGV[7] ~= '' and #ARGV > 7 and\n"
        "   not redis.call('SET', 'emp:tw:' .. ARGV[7], '1', 'NX', 'EX', "
        TEXT_OF(STORE_TRACE_WRITE_KEEP_S) ") then\n"
        "  return {0, 0, 0, 0}\n"
        "end\n"
        "local expires, rolled = {}, {}\n"
        /* whether the app's minute is rolled up; if not, it is due grace s after its end */
        "local function is_rolled(app, minute)\n"
        "  local id = app .. ':' .. minute\n"
        "  local v = rolled[id]\n"
        "  if v == nil then\n"
        "    v = redis.call('HEXISTS', 'emp:tm:' .. app .. ':60:' .. minute, 'R') == 1\n"
        "    if not v then\n"
        "      redis.call('ZADD', 'emp:troll', 'NX', (minute + 60 + grace) * 1000, id)\n"
        "    end\n"
        "    rolled[id] = v\n"
        "  end\n"
        "  return v\n"
        "end\n"
        /* the keys a count of kind for app's bucket goes to (none for what would have expired;
         * the coarse one only for a fine bucket about to expire) */
        "local function keys(kind, app, bucket)\n"
        "  local out = {}\n"
        "  local fine = bucket - bucket % 10\n"
        "  local fine_at = fine + 10 + keep_fine\n"
        "  local minute = bucket - bucket % 60\n"
        "  local coarse_at = minute + 60 + keep_coarse\n"
        "  local live = (fine_at - " TEXT_OF(TRACE_FINE_MARGIN_S) ") * 1000 > now\n"
        "  if live then\n"
        "    local k = 'emp:t' .. kind .. ':' .. app .. ':10:' .. fine\n"
        "    expires[k] = fine_at\n"
        "    out[1] = k\n"
        "  end\n"
        "  if coarse_at * 1000 > now and (not live or is_rolled(app, minute)) then\n"
        "    local k = 'emp:t' .. kind .. ':' .. app .. ':60:' .. minute\n"
        "    expires[k] = coarse_at\n"
        "    out[#out + 1] = k\n"
        "  end\n"
        "  return out\n"
        "end\n"
        "local function add(k, f, n) if n ~= 0 then redis.call('HINCRBY', k, f, n) end end\n"
        /* histograms: hists[k][f] lists what the call adds to field f of key k, merged with
         * what the field holds by write_hists (a field that holds nothing yet and gets one
         * histogram takes it as it is) */
        "local fmt, w = '" HIST_PACKED_FORMAT "', " TEXT_OF(HIST_PACKED) "\n"
        "local sub = string.sub\n"
        "local hists, hist_keys = {}, {}\n"
        "local function hist(k, f, packed)\n"
        "  if packed == '' then return end\n"
        "  if #packed <= " TEXT_OF(HIST_FEW) " * w then\n"
        "    local each = (f == 'S' and 's' or 'l') .. sub(f, 2)\n"
        "    if #f > 1 then each = each .. ':' end\n"
        "    for p = 1, #packed - w + 1, w do\n"
        "      local b, n = struct.unpack(fmt, packed, p)\n"
        "      redis.call('HINCRBY', k, each .. b, n)\n"
        "    end\n"
        "    return\n"
        "  end\n"
        "  local h = hists[k]\n"
        "  if not h then h = {} hists[k] = h hist_keys[#hist_keys + 1] = k end\n"
        "  local l = h[f]\n"
        "  if not l then h[f] = {packed} else l[#l + 1] = packed end\n"
        "end\n"
        /* two packed histograms into one: their buckets in order, counts of the same added.
         * Each is unpacked into numbers at once and the result packed at once: a string, a
         * struct call or a string.byte a bucket cost far more (Lua interns every string it
         * makes), and the merge was most of what the trace script did */
        "local fmts = {}\n" /* the format of n buckets */
        "local function fmt_of(n)\n"
        "  local f = fmts[n]\n"
        "  if not f then f = string.rep(fmt, n) fmts[n] = f end\n"
        "  return f\n"
        "end\n"
        "local function unpacked(s)\n"
        "  local t = {struct.unpack(fmt_of(#s / w), s)}\n"
        "  t[#t] = nil\n" /* the position after the last */
        "  return t\n"
        "end\n"
        "local function merge(x, y)\n"
        "  local a, b, out, n, i, j = unpacked(x), unpacked(y), {}, 0, 1, 1\n"
        "  local na, nb = #a, #b\n"
        "  while i <= na and j <= nb do\n"
        "    local ba, bb = a[i], b[j]\n"
        "    if ba == bb then out[n + 1], out[n + 2], i, j = ba, a[i + 1] + b[j + 1], i + 2, j + 2\n"
        "    elseif ba < bb then out[n + 1], out[n + 2], i = ba, a[i + 1], i + 2\n"
        "    else out[n + 1], out[n + 2], j = bb, b[j + 1], j + 2 end\n"
        "    n = n + 2\n"
        "  end\n"
        "  for k = i, na do n = n + 1 out[n] = a[k] end\n"
        "  for k = j, nb do n = n + 1 out[n] = b[k] end\n"
        "  return struct.pack(fmt_of(n / 2), unpack(out, 1, n))\n"
        "end\n"
        /* in parts of 500 fields: unpack() takes at most some 8,000 values */
        "local function write_hists()\n"
        "  for _, k in ipairs(hist_keys) do\n"
        "    local fs = {}\n"
        "    for f in pairs(hists[k]) do fs[#fs + 1] = f end\n"
        "    for j = 1, #fs, 500 do\n"
        "      local part = fs\n"
        "      if #fs > 500 then part = {unpack(fs, j, math.min(j + 499, #fs))} end\n"
        "      local old, args = redis.call('HMGET', k, unpack(part)), {}\n"
        "      for m, f in ipairs(part) do\n"
        "        local l = hists[k][f]\n"
        "        local v = old[m] or l[1]\n"
        "        for q = old[m] and 1 or 2, #l do v = merge(v, l[q]) end\n"
        "        args[#args + 1] = f\n"
        "        args[#args + 1] = v\n"
        "      end\n"
        "      redis.call('HSET', k, unpack(args))\n"
        "    end\n"
        "  end\n"
        "  hists, hist_keys = {}, {}\n"
        "end\n"
        "local function edge(caller_app, caller, callee, callee_app, bucket, calls, errors, lat)\n"
        "  for _, k in ipairs(keys('o', caller_app, bucket)) do\n"
        "    add(k, 'c:' .. callee, calls)\n"
        "    add(k, 'e:' .. callee, errors)\n"
        "    hist(k, 'L:' .. callee, lat)\n"
        "    if callee_app ~= '' then redis.call('HSET', k, 'a:' .. callee, callee_app) end\n"
        "  end\n"
        "  if callee_app == '' then return end\n"
        "  for _, k in ipairs(keys('i', callee_app, bucket)) do\n"
        "    add(k, 'c:' .. caller_app, calls)\n"
        "    add(k, 'e:' .. caller_app, errors)\n"
        "    hist(k, 'L:' .. caller_app, lat)\n"
        "    redis.call('HSET', k, 'n:' .. caller_app, caller)\n"
        "  end\n"
        "end\n"
        /* the app's minute into its coarse buckets: sums of the fine ones (names are set) */
        "local function roll(app, minute)\n"
        "  local mark = 'emp:tm:' .. app .. ':60:' .. minute\n"
        "  local at = minute + 60 + keep_coarse\n"
        "  if at * 1000 <= now or redis.call('HEXISTS', mark, 'R') == 1 then return end\n"
        "  for _, kind in ipairs({'m', 'o', 'i'}) do\n"
        "    local sums, names, packed = {}, {}, {}\n"
        "    for b = minute, minute + 50, 10 do\n"
        "      local h = redis.call('HGETALL', 'emp:t' .. kind .. ':' .. app .. ':10:' .. b)\n"
        "      for j = 1, #h, 2 do\n"
        "        local f = h[j]\n"
        "        local c = string.sub(f, 1, 2)\n"
        "        if kind ~= 'm' and (c == 'a:' or c == 'n:') then names[f] = h[j + 1]\n"
        "        elseif f == 'L' or f == 'S' or c == 'L:' then packed[#packed + 1] = {f, h[j + 1]}\n"
        "        else sums[f] = (sums[f] or 0) + tonumber(h[j + 1]) end\n"
        "      end\n"
        "    end\n"
        "    local k = 'emp:t' .. kind .. ':' .. app .. ':60:' .. minute\n"
        "    for f, n in pairs(sums) do redis.call('HINCRBY', k, f, string.format('%d', n)) end\n"
        "    for f, v in pairs(names) do redis.call('HSET', k, f, v) end\n"
        "    for _, p in ipairs(packed) do hist(k, p[1], p[2]) end\n"
        "    write_hists()\n"
        "    if next(sums) or next(names) or next(packed) then redis.call('EXPIREAT', k, at) end\n"
        "  end\n"
        "  redis.call('HSET', mark, 'R', '1')\n"
        "  redis.call('EXPIREAT', mark, at)\n"
        "end\n"
        "local function split(v)\n"
        "  local out = {}\n"
        "  for part in string.gmatch(v .. '\\0', '([^%z]*)%z') do out[#out + 1] = part end\n"
        "  return out\n"
        "end\n"
        "local function one(b)\n"
        "  if b == '' then return '' end\n"
        "  return struct.pack(fmt, tonumber(b), 1)\n"
        "end\n"
        "local function waiting(k, service)\n"
        "  local v = redis.call('GET', k)\n"
        "  if not v then return nil end\n"
        "  local f = split(v)\n"
        "  if f[2] == service then return nil end\n"
        "  return f\n"
        "end\n"
        /* a call fails when either side says so */
        "local function call_edge(c, callee, callee_app, callee_err)\n"
        "  local err = tonumber(c[7])\n"
        "  if callee_err == '1' then err = 1 end\n"
        "  edge(c[1], c[2], callee, callee_app, tonumber(c[5]), 1, err, one(c[6]))\n"
        "end\n"
        "local joined, waits, leaves = 0, 0, 0\n"
        "local i = 8\n"
        "while i <= #ARGV do\n"
        "  local t = ARGV[i]\n"
        "  if t == 'S' then\n"
        "    local app, bucket = ARGV[i + 1], tonumber(ARGV[i + 2])\n"
        "    for _, k in ipairs(keys('m', app, bucket)) do\n"
        "      add(k, 'r', tonumber(ARGV[i + 3]))\n"
        "      add(k, 'e', tonumber(ARGV[i + 4]))\n"
        "      hist(k, 'L', ARGV[i + 5])\n"
        "      hist(k, 'S', ARGV[i + 6])\n"
        "    end\n"
        "    i = i + 7\n"
        "  elseif t == 'E' then\n"
        "    edge(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]),\n"
        "         tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), ARGV[i + 8])\n"
        "    i = i + 9\n"
        "  elseif t == 'H' then\n"
        "    local server, trace, id, parent, shared = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],\n"
        "                                               ARGV[i + 4], ARGV[i + 5]\n"
        "    local service, app = ARGV[i + 6], ARGV[i + 7]\n"
        "    local pfx = 'emp:tj:'\n"
        "    if server == '1' then\n"
        "      local ck = pfx .. 'c:' .. trace .. ':' .. id\n"
        "      local c = waiting(ck, service)\n"
        "      if not c and parent ~= '' then\n"
        "        ck = pfx .. 'c:' .. trace .. ':' .. parent\n"
        "        c = waiting(ck, service)\n"
        "      end\n"
        "      if c then\n"
        "        call_edge(c, service, app, ARGV[i + 12])\n"
        "        redis.call('DEL', ck)\n"
        "        redis.call('ZREM', pfx .. 'due', ck)\n"
        "        joined = joined + 1\n"
        "      else\n"
        "        local k1 = pfx .. 's:' .. trace .. ':' .. id\n"
        "        local k2 = ''\n"
        "        if parent ~= '' then k2 = pfx .. 'p:' .. trace .. ':' .. parent end\n"
        "        local v = '\\0' .. service .. '\\0' .. app .. '\\0'\n"
        "        local e = '\\0' .. ARGV[i + 12]\n"
        "        redis.call('SET', k1, v .. k2 .. e, 'PX', join_ttl)\n"
        "        if k2 ~= '' then\n"
        "          redis.call('SET', k2, v .. k1 .. e, 'PX', join_ttl)\n"
        "        end\n"
        "        waits = waits + 1\n"
        "      end\n"
        "    else\n"
        "      local call = {app, service, ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11],\n"
        "                    ARGV[i + 12]}\n"
        "      local sk = pfx .. 's:' .. trace .. ':' .. id\n"
        "      local s = waiting(sk, service)\n"
        "      if not s then\n"
        "        sk = pfx .. 'p:' .. trace .. ':' .. id\n"
        "        s = waiting(sk, service)\n"
        "      end\n"
        "      if s then\n"
        "        call_edge(call, s[2], s[3], s[5])\n"
        "        redis.call('DEL', sk)\n"
        "        if s[4] ~= '' then redis.call('DEL', s[4]) end\n"
        "        joined = joined + 1\n"
        "      else\n"
        "        local ck = pfx .. 'c:' .. trace .. ':' .. id\n"
        "        redis.call('SET', ck, table.concat(call, '\\0'), 'PX', join_ttl)\n"
        "        redis.call('ZADD', pfx .. 'due', now + join_wait, ck)\n"
        "        waits = waits + 1\n"
        "      end\n"
        "    end\n"
        "    i = i + 13\n"
        "  elseif t == 'T' then\n"
        "    redis.call('HINCRBY', 'emp:tstat', ARGV[i + 1], ARGV[i + 2])\n"
        "    i = i + 3\n"
        "  else\n"
        "    return redis.error_reply('bad record ' .. tostring(t) .. ' at ' .. i)\n"
        "  end\n"
        "end\n"
        /* calls whose wait is over: leaves to the service their client named */
        "local due = redis.call('ZRANGEBYSCORE', 'emp:tj:due', '-inf', now, 'LIMIT', 0, 1000)\n"
        "for _, ck in ipairs(due) do\n"
        "  local v = redis.call('GET', ck)\n"
        "  if v then\n"
        "    local c = split(v)\n"
        "    if c[3] ~= '' then call_edge(c, c[3], c[4], '0') leaves = leaves + 1 end\n"
        "    redis.call('DEL', ck)\n"
        "  end\n"
        "  redis.call('ZREM', 'emp:tj:due', ck)\n"
        "end\n"
        "write_hists()\n"
        "for k, at in pairs(expires) do redis.call('EXPIREAT', k, at) end\n"
        /* minutes due to be rolled up */
        "local due_rolls = redis.call('ZRANGEBYSCORE', 'emp:troll', '-inf', now, 'LIMIT', 0, "
        TEXT_OF(TRACE_ROLLS_PER_CALL) ")\n"
        "for _, id in ipairs(due_rolls) do\n"
        "  local app, minute = string.match(id, '^(.+):(%d+)$')\n"
        "  if app then roll(app, tonumber(minute)) end\n"
        "  redis.call('ZREM', 'emp:troll', id)\n"
        "end\n"
        "return {joined, waits, leaves, #due_rolls}\n",
    /* clang-format on */
    /* No KEYS. ARGV: coarse keep_s, then app minute...: each minute marked rolled up (R) unless
     * it is already. Returns how many were marked. */
    [SCRIPT_TRACE_ADOPT] =
        "local n = 0\n"
        "for i = 2, #ARGV, 2 do\n"
        "  local m = 'emp:tm:' .. ARGV[i] .. ':60:' .. ARGV[i + 1]\n"
        "  if redis.call('HSETNX', m, 'R', '1') == 1 then\n"
        "    redis.call('EXPIREAT', m, tonumber(ARGV[i + 1]) + 60 + tonumber(ARGV[1]))\n"
        "    n = n + 1\n"
        "  end\n"
        "end\n"
        "return n\n",
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

/* Whether an idle connection was closed by Redis (it went away or restarted since): such a
 * connection has something to read, the end of its stream, while it waits for no reply. A command
 * sent on it would fail although Redis may be back. */
static bool conn_closed(const struct conn *c)
{
    struct pollfd p = {.fd = c->ctx->fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    char byte;
    ssize_t n = recv(c->ctx->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
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
    if (c->ctx && conn_closed(c))
        conn_reset(c); /* and connect anew */
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
/* Replies made in an arena, freed at once: a window's replies hold some thousands of strings,
 * which hiredis would allocate and free two at a time (the allocator was then most of what
 * emp-server spent on a metrics query). The arena's functions are the reader's only while
 * pipeline_read reads into an arena, in this thread. */
struct arena_block {
    struct arena_block *next;
    size_t used, size;
    _Alignas(16) char data[];
};

struct arena {
    struct arena_block *head;
};

#define ARENA_BLOCK (64u << 10)

static void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (!(b = malloc(sizeof(*b) + size)))
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->size = size;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(struct arena *a)
{
    while (a->head) {
        struct arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

static _Thread_local struct arena *reply_arena; /* while arena_functions are a reader's */

/* A reply of type, in the arena and in its parent array. */
static redisReply *arena_reply(const redisReadTask *task, int type)
{
    redisReply *r = arena_alloc(reply_arena, sizeof(*r));
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (task->parent)
        ((redisReply *)task->parent->obj)->element[task->idx] = r;
    return r;
}

static void *arena_string(const redisReadTask *task, char *str, size_t len)
{
    char *text = arena_alloc(reply_arena, len + 1);
    redisReply *r = text ? arena_reply(task, task->type) : NULL;
    if (!r)
        return NULL;
    memcpy(text, str, len);
    text[len] = '\0';
    r->str = text;
    r->len = len;
    return r;
}

static void *arena_array(const redisReadTask *task, int elements)
{
    size_t n = elements > 0 ? (size_t)elements : 0;
    redisReply **element = n ? arena_alloc(reply_arena, n * sizeof(*element)) : NULL;
    redisReply *r = !n || element ? arena_reply(task, REDIS_REPLY_ARRAY) : NULL;
    if (!r)
        return NULL;
    if (n)
        memset(element, 0, n * sizeof(*element));
    r->element = element;
    r->elements = n;
    return r;
}

static void *arena_integer(const redisReadTask *task, long long v)
{
    redisReply *r = arena_reply(task, REDIS_REPLY_INTEGER);
    if (r)
        r->integer = v;
    return r;
}

static void *arena_nil(const redisReadTask *task)
{
    return arena_reply(task, REDIS_REPLY_NIL);
}

static void arena_object_free(void *reply)
{
    (void)reply; /* freed with its arena */
}

static redisReplyObjectFunctions arena_functions = {arena_string, arena_array, arena_integer,
                                                    arena_nil, arena_object_free};

/* Reads n replies into replies, made by hiredis (free each with freeReplyObject) or, with an
 * arena, in it (they go with it). On an error, frees what it read (an arena's go with it). */
static int pipeline_read(struct store *s, struct conn *c, size_t n, redisReply **replies,
                         struct arena *arena, struct emp_error *err)
{
    redisReader *reader = c->ctx->reader;
    redisReplyObjectFunctions *fn = reader->fn;
    if (arena) {
        reader->fn = &arena_functions;
        reply_arena = arena;
    }
    for (size_t i = 0; i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(c->ctx, &reply) != REDIS_OK || !reply) {
            char why[160];
            snprintf(why, sizeof(why), "%s",
                     c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
            conn_reset(c); /* with an arena's functions still in place: hiredis frees none */
            reply_arena = NULL;
            for (size_t j = 0; !arena && j < i; j++)
                freeReplyObject(replies[j]);
            return unavailable(s, err, why);
        }
        replies[i] = reply;
    }
    reader->fn = fn;
    reply_arena = NULL;
    for (size_t i = 0; i < n; i++) {
        if (replies[i]->type == REDIS_REPLY_ERROR) {
            char why[200];
            snprintf(why, sizeof(why), "Redis answered '%.150s'", replies[i]->str);
            for (size_t j = 0; !arena && j < n; j++)
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
    const char *small[64];
    size_t small_lens[64];
    const char **full = small;
    size_t *full_lens = small_lens;
    if (argc + 3 > 64) {
        full = malloc((size_t)(argc + 3) * sizeof(*full));
        full_lens = malloc((size_t)(argc + 3) * sizeof(*full_lens));
        if (!full || !full_lens) {
            free(full);
            free(full_lens);
            return -ENOMEM;
        }
    }
    int r = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c;
        r = conn_get(s, &c, err);
        if (r < 0)
            goto out;
        r = script_sha(s, c, id, err);
        if (r < 0)
            goto out;
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
            goto out;
        c->script_sha[id][0] = '\0'; /* Redis lost its script cache: load again */
    }
    r = unavailable(s, err, "the script cache keeps failing");
out:
    if (full != small) {
        free(full);
        free(full_lens);
    }
    return r;
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
    redisReply *replies[2] = {NULL, NULL};
    r = pipeline_read(store, c, 2, replies, NULL, err);
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
        r = pipeline_read(store, c, n, replies, NULL, err);
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
    r = pipeline_read(store, c, asked, hashes, NULL, err);
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

/* ---- trace metrics ---- */

/* Arguments of one command, built up in one growing text buffer. */
struct argbuf {
    char *text;
    size_t len, cap;
    size_t *offsets, *lens;
    size_t count, count_cap;
    size_t buckets; /* histogram buckets in the arguments: Lua's work is about one an argument */
    bool oom;
};

/* Room for need bytes in *text (*cap of them now): doubled from first (or *cap) until they fit;
 * false when out of memory (nothing changed). */
static bool text_room(char **text, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap)
        return true;
    size_t next = *cap ? *cap : first;
    while (next < need)
        next *= 2;
    char *grown = realloc(*text, next);
    if (!grown)
        return false;
    *text = grown;
    *cap = next;
    return true;
}

static void arg_add(struct argbuf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (!text_room(&b->text, &b->cap, b->len + len + 1, 65536)) {
        b->oom = true;
        return;
    }
    if (b->count == b->count_cap) {
        size_t cap = b->count_cap ? b->count_cap * 2 : 4096;
        size_t *offsets = realloc(b->offsets, cap * sizeof(*offsets));
        if (offsets)
            b->offsets = offsets;
        size_t *lens = offsets ? realloc(b->lens, cap * sizeof(*lens)) : NULL;
        if (!offsets || !lens) {
            b->oom = true;
            return;
        }
        b->lens = lens;
        b->count_cap = cap;
    }
    memcpy(b->text + b->len, s, len);
    b->text[b->len + len] = '\0';
    b->offsets[b->count] = b->len;
    b->lens[b->count] = len;
    b->count++;
    b->len += len + 1;
}

static void arg_str(struct argbuf *b, const char *s)
{
    arg_add(b, s, strlen(s));
}

static void arg_int(struct argbuf *b, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    arg_add(b, buf, (size_t)n);
}

static void arg_hex(struct argbuf *b, uint64_t hi, uint64_t lo)
{
    char buf[40];
    int n = hi ? snprintf(buf, sizeof(buf), "%016" PRIx64 "%016" PRIx64, hi, lo)
               : snprintf(buf, sizeof(buf), "%016" PRIx64, lo);
    arg_add(b, buf, (size_t)n);
}

/* A histogram as one argument, packed as Redis keeps it (HIST_PACKED): its buckets are distinct
 * and below HIST_BUCKETS, so it takes 8 KiB at most. */
static void arg_hist(struct argbuf *b, const struct agg_hist *h)
{
    unsigned char packed[HIST_BUCKETS * HIST_PACKED];
    size_t n = 0;
    for (uint32_t i = 0; i < h->len && n < sizeof(packed); i++, n += HIST_PACKED) {
        uint64_t count = h->entries[i].count;
        if (count > HIST_PACKED_COUNT_MAX)
            count = HIST_PACKED_COUNT_MAX;
        packed[n] = (unsigned char)(h->entries[i].bucket & 0xff);
        packed[n + 1] = (unsigned char)(h->entries[i].bucket >> 8);
        for (int k = 0; k < 6; k++)
            packed[n + 2 + k] = (unsigned char)(count >> (8 * k));
    }
    arg_add(b, (const char *)packed, n);
    b->buckets += h->len;
}

static void arg_free(struct argbuf *b)
{
    free(b->text);
    free(b->offsets);
    free(b->lens);
    memset(b, 0, sizeof(*b));
}

/* a step's arguments and histogram buckets, at most: no script holds Redis more than ~5 ms */
#define TRACE_ARGS_PER_CALL 8192
#define TRACE_HEADER_ARGS   7
#define TRACE_ROLL_CALLS    16 /* calls a flush makes at most to roll up what is due */

/* The arguments every step starts with; write_id 0: the step has no id. */
static void trace_header(struct argbuf *b, int64_t now_ms, int64_t join_wait_ms, uint64_t write_id,
                         int step)
{
    arg_int(b, now_ms);
    arg_int(b, 3 * join_wait_ms + 10000); /* halves waiting for a half outlive the wait */
    arg_int(b, join_wait_ms);
    arg_int(b, STORE_TRACE_FINE_KEEP_S);
    arg_int(b, STORE_TRACE_COARSE_KEEP_S);
    arg_int(b, STORE_TRACE_ROLL_AFTER_S);
    char id[40] = "";
    if (write_id)
        snprintf(id, sizeof(id), "%016" PRIx64 ":%d", write_id, step);
    arg_str(b, id);
}

/* Runs script id (no KEYS) with b's arguments. */
static int script_args(struct store *s, enum script_id id, const struct argbuf *b, redisReply **ret,
                       struct emp_error *err)
{
    if (b->oom)
        return -ENOMEM;
    const char **argv = malloc(b->count * sizeof(*argv));
    if (!argv)
        return -ENOMEM;
    for (size_t i = 0; i < b->count; i++)
        argv[i] = b->text + b->offsets[i];
    int r = script(s, id, ret, err, 0, (int)b->count, argv, b->lens);
    free(argv);
    return r;
}

/* Runs the trace script with b's arguments; *ret_rolled: the minutes it rolled up (may be NULL). */
static int trace_send(struct store *s, struct argbuf *b, long long *ret_rolled,
                      struct emp_error *err)
{
    redisReply *reply;
    int r = script_args(s, SCRIPT_TRACE_ADD, b, &reply, err);
    if (r < 0)
        return r;
    if (ret_rolled)
        *ret_rolled = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 4 &&
                              reply->element[3]->type == REDIS_REPLY_INTEGER
                          ? reply->element[3]->integer
                          : 0;
    freeReplyObject(reply);
    return 0;
}

static void trace_stat(struct argbuf *b, const char *field, uint64_t n)
{
    if (n == 0)
        return;
    arg_str(b, "T");
    arg_str(b, field);
    arg_int(b, (int64_t)n);
}

static int order_of(int64_t x, int64_t y)
{
    return (x > y) - (x < y);
}

static int series_order(const void *x, const void *y)
{
    const struct agg_series *a = *(const struct agg_series *const *)x;
    const struct agg_series *b = *(const struct agg_series *const *)y;
    int c = strcmp(a->app_id, b->app_id);
    return c ? c : order_of(a->bucket, b->bucket);
}

static int edge_order(const void *x, const void *y)
{
    const struct agg_edge *a = *(const struct agg_edge *const *)x;
    const struct agg_edge *b = *(const struct agg_edge *const *)y;
    int c = strcmp(a->caller_app, b->caller_app);
    if (!c)
        c = order_of(a->bucket, b->bucket);
    return c ? c : strcmp(a->callee, b->callee);
}

/* Pointers to the n items of size bytes at items, sorted by order (a total one); NULL when n is 0
 * or out of memory. */
static const void **sorted(const void *items, size_t n, size_t size,
                           int (*order)(const void *, const void *))
{
    const void **out = n ? malloc(n * sizeof(*out)) : NULL;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = (const char *)items + i * size;
    qsort(out, n, sizeof(*out), order);
    return out;
}

int store_trace_add(struct store *store, const struct agg_batch *batch,
                    const struct store_trace_stats *stats, uint64_t write_id, int64_t now_ms,
                    int64_t join_wait_ms, struct emp_error *err)
{
    struct argbuf b = {0};
    int r = 0;
    int step = 0;
    /* each app's series and calls together, bucket by bucket: the script asks Redis once a call
     * whether an app's minute is rolled up (and schedules it), for all six of its 10 s buckets
     * in that step, rather than once for each of them in as many steps */
    const struct agg_series **series_by_app =
        batch ? (const struct agg_series **)sorted(batch->series, batch->series_count,
                                                   sizeof(*batch->series), series_order)
              : NULL;
    const struct agg_edge **edges_by_app =
        batch ? (const struct agg_edge **)sorted(batch->edges, batch->edges_count,
                                                 sizeof(*batch->edges), edge_order)
              : NULL;
    if (batch &&
        ((batch->series_count && !series_by_app) || (batch->edges_count && !edges_by_app))) {
        /* not in another order instead: a batch sent again must be cut into the same steps,
         * which its write id names */
        free(series_by_app);
        free(edges_by_app);
        return emp_error_set(err, -ENOMEM, EMP_ERR_INTERNAL, NULL,
                             "no memory to order a batch of trace counts");
    }
    trace_header(&b, now_ms, join_wait_ms, write_id, step);
    /* sends what was built once it is large; what remains after the records goes last */
#define STEP()                                                                                     \
    do {                                                                                           \
        if (b.count + b.buckets >= TRACE_ARGS_PER_CALL) {                                          \
            r = trace_send(store, &b, NULL, err);                                                  \
            if (r < 0)                                                                             \
                goto out;                                                                          \
            b.count = 0;                                                                           \
            b.len = 0;                                                                             \
            b.buckets = 0;                                                                         \
            trace_header(&b, now_ms, join_wait_ms, write_id, ++step);                              \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; batch && i < batch->series_count; i++) {
        const struct agg_series *x = series_by_app[i];
        arg_str(&b, "S");
        arg_str(&b, x->app_id);
        arg_int(&b, x->bucket);
        arg_int(&b, (int64_t)x->requests);
        arg_int(&b, (int64_t)x->errors);
        arg_hist(&b, &x->latency);
        arg_hist(&b, &x->self);
        STEP();
    }
    for (size_t i = 0; batch && i < batch->edges_count; i++) {
        const struct agg_edge *e = edges_by_app[i];
        arg_str(&b, "E");
        arg_str(&b, e->caller_app);
        arg_str(&b, e->caller);
        arg_str(&b, e->callee);
        arg_str(&b, e->callee_app);
        arg_int(&b, e->bucket);
        arg_int(&b, (int64_t)e->calls);
        arg_int(&b, (int64_t)e->errors);
        arg_hist(&b, &e->latency);
        STEP();
    }
    for (size_t i = 0; batch && i < batch->halves_count; i++) {
        const struct agg_half *h = &batch->halves[i];
        arg_str(&b, "H");
        arg_str(&b, h->server ? "1" : "0");
        arg_hex(&b, h->trace_hi, h->trace_lo);
        arg_hex(&b, 0, h->id);
        if (h->has_parent)
            arg_hex(&b, 0, h->parent_id);
        else
            arg_str(&b, "");
        arg_str(&b, h->shared ? "1" : "0");
        arg_str(&b, h->service);
        arg_str(&b, h->app_id);
        arg_str(&b, h->remote);
        arg_str(&b, h->remote_app);
        arg_int(&b, h->bucket);
        if (h->duration_us > 0)
            arg_int(&b, hist_bucket((uint64_t)h->duration_us));
        else
            arg_str(&b, "");
        arg_str(&b, h->error ? "1" : "0");
        STEP();
    }
#undef STEP
    if (stats) {
        trace_stat(&b, "messages", stats->messages);
        trace_stat(&b, "bad_messages", stats->bad_messages);
        trace_stat(&b, "spans", stats->spans);
        trace_stat(&b, "bad_spans", stats->bad_spans);
        trace_stat(&b, "unknown_service", stats->unknown_service);
        trace_stat(&b, "too_late", stats->too_late);
        trace_stat(&b, "too_early", stats->too_early);
        trace_stat(&b, "no_timestamp", stats->no_timestamp);
        trace_stat(&b, "pending_dropped", stats->pending_dropped);
        trace_stat(&b, "duplicates", stats->duplicates);
    }
    /* also with no records: calls whose wait is over and minutes to roll up are due */
    long long rolled = 0;
    r = trace_send(store, &b, &rolled, err);
    for (int i = 0; r == 0 && rolled == TRACE_ROLLS_PER_CALL && i < TRACE_ROLL_CALLS; i++) {
        b.count = 0;
        b.len = 0;
        trace_header(&b, now_ms, join_wait_ms, 0, 0); /* roll-ups only: no id needed */
        r = trace_send(store, &b, &rolled, err);
    }
out:
    free(series_by_app);
    free(edges_by_app);
    arg_free(&b);
    return r;
}

int store_trace_adopt(struct store *store, int64_t now_ms, long long *ret_marked,
                      struct emp_error *err)
{
    /* a minute whose 1 min buckets exist while all its 10 s buckets are kept was written by an
     * emp-server that wrote every count to both (this one writes 1 min buckets of such a minute
     * only once it is rolled up, and then marks it): it is whole, and marked as rolled up */
    int64_t newest_gone = now_ms / 1000 - STORE_TRACE_FINE_KEEP_S - STORE_TRACE_FINE_S;
    char cursor[32] = "0";
    long long marked = 0;
    int r = 0;
    do {
        redisReply *reply;
        r = commandf(store, &reply, err, "SCAN %s MATCH emp:t?:*:60:* COUNT 1000", cursor);
        if (r < 0)
            break;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(reply);
            return emp_error_set(err, -EPROTO, EMP_ERR_STORE_UNAVAILABLE, NULL,
                                 "Redis answered SCAN with something else than a page of keys");
        }
        snprintf(cursor, sizeof(cursor), "%s", reply->element[0]->str);
        struct argbuf b = {0};
        arg_int(&b, STORE_TRACE_COARSE_KEEP_S);
        const redisReply *keys = reply->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str; /* emp:t{m|o|i}:{app}:60:{minute} */
            const char *res = strstr(k, ":60:");
            if (keys->element[i]->len < 7 || !res || !strchr("moi", k[5]) || k[6] != ':')
                continue;
            long long minute = strtoll(res + 4, NULL, 10);
            if (minute <= newest_gone || minute % STORE_TRACE_COARSE_S)
                continue; /* its first 10 s bucket is gone: a count may be in the 1 min one only */
            arg_add(&b, k + 7, (size_t)(res - (k + 7)));
            arg_int(&b, minute);
        }
        freeReplyObject(reply);
        if (b.count > 1) {
            redisReply *done;
            r = script_args(store, SCRIPT_TRACE_ADOPT, &b, &done, err);
            if (r == 0) {
                if (done->type == REDIS_REPLY_INTEGER)
                    marked += done->integer;
                freeReplyObject(done);
            }
        }
        arg_free(&b);
    } while (r == 0 && strcmp(cursor, "0") != 0);
    if (ret_marked)
        *ret_marked = marked;
    return r;
}

int store_trace_stats_get(struct store *store, struct store_trace_stats *ret_stats,
                          struct emp_error *err)
{
    redisReply *reply;
    int r = commandf(store, &reply, err, "HGETALL emp:tstat");
    if (r < 0)
        return r;
    struct store_trace_stats st = {0};
    st.messages = (uint64_t)reply_field_int(reply, "messages");
    st.bad_messages = (uint64_t)reply_field_int(reply, "bad_messages");
    st.spans = (uint64_t)reply_field_int(reply, "spans");
    st.bad_spans = (uint64_t)reply_field_int(reply, "bad_spans");
    st.unknown_service = (uint64_t)reply_field_int(reply, "unknown_service");
    st.too_late = (uint64_t)reply_field_int(reply, "too_late");
    st.too_early = (uint64_t)reply_field_int(reply, "too_early");
    st.no_timestamp = (uint64_t)reply_field_int(reply, "no_timestamp");
    st.pending_dropped = (uint64_t)reply_field_int(reply, "pending_dropped");
    st.duplicates = (uint64_t)reply_field_int(reply, "duplicates");
    freeReplyObject(reply);
    *ret_stats = st;
    return 0;
}

/* A histogram being summed: dense, one counter per bucket. */
struct dense_hist {
    uint64_t counts[HIST_BUCKETS];
    bool any;
};

static void dense_add(struct dense_hist *d, const char *bucket_text, const char *count_text)
{
    char *end;
    unsigned long bucket = strtoul(bucket_text, &end, 10);
    if (*end || bucket >= HIST_BUCKETS)
        return;
    d->counts[bucket] += strtoull(count_text, NULL, 10);
    d->any = true;
}

/* Adds a packed histogram (HIST_PACKED) to d. */
static void dense_add_packed(struct dense_hist *d, const char *packed, size_t len)
{
    const unsigned char *p = (const unsigned char *)packed;
    for (size_t i = 0; i + HIST_PACKED <= len; i += HIST_PACKED) {
        unsigned bucket = p[i] | (unsigned)p[i + 1] << 8;
        uint64_t count = 0;
        for (int k = 0; k < 6; k++)
            count |= (uint64_t)p[i + 2 + k] << (8 * k);
        if (bucket >= HIST_BUCKETS)
            continue;
        d->counts[bucket] += count;
        d->any = true;
    }
}

/* The non-empty buckets of d, malloc'd; *ret NULL when there are none. */
static int dense_to_entries(const struct dense_hist *d, struct hist_entry **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    if (!d->any)
        return 0;
    size_t n = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        n += d->counts[i] ? 1 : 0;
    if (n == 0)
        return 0;
    struct hist_entry *e = malloc(n * sizeof(*e));
    if (!e)
        return -ENOMEM;
    size_t k = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (d->counts[i])
            e[k++] = (struct hist_entry){.bucket = (uint16_t)i, .count = d->counts[i]};
    *ret = e;
    *ret_len = n;
    return 0;
}

/* A peer being summed. */
struct peer_sum {
    char *key;     /* what the fields name: the callee's service, or the caller's app id */
    char *service; /* incoming: the caller's service, from n: */
    char *app_id;  /* outgoing: the callee's app id, from a: */
    uint64_t calls, errors;
    struct dense_hist *latency;
};

struct peer_table {
    struct peer_sum *items;
    size_t len, cap;
};

#define TRACE_PEERS_MAX 1000 /* peers of one app shown, at most */

static struct peer_sum *peer_of(struct peer_table *t, const char *name, size_t name_len)
{
    for (size_t i = 0; i < t->len; i++)
        if (strlen(t->items[i].key) == name_len && memcmp(t->items[i].key, name, name_len) == 0)
            return &t->items[i];
    if (t->len >= TRACE_PEERS_MAX)
        return NULL;
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct peer_sum *grown = realloc(t->items, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        t->items = grown;
        t->cap = cap;
    }
    struct peer_sum *p = &t->items[t->len];
    memset(p, 0, sizeof(*p));
    p->key = strndup(name, name_len);
    p->latency = calloc(1, sizeof(*p->latency));
    if (!p->key || !p->latency) {
        free(p->key);
        free(p->latency);
        return NULL;
    }
    t->len++;
    return p;
}

/* Adds one edge hash (fields c:peer, e:peer, L:peer (its histogram), and a:peer or n:peer naming
 * it; l:peer:bucket, a histogram's bucket a field, is the older layout). */
static void peers_add(struct peer_table *t, const redisReply *hash, bool incoming)
{
    if (hash->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const char *f = hash->element[i]->str, *v = hash->element[i + 1]->str;
        size_t flen = hash->element[i]->len;
        if (flen < 3 || f[1] != ':')
            continue;
        const char *name = f + 2;
        size_t name_len = flen - 2;
        const char *bucket = NULL;
        if (f[0] == 'l') {
            const char *colon = memrchr(name, ':', name_len);
            if (!colon)
                continue;
            bucket = colon + 1;
            name_len = (size_t)(colon - name);
        }
        struct peer_sum *p = peer_of(t, name, name_len);
        if (!p)
            continue;
        switch (f[0]) {
        case 'c':
            p->calls += strtoull(v, NULL, 10);
            break;
        case 'e':
            p->errors += strtoull(v, NULL, 10);
            break;
        case 'l':
            dense_add(p->latency, bucket, v);
            break;
        case 'L':
            dense_add_packed(p->latency, v, hash->element[i + 1]->len);
            break;
        case 'a':
            if (!incoming && !p->app_id)
                p->app_id = strdup(v);
            break;
        case 'n':
            if (incoming && !p->service)
                p->service = strdup(v);
            break;
        }
    }
}

static void peer_table_free(struct peer_table *t)
{
    for (size_t i = 0; i < t->len; i++) {
        free(t->items[i].key);
        free(t->items[i].service);
        free(t->items[i].app_id);
        free(t->items[i].latency);
    }
    free(t->items);
}

static int peers_out(struct peer_table *t, bool incoming, struct store_trace_peer **ret,
                     size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    if (!t->len)
        return 0;
    struct store_trace_peer *out = calloc(t->len, sizeof(*out));
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < t->len; i++) {
        struct peer_sum *p = &t->items[i];
        /* outgoing: the key is the callee's service; incoming: the caller's app id (its service
         * is the key when a bucket lost n:) */
        if (incoming) {
            out[i].app_id = p->key;
            out[i].service = p->service ? p->service : strdup(p->key);
            p->service = NULL;
        } else {
            out[i].service = p->key;
            out[i].app_id = p->app_id;
            p->app_id = NULL;
        }
        p->key = NULL;
        if (!out[i].service) {
            *ret = out;
            *ret_len = i + 1;
            return -ENOMEM;
        }
        out[i].calls = p->calls;
        out[i].errors = p->errors;
        if (dense_to_entries(p->latency, &out[i].latency, &out[i].latency_len) < 0) {
            *ret = out;
            *ret_len = i + 1;
            return -ENOMEM;
        }
    }
    *ret = out;
    *ret_len = t->len;
    return 0;
}

/* Commands written out in Redis's protocol (RESP), to be sent at once: a window's few hundred
 * HGETALLs formatted by hiredis (a printf each, and its buffer grown a command at a time) were a
 * tenth of what emp-server spent on a metrics query. */
struct resp {
    char *text;
    size_t len, cap;
    bool oom;
};

static void resp_add(struct resp *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (!text_room(&b->text, &b->cap, b->len + n, 16384)) {
        b->oom = true;
        return;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
}

/* v in decimal at out (24 bytes of room); its length. */
static size_t decimal(char *out, int64_t v)
{
    char digits[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = digits[--n];
    return len;
}

/* Asks (in b) for the m, o and i hashes of app_id's bucket b of res seconds (three replies). */
static void append_bucket(struct resp *b, const char *app_id, int res, int64_t bucket)
{
    char key[KEY_MAX + 64], number[24]; /* app_id: KEY_MAX at most (the caller checked) */
    size_t app_len = strlen(app_id);
    for (const char *kind = "moi"; *kind; kind++) {
        memcpy(key, "emp:t", 5);
        size_t n = 5;
        key[n++] = *kind;
        key[n++] = ':';
        memcpy(key + n, app_id, app_len);
        n += app_len;
        key[n++] = ':';
        n += decimal(key + n, res);
        key[n++] = ':';
        n += decimal(key + n, bucket);
        static const char hgetall[] = "*2\r\n$7\r\nHGETALL\r\n$"; /* and the key's length */
        resp_add(b, hgetall, sizeof(hgetall) - 1);
        size_t digits = decimal(number, (int64_t)n);
        resp_add(b, number, digits);
        resp_add(b, "\r\n", 2);
        resp_add(b, key, n);
        resp_add(b, "\r\n", 2);
    }
}

/* Sends what b holds (read the replies with read_buckets) and empties it; -ENOMEM if b could not
 * hold it all (nothing is sent then). */
static int send_buckets(struct conn *c, struct resp *b)
{
    int r = b->oom ? -ENOMEM : 0;
    if (r == 0 && redisAppendFormattedCommand(c->ctx, b->text, b->len) != REDIS_OK)
        r = -ENOMEM;
    b->len = 0;
    b->oom = false;
    return r;
}

/* Whether a coarse m hash says its minute is rolled up (field R). */
static bool rolled_up(const redisReply *m)
{
    for (size_t j = 0; m->type == REDIS_REPLY_ARRAY && j + 1 < m->elements; j += 2)
        if (m->element[j]->len == 1 && m->element[j]->str[0] == 'R')
            return true;
    return false;
}

/* Reads n buckets' m, o, i hashes (3 * n replies) into *ret_replies, made in arena. */
static int read_buckets(struct store *store, struct conn *c, size_t n, redisReply ***ret_replies,
                        struct arena *arena, struct emp_error *err)
{
    redisReply **replies = arena_alloc(arena, 3 * n * sizeof(*replies));
    if (!replies) {
        conn_reset(c); /* the replies must still be read, or the connection is out of step */
        return -ENOMEM;
    }
    int r = pipeline_read(store, c, 3 * n, replies, arena, err);
    if (r == 0)
        *ret_replies = replies;
    return r;
}

/* Adds the m, o, i replies of n buckets to a window's sums. */
static void window_add(struct store_trace_window *w, redisReply **replies, size_t n,
                       struct dense_hist *latency, struct dense_hist *self,
                       struct peer_table *out_peers, struct peer_table *in_peers)
{
    for (size_t i = 0; i < n; i++) {
        const redisReply *m = replies[3 * i];
        for (size_t j = 0; m->type == REDIS_REPLY_ARRAY && j + 1 < m->elements; j += 2) {
            const char *f = m->element[j]->str, *v = m->element[j + 1]->str;
            if (strcmp(f, "r") == 0)
                w->requests += strtoull(v, NULL, 10);
            else if (strcmp(f, "e") == 0)
                w->errors += strtoull(v, NULL, 10);
            else if (strcmp(f, "L") == 0)
                dense_add_packed(latency, v, m->element[j + 1]->len);
            else if (strcmp(f, "S") == 0)
                dense_add_packed(self, v, m->element[j + 1]->len);
            else if (f[0] == 'l') /* a bucket a field: the older layout */
                dense_add(latency, f + 1, v);
            else if (f[0] == 's')
                dense_add(self, f + 1, v);
        }
        peers_add(out_peers, replies[3 * i + 1], false);
        peers_add(in_peers, replies[3 * i + 2], true);
    }
}

#define FINE_PER_COARSE (STORE_TRACE_COARSE_S / STORE_TRACE_FINE_S)

int store_trace_window_get(struct store *store, const char *app_id, int64_t end_s, int64_t window_s,
                           int resolution_s, struct store_trace_window *ret, struct emp_error *err)
{
    if ((resolution_s != STORE_TRACE_FINE_S && resolution_s != STORE_TRACE_COARSE_S) ||
        window_s <= 0 || window_s % resolution_s || end_s % resolution_s ||
        window_s / resolution_s > 1000 || strlen(app_id) > KEY_MAX)
        return -EINVAL;
    size_t buckets = (size_t)(window_s / resolution_s);
    struct conn *c;
    int r = conn_get(store, &c, err);
    if (r < 0)
        return r;
    struct resp ask = {0};
    struct arena arena = {0};
    for (size_t i = 0; i < buckets; i++)
        append_bucket(&ask, app_id, resolution_s, end_s - (int64_t)(i + 1) * resolution_s);
    redisReply **replies = NULL, **fine = NULL;
    size_t fine_buckets = 0;
    struct dense_hist *latency = calloc(1, sizeof(*latency)), *self = calloc(1, sizeof(*self));
    if (!latency || !self || send_buckets(c, &ask) < 0) {
        r = -ENOMEM; /* nothing was sent */
        goto out;
    }
    r = read_buckets(store, c, buckets, &replies, &arena, err);
    if (r < 0)
        goto out;
    if (resolution_s == STORE_TRACE_COARSE_S) {
        /* a minute not rolled up yet is in its fine buckets (its coarse ones hold only what came
         * after its fine ones expired: both count), unless they have all expired */
        int64_t now_s = time_now_ms() / 1000;
        for (size_t i = 0; i < buckets; i++) {
            int64_t minute = end_s - (int64_t)(i + 1) * resolution_s;
            if (rolled_up(replies[3 * i]) ||
                minute + STORE_TRACE_COARSE_S + STORE_TRACE_FINE_KEEP_S <= now_s)
                continue;
            for (int k = 0; k < FINE_PER_COARSE; k++, fine_buckets++)
                append_bucket(&ask, app_id, STORE_TRACE_FINE_S, minute + k * STORE_TRACE_FINE_S);
        }
        if (fine_buckets && send_buckets(c, &ask) < 0) {
            fine_buckets = 0;
            r = -ENOMEM;
            goto out;
        }
        if (fine_buckets) {
            r = read_buckets(store, c, fine_buckets, &fine, &arena, err);
            if (r < 0)
                goto out;
        }
    }
    struct store_trace_window w = {.resolution_s = resolution_s};
    struct peer_table out_peers = {0}, in_peers = {0};
    window_add(&w, replies, buckets, latency, self, &out_peers, &in_peers);
    window_add(&w, fine, fine_buckets, latency, self, &out_peers, &in_peers);
    r = dense_to_entries(latency, &w.latency, &w.latency_len);
    if (r == 0)
        r = dense_to_entries(self, &w.self, &w.self_len);
    if (r == 0)
        r = peers_out(&out_peers, false, &w.outgoing, &w.outgoing_len);
    if (r == 0)
        r = peers_out(&in_peers, true, &w.incoming, &w.incoming_len);
    peer_table_free(&out_peers);
    peer_table_free(&in_peers);
    if (r < 0)
        store_trace_window_free(&w);
    else
        *ret = w;
out:
    free(ask.text);
    arena_free(&arena);
    free(latency);
    free(self);
    return r;
}

static void peers_free(struct store_trace_peer *peers, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        free(peers[i].service);
        free(peers[i].app_id);
        free(peers[i].latency);
    }
    free(peers);
}

void store_trace_window_free(struct store_trace_window *w)
{
    if (!w)
        return;
    free(w->latency);
    free(w->self);
    peers_free(w->outgoing, w->outgoing_len);
    peers_free(w->incoming, w->incoming_len);
    memset(w, 0, sizeof(*w));
}
