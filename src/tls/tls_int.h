/* tls_int.h - helpers shared by the files of the tls module only (exdata.c, ctx.c, trust.c,
 * clientauth.c, upstream.c); no other module includes this header. Files depend one way
 * (scripts/include_cycles.sh): ctx -> clientauth -> trust -> table, upstream -> trust,
 * ctx, clientauth, upstream -> exdata -> table.
 * Threads: as stated per function. Ownership: as stated per function. */
#ifndef TORII_TLS_INT_H
#define TORII_TLS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "torii/tls.h"

/** OpenSSL ex_data slots of the module, registered once per process. */
struct torii_tls__ex {
    int ctx;    /* SSL_CTX -> struct torii_tls_ctx (listener) */
    int cert;   /* SSL -> struct torii_tls_cert reference (released by SSL_free) */
    int client; /* SSL -> client-auth state of an accepted connection (clientauth.c) */
    int up_ctx; /* SSL_CTX -> struct torii_tls_upstream */
    int hello;  /* SSL -> server name of the first ClientHello (heap string, "" for none) */
    int od;     /* SSL -> on-demand wait of a suspended ClientHello (heap, ondemand.c) */
};

/* ---- on-demand certificates (ondemand.c) ---- */
struct torii_tls__od {
    torii_tls_on_demand_cb decide;
    torii_tls_on_demand_done_cb done;
    torii_tls_on_demand_pending_cb pending;
    void *arg;
    unsigned wait_ms;
};
/** In the client-hello callback, after the table chose (have_cert: a certificate of the
 * name's own, not the default): 1 to suspend the hello (SSL_CLIENT_HELLO_RETRY), 0 to go on
 * with the table's choice. -1 when the wait cannot be recorded (out of memory). */
int torii_tls__on_demand(SSL *ssl, const struct torii_tls__od *od, const char *host, int have_cert);
/** 1 while ssl's ClientHello is suspended by torii_tls__on_demand. */
int torii_tls__on_demand_waiting(SSL *ssl);

/** The slots (exdata.c; registered on first call; any thread). NULL when OpenSSL could not
 * register them (errors left on the queue). The client slot's value is freed with free(). */
const struct torii_tls__ex *torii_tls__ex(void);

/** A consistent view of a trust set, refreshed from the table when one of its CA entries
 * changed: *store is a new reference (X509_STORE_free it), *names (may be NULL: not wanted)
 * a new copy of the CA subject names (sk_X509_NAME_pop_free), *gen the process-wide unique
 * generation of the view (a new one each time the set is rebuilt). Any thread registered as
 * a table reader. TORII_ENOMEM / TORII_ETLS when OpenSSL fails (nothing returned then). */
int torii_tls__trust_acquire(struct torii_tls_trust *tr, X509_STORE **store,
                             STACK_OF(X509_NAME) * *names, uint64_t *gen) TORII_MUST_USE;

/** Apply the client-auth policy of a host to an accepted connection, from the client-hello
 * callback (worker thread): nothing when lookup is NULL or the policy is NULL/NONE; else
 * verification, CA names and a session id context tied to the policy. host is the
 * normalized SNI (NULL, 0 when absent). TORII_OK, or an error after which the handshake
 * must fail with an internal_error alert. */
int torii_tls__client_auth_apply(SSL *ssl, struct torii_table *table,
                                 torii_tls_client_auth_lookup_cb lookup, void *arg,
                                 const char *host, size_t host_len) TORII_MUST_USE;

/** Set the verification time of an SSL to the injectable clock (clock.h; exdata.c). */
void torii_tls__set_verify_time(SSL *ssl);

/* ---- ALPN (acmealpn.c) ---- */
/** The listener's ALPN policy (the arg of torii_tls__alpn_select). */
struct torii_tls__alpn {
    int h2;                  /* proxy.http2 */
    torii_tls_h2_cb allowed; /* per server name; NULL: always */
    void *arg;
};

/* ---- TLS-ALPN-01 (acmealpn.c) ---- */

/** In the client-hello callback, before the table: when the hello offers ALPN acme-tls/1 and
 * cb knows name, install the validation certificate on ssl: 1; 0 when not applicable (an
 * ordinary handshake follows); -1 when the certificate could not be used (logged). */
int torii_tls__acme_alpn_hello(SSL *ssl, const char *name, torii_tls_acme_alpn_cb cb, void *arg);
/** SSL_CTX_set_alpn_select_cb callback (arg: struct torii_tls__alpn): acme-tls/1 for a
 * connection that got the validation certificate; for every other, h2 when the policy allows
 * it and the client offers it, else http/1.1 when offered, else no ALPN. */
int torii_tls__alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg);

#endif
