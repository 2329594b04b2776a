#!/usr/bin/env bash
# Installs what the cluster suite needs, idempotently: Debian packages (containerd, runc,
# CNI plugins, iptables, buildah, debootstrap, prometheus), kubectl if missing (built from
# the pinned Kubernetes release's module), helm (scripts/helm.sh), and the kube binary.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKGS=(containerd runc containernetworking-plugins iptables buildah debootstrap prometheus
  iproute2 util-linux ca-certificates curl)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d or not, nothing here should start as a system service: the suite runs its own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for b in containerd ctr runc buildah debootstrap prometheus iptables nsenter; do
  command -v "$b" >/dev/null || die "$b is not on PATH after installing packages"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] ||
  die "CNI plugins missing in /usr/lib/cni"

# A Debian-installed prometheus may have been started as a service by the package; the suite
# runs its own instance inside the namespace and never touches that one.

bash "$REPO/scripts/helm.sh" >/dev/null
bash "$REPO/e2e/apiserver.sh" build
if ! command -v kubectl >/dev/null; then
  die "kubectl is not installed (see e2e/README.md)"
fi
