/* read.c - certdb reads: an entity by id, the whole bucket, the serial index (its key rules
 * and its lookups), and the migration of stores written before certdb schema 2 and the
 * index's id lists.
 * Threads: any (the store is internally locked). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certdb_int.h"
#include "torii/certdb.h"
#include "torii/log.h"
#include "torii/mem.h"

/* certdb_schema 2: the serial-only keys exist. certdb_index_lists 1: a key's value is the id
 * list of every certificate under it (before: the newest writer's id alone). */
#define CERTDB_SCHEMA_KEY "certdb_schema"
#define CERTDB_SCHEMA     "2"
#define CERTDB_LISTS_KEY  "certdb_index_lists"
#define CERTDB_LISTS      "1"

void torii_certdb_entry_clear(struct torii_certdb_entry *e)
{
    if (e == NULL) {
        return;
    }
    json_decref(e->ent);
    torii_secure_free(e->text, e->len);
    torii_secure_free(e->aux, e->aux_len);
    memset(e, 0, sizeof(*e));
}

int torii_certdb_get(struct torii_store *st, const char *id, unsigned flags,
                     struct torii_certdb_entry *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_entry e;
    int aux = (flags & TORII_CERTDB_WITH_AUX) != 0;

    memset(&e, 0, sizeof(e));
    rc = torii_store_get(st, TORII_STORE_CERTS, id, &e.text, &e.len, aux ? &e.aux : NULL,
                         aux ? &e.aux_len : NULL);
    if (rc == TORII_ENOTFOUND || rc == TORII_EINVAL) {
        rc = torii_errf(eb, TORII_ENOTFOUND, "entity not found");
        goto out;
    }
    TORII_ENSURE(rc == TORII_OK, torii_errf(eb, rc, "store: read failed: %s", torii_strerror(rc)));
    e.ent = json_loadb(e.text, e.len, 0, NULL);
    TORII_ENSURE(json_is_object(e.ent),
                 torii_errf(eb, TORII_ESTORE, "store: stored entity is not a JSON object"));
    *out = e;
    memset(&e, 0, sizeof(e));
out:
    torii_certdb_entry_clear(&e);
    return rc;
}

int torii_certdb_load(struct torii_store *st, const char *id, json_t **out, struct torii_errbuf *eb)
{
    struct torii_certdb_entry e;
    int rc = torii_certdb_get(st, id, 0, &e, eb);

    if (rc == TORII_OK) {
        *out = json_incref(e.ent);
        torii_certdb_entry_clear(&e);
    }
    return rc;
}

int torii_certdb_foreach(struct torii_store *st, torii_store_iter_cb cb, void *arg)
{
    return torii_store_foreach(st, TORII_STORE_CERTS, cb, arg);
}

/* ---- the serial index ---- */

static const char *certdb_str(const json_t *e, const char *k)
{
    const char *s = json_string_value(json_object_get(e, k));
    return s != NULL && s[0] != '\0' ? s : NULL;
}

void certdb_keys_of(const json_t *e, const char *id, const char *serial_hex,
                    struct certdb_keys *out)
{
    const char *issuer = certdb_str(e, "caRef");
    int n;

    memset(out, 0, sizeof(*out));
    if (serial_hex == NULL || serial_hex[0] == '\0') {
        return;
    }
    (void)snprintf(out->bare, sizeof(out->bare), "%s", serial_hex);
    if (issuer == NULL && json_is_true(json_object_get(e, "selfSigned"))) {
        issuer = certdb_str(json_object_get(e, "metadata"), "nextCertificate");
        issuer = issuer != NULL ? issuer : id;
    }
    if (issuer == NULL) {
        return;
    }
    n = snprintf(out->qual, sizeof(out->qual), "%s:%s", issuer, serial_hex);
    if (n < 0 || (size_t)n > TORII_STORE_ID_MAX) {
        out->qual[0] = '\0';
    }
}

void certdb_keys_stored(const json_t *ent, const char *id, const unsigned char *aux, size_t aux_len,
                        struct certdb_keys *out)
{
    struct torii_certrec *rec = torii_xcalloc(1, sizeof(*rec));
    char hex[TORII_PKI_SERIAL_HEX_MAX] = "";

