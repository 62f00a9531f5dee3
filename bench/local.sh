#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/local.sh: the local backend's figures. Deploy-to-serving (from the start of
# `emp deploy --wait` until the first request through the app's gateway answers), scale 1 -> 20
# replicas (from `emp scale` until the API says all are ready), and the gateway's overhead (wrk
# through the gateway as a ratio to wrk straight at the replica behind it, in the same run).
# A measurement, not a test: it exits 0 when a target is missed (non-zero only if it cannot run).
# Everything it starts (redis-server, emp-server and its replicas, probes, wrk, perf) uses loopback
# or a unix socket in a temporary directory, and is stopped on exit. See bench/README.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DEPLOY_ROUNDS=${EMP_BENCH_DEPLOY_ROUNDS:-7} # deploys of a fresh app, timed without a probe
PROBE_ROUNDS=${EMP_BENCH_PROBE_ROUNDS:-3}   # more deploys, with a probe on the gateway's port
SCALE_ROUNDS=${EMP_BENCH_SCALE_ROUNDS:-5}   # scale 1 -> SCALE_TO -> 1
SCALE_TO=${EMP_BENCH_SCALE_TO:-20}
DURATION=${EMP_BENCH_DURATION:-10} # seconds of each wrk round
ROUNDS=${EMP_BENCH_ROUNDS:-3}      # wrk rounds per path, alternating gateway and direct
WARMUP=${EMP_BENCH_WARMUP:-2}      # seconds of warm-up per path
PERF=${EMP_BENCH_PERF:-1}          # 1: profile the gateway with perf, when perf works here
THREADS=2                          # wrk threads
CONNECTIONS=64                     # wrk connections
GATEWAY_PORTS=20                   # size of emp-server's --gateway-ports range
POLL_S=0.01                        # how often the API is polled while scaling
PASSWORD=bench-password-1

# the issue's targets
TARGET_DEPLOY_MS=1000 # deploy-to-serving under 1 s
TARGET_SCALE_MS=2000  # scale 1 -> 20 under 2 s
TARGET_RPS_RATIO=0.8  # requests/s through the gateway at least 0.8 of straight at the replica

die_note() { # on stderr, after die's message: that emp-server has died, and the end of its log
  if [[ -n ${EMP_PID:-} ]] && ! alive "$EMP_PID"; then
    printf '%s: emp-server (pid %s) is not running any more; the end of its log:\n' "$BENCH" "$EMP_PID"
    tail -n 3 "$LOG" | cut -c 1-300 | sed 's/^/    /'
  fi
}

require_tools wrk redis-server redis-cli curl ss cmake awk ps
((BASH_VERSINFO[0] >= 5)) || die "bash 5 is needed (EPOCHREALTIME)"
bench_init
trap '' PIPE # a gateway with no ready replica closes at once: a write there must not kill us

# ---- helpers ----

# Sleeping without a fork: a read that times out on a FIFO nobody writes to.
mkfifo "$WORK/sleep.fifo"
exec {SLEEP_FD}<>"$WORK/sleep.fifo"
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

