/* jwks.c - the JWK Set of exposed certificate keys (RFC 7517, RFC 7518 6.2/6.3).
 *
 * Otoroshi (reference 7) emits kty/n/e or kty/crv/x/y with kid = entity id, and so do we; each
 * key is listed a second time under its key kid "<id>.<thumbprint>" (docs/jwt.md, Key ids),
 * which names that key even after a rotation gave the id a new one. Ed25519 keys
 * are published as OKP (RFC 8037), which Otoroshi does not emit. We add use,
 * alg, x5c and x5t#S256 (RFC 7517 4.7, 4.9), which verifiers may ignore, and require the
 * private key to match the leaf: a published key nobody can sign with helps no one. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/jwt.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

static int jwks_set_b64(json_t *o, const char *k, const unsigned char *d, size_t n, int url)
{
    char *s = torii_b64_encode(d, n, url, NULL);
    int rc;

    if (s == NULL) {
        return TORII_ENOMEM;
    }
    rc = json_object_set_new(o, k, json_string(s)) == 0 ? TORII_OK : TORII_ENOMEM;
    free(s);
    return rc;
}

/* Big-endian unsigned bytes of bn, left-padded to `pad` bytes (0 = minimal). */
static int jwks_set_bn(json_t *o, const char *k, const BIGNUM *bn, int pad)
{
    int n = pad > 0 ? pad : BN_num_bytes(bn);
    unsigned char *buf;
    int rc;

    if (n <= 0 || n > 2048 || BN_num_bytes(bn) > n) {
        return TORII_EINVAL;
    }
    buf = torii_xmalloc((size_t)n);
    if (BN_bn2binpad(bn, buf, n) != n) {
        free(buf);
        return TORII_EINVAL;
    }
    rc = jwks_set_b64(o, k, buf, (size_t)n, 1);
    free(buf);
    return rc;
}

static int jwks_rsa(EVP_PKEY *pub, json_t *jwk)
{
    int rc = TORII_OK;
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;

    TORII_ENSURE(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1
                     && EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) == 1,
                 TORII_EINVAL);
    TORII_ENSURE(json_object_set_new(jwk, "kty", json_string("RSA")) == 0, TORII_ENOMEM);
    TORII_TRY(jwks_set_bn(jwk, "n", n, 0));
    TORII_TRY(jwks_set_bn(jwk, "e", e, 0));
    TORII_ENSURE(json_object_set_new(jwk, "alg", json_string("RS256")) == 0, TORII_ENOMEM);
out:
    BN_free(n);
    BN_free(e);
    return rc;
}

/* RFC 7518 6.2.1.2: coordinates are padded to the full field size. */
static const struct jwks_curve {
    const char *group; /* OpenSSL's name */
    const char *nist;  /* its other spelling */
    const char *crv;
    const char *alg;
    int len;
} jwks_curves[] = {
    {"prime256v1", "P-256", "P-256", "ES256", 32},
    {"secp384r1", "P-384", "P-384", "ES384", 48},
    {"secp521r1", "P-521", "P-521", "ES512", 66},
};

static const struct jwks_curve *jwks_curve_of(const char *group)
{
    for (size_t i = 0; i < sizeof(jwks_curves) / sizeof(jwks_curves[0]); i++) {
        if (strcmp(group, jwks_curves[i].group) == 0 || strcmp(group, jwks_curves[i].nist) == 0) {
            return &jwks_curves[i];
        }
    }
    return NULL;
}

static int jwks_ec(EVP_PKEY *pub, json_t *jwk)
{
    int rc = TORII_OK;
    BIGNUM *x = NULL;
    BIGNUM *y = NULL;
    char group[32];
    const struct jwks_curve *c = NULL;
    const char *crv;
    const char *alg;
    int len;

    TORII_ENSURE(
        EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL)
            == 1,
        TORII_EINVAL);
    c = jwks_curve_of(group);
    TORII_ENSURE(c != NULL, TORII_EUNSUPPORTED);
    crv = c->crv;
    alg = c->alg;
    len = c->len;
    TORII_ENSURE(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1
                     && EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1,
                 TORII_EINVAL);
    TORII_ENSURE(json_object_set_new(jwk, "kty", json_string("EC")) == 0
                     && json_object_set_new(jwk, "crv", json_string(crv)) == 0,
                 TORII_ENOMEM);
    TORII_TRY(jwks_set_bn(jwk, "x", x, len));
    TORII_TRY(jwks_set_bn(jwk, "y", y, len));
    TORII_ENSURE(json_object_set_new(jwk, "alg", json_string(alg)) == 0, TORII_ENOMEM);
out:
    BN_free(x);
    BN_free(y);
    return rc;
}

