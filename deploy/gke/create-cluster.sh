#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Stands up EMP's cluster on GKE with one command: the cluster (node autoscaling, persistent disks
# by default), Kafka, Zipkin with Elasticsearch, and emp-server with its Redis and RBAC
# (deploy/k8s/). Idempotent: a second run changes nothing. --delete removes what it made.
# It does not build or push emp-server's image (see the top-level Dockerfile and --image).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifests=$(cd "$here/../k8s" && pwd)
namespace=emp-system
label_key=emp-created-by
label_value=create-cluster

project=""
region="us-central1"
zone=""
name="emp"
nodes=1
max_nodes=5
machine_type="e2-standard-4"
image=""
timeout=600
dry_run=false
delete=false

usage() {
  cat <<EOF
Usage: create-cluster.sh [OPTION]...
Creates a GKE cluster for EMP (or reuses it), applies deploy/k8s/ to it, waits until Kafka and
Zipkin are ready, and prints how to reach emp-server and Zipkin's UI. Running it again changes
nothing; --delete removes what it made.

  --project P        Google Cloud project (default: gcloud config get-value project)
  --region R         regional cluster in R (default: $region)
  --zone Z           zonal cluster in Z instead of a regional one
  --name N           cluster name (default: $name)
  --nodes N          nodes per zone at creation, also the autoscaler's minimum (default: $nodes)
  --max-nodes N      the autoscaler's maximum nodes per zone (default: $max_nodes)
  --machine-type T   node machine type (default: $machine_type)
  --image IMAGE      emp-server's image, as pushed from the top-level Dockerfile (default: the
                     manifest's emp-server:latest, which a cluster cannot pull until you set one)
  --timeout SECONDS  how long to wait for each of Kafka, Elasticsearch and Zipkin (default: $timeout)
  --dry-run          print every gcloud and kubectl command of a fresh run instead of running any
  --delete           delete the manifests' objects, then the cluster if this script created it
  --help             show this help and exit
EOF
}

die() {
  echo "create-cluster.sh: $*" >&2
  exit 1
}

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then
    echo "create-cluster.sh: $1 needs a value (see --help)" >&2
    exit 2
  fi
}

need_count() {
  case "$2" in
    '' | *[!0-9]* | 0*) echo "create-cluster.sh: $1 must be a positive whole number, not '$2'" >&2; exit 2 ;;
  esac
}

while [ $# -gt 0 ]; do
  case "$1" in
    --project) need_value "$@"; project=$2; shift 2 ;;
    --region) need_value "$@"; region=$2; zone=""; shift 2 ;;
    --zone) need_value "$@"; zone=$2; shift 2 ;;
    --name) need_value "$@"; name=$2; shift 2 ;;
    --nodes) need_value "$@"; need_count "$1" "$2"; nodes=$2; shift 2 ;;
    --max-nodes) need_value "$@"; need_count "$1" "$2"; max_nodes=$2; shift 2 ;;
    --machine-type) need_value "$@"; machine_type=$2; shift 2 ;;
    --image) need_value "$@"; image=$2; shift 2 ;;
    --timeout) need_value "$@"; need_count "$1" "$2"; timeout=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --delete) delete=true; shift ;;
    --help | -h) usage; exit 0 ;;
    *) echo "create-cluster.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$nodes" -gt "$max_nodes" ]; then
  echo "create-cluster.sh: --nodes $nodes is more than --max-nodes $max_nodes" >&2
  exit 2
fi

if [ -n "$zone" ]; then
  location_flag=(--zone "$zone")
  location=$zone
else
  location_flag=(--region "$region")
  location=$region
fi

# fd 3: the real stdout, for what --dry-run prints from inside command substitutions
exec 3>&1

# Every gcloud and kubectl command goes through run (it changes something) or query (it only
# reads). Under --dry-run both print the command and run nothing: queries then answer "not there",
# so what is printed is the sequence of a fresh run.
print_cmd() {
  local out="+"
  local arg
  for arg in "$@"; do
    out+=" $(printf '%q' "$arg")"
  done
  echo "$out" >&3
}

run() {
  if "$dry_run"; then
    print_cmd "$@"
    return 0
  fi
  "$@"
}

query() {
  if "$dry_run"; then
    print_cmd "$@"
    return 1
  fi
  "$@"
}

# ---- prerequisites ----

