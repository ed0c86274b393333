#!/usr/bin/env bash
# scripts/bench.sh - torii against HAProxy and nginx, same machine, same run, printed as
# ratios. Each proxy runs one worker pinned to CPU 0; the load generator runs on CPU 1.
# Loopback only, bounded in time (a few minutes), every process stopped at the end.
# Compares the proxies' own CPU time per unit of work (see shared peer notes: one client core
# cannot saturate a proxy with full handshakes).
# Metrics: keep-alive requests (CPU per request), 1 MiB responses (MB/s per core), latency at
# a fixed rate (p50/p99), memory per idle TLS connection, full and resumed handshakes + one
# request (CPU per connection), and with N certificates: start-up, RSS, first-use latency and
# CPU per connection with a random SNI. The backend is nginx (plain HTTP, keep-alive) on CPU 1.
# Usage: scripts/bench.sh [--rounds N] [--seconds S] [--certs N]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3
SECS=4
NCERTS=10000
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --certs) NCERTS=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--certs N]"; exit 2 ;;
  esac
done
./scripts/deps.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target torii torii-hsload torii-fill >/dev/null

B=$(mktemp -d /tmp/torii-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$B/" 2>/dev/null || true
  rm -rf "$B"
}
trap cleanup EXIT
TORII=build-bench/torii
HSLOAD=build-bench/tests/torii-hsload
FILL=build-bench/tests/torii-fill
HZ=$(getconf CLK_TCK)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU ticks (user+system) of a process and its children (nginx workers).
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r /proc/$p/stat ] || continue
    total=$((total + $(awk '{print $14 + $15}' /proc/$p/stat)))
  done
  echo $total
}
rss_kb() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r /proc/$p/status ] || continue
    total=$((total + $(awk '/^VmRSS/ {print $2}' /proc/$p/status)))
  done
  echo $total
}
# Wait until a TLS handshake succeeds on port $1; prints elapsed ms since $2 (ns timestamp).
wait_tls() {
  local i
  for i in $(seq 1 3000); do
    if $HSLOAD -p "$1" -n 1 -t 2 -s h0.bench.test -q 2>/dev/null | grep -q '^1 0'; then
      echo $(( ($(date +%s%N) - $2) / 1000000 )); return 0
    fi
    sleep 0.01
  done
  echo "proxy on port $1 did not come up" >&2; return 1
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
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
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
# idle_tls PID PORT COUNT -> KB of RSS per idle TLS connection
idle_tls() {
  local pid=$1 port=$2 n=$3 r0 r1
  r0=$(rss_kb "$pid")
  taskset -c 1 python3 - "$port" "$n" "$B/idle.$port" <<'PY' &
import asyncio, os, ssl, sys
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
async def main():
    sem = asyncio.Semaphore(200); conns = []
    async def one():
        async with sem:
            try:
                conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                          server_hostname="h0.bench.test"))
            except OSError:
                pass
    await asyncio.gather(*[one() for _ in range(n)])
    open(flag, "w").write(str(len(conns)))
    for _ in range(600):
        if not os.path.exists(flag): break
        await asyncio.sleep(0.1)
asyncio.run(main())
PY
  local py=$!
  for _ in $(seq 1 600); do [ -s "$B/idle.$port" ] && break; sleep 0.1; done
  sleep 1
  r1=$(rss_kb "$pid")
  local got; got=$(cat "$B/idle.$port" 2>/dev/null || echo 0)
  rm -f "$B/idle.$port"; wait "$py" 2>/dev/null || true
  awk -v a="$r0" -v b="$r1" -v n="$got" 'BEGIN { if (n > 0) printf "%.1f\n", (b - a) / n; else print "n/a" }'
}
ulimit -n 200000 2>/dev/null || ulimit -n 65536 || true

# ---- certificates: the same ECDSA P-256 certificates for everyone
mkdir -p -m 0700 "$B/one" "$B/many" "$B/pem1" "$B/pemN"
$FILL "$B/one" 1 "$B/pem1" >/dev/null
echo "generating $NCERTS certificates..."
$FILL "$B/many" "$NCERTS" "$B/pemN" >/dev/null

# ---- the backend: nginx, plain HTTP/1.1 keep-alive, on CPU 1 with the load generator
BK=$(port)
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
    location = /1m { try_files /1m =404; } } }
CFG
taskset -c 1 nginx -c "$B/bk/nginx.conf" -p "$B/bk" >>"$B/bk/log" 2>&1 &
PIDS+=("$!")

