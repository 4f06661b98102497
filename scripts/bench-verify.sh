#!/usr/bin/env bash
# Post-change verification of many leavers across the stand-ins: the scimhub binary (release)
# with AWS IAM -> moto_server (signature checking on), LDAP -> slapd, SCIM -> python
# scim2-server, and the in-process memory connector; `[verification] delay = "1s"`. LEAVERS
# (default 1000) joiners are provisioned, then that many leavers sent; reports the total time
# and the time per leaver until every leaver is verified on every system (docs/benchmarks.md).
#
#   bash scripts/bench-verify.sh            # LEAVERS=200 bash scripts/bench-verify.sh
#
# Installs the stand-ins first (connectors/tests/support_standins/install.sh, idempotent, needs
# root); scim2-server installs itself into ~/.cache/scimhub-standins/scim2-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash connectors/tests/support_standins/install.sh
cargo build --release -q -p scim-server --bin scimhub
cargo build --release -q -p scim-server --example bench_verify
TARGET=$(cd "${CARGO_TARGET_DIR:-target}" 2>/dev/null && pwd || echo "$PWD/target")
SCIMHUB_BIN="$TARGET/release/scimhub" LEAVERS=${LEAVERS:-1000} \
  "$TARGET/release/examples/bench_verify"
