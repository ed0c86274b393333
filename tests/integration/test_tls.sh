#!/usr/bin/env bash
# TLS policy of the https listener: protocol versions, key type by the client's signature
# algorithms and (TLS 1.2) cipher suites, CA certificates never served, the chain sent (no
# root), expired certificates, strict SNI, session resumption (a new ticket on each resumed
# handshake), and the no-route 404.
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

# TLS 1.2 without TLS 1.3: the cipher suites fix the certificate type, whatever the sigalgs.
check_eq "TLS 1.2 client offering only ECDHE-RSA suites gets the RSA certificate" "$(serial_of r1)" \
  "$(served k.example.test '-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256')"
check_eq "TLS 1.2 client offering only ECDHE-ECDSA suites gets the ECDSA certificate" \
  "$(serial_of e1)" "$(served k.example.test '-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256')"
check_eq "TLS 1.2 client offering both suites gets the ECDSA certificate" "$(serial_of e1)" \
  "$(served k.example.test '-tls1_2')"
check_eq "TLS 1.3 client with ECDSA sigalgs gets the ECDSA certificate" "$(serial_of e1)" \
  "$(served k.example.test '-tls1_3 -sigalgs ECDSA+SHA256')"
check_eq "TLS 1.3 client with RSA sigalgs gets the RSA certificate" "$(serial_of r1)" \
  "$(served k.example.test '-tls1_3 -sigalgs RSA-PSS+SHA256')"
check_eq "TLS 1.3 client with RSA sigalgs and only TLS 1.2 ECDSA suites: RSA" "$(serial_of r1)" \
  "$(served k.example.test '-sigalgs RSA-PSS+SHA256 -cipher ECDHE-ECDSA-AES128-GCM-SHA256')"

# TLS 1.3 suites in the server's order (Mozilla intermediate): AES-128-GCM for a client that
# lists AES-256-GCM first (OpenSSL's default), the others still taken when offered alone.
suite() { # s_client args -> the negotiated cipher
  local out
  out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername k.example.test \
        -tls1_3 "$@" 2>/dev/null)
  sed -n 's/^New, TLSv1.3, Cipher is //p' <<<"$out"
}
check_eq "TLS 1.3: AES-128-GCM chosen over the client's AES-256-GCM first" TLS_AES_128_GCM_SHA256 \
  "$(suite -ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256)"
check_eq "TLS 1.3: AES-256-GCM when offered alone" TLS_AES_256_GCM_SHA384 \
  "$(suite -ciphersuites TLS_AES_256_GCM_SHA384)"
check_eq "TLS 1.3: ChaCha20 for a client that lists it first" TLS_CHACHA20_POLY1305_SHA256 \
  "$(suite -ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256)"

# A CA certificate (CA:TRUE, keyUsage digitalSignature+keyCertSign, no EKU: the TLS server
# purpose check alone would accept it) is stored but never served for its names; the API
# response says why, and sending that response back is accepted (the field is dropped).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/ca1.key" 2>/dev/null
openssl req -x509 -new -key "$T_TMP/ca1.key" -out "$T_TMP/ca1.crt" -days 30 \
  -subj /CN=ca.example.test -addext subjectAltName=DNS:ca.example.test \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=digitalSignature,keyCertSign \
  2>/dev/null
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json ca-leafy ca1)"
check_eq "CA certificate with a key accepted by the API" 201 "$T_STATUS"
check_eq "API response warns that a CA certificate is not served" \
  "['not served by SNI: CA certificate (basicConstraints CA:TRUE)']" \
  "$(echo "$T_BODY" | jget '["warnings"]')"
check_eq "CA certificate not served for its name" "$default_serial" "$(served ca.example.test)"
check "the warning is logged" grep -q 'not served by SNI: CA certificate.*id=ca-leafy' \
  "$T_TMP/torii.log"
api PUT /api/certificates/ca-leafy -H 'Content-Type: application/json' -d "$T_BODY"
check_eq "PUT of a response carrying warnings accepted" 200 "$T_STATUS"
api GET /api/certificates/ca-leafy
check_eq "warnings are not stored" False "$(echo "$T_BODY" | jget '.__contains__("warnings")')"
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json k-ec2 e1)"
check_eq "a leaf gets no warnings" False "$(echo "$T_BODY" | jget '.__contains__("warnings")')"
api DELETE /api/certificates/k-ec2

