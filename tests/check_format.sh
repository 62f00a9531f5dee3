#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fails, listing the files, when a C source differs from what clang-format (with .clang-format)
# writes. Fix with: clang-format -i FILE
set -euo pipefail
cd "$1"
bad=()
while IFS= read -r f; do
  if ! clang-format --style=file "$f" | cmp -s - "$f"; then bad+=("$f"); fi
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find src include tests -name '*.[ch]')
if ((${#bad[@]})); then
  printf 'not formatted (run clang-format -i):\n'; printf '  %s\n' "${bad[@]}"; exit 1
fi
echo "format: ok"
