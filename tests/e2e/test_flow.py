# SPDX-License-Identifier: Apache-2.0
"""The thesis' whole flow through the emp CLI (REQ-1 to REQ-14) against the real emp-server and
Redis, and the CLI's contract (notes/cli_contract.md): exit codes, output, credentials, prompts."""

import json
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import http.server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def free_port():
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_pty(cli, args, answers, timeout=30):
    """Runs emp on a pseudo-terminal (its controlling terminal, stdin, stdout and stderr) and
    answers each prompt in turn: answers is [(regex, text)]. Returns (exit code, transcript)."""
    env = cli.env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing but exec
        try:
            os.execve(h.cli_bin(), [h.cli_bin(), *args], env)
        finally:
            os._exit(127)
    transcript = b""
    deadline = time.monotonic() + timeout

    def read_some():
        nonlocal transcript
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"emp {' '.join(args)} is silent: {transcript!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        transcript += chunk
        return chunk

    try:
        seen = 0
        for prompt, text in answers:
            while not re.search(prompt, transcript[seen:].decode(errors="replace")):
                if not read_some():
                    raise AssertionError(f"no prompt {prompt!r}: {transcript!r}")
            seen = len(transcript)
            time.sleep(0.1)
            os.write(fd, text.encode() + b"\n")
        while read_some():
            pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), transcript.decode(errors="replace")


