#!/usr/bin/env bash
# Run a command in a fresh, private network namespace whose only interface is
# lo, with 127.0.0.0/8 and the benchmark range 198.18.0.0/15 (RFC 2544) both
# local. Nothing sent from inside can leave the machine.
#
#   e2e/netns.sh CMD [ARGS...]
#
# Why: kube-apiserver rejects loopback addresses in EndpointSlices and
# Endpoints ("may not be in the loopback range (127.0.0.0/8, ::1/128)"), so
# backends for e2e tests listen on 198.18.x.y instead, which only exists here.
# Start the apiserver, the controller, the backends and the test client all
# inside the same namespace (build everything, and fetch dependencies, before
# entering: there is no route to any registry from inside). The command sees
# WSGATE_E2E_NETNS=1 and WSGATE_E2E_BACKEND_NET=198.18.0.0/15.
set -euo pipefail

if [[ ${1:-} == --inside ]]; then
  shift
  ip link set lo up
  ip addr add 198.18.0.1/15 dev lo
  export WSGATE_E2E_NETNS=1 WSGATE_E2E_BACKEND_NET=198.18.0.0/15
  exec "$@"
fi

if [[ $# -eq 0 || $1 == -h || $1 == --help ]]; then
  sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
command -v unshare >/dev/null || { echo "netns.sh: error: unshare not found (Debian package util-linux)" >&2; exit 1; }
command -v ip >/dev/null || { echo "netns.sh: error: ip not found (Debian package iproute2)" >&2; exit 1; }
if [[ $EUID -eq 0 ]]; then
  opts=(--net)
else
  opts=(--map-root-user --net)
fi
exec unshare "${opts[@]}" -- "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns.sh" --inside "$@"
