#!/usr/bin/env bash
# Certificate lifecycle end to end, driven by the fake clock (debug.clock_hook):
# renewal of a CA-issued leaf and of an intermediate CA through /_renew, the
# [UNTIL EXPIRATION] copy, SNI switching to the renewed certificate, expiry flags, alerts
# delivered once each to a webhook (never with a private key), retried while the receiver is
# down, /metrics checked by a strict Prometheus text parser, and a webhook over HTTPS that
# presents a client certificate from the store to a receiver requiring one.
here=$(dirname "$0")
source "$here/lib.sh"
trap 't_receiver_stop; t_cleanup' EXIT

DAY=86400000
RECV_PORT=$(t_free_port)
ALERTS="$T_TMP/alerts.jsonl"
: > "$ALERTS"

# --- a CA hierarchy made with the openssl CLI (root -> intermediate -> leaves)
cat > "$T_TMP/ca.ext" <<'X'
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
X
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$T_TMP/root.key" 2>/dev/null
openssl req -x509 -new -key "$T_TMP/root.key" -days 3650 -subj "/O=Torii Test/CN=Test Root" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$T_TMP/root.crt" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/inter.key" 2>/dev/null
openssl req -new -key "$T_TMP/inter.key" -subj "/O=Torii Test/CN=Test Intermediate" \
  -out "$T_TMP/inter.csr" 2>/dev/null
openssl x509 -req -in "$T_TMP/inter.csr" -CA "$T_TMP/root.crt" -CAkey "$T_TMP/root.key" \
  -CAcreateserial -days 100 -extfile "$T_TMP/ca.ext" -out "$T_TMP/inter.crt" 2>/dev/null
cat > "$T_TMP/leaf.ext" <<'X'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:l.example.test,DNS:www.l.example.test
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
X
leaf() { # leaf NAME DAYS
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T_TMP/$1.key" 2>/dev/null
  openssl req -new -key "$T_TMP/$1.key" -subj "/O=Torii Test/CN=l.example.test" \
    -out "$T_TMP/$1.csr" 2>/dev/null
  openssl x509 -req -in "$T_TMP/$1.csr" -CA "$T_TMP/inter.crt" -CAkey "$T_TMP/inter.key" \
    -CAcreateserial -days "$2" -extfile "$T_TMP/leaf.ext" -out "$T_TMP/$1.crt" 2>/dev/null
}
leaf leaf 10
leaf old 60
# "almost": self-signed, autoRenew off, 10 days: gets the almost-expired then expired alerts.
mkcert almost ec 10 almost.example.test
cat "$T_TMP/inter.crt" "$T_TMP/root.crt" > "$T_TMP/inter.chain"
cat "$T_TMP/leaf.crt" "$T_TMP/inter.crt" "$T_TMP/root.crt" > "$T_TMP/leaf.chain"

post_entity() { # post_entity ID CHAINFILE KEYFILE EXTRA_JSON
  python3 - "$@" > "$T_TMP/post.json" <<'PY'
import json, sys
e = {"id": sys.argv[1], "name": sys.argv[1], "chain": open(sys.argv[2]).read(),
     "privateKey": open(sys.argv[3]).read()}
e.update(json.loads(sys.argv[4]))
print(json.dumps(e))
PY
  api POST /api/certificates -H 'Content-Type: application/json' -d @"$T_TMP/post.json"
}

