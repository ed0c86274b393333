# lib_fleet.sh - the harness of the fleet tests (sourced after lib.sh): a three-member etcd
# cluster on loopback ports (data on tmpfs when there is one) and three torii nodes a, b, c on
# 127.0.0.2, .3, .4 sharing one KEK. A test may define fleet_conf_extra N, printing extra
# top-level members of node N's configuration (each followed by a comma), and set
# FLEET_LEASE_TTL (seconds) for a short job lease (a doer killed -9 is replaced sooner).
# Exits 0 with "skip" when etcd is not installed.
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "skip - etcd-server / etcd-client not installed (scripts/deps.sh installs them)"
  exit 0
fi
export ETCDCTL_API=3

NODES=(a b c)
declare -A ADDR=([a]=127.0.0.2 [b]=127.0.0.3 [c]=127.0.0.4) NPID=()
E_PIDS=(0 0 0)
E_CLIENT=() E_PEER=()
for i in 0 1 2; do E_CLIENT[$i]=$(t_free_port); E_PEER[$i]=$(t_free_port); done
ENDPOINTS=$(printf 'http://127.0.0.1:%s,' "${E_CLIENT[@]}"); ENDPOINTS=${ENDPOINTS%,}
INITIAL=$(for i in 0 1 2; do printf 'e%s=http://127.0.0.1:%s,' "$i" "${E_PEER[$i]}"; done)
INITIAL=${INITIAL%,}

# etcd's data dirs on tmpfs when there is one: the delays measured are torii's and etcd's, not
# the fsyncs of a disk shared with other builds.
E_DIR=$(mktemp -d /dev/shm/torii-etcd.XXXXXX 2>/dev/null || echo "$T_TMP")
fleet_cleanup() {
  local p
  for p in "${NPID[@]}" "${E_PIDS[@]}"; do
    if [ "$p" != 0 ]; then kill -9 "$p" 2>/dev/null; fi
  done
  if [ "$E_DIR" != "$T_TMP" ]; then rm -rf "$E_DIR"; fi
  t_cleanup
}
trap fleet_cleanup EXIT

etcd_start() { # etcd_start I [existing]
  local i=$1
  etcd --name "e$i" --data-dir "$E_DIR/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${E_CLIENT[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${E_CLIENT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${E_PEER[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${E_PEER[$i]}" \
    --initial-cluster "$INITIAL" --initial-cluster-state "${2:-new}" \
    --initial-cluster-token torii-it --heartbeat-interval 50 --election-timeout 500 \
    --log-level error --logger zap >>"$T_TMP/etcd$i.log" 2>&1 &
  E_PIDS[$i]=$!
}
etcd_stop() { kill -9 "${E_PIDS[$1]}" 2>/dev/null; wait "${E_PIDS[$1]}" 2>/dev/null; E_PIDS[$1]=0; }
ectl() { etcdctl --endpoints "$ENDPOINTS" --command-timeout=5s "$@"; }
etcd_healthy() { local out; out=$(ectl endpoint health 2>&1) || return 1; [ "$(grep -c 'is healthy' <<<"$out")" = 3 ]; }
etcd_leader() { # the index of the leader member
  local out i
  out=$(ectl endpoint status -w json 2>/dev/null) || return 1
  python3 -c '
import json,sys
for s in json.loads(sys.argv[1]):
    if s["Status"]["header"]["member_id"] == s["Status"]["leader"]:
        print(s["Endpoint"].rsplit(":",1)[1])' "$out"
}

