#!/usr/bin/env bash
# `torii ctl` against the real daemon: every command (list as a table and as JSON, get,
# import of PEM files and of a .p12, issue from the intermediate CA then served by SNI,
# renew, revoke, export with and without the keys:export scope, delete, watch, letsencrypt),
# the URL and token from flags, the environment and a file, and every documented exit code
# (0 ok, 1 usage, 2 not found, 3 authentication/scope, 4 conflict or API error, 5 connect).
here=$(dirname "$0")
source "$here/lib.sh"

"$TORII_BIN" token new --id ro --scopes read >"$T_TMP/ro.out" 2>&1
RO=$(sed -n 's/^token: //p' "$T_TMP/ro.out")
RO_ENTRY=$(tail -n 1 "$T_TMP/ro.out")
cat > "$T_TMP/torii.json" <<JSON
{
  "data_dir": "$T_TMP/data",
  "workers": 2,
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN", "token": "$T_TOKEN", "tokens": [$RO_ENTRY]}
}
JSON
t_start || exit 1

export TORII_ADMIN_URL="http://127.0.0.1:$T_ADMIN"
export TORII_ADMIN_TOKEN="$T_TOKEN"
CTL=("$TORII_BIN" ctl)

# ctl ARGS... -> T_OUT (stdout), T_ERR (stderr), T_RC
ctl() {
  T_OUT=$("${CTL[@]}" "$@" 2>"$T_TMP/ctl.err")
  T_RC=$?
  T_ERR=$(cat "$T_TMP/ctl.err")
}
# jq-like: jpy 'python expression over d' <<< json
jpy() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# --- usage and connection errors
ctl; check_eq "no command: exit 1" 1 "$T_RC"
ctl frobnicate; check_eq "unknown command: exit 1" 1 "$T_RC"
ctl list --bogus; check_eq "unknown option: exit 1" 1 "$T_RC"
check "unknown option named" grep -q "unknown option '--bogus'" "$T_TMP/ctl.err"
ctl get; check_eq "get without an id: exit 1" 1 "$T_RC"
ctl list --page-size zero; check_eq "bad number: exit 1" 1 "$T_RC"
ctl list --page 2; check_eq "--page without --page-size (it would be ignored): exit 1" 1 "$T_RC"
ctl help; check_eq "help: exit 0" 0 "$T_RC"
case "$T_OUT" in *"exit codes"*) ok "help lists the exit codes" ;; *) fail "help lists the exit codes" ;; esac
ctl --url "http://127.0.0.1:$(t_free_port)" list; check_eq "nothing listening: exit 5" 5 "$T_RC"
ctl --url ftp://x list; check_eq "not an http URL: exit 1" 1 "$T_RC"

# --- authentication: wrong token, token from a file, scoped token
ctl --token wrong-token list; check_eq "wrong token: exit 3" 3 "$T_RC"
printf '%s\n' "$T_TOKEN" > "$T_TMP/token"
T_SAVE=$TORII_ADMIN_TOKEN; unset TORII_ADMIN_TOKEN
ctl --token-file "$T_TMP/token" list --json; check_eq "token from --token-file: exit 0" 0 "$T_RC"
TORII_ADMIN_TOKEN_FILE="$T_TMP/token" ctl list --json
check_eq "token from TORII_ADMIN_TOKEN_FILE: exit 0" 0 "$T_RC"
ctl list; check_eq "no token at all: exit 3" 3 "$T_RC"
export TORII_ADMIN_TOKEN=$T_SAVE

# --- list: JSON parsed, table, filters
ctl list --json
check_eq "list --json: exit 0" 0 "$T_RC"
check_eq "list --json: the three bootstrap entities" \
  "torii-default-cert,torii-intermediate-ca,torii-root-ca" \
  "$(echo "$T_OUT" | jpy '",".join(sorted(e["id"] for e in d))')"
check_eq "list --json: redacted" "True" "$(echo "$T_OUT" | jpy 'all(e["privateKey"] == "" for e in d)')"
ctl list --badge ca --json
check_eq "list --badge ca" "torii-intermediate-ca,torii-root-ca" \
  "$(echo "$T_OUT" | jpy '",".join(sorted(e["id"] for e in d))')"
ctl list --badge nonsense; check_eq "unknown badge: exit 1" 1 "$T_RC"
ctl list --search INTERMEDIATE --json
check_eq "list --search (case-insensitive)" "torii-intermediate-ca" \
  "$(echo "$T_OUT" | jpy '",".join(e["id"] for e in d)')"
