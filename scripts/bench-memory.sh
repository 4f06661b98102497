#!/usr/bin/env bash
# Resident memory of `scimhub serve` on SQLite at USERS users and NGROUPS groups of GROUP_SIZE
# members: RSS after loading (and the peak, VmHWM), then after a read load (get by id, filter eq,
# a deep page, a group with members) with plain wrk. Loads through the SCIM API (Python 3 stdlib).
#
#   SCIMHUB_BIN=target/release/scimhub bash scripts/bench-memory.sh
#   USERS=100000 NGROUPS=1000 GROUP_SIZE=100 bash scripts/bench-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
NGROUPS=${NGROUPS:-1000}
GROUP_SIZE=${GROUP_SIZE:-100}
BIN=${SCIMHUB_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -p scim-server
  BIN=./target/release/scimhub
fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
WORK=$(mktemp -d)
. scripts/lib/server.sh
trap 'kill ${PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_scimhub "$BIN" "$WORK/memory.db" "$WORK/server.log"
# RSS in parts: RssAnon is the process's own memory; RssFile counts the SQLite file's pages the
# process has mapped (mmap_size, store/conn.rs) once per connection that touched them, and
# Pss_File each of them once: the kernel's page cache, shared and reclaimable, not memory the
# process allocated.
rss() {
  awk -v what="$1" '/^VmRSS|^VmHWM|^RssAnon|^RssFile|^Pss_File/ { v[$1]=$2 }
    END { printf "%-34s RSS %6.1f MiB (own %6.1f, mapped file %6.1f, of it distinct %6.1f), peak %6.1f MiB\n",
          what, v["VmRSS:"]/1024, v["RssAnon:"]/1024, v["RssFile:"]/1024, v["Pss_File:"]/1024, v["VmHWM:"]/1024 }' \
    "/proc/$PID/status" "/proc/$PID/smaps_rollup"
}
rss "started (empty database)"
taskset -c 1 python3 - "$PORT" "$TOKEN" "$USERS" "$NGROUPS" "$GROUP_SIZE" "$WORK" <<'PY'
import http.client, json, sys, threading
port, token, users, groups, size, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
ids = [None] * users
def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), H)
    r = conn.getresponse(); data = r.read()
    if r.status != 201: raise SystemExit(f"{path}: {r.status} {data[:200]!r}")
    return json.loads(data)["id"]
def load_users(t, n):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    for i in range(t, users, n):
        ids[i] = post(c, "/scim/v2/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"user{i:06d}@example.com", "externalId": f"E{i:06d}",
            "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"}, "title": "Engineer",
            "emails": [{"value": f"user{i:06d}@example.com", "type": "work", "primary": True}]})
def load_groups(t, n):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    for g in range(t, groups, n):
        members = [{"value": ids[(g * size + k) % users]} for k in range(size)]
        post(c, "/scim/v2/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                    "displayName": f"group{g:04d}", "members": members})
for target in (load_users, load_groups):
    ts = [threading.Thread(target=target, args=(t, 8)) for t in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
open(f"{work}/ids", "w").write(ids[users // 2])
PY
rss "loaded ($USERS users, $NGROUPS groups)"
ID=$(cat "$WORK/ids")
GID=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/scim/v2/Groups?filter=displayName%20eq%20%22group0001%22&excludedAttributes=members" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Resources"][0]["id"])')
for url in "Users/$ID" "Users?filter=userName%20eq%20%22user000042@example.com%22" \
  "Users?startIndex=$((USERS / 2))&count=100" "Groups/$GID"; do
  taskset -c 1 wrk -t1 -c16 -d5s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/scim/v2/$url" \
    | awk -v u="$url" '/^Requests\/sec/ { printf "  read load %-60s %10s req/s\n", u, $2 }'
done
rss "after the read load"
