# shellcheck shell=bash
# scripts/bench/rows.sh - sourced by scripts/bench.sh: one measurement of one row for one
# proxy (m_<row> NAME ROUND -> R[NAME.KEY.ROUND]), on the proxy already running in
# P_PID[NAME] / P_PORT[NAME]. Load generators run on CPU 1; every run is bounded by SECS (or
# by a count and a timeout).

per_unit() { # ticks count -> CPU us per unit, 2 decimals
  awk -v c="$1" -v hz="$HZ" -v n="${2:-0}" 'BEGIN { printf "%.2f", (n > 0 ? c * 1e6 / hz / n : 0) }'
}
per_unit_ns() { # ns count -> CPU us per unit, 2 decimals; "n/a" when nothing was done
  awk -v c="$1" -v n="${2:-0}" 'BEGIN { if (n > 0) printf "%.2f", c / 1000 / n; else print "n/a" }'
}
m_full() {
  local cpu rate
  read -r cpu rate < <(measure "${P_PID[$1]}" "${P_PORT[$1]}" -s h0.bench.test)
  R[$1.full.cpu.$2]=$cpu; R[$1.full.rate.$2]=$rate
}
m_resumed() {
  local cpu rate
  read -r cpu rate < <(measure "${P_PID[$1]}" "${P_PORT[$1]}" -s h0.bench.test -k)
  R[$1.resumed.cpu.$2]=$cpu; R[$1.resumed.rate.$2]=$rate
}
m_resume_rate() { R[$1.resume.rate.$2]=$(resume_rate "${P_PORT[$1]}"); }
m_ka() { # keep-alive 100-byte responses, 50 connections
  local n t c _p
  read -r n t c _p _p < <(wrk_run "${P_PID[$1]}" "${P_PORT[$1]}" / 50)
  R[$1.ka.cpu.$2]=$(per_unit "$c" "$n")
  R[$1.ka.rate.$2]=$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')
}
m_mib() { # 1 MiB responses: MB/s per proxy core
  local n t c _p
  read -r n t c _p _p < <(wrk_run "${P_PID[$1]}" "${P_PORT[$1]}" /1m 4)
  R[$1.mib.mbs.$2]=$(awk -v c="$c" -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.0f", (c > 0 ? n * 1.048576 / (c / hz) : 0) }')
}
m_lat() { # latency at a fixed moderate rate: 20 connections, each pausing 4 ms between requests
  local n t c p50 p99
  echo 'function delay() return 4 end' > "$B/rate.lua"
  read -r n t c p50 p99 < <(wrk_run "${P_PID[$1]}" "${P_PORT[$1]}" / 20 -s "$B/rate.lua")
  R[$1.lat.rate.$2]=$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')
  R[$1.lat.p50.$2]=$p50; R[$1.lat.p99.$2]=$p99
}
# Memory rows: a fresh instance per round (a process that already served the other rows
# would reuse the memory freed by their connections), next to the running ones.
fresh_idle() { # name tls|h2 -> IDLE_KB
  IDLE_KB="n/a"
  if start_proxy "$1" 1 -idle >/dev/null; then IDLE_KB=$(idle_conns "$SPID" "$SPORT" "$IDLEN" "$2"); fi
  stop_proxy
}
m_idle() { fresh_idle "$1" tls; R[$1.idle.kb.$2]=$IDLE_KB; }
m_idlereq() { fresh_idle "$1" req; R[$1.idlereq.kb.$2]=$IDLE_KB; }

# ---- HTTP/2 (h2load on CPU 1). torii's cells say "n/a (no h2)" until it offers ALPN h2.
offers_h2() { # port -> 0 when the TLS server there selects ALPN h2
  local out
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername h0.bench.test -alpn h2 \
        </dev/null 2>/dev/null || true)
  [[ "$out" == *"ALPN protocol: h2"* ]]
}
no_h2() { [ "$1" = torii ] && [ "$TORII_H2" = 0 ]; }
# h2run NAME ARGS... -> "succeeded_requests cpu_ns"
h2run() {
  local pid=${P_PID[$1]} port=${P_PORT[$1]} c0 c1 out; shift
  c0=$(cpu_ns "$pid")
  out=$(taskset -c 1 h2load -t1 "$@" --connect-to="127.0.0.1:$port" \
        "https://h0.bench.test:$port/" 2>&1 || true)
  c1=$(cpu_ns "$pid")
  echo "$(awk '/^requests:/ { print $8; f = 1 } END { if (!f) print 0 }' <<<"$out") $((c1 - c0))"
}
m_h2_s1() { # 1 stream per connection, 20 connections: CPU us per request
  local n c
  if no_h2 "$1"; then R[$1.h2s1.cpu.$2]="n/a (no h2)"; return; fi
  read -r n c < <(h2run "$1" -c 20 -m 1 -D "$SECS")
  R[$1.h2s1.cpu.$2]=$(per_unit_ns "$c" "$n")
}
m_h2_s100() { # 100 concurrent streams on each of 2 connections
  local n c
  if no_h2 "$1"; then R[$1.h2s100.cpu.$2]="n/a (no h2)"; return; fi
  read -r n c < <(h2run "$1" -c 2 -m 100 -D "$SECS")
  R[$1.h2s100.cpu.$2]=$(per_unit_ns "$c" "$n")
}
m_h2_conn() { # new connection per request: batches of 200 clients with one request each
  local n c tn=0 tc=0 end
  if no_h2 "$1"; then R[$1.h2conn.cpu.$2]="n/a (no h2)"; return; fi
  end=$(( $(date +%s%N) + SECS * 1000000000 ))
  for _ in $(seq 1 1000); do
    read -r n c < <(h2run "$1" -n 200 -c 200 -m 1)
    tn=$((tn + n)); tc=$((tc + c))
    [ "$(date +%s%N)" -lt "$end" ] || break
  done
  R[$1.h2conn.cpu.$2]=$(per_unit_ns "$tc" "$tn")
}
m_h2_idle() {
  if no_h2 "$1"; then R[$1.h2idle.kb.$2]="n/a (no h2)"; return; fi
  fresh_idle "$1" h2; R[$1.h2idle.kb.$2]=$IDLE_KB
}

