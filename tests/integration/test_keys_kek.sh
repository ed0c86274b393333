#!/usr/bin/env bash
# test_keys_kek.sh - keys encrypted at rest (docs/operations.md, Keys at rest): the one-time
# warning without a KEK, core dumps off; `torii keys migrate` killed after its first batch,
# then rerun (resumes, skips what is done, idempotent); after it no private key is left in
# the data dir files (neither the PEM nor the key bytes), the daemon with the KEK still serves
# TLS, a copy of the store without its KEK (or with a wrong one) serves none of those keys and
# says why; KEK file permissions; `torii keys rotate` to a new KEK.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! "$PY" -c 'import cryptography' 2>/dev/null; then
  echo "skip - python3-cryptography is not installed (scripts/deps.sh installs it)"
  exit 0
fi

# cfg FILE DATA_DIR [keys section members] : a config for this test
cfg() {
  local keys=""
  if [ -n "${3:-}" ]; then keys="\"keys\": {$3},"; fi
  T_CONF_FILE=$1 T_DATA_DIR=$2 t_config "$keys"
}
start_with() { # start_with CONFIG: t_start on another config file, with a fresh log
  cp "$1" "$T_TMP/torii.json"
  : > "$T_TMP/torii.log"
  t_start
}
keys() { "$TORII_BIN" keys "$@"; }
# secrets_in DIR: how many of the test keys' secrets (private scalar / exponent bytes, PEM body
# lines) appear in any file under DIR
secrets_in() {
  "$PY" - "$1" "$T_TMP"/c*.key <<'PY'
import os, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
needles = []
for path in sys.argv[2:]:
    pem = open(path, "rb").read()
    k = load_pem_private_key(pem, None)
    n = k.private_numbers()
    secret = n.private_value if hasattr(n, "private_value") else n.d
    needles.append(secret.to_bytes((secret.bit_length() + 7) // 8, "big"))
    needles += [l for l in pem.splitlines() if l and not l.startswith(b"-----")][:2]
hits = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if not os.path.isfile(p) or os.path.islink(p):
            continue  # the upgrade socket
        data = open(p, "rb").read()
        found = sum(1 for nd in needles if nd in data)
        if found and os.environ.get("KEK_DEBUG"):
            print(p, found, [i for i, nd in enumerate(needles) if nd in data], file=sys.stderr)
        hits += found
print(hits)
PY
}
not_served() { [ "$(served "$1.test")" != "$(serial_of "$1")" ]; }
count_in_log() { local n; n=$(grep -c -- "$1" "$T_TMP/torii.log" 2>/dev/null); echo "${n:-0}"; }

head -c 32 /dev/urandom > "$T_TMP/kek1"
chmod 600 "$T_TMP/kek1"
"$PY" -c 'import os; print(os.urandom(32).hex())' > "$T_TMP/kek2"
chmod 400 "$T_TMP/kek2"
head -c 32 /dev/urandom > "$T_TMP/kek_wrong"
chmod 600 "$T_TMP/kek_wrong"
D="$T_TMP/data"
cfg "$T_TMP/plain.json" "$D"
cfg "$T_TMP/k1.json" "$D" "\"kek_file\": \"$T_TMP/kek1\""

# --- a plain store with a few certificates --------------------------------------------------------
start_with "$T_TMP/plain.json" || exit 1
check_eq "one warning at start without a KEK" 1 "$(count_in_log 'no KEK configured')"
core=$(awk '/Max core file size/ {print $5 $6}' "/proc/$T_PID/limits")
check_eq "core dumps disabled (RLIMIT_CORE 0)" 00 "$core"
for i in 1 2 3 4 5; do
  mkcert "c$i" "$([ $((i % 2)) = 0 ] && echo rsa || echo ec)" 30 "c$i.test"
  api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json "c$i" "c$i")"
  check_eq "certificate c$i stored" 201 "$T_STATUS"
done
check_eq "c1 served before the migration" "$(serial_of c1)" "$(served c1.test)"
t_stop || fail "daemon exit status"
before=$(secrets_in "$D")
if [ "$before" -gt 0 ]; then ok "the plain store holds the keys ($before hits): the probe works"
else fail "the key probe finds nothing in a plain store"; fi

# --- KEK file rules ---------------------------------------------------------------------------------
chmod 640 "$T_TMP/kek1"
out=$(keys migrate -c "$T_TMP/k1.json" 2>&1); st=$?
check_eq "a group-readable KEK file is refused" 1 "$st"
case "$out" in *"$T_TMP/kek1"*"chmod 600"*) ok "the error names the file and the fix" ;;
  *) fail "KEK permission error: $out" ;; esac
