#!/usr/bin/env bash
# The audit chain at scale: appends ENTRIES (default 1,000,000) chained entries to a fresh
# SQLite database (scim-server/examples/bench_audit.rs: append cost per entry), then times
# `scimhub audit verify` over the whole chain as its own process (wall time and peak resident
# memory, from /usr/bin/time). Release build; figures only mean something on a quiet machine.
#
#   bash scripts/bench-audit.sh
#   ENTRIES=100000 bash scripts/bench-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${ENTRIES:-1000000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release -p scim-server --bin scimhub --example bench_audit
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
./target/release/examples/bench_audit "$WORK/audit.db" "$ENTRIES"
ls -l "$WORK"/audit.db* | awk '{ s += $5 } END { printf "database: %.0f MB\n", s / 1e6 }'
/usr/bin/time -f 'audit verify: %e s wall, %U s user, peak RSS %M KB' \
  ./target/release/scimhub audit verify --database-url "sqlite://$WORK/audit.db"