ctl list --sort name:desc --page-size 2 --page 1 --json
check_eq "list --page-size 2: two items" 2 "$(echo "$T_OUT" | jpy 'len(d)')"
check "list: the match count on stderr" grep -q "2 shown, 3 match" "$T_TMP/ctl.err"
ctl list
check_eq "list (table): exit 0" 0 "$T_RC"
check_eq "list (table): header and three rows" 4 "$(printf '%s\n' "$T_OUT" | wc -l)"
case "$T_OUT" in *"torii-root-ca"*"ca,selfSigned"*) ok "table shows the root's flags" ;; *) fail "table shows the root's flags: $T_OUT" ;; esac

# --- issue from the intermediate CA, served by SNI
ctl issue --ca torii-intermediate-ca --subject "CN=ctl.test, O=torii" --host ctl.test \
  --key-type rsa --key-size 2048 --days 30 --digest SHA-384 --key-out "$T_TMP/ctl.key"
check_eq "issue: exit 0" 0 "$T_RC"
ISSUED=$(echo "$T_OUT" | jpy 'd["id"]')
check_eq "issue: caRef is the intermediate" torii-intermediate-ca "$(echo "$T_OUT" | jpy 'd["caRef"]')"
check_eq "issue: no key printed" "" "$(echo "$T_OUT" | jpy 'd["privateKey"]')"
check "issue: --key-out written" grep -q "PRIVATE KEY" "$T_TMP/ctl.key"
check_eq "issue: --key-out mode 0600" 600 "$(stat -c %a "$T_TMP/ctl.key")"
check "issue: the stored certificate is served for ctl.test" test -n "$(served ctl.test)"
ctl issue --subject "CN=x" --key-type dsa; check_eq "issue: bad key type: exit 1" 1 "$T_RC"
ctl issue --ca no-such-ca --subject "CN=x"; check_eq "issue: unknown CA: exit 2" 2 "$T_RC"

# --- get, renew, revoke, export, delete
ctl get "$ISSUED"; check_eq "get: exit 0" 0 "$T_RC"
check_eq "get: the entity" "$ISSUED" "$(echo "$T_OUT" | jpy 'd["id"]')"
ctl get no-such-id; check_eq "get unknown: exit 2" 2 "$T_RC"
OLD_CHAIN=$(echo "$T_OUT" | jpy 'd["chain"]')
ctl renew "$ISSUED"; check_eq "renew: exit 0" 0 "$T_RC"
ctl get "$ISSUED"
check "renew: the entity holds a new certificate" test "$(echo "$T_OUT" | jpy 'd["chain"]')" != "$OLD_CHAIN"
ctl export "$ISSUED"; check_eq "export with the all-scopes token: exit 0" 0 "$T_RC"
check "export: the private key is there" sh -c "echo '$(echo "$T_OUT" | jpy 'd["privateKey"][:40]')' | grep -q 'PRIVATE KEY'"
ctl export "$ISSUED" --out "$T_TMP/export.json"
check_eq "export --out: mode 0600" 600 "$(stat -c %a "$T_TMP/export.json")"
ctl --token "$RO" export "$ISSUED"; check_eq "export without keys:export: exit 3" 3 "$T_RC"
ctl --token "$RO" delete "$ISSUED"; check_eq "delete with a read token: exit 3" 3 "$T_RC"
ctl revoke "$ISSUED" --reason KEY_COMPROMISE; check_eq "revoke: exit 0" 0 "$T_RC"
check_eq "revoke: revoked" True "$(echo "$T_OUT" | jpy 'd["revoked"]')"
check_eq "revoke: reason" KEY_COMPROMISE "$(echo "$T_OUT" | jpy 'd["metadata"]["revocationReason"]')"
ctl list --badge revoked --json
check_eq "list --badge revoked" "$ISSUED" "$(echo "$T_OUT" | jpy '",".join(e["id"] for e in d)')"

# --- import: PEM files (then a conflict), .p12
mkcert pem ec 20 pem.test
ctl import --chain "$T_TMP/pem.crt" --key "$T_TMP/pem.key" --id pem-one --name "PEM one"
check_eq "import PEM: exit 0" 0 "$T_RC"
check_eq "import PEM: the id" pem-one "$(echo "$T_OUT" | jpy 'd["id"]')"
check "import PEM: served for pem.test" test "$(served pem.test)" = "$(serial_of pem)"
ctl import --chain "$T_TMP/pem.crt" --key "$T_TMP/pem.key" --id pem-one
check_eq "import the same id again (409): exit 4" 4 "$T_RC"
ctl import --chain "$T_TMP/missing.crt"; check_eq "import of a missing file: exit 1" 1 "$T_RC"
ctl import --p12 x --chain y; check_eq "import --p12 with --chain: exit 1" 1 "$T_RC"
mkcert p12 ec 20 p12.test
openssl pkcs12 -export -in "$T_TMP/p12.crt" -inkey "$T_TMP/p12.key" -passout pass:s3cret \
  -out "$T_TMP/p12.p12" 2>/dev/null
