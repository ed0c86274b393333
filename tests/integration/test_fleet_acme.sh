#!/usr/bin/env bash
# test_fleet_acme.sh - shared ACME challenge answers in a fleet (docs/fleet.md): three etcd
# members, three nodes (A 127.0.0.2, B .3, C .4) and Pebble, whose DNS (pebble-challtestsrv)
# sends every name to B unless told otherwise. Orders run on the node holding the job "acme"
# (one doer per job): A takes it before B and C start. An HTTP-01 order started on A is
# validated by Pebble against B (B's access log and answer counter show the CA's request; A's
# and C's show none), the certificate is valid and served by all three nodes, and the answer
# is withdrawn everywhere (404 on every node, nothing left under the prefix in etcd). A is
# then stopped, the job moves to B or C, and a TLS-ALPN-01 order started on that doer is
# validated against the other one (its name resolves there): that node's counter, not the
# doer's.
# The doer tells the CA to validate only once every member following the answers acknowledged
# the answer (<prefix>k/, docs/fleet.md): its log says so for each answer. With C stopped
# (SIGSTOP) while A publishes, A waits for C (bounded by timeout_ms) and names C in a warning
# before letting the CA try; the job lease is long (60 s) so that C stays a member of the
# fleet throughout, however slow the machine.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"
fleet_pebble_up

# A answers HTTP-01 when it orders, B and C TLS-ALPN-01; every node has acme{}, so every node
# follows the shared answers. Each node has its own access log.
fleet_conf_extra() {
  local chal='"tls-alpn-01"'
  [ "$1" = a ] && chal='"http-01"'
  cat <<JSON
  "acme": {"directory_url": "$P_DIR_URL", "ca_bundle": "$P_CA", "challenges": [$chal]},
  "access_log": {"path": "$T_TMP/$1/access.log"},
JSON
}
FLEET_LEASE_TTL=60
fleet_after_a() { check "node A holds the job acme (alone)" t_wait_for job_doer_is acme a; }
fleet_up
check_eq "A still holds the job acme with B and C up" a "$(job_doer acme)"
members_acme() { # the number of member keys that follow the answers
  ectl get /it/m/ --prefix --print-value-only 2>/dev/null | grep -c '"acme":true'
}
members_are() { [ "$(members_acme)" = "$1" ]; }
check "three members following the answers in etcd (/it/m/)" t_wait_for members_are 3

