/* keyseal.c - the one place where a stored private key is turned into its stored form and
 * back. A certificate keeps its key once, in the entity JSON's "privateKey": PEM (maybe
 * encrypted with the entity's password), or, with a KEK configured, the sealed text
 * "TKEK:<base64 envelope>" (kek.c, kek_rec.c: AES-256-GCM, the record id as associated data).
 * torii_pki_key_seal makes that text on every write (certdb's preparation), torii_pki_key_open
 * opens it for every use (the TLS table, client identities, the CA signers, renewal, JWTs,
 * exports). Threads: any (pure over its arguments; the ring is read-only). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "pki_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

int torii_pki_key_seal(const struct torii_kek_ring *kek, const char *id, const char *text,
                       char **out, struct torii_errbuf *eb)
{
    char cur[2 * TORII_KEK_ID_LEN + 1];

    if (text == NULL || id == NULL) {
        return torii_errf(eb, TORII_EINVAL, "privateKey: nothing to seal or no record id");
    }
    if (torii_kek_text_is_sealed(text) || torii_kek_ring_current_id(kek, cur) != TORII_OK) {
        *out = torii_xstrdup(text); /* already sealed, or no KEK: stored as given */
        return TORII_OK;
    }
    return torii_kek_text_seal(kek, id, strlen(id), text, out, eb);
}

int torii_pki_key_text_open(const struct torii_kek_ring *kek, const char *id, const char *text,
                            char **out, struct torii_errbuf *eb)
{
    if (text == NULL || text[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "privateKey: missing (id=%s)", id != NULL ? id : "?");
    }
    if (!torii_kek_text_is_sealed(text)) {
        *out = torii_xstrdup(text);
        return TORII_OK;
    }
    if (id == NULL) {
        return torii_errf(eb, TORII_EINVAL, "privateKey: sealed, no record id");
    }
    return torii_kek_text_open(kek, id, strlen(id), text, out, eb);
}

int torii_pki_key_open(const struct torii_kek_ring *kek, const char *id, const char *text,
                       const char *password, EVP_PKEY **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *pem = NULL;

    TORII_TRY(torii_pki_key_text_open(kek, id, text, &pem, eb));
    rc = torii_pki__key_parse(pem, password != NULL && password[0] != '\0' ? password : NULL, out,
                              eb);
out:
    if (pem != NULL) {
        torii_secure_free(pem, strlen(pem));
    }
    ERR_clear_error();
    return rc;
}

int torii_pki_entity_key_rebind(const struct torii_kek_ring *kek, json_t *entity,
                                const char *from_id, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *text = json_string_value(json_object_get(entity, "privateKey"));
    const char *id = json_string_value(json_object_get(entity, "id"));
    char *pem = NULL;
    char *sealed = NULL;

    if (!torii_kek_text_is_sealed(text)) {
        return TORII_OK;
    }
    TORII_ENSURE(id != NULL && from_id != NULL,
                 torii_errf(eb, TORII_EINVAL, "privateKey: sealed, no record id"));
    TORII_TRY(torii_pki_key_text_open(kek, from_id, text, &pem, eb));
    TORII_TRY(torii_kek_text_seal(kek, id, strlen(id), pem, &sealed, eb));
    TORII_ENSURE(json_object_set_new(entity, "privateKey", json_string(sealed)) == 0, TORII_ENOMEM);
out:
    if (pem != NULL) {
        torii_secure_free(pem, strlen(pem));
    }
    free(sealed);
    return rc;
}

int torii_pki_entity_key_open(const struct torii_kek_ring *kek, const json_t *entity,
                              EVP_PKEY **out, struct torii_errbuf *eb)
{
    return torii_pki_key_open(kek, json_string_value(json_object_get(entity, "id")),
                              json_string_value(json_object_get(entity, "privateKey")),
                              json_string_value(json_object_get(entity, "password")), out, eb);
}

struct torii_pki_key_src torii_pki_key_src_of(const json_t *entity,
                                              const struct torii_kek_ring *kek)
{
    struct torii_pki_key_src s = {
        .id = json_string_value(json_object_get(entity, "id")),
        .text = json_string_value(json_object_get(entity, "privateKey")),
        .password = json_string_value(json_object_get(entity, "password")),
        .kek = kek,
    };

    return s;
}
