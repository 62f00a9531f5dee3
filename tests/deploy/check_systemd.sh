#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/systemd/emp-server.service: systemd-analyze verify accepts it (with ExecStart pointed at
# the emp-server just built), it has the hardening options the deployment docs promise, and the
# binary it starts takes every option its ExecStart passes.
set -euo pipefail
unit=${1:?usage: check_systemd.sh UNIT EMP_SERVER}
server=${2:?usage: check_systemd.sh UNIT EMP_SERVER}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/local/bin/emp-server|$server|" "$unit" >"$dir/emp-server.service"
if ! out=$(systemd-analyze verify "$dir/emp-server.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-analyze verify complains about $unit:" >&2
  echo "$out" >&2
  exit 1
fi
status=0
for option in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  PrivateDevices=yes CapabilityBoundingSet= RestrictAddressFamilies= SystemCallFilter=@system-service \
  StateDirectory=emp ProtectKernelTunables=yes; do
  if ! grep -q "^$option" "$unit"; then
    echo "$unit: the hardening option $option is missing" >&2
    status=1
  fi
done
# the options of ExecStart must be emp-server's (its --help lists them)
help=$("$server" --help)
while read -r flag; do
  if ! grep -q -- "^  $flag " <<<"$help"; then
    echo "$unit: ExecStart passes $flag, which emp-server does not take" >&2
    status=1
  fi
done < <(sed -n 's/^ExecStart=[^ ]*//p' "$unit" | grep -o -- '--[a-z-]*')
[ "$status" -eq 0 ] && echo "emp-server.service: verified, hardened"
exit "$status"
