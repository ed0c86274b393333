#!/usr/bin/env bash
# test_acme.sh - ACME issuance against Pebble (a test CA) on loopback: HTTP-01 (synchronous
# and ?async=true), a multi-name order, the chain verifying against Pebble's root, the
# certificate served by SNI at once, the account reused, a failing validation (clear error,
# nothing stored), and Pebble down (clear error, the proxy and the admin API unaffected).
# Pebble validates against torii's own listeners (httpPort/tlsPort) and resolves every name
# to 127.0.0.1 through pebble-challtestsrv.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$(realpath "$0")")/pebble.sh"
pebble_begin

t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"contacts\": [\"mailto:ops@example.test\"], \"challenges\": [\"http-01\"]},
  \"debug\": {\"clock_hook\": true},"
t_start || exit 1

# The SHA-256 fingerprint (openssl's format) of the certificate served for SNI name $1.
served_subject() {
  python3 - "$T_HTTPS" "$1" <<'PY'
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=sys.argv[2]) as t:
        d = hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest().upper()
print("sha256 Fingerprint=" + ":".join(d[i:i + 2] for i in range(0, len(d), 2)))
PY
}

n0=$(acme_count_certs)

# --- HTTP-01, synchronous ---------------------------------------------------------------
t0=$(date +%s%N)
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "site-a.test"}'
t1=$(date +%s%N)
got=$(served_subject site-a.test)
t2=$(date +%s%N)
check_eq "HTTP-01: synchronous order answers 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
body_a=$T_BODY
check_eq "entity is letsEncrypt" True "$(printf '%s' "$body_a" | jget "['letsEncrypt']")"
check_eq "entity is autoRenew" True "$(printf '%s' "$body_a" | jget "['autoRenew']")"
check_eq "entity names the host" "['site-a.test']" "$(printf '%s' "$body_a" | jget "['sans']")"
check_eq "private key not in the reply" "" "$(printf '%s' "$body_a" | jget ".get('privateKey','')")"
acme_check_chain "HTTP-01" a "$body_a"
want=$(openssl x509 -in "$T_TMP/a.crt" -noout -fingerprint -sha256)
check_eq "served by SNI at once (the first handshake after the reply)" "$want" "$got"
echo "# measure: _letsencrypt -> 200 in $(( (t1 - t0) / 1000000 )) ms, -> served in $(( (t2 - t0) / 1000000 )) ms"
check_eq "one more certificate stored" $((n0 + 1)) "$(acme_count_certs)"
api GET "/api/certificates/$(printf '%s' "$body_a" | jget "['id']")?export=true"
check "stored entity holds the private key" \
  python3 -c 'import json,sys; sys.exit(0 if "PRIVATE KEY" in json.loads(sys.argv[1])["privateKey"] else 1)' "$T_BODY"

# --- multi-name order, asynchronous --------------------------------------------------------
api POST '/api/pki/certs/_letencrypt?async=true' -H 'Content-Type: application/json' \
  -d '{"hosts": ["multi-1.test", "Multi-2.test", "multi-3.test"]}'
check_eq "async: 202" 202 "$T_STATUS"
job=$(printf '%s' "$T_BODY" | jget "['id']")
state=$(acme_job_poll "$job" pending processing)
api GET "/api/pki/acme/jobs/$job"
check_eq "async job ends valid" valid "$state"
[ "$state" = valid ] || echo "# $T_BODY"
mid=$(printf '%s' "$T_BODY" | jget ".get('certId','')")
api GET "/api/certificates/$mid"
check_eq "multi-name certificate covers every name (lower-cased)" \
  "['multi-1.test', 'multi-2.test', 'multi-3.test']" "$(printf '%s' "$T_BODY" | jget "['sans']")"
acme_leaf_of "$T_BODY" "$T_TMP/m.crt"
check_eq "served for the second name" "$(openssl x509 -in "$T_TMP/m.crt" -noout -fingerprint -sha256)" \
  "$(served_subject multi-2.test)"

# --- renewal by the renewal thread: in place, one stored object -----------------------------
aid=$(printf '%s' "$body_a" | jget "['id']")
api GET "/api/certificates/$aid"
from=$(printf '%s' "$T_BODY" | jget "['from']"); to=$(printf '%s' "$T_BODY" | jget "['to']")
old_serial=$(openssl x509 -in "$T_TMP/a.crt" -noout -serial | sed 's/serial=//')
nr=$(acme_count_certs)
api POST /api/certificates/_renew
check_eq "renewal cycle: nothing due yet (not in the last third)" "[]" \
  "$(printf '%s' "$T_BODY" | jget "['renewed']")"
# Into the last third of the validity (Pebble issues for certificateValidityPeriod).
t_clock $(( (to - from) * 7 / 10 ))
api POST /api/certificates/_renew
check "renewal cycle: the ACME certificate renewed" \
  python3 -c 'import json,sys; sys.exit(0 if sys.argv[2] in json.loads(sys.argv[1])["renewed"] else 1)' "$T_BODY" "$aid"
[ "$T_STATUS" = 200 ] || echo "# $T_BODY"
check_eq "renewal: one stored object per certificate, plus the [UNTIL EXPIRATION] copy of each renewed one" \
  $((nr + 2)) "$(acme_count_certs)"
