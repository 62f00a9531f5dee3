# SPDX-License-Identifier: Apache-2.0
"""Zipkin tracing of the songs-ms services with py_zipkin: a server span per request served, a
client span per call made, B3 headers passed on, spans sent as Zipkin v2 JSON to Kafka (topic
zipkin, one message = one JSON list of spans) or over HTTP to a Zipkin collector. Not the web
layer: service.py decides when a span starts and ends."""

import json
import queue
import sys
import threading
import urllib.parse

import requests
from py_zipkin import Encoding, Kind
from py_zipkin.storage import SpanStorage, Stack
from py_zipkin.transport import BaseTransportHandler
from py_zipkin.zipkin import ZipkinAttrs, create_http_headers_for_new_span, zipkin_span


def log(message):
    print("songs-ms: %s" % message, file=sys.stderr, flush=True)


class KafkaTransport(BaseTransportHandler):
    """Produces each list of spans py_zipkin encodes as one Kafka message, as Zipkin's Kafka
    collector (and EMP) read them. Producing is asynchronous: a request never waits on Kafka."""

    MAX_PAYLOAD = 512 * 1024  # well under Kafka's default 1 MB message limit

    def __init__(self, bootstrap, topic="zipkin"):
        from confluent_kafka import Producer
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                                  "queue.buffering.max.messages": 100000})

    def get_max_payload_bytes(self):
        return self.MAX_PAYLOAD

    def send(self, payload):
        data = payload if isinstance(payload, bytes) else payload.encode()
        try:
            self.producer.produce(self.topic, data)
            self.producer.poll(0)
        except Exception as e:  # a lost span must not fail the request it describes
            log("producing spans to Kafka: %s" % e)

    def close(self, timeout_s=5.0):
        left = self.producer.flush(timeout_s)
        if left:
            log("%d span messages were not delivered to Kafka" % left)


class HttpTransport(BaseTransportHandler):
    """POSTs spans to a Zipkin collector (POST /api/v2/spans) from a background thread, several
    requests' spans in one list, so that a request does not wait on the collector. At most
    MAX_QUEUED lists wait; beyond that new ones are dropped (and counted)."""

    MAX_QUEUED = 10000
    MAX_BATCH_SPANS = 1000

    def __init__(self, url, timeout_s=5.0):
        self.url = url
        self.timeout_s = timeout_s
        self.queue = queue.Queue(self.MAX_QUEUED)
        self.dropped = 0
        self.session = requests.Session()
        self.thread = threading.Thread(target=self._run, name="zipkin-http", daemon=True)
        self.thread.start()

    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        try:
            self.queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1

    def _run(self):
        while True:
            first = self.queue.get()
            if first is None:
                return
            spans = self._decode(first)
            stop = False
            while len(spans) < self.MAX_BATCH_SPANS:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                spans.extend(self._decode(more))
            self._post(spans)
            if stop:
                return

    @staticmethod
    def _decode(payload):
        try:
            spans = json.loads(payload)
        except ValueError:
            return []
        return spans if isinstance(spans, list) else []

    def _post(self, spans):
        if not spans:
            return
        try:
            resp = self.session.post(self.url, data=json.dumps(spans).encode(),
                                     headers={"Content-Type": "application/json"},
                                     timeout=self.timeout_s)
            if resp.status_code >= 300:
                log("POST %s answered %d: %.200s" % (self.url, resp.status_code, resp.text))
        except requests.RequestException as e:
            log("POST %s: %s" % (self.url, e))

    def close(self, timeout_s=5.0):
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self.thread.join(timeout_s)
        if self.dropped:
            log("%d span lists were dropped: the collector at %s was too slow"
                % (self.dropped, self.url))


class NullTransport(BaseTransportHandler):
    """Where spans go when no collector is configured: nowhere."""

    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        pass

    def close(self, timeout_s=0):
        pass


def collector_url(url):
    """EMP_ZIPKIN_URL may be the collector's base URL or its full endpoint."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path="/api/v2/spans"))
    return url


def transport_from_env(env):
    """Kafka at KAFKAADDRESS when it is set, else HTTP to EMP_ZIPKIN_URL, else nothing."""
    kafka = env.get("KAFKAADDRESS", "").strip()
    if kafka:
        return KafkaTransport(kafka, env.get("ZIPKIN_TOPIC", "zipkin"))
    url = env.get("EMP_ZIPKIN_URL", "").strip()
    if url:
        return HttpTransport(collector_url(url))
    log("neither KAFKAADDRESS nor EMP_ZIPKIN_URL is set: spans are not sent anywhere")
    return NullTransport()


class Tracer:
    """Starts the spans of one service. Its span context and span buffer are its own, per
    thread, so that several services in one process (the unit tests) do not mix their traces."""

    def __init__(self, service_name, transport, sample_rate=100.0, host=None, port=0):
        self.service_name = service_name
        self.transport = transport
        self.sample_rate = sample_rate
        self.host = host
        self.port = port
        self._local = threading.local()

    def _state(self):
        state = self._local
        if not hasattr(state, "stack"):
            state.stack = Stack([])
            state.storage = SpanStorage()
        return state

    def server_span(self, name, headers):
        """A SERVER span for a request with these headers: a child of the caller's span when B3
        headers came, else the root of a new trace. Call start() and stop() on it."""
        attrs = incoming_attrs(headers)
        state = self._state()
        return zipkin_span(
            service_name=self.service_name, span_name=name, kind=Kind.SERVER,
            zipkin_attrs=attrs, sample_rate=None if attrs else self.sample_rate,
            transport_handler=self.transport, encoding=Encoding.V2_JSON,
            host=self.host, port=self.port, use_128bit_trace_id=True,
            # the callee gets a span id of its own (create_http_headers_for_new_span), so its
            # server span is a child with its own timestamp and duration, not a shared one
            report_root_timestamp=True,
            context_stack=state.stack, span_storage=state.storage)

    def client_span(self, name):
        """A CLIENT span, a child of the span in progress (a no-op outside one)."""
        state = self._state()
        return zipkin_span(service_name=self.service_name, span_name=name, kind=Kind.CLIENT,
                           encoding=Encoding.V2_JSON, context_stack=state.stack,
                           span_storage=state.storage)

    def b3_headers(self):
        """B3 headers for a call made in the current span: a new span id whose parent is it."""
        return create_http_headers_for_new_span(context_stack=self._state().stack)

    def current(self):
        """The ZipkinAttrs of the span in progress, or None."""
        return self._state().stack.get()

    def close(self):
        self.transport.close()


def incoming_attrs(headers):
    """The B3 context a caller sent, or None to start a new trace. Malformed ids start a new
    trace rather than producing spans that a collector refuses."""
    trace_id = (headers.get("X-B3-TraceId") or "").lower()
    span_id = (headers.get("X-B3-SpanId") or "").lower()
    if not (_is_hex(trace_id, (16, 32)) and _is_hex(span_id, (16,))):
        return None
    parent = (headers.get("X-B3-ParentSpanId") or "").lower()
    sampled = headers.get("X-B3-Sampled", "1")
    flags = headers.get("X-B3-Flags", "0")
    return ZipkinAttrs(trace_id=trace_id, span_id=span_id,
                       parent_span_id=parent if _is_hex(parent, (16,)) else None,
                       flags=flags if flags in ("0", "1") else "0",
                       is_sampled=flags == "1" or sampled not in ("0", "false"))


def _is_hex(text, lengths):
    return len(text) in lengths and all(c in "0123456789abcdef" for c in text)
