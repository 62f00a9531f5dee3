# SPDX-License-Identifier: Apache-2.0
"""Checks the tools that EMP's tracing tests stand on, before they judge EMP: the mock Kafka broker
(emp-kafka-mock, path in $EMP_KAFKA_MOCK) against real clients (kcat, confluent-kafka in a
consumer group), spans.py's spans against Zipkin's API spec and its ground truth against an
independent reading of the spans, send_kafka.py and send_http.py end to end, and three chained
py_zipkin services (zipkin_app.py) producing one trace per request. Run with Debian's
/usr/bin/python3 (python3-confluent-kafka, -py-zipkin, -jsonschema, -yaml; kcat).
"""

import copy
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jsonschema  # noqa: E402
import yaml  # noqa: E402

import send_http  # noqa: E402
import send_kafka  # noqa: E402
import spans  # noqa: E402
from harness import (PYTHON, KafkaMock, SpanCollector, ZipkinApp, consume,  # noqa: E402
                     kafka_mock_binary)

KCAT = "/usr/bin/kcat"
SPANS_PY = os.path.join(HERE, "spans.py")
SEND_KAFKA = os.path.join(HERE, "send_kafka.py")
SEND_HTTP = os.path.join(HERE, "send_http.py")
KAFKA = None  # one broker for the module: 3 brokers, zipkin with 4 partitions

with open(os.path.join(HERE, "zipkin2-api.yaml")) as f:
    ZIPKIN_API = yaml.safe_load(f)
SPAN_SCHEMA = {"$ref": "#/definitions/Span", "definitions": ZIPKIN_API["definitions"]}
SPAN_VALIDATOR = jsonschema.Draft4Validator(SPAN_SCHEMA, format_checker=jsonschema.FormatChecker())
SPAN_FIELDS = set(ZIPKIN_API["definitions"]["Span"]["properties"])
ENDPOINT_FIELDS = set(ZIPKIN_API["definitions"]["Endpoint"]["properties"])


def span_problems(span):
    """Why span is not a valid Zipkin v2 span: the spec's Span schema, plus what its unanchored
    patterns let through (ids of exactly 16 or 32 lower-hex digits) and no unknown fields."""
    problems = [e.message for e in SPAN_VALIDATOR.iter_errors(span)]
    if not isinstance(span, dict):
        return problems
    if not re.fullmatch(r"[0-9a-f]{16}|[0-9a-f]{32}", str(span.get("traceId"))):
        problems.append("traceId %r is not 16 or 32 lower-hex digits" % span.get("traceId"))
    for key in ("id", "parentId"):
        if key in span and not re.fullmatch(r"[0-9a-f]{16}", str(span[key])):
            problems.append("%s %r is not 16 lower-hex digits" % (key, span[key]))
    problems += ["unknown field %r" % k for k in set(span) - SPAN_FIELDS]
    for ep in ("localEndpoint", "remoteEndpoint"):
        problems += ["%s: unknown field %r" % (ep, k)
                     for k in set(span.get(ep) or {}) - ENDPOINT_FIELDS]
    return problems


def sorted_truth(truth):
    t = copy.deepcopy(truth)
    for svc in t["services"].values():
        svc["durations_us"].sort()
        svc["self_us"].sort()
    for callees in t["edges"].values():
        for e in callees.values():
            e["durations_us"].sort()
            e["server_durations_us"].sort()
    return t


TOPOLOGY = {
    "alice/a": {"latency_ms": 2, "calls": ["alice/b", "alice/b", "postgres"]},
    "alice/b": {"latency_ms": (40, 60), "error_rate": 0.2, "calls": ["alice/c"]},
    "alice/c": {"latency_ms": (1, 9), "error_rate": 0.1},
    "postgres": {"instrumented": False, "latency_ms": 1, "error_rate": 0.05},
}


def setUpModule():
    global KAFKA
    KAFKA = KafkaMock(brokers=3, topics={"zipkin": 4, "apps": 2, "groups": 4}).start()


def tearDownModule():
    rc = KAFKA.stop()
    if rc != 0:
        raise AssertionError("emp-kafka-mock exited %r on SIGTERM: %s" % (rc, KAFKA.log_text()))


