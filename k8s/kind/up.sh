#!/usr/bin/env bash
# One-command local Kubernetes (`make kind-up`): create a kind cluster (once), build the image, load it into the
# cluster's nodes, apply k8s/overlays/local and wait until PostgreSQL, Redis, the migrations and the three tiers are
# up. Re-running it rebuilds, reloads and restarts the tiers on the new image.
# Needs Docker (a running engine), kind and kubectl. Settings: KIND_CLUSTER_NAME (scalable-api),
# ROLLOUT_TIMEOUT (300s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-scalable-api}"
TIMEOUT="${ROLLOUT_TIMEOUT:-300s}"
NAMESPACE=scalable-api
IMAGE=scalable-api:dev  # the tag k8s/overlays/local sets
CONTEXT="kind-${CLUSTER}"

say() { printf 'kind-up: %s\n' "$*"; }
fail() { printf 'kind-up: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  fail "missing: ${missing[*]}. Install Docker (https://docs.docker.com/engine/install/)," \
    "kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) and kubectl" \
    "(https://kubernetes.io/docs/tasks/tools/), then run \`make kind-up\` again."
fi
docker info >/dev/null 2>&1 || fail "docker is installed but its engine does not answer (\`docker info\` failed): start Docker."

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "cluster $CLUSTER exists: reusing it"
  existed=1
else
  say "creating cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/k8s/kind/cluster.yaml" --wait "$TIMEOUT"
  existed=0
fi

say "building $IMAGE"
docker build --tag "$IMAGE" "$ROOT"
say "loading $IMAGE into the nodes of $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# A Job's pod template is immutable: the previous migration Job goes, the new one runs the new image.
kubectl --context "$CONTEXT" --namespace "$NAMESPACE" delete job scalable-api-migrate --ignore-not-found
say "applying k8s/overlays/local"
kubectl --context "$CONTEXT" apply --kustomize "$ROOT/k8s/overlays/local"
if ((existed)); then
  # Same tag, new image: the tiers restart onto it.
  kubectl --context "$CONTEXT" --namespace "$NAMESPACE" rollout restart deployment/apiserver deployment/balancer deployment/gateway
fi

say "waiting for the rollout (up to $TIMEOUT per step)"
for workload in statefulset/postgres statefulset/redis; do
  kubectl --context "$CONTEXT" --namespace "$NAMESPACE" rollout status "$workload" --timeout "$TIMEOUT"
done
kubectl --context "$CONTEXT" --namespace "$NAMESPACE" wait job/scalable-api-migrate --for=condition=complete --timeout "$TIMEOUT"
for workload in deployment/apiserver deployment/balancer deployment/gateway; do
  kubectl --context "$CONTEXT" --namespace "$NAMESPACE" rollout status "$workload" --timeout "$TIMEOUT"
done

say "ready. Reach the gateway with:"
say "  kubectl --context $CONTEXT --namespace $NAMESPACE port-forward svc/gateway 8080:8080"
say "  curl http://127.0.0.1:8080/api/v1/status"
say "remove the cluster with: kind delete cluster --name $CLUSTER"
