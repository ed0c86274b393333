/* test_pki_jwks.c - unit tests for the JWK Set builder (RFC 7517/7518): which entities are
 * published, key material round-trips (n/e, crv/x/y), x5c/x5t#S256, base64url form, and
 * that broken entries are skipped without breaking the document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/pki.h"

struct fixture {
    json_t *ec256;
    json_t *ec384;
    json_t *ec521;
    json_t *rsa;
};

static struct fixture *fx;

static json_t *make(const char *spec, const char *id)
{
    struct torii_pki_opts o;
    struct torii_errbuf eb = {{0}};
    json_error_t jerr;
    json_t *q = json_loads(spec, 0, &jerr);
    json_t *e = NULL;

    memset(&o, 0, sizeof(o));
    o.now_ms = torii_clock_now_ms();
    o.id = id;
    if (q == NULL || torii_pki_keypair_create(q, &o, &e, &eb) != TORII_OK) {
        fprintf(stderr, "make %s: %s\n", id, eb.msg);
        json_decref(q);
        return NULL;
    }
    json_decref(q);
    if (json_object_set_new(e, "exposed", json_true()) != 0) {
        json_decref(e);
        return NULL;
    }
    return e;
}

static int group_setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return 1;
    }
    fx->ec256 = make("{\"algo\":\"ecdsa\",\"size\":256}", "k-ec256");
    fx->ec384 = make("{\"algo\":\"ecdsa\",\"size\":384}", "k-ec384");
    fx->ec521 = make("{\"algo\":\"ecdsa\",\"size\":521}", "k-ec521");
    fx->rsa = make("{\"algo\":\"rsa\",\"size\":2048}", "k-rsa");
    return fx->ec256 && fx->ec384 && fx->ec521 && fx->rsa ? 0 : 1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (fx != NULL) {
        json_decref(fx->ec256);
        json_decref(fx->ec384);
        json_decref(fx->ec521);
        json_decref(fx->rsa);
        free(fx);
        fx = NULL;
    }
    return 0;
}

/* Strict base64url without padding; returns the decoded length, -1 on a bad character. */
static int b64url_decode(const char *s, unsigned char *out, size_t cap)
{
    unsigned int acc = 0;
    int bits = 0;
    size_t n = 0;

    for (; *s != '\0'; s++) {
        int v;
        char c = *s;
        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;
        } else if (c == '-') {
            v = 62;
        } else if (c == '_') {
            v = 63;
        } else {
            return -1;
        }
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap) {
                return -1;
            }
            out[n++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    return (int)n;
}

static const json_t *find_kid(const json_t *doc, const char *kid)
{
    const json_t *keys = json_object_get(doc, "keys");
    size_t i;
    const json_t *k;

    json_array_foreach (keys, i, k) {
        if (strcmp(json_string_value(json_object_get(k, "kid")), kid) == 0) {
            return k;
        }
    }
    return NULL;
}

static X509 *leaf_of(const json_t *e)
{
    X509 *x = testpki_entity_leaf(e);

    assert_non_null(x);
    return x;
}

static void check_bn(const json_t *jwk, const char *field, EVP_PKEY *pub, const char *param,
                     int expect_len)
{
    unsigned char buf[1024];
    BIGNUM *want = NULL;
    BIGNUM *got;
    int n = b64url_decode(json_string_value(json_object_get(jwk, field)), buf, sizeof(buf));

    assert_true(n > 0);
    if (expect_len > 0) {
        assert_int_equal(n, expect_len);
    }
    assert_int_equal(EVP_PKEY_get_bn_param(pub, param, &want), 1);
    got = BN_bin2bn(buf, n, NULL);
    assert_int_equal(BN_cmp(got, want), 0);
    BN_free(got);
    BN_free(want);
}

static void check_x5(const json_t *jwk, const json_t *e)
{
    X509 *leaf = leaf_of(e);
    unsigned char *der = NULL;
    int len = i2d_X509(leaf, &der);
    unsigned char hash[32];
    unsigned char got[64];
    unsigned int hlen = 0;
    unsigned char *dec;
    const char *x5c0 = json_string_value(json_array_get(json_object_get(jwk, "x5c"), 0));
    int declen;

    assert_non_null(x5c0);
    dec = malloc(strlen(x5c0));
    assert_non_null(dec);
    declen = EVP_DecodeBlock(dec, (const unsigned char *)x5c0, (int)strlen(x5c0));
    /* EVP_DecodeBlock counts padding bytes as zeros: compare the DER prefix. */
    assert_true(declen >= len && declen - len < 3);
    assert_memory_equal(dec, der, (size_t)len);
    assert_int_equal(EVP_Digest(der, (size_t)len, hash, &hlen, EVP_sha256(), NULL), 1);
    assert_int_equal(
        b64url_decode(json_string_value(json_object_get(jwk, "x5t#S256")), got, sizeof(got)), 32);
    assert_memory_equal(got, hash, 32);
    free(dec);
    OPENSSL_free(der);
    X509_free(leaf);
}

static void test_jwks_publishes_ec_and_rsa_keys(void **state)
{
    json_t *list = json_pack("[O,O,O,O]", fx->ec256, fx->ec384, fx->ec521, fx->rsa);
    json_t *doc = torii_pki_jwks_build(list, NULL);
    static const struct {
        const char *kid;
        const char *crv;
        const char *alg;
        int len;
    } ec[] = {{"k-ec256", "P-256", "ES256", 32},
              {"k-ec384", "P-384", "ES384", 48},
              {"k-ec521", "P-521", "ES512", 66}};
    const json_t *ents[] = {fx->ec256, fx->ec384, fx->ec521};
    const json_t *jwk;
    X509 *leaf;
    size_t i;

    (void)state;
    assert_non_null(doc);
    /* each key under its id and under its key kid */
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 2 * 4);
    for (i = 0; i < 3; i++) {
        jwk = find_kid(doc, ec[i].kid);
        assert_non_null(jwk);
        assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
        assert_string_equal(json_string_value(json_object_get(jwk, "crv")), ec[i].crv);
        assert_string_equal(json_string_value(json_object_get(jwk, "alg")), ec[i].alg);
        assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
        assert_null(json_object_get(jwk, "d")); /* never the private part */
        leaf = leaf_of(ents[i]);
        check_bn(jwk, "x", X509_get0_pubkey(leaf), OSSL_PKEY_PARAM_EC_PUB_X, ec[i].len);
        check_bn(jwk, "y", X509_get0_pubkey(leaf), OSSL_PKEY_PARAM_EC_PUB_Y, ec[i].len);
        check_x5(jwk, ents[i]);
        X509_free(leaf);
    }
    jwk = find_kid(doc, "k-rsa");
    assert_non_null(jwk);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(jwk, "e")), "AQAB");
    assert_null(json_object_get(jwk, "d"));
    assert_null(json_object_get(jwk, "p"));
    leaf = leaf_of(fx->rsa);
    check_bn(jwk, "n", X509_get0_pubkey(leaf), OSSL_PKEY_PARAM_RSA_N, 256);
    check_x5(jwk, fx->rsa);
    X509_free(leaf);
    json_decref(doc);
    json_decref(list);
}

static void test_jwks_skips_unexposed_revoked_keyless_and_broken(void **state)
{
    json_t *hidden = json_deep_copy(fx->ec256);
    json_t *revoked = json_deep_copy(fx->ec384);
    json_t *keyless = json_deep_copy(fx->ec521);
    json_t *broken = json_deep_copy(fx->rsa);
    json_t *mismatch = json_deep_copy(fx->ec256);
    json_t *list;
    json_t *doc;

    (void)state;
    assert_int_equal(json_object_set_new(hidden, "exposed", json_false()), 0);
    assert_int_equal(json_object_set_new(revoked, "revoked", json_true()), 0);
    assert_int_equal(json_object_set_new(keyless, "privateKey", json_string("")), 0);
    assert_int_equal(json_object_set_new(broken, "chain",
                                         json_string("-----BEGIN CERTIFICATE-----"
                                                     "\nZm9v\n-----END "
                                                     "CERTIFICATE-----\n")),
                     0);
    assert_int_equal(json_object_set_new(mismatch, "id", json_string("mismatch")), 0);
    assert_int_equal(
        json_object_set(mismatch, "privateKey", json_object_get(fx->ec384, "privateKey")), 0);
    list = json_pack("[O,O,O,O,O,s,i,O]", hidden, revoked, keyless, broken, mismatch, "junk", 7,
                     fx->rsa);
    doc = torii_pki_jwks_build(list, NULL);
    assert_non_null(doc);
    /* Only the good RSA entry after all the bad ones. */
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 2 * 1);
    assert_non_null(find_kid(doc, "k-rsa"));
    json_decref(doc);
    /* Not an array, or an empty one: an empty set, never NULL. */
    doc = torii_pki_jwks_build(json_object_get(fx->rsa, "id"), NULL);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 0);
    json_decref(doc);
    doc = torii_pki_jwks_build(NULL, NULL);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 0);
    json_decref(doc);
    json_decref(list);
    json_decref(mismatch);
    json_decref(broken);
    json_decref(keyless);
    json_decref(revoked);
    json_decref(hidden);
}

static void test_jwks_encoding_is_base64url_without_padding(void **state)
{
    json_t *list = json_pack("[O,O]", fx->ec521, fx->rsa);
    json_t *doc = torii_pki_jwks_build(list, NULL);
    static const char *const fields[] = {"n", "e", "x", "y", "x5t#S256"};
    const json_t *keys = json_object_get(doc, "keys");
    const json_t *k;
    size_t i;
    size_t j;

    (void)state;
    assert_int_equal(json_array_size(keys), 2 * 2);
    json_array_foreach (keys, i, k) {
        for (j = 0; j < sizeof(fields) / sizeof(fields[0]); j++) {
            const char *s = json_string_value(json_object_get(k, fields[j]));
            if (s != NULL) {
                assert_null(strchr(s, '='));
                assert_null(strchr(s, '+'));
                assert_null(strchr(s, '/'));
            }
        }
    }
    /* P-521 coordinates are 66 bytes: 88 base64url characters. */
    k = find_kid(doc, "k-ec521");
    assert_int_equal(json_string_length(json_object_get(k, "x")), 88);
    json_decref(doc);
    json_decref(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwks_publishes_ec_and_rsa_keys),
        cmocka_unit_test(test_jwks_skips_unexposed_revoked_keyless_and_broken),
        cmocka_unit_test(test_jwks_encoding_is_base64url_without_padding),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