# ---- configs: every proxy terminates TLS and forwards to the same backend
torii_conf() { # dir port
  cat > "$1/torii.json" <<JSON
{"data_dir": "$1", "workers": 1, "log_level": "warn", "access_log": false,
 "listen": {"https": "127.0.0.1:$2", "http": ""},
 "admin": {"listen": "127.0.0.1:$(port)", "token": "bench-token-0123456789"},
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
  bind 127.0.0.1:$2 ssl $3
  maxconn 100000
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
    local i
    for i in $(seq 0 $(($4 - 1))); do
      local ds=""; [ "$i" -eq 0 ] && ds=" default_server"
      echo "server { listen 127.0.0.1:$2 ssl$ds; server_name h$i.bench.test;"
      echo "  ssl_certificate $3/h$i.pem; ssl_certificate_key $3/h$i.pem;"
      echo "  location / { proxy_pass http://bk; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
    done
    echo "}"
  } > "$1/nginx.conf"
}

# start NAME STOREKIND(1|N) -> sets SPID SPORT STARTMS
start_proxy() {
  local name=$1 kind=$2 dir="$B/run-$1-$2"
  mkdir -p "$dir"; SPORT=$(port)
  local t0; t0=$(date +%s%N)
  case $name in
    torii)
      cp -r "$B/$([ "$kind" = 1 ] && echo one || echo many)/." "$dir/"
      torii_conf "$dir" "$SPORT"
      taskset -c 0 $TORII -c "$dir/torii.json" 2>>"$dir/log" &
      SPID=$! ;;
    haproxy)
      if [ "$kind" = 1 ]; then haproxy_conf "$dir/h.cfg" "$SPORT" "crt $B/pem1/h0.pem"
      else haproxy_conf "$dir/h.cfg" "$SPORT" "crt-list $B/pemN/list.txt"; fi
      taskset -c 0 haproxy -db -f "$dir/h.cfg" >>"$dir/log" 2>&1 &
      SPID=$! ;;
    nginx)
      if [ "$kind" = 1 ]; then nginx_conf "$dir" "$SPORT" "$B/pem1" 1
      else nginx_conf "$dir" "$SPORT" "$B/pemN" "$NCERTS"; fi
      t0=$(date +%s%N)
      taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >>"$dir/log" 2>&1 &
      SPID=$! ;;
  esac
  PIDS+=("$SPID")
  STARTMS=$(wait_tls "$SPORT" "$t0")
}
stop_proxy() { kill -TERM "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; }

declare -A R
for name in torii haproxy nginx; do
  echo "== $name"
  start_proxy "$name" 1
  R[$name.rss_idle]=$(rss_kb "$SPID")
  for metric in full resumed; do
    args=(-s h0.bench.test); [ "$metric" = resumed ] && args+=(-k)
    cpus=(); rates=()
    for r in $(seq 1 "$ROUNDS"); do
      read -r cpu rate < <(measure "$SPID" "$SPORT" "${args[@]}")
      cpus+=("$cpu"); rates+=("$rate")
    done
    R[$name.$metric.cpu]=$(printf '%s\n' "${cpus[@]}" | median)
    R[$name.$metric.rate]=$(printf '%s\n' "${rates[@]}" | median)
    echo "   $metric: ${R[$name.$metric.cpu]} us CPU/conn, ${R[$name.$metric.rate]} conn/s"
  done
  # Keep-alive small responses (100 bytes): proxy CPU us per request.
  cpus=(); rates=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r n t c p50 p99 < <(wrk_run "$SPID" "$SPORT" / 50)
    cpus+=("$(awk -v c="$c" -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.2f", (n > 0 ? c * 1e6 / hz / n : 0) }')")
    rates+=("$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t }')")
  done
  R[$name.ka.cpu]=$(printf '%s\n' "${cpus[@]}" | median)
  R[$name.ka.rate]=$(printf '%s\n' "${rates[@]}" | median)
  # 1 MiB responses: MB/s per proxy core (bytes moved / proxy CPU seconds).
  mbs=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r n t c p50 p99 < <(wrk_run "$SPID" "$SPORT" /1m 4)
    mbs+=("$(awk -v c="$c" -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.0f", (c > 0 ? n * 1.048576 / (c / hz) : 0) }')")
  done
  R[$name.mib.mbs]=$(printf '%s\n' "${mbs[@]}" | median)
  # Latency at a fixed moderate rate: 20 connections, each pausing 4 ms between requests.
  echo 'function delay() return 4 end' > "$B/rate.lua"
  read -r n t c p50 p99 < <(wrk_run "$SPID" "$SPORT" / 20 -s "$B/rate.lua")
  R[$name.lat.rate]=$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t }')
  R[$name.lat.p50]=$p50
  R[$name.lat.p99]=$p99
  # Memory per idle TLS connection (handshake done, no request).
  R[$name.idle.kb]=$(idle_tls "$SPID" "$SPORT" 5000)
  echo "   keep-alive: ${R[$name.ka.cpu]} us CPU/req, ${R[$name.ka.rate]} req/s; 1 MiB: ${R[$name.mib.mbs]} MB/s per core;" \
       "latency at ${R[$name.lat.rate]} req/s p50 ${R[$name.lat.p50]} us p99 ${R[$name.lat.p99]} us; idle TLS conn ${R[$name.idle.kb]} KB"
  stop_proxy
  start_proxy "$name" N
  R[$name.many.start]=$STARTMS
  R[$name.many.rss]=$(rss_kb "$SPID")
  # First use of not-yet-used certificates (torii parses DER lazily), then the same names
  # again, warm: mean connection time as seen by the client.
  R[$name.first.ms]=$(taskset -c 1 $HSLOAD -p "$SPORT" -n 300 -t 30 -q -S 'h%d.bench.test' -r "$NCERTS" -w -o 1 | awk '{print $4}')
  R[$name.warm.ms]=$(taskset -c 1 $HSLOAD -p "$SPORT" -n 300 -t 30 -q -S 'h%d.bench.test' -r "$NCERTS" -w -o 1 | awk '{print $4}')
  # Warm-up: every name once, so the random-SNI rounds measure the steady state.
  taskset -c 1 $HSLOAD -p "$SPORT" -n "$NCERTS" -t 120 -q -S 'h%d.bench.test' -r "$NCERTS" -w >/dev/null
  R[$name.many.rss_warm]=$(rss_kb "$SPID")
  cpus=(); rates=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r cpu rate < <(measure "$SPID" "$SPORT" -S 'h%d.bench.test' -r "$NCERTS")
    cpus+=("$cpu"); rates+=("$rate")
  done
  R[$name.many.cpu]=$(printf '%s\n' "${cpus[@]}" | median)
  R[$name.many.rss_end]=$(rss_kb "$SPID")
  R[$name.many.rate]=$(printf '%s\n' "${rates[@]}" | median)
  echo "   $NCERTS certs: start ${R[$name.many.start]} ms, RSS $((R[$name.many.rss] / 1024)) MB," \
       "random SNI ${R[$name.many.cpu]} us CPU/conn, ${R[$name.many.rate]} conn/s"
  stop_proxy
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "torii vs peers, same run (median of $ROUNDS rounds of ${SECS}s; CPU = proxy CPU per unit; lower is better unless noted)"
printf '%-52s %12s %12s %12s %10s %10s\n' metric torii haproxy nginx t/haproxy t/nginx
row() { # label key
  printf '%-52s %12s %12s %12s %10s %10s\n' "$1" "${R[torii.$2]}" "${R[haproxy.$2]}" "${R[nginx.$2]}" \
    "$(ratio "${R[torii.$2]}" "${R[haproxy.$2]}")" "$(ratio "${R[torii.$2]}" "${R[nginx.$2]}")"
}
row "keep-alive 100-byte responses: CPU us/req" ka.cpu
row "keep-alive req/s (client-bound, higher better)" ka.rate
row "1 MiB responses: MB/s per proxy core (higher better)" mib.mbs
row "latency p50 us at a fixed rate" lat.p50
row "latency p99 us at a fixed rate" lat.p99
row "  (achieved rate, req/s)" lat.rate
row "RSS KB per idle TLS connection (5,000 open)" idle.kb
row "full TLS handshake + 1 request: CPU us/conn" full.cpu
row "full handshakes/s (client-bound, higher better)" full.rate
row "resumed handshake + 1 request: CPU us/conn" resumed.cpu
row "$NCERTS certs, random SNI: CPU us/conn" many.cpu
row "$NCERTS certs: start-up ms (to first handshake)" many.start
row "$NCERTS certs: RSS KB" many.rss
row "$NCERTS certs: RSS KB after every cert was used" many.rss_warm
row "first handshake of an unused cert: client ms/conn" first.ms
row "same names again (warm): client ms/conn" warm.ms
row "1 cert: RSS KB after start" rss_idle
echo
echo "torii random SNI ($NCERTS certs) vs 1 cert, CPU/conn: $(ratio "${R[torii.many.cpu]}" "${R[torii.full.cpu]}")"
echo "backend: nginx on CPU 1 (plain HTTP/1.1, keep-alive); proxies: one worker on CPU 0; load: CPU 1"
