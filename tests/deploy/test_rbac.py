# SPDX-License-Identifier: Apache-2.0
"""The ClusterRole of deploy/k8s/40-emp-rbac.yaml against the calls the Kubernetes backend makes:
the real emp-server (--cluster kubernetes) runs against the strict fake API server
(tests/fakes/kube_fake.py) through a developer's whole life cycle of a stateless and a stateful
app (deploy, scale, drift repair, stop, start, remove, remove --purge); every request it sent,
from the fake's log, is turned into the RBAC attributes the API server would check (verb, API
group, resource, subresource, as k8s.io/apiserver's RequestInfoFactory does) and must be allowed
by a rule. Conversely every verb the role grants must have been used, except the few the
deployment docs ask for on top (EXTRA), so the role stays least privilege.
Usage: test_rbac.py [-v] (EMP_SERVER_BIN, EMP_CLI_BIN, EMP_OPENAPI set as for tests/e2e)"""

import json
import os
import sys
import time
import unittest
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))
import harness as h  # noqa: E402
from kube_fake_harness import KubeFake  # noqa: E402

RBAC = os.path.join(ROOT, "deploy", "k8s", "40-emp-rbac.yaml")
# granted although this scenario does not call them: the "pods and their logs read", and
# the PUT of kubernetes.c's apply(), which replaces EMP's own object when its POST answers 409 (the
# object exists, but the informers have not shown it yet: a race no scenario here makes happen on
# purpose). test_update_is_still_a_call_of_the_backend checks that the PUT is still there.
EXTRA = {("", "pods", "get"), ("", "pods/log", "get"), ("apps", "deployments", "update"),
         ("apps", "statefulsets", "update"), ("", "services", "update")}
BACKEND = os.path.join(ROOT, "src", "cluster", "kubernetes")
NO_PROXY = {name: None for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY",
                                    "HTTPS_PROXY", "ALL_PROXY", "KUBECONFIG")}


