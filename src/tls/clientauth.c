/* clientauth.c - edge client certificates: the per-route policy applied in the client-hello
 * callback, the verdict of a connection, and the RFC 9440 header values.
 *
 * Verification never fails the handshake for a certificate that is presented: the verify
 * callback accepts every chain and remembers the first error, and the verdict is derived
 * after the handshake (so the proxy can answer 403 JSON instead of a bare TLS alert). Only a
 * missing certificate under `required` fails the handshake (SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
 *
 * Resumption: every connection under a policy gets a session id context derived from the
 * policy mode and the trust view's unique generation. OpenSSL resumes a session (ticket or
 * TLS 1.3 PSK) only when the contexts match, so a session made on a host without client
 * authentication, under another policy, or before a trusted CA changed is never resumed
 * here (a full handshake verifies again). Revocation is checked on every connection.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls_int.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/table.h"
#include "torii/tls.h"

struct tls_client_state {
    struct torii_table *table;
    enum torii_tls_client_auth_mode mode;
    int first_err; /* first X509_V_ERR_* the verify callback saw; 0 none */
    int done;      /* verdict computed */
    enum torii_tls_client_verdict verdict;
    const char *reason;
};

static int client_verify_cb(int ok, X509_STORE_CTX *xs)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_client_state *st = ssl != NULL ? SSL_get_ex_data(ssl, ex->client) : NULL;

    if (!ok && st != NULL && st->first_err == 0) {
        st->first_err = X509_STORE_CTX_get_error(xs);
    }
    /* Judged after the handshake (torii_tls_conn_client_verdict). */
    return 1;
}

/* Session id context: SHA-256("torii client auth" | mode | view generation). */
static int client_sid_ctx(enum torii_tls_client_auth_mode mode, uint64_t gen,
                          unsigned char out[SSL_MAX_SID_CTX_LENGTH])
{
    static const char label[] = "torii client auth";
    unsigned char buf[sizeof(label) + 1 + 8];
    unsigned int n = 0;

    memcpy(buf, label, sizeof(label));
    buf[sizeof(label)] = (unsigned char)mode;
    for (int i = 0; i < 8; i++) {
        buf[sizeof(label) + 1 + i] = (unsigned char)(gen >> (8 * i));
    }
    if (EVP_Digest(buf, sizeof(buf), out, &n, EVP_sha256(), NULL) != 1
        || n != SSL_MAX_SID_CTX_LENGTH) {
        return TORII_ETLS;
    }
    return TORII_OK;
}

/* The policy's anchors and CA names; no trust set means nothing is trusted (every presented
 * certificate is rejected). */
