/* ca.c - CA entities: loading one for signing, creating root and sub-CAs, and the small
 * encoding helpers the issuing files share (serial text, default digest, key PEM, base64).
 *
 * A CA entity is only trusted to sign when everything agrees: the ca flag, BasicConstraints
 * CA:TRUE on its leaf, not revoked, and a private key that matches the leaf. Otoroshi only
 * checked the flag (reference 3.2); a flag without a key gave a server error. */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/pki.h"

int torii_pki__ca_load(const json_t *entity, struct torii_pki__ca *ca, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *id;
    const char *pk;
    X509 *leaf;

    memset(ca, 0, sizeof(*ca));
    TORII_ENSURE(json_is_object(entity),
                 torii_errf(eb, TORII_EINVAL, "issuer: CA entity must be a JSON object"));
    id = json_string_value(json_object_get(entity, "id"));
    if (id == NULL) {
        id = "(no id)";
    }
    TORII_ENSURE(json_is_true(json_object_get(entity, "ca")),
                 torii_errf(eb, TORII_EINVAL, "issuer '%s' is not a CA (ca=false)", id));
    TORII_ENSURE(!json_is_true(json_object_get(entity, "revoked")),
                 torii_errf(eb, TORII_EINVAL, "issuer '%s' is revoked", id));
    pk = json_string_value(json_object_get(entity, "privateKey"));
    TORII_ENSURE(pk != NULL && pk[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "issuer '%s' has no private key", id));
    if (torii_pki__chain_parse(json_string_value(json_object_get(entity, "chain")), &chain, eb)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "issuer '%s': chain does not parse", id);
        goto out;
    }
    leaf = sk_X509_value(chain, 0);
    TORII_ENSURE(X509_check_ca(leaf) == 1,
                 torii_errf(eb, TORII_EINVAL, "issuer '%s': certificate is not a CA", id));
    if (torii_pki__key_parse(pk, json_string_value(json_object_get(entity, "password")), &key, eb)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "issuer '%s': private key does not parse", id);
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        rc = torii_errf(eb, TORII_EINVAL, "issuer '%s': private key does not match", id);
        goto out;
    }
    ca->cert = leaf;
    ca->chain = chain;
    chain = NULL;
    ca->key = key;
    key = NULL;
    ca->id = id;
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

void torii_pki__ca_clear(struct torii_pki__ca *ca)
{
    if (ca == NULL) {
        return;
    }
    EVP_PKEY_free(ca->key);
    sk_X509_pop_free(ca->chain, X509_free);
    memset(ca, 0, sizeof(*ca));
}

const EVP_MD *torii_pki__default_md(EVP_PKEY *key)
{
    int type = EVP_PKEY_get_base_id(key);

    if (type == EVP_PKEY_ED25519 || type == EVP_PKEY_ED448) {
        return NULL;
    }
    if (type == EVP_PKEY_EC) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits > 384) {
            return EVP_sha512();
        }
        if (bits > 256) {
            return EVP_sha384();
        }
    }
    return EVP_sha256();
}

