#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/api.sh: how fast emp-server answers GET /v1/apps/{id}, as a ratio to nginx serving a static
# file of the same bytes in the same run, and what it costs in memory: emp-server's peak RSS and
# Redis bytes per app with 10,000 apps, and GET /v1/apps of one user at 10,000 and 100,000 apps.
# A measurement, not a test: it exits 0 when a target is missed (non-zero only if it cannot run).
# Everything it starts (redis-server, emp-server, nginx) listens on loopback or a unix socket in a
# temporary directory, and is stopped on exit. See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${EMP_BENCH_BUILD:-$ROOT/build-bench}
DURATION=${EMP_BENCH_DURATION:-10}          # seconds of each GET /v1/apps/{id} round
ROUNDS=${EMP_BENCH_ROUNDS:-3}               # rounds per server, alternating emp-server and nginx
WARMUP=${EMP_BENCH_WARMUP:-2}               # seconds of warm-up of each server
LIST_DURATION=${EMP_BENCH_LIST_DURATION:-3} # seconds of each GET /v1/apps round
LIST_ROUNDS=${EMP_BENCH_LIST_ROUNDS:-4}     # rounds per Redis, alternating 10,000 and 100,000 apps
THREADS=2                                   # wrk threads
CONNECTIONS=64                              # wrk connections
APPS_PER_USER=10
SMALL_USERS=1000  # 10,000 apps ...
LARGE_USERS=10000 # ... and 100,000
RECONCILE_WAIT_S=180
PASSWORD=bench-password-1
SPEC_FORMAT='{"name":"%s","docker_image":"fcribeiro/songs_ms:1.0","stateless":true,"port":5000,"envs":[{"name":"DB_HOST","value":"songs-db"}],"quality_metrics":[{"metric":"latency","values":"p95 < 200ms"}]}'

# the issue's targets
TARGET_RPS_RATIO=0.5     # emp-server requests/s at least half of nginx's
TARGET_P99_RATIO=2       # emp-server p99 at most twice nginx's
TARGET_RSS_MIB=64        # emp-server peak RSS with 10,000 apps
TARGET_BYTES_PER_APP=2048
TARGET_LIST_RATIO=1.5    # GET /v1/apps must not grow with the total: 100,000 / 10,000 within noise

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() {
  printf 'bench/api.sh: %s\n' "$*" >&2
  exit 1
}

for tool in wrk nginx redis-server redis-cli curl ss cmake awk; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/bootstrap"
done

# ---- processes: every one started here is recorded, and stopped on exit ----

WORK=$(mktemp -d "${TMPDIR:-/tmp}/emp-bench.XXXXXX")
PIDS=()

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do # the reverse of starting: Redis goes last
    stop_pid "${PIDS[i]}"
  done
  if [[ ${EMP_BENCH_KEEP:-0} == 1 ]]; then
    say "bench/api.sh: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ----

