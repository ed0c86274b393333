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
 * (TORII_EINVAL naming the field). Output-only fields (certType) are dropped. */
int torii_cert_normalize(json_t *entity, struct torii_errbuf *eb) TORII_MUST_USE;

/** Parse chain (PEM, leaf first) and privateKey (PEM, optionally encrypted with password)
 * and set the derived fields: subject, domain, sans (DNS + IP), from, to (ms), ca,
 * selfSigned, valid (not expired at now_ms, not revoked, key matches leaf, chain links up),
 * and certType. The chain is re-emitted as clean PEM. Returns TORII_EINVAL with a message in
 * eb for: empty/garbage chain, garbage key, wrong password, key not matching the leaf. */
int torii_cert_enrich(json_t *entity, int64_t now_ms, struct torii_errbuf *eb) TORII_MUST_USE;

/** Copy of the entity with privateKey and password removed (for alerts and logs). */
json_t *torii_cert_redacted(const json_t *entity);

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
 * TORII_EINVAL on a truncated or malformed blob. */
int torii_certrec_decode(const unsigned char *buf, size_t len, struct torii_certrec *rec)
    TORII_MUST_USE;

#endif
