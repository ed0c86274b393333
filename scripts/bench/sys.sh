# shellcheck shell=bash
# shellcheck disable=SC2034 # R: the result table of scripts/bench.sh
# scripts/bench/sys.sh - sourced by scripts/bench.sh (--only-sys): the system calls, context
# switches and page faults per request of torii and HAProxy, counted by `perf stat` on the kernel's syscall
# tracepoints while h2load (CPU 1) sends SYS_N requests of each workload of --only-instr
# (keep-alive, HTTP/2 at 1 and 100 streams per connection) after a warm-up. How often a proxy
# turns its loop (epoll_wait) and how many sends its responses take is where two proxies with
# the same kernel work per exchange part; the counts move little with the machine's load,
# though a proxy that finds more work ready per turn makes fewer of them. SYS_PERF=PREFIX also
# records a CPU profile of each workload (perf record, DWARF call graphs) in PREFIX-NAME-KEY.data.
SYS_N=${SYS_N:-40000}
SYS_EV="raw_syscalls:sys_enter,context-switches,minor-faults,syscalls:sys_enter_recvfrom"
SYS_EV+=",syscalls:sys_enter_read"
SYS_EV+=",syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_write"
SYS_EV+=",syscalls:sys_enter_epoll_wait"
# sys_count FILE EVENT...: the sum of the counts perf stat -x, wrote for these events.
sys_count() {
  local f=$1; shift
  awk -F, -v list="$*" 'BEGIN { n = split(list, e, " "); for (i = 1; i <= n; i++) want[e[i]] = 1 }
    ($3 in want) && $1 ~ /^[0-9]+$/ { s += $1 } END { print s + 0 }' "$f"
}
# m_sys NAME: every workload on one proxy -> R[NAME.sys.KEY.{all,recv,send,epw,cs}]
m_sys() {
  local name=$1 key a f ok
  if ! start_proxy "$name" 1 -sys; then R[$name.sys.ka.all]="failed"; return; fi
  for key in ka h2s1 h2s100; do
    a=$(instr_args "$key")
    f="$B/sys-$name-$key.txt"
    # shellcheck disable=SC2086
    taskset -c 1 timeout 600 h2load -t1 -n 2000 $a --connect-to="127.0.0.1:$SPORT" \
      "https://h0.bench.test:$SPORT/" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    ok=$(perf stat -x, -e "$SYS_EV" -p "$SPID" -o "$f" -- taskset -c 1 timeout 600 h2load -t1 \
         -n "$SYS_N" $a --connect-to="127.0.0.1:$SPORT" "https://h0.bench.test:$SPORT/" 2>&1 \
         | grep -c "$SYS_N succeeded" || true)
    if [ -n "${SYS_PERF:-}" ]; then # a CPU profile of the same workload: SYS_PERF-NAME-KEY.data
      # shellcheck disable=SC2086
      perf record -q -e cpu-clock -F 4000 --call-graph dwarf,16384 -p "$SPID" \
        -o "$SYS_PERF-$name-$key.data" -- taskset -c 1 timeout 600 h2load -t1 -n "$SYS_N" $a \
        --connect-to="127.0.0.1:$SPORT" "https://h0.bench.test:$SPORT/" >/dev/null 2>&1 || true
    fi
    if [ "$ok" != 1 ] || [ ! -s "$f" ]; then R[$name.sys.$key.all]="failed"; continue; fi
    R[$name.sys.$key.all]=$(sys_count "$f" raw_syscalls:sys_enter)
    R[$name.sys.$key.recv]=$(sys_count "$f" syscalls:sys_enter_recvfrom syscalls:sys_enter_read)
    R[$name.sys.$key.send]=$(sys_count "$f" syscalls:sys_enter_sendto syscalls:sys_enter_writev \
                             syscalls:sys_enter_write)
    R[$name.sys.$key.epw]=$(sys_count "$f" syscalls:sys_enter_epoll_wait)
    R[$name.sys.$key.cs]=$(sys_count "$f" context-switches)
    R[$name.sys.$key.pf]=$(sys_count "$f" minor-faults)
  done
  stop_proxy
}
phase_sys() {
  local n all=(torii)
  command -v perf >/dev/null 2>&1 || { echo "SKIP: perf is not installed (Debian linux-perf)"; exit 77; }
  perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
    { echo "SKIP: perf cannot count the syscall tracepoints here (perf_event_paranoid, tracefs)"; exit 77; }
  [ "$ONLY_TORII" = 1 ] || all+=(haproxy)
  echo "== system calls per request (perf stat): ${all[*]} ($SYS_N requests per workload)"
  for n in "${all[@]}"; do m_sys "$n"; done
}
# per request, 3 decimals; "n/a" when the pass failed
sys_per() { awk -v c="$1" -v n="$SYS_N" 'BEGIN { if (c ~ /^[0-9]+$/) printf "%.3f", c / n; else print "n/a" }'; }
sys_report() {
  local key m
  local -A wl=([ka]="keep-alive HTTP/1.1, 50 conns" [h2s1]="HTTP/2, 1 stream per conn (20)"
               [h2s100]="HTTP/2, 100 streams per conn (2)")
  local -A ml=([all]="system calls" [recv]="recv/read" [send]="send/writev/write"
               [epw]="epoll_wait" [cs]="context switches" [pf]="page faults")
  echo
  printf '%-56s %10s %10s\n' "per request (perf stat)" torii haproxy
  for key in ka h2s1 h2s100; do
    for m in all recv send epw cs pf; do
      printf '%-56s %10s %10s\n' "${wl[$key]}: ${ml[$m]}" "$(sys_per "$(v torii.sys.$key.$m)")" \
        "$(sys_per "$(v haproxy.sys.$key.$m)")"
    done
  done
}
