#!/usr/bin/env bash
# scripts/bench.sh - torii against HAProxy and nginx, same machine, same run, printed as
# ratios. Each proxy runs one worker pinned to CPU 0; the load generator runs on CPU 1.
# Loopback only, bounded in time (a few minutes), every process stopped at the end.
# Compares the proxies' own CPU time per unit of work (see shared peer notes: one client core
# cannot saturate a proxy with full handshakes).
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

# ---- certificates: the same ECDSA P-256 certificates for everyone
mkdir -p -m 0700 "$B/one" "$B/many" "$B/pem1" "$B/pemN"
$FILL "$B/one" 1 "$B/pem1" >/dev/null
echo "generating $NCERTS certificates..."
$FILL "$B/many" "$NCERTS" "$B/pemN" >/dev/null

# ---- configs
torii_conf() { # dir port
  cat > "$1/torii.json" <<JSON
{"data_dir": "$1", "workers": 1, "log_level": "warn", "access_log": false,
 "listen": {"https": "127.0.0.1:$2", "http": ""},
 "admin": {"listen": "127.0.0.1:$(port)", "token": "bench-token-0123456789"},
 "tls": {"default_cert": "bench-0"}}
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
frontend fe
  bind 127.0.0.1:$2 ssl $3
  http-request return status 404 content-type application/json string "{}"
CFG
}
nginx_conf() { # dir port pemdir nservers
  {
    echo "daemon off; master_process on; worker_processes 1; user root;"
    echo "pid $1/nginx.pid; error_log $1/error.log warn;"
    echo "events { worker_connections 20000; }"
    echo "http { access_log off; ssl_protocols TLSv1.2 TLSv1.3;"
    local i
    for i in $(seq 0 $(($4 - 1))); do
      local ds=""; [ "$i" -eq 0 ] && ds=" default_server"
      echo "server { listen 127.0.0.1:$2 ssl$ds; server_name h$i.bench.test;"
      echo "  ssl_certificate $3/h$i.pem; ssl_certificate_key $3/h$i.pem; return 404 '{}'; }"
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
echo "not yet measured (need the proxy engine): keep-alive req/s, 1 MiB throughput, p50/p99 latency, RSS per idle TLS connection"
