#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/api.sh: how fast emp-server answers GET /v1/apps/{id}, as a ratio to nginx serving a static
# file of the same bytes in the same run, and what it costs in memory: emp-server's peak RSS and
# Redis bytes per app with 10,000 apps, and GET /v1/apps of one user at 10,000 and 100,000 apps.
# A measurement, not a test: it exits 0 when a target is missed (non-zero only if it cannot run).
# Everything it starts (redis-server, emp-server, nginx) listens on loopback or a unix socket in a
# temporary directory, and is stopped on exit. See bench/README.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
PASSWORD=bench-password-1
SPEC_FORMAT='{"name":"%s","docker_image":"fcribeiro/songs_ms:1.0","command":["true"],"stateless":true,"port":5000,"envs":[{"name":"DB_HOST","value":"songs-db"}],"quality_metrics":[{"metric":"latency","values":"p95 < 200ms"}]}'

# the issue's targets
TARGET_RPS_RATIO=0.5     # emp-server requests/s at least half of nginx's
TARGET_P99_RATIO=2       # emp-server p99 at most twice nginx's
TARGET_RSS_MIB=64        # emp-server peak RSS with 10,000 apps
TARGET_BYTES_PER_APP=2048
TARGET_LIST_RATIO=1.5    # GET /v1/apps must not grow with the total: 100,000 / 10,000 within noise

require_tools wrk nginx redis-server redis-cli curl ss cmake awk ps
bench_init

# ---- helpers ----

used_memory() { rcli "$1" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }

# DIR: an emp-server on the Redis of DIR; writes DIR/pid and DIR/url. It serves only the API
# (--reconcile-workers 0, as the API servers beside one reconciling emp-server do): the apps are
# records to read, and none of the 110,000 is run.
start_emp() {
  local args=(--log-level warn --max-apps-per-user 100 --reconcile-workers 0)
  if [[ -n ${EMP_BENCH_SERVER_THREADS:-} ]]; then
    args+=(--threads "$EMP_BENCH_SERVER_THREADS")
  fi
  start_emp_server "$1" "${args[@]}"
}

# The measured user, alice, and her 10 apps, made through the API as a developer makes them.
make_alice() { # DIR
  local dir=$1 i spec answer
  api "$dir" POST /v1/users "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" >/dev/null
  answer=$(api "$dir" POST /v1/sessions "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}")
  json_str token "$answer" >"$dir/token"
  [[ -s $dir/token ]] || die "alice cannot log in"
  : >"$dir/app-ids"
  for ((i = 0; i < APPS_PER_USER; i++)); do
    # shellcheck disable=SC2059 # the format is ours
    spec=$(printf "$SPEC_FORMAT" "app-$i")
    answer=$(api "$dir" POST /v1/apps "$spec")
    json_str id "$answer" >>"$dir/app-ids"
  done
}

populate() { # DIR ARGS...: emp-bench-populate on the Redis of DIR
  local dir=$1
  shift
  "$POPULATE" --redis-url "unix://$dir/redis.sock" "$@"
}

vm_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; } # PID FIELD

summary_columns 50 12

# ---- build ----

build_targets emp-server emp-bench-populate
POPULATE=$BUILD/bench/emp-bench-populate
require_binaries "$SERVER_BIN" "$POPULATE"

# ---- servers ----

A=$WORK/a # Redis and emp-server of the throughput run, then 10,000 apps
B=$WORK/b # Redis and emp-server of 100,000 apps
step "starting redis-server, emp-server and nginx in $WORK"
start_redis "$A"
start_emp "$A"
HWM_START_MIB=$(calc "$(vm_kib "$(cat "$A/pid")" VmHWM) / 1024") # before any request
make_alice "$A"
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
  port=$(free_ports 1) || die "no free port for nginx"
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
say "   emp-server $EMP_URL, --log-level warn (no access log), ${EMP_BENCH_SERVER_THREADS:-default} HTTP threads, $NCPU cores"
say "   emp-server peak RSS (VmHWM) $HWM_START_MIB MiB once started, before any request"
say "   nginx $(nginx -v 2>&1 | cut -d/ -f2) $NGINX_URL, worker_processes 2, access_log off"
say "   answer: $BODY_BYTES bytes of application/json, the same for both"

# ---- 1. GET /v1/apps/{id}: emp-server next to nginx ----

RUN_MARK=$(cpu_mark)

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
apps=$((more * APPS_PER_USER))
BYTES_PER_USER=$(((MEM1 - MEM0) / more))
BYTES_PER_APP=$(((MEM2 - MEM1) / apps))
say "   Redis used_memory: $MEM0 before, $MEM1 with the users, $MEM2 with the apps"
say "   Redis bytes per user: $BYTES_PER_USER; per app: $BYTES_PER_APP (a running app's record, as the reconciler leaves it)"
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
MEMB3=$(used_memory "$B")
BYTES_PER_APP_B=$(((MEMB3 - MEMB1) / (more_b * APPS_PER_USER)))
say "   Redis used_memory $(calc "$MEMB3 / 1048576") MiB; bytes per app $BYTES_PER_APP_B"

step "GET /v1/apps of alice (10 apps): wrk -t1 -c1 -d${LIST_DURATION}s, $LIST_ROUNDS rounds each, alternating"
say "   (one connection: each request waits for the one before, so its latency is the call's time)"
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

OTHER_PCT=$(other_pct "$RUN_MARK" 2)
NOISE=$(noise_note "during the run" "$OTHER_PCT")

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

print_summary <<EOF
GET /v1/apps/{id}: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on loopback, median of $ROUNDS rounds per
server (alternating, after ${WARMUP}s of warm-up), the same request to both, a $BODY_BYTES-byte answer.
Access logs are off for both servers (emp-server --log-level warn, nginx access_log off).
GET /v1/apps: wrk -t1 -c1 -d${LIST_DURATION}s, median of $LIST_ROUNDS rounds per Redis (alternating).
$NOISE.
EOF