check_prerequisites() {
  if "$dry_run"; then
    if [ -z "$project" ]; then project=PROJECT; fi
    return 0
  fi
  command -v gcloud >/dev/null 2>&1 ||
    die "gcloud is not installed: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), then run this again"
  command -v kubectl >/dev/null 2>&1 ||
    die "kubectl is not installed: run 'gcloud components install kubectl' (or install Debian's kubectl), then run this again"
  command -v gke-gcloud-auth-plugin >/dev/null 2>&1 ||
    die "gke-gcloud-auth-plugin is not installed (kubectl needs it to log in to GKE): run 'gcloud components install gke-gcloud-auth-plugin', then run this again"
  local account
  account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)
  [ -n "$account" ] || die "gcloud is not logged in: run 'gcloud auth login', then run this again"
  if [ -z "$project" ]; then
    project=$(gcloud config get-value project 2>/dev/null || true)
    [ -n "$project" ] ||
      die "no Google Cloud project: pass --project P, or run 'gcloud config set project P'"
  fi
  local api
  api=$(gcloud services list --enabled --project "$project" \
    --filter=config.name=container.googleapis.com --format='value(config.name)' 2>/dev/null || true)
  [ -n "$api" ] ||
    die "the GKE API is not enabled in project $project: run 'gcloud services enable container.googleapis.com --project $project', then run this again"
}

# ---- the cluster ----

# Prints the cluster's status, or nothing when it does not exist; any other failure stops us.
cluster_status() {
  local out err
  err=$(mktemp)
  if out=$(query gcloud container clusters describe "$name" --project "$project" "${location_flag[@]}" \
    --format='value(status)' 2>"$err"); then
    rm -f "$err"
    echo "$out"
    return 0
  fi
  if "$dry_run" || grep -qi 'not found\|notfound\|404' "$err"; then
    rm -f "$err"
    return 0
  fi
  local message
  message=$(cat "$err")
  rm -f "$err"
  die "cannot look up cluster $name in $project/$location: $message"
}

create_cluster() {
  local status
  status=$(cluster_status)
  if [ -n "$status" ]; then
    echo "cluster $name in $project/$location exists ($status): not creating it"
    return 0
  fi
  echo "creating cluster $name in $project/$location ($nodes to $max_nodes $machine_type nodes per zone); this takes several minutes"
  run gcloud container clusters create "$name" --project "$project" "${location_flag[@]}" \
    --machine-type "$machine_type" --num-nodes "$nodes" \
    --enable-autoscaling --min-nodes "$nodes" --max-nodes "$max_nodes" \
    --addons GcePersistentDiskCsiDriver --release-channel regular \
    --labels "$label_key=$label_value" --quiet
}

context="gke_${project}_${location}_${name}"

kube() {
  run kubectl --context "$context" "$@"
}

kube_query() {
  query kubectl --context "$context" "$@"
}

get_credentials() {
  context="gke_${project}_${location}_${name}"
  run gcloud container clusters get-credentials "$name" --project "$project" "${location_flag[@]}"
}

ensure_default_storage_class() {
  local default
  default=$(kube_query get storageclass \
    -o jsonpath='{range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.metadata.name}{"\n"}{end}' ||
    true)
  if [ -n "$default" ]; then
    echo "default StorageClass: $default"
    return 0
  fi
  echo "no default StorageClass: making GKE's standard-rwo (balanced persistent disks) the default"
  kube annotate storageclass standard-rwo storageclass.kubernetes.io/is-default-class=true --overwrite
}

# kubectl diff exits 0 when the cluster already holds the file's objects as they are, 1 when it
# differs: only then is it applied, so a second run changes nothing. With --image, emp-server's
# manifest is applied with that image in place of the placeholder (so that, too, stays unchanged).
apply_file() {
  local file="$manifests/$1"
  local tmp=""
  if [ "$1" = 60-emp-server.yaml ] && [ -n "$image" ]; then
    tmp=$(mktemp -d)
    sed "s|image: emp-server:latest|image: $image|" "$file" >"$tmp/$1"
    file="$tmp/$1"
  fi
  local r=0
  if "$dry_run"; then
    print_cmd kubectl --context "$context" diff -f "$file"
    r=1
  else
    kubectl --context "$context" diff -f "$file" >/dev/null || r=$?
  fi
  case "$r" in
    0) echo "$1: unchanged" ;;
    1) kube apply -f "$file" ;;
    *) die "kubectl diff -f $file failed (exit $r): see its message above" ;;
  esac
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}

