/* ocsp.c - OCSP responder core (RFC 6960): DER OCSPRequest in, signed DER OCSPResponse out.
 *
 * Fixed against Otoroshi (reference 6.2, 13): the response is signed by the CA that really
 * issued the certificate (ResponderID byKey, RFC 6960 4.2.2.3), not always by the root;
 * each CertID's issuer hashes are checked against that CA; the status is computed at
 * request time by the caller's lookup; "unknown" stays unknown instead of becoming
 * "revoked". Peer bytes never abort: anything undecodable gives malformedRequest. */
#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

/* More CertIDs than this in one request is not a client we need to serve. */
#define OCSP_MAX_IDS 32

/* 1 when cid's issuer name and key hashes match issuer. */
static int ocsp_cid_matches(OCSP_CERTID *cid, X509 *issuer)
{
    ASN1_OBJECT *md_obj = NULL;
    const EVP_MD *md;
    OCSP_CERTID *mine;
    int ok;

    if (OCSP_id_get0_info(NULL, &md_obj, NULL, NULL, cid) != 1) {
        return 0;
    }
    md = EVP_get_digestbyobj(md_obj);
    if (md == NULL) {
        ERR_clear_error();
        return 0;
    }
    mine = OCSP_cert_to_id(md, NULL, issuer);
    ok = mine != NULL && OCSP_id_issuer_cmp(cid, mine) == 0;
    OCSP_CERTID_free(mine);
    ERR_clear_error();
    return ok;
}

int torii_pki_certid_matches(const struct torii_pki_certid *id, const json_t *ca_entity)
{
    STACK_OF(X509) *chain = NULL;
    int ok;

    if (id == NULL || id->priv_cid == NULL
        || torii_pki__chain_parse(json_string_value(json_object_get(ca_entity, "chain")), &chain,
                                  NULL)
               != TORII_OK) {
        return 0;
    }
    ok = ocsp_cid_matches(id->priv_cid, sk_X509_value(chain, 0));
    sk_X509_pop_free(chain, X509_free);
    return ok;
}

void torii_pki_ocsp_answer_from_entity(const json_t *entity, int64_t now_ms,
                                       struct torii_pki_ocsp_answer *ans)
{
    struct torii_pki_revoked r;
    const json_t *to = json_object_get(entity, "to");

    if (json_is_true(json_object_get(entity, "revoked"))) {
        if (torii_pki_revoked_from_entity(entity, &r, NULL) == TORII_OK) {
            ans->status = TORII_PKI_OCSP_REVOKED;
            ans->revoked_at_ms = r.revoked_at_ms;
            ans->reason = r.reason;
        } else {
            ans->status = TORII_PKI_OCSP_UNKNOWN;
        }
        return;
    }
    if (json_is_integer(to) && now_ms > (int64_t)json_integer_value(to)) {
        ans->status = TORII_PKI_OCSP_UNKNOWN;
        return;
    }
    ans->status = TORII_PKI_OCSP_GOOD;
}

static int ocsp_encode(OCSP_RESPONSE *resp, unsigned char **der, size_t *der_len)
{
    unsigned char *buf = NULL;
    int len = i2d_OCSP_RESPONSE(resp, &buf);

    if (len <= 0) {
        OPENSSL_free(buf);
        return TORII_ETLS;
    }
    *der = torii_xmalloc((size_t)len);
    memcpy(*der, buf, (size_t)len);
    *der_len = (size_t)len;
    OPENSSL_free(buf);
    return TORII_OK;
}

struct ocsp_item {
    OCSP_CERTID *cid; /* borrowed from the request */
    struct torii_pki_ocsp_answer ans;
    const struct torii_pki__ca *signer; /* internal lookups: the issuer, loaded (borrowed) */
};

/* The caller's lookup: the public kind (issuer as an entity) or the internal one (issuer
 * already loaded). */
struct ocsp_cb {
    torii_pki_ocsp_lookup_cb pub;
    torii_pki__ocsp_lookup_cb loaded;
    void *ctx;
};

