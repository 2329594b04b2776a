#!/usr/bin/env bash
# Installs what the cluster suite needs, idempotently: Debian packages (containerd, runc,
# CNI plugins, iptables, buildah, debootstrap), and helm (scripts/helm.sh); the kube binary,
# kubectl and Prometheus are built by build.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKGS=(containerd runc containernetworking-plugins iptables buildah debootstrap openssl
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
for b in containerd ctr runc buildah debootstrap iptables nsenter openssl; do
  command -v "$b" >/dev/null || die "$b is not on PATH after installing packages"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] ||
  die "CNI plugins missing in /usr/lib/cni"

bash "$REPO/scripts/helm.sh" >/dev/null
