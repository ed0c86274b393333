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

/** Copy of the entity with privateKey and password removed (for alerts and logs). */
json_t *torii_cert_redacted(const json_t *entity);

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

#define TORII_CERTREC_MAX_NAMES 1024
#define TORII_CERTREC_MAX_CHAIN 16

/** Decoded view of a record; the slices point into the blob it was decoded from. */
struct torii_certrec {
    uint32_t flags;
    int64_t not_before_ms;
    int64_t not_after_ms;
    int key_type; /* EVP_PKEY_RSA, EVP_PKEY_EC, ... ; 0 when there is no key */
    uint32_t n_names;
    struct torii_slice names[TORII_CERTREC_MAX_NAMES]; /* lower-case, no trailing dot; "*.x" */
    uint32_t n_chain;
    struct torii_slice chain[TORII_CERTREC_MAX_CHAIN]; /* DER, leaf first */
    struct torii_slice key_der;                        /* private key DER (type key_type) */
};

/** Build the record from an enriched entity. TORII_EINVAL if chain/key do not parse. */
int torii_certrec_build(const json_t *entity, unsigned char **out, size_t *out_len,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** Decode a record (no allocation; rec is large, keep it off small stacks).
 * TORII_EINVAL on a truncated or malformed blob (bad magic/version, counts over the
 * TORII_CERTREC_MAX_* limits, lengths past the end, trailing bytes); *rec is then
 * unspecified. Format: see src/pki/certrec.c. key_der.len is 0 without HAS_KEY. */
int torii_certrec_decode(const unsigned char *buf, size_t len, struct torii_certrec *rec)
    TORII_MUST_USE;

#endif
