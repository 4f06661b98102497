#!/usr/bin/env bash
# What a SQLite create costs for what it stores (issue 18's create target): the harness's create
# phase on the schema as shipped, against the same build on a schema stripped to the B-trees
# correctness needs (the primary key, the unique constraints, the foreign-key index and the audit
# chain's sequence): the non-unique indexes that serve only filters and sorts are dropped before
# the load. The difference is what those indexes cost; the stripped figure is the most a create
# can reach while it stores the same rows. Variants alternate, ROUNDS times, each on a fresh
# database with the server on CPU 0 and the harness on CPU 1. "KB written" is the server's
# `wchar` (/proc/PID/io) per create: its write()s to the WAL, the checkpoint's copy into the
# database file, and log lines; the HTTP answers go out by send() and are not counted.
#
# With WAL=1 each run also copies the database and its WAL mid-phase (the server paused for the
# copy) and prints the WAL's frames per commit by B-tree: a commit rewrites each index's right
# edge, and its frames are what the commit and the checkpoint copy.
#
#   bash scripts/bench-create-floor.sh                      # target/release/scimhub, 2 rounds
#   SCIMHUB_BIN=... N=40000 ROUNDS=3 WAL=1 bash scripts/bench-create-floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SCIMHUB_BIN:-./target/release/scimhub}
N=${N:-40000}
ROUNDS=${ROUNDS:-2}
WAL=${WAL:-0}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3; }
WORK=$(mktemp -d)
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
. scripts/lib/server.sh

# The non-unique indexes of the tables a create writes, except the foreign-key index that
# deleting a resource needs (resource_values -> resources, ON DELETE CASCADE).
STRIP_QUERY="SELECT 'DROP INDEX ' || name || ';' FROM sqlite_schema WHERE type = 'index'
  AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'
  AND tbl_name IN ('resources', 'resource_values', 'engine_audit')
  AND name <> 'resource_values_resource_idx'"

frames_by_btree() { # DB WAL: the WAL's frames per commit by B-tree (SQLite's dbstat)
  python3 - "$1" "$2" <<'PY'
import collections, sqlite3, struct, sys
db, wal = sys.argv[1], sys.argv[2]
data = open(wal, "rb").read()
page = struct.unpack(">I", data[8:12])[0]
salt = data[16:24]
frames, commits, off = [], 0, 32
while off + 24 + page <= len(data) and data[off + 8:off + 16] == salt:
    pgno, size_after = struct.unpack(">II", data[off:off + 8])
    frames.append(pgno)
    commits += size_after != 0
    off += 24 + page
owner = dict((p, n) for n, p in sqlite3.connect(db).execute("SELECT name, pageno FROM dbstat"))
by = collections.Counter(owner.get(p, "(free)") for p in frames)
print(f"    WAL: {len(frames)} frames of {page} bytes in {commits} commits, "
      f"{len(frames) / max(commits, 1):.1f} per commit")
for name, n in by.most_common():
    print(f"    {n / max(commits, 1):6.2f}  {name}")
PY
}

run() { # LABEL STRIP(0/1)
  local label=$1 strip=$2 db="$WORK/$1.db"
  rm -f "$db"*
  if [ "$strip" = 1 ]; then
    start_scimhub "$BIN" "$db" "$WORK/server.log"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    sqlite3 "$db" "$(sqlite3 "$db" "$STRIP_QUERY")"
  fi
  start_scimhub "$BIN" "$db" "$WORK/server.log"
  local written0 written1
  written0=$(awk '/^wchar/ {print $2}' "/proc/$PID/io")
  scripts/bench-harness/scim-bench "http://127.0.0.1:$PORT/scim/v2" --token "$TOKEN" -n "$N" \
    -c 16 -m 100 --client-cpus 1 --server-pid "$PID" --out "$WORK/$label" --phases a \
    >"$WORK/$label.log" 2>&1 &
  local harness=$!
  if [ "$WAL" = 1 ]; then
    sleep 3
    kill -STOP "$PID"
    cp "$db" "$WORK/copy.db"; cp "$db-wal" "$WORK/copy.db-wal"; cp "$db-wal" "$WORK/copy.wal"
    kill -CONT "$PID"
  fi
  wait "$harness" || { tail -20 "$WORK/$label.log" >&2; return 1; }
  written1=$(awk '/^wchar/ {print $2}' "/proc/$PID/io")
  kill "$PID"; wait "$PID" 2>/dev/null || true
  python3 - "$WORK/$label/results.json" "$label" "$(( (written1 - written0) / N ))" <<'PY'
import json, sys
r = next(p for p in json.load(open(sys.argv[1]))["phases"] if p["phase"].startswith("a."))
print(f"{sys.argv[2]:10s} {r['rps']:10.0f} req/s {r.get('server_cpu_us_per_req') or 0:8.1f} us/create "
      f"{int(sys.argv[3]) / 1024:6.1f} KB written/create")
PY
  if [ "$WAL" = 1 ]; then frames_by_btree "$WORK/copy.db" "$WORK/copy.wal"; fi
}

echo "indexes dropped in 'stripped':"
start_scimhub "$BIN" "$WORK/probe.db" "$WORK/server.log"
kill "$PID"; wait "$PID" 2>/dev/null || true
sqlite3 "$WORK/probe.db" "$STRIP_QUERY" | sed 's/^DROP INDEX /  /; s/;$//'
for round in $(seq 1 "$ROUNDS"); do
  run "shipped" 0
  run "stripped" 1
done