/* Ask the callback about every CertID. OCSP_RESPONSE_STATUS_* result. */
static int ocsp_lookup(OCSP_REQUEST *req, struct ocsp_item *items, int n, const struct ocsp_cb *cb,
                       struct torii_errbuf *eb)
{
    int i;

    for (i = 0; i < n; i++) {
        OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        ASN1_OCTET_STRING *nh = NULL;
        ASN1_OCTET_STRING *kh = NULL;
        ASN1_OBJECT *md_obj = NULL;
        ASN1_INTEGER *serial = NULL;
        struct torii_pki_certid id;
        char serial_hex[TORII_PKI_SERIAL_HEX_MAX];
        int nid;

        if (cid == NULL || OCSP_id_get0_info(&nh, &md_obj, &kh, &serial, cid) != 1
            || torii_pki__serial_hex(serial, serial_hex, sizeof(serial_hex)) != TORII_OK) {
            (void)torii_errf(eb, TORII_EINVAL, "ocsp: CertID #%d does not decode", i + 1);
            return OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
        }
        nid = OBJ_obj2nid(md_obj);
        memset(&id, 0, sizeof(id));
        id.hash_alg = nid != NID_undef ? OBJ_nid2sn(nid) : "unknown";
        id.name_hash = ASN1_STRING_get0_data(nh);
        id.name_hash_len = (size_t)ASN1_STRING_length(nh);
        id.key_hash = ASN1_STRING_get0_data(kh);
        id.key_hash_len = (size_t)ASN1_STRING_length(kh);
        id.serial_hex = serial_hex;
        id.priv_cid = cid;
        items[i].cid = cid;
        items[i].ans.status = TORII_PKI_OCSP_UNKNOWN;
        items[i].ans.reason = TORII_PKI_REASON_NONE;
        if ((cb->pub != NULL ? cb->pub(cb->ctx, &id, &items[i].ans)
                             : cb->loaded(cb->ctx, &id, &items[i].ans, &items[i].signer))
            != TORII_OK) {
            (void)torii_errf(eb, TORII_EIO, "ocsp: lookup failed (serial=%s)", serial_hex);
            return OCSP_RESPONSE_STATUS_INTERNALERROR;
        }
    }
    return OCSP_RESPONSE_STATUS_SUCCESSFUL;
}

/* 1 when the lookup named an issuer for item i. */
static int ocsp_has_issuer(const struct ocsp_item *it)
{
    return it->ans.issuer_owned != NULL || it->signer != NULL;
}

/* The signer: the first issuer returned that loads and matches its own CertID. One loaded
 * here goes to *owned; *use points at it or at a borrowed pre-loaded one. */
static int ocsp_pick_signer(struct ocsp_item *items, int n, struct torii_pki__ca *owned,
                            const struct torii_pki__ca **use, struct torii_errbuf *eb)
{
    int i;

    for (i = 0; i < n && *use == NULL; i++) {
        if (items[i].signer != NULL) {
            if (ocsp_cid_matches(items[i].cid, items[i].signer->cert)) {
                *use = items[i].signer;
            }
            continue;
        }
        if (items[i].ans.issuer_owned == NULL) {
            continue;
        }
        /* No ring here: this responder (torii_pki_ocsp_respond) serves tests and the fuzzer;
         * the daemon's signs with the CA keys the PKI state opened with its ring. */
        if (torii_pki__ca_load(items[i].ans.issuer_owned, NULL, owned, eb) != TORII_OK) {
            return OCSP_RESPONSE_STATUS_INTERNALERROR;
        }
        if (ocsp_cid_matches(items[i].cid, owned->cert)) {
            *use = owned;
        } else {
            torii_pki__ca_clear(owned);
        }
    }
    if (*use == NULL) {
        (void)torii_errf(eb, TORII_ENOTFOUND, "ocsp: no known CA issued the requested serials");
        return OCSP_RESPONSE_STATUS_UNAUTHORIZED;
    }
    return OCSP_RESPONSE_STATUS_SUCCESSFUL;
}

