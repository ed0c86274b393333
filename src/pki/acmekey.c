/* acmekey.c - the key material of the ACME client (src/acme), which never decodes a key
 * itself (STYLE 2.1): the ES256 account key (generation, its JWK and RFC 7638 thumbprint,
 * JWS signatures), the HS256 MAC of external account binding, and the CSR of a certificate
 * order with its fresh key. Threads: any thread (pure functions). */
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/jwt.h"
#include "torii/pki.h"

#define ACMEKEY_P256 32

int torii_pki_acme_key_new(char **pem_out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;

    TORII_TRY(torii_pki__key_generate(EVP_PKEY_EC, 256, &key, eb));
    TORII_TRY(torii_pki__key_pem(key, pem_out));
out:
    EVP_PKEY_free(key);
    return rc;
}

/* The account key: an ECDSA P-256 private key, else TORII_EINVAL. */
static int acmekey_load(const char *pem, EVP_PKEY **out, struct torii_errbuf *eb)
{
    int rc = torii_pki__key_parse(pem, NULL, out, eb);
    char group[32] = "";

    if (rc != TORII_OK) {
        return rc;
    }
    if (!EVP_PKEY_is_a(*out, "EC")
        || EVP_PKEY_get_utf8_string_param(*out, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          NULL)
               != 1
        || strcmp(group, "prime256v1") != 0) {
        EVP_PKEY_free(*out);
        *out = NULL;
        return torii_errf(eb, TORII_EINVAL, "acme: the account key is not an ECDSA P-256 key");
    }
    return TORII_OK;
}

/* base64url of a big number left-padded to n bytes. */
static char *acmekey_coord(EVP_PKEY *key, const char *param, size_t n)
{
    BIGNUM *bn = NULL;
    unsigned char buf[ACMEKEY_P256];
    char *s = NULL;

    if (n > sizeof(buf) || EVP_PKEY_get_bn_param(key, param, &bn) != 1
        || BN_bn2binpad(bn, buf, (int)n) != (int)n) {
        goto out;
    }
    s = torii_b64_encode(buf, n, 1, NULL);
out:
    BN_free(bn);
    return s;
}

int torii_pki_acme_jwk(const char *key_pem, json_t **jwk_out, char *thumb, size_t thumb_len,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    char *x = NULL;
    char *y = NULL;
    char *canon = NULL;
    char *t = NULL;
    unsigned char md[32];
    unsigned mdlen = 0;
    json_t *jwk = NULL;

    TORII_TRY(acmekey_load(key_pem, &key, eb));
    x = acmekey_coord(key, OSSL_PKEY_PARAM_EC_PUB_X, ACMEKEY_P256);
    y = acmekey_coord(key, OSSL_PKEY_PARAM_EC_PUB_Y, ACMEKEY_P256);
    TORII_ENSURE(x != NULL && y != NULL, torii_errbuf_ossl(eb, "acme: account key coordinates"));
    /* RFC 7638: the required members in lexicographic order, no whitespace. */
    jwk = json_pack("{s:s,s:s,s:s,s:s}", "crv", "P-256", "kty", "EC", "x", x, "y", y);
    TORII_ENSURE(jwk != NULL, TORII_ENOMEM);
    canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    TORII_ENSURE(canon != NULL, TORII_ENOMEM);
    TORII_ENSURE(EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) == 1,
                 torii_errbuf_ossl(eb, "acme: thumbprint"));
    t = torii_b64_encode(md, mdlen, 1, NULL);
    TORII_ENSURE(t != NULL && strlen(t) < thumb_len, TORII_ENOMEM);
    memcpy(thumb, t, strlen(t) + 1);
    *jwk_out = jwk;
    jwk = NULL;
out:
    json_decref(jwk);
    free(canon);
    free(t);
    free(x);
    free(y);
    EVP_PKEY_free(key);
    return rc;
}

int torii_pki_acme_sign(const char *key_pem, const char *signing_input, char **sig_out,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *mctx = NULL;
    unsigned char der[80];
    size_t der_len = sizeof(der);
    unsigned char raw[2 * ACMEKEY_P256];

    TORII_TRY(acmekey_load(key_pem, &key, eb));
    mctx = EVP_MD_CTX_new();
    TORII_ENSURE(mctx != NULL, TORII_ENOMEM);
    TORII_ENSURE(EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, key) == 1
                     && EVP_DigestSign(mctx, der, &der_len, (const unsigned char *)signing_input,
                                       strlen(signing_input))
                            == 1,
                 torii_errbuf_ossl(eb, "acme: ES256 signature"));
    TORII_TRY(torii_jwt_ecdsa_der_to_raw(der, der_len, ACMEKEY_P256, raw));
    *sig_out = torii_b64_encode(raw, sizeof(raw), 1, NULL);
    TORII_ENSURE(*sig_out != NULL, TORII_ENOMEM);
