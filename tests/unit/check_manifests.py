# SPDX-License-Identifier: Apache-2.0
"""Validates what EMP's manifest builders make against the official Kubernetes JSON schemas:
runs test_kube_manifest with EMP_MANIFEST_OUT set, then checks every file it wrote.
Usage: check_manifests.py TEST_BINARY SCHEMA_DIR"""

import json
import os
import subprocess
import sys
import tempfile

import jsonschema

SCHEMAS = {
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("apps/v1", "StatefulSet"): "statefulset-apps-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "Namespace"): "namespace-v1.json",
}


def main():
    binary, schema_dir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([binary], check=True, env=dict(os.environ, EMP_MANIFEST_OUT=out),
                       stdout=subprocess.DEVNULL)
        names = sorted(os.listdir(out))
        if len(names) < 6:
            sys.exit(f"expected the builders' 6 manifests, got {names}")
        failures = 0
        for name in names:
            with open(os.path.join(out, name)) as f:
                doc = json.load(f)
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in SCHEMAS:
                print(f"{name}: no schema for {key}")
                failures += 1
                continue
            with open(os.path.join(schema_dir, SCHEMAS[key])) as f:
                schema = json.load(f)
            errors = list(jsonschema.Draft4Validator(schema).iter_errors(doc))
            for e in errors:
                print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            failures += len(errors)
            print(f"{name}: {key[1]} {'valid' if not errors else 'INVALID'}")
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
