#!/usr/bin/env bash
# Instructions per SCIM create, counted by valgrind's callgrind: far steadier than CPU time (the
# same run twice on a quiet machine agreed within 0.2 %), for comparing builds where CPU-time
# benchmarks are too noisy (issue 15's "within 10 % of the build before"). Not entirely free of
# timing: how many writes the group commit gathers per transaction depends on scheduling, and
# the per-transaction work (commit, the audit chain's head) is shared among them; so compare
# builds in one run, in the same conditions, and with the default run lengths.
#
# For each binary: a fresh SQLite database, 200 creates to warm up, then a run of N1 and a run of
# N2 creates from 16 client threads; (instructions(N2) - instructions(N1)) / (N2 - N1) is the cost
# of one create without the start-up. User-space instructions only: the kernel's share (WAL
# writes) is not counted, and valgrind's CPU has no SHA extensions, so SHA-256 runs in software
# there (the native build uses SHA-NI): read a difference in hashing accordingly.
#
#   bash scripts/bench-instructions.sh target/release/scimhub /path/to/other/scimhub
#   N1=1000 N2=3000 bash scripts/bench-instructions.sh BIN...
#   KEEP_CG=/tmp/create bash scripts/bench-instructions.sh BIN   # keeps /tmp/create-N.out for callgrind_annotate
#   WHAT=get bash scripts/bench-instructions.sh BIN...           # instructions per GET of a user by id
#   WHAT=patch bash scripts/bench-instructions.sh BIN...         # per PATCH of `active` (each one a change)
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres WHAT=patch bash scripts/bench-instructions.sh BIN
#       # on a fresh PostgreSQL database per run (created and dropped beside the URL's database);
#       # the hub's instructions only: PostgreSQL's backends are not counted
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/server.sh
N1=${N1:-1000}
N2=${N2:-3000}
WHAT=${WHAT:-create}   # or get: GETs of one user by id; patch: PATCHes of active
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
[ $# -gt 0 ] || { echo "usage: $0 SCIMHUB_BIN..." >&2; exit 2; }
WORK=$(mktemp -d)
PG_DBS=""
cleanup() {
  kill ${VPID:-} 2>/dev/null || true
  for db in $PG_DBS; do
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Sends $3 requests from 16 threads to the server on port $1: `create` makes users named
# $4NNNNNNN, `get` reads the first user the server lists by id, `patch` flips `active` on the
# first 160 (each thread its own ten, in turn).
load() {
  python3 - "$1" "$TOKEN" "$2" "$3" "${4:-}" <<'PY'
import http.client, json, sys, threading
port, token, kind, n, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
if kind in ("get", "patch"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", "/scim/v2/Users?count=160", headers=H)
    uids = [r["id"] for r in json.loads(c.getresponse().read())["Resources"]]
    uid = uids[0]
failed = []
def work(t):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for i in range(t, n, 16):
        if kind == "get":
            c.request("GET", f"/scim/v2/Users/{uid}", headers=H)
            want = 200
        elif kind == "patch":
            # Thread t PATCHes its own users (t, t+16, ...), each one's active flipped every
            # time, so every PATCH changes something and no two threads wait for one row.
            u = uids[t + 16 * ((i // 16) % (len(uids) // 16))]
            active = (i // len(uids)) % 2 == 1
            c.request("PATCH", f"/scim/v2/Users/{u}", json.dumps({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": active}]}), H)
            want = 200
        else:
            c.request("POST", "/scim/v2/Users", json.dumps({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"{tag}{i:07d}@example.com",
                "name": {"givenName": "Barbara", "familyName": "Jensen"}, "title": "Tour Guide",
                "emails": [{"value": f"{tag}{i:07d}@example.com", "type": "work", "primary": True}],
                "active": True}), H)
            want = 201
        r = c.getresponse(); r.read()
        if r.status != want: failed.append(r.status)
threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
for t in threads: t.start()
for t in threads: t.join()
if failed: raise SystemExit(f"{len(failed)} {kind} requests failed: {failed[:5]}")
PY
}

# Total instructions of a server run that makes $2 creates (or GETs) after the warm-up.
count() {
  local bin=$1 n=$2 dir=$WORK/run-$RANDOM
  mkdir -p "$dir"
  PORT=$(free_port)
  local url="sqlite://$dir/x.db"
  if [ -n "${DATABASE_URL:-}" ]; then
    local db="scimhub_instr_$(date +%s%N)"
    psql -q "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
    PG_DBS="$PG_DBS $db"
    url="${DATABASE_URL%/*}/$db"
  fi
  RUST_LOG=warn SCIMHUB_BOOTSTRAP_TOKEN=$TOKEN valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$bin" serve --bind "127.0.0.1:$PORT" \
    --database-url "$url" >"$dir/log" 2>&1 &
  VPID=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  load "$PORT" create 200 warm
  if [ "$WHAT" = get ] || [ "$WHAT" = patch ]; then
    load "$PORT" "$WHAT" 320
    load "$PORT" "$WHAT" "$n"
  else
    load "$PORT" create "$n" user
  fi
  kill "$VPID"
  wait "$VPID" 2>/dev/null || true
  awk '/Collected :/ { print $NF }' "$dir/log" | tr -d ,
  if [ -n "${KEEP_CG:-}" ]; then cp "$dir/callgrind.out" "$KEEP_CG-$n.out"; fi
}

printf "%-60s %16s\n" "binary" "instructions/$WHAT"
for bin in "$@"; do
  a=$(count "$bin" "$N1")
  b=$(count "$bin" "$N2")
  printf "%-60s %16s\n" "$bin" "$(python3 -c "print(round(($b - $a) / ($N2 - $N1)))")"
done
