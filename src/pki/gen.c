/* gen.c - the first-start default certificate: an ECDSA P-256 self-signed server certificate
 * (profile of reference 3.4 for a leaf: BasicConstraints CA:false, KeyUsage
 * digitalSignature, EKU serverAuth, SAN = the names, SKI). */
#include <arpa/inet.h>

#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

/* RFC 5280 ub-common-name: a longer first name is left to the SAN alone. */
#define PKI_CN_MAX 64

static int gen_add_ext(X509 *c, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        return TORII_EINVAL;
    }
    ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? TORII_OK : TORII_ENOMEM;
}

/* DNS names: letters, digits, '-', '.', '_' and a leading "*." wildcard. */
static int gen_dns_ok(const char *s)
{
    size_t len = strlen(s);
    size_t i;

    if (len == 0 || len > 253) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!(alnum || c == '-' || c == '.' || c == '_' || (c == '*' && i == 0))) {
            return 0;
        }
    }
    return 1;
}

static int gen_sans(const char *const *names, size_t n, GENERAL_NAMES **out,
                    struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = NULL;
    size_t i;

    TORII_ENSURE(gens != NULL, TORII_ENOMEM);
    for (i = 0; i < n; i++) {
        unsigned char bin[16];
        int is_ip =
            inet_pton(AF_INET, names[i], bin) == 1 || inet_pton(AF_INET6, names[i], bin) == 1;

        if (is_ip) {
            g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_IPADD, names[i], 0);
        } else {
            TORII_ENSURE(
                gen_dns_ok(names[i]),
                torii_errf(eb, TORII_EINVAL, "generate: '%s' is not a DNS name or IP", names[i]));
            g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, names[i], 0);
        }
        TORII_ENSURE(g != NULL, torii_errbuf_ossl(eb, "generate: SAN"));
        TORII_ENSURE(sk_GENERAL_NAME_push(gens, g) > 0, TORII_ENOMEM);
        g = NULL;
    }
    *out = gens;
    gens = NULL;
out:
    GENERAL_NAME_free(g);
    GENERAL_NAMES_free(gens);
    return rc;
}

static int gen_key_pem(EVP_PKEY *key, char **out)
{
    int rc = TORII_OK;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    TORII_ENSURE(b != NULL, TORII_ENOMEM);
    TORII_ENSURE(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1, TORII_ENOMEM);
    len = BIO_get_mem_data(b, &data);
    TORII_ENSURE(len > 0, TORII_ENOMEM);
    *out = torii_xstrndup(data, (size_t)len);
out:
    if (b != NULL) {
        /* The BIO holds the key text: wipe before freeing. */
        len = BIO_get_mem_data(b, &data);
        if (len > 0) {
            OPENSSL_cleanse(data, (size_t)len);
        }
    }
    BIO_free(b);
    return rc;
}

int torii_cert_generate_selfsigned(const char *id, const char *const *dns_names, size_t n_names,
                                   int64_t now_ms, int days, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    X509 *c = NULL;
    X509_NAME *subj = NULL;
    GENERAL_NAMES *gens = NULL;
    BIGNUM *bn = NULL;
    STACK_OF(X509) *chain = NULL;
    char *chain_pem = NULL;
    char *key_pem = NULL;
    json_t *e = NULL;
    unsigned char serial[16];
    X509V3_CTX ctx;
    time_t t;
    char gen_id[64];

    TORII_ENSURE(dns_names != NULL && n_names > 0,
                 torii_errf(eb, TORII_EINVAL, "generate: at least one name is required"));
    TORII_ENSURE(days > 0 && days <= 36500,
                 torii_errf(eb, TORII_EINVAL, "generate: days must be in 1..36500"));
    TORII_ENSURE(now_ms >= 0, torii_errf(eb, TORII_EINVAL, "generate: negative time"));
    if (id == NULL) {
        TORII_TRY(torii_uuid_id("cert_", gen_id, sizeof(gen_id)));
        id = gen_id;
    }
    TORII_ENSURE(id[0] != '\0', torii_errf(eb, TORII_EINVAL, "generate: empty id"));
    TORII_TRY(gen_sans(dns_names, n_names, &gens, eb));

    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    TORII_ENSURE(key != NULL, torii_errbuf_ossl(eb, "generate: EC key"));
    c = X509_new();
    subj = X509_NAME_new();
    TORII_ENSURE(c != NULL && subj != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_set_version(c, X509_VERSION_3) == 1, TORII_ENOMEM);
    /* 128 random bits, read as an unsigned (so positive) integer (RFC 5280 4.1.2.2). */
    TORII_TRY(torii_rand_bytes(serial, sizeof(serial)));
    serial[sizeof(serial) - 1] |= 1; /* never zero */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    TORII_ENSURE(bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) != NULL,
                 TORII_ENOMEM);
    t = (time_t)(now_ms / 1000);
    TORII_ENSURE(X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, &t) != NULL
                     && X509_time_adj_ex(X509_getm_notAfter(c), days, 0, &t) != NULL,
                 torii_errbuf_ossl(eb, "generate: validity"));
    if (strlen(dns_names[0]) <= PKI_CN_MAX) {
        TORII_ENSURE(X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                (const unsigned char *)dns_names[0], -1, -1, 0)
                         == 1,
                     torii_errbuf_ossl(eb, "generate: subject CN"));
    }
    TORII_ENSURE(X509_set_subject_name(c, subj) == 1 && X509_set_issuer_name(c, subj) == 1
                     && X509_set_pubkey(c, key) == 1,
                 TORII_ENOMEM);
    X509V3_set_ctx(&ctx, c, c, NULL, NULL, 0);
    TORII_TRY(gen_add_ext(c, &ctx, NID_basic_constraints, "critical,CA:FALSE"));
    TORII_TRY(gen_add_ext(c, &ctx, NID_key_usage, "critical,digitalSignature"));
    TORII_TRY(gen_add_ext(c, &ctx, NID_ext_key_usage, "serverAuth"));
    TORII_TRY(gen_add_ext(c, &ctx, NID_subject_key_identifier, "hash"));
    TORII_ENSURE(X509_add1_ext_i2d(c, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1,
                 TORII_ENOMEM);
    TORII_ENSURE(X509_sign(c, key, EVP_sha256()) > 0, torii_errbuf_ossl(eb, "generate: sign"));

    chain = sk_X509_new_null();
    TORII_ENSURE(chain != NULL && sk_X509_push(chain, c) > 0, TORII_ENOMEM);
    c = NULL; /* owned by chain */
    TORII_TRY(torii_pki__chain_pem(chain, &chain_pem));
    TORII_TRY(gen_key_pem(key, &key_pem));

    e = torii_cert_template();
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(e, "id", json_string(id)) == 0,
                 torii_errf(eb, TORII_EINVAL, "generate: id is not valid UTF-8"));
    TORII_ENSURE(json_object_set_new(e, "domain", json_string(dns_names[0])) == 0
                     && json_object_set_new(e, "name", json_string(dns_names[0])) == 0
                     && json_object_set_new(e, "description",
                                            json_sprintf("Certificate for %s", dns_names[0]))
                            == 0
                     && json_object_set_new(e, "chain", json_string(chain_pem)) == 0
                     && json_object_set_new(e, "privateKey", json_string(key_pem)) == 0
                     && json_object_set_new(e, "autoRenew", json_true()) == 0,
                 TORII_ENOMEM);
    TORII_TRY(torii_cert_enrich(e, now_ms, eb));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    free(chain_pem);
    sk_X509_pop_free(chain, X509_free);
    BN_free(bn);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
    X509_free(c);
    EVP_PKEY_free(key);
    return rc;
}
