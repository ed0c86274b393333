/* test_pki_ocsp.c - unit tests for the OCSP responder core (RFC 6960) and CRLs (RFC 5280):
 * responses are checked with OCSP_basic_verify / OCSP_resp_find_status, CRLs with
 * X509_CRL_verify, against a root -> intermediate -> leaves PKI issued by the pki module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "testpki.h"
#include "torii/clock.h"
#include "torii/pki.h"

#define REVOKED_AT_MS 1700000000000LL

struct fixture {
    json_t *root;
    json_t *inter;
    json_t *good;    /* issued by inter */
    json_t *revoked; /* issued by inter, revoked (KEY_COMPROMISE) */
    json_t *other;   /* self-signed CA not known to the lookup */
    json_t *other_leaf;
};

static struct fixture *fx;

/* The store the lead will have: entities by serial and CAs by id. */
struct lookup {
    int fail;
    int calls;
    int return_wrong_issuer;
};

static const json_t *by_id(const char *id)
{
    const json_t *all[] = {fx->root, fx->inter, fx->good, fx->revoked};
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(json_string_value(json_object_get(all[i], "id")), id) == 0) {
            return all[i];
        }
    }
    return NULL;
}

static int lookup_cb(void *ctx, const struct torii_pki_certid *id,
                     struct torii_pki_ocsp_answer *ans)
{
    struct lookup *l = ctx;
    const json_t *all[] = {fx->good, fx->revoked, fx->inter};
    const json_t *cas[] = {fx->root, fx->inter};
    size_t i;

    l->calls++;
    if (l->fail) {
        return TORII_ESTORE;
    }
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        char serial[TORII_PKI_SERIAL_HEX_MAX];
        assert_int_equal(torii_pki_cert_serial_hex(all[i], serial, sizeof(serial), NULL), TORII_OK);
        if (strcmp(serial, id->serial_hex) == 0) {
            const char *ca = json_string_value(json_object_get(all[i], "caRef"));
            torii_pki_ocsp_answer_from_entity(all[i], torii_clock_now_ms(), ans);
            ans->issuer_owned =
                json_incref((json_t *)(uintptr_t)(l->return_wrong_issuer ? fx->root : by_id(ca)));
            return TORII_OK;
        }
    }
    /* Unknown serial: answer for the CA the hashes name, if we have it. */
    for (i = 0; i < sizeof(cas) / sizeof(cas[0]); i++) {
        if (torii_pki_certid_matches(id, cas[i])) {
            ans->status = TORII_PKI_OCSP_UNKNOWN;
            ans->issuer_owned = json_incref((json_t *)(uintptr_t)cas[i]);
            return TORII_OK;
        }
    }
    return TORII_OK;
}

static X509 *leaf_of(const json_t *e)
{
    X509 *x = testpki_entity_leaf(e);

    assert_non_null(x);
    return x;
}

static int group_setup(void **state)
{
    struct torii_pki_opts o;
    struct torii_errbuf eb = {{0}};
    json_t *q = json_pack("{s:s}", "subject", "CN=OCSP Root");
    json_t *meta;
    int rc;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.now_ms = torii_clock_now_ms();
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return 1;
    }
    o.id = "root";
    rc = torii_pki_ca_create(q, &o, &fx->root, &eb);
    o.id = "inter";
    json_decref(q);
    q = json_pack("{s:s}", "subject", "CN=OCSP Intermediate");
    rc = rc != TORII_OK ? rc : torii_pki_subca_create(fx->root, q, &o, &fx->inter, &eb);
    json_decref(q);
    q = json_pack("{s:[s]}", "hosts", "good.example");
    o.id = "good";
    rc = rc != TORII_OK ? rc : torii_pki_cert_issue(fx->inter, q, &o, &fx->good, &eb);
    o.id = "revoked";
    rc = rc != TORII_OK ? rc : torii_pki_cert_issue(fx->inter, q, &o, &fx->revoked, &eb);
    o.id = "other";
    rc = rc != TORII_OK ? rc : torii_pki_ca_create(q, &o, &fx->other, &eb);
    o.id = "other-leaf";
    rc = rc != TORII_OK ? rc : torii_pki_cert_issue(fx->other, q, &o, &fx->other_leaf, &eb);
    json_decref(q);
    if (rc != TORII_OK) {
        fprintf(stderr, "setup: %s\n", eb.msg);
        return 1;
    }
    meta = json_object_get(fx->revoked, "metadata");
    if (json_object_set_new(fx->revoked, "revoked", json_true()) != 0
        || json_object_set_new(meta, "revocationReason", json_string("KEY_COMPROMISE")) != 0
        || json_object_set_new(meta, "revokedAt", json_sprintf("%lld", REVOKED_AT_MS)) != 0) {
        return 1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (fx != NULL) {
        json_decref(fx->root);
        json_decref(fx->inter);
        json_decref(fx->good);
        json_decref(fx->revoked);
        json_decref(fx->other);
        json_decref(fx->other_leaf);
        free(fx);
        fx = NULL;
    }
    return 0;
}

