#!/usr/bin/env bash
# Real browsers through wsgate over HTTP/2 (RFC 8441): installs Chromium, Firefox ESR and certutil
# (libnss3-tools, to trust the test CA in a fresh Firefox profile) from the Debian archive when
# missing (idempotent), then runs the ignored tests of tests/browser_h2.rs (both browsers, headless).
#
#   bash tests/browser/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
chromium --version 2>/dev/null | head -n 1
firefox-esr --version 2>/dev/null | head -n 1
# The first start on a machine builds caches (fonts) for up to a minute; do it outside the test's
# time limit.
timeout 120 chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 || true
# One browser at a time: both are heavy on a small machine, and each test has its own time limit.
cargo test --test browser_h2 -- --ignored --nocapture --test-threads=1
