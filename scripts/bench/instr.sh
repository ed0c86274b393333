# shellcheck shell=bash
# scripts/bench/instr.sh - sourced by scripts/bench.sh (--only-instr): user-space instructions
# per request of torii and HAProxy under valgrind's callgrind, the figure that does not move
# with the machine's load (CPU time does, by +-25 % a round on a shared 2-core VM). Each proxy
# runs under callgrind (one worker on CPU 0); for each workload h2load (CPU 1) sends a warm-up
# batch, then IN1 and IN2 requests on fresh connections, the counters zeroed before and dumped
# after each; (I2 - I1) / (IN2 - IN1) cancels the handshakes and the start of each batch.
# Kernel time is not counted: this is the user half of the CPU rows, not a replacement.
IN1=${IN1:-2000}
IN2=${IN2:-6000}
# workload KEY: the h2load arguments (connections, streams) of the CPU rows it mirrors.
instr_args() {
  case $1 in
    ka) echo "--h1 -c 50" ;;       # keep-alive row (wrk -c 50)
    h2s1) echo "-c 20 -m 1" ;;     # HTTP/2, 1 stream per connection
    h2s100) echo "-c 2 -m 100" ;;  # HTTP/2, 100 streams per connection
  esac
}
# cg_total FILE: the instructions a callgrind dump counted ("summary:"/"totals:" line).
cg_total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }
# cg_batch PID OUTBASE N PORT ARGS...: zero the counters, N requests, dump; prints the count,
# or nothing when a request failed.
cg_batch() {
  local pid=$1 out=$2 n=$3 port=$4 res before after f; shift 4
  callgrind_control -z "$pid" >/dev/null 2>&1 || return 0
  # shellcheck disable=SC2068
  res=$(taskset -c 1 timeout 600 h2load -t1 -n "$n" $@ --connect-to="127.0.0.1:$port" \
        "https://h0.bench.test:$port/" 2>&1 || true)
  before=$(ls "$out".* 2>/dev/null | wc -l)
  callgrind_control -d "$pid" >/dev/null 2>&1 || return 0
  after=$before
  for _ in $(seq 1 100); do
    after=$(ls "$out".* 2>/dev/null | wc -l); [ "$after" -gt "$before" ] && break; sleep 0.1
  done
  [[ "$res" == *"$n succeeded"* ]] || return 0
  f=$(ls -t "$out".* | head -1)
  cg_total "$f"
}
# m_instr NAME: every workload on one proxy started under callgrind -> R[NAME.in.KEY]
m_instr() {
  local name=$1 key a i1 i2 out="$B/cg-$1"
  VG="valgrind --tool=callgrind --callgrind-out-file=$out"
  if ! start_proxy "$name" 1 -cg; then VG=""; R[$name.in.ka]="failed"; return; fi
  VG=""
  for key in ka h2s1 h2s100; do
    a=$(instr_args "$key")
    # shellcheck disable=SC2086
    taskset -c 1 timeout 600 h2load -t1 -n 500 $a --connect-to="127.0.0.1:$SPORT" \
      "https://h0.bench.test:$SPORT/" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    i1=$(cg_batch "$SPID" "$out" "$IN1" "$SPORT" $a)
    # shellcheck disable=SC2086
    i2=$(cg_batch "$SPID" "$out" "$IN2" "$SPORT" $a)
    R[$name.in.$key]=$(awk -v a="$i1" -v b="$i2" -v n=$((IN2 - IN1)) \
      'BEGIN { if (a > 0 && b > a) printf "%.0f", (b - a) / n; else print "failed" }')
  done
  stop_proxy
}
phase_instr() {
  local n all=(torii)
  command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind is not installed"; exit 77; }
  [ "$ONLY_TORII" = 1 ] || all+=(haproxy)
  echo "== user instructions per request under callgrind: ${all[*]} ($IN1 then $IN2 requests)"
  for n in "${all[@]}"; do m_instr "$n"; done
}
instr_report() {
  local key label
  echo
  printf '%-56s %12s %12s %10s\n' "user instructions per request (callgrind)" torii haproxy t/haproxy
  for key in ka h2s1 h2s100; do
    case $key in
      ka) label="keep-alive HTTP/1.1, 50 connections" ;;
      h2s1) label="HTTP/2, 1 stream per connection (20)" ;;
      h2s100) label="HTTP/2, 100 streams per connection (2)" ;;
    esac
    printf '%-56s %12s %12s %10s\n' "$label" "$(v torii.in.$key)" "$(v haproxy.in.$key)" \
      "$(ratio "$(v torii.in.$key)" "$(v haproxy.in.$key)")"
  done
}
