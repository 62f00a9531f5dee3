#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Span messages for bench/tracing.sh: Zipkin v2 spans of many services at once, made by the
tracing tests' generator (tests/tracing/spans.py), one JSON list (one Kafka message, one POST
body) per line on stdout, and {"messages":N,"spans":N} on stderr. Not a test tool: it keeps no
ground truth.

    tracing_spans.py --users 100 --apps-per-user 10 --spans 1000000 \
        --start-us US --span-us 3600000000 [--per-message 100] [--seed 1]

The services are PREFIX-U/app-A (the users and apps that emp-bench-populate makes), taken in
pairs: in each pair the first calls the second (a SERVER span, a CLIENT span and the callee's
SERVER span per trace). The traces of all pairs take turns, so each message holds spans of many
services, and their timestamps rise evenly from start_us over span_us.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "tracing"))

import spans  # noqa: E402

SPANS_PER_TRACE = 3  # caller's server span, its client span, callee's server span


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--apps-per-user", type=int, required=True)
    p.add_argument("--user-prefix", default="bench")
    p.add_argument("--spans", type=int, required=True, help="at least this many spans")
    p.add_argument("--start-us", type=int, required=True, help="the first trace's timestamp")
    p.add_argument("--span-us", type=int, required=True, help="the time the traces spread over")
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    services = ["%s-%d/app-%d" % (args.user_prefix, u, a)
                for u in range(args.users) for a in range(args.apps_per_user)]
    pairs = [services[i:i + 2] for i in range(0, len(services) - 1, 2)]
    traces = -(-args.spans // SPANS_PER_TRACE)
    per_pair = -(-traces // len(pairs))
    step_us = max(1, args.span_us // (per_pair * len(pairs)))
    streams = []
    for n, (caller, callee) in enumerate(pairs):
        topo = spans.chain([caller, callee], latency_ms=[2, (5, 15)], error_rate=[0.0, 0.01])
        streams.append(spans.iter_traces(topo, {}, traces=per_pair, seed=args.seed + n,
                                         start_us=args.start_us + n * step_us,
                                         interval_us=step_us * len(pairs)))
    batch = []
    messages = count = 0
    out = sys.stdout
    for _ in range(per_pair):
        for stream in streams:
            batch.extend(next(stream))
            while len(batch) >= args.per_message:
                out.write(json.dumps(batch[:args.per_message], separators=(",", ":")) + "\n")
                del batch[:args.per_message]
                messages += 1
                count += args.per_message
    if batch:
        out.write(json.dumps(batch, separators=(",", ":")) + "\n")
        messages += 1
        count += len(batch)
    sys.stderr.write('{"messages":%d,"spans":%d}\n' % (messages, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
