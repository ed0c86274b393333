/* routes_certs.c - the /api/certificates admin routes (Otoroshi-compatible, reference sections
 * 2.2-2.6), with the section 13 fixes: responses carry the entity exactly as stored (derived
 * fields computed from the chain), and every error is a 4xx/5xx {"error": "..."} that changes
 * nothing. This file routes, lists and answers the single-entity calls; the write operations
 * are in certs_write.c, _bulk in certs_bulk.c (admin_certs.h).
 *
 * Decisions:
 * - Ids (URL or body) are 1..256 bytes with no control character and no '/'.
 * - Listing: X-Count is the total before filtering (as the reference); without pageSize the
 *   page is unbounded and X-Page-Size reports 2147483647 (the reference's Int.MaxValue);
 *   ?keypair=true keeps key pairs only; bodies and filters are exact, top-level only.
 * - _renew, _bundle and /:id/_renew belong to other route files: TORII_ENOTFOUND for those.
 * Private keys and passwords are never logged. Threads: admin thread only. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin_certs.h"
#include "admin_int.h"
#include "certs_query.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/err.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define CERTS_PREFIX     "/api/certificates"
#define CERTS_PAGE_MAX   1000000000L
#define CERTS_NO_PAGING  2147483647L /* what the reference reports as X-Page-Size when unpaged */
#define CERTS_ALLOW_COLL "GET, HEAD, POST"
#define CERTS_ALLOW_ONE  "GET, HEAD, PUT, PATCH, DELETE"
#define CERTS_ALLOW_GET  "GET, HEAD"
#define CERTS_ALLOW_BULK "POST, PUT, PATCH, DELETE"

/* ---- request helpers ---- */

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

/* ---- collection: list and create ---- */

struct certs_list {
    const struct admin_req_query *q;
    struct certs_query_terms fields;   /* n == 0: whole entities */
    struct certs_query_terms filtered; /* every term must match */
    struct certs_query_terms sorted;   /* n > 0: items collects every match, sorted after */
    struct certs_query_window window;  /* search, expiresAfter, expiresBefore */
    unsigned computed;                 /* computed sort keys (certs_query_computed) */
    int64_t now_ms;                    /* for the badges sort key */
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
    certs_query_computed_del(e, l->computed);
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
            rc = certs_query_computed_add(e, l->computed, l->now_ms);
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

/* page and pageSize of q into *page and *size (left as they are when absent). */
static int certs_list_page(const struct admin_req_query *q, long *page, long *size,
                           struct torii_errbuf *eb)
{
    const char *page_s = admin_req_query_get(q, "page");
    const char *size_s = admin_req_query_get(q, "pageSize");

    if (page_s != NULL && certs_parse_pos(page_s, page) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "page: must be an integer from 1 to %ld",
                          CERTS_PAGE_MAX);
    }
    if (size_s != NULL && certs_parse_pos(size_s, size) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "pageSize: must be an integer from 1 to %ld",
                          CERTS_PAGE_MAX);
    }
    return TORII_OK;
}

/* fields, filtered, sorted, search and the expiry window of q into l. */
static int certs_list_terms(const struct admin_req_query *q, struct certs_list *l,
                            struct torii_errbuf *eb)
{
    const char *fields = admin_req_query_get(q, "fields");
    const char *filtered = admin_req_query_get(q, "filtered");
    const char *sorted = admin_req_query_get(q, "sorted");
    int rc = TORII_OK;

    TORII_TRY(certs_query_fields_parse(fields != NULL ? fields : "", &l->fields, eb));
    TORII_TRY(certs_query_filtered_parse(filtered != NULL ? filtered : "", &l->filtered, eb));
    TORII_TRY(certs_query_sorted_parse(sorted != NULL ? sorted : "", &l->sorted, eb));
    l->computed = certs_query_computed(&l->sorted);
    l->now_ms = torii_clock_now_ms();
    TORII_TRY(certs_query_window_parse(admin_req_query_get(q, "search"),
                                       admin_req_query_get(q, "expiresAfter"),
                                       admin_req_query_get(q, "expiresBefore"), &l->window, eb));
out:
    return rc;
}

/* The list parameters of q into l (page numbers in *page and *size); eb names a bad one. */
static int certs_list_parse(const struct admin_req_query *q, struct certs_list *l, long *page,
                            long *size, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(certs_list_page(q, page, size, eb));
    TORII_TRY(admin_req_query_bool_check(q, "keypair", eb));
    TORII_TRY(certs_list_no_secret(q, eb));
    l->q = q;
    l->keypair_only = admin_req_query_bool(q, "keypair", 0);
    l->offset = (size_t)(*page - 1) * (size_t)*size;
    l->limit = (size_t)*size;
    TORII_TRY(certs_list_terms(q, l, eb));
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
        admin_certs_log_write(json_string_value(v), id);
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
    int enrich = admin_certs_enrich_wanted(q);
    uint32_t flags = 0;
    int rc = TORII_OK;

    if (!admin_req_media_type_is(req, "Content-Type", "application/json")) {
        admin_reply_error(reply, 415, "unsupported content type, expected application/json");
        return;
    }
    rc = admin_certs_parse_json((const char *)req->body, req->body_len, &entity, &eb);
    if (rc == TORII_OK) {
        b = torii_certdb_batch_new(ctx->store);
        rc = id == NULL ? admin_certs_op_create(b, entity, enrich, &flags, &eb)
                        : admin_certs_op_replace(ctx, b, id, entity, enrich, &flags, &eb);
    }
    if (rc == TORII_OK) {
        rc = admin_certs_commit(b, json_string_value(json_object_get(entity, "id")), &eb);
    }
    torii_certdb_batch_free(b);
    if (rc != TORII_OK) {
        json_decref(entity);
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    admin_certs_log_write(id == NULL ? "created" : "updated",
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
    rc = admin_certs_parse_json((const char *)req->body, req->body_len, &patch, &eb);
    if (rc == TORII_OK) {
        b = torii_certdb_batch_new(ctx->store);
        rc = admin_certs_op_patch(ctx, b, id, patch, merge, admin_certs_enrich_wanted(q), &result,
                                  &eb);
    }
    if (rc == TORII_OK) {
        rc = admin_certs_commit(b, id, &eb);
    }
    torii_certdb_batch_free(b);
    json_decref(patch);
    if (rc == TORII_OK) {
        admin_certs_log_write("patched", id);
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
    admin_certs_log_write("deleted", id);
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
    if (torii_cert_enrich_kek(e, torii_store_kek(ctx->store), torii_clock_now_ms(), &eb)
        == TORII_OK) {
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
                admin_certs_bulk_reply(ctx, req, q, reply);
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
