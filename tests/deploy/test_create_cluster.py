# SPDX-License-Identifier: Apache-2.0
"""deploy/gke/create-cluster.sh under stub gcloud and kubectl (tests/deploy/stubs/), which record
every command: a fresh run gives the whole sequence, a second run changes nothing (only reads),
--delete removes what it made, --dry-run runs nothing, and each missing prerequisite stops it
before any change with a message that names the problem and its fix.
Usage: test_create_cluster.py [-v]"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(ROOT, "deploy", "gke", "create-cluster.sh")
STUBS = ("gcloud", "kubectl", "gke-gcloud-auth-plugin")
# what the script and the stubs run besides gcloud and kubectl: no /usr/bin on PATH, so that the
# real gcloud and kubectl of this machine cannot be reached
TOOLS = ("bash", "env", "cat", "mktemp", "rm", "head", "base64", "tr", "dirname", "basename",
         "grep", "sed", "cmp", "cp", "touch", "mkdir")
ARGS = ["--project", "p1", "--zone", "europe-west1-b", "--name", "emp-test", "--timeout", "30"]
CTX = "kubectl --context gke_p1_europe-west1-b_emp-test"
LOC = "--project p1 --zone europe-west1-b"
READS = re.compile(r"^(gcloud (auth list|config get-value|services list|container clusters describe|"
                   r"container clusters get-credentials)|kubectl .*(diff|get|rollout status) )")


def k8s(name):
    return f"ROOT/deploy/k8s/{name}"


FRESH = [
    "gcloud auth list --filter=status:ACTIVE --format=value\\(account\\)",
    "gcloud services list --enabled --project p1 --filter=config.name=container.googleapis.com "
    "--format=value\\(config.name\\)",
    f"gcloud container clusters describe emp-test {LOC} --format=value\\(status\\)",
    f"gcloud container clusters create emp-test {LOC} --machine-type e2-standard-4 --num-nodes 1 "
    "--enable-autoscaling --min-nodes 1 --max-nodes 5 --addons GcePersistentDiskCsiDriver "
    "--release-channel regular --labels emp-created-by=create-cluster --quiet",
    f"gcloud container clusters get-credentials emp-test {LOC}",
    f"{CTX} get storageclass -o JSONPATH",
] + [line for f in ("00-namespace.yaml", "10-kafka.yaml", "20-elasticsearch.yaml", "30-zipkin.yaml",
                    "40-emp-rbac.yaml")
     for line in (f"{CTX} diff -f {k8s(f)}", f"{CTX} apply -f {k8s(f)}")] + [
    f"{CTX} -n emp-system get secret emp-scheduler-token -o name",
    f"{CTX} -n emp-system create secret generic emp-scheduler-token --from-file=token=TOKEN",
    f"{CTX} diff -f {k8s('50-emp-redis.yaml')}",
    f"{CTX} apply -f {k8s('50-emp-redis.yaml')}",
    f"{CTX} diff -f {k8s('60-emp-server.yaml')}",
    f"{CTX} apply -f {k8s('60-emp-server.yaml')}",
    f"{CTX} -n emp-system rollout status statefulset/kafka --timeout=30s",
    f"{CTX} -n emp-system exec kafka-0 -c kafka -- /opt/kafka/bin/kafka-topics.sh --bootstrap-server "
    "localhost:9092 --create --if-not-exists --topic zipkin --partitions 3 --replication-factor 1",
    f"{CTX} -n emp-system rollout status statefulset/elasticsearch --timeout=30s",
    f"{CTX} -n emp-system rollout status deployment/zipkin --timeout=30s",
]


class CreateCluster(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="emp-create-cluster-")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.bin = os.path.join(self.tmp, "bin")
        self.state = os.path.join(self.tmp, "state")
        self.log = os.path.join(self.tmp, "log")
        os.makedirs(self.bin)
        os.makedirs(self.state)
        for tool in TOOLS:
            os.symlink(shutil.which(tool, path="/usr/bin:/bin"), os.path.join(self.bin, tool))
        for stub in STUBS:
            os.symlink(os.path.join(HERE, "stubs", stub), os.path.join(self.bin, stub))

    def run_script(self, *args, code=0):
        open(self.log, "w").close()
        env = {"PATH": self.bin, "STUB_LOG": self.log, "STUB_STATE": self.state, "HOME": self.tmp,
               "TMPDIR": self.tmp, "LC_ALL": "C"}
        proc = subprocess.run([os.path.join(self.bin, "bash"), SCRIPT, *args], env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, code, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        with open(self.log) as f:
            calls = [self.normalise(line.rstrip("\n")) for line in f]
        return proc, calls

    @staticmethod
    def normalise(line):
        line = line.replace(ROOT, "ROOT")
        line = re.sub(r"--from-file=token=\S+", "--from-file=token=TOKEN", line)
        return re.sub(r"-o jsonpath=.*$", "-o JSONPATH", line)

    def test_fresh_run_then_nothing_changes(self):
        proc, calls = self.run_script(*ARGS)
        self.assertEqual(calls, FRESH)
        self.assertIn("port-forward svc/zipkin 9411", proc.stdout)
        self.assertIn("http://127.0.0.1:9411", proc.stdout)
        self.assertIn("port-forward svc/emp-server 7420", proc.stdout)
        self.assertIn("--kube-context gke_p1_europe-west1-b_emp-test", proc.stdout)

        proc, calls = self.run_script(*ARGS)
        changes = [c for c in calls if not READS.match(c) and " exec kafka-0 " not in c]
        self.assertEqual(changes, [], "a second run must only read (and re-ensure the topic with "
                                      "--if-not-exists)")
        self.assertIn("exists (RUNNING): not creating it", proc.stdout)
        self.assertIn("keeping its token", proc.stdout)
        for f in ("00-namespace.yaml", "60-emp-server.yaml"):
            self.assertIn(f"{f}: unchanged", proc.stdout)

    def test_image_is_applied_in_the_manifest_and_waited_for(self):
        _, calls = self.run_script(*ARGS, "--image", "reg.example/emp/emp-server:1.0")
        self.assertIn(f"{CTX} -n emp-system rollout status deployment/emp-server --timeout=30s", calls)
        with open(os.path.join(self.state, "applied", "60-emp-server.yaml")) as f:
            self.assertIn("image: reg.example/emp/emp-server:1.0", f.read())
        _, calls = self.run_script(*ARGS, "--image", "reg.example/emp/emp-server:1.0")
        self.assertFalse([c for c in calls if " apply " in c], calls)

    def test_delete_removes_what_it_made(self):
        self.run_script(*ARGS)
        proc, calls = self.run_script(*ARGS, "--delete")
        files = ["60-emp-server.yaml", "50-emp-redis.yaml", "40-emp-rbac.yaml", "30-zipkin.yaml",
                 "20-elasticsearch.yaml", "10-kafka.yaml", "00-namespace.yaml"]
        self.assertEqual(calls, FRESH[:2] + [
            FRESH[2],
            f"gcloud container clusters get-credentials emp-test {LOC}",
        ] + [f"{CTX} delete -f {k8s(f)} --ignore-not-found --wait=true" for f in files] + [
            f"gcloud container clusters describe emp-test {LOC} "
            "--format=value\\(resourceLabels.emp-created-by\\)",
            f"gcloud container clusters delete emp-test {LOC} --quiet",
            "kubectl config delete-context gke_p1_europe-west1-b_emp-test",
        ])
        self.assertEqual(os.listdir(os.path.join(self.state, "applied")), [])
        # and again: nothing left to delete
        proc, calls = self.run_script(*ARGS, "--delete")
        self.assertIn("does not exist: nothing to delete", proc.stdout)
        self.assertEqual(calls, FRESH[:3])

    def test_delete_keeps_a_cluster_it_did_not_make(self):
        with open(os.path.join(self.state, "cluster"), "w") as f:
            f.write("\n")  # exists, without the script's label
        proc, calls = self.run_script(*ARGS, "--delete")
        self.assertFalse([c for c in calls if "clusters delete" in c], calls)
        self.assertIn("was not created by this script: keeping it", proc.stdout)

    def test_dry_run_runs_nothing_and_prints_every_command(self):
        proc, calls = self.run_script(*ARGS, "--dry-run")
        self.assertEqual(calls, [])
        printed = [self.normalise(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
        # queries answer "not there" in a dry run: no default StorageClass either
        expected = list(FRESH[2:])
        expected.insert(expected.index(f"{CTX} get storageclass -o JSONPATH") + 1,
                        f"{CTX} annotate storageclass standard-rwo "
                        "storageclass.kubernetes.io/is-default-class=true --overwrite")
        self.assertEqual(printed, expected)
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith("tmp.")], [],
                         "a dry run writes no token file")

    def test_project_from_gcloud_config(self):
        args = [a for a in ARGS if a not in ("--project", "p1")]
        _, calls = self.run_script(*args)
        self.assertEqual(calls[1], "gcloud config get-value project")
        self.assertIn("--project stub-project", calls[-1] if "describe" in calls[-1] else calls[3])

    def test_kafka_timeout_is_reported(self):
        open(os.path.join(self.state, "kafka-never-ready"), "w").close()
        proc, _ = self.run_script(*ARGS, code=1)
        self.assertIn("Kafka is not ready after 30s", proc.stderr)
        self.assertIn("describe statefulset/kafka", proc.stderr)

    def test_bad_usage(self):
        proc, calls = self.run_script("--nodes", "zero", code=2)
        self.assertIn("--nodes must be a positive whole number", proc.stderr)
        proc, calls = self.run_script("--frobnicate", code=2)
        self.assertIn("unknown option '--frobnicate'", proc.stderr)
        self.assertEqual(calls, [])
        proc, _ = self.run_script("--help")
        self.assertIn("--machine-type T", proc.stdout)
        self.assertIn("(default: e2-standard-4)", proc.stdout)

    def check_missing(self, setup, message, fix):
        setup()
        proc, calls = self.run_script(*ARGS, code=1)
        self.assertIn(message, proc.stderr)
        self.assertIn(fix, proc.stderr)
        self.assertFalse([c for c in calls if not READS.match(c)], "nothing may change")
        self.assertFalse(os.path.exists(os.path.join(self.state, "cluster")))

    def test_missing_prerequisites(self):
        cases = [
            ("gcloud", "gcloud is not installed", "install the Google Cloud CLI"),
            ("kubectl", "kubectl is not installed", "gcloud components install kubectl"),
            ("gke-gcloud-auth-plugin", "gke-gcloud-auth-plugin is not installed",
             "gcloud components install gke-gcloud-auth-plugin"),
        ]
        for tool, message, fix in cases:
            with self.subTest(missing=tool):
                path = os.path.join(self.bin, tool)
                self.check_missing(lambda: os.remove(path), message, fix)
                os.symlink(os.path.join(HERE, "stubs", tool), path)
        cases = [
            ("no-login", "gcloud is not logged in", "run 'gcloud auth login'"),
            ("no-gke-api", "the GKE API is not enabled in project p1",
             "gcloud services enable container.googleapis.com --project p1"),
        ]
        for flag, message, fix in cases:
            with self.subTest(missing=flag):
                path = os.path.join(self.state, flag)
                self.check_missing(lambda: open(path, "w").close(), message, fix)
                os.remove(path)
        with self.subTest(missing="project"):
            open(os.path.join(self.state, "no-project"), "w").close()
            args = [a for a in ARGS if a not in ("--project", "p1")]
            proc, calls = self.run_script(*args, code=1)
            self.assertIn("no Google Cloud project: pass --project P, or run 'gcloud config set "
                          "project P'", proc.stderr)
            self.assertEqual(len(calls), 2, calls)


if __name__ == "__main__":
    unittest.main()
