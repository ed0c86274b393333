#!/usr/bin/env bash
# test_keys_kek_paths.sh - every user of a private key against a store migrated to a KEK
# (docs/operations.md, Keys at rest). A plain store is populated (root and intermediate CA of
# the first start, a sub-CA, a server leaf, a client certificate, a JWT key pair, the admin
# listener's certificate), `torii keys migrate` seals it, and then, with the KEK: issuing from
# the sealed root, intermediate and sub-CA (chains verified by openssl), OCSP and CRL signed by
# the sealed intermediate (verified by openssl), forced renewal of a leaf and of the
# intermediate CA itself, the JWKS, _sign and a routes[].jwt route accepting the _sign token,
# ?export=true (the clear key, matching its certificate; 403 without keys:export), admin.tls
# starting with its sealed key, and fresh API/PKI writes stored sealed: no "PRIVATE KEY" and
# none of the keys' secrets in any file of the data dir. Then `torii keys rotate` and a restart
# with only the new KEK (issue, export, serve); and a copy of the store without its KEK that
# refuses each path with an error naming the record and the missing KEK, and leaks no key.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! "$PY" -c 'import cryptography, jwt' 2>/dev/null; then
  echo "skip - python3-cryptography / python3-jwt not installed (scripts/deps.sh installs them)"
  exit 0
fi

BK=$(t_free_port)
t_backend_start "$BK" || { echo "backend did not start"; exit 1; }
trap 't_backend_stop_all; t_cleanup' EXIT
PUB="http://127.0.0.1:$T_HTTP"
D="$T_TMP/data"

"$TORII_BIN" token new --id ro --scopes read >"$T_TMP/ro.out" 2>&1 || fail "token new"
RO=$(sed -n 's/^token: //p' "$T_TMP/ro.out")
RO_ENTRY=$(tail -n 1 "$T_TMP/ro.out")
head -c 32 /dev/urandom > "$T_TMP/kek1"
head -c 32 /dev/urandom > "$T_TMP/kek2"
chmod 600 "$T_TMP/kek1" "$T_TMP/kek2"

