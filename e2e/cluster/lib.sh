# shellcheck shell=bash
# Shared settings and helpers of the e2e/cluster scripts (sourced, not run).
#
# Environment (all optional):
#   E2E_CLUSTER_DIR     state directory of the node (default /tmp/wsgate-cluster)
#   E2E_CLUSTER_NETNS   name of the private network namespace (default wsgate-cluster)
#   E2E_IMAGE_CACHE     where built image archives are kept between runs
#                       (default ~/.cache/wsgate-e2e/images)

CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CLUSTER_HERE/../.." && pwd)
STATE=${E2E_CLUSTER_DIR:-/tmp/wsgate-cluster}
NETNS=${E2E_CLUSTER_NETNS:-wsgate-cluster}
IMAGE_CACHE=${E2E_IMAGE_CACHE:-$HOME/.cache/wsgate-e2e/images}
KUBEBIN=$REPO/e2e/.bin/apiserver

# Addresses: everything lives in the private namespace NETNS.
NODE_IP=198.18.0.1
POD_CIDR=198.19.0.0/24
POD_GW=198.19.0.1
SERVICE_CIDR=198.18.128.0/20
NODE_NAME=wsgate-e2e-node
# Parent cgroup of all pods, so this kubelet never touches another one's.
CGROUP_ROOT=/wsgate-e2e

# Image names. CRI normalises short names to docker.io/..., so every image is
# imported under a fully qualified name.
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
WSGATE_IMAGE=ghcr.io/wsgate/wsgate:e2e
ECHO_IMAGE=registry.local/wsgate-e2e/echo:1
BUILDER_BASE=docker.io/library/rust:1.95-bookworm
RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

log() { echo "cluster: $*" >&2; }
die() {
  echo "cluster: error: $*" >&2
  exit 1
}

# in_ns CMD...: run CMD in the node's network namespace. nsenter, not
# `ip netns exec`, which remounts /sys so that runc finds no cgroups.
in_ns() { nsenter --net="/var/run/netns/$NETNS" "$@"; }

# Command line of a pid, or nothing.
pid_cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }
