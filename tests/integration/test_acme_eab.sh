#!/usr/bin/env bash
# test_acme_eab.sh - ACME external account binding (acme.eab) against a Pebble that requires
# it: the right key id and HMAC key register the account and issue; a wrong HMAC key is
# refused by the CA with a clear error and nothing is stored.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$(realpath "$0")")/pebble.sh"
# A test-only MAC key, made here (base64url of 48 random bytes).
EAB_KEY=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("="))')
BAD_KEY=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("="))')
P_EAB_REQUIRED=true
pebble_begin "\"externalAccountMACKeys\": {\"kid-test\": \"$EAB_KEY\"},"

# --- a wrong HMAC key: the CA refuses the account --------------------------------------------
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"eab\": {\"kid\": \"kid-test\", \"hmac_key\": \"$BAD_KEY\"}},"
t_start || exit 1
n0=$(acme_count_certs)
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "eab.test"}'
check_eq "wrong EAB key: 502" 502 "$T_STATUS"
check "wrong EAB key: the CA's refusal of newAccount is named" grep -q 'acme: newAccount: ' <<<"$T_BODY"
echo "# $T_BODY"
check_eq "wrong EAB key: nothing stored" "$n0" "$(acme_count_certs)"
check "stop" t_stop
rm -rf "$T_TMP/data"

# --- the right key: registered and issued -----------------------------------------------------
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"eab\": {\"kid\": \"kid-test\", \"hmac_key\": \"$EAB_KEY\"}},"
t_start || exit 1
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "eab.test"}'
check_eq "EAB: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
check "the HMAC key is never logged" test "$(grep -cF -e "$EAB_KEY" "$T_TMP/torii.log")" = 0

t_done
