/* test_tls_table.c - the RCU certificate table and the pure selection rule (table.h). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"
#include "torii/table.h"

#define DAY_S (86400LL)

/* Keys are generated once per run (RSA generation is slow) and shared by every certificate;
 * main thread only. */
static EVP_PKEY *g_ec_key;
static EVP_PKEY *g_rsa_key;
/* The privateKey texts of the two keys: what the table is given next to a record (the record
 * holds no key bytes). */
static char *g_ec_pem;
static char *g_rsa_pem;
static struct torii_pki_key_src g_ec_src;
static struct torii_pki_key_src g_rsa_src;

static const struct torii_pki_key_src *key_src(int key_type)
{
    return key_type == EVP_PKEY_RSA ? &g_rsa_src : &g_ec_src;
}

struct spec {
    const char *const *dns;  /* SANs */
    size_t n_dns;            /* count */
    X509 *issuer;            /* NULL: self-signed */
    EVP_PKEY *issuer_key;    /* with issuer */
    const char *extra_chain; /* PEM appended to the chain */
    int64_t nb_s;            /* not_before offset from now */
    int64_t na_s;            /* not_after offset from now; 0 = +365 d */
    int key_type;            /* EVP_PKEY_EC (default) or EVP_PKEY_RSA */
    int is_ca;               /* CA:TRUE */
    int ca_signs;            /* with is_ca: keyUsage digitalSignature + keyCertSign, no EKU */
    int client;              /* entity "client": true */
    int revoked;             /* entity "revoked": true */
    int keypair;             /* entity "keypair": true */
    int no_key;              /* entity without privateKey */
};

/* Turn a testpki CA (keyUsage keyCertSign, cRLSign) into the kind `openssl req -x509` users
 * make: keyUsage digitalSignature + keyCertSign and no EKU, which the TLS server purpose check
 * accepts; only CA:TRUE tells it is not an end entity. Re-signed with signer. */
static void ca_usage_sign(X509 *cert, EVP_PKEY *signer)
{
    int at = X509_get_ext_by_NID(cert, NID_key_usage, -1);
    X509_EXTENSION *ext = NULL;

    assert_true(at >= 0);
    X509_EXTENSION_free(X509_delete_ext(cert, at));
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,digitalSignature,keyCertSign");
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(cert, signer, EVP_sha256()) > 0);
    assert_int_equal(X509_check_purpose(cert, X509_PURPOSE_SSL_SERVER, 0), 1);
}

/* A TLS record built the way the store builds it: entity JSON -> torii_certrec_build. */
static unsigned char *make_rec(const struct spec *s, size_t *len, X509 **cert_out)
{
    struct testpki_opts o;
    X509 *cert = NULL;
    EVP_PKEY *key = s->key_type == EVP_PKEY_RSA ? g_rsa_key : g_ec_key;
    unsigned char *rec = NULL;
    struct torii_errbuf eb = {{0}};

    memset(&o, 0, sizeof(o));
    o.key_type = s->key_type != 0 ? s->key_type : EVP_PKEY_EC;
    o.dns = s->dns;
    o.n_dns = s->n_dns;
    o.not_before_off_s = s->nb_s != 0 ? s->nb_s : -DAY_S;
    o.not_after_off_s = s->na_s;
    o.is_ca = s->is_ca;
    o.client = s->client;
    o.issuer = s->issuer;
    o.issuer_key = s->issuer_key;
    EVP_PKEY_up_ref(key);
    assert_int_equal(testpki_make(&o, &cert, &key), 0);
    if (s->ca_signs) {
        ca_usage_sign(cert, s->issuer_key != NULL ? s->issuer_key : key);
    }
    char *cpem = testpki_cert_pem(cert);
    char *kpem = testpki_key_pem(key, NULL);
    assert_non_null(cpem);
    assert_non_null(kpem);
    size_t clen = strlen(cpem);
    size_t xlen = s->extra_chain != NULL ? strlen(s->extra_chain) : 0;
    char *chain = torii_xmalloc(clen + xlen + 1);
    memcpy(chain, cpem, clen);
    if (xlen > 0) {
        memcpy(chain + clen, s->extra_chain, xlen);
    }
    chain[clen + xlen] = '\0';
    json_t *e =
        json_pack("{s:s, s:s, s:b, s:b, s:b}", "chain", chain, "privateKey", s->no_key ? "" : kpem,
                  "revoked", s->revoked, "client", s->client, "keypair", s->keypair);
    assert_non_null(e);
    int rc = torii_certrec_build(e, &rec, len, &eb);
    if (rc != TORII_OK) {
        (void)fprintf(stderr, "certrec_build: %s\n", eb.msg);
    }
    assert_int_equal(rc, TORII_OK);
    json_decref(e);
    free(chain);
    free(cpem);
    torii_secure_free(kpem, strlen(kpem));
    EVP_PKEY_free(key);
    if (cert_out != NULL) {
        *cert_out = cert;
    } else {
        X509_free(cert);
    }
    return rec;
}

static void put(struct torii_table *t, const char *id, const struct spec *s)
{
    size_t len = 0;
    unsigned char *rec = make_rec(s, &len, NULL);
    struct torii_errbuf eb = {{0}};

    assert_int_equal(torii_table_update(t, id, rec, len, key_src(s->key_type), &eb), TORII_OK);
    torii_secure_free(rec, len);
}

static void put_names(struct torii_table *t, const char *id, int key_type, const char *n1,
                      const char *n2)
{
    const char *dns[2] = {n1, n2};
    struct spec s = {.key_type = key_type, .dns = dns, .n_dns = n2 != NULL ? 2 : 1};

    put(t, id, &s);
}

static void del(struct torii_table *t, const char *id)
{
    assert_int_equal(torii_table_update(t, id, NULL, 0, NULL, NULL), TORII_OK);
}

/* Id selected for name (NULL name: no SNI), or NULL when nothing is found; *m gets the level. */
static const char *sel(struct torii_table *t, const char *name, int ecdsa_ok, int rsa_ok,
                       enum torii_sni_match *m)
{
    static char id[128]; /* main thread only */
    struct torii_sni_query q = {.name = name,
                                .name_len = name != NULL ? strlen(name) : 0,
                                .ecdsa_ok = ecdsa_ok,
                                .rsa_ok = rsa_ok,
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c = NULL;
    enum torii_sni_match dummy;

