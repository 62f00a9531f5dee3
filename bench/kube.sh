#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/kube.sh: the Kubernetes backend against the fake API server (tests/fakes/kube_fake.py):
# 1,000 apps deployed through the API (the Kubernetes API calls each cost, from the fake's
# /_fake/stats, and the wall time until all run), then steady state at 1,000 and at 10,000 apps:
# over several reconcile passes of every app, the calls the fake sees do not grow with the apps
# (none per app; only the informers' watches). A measurement, not a test: it exits 0 when a target
# is missed (non-zero only if it cannot run). Everything it starts (the fake, redis-server,
# emp-server) listens on loopback or a unix socket in a temporary directory, and is stopped on
# exit. See bench/README.md.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FIRST=${EMP_BENCH_KUBE_APPS:-1000}     # apps deployed and timed
TOTAL=${EMP_BENCH_KUBE_TOTAL:-10000}   # apps in the steady state
RESYNC=${EMP_BENCH_KUBE_RESYNC:-10}    # --resync: seconds between two looks at an app that is as desired
PASSES=${EMP_BENCH_KUBE_PASSES:-3}     # reconcile passes of every app in each steady-state window
WORKERS=${EMP_BENCH_KUBE_WORKERS:-4}   # --reconcile-workers
PER_USER=1000                          # apps per user (--max-apps-per-user)
PASSWORD=bench-password-1
PYTHON=/usr/bin/python3
FAKE_PY=$ROOT/tests/fakes/kube_fake.py
# PRODUCT.md's example, one replica each (10,000 apps are 10,000 pods in the fake)
SPEC_FORMAT='{"name":"%s","docker_image":"fcribeiro/songs_ms:1.0","stateless":true,"port":5000,"envs":[{"name":"DB_HOST","value":"songs-db"}],"quality_metrics":[{"metric":"latency","values":"p95 < 200ms"}],"resources":{"cpu":"250m","memory":"256Mi"},"replicas":{"min":1,"max":10,"initial":1},"health_check":{"path":"/health"}}'

# the issue's targets
TARGET_CALLS_PER_APP=3   # a new app: create Deployment, create Service (+ its namespace, once per user)
TARGET_STEADY_PER_APP=0  # steady state: no call about one app, at any number of apps

require_tools redis-server redis-cli curl ss cmake awk
[[ -x $PYTHON ]] || die "$PYTHON is missing: the fake Kubernetes API server needs Debian's python3"
bench_init

# ---- the fake Kubernetes API server ----

FAKE=$WORK/fake
fake() { # METHOD PATH [BODY]: a request to the fake (its API or its /_fake/ control API)
  local args=(-sS --fail-with-body --cacert "$FAKE/ca.crt" -H "Authorization: Bearer $(cat "$FAKE/token")"
    -X "$1" -H 'Content-Type: application/json')
  [[ $# -ge 3 ]] && args+=(--data-binary "$3")
  curl "${args[@]}" "$(cat "$FAKE/url")$2"
}
pyjson() { # EXPR: EXPR over the JSON document on stdin (as d), printed
  "$PYTHON" -c "import json, sys; d = json.load(sys.stdin); print($1)"
}
start_fake() {
  local i
  mkdir -p "$FAKE"
  printf 'bench-token\n' >"$FAKE/token"
  "$PYTHON" "$FAKE_PY" --state-dir "$FAKE" --token-file "$FAKE/token" --quiet >"$FAKE/fake.log" 2>&1 &
  PIDS+=($!)
  for ((i = 0; i < 200; i++)); do
    [[ -s $FAKE/ready.json ]] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || die "the fake exited: $(cat "$FAKE/fake.log")"
    sleep 0.05
  done
  [[ -s $FAKE/ready.json ]] || die "the fake did not get ready: $(cat "$FAKE/fake.log")"
  pyjson 'd["url"]' <"$FAKE/ready.json" >"$FAKE/url"
}
stats() { fake GET /_fake/stats; } # the fake's request counts

# ---- emp-server and the apps ----

D=$WORK/emp
user_token() { # USER: creates the account (unless it exists), logs in, prints the token
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}" "$(cat "$D/url")/v1/users"
  json_str token "$(api "$D" POST /v1/sessions "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}")"
}
deploy_many() { # FROM TO: POSTs apps FROM..TO-1 (PER_USER to a user) over one kept-alive connection
  local from=$1 to=$2 i user=-1 token='' spec
  : >"$WORK/deploy.curl"
  for ((i = from; i < to; i++)); do
    if ((i / PER_USER != user)); then
      user=$((i / PER_USER))
      token=$(user_token "dev-$user")
      [[ -n $token ]] || die "dev-$user cannot log in"
    fi
    # shellcheck disable=SC2059 # the format is ours
    spec=$(printf "$SPEC_FORMAT" "app-$((i % PER_USER))")
    printf 'next\nurl = "%s/v1/apps"\nrequest = "POST"\nheader = "Content-Type: application/json"\nheader = "Authorization: Bearer %s"\ndata = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
      "$(cat "$D/url")" "$token" "${spec//\"/\\\"}" >>"$WORK/deploy.curl"
  done
  sed -i '1d' "$WORK/deploy.curl" # no "next" before the first
  curl -sS -K "$WORK/deploy.curl" >"$WORK/deploy.codes"
  local bad
  bad=$(grep -cv '^201$' "$WORK/deploy.codes" || true)
  ((bad == 0)) || die "$bad of $((to - from)) deploys were refused: $(sort "$WORK/deploy.codes" | uniq -c)"
}
# the number of apps in Redis whose observed state is STATE
count_state() {
  rcli "$D" EVAL "local n = 0
    for _, id in ipairs(redis.call('ZRANGE', 'emp:apps', 0, -1)) do
      if redis.call('HGET', 'emp:app:' .. id, 'state') == ARGV[1] then n = n + 1 end
    end
    return n" 0 "$1"
}
wait_running() { # N TIMEOUT_S: until N apps run; prints the seconds it took (3 decimals)
  local n=$1 deadline running
  now_us
  local t0=$NOW_US
  deadline=$((t0 + $2 * 1000000))
  while :; do
    running=$(count_state running)
    ((running >= n)) && break
    now_us
    ((NOW_US < deadline)) || die "only $running of $n apps run after $2 s ($(count_state failed) failed): see $D/emp-server.log"
    sleep 0.1
  done
  now_us
  calc "($NOW_US - $t0) / 1000000" 3
}

