/* test_tls_client.c - edge client-certificate authentication and upstream (backend) TLS and
 * mTLS (tls.h), over in-memory handshakes (BIO pairs) with certificates from testpki. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "testpki.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/table.h"
#include "torii/tls.h"

#define DAY_S (86400LL)

struct kc {
    X509 *cert;
    EVP_PKEY *key;
};

/* Certificates generated once for the whole run (main thread only). */
static struct {
    struct kc ca1;     /* client root CA (trusted at the edge) */
    struct kc ca1i;    /* intermediate under ca1 */
    struct kc ca2;     /* another client CA (not trusted) */
    struct kc bca;     /* backend CA */
    struct kc rogue;   /* a CA the backend does not use */
    struct kc edge;    /* listener certificate */
    struct kc good;    /* client leaf under ca1i */
    struct kc other;   /* client leaf under ca2 */
    struct kc expired; /* client leaf under ca1i, expired */
    struct kc revoked; /* client leaf under ca1i, revoked in the store */
    struct kc backend; /* backend server leaf under bca */
    struct kc up1;     /* upstream client certificate under ca1 */
    struct kc up2;     /* its replacement */
} g;

/* Per test (main thread only). */
struct fx {
    struct torii_table *t;
    struct torii_tls_trust *trust;
    struct torii_tls_ctx *tc;
    SSL_CTX *client_ctx;
    SSL_CTX *backend_ctx;
};

static struct torii_tls_client_auth pol_opt;
static struct torii_tls_client_auth pol_req;
static int plain_requires;  /* lookup gives pol_req for plain.example too */
static char last_host[300]; /* what the lookup was last asked */

static const struct torii_tls_client_auth *lookup(void *arg, const char *host, size_t len)
{
    (void)arg;
    if (host == NULL) {
        (void)snprintf(last_host, sizeof(last_host), "(none)");
        return NULL;
    }
    (void)snprintf(last_host, sizeof(last_host), "%.*s", (int)len, host);
    if (strcmp(last_host, "opt.example") == 0) {
        return &pol_opt;
    }
    if (strcmp(last_host, "req.example") == 0) {
        return &pol_req;
    }
    if (strcmp(last_host, "plain.example") == 0 && plain_requires) {
        return &pol_req;
    }
    return NULL;
}

static void mk(struct kc *out, const char *cn, const char *dns, const char *ip, int is_ca,
               int client, const struct kc *issuer, int64_t nb_s, int64_t na_s)
{
    struct testpki_opts o;
    const char *dnsv[1] = {dns};
    const char *ipv[1] = {ip};

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = cn;
    o.dns = dns != NULL ? dnsv : NULL;
    o.n_dns = dns != NULL ? 1 : 0;
    o.ips = ip != NULL ? ipv : NULL;
    o.n_ips = ip != NULL ? 1 : 0;
    o.not_before_off_s = nb_s != 0 ? nb_s : -DAY_S;
    o.not_after_off_s = na_s;
    o.is_ca = is_ca;
    o.client = client;
    if (issuer != NULL) {
        o.issuer = issuer->cert;
        o.issuer_key = issuer->key;
    }
    out->cert = NULL;
    out->key = NULL;
    assert_int_equal(testpki_make(&o, &out->cert, &out->key), 0);
}

static void kc_clear(struct kc *k)
{
    X509_free(k->cert);
    EVP_PKEY_free(k->key);
}

/* Install a certificate in the table as the store would (entity -> record). */
static void put(struct torii_table *t, const char *id, const struct kc *leaf, const struct kc *ca,
                int with_key, int revoked)
{
    X509 *chain[2] = {leaf->cert, ca != NULL ? ca->cert : NULL};
    json_t *e = testpki_entity(id, chain, ca != NULL ? 2 : 1, with_key ? leaf->key : NULL, NULL);
    unsigned char *rec = NULL;
    size_t len = 0;
    struct torii_errbuf eb = {{0}};

    assert_non_null(e);
    assert_int_equal(json_object_set_new(e, "revoked", json_boolean(revoked)), 0);
    assert_int_equal(torii_certrec_build(e, &rec, &len, &eb), TORII_OK);
    struct torii_pki_key_src ks = torii_pki_key_src_of(e, NULL);
    assert_int_equal(torii_table_update(t, id, rec, len, &ks, &eb), TORII_OK);
    torii_secure_free(rec, len);
    json_decref(e);
}

/* ---- in-memory handshakes ---- */

static int step(SSL *ssl, int *done)
{
    int r;

    if (*done) {
        return 1;
    }
    r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    r = SSL_get_error(ssl, r);
    return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE;
}

/* 1 when both sides complete (and the client has read what followed: TLS 1.3 tickets or a
 * late alert), 0 when either fails. */
static int handshake(SSL *c, SSL *s)
{
    BIO *bc = NULL;
    BIO *bs = NULL;
    int cd = 0;
    int sd = 0;
    int ok = 1;
    char byte;

    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    for (int i = 0; ok && i < 64 && !(cd && sd); i++) {
        ok = step(c, &cd) && step(s, &sd);
    }
    if (ok && cd && sd) {
        int r = SSL_read(c, &byte, 1);
        ok = r > 0 || SSL_get_error(c, r) == SSL_ERROR_WANT_READ;
    }
    ERR_clear_error();
    return ok && cd && sd;
}

static SSL *client_new(struct fx *f, const char *sni, const struct kc *cert, const struct kc *extra)
{
    SSL *c = SSL_new(f->client_ctx);

    assert_non_null(c);
    SSL_set_connect_state(c);
    if (sni != NULL) {
        assert_int_equal(SSL_set_tlsext_host_name(c, sni), 1);
    }
    if (cert != NULL) {
        assert_int_equal(SSL_use_certificate(c, cert->cert), 1);
        assert_int_equal(SSL_use_PrivateKey(c, cert->key), 1);
        if (extra != NULL) {
            assert_int_equal(SSL_add1_chain_cert(c, extra->cert), 1);
        }
    }
    return c;
}

static SSL *server_new(struct fx *f)
{
    SSL *s = torii_tls_conn_new(f->tc);

    assert_non_null(s);
    SSL_set_accept_state(s);
    return s;
}

/* Handshake of client c with a new server connection, sess_in (may be NULL) offered; then
 * probe(c, s, arg) gives the result (-1 when the handshake failed) and *sess_out (may be
 * NULL) the client's session. Frees both connections. */
typedef int (*pair_probe)(SSL *c, SSL *s, void *arg);

static int pair(struct fx *f, SSL *c, SSL_SESSION *sess_in, SSL_SESSION **sess_out,
                pair_probe probe, void *arg)
{
    SSL *s = server_new(f);
    int v = -1;

    if (sess_in != NULL) {
        assert_int_equal(SSL_set_session(c, sess_in), 1);
    }
    if (handshake(c, s)) {
        v = probe(c, s, arg);
        if (sess_out != NULL) {
            *sess_out = SSL_get1_session(c);
        }
    }
    /* Freeing a client SSL without a shutdown marks its session not resumable. */
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
    return v;
}

struct edge_out {
    int *reused;
    const char **reason;
};

static int edge_probe(SSL *c, SSL *s, void *arg)
{
    struct edge_out *o = arg;

    (void)c;
    if (o->reused != NULL) {
        *o->reused = SSL_session_reused(s);
    }
    return (int)torii_tls_conn_client_verdict(s, o->reason);
}

/* Edge handshake on sni with a client certificate; returns the verdict (-1: handshake failed).
 * *sess_out (may be NULL) gets the client's session; sess_in (may be NULL) is offered;
 * *reused tells whether it was resumed. */
static int edge(struct fx *f, const char *sni, const struct kc *cert, const struct kc *extra,
                SSL_SESSION *sess_in, SSL_SESSION **sess_out, int *reused, const char **reason)
{
    struct edge_out o = {reused, reason};

    return pair(f, client_new(f, sni, cert, extra), sess_in, sess_out, edge_probe, &o);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    (void)state;
    mk(&g.ca1, "Client Root CA", NULL, NULL, 1, 0, NULL, 0, 0);
    mk(&g.ca1i, "Client Issuing CA", NULL, NULL, 1, 0, &g.ca1, 0, 0);
    mk(&g.ca2, "Other Client CA", NULL, NULL, 1, 0, NULL, 0, 0);
    mk(&g.bca, "Backend CA", NULL, NULL, 1, 0, NULL, 0, 0);
    mk(&g.rogue, "Rogue CA", NULL, NULL, 1, 0, NULL, 0, 0);
    {
        struct testpki_opts o;
        const char *names[] = {"opt.example", "req.example", "plain.example"};
        memset(&o, 0, sizeof(o));
        o.key_type = EVP_PKEY_EC;
        o.cn = "edge";
        o.dns = names;
        o.n_dns = 3;
        o.not_before_off_s = -DAY_S;
        assert_int_equal(testpki_make(&o, &g.edge.cert, &g.edge.key), 0);
    }
    mk(&g.good, "good client", NULL, NULL, 0, 1, &g.ca1i, 0, 0);
    mk(&g.other, "other client", NULL, NULL, 0, 1, &g.ca2, 0, 0);
    mk(&g.expired, "expired client", NULL, NULL, 0, 1, &g.ca1i, -10 * DAY_S, -DAY_S);
    mk(&g.revoked, "revoked client", NULL, NULL, 0, 1, &g.ca1i, 0, 0);
    mk(&g.backend, "backend", "backend.example", "127.0.0.1", 0, 0, &g.bca, 0, 0);
    mk(&g.up1, "torii upstream 1", NULL, NULL, 0, 1, &g.ca1, 0, 0);
    mk(&g.up2, "torii upstream 2", NULL, NULL, 0, 1, &g.ca1, 0, 0);
    torii_table_reader_register();
    return 0;
}

static int group_teardown(void **state)
{
    struct kc *all[] = {&g.ca1,   &g.ca1i,    &g.ca2,     &g.bca,     &g.rogue, &g.edge, &g.good,
                        &g.other, &g.expired, &g.revoked, &g.backend, &g.up1,   &g.up2};

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        kc_clear(all[i]);
    }
    torii_table_reader_unregister();
    return 0;
}

static SSL_CTX *backend_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    X509_STORE *st;
    static const unsigned char sid[] = "backend";

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, g.backend.cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, g.backend.key), 1);
    /* Like `openssl s_server -Verify 1 -CAfile ca1.pem`: a client certificate is required. */
    st = SSL_CTX_get_cert_store(ctx);
    assert_int_equal(X509_STORE_add_cert(st, g.ca1.cert), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    assert_int_equal(SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1), 1);
    return ctx;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *trusted[] = {"ca1"};
    struct torii_tls_opts o = {0};

    assert_non_null(f);
    assert_int_equal(torii_table_new(&f->t), TORII_OK);
    put(f->t, "edge", &g.edge, NULL, 1, 0);
    torii_table_set_default(f->t, "edge");
    put(f->t, "ca1", &g.ca1, NULL, 0, 0);
    put(f->t, "ca2", &g.ca2, NULL, 0, 0);
    put(f->t, "bca", &g.bca, NULL, 0, 0);
    put(f->t, "rogue", &g.rogue, NULL, 0, 0);
    put(f->t, "revoked-client", &g.revoked, &g.ca1i, 1, 1);
    put(f->t, "up-client", &g.up1, &g.ca1, 1, 0);
    assert_int_equal(torii_tls_trust_new(f->t, trusted, 1, &f->trust, NULL), TORII_OK);
    pol_opt.mode = TORII_TLS_CLIENT_AUTH_OPTIONAL;
    pol_opt.trust = f->trust;
    pol_req.mode = TORII_TLS_CLIENT_AUTH_REQUIRED;
    pol_req.trust = f->trust;
    plain_requires = 0;
    o.table = f->t;
    o.client_auth_lookup = lookup;
    assert_int_equal(torii_tls_ctx_new(&o, &f->tc, NULL), TORII_OK);
    f->client_ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(f->client_ctx);
    SSL_CTX_set_verify(f->client_ctx, SSL_VERIFY_NONE, NULL);
    f->backend_ctx = backend_ctx_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    SSL_CTX_free(f->client_ctx);
    SSL_CTX_free(f->backend_ctx);
    torii_tls_ctx_free(f->tc);
    torii_tls_trust_free(f->trust);
    torii_table_free(f->t);
    free(f);
    return 0;
}

/* ---- edge client authentication ---- */

static char *sf_bytes(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    char *out;
    int n;

    assert_true(len > 0);
    out = malloc(4 * (size_t)len / 3 + 8);
    assert_non_null(out);
    out[0] = ':';
    n = EVP_EncodeBlock((unsigned char *)out + 1, der, len);
    out[1 + n] = ':';
    out[2 + n] = '\0';
    OPENSSL_free(der);
    return out;
}

static void test_client_auth_trusted_chain_verified_with_rfc9440_headers(void **state)
{
    struct fx *f = *state;
    SSL *c = client_new(f, "OPT.Example.", &g.good, &g.ca1i);
    SSL *s = server_new(f);
    const char *reason = NULL;
    char *cert = NULL;
    char *chain = NULL;
    char *want;
    const STACK_OF(X509_NAME) * cas;

    assert_true(handshake(c, s));
    assert_string_equal(last_host, "opt.example"); /* the lookup gets the normalized SNI */
    assert_int_equal(torii_tls_conn_client_verdict(s, &reason), TORII_TLS_CLIENT_VERIFIED);
    assert_string_equal(reason, "verified");
    /* The acceptable CA names went to the client (TLS 1.3 certificate_authorities). */
    cas = SSL_get0_peer_CA_list(c);
    assert_int_equal(sk_X509_NAME_num(cas), 1);
    assert_int_equal(X509_NAME_cmp(sk_X509_NAME_value(cas, 0), X509_get_subject_name(g.ca1.cert)),
                     0);
    assert_int_equal(torii_tls_client_cert_headers(s, &cert, &chain), TORII_OK);
    want = sf_bytes(g.good.cert);
    assert_string_equal(cert, want);
    free(want);
    want = sf_bytes(g.ca1i.cert);
    assert_string_equal(chain, want);
    free(want);
    free(cert);
    free(chain);
    /* Leaf only: no chain value. */
    assert_int_equal(torii_tls_client_cert_headers(s, &cert, NULL), TORII_OK);
    free(cert);
    assert_int_equal(torii_tls_client_cert_headers(NULL, &cert, NULL), TORII_EINVAL);
    SSL_free(c);
    SSL_free(s);
}

static void test_client_auth_tls12_verified_and_ca_list_sent(void **state)
{
    struct fx *f = *state;
    SSL *c = client_new(f, "req.example", &g.good, &g.ca1i);
    SSL *s = server_new(f);
    STACK_OF(X509_NAME) * cas;

    assert_int_equal(SSL_set_max_proto_version(c, TLS1_2_VERSION), 1);
    assert_true(handshake(c, s));
    assert_int_equal(SSL_version(s), TLS1_2_VERSION);
    assert_int_equal(torii_tls_conn_client_verdict(s, NULL), TORII_TLS_CLIENT_VERIFIED);
    cas = SSL_get_client_CA_list(c);
    assert_int_equal(sk_X509_NAME_num(cas), 1);
    SSL_free(c);
    SSL_free(s);
}

static void test_client_auth_wrong_ca_rejected_not_failed(void **state)
{
    struct fx *f = *state;
    const char *reason = NULL;
    SSL *c = client_new(f, "req.example", &g.other, NULL);
    SSL *s = server_new(f);
    char *cert = NULL;

    assert_true(handshake(c, s));
    assert_int_equal(torii_tls_conn_client_verdict(s, &reason), TORII_TLS_CLIENT_REJECTED);
    assert_non_null(reason);
    assert_string_not_equal(reason, "verified");
    /* The header encoder still works (the proxy decides what to forward). */
    assert_int_equal(torii_tls_client_cert_headers(s, &cert, NULL), TORII_OK);
    free(cert);
    SSL_free(c);
    SSL_free(s);
}

static void test_client_auth_expired_rejected(void **state)
{
    struct fx *f = *state;
    const char *reason = NULL;

    assert_int_equal(edge(f, "opt.example", &g.expired, &g.ca1i, NULL, NULL, NULL, &reason),
                     TORII_TLS_CLIENT_REJECTED);
    assert_string_equal(reason, X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED));
}

static void test_client_auth_revoked_in_store_rejected(void **state)
{
    struct fx *f = *state;
    const char *reason = NULL;

    assert_int_equal(edge(f, "req.example", &g.revoked, &g.ca1i, NULL, NULL, NULL, &reason),
                     TORII_TLS_CLIENT_REJECTED);
    assert_string_equal(reason, "certificate revoked");
    /* The same entity un-revoked: accepted. */
    put(f->t, "revoked-client", &g.revoked, &g.ca1i, 1, 0);
    assert_int_equal(edge(f, "req.example", &g.revoked, &g.ca1i, NULL, NULL, NULL, &reason),
                     TORII_TLS_CLIENT_VERIFIED);
    /* A revoked intermediate rejects the leaves under it. */
    put(f->t, "issuing-ca", &g.ca1i, &g.ca1, 0, 1);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, NULL, NULL, NULL, &reason),
                     TORII_TLS_CLIENT_REJECTED);
    assert_string_equal(reason, "certificate revoked");
}

static void test_client_auth_required_without_cert_fails_handshake(void **state)
{
    struct fx *f = *state;

    assert_int_equal(edge(f, "req.example", NULL, NULL, NULL, NULL, NULL, NULL), -1);
}

static void test_client_auth_optional_without_cert_is_none(void **state)
{
    struct fx *f = *state;
    const char *reason = NULL;
    SSL *c = client_new(f, "opt.example", NULL, NULL);
    SSL *s = server_new(f);
    char *cert = NULL;

    assert_true(handshake(c, s));
    assert_int_equal(torii_tls_conn_client_verdict(s, &reason), TORII_TLS_CLIENT_NONE);
    assert_string_equal(reason, "no client certificate");
    assert_int_equal(torii_tls_client_cert_headers(s, &cert, NULL), TORII_ENOTFOUND);
    assert_null(cert);
    SSL_free(c);
    SSL_free(s);
}

static void test_client_auth_no_policy_requests_nothing(void **state)
{
    struct fx *f = *state;
    SSL *c = client_new(f, "plain.example", &g.good, NULL);
    SSL *s = server_new(f);

    assert_true(handshake(c, s));
    assert_null(SSL_get0_peer_certificate(s)); /* no CertificateRequest was sent */
    assert_int_equal(torii_tls_conn_client_verdict(s, NULL), TORII_TLS_CLIENT_NONE);
    SSL_free(c);
    SSL_free(s);
    /* Without SNI the lookup is asked with no name. */
    assert_int_equal(edge(f, NULL, NULL, NULL, NULL, NULL, NULL, NULL), TORII_TLS_CLIENT_NONE);
    assert_string_equal(last_host, "(none)");
}

static void test_client_auth_trusted_ca_replaced_applies_to_next_handshake(void **state)
{
    struct fx *f = *state;

    assert_int_equal(torii_tls_trust_count(f->trust), 1);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    /* The "ca1" entry now holds the other CA. */
    put(f->t, "ca1", &g.ca2, NULL, 0, 0);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_REJECTED);
    assert_int_equal(edge(f, "req.example", &g.other, NULL, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    /* Revoked CA entry: nothing trusted. */
    put(f->t, "ca1", &g.ca2, NULL, 0, 1);
    assert_int_equal(torii_tls_trust_count(f->trust), 0);
    assert_int_equal(edge(f, "req.example", &g.other, NULL, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_REJECTED);
    /* Removed: nothing trusted either. */
    assert_int_equal(torii_table_update(f->t, "ca1", NULL, 0, NULL, NULL), TORII_OK);
    assert_int_equal(torii_tls_trust_count(f->trust), 0);
}

static void test_client_auth_sessions_never_cross_policies(void **state)
{
    struct fx *f = *state;
    SSL_SESSION *sess = NULL;
    SSL_SESSION *plain = NULL;
    int reused = -1;
    const char *reason = NULL;

    /* Same policy: resumed, and still verified. */
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, NULL, &sess, NULL, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    assert_non_null(sess);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, sess, NULL, &reused, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    assert_int_equal(reused, 1);
    /* Revocation is checked again on a resumed connection. */
    put(f->t, "good-entity", &g.good, &g.ca1i, 0, 1);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, sess, NULL, &reused, &reason),
                     TORII_TLS_CLIENT_REJECTED);
    assert_int_equal(reused, 1);
    assert_string_equal(reason, "certificate revoked");
    assert_int_equal(torii_table_update(f->t, "good-entity", NULL, 0, NULL, NULL), TORII_OK);
    /* A trust change (CA entry updated) invalidates the sessions made before it. */
    put(f->t, "ca1", &g.ca1, NULL, 0, 0);
    assert_int_equal(edge(f, "req.example", &g.good, &g.ca1i, sess, NULL, &reused, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    assert_int_equal(reused, 0);
    SSL_SESSION_free(sess);
    /* A session made without client authentication never resumes where it is required: with
     * no certificate to show, the handshake fails instead of skipping the check. */
    assert_int_equal(edge(f, "plain.example", NULL, NULL, NULL, &plain, NULL, NULL),
                     TORII_TLS_CLIENT_NONE);
    assert_non_null(plain);
    assert_int_equal(edge(f, "plain.example", NULL, NULL, plain, NULL, &reused, NULL),
                     TORII_TLS_CLIENT_NONE);
    assert_int_equal(reused, 1); /* sanity: resumption works there */
    plain_requires = 1;
    assert_int_equal(edge(f, "plain.example", NULL, NULL, plain, NULL, NULL, NULL), -1);
    assert_int_equal(edge(f, "plain.example", &g.good, &g.ca1i, plain, NULL, &reused, NULL),
                     TORII_TLS_CLIENT_VERIFIED);
    assert_int_equal(reused, 0);
    SSL_SESSION_free(plain);
}

/* A resumed TLS 1.3 handshake issues a fresh ticket (RFC 8446 C.4: clients use each ticket
 * once), so a client that always offers the newest session, and never one twice, resumes
 * every time. */
static void test_resumed_handshake_issues_a_new_ticket(void **state)
{
    struct fx *f = *state;
    SSL_SESSION *used[6] = {NULL};
    int reused = -1;

    assert_int_equal(edge(f, "plain.example", NULL, NULL, NULL, &used[0], NULL, NULL),
                     TORII_TLS_CLIENT_NONE);
    assert_non_null(used[0]);
    for (int i = 1; i < 6; i++) {
        const unsigned char *t_old = NULL;
        const unsigned char *t_new = NULL;
        size_t l_old = 0;
        size_t l_new = 0;

        reused = -1;
        assert_int_equal(edge(f, "plain.example", NULL, NULL, used[i - 1], &used[i], &reused, NULL),
                         TORII_TLS_CLIENT_NONE);
        assert_int_equal(reused, 1);
        /* What the client holds afterwards is a new session with a new ticket. */
        assert_non_null(used[i]);
        assert_ptr_not_equal(used[i], used[i - 1]);
        assert_int_equal(SSL_SESSION_is_resumable(used[i]), 1);
        SSL_SESSION_get0_ticket(used[i - 1], &t_old, &l_old);
        SSL_SESSION_get0_ticket(used[i], &t_new, &l_new);
        assert_true(l_old > 0 && l_new > 0);
        assert_false(l_old == l_new && memcmp(t_old, t_new, l_new) == 0);
    }
    for (int i = 0; i < 6; i++) {
        SSL_SESSION_free(used[i]);
    }
}

/* The certificate chosen in the client-hello callback is installed only when the handshake
 * needs it: a full handshake serves it, a resumed one (no Certificate message) never
 * installs it, yet still knows which certificate the connection was chosen for. */
static int served_probe(SSL *c, SSL *s, void *arg)
{
    int *installed = arg;
    int reused = SSL_session_reused(s);

    *installed = SSL_get_certificate(s) != NULL;
    assert_non_null(torii_tls_conn_cert(s));
    if (!reused) {
        X509 *peer = SSL_get1_peer_certificate(c);
        assert_non_null(peer);
        assert_int_equal(X509_cmp(peer, SSL_get_certificate(s)), 0);
        X509_free(peer);
    }
    return reused;
}

/* 1 when resumed, 0 for a full handshake; *installed: the server connection holds a
 * certificate. */
static int served_cert(struct fx *f, SSL_SESSION *sess_in, SSL_SESSION **sess_out, int *installed)
{
    return pair(f, client_new(f, "plain.example", NULL, NULL), sess_in, sess_out, served_probe,
                installed);
}

static void test_resumed_handshake_installs_no_certificate(void **state)
{
    struct fx *f = *state;
    /* TLS 1.3, then TLS 1.2 (a session ticket too) */
    const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        SSL_SESSION *s1 = NULL;
        SSL_SESSION *s2 = NULL;
        int installed = -1;

        assert_int_equal(SSL_CTX_set_max_proto_version(f->client_ctx, versions[i]), 1);
        assert_int_equal(served_cert(f, NULL, &s1, &installed), 0);
        assert_int_equal(installed, 1);
        assert_int_equal(SSL_SESSION_get_protocol_version(s1), versions[i]);
        assert_int_equal(served_cert(f, s1, &s2, &installed), 1);
        assert_int_equal(installed, 0);
        SSL_SESSION_free(s1);
        SSL_SESSION_free(s2);
    }
}

/* Session ticket keys supplied from outside (fleet mode): a session issued by one context
 * resumes on another that holds the same set, also once that set was rotated (the key is the
 * previous one), not after two rotations, and never across contexts with their own keys. */
static int resumes_on(struct fx *f, struct torii_tls_ctx *on, SSL_SESSION *sess, SSL_SESSION **out)
{
    struct torii_tls_ctx *keep = f->tc;
    int reused = -1;

    f->tc = on;
    assert_int_equal(edge(f, "plain.example", NULL, NULL, sess, out, &reused, NULL),
                     TORII_TLS_CLIENT_NONE);
    f->tc = keep;
    return reused;
}

static void tickets_key(struct torii_tls_ticket_keys *ks, size_t i, unsigned char fill)
{
    memset(ks->k[i], fill, TORII_TLS_TICKET_KEY_LEN);
    ks->k[i][0] = (unsigned char)(fill ^ 0x5a); /* the name differs from the other bytes */
}

static void test_shared_ticket_keys_resume_across_contexts(void **state)
{
    struct fx *f = *state;
    struct torii_tls_opts o = {.table = f->t};
    struct torii_tls_tickets *ha = NULL;
    struct torii_tls_tickets *hb = NULL;
    struct torii_tls_ctx *ca = NULL;
    struct torii_tls_ctx *cb = NULL;
    struct torii_tls_ticket_keys ks = {.n = 1};
    SSL_SESSION *s_own = NULL;
    SSL_SESSION *s_a = NULL;

    /* Control: two contexts with their own keys do not resume each other's sessions. */
    assert_int_equal(resumes_on(f, f->tc, NULL, &s_own), 0);
    assert_int_equal(torii_tls_ctx_new(&o, &ca, NULL), TORII_OK);
    assert_int_equal(resumes_on(f, ca, s_own, NULL), 0);
    torii_tls_ctx_free(ca);
    /* Two holders, each with its own random key, then the same set installed in both. */
    assert_int_equal(torii_tls_tickets_new(&ha), TORII_OK);
    assert_int_equal(torii_tls_tickets_new(&hb), TORII_OK);
    o.tickets = ha;
    assert_int_equal(torii_tls_ctx_new(&o, &ca, NULL), TORII_OK);
    o.tickets = hb;
    assert_int_equal(torii_tls_ctx_new(&o, &cb, NULL), TORII_OK);
    assert_int_equal(resumes_on(f, ca, NULL, &s_a), 0);
    assert_int_equal(resumes_on(f, cb, s_a, NULL), 0); /* different keys so far */
    SSL_SESSION_free(s_a);
    tickets_key(&ks, 0, 0x11);
    assert_int_equal(torii_tls_tickets_install(ha, &ks), TORII_OK);
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_OK);
    assert_int_equal(resumes_on(f, ca, NULL, &s_a), 0);
    assert_int_equal(resumes_on(f, cb, s_a, NULL), 1);
    /* Rotated: K2 current, K1 previous: the K1 ticket still resumes. */
    ks.n = 2;
    memcpy(ks.k[1], ks.k[0], TORII_TLS_TICKET_KEY_LEN);
    tickets_key(&ks, 0, 0x22);
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_OK);
    assert_int_equal(resumes_on(f, cb, s_a, NULL), 1);
    /* Rotated again: K1 is gone, a full handshake. */
    memcpy(ks.k[1], ks.k[0], TORII_TLS_TICKET_KEY_LEN);
    tickets_key(&ks, 0, 0x33);
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_OK);
    assert_int_equal(resumes_on(f, cb, s_a, NULL), 0);
    /* Malformed sets are refused and change nothing. */
    ks.n = 0;
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_EINVAL);
    ks.n = 3;
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_EINVAL);
    ks.n = 2;
    memcpy(ks.k[1], ks.k[0], TORII_TLS_TICKET_KEY_LEN);
    assert_int_equal(torii_tls_tickets_install(hb, &ks), TORII_EINVAL);
    SSL_SESSION_free(s_a);
    SSL_SESSION_free(s_own);
    torii_tls_ctx_free(ca);
    torii_tls_ctx_free(cb);
    torii_tls_tickets_free(ha);
    torii_tls_tickets_free(hb);
    torii_tls_tickets_free(NULL);
}

/* Client side of a HelloRetryRequest: counts the ClientHellos sent and, when rename is set,
 * switches the server name once the first ServerHello (the HRR) arrives, so that the second
 * ClientHello names another host. */
struct hrr_probe {
    int hellos;
    const char *rename;
};

static void hrr_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    struct hrr_probe *p = arg;
    const unsigned char *b = buf;

    (void)version;
    if (content_type != SSL3_RT_HANDSHAKE || len == 0) {
        return;
    }
    if (write_p && b[0] == SSL3_MT_CLIENT_HELLO) {
        p->hellos++;
    } else if (!write_p && b[0] == SSL3_MT_SERVER_HELLO && p->rename != NULL) {
        assert_int_equal(SSL_set_tlsext_host_name(ssl, p->rename), 1);
        p->rename = NULL;
    }
}

/* A key share the listener does not take (P-521) forces a HelloRetryRequest. */
static SSL *hrr_client(struct fx *f, const char *sni, const struct kc *cert, struct hrr_probe *p)
{
    SSL *c = client_new(f, sni, cert, cert != NULL ? &g.ca1i : NULL);

    assert_int_equal(SSL_set_min_proto_version(c, TLS1_3_VERSION), 1);
    assert_int_equal(SSL_set1_groups_list(c, "P-521:X25519"), 1);
    SSL_set_msg_callback(c, hrr_msg_cb);
    SSL_set_msg_callback_arg(c, p);
    return c;
}

/* The second ClientHello keeps the certificate and client policy chosen for the first: the
 * references the SSL holds are not replaced (a leak before: ASan). */
static void test_hello_retry_keeps_the_first_choice(void **state)
{
    struct fx *f = *state;
    struct hrr_probe p = {0};
    SSL *c = hrr_client(f, "req.example", &g.good, &p);
    SSL *s = server_new(f);

    assert_true(handshake(c, s));
    assert_int_equal(p.hellos, 2);
    assert_int_equal(X509_cmp(SSL_get0_peer_certificate(c), g.edge.cert), 0);
    assert_int_equal(torii_tls_conn_client_verdict(s, NULL), TORII_TLS_CLIENT_VERIFIED);
    SSL_free(c);
    SSL_free(s);
}

/* A second ClientHello naming another host is refused (RFC 8446 4.1.2). */
static void test_hello_retry_with_another_name_refused(void **state)
{
    struct fx *f = *state;
    struct hrr_probe p = {0, "opt.example"};
    SSL *c = hrr_client(f, "plain.example", NULL, &p);
    SSL *s = server_new(f);

    assert_false(handshake(c, s));
    assert_int_equal(p.hellos, 2);
    SSL_free(c);
    SSL_free(s);
}

static void test_parse_versions_finds_tls13(void **state)
{
    const unsigned char both[] = {4, 0x03, 0x04, 0x03, 0x03};
    const unsigned char grease_12[] = {4, 0x7a, 0x7a, 0x03, 0x03};
    const unsigned char odd[] = {3, 0x03, 0x04, 0x03};
    const unsigned char short_len[] = {4, 0x03, 0x04};
    int tls13 = -1;

    (void)state;
    assert_int_equal(torii_tls_parse_versions(both, sizeof(both), &tls13), TORII_OK);
    assert_int_equal(tls13, 1);
    assert_int_equal(torii_tls_parse_versions(grease_12, sizeof(grease_12), &tls13), TORII_OK);
    assert_int_equal(tls13, 0);
    assert_int_equal(torii_tls_parse_versions(odd, sizeof(odd), &tls13), TORII_EPROTO);
    assert_int_equal(torii_tls_parse_versions(short_len, sizeof(short_len), &tls13), TORII_EPROTO);
    assert_int_equal(torii_tls_parse_versions(both, 1, &tls13), TORII_EPROTO);
}

static void test_client_auth_policy_without_trust_rejects_everything(void **state)
{
    struct fx *f = *state;

    pol_opt.trust = NULL;
    assert_int_equal(edge(f, "opt.example", &g.good, &g.ca1i, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_REJECTED);
    assert_int_equal(edge(f, "opt.example", NULL, NULL, NULL, NULL, NULL, NULL),
                     TORII_TLS_CLIENT_NONE);
}

static void test_trust_new_bad_input_and_missing_ids(void **state)
{
    struct fx *f = *state;
    struct torii_tls_trust *tr = NULL;
    const char *ids[] = {"ca1", "nope", "revoked-client", "ca2"};
    const char *bad[] = {""};
    struct torii_errbuf eb = {{0}};

    assert_int_equal(torii_tls_trust_new(NULL, ids, 1, &tr, &eb), TORII_EINVAL);
    assert_int_equal(torii_tls_trust_new(f->t, NULL, 1, &tr, &eb), TORII_EINVAL);
    assert_int_equal(torii_tls_trust_new(f->t, bad, 1, &tr, &eb), TORII_EINVAL);
    assert_true(eb.msg[0] != '\0');
    assert_null(tr);
    /* Absent and revoked entries are left out. */
    assert_int_equal(torii_tls_trust_new(f->t, ids, 4, &tr, NULL), TORII_OK);
    assert_int_equal(torii_tls_trust_count(tr), 2);
    torii_tls_trust_free(tr);
    assert_int_equal(torii_tls_trust_new(f->t, NULL, 0, &tr, NULL), TORII_OK);
    assert_int_equal(torii_tls_trust_count(tr), 0);
    torii_tls_trust_free(tr);
    torii_tls_trust_free(NULL);
}

/* ---- upstream (backend) TLS ---- */

static struct torii_tls_upstream *up_new(struct fx *f, const char *ca, const char *client,
                                         const char *sni, int insecure)
{
    struct torii_tls_upstream_opts o = {f->t, ca, client, sni, insecure};
    struct torii_tls_upstream *u = NULL;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(torii_tls_upstream_new(&o, &u, &eb), TORII_OK);
    return u;
}

/* Connect u to the test backend as host; returns 1 on success. *peer (may be NULL) gets a
 * new reference to the certificate the backend saw, *reused whether it was resumed,
 * *verify the client's verify result, *sni what the backend was sent. */
static int up_connect(struct fx *f, struct torii_tls_upstream *u, const char *host, X509 **peer,
                      int *reused, long *verify, char *sni, size_t sni_len)
{
    SSL *c = torii_tls_upstream_conn_new(u, host);
    SSL *s;
    int ok;

    if (c == NULL) {
        return -1;
    }
    s = SSL_new(f->backend_ctx);
    assert_non_null(s);
    SSL_set_accept_state(s);
    ok = handshake(c, s);
    if (verify != NULL) {
        *verify = SSL_get_verify_result(c);
    }
    if (ok && peer != NULL) {
        *peer = SSL_get1_peer_certificate(s);
    }
    if (ok && reused != NULL) {
        *reused = SSL_session_reused(c);
    }
    if (ok && sni != NULL) {
        const char *n = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
        (void)snprintf(sni, sni_len, "%s", n != NULL ? n : "(none)");
    }
    SSL_free(c);
    SSL_free(s);
    return ok;
}

static void test_upstream_mtls_presents_client_cert_and_follows_replacement(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "bca", "up-client", NULL, 0);
    X509 *peer = NULL;
    int reused = -1;
    long verify = -1;
    char sni[300] = "";

    assert_int_equal(up_connect(f, u, "backend.example", &peer, &reused, &verify, sni, sizeof(sni)),
                     1);
    assert_int_equal(verify, X509_V_OK);
    assert_string_equal(sni, "backend.example");
    assert_int_equal(X509_cmp(peer, g.up1.cert), 0);
    assert_int_equal(reused, 0);
    X509_free(peer);
    /* Resumed while nothing changed. */
    assert_int_equal(up_connect(f, u, "backend.example", &peer, &reused, NULL, NULL, 0), 1);
    assert_int_equal(reused, 1);
    X509_free(peer);
    /* Renewed in the store: the next connection presents the new certificate (full
     * handshake: the old session belongs to the old certificate). */
    put(f->t, "up-client", &g.up2, &g.ca1, 1, 0);
    assert_int_equal(up_connect(f, u, "backend.example", &peer, &reused, NULL, NULL, 0), 1);
    assert_int_equal(X509_cmp(peer, g.up2.cert), 0);
    assert_int_equal(reused, 0);
    X509_free(peer);
    assert_int_equal(up_connect(f, u, "backend.example", &peer, &reused, NULL, NULL, 0), 1);
    assert_int_equal(X509_cmp(peer, g.up2.cert), 0);
    assert_int_equal(reused, 1);
    X509_free(peer);
    /* Another name: no session offered. */
    assert_int_equal(up_connect(f, u, "127.0.0.1", NULL, &reused, NULL, sni, sizeof(sni)), 1);
    assert_int_equal(reused, 0);
    assert_string_equal(sni, "(none)"); /* no SNI for an IP literal (RFC 6066 3) */
    torii_tls_upstream_free(u);
}

static void test_upstream_wrong_ca_fails(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "rogue", "up-client", NULL, 0);
    long verify = X509_V_OK;

    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, &verify, NULL, 0), 0);
    assert_int_not_equal(verify, X509_V_OK);
    torii_tls_upstream_free(u);
}

static void test_upstream_hostname_mismatch_fails(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "bca", "up-client", NULL, 0);
    struct torii_tls_upstream *named = up_new(f, "bca", "up-client", "backend.example", 0);
    long verify = X509_V_OK;
    char sni[300] = "";

    assert_int_equal(up_connect(f, u, "evil.example", NULL, NULL, &verify, NULL, 0), 0);
    assert_int_equal(verify, X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(up_connect(f, u, "10.9.9.9", NULL, NULL, &verify, NULL, 0), 0);
    assert_int_equal(verify, X509_V_ERR_IP_ADDRESS_MISMATCH);
    /* A configured SNI is what is sent and verified, whatever the target host. */
    assert_int_equal(up_connect(f, named, "10.9.9.9", NULL, NULL, &verify, sni, sizeof(sni)), 1);
    assert_string_equal(sni, "backend.example");
    torii_tls_upstream_free(u);
    torii_tls_upstream_free(named);
}

static void test_upstream_system_store_when_no_ca(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, NULL, "up-client", NULL, 0);
    long verify = X509_V_OK;

    /* The test CA is in no system store. */
    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, &verify, NULL, 0), 0);
    assert_int_not_equal(verify, X509_V_OK);
    torii_tls_upstream_free(u);
}

