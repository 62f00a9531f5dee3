#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A small instrumented service for EMP's tracing tests, traced with py_zipkin (Debian's
python3-py-zipkin, the real Zipkin library) the way a py_zipkin user writes it: GET / runs in a
server span of service NAME, calls each --calls URL in a client span with B3 headers, and
py_zipkin reports the spans in Zipkin V2 JSON, to Kafka (one message = one JSON list, topic zipkin)
or over HTTP (POST /api/v2/spans). Not a benchmark target: one thread per request.

    zipkin_app.py --service NAME [--port P] [--host 127.0.0.1] [--calls [SERVICE=]URL ...]
        [--transport kafka|http] [--kafka BOOTSTRAP] [--topic zipkin] [--http-url URL]
        [--delay-ms MS|LOW-HIGH] [--error-rate F] [--seed N] [--b3 child|shared] [--verbose]

Defaults come from what EMP gives an app: PORT, EMP_SERVICE_NAME, KAFKAADDRESS, EMP_ZIPKIN_URL
(a base URL gets /api/v2/spans appended); the transport is kafka when a Kafka address is known,
else http. --calls SERVICE=URL also records the callee in the client span's remoteEndpoint (for a
callee that is not traced itself). --b3 child (py_zipkin's create_http_headers_for_new_span: the
callee's server span is a child of the client span) or shared (the callee's server span reuses the
client span's id). GET /?status=N answers N (a 5xx is tagged as an error); --error-rate fails
that fraction of requests with 500 by itself; a failed call makes the answer 502.

Prints its URL (http://HOST:PORT/) as the first line on stdout, then serves until SIGTERM/SIGINT,
or until stdin, when it is a pipe or terminal, is closed. Answers GET / with
{"service", "trace_id", "span_id", "status", "calls": [{"url", "status"}]}.
"""

import argparse
import json
import os
import random
import signal
import stat
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from py_zipkin import Encoding, Kind
from py_zipkin.transport import BaseTransportHandler
from py_zipkin.zipkin import ZipkinAttrs, create_http_headers_for_new_span, zipkin_span


class KafkaTransport(BaseTransportHandler):
    """py_zipkin transport producing each encoded span list as one Kafka message, as Zipkin's
    Kafka collector expects."""

    MAX_PAYLOAD = 512 * 1024  # well under Kafka's default 1 MB message limit

    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def get_max_payload_bytes(self):
        return self.MAX_PAYLOAD

    def send(self, payload):
        data = payload if isinstance(payload, bytes) else payload.encode()
        try:
            self.producer.produce(self.topic, data)
            self.producer.poll(0)
        except Exception as e:  # a lost span must not fail the request it describes
            print("zipkin_app: producing spans: %s" % e, file=sys.stderr)

    def close(self, timeout_s=10):
        left = self.producer.flush(timeout_s)
        if left:
            print("zipkin_app: %d span messages not delivered" % left, file=sys.stderr)


class HttpTransport(BaseTransportHandler):
    """py_zipkin transport POSTing each encoded span list to a Zipkin collector URL."""

    def __init__(self, url):
        self.url = url

    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        data = payload if isinstance(payload, bytes) else payload.encode()
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as e:
            print("zipkin_app: POST %s: %s" % (self.url, e), file=sys.stderr)

    def close(self, timeout_s=10):
        pass


def collector_url(url):
    """EMP_ZIPKIN_URL may be the collector's base URL or the full endpoint."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path="/api/v2/spans"))
    return url


def parse_call(text):
    """"[SERVICE=]URL" -> (service or None, url). A URL has ':' before any '='."""
    name, sep, rest = text.partition("=")
    if sep and ":" not in name and rest:
        return name, rest
    return None, text


def parse_delay(text):
    if "-" in text:
        lo, hi = text.split("-", 1)
        return float(lo), float(hi)
    return float(text), float(text)


class App:
    def __init__(self, args, transport):
        self.args = args
        self.transport = transport
        self.calls = [parse_call(c) for c in args.calls]
        self.delay = parse_delay(args.delay_ms)
        self.rng = random.Random(args.seed)
        self.rng_lock = threading.Lock()

    def random(self):
        with self.rng_lock:
            return self.rng.random()

    def delay_s(self):
        lo, hi = self.delay
        with self.rng_lock:
            return self.rng.uniform(lo, hi) / 1000.0

    def incoming_attrs(self, headers):
        """The B3 context a caller sent (X-B3-* headers), or None to start a trace."""
        trace_id, span_id = headers.get("X-B3-TraceId"), headers.get("X-B3-SpanId")
        if not trace_id or not span_id:
            return None
        return ZipkinAttrs(trace_id=trace_id, span_id=span_id,
                           parent_span_id=headers.get("X-B3-ParentSpanId"),
                           flags=headers.get("X-B3-Flags", "0"),
                           is_sampled=headers.get("X-B3-Sampled", "1") != "0")

    def call(self, service, url, index):
        """One outgoing call in a client span; returns its status (0: no answer)."""
        path = urllib.parse.urlsplit(url).path or "/"
        with zipkin_span(service_name=self.args.service, span_name="get " + path,
                         kind=Kind.CLIENT, encoding=Encoding.V2_JSON) as span:
            if service:
                target = urllib.parse.urlsplit(url)
                span.add_sa_binary_annotation(port=target.port or 80, service_name=service,
                                              host=target.hostname)
            if self.args.b3 == "shared":
                attrs = span.zipkin_attrs
                headers = {"X-B3-TraceId": attrs.trace_id, "X-B3-SpanId": attrs.span_id,
                           "X-B3-Sampled": "1" if attrs.is_sampled else "0", "X-B3-Flags": "0"}
                if attrs.parent_span_id:
                    headers["X-B3-ParentSpanId"] = attrs.parent_span_id
            else:
                headers = create_http_headers_for_new_span()
            req = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, OSError) as e:
                span.update_binary_annotations({"error": str(e)})
                return 0
            tags = {"http.method": "GET", "http.path": path, "http.status_code": str(status)}
            if status >= 500:
                tags["error"] = str(status)
            span.update_binary_annotations(tags)
            return status

    def handle(self, headers, query):
        """Serves one GET / inside a server span; returns (status, body dict)."""
        args = self.args
        attrs = self.incoming_attrs(headers)
        root = zipkin_span(
            service_name=args.service, span_name="get /", kind=Kind.SERVER,
            transport_handler=self.transport, encoding=Encoding.V2_JSON, host=args.host,
            port=args.port_bound, zipkin_attrs=attrs,
            sample_rate=None if attrs else 100.0, use_128bit_trace_id=True)
        with root:
            total = self.delay_s()
            time.sleep(total / 2)
            results = []
            for i, (service, url) in enumerate(self.calls):
                results.append({"url": url, "status": self.call(service, url, i)})
            time.sleep(total - total / 2)
            status = 200
            if "status" in query:
                status = int(query["status"][0])
            elif self.random() < args.error_rate:
                status = 500
            elif any(r["status"] == 0 or r["status"] >= 500 for r in results):
                status = 502
            tags = {"http.method": "GET", "http.path": "/", "http.status_code": str(status)}
            if status >= 500:
                tags["error"] = str(status)
            root.update_binary_annotations(tags)
            ctx = root.zipkin_attrs
        return status, {"service": args.service, "trace_id": ctx.trace_id,
                        "span_id": ctx.span_id, "status": status, "calls": results}


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            parts = urllib.parse.urlsplit(self.path)
            if parts.path != "/":
                self.answer(404, {"error": "not found"})
                return
            try:
                status, body = app.handle(self.headers, urllib.parse.parse_qs(parts.query))
            except ValueError as e:
                status, body = 400, {"error": str(e)}
            self.answer(status, body)

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *a):
            if app.args.verbose:
                sys.stderr.write("zipkin_app %s: %s\n" % (app.args.service, fmt % a))

    return Handler