ctl import --p12 "$T_TMP/p12.p12" --password wrong-pass-xyz
check_eq "import .p12, wrong password: exit 4" 4 "$T_RC"
case "$T_ERR" in
  *wrong-pass-xyz*) fail "the .p12 password is printed in the error: $T_ERR" ;;
  *"_p12: 400"*) ok "the error names the route, not its query (the password)" ;;
  *) fail "import .p12 error message: $T_ERR" ;;
esac
ctl import --p12 "$T_TMP/p12.p12" --password s3cret; check_eq "import .p12: exit 0" 0 "$T_RC"
P12ID=$(echo "$T_OUT" | jpy 'd["certIds"][0]')
ctl get "$P12ID"; check_eq "import .p12: stored" p12.test "$(echo "$T_OUT" | jpy 'd["domain"]')"

# --- watch: one event per change, as JSON lines
"${CTL[@]}" watch --interval 1 --count 2 --timeout 120 >"$T_TMP/watch.out" 2>"$T_TMP/watch.err" &
WPID=$!
# changes are made once the watch has its first snapshot (it says so on stderr)
for _ in $(seq 1 300); do
  grep -q "^watching " "$T_TMP/watch.err" && break
  sleep 0.1
done
check "watch: first snapshot taken" grep -qE "^watching [0-9]+ certificates" "$T_TMP/watch.err"
# both changes land within one or more polls; the watch stops after two events
ctl delete pem-one
check_eq "delete: exit 0" 0 "$T_RC"
ctl get pem-one; check_eq "get after delete: exit 2" 2 "$T_RC"
ctl issue --ca torii-intermediate-ca --subject "CN=watch.test" --host watch.test
WATCHED=$(echo "$T_OUT" | jpy 'd["id"]')
wait "$WPID"; check_eq "watch: exit 0 after --count events" 0 "$?"
# (both changes may land in one poll: compare as a set)
check_eq "watch: one removed and one added event" "added:$WATCHED removed:pem-one" \
  "$(python3 -c 'import json,sys; print(" ".join(sorted(e["event"]+":"+e["id"] for e in map(json.loads, open(sys.argv[1])))))' "$T_TMP/watch.out")"

# --- letsencrypt: this daemon has no ACME configured
ctl letsencrypt le.test --no-wait
case "$T_RC" in
  2) echo "skip - letsencrypt: the daemon answers 404 on /api/pki/certs/_letsencrypt (no ACME API in this build)" ;;
  0) check_eq "letsencrypt --no-wait: the order's job is printed" yes \
       "$(echo "$T_OUT" | jpy '"yes" if (d.get("jobId") or d.get("id")) else "no"')" ;;
  *) check_eq "letsencrypt without an ACME server configured: an API error" 4 "$T_RC" ;;
esac

# --- bash completion: commands, and every option it offers is one `torii ctl help` documents
# (and the parser takes: an option of another command is refused)
source "$here/../../conf/torii.bash-completion"
complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _torii; echo "${COMPREPLY[*]}"; }
check_eq "completion: commands" "list letsencrypt" "$(complete_words torii ctl l)"
check_eq "completion: a command after a global option" "revoke renew" \
  "$(complete_words torii ctl --url http://x re | tr ' ' '\n' | sort -r | tr '\n' ' ' | sed 's/ $//')"
check_eq "completion: badges" "expired exposed" "$(complete_words torii ctl list --badge ex | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
ctl help
HELP=$T_OUT
for cmd in list import issue letsencrypt revoke export watch; do
  for opt in $(_torii_ctl_opts "$cmd"); do
    case "$HELP" in
      *"$cmd "*"$opt"*) ;;
      *) fail "completion offers $cmd $opt, which help does not document" ;;
    esac
  done
done
ok "completion: every offered option is documented by help"
ctl list --reason x; check_eq "an option of another command is refused: exit 1" 1 "$T_RC"

t_stop || fail "daemon exit status"
t_done
