# SPDX-License-Identifier: Apache-2.0
"""Prints which (operation, status) pairs of api/openapi.yaml the e2e tests saw, from the files the
test programs wrote to $EMP_E2E_COVERAGE_DIR. When every program named on the command line wrote
its file, fails if an operation of the spec was never answered with a success status."""

import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main(names):
    directory = harness.need_env("EMP_E2E_COVERAGE_DIR")
    seen = collections.Counter()
    found = []
    for name in names:
        path = os.path.join(directory, name + ".json")
        if os.path.exists(path):
            found.append(name)
            with open(path) as f:
                for op, status, n in json.load(f):
                    seen[(op, status)] += n
    listed = list(harness.spec().operations())
    width = max(len(op) for op, _ in listed + list(seen)) + 2
    print(f"{'operation':<{width}} status  responses seen")
    for op, status in listed:
        n = seen.get((op, status), 0)
        print(f"{op:<{width}} {status:>6}  {n if n else '-'}")
    extra = sorted(k for k in seen if k not in set(listed))
    for op, status in extra:
        print(f"{op:<{width}} {status:>6}  {seen[(op, status)]}")
    covered = sum(1 for k in listed if seen.get(k))
    print(f"\n{covered} of {len(listed)} (operation, status) pairs of the spec seen, from "
          f"{', '.join(found) or 'no test program'}")
    missing = sorted(set(names) - set(found))
    if missing:
        print(f"partial run: no coverage from {', '.join(missing)}; not judging completeness")
        return 0
    never = sorted({op for op, _ in listed}
                   - {op for (op, status) in seen if 200 <= status < 300})
    if never:
        print("operations never answered with success by the e2e tests: " + ", ".join(never))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
