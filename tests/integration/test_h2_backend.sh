#!/usr/bin/env bash
# HTTP/2 towards backends (backend.protocol h2c and h2) with curl as an HTTP/1.1 client:
# nghttpd (Debian nghttp2-server) serving a file over h2c and h2 (TLS, ALPN h2), and the
# python3-h2 origin h2_backend.py for the rest: request fields mapped (:authority, :scheme,
# forwarding fields), 3 MiB bodies both ways (Content-Length and chunked uploads, streamed),
# 40 concurrent requests multiplexed on a few backend connections, trailers relayed in the
# last chunk, GOAWAY (the next requests go to a fresh connection), a dead backend (gRPC:
# 200 + grpc-status 14, plain: 502), the grpc-timeout deadline (grpc-status 4), a stream reset
# mid-response (grpc-status 14 in the trailers), a TLS backend without ALPN h2 (502), a
# real gRPC server (python3-grpcio) answering a unary call an HTTP/1.1 client sends, an upload
# the backend grants no window cut after read_ms (504), and a response slower than connect_ms
# on a fresh backend connection (200: the connect deadline ends with the connect).
here=$(dirname "$0")
source "$here/lib.sh"
trap 't_bg_stop; t_cleanup' EXIT

PY=/usr/bin/python3
if ! $PY -c 'import h2' 2>/dev/null || ! command -v nghttpd >/dev/null; then
  echo "# python3-h2 or nghttpd (nghttp2-server) missing: scripts/deps.sh installs them"
  exit 1
fi

H2C=$(t_free_port)   # h2_backend.py, h2c
H2S=$(t_free_port)   # h2_backend.py, TLS
H2M=$(t_free_port)   # h2_backend.py, TLS asking for a client certificate (backend mTLS)
NGC=$(t_free_port)   # nghttpd --no-tls
NGS=$(t_free_port)   # nghttpd, TLS
NOALPN=$(t_free_port) # openssl s_server: TLS without ALPN h2
DEAD=$(t_free_port)
GRPC=$(t_free_port)  # grpc_driver.py serve (python3-grpcio), h2c

mkca bca "Backend CA"
mkcert edge ec 30 h2c.test,h2s.test,h2m.test,ngc.test,ngs.test,noalpn.test,dead.test,grpc.test,stall.test,fresh.test,trickle.test
mkleaf bk "backend" bca 'subjectAltName=DNS:backend.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
mkca cca "Client CA"
mkleaf up1 "torii upstream" cca 'extendedKeyUsage=clientAuth'
mkdir -p "$T_TMP/htdocs"
head -c 200000 /dev/urandom >"$T_TMP/htdocs/file.bin"

$PY "$here/h2_backend.py" "$H2C" >"$T_TMP/h2c.log" 2>&1 &
T_BG_PIDS+=($!)
$PY "$here/h2_backend.py" "$H2S" --cert "$T_TMP/bk.crt" --key "$T_TMP/bk.key" >"$T_TMP/h2s.log" 2>&1 &
T_BG_PIDS+=($!)
$PY "$here/h2_backend.py" "$H2M" --cert "$T_TMP/bk.crt" --key "$T_TMP/bk.key" \
  --client-ca "$T_TMP/cca.crt" >"$T_TMP/h2m.log" 2>&1 &
T_BG_PIDS+=($!)
nghttpd --no-tls -d "$T_TMP/htdocs" "$NGC" >"$T_TMP/ngc.log" 2>&1 &
T_BG_PIDS+=($!)
nghttpd -d "$T_TMP/htdocs" "$NGS" "$T_TMP/bk.key" "$T_TMP/bk.crt" >"$T_TMP/ngs.log" 2>&1 &
T_BG_PIDS+=($!)
openssl s_server -accept "$NOALPN" -cert "$T_TMP/bk.crt" -key "$T_TMP/bk.key" -www \
  >"$T_TMP/s_server.log" 2>&1 &
T_BG_PIDS+=($!)
$PY "$here/grpc_driver.py" serve "$GRPC" >"$T_TMP/grpc.log" 2>&1 &
T_BG_PIDS+=($!)
for p in "$H2C" "$H2S" "$H2M" "$NGC" "$NGS" "$NOALPN" "$GRPC"; do
  t_wait_port "$p" || fail "backend on port $p did not start"
done

