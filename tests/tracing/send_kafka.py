#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Sends Zipkin v2 span lists to a Kafka topic the way Zipkin's Kafka reporters do: one message =
one JSON list of spans, no key (unless asked), with confluent-kafka (Debian's
python3-confluent-kafka, on the system librdkafka). For tests; waits until every message is
acknowledged and fails if one is not.

    send_kafka.py --bootstrap HOST:PORT [--topic zipkin] [FILE ...]     (default: stdin)
        [--per-message N] [--key none|trace] [--compression none|gzip|snappy|lz4|zstd]
        [--raw] [-X librdkafka.property=value ...]

Input: JSON lines (one list of spans per line, as spans.py prints) or one JSON list; --raw sends
each input line as it is, unparsed (for malformed-input tests). Prints the number of messages sent.

    from send_kafka import send
    send("127.0.0.1:9092", gen.messages(50))            # lists are JSON-encoded, bytes sent as is
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import spans  # noqa: E402


def _encode(message):
    if isinstance(message, (bytes, bytearray)):
        return bytes(message)
    if isinstance(message, str):
        return message.encode()
    return json.dumps(message, separators=(",", ":")).encode()


def _key(message, key):
    if key != "trace" or not isinstance(message, list) or not message:
        return None
    trace_id = message[0].get("traceId") if isinstance(message[0], dict) else None
    return trace_id.encode() if isinstance(trace_id, str) else None


def send(bootstrap, messages, topic="zipkin", key="none", compression="none", config=None,
         timeout_s=30):
    """Produces each message (a list of spans, JSON-encoded here, or bytes sent as they are) to
    topic and waits for the broker to acknowledge all of them. key "trace" keys each message by the
    traceId of its first span (so a trace's messages share a partition); "none" leaves the key
    empty like Zipkin's reporters. Returns the number of messages sent; raises RuntimeError when
    one fails or the timeout passes."""
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": bootstrap, "compression.type": compression,
            "linger.ms": 5, "message.max.bytes": 16 * 1024 * 1024}
    conf.update(config or {})
    producer = Producer(conf)
    failures = []
    delivered = [0]

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))
        else:
            delivered[0] += 1

    count = 0
    for message in messages:
        payload = _encode(message)
        while True:
            try:
                producer.produce(topic, payload, key=_key(message, key), on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let some deliveries finish
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout_s)
    if remaining:
        raise RuntimeError("send_kafka: %d of %d messages not delivered after %ds"
                           % (remaining, count, timeout_s))
    if failures:
        raise RuntimeError("send_kafka: %d of %d messages failed, first: %s"
                           % (len(failures), count, failures[0]))
    return delivered[0]


def _read_inputs(paths):
    for path in paths or ["-"]:
        if path == "-":
            yield sys.stdin.read()
        else:
            with open(path) as f:
                yield f.read()


def main(argv=None):
    p = argparse.ArgumentParser(description="Sends Zipkin v2 span lists to Kafka, one JSON list "
                                            "per message.")
    p.add_argument("files", nargs="*", help="input files (default: stdin)")
    p.add_argument("--bootstrap", "-b", required=True, help="bootstrap servers, HOST:PORT,...")
    p.add_argument("--topic", "-t", default="zipkin")
    p.add_argument("--per-message", type=int, help="cut longer lists into lists of N spans")
    p.add_argument("--key", choices=["none", "trace"], default="none")
    p.add_argument("--compression", choices=["none", "gzip", "snappy", "lz4", "zstd"],
                   default="none")
    p.add_argument("--raw", action="store_true", help="send each input line unparsed")
    p.add_argument("-X", dest="props", action="append", default=[], metavar="PROP=VALUE",
                   help="a librdkafka producer property")
    args = p.parse_args(argv)
    config = {}
    for prop in args.props:
        name, sep, value = prop.partition("=")
        if not sep:
            p.error("-X %s: expected PROP=VALUE" % prop)
        config[name] = value
    messages = []
    for text in _read_inputs(args.files):
        if args.raw:
            messages.extend(line.encode() for line in text.splitlines() if line)
        else:
            messages.extend(spans.read_messages(text, args.per_message))
    try:
        sent = send(args.bootstrap, messages, args.topic, args.key, args.compression, config)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
