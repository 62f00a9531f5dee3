# SPDX-License-Identifier: Apache-2.0
"""A crash loses nothing (PRODUCT.md: availability, reliability): emp-server killed with SIGKILL
and started again finds every account, token and app, and the reconciler goes on where it was. The
embedded Redis dies with its emp-server and keeps its data. Redis going away gives 503 and comes
back without a restart. SIGTERM lets in-flight requests finish."""

import http.client
import json
import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# What a restart must keep of an app: everything but what the reconciler observes.
KEPT = ("id", "name", "owner", "desired_state", "spec", "created_at", "generation")


def kept(app):
    return {**{k: app[k] for k in KEPT}, "replicas": {k: app["replicas"][k]
                                                       for k in ("desired", "min", "max")}}


class RestartTest(h.E2ETestCase):
    def users_with_apps(self, api):
        """Two users with apps in several desired states: {username: (password, token, apps)}."""
        users = {}
        for prefix in ("alice", "bob"):
            name, password, token = api.new_user(prefix)
            apps = [api.deploy(token, h.app_spec("songs-ms")),
                    api.deploy(token, h.app_spec("users-ms", replicas={"min": 2, "max": 6}))]
            r = api.request("PUT", f"/v1/apps/{apps[0]['id']}/replicas", {"replicas": 5},
                            token=token)
            self.assertEqual(r.status, 202, r)
            r = api.request("PUT", f"/v1/apps/{apps[0]['id']}/quality-metrics/throughput",
                            {"values": "100 rps"}, token=token)
            self.assertEqual(r.status, 200, r)
            r = api.request("POST", f"/v1/apps/{apps[1]['id']}/stop", token=token)
            self.assertEqual(r.status, 202, r)
            users[name] = (password, token, [api.wait_app(token, a["id"], h.settled,
                                                          "the reconciler") for a in apps])
        return users

    def assertAllThere(self, api, users):
        for name, (password, token, apps) in users.items():
            who = api.request("GET", "/v1/sessions/current", token=token)
            self.assertEqual(who.status, 200, f"{name}'s saved token: {who}")
            self.assertEqual(who.json["username"], name)
            api.login(name, password)
            listed = api.request("GET", "/v1/apps", token=token).json["apps"]
            self.assertEqual(sorted(a["id"] for a in listed), sorted(a["id"] for a in apps))
            for app in apps:
                self.assertEqual(kept(api.app(token, app["id"])), kept(app))

    def test_sigkill_then_start_loses_nothing_and_the_reconciler_resumes(self):
        stack = h.start_stack(self.addCleanup)
        api, r = stack.api, stack.redis.client()
        users = self.users_with_apps(api)
        _, token, apps = next(iter(users.values()))
        # A change recorded right before the crash: another emp-server holds the app's lease (as a
        # crashed one would, until it expires), so this one's reconciler cannot act on it yet.
        target = apps[0]
        self.assertEqual(target["state"], "running")
        r.set(f"emp:lease:{target['id']}", "another-emp-server", px=5000)
        resp = api.request("POST", f"/v1/apps/{target['id']}/stop", token=token)
        self.assertEqual(resp.status, 202, resp)
        apps[0] = resp.json
        time.sleep(0.5)
        before_kill = api.app(token, target["id"])
        self.assertEqual(before_kill["state"], "running", "nothing acted on the stop yet")
        self.assertLess(before_kill["observed_generation"], before_kill["generation"])

        stack.restart_server(kill=True)
        self.assertAllThere(api, users)
        after = api.wait_app(token, target["id"], lambda a: a["state"] == "stopped"
                             and h.settled(a), "the restarted reconciler to stop the app",
                             timeout=40)
        self.assertEqual(after["generation"], before_kill["generation"])

    def test_a_token_the_cli_saved_works_after_sigkill(self):
        stack = h.start_stack(self.addCleanup)
        cli = h.Cli(h.make_tmpdir(self.addCleanup), stack.proxy.url)
        name, password = h.unique_name("carol"), h.new_password()
        stack.api.create_user(name, password)
        result = cli.run("login", "--username", name, "--password-stdin", input=password + "\n")
        self.assertEqual(result.code, 0, result)
        before = cli.run("whoami", "-o", "json")
        self.assertEqual(before.code, 0, before)
        stack.restart_server(kill=True)
        after = cli.run("whoami", "-o", "json")
        self.assertEqual(after.code, 0, after)
        self.assertEqual(json.loads(after.out), json.loads(before.out))

    def test_embedded_redis_dies_with_emp_server_and_keeps_the_data(self):
        tmp = h.make_tmpdir(self.addCleanup)
        server = h.EmpServer(os.path.join(tmp, "state"))
        self.addCleanup(server.stop)
        server.start()
        proxy = h.SpecProxy(server.port)
        self.addCleanup(proxy.close)
        api = h.Api(proxy.url)
        users = self.users_with_apps(api)

        redis_pid = int(re.search(r"msg=\"embedded redis-server started\" pid=(\d+)",
                                  server.logs()).group(1))
        self.assertTrue(h.process_alive(redis_pid))
        with open(f"/proc/{redis_pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        self.assertEqual(ppid, server.proc.pid, "redis-server is emp-server's child")
        server.kill()
        started = time.monotonic()
        h.wait_until(lambda: not h.process_alive(redis_pid), timeout=5,
                     what=f"the embedded redis-server (pid {redis_pid}) to exit after SIGKILL "
                          "of its emp-server")
        print(f"embedded redis-server gone {time.monotonic() - started:.2f} s after the SIGKILL",
              file=sys.stderr)

        server.start()
        proxy.retarget(server.port)
        self.assertAllThere(api, users)
        self.assertEqual(server.stop(), 0, "SIGTERM stops emp-server cleanly")
        new_pid = int(re.search(r"msg=\"embedded redis-server started\" pid=(\d+)",
                                server.logs()).group(1))
        self.assertFalse(h.process_alive(new_pid), "emp-server stops its redis-server")

    def test_redis_away_answers_503_and_comes_back_without_restart(self):
        stack = h.start_stack(self.addCleanup)
        api = stack.api
        name, password, token = api.new_user("alice")
        app = api.deploy(token, h.app_spec("songs-ms"))
        stack.redis.stop()

        for method, path, body, tok in [
                ("GET", "/v1/apps", None, token),
                ("GET", f"/v1/apps/{app['id']}", None, token),
                ("POST", "/v1/apps", h.app_spec("other-ms"), token),
                ("POST", "/v1/sessions", {"username": name, "password": password}, None),
                ("POST", "/v1/users", {"username": "newbie", "password": password}, None),
                ("GET", "/readyz", None, None)]:
            with self.subTest(f"{method} {path}"):
                resp = api.request(method, path, body, token=tok)
                self.assertError(resp, 503, "store_unavailable", "Redis", "unavailable")
                self.assertRegex(resp.headers.get("Retry-After", ""), r"^\d+$", resp)
        health = api.request("GET", "/healthz")
        self.assertEqual((health.status, health.json), (200, {"status": "ok"}))

        stack.redis.start()  # the same socket and data directory
        h.wait_until(lambda: api.request("GET", "/readyz").status == 200, timeout=10,
                     what="/readyz to answer 200 again")
        listed = api.request("GET", "/v1/apps", token=token)
        self.assertEqual(listed.status, 200, listed)
        self.assertEqual([a["id"] for a in listed.json["apps"]], [app["id"]])
        api.login(name, password)
        self.assertTrue(stack.server.running(), "the same emp-server process answers")

    def test_sigterm_lets_an_in_flight_request_finish(self):
        stack = h.start_stack(self.addCleanup)
        name, password = h.unique_name("alice"), h.new_password()
        stack.api.create_user(name, password)
        body = json.dumps({"username": name, "password": password}).encode()
        half = len(body) // 2
        sock = socket.create_connection(("127.0.0.1", stack.server.port), timeout=30)
        self.addCleanup(sock.close)
        # the request is in flight: its headers and half its body have arrived
        sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:half])
        time.sleep(0.5)
        stack.server.signal(signal.SIGTERM)
        stack.server.wait_for_log(r"msg=\"stopping: draining requests\"")
        with self.assertRaises(ConnectionRefusedError, msg="no new connections while draining"):
            socket.create_connection(("127.0.0.1", stack.server.port), timeout=5).close()
        self.assertTrue(stack.server.running(), "emp-server waits for the request")
        sock.sendall(body[half:])
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        h.check_response("POST", "/v1/sessions", resp.status, resp.headers, data)
        self.assertEqual(resp.status, 201, data)
        token = json.loads(data)["token"]
        self.assertEqual(stack.server.wait(10), 0, "emp-server exits 0 after draining")
        self.assertIn("msg=stopped", stack.server.logs())
        # the session it handed out while stopping is real
        stack.server.start()
        stack.proxy.retarget(stack.server.port)
        who = stack.api.request("GET", "/v1/sessions/current", token=token)
        self.assertEqual((who.status, who.json.get("username")), (200, name), who)


if __name__ == "__main__":
    unittest.main()
