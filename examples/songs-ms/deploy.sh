#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Deploys the six songs-ms services to a running emp-server with the emp CLI, in dependency order
# (an app's ${app:NAME} references must exist first), waits for each to run and prints the
# gateway's address. Log in first (emp login). The services share one JWT secret: $JWT_SECRET, or
# a new random one.
#   deploy.sh                    deploy all six (none of them may exist yet)
#   deploy.sh --remove [--purge] remove all six (--purge: their data too)
#   deploy.sh --print-spec NAME  print the spec that deploy.sh sends for NAME, and deploy nothing
# Environment: EMP (the CLI, default emp on PATH), EMP_SERVER (as for emp), JWT_SECRET,
# DEPLOY_TIMEOUT (how long each app may take to run, default 2m).
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
emp=${EMP:-emp}
order=(users songs playlists auth aggregator gateway)
timeout=${DEPLOY_TIMEOUT:-2m}

die() {
  echo "deploy.sh: $*" >&2
  exit 1
}

# The spec of app $1 as deployed from this checkout: the command runs serve.py from here, not
# from /opt/songs-ms (where the Dockerfile puts it), and every service but the gateway gets the
# shared JWT_SECRET.
spec() {
  /usr/bin/python3 - "$dir" "$1" <<'PY'
import json, os, sys
root, name = sys.argv[1], sys.argv[2]
with open(os.path.join(root, name, "app.json")) as f:
    spec = json.load(f)
spec["command"] = [root + a[len("/opt/songs-ms"):] if a.startswith("/opt/songs-ms/") else a
                   for a in spec["command"]]
if name != "gateway":
    spec["envs"].append({"name": "JWT_SECRET", "value": os.environ["JWT_SECRET"]})
json.dump(spec, sys.stdout, indent=2)
print()
PY
}

need_cli() {
  command -v "$emp" >/dev/null ||
    die "the emp CLI ($emp) is not on PATH: add the build directory to PATH or set EMP"
}

exists() {
  "$emp" info "$1" -o json >/dev/null 2>&1
}

case "${1:-}" in
  --print-spec)
    [[ $# -eq 2 ]] || die "usage: deploy.sh --print-spec NAME"
    [[ -f "$dir/$2/app.json" ]] || die "no service '$2': the services are ${order[*]}"
    export JWT_SECRET=${JWT_SECRET:-"(set JWT_SECRET)"}
    spec "$2"
    exit 0
    ;;
  --remove)
    need_cli
    purge=()
    [[ "${2:-}" == --purge ]] && purge=(--purge)
    "$emp" whoami >/dev/null || die "log in to emp-server first (emp login)"
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
      if exists "${order[i]}"; then
        "$emp" remove "${order[i]}" "${purge[@]}"
      fi
    done
    exit 0
    ;;
  "") ;;
  *) die "unknown option '$1': use no option, --remove [--purge] or --print-spec NAME" ;;
esac

need_cli
"$emp" whoami >/dev/null || die "log in to emp-server first (emp login)"
for name in "${order[@]}"; do
  if exists "$name"; then
    die "an app named $name exists already: run deploy.sh --remove first (the six share a JWT secret)"
  fi
done

if [[ -z "${JWT_SECRET:-}" ]]; then
  JWT_SECRET=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
fi
export JWT_SECRET

for name in "${order[@]}"; do
  echo "deploy.sh: deploying $name" >&2
  spec "$name" | "$emp" deploy - --wait --timeout "$timeout"
done

address=$("$emp" info gateway -o json |
  /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin).get("address") or "")')
[[ -n "$address" ]] || die "the gateway runs but has no address yet: see emp info gateway"
echo "deploy.sh: songs-ms is up; its gateway is http://$address (try: curl http://$address/health)" >&2
echo "http://$address"
