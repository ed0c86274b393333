/* test_jwt.c - unit tests for the JWT module (jwt.h): tokens made here with OpenSSL directly
 * (not with torii_jwt_sign, so a bug shared by signer and verifier cannot hide), every refusal
 * the edge must make (expired, future nbf/iat, wrong aud/iss, tampered payload, alg none, HS256
 * with the public key as secret, unknown kid, forbidden header parameters, malformed input),
 * key rotation under one kid, the key set the PKI state publishes (revocation, rotation
 * copies), signing with a stored key pair, and a micro-benchmark of ES256 verification against
 * a bare EVP_DigestVerify (printed, never asserted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/codec.h"
#include "torii/jwt.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkistate.h"
#include "torii/renew.h"
#include "torii/store.h"

struct fixture {
    EVP_PKEY *ec;    /* kid "ec" */
    EVP_PKEY *ec384; /* kid "ec384" */
    EVP_PKEY *rsa;   /* kid "rsa" */
    EVP_PKEY *ed;    /* kid "ed" */
    EVP_PKEY *other; /* P-256, in no set */
    EVP_PKEY *rsa1k; /* too small */
    struct torii_jwt_keyset *ks;
    int64_t now_ms;
    int64_t now_s;
};

static struct fixture *fx;

/* ---- token making, independent of the module -------------------------------------------- */

static void b64url(const unsigned char *d, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, d, (int)n);

    while (len > 0 && out[len - 1] == '=') {
        len--;
    }
    for (int i = 0; i < len; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[len] = '\0';
}

/* Sign in[0..n) with key as alg ("ES256", "ES384", "RS256", "PS256", "EdDSA"). */
static size_t raw_sign(EVP_PKEY *key, const char *alg, const char *in, size_t n, unsigned char *sig)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = strcmp(alg, "ES384") == 0   ? EVP_sha384()
                       : strcmp(alg, "EdDSA") == 0 ? NULL
                                                   : EVP_sha256();
    unsigned char der[256];
    size_t len = sizeof(der);

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md, NULL, key), 1);
    if (strcmp(alg, "PS256") == 0) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
    }
    if (alg[0] == 'E' && alg[1] == 'S') {
        size_t half = strcmp(alg, "ES256") == 0 ? 32 : 48;
        assert_int_equal(EVP_DigestSign(ctx, der, &len, (const unsigned char *)in, n), 1);
        assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, len, half, sig), TORII_OK);
        len = 2 * half;
    } else {
        len = 1024;
        assert_int_equal(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)in, n), 1);
    }
    EVP_MD_CTX_free(ctx);
    return len;
}

/* "b64(hdr).b64(claims).b64(sig)": sig by key as alg; alg "HS256" uses secret as the HMAC
 * key; alg NULL appends raw_sig verbatim. malloc'd. */
static char *mk_full(const char *hdr, const char *claims, EVP_PKEY *key, const char *alg,
                     const unsigned char *secret, size_t secret_len, const char *raw_sig)
{
    size_t hl = strlen(hdr);
    size_t cl = strlen(claims);
    char *tok = torii_xmalloc(hl * 2 + cl * 2 + 2048);
    unsigned char sig[1024];
    unsigned int sl = 0;
    size_t n;

    b64url((const unsigned char *)hdr, hl, tok);
    n = strlen(tok);
    tok[n++] = '.';
    b64url((const unsigned char *)claims, cl, tok + n);
    n += strlen(tok + n);
    if (alg == NULL) {
        (void)snprintf(tok + n, 1400, ".%s", raw_sig);
        return tok;
    }
    if (strcmp(alg, "HS256") == 0) {
        assert_non_null(
            HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)tok, n, sig, &sl));
    } else {
        sl = (unsigned int)raw_sign(key, alg, tok, n, sig);
    }
    tok[n++] = '.';
    b64url(sig, sl, tok + n);
    return tok;
}

static char *mk(const char *alg, const char *kid, const char *claims, EVP_PKEY *key)
{
    char hdr[256];

    (void)snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
    return mk_full(hdr, claims, key, alg, NULL, 0, NULL);
}

/* Claims valid now: sub, iss "https://idp.test", aud "api", exp now+600, plus extra. */
static char *claims(const char *extra)
{
    char *c = torii_xmalloc(512);

    (void)snprintf(c, 512,
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"iat\":%lld,"
                   "\"exp\":%lld%s%s}",
                   (long long)fx->now_s - 10, (long long)fx->now_s + 600, extra[0] ? "," : "",
                   extra);
    return c;
}

static const char *const aud_api[] = {"api"};

static struct torii_jwt_policy policy(void)
{
    struct torii_jwt_policy p;

    memset(&p, 0, sizeof(p));
    p.issuer = "https://idp.test";
    p.audiences = aud_api;
    p.n_audiences = 1;
    return p;
}

static enum torii_jwt_verdict check_at(const struct torii_jwt_keyset *ks,
                                       const struct torii_jwt_policy *p, const char *tok,
                                       int64_t now_ms)
{
    enum torii_jwt_verdict v = TORII_JWT_OK;
    struct torii_errbuf eb = {{0}};
    json_t *cl = NULL;
    int rc = torii_jwt_verify(ks, p, tok, strlen(tok), now_ms, &v, &cl, &eb);

    assert_int_equal(rc, v == TORII_JWT_OK ? TORII_OK : TORII_EPERM);
    if (v == TORII_JWT_OK) {
        assert_non_null(cl);
        assert_string_equal(json_string_value(json_object_get(cl, "sub")), "alice");
    } else {
        assert_null(cl);
        assert_true(eb.msg[0] != '\0');
    }
    json_decref(cl);
    return v;
}

static enum torii_jwt_verdict check(const char *tok)
{
    struct torii_jwt_policy p = policy();

    return check_at(fx->ks, &p, tok, fx->now_ms);
}

/* check() on mk(alg, kid, claims(extra), key), freeing everything. */
static enum torii_jwt_verdict check_mk(const char *alg, const char *kid, const char *extra,
                                       EVP_PKEY *key)
{
    char *c = claims(extra);
    char *t = mk(alg, kid, c, key);
    enum torii_jwt_verdict v = check(t);

    free(c);
    free(t);
    return v;
}

/* ---- fixture ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    fx = torii_xcalloc(1, sizeof(*fx));
    fx->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    fx->ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    fx->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    fx->ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    fx->other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    fx->rsa1k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (fx->ec == NULL || fx->ec384 == NULL || fx->rsa == NULL || fx->ed == NULL
        || fx->other == NULL || fx->rsa1k == NULL) {
        return 1;
    }
    fx->now_ms = torii_clock_now_ms();
    fx->now_s = fx->now_ms / 1000;
    fx->ks = torii_jwt_keyset_new();
    if (torii_jwt_keyset_add(fx->ks, "ec", 2, fx->ec, INT64_MAX, NULL) != TORII_OK
        || torii_jwt_keyset_add(fx->ks, "ec384", 5, fx->ec384, INT64_MAX, NULL) != TORII_OK
        || torii_jwt_keyset_add(fx->ks, "rsa", 3, fx->rsa, INT64_MAX, NULL) != TORII_OK
        || torii_jwt_keyset_add(fx->ks, "ed", 2, fx->ed, INT64_MAX, NULL) != TORII_OK) {
        return 1;
    }
    torii_jwt_keyset_seal(fx->ks);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    torii_jwt_keyset_unref(fx->ks);
    EVP_PKEY_free(fx->ec);
    EVP_PKEY_free(fx->ec384);
    EVP_PKEY_free(fx->rsa);
    EVP_PKEY_free(fx->ed);
    EVP_PKEY_free(fx->other);
    EVP_PKEY_free(fx->rsa1k);
    free(fx);
    return 0;
}

/* ---- valid tokens ------------------------------------------------------------------------ */

static void test_jwt_verify_valid_tokens_pass(void **state)
{
    (void)state;
    assert_int_equal(check_mk("ES256", "ec", "", fx->ec), TORII_JWT_OK);
    assert_int_equal(check_mk("ES384", "ec384", "", fx->ec384), TORII_JWT_OK);
    assert_int_equal(check_mk("RS256", "rsa", "", fx->rsa), TORII_JWT_OK);
    assert_int_equal(check_mk("PS256", "rsa", "", fx->rsa), TORII_JWT_OK);
    assert_int_equal(check_mk("EdDSA", "ed", "", fx->ed), TORII_JWT_OK);
    /* nbf in the past, aud as an array, a typ spelled as a media type */
    assert_int_equal(check_mk("ES256", "ec", "\"nbf\":1", fx->ec), TORII_JWT_OK);
}

static void test_jwt_verify_aud_array_and_typ_variants_pass(void **state)
{
    char cl[256];
    char *t;

    (void)state;
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":"
                   "[\"x\",\"api\"],\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\",\"typ\":\"application/at+jwt\"}", cl, fx->ec,
                "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_OK);
    free(t);
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\",\"typ\":\"JOSE\"}", cl, fx->ec, "ES256", NULL, 0,
                NULL);
    assert_int_equal(check(t), TORII_JWT_BAD_HEADER);
    free(t);
}

static void test_jwt_sign_roundtrip_every_key_type(void **state)
{
    EVP_PKEY *keys[] = {fx->ec, fx->ec384, fx->rsa, fx->ed};
    const char *kids[] = {"ec", "ec384", "rsa", "ed"};
    json_t *c = json_pack("{s:s, s:s, s:s, s:I}", "sub", "alice", "iss", "https://idp.test", "aud",
                          "api", "exp", (json_int_t)fx->now_s + 60);

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        char *tok = NULL;
        size_t len = 0;

        assert_int_equal(torii_jwt_sign(keys[i], 0, kids[i], c, &tok, &len, NULL), TORII_OK);
        assert_int_equal(strlen(tok), len);
        assert_int_equal(check(tok), TORII_JWT_OK);
        free(tok);
    }
    {
        char *tok = NULL;
        assert_int_equal(torii_jwt_sign(fx->rsa, TORII_JWT_PS256, "rsa", c, &tok, NULL, NULL),
                         TORII_OK);
        assert_int_equal(check(tok), TORII_JWT_OK);
        free(tok);
        /* an algorithm the key does not allow */
        assert_int_equal(torii_jwt_sign(fx->ec, TORII_JWT_ES384, "ec", c, &tok, NULL, NULL),
                         TORII_EINVAL);
        assert_int_equal(torii_jwt_sign(fx->rsa1k, 0, "x", c, &tok, NULL, NULL), TORII_EINVAL);
        assert_int_equal(torii_jwt_sign(fx->ec, 0, "", c, &tok, NULL, NULL), TORII_EINVAL);
    }
    json_decref(c);
}

/* ---- claims ------------------------------------------------------------------------------ */

static void test_jwt_verify_time_claims_rejected(void **state)
{
    char cl[256];
    char *t;
    struct torii_jwt_policy p = policy();

    (void)state;
    /* expired 30 s ago */
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":%lld}",
                   (long long)fx->now_s - 30);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_EXPIRED);
    p.leeway_s = 60; /* ... but within the leeway */
    assert_int_equal(check_at(fx->ks, &p, t, fx->now_ms), TORII_JWT_OK);
    free(t);
    /* exactly at exp: expired (RFC 7519 4.1.4: now must be before exp) */
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":%lld}",
                   (long long)fx->now_s);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check_at(fx->ks,
                              &(struct torii_jwt_policy){.issuer = "https://idp.test",
                                                         .audiences = aud_api,
                                                         .n_audiences = 1},
                              t, fx->now_s * 1000),
                     TORII_JWT_EXPIRED);
    free(t);
    /* no exp at all */
    t = mk("ES256", "ec", "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\"}",
           fx->ec);
    assert_int_equal(check(t), TORII_JWT_EXPIRED);
    free(t);
    /* future nbf, future iat; a string exp */
    assert_int_equal(check_mk("ES256", "ec", "\"nbf\":999999999999", fx->ec),
                     TORII_JWT_MALFORMED); /* beyond year 9999 */
    (void)snprintf(cl, sizeof(cl), "\"nbf\":%lld", (long long)fx->now_s + 120);
    assert_int_equal(check_mk("ES256", "ec", cl, fx->ec), TORII_JWT_NOT_YET_VALID);
    p.leeway_s = 300;
    {
        char *c = claims(cl);
        t = mk("ES256", "ec", c, fx->ec);
        assert_int_equal(check_at(fx->ks, &p, t, fx->now_ms), TORII_JWT_OK);
        free(t);
        free(c);
    }
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":%lld,"
                   "\"iat\":%lld}",
                   (long long)fx->now_s + 600, (long long)fx->now_s + 300);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_NOT_YET_VALID);
    free(t);
    t = mk("ES256", "ec",
           "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":\"never\"}",
           fx->ec);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
}

