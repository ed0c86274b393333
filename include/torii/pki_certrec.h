/* pki_certrec.h - the compact binary TLS record kept next to the entity JSON in the store
 * (the aux blob of TORII_STORE_CERTS), so the TLS table never parses PEM or JSON. Part of
 * pki.h.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: a built record is malloc'd and owned by the caller; it holds no key bytes since
 * version 3 (the key is stored once, in the entity's privateKey; a version 1 or 2 record still
 * holds a copy: free records with torii_secure_free). A decoded torii_certrec borrows from its
 * blob. */
#ifndef TORII_PKI_CERTREC_H
#define TORII_PKI_CERTREC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/mem.h"

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
    uint32_t version; /* 1 (legacy, no issuer/serial), 2 (legacy, key copy) or 3 */
    int summary;      /* 1: a summary (torii_certrec_summary): n_chain is 0 */
    uint32_t flags;
    int64_t not_before_ms;
    int64_t not_after_ms;
    int key_type; /* EVP_PKEY_RSA, EVP_PKEY_EC, ... ; 0 when there is no key */
    uint32_t n_names;
    struct torii_slice names[TORII_CERTREC_MAX_NAMES]; /* lower-case, no trailing dot; "*.x" */
    uint32_t n_chain;
    struct torii_slice chain[TORII_CERTREC_MAX_CHAIN]; /* DER, leaf first */
    struct torii_slice key_der; /* versions 1, 2 only: their copy of the key (DER); empty in 3 */
    struct torii_slice issuer_hash; /* TORII_CERTREC_ISSUER_HASH_LEN bytes; empty in v1 */
    struct torii_slice serial;      /* DER INTEGER, 3..TORII_CERTREC_SERIAL_MAX; empty in v1 */
};

/** Build the record from an enriched entity. TORII_EINVAL if chain/key do not parse. */
int torii_certrec_build(const json_t *entity, unsigned char **out, size_t *out_len,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** A record without the key copy of a version 1 or 2 record: *out (malloc'd) is the same
 * record as version 3 (key type and flags kept, no key bytes); *out = NULL when rec holds no
 * key bytes (nothing to drop). TORII_EINVAL when blob does not decode. */
int torii_certrec_drop_key(const unsigned char *rec, size_t len, unsigned char **out,
                           size_t *out_len) TORII_MUST_USE;

/** Why the certificate of an entity (its chain's leaf, its client/keypair fields) will never
 * be chosen for a TLS handshake by SNI: *out is a new JSON array of sentences such as
 * "not served by SNI: CA certificate (basicConstraints CA:TRUE)" (CA, key pair, client, usages
 * without TLS server authentication), empty when none applies. Revocation, validity and the
 * private key are not reported (they change, or are reported by `valid`). TORII_EINVAL when
 * the chain does not parse, TORII_ENOMEM. */
int torii_certrec_sni_warnings(const json_t *entity, json_t **out) TORII_MUST_USE;

/** Decode a record (no allocation; rec is large, keep it off small stacks). Version 3
 * records (what torii_certrec_build writes), summaries (torii_certrec_summary) and legacy version 1
 * records (written before the issuer hash and serial were added; both slices are then empty) are
 * accepted. TORII_EINVAL on a truncated or malformed blob (bad magic/version, counts over the
 * TORII_CERTREC_MAX_* limits, lengths past the end, an issuer hash or serial of the wrong
 * size or shape, trailing bytes); *rec is then unspecified. Format: see src/pki/certrec.c.
 * key_der.len is 0 without HAS_KEY and in version 3 records. */
int torii_certrec_decode(const unsigned char *buf, size_t len, struct torii_certrec *rec)
    TORII_MUST_USE;

/** The summary of a version 2 or 3 record: the same record without its chain (n_chain 0,
 * summary 1 once decoded), for certdb's compact index: what the TLS table and the PKI view
 * read at start-up. *out is malloc'd. TORII_ENOTFOUND for a version 1 record (no issuer hash
 * and serial: keep the whole record) or a summary; TORII_EINVAL when blob does not decode. */
int torii_certrec_summary(const unsigned char *blob, size_t len, unsigned char **out,
                          size_t *out_len) TORII_MUST_USE;

/** The record's flags (TORII_CERTREC_*) read from its header; 0 for a blob that is not a
 * record. No allocation, no parse. */
uint32_t torii_certrec_flags(const unsigned char *blob, size_t len);

/** torii_certrec_sni_warnings from record flags (torii_certrec_flags): no chain parse. */
int torii_certrec_sni_warnings_of(uint32_t flags, json_t **out) TORII_MUST_USE;

/** The leaf serial of a decoded version 2 record as torii_pki_cert_serial_hex prints it.
 * TORII_ENOTFOUND for a version 1 record (no serial), TORII_EINVAL when it does not print. */
int torii_certrec_serial_hex(const struct torii_certrec *rec, char *buf, size_t len) TORII_MUST_USE;

#endif
