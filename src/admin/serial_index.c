/* serial_index.c - the rule of the serial index (TORII_STORE_SERIALS, "<issuer id>:<serial
 * hex>" -> certificate id) as store ops that go with an entity write (request.c). Moved out
 * of the PKI routes so that the entity write path (request.c) and the routes that use it
 * (pki.c) do not call each other. Threads: admin thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "torii/pki.h"
#include "torii/store.h"

/* "<issuer id>:<serial hex>" of an entity; TORII_ENOTFOUND when it is not indexed. */
static int serial_index_key(const json_t *e, char *key, size_t len)
{
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *ca_ref = json_string_value(json_object_get(e, "caRef"));
    const char *issuer = NULL;
    char hex[TORII_PKI_SERIAL_HEX_MAX];
    int n;

    if (id == NULL) {
        return TORII_ENOTFOUND;
    }
    if (ca_ref != NULL && ca_ref[0] != '\0') {
        issuer = ca_ref;
    } else if (json_is_true(json_object_get(e, "selfSigned"))) {
        issuer = id;
    } else {
        return TORII_ENOTFOUND;
    }
    if (torii_pki_cert_serial_hex(e, hex, sizeof(hex), NULL) != TORII_OK) {
        return TORII_ENOTFOUND;
    }
    n = snprintf(key, len, "%s:%s", issuer, hex);
    if (n < 0 || (size_t)n >= len || (size_t)n > TORII_STORE_ID_MAX) {
        return TORII_ENOTFOUND;
    }
    return TORII_OK;
}

void admin_serial_index_ops(struct torii_store *st, const json_t *old_entity,
                            const json_t *new_entity, struct admin_serial_ops *out)
{
    int has_new = 0;
    const char *old_id = json_string_value(json_object_get(old_entity, "id"));
    const char *new_id = json_string_value(json_object_get(new_entity, "id"));

    memset(out, 0, sizeof(*out));
    if (new_entity != NULL && new_id != NULL
        && serial_index_key(new_entity, out->put_key, sizeof(out->put_key)) == TORII_OK
        && strlen(new_id) <= TORII_STORE_ID_MAX) {
        has_new = 1;
        (void)snprintf(out->put_val, sizeof(out->put_val), "%s", new_id);
    }
    if (old_entity != NULL && old_id != NULL
        && serial_index_key(old_entity, out->del_key, sizeof(out->del_key)) == TORII_OK
        && (!has_new || strcmp(out->del_key, out->put_key) != 0)) {
        char *val = NULL;
        size_t len = 0;

        /* Only an entry that exists and still names this certificate (a DELETE of a missing
         * id would fail the whole apply). */
        if (torii_store_get(st, TORII_STORE_SERIALS, out->del_key, &val, &len, NULL, NULL)
                == TORII_OK
            && strcmp(val, old_id) == 0) {
            out->op[out->n].kind = TORII_STORE_DELETE;
            out->op[out->n].bucket = TORII_STORE_SERIALS;
            out->op[out->n].rec.id = out->del_key;
            out->op[out->n].rec.id_len = strlen(out->del_key);
            out->n++;
        }
        free(val);
    }
    if (has_new) {
        out->op[out->n].kind = TORII_STORE_PUT;
        out->op[out->n].bucket = TORII_STORE_SERIALS;
        out->op[out->n].rec.id = out->put_key;
        out->op[out->n].rec.id_len = strlen(out->put_key);
        out->op[out->n].rec.json = out->put_val;
        out->op[out->n].rec.json_len = strlen(out->put_val);
        out->n++;
    }
}
