#!/usr/bin/env bash
# Runs each fuzz target of scim-schema for a bounded time; exits non-zero on a crash.
#
#   scim-schema/fuzz/run.sh [seconds-per-target]      (default 30)
#
# cargo-fuzz needs nightly-only `-Z` flags (sanitizers). The pinned toolchain is stable, so
# RUSTC_BOOTSTRAP=1 lets stable rustc accept them. Installs cargo-fuzz if it is missing.
set -euo pipefail

cd "$(dirname "$0")"
SECS="${1:-30}"
TARGETS=(filter_parse patch_path)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
status=0
for t in "${TARGETS[@]}"; do
    echo "=== fuzzing $t for ${SECS}s ===" >&2
    mkdir -p "corpus/$t"
    # -jobs/-workers stay at 1: the machine is shared.
    # New inputs go to corpus/ (ignored by git); seeds/ holds the RFC 7644 examples.
    if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$SECS" -max_len=4096 -timeout=10; then
        echo "!!! $t FAILED; see fuzz/artifacts/$t/" >&2
        status=1
    fi
done
exit $status
