#!/usr/bin/env bash
# Builds everything the cluster needs outside the namespace (the only steps that may reach a
# registry): the multi-call kube binary (e2e/apiserver, also kubelet, kube-proxy, controller-manager,
# scheduler and kubectl through links in e2e/.bin), the wsprobe test client, helm, and the images.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$REPO/e2e/apiserver.sh" build
# The binary picks the component by the name it is called by.
ln -sfn apiserver "$REPO/e2e/.bin/kubectl"
(cd "$CLUSTER_HERE/tools" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$REPO/e2e/.bin/wsprobe" ./cmd/wsprobe)
bash "$REPO/scripts/helm.sh" install >/dev/null
bash "$CLUSTER_HERE/images.sh"
