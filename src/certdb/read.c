/* read.c - certdb reads: an entity by id, the whole bucket, the serial index (its key rules
 * and its lookup), and the migration of stores written before certdb schema 2.
 * Threads: any (the store is internally locked). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certdb_int.h"
#include "torii/certdb.h"
#include "torii/log.h"
#include "torii/mem.h"

#define CERTDB_SCHEMA_KEY "certdb_schema"
#define CERTDB_SCHEMA     "2"

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

int torii_certdb_serial_lookup(struct torii_store *st, const char *issuer_id,
                               const char *serial_hex, char **id_out)
{
    char hex[TORII_PKI_SERIAL_HEX_MAX];
    char key[CERTDB_KEY_MAX];
    size_t len = 0;
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
    rc = torii_store_get(st, TORII_STORE_SERIALS, key, id_out, &len, NULL, NULL);
    if (rc == TORII_OK && len == 0) {
        free(*id_out);
        *id_out = NULL;
        rc = TORII_ENOTFOUND;
    }
    return rc == TORII_EINVAL ? TORII_ENOTFOUND : rc;
}

/* ---- migration ---- */

struct certdb_mig {
    struct torii_store *st;
    json_t *puts; /* key -> id, entries missing from the index */
};

static void certdb_mig_want(struct certdb_mig *m, const char *key, const char *id)
{
    char *val = NULL;

    if (key[0] == '\0') {
        return;
    }
    if (torii_store_get(m->st, TORII_STORE_SERIALS, key, &val, NULL, NULL, NULL)
        == TORII_ENOTFOUND) {
        (void)json_object_set_new(m->puts, key, json_string(id));
    }
    free(val);
}

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

int torii_certdb_migrate(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *ver = NULL;
    struct certdb_mig m = {st, json_object()};

    TORII_ENSURE(m.puts != NULL, TORII_ENOMEM);
    rc = torii_store_meta_get(st, CERTDB_SCHEMA_KEY, &ver);
    if (rc == TORII_OK && strcmp(ver, CERTDB_SCHEMA) == 0) {
        goto out;
    }
    TORII_ENSURE(rc == TORII_OK || rc == TORII_ENOTFOUND,
                 torii_errf(eb, rc, "certdb: schema version unreadable"));
    TORII_TRY(torii_store_foreach(st, TORII_STORE_CERTS, certdb_mig_cb, &m));
    TORII_TRY(certdb_mig_apply(st, m.puts, eb));
    TORII_TRY(torii_store_meta_put(st, CERTDB_SCHEMA_KEY, CERTDB_SCHEMA, eb));
    if (json_object_size(m.puts) > 0) {
        torii_log(TORII_LOG_NOTICE, "certdb: serial index brought to schema %s (%zu entries added)",
                  CERTDB_SCHEMA, json_object_size(m.puts));
    }
out:
    free(ver);
    json_decref(m.puts);
    return rc;
}
