#!/usr/bin/env bash
# test_fleet_jobs.sh - one doer per job (docs/fleet.md "Jobs"): three etcd members, three
# nodes renewing every 2 s. Four certificates issued by the torii CA become due on every node
# at once (the clocks of the three nodes jump 9 days): each is renewed exactly once fleet-wide
# (one [UNTIL EXPIRATION] copy each, one new leaf each, the three nodes' renewal counters sum
# to 4; a renewal cycle asked on the other nodes renews nothing). Then the renewal leader is killed -9: a survivor takes the job once the lease expires
# (lease_ttl_s 3), and a certificate that becomes due afterwards is renewed once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"

DAY=86400000
fleet_conf_extra() {
  echo '  "renewal": {"interval_s": 2, "initial_delay_s": 1, "jitter_s": 0, "threshold_pct": 20,'
  echo '              "delete_expired_copies": false},'
  echo '  "alerts": {"almost_expired_days": 0},'
}
# The harness writes each node's config; this test adds the clock hook and a short lease.
eval "fleet_node_start_$(declare -f node_start)"
node_start() {
  python3 - "$T_TMP/$1/torii.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["debug"]["clock_hook"] = True
c["fleet"]["etcd"]["lease_ttl_s"] = 3
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
  fleet_node_start_node_start "$1"
}

leader_value() { ectl get /it/l/renewal --print-value-only 2>/dev/null; }
leader_node() { # the node whose pid holds job renewal (empty: none)
  local v n
  v=$(leader_value)
  for n in "${NODES[@]}"; do
    if [ "${NPID[$n]:-0}" != 0 ] && [ "$v" = "$(hostname) pid ${NPID[$n]}" ]; then echo "$n"; fi
  done
}
has_leader() { [ -n "$(leader_node)" ]; }
renewals() { # torii_certificate_renewals_total of node N
  local out
  out=$(curl -s -m 10 -H "Authorization: Bearer $T_TOKEN" "http://${ADDR[$1]}:$T_ADMIN/metrics")
  awk '$1 == "torii_certificate_renewals_total" {print $2}' <<<"$out"
}
shift_clock() { # shift_clock NODE MS
  napi "$1" POST /api/_debug/clock -H 'Content-Type: application/json' \
    -d "{\"offset_ms\": $2}"
  [ "$T_STATUS" = 200 ] || fail "clock shift on $1: $T_STATUS $T_BODY"
}
issue() { # issue NODE NAME DAYS -> prints the new certificate's id (autoRenew set by a PATCH)
  local id
  napi "$1" POST /api/pki/cas/torii-intermediate-ca/certs -H 'Content-Type: application/json' \
    -d "{\"hosts\": [\"$2\"], \"subject\": \"CN=$2\", \"duration\": $(($3 * DAY))}"
  [ "$T_STATUS" = 200 ] || [ "$T_STATUS" = 201 ] || { echo "issue $2: $T_STATUS $T_BODY" >&2; return 1; }
  id=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("certId") or d["id"])' "$T_BODY")
  napi "$1" PATCH "/api/certificates/$id" -H 'Content-Type: application/json' \
    -d '[{"op": "replace", "path": "/autoRenew", "value": true}]'
  [ "$T_STATUS" = 200 ] || { echo "autoRenew on $2: $T_STATUS $T_BODY" >&2; return 1; }
  echo "$id"
}
# copies NODE ID...: for each id, its [UNTIL EXPIRATION] copies and the distinct leaf
# certificates of it and its copies, as "id:copies:leaves" words
copies() {
  local n=$1; shift
  napi "$n" GET /api/certificates
  python3 - "$T_BODY" "$@" <<'PY'
import json, sys
ents = json.loads(sys.argv[1])
out = []
for cid in sys.argv[2:]:
    cur = [e for e in ents if e["id"] == cid]
    cps = [e for e in ents if (e.get("metadata") or {}).get("nextCertificate") == cid]
    # the leaf of each chain: a renewal issues a new leaf (new key, new random serial)
    serials = {e["chain"].split("-----END CERTIFICATE-----")[0] for e in cur + cps}
    out.append("%s:%d:%d" % (cid, len(cps), len(serials)))
print(" ".join(out))
PY
}
each_renewed_once() { # each_renewed_once NODE ID...: every id has one copy and two leaves
  local want="" id
  for id in "${@:2}"; do want="$want $id:1:2"; done
  [ "$(copies "$@")" = "${want# }" ]
}

