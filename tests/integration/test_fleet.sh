#!/usr/bin/env bash
# test_fleet.sh - fleet mode (docs/fleet.md): a three-member etcd cluster on loopback ports and
# three torii nodes (127.0.0.2, .3, .4). A certificate written on A is served by B and C (the
# delay of 100 writes, p50/p99, is printed; only a generous bounded wait is asserted);
# concurrent PUTs of one id on two nodes give one 2xx and one 409; etcd never holds a clear
# private key; the etcd leader killed during a stream of writes: writes resume, every
# acknowledged write is present; all of etcd stopped: nodes serve TLS, writes 503, /readyz
# not ready; etcd back: writes work, nodes converge; a compaction past a stopped node's
# revision forces a full resync that ends consistent (a deleted certificate is gone too).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"

# ---- the etcd cluster and the nodes
fleet_up

# ---- a write on A is served by B and C; etcd never sees a clear key
mkcert one ec 30 one.fleet.test
post_cert a one one
check_eq "POST on A" 201 "$T_STATUS"
check "B serves it" t_wait_for serves b one.fleet.test "$(serial_of one)"
check "C serves it" t_wait_for serves c one.fleet.test "$(serial_of one)"
dump=$(ectl get /it/ --prefix 2>&1)
case "$dump" in
  *"PRIVATE KEY"*) fail "etcd holds a clear private key" ;;
  *TKEK:*) ok "etcd holds the keys sealed (TKEK:), never a PEM private key" ;;
  *) fail "etcd dump without sealed keys: ${dump:0:200}" ;;
esac

# ---- 100 writes on A: delay until B and C serve each (p50/p99 printed, not asserted)
# (20 writes in a sanitized build, where timings mean little)
mkcert lat ec 30 lat.fleet.test
NW=100; [ "$T_SANITIZED" = 1 ] && NW=20
delays=() acks=()
for k in $(seq 1 "$NW"); do
  entity_json "lat$k" lat >"$T_TMP/lat.json"
  t0=$(date +%s%N)
  napi a POST /api/certificates -H 'Content-Type: application/json' --data-binary "@$T_TMP/lat.json"
  [ "$T_STATUS" = 201 ] || { fail "write lat$k on A: $T_STATUS $T_BODY"; break; }
  acks+=($(( ($(date +%s%N) - t0) / 1000 )))
  wait_fast has_cert b "lat$k" && wait_fast has_cert c "lat$k" || { fail "lat$k reached B and C"; break; }
  delays+=($(( ($(date +%s%N) - t0) / 1000 )))
done
pct() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int(NR*0.5)], v[int(NR*0.99)]}'; }
read -r a50 a99 < <(pct "${acks[@]}")
read -r p50 p99 < <(pct "${delays[@]}")
echo "# $NW writes on A: POST acknowledged p50 ${a50} us p99 ${a99} us; visible on B and C (API GET) p50 ${p50} us p99 ${p99} us"
check_eq "$NW writes reached B and C" "$NW" "${#delays[@]}"

# ---- concurrent PUTs of one id on two nodes: one 2xx, one 409 (appliers held so both read
# the same version; the winner's reply waits at most timeout_ms for its own applier)
entity_json one one '{"description": "updated"}' >"$T_TMP/put.json"
echo fleet-apply >"$T_TMP/a/stall"; echo fleet-apply >"$T_TMP/b/stall"
curl -s -o /dev/null -w '%{http_code}' -m 20 -X PUT -H "Authorization: Bearer $T_TOKEN" \
  -H 'Content-Type: application/json' --data-binary "@$T_TMP/put.json" \
  "http://${ADDR[b]}:$T_ADMIN/api/certificates/one" >"$T_TMP/put_b.code" &
pb=$!
curl -s -o /dev/null -w '%{http_code}' -m 20 -X PUT -H "Authorization: Bearer $T_TOKEN" \
  -H 'Content-Type: application/json' --data-binary "@$T_TMP/put.json" \
  "http://${ADDR[a]}:$T_ADMIN/api/certificates/one" >"$T_TMP/put_a.code" &
pa2=$!
wait "$pb" "$pa2" 2>/dev/null
: >"$T_TMP/a/stall"; : >"$T_TMP/b/stall"
codes=$(printf '%s\n%s\n' "$(cat "$T_TMP/put_a.code")" "$(cat "$T_TMP/put_b.code")" | sort | tr '\n' ' ')
check_eq "concurrent PUTs of one id on A and B" "200 409 " "$codes"

# ---- the etcd leader killed during a stream of writes
mkcert str ec 30 str.fleet.test
entity_json x str >"$T_TMP/str.json"
: >"$T_TMP/acked"
leader_port=$(etcd_leader)
for i in 0 1 2; do [ "${E_CLIENT[$i]}" = "$leader_port" ] && leader=$i; done
(
  for k in $(seq 1 60); do
    sed "s/\"id\": \"x\"/\"id\": \"str$k\"/" "$T_TMP/str.json" >"$T_TMP/str$k.json"
    for _ in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -m 20 -X POST -H "Authorization: Bearer $T_TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$T_TMP/str$k.json" \
        "http://${ADDR[a]}:$T_ADMIN/api/certificates")
      if [ "$code" = 201 ] || [ "$code" = 409 ]; then echo "str$k $code" >>"$T_TMP/acked"; break; fi
      sleep 0.1
    done
  done
) &
wpid=$!
acked_ge() { [ "$(wc -l <"$T_TMP/acked")" -ge "$1" ]; }
t_wait_for acked_ge 10
etcd_stop "$leader"
echo "# killed the etcd leader e$leader after $(wc -l <"$T_TMP/acked") writes"
wait "$wpid"
check_eq "every write of the stream acknowledged after the election" 60 "$(wc -l <"$T_TMP/acked")"
etcd_start "$leader" existing
check "the killed member rejoined" t_wait_for etcd_healthy
missing=0
for k in $(seq 1 60); do t_wait_for has_cert c "str$k" || missing=$((missing + 1)); done
check_eq "acknowledged writes present on C" 0 "$missing"

# ---- all of etcd stopped: serving goes on, writes 503, readyz not ready
mkcert two ec 30 two.fleet.test
for i in 0 1 2; do etcd_stop "$i"; done
check "A reports not ready for writes" t_wait_for ready_is a 503
check "B still serves one.fleet.test" serves b one.fleet.test "$(serial_of one)"
post_cert b two two
check_eq "a write while etcd is down: 503" 503 "$T_STATUS"
case "$T_BODY" in *etcd*) ok "the 503 says etcd is unreachable" ;; *) fail "503 body: $T_BODY" ;; esac
for i in 0 1 2; do etcd_start "$i" existing; done
check "etcd back" t_wait_for etcd_healthy
check "B ready again" t_wait_for ready_is b 200
post_cert b two two
check_eq "a write after recovery" 201 "$T_STATUS"
check "C serves the write made on B" t_wait_for serves c two.fleet.test "$(serial_of two)"

# ---- compaction past a stopped node's revision: full resync, consistent
node_stop c
napi a DELETE /api/certificates/lat1
check_eq "delete while C is down" 200 "$T_STATUS"
mkcert three ec 30 three.fleet.test
post_cert a three three
rev=$(ectl endpoint status -w json | python3 -c 'import json,sys; print(max(s["Status"]["header"]["revision"] for s in json.load(sys.stdin)))')
ectl compact "$rev" >/dev/null
node_start c
check "C resynced after the compaction" t_wait_for serves c three.fleet.test "$(serial_of three)"
check "C dropped what was deleted meanwhile" t_wait_for lacks_cert c lat1
resync=$(grep -c "full sync from etcd" "$T_TMP/c/torii.log")
check "C logged a full resync after the compaction" test "$resync" -ge 2
check_eq "C holds exactly A's certificates" "$(ids_of a)" "$(ids_of c)"

for n in "${NODES[@]}"; do node_stop "$n"; done
check_eq "every node exited with status 0 (no sanitizer report)" "" "$NODE_BAD"
if [ "$T_FAILS" -ne 0 ]; then for n in "${NODES[@]}"; do echo "--- $n"; tail -n 30 "$T_TMP/$n/torii.log"; done; fi
t_done