class CliTestCase(h.E2ETestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = h.start_stack(cls.addClassCleanup)
        cls.api = cls.stack.api
        cls.redis = cls.stack.redis.client()
        cls.secrets = []

    def new_cli(self):
        return h.Cli(h.make_tmpdir(self.addCleanup), self.stack.proxy.url)

    def emp(self, cli, *args, code=0, input=None, **env):
        """Runs emp and checks its exit code."""
        result = cli.run(*args, input=input, **env)
        self.assertEqual(result.code, code, result)
        return result

    def logged_in(self, cli, prefix="user"):
        """A new account, logged in through the CLI: (username, password, token)."""
        name, password = h.unique_name(prefix), h.new_password()
        self.secrets.append(password)
        self.api.create_user(name, password)
        self.emp(cli, "login", "--username", name, "--password-stdin", input=password + "\n")
        token = cli.credentials()["servers"][cli.server_url]["token"]
        self.secrets.append(token)
        return name, password, token

    def write(self, cli, filename, doc):
        path = os.path.join(cli.home, filename)
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
        return path

    def assertKeyValue(self, out, value, what):
        """out has a 'key: value' line whose value is value."""
        self.assertRegex(out, re.compile(rf"^\s*\w[\w .-]*:\s+{re.escape(value)}\s*$", re.M),
                         f"{what}: no 'key: {value}' line")

    def assertNoRequests(self, during):
        """No request reached the server while during() ran."""
        before = len(self.stack.proxy.requests)
        during()
        self.assertEqual(self.stack.proxy.requests[before:], [], "requests reached the server")


class FlowTest(CliTestCase):
    def test_the_whole_flow(self):
        cli = self.new_cli()
        name, password = h.unique_name("alice"), h.new_password()
        self.secrets.append(password)

        # REQ-1, REQ-2: an account, a login, who am I
        out = self.emp(cli, "create", "account", "--username", name, "--password-stdin",
                       input=password + "\n").out
        self.assertIn(name, out)
        result = self.emp(cli, "login", "--username", name, "--password-stdin",
                          input=password + "\r\n")
        self.assertIn(f"logged in as {name}", result.out)
        self.assertIn(cli.credentials_path, result.out)
        saved = cli.credentials()
        self.assertEqual(saved["current"], cli.server_url)
        entry = saved["servers"][cli.server_url]
        token = entry["token"]
        self.secrets.append(token)
        self.assertEqual(entry["username"], name)
        self.assertNotIn(token, result.out + result.err, "the token is never printed")
        self.assertEqual(stat.S_IMODE(os.stat(cli.credentials_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(cli.credentials_path)).st_mode),
                         0o700)
        self.assertEqual(os.listdir(os.path.dirname(cli.credentials_path)), ["credentials.json"],
                         "no temporary file left behind")
        session = self.api.request("GET", "/v1/sessions/current", token=token)
        self.assertEqual(session.status, 200, session)
        self.assertEqual(entry["expires_at"], session.json["expires_at"])
        self.assertEqual(json.loads(self.emp(cli, "whoami", "-o", "json").out), session.json)
        self.assertKeyValue(self.emp(cli, "whoami").out, name, "whoami")

        # REQ-3 to REQ-6: deploy
        songs = h.app_spec("songs-ms")
        app = json.loads(self.emp(cli, "deploy", self.write(cli, "app.json", songs),
                                  "-o", "json").out)
        self.assertEqual((app["name"], app["owner"], app["state"]), ("songs-ms", name,
                                                                     "deploying"))
        self.assertEqual(app["spec"]["envs"], songs["envs"])
        app_id = app["id"]
        out = self.emp(cli, "deploy", self.write(cli, "users.json", h.app_spec("users-ms"))).out
        users_id = self.api.app(token, "users-ms")["id"]
        self.assertIn("users-ms", out)
        self.assertIn(users_id, out)
        # --wait sees the app run: it exits 0 once every replica is ready, and the address serves
        result = self.emp(cli, "deploy", self.write(cli, "gw.json", h.app_spec("gateway-ms")),
                          "--wait", "--timeout", "60s")
        running = self.api.app(token, "gateway-ms")
        self.assertEqual(running["state"], "running")
        self.assertEqual(running["replicas"]["ready"], running["replicas"]["desired"])
        self.assertIn(running["address"], result.out, "deploy --wait prints the address")
        self.assertRegex(result.err, rf"running\b.*\b{running['replicas']['desired']}/"
                         rf"{running['replicas']['desired']}\b",
                         "progress shows the state and ready/desired replicas")
        status, body = h.app_request(running["address"])
        self.assertEqual((status, body["app"]), (200, running["id"]), "the gateway serves the app")
        # --wait sees an app fail whose command exits at once, and prints why
        crashing = h.app_spec("crash-ms", command=[h.testapp_bin(), "--exit-at-start", "3"])
        result = self.emp(cli, "deploy", self.write(cli, "crash.json", crashing), "--wait",
                          "--timeout", "60s", code=1)
        failed = self.api.app(token, "crash-ms")
        self.assertEqual(failed["state"], "failed")
        self.assertIn("exited with status 3", failed["reason"])
        self.assertIn("exited with status 3", result.err, "deploy --wait prints the reason")
        self.assertRegex(result.err, rf"failed\b.*\b0/{failed['replicas']['desired']}\b",
                         "progress shows the state and ready/desired replicas")

        # REQ-13: list, as a table and as JSON
        apps = {a: self.api.wait_app(token, a, h.settled, "the reconciler")
                for a in ("songs-ms", "users-ms", "gateway-ms", "crash-ms")}
        lines = self.emp(cli, "list").out.splitlines()
        header = lines[0]
        self.assertEqual(header.split(), ["NAME", "ID", "STATE", "READY", "ADDRESS"])
        for app_name, a in apps.items():
            row = [line for line in lines[1:] if line.split()[0] == app_name]
            self.assertEqual(len(row), 1, f"{app_name} in {lines}")
            self.assertEqual(row[0][header.index("ID"):].split()[0], a["id"], "aligned ID")
            self.assertEqual(row[0][header.index("STATE"):].split()[0], a["state"])
            self.assertEqual(row[0][header.index("READY"):].split()[0],
                             f"{a['replicas']['ready']}/{a['replicas']['desired']}")
            self.assertEqual(row[0][header.index("ADDRESS"):].split()[0], a["address"] or "-",
                             "the gateway address")
        self.assertEqual(len(lines), 1 + len(apps))
        listed = json.loads(self.emp(cli, "list", "-o", "json").out)
        self.assertEqual(sorted(a["id"] for a in listed["apps"]),
                         sorted(a["id"] for a in apps.values()))

        # REQ-9: info by id and by name
        songs_address = apps["songs-ms"]["address"]
        for ref in (app_id, "songs-ms"):
            out = self.emp(cli, "info", ref).out
            self.assertKeyValue(out, app_id, f"info {ref}")
            self.assertKeyValue(out, "songs-ms", f"info {ref}")
            self.assertKeyValue(out, songs_address, f"info {ref}")
            self.assertEqual(json.loads(self.emp(cli, "-o", "json", "info", ref).out)["id"],
                             app_id)

        # REQ-8: quality metrics at run time
        self.emp(cli, "update", "metrics", "songs-ms", "latency", "p99 < 300ms")
        self.assertIn({"metric": "latency", "values": "p99 < 300ms"},
                      self.api.app(token, app_id)["spec"]["quality_metrics"])
        err = self.emp(cli, "update", "metrics", "songs-ms", "throughput", "lots", code=1).err
        self.assertIn("'lots'", err)
        self.assertIn("N rps", err, "the accepted form")

        # scale within and outside the app's range
        self.emp(cli, "scale", "songs-ms", "3")
        self.assertEqual(self.api.app(token, app_id)["replicas"]["desired"], 3)
        self.api.wait_app(token, app_id, lambda a: a["replicas"]["ready"] == 3
                          and a["state"] == "running", "3 ready replicas")
        self.assertEqual(len(h.app_processes(app_id)), 3, "3 replica processes")
        limits = self.api.app(token, app_id)["replicas"]
        err = self.emp(cli, "scale", app_id, str(limits["max"] + 1), code=1).err
        self.assertIn(f"{limits['min']} to {limits['max']}", err)
        self.assertEqual(self.api.app(token, app_id)["replicas"]["desired"], 3)

        # REQ-10, REQ-11: stop, start (with the replica count it had)
        out = self.emp(cli, "stop", "songs-ms").out
        self.assertIn("songs-ms", out)
        self.assertIn(app_id, out)
        self.api.wait_app(token, app_id, lambda a: a["state"] == "stopped" and h.settled(a),
                          "the app to stop")
        self.assertTrue(h.connection_refused(songs_address), "a stopped app's gateway is closed")
        h.wait_until(lambda: not h.app_processes(app_id), what="the replicas to end")
        stopped = self.api.app(token, app_id)
        self.assertEqual(json.loads(self.emp(cli, "info", app_id, "-o", "json").out), stopped,
                         "-o json prints the server's body")
        out = self.emp(cli, "start", app_id).out
        self.assertIn("songs-ms", out)
        now = self.api.app(token, app_id)
        self.assertEqual((now["desired_state"], now["replicas"]["desired"]), ("running", 3))
        # a stopped app keeps a new count for its next start
        self.emp(cli, "stop", app_id)
        self.emp(cli, "scale", app_id, "4")
        self.assertEqual(self.api.app(token, app_id)["desired_state"], "stopped")
        self.emp(cli, "start", "songs-ms")
        self.assertEqual(self.api.app(token, app_id)["replicas"]["desired"], 4)
        started = self.api.wait_app(token, app_id, lambda a: a["state"] == "running"
                                    and a["replicas"]["ready"] == 4 and h.settled(a),
                                    "the app to run 4 replicas")
        self.assertEqual(started["address"], songs_address, "the same address after a start")
        self.assertEqual(h.app_request(songs_address)[0], 200)

        # REQ-14: where the traces are
        tracing = self.api.request("GET", f"/v1/apps/{app_id}/tracing", token=token).json
        self.assertIn(tracing["link"], self.emp(cli, "tracing", "songs-ms").out)

        # REQ-12: remove, and nothing of the app is left
        out = self.emp(cli, "remove", "songs-ms").out
        self.assertIn("songs-ms", out)
        h.wait_until(lambda: self.api.request("GET", f"/v1/apps/{app_id}", token=token).status
                     == 404, what="the app to be removed")
        err = self.emp(cli, "info", "songs-ms", code=1).err
        self.assertIn("songs-ms", err)
        err = self.emp(cli, "info", app_id, "-o", "json", code=1).err
        self.assertEqual(json.loads(err)["error"]["code"], "not_found")
        leftovers = {k: v for k, v in h.redis_snapshot(self.redis).items()
                     if app_id in k or app_id in repr(v)}
        self.assertEqual(leftovers, {}, "Redis still mentions the removed app")
        self.assertEqual(h.app_processes(app_id), [], "replicas of the removed app")
        self.assertTrue(h.connection_refused(songs_address), "the removed app's gateway")

        # REQ-2: log out, and the token is dead and forgotten
        self.emp(cli, "logout")
        self.assertNotIn(token, h.read_text(cli.credentials_path))
        self.assertEqual(self.api.request("GET", "/v1/apps", token=token).status, 401)
        for args in (["whoami"], ["list"], ["info", users_id]):
            err = self.emp(cli, *args, code=1).err
            self.assertIn("log in", err, args)

        time.sleep(0.2)  # the last log lines
        logs = self.stack.server.logs()
        for secret in self.secrets:
            self.assertNotIn(secret, logs, "a password or token in the server's log")

    def test_usage_errors_exit_2_and_send_nothing(self):
        cli = self.new_cli()
        self.logged_in(cli)
        bad_spec = self.write(cli, "bad.json", h.app_spec(
            "songs_ms", port=0, envs=[{"name": "PORT", "value": "1"}]))
        cases = [
            (["frobnicate"], "frobnicate"),
            (["list", "--frobnicate"], "--frobnicate"),
            (["info"], None),
            (["scale", "songs-ms"], None),
            (["scale", "songs-ms", "three"], "three"),
            (["update", "metrics", "songs-ms", "latency"], None),
            (["completion", "fish"], "fish"),
            (["deploy"], None),
            (["deploy", os.path.join(cli.home, "missing.json")], "missing.json"),
            (["deploy", self.write(cli, "broken.json", '{"name": "songs-ms",')], None),
            (["create", "account", "--username", "newbie"], "--password-stdin"),
            (["login", "--password-stdin"], "--username"),
        ]

        def run_all():
            for args, mentioned in cases:
                with self.subTest(args=args):
                    result = self.emp(cli, *args, code=2)
                    self.assertTrue(result.err.strip(), f"says why: {result}")
                    if mentioned:
                        self.assertIn(mentioned, result.err)
            # an invalid spec: every problem, nothing sent
            err = self.emp(cli, "deploy", bad_spec, code=2).err
            for field, problem in (("name", "'songs_ms'"), ("port", "port 0"),
                                   ("envs[0].name", "reserved")):
                self.assertRegex(err, re.compile(rf"^  - {re.escape(field)}: .*{problem}", re.M))

        self.assertNoRequests(run_all)

    def test_unreachable_server_exits_3(self):
        cli = self.new_cli()
        self.logged_in(cli)
        nobody = f"http://127.0.0.1:{free_port()}"
        for args in (["whoami"], ["list"], ["info", "songs-ms"], ["--server", nobody, "list"]):
            with self.subTest(args=args):
                result = self.emp(cli, *args, code=3, EMP_SERVER=nobody)
                self.assertIn(nobody.split("//")[1], result.err, "names the server")

        # a server that answers, but not JSON
        class Html(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<html>not emp</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
        self.addCleanup(httpd.server_close)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.addCleanup(httpd.shutdown)
        self.emp(cli, "list", code=3, EMP_SERVER=f"http://127.0.0.1:{httpd.server_port}")

    def test_server_stopped_exits_3(self):
        stack = h.start_stack(self.addCleanup)
        cli = h.Cli(h.make_tmpdir(self.addCleanup), stack.server.url)
        name, password = h.unique_name("bob"), h.new_password()
        stack.api.create_user(name, password)
        self.emp(cli, "login", "--username", name, "--password-stdin", input=password)
        self.emp(cli, "list")
        stack.server.stop()
        for args in (["list"], ["whoami"], ["logout"]):
            with self.subTest(args=args):
                self.emp(cli, *args, code=3)

    def test_help_and_version(self):
        cli = self.new_cli()
        version = self.api.request("GET", "/v1/version").json["version"]

        def run_all():
            self.assertEqual(self.emp(cli, "--version").out, f"emp {version}\n")
            top = self.emp(cli, "--help").out
            for command in ["create account", "login", "logout", "whoami", "deploy", "list",
                            "info", "stop", "start", "remove", "scale", "tracing",
                            "update metrics", "completion"]:
                with self.subTest(command):
                    self.assertIn(command, top)
                    out = self.emp(cli, *command.split(), "--help").out
                    self.assertIn(command, out)
            self.assertIn("--wait", self.emp(cli, "deploy", "--help").out)
            script = self.emp(cli, "completion", "bash").out
            self.assertIn("emp", script)
            check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, f"bash rejects the completion: {check.stderr}")

        self.assertNoRequests(run_all)

    def test_server_flag_and_emp_token(self):
        cli = self.new_cli()
        alice, _, _ = self.logged_in(cli, "alice")
        _, _, bob_token = self.api.new_user("bob")
        self.secrets.append(bob_token)
        nobody = f"http://127.0.0.1:{free_port()}"
        # --server wins over EMP_SERVER, before or after the command words
        for args in (["--server", cli.server_url, "whoami"], ["whoami", "--server",
                                                               cli.server_url]):
            self.assertKeyValue(self.emp(cli, *args, EMP_SERVER=nobody).out, alice, "whoami")
        # EMP_SERVER unset: the "current" server of the credentials file
        self.assertKeyValue(self.emp(cli, "whoami", EMP_SERVER=None).out, alice, "whoami")
        # EMP_TOKEN instead of the saved token
        out = self.emp(cli, "whoami", "-o", "json", EMP_TOKEN=bob_token).out
        self.assertNotEqual(json.loads(out)["username"], alice)

    def test_tokens_are_kept_per_server(self):
        other = h.start_stack(self.addCleanup)
        cli = self.new_cli()
        here, _, here_token = self.logged_in(cli, "alice")
        there, password = h.unique_name("bob"), h.new_password()
        other.api.create_user(there, password)
        self.emp(cli, "login", "--username", there, "--password-stdin", input=password,
                 EMP_SERVER=other.proxy.url)
        saved = cli.credentials()
        self.assertEqual(saved["current"], other.proxy.url, "the last login is current")
        self.assertEqual(saved["servers"][cli.server_url]["token"], here_token)
        self.assertEqual(saved["servers"][other.proxy.url]["username"], there)
        self.assertKeyValue(self.emp(cli, "whoami", EMP_SERVER=None).out, there, "current")
        self.assertKeyValue(self.emp(cli, "whoami").out, here, "EMP_SERVER")
        self.assertKeyValue(self.emp(cli, "--server", other.proxy.url, "whoami").out, there,
                            "--server")

    def test_app_argument_is_percent_encoded(self):
        cli = self.new_cli()
        self.logged_in(cli)
        for ref in ("../sessions/current", "a b", "songs?x=1", "%2e%2e"):
            with self.subTest(ref=ref):
                before = len(self.stack.proxy.requests)
                err = self.emp(cli, "info", ref, "-o", "json", code=1).err
                self.assertEqual(json.loads(err)["error"]["code"], "not_found")
                sent = self.stack.proxy.requests[before:]
                self.assertEqual(len(sent), 1, sent)
                method, target = sent[0]
                self.assertEqual(method, "GET")
                self.assertRegex(target, r"^/v1/apps/[^/?#]+$")
                self.assertEqual(urllib.parse.unquote(target[len("/v1/apps/"):]), ref)

    def test_list_follows_every_page(self):
        page = h.spec().doc["paths"]["/v1/apps"]["get"]["parameters"][0]["schema"]["default"]
        names = sorted(f"app-{i:03d}" for i in range(page + 5))
        # a server of its own, with a gateway port for each of these apps
        self.stack = h.start_stack(self.addCleanup, gateway_ports=len(names))
        self.api = self.stack.api
        cli = self.new_cli()
        _, _, token = self.logged_in(cli)
        for name in names:
            self.api.deploy(token, h.app_spec(name, replicas={"min": 1, "max": 10,
                                                              "initial": 1}))
        rows = self.emp(cli, "list").out.splitlines()[1:]
        self.assertEqual([r.split()[0] for r in rows], names, "every app, in name order")
        # the pages the CLI walked, as the API gives them
        seen, cursor = [], None
        while True:
            query = "?limit=7" + (f"&cursor={cursor}" if cursor else "")
            body = self.api.request("GET", "/v1/apps" + query, token=token).json
            seen += [a["name"] for a in body["apps"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, names)

    def test_logout_forgets_a_token_the_server_no_longer_knows(self):
        cli = self.new_cli()
        _, _, token = self.logged_in(cli)
        self.redis.delete(h.session_key(token))  # what its expiry does
        cli.run("logout")
        self.assertNotIn(token, h.read_text(cli.credentials_path))
        self.assertIn("log in", self.emp(cli, "whoami", code=1).err)

    def test_login_and_create_account_prompt_without_echo(self):
        cli = self.new_cli()
        name, password = h.unique_name("tty"), h.new_password()
        self.secrets.append(password)
        code, transcript = run_in_pty(cli, ["create", "account", "--username", name], [
            (r"(?i)password", password), (r"(?i)password", password)])
        self.assertEqual(code, 0, transcript)
        self.assertNotIn(password, transcript, "the password was echoed")
        self.api.login(name, password)

        code, transcript = run_in_pty(cli, ["login", "--username", name],
                                      [(r"(?i)password", password)])
        self.assertEqual(code, 0, transcript)
        self.assertNotIn(password, transcript, "the password was echoed")
        token = cli.credentials()["servers"][cli.server_url]["token"]
        self.assertEqual(self.api.request("GET", "/v1/sessions/current", token=token).status,
                         200)

        # asked for the username too when it is not given
        code, transcript = run_in_pty(cli, ["login"], [(r"(?i)user", name),
                                                       (r"(?i)password", password)])
        self.assertEqual(code, 0, transcript)
        self.assertIn(name, transcript, "the username is echoed as typed")
        self.assertNotIn(password, transcript)

        # the two passwords differ: no account
        other = h.unique_name("tty")
        code, transcript = run_in_pty(cli, ["create", "account", "--username", other], [
            (r"(?i)password", password), (r"(?i)password", password + "x")])
        self.assertNotEqual(code, 0, transcript)
        resp = self.api.request("POST", "/v1/sessions", {"username": other,
                                                         "password": password})
        self.assertEqual(resp.status, 401, "no account was created")


if __name__ == "__main__":
    unittest.main()
