#!/usr/bin/env bash
# A real browser through wsgate over HTTP/2 (RFC 8441): installs headless Chromium from the Debian
# archive when missing (idempotent), then runs the ignored test tests/browser_h2.rs.
#
#   bash tests/browser/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v chromium >/dev/null 2>&1; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium
fi
chromium --version 2>/dev/null | head -n 1
# The first start on a machine builds caches (fonts) for up to a minute; do it outside the test's
# time limit.
timeout 120 chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 || true
cargo test --test browser_h2 -- --ignored --nocapture
