#!/usr/bin/env bash
# scripts/bench.sh - torii against HAProxy, nginx and Caddy (and h2o on the HTTP/2 rows), same
# machine, same run, printed as ratios. Each proxy runs one worker pinned to CPU 0 (Caddy:
# GOMAXPROCS=1); the load generators run on CPU 1. Loopback only, bounded in time (defaults:
# about 15 minutes on an idle 2-core machine, estimated; much longer on a loaded one, see
# docs/operations.md), every process stopped at the end.
# Every row is measured in ROUNDS rounds, the proxies interleaved inside each round (torii,
# torii+acme, HAProxy, nginx, Caddy; the order reversed every other round) so that a drift of
# the shared machine hits all alike; a ratio is computed per round (torii / peer) and printed
# as median (min-max).
# Compares the proxies' own CPU time per unit of work (see shared peer notes: one client core
# cannot saturate a proxy with full handshakes).
# Metrics: keep-alive requests (CPU per request), 1 MiB responses (MB/s per core), latency at
# a fixed rate (p50/p99), memory per idle TLS connection, full and resumed handshakes + one
# request (CPU per connection), the resumption rate of clients that use each session ticket
# once (RFC 8446 C.4, as browsers do); HTTP/2 with h2load (1 and 100 concurrent streams per
# connection, one request per new connection, memory per idle h2 connection; h2o joins
# there); a WebSocket echo (CPU per echoed message); and with N certificates: start-up, RSS,
# first use of a not-yet-used certificate (client latency, proxy CPU, and torii's own parse
# time from its /metrics) and CPU per connection with a random SNI. The backend is nginx
# (plain HTTP, keep-alive; /ws passed to a WebSocket echo server) on CPU 1.
# torii+acme: the same torii with an acme section (a local Pebble, on-demand on with an
# allow-list the bench names never match), on the keep-alive and full-handshake rows.
# torii's HTTP/2 and WebSocket cells print "n/a (no h2)" / "n/a (no ws)" while torii does
# not offer ALPN h2 / pass a WebSocket upgrade (detected at start).
# Then, torii alone with a large store (--big, default 100,000 certificates): start-up, RSS,
# first-use parse cost, RSS after a warm-up, random-SNI CPU against the 1-certificate figure.
# torii start-ups are measured on a copy of a store that torii has already started on once,
# so they time loading the certificates, not the first-start creation of the built-in CAs.
# Then, torii alone, JWT at the edge: CPU per keep-alive request on a route with routes[].jwt
# (an ES256 token minted by _sign, verified on every request) against the same route without
# jwt, same request bytes, as a ratio.
# Then, torii alone, bulk import: --bulk N certificates (default 10,000, made by torii-fill)
# posted to POST /api/certificates/_bulk, BULK_LINES (2,000) NDJSON lines a request, into an
# empty store: wall time of the whole import and torii's CPU time per certificate (torii not
# pinned on that row: its preparation pool runs on every CPU).
# Usage: scripts/bench.sh [--rounds N] [--seconds S] [--certs N] [--big N|0] [--only-torii]
#                         [--only-jwt] [--only-h2] [--only-bulk] [--bulk N|0] [--smoke] [--bin DIR]
#                         [--only-core] [--only-instr] [--only-sys]
#   --only-core: torii and HAProxy only, the keep-alive, full/resumed handshake and idle
#   memory rows only (the issue-14 item-5 figures; a few minutes);
#   --only-instr: torii and HAProxy under valgrind's callgrind, user instructions per request
#   on the keep-alive and HTTP/2 rows' workloads (load-independent; about 2 minutes);
#   --only-sys: torii and HAProxy, system calls (recv, send, epoll_wait) and context switches
#   per request on the same workloads, counted by perf stat (under a minute);
#   --idle N: idle connections opened for the memory rows (default 2,000);
#   --big 0 skips the large store; --only-torii skips the peers (torii's figures only);
#   --only-h2 runs the HTTP/2 rows alone (1 certificate, every peer);
#   --only-jwt runs the JWT row alone; --only-bulk the bulk-import row alone; --bulk 0 skips it;
#   --smoke: 1 round of 1 s, 20 certificates, 100 idle connections, no large store, 100 bulk
#   certificates (checks that every row runs, not a measurement); --bin DIR: use the torii,
#   torii-hsload and torii-fill of the build tree DIR (no build, no package check).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=5
SECS=2
IDLEN=2000
BIN=""
SMOKE=0
NCERTS=10000
BIG=100000
ONLY_TORII=0
ONLY_JWT=0
ONLY_BULK=0
ONLY_H2=0
ONLY_CORE=0
ONLY_INSTR=0
ONLY_SYS=0
VG=""
NBULK=10000
BULK_LINES=2000
usage() {
  echo "usage: $0 [--rounds N] [--seconds S] [--certs N] [--big N|0] [--only-torii] [--only-jwt] [--only-h2]" \
    "[--only-bulk] [--bulk N|0] [--smoke] [--bin DIR] [--idle N] [--only-core] [--only-instr]" \
    "[--only-sys]" >&2
  exit 2
}
num() { [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "$1 needs a number" >&2; usage; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) num "$1" "${2:-}"; ROUNDS=$2; shift 2 ;;
    --seconds) num "$1" "${2:-}"; SECS=$2; shift 2 ;;
    --certs) num "$1" "${2:-}"; NCERTS=$2; shift 2 ;;
    --idle) num "$1" "${2:-}"; IDLEN=$2; shift 2 ;;
    --big) num "$1" "${2:-}"; BIG=$2; shift 2 ;;
    --only-torii) ONLY_TORII=1; shift ;;
    --only-jwt) ONLY_TORII=1; ONLY_JWT=1; shift ;;
    --only-h2) ONLY_H2=1; shift ;;
    --only-bulk) ONLY_TORII=1; ONLY_BULK=1; shift ;;
    --only-core) ONLY_CORE=1; shift ;;
    --only-instr) ONLY_INSTR=1; shift ;;
    --only-sys) ONLY_SYS=1; shift ;;
    --bulk) num "$1" "${2:-}"; NBULK=$2; shift 2 ;;
    --smoke) SMOKE=1; ROUNDS=1; SECS=1; NCERTS=20; IDLEN=100; BIG=0; NBULK=100; BULK_LINES=50; RESUME_N=50
             shift ;;
    --bin) [ -d "${2:-}" ] || { echo "--bin needs a build directory" >&2; usage; }
           BIN=$(cd "$2" && pwd); shift 2 ;;
    *) usage ;;
  esac
