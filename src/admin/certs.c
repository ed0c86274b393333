/* certs.c - the /api/certificates admin routes (Otoroshi-compatible, reference sections 2.2-2.6),
 * with the section 13 fixes: responses carry the entity exactly as stored (derived fields
 * computed from the chain), and every error is a 4xx/5xx {"error": "..."} that changes nothing.
 *
 * Decisions:
 * - Every write is one torii_store_apply (through torii_store_put/delete), durable before the
 *   reply; a request that fails validation never reaches the store.
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
 * - Bulk lines are applied one by one, in order (a later line sees an earlier one's effect),
 *   each with its own durable transaction; a failed line does not stop the others.
 * - _renew, _bundle and /:id/_renew belong to other route files: TORII_ENOTFOUND for those.
 * Private keys and passwords are never logged; buffers holding entity JSON or TLS records are
 * wiped before they are freed. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "admin_int.h"
#include "jsonpatch.h"
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

/* ---- request helpers ---- */

static const struct torii_slice *certs_header(const struct torii_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (torii_slice_eq_ci(req->headers[i].name, name)) {
            return &req->headers[i].value;
        }
    }
    return NULL;
}

/* The media type of header `name` (parameters such as charset ignored) equals type. */
static int certs_media_type_is(const struct torii_http_req *req, const char *name, const char *type)
{
    const struct torii_slice *v = certs_header(req, name);
    struct torii_slice mt;

    if (v == NULL) {
        return 0;
    }
    mt = *v;
    while (mt.len > 0 && (mt.ptr[0] == ' ' || mt.ptr[0] == '\t')) {
        mt.ptr++;
        mt.len--;
    }
    for (size_t i = 0; i < mt.len; i++) {
        if (mt.ptr[i] == ';') {
            mt.len = i;
            break;
        }
    }
    while (mt.len > 0 && (mt.ptr[mt.len - 1] == ' ' || mt.ptr[mt.len - 1] == '\t')) {
        mt.len--;
    }
    return torii_slice_eq_ci(mt, type);
}

static int certs_method_is(const struct torii_http_req *req, const char *m)
{
    return strcmp(req->method, m) == 0;
}

/* GET and HEAD are served alike (the HTTP engine drops the body of a HEAD reply). */
static int certs_is_get(const struct torii_http_req *req)
{
    return certs_method_is(req, "GET") || certs_method_is(req, "HEAD");
}

static int certs_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decode s (and '+' as space when plus_space) into a new NUL-terminated string.
 * Rejects bad escapes and encoded NUL bytes. */
static int certs_pct_decode(const char *s, size_t len, int plus_space, char **out)
{
    char *d = torii_xmalloc(len + 1);
    size_t k = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? certs_hex((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? certs_hex((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(d);
                return TORII_EINVAL;
            }
            d[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '+' && plus_space) {
            d[k++] = ' ';
        } else if (s[i] == '\0') {
            free(d);
            return TORII_EINVAL;
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    *out = d;
    return TORII_OK;
}

struct certs_param {
    char *k;
    char *v;
};

struct certs_query {
    struct certs_param *p;
    size_t n;
};

static void certs_query_clear(struct certs_query *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->p[i].k);
        free(q->p[i].v);
    }
    TORII_FREE(q->p);
    q->n = 0;
}

/* Decode one "k=v" item (a key without '=' gets "") and append it to q. */
static int certs_query_add(struct certs_query *q, size_t *cap, const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t klen = eq != NULL ? (size_t)(eq - item) : len;
    char *k = NULL;
    char *v = NULL;

    if (certs_pct_decode(item, klen, 1, &k) != TORII_OK) {
        return TORII_EINVAL;
    }
    if (certs_pct_decode(eq != NULL ? eq + 1 : "", eq != NULL ? len - klen - 1 : 0, 1, &v)
        != TORII_OK) {
        free(k);
        return TORII_EINVAL;
    }
    if (q->n == *cap) {
        *cap = *cap == 0 ? 8 : *cap * 2;
        q->p = torii_xrealloc(q->p, *cap * sizeof(*q->p));
    }
    q->p[q->n++] = (struct certs_param){k, v};
    return TORII_OK;
}

/* Split "a=1&b=2" into decoded pairs. Empty items are skipped. */
static int certs_query_parse(struct torii_slice qs, struct certs_query *out)
{
    int rc = TORII_OK;
    struct certs_query q = {NULL, 0};
    size_t cap = 0;
    size_t i = 0;

    while (i < qs.len) {
        const char *amp = memchr(qs.ptr + i, '&', qs.len - i);
        size_t end = amp != NULL ? (size_t)(amp - qs.ptr) : qs.len;

        if (end > i) {
            TORII_TRY(certs_query_add(&q, &cap, qs.ptr + i, end - i));
        }
        i = end + 1;
    }
    *out = q;
    q.p = NULL;
    q.n = 0;
out:
    certs_query_clear(&q);
    return rc;
}

static const char *certs_query_get(const struct certs_query *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->p[i].k, key) == 0) {
            return q->p[i].v;
        }
    }
    return NULL;
}

