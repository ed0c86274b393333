/* acmealpn.c - ALPN on the https listener. ACME TLS-ALPN-01 (RFC 8737): a ClientHello that
 * offers ALPN "acme-tls/1" for a name with a pending challenge gets the validation
 * certificate (chosen in the client-hello callback, from the ACME challenge table through
 * the listener's acme_alpn callback) and the acme-tls/1 protocol. Every other ClientHello
 * never sees a validation certificate nor acme-tls/1: it gets "h2" (HTTP/2) when the
 * listener's policy allows it for the server name and the client offers it, else "http/1.1"
 * when offered, else no ALPN. Threads: worker threads (the handshake's). */
#include <string.h>

#include <openssl/ssl.h>

#include "tls_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

static const unsigned char acme_proto[] = "acme-tls/1";
#define ACME_PROTO_LEN (sizeof(acme_proto) - 1)
static const unsigned char h2_proto[] = "h2";
static const unsigned char h1_proto[] = "http/1.1";

/* 1 when the ALPN protocol list (RFC 7301 3.1, without the 2-byte length) names proto
 * (plen bytes); 0 also for a malformed list. */
static int alpn_listed(const unsigned char *p, size_t len, const unsigned char *proto, size_t plen)
{
    size_t i = 0;

    while (i < len) {
        size_t n = p[i++];
        if (n == 0 || n > len - i) {
            return 0;
        }
        if (n == plen && memcmp(p + i, proto, n) == 0) {
            return 1;
        }
        i += n;
    }
    return 0;
}

static int acme_alpn_listed(const unsigned char *p, size_t len)
{
    return alpn_listed(p, len, acme_proto, ACME_PROTO_LEN);
}

/* 1 when the ClientHello's ALPN extension offers acme-tls/1. */
static int acme_alpn_offered(SSL *ssl)
{
    const unsigned char *ext = NULL;
    size_t len = 0;

    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                  &len)
            != 1
        || len < 2 || (size_t)((ext[0] << 8) | ext[1]) != len - 2) {
        return 0;
    }
    return acme_alpn_listed(ext + 2, len - 2);
}

int torii_tls__acme_alpn_hello(SSL *ssl, const char *name, torii_tls_acme_alpn_cb cb, void *arg)
{
    unsigned char *rec = NULL;
    size_t rec_len = 0;
    struct torii_pki_identity *id = NULL;
    struct torii_errbuf eb = {{0}};
    int rc;

    if (cb == NULL || name == NULL || !acme_alpn_offered(ssl)) {
        return 0;
    }
    if (cb(arg, name, &rec, &rec_len) != TORII_OK) {
        return 0; /* no challenge pending for this name: an ordinary handshake */
    }
    rc = torii_pki_acme_alpn_identity(rec, rec_len, &id, &eb);
    if (rc == TORII_OK) {
        rc = torii_pki_identity_use_ssl(id, ssl, &eb);
    }
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_WARN, "tls: tls-alpn-01 certificate for %s not usable: %s", name,
                  eb.msg);
    }
    torii_pki_identity_free(id);
    torii_secure_free(rec, rec_len);
    return rc == TORII_OK ? 1 : -1;
}

int torii_tls__alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    const struct torii_tls__alpn *pol = arg;
    const char *sni;

    if (ex == NULL) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    /* Only a connection that got the validation certificate (no table certificate) speaks
     * acme-tls/1, and nothing else. */
    if (SSL_get_ex_data(ssl, ex->cert) == NULL) {
        if (!acme_alpn_listed(in, inlen)) {
            return SSL_TLSEXT_ERR_NOACK;
        }
        *out = acme_proto;
        *outlen = (unsigned char)ACME_PROTO_LEN;
        return SSL_TLSEXT_ERR_OK;
    }
    sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (pol != NULL && pol->h2 && alpn_listed(in, inlen, h2_proto, sizeof(h2_proto) - 1)
        && (pol->allowed == NULL || pol->allowed(pol->arg, sni, sni != NULL ? strlen(sni) : 0))) {
        *out = h2_proto;
        *outlen = (unsigned char)(sizeof(h2_proto) - 1);
        return SSL_TLSEXT_ERR_OK;
    }
    if (alpn_listed(in, inlen, h1_proto, sizeof(h1_proto) - 1)) {
        *out = h1_proto;
        *outlen = (unsigned char)(sizeof(h1_proto) - 1);
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

int torii_tls_conn_h2(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;

    if (ssl == NULL) {
        return 0;
    }
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == sizeof(h2_proto) - 1 && memcmp(p, h2_proto, len) == 0;
}
