#!/usr/bin/env bash
# Self-test of the transparency tooling, without wsgate:
#   1. two instances of the reference echo backend (echoserver.py) on free
#      loopback ports stand in for "direct" and "proxied"; transparency.sh must
#      report them identical (exit 0);
#   2. compare.py must detect differences (exit 1) for: a mutated behavior,
#      a mutated behaviorClose, a case missing from the proxied report, and a
#      proxied run that excluded a case; and must exit 0 for a remoteCloseCode
#      change unless --strict-close-code is given.
#
# usage: selftest.sh [--flavor testee|echo] [--cases LIST] [--keep]
#   --flavor  echo backend flavor (default testee; "echo" is what
#             `wstest -m echoserver` serves and is timing-dependent on a few
#             cases -- see README.md)
#   --cases   case list for step 1 (default: the core set)
#   --keep    keep the temp dir with all reports
# All mutated data lives in a temp dir that is removed at exit (unless --keep).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FLAVOR=testee CASES="" KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --flavor) FLAVOR="${2:?}"; shift 2 ;;
    --cases)  CASES="${2:?}"; shift 2 ;;
    --keep)   KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "selftest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

WSTEST="$("$HERE/install.sh")"; export WSTEST
PY2="$(dirname "$WSTEST")/python"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/wsgate-autobahn-selftest.XXXXXX")"
PIDS=()
cleanup() {
  local p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do
    kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then echo "[selftest] kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PORT_A="$(free_port)"; PORT_B="$(free_port)"
while [[ "$PORT_B" == "$PORT_A" ]]; do PORT_B="$(free_port)"; done

fails=0
check() { # description expected_rc actual_rc
  if [[ "$2" == "$3" ]]; then echo "[selftest] PASS: $1 (exit $3)" >&2
  else echo "[selftest] FAIL: $1 (expected exit $2, got $3)" >&2; fails=$((fails + 1)); fi
}

# --- 1. identical backends -------------------------------------------------------
echo "[selftest] starting 'proxied' stand-in: echoserver.py --flavor $FLAVOR on 127.0.0.1:$PORT_B" >&2
PYTHONWARNINGS=ignore "$PY2" "$HERE/echoserver.py" --port "$PORT_B" --flavor "$FLAVOR" \
  >"$TMP/backend-b.log" 2>&1 &
PIDS+=($!)
rc=0
"$HERE/transparency.sh" --start-backend "$PORT_A" --backend-flavor "$FLAVOR" \
  --proxied "ws://127.0.0.1:$PORT_B" --out "$TMP/t" ${CASES:+--cases "$CASES"} || rc=$?
check "two identical echo backends compare identical" 0 "$rc"

# --- 2. compare.py detects differences ------------------------------------------------
D="$TMP/t/direct/index.json"
mutate() { # name python-expression-on-cases(dict "c")
  mkdir -p "$TMP/mut/$1"
  python3 - "$TMP/t/proxied/index.json" "$TMP/mut/$1/index.json" "$2" <<'PY'
import json, sys
src, dst, expr = sys.argv[1:4]
idx = json.load(open(src)); (agent,) = idx; c = idx[agent]
exec(expr)
json.dump(idx, open(dst, "w"), indent=1)
PY
}
mutate behavior      'c["1.1.1"]["behavior"] = "FAILED"'
mutate behaviorClose 'c["1.1.2"]["behaviorClose"] = "UNCLEAN"'
mutate missing       'del c["1.1.3"]'
mutate closecode     'c["1.1.4"]["remoteCloseCode"] = 1001'
for m in behavior behaviorClose missing; do
  rc=0; python3 "$HERE/compare.py" "$D" "$TMP/mut/$m/index.json" >"$TMP/mut/$m/out.txt" || rc=$?
  check "compare.py flags mutated '$m' ($(tail -n1 "$TMP/mut/$m/out.txt"))" 1 "$rc"
done
rc=0; python3 "$HERE/compare.py" -q "$D" "$TMP/mut/closecode/index.json" >/dev/null || rc=$?
check "compare.py tolerates remoteCloseCode change by default" 0 "$rc"
rc=0; python3 "$HERE/compare.py" -q --strict-close-code "$D" "$TMP/mut/closecode/index.json" >/dev/null || rc=$?
check "compare.py --strict-close-code flags remoteCloseCode change" 1 "$rc"

# A real run that skips a case must be caught as "missing" (both runs against
# the still-running backend B; the backend on PORT_A stopped with transparency.sh).
"$HERE/run.sh" --target "ws://127.0.0.1:$PORT_B" --agent direct --cases "1.*" \
  --out "$TMP/excl-direct" --timeout 120 >&2
"$HERE/run.sh" --target "ws://127.0.0.1:$PORT_B" --agent proxied --cases "1.*" \
  --exclude "1.2.8" --out "$TMP/excl" --timeout 120 >&2
rc=0; python3 "$HERE/compare.py" "$TMP/excl-direct/index.json" "$TMP/excl/index.json" || rc=$?
check "compare.py flags a case excluded from the proxied run" 1 "$rc"

if [[ $fails -ne 0 ]]; then echo "[selftest] $fails check(s) FAILED" >&2; exit 1; fi
echo "[selftest] all checks passed" >&2
