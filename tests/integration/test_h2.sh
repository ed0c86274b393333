#!/usr/bin/env bash
# HTTP/2 to clients end to end, through torii to the HTTP/1.1 torii-backend on loopback:
# ALPN (h2 offered -> h2; http/1.1 only -> http/1.1; a route with http2 false -> http/1.1;
# no ALPN; acme-tls/1 alone is not answered with h2), curl --http2 (GET, POST with a body,
# chunked upload, 20 MiB response, HEAD, several requests on one connection, forwarding
# headers), nghttp and h2load (many concurrent streams), the RFC 9113 section 8 malformed
# cases of tests/integration/h2_client.py (each a stream or connection error, and the
# backend sees none of them), 421 for an authority the certificate does not name, 431 for a
# header list over the limit, rapid reset, CONTINUATION and PING floods (GOAWAY
# ENHANCE_YOUR_CALM, counters in /metrics), the access log per stream, GOAWAY on reload, a
# stream whose flow-control window stays closed reset (CANCEL), response trailers of an h2c
# backend (h2_backend.py) reaching the client as a trailing HEADERS frame (curl, python h2);
# request trailers of a python h2 client reaching an HTTP/1.1 backend in the last chunk (with
# and without content-length) and an h2c backend as a trailing HEADERS frame; a pseudo-header
# field in request trailers reset, the backend seeing nothing; 1xx: 103 Early Hints of the
# HTTP/1.1 backend relayed to HTTP/1.1 and HTTP/2 clients (not to HTTP/1.0 ones, at most 8,
# then 502), 100 Continue for Expect: 100-continue from HTTP/1.1 and HTTP/2 clients.
here=$(dirname "$0")
source "$here/lib.sh"
PY=/usr/bin/python3
for bin in nghttp h2load; do
  command -v "$bin" >/dev/null || { echo "# $bin missing (Debian nghttp2-client)"; exit 77; }
done
$PY -c 'import h2' 2>/dev/null || { echo "# python3-h2 missing"; exit 77; }

BK=$(t_free_port)
t_backend_start "$BK" || { echo "backend did not start"; exit 1; }
H2C=$(t_free_port) # h2_backend.py over h2c: /trailers
$PY "$here/h2_backend.py" "$H2C" >"$T_TMP/h2c.log" 2>&1 &
T_BG_PIDS+=($!)
trap 't_bg_stop; t_backend_stop_all; t_cleanup' EXIT
t_wait_port "$H2C" || { echo "h2_backend.py did not start"; exit 1; }
mkcert trl ec 30 trl.test

write_conf() { # write_conf [IDLE_MS]
  t_config "\"routes\": [
  {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]}},
  {\"hosts\": [\"*.example.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]}},
  {\"hosts\": [\"noh2.test\"], \"http2\": false, \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]}},
  {\"hosts\": [\"trl.test\"], \"backend\": {\"targets\": [\"http://127.0.0.1:$H2C\"],
   \"protocol\": \"h2c\"}}
],
\"limits\": {\"h2_max_resets\": 100, \"h2_max_control_frames\": 100, \"h2_max_continuations\": 8,
  \"idle_timeout_ms\": ${1:-60000}},"
}
write_conf
t_start || exit 1
U="https://localhost:$T_HTTPS"
C=(curl -sk --max-time 30)

# --- ALPN -------------------------------------------------------------------------------
alpn() { # alpn SNI PROTOS -> the protocol openssl s_client reports
  local out
  out=$(openssl s_client -connect "127.0.0.1:$T_HTTPS" -servername "$1" ${2:+-alpn "$2"} \
        </dev/null 2>/dev/null)
  case "$out" in
    *"ALPN protocol: "*) out=${out#*ALPN protocol: }; echo "${out%%$'\n'*}" ;;
    *) echo none ;;
  esac
}
check_eq "ALPN: h2 offered -> h2" h2 "$(alpn localhost h2,http/1.1)"
check_eq "ALPN: http/1.1 only -> http/1.1" http/1.1 "$(alpn localhost http/1.1)"
check_eq "ALPN: route with http2 false -> http/1.1" http/1.1 "$(alpn noh2.test h2,http/1.1)"
check_eq "ALPN: none offered -> none" none "$(alpn localhost "")"
check_eq "ALPN: acme-tls/1 alone, no challenge -> none" none "$(alpn localhost acme-tls/1)"