/* CertID as a client holding the issuer certificate builds it: the issuer's name and key
 * hashes plus the subject's serial (which the issuer may not know). */
static OCSP_CERTID *certid(const EVP_MD *md, X509 *s, X509 *is)
{
    OCSP_CERTID *id = OCSP_cert_id_new(md != NULL ? md : EVP_sha1(), X509_get_subject_name(is),
                                       X509_get0_pubkey_bitstr(is), X509_get0_serialNumber(s));

    assert_non_null(id);
    return id;
}

/* DER request for subjects[i] issued by issuer, with a nonce. *req keeps the structure. */
static unsigned char *make_req(const json_t *const *subjects, size_t n, const json_t *issuer,
                               const EVP_MD *md, OCSP_REQUEST **req_out, int *len)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    X509 *is = leaf_of(issuer);
    unsigned char *der = NULL;
    size_t i;

    for (i = 0; i < n; i++) {
        X509 *s = leaf_of(subjects[i]);
        OCSP_CERTID *id = certid(md, s, is);
        assert_non_null(OCSP_request_add0_id(req, id));
        X509_free(s);
    }
    assert_int_equal(OCSP_request_add1_nonce(req, NULL, -1), 1);
    *len = i2d_OCSP_REQUEST(req, &der);
    assert_true(*len > 0);
    X509_free(is);
    *req_out = req;
    return der;
}

static OCSP_RESPONSE *respond(const unsigned char *der, size_t len, struct lookup *l,
                              int expect_status)
{
    struct torii_errbuf eb = {{0}};
    unsigned char *out = NULL;
    size_t out_len = 0;
    int status = -1;
    const unsigned char *p;
    OCSP_RESPONSE *resp;

    assert_int_equal(torii_pki_ocsp_respond(der, len, lookup_cb, l, torii_clock_now_ms(), 3600,
                                            &out, &out_len, &status, &eb),
                     TORII_OK);
    assert_int_equal(status, expect_status);
    p = out;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)out_len);
    assert_non_null(resp);
    assert_int_equal(OCSP_response_status(resp), expect_status);
    free(out);
    return resp;
}

/* Verify the signature and the signer's authority (RFC 6960 4.2.2.2) with only the root
 * trusted. */
static OCSP_BASICRESP *verified_basic(OCSP_RESPONSE *resp, OCSP_REQUEST *req)
{
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    X509_STORE *store = X509_STORE_new();
    X509 *root = leaf_of(fx->root);
    const ASN1_OCTET_STRING *kid = NULL;
    const X509_NAME *name = NULL;

    assert_non_null(bs);
    assert_true(X509_STORE_add_cert(store, root) == 1);
    if (OCSP_basic_verify(bs, NULL, store, 0) != 1) {
        ERR_print_errors_fp(stderr);
        fail_msg("OCSP_basic_verify failed");
    }
    assert_int_equal(OCSP_check_nonce(req, bs), 1);
    assert_int_equal(OCSP_resp_get0_id(bs, &kid, &name), 1);
    assert_non_null(kid); /* ResponderID byKey */
    assert_null(name);
    X509_free(root);
    X509_STORE_free(store);
    return bs;
}

