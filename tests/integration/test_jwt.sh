#!/usr/bin/env bash
# test_jwt.sh - JWT verification and signing (src/jwt) against tokens of an outside library:
# Debian's python3-jwt (PyJWT, run with /usr/bin/python3) mints tokens with key pairs the real
# daemon generated and exposes; the torii-jwt test driver verifies them against the daemon's
# JWKS (every refusal of docs/jwt.md included); a revoked key pair leaves the JWKS and its tokens
# stop verifying; and PyJWT verifies a token torii signed.
source "$(dirname "$0")/lib.sh"
JWT_TOOL=${TORII_JWT_TOOL:-$(dirname "$TORII_BIN")/tests/torii-jwt}
PY=/usr/bin/python3

if ! "$PY" -c 'import jwt, cryptography' 2>/dev/null; then
  echo "skip - python3-jwt is not installed (scripts/deps.sh installs it)"
  exit 0
fi
if [ ! -x "$JWT_TOOL" ]; then
  echo "FAIL - torii-jwt test driver not found at $JWT_TOOL"
  exit 1
fi

t_config
t_start || exit 1
PUB="http://127.0.0.1:$T_HTTP"
jwks() { curl -s "$PUB/.well-known/jwks.json" > "$T_TMP/jwks.json"; }

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
jwks

# mint NAME ALG KEY KID [claim overrides as JSON] [mode]: PyJWT signs; mode "tamper" swaps the
# payload after signing, "none" makes an unsigned token, "hs-pub" an HS256 token keyed with the
# public key PEM.
cat > "$T_TMP/mint.py" <<'PY'
import base64, hashlib, hmac, json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography import x509
alg, keyfile, kid, over, mode = sys.argv[1:6]
now = int(time.time())
claims = {"sub": "alice", "iss": "https://idp.test", "aud": "api", "iat": now, "exp": now + 300}
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
# verdict TOKEN_FILE: what torii-jwt says about a token (iss and aud as a route would require)
verdict() { "$JWT_TOOL" verify "$T_TMP/jwks.json" "$1" --iss https://idp.test --aud api 2>/dev/null; }
# expect DESCRIPTION VERDICT ALG KEY KID [OVERRIDES] [MODE] [CERT]
expect() {
  local d=$1 want=$2 alg=$3 key=$4 kid=$5 over=${6:-"{}"} mode=${7:-plain} cert=${8:-}
  if ! "$PY" "$T_TMP/mint.py" "$alg" "$T_TMP/$key.key" "$kid" "$over" "$mode" "$cert" > "$T_TMP/tok"; then
    fail "$d (PyJWT could not mint the token)"
    return
  fi
  check_eq "$d" "$want" "$(verdict "$T_TMP/tok")"
}

now=$(date +%s)
expect "PyJWT ES256 token verifies" ok ES256 ec "$id_ec"
expect "PyJWT RS256 token verifies" ok RS256 rs "$id_rs"
expect "PyJWT PS256 token verifies" ok PS256 rs "$id_rs"
expect "aud as an array verifies" ok ES256 ec "$id_ec" '{"aud":["other","api"]}'
expect "expired token refused" expired ES256 ec "$id_ec" "{\"exp\":$((now - 120))}"
expect "future nbf refused" not_yet_valid ES256 ec "$id_ec" "{\"nbf\":$((now + 600))}"
expect "wrong aud refused" bad_audience ES256 ec "$id_ec" '{"aud":"someone-else"}'
expect "wrong iss refused" bad_issuer ES256 ec "$id_ec" '{"iss":"https://evil.test"}'
expect "tampered payload refused" bad_signature ES256 ec "$id_ec" '{}' tamper
expect "alg none refused" malformed ES256 ec "$id_ec" '{}' none
expect "HS256 keyed with the public key refused" bad_alg ES256 rs "$id_rs" '{}' hs-pub "$T_TMP/rs.crt"
expect "unknown kid refused" unknown_key ES256 ec "no-such-key"
expect "ES256 token under the RSA kid refused" bad_alg ES256 ec "$id_rs"
"$PY" "$T_TMP/mint.py" ES256 "$T_TMP/ec.key" "$id_ec" '{}' plain > "$T_TMP/ec_tok"
"$JWT_TOOL" verify "$T_TMP/jwks.json" "$T_TMP/ec_tok" --iss https://idp.test >/dev/null 2>&1
check_eq "a token with aud refused by a route that expects none" 1 "$?"

# Revocation: the key pair leaves the JWKS, its tokens stop verifying; the other key stays.
api PATCH "/api/certificates/$id_ec" -H 'Content-Type: application/json' \
  -d '[{"op":"replace","path":"/revoked","value":true}]'
check_eq "key pair ec revoked" 200 "$T_STATUS"
jwks
check_eq "revoked key pair's token refused" unknown_key "$(verdict "$T_TMP/ec_tok")"
expect "RS256 token still verifies after the revocation" ok RS256 rs "$id_rs"

# The other way round: torii signs, PyJWT verifies with the certificate's public key.
printf '{"sub":"alice","aud":"api","exp":%d}' $((now + 300)) > "$T_TMP/claims.json"
for name in ec rs; do
  id_var="id_$name"
  if "$JWT_TOOL" sign "$T_TMP/$name.key" "${!id_var}" "$T_TMP/claims.json" > "$T_TMP/t_$name"; then
    res=$("$PY" - "$T_TMP/t_$name" "$T_TMP/$name.crt" "${!id_var}" <<'PY' 2>&1
import sys, jwt
from cryptography import x509
tok = open(sys.argv[1]).read().strip()
pub = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read()).public_key()
hdr = jwt.get_unverified_header(tok)
claims = jwt.decode(tok, pub, algorithms=["ES256", "RS256"], audience="api")
print("verified" if claims["sub"] == "alice" and hdr["kid"] == sys.argv[3] else "mismatch")
PY
)
    check_eq "PyJWT verifies a token torii signed with the $name key" verified "$res"
  else
    fail "torii-jwt sign with the $name key"
  fi
done

t_stop || fail "daemon exit status"
t_done