# --- curl --http2 -----------------------------------------------------------------------
out=$("${C[@]}" --http2 -w '\n%{http_version} %{http_code}' "$U/echo")
check_eq "GET over h2" "2 200" "${out##*$'\n'}"
body=${out%$'\n'*}
check "backend saw an HTTP/1.1 request" grep -q '"version":"HTTP/1.1"' <<<"$body"
check "X-Forwarded-Proto https added" grep -q '\["X-Forwarded-Proto","https"\]' <<<"$body"
check "Forwarded added" grep -q '\["Forwarded","for=127.0.0.1;host=' <<<"$body"
# a :path over the stream's inline string room (256 bytes), then a short one, one connection
long="/echo?q=$(head -c 300 /dev/zero | tr '\0' q)"
out=$("${C[@]}" --http2 "$U$long" "$U/echo?short")
check "a 307-byte :path reaches the backend whole" grep -qF "\"path\":\"$long\"" <<<"$out"
check "then a short one on the same connection" grep -qF '"path":"/echo?short"' <<<"$out"
head -c 3000000 /dev/urandom >"$T_TMP/up"
want=$(sha256sum "$T_TMP/up" | cut -d' ' -f1)
out=$("${C[@]}" --http2 --data-binary @"$T_TMP/up" "$U/upload")
check "POST with a 3 MB body (content-length) arrives whole" grep -q "\"sha256\":\"$want\"" <<<"$out"
out=$("${C[@]}" --http2 -H 'Transfer-Encoding: chunked' --data-binary @"$T_TMP/up" "$U/upload")
check "POST without content-length (chunked to the backend) arrives whole" \
  grep -q "\"sha256\":\"$want\"" <<<"$out"
got=$("${C[@]}" --http2 "$U/bytes/20971520" | wc -c)
check_eq "20 MiB response over h2" 20971520 "$got"
got=$("${C[@]}" --http2 "$U/chunked/100000" | wc -c)
check_eq "chunked backend response re-framed as DATA" 100000 "$got"
out=$("${C[@]}" --http2 -I "$U/bytes/10")
check "HEAD: headers only, content-length kept" grep -qi '^content-length: 10' <<<"$out"
check "no connection-specific field in the response" \
  bash -c '! grep -qiE "^(connection|keep-alive|transfer-encoding):" <<<"$1"' _ "$out"
out=$("${C[@]}" --http2 -w '%{num_connects} ' -o /dev/null -o /dev/null -o /dev/null \
      "$U/bytes/1" "$U/bytes/2" "$U/bytes/3")
check_eq "three requests, one connection (keep-alive)" "1 0 0 " "$out"

# --- response trailers of an h2c backend: a trailing HEADERS frame ----------------------
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json trl trl)" >/dev/null
check_eq "import the trl.test certificate -> 201" 201 "$T_STATUS"
out=$($PY "$here/h2_client.py" "$T_HTTPS" trailers trl.test 2>&1)
check_eq "python h2: trailers after the body, then END_STREAM" \
  "STATUS 200 TRAILERS x-checksum=42 grpc-status=0 END" "$out"
out=$("${C[@]}" --http2 -D - --resolve "trl.test:$T_HTTPS:127.0.0.1" \
      "https://trl.test:$T_HTTPS/trailers" | tr -d '\r')
check "curl --http2: body, then the trailer x-checksum: 42" grep -q '^x-checksum: 42$' <<<"$out"
check "curl --http2: the trailer grpc-status: 0" grep -q '^grpc-status: 0$' <<<"$out"

# --- request trailers: the last chunk to an HTTP/1.1 backend, a trailing HEADERS to h2c ---
out=$($PY "$here/h2_client.py" "$T_HTTPS" reqtrailers:/upload 2>&1)
check "request trailers, no content-length: the HTTP/1.1 backend reads them in the last chunk ($out)" \
  grep -qF '"len":5,' <<<"$out"
check "... exactly x-sum and grpc-meta (host, authorization filtered)" \
  grep -qF '"trailers":"x-sum: 42|grpc-meta: a b"}' <<<"$out"
out=$($PY "$here/h2_client.py" "$T_HTTPS" reqtrailers_cl:/upload 2>&1)
check "request trailers with content-length (body held): re-framed chunked, trailers passed ($out)" \
  grep -qF '"len":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","trailers":"x-sum: 42|grpc-meta: a b"}' <<<"$out"
out=$($PY "$here/h2_client.py" "$T_HTTPS" reqtrailers:/reqtrailers "trl.test:$T_HTTPS" 2>&1)
check_eq "request trailers to an h2c backend: a trailing HEADERS frame" \
  'STATUS 200 {"len": 5, "trailers": [["x-sum", "42"], ["grpc-meta", "a b"]]} END' "$out"
