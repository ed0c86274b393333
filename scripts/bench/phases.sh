# shellcheck shell=bash
# scripts/bench/phases.sh - sourced by scripts/bench.sh: the two interleaved phases of the
# comparison (1 certificate; NCERTS certificates) and the table they print.
declare -A P_PID P_PORT
UP=()
# start_all KIND NAME...: start every proxy (each on its own port, all pinned to CPU 0; only
# the one being measured has work); UP lists those that came up, the others are named.
start_all() {
  local kind=$1 n; shift
  UP=()
  for n in "$@"; do
    if start_proxy "$n" "$kind"; then
      P_PID[$n]=$SPID; P_PORT[$n]=$SPORT; UP+=("$n")
    else
      echo "   $n did not start (see $SDIR/log): its cells stay empty"
      stop_pid "$SPID"
    fi
  done
}
stop_all() { local n; for n in "$@"; do stop_pid "${P_PID[$n]}"; done; }
# only LIST... -- NAMES...: the NAMES that are in LIST, in LIST's order.
only() {
  local a=() n m; while [ "$1" != -- ]; do a+=("$1"); shift; done; shift
  for n in "${a[@]}"; do for m in "$@"; do [ "$n" = "$m" ] && echo "$n"; done; done
  return 0
}
# progress LABEL KEY NAME...: one line of medians so far, while the bench runs.
progress() {
  local l=$1 k=$2 n line=""; shift 2
  for n in "$@"; do line+=" $n $(cell "$n" "$k");"; done
  echo "   $l:$line"
}
# row1 FN KEY LABEL NAME...: the interleaved rounds of one row, then its progress line.
row1() {
  local fn=$1 k=$2 l=$3; shift 3
  [ $# -gt 0 ] || return 0
  rounds "$fn" "$@"
  progress "$l" "$k" "$@"
}

phase_one() {
  local all=(torii) ka h1 h2 n
  [ "$ACME" = 1 ] && all+=(toriiacme)
  [ "$ONLY_TORII" = 1 ] || all+=(haproxy nginx caddy h2o)
  echo "== 1 certificate: ${all[*]} (one worker each on CPU 0), $ROUNDS interleaved rounds of ${SECS}s"
  start_all 1 "${all[@]}"
  for n in "${UP[@]}"; do R[$n.rss_idle.1]=$(rss_kb "${P_PID[$n]}"); done
  TORII_H2=0; TORII_WS=0
  if [ -n "${P_PORT[torii]:-}" ]; then
    offers_h2 "${P_PORT[torii]}" && TORII_H2=1
    [ "$(/usr/bin/python3 scripts/bench/ws.py probe "${P_PORT[torii]}" 2>/dev/null)" = ok ] && TORII_WS=1
  fi
  echo "   torii offers ALPN h2: $([ $TORII_H2 = 1 ] && echo yes || echo no);" \
       "passes a WebSocket upgrade: $([ $TORII_WS = 1 ] && echo yes || echo no)"
  mapfile -t ka < <(only torii toriiacme haproxy nginx caddy -- "${UP[@]}")
  mapfile -t h1 < <(only torii haproxy nginx caddy -- "${UP[@]}")
  mapfile -t h2 < <(only torii haproxy nginx caddy h2o -- "${UP[@]}")
  if [ "$ONLY_H2" = 1 ]; then
    ka=(); h1=() # --only-h2: the HTTP/2 rows alone
  fi
  row1 m_ka ka.cpu "keep-alive CPU us/req" "${ka[@]}"
  row1 m_full full.cpu "full handshake CPU us/conn" "${ka[@]}"
  row1 m_resumed resumed.cpu "resumed handshake CPU us/conn" "${h1[@]}"
  row1 m_resume_rate resume.rate "resumption rate" "${h1[@]}"
  row1 m_mib mib.mbs "1 MiB MB/s per core" "${h1[@]}"
  row1 m_lat lat.p99 "latency p99 us" "${h1[@]}"
  row1 m_idle idle.kb "KB per idle TLS conn" "${h1[@]}"
  row1 m_idlereq idlereq.kb "KB per idle conn after 1 request" "${h1[@]}"
  row1 m_h2_s1 h2s1.cpu "h2 1 stream CPU us/req" "${h2[@]}"
  row1 m_h2_s100 h2s100.cpu "h2 100 streams CPU us/req" "${h2[@]}"
  row1 m_h2_conn h2conn.cpu "h2 new conn CPU us/conn" "${h2[@]}"
  row1 m_h2_idle h2idle.kb "KB per idle h2 conn" "${h2[@]}"
  row1 m_ws ws.cpu "WebSocket echo CPU us/msg" "${h1[@]}"
  stop_all "${UP[@]}"
  # the single figure the torii-only sections below compare with
  R[torii.full.cpu]=$(cell torii full.cpu)
}

# phase_core: torii and HAProxy (or torii alone with --only-torii), 1 certificate, the rows of
# the keep-alive and handshake goals only (--only-core).
phase_core() {
  local all=(torii)
  [ "$ONLY_TORII" = 1 ] || all+=(haproxy)
  echo "== core rows: ${all[*]} (one worker each on CPU 0), $ROUNDS interleaved rounds of ${SECS}s"
  start_all 1 "${all[@]}"
  row1 m_ka ka.cpu "keep-alive CPU us/req" "${UP[@]}"
  row1 m_full full.cpu "full handshake CPU us/conn" "${UP[@]}"
  row1 m_resumed resumed.cpu "resumed handshake CPU us/conn" "${UP[@]}"
  row1 m_idle idle.kb "KB per idle TLS conn" "${UP[@]}"
  row1 m_idlereq idlereq.kb "KB per idle conn after 1 request" "${UP[@]}"
  stop_all "${UP[@]}"
}
core_report() {
  local COLS=(torii haproxy)
  [ "$ONLY_TORII" = 1 ] && COLS=(torii)
  echo
  echo "torii vs HAProxy, same run: $ROUNDS rounds of ${SECS}s; t/peer per round, median (min-max)"
  table_head
  trow "keep-alive 100-byte responses: CPU us/req" ka.cpu
  trow "full TLS handshake + 1 request: CPU us/conn" full.cpu
  trow "resumed handshake + 1 request: CPU us/conn" resumed.cpu
  trow "RSS KB per idle TLS connection ($IDLEN open)" idle.kb
  trow "RSS KB per idle conn after 1 request ($IDLEN open)" idlereq.kb
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# m_many_start NAME ROUND: a start on a fresh copy of the NCERTS store: time to the first
# handshake, RSS, torii's own figure, then how long it stays busy (background work).
m_many_start() {
  if start_proxy "$1" N; then
    R[$1.many.start.$2]=$STARTMS
    R[$1.many.rss.$2]=$(rss_kb "$SPID")
    [ "$1" = torii ] && R[$1.many.own.$2]=$(torii_own_start "$SDIR/log")
    read -r "R[$1.many.busy.$2]" "R[$1.many.busycpu.$2]" < <(settle "$SPID" 120)
  else
    R[$1.many.start.$2]="failed"
  fi
  stop_proxy
}
# m_first NAME ROUND: first use of FIRSTN names never used before (a new slice each round),
# then the same names again (warm).
m_first() {
  local off=$((1 + ($2 - 1) * FIRSTN))
  read -r "R[$1.first.ms.$2]" "R[$1.first.cpu.$2]" "R[$1.parse.n.$2]" "R[$1.parse.us.$2]" \
    "R[$1.parse.max.$2]" < <(pass "$1" "${P_PID[$1]}" "${P_PORT[$1]}" "$off" "$FIRSTN" "$NCERTS")
  read -r "R[$1.warm.ms.$2]" "R[$1.warm.cpu.$2]" _ _ _ \
    < <(pass "$1" "${P_PID[$1]}" "${P_PORT[$1]}" "$off" "$FIRSTN" "$NCERTS")
}
# m_sni NAME ROUND: random SNI over every name, then one name in the same process.
m_sni() {
  read -r "R[$1.many.cpu.$2]" "R[$1.many.rate.$2]" \
    < <(measure "${P_PID[$1]}" "${P_PORT[$1]}" -S 'h%d.bench.test' -r "$NCERTS")
  read -r "R[$1.many.fixed.$2]" _ < <(measure "${P_PID[$1]}" "${P_PORT[$1]}" -s h0.bench.test)
}

phase_many() {
  local n
  # First-use names: a new slice of FIRSTN per round, from h1 (h0 is the default certificate).
  FIRSTN=$(( (NCERTS - 1) / ROUNDS < 300 ? (NCERTS - 1) / ROUNDS : 300 ))
  echo "== $NCERTS certificates: ${PROXIES[*]}, $ROUNDS interleaved rounds"
  row1 m_many_start many.start "start-up ms" "${PROXIES[@]}"
  start_all N "${PROXIES[@]}"
  row1 m_first first.cpu "first use CPU us/conn" "${UP[@]}"
  for n in "${UP[@]}"; do # every name once, so the random-SNI rounds measure the steady state
    taskset -c 1 $HSLOAD -p "${P_PORT[$n]}" -n "$NCERTS" -t 120 -q -S 'h%d.bench.test' \
      -r "$NCERTS" -w >/dev/null
    R[$n.many.rss_warm.1]=$(rss_kb "${P_PID[$n]}")
  done
  row1 m_sni many.cpu "random SNI CPU us/conn" "${UP[@]}"
  stop_all "${UP[@]}"
}

main_report() {
  local COLS=(torii haproxy nginx caddy h2o)
  [ "$ONLY_TORII" = 1 ] && COLS=(torii)
  echo
  echo "torii vs peers, same run: $ROUNDS rounds of ${SECS}s, the proxies interleaved in each round."
  echo "Cells: median of the rounds. t/peer: torii/peer computed per round, median (min-max)."
  echo "CPU = the proxy's own CPU time per unit; lower is better unless noted; - = not measured."
  table_head
  trow "keep-alive 100-byte responses: CPU us/req" ka.cpu
  trow "keep-alive req/s (client-bound, higher better)" ka.rate
  trow "1 MiB responses: MB/s per proxy core (higher better)" mib.mbs
  trow "latency p50 us at a fixed rate" lat.p50
  trow "latency p99 us at a fixed rate" lat.p99
  trow "  (achieved rate, req/s)" lat.rate
  trow "RSS KB per idle TLS connection ($IDLEN open)" idle.kb
  trow "RSS KB per idle conn after 1 request ($IDLEN open)" idlereq.kb
  trow "full TLS handshake + 1 request: CPU us/conn" full.cpu
  trow "full handshakes/s (client-bound, higher better)" full.rate
  trow "resumed handshake + 1 request: CPU us/conn" resumed.cpu
  trow "resumption rate, each ticket used once (higher better)" resume.rate
  trow "HTTP/2, 1 stream per conn (20 conns): CPU us/req" h2s1.cpu
  trow "HTTP/2, 100 streams per conn (2 conns): CPU us/req" h2s100.cpu
  trow "HTTP/2, new conn per request: CPU us/conn" h2conn.cpu
  trow "RSS KB per idle HTTP/2 connection ($IDLEN open)" h2idle.kb
  trow "WebSocket echo, 100-byte messages: CPU us/msg" ws.cpu
  trow "  (echoes/s, client-bound)" ws.rate
  trow "$NCERTS certs, random SNI: CPU us/conn" many.cpu
  trow "$NCERTS certs, one name, same process: CPU us/conn" many.fixed
  trow "$NCERTS certs: start-up ms (to first handshake)" many.start
  trow "$NCERTS certs: torii's own start-up figure (log), ms" many.own
  trow "$NCERTS certs: RSS KB" many.rss
  trow "$NCERTS certs: busy after start, s (until < 5% CPU)" many.busy
  trow "$NCERTS certs: CPU s used meanwhile" many.busycpu
  trow "$NCERTS certs: RSS KB after every cert was used" many.rss_warm
  trow "first handshake of an unused cert: client ms/conn" first.ms
  trow "first handshake of an unused cert: proxy CPU us/conn" first.cpu
  trow "same names again (warm): client ms/conn" warm.ms
  trow "same names again (warm): proxy CPU us/conn" warm.cpu
  trow "first use: server-side cert parse us, mean (torii /metrics)" parse.us
  trow "first use: longest cert parse us since start (torii)" parse.max
  trow "1 cert: RSS KB after start" rss_idle
  echo
  if [ "$ACME" = 1 ]; then
    echo "torii with acme{} configured / torii, same rounds (issue 12: no regression expected):"
    echo "  keep-alive CPU/req $(rcell toriiacme torii ka.cpu)," \
         "full handshake CPU/conn $(rcell toriiacme torii full.cpu)" \
         "(torii+acme: $(cell toriiacme ka.cpu) us/req, $(cell toriiacme full.cpu) us/conn)"
  else
    echo "torii with acme{} configured: not measured (no Pebble)"
  fi
  echo "torii random SNI ($NCERTS certs) vs 1 cert, CPU/conn: $(ratio "$(cell torii many.cpu)" "$(cell torii full.cpu)") (goal <= 1.05);" \
       "vs one name in the same process, per round: $(rcell2 torii many.cpu many.fixed)"
  echo "torii resumption rate, clients using each ticket once: $(cell torii resume.rate) (goal >= 0.99)"
  echo "torii first use of a certificate, server side: parse $(cell torii parse.us) us mean, CPU" \
       "$(cell torii first.cpu) us/conn vs $(cell torii warm.cpu) warm (goal: first handshake <= 1000 us)"
}
# rcell2 NAME KEY_A KEY_B: NAME's KEY_A/KEY_B per round, median (min-max).
rcell2() {
  local r
  for r in $(seq 1 "$ROUNDS"); do
    R[_ratio_a.x.$r]=${R[$1.$2.$r]:-}; R[_ratio_b.x.$r]=${R[$1.$3.$r]:-}
  done
  rcell _ratio_a _ratio_b x
}

# smoke_check: --smoke fails (naming the row) when a row of torii measured nothing: each must
# hold a number, the HTTP/2 and WebSocket rows a number or their "n/a (no ...)" marker.
smoke_check() {
  local k v bad=0
  num_ok() { [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
  pos_ok() { num_ok "$1" && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
  for k in ka.cpu ka.rate full.cpu resumed.cpu resume.rate mib.mbs lat.p99 many.start many.rss \
           many.cpu many.fixed first.cpu warm.cpu; do
    v=$(cell torii "$k"); pos_ok "$v" || { echo "smoke: torii $k measured nothing ($v)"; bad=1; }
  done
  v=$(cell torii idle.kb); num_ok "$v" || { echo "smoke: torii idle.kb measured nothing ($v)"; bad=1; }
  for k in h2s1.cpu h2s100.cpu h2conn.cpu h2idle.kb ws.cpu; do
    v=$(cell torii "$k")
    num_ok "$v" || [[ "$v" == "n/a (no h2)" || "$v" == "n/a (no ws)" ]] ||
      { echo "smoke: torii $k measured nothing ($v)"; bad=1; }
  done
  if [ "$ACME" = 1 ]; then
    for k in ka.cpu full.cpu; do
      v=$(cell toriiacme "$k"); pos_ok "$v" || { echo "smoke: torii+acme $k measured nothing ($v)"; bad=1; }
    done
  fi
  pos_ok "${R[torii.jwt.cpu]:-}" || { echo "smoke: the JWT row measured nothing"; bad=1; }
  [ "${R[torii.jwt.401]:-}" = 401 ] || { echo "smoke: a request without a token got ${R[torii.jwt.401]:-nothing}"; bad=1; }
  [ "${R[torii.bulk.ok]:-0}" = "$NBULK" ] ||
    { echo "smoke: bulk import created ${R[torii.bulk.ok]:-0} of $NBULK certificates"; bad=1; }
  [ "$bad" = 0 ] && echo "smoke: every row measured something"
  return "$bad"
}
