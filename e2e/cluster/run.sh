#!/usr/bin/env bash
# The cluster suite, one entry point: installs what it needs (idempotently), builds the binaries
# and images (cached), starts a single-node cluster in a private network namespace, runs the
# tests (tests.sh) and tears everything down by PID. Ends with "N passed, N failed".
#
#   bash e2e/cluster/run.sh          KEEP=1 leaves the node running afterwards (see up.sh)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespace, containerd, kubelet)"
T0=$SECONDS
bash "$CLUSTER_HERE/deps.sh"
bash "$CLUSTER_HERE/build.sh"
log "deps, binaries and images ready in $((SECONDS - T0)) s"

# A node left over from an interrupted run goes first.
bash "$CLUSTER_HERE/node.sh" down >/dev/null 2>&1 || true
rm -rf "$STATE"
teardown() {
  bash "$CLUSTER_HERE/prometheus.sh" stop || true
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: node left running; kubeconfig $STATE/kube/kubeconfig; stop with: bash e2e/cluster/node.sh down"
  else
    bash "$CLUSTER_HERE/node.sh" down || true
  fi
}
trap teardown EXIT
T1=$SECONDS
if ! bash "$CLUSTER_HERE/node.sh" up; then
  echo "0 passed, 1 failed"
  exit 1
fi
log "node up in $((SECONDS - T1)) s"
rc=0
bash "$CLUSTER_HERE/tests.sh" || rc=$?
log "total $((SECONDS - T0)) s"
exit "$rc"
