#!/usr/bin/env bash
# The reliability matrix (tests/reliability/matrix.py) against a wsgate binary: the one given, or
# the debug build of this checkout (built here when none is given). Prints one markdown table and
# exits non-zero when any row fails.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${1:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --quiet --bin wsgate)
  BIN="$ROOT/target/debug/wsgate"
fi
exec python3 "$ROOT/tests/reliability/matrix.py" "$BIN"
