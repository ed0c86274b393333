/* certs.c - the /api/certificates admin routes (Otoroshi-compatible, reference sections 2.2-2.6),
 * with the section 13 fixes: responses carry the entity exactly as stored (derived fields
 * computed from the chain), and every error is a 4xx/5xx {"error": "..."} that changes nothing.
 *
 * Decisions:
 * - Every write goes through certdb (one parse of the chain and key, one durable transaction
 *   with the serial index entries) before the reply; a request that fails validation never
 *   reaches the store.
 * - PUT and PATCH of an existing entity are read-modify-write: the write back is a
 *   TORII_STORE_REPLACE_IF of the exact JSON read, as the renewal thread does. When the entity
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
 * - Ids (URL or body) are 1..256 bytes with no control character and no '/'.
 * - Listing: X-Count is the total before filtering (as the reference); without pageSize the
 *   page is unbounded and X-Page-Size reports 2147483647 (the reference's Int.MaxValue);
 *   ?keypair=true keeps key pairs only; bodies and filters are exact, top-level only.
 * - Bulk lines are applied in order (a later line sees an earlier one's effect) and committed
 *   together in one durable transaction per request; a failed line does not stop the others
 *   (certdb's TORII_CERTDB_PER_ITEM).
 * - _renew, _bundle and /:id/_renew belong to other route files: TORII_ENOTFOUND for those.
 * Private keys and passwords are never logged; buffers holding entity JSON or TLS records are
 * wiped before they are freed. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "certs_query.h"
#include "jsonpatch.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/err.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define CERTS_PREFIX     "/api/certificates"
#define CERTS_ID_MAX     256
#define CERTS_ID_PREFIX  "certificate_"
#define CERTS_NDJSON     "application/x-ndjson"
#define CERTS_PAGE_MAX   1000000000L
#define CERTS_NO_PAGING  2147483647L /* what the reference reports as X-Page-Size when unpaged */
#define CERTS_ALLOW_COLL "GET, HEAD, POST"
#define CERTS_ALLOW_ONE  "GET, HEAD, PUT, PATCH, DELETE"
#define CERTS_ALLOW_GET  "GET, HEAD"
#define CERTS_ALLOW_BULK "POST, PUT, PATCH, DELETE"
#define CERTS_ID_RULE    "id: must be 1 to 256 bytes of UTF-8 without control characters or '/'"

/* ---- request helpers ---- */

/* A JSON body or bulk line: any JSON value, duplicate keys rejected, depth bounded. Too deep is
 * bad input like any other here (400, "bad_entity" in bulk results). */
static int certs_parse_json(const char *buf, size_t len, json_t **out, struct torii_errbuf *eb)
{
    int rc = admin_req_json_parse(buf, len, ADMIN_REQ_JSON_ANY, out, eb);

    return rc == TORII_ETOOBIG ? TORII_EINVAL : rc;
}

static int certs_enrich_wanted(const struct admin_req_query *q)
{
    return admin_req_query_bool(q, "enrich", 1);
}

/* Query parameters each route takes (admin_req_query_check); anything else is a 400. */
static const char *const certs_q_list[] = {"page",   "pageSize",     "filter.",       "filtered",
                                           "sorted", "fields",       "keypair",       "export",
                                           "search", "expiresAfter", "expiresBefore", NULL};
static const char *const certs_q_write[] = {"enrich", NULL};
static const char *const certs_q_get[] = {"fields", "export", NULL};

/* ---- reply helpers ---- */

static void certs_reply_json(struct torii_admin_reply *r, int status, json_t *v_owned)
{
    json_decref(r->json);
    r->status = status;
    r->json = v_owned;
}

/* Reply with the status matching rc and {"error": eb.msg}. */
static void certs_reply_rc(struct torii_admin_reply *r, int rc, const struct torii_errbuf *eb)
{
    if (rc == TORII_ENOMEM) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    admin_reply_error(r, admin_status_of(rc), "%s", eb->msg[0] != '\0' ? eb->msg : "error");
}

/* 1 when q holds only the allowed parameters, once each, and enrich (when given) is a
 * boolean; else 0 with a 400 naming the parameter. */
static int certs_query_ok(const struct admin_req_query *q, const char *const *allowed,
                          struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};

    if (admin_req_query_check(q, allowed, &eb) != TORII_OK
        || admin_req_query_bool_check(q, "enrich", &eb) != TORII_OK
        || admin_req_query_bool_check(q, "export", &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
        return 0;
    }
    return 1;
}

