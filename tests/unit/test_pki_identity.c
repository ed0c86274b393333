/* test_pki_identity.c - TLS client identities (torii_pki_identity_*) built from the TLS record
 * stored with an entity and installed on an SSL_CTX, plus torii_cert_secrets_wipe. Negative
 * cases: no key, a key not matching the leaf, truncated/garbage/corrupt records, NULL
 * arguments, a key refused by the context's security level; every failure explains itself
 * without key material and leaves the OpenSSL error queue empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "testpki.h"
#include "torii/mem.h"
#include "torii/pki.h"

struct fx {
    X509 *ca;
    EVP_PKEY *ca_key;
    X509 *leaf; /* EC P-256, issued by ca */
    EVP_PKEY *leaf_key;
    X509 *rsa; /* RSA 2048, self-signed */
    EVP_PKEY *rsa_key;
};

static int setup(void **state)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct testpki_opts o;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Identity CA";
    o.is_ca = 1;
    o.not_before_off_s = -3600;
    assert_int_equal(testpki_make(&o, &f->ca, &f->ca_key), 0);
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "identity-client";
    o.client = 1;
    o.not_before_off_s = -60;
    o.issuer = f->ca;
    o.issuer_key = f->ca_key;
    assert_int_equal(testpki_make(&o, &f->leaf, &f->leaf_key), 0);
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_RSA;
    o.bits = 2048;
    o.cn = "identity-rsa";
    o.client = 1;
    o.not_before_off_s = -60;
    assert_int_equal(testpki_make(&o, &f->rsa, &f->rsa_key), 0);
    *state = f;
    return 0;
}

#define MAX_RECORDS 32
/* The entities behind the records made (newest last): the identity opens the key of the
 * entity's privateKey, the record holds none. */
static struct {
    const unsigned char *rec;
    json_t *ent;
    struct torii_pki_key_src key;
} g_recs[MAX_RECORDS];
static size_t g_n_recs;

static int teardown(void **state)
{
    struct fx *f = *state;

    for (size_t i = 0; i < g_n_recs; i++) {
        json_decref(g_recs[i].ent);
    }
    g_n_recs = 0;

    X509_free(f->ca);
    EVP_PKEY_free(f->ca_key);
    X509_free(f->leaf);
    EVP_PKEY_free(f->leaf_key);
    X509_free(f->rsa);
    EVP_PKEY_free(f->rsa_key);
    free(f);
    return 0;
}

/* The TLS record of an entity made of chain[0..n) and key (NULL: none), key encrypted with
 * password when not NULL. */

static unsigned char *record(X509 *const *chain, size_t n, EVP_PKEY *key, const char *password,
                             size_t *len)
{
    json_t *e = testpki_entity("id", chain, n, key, password);
    unsigned char *aux = NULL;

    assert_non_null(e);
    assert_int_equal(torii_certrec_build(e, &aux, len, NULL), TORII_OK);
    assert_true(g_n_recs < MAX_RECORDS);
    g_recs[g_n_recs].rec = aux;
    g_recs[g_n_recs].ent = e;
    g_recs[g_n_recs].key = torii_pki_key_src_of(e, NULL);
    g_n_recs++;
    return aux;
}

/* The key source of the newest record at rec (NULL when rec was not made by record()). */
static const struct torii_pki_key_src *src(const unsigned char *rec)
{
    for (size_t i = g_n_recs; i > 0; i--) {
        if (g_recs[i - 1].rec == rec) {
            return &g_recs[i - 1].key;
        }
    }
    return NULL;
}

static void assert_clean_error(int rc, int want, const struct torii_errbuf *eb, const char *sub)
{
    assert_int_equal(rc, want);
    assert_non_null(strstr(eb->msg, sub));
    assert_null(strstr(eb->msg, "PRIVATE KEY"));
    assert_null(strstr(eb->msg, "BEGIN"));
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_identity_from_record_installs_leaf_chain_and_key(void **state)
{
    struct fx *f = *state;
    X509 *chain[2] = {f->leaf, f->ca};
    size_t len = 0;
    unsigned char *rec = record(chain, 2, f->leaf_key, NULL, &len);
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    STACK_OF(X509) *extra = NULL;

    assert_non_null(ctx);
    assert_int_equal(torii_pki_identity_new(rec, len, src(rec), &id, &eb), TORII_OK);
    torii_secure_free(rec, len); /* the identity does not borrow the record */
    assert_int_equal(torii_pki_identity_use(id, ctx, &eb), TORII_OK);
    torii_pki_identity_free(id); /* ctx holds its own references */
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), f->leaf), 0);
    assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
    assert_int_equal(EVP_PKEY_eq(SSL_CTX_get0_privatekey(ctx), f->leaf_key), 1);
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &extra), 1);
    assert_int_equal(sk_X509_num(extra), 1);
    assert_int_equal(X509_cmp(sk_X509_value(extra, 0), f->ca), 0);
    assert_int_equal(ERR_peek_error(), 0);
    SSL_CTX_free(ctx);
}