route() { # hosts-name target protocol [extra backend members]
  printf '{"hosts": ["%s"], "backend": {"targets": ["%s"], "protocol": "%s"%s}},' \
    "$1" "$2" "$3" "${4:-}"
}
TLS=', "tls": {"trusted_ca": "bca"}'
t_config "\"routes\": [
  $(route h2c.test "http://127.0.0.1:$H2C" h2c ', "timeouts": {"read_ms": 20000, "idle_ms": 600000}')
  $(route h2s.test "https://127.0.0.1:$H2S" h2 "$TLS")
  $(route stall.test "https://127.0.0.1:$H2S" h2 "$TLS"', "timeouts": {"read_ms": 3000}')
  $(route trickle.test "https://127.0.0.1:$H2S" h2 "$TLS"', "timeouts": {"read_ms": 3000}')
  $(route fresh.test "https://127.0.0.1:$H2S" h2 "$TLS"', "timeouts": {"connect_ms": 1500}')
  $(route h2m.test "https://127.0.0.1:$H2M" h2 ', "tls": {"trusted_ca": "bca", "client_cert": "up1"}')
  $(route ngc.test "http://127.0.0.1:$NGC" h2c)
  $(route ngs.test "https://127.0.0.1:$NGS" h2 "$TLS")
  $(route noalpn.test "https://127.0.0.1:$NOALPN" h2 "$TLS")
  $(route grpc.test "http://127.0.0.1:$GRPC" h2c)
  {\"hosts\": [\"dead.test\"], \"backend\": {\"targets\": [\"http://127.0.0.1:$DEAD\"],
   \"protocol\": \"h2c\", \"timeouts\": {\"connect_ms\": 2000}}}
],"
t_start || exit 1
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json bca bca)" >/dev/null
check_eq "import the backend CA -> 201" 201 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json edge edge)" >/dev/null
check_eq "import the edge certificate -> 201" 201 "$T_STATUS"
api POST /api/certificates -H 'Content-Type: application/json' \
  -d "$(entity_json up1 up1 '{"client": true}')" >/dev/null
check_eq "import torii's client certificate for the backend -> 201" 201 "$T_STATUS"

c() { # host curl-args...: curl with that host resolved to the daemon's https listener
  local h=$1
  shift
  curl -sk --http1.1 --max-time 30 --resolve "$h:$T_HTTPS:127.0.0.1" "$@"
}
u() { # host path -> URL
  echo "https://$1:$T_HTTPS$2"
}
stats() { # host -> "connections requests" of that h2_backend.py
  c $1 "$(u "$1" /stats)" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["connections"], d["requests"])'
}

# ---- h2c and h2 (TLS, ALPN h2) against nghttpd ----
for h in ngc.test ngs.test; do
  c $h -o "$T_TMP/got.bin" "$(u $h /file.bin)"
  check "$h: a file served by nghttpd through torii, byte for byte" cmp -s "$T_TMP/got.bin" "$T_TMP/htdocs/file.bin"
done
check_eq "h2 with backend mTLS (tls.client_cert from the store)" "hello h2" \
  "$(c h2m.test "$(u h2m.test /hello)")"
check_eq "h2 to a TLS backend that does not select ALPN h2 -> 502" 502 \
  "$(c noalpn.test -o /dev/null -w '%{http_code}' "$(u noalpn.test /)")"

# ---- request mapping ----
hdrs=$(c h2c.test -H 'X-Custom: yes' -H 'Connection: x-hop' -H 'X-Hop: no' "$(u h2c.test /headers)")
field() { printf '%s' "$hdrs" | $PY -c 'import json,sys; print(dict(json.load(sys.stdin)).get(sys.argv[1], "-"))' "$1"; }
check_eq "h2c: :authority from Host" "h2c.test:$T_HTTPS" "$(field :authority)"
check_eq "h2c: :scheme http" http "$(field :scheme)"
check_eq "h2c: a field passes, lower-cased" yes "$(field x-custom)"
check_eq "h2c: X-Forwarded-For added" 127.0.0.1 "$(field x-forwarded-for)"
check_eq "h2c: a field named in Connection is dropped" - "$(field x-hop)"
check_eq "h2c: no host field (it is :authority)" - "$(field host)"
hdrs=$(c h2s.test "$(u h2s.test /headers)")
check_eq "h2 over TLS: :scheme https" https "$(field :scheme)"

# ---- bodies: 3 MiB both ways, streamed ----
head -c 3145728 /dev/urandom >"$T_TMP/up.bin"
for h in h2c.test h2s.test; do
  c $h --data-binary @"$T_TMP/up.bin" -H 'Content-Type: application/octet-stream' \
    -o "$T_TMP/echo.bin" "$(u $h /echo)"
  check "$h: 3 MiB Content-Length upload echoed back intact" cmp -s "$T_TMP/up.bin" "$T_TMP/echo.bin"
  c $h -T "$T_TMP/up.bin" -H 'Transfer-Encoding: chunked' -o "$T_TMP/echo.bin" \
    "$(u $h /echo)"
  check "$h: 3 MiB chunked upload echoed back intact" cmp -s "$T_TMP/up.bin" "$T_TMP/echo.bin"
