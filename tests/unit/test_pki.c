/* test_pki.c - unit tests for the pki module: entity JSON, enrich, certrec, generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h" /* module-internal: the lazy chain parse */
#include "testpki.h"
#include "torii/clock.h"
#include "torii/pki.h"

#define DAY_S 86400

/* Generated once per group: key generation (RSA especially) is the slow part. */
struct fixture {
    EVP_PKEY *ec_key;
    EVP_PKEY *rsa_key;
    EVP_PKEY *ca_key;
    EVP_PKEY *int_key;
    X509 *ca;
    X509 *inter;
};

static struct fixture *fx;

static int group_setup(void **state)
{
    struct testpki_opts o;

    (void)state;
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return 1;
    }
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Test Root CA";
    o.is_ca = 1;
    o.not_before_off_s = -DAY_S;
    o.not_after_off_s = 3650L * DAY_S;
    if (testpki_make(&o, &fx->ca, &fx->ca_key) != 0) {
        return 1;
    }
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Test Intermediate CA";
    o.is_ca = 1;
    o.not_before_off_s = -DAY_S;
    o.not_after_off_s = 1000L * DAY_S;
    o.issuer = fx->ca;
    o.issuer_key = fx->ca_key;
    if (testpki_make(&o, &fx->inter, &fx->int_key) != 0) {
        return 1;
    }
    fx->ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    fx->rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return fx->ec_key != NULL && fx->rsa_key != NULL ? 0 : 1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (fx != NULL) {
        X509_free(fx->ca);
        X509_free(fx->inter);
        EVP_PKEY_free(fx->ec_key);
        EVP_PKEY_free(fx->rsa_key);
        EVP_PKEY_free(fx->ca_key);
        EVP_PKEY_free(fx->int_key);
        free(fx);
        fx = NULL;
    }
    return 0;
}

static int64_t now_ms(void)
{
    return torii_clock_now_ms();
}

/* A leaf with the given names, signed by the intermediate (or self-signed), reusing key. */
static X509 *make_leaf(EVP_PKEY *key, const char *cn, const char *const *dns, size_t n_dns,
                       const char *const *ips, size_t n_ips, int self_signed)
{
    struct testpki_opts o;
    X509 *c = NULL;
    EVP_PKEY *k = key;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_get_base_id(key);
    o.cn = cn;
    o.dns = dns;
    o.n_dns = n_dns;
    o.ips = ips;
    o.n_ips = n_ips;
    o.not_before_off_s = -60;
    if (!self_signed) {
        o.issuer = fx->inter;
        o.issuer_key = fx->int_key;
    }
    assert_int_equal(testpki_make(&o, &c, &k), 0);
    assert_ptr_equal(k, key);
    return c;
}

/* ---- certrec ---- */

static unsigned char *build_record_key(size_t *len, X509 **leaf_out, int with_key)
{
    static const char *const dns[] = {"WWW.Example.COM.", "*.example.com", "www.example.com"};
    static const char *const ips[] = {"192.0.2.7", "2001:db8::1"};
    X509 *leaf = make_leaf(fx->ec_key, "ignored.example.com", dns, 3, ips, 2, 0);
    X509 *chain[2] = {leaf, fx->inter};
    json_t *e = testpki_entity("c1", chain, 2, with_key ? fx->ec_key : NULL, NULL);
    unsigned char *buf = NULL;
    struct torii_errbuf eb;

    assert_non_null(e);
    assert_int_equal(json_object_set_new(e, "revoked", json_true()), 0);
    assert_int_equal(torii_certrec_build(e, &buf, len, &eb), TORII_OK);
    json_decref(e);
    if (leaf_out != NULL) {
        *leaf_out = leaf;
    } else {
        X509_free(leaf);
    }
    return buf;
}

static unsigned char *build_record(size_t *len, X509 **leaf_out)
{
    return build_record_key(len, leaf_out, 1);
}

static void test_certrec_build_decode_roundtrip(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    X509 *leaf = NULL;
    unsigned char *buf;
    const unsigned char *p;
    X509 *back;
    int64_t nb;

    (void)state;
    assert_non_null(rec);
    buf = build_record(&len, &leaf);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    assert_true(rec->flags & TORII_CERTREC_HAS_KEY);
    assert_true(rec->flags & TORII_CERTREC_KEY_MATCHES);
    assert_true(rec->flags & TORII_CERTREC_REVOKED);
    assert_false(rec->flags & TORII_CERTREC_CA);
    assert_false(rec->flags & TORII_CERTREC_SELF_SIGNED);
    assert_int_equal(rec->key_type, EVP_PKEY_EC);
    /* DNS lower-cased, dot stripped, deduplicated; IPs as text; CN dropped (DNS SANs exist). */
    assert_int_equal(rec->n_names, 4);
    assert_int_equal(rec->names[0].len, strlen("www.example.com"));
    assert_memory_equal(rec->names[0].ptr, "www.example.com", rec->names[0].len);
    assert_memory_equal(rec->names[1].ptr, "*.example.com", rec->names[1].len);
    assert_memory_equal(rec->names[2].ptr, "192.0.2.7", rec->names[2].len);
    assert_memory_equal(rec->names[3].ptr, "2001:db8::1", rec->names[3].len);
    assert_int_equal(rec->n_chain, 2);
    p = (const unsigned char *)rec->chain[0].ptr;
    back = d2i_X509(NULL, &p, (long)rec->chain[0].len);
    assert_non_null(back);
    assert_int_equal(X509_cmp(back, leaf), 0);
    X509_free(back);
    /* The key is stored once, in the entity: the record says it has one, of which type, and
     * holds no key bytes. */
    assert_int_equal(rec->version, 3);
    assert_true((rec->flags & TORII_CERTREC_HAS_KEY) != 0);
    assert_int_equal(rec->key_type, EVP_PKEY_EC);
    assert_int_equal(rec->key_der.len, 0);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    nb = rec->not_before_ms;
    assert_true(nb <= now_ms() && nb > now_ms() - 3600 * 1000);
    assert_true(rec->not_after_ms > now_ms() + 300LL * DAY_S * 1000);
    /* Version 2: the leaf's issuer name hash and serial, for the issuer+serial index. */
    {
        unsigned char ih[EVP_MAX_MD_SIZE];
        unsigned int ih_len = 0;
        unsigned char *sn = NULL;
        int sn_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(leaf), &sn);

        assert_int_equal(rec->version, 3); /* version 2 and up */
        assert_int_equal(X509_NAME_digest(X509_get_issuer_name(leaf), EVP_sha256(), ih, &ih_len),
                         1);
        assert_int_equal(rec->issuer_hash.len, TORII_CERTREC_ISSUER_HASH_LEN);
        assert_memory_equal(rec->issuer_hash.ptr, ih, ih_len);
        assert_true(sn_len >= 3);
        assert_int_equal(rec->serial.len, (size_t)sn_len);
        assert_memory_equal(rec->serial.ptr, sn, (size_t)sn_len);
        OPENSSL_free(sn);
    }
    X509_free(leaf);
    torii_secure_free(buf, len);
    free(rec);
}