static int certs_enrich_wanted(const struct certs_query *q)
{
    const char *v = certs_query_get(q, "enrich");
    return v == NULL || strcmp(v, "false") != 0;
}

/* Ids: 1..CERTS_ID_MAX bytes, no control characters, no '/' (it could not be addressed). */
static int certs_id_ok(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len > CERTS_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c == 0x7f || c == '/') {
            return 0;
        }
    }
    return 1;
}

/* Parse a JSON body (no duplicate keys, no NUL in strings, bounded depth). */
static int certs_parse_json(const char *buf, size_t len, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_error_t jerr;
    json_t *v = NULL;
    size_t depth = 0;

    v = json_loadb(buf != NULL ? buf : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        rc = torii_errf(eb, TORII_EINVAL, "invalid JSON: %s (line %d, column %d)", jerr.text,
                        jerr.line, jerr.column);
        goto out;
    }
    TORII_TRY(admin_json_depth(v, &depth));
    if (depth > ADMIN_JSON_MAX_DEPTH) {
        rc =
            torii_errf(eb, TORII_EINVAL, "JSON nested deeper than %d levels", ADMIN_JSON_MAX_DEPTH);
        goto out;
    }
    *out = v;
    v = NULL;
out:
    json_decref(v);
    return rc;
}

/* ---- reply helpers ---- */

static void certs_reply_json(struct torii_admin_reply *r, int status, json_t *v_owned)
{
    json_decref(r->json);
    r->status = status;
    r->json = v_owned;
}

static int certs_status_of(int rc)
{
    switch (rc) {
    case TORII_OK:
        return 200;
    case TORII_EINVAL:
        return 400;
    case TORII_ENOTFOUND:
        return 404;
    case TORII_EEXIST:
        return 409;
    default:
        return 500;
    }
}

/* Reply with the status matching rc and {"error": eb.msg}. */
static void certs_reply_rc(struct torii_admin_reply *r, int rc, const struct torii_errbuf *eb)
{
    if (rc == TORII_ENOMEM) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    admin_reply_error(r, certs_status_of(rc), "%s", eb->msg[0] != '\0' ? eb->msg : "error");
}

static void certs_method_not_allowed(struct torii_admin_reply *r, const char *allow)
{
    admin_reply_error(r, 405, "method not allowed");
    admin_reply_header(r, "Allow", allow);
}

/* A new object with only the listed top-level keys of e ("a,b,c"). */
static json_t *certs_project(const json_t *e, const char *fields)
{
    json_t *p = json_object();
    const char *s = fields;

    while (p != NULL && *s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        json_t *v = json_object_getn(e, s, len);

        if (v != NULL && json_object_setn(p, s, len, v) != 0) {
            json_decref(p);
            return NULL;
        }
        s += len;
        if (*s == ',') {
            s++;
        }
    }
    return p;
}

static void certs_log_write(const char *what, const char *id)
{
    char esc[128];

    torii_log(TORII_LOG_INFO, "admin: certificate %s (id=%s)", what,
              torii_log_escape(id, strlen(id), esc, sizeof(esc)));
}

/* ---- store access ---- */