# replica_pids COMM: the replicas (processes named COMM) that this emp-server runs, not those of
# anyone else, a line each.
replica_pids() {
  local p
  for p in $(tree_pids "$EMP_PID"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$1" ]] && printf '%s\n' "$p"
  done
  return 0
}

proc_cpu_ticks() { # PID: user + system ticks of that process (all its threads), not its children
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  awk '{ print $12 + $13 }' <<<"${stat##*) }"
}
summary_columns 58 10

# ---- build ----

build_targets emp-server emp emp-testapp
EMP=$BUILD/emp
TESTAPP=$BUILD/tests/apps/emp-testapp
require_binaries "$SERVER_BIN" "$EMP" "$TESTAPP"

# ---- servers ----

step "starting redis-server and emp-server (local backend) in $WORK"
start_redis "$WORK"

GW_MIN=$(free_ports "$GATEWAY_PORTS") || die "no block of $GATEWAY_PORTS free ports for the gateways"
GW_MAX=$((GW_MIN + GATEWAY_PORTS - 1))
LOG=$WORK/emp-server.log
# --log-level info: its access log and "app state changed" lines (ms timestamps) split the times
start_emp_server "$WORK" --gateway-ports "$GW_MIN-$GW_MAX" --stop-grace 2s --ready-timeout 10s --log-level info
EMP_PID=$(cat "$WORK/pid")
EMP_URL=$(cat "$WORK/url")
API_PORT=${EMP_URL##*:}

export EMP_SERVER=$EMP_URL XDG_CONFIG_HOME=$WORK/config
unset EMP_TOKEN
printf '%s\n' "$PASSWORD" | "$EMP" create account --username bench --password-stdin >/dev/null ||
  die "emp create account failed"
printf '%s\n' "$PASSWORD" | "$EMP" login --username bench --password-stdin >/dev/null ||
  die "emp login failed"
TOKEN=$(grep -o '"token": *"[^"]*"' "$XDG_CONFIG_HOME/emp/credentials.json" | sed 's/.*"\([^"]*\)"$/\1/')
[[ -n $TOKEN ]] || die "no token in $XDG_CONFIG_HOME/emp/credentials.json"

# write_spec NAME [COMMAND]: $WORK/NAME.json, the app NAME running COMMAND (a JSON array; the test
# app by default), 1 replica, up to SCALE_TO; a TCP readiness probe
write_spec() {
  printf '{"name":"%s","docker_image":"emp/testapp:bench","stateless":true,"port":8080,"command":%s,"replicas":{"min":1,"max":%d,"initial":1}}\n' \
    "$1" "${2:-[\"$TESTAPP\"]}" "$SCALE_TO" >"$WORK/$1.json"
}
# deploy_app NAME: emp deploy --wait of $WORK/NAME.json; its answer in $WORK/NAME.out
deploy_app() {
  "$EMP" deploy "$WORK/$1.json" --wait --timeout 30s -o json >"$WORK/$1.out" 2>"$WORK/$1.err" ||
    die "emp deploy --wait of $1 failed: $(cat "$WORK/$1.err")"
}

say "   redis-server $(redis-server --version | awk '{ print $3 }' | cut -d= -f2) on a unix socket, no persistence"
say "   emp-server $EMP_URL, --cluster local (default), gateways on 127.0.0.1:$GW_MIN-$GW_MAX, --log-level info"
say "   the app: $TESTAPP, replicas are real processes, readiness is a TCP connect to \$PORT"
say "   $NCPU cores, Linux $(uname -r)"

RUN_MARK=$(cpu_mark)

# The CLI's own cost: one `emp info` (exec, credentials file, one GET), the unit of deploy --wait.
write_spec warmup
deploy_app warmup
cli_ms=()
for ((r = 0; r < 7; r++)); do
  now_us
  a=$NOW_US
  "$EMP" info warmup -o json >/dev/null
  now_us
  cli_ms+=("$(((NOW_US - a) / 1000)).$((((NOW_US - a) % 1000) / 100))")
done
CLI_MS=$(median 1 "${cli_ms[@]}")
"$EMP" remove warmup >/dev/null

# Waits until app NAME is gone from the API (its replicas have exited by then), up to 30 s.
wait_removed() {
  local i
  for ((i = 0; i < 600; i++)); do
    http_get "$API_PORT" "/v1/apps/$1" "$TOKEN"
    [[ $HTTP_STATUS == 404 ]] && return 0
    nap 0.05
  done
  die "app $1 was not removed within 30 s"
}
wait_removed warmup

# ---- 1. deploy-to-serving ----

# probe_gateway PORT OUT: connects to PORT every 2 ms until it answers 200, and writes to OUT when
# the port first accepted a connection and when it first answered 200 (µs since the epoch).
probe_gateway() {
  local port=$1 out=$2 listening=- deadline
  now_us
  deadline=$((NOW_US + 20000000))
  : >"$out.started"
  while ((NOW_US < deadline)); do
    http_get "$port" /
    now_us
    [[ -n $HTTP_STATUS && $listening == - ]] && listening=$NOW_US
    if [[ $HTTP_STATUS == 200 ]]; then
      printf '%s %s\n' "$listening" "$NOW_US" >"$out"
      return 0
    fi
    nap 0.002
  done
  printf '%s -\n' "$listening" >"$out"
}

# The server log's lines since byte OFFSET, as ms after T0_US: the POST /v1/apps answer, and the
# reconciler recording app NAME running (or, with READY, recording READY ready replicas).
log_times() { # OFFSET T0_US NAME [READY]
  tail -c +"$(($1 + 1))" "$LOG" | awk -v t0="$(($2 / 1000))" -v name="$3" -v ready="${4:-}" '
    function rel(line, ms, d) {
      # time=YYYY-MM-DDTHH:MM:SS.mmmZ at the start of every line, UTC like the epoch
      ms = ((substr(line, 17, 2) * 60 + substr(line, 20, 2)) * 60 + substr(line, 23, 2)) * 1000 + substr(line, 26, 3)
      d = ms - t0 % 86400000
      if (d < -43200000) d += 86400000
      return d
    }
    post == "" && /msg=request method=POST path=\/v1\/apps status=2/ { post = rel($0) }
    seen == "" && /msg="app state changed"/ && index($0, " name=" name " ") &&
      (ready == "" ? / to=running / : index($0, " ready=" ready " ")) { seen = rel($0) }
    END { print (post == "" ? "-" : post), (seen == "" ? "-" : seen) }'
}

ms_since() { printf '%s\n' "$((($1 - $2) / 1000))"; } # LATER_US EARLIER_US

# deploy_round NAME PROBE: one deploy --wait of a fresh app and the first request through its
# gateway; appends to the arrays below. PROBE=1 also runs probe_gateway on the predicted port.
d_total=() d_returned=() d_after=() d_post=() d_recorded=() d_attempts=()
p_listening=() p_serving=() p_recorded=() p_returned=() p_total=()
deploy_round() {
  local name=$1 probe=$2 offset t0 t1 t2 address='' port attempts=0 predicted=''
  local prober=
  write_spec "$name"
  offset=$(stat -c %s "$LOG")
  if ((probe)); then
    # no other app holds a gateway port now, so this app gets the lowest one that is free
    predicted=$(ss -Hltn | awk -v lo="$GW_MIN" -v hi="$GW_MAX" '{ n = split($4, a, ":"); p = a[n] + 0
      if (p >= lo && p <= hi) used[p] = 1 } END { for (p = lo; p <= hi; p++) if (!(p in used)) { print p; exit } }')
    rm -f "$WORK/probe-$name" "$WORK/probe-$name.started"
    probe_gateway "$predicted" "$WORK/probe-$name" &
    prober=$!
    PIDS+=("$prober")
    while [[ ! -e $WORK/probe-$name.started ]]; do nap 0.001; done
  fi
  now_us
  t0=$NOW_US
  deploy_app "$name"
  now_us
  t1=$NOW_US
  local out=''
  read -r -d '' out <"$WORK/$name.out" || true # no fork between deploy returning and the request
  [[ $out =~ \"address\":\"([^\"]*)\" ]] && address=${BASH_REMATCH[1]}
  port=${address##*:}
  [[ $port =~ ^[0-9]+$ ]] || die "no address in the answer of emp deploy: $(cat "$WORK/$name.out")"
  while :; do
    attempts=$((attempts + 1))
    http_get "$port" /
    [[ $HTTP_STATUS == 200 ]] && break
    ((attempts < 5000)) || die "the gateway of $name at $address did not answer 200"
    nap 0.001
  done
  now_us
  t2=$NOW_US
  local post recorded
  read -r post recorded < <(log_times "$offset" "$t0" "$name")
  if ((probe)); then
    wait "$prober" || true
    local listening serving
    read -r listening serving <"$WORK/probe-$name"
    if [[ $port == "$predicted" && $serving != - ]]; then
      p_listening+=("$(ms_since "$listening" "$t0")")
      p_serving+=("$(ms_since "$serving" "$t0")")
      p_recorded+=("$recorded")
      p_returned+=("$(ms_since "$t1" "$t0")")
      p_total+=("$(ms_since "$t2" "$t0")")
      printf '   %-8s %8s %8s %10s %10s %9s %9s\n' "$name" "$post" "${p_listening[-1]}" \
        "${p_serving[-1]}" "$recorded" "${p_returned[-1]}" "${p_total[-1]}"
    else
      say "   $name: got port $port, not the predicted $predicted: left out"
    fi
  else
    d_total+=("$(ms_since "$t2" "$t0")")
    d_returned+=("$(ms_since "$t1" "$t0")")
    d_after+=("$(ms_since "$t2" "$t1")")
    d_post+=("$post")
    d_recorded+=("$recorded")
    d_attempts+=("$attempts")
    printf '   %-6s %9s %12s %12s %11s %13s %9s\n' "$(($# > 2 ? $3 : 0))" "${d_total[-1]}" "$post" \
      "$recorded" "${d_returned[-1]}" "${d_after[-1]}" "$attempts"
  fi
  "$EMP" remove "$name" >/dev/null
  wait_removed "$name"
}

step "deploy-to-serving: $DEPLOY_ROUNDS rounds of \`emp deploy APP.json --wait\`, then GET / through the app's address until 200"
say "   (ms from just before emp deploy; each round a fresh app name, removed after the round;"
say "   'POST answered' and 'running recorded' are the server log's times of the POST /v1/apps answer"
say "   and of the reconciler recording the app running; 'first answer' is after deploy returned)"
PHASE=$(cpu_mark)
printf '   %-6s %9s %12s %12s %11s %13s %9s\n' round 'total ms' 'POST answer' 'running rec.' \
  'deploy ret.' 'first answer' attempts
for ((r = 1; r <= DEPLOY_ROUNDS; r++)); do
  deploy_round "deploy-$r" 0 "$r"
done
DEPLOY_OTHER=$(other_pct "$PHASE")
DEPLOY_MED=$(median 0 "${d_total[@]}")
DEPLOY_MAX=$(maximum "${d_total[@]}")
DEPLOY_RET_MED=$(median 0 "${d_returned[@]}")
DEPLOY_AFTER_MED=$(median 0 "${d_after[@]}")
DEPLOY_POST_MED=$(median 0 "${d_post[@]}")
DEPLOY_REC_MED=$(median 0 "${d_recorded[@]}")
say "   median: total $DEPLOY_MED ms (max $DEPLOY_MAX), POST answered $DEPLOY_POST_MED, running recorded $DEPLOY_REC_MED,"
say "   deploy --wait returned $DEPLOY_RET_MED, then the first answer $DEPLOY_AFTER_MED ms later"
say "   so deploy --wait returned $((DEPLOY_RET_MED - DEPLOY_REC_MED)) ms after the app was recorded running: the CLI's wait between polls"
say "   other processes took $DEPLOY_OTHER% of the machine's CPU meanwhile"

if ((PROBE_ROUNDS > 0)); then
  step "where the time goes: $PROBE_ROUNDS more deploys, with a probe connecting to the gateway's port every 2 ms"
  say "   (not part of the figure: the probe takes some CPU; ms from just before emp deploy)"
  printf '   %-8s %8s %8s %10s %10s %9s %9s\n' app 'POST' 'listens' 'serves 200' 'running' 'returned' 'answered'
  for ((r = 1; r <= PROBE_ROUNDS; r++)); do
    deploy_round "probe-$r" 1
  done
  if ((${#p_total[@]} > 0)); then
    PROBE_LISTEN_MED=$(median 0 "${p_listening[@]}")
    PROBE_SERVE_MED=$(median 0 "${p_serving[@]}")
    PROBE_REC_MED=$(median 0 "${p_recorded[@]}")
    PROBE_RET_MED=$(median 0 "${p_returned[@]}")
    say "   median: the gateway listens at $PROBE_LISTEN_MED ms, serves at $PROBE_SERVE_MED, the app is recorded running at"
    say "   $PROBE_REC_MED, deploy --wait returns at $PROBE_RET_MED"
  fi
fi

# ---- 2. scale 1 -> SCALE_TO ----

step "scale 1 -> $SCALE_TO: $SCALE_ROUNDS rounds of \`emp scale APP $SCALE_TO\`, then GET /v1/apps/{id} every ${POLL_S}s until replicas.ready = $SCALE_TO"
write_spec scaled
deploy_app scaled
APP_ID=$(json_str id "$(cat "$WORK/scaled.out")")
GW_ADDRESS=$(json_str address "$(cat "$WORK/scaled.out")")
GW_PORT=${GW_ADDRESS##*:}
[[ -n $APP_ID && $GW_PORT =~ ^[0-9]+$ ]] || die "no id or address for app scaled: $(cat "$WORK/scaled.out")"
say "   app scaled ($APP_ID) at $GW_ADDRESS"
say "   ('scale returned': emp scale exited; 'recorded': the server log's time of the reconciler recording"
say "   $SCALE_TO ready; 'ready': the poll saw it, in an answer that reflects the scale call (observed_generation);"
say "   'distinct': replicas that then answered $((2 * SCALE_TO)) requests through the gateway, one connection each;"
say "   'down': scale back to 1 until 1 replica process is left; 'API ready': what GET then said)"

# app_status: one GET /v1/apps/{id} of app scaled, without forking: sets APP_OBSERVED (its
# observed_generation), APP_DESIRED and APP_READY (empty when the answer lacks them).
app_status() {
  APP_OBSERVED='' APP_DESIRED='' APP_READY=''
  http_get "$API_PORT" "/v1/apps/$APP_ID" "$TOKEN"
  [[ $HTTP_STATUS == 200 ]] || return 0
  [[ $HTTP_BODY =~ \"observed_generation\":([0-9]+) ]] && APP_OBSERVED=${BASH_REMATCH[1]}
  [[ $HTTP_BODY =~ \"desired\":([0-9]+) ]] && APP_DESIRED=${BASH_REMATCH[1]}
  [[ $HTTP_BODY =~ \"ready\":([0-9]+) ]] && APP_READY=${BASH_REMATCH[1]}
  return 0
}
# emp_scale N: emp scale -o json; sets SCALE_GEN, the generation the server gave the change
emp_scale() {
  local out=''
  "$EMP" scale "$APP_ID" "$1" -o json >"$WORK/scale.out" 2>"$WORK/scale.err" ||
    die "emp scale $1 failed: $(cat "$WORK/scale.err")"
  read -r -d '' out <"$WORK/scale.out" || true
  [[ $out =~ \"generation\":([0-9]+) ]] || die "emp scale $1 gave no generation: $out"
  SCALE_GEN=${BASH_REMATCH[1]}
}

PHASE=$(cpu_mark)
printf '   %-6s %14s %9s %8s %9s %8s %10s\n' round 'scale returned' recorded 'ready' distinct 'down ms' 'API ready'
s_total=() s_returned=() s_recorded=() s_down=() s_distinct=()
STALE_ROUNDS=0 STALE_LONG=0
STALE_MS=() STALE_DUE_S=()
for ((r = 1; r <= SCALE_ROUNDS; r++)); do
  offset=$(stat -c %s "$LOG")
  now_us
  t0=$NOW_US
  emp_scale "$SCALE_TO"
  now_us
  t1=$NOW_US
  deadline=$((t0 + 30000000))
  while :; do
    app_status
    # an answer from before the reconciler saw the scale call does not count, whatever it says
    [[ -n $APP_OBSERVED ]] && ((APP_OBSERVED >= SCALE_GEN)) && [[ $APP_READY == "$SCALE_TO" ]] && break
    now_us
    ((NOW_US < deadline)) || die "scaled did not get $SCALE_TO ready replicas in 30 s: $HTTP_BODY"
    nap "$POLL_S"
  done
  now_us
  t2=$NOW_US
  read -r _ recorded < <(log_times "$offset" "$t0" scaled "$SCALE_TO")
  # ready must mean reachable: every replica answers through the gateway
  declare -A seen=()
  for ((k = 0; k < 2 * SCALE_TO; k++)); do
    http_get "$GW_PORT" /
    [[ $HTTP_STATUS == 200 ]] && seen[$(json_str replica "$HTTP_BODY")]=1
  done
  distinct=${#seen[@]}
  unset seen
  now_us
  t3=$NOW_US
  emp_scale 1
  deadline=$((t3 + 30000000))
  while :; do
    app_status
    # the backend's truth: one replica process left, and the reconciler has seen the call
    [[ -n $APP_OBSERVED && $APP_DESIRED == 1 ]] && ((APP_OBSERVED >= SCALE_GEN)) &&
      [[ $(replica_pids emp-testapp) =~ ^[0-9]+$ ]] && break # exactly one pid
    now_us
    ((NOW_US < deadline)) || die "scaled did not get back to 1 replica process in 30 s: $HTTP_BODY"
    nap 0.02
  done
  now_us
  t4=$NOW_US
  # and what the API says then: it should say 1 ready soon; give it 3 s
  api_ready=$APP_READY
  while [[ $APP_READY != 1 ]] && ((NOW_US - t4 < 3000000)); do
    nap "$POLL_S"
    app_status
    now_us
  done
  if [[ $api_ready != 1 ]]; then
    STALE_ROUNDS=$((STALE_ROUNDS + 1))
    if [[ $APP_READY == 1 ]]; then
      STALE_MS+=("$(ms_since "$NOW_US" "$t4")")
      api_ready="$api_ready, 1 after ${STALE_MS[-1]} ms"
    else
      STALE_MS+=(3000)
      STALE_LONG=$((STALE_LONG + 1))
      # when the reconciler means to look again (its schedule in Redis), for the note below
      due=$(rcli "$WORK" ZSCORE emp:recon:due "$APP_ID" 2>/dev/null || true)
      now_us
      [[ $due =~ ^[0-9]+ ]] && STALE_DUE_S+=("$(((BASH_REMATCH[0] - NOW_US / 1000) / 1000))")
      api_ready="$api_ready for > 3 s"
    fi
  fi
  s_total+=("$(ms_since "$t2" "$t0")")
  s_returned+=("$(ms_since "$t1" "$t0")")
  s_recorded+=("$recorded")
  s_distinct+=("$distinct")
  s_down+=("$(ms_since "$t4" "$t3")")
  printf '   %-6s %14s %9s %8s %9s %8s %10s\n' "$r" "${s_returned[-1]}" "$recorded" "${s_total[-1]}" \
    "$distinct/$SCALE_TO" "${s_down[-1]}" "$api_ready"
  nap 0.2
done
SCALE_OTHER=$(other_pct "$PHASE")
SCALE_MED=$(median 0 "${s_total[@]}")
SCALE_MAX=$(maximum "${s_total[@]}")
SCALE_RET_MED=$(median 0 "${s_returned[@]}")
SCALE_REC_MED=$(median 0 "${s_recorded[@]}")
SCALE_DOWN_MED=$(median 0 "${s_down[@]}")
SCALE_DISTINCT_MIN=$(printf '%s\n' "${s_distinct[@]}" | sort -n | awk 'NR == 1')
say "   median: ready after $SCALE_MED ms (max $SCALE_MAX); emp scale returned at $SCALE_RET_MED, recorded at $SCALE_REC_MED"
if ((STALE_ROUNDS > 0)); then
  say "   in $STALE_ROUNDS of $SCALE_ROUNDS rounds GET /v1/apps/{id} still said more than 1 ready once only one replica"
  say "   process was left: the reconciler had recorded a status from before the scale-down took effect."
  if ((STALE_LONG > 0)); then
    say "   NOTE:"
    say "   In $STALE_LONG of them it still did 3 s later; the reconciler's next look at the app was then due in"
    say "   ${STALE_DUE_S[*]:-?} s (its resync), so the backend's notification that the count changed was lost."
  fi
fi
say "   other processes took $SCALE_OTHER% of the machine's CPU meanwhile"

# ---- 3. gateway overhead ----

step "gateway overhead: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency GET /, through the gateway and straight at the one replica"
http_get "$GW_PORT" "/env?name=PORT"
REPLICA_PORT=$(json_str value "$HTTP_BODY")
[[ $REPLICA_PORT =~ ^[0-9]+$ ]] || die "the replica did not say its PORT: $HTTP_STATUS $HTTP_BODY"
http_get "$GW_PORT" /
via_gateway=$(json_int pid "$HTTP_BODY")
http_get "$REPLICA_PORT" /
direct=$(json_int pid "$HTTP_BODY")
[[ -n $direct && $direct == "$via_gateway" ]] ||
  die "port $REPLICA_PORT is not the replica behind the gateway (pid $direct, not $via_gateway)"
REPLICA_PID=$direct
say "   gateway 127.0.0.1:$GW_PORT (a thread of emp-server, pid $EMP_PID) -> replica pid $REPLICA_PID on 127.0.0.1:$REPLICA_PORT"
say "   $ROUNDS rounds each, alternating, after ${WARMUP}s of warm-up each; wrk shares the $NCPU cores with both"

# wrk fails when emp-server, the gateway, dies under it: that is the caller's to report
on_wrk_failure() {
  alive "$EMP_PID" || return 1
  die "wrk failed: $(cat "$WORK/wrk-$1.txt")"
}

# emp_server_died WHEN: true when emp-server is gone, and then CRASHED says when and how (the
# first line of its log that is not one of its own log lines: what glibc or a sanitizer said)
CRASHED=''
emp_server_died() {
  alive "$EMP_PID" && return 1
  local how
  how=$(awk '!/^time=/ && !/^=+$/ && NF { sub(/ on address .*/, ""); print; exit }' "$LOG" | cut -c 1-160)
  CRASHED="$1${how:+: $how}"
  say "   emp-server (pid $EMP_PID) DIED $CRASHED"
  return 0
}

path_row() { printf '   %-6s %-8s %12s %9s %9s %7s %12s %12s %12s\n' "$@"; } # a row of compare_paths' table

# compare_paths RESULT APP CONNECTIONS GATEWAY_PORT REPLICA_PORT REPLICA_PID URL_PATH: wrk with
# CONNECTIONS through the gateway and straight at the replica, ROUNDS alternating rounds after
# WARMUP s of warm-up each; prints a row a round, the medians and the CPU each request cost, and
# fills the associative array RESULT (n/a where there was no round to take a figure from:
# emp-server died, and CRASHED says how).
compare_paths() {
  local -n result=$1
  local app=$2 connections=$3 gw_port=$4 replica_port=$5 replica_pid=$6 url_path=$7
  local r path port name emp0 emp1 app0 app1 requests rps p50 p99 round_errors errors=0 wrk_us app_us emp_us
  local g_rps=() g_p50=() g_p99=() d_rps=() d_p50=() d_p99=()
  local g_wrk=() g_app=() g_emp=() x_wrk=() x_app=() x_emp=()
  local g_p50_med d_p50_med g_wrk_med g_app_med x_wrk_med x_app_med x_emp_med
  result=([g_rps]=n/a [g_p99]=n/a [d_rps]=n/a [d_p99]=n/a [rps_ratio]=n/a [p99_ratio]=n/a
    [cpu_direct]=n/a [cpu_gateway]=n/a [g_emp]=n/a [emp_added]=n/a)
  run_wrk "$app-gateway-warmup" -t"$THREADS" -c"$connections" -d"${WARMUP}s" "http://127.0.0.1:$gw_port$url_path" || true
  emp_server_died "in the warm-up through the gateway" ||
    run_wrk "$app-direct-warmup" -t"$THREADS" -c"$connections" -d"${WARMUP}s" "http://127.0.0.1:$replica_port$url_path" || true
  path_row round path 'requests/s' 'p50 ms' 'p99 ms' errors 'wrk µs/req' 'app µs/req' 'emp µs/req'
  for ((r = 1; r <= ROUNDS && ${#CRASHED} == 0; r++)); do
    for path in gateway direct; do
      if [[ $path == gateway ]]; then port=$gw_port; else port=$replica_port; fi
      name=$app-$path-$r
      emp0=$(proc_cpu_ticks "$EMP_PID")
      app0=$(proc_cpu_ticks "$replica_pid")
      run_wrk "$name" -t"$THREADS" -c"$connections" -d"${DURATION}s" --latency "http://127.0.0.1:$port$url_path" || true
      # a round in which emp-server died does not count: its replica died with it
      emp_server_died "in or right after round $r $path" && break
      emp1=$(proc_cpu_ticks "$EMP_PID")
      app1=$(proc_cpu_ticks "$replica_pid")
      requests=$(wrk_requests "$name")
      rps=$(wrk_rps "$name")
      p50=$(wrk_latency_ms "$name" 50%)
      p99=$(wrk_latency_ms "$name" 99%)
      round_errors=$(wrk_errors "$name")
      errors=$((errors + round_errors))
      # CPU per request, in µs: wrk (client), the replica, and emp-server (the gateway's thread, and
      # the API and reconciler, which are idle here)
      wrk_us=$(calc "1000 * $(cat "$WORK/wrk-$name.cpu") / $requests" 1)
      app_us=$(calc "1000000 * ($app1 - $app0) / $CLK_TCK / $requests" 1)
      emp_us=$(calc "1000000 * ($emp1 - $emp0) / $CLK_TCK / $requests" 1)
      if [[ $path == gateway ]]; then
        g_rps+=("$rps") g_p50+=("$p50") g_p99+=("$p99") g_wrk+=("$wrk_us") g_app+=("$app_us") g_emp+=("$emp_us")
      else
        d_rps+=("$rps") d_p50+=("$p50") d_p99+=("$p99") x_wrk+=("$wrk_us") x_app+=("$app_us") x_emp+=("$emp_us")
      fi
      path_row "$r" "$path" "$rps" "$p50" "$p99" "$round_errors" "$wrk_us" "$app_us" "$emp_us"
    done
  done
  ((${#g_rps[@]} > 0 && ${#d_rps[@]} > 0)) || return 0
  result[g_rps]=$(median 0 "${g_rps[@]}")
  g_p50_med=$(median 3 "${g_p50[@]}")
  result[g_p99]=$(median 3 "${g_p99[@]}")
  result[d_rps]=$(median 0 "${d_rps[@]}")
  d_p50_med=$(median 3 "${d_p50[@]}")
  result[d_p99]=$(median 3 "${d_p99[@]}")
  g_wrk_med=$(median 1 "${g_wrk[@]}") g_app_med=$(median 1 "${g_app[@]}") result[g_emp]=$(median 1 "${g_emp[@]}")
  x_wrk_med=$(median 1 "${x_wrk[@]}") x_app_med=$(median 1 "${x_app[@]}") x_emp_med=$(median 1 "${x_emp[@]}")
  result[emp_added]=$(calc "${result[g_emp]} - $x_emp_med" 1) # what emp-server spends on both paths is not the gateway's
  result[rps_ratio]=$(calc "${result[g_rps]} / ${result[d_rps]}")
  result[p99_ratio]=$(calc "${result[g_p99]} / ${result[d_p99]}")
  path_row median gateway "${result[g_rps]}" "$g_p50_med" "${result[g_p99]}" '' "$g_wrk_med" "$g_app_med" "${result[g_emp]}"
  path_row median direct "${result[d_rps]}" "$d_p50_med" "${result[d_p99]}" '' "$x_wrk_med" "$x_app_med" "$x_emp_med"
  [[ -z $CRASHED ]] || say "   (medians of the ${#g_rps[@]} gateway and ${#d_rps[@]} direct rounds before emp-server died)"
  say "   through the gateway / straight at the replica: requests/s ${result[rps_ratio]}, p99 ${result[p99_ratio]}"
  ((errors == 0)) || say "   NOTE: $errors requests failed (see $WORK/wrk-$app-*.txt): the figures are not comparable"
  # Both runs use all cores, so requests/s is about cores / (CPU per request); a gateway that costs
  # G µs per request on top of C (client and app) allows at most about C / (C + G).
  result[cpu_direct]=$(calc "$x_wrk_med + $x_app_med + $x_emp_med" 1)
  result[cpu_gateway]=$(calc "$g_wrk_med + $g_app_med + ${result[g_emp]}" 1)
  say "   CPU per request: ${result[cpu_direct]} µs straight, ${result[cpu_gateway]} µs through the gateway, of which the gateway"
  say "   (emp-server) ${result[g_emp]} µs; with every core busy that bounds the ratio near $(calc "${result[cpu_direct]} / ${result[cpu_gateway]}")"
}

PHASE=$(cpu_mark)
declare -A TESTAPP_PATHS=() PYTHON_PATHS=()
compare_paths TESTAPP_PATHS testapp "$CONNECTIONS" "$GW_PORT" "$REPLICA_PORT" "$REPLICA_PID" /

if [[ -z $CRASHED ]]; then
  # One connection, one request at a time: the latency the gateway adds, without CPU contention.
  # Its p50 swings with how fast idle threads wake up, so: 3 alternating rounds, medians.
  c1_g=() c1_d=()
  for ((r = 1; r <= 3; r++)); do
    run_wrk "gateway-c1-$r" -t1 -c1 -d2s --latency "http://127.0.0.1:$GW_PORT/" || true
    emp_server_died "in the one-connection run through the gateway" && break
    run_wrk "direct-c1-$r" -t1 -c1 -d2s --latency "http://127.0.0.1:$REPLICA_PORT/"
    c1_g+=("$(wrk_latency_ms "gateway-c1-$r" 50%)")
    c1_d+=("$(wrk_latency_ms "direct-c1-$r" 50%)")
  done
  if ((${#c1_d[@]} > 0)); then
    C1_G=$(median 3 "${c1_g[@]}")
    C1_D=$(median 3 "${c1_d[@]}")
    C1_ADDED_US=$(awk "BEGIN { printf \"%+d\", 1000 * ($C1_G - $C1_D) }")
    say "   one connection (wrk -t1 -c1 -d2s, median of ${#c1_d[@]} alternating rounds): p50 $C1_G ms through the"
    say "   gateway (rounds: ${c1_g[*]}), $C1_D ms straight (${c1_d[*]}): $C1_ADDED_US µs. Where an idle"
    say "   core takes tens of µs to wake up (as in a VM), that swings more than the gateway's share"
  fi
fi

# Context for the ratio, with no target: the gateway's fixed cost per request against an app that
# spends real time on each one. Debian's python3 (not whatever python3 comes first on PATH) serves
# a small file; it speaks HTTP/1.0, so on both paths each request is a connection of its own. It
# listens with a backlog of 5: more connections than that overflow it, and the dropped SYNs, sent
# again 1 s later, turn into p99 and wrk timeouts on both paths, a figure of the app's backlog.
PYTHON=/usr/bin/python3
PY_FILE=hello.txt
PY_CONNECTIONS=4
PY_NOTE="not measured"
if [[ -n $CRASHED ]]; then
  PY_NOTE="not measured: emp-server died"
elif [[ ! -x $PYTHON ]]; then
  PY_NOTE="not measured: no $PYTHON"
else
  step "context: the same with python3 -m http.server, an app that spends real time per request: wrk -c$PY_CONNECTIONS GET /$PY_FILE"
  mkdir -p "$WORK/www"
  printf 'a small file that python3 -m http.server serves for %s\n' "$BENCH" >"$WORK/www/$PY_FILE"
  # shellcheck disable=SC2016 # $PORT is for the replica's shell
  write_spec pyhttp "$(printf '["sh","-c","exec %s -m http.server --bind 127.0.0.1 \\"$PORT\\" --directory \\"%s\\""]' \
    "$PYTHON" "$WORK/www")"
  deploy_app pyhttp
  PY_GW_PORT=$(json_str address "$(cat "$WORK/pyhttp.out")")
  PY_GW_PORT=${PY_GW_PORT##*:}
  PY_PID=$(replica_pids python3)
  [[ $PY_GW_PORT =~ ^[0-9]+$ && $PY_PID =~ ^[0-9]+$ ]] ||
    die "no gateway port or no single python3 replica for app pyhttp: $(cat "$WORK/pyhttp.out")"
  PY_PORT=$(listen_port_of "$PY_PID") || die "the python3 replica (pid $PY_PID) does not listen"
  http_get "$PY_GW_PORT" "/$PY_FILE"
  via_gateway="$HTTP_STATUS $HTTP_BODY"
  http_get "$PY_PORT" "/$PY_FILE"
  [[ $HTTP_STATUS == 200 && "$HTTP_STATUS $HTTP_BODY" == "$via_gateway" ]] ||
    die "the python3 replica and its gateway do not serve the same file: $via_gateway; $HTTP_STATUS $HTTP_BODY"
  say "   gateway 127.0.0.1:$PY_GW_PORT -> replica pid $PY_PID ($PYTHON, HTTP/1.0) on 127.0.0.1:$PY_PORT, a $(wc -c <"$WORK/www/$PY_FILE")-byte file"
  say "   (-c$PY_CONNECTIONS: python3 -m http.server listens with a backlog of 5, and each request is a new connection)"
  compare_paths PYTHON_PATHS python3 "$PY_CONNECTIONS" "$PY_GW_PORT" "$PY_PORT" "$PY_PID" "/$PY_FILE"
  say "   emp-server spends ${PYTHON_PATHS[emp_added]} µs more per request through the gateway than straight (on both, it writes"
  say "   the replica's log line of each request)"
  PY_NOTE="${PYTHON_PATHS[cpu_direct]} µs of CPU per request straight, ${PYTHON_PATHS[emp_added]} µs more in emp-server through the gateway"
  if [[ -z $CRASHED ]]; then
    "$EMP" remove pyhttp >/dev/null
    wait_removed pyhttp
  fi
fi
GATEWAY_OTHER=$(other_pct "$PHASE")
say "   other processes took $GATEWAY_OTHER% of the machine's CPU meanwhile"

# Where the gateway's CPU goes: system calls and context switches per request, and user vs.
# kernel time in emp-server while wrk runs through it.
PERF_NOTE="perf not run (EMP_BENCH_PERF=0)"
PERF_RAN=0
if [[ -n $CRASHED ]]; then
  PERF_NOTE="perf not run: emp-server died"
elif [[ $PERF != 1 ]]; then
  :
elif ! command -v perf >/dev/null 2>&1; then
  PERF_NOTE="perf not run: not installed"
elif ! perf stat -e task-clock,raw_syscalls:sys_enter -p "$EMP_PID" -- sleep 0.1 >/dev/null 2>&1; then
  PERF_NOTE="perf not run: perf stat on emp-server fails here (perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null))"
else
  step "the gateway under perf: wrk -t$THREADS -c$CONNECTIONS -d8s through it, perf stat for 3 s, then perf record for 3 s"
  run_wrk gateway-perf -t"$THREADS" -c"$CONNECTIONS" -d8s "http://127.0.0.1:$GW_PORT/" &
  perf_wrk=$!
  PIDS+=("$perf_wrk")
  sleep 1
  perf stat -x, -e task-clock,raw_syscalls:sys_enter,context-switches -p "$EMP_PID" -o "$WORK/perf-stat.csv" -- sleep 3 \
    >/dev/null 2>&1 || true
  perf record -F 999 -p "$EMP_PID" -o "$WORK/perf.data" -- sleep 3 >/dev/null 2>&1 || true
  wait "$perf_wrk" || true
  if emp_server_died "during the perf run"; then
    PERF_NOTE="perf: emp-server died during the run"
  else
    PERF_RAN=1
  fi
fi
if ((PERF_RAN)); then
  perf_rps=$(wrk_rps gateway-perf)
  requests=$(calc "$perf_rps * 3" 0) # during the 3 s of perf stat
  task_ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$WORK/perf-stat.csv")
  sys=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$WORK/perf-stat.csv")
  cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$WORK/perf-stat.csv")
  if [[ -n $task_ms && -n $sys && -n $cs ]]; then
    PERF_US=$(calc "1000 * $task_ms / $requests" 1)
    PERF_SYS=$(calc "$sys / $requests" 1)
    PERF_CS=$(calc "$cs / $requests" 2)
    say "   $perf_rps requests/s; emp-server: $PERF_US µs of CPU, $PERF_SYS system calls and $PERF_CS context switches per request"
  fi
  if [[ -s $WORK/perf.data ]]; then
    # awk, not head, stops the lists: with SIGPIPE ignored a writer cut off by head complains
    perf report -i "$WORK/perf.data" --sort dso --stdio -q 2>/dev/null |
      awk 'NF >= 2 && $1 ~ /%$/ && ++n <= 5 { printf "   %8s  %s\n", $1, $2 }' >"$WORK/perf-dso.txt" || true
    perf report -i "$WORK/perf.data" --sort dso,sym --stdio -q 2>/dev/null |
      awk 'NF >= 3 && $1 ~ /%$/ && ++n <= 12 { $2 = ""; printf "   %s\n", $0 }' >"$WORK/perf-sym.txt" || true
    KERNEL_PCT=$(awk '$2 == "[kernel.kallsyms]" { sub(/%/, "", $1); print $1 }' "$WORK/perf-dso.txt")
    say "   share of emp-server's samples by binary:"
    cat "$WORK/perf-dso.txt"
    say "   top symbols:"
    cat "$WORK/perf-sym.txt"
  fi
  PERF_NOTE="perf: emp-server ${PERF_US:-?} µs CPU, ${PERF_SYS:-?} syscalls, ${PERF_CS:-?} context switches per request through the gateway; ${KERNEL_PCT:-?}% of its samples in the kernel"
fi

# ---- summary ----

OTHER_PCT=$(other_pct "$RUN_MARK")
now_us
RUN_S=$(calc "($NOW_US - ${RUN_MARK##* }) / 1000000" 0) # the mark ends with its time, in µs
# a warning when the run, or any phase of it, had more than 5 % taken by others
NOISE=$(noise_note "during the ${RUN_S}s run (deploy $DEPLOY_OTHER%, scale $SCALE_OTHER%, gateway $GATEWAY_OTHER%)" \
  "$OTHER_PCT" "$DEPLOY_OTHER" "$SCALE_OTHER" "$GATEWAY_OTHER")

record "deploy-to-serving ms, median of $DEPLOY_ROUNDS" "$DEPLOY_MED" "< $TARGET_DEPLOY_MS" "$(verdict "$DEPLOY_MED < $TARGET_DEPLOY_MS")"
record "deploy-to-serving ms, max" "$DEPLOY_MAX" "< $TARGET_DEPLOY_MS" "$(verdict "$DEPLOY_MAX < $TARGET_DEPLOY_MS")"
record "  POST /v1/apps answered (server log)" "$DEPLOY_POST_MED"
record "  app recorded running (server log)" "$DEPLOY_REC_MED"
record "  emp deploy --wait returned" "$DEPLOY_RET_MED"
record "  then the first answer through the gateway, ms later" "$DEPLOY_AFTER_MED"
if ((${#p_total[@]} > 0)); then
  record "  probe: the gateway listens (median of ${#p_total[@]})" "$PROBE_LISTEN_MED"
  record "  probe: the gateway first answers 200" "$PROBE_SERVE_MED"
fi
record "  one emp CLI call (emp info), ms" "$CLI_MS"
record "scale 1 -> $SCALE_TO ms until all ready, median of $SCALE_ROUNDS" "$SCALE_MED" "< $TARGET_SCALE_MS" "$(verdict "$SCALE_MED < $TARGET_SCALE_MS")"
record "scale 1 -> $SCALE_TO ms, max" "$SCALE_MAX" "< $TARGET_SCALE_MS" "$(verdict "$SCALE_MAX < $TARGET_SCALE_MS")"
record "  emp scale returned" "$SCALE_RET_MED"
record "  $SCALE_TO ready recorded (server log)" "$SCALE_REC_MED"
record "  replicas answering through the gateway then, fewest" "$SCALE_DISTINCT_MIN/$SCALE_TO" "$SCALE_TO/$SCALE_TO" "$(verdict "$SCALE_DISTINCT_MIN == $SCALE_TO")"
record "  scale $SCALE_TO -> 1 ms until one process is left" "$SCALE_DOWN_MED"
record "  scale-downs: API said > 1 ready when 1 process was left" "$STALE_ROUNDS/$SCALE_ROUNDS"
record "  scale-downs: API still said > 1 ready 3 s later" "$STALE_LONG/$SCALE_ROUNDS" "0/$SCALE_ROUNDS" "$(verdict "$STALE_LONG == 0")"
RPS_RATIO=${TESTAPP_PATHS[rps_ratio]}
record "GET / requests/s through the gateway" "${TESTAPP_PATHS[g_rps]}"
record "GET / requests/s straight at the replica" "${TESTAPP_PATHS[d_rps]}"
record "  ratio gateway / direct" "$RPS_RATIO" ">= $TARGET_RPS_RATIO" "$(verdict "$RPS_RATIO >= $TARGET_RPS_RATIO")"
record "  context: same ratio with python3 http.server (no target)" "${PYTHON_PATHS[rps_ratio]:-n/a}"
record "GET / p99 ms through the gateway" "${TESTAPP_PATHS[g_p99]}"
record "GET / p99 ms straight at the replica" "${TESTAPP_PATHS[d_p99]}"
record "  ratio gateway / direct (no target)" "${TESTAPP_PATHS[p99_ratio]}"
record "  CPU µs per request: direct (wrk + replica)" "${TESTAPP_PATHS[cpu_direct]}"
record "  CPU µs per request: gateway (wrk + replica + gateway)" "${TESTAPP_PATHS[cpu_gateway]}"
record "  of which the gateway (emp-server)" "${TESTAPP_PATHS[g_emp]}"
if [[ -n $CRASHED ]]; then
  record "emp-server kept running" no yes MISS
  NOISE="$NOISE
emp-server DIED $CRASHED; the gateway figures are from the rounds before (see README)"
else
  record "emp-server kept running" yes yes pass
fi

print_summary <<EOF
Local backend, the test app (emp-testapp, TCP readiness probe), emp-server --log-level info.
deploy-to-serving: from just before \`emp deploy --wait\` until GET / through the app's gateway
  answers 200, a fresh app each round (ms; its parts are medians too, each from the same start).
scale: from just before \`emp scale APP $SCALE_TO\` until GET /v1/apps/{id} says $SCALE_TO ready (polled every ${POLL_S}s).
gateway: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s GET /, median of $ROUNDS alternating rounds per path, the same
  replica behind the gateway and straight; wrk, gateway and replica share the $NCPU cores.
context (no target): the gateway's fixed cost per request against an app that spends real time
  per request: the same two paths with python3 -m http.server serving a small file, wrk -c$PY_CONNECTIONS
  (it listens with a backlog of 5; HTTP/1.0, a connection a request):
  $PY_NOTE.
$PERF_NOTE.
$NOISE.
EOF
[[ -z $CRASHED ]] # exit 1 when emp-server died: the run is incomplete