# conf FILE DATA_DIR KEYS_MEMBERS [ADMIN_TLS_MEMBER]
conf() {
  local keys="" tls=""
  if [ -n "${3:-}" ]; then keys="\"keys\": {$3},"; fi
  if [ -n "${4:-}" ]; then tls=", $4"; fi
  cat > "$1" <<JSON
{
  $keys
  "data_dir": "$2",
  "workers": 1,
  "log_level": "info",
  "tls": {"strict_host": false},
  "pki": {"public_url": "$PUB"},
  "routes": [{"hosts": ["localhost"], "backend": {"targets": ["127.0.0.1:$BK"]},
              "jwt": {"issuer": "https://idp.test", "audience": "api",
                      "claims_to_headers": {"sub": "X-Jwt-Sub"}}}],
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN", "token": "$T_TOKEN", "tokens": [$RO_ENTRY]$tls}
}
JSON
}
start_with() { cp "$1" "$T_TMP/torii.json"; : > "$T_TMP/torii.log"; t_start; }
as() { # as TOKEN METHOD PATH [curl args] -> T_BODY, T_STATUS
  local tok=$1 m=$2 p=$3 out; shift 3
  out=$(curl -s -X "$m" -H "Authorization: Bearer $tok" -w '\n%{http_code}' \
        "http://127.0.0.1:$T_ADMIN$p" "$@")
  T_STATUS=${out##*$'\n'}
  T_BODY=${out%$'\n'*}
}
id_of() { jget "['certId']" < "$T_TMP/$1.json"; }
ca_pem() { curl -s "$PUB/.well-known/torii/ca/$1" | openssl x509 -inform der -out "$T_TMP/$2.crt"; }
# export_to ID OUT: GET ?export=true; the privateKey into OUT (T_STATUS set)
export_to() {
  api GET "/api/certificates/$1?export=true"
  printf '%s' "$T_BODY" > "$T_TMP/exp.json"
  if [ "$T_STATUS" = 200 ]; then pem_of "$T_TMP/exp.json" privateKey "$2"; fi
}
# key_matches KEY CERT: the key is the certificate's
key_matches() {
  [ "$(openssl pkey -in "$1" -pubout 2>/dev/null | openssl sha256)" = \
    "$(openssl x509 -in "$2" -noout -pubkey | openssl sha256)" ]
}
# clear_keys DIR: "PRIVATE KEY" occurrences plus hits of the secrets of every *.key of the test
clear_keys() {
  "$PY" - "$1" "$T_TMP"/*.key <<'PY'
import os, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
needles = [b"PRIVATE KEY"]
for path in sys.argv[2:]:
    try:
        k = load_pem_private_key(open(path, "rb").read(), None)
    except Exception:
        continue
    n = k.private_numbers()
    s = n.private_value if hasattr(n, "private_value") else n.d
    needles.append(s.to_bytes((s.bit_length() + 7) // 8, "big"))
hits = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if os.path.isfile(p) and not os.path.islink(p):
            data = open(p, "rb").read()
            hits += sum(data.count(nd) for nd in needles)
print(hits)
PY
}
# ocsp_ok ISSUER CERT CAFILE: "CERT: good" and a verified response signature
ocsp_ok() {
  local out
  out=$(openssl ocsp -issuer "$T_TMP/$1.crt" -cert "$T_TMP/$2.crt" -url "$PUB/.well-known/torii/ocsp" \
    -CAfile "$T_TMP/$3" 2>&1)
  case "$out" in *"Response verify OK"*"$T_TMP/$2.crt: good"*) return 0 ;; esac
  printf '# %s\n' "$out" >&2
  return 1
}
crl_ok() { # crl_ok CA_ID CA_CERT
  curl -s -o "$T_TMP/crl.der" "$PUB/.well-known/torii/crl/$1" &&
    openssl crl -inform der -in "$T_TMP/crl.der" -CAfile "$T_TMP/$2.crt" -noout -verify 2>&1 |
      grep -q "verify OK"
}
wait_jwks() { # wait_jwks KID: published in the public JWKS
  local _
  for _ in $(seq 1 300); do
    if curl -s "$PUB/.well-known/jwks.json" | "$PY" -c '
import json,sys; sys.exit(0 if sys.argv[1] in [k.get("kid") for k in json.load(sys.stdin)["keys"]] else 1)' "$1"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
sign_token() { # sign_token ID -> T_TOKEN_OUT (T_STATUS set)
  api POST "/api/certificates/$1/_sign" -H 'Content-Type: application/json' \
    -d '{"claims":{"sub":"svc","iss":"https://idp.test","aud":"api"},"lifetime_s":600}'
  T_TOKEN_OUT=$(printf '%s' "$T_BODY" | jget "['token']" 2>/dev/null)
}
route_sub() { # route_sub TOKEN: the sub the backend saw through the jwt route
  curl -sk --max-time 20 "https://localhost:$T_HTTPS/echo" -H "Authorization: Bearer $1" |
    "$PY" -c 'import json,sys; d=json.load(sys.stdin)
print("|".join(v for n, v in d["headers"] if n.lower() == "x-jwt-sub"))' 2>/dev/null
}

conf "$T_TMP/plain.json" "$D"
conf "$T_TMP/k1.json" "$D" "\"kek_file\": \"$T_TMP/kek1\""

# --- a populated plain store ---------------------------------------------------------------------
start_with "$T_TMP/plain.json" || exit 1
ca_pem torii-root-ca root
ca_pem torii-intermediate-ca inter
issue /api/pki/cas/torii-root-ca/cas '{"subject":"CN=team CA"}' sub
check_eq "sub-CA issued (plain)" 200 "$T_STATUS"
SUB=$(id_of sub)
issue /api/pki/cas/torii-intermediate-ca/certs '{"hosts":["leaf.test"],"includeAIA":true}' leaf
LEAF=$(id_of leaf)
issue /api/pki/cas/torii-intermediate-ca/certs '{"subject":"CN=alice","client":true}' cli
CLI=$(id_of cli)
api POST /api/pki/keys -H 'Content-Type: application/json' -d '{"algo":"ecdsa","size":256}'
printf '%s' "$T_BODY" > "$T_TMP/kp.json"
pem_of "$T_TMP/kp.json" privateKey "$T_TMP/kp.key"
pem_of "$T_TMP/kp.json" chain "$T_TMP/kp.chain"
openssl x509 -in "$T_TMP/kp.chain" -out "$T_TMP/kp.crt"
KP=$(id_of kp)
api PATCH "/api/certificates/$KP" -H 'Content-Type: application/json' \
  -d '[{"op":"replace","path":"/exposed","value":true}]'
check_eq "JWT key pair created and exposed" 200 "$T_STATUS"
mkca sca "Admin server CA"
mkca cca "Admin client CA"
mkleaf adm localhost sca 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth'
mkleaf good "good client" cca 'extendedKeyUsage=clientAuth'
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json admin-srv adm)"
check_eq "admin listener certificate stored" 201 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json admin-clients cca)"
t_stop || fail "daemon exit status"
before=$(clear_keys "$D")
if [ "$before" -gt 0 ]; then ok "the plain store holds clear keys ($before hits): the probe works"
else fail "the key probe finds nothing in a plain store"; fi

# --- migrate ------------------------------------------------------------------------------------
out=$("$TORII_BIN" keys migrate -c "$T_TMP/k1.json" --batch 3 2>&1) || fail "migrate: $out"
n=$(printf '%s' "$out" | sed -n 's/.*: \([0-9]*\) records\? sealed.*/\1/p')
if [ "${n:-0}" -ge 9 ]; then ok "migrate sealed $n records in batches of 3"; else fail "migrate: $out"; fi
check_eq "no clear key in the data dir after migrate" 0 "$(clear_keys "$D")"

# --- every path with the KEK ----------------------------------------------------------------------
start_with "$T_TMP/k1.json" || exit 1
issue /api/pki/cas/torii-intermediate-ca/certs '{"hosts":["new.test"],"includeAIA":true}' new
check_eq "issue from the sealed intermediate" 200 "$T_STATUS"
check "its chain verifies" openssl verify -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/inter.crt" \
  -purpose sslserver "$T_TMP/new.crt"
check "the key returned once matches it" key_matches "$T_TMP/new.key" "$T_TMP/new.crt"
issue "/api/pki/cas/$SUB/certs" '{"hosts":["deep.test"]}' deep
check_eq "issue from the sealed sub-CA" 200 "$T_STATUS"
check "deep chain verifies" openssl verify -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/sub.crt" \
  "$T_TMP/deep.crt"
issue /api/pki/cas/torii-root-ca/cas '{"subject":"CN=second team CA"}' sub2
check_eq "sub-CA issued by the sealed root" 200 "$T_STATUS"
check "sub-CA chain verifies" openssl verify -CAfile "$T_TMP/root.crt" "$T_TMP/sub2.crt"
cat "$T_TMP/root.crt" "$T_TMP/inter.crt" > "$T_TMP/trust.pem"
check "OCSP for the migrated leaf: good, signed by the sealed intermediate" ocsp_ok inter leaf trust.pem
check "OCSP for a leaf issued after: good" ocsp_ok inter new trust.pem
check "CRL signed by the sealed intermediate verifies" crl_ok torii-intermediate-ca inter
# JWKS, _sign, a jwt route
check "the sealed key pair is in the JWKS" wait_jwks "$KP"
sign_token "$KP"
check_eq "_sign with the sealed key pair" 200 "$T_STATUS"
check_eq "the jwt route accepts the _sign token" svc "$(route_sub "$T_TOKEN_OUT")"
check_eq "PyJWT verifies it against the JWKS" ok "$("$PY" - "$T_TOKEN_OUT" "$PUB/.well-known/jwks.json" <<'PY'
import sys, jwt
key = jwt.PyJWKClient(sys.argv[2]).get_signing_key_from_jwt(sys.argv[1]).key
jwt.decode(sys.argv[1], key, algorithms=["ES256"], audience="api")
print("ok")
PY
)"
# export
export_to "$LEAF" "$T_TMP/leaf.exp.key"
check_eq "export with keys:export -> 200" 200 "$T_STATUS"
check "the exported key is the clear PEM of the migrated leaf" key_matches "$T_TMP/leaf.exp.key" "$T_TMP/leaf.crt"
as "$RO" GET "/api/certificates/$LEAF?export=true"
check_eq "export without keys:export -> 403" 403 "$T_STATUS"
api GET "/api/certificates/$CLI"
check_eq "a plain GET stays redacted" "" "$(printf '%s' "$T_BODY" | jget "['privateKey']")"
api PATCH "/api/certificates/$CLI" -H 'Content-Type: application/json' \
  -d '[{"op":"replace","path":"/name","value":"alice2"}]'
check_eq "PATCH of a sealed entity (its key opened, kept sealed)" 200 "$T_STATUS"
export_to "$CLI" "$T_TMP/cli.exp.key"
check "the patched entity still exports its key" key_matches "$T_TMP/cli.exp.key" "$T_TMP/cli.crt"
# forced renewal of a leaf and of the intermediate CA
api POST "/api/certificates/$LEAF/_renew"
check_eq "forced renewal of the sealed leaf" 200 "$T_STATUS"
export_to "$LEAF" "$T_TMP/leaf2.key"
api GET "/api/certificates/$LEAF"
pem_of /dev/stdin chain "$T_TMP/leaf2.chain" <<<"$T_BODY"
openssl x509 -in "$T_TMP/leaf2.chain" -out "$T_TMP/leaf2.crt"
check "the renewed leaf has a new key, exported clear" key_matches "$T_TMP/leaf2.key" "$T_TMP/leaf2.crt"
check "the renewed leaf verifies" openssl verify -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/inter.crt" "$T_TMP/leaf2.crt"
COPY=$(curl -s -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/api/certificates" |
  "$PY" -c 'import json,sys; print(" ".join(e["id"] for e in json.load(sys.stdin) if (e.get("metadata") or {}).get("nextCertificate") == sys.argv[1]))' "$LEAF")
export_to "$COPY" "$T_TMP/copy.exp.key"
check "the [UNTIL EXPIRATION] copy keeps the old key (re-sealed for its id)" key_matches "$T_TMP/copy.exp.key" "$T_TMP/leaf.crt"
api POST /api/certificates/torii-intermediate-ca/_renew
check_eq "forced renewal of the sealed intermediate CA" 200 "$T_STATUS"
issue /api/pki/cas/torii-intermediate-ca/certs '{"hosts":["after.test"]}' after
check_eq "issue from the renewed intermediate" 200 "$T_STATUS"
ca_pem torii-intermediate-ca inter2
check "its chain verifies" openssl verify -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/inter2.crt" "$T_TMP/after.crt"
# fresh API writes
mkcert fresh ec 30 fresh.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json fresh fresh)"
check_eq "a fresh API write" 201 "$T_STATUS"
api POST /api/certificates/_bulk -H 'Content-Type: application/x-ndjson' \
  --data-binary "$(mkcert bulk ec 30 bulk.test; entity_json bulk bulk)"
