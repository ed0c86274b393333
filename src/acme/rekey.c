/* rekey.c - `torii keys migrate|rotate` over the ACME account keys (docs/operations.md, Keys
 * at rest): the "key" of each "account:<directory>" record of TORII_STORE_ACME, sealed (or
 * re-sealed) under the current KEK with the record id as associated data, as account.c seals
 * it on every save. Main thread of the `torii keys` command, no other writer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "torii/acme.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define REKEY_PREFIX "account:"
#define REKEY_MAX    256 /* accounts: one per ACME directory URL */

struct rekey_acc {
    const struct torii_kek_ring *kek;
    int rewrap;
    struct torii_store_op ops[REKEY_MAX];
    char *old[REKEY_MAX]; /* the JSON read: the compare-and-swap value (may hold a clear key) */
    size_t n;
    struct torii_errbuf *eb;
};

/* The record's JSON with its key converted; *out NULL when nothing changes. */
static int rekey_json(const struct rekey_acc *a, const struct torii_store_rec *rec, char **out)
{
    int rc = TORII_OK;
    json_t *v = json_loadb(rec->json, rec->json_len, 0, NULL);
    const char *key = json_string_value(json_object_get(v, "key"));
    char *conv = NULL;

    *out = NULL;
    TORII_ENSURE(key != NULL,
                 torii_errf(a->eb, TORII_EINVAL, "acme: account record '%.*s' has no key",
                            (int)rec->id_len, rec->id));
    TORII_TRY(torii_kek_text_convert(a->kek, a->rewrap, rec->id, rec->id_len, key, &conv, a->eb));
    if (conv != NULL) {
        TORII_ENSURE(json_object_set_new(v, "key", json_string(conv)) == 0, TORII_ENOMEM);
        *out = json_dumps(v, JSON_COMPACT);
        TORII_ENSURE(*out != NULL, TORII_ENOMEM);
    }
out:
    free(conv);
    torii_cert_secrets_wipe(v);
    json_decref(v);
    return rc;
}

/* foreach callback: the account records whose key changes. */
static int rekey_collect(const struct torii_store_rec *rec, void *arg)
{
    struct rekey_acc *a = arg;
    struct torii_store_op *op;
    char *json = NULL;
    int rc;

    if (rec->id_len < strlen(REKEY_PREFIX)
        || memcmp(rec->id, REKEY_PREFIX, strlen(REKEY_PREFIX)) != 0) {
        return TORII_OK;
    }
    if (a->n == REKEY_MAX) {
        return torii_errf(a->eb, TORII_ETOOBIG, "acme: more than %d account records", REKEY_MAX);
    }
    rc = rekey_json(a, rec, &json);
    if (rc != TORII_OK || json == NULL) {
        return rc;
    }
    a->old[a->n] = torii_xstrndup(rec->json, rec->json_len);
    op = &a->ops[a->n++];
    op->kind = TORII_STORE_REPLACE_IF;
    op->bucket = TORII_STORE_ACME;
    op->rec = (struct torii_store_rec){
        torii_xstrndup(rec->id, rec->id_len), rec->id_len, json, strlen(json), NULL, 0};
    op->expect_json = a->old[a->n - 1];
    op->expect_json_len = rec->json_len;
    return TORII_OK;
}

int torii_acme_accounts_rekey(struct torii_store *st, const struct torii_kek_ring *kek, int rewrap,
                              size_t *done, struct torii_errbuf *eb)
{
    struct rekey_acc *a = torii_xcalloc(1, sizeof(*a));
    int rc;

    a->kek = kek;
    a->rewrap = rewrap;
    a->eb = eb;
    *done = 0;
    rc = torii_store_foreach(st, TORII_STORE_ACME, rekey_collect, a);
    if (rc == TORII_OK && a->n > 0) {
        rc = torii_store_apply(st, a->ops, a->n, eb);
    }
    if (rc == TORII_OK) {
        *done = a->n;
    }
    for (size_t i = 0; i < a->n; i++) {
        free((char *)(uintptr_t)a->ops[i].rec.id);
        free((char *)(uintptr_t)a->ops[i].rec.json);
        torii_secure_free(a->old[i], strlen(a->old[i]));
    }
    free(a);
    return rc;
}