static void test_identity_with_encrypted_rsa_key_and_no_issuers(void **state)
{
    struct fx *f = *state;
    size_t len = 0;
    unsigned char *rec = record(&f->rsa, 1, f->rsa_key, "pass phrase", &len);
    struct torii_pki_identity *id = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    STACK_OF(X509) *extra = NULL;

    assert_non_null(ctx);
    assert_int_equal(torii_pki_identity_new(rec, len, src(rec), &id, NULL), TORII_OK);
    assert_int_equal(torii_pki_identity_use(id, ctx, NULL), TORII_OK);
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), f->rsa), 0);
    assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &extra), 1);
    assert_int_equal(sk_X509_num(extra), 0);
    torii_pki_identity_free(id);
    torii_secure_free(rec, len);
    SSL_CTX_free(ctx);
}

static void test_identity_without_key_is_refused(void **state)
{
    struct fx *f = *state;
    X509 *chain[2] = {f->leaf, f->ca};
    size_t len = 0;
    unsigned char *rec = record(chain, 2, NULL, NULL, &len);
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};

    assert_clean_error(torii_pki_identity_new(rec, len, src(rec), &id, &eb), TORII_EINVAL, &eb,
                       "no private key");
    assert_null(id);
    torii_secure_free(rec, len);
}

static void test_identity_with_a_key_of_another_certificate_is_refused(void **state)
{
    struct fx *f = *state;
    size_t len = 0;
    unsigned char *rec = record(&f->leaf, 1, f->ca_key, NULL, &len); /* CA's key, leaf cert */
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};

    assert_clean_error(torii_pki_identity_new(rec, len, src(rec), &id, &eb), TORII_EINVAL, &eb,
                       "does not match the leaf");
    assert_null(id);
    torii_secure_free(rec, len);
}

static void test_identity_from_a_bad_record_is_refused(void **state)
{
    struct fx *f = *state;
    size_t len = 0;
    unsigned char *rec = record(&f->leaf, 1, f->leaf_key, NULL, &len);
    unsigned char *leaf_der = NULL;
    int leaf_len = i2d_X509(f->leaf, &leaf_der);
    unsigned char *at = NULL;
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};
    static const unsigned char garbage[64] = {'T', 'C', 'R', 'T', 2};

    assert_clean_error(torii_pki_identity_new(NULL, 0, NULL, &id, &eb), TORII_EINVAL, &eb,
                       "does not decode");
    assert_clean_error(torii_pki_identity_new(rec, len - 1, src(rec), &id, &eb), TORII_EINVAL, &eb,
                       "does not decode");
    assert_clean_error(torii_pki_identity_new(garbage, sizeof(garbage), NULL, &id, &eb),
                       TORII_EINVAL, &eb, "does not decode");
    /* A record that decodes but whose leaf DER is damaged. */
    assert_true(leaf_len > 0);
    for (size_t i = 0; i + (size_t)leaf_len <= len; i++) {
        if (memcmp(rec + i, leaf_der, (size_t)leaf_len) == 0) {
            at = rec + i;
            break;
        }
    }
    assert_non_null(at);
    at[0] = 0x31; /* SET instead of SEQUENCE */
    assert_clean_error(torii_pki_identity_new(rec, len, src(rec), &id, &eb), TORII_EINVAL, &eb,
                       "leaf certificate does not parse");
    assert_null(id);
    OPENSSL_free(leaf_der);
    torii_secure_free(rec, len);
}

