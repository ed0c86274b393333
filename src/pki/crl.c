/* crl.c - revocation data: reason names (reference 1.6), the revoked entry of an entity,
 * and DER CRLs signed by a CA entity (RFC 5280 section 5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

static const struct {
    const char *name;
    enum torii_pki_reason code;
} crl_reasons[] = {
    {"UNSPECIFIED", TORII_PKI_REASON_UNSPECIFIED},
    {"KEY_COMPROMISE", TORII_PKI_REASON_KEY_COMPROMISE},
    {"CA_COMPROMISE", TORII_PKI_REASON_CA_COMPROMISE},
    {"AFFILIATION_CHANGED", TORII_PKI_REASON_AFFILIATION_CHANGED},
    {"SUPERSEDED", TORII_PKI_REASON_SUPERSEDED},
    {"CESSATION_OF_OPERATION", TORII_PKI_REASON_CESSATION_OF_OPERATION},
    {"CERTIFICATE_HOLD", TORII_PKI_REASON_CERTIFICATE_HOLD},
    {"REMOVE_FROM_CRL", TORII_PKI_REASON_REMOVE_FROM_CRL},
    {"PRIVILEGE_WITH_DRAWN", TORII_PKI_REASON_PRIVILEGE_WITHDRAWN}, /* Otoroshi's spelling */
    {"PRIVILEGE_WITHDRAWN", TORII_PKI_REASON_PRIVILEGE_WITHDRAWN},
    {"AA_COMPROMISE", TORII_PKI_REASON_AA_COMPROMISE},
    {"VALID", TORII_PKI_REASON_UNSPECIFIED}, /* the UI's "not revoked" */
};

int torii_pki_reason_parse(const char *name, enum torii_pki_reason *out)
{
    size_t i;

    if (name == NULL || name[0] == '\0') {
        *out = TORII_PKI_REASON_UNSPECIFIED;
        return TORII_OK;
    }
    for (i = 0; i < sizeof(crl_reasons) / sizeof(crl_reasons[0]); i++) {
        if (strcasecmp(crl_reasons[i].name, name) == 0) {
            *out = crl_reasons[i].code;
            return TORII_OK;
        }
    }
    return TORII_EINVAL;
}

int torii_pki_revoked_from_entity(const json_t *entity, struct torii_pki_revoked *out,
                                  struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    struct torii_pki_revoked r;
    const json_t *meta = json_object_get(entity, "metadata");
    const char *at = json_string_value(json_object_get(meta, "revokedAt"));
    X509 *leaf;

    memset(&r, 0, sizeof(r));
    TORII_ENSURE(json_is_true(json_object_get(entity, "revoked")), TORII_ENOTFOUND);
    TORII_TRY(
        torii_pki__chain_parse(json_string_value(json_object_get(entity, "chain")), &chain, eb));
    leaf = sk_X509_value(chain, 0);
    TORII_ENSURE(
        torii_pki__serial_hex(X509_get0_serialNumber(leaf), r.serial_hex, sizeof(r.serial_hex))
            == TORII_OK,
        torii_errf(eb, TORII_EINVAL, "revoked: serial does not print"));
    if (torii_pki_reason_parse(json_string_value(json_object_get(meta, "revocationReason")),
                               &r.reason)
        != TORII_OK) {
        r.reason = TORII_PKI_REASON_UNSPECIFIED;
    }
    r.revoked_at_ms = -1;
    if (at != NULL && at[0] != '\0') {
        char *end = NULL;
        long long v = strtoll(at, &end, 10);
        if (end != NULL && *end == '\0' && v >= 0) {
            r.revoked_at_ms = (int64_t)v;
        }
    }
    if (r.revoked_at_ms < 0) {
        TORII_ENSURE(torii_pki__time_ms(X509_get0_notBefore(leaf), &r.revoked_at_ms) == TORII_OK,
                     torii_errf(eb, TORII_EINVAL, "revoked: notBefore does not convert"));
    }
    *out = r;
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* Lower- or upper-case hex, optional leading '-' refused (serials are positive). */
static int crl_serial(const char *hex, ASN1_INTEGER **out)
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    size_t n = hex != NULL ? strlen(hex) : 0;

    if (n == 0 || n >= TORII_PKI_SERIAL_HEX_MAX || strspn(hex, "0123456789abcdefABCDEF") != n) {
        return TORII_EINVAL;
    }
    if (BN_hex2bn(&bn, hex) != (int)n) {
        BN_free(bn);
        return TORII_EINVAL;
    }
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (ai == NULL) {
        return TORII_ENOMEM;
    }
    *out = ai;
    return TORII_OK;
}

