/* pki_revoke.h - revocation: CRLReason codes, CRLs (RFC 5280) and the OCSP responder
 * (RFC 6960) over a lookup callback. Part of pki.h.
 * Threads: any thread (pure functions; the lookup callback runs on the caller's thread).
 * Ownership: inputs are borrowed; DER outputs are malloc'd and owned by the caller. */
#ifndef TORII_PKI_REVOKE_H
#define TORII_PKI_REVOKE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

struct torii_kek_ring;

/* ---- revocation: reasons, OCSP (RFC 6960), CRL (RFC 5280) ---- */

#define TORII_PKI_SERIAL_HEX_MAX 83 /* 41 DER octets of INTEGER content, hex, NUL */

/** CRLReason codes (RFC 5280 5.3.1); TORII_PKI_REASON_NONE = no reason given. */
enum torii_pki_reason {
    TORII_PKI_REASON_NONE = -1,
    TORII_PKI_REASON_UNSPECIFIED = 0,
    TORII_PKI_REASON_KEY_COMPROMISE = 1,
    TORII_PKI_REASON_CA_COMPROMISE = 2,
    TORII_PKI_REASON_AFFILIATION_CHANGED = 3,
    TORII_PKI_REASON_SUPERSEDED = 4,
    TORII_PKI_REASON_CESSATION_OF_OPERATION = 5,
    TORII_PKI_REASON_CERTIFICATE_HOLD = 6,
    TORII_PKI_REASON_REMOVE_FROM_CRL = 8,
    TORII_PKI_REASON_PRIVILEGE_WITHDRAWN = 9,
    TORII_PKI_REASON_AA_COMPROMISE = 10,
};

/** metadata.revocationReason text (reference 1.6, case-insensitive; "PRIVILEGE_WITH_DRAWN"
 * as Otoroshi spells it, and "PRIVILEGE_WITHDRAWN") -> code. NULL, "" and "VALID" give
 * TORII_PKI_REASON_UNSPECIFIED. TORII_EINVAL for any other text. */
int torii_pki_reason_parse(const char *name, enum torii_pki_reason *out) TORII_MUST_USE;

/** One revoked certificate, for CRLs. */
struct torii_pki_revoked {
    char serial_hex[TORII_PKI_SERIAL_HEX_MAX]; /* as torii_pki_cert_serial_hex */
    int64_t revoked_at_ms;
    enum torii_pki_reason reason;
};

/** Fill *out from an entity with revoked=true: serial of its leaf, time =
 * metadata.revokedAt (epoch ms, decimal) when present, else the leaf's notBefore (the
 * entity keeps no revocation time; notBefore is the conservative choice), reason from
 * metadata.revocationReason (unknown text -> unspecified). TORII_ENOTFOUND when the entity
 * is not revoked; TORII_EINVAL when its chain does not parse. */
int torii_pki_revoked_from_entity(const json_t *entity, struct torii_pki_revoked *out,
                                  struct torii_errbuf *eb) TORII_MUST_USE;

/** DER CRL v2 signed by ca_entity (see "CA entity" in pki_issue.h): thisUpdate = now_ms, nextUpdate
 * = now_ms + next_update_s, one entry per revoked[i] (reason extension unless NONE or
 * UNSPECIFIED, RFC 5280 5.3.1), CRL number and AKI extensions. *der is malloc'd (caller
 * frees). TORII_EINVAL for a bad CA, a bad serial_hex or next_update_s <= 0. */
