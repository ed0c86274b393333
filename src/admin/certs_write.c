/* certs_write.c - the certificate write operations of the /api/certificates routes (single and
 * _bulk, admin_certs.h): create, replace and patch, each queued into a certdb batch.
 *
 * Decisions:
 * - Every write goes through certdb (one parse of the chain and key, one durable transaction
 *   with the serial index entries) before the reply; a request that fails validation never
 *   reaches the store.
 * - PUT and PATCH of an existing entity are read-modify-write: the write back is a
 *   compare-and-swap on the exact JSON read, as the renewal thread does. When the entity
 *   changed in between (a renewal landed, another request wrote it), the request answers 409
 *   and writes nothing, instead of silently undoing the other write; the client re-reads and
 *   retries. No automatic retry: the client decided on what it had read.
 * - ?enrich=false skips torii_cert_enrich (derived fields are kept as sent) but still normalizes
 *   and still builds the TLS record from the chain and key, so a chain or key that does not
 *   parse is rejected (400) either way: nothing is ever stored that the TLS table cannot load.
 * - PUT keeps the private key: when the body's privateKey is missing, null or "" while the
 *   stored entity has one, and the new chain's leaf carries the same public key as the stored
 *   leaf, the stored privateKey (and its password) are carried over. A changed leaf key means
 *   a different certificate, so the key is dropped as the body says.
 * - A patch cannot set a field derived from the chain (it would be silently recomputed), nor
 *   read privateKey or password ("test", "copy", "move" from them).
 * Private keys and passwords are never logged. Threads: admin thread only. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin_certs.h"
#include "jsonpatch.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/err.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

/* A JSON body or bulk line: any JSON value, duplicate keys rejected, depth bounded. Too deep is
 * bad input like any other here (400, "bad_entity" in bulk results). */
int admin_certs_parse_json(const char *buf, size_t len, json_t **out, struct torii_errbuf *eb)
{
    int rc = admin_req_json_parse(buf, len, ADMIN_REQ_JSON_ANY, out, eb);

    return rc == TORII_ETOOBIG ? TORII_EINVAL : rc;
}

int admin_certs_enrich_wanted(const struct admin_req_query *q)
{
    return admin_req_query_bool(q, "enrich", 1);
}

void admin_certs_log_write(const char *what, const char *id)
{
    char esc[128];

    torii_log(TORII_LOG_INFO, "admin: certificate %s (id=%s)", what,
              torii_log_escape(id, strlen(id), esc, sizeof(esc)));
}

/* ---- writing through certdb ---- */

/* The seam of the read-modify-write window: after the read and the preparation, before the
 * commit that expects the entity unchanged. */
static void certs_seam(const struct torii_admin_ctx *ctx, const char *id)
{
    if (ctx->seam != NULL && ctx->seam->between != NULL) {
        ctx->seam->between(id, ctx->seam->arg);
    }
}

/* One request's batch, committed all or nothing (durable before the reply). */
int admin_certs_commit(struct torii_certdb_batch *b, const char *id, struct torii_errbuf *eb)
{
    int rc = torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, eb);

    if (rc == TORII_ECONFLICT) {
        char esc[128];
        torii_log(TORII_LOG_NOTICE,
                  "admin: certificate update refused, changed concurrently (id=%s)",
                  torii_log_escape(id, strlen(id), esc, sizeof(esc)));
    }
    return rc;
}

/* Members the API adds to its own responses (a PKI response's certId, a write's warnings): a
 * body that sends one back is accepted and the member dropped. */
static void certs_drop_response_only(json_t *entity)
{
    (void)json_object_del(entity, "certId");
    (void)json_object_del(entity, "warnings");
    (void)json_object_del(entity, "privateKeyRedacted");
}

/* A body copied from a redacted response ("privateKeyRedacted": true) without a key: on create
 * there is no stored key to keep, so the copy would silently lose it. */
static int certs_check_redacted_copy(const json_t *entity, struct torii_errbuf *eb)
{
    const char *key = json_string_value(json_object_get(entity, "privateKey"));

    if (json_is_true(json_object_get(entity, "privateKeyRedacted"))
        && (key == NULL || key[0] == '\0')) {
        return torii_errf(
            eb, TORII_EINVAL,
            "privateKey: this body comes from a redacted response (privateKeyRedacted); "
            "send the key itself (GET ?export=true needs the keys:export scope)");
    }
    return TORII_OK;
}