static void test_certrec_decode_every_truncation_einval(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    unsigned char *buf;
    size_t cut;

    (void)state;
    assert_non_null(rec);
    buf = build_record(&len, NULL);
    for (cut = 0; cut < len; cut++) {
        /* A fresh heap copy of exactly cut bytes, so ASan sees any over-read. */
        unsigned char *t = malloc(cut ? cut : 1);
        assert_non_null(t);
        memcpy(t, buf, cut);
        assert_int_equal(torii_certrec_decode(t, cut, rec), TORII_EINVAL);
        free(t);
    }
    /* Trailing garbage is rejected too. */
    {
        unsigned char *t = malloc(len + 1);
        assert_non_null(t);
        memcpy(t, buf, len);
        t[len] = 0;
        assert_int_equal(torii_certrec_decode(t, len + 1, rec), TORII_EINVAL);
        free(t);
    }
    torii_secure_free(buf, len);
    free(rec);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void test_certrec_decode_oversize_counts_einval(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    unsigned char *buf;
    unsigned char *t;

    (void)state;
    assert_non_null(rec);
    buf = build_record(&len, NULL);
    t = malloc(len);
    assert_non_null(t);

    memcpy(t, buf, len);
    put32(t + 32, TORII_CERTREC_MAX_NAMES + 1); /* n_names */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    put32(t + 32, 0xffffffffu);
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    put32(t + 36, TORII_CERTREC_MAX_CHAIN + 1); /* n_chain */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    put32(t + 36, 0);
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    put32(t + 40, 0xfffffff0u); /* first name length */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    t[4] = 4; /* version */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    t[4] = 0;
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    t[0] = 'X'; /* magic */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_OK);
    assert_int_equal(torii_certrec_decode(NULL, 0, rec), TORII_EINVAL);

    free(t);
    torii_secure_free(buf, len);
    free(rec);
}

/* A version 2 record as older versions wrote it: rec3 (version 3) with key bytes in its key
 * slot. *len gets the length. */
static unsigned char *legacy_v2(const unsigned char *rec3, size_t len3, const char *key,
                                size_t *len)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t klen = strlen(key);
    size_t off;
    unsigned char *v2;

    assert_non_null(rec);
    assert_int_equal(torii_certrec_decode(rec3, len3, rec), TORII_OK);
    off = (size_t)((const unsigned char *)rec->chain[rec->n_chain - 1].ptr - rec3)
          + rec->chain[rec->n_chain - 1].len; /* the key slot's length field */
    *len = len3 + klen;
    v2 = malloc(*len);
    assert_non_null(v2);
    memcpy(v2, rec3, off);
    v2[4] = 2;
    put32(v2 + off, (uint32_t)klen);
    memcpy(v2 + off + 4, key, klen);
    memcpy(v2 + off + 4 + klen, rec3 + off + 4, len3 - off - 4);
    free(rec);
    return v2;
}

/* An older record's key copy still decodes (never used), and torii_certrec_drop_key gives the
 * version 3 record without it, byte for byte what torii_certrec_build writes today. */
static void test_certrec_drop_key_of_a_version2_record(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    size_t v2_len = 0;
    size_t out_len = 0;
    unsigned char *buf;
    unsigned char *v2;
    unsigned char *out = NULL;

    (void)state;
    assert_non_null(rec);
    buf = build_record(&len, NULL);
    v2 = legacy_v2(buf, len, "0123456789 not a key", &v2_len);
    assert_int_equal(torii_certrec_decode(v2, v2_len, rec), TORII_OK);
    assert_int_equal(rec->version, 2);
    assert_int_equal(rec->key_der.len, strlen("0123456789 not a key"));
    assert_int_equal(torii_certrec_drop_key(v2, v2_len, &out, &out_len), TORII_OK);
    assert_non_null(out);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, buf, len);
    free(out);
    out = NULL;
    /* Nothing to drop in a version 3 record; a broken one is refused. */
    assert_int_equal(torii_certrec_drop_key(buf, len, &out, &out_len), TORII_OK);
    assert_null(out);
    assert_int_equal(torii_certrec_drop_key(v2, v2_len - 1, &out, &out_len), TORII_EINVAL);
    free(v2);
    torii_secure_free(buf, len);
    free(rec);
}

/* A version 1 record (as stored before the issuer hash and serial existed) still decodes. */
static void test_certrec_decode_version1_has_no_identity(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    unsigned char *buf;
    size_t v1_len;

    (void)state;
    assert_non_null(rec);
    buf = build_record_key(&len, NULL, 0); /* a version 1 record with a key held its bytes */
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    v1_len = len - 8 - rec->issuer_hash.len - rec->serial.len;
    buf[4] = 1;
    assert_int_equal(torii_certrec_decode(buf, v1_len, rec), TORII_OK);
    assert_int_equal(rec->version, 1);
    assert_int_equal(rec->issuer_hash.len, 0);
    assert_int_equal(rec->serial.len, 0);
    assert_int_equal(rec->n_chain, 2);
    /* ... but a v1 header on a v2 body has trailing bytes. */
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_EINVAL);
    torii_secure_free(buf, len);
    free(rec);
}