out:
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_free(key);
    return rc;
}

int torii_pki_acme_hs256(const char *key_b64url, const char *signing_input, char **sig_out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *key = NULL;
    size_t key_len = 0;
    unsigned char mac[32];
    unsigned mac_len = 0;

    TORII_ENSURE(torii_b64_decode(key_b64url, strlen(key_b64url), &key, &key_len) == TORII_OK
                     && key_len > 0,
                 torii_errf(eb, TORII_EINVAL, "acme.eab.hmac_key: not base64url"));
    TORII_ENSURE(HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)signing_input,
                      strlen(signing_input), mac, &mac_len)
                     != NULL,
                 torii_errbuf_ossl(eb, "acme: HS256"));
    *sig_out = torii_b64_encode(mac, mac_len, 1, NULL);
    TORII_ENSURE(*sig_out != NULL, TORII_ENOMEM);
out:
    torii_secure_free(key, key_len);
    return rc;
}

/* A PEM CSR as base64url DER (what finalize takes). */
static int acmekey_csr_der(const char *pem, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = NULL;
    unsigned char *der = NULL;
    int len;

    TORII_ENSURE(bio != NULL, TORII_ENOMEM);
    req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    TORII_ENSURE(req != NULL, torii_errbuf_ossl(eb, "acme: CSR"));
    len = i2d_X509_REQ(req, &der);
    TORII_ENSURE(len > 0, torii_errbuf_ossl(eb, "acme: CSR DER"));
    *out = torii_b64_encode(der, (size_t)len, 1, NULL);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    OPENSSL_free(der);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

int torii_pki_acme_csr(const json_t *hosts, const json_t *key_spec, char **csr_b64url,
                       char **key_pem, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *q = json_pack("{s:o}", "hosts", json_deep_copy(hosts));
    json_t *r = NULL;
    const char *k;

    TORII_ENSURE(q != NULL, TORII_ENOMEM);
    if (key_spec != NULL) {
        TORII_ENSURE(json_object_set_new(q, "key", json_deep_copy(key_spec)) == 0, TORII_ENOMEM);
    }
    TORII_TRY(torii_pki_csr_create(q, &r, eb));
    TORII_TRY(acmekey_csr_der(json_string_value(json_object_get(r, "csr")), csr_b64url, eb));
    k = json_string_value(json_object_get(r, "privateKey"));
    *key_pem = torii_xstrdup(k);
out:
    torii_cert_secrets_wipe(r);
    json_decref(r);
    json_decref(q);
    return rc;
}

/* id-pe-acmeIdentifier (RFC 8737 6.1). */
#define ACMEKEY_ALPN_OID "1.3.6.1.5.5.7.1.31"

/* The critical acmeIdentifier extension: an OCTET STRING holding the 32-byte digest. */
static int acmekey_alpn_ext(X509 *x, const unsigned char digest[32])
{
    int ok = 0;
    ASN1_OBJECT *obj = OBJ_txt2obj(ACMEKEY_ALPN_OID, 1);
    ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING *outer = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    unsigned char *der = NULL;
    int len;

    if (obj == NULL || inner == NULL || outer == NULL
        || ASN1_OCTET_STRING_set(inner, digest, 32) != 1
        || (len = i2d_ASN1_OCTET_STRING(inner, &der)) <= 0
        || ASN1_OCTET_STRING_set(outer, der, len) != 1) {
        goto out;
    }
    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, outer);
    ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
out:
    X509_EXTENSION_free(ext);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OCTET_STRING_free(outer);
    ASN1_OBJECT_free(obj);
    return ok;
}