/* Stored entity and its TLS record; aux_out may be NULL. TORII_ENOTFOUND with eb set. */
static int certs_load(struct torii_admin_ctx *ctx, const char *id, json_t **out,
                      unsigned char **aux_out, size_t *aux_len_out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *text = NULL;
    size_t len = 0;
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    json_error_t jerr;
    json_t *e = NULL;

    rc = torii_store_get(ctx->store, TORII_STORE_CERTS, id, &text, &len,
                         aux_out != NULL ? &aux : NULL, aux_out != NULL ? &aux_len : NULL);
    if (rc == TORII_ENOTFOUND) {
        rc = torii_errf(eb, TORII_ENOTFOUND, "entity not found");
        goto out;
    }
    if (rc != TORII_OK) {
        rc = torii_errf(eb, rc, "store: read failed: %s", torii_strerror(rc));
        goto out;
    }
    e = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(e)) {
        rc = torii_errf(eb, TORII_ESTORE, "store: stored entity is not a JSON object");
        goto out;
    }
    *out = e;
    e = NULL;
    if (aux_out != NULL) {
        *aux_out = aux;
        *aux_len_out = aux_len;
        aux = NULL;
    }
out:
    json_decref(e);
    torii_secure_free(text, len);
    torii_secure_free(aux, aux_len);
    return rc;
}

/* One durable write of a prepared entity and its record. */
static int certs_write(struct torii_admin_ctx *ctx, enum torii_store_op_kind kind,
                       const json_t *old, const json_t *entity, const unsigned char *aux,
                       size_t aux_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *id = json_string_value(json_object_get(entity, "id"));
    char *text = json_dumps(entity, JSON_COMPACT);
    struct torii_store_rec rec;
    struct admin_serial_ops idx;
    struct torii_store_op ops[3];

    TORII_ENSURE(text != NULL && id != NULL, TORII_ENOMEM);
    rec = (struct torii_store_rec){
        .id = id,
        .id_len = strlen(id),
        .json = text,
        .json_len = strlen(text),
        .aux = aux,
        .aux_len = aux_len,
    };
    /* The serial index entries change in the same transaction (pki.c). */
    admin_serial_index_ops(ctx->store, old, entity, &idx);
    ops[0] = (struct torii_store_op){.kind = kind, .bucket = TORII_STORE_CERTS, .rec = rec};
    memcpy(&ops[1], idx.op, idx.n * sizeof(idx.op[0]));
    rc = torii_store_apply(ctx->store, ops, 1 + idx.n, eb);
    if (rc == TORII_EEXIST) {
        rc = torii_errf(eb, TORII_EEXIST, "entity already exists");
    } else if (rc == TORII_ENOTFOUND) {
        rc = torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    } else if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: certificate write failed: %s", eb->msg);
        if (rc == TORII_EINVAL) {
            rc = TORII_ESTORE; /* the entity was validated: a store refusal is our failure */
        }
    }
out:
    if (text != NULL) {
        torii_secure_free(text, strlen(text));
    }
    return rc;
}

/* Normalize (type checks and defaults), validate the id, enrich unless told not to, and build
 * the TLS record. entity is modified in place into its stored form. */
static int certs_prepare(json_t *entity, int enrich, unsigned char **aux, size_t *aux_len,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *id = NULL;

    TORII_TRY(torii_cert_normalize(entity, eb));
    id = json_string_value(json_object_get(entity, "id"));
    if (id == NULL || !certs_id_ok(id)) {
        rc =
            torii_errf(eb, TORII_EINVAL,
                       "id: must be 1 to %d bytes without control characters or '/'", CERTS_ID_MAX);
        goto out;
    }
    if (enrich) {
        TORII_TRY(torii_cert_enrich(entity, torii_clock_now_ms(), eb));
    }
    TORII_TRY(torii_certrec_build(entity, aux, aux_len, eb));
out:
    return rc;
}

/* Leaf certificate of a TLS record, or NULL. */
static X509 *certs_rec_leaf(const unsigned char *blob, size_t len)
{
    struct torii_certrec *rec = torii_xcalloc(1, sizeof(*rec));
    X509 *x = NULL;

    if (blob != NULL && torii_certrec_decode(blob, len, rec) == TORII_OK && rec->n_chain > 0
        && rec->chain[0].len <= INT32_MAX) {
        const unsigned char *p = (const unsigned char *)rec->chain[0].ptr;
        x = d2i_X509(NULL, &p, (long)rec->chain[0].len);
    }
    free(rec);
    return x;
}

/* PUT without a key: carry the stored key (and its password) over when the leaf public key is
 * unchanged (see the file comment). entity is normalized; errors here just mean "do not keep". */