done
[ "$ROUNDS" -ge 1 ] && [ "$SECS" -ge 1 ] && [ "$NCERTS" -ge 2 ] && [ "$IDLEN" -ge 1 ] || usage
[ "$BIG" -eq 0 ] || [ "$BIG" -ge 2 ] || usage
[ "$ONLY_BULK" = 0 ] || [ "$NBULK" -ge 1 ] || usage
PROXIES=(torii haproxy nginx caddy)
[ "$ONLY_TORII" = 1 ] && PROXIES=(torii)
# A large-store start-up (scripts/bench_big.sh has its own bounds) beyond BIG_WAIT s is
# reported as such.
BIG_WAIT=120
if [ -n "$BIN" ]; then
  # --bin: nothing installed; a missing tool skips the run (exit 77), named
  need=(nginx wrk h2load openssl curl taskset)
  [ "$ONLY_TORII" = 1 ] || need+=(haproxy caddy h2o)
  for t in "${need[@]}"; do
    command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t is not installed (scripts/deps.sh)"; exit 77; }
  done
  /usr/bin/python3 -c 'import websockets' 2>/dev/null ||
    { echo "SKIP: /usr/bin/python3 has no websockets (Debian python3-websockets)"; exit 77; }
  for t in torii tests/torii-hsload tests/torii-fill; do
    [ -x "$BIN/$t" ] || { echo "--bin $BIN: no $t there (build it first)" >&2; exit 2; }
  done
else
  ./scripts/deps.sh --bench
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-bench -j"$(nproc)" --target torii torii-hsload torii-fill >/dev/null
  BIN=build-bench
fi