static void test_identity_use_refusals_drain_the_error_queue(void **state)
{
    struct fx *f = *state;
    size_t len = 0;
    unsigned char *rec = record(&f->leaf, 1, f->leaf_key, NULL, &len);
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    assert_non_null(ctx);
    assert_int_equal(torii_pki_identity_new(rec, len, src(rec), &id, NULL), TORII_OK);
    assert_int_equal(torii_pki_identity_use(NULL, ctx, &eb), TORII_EINVAL);
    assert_int_equal(torii_pki_identity_use(id, NULL, &eb), TORII_EINVAL);
    /* Level 5 wants 256-bit security; a P-256 key gives 128. */
    SSL_CTX_set_security_level(ctx, 5);
    assert_clean_error(torii_pki_identity_use(id, ctx, &eb), TORII_ETLS, &eb,
                       "identity: SSL_CTX_use_cert_and_key");
    assert_null(SSL_CTX_get0_certificate(ctx));
    torii_pki_identity_free(id);
    torii_pki_identity_free(NULL);
    torii_secure_free(rec, len);
    SSL_CTX_free(ctx);
}

static void test_identity_eq_compares_certificates_and_key(void **state)
{
    struct fx *f = *state;
    X509 *chain[2] = {f->leaf, f->ca};
    size_t la = 0;
    size_t lb = 0;
    size_t lc = 0;
    unsigned char *ra = record(chain, 2, f->leaf_key, NULL, &la);
    unsigned char *rb = record(chain, 2, f->leaf_key, "other encryption, same key", &lb);
    unsigned char *rc = record(&f->leaf, 1, f->leaf_key, NULL, &lc);
    struct torii_pki_identity *a = NULL;
    struct torii_pki_identity *b = NULL;
    struct torii_pki_identity *c = NULL;

    assert_int_equal(torii_pki_identity_new(ra, la, src(ra), &a, NULL), TORII_OK);
    assert_int_equal(torii_pki_identity_new(rb, lb, src(rb), &b, NULL), TORII_OK);
    assert_int_equal(torii_pki_identity_new(rc, lc, src(rc), &c, NULL), TORII_OK);
    assert_true(torii_pki_identity_eq(a, b));
    assert_true(torii_pki_identity_eq(a, a));
    assert_false(torii_pki_identity_eq(a, c)); /* same leaf and key, different chain */
    assert_false(torii_pki_identity_eq(a, NULL));
    assert_false(torii_pki_identity_eq(NULL, a));
    assert_true(torii_pki_identity_eq(NULL, NULL));
    torii_pki_identity_free(a);
    torii_pki_identity_free(b);
    torii_pki_identity_free(c);
    torii_secure_free(ra, la);
    torii_secure_free(rb, lb);
    torii_secure_free(rc, lc);
}

static void test_cert_secrets_wipe_zeroes_key_and_password_only(void **state)
{
    json_t *e = json_pack("{s:s, s:s, s:s}", "chain", "CHAIN", "privateKey",
                          "-----BEGIN PRIVATE KEY-----xyz", "password", "pw");
    const char *k;
    const char *p;

    (void)state;
    assert_non_null(e);
    k = json_string_value(json_object_get(e, "privateKey"));
    p = json_string_value(json_object_get(e, "password"));
    torii_cert_secrets_wipe(e);
    for (size_t i = 0; i < strlen("-----BEGIN PRIVATE KEY-----xyz"); i++) {
        assert_int_equal(k[i], 0);
    }
    assert_int_equal(p[0], 0);
    assert_int_equal(p[1], 0);
    assert_string_equal(json_string_value(json_object_get(e, "chain")), "CHAIN");
    json_decref(e);
    e = json_pack("{s:s, s:n, s:i}", "chain", "C", "password", "privateKey", 1);
    torii_cert_secrets_wipe(e); /* non-strings are skipped */
    assert_string_equal(json_string_value(json_object_get(e, "chain")), "C");
    json_decref(e);
    torii_cert_secrets_wipe(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_from_record_installs_leaf_chain_and_key,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_with_encrypted_rsa_key_and_no_issuers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_without_key_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_with_a_key_of_another_certificate_is_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_from_a_bad_record_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_use_refusals_drain_the_error_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_eq_compares_certificates_and_key, setup,
                                        teardown),
        cmocka_unit_test(test_cert_secrets_wipe_zeroes_key_and_password_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
