#!/usr/bin/env bash
# test_h2_websocket.sh - WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through torii to the
# HTTP/1.1 WebSocket echo backend of test_websocket.sh (ws_driver.py), with the python h2
# client h2_ws_client.py (frames encoded by hand): SETTINGS_ENABLE_CONNECT_PROTOCOL, the
# CONNECT answered 200 after the backend's 101, text/binary (300 KB, past the flow-control
# windows)/ping echoed as DATA, the close handshake and the backend's EOF as END_STREAM, the
# client's END_STREAM as a half-close towards the backend; the handshake the backend sees
# (GET, Upgrade, a generated 16-byte key, version/protocol/extensions passed on); a backend
# answering 200 relayed as a normal response; refused: a route without websocket in
# upgrades (400, the backend sees nothing), :protocol other than websocket (400) and a plain
# CONNECT (501); the access log and the tunnel counters; then a websocket stream kept through a
# graceful stop until the drain deadline closes it, counted as a tunnel (as an HTTP/1.1 one
# is), not as a connection cut with a request in flight.
here=$(dirname "$0")
source "$here/lib.sh"
PY=/usr/bin/python3
$PY -c 'import h2, websockets' 2>/dev/null || { echo "skip - python3-h2 or python3-websockets missing"; exit 77; }

WS=$(t_free_port)
RAW=$(t_free_port)
"$PY" "$here/ws_driver.py" backend "$WS" "$RAW" >>"$T_TMP/ws-backend.log" 2>&1 &
WS_PID=$!
trap 'kill "$WS_PID" 2>/dev/null; wait "$WS_PID" 2>/dev/null; t_cleanup' EXIT
t_wait_for curl -s -o /dev/null "http://127.0.0.1:$WS/count" || { echo "ws backend did not start"; exit 1; }

t_config "\"tls\": {\"strict_host\": false}, \"shutdown_timeout_s\": 3,
  \"access_log\": {\"path\": \"$T_TMP/access.log\"},
  \"routes\": [
    {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$WS\"]}},
    {\"hosts\": [\"noup.test\"], \"upgrades\": [], \"backend\": {\"targets\": [\"127.0.0.1:$WS\"]}}
  ],"
t_start || exit 1

count() { curl -s "http://127.0.0.1:$WS/count" | $PY -c 'import json,sys; print(json.load(sys.stdin)["n"])'; }
metric() {
  curl -s -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/metrics" |
    awk -v n="$1" '$1 == n {print $2}'
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }
case_ok() { # case_ok CASE DESCRIPTION [AUTHORITY]
  local out
  out=$($PY "$here/h2_ws_client.py" "$T_HTTPS" "$1" ${3:+"$3"} 2>&1)
  if [ $? -eq 0 ]; then ok "$2 ($out)"; else fail "$2 ($out)"; fi
}

case_ok echo "extended CONNECT: 200, text, 300 KB binary and ping echoed, close, END_STREAM"
case_ok halfclose "backend close -> END_STREAM; client END_STREAM -> half-close to the backend"
case_ok plain "backend answering 200: a normal response; GET with Upgrade and a generated key"

n0=$(count)
check_eq "route without websocket in upgrades: 400" "STATUS 400 END" \
  "$($PY "$here/h2_ws_client.py" "$T_HTTPS" refused "noup.test:$T_HTTPS")"
check_eq ":protocol other than websocket: 400" "STATUS 400 END" \
  "$($PY "$here/h2_ws_client.py" "$T_HTTPS" protocol)"
check_eq "plain CONNECT: 501" "STATUS 501 END" "$($PY "$here/h2_ws_client.py" "$T_HTTPS" connect)"
check_eq "the backend saw none of the refused requests" "$n0" "$(count)"

check "every tunnel closed (torii_tunnels_open back to 0)" t_wait_for metric_is torii_tunnels_open 0
total=$(metric torii_tunnels_total)
check "torii_tunnels_total counts the 3 tunnels ($total)" test "${total:-0}" -ge 3
big=$($PY -c '
import json, sys
for ln in sys.stdin:
    d = json.loads(ln)
    if d["status"] == 101 and d["bytes_in"] > 300000 and d["bytes_out"] > 300000:
        print("ok")
' <"$T_TMP/access.log")
check_eq "access log: a 101 line with the tunnel's bytes each way" ok "$big"

# --- graceful stop with a 3 s drain deadline: the websocket stream still carries messages
# after SIGTERM, then the deadline closes it: logged as a tunnel, not as a cut connection.
$PY "$here/h2_ws_client.py" "$T_HTTPS" drain "$T_TMP/stopped" >"$T_TMP/drain.out" 2>&1 &
KA=$!
t_wait_for test -e "$T_TMP/stopped.ready"
t_stop_during "$KA" "$T_TMP/stopped"
st=$T_STOP_ST
ka=$T_STOP_CLIENT
check_eq "graceful stop with a websocket stream open: the daemon exits 0" 0 "$st"
check "the stream carried messages after the stop, then was closed ($(cat "$T_TMP/drain.out"))" \
  test "$ka" -eq 0
log=$(cat "$T_TMP/torii.log")
check "the drain deadline closed the websocket stream as a tunnel" \
  grep -q "proxy: 1 tunnel closed at the drain deadline" <<<"$log"
check "... and did not count it as a connection cut with a request in flight" \
  test -z "$(grep "cut [0-9]* connection" <<<"$log")"
t_done
