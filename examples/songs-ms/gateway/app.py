# SPDX-License-Identifier: Apache-2.0
"""gateway: the one address end users call. Passes each request on to the service whose routes
it is (method, path, query, body, Authorization) and its answer back; GET /playlists/songs/{id}
goes to the aggregator. Checks no token itself: the services do."""

import re

import flask

from common import service
from common.service import not_found

# (method or None for any, path pattern, env name of the service, app name)
ROUTES = [
    ("POST", r"/login", "AUTH_URL", "auth"),
    ("GET", r"/verify", "AUTH_URL", "auth"),
    (None, r"/users/verify", None, None),  # auth's, not end users'
    (None, r"/users(/.*)?", "USERS_URL", "users"),
    (None, r"/songs(/.*)?", "SONGS_URL", "songs"),
    ("GET", r"/playlists/songs/[^/]+", "AGGREGATOR_URL", "aggregator"),
    (None, r"/playlists(/.*)?", "PLAYLISTS_URL", "playlists"),
]
NEEDS = ("USERS_URL", "AUTH_URL", "SONGS_URL", "PLAYLISTS_URL", "AGGREGATOR_URL")
PASSED_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept")
PASSED_RESPONSE_HEADERS = ("Content-Type", "Location", "WWW-Authenticate")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def route(method, path):
    for want, pattern, env_name, app_name in ROUTES:
        if (want is None or want == method) and re.fullmatch(pattern, path):
            return env_name, app_name
    return None, None


def span_name(method, path):
    """A low-cardinality name for the call: numbers in the path become <id>."""
    return "%s %s" % (method.lower(), re.sub(r"/[0-9]+(?=/|$)", "/<id>", path))


def load_config(env):
    return service.load_config("gateway", env, default_port=8000, needs=NEEDS,
                               jwt_needed=False)


def create_app(config, tracer, session=None):
    app = service.make_app(config, tracer)
    targets = {}
    for env_name in NEEDS:
        app_name = env_name[:-4].lower()
        targets[env_name] = service.downstream(config, tracer, env_name, app_name, session)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def proxy(path):
        request = flask.request
        path = "/" + path
        env_name, _ = route(request.method, path)
        name = span_name(request.method, path)
        if flask.g.get("span") is not None:
            flask.g.span.override_span_name(name)
        if env_name is None:
            raise not_found("no such route: %s %s (see the songs-ms README for the routes)"
                            % (request.method, path))
        headers = {h: request.headers[h] for h in PASSED_REQUEST_HEADERS if h in request.headers}
        target = path + ("?" + request.query_string.decode("latin-1")
                         if request.query_string else "")
        resp = targets[env_name].call(request.method, target, name,
                                      data=service.raw_body() or None, headers=headers)
        out = flask.Response(resp.content, status=resp.status_code)
        for h in PASSED_RESPONSE_HEADERS:
            if h in resp.headers:
                out.headers[h] = resp.headers[h]
        return out

    return app