static void test_jwt_verify_wrong_aud_or_iss_rejected(void **state)
{
    char cl[256];
    char *t;
    struct torii_jwt_policy p = policy();

    (void)state;
    (void)snprintf(
        cl, sizeof(cl),
        "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"other\",\"exp\":%lld}",
        (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_AUDIENCE);
    free(t);
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":[\"a\",\"b\"],"
                   "\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_AUDIENCE);
    free(t);
    /* no aud claim while the route expects one */
    (void)snprintf(cl, sizeof(cl), "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_AUDIENCE);
    p.audiences = NULL;
    p.n_audiences = 0;
    assert_int_equal(check_at(fx->ks, &p, t, fx->now_ms), TORII_JWT_OK);
    free(t);
    /* an aud claim while the route expects none (RFC 7519 4.1.3) */
    {
        char *c = claims("");
        t = mk("ES256", "ec", c, fx->ec);
        assert_int_equal(check_at(fx->ks, &p, t, fx->now_ms), TORII_JWT_BAD_AUDIENCE);
        free(t);
        free(c);
    }
    /* wrong issuer, missing issuer, an issuer with a NUL inside */
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://evil.test\",\"aud\":\"api\",\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_ISSUER);
    free(t);
    (void)snprintf(cl, sizeof(cl),
                   "{\"sub\":\"alice\",\"iss\":\"https://idp.test\\u0000x\",\"aud\":\"api\","
                   "\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_MALFORMED); /* the JSON parser refuses \u0000 */
    free(t);
    (void)snprintf(cl, sizeof(cl), "{\"sub\":\"alice\",\"aud\":\"api\",\"exp\":%lld}",
                   (long long)fx->now_s + 60);
    t = mk("ES256", "ec", cl, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_ISSUER);
    free(t);
}

/* ---- signatures, algorithms, keys --------------------------------------------------------- */

static void test_jwt_verify_tampered_payload_rejected(void **state)
{
    char *c = claims("");
    char *t = mk("ES256", "ec", c, fx->ec);
    char *forged = claims("\"admin\":true");
    char enc[512];
    char *d1 = strchr(t, '.');
    char *d2 = strchr(d1 + 1, '.');
    char buf[2048];

    (void)state;
    /* the signature of one payload on another */
    b64url((const unsigned char *)forged, strlen(forged), enc);
    (void)snprintf(buf, sizeof(buf), "%.*s.%s%s", (int)(d1 - t), t, enc, d2);
    assert_int_equal(check(buf), TORII_JWT_BAD_SIGNATURE);
    /* one flipped signature character */
    (void)snprintf(buf, sizeof(buf), "%s", t);
    buf[strlen(buf) - 3] = buf[strlen(buf) - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(check(buf), TORII_JWT_BAD_SIGNATURE);
    /* a signature by another P-256 key under kid "ec" */
    free(t);
    t = mk("ES256", "ec", c, fx->other);
    assert_int_equal(check(t), TORII_JWT_BAD_SIGNATURE);
    free(t);
    free(c);
    free(forged);
}

static void test_jwt_verify_alg_none_and_hmac_rejected(void **state)
{
    char *c = claims("");
    char *t;
    unsigned char *der = NULL;
    int der_len;
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len;

    (void)state;
    t = mk_full("{\"alg\":\"none\",\"kid\":\"ec\"}", c, NULL, NULL, NULL, 0, "");
    assert_int_equal(check(t), TORII_JWT_MALFORMED); /* empty third part */
    free(t);
    t = mk_full("{\"alg\":\"none\",\"kid\":\"ec\"}", c, NULL, NULL, NULL, 0, "AAAA");
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    t = mk_full("{\"alg\":\"NONE\",\"kid\":\"ec\"}", c, NULL, NULL, NULL, 0, "AAAA");
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    /* HS256 "signed" with the verifier's public key as the HMAC secret, PEM and DER */
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, fx->rsa), 1);
    pem_len = BIO_get_mem_data(bio, &pem);
    t = mk_full("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"rsa\"}", c, NULL, "HS256",
                (const unsigned char *)pem, (size_t)pem_len, NULL);
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    der_len = i2d_PUBKEY(fx->ec, &der);
    assert_true(der_len > 0);
    t = mk_full("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"ec\"}", c, NULL, "HS256", der,
                (size_t)der_len, NULL);
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    OPENSSL_free(der);
    BIO_free(bio);
    /* an alg of the wrong key type or size */
    t = mk("RS256", "ec", c, fx->rsa);
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    t = mk("ES384", "ec", c, fx->ec384);
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    t = mk("ES256", "rsa", c, fx->ec);
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    /* RS512 is not on the list */
    t = mk_full("{\"alg\":\"RS512\",\"kid\":\"rsa\"}", c, NULL, NULL, NULL, 0, "AAAA");
    assert_int_equal(check(t), TORII_JWT_BAD_ALG);
    free(t);
    free(c);
}

static void test_jwt_verify_unknown_or_missing_kid_rejected(void **state)
{
    char *c = claims("");
    char *t;

    (void)state;
    t = mk("ES256", "nope", c, fx->ec);
    assert_int_equal(check(t), TORII_JWT_UNKNOWN_KEY);
    free(t);
    t = mk("ES256", "e", c, fx->ec); /* a prefix of a kid */
    assert_int_equal(check(t), TORII_JWT_UNKNOWN_KEY);
    free(t);
    t = mk_full("{\"alg\":\"ES256\"}", c, fx->ec, "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_UNKNOWN_KEY);
    free(t);
    t = mk_full("{\"alg\":\"ES256\",\"kid\":7}", c, fx->ec, "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_UNKNOWN_KEY);
    free(t);
    free(c);
}

static void test_jwt_verify_key_injection_headers_rejected(void **state)
{
    const char *hdrs[] = {
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"jku\":\"https://evil.test/jwks\"}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"jwk\":{\"kty\":\"EC\"}}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"x5u\":\"https://evil.test/c.pem\"}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"x5c\":[\"AAAA\"]}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"cty\":\"JWT\"}",
        "{\"alg\":\"ES256\",\"kid\":\"ec\",\"b64\":false}",
    };
    char *c = claims("");

    (void)state;
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *t = mk_full(hdrs[i], c, fx->ec, "ES256", NULL, 0, NULL);
        assert_int_equal(check(t), TORII_JWT_BAD_HEADER);
        free(t);
    }
    free(c);
}

static void test_jwt_verify_malformed_tokens_rejected(void **state)
{
    char *c = claims("");
    char *t = mk("ES256", "ec", c, fx->ec);
    char *big = torii_xmalloc(TORII_JWT_MAX_TOKEN + 64);
    char buf[2048];
    const char *bad[] = {
        "",          ".",         "..",           "a.b",          "a.b.c.d",       "e30.e30.",
        ".e30.AAAA", "e30..AAAA", "e30.e30.AA==", "e30.e30.AA+A", "e30 .e30.AAAA", "!!!.e30.AAAA"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(bad[i]), TORII_JWT_MALFORMED);
    }
    /* a valid token padded past the limit with an extra claim */
    memset(big, 'A', TORII_JWT_MAX_TOKEN + 10);
    big[TORII_JWT_MAX_TOKEN + 10] = '\0';
    memcpy(big, t, strlen(t));
    assert_int_equal(check(big), TORII_JWT_MALFORMED);
    /* trailing garbage after the signature, whitespace, a fourth part */
    (void)snprintf(buf, sizeof(buf), "%s.", t);
    assert_int_equal(check(buf), TORII_JWT_MALFORMED);
    (void)snprintf(buf, sizeof(buf), "%s\n", t);
    assert_int_equal(check(buf), TORII_JWT_MALFORMED);
    free(t);
    /* header: not JSON, an array, duplicate names, deep nesting */
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\"", c, fx->ec, "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    t = mk_full("[\"ES256\"]", c, fx->ec, "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\",\"kid\":\"rsa\"}", c, fx->ec, "ES256", NULL, 0,
                NULL);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\",\"x\":[[[[[[[[[[1]]]]]]]]]]}", c, fx->ec,
                "ES256", NULL, 0, NULL);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    /* signed, but the claims are not an object / not JSON */
    t = mk("ES256", "ec", "[1,2]", fx->ec);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    t = mk("ES256", "ec", "{\"exp\":", fx->ec);
    assert_int_equal(check(t), TORII_JWT_MALFORMED);
    free(t);
    /* an ES256 signature of the wrong length */
    t = mk_full("{\"alg\":\"ES256\",\"kid\":\"ec\"}", c, NULL, NULL, NULL, 0, "AAAA");
    assert_int_equal(check(t), TORII_JWT_BAD_SIGNATURE);
    free(t);
    free(big);
    free(c);
}

static void test_jwt_verify_bad_arguments(void **state)
{
    struct torii_jwt_policy p = policy();
    enum torii_jwt_verdict v;

    (void)state;
    assert_int_equal(torii_jwt_verify(fx->ks, &p, "a", 1, 0, NULL, NULL, NULL), TORII_EINVAL);
    assert_int_equal(torii_jwt_verify(NULL, &p, "a", 1, 0, &v, NULL, NULL), TORII_EINVAL);
    p.leeway_s = -1;
    assert_int_equal(torii_jwt_verify(fx->ks, &p, "a", 1, 0, &v, NULL, NULL), TORII_EINVAL);
    assert_int_equal(v, TORII_JWT_MALFORMED);
    assert_string_equal(torii_jwt_verdict_name(TORII_JWT_BAD_AUDIENCE), "bad_audience");
    assert_string_equal(torii_jwt_verdict_name(TORII_JWT_OK), "ok");
}

static void test_jwt_verify_policy_algs_and_kids(void **state)
{
    struct torii_jwt_policy p = policy();
    const char *only_rsa[] = {"rsa"};
    char *c = claims("");
    char *es = mk("ES256", "ec", c, fx->ec);
    char *ps = mk("PS256", "rsa", c, fx->rsa);

    (void)state;
    p.algs = TORII_JWT_RS256;
    assert_int_equal(check_at(fx->ks, &p, es, fx->now_ms), TORII_JWT_BAD_ALG);
    assert_int_equal(check_at(fx->ks, &p, ps, fx->now_ms), TORII_JWT_BAD_ALG);
    p.algs = TORII_JWT_PS256 | TORII_JWT_ES256;
    assert_int_equal(check_at(fx->ks, &p, es, fx->now_ms), TORII_JWT_OK);
    p.kids = only_rsa;
    p.n_kids = 1;
    assert_int_equal(check_at(fx->ks, &p, es, fx->now_ms), TORII_JWT_UNKNOWN_KEY);
    assert_int_equal(check_at(fx->ks, &p, ps, fx->now_ms), TORII_JWT_OK);
    free(es);
    free(ps);
    free(c);
}

/* A route's "keys" entry <id> accepts the kid <id> and the key kid <id>.<22 chars> (jwt.h),
 * nothing that merely starts with the id. */
static void test_jwt_policy_kids_accept_key_kids(void **state)
{
    static const char *const kids[] = {"svc",
                                       "svc.b",
                                       "svcAAAAAAAAAAAAAAAAAAAAAAA",
                                       "svc.AAAAAAAAAAAAAAAAAAAAAA",
                                       "svc.AAAAAAAAAAAAAAAAAAAAA",
                                       "svc.AAAAAAAAAAAAAAAAAAAAAAA",
                                       "svc.b.AAAAAAAAAAAAAAAAAAAA"};
    static const enum torii_jwt_verdict want[] = {
        TORII_JWT_OK,          TORII_JWT_UNKNOWN_KEY, TORII_JWT_UNKNOWN_KEY, TORII_JWT_OK,
        TORII_JWT_UNKNOWN_KEY, TORII_JWT_UNKNOWN_KEY, TORII_JWT_UNKNOWN_KEY};
    const char *only_svc[] = {"svc"};
    struct torii_jwt_keyset *ks = torii_jwt_keyset_new();
    struct torii_jwt_policy p = policy();
    char *c = claims("");

    (void)state;
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        assert_int_equal(
            torii_jwt_keyset_add(ks, kids[i], strlen(kids[i]), fx->ec, INT64_MAX, NULL), TORII_OK);
    }
    torii_jwt_keyset_seal(ks);
    p.kids = only_svc;
    p.n_kids = 1;
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        char *t = mk("ES256", kids[i], c, fx->ec);

        assert_int_equal(check_at(ks, &p, t, fx->now_ms), want[i]);
        free(t);
    }
    torii_jwt_keyset_unref(ks);
    free(c);
}

