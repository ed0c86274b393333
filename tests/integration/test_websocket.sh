#!/usr/bin/env bash
# test_websocket.sh - HTTP/1.1 Upgrade through the proxy, end to end: a WebSocket client and an
# echo backend written with Debian's python3-websockets (ws_driver.py), torii in between.
# Text and binary echo, ping/pong, the close handshake both ways, 2 x 4 MiB messages (through
# the bounded tunnel buffers), the backend dropping the connection (the client sees the
# close), an upgrade refused on a route without it (the backend sees nothing), a bad
# handshake refused, h2c never forwarded, a backend answering 200 (the client connection stays
# usable), the access log line and /metrics of the tunnels; then, with a 1 s tunnel idle
# timeout, an idle tunnel closed by torii; then a tunnel kept through a graceful stop until the
# drain deadline (shutdown_timeout_s) cuts it.
here=$(dirname "$0")
source "$here/lib.sh"
PY=/usr/bin/python3
if ! "$PY" -c 'import websockets' 2>/dev/null; then
  echo "skip - python3-websockets is not installed (scripts/deps.sh installs it)"
  exit 77
fi

WS=$(t_free_port)
RAW=$(t_free_port)
"$PY" "$here/ws_driver.py" backend "$WS" "$RAW" >>"$T_TMP/ws-backend.log" 2>&1 &
WS_PID=$!
trap 'kill "$WS_PID" 2>/dev/null; wait "$WS_PID" 2>/dev/null; t_cleanup' EXIT
t_wait_for curl -s -o /dev/null "http://127.0.0.1:$WS/count" || { echo "ws backend did not start"; exit 1; }

# config TUNNEL_IDLE_MS SHUTDOWN_S
config() {
  t_config "\"tls\": {\"strict_host\": false}, \"shutdown_timeout_s\": $2,
  \"access_log\": {\"path\": \"$T_TMP/access.log\"},
  \"limits\": {\"tunnel_idle_timeout_ms\": $1},
  \"routes\": [
    {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$WS\"]}},
    {\"hosts\": [\"noup.test\"], \"upgrades\": [], \"backend\": {\"targets\": [\"127.0.0.1:$WS\"]}},
    {\"hosts\": [\"early.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$RAW\"]}}
  ],"
}
# case NAME [ARG]: one client case of ws_driver.py through torii
case_ok() {
  local out
  out=$("$PY" "$here/ws_driver.py" "$1" "$T_HTTPS" "${2:-}" 2>&1)
  if [ $? -eq 0 ]; then ok "$3 ($out)"; else fail "$3 ($out)"; fi
}
metric() {
  local m
  m=$(curl -s -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/metrics")
  awk -v n="$1" '$1 == n {print $2}' <<<"$m"
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }

config 300000 10
t_start || exit 1

case_ok echo "" "text and binary echo, ping/pong, client-initiated close handshake (1000)"
case_ok large 4 "2 x 4 MiB messages echoed intact through the bounded tunnel"
case_ok server-close "" "backend-initiated close handshake reaches the client (4001 bye)"
case_ok gone "" "backend gone mid-tunnel: the client sees the connection close"
case_ok early "" "101, a message and a close frame in one write, then FIN: all reach the client"
case_ok refused "" "upgrade on a route without it: 400 naming the protocol, backend sees nothing"
case_ok bad-handshake "" "bad WebSocket handshakes (key, method) refused with 400"
case_ok h2c "" "Upgrade: h2c never forwarded (plain request, no Upgrade/HTTP2-Settings upstream)"
case_ok not-switched "" "backend answering 200 to an upgrade: normal response, connection reused"

check "every tunnel closed (torii_tunnels_open back to 0)" t_wait_for metric_is torii_tunnels_open 0
total=$(metric torii_tunnels_total)
check "torii_tunnels_total counts the 5 tunnels ($total)" test "${total:-0}" -ge 5
log=$(cat "$T_TMP/access.log")
big=$("$PY" -c '
import json, sys
for ln in sys.stdin:
    d = json.loads(ln)
    if d["status"] == 101 and d["bytes_in"] > 8 << 20 and d["bytes_out"] > 8 << 20:
        print("ok", d["duration_ms"] > 0)
' <<<"$log")
check_eq "access log: one 101 line with the tunnel's bytes each way and its duration" "ok True" "$big"

# --- a 1 s tunnel idle timeout
t_stop
config 1000 10
t_start || exit 1
idle0=$(metric torii_tunnels_idle_closed_total)
case_ok idle "" "an idle tunnel is closed by tunnel_idle_timeout_ms"
check "torii_tunnels_idle_closed_total counts it" test "$(metric torii_tunnels_idle_closed_total)" -gt "${idle0:-0}"

# --- graceful stop with a 5 s drain deadline: after SIGTERM the tunnel still carries
# messages (the client echoes every 0.3 s), and the drain deadline closes it.
t_stop
config 300000 5
t_start || exit 1
"$PY" "$here/ws_driver.py" drain "$T_HTTPS" "$T_TMP/stopped" >"$T_TMP/keepalive.out" 2>&1 &
KA=$!
t_wait_for test -e "$T_TMP/stopped.ready"
t_stop_during "$KA" "$T_TMP/stopped"
st=$T_STOP_ST
ka=$T_STOP_CLIENT
check_eq "graceful stop with a tunnel open: the daemon exits 0 after the drain deadline" 0 "$st"
check "the tunnel carried messages after the stop, then was closed ($(cat "$T_TMP/keepalive.out"))" test "$ka" -eq 0
log=$(cat "$T_TMP/torii.log")
check "the drain deadline closed the tunnel (logged, not counted as a cut request)" \
  grep -q "proxy: 1 tunnel closed at the drain deadline" <<<"$log"

t_done
