#!/usr/bin/env bash
# TLS scan: testssl.sh (Debian package) against the https listener, with torii's own root CA
# as trust anchor, an ECDSA and an RSA certificate for "localhost" (both key types' suites are
# scanned). Fails on any finding of severity MEDIUM or above that is not in
# testssl-allow.txt, on a protocol below TLS 1.2, on a chain that does not verify
# (tests/integration/testssl_check.py). The scanner talks to 127.0.0.1 only: no DNS
# (--nodns none, --ip), no CRL/OCSP fetching (no --phone-out), and, when the kernel allows it,
# the whole test runs in its own network namespace whose only interface is loopback.
# Env: TESTSSL (scanner binary; default testssl, else testssl.sh), TORII_TESTSSL_NETNS=off
# (stay in the caller's network namespace), TORII_TESTSSL_OUT=DIR (keep the report there).
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${TORII_TESTSSL_NETNS:-}" ] && command -v ip >/dev/null 2>&1 \
  && unshare -n true 2>/dev/null; then
  exec env TORII_TESTSSL_NETNS=inside unshare -n \
    bash -c 'ip link set lo up || { echo "FAIL - loopback down in the test namespace"; exit 1; }
             exec bash "$0" "$@"' "$0" "$@"
fi
source "$here/lib.sh"

scanner=${TESTSSL:-$(command -v testssl || command -v testssl.sh)}
if [ -z "$scanner" ]; then
  echo "FAIL - testssl.sh not found (Debian package testssl.sh; scripts/deps.sh installs it)"
  exit 1
fi
if [ "${TORII_TESTSSL_NETNS:-}" = inside ]; then
  echo "# own network namespace: loopback only"
else
  echo "# caller's network namespace (unshare -n not available or TORII_TESTSSL_NETNS set)"
fi

t_config
t_start || exit 1

# Trust anchor: the root CA from its AIA endpoint (the https listener sends no root).
curl -s "http://127.0.0.1:$T_HTTP/.well-known/torii/ca/torii-root-ca" \
  | openssl x509 -inform DER -out "$T_TMP/root.pem" 2>/dev/null
check "torii root CA fetched" test -s "$T_TMP/root.pem"

# An RSA certificate for localhost next to the default ECDSA one, with its CRL/OCSP URLs,
# so the RSA and DHE suites are scanned too.
api POST /api/pki/cas/torii-intermediate-ca/certs -H 'Content-Type: application/json' \
  -d '{"hosts":["localhost"],"key":{"algo":"rsa","size":2048},"includeAIA":true}'
check_eq "RSA certificate for localhost issued" 200 "$T_STATUS"
rsa_serial=$(echo "$T_BODY" | jget '["chain"]' | openssl x509 -noout -serial | sed 's/serial=//')
check_eq "RSA-only client gets the RSA certificate" "$rsa_serial" \
  "$(served localhost '-sigalgs RSA-PSS+SHA256:RSA+SHA256')"

# Sections: protocols (-p), cipher categories (-s), forward secrecy and groups (-f), server
# preference (-P), server defaults: certificates, chain, revocation info, tickets,
# extensions (-S), vulnerabilities (-U). Left out: the per-cipher list (-e/-E, only INFO
# findings; -s and -f grade the same suites), client simulation (-c, INFO only) and HTTP
# headers (-h: torii with no route answers 404; HSTS and security headers are the routes'
# backends' business). The bound is far above a scan's time (about a minute).
(cd "$T_TMP" && PHONE_OUT=false timeout -k 10 540 "$scanner" --quiet --warnings batch \
  --color 0 --nodns none --ip 127.0.0.1 --add-ca "$T_TMP/root.pem" \
  --jsonfile "$T_TMP/testssl.json" -p -s -f -P -S -U "localhost:$T_HTTPS" \
  >"$T_TMP/testssl.txt" 2>&1)
rc=$?
if [ -n "${TORII_TESTSSL_OUT:-}" ]; then
  cp "$T_TMP/testssl.txt" "$T_TMP/testssl.json" "$TORII_TESTSSL_OUT/"
fi
if [ "$rc" -eq 124 ] || [ "$rc" -ge 240 ]; then
  fail "testssl.sh ended with status $rc (timeout or scanner error); output:"
  cat "$T_TMP/testssl.txt"
else
  ok "testssl.sh ran (status $rc)"
fi
if python3 "$here/testssl_check.py" "$T_TMP/testssl.json" "$here/testssl-allow.txt"; then
  ok "no finding of severity MEDIUM or above outside the allow-list"
else
  fail "testssl.sh findings above (full report follows)"
  cat "$T_TMP/testssl.txt"
fi
check "daemon stops cleanly" t_stop
t_done