chmod 600 "$T_TMP/kek1"
out=$(keys migrate -c "$T_TMP/plain.json" 2>&1); st=$?
check_eq "migrate without a KEK refused" 1 "$st"
case "$out" in *"no KEK configured"*) ok "it says no KEK is configured" ;; *) fail "$out" ;; esac

# --- migrate: the reference run on a copy, then killed after one batch and resumed ---------------
cp -a "$D" "$T_TMP/ref"
cfg "$T_TMP/ref.json" "$T_TMP/ref" "\"kek_file\": \"$T_TMP/kek1\""
out=$(keys migrate -c "$T_TMP/ref.json" 2>&1) || fail "reference migrate: $out"
total=$(printf '%s' "$out" | sed -n 's/.*: \([0-9]*\) records\? sealed.*/\1/p')
if [ "${total:-0}" -gt 4 ]; then ok "reference migrate sealed $total records"
else fail "reference migrate: $out"; fi
keys migrate -c "$T_TMP/k1.json" --batch 2 --test-crash-after-batches 1 >/dev/null 2>&1
check_eq "migrate killed after its first batch" 137 "$?"
out=$(keys migrate -c "$T_TMP/k1.json" --batch 2 2>&1) || fail "resumed migrate: $out"
check_eq "the rerun seals only what the first batch left" "$((total - 2)) records" \
  "$(printf '%s' "$out" | sed -n 's/.*: \([0-9]* records\?\) sealed.*/\1/p')"
out=$(keys migrate -c "$T_TMP/k1.json" 2>&1) || fail "third migrate: $out"
case "$out" in *": 0 records sealed"*) ok "a migrated store is left alone" ;; *) fail "$out" ;; esac
check_eq "no key left in the data dir files after migrate" 0 "$(secrets_in "$D")"

# --- the daemon with the KEK serves, without it serves none of those keys ------------------------
start_with "$T_TMP/k1.json" || exit 1
check_eq "no warning with a KEK" 0 "$(count_in_log 'no KEK configured')"
for i in 1 2 3 4 5; do
  check_eq "c$i served with the KEK after the migration" "$(serial_of "c$i")" "$(served "c$i.test")"
done
t_stop || fail "daemon exit status"
cp -a "$D" "$T_TMP/copy"
cfg "$T_TMP/copy.json" "$T_TMP/copy"
start_with "$T_TMP/copy.json" || exit 1
check "a copied store without its KEK serves no c1 key" not_served c1
check "the log says the key is sealed under a KEK that is not loaded" \
  grep -q "the key of record 'c1' is sealed under KEK [0-9a-f]\{16\}, which is not loaded" \
  "$T_TMP/torii.log"
check_eq "the log holds no key" 0 "$(count_in_log 'PRIVATE KEY')"
t_stop || fail "daemon exit status"
check_eq "the copied store holds no key" 0 "$(secrets_in "$T_TMP/copy")"
cfg "$T_TMP/wrong.json" "$D" "\"kek_file\": \"$T_TMP/kek_wrong\""
start_with "$T_TMP/wrong.json" || exit 1
check "a wrong KEK serves no c2 key" not_served c2
check "a wrong KEK is named in the log" grep -q "record 'c2' is sealed under KEK .*not loaded" \
  "$T_TMP/torii.log"
t_stop || fail "daemon exit status"

# --- rotate to a new KEK ------------------------------------------------------------------------------
cfg "$T_TMP/k2.json" "$D" "\"kek_file\": \"$T_TMP/kek2\""
out=$(keys rotate -c "$T_TMP/k2.json" 2>&1); st=$?
check_eq "rotate without the previous KEK fails" 1 "$st"
case "$out" in *"sealed under KEK"*"not loaded"*) ok "and names the missing KEK" ;; *) fail "$out" ;; esac
cfg "$T_TMP/rot.json" "$D" "\"kek_file\": \"$T_TMP/kek2\", \"previous_kek_files\": [\"$T_TMP/kek1\"]"
out=$(keys rotate -c "$T_TMP/rot.json" 2>&1) || fail "rotate: $out"
check_eq "rotate re-seals every record" "$total records" \
  "$(printf '%s' "$out" | sed -n 's/.*: \([0-9]* records\?\) sealed.*/\1/p')"
start_with "$T_TMP/k2.json" || exit 1
check_eq "served with the new KEK alone" "$(serial_of c3)" "$(served c3.test)"
t_stop || fail "daemon exit status"
start_with "$T_TMP/k1.json" || exit 1
check "the old KEK alone no longer serves" not_served c3
t_stop || fail "daemon exit status"
check_eq "no key in the data dir files after rotate" 0 "$(secrets_in "$D")"
t_done
