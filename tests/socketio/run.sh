#!/usr/bin/env bash
# Real Socket.IO and engine.io clients and servers behind wsgate (standalone mode, debug binary):
# 20 clients x 100 messages each way over 2 and 3 backends with the affinity cookie, Socket.IO with
# its default transports (long-polling, then the upgrade) and engine.io long-polling only, a
# backend removed mid-test, zero "Session ID unknown". Then a negative control: the same Socket.IO
# run without the cookie must fail (counted as passed when it does).
#
#   bash tests/socketio/run.sh            prints "N passed, M failed"; exit 1 on any failure
#
# Needs node and npm; installs the pinned npm packages into tests/socketio/node_modules with
# `npm ci` (skipped while the installed tree matches package-lock.json). KEEP=1 keeps the logs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/socketio
cd "$ROOT"

command -v node >/dev/null || { echo "socketio: node is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "socketio: npm is required" >&2; exit 1; }

# npm packages, idempotently: reinstall only when package-lock.json changed since the last install.
stamp=$HERE/node_modules/.wsgate-lock.sha256
want=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi

cargo build --quiet --bin wsgate
WSGATE=$ROOT/target/debug/wsgate

WORK=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

passed=0
failed=0
scenario() { # label, driver arguments...
    local label=$1
    shift
    local dir=$WORK/$(echo "$label" | tr -c 'a-zA-Z0-9\n' '-')
    mkdir -p "$dir"
    node "$HERE/driver.mjs" --wsgate "$WSGATE" --workdir "$dir" --label "$label" "$@" \
        >"$dir/out.txt" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait "$pid" || true
    cat "$dir/out.txt"
    local ok bad
    ok=$(grep -c '^ok ' "$dir/out.txt" || true)
    bad=$(grep -c '^FAIL ' "$dir/out.txt" || true)
    passed=$((passed + ok))
    failed=$((failed + bad))
    if [[ $bad -gt 0 || $ok -eq 0 ]]; then
        [[ $ok -eq 0 && $bad -eq 0 ]] && failed=$((failed + 1)) && echo "FAIL - $label: no result"
        for log in "$dir"/*.log; do
            [[ -s $log ]] || continue
            echo "     --- tail of $(basename "$log")"
            tail -n 15 "$log" | sed 's/^/     /'
        done
    fi
}

scenario "socket.io, 2 backends" --kind socketio --backends 2
scenario "socket.io, 3 backends" --kind socketio --backends 3
scenario "engine.io polling, 2 backends" --kind engineio --backends 2
scenario "engine.io polling, 3 backends" --kind engineio --backends 3
scenario "control: socket.io, 2 backends, no cookie" --kind socketio --backends 2 --no-affinity --control

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