static void certs_keep_key(const json_t *stored, const unsigned char *stored_aux,
                           size_t stored_aux_len, json_t *entity)
{
    const char *old_key = json_string_value(json_object_get(stored, "privateKey"));
    const char *new_key = json_string_value(json_object_get(entity, "privateKey"));
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    X509 *a = NULL;
    X509 *b = NULL;
    json_t *pw = NULL;

    if (old_key == NULL || old_key[0] == '\0' || (new_key != NULL && new_key[0] != '\0')) {
        return;
    }
    if (torii_certrec_build(entity, &aux, &aux_len, NULL) != TORII_OK) {
        return; /* the chain does not parse: the real validation reports it */
    }
    a = certs_rec_leaf(aux, aux_len);
    b = certs_rec_leaf(stored_aux, stored_aux_len);
    if (a != NULL && b != NULL && X509_get0_pubkey(a) != NULL && X509_get0_pubkey(b) != NULL
        && EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)) == 1) {
        pw = json_object_get(stored, "password");
        (void)json_object_set_new(entity, "privateKey", json_string(old_key));
        (void)json_object_set_new(entity, "password",
                                  json_is_string(pw) ? json_incref(pw) : json_null());
    }
    X509_free(a);
    X509_free(b);
    torii_secure_free(aux, aux_len);
}

/* ---- operations shared by the single and bulk endpoints (eb always says why) ---- */

static int certs_op_create(struct torii_admin_ctx *ctx, json_t *entity, int enrich,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    json_t *id = json_object_get(entity, "id");
    char gen[64];

    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object");
    }
    if (id == NULL || json_is_null(id)) {
        TORII_TRY(torii_uuid_id(CERTS_ID_PREFIX, gen, sizeof(gen)));
        TORII_ENSURE(json_object_set_new(entity, "id", json_string(gen)) == 0, TORII_ENOMEM);
    }
    TORII_TRY(certs_prepare(entity, enrich, &aux, &aux_len, eb));
    TORII_TRY(certs_write(ctx, TORII_STORE_CREATE, NULL, entity, aux, aux_len, eb));
    certs_log_write("created", json_string_value(json_object_get(entity, "id")));
out:
    torii_secure_free(aux, aux_len);
    return rc;
}

/* id must not point into entity (its "id" member is replaced). */
static int certs_op_replace(struct torii_admin_ctx *ctx, const char *id, json_t *entity, int enrich,
                            struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *stored = NULL;
    unsigned char *stored_aux = NULL;
    size_t stored_aux_len = 0;
    unsigned char *aux = NULL;
    size_t aux_len = 0;

    if (!json_is_object(entity)) {
        return torii_errf(eb, TORII_EINVAL, "certificate entity must be a JSON object");
    }
    TORII_ENSURE(json_object_set_new(entity, "id", json_string(id)) == 0, TORII_ENOMEM);
    TORII_TRY(certs_load(ctx, id, &stored, &stored_aux, &stored_aux_len, eb));
    TORII_TRY(torii_cert_normalize(entity, eb));
    certs_keep_key(stored, stored_aux, stored_aux_len, entity);
    TORII_TRY(certs_prepare(entity, enrich, &aux, &aux_len, eb));
    TORII_TRY(certs_write(ctx, TORII_STORE_REPLACE, stored, entity, aux, aux_len, eb));
    certs_log_write("updated", id);
out:
    json_decref(stored);
    torii_secure_free(stored_aux, stored_aux_len);
    torii_secure_free(aux, aux_len);
    return rc;
}

/* Apply a JSON Patch or merge patch to the stored entity; the result must still be an
 * object carrying the same id. */
