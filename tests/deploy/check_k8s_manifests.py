# SPDX-License-Identifier: Apache-2.0
"""Validates every object in deploy/k8s/*.yaml against the official Kubernetes 1.35 JSON schemas,
loaded the way kube_fake.py loads them (tests/fakes/k8s-schemas/: the standalone-strict files,
and the same transformation of the OpenAPI subset for the kinds without one), then checks what no
schema says: namespaces, that every Service selects a workload's pods and names its ports, and
the probes, users and limits the deployment docs promise.

Kinds whose schema is not in the reference set yet (NO_SCHEMA_YET) are checked in their parts
that are (metadata as ObjectMeta, the CronJob's pod template as PodTemplateSpec) and reported;
any other kind fails. Usage: check_k8s_manifests.py MANIFEST_DIR"""

import glob
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))
import kube_fake  # noqa: E402  (its Schemas is the shared loader)

SCHEMA_KINDS = {("v1", "Namespace"), ("v1", "Service"), ("apps/v1", "Deployment"),
                ("apps/v1", "StatefulSet")}
NO_SCHEMA_YET = {("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                 ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ("batch/v1", "CronJob")}
DEFS = None


def derived(name):
    return kube_fake.openapi_to_standalone(DEFS, name)


def main():
    global DEFS
    schemas = kube_fake.Schemas()
    DEFS = schemas.openapi["definitions"]
    object_meta = jsonschema.Draft4Validator(derived("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"))
    pod_template = jsonschema.Draft4Validator(derived("io.k8s.api.core.v1.PodTemplateSpec"))
    problems, docs = [], []
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((os.path.basename(path), doc))
    if len(docs) < 15:
        sys.exit(f"expected deploy/k8s's 15 or more objects, found {len(docs)}")

    def check(where, validator, obj):
        for e in validator.iter_errors(obj):
            problems.append(f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")

    partial = []
    for name, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        where = f"{name}: {key[1]} {doc.get('metadata', {}).get('name')}"
        if key in SCHEMA_KINDS:
            check(where, schemas.validator(key[1]), doc)
        elif key in NO_SCHEMA_YET:
            check(where + " metadata", object_meta, doc.get("metadata"))
            if key[1] == "CronJob":
                template = doc["spec"]["jobTemplate"]["spec"]["template"]
                check(where + " pod template", pod_template, template)
            partial.append(where)
        else:
            problems.append(f"{where}: no official schema for {key}: add it to tests/fakes/k8s-schemas")
            continue
        namespaced = key[1] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
        if namespaced != (doc["metadata"].get("namespace") == "emp-system"):
            problems.append(f"{where}: must {'' if namespaced else 'not '}be in namespace emp-system")

    workloads = {d["metadata"]["name"]: d for _, d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    for name, doc in docs:
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
            targets = [w for w in workloads.values()
                       if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
            if not targets:
                problems.append(f"{name}: Service {doc['metadata']['name']} selects no workload's pods")
            ports = {p["name"] for w in targets for c in w["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for p in doc["spec"]["ports"]:
                if p["targetPort"] not in ports:
                    problems.append(f"{name}: Service {doc['metadata']['name']} targets port "
                                    f"{p['targetPort']}, which no container names")
    for w in workloads.values():
        spec = w["spec"]["template"]["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{w['metadata']['name']}: must run as non-root")
        for c in spec["containers"]:
            if "limits" not in c.get("resources", {}) or "readinessProbe" not in c:
                problems.append(f"{w['metadata']['name']}: container {c['name']} needs limits and readiness")
    emp = workloads["emp-server"]
    c = emp["spec"]["template"]["spec"]["containers"][0]
    expect = [(emp["spec"]["replicas"], 2), (c["readinessProbe"]["httpGet"]["path"], "/readyz"),
              (c["livenessProbe"]["httpGet"]["path"], "/healthz"),
              (c["securityContext"].get("readOnlyRootFilesystem"), True),
              (emp["spec"]["template"]["spec"].get("serviceAccountName"), "emp-server")]
    for got, want in expect:
        if got != want:
            problems.append(f"emp-server: expected {want!r}, found {got!r}")
    env = {e["name"]: e.get("value") for e in c["env"]}
    if env.get("EMP_APPS_KAFKA_ADDRESS") != "kafka.emp-system.svc.cluster.local:9092":
        problems.append("emp-server: apps' KAFKAADDRESS must be the kafka Service")
    redis = workloads["emp-redis"]["spec"]["template"]["spec"]["containers"][0]["args"]
    if redis[redis.index("--appendonly") + 1] != "yes":
        problems.append("emp-redis: AOF must be on")

    for p in problems:
        print(p)
    print(f"{len(docs)} objects, {len(docs) - len(partial)} validated whole against the official "
          f"schemas; no schema in the reference set yet, checked in part: {', '.join(partial)}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