# The chain sent leaves out the self-signed root: torii's default certificate goes with its
# intermediate only, and still verifies against the root fetched from the AIA endpoint.
curl -s "http://127.0.0.1:$T_HTTP/.well-known/torii/ca/torii-root-ca" \
  | openssl x509 -inform DER -out "$T_TMP/root.pem" 2>/dev/null
n_sent=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -showcerts 2>/dev/null \
         | grep -c 'BEGIN CERTIFICATE')
check_eq "default certificate: leaf and intermediate on the wire, no root" 2 "$n_sent"
check "served chain verifies against the torii root CA" sh -c \
  "echo | timeout 10 openssl s_client -connect 127.0.0.1:$T_HTTPS -servername localhost \
     -verify_return_error -CAfile $T_TMP/root.pem >/dev/null 2>&1"
n_sent=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" \
         -servername k.example.test -showcerts 2>/dev/null | grep -c 'BEGIN CERTIFICATE')
check_eq "a self-signed leaf is still sent" 1 "$n_sent"

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
# Each resumed TLS 1.3 handshake brings a new ticket: a client that always offers the newest
# session (and never one twice, RFC 8446 C.4) resumes every time. The request closes the
# connection, so s_client has read the ticket (sent before the answer) when it ends.
creq() { printf 'GET / HTTP/1.1\r\nHost: k.example.test\r\nConnection: close\r\n\r\n'; }
creq | timeout 60 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername k.example.test \
  -tls1_3 -ign_eof -sess_out "$T_TMP/chain0.pem" >/dev/null 2>&1
chain_reused=0
chain_new=0
for i in 1 2 3 4 5; do
  out=$(creq | timeout 60 openssl s_client -connect "127.0.0.1:$T_HTTPS" \
        -servername k.example.test -tls1_3 -ign_eof -sess_in "$T_TMP/chain$((i - 1)).pem" \
        -sess_out "$T_TMP/chain$i.pem" 2>/dev/null)
  if echo "$out" | grep -q '^Reused'; then chain_reused=$((chain_reused + 1)); fi
  if [ -s "$T_TMP/chain$i.pem" ] && ! cmp -s "$T_TMP/chain$((i - 1)).pem" "$T_TMP/chain$i.pem"; then
    chain_new=$((chain_new + 1))
  fi
done
check_eq "newest-session chain: every handshake resumed" 5 "$chain_reused"
check_eq "newest-session chain: every resumed handshake brought a new ticket" 5 "$chain_new"

# HTTP over the TLS listener: no route yet -> 404 JSON.
code=$(curl -sk -o "$T_TMP/body" -w '%{http_code}' --resolve "k.example.test:$T_HTTPS:127.0.0.1" \
       "https://k.example.test:$T_HTTPS/")
check_eq "https request without a route -> 404" 404 "$code"
check "404 body is JSON" grep -q '"error"' "$T_TMP/body"

t_stop
check_eq "graceful stop exits 0" 0 $?

# Strict SNI: unknown names get an unrecognized_name alert, no SNI still gets the default.
# (A short idle timeout for the silent client below.)
t_config '"tls": {"strict_sni": true}, "limits": {"idle_timeout_ms": 1000},'
t_start || exit 1
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername nope.example.test 2>&1)
check "strict SNI: unknown name -> unrecognized_name alert" sh -c "echo \"\$0\" | grep -qi 'unrecognized name'" "$out"
check_eq "strict SNI: known name still served" "$(serial_of e1)" "$(served k.example.test)"
check_eq "strict SNI: no SNI gets the default" "$default_serial" "$(served "")"
# The https listener defers the accept until the ClientHello is there (TCP_DEFER_ACCEPT): a
# client that connects and says nothing is still handed over (after about a second) and
# closed by the idle timeout, and one that speaks late gets its handshake.
silent=$(python3 - "$T_HTTPS" <<'PY'
import socket, ssl, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
t0 = time.time()
closed = False
s.settimeout(0.2)
while not closed and time.time() - t0 < 60:
    try:
        closed = s.recv(1) == b""
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
c = socket.create_connection(("127.0.0.1", port))
time.sleep(0.3)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(c, server_hostname="k.example.test")
print("closed" if closed else "open", t.version())
PY
)
check_eq "silent client closed by the idle timeout; a late ClientHello still served" \
  "closed TLSv1.3" "$silent"
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
