#!/usr/bin/env bash
# Drift reconciliation of one SCIM app holding ACCOUNTS accounts (default 100,000) that the hub
# knows nothing about: every account is listed over HTTP page by page, compared and stored as an
# orphan finding (the worst case: one finding row per account). The app is a second scimhub
# serving SCIM (a real SCIM server in its own process); the hub runs `scimhub reconcile` once.
# Prints the run's wall time and the reconciling process's peak RSS (GNU time), plus the
# findings stored. No timed assertion: a figure to report (docs/benchmarks.md).
#
#   bash scripts/bench-reconcile.sh                    # release build, 100,000 accounts
#   ACCOUNTS=20000 SCIMHUB_BIN=target/debug/scimhub bash scripts/bench-reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ACCOUNTS=${ACCOUNTS:-100000}
if [ -z "${SCIMHUB_BIN:-}" ]; then
  cargo build --release -q -p scim-server --bin scimhub
  TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
  SCIMHUB_BIN="$TARGET/release/scimhub"
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
app_pid=
cleanup() { [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

token=bench-reconcile-token-0123456789abcdef
SCIMHUB_BOOTSTRAP_TOKEN=$token RUST_LOG=warn "$SCIMHUB_BIN" serve --bind 127.0.0.1:0 \
  --database-url "sqlite://$work/app.db" >"$work/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$work/app.log" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/app.log" | head -n1)
[ -n "$addr" ] || { cat "$work/app.log" >&2; exit 1; }
base="http://$addr/scim/v2"

echo "loading $ACCOUNTS accounts into the app ($base) ..." >&2
python3 - "$base" "$token" "$ACCOUNTS" <<'EOF'
import json, sys, urllib.request
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for start in range(0, n, 1000):
    ops = [{"method": "POST", "path": "/Users", "bulkId": f"u{i}",
            "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                     "userName": f"user{i:07d}", "displayName": f"User {i}", "active": True}}
           for i in range(start, min(n, start + 1000))]
    body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                       "Operations": ops}).encode()
    req = urllib.request.Request(base + "/Bulk", body, {"Content-Type": "application/scim+json",
                                 "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=300) as r:
        out = json.load(r)
    bad = [o for o in out["Operations"] if not str(o.get("status", "")).startswith("2")]
    if bad:
        sys.exit(f"bulk failed: {bad[:2]}")
EOF

cat >"$work/policy.toml" <<EOF
[[connector]]
name = "app"
type = "scim"
settings = { base_url = "$base", timeout_ms = 60000 }
credentials = { token = { env = "BENCH_APP_TOKEN" } }
EOF
"$SCIMHUB_BIN" migrate --database-url "sqlite://$work/hub.db" >/dev/null 2>&1

echo "reconciling ..." >&2
BENCH_APP_TOKEN=$token RUST_LOG=warn /usr/bin/time -f 'wall %e s, peak RSS %M KiB' \
  "$SCIMHUB_BIN" reconcile --connector app --policy "$work/policy.toml" \
  --database-url "sqlite://$work/hub.db" >"$work/report.json" 2>"$work/time.txt" \
  || { cat "$work/time.txt" >&2; exit 1; }
python3 - "$work/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))[0]
print(f"listed {r['listed']}, findings opened {r['opened']}, counts {r['counts']}")
EOF
tail -n1 "$work/time.txt"