static int crl_add_reason(X509_REVOKED *rev, long code)
{
    ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
    int rc = TORII_OK;

    if (reason == NULL || ASN1_ENUMERATED_set(reason, code) != 1
        || X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) != 1) {
        rc = TORII_ENOMEM;
    }
    ASN1_ENUMERATED_free(reason);
    return rc;
}

/* serialNumber and revocationDate of rev from r. */
static int crl_revoked_fields(X509_REVOKED *rev, const struct torii_pki_revoked *r,
                              struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *t = NULL;

    TORII_ENSURE(crl_serial(r->serial_hex, &serial) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "crl: bad serial '%.40s'", r->serial_hex));
    TORII_ENSURE(r->revoked_at_ms >= 0, torii_errf(eb, TORII_EINVAL, "crl: bad revocation time"));
    t = ASN1_TIME_set(NULL, (time_t)(r->revoked_at_ms / 1000));
    TORII_ENSURE(t != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_REVOKED_set_serialNumber(rev, serial) == 1
                     && X509_REVOKED_set_revocationDate(rev, t) == 1,
                 TORII_ENOMEM);
out:
    ASN1_TIME_free(t);
    ASN1_INTEGER_free(serial);
    return rc;
}

static int crl_add(X509_CRL *crl, const struct torii_pki_revoked *r, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509_REVOKED *rev = X509_REVOKED_new();

    TORII_ENSURE(rev != NULL, TORII_ENOMEM);
    TORII_TRY(crl_revoked_fields(rev, r, eb));
    /* RFC 5280 5.3.1: reasonCode SHOULD be absent rather than unspecified (0). */
    if (r->reason > TORII_PKI_REASON_UNSPECIFIED) {
        TORII_TRY(crl_add_reason(rev, (long)r->reason));
    }
    TORII_ENSURE(X509_CRL_add0_revoked(crl, rev) == 1, TORII_ENOMEM);
    rev = NULL;
out:
    X509_REVOKED_free(rev);
    return rc;
}

static int crl_add_all(X509_CRL *crl, const struct torii_pki_revoked *revoked, size_t n,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (size_t i = 0; i < n && rc == TORII_OK; i++) {
        rc = crl_add(crl, &revoked[i], eb);
    }
    return rc;
}

/* Version 2, the issuer's name, thisUpdate = now and nextUpdate next_update_s later. */
static int crl_header(X509_CRL *crl, X509 *issuer, int64_t now_ms, int64_t next_update_s)
{
    ASN1_TIME *last = ASN1_TIME_set(NULL, (time_t)(now_ms / 1000));
    ASN1_TIME *next = ASN1_TIME_set(NULL, (time_t)(now_ms / 1000 + next_update_s));
    int rc = TORII_OK;

    if (last == NULL || next == NULL || X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1
        || X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) != 1
        || X509_CRL_set1_lastUpdate(crl, last) != 1 || X509_CRL_set1_nextUpdate(crl, next) != 1) {
        rc = TORII_ENOMEM;
    }
    ASN1_TIME_free(next);
    ASN1_TIME_free(last);
    return rc;
}

/* cRLNumber and authorityKeyIdentifier (of the CA certificate). */
static int crl_extensions(X509_CRL *crl, X509 *issuer, uint64_t crl_number, struct torii_errbuf *eb)
{
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    int rc = TORII_OK;

    TORII_ENSURE(num != NULL && ASN1_INTEGER_set_uint64(num, crl_number) == 1
                     && X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1,
                 TORII_ENOMEM);
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
    aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    TORII_ENSURE(aki != NULL, torii_errbuf_ossl(eb, "crl: authorityKeyIdentifier"));
    TORII_ENSURE(X509_CRL_add_ext(crl, aki, -1) == 1, TORII_ENOMEM);
out:
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    return rc;
}

/* DER of crl into *der (malloc'd). */
static int crl_encode(X509_CRL *crl, unsigned char **der, size_t *der_len)
{
    unsigned char *buf = NULL;
    int len = i2d_X509_CRL(crl, &buf);

    if (len <= 0) {
        OPENSSL_free(buf);
        return TORII_ENOMEM;
    }
    *der = torii_xmalloc((size_t)len);
    memcpy(*der, buf, (size_t)len);
    *der_len = (size_t)len;
    OPENSSL_free(buf);
    return TORII_OK;
}

