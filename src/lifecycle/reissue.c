/* reissue.c - re-issuing a certificate from its previous version: the X509 is copied
 * (subject, SANs, key usages, EKU and the other extensions stay as they were), then gets a
 * new serial, new dates with the same validity length, a new key of the same type and size
 * (leaves) or the same key (CAs, so what they issued still verifies), fresh SKI/AKI, and is
 * signed by the issuing CA (or itself) with the original digest.
 * TODO(pki): this signs with a stored private key outside src/pki (STYLE 2.1); it belongs
 * behind a torii_pki_cert_renew() once the PKI module offers one. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"

static int reissue_chain_parse(const char *pem, STACK_OF(X509) * *out, struct torii_errbuf *eb)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    BIO *bio = NULL;
    X509 *c;
    int rc = TORII_OK;

    TORII_ENSURE(pem != NULL, torii_errf(eb, TORII_EINVAL, "no chain"));
    TORII_ENSURE(chain != NULL, TORII_ENOMEM);
    bio = BIO_new_mem_buf(pem, -1);
    TORII_ENSURE(bio != NULL, TORII_ENOMEM);
    while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(chain, c) <= 0) {
            X509_free(c);
            rc = TORII_ENOMEM;
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the input is reported as an error */
    TORII_ENSURE(sk_X509_num(chain) > 0,
                 torii_errf(eb, TORII_EINVAL, "chain holds no certificate"));
    *out = chain;
    chain = NULL;
out:
    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

static int reissue_key_parse(const char *pem, const char *password, EVP_PKEY **out,
                             struct torii_errbuf *eb)
{
    BIO *bio;
    EVP_PKEY *k;

    if (pem == NULL || pem[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "no private key");
    }
    bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        return TORII_ENOMEM;
    }
    /* With a NULL callback, OpenSSL takes u as the passphrase. */
    k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)(uintptr_t)(password ? password : ""));
    BIO_free(bio);
    if (k == NULL) {
        return torii_errbuf_ossl(eb, "private key does not parse");
    }
    *out = k;
    return TORII_OK;
}

static int reissue_key_like(EVP_PKEY *old, EVP_PKEY **out, struct torii_errbuf *eb)
{
    char group[64];
    EVP_PKEY *k = NULL;

    switch (EVP_PKEY_get_base_id(old)) {
    case EVP_PKEY_RSA:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)EVP_PKEY_get_bits(old));
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(old, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL)
            != 1) {
            return torii_errbuf_ossl(eb, "EC key without a named curve");
        }
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
        break;
    case EVP_PKEY_ED25519:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    case EVP_PKEY_ED448:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
        break;
    default:
        return torii_errf(eb, TORII_EUNSUPPORTED, "unsupported key type for renewal");
    }
    if (k == NULL) {
        return torii_errbuf_ossl(eb, "key generation failed");
    }
    *out = k;
    return TORII_OK;
}

static int reissue_serial(X509 *c)
{
    unsigned char r[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    int rc = TORII_OK;

    TORII_TRY(torii_rand_bytes(r, sizeof(r)));
    r[0] &= 0x7f; /* positive (RFC 5280 4.1.2.2) */
    r[0] |= 0x40; /* and never zero / never shorter than 127 bits */
    bn = BN_bin2bn(r, (int)sizeof(r), NULL);
    TORII_ENSURE(bn != NULL, TORII_ENOMEM);
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    TORII_ENSURE(ai != NULL && X509_set_serialNumber(c, ai) == 1, TORII_ETLS);
out:
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return rc;
}

static void reissue_del_ext(X509 *c, int nid)
{
    int loc;

    while ((loc = X509_get_ext_by_NID(c, nid, -1)) >= 0) {
        X509_EXTENSION_free(X509_delete_ext(c, loc));
    }
}

static int reissue_add_ext(X509 *c, X509 *issuer, int nid, const char *value,
                           struct torii_errbuf *eb)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return torii_errbuf_ossl(eb, "cannot build an extension");
    }
    ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? TORII_OK : torii_errbuf_ossl(eb, "cannot add an extension");
}

static int reissue_time_s(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return TORII_EINVAL;
    }
    *out = (int64_t)timegm(&tm);
    return TORII_OK;
}

/* Clients whose clock lags a little must accept a certificate renewed a moment ago. */
#define REISSUE_BACKDATE_S 300

/* Dates: notBefore = now - REISSUE_BACKDATE_S (when the validity is longer than a day),
 * same length as before, clamped to the issuer's notAfter. */
static int reissue_dates(X509 *c, const X509 *old, const X509 *issuer, int64_t now_ms,
                         struct torii_errbuf *eb)
{
    int64_t nb = 0;
    int64_t na = 0;
    int64_t inb = 0;
    int64_t now_s = now_ms / 1000;
    int64_t end;