static void test_jwt_keyset_rotation_and_key_expiry(void **state)
{
    struct torii_jwt_keyset *ks = torii_jwt_keyset_new();
    struct torii_jwt_policy p = policy();
    int64_t old_end = fx->now_ms + 3600 * 1000;
    char *c = claims("");
    char *old_tok = mk("ES256", "svc", c, fx->other);
    char *new_tok = mk("ES256", "svc", c, fx->ec);
    char *ed_tok = mk("EdDSA", "svc", c, fx->ed);
    struct torii_errbuf eb = {{0}};

    (void)state;
    /* the live key and the rotated one under one kid */
    assert_int_equal(torii_jwt_keyset_add(ks, "svc", 3, fx->ec, old_end + 86400000, NULL),
                     TORII_OK);
    assert_int_equal(torii_jwt_keyset_add(ks, "svc", 3, fx->other, old_end, NULL), TORII_OK);
    assert_int_equal(torii_jwt_keyset_add(ks, "svc", 3, fx->ed, fx->now_ms - 1, NULL), TORII_OK);
    assert_int_equal(torii_jwt_keyset_add(ks, "svc", 3, fx->rsa, INT64_MAX, NULL), TORII_OK);
    assert_int_equal(torii_jwt_keyset_add(ks, "svc", 3, fx->ec384, INT64_MAX, &eb), TORII_ETOOBIG);
    assert_int_equal(torii_jwt_keyset_add(ks, "x", 1, fx->rsa1k, INT64_MAX, &eb),
                     TORII_EUNSUPPORTED);
    assert_non_null(strstr(eb.msg, "RSA >= 2048"));
    assert_int_equal(torii_jwt_keyset_add(ks, "", 0, fx->ec, INT64_MAX, NULL), TORII_EINVAL);
    torii_jwt_keyset_seal(ks);
    assert_int_equal(torii_jwt_keyset_add(ks, "y", 1, fx->ec, INT64_MAX, NULL), TORII_EINVAL);
    assert_int_equal(torii_jwt_keyset_count(ks), 4);
    assert_int_equal(check_at(ks, &p, new_tok, fx->now_ms), TORII_JWT_OK);
    assert_int_equal(check_at(ks, &p, old_tok, fx->now_ms), TORII_JWT_OK);
    /* the Ed25519 key under the kid expired a moment ago */
    assert_int_equal(check_at(ks, &p, ed_tok, fx->now_ms), TORII_JWT_UNKNOWN_KEY);
    /* once the old key's own notAfter passes, its tokens stop verifying (the signature is
     * checked before the claims, so the verdict shows that the key decided) */
    assert_int_equal(check_at(ks, &p, old_tok, old_end), TORII_JWT_BAD_SIGNATURE);
    assert_int_equal(check_at(ks, &p, new_tok, old_end), TORII_JWT_EXPIRED);
    torii_jwt_keyset_unref(torii_jwt_keyset_ref(ks));
    torii_jwt_keyset_unref(ks);
    free(old_tok);
    free(new_tok);
    free(ed_tok);
    free(c);
}

