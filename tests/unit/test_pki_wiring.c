/* test_pki_wiring.c - the served PKI state (pkistate.h) fed like the store change feed:
 * OCSP status at request time (good, revoked, unknown), CRL regeneration with increasing
 * numbers, JWKS rebuild, staples, and bad input (malformed OCSP, corrupt records); then the
 * incremental bookkeeping: a CA loaded after its certificates, one publish for a bulk load,
 * CRLs and staples following changes, staple batches and the refresher thread, copies of a
 * certificate, a CA replaced by itself, JWKS order. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkistate.h"
#include "torii/store.h"

struct fx {
    struct torii_pki_state *st;
    json_t *ca;
    json_t *leaf;
};

/* The serial source the state's OCSP asks (in the daemon, certdb's serial index): the records
 * fed so far, by id, with their leaf serial. One state per test; readers run concurrently. */
struct src_rec {
    char *id;
    char serial[TORII_PKI_SERIAL_HEX_MAX];
    char *json;
    unsigned char *aux;
    size_t aux_len;
};
static struct {
    pthread_mutex_t lock;
    struct src_rec v[128];
    size_t n;
} g_src = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void src_drop(size_t i)
{
    free(g_src.v[i].id);
    free(g_src.v[i].json);
    torii_secure_free(g_src.v[i].aux, g_src.v[i].aux_len);
    g_src.v[i] = g_src.v[--g_src.n];
}

static void src_del(const char *id)
{
    (void)pthread_mutex_lock(&g_src.lock);
    for (size_t i = 0; i < g_src.n; i++) {
        if (strcmp(g_src.v[i].id, id) == 0) {
            src_drop(i);
            break;
        }
    }
    (void)pthread_mutex_unlock(&g_src.lock);
}

static void src_put(const json_t *e, const char *text, const unsigned char *aux, size_t aux_len)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    struct src_rec r = {.id = torii_xstrdup(id), .json = torii_xstrdup(text), .aux_len = aux_len};

    src_del(id);
    if (torii_pki_cert_serial_hex(e, r.serial, sizeof(r.serial), NULL) != TORII_OK) {
        r.serial[0] = '\0';
    }
    r.aux = torii_xmalloc(aux_len);
    memcpy(r.aux, aux, aux_len);
    (void)pthread_mutex_lock(&g_src.lock);
    assert_true(g_src.n < sizeof(g_src.v) / sizeof(g_src.v[0]));
    g_src.v[g_src.n++] = r;
    (void)pthread_mutex_unlock(&g_src.lock);
}

static void src_reset(void)
{
    (void)pthread_mutex_lock(&g_src.lock);
    while (g_src.n > 0) {
        src_drop(0);
    }
    (void)pthread_mutex_unlock(&g_src.lock);
}

static int src_serial(void *arg, const char *serial_hex, torii_store_iter_cb cb, void *cb_arg)
{
    int rc = TORII_OK;

    (void)arg;
    (void)pthread_mutex_lock(&g_src.lock);
    for (size_t i = 0; rc == TORII_OK && i < g_src.n; i++) {
        const struct src_rec *r = &g_src.v[i];
        if (strcmp(r->serial, serial_hex) == 0) {
            rc = cb(&(struct torii_store_rec){r->id, strlen(r->id), r->json, strlen(r->json),
                                              r->aux, r->aux_len},
                    cb_arg);
        }
    }
    (void)pthread_mutex_unlock(&g_src.lock);
    return rc;
}

static void feed(struct torii_pki_state *st, enum torii_store_op_kind kind, const json_t *e)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    char *text = json_dumps(e, JSON_COMPACT);
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    struct torii_store_rec rec;

    assert_int_equal(torii_certrec_build(e, &aux, &aux_len, NULL), TORII_OK);
    rec = (struct torii_store_rec){id, strlen(id), text, strlen(text), aux, aux_len};
    if (kind == TORII_STORE_DELETE) {
        src_del(id);
    } else {
        src_put(e, text, aux, aux_len);
    }
    torii_pki_state_watch_cb(kind, TORII_STORE_CERTS, &rec, st);
    free(text);
    torii_secure_free(aux, aux_len);
}

static void del_id(struct torii_pki_state *st, const char *id)
{
    struct torii_store_rec rec = {id, strlen(id), NULL, 0, NULL, 0};

    src_del(id);
    torii_pki_state_watch_cb(TORII_STORE_DELETE, TORII_STORE_CERTS, &rec, st);
}

