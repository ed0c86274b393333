#!/usr/bin/env bash
# A large store on one node (issue 15 item 6, at test size): 5,000 certificates made by
# torii-fill (1,000 in a sanitized build). Start-up loads only what selection needs, so
# every certificate is served by its name at its first handshake (the record and key read
# from the store then); the /metrics gauges, loaded in the background, count them all; an
# API write (POST of a new name, PUT over a stored id, DELETE) is served by the very next
# handshake. Every wait is a bounded poll.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

N=5000
[ "$T_SANITIZED" = 1 ] && N=1000
FILL="$(dirname "$TORII_BIN")/tests/torii-fill"
[ -x "$FILL" ] || FILL="$(dirname "$TORII_BIN")/torii-fill"
[ -x "$FILL" ] || { echo "torii-fill not built next to $TORII_BIN"; exit 1; }

t_config '"tls": {"default_cert": "bench-0"},'
# The first start creates the built-in CAs; the fill goes into that store, as bench_big.sh.
t_start || exit 1
t_stop || fail "first stop"
check "torii-fill writes $N certificates" "$FILL" "$T_TMP/data" "$N"
t0=$(date +%s%N)
t_start || exit 1
echo "start-up with $N certificates: $(( ($(date +%s%N) - t0) / 1000000 )) ms (admin up)"
check "the ready line counts every certificate" grep -q "ready: $((N + 2)) certificates" "$T_TMP/torii.log"

# The subject CN served for SNI $1.
served_cn() {
  echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername "$1" 2>/dev/null \
    | openssl x509 -noout -subject -nameopt multiline 2>/dev/null | awk -F'= ' '/commonName/ {print $2}'
}
bad=0
for i in 1 $((N / 3)) $((N / 2)) $((N - 2)) $((N - 1)); do
  got=$(served_cn "h$i.bench.test")
  [ "$got" = "h$i.bench.test" ] || { bad=$((bad + 1)); echo "h$i.bench.test served CN '$got'"; }
done
check_eq "first handshakes serve each name's own certificate" 0 "$bad"

metrics=$(curl -s -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/metrics")
check_eq "/metrics counts every certificate (background load)" "$((N + 2))" \
  "$(awk '$1 == "torii_certificates{state=\"all\"}" {print $2}' <<<"$metrics")"

# Writes: each one served by the next handshake.
mkcert newname ec 30 new.big.test
api POST /api/certificates -H 'Content-Type: application/json' \
  -d "$(python3 -c 'import json,sys; print(json.dumps({"id":"big-new","chain":open(sys.argv[1]).read(),"privateKey":open(sys.argv[2]).read()}))' "$T_TMP/newname.crt" "$T_TMP/newname.key")"
check_eq "POST a new certificate" 201 "$T_STATUS"
check_eq "the next handshake serves it" "$(serial_of newname)" "$(served new.big.test)"
mkcert repl ec 30 "h7.bench.test"
api PUT /api/certificates/bench-7 -H 'Content-Type: application/json' \
  -d "$(python3 -c 'import json,sys; print(json.dumps({"id":"bench-7","chain":open(sys.argv[1]).read(),"privateKey":open(sys.argv[2]).read()}))' "$T_TMP/repl.crt" "$T_TMP/repl.key")"
check_eq "PUT over a stored certificate" 200 "$T_STATUS"
check_eq "the next handshake serves the replacement" "$(serial_of repl)" "$(served h7.bench.test)"
api DELETE /api/certificates/bench-9
check_eq "DELETE a stored certificate" 200 "$T_STATUS"
check_eq "the next handshake gets the default certificate" "h0.bench.test" "$(served_cn h9.bench.test)"
t_stop || fail "daemon exit status (sanitizer report?)"
t_done