# The TCP port that pid (started with port 0) listens on, waiting up to 10 s.
listen_port_of() {
  local pid=$1 port i
  for ((i = 0; i < 100; i++)); do
    port=$(ss -Hltnp 2>/dev/null |
      awk -v p="pid=$pid," 'index($0, p) { n = split($4, a, ":"); print a[n]; exit }')
    if [[ -n $port ]]; then
      printf '%s\n' "$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# A TCP port on loopback that nothing listens on now.
free_port() {
  local port used
  used=$(ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
  for _ in {1..100}; do
    port=$((20000 + RANDOM % 40000))
    if ! grep -qx "$port" <<<"$used"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

rcli() { # DIR ARGS...: redis-cli to the Redis of DIR
  local dir=$1
  shift
  redis-cli -s "$dir/redis.sock" "$@"
}

used_memory() { rcli "$1" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }

start_redis() { # DIR
  local dir=$1 i
  mkdir -p "$dir"
  redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --dir "$dir" \
    --save '' --appendonly no --daemonize no >"$dir/redis.log" 2>&1 &
  PIDS+=($!)
  for ((i = 0; i < 100; i++)); do
    [[ $(rcli "$dir" PING 2>/dev/null) == PONG ]] && return 0
    sleep 0.05
  done
  die "redis-server did not start: $(cat "$dir/redis.log")"
}

start_emp() { # DIR: an emp-server on the Redis of DIR; writes DIR/pid and DIR/url
  local dir=$1 pid port i
  local args=(--listen 127.0.0.1:0 --redis-url "unix://$dir/redis.sock" --state-dir "$dir/state"
    --log-level warn --max-apps-per-user 100)
  if [[ -n ${EMP_BENCH_SERVER_THREADS:-} ]]; then
    args+=(--threads "$EMP_BENCH_SERVER_THREADS")
  fi
  "$EMP_SERVER" "${args[@]}" >"$dir/emp-server.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  port=$(listen_port_of "$pid") || die "emp-server did not start: $(cat "$dir/emp-server.log")"
  for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null ||
    die "emp-server is not ready: $(cat "$dir/emp-server.log")"
  printf '%s\n' "$pid" >"$dir/pid"
  printf 'http://127.0.0.1:%s\n' "$port" >"$dir/url"
}

api() { # DIR METHOD PATH [BODY]: prints the answer's body, fails on a non-2xx status
  local dir=$1 method=$2 path=$3
  local args=(-sS --fail-with-body -X "$method" -H 'Content-Type: application/json')
  [[ -s $dir/token ]] && args+=(-H "Authorization: Bearer $(cat "$dir/token")")
  [[ $# -ge 4 ]] && args+=(--data-binary "$4")
  curl "${args[@]}" "$(cat "$dir/url")$path"
}

json_field() { # NAME: the first string value of NAME in the JSON object on stdin, on a line
  { cat && echo; } | sed -n "s/^{.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1
}

# The measured user, alice, and her 10 apps, made through the API as a developer makes them.
make_alice() { # DIR
  local dir=$1 i spec
  api "$dir" POST /v1/users "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" >/dev/null
  api "$dir" POST /v1/sessions "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" |
    json_field token >"$dir/token"
  [[ -s $dir/token ]] || die "alice cannot log in"
  : >"$dir/app-ids"
  for ((i = 0; i < APPS_PER_USER; i++)); do
    # shellcheck disable=SC2059 # the format is ours
    spec=$(printf "$SPEC_FORMAT" "app-$i")
    api "$dir" POST /v1/apps "$spec" | json_field id >>"$dir/app-ids"
  done
}

populate() { # DIR ARGS...: emp-bench-populate on the Redis of DIR
  local dir=$1
  shift
  "$POPULATE" --redis-url "unix://$dir/redis.sock" "$@"
}

# Apps the reconciler has not looked at yet (state deploying).
apps_deploying() { # DIR
  # shellcheck disable=SC2016 # Lua, not shell
  rcli "$1" EVAL 'local n = 0
    for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
      if redis.call("HGET", "emp:app:" .. id, "state") == "deploying" then n = n + 1 end
    end
    return n' 1 emp:apps
}

wait_reconciled() { # DIR
  local left start=$SECONDS
  while :; do
    left=$(apps_deploying "$1")
    [[ $left == 0 ]] && break
    if ((SECONDS - start > RECONCILE_WAIT_S)); then
      say "   the reconciler has not looked at $left apps after ${RECONCILE_WAIT_S}s; going on"
      return 0
    fi
    sleep 1
  done
  say "   the reconciler has looked at all $(rcli "$1" ZCARD emp:apps) apps (waited $((SECONDS - start))s)"
}

# Moves every app's next reconcile an hour ahead, so that the reconciler's retries of failing apps
# (there is no cluster backend yet) do not take the 2 cores from the call being timed.
quiet_reconciler() { # DIR
  # shellcheck disable=SC2016 # Lua, not shell
  rcli "$1" EVAL 'local ids = redis.call("ZRANGE", KEYS[1], 0, -1)
    for _, id in ipairs(ids) do redis.call("ZADD", KEYS[1], ARGV[1], id) end
    return #ids' 1 emp:recon:due "$(($(date +%s) * 1000 + 3600000))" >/dev/null
}

# run_wrk NAME ARGS...: runs wrk, keeping its output in $WORK/wrk-NAME.txt
run_wrk() {
  local name=$1
  shift
  wrk "$@" >"$WORK/wrk-$name.txt" 2>&1 || die "wrk failed: $(cat "$WORK/wrk-$name.txt")"
}

wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }' "$WORK/wrk-$1.txt"; }

wrk_errors() { # NAME: non-2xx answers plus socket errors
  awk '/Non-2xx or 3xx responses:/ { n += $NF }
       /Socket errors:/ { for (i = 3; i <= NF; i++) { v = $i; gsub(/[^0-9]/, "", v); n += v } }
       END { print n + 0 }' "$WORK/wrk-$1.txt"
}

wrk_latency_ms() { # NAME PERCENT ("99%"): that percentile, in milliseconds
  awk -v pct="$2" '
    $1 == pct && $2 ~ /^[0-9.]+(us|ms|s|m)$/ {
      v = $2; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
      f = unit == "us" ? 0.001 : unit == "ms" ? 1 : unit == "s" ? 1000 : 60000
      printf "%.3f\n", v * f; exit
    }' "$WORK/wrk-$1.txt"
}

median() { # DECIMALS NUMBERS...
  local decimals=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v d="$decimals" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.*f\n", d, m }'
}

calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }

verdict() { # a condition on numbers, in awk
  if awk "BEGIN { exit !($1) }"; then printf 'pass'; else printf 'MISS'; fi
}

# CPU time, in clock ticks, of the whole machine and of this script's processes (itself, what it
# waited for, and the servers and their children still running): the difference is other work,
# which skews every figure here, the tail latencies most.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_ticks() { # PID: its CPU and that of the children it waited for
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  awk '{ print $12 + $13 + $14 + $15 }' <<<"${stat##*) }" # fields 14 to 17, after "(comm) "
}
our_ticks() {
  local total pid child
  total=$(proc_ticks $$)
  for pid in "${PIDS[@]}"; do
    total=$((total + $(proc_ticks "$pid")))
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
      total=$((total + $(proc_ticks "$child")))
    done
  done
  echo "$total"
}

vm_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; } # PID FIELD

SUMMARY=()
record() { # FIGURE VALUE [TARGET VERDICT]
  SUMMARY+=("$(printf '%-50s %12s  %-8s %s' "$1" "$2" "${3:-}" "${4:-}")")
}

# ---- build ----

if [[ ${EMP_BENCH_SKIP_BUILD:-0} != 1 ]]; then
  step "building emp-server and emp-bench-populate in $BUILD"
  # the unit tests are not needed here, and need not build for the benchmark to run
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMP_BUILD_TESTS=OFF \
    >"$WORK/cmake.log" 2>&1 || die "cmake failed: $(tail -n 30 "$WORK/cmake.log")"
  cmake --build "$BUILD" -j2 --target emp-server emp-bench-populate >>"$WORK/cmake.log" 2>&1 ||
    die "the build failed: $(tail -n 30 "$WORK/cmake.log")"
fi
EMP_SERVER=$BUILD/emp-server
POPULATE=$BUILD/bench/emp-bench-populate
[[ -x $EMP_SERVER && -x $POPULATE ]] || die "no $EMP_SERVER or $POPULATE: build them first"

# ---- servers ----

A=$WORK/a # Redis and emp-server of the throughput run, then 10,000 apps
B=$WORK/b # Redis and emp-server of 100,000 apps
step "starting redis-server, emp-server and nginx in $WORK"
start_redis "$A"
start_emp "$A"
HWM_START_MIB=$(calc "$(vm_kib "$(cat "$A/pid")" VmHWM) / 1024") # before any request
make_alice "$A"
wait_reconciled "$A" # the answer changes once (state deploying -> failed): take the lasting one
APP_ID=$(head -n 1 "$A/app-ids")
EMP_URL=$(cat "$A/url")
EMP_PID=$(cat "$A/pid")

# nginx serves, at the same path, exactly the bytes emp-server answers for that GET.
mkdir -p "$WORK/www/v1/apps" "$WORK/nginx"
BODY=$WORK/www/v1/apps/$APP_ID
api "$A" GET "/v1/apps/$APP_ID" >"$BODY"
api "$A" GET "/v1/apps/$APP_ID" | cmp -s - "$BODY" || die "GET /v1/apps/$APP_ID keeps changing"
BODY_BYTES=$(wc -c <"$BODY")
chmod -R a+rX "$WORK/www"
NGINX_PORT=
for _ in {1..5}; do
  port=$(free_port) || die "no free port for nginx"
  user_line=
  [[ $(id -u) == 0 ]] && user_line="user root root;" # else its workers would run as nobody
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
$user_line
events { worker_connections 1024; }
http {
    types { }
    default_type application/json;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000; # as emp-server: keep connections for as long as wrk wants
    keepalive_timeout 65;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $WORK/www;
    }
}
EOF
  nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
    >"$WORK/nginx/stdout.log" 2>&1 &
  nginx_pid=$!
  for ((i = 0; i < 50; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/v1/apps/$APP_ID" && break
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
  done
  if curl -sf -o /dev/null "http://127.0.0.1:$port/v1/apps/$APP_ID"; then
    PIDS+=("$nginx_pid")
    NGINX_PORT=$port
    break
  fi
  stop_pid "$nginx_pid" # the port was taken meanwhile: try another
done
[[ -n $NGINX_PORT ]] || die "nginx did not start: $(cat "$WORK/nginx/error.log")"
NGINX_URL=http://127.0.0.1:$NGINX_PORT
curl -sS "$NGINX_URL/v1/apps/$APP_ID" | cmp -s - "$BODY" || die "nginx does not serve the same bytes"

say "   redis-server $(redis-server --version | awk '{ print $3 }' | cut -d= -f2) on a unix socket, no persistence"
say "   emp-server $EMP_URL, --log-level warn (no access log), ${EMP_BENCH_SERVER_THREADS:-default} HTTP threads, $(nproc) cores"
say "   emp-server peak RSS (VmHWM) $HWM_START_MIB MiB once started, before any request"
say "   nginx $(nginx -v 2>&1 | cut -d/ -f2) $NGINX_URL, worker_processes 2, access_log off"
say "   answer: $BODY_BYTES bytes of application/json, the same for both"

# ---- 1. GET /v1/apps/{id}: emp-server next to nginx ----

MACHINE0=$(machine_ticks)
OURS0=$(our_ticks)
START_S=$SECONDS

step "GET /v1/apps/{id}: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds each, alternating"
wrk_args=(-t"$THREADS" -c"$CONNECTIONS" --latency -H "Authorization: Bearer $(cat "$A/token")")
run_wrk emp-warmup "${wrk_args[@]}" -d"${WARMUP}s" "$EMP_URL/v1/apps/$APP_ID"
run_wrk nginx-warmup "${wrk_args[@]}" -d"${WARMUP}s" "$NGINX_URL/v1/apps/$APP_ID"
printf '   %-6s %-11s %12s %9s %9s %7s\n' round server 'requests/s' 'p50 ms' 'p99 ms' errors
emp_rps=() emp_p50=() emp_p99=() nginx_rps=() nginx_p50=() nginx_p99=()
ERRORS=0
for ((r = 1; r <= ROUNDS; r++)); do
  for server in emp nginx; do
    if [[ $server == emp ]]; then url=$EMP_URL; else url=$NGINX_URL; fi
    run_wrk "$server-get-$r" "${wrk_args[@]}" -d"${DURATION}s" "$url/v1/apps/$APP_ID"
    rps=$(wrk_rps "$server-get-$r")
    p50=$(wrk_latency_ms "$server-get-$r" 50%)
    p99=$(wrk_latency_ms "$server-get-$r" 99%)
    errors=$(wrk_errors "$server-get-$r")
    ERRORS=$((ERRORS + errors))
    if [[ $server == emp ]]; then
      emp_rps+=("$rps") emp_p50+=("$p50") emp_p99+=("$p99")
      name=emp-server
    else
      nginx_rps+=("$rps") nginx_p50+=("$p50") nginx_p99+=("$p99")
      name=nginx
    fi
    printf '   %-6s %-11s %12s %9s %9s %7s\n' "$r" "$name" "$rps" "$p50" "$p99" "$errors"
  done
done
EMP_RPS=$(median 0 "${emp_rps[@]}")
EMP_P50=$(median 3 "${emp_p50[@]}")
EMP_P99=$(median 3 "${emp_p99[@]}")
NGINX_RPS=$(median 0 "${nginx_rps[@]}")
NGINX_P50=$(median 3 "${nginx_p50[@]}")
NGINX_P99=$(median 3 "${nginx_p99[@]}")
RPS_RATIO=$(calc "$EMP_RPS / $NGINX_RPS")
P99_RATIO=$(calc "$EMP_P99 / $NGINX_P99")
printf '   %-6s %-11s %12s %9s %9s\n' median emp-server "$EMP_RPS" "$EMP_P50" "$EMP_P99"
printf '   %-6s %-11s %12s %9s %9s\n' median nginx "$NGINX_RPS" "$NGINX_P50" "$NGINX_P99"
say "   emp-server / nginx: requests/s $RPS_RATIO, p99 $P99_RATIO"
say "   emp-server peak RSS so far (VmHWM): $(calc "$(vm_kib "$EMP_PID" VmHWM) / 1024") MiB"
((ERRORS == 0)) || say "   NOTE: $ERRORS requests failed (see $WORK/wrk-*.txt): the figures are not comparable"

# ---- 2. memory with 10,000 apps of 1,000 users ----

step "memory: $((SMALL_USERS * APPS_PER_USER)) apps of $SMALL_USERS users in Redis"
HASH=$(rcli "$A" HGET emp:user:alice password_hash) # every user gets alice's password hash
[[ $HASH == "\$argon2id\$"* ]] || die "no password hash of alice in Redis"
more=$((SMALL_USERS - 1)) # alice is the 1,000th
MEM0=$(used_memory "$A")
say "   users: $(populate "$A" --users "$more" --apps-per-user 0 --password-hash "$HASH")"
MEM1=$(used_memory "$A")
say "   apps:  $(populate "$A" --users "$more" --apps-per-user "$APPS_PER_USER")"
MEM2=$(used_memory "$A")
wait_reconciled "$A"
MEM3=$(used_memory "$A")
apps=$((more * APPS_PER_USER))
BYTES_PER_USER=$(((MEM1 - MEM0) / more))
BYTES_PER_APP_CREATED=$(((MEM2 - MEM1) / apps))
BYTES_PER_APP=$(((MEM3 - MEM1) / apps))
say "   Redis used_memory: $MEM0 before, $MEM1 with the users, $MEM2 with the apps, $MEM3 with their status"
say "   Redis bytes per user: $BYTES_PER_USER; per app: $BYTES_PER_APP_CREATED as created, $BYTES_PER_APP once the reconciler recorded its status"
say "   (an app: its hash, its entries in the user's name index and in the all-apps and schedule indexes)"

say "   load with $(rcli "$A" ZCARD emp:apps) apps: GET /v1/apps/{id}, then GET /v1/apps, -c$CONNECTIONS for ${DURATION}s each"
run_wrk emp-get-10k "${wrk_args[@]}" -d"${DURATION}s" "$EMP_URL/v1/apps/$APP_ID"
run_wrk emp-list-10k "${wrk_args[@]}" -d"${DURATION}s" "$EMP_URL/v1/apps"
say "   requests/s: GET /v1/apps/{id} $(wrk_rps emp-get-10k), GET /v1/apps $(wrk_rps emp-list-10k) ($(($(wrk_errors emp-get-10k) + $(wrk_errors emp-list-10k))) errors)"
RSS_MIB=$(calc "$(vm_kib "$EMP_PID" VmHWM) / 1024")
say "   emp-server peak RSS (VmHWM) $RSS_MIB MiB, RSS now $(calc "$(vm_kib "$EMP_PID" VmRSS) / 1024") MiB, $(find "/proc/$EMP_PID/task" -mindepth 1 -maxdepth 1 | wc -l) threads"

# ---- 3. GET /v1/apps of one user with 10 apps, at 10,000 and 100,000 apps ----

step "100,000 apps of $LARGE_USERS users in a second Redis, with its own emp-server"
start_redis "$B"
start_emp "$B"
make_alice "$B"
HASH_B=$(rcli "$B" HGET emp:user:alice password_hash)
more_b=$((LARGE_USERS - 1))
say "   users: $(populate "$B" --users "$more_b" --apps-per-user 0 --password-hash "$HASH_B")"
MEMB1=$(used_memory "$B")
say "   apps:  $(populate "$B" --users "$more_b" --apps-per-user "$APPS_PER_USER")"
wait_reconciled "$B"
MEMB3=$(used_memory "$B")
BYTES_PER_APP_B=$(((MEMB3 - MEMB1) / (more_b * APPS_PER_USER)))
say "   Redis used_memory $(calc "$MEMB3 / 1048576") MiB; bytes per app $BYTES_PER_APP_B"

step "GET /v1/apps of alice (10 apps): wrk -t1 -c1 -d${LIST_DURATION}s, $LIST_ROUNDS rounds each, alternating"
say "   (one connection: each request waits for the one before, so its latency is the call's time;"
say "   both reconcilers' schedules are moved an hour ahead, so that their retries of failing apps"
say "   do not take the cores from the call being timed)"
quiet_reconciler "$A"
quiet_reconciler "$B"
for dir in "$A" "$B"; do
  n=$(api "$dir" GET /v1/apps | grep -o '"id":"' | wc -l)
  [[ $n == "$APPS_PER_USER" ]] || die "alice lists $n apps, not $APPS_PER_USER"
  run_wrk "list-warmup-${dir##*/}" -t1 -c1 -d1s -H "Authorization: Bearer $(cat "$dir/token")" "$(cat "$dir/url")/v1/apps"
done
printf '   %-6s %-14s %9s %9s %12s %7s\n' round 'apps in Redis' 'p50 ms' 'p99 ms' 'requests/s' errors
small_p50=() small_p99=() large_p50=() large_p99=()
for ((r = 1; r <= LIST_ROUNDS; r++)); do
  for dir in "$A" "$B"; do
    name=list-${dir##*/}-$r
    run_wrk "$name" -t1 -c1 --latency -d"${LIST_DURATION}s" \
      -H "Authorization: Bearer $(cat "$dir/token")" "$(cat "$dir/url")/v1/apps"
    p50=$(wrk_latency_ms "$name" 50%)
    p99=$(wrk_latency_ms "$name" 99%)
    if [[ $dir == "$A" ]]; then small_p50+=("$p50") small_p99+=("$p99"); else large_p50+=("$p50") large_p99+=("$p99"); fi
    printf '   %-6s %-14s %9s %9s %12s %7s\n' "$r" "$(rcli "$dir" ZCARD emp:apps)" "$p50" "$p99" \
      "$(wrk_rps "$name")" "$(wrk_errors "$name")"
  done
done
LIST10_P50=$(median 3 "${small_p50[@]}")
LIST10_P99=$(median 3 "${small_p99[@]}")
LIST100_P50=$(median 3 "${large_p50[@]}")
LIST100_P99=$(median 3 "${large_p99[@]}")
LIST_RATIO_P50=$(calc "$LIST100_P50 / $LIST10_P50")
LIST_RATIO_P99=$(calc "$LIST100_P99 / $LIST10_P99")
say "   median: p50 $LIST10_P50 ms and $LIST100_P50 ms, p99 $LIST10_P99 ms and $LIST100_P99 ms"
say "   100,000 / 10,000 apps: p50 $LIST_RATIO_P50, p99 $LIST_RATIO_P99"

# ---- summary ----

other=$(($(machine_ticks) - MACHINE0 - ($(our_ticks) - OURS0)))
OTHER_PCT=$(calc "100 * $other / ($(getconf CLK_TCK) * $(nproc) * $((SECONDS - START_S + 1)))")
if awk "BEGIN { exit !($OTHER_PCT > 5) }"; then
  NOISE="WARNING: other processes took $OTHER_PCT% of the machine's CPU during the run: the figures are skewed"
else
  NOISE="Other processes took $OTHER_PCT% of the machine's CPU during the run"
fi

record "GET /v1/apps/{id} requests/s, emp-server" "$EMP_RPS"
record "GET /v1/apps/{id} requests/s, nginx" "$NGINX_RPS"
record "  ratio emp-server / nginx" "$RPS_RATIO" ">= $TARGET_RPS_RATIO" "$(verdict "$RPS_RATIO >= $TARGET_RPS_RATIO")"
record "GET /v1/apps/{id} p99 ms, emp-server" "$EMP_P99"
record "GET /v1/apps/{id} p99 ms, nginx" "$NGINX_P99"
record "  ratio emp-server / nginx" "$P99_RATIO" "<= $TARGET_P99_RATIO" "$(verdict "$P99_RATIO <= $TARGET_P99_RATIO")"
record "emp-server peak RSS MiB, 10,000 apps in Redis" "$RSS_MIB" "< $TARGET_RSS_MIB" "$(verdict "$RSS_MIB < $TARGET_RSS_MIB")"
record "Redis bytes per app" "$BYTES_PER_APP" "< $TARGET_BYTES_PER_APP" "$(verdict "$BYTES_PER_APP < $TARGET_BYTES_PER_APP")"
record "GET /v1/apps (10 apps) p50 ms, 10,000 apps" "$LIST10_P50"
record "GET /v1/apps (10 apps) p50 ms, 100,000 apps" "$LIST100_P50"
record "  ratio 100,000 / 10,000" "$LIST_RATIO_P50" "<= $TARGET_LIST_RATIO" "$(verdict "$LIST_RATIO_P50 <= $TARGET_LIST_RATIO")"
record "GET /v1/apps (10 apps) p99 ms, 10,000 apps" "$LIST10_P99"
record "GET /v1/apps (10 apps) p99 ms, 100,000 apps" "$LIST100_P99"
record "  ratio 100,000 / 10,000" "$LIST_RATIO_P99" "<= $TARGET_LIST_RATIO" "$(verdict "$LIST_RATIO_P99 <= $TARGET_LIST_RATIO")"

cat <<EOF

=============================== summary of bench/api.sh ===============================
$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), $(nproc) cores, Linux $(uname -r)
GET /v1/apps/{id}: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on loopback, median of $ROUNDS rounds per
server (alternating, after ${WARMUP}s of warm-up), the same request to both, a $BODY_BYTES-byte answer.
Access logs are off for both servers (emp-server --log-level warn, nginx access_log off).
GET /v1/apps: wrk -t1 -c1 -d${LIST_DURATION}s, median of $LIST_ROUNDS rounds per Redis (alternating).
$NOISE.
$(printf '%-50s %12s  %-8s %s' figure value target result)
EOF
printf '%s\n' "${SUMMARY[@]}"
say "========================================================================================"