static void certs_log_write(const char *what, const char *id)
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
static int certs_commit(struct torii_certdb_batch *b, const char *id, struct torii_errbuf *eb)
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

static int certs_op_create(struct torii_certdb_batch *b, json_t *entity, int enrich,
                           uint32_t *flags, struct torii_errbuf *eb)
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
    TORII_TRY(torii_certdb_batch_create(b, entity, &o, flags, eb));
out:
    return rc;
}

/* id must not point into entity (its "id" member is replaced). */
static int certs_op_replace(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
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
static int certs_op_patch(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b, const char *id,
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

/* ---- collection: list and create ---- */

struct certs_list {
    const struct admin_req_query *q;
    struct certs_query_terms fields;   /* n == 0: whole entities */
    struct certs_query_terms filtered; /* every term must match */
    struct certs_query_terms sorted;   /* n > 0: items collects every match, sorted after */
    struct certs_query_window window;  /* search, expiresAfter, expiresBefore */
    int keypair_only;
    size_t total;   /* every record, before filtering (X-Count, as the reference) */
    size_t matched; /* records passing the filters */
    size_t offset;  /* first matched index on the page */
    size_t limit;   /* page size */
    json_t *items;  /* the page (every match while sorting) */
};

/* filter.<field>=<v>: strings compare exactly, other values by their compact JSON text. */
static int certs_scalar_matches(const json_t *v, const char *want)
{
    char *text = NULL;
    int ok = 0;

    if (json_is_string(v)) {
        return strcmp(json_string_value(v), want) == 0;
    }
    text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    ok = text != NULL && strcmp(text, want) == 0;
    free(text);
    return ok;
}

/* Arrays match when any element does. */
static int certs_value_matches(const json_t *v, const char *want)
{
    if (!json_is_array(v)) {
        return certs_scalar_matches(v, want);
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        if (certs_scalar_matches(json_array_get(v, i), want)) {
            return 1;
        }
    }
    return 0;
}

static int certs_entity_matches(const struct certs_list *l, const json_t *e)
{
    if (l->keypair_only && !json_is_true(json_object_get(e, "keypair"))) {
        return 0;
    }
    for (size_t i = 0; i < l->q->n; i++) {
        const struct admin_req_param *p = &l->q->p[i];
        const json_t *v = NULL;

        if (strncmp(p->k, "filter.", 7) != 0) {
            continue;
        }
        v = json_object_get(e, p->k + 7);
        if (v == NULL || !certs_value_matches(v, p->v)) {
            return 0;
        }
    }
    return certs_query_filtered_match(&l->filtered, e) && certs_query_window_match(&l->window, e);
}

/* What a list item shows of e: the selected fields, or e itself. */
static json_t *certs_list_item(const struct certs_list *l, json_t *e)
{
    return l->fields.n > 0 ? certs_query_project(e, &l->fields) : json_incref(e);
}

static int certs_list_cb(const struct torii_store_rec *rec, void *arg)
{
    struct certs_list *l = arg;
    json_error_t jerr;
    json_t *e = NULL;
    json_t *item = NULL;
    int rc = TORII_OK;

    l->total++;
    e = json_loadb(rec->json, rec->json_len, 0, &jerr);
    if (!json_is_object(e)) {
        char esc[128];
        torii_log(TORII_LOG_WARN, "admin: skipping unreadable certificate (id=%s)",
                  torii_log_escape(rec->id, rec->id_len, esc, sizeof(esc)));
        json_decref(e);
        return TORII_OK;
    }
    if (certs_entity_matches(l, e)) {
        if (l->sorted.n > 0) {
            item = json_incref(e); /* paged once sorted */
        } else if (l->matched >= l->offset && l->matched - l->offset < l->limit) {
            item = certs_list_item(l, e);
            rc = item == NULL ? TORII_ENOMEM : TORII_OK;
        }
        if (item != NULL && json_array_append_new(l->items, item) != 0) {
            rc = TORII_ENOMEM;
        }
        l->matched++;
    }
    json_decref(e);
    return rc;
}

struct certs_sort_item {
    const struct certs_query_terms *by;
    json_t *e;
    size_t seq; /* store order: ties keep it */
};

static int certs_sort_cmp(const void *a, const void *b)
{
    const struct certs_sort_item *x = a;
    const struct certs_sort_item *y = b;
    int c = certs_query_sorted_cmp(x->by, x->e, y->e);

    return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Sort every match (l->items) and keep the page. */
static int certs_list_sort_page(struct certs_list *l)
{
    size_t n = json_array_size(l->items);
    struct certs_sort_item *v = torii_xcalloc(n > 0 ? n : 1, sizeof(*v));
    json_t *page = json_array();
    int rc = page != NULL ? TORII_OK : TORII_ENOMEM;

    for (size_t i = 0; i < n; i++) {
        v[i] = (struct certs_sort_item){&l->sorted, json_array_get(l->items, i), i};
    }
    qsort(v, n, sizeof(*v), certs_sort_cmp);
    for (size_t i = l->offset; rc == TORII_OK && i < n && i - l->offset < l->limit; i++) {
        json_t *item = certs_list_item(l, v[i].e);
        if (item == NULL || json_array_append_new(page, item) != 0) {
            rc = TORII_ENOMEM;
        }
    }
    free(v);
    if (rc != TORII_OK) {
        json_decref(page);
        return rc;
    }
    json_decref(l->items);
    l->items = page;
    return TORII_OK;
}

/* Positive decimal, at most CERTS_PAGE_MAX. */
static int certs_parse_pos(const char *s, long *out)
{
    long v = 0;

    if (s[0] == '\0' || strlen(s) > 10) {
        return TORII_EINVAL;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return TORII_EINVAL;
        }
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > CERTS_PAGE_MAX) {
        return TORII_EINVAL;
    }
    *out = v;
    return TORII_OK;
}

static void certs_list_clear(struct certs_list *l)
{
    certs_query_terms_clear(&l->fields);
    certs_query_terms_clear(&l->filtered);
    certs_query_terms_clear(&l->sorted);
    certs_query_window_clear(&l->window);
    json_decref(l->items);
    l->items = NULL;
}

/* Filtering or sorting on a secret would answer questions about it without showing it. */
static int certs_list_no_secret(const struct admin_req_query *q, struct torii_errbuf *eb)
{
    for (size_t i = 0; i < q->n; i++) {
        const char *k = q->p[i].k;
        const char *v = q->p[i].v;
        int filter = strncmp(k, "filter.", 7) == 0;
        int terms = strcmp(k, "filtered") == 0 || strcmp(k, "sorted") == 0;

        if ((filter && (strstr(k, "privateKey") != NULL || strstr(k, "password") != NULL))
            || (terms && (strstr(v, "privateKey") != NULL || strstr(v, "password") != NULL))) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s: privateKey and password cannot be filtered or sorted on", k);
        }
    }
    return TORII_OK;
}

/* The list parameters of q into l (page numbers in *page and *size); eb names a bad one. */
static int certs_list_parse(const struct admin_req_query *q, struct certs_list *l, long *page,
                            long *size, struct torii_errbuf *eb)
{
    const char *page_s = admin_req_query_get(q, "page");
    const char *size_s = admin_req_query_get(q, "pageSize");
    const char *fields = admin_req_query_get(q, "fields");
    const char *filtered = admin_req_query_get(q, "filtered");
    const char *sorted = admin_req_query_get(q, "sorted");
    int rc = TORII_OK;

    if (page_s != NULL && certs_parse_pos(page_s, page) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "page: must be an integer from 1 to %ld",
                          CERTS_PAGE_MAX);
    }
    if (size_s != NULL && certs_parse_pos(size_s, size) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "pageSize: must be an integer from 1 to %ld",
                          CERTS_PAGE_MAX);
    }
    TORII_TRY(admin_req_query_bool_check(q, "keypair", eb));
    TORII_TRY(certs_list_no_secret(q, eb));
    l->q = q;
    l->keypair_only = admin_req_query_bool(q, "keypair", 0);
    l->offset = (size_t)(*page - 1) * (size_t)*size;
    l->limit = (size_t)*size;
    TORII_TRY(certs_query_fields_parse(fields != NULL ? fields : "", &l->fields, eb));
    TORII_TRY(certs_query_filtered_parse(filtered != NULL ? filtered : "", &l->filtered, eb));
    TORII_TRY(certs_query_sorted_parse(sorted != NULL ? sorted : "", &l->sorted, eb));
    TORII_TRY(certs_query_window_parse(admin_req_query_get(q, "search"),
                                       admin_req_query_get(q, "expiresAfter"),
                                       admin_req_query_get(q, "expiresBefore"), &l->window, eb));
