#!/usr/bin/env bash
# Protecting the keys, as an operator sees it on the real daemon: `torii token new` prints a
# token once and its admin.tokens entry; a read-only token gets redacted entities and 403 on
# writes and on ?export=true; an export token gets the key; a PUT of the redacted body keeps
# the key; failed authentications from loopback end in 429 + Retry-After (even for a valid
# token); the audit log (0600) holds one intent and one result line per write, with the key
# fingerprint and no key material; a foreign Origin is 403, a form content type 415, no CORS
# header is ever sent; a non-loopback admin.listen without admin.tls refuses to start; with
# admin.tls the listener requires a client certificate from the configured CA.
here=$(dirname "$0")
source "$here/lib.sh"

# --- token command
"$TORII_BIN" token new --id ro --scopes read >"$T_TMP/ro.out" 2>&1
check_eq "token new: exit 0" 0 "$?"
RO=$(sed -n 's/^token: //p' "$T_TMP/ro.out")
RO_ENTRY=$(tail -n 1 "$T_TMP/ro.out")
check "token new: 64 hex digits" grep -qE '^token: [0-9a-f]{64}$' "$T_TMP/ro.out"
check_eq "token new: entry holds the SHA-256 of the token" \
  "$(printf '%s' "$RO" | sha256sum | cut -d' ' -f1)" "$(echo "$RO_ENTRY" | jget '["sha256"]')"
check "token new: the token is not in the entry" sh -c "! echo '$RO_ENTRY' | grep -q '$RO'"
"$TORII_BIN" token new --id ex --scopes read,keys:export >"$T_TMP/ex.out" 2>&1
EX=$(sed -n 's/^token: //p' "$T_TMP/ex.out")
EX_ENTRY=$(tail -n 1 "$T_TMP/ex.out")
"$TORII_BIN" token new --scopes read,bogus >"$T_TMP/bad.out" 2>&1
check_eq "token new: unknown scope -> exit 2" 2 "$?"
check "token new: unknown scope named" grep -q 'unknown scope "bogus"' "$T_TMP/bad.out"

# --- a non-loopback admin listener is refused
cat > "$T_TMP/open.json" <<JSON
{"data_dir": "$T_TMP/data-open", "listen": {"https": "", "http": ""},
 "admin": {"listen": "0.0.0.0:$T_ADMIN", "token": "$T_TOKEN"}}
JSON
timeout 60 "$TORII_BIN" -c "$T_TMP/open.json" >"$T_TMP/open.log" 2>&1
check "non-loopback admin.listen: does not start" test $? -ne 0
check "non-loopback admin.listen: says why" grep -q "requires TLS with client certificates" "$T_TMP/open.log"

cat > "$T_TMP/torii.json" <<JSON
{
  "data_dir": "$T_TMP/data",
  "workers": 1,
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN", "token": "$T_TOKEN",
            "tokens": [$RO_ENTRY, $EX_ENTRY], "auth_fail_limit": 5,
            "auth_fail_window_s": 3600}
}
JSON
check "config with tokens is valid" "$TORII_BIN" --check-config -c "$T_TMP/torii.json"
t_start || exit 1

# as TOKEN METHOD PATH [curl args] -> T_BODY, T_STATUS, headers in $T_TMP/h
as() {
  local tok=$1 m=$2 p=$3; shift 3
  local out
  out=$(curl -s -D "$T_TMP/h" -X "$m" -H "Authorization: Bearer $tok" -w '\n%{http_code}' \
        "http://127.0.0.1:$T_ADMIN$p" "$@")
  T_STATUS=${out##*$'\n'}
  T_BODY=${out%$'\n'*}
}

no_key() { ! grep -q 'PRIVATE KEY' <<<"$1"; }

mkcert k1 ec 30 k1.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json k1 k1)"
check_eq "admin token creates" 201 "$T_STATUS"
check "the create response is redacted" no_key "$T_BODY"

