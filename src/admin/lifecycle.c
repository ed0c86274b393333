/* lifecycle.c - admin routes of the certificate lifecycle:
 *   POST /api/certificates/_renew       every due certificate now (a full renewal cycle), or
 *                                       the ids given in the body as a JSON array of strings
 *   POST /api/certificates/:id/_renew   that certificate, due or not -> 200 renewed entity
 *   GET  /metrics                       Prometheus text format (authenticated like the API)
 *   POST /api/_debug/clock              {"offset_ms": N}: shift torii's clock (only when the
 *                                       config sets debug.clock_hook; 404 otherwise)
 * Renewals run on the renewal thread; this (admin) thread hands them over and waits.
 * Threads: admin thread only, except torii_admin_set_renewer (main thread, before
 * torii_admin_start and after torii_admin_stop). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "torii/acme.h"
#include "torii/admin.h"
#include "torii/clock.h"
#include "torii/jwt.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/renew.h"

#define LIFECYCLE_CERTS_PREFIX "/api/certificates/"
#define LIFECYCLE_TIMEOUT_MS   120000

/* Set by the main thread while no admin thread runs (before start, after stop); read by the
 * admin thread. The thread start/join orders the accesses. */
static struct torii_renewer *lifecycle_renewer;

void torii_admin_set_renewer(struct torii_renewer *r)
{
    lifecycle_renewer = r;
}

static int lifecycle_status_of(int rc)
{
    switch (rc) {
    case TORII_EINVAL:
        return 400;
    case TORII_ENOTFOUND:
        return 404;
    case TORII_ECONFLICT:
        return 409;
    case TORII_EUNSUPPORTED:
        return 501;
    case TORII_EAGAIN:
        return 503;
    case TORII_ETIMEDOUT:
        return 504;
    default:
        return 500;
    }
}

/* Hand id (one certificate) or ids (NULL: a full cycle) to the renewal thread and reply with
 * its result. */
static void lifecycle_request(const char *id, const json_t *ids, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *res = NULL;
    int rc;

    if (lifecycle_renewer == NULL) {
        admin_reply_error(reply, 503, "the renewal thread is not running");
        return;
    }
    rc = torii_renewer_request(lifecycle_renewer, id, ids, LIFECYCLE_TIMEOUT_MS, &res, &eb);
    if (rc == TORII_OK) {
        reply->status = 200;
        reply->json = res;
    } else {
        admin_reply_error(reply, lifecycle_status_of(rc), "%s",
                          eb.msg[0] ? eb.msg : torii_strerror(rc));
    }
}

/* POST /api/certificates/:id/_renew */
static void lifecycle_renew_one(const struct torii_http_req *req, const char *seg, size_t len,
                                struct torii_admin_reply *reply)
{
    char *id = NULL;

    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return;
    }
    if (!admin_req_query_none(req, reply)) {
        return;
    }
    if (admin_req_id_decode(seg, len, TORII_STORE_ID_MAX, &id) != TORII_OK) {
        admin_reply_error(reply, 400,
                          "id: must be 1 to %d bytes of UTF-8 without control characters or '/'",
                          TORII_STORE_ID_MAX);
        return;
    }
    lifecycle_request(id, NULL, reply);
    free(id);
}

/* POST /api/certificates/_renew */
static void lifecycle_renew_many(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    json_t *ids = NULL;
    json_error_t jerr;
    size_t i;
    json_t *v;

    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return;
    }
    if (!admin_req_query_none(req, reply)) {
        return;
    }
    if (req->body_len > 0) {
        ids = admin_req_json_load(req->body, req->body_len, ADMIN_REQ_JSON_ANY, &jerr);
        if (ids == NULL) {
            admin_reply_error(reply, 400, "invalid JSON: %s", jerr.text);
            return;
        }
        if (json_is_null(ids)) {
            json_decref(ids);
            ids = NULL;
        } else if (!json_is_array(ids)) {
            admin_reply_error(reply, 400, "expected a JSON array of certificate ids");
            json_decref(ids);
            return;
        }
        json_array_foreach (ids, i, v) {
            if (!json_is_string(v) || json_string_length(v) == 0
                || json_string_length(v) > TORII_STORE_ID_MAX) {
                admin_reply_error(reply, 400, "element %zu: expected a certificate id", i);
                json_decref(ids);
                return;
            }
        }
    }
    lifecycle_request(NULL, ids, reply);
    json_decref(ids);
}

