# Shared by the benchmark and profiling scripts (sourced, not run): a free port, a scimhub
# server on CPU 0 over a SQLite file, and users seeded through the SCIM API.
#
#   . "$(dirname "$0")/lib/server.sh"
#   start_scimhub "$BIN" "$WORK/x.db" "$WORK/server.log" [NAME=VALUE...]   # sets PORT and PID
#   ID=$(seed_users "$USERS")        # USERS users user000000@example.com..., prints the middle id

# A port nothing listens on now (the kernel's pick; the scripts never use fixed ports).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A bootstrap token unique to this run.
TOKEN=${TOKEN:-"bench-token-$(date +%s%N)-$(date +%s%N)"}

# Starts BIN serve on a free port, pinned to CPU 0, on the SQLite file DB, appending its output
# to LOG, with any NAME=VALUE arguments added to its environment; waits until /healthz answers.
# Sets PORT and PID.
start_scimhub() {
  local bin=$1 db=$2 log=$3
  shift 3
  PORT=$(free_port)
  env RUST_LOG=warn SCIMHUB_BOOTSTRAP_TOKEN="$TOKEN" "$@" taskset -c 0 "$bin" serve \
    --bind "127.0.0.1:$PORT" --database-url "sqlite://$db" >>"$log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "scimhub did not answer on port $PORT; its log:" >&2
  tail -20 "$log" >&2
  return 1
}

# Creates N users (user000000@example.com, ...) one by one from CPU 1 against the server on
# PORT and prints the id of the middle one.
seed_users() {
  taskset -c 1 python3 - "$PORT" "$TOKEN" "$1" <<'PY'
import http.client, json, sys
port, token, users = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
for i in range(users):
    c.request("POST", "/scim/v2/Users", json.dumps({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": f"user{i:06d}@example.com", "name": {"givenName": "G", "familyName": "F"},
        "title": "Engineer", "emails": [{"value": f"user{i:06d}@example.com", "type": "work"}]}), H)
    r = c.getresponse(); body = json.loads(r.read())
    if r.status != 201:
        raise SystemExit(f"create user{i:06d}: {r.status} {body}")
    if i == users // 2: mid = body["id"]
print(mid)
PY
}