out:
    return rc;
}

static void certs_list_headers(struct torii_admin_reply *reply, const struct certs_list *l,
                               long page, long size)
{
    char num[32];

    (void)snprintf(num, sizeof(num), "%zu", l->total);
    admin_reply_header(reply, "X-Count", num);
    (void)snprintf(num, sizeof(num), "%zu", l->matched);
    admin_reply_header(reply, "X-Filtered-Count", num);
    (void)snprintf(num, sizeof(num), "%zu", l->offset);
    admin_reply_header(reply, "X-Offset", num);
    (void)snprintf(num, sizeof(num), "%ld", page);
    admin_reply_header(reply, "X-Page", num);
    (void)snprintf(num, sizeof(num), "%ld", size);
    admin_reply_header(reply, "X-Page-Size", num);
}

/* A saved certificate that SNI will never select (a CA, a key pair, ...): say why in the
 * response ("warnings", response-only: dropped when sent back) and in the log. */
static void certs_add_warnings(json_t *entity, uint32_t flags)
{
    json_t *w = NULL;
    size_t i;
    json_t *v;
    const char *id = json_string_value(json_object_get(entity, "id"));

    if (id == NULL || torii_certrec_sni_warnings_of(flags, &w) != TORII_OK
        || json_array_size(w) == 0) {
        json_decref(w);
        return;
    }
    json_array_foreach (w, i, v) {
        certs_log_write(json_string_value(v), id);
    }
    (void)json_object_set_new(entity, "warnings", w);
}