node_conf() { # node_conf N
  local n=$1 a=${ADDR[$1]}
  mkdir -p "$T_TMP/$n"
  cat >"$T_TMP/$n/torii.json" <<JSON
{
  "data_dir": "$T_TMP/$n/data",
  "workers": 1,
  "log_level": "info",
  "listen": {"https": "$a:$T_HTTPS", "http": "$a:$T_HTTP"},
  "admin": {"listen": "$a:$T_ADMIN", "token": "$T_TOKEN"},
  "keys": {"kek_file": "$T_TMP/kek"},
  "debug": {"stall_file": "$T_TMP/$n/stall"},
$(if declare -F fleet_conf_extra >/dev/null; then fleet_conf_extra "$n"; fi)
  "fleet": {"etcd": {"endpoints": [$(printf '"http://127.0.0.1:%s",' "${E_CLIENT[@]}" | sed 's/,$//')],
                     "prefix": "/it/", "timeout_ms": 2000, "page_size": 7${FLEET_LEASE_TTL:+, \"lease_ttl_s\": $FLEET_LEASE_TTL}}}
}
JSON
}
node_start() {
  "$TORII_BIN" -c "$T_TMP/$1/torii.json" >>"$T_TMP/$1/torii.log" 2>&1 &
  NPID[$1]=$!
  t_wait_for curl -sf -o /dev/null -H "Authorization: Bearer $T_TOKEN" \
    "http://${ADDR[$1]}:$T_ADMIN/metrics"
}
# node_stop N: graceful stop; a non-zero exit (a sanitizer report) is counted in NODE_BAD
NODE_BAD=""
node_stop() {
  local st=0
  kill -TERM "${NPID[$1]}" 2>/dev/null
  wait "${NPID[$1]}" 2>/dev/null || st=$?
  NPID[$1]=0
  if [ "$st" != 0 ]; then NODE_BAD="$NODE_BAD $1:$st"; fi
}
napi() { # napi NODE METHOD PATH [curl args] -> T_STATUS, T_BODY
  local n=$1; shift
  local m=$1 p=$2; shift 2
  local out
  out=$(curl -s -m 20 -X "$m" -H "Authorization: Bearer $T_TOKEN" -w '\n%{http_code}' \
        "http://${ADDR[$n]}:$T_ADMIN$p" "$@")
  T_STATUS=${out##*$'\n'}
  T_BODY=${out%$'\n'*}
}
ready_status() { curl -s -o /dev/null -w '%{http_code}' "http://${ADDR[$1]}:$T_ADMIN/readyz"; }
ready_is() { [ "$(ready_status "$1")" = "$2" ]; }
served_on() { # served_on NODE NAME -> serial
  echo | timeout 10 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" -servername "$2" 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}
has_cert() { napi "$1" GET "/api/certificates/$2"; [ "$T_STATUS" = 200 ]; }
lacks_cert() { napi "$1" GET "/api/certificates/$2"; [ "$T_STATUS" = 404 ]; }
serves() { [ "$(served_on "$1" "$2")" = "$3" ]; }
post_cert() { # post_cert NODE ID NAME
  entity_json "$2" "$3" >"$T_TMP/$2.json"
  napi "$1" POST /api/certificates -H 'Content-Type: application/json' --data-binary "@$T_TMP/$2.json"
}
ids_of() { # sorted certificate ids on node N
  napi "$1" GET '/api/certificates?fields=id'
  python3 -c 'import json,sys; print(" ".join(sorted(e["id"] for e in json.loads(sys.argv[1]))))' "$T_BODY"
}

# wait_fast CMD...: t_wait_for at 10 ms steps (for the delay measurement), bounded to 3000 tries
wait_fast() {
  local _
  for _ in $(seq 1 3000); do
    if "$@"; then return 0; fi
    sleep 0.01
  done
  return 1
}

# fleet_up: a KEK, the three etcd members, node A (it seeds an empty fleet) then B and C, each
# checked ready; a test may define fleet_after_a, run once A is ready and before B and C start.
fleet_up() {
  head -c 32 /dev/urandom >"$T_TMP/kek"; chmod 600 "$T_TMP/kek"
  for i in 0 1 2; do etcd_start "$i"; done
  check "three-member etcd cluster healthy" t_wait_for etcd_healthy
  for n in "${NODES[@]}"; do node_conf "$n"; done
  node_start a
  check "node A is ready (it seeded the empty fleet)" t_wait_for ready_is a 200
  if declare -F fleet_after_a >/dev/null; then fleet_after_a; fi
  for n in b c; do node_start "$n"; done
  check "node B ready (filled from etcd)" t_wait_for ready_is b 200
  check "node C ready (filled from etcd)" t_wait_for ready_is c 200
}

# fleet_pebble_up: Pebble and its DNS (pebble.sh) for the ACME fleet tests, every name
# resolving to node B (127.0.0.3) unless a test says otherwise; the EXIT trap stops Pebble,
# then the fleet. Skips the test (exit 77) when Pebble is not installed.
fleet_pebble_up() {
  # shellcheck source=tests/integration/pebble.sh
  source "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/pebble.sh"
  trap 'pebble_stop; fleet_cleanup' EXIT
  pebble_begin
  check "challtestsrv: every name resolves to node B (127.0.0.3)" \
    curl -sf -o /dev/null -d '{"ip": "127.0.0.3"}' "http://127.0.0.1:$P_CHALL/set-default-ipv4"
}

# job_doer JOB: the node (a, b or c) holding JOB (docs/fleet.md "Jobs"), from the pid in the
# value of <prefix>l/<job>; nothing when no running node holds it.
job_doer() {
  local v n
  v=$(ectl get "/it/l/$1" --print-value-only 2>/dev/null) || return 0
  for n in "${NODES[@]}"; do
    if [ "${NPID[$n]:-0}" != 0 ] && [ "$v" != "${v% pid ${NPID[$n]}}" ]; then echo "$n"; fi
  done
}
job_doer_is() { [ "$(job_doer "$1")" = "$2" ]; } # job_doer_is JOB NODE
job_doer_in() { # job_doer_in JOB NODE...: one of the NODEs holds JOB
  local d; d=$(job_doer "$1"); shift
  [ -n "$d" ] && [[ " $* " == *" $d "* ]]
}