static int setup(void **state)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct torii_pki_state_opts o = {.ocsp_cache_s = 60, .serial = src_serial};
    struct torii_pki_opts po = {.now_ms = torii_clock_now_ms(), .id = "ca"};
    json_t *q = json_pack("{s:s}", "subject", "CN=unit CA");
    json_t *lq = json_pack("{s:[s]}", "hosts", "unit.example.test");

    src_reset();
    assert_int_equal(torii_pki_state_new(&o, &f->st), TORII_OK);
    assert_int_equal(torii_pki_ca_create(q, &po, &f->ca, NULL), TORII_OK);
    po.id = "leaf";
    assert_int_equal(torii_pki_cert_issue(f->ca, lq, &po, &f->leaf, NULL), TORII_OK);
    feed(f->st, TORII_STORE_PUT, f->ca);
    feed(f->st, TORII_STORE_PUT, f->leaf);
    json_decref(q);
    json_decref(lq);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    torii_pki_state_free(f->st);
    src_reset();
    json_decref(f->ca);
    json_decref(f->leaf);
    free(f);
    return 0;
}

/* Ask st about the leaf of `leaf_e` (or `serial_override` of its issuer) as issued by `ca_e`;
 * returns V_OCSP_CERTSTATUS_* or -1 when the response is not successful. */
static int ocsp_of(struct torii_pki_state *sst, const json_t *ca_e, const json_t *leaf_e,
                   long serial_override, int *reason)
{
    X509 *ca = testpki_entity_leaf(ca_e);
    X509 *leaf = testpki_entity_leaf(leaf_e);
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *cid = OCSP_cert_to_id(NULL, leaf, ca);
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    unsigned char *der = NULL;
    unsigned char *body = NULL;
    const unsigned char *p;
    size_t len = 0;
    int n;
    int st = -1;

    if (serial_override > 0) {
        ASN1_INTEGER *ai = ASN1_INTEGER_new();
        OCSP_CERTID_free(cid);
        (void)ASN1_INTEGER_set(ai, serial_override);
        cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca), X509_get0_pubkey_bitstr(ca),
                               ai);
        ASN1_INTEGER_free(ai);
    }
    assert_non_null(OCSP_request_add0_id(req, cid));
    n = i2d_OCSP_REQUEST(req, &der);
    assert_true(n > 0);
    assert_int_equal(torii_pki_state_ocsp(sst, der, (size_t)n, &body, &len), TORII_OK);
    p = body;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    assert_non_null(resp);
    if (OCSP_response_status(resp) == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        bs = OCSP_response_get1_basic(resp);
        assert_int_equal(OCSP_basic_verify(bs, NULL, NULL, OCSP_NOVERIFY), 1);
        (void)OCSP_single_get0_status(OCSP_resp_get0(bs, 0), reason, NULL, NULL, NULL);
        st = OCSP_single_get0_status(OCSP_resp_get0(bs, 0), reason, NULL, NULL, NULL);
    }
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
    free(body);
    X509_free(ca);
    X509_free(leaf);
    return st;
}

static int ocsp_status(struct fx *f, long serial_override, int *reason)
{
    return ocsp_of(f->st, f->ca, f->leaf, serial_override, reason);
}

static uint64_t crl_number(struct fx *f)
{
    unsigned char *der = NULL;
    size_t len = 0;
    const unsigned char *p;
    X509_CRL *crl;
    ASN1_INTEGER *num;
    uint64_t v = 0;

    assert_int_equal(torii_pki_state_crl(f->st, "ca", &der, &len), TORII_OK);
    p = der;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    assert_non_null(crl);
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(num);
    assert_int_equal(ASN1_INTEGER_get_uint64(&v, num), 1);
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    free(der);
    return v;
}

static void test_pki_state_ocsp_good_revoked_unknown(void **state)
{
    struct fx *f = *state;
    int reason = -1;
    uint64_t n1 = crl_number(f);
    json_t *meta;

    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    assert_int_equal(ocsp_status(f, 12345, &reason), V_OCSP_CERTSTATUS_UNKNOWN);
    json_object_set_new(f->leaf, "revoked", json_true());
    meta = json_object_get(f->leaf, "metadata");
    json_object_set_new(meta, "revocationReason", json_string("KEY_COMPROMISE"));
    feed(f->st, TORII_STORE_REPLACE, f->leaf);
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_REVOKED);
    assert_int_equal(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    assert_true(crl_number(f) > n1);
    del_id(f->st, "leaf");
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_UNKNOWN);
}

static void test_pki_state_malformed_ocsp_gets_malformed_request(void **state)
{
    struct fx *f = *state;
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01};
    unsigned char *body = NULL;
    size_t len = 0;
    const unsigned char *p;
    OCSP_RESPONSE *resp;

    assert_int_equal(torii_pki_state_ocsp(f->st, junk, sizeof(junk), &body, &len), TORII_OK);
    p = body;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    assert_non_null(resp);
    assert_int_equal(OCSP_response_status(resp), OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    OCSP_RESPONSE_free(resp);
    free(body);
}

static void test_pki_state_corrupt_record_is_left_out(void **state)
{
    struct fx *f = *state;
    static const unsigned char junk[] = "not a record";
    struct torii_pki_state_stat before;
    struct torii_pki_state_stat after;
    unsigned char *der = NULL;
    size_t len = 0;

    torii_pki_state_stat_get(f->st, &before);
    torii_pki_state_watch_cb(TORII_STORE_PUT, TORII_STORE_CERTS,
                             &(struct torii_store_rec){"bad", 3, "{", 1, junk, sizeof(junk)},
                             f->st);
    torii_pki_state_stat_get(f->st, &after);
    assert_int_equal(after.certs, before.certs);
    assert_int_equal(after.signers, 1);
    assert_int_equal(torii_pki_state_ca_der(f->st, "bad", &der, &len), TORII_ENOTFOUND);
    assert_int_equal(torii_pki_state_crl(f->st, "leaf", &der, &len), TORII_ENOTFOUND);
}

static void test_pki_state_staple_and_jwks(void **state)
{
    struct fx *f = *state;
    unsigned char *der = NULL;
    char *jwks = NULL;
    size_t len = 0;
    json_t *doc;

    assert_int_equal(torii_pki_state_staple(f->st, "leaf", &der, &len), TORII_ENOTFOUND);
    torii_pki_state_refresh(f->st, torii_clock_now_ms());
    assert_int_equal(torii_pki_state_staple(f->st, "leaf", &der, &len), TORII_OK);
    assert_true(len > 0);
    free(der);
    json_object_set_new(f->leaf, "exposed", json_true());
    feed(f->st, TORII_STORE_REPLACE, f->leaf);
    assert_int_equal(torii_pki_state_jwks(f->st, &jwks, &len), TORII_OK);
    doc = json_loads(jwks, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 2 * 1); /* id, key kid */
    json_decref(doc);
    free(jwks);
}

/* ---- at scale: load order, bulk load, batches, copies ---- */

static json_t *issue_leaf(const json_t *ca, const char *id)
{
    struct torii_pki_opts po = {.now_ms = torii_clock_now_ms(), .id = id};
    char host[96];
    json_t *q;
    json_t *e = NULL;

    (void)snprintf(host, sizeof(host), "%s.example.test", id);
    q = json_pack("{s:[s]}", "hosts", host);
    assert_int_equal(torii_pki_cert_issue(ca, q, &po, &e, NULL), TORII_OK);
    json_decref(q);
    return e;
}

static json_t *make_ca(const char *id)
{
    struct torii_pki_opts po = {.now_ms = torii_clock_now_ms(), .id = id};
    json_t *q = json_pack("{s:s}", "subject", "CN=unit scale CA");
    json_t *e = NULL;

    assert_int_equal(torii_pki_ca_create(q, &po, &e, NULL), TORII_OK);
    json_decref(q);
    return e;
}

/* First-load path: no publish. */
static void load(struct torii_pki_state *st, const json_t *e)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    char *text = json_dumps(e, JSON_COMPACT);
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    struct torii_store_rec rec;

    assert_int_equal(torii_certrec_build(e, &aux, &aux_len, NULL), TORII_OK);
    rec = (struct torii_store_rec){id, strlen(id), text, strlen(text), aux, aux_len};
    src_put(e, text, aux, aux_len);
    assert_int_equal(torii_pki_state_load_cb(&rec, st), TORII_OK);
    free(text);
    torii_secure_free(aux, aux_len);
}

static void set_revoked(json_t *e, int revoked)
{
    json_t *meta = json_object_get(e, "metadata");

    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(e, "metadata", meta);
    }
    json_object_set_new(e, "revoked", json_boolean(revoked));
    json_object_set_new(meta, "revocationReason", json_string("KEY_COMPROMISE"));
}

static struct torii_pki_state *new_state(void)
{
    struct torii_pki_state_opts o = {.ocsp_cache_s = 60, .serial = src_serial};
    struct torii_pki_state *st = NULL;

    src_reset();
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    return st;
}

static X509_CRL *crl_of(struct torii_pki_state *st, const char *id)
{
    unsigned char *der = NULL;
    size_t len = 0;
    const unsigned char *p;
    X509_CRL *crl;

    assert_int_equal(torii_pki_state_crl(st, id, &der, &len), TORII_OK);
    p = der;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    assert_non_null(crl);
    free(der);
    return crl;
}

static int crl_size(struct torii_pki_state *st, const char *id)
{
    X509_CRL *crl = crl_of(st, id);
    int n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));

    X509_CRL_free(crl);
    return n < 0 ? 0 : n;
}

static int crl_lists(struct torii_pki_state *st, const char *id, const json_t *leaf_e)
{
    X509_CRL *crl = crl_of(st, id);
    X509 *leaf = testpki_entity_leaf(leaf_e);
    X509_REVOKED *rev = NULL;
    int hit = X509_CRL_get0_by_serial(crl, &rev, X509_get0_serialNumber(leaf)) == 1;

    X509_free(leaf);
    X509_CRL_free(crl);
    return hit;
}

static size_t staples_of(struct torii_pki_state *st)
{
    struct torii_pki_state_stat s;

    torii_pki_state_stat_get(st, &s);
    return s.staples;
}

#define N_LEAVES 40

struct many {
    json_t *ca;
    json_t *leaf[N_LEAVES];
};

static void many_make(struct many *m, const char *ca_id, const char *prefix)
{
    m->ca = make_ca(ca_id);
    for (int i = 0; i < N_LEAVES; i++) {
        char id[64];
        (void)snprintf(id, sizeof(id), "%s-%02d", prefix, i);
        m->leaf[i] = issue_leaf(m->ca, id);
    }
}

static void many_clear(struct many *m)
{
    json_decref(m->ca);
    for (int i = 0; i < N_LEAVES; i++) {
        json_decref(m->leaf[i]);
    }
}

/* The store is read in id order, so a CA often comes after what it issued: the serial view
 * and the signer must still come out right, with one publish for the whole first load. */
static void test_pki_state_ca_loaded_after_its_certificates(void **state)
{
    struct torii_pki_state *st = new_state();
    struct torii_pki_state_stat s;
    struct many m;
    int reason = -1;

    (void)state;
    many_make(&m, "zz-ca", "leaf");
    for (int i = 0; i < N_LEAVES; i++) {
        load(st, m.leaf[i]);
    }
    load(st, m.ca);
    torii_pki_state_publish(st);
    torii_pki_state_stat_get(st, &s);
    assert_int_equal(s.certs, N_LEAVES + 1); /* the root's own serial included */
    assert_int_equal(s.cas, 1);
    assert_int_equal(s.signers, 1);
    assert_int_equal(s.publishes, 1);
    for (int i = 0; i < N_LEAVES; i++) {
        assert_int_equal(ocsp_of(st, m.ca, m.leaf[i], 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    }
    /* Without its CA nothing is answered for them; with it back, everything is. */
    del_id(st, "zz-ca");
    torii_pki_state_stat_get(st, &s);
    assert_int_equal(s.certs, 0);
    assert_int_equal(s.signers, 0);
    assert_int_equal(ocsp_of(st, m.ca, m.leaf[3], 0, &reason), -1);
    feed(st, TORII_STORE_PUT, m.ca);
    torii_pki_state_stat_get(st, &s);
    assert_int_equal(s.certs, N_LEAVES + 1);
    assert_int_equal(ocsp_of(st, m.ca, m.leaf[3], 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    torii_pki_state_free(st);
    many_clear(&m);
}

static void test_pki_state_bulk_load_crl_follows_revocations(void **state)
{
    struct torii_pki_state *st = new_state();
    struct many m;
    uint64_t n1;
    int reason = -1;
    X509_CRL *crl;
    ASN1_INTEGER *num;

    (void)state;
    many_make(&m, "ca", "r");
    load(st, m.ca);
    for (int i = 0; i < N_LEAVES; i++) {
        set_revoked(m.leaf[i], i % 3 == 0);
        load(st, m.leaf[i]);
    }
    torii_pki_state_publish(st);
    assert_int_equal(crl_size(st, "ca"), (N_LEAVES + 2) / 3);
    for (int i = 0; i < N_LEAVES; i++) {
        assert_int_equal(crl_lists(st, "ca", m.leaf[i]), i % 3 == 0);
        assert_int_equal(ocsp_of(st, m.ca, m.leaf[i], 0, &reason),
                         i % 3 == 0 ? V_OCSP_CERTSTATUS_REVOKED : V_OCSP_CERTSTATUS_GOOD);
    }
    crl = crl_of(st, "ca");
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_int_equal(ASN1_INTEGER_get_uint64(&n1, num), 1);
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    /* Un-revoke one, delete another revoked one: both leave the CRL, whose number grows. */
    set_revoked(m.leaf[0], 0);
    feed(st, TORII_STORE_REPLACE, m.leaf[0]);
    del_id(st, "r-03");
    assert_int_equal(crl_size(st, "ca"), (N_LEAVES + 2) / 3 - 2);
    assert_false(crl_lists(st, "ca", m.leaf[0]));
    assert_false(crl_lists(st, "ca", m.leaf[3]));
    assert_true(crl_lists(st, "ca", m.leaf[6]));
    assert_int_equal(ocsp_of(st, m.ca, m.leaf[0], 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    assert_int_equal(ocsp_of(st, m.ca, m.leaf[3], 0, &reason), V_OCSP_CERTSTATUS_UNKNOWN);
    crl = crl_of(st, "ca");
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    {
        uint64_t n2 = 0;
        assert_int_equal(ASN1_INTEGER_get_uint64(&n2, num), 1);
        assert_true(n2 > n1);
    }
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    torii_pki_state_free(st);
    many_clear(&m);
}

/* More candidates than one batch; a replaced certificate loses its staple until re-signed. */
static void test_pki_state_staples_in_batches_follow_changes(void **state)
{
    struct torii_pki_state *st = new_state();
    struct many m;
    unsigned char *der = NULL;
    size_t len = 0;

    (void)state;
    many_make(&m, "ca", "s");
    feed(st, TORII_STORE_PUT, m.ca);
    for (int i = 0; i < N_LEAVES; i++) {
        feed(st, TORII_STORE_PUT, m.leaf[i]);
    }
    assert_int_equal(staples_of(st), 0);
    torii_pki_state_refresh(st, torii_clock_now_ms());
    assert_int_equal(staples_of(st), N_LEAVES);
    feed(st, TORII_STORE_REPLACE, m.leaf[5]);
    assert_int_equal(staples_of(st), N_LEAVES - 1);
    assert_int_equal(torii_pki_state_staple(st, "s-05", &der, &len), TORII_ENOTFOUND);
    torii_pki_state_refresh(st, torii_clock_now_ms());
    assert_int_equal(staples_of(st), N_LEAVES);
    assert_int_equal(torii_pki_state_staple(st, "s-05", &der, &len), TORII_OK);
    free(der);
    del_id(st, "s-06");
    assert_int_equal(staples_of(st), N_LEAVES - 1);
    assert_int_equal(torii_pki_state_staple(st, "s-06", &der, &len), TORII_ENOTFOUND);
    /* Revoked: no staple (never served). */
    set_revoked(m.leaf[7], 1);
    feed(st, TORII_STORE_REPLACE, m.leaf[7]);
    torii_pki_state_refresh(st, torii_clock_now_ms());
    assert_int_equal(torii_pki_state_staple(st, "s-07", &der, &len), TORII_ENOTFOUND);
    assert_int_equal(staples_of(st), N_LEAVES - 2);
    torii_pki_state_free(st);
    many_clear(&m);
}

/* The refresher thread signs new certificates' staples when a publish wakes it. */
static void test_pki_state_refresher_thread_staples_new_certificates(void **state)
{
    struct torii_pki_state *st = new_state();
    struct many m;
    int64_t deadline;

    (void)state;
    many_make(&m, "ca", "t");
    assert_int_equal(torii_pki_state_start(st), TORII_OK);
    feed(st, TORII_STORE_PUT, m.ca);
    for (int i = 0; i < N_LEAVES; i++) {
        feed(st, TORII_STORE_PUT, m.leaf[i]);
    }
    deadline = torii_clock_mono_us() + 20 * 1000000LL;
    while (staples_of(st) < N_LEAVES && torii_clock_mono_us() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        (void)nanosleep(&ts, NULL);
    }
    assert_int_equal(staples_of(st), N_LEAVES);
    feed(st, TORII_STORE_REPLACE, m.leaf[9]);
    while (staples_of(st) < N_LEAVES && torii_clock_mono_us() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        (void)nanosleep(&ts, NULL);
    }
    assert_int_equal(staples_of(st), N_LEAVES);
    torii_pki_state_free(st);
    many_clear(&m);
}

/* Two records of one certificate (a copy under another id): revoked if either is. */
static void test_pki_state_copy_of_a_certificate(void **state)
{
    struct fx *f = *state;
    json_t *copy = json_deep_copy(f->leaf);
    struct torii_pki_state_stat s;
    int reason = -1;

    json_object_set_new(copy, "id", json_string("leaf-copy"));
    feed(f->st, TORII_STORE_PUT, copy);
    torii_pki_state_stat_get(f->st, &s);
    assert_int_equal(s.certs, 3);
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    set_revoked(copy, 1);
    feed(f->st, TORII_STORE_REPLACE, copy);
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_REVOKED);
    del_id(f->st, "leaf-copy");
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    torii_pki_state_stat_get(f->st, &s);
    assert_int_equal(s.certs, 2);
    json_decref(copy);
}

/* Replacing a signing CA by itself keeps what it answers for and never lowers its CRL number. */
static void test_pki_state_ca_replaced_keeps_view(void **state)
{
    struct fx *f = *state;
    struct torii_pki_state_stat before;
    struct torii_pki_state_stat after;
    uint64_t n1 = crl_number(f);
    int reason = -1;

    torii_pki_state_stat_get(f->st, &before);
    feed(f->st, TORII_STORE_REPLACE, f->ca);
    torii_pki_state_stat_get(f->st, &after);
    assert_int_equal(after.certs, before.certs);
    assert_int_equal(after.signers, 1);
    assert_true(crl_number(f) > n1);
    assert_int_equal(ocsp_status(f, 0, &reason), V_OCSP_CERTSTATUS_GOOD);
    torii_pki_state_refresh(f->st, torii_clock_now_ms());
    assert_int_equal(staples_of(f->st), 1);
}

static void test_pki_state_jwks_follows_exposed_in_id_order(void **state)
{
    struct fx *f = *state;
    const char *ids[3] = {"j-c", "j-a", "j-b"};
    json_t *e[3];
    char *jwks = NULL;
    size_t len = 0;
    json_t *doc;
    json_t *keys;

    for (int i = 0; i < 3; i++) {
        e[i] = issue_leaf(f->ca, ids[i]);
        json_object_set_new(e[i], "exposed", json_true());
        feed(f->st, TORII_STORE_PUT, e[i]);
    }
    assert_int_equal(torii_pki_state_jwks(f->st, &jwks, &len), TORII_OK);
    doc = json_loads(jwks, 0, NULL);
    keys = json_object_get(doc, "keys");
    assert_int_equal(json_array_size(keys), 2 * 3); /* under the ids, then under the key kids */
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 0), "kid")), "j-a");
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 2), "kid")), "j-c");
    json_decref(doc);
    free(jwks);
    json_object_set_new(e[1], "exposed", json_false());
    feed(f->st, TORII_STORE_REPLACE, e[1]);
    del_id(f->st, "j-b");
    assert_int_equal(torii_pki_state_jwks(f->st, &jwks, &len), TORII_OK);
    doc = json_loads(jwks, 0, NULL);
    keys = json_object_get(doc, "keys");
    assert_int_equal(json_array_size(keys), 2 * 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 0), "kid")), "j-c");
    json_decref(doc);
    free(jwks);
    for (int i = 0; i < 3; i++) {
        json_decref(e[i]);
    }
}

/* Readers (worker threads) use snapshots while the writer changes certificates, CAs and
 * staples: every answer stays well-formed (run under TSan for the ordering). */
struct conc_ctx {
    struct torii_pki_state *st;
    unsigned char *req[4];
    size_t req_len[4];
    atomic_int stop;
    atomic_int bad;
    atomic_long rounds;
};

static void *conc_reader(void *arg)
{
    struct conc_ctx *c = arg;
    unsigned i = 0;

    while (!atomic_load(&c->stop)) {
        unsigned char *body = NULL;
        size_t len = 0;
        char *jwks = NULL;
        const unsigned char *p;
        OCSP_RESPONSE *resp;
        char id[16];

        if (torii_pki_state_ocsp(c->st, c->req[i % 4], c->req_len[i % 4], &body, &len)
            != TORII_OK) {
            atomic_fetch_add(&c->bad, 1);
        } else {
            p = body;
            resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
            if (resp == NULL) {
                atomic_fetch_add(&c->bad, 1);
            }
            OCSP_RESPONSE_free(resp);
            free(body);
        }
        (void)snprintf(id, sizeof(id), "c-%02u", i % N_LEAVES);
        if (torii_pki_state_staple(c->st, id, &body, &len) == TORII_OK) {
            free(body);
        }
        if (torii_pki_state_crl(c->st, "ca", &body, &len) == TORII_OK) {
            free(body);
        }
        if (torii_pki_state_jwks(c->st, &jwks, &len) == TORII_OK) {
            free(jwks);
        }
        atomic_fetch_add(&c->rounds, 1);
        i++;
    }
    return NULL;
}

static void test_pki_state_readers_during_changes(void **state)
{
    struct conc_ctx c;
    struct many m;
    pthread_t th[2];
    X509 *ca_x;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.st = new_state();
    many_make(&m, "ca", "c");
    ca_x = testpki_entity_leaf(m.ca);
    for (int i = 0; i < 4; i++) {
        X509 *leaf = testpki_entity_leaf(m.leaf[i]);
        OCSP_REQUEST *req = OCSP_REQUEST_new();
        unsigned char *der = NULL;
        int n;

        assert_non_null(OCSP_request_add0_id(req, OCSP_cert_to_id(NULL, leaf, ca_x)));
        n = i2d_OCSP_REQUEST(req, &der);
        assert_true(n > 0);
        c.req[i] = torii_xmalloc((size_t)n);
        memcpy(c.req[i], der, (size_t)n);
        c.req_len[i] = (size_t)n;
        OPENSSL_free(der);
        OCSP_REQUEST_free(req);
        X509_free(leaf);
    }
    X509_free(ca_x);
    assert_int_equal(torii_pki_state_start(c.st), TORII_OK);
    feed(c.st, TORII_STORE_PUT, m.ca);
    for (int i = 0; i < N_LEAVES; i++) {
        feed(c.st, TORII_STORE_PUT, m.leaf[i]);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, conc_reader, &c), 0);
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N_LEAVES; i++) {
            set_revoked(m.leaf[i], (i + round) % 4 == 0);
            json_object_set_new(m.leaf[i], "exposed", json_boolean((i + round) % 5 == 0));
            feed(c.st, TORII_STORE_REPLACE, m.leaf[i]);
        }
        del_id(c.st, "ca");
        torii_pki_state_refresh(c.st, torii_clock_now_ms());
        feed(c.st, TORII_STORE_PUT, m.ca);
        torii_pki_state_refresh(c.st, torii_clock_now_ms());
    }
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_true(atomic_load(&c.rounds) > 0);
    torii_pki_state_free(c.st);
    for (int i = 0; i < 4; i++) {
        free(c.req[i]);
    }
    many_clear(&m);
}

/* ---- CRLs shared by a fleet (pkistate.h: torii_pki_state_crl_share / _adopt) ---- */

static struct {
    pthread_mutex_t lock;
    atomic_int signer;
    int calls;
    uint64_t number;
    unsigned char *der;
    size_t len;
} g_share = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int share_signer(void *ctx)
{
    (void)ctx;
    return atomic_load(&g_share.signer);
}

static int share_publish(void *ctx, const char *ca_id, uint64_t number, const unsigned char *der,
                         size_t len, struct torii_errbuf *eb)
{
    (void)ctx;
    (void)eb;
    assert_string_equal(ca_id, "ca");
    (void)pthread_mutex_lock(&g_share.lock);
    g_share.calls++;
    g_share.number = number;
    free(g_share.der);
    g_share.der = torii_xmalloc(len);
    memcpy(g_share.der, der, len);
    g_share.len = len;
    (void)pthread_mutex_unlock(&g_share.lock);
    return TORII_OK;
}

/* 1 when the state serves exactly der[0..len) as the CRL of "ca". */
static int serves_crl(struct torii_pki_state *st, const unsigned char *der, size_t len)
{
    unsigned char *got = NULL;
    size_t n = 0;
    int same = torii_pki_state_crl(st, "ca", &got, &n) == TORII_OK && n == len
               && memcmp(got, der, len) == 0;

    free(got);
    return same;
}

/* A node that does not sign serves only what it adopted (checked, numbers only going up); the
 * signer's refresher hands the CRLs it signs to publish() and serves them once stored. */
static void test_pki_state_shared_crls(void **state)
{
    struct fx *f = *state;
    struct torii_pki_crl_share sh = {share_signer, share_publish, NULL};
    struct torii_errbuf eb = {{0}};
    int64_t now = torii_clock_now_ms();
    unsigned char *d5 = NULL, *d4 = NULL, *other = NULL;
    size_t l5 = 0, l4 = 0, lo = 0;
    json_t *ca2 = make_ca("ca2");
    unsigned char *none = NULL;
    size_t none_len = 0;
    uint64_t n = 0;
    int published = 0;

    atomic_store(&g_share.signer, 0);
    assert_int_equal(torii_pki_crl_build(f->ca, NULL, NULL, 0, 5, now, 60, &d5, &l5, &eb),
                     TORII_OK);
    assert_int_equal(torii_pki_crl_build(f->ca, NULL, NULL, 0, 4, now, 60, &d4, &l4, &eb),
                     TORII_OK);
    assert_int_equal(torii_pki_crl_build(ca2, NULL, NULL, 0, 9, now, 60, &other, &lo, &eb),
                     TORII_OK);
    assert_true(crl_number(f) > 0); /* alone: its own CRL */
    torii_pki_state_crl_share(f->st, &sh);
    assert_int_equal(torii_pki_state_crl(f->st, "ca", &none, &none_len), TORII_ENOTFOUND);
    assert_int_equal(torii_pki_state_crl_adopt(f->st, "ca", d5, l5, &n, &eb), TORII_OK);
    assert_true(n == 5 && serves_crl(f->st, d5, l5));
    assert_int_equal(torii_pki_state_crl_adopt(f->st, "ca", d5, l5, &n, &eb), TORII_EEXIST);
    assert_int_equal(torii_pki_state_crl_adopt(f->st, "ca", d4, l4, &n, &eb), TORII_EEXIST);
    assert_int_equal(torii_pki_state_crl_adopt(f->st, "ca", other, lo, &n, &eb), TORII_EINVAL);
    assert_int_equal(torii_pki_state_crl_adopt(f->st, "nope", d5, l5, &n, &eb), TORII_ENOTFOUND);
    set_revoked(f->leaf, 1); /* not the signer: the fleet's CRL stays served */
    feed(f->st, TORII_STORE_REPLACE, f->leaf);
    assert_true(serves_crl(f->st, d5, l5));
    atomic_store(&g_share.signer, 1); /* the signer: its refresher signs and publishes */
    assert_int_equal(torii_pki_state_start(f->st), TORII_OK);
    for (int i = 0; i < 3000 && !published; i++) { /* bounded: 30 s */
        const struct timespec step = {0, 10L * 1000 * 1000};
        (void)nanosleep(&step, NULL);
        (void)pthread_mutex_lock(&g_share.lock);
        published = g_share.calls > 0 && serves_crl(f->st, g_share.der, g_share.len);
        (void)pthread_mutex_unlock(&g_share.lock);
    }
    assert_true(published); /* served once stored */
    assert_true(g_share.number > 5);
    assert_true(crl_lists(f->st, "ca", f->leaf));
    torii_pki_state_crl_share(f->st, NULL);
    free(g_share.der);
    g_share.der = NULL;
    g_share.calls = 0;
    free(d5);
    free(d4);
    free(other);
    json_decref(ca2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pki_state_ocsp_good_revoked_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_malformed_ocsp_gets_malformed_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_corrupt_record_is_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_staple_and_jwks, setup, teardown),
        cmocka_unit_test(test_pki_state_ca_loaded_after_its_certificates),
        cmocka_unit_test(test_pki_state_bulk_load_crl_follows_revocations),
        cmocka_unit_test(test_pki_state_staples_in_batches_follow_changes),
        cmocka_unit_test(test_pki_state_refresher_thread_staples_new_certificates),
        cmocka_unit_test_setup_teardown(test_pki_state_copy_of_a_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_ca_replaced_keeps_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_jwks_follows_exposed_in_id_order, setup,
                                        teardown),
        cmocka_unit_test(test_pki_state_readers_during_changes),
        cmocka_unit_test_setup_teardown(test_pki_state_shared_crls, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    src_reset();
    return failed;
}
