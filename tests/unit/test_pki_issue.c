/* test_pki_issue.c - unit tests for the PKI API library: CA creation, issuing from a
 * GenCsrQuery, CSR generation and signing, PKCS#12 / PEM bundle imports, _data, _valid,
 * renewal (new key for leaves, same key for CAs, self-signed re-signed by its new key).
 * Chains are checked with OpenSSL's own verifier (X509_verify_cert). */
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/pki.h"

#define DAY_MS 86400000LL

struct fixture {
    json_t *root;  /* EC P-384 root CA */
    json_t *inter; /* sub-CA of root */
    json_t *leaf;  /* ECDSA server leaf of inter */
};

static struct fixture *fx;

static struct torii_pki_opts opts_now(void)
{
    struct torii_pki_opts o;

    memset(&o, 0, sizeof(o));
    o.now_ms = torii_clock_now_ms();
    return o;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);

    assert_non_null(j);
    return j;
}

static STACK_OF(X509) * chain_of(const json_t *e)
{
    const char *pem = json_string_value(json_object_get(e, "chain"));
    BIO *b = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;

    assert_non_null(b);
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        assert_true(sk_X509_push(sk, x) > 0);
    }
    ERR_clear_error();
    BIO_free(b);
    assert_true(sk_X509_num(sk) > 0);
    return sk;
}

static X509 *leaf_of(const json_t *e)
{
    STACK_OF(X509) *sk = chain_of(e);
    X509 *x = sk_X509_shift(sk);

    sk_X509_pop_free(sk, X509_free);
    return x;
}

static EVP_PKEY *key_of(const json_t *e)
{
    const char *pem = json_string_value(json_object_get(e, "privateKey"));
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(k);
    return k;
}

/* X509_verify_cert of e's leaf against root (trusted) with the rest of e's chain untrusted. */
static int verify_entity(const json_t *e, const json_t *trust, int purpose)
{
    STACK_OF(X509) *chain = chain_of(e);
    X509 *anchor = leaf_of(trust);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509 *leaf = sk_X509_shift(chain);
    int ok;

    assert_true(X509_STORE_add_cert(store, anchor) == 1);
    assert_true(X509_STORE_CTX_init(ctx, store, leaf, chain) == 1);
    if (purpose != 0) {
        assert_true(X509_STORE_CTX_set_purpose(ctx, purpose) == 1);
    }
    ok = X509_verify_cert(ctx);
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(anchor);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return ok == 1;
}

static int has_san(X509 *c, int type, const char *text)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != type) {
            continue;
        }
        if (type == GEN_DNS) {
            found |= strcmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), text) == 0;
        } else if (type == GEN_IPADD) {
            unsigned char bin[16];
            int n = inet_pton(AF_INET, text, bin) == 1 ? 4 : 16;
            if (n == 16) {
                assert_int_equal(inet_pton(AF_INET6, text, bin), 1);
            }
            found |= ASN1_STRING_length(g->d.iPAddress) == n
                     && memcmp(ASN1_STRING_get0_data(g->d.iPAddress), bin, (size_t)n) == 0;
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static int group_setup(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q;

    (void)state;
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return 1;
    }
    q = json_pack("{s:s}", "subject", "CN=Torii Test Root, OU=Tests, O=Torii");
    o.id = "test-root";
    if (torii_pki_ca_create(q, &o, &fx->root, &eb) != TORII_OK) {
        fprintf(stderr, "root: %s\n", eb.msg);
        json_decref(q);
        return 1;
    }
    json_decref(q);
    q = json_pack("{s:s}", "subject", "CN=Torii Test Intermediate, O=Torii");
    o.id = "test-inter";
    if (torii_pki_subca_create(fx->root, q, &o, &fx->inter, &eb) != TORII_OK) {
        fprintf(stderr, "inter: %s\n", eb.msg);
        json_decref(q);
        return 1;
    }
    json_decref(q);
    q = json_pack("{s:[s,s]}", "hosts", "www.example.com", "192.0.2.7");
    o.id = "test-leaf";
    if (torii_pki_cert_issue(fx->inter, q, &o, &fx->leaf, &eb) != TORII_OK) {
        fprintf(stderr, "leaf: %s\n", eb.msg);
        json_decref(q);
        return 1;
    }
    json_decref(q);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (fx != NULL) {
        json_decref(fx->root);
        json_decref(fx->inter);
        json_decref(fx->leaf);
        free(fx);
        fx = NULL;
    }
    return 0;
}

/* ---- CA creation ---- */

static void test_ca_create_root_is_selfsigned_p384_ca(void **state)
{
    X509 *c = leaf_of(fx->root);
    EVP_PKEY *k = key_of(fx->root);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(c);
    int64_t span = json_integer_value(json_object_get(fx->root, "to"))
                   - json_integer_value(json_object_get(fx->root, "from"));

    (void)state;
    assert_true(json_is_true(json_object_get(fx->root, "ca")));
    assert_true(json_is_true(json_object_get(fx->root, "selfSigned")));
    assert_true(json_is_true(json_object_get(fx->root, "valid")));
    assert_true(json_is_null(json_object_get(fx->root, "caRef")));
    assert_string_equal(json_string_value(json_object_get(fx->root, "id")), "test-root");
    assert_string_equal(json_string_value(json_object_get(fx->root, "certType")), "ca");
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(k), 384);
    assert_int_equal(X509_check_ca(c), 1);
    assert_int_equal(X509_get_pathlen(c), -1);
    assert_true((X509_get_key_usage(c) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))
                == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    assert_non_null(X509_get0_subject_key_id(c));
    assert_non_null(X509_get0_authority_key_id(c));
    assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* positive */
    assert_true(ASN1_STRING_length(serial) >= 15 && ASN1_STRING_length(serial) <= 17);
    assert_true(span >= 3650 * DAY_MS - 1000 && span <= 3650 * DAY_MS + 1000);
    assert_string_equal(json_string_value(json_object_get(fx->root, "subject")),
                        "OU=Tests, O=Torii, CN=Torii Test Root");
    assert_true(verify_entity(fx->root, fx->root, 0));
    EVP_PKEY_free(k);
    X509_free(c);
}

