#!/usr/bin/env bash
# Daemon behaviour under a service manager: one instance per data dir and per listen address,
# sd_notify (READY, WATCHDOG, STATUS, STOPPING), watchdog pings withheld while a worker loop is
# blocked (debug.stall_file hook), /healthz and /readyz on the admin listener.
source "$(dirname "$0")/lib.sh"

STALL="$T_TMP/stall"
NOTIFY_LOG="$T_TMP/notify.log"
t_config '"debug": {"stall_file": "'"$STALL"'"}, "health": {"public_path": "/lb-health"},'

# --- sd_notify receiver: every datagram appended to $NOTIFY_LOG, one message per line
cat > "$T_TMP/notify.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2] + ".ready", "w").close()
while True:
    m = s.recv(4096).decode(errors="replace")
    with open(sys.argv[2], "a") as f:
        f.write(m.replace("\n", " ") + "\n")
PY
python3 "$T_TMP/notify.py" "$T_TMP/notify.sock" "$NOTIFY_LOG" &
T_BG_PIDS+=($!)
for _ in $(seq 1 100); do [ -e "$NOTIFY_LOG.ready" ] && break; sleep 0.1; done
touch "$NOTIFY_LOG"

pings() { grep -c '^WATCHDOG=1$' "$NOTIFY_LOG"; }
pings_above() { [ "$(pings)" -gt "$1" ]; }
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN$1"; }
health_is() { [ "$(health "$1")" = "$2" ]; }

# WATCHDOG_USEC=1 s: ping every 500 ms while every loop iterates.
export NOTIFY_SOCKET="$T_TMP/notify.sock" WATCHDOG_USEC=1000000
t_start || exit 1
check "READY=1 sent" t_wait_for grep -Eq '(^|[^A-Z_])READY=1' "$NOTIFY_LOG"
check "WATCHDOG=1 pings arrive" t_wait_for pings_above 2

# --- health
check_eq "/healthz 200 without credentials" 200 "$(health /healthz)"
check_eq "/readyz 200 without credentials" 200 "$(health /readyz)"
body=$(curl -s "http://127.0.0.1:$T_ADMIN/readyz")
check_eq "/readyz body has no details" "ok" "$body"
check_eq "POST /healthz is 405" 405 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$T_ADMIN/healthz")"
check_eq "other admin paths still need credentials" 401 "$(health /api/certificates)"
# health.public_path on the public listeners, for load balancers (any Host, no TLS needed)
check_eq "http /lb-health 200" 200 \
  "$(curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$T_HTTP/lb-health")"
check_eq "https /lb-health says ok" ok "$(curl -sk -m 10 "https://127.0.0.1:$T_HTTPS/lb-health")"
check_eq "POST /lb-health is 405" 405 \
  "$(curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST "http://127.0.0.1:$T_HTTP/lb-health")"
check_eq "other paths are not health (http: redirect)" 308 \
  "$(curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$T_HTTP/lb-healthz")"
printf '{"health": {"public_path": "lb"}}' > "$T_TMP/bad-health.json"
check "a bad health.public_path is refused by --check-config, naming the key" \
  grep -q 'health.public_path' <("$TORII_BIN" --check-config -c "$T_TMP/bad-health.json" 2>&1)

# --- a second instance: same data dir (other ports) is refused, naming the data dir
P1=$(t_free_port); P2=$(t_free_port); P3=$(t_free_port)
cat > "$T_TMP/same-dir.json" <<JSON
{"data_dir": "$T_TMP/data", "workers": 1,
 "listen": {"https": "127.0.0.1:$P1", "http": "127.0.0.1:$P2"},
 "admin": {"listen": "127.0.0.1:$P3", "token": "$T_TOKEN"}}
JSON
out=$(env -u NOTIFY_SOCKET -u WATCHDOG_USEC timeout 60 "$TORII_BIN" -c "$T_TMP/same-dir.json" 2>&1)
st=$?
check "second instance on the same data dir exits 1" [ "$st" -eq 1 ]
check "its error names the data dir" grep -q "data dir $T_TMP/data is in use by another torii (pid $T_PID" <<<"$out"

# --- same https port, own data dir: refused, naming the address
cat > "$T_TMP/same-port.json" <<JSON
{"data_dir": "$T_TMP/data2", "workers": 1,
 "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$P2"},
 "admin": {"listen": "127.0.0.1:$P3", "token": "$T_TOKEN"}}
JSON
out=$(env -u NOTIFY_SOCKET -u WATCHDOG_USEC timeout 60 "$TORII_BIN" -c "$T_TMP/same-port.json" 2>&1)
st=$?
check "second instance on the same https port exits 1" [ "$st" -eq 1 ]
check "its error names the address" grep -q "listen.https: address 127.0.0.1:$T_HTTPS is already in use" <<<"$out"
# ... and the same for the http port on the wildcard address
sed -e "s/\"https\": \"127.0.0.1:$T_HTTPS\"/\"https\": \"127.0.0.1:$P1\"/" \
    -e "s/\"http\": \"127.0.0.1:$P2\"/\"http\": \"0.0.0.0:$T_HTTP\"/" \
    "$T_TMP/same-port.json" > "$T_TMP/same-http.json"
out=$(env -u NOTIFY_SOCKET -u WATCHDOG_USEC timeout 60 "$TORII_BIN" -c "$T_TMP/same-http.json" 2>&1)
check "second instance on the same http port (wildcard) is refused" \
  grep -q "listen.http: address 0.0.0.0:$T_HTTP is already in use" <<<"$out"
check "the first instance still serves" health_is /readyz 200
handshakes=0
for _ in 1 2 3 4 5 6; do
  if [ -n "$(served localhost)" ]; then handshakes=$((handshakes + 1)); fi
done
check_eq "every handshake answered by the first instance" 6 "$handshakes"

# --- watchdog: block worker-1; the pings stop, /healthz and /readyz answer 503
echo worker-1 > "$STALL"
check "the stuck loop is reported (STATUS=)" t_wait_for grep -q '^STATUS=event loop worker-1 does not iterate' "$NOTIFY_LOG"
check_eq "/healthz 503 while a worker is stuck" 503 "$(health /healthz)"
check_eq "/readyz 503 while a worker is stuck" 503 "$(health /readyz)"
n=$(pings)
# The check runs every 500 ms: over 3 s a live daemon pings ~6 times.
for _ in $(seq 1 30); do sleep 0.1; done
check_eq "no WATCHDOG=1 while worker-1 is blocked" "$n" "$(pings)"
rm -f "$STALL"
check "pings resume once the loop iterates" t_wait_for pings_above "$n"
check "/healthz 200 again" t_wait_for health_is /healthz 200
# The admin loop too.
echo admin > "$STALL"
check "a stuck admin loop is reported too" t_wait_for grep -q '^STATUS=event loop admin does not iterate' "$NOTIFY_LOG"
n=$(pings)
for _ in $(seq 1 30); do sleep 0.1; done
check_eq "no WATCHDOG=1 while the admin loop is blocked" "$n" "$(pings)"
rm -f "$STALL"
check "pings resume after the admin loop" t_wait_for pings_above "$n"

# --- stop: STOPPING=1, lock released (a new instance on the same data dir starts)
check "graceful stop" t_stop
check "STOPPING=1 sent" grep -q '^STOPPING=1' "$NOTIFY_LOG"
unset NOTIFY_SOCKET WATCHDOG_USEC
check "restart on the same data dir and ports" t_start
check_eq "/readyz 200 after restart" 200 "$(health /readyz)"
check "graceful stop" t_stop
t_bg_stop
t_done