    if (aux == NULL || torii_certrec_decode(aux, aux_len, rec) != TORII_OK
        || torii_certrec_serial_hex(rec, hex, sizeof(hex)) != TORII_OK) {
        /* a version 1 record (or none): the chain says it */
        if (ent == NULL || torii_pki_cert_serial_hex(ent, hex, sizeof(hex), NULL) != TORII_OK) {
            hex[0] = '\0';
        }
    }
    free(rec);
    certdb_keys_of(ent, id, hex, out);
}

/* Lower-case, leading zeros dropped (the index's form); TORII_EINVAL when not hex. */
static int certdb_hex_norm(const char *in, char *out, size_t len)
{
    size_t n = in != NULL ? strlen(in) : 0;
    size_t i = 0;

    if (n == 0 || n >= len || strspn(in, "0123456789abcdefABCDEF") != n) {
        return TORII_EINVAL;
    }
    while (i + 1 < n && in[i] == '0') {
        i++;
    }
    for (size_t k = 0; i + k <= n; k++) {
        out[k] = (char)tolower((unsigned char)in[i + k]);
    }
    return TORII_OK;
}

/* The stored id list of (issuer_id, serial_hex) into *list (malloc'd). */
static int certdb_serial_list(struct torii_store *st, const char *issuer_id, const char *serial_hex,
                              char **list)
{
    char hex[TORII_PKI_SERIAL_HEX_MAX];
    char key[CERTDB_KEY_MAX];
    int n;
    int rc;

    if (certdb_hex_norm(serial_hex, hex, sizeof(hex)) != TORII_OK) {
        return TORII_EINVAL;
    }
    n = issuer_id != NULL ? snprintf(key, sizeof(key), "%s:%s", issuer_id, hex)
                          : snprintf(key, sizeof(key), "%s", hex);
    if (n < 0 || (size_t)n > TORII_STORE_ID_MAX) {
        return TORII_ENOTFOUND;
    }
    rc = torii_store_get(st, TORII_STORE_SERIALS, key, list, NULL, NULL, NULL);
    return rc == TORII_EINVAL ? TORII_ENOTFOUND : rc;
}

int torii_certdb_serial_lookup_all(struct torii_store *st, const char *issuer_id,
                                   const char *serial_hex, char ***ids_out, size_t *n_out)
{
    char *list = NULL;
    int rc = certdb_serial_list(st, issuer_id, serial_hex, &list);

    *ids_out = NULL;
    *n_out = 0;
    if (rc == TORII_OK) {
        *n_out = certdb_idlist_split(list, ids_out);
        rc = *n_out > 0 ? TORII_OK : TORII_ENOTFOUND;
    }
    free(list);
    return rc;
}

void torii_certdb_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
    }
    free(ids);
}

int torii_certdb_serial_lookup(struct torii_store *st, const char *issuer_id,
                               const char *serial_hex, char **id_out)
{
    char **ids = NULL;
    size_t n = 0;
    int rc = torii_certdb_serial_lookup_all(st, issuer_id, serial_hex, &ids, &n);

    if (rc == TORII_OK) {
        *id_out = ids[n - 1]; /* the newest writer */
        ids[n - 1] = NULL;
    }
    torii_certdb_ids_free(ids, n);
    return rc;
}

/* ---- migration ---- */

struct certdb_mig {
    struct torii_store *st;
    json_t *puts; /* key -> id list, the keys whose list gains an id */
};

/* id joins key's list (as the migration leaves it) unless it is in it already. */
static void certdb_mig_want(struct certdb_mig *m, const char *key, const char *id)
{
    const char *seen = json_string_value(json_object_get(m->puts, key));
    char *val = NULL;

    if (key[0] == '\0' || !certdb_idlist_id_ok(id)) {
        return;
    }
    if (seen == NULL
        && torii_store_get(m->st, TORII_STORE_SERIALS, key, &val, NULL, NULL, NULL) == TORII_OK) {
        seen = val;
    }
    if (seen == NULL || !certdb_idlist_has(seen, id)) {
        char *next = certdb_idlist_with(seen, id);
        (void)json_object_set_new(m->puts, key, json_string(next));
        free(next);
    }
    free(val);
}

