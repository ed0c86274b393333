/* testpki.h - test-only helpers that generate keys and certificates in memory with chosen
 * names and validity dates (no private key is ever committed to the repo).
 * Threads: any thread. Ownership: returned objects/strings are owned by the caller. */
#ifndef TORII_TESTPKI_H
#define TORII_TESTPKI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct testpki_opts {
    int key_type;           /* EVP_PKEY_EC (P-256) or EVP_PKEY_RSA */
    int bits;               /* RSA bits (default 2048) or EC curve bits 256/384 */
    const char *cn;         /* subject CN, may be NULL */
    const char *const *dns; /* DNS SANs */
    size_t n_dns;
    const char *const *ips; /* IP SANs, textual */
    size_t n_ips;
    int64_t not_before_off_s; /* relative to now (may be negative) */
    int64_t not_after_off_s;  /* relative to now; 0 = +365 days */
    int is_ca;                /* basicConstraints CA:TRUE, keyCertSign */
    int client;               /* EKU clientAuth instead of serverAuth */
    X509 *issuer;             /* NULL = self-signed */
    EVP_PKEY *issuer_key;
};

/** Generate a key (or reuse *key if non-NULL) and a certificate; 0 on success. */
int testpki_make(const struct testpki_opts *o, X509 **cert, EVP_PKEY **key);
/** PEM text (malloc'd, NUL-terminated). password non-NULL -> encrypted PKCS#8 (AES-256-CBC). */
char *testpki_cert_pem(X509 *c);
char *testpki_key_pem(EVP_PKEY *k, const char *password);
/** Traditional PEM ("BEGIN RSA/EC PRIVATE KEY"); password non-NULL -> "Proc-Type: 4,ENCRYPTED"
 * (AES-128-CBC). malloc'd. */
char *testpki_key_pem_traditional(EVP_PKEY *k, const char *password);
/** A minimal (not yet normalized or enriched) certificate entity:
 * {"id", "chain": PEM of chain[0..n) leaf first, "privateKey": PEM of key ("" when NULL),
 * encrypted PKCS#8 when password != NULL, "password"}. Caller json_decref()s. NULL on failure.
 * Typical use: e = testpki_entity(...); torii_cert_normalize(e); torii_cert_enrich(e, now). */
json_t *testpki_entity(const char *id, X509 *const *chain, size_t n_chain, EVP_PKEY *key,
                       const char *password);
/** The first certificate of a PEM text, or of an entity's "chain" (its leaf); NULL when there
 * is none. Caller X509_free()s. */
X509 *testpki_pem_cert(const char *pem);
X509 *testpki_entity_leaf(const json_t *entity);
/** testpki_entity (no password) then torii_cert_normalize and torii_cert_enrich at the current
 * time: the entity as the store holds it. NULL on any failure. Caller json_decref()s. */
json_t *testpki_entity_enriched(const char *id, X509 *const *chain, size_t n_chain, EVP_PKEY *key);

/* A CA and a leaf it issued, with their stored entities: the renewal tests' fixture.
 * ca: EC P-256 "Unit CA", valid from an hour ago for 10 years; entity "ca" (with its key).
 * leaf: RSA-2048 "a.test", SANs a.test and b.test, 10 days long with 1 day left; entity
 * "leaf" (chain leaf then CA, with its key, caRef "ca"). */
struct testpki_ca_leaf {
    X509 *ca;
    EVP_PKEY *ca_key;
    json_t *ca_ent;
    X509 *leaf;
    EVP_PKEY *leaf_key;
    json_t *leaf_ent;
};

/** Fill *f (zeroed first); 0 on success, -1 on failure with everything freed. */
int testpki_ca_leaf_make(struct testpki_ca_leaf *f);
/** Free what testpki_ca_leaf_make made and zero *f; safe on a zeroed struct. */
void testpki_ca_leaf_clear(struct testpki_ca_leaf *f);

#endif
