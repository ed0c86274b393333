/* gw.c - the etcd v3 JSON gateway's response bodies, parsed without trusting a byte: int64
 * fields come as decimal strings (or numbers), keys and values as base64, proto3 defaults
 * (false, 0, empty) are omitted. Anything else is TORII_EPROTO naming the member.
 * Threads: any (pure). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fleet_int.h"
#include "torii/codec.h"
#include "torii/fleet.h"
#include "torii/mem.h"

#define GW_MAX_BODY ((size_t)1 << 30)

static int gw_load(const char *body, size_t len, json_t **out, struct torii_errbuf *eb)
{
    json_error_t jerr;

    if (body == NULL || len == 0 || len > GW_MAX_BODY) {
        return torii_errf(eb, TORII_EPROTO, "etcd: empty or oversized response body");
    }
    *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*out == NULL || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return torii_errf(eb, TORII_EPROTO, "etcd: response is not a JSON object (%.80s)",
                          jerr.text);
    }
    return TORII_OK;
}

/* An int64 member: a decimal string (the gateway's form) or an integer; absent is 0. */
static int gw_i64(const json_t *o, const char *k, int64_t *out, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, k);
    const char *s = json_string_value(v);
    char *end = NULL;
    long long x;

    *out = 0;
    if (v == NULL) {
        return TORII_OK;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return TORII_OK;
    }
    if (s == NULL || s[0] == '\0' || strlen(s) > 20) {
        return torii_errf(eb, TORII_EPROTO, "etcd: member \"%s\" is not an integer", k);
    }
    x = strtoll(s, &end, 10);
    if (*end != '\0' || x == LLONG_MAX || x == LLONG_MIN) {
        return torii_errf(eb, TORII_EPROTO, "etcd: member \"%s\" is not an integer", k);
    }
    *out = (int64_t)x;
    return TORII_OK;
}

int fleet_gw_i64(const json_t *o, const char *k, int64_t *out, struct torii_errbuf *eb)
{
    return gw_i64(o, k, out, eb);
}

/* A boolean member; absent is 0. */
static int gw_bool(const json_t *o, const char *k, int *out, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, k);

    *out = 0;
    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_boolean(v)) {
        return torii_errf(eb, TORII_EPROTO, "etcd: member \"%s\" is not a boolean", k);
    }
    *out = json_is_true(v);
    return TORII_OK;
}

/* A base64 member decoded (NUL-terminated); absent: *out = NULL unless want_empty. */
static int gw_b64(const json_t *o, const char *k, int want_empty, char **out, size_t *len,
                  struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, k);
    unsigned char *buf = NULL;

    *out = NULL;
    *len = 0;
    if (v == NULL) {
        if (want_empty) {
            *out = torii_xstrdup("");
        }
        return TORII_OK;
    }
    if (!json_is_string(v)
        || torii_b64_decode(json_string_value(v), json_string_length(v), &buf, len) != TORII_OK) {
        return torii_errf(eb, TORII_EPROTO, "etcd: member \"%s\" is not base64", k);
    }
    *out = (char *)buf;
    return TORII_OK;
}

/* The revisions and the lease of a kv. */
static int gw_kv_ints(const json_t *o, struct torii_fleet_kv *kv, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(gw_i64(o, "mod_revision", &kv->mod_rev, eb));
    TORII_TRY(gw_i64(o, "create_revision", &kv->create_rev, eb));
    TORII_TRY(gw_i64(o, "lease", &kv->lease, eb));
out:
    return rc;
}

static int gw_kv(const json_t *o, struct torii_fleet_kv *kv, int with_value,
                 struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_ENSURE(json_is_object(o), torii_errf(eb, TORII_EPROTO, "etcd: a kv is not an object"));
    TORII_TRY(gw_b64(o, "key", 0, &kv->key, &kv->key_len, eb));
    TORII_ENSURE(kv->key != NULL && kv->key_len > 0 && memchr(kv->key, 0, kv->key_len) == NULL,
                 torii_errf(eb, TORII_EPROTO, "etcd: a kv has no key or a key with a NUL"));
    TORII_TRY(gw_kv_ints(o, kv, eb));
    if (with_value) {
        TORII_TRY(gw_b64(o, "value", 1, &kv->val, &kv->val_len, eb));
    }
out:
    return rc;
}

static void gw_kv_clear(struct torii_fleet_kv *kv)
{
    free(kv->key);
    if (kv->val != NULL) {
        torii_secure_free(kv->val, kv->val_len);
    }
    memset(kv, 0, sizeof(*kv));
}