# Steady state: reconcile passes of every app, and the fake's requests meanwhile.
# NAME: watches the schedule (emp:recon:due) once a second for PASSES * RESYNC seconds; writes
# $WORK/steady-NAME.stats (the fake's stats of the window) and .passes (per app, how many times its
# next look moved, i.e. the reconciler looked at it)
steady_window() {
  local name=$1 seconds=$((PASSES * RESYNC + 2)) i
  fake POST /_fake/stats/reset >/dev/null
  : >"$WORK/steady-$name.due"
  for ((i = 0; i < seconds; i++)); do
    rcli "$D" ZRANGE emp:recon:due 0 -1 WITHSCORES >>"$WORK/steady-$name.due"
    sleep 1
  done
  stats >"$WORK/steady-$name.stats"
  # pairs of lines (id, score): an app reconciled k times in the window shows k + 1 scores
  awk 'NR % 2 { id = $0; next } !seen[id, $0]++ { n[id]++ }
       END { for (id in n) print n[id] - 1 }' "$WORK/steady-$name.due" | sort -n >"$WORK/steady-$name.passes"
}
# NAME: steady_window NAME, then says what it saw; sets STEADY_NAMED (calls about one app),
# STEADY_PASSES (median reconcile passes per app) and STEADY_RSS (emp-server's MiB)
steady_measure() {
  local name=$1
  steady_window "$name"
  STEADY_NAMED=$(per_app_calls "$WORK/steady-$name.stats")
  # shellcheck disable=SC2046 # one count per line, each an argument
  STEADY_PASSES=$(median 0 $(cat "$WORK/steady-$name.passes"))
  say "   passes per app: median $STEADY_PASSES, least $(head -n 1 "$WORK/steady-$name.passes") ($(wc -l <"$WORK/steady-$name.passes") apps)"
  say "   the fake's requests meanwhile: $(verbs "$WORK/steady-$name.stats")"
  STEADY_RSS=$(rss_mib "$EMP_PID")
  say "   emp-server RSS $STEADY_RSS MiB"
}
per_app_calls() { # STATS_FILE: requests that name one object (get, create, update, patch, delete)
  pyjson 'sum(n for v, n in d["by_verb"].items() if v in ("get", "create", "update", "patch", "delete"))' <"$1"
}
verbs() { pyjson '", ".join(f"{k} {v}" for k, v in sorted(d["by_verb"].items())) or "none"' <"$1"; }
rss_mib() { calc "$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status") / 1024" 0; }

summary_columns 56 14

# ---- build and start ----

build_targets emp-server
require_binaries "$SERVER_BIN"

step "starting the fake Kubernetes API server, redis-server and emp-server in $WORK"
start_fake
start_redis "$D"
start_emp_server "$D" --log-level warn --cluster kubernetes --kube-server "$(cat "$FAKE/url")" \
  --kube-token-file "$FAKE/token" --kube-ca "$FAKE/ca.crt" --max-apps-per-user "$PER_USER" \
  --resync "${RESYNC}s" --reconcile-workers "$WORKERS"
EMP_PID=$(cat "$D/pid")
say "   fake: $(cat "$FAKE/url") (tests/fakes/kube_fake.py: its controller makes each pod Ready 0.2 s after creation, load balancers in 0.3 s)"
say "   emp-server: $(cat "$D/url"), --resync ${RESYNC}s, --reconcile-workers $WORKERS, $NCPU cores"
sleep 1
fake POST /_fake/stats/reset >/dev/null
RUN_MARK=$(cpu_mark)

