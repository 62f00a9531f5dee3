#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Zipkin v2 span lists for EMP's tracing tests, generated deterministically from a seed, together
with the ground truth that a test compares EMP's numbers with. Not a tracer: nothing here measures
anything; the spans describe traffic that never happened, exactly as the test wants it.

    import spans
    topo = spans.chain(["alice/a", "alice/b", "alice/c"], latency_ms=[2, (40, 60), 5],
                       error_rate=[0, 0.1, 0])
    gen = spans.generate(topo, traces=500, seed=7, start_us=spans.now_us())
    gen.spans                    # flat list of span dicts, trace after trace
    gen.messages(per_message=50) # lists of spans, one per Kafka message / HTTP POST
    gen.truth                    # what EMP must report (format below)
    spans.analyze(gen.spans)     # the same truth, recomputed from spans alone (works on real
                                 # py_zipkin output too)
    truth = {}
    for trace in spans.iter_traces(topo, truth, traces=10**6):  # the same, streamed
        ...
    spans.py --chain alice/a:2,alice/b:40-60:0.1,alice/c:5 --traces 100 --truth t.json |
        kcat -P -b BOOTSTRAP -t zipkin         # one JSON list per line = one message

A topology maps a service name to its description:
    {"alice/a": {"latency_ms": 2, "calls": ["alice/b", "alice/b", "postgres"]},
     "alice/b": {"latency_ms": (40, 60), "error_rate": 0.1},
     "postgres": {"instrumented": False, "latency_ms": 1}}
  latency_ms   the service's own work per request ("self time"), excluding the calls it makes: a
               number (fixed), a (low, high) pair (uniform) or a function of a random.Random
  error_rate   probability that the service fails a request by itself (default 0)
  calls        services called, in order, one after the other, per request (repeat a name to call
               it twice)
  instrumented False for a service that reports no spans (a database): its callers' client spans
               name it in remoteEndpoint.serviceName, and it appears only as an edge's callee

Spans follow Zipkin's conventions: 16-hex span ids, 32-hex (or 16-hex) trace ids, epoch
microsecond integers, a SERVER span per instrumented request and a CLIENT span per call, B3
propagation in one of two conventions ("b3" argument): "child" (the server span is a child of the
client span: parentId = client id) or "shared" (the server span reuses the client's span id and
parentId and says "shared": true). "mixed" picks one per call; "py_zipkin" is "child" with the
server span marked "shared": true, which is what py_zipkin 0.15 emits for a joined trace.
Errors are tagged the three ways instrumentation does it: an "error" tag and http.status_code 5xx,
http.status_code 5xx alone, or an "error" tag alone (a non-HTTP call). A failed call fails its
caller too (propagate_errors). Calls are sequential, so a service's self time is its own work.
A client span always has a remoteEndpoint (ipv4, port); its serviceName is there for an
uninstrumented callee, and for an instrumented one half of the time, as instrumentation names the
remote only when it knows it. Server spans have localEndpoint (serviceName, ipv4, port 8080) and,
unless root, a remoteEndpoint with the caller's address and no serviceName.

Ground truth (gen.truth, and what analyze() returns), JSON-serialisable:
    {"traces": 500, "spans": 2500,
     "services": {SERVICE: {"requests": SERVER spans (and root spans without kind),
                            "errors": of those, the ones with an "error" tag or status >= 500,
                            "durations_us": [server span durations],
                            "self_us": [duration minus the union of its outgoing calls]}},
     "edges": {CALLER: {CALLEE: {"calls": n, "errors": calls where either side is in error,
                                 "durations_us": [client span durations: what the caller waited],
                                 "server_durations_us": [the callee's server span durations;
                                                         empty for an uninstrumented callee]}}}}