check_eq "a fresh _bulk write" 200 "$T_STATUS"
check_eq "the fresh certificate is served" "$(serial_of fresh)" "$(served fresh.test)"
t_stop || fail "daemon exit status"
check_eq "every key written with the KEK is sealed: no clear key in the data dir" 0 "$(clear_keys "$D")"

# --- admin.tls starts with its sealed key ------------------------------------------------------------
conf "$T_TMP/tls.json" "$D" "\"kek_file\": \"$T_TMP/kek1\"" \
  '"tls": {"cert": "admin-srv", "client_cas": ["admin-clients"]}'
cp "$T_TMP/tls.json" "$T_TMP/torii.json"
: > "$T_TMP/torii.log"
"$TORII_BIN" -c "$T_TMP/torii.json" >>"$T_TMP/torii.log" 2>&1 &
T_PID=$!
code=000
for _ in $(seq 1 600); do # bounded wait for the listener (up to a minute)
  code=$(curl -s --cacert "$T_TMP/sca.crt" --resolve "localhost:$T_ADMIN:127.0.0.1" \
    --cert "$T_TMP/good.crt" --key "$T_TMP/good.key" -H "Authorization: Bearer $T_TOKEN" \
    -o /dev/null -w '%{http_code}' "https://localhost:$T_ADMIN/api/certificates" 2>/dev/null)
  [ "$code" = 200 ] && break
  kill -0 "$T_PID" 2>/dev/null || break
  sleep 0.1
