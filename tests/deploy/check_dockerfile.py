# SPDX-License-Identifier: Apache-2.0
"""The top-level Dockerfile, which cannot be built here (no container engine): dockerfilelint
finds nothing, a Dockerfile with known mistakes makes it complain (so the linter really runs), and
every shared library that `ldd` shows for the built emp-server and emp comes from a Debian package
the runtime stage installs, or one those depend on, or one of Debian's required packages (the
base image's). Usage: check_dockerfile.py DOCKERFILE LINTER BINARY..."""

import re
import subprocess
import sys
import tempfile


def run(*args):
    return subprocess.run(args, capture_output=True, text=True)


def runtime_packages(text):
    stages = re.split(r"(?m)^FROM ", text)
    last = stages[-1]
    if "AS runtime" not in last.splitlines()[0]:
        sys.exit("the last stage of the Dockerfile must be the runtime stage (FROM ... AS runtime)")
    joined = last.replace("\\\n", " ")
    m = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", joined)
    if not m:
        sys.exit("the runtime stage installs no packages with apt-get install -y --no-install-recommends")
    return m.group(1).split()


def main():
    dockerfile, linter, binaries = sys.argv[1], sys.argv[2], sys.argv[3:]
    failures = []
    lint = run(linter, dockerfile)
    print(lint.stdout.strip())
    if lint.returncode != 0:
        failures.append(f"dockerfilelint found problems in {dockerfile}")
    with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile") as bad:
        bad.write("FROM debian:latest\nRUN apt-get install curl\nADD . /src\n")
        bad.flush()
        if run(linter, bad.name).returncode == 0:
            failures.append("dockerfilelint accepted a Dockerfile with known mistakes: is it running?")

    with open(dockerfile) as f:
        listed = runtime_packages(f.read())
    print("runtime stage installs:", " ".join(listed))
    deps = run("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
               "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--installed", *listed)
    reachable = set(listed)
    for line in deps.stdout.splitlines():
        name = line.strip().split(":", 1)[-1].strip() if ":" in line else line.strip()
        name = name.strip("<>").split(":")[0]
        if name:
            reachable.add(name)
    required = set(run("dpkg-query", "-W", "-f", "${Package} ${Priority} ${Essential}\n").stdout.split("\n"))
    base = {line.split()[0] for line in required if line.endswith(" yes") or " required " in line + " "}

    for binary in binaries:
        ldd = run("ldd", binary)
        if ldd.returncode != 0:
            failures.append(f"ldd {binary} failed: {ldd.stderr.strip()}")
            continue
        for line in ldd.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
            if not m:
                continue
            path = m.group(m.lastindex)
            owner = run("dpkg", "-S", path)
            if owner.returncode != 0:
                # merged /usr: /lib/x86_64-linux-gnu is /usr/lib/x86_64-linux-gnu
                alt = path.replace("/lib/", "/usr/lib/", 1) if path.startswith("/lib") else path.replace("/usr/lib/", "/lib/", 1)
                owner = run("dpkg", "-S", alt)
            if owner.returncode != 0:
                failures.append(f"{binary}: {path} belongs to no Debian package")
                continue
            pkg = owner.stdout.split(":")[0].strip()
            if pkg not in reachable and pkg not in base:
                failures.append(f"{binary} links {path} from {pkg}, which the runtime stage does not "
                                f"install: add {pkg} to its apt-get install")
    for f in failures:
        print(f)
    print("runtime libraries:", "missing" if failures else "all installed by the runtime stage")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