Lists are in no particular order; compare them sorted, or through percentile().
"""

import argparse
import json
import math
import random
import sys
import time

__all__ = ["chain", "generate", "iter_traces", "analyze", "percentile", "is_error", "now_us", "read_messages",
           "Generated"]


def now_us():
    """The current time in epoch microseconds, as Zipkin wants timestamps."""
    return int(time.time() * 1_000_000)


def chain(services, latency_ms=1, error_rate=0.0):
    """A topology where each service calls the next once: chain(["a", "b", "c"]) is a -> b -> c.
    latency_ms and error_rate are one value for all, or a list with one value per service."""
    n = len(services)
    lat = latency_ms if isinstance(latency_ms, list) else [latency_ms] * n
    err = error_rate if isinstance(error_rate, list) else [error_rate] * n
    if len(lat) != n or len(err) != n:
        raise ValueError("chain: latency_ms and error_rate need one value per service")
    topo = {}
    for i, name in enumerate(services):
        topo[name] = {"latency_ms": lat[i], "error_rate": err[i],
                      "calls": [services[i + 1]] if i + 1 < n else []}
    return topo


def percentile(values, q):
    """The q-th percentile (0 < q <= 100) by nearest rank: the smallest value with at least q % of
    the values at or below it. What a histogram with bounded relative error approximates."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def is_error(span):
    """EMP's rule (issue 5): an "error" tag, whatever its value, or http.status_code >= 500."""
    tags = span.get("tags") or {}
    if "error" in tags:
        return True
    try:
        return int(tags.get("http.status_code", "0")) >= 500
    except (TypeError, ValueError):
        return False


class Generated:
    """The result of generate(): spans, the same spans per trace, and the ground truth."""

    def __init__(self, traces, truth):
        self.traces = traces
        self.spans = [s for t in traces for s in t]
        self.truth = truth

    def messages(self, per_message=100, shuffle_seed=None):
        """The spans cut into lists of at most per_message spans (one Kafka message or one POST
        each). Without shuffle_seed, in trace order; with it, shuffled first, so that a trace's
        spans arrive in different messages and out of order."""
        spans = list(self.spans)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(spans)
        return [spans[i:i + per_message] for i in range(0, len(spans), per_message)]


def _latency_us(rng, spec):
    if callable(spec):
        ms = spec(rng)
    elif isinstance(spec, (tuple, list)):
        ms = rng.uniform(spec[0], spec[1])
    else:
        ms = spec
    return max(1, int(round(ms * 1000)))


def _split(rng, total, parts):
    """total cut into `parts` non-negative integers that add up to it."""
    if parts == 1:
        return [total]
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