done
check_eq "h2c: 5 MB download with Content-Length" 5000000 \
  "$(c h2c.test -o /dev/null -w '%{size_download}' "$(u h2c.test '/big?n=5000000')")"
head=$(c h2c.test -D - -o /dev/null "$(u h2c.test '/big?n=1000')")
check "h2c: the backend's Content-Length kept" grep -qi '^content-length: 1000' <<<"$head"

# ---- flow control: neither direction buffers a whole body ----
cat >"$T_TMP/slow.py" <<'PY'
import json, socket, ssl, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
host = sys.argv[3] if len(sys.argv) > 3 else "h2c.test"
N = 32 << 20
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def conn():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return ctx.wrap_socket(s, server_hostname=host)
def read_all(c):  # until the server closes
    out = b""
    while True:
        b = c.recv(65536)
        if not b:
            return out
        out += b
def sent():  # DATA bytes the backend has sent, through torii
    c = conn()
    c.sendall(b"GET /stats HTTP/1.1\r\nHost: h2c.test\r\nConnection: close\r\n\r\n")
    return json.loads(read_all(c).split(b"\r\n\r\n", 1)[1].split(b"\r\n")[1])["sent"]
if mode == "down":
    base = sent()
    s = conn()
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: h2c.test\r\n\r\n" % N)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1024)
    got = len(head.split(b"\r\n\r\n", 1)[1])
    prev = -1  # the client reads nothing now: wait until the backend stops sending (bounded)
    for _ in range(100):
        time.sleep(0.3)
        cur = sent() - base
        if cur - prev < 4096:  # (the /stats answers count too)
            break
        prev = cur
    print("held", cur)
    s.settimeout(60)
    while got < N:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
    print("total", got)
elif mode == "trickle":  # a body slower than read_ms (3 s): its one byte after 3.5 s
    s = conn()
    s.sendall(b"POST /reqtrailers HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\n"
              b"Connection: close\r\n\r\n" % host.encode())
    time.sleep(3.5)  # the client's slowness under test, not a wait for torii
    s.sendall(b"x")
    s.settimeout(60)
    out = read_all(s)
    body = out.split(b"\r\n\r\n", 1)[-1]  # chunked: the JSON is in the first chunk
    print(out.split(b"\r\n", 1)[0].decode(), "len 1" if b'"len": 1,' in body else body)
