# SPDX-License-Identifier: Apache-2.0
"""The skeleton every songs-ms service is built on: configuration from the environment EMP gives
a replica, a Flask app whose every request is a traced server span and whose every error is a
JSON body, input checks, JWT checks, traced calls to other services, and serving until SIGTERM.
A service adds only its routes and its storage."""

import json
import os
import re
import signal
import threading
import time
import urllib.parse

import flask
import jwt
import requests
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import BaseConverter
from werkzeug.serving import WSGIRequestHandler, make_server

from . import tracing

MAX_BODY_BYTES = 64 * 1024
JWT_ISSUER = "songs-ms"
JWT_ALGORITHM = "HS256"
JWT_SECRET_MIN = 16


class ConfigError(Exception):
    """The environment does not let the service start; the message says what to set."""


class ApiError(Exception):
    """An answer other than success: status, a stable code, a message naming the input, and the
    field at fault when there is one."""

    def __init__(self, status, code, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self):
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


def bad_request(message, field=None):
    return ApiError(400, "invalid_field" if field else "bad_request", message, field)


def not_found(message):
    return ApiError(404, "not_found", message)


def forbidden(message):
    return ApiError(403, "forbidden", message)


def conflict(message, field=None):
    return ApiError(409, "conflict", message, field)


def unauthorized(message):
    return ApiError(401, "unauthorized", message,
                    headers={"WWW-Authenticate": 'Bearer realm="songs-ms"'})


# ---- configuration ----

def service_url(value, name):
    """A downstream's base URL from an env value: `${app:songs}` resolves to HOST:PORT, so a
    value without a scheme gets http://."""
    value = (value or "").strip()
    if not value:
        raise ConfigError("%s is not set: give it the address of that service, for example "
                          "{\"name\": \"%s\", \"value\": \"${app:%s}\"}"
                          % (name, name, name[:-4].lower()))
    if "://" not in value:
        value = "http://" + value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("%s is %r: expected HOST:PORT or an http(s) URL" % (name, value))
    return value.rstrip("/")


def load_config(name, env=None, default_port=5000, needs=(), stateful=False, jwt_needed=True):
    """The service's settings from env (os.environ by default). needs: the env names of the
    services it calls (SONGS_URL ...). Raises ConfigError with what to set."""
    env = os.environ if env is None else env
    try:
        port = int(env.get("PORT", default_port))
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError("PORT is %r: expected a port number" % env.get("PORT"))
    try:
        sample_rate = float(env.get("ZIPKIN_SAMPLE_RATE", "100"))
        if not 0.0 <= sample_rate <= 100.0:
            raise ValueError
    except ValueError:
        raise ConfigError("ZIPKIN_SAMPLE_RATE is %r: expected a percentage from 0 to 100"
                          % env.get("ZIPKIN_SAMPLE_RATE"))
    try:
        timeout_s = float(env.get("DOWNSTREAM_TIMEOUT_S", "5"))
        if not 0.0 < timeout_s <= 300.0:
            raise ValueError
    except ValueError:
        raise ConfigError("DOWNSTREAM_TIMEOUT_S is %r: expected seconds, more than 0 and at "
                          "most 300" % env.get("DOWNSTREAM_TIMEOUT_S"))
    config = {
        "name": name,
        "service_name": env.get("EMP_SERVICE_NAME") or "songs-ms/" + name,
        "host": env.get("BIND_HOST", "127.0.0.1"),
        "port": port,
        "sample_rate": sample_rate,
        "timeout_s": timeout_s,
        "urls": {need: service_url(env.get(need), need) for need in needs},
    }
    if stateful:
        config["data_dir"] = env.get("EMP_DATA_DIR") or os.getcwd()
    if jwt_needed:
        secret = env.get("JWT_SECRET", "")
        if len(secret) < JWT_SECRET_MIN:
            raise ConfigError("JWT_SECRET must be set to a secret of at least %d characters, the "
                              "same for every songs-ms service" % JWT_SECRET_MIN)
        config["jwt_secret"] = secret
    return config


# ---- the Flask app ----

class IdConverter(BaseConverter):
    """<id:...>: a positive integer that fits SQLite's INTEGER (anything else is a 404)."""
    regex = r"[1-9][0-9]{0,17}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