/* RFC 8037 2: an Ed25519 key is kty OKP, crv Ed25519, x = the raw 32-byte public key. */
static int jwks_okp(EVP_PKEY *pub, json_t *jwk)
{
    unsigned char raw[32];
    size_t len = sizeof(raw);

    if (EVP_PKEY_get_raw_public_key(pub, raw, &len) != 1 || len != sizeof(raw)) {
        return TORII_EINVAL;
    }
    if (json_object_set_new(jwk, "kty", json_string("OKP")) != 0
        || json_object_set_new(jwk, "crv", json_string("Ed25519")) != 0
        || json_object_set_new(jwk, "alg", json_string("EdDSA")) != 0) {
        return TORII_ENOMEM;
    }
    return jwks_set_b64(jwk, "x", raw, len, 1);
}

/* kty and the public members of pub's JWK (RSA, EC, OKP) into jwk. */
static int jwks_key_members(EVP_PKEY *pub, json_t *jwk)
{
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA:
        return jwks_rsa(pub, jwk);
    case EVP_PKEY_EC:
        return jwks_ec(pub, jwk);
    case EVP_PKEY_ED25519:
        return jwks_okp(pub, jwk);
    default:
        return TORII_EUNSUPPORTED;
    }
}

/* RFC 7638 3.2: the required members of the key type only, sorted, no whitespace. */
static char *jwks_thumb_input(const json_t *jwk)
{
    static const char *const members[] = {"crv", "e", "kty", "n", "x", "y"};
    json_t *req = json_object();
    char *text = NULL;

    if (req == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        json_t *v = json_object_get(jwk, members[i]);

        if (v != NULL && json_object_set(req, members[i], v) != 0) {
            goto out;
        }
    }
    text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
out:
    json_decref(req);
    return text;
}

int torii_pki__jwk_thumbprint(EVP_PKEY *pub, unsigned char out[32])
{
    int rc = TORII_OK;
    json_t *jwk = json_object();
    char *text = NULL;
    unsigned int len = 0;

    TORII_ENSURE(jwk != NULL, TORII_ENOMEM);
    TORII_TRY(jwks_key_members(pub, jwk));
    text = jwks_thumb_input(jwk);
    TORII_ENSURE(text != NULL, TORII_ENOMEM);
    TORII_ENSURE(EVP_Digest(text, strlen(text), out, &len, EVP_sha256(), NULL) == 1 && len == 32,
                 TORII_ETLS);
out:
    free(text);
    json_decref(jwk);
    return rc;
}

/* The live id an "[UNTIL EXPIRATION]" copy stands in for, else the entity's own id. */
static const char *jwks_base_id(const json_t *e)
{
    const json_t *md = json_object_get(e, "metadata");
    const char *next = json_string_value(json_object_get(md, "nextCertificate"));
    const char *until = json_string_value(json_object_get(md, "untilExpiration"));

    if (next != NULL && next[0] != '\0' && until != NULL && strcmp(until, "true") == 0) {
        return next;
    }
    return json_string_value(json_object_get(e, "id"));
}

int torii_pki__jwt_key_kid(const json_t *entity, EVP_PKEY *pub, char **out)
{
    int rc = TORII_OK;
    unsigned char thumb[32];
    const char *base = jwks_base_id(entity);
    char *t = NULL;
    size_t blen;

    TORII_ENSURE(base != NULL && base[0] != '\0', TORII_EINVAL);
    blen = strlen(base);
    TORII_ENSURE(blen + 1 + TORII_JWT_KID_THUMB_LEN <= TORII_JWT_MAX_KID, TORII_ETOOBIG);
    TORII_TRY(torii_pki__jwk_thumbprint(pub, thumb));
    t = torii_b64_encode(thumb, TORII_JWT_KID_THUMB_BYTES, 1, NULL);
    TORII_ENSURE(t != NULL && strlen(t) == TORII_JWT_KID_THUMB_LEN, TORII_ENOMEM);
    *out = torii_xmalloc(blen + 2 + TORII_JWT_KID_THUMB_LEN);
    memcpy(*out, base, blen);
    (*out)[blen] = '.';
    memcpy(*out + blen + 1, t, TORII_JWT_KID_THUMB_LEN + 1);
out:
    free(t);
    return rc;
}

/* RFC 7517 4.7: x5c is standard base64 (not url-safe) of the DER. */
static int jwks_x5c_add(json_t *x5c, const unsigned char *der, int len)
{
    char *b64 = torii_b64_encode(der, (size_t)len, 0, NULL);
    int ok = b64 != NULL && json_array_append_new(x5c, json_string(b64)) == 0;

    free(b64);
    return ok ? TORII_OK : TORII_ENOMEM;
}

static int jwks_x5c(STACK_OF(X509) * chain, json_t *jwk)
{
    int rc = TORII_OK;
    json_t *x5c = json_array();
    unsigned char *der = NULL;
    unsigned char hash[32];
    unsigned int hlen = 0;

    TORII_ENSURE(x5c != NULL, TORII_ENOMEM);
    for (int i = 0; i < sk_X509_num(chain) && rc == TORII_OK; i++) {
        int len = i2d_X509(sk_X509_value(chain, i), &der);

        TORII_ENSURE(len > 0, TORII_EINVAL);
        if (i == 0 && EVP_Digest(der, (size_t)len, hash, &hlen, EVP_sha256(), NULL) != 1) {
            rc = TORII_ETLS;
        }
        rc = rc == TORII_OK ? jwks_x5c_add(x5c, der, len) : rc;
        OPENSSL_free(der);
        der = NULL;
    }
    TORII_TRY(rc);
    TORII_ENSURE(json_object_set(jwk, "x5c", x5c) == 0, TORII_ENOMEM);
    TORII_TRY(jwks_set_b64(jwk, "x5t#S256", hash, hlen, 1));
out:
    OPENSSL_free(der);
    json_decref(x5c);
    return rc;
}