static int client_policy_trust(const struct torii_tls_client_auth *pol, X509_STORE **store,
                               STACK_OF(X509_NAME) * *names, uint64_t *gen)
{
    if (pol->trust != NULL) {
        return torii_tls__trust_acquire(pol->trust, store, names, gen);
    }
    *gen = 0;
    *store = X509_STORE_new();
    *names = sk_X509_NAME_new_null();
    if (*store == NULL || *names == NULL) {
        X509_STORE_free(*store);
        sk_X509_NAME_free(*names);
        *store = NULL;
        *names = NULL;
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

int torii_tls__client_auth_apply(SSL *ssl, struct torii_table *table,
                                 torii_tls_client_auth_lookup_cb lookup, void *arg,
                                 const char *host, size_t host_len)
{
    int rc = TORII_OK;
    const struct torii_tls__ex *ex = torii_tls__ex();
    const struct torii_tls_client_auth *pol;
    struct tls_client_state *st = NULL;
    X509_STORE *store = NULL;
    STACK_OF(X509_NAME) *names = NULL;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    uint64_t gen = 0;
    int vmode;

    if (lookup == NULL) {
        return TORII_OK;
    }
    pol = lookup(arg, host, host_len);
    if (pol == NULL || pol->mode == TORII_TLS_CLIENT_AUTH_NONE) {
        return TORII_OK;
    }
    TORII_ENSURE(ex != NULL, TORII_ETLS);
    TORII_TRY(client_policy_trust(pol, &store, &names, &gen));
    st = torii_xcalloc(1, sizeof(*st));
    st->table = table;
    st->mode = pol->mode;
    TORII_TRY(client_sid_ctx(pol->mode, gen, sid));
    TORII_ENSURE(SSL_set_ex_data(ssl, ex->client, st) == 1, TORII_ETLS);
    st = NULL; /* freed with the SSL from now on */
    TORII_ENSURE(SSL_set1_verify_cert_store(ssl, store) == 1
                     && SSL_set_session_id_context(ssl, sid, sizeof(sid)) == 1,
                 TORII_ETLS);
    /* The acceptable CAs (TLS 1.3 certificate_authorities, TLS 1.2 CertificateRequest). */
    SSL_set0_CA_list(ssl, names);
    names = NULL;
    X509_VERIFY_PARAM_set_flags(SSL_get0_param(ssl), X509_V_FLAG_PARTIAL_CHAIN);
    torii_tls__set_verify_time(ssl);
    vmode = SSL_VERIFY_PEER;
    if (pol->mode == TORII_TLS_CLIENT_AUTH_REQUIRED) {
        vmode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_set_verify(ssl, vmode, client_verify_cb);
out:
    if (rc != TORII_OK) {
        char errs[200];
        torii_ossl_errors(errs, sizeof(errs));
        torii_log(TORII_LOG_WARN, "tls: client authentication setup failed: %s: %s",
                  torii_strerror(rc), errs);
    }
    free(st);
    X509_STORE_free(store);
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return rc;
}

/* 1 when x or any certificate of chain is revoked in the store; <0 on error. */
static int client_revoked(struct torii_table *t, X509 *leaf, STACK_OF(X509) * chain)
{
    int revoked = 0;
    int n = torii_table_issuer_serial(t, leaf, &revoked);

    if (n < 0) {
        return n;
    }
    for (int i = 0; !revoked && i < sk_X509_num(chain); i++) {
        int r = 0;
        n = torii_table_issuer_serial(t, sk_X509_value(chain, i), &r);
        if (n < 0) {
            return n;
        }
        revoked = r;
    }
    return revoked;
}

static void client_verdict_compute(const SSL *ssl, struct tls_client_state *st)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    long vr;
    int rev;

    st->done = 1;
    if (peer == NULL) {
        /* A resumed session under the same policy had a certificate or was optional, so this
         * is defence in depth for `required`. */
        st->verdict = st->mode == TORII_TLS_CLIENT_AUTH_REQUIRED ? TORII_TLS_CLIENT_REJECTED
                                                                 : TORII_TLS_CLIENT_NONE;
        st->reason = "no client certificate";
        return;
    }
    vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK || st->first_err != 0) {
        st->verdict = TORII_TLS_CLIENT_REJECTED;
        st->reason = X509_verify_cert_error_string(st->first_err != 0 ? st->first_err : vr);
        return;
    }
    /* The verified chain (leaf to anchor) on a full handshake; the leaf alone on resumption,
     * where OpenSSL keeps no chain. */
    rev = client_revoked(st->table, peer, SSL_get0_verified_chain(ssl));
    if (rev != 0) {
        st->verdict = TORII_TLS_CLIENT_REJECTED;
        st->reason = rev > 0 ? "certificate revoked" : "revocation check failed";
        return;
    }
    st->verdict = TORII_TLS_CLIENT_VERIFIED;
    st->reason = "verified";
}

enum torii_tls_client_verdict torii_tls_conn_client_verdict(const SSL *ssl, const char **reason)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    struct tls_client_state *st = NULL;

    if (ssl != NULL && ex != NULL) {
        st = SSL_get_ex_data(ssl, ex->client);
    }
    if (st == NULL) {
        if (reason != NULL) {
            *reason = "no client authentication";
        }
        return TORII_TLS_CLIENT_NONE;
    }
    if (!SSL_is_init_finished(ssl)) {
        /* Too early to judge (nothing cached): the handshake is still running. */
        if (reason != NULL) {
            *reason = "handshake not finished";
        }
        return st->mode == TORII_TLS_CLIENT_AUTH_NONE ? TORII_TLS_CLIENT_NONE
                                                      : TORII_TLS_CLIENT_REJECTED;
    }
    if (!st->done) {
        client_verdict_compute(ssl, st);
    }
    if (reason != NULL) {
        *reason = st->reason;
    }
    return st->verdict;
}

/* ":" base64(DER) ":" appended to the heap string *buf at *used (grown as needed). */
static int client_sf_bytes(X509 *x, char **buf, size_t *cap, size_t *used)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    size_t need;

    if (len <= 0) {
        ERR_clear_error();
        return TORII_ETLS;
    }
    /* The base64, two colons, ", " separator, NUL. */
    need = *used + TORII_B64_ENCODED_MAX(len) + 5;
    if (need > *cap || *buf == NULL) {
        /* OOM aborts (mem.h), as for every other allocation of ours. */
        *buf = torii_xrealloc(*buf, need);
        *cap = need;
    }
    if (*used > 0) {
        (*buf)[(*used)++] = ',';
        (*buf)[(*used)++] = ' ';
    }
    (*buf)[(*used)++] = ':';
    *used += torii_b64_encode_to(der, (size_t)len, 0, *buf + *used);
    (*buf)[(*used)++] = ':';
    (*buf)[*used] = '\0';
    OPENSSL_free(der);
    return TORII_OK;
}

int torii_tls_client_cert_headers(SSL *ssl, char **client_cert, char **client_cert_chain)
{
    int rc = TORII_OK;
    X509 *peer;
    STACK_OF(X509) * sent;
    char *cert = NULL;
    char *chain = NULL;
    size_t cap = 0;
    size_t used = 0;

    TORII_ENSURE(ssl != NULL && client_cert != NULL, TORII_EINVAL);
    peer = SSL_get0_peer_certificate(ssl);
    TORII_ENSURE(peer != NULL, TORII_ENOTFOUND);
    TORII_TRY(client_sf_bytes(peer, &cert, &cap, &used));
    if (client_cert_chain != NULL) {
        /* RFC 9440 2.2: the chain without the end-entity certificate, in the order sent. On
         * the server side OpenSSL's list already omits the leaf; skip it anyway if present. */
        sent = SSL_get_peer_cert_chain(ssl);
        cap = 0;
        used = 0;
        for (int i = 0; i < sk_X509_num(sent); i++) {
            X509 *x = sk_X509_value(sent, i);
            if (X509_cmp(x, peer) == 0) {
                continue;
            }
            TORII_TRY(client_sf_bytes(x, &chain, &cap, &used));
        }
    }
    *client_cert = cert;
    cert = NULL;
    if (client_cert_chain != NULL) {
        *client_cert_chain = chain;
        chain = NULL;
    }
out:
    free(cert);
    free(chain);
    return rc;
}