B=$(mktemp -d /tmp/torii-bench.XXXXXX)
PIDS=()
cleanup() {
  # The process first, then the children it had (killed first, nginx's master would start a
  # new worker in their place, and that one would outlive it).
  local p kids
  for p in "${PIDS[@]}"; do
    kids=$(pgrep -P "$p" || true)
    kill -9 "$p" 2>/dev/null || true
    # shellcheck disable=SC2086
    [ -z "$kids" ] || kill -9 $kids 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  # nginx workers and the idle-connection client: only processes whose command line holds
  # this run's private directory.
  pkill -9 -f "$B/" 2>/dev/null || true
  if [ -n "${BENCH_KEEP:-}" ]; then echo "bench files kept in $B (BENCH_KEEP)"; else rm -rf "$B"; fi
}
trap cleanup EXIT
TORII=$BIN/torii
HSLOAD=$BIN/tests/torii-hsload
FILL=$BIN/tests/torii-fill
# shellcheck source=scripts/bench/peers.sh
. scripts/bench/peers.sh
# shellcheck source=scripts/bench/rounds.sh
. scripts/bench/rounds.sh
# shellcheck source=scripts/bench/rows.sh
. scripts/bench/rows.sh
# shellcheck source=scripts/bench/phases.sh
. scripts/bench/phases.sh
# shellcheck source=scripts/bench/instr.sh
. scripts/bench/instr.sh
# shellcheck source=scripts/bench/sys.sh
. scripts/bench/sys.sh
HZ=$(getconf CLK_TCK)
TOKEN=bench-token-0123456789
T_START=$(date +%s)
# shellcheck source=scripts/bench/proc.sh
. scripts/bench/proc.sh

