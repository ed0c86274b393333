/* tls_listener.c - the TLS context of the admin listener (admin.tls): the listener's
 * certificate and key from the store entity admin.tls.cert, client certificates required and
 * verified against the CAs named by admin.tls.client_cas (store ids; the leaf of each entry is
 * a trust anchor, intermediates included), with the TLS client purpose (EKU clientAuth when
 * present). Loaded once at start: replacing those entities applies at the next start.
 * Threads: the starting thread builds it; the admin thread uses it. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "admin_guard.h"
#include "admin_int.h"
#include "torii/certdb.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

static int tls_ossl_err(struct torii_errbuf *eb, const char *what, const char *id)
{
    char buf[256];
    unsigned long e = ERR_get_error();

    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return torii_errf(eb, TORII_ETLS, "admin.tls: %s '%s': %s", what, id, e != 0 ? buf : "failed");
}

static BIO *tls_bio_of(const char *pem)
{
    return pem != NULL && strlen(pem) <= INT32_MAX ? BIO_new_mem_buf(pem, (int)strlen(pem)) : NULL;
}

/* The listener's chain and key from entity `id`: its TLS record, decoded by pki (the one place
 * that parses private keys) into an identity installed on ctx. */
static int tls_use_cert(SSL_CTX *ctx, struct torii_store *st, const char *id,
                        struct torii_errbuf *eb)
{
    struct torii_pki_identity *ident = NULL;
    struct torii_errbuf why = {{0}};
    struct torii_certdb_entry e = {0};
    struct torii_pki_key_src key;
    int rc = torii_certdb_get(st, id, TORII_CERTDB_WITH_AUX, &e, NULL);

    TORII_ENSURE(
        rc == TORII_OK,
        torii_errf(eb, TORII_EINVAL, "admin.tls.cert: no certificate '%s' in the store", id));
    TORII_ENSURE(e.aux != NULL,
                 torii_errf(eb, TORII_EINVAL, "admin.tls.cert: '%s' has no TLS record stored", id));
    key = torii_pki_key_src_of(e.ent, torii_store_kek(st)); /* a sealed key opens with it */
    rc = torii_pki_identity_new(e.aux, e.aux_len, &key, &ident, &why);
    TORII_ENSURE(rc == TORII_OK,
                 torii_errf(eb, rc, "admin.tls: no usable private key in '%s': %s", id, why.msg));
    rc = torii_pki_identity_use(ident, ctx, &why);
    TORII_ENSURE(
        rc == TORII_OK,
        torii_errf(eb, rc, "admin.tls: the chain does not load for '%s': %s", id, why.msg));
out:
    torii_pki_identity_free(ident);
    torii_certdb_entry_clear(&e); /* holds the private key: wiped */
    return rc;
}

/* The leaf of entity `id` as a trust anchor and an acceptable client CA name. */
static int tls_add_ca(SSL_CTX *ctx, struct torii_store *st, const char *id, struct torii_errbuf *eb)
{
    json_t *e = NULL;
    BIO *b = NULL;
    X509 *x = NULL;
    int rc = torii_certdb_load(st, id, &e, NULL);

    TORII_ENSURE(
        rc == TORII_OK,
        torii_errf(eb, TORII_EINVAL, "admin.tls.client_cas: no certificate '%s' in the store", id));
    b = tls_bio_of(json_string_value(json_object_get(e, "chain")));
    x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    TORII_ENSURE(x != NULL, tls_ossl_err(eb, "the chain does not parse for client CA", id));
    TORII_ENSURE(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) == 1
                     && SSL_CTX_add_client_CA(ctx, x) == 1,
                 tls_ossl_err(eb, "cannot trust client CA", id));
out:
    X509_free(x);
    BIO_free(b);
    if (e != NULL) {
        torii_cert_secrets_wipe(e);
    }
    json_decref(e);
    return rc;
}

int admin_tls_ctx_new(const struct torii_config *cfg, struct torii_store *st, SSL_CTX **out,
                      struct torii_errbuf *eb)
{
    const json_t *cas = json_object_get(cfg->admin_tls, "client_cas");
    const char *cert = json_string_value(json_object_get(cfg->admin_tls, "cert"));
    SSL_CTX *ctx = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(st != NULL && cert != NULL && json_array_size(cas) > 0,
                 torii_errf(eb, TORII_EINVAL, "admin.tls: cert and client_cas are required"));
    ctx = SSL_CTX_new(TLS_server_method());
    TORII_ENSURE(ctx != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1,
                 tls_ossl_err(eb, "cannot create the context for", cert));
    TORII_TRY(tls_use_cert(ctx, st, cert, eb));
    for (size_t i = 0; i < json_array_size(cas); i++) {
        TORII_TRY(tls_add_ca(ctx, st, json_string_value(json_array_get(cas, i)), eb));
    }
    TORII_ENSURE(X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx), X509_V_FLAG_PARTIAL_CHAIN) == 1
                     && SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1,
                 tls_ossl_err(eb, "cannot set the verification of", cert));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    *out = ctx;
    ctx = NULL;
out:
    SSL_CTX_free(ctx);
    return rc;
}