    if (reissue_time_s(X509_get0_notBefore(old), &nb) != TORII_OK
        || reissue_time_s(X509_get0_notAfter(old), &na) != TORII_OK || na <= nb) {
        return torii_errf(eb, TORII_EINVAL, "certificate has unusable validity dates");
    }
    if (na - nb > 86400) {
        now_s -= REISSUE_BACKDATE_S;
    }
    end = now_s + (na - nb);
    if (issuer != NULL && reissue_time_s(X509_get0_notAfter(issuer), &inb) == TORII_OK
        && inb < end) {
        torii_log(TORII_LOG_WARN, "renew: validity clamped to the issuer's notAfter");
        end = inb;
    }
    if (end <= now_ms / 1000) {
        return torii_errf(eb, TORII_EINVAL, "the issuing CA expires before the renewal");
    }
    if (ASN1_TIME_set(X509_getm_notBefore(c), (time_t)now_s) == NULL
        || ASN1_TIME_set(X509_getm_notAfter(c), (time_t)end) == NULL) {
        return torii_errbuf_ossl(eb, "cannot set the validity dates");
    }
    return TORII_OK;
}

static const EVP_MD *reissue_md(const X509 *old, EVP_PKEY *signer)
{
    int mdnid = NID_undef;
    int id = EVP_PKEY_get_base_id(signer);

    if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) {
        return NULL;
    }
    if (X509_get_signature_info((X509 *)(uintptr_t)old, &mdnid, NULL, NULL, NULL) == 1
        && mdnid != NID_undef) {
        const EVP_MD *md = EVP_get_digestbynid(mdnid);
        if (md != NULL) {
            return md;
        }
    }
    return EVP_sha256();
}

static int reissue_pem_cert(X509 *c, const char *rest, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;
    size_t rl = rest != NULL ? strlen(rest) : 0;
    char *s;

    if (bio == NULL || PEM_write_bio_X509(bio, c) != 1) {
        BIO_free(bio);
        return TORII_ETLS;
    }
    n = BIO_get_mem_data(bio, &data);
    s = torii_xmalloc((size_t)n + rl + 2);
    memcpy(s, data, (size_t)n);
    if (rl > 0) {
        memcpy(s + n, rest, rl);
    }
    s[(size_t)n + rl] = '\0';
    BIO_free(bio);
    *out = s;
    return TORII_OK;
}

static int reissue_pem_key(EVP_PKEY *k, char **out)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    char *data = NULL;
    long n;

    if (bio == NULL || PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        return TORII_ETLS;
    }
    n = BIO_get_mem_data(bio, &data);
    *out = torii_xstrndup(data, (size_t)n);
    BIO_free(bio);
    return TORII_OK;
}

static const char *reissue_str(const json_t *e, const char *k)
{
    const char *s = json_string_value(json_object_get(e, k));
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* The signing side: issuer certificate and key, from the CA entity or the entity itself. */
struct reissue_signer {
    STACK_OF(X509) * chain; /* CA chain (NULL when self-signed) */
    EVP_PKEY *key;
};

static int reissue_signer_load(const json_t *ca, struct reissue_signer *s, struct torii_errbuf *eb)
{
    const char *id = reissue_str(ca, "id");
    struct torii_errbuf sub = {{0}};
    int rc = TORII_OK;

    if (!json_is_true(json_object_get(ca, "ca")) || json_is_true(json_object_get(ca, "revoked"))) {
        return torii_errf(eb, TORII_EINVAL,
                          "issuing CA %s is not a usable CA (ca=false or revoked)", id ? id : "?");
    }
    if (reissue_chain_parse(reissue_str(ca, "chain"), &s->chain, &sub) != TORII_OK
        || reissue_key_parse(reissue_str(ca, "privateKey"), reissue_str(ca, "password"), &s->key,
                             &sub)
               != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "issuing CA %s: %s", id ? id : "?", sub.msg);
    }
    if (X509_check_private_key(sk_X509_value(s->chain, 0), s->key) != 1) {
        ERR_clear_error();
        rc = torii_errf(eb, TORII_EINVAL, "issuing CA %s: key does not match its certificate",
                        id ? id : "?");
    }
    return rc;
}

int torii_renew_reissue(const json_t *entity, const json_t *ca_entity, int64_t now_ms, json_t **out,
                        struct torii_errbuf *eb)
{
    struct reissue_signer sg = {NULL, NULL};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *old_key = NULL;
    EVP_PKEY *new_key = NULL;
    EVP_PKEY *subject_key;
    X509 *old;
    X509 *issuer;
    X509 *c = NULL;
    char *chain_pem = NULL;
    char *key_pem = NULL;
    json_t *res = NULL;
    json_t *md;
    char ms[32];
    int is_ca = json_is_true(json_object_get(entity, "ca"));
    int rc = TORII_OK;

