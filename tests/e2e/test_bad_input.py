# SPDX-License-Identifier: Apache-2.0
"""Bad input over raw HTTP (REQ-4): every row gets its status and error code, a message that names
the problem and what is accepted, error.field where there is one, and leaves Redis unchanged."""

import datetime
import http.client
import json
import os
import re
import socket
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LOGIN_MAX_FAILURES = 3
LOGIN_WINDOW_S = 600

SCHEMAS = h.spec().doc["components"]["schemas"]
PORT_MIN = SCHEMAS["AppSpec"]["properties"]["port"]["minimum"]
PORT_MAX = SCHEMAS["AppSpec"]["properties"]["port"]["maximum"]
NAME_MAX = SCHEMAS["AppName"]["maxLength"]
PASSWORD_MIN = SCHEMAS["Credentials"]["properties"]["password"]["minLength"]
REPLICAS_MAX = SCHEMAS["AppSpec"]["properties"]["replicas"]["properties"]["max"]["maximum"]
LIMIT_MAX = h.spec().doc["paths"]["/v1/apps"]["get"]["parameters"][0]["schema"]["maximum"]
METRICS = ", ".join(SCHEMAS["MetricName"]["enum"])
PORT_RANGE = f"{PORT_MIN} to {PORT_MAX}"
ONE_MIB = 1024 * 1024


class Row:
    """One bad request and what must come back."""

    def __init__(self, name, method, path, body, status, code, *substrings, field=None,
                 token="alice", content_type="application/json", headers=None):
        self.name, self.method, self.path, self.body = name, method, path, body
        self.status, self.code, self.substrings, self.field = status, code, substrings, field
        self.token, self.content_type, self.headers = token, content_type, headers or {}


def deploy(name, changes, status, code, *substrings, field=None, **kw):
    """A deploy of the valid example spec with changes (None removes a field)."""
    body = h.app_spec(h.unique_name("row"), **changes)
    return Row(name, "POST", "/v1/apps", body, status, code, *substrings, field=field, **kw)


def invalid(name, changes, field, *substrings, code="invalid_field"):
    return deploy(name, changes, 422, code, *substrings, field=field)


def env(name, value="x"):
    return [{"name": "DB_HOST", "value": "db"}, {"name": name, "value": value}]


def metric(kind, values):
    return [{"metric": kind, "values": values}]