/* ---- /metrics ------------------------------------------------------------------------- */

struct lifecycle_metrics {
    struct torii_prom valid;     /* torii_certificate_valid samples */
    struct torii_prom not_after; /* torii_certificate_not_after_seconds samples */
    size_t n;
    size_t n_valid;
    int64_t now;
};

static int lifecycle_metrics_cb(const struct torii_store_rec *rec, void *arg)
{
    struct lifecycle_metrics *m = arg;
    json_t *e = json_loadb(rec->json, rec->json_len, 0, NULL);
    const char *dom;
    char *id;
    const char *labels[4];
    int64_t from;
    int64_t to;
    int valid;

    if (!json_is_object(e)) {
        json_decref(e);
        return TORII_OK;
    }
    id = torii_xstrndup(rec->id, rec->id_len);
    dom = json_string_value(json_object_get(e, "domain"));
    from = json_integer_value(json_object_get(e, "from"));
    to = json_integer_value(json_object_get(e, "to"));
    /* Current validity: the stored valid (key, chain) and the dates and revocation now. */
    valid = json_is_true(json_object_get(e, "valid"))
            && !json_is_true(json_object_get(e, "revoked")) && from <= m->now && m->now < to;
    labels[0] = "id";
    labels[1] = id;
    labels[2] = "domain";
    labels[3] = dom != NULL ? dom : "";
    if (torii_prom_sample(&m->not_after, "torii_certificate_not_after_seconds", labels, 2,
                          (double)to / 1000.0)
            != TORII_OK
        || torii_prom_sample(&m->valid, "torii_certificate_valid", labels, 2, valid ? 1 : 0)
               != TORII_OK) {
        torii_log(TORII_LOG_WARN, "admin: metrics: cannot format a sample");
    }
    m->n++;
    m->n_valid += valid ? 1 : 0;
    free(id);
    json_decref(e);
    return TORII_OK;
}

static void lifecycle_metrics_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                                    struct torii_admin_reply *reply)
{
    struct lifecycle_metrics m = {{0}, {0}, 0, 0, torii_clock_now_ms()};
    struct torii_prom out = {0};
    struct torii_store_stat st;
    static const char *const all[] = {"state", "all"};
    static const char *const valid[] = {"state", "valid"};
    int rc = TORII_OK;

    if (!admin_req_method_is(req, "GET")) {
        admin_reply_method_not_allowed(reply, "GET");
        return;
    }
    if (!admin_req_query_none(req, reply)) {
        return;
    }
    if (ctx->store != NULL) {
        rc = torii_store_foreach(ctx->store, TORII_STORE_CERTS, lifecycle_metrics_cb, &m);
    }
    if (rc != TORII_OK) {
        admin_reply_error(reply, 500, "cannot read the store: %s", torii_strerror(rc));
        goto out;
    }
    torii_prom_counters(&out);
    torii_jwt_metrics_write(&out);
    torii_acme_metrics_write(admin_acme_get(), &out);
    /* Names, types and keys below are constants: formatting them cannot fail. */
    TORII_ASSERT(torii_prom_family(&out, "torii_certificates", "gauge",
                                   "Certificates in the store (all, and valid now)")
                 == TORII_OK);
    TORII_ASSERT(torii_prom_sample(&out, "torii_certificates", all, 1, (double)m.n) == TORII_OK);
    TORII_ASSERT(torii_prom_sample(&out, "torii_certificates", valid, 1, (double)m.n_valid)
                 == TORII_OK);
    TORII_ASSERT(torii_prom_family(&out, "torii_certificate_not_after_seconds", "gauge",
                                   "notAfter of each certificate, in seconds since the epoch")
                 == TORII_OK);
    torii_prom_append(&out, &m.not_after);
    TORII_ASSERT(torii_prom_family(&out, "torii_certificate_valid", "gauge",
                                   "1 when the certificate is usable now (key and chain, within "
                                   "its dates, not revoked)")
                 == TORII_OK);
    torii_prom_append(&out, &m.valid);
    if (ctx->store != NULL && torii_store_stat_get(ctx->store, &st) == TORII_OK) {
        TORII_ASSERT(
            torii_prom_family(&out, "torii_store_map_bytes", "gauge", "LMDB map size in bytes")
            == TORII_OK);
        TORII_ASSERT(torii_prom_sample(&out, "torii_store_map_bytes", NULL, 0, (double)st.map_size)
                     == TORII_OK);
        TORII_ASSERT(torii_prom_family(&out, "torii_store_used_bytes", "gauge",
                                       "LMDB pages in use, in bytes")
                     == TORII_OK);
        TORII_ASSERT(
            torii_prom_sample(&out, "torii_store_used_bytes", NULL, 0, (double)st.used_bytes)
            == TORII_OK);
    }
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply->raw = torii_prom_take(&out, &reply->raw_len);
out:
    torii_prom_clear(&out);
    torii_prom_clear(&m.valid);
    torii_prom_clear(&m.not_after);
}

