/* pki_identity.h - a stored certificate as a TLS client identity. Part of pki.h.
 * Threads: any thread once built (immutable); its one owner frees it.
 * Ownership: as stated per function. */
#ifndef TORII_PKI_IDENTITY_H
#define TORII_PKI_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "torii/err.h"

/* ---- TLS client identity ----
 * For modules that authenticate as a stored certificate (the webhook exporter's
 * tls.client_cert): they get an opaque identity and install it on an SSL_CTX; the private key
 * is parsed and held only here (STYLE 2.1). An identity is immutable once built: any thread
 * may use it, its one owner frees it. */

struct torii_pki_identity;

struct torii_pki_key_src;

/** Parse an identity (leaf, issuers) out of a TLS record (the aux blob stored with the
 * entity; borrowed) and open its private key from key (the entity's privateKey, maybe sealed:
 * torii_pki_key_open; borrowed). *out is new (free with
 * torii_pki_identity_free), written only on success. TORII_EINVAL, eb saying why (never
 * quoting key material): the record does not decode, has no private key, a certificate or
 * the key does not parse, or the key does not match the leaf. TORII_ENOMEM. The OpenSSL
 * error queue is left empty. */
int torii_pki_identity_new(const unsigned char *rec, size_t rec_len,
                           const struct torii_pki_key_src *key, struct torii_pki_identity **out,
                           struct torii_errbuf *eb) TORII_MUST_USE;

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

#endif
