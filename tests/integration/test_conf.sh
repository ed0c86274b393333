#!/usr/bin/env bash
# torii --check-config as an operator sees it: every problem of a file on its own line
# (key path + problem) and a non-zero exit; a missing file named with its errno text; the
# an unknown acme member refused; listeners sharing an address and port; backend.tls with plain targets;
# two default routes. The daemon itself refuses to start on the same file with the same
# lines. The shipped example conf/torii.json is valid.
here=$(dirname "$0")
source "$here/lib.sh"

# cc FILE -> stdout+stderr of --check-config in $T_TMP/cc.out, exit status in $CC_RC
cc() {
  "$TORII_BIN" --check-config -c "$1" >"$T_TMP/cc.out" 2>&1
  CC_RC=$?
}
has_line() { grep -qxF -- "$1" "$T_TMP/cc.out"; }

check "the example conf/torii.json is valid" "$TORII_BIN" --check-config -c "$here/../../conf/torii.json"

cc "$T_TMP/nonexistent.json"
check_eq "missing file: exit status 1" 1 "$CC_RC"
check "missing file: named with its errno text" \
  has_line "torii: config: $T_TMP/nonexistent.json: No such file or directory"
check "missing file: no -1:-1 position" sh -c "! grep -q -- ':-1:-1:' '$T_TMP/cc.out'"

cat > "$T_TMP/bad.json" <<JSON
{
  "acme": {"directory_url": "https://127.0.0.1:9/dir", "email": "ops@example.test"},
  "listen": {"https": "0.0.0.0:$T_ADMIN", "http": "127.0.0.1:$T_HTTP", "htps": "x"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN"},
  "log_level": "chatty",
  "routes": [
    {"hosts": ["a.test"], "backend": {"targets": ["127.0.0.1:9"],
     "tls": {"trusted_ca": "ca", "client_cert": "cli"}}},
    {"hosts": ["*"], "backend": {"targets": ["127.0.0.1:9"]}},
    {"hosts": ["*"], "backend": {"targets": ["http://127.0.0.1:9"], "tls": {"sni": "b.test"}}}
  ]
}
JSON
cc "$T_TMP/bad.json"
check_eq "bad file: exit status 1" 1 "$CC_RC"
check "unknown acme member refused" has_line 'torii: config: unknown key "acme.email"'
check "unknown key reported" has_line 'torii: config: unknown key "listen.htps"'
check "bad log level reported" has_line \
  "torii: config: log_level: expected err, warn, notice, info or debug"
check "https listener on the admin port reported, naming both" has_line \
  "torii: config: listen.https (0.0.0.0:$T_ADMIN) and admin.listen (127.0.0.1:$T_ADMIN): the same port on overlapping addresses; each listener needs its own address and port"
check "backend.tls with a plain target reported, naming the route" has_line \
  "torii: config: routes[0].backend.tls: given, but routes[0].backend.targets[0] (127.0.0.1:9) is plain http: write https://127.0.0.1:9, or remove tls"
check "backend.tls with an http:// target reported" grep -qF \
  "torii: config: routes[2].backend.tls: given, but routes[2].backend.targets[0] (127.0.0.1:9) is plain http" \
  "$T_TMP/cc.out"
check "second default route reported" has_line \
  'torii: config: routes[2].hosts: "*" (the default route) is already routes[1]: only one route may have it'
check "summary line counts every problem" has_line "torii: configuration $T_TMP/bad.json is not valid (7 problems)"
check_eq "one line per problem, nothing else" 8 "$(wc -l < "$T_TMP/cc.out")"

# the daemon refuses the same file with the same lines, before binding anything
"$TORII_BIN" -c "$T_TMP/bad.json" >"$T_TMP/start.out" 2>&1
check_eq "daemon start with the bad file: exit status 1" 1 "$?"
check "daemon start prints the same problems" diff "$T_TMP/cc.out" "$T_TMP/start.out"

# a good file with a default route and tls.strict_host off; https:// targets with tls
cat > "$T_TMP/good.json" <<JSON
{
  "listen": {"https": "127.0.0.1:$T_HTTPS", "http": "127.0.0.1:$T_HTTP"},
  "admin": {"listen": "127.0.0.1:$T_ADMIN"},
  "tls": {"strict_host": false},
  "routes": [
    {"hosts": ["a.test", "*"], "backend": {"targets": ["https://127.0.0.1:9"],
     "tls": {"trusted_ca": "ca", "client_cert": "cli", "sni": "backend.test"}}}
  ]
}
JSON
cc "$T_TMP/good.json"
check_eq "good file: exit status 0" 0 "$CC_RC"
check "good file: reported valid" has_line "torii: configuration $T_TMP/good.json is valid"
t_done
