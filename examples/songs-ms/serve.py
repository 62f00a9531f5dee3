#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Runs one songs-ms service: serve.py users|auth|songs|playlists|aggregator|gateway. Settings
come from the environment EMP gives a replica (PORT, EMP_SERVICE_NAME, EMP_DATA_DIR,
KAFKAADDRESS, EMP_ZIPKIN_URL) and the app's envs (JWT_SECRET, USERS_URL ...); see README.md."""

import importlib
import os
import sys

from common import service, tracing

SERVICES = ("users", "auth", "songs", "playlists", "aggregator", "gateway")


def main(argv):
    if len(argv) != 2 or argv[1] not in SERVICES:
        print("usage: serve.py %s" % "|".join(SERVICES), file=sys.stderr)
        return 2
    module = importlib.import_module(argv[1] + ".app")
    try:
        config = module.load_config(os.environ)
    except service.ConfigError as e:
        tracing.log("%s cannot start: %s" % (argv[1], e))
        return 2
    tracer = service.make_tracer(config, tracing.transport_from_env(os.environ))
    return service.serve(module.create_app(config, tracer))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
