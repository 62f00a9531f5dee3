# SPDX-License-Identifier: Apache-2.0
"""Tracing (issue 5) end to end: Zipkin v2 spans through the mock Kafka broker (emp-kafka-mock,
librdkafka's mock cluster) and through POST /api/v2/spans into two emp-servers that share one Redis
and one consumer group, and out again as per-app metrics, the dependency graph and the ingestion
counters, through the REST API (checked against api/openapi.yaml by the SpecProxy) and the emp
CLI. The spans come from tests/tracing (spans.py, send_kafka.py, kcat, py_zipkin's zipkin_app.py);
the numbers EMP reports are compared with what the test computes from the spans it sent: counts
exactly, percentiles within the histogram's stated relative error."""

import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(HERE), "tracing")
sys.path.insert(0, HERE)
import harness as h  # noqa: E402  (the e2e harness; tests/tracing has a harness.py of its own)
from harness import edge, metrics  # noqa: E402

sys.path.append(TOOLS)
import send_http  # noqa: E402
import send_kafka  # noqa: E402
import spans  # noqa: E402

th = h.tracing_tools()

KCAT = "/usr/bin/kcat"
TOPIC = "zipkin"
PARTITIONS = 4
WINDOW = "10m"  # covers spans stamped a minute or two ago for the whole run
SESSION_TIMEOUT = "6s"  # the mock cluster's rejoin waits session.timeout - 1 s
OTHERS = "(other users' services)"
RELATIVE_ERROR = 1 / 64
RSS_BOUND_MIB = 200
# Zipkin's reporters send without a key; librdkafka's sticky partitioner would then put a quick
# burst on one partition. Without lingering, each message goes to a random partition, so that a
# trace's messages reach both consumers (and their halves meet in Redis).
SPREAD = "sticky.partitioning.linger.ms=0"
SPREAD_CONFIG = dict([SPREAD.split("=")])


def service_of(span):
    return (span.get("localEndpoint") or {}).get("serviceName")


def per_request_messages(traces):
    """One message per (trace, service), as py_zipkin sends them: a request's spans together."""
    messages = []
    for trace in traces:
        by_service = collections.OrderedDict()
        for s in trace:
            by_service.setdefault(service_of(s), []).append(s)
        messages.extend(by_service.values())
    return messages