int torii_pki_crl_build(const json_t *ca_entity, const struct torii_kek_ring *kek,
                        const struct torii_pki_revoked *revoked, size_t n_revoked,
                        uint64_t crl_number, int64_t now_ms, int64_t next_update_s,
                        unsigned char **der, size_t *der_len, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Check a DER CRL received from elsewhere (a fleet's signer) against the CA certificate
 * ca_cert (DER): a v2 CRL whose issuer is the CA's subject, signed by its key, with a
 * cRLNumber, which goes to *number. TORII_EINVAL (eb says which check failed) otherwise.
 * Pure; any thread. */
int torii_pki_crl_check(const unsigned char *ca_cert, size_t ca_len, const unsigned char *der,
                        size_t der_len, uint64_t *number, struct torii_errbuf *eb) TORII_MUST_USE;

enum torii_pki_ocsp_status {
    TORII_PKI_OCSP_GOOD = 0,
    TORII_PKI_OCSP_REVOKED = 1,
    TORII_PKI_OCSP_UNKNOWN = 2,
};

/** One CertID of an OCSP request, borrowed for the duration of the callback. */
struct torii_pki_certid {
    const char *hash_alg;           /* OpenSSL short name of the hash, e.g. "SHA1" */
    const unsigned char *name_hash; /* hash of the issuer's subject DN (DER) */
    size_t name_hash_len;
    const unsigned char *key_hash; /* hash of the issuer's public key BIT STRING */
    size_t key_hash_len;
    const char *serial_hex; /* as torii_pki_cert_serial_hex */
    void *priv_cid;         /* private: the OCSP_CERTID */
};

/** What the lookup callback answers for one CertID. The responder pre-fills status
 * UNKNOWN, reason NONE and issuer NULL. */
struct torii_pki_ocsp_answer {
    enum torii_pki_ocsp_status status;
    int64_t revoked_at_ms;        /* REVOKED only */
    enum torii_pki_reason reason; /* REVOKED only; NONE = omit */
    json_t *issuer_owned;         /* the issuing CA entity (a new reference the responder
                                   * json_decref()s), or NULL when no CA is known */
};

/** Lookup callback: fill *ans for id. Typical store-backed implementation: serial_hex ->
 * entity id (index), entity -> torii_pki_ocsp_answer_from_entity, entity.caRef -> CA
 * entity as issuer_owned; when the serial is unknown, find the CA among the CA entities
 * with torii_pki_certid_matches and answer UNKNOWN with it. The responder checks itself
 * that the CertID's hashes match issuer_owned (a mismatch makes the answer UNKNOWN), so the
 * callback may trust the serial alone. Return TORII_OK, or an error code to make the whole
 * response internalError. Called on the responder's thread, once per CertID, in order. */
typedef int (*torii_pki_ocsp_lookup_cb)(void *ctx, const struct torii_pki_certid *id,
                                        struct torii_pki_ocsp_answer *ans);

/** Status of an entity at now_ms for OCSP: revoked=true -> REVOKED (time and reason as
 * torii_pki_revoked_from_entity); expired (now > to) -> UNKNOWN (no status is kept for
 * expired certificates); else GOOD. Leaves issuer_owned alone. */
void torii_pki_ocsp_answer_from_entity(const json_t *entity, int64_t now_ms,
                                       struct torii_pki_ocsp_answer *ans);

/** 1 when id names ca_entity's leaf as issuer (name and key hashes), else 0. */
int torii_pki_certid_matches(const struct torii_pki_certid *id, const json_t *ca_entity);

/** RFC 6960 responder: decode a DER OCSPRequest, call cb for each CertID (at most 32), and
 * build a DER OCSPResponse. The BasicOCSPResponse is signed by the issuing CA's key (the
 * issuer of the first CertID that has one; CertIDs of another issuer are answered
 * UNKNOWN), ResponderID by key hash, the CA certificate included, thisUpdate = now_ms,
 * nextUpdate = now_ms + next_update_s, request nonce echoed. Request signatures are not
 * checked (RFC 6960 4.1.2 makes them optional). A request that does not decode or holds no
 * (or too many) CertIDs gives malformedRequest; no CA for any CertID gives unauthorized; a
 * callback error or an unusable CA gives internalError. Returns TORII_OK with *der (malloc'd)
 * and *resp_status (RFC 6960 4.2.1 OCSPResponseStatus: 0 successful, 1 malformedRequest,
 * 2 internalError, 6 unauthorized; may be NULL) whenever a response was built;
 * eb then explains a non-successful status. TORII_ENOMEM/TORII_ETLS only when no response
 * could be encoded at all. */
int torii_pki_ocsp_respond(const unsigned char *req, size_t req_len, torii_pki_ocsp_lookup_cb cb,
                           void *cb_ctx, int64_t now_ms, int64_t next_update_s, unsigned char **der,
                           size_t *der_len, int *resp_status, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