t_config "\"debug\": {\"clock_hook\": true},
  \"renewal\": {\"interval_s\": 0}, \"alerts\": {\"almost_expired_days\": 0},
  \"exporters\": [
    {\"type\": \"webhook\", \"name\": \"hook\", \"url\": \"http://127.0.0.1:$RECV_PORT/alerts\",
     \"headers\": {\"X-Test\": \"torii-it\"}, \"batch_ms\": 50, \"retry_min_ms\": 100,
     \"retry_max_ms\": 400, \"max_retries\": 0, \"timeout_ms\": 2000},
    {\"type\": \"file\", \"path\": \"$T_TMP/alerts-file.jsonl\", \"alerts\": [\"CertRenewalAlert\"]},
    {\"type\": \"log\", \"alerts\": [\"CertExpiredAlert\", \"CertRenewalFailedAlert\"]}
  ],"

# --- strict configuration checks
cp "$T_TMP/torii.json" "$T_TMP/good.json"
check "--check-config accepts the lifecycle keys" "$TORII_BIN" --check-config -c "$T_TMP/good.json"
python3 - "$T_TMP/good.json" "$T_TMP/bad1.json" "$T_TMP/bad2.json" "$T_TMP/bad3.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
b = json.loads(json.dumps(c)); b["exporters"][0]["urll"] = "x"; json.dump(b, open(sys.argv[2], "w"))
b = json.loads(json.dumps(c)); b["exporters"][1]["alerts"] = ["NoSuchAlert"]; json.dump(b, open(sys.argv[3], "w"))
b = json.loads(json.dumps(c)); b["exporters"][0]["url"] = "ftp://x/"; json.dump(b, open(sys.argv[4], "w"))
PY
for b in bad1 bad2 bad3; do
  if "$TORII_BIN" --check-config -c "$T_TMP/$b.json" >/dev/null 2>&1; then
    fail "--check-config rejects $b"
  else
    ok "--check-config rejects $b"
  fi
done

t_receiver_start "$RECV_PORT" "$ALERTS" || { fail "receiver did not start"; t_done; }
t_start || exit 1

post_entity root "$T_TMP/root.crt" "$T_TMP/root.key" '{}'
check_eq "import root CA -> 201" 201 "$T_STATUS"
post_entity inter "$T_TMP/inter.chain" "$T_TMP/inter.key" '{"caRef": "root", "autoRenew": true}'
check_eq "import intermediate CA -> 201" 201 "$T_STATUS"
post_entity leaf "$T_TMP/leaf.chain" "$T_TMP/leaf.key" '{"caRef": "inter", "autoRenew": true}'
check_eq "import leaf -> 201" 201 "$T_STATUS"
leaf_from=$(echo "$T_BODY" | jget '["from"]')
leaf_to=$(echo "$T_BODY" | jget '["to"]')
post_entity almost "$T_TMP/almost.crt" "$T_TMP/almost.key" '{}'
check_eq "import a self-signed certificate -> 201" 201 "$T_STATUS"
old_serial=$(serial_of leaf)
check_eq "SNI serves the imported leaf" "$old_serial" "$(served l.example.test)"

# --- nothing is due yet
api POST /api/certificates/_renew
check_eq "_renew with nothing due -> 200" 200 "$T_STATUS"
check_eq "nothing renewed" 0 "$(echo "$T_BODY" | jget '["renewed"].__len__()')"

# --- 9 days later the leaf is in its last 20%
t_clock $((9 * DAY))
check_eq "debug clock hook -> 200" 200 "$T_STATUS"
now_s=$(( $(date +%s) + 9 * 86400 ))
api POST /api/certificates/_renew
check_eq "_renew -> 200" 200 "$T_STATUS"
check_eq "the due leaf is renewed" "['leaf']" "$(echo "$T_BODY" | jget '["renewed"]')"
check_eq "almost is flagged almost expired" "almostExpired" \
  "$(echo "$T_BODY" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([f["state"] for f in d["flagged"] if f["id"]=="almost"][0])')"

api GET "/api/certificates/leaf?export=true"
echo "$T_BODY" > "$T_TMP/leaf-new.json"
python3 - "$T_TMP/leaf-new.json" "$T_TMP" <<'PY'
import json, sys, re
e = json.load(open(sys.argv[1]))
pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", e["chain"], re.S)
open(sys.argv[2] + "/leaf-new.crt", "w").write(pems[0] + "\n")
open(sys.argv[2] + "/leaf-new.chain", "w").write("\n".join(pems[1:]) + "\n")
open(sys.argv[2] + "/leaf-new.key", "w").write(e["privateKey"])
PY
new_serial=$(serial_of leaf-new)
check_eq "renewed entity keeps its id" leaf "$(jget '["id"]' < "$T_TMP/leaf-new.json")"
check "renewed leaf has a new serial" test "$new_serial" != "$old_serial"
check "renewed leaf has a new key" test "$(openssl pkey -in "$T_TMP/leaf.key" -pubout 2>/dev/null)" \
  != "$(openssl pkey -in "$T_TMP/leaf-new.key" -pubout 2>/dev/null)"
check_eq "new key matches the new certificate" \
  "$(openssl x509 -in "$T_TMP/leaf-new.crt" -noout -pubkey)" \
  "$(openssl pkey -in "$T_TMP/leaf-new.key" -pubout)"
check_eq "same key type and size" "$(openssl x509 -in "$T_TMP/leaf.crt" -noout -text | grep 'Public-Key')" \
  "$(openssl x509 -in "$T_TMP/leaf-new.crt" -noout -text | grep 'Public-Key')"
check_eq "same subject" "$(openssl x509 -in "$T_TMP/leaf.crt" -noout -subject)" \
  "$(openssl x509 -in "$T_TMP/leaf-new.crt" -noout -subject)"
for ext in subjectAltName extendedKeyUsage keyUsage basicConstraints; do
  check_eq "same $ext" "$(openssl x509 -in "$T_TMP/leaf.crt" -noout -ext $ext)" \
    "$(openssl x509 -in "$T_TMP/leaf-new.crt" -noout -ext $ext)"
done
new_from=$(jget '["from"]' < "$T_TMP/leaf-new.json")
new_to=$(jget '["to"]' < "$T_TMP/leaf-new.json")
check_eq "same validity length" $((leaf_to - leaf_from)) $((new_to - new_from))
check_eq "caRef kept" inter "$(jget '["caRef"]' < "$T_TMP/leaf-new.json")"
check "renewed chain verifies (openssl verify)" \
  openssl verify -attime "$now_s" -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/leaf-new.chain" \
  "$T_TMP/leaf-new.crt"
check_eq "SNI serves the renewed leaf at once" "$new_serial" "$(served l.example.test)"

api GET /api/certificates
echo "$T_BODY" > "$T_TMP/list.json"
copy_id=$(python3 -c '
import json,sys
l=[e for e in json.load(open(sys.argv[1])) if e["name"]=="[UNTIL EXPIRATION] leaf"]
print(l[0]["id"] if len(l)==1 else "")' "$T_TMP/list.json")
check "one [UNTIL EXPIRATION] copy exists" test -n "$copy_id"
check_eq "copy id is 64 characters" 64 "${#copy_id}"
api GET "/api/certificates/$copy_id"
echo "$T_BODY" > "$T_TMP/copy.json"
python3 -c '
import json,sys,re
e=json.load(open(sys.argv[1]))
open(sys.argv[2],"w").write(re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", e["chain"], re.S)[0]+"\n")' \
  "$T_TMP/copy.json" "$T_TMP/copy.crt"
check_eq "the copy holds the old serial" "$old_serial" "$(serial_of copy)"
check_eq "copy metadata.nextCertificate" leaf "$(jget '["metadata"]["nextCertificate"]' < "$T_TMP/copy.json")"
check_eq "copy metadata.untilExpiration" true "$(jget '["metadata"]["untilExpiration"]' < "$T_TMP/copy.json")"
check_eq "copy autoRenew off" False "$(jget '["autoRenew"]' < "$T_TMP/copy.json")"

# --- a second run changes nothing and raises nothing new
api POST /api/certificates/_renew
check_eq "second _renew renews nothing" "[]" "$(echo "$T_BODY" | jget '["renewed"]')"
check_eq "second _renew flags nothing" "[]" "$(echo "$T_BODY" | jget '["flagged"]')"

# --- the intermediate CA renewed on demand still validates leaves it issued before
api POST /api/certificates/inter/_renew
check_eq "POST /:id/_renew -> 200" 200 "$T_STATUS"
echo "$T_BODY" > "$T_TMP/inter-new.json"
python3 -c '
import json,sys,re
e=json.load(open(sys.argv[1]))
open(sys.argv[2],"w").write(re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", e["chain"], re.S)[0]+"\n")' \
  "$T_TMP/inter-new.json" "$T_TMP/inter-new.crt"
check "renewed intermediate has a new serial" test "$(serial_of inter-new)" != "$(serial_of inter)"
check_eq "renewed intermediate keeps its subject" "$(openssl x509 -in "$T_TMP/inter.crt" -noout -subject)" \
  "$(openssl x509 -in "$T_TMP/inter-new.crt" -noout -subject)"
check_eq "renewed intermediate keeps its key" "$(openssl x509 -in "$T_TMP/inter.crt" -noout -pubkey)" \
  "$(openssl x509 -in "$T_TMP/inter-new.crt" -noout -pubkey)"
check "renewed intermediate verifies against the root" \
  openssl verify -attime "$now_s" -CAfile "$T_TMP/root.crt" "$T_TMP/inter-new.crt"
check "an older leaf verifies through the renewed intermediate" \
  openssl verify -attime "$now_s" -CAfile "$T_TMP/root.crt" -untrusted "$T_TMP/inter-new.crt" \
  "$T_TMP/old.crt"
api POST /api/certificates/nope/_renew
check_eq "POST /unknown/_renew -> 404" 404 "$T_STATUS"
api POST "/api/certificates/$copy_id/_renew"
check_eq "an [UNTIL EXPIRATION] copy is never renewed -> 400" 400 "$T_STATUS"
api POST /api/certificates/_renew -H 'Content-Type: application/json' -d '["leaf"]'
check_eq "_renew with ids -> 200" 200 "$T_STATUS"
check_eq "the listed id is renewed" "['leaf']" "$(echo "$T_BODY" | jget '["renewed"]')"
api GET /api/certificates/leaf
new_serial=$(echo "$T_BODY" | python3 -c '
import json,sys,re,subprocess
e=json.load(sys.stdin)
pem=re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", e["chain"], re.S)[0]+"\n"
print(subprocess.run(["openssl","x509","-noout","-serial"],input=pem.encode(),capture_output=True).stdout.decode().strip().split("=")[1])')
check_eq "SNI serves the latest renewal" "$new_serial" "$(served l.example.test)"
api POST /api/certificates/_renew -H 'Content-Type: application/json' -d '{"x": 1}'
check_eq "_renew with a non-array body -> 400" 400 "$T_STATUS"

# --- 11 days later: "almost" has expired; the leaf's first copy expired and is deleted
t_clock $((11 * DAY))
api POST /api/certificates/_renew
check_eq "expired certificate flagged" "expired" \
  "$(echo "$T_BODY" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([f["state"] for f in d["flagged"] if f["id"]=="almost"][0])')"
check "expired [UNTIL EXPIRATION] copy deleted" \
  python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in json.loads(sys.argv[2])["deleted"] else 1)' "$copy_id" "$T_BODY"
api GET /api/certificates/almost
check_eq "expired entity has metadata.expired" true "$(echo "$T_BODY" | jget '["metadata"]["expired"]')"
check_eq "expired entity is not valid" False "$(echo "$T_BODY" | jget '["valid"]')"
api POST /api/certificates/_renew
check_eq "no second expiry flag" "[]" "$(echo "$T_BODY" | jget '["flagged"]')"

# --- every alert arrives once, without private keys (waited for by polling, bounded: the
# webhook, file and log exporters deliver asynchronously)
alert_check() {
  python3 - "$ALERTS" > "$T_TMP/alert-check.txt" <<'PY'
import json, sys, collections
seen = collections.Counter()
bad = []
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    if "privateKey" in line or "PRIVATE KEY" in line or '"password"' in line:
        bad.append("secret in payload")
    for a in json.loads(line):
        for k in ("@id", "@timestamp", "@type", "alert", "certificate"):
            if k not in a:
                bad.append("missing " + k)
        seen[(a["alert"], a["certificate"]["id"] if a["certificate"] else None)] += 1
print("BAD" if bad else "CLEAN")
for (alert, cid), n in sorted(seen.items(), key=str):
    print(alert, cid, n)
PY
}
want() { grep -qx "$1 $2 1" "$T_TMP/alert-check.txt"; }
alerts_in() {
  alert_check && want CertCreatedAlert leaf && want CertRenewalAlert inter \
    && want CertAlmostExpiredAlert almost && want CertExpiredAlert almost \
    && [ -s "$T_TMP/alerts-file.jsonl" ] \
    && grep -q 'alert: CertExpiredAlert (exporter=log-2 id=almost' "$T_TMP/torii.log"
}
for _ in $(seq 1 300); do alerts_in && break; sleep 0.1; done
check_eq "no private key nor password in any alert" CLEAN "$(head -1 "$T_TMP/alert-check.txt")"
check "CertCreatedAlert once for leaf" want CertCreatedAlert leaf
check "CertRenewalAlert for inter once" want CertRenewalAlert inter
check "CertAlmostExpiredAlert once for almost" want CertAlmostExpiredAlert almost
check "CertExpiredAlert once for almost" want CertExpiredAlert almost
check "webhook custom header sent" grep -qx torii-it "$ALERTS.headers"
check_eq "file exporter got only CertRenewalAlert lines" "CertRenewalAlert" \
  "$(python3 -c 'import json,sys; print(",".join(sorted({json.loads(l)["alert"] for l in open(sys.argv[1])})))' "$T_TMP/alerts-file.jsonl")"
check "log exporter wrote the expired alert" grep -q 'alert: CertExpiredAlert (exporter=log-2 id=almost' "$T_TMP/torii.log"

# --- receiver down: alerts are retried, the daemon stays responsive
t_receiver_stop
mkcert down ec 30 down.example.test
api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json down down)"
check_eq "create while the receiver is down -> 201" 201 "$T_STATUS"
# (wait, by polling, until the webhook is retrying; then the API and TLS must answer. The
# answer time is printed, not judged: a bound on it would judge the machine's speed.)
retries=0
for _ in $(seq 1 300); do
  api GET /metrics
  retries=$(echo "$T_BODY" | awk '$1=="torii_alerts_retries_total"{print $2}')
  [ "${retries:-0}" -gt 0 ] && break
  sleep 0.1
done
check "retries are counted" test "${retries:-0}" -gt 0
t0=$(date +%s%N)
api GET /api/certificates/down
t1=$(date +%s%N)
check_eq "admin API answers while the webhook retries" 200 "$T_STATUS"
echo "# admin answered in $(( (t1 - t0) / 1000000 )) ms while the webhook retried"
check_eq "TLS still served while the webhook retries" "$new_serial" "$(served l.example.test)"
t_receiver_start "$RECV_PORT" "$ALERTS"
got_down() {
  python3 - "$ALERTS" <<'PY'
import json, sys
n = sum(1 for l in open(sys.argv[1]) if l.strip() for a in json.loads(l)
        if a["alert"] == "CertCreatedAlert" and a["certificate"]["id"] == "down")
sys.exit(0 if n == 1 else 1)
PY
}
for _ in $(seq 1 150); do
  got_down && break
  sleep 0.2
done
check "the alert arrives once the receiver is back" got_down

# --- /metrics parses with a strict Prometheus text parser
api GET /metrics
check_eq "GET /metrics -> 200" 200 "$T_STATUS"
echo "$T_BODY" > "$T_TMP/metrics.txt"
check "/metrics parses strictly" python3 - "$T_TMP/metrics.txt" <<'PY'
import re, sys
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
sample = re.compile(r"^(%s)(\{(%s(,%s)*)?\})? ([^ ]+)( -?[0-9]+)?$" % (name, label, label))
typed, helped, seen_family, order = {}, set(), set(), []
ok = True
def err(m):
    global ok; ok = False; print("metrics:", m, file=sys.stderr)
text = open(sys.argv[1]).read()
if not text.endswith("\n"): err("no final newline")
for ln in text.rstrip("\n").split("\n"):
    if ln.startswith("#"):
        m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % name, ln)
        if not m: err("bad comment: " + ln); continue
        kind, fam, rest = m.groups()
        if kind == "TYPE":
            if fam in typed: err("TYPE twice: " + fam)
            if rest not in ("counter", "gauge", "histogram", "summary", "untyped"): err("bad type " + rest)
            if fam in seen_family: err("TYPE after samples: " + fam)
            typed[fam] = rest
        else:
            if fam in helped: err("HELP twice: " + fam)
            helped.add(fam)
        continue
    m = sample.match(ln)
    if not m: err("bad sample: " + ln); continue
    fam = m.group(1)
    if fam not in typed: err("sample without TYPE: " + fam)
    if order and order[-1] != fam and fam in seen_family: err("family interleaved: " + fam)
    seen_family.add(fam); order.append(fam)
    try: float(m.group(5))
    except ValueError: err("bad value: " + ln)
    labels = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")
    if len(labels) != len(set(labels)): err("duplicate label: " + ln)
for need in ("torii_certificate_not_after_seconds", "torii_certificate_valid",
             "torii_certificate_renewals_total", "torii_certificate_renewal_failures_total",
             "torii_alerts_sent_total", "torii_alerts_dropped_total", "torii_tls_handshakes_total",
             "torii_connections_accepted_total", "torii_http_requests_total"):
    if need not in typed: err("missing family " + need)
sys.exit(0 if ok else 1)
PY
check "/metrics has the leaf's notAfter" grep -q '^torii_certificate_not_after_seconds{id="leaf",domain="l.example.test"} ' "$T_TMP/metrics.txt"
check "/metrics: expired certificate is not valid" grep -q '^torii_certificate_valid{id="almost",domain="almost.example.test"} 0$' "$T_TMP/metrics.txt"
check "/metrics counts renewals" grep -q '^torii_certificate_renewals_total 3$' "$T_TMP/metrics.txt"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/metrics")
check_eq "/metrics without credentials -> 401" 401 "$code"

check "graceful stop" t_stop

# --- webhook over HTTPS presenting a client certificate from the store (tls.client_cert,
# key encrypted with a password) to a receiver that requires one; trusted_ca from the store
t_receiver_stop # the plain receiver: T_RECV_PID names the mTLS one from here on
HOOK_PORT=$(t_free_port)
HOOK_OUT="$T_TMP/hook-mtls.txt"
: > "$HOOK_OUT"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/hookca.key" 2>/dev/null
openssl req -x509 -new -key "$T_TMP/hookca.key" -days 30 -subj "/CN=Hook CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$T_TMP/hookca.crt" 2>/dev/null
hook_leaf() { # hook_leaf NAME CN EXT
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/$1.key" 2>/dev/null
  openssl req -new -key "$T_TMP/$1.key" -subj "/CN=$2" -out "$T_TMP/$1.csr" 2>/dev/null
  printf '%s\n' "$3" > "$T_TMP/$1.ext"
  openssl x509 -req -in "$T_TMP/$1.csr" -CA "$T_TMP/hookca.crt" -CAkey "$T_TMP/hookca.key" \
    -CAcreateserial -days 30 -extfile "$T_TMP/$1.ext" -out "$T_TMP/$1.crt" 2>/dev/null
}
hook_leaf hooksrv 127.0.0.1 "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
hook_leaf hookcli torii-webhook-client "extendedKeyUsage=clientAuth"
cat "$T_TMP/hookcli.crt" "$T_TMP/hookca.crt" > "$T_TMP/hookcli.chain"
openssl pkey -in "$T_TMP/hookcli.key" -aes256 -passout pass:hook-pw -out "$T_TMP/hookcli.enc" 2>/dev/null
cat > "$T_TMP/recv-mtls.py" <<'PY'
import http.server, ssl, sys
port, out, crt, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        cn = [v for rdn in self.connection.getpeercert()["subject"] for k, v in rdn
              if k == "commonName"]
        with open(out, "a") as f:
            f.write((cn[0] if cn else "-") + " " + body.replace("\n", " ") + "\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.HTTPServer(("127.0.0.1", port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
python3 "$T_TMP/recv-mtls.py" "$HOOK_PORT" "$HOOK_OUT" "$T_TMP/hooksrv.crt" "$T_TMP/hooksrv.key" \
  "$T_TMP/hookca.crt" &
T_RECV_PID=$!
for _ in $(seq 1 300); do
  curl -s -o /dev/null --cacert "$T_TMP/hookca.crt" --cert "$T_TMP/hookcli.crt" \
    --key "$T_TMP/hookcli.key" "https://127.0.0.1:$HOOK_PORT/probe" && break
  sleep 0.1
done
check_eq "the mTLS receiver refuses a client without a certificate" 000 \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T_TMP/hookca.crt" \
     "https://127.0.0.1:$HOOK_PORT/probe")"
t_config "\"exporters\": [
    {\"type\": \"webhook\", \"name\": \"mtls\", \"url\": \"https://127.0.0.1:$HOOK_PORT/alerts\",
     \"tls\": {\"trusted_ca\": \"hook-ca\", \"client_cert\": \"hook-client\"},
     \"alerts\": [\"CertCreatedAlert\"], \"batch_ms\": 50, \"retry_min_ms\": 100,
     \"retry_max_ms\": 400, \"max_retries\": 0, \"timeout_ms\": 2000}
  ],"
t_start || exit 1
post_entity hook-ca "$T_TMP/hookca.crt" "$T_TMP/hookca.key" '{}'
check_eq "import the webhook's trusted CA -> 201" 201 "$T_STATUS"
post_entity hook-client "$T_TMP/hookcli.chain" "$T_TMP/hookcli.enc" '{"password": "hook-pw"}'
check_eq "import the webhook's client certificate (encrypted key) -> 201" 201 "$T_STATUS"
got_hook() {
  python3 - "$HOOK_OUT" <<'PY'
import json, sys
ids = set()
for l in open(sys.argv[1]):
    cn, _, body = l.partition(" ")
    if cn != "torii-webhook-client":
        sys.exit(2)
    ids |= {a["certificate"]["id"] for a in json.loads(body) if a["alert"] == "CertCreatedAlert"}
sys.exit(0 if {"hook-ca", "hook-client"} <= ids else 1)
PY
}
for _ in $(seq 1 150); do
  got_hook && break
  sleep 0.2
done
check "mTLS webhook delivers, presenting the stored client certificate" got_hook
check_eq "no private key in the mTLS webhook payloads" 0 \
  "$(grep -c -e 'PRIVATE KEY' -e privateKey -e hook-pw "$HOOK_OUT")"
check_eq "no key material in the daemon log" 0 \
  "$(grep -c -e 'PRIVATE KEY' -e hook-pw "$T_TMP/torii.log")"
t_receiver_stop
check "graceful stop (mTLS webhook)" t_stop

# --- the debug hook is off by default
t_config
t_start || exit 1
t_clock 1000
check_eq "debug clock hook disabled by default -> 404" 404 "$T_STATUS"
check "graceful stop (defaults)" t_stop
t_done