# ---- WebSocket echo: the proxy's CPU per echoed 100-byte message (client -> backend ->
# client), 10 connections through the proxy to the echo backend behind the nginx backend's /ws;
# the client samples the proxy's CPU once its connections are open and as each loop ends.
no_ws() { [ "$1" = torii ] && [ "$TORII_WS" = 0 ]; }
m_ws() {
  local n c
  if no_ws "$1"; then R[$1.ws.cpu.$2]="n/a (no ws)"; return; fi
  read -r n c < <(taskset -c 1 /usr/bin/python3 scripts/bench/ws.py client "${P_PORT[$1]}" "$SECS" \
                  10 "${P_PID[$1]}" 2>>"$B/ws-client.log" || echo 0 0)
  R[$1.ws.cpu.$2]=$(per_unit_ns "$c" "$n")
  R[$1.ws.rate.$2]=$(awk -v n="$n" -v t="$SECS" 'BEGIN { printf "%.0f", n / t }')
}

# idle_conns PID PORT COUNT tls|req|h2 -> KB of RSS per idle connection: COUNT connections
# from CPU 1, each a finished TLS handshake (req: then one HTTP/1.1 keep-alive request and its
# whole response; h2: ALPN h2, the connection preface and SETTINGS both ways, no stream), held
# open while the proxy's RSS is read.
idle_conns() {
  local pid=$1 port=$2 n=$3 r0 r1 py got
  r0=$(rss_kb "$pid")
  taskset -c 1 python3 - "$port" "$n" "$B/idle.$port" "$4" <<'PY' &
import asyncio, os, ssl, sys
port, n, flag, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "h2":
    ctx.set_alpn_protocols(["h2"])
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
ACK = bytes([0, 0, 0, 4, 1, 0, 0, 0, 0])
async def main():
    sem = asyncio.Semaphore(200); conns = []
    async def one():
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                     server_hostname="h0.bench.test")
                if mode == "h2":
                    w.write(PREFACE); await w.drain()
                    await asyncio.wait_for(r.read(9), 10)  # the server's SETTINGS header
                    w.write(ACK); await w.drain()
                if mode == "req":
                    w.write(b"GET / HTTP/1.1\r\nHost: h0.bench.test\r\n\r\n"); await w.drain()
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                    cl = [l for l in head.lower().split(b"\r\n") if l.startswith(b"content-length:")]
                    await asyncio.wait_for(r.readexactly(int(cl[0].split(b":")[1])), 10)
                conns.append((r, w))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, IndexError,
                    ValueError):
                pass
    await asyncio.gather(*[one() for _ in range(n)])
    open(flag, "w").write(str(len(conns)))
    for _ in range(600):
        if not os.path.exists(flag): break
        await asyncio.sleep(0.1)
asyncio.run(main())
PY
  py=$!
  for _ in $(seq 1 600); do [ -s "$B/idle.$port" ] && break; sleep 0.1; done
  # The proxy's RSS once it has taken the last connections' bytes (read after 1 s).
  sleep 1
  r1=$(rss_kb "$pid")
  got=$(cat "$B/idle.$port" 2>/dev/null || echo 0)
  rm -f "$B/idle.$port"; wait "$py" 2>/dev/null || true
  awk -v a="$r0" -v b="$r1" -v n="$got" 'BEGIN { if (n > 0) printf "%.1f\n", (b - a) / n; else print "n/a" }'
}