static int certs_apply_patch(const json_t *stored, const json_t *patch, int merge, const char *id,
                             json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *patched = NULL;
    const json_t *new_id = NULL;

    rc = merge ? admin_mergepatch_apply(stored, patch, &patched, eb)
               : admin_jsonpatch_apply(stored, patch, &patched, eb);
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

/* Patch the stored entity; *out is the stored result. */
static int certs_op_patch(struct torii_admin_ctx *ctx, const char *id, const json_t *patch,
                          int merge, int enrich, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *stored = NULL;
    json_t *patched = NULL;
    unsigned char *aux = NULL;
    size_t aux_len = 0;

    TORII_TRY(certs_load(ctx, id, &stored, NULL, NULL, eb));
    TORII_TRY(certs_apply_patch(stored, patch, merge, id, &patched, eb));
    TORII_TRY(certs_prepare(patched, enrich, &aux, &aux_len, eb));
    TORII_TRY(certs_write(ctx, TORII_STORE_REPLACE, stored, patched, aux, aux_len, eb));
    certs_log_write("patched", id);
    *out = patched;
    patched = NULL;
out:
    json_decref(stored);
    json_decref(patched);
    torii_secure_free(aux, aux_len);
    return rc;
}

static int certs_op_delete(struct torii_admin_ctx *ctx, const char *id, struct torii_errbuf *eb)
{
    json_t *stored = NULL;
    struct admin_serial_ops idx;
    struct torii_store_op ops[3];
    int rc = certs_load(ctx, id, &stored, NULL, NULL, eb);

    if (rc != TORII_OK && rc != TORII_ESTORE) {
        return torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    }
    /* An unreadable stored entity is still deleted (its index entry, if any, stays). */
    admin_serial_index_ops(ctx->store, stored, NULL, &idx);
    json_decref(stored);
    ops[0] = (struct torii_store_op){.kind = TORII_STORE_DELETE,
                                     .bucket = TORII_STORE_CERTS,
                                     .rec = {.id = id, .id_len = strlen(id)}};
    memcpy(&ops[1], idx.op, idx.n * sizeof(idx.op[0]));
    rc = torii_store_apply(ctx->store, ops, 1 + idx.n, eb);

    if (rc == TORII_ENOTFOUND || rc == TORII_EINVAL) {
        /* EINVAL: an id the store cannot hold cannot exist either */
        return torii_errf(eb, TORII_ENOTFOUND, "entity not found");
    }
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: certificate delete failed: %s", eb->msg);
        return rc;
    }
    certs_log_write("deleted", id);
    return TORII_OK;
}

/* ---- collection: list and create ---- */

struct certs_list {
    const struct certs_query *q;
    const char *fields;
    int keypair_only;
    size_t total;   /* every record, before filtering (X-Count, as the reference) */
    size_t matched; /* records passing the filters */
    size_t offset;  /* first matched index on the page */
    size_t limit;   /* page size */
    json_t *items;  /* the page */
    int rc;
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
        const struct certs_param *p = &l->q->p[i];
        const json_t *v = NULL;

        if (strncmp(p->k, "filter.", 7) != 0) {
            continue;
        }
        v = json_object_get(e, p->k + 7);
        if (v == NULL || !certs_value_matches(v, p->v)) {
            return 0;
        }
    }
    return 1;
}

static int certs_list_cb(const struct torii_store_rec *rec, void *arg)
{
    struct certs_list *l = arg;
    json_error_t jerr;
    json_t *e = NULL;
    json_t *item = NULL;

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
        if (l->matched >= l->offset && l->matched - l->offset < l->limit) {
            item = l->fields != NULL ? certs_project(e, l->fields) : json_incref(e);
            if (item == NULL || json_array_append_new(l->items, item) != 0) {
                json_decref(e);
                return TORII_ENOMEM;
            }
        }
        l->matched++;
    }
    json_decref(e);
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

static void certs_list_reply(struct torii_admin_ctx *ctx, const struct certs_query *q,
                             struct torii_admin_reply *reply)
{
    struct certs_list l;
    const char *page_s = certs_query_get(q, "page");
    const char *size_s = certs_query_get(q, "pageSize");
    const char *kp = certs_query_get(q, "keypair");
    long page = 1;
    long size = CERTS_NO_PAGING;
    char num[32];
    int rc = TORII_OK;

