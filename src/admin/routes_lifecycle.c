/* routes_lifecycle.c - admin routes of the certificate lifecycle:
 *   POST /api/certificates/_renew       every due certificate now (a full renewal cycle), or
 *                                       the ids given in the body as a JSON array of strings
 *   POST /api/certificates/:id/_renew   that certificate, due or not -> 200 renewed entity
 *   GET  /metrics                       Prometheus text format (authenticated like the API)
 *   POST /api/_debug/clock              {"offset_ms": N}: shift torii's clock (only when the
 *                                       config sets debug.clock_hook; 404 otherwise)
 * Renewals run on the renewal thread; this (admin) thread hands them over and waits.
 * The renewal thread comes with the context (torii_admin_opts.renewer; NULL: 503).
 * Threads: admin thread only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_routes.h"
#include "torii/acme.h"
#include "torii/admin.h"
#include "torii/certstats.h"
#include "torii/clock.h"
#include "torii/jwt.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/renew.h"

#define LIFECYCLE_CERTS_PREFIX "/api/certificates/"
#define LIFECYCLE_TIMEOUT_MS   120000

/* Hand id (one certificate) or ids (NULL: a full cycle) to the renewal thread and reply with
 * its result. */
static void lifecycle_request(struct torii_renewer *renewer, const char *id, const json_t *ids,
                              struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *res = NULL;
    int rc;

    if (renewer == NULL) {
        admin_reply_error(reply, 503, "the renewal thread is not running");
        return;
    }
    rc = torii_renewer_request(renewer, id, ids, LIFECYCLE_TIMEOUT_MS, &res, &eb);
    if (rc == TORII_OK) {
        reply->status = 200;
        reply->json = res;
    } else {
        admin_reply_error(reply, admin_status_of(rc), "%s",
                          eb.msg[0] ? eb.msg : torii_strerror(rc));
    }
}

/* POST /api/certificates/:id/_renew */
static void lifecycle_renew_one(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                                const char *seg, size_t len, struct torii_admin_reply *reply)
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
    lifecycle_request(ctx->renewer, id, NULL, reply);
    free(id);
}

/* POST /api/certificates/_renew */
int admin_lc_renew_all(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                       struct torii_admin_reply *reply)
{
    json_t *ids = NULL;
    json_error_t jerr;
    size_t i;
    json_t *v;

    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    if (req->body_len > 0) {
        ids = admin_req_json_load(req->body, req->body_len, ADMIN_REQ_JSON_ANY, &jerr);
        if (ids == NULL) {
            admin_reply_error(reply, 400, "invalid JSON: %s", jerr.text);
            return TORII_OK;
        }
        if (json_is_null(ids)) {
            json_decref(ids);
            ids = NULL;
        } else if (!json_is_array(ids)) {
            admin_reply_error(reply, 400, "expected a JSON array of certificate ids");
            json_decref(ids);
            return TORII_OK;
        }
        json_array_foreach (ids, i, v) {
            if (!json_is_string(v) || json_string_length(v) == 0
                || json_string_length(v) > TORII_STORE_ID_MAX) {
                admin_reply_error(reply, 400, "element %zu: expected a certificate id", i);
                json_decref(ids);
                return TORII_OK;
            }
        }
    }
    lifecycle_request(ctx->renewer, NULL, ids, reply);
    json_decref(ids);
    return TORII_OK;
}

/* ---- /metrics ------------------------------------------------------------------------- */

int admin_lc_metrics(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                     struct torii_admin_reply *reply)
{
    struct torii_prom out = {0};
    struct torii_store_stat st;

    if (!admin_req_method_is(req, "GET")) {
        admin_reply_method_not_allowed(reply, "GET");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    torii_prom_counters(&out);
    torii_jwt_metrics_write(&out);
    torii_acme_metrics_write(ctx->acme, &out);
    /* The certificate gauges were computed when the store changed: no entity is parsed. */
    if (ctx->certstats != NULL) {
        torii_certstats_write(ctx->certstats, torii_clock_now_ms(), &out);
    }
    /* Names, types and keys below are constants: formatting them cannot fail. */
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
    torii_prom_clear(&out);
    return TORII_OK;
}

/* ---- debug clock ---------------------------------------------------------------------- */

int admin_lc_debug_clock(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply)
{
    json_t *body;
    json_t *off;
    json_error_t jerr;

    if (ctx->cfg == NULL || !ctx->cfg->debug_clock_hook) {
        admin_reply_error(reply, 404, "not found");
        return TORII_OK;
    }
    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    body = admin_req_json_load(req->body, req->body_len, 0, &jerr);
    off = json_object_get(body, "offset_ms");
    if (!json_is_integer(off) || json_object_size(body) != 1) {
        admin_reply_error(reply, 400, "expected {\"offset_ms\": <integer>}");
        json_decref(body);
        return TORII_OK;
    }
    torii_clock_set_offset_ms((int64_t)json_integer_value(off));
    torii_log(TORII_LOG_WARN, "admin: debug clock offset set (offset_ms=%lld peer=%s)",
              (long long)json_integer_value(off), req->peer);
    reply->status = 200;
    reply->json = json_pack("{s:I, s:I}", "offset_ms", json_integer_value(off), "now_ms",
                            (json_int_t)torii_clock_now_ms());
    json_decref(body);
    return TORII_OK;
}

/* /api/certificates/:id/_renew (the path matched the row's pattern: one id segment). */
int admin_lc_renew_one(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                       struct torii_admin_reply *reply)
{
    static const char suffix[] = "/_renew";
    const size_t plen = strlen(LIFECYCLE_CERTS_PREFIX);
    const size_t slen = sizeof(suffix) - 1;

    if (req->path.len <= plen + slen) {
        return TORII_ENOTFOUND;
    }
    lifecycle_renew_one(ctx, req, req->path.ptr + plen, req->path.len - plen - slen, reply);
    return TORII_OK;
}