/* The identity fields are checked for their exact shape. */
static void test_certrec_decode_bad_identity_einval(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    size_t len = 0;
    unsigned char *buf;
    unsigned char *t;
    size_t ih_off;
    size_t sn_off;
    size_t sn_len;

    (void)state;
    assert_non_null(rec);
    buf = build_record(&len, NULL);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    sn_len = rec->serial.len;
    sn_off = len - sn_len;                               /* serial bytes */
    ih_off = sn_off - 4 - TORII_CERTREC_ISSUER_HASH_LEN; /* issuer hash bytes */
    t = malloc(len);
    assert_non_null(t);

    memcpy(t, buf, len);
    t[sn_off] = 0x04; /* not an INTEGER */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    t[sn_off + 1] ^= 0x01; /* DER length disagrees with the field length */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    memcpy(t, buf, len);
    put32(t + ih_off - 4, TORII_CERTREC_ISSUER_HASH_LEN + 1); /* hash too long */
    assert_int_equal(torii_certrec_decode(t, len, rec), TORII_EINVAL);
    /* Hash of 31 bytes (the record shortened by one byte accordingly). */
    memcpy(t, buf, ih_off - 4);
    put32(t + ih_off - 4, TORII_CERTREC_ISSUER_HASH_LEN - 1);
    memcpy(t + ih_off, buf + ih_off + 1, len - ih_off - 1);
    assert_int_equal(torii_certrec_decode(t, len - 1, rec), TORII_EINVAL);
    /* A serial without a hash. */
    memcpy(t, buf, ih_off - 4);
    put32(t + ih_off - 4, 0);
    memcpy(t + ih_off, buf + ih_off + TORII_CERTREC_ISSUER_HASH_LEN,
           len - ih_off - TORII_CERTREC_ISSUER_HASH_LEN);
    assert_int_equal(torii_certrec_decode(t, len - TORII_CERTREC_ISSUER_HASH_LEN, rec),
                     TORII_EINVAL);
    /* Both empty: allowed (a serial too long to index). */
    memcpy(t, buf, ih_off - 4);
    put32(t + ih_off - 4, 0);
    put32(t + ih_off, 0);
    assert_int_equal(torii_certrec_decode(t, ih_off + 4, rec), TORII_OK);
    assert_int_equal(rec->serial.len, 0);
    assert_int_equal(rec->issuer_hash.len, 0);

    free(t);
    torii_secure_free(buf, len);
    free(rec);
}

static void test_certrec_build_without_key_and_cn_only(void **state)
{
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    X509 *leaf = make_leaf(fx->rsa_key, "Only.CN.example.org", NULL, 0, NULL, 0, 1);
    json_t *e = testpki_entity("c2", &leaf, 1, NULL, NULL);
    unsigned char *buf = NULL;
    size_t len = 0;

    (void)state;
    assert_non_null(rec);
    assert_int_equal(torii_certrec_build(e, &buf, &len, NULL), TORII_OK);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    assert_false(rec->flags & TORII_CERTREC_HAS_KEY);
    assert_true(rec->flags & TORII_CERTREC_SELF_SIGNED);
    assert_int_equal(rec->key_type, 0);
    assert_int_equal(rec->key_der.len, 0);
    assert_int_equal(rec->n_names, 1);
    assert_memory_equal(rec->names[0].ptr, "only.cn.example.org", rec->names[0].len);
    torii_secure_free(buf, len);
    json_decref(e);
    X509_free(leaf);
    free(rec);
}

static void test_certrec_build_garbage_chain_einval(void **state)
{
    json_t *e = json_pack("{s:s, s:s}", "chain", "no pem here", "privateKey", "");
    unsigned char *buf = NULL;
    size_t len = 0;
    struct torii_errbuf eb;

    (void)state;
    eb.msg[0] = '\0';
    assert_int_equal(torii_certrec_build(e, &buf, &len, &eb), TORII_EINVAL);
    assert_null(buf);
    assert_non_null(strstr(eb.msg, "chain"));
    json_decref(e);
}

/* ---- entity: template / normalize ---- */

static const char *const all_fields[] = {
    "_loc",    "id",         "domain",      "name",     "description", "chain",
    "caRef",   "privateKey", "selfSigned",  "ca",       "valid",       "exposed",
    "revoked", "autoRenew",  "letsEncrypt", "subject",  "from",        "to",
    "client",  "keypair",    "sans",        "password", "metadata",    "tags",
};

static void test_cert_template_has_every_field_with_defaults(void **state)
{
    json_t *t = torii_cert_template();
    size_t i;

    (void)state;
    assert_non_null(t);
    for (i = 0; i < sizeof(all_fields) / sizeof(all_fields[0]); i++) {
        if (json_object_get(t, all_fields[i]) == NULL) {
            fail_msg("template lacks %s", all_fields[i]);
        }
    }
    assert_int_equal(json_object_size(t), sizeof(all_fields) / sizeof(all_fields[0]));
    assert_int_equal(strncmp(json_string_value(json_object_get(t, "id")), "cert_", 5), 0);
    assert_string_equal(json_string_value(json_object_get(t, "subject")), "--");
    assert_string_equal(json_string_value(json_object_get(t, "domain")), "--");
    assert_string_equal(json_string_value(json_object_get(t, "name")), "none");
    assert_true(json_is_null(json_object_get(t, "caRef")));
    assert_true(json_is_null(json_object_get(t, "password")));
    assert_true(json_is_false(json_object_get(t, "valid")));
    assert_true(json_is_integer(json_object_get(t, "from")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "_loc"), "tenant")),
                        "default");
    json_decref(t);
}

static void test_cert_normalize_fills_defaults_from_domain(void **state)
{
    json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:n}", "id", "c1", "domain", "api.example.com",
                          "password", "  ", "certType", "ca", "exposed");
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(torii_cert_normalize(e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "api.example.com");
    assert_string_equal(json_string_value(json_object_get(e, "description")),
                        "Certificate for api.example.com");
    assert_true(json_is_null(json_object_get(e, "password"))); /* blank -> null */
    assert_null(json_object_get(e, "certType"));               /* output only */
    assert_true(json_is_false(json_object_get(e, "exposed"))); /* null -> default */
    assert_true(json_is_array(json_object_get(e, "tags")));
    assert_true(json_is_object(json_object_get(e, "metadata")));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_object_get(e, "_loc"), "teams"), 0)),
        "default");
    /* Serializer order: _loc first, tags last. */
    assert_string_equal(json_object_iter_key(json_object_iter(e)), "_loc");
    json_decref(e);
}

static void test_cert_normalize_missing_id_is_generated(void **state)
{
    json_t *e = json_object();

    (void)state;
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    assert_int_equal(strncmp(json_string_value(json_object_get(e, "id")), "certificate_", 12), 0);
    assert_string_equal(json_string_value(json_object_get(e, "description")), "none");
    json_decref(e);
}

static void test_cert_normalize_wrong_types_einval_naming_field(void **state)
{
    static const struct {
        const char *field;
        const char *json;
    } cases[] = {
        {"id", "1"},
        {"id", "\"\""},
        {"name", "true"},
        {"chain", "[]"},
        {"caRef", "5"},
        {"privateKey", "{}"},
        {"valid", "\"yes\""},
        {"revoked", "1"},
        {"autoRenew", "\"true\""},
        {"from", "\"now\""},
        {"to", "false"},
        {"sans", "\"a.com\""},
        {"sans", "[1]"},
        {"tags", "{}"},
        {"metadata", "[]"},
        {"metadata", "{\"a\":1}"},
        {"password", "12"},
        {"_loc", "\"x\""},
        {"_loc", "{\"teams\":\"t\"}"},
        {"client", "0"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *e = json_pack("{s:s}", "domain", "x.com");
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        json_t *before;
        struct torii_errbuf eb;

        assert_non_null(v);
        assert_int_equal(json_object_set_new(e, cases[i].field, v), 0);
        before = json_deep_copy(e);
        eb.msg[0] = '\0';
        if (torii_cert_normalize(e, &eb) != TORII_EINVAL) {
            fail_msg("%s=%s accepted", cases[i].field, cases[i].json);
        }
        if (strstr(eb.msg, cases[i].field) == NULL) {
            fail_msg("message '%s' does not name %s", eb.msg, cases[i].field);
        }
        assert_true(json_equal(before, e)); /* untouched on failure */
        json_decref(before);
        json_decref(e);
    }
}

static void test_cert_normalize_unknown_field_einval(void **state)
{
    json_t *e = json_pack("{s:s, s:b}", "id", "x", "superFlag", 1);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(torii_cert_normalize(e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "superFlag"));
    assert_int_equal(torii_cert_normalize(NULL, &eb), TORII_EINVAL);
    json_decref(e);
}

static void test_cert_entity_json_roundtrip_all_fields(void **state)
{
    json_t *e = json_pack(
        "{s:{s:s, s:[s,s]}, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:b,"
        " s:b, s:s, s:I, s:I, s:b, s:b, s:[s,s], s:s, s:{s:s}, s:[s]}",
        "_loc", "tenant", "t1", "teams", "a", "b", "id", "cert_1", "domain", "d.example", "name",
        "My cert", "description", "desc", "chain", "PEM", "caRef", "ca_1", "privateKey", "KEY",
        "selfSigned", 1, "ca", 1, "valid", 1, "exposed", 1, "revoked", 1, "autoRenew", 1,
        "letsEncrypt", 1, "subject", "CN=d.example", "from", (json_int_t)1710000000000, "to",
        (json_int_t)1741536000000, "client", 1, "keypair", 1, "sans", "d.example", "*.d.example",
        "password", "secret", "metadata", "revocationReason", "SUPERSEDED", "tags", "production");
    json_t *copy;
    json_t *back;
    char *text;

    (void)state;
    assert_non_null(e);
    copy = json_deep_copy(e);
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    assert_true(json_equal(copy, e)); /* nothing defaulted, nothing changed */
    text = json_dumps(e, JSON_COMPACT);
    assert_non_null(text);
    back = json_loads(text, 0, NULL);
    assert_non_null(back);
    assert_int_equal(torii_cert_normalize(back, NULL), TORII_OK);
    assert_true(json_equal(back, e));
    free(text);
    json_decref(back);
    json_decref(copy);
    json_decref(e);
}

static void test_cert_redacted_drops_key_and_password(void **state)
{
    json_t *e = json_pack("{s:s, s:s, s:s}", "id", "x", "privateKey", "KEY", "password", "pw");
    json_t *r;

    (void)state;
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    r = torii_cert_redacted(e);
    assert_non_null(r);
    assert_null(json_object_get(r, "privateKey"));
    assert_null(json_object_get(r, "password"));
    assert_string_equal(json_string_value(json_object_get(r, "id")), "x");
    assert_non_null(json_object_get(e, "privateKey")); /* original untouched */
    json_decref(r);
    json_decref(e);
}

/* ---- enrich ---- */

static json_t *entity_of(X509 *const *chain, size_t n, EVP_PKEY *key, const char *password)
{
    json_t *e = testpki_entity("e1", chain, n, key, password);
    assert_non_null(e);
    return e;
}

static int enrich(json_t *e, struct torii_errbuf *eb)
{
    eb->msg[0] = '\0';
    return torii_cert_enrich(e, now_ms(), eb);
}

static int jbool(const json_t *e, const char *k)
{
    const json_t *v = json_object_get(e, k);
    assert_true(json_is_boolean(v));
    return json_is_true(v);
}

static void test_cert_enrich_rsa_leaf_with_chain_is_valid(void **state)
{
    static const char *const dns[] = {"api.example.com", "*.api.example.com"};
    static const char *const ips[] = {"10.1.2.3", "::1"};
    X509 *leaf = make_leaf(fx->rsa_key, "api.example.com", dns, 2, ips, 2, 0);
    X509 *chain[3] = {leaf, fx->inter, fx->ca};
    json_t *e = entity_of(chain, 3, fx->rsa_key, NULL);
    struct torii_errbuf eb;
    const json_t *sans;
    char *leaf_pem = testpki_cert_pem(leaf);

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_true(jbool(e, "valid"));
    assert_false(jbool(e, "ca"));
    assert_false(jbool(e, "selfSigned"));
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "api.example.com");
    assert_string_equal(json_string_value(json_object_get(e, "name")), "api.example.com");
    assert_string_equal(json_string_value(json_object_get(e, "subject")), "CN=api.example.com");
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "certificate");
    sans = json_object_get(e, "sans");
    assert_int_equal(json_array_size(sans), 4);
    assert_string_equal(json_string_value(json_array_get(sans, 0)), "api.example.com");
    assert_string_equal(json_string_value(json_array_get(sans, 1)), "*.api.example.com");
    assert_string_equal(json_string_value(json_array_get(sans, 2)), "10.1.2.3");
    assert_string_equal(json_string_value(json_array_get(sans, 3)), "::1");
    assert_true(json_integer_value(json_object_get(e, "from")) <= now_ms());
    assert_true(json_integer_value(json_object_get(e, "to")) > now_ms() + 300LL * DAY_S * 1000);
    /* Clean PEM chain, leaf first. */
    assert_int_equal(
        strncmp(json_string_value(json_object_get(e, "chain")), leaf_pem, strlen(leaf_pem)), 0);
    free(leaf_pem);
    json_decref(e);
    X509_free(leaf);
}

static void test_cert_enrich_ec_self_signed(void **state)
{
    static const char *const dns[] = {"self.example"};
    X509 *leaf = make_leaf(fx->ec_key, "self.example", dns, 1, NULL, 0, 1);
    json_t *e = entity_of(&leaf, 1, fx->ec_key, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_true(jbool(e, "selfSigned"));
    assert_true(jbool(e, "valid"));
    assert_false(jbool(e, "ca"));
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "selfSigned");
    json_decref(e);
    X509_free(leaf);
}

static void test_cert_enrich_ca_flags(void **state)
{
    json_t *e = entity_of(&fx->ca, 1, fx->ca_key, NULL);
    json_t *i;
    X509 *ichain[2] = {fx->inter, fx->ca};
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_true(jbool(e, "ca"));
    assert_true(jbool(e, "selfSigned"));
    assert_true(jbool(e, "valid"));
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "ca");
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "Test Root CA");
    json_decref(e);

    i = entity_of(ichain, 2, fx->int_key, NULL);
    assert_int_equal(enrich(i, &eb), TORII_OK);
    assert_true(jbool(i, "ca"));
    assert_false(jbool(i, "selfSigned"));
    assert_true(jbool(i, "valid"));
    json_decref(i);
}

static void test_cert_enrich_chain_not_linking_is_invalid(void **state)
{
    static const char *const dns[] = {"a.example"};
    X509 *leaf = make_leaf(fx->ec_key, "a.example", dns, 1, NULL, 0, 0);
    X509 *bad[2] = {leaf, fx->ca}; /* leaf is issued by the intermediate, not the root */
    X509 *good[2] = {leaf, fx->inter};
    json_t *e = entity_of(bad, 2, fx->ec_key, NULL);
    json_t *g = entity_of(good, 2, fx->ec_key, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_false(jbool(e, "valid"));
    assert_int_equal(enrich(g, &eb), TORII_OK);
    assert_true(jbool(g, "valid"));
    json_decref(e);
    json_decref(g);
    X509_free(leaf);
}

static X509 *make_dated(int64_t nb, int64_t na)
{
    struct testpki_opts o;
    X509 *c = NULL;
    EVP_PKEY *k = fx->ec_key;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "dated.example";
    o.not_before_off_s = nb;
    o.not_after_off_s = na;
    assert_int_equal(testpki_make(&o, &c, &k), 0);
    return c;
}

static void test_cert_enrich_expired_and_not_yet_valid_are_invalid(void **state)
{
    X509 *expired = make_dated(-30L * DAY_S, -DAY_S);
    X509 *future = make_dated(DAY_S, 30L * DAY_S);
    json_t *e1 = entity_of(&expired, 1, fx->ec_key, NULL);
    json_t *e2 = entity_of(&future, 1, fx->ec_key, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e1, &eb), TORII_OK);
    assert_false(jbool(e1, "valid"));
    assert_true(json_integer_value(json_object_get(e1, "to")) < now_ms());
    assert_int_equal(enrich(e2, &eb), TORII_OK);
    assert_false(jbool(e2, "valid"));
    /* Same certificate, evaluated inside its window: valid. */
    assert_int_equal(torii_cert_enrich(e2, now_ms() + 2LL * DAY_S * 1000, &eb), TORII_OK);
    assert_true(jbool(e2, "valid"));
    json_decref(e1);
    json_decref(e2);
    X509_free(expired);
    X509_free(future);
}

static void test_cert_enrich_revoked_is_invalid(void **state)
{
    X509 *c = make_dated(-60, DAY_S);
    json_t *e = entity_of(&c, 1, fx->ec_key, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(json_object_set_new(e, "revoked", json_true()), 0);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_false(jbool(e, "valid"));
    json_decref(e);
    X509_free(c);
}

static void test_cert_enrich_encrypted_pkcs8_password(void **state)
{
    X509 *c = make_dated(-60, DAY_S);
    json_t *e = entity_of(&c, 1, fx->rsa_key == NULL ? NULL : fx->ec_key, "s3cret");
    struct torii_errbuf eb;

    (void)state;
    assert_non_null(strstr(json_string_value(json_object_get(e, "privateKey")), "ENCRYPTED"));
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_true(jbool(e, "valid"));
    assert_int_equal(json_object_set_new(e, "password", json_string("wrong")), 0);
    assert_int_equal(enrich(e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "password"));
    assert_int_equal(json_object_set_new(e, "password", json_null()), 0);
    assert_int_equal(enrich(e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "password"));
    json_decref(e);
    X509_free(c);
}

static void test_cert_enrich_encrypted_traditional_password(void **state)
{
    static const char *const dns[] = {"rsa.example"};
    X509 *c = make_leaf(fx->rsa_key, "rsa.example", dns, 1, NULL, 0, 1);
    json_t *e = entity_of(&c, 1, NULL, NULL);
    char *kp = testpki_key_pem_traditional(fx->rsa_key, "pw-1");
    struct torii_errbuf eb;

    (void)state;
    assert_non_null(kp);
    assert_non_null(strstr(kp, "Proc-Type: 4,ENCRYPTED"));
    assert_int_equal(json_object_set_new(e, "privateKey", json_string(kp)), 0);
    assert_int_equal(json_object_set_new(e, "password", json_string("pw-1")), 0);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_true(jbool(e, "valid"));
    assert_int_equal(json_object_set_new(e, "password", json_string("pw-2")), 0);
    assert_int_equal(enrich(e, &eb), TORII_EINVAL);
    free(kp);
    json_decref(e);
    X509_free(c);
}

static void test_cert_enrich_key_mismatch_einval(void **state)
{
    X509 *c = make_dated(-60, DAY_S); /* ec_key */
    json_t *e = entity_of(&c, 1, fx->rsa_key, NULL);
    json_t *before;
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    before = json_deep_copy(e);
    assert_int_equal(enrich(e, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "match"));
    assert_true(json_equal(before, e));
    json_decref(before);
    json_decref(e);
    X509_free(c);
}

static void test_cert_enrich_garbage_and_empty_einval(void **state)
{
    X509 *c = make_dated(-60, DAY_S);
    json_t *e = entity_of(&c, 1, fx->ec_key, NULL);
    json_t *g;
    struct torii_errbuf eb;

    (void)state;
    g = json_deep_copy(e);
    assert_int_equal(json_object_set_new(g, "chain", json_string("")), 0);
    assert_int_equal(enrich(g, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "chain"));
    json_decref(g);

    g = json_deep_copy(e);
    assert_int_equal(json_object_set_new(g, "chain", json_string("hello world")), 0);
    assert_int_equal(enrich(g, &eb), TORII_EINVAL);
    json_decref(g);

    g = json_deep_copy(e);
    assert_int_equal(
        json_object_set_new(g, "chain",
                            json_string("-----BEGIN CERTIFICATE-----\nAAAAbm90IGEgY2VydA==\n"
                                        "-----END CERTIFICATE-----\n")),
        0);
    assert_int_equal(enrich(g, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "chain"));
    json_decref(g);

    g = json_deep_copy(e);
    assert_int_equal(json_object_set_new(g, "privateKey", json_string("garbage")), 0);
    assert_int_equal(enrich(g, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "privateKey"));
    json_decref(g);

    g = json_deep_copy(e);
    assert_int_equal(json_object_set_new(g, "privateKey",
                                         json_string("-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                     "-----END PRIVATE KEY-----\n")),
                     0);
    assert_int_equal(enrich(g, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "privateKey"));
    json_decref(g);

    json_decref(e);
    X509_free(c);
}

static void test_cert_enrich_without_key_is_trust_anchor(void **state)
{
    json_t *e = entity_of(&fx->ca, 1, NULL, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_false(jbool(e, "valid"));
    assert_true(jbool(e, "ca"));
    json_decref(e);
}

/* Replace "\n" by "\r\n", lower-case the armour, add garbage around and indentation. */
static char *mangle_pem(const char *pem)
{
    size_t n = strlen(pem);
    char *o = malloc(n * 3 + 64);
    size_t j = 0;
    size_t i;
    int armour = 0;

    assert_non_null(o);
    j += (size_t)snprintf(o, 64, "Bag Attributes: junk\r\n  ");
    for (i = 0; i < n; i++) {
        char ch = pem[i];
        if (i == 0 || pem[i - 1] == '\n') {
            armour = strncmp(pem + i, "-----", 5) == 0;
        }
        if (ch == '\n') {
            o[j++] = '\r';
            o[j++] = '\n';
            o[j++] = ' ';
            continue;
        }
        o[j++] = (armour && ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    memcpy(o + j, "trailing text", 14);
    return o;
}

static void test_cert_enrich_lenient_pem_is_reemitted_clean(void **state)
{
    X509 *c = make_dated(-60, DAY_S);
    char *pem = testpki_cert_pem(c);
    char *kpem = testpki_key_pem(fx->ec_key, NULL);
    char *mc = mangle_pem(pem);
    char *mk = mangle_pem(kpem);
    json_t *e = json_pack("{s:s, s:s, s:s}", "id", "x", "chain", mc, "privateKey", mk);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "chain")), pem);
    assert_true(jbool(e, "valid"));
    json_decref(e);
    free(mc);
    free(mk);
    free(pem);
    free(kpem);
    X509_free(c);
}

static void test_cert_enrich_subject_order_and_domain_fallback(void **state)
{
    static const char *const dns[] = {"first.example", "second.example"};
    X509 *c = make_leaf(fx->ec_key, NULL, dns, 2, NULL, 0, 1);
    X509_NAME *n = X509_NAME_new();
    json_t *e;
    struct torii_errbuf eb;

    (void)state;
    /* No CN: domain is the first SAN. */
    e = entity_of(&c, 1, fx->ec_key, NULL);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "first.example");
    json_decref(e);

    /* DER order C, O, OU, CN, SN -> sorted descending by attribute name. */
    assert_non_null(n);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(n, "C", MBSTRING_UTF8, (const unsigned char *)"FR", -1, -1, 0),
        1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
                                                (const unsigned char *)"Acme, Inc", -1, -1, 0),
                     1);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)"Ops", -1, -1, 0),
        1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"www.acme.test", -1, -1, 0),
                     1);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(n, "SN", MBSTRING_UTF8, (const unsigned char *)"Doe", -1, -1, 0),
        1);
    assert_int_equal(X509_set_subject_name(c, n), 1);
    assert_int_equal(X509_set_issuer_name(c, n), 1);
    assert_true(X509_sign(c, fx->ec_key, EVP_sha256()) > 0);
    e = entity_of(&c, 1, fx->ec_key, NULL);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "subject")),
                        "SURNAME=Doe, OU=Ops, O=Acme\\, Inc, CN=www.acme.test, C=FR");
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "www.acme.test");
    assert_true(jbool(e, "selfSigned"));
    json_decref(e);
    X509_NAME_free(n);
    X509_free(c);
}

static void test_cert_enrich_keeps_user_fields(void **state)
{
    X509 *c = make_dated(-60, DAY_S);
    json_t *e = entity_of(&c, 1, fx->ec_key, NULL);
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(json_object_set_new(e, "metadata", json_pack("{s:s}", "k", "v")), 0);
    assert_int_equal(json_object_set_new(e, "tags", json_pack("[s]", "t")), 0);
    assert_int_equal(json_object_set_new(e, "client", json_true()), 0);
    assert_int_equal(json_object_set_new(e, "name", json_string("keep me")), 0);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "metadata"), "k")),
                        "v");
    assert_int_equal(json_array_size(json_object_get(e, "tags")), 1);
    assert_true(jbool(e, "client"));
    assert_string_equal(json_string_value(json_object_get(e, "certType")), "client");
    assert_string_equal(json_string_value(json_object_get(e, "name")), "keep me");
    json_decref(e);
    X509_free(c);
}

static void test_certrec_build_from_encrypted_rsa_entity(void **state)
{
    static const char *const dns[] = {"rsa.example"};
    X509 *c = make_leaf(fx->rsa_key, "rsa.example", dns, 1, NULL, 0, 0);
    X509 *chain[2] = {c, fx->inter};
    json_t *e = entity_of(chain, 2, fx->rsa_key, "pw");
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    unsigned char *buf = NULL;
    size_t len = 0;
    EVP_PKEY *k;
    struct torii_errbuf eb;

    (void)state;
    assert_non_null(rec);
    assert_int_equal(enrich(e, &eb), TORII_OK);
    assert_int_equal(torii_certrec_build(e, &buf, &len, &eb), TORII_OK);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    assert_int_equal(rec->key_type, EVP_PKEY_RSA);
    assert_int_equal(rec->key_der.len, 0);
    k = NULL;
    assert_int_equal(torii_pki_entity_key_open(NULL, e, &k, &eb), TORII_OK);
    assert_int_equal(EVP_PKEY_eq(k, fx->rsa_key), 1);
    EVP_PKEY_free(k);
    /* Wrong password: the record cannot be built. */
    assert_int_equal(json_object_set_new(e, "password", json_string("nope")), 0);
    torii_secure_free(buf, len);
    buf = NULL;
    assert_int_equal(torii_certrec_build(e, &buf, &len, &eb), TORII_EINVAL);
    assert_null(buf);
    json_decref(e);
    X509_free(c);
    free(rec);
}

/* ---- generator ---- */

static void test_cert_generate_selfsigned_enriches_valid(void **state)
{
    static const char *const names[] = {"torii.local", "localhost", "127.0.0.1"};
    json_t *e = NULL;
    json_t *again;
    struct torii_errbuf eb;
    int64_t t = now_ms();
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    unsigned char *buf = NULL;
    size_t len = 0;
    const unsigned char *p;
    X509 *leaf;
    EXTENDED_KEY_USAGE *eku;
    const ASN1_INTEGER *serial;

    (void)state;
    assert_non_null(rec);
    assert_int_equal(torii_cert_generate_selfsigned("default-cert", names, 3, t, 365, &e, &eb),
                     TORII_OK);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "id")), "default-cert");
    assert_true(jbool(e, "valid"));
    assert_true(jbool(e, "selfSigned"));
    assert_true(jbool(e, "autoRenew"));
    assert_false(jbool(e, "ca"));
    assert_string_equal(json_string_value(json_object_get(e, "domain")), "torii.local");
    assert_string_equal(json_string_value(json_object_get(e, "subject")), "CN=torii.local");
    assert_int_equal(json_array_size(json_object_get(e, "sans")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "sans"), 2)),
                        "127.0.0.1");
    assert_true(json_integer_value(json_object_get(e, "to")) >= t + 364LL * DAY_S * 1000);

    /* Re-enriching the stored form gives the same result. */
    again = json_deep_copy(e);
    assert_int_equal(torii_cert_enrich(again, t, &eb), TORII_OK);
    assert_true(json_equal(again, e));
    json_decref(again);

    assert_int_equal(torii_certrec_build(e, &buf, &len, &eb), TORII_OK);
    assert_int_equal(torii_certrec_decode(buf, len, rec), TORII_OK);
    assert_int_equal(rec->key_type, EVP_PKEY_EC);
    assert_true(rec->flags & TORII_CERTREC_KEY_MATCHES);
    assert_true(rec->flags & TORII_CERTREC_SELF_SIGNED);
    p = (const unsigned char *)rec->chain[0].ptr;
    leaf = d2i_X509(NULL, &p, (long)rec->chain[0].len);
    assert_non_null(leaf);
    eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);
    assert_non_null(eku);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 1);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    serial = X509_get0_serialNumber(leaf);
    assert_true(ASN1_STRING_length(serial) >= 15);
    X509_free(leaf);
    torii_secure_free(buf, len);
    free(rec);
    json_decref(e);
}

static void test_cert_generate_selfsigned_bad_input_einval(void **state)
{
    static const char *const bad[] = {"not a name"};
    static const char *const ok[] = {"ok.example"};
    json_t *e = NULL;
    struct torii_errbuf eb;

    (void)state;
    assert_int_equal(torii_cert_generate_selfsigned(NULL, ok, 0, now_ms(), 365, &e, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_cert_generate_selfsigned(NULL, bad, 1, now_ms(), 365, &e, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_cert_generate_selfsigned(NULL, ok, 1, now_ms(), 0, &e, &eb),
                     TORII_EINVAL);
    assert_null(e);
    assert_int_equal(torii_cert_generate_selfsigned(NULL, ok, 1, now_ms(), 30, &e, &eb), TORII_OK);
    assert_int_equal(strncmp(json_string_value(json_object_get(e, "id")), "cert_", 5), 0);
    json_decref(e);
}

/* The leaf of an entity's chain (first PEM block). */
static X509 *entity_leaf(const json_t *e)
{
    const char *pem = json_string_value(json_object_get(e, "chain"));
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return x;
}

/* The NIDs of c's extensions, in order, as a comma-separated list into buf. */
static const char *ext_nids(X509 *c, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < X509_get_ext_count(c) && n + 16 < len; i++) {
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(c, i)));
        n += (size_t)snprintf(buf + n, len - n, "%s%d", i > 0 ? "," : "", nid);
    }
    return buf;
}

/* The first-start certificate and a self-signed leaf issued from a query come out of one
 * issuing pipeline: same extensions in the same order, same signature algorithm, key type. */
static void test_cert_generate_selfsigned_same_profile_as_issued_leaf(void **state)
{
    static const char *const names[] = {"torii.local", "127.0.0.1"};
    json_t *gen = NULL;
    json_t *iss = NULL;
    json_t *q = json_pack("{s:[s,s],s:{s:s,s:i}}", "hosts", "torii.local", "127.0.0.1", "key",
                          "algo", "ecdsa", "size", 256);
    struct torii_errbuf eb;
    X509 *a;
    X509 *b;
    char ea[256];
    char ebuf[256];

    (void)state;
    assert_non_null(q);
    assert_int_equal(torii_cert_generate_selfsigned("g", names, 2, now_ms(), 30, &gen, &eb),
                     TORII_OK);
    assert_int_equal(torii_pki_cert_selfsigned(q, NULL, &iss, &eb), TORII_OK);
    a = entity_leaf(gen);
    b = entity_leaf(iss);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(ext_nids(a, ea, sizeof(ea)), ext_nids(b, ebuf, sizeof(ebuf)));
    assert_true(X509_get_ext_by_NID(a, NID_authority_key_identifier, -1) >= 0);
    assert_int_equal(X509_get_signature_nid(a), X509_get_signature_nid(b));
    assert_int_equal(X509_get_signature_nid(a), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(a), X509_get_issuer_name(a)), 0);
    X509_free(a);
    X509_free(b);
    json_decref(gen);
    json_decref(iss);
    json_decref(q);
}

/* A first name longer than a CN may be leaves the subject empty (the SAN names it); a bad
 * name is refused with an error that names it. */
static void test_cert_generate_selfsigned_long_and_bad_names(void **state)
{
    static const char *const bad[] = {"ok.example", "bad name"};
    char longname[80];
    const char *names[1] = {longname};
    json_t *e = NULL;
    struct torii_errbuf eb;
    X509 *x;

    (void)state;
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(torii_cert_generate_selfsigned("l", names, 1, now_ms(), 30, &e, &eb),
                     TORII_OK);
    x = entity_leaf(e);
    assert_non_null(x);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    assert_true(X509_get_ext_by_NID(x, NID_subject_alt_name, -1) >= 0);
    X509_free(x);
    json_decref(e);
    e = NULL;
    assert_int_equal(torii_cert_generate_selfsigned("b", bad, 2, now_ms(), 30, &e, &eb),
                     TORII_EINVAL);
    assert_null(e);
    assert_non_null(strstr(eb.msg, "'bad name'"));
}

/* The write path's parse leaves the public keys undecoded (OpenSSL 3.0 builds a decoder per
 * certificate otherwise): the DER is unchanged, and every key question gets the key that a
 * full parse decodes, RSA and EC. */
static void test_chain_parse_lazy_decodes_keys_on_demand(void **state)
{
    static const char *const dns[] = {"lazy.example"};
    X509 *leaf = make_leaf(fx->rsa_key, "lazy.example", dns, 1, NULL, 0, 0);
    X509 *self = make_leaf(fx->ec_key, "self.example", dns, 1, NULL, 0, 1);
    X509 *in[3] = {leaf, fx->inter, fx->ca};
    char *pem = NULL;
    STACK_OF(X509) *chain = NULL;
    STACK_OF(X509) *chain2 = NULL;
    struct torii_errbuf eb;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        char *one = testpki_cert_pem(in[i]);
        size_t n = pem != NULL ? strlen(pem) : 0;
        pem = realloc(pem, n + strlen(one) + 1);
        assert_non_null(pem);
        memcpy(pem + n, one, strlen(one) + 1);
        free(one);
    }
    assert_int_equal(torii_pki__chain_parse_lazy(pem, &chain, &eb), TORII_OK);
    assert_int_equal(sk_X509_num(chain), 3);
    for (int i = 0; i < 3; i++) {
        X509 *c = sk_X509_value(chain, i);
        unsigned char *a = NULL;
        unsigned char *b = NULL;
        int na = i2d_X509(c, &a);
        int nb = i2d_X509(in[i], &b);

        assert_null(X509_get0_pubkey(c)); /* not decoded by the parse */
        ERR_clear_error();
        assert_true(na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0);
        assert_non_null(torii_pki__cert_pub(c));
        assert_int_equal(EVP_PKEY_eq(torii_pki__cert_pub(c), X509_get0_pubkey(in[i])), 1);
        assert_ptr_equal(torii_pki__cert_pub(c), torii_pki__cert_pub(c)); /* kept on c */
        OPENSSL_free(a);
        OPENSSL_free(b);
    }
    assert_true(torii_pki__cert_key_match(sk_X509_value(chain, 0), fx->rsa_key));
    assert_false(torii_pki__cert_key_match(sk_X509_value(chain, 0), fx->ec_key));
    assert_true(torii_pki__chain_links(chain));
    assert_false(torii_pki__self_signed(sk_X509_value(chain, 0)));
    free(pem);
    pem = testpki_cert_pem(self);
    assert_int_equal(torii_pki__chain_parse_lazy(pem, &chain2, &eb), TORII_OK);
    assert_true(torii_pki__self_signed(sk_X509_value(chain2, 0)));
    assert_true(torii_pki__cert_key_match(sk_X509_value(chain2, 0), fx->ec_key));
    free(pem);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(chain2, X509_free);
    X509_free(leaf);
    X509_free(self);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_certrec_build_decode_roundtrip),
        cmocka_unit_test(test_certrec_decode_every_truncation_einval),
        cmocka_unit_test(test_certrec_decode_oversize_counts_einval),
        cmocka_unit_test(test_certrec_decode_version1_has_no_identity),
        cmocka_unit_test(test_certrec_drop_key_of_a_version2_record),
        cmocka_unit_test(test_certrec_decode_bad_identity_einval),
        cmocka_unit_test(test_certrec_build_without_key_and_cn_only),
        cmocka_unit_test(test_certrec_build_garbage_chain_einval),
        cmocka_unit_test(test_certrec_build_from_encrypted_rsa_entity),
        cmocka_unit_test(test_cert_template_has_every_field_with_defaults),
        cmocka_unit_test(test_cert_normalize_fills_defaults_from_domain),
        cmocka_unit_test(test_cert_normalize_missing_id_is_generated),
        cmocka_unit_test(test_cert_normalize_wrong_types_einval_naming_field),
        cmocka_unit_test(test_cert_normalize_unknown_field_einval),
        cmocka_unit_test(test_cert_entity_json_roundtrip_all_fields),
        cmocka_unit_test(test_cert_redacted_drops_key_and_password),
        cmocka_unit_test(test_cert_enrich_rsa_leaf_with_chain_is_valid),
        cmocka_unit_test(test_cert_enrich_ec_self_signed),
        cmocka_unit_test(test_cert_enrich_ca_flags),
        cmocka_unit_test(test_cert_enrich_chain_not_linking_is_invalid),
        cmocka_unit_test(test_cert_enrich_expired_and_not_yet_valid_are_invalid),
        cmocka_unit_test(test_cert_enrich_revoked_is_invalid),
        cmocka_unit_test(test_cert_enrich_encrypted_pkcs8_password),
        cmocka_unit_test(test_cert_enrich_encrypted_traditional_password),
        cmocka_unit_test(test_cert_enrich_key_mismatch_einval),
        cmocka_unit_test(test_cert_enrich_garbage_and_empty_einval),
        cmocka_unit_test(test_cert_enrich_without_key_is_trust_anchor),
        cmocka_unit_test(test_cert_enrich_lenient_pem_is_reemitted_clean),
        cmocka_unit_test(test_cert_enrich_subject_order_and_domain_fallback),
        cmocka_unit_test(test_cert_enrich_keeps_user_fields),
        cmocka_unit_test(test_cert_generate_selfsigned_enriches_valid),
        cmocka_unit_test(test_cert_generate_selfsigned_bad_input_einval),
        cmocka_unit_test(test_cert_generate_selfsigned_same_profile_as_issued_leaf),
        cmocka_unit_test(test_cert_generate_selfsigned_long_and_bad_names),
        cmocka_unit_test(test_chain_parse_lazy_decodes_keys_on_demand),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
