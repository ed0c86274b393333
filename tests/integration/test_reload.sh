#!/usr/bin/env bash
# Daemon behaviour: graceful stop (SIGTERM lets requests in flight finish), reload (SIGHUP
# under keep-alive load, invalid configurations refused), binary upgrade (torii --upgrade
# takes the listening sockets under load), access log file (format, SIGUSR1 reopen) and
# journal priority prefixes. Every wait is a bounded poll on a condition.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BK1=$(t_free_port)
BK2=$(t_free_port)
t_backend_start "$BK1" || { echo "backend did not start"; exit 1; }
t_backend_start "$BK2" || { echo "backend did not start"; exit 1; }
T_PID2=""
trap 't_bg_stop; t_backend_stop_all; [ -n "$T_PID2" ] && kill -9 "$T_PID2" 2>/dev/null; t_cleanup' EXIT

# The inodes of the sockets listening on 127.0.0.1:$1 (sorted, one line): the same set
# before and after a reload or an upgrade means the sockets were handed over, not re-bound.
listen_inodes() {
  python3 - "$1" <<'PY'
import sys
port = "%04X" % int(sys.argv[1])
inos = []
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    f = line.split()
    if f[1] == "0100007F:" + port and f[3] == "0A":
        inos.append(f[9])
print(" ".join(sorted(inos)))
PY
}
log_has() { grep -q -- "$1" "${2:-$T_TMP/torii.log}" 2>/dev/null; }
# config EXTRA_ROUTES [EXTRA_MEMBERS]: route a.example.test -> BK1, plus more routes.
config() {
  t_config "\"routes\": [
    {\"hosts\": [\"a.example.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK1\"]}}${1:-}
  ],
  \"tls\": {\"strict_host\": false}, \"pki\": {\"public_url\": \"http://localhost\"},
  ${2:-}"
}
# HTTP/1.1 exchanges (the combined line's protocol, the in-flight count): no ALPN h2.
C=(curl -sk --http1.1 --max-time 60)
status_of() { "${C[@]}" -o /dev/null -w '%{http_code}' -H "Host: $1" "https://127.0.0.1:$T_HTTPS$2"; }

# --- 1. SIGTERM with requests in flight: they complete and are logged (a held response and
# a streamed body), an idle keep-alive connection closes at once, new connections refused.
# The held backend answers only once $T_TMP/release exists: the order is deterministic.
HOLD=$(t_free_port)
cat > "$T_TMP/hold.py" <<'PY'
import os, socket, sys, threading, time
port, release = int(sys.argv[1]), sys.argv[2]
def serve(c):
    with c:
        data = b""
        while b"\r\n\r\n" not in data:
            b = c.recv(4096)
            if not b: return
            data += b
        if data.startswith(b"GET /hold"):
            open(release + ".got", "w").close()
            t0 = time.time()
            while not os.path.exists(release) and time.time() - t0 < 300:
                time.sleep(0.05)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nreleased")
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$T_TMP/hold.py" "$HOLD" "$T_TMP/release" &
T_BG_PIDS+=($!)
t_wait_port "$HOLD"
cat > "$T_TMP/idle.py" <<'PY'
# One keep-alive request, then wait (at most 60 s) for the server to close: prints "eof"
# when it does, with "held" if $release did not exist yet (the held request was in flight).
import os, socket, ssl, sys, time
port, ready, release = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60))
t.sendall(b"GET /bytes/3 HTTP/1.1\r\nHost: a.example.test\r\n\r\n")
data = b""
while len(data) < 65536:
    b = t.recv(4096)
    if not b: break
    data += b
    head, sep, body = data.partition(b"\r\n\r\n")
    if sep and len(body) >= 3:  # Content-Length: 3
        break
open(ready, "w").close()
try:
    while t.recv(4096): pass
    print("eof", "held" if not os.path.exists(release) else "released")
except Exception as e:
    print("error", repr(e))
PY
config ",{\"hosts\": [\"hold.example.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$HOLD\"]}}" \
  "\"access_log\": {\"path\": \"$T_TMP/access.log\"}, \"shutdown_timeout_s\": 120,
   \"limits\": {\"idle_timeout_ms\": 3600000},"
t_start || exit 1
python3 "$T_TMP/idle.py" "$T_HTTPS" "$T_TMP/idle.ready" "$T_TMP/release" > "$T_TMP/idle.out" &
IDLE=$!
"${C[@]}" -o "$T_TMP/slow.out" -w '%{http_code}' -H "Host: hold.example.test" \
  "https://127.0.0.1:$T_HTTPS/hold" > "$T_TMP/slow.code" &