    if (page_s != NULL && certs_parse_pos(page_s, &page) != TORII_OK) {
        admin_reply_error(reply, 400, "page: must be an integer from 1 to %ld", CERTS_PAGE_MAX);
        return;
    }
    if (size_s != NULL && certs_parse_pos(size_s, &size) != TORII_OK) {
        admin_reply_error(reply, 400, "pageSize: must be an integer from 1 to %ld", CERTS_PAGE_MAX);
        return;
    }
    memset(&l, 0, sizeof(l));
    l.q = q;
    l.fields = certs_query_get(q, "fields");
    if (l.fields != NULL && l.fields[0] == '\0') {
        l.fields = NULL;
    }
    l.keypair_only = kp != NULL && strcmp(kp, "true") == 0;
    l.offset = (size_t)(page - 1) * (size_t)size;
    l.limit = (size_t)size;
    l.items = json_array();
    if (l.items == NULL) {
        admin_reply_error(reply, 500, "out of memory");
        return;
    }
    rc = torii_store_foreach(ctx->store, TORII_STORE_CERTS, certs_list_cb, &l);
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: certificate list failed: %s", torii_strerror(rc));
        json_decref(l.items);
        admin_reply_error(reply, 500, "store: list failed: %s", torii_strerror(rc));
        return;
    }
    certs_reply_json(reply, 200, l.items);
    (void)snprintf(num, sizeof(num), "%zu", l.total);
    admin_reply_header(reply, "X-Count", num);
    (void)snprintf(num, sizeof(num), "%zu", l.offset);
    admin_reply_header(reply, "X-Offset", num);
    (void)snprintf(num, sizeof(num), "%ld", page);
    admin_reply_header(reply, "X-Page", num);
    (void)snprintf(num, sizeof(num), "%ld", size);
    admin_reply_header(reply, "X-Page-Size", num);
}

static int certs_require_json(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    if (!certs_media_type_is(req, "Content-Type", "application/json")) {
        admin_reply_error(reply, 415, "unsupported content type, expected application/json");
        return 0;
    }
    return 1;
}

static void certs_create_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                               const struct certs_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *entity = NULL;
    int rc = TORII_OK;

    if (!certs_require_json(req, reply)) {
        return;
    }
    rc = certs_parse_json((const char *)req->body, req->body_len, &entity, &eb);
    if (rc == TORII_OK) {
        rc = certs_op_create(ctx, entity, certs_enrich_wanted(q), &eb);
    }
    if (rc != TORII_OK) {
        json_decref(entity);
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_reply_json(reply, 201, entity);
}

/* ---- one entity ---- */

static void certs_get_reply(struct torii_admin_ctx *ctx, const char *id,
                            const struct certs_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *e = NULL;
    const char *fields = certs_query_get(q, "fields");
    int rc = certs_load(ctx, id, &e, NULL, NULL, &eb);

    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    if (fields != NULL && fields[0] != '\0') {
        json_t *p = certs_project(e, fields);
        json_decref(e);
        e = p;
        if (e == NULL) {
            admin_reply_error(reply, 500, "out of memory");
            return;
        }
    }
    certs_reply_json(reply, 200, e);
}

static void certs_put_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                            const char *id, const struct certs_query *q,
                            struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *entity = NULL;
    int rc = TORII_OK;

    if (!certs_require_json(req, reply)) {
        return;
    }
    rc = certs_parse_json((const char *)req->body, req->body_len, &entity, &eb);
    if (rc == TORII_OK) {
        rc = certs_op_replace(ctx, id, entity, certs_enrich_wanted(q), &eb);
    }
    if (rc != TORII_OK) {
        json_decref(entity);
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_reply_json(reply, 200, entity);
}

static void certs_patch_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                              const char *id, const struct certs_query *q,
                              struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *patch = NULL;
    json_t *result = NULL;
    int merge = 0;
    int rc = TORII_OK;

    if (certs_media_type_is(req, "Content-Type", "application/merge-patch+json")) {
        merge = 1;
    } else if (!certs_media_type_is(req, "Content-Type", "application/json")
               && !certs_media_type_is(req, "Content-Type", "application/json-patch+json")) {
        admin_reply_error(reply, 415,
                          "unsupported content type, expected application/json-patch+json, "
                          "application/json or application/merge-patch+json");
        return;
    }
    rc = certs_parse_json((const char *)req->body, req->body_len, &patch, &eb);
    if (rc == TORII_OK) {
        rc = certs_op_patch(ctx, id, patch, merge, certs_enrich_wanted(q), &result, &eb);
    }
    json_decref(patch);
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
    int rc = certs_op_delete(ctx, id, &eb);

    if (rc != TORII_OK) {
        certs_reply_rc(reply, rc, &eb);
        return;
    }
    certs_reply_json(reply, 200, json_pack("{s:b}", "deleted", 1));
}

