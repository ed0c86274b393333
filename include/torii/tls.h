/* tls.h - the server-side TLS context of a listener: one SSL_CTX shared by every worker and
 * every certificate. TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers, one stateless
 * session ticket per handshake with ticket keys held here (shared by all workers, rotated by
 * torii_tls_ctx_rotate_tickets). A client-hello callback reads SNI and the client's signature
 * algorithms, selects the certificate from the table (table.h) and sets it on the connection.
 * Threads: new/free/rotate from the main thread; the callbacks run on worker threads, which
 * must be registered as table readers.
 * Ownership: the table is borrowed and must outlive the context. The SSL objects made by
 * torii_tls_conn_new belong to the caller (usually handed to a bufferevent); the certificate
 * reference chosen for a connection is kept in the SSL's ex_data and released by SSL_free. */
#ifndef TORII_TLS_H
#define TORII_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "torii/err.h"
#include "torii/table.h"

struct torii_tls_ctx;

struct torii_tls_opts {
    struct torii_table *table; /* borrowed */
    int strict_sni;            /* unrecognized_name alert instead of the default certificate */
};

int torii_tls_ctx_new(const struct torii_tls_opts *opts, struct torii_tls_ctx **out,
                      struct torii_errbuf *eb) TORII_MUST_USE;
void torii_tls_ctx_free(struct torii_tls_ctx *tc);

/** A new server SSL for one accepted connection; NULL on failure (OpenSSL errors drained). */
SSL *torii_tls_conn_new(struct torii_tls_ctx *tc);

/** Generate a new ticket encryption key; the previous one still decrypts (then re-issues). */
int torii_tls_ctx_rotate_tickets(struct torii_tls_ctx *tc) TORII_MUST_USE;

/** The certificate chosen for this connection (borrowed for the life of the SSL), or NULL. */
struct torii_tls_cert *torii_tls_conn_cert(const SSL *ssl);

/** Parse a raw server_name extension body (RFC 6066 section 3) into the host name slice.
 * TORII_EPROTO on malformed input. Exposed for tests. */
int torii_tls_parse_sni(const unsigned char *ext, size_t len, const char **name, size_t *name_len)
    TORII_MUST_USE;
/** Scan a signature_algorithms extension body for ECDSA / RSA schemes. Exposed for tests. */
int torii_tls_parse_sigalgs(const unsigned char *ext, size_t len, int *ecdsa_ok, int *rsa_ok)
    TORII_MUST_USE;

#endif
