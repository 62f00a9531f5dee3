# SPDX-License-Identifier: Apache-2.0
"""Starting kube_fake.py from a Python test, and talking to it.

    fake = KubeFake()            # a fresh state directory and token, any free port
    fake.start()                 # returns once ready.json is there
    status, obj = fake.request("GET", "/api/v1/namespaces")
    fake.fault({"type": "crash_loop", "namespace": "emp-alice", "name": "web"})
    fake.assert_no_violations()  # raises AssertionError listing every bad body
    fake.stop()                  # SIGTERM; returns the exit code

Only the standard library; run with Debian's /usr/bin/python3.
"""

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
KUBE_FAKE = os.path.join(HERE, "kube_fake.py")


class KubeFake:
    def __init__(self, state_dir=None, token="kube-fake-token", args=(), log=None):
        self.own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="kube-fake-")
        self.token_file = os.path.join(self.state_dir, "token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        self.token = token
        self.args = list(args)
        self.log_path = log or os.path.join(self.state_dir, "kube_fake.log")
        self.proc = None
        self.ready = None
        self.conn = None

    def start(self, timeout=20):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["/usr/bin/python3", KUBE_FAKE, "--state-dir", self.state_dir, "--token-file",
                                      self.token_file] + self.args, stdout=self.logf, stderr=self.logf)
        path = os.path.join(self.state_dir, "ready.json")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    self.ready = json.load(f)
                break
            if self.proc.poll() is not None:
                raise RuntimeError("kube_fake exited with %s; see %s" % (self.proc.returncode, self.log_path))
            time.sleep(0.05)
        else:
            raise RuntimeError("kube_fake did not get ready; see %s" % self.log_path)
        u = urllib.parse.urlsplit(self.ready["url"])
        self.host, self.port = u.hostname, u.port
        self.ssl_ctx = ssl.create_default_context(cafile=self.ready["ca"])
        return self

    @property
    def url(self):
        return self.ready["url"]

    @property
    def kubeconfig(self):
        return self.ready["kubeconfig"]

    def connection(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl_ctx, timeout=timeout)

    def request(self, method, path, body=None, content_type="application/json", token=True, headers=None, raw=False):
        """(status, decoded JSON body or text) over one kept-alive connection."""
        h = {"Accept": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + (self.token if token is True else token)
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            h["Content-Type"] = content_type
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = self.connection()
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if raw:
            return resp.status, resp, data
        try:
            return resp.status, json.loads(data) if data else None
        except ValueError:
            return resp.status, data.decode("utf-8", "replace")

    def watch(self, path, timeout=10):
        """An open watch: call next_event() on what this returns, close() when done."""
        return Watch(self, path, timeout)

    def fault(self, f):
        status, body = self.request("POST", "/_fake/faults", f)
        if status != 201:
            raise AssertionError("fault refused: %s %s" % (status, body))
        return body

    def clear_faults(self):
        return self.request("DELETE", "/_fake/faults")[1]

    def config(self, **kw):
        return self.request("POST", "/_fake/config", kw)[1]

    def stats(self):
        return self.request("GET", "/_fake/stats")[1]

    def reset_stats(self):
        self.request("POST", "/_fake/stats/reset")

    def violations(self):
        return self.request("GET", "/_fake/violations")[1]

    def clear_violations(self):
        return self.request("DELETE", "/_fake/violations")[1]

    def assert_no_violations(self):
        v = self.violations()
        if v:
            raise AssertionError("the Kubernetes API (kube_fake) refused %d request(s) or answered badly:\n%s"
                                 % (len(v), json.dumps(v, indent=1)[:20000]))

    def wait_for(self, predicate, timeout=10, interval=0.05, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))

    def stop(self, timeout=10):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    rc = "killed"
            else:
                rc = self.proc.returncode
            self.logf.close()
            self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Watch:
    def __init__(self, fake, path, timeout):
        self.conn = fake.connection(timeout=timeout)
        self.conn.request("GET", path, headers={"Authorization": "Bearer " + fake.token, "Accept": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers

    def next_event(self):
        """The next event as a dict, or None at the end of the stream."""
        line = self.resp.readline()
        if not line:
            return None
        return json.loads(line)

    def events_until(self, predicate, limit=1000):
        out = []
        for _ in range(limit):
            ev = self.next_event()
            if ev is None:
                break
            out.append(ev)
            if predicate(ev):
                break
        return out

    def close(self):
        try:
            self.conn.sock.shutdown(2) if self.conn.sock else None
        except OSError:
            pass
        self.conn.close()


if __name__ == "__main__":  # run a fake in the foreground: kube_fake_harness.py [kube_fake args]
    f = KubeFake(args=sys.argv[1:])
    f.start()
    print(json.dumps(f.ready, indent=2))
    try:
        f.proc.wait()
    except KeyboardInterrupt:
        f.stop()