before=$(grep -vc ' /stats$' "$T_TMP/backend-$BK.log")
out=$($PY "$here/h2_client.py" "$T_HTTPS" reqtrailers_pseudo:/upload 2>&1)
check "a pseudo-header field in request trailers: RST_STREAM PROTOCOL_ERROR ($out)" \
  grep -q "RST 1" <<<"$out"
check_eq "... and the backend saw nothing of it" "$before" "$(grep -vc ' /stats$' "$T_TMP/backend-$BK.log")"

# --- 1xx: 103 Early Hints of an HTTP/1.1 backend relayed, 100 Continue to Expect ----------
out=$("${C[@]}" --http1.1 -D - -o /dev/null "$U/hints/2" | tr -d '\r')
check_eq "HTTP/1.1 client: two 103 Early Hints relayed before the 200" \
  "HTTP/1.1 103 Early Hints|Link: </hint-0.css>; rel=preload|HTTP/1.1 103 Early Hints|Link: </hint-1.css>; rel=preload|HTTP/1.1 200 X" \
  "$(grep -E '^(HTTP/|Link:)' <<<"$out" | paste -sd '|')"
out=$("${C[@]}" --http1.0 -D - -o /dev/null "$U/hints/2" | tr -d '\r')
check_eq "HTTP/1.0 client: no 1xx (RFC 9110 section 15.2), the 200 (the backend says \"X\")" "HTTP/1.1 200 X" \
  "$(grep -E '^HTTP/' <<<"$out" | paste -sd '|')"
out=$("${C[@]}" --http1.1 -D - -o /dev/null "$U/hints/9" | tr -d '\r')
check_eq "more than 8 interim responses: 8 relayed, then 502" "8 HTTP/1.1 502 Bad Gateway" \
  "$(grep -c '^HTTP/1.1 103' <<<"$out") $(grep '^HTTP/1.1 5' <<<"$out")"
out=$($PY "$here/h2_client.py" "$T_HTTPS" hints 2>&1)
check_eq "HTTP/2 client: the 103s as HEADERS frames before the response" \
  "INFO 103 </hint-0.css>; rel=preload INFO 103 </hint-1.css>; rel=preload STATUS 200 END" "$out"
out=$("${C[@]}" --http1.1 --expect100-timeout 60 -H 'Expect: 100-continue' -D - \
      --data-binary @"$T_TMP/up" "$U/upload" | tr -d '\r')
check "HTTP/1.1 client, Expect: 100-continue: 100 Continue, then the body arrives whole" \
  bash -c 'grep -q "^HTTP/1.1 100 Continue$" <<<"$1" && grep -q "\"sha256\":\"$2\"" <<<"$1"' _ "$out" "$want"
out=$($PY "$here/h2_client.py" "$T_HTTPS" expect 2>&1)
check "HTTP/2 client, expect: 100-continue: an interim 100, then the body goes ($out)" \
  grep -qF 'INFO 100 STATUS 200 {"len":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"' <<<"$out"

# --- nghttp / h2load: concurrent streams ------------------------------------------------
out=$(nghttp -n -s "$U/bytes/100000" "$U/bytes/1000" "$U/echo" "$U/chunked/5000" 2>&1)
check "nghttp: four concurrent streams on one connection" \
  bash -c '[ "$(grep -c "/bytes/\|/echo\|/chunked/" <<<"$1")" -ge 4 ]' _ "$out"
out=$(h2load -n 2000 -c 2 -m 100 "$U/bytes/100" 2>&1)
check "h2load: 2000 requests, 100 streams per connection, all 2xx" \
  grep -q "status codes: 2000 2xx" <<<"$out"
out=$(h2load -n 40 -c 2 -m 20 "$U/bytes/1000000" 2>&1)
check "h2load: 40 x 1 MB on 40 concurrent streams, all 2xx" grep -q "status codes: 40 2xx" <<<"$out"

# --- malformed requests: a stream or connection error, never the backend ----------------
seen() { grep -vc ' /stats$' "$T_TMP/backend-$BK.log"; } # requests the backend logged
before=$(seen)
for c in connection transfer_encoding upgrade keep_alive proxy_connection te_gzip uppercase \
         value_cr value_lf value_nul value_space no_path no_method dup_path pseudo_after \
         unknown_pseudo status_in_request relative_path path_space scheme_http host_differs \
         cl_short cl_long cl_two; do
  out=$($PY "$here/h2_client.py" "$T_HTTPS" "malformed:$c" 2>&1)
  case "$out" in
    *"RST 1"* | *"GOAWAY 1"*) ok "malformed $c: $out" ;;
    *) fail "malformed $c: expected RST_STREAM or GOAWAY PROTOCOL_ERROR, got: $out" ;;
  esac