static void test_subca_has_pathlen0_and_verifies_against_root(void **state)
{
    X509 *c = leaf_of(fx->inter);
    X509 *r = leaf_of(fx->root);
    STACK_OF(X509) *chain = chain_of(fx->inter);

    (void)state;
    assert_int_equal(X509_check_ca(c), 1);
    assert_int_equal(X509_get_pathlen(c), 0);
    assert_true(json_is_true(json_object_get(fx->inter, "ca")));
    assert_false(json_is_true(json_object_get(fx->inter, "selfSigned")));
    assert_string_equal(json_string_value(json_object_get(fx->inter, "caRef")), "test-root");
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_check_issued(r, c), X509_V_OK);
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c), X509_get0_subject_key_id(r)), 0);
    assert_true(verify_entity(fx->inter, fx->root, 0));
    sk_X509_pop_free(chain, X509_free);
    X509_free(r);
    X509_free(c);
}

/* ---- issuing leaves ---- */

static void check_server_leaf(const json_t *e, int rsa)
{
    X509 *c = leaf_of(e);
    X509 *issuer = leaf_of(fx->inter);
    STACK_OF(X509) *chain = chain_of(e);
    uint32_t ku = X509_get_key_usage(c);

    assert_int_equal(sk_X509_num(chain), 3);
    assert_int_equal(X509_check_ca(c), 0);
    assert_true(ku & KU_DIGITAL_SIGNATURE);
    assert_int_equal((ku & KU_KEY_ENCIPHERMENT) != 0, rsa);
    assert_false(ku & KU_KEY_CERT_SIGN);
    assert_true(X509_get_extended_key_usage(c) & XKU_SSL_SERVER);
    assert_false(X509_get_extended_key_usage(c) & XKU_SSL_CLIENT);
    assert_true(has_san(c, GEN_DNS, "www.example.com"));
    assert_true(has_san(c, GEN_IPADD, "192.0.2.7"));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c), X509_get0_subject_key_id(issuer)), 0);
    assert_string_equal(json_string_value(json_object_get(e, "caRef")), "test-inter");
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_false(json_is_true(json_object_get(e, "client")));
    assert_true(verify_entity(e, fx->root, X509_PURPOSE_SSL_SERVER));
    assert_false(verify_entity(e, fx->root, X509_PURPOSE_SSL_CLIENT));
    sk_X509_pop_free(chain, X509_free);
    X509_free(issuer);
    X509_free(c);
}

static void test_cert_issue_ecdsa_server_verifies(void **state)
{
    EVP_PKEY *k = key_of(fx->leaf);
    json_t *sans = json_object_get(fx->leaf, "sans");

    (void)state;
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    assert_int_equal(json_array_size(sans), 2);
    assert_string_equal(json_string_value(json_array_get(sans, 0)), "www.example.com");
    assert_string_equal(json_string_value(json_array_get(sans, 1)), "192.0.2.7");
    assert_string_equal(json_string_value(json_object_get(fx->leaf, "domain")), "www.example.com");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(fx->leaf, "metadata"), "csr")),
               "\"hosts\""));
    check_server_leaf(fx->leaf, 0);
    EVP_PKEY_free(k);
}

static void test_cert_issue_rsa_server_verifies(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"www.example.com\",\"192.0.2.7\"],"
                      "\"key\":{\"algo\":\"rsa\",\"size\":2048},\"subject\":\"CN=rsa, O=T\","
                      "\"signatureAlg\":\"SHA256WithRSAEncryption\",\"duration\":86400000}");
    json_t *e = NULL;
    EVP_PKEY *k;
    X509 *c;

    (void)state;
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_OK);
    k = key_of(e);
    c = leaf_of(e);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    /* signatureAlg names RSA but the issuer is EC: only the digest is used. */
    assert_int_equal(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
    assert_int_equal(json_integer_value(json_object_get(e, "to"))
                         - json_integer_value(json_object_get(e, "from")),
                     DAY_MS);
    check_server_leaf(e, 1);
    X509_free(c);
    EVP_PKEY_free(k);
    json_decref(e);
    json_decref(q);
}

static void test_cert_issue_client_has_client_eku_only(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"subject\":\"CN=alice\",\"client\":true}");
    json_t *e = NULL;
    X509 *c;

    (void)state;
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_OK);
    c = leaf_of(e);
    assert_true(X509_get_extended_key_usage(c) & XKU_SSL_CLIENT);
    assert_false(X509_get_extended_key_usage(c) & XKU_SSL_SERVER);
    assert_true(json_is_true(json_object_get(e, "client")));
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "client");
    assert_true(verify_entity(e, fx->root, X509_PURPOSE_SSL_CLIENT));
    assert_false(verify_entity(e, fx->root, X509_PURPOSE_SSL_SERVER));
    X509_free(c);
    json_decref(e);
    json_decref(q);
}

static void test_cert_issue_ca_query_makes_subca(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"subject\":\"CN=Other Inter\",\"ca\":true}");
    json_t *e = NULL;
    X509 *c;

    (void)state;
    assert_int_equal(torii_pki_cert_issue(fx->root, q, &o, &e, &eb), TORII_OK);
    c = leaf_of(e);
    assert_int_equal(X509_check_ca(c), 1);
    assert_int_equal(X509_get_pathlen(c), 0);
    assert_true(verify_entity(e, fx->root, 0));
    X509_free(c);
    json_decref(e);
    /* The intermediate has pathLen 0: no CA below it. */
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "pathLen"));
    json_decref(q);
}

