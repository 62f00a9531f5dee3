# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the songs-ms unit tests: each service as a Flask app with a temporary data
directory and a transport that keeps its spans, and a requests session that reaches the other
services in process (by the host:port their *_URL names), so that calls between services, and
their B3 headers, are real HTTP requests through the real handlers."""

import json
import os
import sys
import time
import urllib.parse

import jwt
import pytest
import requests
from requests.structures import CaseInsensitiveDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import service  # noqa: E402
from py_zipkin.transport import BaseTransportHandler  # noqa: E402

SECRET = "unit-test-secret-0123456789"
OWNER = "alice"
# what ${app:NAME} resolves to on the local backend: HOST:PORT, no scheme
ADDRESSES = {"users": "127.0.0.1:31001", "auth": "127.0.0.1:31002", "songs": "127.0.0.1:31003",
             "playlists": "127.0.0.1:31004", "aggregator": "127.0.0.1:31005",
             "gateway": "127.0.0.1:31006"}


class MemoryTransport(BaseTransportHandler):
    """Keeps every span py_zipkin sends, decoded."""

    def __init__(self):
        self.spans = []

    def get_max_payload_bytes(self):
        return None

    def send(self, payload):
        spans = json.loads(payload)
        assert isinstance(spans, list)
        self.spans.extend(spans)

    def close(self, timeout_s=0):
        pass


class InProcessAdapter(requests.adapters.BaseAdapter):
    """Serves a request with the Flask app at its host:port; no app there is a refused
    connection, as for a service that is down."""

    def __init__(self, apps):
        super().__init__()
        self.apps = apps
        self.requests = []

    def send(self, request, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        app = self.apps.get(parts.netloc)
        if app is None:
            raise requests.ConnectionError("connection refused: %s" % parts.netloc)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("content-length", "host")}
        self.requests.append((parts.netloc, request.method, parts.path, headers))
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = app.test_client().open(parts.path, method=request.method,
                                        query_string=parts.query, headers=headers,
                                        data=body or b"")
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp._content = answer.get_data()
        resp.headers = CaseInsensitiveDict(dict(answer.headers))
        resp.url = request.url
        resp.request = request
        resp.reason = answer.status.partition(" ")[2]
        return resp

    def close(self):
        pass


class Cluster:
    """The services of one user, started on demand, in process."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.apps = {}
        self.transports = {}
        self.adapter = InProcessAdapter({})
        self.session = requests.Session()
        self.session.mount("http://", self.adapter)

    def env(self, name):
        env = {"JWT_SECRET": SECRET, "EMP_SERVICE_NAME": "%s/%s" % (OWNER, name),
               "EMP_DATA_DIR": str(self.tmp_path / name), "PORT": "0"}
        for other, address in ADDRESSES.items():
            env[other.upper() + "_URL"] = address
        return env

    def start(self, name):
        """The Flask app of service name, reachable by the others from now on."""
        import importlib
        module = importlib.import_module(name + ".app")
        config = module.load_config(self.env(name))
        transport = MemoryTransport()
        tracer = service.make_tracer(config, transport)
        kwargs = {}
        if "session" in module.create_app.__code__.co_varnames:
            kwargs["session"] = self.session
        app = module.create_app(config, tracer, **kwargs)
        app.testing = True
        self.apps[name] = app
        self.transports[name] = transport
        self.adapter.apps[ADDRESSES[name]] = app
        return app

    def stop(self, name):
        """Service name no longer answers: calls to it are refused."""
        del self.adapter.apps[ADDRESSES[name]]

    def client(self, name):
        return self.apps[name].test_client()

    def spans(self, name=None):
        names = [name] if name else list(self.transports)
        return [s for n in names for s in self.transports[n].spans]


@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def token_for(user_id, secret=SECRET, ttl_s=3600, **extra):
    now = int(time.time())
    claims = {"sub": str(user_id), "email": "u%s@example.com" % user_id, "name": "U",
              "iss": "songs-ms", "iat": now, "exp": now + ttl_s}
    claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")


def auth(user_id, **kwargs):
    return {"Authorization": "Bearer " + token_for(user_id, **kwargs)}


def server_spans(spans):
    return [s for s in spans if s.get("kind") == "SERVER"]


def client_spans(spans):
    return [s for s in spans if s.get("kind") == "CLIENT"]
