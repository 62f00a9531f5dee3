# SPDX-License-Identifier: Apache-2.0
"""The harness of EMP's end-to-end tests.

Everything is real: a redis-server on a unix socket in a temporary directory, the emp-server binary
on 127.0.0.1 (a free port), the emp binary with a private XDG_CONFIG_HOME. Between the clients and
emp-server sits SpecProxy, which checks every response against api/openapi.yaml: a test class whose
requests got a response that breaks the contract fails at its end.

emp-server runs apps for real (the local backend): every app_spec() runs emp-testapp, every
emp-server gets a --gateway-ports range that no other e2e test process uses (GatewayPorts) and a
short --stop-grace, and stopping an emp-server makes sure that none of its replicas outlives it.

The binaries and the spec come from the environment (tests/e2e/CMakeLists.txt sets them):
EMP_SERVER_BIN, EMP_CLI_BIN, EMP_TESTAPP_BIN, EMP_OPENAPI; EMP_E2E_COVERAGE_DIR, when set, receives
the (operation, status) pairs this process saw.
"""

import atexit
import collections
import errno
import fcntl
import hashlib
import http.client
import http.server
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import jsonschema
import redis
import yaml

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
WAIT_S = 20


def need_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the e2e tests through ctest "
                           "(tests/e2e/CMakeLists.txt sets it)")
    return value


def server_bin():
    return need_env("EMP_SERVER_BIN")


def cli_bin():
    path = need_env("EMP_CLI_BIN")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"the emp CLI {path} is not built")
    return path


def testapp_bin():
    """emp-testapp (tests/apps/testapp.c): the app that the specs of these tests run."""
    path = need_env("EMP_TESTAPP_BIN")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"the test app {path} is not built")
    return path


def clean_env(**extra):
    """The environment of a child: ours without EMP_* settings, plus extra (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def wait_until(predicate, timeout=WAIT_S, interval=0.05, what="the condition"):
    """Polls predicate until it returns a true value, which is returned. what names the
    condition in the failure; a callable what is asked at the time of the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)


def read_text(path):
    with open(path) as f:
        return f.read()


def new_password():
    return "pw-" + secrets.token_hex(8)


_names = collections.Counter()


def unique_name(prefix):
    """A DNS-1035 label unique in this process (usernames and app names)."""
    _names[prefix] += 1
    return f"{prefix}{os.getpid() % 1000}x{_names[prefix]}"


def process_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---- processes, as the process table shows them ----