static int gw_header_rev(const json_t *root, int64_t *rev, struct torii_errbuf *eb)
{
    const json_t *h = json_object_get(root, "header");

    if (!json_is_object(h)) {
        return torii_errf(eb, TORII_EPROTO, "etcd: response without a header");
    }
    return gw_i64(h, "revision", rev, eb);
}

int torii_fleet_gw_error(const char *body, size_t len, struct torii_errbuf *eb)
{
    json_t *root = NULL;
    const json_t *e;
    const char *msg;
    int64_t code = 0;
    int rc = TORII_ENOTFOUND;

    if (gw_load(body, len, &root, NULL) != TORII_OK) {
        goto out;
    }
    e = json_is_object(json_object_get(root, "error")) ? json_object_get(root, "error") : root;
    msg = json_string_value(json_object_get(e, "message"));
    if (msg == NULL) {
        msg = json_string_value(json_object_get(e, "error"));
    }
    if (msg == NULL
        || gw_i64(e, json_object_get(e, "grpc_code") != NULL ? "grpc_code" : "code", &code, NULL)
               != TORII_OK) {
        goto out;
    }
    (void)torii_errf(eb, TORII_EPROTO, "etcd: %.200s (code %lld)", msg, (long long)code);
    if (code == 11 || strstr(msg, "compacted") != NULL) {
        rc = TORII_ECONFLICT;
    } else if (code == 7 || code == 16) {
        rc = TORII_EPERM;
    } else if (code == 4 || code == 14) {
        rc = TORII_EAGAIN;
    } else {
        rc = TORII_EPROTO;
    }
out:
    json_decref(root);
    return rc;
}

/* A unary answer: its error (torii_fleet_gw_error's code), or the object and its revision. */
static int gw_begin(const char *body, size_t len, json_t **root, int64_t *rev,
                    struct torii_errbuf *eb)
{
    int rc = torii_fleet_gw_error(body, len, eb);

    if (rc != TORII_ENOTFOUND) {
        return rc;
    }
    rc = gw_load(body, len, root, eb);
    return rc == TORII_OK ? gw_header_rev(*root, rev, eb) : rc;
}

void torii_fleet_range_clear(struct torii_fleet_range *r)
{
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        gw_kv_clear(&r->kvs[i]);
    }
    if (r != NULL) {
        free(r->kvs);
        memset(r, 0, sizeof(*r));
    }
}

static int gw_range_obj(const json_t *o, struct torii_fleet_range *out, struct torii_errbuf *eb)
{
    const json_t *kvs = json_object_get(o, "kvs");
    int rc = TORII_OK;

    TORII_TRY(gw_bool(o, "more", &out->more, eb));
    TORII_TRY(gw_i64(o, "count", &out->count, eb));
    TORII_ENSURE(kvs == NULL || json_is_array(kvs),
                 torii_errf(eb, TORII_EPROTO, "etcd: member \"kvs\" is not an array"));
    if (kvs != NULL && json_array_size(kvs) > 0) {
        out->kvs = torii_xcalloc(json_array_size(kvs), sizeof(*out->kvs));
        for (size_t i = 0; i < json_array_size(kvs); i++) {
            out->n = i + 1;
            TORII_TRY(gw_kv(json_array_get(kvs, i), &out->kvs[i], 1, eb));
        }
    }
out:
    return rc;
}

int torii_fleet_gw_range_parse(const char *body, size_t len, struct torii_fleet_range *out,
                               struct torii_errbuf *eb)
{
    json_t *root = NULL;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(gw_begin(body, len, &root, &out->rev, eb));
    TORII_TRY(gw_range_obj(root, out, eb));
out:
    json_decref(root);
    if (rc != TORII_OK) {
        torii_fleet_range_clear(out);
    }
    return rc;
}

void torii_fleet_txn_clear(struct torii_fleet_txn *t)
{
    if (t != NULL) {
        free(t->counts);
        memset(t, 0, sizeof(*t));
    }
}

/* One member of "responses": the key count of a response_range, -1 for other kinds. */
static int gw_txn_resp(const json_t *r, int64_t *count, struct torii_errbuf *eb)
{
    const json_t *rr = json_object_get(r, "response_range");

    *count = -1;
    if (!json_is_object(r)) {
        return torii_errf(eb, TORII_EPROTO, "etcd: a txn response is not an object");
    }
    if (rr == NULL) {
        return TORII_OK;
    }
    if (!json_is_object(rr)) {
        return torii_errf(eb, TORII_EPROTO, "etcd: response_range is not an object");
    }
    return gw_i64(rr, "count", count, eb);
}

