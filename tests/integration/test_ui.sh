#!/usr/bin/env bash
# The web page at /ui/ in headless Chromium (Debian chromium driven by playwright-core from
# npm; the checks are in ui_e2e.js): served without a token with a strict CSP; sign in (a
# wrong token shows an error), badges of certificates made through the API, the overview's
# bars against the API's list, a certificate created from the intermediate CA through the
# form then listed and served by SNI, Add item (PEM), Import .p12, details, edit, revoke,
# delete, a Let's Encrypt order against Pebble (a test ACME CA on loopback) from the form, no
# private key in the page, sign out. Screenshots of the overview and the list go
# to $PWD/artifacts/ui (the build tree under ctest). Skips (77) only when chromium is absent
# and cannot be installed.
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/pebble.sh"

# --- the browser and its driver
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1
  elif sudo -n true 2>/dev/null; then
    sudo apt-get update -qq >/dev/null 2>&1
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1
  fi
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "skip - /usr/bin/chromium is absent and cannot be installed here (scripts/deps.sh installs it)"
  exit 77
fi
if [ ! -d "$here/node_modules/playwright-core" ] && command -v npm >/dev/null; then
  npm install --silent --no-save --no-audit --no-fund --prefix "$here" playwright-core@1 >/dev/null 2>&1
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  fail "npm package playwright-core is missing and npm could not install it (npm install --prefix tests/integration)"
  t_done
fi

# --- the static page: no token needed, strict headers, nothing else under /ui/
# Pebble validates the page's Let's Encrypt order through torii's own http listener.
pebble_begin
t_config "\"acme\": {\"directory_url\": \"$P_DIR_URL\", \"ca_bundle\": \"$P_CA\",
  \"challenges\": [\"http-01\"]},"
t_start || exit 1
HDRS=$(curl -s -D - -o "$T_TMP/index.html" "http://127.0.0.1:$T_ADMIN/ui/")
case "$HDRS" in *"200 OK"*) ok "/ui/ without a token: 200" ;; *) fail "/ui/ without a token: $HDRS" ;; esac
case "$HDRS" in *"Content-Security-Policy: default-src 'none'; script-src 'self'"*) ok "/ui/: strict CSP" ;; *) fail "/ui/: CSP: $HDRS" ;; esac
case "$HDRS" in *"Content-Type: text/html; charset=utf-8"*) ok "/ui/: text/html" ;; *) fail "/ui/: content type" ;; esac
check "/ui/: no inline script, handler or style (the CSP would block them)" python3 - "$T_TMP/index.html" <<'PY2'
import re, sys
html = open(sys.argv[1]).read()
scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
inline = [a for a, body in scripts if "src=" not in a or body.strip()]
handlers = re.findall(r"<[^>]*\son[a-z]+\s*=", html, re.I)
styles = re.findall(r"<style|\sstyle\s*=", html, re.I)
sys.exit(0 if scripts and not inline and not handlers and not styles else 1)
PY2
JS_TYPE=$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$T_ADMIN/ui/app.js")
check_eq "/ui/app.js: JavaScript" "text/javascript; charset=utf-8" "$JS_TYPE"
CSS_TYPE=$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$T_ADMIN/ui/app.css")
check_eq "/ui/app.css: CSS" "text/css; charset=utf-8" "$CSS_TYPE"
check_eq "/ui/nothing: 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/ui/nothing")"
check_eq "/ui: redirect" 301 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/ui")"
check_eq "POST /ui/: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$T_ADMIN/ui/")"
check_eq "/ui/?x=1: 400 (nothing ignored)" 400 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/ui/?x=1")"
check_eq "the API still needs the token" 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_ADMIN/api/certificates")"

# --- certificates made through the API (issued by a CA outside the store: no self-signed badge)
mkca uica "ui test CA"
mkleaf uiflags uiflags.test uica 'subjectAltName=DNS:uiflags.test' 100
mkleaf uiclient "ui client" uica 'extendedKeyUsage=clientAuth' 60
mkleaf uiexpired uiexpired.test uica 'subjectAltName=DNS:uiexpired.test' -1
mkleaf uisoon uisoon.test uica 'subjectAltName=DNS:uisoon.test' 10
mkleaf uirevoked uirevoked.test uica 'subjectAltName=DNS:uirevoked.test' 60
post() { # post ID NAME EXTRA
  api POST /api/certificates -H 'Content-Type: application/json' -d "$(entity_json "$1" "$2" "${3:-}")"
  check_eq "API: $1 created" 201 "$T_STATUS"
  [ "$T_STATUS" = 201 ] || echo "$T_BODY"
}
post ui-flags uiflags '{"exposed": true, "autoRenew": true}'
post ui-client uiclient '{"client": true}'
post ui-expired uiexpired
post ui-soon uisoon
post ui-revoked uirevoked '{"revoked": true}'
mkcert uipem ec 20 uipem.test
mkcert uipem2 ec 20 uipem2.test
mkcert uip12 ec 25 uip12.test
openssl pkcs12 -export -in "$T_TMP/uip12.crt" -inkey "$T_TMP/uip12.key" -passout pass:p12pass \
  -out "$T_TMP/uip12.p12" 2>/dev/null

# --- the page in Chromium
ART="$(pwd)/artifacts/ui"
UI_URL="http://127.0.0.1:$T_ADMIN" UI_TOKEN="$T_TOKEN" UI_TMP="$T_TMP" UI_ARTIFACTS="$ART" \
  UI_HTTPS="$T_HTTPS" UI_ACME=1 IT_DIR="$here" timeout 600 node "$here/ui_e2e.js" >"$T_TMP/e2e.out" 2>&1
E2E_RC=$?
cat "$T_TMP/e2e.out"
T_PASSES=$((T_PASSES + $(grep -c '^ok ' "$T_TMP/e2e.out")))
T_FAILS=$((T_FAILS + $(grep -c '^FAIL ' "$T_TMP/e2e.out")))
check_eq "ui_e2e.js: exit 0" 0 "$E2E_RC"
check "screenshot of the overview saved" test -s "$ART/ui-overview.png"
check "screenshot of the list saved" test -s "$ART/ui-list.png"
echo "screenshots: $ART"

t_stop || fail "daemon exit status"
t_done
