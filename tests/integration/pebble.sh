# pebble.sh - Pebble (a test ACME CA) and pebble-challtestsrv (its DNS) on loopback for the
# ACME integration tests. Source after lib.sh and after t_config's ports are known.
# pebble_start [EXTRA_PEBBLE_JSON_MEMBERS]: (P_EAB_REQUIRED=true: accounts need external
# account binding, keys in the extra members) writes a config with a test-made HTTPS
# certificate, points Pebble's http-01/tls-alpn-01 validation at torii's http/https
# listeners, and waits for both servers. Sets P_DIR_URL (directory), P_MGMT (management
# port, /roots/0), P_CHALL (challtestsrv management port), P_CA (PEM file to trust Pebble's
# HTTPS). The default 5 % badNonce rejection stays on; validity is short.
P_PIDS=()
P_PORT=$(t_free_port)
P_MGMT=$(t_free_port)
P_DNS=$(t_free_port)
P_CHALL=$(t_free_port)
P_DIR_URL="https://127.0.0.1:$P_PORT/dir"
P_CA="$T_TMP/pebble-ca.crt"

pebble_stop() {
  t_pids_stop "${P_PIDS[@]}"
  P_PIDS=()
}

# Kill Pebble before lib.sh's cleanup removes its files.
pebble_cleanup() {
  pebble_stop
  t_cleanup
}
trap pebble_cleanup EXIT

pebble_have() {
  command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1
}

# Pebble's own HTTPS identity: a CA and a leaf for 127.0.0.1 made here.
pebble_certs() {
  mkca pebble-ca "pebble test HTTPS CA"
  mkleaf pebble-https 127.0.0.1 pebble-ca \
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'
}

pebble_config() {
  cat > "$T_TMP/pebble.json" <<JSON
{
  "pebble": {
    ${1:-}
    "listenAddress": "127.0.0.1:$P_PORT",
    "managementListenAddress": "127.0.0.1:$P_MGMT",
    "certificate": "$T_TMP/pebble-https.crt",
    "privateKey": "$T_TMP/pebble-https.key",
    "httpPort": $T_HTTP,
    "tlsPort": $T_HTTPS,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": ${P_EAB_REQUIRED:-false},
    "certificateValidityPeriod": 600
  }
}
JSON
}

# The start of every ACME test: skip (77) without the Debian package pebble, else start
# Pebble (pebble_begin [EXTRA_PEBBLE_JSON_MEMBERS]), fetch its root into
# $T_TMP/pebble-root.pem and write the DNS-01 hook.
pebble_begin() {
  if ! pebble_have; then
    echo "SKIP: pebble and pebble-challtestsrv are not installed (Debian package pebble)"
    exit 77
  fi
  pebble_start "${1:-}" || exit 1
  pebble_root "$T_TMP/pebble-root.pem"
  pebble_dns_hook
}

pebble_start() {
  pebble_certs
  pebble_config "${1:-}"
  pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$P_DNS" \
    -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$P_CHALL" \
    >>"$T_TMP/challtestsrv.log" 2>&1 &
  P_PIDS+=($!)
  t_wait_port "$P_CHALL" || { echo "challtestsrv did not start"; cat "$T_TMP/challtestsrv.log"; return 1; }
  PEBBLE_VA_NOSLEEP=1 pebble -config "$T_TMP/pebble.json" -dnsserver "127.0.0.1:$P_DNS" \
    >>"$T_TMP/pebble.log" 2>&1 &
  P_PIDS+=($!)
  local _
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null --cacert "$P_CA" "$P_DIR_URL" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "pebble did not start; log:"; cat "$T_TMP/pebble.log"
  return 1
}

# Pebble's current root (PEM) into $1.
pebble_root() {
  curl -s --cacert "$P_CA" -o "$1" "https://127.0.0.1:$P_MGMT/roots/0"
}

# The DNS-01 hook the tests configure (acme.dns_hook): sets or clears the TXT record through
# challtestsrv's management API. Written to $T_TMP/dns-hook.sh.
pebble_dns_hook() {
  cat > "$T_TMP/dns-hook.sh" <<HOOK
#!/bin/sh
# \$1 = set|clear, \$2 = record name (_acme-challenge.<domain>), \$3 = TXT value
set -e
case "\$1" in
  set) curl -sf -d "{\"host\":\"\$2.\",\"value\":\"\$3\"}" "http://127.0.0.1:$P_CHALL/set-txt" ;;
  clear) curl -sf -d "{\"host\":\"\$2.\"}" "http://127.0.0.1:$P_CHALL/clear-txt" ;;
  *) exit 2 ;;
esac
HOOK
  chmod +x "$T_TMP/dns-hook.sh"
}

# --- helpers shared by the ACME tests -------------------------------------------------------

# Number of stored certificates.
acme_count_certs() {
  api GET /api/certificates
  python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$T_BODY"
}

# acme_leaf_of JSON OUT: the chain's leaf of an entity reply into OUT, the rest into OUT.inter.
acme_leaf_of() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys
d = json.loads(sys.argv[1])
pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", d["chain"], re.S)
open(sys.argv[2], "w").write(pems[0])
open(sys.argv[2] + ".inter", "w").write("".join(pems[1:]))
PY
}

# acme_check_chain WHAT NAME JSON: the entity's chain into $T_TMP/NAME.crt (+ .inter) and a
# check that it verifies against Pebble's root ($T_TMP/pebble-root.pem, pebble_root).
acme_check_chain() {
  acme_leaf_of "$3" "$T_TMP/$2.crt"
  check "$1: chain verifies against Pebble's root (/roots/0)" \
    openssl verify -CAfile "$T_TMP/pebble-root.pem" -untrusted "$T_TMP/$2.crt.inter" "$T_TMP/$2.crt"
}

# acme_job_poll JOB STATE...: poll GET /api/pki/acme/jobs/JOB (bounded: 120 s) while its status
# is one of STATE...; prints the last status (meant for $(...): fetch the job again for its
# body).
acme_job_poll() {
  local job=$1 st="" _
  shift
  for _ in $(seq 1 1200); do
    api GET "/api/pki/acme/jobs/$job"
    st=$(printf '%s' "$T_BODY" | jget "['status']")
    case " $* " in *" $st "*) ;; *) break ;; esac
    sleep 0.1
  done
  printf '%s' "$st"
}

# ask_server_start: the on-demand ask endpoint on ASK_PORT (set here): 200 unless the name
# starts with "no-"; every question logged in $T_TMP/ask.log. "twice.*" waits (bounded:
# 25 s) for $T_TMP/ask.log.release.
ask_server_start() {
  ASK_PORT=$(t_free_port)
  python3 - "$ASK_PORT" "$T_TMP/ask.log" >"$T_TMP/ask-server.log" 2>&1 <<'PY' &
import http.server, os, sys, time, urllib.parse
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        name = q.get("domain", [""])[0]
        with open(log, "a") as f:
            f.write(name + "\n")
        # "twice.*" waits for the test's release file: the order stays pending while the
        # second handshake arrives, so it has to join the first (bounded: 25 s).
        if name.startswith("twice."):
            for _ in range(250):
                if os.path.exists(log + ".release"):
                    break
                time.sleep(0.1)
        self.send_response(403 if name.startswith("no-") or not name else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  P_PIDS+=($!)
  touch "$T_TMP/ask.log"
  t_wait_port "$ASK_PORT"
}