api GET /api/certificates
check "renewal: the previous site-a certificate kept as its [UNTIL EXPIRATION] copy" python3 -c '
import json, sys
cs = json.loads(sys.argv[1])
copies = [c for c in cs if c["name"] == "[UNTIL EXPIRATION] site-a.test"]
sys.exit(0 if len(copies) == 1 and copies[0]["metadata"].get("nextCertificate") == sys.argv[2]
         and not copies[0]["autoRenew"] else 1)' "$T_BODY" "$aid"
api GET "/api/certificates/$aid"
acme_leaf_of "$T_BODY" "$T_TMP/a2.crt"
new_serial=$(openssl x509 -in "$T_TMP/a2.crt" -noout -serial | sed 's/serial=//')
check "renewal: a new certificate under the same id" test "$new_serial" != "$old_serial"
check_eq "renewal: still letsEncrypt" True "$(printf '%s' "$T_BODY" | jget "['letsEncrypt']")"
check_eq "renewal: served at once" "$(openssl x509 -in "$T_TMP/a2.crt" -noout -fingerprint -sha256)" \
  "$(served_subject site-a.test)"
t_clock 0

# --- failing validation: the name points where torii does not listen -----------------------
curl -sf -d '{"host": "elsewhere.test.", "addresses": ["127.0.0.2"]}' "http://127.0.0.1:$P_CHALL/add-a" >/dev/null
nf=$(acme_count_certs)
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "elsewhere.test"}'
check_eq "failing validation: 502" 502 "$T_STATUS"
check "failing validation: the error names the challenge, the name and the CA's reason" \
  grep -q 'acme: http-01 challenge for elsewhere.test: connection: ' <<<"$T_BODY"
[ "$T_STATUS" = 502 ] || echo "# $T_BODY"
check_eq "failing validation: nothing stored" "$nf" "$(acme_count_certs)"
api GET /metrics
check "metrics: the http-01 failure counted" \
  grep -q '^torii_acme_challenge_failures_total{type="http-01"} 1$' <<<"$T_BODY"
check "metrics: orders by outcome (2 orders, 2 renewals)" grep -q '^torii_acme_orders_total{outcome="valid"} 4$' <<<"$T_BODY"

# --- the account is kept in the store and reused after a restart ----------------------------
check "restart" t_stop
t_start || exit 1
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "after-restart.test"}'
check_eq "order after a restart: 200" 200 "$T_STATUS"
accounts=$(grep -oE 'There are now [0-9]+ accounts' "$T_TMP/pebble.log")
check_eq "one account registered with Pebble, reused by every order" \
  "There are now 1 accounts" "$accounts"

# --- bad requests ---------------------------------------------------------------------------
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "10.0.0.1"}'
check_eq "IP literal refused: 400" 400 "$T_STATUS"
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "a.test", "hosts": ["b.test"]}'
check_eq "host and hosts together: 400" 400 "$T_STATUS"
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "a.test", "x": 1}'
check_eq "unknown member: 400" 400 "$T_STATUS"
api GET /api/pki/acme/jobs/nosuchjob
check_eq "unknown job: 404" 404 "$T_STATUS"

# --- failing validation: a wildcard needs dns-01, which is not allowed here -----------------
n1=$(acme_count_certs)
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "*.wild.test"}'
check_eq "no allowed challenge: 502" 502 "$T_STATUS"
check "error names the name and the missing challenge" \
  grep -q 'wild.test: none of acme.challenges is offered' <<<"$T_BODY"
check_eq "nothing stored" "$n1" "$(acme_count_certs)"

# --- Pebble down: a clear error, nothing stored, the proxy unaffected ------------------------
pebble_stop
n2=$(acme_count_certs)
api POST /api/pki/certs/_letsencrypt -H 'Content-Type: application/json' -d '{"host": "down.test"}'
check_eq "CA down: 502" 502 "$T_STATUS"
check "CA down: the error names the directory and the cause" \
  grep -q "acme: $P_DIR_URL: Couldn't connect to server" <<<"$T_BODY"
check_eq "CA down: nothing stored" "$n2" "$(acme_count_certs)"

# --- a CA that accepts connections and never answers: nothing else waits ---------------------
check "stop" t_stop
HOLE=$(t_free_port)
python3 -c 'import socket,sys,time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)' "$HOLE" &
T_BG_PIDS+=($!)
t_wait_port "$HOLE"
t_config "\"acme\": {\"directory_url\": \"https://127.0.0.1:$HOLE/dir\", \"ca_bundle\": \"$P_CA\"},"
t_start || exit 1
api POST '/api/pki/certs/_letsencrypt?async=true' -H 'Content-Type: application/json' -d '{"host": "hole.test"}'
check_eq "silent CA: order queued (202)" 202 "$T_STATUS"
hjob=$(printf '%s' "$T_BODY" | jget "['id']")
check_eq "silent CA: the job is waiting for the CA" processing "$(acme_job_poll "$hjob" pending)"
api GET /api/certificates
check_eq "silent CA: the admin API answers" 200 "$T_STATUS"
check "silent CA: TLS handshakes are served" test -n "$(served "")"
api GET "/api/pki/acme/jobs/$hjob"
check_eq "silent CA: ... while the job still waits (its request times out after 30 s)" processing \
  "$(printf '%s' "$T_BODY" | jget "['status']")"
s0=$(date +%s%N)
check "silent CA: graceful stop" t_stop
s1=$(date +%s%N)
check "silent CA: the stop cuts the CA's request short (< 20 s; it would time out after 30 s)" \
  test $(( (s1 - s0) / 1000000 )) -lt 20000
t_bg_stop

t_done