SLOW=$!
"${C[@]}" -o "$T_TMP/big.out" -w '%{http_code}' --limit-rate 1M -H "Host: a.example.test" \
  "https://127.0.0.1:$T_HTTPS/bytes/3000000" > "$T_TMP/big.code" &
BIG=$!
check "held request reached the backend" t_wait_for test -e "$T_TMP/release.got"
check "idle keep-alive connection ready" t_wait_for test -e "$T_TMP/idle.ready"
check "streamed body started" t_wait_for log_has "GET /bytes/3000000" "$T_TMP/backend-$BK1.log"
check_eq "serving: /readyz 200 before SIGTERM" "200" \
  "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/readyz")"
kill -TERM "$T_PID"
check "drain announced" t_wait_for log_has "SIGTERM: draining"
wait "$IDLE"
check_eq "idle keep-alive connection closed at once (request still held)" "eof held" \
  "$(cat "$T_TMP/idle.out")"
check "no new connection while draining" \
  bash -c "! curl -sk --max-time 10 -o /dev/null https://127.0.0.1:$T_HTTPS/ 2>/dev/null"
# Health through the drain (the held request keeps torii draining): alive, not ready.
check_eq "draining: /healthz still 200 (loops iterate)" "200" \
  "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/healthz")"
check_eq "draining: /readyz 503 (no new work)" "503" \
  "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/readyz")"
touch "$T_TMP/release"
wait "$SLOW"; wait "$BIG"
check_eq "held request completed after SIGTERM" "200" "$(cat "$T_TMP/slow.code")"
check_eq "held request body" "released" "$(cat "$T_TMP/slow.out")"
check_eq "streamed body completed after SIGTERM" "200 3000000" \
  "$(cat "$T_TMP/big.code") $(stat -c %s "$T_TMP/big.out")"
st=0; wait "$T_PID" || st=$?; T_PID=""
check_eq "exit status 0 after a complete drain" "0" "$st"
check "held request in the access log" grep -q '"path":"/hold","status":200' "$T_TMP/access.log"
check "streamed body in the access log" grep -q '"path":"/bytes/3000000","status":200' "$T_TMP/access.log"
check "final log line" log_has "exiting (status 0, pid "

# --- 2. the deadline cuts: non-zero exit, a line saying how many
config "" "\"shutdown_timeout_s\": 1,"
t_start || exit 1
"${C[@]}" -o /dev/null -H "Host: a.example.test" "https://127.0.0.1:$T_HTTPS/sleep/30000" &
SLOW=$!
check "backend got the long request" t_wait_for log_has "GET /sleep/30000" "$T_TMP/backend-$BK1.log"
st=0; kill -TERM "$T_PID"; wait "$T_PID" || st=$?; T_PID=""
check "deadline: exit status non-zero" test "$st" -ne 0
check "deadline: cut count logged" log_has "cut 1 connection with a request in flight"
wait "$SLOW" 2>/dev/null

# --- 3. access log file, combined format, SIGUSR1 reopen (logrotate); journal prefixes
: > "$T_TMP/torii.log"
config "" "\"access_log\": {\"path\": \"$T_TMP/access.log\", \"format\": \"combined\"},"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T_TMP/torii.log") t_start || exit 1
check_eq "request 1" "200" "$(status_of a.example.test /bytes/10)"
check "combined line" t_wait_for grep -q '"GET /bytes/10 HTTP/1.1" 200 .* a.example.test ' "$T_TMP/access.log"
mv "$T_TMP/access.log" "$T_TMP/access.log.1"
kill -USR1 "$T_PID"
check "SIGUSR1 logged" t_wait_for log_has "SIGUSR1, reopening"
check_eq "request 2" "200" "$(status_of a.example.test /bytes/11)"
check "reopened file gets the next line" t_wait_for grep -q '/bytes/11 ' "$T_TMP/access.log"
check "rotated file kept the old lines only" bash -c "! grep -q /bytes/11 '$T_TMP/access.log.1'"
check "journal: syslog priority prefixes" grep -q '^<5>.*notice main: torii .* ready' "$T_TMP/torii.log"
check "access lines not in the event log" bash -c "! grep -q 'GET /bytes/10' '$T_TMP/torii.log'"
t_stop

# --- 4. SIGHUP under keep-alive load (wrk) that adds a route: zero failures, new route served
: > "$T_TMP/torii.log"
config ""
t_start || exit 1
check_eq "b.example.test has no route yet" "421" "$(status_of b.example.test /bytes/5)"
wrk -t2 -c16 -d300s --timeout 60s -H "Host: a.example.test" \
  "https://127.0.0.1:$T_HTTPS/bytes/64" > "$T_TMP/wrk1.out" 2>&1 &
