# SPDX-License-Identifier: Apache-2.0
"""Accounts are isolated (REQ-2): another user's app is, to a user, exactly a missing app. The
scheduler role (PRODUCT.md, Roles) lists and reads every app, without envs, and sets replicas
within min/max, and nothing else."""

import json
import os
import secrets
import sys
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def ops(ref):
    """Every app operation a developer has, on the app ref: (label, method, path, body)."""
    app = "/v1/apps/" + urllib.parse.quote(ref, safe="")
    return [
        ("get", "GET", app, None),
        ("stop", "POST", app + "/stop", None),
        ("start", "POST", app + "/start", None),
        ("scale", "PUT", app + "/replicas", {"replicas": 2}),
        ("update metrics", "PUT", app + "/quality-metrics/throughput", {"values": "50 rps"}),
        ("tracing", "GET", app + "/tracing", None),
        ("remove", "DELETE", app, None),
    ]


class TwoUsers(h.E2ETestCase):
    """alice with a stopped app, bob, and a scheduler token."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        files = h.make_tmpdir(cls.addClassCleanup)
        cls.scheduler_token = "sched-" + secrets.token_hex(24)
        token_file = os.path.join(files, "scheduler-token")
        with open(token_file, "w") as f:
            f.write(cls.scheduler_token + "\n")
        cls.stack = h.start_stack(cls.addClassCleanup, [
            "--scheduler-token-file", token_file, "--resync", "1d"])
        cls.api = cls.stack.api
        cls.redis = cls.stack.redis.client()
        cls.alice, cls.alice_password, cls.alice_token = cls.api.new_user("alice")
        cls.bob, cls.bob_password, cls.bob_token = cls.api.new_user("bob")
        cls.app = cls.stopped_app(cls.alice_token, "songs-ms")

    @classmethod
    def stopped_app(cls, token, name):
        """Deploys and stops an app, and waits until it is at rest (Redis then stays as is)."""
        app = cls.api.deploy(token, h.app_spec(name, replicas={"min": 1, "max": 4}))
        r = cls.api.request("POST", f"/v1/apps/{app['id']}/stop", token=token)
        assert r.status == 202, r
        cls.api.wait_app(token, app["id"], lambda a: a["state"] == "stopped" and h.settled(a),
                         "the app to be stopped")
        h.wait_at_rest(cls.redis, app["id"])
        return cls.api.app(token, app["id"])


class IsolationTest(TwoUsers):
    def assertLikeMissing(self, token, ref, missing_ref):
        """Each operation on ref answers exactly what it answers for missing_ref."""
        for (label, method, path, body), (_, _, missing_path, _) in zip(ops(ref),
                                                                       ops(missing_ref)):
            with self.subTest(label, ref=ref):
                got = self.api.request(method, path, body, token=token)
                missing = self.api.request(method, missing_path, body, token=token)
                self.assertEqual(missing.status, 404, missing)
                self.assertEqual(got.status, 404, got)
                expected = missing.error
                expected["message"] = expected["message"].replace(missing_ref, ref)
                self.assertEqual(got.error, expected)

    def test_a_new_user_lists_no_apps(self):
        _, _, token = self.api.new_user("carol")
        resp = self.api.request("GET", "/v1/apps", token=token)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json, {"apps": [], "next_cursor": None})
        # while alice sees hers
        resp = self.api.request("GET", "/v1/apps", token=self.alice_token)
        self.assertIn(self.app["id"], [a["id"] for a in resp.json["apps"]])

    def test_another_users_app_is_a_missing_app(self):
        before = h.redis_snapshot(self.redis)
        self.assertLikeMissing(self.bob_token, self.app["id"], str(uuid.uuid4()))
        self.assertLikeMissing(self.bob_token, self.app["name"], "no-such-app")
        after = h.redis_snapshot(self.redis)
        self.assertEqual(before, after, h.snapshot_diff(before, after))
        self.assertEqual(self.api.app(self.alice_token, self.app["id"]), self.app)
        listed = self.api.request("GET", "/v1/apps", token=self.bob_token).json["apps"]
        self.assertNotIn(self.app["id"], [a["id"] for a in listed])

    def test_the_owner_can_do_all_of_it(self):
        """What answers 404 to bob works for alice: the 404s are about the caller."""
        token = self.api.login(self.alice, self.alice_password)
        app = self.api.deploy(token, h.app_spec("owned-ms", replicas={"min": 1, "max": 4}))
        # another emp-server's lease holds the reconciler off, so the removal stays pending
        lease = f"emp:lease:{app['id']}"
        self.redis.set(lease, "another-emp-server", px=10000)
        results = {label: self.api.request(method, path, body, token=token)
                   for label, method, path, body in ops(app["name"])}
        expected = {"get": 200, "stop": 202, "start": 202, "scale": 202, "update metrics": 200,
                    "tracing": 200, "remove": 202}
        self.assertEqual({k: r.status for k, r in results.items()}, expected, results)
        self.assertEqual(results["remove"].json["generation"], app["generation"] + 5,
                         "stop, start, scale, update metrics and remove each count")
        self.assertEqual(results["remove"].json["state"], "removing")
        for label, method, path, body in ops(app["id"])[1:5]:
            with self.subTest(f"{label} while removing"):
                resp = self.api.request(method, path, body, token=token)
                self.assertError(resp, 409, "conflict", "being removed")
        self.redis.delete(lease)
        tracing = results["tracing"].json
        self.assertEqual(tracing["service"], f"{self.alice}/owned-ms")
        h.wait_until(lambda: self.api.request("GET", f"/v1/apps/{app['id']}", token=token)
                     .status == 404, what="the removal")
        self.assertEqual(h.app_processes(app["id"]), [], "the removed app left a replica")
        version = self.api.request("GET", "/v1/version")
        self.assertEqual(version.status, 200, version)
        self.assertEqual(version.json["cluster"], {"backend": "local", "available": True})
        bye = self.api.request("DELETE", "/v1/sessions/current", token=token)
        self.assertEqual((bye.status, bye.json), (200, {"logged_out": True}))
        self.assertError(self.api.request("GET", "/v1/apps", token=token), 401, "unauthorized")
        self.assertEqual(self.api.request("GET", "/v1/apps", token=self.alice_token).status, 200,
                         "logging out ends that session only")

    def test_two_users_may_use_one_name(self):
        name = self.app["name"]
        bobs = self.stopped_app(self.bob_token, name)
        self.assertNotEqual(bobs["id"], self.app["id"])
        self.assertEqual(bobs["owner"], self.bob)
        self.assertEqual(self.api.app(self.bob_token, name)["id"], bobs["id"])
        self.assertEqual(self.api.app(self.alice_token, name)["id"], self.app["id"])
        # a second one of the same user is refused
        resp = self.api.request("POST", "/v1/apps", h.app_spec(name), token=self.bob_token)
        err = self.assertError(resp, 409, "conflict", f"'{name}'", field="name")
        self.assertIn(bobs["id"], err["message"], "the message points at the existing app")


class SchedulerTest(TwoUsers):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bobs = cls.stopped_app(cls.bob_token, "songs-ms")

    def sched(self, method, path, body=None):
        return self.api.request(method, path, body, token=self.scheduler_token)

    def test_whoami_says_scheduler(self):
        resp = self.sched("GET", "/v1/sessions/current")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json, {"role": "scheduler", "username": None, "expires_at": None})

    def test_lists_every_users_apps_without_envs(self):
        ids = []
        cursor = None
        while True:
            query = "?limit=1" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            resp = self.sched("GET", "/v1/apps" + query)
            self.assertEqual(resp.status, 200, resp)
            page = resp.json
            self.assertLessEqual(len(page["apps"]), 1)
            for app in page["apps"]:
                self.assertNotIn("envs", app["spec"], app)
            ids += [a["id"] for a in page["apps"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual(len(ids), len(set(ids)), "pages do not overlap")
        self.assertIn(self.app["id"], ids)
        self.assertIn(self.bobs["id"], ids)

    def test_reads_any_app_without_envs(self):
        for app, owner_token in ((self.app, self.alice_token), (self.bobs, self.bob_token)):
            resp = self.sched("GET", f"/v1/apps/{app['id']}")
            self.assertEqual(resp.status, 200, resp)
            self.assertNotIn("envs", resp.json["spec"])
            self.assertIn("envs", self.api.app(owner_token, app["id"])["spec"],
                          "the owner sees the envs")
            own = self.api.app(owner_token, app["id"])
            del own["spec"]["envs"]
            self.assertEqual(resp.json, own, "the scheduler's view is the owner's minus envs")
        # names are the developers' own: the scheduler addresses apps by id
        self.assertError(self.sched("GET", f"/v1/apps/{self.app['name']}"), 404, "not_found")

    def test_sets_replicas_within_min_and_max(self):
        app = self.api.app(self.alice_token, self.app["id"])
        low, high = app["replicas"]["min"], app["replicas"]["max"]
        target = high if app["replicas"]["desired"] != high else low
        resp = self.sched("PUT", f"/v1/apps/{app['id']}/replicas", {"replicas": target})
        self.assertEqual(resp.status, 202, resp)
        self.assertNotIn("envs", resp.json["spec"])
        now = self.api.app(self.alice_token, app["id"])
        self.assertEqual(now["replicas"]["desired"], target)
        self.assertEqual(now["generation"], app["generation"] + 1)
        self.api.wait_app(self.alice_token, app["id"], h.settled, "the reconciler to catch up")
        before = h.redis_snapshot(self.redis)
        for bad in (high + 1, low - 1):
            resp = self.sched("PUT", f"/v1/apps/{app['id']}/replicas", {"replicas": bad})
            self.assertError(resp, 422, "out_of_range", f"{low} to {high}", field="replicas")
        self.assertEqual(before, h.redis_snapshot(self.redis))
        self.api.wait_app(self.alice_token, app["id"], h.settled, "the reconciler to catch up")

    def test_may_not_deploy_stop_start_remove_change_metrics_or_log_out(self):
        app = f"/v1/apps/{self.app['id']}"
        before = h.redis_snapshot(self.redis)
        for label, method, path, body in [
                ("deploy", "POST", "/v1/apps", h.app_spec("sched-app")),
                ("stop", "POST", app + "/stop", None),
                ("start", "POST", app + "/start", None),
                ("remove", "DELETE", app, None),
                ("update metrics", "PUT", app + "/quality-metrics/latency",
                 {"values": "p99 < 1s"}),
                ("logout", "DELETE", "/v1/sessions/current", None)]:
            with self.subTest(label):
                self.assertError(self.sched(method, path, body), 403, "forbidden", "scheduler")
        after = h.redis_snapshot(self.redis)
        self.assertEqual(before, after, h.snapshot_diff(before, after))
        # and the token still works: logging out did not revoke it
        self.assertEqual(self.sched("GET", "/v1/sessions/current").status, 200)

    def test_token_is_kept_only_as_a_digest(self):
        dump = repr(h.redis_snapshot(self.redis))
        self.assertNotIn(self.scheduler_token, dump)
        self.assertNotIn(self.scheduler_token, self.stack.server.logs())
        # a near miss is not the scheduler
        resp = self.api.request("GET", "/v1/apps", token=self.scheduler_token[:-1] + "x")
        self.assertError(resp, 401, "unauthorized")


class CliIsolationTest(TwoUsers):
    """The same through the emp CLI: bob logged in, and the scheduler with EMP_TOKEN."""

    def emp(self, *args, code=0, **env):
        result = self.cli.run(*args, **env)
        self.assertEqual(result.code, code, result)
        return result

    def setUp(self):
        super().setUp()
        self.cli = h.Cli(h.make_tmpdir(self.addCleanup), self.stack.proxy.url)
        self.emp("login", "--username", self.bob, "--password-stdin",
                 input=self.bob_password + "\n")

    def test_bob_cannot_see_or_touch_alices_app(self):
        listed = json.loads(self.emp("list", "-o", "json").out)
        self.assertNotIn(self.app["id"], [a["id"] for a in listed["apps"]])
        self.assertEqual(self.emp("list").out.splitlines()[1:], [], "only the header")
        before = h.redis_snapshot(self.redis)
        for ref in (self.app["id"], self.app["name"]):
            for args in (["info", ref], ["stop", ref], ["start", ref], ["remove", ref],
                         ["scale", ref, "2"], ["update", "metrics", ref, "latency", "p99 < 1s"],
                         ["tracing", ref]):
                with self.subTest(args=args):
                    err = self.emp(*args, "-o", "json", code=1).err
                    self.assertEqual(json.loads(err)["error"]["code"], "not_found")
        self.assertEqual(before, h.redis_snapshot(self.redis))

    def test_scheduler_with_emp_token(self):
        sched = {"EMP_TOKEN": self.scheduler_token}
        who = json.loads(self.emp("whoami", "-o", "json", **sched).out)
        self.assertEqual(who["role"], "scheduler")
        listed = json.loads(self.emp("list", "-o", "json", **sched).out)
        self.assertIn(self.app["id"], [a["id"] for a in listed["apps"]])
        info = json.loads(self.emp("info", self.app["id"], "-o", "json", **sched).out)
        self.assertNotIn("envs", info["spec"])
        self.emp("scale", self.app["id"], str(self.app["replicas"]["max"]), **sched)
        self.assertEqual(self.api.app(self.alice_token, self.app["id"])["replicas"]["desired"],
                         self.app["replicas"]["max"])
        spec_file = os.path.join(self.cli.home, "app.json")
        with open(spec_file, "w") as f:
            json.dump(h.app_spec("sched-app"), f)
        for args in (["stop", self.app["id"]], ["start", self.app["id"]],
                     ["remove", self.app["id"]], ["deploy", spec_file],
                     ["update", "metrics", self.app["id"], "latency", "p99 < 1s"]):
            with self.subTest(args=args):
                self.assertIn("scheduler", self.emp(*args, code=1, **sched).err)
        self.api.wait_app(self.alice_token, self.app["id"], h.settled, "the reconciler")


if __name__ == "__main__":
    unittest.main()