/* The status of one item as the signer may vouch for it; *revt replaced for a revoked one. */
static int ocsp_item_status(const struct ocsp_item *it, const struct torii_pki__ca *signer, int *st,
                            int *reason, ASN1_TIME **revt)
{
    const struct torii_pki_ocsp_answer *a = &it->ans;

    /* A CertID of another issuer (or whose hashes do not name the signer) cannot be
     * vouched for by this signature: unknown (RFC 6960 2.2). */
    if (!ocsp_has_issuer(it) || !ocsp_cid_matches(it->cid, signer->cert)) {
        return TORII_OK;
    }
    if (a->status == TORII_PKI_OCSP_GOOD) {
        *st = V_OCSP_CERTSTATUS_GOOD;
    } else if (a->status == TORII_PKI_OCSP_REVOKED) {
        *st = V_OCSP_CERTSTATUS_REVOKED;
        *reason = a->reason >= 0 ? (int)a->reason : OCSP_REVOKED_STATUS_NOSTATUS;
        ASN1_TIME_free(*revt);
        *revt = ASN1_GENERALIZEDTIME_set(
            NULL, (time_t)((a->revoked_at_ms > 0 ? a->revoked_at_ms : 0) / 1000));
        if (*revt == NULL) {
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

static int ocsp_basic(OCSP_REQUEST *req, struct ocsp_item *items, int n,
                      const struct torii_pki__ca *signer, int64_t now_ms, int64_t next_update_s,
                      OCSP_BASICRESP **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    ASN1_TIME *thisupd = ASN1_GENERALIZEDTIME_set(NULL, (time_t)(now_ms / 1000));
    ASN1_TIME *nextupd = ASN1_GENERALIZEDTIME_set(NULL, (time_t)(now_ms / 1000 + next_update_s));
    ASN1_TIME *revt = NULL;
    const EVP_MD *md = torii_pki__default_md(signer->key);
    int i;

    TORII_ENSURE(bs != NULL && thisupd != NULL && nextupd != NULL, TORII_ENOMEM);
    for (i = 0; i < n; i++) {
        int st = V_OCSP_CERTSTATUS_UNKNOWN;
        int reason = OCSP_REVOKED_STATUS_NOSTATUS;

        TORII_TRY(ocsp_item_status(&items[i], signer, &st, &reason, &revt));
        TORII_ENSURE(OCSP_basic_add1_status(bs, items[i].cid, st, reason,
                                            st == V_OCSP_CERTSTATUS_REVOKED ? revt : NULL, thisupd,
                                            nextupd)
                         != NULL,
                     torii_errbuf_ossl(eb, "ocsp: add status"));
    }
    /* RFC 8954 / 6960 4.4.1: echo the request nonce when there is one. */
    TORII_ENSURE(OCSP_copy_nonce(bs, req) > 0, torii_errbuf_ossl(eb, "ocsp: nonce"));
    TORII_ENSURE(OCSP_basic_sign(bs, signer->cert, signer->key, md, NULL, OCSP_RESPID_KEY) == 1,
                 torii_errbuf_ossl(eb, "ocsp: sign"));
    *out = bs;
    bs = NULL;
out:
    ASN1_TIME_free(revt);
    ASN1_TIME_free(nextupd);
    ASN1_TIME_free(thisupd);
    OCSP_BASICRESP_free(bs);
    return rc;
}

/* Decode the request (*req, the caller's even on failure) and count its CertIDs (*n): an OCSP
 * response status, MALFORMEDREQUEST with eb saying why. */
static int ocsp_decode(const unsigned char *req_der, size_t req_len, OCSP_REQUEST **req, int *n,
                       struct torii_errbuf *eb)
{
    const unsigned char *p = req_der;

    if (req_der == NULL || req_len == 0 || req_len > INT_MAX) {
        (void)torii_errf(eb, TORII_EINVAL, "ocsp: empty request");
        return OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
    }
    ERR_clear_error();
    *req = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
    if (*req == NULL || p != req_der + req_len) {
        (void)torii_errbuf_ossl(eb, "ocsp: request does not decode");
        return OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
    }
    *n = OCSP_request_onereq_count(*req);
    if (*n <= 0 || *n > OCSP_MAX_IDS) {
        (void)torii_errf(eb, TORII_EINVAL, "ocsp: request has %d CertIDs (1..%d)", *n,
                         OCSP_MAX_IDS);
        *n = 0;
        return OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
    }
    return OCSP_RESPONSE_STATUS_SUCCESSFUL;
}

static int ocsp_respond(const unsigned char *req_der, size_t req_len, const struct ocsp_cb *cb,
                        int64_t now_ms, int64_t next_update_s, unsigned char **der, size_t *der_len,
                        int *resp_status, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    int status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
    OCSP_REQUEST *req = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_RESPONSE *resp = NULL;
    struct ocsp_item items[OCSP_MAX_IDS];
    struct torii_pki__ca owned;
    const struct torii_pki__ca *signer = NULL;
    int n = 0;
    int i;

    memset(items, 0, sizeof(items));
    memset(&owned, 0, sizeof(owned));
    TORII_ENSURE((cb->pub != NULL || cb->loaded != NULL) && next_update_s > 0 && now_ms >= 0,
                 torii_errf(eb, TORII_EINVAL, "ocsp: bad arguments"));
    status = ocsp_decode(req_der, req_len, &req, &n, eb);
    if (status == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        status = ocsp_lookup(req, items, n, cb, eb);
    }
    if (status == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        status = ocsp_pick_signer(items, n, &owned, &signer, eb);
    }
    if (status == OCSP_RESPONSE_STATUS_SUCCESSFUL
        && ocsp_basic(req, items, n, signer, now_ms, next_update_s, &bs, eb) != TORII_OK) {
        status = OCSP_RESPONSE_STATUS_INTERNALERROR;
    }
    ERR_clear_error();
    resp = OCSP_response_create(status, status == OCSP_RESPONSE_STATUS_SUCCESSFUL ? bs : NULL);
    TORII_ENSURE(resp != NULL, TORII_ENOMEM);
    TORII_TRY(ocsp_encode(resp, der, der_len));
    if (resp_status != NULL) {
        *resp_status = status;
    }
out:
    for (i = 0; i < OCSP_MAX_IDS; i++) {
        json_decref(items[i].ans.issuer_owned);
    }
    torii_pki__ca_clear(&owned);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_REQUEST_free(req);
    return rc;
}

int torii_pki_ocsp_respond(const unsigned char *req_der, size_t req_len,
                           torii_pki_ocsp_lookup_cb cb, void *cb_ctx, int64_t now_ms,
                           int64_t next_update_s, unsigned char **der, size_t *der_len,
                           int *resp_status, struct torii_errbuf *eb)
{
    struct ocsp_cb c = {cb, NULL, cb_ctx};

    if (cb == NULL) {
        return torii_errf(eb, TORII_EINVAL, "ocsp: bad arguments");
    }
    return ocsp_respond(req_der, req_len, &c, now_ms, next_update_s, der, der_len, resp_status, eb);
}

int torii_pki__ocsp_respond(const unsigned char *req_der, size_t req_len,
                            torii_pki__ocsp_lookup_cb cb, void *cb_ctx, int64_t now_ms,
                            int64_t next_update_s, unsigned char **der, size_t *der_len,
                            int *resp_status, struct torii_errbuf *eb)
{
    struct ocsp_cb c = {NULL, cb, cb_ctx};

    if (cb == NULL) {
        return torii_errf(eb, TORII_EINVAL, "ocsp: bad arguments");
    }
    return ocsp_respond(req_der, req_len, &c, now_ms, next_update_s, der, der_len, resp_status, eb);
}
