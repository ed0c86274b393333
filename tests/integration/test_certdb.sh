#!/usr/bin/env bash
# The certificate write path through certdb, on the real daemon: one chain parse per create
# and per replace (metric torii_pki_chain_parses_total), a _bulk request committed as one
# batch that still answers line by line (a bad line fails alone, a later line sees an earlier
# one), the serial index serving a CA referenced by its serial, and everything written
# served by SNI after a restart.
here=$(dirname "$0")
source "$here/lib.sh"

parses() {
  local m
  m=$(curl -s -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/metrics")
  awk '$1 == "torii_pki_chain_parses_total" { print $2 }' <<<"$m"
}

t_config
t_start || exit 1
mkcert one ec 30 one.certdb.test
mkcert two ec 30 two.certdb.test
mkcert three rsa 30 three.certdb.test

# --- one parse per write
p0=$(parses)
api POST /api/certificates -H 'Content-Type: application/json' --data-binary "$(entity_json one one)"
check_eq "POST -> 201" 201 "$T_STATUS"
p1=$(parses)
check_eq "POST parses the chain once" 1 $((p1 - p0))
api PUT /api/certificates/one -H 'Content-Type: application/json' \
  --data-binary "$(entity_json one one '{"description": "put"}')"
check_eq "PUT -> 200" 200 "$T_STATUS"
p2=$(parses)
check_eq "PUT parses the chain once" 1 $((p2 - p1))
api PUT /api/certificates/one -H 'Content-Type: application/json' \
  --data-binary "$(entity_json one one '{"privateKey": ""}')"
check_eq "PUT without a key -> 200" 200 "$T_STATUS"
check_eq "PUT without a key parses the chain once" 1 $(($(parses) - p2))
check_eq "PUT without a key kept the key" true "$(echo "$T_BODY" | jget '["valid"]' | tr A-Z a-z)"

# --- _bulk: one batch, results per line, in order
{
  entity_json two two
  echo '{"id": "broken", "chain": "not a certificate"}'
  entity_json three three
  entity_json two two '{"description": "again"}'
} >"$T_TMP/bulk.ndjson"
api POST /api/certificates/_bulk -H 'Content-Type: application/x-ndjson' \
  --data-binary @"$T_TMP/bulk.ndjson"
check_eq "_bulk -> 200" 200 "$T_STATUS"
mapfile -t lines < <(printf '%s\n' "$T_BODY" | grep .)
check_eq "_bulk: 4 result lines" 4 "${#lines[@]}"
check_eq "_bulk line 1 created" 201 "$(echo "${lines[0]}" | jget '["status"]')"
check_eq "_bulk line 2 (bad chain) alone fails" 400 "$(echo "${lines[1]}" | jget '["status"]')"
check_eq "_bulk line 3 created" 201 "$(echo "${lines[2]}" | jget '["status"]')"
check_eq "_bulk line 4 sees line 1: already exists" 409 "$(echo "${lines[3]}" | jget '["status"]')"
api GET /api/certificates/broken
check_eq "the bad line stored nothing" 404 "$T_STATUS"

# --- a CA found by its serial (the serial index, no scan)
api POST /api/pki/cas -H 'Content-Type: application/json' \
  --data-binary '{"subject": "CN=certdb CA", "key": {"algo": "ecdsa", "size": 256}}'
check_eq "CA -> 200" 200 "$T_STATUS"
ca_serial=$(echo "$T_BODY" | python3 -c 'import json,sys,subprocess
e = json.load(sys.stdin)
out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=e["chain"].encode(),
                     capture_output=True).stdout.decode()
print(out.strip().split("=")[1])')
api POST "/api/pki/cas/$ca_serial/certs" -H 'Content-Type: application/json' \
  --data-binary '{"subject": "CN=by-serial.certdb.test", "hosts": ["by-serial.certdb.test"]}'
check_eq "issue from a CA named by its serial -> 200" 200 "$T_STATUS"

# --- a restart serves what was written
t_stop
t_start || exit 1
check_eq "after restart: one.certdb.test served" "$(serial_of one)" "$(served one.certdb.test)"
check_eq "after restart: three.certdb.test (from _bulk) served" "$(serial_of three)" \
  "$(served three.certdb.test)"
t_stop
check_eq "clean stop" 0 "$?"
t_done