def make_app(config, tracer):
    """A Flask app with GET /health, a server span around every request and JSON errors."""
    app = flask.Flask(config["name"])
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False
    app.extensions["songs_ms"] = {"config": config, "tracer": tracer}

    @app.before_request
    def start_span():
        if flask.request.path == "/health":
            return  # EMP's probes, every second: not requests of the app's users
        rule = flask.request.url_rule.rule if flask.request.url_rule else "unmatched"
        span = tracer.server_span("%s %s" % (flask.request.method.lower(), rule),
                                  flask.request.headers)
        span.start()
        flask.g.span = span
        flask.g.span_status = None

    @app.after_request
    def tag_span(response):
        span = flask.g.get("span")
        if span is not None:
            tags = {"http.method": flask.request.method, "http.path": flask.request.path,
                    "http.status_code": str(response.status_code)}
            if response.status_code >= 500:
                tags["error"] = str(response.status_code)
            span.update_binary_annotations(tags)
            attrs = tracer.current()
            if attrs:
                response.headers["X-B3-TraceId"] = attrs.trace_id
        return response

    @app.teardown_request
    def stop_span(exc):
        span = flask.g.pop("span", None)
        if span is not None:
            span.stop()

    @app.errorhandler(ApiError)
    def api_error(e):
        return flask.jsonify(e.body()), e.status, e.headers

    @app.errorhandler(HTTPException)
    def http_error(e):
        messages = {404: "no such resource: %s %s" % (flask.request.method, flask.request.path),
                    405: "%s is not allowed on %s" % (flask.request.method, flask.request.path),
                    413: "the body is larger than %d bytes" % MAX_BODY_BYTES}
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        body = {"error": {"code": codes.get(e.code, "bad_request"),
                          "message": messages.get(e.code, e.description)}}
        return flask.jsonify(body), e.code

    @app.errorhandler(Exception)
    def internal_error(e):
        app.logger.exception("%s %s failed", flask.request.method, flask.request.path)
        body = {"error": {"code": "internal", "message": "%s %s failed: %s"
                          % (flask.request.method, flask.request.path, type(e).__name__)}}
        return flask.jsonify(body), 500

    @app.get("/health")
    def health():
        return {"status": "ok", "service": config["service_name"]}

    return app


def tracer_of(app=None):
    return (app or flask.current_app).extensions["songs_ms"]["tracer"]


def config_of(app=None):
    return (app or flask.current_app).extensions["songs_ms"]["config"]


# ---- input ----

def json_object():
    """The request body, which must be a JSON object."""
    request = flask.request
    body = None
    if request.mimetype == "application/json":
        try:
            body = json.loads(raw_body())
        except ValueError:  # also bad UTF-8
            body = None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object with Content-Type: application/json")
    return body


def raw_body():
    """The request body, at most MAX_BODY_BYTES (413 beyond, whatever Content-Length says)."""
    data = flask.g.get("raw_body")
    if data is None:
        length = flask.request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
        data = flask.request.stream.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
        flask.g.raw_body = data
    return data


def get_str(body, name, max_len, required=True, min_len=1, pattern=None, what=None):
    """body[name] as a stripped string of min_len..max_len characters, or None when absent and
    not required."""
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request("%s is required" % name, name)
        return None
    if not isinstance(value, str):
        raise bad_request("%s must be a string, not %s" % (name, json_type(value)), name)
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise bad_request("%s must have %d to %d characters, not %d"
                          % (name, min_len, max_len, len(value)), name)
    if pattern and not re.fullmatch(pattern, value):
        raise bad_request("%s %r is not %s" % (name, value[:80], what or "valid"), name)
    return value


