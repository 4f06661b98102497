#!/usr/bin/env bash
# Leaver latency across every connector: the scimhub binary (release) with the end-to-end policy
# (SCIM -> a second scimhub, AWS IAM -> moto_server with signature checking, AD -> Samba AD DC
# (needs root and 127.0.0.1:389/636 free), LDAP -> slapd, GitHub -> emulate behind prism,
# webhook -> a verifying receiver); LEAVERS (default 100)
# joiners, then that many leavers one at a time; reports p50/p99 of the time from each
# leaver's SCIM response to its last downstream operation done (engine_outbox.finished).
#
#   bash scripts/bench-leavers.sh            # LEAVERS=200 bash scripts/bench-leavers.sh
#
# Installs the stand-ins first (connectors/tests/support_standins/install.sh, idempotent, needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash connectors/tests/support_standins/install.sh
cargo build --release -q -p scim-server --bin scimhub
cargo build --release -q -p scim-server --example bench_leavers
TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
SCIMHUB_BIN="$TARGET/release/scimhub" LEAVERS=${LEAVERS:-100} \
  "$TARGET/release/examples/bench_leavers"
