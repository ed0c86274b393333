#!/usr/bin/env bash
# Client certificates through the real daemon: backend mTLS (torii presents a certificate from
# its store to `openssl s_server -Verify 1 -verify_return_error`, verifies the backend against
# a CA from its store, follows a replaced certificate without a restart) and edge mTLS per
# route (curl --cert: accepted with RFC 9440 headers, no certificate, another CA, expired,
# revoked in the store, optional mode, spoofed headers stripped).
here=$(dirname "$0")
source "$here/lib.sh"
trap 't_bg_stop; t_cleanup' EXIT

B_PORT=$(t_free_port)  # openssl s_server (backend mTLS)
E_PORT=$(t_free_port)  # plain HTTP echo backend (edge mTLS routes)

# ---- certificates ----
mkca cca "Client CA"                    # signs client certificates (edge) and torii's own
mkca oca "Other CA"                     # a CA nobody trusts
mkca bca "Backend CA"                   # signs the backend's server certificate
mkleaf good "good client" cca 'extendedKeyUsage=clientAuth'
mkleaf other "other client" oca 'extendedKeyUsage=clientAuth'
mkleaf revk "revoked client" cca 'extendedKeyUsage=clientAuth'
mkleaf old "expired client" cca 'extendedKeyUsage=clientAuth' -1
mkleaf up1 "torii upstream one" cca 'extendedKeyUsage=clientAuth'
mkleaf up2 "torii upstream two" cca 'extendedKeyUsage=clientAuth'
mkleaf bk "backend" bca \
  'subjectAltName=DNS:backend.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
mkcert edge ec 30 mtls.example.test,opt.example.test,back.example.test,backip.example.test,badca.example.test,badname.example.test

# ---- backends ----
openssl s_server -accept "$B_PORT" -cert "$T_TMP/bk.crt" -key "$T_TMP/bk.key" \
  -Verify 1 -verify_return_error -CAfile "$T_TMP/cca.crt" -www >"$T_TMP/s_server.log" 2>&1 &
T_BG_PIDS+=($!)
t_wait_port "$B_PORT" || fail "openssl s_server did not start"
t_echo_start "$E_PORT" || fail "echo backend did not start"