done
check_eq "admin.tls serves with the sealed admin-srv key" 200 "$code"
t_stop || fail "daemon exit status (admin.tls)"

# --- rotate, then only the new KEK ---------------------------------------------------------------
conf "$T_TMP/rot.json" "$D" "\"kek_file\": \"$T_TMP/kek2\", \"previous_kek_files\": [\"$T_TMP/kek1\"]"
conf "$T_TMP/k2.json" "$D" "\"kek_file\": \"$T_TMP/kek2\""
out=$("$TORII_BIN" keys rotate -c "$T_TMP/rot.json" 2>&1) || fail "rotate: $out"
case "$out" in *"records sealed under KEK"*) ok "rotate: $out" ;; *) fail "rotate: $out" ;; esac
start_with "$T_TMP/k2.json" || exit 1
issue /api/pki/cas/torii-intermediate-ca/certs '{"hosts":["rot.test"]}' rot
check_eq "after rotate, the new KEK alone: issue from the CA" 200 "$T_STATUS"
export_to "$KP" "$T_TMP/kp.exp.key"
check "after rotate: export of the key pair" key_matches "$T_TMP/kp.exp.key" "$T_TMP/kp.crt"
check_eq "after rotate: the fresh certificate is served" "$(serial_of fresh)" "$(served fresh.test)"
check "after rotate: OCSP signed" ocsp_ok inter leaf trust.pem
t_stop || fail "daemon exit status"
check_eq "no clear key after rotate" 0 "$(clear_keys "$D")"

