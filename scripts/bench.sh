#!/usr/bin/env bash
# Load benchmark of scimhub with the SCIM load harness in scripts/bench-harness/ (Python 3, stdlib
# only, driving wrk with a Lua script; wrk is installed from Debian when missing).
# Builds the release binary, starts it on a fresh SQLite database pinned to CPU 0, drives it from
# CPU 1, and leaves results in results/bench-<date>/ (results.json, table.txt).
#
#   bash scripts/bench.sh                      # 100,200 users, a 100,000-member group
#   USERS=10000 MEMBERS=5000 bash scripts/bench.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench bash scripts/bench.sh
#   SCIMHUB_BIN=/path/to/release/scimhub bash scripts/bench.sh   # skip the build
#   bash scripts/bench.sh ceiling              # get-by-id with plain wrk against the static
#                                              # actix stub (scim-server/examples/ceiling.rs)
#                                              # and against scimhub, alternating, ROUNDS
#                                              # rounds (3): the median share of the ceiling
#   bash scripts/bench.sh both                 # the same phases on SQLite, then on a fresh
#                                              # PostgreSQL database (created and dropped on
#                                              # PG_ADMIN_URL, default the machine's PostgreSQL
#                                              # at 127.0.0.1:5432), one table side by side:
#                                              # req/s, hub CPU per request and the PostgreSQL
#                                              # backends' own CPU per request, per phase
#
# Figures are only meaningful on a quiet machine: the script waits (bounded) for one.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=$PWD/scripts/bench-harness
# 200 users beyond the group's 100,000 members: the harness's single-member adds need users that
# are not members yet (with exactly as many users as members it re-adds members and its own
# count check fails).
USERS=${USERS:-100200}
MEMBERS=${MEMBERS:-100000}
CONNECTIONS=${CONNECTIONS:-16}
OUT=${OUT:-results/bench-$(date +%Y%m%d-%H%M%S)}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
BIN=${SCIMHUB_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -p scim-server
  BIN=./target/release/scimhub
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Plain wrk, one thread on CPU 1, 16 connections, DURATION seconds: prints requests/s.
plain_wrk() {
  taskset -c 1 wrk -t1 -c16 -d"${DURATION:-10}s" "$@" | awk '/^Requests\/sec/ { print $2 }'
}

if [ "${1:-}" = ceiling ]; then
  # ROUNDS rounds (default 3), each the stub then scimhub, DURATION seconds each: the host's
  # speed drifts between runs (the stub alone varied by a quarter on one machine), so each
  # round's share compares neighbours, and the median round is the figure.
  STUB=${CEILING_BIN:-}
  if [ -z "$STUB" ]; then
    cargo build --release -p scim-server --example ceiling
    STUB=./target/release/examples/ceiling
  fi
  WORK=$(mktemp -d)
  trap 'kill ${SPID:-} ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
  "$HARNESS/wait-quiet" 0.25 "${QUIET_WAIT:-300}" || true
  PORT=$(free_port)
  TOKEN="bench-token-$(date +%s%N)-$(date +%s%N)"
  RUST_LOG=warn SCIMHUB_BOOTSTRAP_TOKEN=$TOKEN taskset -c 0 "$BIN" serve --bind "127.0.0.1:$PORT" \
    --database-url "sqlite://$WORK/ceiling.db" >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  ID=$(curl -fsS -X POST "http://127.0.0.1:$PORT/scim/v2/Users" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/scim+json' \
    -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen@example.com","name":{"givenName":"Barbara","familyName":"Jensen"},"title":"Tour Guide","emails":[{"value":"bjensen@example.com","type":"work","primary":true}]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  URL="http://127.0.0.1:$PORT/scim/v2/Users/$ID"
  ROUNDS_OUT=""
  for _ in $(seq 1 "${ROUNDS:-3}"); do
    SPORT=$(free_port)
    taskset -c 0 "$STUB" "127.0.0.1:$SPORT" >"$WORK/stub.log" 2>&1 &
    SPID=$!
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$SPORT/scim/v2/Users/x" >/dev/null 2>&1 && break; sleep 0.1; done
    plain_wrk -d1s "http://127.0.0.1:$SPORT/scim/v2/Users/x" >/dev/null # warm-up
    CEIL=$(plain_wrk "http://127.0.0.1:$SPORT/scim/v2/Users/x")
    kill $SPID; wait $SPID 2>/dev/null || true
    plain_wrk -d1s -H "Authorization: Bearer $TOKEN" "$URL" >/dev/null # warm-up
    HUB=$(plain_wrk -H "Authorization: Bearer $TOKEN" "$URL")
    ROUNDS_OUT="$ROUNDS_OUT $CEIL:$HUB"
  done
  python3 - $ROUNDS_OUT <<'PY'
import statistics, sys
rounds = [tuple(map(float, r.split(":"))) for r in sys.argv[1:]]
for n, (ceil, hub) in enumerate(rounds, 1):
    print(f"round {n}: static actix stub (1 worker, 1 KB User) {ceil:,.0f} req/s, "
          f"scimhub GET /Users/{{id}} (SQLite) {hub:,.0f} req/s = {100 * hub / ceil:.0f}%")
shares = sorted(100 * hub / ceil for ceil, hub in rounds)
print(f"share of the ceiling: median {statistics.median(shares):.0f}% "
      f"(rounds {', '.join(f'{s:.0f}%' for s in shares)})")
PY
  exit 0
fi

# One run of the harness against a fresh server on database URL $1, results in $2; the other
# arguments go to the harness.
run_one() {
  local url=$1 out=$2
  shift 2
  local port token pid
  port=$(free_port)
  token="bench-token-$(date +%s%N)-$(date +%s%N)"
  # The harness reads the big group back with its members (its validation), so the member bound
  # (max_group_members, 10,000 by default) is raised above the group's size for the run.
  RUST_LOG=${RUST_LOG:-warn} SCIMHUB_BOOTSTRAP_TOKEN=$token SCIMHUB_MAX_GROUP_MEMBERS=$((MEMBERS + 1000)) taskset -c 0 "$BIN" serve \
    --bind "127.0.0.1:$port" --database-url "$url" >"$WORK/server.log" 2>&1 &
  pid=$!
  SERVER_PIDS="$SERVER_PIDS $pid"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  mkdir -p "$out"
  "$HARNESS/wait-quiet" 0.25 "${QUIET_WAIT:-300}" || true
  "$HARNESS/scim-bench" "http://127.0.0.1:$port/scim/v2" --token "$token" \
    -n "$USERS" -c "$CONNECTIONS" -m "$MEMBERS" --client-cpus 1 --server-pid "$pid" --out "$out" "$@"
  # The server's counters after the run (write batches, among others), beside the results.
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" >"$out/metrics.txt" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

WORK=$(mktemp -d)
SERVER_PIDS=""
PG_DB=""
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cleanup() {
  for p in $SERVER_PIDS; do kill "$p" 2>/dev/null || true; done
  if [ -n "$PG_DB" ]; then
    sleep 0.5
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${1:-}" = both ]; then
  shift
  command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client; }
  PG_DB="scimhub_bench_$(date +%s)_$$"
  psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
  PG_URL="${PG_ADMIN_URL%/*}/$PG_DB"
  run_one "sqlite://$WORK/bench.db" "$OUT/sqlite" --label sqlite "$@"
  run_one "$PG_URL" "$OUT/postgres" --label postgres --pg-db "$PG_DB" "$@"
  python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
runs = {b: json.load(open(os.path.join(out, b, "results.json"))) for b in ("sqlite", "postgres")}
by = {b: {p["phase"]: p for p in r["phases"] if not p.get("failed")} for b, r in runs.items()}
phases = [p["phase"] for p in runs["sqlite"]["phases"]]
phases += [p for p in by["postgres"] if p not in phases]
def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
lines = ["| phase | SQLite req/s | SQLite hub us/req | PostgreSQL req/s | PG hub us/req "
         "| PG backends us/req | PG backends cores | hub us/req PG/SQLite |",
         "|" + "---|" * 8]
for ph in phases:
    s, p = by["sqlite"].get(ph, {}), by["postgres"].get(ph, {})
    su, pu = s.get("server_cpu_us_per_req"), p.get("server_cpu_us_per_req")
    ratio = f"{pu / su:.2f}x" if su and pu else "-"
    lines.append(f"| {ph} | {f(s.get('rps'))} | {f(su)} | {f(p.get('rps'))} | {f(pu)} "
                 f"| {f(p.get('pg_cpu_us_per_req'))} | {f(p.get('pg_cores'), '{:.2f}')} | {ratio} |")
table = "\n".join(lines) + "\n"
open(os.path.join(out, "both.md"), "w").write(table)
print(table)
PY
  echo "results in $OUT (sqlite/, postgres/, both.md)" >&2
  exit 0
fi

DATABASE_URL=${DATABASE_URL:-sqlite://$WORK/bench.db}
run_one "$DATABASE_URL" "$OUT" "$@"
echo "results in $OUT" >&2