# torii's /metrics text (admin listener of the running torii, bearer token); empty on failure.
prom() { curl -sf --max-time 5 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" || true; }
promval() { echo "$1" | awk -v n="$2" '$1 == n { print $2; f = 1; exit } END { if (!f) print 0 }'; }
# wait_tls PORT T0_NS [MAX_S] [SNI]: wait (at most MAX_S seconds, default 60) until a TLS
# handshake succeeds on PORT; prints the ms elapsed since T0_NS. Polls from CPU 1 (the proxy's
# core stays free), every 10 ms for 2 s, then every 100 ms.
wait_tls() {
  local deadline=$(( $(date +%s) + ${3:-60} )) fast=$(( $(date +%s) + 2 ))
  while [ "$(date +%s)" -le "$deadline" ]; do
    if taskset -c 1 $HSLOAD -p "$1" -n 1 -t 2 -s "${4:-h0.bench.test}" -q 2>/dev/null | grep -q '^1 0'; then
      echo $(( ($(date +%s%N) - $2) / 1000000 )); return 0
    fi
    if [ "$(date +%s)" -le "$fast" ]; then sleep 0.01; else sleep 0.1; fi
  done
  echo "proxy on port $1 did not come up within ${3:-60} s" >&2; return 1
}
# measure PID PORT HSLOAD-ARGS... -> "cpu_us_per_conn rate"
measure() {
  local pid=$1 port=$2; shift 2
  local c0 c1 out n
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 $HSLOAD -p "$port" -n 100000000 -t "$SECS" -q "$@")
  c1=$(cpu_ticks "$pid")
  n=$(echo "$out" | awk '{print $1}')
  awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$n" -v t="$(echo "$out" | awk '{print $3}')" \
    'BEGIN { printf "%.1f %.0f\n", (n > 0 ? c * 1e6 / hz / n : 0), n / t }'
}
# resume_rate PORT: share of RESUME_N sequential connections that resumed, each offering the
# newest session and using every ticket once (hsload -k -1: a session that brought no new
# ticket is not offered again). A server that issues no ticket on resumed handshakes scores
# about 0.5. Bounded by RESUME_N connections (per round) and 60 s.
RESUME_N=${RESUME_N:-300}
resume_rate() {
  taskset -c 1 $HSLOAD -p "$1" -n "$RESUME_N" -t 60 -q -s h0.bench.test -k -1 \
    | awk '{ if ($1 > 0) printf "%.3f\n", $5 / $1; else print "n/a" }'
}
# sni_rounds N (proxy in SPID/SPORT) -> "random_cpu random_rate fixed_cpu": ROUNDS rounds of
# random SNI over h0..h<N-1>, each followed by a round on one name in the same process (the
# pair compares the cost of choosing among N certificates, all else being equal); medians.
sni_rounds() {
  local cpus=() rates=() fixed=() cpu rate
  for _ in $(seq 1 "$ROUNDS"); do
    read -r cpu rate < <(measure "$SPID" "$SPORT" -S 'h%d.bench.test' -r "$1")
    cpus+=("$cpu"); rates+=("$rate")
    read -r cpu _ < <(measure "$SPID" "$SPORT" -s h0.bench.test)
    fixed+=("$cpu")
  done
  echo "$(printf '%s\n' "${cpus[@]}" | median) $(printf '%s\n' "${rates[@]}" | median)" \
       "$(printf '%s\n' "${fixed[@]}" | median)"
}
# pass NAME PID PORT OFFSET COUNT RANGE: COUNT connections, names h<OFFSET>.. in order (each a
# full handshake + one request). Prints "client_ms_per_conn proxy_cpu_us_per_conn parses
# parse_us_mean parse_max_us": the last three from torii's /metrics (cert parses during the
# pass, their mean, the longest since start), "-" for the peers.
pass() {
  local name=$1 pid=$2 port=$3 off=$4 cnt=$5 range=$6 m0="" m1="" c0 c1 out
  [ "$name" = torii ] && m0=$(prom)
  c0=$(cpu_ns "$pid")
  out=$(taskset -c 1 $HSLOAD -p "$port" -n "$cnt" -t 60 -q -S 'h%d.bench.test' -r "$range" -w -o "$off")
  c1=$(cpu_ns "$pid")
  [ "$name" = torii ] && m1=$(prom)
  if [ "$name" = torii ] && [ -n "$m0" ] && [ -n "$m1" ]; then
    awk -v n="$(echo "$out" | awk '{print $1}')" -v ms="$(echo "$out" | awk '{print $4}')" -v c=$((c1 - c0)) \
        -v p0="$(promval "$m0" torii_tls_cert_parse_total)" -v p1="$(promval "$m1" torii_tls_cert_parse_total)" \
        -v s0="$(promval "$m0" torii_tls_cert_parse_seconds_total)" \
        -v s1="$(promval "$m1" torii_tls_cert_parse_seconds_total)" \
        -v mx="$(promval "$m1" torii_tls_cert_parse_max_seconds)" \
        'BEGIN { np = p1 - p0; printf "%s %.1f %d %s %.0f\n", ms, (n > 0 ? c / 1000 / n : 0), np,
                 (np > 0 ? sprintf("%.1f", (s1 - s0) * 1e6 / np) : "-"), mx * 1e6 }'
  else
    awk -v n="$(echo "$out" | awk '{print $1}')" -v ms="$(echo "$out" | awk '{print $4}')" -v c=$((c1 - c0)) \
        'BEGIN { printf "%s %.1f - - -\n", ms, (n > 0 ? c / 1000 / n : 0) }'
  fi
}
# wrk_run PID PORT PATH CONNS [extra wrk args] -> "requests seconds cpu_ticks p50_us p99_us"
wrk_run() {
  local pid=$1 port=$2 path=$3 conns=$4; shift 4
  local c0 c1 out
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --latency -H 'Host: h0.bench.test' "$@" \
        "https://127.0.0.1:$port$path" 2>&1)
  c1=$(cpu_ticks "$pid")
  echo "$out" | awk -v c=$((c1 - c0)) '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
    /requests in/ { n = $1; t = $4 + 0 }
    $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
    END { printf "%d %.3f %d %.0f %.0f\n", n, t, c, p50, p99 }'
}
ulimit -n 200000 2>/dev/null || ulimit -n 65536 || true

# ---- certificates: the same ECDSA P-256 certificates for everyone (PEM files for the peers)
mkdir -p -m 0700 "$B/one" "$B/many" "$B/pem1" "$B/pemN"

# ---- the backend: nginx, plain HTTP/1.1 keep-alive, on CPU 1 with the load generator
BK=$(port)
WSBK=$(port)
mkdir -p -m 0700 "$B/bk"
head -c 100 /dev/zero | tr '\0' x > "$B/bk/small"
head -c 1048576 /dev/urandom > "$B/bk/1m"
cat > "$B/bk/nginx.conf" <<CFG
daemon off; master_process on; worker_processes 1; user root;
pid $B/bk/nginx.pid; error_log $B/bk/error.log warn;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BK backlog=4096; root $B/bk;
    location = / { try_files /small =404; }
    location = /1m { try_files /1m =404; }
    location = /ws { proxy_pass http://127.0.0.1:$WSBK; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade;
      proxy_read_timeout 600s; } } }
