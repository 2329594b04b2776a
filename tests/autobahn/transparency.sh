#!/usr/bin/env bash
# Autobahn|Testsuite transparency check: run the fuzzingclient against a
# WebSocket echo backend directly and through the proxy, then require the
# per-case outcomes to be identical.
#
# usage: transparency.sh --direct ws://127.0.0.1:A --proxied ws://127.0.0.1:B
#        transparency.sh --start-backend A --proxied ws://127.0.0.1:B
#                        [--full] [--cases LIST] [--exclude LIST]
#                        [--out DIR] [--timeout SECS] [--strict-close-code]
#                        [--flaky-check]
#
#   --direct    URL of the echo backend itself
#   --start-backend PORT  start the reference echo backend (echoserver.py,
#               --backend-flavor, default "testee") on 127.0.0.1:PORT for the
#               duration of the check; --direct then defaults to it
#   --backend-flavor echo|testee  see echoserver.py / README.md
#   --proxied   URL of the same backend reached through wsgate
#   --full      run every case ("*", incl. 9.3-9.8, 10.*, 12.*, 13.*)
#               instead of the core set
#   --cases     explicit comma-separated case list (overrides core/--full)
#   --exclude   comma-separated cases to exclude (default: none)
#   --out       report directory (default: a fresh mktemp dir, kept);
#               gets direct/, proxied/ (each with index.json) and compare.txt
#   --timeout   hard limit per wstest run in seconds
#               (default 300 for the core set, 3600 with --full)
#   --strict-close-code  also fail when remoteCloseCode differs
#   --flaky-check  run the direct target twice; cases whose outcome differs
#               between the two direct runs are reported as FLAKY and ignored
#               (diagnoses a timing-dependent backend; see README.md)
#
# Core set: 1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.1.*,9.2.*  (see README.md)
# Exit status: 0 identical, 1 differences / a run failed, 2 usage error.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CORE_CASES="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.1.*,9.2.*"

DIRECT="" PROXIED="" FULL=0 FLAKY=0 BACKEND_PORT="" BACKEND_FLAVOR=testee CASES="" EXCLUDE="" OUT="" TIMEOUT="" COMPARE_ARGS=()
die() { echo "transparency.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --direct)  DIRECT="${2:?}"; shift 2 ;;
    --proxied) PROXIED="${2:?}"; shift 2 ;;
    --full)    FULL=1; shift ;;
    --start-backend)  BACKEND_PORT="${2:?}"; shift 2 ;;
    --backend-flavor) BACKEND_FLAVOR="${2:?}"; shift 2 ;;
    --cases)   CASES="${2:?}"; shift 2 ;;
    --exclude) EXCLUDE="${2-}"; shift 2 ;;
    --out)     OUT="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?}"; shift 2 ;;
    --strict-close-code) COMPARE_ARGS+=(--strict-close-code); shift ;;
    --flaky-check) FLAKY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if [[ -n "$BACKEND_PORT" ]]; then
  [[ "$BACKEND_PORT" =~ ^[0-9]+$ ]] || die "--start-backend takes a port number"
  [[ -n "$DIRECT" ]] || DIRECT="ws://127.0.0.1:$BACKEND_PORT"
fi
[[ -n "$DIRECT" && -n "$PROXIED" ]] || die "--direct (or --start-backend) and --proxied are required (see --help)"
if [[ -z "$CASES" ]]; then
  if [[ $FULL == 1 ]]; then CASES="*"; else CASES="$CORE_CASES"; fi
fi
if [[ -z "$TIMEOUT" ]]; then
  if [[ $FULL == 1 ]]; then TIMEOUT=3600; else TIMEOUT=300; fi
fi
[[ -n "$OUT" ]] || OUT="$(mktemp -d "${TMPDIR:-/tmp}/wsgate-autobahn.XXXXXX")"
mkdir -p "$OUT"

T0=$(date +%s)
phase_start=0
phase() { phase_start=$(date +%s); echo "[autobahn] $*" >&2; }
phase_done() { echo "[autobahn]   ... $1 in $(( $(date +%s) - phase_start ))s" >&2; }

phase "install: checking wstest (tests/autobahn/install.sh)"
WSTEST="$("$HERE/install.sh")"
export WSTEST
phase_done "ready ($WSTEST)"

BACKEND_PID="" RUN_PID=""
cleanup() { # stop whatever this script started that is still running
  local p
  for p in "$RUN_PID" "$BACKEND_PID"; do
    if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n "$BACKEND_PORT" ]]; then
  phase "backend: starting echoserver.py --flavor $BACKEND_FLAVOR on 127.0.0.1:$BACKEND_PORT"
  PYTHONWARNINGS=ignore "$(dirname "$WSTEST")/python" "$HERE/echoserver.py" \
    --host 127.0.0.1 --port "$BACKEND_PORT" --flavor "$BACKEND_FLAVOR" \
    >"$OUT/backend.log" 2>&1 &
  BACKEND_PID=$!
  for _ in $(seq 1 100); do
    grep -q '^READY' "$OUT/backend.log" 2>/dev/null && break
    kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$OUT/backend.log" >&2; die "backend failed to start"; }
    sleep 0.1
  done
  grep -q '^READY' "$OUT/backend.log" || die "backend not ready after 10s"
  phase_done "backend up (pid $BACKEND_PID)"
fi

run_one() { # agent url
  phase "run $1: $2 cases=\"$CASES\"${EXCLUDE:+ exclude=\"$EXCLUDE\"} timeout=${TIMEOUT}s"
  "$HERE/run.sh" --target "$2" --agent "$1" --cases "$CASES" --exclude "$EXCLUDE" \
    --out "$OUT/$1" --timeout "$TIMEOUT" >&2 &
  RUN_PID=$!
  local rc=0; wait "$RUN_PID" || rc=$?
  RUN_PID=""
  if [[ $rc -ne 0 ]]; then
    echo "[autobahn] FAIL: $1 run failed (exit $rc; log: $OUT/$1/wstest.log)" >&2; exit 1
  fi
  phase_done "$1 done"
}
run_one direct "$DIRECT"
run_one proxied "$PROXIED"
if [[ $FLAKY == 1 ]]; then
  run_one direct2 "$DIRECT"
  COMPARE_ARGS+=(--baseline "$OUT/direct2/index.json")
fi

phase "compare: direct vs proxied"
rc=0
python3 "$HERE/compare.py" "$OUT/direct/index.json" "$OUT/proxied/index.json" \
  ${COMPARE_ARGS[@]+"${COMPARE_ARGS[@]}"} | tee "$OUT/compare.txt" || rc=$?
phase_done "compare done"
echo "[autobahn] total $(( $(date +%s) - T0 ))s; reports in $OUT" >&2
if [[ $rc -ne 0 ]]; then
  echo "[autobahn] FAIL: proxied behavior differs from direct (see $OUT/compare.txt)" >&2
fi
exit "$rc"