/* A self-signed certificate for name with the acmeIdentifier extension, valid a week. */
static int acmekey_alpn_cert(const char *name, const unsigned char digest[32], EVP_PKEY *key,
                             X509 **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    GENERAL_NAMES *sans = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    BIGNUM *bn = NULL;
    unsigned char serial[16];

    TORII_ENSURE(x != NULL && subj != NULL && sans != NULL && gn != NULL && ia5 != NULL,
                 TORII_ENOMEM);
    TORII_TRY(torii_rand_bytes(serial, sizeof(serial)));
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    TORII_ENSURE(bn != NULL, TORII_ENOMEM);
    TORII_ENSURE(ASN1_STRING_set(ia5, name, -1) == 1, TORII_ENOMEM);
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    ia5 = NULL;
    TORII_ENSURE(sk_GENERAL_NAME_push(sans, gn) > 0, TORII_ENOMEM);
    gn = NULL;
    TORII_ENSURE(X509_set_version(x, 2) == 1
                     && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL
                     && X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                   (const unsigned char *)name, -1, -1, 0)
                            == 1
                     && X509_set_subject_name(x, subj) == 1 && X509_set_issuer_name(x, subj) == 1
                     && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL
                     && X509_gmtime_adj(X509_getm_notAfter(x), 7L * 86400) != NULL
                     && X509_set_pubkey(x, key) == 1
                     && X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, 0) == 1
                     && acmekey_alpn_ext(x, digest) && X509_sign(x, key, EVP_sha256()) > 0,
                 torii_errbuf_ossl(eb, "acme: tls-alpn-01 certificate"));
    *out = x;
    x = NULL;
out:
    BN_free(bn);
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(sans);
    X509_NAME_free(subj);
    X509_free(x);
    return rc;
}

/* The validation certificate and its fresh key as PEM. */
static int acmekey_alpn_pems(const char *name, const unsigned char digest[32], char **chain_pem,
                             char **key_pem, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();

    TORII_ENSURE(chain != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki__key_generate(EVP_PKEY_EC, 256, &key, eb));
    TORII_TRY(acmekey_alpn_cert(name, digest, key, &x, eb));
    TORII_ENSURE(sk_X509_push(chain, x) > 0, TORII_ENOMEM);
    x = NULL;
    TORII_TRY(torii_pki__chain_pem(chain, chain_pem));
    TORII_TRY(torii_pki__key_pem(key, key_pem));
out:
    sk_X509_pop_free(chain, X509_free);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* The validation blob (private to this file's two functions): the TLS record's length as 4
 * bytes big-endian, the record (version 3: no key bytes), then the key PEM with its NUL. */
static void acmekey_alpn_pack(const unsigned char *rec, size_t rec_len, const char *key_pem,
                              unsigned char **out, size_t *out_len)
{
    size_t klen = strlen(key_pem) + 1;
    unsigned char *b = torii_xmalloc(4 + rec_len + klen);

    b[0] = (unsigned char)(rec_len >> 24);
    b[1] = (unsigned char)(rec_len >> 16);
    b[2] = (unsigned char)(rec_len >> 8);
    b[3] = (unsigned char)rec_len;
    memcpy(b + 4, rec, rec_len);
    memcpy(b + 4 + rec_len, key_pem, klen);
    *out = b;
    *out_len = 4 + rec_len + klen;
}

int torii_pki_acme_alpn_record(const char *name, const unsigned char digest[32],
                               unsigned char **rec_out, size_t *rec_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *chain_pem = NULL;
    char *key_pem = NULL;
    unsigned char *rec = NULL;
    size_t len = 0;
    json_t *e = NULL;

    TORII_TRY(acmekey_alpn_pems(name, digest, &chain_pem, &key_pem, eb));
    e = json_pack("{s:s,s:s,s:s}", "id", "acme-tls-alpn-01", "chain", chain_pem, "privateKey",
                  key_pem);
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_TRY(torii_cert_enrich(e, (int64_t)time(NULL) * 1000, eb));
    TORII_TRY(torii_certrec_build(e, &rec, &len, eb));
    acmekey_alpn_pack(rec, len, key_pem, rec_out, rec_len);
out:
    torii_cert_secrets_wipe(e);
    json_decref(e);
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    torii_secure_free(rec, len);
    free(chain_pem);
    return rc;
}

int torii_pki_acme_alpn_identity(const unsigned char *blob, size_t len,
                                 struct torii_pki_identity **out, struct torii_errbuf *eb)
{
    size_t rec_len;
    struct torii_pki_key_src key = {.id = "acme-tls-alpn-01"};

    if (blob == NULL || len < 5) {
        return torii_errf(eb, TORII_EINVAL, "tls-alpn-01: validation blob truncated");
    }
    rec_len = ((size_t)blob[0] << 24) | ((size_t)blob[1] << 16) | ((size_t)blob[2] << 8)
              | (size_t)blob[3];
    if (rec_len > len - 5 || blob[len - 1] != '\0') {
        return torii_errf(eb, TORII_EINVAL, "tls-alpn-01: validation blob malformed");
    }
    key.text = (const char *)blob + 4 + rec_len;
    return torii_pki_identity_new(blob + 4, rec_len, &key, out, eb);
}