class _Builder:
    def __init__(self, topology, rng, b3, root_kind, propagate_errors, status_4xx_rate,
                 network_us, trace_id_bits):
        for name, svc in topology.items():
            for callee in svc.get("calls", []):
                if callee not in topology:
                    raise ValueError("topology: %s calls unknown service %s" % (name, callee))
        if b3 not in ("child", "shared", "mixed", "py_zipkin"):
            raise ValueError("b3 must be child, shared, mixed or py_zipkin")
        self.topology = topology
        self.rng = rng
        self.b3 = b3
        self.root_kind = root_kind
        self.propagate_errors = propagate_errors
        self.status_4xx_rate = status_4xx_rate
        self.network_us = network_us
        self.trace_id_bits = trace_id_bits
        self.used_ids = set()  # ids of the current trace: unique within it, as Zipkin needs
        # stable addresses: the n-th service (in topology order) is 10.0.0.n+1, listening on 8080
        self.addr = {name: "10.0.%d.%d" % ((i + 1) // 250, (i + 1) % 250 + 1)
                     for i, name in enumerate(topology)}
        self.spans = []
        self.truth = {"traces": 0, "spans": 0, "services": {}, "edges": {}}

    def new_id(self, bits=64):
        while True:
            value = self.rng.getrandbits(bits)
            text = "%0*x" % (bits // 4, value)
            if value and text not in self.used_ids:
                self.used_ids.add(text)
                return text

    def endpoint(self, service, port=None):
        ep = {"serviceName": service, "ipv4": self.addr[service]}
        if port:
            ep["port"] = port  # a localEndpoint's port is the listen port: none for a client
        return ep

    def outcome(self, service, failed_by_itself, failed_downstream):
        """Status code and error tag (None: none) of one request's answer."""
        rng = self.rng
        if not failed_by_itself and not failed_downstream:
            status = 404 if rng.random() < self.status_4xx_rate else 200
            return {"status": status, "error": None}
        status = rng.choice([500, 503]) if failed_by_itself else 502
        style = rng.choice(["tag+status", "status", "tag"])
        message = rng.choice(["", "true", str(status), "upstream failed"])
        return {"status": None if style == "tag" else status,
                "error": None if style == "status" else message}

    @staticmethod
    def tags(path, outcome):
        tags = {"http.method": "GET", "http.path": path}
        if outcome["status"] is not None:
            tags["http.status_code"] = str(outcome["status"])
        if outcome["error"] is not None:
            tags["error"] = outcome["error"]
        return tags

    def service_truth(self, service):
        return self.truth["services"].setdefault(
            service, {"requests": 0, "errors": 0, "durations_us": [], "self_us": []})

    def edge_truth(self, caller, callee):
        return self.truth["edges"].setdefault(caller, {}).setdefault(
            callee, {"calls": 0, "errors": 0, "durations_us": [], "server_durations_us": []})

    def serve(self, trace_id, service, start, span_id, parent_id, shared, caller_addr):
        """One request served by `service` starting at `start`; appends its spans (children
        first, as reporters send them) and returns (duration_us, failed, outcome)."""
        svc = self.topology[service]
        rng = self.rng
        own = _latency_us(rng, svc.get("latency_ms", 1))
        calls = svc.get("calls", [])
        pieces = _split(rng, own, len(calls) + 1)
        failed_by_itself = rng.random() < svc.get("error_rate", 0.0)
        failed_downstream = False
        t = start + pieces[0]
        for i, callee in enumerate(calls):
            call_duration, call_failed = self.call(trace_id, service, span_id, callee, t, i)
            failed_downstream |= call_failed
            t += call_duration + pieces[i + 1]
        duration = t - start
        outcome = self.outcome(service, failed_by_itself,
                               failed_downstream and self.propagate_errors)
        span = {"traceId": trace_id, "id": span_id, "name": "get /", "timestamp": start,
                "duration": duration, "localEndpoint": self.endpoint(service, 8080),
                "tags": self.tags("/", outcome)}
        if parent_id is None:
            if self.root_kind is not None:
                span["kind"] = self.root_kind
        else:
            span["kind"] = "SERVER"
            span["parentId"] = parent_id
            span["remoteEndpoint"] = {"ipv4": caller_addr, "port": rng.randint(32768, 60999)}
        if shared:
            span["shared"] = True
        self.spans.append(span)
        failed = outcome["error"] is not None or (outcome["status"] or 0) >= 500
        truth = self.service_truth(service)
        truth["requests"] += 1
        truth["errors"] += int(failed)
        truth["durations_us"].append(duration)
        truth["self_us"].append(own)
        return duration, failed, outcome

    def call(self, trace_id, caller, caller_span_id, callee, start, index):
        """One call from caller to callee starting at `start`; appends its spans and returns
        (client span duration, failed)."""
        rng = self.rng
        client_id = self.new_id()
        out_delay = rng.randint(*self.network_us)
        back_delay = rng.randint(*self.network_us)
        path = "/%s/%d" % (callee.rsplit("/", 1)[-1], index)
        edge = self.edge_truth(caller, callee)
        callee_svc = self.topology[callee]
        if callee_svc.get("instrumented", True):
            mode = self.b3 if self.b3 != "mixed" else rng.choice(["child", "shared"])
            if mode == "shared":
                server_id, server_parent = client_id, caller_span_id
            else:
                server_id, server_parent = self.new_id(), client_id
            server_duration, failed, outcome = self.serve(
                trace_id, callee, start + out_delay, server_id, server_parent,
                mode in ("shared", "py_zipkin"), self.addr[caller])
            edge["server_durations_us"].append(server_duration)
        else:
            server_duration = _latency_us(rng, callee_svc.get("latency_ms", 1))
            failed = rng.random() < callee_svc.get("error_rate", 0.0)
            outcome = self.outcome(callee, failed, False)
            failed = outcome["error"] is not None or (outcome["status"] or 0) >= 500
        duration = out_delay + server_duration + back_delay
        remote = {"ipv4": self.addr[callee], "port": 8080}
        if not callee_svc.get("instrumented", True) or rng.random() < 0.5:
            # instrumentation names the remote service only when it knows it; a leaf must be named
            remote["serviceName"] = callee
        self.spans.append({
            "traceId": trace_id, "parentId": caller_span_id, "id": client_id, "kind": "CLIENT",
            "name": "get " + path, "timestamp": start, "duration": duration,
            "localEndpoint": self.endpoint(caller),
            "remoteEndpoint": remote, "tags": self.tags(path, outcome)})
        edge["calls"] += 1
        edge["errors"] += int(failed)
        edge["durations_us"].append(duration)
        return duration, failed

    def trace(self, root, start):
        bits = self.trace_id_bits if self.trace_id_bits != "mixed" else self.rng.choice([64, 128])
        self.used_ids.clear()
        trace_id = self.new_id(bits)
        self.spans = []
        self.serve(trace_id, root, start, self.new_id(), None, False, None)
        self.truth["traces"] += 1
        self.truth["spans"] += len(self.spans)
        return self.spans


def iter_traces(topology, truth, root=None, traces=100, seed=1, start_us=None, interval_us=1000,
                b3="child", root_kind="SERVER", propagate_errors=True, status_4xx_rate=0.0,
                network_us=(50, 300), trace_id_bits=128):
    """Yields the span list of each trace, one after the other, adding to `truth` (pass {}) as it
    goes: for streams too large to hold (a benchmark's million spans). Same arguments as
    generate(); generate(...) is this, kept in a list."""
    if start_us is None:
        start_us = now_us()
    if root is None:
        root = next(iter(topology))
    builder = _Builder(topology, random.Random(seed), b3, root_kind, propagate_errors,
                       status_4xx_rate, network_us, trace_id_bits)
    truth.clear()
    truth.update(builder.truth)
    builder.truth = truth
    for i in range(traces):
        yield builder.trace(root, start_us + i * interval_us)


def generate(topology, root=None, traces=100, seed=1, start_us=None, interval_us=1000, b3="child",
             root_kind="SERVER", propagate_errors=True, status_4xx_rate=0.0,
             network_us=(50, 300), trace_id_bits=128):
    """Generates `traces` traces entering at `root` (default: the first service of the topology),
    the i-th starting at start_us + i * interval_us. Everything but start_us follows from seed;
    start_us defaults to now (EMP drops spans older than its lateness bound, so a test wants recent
    timestamps). root_kind None leaves the root span without kind; status_4xx_rate answers that
    fraction of successful requests 404 (not an error); network_us is the range of one-way network
    delays; trace_id_bits 128, 64 or "mixed". Returns a Generated."""
    truth = {}
    out = list(iter_traces(topology, truth, root, traces, seed, start_us, interval_us, b3,
                           root_kind, propagate_errors, status_4xx_rate, network_us,
                           trace_id_bits))
    return Generated(out, truth)


def read_messages(text, per_message=None):
    """Messages (lists of spans) from text holding JSON lines, one list of spans per line (what
    main() prints and `kcat -C` reads back), or one JSON document: a list of spans (one message)
    or a list of such lists. With per_message, longer lists are cut into lists of that many."""
    text = text.strip()
    if not text:
        return []
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = []
    for doc in docs:
        if isinstance(doc, list) and doc and all(isinstance(m, list) for m in doc):
            messages.extend(doc)
        elif isinstance(doc, list):
            messages.append(doc)
        else:
            raise ValueError("expected a JSON list of spans, or a list of such lists")
    if per_message:
        messages = [m[i:i + per_message] for m in messages for i in range(0, len(m), per_message)]
    return messages


def _service(span):
    return (span.get("localEndpoint") or {}).get("serviceName")


def _union_us(intervals):
    total, end = 0, None
    for lo, hi in sorted(intervals):
        if end is None or lo > end:
            total += hi - lo
            end = hi
        elif hi > end:
            total += hi - end
            end = hi
    return total


def analyze(span_list):
    """The ground truth of any list of v2 spans (possibly of many traces, in any order), the way
    Zipkin's dependency linker reads them: a CLIENT span is linked to the SERVER span that shares
    its id or has it as parentId; a CLIENT span with no such server span but a
    remoteEndpoint.serviceName is an edge to an uninstrumented service; a SERVER span whose parent
    is a span of another service, with no client span in between, is an edge from that service.
    Same format as generate()'s truth."""
    truth = {"traces": 0, "spans": len(span_list), "services": {}, "edges": {}}
    by_trace = {}
    for s in span_list:
        by_trace.setdefault(s["traceId"], []).append(s)
    truth["traces"] = len(by_trace)

    def edge(caller, callee):
        return truth["edges"].setdefault(caller, {}).setdefault(
            callee, {"calls": 0, "errors": 0, "durations_us": [], "server_durations_us": []})

    for trace in by_trace.values():
        servers = [s for s in trace if s.get("kind") == "SERVER" or
                   (s.get("kind") is None and "parentId" not in s)]
        clients = [s for s in trace if s.get("kind") == "CLIENT"]
        by_id = {}
        for s in trace:
            by_id.setdefault(s["id"], []).append(s)
        # the server side of each client span
        server_of = {}
        matched = set()
        for c in clients:
            cands = [s for s in servers if s["id"] == c["id"] and s is not c] or \
                    [s for s in servers if s.get("parentId") == c["id"]]
            if cands:
                server_of[id(c)] = cands[0]
                matched.add(id(cands[0]))
        for c in clients:
            s = server_of.get(id(c))
            if s is not None:
                e = edge(_service(c), _service(s))
                e["server_durations_us"].append(s.get("duration", 0))
                failed = is_error(c) or is_error(s)
            else:
                remote = (c.get("remoteEndpoint") or {}).get("serviceName")
                if not remote:
                    continue
                e = edge(_service(c), remote)
                failed = is_error(c)
            e["calls"] += 1
            e["errors"] += int(failed)
            e["durations_us"].append(c.get("duration", 0))
        # server spans called without a recorded client span (B3 headers only)
        for s in servers:
            if id(s) in matched or "parentId" not in s:
                continue
            parents = [p for p in by_id.get(s["parentId"], []) if _service(p) != _service(s)]
            if parents:
                e = edge(_service(parents[0]), _service(s))
                e["calls"] += 1
                e["errors"] += int(is_error(s))
                e["durations_us"].append(s.get("duration", 0))
                e["server_durations_us"].append(s.get("duration", 0))
        # per service: requests, errors, durations, self time
        for s in servers:
            svc = truth["services"].setdefault(
                _service(s), {"requests": 0, "errors": 0, "durations_us": [], "self_us": []})
            svc["requests"] += 1
            svc["errors"] += int(is_error(s))
            svc["durations_us"].append(s.get("duration", 0))
            waits = []
            for c in clients:
                if c.get("parentId") == s["id"] and _service(c) == _service(s) and c is not s:
                    waits.append((c["timestamp"], c["timestamp"] + c.get("duration", 0)))
            for o in servers:
                if (o.get("parentId") == s["id"] and _service(o) != _service(s) and
                        id(o) not in matched):
                    waits.append((o["timestamp"], o["timestamp"] + o.get("duration", 0)))
            svc["self_us"].append(s.get("duration", 0) - _union_us(waits))
    return truth


def _parse_chain(text):
    """"alice/a:2,alice/b:40-60:0.1,alice/c:5" -> chain(...) arguments."""
    names, lat, err = [], [], []
    for part in text.split(","):
        fields = part.split(":")
        names.append(fields[0])
        ms = fields[1] if len(fields) > 1 else "1"
        lat.append(tuple(float(x) for x in ms.split("-")) if "-" in ms else float(ms))
        err.append(float(fields[2]) if len(fields) > 2 else 0.0)
    return chain(names, lat, err)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Prints generated Zipkin v2 spans, one JSON list (one message) per line, "
                    "ready for `kcat -P` or send_kafka.py/send_http.py.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--chain", help="SERVICE:MS[:ERROR_RATE],... each calling the next; MS may be "
                                   "LOW-HIGH, e.g. alice/a:2,alice/b:40-60:0.1,alice/c:5")
    g.add_argument("--topology", help="a JSON file with a topology (see spans.py)")
    p.add_argument("--root", help="the entry service (default: the first)")
    p.add_argument("--traces", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start-us", type=int, help="first trace's timestamp (default: now)")
    p.add_argument("--interval-us", type=int, default=1000)
    p.add_argument("--b3", default="child", choices=["child", "shared", "mixed", "py_zipkin"])
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument("--shuffle-seed", type=int, help="shuffle spans across messages")
    p.add_argument("--truth", help="also write the ground truth (JSON) to this file")
    args = p.parse_args(argv)
    if args.chain:
        topo = _parse_chain(args.chain)
    else:
        with open(args.topology) as f:
            topo = json.load(f)
    truth = {}
    stream = iter_traces(topo, truth, root=args.root, traces=args.traces, seed=args.seed,
                         start_us=args.start_us, interval_us=args.interval_us, b3=args.b3)
    if args.shuffle_seed is not None:
        messages = Generated(list(stream), truth).messages(args.per_message, args.shuffle_seed)
    else:
        messages = _batches(stream, args.per_message)
    for msg in messages:
        sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
    if args.truth:
        with open(args.truth, "w") as f:
            json.dump(truth, f, separators=(",", ":"))
    return 0


def _batches(trace_stream, per_message):
    batch = []
    for trace in trace_stream:
        for span in trace:
            batch.append(span)
            if len(batch) == per_message:
                yield batch
                batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    sys.exit(main())
