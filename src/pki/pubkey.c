/* pubkey.c - certificates decoded without their public key, the key decoded on first use.
 *
 * Why: OpenSSL 3.0's d2i_X509 decodes the SubjectPublicKeyInfo through a decoder chain that
 * it builds anew for every certificate (about 90 % of a certificate parse). The write path
 * (torii_cert_prepare) parses with torii_pki__x509_lazy_d2i instead: the ASN.1 structure is
 * decoded in a library context that has no provider, so the opportunistic key decode finds
 * no decoder and leaves the key empty; everything else (names, extensions, signature,
 * encoding) is as d2i_X509 leaves it. torii_pki__cert_pub then decodes the key when a
 * question needs it, through a decoder context kept per thread, and keeps it on the
 * certificate (ex_data, freed with it). Code that hands such a certificate to OpenSSL calls
 * that read the key themselves (X509_check_private_key, X509_check_issued, OCSP signing,
 * SSL_CTX) must not: the write path only asks torii_pki__cert_pub, torii_pki__cert_key_match,
 * torii_pki__self_signed and torii_pki__chain_links.
 * Threads: any; a certificate belongs to one thread while its key is decoded. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/mem.h"

/* The provider-less library context and the ex_data slot of a lazily decoded key: made once,
 * kept for the life of the process. */
static OSSL_LIB_CTX *pki_lazy_ctx;
static int pki_pub_idx = -1;
static pthread_once_t pki_lazy_once = PTHREAD_ONCE_INIT;

static void pki_pub_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    EVP_PKEY_free(ptr);
}

static void pki_lazy_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();

    /* Loading "null" keeps the default provider from being loaded into ctx on first use. */
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "null") == NULL) {
        OSSL_LIB_CTX_free(ctx);
        ctx = NULL;
    }
    pki_lazy_ctx = ctx;
    pki_pub_idx = X509_get_ex_new_index(0, NULL, NULL, NULL, pki_pub_free);
    ERR_clear_error();
}

static int pki_lazy_ready(void)
{
    return pthread_once(&pki_lazy_once, pki_lazy_init) == 0 && pki_lazy_ctx != NULL
           && pki_pub_idx >= 0;
}

X509 *torii_pki__x509_lazy_d2i(const unsigned char **pp, long len)
{
    if (!pki_lazy_ready()) {
        return d2i_X509(NULL, pp, len);
    }
    return (X509 *)ASN1_item_d2i_ex(NULL, pp, len, ASN1_ITEM_rptr(X509), pki_lazy_ctx, NULL);
}

/* A SubjectPublicKeyInfo decoder kept per thread (see pki_key_dec in x509.c for why). */
struct pki_pub_dec {
    OSSL_DECODER_CTX *ctx;
    EVP_PKEY *slot;
};

static pthread_key_t pki_pub_dec_key;
static pthread_once_t pki_pub_dec_once = PTHREAD_ONCE_INIT;
static int pki_pub_dec_ok;

static void pki_pub_dec_free(void *p)
{
    struct pki_pub_dec *d = p;

    if (d != NULL) {
        OSSL_DECODER_CTX_free(d->ctx);
        EVP_PKEY_free(d->slot);
        free(d);
    }
}

static void pki_pub_dec_init(void)
{
    pki_pub_dec_ok = pthread_key_create(&pki_pub_dec_key, pki_pub_dec_free) == 0;
}

static struct pki_pub_dec *pki_pub_dec_get(void)
{
    struct pki_pub_dec *d = NULL;

    if (pthread_once(&pki_pub_dec_once, pki_pub_dec_init) != 0 || !pki_pub_dec_ok) {
        return NULL;
    }
    d = pthread_getspecific(pki_pub_dec_key);
    if (d != NULL) {
        return d;
    }
    d = torii_xcalloc(1, sizeof(*d));
    d->ctx = OSSL_DECODER_CTX_new_for_pkey(&d->slot, "DER", "SubjectPublicKeyInfo", NULL,
                                           EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (d->ctx == NULL || pthread_setspecific(pki_pub_dec_key, d) != 0) {
        pki_pub_dec_free(d);
        ERR_clear_error();
        return NULL;
    }
    return d;
}

/* The key of c's SubjectPublicKeyInfo, decoded now (owned by the caller), or NULL. */
static EVP_PKEY *pki_pub_decode(X509 *c)
{
    struct pki_pub_dec *d = pki_pub_dec_get();
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &der);
    const unsigned char *p = der;
    size_t left = n > 0 ? (size_t)n : 0;
    EVP_PKEY *key = NULL;

    if (d != NULL && n > 0 && OSSL_DECODER_from_data(d->ctx, &p, &left) == 1 && left == 0) {
        key = d->slot;
    } else if (d != NULL) {
        EVP_PKEY_free(d->slot);
    }
    if (d != NULL) {
        d->slot = NULL;
    }
    if (key == NULL && n > 0) { /* a key type the cached decoder does not cover */
        p = der;
        key = d2i_PUBKEY(NULL, &p, n);
    }
    OPENSSL_free(der);
    ERR_clear_error();
    return key;
}

EVP_PKEY *torii_pki__cert_pub(X509 *c)
{
    EVP_PKEY *pub = X509_get0_pubkey(c);

    if (pub != NULL) {
        return pub;
    }
    ERR_clear_error();
    if (!pki_lazy_ready()) {
        return NULL;
    }
    pub = X509_get_ex_data(c, pki_pub_idx);
    if (pub == NULL) {
        pub = pki_pub_decode(c);
        if (pub != NULL && X509_set_ex_data(c, pki_pub_idx, pub) != 1) {
            EVP_PKEY_free(pub);
            pub = NULL;
        }
    }
    return pub;
}

int torii_pki__cert_key_match(X509 *c, EVP_PKEY *key)
{
    EVP_PKEY *pub = torii_pki__cert_pub(c);
    int ok = pub != NULL && key != NULL && EVP_PKEY_eq(pub, key) == 1;

    ERR_clear_error();
    return ok;
}
