/* renew.c - renewing a certificate entity (docs/operations.md, Renewal). The new certificate
 * is a copy of the old one: subject, SANs, key usages, EKU and every other extension stay as
 * they were. It gets a new serial, new dates with the same validity length, a new key of the
 * same type and size (leaves) or the same key (CAs, so what they issued still verifies), a
 * fresh SKI (leaves) and AKI, and is signed by the issuing CA entity (or by itself) with the
 * digest the old one was signed with.
 * Every private key involved (the entity's, the CA's, the new one) stays in this file; only
 * the PEM of the renewed entity's own key leaves it, inside the entity (STYLE 2.1). */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/pki.h"

/* Clients whose clock lags a little must accept a certificate renewed a moment ago. */
#define PKI_RENEW_BACKDATE_S 300
#define PKI_RENEW_DAY_S      86400

static const char *renew_id(const json_t *e)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    return id != NULL ? id : "(no id)";
}

/* A new key like old: same type, same size or curve. The sizes and curves torii issues go
 * through torii_pki__key_generate; any other (an imported certificate's) is kept exactly,
 * since a renewal never changes a key's type or size. */
static int renew_key_like(EVP_PKEY *old, EVP_PKEY **out, struct torii_errbuf *eb)
{
    char group[64];
    EVP_PKEY *k = NULL;
    int bits = EVP_PKEY_get_bits(old);
    int nid;

    switch (EVP_PKEY_get_base_id(old)) {
    case EVP_PKEY_RSA:
        if (bits == 2048 || bits == 3072 || bits == 4096) {
            return torii_pki__key_generate(EVP_PKEY_RSA, bits, out, eb);
        }
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
        break;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(old, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL)
            != 1) {
            return torii_errbuf_ossl(eb, "renew: EC key without a named curve");
        }
        nid = OBJ_txt2nid(group);
        if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1) {
            return torii_pki__key_generate(EVP_PKEY_EC, bits, out, eb);
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
        return torii_errf(eb, TORII_EUNSUPPORTED, "renew: unsupported key type");
    }
    if (k == NULL) {
        return torii_errbuf_ossl(eb, "renew: key generation");
    }
    *out = k;
    return TORII_OK;
}

static void renew_del_ext(X509 *c, int nid)
{
    int loc;

    while ((loc = X509_get_ext_by_NID(c, nid, -1)) >= 0) {
        X509_EXTENSION_free(X509_delete_ext(c, loc));
    }
}

static int renew_add_ext(X509 *c, X509 *issuer, int nid, const char *value, struct torii_errbuf *eb)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return torii_errbuf_ossl(eb, "renew: extension");
    }
    ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? TORII_OK : TORII_ENOMEM;
}

/* notBefore = now (minus PKI_RENEW_BACKDATE_S when the validity is longer than a day), the
 * same length as before, clamped to the issuer's notAfter (a certificate cannot outlive its
 * issuer: the chain would stop validating first). */
static int renew_dates(X509 *c, const X509 *old, const X509 *issuer, int64_t now_ms, const char *id,
                       struct torii_errbuf *eb)
{
    int64_t nb = 0;
    int64_t na = 0;
    int64_t ina = 0;
    int64_t now_s = now_ms / 1000;
    int64_t len_s;
    int64_t end;

    if (torii_pki__time_ms(X509_get0_notBefore(old), &nb) != TORII_OK
        || torii_pki__time_ms(X509_get0_notAfter(old), &na) != TORII_OK || na <= nb) {
        return torii_errf(eb, TORII_EINVAL, "renew: certificate '%s' has unusable validity dates",
                          id);
    }
    len_s = (na - nb) / 1000;
    if (len_s > PKI_RENEW_DAY_S) {
        now_s -= PKI_RENEW_BACKDATE_S;
    }
    end = now_s + len_s;
    if (issuer != NULL && torii_pki__time_ms(X509_get0_notAfter(issuer), &ina) == TORII_OK
        && ina / 1000 < end) {
        torii_log(TORII_LOG_WARN, "pki: renewed validity clamped to the issuer's notAfter (id=%s)",
                  id);
        end = ina / 1000;
    }
    if (end <= now_ms / 1000) {
        return torii_errf(eb, TORII_EINVAL,
                          "renew: the issuing CA of '%s' expires before the renewal", id);
    }
    if (ASN1_TIME_set(X509_getm_notBefore(c), (time_t)now_s) == NULL
        || ASN1_TIME_set(X509_getm_notAfter(c), (time_t)end) == NULL) {
        return torii_errbuf_ossl(eb, "renew: validity");
    }
    return TORII_OK;
}

