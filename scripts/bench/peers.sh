# shellcheck shell=bash
# scripts/bench/peers.sh - sourced by scripts/bench.sh: the configurations of Caddy and h2o,
# and the local Pebble that the torii+acme variant points at. Uses B, BK, port(), PIDS.

# caddy_conf DIR PORT PEMDIR NCERTS: Caddy 2.6 terminating TLS (h1 + h2, no h3, no admin API,
# no automatic HTTPS, logs at ERROR only) in front of the backend, with the same certificate
# files as the other peers (load_files: each PEM holds the chain and the key). Caddy 2.6 has
# no fallback for an SNI it holds no certificate for (wrk sends the URL's 127.0.0.1): the
# certificate_selection by tag makes it serve h0's certificate there, as the others do.
# Forwarding fields: Caddy sets X-Forwarded-For/-Proto/-Host itself; Forwarded is added so
# that every proxy sends the backend the same four fields torii adds (scripts/bench.sh).
caddy_conf() {
  local i sep=""
  {
    echo '{"admin": {"disabled": true},'
    echo ' "logging": {"logs": {"default": {"level": "ERROR"}}},'
    echo " \"storage\": {\"module\": \"file_system\", \"root\": \"$1/storage\"},"
    echo ' "apps": {"http": {"servers": {"bench": {'
    echo "   \"listen\": [\"127.0.0.1:$2\"], \"protocols\": [\"h1\", \"h2\"],"
    echo '   "automatic_https": {"disable": true}, "tls_connection_policies": [{"default_sni": "h0.bench.test",'
    echo '     "certificate_selection": {"any_tag": ["bench"]}}],'
    echo "   \"routes\": [{\"handle\": [{\"handler\": \"reverse_proxy\","
    echo "                 \"headers\": {\"request\": {\"set\": {\"Forwarded\":"
    echo "                   [\"for={http.request.remote.host};host={http.request.host};proto=https\"]}}},"
    echo "                 \"upstreams\": [{\"dial\": \"127.0.0.1:$BK\"}]}]}]}}},"
    echo '  "tls": {"certificates": {"load_files": ['
    for i in $(seq 0 $(($4 - 1))); do
      echo "$sep{\"certificate\": \"$3/h$i.pem\", \"key\": \"$3/h$i.pem\", \"tags\": [\"bench\"]}"
      sep=","
    done
    echo ']}}}}'
  } > "$1/caddy.json"
}
# Caddy's command line: one worker's worth of CPU (GOMAXPROCS=1), its files in DIR.
caddy_run() { # dir
  GOMAXPROCS=1 HOME="$1" XDG_DATA_HOME="$1" XDG_CONFIG_HOME="$1" \
    taskset -c 0 caddy run --config "$1/caddy.json" >>"$1/log" 2>&1 &
  # shellcheck disable=SC2034 # read by the caller (start_proxy)
  SPID=$!
}

# h2o_conf DIR PORT PEMFILE: h2o 2.2, one thread, no access log, h1 + h2 (HTTP/2 rows only),
# no OCSP stapling (its fetcher is a child process whose memory would count as h2o's).
h2o_conf() {
  cat > "$1/h2o.conf" <<CFG
user: root
num-threads: 1
pid-file: $1/h2o.pid
error-log: $1/error.log
max-connections: 100000
listen:
  host: 127.0.0.1
  port: $2
  ssl:
    certificate-file: $3
    key-file: $3
    ocsp-update-interval: 0
hosts:
  "h0.bench.test":
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$BK/
CFG
}

# pebble_up: Pebble (and pebble-challtestsrv as its DNS) on loopback with a self-signed HTTPS
# certificate made here. Sets PEBBLE_DIR (directory URL) and PEBBLE_CA; returns 1 (and says
# why) when the Debian package pebble is missing or Pebble does not answer within 30 s.
pebble_up() {
  local d="$B/pebble" pp mg dns ch
  command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 ||
    { echo "   (pebble is not installed: the torii+acme rows are skipped)"; return 1; }
  mkdir -p -m 0700 "$d"
  pp=$(port); mg=$(port); dns=$(port); ch=$(port)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$d/key.pem" -out "$d/cert.pem" >/dev/null 2>&1
  cat > "$d/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$pp", "managementListenAddress": "127.0.0.1:$mg",
  "certificate": "$d/cert.pem", "privateKey": "$d/key.pem", "httpPort": $(port),
  "tlsPort": $(port), "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  taskset -c 1 pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns" \
    -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$ch" >>"$d/log" 2>&1 &
  PIDS+=("$!")
  PEBBLE_VA_NOSLEEP=1 taskset -c 1 pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$dns" \
    >>"$d/log" 2>&1 &
  PIDS+=("$!")
  PEBBLE_DIR="https://127.0.0.1:$pp/dir"; PEBBLE_CA="$d/cert.pem"
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null --max-time 2 --cacert "$PEBBLE_CA" "$PEBBLE_DIR" && return 0
    sleep 0.1
  done
  echo "   (Pebble did not answer within 30 s, see $d/log: the torii+acme rows are skipped)"
  return 1
}
# The acme section of the torii+acme variant: on-demand on, with an allow-list that the bench
# names (h<i>.bench.test) never match, so no order is ever started by the measured traffic.
acme_json() {
  echo "\"acme\": {\"directory_url\": \"$PEBBLE_DIR\", \"ca_bundle\": \"$PEBBLE_CA\","
  echo " \"challenges\": [\"tls-alpn-01\"], \"on_demand\": {\"allow\": [\"*.acme-only.test\"]}},"
}