    int rc = torii_table_select(t, &q, &c, m != NULL ? m : &dummy);
    if (rc == TORII_ENOTFOUND) {
        return NULL;
    }
    assert_int_equal(rc, TORII_OK);
    (void)snprintf(id, sizeof(id), "%s", torii_tls_cert_id(c));
    torii_tls_cert_unref(c);
    return id;
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    (void)state;
    g_ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (g_ec_key == NULL || g_rsa_key == NULL) {
        return 1;
    }
    g_ec_pem = testpki_key_pem(g_ec_key, NULL);
    g_rsa_pem = testpki_key_pem(g_rsa_key, NULL);
    g_ec_src.text = g_ec_pem;
    g_rsa_src.text = g_rsa_pem;
    torii_table_reader_register();
    return g_ec_key != NULL && g_rsa_key != NULL ? 0 : 1;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_ec_key);
    EVP_PKEY_free(g_rsa_key);
    free(g_ec_pem);
    free(g_rsa_pem);
    torii_table_reader_unregister();
    return 0;
}

static int table_setup(void **state)
{
    struct torii_table *t = NULL;

    if (torii_table_new(&t) != TORII_OK) {
        return 1;
    }
    *state = t;
    return 0;
}

static int table_teardown(void **state)
{
    torii_table_free(*state);
    return 0;
}

/* ---- the pure rule ---- */

static void test_sni_name_normalize_lowercases_and_trims_one_dot(void **state)
{
    char out[TORII_SNI_NAME_MAX + 1];
    char big[300];

    (void)state;
    assert_int_equal(torii_sni_name_normalize("WwW.Example.COM.", 16, out), 15);
    assert_string_equal(out, "www.example.com");
    assert_int_equal(torii_sni_name_normalize("a..", 3, out), 2);
    assert_string_equal(out, "a.");
    assert_int_equal(torii_sni_name_normalize("", 0, out), TORII_EINVAL);
    assert_int_equal(torii_sni_name_normalize(".", 1, out), TORII_EINVAL);
    assert_int_equal(torii_sni_name_normalize("*.example.com", 13, out), TORII_EINVAL);
    assert_int_equal(torii_sni_name_normalize("a\0b", 3, out), TORII_EINVAL);
    memset(big, 'a', sizeof(big));
    assert_int_equal(torii_sni_name_normalize(big, 253, out), 253);
    assert_int_equal(torii_sni_name_normalize(big, 254, out), TORII_EINVAL);
    big[253] = '.';
    assert_int_equal(torii_sni_name_normalize(big, 254, out), 253);
}

static void test_sni_wildcard_key_replaces_first_label_only(void **state)
{
    char out[TORII_SNI_KEY_MAX + 1];

    (void)state;
    assert_int_equal(torii_sni_wildcard_key("a.b.example.com", 15, out), 15);
    assert_string_equal(out, "*.b.example.com");
    assert_int_equal(torii_sni_wildcard_key("www.example.com", 15, out), 13);
    assert_string_equal(out, "*.example.com");
    assert_int_equal(torii_sni_wildcard_key("localhost", 9, out), TORII_ENOTFOUND);
    assert_int_equal(torii_sni_wildcard_key(".example.com", 12, out), TORII_ENOTFOUND);
    assert_int_equal(torii_sni_wildcard_key("a.", 2, out), TORII_ENOTFOUND);
}

static void test_sni_usable_rejects_each_veto(void **state)
{
    const uint32_t ok = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    struct torii_sni_attr a = {ok, 1000, 2000, EVP_PKEY_EC};

    (void)state;
    assert_true(torii_sni_usable(&a, 1000));
    assert_true(torii_sni_usable(&a, 1999));
    assert_false(torii_sni_usable(&a, 999));
    assert_false(torii_sni_usable(&a, 2000));
    const uint32_t bad[] = {TORII_CERTREC_REVOKED, TORII_CERTREC_NOT_SERVER, TORII_CERTREC_CLIENT,
                            TORII_CERTREC_KEYPAIR, TORII_CERTREC_CA};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a.flags = ok | bad[i];
        assert_false(torii_sni_usable(&a, 1500));
    }
    a.flags = TORII_CERTREC_HAS_KEY;
    assert_false(torii_sni_usable(&a, 1500));
    a.flags = TORII_CERTREC_KEY_MATCHES;
    assert_false(torii_sni_usable(&a, 1500));
    a.flags = ok | TORII_CERTREC_SELF_SIGNED;
    assert_true(torii_sni_usable(&a, 1500));
    assert_false(torii_sni_usable(NULL, 1500));
}

static void test_sni_pick_prefers_key_type_then_latest_expiry(void **state)
{
    const uint32_t ok = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    struct torii_sni_attr rsa_late = {ok, 0, 9000, EVP_PKEY_RSA};
    struct torii_sni_attr ec_early = {ok, 0, 5000, EVP_PKEY_EC};
    struct torii_sni_attr ec_late = {ok, 0, 6000, EVP_PKEY_EC};
    struct torii_sni_attr ec_revoked = {ok | TORII_CERTREC_REVOKED, 0, 9999, EVP_PKEY_EC};
    const struct torii_sni_attr *c[] = {&rsa_late, &ec_early, &ec_revoked, &ec_late};
    struct torii_sni_query both = {
        .name = NULL, .name_len = 0, .ecdsa_ok = 1, .rsa_ok = 1, .now_ms = 100};
    struct torii_sni_query rsa = {
        .name = NULL, .name_len = 0, .ecdsa_ok = 0, .rsa_ok = 1, .now_ms = 100};
    struct torii_sni_query ec = {
        .name = NULL, .name_len = 0, .ecdsa_ok = 1, .rsa_ok = 0, .now_ms = 100};
    struct torii_sni_query none = {
        .name = NULL, .name_len = 0, .ecdsa_ok = 0, .rsa_ok = 0, .now_ms = 100};

    (void)state;
    assert_int_equal(torii_sni_pick(c, 4, &both), 3);
    assert_int_equal(torii_sni_pick(c, 4, &ec), 3);
    assert_int_equal(torii_sni_pick(c, 4, &rsa), 0);
    assert_int_equal(torii_sni_pick(c, 4, &none), 0); /* any type: latest expiry */
    /* Only RSA for an ECDSA-only client: still returned (rank 0 beats nothing). */
    assert_int_equal(torii_sni_pick(c, 1, &ec), 0);
    assert_int_equal(torii_sni_pick(c + 2, 1, &both), TORII_ENOTFOUND);
    assert_int_equal(torii_sni_pick(c, 0, &both), TORII_ENOTFOUND);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_ED25519, &rsa), 1);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_EC, &rsa), 0);
}