/* The extensions, then sorted by serial and signed by the CA. */
static int crl_finish(X509_CRL *crl, const struct torii_pki__ca *ca, uint64_t crl_number,
                      struct torii_errbuf *eb)
{
    int rc = crl_extensions(crl, ca->cert, crl_number, eb);

    if (rc != TORII_OK) {
        return rc;
    }
    if (X509_CRL_sort(crl) != 1) {
        return TORII_ENOMEM;
    }
    if (X509_CRL_sign(crl, ca->key, torii_pki__default_md(ca->key)) <= 0) {
        return torii_errbuf_ossl(eb, "crl: sign");
    }
    return TORII_OK;
}

static int crl_check_args(const struct torii_pki_revoked *revoked, size_t n_revoked, int64_t now_ms,
                          int64_t next_update_s, struct torii_errbuf *eb)
{
    if (next_update_s <= 0 || next_update_s > 366LL * 86400) {
        return torii_errf(eb, TORII_EINVAL, "crl: nextUpdate must be 1 s to 1 year ahead");
    }
    if (now_ms < 0 || (n_revoked > 0 && revoked == NULL)) {
        return torii_errf(eb, TORII_EINVAL, "crl: bad arguments");
    }
    return TORII_OK;
}

int torii_pki_crl_build(const json_t *ca_entity, const struct torii_kek_ring *kek,
                        const struct torii_pki_revoked *revoked, size_t n_revoked,
                        uint64_t crl_number, int64_t now_ms, int64_t next_update_s,
                        unsigned char **der, size_t *der_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__ca ca;
    X509_CRL *crl = NULL;

    memset(&ca, 0, sizeof(ca));
    TORII_TRY(crl_check_args(revoked, n_revoked, now_ms, next_update_s, eb));
    TORII_TRY(torii_pki__ca_load(ca_entity, kek, &ca, eb));
    crl = X509_CRL_new();
    TORII_ENSURE(crl != NULL, TORII_ENOMEM);
    TORII_TRY(crl_header(crl, ca.cert, now_ms, next_update_s));
    TORII_TRY(crl_add_all(crl, revoked, n_revoked, eb));
    TORII_TRY(crl_finish(crl, &ca, crl_number, eb));
    TORII_TRY(crl_encode(crl, der, der_len));
out:
    X509_CRL_free(crl);
    torii_pki__ca_clear(&ca);
    return rc;
}

/* The cRLNumber of crl into *number. */
static int crl_number_of(const X509_CRL *crl, uint64_t *number, struct torii_errbuf *eb)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    int rc = TORII_OK;

    TORII_ENSURE(num != NULL && ASN1_INTEGER_get_uint64(number, num) == 1,
                 torii_errf(eb, TORII_EINVAL, "crl: no usable cRLNumber"));
out:
    ASN1_INTEGER_free(num);
    return rc;
}

int torii_pki_crl_check(const unsigned char *ca_cert, size_t ca_len, const unsigned char *der,
                        size_t der_len, uint64_t *number, struct torii_errbuf *eb)
{
    const unsigned char *p = ca_cert;
    X509 *ca = ca_cert != NULL ? d2i_X509(NULL, &p, (long)ca_len) : NULL;
    X509_CRL *crl = NULL;
    EVP_PKEY *pub;
    int rc = TORII_OK;

    TORII_ENSURE(ca != NULL && p == ca_cert + ca_len,
                 torii_errf(eb, TORII_EINVAL, "crl: the CA certificate does not parse"));
    p = der;
    crl = der != NULL && der_len < 0x7fffffff ? d2i_X509_CRL(NULL, &p, (long)der_len) : NULL;
    TORII_ENSURE(crl != NULL && p == der + der_len,
                 torii_errf(eb, TORII_EINVAL, "crl: not a DER CRL (%zu bytes)", der_len));
    TORII_ENSURE(X509_CRL_get_version(crl) == X509_CRL_VERSION_2
                     && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0,
                 torii_errf(eb, TORII_EINVAL, "crl: not a v2 CRL issued by this CA"));
    pub = X509_get0_pubkey(ca);
    TORII_ENSURE(
        pub != NULL && X509_CRL_verify(crl, pub) == 1,
        torii_errf(eb, TORII_EINVAL, "crl: the signature does not verify with the CA's key"));
    rc = crl_number_of(crl, number, eb);
out:
    ERR_clear_error();
    X509_CRL_free(crl);
    X509_free(ca);
    return rc;
}
