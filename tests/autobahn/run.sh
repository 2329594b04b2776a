#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingclient against one WebSocket endpoint.
#
# usage: run.sh --target ws://127.0.0.1:PORT --agent NAME --cases "1.*,2.*" --out DIR
#               [--exclude "9.3.*,..."] [--timeout SECS] [--wait SECS]
#
#   --target   ws:// URL of the server under test (loopback only unless
#              WSGATE_AUTOBAHN_ALLOW_REMOTE=1)
#   --agent    agent name recorded in the report (index.json top-level key)
#   --cases    comma-separated case patterns (wstest syntax: "1.*", "9.1.*", "*")
#   --exclude  comma-separated case patterns to exclude (default: none)
#   --out      report directory; gets spec.json, wstest.log, index.json (+ the
#              per-case .json/.html reports wstest writes)
#   --timeout  hard wall-clock limit for wstest in seconds (default 900)
#   --wait     seconds to wait for the target's TCP port to accept (default 15)
#
# Environment: WSTEST (path to wstest; default: whatever install.sh yields).
# Exit status: 0 when index.json was produced with >= 1 case for the agent,
# non-zero otherwise (install failure, target unreachable, timeout, ...).
# Pass/fail of individual cases is NOT judged here -- see compare.py.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

TARGET="" AGENT="" CASES="" EXCLUDE="" OUT="" TIMEOUT=900 WAIT=15
die() { echo "run.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target)  TARGET="${2:?}"; shift 2 ;;
    --agent)   AGENT="${2:?}"; shift 2 ;;
    --cases)   CASES="${2:?}"; shift 2 ;;
    --exclude) EXCLUDE="${2-}"; shift 2 ;;
    --out)     OUT="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?}"; shift 2 ;;
    --wait)    WAIT="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n "$TARGET" && -n "$AGENT" && -n "$CASES" && -n "$OUT" ]] \
  || die "--target, --agent, --cases and --out are required (see --help)"
[[ "$TIMEOUT" =~ ^[0-9]+$ && "$WAIT" =~ ^[0-9]+$ ]] || die "--timeout/--wait must be integers"

WSTEST="${WSTEST:-$("$HERE/install.sh")}"
[[ -x "$WSTEST" ]] || die "wstest not found/executable: $WSTEST"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/index.json" "$OUT/index.html"

# Write the spec (and validate target/loopback) with python3 for proper JSON.
python3 - "$TARGET" "$AGENT" "$CASES" "$EXCLUDE" "$OUT" <<'PY'
import ipaddress, json, os, sys
from urllib.parse import urlsplit

target, agent, cases, exclude, out = sys.argv[1:6]
u = urlsplit(target)
if u.scheme not in ("ws", "wss") or not u.hostname:
    sys.exit("run.sh: --target must be a ws:// or wss:// URL, got %r" % target)
host = u.hostname
loopback = host == "localhost"
try:
    loopback = loopback or ipaddress.ip_address(host).is_loopback
except ValueError:
    pass
if not loopback and os.environ.get("WSGATE_AUTOBAHN_ALLOW_REMOTE") != "1":
    sys.exit("run.sh: refusing non-loopback target %r "
             "(set WSGATE_AUTOBAHN_ALLOW_REMOTE=1 to override)" % host)

split = lambda s: [c.strip() for c in s.split(",") if c.strip()]
spec = {
    "outdir": out,
    "servers": [{"agent": agent, "url": target}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
    # wstest's default for the fuzzingclient; spelled out for clarity.
    "options": {"failByDrop": False},
}
with open(os.path.join(out, "spec.json"), "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY

# Wait (bounded) until the target accepts TCP connections; otherwise wstest
# would just record "connection failed" and write an empty report.
python3 - "$TARGET" "$WAIT" <<'PY'
import socket, sys, time
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1]); deadline = time.monotonic() + int(sys.argv[2])
port = u.port or (443 if u.scheme == "wss" else 80)
while True:
    try:
        socket.create_connection((u.hostname, port), timeout=2).close()
        break
    except OSError as e:
        if time.monotonic() > deadline:
            sys.exit("run.sh: %s:%s not reachable after %ss: %s" % (u.hostname, port, sys.argv[2], e))
        time.sleep(0.2)
PY

# Run wstest under a hard timeout; kill it if we are interrupted.
WSTEST_PID=""
cleanup() { if [[ -n "$WSTEST_PID" ]] && kill -0 "$WSTEST_PID" 2>/dev/null; then kill "$WSTEST_PID" 2>/dev/null || true; wait "$WSTEST_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
(
  cd "$OUT"
  export PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
  exec timeout --kill-after=10 "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$OUT/spec.json"
) >"$OUT/wstest.log" 2>&1 &
WSTEST_PID=$!
rc=0; wait "$WSTEST_PID" || rc=$?
WSTEST_PID=""
elapsed=$(( $(date +%s) - start ))

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  echo "run.sh: wstest timed out after ${TIMEOUT}s (agent=$AGENT); last log lines:" >&2
  tail -n 5 "$OUT/wstest.log" >&2; exit 1
elif [[ $rc -ne 0 ]]; then
  echo "run.sh: wstest exited $rc (agent=$AGENT); last log lines:" >&2
  tail -n 20 "$OUT/wstest.log" >&2; exit 1
fi
if grep -q "^Connection to .* failed" "$OUT/wstest.log"; then
  echo "run.sh: $(grep -m1 '^Connection to .* failed' "$OUT/wstest.log")" >&2
fi
[[ -s "$OUT/index.json" ]] || { echo "run.sh: no index.json produced in $OUT" >&2; exit 1; }

# One-line summary: case count and outcome histogram.
python3 - "$OUT/index.json" "$AGENT" "$elapsed" <<'PY'
import collections, json, sys
idx = json.load(open(sys.argv[1])); agent = sys.argv[2]
cases = idx.get(agent, {})
hist = collections.Counter(c["behavior"] for c in cases.values())
print("run.sh: agent=%s cases=%d wall=%ss [%s]" % (agent, len(cases), sys.argv[3],
      ", ".join("%s=%d" % kv for kv in sorted(hist.items()))))
sys.exit(0 if cases else 1)
PY