static void test_jwt_ecdsa_signature_forms(void **state)
{
    unsigned char raw[96];
    unsigned char der[160];
    unsigned char back[96];
    size_t der_len = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(raw); i++) {
        raw[i] = (unsigned char)(i == 0 || i == 32 ? 0 : i * 7 + 1); /* leading zero bytes */
    }
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 64, der, sizeof(der), &der_len), TORII_OK);
    assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, der_len, 32, back), TORII_OK);
    assert_memory_equal(raw, back, 64);
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 96, der, sizeof(der), &der_len), TORII_OK);
    assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, der_len, 48, back), TORII_OK);
    assert_memory_equal(raw, back, 96);
    /* r of 48 bytes does not fit a P-256 half */
    assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, der_len, 32, back), TORII_EINVAL);
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 63, der, sizeof(der), &der_len), TORII_EINVAL);
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 40, der, sizeof(der), &der_len), TORII_EINVAL);
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 64, der, 10, &der_len), TORII_ETOOBIG);
    /* trailing bytes after the DER */
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(raw, 64, der, sizeof(der), &der_len), TORII_OK);
    der[der_len] = 0;
    assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, der_len + 1, 32, back), TORII_EINVAL);
    assert_int_equal(torii_jwt_ecdsa_der_to_raw(der, der_len - 1, 32, back), TORII_EINVAL);
}

/* ---- the PKI state's key set and signing with a stored key pair -------------------------- */

static void feed(struct torii_pki_state *st, enum torii_store_op_kind kind, const json_t *e)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    char *text = json_dumps(e, JSON_COMPACT);
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    struct torii_store_rec rec;

    assert_int_equal(torii_certrec_build(e, &aux, &aux_len, NULL), TORII_OK);
    rec = (struct torii_store_rec){id, strlen(id), text, strlen(text), aux, aux_len};
    torii_pki_state_watch_cb(kind, TORII_STORE_CERTS, &rec, st);
    free(text);
    torii_secure_free(aux, aux_len);
}