def request_attributes(method, path, query):
    """(verb, apiGroup, resource[/subresource]) of one resource request, or None for a
    non-resource URL, like k8s.io/apiserver/pkg/endpoints/request.RequestInfoFactory."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    q = urllib.parse.parse_qs(query or "")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "get" if name else ("watch" if q.get("watch", [""])[0] in ("1", "true") else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return verb, group, resource


def load_role():
    with open(RBAC) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    [binding] = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    [account] = [d for d in docs if d["kind"] == "ServiceAccount"]
    return role, binding, account


def granted(role):
    return {(verb, group, resource) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def allows(role, verb, group, resource):
    for rule in role["rules"]:
        if ((group in rule["apiGroups"] or "*" in rule["apiGroups"])
                and (resource in rule["resources"] or "*" in rule["resources"])
                and (verb in rule["verbs"] or "*" in rule["verbs"])):
            return True
    return False


class RbacCoversTheBackend(h.E2ETestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = KubeFake()
        cls.fake.start()
        cls.addClassCleanup(cls.fake.stop)
        cls.fake.config(ready_delay_s=0.05, lb_delay_s=0.05, pv_bind_delay_s=0.02,
                        namespace_delete_delay_s=0.05)
        args = ["--cluster", "kubernetes", "--kube-server", cls.fake.url, "--kube-token-file",
                cls.fake.token_file, "--kube-ca", cls.fake.ready["ca"], "--apps-kafka-address",
                "kafka.emp-system.svc.cluster.local:9092", "--resync", "2s"]
        cls.stack = h.start_stack(cls.addClassCleanup, args, env=NO_PROXY)
        cls.cli, cls.username, _ = h.logged_in_cli(cls.stack, cls.addClassCleanup, "rbac")

    def emp(self, *args):
        result = self.cli.run(*args, timeout=90)
        self.assertEqual(result.code, 0, result)
        return result

    def deploy(self, name, **changes):
        changes.setdefault("command", None)
        path = os.path.join(self.cli.home, f"{name}.json")
        with open(path, "w") as f:
            json.dump(h.app_spec(name, **changes), f)
        self.emp("deploy", path, "--wait", "--timeout", "30s")

    def emp_requests(self):
        status, log = self.fake.request("GET", "/_fake/requests")
        self.assertEqual(status, 200, log)
        return [r for r in log if r.get("user_agent", "").startswith("emp-server/")]

    def test_role_allows_every_call_and_grants_nothing_unused(self):
        role, binding, account = load_role()
        self.assertEqual(binding["roleRef"]["name"], role["metadata"]["name"])
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                                "namespace": account["metadata"]["namespace"]}])

        self.deploy("web")
        self.emp("scale", "web", "3")
        self.emp("stop", "web")
        self.emp("start", "web")
        self.deploy("store", stateless=False)
        self.emp("scale", "store", "3")
        self.emp("remove", "web")
        self.emp("remove", "--purge", "store")
        # a watch is logged when it ends: end them all (emp-server resumes each with a new one)
        self.fake.fault({"type": "expire_watches"})
        h.wait_until(lambda: any("watch=1" in (r.get("query") or "") for r in self.emp_requests()),
                     timeout=20, what="the ended watches in the fake's log")
        time.sleep(0.5)

        seen, refused = set(), []
        for r in self.emp_requests():
            attrs = request_attributes(r["method"], r["path"], r.get("query"))
            self.assertIsNotNone(attrs, f"a non-resource request: {r['method']} {r['path']}")
            seen.add(attrs)
            if not allows(role, *attrs):
                refused.append(f"{r['method']} {r['path']}?{r.get('query', '')} needs {attrs}")
        self.assertEqual(sorted(set(refused)), [], "calls of the backend that the ClusterRole "
                                                   "does not allow: add them to 40-emp-rbac.yaml")
        # the scenario did reach every part of the backend
        for must in [("create", "", "namespaces"), ("list", "apps", "deployments"),
                     ("watch", "", "pods"), ("patch", "apps", "statefulsets/scale"),
                     ("delete", "apps", "deployments"), ("delete", "", "persistentvolumeclaims")]:
            self.assertIn(must, seen)
        unused = sorted(a for a in granted(role) - seen if (a[1], a[2], a[0]) not in EXTRA)
        self.assertEqual(unused, [], "the ClusterRole grants what the backend does not use: remove it")


class StaticChecks(unittest.TestCase):
    def test_every_method_the_backend_uses_has_a_verb_in_the_role(self):
        import re
        methods = set()
        for name in os.listdir(BACKEND):
            if name.endswith(".c"):
                with open(os.path.join(BACKEND, name)) as f:
                    methods |= set(re.findall(r'kube_request\([^,]+,\s*"([A-Z]+)"', f.read()))
        self.assertEqual(methods, {"GET", "POST", "PUT", "PATCH", "DELETE"},
                         "the backend's HTTP methods changed: look at 40-emp-rbac.yaml and EXTRA")
        role, _, _ = load_role()
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        self.assertIn("update", verbs, "PUT needs update")


class AttributesLikeTheApiServer(unittest.TestCase):
    def test_examples(self):
        cases = [
            (("POST", "/api/v1/namespaces", ""), ("create", "", "namespaces")),
            (("GET", "/apis/apps/v1/deployments", "labelSelector=a&limit=500"), ("list", "apps", "deployments")),
            (("GET", "/api/v1/pods", "watch=1&resourceVersion=5"), ("watch", "", "pods")),
            (("PATCH", "/apis/apps/v1/namespaces/emp-a/statefulsets/s/scale", ""),
             ("patch", "apps", "statefulsets/scale")),
            (("GET", "/api/v1/namespaces/emp-a/pods/p/log", ""), ("get", "", "pods/log")),
            (("DELETE", "/api/v1/namespaces/emp-a/persistentvolumeclaims", ""),
             ("deletecollection", "", "persistentvolumeclaims")),
            (("GET", "/api/v1/namespaces/emp-a", ""), ("get", "", "namespaces")),
        ]
        for (method, path, query), want in cases:
            self.assertEqual(request_attributes(method, path, query), want, path)
        role, _, _ = load_role()
        self.assertFalse(allows(role, "get", "", "secrets"))
        self.assertFalse(allows(role, "delete", "", "namespaces"))
        self.assertFalse(allows(role, "create", "", "pods/exec"))


if __name__ == "__main__":
    unittest.main()
