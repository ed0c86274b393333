/* ca.c - CA entities: loading one for signing (creating root and sub-CAs is issuing: issue.c)
 * and the default digest of a signing key.
 *
 * A CA entity is only trusted to sign when everything agrees: the ca flag, BasicConstraints
 * CA:TRUE on its leaf, not revoked, and a private key that matches the leaf. Otoroshi only
 * checked the flag (reference 3.2); a flag without a key gave a server error. */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

/* The entity is a CA that may issue: an object, ca=true, not revoked, with a private key.
 * *id (for messages; "(no id)" when absent) and *pk point into the entity. */
static int ca_entity_check(const json_t *entity, const char **id, const char **pk,
                           struct torii_errbuf *eb)
{
    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "issuer: CA entity must be a JSON object");
    }
    *id = json_string_value(json_object_get(entity, "id"));
    if (*id == NULL) {
        *id = "(no id)";
    }
    if (!json_is_true(json_object_get(entity, "ca"))) {
        return torii_errf(eb, TORII_EINVAL, "issuer '%s' is not a CA (ca=false)", *id);
    }
    if (json_is_true(json_object_get(entity, "revoked"))) {
        return torii_errf(eb, TORII_EINVAL, "issuer '%s' is revoked", *id);
    }
    *pk = json_string_value(json_object_get(entity, "privateKey"));
    if (*pk == NULL || (*pk)[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "issuer '%s' has no private key", *id);
    }
    return TORII_OK;
}

int torii_pki__ca_load(const json_t *entity, const struct torii_kek_ring *kek,
                       struct torii_pki__ca *ca, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_errbuf sub = {{0}};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *id = NULL;
    const char *pk = NULL;
    X509 *leaf;

    memset(ca, 0, sizeof(*ca));
    TORII_TRY(ca_entity_check(entity, &id, &pk, eb));
    if (torii_pki__chain_parse(json_string_value(json_object_get(entity, "chain")), &chain, eb)
        != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "issuer '%s': chain does not parse", id);
        goto out;
    }
    leaf = sk_X509_value(chain, 0);
    TORII_ENSURE(X509_check_ca(leaf) == 1,
                 torii_errf(eb, TORII_EINVAL, "issuer '%s': certificate is not a CA", id));
    if (torii_pki_key_open(kek, id, pk, json_string_value(json_object_get(entity, "password")),
                           &key, &sub)
        != TORII_OK) {
        rc =
            torii_errf(eb, TORII_EINVAL, "issuer '%s': private key does not open: %s", id, sub.msg);
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
