# SPDX-License-Identifier: Apache-2.0
"""Concurrent changes never lose a write, also when they go to two emp-server processes that share
one Redis (PRODUCT.md: several emp-server processes can share one Redis), and what runs on the
local backend is what the app's record says, whichever of them took the request. With the local
backend, whose replicas are one host's processes, one of them reconciles and the other serves
only the API (--reconcile-workers 0); a second reconciling one is refused at start."""

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ROUNDS = 6


def at_once(calls):
    """Runs every call in its own thread, released together; returns their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as e:  # reported by the test, not lost in the thread
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


class ConcurrencyTest(h.E2ETestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = h.start_stack(cls.addClassCleanup)
        second = h.EmpServer(os.path.join(cls.stack.tmp, "state2"), cls.stack.redis.url,
                             args=["--reconcile-workers", "0"])
        cls.addClassCleanup(second.stop)
        second.start()
        proxy = h.SpecProxy(second.port)
        cls.addClassCleanup(proxy.close)
        cls.apis = [cls.stack.api, h.Api(proxy.url)]  # two emp-servers, one Redis

    def api(self, i):
        return self.apis[i % len(self.apis)]

    def test_concurrent_metric_and_scale_changes_all_land(self):
        _, _, token = self.apis[0].new_user("alice")
        app = self.apis[0].deploy(token, h.app_spec("songs-ms", quality_metrics=[],
                                                     replicas={"min": 1, "max": 20}))
        path = f"/v1/apps/{app['id']}"
        generation = app["generation"]
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                metrics = {"latency": f"p95 < {100 + round_}ms",
                           "throughput": f"{10 + round_} rps",
                           "availability": f">= 99.{round_}%",
                           "error_rate": f"< {1 + round_}%"}
                counts = [2 + (round_ + k) % 19 for k in range(4)]
                calls = [lambda i=i, m=m, v=v: self.api(i).request(
                            "PUT", f"{path}/quality-metrics/{m}", {"values": v}, token=token)
                         for i, (m, v) in enumerate(metrics.items())]
                calls += [lambda i=i, n=n: self.api(i).request(
                            "PUT", f"{path}/replicas", {"replicas": n}, token=token)
                          for i, n in enumerate(counts)]
                results = at_once(calls)
                for resp in results:
                    self.assertIsInstance(resp, h.Response, resp)
                    self.assertIn(resp.status, (200, 202), resp)
                # each change got its own generation, and none is missing
                gens = sorted(r.json["generation"] for r in results)
                self.assertEqual(gens, list(range(generation + 1, generation + 1 + len(calls))))
                for resp, (m, v) in zip(results, metrics.items()):
                    self.assertIn({"metric": m, "values": v},
                                  resp.json["spec"]["quality_metrics"])
                now = self.apis[0].app(token, app["id"])
                generation += len(calls)
                self.assertEqual(now["generation"], generation)
                self.assertEqual(sorted(now["spec"]["quality_metrics"], key=lambda q: q["metric"]),
                                 sorted(({"metric": m, "values": v} for m, v in metrics.items()),
                                        key=lambda q: q["metric"]))
                last_scale = max(results[len(metrics):], key=lambda r: r.json["generation"])
                self.assertEqual(now["replicas"]["desired"],
                                 last_scale.json["replicas"]["desired"])
        # and the cluster runs the count of the last change
        final = self.apis[1].wait_app(token, app["id"], lambda a: h.settled(a) and a["replicas"][
            "ready"] == a["replicas"]["desired"], "the last count to be ready", timeout=40)
        self.assertEqual(final["state"], "running")
        h.wait_until(lambda: len(h.app_processes(app["id"])) == final["replicas"]["desired"],
                     timeout=10, interval=0.1,
                     what=lambda: f"{final['replicas']['desired']} replica processes, not "
                                  f"{len(h.app_processes(app['id']))}")

    def test_concurrent_stops_and_starts_end_as_the_last_one_says(self):
        _, _, token = self.apis[0].new_user("dave")
        app = self.apis[0].deploy(token, h.app_spec("songs-ms"))
        path = f"/v1/apps/{app['id']}"
        addresses = set()
        for round_ in range(ROUNDS):
            with self.subTest(round=round_):
                actions = ["stop", "start"] * 4
                results = at_once([lambda i=i, a=a: self.api(i).request(
                    "POST", f"{path}/{a}", token=token) for i, a in enumerate(actions)])
                for resp in results:
                    self.assertIsInstance(resp, h.Response, resp)
                    self.assertEqual(resp.status, 202, resp)
                gens = sorted(r.json["generation"] for r in results)
                self.assertEqual(gens, list(range(gens[0], gens[0] + len(actions))))
                last = max(results, key=lambda r: r.json["generation"])
                settled = self.apis[1].wait_app(
                    token, app["id"], lambda a: h.settled(a) and (
                        a["state"] != "running"
                        or a["replicas"]["ready"] == a["replicas"]["desired"]),
                    "the reconciler")
                self.assertEqual(settled["generation"], gens[-1])
                self.assertEqual(settled["desired_state"], last.json["desired_state"])
                self.assertEqual(settled["state"], settled["desired_state"])
                self.assertRunsAsRecorded(settled, addresses)

    def assertRunsAsRecorded(self, app, addresses):
        """What runs is what the app's record says, whichever emp-server acted last: a stopped
        app has no replica process and no open gateway, a running one its replicas (once, not
        once per emp-server) behind its address. addresses: every address it was seen at."""
        def where():
            """The app's replica processes and the directory each runs in (whose state dir)."""
            found = {}
            for pid in h.app_processes(app["id"]):
                try:
                    found[pid] = os.readlink(f"/proc/{pid}/cwd")
                except OSError:
                    pass
            return found

        if app["state"] == "stopped":
            h.wait_until(lambda: not h.app_processes(app["id"]), timeout=5, interval=0.1,
                         what=lambda: f"the replicas of the stopped app to end (running: "
                                      f"{where()})")
            for address in addresses:
                self.assertTrue(h.connection_refused(address),
                                f"the stopped app's gateway {address} accepts connections")
            return
        self.assertIsNotNone(app["address"])
        addresses.add(app["address"])
        desired = app["replicas"]["desired"]
        h.wait_until(lambda: len(h.app_processes(app["id"])) == desired, timeout=5,
                     interval=0.1, what=lambda: f"{desired} replica processes of the running "
                                                f"app (running: {where()})")
        status, body = h.app_request(app["address"])
        self.assertEqual((status, body["app"]), (200, app["id"]))

    def test_a_second_reconciling_server_is_refused(self):
        third = h.EmpServer(os.path.join(self.stack.tmp, "state3"), self.stack.redis.url)
        # stopped only if it did start, against this test's expectation
        self.addCleanup(lambda: third.proc and third.proc.poll() is None and third.stop())
        with self.assertRaises(AssertionError) as refused:
            third.start()
        message = str(refused.exception)
        self.assertIn("another emp-server", message)
        self.assertIn("--reconcile-workers 0", message)

    def test_one_name_deployed_at_once_gives_one_app(self):
        _, _, token = self.apis[0].new_user("bob")
        results = at_once([lambda i=i: self.api(i).request(
            "POST", "/v1/apps", h.app_spec("songs-ms"), token=token) for i in range(6)])
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [201] + [409] * 5, results)
        listed = self.apis[1].request("GET", "/v1/apps", token=token).json["apps"]
        created = [r.json["id"] for r in results if r.status == 201]
        self.assertEqual([a["id"] for a in listed], created)

    def test_one_username_created_at_once_gives_one_account(self):
        username = h.unique_name("carol")
        passwords = [h.new_password() for _ in range(4)]
        results = at_once([lambda i=i, p=p: self.api(i).request(
            "POST", "/v1/users", {"username": username, "password": p})
            for i, p in enumerate(passwords)])
        statuses = [r.status for r in results]
        self.assertEqual(sorted(statuses), [201, 409, 409, 409], results)
        winner = passwords[statuses.index(201)]
        self.apis[1].login(username, winner)
        for p in passwords:
            if p != winner:
                resp = self.apis[0].request("POST", "/v1/sessions",
                                            {"username": username, "password": p})
                self.assertEqual(resp.status, 401, resp)


if __name__ == "__main__":
    unittest.main()