static json_t *keypair(const char *spec, const char *id, int exposed)
{
    struct torii_pki_opts o = {.now_ms = fx->now_ms, .id = id};
    json_error_t jerr;
    json_t *q = json_loads(spec, 0, &jerr);
    json_t *e = NULL;

    assert_non_null(q);
    assert_int_equal(torii_pki_keypair_create(q, &o, &e, NULL), TORII_OK);
    assert_int_equal(json_object_set_new(e, "exposed", json_boolean(exposed)), 0);
    json_decref(q);
    return e;
}

/* The kid of a compact token's header (a static buffer). */
static const char *kid_of(const char *tok)
{
    static char kid[TORII_JWT_MAX_KID + 1];
    const char *dot = strchr(tok, '.');
    unsigned char *hdr = NULL;
    size_t len = 0;
    json_t *h;

    assert_non_null(dot);
    assert_int_equal(torii_b64_decode(tok, (size_t)(dot - tok), &hdr, &len), TORII_OK);
    h = json_loadb((const char *)hdr, len, 0, NULL);
    assert_non_null(h);
    (void)snprintf(kid, sizeof(kid), "%s", json_string_value(json_object_get(h, "kid")));
    json_decref(h);
    free(hdr);
    return kid;
}

static char *stored_sign(const json_t *e)
{
    json_t *c =
        json_pack("{s:s, s:s, s:s}", "sub", "alice", "iss", "https://idp.test", "aud", "api");
    char *tok = NULL;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(torii_pki_jwt_sign(e, NULL, c, 600, fx->now_ms, &tok, &eb), TORII_OK);
    json_decref(c);
    return tok;
}

/* An id too long for a key kid ("<id>." + 22 > TORII_JWT_MAX_KID): the key is published and
 * signs under the id alone, as before key kids existed; a shorter id gets its key kid. */