/* The id rule, checked once the entity is normalized (a missing id got one then). */
static int certs_check_id(const json_t *entity, void *arg, struct torii_errbuf *eb)
{
    const char *id = json_string_value(json_object_get(entity, "id"));

    (void)arg;
    if (id == NULL || !admin_req_id_ok(id, CERTS_ID_MAX)) {
        return torii_errf(eb, TORII_EINVAL, "%s", CERTS_ID_RULE);
    }
    return TORII_OK;
}

/* Normalize (type checks and defaults), validate the id, enrich unless told not to (certType
 * is still set from the flags then), and build the TLS record: one parse (certdb). A PUT
 * without a key keeps the stored one when the leaf public key is unchanged (file comment). */
static struct torii_cert_prep_opts certs_prep_opts(int enrich, const struct torii_certdb_entry *rd)
{
    struct torii_cert_prep_opts o = {
        .mode = enrich ? TORII_CERT_PREP_ENRICH : TORII_CERT_PREP_NORMALIZE,
        .now_ms = torii_clock_now_ms(),
        .check = certs_check_id,
    };

    if (rd != NULL) {
        o.keep_from = rd->ent;
        o.keep_aux = rd->aux;
        o.keep_aux_len = rd->aux_len;
    }
    return o;
}

/* ---- operations shared by the single and bulk endpoints (eb always says why) ---- */

int admin_certs_op_prepare_create(const struct torii_store *st, json_t *entity, int enrich,
                                  struct torii_certdb_prep **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *id = json_object_get(entity, "id");
    struct torii_cert_prep_opts o = certs_prep_opts(enrich, NULL);
    char gen[64];

    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object");
    }
    TORII_TRY(certs_check_redacted_copy(entity, eb));
    certs_drop_response_only(entity);
    if (id == NULL || json_is_null(id)) {
        TORII_TRY(torii_uuid_id(CERTS_ID_PREFIX, gen, sizeof(gen)));
        TORII_ENSURE(json_object_set_new(entity, "id", json_string(gen)) == 0, TORII_ENOMEM);
    }
    TORII_TRY(torii_certdb_prepare(st, entity, &o, out, eb));
out:
    return rc;
}

int admin_certs_op_create(struct torii_certdb_batch *b, json_t *entity, int enrich, uint32_t *flags,
                          struct torii_errbuf *eb)
{
    struct torii_certdb_prep *p = NULL;
    int rc = admin_certs_op_prepare_create(torii_certdb_batch_store(b), entity, enrich, &p, eb);

    return rc == TORII_OK ? torii_certdb_batch_create_prepared(b, &p, flags, eb) : rc;
}

/* id must not point into entity (its "id" member is replaced). */
int admin_certs_op_replace(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                           const char *id, json_t *entity, int enrich, uint32_t *flags,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_entry rd = {0};
    struct torii_cert_prep_opts o;

    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object");
    }
    certs_drop_response_only(entity);
    TORII_ENSURE(json_object_set_new(entity, "id", json_string(id)) == 0, TORII_ENOMEM);
    TORII_TRY(torii_certdb_batch_get(b, id, TORII_CERTDB_WITH_AUX, &rd, eb));
    o = certs_prep_opts(enrich, &rd);
    TORII_TRY(torii_certdb_batch_replace(b, &rd, entity, &o, flags, eb));
    certs_seam(ctx, id);
out:
    torii_certdb_entry_clear(&rd);
    return rc;
}

static int certs_is_secret_ptr(const json_t *p)
{
    const char *s = json_string_value(p);

    return s != NULL && (strncmp(s, "/privateKey", 11) == 0 || strncmp(s, "/password", 9) == 0);
}

/* A JSON Patch must not read a secret: "test" against it is an oracle, "copy"/"move" from it
 * would expose it in a field that responses show. Writing a secret (add/replace/remove) is
 * fine. */
static int certs_patch_reads_secret(const json_t *patch, int merge, struct torii_errbuf *eb)
{
    size_t i;
    json_t *op;

    if (merge || !json_is_array(patch)) {
        return TORII_OK;
    }
    json_array_foreach (patch, i, op) {
        const char *name = json_string_value(json_object_get(op, "op"));
        if (certs_is_secret_ptr(json_object_get(op, "from"))
            || (name != NULL && strcmp(name, "test") == 0
                && certs_is_secret_ptr(json_object_get(op, "path")))) {
            return torii_errf(eb, TORII_EINVAL,
                              "patch operation %zu reads privateKey or password: not allowed", i);
        }
    }
    return TORII_OK;
}