def rows(app_id, app_name, app_min, app_max, not_executable):
    app = f"/v1/apps/{app_id}"
    qm = f"{app}/quality-metrics"
    scale_range = f"{app_min} to {app_max}"
    return [
        # the body as JSON
        Row("truncated JSON", "POST", "/v1/apps", '{"name": "songs-ms", "port": 50', 400,
            "malformed_json", "not valid JSON"),
        Row("malformed JSON", "POST", "/v1/apps", "{name: 'songs-ms'}", 400, "malformed_json",
            "not valid JSON", "line 1"),
        Row("empty body", "POST", "/v1/apps", "", 400, "malformed_json", "empty"),
        Row("duplicate key", "POST", "/v1/apps", '{"name": "a", "name": "b", "port": 1}', 400,
            "malformed_json", "name"),
        Row("body is an array", "POST", "/v1/apps", [h.app_spec("songs-ms")], 422,
            "invalid_field", "JSON object", "array"),
        # wrong types, one per field
        invalid("name not a string", {"name": 123}, "name", "name", "string", "integer"),
        invalid("docker_image not a string", {"docker_image": ["a"]}, "docker_image",
                "docker_image", "string"),
        invalid("stateless not a boolean", {"stateless": "yes"}, "stateless", "stateless",
                "true or false"),
        invalid("port a string", {"port": "5000"}, "port", "port", "integer", PORT_RANGE),
        invalid("port with a fraction", {"port": 5000.5}, "port", "port", "integer"),
        invalid("envs not an array", {"envs": {"DB_HOST": "x"}}, "envs", "envs", "array"),
        invalid("env not an object", {"envs": ["DB_HOST=x"]}, "envs[0]", "envs[0]", "object"),
        invalid("env value a number", {"envs": [{"name": "N", "value": 5}]}, "envs[0].value",
                "envs[0].value", "string"),
        invalid("quality_metrics not an array", {"quality_metrics": "fast"}, "quality_metrics",
                "quality_metrics", "array"),
        invalid("resources not an object", {"resources": "big"}, "resources", "resources",
                "object"),
        invalid("replicas not an object", {"replicas": 3}, "replicas", "replicas", "object"),
        invalid("replicas.max a string", {"replicas": {"max": "10"}}, "replicas.max",
                "replicas.max", "integer"),
        invalid("command a string", {"command": "python3 app.py"}, "command", "command",
                "array"),
        invalid("health_check a string", {"health_check": "/health"}, "health_check",
                "health_check", "object"),
        # unknown fields
        invalid("unknown top-level field", {"replica": 2}, "replica", "'replica'", "replicas",
                "docker_image", code="unknown_field"),
        invalid("unknown nested field", {"resources": {"cpu": "1", "gpu": "1"}}, "resources.gpu",
                "resources.gpu", "cpu, memory", code="unknown_field"),
        invalid("unknown field in an env", {"envs": [{"name": "A", "value": "b", "secret": True}]},
                "envs[0].secret", "envs[0].secret", "name, value", code="unknown_field"),
        # names
        invalid("name with '_'", {"name": "songs_ms"}, "name", "'songs_ms'", "lowercase",
                "'songs-ms'"),
        invalid("name uppercase", {"name": "SongsMs"}, "name", "'SongsMs'", "lowercase"),
        invalid("name leading digit", {"name": "1songs"}, "name", "'1songs'", "starting with a "
                "letter"),
        invalid("name trailing '-'", {"name": "songs-"}, "name", "'songs-'", "not ending in '-'"),
        invalid("name too long", {"name": "a" * (NAME_MAX + 1)}, "name",
                f"{NAME_MAX + 1} characters", f"at most {NAME_MAX}"),
        invalid("name shaped like a UUID", {"name": str(uuid.uuid4())}, "name", "UUID"),
        invalid("name empty", {"name": ""}, "name", "empty"),
        invalid("name missing", {"name": None}, "name", "name is missing", "songs-ms",
                code="missing_field"),
        # ports
        invalid("port 0", {"port": 0}, "port", "port 0", PORT_RANGE),
        invalid("port 65536", {"port": PORT_MAX + 1}, "port", f"port {PORT_MAX + 1}", PORT_RANGE),
        invalid("port missing", {"port": None}, "port", "port is missing", PORT_RANGE,
                code="missing_field"),
        # envs
        invalid("env name leading digit", {"envs": env("1DB")}, "envs[1].name", "'1DB'",
                "not starting with a digit"),
        invalid("env name with a space", {"envs": env("DB HOST")}, "envs[1].name", "'DB HOST'",
                "letters, digits"),
        invalid("env name empty", {"envs": env("")}, "envs[1].name", "''"),
        invalid("env PORT reserved", {"envs": env("PORT")}, "envs[1].name", "'PORT'", "reserved"),
        invalid("env KAFKAADDRESS reserved", {"envs": env("KAFKAADDRESS")}, "envs[1].name",
                "'KAFKAADDRESS'", "reserved"),
        invalid("env EMP_X reserved", {"envs": env("EMP_X")}, "envs[1].name", "'EMP_X'",
                "EMP_"),
        invalid("env name twice", {"envs": env("DB_HOST")}, "envs[1].name", "'DB_HOST'", "twice"),
        invalid("env without value", {"envs": [{"name": "A"}]}, "envs[0].value",
                "envs[0].value is missing", code="missing_field"),
        # quality metrics
        invalid("unknown quality metric", {"quality_metrics": metric("cpu", "< 80%")},
                "quality_metrics[0].metric", "'cpu'", METRICS),
        invalid("latency unparsable", {"quality_metrics": metric("latency", "fast")},
                "quality_metrics[0].values", "'fast'", "p50|p90|p95|p99 < N ms|s"),
        invalid("latency percentile not offered", {"quality_metrics": metric(
            "latency", "p75 < 200ms")}, "quality_metrics[0].values", "'p75 < 200ms'",
            "p50|p90|p95|p99"),
        invalid("throughput unparsable", {"quality_metrics": metric("throughput", "many")},
                "quality_metrics[0].values", "'many'", "N rps"),
        invalid("availability without >=", {"quality_metrics": metric("availability", "99%")},
                "quality_metrics[0].values", "'99%'", ">= N%"),
        invalid("error_rate without <", {"quality_metrics": metric("error_rate", "1%")},
                "quality_metrics[0].values", "'1%'", "< N%"),
        invalid("quality metric twice", {"quality_metrics": metric("latency", "p95 < 1s")
                                         + metric("latency", "p99 < 2s")},
                "quality_metrics[1].metric", "'latency'", "twice"),
        invalid("quality metric values a number", {"quality_metrics": metric("throughput", 100)},
                "quality_metrics[0].values", "string"),
        # resources
        invalid("cpu unparsable", {"resources": {"cpu": "lots"}}, "resources.cpu", "'lots'",
                "250m"),
        invalid("cpu below 1m", {"resources": {"cpu": "0.0001"}}, "resources.cpu", "'0.0001'",
                "1m"),
        invalid("memory unparsable", {"resources": {"memory": "256MB"}}, "resources.memory",
                "'256MB'", "Mi"),
        invalid("memory below 1Mi", {"resources": {"memory": "100Ki"}}, "resources.memory",
                "'100Ki'", "1Mi"),
        # replicas
        invalid("replicas min above max", {"replicas": {"min": 5, "max": 2}}, "replicas.min",
                "replicas.min 5", "replicas.max 2"),
        invalid("replicas initial outside", {"replicas": {"min": 1, "max": 3, "initial": 5}},
                "replicas.initial", "replicas.initial 5", "1..3"),
        invalid("replicas min 0", {"replicas": {"min": 0}}, "replicas.min", "replicas.min 0",
                f"1 to {REPLICAS_MAX}"),
        invalid("replicas max 1001", {"replicas": {"max": REPLICAS_MAX + 1}}, "replicas.max",
                f"replicas.max {REPLICAS_MAX + 1}", f"1 to {REPLICAS_MAX}"),
        # health check, image, command
        invalid("health path without '/'", {"health_check": {"path": "health"}},
                "health_check.path", "'health'", "starts with '/'"),
        invalid("health path missing", {"health_check": {}}, "health_check.path",
                "health_check.path is missing", "/health", code="missing_field"),
        invalid("neither image nor command", {"docker_image": None, "command": None},
                "docker_image", "docker_image", "command", code="missing_field"),
        invalid("command empty", {"command": []}, "command", "command", "1 to"),
        invalid("command program empty", {"command": [""]}, "command[0]", "command[0]",
                "program"),
        invalid("image reference invalid", {"docker_image": "Fcribeiro/Songs MS"},
                "docker_image", "'Fcribeiro/Songs MS'", "[registry/]repository[:tag]"),
        # what the cluster backend (local: it runs the command) refuses
        invalid("image without command", {"command": None}, "command", "has no command",
                "add \"command\"", "docker_image", code="missing_field"),
        invalid("command not on PATH", {"command": ["no-such-program-e2e", "--x"]},
                "command[0]", "'no-such-program-e2e'", "PATH"),
        invalid("command path missing", {"command": ["/nonexistent/emp-e2e/app"]}, "command[0]",
                "'/nonexistent/emp-e2e/app'", "does not exist"),
        invalid("command relative path", {"command": ["./app.py"]}, "command[0]", "'./app.py'",
                "relative path", "absolute path"),
        invalid("command not executable", {"command": [not_executable]}, "command[0]",
                f"'{not_executable}'", "not executable", "chmod +x"),
        # size, media type, authentication
        Row("body over 1 MiB", "POST", "/v1/apps",
            '{"name": "big", "port": 1, "command": ["' + "x" * ONE_MIB + '"]}', 413,
            "payload_too_large", re.compile(r"1048576|1 MiB")),
        Row("body over 1 MiB, no token", "POST", "/v1/users", b"{" + b" " * (ONE_MIB + 1)
            + b"}", 413, "payload_too_large", re.compile(r"1048576|1 MiB"), token=None),
        Row("spec as text/plain", "POST", "/v1/apps", h.app_spec("songs-ms"), 415,
            "unsupported_media_type", "application/json", content_type="text/plain"),
        Row("spec without Content-Type", "POST", "/v1/apps", h.app_spec("songs-ms"), 415,
            "unsupported_media_type", "application/json", content_type=None),
        Row("account as a form", "POST", "/v1/users", "username=a&password=b", 415,
            "unsupported_media_type", "application/json", token=None,
            content_type="application/x-www-form-urlencoded"),
        Row("list without a token", "GET", "/v1/apps", None, 401, "unauthorized", "token",
            "Authorization: Bearer", token=None),
        Row("app by id without a token", "GET", app, None, 401, "unauthorized", "token",
            token=None),
        Row("deploy without a token", "POST", "/v1/apps", h.app_spec("songs-ms"), 401,
            "unauthorized", "log in", token=None),
        Row("Authorization not Bearer", "GET", "/v1/apps", None, 401, "unauthorized", "Bearer",
            token=None, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
        Row("empty bearer token", "GET", "/v1/apps", None, 401, "unauthorized", "token",
            token=None, headers={"Authorization": "Bearer "}),
        Row("unknown token", "GET", "/v1/apps", None, 401, "unauthorized", "log in",
            token="emp_" + "A" * 43),
        Row("expired token, list", "GET", "/v1/apps", None, 401, "unauthorized", "expired",
            "log in", token="expired"),
        Row("expired token, app by id", "GET", app, None, 401, "unauthorized", "expired",
            token="expired"),
        Row("expired token, whoami", "GET", "/v1/sessions/current", None, 401, "unauthorized",
            "expired", token="expired"),
        # accounts and sessions
        Row("password too short", "POST", "/v1/users", {"username": "newbie",
                                                        "password": "x" * (PASSWORD_MIN - 1)},
            422, "invalid_field", f"at least {PASSWORD_MIN}", field="password", token=None),
        Row("username uppercase", "POST", "/v1/users", {"username": "Alice",
                                                        "password": h.new_password()},
            422, "invalid_field", "'Alice'", "lowercase", field="username", token=None),
        Row("username with '_'", "POST", "/v1/users", {"username": "al_ice",
                                                       "password": h.new_password()},
            422, "invalid_field", "'al_ice'", "'al-ice'", field="username", token=None),
        Row("username missing", "POST", "/v1/users", {"password": h.new_password()}, 422,
            "missing_field", "username", field="username", token=None),
        Row("username a number", "POST", "/v1/users", {"username": 5,
                                                       "password": h.new_password()},
            422, "invalid_field", "username", "string", field="username", token=None),
        Row("unknown field on an account", "POST", "/v1/users",
            {"username": "newbie", "password": h.new_password(), "email": "a@b.c"}, 422,
            "unknown_field", "'email'", "username, password", field="email", token=None),
        Row("username taken", "POST", "/v1/users", {"username": "alice",
                                                    "password": h.new_password()},
            409, "conflict", "'alice'", "taken", field="username", token=None),
        Row("login, malformed JSON", "POST", "/v1/sessions", '{"username": "alice"', 400,
            "malformed_json", "not valid JSON", token=None),
        Row("login, password missing", "POST", "/v1/sessions", {"username": "alice"}, 422,
            "missing_field", "password", field="password", token=None),
        # scale
        Row("scale to a string", "PUT", f"{app}/replicas", {"replicas": "3"}, 422,
            "invalid_field", "replicas", "integer", field="replicas"),
        Row("scale to a fraction", "PUT", f"{app}/replicas", {"replicas": 2.5}, 422,
            "invalid_field", "replicas", "integer", field="replicas"),
        Row("scale without replicas", "PUT", f"{app}/replicas", {}, 422, "missing_field",
            "replicas", field="replicas"),
        Row("scale with an unknown field", "PUT", f"{app}/replicas", {"replicas": 2, "now": True},
            422, "unknown_field", "'now'", field="now"),
        Row("scale above max", "PUT", f"{app}/replicas", {"replicas": app_max + 1}, 422,
            "out_of_range", str(app_max + 1), scale_range, field="replicas"),
        Row("scale to 0", "PUT", f"{app}/replicas", {"replicas": 0}, 422, "out_of_range",
            scale_range, field="replicas"),
        Row("scale, body not an object", "PUT", f"{app}/replicas", 3, 422, "invalid_field",
            "object"),
        Row("scale a missing app", "PUT", f"/v1/apps/{uuid.uuid4()}/replicas", {"replicas": 2},
            404, "not_found", "emp list"),
        # quality metrics at run time
        Row("update an unknown metric", "PUT", f"{qm}/cpu", {"values": "< 80%"}, 422,
            "invalid_field", "'cpu'", METRICS, field="metric"),
        Row("update latency unparsable", "PUT", f"{qm}/latency", {"values": "fast"}, 422,
            "invalid_field", "'fast'", "p50|p90|p95|p99", field="values"),
        Row("update throughput unparsable", "PUT", f"{qm}/throughput", {"values": "10"}, 422,
            "invalid_field", "'10'", "N rps", field="values"),
        Row("update values a number", "PUT", f"{qm}/throughput", {"values": 10}, 422,
            "invalid_field", "values", "string", field="values"),
        Row("update without values", "PUT", f"{qm}/latency", {}, 422, "missing_field", "values",
            field="values"),
        Row("update metric by a missing name", "PUT", "/v1/apps/no-such-app/quality-metrics/"
            "latency", {"values": "p95 < 1s"}, 404, "not_found", "'no-such-app'"),
        # queries
        Row("limit 0", "GET", "/v1/apps?limit=0", None, 400, "bad_request", "'0'",
            f"1 to {LIMIT_MAX}", field="limit"),
        Row("limit above max", "GET", f"/v1/apps?limit={LIMIT_MAX + 1}", None, 400, "bad_request",
            f"1 to {LIMIT_MAX}", field="limit"),
        Row("limit not a number", "GET", "/v1/apps?limit=ten", None, 400, "bad_request", "'ten'",
            field="limit"),
        Row("cursor invalid", "GET", "/v1/apps?cursor=%2A%2A%2A", None, 400, "bad_request",
            "cursor", "next_cursor", field="cursor"),
        # routes
        Row("unknown endpoint", "GET", "/v1/nothing", None, 404, "not_found", "/v1/nothing"),
        Row("unknown version", "GET", "/v2/apps", None, 404, "not_found", "/v2/apps"),
        Row("trailing slash", "GET", "/v1/apps/", None, 404, "not_found", "/v1/apps/"),
        Row("path too deep", "GET", f"{app}/stop/now", None, 404, "not_found", "/stop/now"),
        Row("missing app by id", "GET", f"/v1/apps/{uuid.uuid4()}", None, 404, "not_found",
            "emp list"),
        Row("missing app by name", "DELETE", f"/v1/apps/{app_name}-2", None, 404, "not_found",
            f"'{app_name}-2'"),
        Row("PATCH on /v1/apps", "PATCH", "/v1/apps", {}, 405, "method_not_allowed", "PATCH"),
        Row("GET on stop", "GET", f"{app}/stop", None, 405, "method_not_allowed", "POST"),
        Row("POST on replicas", "POST", f"{app}/replicas", {"replicas": 2}, 405,
            "method_not_allowed", "PUT"),
        Row("DELETE on /v1/users", "DELETE", "/v1/users", None, 405, "method_not_allowed",
            "POST", token=None),
        Row("PUT on the session", "PUT", "/v1/sessions/current", {}, 405, "method_not_allowed",
            "GET", "DELETE"),
        Row("POST on /healthz", "POST", "/healthz", {}, 405, "method_not_allowed", "GET",
            token=None),
    ]


class BadInputTest(h.E2ETestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = h.start_stack(cls.addClassCleanup, [
            "--resync", "1d", "--login-max-failures", str(LOGIN_MAX_FAILURES),
            "--login-window", f"{LOGIN_WINDOW_S}s"])
        cls.api = cls.stack.api
        cls.redis = cls.stack.redis.client()
        cls.not_executable = os.path.join(cls.stack.tmp, "app.py")
        with open(cls.not_executable, "w") as f:
            f.write("print('not executable')\n")
        os.chmod(cls.not_executable, 0o644)
        cls.passwords = []
        # alice's account is called "alice" here: the "username taken" row sends it again
        cls.password = h.new_password()
        cls.passwords.append(cls.password)
        cls.api.create_user("alice", cls.password)
        cls.tokens = {"alice": cls.api.login("alice", cls.password)}
        cls.app = cls.api.deploy(cls.tokens["alice"], h.app_spec("songs-ms"))
        # a stopped app is at rest: the reconciler leaves Redis alone until --resync (1 day)
        r = cls.api.request("POST", f"/v1/apps/{cls.app['id']}/stop", token=cls.tokens["alice"])
        assert r.status == 202, r
        cls.api.wait_app(cls.tokens["alice"], cls.app["id"],
                         lambda a: a["state"] == "stopped" and h.settled(a),
                         "the app to be stopped")
        h.wait_at_rest(cls.redis, cls.app["id"])
        cls.app = cls.api.app(cls.tokens["alice"], cls.app["id"])
        # an expired session: Redis drops the key when its TTL ends, which PEXPIRE brings forward
        expired = cls.api.login("alice", cls.password)
        cls.redis.pexpire(h.session_key(expired), 1)
        h.wait_until(lambda: not cls.redis.exists(h.session_key(expired)),
                     what="the session key to expire")
        cls.tokens["expired"] = expired

    def send(self, row):
        token = self.tokens.get(row.token, row.token)
        return self.api.request(row.method, row.path, row.body, token=token, headers=row.headers,
                                content_type=row.content_type)

    def test_each_bad_input_gets_its_error_and_changes_nothing(self):
        app = self.app
        table = rows(app["id"], app["name"], app["replicas"]["min"], app["replicas"]["max"],
                     self.not_executable)
        names = [r.name for r in table]
        self.assertEqual(len(names), len(set(names)), "row names must be unique")
        for row in table:
            with self.subTest(row.name):
                before = h.redis_snapshot(self.redis)
                resp = self.send(row)
                after = h.redis_snapshot(self.redis)
                self.assertEqual(resp.status, row.status, resp)
                err = resp.error
                self.assertEqual(err["code"], row.code, resp)
                for s in row.substrings:
                    if isinstance(s, re.Pattern):
                        self.assertRegex(err["message"], s, resp)
                    else:
                        self.assertIn(s, err["message"], resp)
                if row.field is not None:
                    self.assertEqual(err.get("field"), row.field, resp)
                if "details" in err:
                    self.assertEqual({k: err[k] for k in ("code", "message", "field") if k in err},
                                     err["details"][0], "error is the first of error.details")
                if row.status == 401:
                    self.assertIn("Bearer", resp.headers.get("WWW-Authenticate", ""), resp)
                if row.status == 405:
                    self.assertAllowMatchesSpec(row, resp)
                self.assertEqual(before, after, "Redis changed:\n"
                                 + h.snapshot_diff(before, after))

    def assertAllowMatchesSpec(self, row, resp):
        path = row.path.split("?")[0]
        for rx, template, item in h.spec().paths:
            if rx.match(path):
                wanted = {m.upper() for m in item if m in ("get", "put", "post", "delete",
                                                           "patch")}
                allow = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
                self.assertEqual(allow, wanted, f"Allow of {template}")
                return
        self.fail(f"{path} is not in the spec")

    def test_a_spec_with_several_problems_lists_them_all(self):
        spec_doc = h.app_spec("Bad_Name", port=0, envs=[{"name": "PORT", "value": "1"}],
                              quality_metrics=metric("speed", "fast"),
                              replicas={"min": 5, "max": 2}, colour="blue")
        before = h.redis_snapshot(self.redis)
        resp = self.api.request("POST", "/v1/apps", spec_doc, token=self.tokens["alice"])
        self.assertEqual(resp.status, 422, resp)
        details = resp.error.get("details", [])
        fields = {d.get("field") for d in details}
        for field in ("name", "port", "envs[0].name", "quality_metrics[0].metric",
                      "replicas.min", "colour"):
            self.assertIn(field, fields, resp)
        self.assertEqual(len(details), len(fields), f"one detail per problem: {resp}")
        first = {k: v for k, v in resp.error.items() if k != "details"}
        self.assertEqual(first, details[0], "error is the first of error.details")
        self.assertEqual(before, h.redis_snapshot(self.redis))

    def test_failed_logins_are_throttled_per_username(self):
        username, password = h.unique_name("carol"), h.new_password()
        other, other_password = h.unique_name("dave"), h.new_password()
        self.passwords += [password, other_password]
        self.api.create_user(username, password)
        self.api.create_user(other, other_password)
        wrong = {"username": username, "password": password + "-wrong"}
        counter = f"emp:loginfail:{username}"
        for attempt in range(1, LOGIN_MAX_FAILURES):
            resp = self.api.request("POST", "/v1/sessions", wrong)
            self.assertError(resp, 401, "unauthorized", "wrong username or password")
            self.assertEqual(self.redis.get(counter), str(attempt), "failures are counted")
            self.assertGreater(self.redis.ttl(counter), 0, "the count expires with the window")
        # the attempt that reaches the limit fails, whether it already says so or not
        resp = self.api.request("POST", "/v1/sessions", wrong)
        self.assertIn(resp.status, (401, 429), resp)
        # now even the right password is refused until the window ends
        resp = self.api.request("POST", "/v1/sessions", {"username": username,
                                                         "password": password})
        self.assertError(resp, 429, "too_many_requests", username)
        retry = resp.headers.get("Retry-After")
        self.assertIsNotNone(retry, resp)
        self.assertTrue(0 < int(retry) <= LOGIN_WINDOW_S, retry)
        self.assertIn(f"{retry} seconds", resp.error["message"])
        # another username is not affected
        self.api.login(other, other_password)
        # the window ends when the counter expires
        self.redis.pexpire(counter, 1)
        h.wait_until(lambda: not self.redis.exists(counter), what="the counter to expire")
        token = self.api.login(username, password)
        self.assertEqual(self.api.request("GET", "/v1/sessions/current", token=token).status,
                         200)

    def test_an_oversized_chunked_body_gets_413(self):
        """Without Content-Length the server finds out while reading (the proxy would add one,
        so this goes to emp-server directly)."""
        before = h.redis_snapshot(self.redis)
        with socket.create_connection(("127.0.0.1", self.stack.server.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                         b"Authorization: Bearer " + self.tokens["alice"].encode() + b"\r\n\r\n")
            chunk = b" " * 65536
            for _ in range(ONE_MIB // len(chunk) + 1):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            data = resp.read()
        h.check_response("POST", "/v1/apps", resp.status, resp.headers, data)
        self.assertEqual(resp.status, 413, data)
        self.assertEqual(json.loads(data)["error"]["code"], "payload_too_large")
        self.assertEqual(before, h.redis_snapshot(self.redis))

    def test_logs_hold_no_password_nor_token_and_name_each_request(self):
        resp = self.api.request("GET", "/v1/nothing", headers={"X-Request-Id": "e2e-trace-42"})
        self.assertEqual(resp.headers.get("X-Request-Id"), "e2e-trace-42")
        line = self.stack.server.wait_for_log(r".*req=e2e-trace-42 .*").group(0)
        for key in ("time=", "level=info", "method=GET", "status=404"):
            self.assertIn(key, line)
        own = self.api.request("GET", "/healthz").headers.get("X-Request-Id")
        self.assertTrue(own, "a request id even when the client sends none")
        self.stack.server.wait_for_log(f"req={own} ")
        logs = self.stack.server.logs()
        for secret in self.passwords + list(self.tokens.values()):
            self.assertNotIn(secret, logs)


class TokenTtlTest(h.E2ETestCase):
    def test_a_token_expires_after_token_ttl(self):
        ttl_s = 90
        stack = h.start_stack(self.addCleanup, ["--token-ttl", f"{ttl_s}s"])
        name, password = h.unique_name("alice"), h.new_password()
        stack.api.create_user(name, password)
        started = time.time()
        resp = stack.api.request("POST", "/v1/sessions", {"username": name,
                                                          "password": password})
        self.assertEqual(resp.status, 201, resp)
        expires = datetime.datetime.fromisoformat(resp.json["expires_at"].replace("Z", "+00:00"))
        self.assertAlmostEqual(expires.timestamp(), started + ttl_s, delta=5)
        pttl = stack.redis.client().pttl(h.session_key(resp.json["token"]))
        self.assertTrue((ttl_s - 5) * 1000 < pttl <= ttl_s * 1000, pttl)
        who = stack.api.request("GET", "/v1/sessions/current", token=resp.json["token"])
        self.assertEqual(who.json["expires_at"], resp.json["expires_at"])


if __name__ == "__main__":
    unittest.main()