static void test_cert_issue_wrong_issuer_einval(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"a.example\"]}");
    json_t *e = NULL;
    json_t *bad = json_deep_copy(fx->root);
    json_t *flag = json_deep_copy(fx->leaf);
    json_t *mismatch = json_deep_copy(fx->root);

    (void)state;
    /* A leaf (ca=false) is not a CA. */
    assert_int_equal(torii_pki_cert_issue(fx->leaf, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "not a CA"));
    assert_null(e);
    /* ca=true on a leaf certificate: the certificate decides. */
    assert_int_equal(json_object_set_new(flag, "ca", json_true()), 0);
    assert_int_equal(torii_pki_cert_issue(flag, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "certificate is not a CA"));
    /* A CA without private key. */
    assert_int_equal(json_object_set_new(bad, "privateKey", json_string("")), 0);
    assert_int_equal(torii_pki_cert_issue(bad, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "no private key"));
    assert_int_equal(torii_pki_subca_create(bad, q, &o, &e, &eb), TORII_EINVAL);
    /* A CA whose key belongs to another certificate. */
    assert_int_equal(
        json_object_set(mismatch, "privateKey", json_object_get(fx->inter, "privateKey")), 0);
    assert_int_equal(torii_pki_cert_issue(mismatch, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "does not match"));
    /* A revoked CA. */
    assert_int_equal(json_object_set_new(mismatch, "revoked", json_true()), 0);
    assert_int_equal(torii_pki_cert_issue(mismatch, q, &o, &e, &eb), TORII_EINVAL);
    assert_null(e);
    json_decref(mismatch);
    json_decref(flag);
    json_decref(bad);
    json_decref(q);
}

static void test_query_bad_values_einval(void **state)
{
    static const char *const bad[] = {
        "{\"hosts\":[\"a.example\"],\"key\":{\"algo\":\"rsa\",\"size\":1024}}",
        "{\"hosts\":[\"a.example\"],\"key\":{\"algo\":\"rsa\",\"size\":2047}}",
        "{\"hosts\":[\"a.example\"],\"key\":{\"algo\":\"ecdsa\",\"size\":255}}",
        "{\"hosts\":[\"a.example\"],\"key\":{\"algo\":\"dsa\",\"size\":2048}}",
        "{\"hosts\":[\"a.example\"],\"keyType\":\"ecdsa\",\"keySize\":192}",
        "{\"hosts\":[\"bad host!\"]}",
        "{\"hosts\":\"a.example\"}",
        "{\"subject\":\"XYZZY=1\"}",
        "{\"subject\":\"CN\"}",
        "{\"subject\":\"CN=a\",\"signatureAlg\":\"MD5WithRSA\"}",
        "{\"subject\":\"CN=a\",\"duration\":-5}",
        "{\"subject\":\"CN=a\",\"client\":\"yes\"}",
        "{}",
        "[1]",
    };
    struct torii_pki_opts o = opts_now();
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct torii_errbuf eb = {{0}};
        json_t *q = parse(bad[i]);
        json_t *e = NULL;

        assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_EINVAL);
        assert_null(e);
        assert_true(eb.msg[0] != '\0');
        json_decref(q);
    }
}

static void test_cert_selfsigned_leaf_and_ca(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"self.example\"],\"key\":{\"algo\":\"ecdsa\",\"size\":521},"
                      "\"includeAIA\":true}");
    json_t *e = NULL;
    X509 *c;

    (void)state;
    assert_int_equal(torii_pki_cert_selfsigned(q, &o, &e, &eb), TORII_OK);
    c = leaf_of(e);
    assert_true(json_is_true(json_object_get(e, "selfSigned")));
    assert_false(json_is_true(json_object_get(e, "ca")));
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_int_equal(X509_get_signature_nid(c), NID_ecdsa_with_SHA512);
    assert_int_equal(X509_get_ext_by_NID(c, NID_info_access, -1), -1);
    assert_int_equal(json_string_length(json_object_get(e, "id")), 32);
    X509_free(c);
    json_decref(e);
    json_decref(q);
    q = parse("{\"subject\":\"CN=Self CA\",\"ca\":true}");
    assert_int_equal(torii_pki_cert_selfsigned(q, &o, &e, &eb), TORII_OK);
    assert_true(json_is_true(json_object_get(e, "ca")));
    assert_true(json_is_true(json_object_get(e, "selfSigned")));
    json_decref(e);
    json_decref(q);
}

static void test_keypair_create(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *spec = parse("{\"algo\":\"ecdsa\",\"size\":384}");
    json_t *e = NULL;
    X509 *c;
    EVP_PKEY *k;

    (void)state;
    assert_int_equal(torii_pki_keypair_create(spec, &o, &e, &eb), TORII_OK);
    c = leaf_of(e);
    k = key_of(e);
    assert_true(json_is_true(json_object_get(e, "keypair")));
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "keypair");
    assert_int_equal(strncmp(json_string_value(json_object_get(e, "domain")), "keypair-", 8), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(e, "name")), "KeyPair - ", 10), 0);
    assert_int_equal(EVP_PKEY_get_bits(k), 384);
    assert_int_equal(X509_check_ca(c), 0);
    assert_true(json_is_true(json_object_get(e, "valid")));
    EVP_PKEY_free(k);
    X509_free(c);
    json_decref(e);
    json_decref(spec);
    spec = parse("{\"algo\":\"ecdsa\",\"size\":128}");
    e = NULL;
    assert_int_equal(torii_pki_keypair_create(spec, &o, &e, &eb), TORII_EINVAL);
    assert_null(e);
    json_decref(spec);
    /* No spec: ECDSA P-256. */
    assert_int_equal(torii_pki_keypair_create(NULL, &o, &e, &eb), TORII_OK);
    k = key_of(e);
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    EVP_PKEY_free(k);
    json_decref(e);
}

static int uri_in_aia(X509 *c, int method_nid, const char *uri)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(c, NID_info_access, NULL, NULL);
    int found = 0;
    int i;

    for (i = 0; i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) == method_nid && ad->location->type == GEN_URI) {
            found |= strcmp((const char *)ASN1_STRING_get0_data(
                                ad->location->d.uniformResourceIdentifier),
                            uri)
                     == 0;
        }
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    return found;
}