static void certs_list_reply(struct torii_admin_ctx *ctx, const struct admin_req_query *q,
                             struct torii_admin_reply *reply)
{
    struct certs_list l;
    struct torii_errbuf eb = {{0}};
    long page = 1;
    long size = CERTS_NO_PAGING;
    int rc = TORII_OK;

    memset(&l, 0, sizeof(l));
    if (certs_list_parse(q, &l, &page, &size, &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
        goto out;
    }
    l.items = json_array();
    rc = l.items != NULL ? torii_certdb_foreach(ctx->store, certs_list_cb, &l) : TORII_ENOMEM;
    if (rc == TORII_OK && l.sorted.n > 0) {
        rc = certs_list_sort_page(&l);
    }
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: certificate list failed: %s", torii_strerror(rc));
        admin_reply_error(reply, 500, "store: list failed: %s", torii_strerror(rc));
        goto out;
    }
    certs_reply_json(reply, 200, l.items);
    l.items = NULL;
    certs_list_headers(reply, &l, page, size);
out:
    certs_list_clear(&l);
}

/* POST / (id NULL: create, 201) and PUT /:id (replace, 200): a JSON entity body. */
static void certs_save_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                             const char *id, const struct admin_req_query *q,
                             struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_batch *b = NULL;
    json_t *entity = NULL;
    int enrich = certs_enrich_wanted(q);
    uint32_t flags = 0;
    int rc = TORII_OK;

    if (!admin_req_media_type_is(req, "Content-Type", "application/json")) {
        admin_reply_error(reply, 415, "unsupported content type, expected application/json");
        return;
    }
    rc = certs_parse_json((const char *)req->body, req->body_len, &entity, &eb);
    if (rc == TORII_OK) {
        b = torii_certdb_batch_new(ctx->store);
        rc = id == NULL ? certs_op_create(b, entity, enrich, &flags, &eb)
                        : certs_op_replace(ctx, b, id, entity, enrich, &flags, &eb);
    }
    if (rc == TORII_OK) {
        rc = certs_commit(b, json_string_value(json_object_get(entity, "id")), &eb);
    }
    torii_certdb_batch_free(b);
    if (rc != TORII_OK) {
        json_decref(entity);
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_log_write(id == NULL ? "created" : "updated",
                    json_string_value(json_object_get(entity, "id")));
    certs_add_warnings(entity, flags);
    certs_reply_json(reply, id == NULL ? 201 : 200, entity);
}

/* ---- one entity ---- */

