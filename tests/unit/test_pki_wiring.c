/* test_pki_wiring.c - the served PKI state (pkistate.h) fed like the store change feed:
 * OCSP status at request time (good, revoked, unknown), CRL regeneration with increasing
 * numbers, JWKS rebuild, staples, and bad input (malformed OCSP, corrupt records). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

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

static int setup(void **state)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct torii_pki_state_opts o = {.ocsp_cache_s = 60};
    struct torii_pki_opts po = {.now_ms = torii_clock_now_ms(), .id = "ca"};
    json_t *q = json_pack("{s:s}", "subject", "CN=unit CA");
    json_t *lq = json_pack("{s:[s]}", "hosts", "unit.example.test");

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
    json_decref(f->ca);
    json_decref(f->leaf);
    free(f);
    return 0;
}

static X509 *leaf_of(const json_t *e)
{
    const char *pem = json_string_value(json_object_get(e, "chain"));
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    return x;
}

/* Ask the state about `serial` of the leaf's issuer; returns V_OCSP_CERTSTATUS_* or -1. */
static int ocsp_status(struct fx *f, long serial_override, int *reason)
{
    X509 *ca = leaf_of(f->ca);
    X509 *leaf = leaf_of(f->leaf);
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
    assert_int_equal(torii_pki_state_ocsp(f->st, der, (size_t)n, &body, &len), TORII_OK);
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
    torii_pki_state_watch_cb(TORII_STORE_DELETE, TORII_STORE_CERTS,
                             &(struct torii_store_rec){"leaf", 4, NULL, 0, NULL, 0}, f->st);
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
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 1);
    json_decref(doc);
    free(jwks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pki_state_ocsp_good_revoked_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_malformed_ocsp_gets_malformed_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_corrupt_record_is_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_state_staple_and_jwks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
