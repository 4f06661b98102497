#!/usr/bin/env bash
# What a substring filter (`co`) costs on SQLite at USERS users, beside `eq` and `sw` on the same
# attribute: plain wrk (1 thread, 16 connections, CPU 1) against the server on CPU 0, DURATION
# seconds per figure, req/s and the server's CPU per request. `co` cannot use an index range:
# the page reads rows until it has `count + 1` matches and the total counts every match, so a
# rare substring reads the whole table. The figures decide whether an n-gram index (SQLite FTS5
# trigram, PostgreSQL pg_trgm) would pay for what it adds to every create and update
# (docs/performance.md, "Step 3").
#
#   SCIMHUB_BIN=target/release/scimhub bash scripts/bench-contains.sh
#   USERS=20000 DURATION=3 bash scripts/bench-contains.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SCIMHUB_BIN:-./target/release/scimhub}
USERS=${USERS:-100000}
DURATION=${DURATION:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
WORK=$(mktemp -d)
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
. scripts/lib/server.sh
start_scimhub "$BIN" "$WORK/contains.db" "$WORK/server.log"
seed_users "$USERS" >/dev/null
q() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
# user000000@example.com ... : "00042@" is in one userName, "user0999" in 100, "example" in all.
NAMES=("eq (1 match)" "sw \"user0999\" (100)" "co \"00042@\" (1)" "co \"user0999\" (100)"
  "co \"example\" (all)" "co \"zzz\" (none)")
FILTERS=('userName eq "user000042@example.com"' 'userName sw "user0999"' 'userName co "00042@"'
  'userName co "user0999"' 'userName co "example"' 'userName co "zzz"')
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
printf "%-26s %12s %14s %14s\n" "filter ($USERS users)" "req/s" "server µs/req" "totalResults"
for i in "${!FILTERS[@]}"; do
  path="/scim/v2/Users?count=10&filter=$(q "${FILTERS[$i]}")"
  total=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["totalResults"])')
  taskset -c 1 wrk -t1 -c16 -d1s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path" >/dev/null
  before=$(ticks)
  out=$(taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path")
  after=$(ticks)
  reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
  rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
  us=$(python3 -c "print(round(($after - $before) / $HZ * 1e6 / max($reqs, 1)))")
  printf "%-26s %12s %14s %14s\n" "${NAMES[$i]}" "$rps" "$us" "$total"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores)"