static int gw_txn_resps(const json_t *resp, struct torii_fleet_txn *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_ENSURE(resp == NULL || json_is_array(resp),
                 torii_errf(eb, TORII_EPROTO, "etcd: member \"responses\" is not an array"));
    if (resp != NULL && json_array_size(resp) > 0) {
        out->counts = torii_xcalloc(json_array_size(resp), sizeof(*out->counts));
        for (size_t i = 0; i < json_array_size(resp); i++) {
            out->n = i + 1;
            TORII_TRY(gw_txn_resp(json_array_get(resp, i), &out->counts[i], eb));
        }
    }
out:
    return rc;
}

int torii_fleet_gw_txn_parse(const char *body, size_t len, struct torii_fleet_txn *out,
                             struct torii_errbuf *eb)
{
    json_t *root = NULL;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(gw_begin(body, len, &root, &out->rev, eb));
    TORII_TRY(gw_bool(root, "succeeded", &out->succeeded, eb));
    TORII_TRY(gw_txn_resps(json_object_get(root, "responses"), out, eb));
out:
    json_decref(root);
    if (rc != TORII_OK) {
        torii_fleet_txn_clear(out);
    }
    return rc;
}

void torii_fleet_watch_clear(struct torii_fleet_watch *w)
{
    for (size_t i = 0; w != NULL && i < w->n; i++) {
        gw_kv_clear(&w->ev[i].kv);
    }
    if (w != NULL) {
        free(w->ev);
        memset(w, 0, sizeof(*w));
    }
}

static int gw_event(const json_t *e, struct torii_fleet_event *ev, struct torii_errbuf *eb)
{
    const json_t *type = json_object_get(e, "type");
    const char *t = json_string_value(type);

    if (!json_is_object(e)) {
        return torii_errf(eb, TORII_EPROTO, "etcd: a watch event is not an object");
    }
    if (type != NULL && (t == NULL || (strcmp(t, "PUT") != 0 && strcmp(t, "DELETE") != 0))) {
        return torii_errf(eb, TORII_EPROTO, "etcd: a watch event has an unknown type");
    }
    ev->deleted = t != NULL && strcmp(t, "DELETE") == 0;
    return gw_kv(json_object_get(e, "kv"), &ev->kv, !ev->deleted, eb);
}

static int gw_events(const json_t *evs, struct torii_fleet_watch *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_ENSURE(evs == NULL || json_is_array(evs),
                 torii_errf(eb, TORII_EPROTO, "etcd: member \"events\" is not an array"));
    if (evs != NULL && json_array_size(evs) > 0) {
        out->ev = torii_xcalloc(json_array_size(evs), sizeof(*out->ev));
        for (size_t i = 0; i < json_array_size(evs); i++) {
            out->n = i + 1;
            TORII_TRY(gw_event(json_array_get(evs, i), &out->ev[i], eb));
        }
    }
out:
    return rc;
}

static int gw_watch_result(const json_t *res, struct torii_fleet_watch *out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(gw_header_rev(res, &out->rev, eb));
    TORII_TRY(gw_bool(res, "created", &out->created, eb));
    TORII_TRY(gw_bool(res, "canceled", &out->canceled, eb));
    TORII_TRY(gw_i64(res, "compact_revision", &out->compact_rev, eb));
    TORII_TRY(gw_events(json_object_get(res, "events"), out, eb));
out:
    return rc;
}

int torii_fleet_gw_watch_parse(const char *line, size_t len, struct torii_fleet_watch *out,
                               struct torii_errbuf *eb)
{
    json_t *root = NULL;
    const json_t *res;
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    TORII_TRY(gw_load(line, len, &root, eb));
    res = json_object_get(root, "result");
    if (!json_is_object(res)) {
        rc = torii_fleet_gw_error(line, len, eb);
        rc = rc == TORII_ENOTFOUND
                 ? torii_errf(eb, TORII_EPROTO, "etcd: watch message without a result")
                 : rc;
        goto out;
    }
    TORII_TRY(gw_watch_result(res, out, eb));
out:
    json_decref(root);
    if (rc != TORII_OK) {
        torii_fleet_watch_clear(out);
    }
    return rc;
}

char *torii_fleet_prefix_end(const char *prefix, size_t plen, size_t *len)
{
    char *end = torii_xmalloc(plen + 1);

    memcpy(end, prefix, plen);
    end[plen] = '\0';
    for (size_t i = plen; i > 0; i--) {
        if ((unsigned char)end[i - 1] != 0xff) {
            end[i - 1] = (char)((unsigned char)end[i - 1] + 1);
            *len = i;
            return end;
        }
    }
    end[0] = '\0';
    *len = 1;
    return end;
}
