#!/usr/bin/env bash
# Throwaway Samba AD DC in a scratch dir, after /work/shared/standins/samba/start-samba-ad.sh:
# provisioned from an empty config (nothing under /etc or /var changes), bound to loopback,
# runtime dirs inside DIR, TLS from make-certs.sh (SAN IP:127.0.0.1) so LDAPS and StartTLS
# verify against DIR/certs/ca.pem. Keeps Samba's default "ldap server require strong auth"
# (simple binds need TLS, like real AD). Needs root: fixed ports 88/389/636/...; one per host.
# usage: start-samba-ad.sh DIR   (samba runs in the foreground: exec)
set -euo pipefail
DIR=$1; PASS=${AD_ADMIN_PW:-'Passw0rd!Admin'}; HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$DIR"; : > "$DIR/empty.conf"
bash "$HERE/make-certs.sh" "$DIR/certs"
samba-tool domain provision --configfile="$DIR/empty.conf" \
  --realm=EXAMPLE.COM --domain=EXAMPLE --server-role=dc --dns-backend=NONE \
  --adminpass="$PASS" --targetdir="$DIR/dc" --host-name=dc1 --use-rfc2307 \
  --option="interfaces=lo" --option="bind interfaces only=yes" \
  --option="log file=$DIR/dc/log.%m" --option="logging=file" > "$DIR/provision.log" 2>&1 \
  || { cat "$DIR/provision.log"; exit 1; }
D=$DIR/dc
mkdir -p "$D/run" "$D/winbindd" "$D/ncalrpc"; mkdir -m 0750 -p "$D/ntp_signd"
sed -i "s#^\tworkgroup = EXAMPLE\$#&\n\tpid directory = $D/run\n\tntp signd socket directory = $D/ntp_signd\n\twinbindd socket directory = $D/winbindd\n\tncalrpc dir = $D/ncalrpc\n\ttls enabled = yes\n\ttls keyfile = $DIR/certs/server.key\n\ttls certfile = $DIR/certs/server.pem\n\ttls cafile = $DIR/certs/ca.pem\n\trpc server dynamic port range = 61000-65000#" "$D/etc/smb.conf"
# The RPC endpoints' ports: Samba's default range (49152-65535) overlaps Linux's ephemeral ports
# (32768-60999), and a client socket holding one of them made the DC exit at start-up
# (NT_STATUS_ADDRESS_ALREADY_ASSOCIATED).
grep -q "tls certfile" "$D/etc/smb.conf" || { echo "could not patch smb.conf" >&2; exit 1; }
grep -q "rpc server dynamic port range" "$D/etc/smb.conf" || { echo "could not patch smb.conf" >&2; exit 1; }
exec samba -s "$D/etc/smb.conf" -F --no-process-group --debug-stdout -d 1 -M single