/* GET /:id/valid: derived validity recomputed now on a copy (nothing is written). */
static void certs_valid_reply(struct torii_admin_ctx *ctx, const char *id,
                              struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *e = NULL;
    int valid = 0;
    int rc = certs_load(ctx, id, &e, NULL, NULL, &eb);

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

static void certs_template_reply(const struct certs_query *q, struct torii_admin_reply *reply)
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
    default:
        return "server_error";
    }
}

static const char *certs_jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* Run one bulk operation on a parsed line object. *id is the line's id (a copy, replaced by the
 * generated one on create); on success *status and *verb describe the result. */
static int certs_bulk_exec(struct torii_admin_ctx *ctx, const char *method, json_t *in, char **id,
                           int enrich, int *status, const char **verb, struct torii_errbuf *eb)
{
    json_t *patched = NULL;
    int rc = TORII_OK;

    if (strcmp(method, "POST") == 0) {
        rc = certs_op_create(ctx, in, enrich, eb);
        if (json_is_string(json_object_get(in, "id"))) {
            free(*id);
            *id = torii_xstrdup(certs_jstr(in, "id"));
        }
        *status = 201;
        *verb = "created";
        return rc;
    }
    if (*id == NULL || !certs_id_ok(*id)) {
        return torii_errf(eb, TORII_EINVAL, "id: missing or invalid");
    }
    *status = 200;
    if (strcmp(method, "PUT") == 0) {
        *verb = "updated";
        return certs_op_replace(ctx, *id, in, enrich, eb);
    }
    if (strcmp(method, "PATCH") == 0) {
        const json_t *patch = json_object_get(in, "patch");
        *verb = "updated";
        rc = certs_op_patch(ctx, *id, patch != NULL ? patch : json_null(), 0, enrich, &patched, eb);
        json_decref(patched);
        return rc;
    }
    *verb = "deleted";
    return certs_op_delete(ctx, *id, eb);
}

/* One NDJSON input line -> one result object (reference 2.5 shapes). */
static json_t *certs_bulk_line(struct torii_admin_ctx *ctx, const char *method, const char *line,
                               size_t len, int enrich)
{
    struct torii_errbuf eb = {{0}};
    json_t *in = NULL;
    json_t *res = NULL;
    char *id = NULL; /* a copy: replacing the entity's "id" member would free the original */
    const char *verb = "updated";
    int status = 200;
    int rc = certs_parse_json(line, len, &in, &eb);

    if (rc == TORII_OK && !json_is_object(in)) {
        rc = torii_errf(&eb, TORII_EINVAL, "each line must be a JSON object");
    }
    if (rc == TORII_OK) {
        if (json_is_string(json_object_get(in, "id"))) {
            id = torii_xstrdup(certs_jstr(in, "id"));
        }
        rc = certs_bulk_exec(ctx, method, in, &id, enrich, &status, &verb, &eb);
    }
    if (rc == TORII_OK) {
        res = json_pack("{s:i, s:b, s:s}", "status", status, verb, 1, "id", id);
    } else {
        res = json_pack("{s:i, s:s, s:s}", "status", certs_status_of(rc), "error",
                        certs_bulk_code(rc), "error_description", eb.msg);
        if (res != NULL && id != NULL) {
            (void)json_object_set_new(res, "id", json_string(id));
        }
    }
    free(id);
    json_decref(in);
    return res;
}

static void certs_bulk_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                             const struct certs_query *q, struct torii_admin_reply *reply)
{
    struct certs_buf out = {NULL, 0, 0};
    const char *body = (const char *)req->body;
    size_t len = req->body != NULL ? req->body_len : 0;
    int enrich = certs_enrich_wanted(q);
    size_t i = 0;

    if (!certs_media_type_is(req, "Content-Type", CERTS_NDJSON)
        && !(certs_method_is(req, "DELETE")
             && certs_media_type_is(req, "X-Content-Type", CERTS_NDJSON))) {
        certs_reply_json(reply, 400,
                         json_pack("{s:s, s:s}", "error", "bad_content_type", "error_description",
                                   "Unsupported content type, expected " CERTS_NDJSON));
        return;
    }
    while (i < len) {
        size_t end = i;
        size_t n = 0;
        size_t blank = 1;

        while (end < len && body[end] != '\n') {
            end++;
        }
        n = end - i;
        if (n > 0 && body[i + n - 1] == '\r') {
            n--;
        }
        for (size_t k = 0; k < n && blank; k++) {
            blank = body[i + k] == ' ' || body[i + k] == '\t';
        }
        if (!blank) {
            certs_buf_add_json(&out, certs_bulk_line(ctx, req->method, body + i, n, enrich));
        }
        i = end + 1;
    }
    json_decref(reply->json);
    reply->json = NULL;
    reply->status = 200;
    reply->raw = out.p != NULL ? out.p : torii_xstrdup("");
    reply->raw_len = out.len;
    reply->content_type = CERTS_NDJSON;
}

