#!/usr/bin/env bash
# TLS policy of the https listener: protocol versions, key type by the client's signature
# algorithms, expired certificates, strict SNI, session resumption, and the no-route 404.
here=$(dirname "$0")
source "$here/lib.sh"

t_config
t_start || exit 1
default_serial=$(served "")

mkcert e1 ec 30 k.example.test
mkcert r1 rsa 30 k.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json k-ec e1)"
check_eq "POST ECDSA -> 201" 201 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json k-rsa r1)"
check_eq "POST RSA -> 201" 201 "$T_STATUS"
check_eq "ECDSA preferred when offered" "$(serial_of e1)" "$(served k.example.test)"
check_eq "RSA when the client offers only RSA" "$(serial_of r1)" \
  "$(served k.example.test '-sigalgs RSA-PSS+SHA256:RSA+SHA256')"
check_eq "ECDSA when the client offers only ECDSA" "$(serial_of e1)" \
  "$(served k.example.test '-sigalgs ECDSA+SHA256')"
check_eq "TLS 1.2 client gets a certificate too" "$(serial_of r1)" \
  "$(served k.example.test '-tls1_2 -sigalgs RSA+SHA256')"
check_eq "trailing dot ignored" "$(serial_of e1)" "$(served k.example.test.)"

# Protocol floor: TLS 1.1 and below are refused.
if echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername k.example.test \
     -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' >/dev/null 2>&1; then
  fail "TLS 1.1 refused"
else
  ok "TLS 1.1 refused"
fi
proto=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername k.example.test 2>/dev/null \
        | awk -F', ' '/^New, / {print $2; exit}')
check_eq "TLS 1.3 negotiated by default" TLSv1.3 "$proto"

# An expired certificate is stored (valid=false) but never served.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/x.key" 2>/dev/null
openssl req -new -key "$T_TMP/x.key" -subj /CN=x.example.test -out "$T_TMP/x.csr" 2>/dev/null
printf 'subjectAltName=DNS:x.example.test\n' > "$T_TMP/x.ext"
# OpenSSL 3.0 has no -not_after: -days -1 gives notAfter one day before now.
openssl x509 -req -in "$T_TMP/x.csr" -signkey "$T_TMP/x.key" -days -1 \
  -extfile "$T_TMP/x.ext" -out "$T_TMP/x.crt" 2>/dev/null
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json x-exp x)"
check_eq "expired certificate accepted by the API" 201 "$T_STATUS"
check_eq "expired certificate marked invalid" False "$(echo "$T_BODY" | jget '["valid"]')"
check_eq "expired certificate not served" "$default_serial" "$(served x.example.test)"

# Resumption with a session ticket.
# (TLS 1.3 tickets arrive after the handshake: send a request that closes the connection
# and keep s_client until torii closed it (-ign_eof), so the ticket is in whatever the speed.)
sess="$T_TMP/sess.pem"
req() { printf 'GET / HTTP/1.1\r\nHost: k.example.test\r\nConnection: close\r\n\r\n'; }
req | timeout 60 openssl s_client -ign_eof -connect "127.0.0.1:$T_HTTPS" \
  -servername k.example.test -sess_out "$sess" >/dev/null 2>&1
reused=$(req | timeout 60 openssl s_client -ign_eof -connect "127.0.0.1:$T_HTTPS" \
  -servername k.example.test -sess_in "$sess" 2>/dev/null | grep -c '^Reused')
check_eq "session ticket resumes" 1 "$reused"

# HTTP over the TLS listener: no route yet -> 404 JSON.
code=$(curl -sk -o "$T_TMP/body" -w '%{http_code}' --resolve "k.example.test:$T_HTTPS:127.0.0.1" \
       "https://k.example.test:$T_HTTPS/")
check_eq "https request without a route -> 404" 404 "$code"
check "404 body is JSON" grep -q '"error"' "$T_TMP/body"

t_stop
check_eq "graceful stop exits 0" 0 $?

# Strict SNI: unknown names get an unrecognized_name alert, no SNI still gets the default.
t_config '"tls": {"strict_sni": true},'
t_start || exit 1
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername nope.example.test 2>&1)
check "strict SNI: unknown name -> unrecognized_name alert" sh -c "echo \"\$0\" | grep -qi 'unrecognized name'" "$out"
check_eq "strict SNI: known name still served" "$(serial_of e1)" "$(served k.example.test)"
check_eq "strict SNI: no SNI gets the default" "$default_serial" "$(served "")"
t_stop
check_eq "graceful stop exits 0" 0 $?

# Config checks.
echo '{"nope": 1}' > "$T_TMP/bad.json"
if "$TORII_BIN" --check-config -c "$T_TMP/bad.json" >/dev/null 2>&1; then
  fail "unknown config key rejected"
else
  ok "unknown config key rejected"
fi
check "example config is valid" "$TORII_BIN" --check-config -c "$here/../../conf/torii.json"
t_done
