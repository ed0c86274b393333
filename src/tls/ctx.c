/* ctx.c - the listener SSL_CTX: protocol policy, session tickets, client-hello selection. */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include "tls_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/tls.h"

/* Mozilla "intermediate" TLS 1.2 suites, and its TLS 1.3 order: AES-128-GCM first (OpenSSL's
 * default puts AES-256-GCM-SHA384 first; SHA-256 has CPU instructions where SHA-384 has none,
 * and the key schedule hashes the whole handshake: a full handshake costs less). */
#define TLS_CIPHERS_12                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_CIPHERS_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS     "X25519:P-256:P-384"

#define TLS_TICKET_KEYS 2 /* current + previous */

struct tls_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int set;
};

/* Ticket keys: written on rotation or installation, read by workers per handshake that
 * issues or resumes a ticket. */
struct torii_tls_tickets {
    pthread_rwlock_t lock;
    struct tls_ticket_key tk[TLS_TICKET_KEYS]; /* tk[0] is current */
    EVP_CIPHER *aes; /* AES-256-CBC, fetched once: EVP_aes_256_cbc() is fetched on each use */
};

struct torii_tls_ctx {
    SSL_CTX *ctx;
    struct torii_table *table;
    int strict_sni;
    torii_tls_client_auth_lookup_cb client_auth_lookup;
    void *client_auth_arg;
    torii_tls_ocsp_staple_cb ocsp_staple;
    void *ocsp_staple_arg;
    torii_tls_acme_alpn_cb acme_alpn; /* TLS-ALPN-01 validation certificates (acmealpn.c) */
    void *acme_alpn_arg;
    struct torii_tls__alpn alpn;      /* h2 / http/1.1 (acmealpn.c) */
    struct torii_tls__od od;          /* on-demand certificates (ondemand.c) */
    struct torii_tls_tickets *tk;     /* the keys in use: own_tk, or borrowed (opts.tickets) */
    struct torii_tls_tickets *own_tk; /* NULL when borrowed */
};

int torii_tls_parse_sni(const unsigned char *ext, size_t len, const char **name, size_t *name_len)
{
    size_t list_len;
    size_t n;

    /* ServerNameList: u16 length, then entries {u8 type, u16 len, bytes}. We take the first
     * host_name entry (RFC 6066 allows one per type). */
    if (len < 2) {
        return TORII_EPROTO;
    }
    list_len = ((size_t)ext[0] << 8) | ext[1];
    if (list_len != len - 2 || list_len < 3) {
        return TORII_EPROTO;
    }
    ext += 2;
    if (ext[0] != TLSEXT_NAMETYPE_host_name) {
        return TORII_EPROTO;
    }
    n = ((size_t)ext[1] << 8) | ext[2];
    if (n == 0 || n > list_len - 3 || n > 255) {
        return TORII_EPROTO;
    }
    for (size_t i = 0; i < n; i++) {
        if (ext[3 + i] == '\0') {
            return TORII_EPROTO;
        }
    }
    *name = (const char *)ext + 3;
    *name_len = n;
    return TORII_OK;
}

int torii_tls_parse_sigalgs(const unsigned char *ext, size_t len, int *ecdsa_ok, int *rsa_ok)
{
    size_t n;

    *ecdsa_ok = 0;
    *rsa_ok = 0;
    if (len < 2) {
        return TORII_EPROTO;
    }
    n = ((size_t)ext[0] << 8) | ext[1];
    if (n != len - 2 || (n & 1) != 0) {
        return TORII_EPROTO;
    }
    for (size_t i = 2; i + 1 < len; i += 2) {
        unsigned hi = ext[i];
        unsigned lo = ext[i + 1];
        /* RFC 8446 4.2.3: 0x04-0x06|03 ecdsa_secp*; 0x0203 ecdsa_sha1 (TLS 1.2). */
        if (lo == 0x03 && hi >= 0x02 && hi <= 0x06) {
            *ecdsa_ok = 1;
        }
        /* rsa_pkcs1_* (0x0201..0x0601), rsa_pss_rsae_* (0x0804..0x0806). */
        if ((lo == 0x01 && hi >= 0x02 && hi <= 0x06) || (hi == 0x08 && lo >= 0x04 && lo <= 0x06)) {
            *rsa_ok = 1;
        }
    }
    return TORII_OK;
}

