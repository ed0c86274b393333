/* pki_issue.h - issuing: root and sub-CAs, leaves, self-signed certificates, key pairs,
 * CSRs (the Otoroshi-compatible PKI API, reference section 3). Part of pki.h.
 * Threads: any thread (pure functions; keys are generated with OpenSSL's thread-safe RNG).
 * Ownership: json_t arguments are borrowed; *out is a new entity the caller json_decref()s
 * (it holds a private key: wipe it with torii_cert_secrets_wipe when done). */
#ifndef TORII_PKI_ISSUE_H
#define TORII_PKI_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

struct torii_kek_ring;

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
    /* Keys at rest (borrowed; NULL: none loaded): opens the signing CA's sealed privateKey
     * (and a renewed entity's own) through torii_pki_key_open. */
    const struct torii_kek_ring *kek;
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

#endif
