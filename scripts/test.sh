#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests on SQLite and PostgreSQL, connector
# tests against real stand-ins (installed here, idempotently: Debian slapd and Samba AD, moto,
# GitHub's emulator behind prism, scim2-server), the third-party SCIM conformance suite against a
# freshly started server (tests/conformance, pinned), and a bounded fuzz run. Everything it needs
# is in this repository or installed by it. Needs root for apt and the Samba AD ports.
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

log() { printf '\n== %s ==\n' "$*" >&2; }

# ---- tools the runners use -----------------------------------------------------------------
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${SCIMHUB_TEST_NO_POSTGRES:-0}" != 1 ] && ! command -v pg_isready >/dev/null; then
  need_apt+=(postgresql-client)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# ---- PostgreSQL ---------------------------------------------------------------------------
if [ "${SCIMHUB_TEST_NO_POSTGRES:-0}" != 1 ]; then
  export SCIMHUB_TEST_POSTGRES_URL=${SCIMHUB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if [ ! -d /etc/postgresql ]; then
      # A machine without PostgreSQL: install Debian's, and let the local test user in without a
      # password on loopback (this cluster exists only for the tests).
      log "installing PostgreSQL"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
      hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
      sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    fi
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 >&2 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
  # The tests create one database per test through this URL; it must exist itself.
  db=${SCIMHUB_TEST_POSTGRES_URL##*/}
  admin=${SCIMHUB_TEST_POSTGRES_URL%/*}/postgres
  psql -q "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || psql -q "$admin" -c "CREATE DATABASE \"$db\""
fi

# tests/e2e/failover.rs starts a PostgreSQL cluster of its own (initdb + pg_ctl in a temporary
# directory, on a free port) and restarts it under load: it needs the server binaries, which a
# PostgreSQL reached over the network (or in a container) does not put on this machine.
if [ "${SCIMHUB_TEST_NO_POSTGRES:-0}" != 1 ] && [ -z "${SCIMHUB_TEST_PG_BIN:-}" ]; then
  for d in /usr/local/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then export SCIMHUB_TEST_PG_BIN=$d; break; fi
  done
  if [ -z "${SCIMHUB_TEST_PG_BIN:-}" ]; then
    log "installing PostgreSQL's server binaries (for the failover test's own cluster)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    SCIMHUB_TEST_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V -r | head -n1)
    export SCIMHUB_TEST_PG_BIN
  fi
fi

# ---- connector stand-ins (slapd, Samba AD, moto, GitHub emulator + prism, scim2-server) --------
log "installing connector stand-ins"
bash connectors/tests/support_standins/install.sh

log "building"
cargo build --workspace --all-targets
# The SCIM connector's tests also provision into a second scimhub.
export SCIMHUB_BIN=$ROOT/target/debug/scimhub

# ---- conformance: scim2-tester (pinned in tests/conformance) against a freshly started server ----
log "conformance (scim2-tester)"
bash tests/conformance/run.sh "$SCIMHUB_BIN"

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
