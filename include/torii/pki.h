/* pki.h - certificate entities and X.509: the entity JSON (Otoroshi-compatible fields and
 * defaults), derived fields from the PEM chain and key ("enrich"), and the compact binary
 * TLS record kept next to the JSON in the store so the TLS table never parses PEM or JSON.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: json_t arguments are borrowed unless a name ends in _owned; returned blobs are
 * malloc'd and owned by the caller (they contain a private key: free with
 * torii_secure_free). A decoded torii_certrec borrows from its blob. */
#ifndef TORII_PKI_H
#define TORII_PKI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "torii/err.h"
#include "torii/mem.h"

/* ---- entity ---- */

/** A fresh entity with every field at its default (id "cert_<uuid>"). NULL on OOM. */
json_t *torii_cert_template(void);

/** Check the types of known fields of a user-supplied entity and fill in every missing field
 * with its default (seed/reference defaults). Unknown top-level fields are rejected
 * (TORII_EINVAL naming the field). Output-only fields (certType) are dropped. JSON null on a
 * non-nullable field counts as absent; a blank password becomes null; a missing id becomes
 * "certificate_<uuid>"; from/to default to now. Nothing is changed when a check fails.
 * Fields are re-ordered as the reference serializer writes them. */
int torii_cert_normalize(json_t *entity, struct torii_errbuf *eb) TORII_MUST_USE;

/** Normalize (as above), then parse chain (PEM, leaf first) and privateKey (PEM, optionally
 * encrypted with password)
 * and set the derived fields: subject, domain, sans (DNS + IP), from, to (ms), ca,
 * selfSigned, valid (not expired at now_ms, not revoked, key matches leaf, chain links up),
 * and certType. The chain is re-emitted as clean PEM. Returns TORII_EINVAL with a message in
 * eb for: empty/garbage chain, garbage key, wrong password, key not matching the leaf.
 * No privateKey ("") is allowed (trust anchor; valid=false). subject is the reference's
 * normalized DN: attribute names upper-cased, sorted descending, ", "-joined. domain = CN,
 * else first SAN, else the RFC 2253 subject. name/description still at "none" (domain was
 * unknown at normalize) get the derived domain. On error the entity may be normalized but
 * no derived field is changed. */
int torii_cert_enrich(json_t *entity, int64_t now_ms, struct torii_errbuf *eb) TORII_MUST_USE;

/** The certType the entity's flags give (client, ca, letsEncrypt, keypair, selfSigned, in that
 * order, else certificate), as torii_cert_enrich sets it. A static string. */
const char *torii_cert_type(const json_t *entity);

/** Copy of the entity with privateKey and password removed (for alerts and logs). */
json_t *torii_cert_redacted(const json_t *entity);

/** Overwrite the bytes of the entity's privateKey and password strings with zeros, in place,
 * before the last json_decref of an entity that was read only for its public parts (jansson
 * does not wipe what it frees). Absent fields and non-strings are skipped; NULL is ignored. */
void torii_cert_secrets_wipe(json_t *entity);

/** Generate the first-start default certificate: a fresh ECDSA P-256 key and a self-signed
 * server certificate (CN = dns_names[0] when <= 64 chars, SAN = all names (IP literals become
 * IP SANs), BasicConstraints CA:false, KeyUsage digitalSignature, EKU serverAuth, random
 * 128-bit serial, valid from now_ms for `days` days), returned as a normalized and enriched
 * entity with autoRenew true. id NULL -> "cert_<uuid>". Names are borrowed.
 * TORII_EINVAL (eb says why) for no names, a name that is neither a DNS name nor an IP,
 * days outside 1..36500; TORII_ETLS when OpenSSL fails. *out is written only on success. */
