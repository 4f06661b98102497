#!/usr/bin/env bash
# The third-party scim2-tester conformance suite against a freshly started scimhub.
#
#   bash tests/conformance/run.sh [SCIMHUB_BINARY]     (default target/debug/scimhub)
#
# Installs the pinned suite (requirements.txt beside this file) into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/scimhub/conformance-venv on first use (needs python3 with venv;
# .ci/run installs python3-venv), starts the binary on a free loopback port with a temporary
# SQLite database, runs check.py, stops the server. Exit 0 only when no check failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../../target/debug/scimhub}
VENV=${SCIMHUB_CONFORMANCE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/scimhub/conformance-venv}

# Reinstall when the pins change: the venv remembers the requirements it was built from.
if ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt" 2>/dev/null; then
  echo "installing scim2-tester into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
TOKEN="conformance-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
SCIMHUB_BOOTSTRAP_TOKEN=$TOKEN "$BIN" serve --bind "127.0.0.1:$PORT" \
  --database-url "sqlite://$WORK/conformance.db" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done

if ! SCIM_TOKEN=$TOKEN timeout 300 "$VENV/bin/python" "$HERE/check.py" \
     "http://127.0.0.1:$PORT/scim/v2" "${CONFORMANCE_RESULTS:-$WORK/results.json}"; then
  echo "conformance failed; last server log lines:" >&2
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi
