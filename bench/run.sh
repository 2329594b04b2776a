#!/usr/bin/env bash
# The benchmark, one command: bash bench/run.sh [--quick] [--peers direct,wsgate,nginx,...]
#   [--skip-control-plane] [--cases main,h2,cp]. Installs what it needs (idempotent), builds wsgate
# (release), the load generator/echo backend and the translate() probe, then runs bench/driver.py,
# which prints the markdown table and writes bench/results/latest-{full,quick}.{md,json} (a subset
# of --cases: latest-MODE-CASES.{md,json}). Only the HTTP/2 case, quickly:
#   bash bench/run.sh --quick --cases h2 --peers wsgate,haproxy
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mkdir -p "$here/.work"

# Everything started below is in this process group's care: stop it on any exit.
cleanup() {
  trap - EXIT INT TERM
  [ -n "${driver_pid:-}" ] && kill -TERM "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# Which cases run (the driver's --cases, default all): the Envoy/Traefik wheels serve only the main
# cases and the translate() probe only the control plane, so a subset skips them.
cases="main,h2,cp"
prev=""
for arg in "$@"; do
  [ "$prev" = "--cases" ] && cases="$arg"
  case "$arg" in --cases=*) cases="${arg#--cases=}" ;; esac
  prev="$arg"
done
has_case() { [[ ",$cases," == *",$1,"* ]]; }

if has_case main; then
  bash "$here/install.sh"
else
  BENCH_SKIP_VENV=1 bash "$here/install.sh"
fi

echo "bench: building wsgate (release)" >&2
(cd "$root" && cargo build --release --bin wsgate >&2)
# A private copy, so that a rebuild of target/ by someone else cannot swap it mid-run.
cp "$root/target/release/wsgate" "$here/.work/wsgate"

echo "bench: building the load generator and echo backend" >&2
(cd "$here" && cargo build --release >&2)

# translate() alone needs wsgate as a library; reuse the main target dir (same lock => same deps).
rm -f "$here/.work/cp-probe"
if has_case cp; then
  echo "bench: building the translate() probe" >&2
  if (cd "$here/cp-probe" && cp "$root/Cargo.lock" Cargo.lock \
      && CARGO_TARGET_DIR="$root/target" cargo build --release >&2); then
    cp "$root/target/release/cp-probe" "$here/.work/cp-probe"
  else
    echo "bench: WARNING: the translate() probe did not build; only 'wsgate check' is timed" >&2
  fi
fi

python3 "$here/driver.py" "$@" &
driver_pid=$!
wait "$driver_pid"
rc=$?
driver_pid=
exit $rc