    TORII_TRY(reissue_chain_parse(reissue_str(entity, "chain"), &chain, eb));
    TORII_TRY(reissue_key_parse(reissue_str(entity, "privateKey"), reissue_str(entity, "password"),
                                &old_key, eb));
    old = sk_X509_value(chain, 0);
    if (X509_check_private_key(old, old_key) != 1) {
        ERR_clear_error();
        rc = torii_errf(eb, TORII_EINVAL, "private key does not match the certificate");
        goto out;
    }
    if (ca_entity != NULL) {
        TORII_TRY(reissue_signer_load(ca_entity, &sg, eb));
        issuer = sk_X509_value(sg.chain, 0);
    } else {
        issuer = NULL; /* self-signed: set below once c exists */
    }
    /* CAs keep their key (older certificates they issued must still verify); leaves get a
     * new one of the same type and size. */
    if (is_ca) {
        subject_key = old_key;
    } else {
        TORII_TRY(reissue_key_like(old_key, &new_key, eb));
        subject_key = new_key;
    }
    c = X509_dup(old);
    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_TRY(reissue_serial(c));
    TORII_TRY(reissue_dates(c, old, issuer, now_ms, eb));
    TORII_ENSURE(X509_set_pubkey(c, subject_key) == 1, torii_errbuf_ossl(eb, "X509_set_pubkey"));
    reissue_del_ext(c, NID_ct_precert_scts); /* SCTs are bound to the old certificate */
    if (!is_ca) {
        reissue_del_ext(c, NID_subject_key_identifier);
        TORII_TRY(reissue_add_ext(c, c, NID_subject_key_identifier, "hash", eb));
    }
    if (issuer == NULL) {
        issuer = c;
    }
    TORII_ENSURE(X509_set_issuer_name(c, X509_get_subject_name(issuer)) == 1,
                 torii_errbuf_ossl(eb, "X509_set_issuer_name"));
    if (X509_get_ext_by_NID(c, NID_authority_key_identifier, -1) >= 0) {
        reissue_del_ext(c, NID_authority_key_identifier);
        if (X509_get_ext_by_NID(issuer, NID_subject_key_identifier, -1) >= 0) {
            TORII_TRY(reissue_add_ext(c, issuer, NID_authority_key_identifier, "keyid:always", eb));
        }
    }
    {
        EVP_PKEY *signer = sg.key != NULL ? sg.key : old_key;
        TORII_ENSURE(X509_sign(c, signer, reissue_md(old, signer)) > 0,
                     torii_errbuf_ossl(eb, "X509_sign"));
    }
    TORII_TRY(reissue_pem_cert(c, ca_entity != NULL ? reissue_str(ca_entity, "chain") : NULL,
                               &chain_pem));
    res = json_deep_copy(entity);
    TORII_ENSURE(res != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(res, "chain", json_string(chain_pem)) == 0, TORII_ENOMEM);
    if (new_key != NULL) {
        TORII_TRY(reissue_pem_key(new_key, &key_pem));
        TORII_ENSURE(json_object_set_new(res, "privateKey", json_string(key_pem)) == 0,
                     TORII_ENOMEM);
        TORII_ENSURE(json_object_set_new(res, "password", json_null()) == 0, TORII_ENOMEM);
    }
    md = json_object_get(res, "metadata");
    if (!json_is_object(md)) {
        md = json_object();
        TORII_ENSURE(md != NULL && json_object_set_new(res, "metadata", md) == 0, TORII_ENOMEM);
    }
    (void)json_object_del(md, "expired");
    (void)json_object_del(md, "almostExpired");
    (void)snprintf(ms, sizeof(ms), "%lld", (long long)now_ms);
    TORII_ENSURE(json_object_set_new(md, "renewedAt", json_string(ms)) == 0, TORII_ENOMEM);
    TORII_TRY(torii_cert_enrich(res, now_ms, eb));
    *out = res;
    res = NULL;
out:
    json_decref(res);
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    free(chain_pem);
    X509_free(c);
    EVP_PKEY_free(new_key);
    EVP_PKEY_free(old_key);
    EVP_PKEY_free(sg.key);
    sk_X509_pop_free(sg.chain, X509_free);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

json_t *torii_renew_copy_of(const json_t *old_entity, const char *copy_id)
{
    json_t *c = json_deep_copy(old_entity);
    json_t *md;
    const char *name;
    char *nn;
    size_t n;

    if (c == NULL) {
        return NULL;
    }
    name = json_string_value(json_object_get(old_entity, "name"));
    if (name == NULL) {
        name = "none";
    }
    n = strlen(TORII_RENEW_COPY_PREFIX) + strlen(name) + 1;
    nn = torii_xmalloc(n);
    (void)snprintf(nn, n, "%s%s", TORII_RENEW_COPY_PREFIX, name);
    md = json_object_get(c, "metadata");
    if (!json_is_object(md)) {
        md = json_object();
        if (md == NULL || json_object_set_new(c, "metadata", md) != 0) {
            free(nn);
            json_decref(c);
            return NULL;
        }
    }
    if (json_object_set_new(c, "id", json_string(copy_id)) != 0
        || json_object_set_new(c, "name", json_string(nn)) != 0
        || json_object_set_new(c, "autoRenew", json_false()) != 0
        || json_object_set_new(md, "untilExpiration", json_string("true")) != 0
        || json_object_set_new(md, "nextCertificate",
                               json_string(json_string_value(json_object_get(old_entity, "id"))))
               != 0) {
        json_decref(c);
        c = NULL;
    }
    free(nn);
    return c;
}