class MockBrokerTest(unittest.TestCase):
    def kcat(self, *args, input=None):
        p = subprocess.run([KCAT, "-b", KAFKA.bootstrap] + list(args), input=input,
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout

    def test_prints_bootstrap_and_creates_topics(self):
        self.assertRegex(KAFKA.bootstrap, r"^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}$")
        meta = json.loads(self.kcat("-L", "-J"))
        self.assertEqual(len(meta["brokers"]), 3)
        topics = {t["topic"]: len(t["partitions"]) for t in meta["topics"]}
        self.assertEqual(topics.get("zipkin"), 4)
        self.assertEqual(topics.get("apps"), 2)

    def test_options_are_checked(self):
        binary = kafka_mock_binary()
        for bad in (["--brokers", "0"], ["--brokers", "x"], ["--topic", "zipkin"],
                    ["--topic", "a b:1"], ["--topic", "zipkin:0"], ["--nope"], ["--brokers"]):
            p = subprocess.run([binary] + bad, capture_output=True, timeout=10,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"emp-kafka-mock:", p.stderr, bad)
            self.assertEqual(p.stdout, b"", bad)
        p = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--topic NAME:PARTITIONS", p.stdout)

    def test_ends_on_signal_or_stdin_close(self):
        for how in ("SIGINT", "stdin"):
            mock = KafkaMock(topics={}).start()
            try:
                if how == "SIGINT":
                    mock.proc.send_signal(signal.SIGINT)
                else:
                    mock.proc.stdin.close()
                self.assertEqual(mock.proc.wait(10), 0, how)
            finally:
                mock.stop()
        # with stdin on /dev/null (a shell's `&`), only a signal ends it
        p = subprocess.Popen([kafka_mock_binary()], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertRegex(p.stdout.readline().decode(), r"^127\.0\.0\.1:\d+$")
            time.sleep(0.3)
            self.assertIsNone(p.poll())
            p.terminate()
            self.assertEqual(p.wait(10), 0)
            self.assertEqual(p.stderr.read(), b"")  # nothing logged on a clean run
        finally:
            if p.poll() is None:
                p.kill()
            p.stdout.close()
            p.stderr.close()

    def test_kcat_produces_and_consumes(self):
        lines = [json.dumps([{"n": i}]).encode() for i in range(30)]
        self.kcat("-P", "-t", "kcat", input=b"\n".join(lines) + b"\n")  # auto-created topic
        out = self.kcat("-C", "-t", "kcat", "-o", "beginning", "-e", "-q", "-f", "%s\n")
        self.assertEqual(sorted(out.splitlines()), sorted(lines))


class SpansTest(unittest.TestCase):
    def test_deterministic_from_seed(self):
        a = spans.generate(TOPOLOGY, traces=50, seed=5, start_us=1_700_000_000_000_000)
        b = spans.generate(TOPOLOGY, traces=50, seed=5, start_us=1_700_000_000_000_000)
        c = spans.generate(TOPOLOGY, traces=50, seed=6, start_us=1_700_000_000_000_000)
        self.assertEqual(a.spans, b.spans)
        self.assertEqual(a.truth, b.truth)
        self.assertNotEqual(a.spans, c.spans)

    def test_ids_parents_and_conventions(self):
        for b3 in ("child", "shared", "mixed", "py_zipkin"):
            gen = spans.generate(TOPOLOGY, traces=40, seed=2, b3=b3)
            # a, twice (a -> b, b, b -> c, c), a -> postgres: 1 + 2 * 4 + 1 = 10 spans per trace
            self.assertEqual([len(t) for t in gen.traces], [10] * 40, b3)
            for trace in gen.traces:
                self.assertEqual(len({s["traceId"] for s in trace}), 1)
                self.assertRegex(trace[0]["traceId"], r"^[0-9a-f]{32}$")
                ids = {s["id"] for s in trace}
                roots = [s for s in trace if "parentId" not in s]
                self.assertEqual(len(roots), 1)
                self.assertEqual(roots[0]["localEndpoint"]["serviceName"], "alice/a")
                self.assertTrue(all(s["parentId"] in ids for s in trace if "parentId" in s))
                clients = {s["id"]: s for s in trace if s["kind"] == "CLIENT"}
                for s in trace:
                    if s["kind"] != "SERVER" or s is roots[0]:
                        continue
                    if s["id"] in clients:  # shared: same id and parent as the client
                        self.assertEqual(s["parentId"], clients[s["id"]]["parentId"])
                        self.assertTrue(s["shared"])
                        self.assertIn(b3, ("shared", "mixed"))
                    else:  # child: the client is the parent
                        self.assertIn(s["parentId"], clients)
                        self.assertEqual(s.get("shared", False), b3 == "py_zipkin")
                    client = clients.get(s["id"]) or clients[s["parentId"]]
                    self.assertLessEqual(client["timestamp"], s["timestamp"])
                    self.assertGreaterEqual(client["timestamp"] + client["duration"],
                                            s["timestamp"] + s["duration"])
                leaf = [c for c in clients.values()
                        if c["remoteEndpoint"].get("serviceName") == "postgres"]
                self.assertEqual(len(leaf), 1)
                self.assertFalse(any(s["localEndpoint"]["serviceName"] == "postgres"
                                     for s in trace))

    def test_truth(self):
        gen = spans.generate(TOPOLOGY, traces=300, seed=9, b3="mixed")
        t = gen.truth
        self.assertEqual((t["traces"], t["spans"]), (300, 3000))
        self.assertEqual(t["services"]["alice/a"]["requests"], 300)
        self.assertEqual(t["services"]["alice/b"]["requests"], 600)
        self.assertEqual(t["services"]["alice/c"]["requests"], 600)
        self.assertNotIn("postgres", t["services"])
        self.assertEqual(t["edges"]["alice/a"]["alice/b"]["calls"], 600)
        self.assertEqual(t["edges"]["alice/b"]["alice/c"]["calls"], 600)
        self.assertEqual(t["edges"]["alice/a"]["postgres"]["calls"], 300)
        self.assertEqual(t["edges"]["alice/a"]["postgres"]["server_durations_us"], [])
        # self time is each service's own work: a's 2 ms exactly, b's within 40-60 ms
        self.assertEqual(set(t["services"]["alice/a"]["self_us"]), {2000})
        self.assertTrue(all(40000 <= v <= 60000 for v in t["services"]["alice/b"]["self_us"]))
        # errors: c fails ~10 %, b ~20 % by itself plus c's; a fails when any call failed
        c_err = t["services"]["alice/c"]["errors"] / 600
        b_err = t["services"]["alice/b"]["errors"] / 600
        self.assertTrue(0.05 < c_err < 0.16, c_err)
        self.assertTrue(0.2 < b_err < 0.4, b_err)
        self.assertEqual(t["edges"]["alice/a"]["alice/b"]["errors"],
                         t["services"]["alice/b"]["errors"])
        errors = [s for s in gen.spans if s["kind"] == "SERVER" and spans.is_error(s)]
        styles = {("error" in s["tags"], "http.status_code" in s["tags"]) for s in errors}
        self.assertEqual(styles, {(True, True), (True, False), (False, True)})
        # B is slow: most of A's latency is B's own time
        a_p50 = spans.percentile(t["services"]["alice/a"]["durations_us"], 50)
        b_self_p50 = spans.percentile(t["services"]["alice/b"]["self_us"], 50)
        self.assertGreater(2 * b_self_p50, 0.8 * a_p50)

    def test_truth_matches_an_independent_reading(self):
        for b3 in ("child", "shared", "mixed", "py_zipkin"):
            for root_kind in ("SERVER", None):
                gen = spans.generate(TOPOLOGY, traces=100, seed=4, b3=b3, root_kind=root_kind,
                                     trace_id_bits="mixed")
                shuffled = [s for m in gen.messages(7, shuffle_seed=1) for s in m]
                self.assertEqual(sorted_truth(spans.analyze(shuffled)), sorted_truth(gen.truth),
                                 (b3, root_kind))

    def test_zipkin_examples(self):
        examples = os.path.join(HERE, "zipkin-examples")
        with open(os.path.join(examples, "two-services-client-server-skew.json")) as f:
            skew = json.load(f)
        t = spans.analyze(skew)
        self.assertEqual(t["edges"], {"servicea": {"serviceb": {
            "calls": 1, "errors": 0, "durations_us": [94539], "server_durations_us": [93577]}}})
        self.assertEqual(t["services"]["servicea"]["self_us"], [99411 - 94539])
        with open(os.path.join(examples, "yelp-multi-service.json")) as f:
            yelp = spans.analyze(json.load(f))
        self.assertIn("spectre", yelp["edges"]["mobile_api"])

    def test_percentile(self):
        values = list(range(1, 101))
        self.assertEqual(spans.percentile(values, 50), 50)
        self.assertEqual(spans.percentile(values, 99), 99)
        self.assertEqual(spans.percentile(values, 100), 100)
        self.assertEqual(spans.percentile([7], 95), 7)

    def test_cli_prints_one_message_per_line(self):
        p = subprocess.run([PYTHON, SPANS_PY, "--chain", "alice/a:2,alice/b:40-60:0.1,alice/c:5",
                            "--traces", "10", "--per-message", "4", "--seed", "3"],
                           capture_output=True, timeout=30, check=True)
        messages = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([len(m) for m in messages], [4] * 12 + [2])  # 10 traces * 5 spans


class SchemaTest(unittest.TestCase):
    def test_validator_can_fail(self):
        good = spans.generate(TOPOLOGY, traces=1, seed=1).spans[0]
        self.assertEqual(span_problems(good), [])
        for change in ({"id": "XYZ"}, {"id": "0123456789abcdef0"}, {"traceId": "0" * 20},
                       {"traceId": "ABCDEF0123456789"}, {"duration": 0}, {"kind": "SERVRE"},
                       {"timestamp": 1.5}, {"tags": {"http.status_code": 200}},
                       {"localEndpoint": {"ipv4": "300.1.1.1"}}, {"shared": "yes"},
                       {"parent_id": "0123456789abcdef"}):
            bad = dict(good, **change)
            self.assertNotEqual(span_problems(bad), [], change)
        bad = dict(good)
        del bad["traceId"]
        self.assertNotEqual(span_problems(bad), [])

    def test_generated_spans_are_valid(self):
        for b3 in ("child", "shared", "mixed", "py_zipkin"):
            gen = spans.generate(TOPOLOGY, traces=30, seed=3, b3=b3, root_kind=None,
                                 trace_id_bits="mixed")
            for s in gen.spans:
                self.assertEqual(span_problems(s), [], s)

    def test_zipkin_examples_are_valid(self):
        lists = ("two-services-client-server-skew.json", "messaging-producer-consumer.json",
                 "yelp-multi-service.json")
        for name in lists:
            with open(os.path.join(HERE, "zipkin-examples", name)) as f:
                for s in json.load(f):
                    self.assertEqual(span_problems(s), [], (name, s))


class SendTest(unittest.TestCase):
    def test_send_kafka_then_kcat_and_a_consumer_group_read_it_back(self):
        start = spans.now_us()
        gen = spans.generate(TOPOLOGY, traces=40, seed=11, start_us=start)
        messages = gen.messages(per_message=20)
        # spans.py | send_kafka.py, as a shell test would do it
        cli = subprocess.run(
            "%s %s --topology /dev/stdin --traces 40 --seed 11 --start-us %d --per-message 20 | "
            "%s %s -b %s -t groups" % (PYTHON, SPANS_PY, start, PYTHON, SEND_KAFKA,
                                       KAFKA.bootstrap),
            shell=True, input=json.dumps(TOPOLOGY).encode(), capture_output=True, timeout=60)
        self.assertEqual(cli.returncode, 0, cli.stderr.decode())
        self.assertEqual(cli.stdout.strip(), str(len(messages)).encode())
        out = subprocess.run([KCAT, "-b", KAFKA.bootstrap, "-C", "-t", "groups", "-o",
                              "beginning", "-e", "-q", "-f", "%s\n"],
                             capture_output=True, timeout=30, check=True).stdout
        got = [json.loads(line) for line in out.splitlines()]
        key = lambda m: json.dumps(m, sort_keys=True)  # noqa: E731
        self.assertEqual(sorted(map(key, got)), sorted(map(key, messages)))

        # a consumer group reads everything and commits; the next member resumes after it
        first = consume(KAFKA.bootstrap, "groups", group="emp-tracing", want=len(messages))
        self.assertEqual(sorted(map(key, map(json.loads, first))), sorted(map(key, messages)))
        more = spans.generate(TOPOLOGY, traces=5, seed=12).messages(per_message=11)
        self.assertEqual(send_kafka.send(KAFKA.bootstrap, more, topic="groups"), len(more))
        # what comes within 3 s of the last message: the partitions' fetches are answered one
        # by one, and on a loaded machine more than a second apart (1 s lost four of five here)
        second = consume(KAFKA.bootstrap, "groups", group="emp-tracing", idle_s=3.0)
        self.assertEqual(sorted(map(key, map(json.loads, second))), sorted(map(key, more)))

    def test_send_kafka_raw_and_keyed(self):
        raw = [b'[{"traceId": "trunc', b"not json", b"[]"]
        self.assertEqual(send_kafka.send(KAFKA.bootstrap, raw, topic="raw"), 3)
        self.assertEqual(sorted(consume(KAFKA.bootstrap, "raw", want=3)), sorted(raw))
        gen = spans.generate(TOPOLOGY, traces=20, seed=13)
        per_trace = [t for t in gen.traces]  # one message per trace, keyed by its trace id
        send_kafka.send(KAFKA.bootstrap, per_trace, topic="keyed", key="trace")
        out = subprocess.run([KCAT, "-b", KAFKA.bootstrap, "-C", "-t", "keyed", "-o",
                              "beginning", "-e", "-q", "-f", "%k %p\n"],
                             capture_output=True, timeout=30, check=True).stdout
        pairs = [line.split() for line in out.decode().splitlines()]
        self.assertEqual(sorted(k for k, _ in pairs), sorted(t[0]["traceId"] for t in per_trace))
        self.assertGreater(len({p for _, p in pairs}), 1)

    def test_send_http_plain_and_gzip(self):
        gen = spans.generate(TOPOLOGY, traces=6, seed=14)
        messages = gen.messages(per_message=10)
        lines = "".join(json.dumps(m) + "\n" for m in messages).encode()
        with SpanCollector() as zipkin:
            for extra in ([], ["--gzip"]):
                p = subprocess.run([PYTHON, SEND_HTTP, "--url", zipkin.url] + extra, input=lines,
                                   capture_output=True, timeout=30)
                self.assertEqual(p.returncode, 0, p.stderr.decode())
                self.assertEqual(p.stdout.strip(), str(len(messages)).encode())
            self.assertEqual(len(zipkin.requests), 2 * len(messages))
            for i, r in enumerate(zipkin.requests):
                gz = i >= len(messages)
                self.assertEqual(r["path"], "/api/v2/spans")
                self.assertEqual(r["headers"]["Content-Type"], "application/json")
                self.assertEqual(r["headers"].get("Content-Encoding"), "gzip" if gz else None)
                self.assertEqual(r["raw"][:2] == b"\x1f\x8b", gz)
                self.assertEqual(json.loads(r["body"]), messages[i % len(messages)])
            self.assertEqual(gzip.decompress(zipkin.requests[-1]["raw"]),
                             zipkin.requests[-1]["body"])
        with SpanCollector(status=400) as refusing:
            p = subprocess.run([PYTHON, SEND_HTTP, "--url", refusing.url], input=lines,
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"status 400, expected 202", p.stderr)
            self.assertEqual(send_http.post(refusing.url, messages[0])[0], 400)


class ZipkinAppTest(unittest.TestCase):
    """Three py_zipkin services A -> B -> C; one request to A must give one trace of 5 spans:
    A's server span, A's client span, B's server span, B's client span, C's server span."""

    def chain(self, stack, **transport):
        c = stack(ZipkinApp("alice/c", delay_ms="2", **transport))
        b = stack(ZipkinApp("alice/b", calls=[c.url], delay_ms="30", **transport))
        a = stack(ZipkinApp("alice/a", calls=[b.url], delay_ms="1", **transport))
        with urllib.request.urlopen(a.url, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
            return json.load(resp)

    def check_trace(self, trace, b3):
        by = {(s["localEndpoint"]["serviceName"], s["kind"]): s for s in trace}
        self.assertEqual(len(trace), 5, json.dumps(trace, indent=1))
        self.assertEqual(set(by), {("alice/a", "SERVER"), ("alice/a", "CLIENT"),
                                   ("alice/b", "SERVER"), ("alice/b", "CLIENT"),
                                   ("alice/c", "SERVER")})
        for s in trace:
            self.assertEqual(span_problems(s), [], s)
            self.assertIsInstance(s["timestamp"], int)
            self.assertIsInstance(s["duration"], int)
        a_srv, a_cli = by[("alice/a", "SERVER")], by[("alice/a", "CLIENT")]
        b_srv, b_cli = by[("alice/b", "SERVER")], by[("alice/b", "CLIENT")]
        c_srv = by[("alice/c", "SERVER")]
        self.assertNotIn("parentId", a_srv)
        self.assertNotIn("shared", a_srv)
        self.assertEqual(a_cli["parentId"], a_srv["id"])
        self.assertEqual(b_cli["parentId"], b_srv["id"])
        for cli, srv in ((a_cli, b_srv), (b_cli, c_srv)):
            self.assertTrue(srv["shared"])  # py_zipkin marks every joined server span shared
            if b3 == "shared":
                self.assertEqual((srv["id"], srv["parentId"]), (cli["id"], cli["parentId"]))
            else:
                self.assertEqual(srv["parentId"], cli["id"])
                self.assertNotEqual(srv["id"], cli["id"])
            self.assertNotIn("remoteEndpoint", cli)  # py_zipkin names no remote by itself
            self.assertLessEqual(cli["timestamp"], srv["timestamp"])
            self.assertGreaterEqual(cli["timestamp"] + cli["duration"],
                                    srv["timestamp"] + srv["duration"])
        self.assertGreater(b_srv["duration"], 30000)
        truth = spans.analyze(trace)
        self.assertEqual({c: {d: e["calls"] for d, e in x.items()}
                          for c, x in truth["edges"].items()},
                         {"alice/a": {"alice/b": 1}, "alice/b": {"alice/c": 1}})
        self.assertEqual({k: v["requests"] for k, v in truth["services"].items()},
                         {"alice/a": 1, "alice/b": 1, "alice/c": 1})
        self.assertGreater(truth["services"]["alice/b"]["self_us"][0], 30000)

    def run_chain(self, **transport):
        started = []

        def stack(app):
            started.append(app.start())
            return app

        try:
            return self.chain(stack, **transport)
        finally:
            for app in reversed(started):
                rc = app.stop()
                self.assertEqual(rc, 0, app.log_text())

    def test_chain_over_kafka(self):
        body = self.run_chain(kafka=KAFKA.bootstrap, topic="apps")
        # each service sends its own spans in one message when its request ends: 3 messages
        values = consume(KAFKA.bootstrap, "apps", want=3)
        lists = [json.loads(v) for v in values]
        self.assertTrue(all(isinstance(m, list) for m in lists))
        trace = [s for m in lists for s in m]
        self.assertEqual({s["traceId"] for s in trace}, {body["trace_id"]})
        self.assertRegex(body["trace_id"], r"^[0-9a-f]{32}$")
        self.check_trace(trace, "child")

    def test_chain_over_http_with_shared_spans(self):
        with SpanCollector() as zipkin:
            # a base URL, as EMP_ZIPKIN_URL may be: the app posts to /api/v2/spans
            body = self.run_chain(transport="http", http_url=zipkin.base_url, b3="shared")
            trace = zipkin.wait_for_spans(5, trace_id=body["trace_id"])
            self.assertEqual({r["path"] for r in zipkin.requests}, {"/api/v2/spans"})
            self.assertEqual(len(zipkin.requests), 3)
        self.check_trace(trace, "shared")

    def test_errors_and_uninstrumented_callee(self):
        with SpanCollector() as zipkin:
            c = ZipkinApp("alice/c", transport="http", http_url=zipkin.url).start()
            a = ZipkinApp("alice/a", calls=["postgres=http://127.0.0.1:9/", c.url + "?status=503"],
                          transport="http", http_url=zipkin.url).start()
            try:
                try:
                    urllib.request.urlopen(a.url, timeout=30)
                    self.fail("a failed call must fail the request")
                except urllib.error.HTTPError as e:
                    self.assertEqual(e.code, 502)
                trace = zipkin.wait_for_spans(4)
            finally:
                self.assertEqual(a.stop(), 0)
                self.assertEqual(c.stop(), 0)
        truth = spans.analyze(trace)
        self.assertEqual(truth["edges"]["alice/a"]["postgres"]["calls"], 1)
        self.assertEqual(truth["edges"]["alice/a"]["postgres"]["errors"], 1)
        self.assertEqual(truth["edges"]["alice/a"]["alice/c"]["errors"], 1)
        self.assertEqual(truth["services"]["alice/c"]["errors"], 1)
        self.assertEqual(truth["services"]["alice/a"]["errors"], 1)
        leaf = [s for s in trace if (s.get("remoteEndpoint") or {}).get("serviceName")]
        self.assertEqual(leaf[0]["remoteEndpoint"], {"serviceName": "postgres", "port": 9,
                                                     "ipv4": "127.0.0.1"})


if __name__ == "__main__":
    unittest.main()