def _proc_read(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def app_processes(app_id):
    """Live processes whose environment has EMP_APP_ID=app_id: the app's replicas."""
    needle = f"EMP_APP_ID={app_id}".encode()
    found = []
    for pid in pids():
        raw = _proc_read(pid, "environ")
        if raw and needle in raw.split(b"\0") and process_alive(pid):
            found.append(pid)
    return found


def processes_in(directory):
    """Live processes whose working directory is in directory (replicas run in the state dir)."""
    directory = os.path.realpath(directory)
    found = []
    for pid in pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (cwd == directory or cwd.startswith(directory + os.sep)) and process_alive(pid):
            found.append(pid)
    return found


def children(pid):
    """The live child processes of pid."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        raw = _proc_read(pid, f"task/{tid}/children") or b""
        found += [int(x) for x in raw.split()]
    return [c for c in found if process_alive(c)]


def listening(port, host="127.0.0.1"):
    """True when a TCP socket listens on host:port (from /proc/net/tcp, not by connecting)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    any_addr = "00000000:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[1] in (want, any_addr):
                return True
    return False


def connection_refused(address, timeout=5):
    """True when a TCP connection to "host:port" is refused."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except ConnectionRefusedError:
        return True
    return False


# ---- gateway ports ----

PORT_UNIT = 16


def _gateway_port_span():
    """Where gateway ranges come from: below the ephemeral range (replica ports and outgoing
    connections come from there) and above the ports tests/unit/test_local.c uses (20000-27999)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_low, eph_high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        eph_low, eph_high = 32768, 60999
    if eph_low - 28000 >= 64 * PORT_UNIT:
        return 28000, eph_low
    return eph_high + 1, 65536


class GatewayPorts:
    """count ports for one emp-server's --gateway-ports: units of PORT_UNIT ports, each held with
    an flock on a file in a directory every e2e test process shares, so no two test processes
    running at once (ctest -j) get one port; and nothing listens on any of them when taken. The
    locks stay until this process exits: a restarted emp-server keeps its range."""

    LOCK_DIR = os.path.join(tempfile.gettempdir(), "emp-e2e-gateway-ports")

    def __init__(self, count=PORT_UNIT):
        units = -(-count // PORT_UNIT)
        low, high = _gateway_port_span()
        starts = list(range(low, high - units * PORT_UNIT + 1, PORT_UNIT))
        os.makedirs(self.LOCK_DIR, exist_ok=True)
        rng = secrets.SystemRandom()
        rng.shuffle(starts)
        for start in starts:
            fds = self._lock(start, units)
            if fds is None:
                continue
            ports = range(start, start + units * PORT_UNIT)
            if all(self._bindable(p) for p in ports):
                self.fds, self.min, self.max = fds, start, start + count - 1
                return
            for fd in fds:
                os.close(fd)
        raise AssertionError(f"no {count} free gateway ports in {low}-{high - 1}")

    def _lock(self, start, units):
        fds = []
        for unit in range(units):
            path = os.path.join(self.LOCK_DIR, f"{start + unit * PORT_UNIT}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                for held in fds:
                    os.close(held)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise
            fds.append(fd)
        return fds

    @staticmethod
    def _bindable(port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    @property
    def arg(self):
        return f"{self.min}-{self.max}"

    def __contains__(self, port):
        return self.min <= port <= self.max


# ---- Redis ----


class RedisServer:
    """A redis-server on a unix socket in directory (no TCP port), AOF on, RDB off."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.socket = os.path.join(directory, "redis.sock")
        self.proc = None

    @property
    def url(self):
        return "unix://" + self.socket

    def client(self):
        return redis.Redis(unix_socket_path=self.socket, decode_responses=True)

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", self.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}: "
                                     + self.log_tail())
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(self.socket)
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith(b"+PONG")
                except OSError:
                    return False

        wait_until(ready, what="redis-server to accept connections")
        return self

    def log_tail(self):
        with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
            return f.read()[-2000:]

    def stop(self):
        """Shuts Redis down cleanly (SIGTERM writes the AOF), SIGKILL if it does not."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()
        if self.proc:
            kill_group(self.proc)


def redis_snapshot(client):
    """Every key: (type, value, has a TTL). Equal snapshots mean Redis did not change.

    Taken once no reconciler holds a lease: a reconcile in flight moves its app's lease and
    schedule entry by design, which is not a change a request made."""
    wait_until(lambda: not list(client.scan_iter(match="emp:lease:*", count=1000)),
               what="the reconcilers to finish what they work on")
    snap = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = f"<{kind}>"
        snap[key] = (kind, value, client.pttl(key) >= 0)
    return snap


def snapshot_diff(before, after):
    """What changed between two snapshots, one line per key."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"{key}: {before.get(key)!r} -> {after.get(key)!r}")
    return "\n".join(lines)


def session_key(token):
    return "emp:session:" + hashlib.sha256(token.encode()).hexdigest()


# ---- emp-server ----


class EmpServer:
    """emp-server on 127.0.0.1 with a free port; its stderr (the log) is kept in a buffer.

    Unless args say otherwise it gets gateway_ports ports of its own (GatewayPorts, kept across
    restarts) and --stop-grace 1s, so that stopping apps is quick. env adds to its environment."""

    LISTENING = re.compile(r"msg=listening url=http://127\.0\.0\.1:(\d+)")
    REPLICAS_GONE_S = 10

    def __init__(self, state_dir, redis_url=None, args=(), gateway_ports=PORT_UNIT, env=None):
        self.state_dir = state_dir
        self.redis_url = redis_url
        self.args = list(args)
        self.env = dict(env or {})
        self.gateway_ports = None
        if "--gateway-ports" not in self.args:
            self.gateway_ports = GatewayPorts(gateway_ports)
            self.args += ["--gateway-ports", self.gateway_ports.arg]
        if "--stop-grace" not in self.args:
            self.args += ["--stop-grace", "1s"]
        self.proc = None
        self.port = None
        self._lines = []
        self._lock = threading.Lock()
        self._reader = None
        self._asked_to_exit = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        cmd = [server_bin(), "--listen", "127.0.0.1:0", "--state-dir", self.state_dir,
               "--log-level", "info"]
        if self.redis_url:
            cmd += ["--redis-url", self.redis_url]
        cmd += self.args
        listening = threading.Event()
        self._lines = []
        self.port = None
        self._asked_to_exit = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     env=clean_env(**self.env))

        def read(stream):
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace")
                with self._lock:
                    self._lines.append(line)
                m = self.LISTENING.search(line)
                if m and not listening.is_set():
                    self.port = int(m.group(1))
                    listening.set()
            stream.close()

        self._reader = threading.Thread(target=read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

        def up():
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"emp-server exited with {self.proc.returncode} before "
                                     f"listening: {' '.join(cmd)}\n{self.logs()}")
            return listening.is_set()

        wait_until(up, what="emp-server to log 'msg=listening'")
        return self

    def logs(self):
        with self._lock:
            return "".join(self._lines)

    def wait_for_log(self, pattern, timeout=WAIT_S):
        return wait_until(lambda: re.search(pattern, self.logs()), timeout,
                          what=f"a log line matching {pattern!r}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self._asked_to_exit = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self):
        """SIGKILL: the crash case."""
        self._asked_to_exit = True
        self.proc.kill()
        return self.wait(10)

    def replicas(self):
        """The live processes that run in this server's state directory (but its embedded
        redis-server): its apps' replicas."""
        return [p for p in processes_in(self.state_dir) if p != self.embedded_redis_pid()]

    def reap_replicas(self):
        """Once emp-server has exited: waits a while for its replicas to end (they end with it),
        then kills any that did not and fails, so that no test leaves a process behind."""
        deadline = time.monotonic() + self.REPLICAS_GONE_S
        left = self.replicas()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.replicas()
        if not left:
            return
        described = {pid: (_proc_read(pid, "cmdline") or b"").replace(b"\0", b" ").decode(
            errors="replace") for pid in left}
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise AssertionError(f"replicas outlived emp-server by {self.REPLICAS_GONE_S} s and were "
                             f"killed: {described}")

    CRASH_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "double free",
                     "corruption", "Segmentation fault")

    def crash_report(self, size=3000):
        """The part of the log that says how emp-server crashed: from a sanitizer's or glibc's
        report when there is one, else the end."""
        logs = self.logs()
        found = [i for i in (logs.find(m) for m in self.CRASH_MARKERS) if i >= 0]
        start = max(0, min(found) - 300) if found else max(0, len(logs) - size)
        return logs[start:start + size]

    def embedded_redis_pid(self):
        try:
            with open(os.path.join(self.state_dir, "redis", "emp-redis.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self):
        """SIGTERM, then SIGKILL after a grace period; also kills an embedded Redis left over.
        Fails when emp-server had exited without being asked to (it crashed), with its log."""
        if self.proc is None:
            return None
        crashed = self.proc.poll() is not None and not self._asked_to_exit
        self._asked_to_exit = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()
        kill_group(self.proc)
        self._reader.join(5)
        pid = self.embedded_redis_pid()
        if pid and process_alive(pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = self.state_dir.encode() in f.read()
                if ours:
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        self.reap_replicas()
        if crashed:
            raise AssertionError(f"emp-server exited by itself, with {self.proc.returncode}; "
                                 f"its log:\n{self.crash_report()}")
        return self.proc.returncode


# ---- the OpenAPI contract ----


class Spec:
    """api/openapi.yaml as JSON Schemas: the response schema of each path template, method and
    status. $refs are inlined; OpenAPI 3.0's `nullable: true` becomes a "null" type."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.paths = []
        for template, item in self.doc["paths"].items():
            parts = [("[^/]+" if seg.startswith("{") else re.escape(seg))
                     for seg in template.split("/")]
            self.paths.append((re.compile("^" + "/".join(parts) + "$"), template, item))
        self.error_schema = self.schema({"$ref": "#/components/schemas/Error"})
        self.format_checker = jsonschema.FormatChecker(formats=())
        self.format_checker.checks("date-time")(lambda s: not isinstance(s, str) or bool(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", s)))
        self.format_checker.checks("uuid")(lambda s: not isinstance(s, str) or bool(
            re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", s)))

    def resolve(self, ref):
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref}")
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def schema(self, node, seen=()):
        """node as a JSON Schema that jsonschema understands."""
        if isinstance(node, list):
            return [self.schema(x, seen) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise ValueError(f"recursive $ref {ref}")
            return self.schema(self.resolve(ref), seen + (ref,))
        out = {}
        for key, value in node.items():
            if key == "properties":
                out[key] = {name: self.schema(s, seen) for name, s in value.items()}
            elif key != "nullable":
                out[key] = self.schema(value, seen)
        if node.get("nullable"):
            if isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
        return out

    def operations(self):
        """Every (operationId, status) the spec lists."""
        for _, _, item in self.paths:
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    for status in op["responses"]:
                        yield op["operationId"], int(status)

    def expect(self, method, path):
        """(operation key, {status: response object}) for a request."""
        for rx, template, item in self.paths:
            if rx.match(path):
                op = item.get(method.lower())
                if not isinstance(op, dict):
                    return (f"({method} on {template}: not allowed)",
                            {405: {"content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Error"}}}}})
                return op["operationId"], {int(s): r for s, r in op["responses"].items()}
        return ("(unknown path)", {404: {"content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Error"}}}}})

    def check(self, method, target, status, headers, body):
        """(operation key, problems) of one response."""
        path = urllib.parse.urlsplit(target).path
        key, responses = self.expect(method, path)
        problems = []
        ctype = headers.get("Content-Type") or ""
        if ctype.split(";")[0].strip().lower() != "application/json":
            problems.append(f"Content-Type is {ctype!r}, not application/json")
        try:
            doc = json.loads(body)
        except ValueError as e:
            problems.append(f"the body is not JSON ({e}): {body[:200]!r}")
            doc = None
        response = responses.get(status)
        if response is None:
            problems.append(f"status {status} is not listed for {key} (listed: "
                            f"{sorted(responses)})")
            return key, problems
        if "$ref" in response:
            response = self.resolve(response["$ref"])
        for name, header in (response.get("headers") or {}).items():
            value = headers.get(name)
            if value is not None and header.get("schema", {}).get("type") == "integer" \
                    and not re.fullmatch(r"\d+", value.strip()):
                problems.append(f"header {name}: {value!r} is not an integer")
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema is None:
            problems.append(f"the spec gives no application/json schema for {key} {status}")
        elif doc is not None or not problems:
            validator = jsonschema.Draft4Validator(self.schema(schema),
                                                   format_checker=self.format_checker)
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                where = "/".join(str(p) for p in err.absolute_path) or "(root)"
                problems.append(f"at {where}: {err.message}")
        return key, problems


_spec = None


def spec():
    global _spec
    if _spec is None:
        _spec = Spec(need_env("EMP_OPENAPI"))
    return _spec


# What every proxy of this process recorded; checked by E2ETestCase at the end of each class.
VIOLATIONS = []
COVERAGE = collections.Counter()
_record_lock = threading.Lock()
_current_test = ["(outside a test)"]


def _write_coverage():
    directory = os.environ.get("EMP_E2E_COVERAGE_DIR")
    if not directory or not COVERAGE:
        return
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(os.environ.get("EMP_E2E_NAME", str(os.getpid())))
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump([[op, status, n] for (op, status), n in sorted(COVERAGE.items())], f)


atexit.register(_write_coverage)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length", "expect"}


class SpecProxy:
    """A threaded HTTP proxy in front of emp-server that checks every response against the spec.
    retarget() points it at another port (a restarted emp-server)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.requests = []  # (method, target) of every request, in order
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def read_body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length else None

            def forward(self):
                body = self.read_body()
                with _record_lock:
                    proxy.requests.append((self.command, self.path))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in HOP_BY_HOP:
                            conn.putheader(name, value)
                    if body is not None:
                        conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders()
                    if body:
                        try:
                            conn.send(body)
                        except (BrokenPipeError, ConnectionResetError):
                            pass  # the server answered before reading it all (413)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError as e:
                    record(self.command, self.path, "(upstream)", [f"no answer: {e}"])
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                finally:
                    conn.close()
                key, problems = spec().check(self.command, self.path, resp.status, resp.headers,
                                             data)
                record(self.command, self.path, (key, resp.status), problems)
                self.send_response_only(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def retarget(self, port):
        self.upstream_port = port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def check_response(method, target, status, headers, body):
    """Checks a response that did not pass through a proxy (a test that talks to emp-server
    directly) and records it like the proxy does."""
    key, problems = spec().check(method, target, status, headers, body)
    record(method, target, (key, status), problems)


def record(method, target, key, problems):
    with _record_lock:
        if isinstance(key, tuple):
            COVERAGE[key] += 1
        for p in problems:
            VIOLATIONS.append(f"[{_current_test[0]}] {method} {target} -> {key}: {p}")


# ---- raw HTTP ----


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def error(self):
        return self.json["error"]

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:500]!r}>"


class Api:
    """A small HTTP client for the REST API (through the proxy)."""

    def __init__(self, base_url):
        self.base_url = base_url

    def request(self, method, path, body=None, token=None, headers=None,
                content_type="application/json", timeout=30):
        u = urllib.parse.urlsplit(self.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        hdrs = {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None and content_type:
            hdrs["Content-Type"] = content_type
        if token:
            hdrs["Authorization"] = "Bearer " + token
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def create_user(self, username, password):
        r = self.request("POST", "/v1/users", {"username": username, "password": password})
        if r.status != 201:
            raise AssertionError(f"creating account {username}: {r}")
        return r.json

    def login(self, username, password):
        r = self.request("POST", "/v1/sessions", {"username": username, "password": password})
        if r.status != 201:
            raise AssertionError(f"logging in {username}: {r}")
        return r.json["token"]

    def new_user(self, prefix="user"):
        """Creates an account and logs in: (username, password, token)."""
        username, password = unique_name(prefix), new_password()
        self.create_user(username, password)
        return username, password, self.login(username, password)

    def deploy(self, token, spec_doc):
        r = self.request("POST", "/v1/apps", spec_doc, token=token)
        if r.status != 201:
            raise AssertionError(f"deploying {spec_doc.get('name')}: {r}")
        return r.json

    def app(self, token, ref):
        r = self.request("GET", "/v1/apps/" + urllib.parse.quote(ref, safe=""), token=token)
        if r.status != 200:
            raise AssertionError(f"reading app {ref}: {r}")
        return r.json

    def wait_app(self, token, ref, predicate, what, timeout=WAIT_S):
        last = []

        def check():
            last[:] = [self.app(token, ref)]
            return predicate(last[0])

        try:
            wait_until(check, timeout, 0.05, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the app is {json.dumps(last[0] if last else None)}")
        return last[0]


def app_spec(app_name, **changes):
    """A valid app spec (the thesis' example, whose command runs emp-testapp), with changes
    applied (None removes a field)."""
    doc = {
        "name": app_name,
        "docker_image": "fcribeiro/songs_ms:1.0",
        "stateless": True,
        "port": 5000,
        "envs": [{"name": "DB_HOST", "value": "songs-db"}],
        "quality_metrics": [{"metric": "latency", "values": "p95 < 200ms"},
                            {"metric": "availability", "values": ">= 99.9%"}],
        "resources": {"cpu": "250m", "memory": "256Mi"},
        "replicas": {"min": 1, "max": 10, "initial": 2},
        "health_check": {"path": "/health"},
        "command": [testapp_bin()],
    }
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def wait_at_rest(client, app_id, quiet_s=0.5, timeout=WAIT_S):
    """Waits until nothing will touch app_id's records on its own: none of its replicas is left
    (a replica that ends changes the ready count, which makes the reconciler look again), no
    reconciler holds its lease, and it is not due in the next 10 s; all that for quiet_s in a
    row."""
    since = [None]

    def quiet():
        due = client.zscore("emp:recon:due", app_id)
        now = time.time() * 1000
        ok = (not app_processes(app_id) and not client.exists(f"emp:lease:{app_id}")
              and (due is None or due > now + 10000))
        if not ok:
            since[0] = None
            return False
        since[0] = since[0] or time.monotonic()
        return time.monotonic() - since[0] >= quiet_s

    wait_until(quiet, timeout, what=f"app {app_id} to be at rest")


def settled(app):
    """The reconciler has acted on the latest change and the app is at rest (not deploying)."""
    return app["observed_generation"] == app["generation"] and app["state"] in (
        "running", "stopped", "failed")


# ---- the apps, through their gateway ----


def app_request(address, method="GET", path="/", timeout=5, body=None, headers=None):
    """One request to an app at address ("host:port"), on a connection of its own: (status, the
    JSON body). body, when not None, is sent as JSON; headers add to the request's. Raises OSError
    (http.client's errors included) when there is no answer."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    hdrs = {"Connection": "close"}
    if body is not None:
        body = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        return resp.status, doc
    except http.client.HTTPException as e:
        raise ConnectionError(f"{method} {path} at {address}: {e!r}") from e
    finally:
        conn.close()


def replicas_seen(address, count, path="/"):
    """GETs path count times: {replica: answers}; every answer must be 200."""
    seen = collections.Counter()
    for _ in range(count):
        status, doc = app_request(address, "GET", path)
        if status != 200:
            raise AssertionError(f"GET {path} at {address} answered {status}: {doc}")
        seen[doc["replica"]] += 1
    return seen


# ---- tracing ----


def tracing_tools():
    """tests/tracing/harness.py (KafkaMock, ZipkinApp, consume ...), loaded under a name of its
    own: it is also called harness.py."""
    module = sys.modules.get("tracing_harness")
    if module is None:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "tracing", "harness.py")
        spec_ = importlib.util.spec_from_file_location("tracing_harness", path)
        module = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(module)
        sys.modules["tracing_harness"] = module
    return module


def metrics(api, token, ref, window="10m"):
    """GET /v1/apps/{ref}/metrics?window=window, which must answer 200: the metrics."""
    r = api.request("GET", f"/v1/apps/{urllib.parse.quote(ref, safe='')}/metrics?window={window}",
                    token=token)
    if r.status != 200:
        raise AssertionError(f"metrics of {ref}: {r}")
    return r.json


def edge(deps, service):
    """The entry for service in a metrics' dependencies list (outgoing or incoming), or None."""
    found = [d for d in deps if d["service"] == service]
    return found[0] if found else None


# ---- the CLI ----


class CliResult:
    def __init__(self, args, code, out, err):
        self.args, self.code, self.out, self.err = args, code, out, err

    def __repr__(self):
        return (f"<emp {' '.join(self.args)}: exit {self.code}\n--- stdout\n{self.out}"
                f"--- stderr\n{self.err}>")


class Cli:
    """Runs the emp binary with a private HOME and XDG_CONFIG_HOME, pointed at server_url. It runs
    in a new session, so it has no controlling terminal unless a test gives it one."""

    def __init__(self, home, server_url):
        self.home = home
        self.config_home = os.path.join(home, "config")
        os.makedirs(self.config_home, exist_ok=True)
        self.server_url = server_url

    @property
    def credentials_path(self):
        return os.path.join(self.config_home, "emp", "credentials.json")

    def credentials(self):
        with open(self.credentials_path) as f:
            return json.load(f)

    def env(self, **extra):
        base = {"HOME": self.home, "XDG_CONFIG_HOME": self.config_home,
                "EMP_SERVER": self.server_url, "LC_ALL": "C.UTF-8"}
        base.update(extra)
        return clean_env(**base)

    def run(self, *args, input=None, timeout=60, **env):
        proc = subprocess.run([cli_bin(), *args], input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, text=True, env=self.env(**env),
                              timeout=timeout, start_new_session=True)
        return CliResult(list(args), proc.returncode, proc.stdout, proc.stderr)


def logged_in_cli(stack, add_cleanup, prefix="dev"):
    """A new account on stack and a Cli logged in as it: (cli, username, token)."""
    cli = Cli(make_tmpdir(add_cleanup), stack.proxy.url)
    username, password = unique_name(prefix), new_password()
    stack.api.create_user(username, password)
    result = cli.run("login", "--username", username, "--password-stdin", input=password + "\n")
    if result.code != 0:
        raise AssertionError(f"login: {result}")
    return cli, username, cli.credentials()["servers"][cli.server_url]["token"]


class CliApps:
    """What tests that deploy through the CLI share; the class sets cli, api and token."""

    def emp(self, *args, code=0, **kw):
        result = self.cli.run(*args, **kw)
        self.assertEqual(result.code, code, result)
        return result

    def write_spec(self, doc):
        path = os.path.join(self.cli.home, f"{doc['name']}-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def info(self, ref):
        return json.loads(self.emp("info", ref, "-o", "json").out)

    def wait_app(self, ref, predicate, what, timeout=WAIT_S):
        return self.api.wait_app(self.token, ref, predicate, what, timeout)

    def wait_ready(self, ref, count, timeout=WAIT_S, address=False):
        """running and settled with count ready replicas (and an address, when asked)."""
        return self.wait_app(ref, lambda a: a["state"] == "running" and settled(a)
                             and a["replicas"]["ready"] == count == a["replicas"]["desired"]
                             and (a["address"] or not address),
                             f"{count} ready replicas" + (" and an address" if address else ""),
                             timeout)

    def wait_gone(self, app_id):
        wait_until(lambda: self.api.request("GET", f"/v1/apps/{app_id}",
                                            token=self.token).status == 404,
                   what=f"app {app_id} to be removed")


# ---- the test case base ----


class Stack:
    """redis-server + emp-server + proxy, as started by start_stack()."""

    def __init__(self, tmp, redis_server, server, proxy):
        self.tmp, self.redis, self.server, self.proxy = tmp, redis_server, server, proxy
        self.api = Api(proxy.url)

    def restart_server(self, kill=True):
        """Kills (SIGKILL) or stops emp-server and starts it again on the same Redis."""
        if kill:
            self.server.kill()
        else:
            self.server.stop()
        self.server.start()
        self.proxy.retarget(self.server.port)


def make_tmpdir(add_cleanup):
    # short, because unix socket paths are limited to 107 bytes
    tmp = tempfile.mkdtemp(prefix="emp-e2e-")
    add_cleanup(shutil.rmtree, tmp, True)
    return tmp


def start_stack(add_cleanup, server_args=(), gateway_ports=PORT_UNIT, env=None):
    tmp = make_tmpdir(add_cleanup)
    redis_server = RedisServer(os.path.join(tmp, "redis")).start()
    add_cleanup(redis_server.stop)
    server = EmpServer(os.path.join(tmp, "state"), redis_server.url, server_args,
                       gateway_ports=gateway_ports, env=env)
    add_cleanup(server.stop)
    server.start()
    proxy = SpecProxy(server.port)
    add_cleanup(proxy.close)
    return Stack(tmp, redis_server, server, proxy)


class E2ETestCase(unittest.TestCase):
    """Fails a class at its end when any response its tests received broke the contract."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls._violations_from = len(VIOLATIONS)

    @classmethod
    def tearDownClass(cls):
        with _record_lock:
            found = VIOLATIONS[cls._violations_from:]
        if found:
            raise AssertionError(f"{len(found)} responses broke api/openapi.yaml:\n  "
                                 + "\n  ".join(found))

    def setUp(self):
        _current_test[0] = self.id()

    def assertError(self, resp, status, code, *substrings, field=None):
        """resp is an error answer with this status and code whose message names each of
        substrings; and error.field is field, when given."""
        self.assertEqual(resp.status, status, resp)
        err = resp.error
        self.assertEqual(err["code"], code, resp)
        for s in substrings:
            self.assertIn(s, err["message"], resp)
        if field is not None:
            self.assertEqual(err.get("field"), field, resp)
        return err