/* ---- debug clock ---------------------------------------------------------------------- */

static void lifecycle_debug_clock(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                                  struct torii_admin_reply *reply)
{
    json_t *body;
    json_t *off;
    json_error_t jerr;

    if (ctx->cfg == NULL || !ctx->cfg->debug_clock_hook) {
        admin_reply_error(reply, 404, "not found");
        return;
    }
    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return;
    }
    if (!admin_req_query_none(req, reply)) {
        return;
    }
    body = admin_req_json_load(req->body, req->body_len, 0, &jerr);
    off = json_object_get(body, "offset_ms");
    if (!json_is_integer(off) || json_object_size(body) != 1) {
        admin_reply_error(reply, 400, "expected {\"offset_ms\": <integer>}");
        json_decref(body);
        return;
    }
    torii_clock_set_offset_ms((int64_t)json_integer_value(off));
    torii_log(TORII_LOG_WARN, "admin: debug clock offset set (offset_ms=%lld peer=%s)",
              (long long)json_integer_value(off), req->peer);
    reply->status = 200;
    reply->json = json_pack("{s:I, s:I}", "offset_ms", json_integer_value(off), "now_ms",
                            (json_int_t)torii_clock_now_ms());
    json_decref(body);
}

int admin_lifecycle_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                          struct torii_admin_reply *reply)
{
    static const char suffix[] = "/_renew";
    const size_t plen = strlen(LIFECYCLE_CERTS_PREFIX);
    const size_t slen = sizeof(suffix) - 1;
    const char *p = req->path.ptr;
    size_t len = req->path.len;

    if (admin_req_path_is(req, "/metrics")) {
        lifecycle_metrics_reply(ctx, req, reply);
        return TORII_OK;
    }
    if (admin_req_path_is(req, "/api/_debug/clock")) {
        lifecycle_debug_clock(ctx, req, reply);
        return TORII_OK;
    }
    if (len < plen || memcmp(p, LIFECYCLE_CERTS_PREFIX, plen) != 0) {
        return TORII_ENOTFOUND;
    }
    p += plen;
    len -= plen;
    if (len == slen - 1 && memcmp(p, "_renew", slen - 1) == 0) {
        lifecycle_renew_many(req, reply);
        return TORII_OK;
    }
    /* ":id/_renew" with one segment before the suffix. */
    if (len > slen && memcmp(p + len - slen, suffix, slen) == 0
        && memchr(p, '/', len - slen) == NULL) {
        lifecycle_renew_one(req, p, len - slen, reply);
        return TORII_OK;
    }
    return TORII_ENOTFOUND;
}
