#!/usr/bin/env bash
# test_jwt_route.sh - routes[].jwt end to end: tokens minted by an outside library (Debian's
# python3-jwt, PyJWT) with key pairs the daemon generated, sent through the proxy to
# torii-backend's /echo. Valid ES256/RS256 tokens pass and the backend sees the claim headers
# (never the client's forged copies); every refused token gets 401 + WWW-Authenticate and the
# backend sees nothing; a cookie source; keys that do not exist; a request with a body refused
# before it is read; POST /api/certificates/:id/_sign (PyJWT verifies the token against the
# public JWKS, and the route accepts it) and /_verify; revocation and rotation applied to the
# next request; the torii_jwt_verifications_total metric.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

if ! "$PY" -c 'import jwt, cryptography' 2>/dev/null; then
  echo "skip - python3-jwt is not installed (scripts/deps.sh installs it)"
  exit 0
fi

BK=$(t_free_port)
t_backend_start "$BK" || { echo "backend did not start"; exit 1; }
trap 't_backend_stop_all; t_cleanup' EXIT

t_config "\"tls\": {\"strict_host\": false},
\"routes\": [
  {\"hosts\": [\"localhost\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]},
   \"jwt\": {\"issuer\": \"https://idp.test\", \"audience\": \"api\",
            \"claims_to_headers\": {\"sub\": \"X-Jwt-Sub\", \"scope\": \"X-Jwt-Scope\"}}},
  {\"hosts\": [\"cookie.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]},
   \"jwt\": {\"issuer\": \"https://idp.test\", \"audience\": [\"other\", \"api\"],
            \"algorithms\": [\"ES256\"], \"from\": {\"cookie\": \"session\"},
            \"claims_to_headers\": {\"sub\": \"X-User\"}}},
  {\"hosts\": [\"keys.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]},
   \"jwt\": {\"keys\": [\"no-such-key\"], \"issuer\": \"https://idp.test\", \"audience\": \"api\"}},
  {\"hosts\": [\"plain.test\"], \"backend\": {\"targets\": [\"127.0.0.1:$BK\"]}}
],"
t_start || exit 1
U="https://localhost:$T_HTTPS"
C=(curl -sk --max-time 20)
PUB="http://127.0.0.1:$T_HTTP"
# wait_jwks present|absent KID: the public key set (published with the verifier's key set)
wait_jwks() {
  local _
  for _ in $(seq 1 300); do
    if curl -s "$PUB/.well-known/jwks.json" | "$PY" -c '
import json,sys; kids=[k.get("kid") for k in json.load(sys.stdin)["keys"]]
sys.exit(0 if (sys.argv[2] in kids) == (sys.argv[1] == "present") else 1)' "$1" "$2"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

for kp in ec:ecdsa:256 rs:rsa:2048; do
  name=${kp%%:*}
  api POST /api/pki/keys -H 'Content-Type: application/json' \
    -d "{\"algo\":\"$(echo "$kp" | cut -d: -f2)\",\"size\":$(echo "$kp" | cut -d: -f3)}"
  printf '%s' "$T_BODY" > "$T_TMP/$name.json"
  pem_of "$T_TMP/$name.json" privateKey "$T_TMP/$name.key"
  pem_of "$T_TMP/$name.json" chain "$T_TMP/$name.crt"
  declare "id_$name=$(jget "['certId']" < "$T_TMP/$name.json")"
  api PATCH "/api/certificates/$(jget "['certId']" < "$T_TMP/$name.json")" \
    -H 'Content-Type: application/json' -d '[{"op":"replace","path":"/exposed","value":true}]'
  check_eq "key pair $name exposed" 200 "$T_STATUS"
done
wait_jwks present "$id_ec" && wait_jwks present "$id_rs" || fail "key pairs published"

# mint ALG KEY KID [claim overrides as JSON] [mode] [cert] > token (modes: see test_jwt.sh)
cat > "$T_TMP/mint.py" <<'PY'
import base64, hashlib, hmac, json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography import x509
alg, keyfile, kid, over, mode = sys.argv[1:6]
now = int(time.time())
claims = {"sub": "alice", "scope": "read write", "iss": "https://idp.test", "aud": "api",
          "iat": now, "exp": now + 3000}
claims.update(json.loads(over))
key = open(keyfile, "rb").read()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
if mode == "none":
    hdr = b64(json.dumps({"alg": "none", "kid": kid}).encode())
    print(hdr + "." + b64(json.dumps(claims).encode()) + ".")
elif mode == "hs-pub":
    pub = x509.load_pem_x509_certificate(open(sys.argv[6], "rb").read()).public_key()
    secret = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + b64(json.dumps(claims).encode())
    print(signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest()))
else:
    tok = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    if mode == "tamper":
        h, p, s = tok.split(".")
        claims["sub"] = "mallory"
        tok = h + "." + b64(json.dumps(claims).encode()) + "." + s
    print(tok)
PY
mint() { "$PY" "$T_TMP/mint.py" "$1" "$T_TMP/$2.key" "$3" "${4:-{\}}" "${5:-plain}" "${6:-}"; }
# hdr NAME < echo body: the values the backend saw for header NAME, joined with "|"
hdr() { "$PY" -c 'import json,sys; d=json.load(sys.stdin)
print("|".join(v for n, v in d["headers"] if n.lower() == sys.argv[1].lower()))' "$1"; }
# requests the backend saw, /stats excluded (its request log, one line each)
reqs() { grep -vc ' /stats' "$T_TMP/backend-$BK.log" 2>/dev/null || true; }

# --- valid tokens pass; the backend sees the claims, never the client's copies ---
tok_ec=$(mint ES256 ec "$id_ec")
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $tok_ec" -H 'X-Jwt-Sub: mallory' \
  -H 'x-jwt-scope: admin')
check_eq "ES256: backend sees sub" alice "$(printf '%s' "$body" | hdr X-Jwt-Sub)"
check_eq "ES256: backend sees scope (forged copy removed)" "read write" \
  "$(printf '%s' "$body" | hdr X-Jwt-Scope)"
tok_rs=$(mint RS256 rs "$id_rs")
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $tok_rs")
check_eq "RS256: backend sees sub" alice "$(printf '%s' "$body" | hdr X-Jwt-Sub)"
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $(mint ES256 ec "$id_ec" '{"scope":7}')" \
  -H 'X-Jwt-Sub: forged')
check_eq "number claim sent as text" 7 "$(printf '%s' "$body" | hdr X-Jwt-Scope)"
check_eq "object claim refused" 401 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/echo" \
  -H "Authorization: Bearer $(mint ES256 ec "$id_ec" '{"scope":{"a":1}}')")"
body=$("${C[@]}" "$U/echo" -H 'X-Jwt-Sub: forged' -H 'Host: plain.test')
check_eq "route without jwt: untouched" forged "$(printf '%s' "$body" | hdr X-Jwt-Sub)"

# --- every refused token: 401, WWW-Authenticate, JSON reason, backend sees nothing ---
now=$(date +%s)
# refused DESCRIPTION REASON TOKEN [curl args]
refused() {
  local d=$1 want=$2 tok=$3; shift 3
  local before out st
  before=$(reqs)
  out=$("${C[@]}" -D "$T_TMP/h" "$U/echo" ${tok:+-H "Authorization: Bearer $tok"} "$@")
  st=$(head -1 "$T_TMP/h" | cut -d' ' -f2)
  if [ "$st" = 401 ] && grep -qi '^WWW-Authenticate: Bearer error="invalid_token"' "$T_TMP/h" \
     && [ "$(printf '%s' "$out" | jget "['reason']" 2>/dev/null)" = "$want" ] \
     && [ "$(printf '%s' "$out" | jget "['error']" 2>/dev/null)" = invalid_token ] \
     && [ "$(reqs)" = "$before" ]; then
    ok "$d"
  else
    fail "$d (status $st, body $out, backend requests $before -> $(reqs))"
  fi
}
refused "no token" missing ""
refused "another scheme" missing "" -H 'Authorization: Basic dXNlcjpwYXNz'
refused "two tokens" malformed "$tok_ec" -H "Authorization: Bearer $tok_rs"
refused "expired" expired "$(mint ES256 ec "$id_ec" "{\"exp\":$((now - 120))}")"
refused "future nbf" not_yet_valid "$(mint ES256 ec "$id_ec" "{\"nbf\":$((now + 600))}")"
refused "wrong aud" bad_audience "$(mint ES256 ec "$id_ec" '{"aud":"someone-else"}')"
refused "wrong iss" bad_issuer "$(mint ES256 ec "$id_ec" '{"iss":"https://evil.test"}')"
refused "tampered payload" bad_signature "$(mint ES256 ec "$id_ec" '{}' tamper)"
refused "alg none" malformed "$(mint ES256 ec "$id_ec" '{}' none)"
refused "HS256 keyed with the public key" bad_alg "$(mint ES256 rs "$id_rs" '{}' hs-pub "$T_TMP/rs.crt")"
refused "unknown kid" unknown_key "$(mint ES256 ec no-such-key)"
refused "garbage" malformed "not.a.token"
refused "keys naming no stored entity" unknown_key "$tok_ec" -H 'Host: keys.test'
refused "algorithms: ES256 only" bad_alg "" -H 'Host: cookie.test' -H "Cookie: session=$tok_rs"

# A request with a body is refused before the body is read (the 401 arrives although the
# client waits for 100 Continue, which never comes).
before=$(reqs)
st=$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Expect: 100-continue' \
  --data-binary @"$T_TMP/mint.py" "$U/upload")
check_eq "upload without token -> 401" 401 "$st"
check_eq "upload never reached the backend" "$before" "$(reqs)"

# --- cookie source ---
body=$("${C[@]}" "$U/echo" -H 'Host: cookie.test' -H "Cookie: a=b; session=$tok_ec; c=d" \
  -H 'X-User: forged')
check_eq "token in a cookie passes" alice "$(printf '%s' "$body" | hdr X-User)"

# --- _sign and _verify ---
api POST "/api/certificates/$id_ec/_sign" -H 'Content-Type: application/json' \
  -d '{"claims":{"sub":"svc","iss":"https://idp.test","aud":"api"},"lifetime_s":600}'
check_eq "_sign -> 200" 200 "$T_STATUS"
signed=$(printf '%s' "$T_BODY" | jget "['token']")
curl -s "$PUB/.well-known/jwks.json" > "$T_TMP/jwks.json"
res=$("$PY" - "$signed" "$T_TMP/jwks.json" "$id_ec" <<'PY' 2>&1
import base64, hashlib, json, sys, jwt
tok, jwks, kid = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
hdr = jwt.get_unverified_header(tok)
key = jwt.PyJWKSet.from_dict(jwks)[hdr["kid"]].key
c = jwt.decode(tok, key, algorithms=[hdr["alg"]], audience="api", issuer="https://idp.test")
# the key kid: "<id>.<t>", t = base64url of the first 16 bytes of the RFC 7638 thumbprint
jwk = next(k for k in jwks["keys"] if k["kid"] == hdr["kid"])
req = {m: jwk[m] for m in ("crv", "e", "kty", "n", "x", "y") if m in jwk}
th = hashlib.sha256(json.dumps(req, sort_keys=True, separators=(",", ":")).encode()).digest()
want = kid + "." + base64.urlsafe_b64encode(th[:16]).decode().rstrip("=")
print("verified" if c["sub"] == "svc" and hdr["kid"] == want and c["exp"] - c["iat"] == 600 else "mismatch")
PY
)
check_eq "PyJWT verifies the _sign token against the JWKS" verified "$res"
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $signed")
check_eq "the route accepts the _sign token" svc "$(printf '%s' "$body" | hdr X-Jwt-Sub)"
api POST "/api/certificates/$id_ec/_sign" -H 'Content-Type: application/json' \
  -d '{"claims":{"sub":"svc"},"lifetime_s":999999}'
check_eq "_sign: lifetime over the cap -> 400" 400 "$T_STATUS"
api POST "/api/certificates/$id_ec/_sign" -H 'Content-Type: application/json' \
  -d '{"claims":{"sub":"svc","exp":1}}'
check_eq "_sign: exp in claims -> 400" 400 "$T_STATUS"
api POST "/api/certificates/$id_ec/_sign" -H 'Content-Type: application/json' -d '{"claim":{}}'
check_eq "_sign: unknown key -> 400" 400 "$T_STATUS"
api POST "/api/certificates/nope/_sign" -H 'Content-Type: application/json' -d '{"claims":{}}'
check_eq "_sign: unknown id -> 404" 404 "$T_STATUS"
case "$T_BODY" in *PRIVATE*) fail "_sign reply holds a key" ;; esac
api POST "/api/certificates/$id_ec/_verify" -H 'Content-Type: application/json' \
  -d "{\"token\":\"$signed\",\"audience\":\"api\",\"issuer\":\"https://idp.test\"}"
check_eq "_verify valid" "True svc" "$(printf '%s' "$T_BODY" | jget "['valid']") $(printf '%s' "$T_BODY" | jget "['claims']['sub']")"
api POST "/api/certificates/$id_ec/_verify" -H 'Content-Type: application/json' \
  -d "{\"token\":\"$(mint ES256 ec "$id_ec" '{}' tamper)\",\"audience\":\"api\"}"
check_eq "_verify tampered" "False bad_signature" "$(printf '%s' "$T_BODY" | jget "['valid']") $(printf '%s' "$T_BODY" | jget "['error']")"
api POST "/api/certificates/$id_rs/_verify" -H 'Content-Type: application/json' \
  -d "{\"token\":\"$signed\",\"audience\":\"api\"}"
check_eq "_verify with another key" "False unknown_key" "$(printf '%s' "$T_BODY" | jget "['valid']") $(printf '%s' "$T_BODY" | jget "['error']")"
api GET "/api/certificates/$id_ec/_verify"
check_eq "_verify GET -> 405" 405 "$T_STATUS"

# --- rotation: a forced renewal makes a new key under the same id; old tokens still pass ---
sign_rs() { # sign_rs SUB > token (via _sign with the rs key pair)
  api POST "/api/certificates/$id_rs/_sign" -H 'Content-Type: application/json' \
    -d "{\"claims\":{\"sub\":\"$1\",\"iss\":\"https://idp.test\",\"aud\":\"api\"}}"
  printf '%s' "$T_BODY" | jget "['token']"
}
kid_of() { "$PY" -c 'import jwt,sys; print(jwt.get_unverified_header(sys.argv[1])["kid"])' "$1"; }
# jose_check TOKEN > "verified" or jose's error: jose verifies against the public JWKS
jose_check() {
  IT_DIR="$T_IT_DIR" node "$T_TMP/jose_verify.mjs" "$1" "$PUB/.well-known/jwks.json" 2>&1
}
tok_pre=$(sign_rs pre)
kid_pre=$(kid_of "$tok_pre")
have_jose=0
if t_jose_available; then
  have_jose=1
  cat > "$T_TMP/jose_verify.mjs" <<'JS'
import { createRequire } from 'module';
const require = createRequire(process.env.IT_DIR + '/');
const { createRemoteJWKSet, jwtVerify } = require('jose');
const [tok, url] = process.argv.slice(2);
const { payload } = await jwtVerify(tok, createRemoteJWKSet(new URL(url)),
  { issuer: 'https://idp.test', audience: 'api' });
console.log(payload.sub === 'pre' || payload.sub === 'new' ? 'verified' : 'wrong claims');
JS
  check_eq "jose verifies the _sign token before the rotation" verified "$(jose_check "$tok_pre")"
else
  echo "skip - jose checks: node/npm or the npm package jose is not available"
fi
api POST "/api/certificates/$id_rs/_renew"
check_eq "key pair rs renewed" 200 "$T_STATUS"
api POST "/api/certificates/$id_rs/_sign" -H 'Content-Type: application/json' \
  -d '{"claims":{"sub":"new","iss":"https://idp.test","aud":"api"}}'
tok_new=$(printf '%s' "$T_BODY" | jget "['token']")
ok_after=0
for _ in $(seq 1 300); do # the key set is republished by the store feed
  b=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $tok_new" | hdr X-Jwt-Sub 2>/dev/null)
  if [ "$b" = new ]; then ok_after=1; break; fi
  sleep 0.1
done
check_eq "token of the new key passes" 1 "$ok_after"
kid_new=$(kid_of "$tok_new")
case "$kid_new" in "$id_rs".*) ok "new token's kid is a key kid of the id" ;; *) fail "new kid $kid_new" ;; esac
if [ "$kid_new" != "$kid_pre" ]; then ok "a token signed after the rotation carries the new kid"
else fail "the kid did not change with the key ($kid_new)"; fi
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $tok_pre")
check_eq "the _sign token of the old key passes the route after the rotation" pre \
  "$(printf '%s' "$body" | hdr X-Jwt-Sub)"
wait_jwks present "$kid_new" || fail "the new key kid is published"
if [ "$have_jose" = 1 ]; then
  check_eq "jose verifies the old _sign token after the rotation" verified "$(jose_check "$tok_pre")"
  check_eq "jose verifies the new _sign token" verified "$(jose_check "$tok_new")"
fi
body=$("${C[@]}" "$U/echo" -H "Authorization: Bearer $tok_rs")
check_eq "token of the old key still passes after the rotation" alice \
  "$(printf '%s' "$body" | hdr X-Jwt-Sub)"
copy=$(api GET "/api/certificates"; printf '%s' "$T_BODY" | "$PY" -c '
import json,sys; live=sys.argv[1]
print(next(e["id"] for e in json.load(sys.stdin) if (e.get("metadata") or {}).get("nextCertificate") == live))' "$id_rs")
api DELETE "/api/certificates/$copy"
check_eq "old key's copy deleted" 200 "$T_STATUS"
wait_jwks absent "$copy" || fail "copy left the key set"
refused "old key gone: its token refused" bad_signature "$tok_rs"
wait_jwks absent "$kid_pre" || fail "the old key kid left the key set"
refused "old key gone: its _sign token refused" unknown_key "$tok_pre"
if [ "$have_jose" = 1 ]; then
  res=$(jose_check "$tok_pre")
  case "$res" in *verified*) fail "jose still verifies the old token: $res" ;;
    *) ok "jose refuses the old token once the old key is gone" ;; esac
fi

# --- revocation applies to the next request ---
api PATCH "/api/certificates/$id_ec" -H 'Content-Type: application/json' \
  -d '[{"op":"replace","path":"/revoked","value":true}]'
check_eq "key pair ec revoked" 200 "$T_STATUS"
wait_jwks absent "$id_ec" || fail "revoked key left the key set"
refused "revoked key's token" unknown_key "$tok_ec"

# --- metrics ---
api GET /metrics
m=$(printf '%s\n' "$T_BODY" | grep '^torii_jwt_verifications_total{route="0",outcome="ok"}' | awk '{print $2}')
[ "${m:-0}" -ge 3 ] && ok "metric ok count ($m)" || fail "metric ok count (${m:-none})"
m=$(printf '%s\n' "$T_BODY" | grep '^torii_jwt_verifications_total{route="2",outcome="unknown_key"}' | awk '{print $2}')
check_eq "metric of route 2" 1 "${m:-none}"

t_stop || fail "daemon exit status"
t_done