done
check_eq "the backend saw none of the malformed requests" "$before" "$(seen)"

# --- 421, 431 ---------------------------------------------------------------------------
out=$($PY "$here/h2_client.py" "$T_HTTPS" misdirected app.example.test)
check "421 for an authority the certificate does not name" grep -q "STATUS 421" <<<"$out"
out=$($PY "$here/h2_client.py" "$T_HTTPS" biglist)
check "431 for a header list over the limit" grep -q "STATUS 431" <<<"$out"
check_eq "the backend saw neither" "$before" "$(seen)"
# the certificate check is cached per connection, for all its streams: per authority
out=$($PY "$here/h2_client.py" "$T_HTTPS" misdirected_mix app.example.test)
check_eq "one connection: localhost 200, another authority 421, localhost 200 again" \
  "STATUS 200 END STATUS 421 END STATUS 200 END" "$out"

# --- floods -----------------------------------------------------------------------------
metric() { # metric NAME{labels}: its value in /metrics (0 when absent)
  api GET /metrics
  local v
  v=$(grep -F "$1 " <<<"$T_BODY" | grep -v '^#' | awk '{print $2}')
  echo "${v:-0}"
}
out=$($PY "$here/h2_client.py" "$T_HTTPS" rapid_reset)
check "rapid reset: GOAWAY ENHANCE_YOUR_CALM" grep -q "GOAWAY 11" <<<"$out"
check "rapid reset counted" [ "$(metric 'torii_h2_defences_total{kind="rapid_reset"}')" -ge 1 ]
out=$($PY "$here/h2_client.py" "$T_HTTPS" continuation)
check_eq "CONTINUATION flood: GOAWAY ENHANCE_YOUR_CALM" "GOAWAY 11" "$out"
check "CONTINUATION flood counted" \
  [ "$(metric 'torii_h2_defences_total{kind="continuation_flood"}')" -ge 1 ]
out=$($PY "$here/h2_client.py" "$T_HTTPS" ping_flood)
check_eq "PING flood: GOAWAY ENHANCE_YOUR_CALM" "GOAWAY 11" "$out"
check "PING flood counted" [ "$(metric 'torii_h2_defences_total{kind="control_flood"}')" -ge 1 ]
check "malformed requests counted" [ "$(metric 'torii_h2_defences_total{kind="malformed"}')" -ge 20 ]
check "header list over the limit counted" \
  [ "$(metric 'torii_h2_defences_total{kind="header_list"}')" -ge 1 ]
check "h2 connections counted" [ "$(metric torii_h2_connections_total)" -ge 10 ]
check "the daemon still answers over h2" \
  bash -c '[ "$(curl -sk --http2 -o /dev/null -w "%{http_version} %{http_code}" "$1")" = "2 200" ]' _ "$U/bytes/5"

# --- access log, one line per stream ----------------------------------------------------
log_h2() { grep -c '"path":"/bytes/20971520","status":200,.*"protocol":"HTTP/2.0"}' "$T_TMP/torii.log"; }
check "access log line of an h2 stream (protocol HTTP/2.0)" t_wait_for [ "$(log_h2)" -ge 1 ]

# --- GOAWAY on reload -------------------------------------------------------------------
$PY "$here/h2_client.py" "$T_HTTPS" get >"$T_TMP/get.out" 2>&1 &
cpid=$!
check "a request on a connection that stays open" t_wait_for grep -q END "$T_TMP/get.out"
kill -HUP "$T_PID"
wait "$cpid"
check "reload: the open h2 connection gets GOAWAY NO_ERROR" grep -q "GOAWAY 0" "$T_TMP/get.out"
check "after the reload: h2 still served" \
  bash -c '[ "$(curl -sk --http2 -o /dev/null -w "%{http_version} %{http_code}" "$1")" = "2 200" ]' _ "$U/bytes/5"

# --- slow reader: a window kept closed for idle_timeout_ms resets the stream (CANCEL) ----
write_conf 1000
kill -HUP "$T_PID"
check "reload with idle_timeout_ms 1000" t_wait_for grep -q "configuration reloaded (generation 3)" "$T_TMP/torii.log"
out=$($PY "$here/h2_client.py" "$T_HTTPS" slow_reader)
case "$out" in
  *"RST 8"*) ok "slow reader: the stream is reset with CANCEL" ;;
  *) fail "slow reader: expected RST_STREAM CANCEL, got: $out" ;;
esac
check "slow reader counted" [ "$(metric 'torii_h2_defences_total{kind="slow_reader"}')" -ge 1 ]

check "graceful stop" t_stop
t_done
