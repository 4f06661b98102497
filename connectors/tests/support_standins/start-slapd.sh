#!/usr/bin/env bash
# Throwaway OpenLDAP (Debian slapd) in a scratch dir on 127.0.0.1, after
# /work/shared/standins/ldap/start-slapd.sh: generated slapd.conf with memberof, refint and
# ppolicy (with a default policy), TLS from make-certs.sh, data loaded with slapadd.
# usage: start-slapd.sh DIR LDAP_PORT LDAPS_PORT   (slapd runs in the foreground: exec)
set -euo pipefail
DIR=$1; PORT=$2; SPORT=$3; HERE=$(cd "$(dirname "$0")" && pwd)
SUFFIX="dc=example,dc=com"; ADMIN="cn=admin,$SUFFIX"; PW=${LDAP_ADMIN_PW:-adminpw}
mkdir -p "$DIR/db"
[ -f "$DIR/certs/server.pem" ] || bash "$HERE/make-certs.sh" "$DIR/certs"
HASH=$(slappasswd -s "$PW")
cat > "$DIR/slapd.conf" <<CONF
include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/inetorgperson.schema
include   /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile   $DIR/slapd.pid
argsfile  $DIR/slapd.args
TLSCACertificateFile  $DIR/certs/ca.pem
TLSCertificateFile    $DIR/certs/server.pem
TLSCertificateKeyFile $DIR/certs/server.key
sizelimit unlimited

database  mdb
maxsize   104857600
suffix    "$SUFFIX"
rootdn    "$ADMIN"
rootpw    $HASH
directory $DIR/db
index     objectClass eq
index     uid,cn,mail eq,sub
index     member,memberOf eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by self read by users read by * none

overlay   memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay   refint
refint_attributes member
overlay   ppolicy
ppolicy_default "cn=default,ou=policies,$SUFFIX"
ppolicy_use_lockout
CONF
slaptest -f "$DIR/slapd.conf" -u >/dev/null 2>&1 || slaptest -f "$DIR/slapd.conf" -u
slapadd -f "$DIR/slapd.conf" -l "$HERE/slapd-base.ldif" >/dev/null 2>&1 || slapadd -f "$DIR/slapd.conf" -l "$HERE/slapd-base.ldif"
exec slapd -f "$DIR/slapd.conf" -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$SPORT/" -d ${SLAPD_DEBUG:-0}