/* The chain of a publishable entity (exposed, not revoked, with an id and a private key that
 * matches its leaf); TORII_ENOTFOUND when it is not to be published. */
static int jwks_chain(const json_t *e, const struct torii_kek_ring *kek, STACK_OF(X509) * *chain)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *pk = json_string_value(json_object_get(e, "privateKey"));

    TORII_ENSURE(json_is_object(e) && json_is_true(json_object_get(e, "exposed"))
                     && !json_is_true(json_object_get(e, "revoked")) && pk != NULL && pk[0] != '\0',
                 TORII_ENOTFOUND);
    TORII_ENSURE(id != NULL && id[0] != '\0', TORII_EINVAL);
    TORII_TRY(torii_pki__chain_parse(json_string_value(json_object_get(e, "chain")), chain, NULL));
    TORII_TRY(torii_pki_key_open(kek, id, pk, json_string_value(json_object_get(e, "password")),
                                 &key, NULL));
    TORII_ENSURE(X509_check_private_key(sk_X509_value(*chain, 0), key) == 1, TORII_EINVAL);
    TORII_ENSURE(X509_get0_pubkey(sk_X509_value(*chain, 0)) != NULL, TORII_EINVAL);
out:
    if (rc != TORII_OK) {
        sk_X509_pop_free(*chain, X509_free);
        *chain = NULL;
    }
    ERR_clear_error();
    EVP_PKEY_free(key);
    return rc;
}

/* The entity's JWK under its id (*out) and the same key under its key kid (*keyed, docs/jwt.md
 * "Key ids"; NULL for an id too long to make one), or TORII_ENOTFOUND when the entity is not to
 * be published. */
static int jwks_one(const json_t *e, const struct torii_kek_ring *kek, json_t **out, json_t **keyed)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    json_t *jwk = NULL;
    const char *id = json_string_value(json_object_get(e, "id"));
    EVP_PKEY *pub;
    char *kid = NULL;

    TORII_TRY(jwks_chain(e, kek, &chain));
    pub = X509_get0_pubkey(sk_X509_value(chain, 0));
    jwk = json_object();
    TORII_ENSURE(jwk != NULL, TORII_ENOMEM);
    TORII_TRY(jwks_key_members(pub, jwk));
    TORII_ENSURE(json_object_set_new(jwk, "kid", json_string(id)) == 0
                     && json_object_set_new(jwk, "use", json_string("sig")) == 0,
                 TORII_EINVAL);
    TORII_TRY(jwks_x5c(chain, jwk));
    /* An id too long for a key kid: published under the id only. */
    if (torii_pki__jwt_key_kid(e, pub, &kid) == TORII_OK) {
        *keyed = json_deep_copy(jwk);
        TORII_ENSURE(*keyed != NULL && json_object_set_new(*keyed, "kid", json_string(kid)) == 0,
                     TORII_ENOMEM);
    }
    *out = jwk;
    jwk = NULL;
out:
    free(kid);
    if (rc != TORII_OK) {
        json_decref(*keyed);
        *keyed = NULL;
    }
    ERR_clear_error();
    json_decref(jwk);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

static void jwks_skipped(const json_t *e, int rc)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    char esc[128];

    torii_log(
        TORII_LOG_WARN, "jwks: certificate skipped: %s (id=%s)", torii_strerror(rc),
        torii_log_escape(id != NULL ? id : "", id != NULL ? strlen(id) : 0, esc, sizeof(esc)));
}

json_t *torii_pki_jwks_build(const json_t *entities, const struct torii_kek_ring *kek)
{
    json_t *doc = json_object();
    json_t *keys = json_array();
    json_t *keyed = json_array();
    size_t i;
    const json_t *e;
    int ok =
        doc != NULL && keys != NULL && keyed != NULL && json_object_set(doc, "keys", keys) == 0;

    json_array_foreach (entities, i, e) {
        json_t *jwk = NULL;
        json_t *kjwk = NULL;
        int rc = ok ? jwks_one(e, kek, &jwk, &kjwk) : TORII_ENOTFOUND;

        if (rc == TORII_OK) {
            int a = json_array_append_new(keys, jwk);
            int b = kjwk != NULL ? json_array_append_new(keyed, kjwk) : 0;

            ok = a == 0 && b == 0;
        } else if (rc != TORII_ENOTFOUND) {
            jwks_skipped(e, rc);
        }
    }
    /* The entity-id entries first (Otoroshi's kid, in entity order), then each key under its
     * key kid. */
    ok = ok && json_array_extend(keys, keyed) == 0;
    json_decref(keys);
    json_decref(keyed);
    if (!ok) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
