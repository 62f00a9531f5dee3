# SPDX-License-Identifier: Apache-2.0
"""songs-ms (issue 7) end to end on the local backend: examples/songs-ms/deploy.sh, run with the
emp CLI on PATH, deploys the six py_zipkin-traced services to an emp-server whose apps send their
spans through the mock Kafka broker (emp-kafka-mock) to its consumer; a scripted user journey goes
through the songs-ms gateway (sign up, a wrong password, log in, add songs, make a playlist, add
songs to it, read it back through the aggregator); `songs` is stopped and started again (its data
and its address stay, so the other services still reach it); and EMP's metrics (the REST API and
`emp metrics -o json`) and graph (`emp graph -o json`) must show every request and every call of
the journey, with exactly the counts the test computes from the requests it made."""

import collections
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

th = h.tracing_tools()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "songs-ms")
DEPLOY = os.path.join(EXAMPLE, "deploy.sh")
SERVICES = ("users", "auth", "songs", "playlists", "aggregator", "gateway")
TOPIC, PARTITIONS = "zipkin", 4
WINDOW = "10m"  # longer than the whole run: every span of the journey is in it
COUNTED_S = 90  # spans reach the counts after the 10 s bucket they are in ends (generous: ASan)
PASSWORD = "a long password"


class Journey:
    """Requests to the songs-ms gateway, and what each makes EMP count: a request to the gateway
    is one of its server spans; each call (caller, callee) of it is one call on that edge and,
    when the callee answered, one server span of the callee."""

    def __init__(self, address):
        self.address = address
        self.calls = collections.Counter()  # (caller, callee): calls
        self.call_errors = collections.Counter()  # (caller, callee): failed calls
        self.requests = collections.Counter()  # service: server spans
        self.errors = collections.Counter()  # service: server spans with status >= 500
        self.log = []  # (method, path, status, body) of every request

    def request(self, method, path, status, calls, body=None, token=None, failed=()):
        """Sends the request, which must answer status; calls are the calls between services it
        makes, failed those of them that get no answer. Returns the JSON body."""
        headers = {"Authorization": "Bearer " + token} if token else None
        got, doc = h.app_request(self.address, method, path, timeout=30, body=body,
                                 headers=headers)
        self.log.append((method, path, got, doc))
        if got != status:
            raise AssertionError(f"{method} {path} through the gateway answered {got}, "
                                 f"want {status}: {doc}")
        self.requests["gateway"] += 1
        if status >= 500:
            self.errors["gateway"] += 1
        for caller, callee in calls:
            self.calls[caller, callee] += 1
            if (caller, callee) in failed:
                self.call_errors[caller, callee] += 1
            else:
                self.requests[callee] += 1
        return doc

    def sign_up(self, email, name):
        return self.request("POST", "/users", 201, [("gateway", "users")],
                            {"email": email, "name": name, "password": PASSWORD})

    def login(self, email, password, status=200):
        return self.request("POST", "/login", status, [("gateway", "auth"), ("auth", "users")],
                            {"email": email, "password": password})

    def add_song(self, token, user_id, n):
        song = {"title": f"Song {n}", "artist": "The Testers", "album": "Journey",
                "release_year": 2000 + n, "path": f"/music/song{n}.mp3", "user_id": user_id}
        doc = self.request("POST", "/songs", 201, [("gateway", "songs")], song, token)
        return doc, song

    def playlist_with_songs(self, token, playlist_id, song_count):
        return self.request("GET", f"/playlists/songs/{playlist_id}", 200,
                            [("gateway", "aggregator"), ("aggregator", "playlists")]
                            + [("aggregator", "songs")] * song_count, token=token)


