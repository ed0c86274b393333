/* request.c - request helpers shared by the admin route files (routes_*.c, certs_*.c):
 * method, path and media-type tests, query strings and percent-decoding,
 * entity ids, JSON bodies (duplicate keys rejected, depth bounded), wiping string buffers.
 * Stored certificates are read and written through certdb (torii/certdb.h).
 * Threads: any thread (pure over their arguments; the store calls are any-thread). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "jsonpatch.h"
#include "torii/codec.h"
#include "torii/err.h"
#include "torii/log.h"
#include "torii/mem.h"

/* ---- method, path, headers ---- */

int admin_req_method_is(const struct torii_http_req *req, const char *method)
{
    return strcmp(req->method, method) == 0;
}

int admin_req_is_get(const struct torii_http_req *req)
{
    return admin_req_method_is(req, "GET") || admin_req_method_is(req, "HEAD");
}

int admin_req_slice_is(struct torii_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

int admin_req_path_is(const struct torii_http_req *req, const char *lit)
{
    return admin_req_slice_is(req->path, lit);
}

int admin_req_media_type_is(const struct torii_http_req *req, const char *name, const char *type)
{
    const struct torii_slice *v = torii_http_req_header(req, name);
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

/* ---- percent-decoding and ids ---- */

int admin_req_pct_decode(const char *s, size_t len, int plus_space, char **out)
{
    size_t n = 0;

    return torii_pct_decode(s, len, plus_space, out, &n);
}

int admin_req_utf8_ok(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len); /* jansson's own rule: what it accepts, it can hold */
    int ok = v != NULL;

    json_decref(v);
    return ok;
}

int admin_req_id_ok(const char *id, size_t max_len)
{
    size_t len = strlen(id);

    if (len == 0 || len > max_len) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c == 0x7f || c == '/') {
            return 0;
        }
    }
    return admin_req_utf8_ok(id, len);
}

int admin_req_id_decode(const char *s, size_t len, size_t max_len, char **out)
{
    char *id = NULL;

    if (admin_req_pct_decode(s, len, 0, &id) != TORII_OK) {
        return TORII_EINVAL;
    }
    if (!admin_req_id_ok(id, max_len)) {
        free(id);
        return TORII_EINVAL;
    }
    *out = id;
    return TORII_OK;
}

/* ---- query strings ---- */

void admin_req_query_clear(struct admin_req_query *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->p[i].k);
        admin_req_wipe_str(q->p[i].v); /* may be a password (p12, PEM bundle) */
    }
    TORII_FREE(q->p);
    q->n = 0;
}

/* Decode one "k=v" item (a key without '=' gets "") and append it to q. */
static int req_query_add(struct admin_req_query *q, size_t *cap, const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t klen = eq != NULL ? (size_t)(eq - item) : len;
    char *k = NULL;
    char *v = NULL;

    if (admin_req_pct_decode(item, klen, 1, &k) != TORII_OK) {
        return TORII_EINVAL;
    }
    if (admin_req_pct_decode(eq != NULL ? eq + 1 : "", eq != NULL ? len - klen - 1 : 0, 1, &v)
        != TORII_OK) {
        free(k);
        return TORII_EINVAL;
    }
    if (q->n == *cap) {
        *cap = *cap == 0 ? 8 : *cap * 2;
        q->p = torii_xrealloc(q->p, *cap * sizeof(*q->p));
    }
    q->p[q->n++] = (struct admin_req_param){k, v};
    return TORII_OK;
}

int admin_req_query_parse(struct torii_slice qs, size_t max, struct admin_req_query *out)
{
    int rc = TORII_OK;
    struct admin_req_query q = {NULL, 0};
    size_t cap = 0;
    size_t i = 0;

    while (i < qs.len) {
        const char *amp = memchr(qs.ptr + i, '&', qs.len - i);
        size_t end = amp != NULL ? (size_t)(amp - qs.ptr) : qs.len;

        if (end > i) {
            TORII_ENSURE(max == 0 || q.n < max, TORII_EINVAL);
            TORII_TRY(req_query_add(&q, &cap, qs.ptr + i, end - i));
        }
        i = end + 1;
    }
    *out = q;
    q.p = NULL;
    q.n = 0;
out:
    admin_req_query_clear(&q);
    return rc;
}

