# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# bench/lib.sh: what bench/api.sh and bench/local.sh share: messages, the processes they start and
# stop, building, redis-server and emp-server, wrk and its output, arithmetic on figures, the CPU
# that other processes took, and the summary table. Sourced, never run; it assumes set -euo pipefail.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${EMP_BENCH_BUILD:-$ROOT/build-bench}
SERVER_BIN=$BUILD/emp-server
BENCH=bench/${BASH_SOURCE[-1]##*/} # the script that sourced this, for its messages
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
PIDS=()    # every process started here, in order; stopped in reverse on exit
SUMMARY=() # the summary's rows, from record

# ---- messages ----

say() { printf '%s\n' "$*"; }         # TEXT...: a line of output
step() { printf '\n== %s\n' "$*"; }   # TEXT...: the heading of a step
die_note() { :; }                     # what die adds on stderr; a script may redefine it
die() {                               # TEXT...: says why the script cannot go on, and exits 1
  printf '%s: %s\n' "$BENCH" "$*" >&2
  die_note >&2
  exit 1
}
join_words() { # WORD ITEM...: "a", "a WORD b", "a, b WORD c"
  local word=$1 i
  shift
  for ((i = 1; i <= $#; i++)); do
    ((i == 1)) || if ((i == $#)); then printf ' %s ' "$word"; else printf ', '; fi
    printf '%s' "${!i}"
  done
}
require_tools() { # TOOL...: dies unless every one is on PATH
  local tool
  for tool; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/bootstrap"
  done
}

# ---- processes: every one started here is in PIDS, and stopped on exit ----

alive() { # PID: running, and not a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}
stop_pid() { # PID: TERM, up to 15 s to exit, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() { # on exit: stops what PIDS lists, then removes WORK (unless EMP_BENCH_KEEP=1)
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do # the reverse of starting: Redis goes last
    stop_pid "${PIDS[i]}"
  done
  if [[ ${EMP_BENCH_KEEP:-0} == 1 ]]; then
    say "$BENCH: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
bench_init() { # makes WORK, the run's temporary directory, and sets the traps that clean up
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/emp-bench-$(basename "$BENCH" .sh).XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
tree_pids() { # PID: every process below PID, and PID itself
  ps -eo pid=,ppid= | awk -v root="$1" '{ parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q != root && (q in parent) && q > 1) q = parent[q]
          if (q == root) print p } }'
}

# ---- ports ----

listen_port_of() { # PID: the TCP port that PID (started with port 0) listens on, waiting up to 10 s
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
free_ports() { # N: the first of N consecutive ports below the ephemeral range that nothing listens on
  local n=$1 base used p ok low
  low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range)
  used=$(ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un)
  for _ in {1..100}; do
    base=$((20000 + RANDOM % (low - 20000 - n)))
    ok=1
    for ((p = base; p < base + n; p++)); do
      if grep -qx "$p" <<<"$used"; then
        ok=0
        break
      fi
    done
    if ((ok)); then
      printf '%s\n' "$base"
      return 0
    fi
  done
  return 1
}

# ---- building, redis-server and emp-server ----

build_targets() { # TARGET...: builds them in BUILD (unless EMP_BENCH_SKIP_BUILD=1), without the unit tests
  [[ ${EMP_BENCH_SKIP_BUILD:-0} == 1 ]] && return 0
  step "building $(join_words and "$@") in $BUILD"
  # the unit tests are not needed here, and need not build for the benchmark to run
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMP_BUILD_TESTS=OFF \
    >"$WORK/cmake.log" 2>&1 || die "cmake failed: $(tail -n 30 "$WORK/cmake.log")"
  cmake --build "$BUILD" -j2 --target "$@" >>"$WORK/cmake.log" 2>&1 ||
    die "the build failed: $(tail -n 30 "$WORK/cmake.log")"
}
require_binaries() { # PATH...: dies unless every one is an executable
  local bin
  for bin; do
    [[ -x $bin ]] || die "no $(join_words or "$@"): build them first"
  done
}
# HTTP_GET PORT PATH [TOKEN]: one HTTP/1.0 GET to 127.0.0.1:PORT with bash's /dev/tcp (no fork,
# so polling it costs the machine little). Sets HTTP_STATUS (empty: the connection was refused;
# 000: connected, but no HTTP answer) and HTTP_BODY.
# shellcheck disable=SC2034 # HTTP_STATUS and HTTP_BODY are for the scripts that source this
http_get() {
  local resp='' auth=''
  HTTP_STATUS='' HTTP_BODY=''
  [[ -n ${3:-} ]] && auth="Authorization: Bearer $3"$'\r\n'
  {
    HTTP_STATUS=000
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n%s\r\n' "$2" "$1" "$auth" >&0 &&
      IFS= read -r -d '' -t 5 resp
  } 2>/dev/null <>"/dev/tcp/127.0.0.1/$1" || true
  if [[ $resp =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]]; then
    HTTP_STATUS=${BASH_REMATCH[1]}
    HTTP_BODY=${resp#*$'\r\n\r\n'}
  fi
}

rcli() { # DIR ARGS...: redis-cli to the Redis of DIR
  local dir=$1
  shift
  redis-cli -s "$dir/redis.sock" "$@"
}
start_redis() { # DIR: a redis-server on DIR/redis.sock, no persistence, logging to DIR/redis.log
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
start_emp_server() { # DIR ARGS...: a ready emp-server ARGS on the Redis of DIR; writes DIR/pid, DIR/url
  local dir=$1 pid port i
  shift
  "$SERVER_BIN" --listen 127.0.0.1:0 --redis-url "unix://$dir/redis.sock" --state-dir "$dir/state" "$@" \
    >"$dir/emp-server.log" 2>&1 &
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
api() { # DIR METHOD PATH [BODY]: the API of the emp-server of DIR (DIR/url, DIR/token if any);
  # prints the answer's body, fails on a non-2xx status
  local dir=$1 method=$2 path=$3
  local args=(-sS --fail-with-body -X "$method" -H 'Content-Type: application/json')
  [[ -s $dir/token ]] && args+=(-H "Authorization: Bearer $(cat "$dir/token")")
  [[ $# -ge 4 ]] && args+=(--data-binary "$4")
  curl "${args[@]}" "$(cat "$dir/url")$path"
}
json_int() { # NAME TEXT: the first integer value of NAME in TEXT, or empty
  if [[ $2 =~ \"$1\":([0-9]+) ]]; then printf '%s\n' "${BASH_REMATCH[1]}"; fi
}
json_str() { # NAME TEXT: the first string value of NAME in TEXT, or empty
  if [[ $2 =~ \"$1\":\"([^\"]*)\" ]]; then printf '%s\n' "${BASH_REMATCH[1]}"; fi
}

# ---- wrk ----

run_wrk() { # NAME ARGS...: wrk ARGS; its output in $WORK/wrk-NAME.txt, its CPU ms (`times`) in .cpu
  local name=$1
  shift
  (
    wrk "$@" >"$WORK/wrk-$name.txt" 2>&1 || exit 1
    times >"$WORK/wrk-$name.times" # not in a pipeline: that would be another subshell's times
  ) || {
    on_wrk_failure "$name"
    # shellcheck disable=SC2317 # a script may redefine on_wrk_failure to return
    return
  }
  awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60000 + a[2] * 1000 }
    printf "%d\n", n }' "$WORK/wrk-$name.times" >"$WORK/wrk-$name.cpu"
}
# NAME: what run_wrk does, and returns, when wrk fails; a script may redefine it
on_wrk_failure() { die "wrk failed: $(cat "$WORK/wrk-$1.txt")"; }
wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }' "$WORK/wrk-$1.txt"; }  # NAME: requests/s
wrk_requests() { awk '/requests in/ { print $1 }' "$WORK/wrk-$1.txt"; }     # NAME: requests done
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

# ---- figures ----

median() { # DECIMALS NUMBERS...: their median, to DECIMALS places
  local decimals=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v d="$decimals" '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.*f\n", d, m }'
}
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; } # NUMBERS...: the largest
calc() { awk "function max(a, b) { return a > b ? a : b } BEGIN { printf \"%.${2:-2}f\", $1 }"; } # EXPR [DECIMALS]: EXPR (max() too) by awk, to 2 places
verdict() { # a condition on numbers, in awk: pass or MISS; n/a when a number is missing
  if [[ $1 == *n/a* ]]; then
    printf 'n/a'
  elif awk "BEGIN { exit !($1) }"; then printf 'pass'; else printf 'MISS'; fi
}

# ---- the CPU that other processes took ----

# CPU time, in clock ticks, of the whole machine and of this script's processes (itself and every
# process below it, with the children they waited for): the difference is other work, which skews
# every figure, the tail latencies most. Steal time counts as other work too.
now_us() { NOW_US=${EPOCHREALTIME//[!0-9]/}; } # sets NOW_US: the wall clock of `date +%s%N`, without a fork
machine_ticks() { # the machine's CPU ticks so far
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
our_ticks() { # the CPU ticks so far of this script's processes
  local files=() p
  for p in $(tree_pids $$); do files+=("/proc/$p/stat"); done
  # some are gone by now (the pipeline that listed them, for one)
  { cat "${files[@]}" 2>/dev/null || true; } | awk '{ sub(/.*\) /, ""); n += $12 + $13 + $14 + $15 } END { print n + 0 }'
}
cpu_mark() { # prints a mark of now, for other_pct
  local machine ours
  machine=$(machine_ticks)
  ours=$(our_ticks)
  now_us
  printf '%s %s %s\n' "$machine" "$ours" "$NOW_US"
}
other_pct() { # MARK [DECIMALS]: the % of the machine's CPU that other processes took since MARK
  local machine0 ours0 us0 machine ours
  read -r machine0 ours0 us0 <<<"$1"
  machine=$(machine_ticks)
  ours=$(our_ticks)
  now_us
  # tick rounding over many short-lived processes can make a quiet machine look slightly negative
  calc "max(0, 100 * ($machine - $machine0 - ($ours - $ours0)) / ($CLK_TCK * $NCPU * ($NOW_US - $us0) / 1000000))" "${2:-1}"
}
noise_note() { # WHEN PCT [PHASE_PCT...]: the summary's line on that CPU, a warning when any % is above 5
  local when=$1 pct=$2 over='' p
  shift
  for p; do awk "BEGIN { exit !($p > 5) }" && over=1; done
  if [[ -n $over ]]; then
    printf "WARNING: other processes took %s%% of the machine's CPU %s: the figures are skewed" "$pct" "$when"
  else
    printf "Other processes took %s%% of the machine's CPU %s" "$pct" "$when"
  fi
}

# ---- the summary ----

summary_columns() { ROW_FORMAT="%-$1s %$2s  %-8s %s"; } # FIGURE_WIDTH VALUE_WIDTH: of the table's rows
summary_columns 50 12
record() { # FIGURE VALUE [TARGET VERDICT]: a row of the summary
  # shellcheck disable=SC2059 # the format is ours
  SUMMARY+=("$(printf "$ROW_FORMAT" "$1" "$2" "${3:-}" "${4:-}")")
}
cpu_caches() { # the CPU's model and its L2 and L3 caches, as lscpu names them: what ratios move with
  LC_ALL=C lscpu 2>/dev/null | awk -F': *' '
    $1 == "Model name" { name = $2 } $1 == "CPU family" { family = $2 } $1 == "Model" { model = $2 }
    $1 == "L2 cache" { l2 = $2 } $1 == "L3 cache" { l3 = $2 }
    END { printf "%s (family %s, model %s), L2 %s, L3 %s\n", name, family, model, l2, l3 }'
}
print_summary() { # the summary: a title, the run's date, commit and machine, the notes on stdin, the rows
  local title=" summary of $BENCH " rule
  rule=$(printf '%088d' 0 | tr 0 =)
  printf '\n%s%s%s\n' "${rule:0:(88 - ${#title}) / 2}" "$title" "${rule:0:88 - ${#title} - (88 - ${#title}) / 2}"
  say "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), $NCPU cores, Linux $(uname -r)"
  say "$(cpu_caches)"
  cat
  # shellcheck disable=SC2059 # the format is ours
  printf "$ROW_FORMAT\n" figure value target result
  printf '%s\n' "${SUMMARY[@]}"
  say "$rule"
}
