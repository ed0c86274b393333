/* table.h - the certificate table handshakes read: lower-cased host name (exact SAN or
 * "*.suffix" wildcard) -> candidate certificates, on a liburcu lock-free hash table.
 * Readers (workers, in the client-hello callback) take no lock and allocate nothing; a writer
 * replaces only the entries of the certificate that changed and frees old ones after an RCU
 * grace period (call_rcu).
 * Threads: torii_table_select: any thread registered with torii_table_reader_register();
 * update/default: any thread (internally locked, writers serialized).
 * Ownership: torii_table_select returns a counted reference the caller releases with
 * torii_tls_cert_unref(); X509/EVP_PKEY pointers from torii_tls_cert_get are borrowed for as
 * long as that reference is held, so a connection keeps what it was handed after a replace. */
#ifndef TORII_TABLE_H
#define TORII_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "torii/err.h"

struct torii_table;
struct torii_tls_cert;

int torii_table_new(struct torii_table **out) TORII_MUST_USE;
/** Free; NULL accepted. Waits for readers (synchronize_rcu); no reader may still be active. */
void torii_table_free(struct torii_table *t);

/** Register / unregister the calling thread as an RCU reader (once per thread). */
void torii_table_reader_register(void);
void torii_table_reader_unregister(void);

/** Insert or replace certificate `id` from its TLS record (pki.h), or remove it when rec is
 * NULL. Cost is proportional to the certificate's names. TORII_EINVAL on a bad record. */
int torii_table_update(struct torii_table *t, const char *id, const unsigned char *rec,
                       size_t rec_len, struct torii_errbuf *eb) TORII_MUST_USE;

/** Name the default certificate (by id; may be set before the certificate exists). */
void torii_table_set_default(struct torii_table *t, const char *id);

/** What the client offered. */
struct torii_sni_query {
    const char *name; /* SNI, not NUL-terminated; NULL when absent */
    size_t name_len;
    int ecdsa_ok; /* client offered an ECDSA signature algorithm */
    int rsa_ok;   /* client offered an RSA signature algorithm (or sent none at all) */
    int64_t now_ms;
};

enum torii_sni_match {
    TORII_SNI_EXACT = 0,
    TORII_SNI_WILDCARD,
    TORII_SNI_DEFAULT,
};

/** Select by the rule: exact > one-label wildcard > default; usable only (has key, not
 * revoked, in validity, not CA-only/client-only/keypair), ECDSA when offered else RSA, latest
 * notAfter wins. Names compared case-insensitively, trailing dot ignored.
 * Returns TORII_OK (with *out a new reference and *match set) or TORII_ENOTFOUND. */
int torii_table_select(struct torii_table *t, const struct torii_sni_query *q,
                       struct torii_tls_cert **out, enum torii_sni_match *match) TORII_MUST_USE;

/** The parsed materials (parsed once, lazily, on first use). TORII_ETLS if they do not parse. */
int torii_tls_cert_get(struct torii_tls_cert *c, X509 **leaf, EVP_PKEY **key,
                       STACK_OF(X509) **chain) TORII_MUST_USE;
/** The entity id (borrowed for the life of the reference). */
const char *torii_tls_cert_id(const struct torii_tls_cert *c);
void torii_tls_cert_ref(struct torii_tls_cert *c);
void torii_tls_cert_unref(struct torii_tls_cert *c);

/** Number of certificates currently in the table. */
size_t torii_table_size(struct torii_table *t);

#endif
