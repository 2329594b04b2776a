#!/usr/bin/env bash
# User-space instructions per plain HTTP request and per WebSocket handshake, wsgate and nginx,
# counted by callgrind. Unlike CPU time these counts do not depend on what else the machine is
# doing, so they compare builds exactly (kernel time is not included: see docs/performance.md).
#
#   bash bench/instructions.sh [WSGATE_BINARY]      (default: bench/.work/wsgate, built by run.sh)
#
# Needs valgrind (installed here if missing) and the binaries bench/run.sh builds. Loopback only;
# each measurement is bounded (wrk -d 5s, exactly 2000 handshakes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wsgate="${1:-$here/.work/wsgate}"
bin="$here/target/release"
command -v valgrind >/dev/null || {
  echo "instructions: installing valgrind" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
bash "$here/install.sh"
for f in "$wsgate" "$bin/echo_backend" "$bin/wsbench"; do
  [ -x "$f" ] || { echo "instructions: $f missing: run bash bench/run.sh --quick first" >&2; exit 2; }
done
work="$(mktemp -d /tmp/wsgate-instructions.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The bench's own configs (same routes, same backend settings).
(cd "$here" && python3 -c "
import sys, os; sys.path.insert(0, '.')
import driver
os.makedirs('$work/wsgate', exist_ok=True); os.makedirs('$work/nginx', exist_ok=True)
driver.cfg_wsgate('$work/wsgate', 18105)
driver.cfg_nginx('$work/nginx', 18101)
")
"$bin/echo_backend" 127.0.0.1:19101 >/dev/null 2>&1 &
pids+=($!)

total_ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'; }
wait_http() { for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$1/plain" && return 0; sleep 0.5; done; return 1; }

# measure NAME PORT PID OUTFILE: counts for 5 s of wrk and for 2000 handshakes.
measure() {
  local name=$1 port=$2 pid=$3 out=$4
  wrk -t1 -c10 -d2s "http://127.0.0.1:$port/plain" >/dev/null   # warm: pooled connections
  callgrind_control -i on "$pid" >/dev/null 2>&1
  local reqs
  reqs=$(wrk -t1 -c10 -d5s "http://127.0.0.1:$port/plain" | awk '/requests in/{print $1}')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$bin/wsbench" churn --target "127.0.0.1:$port" --total 2000 --concurrency 8 \
    --src-ips 127.0.0.2,127.0.0.3 >/dev/null
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local http_ir churn_ir
  http_ir=$(total_ir "$out.1")
  churn_ir=$(total_ir "$out.2")
  printf '| %s | %s | %s |\n' "$name" "$((http_ir / reqs))" "$((churn_ir / 2000))"
}

echo "| peer | instructions per plain HTTP request | instructions per WebSocket handshake |"
echo "|---|---|---|"
WSGATE_WORKERS=1 TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$work/wsgate.cg" "$wsgate" run --config "$work/wsgate" --bind 127.0.0.1 \
  --http-port 18125 --admin-port 18115 --log-level warn --log-format text >"$work/wsgate.log" 2>&1 &
wp=$!; pids+=($wp)
wait_http 18105 || { echo "instructions: wsgate did not start (see $work/wsgate.log)" >&2; exit 1; }
measure wsgate 18105 "$wp" "$work/wsgate.cg"
kill "$wp"; wait "$wp" 2>/dev/null || true

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/nginx.cg" \
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g "master_process off;" >"$work/nginx.log" 2>&1 &
np=$!; pids+=($np)
wait_http 18101 || { echo "instructions: nginx did not start (see $work/nginx.log)" >&2; exit 1; }
measure nginx 18101 "$np" "$work/nginx.cg"
kill "$np"; wait "$np" 2>/dev/null || true
echo "(callgrind data in $work)"
