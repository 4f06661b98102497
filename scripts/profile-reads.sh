#!/usr/bin/env bash
# Profiles scimhub's read path under load: get by id and filter `userName eq`, each driven by
# plain wrk (one thread, 16 connections, CPU 1) against the server on CPU 0 (SQLite file, USERS
# users), sampled with `perf record --call-graph dwarf` and rendered as flamegraph SVGs with
# inferno (`cargo install inferno`). Writes OUT/{get,eq}.svg, OUT/{get,eq}.folded and
# OUT/{get,eq}.top.txt (the hottest symbols, self time).
#
#   SCIMHUB_BIN=target/release/scimhub OUT=docs/performance/after bash scripts/profile-reads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SCIMHUB_BIN:-./target/release/scimhub}
OUT=${OUT:-results/profile-$(date +%Y%m%d-%H%M%S)}
USERS=${USERS:-2000}
SECS=${SECS:-6}
INFERNO=${INFERNO:-$(dirname "$(command -v inferno-flamegraph || echo /tmp/reads-tools/bin/x)")}
mkdir -p "$OUT"
WORK=$(mktemp -d)
. scripts/lib/server.sh
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_scimhub "$BIN" "$WORK/profile.db" "$WORK/server.log"
ID=$(seed_users "$USERS")
declare -A URLS=(
  [get]="Users/$ID"
  [eq]="Users?filter=userName%20eq%20%22user000042@example.com%22"
)
for name in get eq; do
  url="http://127.0.0.1:$PORT/scim/v2/${URLS[$name]}"
  taskset -c 1 wrk -t1 -c16 -d1s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
  taskset -c 1 wrk -t1 -c16 -d$((SECS + 3))s -H "Authorization: Bearer $TOKEN" "$url" >"$WORK/$name.wrk" &
  WRK=$!
  sleep 1
  perf record -q -F 499 --call-graph dwarf,16384 -p "$PID" -o "$WORK/$name.data" -- sleep "$SECS" 2>/dev/null
  wait $WRK
  awk -v n="$name" '/^Requests\/sec/ { printf "%s: %s req/s (while sampled)\n", n, $2 }' "$WORK/$name.wrk"
  perf script -i "$WORK/$name.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" >"$OUT/$name.folded"
  "$INFERNO/inferno-flamegraph" --minwidth 0.5 --title "scimhub $name (${URLS[$name]%%\?*})" <"$OUT/$name.folded" >"$OUT/$name.svg"
  perf report -i "$WORK/$name.data" --no-children -g none --percent-limit 0.7 --sort dso,sym --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep '%' | head -40 >"$OUT/$name.top.txt"
done
echo "profiles in $OUT"