class SongsMsTest(h.E2ETestCase):
    """One stack for the class: the journey runs once in setUpClass, the tests check what it
    answered and what EMP counted."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cleanup = cls.addClassCleanup
        cls.kafka = th.KafkaMock(topics={TOPIC: PARTITIONS}).start()
        cleanup(cls.kafka.stop)
        cls.stack = h.start_stack(cleanup, ["--kafka-brokers", cls.kafka.bootstrap,
                                            "--kafka-session-timeout", "6s"])
        cls.api = cls.stack.api
        cls.cli, cls.username, cls.token = h.logged_in_cli(cls.stack, cleanup, "songs")
        cleanup(cls.remove_all)

        cls.deploy()
        cls.apps = {name: cls.api.app(cls.token, name) for name in SERVICES}
        # the consumer starts at the newest offsets: spans sent before it has its partitions
        # would not be counted
        h.wait_until(lambda: cls.tracing()["kafka"]["assigned_partitions"] == PARTITIONS, 40,
                     0.2, what=lambda: f"emp-server's consumer to get the {PARTITIONS} "
                     f"partitions: {cls.tracing()}")
        cls.run_journey()
        cls.wait_counted()

    @classmethod
    def remove_all(cls):
        if cls.stack.server.running():
            subprocess.run(["bash", DEPLOY, "--remove", "--purge"], env=cls.deploy_env(),
                           capture_output=True, timeout=120)

    @classmethod
    def deploy_env(cls):
        """The CLI's environment, with `emp` on PATH (a directory holding only it)."""
        bindir = os.path.join(cls.cli.home, "bin")
        if not os.path.exists(os.path.join(bindir, "emp")):
            os.makedirs(bindir, exist_ok=True)
            os.symlink(h.cli_bin(), os.path.join(bindir, "emp"))
        return cls.cli.env(PATH=bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
                           DEPLOY_TIMEOUT="90s")

    @classmethod
    def deploy(cls):
        started = time.monotonic()
        proc = subprocess.run(["bash", DEPLOY], env=cls.deploy_env(), capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        cls.deploy_s = time.monotonic() - started
        print(f"deploy.sh took {cls.deploy_s:.1f} s", file=sys.stderr)
        if proc.returncode != 0:
            raise AssertionError(f"deploy.sh exited with {proc.returncode}:\n{proc.stdout}\n"
                                 f"{proc.stderr}\n{cls.stack.server.logs()[-4000:]}")
        cls.deploy_out, cls.deploy_err = proc.stdout, proc.stderr

    @classmethod
    def tracing(cls):
        r = cls.api.request("GET", "/v1/tracing", token=cls.token)
        if r.status != 200:
            raise AssertionError(f"GET /v1/tracing: {r}")
        return r.json

    @classmethod
    def run_journey(cls):
        j = cls.journey = Journey(cls.apps["gateway"]["address"])
        cls.user = j.sign_up("ann@example.com", "Ann")
        cls.bad_login = j.login("ann@example.com", "not the password", status=401)
        cls.session = j.login("ann@example.com", PASSWORD)
        token, user_id = cls.session["token"], cls.user["id"]
        cls.songs = [j.add_song(token, user_id, n) for n in range(1, 4)]
        cls.song_ids = [doc["id"] for doc, _ in cls.songs]
        cls.playlist = j.request("POST", "/playlists", 201, [("gateway", "playlists")],
                                 {"name": "Road trip", "user_id": user_id}, token)
        pid = cls.playlist["id"]
        cls.added = [j.request("POST", f"/playlists/songs/{pid}", 201,
                               [("gateway", "playlists")],
                               {"song_id": song_id, "user_id": user_id}, token)
                     for song_id in cls.song_ids]
        cls.read = j.playlist_with_songs(token, pid, len(cls.song_ids))
        cls.search = j.request("GET", "/songs/search?q=Testers", 200, [("gateway", "songs")],
                               token=token)

        # songs stopped: the gateway's call finds nothing there (503, a failed call); started
        # again: its data, at the same address, which the others were given when they started
        songs = cls.apps["songs"]
        cls.songs_address_before = songs["address"]
        r = cls.cli.run("stop", "songs")
        if r.code != 0:
            raise AssertionError(f"emp stop songs: {r}")
        cls.stopped = cls.api.wait_app(cls.token, "songs", lambda a: a["state"] == "stopped"
                                       and h.settled(a), "songs to stop")
        h.wait_until(lambda: not h.app_processes(songs["id"]), what="songs' replica to end")
        cls.while_stopped = j.request("GET", f"/songs/{cls.song_ids[0]}", 503,
                                      [("gateway", "songs")], token=token,
                                      failed=[("gateway", "songs")])
        r = cls.cli.run("start", "songs")
        if r.code != 0:
            raise AssertionError(f"emp start songs: {r}")
        cls.restarted = cls.api.wait_app(
            cls.token, "songs", lambda a: a["state"] == "running" and h.settled(a)
            and a["replicas"]["ready"] == 1, "songs to run again", timeout=60)
        cls.after_restart = [j.request("GET", f"/songs/{song_id}", 200, [("gateway", "songs")],
                                       token=token) for song_id in cls.song_ids]
        cls.read_again = j.playlist_with_songs(token, pid, len(cls.song_ids))
        cls.journey_done = time.time()

    @classmethod
    def service(cls, name):
        return f"{cls.username}/{name}"

    @classmethod
    def counted(cls):
        """Whether the REST API's metrics show at least the journey's requests and calls."""
        j = cls.journey
        for name in SERVICES:
            m = h.metrics(cls.api, cls.token, cls.apps[name]["id"], WINDOW)
            if m["requests"] < j.requests[name]:
                return False
            for (caller, callee), calls in j.calls.items():
                if caller == name:
                    out = h.edge(m["dependencies"]["outgoing"], cls.service(callee))
                    if out is None or out["calls"] < calls:
                        return False
        return True

    @classmethod
    def wait_counted(cls):
        started = time.monotonic()
        h.wait_until(cls.counted, COUNTED_S, 0.5,
                     what=lambda: "EMP to count the journey: " + json.dumps(
                         {n: h.metrics(cls.api, cls.token, cls.apps[n]["id"], WINDOW)
                          for n in SERVICES})[:6000] + f"; tracing: {cls.tracing()}")
        print(f"counted {time.monotonic() - started:.1f} s after the journey", file=sys.stderr)
        # anything more (a span counted twice, a stray request) would show within a flush and a
        # join window of the last span: the counts must stay where they are
        time.sleep(4)

    def emp_json(self, *args):
        r = self.cli.run(*args, "-o", "json")
        self.assertEqual(r.code, 0, r)
        return json.loads(r.out)

    # ---- deploy.sh ----

    def test_deploy_sh_runs_the_six_from_this_checkout_and_prints_the_gateway(self):
        gateway = self.apps["gateway"]
        self.assertEqual(self.deploy_out.strip().splitlines()[-1], f"http://{gateway['address']}")
        self.assertIn("songs-ms is up", self.deploy_err)
        jwt_secrets = set()
        for name in SERVICES:
            app = self.emp_json("info", name)
            self.assertEqual(app["state"], "running", app)
            self.assertEqual(app["owner"], self.username)
            spec = app["spec"]
            self.assertEqual(spec["command"],
                             ["/usr/bin/python3", os.path.join(EXAMPLE, "serve.py"), name])
            with open(os.path.join(EXAMPLE, name, "app.json")) as f:
                shipped = json.load(f)
            envs = {e["name"]: e["value"] for e in spec["envs"]}
            # the references stay as written; every service but the gateway got the secret
            self.assertEqual({k: v for k, v in envs.items() if k != "JWT_SECRET"},
                             {e["name"]: e["value"] for e in shipped["envs"]}, name)
            self.assertEqual("JWT_SECRET" in envs, name != "gateway", name)
            if name != "gateway":
                jwt_secrets.add(envs["JWT_SECRET"])
                self.assertGreaterEqual(len(envs["JWT_SECRET"]), 16)
            self.assertEqual(spec["stateless"], shipped["stateless"], name)
            self.assertEqual(app["replicas"]["ready"], shipped["replicas"]["initial"], name)
        self.assertEqual(len(jwt_secrets), 1, "the five share one JWT secret")
        # --print-spec prints what was sent (but for the secret it does not know)
        out = subprocess.run(["bash", DEPLOY, "--print-spec", "aggregator"], capture_output=True,
                             text=True, timeout=30,
                             env=h.clean_env(JWT_SECRET=jwt_secrets.pop()))
        self.assertEqual(out.returncode, 0, out)
        printed = json.loads(out.stdout)
        served = self.emp_json("info", "aggregator")["spec"]
        for key in ("name", "command", "envs", "port", "stateless", "replicas", "health_check",
                    "quality_metrics"):
            self.assertEqual(printed[key], served[key], key)
        # a second deploy.sh refuses before it changes anything
        proc = subprocess.run(["bash", DEPLOY], env=self.deploy_env(), capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 1, proc)
        self.assertIn("exists already", proc.stderr)

    # ---- the journey's answers ----

    def test_journey_answers_like_a_real_app(self):
        user, session = self.user, self.session
        self.assertEqual((user["email"], user["name"]), ("ann@example.com", "Ann"))
        self.assertNotIn("password", json.dumps(user), "no password, not even hashed")
        self.assertEqual(self.bad_login["error"]["code"], "unauthorized", self.bad_login)
        self.assertEqual(session["user_id"], user["id"])
        self.assertEqual(session["token_type"], "Bearer")
        for doc, sent in self.songs:
            self.assertEqual({k: doc[k] for k in sent}, sent)
        self.assertEqual(len(set(self.song_ids)), 3)
        self.assertEqual(self.playlist, {"id": self.playlist["id"], "name": "Road trip",
                                         "user_id": user["id"], "songs": []})
        self.assertEqual([a["songs"] for a in self.added],
                         [self.song_ids[:1], self.song_ids[:2], self.song_ids])
        # the aggregator: the playlist with every song's details, in the playlist's order
        want = {"id": self.playlist["id"], "name": "Road trip", "user_id": user["id"],
                "songs": [doc for doc, _ in self.songs], "missing_songs": []}
        self.assertEqual(self.read, want)
        self.assertEqual([s["id"] for s in self.search["songs"]], self.song_ids)

    def test_songs_keeps_its_data_and_its_address_across_stop_and_start(self):
        self.assertIsNone(self.stopped["address"])
        self.assertEqual(self.while_stopped["error"]["code"], "upstream_unavailable",
                         self.while_stopped)
        self.assertEqual(self.restarted["address"], self.songs_address_before,
                         "start serves songs on the address the others were given")
        self.assertEqual(self.after_restart, [doc for doc, _ in self.songs])
        # the aggregator, started before the restart, still reaches songs where it was
        self.assertEqual(self.read_again, self.read)
        for name in ("aggregator", "gateway"):
            pids = h.app_processes(self.apps[name]["id"])
            self.assertEqual(len(pids), 2, name)
            for pid in pids:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
                self.assertEqual(env[b"SONGS_URL"].decode(), self.songs_address_before,
                                 f"{name}'s ${{app:songs}}")
        # one SQLite file, kept by EMP across the stop
        found = [os.path.join(d, f) for d, _, files in os.walk(self.stack.server.state_dir)
                 for f in files if f == "songs.db"]
        self.assertEqual(len(found), 1, found)

    # ---- what EMP counted ----

    def test_metrics_count_every_request_and_call_of_the_journey(self):
        j = self.journey
        for name in SERVICES:
            via_cli = self.emp_json("metrics", name, "--window", WINDOW)
            via_api = h.metrics(self.api, self.token, self.apps[name]["id"], WINDOW)
            for m in (via_cli, via_api):
                self.assertEqual(m["service"], self.service(name))
                self.assertEqual((m["requests"], m["errors"]),
                                 (j.requests[name], j.errors[name]), name)
                out = {d["service"]: (d["calls"], d["errors"])
                       for d in m["dependencies"]["outgoing"]}
                self.assertEqual(out, {self.service(callee): (calls, j.call_errors[c, callee])
                                       for (c, callee), calls in j.calls.items() if c == name},
                                 f"{name} calls")
                inc = {d["service"]: (d["calls"], d["errors"])
                       for d in m["dependencies"]["incoming"]}
                self.assertEqual(inc, {self.service(caller): (calls, j.call_errors[caller, c])
                                       for (caller, c), calls in j.calls.items() if c == name},
                                 f"{name} called by")
                for d in m["dependencies"]["outgoing"]:
                    self.assertEqual(d["app_id"], self.apps[d["service"].split("/")[1]]["id"])
        # the numbers the helper who wrote the app gave, for this journey: 1 sign-up, 2 logins,
        # 3 songs added, 1 playlist with 3 songs added, read twice, 1 search, 4 songs read
        self.assertEqual(dict(j.calls), {
            ("gateway", "users"): 1, ("gateway", "auth"): 2, ("auth", "users"): 2,
            ("gateway", "songs"): 3 + 1 + 1 + 3, ("gateway", "playlists"): 1 + 3,
            ("gateway", "aggregator"): 2, ("aggregator", "playlists"): 2,
            ("aggregator", "songs"): 6})
        self.assertEqual(j.requests["gateway"], len(j.log))
        # every server span is a request someone made: the gateway's from the journey, the
        # others' from the calls that reached them
        for name in SERVICES[:-1]:
            self.assertEqual(j.requests[name], sum(
                calls - j.call_errors[edge] for edge, calls in j.calls.items() if edge[1] == name))

    def test_graph_shows_every_edge_with_its_calls(self):
        j = self.journey
        graph = self.emp_json("graph", "--window", WINDOW)
        self.assertFalse(graph["truncated"])
        self.assertEqual({(e["from"], e["to"]): (e["calls"], e["errors"]) for e in graph["calls"]},
                         {(self.service(a), self.service(b)): (calls, j.call_errors[a, b])
                          for (a, b), calls in j.calls.items()})
        nodes = {s["service"]: s for s in graph["services"]}
        self.assertEqual(set(nodes), {self.service(n) for n in SERVICES})
        for name in SERVICES:
            node = nodes[self.service(name)]
            self.assertEqual((node["app_id"], node["emp_app"]), (self.apps[name]["id"], True))
            self.assertEqual(node["requests"], j.requests[name], name)
        r = self.cli.run("graph", "--window", WINDOW)
        self.assertEqual(r.code, 0, r)
        for caller, callee in j.calls:
            self.assertRegex(r.out, rf"{self.service(caller)}\s+{self.service(callee)}\s+"
                             rf"{j.calls[caller, callee]}\s")


if __name__ == "__main__":
    unittest.main()