/* Apply a JSON Patch or merge patch to the stored entity; the result must still be an
 * object carrying the same id. */
static int certs_apply_patch(const struct torii_admin_ctx *ctx, const json_t *stored,
                             const json_t *patch, int merge, const char *id, json_t **out,
                             struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *patched = NULL;
    const json_t *new_id = NULL;
    size_t max = ctx->cfg != NULL ? ctx->cfg->admin_max_body : 0; /* 0: the default */

    TORII_TRY(certs_patch_reads_secret(patch, merge, eb));
    rc = merge ? admin_mergepatch_apply(stored, patch, max, &patched, eb)
               : admin_jsonpatch_apply(stored, patch, max, &patched, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    if (!json_is_object(patched)) {
        rc = torii_errf(eb, TORII_EINVAL, "patched entity must be a JSON object");
        goto out;
    }
    new_id = json_object_get(patched, "id");
    if (!json_is_string(new_id) || strcmp(json_string_value(new_id), id) != 0) {
        rc = torii_errf(eb, TORII_EINVAL, "id cannot be changed by a patch");
        goto out;
    }
    *out = patched;
    patched = NULL;
out:
    json_decref(patched);
    return rc;
}

/* Fields computed from the chain and key (certType from the flags) on every write. */
static const char *const certs_derived[] = {"domain", "subject",    "sans",  "from",    "to",
                                            "ca",     "selfSigned", "valid", "certType"};

/* The derived members of e (new references to its values, which the write replaces rather
 * than changes), or NULL when out of memory. */
static json_t *certs_derived_of(const json_t *e)
{
    json_t *d = json_object();

    for (size_t i = 0; d != NULL && i < sizeof(certs_derived) / sizeof(certs_derived[0]); i++) {
        json_t *v = json_object_get(e, certs_derived[i]);
        if (v != NULL && json_object_set(d, certs_derived[i], v) != 0) {
            json_decref(d);
            d = NULL;
        }
    }
    return d;
}

/* A patch that sets a derived field (asked) to a value that neither the stored entity had nor
 * the written result carries would be silently undone by the recomputation: refuse it. */
static int certs_check_derived(const json_t *stored, const json_t *asked, const json_t *result,
                               struct torii_errbuf *eb)
{
    for (size_t i = 0; i < sizeof(certs_derived) / sizeof(certs_derived[0]); i++) {
        const char *f = certs_derived[i];
        const json_t *a = json_object_get(asked, f);

        if (!admin_json_equal(a, json_object_get(stored, f))
            && !admin_json_equal(a, json_object_get(result, f))) {
            return torii_errf(eb, TORII_EINVAL,
                              "field '%s' is derived from the chain%s and recomputed on every "
                              "write: a patch cannot set it",
                              f, strcmp(f, "certType") == 0 ? " and the flags" : "");
        }
    }
    return TORII_OK;
}

/* A patch must not set derived fields (certs_check_derived), judged on the prepared result. */
struct certs_patch_check {
    const json_t *stored;
    const json_t *asked;
};

static int certs_patch_after(const json_t *result, void *arg, struct torii_errbuf *eb)
{
    const struct certs_patch_check *c = arg;

    return certs_check_derived(c->stored, c->asked, result, eb);
}

/* Patch the stored entity; *out is the stored result. */
int admin_certs_op_patch(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b, const char *id,
                         const json_t *patch, int merge, int enrich, json_t **out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certdb_entry rd = {0};
    struct certs_patch_check chk = {NULL, NULL};
    struct torii_cert_prep_opts o = certs_prep_opts(enrich, NULL);
    json_t *patched = NULL;
    json_t *asked = NULL;

    TORII_TRY(torii_certdb_batch_get(b, id, 0, &rd, eb));
    TORII_TRY(certs_apply_patch(ctx, rd.ent, patch, merge, id, &patched, eb));
    asked = certs_derived_of(patched);
    TORII_ENSURE(asked != NULL, TORII_ENOMEM);
    chk = (struct certs_patch_check){rd.ent, asked};
    o.after = certs_patch_after;
    o.after_arg = &chk;
    TORII_TRY(torii_certdb_batch_replace(b, &rd, patched, &o, NULL, eb));
    certs_seam(ctx, id);
    *out = patched;
    patched = NULL;
out:
    torii_certdb_entry_clear(&rd);
    json_decref(asked);
    json_decref(patched);
    return rc;
}
