# shellcheck shell=bash
# scripts/bench/proc.sh - process figures read from /proc and small helpers shared by
# scripts/bench.sh and scripts/bench_big.sh (sourced; loopback ports, CPU time, RSS, stop).
# CPU and RSS count the process and its direct children (nginx's workers); torii has none.
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
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
# CPU time in ns of a process, every thread, and its children (exact, unlike clock ticks: for
# the short first-use passes). Threads that exited are not counted (none do during a pass).
cpu_ns() {
  local total=0 p f v rest
  for p in $1 $(pgrep -P "$1" || true); do
    for f in /proc/"$p"/task/*/schedstat; do
      v=0
      { read -r v rest < "$f"; } 2>/dev/null || v=0
      total=$((total + v))
    done
  done
  echo $total
}
# Running (not exited, not a zombie waiting to be reaped).
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# Stop a process: TERM, up to 30 s, then KILL; reaped.
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null || true
  for i in $(seq 1 300); do running "$1" || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
rss_kb() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r /proc/$p/status ] || continue
    total=$((total + $(awk '/^VmRSS/ {print $2}' /proc/$p/status)))
  done
  echo $total
}
rss_split() { awk '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {printf "%d %d\n", a, f}' "/proc/$1/status"; }
# settle PID MAX_S: wait until the process uses under 5% of a core over one second (the work
# it does in the background right after start-up), at most MAX_S seconds. Prints "seconds
# cpu_seconds": how long it stayed busy and the CPU it used meanwhile.
settle() {
  local i=0 first c0 c1
  first=$(cpu_ns "$1"); c0=$first; c1=$first
  while [ "$i" -lt "$2" ]; do
    sleep 1; i=$((i + 1))
    c1=$(cpu_ns "$1")
    [ $((c1 - c0)) -lt 50000000 ] && break
    c0=$c1
  done
  awk -v i="$i" -v c=$((c1 - first)) 'BEGIN { printf "%d %.1f\n", i - 1, c / 1e9 }'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
