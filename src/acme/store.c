/* store.c - THE one place where the ACME client writes certificates: the entity with its
 * TLS record, created or replaced in place under its id and, for a renewal, the previous
 * version saved as its "[UNTIL EXPIRATION]" copy (renew.h's rule: autoRenew off, deleted
 * by the renewal thread once expired), all in one durable transaction (the store's
 * watchers then put it in the TLS table and raise the alert). ACME certificates are not in
 * the serial index (their issuer is not a torii CA). Point this function at certdb when
 * that lands. ACME thread only. */
#include <string.h>

#include "acme_int.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"

struct acme_blob {
    char *json;
    unsigned char *aux;
    size_t aux_len;
};

static void acme_blob_clear(struct acme_blob *b)
{
    if (b->json != NULL) {
        torii_secure_free(b->json, strlen(b->json));
    }
    torii_secure_free(b->aux, b->aux_len);
    memset(b, 0, sizeof(*b));
}

/* The PUT (or CREATE) op of entity e; b holds the bytes. */
static int acme_blob_op(const json_t *e, enum torii_store_op_kind kind, struct acme_blob *b,
                        struct torii_store_op *op, struct torii_errbuf *eb)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    int rc;

    if (id == NULL) {
        return torii_errf(eb, TORII_EINVAL, "acme: entity without id");
    }
    rc = torii_certrec_build(e, &b->aux, &b->aux_len, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    b->json = json_dumps(e, JSON_COMPACT);
    if (b->json == NULL) {
        return TORII_ENOMEM;
    }
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->bucket = TORII_STORE_CERTS;
    op->rec.id = id;
    op->rec.id_len = strlen(id);
    op->rec.json = b->json;
    op->rec.json_len = strlen(b->json);
    op->rec.aux = b->aux;
    op->rec.aux_len = b->aux_len;
    return TORII_OK;
}

int acme_store_issued(struct torii_store *store, const json_t *entity, const json_t *prev,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_blob nb = {NULL, NULL, 0};
    struct acme_blob cb = {NULL, NULL, 0};
    struct torii_store_op ops[2];
    size_t n = 0;
    char copy_id[TORII_RENEW_COPY_ID_LEN + 1];
    json_t *copy = NULL;

    if (prev != NULL) {
        TORII_TRY(torii_rand_alnum(copy_id, TORII_RENEW_COPY_ID_LEN));
        copy = torii_renew_copy_of(prev, copy_id);
        TORII_ENSURE(copy != NULL, TORII_ENOMEM);
        (void)json_object_set_new(json_object_get(copy, "metadata"), "nextCertificate",
                                  json_string(json_string_value(json_object_get(entity, "id"))));
        TORII_TRY(acme_blob_op(copy, TORII_STORE_CREATE, &cb, &ops[n++], eb));
    }
    TORII_TRY(acme_blob_op(entity, TORII_STORE_PUT, &nb, &ops[n++], eb));
    TORII_TRY(torii_store_apply(store, ops, n, eb));
out:
    acme_blob_clear(&nb);
    acme_blob_clear(&cb);
    torii_cert_secrets_wipe(copy);
    json_decref(copy);
    return rc;
}
