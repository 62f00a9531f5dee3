#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Drives a realistic mix of requests against songs-ms' gateway for DURATION at RATE requests per
# second (loadgen.py: playlists through the aggregator, songs, searches, new songs, logins ...)
# and prints statuses and latencies. The gateway is $GATEWAY_URL, else what `emp info gateway`
# says. Extra options go to loadgen.py (--users N, --workers N ...).
#   load.sh DURATION RATE [OPTION...]      e.g. load.sh 60s 20
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -lt 2 ]]; then
  echo "usage: load.sh DURATION RATE [loadgen.py options]   (e.g. load.sh 60s 20)" >&2
  exit 2
fi
duration=$1
rate=$2
shift 2

url=${GATEWAY_URL:-}
if [[ -z "$url" ]]; then
  address=$("${EMP:-emp}" info gateway -o json |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin).get("address") or "")')
  if [[ -z "$address" ]]; then
    echo "load.sh: the gateway has no address: is songs-ms deployed (deploy.sh) and running?" >&2
    exit 1
  fi
  url="http://$address"
fi
exec /usr/bin/python3 "$dir/loadgen.py" --url "$url" --duration "$duration" --rate "$rate" "$@"