static void test_include_aia_urls(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"aia.example\"],\"includeAIA\":true}");
    json_t *e = NULL;
    CRL_DIST_POINTS *dps;
    DIST_POINT *dp;
    GENERAL_NAME *g;
    X509 *c;

    (void)state;
    /* No public base URL configured. */
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "base URL"));
    o.base_url = "https://pki.example.com/";
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_OK);
    c = leaf_of(e);
    assert_true(uri_in_aia(c, NID_ad_OCSP, "https://pki.example.com/.well-known/torii/ocsp"));
    assert_true(uri_in_aia(c, NID_ad_ca_issuers,
                           "https://pki.example.com/.well-known/torii/ca/test-inter"));
    dps = X509_get_ext_d2i(c, NID_crl_distribution_points, NULL, NULL);
    assert_int_equal(sk_DIST_POINT_num(dps), 1);
    dp = sk_DIST_POINT_value(dps, 0);
    g = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
    assert_int_equal(g->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                        "https://pki.example.com/.well-known/torii/crl/test-inter");
    CRL_DIST_POINTS_free(dps);
    X509_free(c);
    json_decref(e);
    o.base_url = "ftp://x";
    assert_int_equal(torii_pki_cert_issue(fx->inter, q, &o, &e, &eb), TORII_EINVAL);
    json_decref(q);
}

/* ---- CSR ---- */

static X509_REQ *req_of(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_REQ *r = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(r);
    return r;
}

static X509 *cert_of(const char *pem)
{
    X509 *c = testpki_pem_cert(pem);

    assert_non_null(c);
    return c;
}

static void test_csr_create_and_sign(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"csr.example\",\"2001:db8::1\"],\"subject\":\"CN=csr.example, "
                      "O=Acme\",\"key\":{\"algo\":\"rsa\",\"size\":2048}}");
    json_t *r = NULL;
    json_t *s = NULL;
    X509_REQ *req;
    X509 *c;
    X509 *ca;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = chain_of(fx->inter);

    (void)state;
    assert_int_equal(torii_pki_csr_create(q, &r, &eb), TORII_OK);
    assert_non_null(strstr(json_string_value(json_object_get(r, "privateKey")), "PRIVATE KEY"));
    assert_non_null(strstr(json_string_value(json_object_get(r, "publicKey")), "PUBLIC KEY"));
    req = req_of(json_string_value(json_object_get(r, "csr")));
    assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
    assert_int_equal(EVP_PKEY_get_bits(X509_REQ_get0_pubkey(req)), 2048);

    assert_int_equal(torii_pki_csr_sign(fx->inter, json_string_value(json_object_get(r, "csr")),
                                        7 * DAY_MS, 0, &o, &s, &eb),
                     TORII_OK);
    c = cert_of(json_string_value(json_object_get(s, "cert")));
    ca = cert_of(json_string_value(json_object_get(s, "ca")));
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(c), X509_REQ_get_subject_name(req)), 0);
    assert_true(has_san(c, GEN_DNS, "csr.example"));
    assert_int_equal(X509_check_ca(c), 0);
    assert_true(X509_get_key_usage(c) & KU_KEY_ENCIPHERMENT);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(c), X509_REQ_get0_pubkey(req)), 1);
    assert_int_equal(X509_cmp(ca, sk_X509_value(untrusted, 0)), 0);
    /* Issued by the intermediate, chains to the root. */
    {
        X509 *anchor = leaf_of(fx->root);
        assert_true(X509_STORE_add_cert(store, anchor) == 1);
        X509_free(anchor);
    }
    assert_true(X509_STORE_CTX_init(ctx, store, c, untrusted) == 1);
    assert_true(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) == 1);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(ca);
    X509_free(c);
    X509_REQ_free(req);
    json_decref(s);
    json_decref(r);
    json_decref(q);
}

static void test_csr_asking_for_ca_gets_ca_false(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"subject\":\"CN=wannabe-ca\",\"ca\":true}");
    json_t *r = NULL;
    json_t *s = NULL;
    X509_REQ *req;
    STACK_OF(X509_EXTENSION) * exts;
    BASIC_CONSTRAINTS *bc;
    X509 *c;

    (void)state;
    assert_int_equal(torii_pki_csr_create(q, &r, &eb), TORII_OK);
    req = req_of(json_string_value(json_object_get(r, "csr")));
    exts = X509_REQ_get_extensions(req);
    bc = X509V3_get_d2i(exts, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca); /* the request really asks for CA:TRUE */
    BASIC_CONSTRAINTS_free(bc);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_int_equal(torii_pki_csr_sign(fx->inter, json_string_value(json_object_get(r, "csr")), 0,
                                        1, &o, &s, &eb),
                     TORII_OK);
    c = cert_of(json_string_value(json_object_get(s, "cert")));
    assert_int_equal(X509_check_ca(c), 0);
    bc = X509_get_ext_d2i(c, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_false(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    assert_false(X509_get_key_usage(c) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_extended_key_usage(c) & XKU_SSL_CLIENT);
    X509_free(c);
    X509_REQ_free(req);
    json_decref(s);
    json_decref(r);
    json_decref(q);
}

static void test_csr_sign_bad_signature_and_garbage_einval(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    X509_NAME *n2 = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long len;
    json_t *s = NULL;

    (void)state;
    assert_true(
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"good", -1, -1, 0)
        == 1);
    assert_true(X509_NAME_add_entry_by_txt(n2, "CN", MBSTRING_ASC,
                                           (const unsigned char *)"tampered", -1, -1, 0)
                == 1);
    assert_true(X509_REQ_set_subject_name(req, n) == 1);
    assert_true(X509_REQ_set_pubkey(req, k) == 1);
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    /* Change the signed content after signing: the signature no longer matches. */
    assert_true(X509_REQ_set_subject_name(req, n2) == 1);
    assert_int_equal(X509_REQ_verify(req, k), 0);
    ERR_clear_error();
    assert_true(PEM_write_bio_X509_REQ(b, req) == 1);
    len = BIO_get_mem_data(b, &pem);
    pem[len - 1] = '\0'; /* replaces the final newline */
    assert_int_equal(torii_pki_csr_sign(fx->inter, pem, 0, 0, &o, &s, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "signature"));
    assert_null(s);
    assert_int_equal(torii_pki_csr_sign(fx->inter, "not a csr", 0, 0, &o, &s, &eb), TORII_EINVAL);
    assert_int_equal(torii_pki_csr_sign(fx->leaf, "not a csr", 0, 0, &o, &s, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "not a CA"));
    assert_null(s);
    BIO_free(b);
    X509_NAME_free(n2);
    X509_NAME_free(n);
    X509_REQ_free(req);
    EVP_PKEY_free(k);
}