def get_int(body, name, low, high, required=True):
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request("%s is required" % name, name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("%s must be an integer, not %s" % (name, json_type(value)), name)
    if not low <= value <= high:
        raise bad_request("%s must be from %d to %d, not %d" % (name, low, high, value), name)
    return value


def get_id(body, name, required=True):
    return get_int(body, name, 1, 2**63 - 1, required)


def query_int(name, default, low, high):
    text = flask.request.args.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise bad_request("%s must be an integer from %d to %d, not %r"
                          % (name, low, high, text[:40]), name)
    return int(text)


def json_type(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


# ---- authentication ----

def issue_token(secret, user, ttl_s):
    now = int(time.time())
    claims = {"sub": str(user["id"]), "email": user["email"], "name": user["name"],
              "iss": JWT_ISSUER, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def bearer_token():
    header = flask.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("no Authorization header: log in with POST /login and send "
                           "'Authorization: Bearer TOKEN'")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer TOKEN'")
    return token.strip()


def authenticate():
    """The id of the user whose valid JWT came in the Authorization header; 401 otherwise."""
    token = bearer_token()
    try:
        claims = jwt.decode(token, config_of()["jwt_secret"], algorithms=[JWT_ALGORITHM],
                            issuer=JWT_ISSUER, options={"require": ["exp", "iat", "sub", "iss"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired: log in again")
    except jwt.InvalidTokenError as e:
        raise unauthorized("the token is not valid: %s" % e)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not re.fullmatch(r"[1-9][0-9]{0,17}", sub):
        raise unauthorized("the token does not name a user")
    flask.g.user_id = int(sub)
    return int(sub)


def require_user(user_id, what):
    """Authenticates and checks that the token's user is user_id (403 otherwise)."""
    me = authenticate()
    if me != user_id:
        raise forbidden("%s belongs to user %d, and the token is user %d's" % (what, user_id, me))
    return me


# ---- calls to other services ----

class Downstream:
    """Calls one other service, each call in a CLIENT span with B3 headers, so that the callee's
    server span joins the same trace. session: a requests.Session to use (tests pass one that
    reaches an app in process); by default one per thread."""

    def __init__(self, tracer, app_name, base_url, timeout_s=5.0, session=None):
        self.tracer = tracer
        self.app_name = app_name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session
        self._local = threading.local()
        parts = urllib.parse.urlsplit(self.base_url)
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        # the callee's service name as EMP names it: same user, app app_name
        owner = tracer.service_name.split("/", 1)[0]
        self.remote_service = "%s/%s" % (owner, app_name)

    def _session(self):
        if self.session is not None:
            return self.session
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def call(self, method, path, span_name, json_body=None, data=None, headers=None,
             params=None):
        """Returns the requests.Response, whatever its status. Raises ApiError 503 when the
        service cannot be reached and 504 when it does not answer in time."""
        with self.tracer.client_span(span_name) as span:
            span.add_sa_binary_annotation(port=self.port, service_name=self.remote_service,
                                          host=self.host)
            send = dict(headers or {})
            send.update(self.tracer.b3_headers())
            tags = {"http.method": method, "http.path": path.split("?", 1)[0]}
            try:
                resp = self._session().request(method, self.base_url + path, json=json_body,
                                               data=data, headers=send, params=params,
                                               timeout=self.timeout_s, allow_redirects=False)
            except requests.Timeout:
                tags["error"] = "timeout"
                span.update_binary_annotations(tags)
                raise ApiError(504, "upstream_timeout", "%s did not answer %s %s within %g s"
                               % (self.app_name, method, path, self.timeout_s))
            except requests.RequestException as e:
                tags["error"] = type(e).__name__
                span.update_binary_annotations(tags)
                raise ApiError(503, "upstream_unavailable", "%s cannot be reached (%s %s): %s"
                               % (self.app_name, method, path, type(e).__name__))
            tags["http.status_code"] = str(resp.status_code)
            if resp.status_code >= 500:
                tags["error"] = str(resp.status_code)
            span.update_binary_annotations(tags)
            return resp


def downstream(config, tracer, env_name, app_name, session=None):
    return Downstream(tracer, app_name, config["urls"][env_name], config["timeout_s"], session)


def passed_error(resp, app_name):
    """An ApiError that passes on a downstream's error answer (its JSON error when it has one)."""
    try:
        error = resp.json().get("error", {})
        message = error.get("message") or resp.reason
        code = error.get("code") or "upstream_error"
    except (ValueError, AttributeError):
        message, code = "%s answered %d" % (app_name, resp.status_code), "upstream_error"
    status = resp.status_code if 400 <= resp.status_code < 600 else 502
    headers = {}
    if "WWW-Authenticate" in resp.headers:
        headers["WWW-Authenticate"] = resp.headers["WWW-Authenticate"]
    return ApiError(status, code, message, headers=headers)


# ---- serving ----

class QuietHandler(WSGIRequestHandler):
    """No access log line per request (a replica's log is for what goes wrong)."""

    def log_request(self, code="-", size="-"):
        pass


def serve(app):
    """Serves app on its configured host and port until SIGTERM or SIGINT, then sends the
    spans still buffered."""
    config = config_of(app)
    tracer = tracer_of(app)
    server = make_server(config["host"], config["port"], app, threaded=True,
                         request_handler=QuietHandler)
    tracer.port = server.server_port
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tracing.log("%s (%s) listening on http://%s:%d" % (config["name"], config["service_name"],
                                                     config["host"], server.server_port))
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    tracer.close()
    return 0


def make_tracer(config, transport):
    """The service's tracer; its spans' localEndpoint address is looked up once, not per span."""
    host = config["host"]
    if host in ("0.0.0.0", "::", ""):
        import socket
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    return tracing.Tracer(config["service_name"], transport, config["sample_rate"], host=host,
                          port=config["port"])
