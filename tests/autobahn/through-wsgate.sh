#!/usr/bin/env bash
# Autobahn|Testsuite transparency through wsgate: starts the reference echo backend and wsgate
# (standalone, default settings, a Gateway routing every path to the backend), then runs
# transparency.sh (core cases by default; pass --full for every case incl. 12.*/13.* deflate).
#
# usage: tests/autobahn/through-wsgate.sh [--full] [other transparency.sh flags]
#   WSGATE_BIN=path  the wsgate binary (default: target/debug/wsgate, built if missing)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${WSGATE_BIN:-$ROOT/target/debug/wsgate}"

bash "$HERE/install.sh"
if [[ ! -x $BIN ]]; then
  (cd "$ROOT" && cargo build --bin wsgate)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(free_port)
LISTEN=$(free_port)
HTTP=$(free_port)
ADMIN=$(free_port)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-autobahn.XXXXXX")
PID=""
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/config"
cat > "$WORK/config/autobahn.yaml" <<YAML
apiVersion: wsgate.dev/v1alpha1
kind: Gateway
metadata: {name: autobahn, namespace: test}
spec:
  listeners: [{name: web, port: $LISTEN}]
  backendPools: [{name: echo, addresses: [{host: 127.0.0.1, port: $BACKEND}]}]
  routingRules: [{name: all, listeners: [web], backendPool: echo}]
YAML
"$BIN" run --config "$WORK/config" --bind 127.0.0.1 --http-port "$HTTP" --admin-port "$ADMIN" \
  --log-level warn --log-format text >"$WORK/wsgate.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/wsgate.log" >&2; echo "wsgate exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null || { cat "$WORK/wsgate.log" >&2; exit 1; }

echo "autobahn: backend 127.0.0.1:$BACKEND, wsgate listener 127.0.0.1:$LISTEN"
set +e
bash "$HERE/transparency.sh" --start-backend "$BACKEND" --proxied "ws://localhost:$LISTEN" --strict-close-code "$@"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "--- wsgate log ---" >&2
  tail -50 "$WORK/wsgate.log" >&2
fi
exit $rc
