# SPDX-License-Identifier: Apache-2.0
"""Test peers for EMP's tracing tests, started from Python: the mock Kafka broker, py_zipkin apps
and an in-process Zipkin HTTP collector, plus reading a topic back. Children are started with a
pipe on stdin, so they end with the test process even when it dies.

    with KafkaMock(topics={"zipkin": 4}) as kafka:       # $EMP_KAFKA_MOCK, set by ctest
        send_kafka.send(kafka.bootstrap, gen.messages(50))
        values = consume(kafka.bootstrap, "zipkin", want=n)          # no group, from the start
        values = consume(kafka.bootstrap, "zipkin", group="g", want=n)  # commits what it read
    app = ZipkinApp("alice/c", kafka=kafka.bootstrap).start()        # app.url
    with SpanCollector() as zipkin:                                  # zipkin.url, zipkin.spans()

Only the standard library here; consume() and ZipkinApp need python3-confluent-kafka.
"""

import gzip
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
ZIPKIN_APP = os.path.join(HERE, "zipkin_app.py")

# The mock cluster's consumer groups (librdkafka 2.0.2): the first join of a group waits 3 s; a
# join after a member left waits session.timeout.ms - 1 s; a member that vanished without leaving
# is dropped after session.timeout.ms. Below about 4 s no member gets through the first join.
GROUP_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _first_line(proc, what, timeout_s):
    """The first stdout line of proc, waiting at most timeout_s; raises if it exits first."""
    deadline = time.time() + timeout_s
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.time()
        if left <= 0:
            raise RuntimeError("%s printed no address within %ss" % (what, timeout_s))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("%s exited with %s before printing its address"
                                   % (what, proc.wait()))
            buf += chunk
    return buf.split(b"\n", 1)[0].decode().strip()


class _Child:
    """A child process that prints its address first and serves until SIGTERM or stdin EOF."""

    def __init__(self, argv, name, env=None):
        self.argv = argv
        self.name = name
        self.env = env
        self.proc = None
        self.address = None
        self.log = tempfile.NamedTemporaryFile(prefix="emp-%s-" % name.replace("/", "-"),
                                               suffix=".log", delete=False)

    def start(self, timeout_s=15):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=self.env)
        try:
            self.address = _first_line(self.proc, self.name, timeout_s)
        except RuntimeError:
            self.stop()
            raise RuntimeError("%s did not start: %s" % (self.name, self.log_text()))
        return self

    def stop(self, timeout_s=15):
        """SIGTERM, then the exit code (SIGKILL after timeout_s, and an AssertionError)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s ignored SIGTERM for %ss" % (self.name, timeout_s))
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
        self.proc = None
        return rc

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
        os.unlink(self.log.name)


def kafka_mock_binary():
    path = os.environ.get("EMP_KAFKA_MOCK")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("set EMP_KAFKA_MOCK to the built emp-kafka-mock (ctest does): %r"
                           % path)
    return path


class KafkaMock(_Child):
    """emp-kafka-mock with `brokers` brokers and the given {topic: partitions}."""

    def __init__(self, brokers=1, topics=None, binary=None):
        argv = [binary or kafka_mock_binary(), "--brokers", str(brokers)]
        for topic, partitions in (topics if topics is not None else {"zipkin": 4}).items():
            argv += ["--topic", "%s:%d" % (topic, partitions)]
        super().__init__(argv, "emp-kafka-mock")

    @property
    def bootstrap(self):
        return self.address


class ZipkinApp(_Child):
    """zipkin_app.py as service `service`; extra options as keyword arguments
    (delay_ms="40", b3="shared", calls=[url, ...], http_url=..., kafka=..., transport=...)."""

    def __init__(self, service, calls=(), env=None, **options):
        argv = [PYTHON, ZIPKIN_APP, "--service", service]
        if calls:
            argv += ["--calls"] + list(calls)
        for key, value in options.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        super().__init__(argv, service, env)

    @property
    def url(self):
        return self.address


def consume(bootstrap, topic="zipkin", want=None, group=None, timeout_s=20, idle_s=1.0,
            config=None):
    """Reads message values (bytes) from topic. Without group: every partition from the start,
    no commits. With group: as a member of that consumer group (from the committed offsets, else
    the start), committing what it read before it leaves. Stops when `want` messages are read, or
    (want None) when nothing came for idle_s after the assignment; raises after timeout_s."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    conf = {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "group.id": group or "emp-test-reader"}
    conf.update(GROUP_CONFIG)
    conf.update(config or {})
    consumer = Consumer(conf)
    values = []
    try:
        if group is None:
            meta = consumer.list_topics(topic, timeout=10)
            parts = meta.topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        else:
            consumer.subscribe([topic])
        deadline = time.time() + timeout_s
        last = None
        while want is None or len(values) < want:
            if time.time() > deadline:
                raise AssertionError("consume %s: %d messages after %ss, wanted %s"
                                     % (topic, len(values), timeout_s, want))
            msg = consumer.poll(0.1)
            if msg is None:
                if want is None and last is not None and time.time() - last > idle_s:
                    break
                if want is None and last is None and consumer.assignment():
                    last = time.time()
                continue
            if msg.error():
                raise AssertionError("consume %s: %s" % (topic, msg.error()))
            values.append(msg.value())
            last = time.time()
        if group is not None and values:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


class SpanCollector:
    """An in-process Zipkin collector: POST /api/v2/spans answers 202 and keeps the request
    (headers, decoded body); gzip bodies (Content-Encoding: gzip) are decompressed."""

    def __init__(self, status=202):
        self.status = status
        self.requests = []
        self.lock = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                raw = body
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with collector.lock:
                    collector.requests.append({"path": self.path, "headers": dict(self.headers),
                                               "raw": raw, "body": body})
                    collector.lock.notify_all()
                self.send_response(collector.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d/api/v2/spans" % self.server.server_address[1]

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def spans(self):
        with self.lock:
            return [s for r in self.requests for s in json.loads(r["body"])]

    def wait_for_spans(self, n, timeout_s=10, trace_id=None):
        """Waits until n spans (of trace_id, if given) arrived; returns them."""
        deadline = time.time() + timeout_s
        with self.lock:
            while True:
                got = [s for r in self.requests for s in json.loads(r["body"])
                       if trace_id is None or s.get("traceId") == trace_id]
                if len(got) >= n or time.time() > deadline:
                    return got
                self.lock.wait(max(0.01, deadline - time.time()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    print(__doc__, file=sys.stderr)
    sys.exit(2)