/* TLS 1.2 without TLS 1.3: the offered cipher suites decide the certificate type. */
static void test_sni_pick_tls12_suites_decide_key_type(void **state)
{
    const uint32_t ok = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    struct torii_sni_attr rsa = {ok, 0, 5000, EVP_PKEY_RSA};
    struct torii_sni_attr ec = {ok, 0, 6000, EVP_PKEY_EC};
    const struct torii_sni_attr *c[] = {&rsa, &ec};
    /* Default sigalgs of a TLS 1.2 client (both types), only ECDHE-RSA suites. */
    struct torii_sni_query rsa_suites = {
        .ecdsa_ok = 1, .rsa_ok = 1, .now_ms = 100, .tls12_only = 1, .suite_rsa = 1};
    struct torii_sni_query ec_suites = {
        .ecdsa_ok = 1, .rsa_ok = 1, .now_ms = 100, .tls12_only = 1, .suite_ecdsa = 1};
    struct torii_sni_query both_suites = {.ecdsa_ok = 1,
                                          .rsa_ok = 1,
                                          .now_ms = 100,
                                          .tls12_only = 1,
                                          .suite_ecdsa = 1,
                                          .suite_rsa = 1};
    /* TLS 1.3 offered: suites say nothing about the certificate, sigalgs decide. */
    struct torii_sni_query tls13_ec = {.ecdsa_ok = 1, .now_ms = 100, .suite_rsa = 1};
    struct torii_sni_query tls13_rsa = {.rsa_ok = 1, .now_ms = 100, .suite_ecdsa = 1};
    /* No signature_algorithms at all (TLS 1.2 defaults): the suites still decide. */
    struct torii_sni_query none_rsa = {.now_ms = 100, .tls12_only = 1, .suite_rsa = 1};

    (void)state;
    assert_int_equal(torii_sni_pick(c, 2, &rsa_suites), 0);
    assert_int_equal(torii_sni_pick(c, 2, &ec_suites), 1);
    assert_int_equal(torii_sni_pick(c, 2, &both_suites), 1);
    assert_int_equal(torii_sni_pick(c, 2, &tls13_ec), 1);
    assert_int_equal(torii_sni_pick(c, 2, &tls13_rsa), 0);
    assert_int_equal(torii_sni_pick(c, 2, &none_rsa), 0);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_EC, &rsa_suites), 0);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_RSA, &rsa_suites), 2);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_RSA, &ec_suites), 0);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_ED25519, &ec_suites), 1);
    assert_int_equal(torii_sni_key_rank(EVP_PKEY_ED25519, &rsa_suites), 0);
    /* Only the unusable type left: still returned, the handshake then fails cleanly. */
    assert_int_equal(torii_sni_pick(c + 1, 1, &rsa_suites), 0);
}

/* ---- the table ---- */

static void test_table_select_exact_beats_wildcard(void **state)
{
    struct torii_table *t = *state;
    enum torii_sni_match m;

    put_names(t, "wild", EVP_PKEY_EC, "*.example.com", NULL);
    put_names(t, "www", EVP_PKEY_EC, "www.example.com", NULL);
    assert_int_equal(torii_table_size(t), 2);
    assert_string_equal(sel(t, "www.example.com", 1, 1, &m), "www");
    assert_int_equal(m, TORII_SNI_EXACT);
    assert_string_equal(sel(t, "api.example.com", 1, 1, &m), "wild");
    assert_int_equal(m, TORII_SNI_WILDCARD);
}

static void test_table_wildcard_matches_one_label_only(void **state)
{
    struct torii_table *t = *state;

    put_names(t, "wild", EVP_PKEY_EC, "*.example.com", NULL);
    assert_null(sel(t, "example.com", 1, 1, NULL));
    assert_null(sel(t, "a.b.example.com", 1, 1, NULL));
    assert_null(sel(t, "*.example.com", 1, 1, NULL)); /* a literal wildcard query */
    assert_null(sel(t, ".example.com", 1, 1, NULL));
    assert_null(sel(t, "com", 1, 1, NULL));
    assert_string_equal(sel(t, "b.example.com", 1, 1, NULL), "wild");
}

static void test_table_names_case_insensitive_and_trailing_dot(void **state)
{
    struct torii_table *t = *state;
    enum torii_sni_match m;

    put_names(t, "www", EVP_PKEY_EC, "WWW.Example.com", NULL);
    put_names(t, "wild", EVP_PKEY_EC, "*.Example.com", NULL);
    assert_string_equal(sel(t, "www.example.com", 1, 1, &m), "www");
    assert_string_equal(sel(t, "WWW.EXAMPLE.COM.", 1, 1, &m), "www");
    assert_int_equal(m, TORII_SNI_EXACT);
    assert_string_equal(sel(t, "Foo.EXAMPLE.com.", 1, 1, &m), "wild");
    assert_int_equal(m, TORII_SNI_WILDCARD);
    assert_null(sel(t, "www.example.com..", 1, 1, NULL));
}

static void test_table_unusable_certificates_excluded(void **state)
{
    struct torii_table *t = *state;
    const char *dns[] = {"x.example.com"};
    const struct spec bad[] = {
        {.dns = dns, .n_dns = 1, .nb_s = -200 * DAY_S, .na_s = -100 * DAY_S},
        {.dns = dns, .n_dns = 1, .nb_s = 100 * DAY_S, .na_s = 200 * DAY_S},
        {.dns = dns, .n_dns = 1, .revoked = 1},
        {.dns = dns, .n_dns = 1, .is_ca = 1},
        {.dns = dns, .n_dns = 1, .is_ca = 1, .ca_signs = 1}, /* TLS server purpose passes */
        {.dns = dns, .n_dns = 1, .client = 1},
        {.dns = dns, .n_dns = 1, .keypair = 1},
        {.dns = dns, .n_dns = 1, .no_key = 1},
    };
    char id[32];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        (void)snprintf(id, sizeof(id), "bad%zu", i);
        put(t, id, &bad[i]);
        assert_null(sel(t, "x.example.com", 1, 1, NULL));
        /* Unusable as default too. */
        torii_table_set_default(t, id);
        assert_null(sel(t, "x.example.com", 1, 1, NULL));
        assert_null(sel(t, NULL, 1, 1, NULL));
    }
    torii_table_set_default(t, NULL);
    assert_int_equal(torii_table_size(t), sizeof(bad) / sizeof(bad[0]));
    const struct spec good = {.dns = dns, .n_dns = 1, .na_s = 30 * DAY_S};
    put(t, "good", &good);
    assert_string_equal(sel(t, "x.example.com", 1, 1, NULL), "good");
}

static void test_table_key_type_follows_client_caps(void **state)
{
    struct torii_table *t = *state;
    const char *dns[] = {"k.example.com"};
    const struct spec ec = {.key_type = EVP_PKEY_EC, .dns = dns, .n_dns = 1, .na_s = 10 * DAY_S};
    const struct spec rsa = {.key_type = EVP_PKEY_RSA, .dns = dns, .n_dns = 1, .na_s = 20 * DAY_S};

    put(t, "ec", &ec);
    put(t, "rsa", &rsa);
    assert_string_equal(sel(t, "k.example.com", 1, 1, NULL), "ec");
    assert_string_equal(sel(t, "k.example.com", 1, 0, NULL), "ec");
    assert_string_equal(sel(t, "k.example.com", 0, 1, NULL), "rsa");
    /* Neither offered: any type, latest expiry. */
    assert_string_equal(sel(t, "k.example.com", 0, 0, NULL), "rsa");
}

static void test_table_latest_expiry_wins(void **state)
{
    struct torii_table *t = *state;
    const char *dns[] = {"e.example.com"};
    const struct spec s1 = {.dns = dns, .n_dns = 1, .na_s = 100 * DAY_S};
    const struct spec s2 = {.dns = dns, .n_dns = 1, .na_s = 200 * DAY_S};
    const struct spec s3 = {.dns = dns, .n_dns = 1, .na_s = 50 * DAY_S};

    put(t, "a", &s1);
    put(t, "b", &s2);
    put(t, "c", &s3);
    assert_string_equal(sel(t, "e.example.com", 1, 1, NULL), "b");
    del(t, "b");
    assert_string_equal(sel(t, "e.example.com", 1, 1, NULL), "a");
}

static void test_table_delete_falls_back_to_default(void **state)
{
    struct torii_table *t = *state;
    enum torii_sni_match m;

    /* The default may be named before it exists. */
    torii_table_set_default(t, "def");
    assert_null(sel(t, NULL, 1, 1, NULL));
    put_names(t, "def", EVP_PKEY_EC, "localhost", NULL);
    put_names(t, "a", EVP_PKEY_EC, "a.example.com", NULL);
    assert_string_equal(sel(t, "a.example.com", 1, 1, &m), "a");
    assert_int_equal(m, TORII_SNI_EXACT);
    del(t, "a");
    assert_int_equal(torii_table_size(t), 1);
    assert_string_equal(sel(t, "a.example.com", 1, 1, &m), "def");
    assert_int_equal(m, TORII_SNI_DEFAULT);
    assert_string_equal(sel(t, NULL, 1, 1, &m), "def");
    assert_int_equal(m, TORII_SNI_DEFAULT);
    /* An invalid name is an unknown one. */
    assert_string_equal(sel(t, "", 1, 1, &m), "def");
    /* Deleting what is not there is fine. */
    del(t, "a");
    del(t, "def");
    assert_null(sel(t, NULL, 1, 1, NULL));
    assert_int_equal(torii_table_size(t), 0);
}

static void test_table_replace_drops_old_names(void **state)
{
    struct torii_table *t = *state;
    enum torii_sni_match m;

    put_names(t, "x", EVP_PKEY_EC, "a.example.com", "b.example.com");
    put_names(t, "y", EVP_PKEY_EC, "b.example.com", NULL);
    put_names(t, "x", EVP_PKEY_EC, "c.example.com", "b.example.com");
    assert_int_equal(torii_table_size(t), 2);
    assert_null(sel(t, "a.example.com", 1, 1, NULL));
    assert_string_equal(sel(t, "c.example.com", 1, 1, &m), "x");
    assert_int_equal(m, TORII_SNI_EXACT);
    /* "b" is shared: both still there; removing x leaves y. */
    del(t, "x");
    assert_string_equal(sel(t, "b.example.com", 1, 1, NULL), "y");
    assert_null(sel(t, "c.example.com", 1, 1, NULL));
}

static void test_table_ref_survives_replace(void **state)
{
    struct torii_table *t = *state;
    const char *dns1[] = {"r.example.com", "old.example.com"};
    const char *dns2[] = {"r.example.com"};
    const struct spec s1 = {.dns = dns1, .n_dns = 2};
    const struct spec s2 = {.key_type = EVP_PKEY_RSA, .dns = dns2, .n_dns = 1};
    struct torii_sni_query q = {.name = "r.example.com",
                                .name_len = 13,
                                .ecdsa_ok = 1,
                                .rsa_ok = 1,
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c1 = NULL;
    struct torii_tls_cert *c2 = NULL;
    X509 *leaf1 = NULL;
    X509 *leaf1b = NULL;
    X509 *leaf2 = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    X509 *orig = NULL;
    size_t len = 0;
    unsigned char *rec = make_rec(&s1, &len, &orig);

    assert_int_equal(torii_table_update(t, "r", rec, len, key_src(s1.key_type), NULL), TORII_OK);
    torii_secure_free(rec, len);
    assert_int_equal(torii_table_select(t, &q, &c1, NULL), TORII_OK);
    assert_int_equal(torii_tls_cert_get(c1, &leaf1, &key, &chain), TORII_OK);
    assert_int_equal(X509_cmp(leaf1, orig), 0);
    assert_int_equal(X509_check_private_key(leaf1, key), 1);
    assert_int_equal(sk_X509_num(chain), 0);
    assert_int_equal(torii_tls_cert_key_type(c1), EVP_PKEY_EC);

    put(t, "r", &s2);
    assert_int_equal(torii_table_select(t, &q, &c2, NULL), TORII_OK);
    assert_ptr_not_equal(c1, c2);
    assert_string_equal(torii_tls_cert_id(c2), "r");
    assert_int_equal(torii_tls_cert_get(c2, &leaf2, NULL, NULL), TORII_OK);
    assert_int_not_equal(X509_cmp(leaf2, orig), 0);
    assert_int_equal(torii_tls_cert_key_type(c2), EVP_PKEY_RSA);
    assert_null(sel(t, "old.example.com", 1, 1, NULL));

    /* The held reference still yields the original, parsed once. */
    assert_int_equal(torii_tls_cert_get(c1, &leaf1b, NULL, NULL), TORII_OK);
    assert_ptr_equal(leaf1, leaf1b);
    assert_int_equal(X509_cmp(leaf1b, orig), 0);
    assert_int_equal(X509_check_host(leaf1b, "old.example.com", 0, 0, NULL), 1);
    torii_tls_cert_unref(c1);
    torii_tls_cert_unref(c2);
    X509_free(orig);
}

static void mk_ca(const char *cn, X509 *issuer, EVP_PKEY *issuer_key, X509 **cert, EVP_PKEY **key)
{
    struct testpki_opts o;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = cn;
    o.not_before_off_s = -DAY_S;
    o.is_ca = 1;
    o.issuer = issuer;
    o.issuer_key = issuer_key;
    *cert = NULL;
    *key = NULL;
    assert_int_equal(testpki_make(&o, cert, key), 0);
}

/* The chain handed to the handshake: what follows the leaf, minus the self-signed root (the
 * client must hold it already); parsed once; a self-signed leaf is still the leaf. */
static void test_table_chain_parsed_after_leaf(void **state)
{
    struct torii_table *t = *state;
    const char *dns[] = {"ch.example.com"};
    const char *dns_ss[] = {"ss.example.com"};
    X509 *root = NULL;
    X509 *inter = NULL;
    EVP_PKEY *root_key = NULL;
    EVP_PKEY *inter_key = NULL;
    X509 *leaf_ss = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;

    mk_ca("Chain Test Root", NULL, NULL, &root, &root_key);
    mk_ca("Chain Test Intermediate", root, root_key, &inter, &inter_key);
    char *inter_pem = testpki_cert_pem(inter);
    char *root_pem = testpki_cert_pem(root);
    size_t both_len = strlen(inter_pem) + strlen(root_pem) + 1;
    char *both = malloc(both_len);
    assert_non_null(both);
    (void)snprintf(both, both_len, "%s%s", inter_pem, root_pem);
    const struct spec ls = {
        .dns = dns, .n_dns = 1, .issuer = inter, .issuer_key = inter_key, .extra_chain = both};
    const struct spec ss = {.dns = dns_ss, .n_dns = 1};
    struct torii_sni_query q = {.name = "ch.example.com",
                                .name_len = 14,
                                .ecdsa_ok = 1,
                                .rsa_ok = 1,
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c = NULL;

    put(t, "ch", &ls);
    assert_int_equal(torii_table_select(t, &q, &c, NULL), TORII_OK);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, &chain), TORII_OK);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), inter), 0);
    torii_tls_cert_unref(c);

    size_t len = 0;
    unsigned char *rec = make_rec(&ss, &len, &leaf_ss);
    assert_int_equal(torii_table_update(t, "ss", rec, len, key_src(ss.key_type), NULL), TORII_OK);
    torii_secure_free(rec, len);
    q.name = "ss.example.com";
    assert_int_equal(torii_table_select(t, &q, &c, NULL), TORII_OK);
    assert_int_equal(torii_tls_cert_get(c, &leaf, NULL, &chain), TORII_OK);
    assert_int_equal(X509_cmp(leaf, leaf_ss), 0);
    assert_int_equal(sk_X509_num(chain), 0);
    torii_tls_cert_unref(c);

    free(both);
    free(inter_pem);
    free(root_pem);
    X509_free(leaf_ss);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
}

static void test_table_update_bad_record_changes_nothing(void **state)
{
    struct torii_table *t = *state;
    const char *dns[] = {"g.example.com"};
    const struct spec s = {.dns = dns, .n_dns = 1};
    const unsigned char junk[] = "not a record at all";
    struct torii_errbuf eb = {{0}};
    size_t len = 0;
    unsigned char *rec = make_rec(&s, &len, NULL);

    assert_int_equal(torii_table_update(t, "g", rec, len, key_src(s.key_type), NULL), TORII_OK);
    assert_int_equal(torii_table_update(t, "g", junk, sizeof(junk), NULL, &eb), TORII_EINVAL);
    assert_true(eb.msg[0] != '\0');
    assert_int_equal(torii_table_update(t, "g", rec, len / 2, NULL, NULL), TORII_EINVAL);
    assert_int_equal(torii_table_update(t, "g", rec, 0, NULL, NULL), TORII_EINVAL);
    assert_int_equal(torii_table_update(t, "", rec, len, NULL, NULL), TORII_EINVAL);
    assert_int_equal(torii_table_update(t, NULL, rec, len, NULL, NULL), TORII_EINVAL);
    assert_string_equal(sel(t, "g.example.com", 1, 1, NULL), "g");
    assert_int_equal(torii_table_size(t), 1);
    torii_secure_free(rec, len);
}

/* ---- lookups by id and by issuer + serial ---- */

/* Record of a given certificate (so two ids can carry the very same leaf). */
static void put_cert(struct torii_table *t, const char *id, X509 *cert, EVP_PKEY *key, int revoked)
{
    json_t *e = testpki_entity(id, &cert, 1, key, NULL);
    unsigned char *rec = NULL;
    size_t len = 0;

    assert_non_null(e);
    assert_int_equal(json_object_set_new(e, "revoked", json_boolean(revoked)), 0);
    struct torii_pki_key_src ks = torii_pki_key_src_of(e, NULL);

    assert_int_equal(torii_certrec_build(e, &rec, &len, NULL), TORII_OK);
    assert_int_equal(torii_table_update(t, id, rec, len, &ks, NULL), TORII_OK);
    torii_secure_free(rec, len);
    json_decref(e);
}

static X509 *issued_by(X509 *issuer, EVP_PKEY *issuer_key, const char *cn)
{
    struct testpki_opts o;
    X509 *c = NULL;
    EVP_PKEY *k = g_ec_key;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = cn;
    o.not_before_off_s = -DAY_S;
    o.client = 1;
    o.issuer = issuer;
    o.issuer_key = issuer_key;
    EVP_PKEY_up_ref(k);
    assert_int_equal(testpki_make(&o, &c, &k), 0);
    EVP_PKEY_free(k);
    return c;
}

static void test_table_get_returns_current_reference_by_id(void **state)
{
    struct torii_table *t = *state;
    struct torii_tls_cert *a = NULL;
    struct torii_tls_cert *b = NULL;
    struct torii_tls_cert *c = NULL;

    assert_int_equal(torii_table_get(t, "x", &a), TORII_ENOTFOUND);
    assert_int_equal(torii_table_get(t, "", &a), TORII_EINVAL);
    assert_int_equal(torii_table_get(t, NULL, &a), TORII_EINVAL);
    assert_int_equal(torii_table_get(NULL, "x", &a), TORII_EINVAL);
    assert_null(a);
    put_names(t, "x", EVP_PKEY_EC, "x.example.com", NULL);
    assert_int_equal(torii_table_get(t, "x", &a), TORII_OK);
    assert_string_equal(torii_tls_cert_id(a), "x");
    assert_true(torii_tls_cert_flags(a) & TORII_CERTREC_HAS_KEY);
    assert_int_equal(torii_table_get(t, "x", &b), TORII_OK);
    assert_ptr_equal(a, b); /* unchanged entry: same reference object */
    put_names(t, "x", EVP_PKEY_EC, "x.example.com", NULL);
    assert_int_equal(torii_table_get(t, "x", &c), TORII_OK);
    assert_ptr_not_equal(a, c); /* replaced: a new one, the old still usable */
    X509 *leaf = NULL;
    assert_int_equal(torii_tls_cert_leaf_dup(a, &leaf), TORII_OK);
    X509_free(leaf);
    del(t, "x");
    torii_tls_cert_unref(c);
    assert_int_equal(torii_table_get(t, "x", &c), TORII_ENOTFOUND);
    torii_tls_cert_unref(a);
    torii_tls_cert_unref(b);
}

static void test_table_issuer_serial_index_follows_updates(void **state)
{
    struct torii_table *t = *state;
    struct testpki_opts o;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    X509 *leaf;
    X509 *other;
    int revoked = -1;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Index Test CA";
    o.is_ca = 1;
    o.not_before_off_s = -DAY_S;
    assert_int_equal(testpki_make(&o, &ca, &ca_key), 0);
    leaf = issued_by(ca, ca_key, "leaf");
    other = issued_by(ca, ca_key, "other");

    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 0);
    assert_int_equal(revoked, 0);
    assert_int_equal(torii_table_issuer_serial(t, NULL, &revoked), TORII_EINVAL);
    put_cert(t, "a", leaf, g_ec_key, 0);
    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 1);
    assert_int_equal(revoked, 0);
    assert_int_equal(torii_table_issuer_serial(t, other, &revoked), 0);
    /* The same certificate under a second id, revoked there: revoked wins. */
    put_cert(t, "b", leaf, g_ec_key, 1);
    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 2);
    assert_int_equal(revoked, 1);
    /* "b" replaced by another certificate: the key moves with it. */
    put_cert(t, "b", other, g_ec_key, 1);
    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 1);
    assert_int_equal(revoked, 0);
    assert_int_equal(torii_table_issuer_serial(t, other, &revoked), 1);
    assert_int_equal(revoked, 1);
    /* Un-revoked in place (same key, new version). */
    put_cert(t, "b", other, g_ec_key, 0);
    assert_int_equal(torii_table_issuer_serial(t, other, &revoked), 1);
    assert_int_equal(revoked, 0);
    del(t, "a");
    del(t, "b");
    assert_int_equal(torii_table_issuer_serial(t, leaf, NULL), 0);
    assert_int_equal(torii_table_issuer_serial(t, other, NULL), 0);
    /* Same serial from another issuer (a self-signed certificate) is another key. */
    {
        unsigned char k1[TORII_TABLE_SERIAL_KEY_MAX];
        unsigned char k2[TORII_TABLE_SERIAL_KEY_MAX];
        size_t l1 = 0;
        size_t l2 = 0;
        X509 *twin = X509_dup(other);
        assert_non_null(twin);
        assert_int_equal(X509_set_issuer_name(twin, X509_get_subject_name(other)), 1);
        assert_int_equal(torii_table_serial_key(other, k1, &l1), TORII_OK);
        assert_int_equal(torii_table_serial_key(twin, k2, &l2), TORII_OK);
        assert_int_equal(l1, l2);
        assert_true(memcmp(k1, k2, TORII_CERTREC_ISSUER_HASH_LEN) != 0);
        assert_memory_equal(k1 + TORII_CERTREC_ISSUER_HASH_LEN, k2 + TORII_CERTREC_ISSUER_HASH_LEN,
                            l1 - TORII_CERTREC_ISSUER_HASH_LEN);
        X509_free(twin);
    }
    X509_free(leaf);
    X509_free(other);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/* A legacy (version 1) record has no identity fields: a revoked one is indexed anyway. */
static void test_table_issuer_serial_indexes_revoked_v1_record(void **state)
{
    struct torii_table *t = *state;
    struct torii_certrec *cr = calloc(1, sizeof(*cr));
    X509 *leaf = issued_by(NULL, NULL, "legacy");
    json_t *e = testpki_entity("v1", &leaf, 1, g_ec_key, NULL);
    unsigned char *rec = NULL;
    size_t len = 0;
    size_t v1_len;
    int revoked = 0;

    assert_non_null(cr);
    assert_non_null(e);
    assert_int_equal(json_object_set_new(e, "revoked", json_true()), 0);
    /* A version 1 record with a key held a copy of it; this one is built without a key. */
    assert_int_equal(json_object_set_new(e, "privateKey", json_string("")), 0);
    assert_int_equal(torii_certrec_build(e, &rec, &len, NULL), TORII_OK);
    assert_int_equal(torii_certrec_decode(rec, len, cr), TORII_OK);
    v1_len = len - 8 - cr->issuer_hash.len - cr->serial.len;
    rec[4] = 1;
    assert_int_equal(torii_table_update(t, "v1", rec, v1_len, NULL, NULL), TORII_OK);
    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 1);
    assert_int_equal(revoked, 1);
    /* Not revoked: left out of the index (no parsing for it at start-up). */
    rec[8] &= (unsigned char)~TORII_CERTREC_REVOKED;
    assert_int_equal(torii_table_update(t, "v1", rec, v1_len, NULL, NULL), TORII_OK);
    assert_int_equal(torii_table_issuer_serial(t, leaf, &revoked), 0);
    torii_secure_free(rec, len);
    json_decref(e);
    X509_free(leaf);
    free(cr);
}

/* ---- concurrency ---- */

#define SLOTS        4
#define READERS      4
#define MAX_ITERS    200000
#define RUN_MS       2000
#define SLOT_VARIANT 2

struct conc {
    struct torii_table *t;
    unsigned char *rec[SLOTS][SLOT_VARIANT];
    size_t len[SLOTS][SLOT_VARIANT];
    atomic_int stop;
    atomic_long selects;
    atomic_long found;
    atomic_long errors;
    atomic_long updates;
};

static int check_one(struct conc *cc, const char *name, int slot, unsigned iter)
{
    struct torii_sni_query q = {.name = name,
                                .name_len = strlen(name),
                                .ecdsa_ok = (int)(iter & 1),
                                .rsa_ok = (int)((iter >> 1) & 1),
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c = NULL;
    enum torii_sni_match m;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    char want[16];

    int rc = torii_table_select(cc->t, &q, &c, &m);
    if (rc == TORII_ENOTFOUND) {
        return 0;
    }
    if (rc != TORII_OK) {
        return 1;
    }
    int bad = 0;
    (void)snprintf(want, sizeof(want), "slot%d", slot);
    if (m == TORII_SNI_DEFAULT) {
        /* The writer flips the default between "def" and "slot0". */
        bad |=
            strcmp(torii_tls_cert_id(c), "def") != 0 && strcmp(torii_tls_cert_id(c), "slot0") != 0;
    } else {
        bad |= strcmp(torii_tls_cert_id(c), want) != 0;
    }
    if (torii_tls_cert_get(c, &leaf, &key, NULL) != TORII_OK) {
        bad = 1;
    }
    /* What was selected by a name must really carry that name. */
    if (leaf != NULL && m != TORII_SNI_DEFAULT) {
        bad |= X509_check_host(leaf, name, 0, 0, NULL) != 1;
    }
    atomic_fetch_add(&cc->found, 1);
    torii_tls_cert_unref(c);
    return bad;
}

static void *reader_main(void *arg)
{
    struct conc *cc = arg;
    int64_t end = torii_clock_mono_us() + (int64_t)RUN_MS * 1000;
    char name[64];

    torii_table_reader_register();
    for (unsigned i = 0; i < MAX_ITERS && !atomic_load(&cc->stop); i++) {
        int slot = (int)(i % SLOTS);
        /* s<n> is in both variants, b<n> in variant 1 only, x.w<n> matches variant 0's
         * wildcard only. */
        switch (i % 3) {
        case 0:
            (void)snprintf(name, sizeof(name), "s%d.example.com", slot);
            break;
        case 1:
            (void)snprintf(name, sizeof(name), "b%d.example.com", slot);
            break;
        default:
            (void)snprintf(name, sizeof(name), "x.w%d.example.com", slot);
            break;
        }
        if (check_one(cc, name, slot, i) != 0) {
            atomic_fetch_add(&cc->errors, 1);
        }
        atomic_fetch_add(&cc->selects, 1);
        if ((i & 255) == 0 && torii_clock_mono_us() > end) {
            break;
        }
    }
    torii_table_reader_unregister();
    return NULL;
}

/* Not registered as a reader on purpose: exercises the writers' temporary registration. */
static void *writer_main(void *arg)
{
    struct conc *cc = arg;
    unsigned i = 0;

    while (!atomic_load(&cc->stop)) {
        int slot = (int)(i % SLOTS);
        int v = (int)((i / SLOTS) % (SLOT_VARIANT + 1));
        char id[16];
        int rc;
        (void)snprintf(id, sizeof(id), "slot%d", slot);
        if (v == SLOT_VARIANT) {
            rc = torii_table_update(cc->t, id, NULL, 0, NULL, NULL);
        } else {
            rc = torii_table_update(cc->t, id, cc->rec[slot][v], cc->len[slot][v],
                                    key_src(v == 0 ? EVP_PKEY_EC : EVP_PKEY_RSA), NULL);
        }
        if (rc != TORII_OK) {
            atomic_fetch_add(&cc->errors, 1);
        }
        if ((i % 64) == 0) {
            torii_table_set_default(cc->t, (i / 64) % 2 ? "def" : "slot0");
        }
        atomic_fetch_add(&cc->updates, 1);
        i++;
    }
    return NULL;
}

static void test_table_concurrent_readers_and_writer(void **state)
{
    struct torii_table *t = *state;
    struct conc *cc = torii_xcalloc(1, sizeof(*cc));
    pthread_t readers[READERS];
    pthread_t writer;
    char n[3][SLOTS][64];

    cc->t = t;
    for (int s = 0; s < SLOTS; s++) {
        (void)snprintf(n[0][s], sizeof(n[0][s]), "s%d.example.com", s);
        (void)snprintf(n[1][s], sizeof(n[1][s]), "*.w%d.example.com", s);
        (void)snprintf(n[2][s], sizeof(n[2][s]), "b%d.example.com", s);
        const char *v0[] = {n[0][s], n[1][s]};
        const char *v1[] = {n[0][s], n[2][s]};
        const struct spec sp0 = {.key_type = EVP_PKEY_EC, .dns = v0, .n_dns = 2};
        const struct spec sp1 = {.key_type = EVP_PKEY_RSA, .dns = v1, .n_dns = 2};
        cc->rec[s][0] = make_rec(&sp0, &cc->len[s][0], NULL);
        cc->rec[s][1] = make_rec(&sp1, &cc->len[s][1], NULL);
    }
    put_names(t, "def", EVP_PKEY_EC, "default.invalid", NULL);
    torii_table_set_default(t, "def");

    assert_int_equal(pthread_create(&writer, NULL, writer_main, cc), 0);
    for (int r = 0; r < READERS; r++) {
        assert_int_equal(pthread_create(&readers[r], NULL, reader_main, cc), 0);
    }
    for (int r = 0; r < READERS; r++) {
        assert_int_equal(pthread_join(readers[r], NULL), 0);
    }
    atomic_store(&cc->stop, 1);
    assert_int_equal(pthread_join(writer, NULL), 0);

    (void)fprintf(stderr, "  concurrency: %ld selects (%ld found), %ld updates, %ld errors\n",
                  atomic_load(&cc->selects), atomic_load(&cc->found), atomic_load(&cc->updates),
                  atomic_load(&cc->errors));
    assert_int_equal(atomic_load(&cc->errors), 0);
    assert_true(atomic_load(&cc->updates) > 0);
    assert_true(atomic_load(&cc->found) > 0);
    for (int s = 0; s < SLOTS; s++) {
        for (int v = 0; v < SLOT_VARIANT; v++) {
            torii_secure_free(cc->rec[s][v], cc->len[s][v]);
        }
    }
    free(cc);
}

/* Many threads race to parse the same certificate on first use: one copy wins, every caller
 * sees the same pointers. */
struct race {
    struct torii_tls_cert *c;
    X509 *leaf[READERS];
    atomic_int go;
};

struct race_arg {
    struct race *r;
    int idx;
};

static void *race_main(void *arg)
{
    struct race_arg *a = arg;

    while (!atomic_load(&a->r->go)) {
    }
    if (torii_tls_cert_get(a->r->c, &a->r->leaf[a->idx], NULL, NULL) != TORII_OK) {
        a->r->leaf[a->idx] = NULL;
    }
    return NULL;
}

static void test_tls_cert_get_parses_once_under_race(void **state)
{
    struct torii_table *t = *state;
    struct race r;
    struct race_arg args[READERS];
    pthread_t th[READERS];
    struct torii_sni_query q = {.name = "p.example.com",
                                .name_len = 13,
                                .ecdsa_ok = 1,
                                .rsa_ok = 1,
                                .now_ms = torii_clock_now_ms()};

    memset(&r, 0, sizeof(r));
    put_names(t, "p", EVP_PKEY_EC, "p.example.com", NULL);
    assert_int_equal(torii_table_select(t, &q, &r.c, NULL), TORII_OK);
    for (int i = 0; i < READERS; i++) {
        args[i].r = &r;
        args[i].idx = i;
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &args[i]), 0);
    }
    atomic_store(&r.go, 1);
    for (int i = 0; i < READERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    for (int i = 0; i < READERS; i++) {
        assert_non_null(r.leaf[i]);
        assert_ptr_equal(r.leaf[i], r.leaf[0]);
    }
    torii_tls_cert_unref(r.c);
}