CFG
taskset -c 1 nginx -c "$B/bk/nginx.conf" -p "$B/bk" >>"$B/bk/log" 2>&1 &
PIDS+=("$!")
# the WebSocket echo server behind the backend's /ws (Debian python3-websockets)
taskset -c 1 /usr/bin/python3 scripts/bench/ws.py server "$WSBK" >>"$B/bk/ws.log" 2>&1 &
PIDS+=("$!")

# ---- configs: every proxy terminates TLS and forwards to the same backend
torii_conf() { # dir port [extra members] -> also sets ADMIN_PORT
  ADMIN_PORT=$(port)
  cat > "$1/torii.json" <<JSON
{${3:-}"data_dir": "$1", "workers": 1, "log_level": "notice", "access_log": false,
 "listen": {"https": "127.0.0.1:$2", "http": ""},
 "admin": {"listen": "127.0.0.1:$ADMIN_PORT", "token": "$TOKEN"},
 "tls": {"default_cert": "bench-0"},
 "limits": {"max_conns_per_worker": 100000},
 "routes": [{"hosts": ["*.bench.test"], "backend": {"targets": ["127.0.0.1:$BK"], "max_idle": 256}}]}
JSON
}
haproxy_conf() { # file port crt-spec
  cat > "$1" <<CFG
global
  nbthread 1
  tune.ssl.default-dh-param 2048
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout client 30s
  timeout connect 5s
  timeout server 30s
  maxconn 100000
frontend fe
  bind 127.0.0.1:$2 ssl $3 alpn h2,http/1.1
  maxconn 100000
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded for=%[src];host=%[req.hdr(host)];proto=https
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$BK
CFG
}
nginx_conf() { # dir port pemdir nservers
  {
    echo "daemon off; master_process on; worker_processes 1; user root;"
    echo "pid $1/nginx.pid; error_log $1/error.log warn;"
    echo "worker_rlimit_nofile 200000; events { worker_connections 100000; }"
    echo "http { access_log off; ssl_protocols TLSv1.2 TLSv1.3; keepalive_requests 1000000;"
    echo "upstream bk { server 127.0.0.1:$BK; keepalive 256; }"
    echo "map \$http_upgrade \$bench_conn { default upgrade; '' ''; }"
    local i
    for i in $(seq 0 $(($4 - 1))); do
      local ds=""; [ "$i" -eq 0 ] && ds=" default_server"
      echo "server { listen 127.0.0.1:$2 ssl http2$ds; server_name h$i.bench.test;"
      echo "  ssl_certificate $3/h$i.pem; ssl_certificate_key $3/h$i.pem;"
      echo "  location / { proxy_pass http://bk; proxy_http_version 1.1; proxy_read_timeout 600s;"
      echo "    proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$bench_conn;"
      echo "    proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto https;"
      echo "    proxy_set_header X-Forwarded-Host \$host;"
      echo "    proxy_set_header Forwarded \"for=\$remote_addr;host=\$host;proto=https\"; } }"
    done
    echo "}"
  } > "$1/nginx.conf"
}

# The first start of torii on a store creates the built-in root and intermediate CAs and the
# localhost certificate. Do it once per store, on the empty store before it is filled, so that
# the measured start-ups (each on a fresh copy of the filled store) time loading the
# certificates only. (Starting first on the filled store gives the same later start-ups, but
# that first start is much slower: 19 s at 20,000 certificates, minutes at 100,000.)
prep_store() { # dir
  local p pid
  p=$(port)
  torii_conf "$1" "$p"
  taskset -c 0 $TORII -c "$1/torii.json" 2>>"$B/prep.log" &
  pid=$!
  PIDS+=("$pid")
  wait_tls "$p" "$(date +%s%N)" 60 localhost >/dev/null
  stop_pid "$pid"
}
# torii's own start-up figure (its "ready" log line), in ms.
torii_own_start() { grep -o 'start-up [0-9.]* ms' "$1" 2>/dev/null | tail -1 | awk '{print $2}'; }

