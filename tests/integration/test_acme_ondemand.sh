#!/usr/bin/env bash
# test_acme_ondemand.sh - on-demand certificates (acme.on_demand) against Pebble on loopback:
# a handshake for an allowed name without a certificate waits (the client-hello callback
# suspended, the worker free) and is served the certificate ordered for it; a name outside
# acme.on_demand.allow gets the default certificate at once and nothing is ordered; a name
# the ask URL refuses gets the default certificate and nothing is stored; two concurrent
# handshakes for one new name make one order and both get its certificate; past the
# per-domain rate limit a new name gets the default certificate and nothing is ordered.
# Measures the on-demand handshake latency.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$(realpath "$0")")/pebble.sh"
pebble_begin

ask_server_start || { echo "ask server did not start"; exit 1; }

# domain_per_hour 3: the three orders below (shop1, no-thanks, twice) use od.test's hour.
# wait_ms (and the idle timer that also bounds a handshake) far above an issuance against
# Pebble: a slow machine waits longer, never fails.
t_config "\"limits\": {\"idle_timeout_ms\": 600000},
  \"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"http-01\"],
  \"on_demand\": {\"allow\": [\"*.od.test\"], \"ask\": \"http://127.0.0.1:$ASK_PORT/ask?k=1\",
                  \"wait_ms\": 120000, \"global_per_min\": 20, \"domain_per_hour\": 3}},"
t_start || exit 1

# The serial of the certificate served for SNI $1 (no bound below the daemon's own).
od_served() {
  echo | timeout 300 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername "$1" 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}
# The serial of the stored certificate whose domain is $1 ("" when none), and how many.
stored_serial() {
  api GET /api/certificates
  python3 - "$T_BODY" "$1" <<'PY'
import json, subprocess, sys
m = [e for e in json.loads(sys.argv[1]) if e.get("domain") == sys.argv[2]]
s = ""
if m:
    s = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=m[0]["chain"],
                       capture_output=True, text=True).stdout.strip().replace("serial=", "")
print(f"{s} {len(m)}")
PY
}
metric() {
  api GET /metrics
  python3 - "$T_BODY" "$1" <<'PY'
import sys
for line in sys.argv[1].splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(line.split()[-1]); break
else:
    print("absent")
PY
}

default=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$T_HTTPS" -noservername 2>/dev/null \
  | openssl x509 -noout -serial | sed 's/serial=//')
check "the default certificate is served without SNI" test -n "$default"

# --- an allowed name: ordered during the handshake and served -----------------------------
t0=$(date +%s%N)
got=$(od_served shop1.od.test)
t1=$(date +%s%N)
read -r want n <<<"$(stored_serial shop1.od.test)"
check_eq "allowed name: one certificate stored" 1 "$n"
check "allowed name: it is not the default" test -n "$want" -a "$want" != "$default"
check_eq "allowed name: the waiting handshake is served the new certificate" "$want" "$got"
echo "# measure: on-demand handshake (order against Pebble included) $(( (t1 - t0) / 1000000 )) ms"
t2=$(date +%s%N)
check_eq "allowed name: the next handshake gets it at once" "$want" "$(od_served shop1.od.test)"
t3=$(date +%s%N)
echo "# measure: the next handshake for that name $(( (t3 - t2) / 1000000 )) ms"
ask=$(cat "$T_TMP/ask.log")
check "the ask URL was asked for the name" grep -qx 'shop1.od.test' <<<"$ask"
check_eq "metrics: started" 1 "$(metric 'torii_acme_on_demand_total{decision="started"}')"
check_eq "metrics: served" 1 "$(metric 'torii_acme_on_demand_total{decision="served"}')"

# --- a name outside acme.on_demand.allow: the default at once, nothing ordered ------------
got=$(od_served elsewhere.test)
check_eq "disallowed name: the default certificate" "$default" "$got"
check_eq "disallowed name: nothing stored" " 0" "$(stored_serial elsewhere.test)"
check_eq "metrics: denied" 1 "$(metric 'torii_acme_on_demand_total{decision="denied"}')"
ask=$(cat "$T_TMP/ask.log")
check "disallowed name: the ask URL is not even asked" test "$(grep -c elsewhere <<<"$ask")" = 0

# --- the ask URL says no: the default, nothing stored, remembered ---------------------------
got=$(od_served no-thanks.od.test)
check_eq "ask refuses: the default certificate" "$default" "$got"
check_eq "ask refuses: nothing stored" " 0" "$(stored_serial no-thanks.od.test)"
ask=$(cat "$T_TMP/ask.log")
check "ask refuses: it was asked" grep -qx 'no-thanks.od.test' <<<"$ask"
check_eq "metrics: ask_refused" 1 "$(metric 'torii_acme_on_demand_total{decision="ask_refused"}')"
check_eq "ask refuses: the next handshake gets the default" "$default" "$(od_served no-thanks.od.test)"
check_eq "metrics: the refusal is remembered (failed_recently)" 1 \
  "$(metric 'torii_acme_on_demand_total{decision="failed_recently"}')"
ask=$(cat "$T_TMP/ask.log")
check_eq "ask refuses: asked once only" 1 "$(grep -cx 'no-thanks.od.test' <<<"$ask")"

# --- two concurrent handshakes for one new name: one order, one certificate ---------------
valid0=$(metric 'torii_acme_orders_total{outcome="valid"}')
# The ask server holds twice.od.test's order until released: the second handshake starts
# once the order is pending (the name was asked) and is released once it has joined.
asked_twice() { grep -qsx 'twice.od.test' "$T_TMP/ask.log"; }
joined_one() { [ "$(metric 'torii_acme_on_demand_total{decision="joined"}')" = 1 ]; }
od_served twice.od.test >"$T_TMP/h1" &
h1=$!
t_wait_for asked_twice
od_served twice.od.test >"$T_TMP/h2" &
h2=$!
t_wait_for joined_one
touch "$T_TMP/ask.log.release"
wait "$h1" "$h2"
read -r want n <<<"$(stored_serial twice.od.test)"
check_eq "concurrent: one certificate stored" 1 "$n"
check_eq "concurrent: the first handshake is served it" "$want" "$(cat "$T_TMP/h1")"
check_eq "concurrent: the second handshake is served it" "$want" "$(cat "$T_TMP/h2")"
check_eq "concurrent: one order" $((valid0 + 1)) "$(metric 'torii_acme_orders_total{outcome="valid"}')"
check_eq "concurrent: the second joined the first" 1 \
  "$(metric 'torii_acme_on_demand_total{decision="joined"}')"

# --- the per-domain rate limit: a fourth new name of od.test this hour gets the default ----
valid0=$(metric 'torii_acme_orders_total{outcome="valid"}')
check_eq "rate limit: the default certificate" "$default" "$(od_served late.od.test)"
check_eq "rate limit: counted" 1 "$(metric 'torii_acme_on_demand_total{decision="rate_limited"}')"
check_eq "rate limit: nothing stored" " 0" "$(stored_serial late.od.test)"
check_eq "rate limit: no order" "$valid0" "$(metric 'torii_acme_orders_total{outcome="valid"}')"
ask=$(cat "$T_TMP/ask.log")
check "rate limit: the ask URL is not asked" test "$(grep -c late <<<"$ask")" = 0

t_done