/* The digest the old certificate was signed with; the signer's default when it has none
 * (EdDSA signed it) or OpenSSL does not know it. EdDSA signers take no digest. */
static const EVP_MD *renew_md(X509 *old, EVP_PKEY *signer)
{
    int mdnid = NID_undef;
    int type = EVP_PKEY_get_base_id(signer);
    const EVP_MD *md;

    if (type == EVP_PKEY_ED25519 || type == EVP_PKEY_ED448) {
        return NULL;
    }
    if (X509_get_signature_info(old, &mdnid, NULL, NULL, NULL) == 1 && mdnid != NID_undef
        && (md = EVP_get_digestbynid(mdnid)) != NULL) {
        return md;
    }
    ERR_clear_error();
    return torii_pki__default_md(signer);
}

/* The entity's own chain and key, which must match its leaf. */
static int renew_subject_load(const json_t *entity, const struct torii_kek_ring *kek,
                              const char *id, STACK_OF(X509) * *chain_out, EVP_PKEY **key_out,
                              struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_errbuf sub = {{0}};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *pk = json_string_value(json_object_get(entity, "privateKey"));

    if (torii_pki__chain_parse(json_string_value(json_object_get(entity, "chain")), &chain, &sub)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "renew: certificate '%s': %s", id, sub.msg);
        goto out;
    }
    TORII_ENSURE(pk != NULL && pk[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "renew: certificate '%s' has no private key", id));
    if (torii_pki_key_open(kek, id, pk, json_string_value(json_object_get(entity, "password")),
                           &key, &sub)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "renew: certificate '%s': %s", id, sub.msg);
        goto out;
    }
    if (X509_check_private_key(sk_X509_value(chain, 0), key) != 1) {
        ERR_clear_error();
        rc = torii_errf(eb, TORII_EINVAL,
                        "renew: certificate '%s': private key does not match the certificate", id);
        goto out;
    }
    *chain_out = chain;
    chain = NULL;
    *key_out = key;
    key = NULL;
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* The CA that signs the renewal (issuer_entity), or a check that the old certificate is
 * self-signed (issuer_entity NULL: ca stays empty). */
static int renew_signing_ca(const json_t *issuer_entity, const struct torii_kek_ring *kek,
                            X509 *old, const char *id, struct torii_pki__ca *ca,
                            struct torii_errbuf *eb)
{
    struct torii_errbuf sub = {{0}};

    if (issuer_entity == NULL) {
        return torii_pki__self_signed(old)
                   ? TORII_OK
                   : torii_errf(eb, TORII_EINVAL,
                                "renew: certificate '%s' is not self-signed and has no issuing CA",
                                id);
    }
    if (torii_pki__ca_load(issuer_entity, kek, ca, &sub) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "renew: not a usable CA: %s", sub.msg);
    }
    return TORII_OK;
}

/* Fresh SKI (leaves), issuer name and AKI of c, issued by issuer (c itself: self-signed). */
static int renew_identifiers(X509 *c, X509 *issuer, int is_ca, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (!is_ca) {
        renew_del_ext(c, NID_subject_key_identifier);
        TORII_TRY(renew_add_ext(c, c, NID_subject_key_identifier, "hash", eb));
    }
    TORII_ENSURE(X509_set_issuer_name(c, X509_get_subject_name(issuer)) == 1,
                 torii_errbuf_ossl(eb, "renew: issuer name"));
    if (X509_get_ext_by_NID(c, NID_authority_key_identifier, -1) >= 0) {
        renew_del_ext(c, NID_authority_key_identifier);
        if (X509_get_ext_by_NID(issuer, NID_subject_key_identifier, -1) >= 0) {
            TORII_TRY(renew_add_ext(c, issuer, NID_authority_key_identifier, "keyid:always", eb));
        }
    }
out:
    return rc;
}

/* A copy of old with a new serial, new dates, subject_key, fresh SKI (leaves) and AKI, signed
 * by signer as issuer (NULL: self-signed). */
