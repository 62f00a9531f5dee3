# SPDX-License-Identifier: Apache-2.0
"""Checks kube_fake.py, the strict fake Kubernetes API server, against the reference material.

The reference (tests/fakes/k8s-schemas/: the official JSON schemas of Kubernetes 1.35, the OpenAPI
subset, the kubernetes/api testdata and client-java fixtures, and the Status bodies constructed from
apimachinery's constructors) is what a real API server answers; these tests make sure that the fake
answers the same, refuses what the real server refuses, and that the real kubectl can read from it.
Run with Debian's /usr/bin/python3; one fake serves the whole module, each test in its own namespace.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import kube_fake  # noqa: E402
from kube_fake_harness import KubeFake  # noqa: E402

REF = os.path.join(HERE, "k8s-schemas")
EX = os.path.join(REF, "examples")
KUBECTL = "/usr/bin/kubectl"
FAKE = None


def example(path):
    with open(os.path.join(EX, path)) as f:
        return json.load(f)


def setUpModule():
    global FAKE
    FAKE = KubeFake()  # its request log goes to kube_fake.log in its state directory (KUBE_FAKE_KEEP=1 keeps it)
    FAKE.start()
    FAKE.config(ready_delay_s=0.1, lb_delay_s=0.2, crash_interval_s=0.3, namespace_delete_delay_s=0.1)


def tearDownModule():
    rc = FAKE.stop()
    if os.environ.get("KUBE_FAKE_KEEP"):
        print("kube_fake state and log kept in", FAKE.state_dir, file=sys.stderr)
    else:
        shutil.rmtree(FAKE.state_dir, ignore_errors=True)
    if rc != 0:
        raise AssertionError("kube_fake did not stop cleanly on SIGTERM: %r" % rc)


def strip_server_fields(obj, namespace=None):
    """A fixture object as a client would send it: no status, no server-set metadata."""
    obj = copy.deepcopy(obj)
    md = obj["metadata"]
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp",
              "deletionGracePeriodSeconds"):
        md.pop(k, None)
    if namespace is not None:
        md["namespace"] = namespace
    obj.pop("status", None)
    return obj


def deployment(name, replicas=1, labels=None, image="nginx:1.25", env=None, **spec_extra):
    labels = labels or {"app": name}
    c = {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
    if env:
        c["env"] = env
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [c]}}}
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": dict(labels)}, "spec": spec}


def statefulset(name, replicas=1, claim="data", **spec_extra):
    spec = {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "tier": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "postgres:16",
                                                  "volumeMounts": [{"name": claim, "mountPath": "/var/lib/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": claim, "labels": {"emp.io/volume": "data"}},
                                      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}


def service(name, type_="LoadBalancer", selector=None, ports=None, **spec_extra):
    spec = {"type": type_, "selector": selector or {"app": name}, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}]}
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


class FakeTest(unittest.TestCase):
    ns = None

    def setUp(self):
        FAKE.clear_faults()
        FAKE.clear_violations()
        self.ns = "t-" + self.id().split(".")[-1].replace("_", "-")[:40].rstrip("-").lower()
        st, body = FAKE.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": self.ns}})
        self.assertEqual(st, 201, body)

    def tearDown(self):
        FAKE.clear_faults()
        v = FAKE.violations()
        FAKE.clear_violations()
        self.assertEqual(v, [], "unexpected violations")

    # helpers
    def req(self, method, path, body=None, ct="application/json", expect=None, **kw):
        st, out = FAKE.request(method, path, body, ct, **kw)
        if expect is not None:
            self.assertEqual(st, expect, out)
        return st, out

    def apps(self, plural, name=None, sub=None, ns=None):
        p = "/apis/apps/v1/namespaces/%s/%s" % (ns or self.ns, plural)
        return p + ("/" + name if name else "") + ("/" + sub if sub else "")

    def core(self, plural, name=None, ns=None):
        p = "/api/v1/namespaces/%s/%s" % (ns or self.ns, plural)
        return p + ("/" + name if name else "")

    def expect_violations(self, n, kind=None):
        v = FAKE.violations()
        FAKE.clear_violations()
        self.assertEqual(len(v), n, v)
        if kind:
            self.assertTrue(all(x["kind"] == kind for x in v), v)
        return v

    def pods(self, selector=None):
        q = "?labelSelector=" + selector if selector else ""
        return self.req("GET", self.core("pods") + q, expect=200)[1]["items"]

    def wait_ready(self, plural, name, replicas, timeout=10):
        def ok():
            o = self.req("GET", self.apps(plural, name))[1]
            st = o.get("status") or {}
            if st.get("readyReplicas", 0) == replicas and st.get("replicas", 0) == replicas and \
                    st.get("observedGeneration") == o["metadata"]["generation"]:
                return o
            return None
        return FAKE.wait_for(ok, timeout, what="%s/%s with %d ready replicas" % (plural, name, replicas))


class TestSchemas(unittest.TestCase):
    def test_derived_schemas_are_made_like_the_official_ones(self):
        # The fake derives the Pod and PVC schemas from the OpenAPI subset: the same transformation
        # must give back the six official files exactly.
        with open(kube_fake.OPENAPI_FILE) as f:
            defs = json.load(f)["definitions"]
        for kind, fn in kube_fake.OFFICIAL_SCHEMA_FILES.items():
            name = {"Namespace": "io.k8s.api.core.v1.Namespace", "Service": "io.k8s.api.core.v1.Service",
                    "Deployment": "io.k8s.api.apps.v1.Deployment", "StatefulSet": "io.k8s.api.apps.v1.StatefulSet",
                    "Scale": "io.k8s.api.autoscaling.v1.Scale", "Status": "io.k8s.apimachinery.pkg.apis.meta.v1.Status"}[kind]
            with open(os.path.join(REF, fn)) as f:
                official = json.load(f)
            self.assertEqual(kube_fake.openapi_to_standalone(defs, name), official, fn)

    def test_reference_examples_validate(self):
        s = kube_fake.Schemas()
        for path, kind in [("client-java/deployment.json", "Deployment"), ("client-java/statefulset.json", "StatefulSet"),
                           ("k8s-api-testdata-v1.35.0/apps.v1.Deployment.json", "Deployment"),
                           ("k8s-api-testdata-v1.35.0/apps.v1.StatefulSet.json", "StatefulSet"),
                           ("k8s-api-testdata-v1.35.0/core.v1.Service.json", "Service"),
                           ("k8s-api-testdata-v1.35.0/core.v1.Namespace.json", "Namespace"),
                           ("k8s-api-testdata-v1.35.0/autoscaling.v1.Scale.json", "Scale")] + \
                [("constructed/" + f, "Status") for f in os.listdir(os.path.join(EX, "constructed"))]:
            self.assertEqual([e.message for e in s.errors(kind, example(path))], [], path)
        for pod in example("client-java/pod-list.json")["items"]:
            self.assertEqual([e.message for e in s.errors("Pod", pod)], [])
        bad = example("client-java/deployment.json")
        bad["spec"]["replicaz"] = 3
        self.assertTrue(s.errors("Deployment", bad))
        pod = example("client-java/pod-list.json")["items"][0]
        pod["spec"]["containers"][0]["imagee"] = "x"
        self.assertTrue(s.errors("Pod", pod))


class TestAuthAndTransport(FakeTest):
    def test_401_without_the_token(self):
        for token in (False, "wrong-token"):
            st, body = FAKE.request("GET", "/api/v1/namespaces", token=token)
            self.assertEqual(st, 401)
            self.assertEqual(body, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        st, _ = FAKE.request("GET", "/_fake/stats", token=False)
        self.assertEqual(st, 401)

    def test_token_file_is_reread_and_client_certificates_work(self):
        with open(FAKE.token_file, "w") as f:
            f.write("rotated\n")
        try:
            self.assertEqual(FAKE.request("GET", "/version")[0], 401)
            self.assertEqual(FAKE.request("GET", "/version", token="rotated")[0], 200)
        finally:
            with open(FAKE.token_file, "w") as f:
                f.write(FAKE.token + "\n")
        import http.client
        import ssl
        ctx = ssl.create_default_context(cafile=FAKE.ready["ca"])
        ctx.load_cert_chain(FAKE.ready["client_cert"], FAKE.ready["client_key"])
        c = http.client.HTTPSConnection(FAKE.host, FAKE.port, context=ctx, timeout=10)
        c.request("GET", "/api/v1/namespaces/" + self.ns)
        r = c.getresponse()
        self.assertEqual(r.status, 200, r.read())
        r.read()
        c.close()

    def test_keep_alive_and_unknown_paths(self):
        FAKE.request("GET", "/version")
        sock = FAKE.conn.sock
        st, v = FAKE.request("GET", "/version")
        self.assertIs(FAKE.conn.sock, sock, "the connection was not kept alive")
        self.assertEqual((st, v["major"], v["minor"]), (200, "1", "35"))
        st, body = FAKE.request("GET", "/apis/batch/v1/jobs")
        self.assertEqual((st, body), (404, "404 page not found\n"))
        st, body = FAKE.request("POST", "/apis/apps/v1/deployments", deployment("x"))
        self.assertEqual((st, body["reason"]), (405, "MethodNotAllowed"))
        self.expect_violations(2, "unsupported")


class TestNamespaces(FakeTest):
    def test_create_get_conflict_delete(self):
        st, ns = self.req("GET", "/api/v1/namespaces/" + self.ns, expect=200)
        self.assertEqual(ns["metadata"]["labels"], {"kubernetes.io/metadata.name": self.ns})
        self.assertEqual((ns["spec"], ns["status"]), ({"finalizers": ["kubernetes"]}, {"phase": "Active"}))
        for k in ("uid", "creationTimestamp", "resourceVersion"):
            self.assertIn(k, ns["metadata"])
        self.assertNotIn("generation", ns["metadata"])
        # AlreadyExists, exactly as the constructed reference body (namespace "demo")
        self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}, expect=201)
        st, body = self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        self.assertEqual((st, body), (409, example("constructed/status-409-alreadyexists-namespace.json")))
        # DELETE answers the Namespace, Terminating; a second DELETE is a Conflict; then it is gone
        FAKE.config(namespace_delete_delay_s=0.8)
        try:
            st, body = self.req("DELETE", "/api/v1/namespaces/demo", expect=200)
            self.assertEqual((body["kind"], body["status"]["phase"]), ("Namespace", "Terminating"))
            self.assertIn("deletionTimestamp", body["metadata"])
            st, body = self.req("DELETE", "/api/v1/namespaces/demo")
            self.assertEqual((st, body["reason"], body["message"]), (409, "Conflict", 'Operation cannot be fulfilled on namespaces "demo": '
                                                                     "The system is ensuring all content is removed from this "
                                                                     "namespace.  Upon completion, this namespace will automatically "
                                                                     "be purged by the system."))
            self.assertEqual(self.req("GET", "/api/v1/namespaces/demo")[1]["status"]["phase"], "Terminating")
        finally:
            FAKE.config(namespace_delete_delay_s=0.1)
        FAKE.wait_for(lambda: self.req("GET", "/api/v1/namespaces/demo")[0] == 404, what="namespace demo gone")
        st, body = self.req("GET", "/api/v1/namespaces/demo")
        self.assertEqual(body, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": 'namespaces "demo" not found', "reason": "NotFound",
                                "details": {"name": "demo", "kind": "namespaces"}, "code": 404})
        self.assertEqual(self.req("DELETE", "/api/v1/namespaces/default")[0], 403)

    def test_deleting_a_namespace_deletes_its_content_and_refuses_new_content(self):
        self.req("POST", self.apps("deployments"), deployment("web"), expect=201)
        self.req("POST", self.core("services"), service("web"), expect=201)
        self.wait_ready("deployments", "web", 1)
        FAKE.config(namespace_delete_delay_s=0.8)
        try:
            self.req("DELETE", "/api/v1/namespaces/" + self.ns, expect=200)
            st, body = self.req("POST", self.apps("deployments"), deployment("late"))
            self.assertEqual((st, body["reason"], body["details"]["causes"][0]["reason"]), (403, "Forbidden", "NamespaceTerminating"))
            self.assertEqual(body["message"], 'deployments.apps "late" is forbidden: unable to create new content in namespace %s '
                             "because it is being terminated" % self.ns)
        finally:
            FAKE.config(namespace_delete_delay_s=0.1)
        FAKE.wait_for(lambda: self.req("GET", "/api/v1/namespaces/" + self.ns)[0] == 404, what="namespace gone")
        self.assertEqual(self.req("GET", "/apis/apps/v1/deployments?fieldSelector=metadata.namespace=" + self.ns)[1]["items"], [])
        self.assertEqual(self.req("GET", "/api/v1/pods?fieldSelector=metadata.namespace=" + self.ns)[1]["items"], [])
        st, body = self.req("POST", self.apps("deployments"), deployment("web"))
        self.assertEqual((st, body["message"], body["details"]), (404, 'namespaces "%s" not found' % self.ns,
                                                                  {"name": self.ns, "kind": "namespaces"}))


class TestDeployments(FakeTest):
    def test_crud_with_the_client_java_body(self):
        body = strip_server_fields(example("client-java/deployment.json"), self.ns)
        st, created = self.req("POST", self.apps("deployments"), body, expect=201)
        md = created["metadata"]
        self.assertEqual((md["name"], md["namespace"], md["generation"]), ("foo", self.ns, 1))
        self.assertEqual(created["status"], {})
        self.assertEqual(created["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.31.1")
        self.assertEqual(created["spec"]["strategy"], body["spec"]["strategy"])
        self.wait_ready("deployments", "foo", 3)  # the controller writes status until then (new resourceVersions)
        st, got = self.req("GET", self.apps("deployments", "foo"), expect=200)
        self.assertEqual(got["metadata"]["uid"], md["uid"])
        # a PUT that changes nothing writes nothing
        st, same = self.req("PUT", self.apps("deployments", "foo"), got, expect=200)
        self.assertEqual(same["metadata"]["resourceVersion"], got["metadata"]["resourceVersion"])
        # a PUT that changes the spec bumps generation; the old resourceVersion is then stale
        new = copy.deepcopy(got)
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.36"
        st, upd = self.req("PUT", self.apps("deployments", "foo"), new, expect=200)
        self.assertEqual(upd["metadata"]["generation"], 2)
        self.assertNotEqual(upd["metadata"]["resourceVersion"], got["metadata"]["resourceVersion"])
        st, body = self.req("PUT", self.apps("deployments", "foo"), new)
        self.assertEqual((st, body["reason"]), (409, "Conflict"))
        # without a resourceVersion the update is unconditional
        del new["metadata"]["resourceVersion"]
        new["spec"]["replicas"] = 1
        st, upd = self.req("PUT", self.apps("deployments", "foo"), new, expect=200)
        self.assertEqual(upd["metadata"]["generation"], 3)
        st, lst = self.req("GET", self.apps("deployments"), expect=200)
        self.assertEqual(lst["kind"], "DeploymentList")
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["foo"])
        self.assertNotIn("kind", lst["items"][0])
        st, gone = self.req("DELETE", self.apps("deployments", "foo"), expect=200)
        ref = example("constructed/status-200-delete-success-deployment.json")
        ref["details"].update(name="foo", uid=md["uid"])
        self.assertEqual(gone, ref)
        st, body = self.req("GET", self.apps("deployments", "foo"))
        self.assertEqual((st, body["message"]), (404, 'deployments.apps "foo" not found'))

    def test_status_bodies_match_the_reference(self):
        self.req("POST", self.apps("deployments"), deployment("web"), expect=201)
        st, body = self.req("POST", self.apps("deployments"), deployment("web"))
        self.assertEqual((st, body), (409, example("constructed/status-409-alreadyexists-deployment.json")))
        st, cur = self.req("GET", self.apps("deployments", "web"), expect=200)
        stale = copy.deepcopy(cur)
        self.req("PATCH", self.apps("deployments", "web"), {"metadata": {"annotations": {"x": "1"}}},
                 "application/merge-patch+json", expect=200)
        st, body = self.req("PUT", self.apps("deployments", "web"), stale)
        self.assertEqual((st, body), (409, example("constructed/status-409-conflict-deployment.json")))
        st, body = self.req("GET", self.apps("statefulsets", "db"))
        self.assertEqual((st, body), (404, example("constructed/status-404-notfound-statefulset.json")))
        bad = deployment("Web_App")
        bad["metadata"]["name"] = "Web_App"
        st, body = self.req("POST", self.apps("deployments"), bad)
        self.assertEqual((st, body), (422, example("constructed/status-422-invalid-deployment-name.json")))
        self.expect_violations(1, "invalid")
        st, body = self.req("GET", self.core("pods", "grafana"))
        self.assertEqual((st, body), (404, example("docs/status-404-pods-grafana.json")))
        st, body = self.req("GET", self.core("pods") + "?fieldSelector=metadata.nam%3Dx")
        self.assertEqual((st, body), (400, example("client-java/status-400-badrequest.json")))
        self.expect_violations(1, "bad_request")

    def test_testdata_body_passes_the_schema_but_not_validation(self):
        # kubernetes/api testdata sets every field with filler values: schema-valid, semantically invalid
        body = example("k8s-api-testdata-v1.35.0/apps.v1.Deployment.json")
        body["metadata"]["namespace"] = self.ns
        del body["metadata"]["resourceVersion"]
        st, out = self.req("POST", self.apps("deployments"), body)
        self.assertEqual((st, out["reason"], out["details"]["kind"], out["details"]["group"]), (422, "Invalid", "Deployment", "apps"))
        fields = {c["field"] for c in out["details"]["causes"]}
        self.assertIn("metadata.name", fields)
        self.assertTrue(out["message"].startswith('Deployment.apps "nameValue" is invalid: ['), out["message"])
        self.expect_violations(1, "invalid")
        for path, fixture, kind in [(self.apps("statefulsets"), "apps.v1.StatefulSet.json", "StatefulSet"),
                                    ("/api/v1/namespaces", "core.v1.Namespace.json", "Namespace")]:
            body = example("k8s-api-testdata-v1.35.0/" + fixture)
            body["metadata"]["namespace"] = self.ns
            del body["metadata"]["resourceVersion"]
            st, out = self.req("POST", path, body)
            self.assertEqual((st, out["details"]["kind"], out["details"]["name"]), (422, kind, "nameValue"), out)
            self.assertIn('metadata.finalizers: Invalid value: "finalizersValue": name is neither a standard finalizer name nor is '
                          "it fully qualified", out["message"])
        self.expect_violations(2, "invalid")
        # the testdata Namespace, with a valid name and finalizer, is accepted; the server adds its own
        body = example("k8s-api-testdata-v1.35.0/core.v1.Namespace.json")
        body = strip_server_fields(body)
        body["metadata"].update(name=self.ns + "-td", finalizers=["example.com/keep"], generateName="x-")
        body["metadata"].pop("deletionTimestamp", None)
        body["metadata"]["ownerReferences"] = []
        body["spec"]["finalizers"] = ["example.com/cleanup"]
        st, ns = self.req("POST", "/api/v1/namespaces", body, expect=201)
        self.assertEqual(ns["spec"]["finalizers"], ["example.com/cleanup", "kubernetes"])
        self.assertEqual(ns["status"], {"phase": "Active"})
        self.assertEqual(ns["metadata"]["labels"], {"labelsKey": "labelsValue", "kubernetes.io/metadata.name": self.ns + "-td"})
        self.assertNotIn("ownerReferences", ns["metadata"])
        # the testdata Scale is a valid Scale body once it names the object
        self.req("POST", self.apps("deployments"), deployment("scaled", replicas=3), expect=201)
        body = example("k8s-api-testdata-v1.35.0/autoscaling.v1.Scale.json")
        body["metadata"] = {"name": "scaled", "namespace": self.ns}
        st, sc = self.req("PUT", self.apps("deployments", "scaled", "scale"), body, expect=200)
        self.assertEqual(sc["spec"], {"replicas": body["spec"]["replicas"]})
        self.assertEqual(self.req("GET", self.apps("deployments", "scaled"))[1]["spec"]["replicas"], body["spec"]["replicas"])
        # ...and the server-set resourceVersion is refused on create, as etcd3's store does
        body = strip_server_fields(example("client-java/deployment.json"), self.ns)
        body["metadata"]["resourceVersion"] = "5"
        st, out = self.req("POST", self.apps("deployments"), body)
        self.assertEqual((st, out["message"]), (500, "Internal error occurred: resourceVersion should not be set on objects to be created"))
        self.expect_violations(1)

    def test_schema_violations_are_refused_and_recorded(self):
        cases = []
        d = deployment("a")
        d["spec"]["replicaz"] = 2
        cases.append((d, 400, 'strict decoding error: unknown field "spec.replicaz"'))
        d = deployment("b")
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
        cases.append((d, 400, 'strict decoding error: unknown field "spec.template.spec.containers[0].imagee"'))
        d = deployment("c")
        d["spec"]["replicas"] = "3"
        cases.append((d, 400, None))
        d = deployment("d")
        del d["spec"]["selector"]
        cases.append((d, 422, 'Deployment.apps "d" is invalid: spec.selector: Required value'))
        d = deployment("e")
        d["kind"] = "StatefulSet"
        cases.append((d, 400, None))
        d = deployment("f")
        d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
        cases.append((d, 400, None))
        for body, code, msg in cases:
            st, out = self.req("POST", self.apps("deployments"), body)
            self.assertEqual((st, out["kind"], out["code"]), (code, "Status", code), out)
            if msg:
                self.assertEqual(out["message"], msg)
        v = self.expect_violations(len(cases))
        self.assertEqual({x["kind"] for x in v}, {"schema"})
        self.assertTrue(all(x["body"] for x in v))
        st, lst = self.req("GET", self.apps("deployments"), expect=200)
        self.assertEqual(lst["items"], [])

    def test_validation_messages(self):
        def post(path, body):
            st, out = self.req("POST", path, body)
            self.assertEqual(st, 422, out)
            return out

        out = post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad_NS"}})
        self.assertEqual(out["message"], 'Namespace "Bad_NS" is invalid: metadata.name: Invalid value: "Bad_NS": a lowercase RFC 1123 '
                         "label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
                         "character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
        self.assertEqual(out["details"], {"name": "Bad_NS", "kind": "Namespace", "causes": [
            {"reason": "FieldValueInvalid", "field": "metadata.name", "message": out["message"].split("metadata.name: ", 1)[1]}]})
        out = post(self.core("services"), service("1web"))
        self.assertEqual(out["message"], 'Service "1web" is invalid: metadata.name: Invalid value: "1web": a DNS-1035 label must '
                         "consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an "
                         "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
                         "'[a-z]([-a-z0-9]*[a-z0-9])?')")
        out = post(self.apps("statefulsets"), dict(statefulset("db"), metadata={"name": "db.v1"}))
        self.assertIn('metadata.name: Invalid value: "db.v1": a lowercase RFC 1123 label must consist', out["message"])
        self.req("POST", self.apps("deployments"), dict(deployment("db"), metadata={"name": "db.v1"}), expect=201)
        long = "a" * 64
        out = post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": long}})
        self.assertIn({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": 'Invalid value: "%s": must be no more than 63 characters' % long}, out["details"]["causes"])
        d = deployment("lbl", labels={"app": "lbl", "bad key": "ok", "k": "bad value!"})
        out = post(self.apps("deployments"), d)
        msgs = [c["message"] for c in out["details"]["causes"] if c["field"] == "metadata.labels"]
        self.assertIn('Invalid value: "bad key": name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must '
                      "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                      "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')", msgs)
        self.assertIn('Invalid value: "bad value!": a valid label must be an empty string or consist of alphanumeric characters, '
                      "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                      "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')", msgs)
        self.assertTrue(out["message"].startswith('Deployment.apps "lbl" is invalid: ['))
        d = deployment("sel")
        d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
        out = post(self.apps("deployments"), d)
        self.assertIn('spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match '
                      "template `labels`", out["message"])
        d = deployment("ports")
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 70000}]
        out = post(self.apps("deployments"), d)
        self.assertIn("spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, "
                      "inclusive", out["message"])
        s = service("twoports", ports=[{"port": 80}, {"port": 81}])
        out = post(self.core("services"), s)
        self.assertIn("spec.ports[0].name: Required value", out["message"])
        s = service("np", type_="ClusterIP", ports=[{"port": 80, "nodePort": 30080}])
        out = post(self.core("services"), s)
        self.assertIn("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'", out["message"])
        sts = statefulset("vol", claim="data")
        sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "date"
        out = post(self.apps("statefulsets"), sts)
        self.assertIn('spec.template.spec.containers[0].volumeMounts[0].name: Not found: "date"', out["message"])
        self.expect_violations(10, "invalid")

    def test_namespace_mismatch_and_missing_namespace(self):
        d = deployment("web")
        d["metadata"]["namespace"] = "elsewhere"
        st, out = self.req("POST", self.apps("deployments"), d)
        self.assertEqual((st, out["message"]), (400, "the namespace of the provided object does not match the namespace sent on the "
                                                     "request"))
        self.expect_violations(1)
        st, out = self.req("POST", self.apps("deployments", ns="no-such-ns"), deployment("web"))
        self.assertEqual((st, out["reason"], out["message"]), (404, "NotFound", 'namespaces "no-such-ns" not found'))
        st, out = self.req("PUT", self.apps("deployments", "web"), deployment("web"))
        self.assertEqual((st, out["message"]), (404, 'deployments.apps "web" not found'))
        self.req("POST", self.apps("deployments"), deployment("web"), expect=201)
        st, out = self.req("PUT", self.apps("deployments", "web"), deployment("other"))
        self.assertEqual(st, 400)
        self.expect_violations(1)

    def test_immutable_selector(self):
        self.req("POST", self.apps("deployments"), deployment("web"), expect=201)
        st, out = self.req("PATCH", self.apps("deployments", "web"),
                           {"spec": {"selector": {"matchLabels": {"app": "web", "x": "y"}}, "template": {"metadata": {"labels": {
                               "app": "web", "x": "y"}}}}}, "application/strategic-merge-patch+json")
        self.assertEqual(st, 422)
        self.assertIn("spec.selector: Invalid value: v1.LabelSelector{", out["message"])
        self.assertIn("field is immutable", out["message"])
        self.expect_violations(1, "invalid")


class TestPatch(FakeTest):
    def test_patch_types(self):
        self.req("POST", self.apps("deployments"), deployment("web", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
                 expect=201)
        smp = {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"},
                                                                                     {"name": "C", "value": "4"}]}]}}}}
        st, out = self.req("PATCH", self.apps("deployments", "web"), smp, "application/strategic-merge-patch+json", expect=200)
        c = out["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["env"], [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        self.assertEqual(c["image"], "nginx:1.25")
        self.assertEqual(out["metadata"]["generation"], 2)
        smp = {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}}}}
        st, out = self.req("PATCH", self.apps("deployments", "web"), smp, "application/strategic-merge-patch+json", expect=200)
        self.assertEqual([e["name"] for e in out["spec"]["template"]["spec"]["containers"][0]["env"]], ["B", "C"])
        # a merge patch replaces lists whole
        mp = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
        st, out = self.req("PATCH", self.apps("deployments", "web"), mp, "application/merge-patch+json", expect=200)
        self.assertNotIn("env", out["spec"]["template"]["spec"]["containers"][0])
        self.assertEqual(out["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"], "/dev/termination-log")
        jp = [{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
              {"op": "test", "path": "/metadata/name", "value": "web"}]
        st, out = self.req("PATCH", self.apps("deployments", "web"), jp, "application/json-patch+json", expect=200)
        self.assertEqual((out["spec"]["replicas"], out["metadata"]["labels"]["tier"]), (2, "web"))
        # a JSON patch whose test fails, or that carries a stale resourceVersion
        st, out = self.req("PATCH", self.apps("deployments", "web"), [{"op": "test", "path": "/spec/replicas", "value": 9}],
                           "application/json-patch+json")
        self.assertEqual(st, 422)
        st, out = self.req("PATCH", self.apps("deployments", "web"), {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}},
                           "application/merge-patch+json")
        self.assertEqual((st, out["reason"]), (409, "Conflict"))
        # an unknown field in a patch is refused like one in a body
        st, out = self.req("PATCH", self.apps("deployments", "web"), {"spec": {"replicaz": 3}}, "application/merge-patch+json")
        self.assertEqual((st, out["message"]), (400, 'strict decoding error: unknown field "spec.replicaz"'))
        st, out = self.req("PATCH", self.apps("deployments", "web"), {"spec": {"replicas": 3}}, "application/json")
        self.assertEqual((st, out["reason"], out["message"]), (415, "UnsupportedMediaType",
                                                               "the body of the request was in an unknown format - accepted media "
                                                               "types include: application/json-patch+json, "
                                                               "application/merge-patch+json, application/strategic-merge-patch+json, "
                                                               "application/apply-patch+yaml"))
        st, out = self.req("PATCH", self.apps("deployments", "web") + "?force=true", {"spec": {"replicas": 3}},
                           "application/merge-patch+json")
        self.assertEqual((st, out["message"]), (422, 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified '
                                                     'for non-apply patch'))
        self.expect_violations(4)
        st, out = self.req("PATCH", self.apps("deployments", "nope"), {"spec": {"replicas": 3}}, "application/merge-patch+json")
        self.assertEqual(st, 404)
        # services take patches too
        self.req("POST", self.core("services"), service("web", type_="ClusterIP"), expect=201)
        st, out = self.req("PATCH", self.core("services", "web"), {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
                           "application/strategic-merge-patch+json", expect=200)
        self.assertEqual(out["spec"]["ports"][0]["targetPort"], 9090)
        self.assertEqual(out["spec"]["ports"][0]["name"], "http")

    def test_server_side_apply(self):
        d = deployment("web", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        st, out = self.req("PATCH", self.apps("deployments", "web"), d, "application/apply-patch+yaml")
        self.assertEqual((st, out["message"]), (422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
                                                     'for apply patch'))
        self.expect_violations(1)
        st, out = self.req("PATCH", self.apps("deployments", "web") + "?fieldManager=emp", d, "application/apply-patch+yaml", expect=201)
        self.assertEqual(out["metadata"]["generation"], 1)
        st, out = self.req("PATCH", self.apps("deployments", "web") + "?fieldManager=emp", d, "application/apply-patch+yaml", expect=200)
        self.assertEqual(out["metadata"]["generation"], 1)
        d2 = deployment("web", env=[{"name": "B", "value": "2"}])
        st, out = self.req("PATCH", self.apps("deployments", "web") + "?fieldManager=emp", d2, "application/apply-patch+yaml",
                           expect=200)
        self.assertEqual(out["spec"]["template"]["spec"]["containers"][0]["env"], [{"name": "B", "value": "2"}])
        self.assertEqual(out["metadata"]["generation"], 2)


class TestScale(FakeTest):
    def test_scale_subresource(self):
        self.req("POST", self.apps("deployments"), deployment("web", replicas=1), expect=201)
        dep = self.wait_ready("deployments", "web", 1)
        st, sc = self.req("GET", self.apps("deployments", "web", "scale"), expect=200)
        ref = example("k8s-api-testdata-v1.35.0/autoscaling.v1.Scale.json")
        self.assertEqual((sc["kind"], sc["apiVersion"]), (ref["kind"], ref["apiVersion"]))
        self.assertEqual(sc["spec"], {"replicas": 1})
        self.assertEqual(sc["status"], {"replicas": 1, "selector": "app=web"})
        self.assertEqual(sc["metadata"]["resourceVersion"], dep["metadata"]["resourceVersion"])
        self.assertEqual(sc["metadata"]["uid"], dep["metadata"]["uid"])
        st, sc = self.req("PATCH", self.apps("deployments", "web", "scale"), {"spec": {"replicas": 3}}, "application/merge-patch+json",
                          expect=200)
        self.assertEqual(sc["spec"]["replicas"], 3)
        dep = self.wait_ready("deployments", "web", 3)
        self.assertEqual(dep["metadata"]["generation"], 2)
        self.assertEqual(len(self.pods("app=web")), 3)
        st, sc = self.req("GET", self.apps("deployments", "web", "scale"), expect=200)
        stale = copy.deepcopy(sc)
        sc["spec"]["replicas"] = 0
        st, out = self.req("PUT", self.apps("deployments", "web", "scale"), sc, expect=200)
        self.assertEqual(out["spec"], {})  # replicas is omitempty in autoscaling/v1
        st, out = self.req("PUT", self.apps("deployments", "web", "scale"), stale)
        self.assertEqual((st, out["reason"], out["message"]), (409, "Conflict", 'Operation cannot be fulfilled on deployments.apps "web":'
                                                                                ' ' + kube_fake.OPTIMISTIC_LOCK_MSG))
        FAKE.wait_for(lambda: not self.pods("app=web"), what="pods gone")
        dep = self.req("GET", self.apps("deployments", "web"))[1]
        FAKE.wait_for(lambda: "replicas" not in self.req("GET", self.apps("deployments", "web"))[1]["status"], what="status replicas 0")
        st, out = self.req("PATCH", self.apps("deployments", "web", "scale"), {"spec": {"replicas": -1}}, "application/merge-patch+json")
        self.assertEqual((st, out["message"]), (422, 'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be '
                                                     'greater than or equal to 0'))
        self.expect_violations(1, "invalid")
        # statefulsets have it too, with a JSON patch and a strategic merge patch
        self.req("POST", self.apps("statefulsets"), statefulset("db", replicas=1), expect=201)
        st, out = self.req("PATCH", self.apps("statefulsets", "db", "scale"), [{"op": "replace", "path": "/spec/replicas", "value": 2}],
                           "application/json-patch+json", expect=200)
        self.assertEqual(out["spec"]["replicas"], 2)
        self.wait_ready("statefulsets", "db", 2)
        st, out = self.req("PATCH", self.apps("statefulsets", "db", "scale"), {"spec": {"replicas": 1}},
                           "application/strategic-merge-patch+json", expect=200)
        self.assertEqual(out["status"]["selector"], "app=db")


class TestStatefulSetsServicesClaims(FakeTest):
    def test_statefulset_with_the_client_java_body(self):
        body = strip_server_fields(example("client-java/statefulset.json"), self.ns)
        st, out = self.req("POST", self.apps("statefulsets"), body, expect=201)
        self.assertEqual(out["status"], {"replicas": 0, "availableReplicas": 0})
        self.wait_ready("statefulsets", "foo", 2)
        self.assertEqual(sorted(p["metadata"]["name"] for p in self.pods("app=bar")), ["foo-0", "foo-1"])
        st, out = self.req("DELETE", self.apps("statefulsets", "foo"), expect=200)
        self.assertEqual((out["kind"], out["status"], out["details"]["kind"], out["details"]["group"]),
                         ("Status", "Success", "statefulsets", "apps"))

    def test_claims_are_made_per_replica_and_kept(self):
        self.req("POST", self.apps("statefulsets"), statefulset("db", replicas=2), expect=201)
        sts = self.wait_ready("statefulsets", "db", 2)
        self.assertEqual(sts["status"]["currentRevision"], sts["status"]["updateRevision"])
        pods = {p["metadata"]["name"]: p for p in self.pods("app=db")}
        self.assertEqual(sorted(pods), ["db-0", "db-1"])
        p0 = pods["db-0"]
        self.assertEqual(p0["metadata"]["ownerReferences"][0]["kind"], "StatefulSet")
        self.assertEqual(p0["metadata"]["ownerReferences"][0]["uid"], sts["metadata"]["uid"])
        self.assertEqual(p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-0")
        self.assertEqual(p0["spec"]["volumes"][0], {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}})
        self.assertEqual((p0["spec"]["hostname"], p0["spec"]["subdomain"]), ("db-0", "db"))

        def claims():
            return {c["metadata"]["name"]: c for c in self.req("GET", self.core("persistentvolumeclaims"))[1]["items"]}

        FAKE.wait_for(lambda: len(claims()) == 2 and all(c["status"]["phase"] == "Bound" for c in claims().values()),
                      what="two bound claims")
        c0 = claims()["data-db-0"]
        self.assertEqual(c0["metadata"]["labels"], {"emp.io/volume": "data", "app": "db"})
        self.assertEqual(c0["status"]["capacity"], {"storage": "1Gi"})
        self.assertNotIn("ownerReferences", c0["metadata"])
        # scaling down and deleting keep the claims
        self.req("PATCH", self.apps("statefulsets", "db", "scale"), {"spec": {"replicas": 0}}, "application/merge-patch+json", expect=200)
        FAKE.wait_for(lambda: not self.pods("app=db"), what="sts pods gone")
        self.assertEqual(sorted(claims()), ["data-db-0", "data-db-1"])
        # the claim templates cannot change
        st, out = self.req("PATCH", self.apps("statefulsets", "db"), {"spec": {"volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}]}},
            "application/merge-patch+json")
        self.assertEqual(st, 422)
        self.assertIn("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                      "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden", out["message"])
        self.expect_violations(1, "invalid")
        self.req("DELETE", self.apps("statefulsets", "db"), expect=200)
        time.sleep(0.3)
        self.assertEqual(sorted(claims()), ["data-db-0", "data-db-1"])
        # scaling back up reuses them; only an explicit DELETE removes one
        self.req("POST", self.apps("statefulsets"), statefulset("db", replicas=1), expect=201)
        self.wait_ready("statefulsets", "db", 1)
        self.assertEqual(claims()["data-db-0"]["metadata"]["uid"], c0["metadata"]["uid"])
        st, out = self.req("DELETE", self.core("persistentvolumeclaims", "data-db-1"), expect=200)
        self.assertEqual((out["kind"], out["metadata"]["finalizers"]), ("PersistentVolumeClaim", ["kubernetes.io/pvc-protection"]))
        self.assertIn("deletionTimestamp", out["metadata"])
        FAKE.wait_for(lambda: sorted(claims()) == ["data-db-0"], what="claim data-db-1 gone")
        # a claim in use by a pod stays Terminating until the pod goes
        self.req("DELETE", self.core("persistentvolumeclaims", "data-db-0"), expect=200)
        time.sleep(0.3)
        self.assertIn("deletionTimestamp", claims()["data-db-0"]["metadata"])
        self.req("PATCH", self.apps("statefulsets", "db", "scale"), {"spec": {"replicas": 0}}, "application/merge-patch+json", expect=200)
        FAKE.wait_for(lambda: not claims(), what="claim data-db-0 gone once unused")

    def test_services(self):
        st, svc = self.req("POST", self.core("services"), service("web"), expect=201)
        spec = svc["spec"]
        self.assertTrue(spec["clusterIP"].startswith("10.9"))
        self.assertEqual(spec["clusterIPs"], [spec["clusterIP"]])
        np = spec["ports"][0]["nodePort"]
        self.assertTrue(30000 <= np <= 32767)
        self.assertEqual((spec["ports"][0]["protocol"], spec["sessionAffinity"], spec["externalTrafficPolicy"]), ("TCP", "None", "Cluster"))
        self.assertEqual(svc["status"], {"loadBalancer": {}})
        svc = FAKE.wait_for(lambda: (lambda s: s if s["status"]["loadBalancer"].get("ingress") else None)(
            self.req("GET", self.core("services", "web"))[1]), what="an ingress IP")
        self.assertRegex(svc["status"]["loadBalancer"]["ingress"][0]["ip"], r"^\d+\.\d+\.\d+\.\d+$")
        # a PUT without the allocated values keeps them
        body = service("web")
        body["metadata"]["labels"] = {"emp.io/app-id": "x1"}
        st, upd = self.req("PUT", self.core("services", "web"), body, expect=200)
        self.assertEqual((upd["spec"]["clusterIP"], upd["spec"]["ports"][0]["nodePort"]), (spec["clusterIP"], np))
        self.assertEqual(upd["status"], svc["status"])
        body["spec"]["clusterIP"] = "10.96.0.250"
        st, out = self.req("PUT", self.core("services", "web"), body)
        self.assertEqual(st, 422)
        self.assertIn("may not change once set", out["message"])
        self.expect_violations(1, "invalid")
        st, out = self.req("POST", self.core("services"), service("web2", ports=[{"port": 81, "nodePort": np}]))
        self.assertEqual(st, 422)
        self.assertIn("provided port is already allocated", out["message"])
        self.expect_violations(1, "invalid")
        # headless and ClusterIP services
        st, hs = self.req("POST", self.core("services"), service("db", type_="ClusterIP", clusterIP="None"), expect=201)
        self.assertEqual((hs["spec"]["clusterIP"], hs["spec"]["clusterIPs"]), ("None", ["None"]))
        st, cs = self.req("POST", self.core("services"), service("cip", type_="ClusterIP"), expect=201)
        self.assertNotIn("nodePort", cs["spec"]["ports"][0])
        st, gone = self.req("DELETE", self.core("services", "web"), expect=200)
        self.assertEqual((gone["kind"], gone["metadata"]["name"]), ("Service", "web"))
        self.assertEqual(self.req("GET", self.core("services", "web"))[0], 404)
        # the testdata Service (filler values) passes the schema and fails validation
        body = example("k8s-api-testdata-v1.35.0/core.v1.Service.json")
        body["metadata"]["namespace"] = self.ns
        del body["metadata"]["resourceVersion"]
        st, out = self.req("POST", self.core("services"), body)
        self.assertEqual((st, out["details"]["kind"]), (422, "Service"))
        self.assertIn('spec.type: Unsupported value: "typeValue": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
                      '"NodePort"', out["message"])
        self.expect_violations(1, "invalid")


class TestListAndSelectors(FakeTest):
    def setUp(self):
        super().setUp()
        for name, labels in [("a1", {"app": "a1", "tier": "web", "rank": "1"}), ("a2", {"app": "a2", "tier": "db", "rank": "5"}),
                             ("a3", {"app": "a3", "tier": "web", "env": "prod", "rank": "10"}), ("a4", {"app": "a4"})]:
            self.req("POST", self.apps("deployments"), deployment(name, replicas=0, labels=labels), expect=201)

    def names(self, selector, field="labelSelector"):
        import urllib.parse
        st, out = self.req("GET", self.apps("deployments") + "?%s=%s" % (field, urllib.parse.quote(selector)), expect=200)
        return sorted(i["metadata"]["name"] for i in out["items"])

    def test_label_selector_grammar(self):
        cases = {"tier=web": ["a1", "a3"], "tier==web": ["a1", "a3"], "tier!=web": ["a2", "a4"], "tier in (web,db)": ["a1", "a2", "a3"],
                 "tier notin (web)": ["a2", "a4"], "env": ["a3"], "!env": ["a1", "a2", "a4"], "tier=web,!env": ["a1"],
                 "rank>2": ["a2", "a3"], "rank<5": ["a1"], "tier in (web), rank>1": ["a3"], "": ["a1", "a2", "a3", "a4"],
                 "app in (a1, a4 )": ["a1", "a4"], "tier=": []}
        for sel, want in cases.items():
            self.assertEqual(self.names(sel), want, sel)
        for bad in ("tier=web=x", "tier in (web", "a b", "rank>x", "Bad Key=1", "tier in web"):
            st, out = self.req("GET", self.apps("deployments") + "?labelSelector=" + __import__("urllib.parse").parse.quote(bad))
            self.assertEqual((st, out["reason"]), (400, "BadRequest"), bad)
        self.expect_violations(6, "bad_request")
        self.assertEqual(self.names("metadata.name=a2", "fieldSelector"), ["a2"])
        self.assertEqual(self.names("metadata.name!=a2,metadata.namespace=%s" % self.ns, "fieldSelector"), ["a1", "a3", "a4"])
        # cluster-wide, with the namespace as a field selector
        st, out = self.req("GET", "/apis/apps/v1/deployments?labelSelector=tier%3Dweb&fieldSelector=metadata.namespace%3D" + self.ns,
                           expect=200)
        self.assertEqual(sorted(i["metadata"]["name"] for i in out["items"]), ["a1", "a3"])

    def test_paging(self):
        for i in range(5, 9):
            self.req("POST", self.apps("deployments"), deployment("a%d" % i, replicas=0), expect=201)
        path = self.apps("deployments") + "?limit=3"
        st, p1 = self.req("GET", path, expect=200)
        rv = p1["metadata"]["resourceVersion"]
        self.assertEqual([i["metadata"]["name"] for i in p1["items"]], ["a1", "a2", "a3"])
        self.assertEqual(p1["metadata"]["remainingItemCount"], 5)
        # a change between pages does not show in later pages: they come from the same snapshot
        self.req("POST", self.apps("deployments"), deployment("a9", replicas=0), expect=201)
        self.req("DELETE", self.apps("deployments", "a8"), expect=200)
        st, p2 = self.req("GET", path + "&continue=" + p1["metadata"]["continue"], expect=200)
        self.assertEqual(p2["metadata"]["resourceVersion"], rv)
        self.assertEqual([i["metadata"]["name"] for i in p2["items"]], ["a4", "a5", "a6"])
        st, p3 = self.req("GET", path + "&continue=" + p2["metadata"]["continue"], expect=200)
        self.assertEqual([i["metadata"]["name"] for i in p3["items"]], ["a7", "a8"])
        self.assertNotIn("continue", p3["metadata"])
        # with a selector, pages hold only matches
        st, q = self.req("GET", self.apps("deployments") + "?limit=1&labelSelector=tier%3Dweb", expect=200)
        self.assertEqual(len(q["items"]), 1)
        self.assertNotIn("remainingItemCount", q["metadata"])
        st, q2 = self.req("GET", self.apps("deployments") + "?limit=1&labelSelector=tier%3Dweb&continue=" + q["metadata"]["continue"],
                          expect=200)
        self.assertEqual([i["metadata"]["name"] for i in q["items"] + q2["items"]], ["a1", "a3"])
        # a bad token is a BadRequest; an expired one (compacted) is 410 Expired
        st, out = self.req("GET", path + "&continue=garbage")
        self.assertEqual((st, out["reason"]), (400, "BadRequest"))
        self.expect_violations(1)
        st, p1 = self.req("GET", path, expect=200)
        FAKE.fault({"type": "expire_watches"})
        st, out = self.req("GET", path + "&continue=" + p1["metadata"]["continue"])
        self.assertEqual((st, out["reason"], out["code"]), (410, "Expired", 410))
        self.assertIn("continue", out["metadata"])


class TestWatch(FakeTest):
    def test_watch_resume_bookmarks_and_expiry(self):
        st, lst = self.req("GET", self.apps("deployments"), expect=200)
        rv0 = lst["metadata"]["resourceVersion"]
        self.req("POST", self.apps("deployments"), deployment("w1", replicas=0), expect=201)
        st, d = self.req("PATCH", self.apps("deployments", "w1"), {"metadata": {"labels": {"x": "1"}}}, "application/merge-patch+json",
                         expect=200)
        rv_mid = d["metadata"]["resourceVersion"]
        self.req("DELETE", self.apps("deployments", "w1"), expect=200)
        w = FAKE.watch(self.apps("deployments") + "?watch=1&resourceVersion=%s&timeoutSeconds=1" % rv0)
        self.assertEqual((w.status, w.headers["Transfer-Encoding"]), (200, "chunked"))
        evs = w.events_until(lambda e: e["type"] == "DELETED")
        w.close()
        types = [e["type"] for e in evs]
        self.assertEqual((types[0], types[-1], set(types[1:-1])), ("ADDED", "DELETED", {"MODIFIED"}), types)
        self.assertIn("1", [e["object"]["metadata"].get("labels", {}).get("x") for e in evs])
        self.assertEqual(evs[0]["object"]["kind"], "Deployment")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        self.assertEqual(rvs, sorted(rvs))
        # resuming from the middle replays only what came after
        w = FAKE.watch(self.apps("deployments") + "?watch=true&resourceVersion=%s&timeoutSeconds=1" % rv_mid)
        evs2 = w.events_until(lambda e: e["type"] == "DELETED")
        w.close()
        self.assertEqual(evs2[-1]["type"], "DELETED")
        self.assertTrue(all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv_mid) for e in evs2))
        # without a resourceVersion: the current objects as ADDED, then changes; bookmarks; the timeout ends it
        self.req("POST", self.apps("deployments"), deployment("w2", replicas=0), expect=201)
        FAKE.config(bookmark_interval_s=0.3)
        try:
            w = FAKE.watch(self.apps("deployments") + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
            first = w.next_event()
            self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "w2"))
            t0 = time.time()
            rest = w.events_until(lambda e: False)
            self.assertLess(time.time() - t0, 3)
            self.assertIn("BOOKMARK", [e["type"] for e in rest])
            bm = [e for e in rest if e["type"] == "BOOKMARK"][0]["object"]
            self.assertEqual(set(bm["metadata"]), {"resourceVersion"})
            w.close()
        finally:
            FAKE.config(bookmark_interval_s=5.0)
        # an open watch ends with a 410 ERROR event when the fault expires watches
        w = FAKE.watch("/apis/apps/v1/deployments?watch=1&resourceVersion=%s" % self.req("GET", "/apis/apps/v1/deployments")[1]
                       ["metadata"]["resourceVersion"])
        time.sleep(0.1)
        self.assertGreaterEqual(FAKE.stats()["watches_open"], 1)
        FAKE.fault({"type": "expire_watches"})
        ev = w.next_event()
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual((ev["object"]["kind"], ev["object"]["code"], ev["object"]["reason"]), ("Status", 410, "Expired"))
        self.assertIsNone(w.next_event())
        w.close()
        # ...and resuming from before the expiry is 410 too
        w = FAKE.watch(self.apps("deployments") + "?watch=1&resourceVersion=%s" % rv0)
        ev = w.next_event()
        self.assertEqual((ev["type"], ev["object"]["code"]), ("ERROR", 410))
        self.assertRegex(ev["object"]["message"], r"^too old resource version: \d+ \(\d+\)$")
        w.close()

    def test_watch_with_a_label_selector_and_pods(self):
        st, lst = self.req("GET", "/api/v1/pods?labelSelector=app%3Dsel", expect=200)
        w = FAKE.watch("/api/v1/pods?watch=1&labelSelector=app%%3Dsel&resourceVersion=%s&timeoutSeconds=5" %
                       lst["metadata"]["resourceVersion"])
        self.req("POST", self.apps("deployments"), deployment("sel", replicas=1), expect=201)
        evs = w.events_until(lambda e: e["type"] == "MODIFIED" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in e["object"]["status"].get("conditions", [])))
        self.assertEqual(evs[0]["type"], "ADDED")
        self.assertEqual(evs[-1]["object"]["status"]["phase"], "Running")
        self.req("PATCH", self.apps("deployments", "sel", "scale"), {"spec": {"replicas": 0}}, "application/merge-patch+json",
                 expect=200)
        evs = w.events_until(lambda e: e["type"] == "DELETED")
        self.assertEqual(evs[-1]["type"], "DELETED")
        w.close()
        # a modification that makes an object stop matching is a DELETED for that watch
        self.req("POST", self.apps("deployments"), deployment("lab", replicas=0, labels={"app": "lab", "keep": "yes"}), expect=201)
        self.wait_ready("deployments", "lab", 0)
        st, lst = self.req("GET", self.apps("deployments"), expect=200)
        w = FAKE.watch(self.apps("deployments") + "?watch=1&labelSelector=keep%%3Dyes&resourceVersion=%s&timeoutSeconds=3"
                       % lst["metadata"]["resourceVersion"])
        self.req("PATCH", self.apps("deployments", "lab"), {"metadata": {"labels": {"keep": None}}}, "application/merge-patch+json",
                 expect=200)
        ev = w.next_event()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("DELETED", "lab"))
        w.close()


class TestController(FakeTest):
    def test_deployment_pods_status_rollout_and_deletion(self):
        self.req("POST", self.apps("deployments"), deployment("web", replicas=2), expect=201)
        dep = self.wait_ready("deployments", "web", 2)
        st = dep["status"]
        self.assertEqual((st["updatedReplicas"], st["availableReplicas"], st["observedGeneration"]), (2, 2, 1))
        conds = {c["type"]: c for c in st["conditions"]}
        self.assertEqual((conds["Available"]["status"], conds["Available"]["reason"]), ("True", "MinimumReplicasAvailable"))
        self.assertEqual((conds["Progressing"]["status"], conds["Progressing"]["reason"]), ("True", "NewReplicaSetAvailable"))
        pods = self.pods("app=web")
        self.assertEqual(len(pods), 2)
        h = pods[0]["metadata"]["labels"]["pod-template-hash"]
        for p in pods:
            self.assertRegex(p["metadata"]["name"], r"^web-%s-[bcdfghjklmnpqrstvwxz2456789]{5}$" % h)
            self.assertEqual(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet")
            self.assertEqual(p["metadata"]["ownerReferences"][0]["name"], "web-" + h)
            self.assertEqual(p["status"]["phase"], "Running")
            self.assertTrue(p["status"]["containerStatuses"][0]["ready"])
            self.assertTrue(p["spec"]["nodeName"])
        # a template change rolls out: new hash, old pods go, generation observed
        self.req("PATCH", self.apps("deployments", "web"), {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.27"}]}}}}, "application/strategic-merge-patch+json", expect=200)

        def rolled():
            ps = self.pods("app=web")
            return len(ps) == 2 and all(p["metadata"]["labels"]["pod-template-hash"] != h for p in ps) and \
                all(p["status"]["phase"] == "Running" for p in ps)

        FAKE.wait_for(rolled, what="rollout")
        dep = self.wait_ready("deployments", "web", 2)
        self.assertEqual(dep["status"]["observedGeneration"], 2)
        # deleting the deployment deletes its pods
        self.req("DELETE", self.apps("deployments", "web"), expect=200)
        FAKE.wait_for(lambda: not self.pods("app=web"), what="pods deleted")
        # foreground deletion: the object stays until its pods are gone
        self.req("POST", self.apps("deployments"), deployment("fg", replicas=1), expect=201)
        self.wait_ready("deployments", "fg", 1)
        st, out = self.req("DELETE", self.apps("deployments", "fg") + "?propagationPolicy=Foreground", expect=200)
        self.assertEqual((out["kind"], out["metadata"]["finalizers"]), ("Deployment", ["foregroundDeletion"]))
        FAKE.wait_for(lambda: self.req("GET", self.apps("deployments", "fg"))[0] == 404, what="foreground deletion")

    def test_progress_deadline(self):
        FAKE.fault({"type": "image_pull", "namespace": self.ns})
        self.req("POST", self.apps("deployments"), deployment("slow", replicas=1, progressDeadlineSeconds=1), expect=201)

        def exceeded():
            d = self.req("GET", self.apps("deployments", "slow"))[1]
            c = {c["type"]: c for c in d["status"].get("conditions", [])}
            return c.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" and d
        d = FAKE.wait_for(exceeded, timeout=5, what="ProgressDeadlineExceeded")
        c = {c["type"]: c for c in d["status"]["conditions"]}
        self.assertEqual((c["Progressing"]["status"], c["Available"]["status"]), ("False", "False"))
        self.assertEqual(d["status"]["unavailableReplicas"], 1)


class TestFaults(FakeTest):
    def container_status(self, app):
        ps = self.pods("app=" + app)
        return ps[0]["status"] if ps else {}

    def test_pod_faults_and_lifting(self):
        FAKE.fault({"type": "image_pull", "namespace": self.ns, "name": "img"})
        FAKE.fault({"type": "unschedulable", "namespace": self.ns, "name": "big"})
        FAKE.fault({"type": "crash_loop", "namespace": self.ns, "name": "crash"})
        FAKE.fault({"type": "oom", "namespace": self.ns, "name": "oom"})
        for name in ("img", "big", "crash", "oom", "fine"):
            self.req("POST", self.apps("deployments"), deployment(name, image="registry.example/%s:1" % name), expect=201)
        self.wait_ready("deployments", "fine", 1)

        def waiting(app, reason):
            st = self.container_status(app)
            for cs in st.get("containerStatuses", []):
                if (cs.get("state", {}).get("waiting") or {}).get("reason") == reason:
                    return st
            return None

        st = FAKE.wait_for(lambda: waiting("img", "ImagePullBackOff"), what="ImagePullBackOff")
        self.assertEqual(st["phase"], "Pending")
        self.assertIn('Back-off pulling image "registry.example/img:1"', st["containerStatuses"][0]["state"]["waiting"]["message"])
        st = self.container_status("big")
        self.assertEqual(st["phase"], "Pending")
        self.assertEqual(st["conditions"], [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                             "message": "0/3 nodes are available: 3 Insufficient cpu.",
                                             "lastTransitionTime": st["conditions"][0]["lastTransitionTime"], "observedGeneration": 1}])
        st = FAKE.wait_for(lambda: (lambda s: s if s and s["containerStatuses"][0]["restartCount"] >= 2 else None)(
            waiting("crash", "CrashLoopBackOff")), what="restarts")
        last = st["containerStatuses"][0]["lastState"]["terminated"]
        self.assertEqual((last["reason"], last["exitCode"]), ("Error", 1))
        self.assertFalse(st["containerStatuses"][0]["ready"])
        st = FAKE.wait_for(lambda: waiting("oom", "CrashLoopBackOff"), what="oom crash loop")
        last = st["containerStatuses"][0]["lastState"]["terminated"]
        self.assertEqual((last["reason"], last["exitCode"]), ("OOMKilled", 137))
        for name in ("img", "big", "crash", "oom"):
            d = self.req("GET", self.apps("deployments", name))[1]
            self.assertNotIn("readyReplicas", d["status"])
            self.assertEqual({c["type"]: c["status"] for c in d["status"]["conditions"]}["Available"], "False")
        # lifting the faults makes every pod Running and Ready
        FAKE.clear_faults()
        for name in ("img", "big", "crash", "oom"):
            self.wait_ready("deployments", name, 1)
        st = self.container_status("crash")
        self.assertIn("running", st["containerStatuses"][0]["state"])
        self.assertGreaterEqual(st["containerStatuses"][0]["restartCount"], 2)

    def test_api_faults(self):
        FAKE.fault({"type": "http_500", "count": 2, "path": "/deployments"})
        for _ in range(2):
            st, out = self.req("GET", self.apps("deployments"))
            self.assertEqual((st, out["reason"], out["code"]), (500, "InternalError", 500))
            self.assertTrue(out["message"].startswith("Internal error occurred: "))
        self.assertEqual(self.req("GET", self.core("services"))[0], 200)
        self.assertEqual(self.req("GET", self.apps("deployments"))[0], 200)
        FAKE.fault({"type": "http_429", "count": 1, "retry_after_s": 2})
        st, resp, data = FAKE.request("GET", self.apps("deployments"), raw=True)
        self.assertEqual((st, resp.headers["Retry-After"], json.loads(data)["details"]["retryAfterSeconds"]), (429, "2", 2))
        f = FAKE.fault({"type": "slow", "delay_s": 0.4, "path": "/statefulsets"})
        t0 = time.time()
        self.assertEqual(self.req("GET", self.apps("statefulsets"))[0], 200)
        self.assertGreaterEqual(time.time() - t0, 0.4)
        FAKE.request("DELETE", "/_fake/faults/%d" % f["id"])
        t0 = time.time()
        self.req("GET", self.apps("statefulsets"))
        self.assertLess(time.time() - t0, 0.3)
        FAKE.fault({"type": "drop", "count": 1})
        import http.client
        c = FAKE.connection(timeout=5)
        c.request("GET", self.apps("deployments"), headers={"Authorization": "Bearer " + FAKE.token})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            c.getresponse()
        c.close()
        self.assertEqual(self.req("GET", self.apps("deployments"))[0], 200)
        FAKE.fault({"type": "lb_pending", "namespace": self.ns})
        self.req("POST", self.core("services"), service("web"), expect=201)
        time.sleep(0.5)
        self.assertEqual(self.req("GET", self.core("services", "web"))[1]["status"], {"loadBalancer": {}})
        FAKE.clear_faults()
        FAKE.wait_for(lambda: self.req("GET", self.core("services", "web"))[1]["status"]["loadBalancer"].get("ingress"),
                      what="ingress after lifting lb_pending")
        st, out = FAKE.request("POST", "/_fake/faults", {"type": "nonsense"})
        self.assertEqual(st, 400)

    def test_stats_and_request_log(self):
        FAKE.reset_stats()
        self.req("POST", self.apps("deployments"), deployment("web"), expect=201)
        self.req("GET", self.apps("deployments", "web"), expect=200)
        self.req("GET", "/apis/apps/v1/deployments", expect=200)
        self.req("PATCH", self.apps("deployments", "web", "scale"), {"spec": {"replicas": 2}}, "application/merge-patch+json", expect=200)
        bad = deployment("bad")
        bad["spec"]["replicaz"] = 1
        self.req("POST", self.apps("deployments"), bad)
        self.expect_violations(1, "schema")
        s = FAKE.stats()
        self.assertEqual(s["requests"], {"create deployments": 2, "get deployments": 1, "list deployments": 1,
                                         "patch deployments/scale": 1})
        self.assertEqual((s["total"], s["by_verb"]["create"], s["by_resource"]["deployments"]), (5, 2, 4))
        self.assertEqual(s["status"], {"201": 1, "200": 3, "400": 1})
        log = FAKE.request("GET", "/_fake/requests?limit=5")[1]
        self.assertEqual([(e["method"], e["status"], e["body_valid"]) for e in log],
                         [("POST", 201, True), ("GET", 200, None), ("GET", 200, None), ("PATCH", 200, True), ("POST", 400, False)])
        self.assertEqual(log[3]["content_type"], "application/merge-patch+json")
        self.assertEqual(log[2]["path"], "/apis/apps/v1/deployments")


@unittest.skipUnless(os.access(KUBECTL, os.X_OK), "no /usr/bin/kubectl")
class TestKubectl(FakeTest):
    def kubectl(self, *args):
        home = tempfile.mkdtemp(prefix="kubectl-home-")
        try:
            p = subprocess.run([KUBECTL, "--kubeconfig", FAKE.kubeconfig, "--cache-dir", os.path.join(home, "cache")] + list(args),
                               capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=home))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_kubectl_gets_what_a_client_made(self):
        self.req("POST", self.apps("deployments"), deployment("web", replicas=2), expect=201)
        self.req("POST", self.apps("statefulsets"), statefulset("db", replicas=1), expect=201)
        self.req("POST", self.core("services"), service("web"), expect=201)
        self.wait_ready("deployments", "web", 2)
        self.wait_ready("statefulsets", "db", 1)
        FAKE.reset_stats()
        out = json.loads(self.kubectl("get", "deploy", "-n", self.ns, "-o", "json"))
        self.assertEqual((out["kind"], [i["metadata"]["name"] for i in out["items"]]), ("List", ["web"]))
        self.assertEqual(out["items"][0]["status"]["readyReplicas"], 2)
        s = FAKE.stats()["requests"]
        for k in ("discovery version", "discovery api", "discovery apis", "discovery core", "discovery apps", "list deployments"):
            self.assertIn(k, s)
        out = json.loads(self.kubectl("get", "svc,statefulsets,pods,pvc", "-n", self.ns, "-o", "json"))
        kinds = sorted({i["kind"] for i in out["items"]})
        self.assertEqual(kinds, ["PersistentVolumeClaim", "Pod", "Service", "StatefulSet"])
        names = self.kubectl("get", "svc,statefulsets,pods,pvc", "-n", self.ns, "-o", "name").split()
        self.assertIn("service/web", names)
        self.assertIn("statefulset.apps/db", names)
        self.assertIn("pod/db-0", names)
        self.assertIn("persistentvolumeclaim/data-db-0", names)
        self.assertEqual(len([n for n in names if n.startswith("pod/web-")]), 2)
        table = self.kubectl("get", "deploy,sts,svc", "-n", self.ns)
        self.assertRegex(table, r"deployment.apps/web\s+2/2\s+2\s+2")
        self.assertRegex(table, r"service/web\s+LoadBalancer\s+10\.")
        self.assertIn(self.ns, self.kubectl("get", "ns", "-o", "name"))
        one = json.loads(self.kubectl("get", "deploy", "web", "-n", self.ns, "-o", "json"))
        self.assertEqual(one["kind"], "Deployment")


class TestStop(unittest.TestCase):
    def test_sigterm_stops_cleanly_even_with_an_open_watch(self):
        f = KubeFake(args=["--quiet", "--port", "0"])
        f.start()
        try:
            w = f.watch("/api/v1/pods?watch=1")
            time.sleep(0.2)
            t0 = time.time()
            self.assertEqual(f.stop(), 0)
            self.assertLess(time.time() - t0, 5)
            self.assertFalse(os.path.exists(os.path.join(f.state_dir, "ready.json")))
            w.close()
            with open(os.path.join(f.state_dir, "kubeconfig")) as kc:
                cfg = __import__("yaml").safe_load(kc)
            self.assertEqual(cfg["clusters"][0]["cluster"]["server"], f.ready["url"])
            self.assertEqual(cfg["users"][0]["user"]["tokenFile"], f.token_file)
        finally:
            f.cleanup()

    def test_a_ca_the_test_makes(self):
        d = tempfile.mkdtemp(prefix="kube-fake-ca-")
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
                            "2", "-subj", "/CN=test-ca", "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"),
                            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                           check=True, capture_output=True)
            f = KubeFake(args=["--quiet", "--ca-cert", os.path.join(d, "ca.pem"), "--ca-key", os.path.join(d, "ca.key")])
            f.start()
            try:
                import ssl
                f.ssl_ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
                self.assertEqual(f.request("GET", "/version")[0], 200)
            finally:
                f.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