WRK=$!
reqs() { t_backend_stat "$BK1" requests; }
N0=$(reqs)
check "wrk load running" t_wait_for bash -c "[ \$(curl -s http://127.0.0.1:$BK1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"requests\"])') -gt $((N0 + 200)) ]"
config ",{\"hosts\": [\"b.example.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK2\"]}}" \
  "\"exporters\": [{\"type\": \"file\", \"path\": \"$T_TMP/alerts.jsonl\"}],"
INO=$(listen_inodes "$T_HTTPS")
kill -HUP "$T_PID"
check "reload applied" t_wait_for log_has "configuration reloaded (generation 2)"
check "two listening sockets before the reload" test "$(echo "$INO" | wc -w)" -eq 2
check_eq "reload kept the listening sockets" "$INO" "$(listen_inodes "$T_HTTPS")"
check_eq "new requests see the new route" "200" "$(status_of b.example.test /bytes/5)"
check "exporters reloaded" log_has "exporters reloaded (1)"
mkcert c1 ec 30 c1.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json c1 c1)"
check_eq "certificate created" "201" "$T_STATUS"
check "the new file exporter gets the alert" t_wait_for grep -q CertCreatedAlert "$T_TMP/alerts.jsonl"
check "old generation drained under load" t_wait_for log_has "generation 1 drained"
check "wrk still running when it had drained" kill -0 "$WRK"
N1=$(reqs)
check "load went on after the reload" t_wait_for bash -c "[ \$(curl -s http://127.0.0.1:$BK1/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"requests\"])') -gt $((N1 + 200)) ]"
check "wrk still running at the end (reload happened under load)" kill -0 "$WRK"
kill -INT "$WRK"; wait "$WRK"
wrk_ok() { # no socket error, no non-2xx, some requests done
  ! grep -q "Socket errors" "$1" && ! grep -q "Non-2xx" "$1" && grep -q "requests in" "$1"
}
check "wrk: zero failed requests across the reload" wrk_ok "$T_TMP/wrk1.out"

# --- 5. invalid configurations on SIGHUP are refused and logged; the old one keeps running
cp "$T_TMP/torii.json" "$T_TMP/good.json"
sed -i 's/"workers": 2/"workers": 3/' "$T_TMP/torii.json"
kill -HUP "$T_PID"
check "workers change refused, key named" t_wait_for log_has "reload refused: config: workers: cannot change on reload"
echo '{"routes": [' > "$T_TMP/torii.json"
kill -HUP "$T_PID"
check "broken JSON refused" t_wait_for log_has "reload refused: config: $T_TMP/torii.json:"
python3 - "$T_TMP/good.json" "$T_TMP/torii.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["routes"][0]["backend"]["targets"] = ["nonsense::"]
json.dump(c, open(sys.argv[2], "w"))
PY
kill -HUP "$T_PID"
check "bad route refused" t_wait_for log_has "reload refused: config: routes\[0\].backend.targets\[0\]"
check_eq "old routes still served" "200" "$(status_of b.example.test /bytes/5)"
check_eq "no generation 3" "0" "$(grep -c 'generation 3' "$T_TMP/torii.log")"
# A listener moved by a reload: the new address is bound, the old one closes.
NEWHTTP=$(t_free_port)
sed "s/127.0.0.1:$T_HTTP\"/127.0.0.1:$NEWHTTP\"/" "$T_TMP/good.json" > "$T_TMP/torii.json"
kill -HUP "$T_PID"
check "listener move applied" t_wait_for log_has "configuration reloaded (generation 3)"
check_eq "new http listener answers (redirect)" "308" \
  "$(curl -s --max-time 60 -o /dev/null -w '%{http_code}' -H 'Host: a.example.test' "http://127.0.0.1:$NEWHTTP/")"
check "old http listener closed once drained" t_wait_for bash -c \
  "! curl -s --max-time 10 -o /dev/null http://127.0.0.1:$T_HTTP/ 2>/dev/null"
T_HTTP=$NEWHTTP

