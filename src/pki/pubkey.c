/* pubkey.c - certificates decoded without their public key, the key decoded on first use.
 *
 * Why: OpenSSL 3.0's d2i_X509 decodes the SubjectPublicKeyInfo through a decoder chain that
 * it builds anew for every certificate (about 90 % of a certificate parse). The write path
 * (torii_cert_prepare) parses with torii_pki__x509_lazy_d2i instead: the ASN.1 structure is
 * decoded in a library context that has no provider, so the opportunistic key decode finds
 * no decoder and leaves the key empty; everything else (names, extensions, signature,
 * encoding) is as d2i_X509 leaves it. torii_pki__cert_pub then decodes the key when a
 * question needs it, through a decoder context kept per thread, and keeps it on the
 * certificate (ex_data, freed with it). The per-thread decoders live here too
 * (torii_pki__decode_cached; x509.c decodes PEM keys through them). Code that hands such a
 * certificate to OpenSSL calls that read the key themselves (X509_check_private_key,
 * X509_check_issued, OCSP signing, SSL_CTX) must not: the write path only asks torii_pki__cert_pub,
 * torii_pki__cert_key_match, torii_pki__self_signed and torii_pki__chain_links. Threads: any; a
 * certificate belongs to one thread while its key is decoded. */
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

/* Decoders kept per thread: OpenSSL 3.0 builds its decoder chain anew for every decode
 * (most of a key parse's cost); a context made once and reused decodes the same inputs
 * several times faster. One per kind (enum torii_pki__dec_kind), made on first use, freed
 * when the thread exits. */
struct pki_dec {
    OSSL_DECODER_CTX *ctx;
    EVP_PKEY *slot; /* where the context puts what it decodes */
};

struct pki_decs {
    struct pki_dec d[TORII_PKI__DEC_KINDS];
};

static pthread_key_t pki_decs_key;
static pthread_once_t pki_decs_once = PTHREAD_ONCE_INIT;
static int pki_decs_ok;

static void pki_decs_free(void *p)
{
    struct pki_decs *ds = p;

    for (int i = 0; ds != NULL && i < TORII_PKI__DEC_KINDS; i++) {
        OSSL_DECODER_CTX_free(ds->d[i].ctx);
        EVP_PKEY_free(ds->d[i].slot);
    }
    free(ds);
}

static void pki_decs_init(void)
{
    pki_decs_ok = pthread_key_create(&pki_decs_key, pki_decs_free) == 0;
}

static struct pki_dec *pki_dec_get(enum torii_pki__dec_kind kind)
{
    struct pki_decs *ds = NULL;
    struct pki_dec *d;

    if (pthread_once(&pki_decs_once, pki_decs_init) != 0 || !pki_decs_ok) {
        return NULL;
    }
    ds = pthread_getspecific(pki_decs_key);
    if (ds == NULL) {
        ds = torii_xcalloc(1, sizeof(*ds));
        if (pthread_setspecific(pki_decs_key, ds) != 0) {
            free(ds);
            return NULL;
        }
    }
    d = &ds->d[kind];
    if (d->ctx == NULL) {
        d->ctx = kind == TORII_PKI__DEC_PEM_KEYPAIR
                     ? OSSL_DECODER_CTX_new_for_pkey(&d->slot, "PEM", NULL, NULL, EVP_PKEY_KEYPAIR,
                                                     NULL, NULL)
                     : OSSL_DECODER_CTX_new_for_pkey(&d->slot, "DER", "SubjectPublicKeyInfo", NULL,
                                                     EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        ERR_clear_error();
    }
    return d->ctx != NULL ? d : NULL;
}

EVP_PKEY *torii_pki__decode_cached(enum torii_pki__dec_kind kind, const unsigned char *data,
                                   size_t len)
{
    struct pki_dec *d = pki_dec_get(kind);
    const unsigned char *p = data;
    size_t left = len;
    EVP_PKEY *key = NULL;

    if (d == NULL) {
        return NULL;
    }
    if (OSSL_DECODER_from_data(d->ctx, &p, &left) == 1) {
        key = d->slot;
    } else {
        EVP_PKEY_free(d->slot);
    }
    d->slot = NULL;
    ERR_clear_error();
    return key;
}

/* The key of c's SubjectPublicKeyInfo, decoded now (owned by the caller), or NULL. */
static EVP_PKEY *pki_pub_decode(X509 *c)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &der);
    const unsigned char *p = der;
    EVP_PKEY *key = n > 0 ? torii_pki__decode_cached(TORII_PKI__DEC_SPKI, der, (size_t)n) : NULL;

    if (key == NULL && n > 0) { /* a key type the cached decoder does not cover */
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