int torii_pki__serial_hex(const ASN1_INTEGER *serial, char *buf, size_t len)
{
    int rc = TORII_OK;
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = NULL;
    const char *p;
    size_t i;
    size_t n;

    TORII_ENSURE(bn != NULL, TORII_EINVAL);
    hex = BN_bn2hex(bn);
    TORII_ENSURE(hex != NULL, TORII_ENOMEM);
    p = hex;
    n = 0;
    if (*p == '-') {
        TORII_ENSURE(len > 1, TORII_EINVAL);
        buf[n++] = '-';
        p++;
    }
    while (p[0] == '0' && p[1] != '\0') {
        p++;
    }
    TORII_ENSURE(strlen(p) + n < len, TORII_EINVAL);
    for (i = 0; p[i] != '\0'; i++) {
        char c = p[i];
        buf[n++] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    buf[n] = '\0';
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

int torii_pki__serial_hex_der(const unsigned char *der, size_t der_len, char *buf, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = der;
    ASN1_INTEGER *ai = NULL;
    size_t n = 0;
    int rc;

    /* Fast path: INTEGER, short-form length, positive (top bit clear), minimal (no leading
     * 0x00 before a byte below 0x80). Anything else goes through OpenSSL, errors included. */
    if (der_len >= 3 && der_len <= 129 && der[0] == 0x02 && der[1] == der_len - 2
        && (der[2] & 0x80) == 0 && !(der[2] == 0 && der_len > 3 && (der[3] & 0x80) == 0)) {
        for (size_t i = 2; i < der_len; i++) {
            unsigned nib[2] = {der[i] >> 4, der[i] & 15u};
            for (int k = 0; k < 2; k++) {
                /* Leading zeros dropped, one kept for zero itself. */
                if (n == 0 && nib[k] == 0 && !(i + 1 == der_len && k == 1)) {
                    continue;
                }
                if (n + 1 >= len) {
                    return TORII_EINVAL;
                }
                buf[n++] = digits[nib[k]];
            }
        }
        buf[n] = '\0';
        return TORII_OK;
    }
    ai = d2i_ASN1_INTEGER(NULL, &p, (long)der_len);
    rc = ai != NULL ? torii_pki__serial_hex(ai, buf, len) : TORII_EINVAL;
    ASN1_INTEGER_free(ai);
    ERR_clear_error();
    return rc;
}

/* Wipe and free a memory BIO that held key material. */
static void pki_bio_wipe_free(BIO *b)
{
    char *data = NULL;
    long len;

    if (b == NULL) {
        return;
    }
    len = BIO_get_mem_data(b, &data);
    if (len > 0 && data != NULL) {
        OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(b);
}

int torii_pki__key_pem(EVP_PKEY *key, char **out)
{
    int rc = TORII_OK;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    TORII_ENSURE(b != NULL, TORII_ENOMEM);
    TORII_ENSURE(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1, TORII_ETLS);
    len = BIO_get_mem_data(b, &data);
    TORII_ENSURE(len > 0, TORII_ENOMEM);
    *out = torii_xstrndup(data, (size_t)len);
out:
    pki_bio_wipe_free(b);
    return rc;
}

int torii_pki__pubkey_pem(EVP_PKEY *key, char **out)
{
    int rc = TORII_OK;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    TORII_ENSURE(b != NULL, TORII_ENOMEM);
    TORII_ENSURE(PEM_write_bio_PUBKEY(b, key) == 1, TORII_ETLS);
    len = BIO_get_mem_data(b, &data);
    TORII_ENSURE(len > 0, TORII_ENOMEM);
    *out = torii_xstrndup(data, (size_t)len);
out:
    BIO_free(b);
    return rc;
}

char *torii_pki__b64(const unsigned char *data, size_t len, int url)
{
    return torii_b64_encode(data, len, url);
}

/* ---- CA creation ---- */

int torii_pki_ca_create(const json_t *query, const struct torii_pki_opts *o, json_t **out,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;

    memset(&q, 0, sizeof(q));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(torii_pki__issue_entity(&q, NULL, TORII_PKI__ROOT_CA, o, out, eb));
out:
    torii_pki__query_clear(&q);
    return rc;
}

int torii_pki_subca_create(const json_t *ca_entity, const json_t *query,
                           const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;
    struct torii_pki__ca ca;

    memset(&q, 0, sizeof(q));
    memset(&ca, 0, sizeof(ca));
    TORII_TRY(torii_pki__ca_load(ca_entity, &ca, eb));
    /* pathLenConstraint 0 on the issuer forbids any CA below it (RFC 5280 4.2.1.9). */
    TORII_ENSURE(
        X509_get_pathlen(ca.cert) != 0,
        torii_errf(eb, TORII_EINVAL, "issuer '%s' has pathLen 0 and cannot sign a sub-CA", ca.id));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(torii_pki__issue_entity(&q, &ca, TORII_PKI__SUB_CA, o, out, eb));
out:
    torii_pki__query_clear(&q);
    torii_pki__ca_clear(&ca);
    return rc;
}