# --- 6. binary upgrade under load (wrk keep-alive + new connections): zero failures
cat > "$T_TMP/newconn.py" <<'PY'
# New TLS connection per request until STOPFILE exists (at most 100000 requests, 300 s).
import os, socket, ssl, sys, time
port, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ok = fail = 0; t0 = time.time(); last = ""
while not os.path.exists(stop) and ok + fail < 100000 and time.time() - t0 < 300:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            with ctx.wrap_socket(s) as t:
                t.sendall(b"GET /bytes/32 HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    b = t.recv(65536)
                    if not b: break
                    data += b
        if data.startswith(b"HTTP/1.1 200") and len(data) > 32:
            ok += 1
        else:
            fail += 1; last = repr(data[:80])
    except Exception as e:
        fail += 1; last = repr(e)
    if (ok + fail) % 20 == 0 or os.path.exists(stop):
        with open(out + ".tmp", "w") as f: f.write("%d %d %s\n" % (ok, fail, last))
        os.replace(out + ".tmp", out)
with open(out + ".tmp", "w") as f: f.write("%d %d %s\n" % (ok, fail, last))
os.replace(out + ".tmp", out)
PY
newconn_ok() { awk '{print $1}' "$T_TMP/newconn.out" 2>/dev/null; }
python3 "$T_TMP/newconn.py" "$T_HTTPS" "$T_TMP/stop" "$T_TMP/newconn.out" &
NEWCONN=$!
T_BG_PIDS+=($NEWCONN)
wrk -t1 -c8 -d300s --timeout 60s -H "Host: a.example.test" \
  "https://127.0.0.1:$T_HTTPS/bytes/64" > "$T_TMP/wrk2.out" 2>&1 &
WRK=$!
check "new-connection load running" t_wait_for bash -c "[ \"\$(awk '{print \$1}' $T_TMP/newconn.out 2>/dev/null)\" -gt 40 ] 2>/dev/null"
OLD=$T_PID
INO=$(listen_inodes "$T_HTTPS")
"$TORII_BIN" --upgrade -c "$T_TMP/torii.json" >> "$T_TMP/torii2.log" 2>&1 &
T_PID2=$!
check "successor took the sockets" t_wait_for log_has "upgrade: took over 4 listening sockets" "$T_TMP/torii2.log"
check "old process drains" t_wait_for log_has "upgrade: draining"
st=0; t_wait_for bash -c "! kill -0 $OLD 2>/dev/null"; wait "$OLD" || st=$?; T_PID=$T_PID2
check_eq "old process exits 0 after the hand-over" "0" "$st"
check_eq "the successor accepts on the same listening sockets" "$INO" "$(listen_inodes "$T_HTTPS")"
check "old process final line names the successor" log_has "handed over to pid $T_PID2"
K=$(newconn_ok)
check "new connections go on after the upgrade" t_wait_for bash -c "[ \"\$(awk '{print \$1}' $T_TMP/newconn.out)\" -gt $((K + 40)) ]"
check "wrk still running at the end (upgrade happened under load)" kill -0 "$WRK"
kill -INT "$WRK"; wait "$WRK"
touch "$T_TMP/stop"; wait "$NEWCONN"
check "wrk: zero failed requests across the upgrade" wrk_ok "$T_TMP/wrk2.out"
check_eq "new connections: zero failed requests or handshakes" "0" "$(awk '{print $2}' "$T_TMP/newconn.out")"
check_eq "the successor serves" "200" "$(status_of b.example.test /bytes/5)"
check "upgrade socket is the successor's" test -S "$T_TMP/data/torii-upgrade.sock"
# A second torii on the same data dir (without --upgrade) refuses to start.
st=0; timeout 60 "$TORII_BIN" -c "$T_TMP/torii.json" > "$T_TMP/second.log" 2>&1 || st=$?
check "second instance refused" test "$st" -ne 0
check "second instance names the running one" grep -Eq "another torii is running on data_dir|is in use by another torii" \
  "$T_TMP/second.log"

# --- 7. SIGUSR2: the running torii starts its own binary with --upgrade, which takes over
kill -USR2 "$T_PID2"
check "SIGUSR2 started the successor" t_wait_for log_has "SIGUSR2, started .* --upgrade" "$T_TMP/torii2.log"
check "SIGUSR2 successor took the sockets" t_wait_for log_has "took over 4 listening sockets (pid" \
  "$T_TMP/torii2.log"
st=0; t_wait_for bash -c "! kill -0 $T_PID2 2>/dev/null"; wait "$T_PID2" || st=$?; T_PID=""
check_eq "upgraded process exits 0" "0" "$st"
T_PID3=$(grep -o 'took over 4 listening sockets (pid [0-9]*' "$T_TMP/torii2.log" | tail -1 | grep -o '[0-9]*$')
T_PID2=$T_PID3 # killed on exit if something goes wrong
check_eq "the SIGUSR2 successor serves" "200" "$(status_of b.example.test /bytes/5)"
kill -TERM "$T_PID3"
check "SIGUSR2 successor stops" t_wait_for bash -c "! kill -0 $T_PID3 2>/dev/null"
check "SIGUSR2 successor final line" t_wait_for log_has "exiting (status 0, pid $T_PID3)" "$T_TMP/torii2.log"
T_PID2=""
cat "$T_TMP/torii2.log" >> "$T_TMP/torii.log"
echo "wrk reload: $(grep 'requests in' "$T_TMP/wrk1.out"); wrk upgrade: $(grep 'requests in' "$T_TMP/wrk2.out"); new connections: $(cat "$T_TMP/newconn.out")"
t_done
