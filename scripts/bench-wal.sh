#!/usr/bin/env bash
# The SQLite WAL's size under reads and writes together, with and without kept read snapshots
# (`db_reader_snapshot_ms`, store/local_reader.rs): a worker's reader that keeps its snapshot
# between reads holds a WAL read mark, and SQLite starts the WAL over only while none is held.
# Each setting gets a fresh database with USERS users, then DURATION seconds of plain wrk GETs by
# id (16 connections) and, at the same time, PATCH active=false/true on other users (4
# connections). The WAL file's size is sampled every half second; the largest and last sizes
# are printed, with the requests served.
#
#   SCIMHUB_BIN=target/release/scimhub DURATION=30 bash scripts/bench-wal.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SCIMHUB_BIN:-./target/release/scimhub}
USERS=${USERS:-500}
DURATION=${DURATION:-30}
SETTINGS=${SETTINGS:-"0 5"}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
WORK=$(mktemp -d)
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
. scripts/lib/server.sh

cat >"$WORK/patch.lua" <<'LUA'
-- PATCH active on the users listed in ids.txt, in turn.
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
local n, flip = 0, false
request = function()
  n = n % #ids + 1
  flip = not flip
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],' ..
    '"Operations":[{"op":"replace","path":"active","value":' .. tostring(flip) .. '}]}'
  return wrk.format("PATCH", "/scim/v2/Users/" .. ids[n],
    {["Content-Type"] = "application/scim+json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
LUA

printf "%-24s %12s %14s %14s %12s\n" "db_reader_snapshot_ms" "GET req/s" "PATCH req/s" "WAL max (KB)" "WAL end (KB)"
for ms in $SETTINGS; do
  rm -f "$WORK"/wal.db*
  start_scimhub "$BIN" "$WORK/wal.db" "$WORK/server.log" SCIMHUB_DB_READER_SNAPSHOT_MS="$ms"
  ID=$(seed_users "$USERS")
  curl -fsS "http://127.0.0.1:$PORT/scim/v2/Users?count=200&attributes=id" \
    -H "Authorization: Bearer $TOKEN" |
    python3 -c 'import json,sys; [print(r["id"]) for r in json.load(sys.stdin)["Resources"]]' \
      >"$WORK/ids.txt"
  : >"$WORK/sizes"
  (
    end=$((SECONDS + DURATION))
    while [ $SECONDS -lt $end ]; do
      stat -c %s "$WORK/wal.db-wal" 2>/dev/null >>"$WORK/sizes" || echo 0 >>"$WORK/sizes"
      sleep 0.5
    done
  ) &
  SAMPLER=$!
  IDS=$WORK/ids.txt TOKEN=$TOKEN taskset -c 1 wrk -t1 -c4 -d"${DURATION}s" -s "$WORK/patch.lua" \
    "http://127.0.0.1:$PORT" >"$WORK/patch.out" &
  PATCHER=$!
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/scim/v2/Users/$ID" >"$WORK/get.out"
  wait $PATCHER $SAMPLER
  kill $PID
  wait $PID 2>/dev/null || true
  python3 - "$ms" "$WORK/get.out" "$WORK/patch.out" "$WORK/sizes" <<'PY'
import re, sys
ms, get, patch, sizes = sys.argv[1:]
rate = lambda f: float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1))
s = [int(x) for x in open(sizes).read().split() if x.strip()]
print(f"{ms:<24} {rate(get):>12,.0f} {rate(patch):>14,.0f} {max(s) // 1024:>14,} {s[-1] // 1024:>12,}")
PY
done