# ---- 1. 1,000 apps through the API ----

step "deploying $FIRST apps through the API ($PER_USER per user), one replica each"
BEFORE=$(stats)
now_us
T0=$NOW_US
deploy_many 0 "$FIRST"
now_us
POSTED_S=$(calc "($NOW_US - $T0) / 1000000" 3)
RUN_S=$(wait_running "$FIRST" 600)
ALL_S=$(calc "$POSTED_S + $RUN_S" 3)
AFTER=$(stats)
printf '%s\n%s\n' "$BEFORE" "$AFTER" >"$WORK/deploy.stats"
"$PYTHON" - "$WORK/deploy.stats" "$FIRST" >"$WORK/deploy.calls" <<'EOF'
import json, sys
before, after = (json.loads(line) for line in open(sys.argv[1]))
apps = int(sys.argv[2])
diff = {k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in after["requests"]}
diff = {k: v for k, v in diff.items() if v}
total = after["total"] - before["total"]
per_app = sum(v for k, v in diff.items() if not k.startswith(("list ", "watch ")))
print(f"{total} {per_app} {per_app / apps:.2f}")
for k, v in sorted(diff.items(), key=lambda kv: -kv[1]):
    print(f"      {k:<28} {v:>6}  ({v / apps:.3f} per app)")
EOF
read -r DEPLOY_TOTAL DEPLOY_NAMED CALLS_PER_APP <"$WORK/deploy.calls"
say "   the POSTs took $POSTED_S s; all $FIRST running $RUN_S s later: $ALL_S s from the first POST"
say "   Kubernetes API requests meanwhile: $DEPLOY_TOTAL, of which $DEPLOY_NAMED about one object: $CALLS_PER_APP per app"
tail -n +2 "$WORK/deploy.calls"
record "deploy $FIRST apps: first POST to all running" "$ALL_S s" "—"
record "Kubernetes API calls per deployed app" "$CALLS_PER_APP" "≤ $TARGET_CALLS_PER_APP" \
  "$(verdict "$CALLS_PER_APP <= $TARGET_CALLS_PER_APP")"

step "steady state with $FIRST apps: $PASSES reconcile passes of each (--resync ${RESYNC}s)"
steady_measure small
SMALL_NAMED=$STEADY_NAMED SMALL_PASSES=$STEADY_PASSES SMALL_RSS=$STEADY_RSS

# ---- 2. 10,000 apps ----

step "deploying $((TOTAL - FIRST)) more apps through the API, to $TOTAL"
now_us
T1=$NOW_US
deploy_many "$FIRST" "$TOTAL"
wait_running "$TOTAL" 1800 >/dev/null
now_us
say "   all $TOTAL running after $(calc "($NOW_US - $T1) / 1000000" 1) s"

step "steady state with $TOTAL apps: $PASSES reconcile passes of each"
sleep 2 # the last deploys' pods settle
steady_measure large
LARGE_NAMED=$STEADY_NAMED LARGE_PASSES=$STEADY_PASSES LARGE_RSS=$STEADY_RSS
record "steady state, $FIRST apps: calls about one app" "$SMALL_NAMED" "$TARGET_STEADY_PER_APP" \
  "$(verdict "$SMALL_NAMED <= $TARGET_STEADY_PER_APP")"
record "steady state, $TOTAL apps: calls about one app" "$LARGE_NAMED" "$TARGET_STEADY_PER_APP" \
  "$(verdict "$LARGE_NAMED <= $TARGET_STEADY_PER_APP")"
record "steady state: all calls, $FIRST / $TOTAL apps" \
  "$(pyjson 'd["total"]' <"$WORK/steady-small.stats") / $(pyjson 'd["total"]' <"$WORK/steady-large.stats")" "equal"
record "reconcile passes per app in each window (median)" "$SMALL_PASSES / $LARGE_PASSES" "≥ $PASSES"
record "emp-server RSS, $FIRST / $TOTAL apps (MiB)" "$SMALL_RSS / $LARGE_RSS" "—"

step "the watches expire (410 Gone): every informer lists again, in pages of 500"
fake POST /_fake/stats/reset >/dev/null
fake POST /_fake/faults '{"type":"expire_watches"}' >/dev/null
sleep 5
stats >"$WORK/relist.stats"
say "   the fake's requests: $(verbs "$WORK/relist.stats") ($(pyjson '", ".join(f"{k} {v}" for k, v in sorted(d["requests"].items()))' <"$WORK/relist.stats"))"
record "relist after 410 at $TOTAL apps: requests" "$(pyjson 'd["total"]' <"$WORK/relist.stats")" "—"

NOISE=$(noise_note "during the run" "$(other_pct "$RUN_MARK")")
print_summary <<EOF
The fake Kubernetes API server (tests/fakes/kube_fake.py) on loopback over HTTPS; emp-server
--resync ${RESYNC}s --reconcile-workers $WORKERS. Calls from the fake's /_fake/stats; "about one
app" counts get, create, update, patch and delete (not list or watch).
$NOISE.
EOF
