/* jwtsign.c - minting a JWT with a stored key pair (the core of POST
 * /api/certificates/:id/_sign, docs/jwt.md): the private key is decoded here and only here
 * (STYLE 2.1); the JWS itself is built by the jwt module. */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/jwt.h"
#include "torii/pki.h"

#define PKI_JWT_LIFETIME_MAX_S (366LL * 86400)

/* The entity's private key, which must match its leaf (TORII_EINVAL otherwise), the leaf's
 * notAfter and the key kid (docs/jwt.md, Key ids; malloc'd). */
static int jwtsign_load(const json_t *e, const struct torii_kek_ring *kek, const char *id,
                        EVP_PKEY **key_out, int64_t *not_after, char **kid, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_errbuf sub = {{0}};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *pk = json_string_value(json_object_get(e, "privateKey"));

    TORII_ENSURE(pk != NULL && pk[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "jwt sign: '%s' has no private key", id));
    if (torii_pki__chain_parse(json_string_value(json_object_get(e, "chain")), &chain, &sub)
            != TORII_OK
        || torii_pki_key_open(kek, id, pk, json_string_value(json_object_get(e, "password")), &key,
                              &sub)
               != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "jwt sign: '%s': %s", id, sub.msg);
        goto out;
    }
    TORII_ENSURE(X509_check_private_key(sk_X509_value(chain, 0), key) == 1,
                 torii_errf(eb, TORII_EINVAL,
                            "jwt sign: '%s': private key does not match the certificate", id));
    TORII_TRY(torii_pki__time_ms(X509_get0_notAfter(sk_X509_value(chain, 0)), not_after));
    /* An id too long for a key kid (docs/jwt.md): the id itself names the key. */
    if (torii_pki__jwt_key_kid(e, X509_get0_pubkey(sk_X509_value(chain, 0)), kid) != TORII_OK) {
        *kid = torii_xstrdup(id);
    }
    *key_out = key;
    key = NULL;
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* The request may be signed: an entity with an id, exposed, not revoked; claims an object;
 * a lifetime in range. */
static int jwtsign_check(const json_t *entity, const char *id, const json_t *claims,
                         int64_t lifetime_s, struct torii_errbuf *eb)
{
    if (!json_is_object(entity) || id == NULL || id[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "jwt sign: entity has no id");
    }
    if (!json_is_object(claims)) {
        return torii_errf(eb, TORII_EINVAL, "jwt sign: claims must be a JSON object");
    }
    if (lifetime_s <= 0 || lifetime_s > PKI_JWT_LIFETIME_MAX_S) {
        return torii_errf(eb, TORII_EINVAL, "jwt sign: lifetime must be 1..%lld seconds",
                          (long long)PKI_JWT_LIFETIME_MAX_S);
    }
    if (json_is_true(json_object_get(entity, "revoked"))) {
        return torii_errf(eb, TORII_EINVAL, "jwt sign: '%s' is revoked", id);
    }
    if (!json_is_true(json_object_get(entity, "exposed"))) {
        return torii_errf(eb, TORII_EINVAL,
                          "jwt sign: '%s' is not exposed: no verifier would find its key", id);
    }
    return TORII_OK;
}

int torii_pki_jwt_sign(const json_t *entity, const struct torii_kek_ring *kek, const json_t *claims,
                       int64_t lifetime_s, int64_t now_ms, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    char *kid = NULL;
    json_t *c = NULL;
    int64_t not_after = 0;
    int64_t now_s = now_ms / 1000;
    const char *id = json_string_value(json_object_get(entity, "id"));

    TORII_TRY(jwtsign_check(entity, id, claims, lifetime_s, eb));
    TORII_TRY(jwtsign_load(entity, kek, id, &key, &not_after, &kid, eb));
    TORII_ENSURE(
        now_s + lifetime_s <= not_after / 1000,
        torii_errf(eb, TORII_EINVAL, "jwt sign: the token would outlive the key of '%s'", id));
    c = json_deep_copy(claims);
    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(c, "iat", json_integer(now_s)) == 0
                     && json_object_set_new(c, "exp", json_integer(now_s + lifetime_s)) == 0,
                 TORII_ENOMEM);
    TORII_TRY(torii_jwt_sign(key, 0, kid, c, out, NULL, eb));
out:
    free(kid);
    json_decref(c);
    EVP_PKEY_free(key);
    return rc;
}

/* A sealed key set holding the public key of the entity's leaf under its id and its key kid. */
static int jwtsign_keyset(const json_t *e, const char *id, struct torii_jwt_keyset **out,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_errbuf sub = {{0}};
    STACK_OF(X509) *chain = NULL;
    struct torii_jwt_keyset *ks = torii_jwt_keyset_new();
    int64_t not_after = 0;
    EVP_PKEY *pub;
    char *kid = NULL;

    if (torii_pki__chain_parse(json_string_value(json_object_get(e, "chain")), &chain, &sub)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "jwt verify: '%s': %s", id, sub.msg);
        goto out;
    }
    TORII_TRY(torii_pki__time_ms(X509_get0_notAfter(sk_X509_value(chain, 0)), &not_after));
    pub = X509_get0_pubkey(sk_X509_value(chain, 0));
    if (pub != NULL && torii_pki__jwt_key_kid(e, pub, &kid) != TORII_OK) {
        kid = NULL; /* an id too long for a key kid: the id only */
    }
    if (torii_jwt_keyset_add(ks, id, strlen(id), pub, not_after, &sub) != TORII_OK
        || (kid != NULL
            && torii_jwt_keyset_add(ks, kid, strlen(kid), pub, not_after, &sub) != TORII_OK)) {
        rc = torii_errf(eb, TORII_EINVAL, "jwt verify: '%s': %s", id, sub.msg);
        goto out;
    }
    torii_jwt_keyset_seal(ks);
    *out = ks;
    ks = NULL;
out:
    free(kid);
    ERR_clear_error();
    torii_jwt_keyset_unref(ks);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

int torii_pki_jwt_verify(const json_t *entity, const struct torii_jwt_policy *p, const char *tok,
                         size_t len, int64_t now_ms, enum torii_jwt_verdict *verdict,
                         json_t **claims, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_jwt_keyset *ks = NULL;
    struct torii_jwt_policy pol;
    const char *id = json_string_value(json_object_get(entity, "id"));

    *verdict = TORII_JWT_UNKNOWN_KEY;
    TORII_ENSURE(json_is_object(entity) && id != NULL && id[0] != '\0' && p != NULL,
                 torii_errf(eb, TORII_EINVAL, "jwt verify: entity has no id"));
    TORII_ENSURE(!json_is_true(json_object_get(entity, "revoked")),
                 torii_errf(eb, TORII_EPERM, "jwt verify: '%s' is revoked", id));
    TORII_TRY(jwtsign_keyset(entity, id, &ks, eb));
    pol = *p;
    pol.kids = NULL;
    pol.n_kids = 0;
    rc = torii_jwt_verify(ks, &pol, tok, len, now_ms, verdict, claims, eb);
out:
    torii_jwt_keyset_unref(ks);
    return rc;
}