static void test_jwt_long_id_falls_back_to_the_id(void **state)
{
    char long_id[TORII_JWT_MAX_KID - TORII_JWT_KID_THUMB_LEN + 1];
    json_t *kp;
    json_t *arr;
    json_t *doc;
    char *tok;

    (void)state;
    memset(long_id, 'k', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    kp = keypair("{\"algo\":\"ecdsa\",\"size\":256}", long_id, 1);
    tok = stored_sign(kp);
    assert_string_equal(kid_of(tok), long_id);
    arr = json_pack("[O]", kp);
    doc = torii_pki_jwks_build(arr, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 1);
    json_decref(doc);
    json_decref(arr);
    json_decref(kp);
    free(tok);
    long_id[sizeof(long_id) - 2] = '\0'; /* one shorter: "<id>.<t>" is exactly 256 bytes */
    kp = keypair("{\"algo\":\"ecdsa\",\"size\":256}", long_id, 1);
    tok = stored_sign(kp);
    assert_int_equal(strlen(kid_of(tok)), TORII_JWT_MAX_KID);
    json_decref(kp);
    free(tok);
}

static void test_jwt_pki_state_keys_follow_the_store(void **state)
{
    struct torii_pki_state_opts o = {0};
    struct torii_pki_state *st = NULL;
    struct torii_jwt_keyset *ks;
    struct torii_jwt_policy p = policy();
    json_t *ec = keypair("{\"algo\":\"ecdsa\",\"size\":256}", "kp-ec", 1);
    json_t *rsa = keypair("{\"algo\":\"rsa\",\"size\":2048}", "kp-rsa", 1);
    json_t *hidden = keypair("{\"algo\":\"ecdsa\",\"size\":256}", "kp-hidden", 0);
    char *t_ec = stored_sign(ec);
    char *t_rsa = stored_sign(rsa);
    char *tok = NULL;
    json_t *c = json_object();

    (void)state;
    /* signing refuses what no verifier could check */
    assert_int_equal(torii_pki_jwt_sign(hidden, NULL, c, 600, fx->now_ms, &tok, NULL),
                     TORII_EINVAL);
    assert_int_equal(torii_pki_jwt_sign(ec, NULL, c, 0, fx->now_ms, &tok, NULL), TORII_EINVAL);
    assert_int_equal(torii_pki_jwt_sign(ec, NULL, c, 20LL * 365 * 86400, fx->now_ms, &tok, NULL),
                     TORII_EINVAL);
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    ks = torii_pki_state_jwt_keys(st); /* before any publish: empty */
    assert_int_equal(torii_jwt_keyset_count(ks), 0);
    torii_jwt_keyset_unref(ks);
    feed(st, TORII_STORE_PUT, ec);
    feed(st, TORII_STORE_PUT, rsa);
    feed(st, TORII_STORE_PUT, hidden);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(torii_jwt_keyset_count(ks), 2 * 2); /* each under its id and its key kid */
    assert_int_equal(check_at(ks, &p, t_ec, fx->now_ms), TORII_JWT_OK);
    assert_int_equal(check_at(ks, &p, t_rsa, fx->now_ms), TORII_JWT_OK);
    torii_jwt_keyset_unref(ks);
    /* revoke the EC key pair: the next snapshot no longer knows its kid */
    assert_int_equal(json_object_set_new(ec, "revoked", json_true()), 0);
    assert_int_equal(torii_cert_enrich(ec, fx->now_ms, NULL), TORII_OK);
    feed(st, TORII_STORE_PUT, ec);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(check_at(ks, &p, t_ec, fx->now_ms), TORII_JWT_UNKNOWN_KEY);
    assert_int_equal(check_at(ks, &p, t_rsa, fx->now_ms), TORII_JWT_OK);
    torii_jwt_keyset_unref(ks);
    /* un-expose, then delete the RSA one */
    assert_int_equal(json_object_set_new(rsa, "exposed", json_false()), 0);
    feed(st, TORII_STORE_PUT, rsa);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(check_at(ks, &p, t_rsa, fx->now_ms), TORII_JWT_UNKNOWN_KEY);
    torii_jwt_keyset_unref(ks);
    feed(st, TORII_STORE_DELETE, rsa);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(torii_jwt_keyset_count(ks), 0);
    torii_jwt_keyset_unref(ks);
    torii_pki_state_free(st);
    free(t_ec);
    free(t_rsa);
    json_decref(c);
    json_decref(ec);
    json_decref(rsa);
    json_decref(hidden);
}

/* Rotation as the renewer does it (renewer.c): the renewed entity keeps the id with a new key,
 * the previous version is stored as an "[UNTIL EXPIRATION]" copy under a new id. Both the
 * tokens minted before (kid = the id, old key) and after verify. */
static void test_jwt_pki_state_rotation_keeps_old_key(void **state)
{
    struct torii_pki_state_opts o = {0};
    struct torii_pki_state *st = NULL;
    struct torii_jwt_keyset *ks;
    struct torii_jwt_policy p = policy();
    json_t *kp = keypair("{\"algo\":\"ecdsa\",\"size\":256}", "kp-rot", 1);
    json_t *renewed = NULL;
    json_t *copy;
    char *t_old = stored_sign(kp);
    char *t_new;
    char *t_copy;
    int64_t old_to = json_integer_value(json_object_get(kp, "to"));
    char kid_old[TORII_JWT_MAX_KID + 1];

    (void)state;
    /* renewed two days later: the new key outlives the old one */
    assert_int_equal(
        torii_renew_reissue(kp, NULL, NULL, fx->now_ms + 2 * 86400000LL, &renewed, NULL), TORII_OK);
    copy = torii_renew_copy_of(kp, "kp-rot-copy");
    assert_non_null(copy);
    /* the copy stays exposed: verifiers keep its key until its own expiry */
    assert_true(json_is_true(json_object_get(copy, "exposed")));
    t_new = stored_sign(renewed);
    t_copy = stored_sign(copy);
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    feed(st, TORII_STORE_PUT, copy);
    feed(st, TORII_STORE_PUT, renewed);
    ks = torii_pki_state_jwt_keys(st);
    /* renewed, copy, copy under the live id; renewed and copy under their key kids */
    assert_int_equal(torii_jwt_keyset_count(ks), 3 + 2);
    assert_int_equal(check_at(ks, &p, t_new, fx->now_ms), TORII_JWT_OK);
    assert_int_equal(check_at(ks, &p, t_old, fx->now_ms), TORII_JWT_OK);
    assert_int_equal(check_at(ks, &p, t_copy, fx->now_ms), TORII_JWT_OK);
    /* the old token names the old key (key kid), not the live id: after the rotation the
     * renewed key is not even tried for it */
    (void)snprintf(kid_old, sizeof(kid_old), "%s", kid_of(t_old));
    assert_true(strcmp(kid_old, kid_of(t_new)) != 0);
    assert_true(strncmp(kid_old, "kp-rot.", 7) == 0);
    assert_int_equal(strlen(kid_old), strlen("kp-rot.") + TORII_JWT_KID_THUMB_LEN);
    assert_string_equal(kid_old, kid_of(t_copy)); /* the copy holds the same key */
    /* past the old key's notAfter, its kid has no usable key left */
    assert_int_equal(check_at(ks, &p, t_old, old_to), TORII_JWT_UNKNOWN_KEY);
    torii_jwt_keyset_unref(ks);
    /* the copy deleted (the renewer does it once it expired): the old tokens stop verifying */
    feed(st, TORII_STORE_DELETE, copy);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(check_at(ks, &p, t_old, fx->now_ms), TORII_JWT_UNKNOWN_KEY);
    assert_int_equal(check_at(ks, &p, t_new, fx->now_ms), TORII_JWT_OK);
    torii_jwt_keyset_unref(ks);
    torii_pki_state_free(st);
    free(t_old);
    free(t_new);
    free(t_copy);
    json_decref(kp);
    json_decref(renewed);
    json_decref(copy);
}

/* More rotated copies than one kid may hold: the live key is never the one left out. */
static void test_jwt_pki_state_many_copies_keep_live_key(void **state)
{
    struct torii_pki_state_opts o = {0};
    struct torii_pki_state *st = NULL;
    struct torii_jwt_keyset *ks;
    struct torii_jwt_policy p = policy();
    json_t *live = keypair("{\"algo\":\"ecdsa\",\"size\":256}", "kp-live", 1);
    char *t_live = stored_sign(live);
    json_t *copies[TORII_JWT_KID_KEYS_MAX + 1];

    (void)state;
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    /* fed first: the last of the exposed list, the last one a single pass would reach */
    feed(st, TORII_STORE_PUT, live);
    for (size_t i = 0; i < TORII_JWT_KID_KEYS_MAX + 1; i++) {
        json_t *old = keypair("{\"algo\":\"ecdsa\",\"size\":256}", "kp-live", 1);
        char id[32];

        (void)snprintf(id, sizeof(id), "kp-live-copy-%zu", i);
        copies[i] = torii_renew_copy_of(old, id);
        assert_non_null(copies[i]);
        feed(st, TORII_STORE_PUT, copies[i]);
        json_decref(old);
    }
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(check_at(ks, &p, t_live, fx->now_ms), TORII_JWT_OK);
    /* the live key plus TORII_JWT_KID_KEYS_MAX - 1 aliases, and each copy under its own id;
     * the live key and each copy under its key kid */
    assert_int_equal(torii_jwt_keyset_count(ks),
                     2 * TORII_JWT_KID_KEYS_MAX + 1 + 1 + TORII_JWT_KID_KEYS_MAX + 1);
    torii_jwt_keyset_unref(ks);
    torii_pki_state_free(st);
    for (size_t i = 0; i < TORII_JWT_KID_KEYS_MAX + 1; i++) {
        json_decref(copies[i]);
    }
    free(t_live);
    json_decref(live);
}

/* A self-signed Ed25519 key pair entity, exposed (torii does not generate Ed25519 key pairs
 * yet; imported ones exist). */
static json_t *ed25519_entity(const char *id, EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    json_t *e;

    assert_non_null(x);
    assert_non_null(n);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"ed key", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, n), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, NULL));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, key, NULL) > 0);
    e = testpki_entity(id, &x, 1, key, NULL);
    assert_non_null(e);
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    assert_int_equal(torii_cert_enrich(e, fx->now_ms, NULL), TORII_OK);
    assert_int_equal(json_object_set_new(e, "exposed", json_true()), 0);
    X509_NAME_free(n);
    X509_free(x);
    return e;
}

