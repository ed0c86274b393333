/* upstream.c - client TLS to backends (backend TLS and mTLS), one context per route backend.
 *
 * The SSL_CTX is fixed at creation (protocol policy, verification mode, system store when no
 * CA is named). What may change at run time is read per connection: the trusted CA through
 * the trust set (trust.c: a new X509_STORE when the entry changed) and the client
 * certificate straight from the table, set on the new SSL only (SSL_use_cert_and_key).
 *
 * Resumption: one slot per upstream keeps the last session received, with the name, the
 * client certificate reference and the trust generation it was made under; it is offered
 * only to a connection with the same three, so a replaced certificate or CA always gets a
 * full handshake. The slot is shared by the workers under a mutex held for a pointer swap.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/table.h"
#include "torii/tls.h"

/* Same TLS 1.2 suites as the listener (Mozilla "intermediate"). */
#define UP_CIPHERS_12                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct up_slot {
    SSL_SESSION *sess;
    char *name;
    struct torii_tls_cert *cert; /* one reference (NULL: no client certificate) */
    uint64_t gen;
};

struct torii_tls_upstream {
    atomic_size_t refs; /* the creator's, plus one per live SSL (its up_conn) */
    SSL_CTX *ctx;
    struct torii_table *table;
    struct torii_tls_trust *trust; /* NULL: system store (set on ctx) */
    char *client_cert_id;
    char *sni;
    int insecure;
    pthread_mutex_t lock; /* guards slot */
    struct up_slot slot;
};

/* Per connection (SSL ex_data): what the session slot is keyed by. */
struct up_conn {
    struct torii_tls_upstream *u;
    struct torii_tls_cert *cert; /* borrowed: the SSL's cert slot holds the reference */
    uint64_t gen;
    char name[];
};

static void up_unref(struct torii_tls_upstream *u);

static void up_conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    struct up_conn *c = ptr;

    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (c != NULL) {
        up_unref(c->u);
        free(c);
    }
}

/* The SSL ex_data slot of the connection state, this file's own (its free callback is
 * above); registered once through pthread_once, any thread, read-only after. */
static pthread_once_t up_conn_once = PTHREAD_ONCE_INIT;
static int up_conn_idx = -1;

static void up_conn_slot_init(void)
{
    up_conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, up_conn_free);
}

/* The slot, or -1 when OpenSSL could not register it. */
static int up_conn_slot(void)
{
    (void)pthread_once(&up_conn_once, up_conn_slot_init);
    return up_conn_idx;
}

static void up_slot_clear(struct up_slot *s)
{
    SSL_SESSION_free(s->sess);
    free(s->name);
    torii_tls_cert_unref(s->cert);
    memset(s, 0, sizeof(*s));
}

/* New session from the backend. The slot keeps a copy: OpenSSL marks the session object of
 * an SSL freed without a clean shutdown as not resumable (SSL_free -> remove from cache),
 * which is how the proxy usually ends backend connections. Returns 0: we keep no reference
 * to sess itself. */
static int up_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct up_conn *c = SSL_get_ex_data(ssl, up_conn_slot());
    SSL_SESSION *copy;
    struct up_slot old;

    if (c == NULL || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    copy = SSL_SESSION_dup(sess);
    if (copy == NULL) {
        ERR_clear_error();
        return 0;
    }
    torii_tls_cert_ref(c->cert);
    TORII_ASSERT(pthread_mutex_lock(&c->u->lock) == 0);
    old = c->u->slot;
    c->u->slot.sess = copy;
    c->u->slot.name = torii_xstrdup(c->name);
    c->u->slot.cert = c->cert;
    c->u->slot.gen = c->gen;
    TORII_ASSERT(pthread_mutex_unlock(&c->u->lock) == 0);
    up_slot_clear(&old);
    return 0;
}

static int up_is_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int up_opts_check(const struct torii_tls_upstream_opts *o, struct torii_errbuf *eb)
{
    if ((o->trusted_ca_id != NULL && o->trusted_ca_id[0] == '\0')
        || (o->client_cert_id != NULL && o->client_cert_id[0] == '\0')
        || (o->sni != NULL && o->sni[0] == '\0')) {
        return torii_errf(eb, TORII_EINVAL, "tls: upstream: empty certificate id or sni");
    }
    if (o->table == NULL && (o->trusted_ca_id != NULL || o->client_cert_id != NULL)) {
        return torii_errf(eb, TORII_EINVAL, "tls: upstream: certificate ids need a table");
    }
    return TORII_OK;
}

