#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""POSTs Zipkin v2 span lists to a collector, as Zipkin's HTTP reporters do: one POST per list,
Content-Type: application/json, optionally gzip-compressed with Content-Encoding: gzip, on one
keep-alive connection. For tests; only the standard library.

    send_http.py --url http://127.0.0.1:8080/api/v2/spans [FILE ...]    (default: stdin)
        [--gzip] [--per-message N] [--raw] [--expect 202]

Input as for send_kafka.py (JSON lines or one JSON list; --raw posts each line unparsed). Exits 1,
saying which, when an answer is not the expected status; prints the number of POSTs.

    from send_http import post
    status, body = post(url, spans_list, gzip=True)
"""

import argparse
import gzip as gzip_module
import http.client
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import spans  # noqa: E402


def _body(message, use_gzip):
    if isinstance(message, (bytes, bytearray)):
        raw = bytes(message)
    elif isinstance(message, str):
        raw = message.encode()
    else:
        raw = json.dumps(message, separators=(",", ":")).encode()
    return gzip_module.compress(raw) if use_gzip else raw


class Poster:
    """One keep-alive connection to a collector URL; reconnects when the server closes it."""

    def __init__(self, url, timeout_s=10):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("send_http: %r is not an http(s) URL" % url)
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.timeout_s = timeout_s
        self.conn = None

    def _connect(self):
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(self.netloc, timeout=self.timeout_s)

    def post(self, message, use_gzip=False, headers=None):
        """POSTs one message (a list of spans, or bytes as they are); returns (status, body)."""
        body = _body(message, use_gzip)
        hdrs = {"Content-Type": "application/json"}
        if use_gzip:
            hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        while True:
            reused = self.conn is not None
            if not reused:
                self._connect()
            try:
                self.conn.request("POST", self.path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                # an idle keep-alive connection the server closed: retry once on a new one; a
                # fresh connection that fails is an answer (retrying could count spans twice)
                if not reused:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def post(url, message, gzip=False, headers=None, timeout_s=10):
    """POSTs one message to url on a connection of its own; returns (status, body bytes)."""
    poster = Poster(url, timeout_s)
    try:
        return poster.post(message, gzip, headers)
    finally:
        poster.close()


def main(argv=None):
    p = argparse.ArgumentParser(description="POSTs Zipkin v2 span lists to a collector URL.")
    p.add_argument("files", nargs="*", help="input files (default: stdin)")
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:9411/api/v2/spans")
    p.add_argument("--gzip", action="store_true", help="compress, with Content-Encoding: gzip")
    p.add_argument("--per-message", type=int, help="cut longer lists into lists of N spans")
    p.add_argument("--raw", action="store_true", help="post each input line unparsed")
    p.add_argument("--expect", type=int, default=202, help="the status every answer must have")
    args = p.parse_args(argv)
    messages = []
    for path in args.files or ["-"]:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
        if args.raw:
            messages.extend(line.encode() for line in text.splitlines() if line)
        else:
            messages.extend(spans.read_messages(text, args.per_message))
    poster = Poster(args.url)
    try:
        for n, message in enumerate(messages, 1):
            status, body = poster.post(message, args.gzip)
            if status != args.expect:
                print("send_http: POST %d of %d to %s: status %d, expected %d: %s"
                      % (n, len(messages), args.url, status, args.expect,
                         body[:200].decode(errors="replace")), file=sys.stderr)
                return 1
    finally:
        poster.close()
    print(len(messages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
