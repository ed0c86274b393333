/* identity.c - a stored certificate as a TLS client identity: its leaf, issuers and private
 * key parsed from the TLS record, kept opaque, and installed on an SSL_CTX. Modules that
 * authenticate as a stored certificate (the webhook exporter) go through this, so the key is
 * parsed and held only inside pki (STYLE 2.1). Error messages never quote key material, and
 * every path leaves the OpenSSL error queue empty. */
#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "torii/mem.h"
#include "torii/pki.h"

struct torii_pki_identity {
    X509 *leaf;             /* owned */
    STACK_OF(X509) * chain; /* owned: the issuers sent after the leaf, possibly none */
    EVP_PKEY *key;          /* owned; OpenSSL clears it when the last reference goes */
};

void torii_pki_identity_free(struct torii_pki_identity *id)
{
    if (id == NULL) {
        return;
    }
    X509_free(id->leaf);
    sk_X509_pop_free(id->chain, X509_free);
    EVP_PKEY_free(id->key);
    free(id);
}

/* One DER certificate that must use every byte of s. */
static X509 *identity_x509(struct torii_slice s)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    X509 *x = NULL;

    if (s.len == 0 || s.len > LONG_MAX) {
        return NULL;
    }
    x = d2i_X509(NULL, &p, (long)s.len);
    if (x != NULL && p != (const unsigned char *)s.ptr + s.len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* The issuers after the leaf, into id->chain. */
static int identity_chain(const struct torii_certrec *rec, struct torii_pki_identity *id,
                          struct torii_errbuf *eb)
{
    id->chain = sk_X509_new_null();
    if (id->chain == NULL) {
        return TORII_ENOMEM;
    }
    for (uint32_t i = 1; i < rec->n_chain; i++) {
        X509 *x = identity_x509(rec->chain[i]);

        if (x == NULL) {
            return torii_errf(eb, TORII_EINVAL, "identity: chain certificate %u does not parse", i);
        }
        if (sk_X509_push(id->chain, x) <= 0) {
            X509_free(x);
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

int torii_pki_identity_new(const unsigned char *rec_blob, size_t rec_len,
                           const struct torii_pki_key_src *key, struct torii_pki_identity **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certrec *rec = torii_xcalloc(1, sizeof(*rec)); /* large: off the stack */
    struct torii_pki_identity *id = torii_xcalloc(1, sizeof(*id));
    struct torii_errbuf sub = {{0}};

    TORII_ENSURE(rec_blob != NULL && torii_certrec_decode(rec_blob, rec_len, rec) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "identity: the TLS record does not decode"));
    TORII_ENSURE((rec->flags & TORII_CERTREC_HAS_KEY) != 0 && key != NULL && key->text != NULL
                     && key->text[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "identity: the certificate has no private key"));
    id->leaf = identity_x509(rec->chain[0]);
    TORII_ENSURE(id->leaf != NULL,
                 torii_errf(eb, TORII_EINVAL, "identity: the leaf certificate does not parse"));
    TORII_TRY(identity_chain(rec, id, eb));
    TORII_ENSURE(
        torii_pki_key_open(key->kek, key->id, key->text, key->password, &id->key, &sub) == TORII_OK,
        torii_errf(eb, TORII_EINVAL, "identity: the private key does not parse: %s", sub.msg));
    TORII_ENSURE(X509_check_private_key(id->leaf, id->key) == 1,
                 torii_errf(eb, TORII_EINVAL,
                            "identity: the private key does not match the leaf certificate"));
    *out = id;
    id = NULL;
out:
    if (rc != TORII_OK) {
        ERR_clear_error(); /* the messages above say what failed; the queue must not leak */
    }
    torii_pki_identity_free(id);
    free(rec); /* only slices into rec_blob, which the caller wipes */
    return rc;
}

int torii_pki_identity_use(const struct torii_pki_identity *id, SSL_CTX *ctx,
                           struct torii_errbuf *eb)
{
    if (id == NULL || ctx == NULL) {
        return torii_errf(eb, TORII_EINVAL, "identity: no identity or no SSL_CTX");
    }
    /* override = 1: replace whatever certificate ctx had; chain and key get new references. */
    if (SSL_CTX_use_cert_and_key(ctx, id->leaf, id->key, id->chain, 1) != 1) {
        return torii_errbuf_ossl(eb, "identity: SSL_CTX_use_cert_and_key");
    }
    return TORII_OK;
}

int torii_pki_identity_use_ssl(const struct torii_pki_identity *id, SSL *ssl,
                               struct torii_errbuf *eb)
{
    if (id == NULL || ssl == NULL) {
        return torii_errf(eb, TORII_EINVAL, "identity: no identity or no SSL");
    }
    if (SSL_use_cert_and_key(ssl, id->leaf, id->key, id->chain, 1) != 1) {
        return torii_errbuf_ossl(eb, "identity: SSL_use_cert_and_key");
    }
    return TORII_OK;
}

int torii_pki_identity_eq(const struct torii_pki_identity *a, const struct torii_pki_identity *b)
{
    int n;

    if (a == NULL || b == NULL) {
        return a == b;
    }
    n = sk_X509_num(a->chain);
    if (n != sk_X509_num(b->chain) || X509_cmp(a->leaf, b->leaf) != 0
        || EVP_PKEY_eq(a->key, b->key) != 1) {
        ERR_clear_error();
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (X509_cmp(sk_X509_value(a->chain, i), sk_X509_value(b->chain, i)) != 0) {
            return 0;
        }
    }
    return 1;
}