/* The lazy parse is timed into /metrics: once on a certificate's first use, never again for the
 * same certificate, and again for the new certificate after a replacement. */
static void test_tls_cert_first_use_parse_is_counted_once(void **state)
{
    struct torii_table *t = *state;
    struct torii_sni_query q = {.name = "fu.example.com",
                                .name_len = 14,
                                .ecdsa_ok = 1,
                                .rsa_ok = 1,
                                .now_ms = torii_clock_now_ms()};
    struct torii_tls_cert *c = NULL;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    int64_t n0 = torii_metrics_get(TORII_METRIC_CERT_PARSE);
    int64_t us0 = torii_metrics_get(TORII_METRIC_CERT_PARSE_SECONDS);
    int64_t us1;

    put_names(t, "fu", EVP_PKEY_EC, "fu.example.com", NULL);
    assert_int_equal(torii_table_select(t, &q, &c, NULL), TORII_OK);
    /* Loading and selecting parse nothing. */
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE), n0);
    assert_int_equal(torii_tls_cert_get(c, &leaf, &key, &chain), TORII_OK);
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE), n0 + 1);
    us1 = torii_metrics_get(TORII_METRIC_CERT_PARSE_SECONDS);
    assert_true(us1 >= us0);
    assert_true(torii_metrics_get(TORII_METRIC_CERT_PARSE_MAX_SECONDS) >= us1 - us0);
    /* Second use, same reference or a new selection: already parsed. */
    assert_int_equal(torii_tls_cert_get(c, &leaf, NULL, NULL), TORII_OK);
    torii_tls_cert_unref(c);
    c = NULL;
    assert_int_equal(torii_table_select(t, &q, &c, NULL), TORII_OK);
    assert_int_equal(torii_tls_cert_get(c, &leaf, &key, &chain), TORII_OK);
    torii_tls_cert_unref(c);
    c = NULL;
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE), n0 + 1);
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE_SECONDS), us1);
    /* A replaced certificate is a new one: its first use parses. */
    put_names(t, "fu", EVP_PKEY_EC, "fu.example.com", NULL);
    assert_int_equal(torii_table_select(t, &q, &c, NULL), TORII_OK);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, NULL), TORII_OK);
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE), n0 + 2);
    torii_tls_cert_unref(c);
}

/* Thousands of certificates in one go (a start-up load), then most of them removed and the
 * table refilled: every name and id stays reachable while the tables grow (writer-driven
 * cds_lfht_resize) and shrink. */
static void test_table_bulk_load_grows_and_shrinks(void **state)
{
    struct torii_table *t = *state;
    enum { N = 800 };
    char name[64];
    char id[32];

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            (void)snprintf(name, sizeof(name), "h%d.bulk.test", i);
            (void)snprintf(id, sizeof(id), "bulk-%d", i);
            put_names(t, id, EVP_PKEY_EC, name, NULL);
        }
        assert_int_equal(torii_table_size(t), N);
        for (int i = 0; i < N; i++) {
            (void)snprintf(name, sizeof(name), "h%d.bulk.test", i);
            (void)snprintf(id, sizeof(id), "bulk-%d", i);
            assert_string_equal(sel(t, name, 1, 1, NULL), id);
        }
        for (int i = 0; i < N - 10; i++) {
            (void)snprintf(id, sizeof(id), "bulk-%d", i);
            del(t, id);
        }
        assert_int_equal(torii_table_size(t), 10);
        for (int i = 0; i < N; i++) {
            (void)snprintf(name, sizeof(name), "h%d.bulk.test", i);
            (void)snprintf(id, sizeof(id), "bulk-%d", i);
            if (i < N - 10) {
                assert_null(sel(t, name, 1, 1, NULL));
            } else {
                assert_string_equal(sel(t, name, 1, 1, NULL), id);
            }
        }
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, table_setup, table_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_name_normalize_lowercases_and_trims_one_dot),
        cmocka_unit_test(test_sni_wildcard_key_replaces_first_label_only),
        cmocka_unit_test(test_sni_usable_rejects_each_veto),
        cmocka_unit_test(test_sni_pick_prefers_key_type_then_latest_expiry),
        cmocka_unit_test(test_sni_pick_tls12_suites_decide_key_type),
        T(test_table_select_exact_beats_wildcard),
        T(test_table_wildcard_matches_one_label_only),
        T(test_table_names_case_insensitive_and_trailing_dot),
        T(test_table_unusable_certificates_excluded),
        T(test_table_key_type_follows_client_caps),
        T(test_table_latest_expiry_wins),
        T(test_table_delete_falls_back_to_default),
        T(test_table_replace_drops_old_names),
        T(test_table_ref_survives_replace),
        T(test_table_chain_parsed_after_leaf),
        T(test_table_update_bad_record_changes_nothing),
        T(test_table_get_returns_current_reference_by_id),
        T(test_table_issuer_serial_index_follows_updates),
        T(test_table_issuer_serial_indexes_revoked_v1_record),
        T(test_tls_cert_get_parses_once_under_race),
        T(test_tls_cert_first_use_parse_is_counted_once),
        T(test_table_concurrent_readers_and_writer),
        T(test_table_bulk_load_grows_and_shrinks),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
