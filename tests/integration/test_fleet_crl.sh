#!/usr/bin/env bash
# test_fleet_crl.sh - the fleet's CRLs (docs/fleet.md "Jobs"): three etcd members, three nodes
# (job lease 3 s). The doer of job "crl" signs the CRLs and stores them under <prefix>r/; every
# node serves the stored CRL of the intermediate CA, byte for byte the same, and it verifies
# against the CA (`openssl crl -verify`). Certificates revoked on two different nodes appear in
# the next CRL, whose number is higher. Then the doer is killed -9: a survivor takes the job,
# re-signs with a higher number, and a revocation made afterwards appears in a CRL numbered
# higher still. Across every CRL fetched, a number never names two different CRLs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"

FLEET_LEASE_TTL=3
CA=torii-intermediate-ca
fleet_up
check "a node does job crl" t_wait_for job_doer_in crl a b c
doer=$(job_doer crl)
echo "# job crl held by node $doer"

napi a GET "/api/certificates/$CA"
jget '["chain"]' <<<"$T_BODY" >"$T_TMP/inter.crt"
check "the intermediate CA's certificate read" openssl x509 -in "$T_TMP/inter.crt" -noout

SEEN="$T_TMP/seen" # "number sha256" of every CRL fetched
: >"$SEEN"
crl_fetch() { # crl_fetch NODE -> $T_TMP/crl.NODE.der; prints "number sha256"
  local f="$T_TMP/crl.$1.der" n s
  curl -s -m 10 -o "$f" "http://${ADDR[$1]}:$T_HTTP/.well-known/torii/crl/$CA" || return 1
  n=$(openssl crl -inform der -in "$f" -noout -crlnumber 2>/dev/null) || return 1
  s=$(sha256sum <"$f")
  n=${n#crlNumber=}; n=${n#0x}
  echo "$n ${s%% *}" | tee -a "$SEEN"
}
# same_crl NODE... [-- SERIAL...]: every node serves the same CRL, listing each SERIAL
same_crl() {
  local nodes=() serials=() n first="" cur
  while [ $# -gt 0 ] && [ "$1" != -- ]; do nodes+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  serials=("$@")
  for n in "${nodes[@]}"; do
    cur=$(crl_fetch "$n") || return 1
    [ -z "$first" ] && first=$cur
    [ "$cur" = "$first" ] || return 1
  done
  local text
  text=$(openssl crl -inform der -in "$T_TMP/crl.${nodes[0]}.der" -noout -text 2>/dev/null) || return 1
  for n in "${serials[@]}"; do
    [[ "$text" == *"Serial Number: $n"* ]] || return 1
  done
  LAST_NUMBER=$((16#${first%% *}))
}
issue() { # issue NODE NAME -> "id serial"
  napi "$1" POST "/api/pki/cas/$CA/certs" -H 'Content-Type: application/json' \
    -d "{\"hosts\": [\"$2\"], \"subject\": \"CN=$2\", \"duration\": 864000000}"
  python3 -c '
import json, subprocess, sys
d = json.loads(sys.argv[1])
pem = d["chain"] if "chain" in d else d["cert"]
ser = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.encode(),
                     capture_output=True).stdout.decode().strip().split("=")[1]
print(d.get("certId") or d["id"], ser)' "$T_BODY"
}
revoke() { # revoke NODE ID
  napi "$1" PATCH "/api/certificates/$2" -H 'Content-Type: application/json' \
    -d '[{"op":"replace","path":"/revoked","value":true}]'
  [ "$T_STATUS" = 200 ] || fail "revoke $2 on $1: $T_STATUS $T_BODY"
}
stored_is_served() { # the value under <prefix>r/ is what node $1 served last
  local v s
  v=$(ectl get "/it/r/$CA" -w json) || return 1
  s=$(python3 -c 'import base64,hashlib,json,sys; print(hashlib.sha256(base64.b64decode(json.loads(sys.argv[1])["kvs"][0]["value"])).hexdigest())' "$v")
  [ "$s" = "$(sha256sum <"$T_TMP/crl.$1.der" | cut -d' ' -f1)" ]
}

check "the three nodes serve the same CRL" t_wait_for same_crl a b c
n0=$LAST_NUMBER
check "it verifies against the CA" openssl crl -inform der -in "$T_TMP/crl.a.der" -CAfile "$T_TMP/inter.crt" -noout -verify
check "it is the one stored in etcd" stored_is_served a

# ---- revoked on two different nodes: one newer CRL lists both, served by all
read -r id1 ser1 <<<"$(issue a crl1.fleet.test)"
read -r id2 ser2 <<<"$(issue b crl2.fleet.test)"
check "two certificates issued ($ser1, $ser2)" test -n "$ser1" -a -n "$ser2"
check "C has both" t_wait_for has_cert c "$id2"
check "C has the first" has_cert c "$id1"
revoke b "$id1"
revoke c "$id2"
check "every node serves one CRL listing both revocations" t_wait_for same_crl a b c -- "$ser1" "$ser2"
n1=$LAST_NUMBER
check "its number is higher ($n0 -> $n1)" test "$n1" -gt "$n0"
check "it verifies against the CA" openssl crl -inform der -in "$T_TMP/crl.b.der" -CAfile "$T_TMP/inter.crt" -noout -verify
check "it is the one stored in etcd" stored_is_served b

# ---- the doer killed -9: a survivor signs, numbers go on increasing
kill -9 "${NPID[$doer]}"; wait "${NPID[$doer]}" 2>/dev/null; NPID[$doer]=0
alive=(); for n in "${NODES[@]}"; do [ "$n" != "$doer" ] && alive+=("$n"); done
check "a survivor does job crl" t_wait_for job_doer_in crl "${alive[@]}"
second=$(job_doer crl)
echo "# job crl taken over by node $second"
newer() { same_crl "${alive[@]}" -- "$ser1" "$ser2" && [ "$LAST_NUMBER" -gt "$n1" ]; }
check "the new doer re-signed: a higher number, served by both survivors" t_wait_for newer
n2=$LAST_NUMBER
read -r id3 ser3 <<<"$(issue "${alive[0]}" crl3.fleet.test)"
check "the other survivor has the third certificate" t_wait_for has_cert "${alive[1]}" "$id3"
revoke "${alive[1]}" "$id3"
check "both survivors serve one CRL listing the three" t_wait_for same_crl "${alive[@]}" -- "$ser1" "$ser2" "$ser3"
n3=$LAST_NUMBER
check "its number is higher ($n2 -> $n3)" test "$n3" -gt "$n2"
check "it verifies against the CA" openssl crl -inform der -in "$T_TMP/crl.${alive[0]}.der" -CAfile "$T_TMP/inter.crt" -noout -verify
check "it is the one stored in etcd" stored_is_served "${alive[0]}"
dup=$(sort -u "$SEEN" | awk '{print $1}' | uniq -d)
check_eq "no CRL number names two different CRLs ($(sort -u "$SEEN" | wc -l) CRLs seen)" "" "$dup"
check "the new doer logged the take-over" grep -q "now does job crl" "$T_TMP/$second/torii.log"

for n in "${alive[@]}"; do node_stop "$n"; done
check_eq "the survivors exited with status 0 (no sanitizer report)" "" "$NODE_BAD"
if [ "$T_FAILS" -ne 0 ]; then for n in "${NODES[@]}"; do echo "--- $n"; tail -n 30 "$T_TMP/$n/torii.log"; done; fi
t_done
