/* acme.c - the ACME admin routes (docs/acme.md, docs/api.md):
 *   POST /api/pki/certs/_letencrypt   (the reference's spelling) and
 *   POST /api/pki/certs/_letsencrypt  {"host": ...} or {"hosts": [...]}: an order for those
 *        names; ?async=true answers 202 with the job at once
 *   GET  /api/pki/acme/jobs/:id       a job's state, its certificate id or its error
 * Orders run on the ACME thread (acme.h); this thread only queues them and reads their state.
 * Threads: admin thread only, except torii_admin_set_acme (main thread, before
 * torii_admin_start and after torii_admin_stop). */
#include "torii/acme.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "torii/admin.h"

#define ACME_JOBS_PREFIX "/api/pki/acme/jobs/"

/* Set by the main thread while no admin thread runs; the thread start/join orders it. */
static struct torii_acme *admin_acme;

void torii_admin_set_acme(struct torii_acme *a)
{
    admin_acme = a;
}

struct torii_acme *admin_acme_get(void)
{
    return admin_acme;
}

static int acme_route_is_order(const struct torii_http_req *req)
{
    return admin_req_path_is(req, "/api/pki/certs/_letencrypt")
           || admin_req_path_is(req, "/api/pki/certs/_letsencrypt");
}

/* Queue the order of req's body; *job gets the job's state. 0 with reply filled on error. */
static int acme_route_submit(const struct torii_http_req *req, json_t **job,
                             struct torii_admin_reply *reply)
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
        rc = torii_acme_submit(admin_acme, hosts, NULL, id, &eb);
    }
    if (rc == TORII_OK) {
        rc = torii_acme_job_get(admin_acme, id, job);
    }
    json_decref(hosts);
    json_decref(body);
    if (rc != TORII_OK) {
        admin_reply_error(reply, rc == TORII_ETOOBIG ? 503 : 400, "%s",
                          eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc));
        return 0;
    }
    return 1;
}

static void acme_route_order(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                             struct torii_admin_reply *reply)
{
    struct admin_req_query q = {NULL, 0};
    static const char *const allowed[] = {"async", NULL};
    struct torii_errbuf eb = {{0}};
    json_t *job = NULL;

    if (admin_req_query_parse(req->query, 4, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid query string");
        return;
    }
    if (admin_req_query_check(&q, allowed, &eb) != TORII_OK
        || admin_req_query_bool_check(&q, "async", &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
        admin_req_query_clear(&q);
        return;
    }
    if (acme_route_submit(req, &job, reply)) {
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
}

int admin_acme_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                     struct torii_admin_reply *reply)
{
    const size_t plen = sizeof(ACME_JOBS_PREFIX) - 1;
    int jobs = req->path.len > plen && memcmp(req->path.ptr, ACME_JOBS_PREFIX, plen) == 0;
    char *id = NULL;
    json_t *job = NULL;

    if (!jobs && !acme_route_is_order(req)) {
        return TORII_ENOTFOUND;
    }
    if (admin_acme == NULL) {
        admin_reply_error(reply, 503, "ACME is not configured (acme.directory_url)");
        return TORII_OK;
    }
    if (!jobs) {
        if (!admin_req_method_is(req, "POST")) {
            admin_reply_method_not_allowed(reply, "POST");
        } else {
            acme_route_order(ctx, req, reply);
        }
        return TORII_OK;
    }
    if (!admin_req_is_get(req)) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
    } else if (admin_req_id_decode(req->path.ptr + plen, req->path.len - plen, 64, &id) != TORII_OK
               || torii_acme_job_get(admin_acme, id, &job) != TORII_OK) {
        admin_reply_error(reply, 404, "no ACME job with this id");
    } else {
        reply->status = 200;
        reply->json = job;
    }
    free(id);
    return TORII_OK;
}
