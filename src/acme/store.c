/* store.c - THE one place where the ACME client writes a certificate: the entity with its
 * TLS record, created or replaced in place under its id, in one durable transaction (the
 * store's watchers then put it in the TLS table and raise the alert). ACME certificates are
 * not in the serial index (their issuer is not a torii CA). Point this function at certdb
 * when that lands. ACME thread only. */
#include <string.h>

#include "acme_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

int acme_store_issued(struct torii_store *store, const json_t *entity, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *id = json_string_value(json_object_get(entity, "id"));
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    char *json = NULL;
    struct torii_store_rec rec;

    TORII_ENSURE(id != NULL, torii_errf(eb, TORII_EINVAL, "acme: entity without id"));
    TORII_TRY(torii_certrec_build(entity, &aux, &aux_len, eb));
    json = json_dumps(entity, JSON_COMPACT);
    TORII_ENSURE(json != NULL, TORII_ENOMEM);
    memset(&rec, 0, sizeof(rec));
    rec.id = id;
    rec.id_len = strlen(id);
    rec.json = json;
    rec.json_len = strlen(json);
    rec.aux = aux;
    rec.aux_len = aux_len;
    TORII_TRY(torii_store_put(store, TORII_STORE_CERTS, &rec, TORII_STORE_PUT, eb));
out:
    if (json != NULL) {
        torii_secure_free(json, strlen(json));
    }
    torii_secure_free(aux, aux_len);
    return rc;
}