const char *admin_req_query_get(const struct admin_req_query *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->p[i].k, key) == 0) {
            return q->p[i].v;
        }
    }
    return NULL;
}

/* 1 when key is named by the allow-list: an exact entry, or an entry ending in '.' that is a
 * proper prefix of key ("filter." allows "filter.domain"). */
static int req_query_allowed(const char *key, const char *const *allowed)
{
    for (size_t i = 0; allowed != NULL && allowed[i] != NULL; i++) {
        size_t n = strlen(allowed[i]);

        if (n > 0 && allowed[i][n - 1] == '.') {
            if (strncmp(key, allowed[i], n) == 0 && key[n] != '\0') {
                return 1;
            }
        } else if (strcmp(key, allowed[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int admin_req_query_check(const struct admin_req_query *q, const char *const *allowed,
                          struct torii_errbuf *eb)
{
    char esc[128];

    for (size_t i = 0; i < q->n; i++) {
        const char *k = q->p[i].k;

        if (!req_query_allowed(k, allowed)) {
            return torii_errf(eb, TORII_EINVAL, "unknown query parameter '%s'",
                              torii_log_escape(k, strlen(k), esc, sizeof(esc)));
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(q->p[j].k, k) == 0) {
                return torii_errf(eb, TORII_EINVAL, "query parameter '%s' is given more than once",
                                  torii_log_escape(k, strlen(k), esc, sizeof(esc)));
            }
        }
    }
    return TORII_OK;
}

int admin_req_query_none(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    struct admin_req_query q = {NULL, 0};
    struct torii_errbuf eb = {{0}};

    if (req->query.len == 0) {
        return 1;
    }
    if (admin_req_query_parse(req->query, 0, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid percent-encoding in the query string");
        return 0;
    }
    if (admin_req_query_check(&q, NULL, &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
        admin_req_query_clear(&q);
        return 0;
    }
    admin_req_query_clear(&q);
    return 1;
}

int admin_req_query_bool_check(const struct admin_req_query *q, const char *key,
                               struct torii_errbuf *eb)
{
    const char *v = admin_req_query_get(q, key);

    if (v != NULL && strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        return torii_errf(eb, TORII_EINVAL, "query parameter '%s' must be true or false", key);
    }
    return TORII_OK;
}

int admin_req_query_bool(const struct admin_req_query *q, const char *key, int dflt)
{
    const char *v = admin_req_query_get(q, key);

    if (v == NULL) {
        return dflt;
    }
    return dflt ? strcmp(v, "false") != 0 : strcmp(v, "true") == 0;
}

/* ---- JSON bodies ---- */

json_t *admin_req_json_load(const void *buf, size_t len, unsigned flags, json_error_t *jerr)
{
    size_t jflags = JSON_REJECT_DUPLICATES;

    if ((flags & ADMIN_REQ_JSON_ANY) != 0) {
        jflags |= JSON_DECODE_ANY;
    }
    return json_loadb(buf != NULL ? (const char *)buf : "", buf != NULL ? len : 0, jflags, jerr);
}

int admin_req_json_parse(const void *buf, size_t len, unsigned flags, json_t **out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_error_t jerr;
    json_t *v = NULL;
    size_t depth = 0;

    if ((flags & ADMIN_REQ_JSON_EMPTY_OBJECT) != 0 && (buf == NULL || len == 0)) {
        v = json_object();
        TORII_ENSURE(v != NULL, TORII_ENOMEM);
    } else {
        v = admin_req_json_load(buf, len, flags, &jerr);
        TORII_ENSURE(v != NULL,
                     torii_errf(eb, TORII_EINVAL, "invalid JSON: %s (line %d, column %d)",
                                jerr.text, jerr.line, jerr.column));
    }
    TORII_TRY(admin_json_depth(v, &depth));
    TORII_ENSURE(
        depth <= ADMIN_JSON_MAX_DEPTH,
        torii_errf(eb, TORII_ETOOBIG, "JSON nested deeper than %d levels", ADMIN_JSON_MAX_DEPTH));
    *out = v;
    v = NULL;
out:
    json_decref(v);
    return rc;
}

/* ---- buffers ---- */

void admin_req_wipe_str(char *s)
{
    if (s != NULL) {
        torii_secure_free(s, strlen(s));
    }
}
