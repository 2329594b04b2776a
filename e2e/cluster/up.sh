#!/usr/bin/env bash
# Starts the single-node cluster (installing and building what is missing) and leaves it running.
# Prints the kubeconfig and how to use it; stop it with `bash e2e/cluster/node.sh down`.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespace, containerd, kubelet)"
bash "$CLUSTER_HERE/deps.sh"
bash "$CLUSTER_HERE/build.sh"
bash "$CLUSTER_HERE/node.sh" up
cat <<MSG
kubeconfig: $STATE/kube/kubeconfig
The apiserver and every pod are reachable only inside the network namespace $NETNS, e.g.:
  nsenter --net=/var/run/netns/$NETNS $REPO/e2e/.bin/kubectl --kubeconfig $STATE/kube/kubeconfig get pods -A
Stop: bash e2e/cluster/node.sh down
MSG