int torii_cert_generate_selfsigned(const char *id, const char *const *dns_names, size_t n_names,
                                   int64_t now_ms, int days, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- TLS record (aux blob in TORII_STORE_CERTS) ---- */

#define TORII_CERTREC_HAS_KEY     (1u << 0)
#define TORII_CERTREC_REVOKED     (1u << 1)
#define TORII_CERTREC_CA          (1u << 2)
#define TORII_CERTREC_CLIENT      (1u << 3)
#define TORII_CERTREC_KEYPAIR     (1u << 4)
#define TORII_CERTREC_SELF_SIGNED (1u << 5)
#define TORII_CERTREC_KEY_MATCHES (1u << 6) /* private key matches the leaf */
/* The leaf's usages forbid TLS server authentication (keyUsage without digitalSignature /
 * keyEncipherment / keyAgreement, or extendedKeyUsage without serverAuth): a CA-only or
 * client-only certificate. A CA:TRUE certificate is never served whatever its usages (CA
 * flag; what `openssl req -x509` makes by default is such a certificate). */
#define TORII_CERTREC_NOT_SERVER (1u << 7)

#define TORII_CERTREC_MAX_NAMES 1024
#define TORII_CERTREC_MAX_CHAIN 16
/* The leaf's identity for revocation lookups (record version 2): the SHA-256 of the DER of
 * its issuer name, and the DER of its serialNumber INTEGER (tag and length included). */
#define TORII_CERTREC_ISSUER_HASH_LEN 32
#define TORII_CERTREC_SERIAL_MAX      64

/** Decoded view of a record; the slices point into the blob it was decoded from. */
struct torii_certrec {
    uint32_t version; /* 1 (legacy, no issuer/serial) or 2 */
    uint32_t flags;
    int64_t not_before_ms;
    int64_t not_after_ms;
    int key_type; /* EVP_PKEY_RSA, EVP_PKEY_EC, ... ; 0 when there is no key */
    uint32_t n_names;
    struct torii_slice names[TORII_CERTREC_MAX_NAMES]; /* lower-case, no trailing dot; "*.x" */
    uint32_t n_chain;
    struct torii_slice chain[TORII_CERTREC_MAX_CHAIN]; /* DER, leaf first */
    struct torii_slice key_der;                        /* private key DER (type key_type) */
    struct torii_slice issuer_hash; /* TORII_CERTREC_ISSUER_HASH_LEN bytes; empty in v1 */
    struct torii_slice serial;      /* DER INTEGER, 3..TORII_CERTREC_SERIAL_MAX; empty in v1 */
};

/** Build the record from an enriched entity. TORII_EINVAL if chain/key do not parse. */
int torii_certrec_build(const json_t *entity, unsigned char **out, size_t *out_len,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** Why the certificate of an entity (its chain's leaf, its client/keypair fields) will never
 * be chosen for a TLS handshake by SNI: *out is a new JSON array of sentences such as
 * "not served by SNI: CA certificate (basicConstraints CA:TRUE)" (CA, key pair, client, usages
 * without TLS server authentication), empty when none applies. Revocation, validity and the
 * private key are not reported (they change, or are reported by `valid`). TORII_EINVAL when
 * the chain does not parse, TORII_ENOMEM. */
int torii_certrec_sni_warnings(const json_t *entity, json_t **out) TORII_MUST_USE;

/** Decode a record (no allocation; rec is large, keep it off small stacks). Version 2
 * records (what torii_certrec_build writes) and legacy version 1 records (written before
 * the issuer hash and serial were added; both slices are then empty) are accepted.
 * TORII_EINVAL on a truncated or malformed blob (bad magic/version, counts over the
 * TORII_CERTREC_MAX_* limits, lengths past the end, an issuer hash or serial of the wrong
 * size or shape, trailing bytes); *rec is then unspecified. Format: see src/pki/certrec.c.
 * key_der.len is 0 without HAS_KEY. */
int torii_certrec_decode(const unsigned char *buf, size_t len, struct torii_certrec *rec)
    TORII_MUST_USE;

/* ---- TLS client identity ----
 * For modules that authenticate as a stored certificate (the webhook exporter's
 * tls.client_cert): they get an opaque identity and install it on an SSL_CTX; the private key
 * is parsed and held only here (STYLE 2.1). An identity is immutable once built: any thread
 * may use it, its one owner frees it. */

struct torii_pki_identity;

/** Parse an identity (leaf, issuers, private key) out of a TLS record (the aux blob stored
 * with the entity; borrowed, the caller still wipes it). *out is new (free with
 * torii_pki_identity_free), written only on success. TORII_EINVAL, eb saying why (never
 * quoting key material): the record does not decode, has no private key, a certificate or
 * the key does not parse, or the key does not match the leaf. TORII_ENOMEM. The OpenSSL
 * error queue is left empty. */
int torii_pki_identity_new(const unsigned char *rec, size_t rec_len,
                           struct torii_pki_identity **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Free an identity; NULL accepted. OpenSSL wipes the key when its last reference goes. */
void torii_pki_identity_free(struct torii_pki_identity *id);

/** Make id the certificate ctx presents: leaf, private key and the issuers as the chain sent
 * after it (SSL_CTX_use_cert_and_key, replacing any previous certificate). ctx takes its own
 * references, so id may be freed afterwards; ctx is borrowed. Meant for a client SSL_CTX
 * handed out by a library callback (libcurl's CURLOPT_SSL_CTX_FUNCTION). TORII_EINVAL for a
 * NULL argument; TORII_ETLS when OpenSSL refuses (e.g. a key below ctx's security level),
 * eb then holds the drained OpenSSL error queue. */
int torii_pki_identity_use(const struct torii_pki_identity *id, SSL_CTX *ctx,
                           struct torii_errbuf *eb) TORII_MUST_USE;

/** torii_pki_identity_use for one connection: ssl (a server SSL in its client-hello callback,
 * e.g. the TLS-ALPN-01 validation certificate) presents id. Same codes. */
int torii_pki_identity_use_ssl(const struct torii_pki_identity *id, SSL *ssl,
                               struct torii_errbuf *eb) TORII_MUST_USE;

/** 1 when a and b hold the same certificates (byte for byte, same order) and the same key
 * pair; 0 otherwise (two NULLs are equal). */
int torii_pki_identity_eq(const struct torii_pki_identity *a, const struct torii_pki_identity *b);

/* ---- issuing (PKI API) ----
 * Pure functions behind the Otoroshi-compatible PKI endpoints (reference section 3). A
 * "query" is Otoroshi's GenCsrQuery JSON: hosts[] (DNS names and IP literals -> SANs),
 * key {algo: "rsa"|"ecdsa", size} (or keyType/keySize; RSA 2048/3072/4096, ECDSA
 * 256/384/521; absent -> ECDSA P-256 for leaves, P-384 for CAs), subject ("CN=x, O=y") or
 * name ({"CN":"x"}; subject wins; neither -> CN=hosts[0]), client (EKU clientAuth instead
 * of serverAuth), ca, includeAIA, duration (ms; default 365 days, 10 years for CAs),
 * signatureAlg/digestAlg (only the digest is used: SHA-256/384/512; default follows the
 * signing key). Unknown query fields are ignored. Every certificate gets a random positive
 * 128-bit serial, SKI and AKI, critical BasicConstraints and KeyUsage (CA: keyCertSign,
 * cRLSign, digitalSignature; leaf: digitalSignature, +keyEncipherment for RSA keys).
 * A "CA entity" is a certificate entity with ca=true, not revoked, whose chain leaf is a CA
 * certificate and whose privateKey (decrypted with its password) matches it; anything else
 * is TORII_EINVAL with a message naming the entity id. Issued entities carry the new key,
 * chain = new cert + the CA entity's chain, caRef = CA id (null when self-signed),
 * client/keypair flags, metadata.csr = the query echo, and are enriched. Differences from
 * Otoroshi (reference 13): unsupported key sizes are refused instead of falling back to
 * P-256, the digest never has to "match" the key type, caIssuers points at the issuer. */

/** Options shared by the issuing calls. All strings are borrowed for the call. */
struct torii_pki_opts {
    int64_t now_ms;       /* notBefore of new certificates; "now" for enrich */
    const char *base_url; /* public base URL ("https://pki.example.com"), no trailing path;
                           * NULL when not configured (includeAIA is then refused) */
    const char *id;       /* id of the new entity; NULL -> random 32 chars [A-Za-z0-9] */
};

/** Self-signed root CA from a query (the CA profile whatever query.ca says; no path length;
 * default ECDSA P-384, 10 years). *out is a new enriched entity (caller json_decref()s),
 * written only on success. TORII_EINVAL (eb says why) for a bad query; TORII_ETLS when
 * OpenSSL fails. */
int torii_pki_ca_create(const json_t *query, const struct torii_pki_opts *o, json_t **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** Sub-CA signed by ca_entity: BasicConstraints CA:TRUE, pathLen 0. includeAIA adds
 * OCSP/caIssuers/CRL URLs under o->base_url (see torii_pki_cert_issue). TORII_EINVAL when
 * ca_entity is not a usable CA entity (see above) or its own pathLen is 0. */
int torii_pki_subca_create(const json_t *ca_entity, const json_t *query,
                           const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Certificate signed by ca_entity: a server leaf (EKU serverAuth), a client leaf
 * (query.client: EKU clientAuth, entity client=true) or, with query.ca, a sub-CA as
 * torii_pki_subca_create. notAfter is clamped to the CA's notAfter. With includeAIA:
 * authorityInfoAccess OCSP = <base>/.well-known/torii/ocsp, caIssuers =
 * <base>/.well-known/torii/ca/<CA id>, CRL distribution point
 * <base>/.well-known/torii/crl/<CA id>. Errors as torii_pki_subca_create. */
int torii_pki_cert_issue(const json_t *ca_entity, const json_t *query,
                         const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Self-signed certificate from a query (query.ca -> self-signed CA as
 * torii_pki_ca_create). includeAIA is ignored (there is no issuer to point at). */
int torii_pki_cert_selfsigned(const json_t *query, const struct torii_pki_opts *o, json_t **out,
                              struct torii_errbuf *eb) TORII_MUST_USE;

/** Key pair for JWT signing (POST /api/pki/keys): key_spec {algo, size} (NULL -> ECDSA
 * P-256) wrapped in a self-signed certificate "CN=keypair-<random hex>" valid 10 years;
 * the entity has keypair=true and name "KeyPair - <hex>". */
int torii_pki_keypair_create(const json_t *key_spec, const struct torii_pki_opts *o, json_t **out,
                             struct torii_errbuf *eb) TORII_MUST_USE;

/** CSR from a query: *out = {"csr", "publicKey", "privateKey"} (PEM strings; the private
 * key is unencrypted PKCS#8). The CSR requests the SANs (and CA:TRUE when query.ca).
 * TORII_EINVAL for a bad query or no subject/name/hosts. */
int torii_pki_csr_create(const json_t *query, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Sign a PEM CSR with ca_entity. The CSR's signature must verify. The CA decides the
 * profile: CA:FALSE always, key usages of a leaf, EKU serverAuth (clientAuth when client),
 * validity now..now+duration_ms (<= 0 -> 365 days, clamped to the CA); only the subject and
 * the requested SANs are copied from the CSR, every other requested extension is dropped.
 * AIA/CRL URLs are added when o->base_url is set. *out = {"cert", "csr", "ca"} (PEM; "ca"
 * is the CA's chain). TORII_EINVAL for an unparsable CSR, a bad CSR signature or a bad CA. */
int torii_pki_csr_sign(const json_t *ca_entity, const char *csr_pem, int64_t duration_ms,
                       int client, const struct torii_pki_opts *o, json_t **out,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- imports and inspection ---- */

/** PKCS#12 import: every private key entry becomes one enriched entity (id random 64 chars,
 * name "Imported Certificate", chain = the certificate matching the key + its issuers found
 * in the file, privateKey unencrypted PKCS#8, client = the leaf's EKU has clientAuth).
 * password NULL means "" (both encodings are tried). *out is a new JSON array, written only
 * on success. TORII_EINVAL for a wrong password, corrupt DER, a file without key entries or
 * a key without its certificate; nothing is returned then. Legacy RC2/3DES files need
 * OpenSSL's legacy provider to be loaded by the caller. */
int torii_pki_import_p12(const unsigned char *der, size_t len, const char *password, int64_t now_ms,
                         json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** PEM bundle import: certificates and private keys in any order (CSRs and other blocks
 * ignored; keys may be encrypted with password). Each key is paired with the certificate it
 * matches, and the chain is built from the other certificates by issuer name and signature.
 * One enriched entity per key (id "cert_<uuid>"). *out is a new JSON array. TORII_EINVAL
 * for no key, a key matching no certificate, or any block that does not parse. */
int torii_pki_import_pem_bundle(const char *text, const char *password, int64_t now_ms,
                                json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Certificate data of the first certificate of a PEM text (reference 3.3): issuerDN,
 * subjectDN, notBefore, notAfter, serialNumber (lower-case hex), serialNumberLng (low 64
 * bits, signed, as Java's longValue), sigAlgName ("SHA256WITHRSA"), sigAlgOID, _signature,
 * signature, domain, rawDomain, version, type, publicKey, selfSigned, constraints, ca,
 * client, subAltNames, cExtensions, ncExtensions. Extension values are base64 of the DER
 * (Otoroshi emits the raw bytes as UTF-8, which is not valid JSON text). */
int torii_pki_cert_data(const char *pem, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** {"valid": bool} for an entity (borrowed, not modified): the `valid` an enrich at now_ms
 * would compute; false when the entity does not enrich. NULL only on OOM. */
json_t *torii_pki_cert_valid(const json_t *entity, int64_t now_ms);

/** Serial of the entity's leaf certificate as lower-case hex without leading zeros (the key
 * of a serial -> id index; same text as torii_pki_certid.serial_hex). buf >= 83 bytes.
 * TORII_EINVAL when the chain does not parse. */
int torii_pki_cert_serial_hex(const json_t *entity, char *buf, size_t len, struct torii_errbuf *eb)
    TORII_MUST_USE;

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

/** DER CRL v2 signed by ca_entity (see "CA entity" above): thisUpdate = now_ms, nextUpdate
 * = now_ms + next_update_s, one entry per revoked[i] (reason extension unless NONE or
 * UNSPECIFIED, RFC 5280 5.3.1), CRL number and AKI extensions. *der is malloc'd (caller
 * frees). TORII_EINVAL for a bad CA, a bad serial_hex or next_update_s <= 0. */
int torii_pki_crl_build(const json_t *ca_entity, const struct torii_pki_revoked *revoked,
                        size_t n_revoked, uint64_t crl_number, int64_t now_ms,
                        int64_t next_update_s, unsigned char **der, size_t *der_len,
                        struct torii_errbuf *eb) TORII_MUST_USE;

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
    void *_cid;             /* private: the OCSP_CERTID */
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

/* ---- JWKS (RFC 7517) ---- */

/** {"keys":[...]} from an array of entities (borrowed). One JWK per entity that is exposed,
 * not revoked, and has a chain and a privateKey that parse and match: RSA -> kty, n, e, alg
 * RS256; EC -> kty, crv, x, y, alg ES256/ES384/ES512 by curve; Ed25519 -> kty OKP, crv
 * Ed25519, x, alg EdDSA (RFC 8037); kid = entity id, use "sig",
 * x5c (standard base64 DER of the chain), x5t#S256 (base64url SHA-256 of the leaf DER);
 * base64url without padding. Other key types and broken entries are skipped (logged at WARN
 * with the id); they never break the document. A non-array counts as empty. NULL on OOM. */
json_t *torii_pki_jwks_build(const json_t *entities);

/** Mint a JWT with an entity's key pair (core of POST /api/certificates/:id/_sign): a copy of
 * claims (a JSON object, borrowed) with iat = now and exp = now + lifetime_s (any iat/exp the
 * caller gave are replaced), signed with the entity's private key as torii_jwt_sign does
 * (header kid = entity id, alg from the key). *out is a malloc'd NUL-terminated token.
 * TORII_EINVAL (eb says why) for: claims not an object, lifetime_s outside 1..366 days, a
 * revoked or not exposed entity (no verifier could find its key), no private key or one that
 * does not match the leaf, a key type without a JWS algorithm, exp past the leaf's notAfter.
 * TORII_ETOOBIG for a token over 8 KiB. */
int torii_pki_jwt_sign(const json_t *entity, const json_t *claims, int64_t lifetime_s,
                       int64_t now_ms, char **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Check a token against one entity's key (core of POST /api/certificates/:id/_verify): the
 * public key of the leaf of its chain under kid = entity id, usable until the leaf's notAfter;
 * policy p (borrowed; its kids are ignored) as torii_jwt_verify. A revoked entity's key
 * verifies nothing (*verdict unknown_key). Returns torii_jwt_verify's code (TORII_EPERM for a
 * refused token, *verdict says why, eb the detail), or TORII_EINVAL when the entity has no
 * usable public key (eb says why). On TORII_OK *claims (may be NULL) is a new reference. */
struct torii_jwt_policy;
enum torii_jwt_verdict;
int torii_pki_jwt_verify(const json_t *entity, const struct torii_jwt_policy *p, const char *tok,
                         size_t len, int64_t now_ms, enum torii_jwt_verdict *verdict,
                         json_t **claims, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- renewal ---- */

/** Renew a certificate entity (docs/operations.md, Renewal): a copy of its leaf (subject,
 * SANs, key usages, EKU and every other extension kept; SCTs dropped) with a new random
 * serial, notBefore = now (backdated 5 minutes when the validity is longer than a day), the
 * same validity length clamped to the issuer's notAfter, the same signature digest, and:
 * - a leaf (entity ca not true) gets a NEW key of the same type and size (RSA bits, EC
 *   curve, Ed25519/Ed448), a new SKI, privateKey = its PKCS#8 PEM and password = null;
 * - a CA keeps its key, subject and SKI, so what it issued still verifies against it.
 * issuer_entity is the issuing CA entity (see "CA entity" above; the AKI follows its SKI)
 * or NULL for a self-signed certificate, which is then re-signed by the key it carries.
 * *out is a new enriched entity (caller json_decref()s), written only on success: a deep
 * copy of entity (same id, user fields and metadata) with chain = new leaf + the CA
 * entity's chain (the new leaf alone when self-signed). o may be NULL (now = the clock);
 * only o->now_ms is used. Borrowed arguments are not modified; no private key is returned
 * other than the renewed entity's own. TORII_EINVAL (eb says why) when the entity's chain
 * or key does not parse or match, the dates are unusable, issuer_entity is not a usable CA
 * entity, the issuer expires before now, or issuer_entity is NULL and the leaf is not
 * self-signed; TORII_EUNSUPPORTED for a key type it cannot regenerate; TORII_ETLS when
 * OpenSSL fails. */
int torii_pki_cert_renew(const json_t *entity, const json_t *issuer_entity,
                         const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- ACME key material (acmekey.c) ----
 * The ACME client (acme.h) holds keys as PEM text only; they are generated, decoded and used
 * here. Strings returned are malloc'd (keys: free with torii_secure_free). */

/** A fresh ECDSA P-256 account key as unencrypted PKCS#8 PEM. TORII_ETLS when OpenSSL fails. */
int torii_pki_acme_key_new(char **pem_out, struct torii_errbuf *eb) TORII_MUST_USE;

/** The public JWK of an account key ({"crv","kty","x","y"}, new) and its RFC 7638 thumbprint
 * (base64url SHA-256, NUL-terminated into thumb[thumb_len], 44 bytes suffice). TORII_EINVAL
 * when key_pem is not an ECDSA P-256 private key. */
int torii_pki_acme_jwk(const char *key_pem, json_t **jwk_out, char *thumb, size_t thumb_len,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/** ES256 JWS signature (RFC 7518 3.4, raw r||s, base64url) of signing_input ("<protected>.
 * <payload>") with the account key. */
int torii_pki_acme_sign(const char *key_pem, const char *signing_input, char **sig_out,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** HS256 MAC (base64url) of signing_input with the external account binding key given in
 * base64url (RFC 8555 7.3.4). TORII_EINVAL when the key does not decode. */
int torii_pki_acme_hs256(const char *key_b64url, const char *signing_input, char **sig_out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** A CSR for hosts (a JSON array of names, borrowed) with a fresh key (key_spec {algo, size}
 * as in a GenCsrQuery, NULL: ECDSA P-256): *csr_b64url is its DER in base64url, *key_pem the
 * new key. TORII_EINVAL for a bad name or key spec. */
int torii_pki_acme_csr(const json_t *hosts, const json_t *key_spec, char **csr_b64url,
                       char **key_pem, struct torii_errbuf *eb) TORII_MUST_USE;

/** The TLS-ALPN-01 validation certificate for name (RFC 8737 3): a fresh P-256 key, a
 * self-signed certificate with that one dNSName and the critical acmeIdentifier extension
 * holding digest (SHA-256 of the key authorization), as a TLS record (*rec_out, free with
 * torii_secure_free) for the handshake that asks for acme-tls/1. */
int torii_pki_acme_alpn_record(const char *name, const unsigned char digest[32],
                               unsigned char **rec_out, size_t *rec_len, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
