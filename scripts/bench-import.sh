#!/usr/bin/env bash
# Roster import speed (issue #16: 100,000 rows in under 60 s on SQLite): generates ROWS (default
# 100000) CSV rows with core attributes (externalId, userName, name, work email, title, active),
# enterprise ones (employeeNumber, department), one custom-extension column of type integer and
# a manager column (by employee number: every 8th row's manager comes LATER in the file, the
# rest earlier), then times `scimhub import` on a fresh SQLite file with a release build and a
# policy that grants every user one entitlement (so each row is planned by the engine and gets
# an outbox operation and audit entries).
#
#   bash scripts/bench-import.sh            # ROWS=20000 bash scripts/bench-import.sh
#   KEEP=1 ...                              # keep the work directory (printed)
#   PROFILE=1 ...                           # run the import under `perf record` (perf needed)
#   SCIMHUB_BIN=target/release/scimhub ...  # use that binary, no build
#   PLAIN=1 ...                             # no extension column, every manager earlier in the
#                                           # file (what builds before typed cells and the second
#                                           # pass can import: for before/after comparisons)
#
# Prints the import's summary line, the wall time and the peak RSS (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
if [ -n "${SCIMHUB_BIN:-}" ]; then
  BIN=$SCIMHUB_BIN   # a binary built already (no build step)
else
  nice -n 5 cargo build --release -q -p scim-server --bin scimhub
  TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
  BIN="$TARGET/release/scimhub"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scimhub-bench-import.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
EXT="urn:example:acme:2.0:User"

cat >"$WORK/acme.schema.json" <<EOF
{"id": "$EXT", "name": "Acme",
 "attributes": [{"name": "level", "type": "integer"}, {"name": "costCenter", "type": "string"}]}
EOF
cat >"$WORK/config.toml" <<EOF
[[schema_extensions]]
file = "$WORK/acme.schema.json"
resource_type = "User"
EOF
cat >"$WORK/policy.toml" <<'EOF'
[[connector]]
name = "chat"
type = "memory"

[[profile]]
name = "everyone"
match = 'userName pr'
grants = [{ connector = "chat", kind = "channel", id = "general" }]
EOF

python3 - "$ROWS" "$EXT" "${PLAIN:-}" >"$WORK/roster.csv" <<'EOF'
import csv, sys
rows, ext, plain = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
w = csv.writer(sys.stdout, lineterminator="\n")
head = ["externalId", "userName", "name.givenName", "name.familyName",
        'emails[type eq "work"].value', "title", "active",
        f"{ent}:employeeNumber", f"{ent}:department", f"{ext}:level", "manager"]
if plain:
    head.remove(f"{ext}:level")
w.writerow(head)
depts = ["Engineering", "Sales", "Finance", "Support", "Legal"]
for i in range(1, rows + 1):
    if i <= 10:
        mgr = ""
    elif i % 8 == 0 and i + 5 <= rows and not plain:
        mgr = str(i + 5)  # a manager further down the file (second pass)
    else:
        mgr = str(i // 10)
    row = [f"E{i:06d}", f"user{i:06d}", f"Given{i}", f"Family{i}",
           f"user{i:06d}@example.com", "Engineer", "true", str(i),
           depts[i % len(depts)], str(i % 9 + 1), mgr]
    if plain:
        del row[9]
    w.writerow(row)
EOF

DB="sqlite://$WORK/bench.db"
echo "rows: $ROWS; work dir: $WORK" >&2
run=("$BIN" import "$WORK/roster.csv" --client hris --policy "$WORK/policy.toml"
     --config "$WORK/config.toml" --database-url "$DB")
# The database is created (migrations) before the clock starts.
"$BIN" migrate --database-url "$DB" >/dev/null
start=$(date +%s.%N)
if [ -n "${PROFILE:-}" ]; then
  perf record -F 499 -g -o "$WORK/perf.data" -- "${run[@]}" >"$WORK/report.txt" 2>"$WORK/stderr.txt"
  perf report -i "$WORK/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
    | grep -v '^$' | head -120 >"$WORK/perf.txt" || true
  echo "perf report: $WORK/perf.txt" >&2
else
  /usr/bin/time -v "${run[@]}" >"$WORK/report.txt" 2>"$WORK/stderr.txt"
fi
end=$(date +%s.%N)
tail -n 1 "$WORK/report.txt"
echo "refused rows: $(grep -c ': refused' "$WORK/report.txt" || true)"
awk -v s="$start" -v e="$end" -v n="$ROWS" \
  'BEGIN { printf "wall: %.1f s (%.0f rows/s)\n", e - s, n / (e - s) }'
grep -E 'Maximum resident set size' "$WORK/stderr.txt" || true
