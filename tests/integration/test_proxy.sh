#!/usr/bin/env bash
# The HTTP/1.1 proxy end to end against torii-backend on loopback: routing, keep-alive reuse,
# 20 MiB bodies both ways, chunked both ways, 100-continue, pipelining, HTTP/1.0, 502/504,
# 421, 308, forwarding headers, hop-by-hop removal, request bodies dropped after an early
# answer (keep-alive kept), a framing corpus (status + close, and the backend never sees a
# smuggled request), invalid backend framing (502, upstream closed), faults (backend reset,
# client abort, slowloris) and 10,000 idle connections with bounded memory.
here=$(dirname "$0")
source "$here/lib.sh"
# 10,000 client sockets on each side of loopback, plus backends: raise the soft limit now,
# before the daemon starts (it inherits it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "# RLIMIT_NOFILE hard limit $(ulimit -Hn) < 10100: the idle-connection test will fail"
fi

BK1=$(t_free_port)
BK2=$(t_free_port)
DEAD=$(t_free_port)
t_backend_start "$BK1" || { echo "backend did not start"; exit 1; }
t_backend_start "$BK2" || { echo "backend did not start"; exit 1; }
trap 't_backend_stop_all; t_cleanup' EXIT

t_config "\"routes\": [
  {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK1\"],
   \"timeouts\": {\"connect_ms\": 1000, \"read_ms\": 8000, \"idle_ms\": 30000}}},
  {\"hosts\": [\"*.example.test\"], \"backend\": {\"targets\": [\"http://127.0.0.1:$BK2\"]}},
  {\"hosts\": [\"127.0.0.1\"], \"backend\": {\"targets\": [\"127.0.0.1:$DEAD\"],
   \"timeouts\": {\"connect_ms\": 500}}}
],
\"limits\": {\"header_timeout_ms\": 1500, \"idle_timeout_ms\": 3600000},"
# One worker, so keep-alive reuse is observable on one pool.
sed -i 's/"workers": 2/"workers": 1/' "$T_TMP/torii.json"
t_start || exit 1

U="https://localhost:$T_HTTPS"
# HTTP/1.1 semantics are tested here (hop-by-hop fields, chunked, close): no ALPN h2.
C=(curl -sk --http1.1 --max-time 20)

# --- raw client: raw.py PORT tls|plain [wait_s] < request bytes -> response bytes
# ("<<PAUSE>>" in the input: send no more until the first response bytes arrived (bounded),
# so the proxy answers before the rest arrives; wait_s bounds the wait for the close, which
# every request here ends with)
cat > "$T_TMP/raw.py" <<'PY'
import socket, ssl, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
data = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", port))
if mode == "tls":
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s, server_hostname="localhost")
out = b""; closed = False
def read_some(deadline):
    global out, closed
    s.settimeout(max(0.05, deadline - time.time()))
    try:
        b = s.recv(65536)
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        return False
    if not b:
        closed = True
        return False
    out += b
    return True
parts = data.split(b"<<PAUSE>>")
for i, part in enumerate(parts):
    if i > 0 and not closed:
        deadline = time.time() + min(wait, 10.0)
        while not out and time.time() < deadline and read_some(deadline):
            pass
    try:
        s.sendall(part)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        break
deadline = time.time() + wait
while not closed and time.time() < deadline and read_some(deadline):
    pass
sys.stdout.buffer.write(out)
sys.stdout.buffer.write(b"\n<<CLOSED>>\n" if closed else b"\n<<OPEN>>\n")
PY
raw() { python3 "$T_TMP/raw.py" "$@"; }
# statuses < raw output -> the status codes of the responses, space-separated
statuses() { grep -ao 'HTTP/1\.[01] [0-9][0-9][0-9]' | cut -d' ' -f2 | paste -sd' '; }
# closed_after STATUSES < raw output -> success when exactly these responses came, the first
# one said Connection: close and the connection was closed
closed_after() {
  local o
  o=$(cat)
  [ "$(statuses <<<"$o")" = "$1" ] && ! first_keeps <<<"$o" && grep -q '<<CLOSED>>' <<<"$o"
}
# first_keeps < raw output -> success when the first response head does not say close
first_keeps() { python3 -c 'import sys; h=sys.stdin.buffer.read().split(b"\r\n\r\n",1)[0].lower(); sys.exit(1 if b"\r\nconnection: close" in h else 0)'; }

# --- basic proxying and forwarding headers
body=$("${C[@]}" "$U/echo" -H 'X-Forwarded-For: 6.6.6.6' -H 'Forwarded: for=evil' \
       -H 'X-Forwarded-Host: evil' -H 'Connection: keep-alive, X-Hop' -H 'X-Hop: 1' \
       -H 'Keep-Alive: timeout=5' -H 'TE: trailers' -H 'Proxy-Connection: x' -H 'Upgrade: h2c' \
       -H 'Client-Cert: :Zm9v:' -H 'X-Keep: yes')
hdr() { echo "$body" | python3 -c 'import json,sys; h=json.load(sys.stdin)["headers"]; print(",".join(v for n,v in h if n.lower()==sys.argv[1].lower()))' "$1"; }
check_eq "proxied GET reaches the backend" "/echo" "$(echo "$body" | jget '["path"]')"
check_eq "X-Forwarded-For replaced" "127.0.0.1" "$(hdr X-Forwarded-For)"
check_eq "X-Forwarded-Proto set" "https" "$(hdr X-Forwarded-Proto)"
check_eq "X-Forwarded-Host replaced" "localhost:$T_HTTPS" "$(hdr X-Forwarded-Host)"
check_eq "Forwarded replaced (RFC 7239)" "for=127.0.0.1;host=\"localhost:$T_HTTPS\";proto=https" "$(hdr Forwarded)"
for h in Connection X-Hop Keep-Alive TE Proxy-Connection Upgrade Client-Cert; do
  check_eq "hop-by-hop/untrusted $h not forwarded" "" "$(hdr $h)"
done
check_eq "end-to-end header forwarded" "yes" "$(hdr X-Keep)"
check_eq "backend speaks HTTP/1.1" "HTTP/1.1" "$(echo "$body" | jget '["version"]')"

# --- keep-alive reuse: many requests, few backend connections
c0=$(t_backend_stat "$BK1" connections)
for i in $(seq 1 20); do "${C[@]}" -o /dev/null "$U/bytes/100"; done
c1=$(t_backend_stat "$BK1" connections)
check "20 requests from 20 clients reuse pooled backend connections ($((c1 - c0)) new)" test $((c1 - c0)) -le 2
n=$("${C[@]}" "$U/bytes/10" "$U/bytes/10" "$U/bytes/10" -w '%{num_connects}\n' -o /dev/null | paste -sd+ | bc)
check_eq "client keep-alive: 3 requests on one connection" 1 "$n"

# --- 20 MiB both ways, intact
head -c $((20 * 1024 * 1024)) /dev/urandom > "$T_TMP/big.bin"
want=$(sha256sum "$T_TMP/big.bin" | cut -c1-64)
got=$("${C[@]}" --data-binary @"$T_TMP/big.bin" "$U/upload" | jget '["sha256"]')
check_eq "20 MiB upload (Content-Length) intact" "$want" "$got"
got=$("${C[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$T_TMP/big.bin" "$U/upload" | jget '["sha256"]')
check_eq "20 MiB upload (chunked, re-framed) intact" "$want" "$got"
got=$("${C[@]}" -H 'Expect: 100-continue' --data-binary @"$T_TMP/big.bin" "$U/upload" | jget '["sha256"]')
check_eq "100-continue upload intact" "$want" "$got"
want=$(python3 -c 'import hashlib,sys; b=bytes((97+i%26) for i in range(16384)); n=20*1024*1024; h=hashlib.sha256(); [h.update(b) for _ in range(n//16384)]; print(h.hexdigest())')
check_eq "20 MiB download (Content-Length) intact" "$want" "$("${C[@]}" "$U/bytes/$((20 * 1024 * 1024))" | sha256sum | cut -c1-64)"
check_eq "20 MiB download (chunked) intact" "$want" "$("${C[@]}" "$U/chunked/$((20 * 1024 * 1024))" | sha256sum | cut -c1-64)"
out=$("${C[@]}" -D - -o /dev/null "$U/chunked/100")
check "chunked response passed through chunked to HTTP/1.1" grep -qi 'transfer-encoding: chunked' <<<"$out"
out=$("${C[@]}" --http1.0 -D - -o "$T_TMP/c10" "$U/chunked/1000")
check "HTTP/1.0 client: no chunked framing" sh -c "! echo '$out' | grep -qi 'transfer-encoding'"
check_eq "HTTP/1.0 client: de-chunked, close-delimited body" 1000 "$(wc -c < "$T_TMP/c10")"
check_eq "close-delimited response re-framed for HTTP/1.1" 5000 "$("${C[@]}" "$U/eof/5000" | wc -c)"
check_eq "HEAD gets no body" "" "$("${C[@]}" -I "$U/bytes/100" -o /dev/null -w '' ; "${C[@]}" --head "$U/bytes/100" | tr -d '\r' | sed -n '/^$/,$p' | tr -d '\n')"
check_eq "204 passes without body" 204 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/status/204")"

# --- pipelining, answered in order
out=$(printf 'GET /bytes/3 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /echo?a=1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls)
check_eq "pipelined: three responses" 3 "$(grep -ao 'HTTP/1.1 200' <<<"$out" | wc -l)"
check "pipelined: in order" python3 -c 'import sys; s=sys.argv[1]; a=s.find("abc\n")+1 or s.find("abcHTTP"); b=s.find("/echo"); c=s.find("abcd<"); sys.exit(0 if 0 < s.find("abc") < b < s.rfind("abcd") else 1)' "$out"
check "Connection: close honoured" grep -q '<<CLOSED>>' <<<"$out"

# --- HTTP/1.0 keep-alive
out=$(printf 'GET /bytes/2 HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\nGET /bytes/2 HTTP/1.0\r\nHost: localhost\r\n\r\n' | raw "$T_HTTPS" tls)
check_eq "HTTP/1.0 keep-alive: two responses" 2 "$(grep -ao 'HTTP/1.1 200' <<<"$out" | wc -l)"
check "HTTP/1.0 keep-alive announced" grep -qi '^Connection: keep-alive' <<<"$out"

# --- routing errors
check_eq "421: Host not covered by the certificate (Host != SNI)" 421 \
  "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Host: app.example.test' "$U/echo")"
check_eq "421: no route for this Host" 421 \
  "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Host: nowhere.test' "$U/echo")"
check_eq "502: backend down" 502 "$("${C[@]}" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$T_HTTPS/x")"
body=$("${C[@]}" "https://127.0.0.1:$T_HTTPS/x")
check "502 body is JSON" grep -q '"error"' <<<"$body"
# (read_ms is 8 s, room for a 20 MiB upload on a crowded machine; the backend would answer
# after 60 s, beyond curl's 20 s: only the proxy's deadline can produce the answer)
check_eq "504: backend too slow" 504 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/sleep/60000")"
check_eq "proxy still serves after 504" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"
check_eq "400: absolute-form authority differs from Host" 400 \
  "$(printf 'GET http://other.test/echo HTTP/1.1\r\nHost: localhost\r\n\r\n' | raw "$T_HTTPS" tls | head -1 | cut -d' ' -f2)"
check_eq "400: userinfo in absolute-form" 400 \
  "$(printf 'GET http://u:p@localhost/echo HTTP/1.1\r\nHost: u:p@localhost\r\n\r\n' | raw "$T_HTTPS" tls | head -1 | cut -d' ' -f2)"
check_eq "absolute-form with matching Host is proxied" 200 \
  "$(printf 'GET https://localhost/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls | head -1 | cut -d' ' -f2)"

# --- plain http listener
out=$(curl -s -D - -o /dev/null "http://localhost:$T_HTTP/some/path?q=1")
check "308 on the http listener" grep -q '^HTTP/1.1 308' <<<"$out"
check "Location points at https with the port" grep -qi "^Location: https://localhost:$T_HTTPS/some/path?q=1" <<<"$out"
check_eq "/.well-known/ unknown path: 404 on http" 404 \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$T_HTTP/.well-known/nothing")"
check_eq "/.well-known/ unknown path: 404 on https (any host)" 404 \
  "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Host: nowhere.test' "$U/.well-known/nothing")"

# --- answered before the request body was read (by torii, or early by the backend): the
# rest of the body is dropped and the connection carries the next request
NEXT='GET /bytes/3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
out=$(printf "POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 10\r\n\r\n0123456789$NEXT" | raw "$T_HTTPS" tls)
check_eq "POST with a body to a no-route host: 421, then the next request" "421 200" "$(statuses <<<"$out")"
check "no-route 421 with a body keeps the connection" first_keeps <<<"$out"
out=$(printf "POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 3000\r\n\r\nabc<<PAUSE>>%02997d$NEXT" 0 | raw "$T_HTTPS" tls)
check_eq "421 sent before the body arrived, body dropped, next request answered" "421 200" "$(statuses <<<"$out")"
out=$(printf 'POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello<<PAUSE>>\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | raw "$T_HTTP" plain)
check_eq "chunked POST redirected (308), body dropped, next request answered" "308 308" "$(statuses <<<"$out")"
check "308 with a chunked body keeps the connection" first_keeps <<<"$out"
out=$(printf 'POST /.well-known/nothing HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /.well-known/none HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | raw "$T_HTTP" plain)
check_eq "/.well-known/ POST with a body: 404, then the next request" "404 404" "$(statuses <<<"$out")"
check "/.well-known/ 404 with a body keeps the connection" first_keeps <<<"$out"
out=$(printf 'POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 2000000\r\n\r\nabc' | raw "$T_HTTPS" tls)
check "body remainder over the drain limit: 421, Connection: close, closed" closed_after 421 <<<"$out"
out=$(printf 'POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n' | raw "$T_HTTPS" tls)
check "100-continue never sent, body may not follow: 421, Connection: close, closed" closed_after 421 <<<"$out"
out=$(printf 'POST /.well-known/x HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\nabc' | raw "$T_HTTP" plain)
check "/.well-known/ body over 64 KiB (Content-Length): 413 and closed" closed_after 413 <<<"$out"
out=$(python3 -c 'import sys; sys.stdout.buffer.write(b"POST /.well-known/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"8000\r\n" + b"x" * 0x8000 + b"\r\n" + b"8001\r\n" + b"x" * 0x8001 + b"\r\n0\r\n\r\n")' | raw "$T_HTTP" plain)
check "/.well-known/ body over 64 KiB (chunked): 413 and closed" closed_after 413 <<<"$out"
out=$( (printf 'POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n'; head -c 1000 /dev/zero; printf '<<PAUSE>>'; head -c 199000 /dev/zero; printf "$NEXT") | raw "$T_HTTPS" tls)
check_eq "backend answered before the body (Content-Length): rest dropped, next request" "200 200" "$(statuses <<<"$out")"
check "backend answered early: connection kept" first_keeps <<<"$out"
check "backend answered early: its answer relayed" grep -q '{"early":true}' <<<"$out"
out=$(printf "POST /early HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n<<PAUSE>>5\r\nworld\r\n0\r\n\r\n$NEXT" | raw "$T_HTTPS" tls)
check_eq "backend answered before the body (chunked): rest dropped, next request" "200 200" "$(statuses <<<"$out")"
check "backend answered early (chunked): connection kept" first_keeps <<<"$out"

# --- framing corpus: each malformed request -> status and close; nothing smuggled
r0=$(t_backend_stat "$BK1" requests)
corpus=(
  "400|GET /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
  "400|POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
  "501|POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
  "501|POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
  "400|POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
  "400|GET /echo HTTP/1.1\r\nHost: localhost\r\n X-Folded: yes\r\n\r\n"
  "400|GET /echo HTTP/1.1\nHost: localhost\n\n"
  "400|GET /echo HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n"
  "400|GET /echo HTTP/1.1\r\n\r\n"
  "400|POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n"
  "400|POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1x\r\n\r\n"
  "505|GET /echo HTTP/2.0\r\nHost: localhost\r\n\r\n"
)
for entry in "${corpus[@]}"; do
  want=${entry%%|*}
  req=${entry#*|}
  out=$(printf "$req" | raw "$T_HTTPS" tls)
  got=$(head -1 <<<"$out" | cut -d' ' -f2)
  check_eq "corpus: $(printf '%q' "${req:0:60}") -> $want" "$want" "$got"
  check "corpus: connection closed after $want" grep -q '<<CLOSED>>' <<<"$out"
done
out=$(printf 'POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n' | raw "$T_HTTPS" tls)
check "bad chunk framing mid-body: closed" grep -q '<<CLOSED>>' <<<"$out"
r1=$(t_backend_stat "$BK1" requests)
check "backend never saw a smuggled request" sh -c "! grep -q smuggled '$T_TMP/backend-$BK1.log'"
check "framing corpus: at most the cut-off upload reached the backend ($((r1 - r0 - 1)))" test $((r1 - r0 - 1)) -le 1

# --- invalid upstream framing (Content-Length with Transfer-Encoding) -> 502, and that
# upstream connection is closed, not pooled
out=$("${C[@]}" -D - "$U/badframe")
check "invalid backend framing: 502" grep -q '^HTTP/1.1 502' <<<"$out"
check "invalid backend framing: JSON error" grep -q '"error"' <<<"$out"
for _ in $(seq 1 300); do grep -q 'EOF /badframe' "$T_TMP/backend-$BK1.log" && break; sleep 0.1; done
check "invalid backend framing: upstream connection closed" grep -q 'EOF /badframe' "$T_TMP/backend-$BK1.log"
check_eq "proxy still serves after invalid backend framing" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"

# --- faults
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/reset")
check "backend reset mid-response: client sees a truncated response" test "$code" = 200 -o "$code" = 000
check_eq "proxy still serves after a backend reset" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"
python3 - "$T_HTTPS" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
time.sleep(0.3)
s.close()
PY
sleep 0.3
check_eq "client disconnect mid-upload: proxy still serves" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"
# slowloris: one header line every 0.25 s for up to 30 s, far beyond the 1.5 s header
# deadline; the deadline (not the end of the trickle) must end it, never before 1.5 s
python3 - "$T_HTTP" > "$T_TMP/slow.out" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.time()
s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
out = b""; sent = 0; closed = False
while sent < 120 and not closed:
    s.settimeout(0.25)
    try:
        b = s.recv(4096)
        if b:
            out += b
        else:
            closed = True
    except socket.timeout:
        try:
            s.sendall(b"X-Slow: %d\r\n" % sent); sent += 1
        except (BrokenPipeError, ConnectionResetError):
            closed = True
    except ConnectionResetError:
        closed = True
head = out.split(b"\r\n", 1)[0].split(b" ")
print(head[1].decode() if len(head) > 1 else "none", int(closed), sent, round(time.time() - t0, 2))
PY
read -r slow_status slow_closed slow_sent slow_secs < "$T_TMP/slow.out"
check_eq "slowloris: 408 at the header deadline" 408 "$slow_status"
check "slowloris: closed by the deadline while the client still trickled ($slow_sent lines, ${slow_secs}s)" \
  test "$slow_closed" = 1 -a "$slow_sent" -lt 120
check "slowloris: not closed before the 1.5 s deadline (${slow_secs}s)" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1.4 else 1)' "$slow_secs"

# --- access log
check "access log line is JSON with status and upstream" \
  sh -c "grep '^{\"time\"' '$T_TMP/torii.log' | tail -50 | python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]' && grep -q '\"upstream\":\"127.0.0.1:$BK1\"' '$T_TMP/torii.log'"

# --- 10,000 concurrent idle connections, bounded memory. idle_timeout_ms is 1 h here, far
# above any time the opener can take, so every connection must still be served whatever the
# machine's speed (the idle timeout itself is tested below, on a few connections). The
# opener keeps its connections until the RSS was read ($T_TMP/idle.release).
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$T_PID/status")
python3 - "$T_HTTP" "$T_TMP/idle.out" "$T_TMP/idle.release" <<'PY' &
import os, socket, sys, time, resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
import select
port = int(sys.argv[1]); socks = []
t0 = time.time()
for i in range(10000):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex(("127.0.0.1", port)); socks.append(s)
pending = {s.fileno(): s for s in socks}
poll = select.poll()
for fd in pending:
    poll.register(fd, select.POLLOUT)
while pending and time.time() - t0 < 300:
    for fd, ev in poll.poll(1000):
        poll.unregister(fd)
        del pending[fd]
opened = round(time.time() - t0, 1)
for s in socks:
    s.setblocking(True); s.settimeout(60)
# every connection is served: one request on a sample
ok = 0
for s in socks[::1000]:
    try:
        s.sendall(b"GET /.well-known/x HTTP/1.1\r\nHost: a\r\n\r\n")
        if s.recv(100).startswith(b"HTTP/1.1 404"): ok += 1
    except OSError:
        pass
with open(sys.argv[2] + ".tmp", "w") as f:
    print(len(socks) - len(pending), ok, opened, file=f)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
deadline = time.time() + 300
while not os.path.exists(sys.argv[3]) and time.time() < deadline:
    time.sleep(0.05)
PY
pyp=$!
for _ in $(seq 1 4000); do
  [ -s "$T_TMP/idle.out" ] && break
  kill -0 "$pyp" 2>/dev/null || break
  sleep 0.1
done
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$T_PID/status" 2>/dev/null)
touch "$T_TMP/idle.release"
wait $pyp
read -r n ok secs < "$T_TMP/idle.out"
check_eq "10,000 idle connections accepted" 10000 "$n"
check_eq "idle connections still answered" 10 "$ok"
echo "# RSS before ${rss0} KiB, with 10k idle connections ${rss1} KiB (opened in ${secs}s)"
if [ "$T_SANITIZED" = 1 ]; then
  echo "# sanitizer build: memory bounds not checked"
else
check "RSS with 10k idle connections bounded (< 20 KiB per connection)" test $((rss1 - rss0)) -lt 200000
fi
check_eq "proxy still serves after the idle storm" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"
rss2=$(awk '/VmRSS/ {print $2}' "/proc/$T_PID/status")
echo "# RSS after ${rss2} KiB"
if [ "$T_SANITIZED" != 1 ]; then
  check "RSS bounded after 10k idle connections (< 300 MiB)" test "$rss2" -lt 307200
fi

check "graceful stop" t_stop

# --- the default route ("*") and tls.strict_host. The default certificate names localhost
# and 127.0.0.1. BK1 serves localhost, BK2 everything else; mtls.example.test wants a client
# certificate. idle_timeout_ms is short here: the idle timeout is tested on a few connections.
default_routes() {
  t_config "\"routes\": [
    {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK1\"]}},
    {\"hosts\": [\"mtls.example.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK1\"]},
     \"client_auth\": {\"mode\": \"required\", \"trusted_cas\": [\"no-such-ca\"]}},
    {\"hosts\": [\"*\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK2\"]}}
  ],
  \"limits\": {\"idle_timeout_ms\": 1000},
  $1"
}
# on_bk2 CURL_ARGS... -> "STATUS BK2_REQUESTS_ADDED" (less the /stats request itself)
on_bk2() {
  local r0 code
  r0=$(t_backend_stat "$BK2" requests)
  code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$@")
  echo "$code $(( $(t_backend_stat "$BK2" requests) - r0 - 1 ))"
}
RES=(--resolve "unlisted.test:$T_HTTPS:127.0.0.1" --resolve "mtls.example.test:$T_HTTPS:127.0.0.1")
default_routes ""
t_start || exit 1
check_eq "strict_host on: Host as an IP the certificate names -> default route" "200 1" \
  "$(on_bk2 "https://127.0.0.1:$T_HTTPS/echo")"
check_eq "strict_host on: Host 10.0.0.5, not in the certificate -> 421" "421 0" \
  "$(on_bk2 -H 'Host: 10.0.0.5' "$U/echo")"
check_eq "strict_host on: unlisted name, not in the certificate -> 421" "421 0" \
  "$(on_bk2 "${RES[@]}" "https://unlisted.test:$T_HTTPS/echo")"
check_eq "named route still first" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/bytes/1")"

# idle timeout: a few connections that never send are closed by the daemon after 1 s (and
# not before), waited for by polling with a generous bound
python3 - "$T_HTTP" > "$T_TMP/idleclose.out" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
t0 = time.time()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
closed_at = {}
while len(closed_at) < len(socks) and time.time() - t0 < 60:
    for i, s in enumerate(socks):
        if i in closed_at:
            continue
        s.settimeout(0.05)
        try:
            if s.recv(100) == b"":
                closed_at[i] = time.time() - t0
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed_at[i] = time.time() - t0
print(len(closed_at), round(min(closed_at.values(), default=0), 2))
PY
read -r nclosed first_close < "$T_TMP/idleclose.out"
check_eq "idle timeout: every idle connection closed by the daemon" 5 "$nclosed"
check "idle timeout: none closed before idle_timeout_ms (first after ${first_close}s)" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)' "$first_close"
check "graceful stop (strict_host on)" t_stop

default_routes "\"tls\": {\"strict_host\": false},"
t_start || exit 1
check_eq "strict_host off: Host 10.0.0.5 -> default route" "200 1" \
  "$(on_bk2 -H 'Host: 10.0.0.5' "$U/echo")"
check_eq "strict_host off: Host as an IP without SNI -> default route" "200 1" \
  "$(on_bk2 -H 'Host: 10.0.0.5' "https://127.0.0.1:$T_HTTPS/echo")"
check_eq "strict_host off: unlisted name -> default route" "200 1" \
  "$(on_bk2 "${RES[@]}" "https://unlisted.test:$T_HTTPS/echo")"
check_eq "strict_host off: localhost still its own route" "200 0" "$(on_bk2 "$U/echo")"
check_eq "strict_host off: client-certificate policy still checked (SNI localhost)" "421 0" \
  "$(on_bk2 -H 'Host: mtls.example.test' "$U/echo")"
check_eq "strict_host off: client-certificate policy still checked (SNI unlisted)" "421 0" \
  "$(on_bk2 "${RES[@]}" -H 'Host: mtls.example.test' "https://unlisted.test:$T_HTTPS/echo")"
check_eq "strict_host off: client-certificate policy still checked (no SNI)" "421 0" \
  "$(on_bk2 -H 'Host: mtls.example.test' "https://127.0.0.1:$T_HTTPS/echo")"
check "graceful stop (strict_host off)" t_stop

# --- (restart) chunk-size lines and trailers bounded both ways, empty field names, an empty
# line before any request, the query string in the access log; then, with access_log off,
# requests still counted. A hostile raw backend on 127.0.0.1 answers by path.
RAWBK=$(t_free_port)
cat > "$T_TMP/rawbk.py" <<'PY'
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
def serve(c):
    try:
        c.settimeout(10)
        d = b""
        while b"\r\n\r\n" not in d and len(d) < 65536:
            b = c.recv(4096)
            if not b:
                return
            d += b
        path = d.split(b" ", 2)[1]
        if path == b"/chunkext":
            c.sendall(HEAD + b"5;" + b"a" * 70000 + b"\r\nhello\r\n0\r\n\r\n")
        elif path == b"/trailers":
            c.sendall(HEAD + b"5\r\nhello\r\n0\r\n")
            for _ in range(100):  # 800 KB of trailer fields at most, or until torii closes
                c.sendall(b"X-T: v\r\n" * 1000)
        else:
            c.sendall(HEAD + b"5;k=v\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$T_TMP/rawbk.py" "$RAWBK" &
T_BG_PIDS+=($!)
trap 't_bg_stop; t_backend_stop_all; t_cleanup' EXIT
t_wait_port "$RAWBK" || echo "# raw backend did not start"
routes2="\"routes\": [
  {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK1\"]}},
  {\"hosts\": [\"127.0.0.1\"], \"backend\": {\"targets\": [\"127.0.0.1:$RAWBK\"]}}
],"
t_config "$routes2"
t_start || exit 1
# metric NAME_WITH_LABELS -> its value on /metrics (empty when absent)
metric() { api GET /metrics; awk -v n="$1" '$1 == n {print $2}' <<<"$T_BODY"; }
# wait_metric_above NAME VALUE -> success once the metric is above VALUE (bounded: 20 s)
wait_metric_above() {
  local v _
  for _ in $(seq 1 200); do
    v=$(metric "$1")
    [ -n "$v" ] && [ "$v" -gt "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# wait_log STRING -> success once the daemon log holds STRING (bounded: 20 s)
wait_log() {
  local _
  for _ in $(seq 1 200); do
    grep -qF -- "$1" "$T_TMP/torii.log" && return 0
    sleep 0.1
  done
  return 1
}
# lacks STRING TEXT -> success when TEXT does not hold STRING
lacks() { [[ "$2" != *"$1"* ]]; }

out=$(python3 -c 'import sys; sys.stdout.buffer.write(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;" + b"a" * 70000 + b"\r\nhello\r\n0\r\n\r\n")' | raw "$T_HTTPS" tls)
check "request chunk extension of 70,000 bytes: 400 and closed" closed_after 400 <<<"$out"
out=$(printf 'POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;k=v\r\nhello\r\n0\r\n\r\n' | raw "$T_HTTPS" tls)
check_eq "request with a short chunk extension still proxied" 200 "$(statuses <<<"$out")"
out=$(printf 'GET /chunkext HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls)
check "backend chunk extension of 70,000 bytes: its body never relayed" lacks hello "$out"
check "backend chunk extension of 70,000 bytes: connection closed" grep -q '<<CLOSED>>' <<<"$out"
check "backend chunk extension: logged as an invalid response" wait_log "invalid response from upstream"
out=$(printf 'GET /trailers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls 10)
check "backend endless trailers: the message is never completed" lacks $'\r\n0\r\n\r\n' "$out"
check "backend endless trailers: connection closed" grep -q '<<CLOSED>>' <<<"$out"
out=$(printf 'GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls)
check "backend chunk extension and trailer within the limits: relayed" grep -q hello <<<"$out"

r0=$(t_backend_stat "$BK1" requests)
out=$(printf 'GET /echo HTTP/1.1\r\nHost: localhost\r\n: v\r\n\r\n' | raw "$T_HTTPS" tls)
check "proxy listener: empty header field name -> 400 and closed" closed_after 400 <<<"$out"
# (the backend counts the /stats request that read r0)
check_eq "proxy listener: empty header field name never reaches the backend" "$((r0 + 1))" \
  "$(t_backend_stat "$BK1" requests)"
out=$(printf 'GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n' | raw "$T_ADMIN" plain)
check "admin listener: empty header field name -> 400 and closed" closed_after 400 <<<"$out"

out=$(printf '\n<<PAUSE>>GET /bytes/3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | raw "$T_HTTPS" tls)
check_eq "a lone LF before a request is ignored: only the request is answered" 200 "$(statuses <<<"$out")"
n0=$(metric torii_connections_without_request_total)
e0=$(grep -c '"method":""' "$T_TMP/torii.log")
out=$(echo | timeout 30 openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername localhost 2>/dev/null)
check "empty line over TLS, then close: no response" lacks "HTTP/1.1" "$out"
check "empty line over TLS, then close: counted as a connection without request" \
  wait_metric_above torii_connections_without_request_total "${n0:-0}"
check_eq "empty line over TLS, then close: no access log line" "$e0" "$(grep -c '"method":""' "$T_TMP/torii.log")"

"${C[@]}" -o /dev/null "$U/echo?a=1&b=two"
check "access log keeps the query string" wait_log '"path":"/echo?a=1&b=two"'
long=$(head -c 400 /dev/zero | tr '\0' q)
"${C[@]}" -o /dev/null "$U/echo?$long"
check "access log path with the query cut at 256 characters" wait_log "\"path\":\"/echo?${long:0:250}\","
check "graceful stop (access log on)" t_stop

t_config "\"access_log\": false, $routes2"
t_start || exit 1
c0=$(metric 'torii_http_requests_total{class="2xx"}')
"${C[@]}" -o /dev/null "$U/reset"
check "access_log off: a request cut by the backend (connection closed) is still counted" \
  wait_metric_above 'torii_http_requests_total{class="2xx"}' "${c0:-0}"
check "graceful stop (access log off)" t_stop
t_bg_stop
t_done
