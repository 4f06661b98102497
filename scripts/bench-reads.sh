#!/usr/bin/env bash
# Read throughput with and without worker-owned SQLite readers, interleaved in one run on one
# binary (`SCIMHUB_DB_WORKER_READERS=false` is the pool path as before): plain wrk (1 thread,
# 16 connections, CPU 1) against the server on CPU 0, USERS users, ROUNDS rounds of
# pool/worker, DURATION seconds per figure.
#
#   SCIMHUB_BIN=target/release/scimhub ROUNDS=2 bash scripts/bench-reads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SCIMHUB_BIN:-./target/release/scimhub}
USERS=${USERS:-2000}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WORK=$(mktemp -d)
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
. scripts/lib/server.sh
start() { start_scimhub "$BIN" "$WORK/reads.db" "$WORK/server.log" SCIMHUB_DB_WORKER_READERS="$1"; }
start true
ID=$(seed_users "$USERS")
kill $PID; wait $PID 2>/dev/null || true
URLS=("Users/$ID" "Users?filter=userName%20eq%20%22user000042@example.com%22"
  "Users?filter=userName%20sw%20%22user00004%22" "Users?startIndex=1001&count=100")
NAMES=("get by id" "filter eq" "filter sw (10 matches)" "page of 100 at 1,001")
printf "%-24s" "read"; for r in $(seq 1 "$ROUNDS"); do printf "%12s%12s" "pool#$r" "worker#$r"; done; echo
declare -A FIG
for r in $(seq 1 "$ROUNDS"); do
  for mode in false true; do
    start $mode
    for i in "${!URLS[@]}"; do
      url="http://127.0.0.1:$PORT/scim/v2/${URLS[$i]}"
      taskset -c 1 wrk -t1 -c16 -d1s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
      FIG[$r,$mode,$i]=$(taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$url" | awk '/^Requests\/sec/ { printf "%.0f", $2 }')
    done
    kill $PID; wait $PID 2>/dev/null || true
  done
done
for i in "${!URLS[@]}"; do
  printf "%-24s" "${NAMES[$i]}"
  for r in $(seq 1 "$ROUNDS"); do printf "%12s%12s" "${FIG[$r,false,$i]}" "${FIG[$r,true,$i]}"; done; echo
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores; others' builds count as noise)"
