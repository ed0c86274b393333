/* store_io.c - the two store accesses of the first start: read an entity by id, and create
 * new entities (record, TLS record, serial index entry) in one durable transaction. Only new
 * entities are written here, so the serial index only gains entries ("<issuer id>:<serial
 * hex>" -> id, the issuer being caRef or the entity itself when self-signed).
 * Threads: main thread, before any other thread uses the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pkiboot_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define PKIBOOT_KEY_MAX (TORII_STORE_ID_MAX + 1)

int pkiboot_entity_load(struct torii_store *st, const char *id, json_t **out)
{
    char *text = NULL;
    size_t len = 0;
    json_t *e = NULL;
    int rc = torii_store_get(st, TORII_STORE_CERTS, id, &text, &len, NULL, NULL);

    if (rc != TORII_OK) {
        goto out;
    }
    e = json_loadb(text, len, 0, NULL);
    TORII_ENSURE(json_is_object(e), TORII_ESTORE);
    *out = e;
    e = NULL;
out:
    json_decref(e);
    torii_secure_free(text, len);
    return rc;
}

/* One new entity: its CREATE op (json and aux owned by the caller) and, when it is indexed,
 * the serial index PUT (key written into key). Returns the number of ops (1 or 2). */
static size_t pkiboot_ops(const json_t *e, const char *text, const unsigned char *aux,
                          size_t aux_len, char key[PKIBOOT_KEY_MAX], struct torii_store_op *ops)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *issuer = json_string_value(json_object_get(e, "caRef"));
    char hex[TORII_PKI_SERIAL_HEX_MAX];
    int n;

    ops[0] = (struct torii_store_op){.kind = TORII_STORE_CREATE,
                                     .bucket = TORII_STORE_CERTS,
                                     .rec = {.id = id,
                                             .id_len = strlen(id),
                                             .json = text,
                                             .json_len = strlen(text),
                                             .aux = aux,
                                             .aux_len = aux_len}};
    if (issuer == NULL || issuer[0] == '\0') {
        issuer = json_is_true(json_object_get(e, "selfSigned")) ? id : NULL;
    }
    if (issuer == NULL || torii_pki_cert_serial_hex(e, hex, sizeof(hex), NULL) != TORII_OK) {
        return 1;
    }
    n = snprintf(key, PKIBOOT_KEY_MAX, "%s:%s", issuer, hex);
    if (n < 0 || (size_t)n > TORII_STORE_ID_MAX) {
        return 1;
    }
    ops[1] = (struct torii_store_op){
        .kind = TORII_STORE_PUT,
        .bucket = TORII_STORE_SERIALS,
        .rec = {.id = key, .id_len = (size_t)n, .json = id, .json_len = strlen(id)}};
    return 2;
}

int pkiboot_persist(struct torii_store *st, const json_t *entities, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    size_t n = json_array_size(entities);
    struct torii_store_op *ops = torii_xcalloc(n * 2 + 1, sizeof(*ops));
    char(*keys)[PKIBOOT_KEY_MAX] = torii_xcalloc(n + 1, sizeof(*keys));
    char **text = torii_xcalloc(n + 1, sizeof(*text));
    unsigned char **aux = torii_xcalloc(n + 1, sizeof(*aux));
    size_t *aux_len = torii_xcalloc(n + 1, sizeof(*aux_len));
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(entities, i);

        TORII_ENSURE(json_is_string(json_object_get(e, "id")),
                     torii_errf(eb, TORII_EINVAL, "pki: entity without an id"));
        TORII_TRY(torii_certrec_build(e, &aux[i], &aux_len[i], eb));
        text[i] = json_dumps(e, JSON_COMPACT);
        TORII_ENSURE(text[i] != NULL, torii_errf(eb, TORII_ENOMEM, "pki: cannot serialize"));
        k += pkiboot_ops(e, text[i], aux[i], aux_len[i], keys[i], &ops[k]);
    }
    rc = torii_store_apply(st, ops, k, eb);
    if (rc == TORII_EINVAL) {
        rc = TORII_ESTORE; /* the entities were built here: a store refusal is our failure */
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (text[i] != NULL) {
            torii_secure_free(text[i], strlen(text[i]));
        }
        torii_secure_free(aux[i], aux_len[i]);
    }
    free(ops);
    free(keys);
    free(text);
    free(aux);
    free(aux_len);
    return rc;
}
