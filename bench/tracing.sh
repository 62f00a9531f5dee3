#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/tracing.sh: how fast emp-server takes Zipkin spans in, from Kafka (as a ratio to kcat
# reading the same topic in the same run) and over POST /api/v2/spans, what the metrics query of
# one app over an hour costs, and what a million spans of 1,000 services cost in memory:
# emp-server's peak RSS and Redis bytes per service for an hour of windows.
# A measurement, not a test: it exits 0 when a target is missed (non-zero only if it cannot run).
# Everything it starts (redis-server, emp-kafka-mock, emp-server, kcat, wrk) listens on loopback
# or a unix socket in a temporary directory, and is stopped on exit. See bench/README.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KAFKA_SPANS=${EMP_BENCH_KAFKA_SPANS:-1000000}  # spans of the Kafka throughput run
MEMORY_SPANS=${EMP_BENCH_MEMORY_SPANS:-1000000} # spans of the memory run, over an hour
KAFKA_ROUNDS=${EMP_BENCH_KAFKA_ROUNDS:-5}       # emp-server reads of the topic
KCAT_ROUNDS=${EMP_BENCH_KCAT_ROUNDS:-5}         # kcat reads of the topic, in turn with them
HTTP_DURATION=${EMP_BENCH_DURATION:-10}         # seconds of each POST /api/v2/spans round
HTTP_ROUNDS=${EMP_BENCH_ROUNDS:-3}
WARMUP=${EMP_BENCH_WARMUP:-2}
QUERY_DURATION=${EMP_BENCH_QUERY_DURATION:-5} # seconds of the metrics query round
INGEST_TIMEOUT=${EMP_BENCH_INGEST_TIMEOUT:-300} # seconds an ingestion may take before it is cut off
PYTHON=/usr/bin/python3
USERS=100 # the 1,000 services: bench-0/app-0 ... bench-99/app-9
APPS_PER_USER=10
SERVICES=$((USERS * APPS_PER_USER))
PER_MESSAGE=100  # spans per Kafka message and per POST
HTTP_BODIES=100  # distinct POST bodies that wrk cycles through
PARTITIONS=256   # the mock keeps about 5 MB per partition: 1,000,000 spans need many
THREADS=2        # wrk threads
CONNECTIONS=64   # wrk connections
PASSWORD=bench-password-1
HOUR_US=3600000000

# the issue's targets
TARGET_KAFKA_RATIO=0.5  # EMP's spans/s at least half of kcat's
TARGET_HTTP_SPANS=200000
TARGET_QUERY_MS=5
TARGET_RSS_MIB=128
TARGET_REDIS_KIB=256 # per active service, an hour of windows

require_tools kcat wrk redis-server redis-cli curl ss cmake awk ps
[[ -x $PYTHON ]] || die "$PYTHON is missing: run scripts/bootstrap"
bench_init
mkfifo "$WORK/sleep.fifo"
exec {SLEEP_FD}<>"$WORK/sleep.fifo"
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; } # SECONDS: sleeps without a fork

# ---- helpers ----

used_memory() { rcli "$1" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }
vm_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; } # PID FIELD
# PID: the CPU ticks (user + system) of PID so far, with a builtin read (no fork)
proc_ticks() {
  local stat fields
  read -r stat <"/proc/$1/stat" || return 1
  read -ra fields <<<"${stat##*) }"
  printf '%s\n' $((fields[11] + fields[12]))
}

# DIR: the 1,000 services' apps in the Redis of DIR: alice through the API (for her password
# hash), then users bench-0 ... bench-99 with 10 apps each through emp-bench-populate; logs in
# as bench-0 (DIR/token) and writes the id of bench-0/app-0 to DIR/app-id. The apps run nowhere
# (the emp-servers here reconcile nothing).
make_apps() {
  local dir=$1 hash answer
  api "$dir" POST /v1/users "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" >/dev/null
  hash=$(rcli "$dir" HGET emp:user:alice password_hash)
  [[ $hash == "\$argon2id\$"* ]] || die "no password hash of alice in Redis"
  "$POPULATE" --redis-url "unix://$dir/redis.sock" --users "$USERS" --apps-per-user 0 --password-hash "$hash" >/dev/null
  "$POPULATE" --redis-url "unix://$dir/redis.sock" --users "$USERS" --apps-per-user "$APPS_PER_USER" >/dev/null
  answer=$(api "$dir" POST /v1/sessions "{\"username\":\"bench-0\",\"password\":\"$PASSWORD\"}")
  json_str token "$answer" >"$dir/token"
  [[ -s $dir/token ]] || die "bench-0 cannot log in: $answer"
  rcli "$dir" HGET emp:user:bench-0:appnames app-0 >"$dir/app-id"
  [[ -s $dir/app-id ]] || die "no app bench-0/app-0 in Redis"
}