def kcat_produce(bootstrap, messages, topic=TOPIC):
    """Produces each message (a list of spans) as one line with kcat."""
    data = b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)
    proc = subprocess.run([KCAT, "-P", "-b", bootstrap, "-t", topic, "-X",
                           "message.max.bytes=16777216", "-X", SPREAD],
                          input=data, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"kcat -P exited with {proc.returncode}: {proc.stderr[-2000:]!r}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def sanitized(pid):
    """Whether the process runs with AddressSanitizer (its shadow memory and quarantine count in
    its RSS)."""
    with open(f"/proc/{pid}/maps") as f:
        return "asan" in f.read()


class TracingStack:
    """emp-kafka-mock, redis-server and emp-servers in one consumer group, each behind its own
    SpecProxy."""

    def __init__(self, add_cleanup, servers=2, scheduler=True, args=()):
        self.add_cleanup = add_cleanup
        self.tmp = h.make_tmpdir(add_cleanup)
        self.kafka = th.KafkaMock(topics={TOPIC: PARTITIONS}).start()
        add_cleanup(self.kafka.stop)
        self.redis = h.RedisServer(os.path.join(self.tmp, "redis")).start()
        add_cleanup(self.redis.stop)
        self.scheduler_token = None
        common = ["--kafka-brokers", self.kafka.bootstrap, "--kafka-session-timeout",
                  SESSION_TIMEOUT, "--resync", "1d"] + list(args)
        if scheduler:
            self.scheduler_token = "sched-" + os.urandom(16).hex()
            path = os.path.join(self.tmp, "scheduler-token")
            with open(path, "w") as f:
                f.write(self.scheduler_token + "\n")
            common += ["--scheduler-token-file", path]
        self.servers, self.proxies, self.apis = [], [], []
        for i in range(servers):
            args = list(common) + (["--reconcile-workers", "0"] if i > 0 else [])
            server = h.EmpServer(os.path.join(self.tmp, f"state{i}"), self.redis.url, args)
            add_cleanup(server.stop)
            server.start()
            proxy = h.SpecProxy(server.port)
            add_cleanup(proxy.close)
            self.servers.append(server)
            self.proxies.append(proxy)
            self.apis.append(h.Api(proxy.url))

    @property
    def api(self):
        return self.apis[0]

    def restart(self, index, kill):
        server = self.servers[index]
        if kill:
            server.kill()
        else:
            server.signal(signal.SIGTERM)
            code = server.wait(30)
            if code != 0:
                raise AssertionError(f"emp-server exited with {code} on SIGTERM:\n"
                                     f"{server.crash_report()}")
        server.start()
        self.proxies[index].retarget(server.port)

    def status(self, index, token):
        r = self.apis[index].request("GET", "/v1/tracing", token=token)
        if r.status != 200:
            raise AssertionError(f"GET /v1/tracing: {r}")
        return r.json

    def wait_for_partitions(self, token, timeout=40):
        """Waits until every consumer has partitions and together they hold all of them."""
        def spread():
            got = [self.status(i, token)["kafka"]["assigned_partitions"]
                   for i in range(len(self.servers))]
            return got if all(got) and sum(got) == PARTITIONS else None
        return h.wait_until(spread, timeout, 0.2,
                            what=f"{len(self.servers)} consumers to share {PARTITIONS} partitions")

    def user(self, prefix):
        """(username, password, token) of a new account."""
        return self.api.new_user(prefix)

    def deploy(self, token, name):
        return self.api.deploy(token, h.app_spec(name, replicas={"min": 1, "max": 3,
                                                                 "initial": 1}))


class TracingAssertions:
    def assertPercentile(self, got_ms, values_us, q, what):
        """got_ms (EMP's, 2 decimals) is within the histogram's relative error (+ the rounding)
        of the value that holds rank q among values_us."""
        want = spans.percentile(values_us, q) / 1000.0
        self.assertIsNotNone(got_ms, f"{what} p{q}: null, want {want:.3f} ms")
        self.assertLessEqual(abs(got_ms - want), want * RELATIVE_ERROR + 0.01,
                             f"{what} p{q}: EMP says {got_ms} ms, the spans {want:.3f} ms")

    def assertLatencies(self, lat, values_us, what, qs=(50, 90, 95, 99)):
        for q in qs:
            self.assertPercentile(lat[f"p{q}"], values_us, q, what)


class ChainTest(h.E2ETestCase, TracingAssertions):
    """A → B → C of alice's (B slow, 10 % of B's requests fail), and bob's front calling her C,
    sent through Kafka to two emp-servers in one group."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = stack = TracingStack(cls.addClassCleanup)
        api = stack.api
        cls.alice, cls.alice_pw, cls.alice_token = stack.user("alice")
        cls.bob, _, cls.bob_token = stack.user("bob")
        cls.apps = {}
        for short in ("a", "b", "c"):
            cls.apps[f"{cls.alice}/{short}"] = stack.deploy(cls.alice_token, short)
        cls.apps[f"{cls.bob}/front"] = stack.deploy(cls.bob_token, "front")
        cls.a, cls.b, cls.c = (f"{cls.alice}/{x}" for x in ("a", "b", "c"))
        cls.front = f"{cls.bob}/front"
        cls.partitions = stack.wait_for_partitions(stack.scheduler_token)

        start = spans.now_us() - 60_000_000
        chain = spans.generate(spans.chain([cls.a, cls.b, cls.c], latency_ms=[2, (40, 60), 5],
                                           error_rate=[0, 0.1, 0]),
                               traces=400, seed=7, start_us=start, b3="py_zipkin")
        other = spans.generate(spans.chain([cls.front, cls.c], latency_ms=[3, 5]),
                               traces=50, seed=8, start_us=start + 500_000, b3="py_zipkin")
        cls.sent = chain.spans + other.spans
        cls.truth = spans.analyze(cls.sent)
        # the generator's truth and the linker's reading of the spans agree
        assert cls.truth["services"][cls.b]["requests"] == chain.truth["services"][cls.b][
            "requests"]
        messages = per_request_messages(chain.traces + other.traces)
        random.Random(3).shuffle(messages)
        half = len(messages) // 2
        cls.sending_at_ms = int(time.time() * 1000)
        kcat_produce(stack.kafka.bootstrap, messages[:half])
        send_kafka.send(stack.kafka.bootstrap, messages[half:], config=SPREAD_CONFIG)
        cls.messages_sent = len(messages)

        # everything counted: every app's requests and every edge's calls
        def counted():
            for service in cls.truth["services"]:
                m = metrics(api, stack.scheduler_token, cls.apps[service]["id"])
                if m["requests"] != cls.truth["services"][service]["requests"]:
                    return False
                for callee, e in cls.truth["edges"].get(service, {}).items():
                    out = edge(m["dependencies"]["outgoing"], callee)
                    if not out or out["calls"] != e["calls"]:
                        return False
            return True

        h.wait_until(counted, 40, 0.5, what="EMP to count the chain's spans")
        cls.counted_at_ms = int(time.time() * 1000)
        # offsets are committed once their counts are in Redis (and the join windows passed)
        cls.status_after = h.wait_until(
            lambda: (lambda st: st if all(s["kafka"]["committed_offsets"] for s in st) else None)(
                [stack.status(i, stack.scheduler_token) for i in range(2)]),
            20, 0.3, what="both consumers to commit offsets")

    @classmethod
    def scheduler_token(cls):
        return cls.stack.scheduler_token

    def m(self, service, token=None, index=0):
        return metrics(self.stack.apis[index], token or self.alice_token,
                       self.apps[service]["id"])

    # ---- the numbers ----

    def test_requests_errors_and_latency_per_app_match_the_spans(self):
        for index, service in enumerate((self.a, self.b, self.c)):
            # either emp-server answers for what both counted
            m = self.m(service, index=index % 2)
            t = self.truth["services"][service]
            self.assertEqual(m["service"], service)
            self.assertEqual(m["requests"], t["requests"], service)
            self.assertEqual(m["errors"], t["errors"], service)
            self.assertAlmostEqual(m["error_rate"], t["errors"] / t["requests"], places=6)
            self.assertEqual(m["window_s"], 600)
            self.assertAlmostEqual(m["rate_rps"], round(t["requests"] / 600, 3), places=6)
            self.assertEqual(m["latency_relative_error"], RELATIVE_ERROR)
            self.assertLatencies(m["latency_ms"], t["durations_us"], service)
            self.assertLatencies(m["self_time_ms"], t["self_us"], service + " self time",
                                 qs=(50, 95, 99))
        self.assertGreater(self.truth["services"][self.b]["errors"], 10)
        self.assertEqual(self.truth["services"][self.c]["requests"], 450)

    def test_edges_have_exact_calls_and_errors_and_their_latency(self):
        for caller, callees in self.truth["edges"].items():
            for callee, t in callees.items():
                m = self.m(caller, token=self.stack.scheduler_token)
                out = edge(m["dependencies"]["outgoing"], callee)
                self.assertIsNotNone(out, f"{caller} -> {callee}: {m['dependencies']}")
                self.assertEqual((out["calls"], out["errors"]), (t["calls"], t["errors"]),
                                 f"{caller} -> {callee}")
                self.assertEqual(out["app_id"], self.apps[callee]["id"])
                self.assertLatencies(out["latency_ms"], t["durations_us"],
                                     f"{caller} -> {callee}", qs=(50, 95, 99))
                inc = edge(self.m(callee, token=self.stack.scheduler_token)
                           ["dependencies"]["incoming"], caller)
                self.assertIsNotNone(inc, f"{callee} called by {caller}")
                self.assertEqual((inc["calls"], inc["errors"]), (t["calls"], t["errors"]))
        a = self.m(self.a)
        self.assertEqual([d["service"] for d in a["dependencies"]["outgoing"]], [self.b])
        self.assertEqual(a["dependencies"]["incoming"], [])
        self.assertEqual(self.m(self.c)["dependencies"]["outgoing"], [])
        self.assertEqual(self.truth["edges"][self.a][self.b]["calls"], 400)
        self.assertEqual(self.truth["edges"][self.b][self.c]["calls"], 400)

    def test_b_is_slow_in_its_own_code_and_a_only_waits_on_it(self):
        a, b = self.m(self.a), self.m(self.b)
        self.assertLess(a["self_time_ms"]["p95"], 5, a["self_time_ms"])
        self.assertGreater(b["self_time_ms"]["p95"], 10 * a["self_time_ms"]["p95"])
        self.assertGreater(b["self_time_ms"]["p95"], 0.5 * a["latency_ms"]["p95"],
                           "B's own time is the large part of A's latency")

    def test_both_consumers_had_partitions_and_their_numbers_add_up(self):
        kafka = [s["kafka"] for s in self.status_after]
        self.assertTrue(all(k["assigned_partitions"] > 0 for k in kafka), kafka)
        self.assertEqual(sum(k["assigned_partitions"] for k in kafka), PARTITIONS)
        self.assertTrue(all(k["consumed_messages"] > 0 for k in kafka), kafka)
        self.assertEqual(sum(k["consumed_messages"] for k in kafka), self.messages_sent, kafka)
        here = [s["this_server"] for s in self.status_after]
        self.assertEqual(sum(x["spans"] for x in here), len(self.sent))
        self.assertEqual(sum(x["bad_spans"] for x in here), 0)
        # each says when it last counted a span: after the spans were sent, before all were seen
        for x in here:
            self.assertGreaterEqual(x["last_span_at_ms"], self.sending_at_ms, x)
            self.assertLessEqual(x["last_span_at_ms"], self.counted_at_ms, x)
        both = self.status_after[0]["all_servers"]
        self.assertEqual(both, self.status_after[1]["all_servers"])
        self.assertEqual(both["spans"], len(self.sent))
        self.assertEqual(both["messages"], self.messages_sent)
        self.assertEqual(both["bad_messages"] + both["bad_spans"] + both["unknown_service"], 0)

    # ---- who sees what ----

    def test_another_user_gets_404_for_alices_metrics_and_tracing(self):
        for ref in (self.apps[self.a]["id"], self.apps[self.b]["id"]):
            for suffix in ("metrics", "tracing"):
                r = self.stack.api.request("GET", f"/v1/apps/{ref}/{suffix}",
                                           token=self.bob_token)
                self.assertError(r, 404, "not_found")
        r = self.stack.api.request("GET", f"/v1/apps/{self.apps[self.a]['id']}/metrics")
        self.assertEqual(r.status, 401, r)
        r = self.stack.api.request("GET", "/v1/tracing")
        self.assertEqual(r.status, 401, r)

    def test_a_window_that_is_no_whole_number_of_buckets_is_refused(self):
        ref = self.apps[self.a]["id"]
        for path in (f"/v1/apps/{ref}/metrics?window=15s", "/v1/graph?window=2h"):
            r = self.stack.api.request("GET", path, token=self.alice_token)
            self.assertError(r, 422, "invalid_field", "window", field="window")

    def test_alice_sees_bobs_calls_only_summed_and_unnamed(self):
        c = self.m(self.c)
        incoming = {d["service"]: d for d in c["dependencies"]["incoming"]}
        self.assertEqual(set(incoming), {self.b, OTHERS}, incoming)
        self.assertEqual(incoming[OTHERS]["calls"], 50)
        self.assertIsNone(incoming[OTHERS]["app_id"])
        self.assertNotIn(self.bob, json.dumps(c))
        r = self.stack.api.request("GET", f"/v1/graph?window={WINDOW}", token=self.alice_token)
        self.assertEqual(r.status, 200, r)
        graph = r.json
        self.assertNotIn(self.bob, json.dumps(graph), "alice's graph names none of bob's")
        self.assertEqual({s["service"] for s in graph["services"]},
                         {self.a, self.b, self.c, OTHERS})
        others = {s["service"]: s for s in graph["services"]}[OTHERS]
        self.assertEqual((others["app_id"], others["emp_app"]), (None, False))
        self.assertEqual({(e["from"], e["to"]): e["calls"] for e in graph["calls"]},
                         {(self.a, self.b): 400, (self.b, self.c): 400, (OTHERS, self.c): 50})
        # and bob's graph: his call to alice's service, which he named, but not her app id
        r = self.stack.api.request("GET", f"/v1/graph?window={WINDOW}", token=self.bob_token)
        graph = r.json
        self.assertEqual([(e["from"], e["to"], e["calls"]) for e in graph["calls"]],
                         [(self.front, self.c, 50)])
        nodes = {s["service"]: s for s in graph["services"]}
        self.assertIsNone(nodes[self.c]["app_id"])
        self.assertNotIn(self.apps[self.c]["id"], json.dumps(graph))
        self.assertNotIn(self.a, json.dumps(graph))

    def test_the_scheduler_sees_every_app_and_the_whole_graph(self):
        token = self.stack.scheduler_token
        c = self.m(self.c, token=token, index=1)
        incoming = {d["service"]: d for d in c["dependencies"]["incoming"]}
        self.assertEqual(set(incoming), {self.b, self.front})
        self.assertEqual(incoming[self.front]["calls"], 50)
        self.assertEqual(incoming[self.front]["app_id"], self.apps[self.front]["id"])
        front = self.m(self.front, token=token)
        self.assertEqual(front["requests"], 50)
        r = self.stack.apis[1].request("GET", f"/v1/graph?window={WINDOW}", token=token)
        self.assertEqual(r.status, 200, r)
        calls = {(e["from"], e["to"]): e["calls"] for e in r.json["calls"]}
        self.assertEqual(calls, {(self.a, self.b): 400, (self.b, self.c): 400,
                                 (self.front, self.c): 50})
        nodes = {s["service"]: s for s in r.json["services"]}
        self.assertEqual(set(nodes), set(self.apps))
        for service, app in self.apps.items():
            self.assertEqual(nodes[service]["app_id"], app["id"])
            self.assertEqual(nodes[service]["requests"],
                             self.truth["services"][service]["requests"])

    # ---- the CLI ----

    def cli(self):
        cli = h.Cli(h.make_tmpdir(self.addCleanup), self.stack.proxies[1].url)
        r = cli.run("login", "--username", self.alice, "--password-stdin",
                    input=self.alice_pw + "\n")
        self.assertEqual(r.code, 0, r)
        return cli

    def test_emp_metrics_table_and_json(self):
        cli = self.cli()
        t = self.truth["services"][self.b]
        r = cli.run("metrics", "b", "--window", WINDOW)
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, rf"service:\s+{re.escape(self.b)}\n")
        self.assertRegex(r.out, rf"requests:\s+{t['requests']} \(")
        self.assertRegex(r.out, rf"errors:\s+{t['errors']} \(")
        out_part, in_part = r.out.split("called by:")
        self.assertIn(self.c, out_part.split("calls out:")[1])
        self.assertRegex(in_part, rf"{re.escape(self.a)}\s+400\s")
        r = cli.run("metrics", "b", "--window", WINDOW, "-o", "json")
        self.assertEqual(r.code, 0, r)
        doc = json.loads(r.out)
        self.assertEqual((doc["requests"], doc["errors"]), (t["requests"], t["errors"]))
        self.assertEqual(doc["app_id"], self.apps[self.b]["id"])
        r = cli.run("metrics", "b", "--window", "7s")
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("window", r.err)

    def test_emp_metrics_watch_refreshes(self):
        cli = self.cli()
        proc = subprocess.Popen([h.cli_bin(), "metrics", "a", "--window", WINDOW, "--watch"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=cli.env(), start_new_session=True,
                                text=True)
        try:
            time.sleep(5)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        shown = re.findall(rf"requests:\s+{self.truth['services'][self.a]['requests']} \(", out)
        self.assertGreaterEqual(len(shown), 2, f"--watch refreshed: {out!r} {err!r}")
        self.assertEqual(len(re.findall(rf"service:\s+{re.escape(self.a)}\n", out)), len(shown),
                         out)

    def test_emp_graph_json_text_and_dot(self):
        cli = self.cli()
        r = cli.run("graph", "--window", WINDOW, "-o", "json")
        self.assertEqual(r.code, 0, r)
        calls = {(e["from"], e["to"]): (e["calls"], e["errors"])
                 for e in json.loads(r.out)["calls"]}
        ab, bc = self.truth["edges"][self.a][self.b], self.truth["edges"][self.b][self.c]
        self.assertEqual(calls, {(self.a, self.b): (ab["calls"], ab["errors"]),
                                 (self.b, self.c): (bc["calls"], bc["errors"]),
                                 (OTHERS, self.c): (50, 0)})
        r = cli.run("graph", "--window", WINDOW)
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, rf"{re.escape(self.a)}\s+{re.escape(self.b)}\s+400\s")
        r = cli.run("graph", "--window", WINDOW, "-o", "dot")
        self.assertEqual(r.code, 0, r)
        nodes, edges = parse_dot(r.out)
        self.assertEqual(set(nodes), {self.a, self.b, self.c, OTHERS})
        self.assertEqual(set(edges), {(self.a, self.b), (self.b, self.c), (OTHERS, self.c)})
        self.assertIn("400 calls", edges[(self.a, self.b)]["label"])
        label = nodes[self.a]["label"]
        self.assertTrue(label.startswith(self.a + "\\n"), f"a line break after the name: {label!r}")

    def test_emp_tracing(self):
        cli = self.cli()
        r = cli.run("tracing", "a")
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, rf"service:\s+{re.escape(self.a)}\n")
        self.assertIn("zipkin/?serviceName=" + urllib.parse.quote(self.a, safe=""), r.out)
        self.assertIn(f"{self.truth['services'][self.a]['requests']} requests", r.out)
        self.assertIn("calls 1 service, called by 0", r.out)
        r = cli.run("tracing", "a", "-o", "json")
        self.assertEqual(r.code, 0, r)
        doc = json.loads(r.out)
        self.assertEqual(doc["service"], self.a)
        self.assertEqual(doc["summary"]["requests"], self.truth["services"][self.a]["requests"])


def parse_dot(text):
    """A strict reader of the DOT that `emp graph -o dot` prints: `digraph NAME { ... }` with
    attribute statements, node statements and edge statements, IDs quoted or plain. Returns
    ({node: attrs}, {(from, to): attrs}); raises ValueError on anything else."""
    token = re.compile(r'\s*(?:(->)|([{}\[\];,=])|"((?:[^"\\]|\\.)*)"'
                       r'|([A-Za-z_][A-Za-z_0-9]*|-?\d+(?:\.\d+)?))', re.S)
    toks, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = token.match(text, pos)
        if not m:
            raise ValueError(f"DOT: cannot read at {text[pos:pos + 40]!r}")
        pos = m.end()
        if m.group(1) or m.group(2):
            toks.append(("op", m.group(1) or m.group(2)))
        elif m.group(3) is not None:
            toks.append(("id", m.group(3).replace('\\"', '"')))
        else:
            toks.append(("id", m.group(4)))
    i = 0

    def take(kind, value=None):
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            raise ValueError(f"DOT: expected {value or kind} at token {i}: {toks[i:i + 3]}")
        i += 1
        return toks[i - 1][1]

    def attrs():
        out = {}
        if i < len(toks) and toks[i] == ("op", "["):
            take("op", "[")
            while toks[i] != ("op", "]"):
                k = take("id")
                take("op", "=")
                out[k] = take("id")
                if toks[i] == ("op", ","):
                    take("op", ",")
            take("op", "]")
        return out

    if take("id") != "digraph":
        raise ValueError("DOT: not a digraph")
    if toks[i][0] == "id":
        take("id")
    take("op", "{")
    nodes, edges = {}, {}
    while toks[i] != ("op", "}"):
        first = take("id")
        if toks[i] == ("op", "="):
            take("op", "=")
            take("id")
        elif first in ("node", "edge", "graph"):
            attrs()
        elif toks[i] == ("op", "->"):
            take("op", "->")
            second = take("id")
            edges[(first, second)] = attrs()
        else:
            nodes[first] = attrs()
        take("op", ";")
    take("op", "}")
    if i != len(toks):
        raise ValueError("DOT: text after the graph")
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"DOT: edge {a} -> {b} to an undeclared node")
    return nodes, edges


class IngestTest(h.E2ETestCase, TracingAssertions):
    """Bad input through Kafka, and the HTTP collector endpoint, on two emp-servers in one group."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = stack = TracingStack(cls.addClassCleanup)
        cls.alice, _, cls.token = stack.user("alice")
        cls.apps = {}
        for short in ("good", "front", "back", "http"):
            cls.apps[short] = stack.deploy(cls.token, short)
        stack.wait_for_partitions(stack.scheduler_token)

    def service(self, short):
        return f"{self.alice}/{short}"

    def requests(self, short, window=WINDOW):
        return metrics(self.stack.api, self.token, self.apps[short]["id"], window)

    def stats(self):
        s = [self.stack.status(i, self.token) for i in range(2)]
        return s

    def test_bad_messages_and_spans_from_kafka_are_counted_and_skipped(self):
        stack = self.stack
        pids = [s.proc.pid for s in stack.servers]
        before = self.stats()
        svc = self.service("good")
        now = spans.now_us() - 30_000_000

        def span(**changes):
            s = {"traceId": os.urandom(16).hex(), "id": os.urandom(8).hex(), "kind": "SERVER",
                 "timestamp": now, "duration": 1000, "name": "get /",
                 "localEndpoint": {"serviceName": svc}}
            s.update(changes)
            return {k: v for k, v in s.items() if v is not None}

        good_one = span()
        bad_messages = [
            json.dumps([span(), span()])[:-30].encode(),                  # truncated
            b'{"traceId": "a"}',                                          # not a list
            b"\xff\xfe not json at all",
        ]
        # 6 MB once inflated, beyond EMP's 5 MiB. Compressed on the wire: the mock cluster keeps
        # at most 5 MiB per partition and drops a bigger record batch (with what came before it
        # in its partition) as soon as it is stored.
        huge = b"[" + json.dumps(span()).encode() + b"]" + b" " * (6 << 20)
        bad_spans = [
            span(traceId=12345),                                           # wrong type
            span(duration="1000"),                                         # wrong type
            span(tags={f"tag{i}": "v" for i in range(10000)}),              # 10,000 tags
            span(kind="WEIRD"),                                            # unknown kind
            span(duration=-5),                                             # negative duration
            span(id="zzzzzzzzzzzzzzzz"),                                   # non-hex id
            span(traceId="0123456789abcdef0123456789abcdeg"),              # non-hex trace id
            span(localEndpoint={"serviceName": 7}),                        # wrong type
        ]
        raw = bad_messages + [json.dumps([good_one] + bad_spans).encode()]
        send_kafka.send(stack.kafka.bootstrap, raw, config=SPREAD_CONFIG)
        send_kafka.send(stack.kafka.bootstrap, [huge], compression="gzip")
        bad_messages.append(huge)
        raw.append(huge)
        # the consumers go on: good spans sent after all that are counted
        gen = spans.generate({svc: {"latency_ms": (1, 3)}}, traces=200, seed=11,
                             start_us=now + 1000)
        send_kafka.send(stack.kafka.bootstrap, gen.messages(per_message=20, shuffle_seed=1),
                        config=SPREAD_CONFIG)
        want = 1 + 200

        h.wait_until(lambda: self.requests("good")["requests"] >= want, 30, 0.3,
                     what=lambda: f"the good spans sent after the bad ones to be counted: "
                     f"{self.requests('good')['requests']} of {want}; {self.stats()}; "
                     f"logs: {[s.logs()[-3000:] for s in stack.servers]}")
        time.sleep(1.5)  # anything more would show now
        m = self.requests("good")
        self.assertEqual(m["requests"], want)
        self.assertLatencies(m["latency_ms"], [1000] + gen.truth["services"][svc]["durations_us"],
                             svc)

        def settled():
            after = self.stats()
            d = {k: after[0]["all_servers"][k] - before[0]["all_servers"][k]
                 for k in after[0]["all_servers"]}
            return d if d["messages"] == len(raw) + 10 else None

        delta = h.wait_until(settled, 20, 0.3, what=lambda: f"{len(raw) + 10} messages to be "
                             f"counted: {self.stats()}, before {before}")
        self.assertEqual(delta["bad_messages"], len(bad_messages), delta)
        self.assertEqual(delta["bad_spans"], len(bad_spans), delta)
        self.assertEqual(delta["spans"], want, delta)
        after = self.stats()
        here = sum(a["this_server"]["bad_messages"] - b["this_server"]["bad_messages"]
                   for a, b in zip(after, before))
        self.assertEqual(here, len(bad_messages))
        for server in stack.servers:
            self.assertTrue(server.running(), server.crash_report())
        for pid in pids:
            bound = RSS_BOUND_MIB * (3 if sanitized(pid) else 1)
            rss = rss_mib(pid)
            print(f"emp-server {pid}: VmRSS {rss:.1f} MiB after the bad input (bound {bound})",
                  file=sys.stderr)
            self.assertLess(rss, bound, f"emp-server {pid}'s RSS")

    def test_http_collector_answers_like_zipkin(self):
        stack = self.stack
        url = stack.proxies[1].url + "/api/v2/spans"
        svc = self.service("http")
        gen = spans.generate({svc: {"latency_ms": 4}}, traces=30, seed=21,
                             start_us=spans.now_us() - 30_000_000)
        plain, zipped = gen.spans[:20], gen.spans[20:]
        status, body = send_http.post(url, plain)
        self.assertEqual((status, json.loads(body)), (202, {"spans": 20, "bad_spans": 0}))
        status, body = send_http.post(url, zipped + [{"traceId": "x", "id": "y"}], gzip=True)
        self.assertEqual((status, json.loads(body)), (202, {"spans": 10, "bad_spans": 1}))

        api = stack.apis[1]
        r = api.request("POST", "/api/v2/spans", b'[{"traceId": ', content_type="application/json")
        self.assertError(r, 400, "bad_request")
        r = api.request("POST", "/api/v2/spans", json.dumps(plain), content_type="text/plain")
        self.assertError(r, 415, "unsupported_media_type")
        r = api.request("POST", "/api/v2/spans", b"[" + b" " * (6 << 20) + b"]")
        self.assertError(r, 413, "payload_too_large")
        r = api.request("GET", "/api/v2/spans")
        self.assertEqual(r.status, 405, r)

        # with Kafka configured, what came over HTTP is on the topic, and counted from there
        values = th.consume(stack.kafka.bootstrap, TOPIC, timeout_s=30)
        on_topic = [s for v in values if v.startswith(b"[{") and svc.encode() in v
                    for s in json.loads(v) if service_of(s) == svc]
        self.assertEqual(sorted(s["id"] for s in on_topic), sorted(s["id"] for s in gen.spans))
        h.wait_until(lambda: self.requests("http")["requests"] == 30, 30, 0.3,
                     what="the spans POSTed to be counted")

    def test_py_zipkin_apps_over_http_give_their_edge(self):
        stack = self.stack
        front, back = self.service("front"), self.service("back")
        collector = stack.servers[0].url + "/api/v2/spans"
        with th.ZipkinApp(back, transport="http", http_url=collector, delay_ms="20") as b_app, \
                th.ZipkinApp(front, calls=[b_app.url], transport="http", http_url=collector,
                             delay_ms="1") as f_app:
            for _ in range(12):
                with urllib.request.urlopen(f_app.url, timeout=10) as resp:
                    self.assertEqual(resp.status, 200)
        # the window ends at the last whole 10 s bucket: these spans show once theirs is whole
        def seen():
            m = self.requests("front", window="60s")
            out = edge(m["dependencies"]["outgoing"], back)
            return m if out and out["calls"] == 12 and m["requests"] == 12 else None

        m = h.wait_until(seen, 40, 0.5, what=f"the edge {front} -> {back}")
        b = self.requests("back", window="60s")
        self.assertEqual(b["requests"], 12)
        self.assertEqual(edge(b["dependencies"]["incoming"], front)["calls"], 12)
        self.assertGreater(b["self_time_ms"]["p50"], 15)
        self.assertLess(m["self_time_ms"]["p50"], b["self_time_ms"]["p50"])
        self.assertEqual(m["errors"], 0)


class RestartTest(h.E2ETestCase):
    """emp-server stopped or killed while a stream of spans goes through Kafka."""

    def stream(self, stack, traces, seed):
        """Starts sending the messages of `traces` traces of a -> b, slowly; returns
        (thread, truth, messages)."""
        a, b = f"{self.alice}/a", f"{self.alice}/b"
        gen = spans.generate(spans.chain([a, b], latency_ms=[2, 10]), traces=traces, seed=seed,
                             start_us=spans.now_us() - 90_000_000, b3="py_zipkin")
        messages = per_request_messages(gen.traces)
        errors = []

        def run():
            from confluent_kafka import Producer
            try:
                producer = Producer({"bootstrap.servers": stack.kafka.bootstrap,
                                     "linger.ms": 5, **SPREAD_CONFIG})
                for i in range(0, len(messages), 20):
                    for m in messages[i:i + 20]:
                        producer.produce(TOPIC, json.dumps(m, separators=(",", ":")).encode())
                    producer.poll(0)
                    time.sleep(0.1)
                if producer.flush(30):
                    errors.append("messages left undelivered")
            except Exception as e:  # noqa: BLE001  reported by the test
                errors.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, gen.truth, messages, errors

    def setUp(self):
        super().setUp()
        self.stack = TracingStack(self.addCleanup, servers=1)
        self.alice, _, self.token = self.stack.user("alice")
        self.apps = {s: self.stack.deploy(self.token, s) for s in ("a", "b")}
        self.stack.wait_for_partitions(self.stack.scheduler_token)

    def requests(self):
        return {s: metrics(self.stack.api, self.token, app["id"])["requests"]
                for s, app in self.apps.items()}

    def wait_consumed(self, n):
        h.wait_until(lambda: self.stack.status(0, self.token)["kafka"]["consumed_messages"] >= n,
                     20, 0.02, what=f"{n} messages to be consumed")

    def test_sigterm_mid_stream_counts_each_span_once(self):
        thread, truth, messages, errors = self.stream(self.stack, 800, 31)
        self.wait_consumed(len(messages) // 4)
        self.stack.restart(0, kill=False)
        thread.join(60)
        self.assertEqual(errors, [])
        want = {s: truth["services"][f"{self.alice}/{s}"]["requests"] for s in self.apps}
        h.wait_until(lambda: self.requests() == want, 40, 0.5,
                     what=lambda: f"counts {self.requests()} to reach {want}")
        time.sleep(3)  # nothing is counted twice later
        self.assertEqual(self.requests(), want)
        m = metrics(self.stack.api, self.token, self.apps["a"]["id"])
        self.assertEqual(edge(m["dependencies"]["outgoing"], f"{self.alice}/b")["calls"], 800)

    def test_sigkill_mid_stream_counts_at_least_once_within_the_uncommitted(self):
        from confluent_kafka import Consumer, TopicPartition

        thread, truth, messages, errors = self.stream(self.stack, 800, 41)
        h.wait_until(lambda: self.stack.status(0, self.token)["kafka"]["committed_offsets"] > 0,
                     30, 0.05, what="a first commit")
        self.assertTrue(thread.is_alive(), "the stream is still going at the kill")
        self.stack.servers[0].kill()
        reader = Consumer({"bootstrap.servers": self.stack.kafka.bootstrap,
                           "group.id": "emp-tracing", "enable.auto.commit": False})
        try:
            parts = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
            committed = reader.committed(parts, timeout=10)
            thread.join(60)
            self.assertEqual(errors, [])
            beyond = 0
            for tp in committed:
                _, high = reader.get_watermark_offsets(TopicPartition(TOPIC, tp.partition),
                                                       timeout=10)
                beyond += high - max(tp.offset, 0)
        finally:
            reader.close()
        self.stack.servers[0].start()
        self.stack.proxies[0].retarget(self.stack.servers[0].port)
        # every message holds one request (one server span): the uncommitted ones may count twice
        sent = sum(truth["services"][f"{self.alice}/{s}"]["requests"] for s in self.apps)
        self.assertEqual(sent, len(messages))
        already = len(messages) - beyond  # messages the group had committed at the kill
        self.assertGreater(already, 0, "some offsets were committed before the kill")
        h.wait_until(lambda: sum(self.requests().values()) >= sent, 60, 0.5,
                     what=lambda: f"counts {self.requests()} to reach {sent} in all")
        time.sleep(3)
        counted = sum(self.requests().values())
        print(f"SIGKILL: sent {sent} requests, {beyond} messages beyond the committed offsets, "
              f"counted {counted}", file=sys.stderr)
        self.assertGreaterEqual(counted, sent)
        self.assertLessEqual(counted, sent + beyond)


class BacklogTest(h.E2ETestCase):
    """A backlog several times what emp-server lets wait to be counted (--kafka-inbox-mb 1): it
    pauses its partitions, resumes them as the backlog drains, and counts every span once."""

    MESSAGES = 32
    SPANS_PER_MESSAGE = 1000  # ~7 MB in all; one fetch brings more than the inbox takes

    def setUp(self):
        super().setUp()
        self.stack = TracingStack(self.addCleanup, servers=1, args=["--kafka-inbox-mb", "1"])
        self.alice, _, self.token = self.stack.user("alice")
        self.app = self.stack.deploy(self.token, "big")
        self.stack.wait_for_partitions(self.stack.scheduler_token)

    def test_a_backlog_beyond_the_inbox_pauses_resumes_and_counts_each_span_once(self):
        stack, server = self.stack, self.stack.servers[0]
        service = f"{self.alice}/big"
        rng = random.Random(7)
        ts = spans.now_us() - 60_000_000
        messages = []
        for i in range(self.MESSAGES):
            trace = "%032x" % rng.getrandbits(128)
            messages.append([{"traceId": trace, "id": "%016x" % (j + 1), "kind": "SERVER",
                              "name": "get /big", "timestamp": ts + i * 1000 + j, "duration": 1500,
                              "localEndpoint": {"serviceName": service},
                              "tags": {"http.path": "/big"}}
                             for j in range(self.SPANS_PER_MESSAGE)])
        size = sum(len(json.dumps(m, separators=(",", ":"))) for m in messages)
        self.assertGreater(size, 6 << 20, "the backlog is several times the 1 MiB that may wait")
        # the backlog waits on the topic while emp-server is stopped, so that it finds all of it
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait(30), 0, server.crash_report())
        kcat_produce(stack.kafka.bootstrap, messages)
        server.start()
        stack.proxies[0].retarget(server.port)
        want = self.MESSAGES * self.SPANS_PER_MESSAGE

        def requests():
            return metrics(stack.api, self.token, self.app["id"])["requests"]
        h.wait_until(lambda: requests() == want, 90, 0.25,
                     what=lambda: f"{want} requests counted (now {requests()})")
        kafka = stack.status(0, self.token)["kafka"]
        self.assertEqual(kafka["consumed_messages"], self.MESSAGES, kafka)
        # it paused (a pause takes every partition it has: that the rest of the backlog was
        # consumed says it resumed). How often depends on how fast the workers count against
        # how fast fetches come, which no backlog size fixes: once the workers outrun the
        # fetches, only the first burst fills the inbox.
        self.assertGreaterEqual(kafka["pauses"], 1, f"the consumer did not pause: {kafka}")
        time.sleep(2)  # and nothing comes twice later (a resume fetches from after the last)
        self.assertEqual(requests(), want)


if __name__ == "__main__":
    unittest.main()