/* ---- imports ---- */

static unsigned char *p12_of(const json_t *e, const char *pw, int *len)
{
    STACK_OF(X509) *chain = chain_of(e);
    X509 *leaf = sk_X509_shift(chain);
    EVP_PKEY *k = key_of(e);
    PKCS12 *p12 = PKCS12_create(pw, "leaf", k, leaf, chain, 0, 0, 0, 0, 0);
    unsigned char *der = NULL;

    assert_non_null(p12);
    *len = i2d_PKCS12(p12, &der);
    assert_true(*len > 0);
    PKCS12_free(p12);
    EVP_PKEY_free(k);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return der;
}

static void test_import_p12_roundtrip_and_errors(void **state)
{
    struct torii_errbuf eb = {{0}};
    int64_t now = torii_clock_now_ms();
    json_t *out = NULL;
    json_t *e;
    unsigned char *der;
    int len;
    X509 *a;
    X509 *b;

    (void)state;
    der = p12_of(fx->leaf, "s3cret", &len);
    assert_int_equal(torii_pki_import_p12(der, (size_t)len, "s3cret", now, &out, &eb), TORII_OK);
    assert_int_equal(json_array_size(out), 1);
    e = json_array_get(out, 0);
    assert_int_equal(json_string_length(json_object_get(e, "id")), 64);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "Imported Certificate");
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_false(json_is_true(json_object_get(e, "client")));
    a = leaf_of(e);
    b = leaf_of(fx->leaf);
    assert_int_equal(X509_cmp(a, b), 0);
    {
        STACK_OF(X509) *chain = chain_of(e);
        assert_int_equal(sk_X509_num(chain), 3);
        sk_X509_pop_free(chain, X509_free);
    }
    assert_true(verify_entity(e, fx->root, X509_PURPOSE_SSL_SERVER));
    X509_free(a);
    X509_free(b);
    json_decref(out);
    out = NULL;

    /* Wrong password, no password: nothing returned. */
    assert_int_equal(torii_pki_import_p12(der, (size_t)len, "wrong", now, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "password"));
    assert_null(out);
    assert_int_equal(torii_pki_import_p12(der, (size_t)len, NULL, now, &out, &eb), TORII_EINVAL);
    assert_null(out);
    /* Corrupt: truncated, and a flipped byte in the middle. */
    assert_int_equal(torii_pki_import_p12(der, (size_t)len / 2, "s3cret", now, &out, &eb),
                     TORII_EINVAL);
    der[len / 2] ^= 0x5a;
    assert_int_equal(torii_pki_import_p12(der, (size_t)len, "s3cret", now, &out, &eb),
                     TORII_EINVAL);
    assert_null(out);
    assert_int_equal(torii_pki_import_p12((const unsigned char *)"junk", 4, "x", now, &out, &eb),
                     TORII_EINVAL);
    assert_null(out);
    OPENSSL_free(der);
}

static void test_import_p12_two_keys_gives_two_entities(void **state)
{
    struct torii_errbuf eb = {{0}};
    int64_t now = torii_clock_now_ms();
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    PKCS12 *p12;
    json_t *out = NULL;
    const json_t *ents[] = {fx->leaf, fx->inter};
    unsigned char *der = NULL;
    int len;
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        X509 *c = leaf_of(ents[i]);
        EVP_PKEY *k = key_of(ents[i]);
        assert_non_null(PKCS12_add_cert(&bags, c));
        assert_non_null(PKCS12_add_key(&bags, k, 0, 2048, NID_aes_256_cbc, "pw"));
        X509_free(c);
        EVP_PKEY_free(k);
    }
    {
        X509 *r = leaf_of(fx->root);
        assert_non_null(PKCS12_add_cert(&bags, r));
        X509_free(r);
    }
    assert_non_null(PKCS12_add_safe(&safes, bags, NID_aes_256_cbc, 2048, "pw"));
    p12 = PKCS12_add_safes(safes, 0);
    assert_non_null(p12);
    assert_int_equal(PKCS12_set_mac(p12, "pw", -1, NULL, 0, 2048, EVP_sha256()), 1);
    len = i2d_PKCS12(p12, &der);
    assert_true(len > 0);
    assert_int_equal(torii_pki_import_p12(der, (size_t)len, "pw", now, &out, &eb), TORII_OK);
    assert_int_equal(json_array_size(out), 2);
    assert_true(json_is_true(json_object_get(json_array_get(out, 0), "valid")));
    assert_true(json_is_true(json_object_get(json_array_get(out, 1), "ca")));
    {
        STACK_OF(X509) *c0 = chain_of(json_array_get(out, 0));
        STACK_OF(X509) *c1 = chain_of(json_array_get(out, 1));
        assert_int_equal(sk_X509_num(c0), 3); /* leaf, inter, root */
        assert_int_equal(sk_X509_num(c1), 2); /* inter, root */
        sk_X509_pop_free(c0, X509_free);
        sk_X509_pop_free(c1, X509_free);
    }
    json_decref(out);
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
}

static char *cat3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);

    assert_non_null(s);
    (void)snprintf(s, n, "%s\n%s\n%s", a, b, c);
    return s;
}

