#!/usr/bin/env bash
# test_fleet_ondemand.sh - on-demand issuance deduplicated fleet-wide (docs/fleet.md "Jobs"):
# three etcd members, three nodes with acme.on_demand, Pebble, and an ask URL that refuses
# names starting with "no-". A holds job "acme" (taken before B and C start). Handshakes for a
# new name on B and on C (not the doer) wait while they forward the name to A as a wish under
# <prefix>w/; A orders it once (one "started" decision, one valid order, the ask URL asked
# once, fleet-wide), both handshakes are served the new certificate, all three nodes serve
# it, and no wish is left. A name the ask URL refuses gets the default certificate, A counts
# ask_refused and removes the wish. A name only B's allow-list has is forwarded, and A, whose
# allow-list it is not in, refuses it (denied, logged) and removes the wish: nothing ordered.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"
fleet_pebble_up

ask_server_start || { echo "ask server did not start"; exit 1; }

# wait_ms and the idle timer far above an issuance against Pebble: a slow machine waits
# longer, never fails. B also allows *.other.test, which A (the doer) does not.
fleet_conf_extra() {
  local allow='"*.od.test"'
  [ "$1" = b ] && allow='"*.od.test", "*.other.test"'
  cat <<JSON
  "limits": {"idle_timeout_ms": 600000},
  "acme": {"directory_url": "$P_DIR_URL", "ca_bundle": "$P_CA", "challenges": ["http-01"],
           "on_demand": {"allow": [$allow], "ask": "http://127.0.0.1:$ASK_PORT/ask",
                         "wait_ms": 120000, "global_per_min": 20, "domain_per_hour": 10}},
JSON
}
fleet_after_a() { check "node A holds the job acme (alone)" t_wait_for job_doer_is acme a; }
fleet_up
check_eq "A still holds the job acme with B and C up" a "$(job_doer acme)"

od_served() { # od_served NODE NAME -> serial (bounded by the daemon's wait_ms and timeout)
  echo | timeout 300 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" -servername "$2" 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}
metric() { # metric NODE SAMPLE -> its value (0 when absent)
  local out
  out=$(curl -s -m 10 -H "Authorization: Bearer $T_TOKEN" "http://${ADDR[$1]}:$T_ADMIN/metrics")
  python3 - "$out" "$2" <<'PY'
import sys
for line in sys.argv[1].splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(int(float(line.split()[-1]))); break
else:
    print(0)
PY
}
fleet_sum() { # fleet_sum SAMPLE: its sum over the nodes running
  local n s=0
  for n in "${NODES[@]}"; do s=$((s + $(metric "$n" "$1"))); done
  echo "$s"
}
decision() { echo "torii_acme_on_demand_total{decision=\"$1\"}"; }
no_wish() { local o; o=$(ectl get /it/w/ --prefix --keys-only 2>&1) && [ -z "$o" ]; }
stored() { # stored NODE NAME: how many certificates for NAME node NODE has
  napi "$1" GET /api/certificates
  python3 -c 'import json,sys; print(sum(1 for e in json.loads(sys.argv[1]) if e.get("domain") == sys.argv[2]))' "$T_BODY" "$2"
}

default=$(echo | timeout 10 openssl s_client -connect "${ADDR[b]}:$T_HTTPS" -noservername 2>/dev/null \
  | openssl x509 -noout -serial | sed 's/serial=//')
check "the default certificate is served without SNI" test -n "$default"

# ---- a new name asked on B and C (not the doer): one order on A, served everywhere
# The ask server holds twice.* until released (pebble.sh): the order cannot end before both
# handshakes have forwarded the name, however late the machine starts either of them.
od_served b twice.od.test >"$T_TMP/hb" &
hb=$!
od_served c twice.od.test >"$T_TMP/hc" &
hc=$!
forwarded_by() { test "$(metric "$1" "$(decision forwarded)")" -ge 1; }
check "B forwarded the name (its handshake waits)" t_wait_for forwarded_by b
check "C forwarded the name (its handshake waits)" t_wait_for forwarded_by c
touch "$T_TMP/ask.log.release"
wait "$hb" "$hc"
check_eq "one certificate for the name (on A)" 1 "$(stored a twice.od.test)"
napi a GET /api/certificates
want=$(python3 -c '
import json, subprocess, sys
m = [e for e in json.loads(sys.argv[1]) if e.get("domain") == "twice.od.test"]
print(subprocess.run(["openssl", "x509", "-noout", "-serial"], input=m[0]["chain"] if m else "",
                     capture_output=True, text=True).stdout.strip().replace("serial=", ""))' "$T_BODY")
check "it is not the default certificate" test -n "$want" -a "$want" != "$default"
check_eq "B's waiting handshake is served it" "$want" "$(cat "$T_TMP/hb")"
check_eq "C's waiting handshake is served it" "$want" "$(cat "$T_TMP/hc")"
for n in a b c; do
  check "node $n serves it" t_wait_for serves "$n" twice.od.test "$want"
  check_eq "node $n stores one certificate for it" 1 "$(stored "$n" twice.od.test)"
done
check_eq "fleet-wide: one on-demand order started" 1 "$(fleet_sum "$(decision started)")"
check_eq "it started on A, the doer" 1 "$(metric a "$(decision started)")"
check_eq "fleet-wide: one valid ACME order" 1 "$(fleet_sum 'torii_acme_orders_total{outcome="valid"}')"
ask=$(cat "$T_TMP/ask.log")
check_eq "the ask URL was asked once for it" 1 "$(grep -cx twice.od.test <<<"$ask")"
check "no wish left in etcd" t_wait_for no_wish

# ---- the ask URL refuses: the default certificate, nothing stored, the wish removed
check_eq "a refused name on B: the default certificate" "$default" "$(od_served b no-thanks.od.test)"
ask_refused_on_a() { [ "$(metric a "$(decision ask_refused)")" = 1 ]; }
check "A counted the refusal (ask_refused)" t_wait_for ask_refused_on_a
check "no wish left in etcd" t_wait_for no_wish
check_eq "nothing stored for it" 0 "$(stored a no-thanks.od.test)"

# ---- a name A's allow-list refuses (only B's has it): refused by the doer, wish removed
denied0=$(metric a "$(decision denied)")
check_eq "x.other.test on B: the default certificate" "$default" "$(od_served b x.other.test)"
refused_on_a() { grep -q 'wish for x.other.test refused (denied)' "$T_TMP/a/torii.log"; }
check "A refused the wish (logged)" t_wait_for refused_on_a
check_eq "A counted it (denied)" $((denied0 + 1)) "$(metric a "$(decision denied)")"
check "no wish left in etcd" t_wait_for no_wish
ask=$(cat "$T_TMP/ask.log")
check_eq "the ask URL was not asked for it" 0 "$(grep -c other.test <<<"$ask")"
check_eq "still one valid ACME order fleet-wide" 1 "$(fleet_sum 'torii_acme_orders_total{outcome="valid"}')"

for n in "${NODES[@]}"; do node_stop "$n"; done
check_eq "nodes stopped cleanly" "" "$NODE_BAD"
if [ "$T_FAILS" -ne 0 ]; then for n in "${NODES[@]}"; do echo "--- $n"; tail -n 30 "$T_TMP/$n/torii.log"; done; fi
t_done