# ---- daemon: routes name certificate ids that do not exist yet (resolved at use) ----
mtls_route() { # host mode
  printf '{"hosts": ["%s"], "backend": {"targets": ["http://127.0.0.1:%s"]},
           "client_auth": {"mode": "%s", "trusted_cas": ["cca"]}},' "$1" "$E_PORT" "$2"
}
t_config "\"routes\": [
  $(mtls_route mtls.example.test required)
  $(mtls_route opt.example.test optional)
  {\"hosts\": [\"back.example.test\"], \"backend\": {\"targets\": [\"https://127.0.0.1:$B_PORT\"],
   \"tls\": {\"trusted_ca\": \"bca\", \"client_cert\": \"up-client\", \"sni\": \"backend.test\"}}},
  {\"hosts\": [\"backip.example.test\"], \"backend\": {\"targets\": [\"https://127.0.0.1:$B_PORT\"],
   \"tls\": {\"trusted_ca\": \"bca\", \"client_cert\": \"up-client\"}}},
  {\"hosts\": [\"badca.example.test\"], \"backend\": {\"targets\": [\"https://127.0.0.1:$B_PORT\"],
   \"tls\": {\"trusted_ca\": \"oca\", \"client_cert\": \"up-client\", \"sni\": \"backend.test\"}}},
  {\"hosts\": [\"badname.example.test\"], \"backend\": {\"targets\": [\"https://127.0.0.1:$B_PORT\"],
   \"tls\": {\"trusted_ca\": \"bca\", \"client_cert\": \"up-client\", \"sni\": \"other.test\"}}}
],"
t_start || exit 1

# get HOST [curl args...] -> prints the status code (000 when TLS failed); body in $T_TMP/body
get() {
  local h=$1; shift
  curl -sk -o "$T_TMP/body" -w '%{http_code}' --max-time 10 \
    --resolve "$h:$T_HTTPS:127.0.0.1" "https://$h:$T_HTTPS/" "$@" 2>/dev/null
}
post_entity() { # id name [extra]
  api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json "$1" "$2" "${3:-}")"
  check_eq "import $1 -> 201" 201 "$T_STATUS"
}

# ---- backend mTLS ----
post_entity edge edge
check_eq "backend: client certificate not in the store yet -> 502" 502 "$(get back.example.test)"
post_entity cca cca
post_entity oca oca
post_entity bca bca
post_entity up-client up1 '{"client": true}'
check_eq "backend mTLS with the store's client certificate -> 200" 200 "$(get back.example.test)"
check "backend saw torii's client certificate" grep -q "torii upstream one" "$T_TMP/s_server.log"
check "backend page served through torii" grep -qi "s_server" "$T_TMP/body"
check_eq "backend by IP target (IP SAN verified, no SNI) -> 200" 200 "$(get backip.example.test)"
check_eq "backend signed by an untrusted CA -> 502" 502 "$(get badca.example.test)"
check_eq "backend name mismatch -> 502" 502 "$(get badname.example.test)"

# Replace the client certificate in the store: the next upstream connection presents it.
api PUT /api/certificates/up-client -H 'Content-Type: application/json' \
  -d "$(entity_json up-client up2 '{"client": true}')"
check_eq "replace up-client -> 200" 200 "$T_STATUS"
check_eq "backend mTLS after the replacement -> 200" 200 "$(get back.example.test)"
check "backend saw the replaced client certificate (no restart)" \
  grep -q "torii upstream two" "$T_TMP/s_server.log"

# ---- edge mTLS ----
post_entity good-client good '{"client": true}'
post_entity revoked-client revk '{"client": true, "revoked": true}'
good=(--cert "$T_TMP/good.crt" --key "$T_TMP/good.key")

check_eq "edge: trusted client certificate -> 200" 200 "$(get mtls.example.test "${good[@]}")"
check_eq "edge: Client-Cert forwarded (RFC 9440)" "$(sf_cert good)" \
  "$(jget '.get("client-cert")' <"$T_TMP/body")"
check_eq "edge: spoofed Client-Cert replaced by the real one" "$(sf_cert good)" \
  "$(get mtls.example.test "${good[@]}" -H 'Client-Cert: :AAAA:' >/dev/null;
     jget '.get("client-cert")' <"$T_TMP/body")"
check_eq "edge: no client certificate -> handshake refused" 000 "$(get mtls.example.test)"
check_eq "edge: certificate of another CA -> 403" 403 \
  "$(get mtls.example.test --cert "$T_TMP/other.crt" --key "$T_TMP/other.key")"
check "edge: 403 body is JSON with an error" jget '["error"]' <"$T_TMP/body" >/dev/null
check_eq "edge: expired certificate -> 403" 403 \
  "$(get mtls.example.test --cert "$T_TMP/old.crt" --key "$T_TMP/old.key")"
check_eq "edge: certificate revoked in the store -> 403" 403 \
  "$(get mtls.example.test --cert "$T_TMP/revk.crt" --key "$T_TMP/revk.key")"
check_eq "edge optional: no certificate -> 200" 200 "$(get opt.example.test -H 'Client-Cert: :AAAA:')"
check_eq "edge optional: spoofed Client-Cert stripped" None \
  "$(jget '.get("client-cert")' <"$T_TMP/body")"
check_eq "edge optional: trusted certificate -> 200" 200 "$(get opt.example.test "${good[@]}")"
check_eq "edge optional: certificate of another CA -> 403" 403 \
  "$(get opt.example.test --cert "$T_TMP/other.crt" --key "$T_TMP/other.key")"
check_eq "edge: no route policy on the backend route (no certificate asked) -> 200" 200 \
  "$(get back.example.test)"

# Revoke at run time: the next connection is refused.
api PATCH /api/certificates/good-client -H 'Content-Type: application/json' \
  -d '[{"op": "replace", "path": "/revoked", "value": true}]'
check_eq "revoke good-client -> 200" 200 "$T_STATUS"
check_eq "edge: certificate revoked at run time -> 403" 403 "$(get mtls.example.test "${good[@]}")"

# Trusted CA removed from the store: nothing is trusted any more.
api PATCH /api/certificates/good-client -H 'Content-Type: application/json' \
  -d '[{"op": "replace", "path": "/revoked", "value": false}]'
check_eq "edge: un-revoked -> 200" 200 "$(get mtls.example.test "${good[@]}")"
api DELETE /api/certificates/cca
check_eq "delete cca -> 200" 200 "$T_STATUS"
check_eq "edge: trusted CA deleted -> 403" 403 "$(get mtls.example.test "${good[@]}")"

check "daemon stops cleanly" t_stop
t_bg_stop
t_done
