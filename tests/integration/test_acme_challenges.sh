#!/usr/bin/env bash
# test_acme_challenges.sh - the other ACME challenge types against Pebble on loopback:
# TLS-ALPN-01 (the https listener answers acme-tls/1 with the RFC 8737 validation certificate
# while the order waits, and never otherwise), DNS-01 for a wildcard name through
# acme.dns_hook (the test's hook sets TXT records in pebble-challtestsrv), and a failing hook
# reported as the order's error with nothing stored.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$(realpath "$0")")/pebble.sh"
pebble_begin

order() { api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d "$1"; }

# --- TLS-ALPN-01 ---------------------------------------------------------------------------
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"tls-alpn-01\"]},"
t_start || exit 1
order '{"host": "alpn.test"}'
check_eq "TLS-ALPN-01: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
acme_check_chain "TLS-ALPN-01" alpn "$T_BODY"
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
acme_check_chain "DNS-01 wildcard" wild "$T_BODY"
check_eq "DNS-01 wildcard: served for any one-label name at once" \
  "$(openssl x509 -in "$T_TMP/wild.crt" -noout -serial | sed 's/serial=//')" "$(served anything.wild.test)"
check "stop" t_stop

# --- a failing hook: the order's error, nothing stored --------------------------------------
printf '#!/bin/sh\necho "no DNS API token" >&2\nexit 3\n' > "$T_TMP/bad-hook.sh"
chmod +x "$T_TMP/bad-hook.sh"
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"dns-01\"], \"dns_hook\": \"$T_TMP/bad-hook.sh\"},"
t_start || exit 1
n0=$(acme_count_certs)
order '{"host": "hookfail.test"}'
check_eq "failing hook: 502" 502 "$T_STATUS"
check "failing hook: the error names the hook, its action and its exit status" \
  grep -qF "acme: dns_hook $T_TMP/bad-hook.sh set _acme-challenge.hookfail.test: exit status 3" <<<"$T_BODY"
check_eq "failing hook: nothing stored" "$n0" "$(acme_count_certs)"
api GET /metrics
check "metrics: failed orders counted" grep -q '^torii_acme_orders_total{outcome="invalid"} 1$' <<<"$T_BODY"

t_done