# order NODE NAME: a synchronous order on NODE's API (bounded by curl's -m 180)
order() {
  local out
  out=$(curl -s -m 180 -X POST -H "Authorization: Bearer $T_TOKEN" -H 'Content-Type: application/json' \
    -w '\n%{http_code}' -d "{\"host\": \"$2\"}" "http://${ADDR[$1]}:$T_ADMIN/api/pki/certs/_letsencrypt")
  T_STATUS=${out##*$'\n'}
  T_BODY=${out%$'\n'*}
}
# answers NODE TYPE: torii_acme_challenge_answers_total{type=TYPE} on NODE
answers() {
  napi "$1" GET /metrics
  local line
  line=$(grep -F "torii_acme_challenge_answers_total{type=\"$2\"}" <<<"$T_BODY" || true)
  printf '%s' "${line##* }"
}
http01_status() { # http01_status NODE TOKEN
  curl -s -o /dev/null -w '%{http_code}' -m 10 "http://${ADDR[$1]}:$T_HTTP/.well-known/acme-challenge/$2"
}
answer_gone() { [ "$(http01_status "$1" "$2")" = 404 ]; }
etcd_answers() { ectl get /it/a/ --prefix --keys-only 2>&1; ectl get /it/k/ --prefix --keys-only 2>&1; }
# confirmed NODE SFX COUNT: NODE's log says every member (COUNT) acknowledged its answer SFX
confirmed() {
  grep -F "fleet: acme answer $2 (revision" "$T_TMP/$1/torii.log" \
    | grep -qF "confirmed by every member following the answers ($3)"
}
etcd_clean() { local o; o=$(etcd_answers) && [ -z "$o" ]; }

# ---- HTTP-01: ordered on A, validated against B
for n in a b c; do
  check_eq "before: node $n answered no http-01 challenge" 0 "$(answers "$n" http-01)"
done
order a shared.fleet.test
check_eq "HTTP-01 order on A: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || { echo "# $T_BODY"; tail -20 "$T_TMP/a/torii.log"; }
acme_check_chain "HTTP-01 via B" shared "$T_BODY"
serial=$(openssl x509 -in "$T_TMP/shared.crt" -noout -serial | sed 's/serial=//')
for n in a b c; do
  check "node $n serves the certificate ordered on A" t_wait_for serves "$n" shared.fleet.test "$serial"
done

# challenge_requests NODE: "token status" of each acme-challenge request in NODE's access log
challenge_requests() {
  python3 - "$T_TMP/$1/access.log" <<'PY'
import json, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for l in lines:
    try:
        d = json.loads(l)
    except ValueError:
        continue
    p = d.get("path", "")
    if p.startswith("/.well-known/acme-challenge/"):
        print(p.rsplit("/", 1)[1], d.get("status"))
PY
}
read -r token tstatus < <(challenge_requests b; echo)
check "B's access log has the CA's HTTP-01 request" test -n "$token"
check_eq "B answered it" 200 "$tstatus"
check "B's counter: the CA reached B" test "$(answers b http-01)" -ge 1
check_eq "A's counter: the CA never reached A" 0 "$(answers a http-01)"
check_eq "C's counter: nor C" 0 "$(answers c http-01)"
for n in a c; do
  check_eq "node $n's access log has no acme-challenge request" "" "$(challenge_requests "$n")"
done
for n in a b c; do
  check "the answer is withdrawn on node $n (404)" t_wait_for answer_gone "$n" "$token"
done
check "nothing left under /it/a/ nor /it/k/ in etcd" t_wait_for etcd_clean
check "A told the CA only once A, B and C had acknowledged h/$token" confirmed a "h/$token" 3
check_eq "A warned about no member" "" "$(grep 'not confirmed after' "$T_TMP/a/torii.log")"

# ---- C stopped while A publishes: A waits for C's acknowledgement, names C, and goes on
kill -STOP "${NPID[c]}"
order a stalled.fleet.test
kill -CONT "${NPID[c]}"
check_eq "HTTP-01 order on A with C stopped: 200 (B answered the CA)" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || { echo "# $T_BODY"; tail -20 "$T_TMP/a/torii.log"; }
stalled=$(grep 'not confirmed after' "$T_TMP/a/torii.log" || true)
echo "# $stalled"
check "A waited timeout_ms for C, then named C in a warning" \
  grep -q "not confirmed after 2000 ms by [^;]*pid ${NPID[c]} (" <<<"$stalled"
check_eq "the warning names C only (B and A confirmed)" 1 "$(grep -o ' pid [0-9]* (' <<<"$stalled" | wc -l)"
read -r token2 _ < <(challenge_requests b | grep -v "^$token " || true; echo)
check "B's access log has the CA's request for the second token" test -n "$token2"
for n in a b c; do
  check "stalled answer withdrawn on node $n (404; C once resumed)" t_wait_for answer_gone "$n" "$token2"
done
check "nothing left under /it/a/ nor /it/k/ in etcd (C's late acknowledgement went nowhere)" \
  t_wait_for etcd_clean

# ---- TLS-ALPN-01: A stopped, the job moves to B or C; ordered on that doer, validated
# against the other one
node_stop a
check "the job acme moved to B or C" t_wait_for job_doer_in acme b c
D=$(job_doer acme)
if [ "$D" = b ]; then E=c; else E=b; fi
echo "# acme doer: $D, validated against: $E"
check "challtestsrv: alpn.fleet.test resolves to node $E" \
  curl -sf -o /dev/null -d "{\"host\": \"alpn.fleet.test\", \"addresses\": [\"${ADDR[$E]}\"]}" \
  "http://127.0.0.1:$P_CHALL/add-a"
order "$D" alpn.fleet.test
check_eq "TLS-ALPN-01 order on the doer $D: 200" 200 "$T_STATUS"
[ "$T_STATUS" = 200 ] || { echo "# $T_BODY"; tail -20 "$T_TMP/$D/torii.log"; }
acme_check_chain "TLS-ALPN-01 via $E" alpn "$T_BODY"
aserial=$(openssl x509 -in "$T_TMP/alpn.crt" -noout -serial | sed 's/serial=//')
check "$E's counter: the CA's acme-tls/1 handshake reached $E" test "$(answers "$E" tls-alpn-01)" -ge 1
check_eq "$D's counter: not the doer" 0 "$(answers "$D" tls-alpn-01)"
for n in b c; do
  check "node $n serves the certificate ordered on $D" t_wait_for serves "$n" alpn.fleet.test "$aserial"
done
check "nothing left under /it/a/ nor /it/k/ in etcd" t_wait_for etcd_clean
check "$D told the CA only once $D and $E had acknowledged t/alpn.fleet.test (A left)" \
  confirmed "$D" t/alpn.fleet.test 2
no_acme_alpn() { # no_acme_alpn NODE: NODE does not negotiate acme-tls/1 for alpn.fleet.test
  local out
  out=$(echo | timeout 10 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" -servername alpn.fleet.test \
    -alpn acme-tls/1 2>&1)
  grep -q 'No ALPN negotiated' <<<"$out"
}
for n in b c; do
  check "after the order: node $n no longer negotiates acme-tls/1" t_wait_for no_acme_alpn "$n"
done

for n in b c; do node_stop "$n"; done
check_eq "nodes stopped cleanly" "" "$NODE_BAD"
t_done