static void certs_get_reply(struct torii_admin_ctx *ctx, const char *id,
                            const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct certs_query_terms fields = {NULL, 0};
    json_t *e = NULL;
    const char *fields_s = admin_req_query_get(q, "fields");
    int rc = certs_query_fields_parse(fields_s != NULL ? fields_s : "", &fields, &eb);

    if (rc == TORII_OK) {
        rc = torii_certdb_load(ctx->store, id, &e, &eb);
    }
    if (rc == TORII_OK && fields.n > 0) {
        json_t *p = certs_query_project(e, &fields);
        json_decref(e);
        e = p;
        rc = e != NULL ? TORII_OK : TORII_ENOMEM;
    }
    certs_query_terms_clear(&fields);
    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_reply_json(reply, 200, e);
}

static void certs_patch_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                              const char *id, const struct admin_req_query *q,
                              struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_batch *b = NULL;
    json_t *patch = NULL;
    json_t *result = NULL;
    int merge = 0;
    int rc = TORII_OK;

    if (admin_req_media_type_is(req, "Content-Type", "application/merge-patch+json")) {
        merge = 1;
    } else if (!admin_req_media_type_is(req, "Content-Type", "application/json")
               && !admin_req_media_type_is(req, "Content-Type", "application/json-patch+json")) {
        admin_reply_error(reply, 415,
                          "unsupported content type, expected application/json-patch+json, "
                          "application/json or application/merge-patch+json");
        return;
    }
    rc = certs_parse_json((const char *)req->body, req->body_len, &patch, &eb);
    if (rc == TORII_OK) {
        b = torii_certdb_batch_new(ctx->store);
        rc = certs_op_patch(ctx, b, id, patch, merge, certs_enrich_wanted(q), &result, &eb);
    }
    if (rc == TORII_OK) {
        rc = certs_commit(b, id, &eb);
    }
    torii_certdb_batch_free(b);
    json_decref(patch);
    if (rc == TORII_OK) {
        certs_log_write("patched", id);
    } else {
        json_decref(result);
    }
    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_reply_json(reply, 200, result);
}

static void certs_delete_reply(struct torii_admin_ctx *ctx, const char *id,
                               struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    int rc = torii_certdb_delete(ctx->store, id, &eb);

    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_log_write("deleted", id);
    certs_reply_json(reply, 200, json_pack("{s:b}", "deleted", 1));
}

/* GET /:id/valid: derived validity recomputed now on a copy (nothing is written). */
static void certs_valid_reply(struct torii_admin_ctx *ctx, const char *id,
                              struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *e = NULL;
    int valid = 0;
    int rc = torii_certdb_load(ctx->store, id, &e, &eb);

    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    if (torii_cert_enrich(e, torii_clock_now_ms(), &eb) == TORII_OK) {
        valid = json_is_true(json_object_get(e, "valid"));
    }
    json_decref(e);
    certs_reply_json(reply, 200, json_pack("{s:b}", "valid", valid));
}

static void certs_template_reply(const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    json_t *t = torii_cert_template();

    if (t == NULL) {
        admin_reply_error(reply, 500, "template: out of memory");
        return;
    }
    for (size_t i = 0; i < q->n; i++) {
        json_t *s = NULL;

        if (strcmp(q->p[i].k, "rawPassword") == 0 || q->p[i].k[0] == '\0') {
            continue;
        }
        s = json_string(q->p[i].v);
        if (s == NULL) {
            json_decref(t);
            admin_reply_error(reply, 400, "query parameter '%.64s' is not valid UTF-8", q->p[i].k);
            return;
        }
        if (json_object_set_new(t, q->p[i].k, s) != 0) {
            json_decref(t);
            admin_reply_error(reply, 400, "query parameter name is not valid UTF-8");
            return;
        }
    }
    certs_reply_json(reply, 200, t);
}

/* ---- bulk (NDJSON, reference 2.5) ---- */

struct certs_buf {
    char *p;
    size_t len;
    size_t cap;
};