int torii_tls_parse_versions(const unsigned char *ext, size_t len, int *tls13)
{
    *tls13 = 0;
    if (len < 3 || (size_t)ext[0] != len - 1 || (ext[0] & 1) != 0) {
        return TORII_EPROTO;
    }
    for (size_t i = 1; i + 1 < len; i += 2) {
        if (ext[i] == 0x03 && ext[i + 1] == 0x04) {
            *tls13 = 1;
        }
    }
    return TORII_OK;
}

/* An offered suite counts only when this listener enables it (the TLS 1.3 suites and the
 * TLS 1.2 list above): it could otherwise never be negotiated. */
static int tls_suite_enabled(const STACK_OF(SSL_CIPHER) * enabled, const SSL_CIPHER *c)
{
    uint32_t id = SSL_CIPHER_get_id(c);

    for (int i = 0; i < sk_SSL_CIPHER_num(enabled); i++) {
        if (SSL_CIPHER_get_id(sk_SSL_CIPHER_value(enabled, i)) == id) {
            return 1;
        }
    }
    return 0;
}

/* A client without TLS 1.3 gets the certificate type of a TLS 1.2 suite it offered (ECDSA or
 * RSA authentication): read supported_versions and the cipher suites, allocation-free.
 * TORII_EPROTO when supported_versions is malformed. */
static int tls_hello_suites(SSL *ssl, struct torii_sni_query *q)
{
    const unsigned char *ext;
    size_t ext_len;
    int tls13 = 0;

    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &ext, &ext_len) == 1
        && torii_tls_parse_versions(ext, ext_len, &tls13) != TORII_OK) {
        return TORII_EPROTO;
    }
    /* An SSLv2-format hello lists 3-byte suites: leave the choice to the signature rule. */
    if (tls13 || SSL_client_hello_isv2(ssl)) {
        return TORII_OK;
    }
    const STACK_OF(SSL_CIPHER) *enabled = SSL_get_ciphers(ssl);
    size_t n = SSL_client_hello_get0_ciphers(ssl, &ext);
    q->tls12_only = 1;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const SSL_CIPHER *c = SSL_CIPHER_find(ssl, ext + i);
        if (c == NULL || !tls_suite_enabled(enabled, c)) {
            continue;
        }
        int auth = SSL_CIPHER_get_auth_nid(c);
        q->suite_ecdsa |= auth == NID_auth_ecdsa;
        q->suite_rsa |= auth == NID_auth_rsa;
    }
    return TORII_OK;
}

/* The ClientHello's server name (*name untouched when none); TORII_EPROTO when malformed. */
static int tls_hello_sni(SSL *ssl, const char **name, size_t *name_len)
{
    const unsigned char *ext;
    size_t ext_len;

    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1
        && torii_tls_parse_sni(ext, ext_len, name, name_len) != TORII_OK) {
        return TORII_EPROTO;
    }
    return TORII_OK;
}

/* What the client offered, from its ClientHello: SNI, signature algorithms, and for a
 * TLS 1.2-only client the suites' certificate types. TORII_EPROTO when an extension is
 * malformed (the handshake then fails with decode_error). */
static int tls_hello_query(SSL *ssl, struct torii_sni_query *q)
{
    const unsigned char *ext;
    size_t ext_len;

    if (tls_hello_sni(ssl, &q->name, &q->name_len) != TORII_OK) {
        return TORII_EPROTO;
    }
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_signature_algorithms, &ext, &ext_len) == 1) {
        if (torii_tls_parse_sigalgs(ext, ext_len, &q->ecdsa_ok, &q->rsa_ok) != TORII_OK) {
            return TORII_EPROTO;
        }
    } else {
        /* TLS 1.2 without the extension: RFC 5246 7.4.1.4.1 defaults allow both. */
        q->ecdsa_ok = 1;
        q->rsa_ok = 1;
    }
    return tls_hello_suites(ssl, q);
}

static void tls_cert_unusable(const struct torii_tls_cert *cert)
{
    char errs[200];

    torii_ossl_errors(errs, sizeof(errs));
    torii_log(TORII_LOG_WARN, "tls: cannot use certificate: %s (id=%s)", errs,
              torii_tls_cert_id(cert));
}

