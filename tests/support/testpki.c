/* testpki.c - in-memory keys and certificates for tests (see testpki.h). */
#include "testpki.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "torii/clock.h"
#include "torii/err.h"
#include "torii/pki.h"

static EVP_PKEY *testpki_keygen(int key_type, int bits)
{
    if (key_type == EVP_PKEY_RSA) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)(bits > 0 ? bits : 2048));
    }
    if (key_type == EVP_PKEY_EC || key_type == 0) {
        const char *curve = "P-256";
        if (bits == 384) {
            curve = "P-384";
        } else if (bits == 521) {
            curve = "P-521";
        }
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    }
    if (key_type == EVP_PKEY_ED25519) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    return NULL;
}

static int testpki_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        return 1;
    }
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : 1;
}

/* "DNS:a,DNS:b,IP:1.2.3.4" into a heap string. */
static char *testpki_san_string(const struct testpki_opts *o)
{
    size_t cap = 1;
    size_t used = 0;
    size_t i;
    char *s;

    for (i = 0; i < o->n_dns; i++) {
        cap += strlen(o->dns[i]) + 5;
    }
    for (i = 0; i < o->n_ips; i++) {
        cap += strlen(o->ips[i]) + 4;
    }
    s = malloc(cap);
    if (s == NULL) {
        return NULL;
    }
    s[0] = '\0';
    for (i = 0; i < o->n_dns + o->n_ips; i++) {
        int is_dns = i < o->n_dns;
        int n = snprintf(s + used, cap - used, "%s%s:%s", used ? "," : "", is_dns ? "DNS" : "IP",
                         is_dns ? o->dns[i] : o->ips[i - o->n_dns]);
        if (n < 0 || (size_t)n >= cap - used) {
            free(s);
            return NULL;
        }
        used += (size_t)n;
    }
    return s;
}

int testpki_make(const struct testpki_opts *o, X509 **cert, EVP_PKEY **key)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY *new_key = NULL;
    EVP_PKEY *sign_key;
    X509 *c = NULL;
    X509_NAME *name = NULL;
    BIGNUM *bn = NULL;
    char *san = NULL;
    unsigned char serial[16];
    X509V3_CTX ctx;
    long nb = (long)o->not_before_off_s;
    long na = o->not_after_off_s != 0 ? (long)o->not_after_off_s : 365L * 86400L;
    int rc = 1;

    if (*key != NULL) {
        k = *key;
    } else {
        new_key = testpki_keygen(o->key_type, o->bits);
        k = new_key;
    }
    if (k == NULL) {
        goto out;
    }
    c = X509_new();
    name = X509_NAME_new();
    if (c == NULL || name == NULL || X509_set_version(c, X509_VERSION_3) != 1) {
        goto out;
    }
    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        goto out;
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) == NULL) {
        goto out;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(c), nb) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(c), na) == NULL) {
        goto out;
    }
    if (o->cn != NULL
        && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)o->cn, -1,
                                      -1, 0)
               != 1) {
        goto out;
    }
    if (X509_set_subject_name(c, name) != 1 || X509_set_pubkey(c, k) != 1) {
        goto out;
    }
    if (X509_set_issuer_name(c, o->issuer != NULL ? X509_get_subject_name(o->issuer) : name) != 1) {
        goto out;
    }
    X509V3_set_ctx(&ctx, o->issuer != NULL ? o->issuer : c, c, NULL, NULL, 0);
    if (o->is_ca) {
        if (testpki_add_ext(c, &ctx, NID_basic_constraints, "critical,CA:TRUE") != 0
            || testpki_add_ext(c, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") != 0) {
            goto out;
        }
    } else {
        if (testpki_add_ext(c, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0
            || testpki_add_ext(c, &ctx, NID_key_usage,
                               o->key_type == EVP_PKEY_RSA
                                   ? "critical,digitalSignature,keyEncipherment"
                                   : "critical,digitalSignature")
                   != 0
            || testpki_add_ext(c, &ctx, NID_ext_key_usage, o->client ? "clientAuth" : "serverAuth")
                   != 0) {
            goto out;
        }
    }
    if (testpki_add_ext(c, &ctx, NID_subject_key_identifier, "hash") != 0) {
        goto out;
    }
    if (o->issuer != NULL
        && testpki_add_ext(c, &ctx, NID_authority_key_identifier, "keyid:always") != 0) {
        goto out;
    }
    if (o->n_dns + o->n_ips > 0) {
        san = testpki_san_string(o);
        if (san == NULL || testpki_add_ext(c, &ctx, NID_subject_alt_name, san) != 0) {
            goto out;
        }
    }
    sign_key = o->issuer_key != NULL ? o->issuer_key : k;
    if (X509_sign(c, sign_key,
                  EVP_PKEY_get_base_id(sign_key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256())
        <= 0) {
        goto out;
    }
    *cert = c;
    c = NULL;
    if (new_key != NULL) {
        *key = new_key;
        new_key = NULL;
    }
    rc = 0;
out:
    if (rc != 0) {
        ERR_print_errors_fp(stderr);
    }
    free(san);
    BN_free(bn);
    X509_NAME_free(name);
    X509_free(c);
    EVP_PKEY_free(new_key);
    return rc;
}

static char *testpki_bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s;

    if (n < 0) {
        return NULL;
    }
    s = malloc((size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

char *testpki_cert_pem(X509 *c)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;

    if (b != NULL && PEM_write_bio_X509(b, c) == 1) {
        s = testpki_bio_string(b);
    }
    BIO_free(b);
    return s;
}

char *testpki_key_pem(EVP_PKEY *k, const char *password)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    int ok;

    if (b == NULL) {
        return NULL;
    }
    if (password != NULL) {
        ok = PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_256_cbc(), password, (int)strlen(password),
                                           NULL, NULL);
    } else {
        ok = PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    }
    if (ok == 1) {
        s = testpki_bio_string(b);
    }
    BIO_free(b);
    return s;
}

char *testpki_key_pem_traditional(EVP_PKEY *k, const char *password)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    int ok;

    if (b == NULL) {
        return NULL;
    }
    ok = PEM_write_bio_PrivateKey_traditional(
        b, k, password != NULL ? EVP_aes_128_cbc() : NULL, (const unsigned char *)password,
        password != NULL ? (int)strlen(password) : 0, NULL, NULL);
    if (ok == 1) {
        s = testpki_bio_string(b);
    }
    BIO_free(b);
    return s;
}

