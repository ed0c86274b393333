# lib.sh - shared helpers for integration tests: start the real daemon on loopback ports with
# a temporary data dir, talk to it with curl and openssl, count failures.
# Usage: source from a test; $1 of the test is the torii binary.
set -uo pipefail

TORII_BIN=${TORII_BIN:-$1}
T_TMP=$(mktemp -d /tmp/torii-it.XXXXXX)
T_FAILS=0
T_PASSES=0
T_PID=""
T_TOKEN="it-token-0123456789abcdef"
# 1 when the daemon is built with a sanitizer: memory figures are then not meaningful.
T_SANITIZED=0
# (ldd's output is read whole first: `ldd | grep -q` under pipefail fails whenever grep exits
# before ldd has written everything, which made a sanitized build look plain now and then.)
T_LDD=$(ldd "$TORII_BIN" 2>/dev/null || true)
case "$T_LDD" in
  *libasan* | *libtsan* | *libubsan*) T_SANITIZED=1 ;;
esac

# t_ports N: N free TCP ports on 127.0.0.1 for the test's listeners, printed on one line.
# Chosen below the kernel's ephemeral range (ip_local_port_range): a port the kernel picked
# (bind to 0) is one it may hand out again at once as the source port of some client's
# connection, and the daemon's bind would then fail now and then. Random in [the range's
# start - 12000, its start), checked free with a bind, and reserved in T_PORTS_DIR (a file
# per port holding this test's pid, created with O_EXCL): tests running at the same time
# (ctest -j, two checkouts) never pick the same port in the time between the choice and the
# listener's bind. A file whose pid is gone is taken over; t_cleanup releases this test's.
T_PORTS_DIR=${T_PORTS_DIR:-/tmp/torii-test-ports}
t_ports() {
  python3 - "$1" "$$" "$T_PORTS_DIR" <<'PY'
import os, random, socket, sys
want, owner, d = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.makedirs(d, exist_ok=True)
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    lo = 32768
lo = max(lo, 13024)

def holder_alive(path):
    try:
        with open(path) as f:
            os.kill(int(f.read().strip() or "0"), 0)
        return True
    except (OSError, ValueError):
        return False

def reserve(port):
    path = os.path.join(d, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if holder_alive(path):
                return False
            try:
                os.unlink(path)  # its test is gone
            except OSError:
                pass
            continue
        os.write(fd, owner.encode())
        os.close(fd)
        return True
    return False

got = []
for _ in range(600):
    if len(got) == want:
        break
    port = random.randrange(lo - 12000, lo)
    if port in got or not reserve(port):
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        got.append(port)
    except OSError:
        os.unlink(os.path.join(d, str(port)))
    finally:
        s.close()
if len(got) < want:
    raise SystemExit("t_ports: no %d free ports found in 600 tries" % want)
print(*got)
PY
}

# Release the ports this test reserved (t_ports).
t_ports_release() {
  local f
  for f in "$T_PORTS_DIR"/*; do
    [ -f "$f" ] && [ "$(cat "$f" 2>/dev/null)" = "$$" ] && rm -f "$f"
  done
  return 0
}

# T_KEEP_DIR (optional, for diagnosing a failure): where t_cleanup copies the daemon's log
# (<test>.<pid>.log) before the temporary directory goes.
t_cleanup() {
  if [ -n "$T_PID" ] && kill -0 "$T_PID" 2>/dev/null; then
    kill -9 "$T_PID" 2>/dev/null
  fi
  if [ -n "${T_KEEP_DIR:-}" ] && [ -f "$T_TMP/torii.log" ]; then
    cp "$T_TMP/torii.log" "$T_KEEP_DIR/$(basename "$0" .sh).$$.log" 2>/dev/null || true
  fi
  rm -rf "$T_TMP"
  t_ports_release
}
trap t_cleanup EXIT

# Three free loopback ports (see t_ports).
read -r T_HTTPS T_HTTP T_ADMIN < <(t_ports 3)

ok()   { T_PASSES=$((T_PASSES + 1)); echo "ok   - $*"; }
fail() { T_FAILS=$((T_FAILS + 1)); echo "FAIL - $*"; }
check() { # check "description" command...
  local d=$1; shift
  if "$@"; then ok "$d"; else fail "$d"; fi
}
check_eq() { # check_eq "description" expected actual
  if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}

# Write the config; extra JSON members may be passed as $1 (e.g. '"tls": {"strict_sni": true},').
# T_CONF_FILE and T_DATA_DIR, when set, change where it goes and the data dir it names.
t_config() {
  cat > "${T_CONF_FILE:-$T_TMP/torii.json}" <<JSON
{
  ${1:-}
  "data_dir": "${T_DATA_DIR:-$T_TMP/data}",
  "workers": 2,
  "log_level": "info",
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN", "token": "$T_TOKEN"}
}
JSON
}

# t_wait_for CMD...: run CMD every 0.1 s until it succeeds; fails after 600 tries (60 s, a
# bound no healthy run comes near, even sanitized on a loaded machine).
t_wait_for() {
  local _
  for _ in $(seq 1 600); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# pem_of FILE KEY OUT: write the string field KEY of the JSON object in FILE to OUT.
pem_of() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[3],"w").write(d[sys.argv[2]])' "$1" "$2" "$3"
}

# Start the daemon and wait until the admin API answers.
t_start() {
  "$TORII_BIN" -c "$T_TMP/torii.json" >>"$T_TMP/torii.log" 2>&1 &
  T_PID=$!
  for _ in $(seq 1 600); do
    # With the token: probes must not count as failed authentications (rate limit).
    if curl -s -o /dev/null -H "Authorization: Bearer $T_TOKEN" "http://127.0.0.1:$T_ADMIN/metrics" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$T_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "daemon did not start; log:"; cat "$T_TMP/torii.log"
  return 1
}

# Graceful stop; returns the daemon's exit status (sanitizer reports make it non-zero).
# t_stop_during CLIENT_PID FLAG: a graceful stop while a client runs: the client is told by
# FLAG (created once SIGTERM is sent); waits for both. Sets T_STOP_ST (the daemon's exit
# status) and T_STOP_CLIENT (the client's).
t_stop_during() {
  kill -TERM "$T_PID"
  touch "$2"
  wait "$T_PID"
  T_STOP_ST=$?
  T_PID=""
  wait "$1"
  T_STOP_CLIENT=$?
}

t_stop() {
  local st=0
  kill -TERM "$T_PID" 2>/dev/null
  wait "$T_PID" || st=$?
  T_PID=""
  return $st
}

t_kill9() {
  kill -9 "$T_PID" 2>/dev/null
  wait "$T_PID" 2>/dev/null
  T_PID=""
}

# api METHOD PATH [curl args...] -> prints body, sets T_STATUS
api() {
  local m=$1 p=$2; shift 2
  local out
  out=$(curl -s -X "$m" -H "Authorization: Bearer $T_TOKEN" -w '\n%{http_code}' \
        "http://127.0.0.1:$T_ADMIN$p" "$@")
  T_STATUS=${out##*$'\n'}
  T_BODY=${out%$'\n'*}
}

# The subject and serial of the certificate served for SNI name $1 (empty when none).
served() {
  local args=(-connect "127.0.0.1:$T_HTTPS")
  if [ -n "$1" ]; then args+=(-servername "$1"); else args+=(-noservername); fi
  echo | timeout 10 openssl s_client "${args[@]}" ${2:+$2} 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}

# Make a certificate: mkcert NAME KEYTYPE(ec|rsa) DAYS SANS [ISSUER_PREFIX]
# -> $T_TMP/NAME.crt, NAME.key. A leaf (CA:FALSE, EKU serverAuth): `openssl req -x509` alone
# makes a CA:TRUE certificate, which torii never serves.
mkcert() {
  local name=$1 kt=$2 days=$3 sans=$4 issuer=${5:-}
  local key="$T_TMP/$name.key" crt="$T_TMP/$name.crt"
  if [ "$kt" = ec ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  else
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$key" 2>/dev/null
  fi
  if [ -z "$issuer" ]; then
    openssl req -x509 -new -key "$key" -out "$crt" -days "$days" -subj "/CN=${sans%%,*}" \
      -addext "subjectAltName=$(echo "$sans" | sed 's/\([^,]*\)/DNS:\1/g')" \
      -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth 2>/dev/null
  else
    openssl req -new -key "$key" -subj "/CN=${sans%%,*}" -out "$T_TMP/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\n' "$(echo "$sans" | sed 's/\([^,]*\)/DNS:\1/g')" > "$T_TMP/$name.ext"
    openssl x509 -req -in "$T_TMP/$name.csr" -CA "$T_TMP/$issuer.crt" -CAkey "$T_TMP/$issuer.key" \
      -CAcreateserial -days "$days" -extfile "$T_TMP/$name.ext" -out "$crt" 2>/dev/null
  fi
}

# issue PATH BODY NAME: POST to the PKI API, keep the reply in $T_TMP/NAME.json, leaf in
# NAME.crt (whole chain in NAME.chain), the key returned once in NAME.key
issue() {
  api POST "$1" -H 'Content-Type: application/json' -d "$2"
  printf '%s' "$T_BODY" > "$T_TMP/$3.json"
  if [ "$T_STATUS" = 200 ]; then
    pem_of "$T_TMP/$3.json" chain "$T_TMP/$3.chain"
    openssl x509 -in "$T_TMP/$3.chain" -out "$T_TMP/$3.crt"
    pem_of "$T_TMP/$3.json" privateKey "$T_TMP/$3.key"
  fi
}

serial_of() { openssl x509 -in "$T_TMP/$1.crt" -noout -serial | sed 's/serial=//'; }

# JSON entity for a cert made by mkcert: entity_json ID NAME [extra members]
entity_json() {
  python3 - "$T_TMP/$2.crt" "$T_TMP/$2.key" "$1" "${3:-}" <<'PY'
import json, sys
crt = open(sys.argv[1]).read(); key = open(sys.argv[2]).read()
e = {"id": sys.argv[3], "name": sys.argv[3], "chain": crt, "privateKey": key}
if sys.argv[4]:
    e.update(json.loads(sys.argv[4]))
print(json.dumps(e))
PY
}

jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

t_done() {
  echo "$T_PASSES passed, $T_FAILS failed"
  if [ "$T_FAILS" -ne 0 ]; then
    echo "--- daemon log (tail)"; tail -n 40 "$T_TMP/torii.log"
    exit 1
  fi
  exit 0
}

# --- helpers for lifecycle tests (alerts receiver, fake clock) ---

# A free loopback port, reserved for this test (see t_ports).
t_free_port() { t_ports 1; }

# HTTP receiver on 127.0.0.1:$1 appending each POST body as one line to $2 (answers 200).
T_RECV_PID=""
t_receiver_start() {
  cat > "$T_TMP/recv.py" <<'PY'
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode()
        with open(out, "a") as f:
            f.write(body.replace("\n", " ") + "\n")
        with open(out + ".headers", "a") as f:
            f.write(self.headers.get("X-Test", "") + "\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  python3 "$T_TMP/recv.py" "$1" "$2" &
  T_RECV_PID=$!
  t_wait_for curl -s -o /dev/null "http://127.0.0.1:$1/probe"
}
t_receiver_stop() {
  if [ -n "$T_RECV_PID" ]; then kill "$T_RECV_PID" 2>/dev/null; wait "$T_RECV_PID" 2>/dev/null; fi
  T_RECV_PID=""
}

# Shift the daemon's clock (needs "debug": {"clock_hook": true}); $1 = offset in ms.
t_clock() {
  api POST /api/_debug/clock -H 'Content-Type: application/json' -d "{\"offset_ms\": $1}"
}

# --- proxy helpers (appended) ---

# Start torii-backend (built next to torii) on port $1, request log in $T_TMP/backend-$1.log.
T_BACKEND_PIDS=""
t_backend_start() {
  local bin
  bin="$(dirname "$TORII_BIN")/tests/torii-backend"
  [ -x "$bin" ] || bin="$(dirname "$TORII_BIN")/torii-backend"
  "$bin" "$1" "$T_TMP/backend-$1.log" >>"$T_TMP/backend.out" 2>&1 &
  T_BACKEND_PIDS="$T_BACKEND_PIDS $!"
  t_wait_for curl -s -o /dev/null "http://127.0.0.1:$1/stats"
}

t_backend_stop_all() {
  for p in $T_BACKEND_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  T_BACKEND_PIDS=""
}

# Backend counters: t_backend_stat PORT connections|requests
t_backend_stat() {
  curl -s "http://127.0.0.1:$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# --- helpers for mTLS tests (test_mtls.sh) ---

# mkca NAME CN [ISSUER] -> $T_TMP/NAME.crt, NAME.key: a CA (self-signed, or signed by ISSUER).
mkca() {
  local name=$1 cn=$2 issuer=${3:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/$name.key" 2>/dev/null
  printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' \
    > "$T_TMP/$name.ext"
  if [ -z "$issuer" ]; then
    openssl req -x509 -new -key "$T_TMP/$name.key" -out "$T_TMP/$name.crt" -days 30 \
      -subj "/CN=$cn" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  else
    openssl req -new -key "$T_TMP/$name.key" -subj "/CN=$cn" -out "$T_TMP/$name.csr" 2>/dev/null
    openssl x509 -req -in "$T_TMP/$name.csr" -CA "$T_TMP/$issuer.crt" -CAkey "$T_TMP/$issuer.key" \
      -CAcreateserial -days 30 -extfile "$T_TMP/$name.ext" -out "$T_TMP/$name.crt" 2>/dev/null
  fi
}

# mkleaf NAME CN ISSUER EXT [DAYS] -> a leaf signed by ISSUER with the extension lines EXT
# (printf %b: "\n" separates lines), e.g. 'extendedKeyUsage=clientAuth'. DAYS may be negative.
mkleaf() {
  local name=$1 cn=$2 issuer=$3 ext=$4 days=${5:-30}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/$name.key" 2>/dev/null
  openssl req -new -key "$T_TMP/$name.key" -subj "/CN=$cn" -out "$T_TMP/$name.csr" 2>/dev/null
  printf '%b\n' "$ext" > "$T_TMP/$name.ext"
  openssl x509 -req -in "$T_TMP/$name.csr" -CA "$T_TMP/$issuer.crt" -CAkey "$T_TMP/$issuer.key" \
    -CAcreateserial -days "$days" -extfile "$T_TMP/$name.ext" -out "$T_TMP/$name.crt" 2>/dev/null
}

# RFC 9440 byte sequence of a certificate made above: ":<base64 DER>:".
sf_cert() { printf ':%s:' "$(openssl x509 -in "$T_TMP/$1.crt" -outform DER | base64 -w0)"; }

# Background helpers; their pids go to T_BG_PIDS, stopped by t_bg_stop.
T_BG_PIDS=()
# Stop (TERM) and reap the processes given.
t_pids_stop() {
  local p
  for p in "$@"; do
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
}
t_bg_stop() {
  t_pids_stop "${T_BG_PIDS[@]}"
  T_BG_PIDS=()
}

# Wait until something accepts TCP connections on 127.0.0.1:$1.
t_wait_port() {
  t_wait_for python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
    "$1" 2>/dev/null
}

# Plain HTTP backend on 127.0.0.1:$1 answering every GET with a JSON object of the request
# headers (names lower-cased).
t_echo_start() {
  cat > "$T_TMP/echo.py" <<'PY'
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  python3 "$T_TMP/echo.py" "$1" &
  T_BG_PIDS+=($!)
  t_wait_port "$1"
}

# t_jose_available: 0 when node and the npm package jose (installed next to the tests on first
# use) can run; T_IT_DIR is where it lives (the createRequire base of a test's .mjs).
T_IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
t_jose_available() {
  if [ ! -d "$T_IT_DIR/node_modules/jose" ] && command -v npm >/dev/null; then
    npm install --silent --no-save --no-audit --no-fund --prefix "$T_IT_DIR" jose@5 >/dev/null 2>&1
  fi
  [ -d "$T_IT_DIR/node_modules/jose" ] && command -v node >/dev/null
}