static void test_upstream_insecure_skips_verification(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, NULL, "up-client", NULL, 1);

    assert_int_equal(up_connect(f, u, "evil.example", NULL, NULL, NULL, NULL, 0), 1);
    torii_tls_upstream_free(u);
}

static void test_upstream_without_client_cert_refused_by_mtls_backend(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "bca", NULL, NULL, 0);

    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, NULL, NULL, 0), 0);
    torii_tls_upstream_free(u);
}

static void test_upstream_unusable_client_cert_no_connection(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *missing = up_new(f, "bca", "nope", NULL, 0);
    struct torii_tls_upstream *revoked = up_new(f, "bca", "revoked-client", NULL, 0);
    struct torii_tls_upstream *keyless = up_new(f, "bca", "ca1", NULL, 0);

    assert_null(torii_tls_upstream_conn_new(missing, "backend.example"));
    assert_null(torii_tls_upstream_conn_new(revoked, "backend.example"));
    assert_null(torii_tls_upstream_conn_new(keyless, "backend.example"));
    assert_null(torii_tls_upstream_conn_new(missing, ""));
    assert_null(torii_tls_upstream_conn_new(missing, NULL));
    /* Arrives later: works without a restart. */
    put(f->t, "nope", &g.up1, &g.ca1, 1, 0);
    assert_int_equal(up_connect(f, missing, "backend.example", NULL, NULL, NULL, NULL, 0), 1);
    torii_tls_upstream_free(missing);
    torii_tls_upstream_free(revoked);
    torii_tls_upstream_free(keyless);
}

static void test_upstream_trusted_ca_entry_replaced_applies(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "backend-ca", "up-client", NULL, 0);

    /* Absent, then the wrong CA, then the right one: each applies to the next connection. */
    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, NULL, NULL, 0), 0);
    put(f->t, "backend-ca", &g.rogue, NULL, 0, 0);
    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, NULL, NULL, 0), 0);
    put(f->t, "backend-ca", &g.bca, NULL, 0, 0);
    assert_int_equal(up_connect(f, u, "backend.example", NULL, NULL, NULL, NULL, 0), 1);
    torii_tls_upstream_free(u);
}

static void test_upstream_outlives_free_while_connections_live(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = up_new(f, "bca", "up-client", NULL, 0);
    SSL *c = torii_tls_upstream_conn_new(u, "backend.example");
    SSL *s = SSL_new(f->backend_ctx);

    assert_non_null(c);
    assert_non_null(s);
    SSL_set_accept_state(s);
    torii_tls_upstream_free(u);   /* the connection keeps what it needs */
    assert_true(handshake(c, s)); /* and its session callback still has its upstream */
    SSL_free(c);
    SSL_free(s);
}

static void test_upstream_new_bad_options_einval(void **state)
{
    struct fx *f = *state;
    struct torii_tls_upstream *u = NULL;
    struct torii_errbuf eb = {{0}};
    struct torii_tls_upstream_opts empty_ca = {f->t, "", NULL, NULL, 0};
    struct torii_tls_upstream_opts empty_sni = {f->t, NULL, NULL, "", 0};
    struct torii_tls_upstream_opts no_table = {NULL, "bca", NULL, NULL, 0};
    struct torii_tls_upstream_opts plain = {NULL, NULL, NULL, NULL, 0};

    assert_int_equal(torii_tls_upstream_new(&empty_ca, &u, &eb), TORII_EINVAL);
    assert_int_equal(torii_tls_upstream_new(&empty_sni, &u, &eb), TORII_EINVAL);
    assert_int_equal(torii_tls_upstream_new(&no_table, &u, &eb), TORII_EINVAL);
    assert_true(eb.msg[0] != '\0');
    assert_int_equal(torii_tls_upstream_new(NULL, &u, &eb), TORII_EINVAL);
    assert_null(u);
    /* No ids: no table needed (system store). */
    assert_int_equal(torii_tls_upstream_new(&plain, &u, &eb), TORII_OK);
    torii_tls_upstream_free(u);
    torii_tls_upstream_free(NULL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_client_auth_trusted_chain_verified_with_rfc9440_headers),
        T(test_client_auth_tls12_verified_and_ca_list_sent),
        T(test_client_auth_wrong_ca_rejected_not_failed),
        T(test_client_auth_expired_rejected),
        T(test_client_auth_revoked_in_store_rejected),
        T(test_client_auth_required_without_cert_fails_handshake),
        T(test_client_auth_optional_without_cert_is_none),
        T(test_client_auth_no_policy_requests_nothing),
        T(test_client_auth_trusted_ca_replaced_applies_to_next_handshake),
        T(test_client_auth_sessions_never_cross_policies),
        T(test_resumed_handshake_issues_a_new_ticket),
        T(test_resumed_handshake_installs_no_certificate),
        T(test_shared_ticket_keys_resume_across_contexts),
        T(test_hello_retry_keeps_the_first_choice),
        T(test_hello_retry_with_another_name_refused),
        cmocka_unit_test(test_parse_versions_finds_tls13),
        T(test_client_auth_policy_without_trust_rejects_everything),
        T(test_trust_new_bad_input_and_missing_ids),
        T(test_upstream_mtls_presents_client_cert_and_follows_replacement),
        T(test_upstream_wrong_ca_fails),
        T(test_upstream_hostname_mismatch_fails),
        T(test_upstream_system_store_when_no_ca),
        T(test_upstream_insecure_skips_verification),
        T(test_upstream_without_client_cert_refused_by_mtls_backend),
        T(test_upstream_unusable_client_cert_no_connection),
        T(test_upstream_trusted_ca_entry_replaced_applies),
        T(test_upstream_outlives_free_while_connections_live),
        T(test_upstream_new_bad_options_einval),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