json_t *testpki_entity(const char *id, X509 *const *chain, size_t n_chain, EVP_PKEY *key,
                       const char *password)
{
    json_t *e = NULL;
    char *pem = NULL;
    size_t len = 0;
    size_t i;
    char *kp = NULL;

    for (i = 0; i < n_chain; i++) {
        char *one = testpki_cert_pem(chain[i]);
        size_t l;
        char *grown;

        if (one == NULL) {
            goto fail;
        }
        l = strlen(one);
        grown = realloc(pem, len + l + 1);
        if (grown == NULL) {
            free(one);
            goto fail;
        }
        pem = grown;
        memcpy(pem + len, one, l + 1);
        len += l;
        free(one);
    }
    if (key != NULL) {
        kp = testpki_key_pem(key, password);
        if (kp == NULL) {
            goto fail;
        }
    }
    e = json_pack("{s:s, s:s, s:s, s:s*}", "id", id, "chain", pem != NULL ? pem : "", "privateKey",
                  kp != NULL ? kp : "", "password", password);
fail:
    if (kp != NULL) {
        OPENSSL_cleanse(kp, strlen(kp));
    }
    free(kp);
    free(pem);
    return e;
}

json_t *testpki_entity_enriched(const char *id, X509 *const *chain, size_t n_chain, EVP_PKEY *key)
{
    json_t *e = testpki_entity(id, chain, n_chain, key, NULL);

    if (e == NULL) {
        return NULL;
    }
    if (torii_cert_normalize(e, NULL) != TORII_OK
        || torii_cert_enrich(e, torii_clock_now_ms(), NULL) != TORII_OK) {
        json_decref(e);
        return NULL;
    }
    return e;
}

int testpki_ca_leaf_make(struct testpki_ca_leaf *f)
{
    static const char *const dns[] = {"a.test", "b.test"};
    const struct testpki_opts ca = {.key_type = EVP_PKEY_EC,
                                    .bits = 256,
                                    .cn = "Unit CA",
                                    .is_ca = 1,
                                    .not_before_off_s = -3600,
                                    .not_after_off_s = 86400 * 3650};
    struct testpki_opts lf = {.key_type = EVP_PKEY_RSA,
                              .bits = 2048,
                              .cn = "a.test",
                              .dns = dns,
                              .n_dns = 2,
                              .not_before_off_s = -86400 * 9,
                              .not_after_off_s = 86400};
    X509 *chain[2];
    int rc = -1;

    memset(f, 0, sizeof(*f));
    if (testpki_make(&ca, &f->ca, &f->ca_key) != 0) {
        goto out;
    }
    lf.issuer = f->ca;
    lf.issuer_key = f->ca_key;
    if (testpki_make(&lf, &f->leaf, &f->leaf_key) != 0) {
        goto out;
    }
    f->ca_ent = testpki_entity_enriched("ca", &f->ca, 1, f->ca_key);
    chain[0] = f->leaf;
    chain[1] = f->ca;
    f->leaf_ent = testpki_entity_enriched("leaf", chain, 2, f->leaf_key);
    if (f->ca_ent == NULL || f->leaf_ent == NULL
        || json_object_set_new(f->leaf_ent, "caRef", json_string("ca")) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        testpki_ca_leaf_clear(f);
    }
    return rc;
}

void testpki_ca_leaf_clear(struct testpki_ca_leaf *f)
{
    X509_free(f->ca);
    X509_free(f->leaf);
    EVP_PKEY_free(f->ca_key);
    EVP_PKEY_free(f->leaf_key);
    json_decref(f->ca_ent);
    json_decref(f->leaf_ent);
    memset(f, 0, sizeof(*f));
}

X509 *testpki_pem_cert(const char *pem)
{
    BIO *b = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return x;
}

X509 *testpki_entity_leaf(const json_t *entity)
{
    return testpki_pem_cert(json_string_value(json_object_get(entity, "chain")));
}