static void test_import_pem_bundle_any_order(void **state)
{
    struct torii_errbuf eb = {{0}};
    int64_t now = torii_clock_now_ms();
    STACK_OF(X509) *chain = chain_of(fx->leaf);
    char *pems[3];
    char *certs;
    char *bundle;
    char *nokey;
    json_t *out = NULL;
    int i;

    (void)state;
    for (i = 0; i < 3; i++) {
        pems[i] = testpki_cert_pem(sk_X509_value(chain, i));
    }
    /* root, leaf, inter, then the key */
    certs = cat3(pems[2], pems[0], pems[1]);
    bundle =
        cat3("garbage before", certs, json_string_value(json_object_get(fx->leaf, "privateKey")));
    assert_int_equal(torii_pki_import_pem_bundle(bundle, NULL, now, &out, &eb), TORII_OK);
    assert_int_equal(json_array_size(out), 1);
    {
        STACK_OF(X509) *got = chain_of(json_array_get(out, 0));
        assert_int_equal(sk_X509_num(got), 3);
        for (i = 0; i < 3; i++) {
            assert_int_equal(X509_cmp(sk_X509_value(got, i), sk_X509_value(chain, i)), 0);
        }
        sk_X509_pop_free(got, X509_free);
    }
    assert_true(json_is_true(json_object_get(json_array_get(out, 0), "valid")));
    assert_int_equal(
        strncmp(json_string_value(json_object_get(json_array_get(out, 0), "id")), "cert_", 5), 0);
    json_decref(out);
    out = NULL;
    /* No key; a key without its certificate; a broken key block. */
    assert_int_equal(torii_pki_import_pem_bundle(certs, NULL, now, &out, &eb), TORII_EINVAL);
    assert_null(out);
    nokey = cat3(pems[2], pems[1], json_string_value(json_object_get(fx->leaf, "privateKey")));
    assert_int_equal(torii_pki_import_pem_bundle(nokey, NULL, now, &out, &eb), TORII_EINVAL);
    assert_null(out);
    free(nokey);
    nokey = cat3(certs, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "");
    assert_int_equal(torii_pki_import_pem_bundle(nokey, NULL, now, &out, &eb), TORII_EINVAL);
    assert_null(out);
    free(nokey);
    free(bundle);
    free(certs);
    for (i = 0; i < 3; i++) {
        free(pems[i]);
    }
    sk_X509_pop_free(chain, X509_free);
}

/* ---- _data, _valid, serial ---- */

static void test_cert_data_fields(void **state)
{
    struct torii_errbuf eb = {{0}};
    json_t *d = NULL;
    char serial[TORII_PKI_SERIAL_HEX_MAX];

    (void)state;
    assert_int_equal(
        torii_pki_cert_data(json_string_value(json_object_get(fx->leaf, "chain")), &d, &eb),
        TORII_OK);
    assert_int_equal(torii_pki_cert_serial_hex(fx->leaf, serial, sizeof(serial), &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(d, "serialNumber")), serial);
    assert_string_equal(json_string_value(json_object_get(d, "subjectDN")), "CN=www.example.com");
    assert_string_equal(json_string_value(json_object_get(d, "issuerDN")),
                        "O=Torii, CN=Torii Test Intermediate");
    assert_string_equal(json_string_value(json_object_get(d, "sigAlgName")), "SHA384WITHECDSA");
    assert_string_equal(json_string_value(json_object_get(d, "sigAlgOID")), "1.2.840.10045.4.3.3");
    assert_string_equal(json_string_value(json_object_get(d, "domain")), "www.example.com");
    assert_string_equal(json_string_value(json_object_get(d, "rawDomain")), "www.example.com");
    assert_int_equal(json_integer_value(json_object_get(d, "constraints")), -1);
    assert_int_equal(json_integer_value(json_object_get(d, "version")), 3);
    assert_false(json_is_true(json_object_get(d, "ca")));
    assert_false(json_is_true(json_object_get(d, "selfSigned")));
    assert_int_equal(json_array_size(json_object_get(d, "subAltNames")), 2);
    assert_true(json_array_size(json_object_get(d, "cExtensions")) >= 2); /* BC, KU */
    assert_int_equal(json_string_length(json_object_get(d, "signature")), 32 * 3 - 1);
    assert_non_null(strstr(json_string_value(json_object_get(d, "publicKey")), "PUBLIC KEY"));
    assert_int_equal(json_integer_value(json_object_get(d, "notBefore")),
                     json_integer_value(json_object_get(fx->leaf, "from")));
    json_decref(d);
    assert_int_equal(
        torii_pki_cert_data(json_string_value(json_object_get(fx->root, "chain")), &d, &eb),
        TORII_OK);
    assert_int_equal(json_integer_value(json_object_get(d, "constraints")), 2147483647);
    assert_true(json_is_true(json_object_get(d, "selfSigned")));
    json_decref(d);
    assert_int_equal(
        torii_pki_cert_data(json_string_value(json_object_get(fx->inter, "chain")), &d, &eb),
        TORII_OK);
    assert_int_equal(json_integer_value(json_object_get(d, "constraints")), 0);
    json_decref(d);
    d = NULL;
    assert_int_equal(torii_pki_cert_data("no pem here", &d, &eb), TORII_EINVAL);
    assert_null(d);
}

static void test_cert_valid(void **state)
{
    int64_t now = torii_clock_now_ms();
    json_t *v = torii_pki_cert_valid(fx->leaf, now);
    json_t *rev = json_deep_copy(fx->leaf);
    json_t *junk = parse("{\"chain\":\"nope\"}");

    (void)state;
    assert_true(json_is_true(json_object_get(v, "valid")));
    json_decref(v);
    v = torii_pki_cert_valid(fx->leaf, now + 400 * DAY_MS); /* expired by then */
    assert_true(json_is_false(json_object_get(v, "valid")));
    json_decref(v);
    assert_int_equal(json_object_set_new(rev, "revoked", json_true()), 0);
    v = torii_pki_cert_valid(rev, now);
    assert_true(json_is_false(json_object_get(v, "valid")));
    json_decref(v);
    v = torii_pki_cert_valid(junk, now);
    assert_true(json_is_false(json_object_get(v, "valid")));
    json_decref(v);
    json_decref(junk);
    json_decref(rev);
}