/* On-demand certificates: 1 to suspend the hello, 0 to go on, -1 on failure. */
static int tls_hello_on_demand(SSL *ssl, const struct torii_tls_ctx *tc,
                               const struct torii_sni_query *q, enum torii_sni_match match)
{
    char host[TORII_SNI_NAME_MAX + 1];
    int host_len = q->name != NULL ? torii_sni_name_normalize(q->name, q->name_len, host) : -1;

    return torii_tls__on_demand(ssl, &tc->od, host_len > 0 ? host : NULL,
                                match != TORII_SNI_DEFAULT);
}

static int tls_client_hello_select(SSL *ssl, int *al, void *arg)
{
    struct torii_tls_ctx *tc = arg;
    const struct torii_tls__ex *ex = torii_tls__ex();
    char host[TORII_SNI_NAME_MAX + 1];
    int host_len = TORII_EINVAL;
    struct torii_sni_query q = {0};
    struct torii_tls_cert *cert = NULL;
    enum torii_sni_match match = TORII_SNI_DEFAULT;

    if (tls_hello_query(ssl, &q) != TORII_OK) {
        *al = SSL_AD_DECODE_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (q.name != NULL && tc->acme_alpn != NULL) {
        host_len = torii_sni_name_normalize(q.name, q.name_len, host);
        switch (torii_tls__acme_alpn_hello(ssl, host_len > 0 ? host : NULL, tc->acme_alpn,
                                           tc->acme_alpn_arg)) {
        case 1:
            return SSL_CLIENT_HELLO_SUCCESS;
        case 0:
            break;
        default:
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
    }
    q.now_ms = torii_clock_now_ms();
    if (torii_table_select(tc->table, &q, &cert, &match) != TORII_OK) {
        *al = q.name != NULL ? SSL_AD_UNRECOGNIZED_NAME : SSL_AD_HANDSHAKE_FAILURE;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (tc->od.decide != NULL) {
        int w = tls_hello_on_demand(ssl, tc, &q, match);
        if (w != 0) {
            torii_tls_cert_unref(cert);
            *al = SSL_AD_INTERNAL_ERROR;
            return w > 0 ? SSL_CLIENT_HELLO_RETRY : SSL_CLIENT_HELLO_ERROR;
        }
    }
    if (tc->strict_sni && q.name != NULL && match == TORII_SNI_DEFAULT) {
        torii_tls_cert_unref(cert);
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /* Parsed (first use) and checked here; installed by tls_cert_cb, once OpenSSL knows the
     * handshake needs it (not resumed). */
    if (torii_tls_cert_get(cert, NULL, NULL, NULL) != TORII_OK
        || SSL_set_ex_data(ssl, ex->cert, cert) != 1) {
        tls_cert_unusable(cert);
        torii_tls_cert_unref(cert);
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /* The route's client-certificate policy, by the same name the certificate was chosen for
     * (the ex_data slot now owns cert). */
    if (q.name != NULL) {
        host_len = torii_sni_name_normalize(q.name, q.name_len, host);
    }
    if (torii_tls__client_auth_apply(ssl, tc->table, tc->client_auth_lookup, tc->client_auth_arg,
                                     host_len > 0 ? host : NULL,
                                     host_len > 0 ? (size_t)host_len : 0)
        != TORII_OK) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* A ClientHello after a HelloRetryRequest repeats the first one (RFC 8446 4.1.2): the choices
 * made for the first stand (choosing again would replace the references the SSL holds). The
 * first hello's server name is kept to compare: TORII_EINVAL when the second names another
 * (illegal_parameter), TORII_EPROTO when its extension is malformed. *retry: a second one. */
static int tls_hello_retry_check(SSL *ssl, int *retry)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    const char *first = SSL_get_ex_data(ssl, ex->hello);
    const char *name = NULL;
    size_t len = 0;
    char *copy;

    *retry = first != NULL;
    if (tls_hello_sni(ssl, &name, &len) != TORII_OK) {
        return TORII_EPROTO;
    }
    if (first != NULL) {
        return strlen(first) == len && (len == 0 || memcmp(first, name, len) == 0) ? TORII_OK
                                                                                   : TORII_EINVAL;
    }
    copy = torii_xstrndup(name != NULL ? name : "", len);
    if (SSL_set_ex_data(ssl, ex->hello, copy) != 1) {
        free(copy);
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* Checks a retried ClientHello, counts outcomes around the selection (metrics). */
static int tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
    int retry = 0;
    int rc = tls_hello_retry_check(ssl, &retry);
    int r = SSL_CLIENT_HELLO_ERROR;

    if (rc == TORII_OK && retry && !torii_tls__on_demand_waiting(ssl)) {
        return SSL_CLIENT_HELLO_SUCCESS; /* counted with the first ClientHello */
    }
    if (rc == TORII_OK) {
        r = tls_client_hello_select(ssl, al, arg);
        if (r == SSL_CLIENT_HELLO_RETRY) {
            return r; /* suspended: counted when it goes on */
        }
    } else {
        *al = rc == TORII_EPROTO   ? SSL_AD_DECODE_ERROR
              : rc == TORII_EINVAL ? SSL_AD_ILLEGAL_PARAMETER
                                   : SSL_AD_INTERNAL_ERROR;
    }
    torii_metrics_inc(r == SSL_CLIENT_HELLO_SUCCESS ? TORII_METRIC_HANDSHAKE_OK
                                                    : TORII_METRIC_HANDSHAKE_FAILED);
    return r;
}

/* Installs the certificate the client-hello callback chose. OpenSSL calls this only for a
 * handshake that is not resumed: a resumption (ticket) sends no certificate, so it skips the
 * install and its checks (security level of each certificate, key against leaf: already
 * true of every table certificate, see torii_sni_usable). Nothing to do for a connection
 * that got its certificate elsewhere (TLS-ALPN-01) or got one installed by an earlier call
 * (a second ClientHello after HelloRetryRequest). */
static int tls_cert_cb(SSL *ssl, void *arg)
{
    struct torii_tls_cert *cert = torii_tls_conn_cert(ssl);
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;

    (void)arg;
    if (cert == NULL || SSL_get_certificate(ssl) != NULL) {
        return 1;
    }
    if (torii_tls_cert_get(cert, &leaf, &key, &chain) == TORII_OK
        && SSL_use_cert_and_key(ssl, leaf, key, chain, 1) == 1) {
        return 1;
    }
    tls_cert_unusable(cert);
    return 0; /* internal_error alert */
}

/* The key of ts named key_name (its slot in *slot), or NULL. Under ts->lock. */
static const struct tls_ticket_key *tls_ticket_find(const struct torii_tls_tickets *ts,
                                                    const unsigned char key_name[16], int *slot)
{
    for (*slot = 0; *slot < TLS_TICKET_KEYS; (*slot)++) {
        if (ts->tk[*slot].set && CRYPTO_memcmp(ts->tk[*slot].name, key_name, 16) == 0) {
            return &ts->tk[*slot];
        }
    }
    return NULL;
}

static int tls_ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[16],
                             EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct torii_tls_ctx *tc = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), torii_tls__ex()->ctx);
    struct torii_tls_tickets *ts = NULL;
    const struct tls_ticket_key *k = NULL;
    OSSL_PARAM params[3];
    static char digest[] = "SHA256";
    int rc = -1; /* OpenSSL's convention for this callback: -1 error, 0 no key */
    int slot = 0;

    if (tc == NULL || pthread_rwlock_rdlock(&tc->tk->lock) != 0) {
        return -1;
    }
    ts = tc->tk;
    if (enc) {
        k = &ts->tk[0];
        if (!k->set || RAND_bytes(iv, 16) != 1) {
            goto out;
        }
        memcpy(key_name, k->name, 16);
    } else {
        k = tls_ticket_find(ts, key_name, &slot);
        if (k == NULL) {
            rc = 0; /* unknown key: full handshake */
            goto out;
        }
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(uintptr_t)k->hmac,
                                                  sizeof(k->hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) {
        goto out;
    }
    if (enc) {
        if (EVP_EncryptInit_ex(cctx, ts->aes, NULL, k->aes, iv) != 1) {
            goto out;
        }
        rc = 1;
    } else {
        if (EVP_DecryptInit_ex(cctx, ts->aes, NULL, k->aes, iv) != 1) {
            goto out;
        }
        /* 2: valid, and issue a new ticket. TLS 1.3 clients use a ticket once (RFC 8446
         * C.4), so a resumed TLS 1.3 handshake always gets a fresh one, or the client's next
         * connection would be a full handshake; TLS 1.2 only when the key is the previous one
         * (re-encrypted under the current key). */
        rc = slot == 0 && SSL_version(ssl) < TLS1_3_VERSION ? 1 : 2;
    }
out:
    (void)pthread_rwlock_unlock(&ts->lock);
    return rc;
}

/* Rotate the keys of ts: a fresh current key, the current one becomes the previous. */
static int tls_tickets_rotate(struct torii_tls_tickets *ts)
{
    struct tls_ticket_key fresh;
    int rc = TORII_OK;

    if (RAND_bytes(fresh.name, sizeof(fresh.name)) != 1
        || RAND_bytes(fresh.aes, sizeof(fresh.aes)) != 1
        || RAND_bytes(fresh.hmac, sizeof(fresh.hmac)) != 1) {
        rc = TORII_EIO;
        goto out;
    }
    fresh.set = 1;
    if (pthread_rwlock_wrlock(&ts->lock) != 0) {
        rc = TORII_EIO;
        goto out;
    }
    ts->tk[1] = ts->tk[0];
    ts->tk[0] = fresh;
    (void)pthread_rwlock_unlock(&ts->lock);
out:
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    return rc;
}

int torii_tls_ctx_rotate_tickets(struct torii_tls_ctx *tc)
{
    return tls_tickets_rotate(tc->tk);
}

int torii_tls_tickets_new(struct torii_tls_tickets **out)
{
    struct torii_tls_tickets *ts = torii_xcalloc(1, sizeof(*ts));
    int rc = TORII_OK;

    *out = NULL;
    if (pthread_rwlock_init(&ts->lock, NULL) != 0) {
        free(ts);
        return TORII_EIO;
    }
    ts->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    TORII_ENSURE(ts->aes != NULL, TORII_EIO);
    TORII_TRY(tls_tickets_rotate(ts));
    *out = ts;
    ts = NULL;
out:
    torii_tls_tickets_free(ts);
    return rc;
}

void torii_tls_tickets_free(struct torii_tls_tickets *ts)
{
    if (ts == NULL) {
        return;
    }
    (void)pthread_rwlock_destroy(&ts->lock);
    OPENSSL_cleanse(ts->tk, sizeof(ts->tk));
    EVP_CIPHER_free(ts->aes);
    free(ts);
}

int torii_tls_tickets_install(struct torii_tls_tickets *ts, const struct torii_tls_ticket_keys *ks)
{
    struct tls_ticket_key tk[TLS_TICKET_KEYS] = {0};

    if (ks->n < 1 || ks->n > TLS_TICKET_KEYS
        || (ks->n == 2 && CRYPTO_memcmp(ks->k[0], ks->k[1], sizeof(tk[0].name)) == 0)) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i < ks->n; i++) {
        memcpy(tk[i].name, ks->k[i], sizeof(tk[i].name));
        memcpy(tk[i].aes, ks->k[i] + sizeof(tk[i].name), sizeof(tk[i].aes));
        memcpy(tk[i].hmac, ks->k[i] + sizeof(tk[i].name) + sizeof(tk[i].aes), sizeof(tk[i].hmac));
        tk[i].set = 1;
    }
    if (pthread_rwlock_wrlock(&ts->lock) != 0) {
        OPENSSL_cleanse(tk, sizeof(tk));
        return TORII_EIO;
    }
    memcpy(ts->tk, tk, sizeof(tk));
    (void)pthread_rwlock_unlock(&ts->lock);
    OPENSSL_cleanse(tk, sizeof(tk));
    return TORII_OK;
}

/* OCSP stapling (RFC 6066 8): the staple kept for the chosen certificate, if any. */
static int tls_status_cb(SSL *ssl, void *arg)
{
    struct torii_tls_ctx *tc = arg;
    struct torii_tls_cert *c = torii_tls_conn_cert(ssl);
    unsigned char *der = NULL;
    unsigned char *copy = NULL;
    size_t len = 0;

    if (c == NULL
        || tc->ocsp_staple(tc->ocsp_staple_arg, torii_tls_cert_id(c), &der, &len) != TORII_OK) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    copy = OPENSSL_memdup(der, len);
    free(der);
    if (copy == NULL || SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

int torii_tls_ctx_new(const struct torii_tls_opts *opts, struct torii_tls_ctx **out,
                      struct torii_errbuf *eb)
{
    struct torii_tls_ctx *tc = NULL;
    SSL_CTX *ctx = NULL;
    const struct torii_tls__ex *ex = torii_tls__ex();
    int rc = TORII_OK;

    TORII_ENSURE(opts != NULL && opts->table != NULL,
                 torii_errf(eb, TORII_EINVAL, "tls: listener context needs a table"));
    TORII_ENSURE(ex != NULL, torii_errbuf_ossl(eb, "tls: ex_data index"));
    ctx = SSL_CTX_new(TLS_server_method());
    TORII_ENSURE(ctx != NULL, torii_errbuf_ossl(eb, "tls: SSL_CTX_new"));
    tc = torii_xcalloc(1, sizeof(*tc));
    if (opts->tickets == NULL) {
        TORII_ENSURE(torii_tls_tickets_new(&tc->own_tk) == TORII_OK,
                     torii_errf(eb, TORII_EIO, "tls: cannot make a session ticket key"));
    }
    tc->tk = opts->tickets != NULL ? opts->tickets : tc->own_tk;
    tc->table = opts->table;
    tc->strict_sni = opts->strict_sni;
    tc->client_auth_lookup = opts->client_auth_lookup;
    tc->client_auth_arg = opts->client_auth_arg;
    tc->ocsp_staple = opts->ocsp_staple;
    tc->ocsp_staple_arg = opts->ocsp_staple_arg;
    tc->acme_alpn = opts->acme_alpn;
    tc->acme_alpn_arg = opts->acme_alpn_arg;
    tc->alpn.h2 = opts->http2;
    tc->alpn.allowed = opts->h2_allowed;
    tc->alpn.arg = opts->h2_arg;
    tc->od.decide = opts->on_demand;
    tc->od.done = opts->on_demand_done;
    tc->od.pending = opts->on_demand_pending;
    tc->od.arg = opts->on_demand_arg;
    tc->od.wait_ms = opts->on_demand_wait_ms;

    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1
        || SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1
        || SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERS_13) != 1
        || SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1
        || SSL_CTX_set_num_tickets(ctx, 1) != 1 || SSL_CTX_set_ex_data(ctx, ex->ctx, tc) != 1
        || SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_key_cb) != 1) {
        rc = torii_errbuf_ossl(eb, "tls: configuring the listener context");
        goto out;
    }
    /* Stateless resumption only (tickets): no server-side session cache to grow. */
    (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Server order (ECDHE before DHE, AES-GCM first) unless the client puts ChaCha20 first
     * (no AES hardware): a client's own order could pick the costlier finite-field DHE. */
    (void)SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                                       | SSL_OP_CIPHER_SERVER_PREFERENCE
                                       | SSL_OP_PRIORITIZE_CHACHA);
    (void)SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_client_hello_cb(ctx, tls_client_hello_cb, tc);
    SSL_CTX_set_cert_cb(ctx, tls_cert_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, torii_tls__alpn_select, &tc->alpn);
    if (tc->ocsp_staple != NULL) {
        (void)SSL_CTX_set_tlsext_status_cb(ctx, tls_status_cb);
        (void)SSL_CTX_set_tlsext_status_arg(ctx, tc);
    }
    tc->ctx = ctx;
    ctx = NULL;
    *out = tc;
    tc = NULL;
out:
    SSL_CTX_free(ctx);
    torii_tls_ctx_free(tc);
    return rc;
}

void torii_tls_ctx_free(struct torii_tls_ctx *tc)
{
    if (tc == NULL) {
        return;
    }
    SSL_CTX_free(tc->ctx);
    torii_tls_tickets_free(tc->own_tk);
    free(tc);
}

SSL *torii_tls_conn_new(struct torii_tls_ctx *tc)
{
    SSL *ssl = SSL_new(tc->ctx);
    if (ssl == NULL) {
        char errs[200];
        torii_ossl_errors(errs, sizeof(errs));
        torii_log(TORII_LOG_WARN, "tls: SSL_new failed: %s", errs);
    }
    return ssl;
}

struct torii_tls_cert *torii_tls_conn_cert(const SSL *ssl)
{
    const struct torii_tls__ex *ex = torii_tls__ex();

    return ex != NULL ? SSL_get_ex_data(ssl, ex->cert) : NULL;
}