/* Schema 2 kept one id per key (the newest writer): every certificate's id joins its keys'
 * lists (a schema 2 value is a list of one). */
static int certdb_mig_cb(const struct torii_store_rec *rec, void *arg)
{
    struct certdb_mig *m = arg;
    struct certdb_keys k;
    char *id = torii_xstrndup(rec->id, rec->id_len);
    json_t *e = json_loadb(rec->json, rec->json_len, 0, NULL);

    certdb_keys_stored(json_is_object(e) ? e : NULL, id, rec->aux, rec->aux_len, &k);
    certdb_mig_want(m, k.qual, id);
    certdb_mig_want(m, k.bare, id);
    torii_cert_secrets_wipe(e);
    json_decref(e);
    free(id);
    return TORII_OK;
}

static int certdb_mig_apply(struct torii_store *st, json_t *puts, struct torii_errbuf *eb)
{
    size_t n = json_object_size(puts);
    struct torii_store_op *ops = torii_xcalloc(n + 1, sizeof(*ops));
    const char *key;
    json_t *v;
    size_t i = 0;
    int rc;

    json_object_foreach (puts, key, v) {
        ops[i++] = (struct torii_store_op){.kind = TORII_STORE_PUT,
                                           .bucket = TORII_STORE_SERIALS,
                                           .rec = {.id = key,
                                                   .id_len = strlen(key),
                                                   .json = json_string_value(v),
                                                   .json_len = json_string_length(v)}};
    }
    rc = torii_store_apply(st, ops, i, eb);
    free(ops);
    return rc;
}

/* 1 when meta key holds want, 0 when it holds something else or nothing, -code on failure. */
static int certdb_meta_is(struct torii_store *st, const char *key, const char *want)
{
    char *val = NULL;
    int rc = torii_store_meta_get(st, key, &val);
    int is = rc == TORII_OK && strcmp(val, want) == 0;

    free(val);
    return rc == TORII_OK || rc == TORII_ENOTFOUND ? is : -rc;
}

/* Record that the store has the serial-only keys and the id lists. */
static int certdb_meta_mark(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = torii_store_meta_put(st, CERTDB_SCHEMA_KEY, CERTDB_SCHEMA, eb);

    return rc == TORII_OK ? torii_store_meta_put(st, CERTDB_LISTS_KEY, CERTDB_LISTS, eb) : rc;
}

static int certdb_serial_migrate(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    int schema = certdb_meta_is(st, CERTDB_SCHEMA_KEY, CERTDB_SCHEMA);
    int lists = certdb_meta_is(st, CERTDB_LISTS_KEY, CERTDB_LISTS);
    struct certdb_mig m = {st, NULL};

    TORII_ENSURE(schema >= 0 && lists >= 0, torii_errf(eb, schema < 0 ? -schema : -lists,
                                                       "certdb: schema version unreadable"));
    if (schema == 1 && lists == 1) {
        return TORII_OK;
    }
    m.puts = json_object();
    TORII_ENSURE(m.puts != NULL, TORII_ENOMEM);
    TORII_TRY(torii_store_foreach(st, TORII_STORE_CERTS, certdb_mig_cb, &m));
    TORII_TRY(certdb_mig_apply(st, m.puts, eb));
    TORII_TRY(certdb_meta_mark(st, eb));
    if (json_object_size(m.puts) > 0) {
        torii_log(TORII_LOG_NOTICE,
                  "certdb: serial index brought to schema %s with id lists (%zu keys updated)",
                  CERTDB_SCHEMA, json_object_size(m.puts));
    }
out:
    json_decref(m.puts);
    return rc;
}

int torii_certdb_migrate(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = certdb_serial_migrate(st, eb);

    return rc == TORII_OK ? torii_certdb_idx_rebuild(st, eb) : rc;
}
