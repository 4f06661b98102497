#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests on SQLite and PostgreSQL, connector
# tests against real stand-ins (installed here, idempotently: Debian slapd and Samba AD, moto,
# GitHub's emulator behind prism, scim2-server), the third-party SCIM conformance suite against a
# freshly started server, and a bounded fuzz run. Needs root for apt and the Samba AD ports.
#
#   bash scripts/test.sh            # everything
#   SKIP_FUZZ=1 bash scripts/test.sh
#
# PostgreSQL: uses $SCIMHUB_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test)
# and starts the local cluster if it is installed but not running. Without a reachable
# PostgreSQL the PostgreSQL half fails loudly rather than being skipped, unless
# SCIMHUB_TEST_NO_POSTGRES=1 is set (SQLite only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SCIMHUB_SHARED_DIR:-$ROOT/../shared}

log() { printf '\n== %s ==\n' "$*" >&2; }

# ---- PostgreSQL ---------------------------------------------------------------------------
if [ "${SCIMHUB_TEST_NO_POSTGRES:-0}" != 1 ]; then
  export SCIMHUB_TEST_POSTGRES_URL=${SCIMHUB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 >&2 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

# ---- connector stand-ins (slapd, Samba AD, moto, GitHub emulator + prism, scim2-server) --------
log "installing connector stand-ins"
bash connectors/tests/support_standins/install.sh

log "building"
cargo build --workspace --all-targets
# The SCIM connector's tests also provision into a second scimhub.
export SCIMHUB_BIN=$ROOT/target/debug/scimhub

# ---- conformance: scim2-tester against a freshly started server ---------------------------
if [ -x "$SHARED/conformance/run-scim2-tester.sh" ] || [ -f "$SHARED/conformance/run-scim2-tester.sh" ]; then
  log "conformance (scim2-tester)"
  CONF_DIR=$(mktemp -d)
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  TOKEN="conformance-$(date +%s%N)"
  SCIMHUB_BOOTSTRAP_TOKEN=$TOKEN ./target/debug/scimhub serve --bind "127.0.0.1:$PORT" \
      --database-url "sqlite://$CONF_DIR/conformance.db" >"$CONF_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$CONF_DIR"' EXIT
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 $SERVER_PID 2>/dev/null || { cat "$CONF_DIR/server.log" >&2; exit 1; }
    sleep 0.1
  done
  CONF_FAIL_ON_FAILURES=1 bash "$SHARED/conformance/run-scim2-tester.sh" \
      "http://127.0.0.1:$PORT/scim/v2" "$TOKEN" "$CONF_DIR/conformance.json" \
    || { echo "conformance failed" >&2; tail -n 50 "$CONF_DIR/server.log" >&2; exit 1; }
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null || true
  trap - EXIT; rm -rf "$CONF_DIR"
else
  echo "conformance suite not found at $SHARED/conformance (set SCIMHUB_SHARED_DIR)" >&2
  exit 1
fi

# ---- fuzz (bounded) ------------------------------------------------------------------------
if [ "${SKIP_FUZZ:-0}" != 1 ] && [ -f scim-schema/fuzz/run.sh ]; then
  log "fuzzing (bounded)"
  bash scim-schema/fuzz/run.sh "${FUZZ_SECONDS:-30}"
fi

# ---- the test suite (last, so its summary closes the output) -------------------------------
log "cargo test (SQLite and PostgreSQL)"
TEST_LOG=$(mktemp)
set +e
cargo test --workspace --all-targets 2>&1 | tee "$TEST_LOG"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one summary per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$TEST_LOG"
rm -f "$TEST_LOG"
exit "$rc"