static void certs_buf_add(struct certs_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 1024 : b->cap;
        while (b->len + n + 1 > cap) {
            cap *= 2;
        }
        b->p = torii_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void certs_buf_add_json(struct certs_buf *b, json_t *v_owned)
{
    char *s = v_owned != NULL ? json_dumps(v_owned, JSON_COMPACT) : NULL;

    if (s == NULL) {
        static const char oom[] = "{\"status\":500,\"error\":\"server_error\","
                                  "\"error_description\":\"out of memory\"}";
        certs_buf_add(b, oom, sizeof(oom) - 1);
    } else {
        certs_buf_add(b, s, strlen(s));
    }
    certs_buf_add(b, "\n", 1);
    free(s);
    json_decref(v_owned);
}

static const char *certs_bulk_code(int rc)
{
    switch (rc) {
    case TORII_EINVAL:
        return "bad_entity";
    case TORII_ENOTFOUND:
        return "not_found";
    case TORII_EEXIST:
        return "already_exists";
    case TORII_ECONFLICT:
        return "conflict";
    case TORII_ETOOBIG:
        return "too_large";
    case TORII_ENOSPC:
        return "insufficient_storage";
    default:
        return "server_error";
    }
}

static const char *certs_jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* One bulk line: either failed before the commit (res set) or queued as item `item`. */
struct certs_bulk_line {
    json_t *res;
    char *id; /* a copy: replacing the entity's "id" member would free the original */
    const char *verb;
    int status;
    size_t item;
};

/* Queue one bulk operation of a parsed line object into b. l->id is the line's id (replaced
 * by the generated one on create). */
static int certs_bulk_exec(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                           const char *method, json_t *in, int enrich, struct certs_bulk_line *l,
                           struct torii_errbuf *eb)
{
    json_t *patched = NULL;
    int rc = TORII_OK;

    l->item = torii_certdb_batch_size(b);
    if (strcmp(method, "POST") == 0) {
        rc = certs_op_create(b, in, enrich, NULL, eb);
        if (json_is_string(json_object_get(in, "id"))) {
            free(l->id);
            l->id = torii_xstrdup(certs_jstr(in, "id"));
        }
        l->status = 201;
        l->verb = "created";
        return rc;
    }
    if (l->id == NULL || !admin_req_id_ok(l->id, CERTS_ID_MAX)) {
        return torii_errf(eb, TORII_EINVAL, "id: missing or invalid");
    }
    l->status = 200;
    l->verb = "updated";
    if (strcmp(method, "PUT") == 0) {
        return certs_op_replace(ctx, b, l->id, in, enrich, NULL, eb);
    }
    if (strcmp(method, "PATCH") == 0) {
        const json_t *patch = json_object_get(in, "patch");
        rc = certs_op_patch(ctx, b, l->id, patch != NULL ? patch : json_null(), 0, enrich, &patched,
                            eb);
        json_decref(patched);
        return rc;
    }
    l->verb = "deleted";
    return torii_certdb_batch_delete(b, l->id, eb);
}

static json_t *certs_bulk_error(int rc, const char *msg, const char *id)
{
    json_t *res = json_pack("{s:i, s:s, s:s}", "status", admin_status_of(rc), "error",
                            certs_bulk_code(rc), "error_description", msg);

    if (res != NULL && id != NULL) {
        (void)json_object_set_new(res, "id", json_string(id));
    }
    return res;
}

/* One NDJSON input line: parsed and queued into b, or failed (l->res, reference 2.5 shapes). */
static void certs_bulk_line(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                            const char *method, const char *line, size_t len, int enrich,
                            struct certs_bulk_line *l)
{
    struct torii_errbuf eb = {{0}};
    json_t *in = NULL;
    int rc = certs_parse_json(line, len, &in, &eb);

    memset(l, 0, sizeof(*l));
    l->verb = "updated";
    l->status = 200;
    if (rc == TORII_OK && !json_is_object(in)) {
        rc = torii_errf(&eb, TORII_EINVAL, "each line must be a JSON object");
    }
    if (rc == TORII_OK) {
        if (json_is_string(json_object_get(in, "id"))) {
            l->id = torii_xstrdup(certs_jstr(in, "id"));
        }
        rc = certs_bulk_exec(ctx, b, method, in, enrich, l, &eb);
    }
    if (rc != TORII_OK) {
        l->res = certs_bulk_error(rc, eb.msg, l->id);
        if (l->res == NULL) {
            l->res = json_null(); /* reported as out of memory */
        }
    }
    json_decref(in);
}

/* The result of a queued line once b is committed. */
static json_t *certs_bulk_result(const struct torii_certdb_batch *b,
                                 const struct certs_bulk_line *l)
{
    const char *msg = NULL;
    int rc = torii_certdb_batch_item_rc(b, l->item, &msg);

    if (rc != TORII_OK) {
        return certs_bulk_error(rc, msg != NULL ? msg : torii_strerror(rc), l->id);
    }
    certs_log_write(l->verb, l->id);
    return json_pack("{s:i, s:b, s:s}", "status", l->status, l->verb, 1, "id", l->id);
}

/* The non-blank lines of body, at most one per byte: [start, len) pairs into *out. */
static size_t certs_bulk_split(const char *body, size_t len, struct torii_slice **out)
{
    struct torii_slice *v = NULL;
    size_t n = 0;
    size_t cap = 0;
    size_t i = 0;

    while (i < len) {
        size_t end = i;
        size_t k = 0;
        size_t blank = 1;

        while (end < len && body[end] != '\n') {
            end++;
        }
        k = end - i;
        if (k > 0 && body[i + k - 1] == '\r') {
            k--;
        }
        for (size_t j = 0; j < k && blank; j++) {
            blank = body[i + j] == ' ' || body[i + j] == '\t';
        }
        if (!blank) {
            if (n == cap) {
                cap = cap == 0 ? 64 : cap * 2;
                v = torii_xrealloc(v, cap * sizeof(*v));
            }
            v[n++] = (struct torii_slice){body + i, k};
        }
        i = end + 1;
    }
    *out = v;
    return n;
}

/* Every line is queued into one certdb batch, in order (a later line sees an earlier one's
 * effect), committed in one durable transaction; each line still succeeds or fails alone. */
static void certs_bulk_run(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           int enrich, struct certs_buf *out)
{
    struct torii_certdb_batch *b = torii_certdb_batch_new(ctx->store);
    struct torii_errbuf eb = {{0}};
    struct torii_slice *lines = NULL;
    size_t n =
        certs_bulk_split((const char *)req->body, req->body != NULL ? req->body_len : 0, &lines);
    struct certs_bulk_line *ls = torii_xcalloc(n + 1, sizeof(*ls));

    for (size_t i = 0; i < n; i++) {
        certs_bulk_line(ctx, b, req->method, lines[i].ptr, lines[i].len, enrich, &ls[i]);
    }
    if (torii_certdb_batch_commit(b, TORII_CERTDB_PER_ITEM, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: bulk commit failed: %s", eb.msg); /* not expected */
    }
    for (size_t i = 0; i < n; i++) {
        json_t *res = ls[i].res != NULL ? ls[i].res : certs_bulk_result(b, &ls[i]);

        if (json_is_null(res)) { /* out of memory: certs_buf_add_json says so */
            json_decref(res);
            res = NULL;
        }
        certs_buf_add_json(out, res);
        free(ls[i].id);
    }
    free(ls);
    free(lines);
    torii_certdb_batch_free(b);
}

static void certs_bulk_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                             const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct certs_buf out = {NULL, 0, 0};

    if (!admin_req_media_type_is(req, "Content-Type", CERTS_NDJSON)
        && !(admin_req_method_is(req, "DELETE")
             && admin_req_media_type_is(req, "X-Content-Type", CERTS_NDJSON))) {
        certs_reply_json(reply, 400,
                         json_pack("{s:s, s:s}", "error", "bad_content_type", "error_description",
                                   "Unsupported content type, expected " CERTS_NDJSON));
        return;
    }
    certs_bulk_run(ctx, req, certs_enrich_wanted(q), &out);
    json_decref(reply->json);
    reply->json = NULL;
    reply->status = 200;
    reply->raw = out.p != NULL ? out.p : torii_xstrdup("");
    reply->raw_len = out.len;
    reply->content_type = CERTS_NDJSON;
}

/* ---- routing ---- */

static void certs_route_id(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           const char *id, const struct admin_req_query *q,
                           struct torii_admin_reply *reply)
{
    if (admin_req_is_get(req)) {
        if (certs_query_ok(q, certs_q_get, reply)) {
            certs_get_reply(ctx, id, q, reply);
        }
    } else if (admin_req_method_is(req, "PUT")) {
        if (certs_query_ok(q, certs_q_write, reply)) {
            certs_save_reply(ctx, req, id, q, reply);
        }
    } else if (admin_req_method_is(req, "PATCH")) {
        if (certs_query_ok(q, certs_q_write, reply)) {
            certs_patch_reply(ctx, req, id, q, reply);
        }
    } else if (admin_req_method_is(req, "DELETE")) {
        if (certs_query_ok(q, NULL, reply)) {
            certs_delete_reply(ctx, id, reply);
        }
    } else {
        admin_reply_method_not_allowed(reply, CERTS_ALLOW_ONE);
    }
}

struct certs_path {
    struct torii_slice seg1; /* empty for the collection */
    struct torii_slice seg2;
    int has_seg2;
};

/* Split what follows CERTS_PREFIX; TORII_ENOTFOUND when the path is not under it. */
static int certs_path_split(struct torii_slice path, struct certs_path *out)
{
    const size_t plen = sizeof(CERTS_PREFIX) - 1;
    struct torii_slice rest;
    const char *slash = NULL;

    if (path.len < plen || memcmp(path.ptr, CERTS_PREFIX, plen) != 0
        || (path.len > plen && path.ptr[plen] != '/')) {
        return TORII_ENOTFOUND;
    }
    rest = (struct torii_slice){path.ptr + plen, path.len - plen};
    if (rest.len > 0) {
        rest.ptr++; /* the '/' */
        rest.len--;
    }
    memset(out, 0, sizeof(*out));
    out->seg1 = rest;
    slash = rest.len > 0 ? memchr(rest.ptr, '/', rest.len) : NULL;
    if (slash != NULL) {
        out->seg1.len = (size_t)(slash - rest.ptr);
        out->seg2 = (struct torii_slice){slash + 1, rest.len - out->seg1.len - 1};
        out->has_seg2 = 1;
    }
    return TORII_OK;
}

/* Sibling routes implemented elsewhere in the admin module (_renew, _bundle, /:id/_renew). */
static int certs_path_is_sibling(const struct certs_path *p)
{
    if (p->has_seg2) {
        return admin_req_slice_is(p->seg2, "_renew");
    }
    return admin_req_slice_is(p->seg1, "_renew") || admin_req_slice_is(p->seg1, "_bundle");
}

/* /:id and /:id/valid */
static void certs_route_entity(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                               const struct certs_path *p, const struct admin_req_query *q,
                               struct torii_admin_reply *reply)
{
    char *id = NULL;

    if (p->has_seg2 && !admin_req_slice_is(p->seg2, "valid")) {
        admin_reply_error(reply, 404, "resource not found");
        return;
    }
    if (admin_req_id_decode(p->seg1.ptr, p->seg1.len, CERTS_ID_MAX, &id) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", CERTS_ID_RULE);
    } else if (!p->has_seg2) {
        certs_route_id(ctx, req, id, q, reply);
    } else if (admin_req_is_get(req)) {
        if (certs_query_ok(q, NULL, reply)) {
            certs_valid_reply(ctx, id, reply);
        }
    } else {
        admin_reply_method_not_allowed(reply, CERTS_ALLOW_GET);
    }
    free(id);
}

static void certs_dispatch(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           const struct certs_path *p, const struct admin_req_query *q,
                           struct torii_admin_reply *reply)
{
    int special = !p->has_seg2;

    if (special && p->seg1.len == 0) {
        if (admin_req_is_get(req)) {
            if (certs_query_ok(q, certs_q_list, reply)) {
                certs_list_reply(ctx, q, reply);
            }
        } else if (admin_req_method_is(req, "POST")) {
            if (certs_query_ok(q, certs_q_write, reply)) {
                certs_save_reply(ctx, req, NULL, q, reply);
            }
        } else {
            admin_reply_method_not_allowed(reply, CERTS_ALLOW_COLL);
        }
    } else if (special && admin_req_slice_is(p->seg1, "_template")) {
        if (admin_req_is_get(req)) {
            certs_template_reply(q, reply);
        } else {
            admin_reply_method_not_allowed(reply, CERTS_ALLOW_GET);
        }
    } else if (special && admin_req_slice_is(p->seg1, "_bulk")) {
        if (admin_req_method_is(req, "POST") || admin_req_method_is(req, "PUT")
            || admin_req_method_is(req, "PATCH") || admin_req_method_is(req, "DELETE")) {
            if (certs_query_ok(q, certs_q_write, reply)) {
                certs_bulk_reply(ctx, req, q, reply);
            }
        } else {
            admin_reply_method_not_allowed(reply, CERTS_ALLOW_BULK);
        }
    } else {
        certs_route_entity(ctx, req, p, q, reply);
    }
}

int admin_certs_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply)
{
    struct admin_req_query q = {NULL, 0};
    struct certs_path p;

    if (certs_path_split(req->path, &p) != TORII_OK || certs_path_is_sibling(&p)) {
        return TORII_ENOTFOUND;
    }
    if (admin_req_query_parse(req->query, 0, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid percent-encoding in the query string");
        return TORII_OK;
    }
    certs_dispatch(ctx, req, &p, &q, reply);
    admin_req_query_clear(&q);
    return TORII_OK;
}