# start NAME STOREKIND(1|N|B) [TAG] -> sets SPID SPORT STARTMS SDIR (B: the --big store, torii
# only; TAG: a second instance of the same kind, in its own directory)
start_proxy() {
  local name=$1 kind=$2 dir="$B/run-$1-$2${3:-}" t0
  rm -rf "$dir"; mkdir -p "$dir"; SPORT=$(port); SDIR=$dir
  case $name in
    torii|toriiacme)
      case $kind in 1) cp -r "$B/one/." "$dir/" ;; N) cp -r "$B/many/." "$dir/" ;; *) cp -r "$B/big/." "$dir/" ;; esac
      if [ "$name" = toriiacme ]; then torii_conf "$dir" "$SPORT" "$(acme_json)"
      else torii_conf "$dir" "$SPORT"; fi
      t0=$(date +%s%N)
      # shellcheck disable=SC2086
      taskset -c 0 $VG $TORII -c "$dir/torii.json" 2>>"$dir/log" &
      SPID=$! ;;
    haproxy)
      if [ "$kind" = 1 ]; then haproxy_conf "$dir/h.cfg" "$SPORT" "crt $B/pem1/h0.pem"
      else haproxy_conf "$dir/h.cfg" "$SPORT" "crt-list $B/pemN/list.txt"; fi
      t0=$(date +%s%N)
      # shellcheck disable=SC2086
      taskset -c 0 $VG haproxy -db -f "$dir/h.cfg" >>"$dir/log" 2>&1 &
      SPID=$! ;;
    nginx)
      if [ "$kind" = 1 ]; then nginx_conf "$dir" "$SPORT" "$B/pem1" 1
      else nginx_conf "$dir" "$SPORT" "$B/pemN" "$NCERTS"; fi
      t0=$(date +%s%N)
      taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >>"$dir/log" 2>&1 &
      SPID=$! ;;
    caddy)
      if [ "$kind" = 1 ]; then caddy_conf "$dir" "$SPORT" "$B/pem1" 1
      else caddy_conf "$dir" "$SPORT" "$B/pemN" "$NCERTS"; fi
      t0=$(date +%s%N)
      caddy_run "$dir" ;;
    h2o)
      h2o_conf "$dir" "$SPORT" "$B/pem1/h0.pem"
      t0=$(date +%s%N)
      taskset -c 0 h2o -c "$dir/h2o.conf" >>"$dir/log" 2>&1 &
      SPID=$! ;;
  esac
  PIDS+=("$SPID")
  STARTMS=$(wait_tls "$SPORT" "$t0" "$([ "$kind" = B ] && echo "$BIG_WAIT" || echo 120)")
}
stop_proxy() { stop_pid "$SPID"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mb() { awk -v k="${1:-}" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.0f", k / 1024; else print "-" }'; }
v() { echo "${R[$1]:--}"; } # a result, "-" when it was not measured
footer() {
  echo
  echo "backend: nginx on CPU 1 (plain HTTP/1.1, keep-alive); proxies: one worker on CPU 0; load: CPU 1"
  echo "bench took $(( $(date +%s) - T_START )) s"
}
# jwt_bench: torii alone, one worker on CPU 0, two routes to the same backend, one with jwt;
# an exposed P-256 key pair signs a token (POST .../_sign); wrk sends it on every request to
# both routes (identical request bytes but the Host). Sets R[torii.jwt.*].
jwt_kid() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
jwt_bench() {
  local dir="$B/run-jwt" p kid tok cpus=() cpus0=() n t c
  mkdir -p "$dir"; cp -r "$B/one/." "$dir/"; p=$(port); ADMIN_PORT=$(port)
  cat > "$dir/torii.json" <<JSON
{"data_dir": "$dir", "workers": 1, "log_level": "notice", "access_log": false,
 "listen": {"https": "127.0.0.1:$p", "http": ""},
 "admin": {"listen": "127.0.0.1:$ADMIN_PORT", "token": "$TOKEN"},
 "tls": {"default_cert": "bench-0", "strict_host": false},
 "routes": [{"hosts": ["plain.bench.test"], "backend": {"targets": ["127.0.0.1:$BK"]}},
            {"hosts": ["jwt.bench.test"], "backend": {"targets": ["127.0.0.1:$BK"]},
             "jwt": {"issuer": "bench", "claims_to_headers": {"sub": "X-Jwt-Sub"}}}]}
JSON
  taskset -c 0 $TORII -c "$dir/torii.json" 2>>"$dir/log" &
  SPID=$!; PIDS+=("$SPID")
  wait_tls "$p" "$(date +%s%N)" 120 >/dev/null
  local api=(curl -sf --max-time 30 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
  kid=$("${api[@]}" -X POST "http://127.0.0.1:$ADMIN_PORT/api/pki/keys"         -d '{"algo":"ecdsa","size":256}' | jwt_kid certId)
  "${api[@]}" -X PATCH "http://127.0.0.1:$ADMIN_PORT/api/certificates/$kid"     -d '[{"op":"replace","path":"/exposed","value":true}]' >/dev/null
  tok=$("${api[@]}" -X POST "http://127.0.0.1:$ADMIN_PORT/api/certificates/$kid/_sign"         -d '{"claims":{"sub":"bench","iss":"bench"},"lifetime_s":86400}' | jwt_kid token)
  # the key set follows the store feed: wait (bounded) until the route accepts the token
  for _ in $(seq 1 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' -H 'Host: jwt.bench.test'          -H "Authorization: Bearer $tok" "https://127.0.0.1:$p/")" = 200 ] && break
    sleep 0.1
  done
  for _ in $(seq 1 "$ROUNDS"); do
    for h in jwt plain; do
      c=$(cpu_ticks "$SPID")
      n=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" -H "Host: $h.bench.test"             -H "Authorization: Bearer $tok" "https://127.0.0.1:$p/" 2>&1           | awk '/requests in/ { print $1 }')
      c=$(( $(cpu_ticks "$SPID") - c ))
      t=$(awk -v c="$c" -v hz="$HZ" -v n="${n:-0}" 'BEGIN { printf "%.2f", (n > 0 ? c * 1e6 / hz / n : 0) }')
      if [ "$h" = jwt ]; then cpus+=("$t"); else cpus0+=("$t"); fi
    done
  done
  R[torii.jwt.cpu]=$(printf '%s\n' "${cpus[@]}" | median)
  R[torii.jwt.plain]=$(printf '%s\n' "${cpus0[@]}" | median)
  R[torii.jwt.401]=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Host: jwt.bench.test' "https://127.0.0.1:$p/")
  stop_pid "$SPID"
}
jwt_report() {
  printf '%-60s %12s\n' "JWT ES256 verified request vs same route without jwt, CPU per request" \
    "$(ratio "$(v torii.jwt.cpu)" "$(v torii.jwt.plain)")"
  printf '%-60s %12s\n' "  keep-alive, route with jwt: CPU us/req" "$(v torii.jwt.cpu)"
  printf '%-60s %12s\n' "  keep-alive, same route without jwt: CPU us/req" "$(v torii.jwt.plain)"
  printf '%-60s %12s\n' "  (a request without a token got)" "$(v torii.jwt.401)"
}

# ---- bulk import: NBULK certificates through POST /api/certificates/_bulk into an empty store
bulk_bench() {
  local dir=$B/bulk p t0 t1 c0 c1 ok=0 out f
  mkdir -p "$dir/data"; chmod 700 "$dir/data"
  p=$(port); ADMIN_PORT=$(port)
  $FILL --ndjson "$dir/all.ndjson" "$NBULK" >/dev/null
  split -l "$BULK_LINES" -d -a 5 "$dir/all.ndjson" "$dir/part."
  cat >"$dir/torii.json" <<JSON
{"data_dir": "$dir/data", "workers": 1, "log_level": "notice", "access_log": false,
 "listen": {"https": "127.0.0.1:$p", "http": ""},
 "admin": {"listen": "127.0.0.1:$ADMIN_PORT", "token": "$TOKEN"}}
JSON
  # Not pinned: the _bulk preparation pool uses every CPU torii may run on (the CPU time
  # printed is the sum over its threads).
  $TORII -c "$dir/torii.json" 2>>"$dir/log" &
  SPID=$!; PIDS+=("$SPID")
  wait_tls "$p" "$(date +%s%N)" 120 >/dev/null
  c0=$(cpu_ticks "$SPID"); t0=$(date +%s%N)
  for f in "$dir"/part.*; do
    out=$(taskset -c 1 curl -sf --max-time 600 -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/x-ndjson' --data-binary @"$f" \
      "http://127.0.0.1:$ADMIN_PORT/api/certificates/_bulk" || true)
    ok=$((ok + $(grep -c '"created":true' <<<"$out" || true)))
  done
  t1=$(date +%s%N); c1=$(cpu_ticks "$SPID")
  R[torii.bulk.s]=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
  R[torii.bulk.cpu]=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$NBULK" \
    'BEGIN { printf "%.3f", c * 1000 / hz / n }')
  R[torii.bulk.ok]=$ok
  stop_pid "$SPID"
}
bulk_report() {
  printf '%-60s %12s\n' "$NBULK certificates through _bulk ($BULK_LINES lines/request): s" "$(v torii.bulk.s)"
  printf '%-60s %12s\n' "  torii CPU ms per certificate" "$(v torii.bulk.cpu)"
  printf '%-60s %12s\n' "  certificates created" "$(v torii.bulk.ok)"
}

declare -A R
if [ "$ONLY_BULK" = 1 ]; then
  echo "== torii, bulk import (--only-bulk)"
  bulk_bench
  bulk_report
  footer
  exit 0
fi
prep_store "$B/one"
$FILL "$B/one" 1 "$B/pem1" >/dev/null
if [ "$ONLY_INSTR" = 1 ]; then
  phase_instr
  instr_report
  footer
  exit 0
fi
if [ "$ONLY_SYS" = 1 ]; then
  phase_sys
  sys_report
  footer
  exit 0
fi
if [ "$ONLY_CORE" = 1 ]; then
  ACME=0
  phase_core
  core_report
  footer
  exit 0
fi
if [ "$ONLY_JWT" = 1 ]; then
  echo "== torii, JWT at the edge (--only-jwt; median of $ROUNDS rounds of ${SECS}s)"
  jwt_bench
  jwt_report
  footer
  exit 0
fi
if [ "$ONLY_H2" = 1 ]; then
  ACME=0
  phase_one
  main_report
  footer
  exit 0
fi
prep_store "$B/many"
echo "generating $NCERTS certificates..."
if [ "$ONLY_TORII" = 1 ]; then $FILL "$B/many" "$NCERTS"; else $FILL "$B/many" "$NCERTS" "$B/pemN"; fi
ACME=0
if pebble_up; then ACME=1; fi
phase_one
phase_many

# ---- torii alone with a large store. The peers are not run at this size: on this machine
# kind, at 100,000 certificates HAProxy 2.6 starts in ~75 s with 2.07 GB RSS and nginx 1.22
# (one server block each) in ~74 s with ~8 GB, random SNI costing them 323 / 397 us CPU per
# connection (shared/reference/peer-benchmarks.md).
echo "== torii, JWT at the edge (torii only)"
jwt_bench
if [ "$NBULK" -gt 0 ]; then
  echo "== torii, bulk import of $NBULK certificates (torii only)"
  bulk_bench
fi

if [ "$BIG" -gt 0 ]; then
  echo "== torii, $BIG certificates (torii only: scripts/bench_big.sh)"
  # Its own report, printed with the others below; random SNI warmed over NCERTS names.
  scripts/bench_big.sh --no-build --build "$BIN" --rounds "$ROUNDS" --seconds "$SECS" \
    --warm "$NCERTS" "$BIG" >"$B/big.txt" 2>&1 || echo "bench_big.sh failed (see below)" >>"$B/big.txt"
fi

main_report
jwt_report
[ "$NBULK" -gt 0 ] && bulk_report
if [ "$BIG" -gt 0 ]; then
  echo
  echo "torii with $BIG certificates (torii only: HAProxy and nginx are not run at this size, they take" \
       "~75 s and 2-8 GB at 100,000; see the reference figures in the comment above)"
  grep -v ' notice \| warn ' "$B/big.txt" || true
fi
footer
if [ "$SMOKE" = 1 ]; then smoke_check; fi