static void test_subject_dn_parsing(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"subject\":\"CN=a\\\\, b, OU=Unit, O=Org, C=FR, L=Paris\"}");
    json_t *e = NULL;
    json_t *q2 = parse("{\"name\":{\"CN\":\"from-name\",\"O\":\"NameOrg\"}}");

    (void)state;
    assert_int_equal(torii_pki_cert_selfsigned(q, &o, &e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "a, b");
    assert_string_equal(json_string_value(json_object_get(e, "subject")),
                        "OU=Unit, O=Org, L=Paris, CN=a\\, b, C=FR");
    json_decref(e);
    assert_int_equal(torii_pki_cert_selfsigned(q2, &o, &e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "from-name");
    json_decref(e);
    json_decref(q2);
    json_decref(q);
}

/* ---- renewal (torii_pki_cert_renew) ---- */

/* The fixture is testpki's CA + leaf pair (leaf: RSA 2048, issued by ca, 10 days, 1 left). */
static int renew_setup(void **state)
{
    struct testpki_ca_leaf *f = calloc(1, sizeof(*f));

    if (f == NULL || testpki_ca_leaf_make(f) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int renew_teardown(void **state)
{
    struct testpki_ca_leaf *f = *state;

    testpki_ca_leaf_clear(f);
    free(f);
    return 0;
}

static void assert_same_ext(X509 *a, X509 *b, int nid)
{
    int la = X509_get_ext_by_NID(a, nid, -1);
    int lb = X509_get_ext_by_NID(b, nid, -1);

    assert_true(la >= 0 && lb >= 0);
    assert_int_equal(ASN1_STRING_cmp(X509_EXTENSION_get_data(X509_get_ext(a, la)),
                                     X509_EXTENSION_get_data(X509_get_ext(b, lb))),
                     0);
}

static void test_cert_renew_leaf_gets_new_key_same_profile(void **state)
{
    struct testpki_ca_leaf *f = *state;
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *before = json_deep_copy(f->leaf_ent);
    json_t *out = NULL;
    X509 *nc;

    assert_int_equal(torii_pki_cert_renew(f->leaf_ent, f->ca_ent, &o, &out, &eb), TORII_OK);
    assert_true(json_equal(before, f->leaf_ent)); /* borrowed, untouched */
    nc = leaf_of(out);
    assert_string_equal(json_string_value(json_object_get(out, "id")), "leaf");
    assert_string_equal(json_string_value(json_object_get(out, "caRef")), "ca");
    assert_true(json_is_true(json_object_get(out, "valid")));
    assert_true(json_is_null(json_object_get(out, "password")));
    assert_string_not_equal(json_string_value(json_object_get(out, "privateKey")),
                            json_string_value(json_object_get(f->leaf_ent, "privateKey")));
    assert_int_not_equal(
        ASN1_INTEGER_cmp(X509_get0_serialNumber(nc), X509_get0_serialNumber(f->leaf)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(nc), X509_get_subject_name(f->leaf)), 0);
    assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(nc)), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(nc)), 2048);
    assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(nc), f->leaf_key), 1);
    assert_same_ext(nc, f->leaf, NID_subject_alt_name);
    assert_same_ext(nc, f->leaf, NID_ext_key_usage);
    assert_same_ext(nc, f->leaf, NID_key_usage);
    assert_same_ext(nc, f->leaf, NID_basic_constraints);
    assert_int_equal(X509_verify(nc, f->ca_key), 1);
    /* The same validity length (10 days) from now, backdated a little. */
    assert_int_equal(json_integer_value(json_object_get(out, "to"))
                         - json_integer_value(json_object_get(out, "from")),
                     10 * DAY_MS);
    assert_true(json_integer_value(json_object_get(out, "to")) > o.now_ms + 9 * DAY_MS);
    assert_true(json_integer_value(json_object_get(out, "from")) <= o.now_ms);
    X509_free(nc);
    json_decref(out);
    json_decref(before);
}

static void test_cert_renew_ca_keeps_key_and_subject(void **state)
{
    struct testpki_ca_leaf *f = *state;
    json_t *out = NULL;
    X509 *nc;

    assert_int_equal(torii_pki_cert_renew(f->ca_ent, NULL, NULL, &out, NULL), TORII_OK);
    nc = leaf_of(out);
    assert_string_equal(json_string_value(json_object_get(out, "privateKey")),
                        json_string_value(json_object_get(f->ca_ent, "privateKey")));
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(nc), f->ca_key), 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(nc), X509_get_subject_name(f->ca)), 0);
    assert_same_ext(nc, f->ca, NID_subject_key_identifier);
    assert_true(json_is_true(json_object_get(out, "ca")));
    assert_true(json_is_true(json_object_get(out, "selfSigned")));
    /* The leaf it issued before still verifies with the renewed CA. */
    assert_int_equal(X509_verify(f->leaf, X509_get0_pubkey(nc)), 1);
    assert_int_equal(X509_check_issued(nc, f->leaf), X509_V_OK);
    X509_free(nc);
    json_decref(out);
}

static void test_cert_renew_selfsigned_leaf_is_signed_by_its_new_key(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *q = parse("{\"hosts\":[\"self.test\"],\"key\":{\"algo\":\"ecdsa\",\"size\":384}}");
    json_t *e = NULL;
    json_t *out = NULL;
    json_t *again = NULL;
    X509 *oc;
    X509 *nc;

    (void)state;
    assert_int_equal(torii_pki_cert_selfsigned(q, &o, &e, &eb), TORII_OK);
    assert_int_equal(torii_pki_cert_renew(e, NULL, &o, &out, &eb), TORII_OK);
    oc = leaf_of(e);
    nc = leaf_of(out);
    assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(nc), X509_get0_pubkey(oc)), 1);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(nc)), 384);
    /* Self-signed by the key it carries, so it stays self-signed and valid, and renews again. */
    assert_int_equal(X509_verify(nc, X509_get0_pubkey(nc)), 1);
    assert_true(json_is_true(json_object_get(out, "selfSigned")));
    assert_true(json_is_true(json_object_get(out, "valid")));
    assert_true(has_san(nc, GEN_DNS, "self.test"));
    assert_int_equal(torii_pki_cert_renew(out, NULL, &o, &again, &eb), TORII_OK);
    X509_free(oc);
    X509_free(nc);
    json_decref(again);
    json_decref(out);
    json_decref(e);
    json_decref(q);
}