# --- a copy of the store without its KEK -----------------------------------------------------------
cp -a "$D" "$T_TMP/copy"
conf "$T_TMP/copy.json" "$T_TMP/copy"
start_with "$T_TMP/copy.json" || exit 1
issue /api/pki/cas/torii-intermediate-ca/certs '{"hosts":["x.test"]}' x
check_eq "no KEK: issuing refused" 400 "$T_STATUS"
case "$T_BODY" in *"torii-intermediate-ca"*"not loaded"*) ok "and the error names the CA and the missing KEK" ;;
  *) fail "issue without KEK: $T_BODY" ;; esac
api GET "/api/certificates/$LEAF?export=true"
check_eq "no KEK: export refused" 500 "$T_STATUS"
case "$T_BODY" in *"$LEAF"*"not loaded"*) ok "and names the record" ;; *) fail "export: $T_BODY" ;; esac
sign_token "$KP"
check_eq "no KEK: _sign refused" 400 "$T_STATUS"
check_eq "no KEK: the fresh certificate is not served" "" \
  "$([ "$(served fresh.test)" = "$(serial_of fresh)" ] && echo served)"
check_eq "no KEK: no key in the log" 0 "$(grep -c 'PRIVATE KEY' "$T_TMP/torii.log")"
t_stop || fail "daemon exit status"
t_done