fleet_up
check "a node holds job renewal" t_wait_for has_leader
first=$(leader_node)
echo "# job renewal held by node $first ($(leader_value))"

# ---- four certificates due at once on every node: each renewed exactly once
ids=()
for k in 1 2 3 4; do
  id=$(issue a "j$k.fleet.test" 10) || { fail "issue j$k on A"; continue; }
  ids+=("$id")
done
check_eq "four certificates issued by the torii CA" 4 "${#ids[@]}"
for id in "${ids[@]}"; do
  check "B and C have $id" t_wait_for has_cert c "$id"
  check "B has $id" t_wait_for has_cert b "$id"
done
check_eq "nothing renewed yet" "$(copies a "${ids[@]}")" \
  "$(for id in "${ids[@]}"; do printf '%s:0:1 ' "$id"; done | sed 's/ $//')"
# the other nodes see them due first: a full renewal cycle run now on each (POST _renew, on
# its renewal thread) renews nothing there, as they do not do job renewal
for n in "${NODES[@]}"; do
  [ "$n" = "$first" ] && continue
  shift_clock "$n" $((9 * DAY))
  napi "$n" POST /api/certificates/_renew
  check_eq "a cycle on $n (not the doer) -> 200" 200 "$T_STATUS"
  check_eq "renews nothing on $n" "[]" "$(jget '["renewed"]' <<<"$T_BODY")"
done
shift_clock "$first" $((9 * DAY))
check "each due certificate renewed (one copy each)" t_wait_for each_renewed_once a "${ids[@]}"
for n in b c; do check "node $n sees one copy each" t_wait_for each_renewed_once "$n" "${ids[@]}"; done
sum=0
for n in "${NODES[@]}"; do r=$(renewals "$n"); echo "# node $n renewals: $r"; sum=$((sum + ${r:-0})); done
check_eq "renewal counters of the three nodes sum to 4" 4 "$sum"
check_eq "only the leader renewed" 4 "$(renewals "$first")"

# ---- the leader killed -9: a survivor takes the job, renews the next due certificate once
t0=$(date +%s%N)
kill -9 "${NPID[$first]}"; wait "${NPID[$first]}" 2>/dev/null; NPID[$first]=0
alive=(); for n in "${NODES[@]}"; do [ "$n" != "$first" ] && alive+=("$n"); done
check "a survivor holds job renewal after the lease expired" t_wait_for has_leader
second=$(leader_node)
echo "# job renewal taken over by node $second $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill (lease TTL 3 s)"
base=0; for n in "${alive[@]}"; do base=$((base + $(renewals "$n"))); done
late=$(issue "${alive[0]}" late.fleet.test 2) || fail "issue late on ${alive[0]}"
check "${alive[1]} has the late certificate" t_wait_for has_cert "${alive[1]}" "$late"
# 1.75 of its 2 days later: in its last 20 %, not expired; the four renewed 1.75 days ago are
# not due (their 10 days started then)
for n in "${alive[@]}"; do shift_clock "$n" $((9 * DAY + 7 * DAY / 4)); done
check "the late certificate renewed once" t_wait_for each_renewed_once "$second" "$late"
check "and the first four still exactly once" each_renewed_once "$second" "${ids[@]}"
after=0; for n in "${alive[@]}"; do after=$((after + $(renewals "$n"))); done
check_eq "the survivors renewed one certificate" 1 $((after - base))
check "the new leader logged the take-over" grep -q "now does job renewal" "$T_TMP/$second/torii.log"

for n in "${alive[@]}"; do node_stop "$n"; done
check_eq "the survivors exited with status 0 (no sanitizer report)" "" "$NODE_BAD"
if [ "$T_FAILS" -ne 0 ]; then for n in "${NODES[@]}"; do echo "--- $n"; tail -n 30 "$T_TMP/$n/torii.log"; done; fi
t_done
