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

# Prometheus: Debian's package is built without Kubernetes service discovery, and `go install`
# refuses the module (replace directives), so build cmd/prometheus inside a copy of the module
# source, with only the kubernetes discovery plugin compiled in (the others pull in every cloud
# SDK). The binary is cached in the default GOPATH's bin.
PROM_VERSION=v0.54.1 # Prometheus 2.54.1
PROM_BIN=$(go env GOPATH | cut -d: -f1)/bin/prometheus-$PROM_VERSION-k8s
if [[ ! -x $PROM_BIN ]]; then
  log "building Prometheus ${PROM_VERSION/v0./2.} (kubernetes discovery only; a few minutes cold)"
  src=$(go mod download -json "github.com/prometheus/prometheus@$PROM_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d /var/tmp/wsgate-e2e-prometheus.XXXXXX)
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  printf '// Only the discovery plugin the e2e suite uses.\npackage plugins\n\nimport _ "github.com/prometheus/prometheus/discovery/kubernetes"\n' \
    >"$work/plugins/plugins.go"
  mkdir -p "$(dirname "$PROM_BIN")"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="-mod=mod -p=${E2E_BUILD_JOBS:-$(nproc)}" nice -n 19 \
    go build -trimpath -ldflags='-s -w' -o "$PROM_BIN.tmp" ./cmd/prometheus) ||
    { rm -rf "$work"; die "building prometheus failed"; }
  mv -f "$PROM_BIN.tmp" "$PROM_BIN"
  rm -rf "$work"
fi
ln -sfn "$PROM_BIN" "$REPO/e2e/.bin/prometheus"
bash "$CLUSTER_HERE/images.sh"