# FILE START_US SPAN_US SPANS: span messages of the 1,000 services into FILE, one a line; sets
# GEN_MESSAGES and GEN_SPANS
generate() {
  local file=$1 out
  out=$("$PYTHON" "$ROOT/bench/tracing_spans.py" --users "$USERS" --apps-per-user "$APPS_PER_USER" \
    --spans "$4" --start-us "$2" --span-us "$3" --per-message "$PER_MESSAGE" 2>&1 >"$file") ||
    die "tracing_spans.py failed: $out"
  GEN_MESSAGES=$(json_int messages "$out")
  GEN_SPANS=$(json_int spans "$out")
  [[ -n $GEN_MESSAGES && -n $GEN_SPANS ]] || die "tracing_spans.py said: $out"
}

produce() { # TOPIC FILE: the messages of FILE (one a line) to TOPIC, each to a random partition
  kcat -P -b "$BROKERS" -t "$1" -X message.max.bytes=16777216 -X sticky.partitioning.linger.ms=0 \
    -l "$2" 2>"$WORK/kcat-produce.log" || die "kcat -P failed: $(cat "$WORK/kcat-produce.log")"
}

# PORT TOKEN: sets T_SPANS (this_server.spans), T_STORED (all_servers.spans), T_CONSUMED from
# GET /v1/tracing; empty when it did not answer
tracing_status() {
  T_SPANS='' T_STORED='' T_CONSUMED='' T_LAST_MS=''
  http_get "$1" /v1/tracing "$2"
  [[ $HTTP_STATUS == 200 ]] || return 1
  local this=${HTTP_BODY#*\"this_server\":}
  T_STORED=$(json_int spans "$HTTP_BODY")
  T_SPANS=$(json_int spans "$this")
  T_LAST_MS=$(json_int last_span_at_ms "$this")
  T_CONSUMED=$(json_int consumed_messages "$HTTP_BODY")
}

# PID PORT TOKEN TOTAL NAME: polls GET /v1/tracing every 50 ms until emp-server has counted TOTAL
# spans (or INGEST_TIMEOUT passes). From the first poll that saw spans counted (its start, before
# emp-server counted them: so the group join before is not part of it) to the last span counted
# (last_span_at_ms of the poll that saw them all, which came up to 50 ms later): sets ING_SPANS
# (counted between), ING_S (seconds), ING_TICKS (emp-server's CPU ticks between the polls),
# ING_RATE, ING_PER_CORE, ING_DONE (1: all counted), ING_T0 and ING_S0 (the first poll's time,
# µs, and count). And ING_MID_RATE: the rate from the moment a tenth of TOTAL was counted to the
# moment nine tenths were (each found between the two polls around it, a poll's count taken at
# the middle of its request), which leaves out the start (the consumer's first fetches, a fresh
# process's first page faults) and the end (the last partitions) as kcat_run's does for kcat.
# Writes the polls (sent, answered, spans, messages, CPU ticks, last_span_at_ms) to
# $WORK/NAME-polls.txt.
measure_ingest() {
  local pid=$1 port=$2 token=$3 total=$4 name=$5 t0='' s0='' c0='' t c deadline asked
  now_us
  deadline=$((NOW_US + INGEST_TIMEOUT * 1000000))
  ING_DONE=0
  : >"$WORK/$name-polls.txt"
  while :; do
    now_us
    asked=$NOW_US
    tracing_status "$port" "$token" || die "GET /v1/tracing failed ($HTTP_STATUS): $HTTP_BODY"
    now_us
    t=$NOW_US
    c=$(proc_ticks "$pid") || die "emp-server died while counting spans (see $WORK)"
    printf '%s %s %s %s %s %s\n' "$asked" "$t" "$T_SPANS" "$T_CONSUMED" "$c" "$T_LAST_MS" >>"$WORK/$name-polls.txt"
    if [[ -z $t0 ]] && ((T_SPANS > 0)); then t0=$asked s0=$T_SPANS c0=$c; fi
    if ((T_SPANS >= total)); then
      ING_DONE=1
      ((T_LAST_MS * 1000 > t0)) && t=$((T_LAST_MS * 1000))
      break
    fi
    ((t < deadline)) || break
    nap 0.05
  done
  [[ -n $t0 ]] || die "emp-server counted no span in ${INGEST_TIMEOUT}s (see $WORK)"
  ING_SPANS=$((T_SPANS - s0))
  ING_T0=$t0 ING_S0=$s0
  ING_S=$(calc "($t - $t0) / 1000000" 3)
  ING_TICKS=$((c - c0))
  ING_RATE=$(calc "$ING_SPANS / max($ING_S, 0.001)" 0)
  ING_PER_CORE=$(calc "$ING_SPANS / max($ING_TICKS / $CLK_TCK, 0.01)" 0)
  ING_MID_RATE=$(awk -v total="$total" '
    function at(goal) { # the time (µs) the count reached goal, between the polls around it
      for (i = 2; i <= n; i++)
        if (c[i] >= goal && c[i - 1] < goal)
          return t[i - 1] + (t[i] - t[i - 1]) * (goal - c[i - 1]) / (c[i] - c[i - 1])
      return -1
    }
    { n++; t[n] = ($1 + $2) / 2; c[n] = $3 }
    END {
      lo = at(total / 10); hi = at(total * 9 / 10)
      if (lo < 0 || hi <= lo) { print "-"; exit }
      printf "%.0f\n", (total * 8 / 10) / ((hi - lo) / 1000000)
    }' "$WORK/$name-polls.txt")
}

# PORT TOKEN TOTAL: waits (up to 60 s) until the store holds TOTAL spans (all_servers.spans)
wait_stored() {
  local i
  for ((i = 0; i < 1200; i++)); do
    tracing_status "$1" "$2" && ((T_STORED >= $3)) && return 0
    nap 0.05
  done
  return 1
}

# DIR ARGS...: an emp-server on the Redis of DIR that serves the API and counts spans, and runs
# no app (--reconcile-workers 0); DIR/pid, DIR/url, DIR/port
start_emp() {
  local dir=$1 url
  shift
  start_emp_server "$dir" --log-level warn --reconcile-workers 0 --trace-lateness 2h "$@"
  url=$(cat "$dir/url")
  printf '%s\n' "${url##*:}" >"$dir/port"
}

summary_columns 56 12

# ---- build and servers ----

build_targets emp-server emp-bench-populate emp-kafka-mock
POPULATE=$BUILD/bench/emp-bench-populate
MOCK=$BUILD/tests/fakes/emp-kafka-mock
require_binaries "$SERVER_BIN" "$POPULATE" "$MOCK"

RUN_MARK=$(cpu_mark)
step "starting emp-kafka-mock and redis-server in $WORK; 1,000 apps of 100 users in each Redis"
# the mock serves until its stdin closes: a fifo whose writing end only this script holds, so it
# ends with the script however the script ends
mkfifo "$WORK/kafka.fifo"
"$MOCK" --topic "zipkin-live:$PARTITIONS" --topic "zipkin-hour:$PARTITIONS" \
  <"$WORK/kafka.fifo" >"$WORK/kafka.out" 2>"$WORK/kafka.err" &
PIDS+=($!)
# shellcheck disable=SC2034 # held open, never written
exec {KAFKA_FD}>"$WORK/kafka.fifo"
for ((i = 0; i < 100; i++)); do
  [[ -s $WORK/kafka.out ]] && break
  sleep 0.05
done
BROKERS=$(head -n 1 "$WORK/kafka.out")
[[ $BROKERS == *:* ]] || die "emp-kafka-mock did not start: $(cat "$WORK/kafka.err")"
A=$WORK/a # Kafka throughput, then POST /api/v2/spans
B=$WORK/b # a million spans over an hour: memory, and the metrics query
for dir in "$A" "$B"; do
  start_redis "$dir"
  printf '%s\n' "${PIDS[-1]}" >"$dir/redis.pid"
  start_emp "$dir" # only to make the apps through the API; stopped before the measured one starts
  make_apps "$dir"
  stop_pid "$(cat "$dir/pid")"
done
say "   emp-kafka-mock $BROKERS (librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?')), topics of $PARTITIONS partitions"
say "   redis-server $(redis-server --version | awk '{ print $3 }' | cut -d= -f2), unix socket, no persistence; $(rcli "$A" ZCARD emp:apps) apps in each"

# ---- 1. Kafka ingest, next to kcat ----

step "Kafka: $KAFKA_SPANS spans of $SERVICES services, timestamps of the last minute, $PER_MESSAGE a message"
now_us
generate "$WORK/live.jsonl" $((NOW_US - 60000000)) 60000000 "$KAFKA_SPANS"
LIVE_MESSAGES=$GEN_MESSAGES LIVE_SPANS=$GEN_SPANS
LIVE_MB=$(calc "$(stat -c %s "$WORK/live.jsonl") / 1048576" 0)
produce zipkin-live "$WORK/live.jsonl"
say "   $LIVE_SPANS spans in $LIVE_MESSAGES messages, $LIVE_MB MiB, in topic zipkin-live"

# DIR: removes the trace metrics of DIR's Redis (not its users, apps or sessions), so that each
# round of emp-server starts from the same store
clear_traces() {
  rcli "$1" EVAL "for _, p in ipairs({'emp:tm:*', 'emp:to:*', 'emp:ti:*', 'emp:tj:*', 'emp:tw:*'}) do
      for _, k in ipairs(redis.call('KEYS', p)) do redis.call('DEL', k) end
    end
    redis.call('DEL', 'emp:troll', 'emp:tstat')" 0 >/dev/null
}

KAFKA_PHASE=$(cpu_mark)
# TOPIC NAME: one read by kcat, printing each message's offset unbuffered (a line a message: kcat
# takes and walks every message, as emp-server's consumer does, and hands on next to nothing) to
# a reader that notes when the first line came, when the tenth of the topic's messages and nine
# tenths had, and when the last did; sets KCAT_S (first message to last: kcat's start and its wait
# for the end of every partition are not part of it, as emp-server's group join is not part of
# its rate), KCAT_MID_RATE (spans/s from a tenth to nine tenths, as measure_ingest's
# ING_MID_RATE) and KCAT_CPU (s, from `times`)
kcat_run() {
  local fifo=$WORK/kcat-$2.fifo pid times
  mkfifo "$fifo"
  (
    kcat -C -b "$BROKERS" -t "$1" -o beginning -e -q -u -f '%o\n' \
      -X fetch.message.max.bytes=16777216 >"$fifo" 2>"$WORK/kcat-$2.err" || exit 1
    times >"$WORK/kcat-$2.times"
  ) &
  pid=$!
  times=$("$PYTHON" -c '
import os, sys, time
messages = int(sys.argv[1])
low, high = -(-messages // 10), -(-messages * 9 // 10)
first = last = at_low = at_high = None
lines = 0
while True:
    data = os.read(0, 1 << 20)
    if not data:
        break
    last = time.monotonic_ns() // 1000
    first = first or last
    lines += data.count(b"\n")
    if at_low is None and lines >= low:
        at_low = last
    if at_high is None and lines >= high:
        at_high = last
print(first or 0, last or 0, at_low or 0, at_high or 0, high - low)' "$LIVE_MESSAGES" <"$fifo")
  wait "$pid" || die "kcat -C failed: $(cat "$WORK/kcat-$2.err")"
  local t
  read -r -a t <<<"$times"
  KCAT_S=$(calc "(${t[1]} - ${t[0]}) / 1000000" 3)
  KCAT_MID_RATE=$(calc "${t[4]} * $PER_MESSAGE / max((${t[3]} - ${t[2]}) / 1000000, 0.000001)" 0)
  KCAT_CPU=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] }
    printf "%.3f\n", n }' "$WORK/kcat-$2.times")
}
# KAFKA_ROUNDS reads of the topic by emp-server, each by a fresh emp-server in a group of its own
# (so from the first offset) on a store without trace metrics, and KCAT_ROUNDS by kcat, taking
# turns: a read's rate moves by a tenth with what else the 2 cores run then (a flush of
# emp-server's to Redis, the machine's other guests), and turns keep a slower or faster stretch of
# the machine from falling on one side only. Each side's figure is its median; the ratio is of the
# rates from a tenth of the topic to nine tenths (the start of a read, a fresh emp-server's first
# fetches and page faults, moved a round by up to a tenth as the first poll fell on it or after
# it), and the rates from the first span to the last are given too.
step "emp-server and kcat -C -o beginning -e -q reading zipkin-live in turns, $KAFKA_ROUNDS and $KCAT_ROUNDS rounds"
kafka_rates=() kafka_mid=() kafka_cores=() kafka_stored=() kafka_hwm=() kcat_s=() kcat_mid=() kcat_cpu=()
for ((r = 1; r <= KAFKA_ROUNDS || r <= KCAT_ROUNDS; r++)); do
  if ((r <= KAFKA_ROUNDS)); then
    clear_traces "$A"
    start_emp "$A" --kafka-brokers "$BROKERS" --kafka-topic zipkin-live --kafka-group "emp-bench-$r" \
      --kafka-session-timeout 6s
    measure_ingest "$(cat "$A/pid")" "$(cat "$A/port")" "$(cat "$A/token")" "$LIVE_SPANS" "kafka-$r"
    kafka_rates+=("$ING_RATE") kafka_mid+=("$ING_MID_RATE") kafka_cores+=("$ING_PER_CORE")
    say "   round $r: emp-server counted $ING_SPANS spans in ${ING_S}s after the first: $ING_RATE spans/s;"
    say "     from a tenth to nine tenths: $ING_MID_RATE spans/s"
    say "     its CPU $(calc "$ING_TICKS / $CLK_TCK" 2)s: $ING_PER_CORE spans/s per core"
    ((ING_DONE)) || say "   NOTE: it had not counted all $LIVE_SPANS after ${INGEST_TIMEOUT}s: the rate is of what it did count"
    [[ $T_CONSUMED == "$LIVE_MESSAGES" ]] ||
      say "   NOTE: emp-server consumed $T_CONSUMED messages, $LIVE_MESSAGES were produced (the mock kept fewer?)"
    kafka_hwm+=("$(calc "$(vm_kib "$(cat "$A/pid")" VmHWM) / 1024")")
    if wait_stored "$(cat "$A/port")" "$(cat "$A/token")" "$LIVE_SPANS"; then
      # counting runs ahead of Redis by what the aggregator and its parked batches hold, and the
      # last flush comes up to a flush interval after the last span: for a burst this short, the
      # rate to the last span in the store is a lower bound of a longer stream's, the counting
      # rate an upper one
      now_us
      kafka_stored+=("$(calc "($LIVE_SPANS - $ING_S0) / max(($NOW_US - $ING_T0) / 1000000, 0.001)" 0)")
      say "     all in Redis $(calc "($NOW_US - $ING_T0) / 1000000" 3)s after the first was counted: ${kafka_stored[-1]} spans/s"
    else
      say "   NOTE: the store has $T_STORED of the spans after 60 s"
    fi
    stop_pid "$(cat "$A/pid")"
  fi
  if ((r <= KCAT_ROUNDS)); then
    kcat_run zipkin-live "live-$r"
    kcat_s+=("$KCAT_S") kcat_mid+=("$KCAT_MID_RATE") kcat_cpu+=("$KCAT_CPU")
    say "   round $r: kcat read it in ${KCAT_S}s from the first message to the last (CPU ${KCAT_CPU}s),"
    say "     from a tenth to nine tenths at $KCAT_MID_RATE spans/s"
  fi
done
KAFKA_RATE=$(median 0 "${kafka_rates[@]}")
KAFKA_MID_RATE=$(median 0 "${kafka_mid[@]}")
KAFKA_PER_CORE=$(median 0 "${kafka_cores[@]}")
KAFKA_HWM_MIB=$(maximum "${kafka_hwm[@]}")
KAFKA_STORED_RATE=-
((${#kafka_stored[@]} == KAFKA_ROUNDS)) && KAFKA_STORED_RATE=$(median 0 "${kafka_stored[@]}")
say "   emp-server: $KAFKA_MID_RATE spans/s from a tenth to nine tenths, $KAFKA_RATE from the first span to the last"
say "     (medians of $KAFKA_ROUNDS rounds), $KAFKA_PER_CORE spans/s per core"

KCAT_S=$(median 3 "${kcat_s[@]}")
KCAT_CPU=$(median 3 "${kcat_cpu[@]}")
# the spans after the first message, over the time from it to the last
KCAT_RATE=$(calc "($LIVE_SPANS - $PER_MESSAGE) / max($KCAT_S, 0.001)" 0)
KCAT_MID_RATE=$(median 0 "${kcat_mid[@]}")
KCAT_PER_CORE=$(calc "$LIVE_SPANS / max($KCAT_CPU, 0.01)" 0)
KAFKA_RATIO=$(calc "$KAFKA_MID_RATE / $KCAT_MID_RATE")
KAFKA_FULL_RATIO=$(calc "$KAFKA_RATE / $KCAT_RATE")
say "   kcat: $KCAT_MID_RATE spans/s from a tenth to nine tenths, $KCAT_RATE from the first message to the last"
say "     (median ${KCAT_S}s), $KCAT_PER_CORE spans/s per core"
say "   emp-server / kcat: $KAFKA_RATIO (from the first to the last: $KAFKA_FULL_RATIO)"
KAFKA_OTHER=$(other_pct "$KAFKA_PHASE")

# ---- 2. POST /api/v2/spans ----

step "POST /api/v2/spans: wrk -t$THREADS -c$CONNECTIONS -d${HTTP_DURATION}s, $HTTP_BODIES bodies of $PER_MESSAGE spans in turn, $HTTP_ROUNDS rounds"
now_us
generate "$WORK/bodies.jsonl" $((NOW_US - 60000000)) 60000000 $((HTTP_BODIES * PER_MESSAGE))
HTTP_PER_BODY=$((GEN_SPANS / GEN_MESSAGES))
cat >"$WORK/post.lua" <<'EOF'
-- POST /api/v2/spans with the bodies of a file (one JSON list a line) in turn. Each request's
-- traces are new ones: the first 8 of every traceId's hex digits are the wrk run's number (the
-- script's second argument), the wrk thread's and the request's, as an app's traces are new, so
-- that no span is a copy of one sent before; each body is kept cut at those digits, and joined
-- with them per request.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local bodies, n, sent, run = {}, 0, 0, 0
local headers = { ["Content-Type"] = "application/json" }
function init(args)
  local key = '"traceId":"'
  for line in io.lines(args[1]) do
    local parts, from = {}, 1
    while true do
      local at = string.find(line, key, from, true)
      if not at then break end
      parts[#parts + 1] = string.sub(line, from, at + #key - 1)
      from = at + #key + 8
    end
    parts[#parts + 1] = string.sub(line, from)
    bodies[#bodies + 1] = parts
  end
  n = math.random(#bodies) - 1
  run = tonumber(args[2])
end
function request()
  n = n % #bodies + 1
  sent = sent + 1
  local number = string.format("%x%x%06x", run % 16, id % 16, sent % 0x1000000)
  return wrk.format("POST", "/api/v2/spans", headers, table.concat(bodies[n], number))
end
EOF
HTTP_PHASE=$(cpu_mark)
start_emp "$A" # no Kafka: the spans are counted where they are posted
HTTP_URL=$(cat "$A/url")/api/v2/spans
head -n 1 "$WORK/bodies.jsonl" >"$WORK/one-body.json"
http_answer=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary "@$WORK/one-body.json" "$HTTP_URL")
[[ $http_answer == 202 ]] || die "POST /api/v2/spans answered $http_answer"
run_wrk http-warmup -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/post.lua" "$HTTP_URL" -- "$WORK/bodies.jsonl" 0
http_spans=() http_core=()
printf '   %-6s %12s %12s %9s %7s %14s\n' round 'requests/s' 'spans/s' 'p99 ms' errors 'spans/s/core'
for ((r = 1; r <= HTTP_ROUNDS; r++)); do
  tracing_status "$(cat "$A/port")" "$(cat "$A/token")"
  s0=$T_SPANS
  c0=$(proc_ticks "$(cat "$A/pid")")
  run_wrk "http-$r" -t"$THREADS" -c"$CONNECTIONS" -d"${HTTP_DURATION}s" --latency -s "$WORK/post.lua" "$HTTP_URL" -- "$WORK/bodies.jsonl" "$r"
  c1=$(proc_ticks "$(cat "$A/pid")")
  tracing_status "$(cat "$A/port")" "$(cat "$A/token")"
  rps=$(wrk_rps "http-$r")
  spans=$(calc "$rps * $HTTP_PER_BODY" 0)
  counted=$((T_SPANS - s0))
  per_core=$(calc "$counted / max(($c1 - $c0) / $CLK_TCK, 0.01)" 0)
  http_spans+=("$spans") http_core+=("$per_core")
  printf '   %-6s %12s %12s %9s %7s %14s\n' "$r" "$rps" "$spans" "$(wrk_latency_ms "http-$r" 99%)" \
    "$(wrk_errors "http-$r")" "$per_core"
  # wrk does not count the requests still open when it stops (at most one a connection), and
  # those of the wrk before (the warm-up's, the round's before) may be counted after s0 was read
  expected=$(($(wrk_requests "http-$r") * HTTP_PER_BODY))
  ((counted >= expected && counted <= expected + 2 * CONNECTIONS * HTTP_PER_BODY)) ||
    say "   NOTE: emp-server counted $counted spans in round $r, wrk's requests carried $expected"
done
# every request's traces were new: a span taken as a copy of one sent before is counted no further
tracing_status "$(cat "$A/port")" "$(cat "$A/token")"
http_copies=$(json_int duplicates "$HTTP_BODY")
[[ $http_copies == 0 ]] || say "   NOTE: emp-server took $http_copies spans as copies of spans sent before"
HTTP_SPANS=$(median 0 "${http_spans[@]}")
HTTP_PER_CORE=$(median 0 "${http_core[@]}")
HTTP_HWM_MIB=$(calc "$(vm_kib "$(cat "$A/pid")" VmHWM) / 1024")
say "   median: $HTTP_SPANS spans/s, $HTTP_PER_CORE spans/s per core of emp-server (wrk shares the $NCPU cores)"
stop_pid "$(cat "$A/pid")"
HTTP_OTHER=$(other_pct "$HTTP_PHASE")

# ---- 3. a million spans over an hour: memory ----

step "memory: $MEMORY_SPANS spans of $SERVICES services over the last hour, through Kafka, into a fresh emp-server"
now_us
generate "$WORK/hour.jsonl" $((NOW_US - HOUR_US + 60000000)) $((HOUR_US - 120000000)) "$MEMORY_SPANS"
HOUR_MESSAGES=$GEN_MESSAGES HOUR_SPANS=$GEN_SPANS
produce zipkin-hour "$WORK/hour.jsonl"
say "   $HOUR_SPANS spans in $HOUR_MESSAGES messages, $(calc "$(stat -c %s "$WORK/hour.jsonl") / 1048576" 0) MiB"
MEMORY_PHASE=$(cpu_mark)
MEM0=$(used_memory "$B")
start_emp "$B" --kafka-brokers "$BROKERS" --kafka-topic zipkin-hour --kafka-group emp-bench \
  --kafka-session-timeout 6s
B_PID=$(cat "$B/pid") B_PORT=$(cat "$B/port") B_TOKEN=$(cat "$B/token")
HWM_START_MIB=$(calc "$(vm_kib "$B_PID" VmHWM) / 1024")
REDIS_PID=$(cat "$B/redis.pid")
redis0=$(proc_ticks "$REDIS_PID")
measure_ingest "$B_PID" "$B_PORT" "$B_TOKEN" "$HOUR_SPANS" hour
HOUR_RATE=$ING_RATE HOUR_PER_CORE=$ING_PER_CORE
((ING_DONE)) || say "   NOTE: it had not counted all $HOUR_SPANS after ${INGEST_TIMEOUT}s"
wait_stored "$B_PORT" "$B_TOKEN" "$HOUR_SPANS" || say "   NOTE: the store has $T_STORED of the spans after 60 s"
redis1=$(proc_ticks "$REDIS_PID")
nap 2 # a flush more: calls that waited for their other half
RSS_MIB=$(calc "$(vm_kib "$B_PID" VmHWM) / 1024")
MEM1=$(used_memory "$B")
JOIN_KEYS=$(rcli "$B" --scan --pattern 'emp:tj:*' | wc -l)
JOIN_KEYS0=$JOIN_KEYS
REDIS_NOW_KIB=$(calc "($MEM1 - $MEM0) / $SERVICES / 1024" 1)
# calls whose two halves reached the store in different batches wait there for their other half
# (emp:tj:*, expiring after 40 s): transient, not part of an hour of windows; waited out
for ((i = 0; i < 12 && JOIN_KEYS > 0; i++)); do
  nap 5
  JOIN_KEYS=$(rcli "$B" --scan --pattern 'emp:tj:*' | wc -l)
done
MEM2=$(used_memory "$B")
REDIS_KIB=$(calc "($MEM2 - $MEM0) / $SERVICES / 1024" 1)
# exact, not only fast: the requests in the store are the SERVER spans sent, each counted once.
# Read as a 1 min window reads them: every 1 min bucket (a minute not rolled up yet holds only
# what came after its 10 s buckets expired), and the 10 s buckets of the minutes not rolled up
SENT_REQUESTS=$(grep -o '"kind":"SERVER"' "$WORK/hour.jsonl" | wc -l)
# shellcheck disable=SC2016 # Lua, not shell
STORED_REQUESTS=$(rcli "$B" EVAL '
  local n = 0
  for _, k in ipairs(redis.call("KEYS", "emp:tm:*:60:*")) do
    n = n + tonumber(redis.call("HGET", k, "r") or "0")
  end
  for _, k in ipairs(redis.call("KEYS", "emp:tm:*:10:*")) do
    local app, b = string.match(k, "^emp:tm:(.+):10:(%d+)$")
    local minute = tonumber(b) - tonumber(b) % 60
    if redis.call("HEXISTS", "emp:tm:" .. app .. ":60:" .. minute, "R") == 0 then
      n = n + tonumber(redis.call("HGET", k, "r") or "0")
    end
  end
  return n' 0)
say "   emp-server counted them at $HOUR_RATE spans/s ($HOUR_PER_CORE per core of its CPU); redis-server's CPU meanwhile $(calc "($redis1 - $redis0) / $CLK_TCK" 1)s"
say "   emp-server peak RSS (VmHWM): $HWM_START_MIB MiB once started, $RSS_MIB MiB after; RSS now $(calc "$(vm_kib "$B_PID" VmRSS) / 1024") MiB"
say "   Redis used_memory $MEM0 before, $MEM1 once all were stored: $REDIS_NOW_KIB KiB per service, with"
say "   $JOIN_KEYS0 keys of calls waiting for their other half; $MEM2 ${i}x5 s later ($JOIN_KEYS such keys left): $REDIS_KIB KiB"
say "   keys: $(rcli "$B" --scan --pattern 'emp:tm:*:10:*' | wc -l) fine and $(rcli "$B" --scan --pattern 'emp:tm:*:60:*' | wc -l) coarse app buckets"
say "   requests in the store: $STORED_REQUESTS, SERVER spans sent: $SENT_REQUESTS"
MEMORY_OTHER=$(other_pct "$MEMORY_PHASE")

# ---- 4. the metrics query of one app over an hour ----

step "GET /v1/apps/{id}/metrics?window=1h of bench-0/app-0: wrk -t1 -c1 -d${QUERY_DURATION}s --latency"
APP_ID=$(cat "$B/app-id")
QUERY_PATH="/v1/apps/$APP_ID/metrics?window=1h"
http_get "$B_PORT" "$QUERY_PATH" "$B_TOKEN"
[[ $HTTP_STATUS == 200 ]] || die "GET $QUERY_PATH answered $HTTP_STATUS: $HTTP_BODY"
QUERY_REQUESTS=$(json_int requests "$HTTP_BODY")
say "   the answer: $(wc -c <<<"$HTTP_BODY") bytes, requests $QUERY_REQUESTS, resolution_s $(json_int resolution_s "$HTTP_BODY")"
run_wrk query-warmup -t1 -c1 -d1s -H "Authorization: Bearer $B_TOKEN" "$(cat "$B/url")$QUERY_PATH"
run_wrk query -t1 -c1 -d"${QUERY_DURATION}s" --latency -H "Authorization: Bearer $B_TOKEN" "$(cat "$B/url")$QUERY_PATH"
QUERY_MEAN=$(awk '$1 == "Latency" { v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
  printf "%.3f\n", v * (u == "us" ? 0.001 : u == "ms" ? 1 : 1000); exit }' "$WORK/wrk-query.txt")
QUERY_P99=$(wrk_latency_ms query 99%)
QUERY_P50=$(wrk_latency_ms query 50%)
say "   $(wrk_rps query) requests/s, mean $QUERY_MEAN ms, p50 $QUERY_P50 ms, p99 $QUERY_P99 ms, $(wrk_errors query) errors"

# ---- summary ----

OTHER_PCT=$(other_pct "$RUN_MARK")
now_us
RUN_S=$(calc "($NOW_US - ${RUN_MARK##* }) / 1000000" 0)
NOISE=$(noise_note "during the ${RUN_S}s run (Kafka $KAFKA_OTHER%, HTTP $HTTP_OTHER%, memory $MEMORY_OTHER%)" \
  "$OTHER_PCT" "$KAFKA_OTHER" "$HTTP_OTHER" "$MEMORY_OTHER")

record "Kafka ingest spans/s, emp-server (a tenth to 9 tenths)" "$KAFKA_MID_RATE"
record "Kafka read spans/s, kcat -C (a tenth to 9 tenths)" "$KCAT_MID_RATE"
record "  ratio emp-server / kcat" "$KAFKA_RATIO" ">= $TARGET_KAFKA_RATIO" "$(verdict "$KAFKA_RATIO >= $TARGET_KAFKA_RATIO")"
record "  emp-server spans/s, first span to last" "$KAFKA_RATE"
record "  kcat spans/s, first message to last" "$KCAT_RATE"
record "  ratio of those (no target of its own)" "$KAFKA_FULL_RATIO"
record "  emp-server spans/s per core (its CPU time)" "$KAFKA_PER_CORE"
record "  emp-server spans/s to the last in Redis (no target)" "$KAFKA_STORED_RATE"
record "  kcat spans/s per core (its CPU time)" "$KCAT_PER_CORE"
record "  emp-server peak RSS MiB, Kafka run" "$KAFKA_HWM_MIB"
record "POST /api/v2/spans spans/s, -c$CONNECTIONS" "$HTTP_SPANS" ">= $TARGET_HTTP_SPANS" "$(verdict "$HTTP_SPANS >= $TARGET_HTTP_SPANS")"
record "  emp-server spans/s per core (its CPU time)" "$HTTP_PER_CORE"
record "  emp-server peak RSS MiB, HTTP run" "$HTTP_HWM_MIB"
record "metrics?window=1h mean ms (wrk -c1)" "$QUERY_MEAN" "< $TARGET_QUERY_MS" "$(verdict "$QUERY_MEAN < $TARGET_QUERY_MS")"
record "metrics?window=1h p99 ms (wrk -c1)" "$QUERY_P99" "< $TARGET_QUERY_MS" "$(verdict "$QUERY_P99 < $TARGET_QUERY_MS")"
record "emp-server peak RSS MiB, $HOUR_SPANS spans of $SERVICES services" "$RSS_MIB" "< $TARGET_RSS_MIB" "$(verdict "$RSS_MIB < $TARGET_RSS_MIB")"
record "Redis KiB per service, an hour of windows" "$REDIS_KIB" "< $TARGET_REDIS_KIB" "$(verdict "$REDIS_KIB < $TARGET_REDIS_KIB")"
record "  the same with the calls still waiting for a half" "$REDIS_NOW_KIB"
record "  ingest spans/s over an hour of timestamps (no target)" "$HOUR_RATE"
record "requests in the store / SERVER spans sent, memory run" "$STORED_REQUESTS / $SENT_REQUESTS" "equal" \
  "$( ((STORED_REQUESTS == SENT_REQUESTS)) && echo pass || echo MISS)"

print_summary <<EOF
Spans: tests/tracing/spans.py traces (server, client, callee's server span) of $SERVICES services in
  pairs, $PER_MESSAGE spans a message or POST; emp-server --log-level warn --reconcile-workers 0.
Kafka: $LIVE_SPANS spans ($LIVE_MB MiB) stamped over the last minute in emp-kafka-mock (librdkafka's mock
  cluster, $PARTITIONS partitions), read in turns by emp-server ($KAFKA_ROUNDS reads, a fresh emp-server
  and group each; its group join is left out) and kcat ($KCAT_ROUNDS reads, kcat -u -f '%o\\n' into a
  reader that notes the times); each side's rate is the median of its reads, from the moment a tenth
  of the topic was read to the moment nine tenths were, and from the first span to the last.
HTTP: wrk -t$THREADS -c$CONNECTIONS -d${HTTP_DURATION}s, median of $HTTP_ROUNDS rounds, $HTTP_BODIES bodies in turn.
Memory: a fresh emp-server and Redis, $HOUR_SPANS spans stamped over the last hour (--trace-lateness 2h);
  Redis used_memory after less before (the apps already there), divided by $SERVICES services.
$NOISE.
EOF
