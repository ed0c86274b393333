/* store.c - THE one place where the ACME client writes certificates, and it writes them
 * through certdb (certdb.h: the one owner of stored certificates): a first issuance is a
 * certdb create; a renewal is one torii_certdb_update of the entity in place whose batch
 * also creates the previous version as its "[UNTIL EXPIRATION]" copy (renew.h's rule:
 * autoRenew off, deleted by the renewal thread once expired), so both land in one durable
 * transaction (the store's watchers then put it in the TLS table and raise the alert).
 * The new version is prepared by certdb (ENRICH: one parse of the chain and key).
 * ACME thread only. */
#include <string.h>

#include "acme_int.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"

struct acme_issued {
    const char *chain;
    const char *key;
    struct torii_cert_prep_opts prep; /* ENRICH at the write's instant */
    char copy_id[TORII_RENEW_COPY_ID_LEN + 1];
    char *id; /* the stored entity's id (malloc'd) */
};

/* Put the new chain and key into e, as a letsEncrypt, autoRenew certificate. */
static int acme_fill(json_t *e, const struct acme_issued *is)
{
    if (json_object_set_new(e, "chain", json_string(is->chain)) != 0
        || json_object_set_new(e, "privateKey", json_string(is->key)) != 0
        || json_object_set_new(e, "letsEncrypt", json_true()) != 0
        || json_object_set_new(e, "autoRenew", json_true()) != 0) {
        return TORII_ENOMEM;
    }
    /* A fresh certificate: the expiry flags of the one it replaces no longer hold. */
    (void)json_object_del(json_object_get(e, "metadata"), "almostExpired");
    (void)json_object_del(json_object_get(e, "metadata"), "expired");
    return TORII_OK;
}

/* certdb edit of a renewal: the read version as its copy, the new one in its place. */
static int acme_store_edit(struct torii_certdb_batch *b, const struct torii_certdb_entry *rd,
                           unsigned attempt, void *arg, struct torii_errbuf *eb)
{
    struct acme_issued *is = arg;
    json_t *e = json_deep_copy(rd->ent);
    json_t *copy = NULL;
    int rc = TORII_OK;

    (void)attempt;
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_TRY(acme_fill(e, is));
    TORII_TRY(torii_rand_alnum(is->copy_id, TORII_RENEW_COPY_ID_LEN));
    TORII_TRY(torii_renew_copy_make(rd->ent, is->copy_id, is->prep.kek, &copy, eb));
    TORII_TRY(torii_certdb_batch_create(b, copy, NULL, NULL, eb));
    TORII_TRY(torii_certdb_batch_replace(b, rd, e, &is->prep, NULL, eb));
out:
    torii_cert_secrets_wipe(copy);
    json_decref(copy);
    torii_cert_secrets_wipe(e);
    json_decref(e);
    return rc;
}

/* A first issuance: a new entity named after the first host (id: cert_id, else a fresh one). */
static int acme_store_new(struct torii_store *store, const char *cert_id, const json_t *hosts,
                          struct acme_issued *is, struct torii_errbuf *eb)
{
    char *names = json_dumps(hosts, JSON_COMPACT);
    json_t *e = json_pack("{s:s,s:s}", "name", json_string_value(json_array_get(hosts, 0)),
                          "description", names != NULL ? names : "");
    int rc = TORII_OK;

    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    if (cert_id != NULL) {
        TORII_ENSURE(json_object_set_new(e, "id", json_string(cert_id)) == 0, TORII_ENOMEM);
    }
    TORII_TRY(acme_fill(e, is));
    TORII_TRY(torii_certdb_create(store, e, &is->prep, NULL, eb));
    is->id = torii_xstrdup(json_string_value(json_object_get(e, "id")));
out:
    free(names);
    torii_cert_secrets_wipe(e);
    json_decref(e);
    return rc;
}

int acme_store_issued(struct torii_store *store, const char *cert_id, const json_t *hosts,
                      const char *chain, const char *key, char **id_out, struct torii_errbuf *eb)
{
    struct acme_issued is = {.chain = chain, .key = key};
    struct torii_certdb_rmw rmw = {.attempts = 3};
    int rc = TORII_ENOTFOUND;

    is.prep.mode = TORII_CERT_PREP_ENRICH;
    is.prep.now_ms = torii_clock_now_ms();
    is.prep.kek = torii_store_kek(store); /* the copy's sealed key is re-sealed for its id */
    if (cert_id != NULL) {
        rc = torii_certdb_update(store, cert_id, &rmw, acme_store_edit, &is, eb);
        if (rc == TORII_OK) {
            is.id = torii_xstrdup(cert_id);
        }
    }
    if (rc == TORII_ENOTFOUND) { /* a first issuance, or the renewed entity is gone */
        if (eb != NULL) {
            eb->msg[0] = '\0';
        }
        rc = acme_store_new(store, cert_id, hosts, &is, eb);
    }
    if (rc == TORII_OK) {
        *id_out = is.id;
        is.id = NULL;
    }
    free(is.id);
    return rc;
}
