#!/usr/bin/env bash
# Throughput with 1, 2 and 3 scimhub nodes on one PostgreSQL (scim-server/examples/bench_nodes.rs):
# USERS (default 2000) joiners POSTed round-robin by CLIENTS (16) concurrent clients; reports SCIM
# writes/s and downstream operations/s (a webhook answered at once by a local receiver) per run,
# node counts interleaved over ROUNDS (2) rounds, and the median per node count.
#
#   bash scripts/bench-nodes.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres USERS=5000 ROUNDS=3 bash scripts/bench-nodes.sh
#   SCIMHUB_BIN=/path/to/release/scimhub bash scripts/bench-nodes.sh   # skip the binary's build
#
# DATABASE_URL names a database the script may connect to in order to create (and drop) one
# fresh database per run. All nodes, the clients and PostgreSQL share this machine: on 2 cores
# adding nodes adds contention, not CPU (see docs/deployment.md, "Several nodes").
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
if [ -z "${SCIMHUB_BIN:-}" ]; then
  cargo build --release -q -p scim-server --bin scimhub
  SCIMHUB_BIN="$TARGET/release/scimhub"
fi
cargo build --release -q -p scim-server --example bench_nodes
SCIMHUB_BIN="$SCIMHUB_BIN" "$TARGET/release/examples/bench_nodes"
