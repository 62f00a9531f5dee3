# SPDX-License-Identifier: Apache-2.0
"""The shared code: configuration from the environment, B3 parsing and the span transports."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common import service, tracing


def test_service_urls_from_app_references():
    # ${app:songs} resolves to HOST:PORT (local) or DNS:PORT (Kubernetes): http:// is added
    assert service.service_url("127.0.0.1:31004", "SONGS_URL") == "http://127.0.0.1:31004"
    assert service.service_url("songs.emp-alice.svc.cluster.local:5002", "SONGS_URL") == \
        "http://songs.emp-alice.svc.cluster.local:5002"
    assert service.service_url("https://songs.example.com/", "SONGS_URL") == \
        "https://songs.example.com"
    with pytest.raises(service.ConfigError, match=r"SONGS_URL is not set.*\$\{app:songs\}"):
        service.service_url("", "SONGS_URL")
    with pytest.raises(service.ConfigError, match="SONGS_URL"):
        service.service_url("ftp://x:1", "SONGS_URL")


def test_config_needs_a_jwt_secret_and_sane_numbers():
    base = {"JWT_SECRET": "s" * 16}
    config = service.load_config("songs", dict(base, PORT="4321", EMP_DATA_DIR="/d",
                                               EMP_SERVICE_NAME="bob/songs"), stateful=True)
    assert (config["port"], config["data_dir"], config["service_name"]) == (4321, "/d",
                                                                           "bob/songs")
    assert config["host"] == "127.0.0.1"
    with pytest.raises(service.ConfigError, match="JWT_SECRET"):
        service.load_config("songs", {"JWT_SECRET": "short"})
    with pytest.raises(service.ConfigError, match="PORT"):
        service.load_config("songs", dict(base, PORT="http"))
    with pytest.raises(service.ConfigError, match="ZIPKIN_SAMPLE_RATE"):
        service.load_config("songs", dict(base, ZIPKIN_SAMPLE_RATE="200"))
    with pytest.raises(service.ConfigError, match="USERS_URL"):
        service.load_config("auth", base, needs=("USERS_URL",))
    assert service.load_config("gateway", {}, jwt_needed=False)["service_name"] == \
        "songs-ms/gateway"


def test_malformed_b3_headers_start_a_new_trace():
    good = {"X-B3-TraceId": "a" * 32, "X-B3-SpanId": "b" * 16, "X-B3-ParentSpanId": "c" * 16}
    attrs = tracing.incoming_attrs(good)
    assert (attrs.trace_id, attrs.span_id, attrs.parent_span_id) == ("a" * 32, "b" * 16,
                                                                     "c" * 16)
    assert attrs.is_sampled
    assert not tracing.incoming_attrs(dict(good, **{"X-B3-Sampled": "0"})).is_sampled
    for bad in ({"X-B3-TraceId": "xyz", "X-B3-SpanId": "b" * 16},
                {"X-B3-TraceId": "a" * 32},
                {"X-B3-TraceId": "a" * 31, "X-B3-SpanId": "b" * 16},
                {"X-B3-TraceId": "a" * 32, "X-B3-SpanId": "b" * 17}, {}):
        assert tracing.incoming_attrs(bad) is None
    assert tracing.incoming_attrs(dict(good, **{"X-B3-ParentSpanId": "zz"})).parent_span_id \
        is None


def test_the_transport_follows_the_environment():
    assert isinstance(tracing.transport_from_env({}), tracing.NullTransport)
    http = tracing.transport_from_env({"EMP_ZIPKIN_URL": "http://127.0.0.1:9/"})
    assert isinstance(http, tracing.HttpTransport) and http.url == "http://127.0.0.1:9/api/v2/spans"
    http.close(1)
    kafka = tracing.transport_from_env({"KAFKAADDRESS": "127.0.0.1:9",
                                        "EMP_ZIPKIN_URL": "http://127.0.0.1:9"})
    assert isinstance(kafka, tracing.KafkaTransport) and kafka.topic == "zipkin"
    kafka.close(0.1)
    assert tracing.collector_url("http://h:9411/api/v2/spans") == "http://h:9411/api/v2/spans"


class Collector(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_http_transport_posts_zipkin_v2_json_lists():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = tracing.HttpTransport(tracing.collector_url(
            "http://127.0.0.1:%d" % server.server_port))
        tracer = tracing.Tracer("alice/songs", transport, host="127.0.0.1", port=5002)
        for _ in range(3):
            span = tracer.server_span("get /songs/<id>", {})
            span.start()
            with tracer.client_span("get /x"):
                pass
            span.update_binary_annotations({"http.status_code": "200"})
            span.stop()
        transport.close(5)
    finally:
        server.shutdown()
        server.server_close()
    assert Collector.received
    spans = [s for path, ctype, body in Collector.received for s in body]
    assert {path for path, _, _ in Collector.received} == {"/api/v2/spans"}
    assert {ctype for _, ctype, _ in Collector.received} == {"application/json"}
    assert len(spans) == 6
    servers = [s for s in spans if s["kind"] == "SERVER"]
    assert len(servers) == 3 and len({s["traceId"] for s in servers}) == 3
    assert all(s["localEndpoint"] == {"serviceName": "alice/songs", "ipv4": "127.0.0.1",
                                      "port": 5002} for s in servers)


def test_http_transport_survives_a_collector_that_is_down(capsys):
    transport = tracing.HttpTransport("http://127.0.0.1:9/api/v2/spans", timeout_s=1)
    transport.send('[{"traceId": "1"}]')
    transport.close(5)
    assert "POST http://127.0.0.1:9/api/v2/spans" in capsys.readouterr().err