static void find_status(OCSP_BASICRESP *bs, const json_t *subject, const json_t *issuer,
                        const EVP_MD *md, int expect, int *reason, int64_t *rev_ms)
{
    X509 *s = leaf_of(subject);
    X509 *is = leaf_of(issuer);
    OCSP_CERTID *id = certid(md, s, is);
    ASN1_GENERALIZEDTIME *rev = NULL;
    ASN1_GENERALIZEDTIME *thisupd = NULL;
    ASN1_GENERALIZEDTIME *nextupd = NULL;
    int status = -1;

    assert_int_equal(OCSP_resp_find_status(bs, id, &status, reason, &rev, &thisupd, &nextupd), 1);
    assert_int_equal(status, expect);
    assert_non_null(thisupd);
    assert_non_null(nextupd);
    assert_int_equal(OCSP_check_validity(thisupd, nextupd, 300, -1), 1);
    if (rev_ms != NULL && rev != NULL) {
        struct tm tm;
        assert_int_equal(ASN1_TIME_to_tm(rev, &tm), 1);
        *rev_ms = (int64_t)timegm(&tm) * 1000;
    }
    OCSP_CERTID_free(id);
    X509_free(is);
    X509_free(s);
}

static void test_ocsp_good_revoked_unknown_in_one_request(void **state)
{
    const json_t *subjects[] = {fx->good, fx->revoked, fx->other_leaf};
    struct lookup l = {0, 0, 0};
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *bs;
    unsigned char *der;
    int len;
    int reason = -2;
    int64_t rev_ms = 0;

    (void)state;
    /* other_leaf's CertID is built against inter's hashes with a serial nobody knows. */
    der = make_req(subjects, 3, fx->inter, NULL, &req, &len);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    assert_int_equal(l.calls, 3);
    bs = verified_basic(resp, req);
    assert_int_equal(OCSP_resp_count(bs), 3);
    find_status(bs, fx->good, fx->inter, NULL, V_OCSP_CERTSTATUS_GOOD, NULL, NULL);
    find_status(bs, fx->revoked, fx->inter, NULL, V_OCSP_CERTSTATUS_REVOKED, &reason, &rev_ms);
    assert_int_equal(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    assert_int_equal(rev_ms, REVOKED_AT_MS);
    find_status(bs, fx->other_leaf, fx->inter, NULL, V_OCSP_CERTSTATUS_UNKNOWN, NULL, NULL);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

static void test_ocsp_sha256_certid_and_intermediate_itself(void **state)
{
    const json_t *subjects[] = {fx->inter};
    struct lookup l = {0, 0, 0};
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *bs;
    unsigned char *der;
    int len;

    (void)state;
    /* The intermediate's own status, answered by the root that issued it. */
    der = make_req(subjects, 1, fx->root, EVP_sha256(), &req, &len);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    bs = verified_basic(resp, req);
    find_status(bs, fx->inter, fx->root, EVP_sha256(), V_OCSP_CERTSTATUS_GOOD, NULL, NULL);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

static void test_ocsp_response_signature_fails_with_wrong_trust(void **state)
{
    const json_t *subjects[] = {fx->good};
    struct lookup l = {0, 0, 0};
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp;
    OCSP_BASICRESP *bs;
    X509_STORE *store = X509_STORE_new();
    X509 *other = leaf_of(fx->other);
    unsigned char *der;
    int len;

    (void)state;
    der = make_req(subjects, 1, fx->inter, NULL, &req, &len);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    bs = OCSP_response_get1_basic(resp);
    assert_true(X509_STORE_add_cert(store, other) == 1);
    assert_true(OCSP_basic_verify(bs, NULL, store, 0) <= 0);
    ERR_clear_error();
    X509_free(other);
    X509_STORE_free(store);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

static void test_ocsp_malformed_requests(void **state)
{
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01};
    const json_t *subjects[] = {fx->good};
    struct lookup l = {0, 0, 0};
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp;
    unsigned char *der;
    int len;

    (void)state;
    resp = respond(junk, sizeof(junk), &l, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    assert_null(OCSP_response_get1_basic(resp));
    ERR_clear_error();
    OCSP_RESPONSE_free(resp);
    resp = respond((const unsigned char *)"", 0, &l, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    OCSP_RESPONSE_free(resp);
    der = make_req(subjects, 1, fx->inter, NULL, &req, &len);
    resp = respond(der, (size_t)len - 3, &l, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
    /* A request with no CertID at all. */
    req = OCSP_REQUEST_new();
    der = NULL;
    len = i2d_OCSP_REQUEST(req, &der);
    assert_true(len > 0);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
    assert_int_equal(l.calls, 0);
}

static void test_ocsp_unauthorized_and_internal_error(void **state)
{
    const json_t *foreign[] = {fx->other_leaf};
    const json_t *good[] = {fx->good};
    struct lookup l = {0, 0, 0};
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp;
    unsigned char *der;
    int len;

    (void)state;
    /* Issued by a CA the store does not hold: nobody may answer. */
    der = make_req(foreign, 1, fx->other, NULL, &req, &len);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
    /* The lookup names a CA whose hashes do not match the CertID (Otoroshi's quirk 6.2). */
    l.return_wrong_issuer = 1;
    der = make_req(good, 1, fx->inter, NULL, &req, &len);
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    OCSP_RESPONSE_free(resp);
    /* The store fails. */
    l.return_wrong_issuer = 0;
    l.fail = 1;
    resp = respond(der, (size_t)len, &l, OCSP_RESPONSE_STATUS_INTERNALERROR);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

static void test_reason_parse(void **state)
{
    enum torii_pki_reason r;

    (void)state;
    assert_int_equal(torii_pki_reason_parse("KEY_COMPROMISE", &r), TORII_OK);
    assert_int_equal(r, TORII_PKI_REASON_KEY_COMPROMISE);
    assert_int_equal(torii_pki_reason_parse("privilege_with_drawn", &r), TORII_OK);
    assert_int_equal(r, TORII_PKI_REASON_PRIVILEGE_WITHDRAWN);
    assert_int_equal(torii_pki_reason_parse(NULL, &r), TORII_OK);
    assert_int_equal(r, TORII_PKI_REASON_UNSPECIFIED);
    assert_int_equal(torii_pki_reason_parse("BECAUSE", &r), TORII_EINVAL);
}

/* ---- CRL ---- */

static void test_crl_signed_by_ca_lists_revoked(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_pki_revoked rev[2];
    unsigned char *der = NULL;
    size_t len = 0;
    const unsigned char *p;
    X509_CRL *crl;
    X509 *inter = leaf_of(fx->inter);
    X509 *root = leaf_of(fx->root);
    X509 *revoked = leaf_of(fx->revoked);
    X509 *good = leaf_of(fx->good);
    X509_REVOKED *entry = NULL;
    ASN1_ENUMERATED *reason;
    ASN1_INTEGER *num;
    int64_t now = torii_clock_now_ms();

    (void)state;
    assert_int_equal(torii_pki_revoked_from_entity(fx->good, &rev[0], &eb), TORII_ENOTFOUND);
    assert_int_equal(torii_pki_revoked_from_entity(fx->revoked, &rev[0], &eb), TORII_OK);
    assert_int_equal(rev[0].reason, TORII_PKI_REASON_KEY_COMPROMISE);
    assert_int_equal(rev[0].revoked_at_ms, REVOKED_AT_MS);
    (void)snprintf(rev[1].serial_hex, sizeof(rev[1].serial_hex), "0abc");
    rev[1].revoked_at_ms = REVOKED_AT_MS;
    rev[1].reason = TORII_PKI_REASON_UNSPECIFIED;
    assert_int_equal(torii_pki_crl_build(fx->inter, NULL, rev, 2, 42, now, 86400, &der, &len, &eb),
                     TORII_OK);
    p = der;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    assert_non_null(crl);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(inter)), 1);
    assert_true(X509_CRL_verify(crl, X509_get0_pubkey(root)) <= 0); /* not the root's */
    ERR_clear_error();
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(inter)), 0);
    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_non_null(X509_CRL_get0_nextUpdate(crl));
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
    assert_int_equal(X509_CRL_get0_by_cert(crl, &entry, revoked), 1);
    reason = X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, NULL, NULL);
    assert_non_null(reason);
    assert_int_equal(ASN1_ENUMERATED_get(reason), 1);
    ASN1_ENUMERATED_free(reason);
    assert_int_equal(X509_CRL_get0_by_cert(crl, &entry, good), 0);
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(num);
    assert_int_equal(ASN1_INTEGER_get(num), 42);
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    free(der);
    der = NULL;
    /* Empty CRL is fine; bad serial, bad nextUpdate, a CA without key are not. */
    assert_int_equal(torii_pki_crl_build(fx->inter, NULL, NULL, 0, 1, now, 60, &der, &len, &eb),
                     TORII_OK);
    free(der);
    der = NULL;
    (void)snprintf(rev[1].serial_hex, sizeof(rev[1].serial_hex), "xyz");
    assert_int_equal(torii_pki_crl_build(fx->inter, NULL, rev, 2, 1, now, 60, &der, &len, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_pki_crl_build(fx->inter, NULL, rev, 1, 1, now, 0, &der, &len, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_pki_crl_build(fx->good, NULL, rev, 1, 1, now, 60, &der, &len, &eb),
                     TORII_EINVAL);
    assert_null(der);
    X509_free(good);
    X509_free(revoked);
    X509_free(root);
    X509_free(inter);
}

/* DER of the leaf of entity e. */
static size_t leaf_der(const json_t *e, unsigned char **out)
{
    X509 *x = leaf_of(e);
    int n = i2d_X509(x, out);

    X509_free(x);
    assert_true(n > 0);
    return (size_t)n;
}

/* A CRL received from elsewhere (a fleet's signer) is checked against the CA certificate: its
 * number comes out; another CA's, an altered one, or bytes that are not a CRL are refused. */
static void test_crl_check_number_issuer_signature(void **state)
{
    struct torii_errbuf eb = {{0}};
    unsigned char *der = NULL;
    unsigned char *inter = NULL;
    unsigned char *root = NULL;
    size_t len = 0;
    size_t inter_len = leaf_der(fx->inter, &inter);
    size_t root_len = leaf_der(fx->root, &root);
    uint64_t n = 0;

    (void)state;
    assert_int_equal(torii_pki_crl_build(fx->inter, NULL, NULL, 0, 1796581702781ULL,
                                         torii_clock_now_ms(), 60, &der, &len, &eb),
                     TORII_OK);
    assert_int_equal(torii_pki_crl_check(inter, inter_len, der, len, &n, &eb), TORII_OK);
    assert_true(n == 1796581702781ULL);
    assert_int_equal(torii_pki_crl_check(root, root_len, der, len, &n, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "issued by this CA"));
    der[len - 1] ^= 0x01; /* the signature's last byte */
    assert_int_equal(torii_pki_crl_check(inter, inter_len, der, len, &n, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "signature"));
    assert_int_equal(torii_pki_crl_check(inter, inter_len, der, len - 1, &n, &eb), TORII_EINVAL);
    assert_int_equal(torii_pki_crl_check(inter, inter_len, inter, inter_len, &n, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_pki_crl_check(der, len, inter, inter_len, &n, &eb), TORII_EINVAL);
    free(der);
    OPENSSL_free(inter);
    OPENSSL_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ocsp_good_revoked_unknown_in_one_request),
        cmocka_unit_test(test_ocsp_sha256_certid_and_intermediate_itself),
        cmocka_unit_test(test_ocsp_response_signature_fails_with_wrong_trust),
        cmocka_unit_test(test_ocsp_malformed_requests),
        cmocka_unit_test(test_ocsp_unauthorized_and_internal_error),
        cmocka_unit_test(test_reason_parse),
        cmocka_unit_test(test_crl_signed_by_ca_lists_revoked),
        cmocka_unit_test(test_crl_check_number_issuer_signature),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