# --- redaction and scopes
as "$RO" GET /api/certificates/k1
check_eq "read token: GET 200" 200 "$T_STATUS"
check_eq "read token: privateKey redacted" "" "$(echo "$T_BODY" | jget '["privateKey"]')"
check_eq "read token: marker" True "$(echo "$T_BODY" | jget '["privateKeyRedacted"]')"
REDACTED=$T_BODY
as "$RO" GET /api/certificates
check "read token: list redacted" no_key "$T_BODY"
as "$RO" GET '/api/certificates/k1?export=true'
check_eq "read token: export -> 403" 403 "$T_STATUS"
as "$RO" PUT /api/certificates/k1 -H 'Content-Type: application/json' -d "$REDACTED"
check_eq "read token: PUT -> 403" 403 "$T_STATUS"
as "$RO" POST /api/pki/certs -H 'Content-Type: application/json' -d '{"hosts":["x.test"]}'
check_eq "read token: PKI -> 403" 403 "$T_STATUS"
as "$EX" GET '/api/certificates/k1?export=true'
check_eq "export token: key exported" "$(cat "$T_TMP/k1.key")" "$(echo "$T_BODY" | jget '["privateKey"]')"

# --- PUT of the redacted body keeps the key
api PUT /api/certificates/k1 -H 'Content-Type: application/json' -d "$REDACTED"
check_eq "PUT of the redacted body -> 200" 200 "$T_STATUS"
as "$EX" GET '/api/certificates/k1?export=true'
check_eq "PUT of the redacted body kept the key" "$(cat "$T_TMP/k1.key")" \
  "$(echo "$T_BODY" | jget '["privateKey"]')"
check_eq "still served" "$(serial_of k1)" "$(served k1.example.test)"

# --- PKI: a generated key is returned once
api POST /api/pki/certs -H 'Content-Type: application/json' -d '{"hosts":["gen.test"],"subject":"CN=gen.test"}'
check "PKI generation returns its key" grep -q 'PRIVATE KEY' <<<"$T_BODY"
gen=$(echo "$T_BODY" | jget '["certId"]')
api GET "/api/certificates/$gen"
check "then it is redacted" no_key "$T_BODY"

# --- browser safety
api POST /api/certificates -H 'Content-Type: application/json' -H 'Origin: http://evil.test' \
  -d "$(entity_json k2 k1)"
check_eq "foreign Origin -> 403" 403 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: text/plain' -d "$(entity_json k2 k1)"
check_eq "text/plain -> 415" 415 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -H 'Host: rebind.evil.test' \
  -d "$(entity_json k2 k1)"
check_eq "foreign Host -> 403" 403 "$T_STATUS"
curl -s -D "$T_TMP/h" -o /dev/null -X OPTIONS -H "Authorization: Bearer $T_TOKEN" \
  -H 'Origin: http://evil.test' -H 'Access-Control-Request-Method: PUT' \
  "http://127.0.0.1:$T_ADMIN/api/certificates/k1"
check "no Access-Control-Allow-* header" sh -c "! grep -qi '^access-control-allow' '$T_TMP/h'"

# --- audit log
AUD="$T_TMP/data/audit.log"
check_eq "audit log mode 0600" 600 "$(stat -c %a "$AUD")"
check "audit: intent line of the PUT" grep -q '"phase":"intent","token":"admin","source":"127.0.0.1","method":"PUT","path":"/api/certificates/k1"' "$AUD"
fp="sha256:$(openssl x509 -in "$T_TMP/k1.crt" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)"
check "audit: result line with status and key fingerprint" \
  grep -q "\"method\":\"PUT\",\"path\":\"/api/certificates/k1\",\"entity\":\"k1\",\"status\":200,\"keyFingerprint\":\"$fp\"" "$AUD"
check "audit: refused calls are not applied nor logged as results" sh -c "! grep -q '\"token\":\"ro\"' '$AUD'"
check "audit: no key material" sh -c "! grep -q -e 'PRIVATE KEY' -e privateKey '$AUD'"

