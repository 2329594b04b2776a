#!/usr/bin/env bash
# Runs every fuzz target for a bounded time with cargo-fuzz (nightly toolchain).
#
#   bash fuzz/run.sh            every target for 600 s (the full run)
#   bash fuzz/run.sh SECONDS    every target for SECONDS
#   bash fuzz/run.sh --smoke    every target for 5 s (scripts/test.sh runs this)
#   FUZZ_TARGETS="path chunked" bash fuzz/run.sh 60    only these targets
#
# Installs cargo-fuzz with `cargo install` when missing (idempotent). Corpora grow in
# fuzz/corpus/TARGET (not committed; the seeds in fuzz/seeds/TARGET are). A crash stops the run
# with exit 1 and leaves its input in fuzz/artifacts/TARGET/; turn each into a regression test
# (tests/fuzz_regressions.rs) before fixing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=600
# The smoke run builds without optimisation: the build dominates a 5-second run, and an optimised
# build of every dependency with one codegen unit takes many times longer.
profile=()
case "${1:-}" in
    --smoke) seconds=5; profile=(--dev) ;;
    "") ;;
    *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS|--smoke]" >&2; exit 2 ;;
    *) seconds=$1 ;;
esac

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The library forbids unsafe code, so AddressSanitizer finds nothing the Rust checks do not; without
# it the build is several times faster. FUZZ_SANITIZER=address brings it back.
sanitizer=${FUZZ_SANITIZER:-none}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}

# One build of every target first, so that a build error is reported as such.
if ! cargo +nightly fuzz build "${profile[@]}" --sanitizer "$sanitizer" --debug-assertions >build.log 2>&1; then
    tail -n 40 build.log >&2
    echo "fuzz/run.sh: building the fuzz targets failed" >&2
    exit 1
fi
rm -f build.log

printf '%-15s %8s %12s %10s %s\n' target seconds executions corpus result
failed=0
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    log=$(mktemp)
    if cargo +nightly fuzz run "${profile[@]}" --sanitizer "$sanitizer" --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/artifacts/$t/)"
        failed=1
        tail -n 30 "$log" >&2
    fi
    execs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -n 1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    printf '%-15s %8s %12s %10s %s\n' "$t" "$seconds" "${execs:-?}" "$corpus" "$result"
    rm -f "$log"
done
exit "$failed"