static void test_cert_renew_chain_of_issued_cert_verifies(void **state)
{
    struct torii_pki_opts o = opts_now();
    struct torii_errbuf eb = {{0}};
    json_t *leaf = NULL;
    json_t *inter = NULL;
    X509 *old_leaf = leaf_of(fx->leaf);
    X509 *ni;

    (void)state;
    assert_int_equal(torii_pki_cert_renew(fx->leaf, fx->inter, &o, &leaf, &eb), TORII_OK);
    assert_true(verify_entity(leaf, fx->root, X509_PURPOSE_SSL_SERVER));
    assert_true(json_is_true(json_object_get(leaf, "valid")));
    /* The sub-CA keeps its key: the leaf it issued before verifies with the renewed one. */
    assert_int_equal(torii_pki_cert_renew(fx->inter, fx->root, &o, &inter, &eb), TORII_OK);
    assert_true(verify_entity(inter, fx->root, 0));
    ni = leaf_of(inter);
    assert_int_equal(X509_verify(old_leaf, X509_get0_pubkey(ni)), 1);
    X509_free(ni);
    X509_free(old_leaf);
    json_decref(inter);
    json_decref(leaf);
}

static void test_cert_renew_rejects_bad_input(void **state)
{
    struct testpki_ca_leaf *f = *state;
    struct torii_errbuf eb = {{0}};
    json_t *out = NULL;
    json_t *bad = json_deep_copy(f->ca_ent);

    assert_int_equal(json_object_set_new(bad, "revoked", json_true()), 0);
    assert_int_equal(torii_pki_cert_renew(f->leaf_ent, bad, NULL, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "not a usable CA"));
    json_decref(bad);
    /* A "CA" whose key does not match. */
    bad = json_deep_copy(f->ca_ent);
    assert_int_equal(json_object_set(bad, "privateKey", json_object_get(f->leaf_ent, "privateKey")),
                     0);
    assert_int_equal(torii_pki_cert_renew(f->leaf_ent, bad, NULL, &out, &eb), TORII_EINVAL);
    json_decref(bad);
    /* An issued certificate without its CA is not self-signed. */
    assert_int_equal(torii_pki_cert_renew(f->leaf_ent, NULL, NULL, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "not self-signed"));
    bad = json_deep_copy(f->leaf_ent);
    assert_int_equal(json_object_set_new(bad, "chain", json_string("garbage")), 0);
    assert_int_equal(torii_pki_cert_renew(bad, f->ca_ent, NULL, &out, &eb), TORII_EINVAL);
    assert_int_equal(json_object_set_new(bad, "chain", json_string("")), 0);
    assert_int_equal(torii_pki_cert_renew(bad, f->ca_ent, NULL, &out, &eb), TORII_EINVAL);
    json_decref(bad);
    bad = json_deep_copy(f->leaf_ent);
    assert_int_equal(json_object_set_new(bad, "privateKey", json_string("")), 0);
    assert_int_equal(torii_pki_cert_renew(bad, f->ca_ent, NULL, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "no private key"));
    /* Another certificate's key. */
    assert_int_equal(json_object_set(bad, "privateKey", json_object_get(f->ca_ent, "privateKey")),
                     0);
    assert_int_equal(torii_pki_cert_renew(bad, f->ca_ent, NULL, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "does not match"));
    json_decref(bad);
    assert_int_equal(torii_pki_cert_renew(NULL, f->ca_ent, NULL, &out, &eb), TORII_EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_create_root_is_selfsigned_p384_ca),
        cmocka_unit_test(test_subca_has_pathlen0_and_verifies_against_root),
        cmocka_unit_test(test_cert_issue_ecdsa_server_verifies),
        cmocka_unit_test(test_cert_issue_rsa_server_verifies),
        cmocka_unit_test(test_cert_issue_client_has_client_eku_only),
        cmocka_unit_test(test_cert_issue_ca_query_makes_subca),
        cmocka_unit_test(test_cert_issue_wrong_issuer_einval),
        cmocka_unit_test(test_query_bad_values_einval),
        cmocka_unit_test(test_cert_selfsigned_leaf_and_ca),
        cmocka_unit_test(test_keypair_create),
        cmocka_unit_test(test_include_aia_urls),
        cmocka_unit_test(test_csr_create_and_sign),
        cmocka_unit_test(test_csr_asking_for_ca_gets_ca_false),
        cmocka_unit_test(test_csr_sign_bad_signature_and_garbage_einval),
        cmocka_unit_test(test_import_p12_roundtrip_and_errors),
        cmocka_unit_test(test_import_p12_two_keys_gives_two_entities),
        cmocka_unit_test(test_import_pem_bundle_any_order),
        cmocka_unit_test(test_cert_data_fields),
        cmocka_unit_test(test_cert_valid),
        cmocka_unit_test(test_subject_dn_parsing),
        cmocka_unit_test_setup_teardown(test_cert_renew_leaf_gets_new_key_same_profile, renew_setup,
                                        renew_teardown),
        cmocka_unit_test_setup_teardown(test_cert_renew_ca_keeps_key_and_subject, renew_setup,
                                        renew_teardown),
        cmocka_unit_test(test_cert_renew_selfsigned_leaf_is_signed_by_its_new_key),
        cmocka_unit_test(test_cert_renew_chain_of_issued_cert_verifies),
        cmocka_unit_test_setup_teardown(test_cert_renew_rejects_bad_input, renew_setup,
                                        renew_teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