# --- TLS with client certificates on the admin listener (admin.tls)
mkca sca "Admin server CA"
mkca cca "Admin client CA"
mkca oca "Other CA"
mkleaf adm localhost sca 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth'
mkleaf good "good client" cca 'extendedKeyUsage=clientAuth'
mkleaf other "other client" oca 'extendedKeyUsage=clientAuth'
api POST /api/certificates -H 'Content-Type: application/json' -H "Host: localhost:$T_ADMIN" \
  -d "$(entity_json admin-srv adm)"
check_eq "store the admin listener's certificate" 201 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -H "Host: localhost:$T_ADMIN" \
  -d "$(entity_json admin-clients cca)"
check_eq "store the admin client CA" 201 "$T_STATUS"

# --- rate limit (window of an hour: no timing involved)
for i in 1 2 3 4 5; do
  as wrong-token-0123456789 GET /api/certificates
done
check_eq "5th bad token still 401" 401 "$T_STATUS"
as wrong-token-0123456789 GET /api/certificates
check_eq "6th attempt -> 429" 429 "$T_STATUS"
check "429 carries Retry-After" grep -qiE '^retry-after: [0-9]+' "$T_TMP/h"
as "$T_TOKEN" GET /api/certificates
check_eq "a valid token from that source is refused too" 429 "$T_STATUS"

t_stop
check_eq "clean stop" 0 "$?"

cat > "$T_TMP/torii.json" <<JSON
{
  "data_dir": "$T_TMP/data",
  "workers": 1,
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN", "token": "$T_TOKEN",
            "tls": {"cert": "admin-srv", "client_cas": ["admin-clients"]}}
}
JSON
"$TORII_BIN" -c "$T_TMP/torii.json" >>"$T_TMP/torii.log" 2>&1 &
T_PID=$!
S=(curl -s --cacert "$T_TMP/sca.crt" --resolve "localhost:$T_ADMIN:127.0.0.1"
   -H "Authorization: Bearer $T_TOKEN" -o /dev/null -w '%{http_code}')
URL="https://localhost:$T_ADMIN/api/certificates"
code=000
for _ in $(seq 1 600); do # bounded wait for the listener (up to a minute)
  code=$("${S[@]}" --cert "$T_TMP/good.crt" --key "$T_TMP/good.key" "$URL" 2>/dev/null)
  [ "$code" = 200 ] && break
  kill -0 "$T_PID" 2>/dev/null || break
  sleep 0.1
done
check_eq "TLS admin: a client certificate from the CA -> 200" 200 "$code"
check_eq "TLS admin: no client certificate -> handshake refused" 000 "$("${S[@]}" "$URL" 2>/dev/null)"
check_eq "TLS admin: a client certificate from another CA -> refused" 000 \
  "$("${S[@]}" --cert "$T_TMP/other.crt" --key "$T_TMP/other.key" "$URL" 2>/dev/null)"
check_eq "TLS admin: plain HTTP gets no answer" 000 \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/api/certificates")"
code=$("${S[@]}" --cert "$T_TMP/good.crt" --key "$T_TMP/good.key" -X PATCH \
  -H 'Content-Type: application/json' -H "Origin: http://localhost:$T_ADMIN" \
  -d '[{"op":"replace","path":"/name","value":"n"}]' "https://localhost:$T_ADMIN/api/certificates/k1")
check_eq "TLS admin: an http:// Origin is foreign -> 403" 403 "$code"
code=$("${S[@]}" --cert "$T_TMP/good.crt" --key "$T_TMP/good.key" -X PATCH \
  -H 'Content-Type: application/json' -H "Origin: https://localhost:$T_ADMIN" \
  -d '[{"op":"replace","path":"/name","value":"n"}]' "https://localhost:$T_ADMIN/api/certificates/k1")
check_eq "TLS admin: its own https:// Origin -> 200" 200 "$code"
t_stop
check_eq "clean stop (TLS)" 0 "$?"
t_done
