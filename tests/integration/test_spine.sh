#!/usr/bin/env bash
# The spine end to end: certificates created, replaced, revoked and deleted through
# /api/certificates apply to the next TLS handshake; the store survives restart and kill -9;
# bad input changes nothing; every admin call is authenticated.
here=$(dirname "$0")
source "$here/lib.sh"

t_config
t_start || exit 1

default_serial=$(served "")
check "default certificate served without SNI" test -n "$default_serial"
check_eq "unknown name gets the default certificate" "$default_serial" "$(served unknown.example.test)"

# --- authentication
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/api/certificates")
check_eq "no credentials -> 401" 401 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong-token-xxxxxxxx" \
       "http://127.0.0.1:$T_ADMIN/api/certificates")
check_eq "wrong bearer -> 401" 401 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$T_TOKEN" "http://127.0.0.1:$T_ADMIN/api/certificates")
check_eq "basic auth -> 200" 200 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Otoroshi-Client-Id: admin" \
       -H "Otoroshi-Client-Secret: $T_TOKEN" "http://127.0.0.1:$T_ADMIN/api/certificates")
check_eq "otoroshi headers -> 200" 200 "$code"

# --- create and serve
mkcert a1 ec 30 a.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json cert-a a1)"
check_eq "POST certificate -> 201" 201 "$T_STATUS"
check_eq "derived domain" a.example.test "$(echo "$T_BODY" | jget '["domain"]')"
check_eq "derived valid" True "$(echo "$T_BODY" | jget '["valid"]')"
check_eq "a.example.test served after POST" "$(serial_of a1)" "$(served a.example.test)"
check_eq "SNI is case-insensitive" "$(serial_of a1)" "$(served A.Example.TEST)"

# --- replace the chain
mkcert a2 rsa 60 a.example.test
api PUT /api/certificates/cert-a -H 'Content-Type: application/json' -d "$(entity_json cert-a a2)"
check_eq "PUT new chain -> 200" 200 "$T_STATUS"
check_eq "next handshake gets the new chain" "$(serial_of a2)" "$(served a.example.test)"

# --- GET then PUT keeps the key
api GET /api/certificates/cert-a
body=$T_BODY
api PUT /api/certificates/cert-a -H 'Content-Type: application/json' -d "$body"
check_eq "GET-then-PUT round trip -> 200" 200 "$T_STATUS"
check "GET-then-PUT keeps the private key" \
  test -n "$(echo "$T_BODY" | jget '["privateKey"]')"
check_eq "still served after round trip" "$(serial_of a2)" "$(served a.example.test)"

# --- wildcard and exact together
mkcert w1 ec 30 '*.example.test'
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json cert-w w1)"
check_eq "POST wildcard -> 201" 201 "$T_STATUS"
check_eq "wildcard serves b.example.test" "$(serial_of w1)" "$(served b.example.test)"
check_eq "exact still wins for a.example.test" "$(serial_of a2)" "$(served a.example.test)"
check_eq "wildcard does not cover two labels" "$default_serial" "$(served x.b.example.test)"
check_eq "wildcard does not cover the apex" "$default_serial" "$(served example.test)"

# --- revoke
api PATCH /api/certificates/cert-a -H 'Content-Type: application/json' \
  -d '[{"op":"replace","path":"/revoked","value":true}]'
check_eq "PATCH revoked=true -> 200" 200 "$T_STATUS"
check_eq "revoked certificate no longer served (wildcard takes over)" "$(serial_of w1)" "$(served a.example.test)"
api PATCH /api/certificates/cert-a -H 'Content-Type: application/merge-patch+json' -d '{"revoked":false}'
check_eq "merge patch revoked=false -> 200" 200 "$T_STATUS"
check_eq "un-revoked certificate served again" "$(serial_of a2)" "$(served a.example.test)"

# --- bad inputs change nothing
api GET /api/certificates
before=$T_BODY
api POST /api/certificates -H 'Content-Type: application/json' -d '{"id":"bad1","chain":"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"}'
check_eq "garbage PEM -> 400" 400 "$T_STATUS"
check "error body is JSON with error" sh -c "echo '$T_BODY' | grep -q '\"error\"'"
mkcert k1 ec 30 k.example.test
mkcert k2 ec 30 k.example.test
python3 - "$T_TMP" > "$T_TMP/mismatch.json" <<'PY'
import json, sys
d = sys.argv[1]
print(json.dumps({"id": "bad2", "chain": open(d + "/k1.crt").read(), "privateKey": open(d + "/k2.key").read()}))
PY
api POST /api/certificates -H 'Content-Type: application/json' -d @"$T_TMP/mismatch.json"
check_eq "key not matching the certificate -> 400" 400 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d '{"id":"bad3","chain":""}'
check_eq "empty chain -> 400" 400 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d '{"id":"bad4",'
check_eq "malformed JSON -> 400" 400 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: text/plain' -d '{}'
check_eq "wrong content type -> 415" 415 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json cert-w w1)"
check_eq "duplicate id -> 409" 409 "$T_STATUS"
api PATCH /api/certificates/cert-a -H 'Content-Type: application/json' -d '[{"op":"replace","path":"/nope/x","value":1}]'
check_eq "invalid JSON patch -> 400" 400 "$T_STATUS"
api GET /api/certificates/does-not-exist
check_eq "unknown id -> 404" 404 "$T_STATUS"
api GET /api/certificates
check_eq "store unchanged after bad inputs" "$before" "$T_BODY"

# --- restart keeps everything
t_stop
check_eq "graceful stop exits 0" 0 $?
t_start || exit 1
check_eq "after restart a.example.test still served" "$(serial_of a2)" "$(served a.example.test)"
check_eq "after restart wildcard still served" "$(serial_of w1)" "$(served c.example.test)"
check_eq "default certificate kept across restart" "$default_serial" "$(served "")"

# --- kill -9 right after a 201
mkcert d1 ec 30 d.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json cert-d d1)"
check_eq "POST before kill -> 201" 201 "$T_STATUS"
t_kill9
t_start || exit 1
check_eq "certificate committed before 201 survives kill -9" "$(serial_of d1)" "$(served d.example.test)"

# --- delete
api DELETE /api/certificates/cert-w
check_eq "DELETE -> 200" 200 "$T_STATUS"
check_eq "deleted wildcard no longer served" "$default_serial" "$(served b.example.test)"
api DELETE /api/certificates/cert-w
check_eq "DELETE again -> 404" 404 "$T_STATUS"

t_stop
check_eq "graceful stop exits 0" 0 $?
t_done
