#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs shellcheck on every shell script in the repository: files ending in .sh and files whose first
# line runs sh or bash, outside build trees and node_modules.
set -euo pipefail
root=${1:?usage: check_shell.sh REPO_ROOT}
cd "$root"
scripts=()
while IFS= read -r -d '' f; do
  rel=${f#./}
  case "$rel" in
    *.sh) scripts+=("$rel") ;;
    *) if head -n 1 "$rel" | grep -Eq '^#!.*\b(ba)?sh\b'; then scripts+=("$rel"); fi ;;
  esac
done < <(find . \( -path './build*' -o -name node_modules -o -name .git -o -name __pycache__ \) -prune \
  -o -type f ! -name '*.py' ! -name '*.c' ! -name '*.h' ! -name '*.json' ! -name '*.yaml' ! -name '*.md' -print0)
if [ "${#scripts[@]}" -lt 5 ]; then
  echo "check_shell.sh: found only ${#scripts[@]} scripts (${scripts[*]}): is $root the repository?" >&2
  exit 1
fi
echo "shellcheck: ${scripts[*]}"
shellcheck --external-sources "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