static int renew_cert(X509 *old, X509 *issuer, EVP_PKEY *subject_key, EVP_PKEY *signer, int is_ca,
                      int64_t now_ms, const char *id, X509 **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *c = X509_dup(old);

    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki__serial_random(c));
    TORII_TRY(renew_dates(c, old, issuer, now_ms, id, eb));
    TORII_ENSURE(X509_set_pubkey(c, subject_key) == 1, torii_errbuf_ossl(eb, "renew: public key"));
    renew_del_ext(c, NID_ct_precert_scts); /* SCTs are bound to the old certificate */
    TORII_TRY(renew_identifiers(c, issuer != NULL ? issuer : c, is_ca, eb));
    TORII_ENSURE(X509_sign(c, signer, renew_md(old, signer)) > 0,
                 torii_errbuf_ossl(eb, "renew: sign"));
    *out = c;
    c = NULL;
out:
    X509_free(c);
    return rc;
}

/* privateKey of res := key (PEM, no password). */
static int renew_set_key(json_t *res, EVP_PKEY *key)
{
    char *key_pem = NULL;
    int rc = torii_pki__key_pem(key, &key_pem);

    if (rc == TORII_OK
        && (json_object_set_new(res, "privateKey", json_string(key_pem)) != 0
            || json_object_set_new(res, "password", json_null()) != 0)) {
        rc = TORII_ENOMEM;
    }
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    return rc;
}

/* The renewed entity: entity with c (then the CA's chain) and, when the key changed, new_key
 * (without a password), enriched. */
static int renew_entity(const json_t *entity, X509 *c, const STACK_OF(X509) * ca_chain,
                        EVP_PKEY *new_key, const struct torii_pki_opts *o, int64_t now_ms,
                        json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *chain_pem = NULL;
    json_t *res = NULL;

    TORII_TRY(torii_pki__leaf_chain_pem(c, ca_chain, &chain_pem));
    res = json_deep_copy(entity);
    TORII_ENSURE(res != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(res, "chain", json_string(chain_pem)) == 0, TORII_ENOMEM);
    if (new_key != NULL) {
        TORII_TRY(renew_set_key(res, new_key));
    }
    TORII_TRY(torii_cert_enrich_kek(res, o != NULL ? o->kek : NULL, now_ms, eb));
    *out = res;
    res = NULL;
out:
    json_decref(res);
    free(chain_pem);
    return rc;
}

/* The entity's id (for messages), chain and key, and the CA that signs the renewal. */
static int renew_load(const json_t *entity, const json_t *issuer_entity,
                      const struct torii_kek_ring *kek, const char **id, STACK_OF(X509) * *chain,
                      EVP_PKEY **old_key, struct torii_pki__ca *ca, struct torii_errbuf *eb)
{
    int rc;

    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "renew: entity must be a JSON object");
    }
    *id = renew_id(entity);
    rc = renew_subject_load(entity, kek, *id, chain, old_key, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    return renew_signing_ca(issuer_entity, kek, sk_X509_value(*chain, 0), *id, ca, eb);
}

int torii_pki_cert_renew(const json_t *entity, const json_t *issuer_entity,
                         const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__ca ca;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *old_key = NULL;
    EVP_PKEY *new_key = NULL;
    EVP_PKEY *subject_key;
    X509 *old;
    X509 *c = NULL;
    const char *id = NULL;
    int64_t now_ms = o != NULL ? o->now_ms : torii_clock_now_ms();
    int is_ca;

    memset(&ca, 0, sizeof(ca));
    TORII_TRY(renew_load(entity, issuer_entity, o != NULL ? o->kek : NULL, &id, &chain, &old_key,
                         &ca, eb));
    old = sk_X509_value(chain, 0);
    is_ca = json_is_true(json_object_get(entity, "ca"));
    /* CAs keep their key: certificates they issued before must still verify. */
    if (!is_ca) {
        TORII_TRY(renew_key_like(old_key, &new_key, eb));
    }
    subject_key = is_ca ? old_key : new_key;
    /* Self-signed means signed by the key the certificate carries: the new one for a leaf. */
    TORII_TRY(renew_cert(old, ca.cert, subject_key, issuer_entity != NULL ? ca.key : subject_key,
                         is_ca, now_ms, id, &c, eb));
    TORII_TRY(renew_entity(entity, c, ca.chain, new_key, o, now_ms, out, eb));
out:
    X509_free(c);
    EVP_PKEY_free(new_key);
    EVP_PKEY_free(old_key);
    torii_pki__ca_clear(&ca);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
