/* acme.c - the ACME admin routes (docs/acme.md, docs/api.md), rows of the route table
 * (routes.c, scope pki):
 *   POST /api/pki/certs/_letencrypt   (the reference's spelling) and
 *   POST /api/pki/certs/_letsencrypt  {"host": ...} or {"hosts": [...]}: an order for those
 *        names; ?async=true answers 202 with the job at once
 *   GET  /api/pki/acme/jobs/:id       a job's state, its certificate id or its error
 * Orders run on the ACME thread (acme.h); this thread only queues them and reads their state.
 * The service comes with the context (torii_admin_opts.acme; NULL: 503).
 * Threads: admin thread only. */
#include "torii/acme.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_routes.h"

#define ACME_JOBS_PREFIX "/api/pki/acme/jobs/"

/* Queue the order of req's body; *job gets the job's state. 0 with reply filled on error. */
static int acme_route_submit(struct torii_acme *acme, const struct torii_http_req *req,
                             json_t **job, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *body = NULL;
    json_t *hosts = NULL;
    char id[33];
    int rc;

    rc = admin_req_json_parse(req->body, req->body_len, 0, &body, &eb);
    if (rc == TORII_OK) {
        rc = torii_acme_hosts_parse(body, &hosts, &eb);
    }
    if (rc == TORII_OK) {
        rc = torii_acme_submit(acme, hosts, NULL, id, &eb);
    }
    if (rc == TORII_OK) {
        rc = torii_acme_job_get(acme, id, job);
    }
    json_decref(hosts);
    json_decref(body);
    if (rc != TORII_OK) {
        admin_reply_error(reply, admin_status_of(rc), "%s",
                          eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc));
        return 0;
    }
    return 1;
}

/* 503 when no ACME service runs; 1 when it does. */
static int acme_route_configured(const struct torii_admin_ctx *ctx, struct torii_admin_reply *reply)
{
    if (ctx->acme == NULL) {
        admin_reply_error(reply, admin_status_of(TORII_EAGAIN),
                          "ACME is not configured (acme.directory_url)");
        return 0;
    }
    return 1;
}

int admin_acme_order_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           struct torii_admin_reply *reply)
{
    struct admin_req_query q = {NULL, 0};
    static const char *const allowed[] = {"async", NULL};
    struct torii_errbuf eb = {{0}};
    json_t *job = NULL;

    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return TORII_OK;
    }
    if (!acme_route_configured(ctx, reply)) {
        return TORII_OK;
    }
    if (admin_req_query_parse(req->query, 4, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid query string");
        return TORII_OK;
    }
    if (admin_req_query_check(&q, allowed, &eb) != TORII_OK
        || admin_req_query_bool_check(&q, "async", &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
    } else if (acme_route_submit(ctx->acme, req, &job, reply)) {
        if (admin_req_query_bool(&q, "async", 0)) {
            reply->status = 202;
            reply->json = job;
            job = NULL;
        } else {
            admin_acme_wait(ctx, json_string_value(json_object_get(job, "id")), reply);
        }
    }
    json_decref(job);
    admin_req_query_clear(&q);
    return TORII_OK;
}

int admin_acme_job_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply)
{
    const size_t plen = sizeof(ACME_JOBS_PREFIX) - 1;
    char *id = NULL;
    json_t *job = NULL;

    if (req->path.len <= plen || memcmp(req->path.ptr, ACME_JOBS_PREFIX, plen) != 0) {
        return TORII_ENOTFOUND;
    }
    if (!admin_req_is_get(req)) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
    } else if (acme_route_configured(ctx, reply)) {
        if (admin_req_id_decode(req->path.ptr + plen, req->path.len - plen, 64, &id) != TORII_OK
            || torii_acme_job_get(ctx->acme, id, &job) != TORII_OK) {
            admin_reply_error(reply, admin_status_of(TORII_ENOTFOUND), "no ACME job with this id");
        } else {
            reply->status = 200;
            reply->json = job;
        }
    }
    free(id);
    return TORII_OK;
}
