#!/usr/bin/env bash
# Controller-mode e2e: builds wsgate, the e2e test binary and the kube-apiserver (all cached),
# then, inside a private network namespace (e2e/netns.sh), starts a real kube-apiserver with a
# static-token user "wsgate-controller" and runs tests/e2e_controller.rs, which applies crds/ and
# the chart's RBAC from manifests/install.yaml, binds only that user to it, and runs the built
# wsgate binary against the API server as that user.
#
#   e2e/run.sh [TEST-FILTER...]     e.g. e2e/run.sh e2e_4     (KEEP=1 keeps the state directory)
#
# Every wait in the tests is bounded; the whole run takes about 3 minutes once built.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
APISERVER=$HERE/apiserver.sh

if [[ -z ${WSGATE_E2E_NETNS:-} ]]; then
  # Outside: everything that may need a registry or the module proxy.
  "$APISERVER" build
  (cd "$ROOT" && cargo build --quiet --bin wsgate && cargo test --quiet --no-run --test e2e_controller)
  exec "$HERE/netns.sh" "$0" "$@"
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-e2e-controller.XXXXXX")
TOKEN=e2e-controller-$RANDOM$RANDOM$RANDOM

cleanup() {
  local pid
  # A crash-stop is enough for a throw-away API server, and a graceful stop can take 30 s.
  if [[ -f $DIR/apiserver.pid ]] && pid=$(cat "$DIR/apiserver.pid") && [[ $pid =~ ^[0-9]+$ ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ -z ${KEEP:-} ]]; then rm -rf "$DIR"; else echo "state (apiserver and wsgate logs) kept in $DIR"; fi
}
trap cleanup EXIT

"$APISERVER" start "$DIR" --token "user=wsgate-controller,token=$TOKEN"
export WSGATE_E2E_KUBE_DIR=$DIR WSGATE_E2E_TOKEN=$TOKEN
cd "$ROOT"
started=$SECONDS
cargo test --offline --quiet --test e2e_controller -- --test-threads=1 --nocapture "$@"
echo "e2e controller tests: done in $((SECONDS - started))s"
