#!/usr/bin/env bash
# Resource faults: descriptor exhaustion on accept backs off (no spinning) and recovers; a full
# file system under the data dir answers 507 from the admin API while TLS keeps being served
# from the certificate table, and writes work again once space is freed.
source "$(dirname "$0")/lib.sh"

MNT=""
faults_cleanup() {
  t_bg_stop
  if [ -n "$T_PID" ] && kill -0 "$T_PID" 2>/dev/null; then
    kill -9 "$T_PID" 2>/dev/null
    wait "$T_PID" 2>/dev/null
    T_PID=""
  fi
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT"; fi
  t_cleanup
}
trap faults_cleanup EXIT

# CPU time (user + system) of the daemon in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$T_PID/stat"; }
http_code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$T_HTTP/"; }
http_answers() { [ "$(http_code)" != 000 ]; }

# --- 1. RLIMIT_NOFILE exhaustion (long header timeout: the held connections stay open)
t_config '"limits": {"header_timeout_ms": 600000, "idle_timeout_ms": 600000},'
prlimit --nofile=64:64 "$TORII_BIN" -c "$T_TMP/torii.json" >>"$T_TMP/torii.log" 2>&1 &
T_PID=$!
check "daemon starts with 64 descriptors" t_wait_for curl -s -o /dev/null "http://127.0.0.1:$T_ADMIN/"
check "plain HTTP answers before exhaustion" http_answers

# Hold 200 connections open on the http listener: far more than the daemon can accept.
cat > "$T_TMP/hold.py" <<'PY'
import socket, sys, time
socks = []
for _ in range(int(sys.argv[2])):
    try:
        socks.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5))
    except OSError:
        break
open(sys.argv[3], "w").write(str(len(socks)))
time.sleep(600)
PY
python3 "$T_TMP/hold.py" "$T_HTTP" 200 "$T_TMP/held" &
HOLD=$!
T_BG_PIDS+=($HOLD)
check "connections opened" t_wait_for test -s "$T_TMP/held"
check "the daemon reports descriptor exhaustion" t_wait_for grep -q "accept failed: Too many open files" "$T_TMP/torii.log"
# A spinning accept loop burns a full CPU; the backoff wakes a few times per second.
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks)
t0=$(date +%s%N)
for _ in $(seq 1 30); do sleep 0.1; done
c1=$(cpu_ticks)
t1=$(date +%s%N)
used_ms=$(( (c1 - c0) * 1000 / hz ))
wall_ms=$(( (t1 - t0) / 1000000 ))
echo "# CPU over the exhausted window: ${used_ms} ms in ${wall_ms} ms"
check "no spinning while out of descriptors (CPU ${used_ms} ms <= 10% of ${wall_ms} ms)" \
  [ $((used_ms * 10)) -le "$wall_ms" ]
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null
check "new connections served once descriptors are free" t_wait_for http_answers
check "admin answers again" t_wait_for curl -s -o /dev/null "http://127.0.0.1:$T_ADMIN/healthz"

# --- stale LMDB reader: an mdb_copy backup killed while it holds its read transaction
if command -v mdb_copy >/dev/null && command -v mdb_stat >/dev/null; then
  cat > "$T_TMP/stale.py" <<'PY'
import fcntl, os, subprocess, sys, time
r, w = os.pipe()
fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: mdb_copy blocks after 4 KiB, mid-copy
p = subprocess.Popen(["mdb_copy", sys.argv[1]], stdout=w)
os.close(w)
for _ in range(300):  # until its reader slot shows in the table (30 s at most)
    out = subprocess.run(["mdb_stat", "-r", sys.argv[1]], capture_output=True, text=True).stdout
    if any(line.split()[:1] == [str(p.pid)] for line in out.splitlines()):
        break
    time.sleep(0.1)
else:
    sys.exit("mdb_copy never showed up as a reader")
p.kill()
p.wait()
print(p.pid)
PY
  stale_pid=$(python3 "$T_TMP/stale.py" "$T_TMP/data")
  check "a killed mdb_copy left a reader slot" test -n "$stale_pid"
  check "torii reclaims the stale reader slot by itself" t_wait_for grep -q "store: cleared 1 stale reader slot" "$T_TMP/torii.log"
else
  echo "# mdb_copy/mdb_stat (lmdb-utils) missing: the stale reader case is not tested"
fi
check "graceful stop" t_stop

# --- 2. full file system under the data dir
if ! mkdir -p "$T_TMP/data-full" || ! mount -t tmpfs -o size=2m,mode=0700 tmpfs "$T_TMP/data-full"; then
  echo "SKIP: cannot mount a tmpfs (needs root): the full-disk case is not tested here"
  t_done
fi
MNT="$T_TMP/data-full"
sed -i "s#\"data_dir\": \"$T_TMP/data\"#\"data_dir\": \"$MNT\"#" "$T_TMP/torii.json"
t_start || exit 1
mkcert before ec 30 before.test
entity_json before before > "$T_TMP/before.json"
api POST /api/certificates -H 'Content-Type: application/json' -d @"$T_TMP/before.json"
check_eq "a certificate is created while there is space" 201 "$T_STATUS"
before_serial=$(serial_of before)
served_is() { [ "$(served "$1")" = "$2" ]; }
check "it is served" t_wait_for served_is before.test "$before_serial"

# Fill the file system.
dd if=/dev/zero of="$MNT/filler" bs=64k >/dev/null 2>&1
check "the file system is full" [ "$(df --output=avail "$MNT" | tail -1 | tr -d ' ')" -lt 64 ]
got507=0
got500=0
for i in $(seq 1 40); do
  mkcert "full$i" ec 30 "full$i.test"
  entity_json "full$i" "full$i" > "$T_TMP/full.json"
  api POST /api/certificates -H 'Content-Type: application/json' -d @"$T_TMP/full.json"
  case "$T_STATUS" in
    507) got507=1; break ;;
    201) ;;
    *) got500=1; echo "# unexpected status $T_STATUS: $T_BODY"; break ;;
  esac
done
check "a write on the full disk answers 507" [ "$got507" = 1 ]
check "and never another error" [ "$got500" = 0 ]
check "the 507 says why" grep -q "No space left on device" <<<"$T_BODY"
check_eq "TLS still served from the table (SNI before.test)" "$before_serial" "$(served before.test)"
check "default certificate still served" test -n "$(served "")"
api GET /api/certificates/before
check_eq "reads still work" 200 "$T_STATUS"
rm -f "$MNT/filler"
api POST /api/certificates -H 'Content-Type: application/json' -d @"$T_TMP/full.json"
check_eq "the same write succeeds once space is freed" 201 "$T_STATUS"
check "graceful stop" t_stop
t_done
