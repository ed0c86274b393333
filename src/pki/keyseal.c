/* keyseal.c - the one place where private key material is turned into its stored form and
 * back: torii_pki_key_seal (for the TLS record) and torii_pki_key_open (for the TLS table and
 * the client identities). Today the sealed form is the DER of i2d_PrivateKey (a
 * pass-through); the key-encryption-key envelope (AES-256-GCM, the record id as associated
 * data) plugs in here without any caller changing. Threads: any (pure). */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "pki_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

int torii_pki_key_seal(const char *id, EVP_PKEY *key, unsigned char **out, size_t *out_len,
                       struct torii_errbuf *eb)
{
    unsigned char *der = NULL;
    int len;

    (void)id; /* the future AEAD's associated data */
    len = i2d_PrivateKey(key, &der);
    if (len <= 0) {
        (void)torii_errbuf_ossl(eb, "certrec: i2d_PrivateKey");
        return TORII_EINVAL;
    }
    *out = torii_xmalloc((size_t)len);
    memcpy(*out, der, (size_t)len);
    *out_len = (size_t)len;
    OPENSSL_clear_free(der, (size_t)len);
    return TORII_OK;
}

/* The sealed DER is i2d_PrivateKey output: type-specific for RSA and EC, PKCS#8 for the others;
 * d2i_AutoPrivateKey covers what d2i_PrivateKey of the recorded type does not. */
int torii_pki_key_open(const char *id, int key_type, const unsigned char *sealed, size_t len,
                       EVP_PKEY **out)
{
    const unsigned char *p = sealed;
    EVP_PKEY *k = NULL;

    (void)id;
    if (sealed == NULL || len == 0 || len > LONG_MAX) {
        return TORII_EINVAL;
    }
    if (key_type != 0) {
        k = d2i_PrivateKey(key_type, NULL, &p, (long)len);
    }
    if (k == NULL) {
        ERR_clear_error();
        p = sealed;
        k = d2i_AutoPrivateKey(NULL, &p, (long)len);
    }
    if (k == NULL) {
        ERR_clear_error();
        return TORII_EINVAL;
    }
    *out = k;
    return TORII_OK;
}