/* ---- routing ---- */

static void certs_route_id(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           const char *id, const struct certs_query *q,
                           struct torii_admin_reply *reply)
{
    if (certs_is_get(req)) {
        certs_get_reply(ctx, id, q, reply);
    } else if (certs_method_is(req, "PUT")) {
        certs_put_reply(ctx, req, id, q, reply);
    } else if (certs_method_is(req, "PATCH")) {
        certs_patch_reply(ctx, req, id, q, reply);
    } else if (certs_method_is(req, "DELETE")) {
        certs_delete_reply(ctx, id, reply);
    } else {
        certs_method_not_allowed(reply, CERTS_ALLOW_ONE);
    }
}

static int certs_seg_is(struct torii_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
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
        return certs_seg_is(p->seg2, "_renew");
    }
    return certs_seg_is(p->seg1, "_renew") || certs_seg_is(p->seg1, "_bundle");
}

/* /:id and /:id/valid */
static void certs_route_entity(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                               const struct certs_path *p, const struct certs_query *q,
                               struct torii_admin_reply *reply)
{
    char *id = NULL;

    if (p->has_seg2 && !certs_seg_is(p->seg2, "valid")) {
        admin_reply_error(reply, 404, "resource not found");
        return;
    }
    if (certs_pct_decode(p->seg1.ptr, p->seg1.len, 0, &id) != TORII_OK || !certs_id_ok(id)) {
        /* No stored entity can carry such an id. */
        admin_reply_error(reply, 404, "entity not found");
    } else if (!p->has_seg2) {
        certs_route_id(ctx, req, id, q, reply);
    } else if (certs_is_get(req)) {
        certs_valid_reply(ctx, id, reply);
    } else {
        certs_method_not_allowed(reply, CERTS_ALLOW_GET);
    }
    free(id);
}

static void certs_dispatch(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           const struct certs_path *p, const struct certs_query *q,
                           struct torii_admin_reply *reply)
{
    int special = !p->has_seg2;

    if (special && p->seg1.len == 0) {
        if (certs_is_get(req)) {
            certs_list_reply(ctx, q, reply);
        } else if (certs_method_is(req, "POST")) {
            certs_create_reply(ctx, req, q, reply);
        } else {
            certs_method_not_allowed(reply, CERTS_ALLOW_COLL);
        }
    } else if (special && certs_seg_is(p->seg1, "_template")) {
        if (certs_is_get(req)) {
            certs_template_reply(q, reply);
        } else {
            certs_method_not_allowed(reply, CERTS_ALLOW_GET);
        }
    } else if (special && certs_seg_is(p->seg1, "_bulk")) {
        if (certs_method_is(req, "POST") || certs_method_is(req, "PUT")
            || certs_method_is(req, "PATCH") || certs_method_is(req, "DELETE")) {
            certs_bulk_reply(ctx, req, q, reply);
        } else {
            certs_method_not_allowed(reply, CERTS_ALLOW_BULK);
        }
    } else {
        certs_route_entity(ctx, req, p, q, reply);
    }
}

int admin_certs_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply)
{
    struct certs_query q = {NULL, 0};
    struct certs_path p;

    if (certs_path_split(req->path, &p) != TORII_OK || certs_path_is_sibling(&p)) {
        return TORII_ENOTFOUND;
    }
    if (certs_query_parse(req->query, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid percent-encoding in the query string");
        return TORII_OK;
    }
    certs_dispatch(ctx, req, &p, &q, reply);
    certs_query_clear(&q);
    return TORII_OK;
}