/* The fixed part: protocol policy, verification mode, session callback. */
static int up_ctx_new(struct torii_tls_upstream *u, int ex_idx, SSL_CTX **out,
                      struct torii_errbuf *eb)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        return torii_errbuf_ossl(eb, "tls: upstream: SSL_CTX_new");
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_set_cipher_list(ctx, UP_CIPHERS_12) != 1
        || SSL_CTX_set_ex_data(ctx, ex_idx, u) != 1) {
        SSL_CTX_free(ctx);
        return torii_errbuf_ossl(eb, "tls: upstream: configuring the context");
    }
    if (u->trust == NULL && !u->insecure && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return torii_errbuf_ossl(eb, "tls: upstream: system trust store");
    }
    SSL_CTX_set_verify(ctx, u->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    (void)SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    (void)SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Sessions go to our slot only (no internal cache to grow). */
    (void)SSL_CTX_set_session_cache_mode(ctx,
                                         SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, up_new_session_cb);
    *out = ctx;
    return TORII_OK;
}

int torii_tls_upstream_new(const struct torii_tls_upstream_opts *o, struct torii_tls_upstream **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_tls_upstream *u = NULL;
    const struct torii_tls__ex *ex = torii_tls__ex();

    TORII_ENSURE(o != NULL && out != NULL,
                 torii_errf(eb, TORII_EINVAL, "tls: upstream options missing"));
    TORII_TRY(up_opts_check(o, eb));
    TORII_ENSURE(ex != NULL, torii_errbuf_ossl(eb, "tls: ex_data index"));
    u = torii_xcalloc(1, sizeof(*u));
    atomic_init(&u->refs, 1);
    TORII_ENSURE(pthread_mutex_init(&u->lock, NULL) == 0, TORII_ENOMEM);
    u->table = o->table;
    u->insecure = o->insecure;
    u->client_cert_id = o->client_cert_id != NULL ? torii_xstrdup(o->client_cert_id) : NULL;
    u->sni = o->sni != NULL ? torii_xstrdup(o->sni) : NULL;
    if (o->trusted_ca_id != NULL) {
        const char *ids[1] = {o->trusted_ca_id};
        TORII_TRY(torii_tls_trust_new(o->table, ids, 1, &u->trust, eb));
    }
    TORII_TRY(up_ctx_new(u, ex->up_ctx, &u->ctx, eb));
    *out = u;
    u = NULL;
out:
    torii_tls_upstream_free(u);
    return rc;
}

/* The last reference may be dropped inside SSL_free of the last connection (ex_data free):
 * that SSL still holds its own reference to ctx, so SSL_CTX_free here only decrements. */
static void up_unref(struct torii_tls_upstream *u)
{
    if (u == NULL || atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    SSL_CTX_free(u->ctx);
    up_slot_clear(&u->slot);
    torii_tls_trust_free(u->trust);
    free(u->client_cert_id);
    free(u->sni);
    (void)pthread_mutex_destroy(&u->lock);
    free(u);
}

void torii_tls_upstream_free(struct torii_tls_upstream *u)
{
    up_unref(u);
}

/* The client certificate, from the table now. *out is a new reference. */
static int up_client_cert(struct torii_tls_upstream *u, SSL *ssl, struct torii_tls_cert **out)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    struct torii_tls_cert *c = NULL;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    uint32_t flags;

    if (torii_table_get(u->table, u->client_cert_id, &c) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "tls: upstream client certificate not in the store (id=%s)",
                  u->client_cert_id);
        return TORII_ENOTFOUND;
    }
    flags = torii_tls_cert_flags(c);
    if ((flags & need) != need || (flags & TORII_CERTREC_REVOKED) != 0) {
        torii_log(TORII_LOG_WARN, "tls: upstream client certificate unusable: %s (id=%s)",
                  (flags & TORII_CERTREC_REVOKED) != 0 ? "revoked" : "no matching private key",
                  u->client_cert_id);
        torii_tls_cert_unref(c);
        return TORII_EINVAL;
    }
    if (torii_tls_cert_get(c, &leaf, &key, &chain) != TORII_OK
        || SSL_use_cert_and_key(ssl, leaf, key, chain, 1) != 1) {
        char errs[200];
        torii_ossl_errors(errs, sizeof(errs));
        torii_log(TORII_LOG_WARN, "tls: upstream client certificate not usable: %s (id=%s)", errs,
                  u->client_cert_id);
        torii_tls_cert_unref(c);
        return TORII_ETLS;
    }
    *out = c;
    return TORII_OK;
}