def stdin_is_lifeline():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


def main(argv=None):
    env = os.environ
    p = argparse.ArgumentParser(description="A py_zipkin-instrumented HTTP service for tests.")
    p.add_argument("--service", default=env.get("EMP_SERVICE_NAME"),
                   help="the service name in its spans (default $EMP_SERVICE_NAME)")
    p.add_argument("--port", type=int, default=int(env.get("PORT", "0")),
                   help="port to listen on (default $PORT, else any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--calls", nargs="*", default=[], metavar="[SERVICE=]URL")
    p.add_argument("--transport", choices=["kafka", "http"])
    p.add_argument("--kafka", default=env.get("KAFKAADDRESS"),
                   help="bootstrap servers (default $KAFKAADDRESS)")
    p.add_argument("--topic", default="zipkin")
    p.add_argument("--http-url", default=env.get("EMP_ZIPKIN_URL"),
                   help="collector URL (default $EMP_ZIPKIN_URL)")
    p.add_argument("--delay-ms", default="0", help="own work per request: MS or LOW-HIGH")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--b3", choices=["child", "shared"], default="child")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.service:
        p.error("--service (or EMP_SERVICE_NAME) is required")
    transport_name = args.transport or ("kafka" if args.kafka else "http")
    if transport_name == "kafka":
        if not args.kafka:
            p.error("--transport kafka needs --kafka or KAFKAADDRESS")
        transport = KafkaTransport(args.kafka, args.topic)
    else:
        if not args.http_url:
            p.error("--transport http needs --http-url or EMP_ZIPKIN_URL")
        transport = HttpTransport(collector_url(args.http_url))

    app = App(args, transport)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(app))
    server.daemon_threads = True
    args.port_bound = server.server_address[1]
    stop = threading.Event()
    orphaned = threading.Event()  # the parent is gone: no one waits for the last spans
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if stdin_is_lifeline():
        def watch_stdin():
            while os.read(0, 4096):
                pass
            orphaned.set()
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("http://%s:%d/" % (args.host, args.port_bound), flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    transport.close(1 if orphaned.is_set() else 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