else:
    s = conn()
    s.sendall(b"POST /stall HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (host.encode(), N))
    s.settimeout(2)
    chunk = b"x" * 65536
    total = 0
    while total < N:
        try:
            total += s.send(chunk)
        except OSError:  # blocked for 2 s (a timeout), or torii gave up on the upload first
            break
    print("accepted", total)
PY
out=$($PY "$T_TMP/slow.py" "$T_HTTPS" down 2>&1)
held=$(sed -n 's/^held //p' <<<"$out")
check "download to a client that stops reading: the backend held at ${held:-?} of 32 MiB (< 12 MiB)" \
  test "${held:-999999999}" -lt $((12 << 20))
check_eq "... and the whole 32 MiB arrives once it reads again" "total $((32 << 20))" "$(grep '^total' <<<"$out")"
# A response slower than the route's connect_ms (1.5 s) on a fresh backend connection: the
# connect deadline must end with the connect (in the background while the next steps run).
c fresh.test -o /dev/null -w '%{http_code} %{time_total}' "$(u fresh.test '/hold?ms=3000')" \
  >"$T_TMP/fresh.txt" &
fresh_pid=$!
# A client that uploads slower than read_ms (3 s): not the backend's silence. (Its own route:
# the stalled upload below holds its connection's window, which stalls every stream on it.)
$PY "$T_TMP/slow.py" "$T_HTTPS" trickle trickle.test >"$T_TMP/trickle.txt" 2>&1 &
trickle_pid=$!
out=$($PY "$T_TMP/slow.py" "$T_HTTPS" up stall.test 2>&1)
acc=$(sed -n 's/^accepted //p' <<<"$out")
check "upload to a backend that grants no window: ${acc:-?} bytes of 32 MiB taken (< 16 MiB)" \
  test "${acc:-999999999}" -lt $((16 << 20))

# ---- multiplexing: 40 concurrent requests, few backend connections ----
read -r c0 r0 <<<"$(stats h2c.test)"
(
  for i in $(seq 1 40); do
    c h2c.test -o /dev/null -w '%{http_code}\n' "$(u h2c.test '/hold?ms=300')" &
  done
  wait
) >"$T_TMP/codes.txt"
check_eq "40 concurrent requests through h2c: all 200" 40 "$(grep -c '^200$' "$T_TMP/codes.txt")"
read -r c1 r1 <<<"$(stats h2c.test)"
check_eq "the backend saw the 40 requests (and the stats one)" 41 $((r1 - r0))
check "all $r1 requests so far on $c1 backend connections (at most 2 workers x h2_connections 2)" \
  test "$c1" -le 4

# ---- trailers to an HTTP/1.1 client ----
raw=$(c h2c.test --raw -H 'TE: trailers' "$(u h2c.test /trailers)")
check "trailers relayed after the last chunk (TE: trailers)" \
  grep -q $'^0\r$' <<<"$raw"
check "the trailer x-checksum: 42 arrives" grep -q '^x-checksum: 42' <<<"$raw"
check "the trailer grpc-status: 0 arrives" grep -q '^grpc-status: 0' <<<"$raw"

# ---- GOAWAY: the connection drains, the next request gets a fresh one ----
read -r c0 r0 <<<"$(stats h2c.test)"
ok_all=1
for i in 1 2 3 4 5; do
  a=$(c h2c.test "$(u h2c.test /goaway)")
  b=$(c h2c.test "$(u h2c.test /hello)")
  [ "$a" = bye ] && [ "$b" = "hello h2" ] || ok_all=0
done
check_eq "requests after each GOAWAY all answered" 1 "$ok_all"
read -r c1 r1 <<<"$(stats h2c.test)"
check "new backend connections after GOAWAY ($((c1 - c0)))" test $((c1 - c0)) -ge 3

# ---- failures: dead backend, deadline, reset ----
G=(-H 'Content-Type: application/grpc' -H 'TE: trailers' --data-binary @/dev/null)
out=$(c dead.test -D - -o /dev/null "${G[@]}" "$(u dead.test /pkg.Svc/Call)")
check "gRPC to an unreachable backend: HTTP 200" grep -q '^HTTP/1.1 200' <<<"$out"
check "gRPC to an unreachable backend: grpc-status 14" grep -qi '^grpc-status: 14' <<<"$out"
check_eq "plain request to an unreachable backend: 502" 502 \
  "$(c dead.test -o /dev/null -w '%{http_code}' "$(u dead.test /)")"
out=$(c h2c.test -D - -o /dev/null "${G[@]}" -H 'grpc-timeout: 300m' "$(u h2c.test /hang)")
check "gRPC deadline (grpc-timeout 300m) on a backend that never answers: grpc-status 4" \
  grep -qi '^grpc-status: 4' <<<"$out"
out=$(c h2c.test --raw "${G[@]}" "$(u h2c.test /reset)")
check "gRPC stream reset mid-response: grpc-status 14 in the trailers" \
  grep -q '^grpc-status: 14' <<<"$out"
# A unary call to grpcio's server, framed by hand (1 flag byte, 4 length bytes, message).
printf '\0\0\0\0\5hello' >"$T_TMP/grpc.req"
out=$(c grpc.test --raw -H 'Content-Type: application/grpc' -H 'TE: trailers' \
  --data-binary @"$T_TMP/grpc.req" "$(u grpc.test /torii.test.Echo/Unary)" | od -An -c | tr -s ' \n' ' ')
check "grpcio server: the message comes back through torii" grep -q '\\0 \\0 \\0 \\0 005 h e l l o' <<<"$out"
check "grpcio server: grpc-status 0 in the trailers" grep -q 'g r p c - s t a t u s : 0' <<<"$out"
wait "$fresh_pid"
read -r fresh_code fresh_s <"$T_TMP/fresh.txt"
check_eq "a 3 s response on a fresh backend connection (connect_ms 1.5 s): 200, after ${fresh_s:-?} s" \
  200 "${fresh_code:-none}"
wait "$trickle_pid"
check "an upload slower than read_ms (its byte after 3.5 s) is not cut: $(cat "$T_TMP/trickle.txt")" \
  grep -q '^HTTP/1.1 200 OK len 1$' "$T_TMP/trickle.txt"
# The stalled upload: nothing moved for read_ms (3 s), so torii gave up on it (504; the client
# had left) and nothing is left in flight for the stop below.
stall_log() { grep -o '"path":"/stall","status":[0-9]*,[^}]*"duration_ms":[0-9]*' "$T_TMP/torii.log"; }
t_wait_for stall_log >/dev/null
stall=$(stall_log)
check "the stalled upload ended with a 504 (${stall:-no access log line yet})" \
  grep -q '"status":504' <<<"$stall"
stall_ms=$(sed -n 's/.*"duration_ms":\([0-9]*\).*/\1/p' <<<"$stall")
check "... not before read_ms (${stall_ms:-?} ms >= 3000)" test "${stall_ms:-0}" -ge 3000
check_eq "the daemon still serves after all that" "hello h2" \
  "$(c h2c.test "$(u h2c.test /hello)")"

t_stop || fail "daemon exit status (sanitizers)"
t_done