ensure_scheduler_token() {
  if kube_query -n "$namespace" get secret emp-scheduler-token -o name >/dev/null 2>&1; then
    echo "secret emp-scheduler-token exists: keeping its token"
    return 0
  fi
  if "$dry_run"; then
    kube -n "$namespace" create secret generic emp-scheduler-token --from-file=token=TOKEN_FILE
    return 0
  fi
  local dir
  dir=$(mktemp -d)
  # 32 random bytes, base64 without padding: 43 printable characters, within emp-server's 16-504
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '=\n' >"$dir/token")
  kube -n "$namespace" create secret generic emp-scheduler-token --from-file=token="$dir/token"
  rm -rf "$dir"
}

wait_ready() {
  local what=$1 kind_name=$2
  echo "waiting for $what (up to ${timeout}s)..."
  if ! kube -n "$namespace" rollout status "$kind_name" --timeout="${timeout}s"; then
    die "$what is not ready after ${timeout}s: look at 'kubectl --context $context -n $namespace describe $kind_name' and its pods' events, then run this again (with a larger --timeout if it is only slow)"
  fi
}

create_topic() {
  echo "making sure Kafka has the topic zipkin"
  kube -n "$namespace" exec kafka-0 -c kafka -- /opt/kafka/bin/kafka-topics.sh \
    --bootstrap-server localhost:9092 --create --if-not-exists --topic zipkin \
    --partitions 3 --replication-factor 1 >/dev/null
}

summary() {
  if "$dry_run"; then
    echo "dry run: nothing was run; TOKEN_FILE stands for a new file of 32 random bytes"
    return 0
  fi
  cat <<EOF

EMP's cluster is ready: $name in $project/$location (kubectl context $context).

emp-server runs in the cluster (namespace $namespace, 2 replicas, service account emp-server).
EOF
  if [ -z "$image" ]; then
    cat <<EOF
  Its image is still the manifest's placeholder: build and push the top-level Dockerfile, then
    $0 --project $project ${location_flag[*]} --name $name --image REGISTRY/emp-server:TAG
EOF
  fi
  cat <<EOF
  Reach its API:     kubectl --context $context -n $namespace port-forward svc/emp-server 7420
                     export EMP_SERVER=http://127.0.0.1:7420
  Scheduler token:   kubectl --context $context -n $namespace get secret emp-scheduler-token -o jsonpath='{.data.token}' | base64 -d
  An emp-server outside the cluster uses this kubeconfig context instead:
                     emp-server --cluster kubernetes --kube-context $context (its apps get
                     --apps-kafka-address kafka.$namespace.svc.cluster.local:9092)

Zipkin's UI:         kubectl --context $context -n $namespace port-forward svc/zipkin 9411
                     then open http://127.0.0.1:9411 (emp tracing links there)
Apps' Kafka:         kafka.$namespace.svc.cluster.local:9092 (KAFKAADDRESS), topic zipkin
EOF
}

# ---- delete ----

delete_all() {
  local status
  status=$(cluster_status)
  if [ -z "$status" ] && ! "$dry_run"; then
    echo "cluster $name in $project/$location does not exist: nothing to delete"
    return 0
  fi
  get_credentials
  echo "deleting EMP's objects (namespace $namespace, with Kafka's, Elasticsearch's and Redis' volumes)"
  local files=()
  local f
  for f in "$manifests"/*.yaml; do files=("$f" "${files[@]}"); done
  for f in "${files[@]}"; do
    kube delete -f "$f" --ignore-not-found --wait=true
  done
  local made_by=""
  made_by=$(query gcloud container clusters describe "$name" --project "$project" "${location_flag[@]}" \
    --format="value(resourceLabels.$label_key)" || true)
  if [ "$made_by" = "$label_value" ] || "$dry_run"; then
    echo "deleting cluster $name (this script created it)"
    run gcloud container clusters delete "$name" --project "$project" "${location_flag[@]}" --quiet
    run kubectl config delete-context "$context"
  else
    echo "cluster $name was not created by this script: keeping it (apps' namespaces emp-* are kept too)"
  fi
}

main() {
  check_prerequisites
  context="gke_${project}_${location}_${name}"
  if "$delete"; then
    delete_all
    return 0
  fi
  create_cluster
  get_credentials
  ensure_default_storage_class
  local f
  for f in 00-namespace.yaml 10-kafka.yaml 20-elasticsearch.yaml 30-zipkin.yaml 40-emp-rbac.yaml; do
    apply_file "$f"
  done
  ensure_scheduler_token
  apply_file 50-emp-redis.yaml
  apply_file 60-emp-server.yaml
  wait_ready Kafka statefulset/kafka
  create_topic
  wait_ready Elasticsearch statefulset/elasticsearch
  wait_ready Zipkin deployment/zipkin
  if [ -n "$image" ]; then
    wait_ready emp-server deployment/emp-server
  fi
  summary
}

main