static void test_jwt_pki_ed25519_published_and_verified(void **state)
{
    struct torii_pki_state_opts o = {0};
    struct torii_pki_state *st = NULL;
    struct torii_jwt_keyset *ks;
    struct torii_jwt_policy p = policy();
    json_t *e = ed25519_entity("kp-ed", fx->ed);
    json_t *arr = json_pack("[O]", e);
    json_t *doc = torii_pki_jwks_build(arr, NULL);
    const json_t *jwk = json_array_get(json_object_get(doc, "keys"), 0);
    unsigned char raw[32];
    size_t raw_len = sizeof(raw);
    char x[64];
    char *tok = stored_sign(e);

    (void)state;
    /* RFC 8037: kty OKP, crv Ed25519, x = the raw public key */
    assert_non_null(jwk);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "OKP");
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "Ed25519");
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "EdDSA");
    assert_string_equal(json_string_value(json_object_get(jwk, "kid")), "kp-ed");
    assert_int_equal(EVP_PKEY_get_raw_public_key(fx->ed, raw, &raw_len), 1);
    b64url(raw, raw_len, x);
    assert_string_equal(json_string_value(json_object_get(jwk, "x")), x);
    /* the PKI view's key set verifies what the stored key pair signed (EdDSA) */
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    feed(st, TORII_STORE_PUT, e);
    ks = torii_pki_state_jwt_keys(st);
    assert_int_equal(check_at(ks, &p, tok, fx->now_ms), TORII_JWT_OK);
    b64url((const unsigned char *)"{\"alg\":\"EdDSA\",", 15, x);
    assert_memory_equal(tok, x, strlen(x)); /* the header names EdDSA */
    torii_jwt_keyset_unref(ks);
    torii_pki_state_free(st);
    free(tok);
    json_decref(doc);
    json_decref(arr);
    json_decref(e);
}

/* ---- cost ---------------------------------------------------------------------------------- */

#define BENCH_ROUNDS 7
#define BENCH_N      300

/* Microseconds per call of one round of BENCH_N bare verifies (which = 0) or torii_jwt_verify
 * calls (which = 1); the caller keeps the fastest round, the one least disturbed by the other
 * work of the machine. */
static double bench_round(int which, const char *t, const unsigned char *der, size_t der_len,
                          EVP_MD_CTX *ctx)
{
    struct torii_jwt_policy p = policy();
    const char *dot = strrchr(t, '.');
    int64_t t0 = torii_clock_mono_us();
    int ok = 0;

    for (int i = 0; i < BENCH_N; i++) {
        if (which == 0) {
            ok +=
                EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, fx->ec) == 1
                && EVP_DigestVerify(ctx, der, der_len, (const unsigned char *)t, (size_t)(dot - t))
                       == 1;
        } else {
            enum torii_jwt_verdict v;
            json_t *cl = NULL;
            ok += torii_jwt_verify(fx->ks, &p, t, strlen(t), fx->now_ms, &v, &cl, NULL) == TORII_OK;
            json_decref(cl);
        }
    }
    assert_int_equal(ok, BENCH_N);
    return (double)(torii_clock_mono_us() - t0) / BENCH_N;
}

static void test_jwt_bench_es256_verify(void **state)
{
    char *c = claims("");
    char *t = mk("ES256", "ec", c, fx->ec);
    unsigned char sig[80];
    unsigned char der[160];
    size_t der_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *dot = strrchr(t, '.');
    size_t sig_len;
    double bare = 1e9;
    double full = 1e9;

    (void)state;
    assert_non_null(ctx);
    sig_len = raw_sign(fx->ec, "ES256", t, (size_t)(dot - t), sig);
    assert_int_equal(torii_jwt_ecdsa_raw_to_der(sig, sig_len, der, sizeof(der), &der_len),
                     TORII_OK);
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        double b = bench_round(0, t, der, der_len, ctx);
        double f = bench_round(1, t, der, der_len, ctx);
        bare = b < bare ? b : bare;
        full = f < full ? f : full;
    }
    printf("# ES256 verify (best of %d rounds of %d): bare EVP_DigestVerify %.1f us, "
           "torii_jwt_verify %.1f us, ratio %.2f\n",
           BENCH_ROUNDS, BENCH_N, bare, full, full / (bare > 0 ? bare : 1));
    EVP_MD_CTX_free(ctx);
    free(t);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_verify_valid_tokens_pass),
        cmocka_unit_test(test_jwt_verify_aud_array_and_typ_variants_pass),
        cmocka_unit_test(test_jwt_sign_roundtrip_every_key_type),
        cmocka_unit_test(test_jwt_verify_time_claims_rejected),
        cmocka_unit_test(test_jwt_verify_wrong_aud_or_iss_rejected),
        cmocka_unit_test(test_jwt_verify_tampered_payload_rejected),
        cmocka_unit_test(test_jwt_verify_alg_none_and_hmac_rejected),
        cmocka_unit_test(test_jwt_verify_unknown_or_missing_kid_rejected),
        cmocka_unit_test(test_jwt_verify_key_injection_headers_rejected),
        cmocka_unit_test(test_jwt_verify_malformed_tokens_rejected),
        cmocka_unit_test(test_jwt_verify_bad_arguments),
        cmocka_unit_test(test_jwt_verify_policy_algs_and_kids),
        cmocka_unit_test(test_jwt_policy_kids_accept_key_kids),
        cmocka_unit_test(test_jwt_keyset_rotation_and_key_expiry),
        cmocka_unit_test(test_jwt_ecdsa_signature_forms),
        cmocka_unit_test(test_jwt_long_id_falls_back_to_the_id),
        cmocka_unit_test(test_jwt_pki_state_keys_follow_the_store),
        cmocka_unit_test(test_jwt_pki_state_rotation_keeps_old_key),
        cmocka_unit_test(test_jwt_pki_state_many_copies_keep_live_key),
        cmocka_unit_test(test_jwt_pki_ed25519_published_and_verified),
        cmocka_unit_test(test_jwt_bench_es256_verify),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
