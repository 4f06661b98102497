#!/usr/bin/env bash
# Engine benchmark (issue 4): the release scimhub binary on SQLite with three in-memory
# connectors; JOINERS (default 10,000) joiners pushed by /Bulk, time until every downstream
# operation is done; then LEAVERS (default 200) leavers one at a time, latency from the SCIM
# response to the last leaver operation done (engine_outbox.finished), p50/p99.
# Targets: joiners planned and executed < 20 s; leaver p99 < 250 ms.
#
#   bash scripts/bench-engine.sh
#
# Figures are noisy on a shared machine; run it on a quiet one for numbers to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p scim-server --bin scimhub
cargo build --release -q -p scim-server --example bench_engine
TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
SCIMHUB_BIN="$TARGET/release/scimhub" JOINERS=${JOINERS:-10000} LEAVERS=${LEAVERS:-200} \
  "$TARGET/release/examples/bench_engine"
