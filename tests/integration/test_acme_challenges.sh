#!/usr/bin/env bash
# test_acme_challenges.sh - the other ACME challenge types against Pebble on loopback:
# TLS-ALPN-01 (the https listener answers acme-tls/1 with the RFC 8737 validation certificate
# while the order waits, and never otherwise), DNS-01 for a wildcard name through
# acme.dns_hook (the test's hook sets TXT records in pebble-challtestsrv), and a failing hook
# reported as the order's error with nothing stored.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$(realpath "$0")")/pebble.sh"
if ! pebble_have; then
  echo "SKIP: pebble and pebble-challtestsrv are not installed (Debian package pebble)"
  exit 77
fi
pebble_start || exit 1
pebble_root "$T_TMP/pebble-root.pem"
pebble_dns_hook

count_certs() { api GET /api/certificates; python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$T_BODY"; }
leaf_of() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys
d = json.loads(sys.argv[1])
pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", d["chain"], re.S)
open(sys.argv[2], "w").write(pems[0])
open(sys.argv[2] + ".inter", "w").write("".join(pems[1:]))
PY
}
order() { api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d "$1"; }

# --- TLS-ALPN-01 ---------------------------------------------------------------------------
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"tls-alpn-01\"]},"
t_start || exit 1
order '{"host": "alpn.test"}'
check_eq "TLS-ALPN-01: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
leaf_of "$T_BODY" "$T_TMP/alpn.crt"
check "TLS-ALPN-01: chain verifies against Pebble's root" \
  openssl verify -CAfile "$T_TMP/pebble-root.pem" -untrusted "$T_TMP/alpn.crt.inter" "$T_TMP/alpn.crt"
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername alpn.test \
  -alpn acme-tls/1 2>&1)
check "no challenge pending: acme-tls/1 is not negotiated" grep -q 'No ALPN negotiated' <<<"$out"
check "no challenge pending: the ordinary certificate is served" \
  test "$(openssl x509 -noout -fingerprint -sha256 <<<"$out")" = \
       "$(openssl x509 -in "$T_TMP/alpn.crt" -noout -fingerprint -sha256)"
check "stop" t_stop

# --- DNS-01: a wildcard and its base name through the hook --------------------------------
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"dns-01\"], \"dns_hook\": \"$T_TMP/dns-hook.sh\"},"
t_start || exit 1
order '{"hosts": ["*.wild.test", "wild.test"]}'
check_eq "DNS-01 wildcard: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
check_eq "DNS-01 wildcard: names" "['*.wild.test', 'wild.test']" "$(printf '%s' "$T_BODY" | jget "['sans']")"
leaf_of "$T_BODY" "$T_TMP/wild.crt"
check "DNS-01 wildcard: chain verifies against Pebble's root" \
  openssl verify -CAfile "$T_TMP/pebble-root.pem" -untrusted "$T_TMP/wild.crt.inter" "$T_TMP/wild.crt"
check_eq "DNS-01 wildcard: served for any one-label name at once" \
  "$(openssl x509 -in "$T_TMP/wild.crt" -noout -serial | sed 's/serial=//')" "$(served anything.wild.test)"
check "stop" t_stop

# --- a failing hook: the order's error, nothing stored --------------------------------------
printf '#!/bin/sh\necho "no DNS API token" >&2\nexit 3\n' > "$T_TMP/bad-hook.sh"
chmod +x "$T_TMP/bad-hook.sh"
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"dns-01\"], \"dns_hook\": \"$T_TMP/bad-hook.sh\"},"
t_start || exit 1
n0=$(count_certs)
order '{"host": "hookfail.test"}'
check_eq "failing hook: 502" 502 "$T_STATUS"
check "failing hook: the error names the hook, its action and its exit status" \
  grep -qF "acme: dns_hook $T_TMP/bad-hook.sh set _acme-challenge.hookfail.test: exit status 3" <<<"$T_BODY"
check_eq "failing hook: nothing stored" "$n0" "$(count_certs)"
api GET /metrics
check "metrics: failed orders counted" grep -q '^torii_acme_orders_total{outcome="invalid"} 1$' <<<"$T_BODY"

t_done
