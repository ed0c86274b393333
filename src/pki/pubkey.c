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
#include <string.h>

#include <openssl/core_names.h>
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

/* What each kind decodes (indexed by enum torii_pki__dec_kind). A decoder told the structure
 * and the key type tries one decoder, not every key type's: about twice as fast. */
static const struct {
    const char *input;
    const char *structure;
    const char *keytype;
    int selection;
} pki_dec_kinds[TORII_PKI__DEC_KINDS] = {
    [TORII_PKI__DEC_PEM_KEYPAIR] = {"PEM", NULL, NULL, EVP_PKEY_KEYPAIR},
    [TORII_PKI__DEC_SPKI] = {"DER", "SubjectPublicKeyInfo", NULL, EVP_PKEY_PUBLIC_KEY},
    [TORII_PKI__DEC_P8_EC] = {"DER", "PrivateKeyInfo", "EC", EVP_PKEY_KEYPAIR},
    [TORII_PKI__DEC_P8_RSA] = {"DER", "PrivateKeyInfo", "RSA", EVP_PKEY_KEYPAIR},
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
        d->ctx = OSSL_DECODER_CTX_new_for_pkey(
            &d->slot, pki_dec_kinds[kind].input, pki_dec_kinds[kind].structure,
            pki_dec_kinds[kind].keytype, pki_dec_kinds[kind].selection, NULL, NULL);
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

/* 1 when the named curve of an id-ecPublicKey SubjectPublicKeyInfo (its algorithm
 * parameters) is the group of EC key. */
static int pki_pub_same_curve(const X509_ALGOR *alg, EVP_PKEY *key)
{
    int ptype = 0;
    const void *pval = NULL;
    char group[64];

    X509_ALGOR_get0(NULL, &ptype, &pval, alg);
    return ptype == V_ASN1_OBJECT && pval != NULL
           && EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) == 1
           && OBJ_obj2nid(pval) != NID_undef && OBJ_obj2nid(pval) == OBJ_txt2nid(group);
}

/* 1 when the RSAPublicKey DER bits (modulus, exponent) are RSA key's n and e. */
static int pki_pub_same_rsa(const unsigned char *bits, int len, EVP_PKEY *key)
{
    const unsigned char *p = bits;
    STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
    const char *names[2] = {OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E};
    int same = seq != NULL && p == bits + len && sk_ASN1_TYPE_num(seq) == 2;

    for (int i = 0; same && i < 2; i++) {
        const ASN1_TYPE *t = sk_ASN1_TYPE_value(seq, i);
        BIGNUM *want = NULL;
        BIGNUM *have = NULL;

        same = t->type == V_ASN1_INTEGER
               && (want = ASN1_INTEGER_to_BN(t->value.integer, NULL)) != NULL
               && EVP_PKEY_get_bn_param(key, names[i], &have) == 1 && BN_cmp(want, have) == 0;
        BN_free(want);
        BN_free(have);
    }
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    return same;
}

/* 1 when key's public half is, field for field, the key in c's SubjectPublicKeyInfo as
 * encoded there (EC: the same named curve and the same point bytes; RSA: the same modulus and
 * exponent), told without decoding that key; 0 when it cannot be told this way (other key
 * types, explicit curve parameters, another point encoding: the caller decodes then). */
static int pki_pub_same_bytes(X509 *c, EVP_PKEY *key)
{
    ASN1_OBJECT *oid = NULL;
    const unsigned char *bits = NULL;
    int len = 0;
    X509_ALGOR *alg = NULL;
    unsigned char point[160];
    size_t plen = 0;
    int nid;

    if (X509_PUBKEY_get0_param(&oid, &bits, &len, &alg, X509_get_X509_PUBKEY(c)) != 1
        || bits == NULL || len <= 0) {
        return 0;
    }
    nid = OBJ_obj2nid(oid);
    if (nid == NID_X9_62_id_ecPublicKey && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        return pki_pub_same_curve(alg, key)
               && EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                  sizeof(point), &plen)
                      == 1
               && plen == (size_t)len && memcmp(point, bits, plen) == 0;
    }
    if (nid == NID_rsaEncryption && EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        return pki_pub_same_rsa(bits, len, key);
    }
    return 0;
}

/* A lazily parsed c whose key is not decoded yet, and key proven to be its key without a
 * decode: key becomes c's public key (a reference kept on c, as a decoded one would be), so
 * that the self-signature check verifies with it instead of decoding the same key again. */
static int pki_pub_adopt(X509 *c, EVP_PKEY *key)
{
    if (X509_get0_pubkey(c) != NULL || !pki_lazy_ready() || X509_get_ex_data(c, pki_pub_idx) != NULL
        || !pki_pub_same_bytes(c, key)) {
        return 0;
    }
    if (EVP_PKEY_up_ref(key) == 1 && X509_set_ex_data(c, pki_pub_idx, key) != 1) {
        EVP_PKEY_free(key);
    }
    return 1;
}

int torii_pki__cert_key_match(X509 *c, EVP_PKEY *key)
{
    EVP_PKEY *pub = NULL;
    int ok;

    if (key != NULL && pki_pub_adopt(c, key)) {
        ERR_clear_error();
        return 1;
    }
    pub = torii_pki__cert_pub(c);
    ok = pub != NULL && key != NULL && EVP_PKEY_eq(pub, key) == 1;
    ERR_clear_error();
    return ok;
}