/* Verification of the backend's name: DNS name or IP literal. */
static int up_verify_name(SSL *ssl, const char *name)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);

    if (up_is_ip(name)) {
        return X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 ? TORII_OK : TORII_ETLS;
    }
    /* No partial wildcards such as f*.example.com (RFC 6125 6.4.3 allows refusing them). */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name) == 1 ? TORII_OK : TORII_ETLS;
}

/* Chain (trust set's current store, or the context's system store) and name verification. */
static int up_verify_setup(struct torii_tls_upstream *u, SSL *ssl, const char *name, uint64_t *gen)
{
    X509_STORE *store = NULL;
    int rc = TORII_OK;

    if (u->trust != NULL) {
        TORII_TRY(torii_tls__trust_acquire(u->trust, &store, NULL, gen));
        TORII_ENSURE(SSL_set1_verify_cert_store(ssl, store) == 1, TORII_ETLS);
        X509_VERIFY_PARAM_set_flags(SSL_get0_param(ssl), X509_V_FLAG_PARTIAL_CHAIN);
    }
    torii_tls__set_verify_time(ssl);
    TORII_TRY(up_verify_name(ssl, name));
out:
    X509_STORE_free(store);
    return rc;
}

/* Offer a copy of the slot's session when it was made under the same name, client
 * certificate and trust view (see up_new_session_cb for why a copy). */
static void up_offer_session(struct torii_tls_upstream *u, SSL *ssl,
                             const struct torii_tls_cert *cert, uint64_t gen, const char *name)
{
    SSL_SESSION *resume = NULL;

    TORII_ASSERT(pthread_mutex_lock(&u->lock) == 0);
    if (u->slot.sess != NULL && u->slot.cert == cert && u->slot.gen == gen
        && strcmp(u->slot.name, name) == 0) {
        resume = SSL_SESSION_dup(u->slot.sess);
    }
    TORII_ASSERT(pthread_mutex_unlock(&u->lock) == 0);
    if (resume != NULL && SSL_set_session(ssl, resume) != 1) {
        ERR_clear_error(); /* not fatal: a full handshake */
    }
    SSL_SESSION_free(resume);
}

SSL *torii_tls_upstream_conn_new(struct torii_tls_upstream *u, const char *host)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    struct torii_tls_cert *cert = NULL;
    struct up_conn *c = NULL;
    SSL *ssl = NULL;
    SSL *ret = NULL;
    const char *name;
    uint64_t gen = 0;
    size_t name_len;

    if (u == NULL || ex == NULL || up_conn_slot() < 0) {
        return NULL;
    }
    name = u->sni != NULL ? u->sni : host;
    if (name == NULL || name[0] == '\0') {
        torii_log(TORII_LOG_WARN, "tls: upstream connection without a host name");
        return NULL;
    }
    name_len = strlen(name);
    ssl = SSL_new(u->ctx);
    if (ssl == NULL) {
        goto out;
    }
    SSL_set_connect_state(ssl);
    if (u->client_cert_id != NULL) {
        if (up_client_cert(u, ssl, &cert) != TORII_OK) {
            goto out;
        }
        if (SSL_set_ex_data(ssl, ex->cert, cert) != 1) {
            torii_tls_cert_unref(cert);
            cert = NULL;
            goto out;
        }
        /* cert is now held by the SSL (released by SSL_free). */
    }
    if (!u->insecure && up_verify_setup(u, ssl, name, &gen) != TORII_OK) {
        goto out;
    }
    /* RFC 6066 3: literal IP addresses are not permitted in server_name. */
    if (!up_is_ip(name) && SSL_set_tlsext_host_name(ssl, name) != 1) {
        goto out;
    }
    c = torii_xmalloc(sizeof(*c) + name_len + 1);
    c->u = u;
    c->cert = cert;
    c->gen = gen;
    memcpy(c->name, name, name_len + 1);
    if (SSL_set_ex_data(ssl, up_conn_slot(), c) != 1) {
        goto out;
    }
    atomic_fetch_add_explicit(&u->refs, 1, memory_order_relaxed);
    c = NULL;
    up_offer_session(u, ssl, cert, gen, name);
    ret = ssl;
    ssl = NULL;
out:
    if (ret == NULL) {
        char errs[200];
        torii_ossl_errors(errs, sizeof(errs));
        torii_log(TORII_LOG_WARN, "tls: upstream connection setup failed: %s (host=%s)", errs,
                  name);
    }
    free(c);
    SSL_free(ssl);
    return ret;
}
