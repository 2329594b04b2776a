#!/usr/bin/env bash
# User-space instructions per 64 B echo message, 100 WebSocket sessions, over 100 HTTP/1.1
# connections and over one HTTP/2 connection (RFC 8441), for wsgate and HAProxy, counted by
# callgrind (the HTTP/2 case of bench/driver.py, without the noise of CPU time on a shared machine).
#
#   bash bench/instructions_h2.sh [WSGATE_BINARY]     (default: bench/.work/wsgate, built by run.sh)
#
# Each count is the difference of two runs on fresh processes (100 sessions x 150 messages minus
# 100 x 50), divided by the 10,000 messages between them: startup and the 100 handshakes cancel.
# Needs valgrind (installed here if missing) and the binaries run.sh builds. Loopback only; every
# run is bounded by wsbench's exact counts and deadline.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wsgate="${1:-$here/.work/wsgate}"
bin="$here/target/release"
command -v valgrind >/dev/null || {
  echo "instructions: installing valgrind" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
command -v haproxy >/dev/null || bash "$here/install.sh"
for f in "$wsgate" "$bin/echo_backend" "$bin/wsbench"; do
  [ -x "$f" ] || { echo "instructions: $f missing: run bash bench/run.sh --quick --cases h2 first" >&2; exit 2; }
done
work="$(mktemp -d /tmp/wsgate-instructions-h2.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The bench's own configs, HTTP/2 variants (wsgate --http2-cleartext; HAProxy detects h2 itself).
(cd "$here" && python3 -B -c "
import sys, os; sys.path.insert(0, '.')
import driver
os.makedirs('$work/wsgate', exist_ok=True); os.makedirs('$work/haproxy', exist_ok=True)
cmd, _ = driver.cfg_wsgate('$work/wsgate', 18105, h2=True)
open('$work/wsgate.cmd', 'w').write(' '.join(cmd[1:]))
driver.cfg_haproxy('$work/haproxy', 18102, h2=True)
")
"$bin/echo_backend" 127.0.0.1:19101 >/dev/null 2>&1 &
pids+=($!)

total_ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'; }
wait_port() { for _ in $(seq 240); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.5; done; return 1; }

# run PEER PORT TRANSPORT MESSAGES: IR = total instructions of a fresh peer process for one echo run.
run() {
  local peer=$1 port=$2 transport=$3 n=$4 out="$work/$1-$3-$4.cg" p
  if [ "$peer" = wsgate ]; then
    # shellcheck disable=SC2046
    WSGATE_WORKERS=1 TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$wsgate" $(cat "$work/wsgate.cmd") >"$work/$peer.log" 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$out" \
      haproxy -db -f "$work/haproxy/haproxy.cfg" >"$work/$peer.log" 2>&1 &
  fi
  p=$!; pids+=($p)
  wait_port "$port" || { echo "instructions: $peer did not start (see $work/$peer.log)" >&2; exit 1; }
  "$bin/wsbench" echo --target "127.0.0.1:$port" --transport "$transport" --conns 100 --size 64 \
    --messages "$n" --deadline 300 --src-ips 127.0.0.2,127.0.0.3 >"$work/$peer-$transport-$n.json"
  grep -q '"ok":true' "$work/$peer-$transport-$n.json" \
    || { echo "instructions: echo failed: $(cat "$work/$peer-$transport-$n.json")" >&2; exit 1; }
  callgrind_control -d "$p" >/dev/null 2>&1
  sleep 1
  kill "$p"; wait "$p" 2>/dev/null || true
  IR=$(total_ir "$out.1")
}

echo "| peer | transport | user-space instructions per 64 B message (100 sessions) |"
echo "|---|---|---|"
for peer in wsgate haproxy; do
  port=18105; [ "$peer" = haproxy ] && port=18102
  for transport in h1 h2; do
    run "$peer" "$port" "$transport" 50; lo=$IR
    run "$peer" "$port" "$transport" 150; hi=$IR
    label="100 × HTTP/1.1"; [ "$transport" = h2 ] && label="1 × HTTP/2, 100 streams"
    printf '| %s | %s | %s |\n' "$peer" "$label" "$(((hi - lo) / 10000))"
  done
done
echo "(callgrind data in $work)"
