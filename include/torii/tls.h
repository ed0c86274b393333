/* tls.h - TLS contexts. (1) The listener: one SSL_CTX shared by every worker and
 * certificate; TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers, one stateless session
 * ticket per handshake (keys rotated by torii_tls_ctx_rotate_tickets, or a shared set
 * installed from outside with torii_tls_tickets_install); a client-hello
 * callback selects the certificate from the table (table.h) by SNI and applies the route's
 * client-certificate policy (edge mTLS). (2) Trust sets: CAs named by table ids, refreshed
 * when those entries change. (3) Upstream contexts: client TLS to backends, verifying them
 * and presenting a client certificate read from the table at connection time (backend mTLS).
 * Threads: ctx new/free/rotate and upstream/trust new/free from the main thread; handshakes,
 * conn_new and the per-connection queries on worker threads registered as table readers.
 * Ownership: the table is borrowed and must outlive every context and trust set. SSL objects
 * made here belong to the caller (usually handed to a bufferevent); what a connection was
 * given (certificate reference, client-auth state) lives in its ex_data until SSL_free. */
#ifndef TORII_TLS_H
#define TORII_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "torii/err.h"
#include "torii/table.h"

struct torii_tls_ctx;
struct torii_tls_trust;

/* ---- trust sets (edge client CAs, backend server CAs) ---- */

/** A set of trusted CAs named by certificate ids of the table (ids copied). Its X509_STORE is
 * built on first use and rebuilt when one of those entries is added, replaced or removed
 * (table references compared), so renewing or replacing a CA applies to the next handshake
 * without a restart. An id absent from the table, a revoked entry or one whose chain does not
 * parse is left out (nothing trusted for it). The leaf of each entry is a trust anchor, also
 * when it is an intermediate (partial chains are accepted). n may be 0: nothing is trusted.
 * TORII_EINVAL (eb says why) for a NULL table, NULL ids with n > 0, or an empty id. */
int torii_tls_trust_new(struct torii_table *table, const char *const *ca_ids, size_t n,
                        struct torii_tls_trust **out, struct torii_errbuf *eb) TORII_MUST_USE;
/** NULL accepted. No handshake may still be using it (contexts and SSLs keep their own
 * references to the OpenSSL objects, so live connections are unaffected). */
void torii_tls_trust_free(struct torii_tls_trust *tr);
/** How many anchors the current view holds (refreshing it first); negative on error. For
 * diagnostics and tests. Registered reader threads only. */
int torii_tls_trust_count(struct torii_tls_trust *tr) TORII_MUST_USE;

/* ---- edge client certificates (per route, chosen by SNI) ---- */

enum torii_tls_client_auth_mode {
    TORII_TLS_CLIENT_AUTH_NONE = 0, /* no CertificateRequest */
    TORII_TLS_CLIENT_AUTH_OPTIONAL, /* request a certificate; none is fine */
    TORII_TLS_CLIENT_AUTH_REQUIRED, /* the handshake fails without a certificate */
};

/** A route's client-certificate policy, owned by the proxy. */
struct torii_tls_client_auth {
    enum torii_tls_client_auth_mode mode;
    struct torii_tls_trust *trust; /* trusted client CAs; NULL trusts nothing */
};

/** The proxy's policy lookup: the policy for a host (normalized SNI: lower case, no trailing
 * dot, not NUL-terminated; NULL with len 0 when the client sent none), or NULL for none. Runs
 * in the client-hello callback on a worker thread: no blocking, no allocation needed. The
 * returned policy (and its trust set) must stay valid until the callback returns. */
typedef const struct torii_tls_client_auth *(*torii_tls_client_auth_lookup_cb)(void *arg,
                                                                               const char *host,
                                                                               size_t len);

/** OCSP stapling (RFC 6066 section 8): the DER OCSPResponse to staple for the certificate
 * chosen for a connection (entity id), as a malloc'd copy in *der; TORII_ENOTFOUND: none.
 * Called on worker threads during handshakes of clients that ask for it: must not block. */
typedef int (*torii_tls_ocsp_staple_cb)(void *arg, const char *cert_id, unsigned char **der,
                                        size_t *len);

/** TLS-ALPN-01 (RFC 8737): the validation certificate for name (lower case) as the blob of
 * torii_pki_acme_alpn_record (pki_acme.h; *rec malloc'd, holds the key: the caller wipes it
 * with torii_secure_free), TORII_ENOTFOUND when no
 * challenge is pending for name. Called on worker threads. */
typedef int (*torii_tls_acme_alpn_cb)(void *arg, const char *name, unsigned char **rec,
                                      size_t *rec_len);

/** On-demand certificates (acme.h): 1 when a handshake for name (lower case), which has no
 * certificate, should wait for one; 0: serve the default. done: a waiting handshake got its
 * certificate (served 1) or reached its deadline (0). Called on worker threads. */
typedef int (*torii_tls_on_demand_cb)(void *arg, const char *name);
typedef void (*torii_tls_on_demand_done_cb)(void *arg, int served);
/** 1 while the certificate for name may still come (its order is in flight). */
typedef int (*torii_tls_on_demand_pending_cb)(void *arg, const char *name);

/** HTTP/2 policy by TLS server name (len bytes; NULL: no SNI): 1 when ALPN h2 may be chosen.
 * Called on worker threads, in the ClientHello pass. */
typedef int (*torii_tls_h2_cb)(void *arg, const char *name, size_t len);

struct torii_tls_opts {
    struct torii_table *table; /* borrowed */
    int strict_sni;            /* unrecognized_name alert instead of the default certificate */
    torii_tls_client_auth_lookup_cb client_auth_lookup; /* NULL: no client certificates */
    void *client_auth_arg;                              /* passed to client_auth_lookup */
    torii_tls_ocsp_staple_cb ocsp_staple;               /* NULL: no OCSP stapling */
    void *ocsp_staple_arg;                              /* passed to ocsp_staple */
    /* A ClientHello offering ALPN "acme-tls/1" with a name that acme_alpn knows gets that
     * validation certificate and the acme-tls/1 protocol, nothing else; other clients never
     * see it. NULL: acme-tls/1 is never negotiated. */
    torii_tls_acme_alpn_cb acme_alpn;
    void *acme_alpn_arg;
    /* ALPN (RFC 7301) for every other ClientHello: "h2" when http2 is on, the client offers
     * it and h2_allowed (NULL: always) agrees for the server name, else "http/1.1" when
     * offered, else no ALPN. The choice is read with torii_tls_conn_h2. */
    int http2;
    torii_tls_h2_cb h2_allowed;
    void *h2_arg;
    /* A ClientHello naming a host with no certificate of its own, that on_demand says to
     * wait for, is suspended (SSL_CLIENT_HELLO_RETRY; the stream retries it without
     * blocking the worker) until the table has a certificate for the name, or for at most
     * on_demand_wait_ms, then served that certificate or the default one. NULL: off. */
    torii_tls_on_demand_cb on_demand;
    torii_tls_on_demand_done_cb on_demand_done;
    torii_tls_on_demand_pending_cb on_demand_pending; /* required with on_demand */
    void *on_demand_arg;
    unsigned on_demand_wait_ms;
    /* Session ticket keys shared with other contexts and filled from outside (fleet mode:
     * the fleet's key set, installed with torii_tls_tickets_install); borrowed, must outlive
     * the context. NULL: the context makes its own key, rotated by
     * torii_tls_ctx_rotate_tickets. */
    struct torii_tls_tickets *tickets;
};

int torii_tls_ctx_new(const struct torii_tls_opts *opts, struct torii_tls_ctx **out,
                      struct torii_errbuf *eb) TORII_MUST_USE;
void torii_tls_ctx_free(struct torii_tls_ctx *tc);

/** A new server SSL for one accepted connection; NULL on failure (OpenSSL errors drained). */
SSL *torii_tls_conn_new(struct torii_tls_ctx *tc);

/** Generate a new ticket encryption key; the previous one still decrypts (then re-issues).
 * On a context given opts.tickets this rotates that shared set (fleet mode never does). */
int torii_tls_ctx_rotate_tickets(struct torii_tls_ctx *tc) TORII_MUST_USE;

/* ---- session ticket keys supplied from outside (fleet mode, docs/fleet.md) ---- */

/* One ticket key: name (16 bytes, sent in clear in every ticket) | AES-256-CBC key (32) |
 * HMAC-SHA256 key (32). Secret: never logged, wiped after use. */
#define TORII_TLS_TICKET_KEY_LEN 80

/** A key set: k[0] encrypts new tickets, k[1] (when n == 2) still decrypts older ones. */
struct torii_tls_ticket_keys {
    unsigned char k[2][TORII_TLS_TICKET_KEY_LEN];
    size_t n; /* 1 or 2 */
};

/** A ticket key set that several listener contexts share (torii_tls_opts.tickets). */
struct torii_tls_tickets;

/** A shared set holding one fresh random key (used until a set is installed). TORII_EIO when
 * the random generator fails. Main thread. */
int torii_tls_tickets_new(struct torii_tls_tickets **out) TORII_MUST_USE;
/** Wipe and free; NULL accepted. After every context using it is freed. */
void torii_tls_tickets_free(struct torii_tls_tickets *t);
/** Replace the keys of t by ks (copied) for the next handshakes. TORII_EINVAL when ks->n is
 * not 1 or 2, or both keys have the same name. Any thread. */
int torii_tls_tickets_install(struct torii_tls_tickets *t, const struct torii_tls_ticket_keys *ks)
    TORII_MUST_USE;

/** 1 when the handshake of ssl selected ALPN "h2". */
int torii_tls_conn_h2(const SSL *ssl);

/** The certificate chosen for this connection (borrowed for the life of the SSL), or NULL. */
struct torii_tls_cert *torii_tls_conn_cert(const SSL *ssl);

/** Outcome of edge client authentication on an accepted connection. */
enum torii_tls_client_verdict {
    TORII_TLS_CLIENT_NONE = 0, /* no policy, or no certificate where it is optional */
    TORII_TLS_CLIENT_VERIFIED, /* chain trusted, in validity, not revoked in the store */
    TORII_TLS_CLIENT_REJECTED, /* presented but unacceptable (answer 403 per request) */
};

/** The client-certificate verdict of a connection after its handshake. A certificate that is
 * presented but untrusted, expired or not yet valid, of the wrong purpose, or revoked (the
 * store's `revoked` flag of its entity, or of a certificate of its chain, found by issuer and
 * serial) does not fail the handshake: it is REJECTED here, so the proxy can answer 403.
 * A resumed session keeps the verdict of its chain (sessions never resume across policies
 * or trust changes); revocation is checked again on every connection. *reason (may be NULL)
 * gets a short static text for logs ("verified", "certificate revoked", OpenSSL's verify
 * error text, ...). Before the handshake has finished: REJECTED ("handshake not finished"),
 * not cached. Computed once, then cached: worker thread owning the SSL, registered as
 * a table reader. */
enum torii_tls_client_verdict torii_tls_conn_client_verdict(const SSL *ssl, const char **reason);

/** RFC 9440 header values of the connection's client certificate: *client_cert =
 * ":<base64 DER of the leaf>:" (a structured-field byte sequence); *client_cert_chain (may be
 * NULL: not wanted) = the other certificates the client sent, in order, as comma-separated
 * byte sequences, or NULL when it sent none (omit the header then). Both malloc'd, NUL-
 * terminated, freed by the caller; written only on success. Encodes whatever was presented:
 * check torii_tls_conn_client_verdict first. TORII_ENOTFOUND without a client certificate,
 * TORII_EINVAL for NULL arguments, TORII_ETLS when a certificate does not encode. */
int torii_tls_client_cert_headers(SSL *ssl, char **client_cert, char **client_cert_chain)
    TORII_MUST_USE;

/* ---- upstream (backend) TLS ---- */

struct torii_tls_upstream;

struct torii_tls_upstream_opts {
    struct torii_table *table;  /* borrowed; needed when an id below is set */
    const char *trusted_ca_id;  /* CA of the backend's certificate (table id); NULL: the
                                 * system trust store */
    const char *client_cert_id; /* certificate to present (table id, with its key); NULL:
                                 * none */
    const char *sni;            /* server name to send and verify; NULL: the host given to
                                 * torii_tls_upstream_conn_new */
    int insecure;               /* 1: verify neither the chain nor the name (explicit opt-in;
                                 * 0, the default, verifies both) */
};

/** A client TLS context for one route backend: TLS 1.2/1.3, chain verification against the
 * trusted CA (a trust set of one id, refreshed when that entry changes) or the system store,
 * and client session resumption (the last session is kept and offered again to the same
 * name while the client certificate and trust are unchanged). Strings are copied.
 * TORII_EINVAL (eb says why) for NULL o/out, an empty id, or an id without a table;
 * TORII_ETLS when OpenSSL fails. An id absent from the table is not an error here (entries
 * may arrive later): connections fail until it exists. */
int torii_tls_upstream_new(const struct torii_tls_upstream_opts *o, struct torii_tls_upstream **out,
                           struct torii_errbuf *eb) TORII_MUST_USE;
/** NULL accepted. SSLs made from it stay usable (they hold their own references). */
void torii_tls_upstream_free(struct torii_tls_upstream *u);

/** A new client SSL (connect state) for one backend connection. host: the target host name or
 * IP literal (NUL-terminated; used for SNI and verification unless opts.sni is set; IP
 * literals are verified against IP SANs and sent without SNI, RFC 6066 3). The client
 * certificate is read from the table now (SSL_use_cert_and_key on this SSL), so a renewed or
 * replaced certificate is presented by the next connection. Returns NULL, with a log line
 * naming the cause, when host is empty, the client certificate is missing, revoked or
 * without a matching key, or OpenSSL fails. After a failed handshake,
 * SSL_get_verify_result() tells why the backend was refused. Worker threads registered as
 * table readers (any such thread; internally locked for the session slot). */
SSL *torii_tls_upstream_conn_new(struct torii_tls_upstream *u, const char *host);

/** Parse a raw server_name extension body (RFC 6066 section 3) into the host name slice.
 * TORII_EPROTO on malformed input. Exposed for tests. */
int torii_tls_parse_sni(const unsigned char *ext, size_t len, const char **name, size_t *name_len)
    TORII_MUST_USE;
/** Scan a signature_algorithms extension body for ECDSA / RSA schemes. Exposed for tests. */
int torii_tls_parse_sigalgs(const unsigned char *ext, size_t len, int *ecdsa_ok, int *rsa_ok)
    TORII_MUST_USE;
/** Scan a ClientHello supported_versions extension body (RFC 8446 4.2.1: u8 length, then
 * u16 versions) for TLS 1.3 (0x0304): *tls13 = 1 when listed, else 0. TORII_EPROTO on
 * malformed input (odd or inconsistent length, empty list). Exposed for tests. */
int torii_tls_parse_versions(const unsigned char *ext, size_t len, int *tls13) TORII_MUST_USE;

#endif
