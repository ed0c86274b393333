/* certs_bulk.c - POST/PUT/PATCH/DELETE /api/certificates/_bulk (Otoroshi-compatible NDJSON,
 * reference 2.5; admin_certs.h). Every line is queued into one certdb batch, in order (a later
 * line sees an earlier one's effect), and committed in one durable transaction per request; a
 * failed line does not stop the others (certdb's TORII_CERTDB_PER_ITEM). Each input line gets
 * one result line, in order.
 * POST lines are prepared first (parsed, checked, chain and key parsed, signatures checked,
 * record built: torii_certdb_prepare, which reads nothing from the store) by a bounded pool:
 * the admin thread and up to CERTS_BULK_THREADS_MAX - 1 threads started for the request, one
 * per CPU the process may run on; then the admin thread queues them in input order (the id
 * checks and index entries need the order), as it queues the lines of the other methods. The
 * results are those of queueing line after line, byte for byte: a line's preparation depends
 * on that line alone. Threads: admin thread; the pool's threads run certs_bulk_prep_line
 * only, each on lines of its own, and are joined before the batch is queued. */
/* glibc feature macro (sched_getaffinity, CPU_COUNT): its name is not ours to choose */
#define _GNU_SOURCE /* NOLINT(readability-identifier-naming) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_certs.h"
#include "torii/certdb.h"
#include "torii/err.h"
#include "torii/log.h"
#include "torii/mem.h"

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
    struct torii_certdb_prep *prep; /* POST: prepared by the pool, until queued */
};

/* Queue one PUT, PATCH or DELETE of a parsed line object into b (POST lines go through the
 * pool: certs_bulk_prep_line). l->id is the line's id. */
static int certs_bulk_exec(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                           const char *method, json_t *in, int enrich, struct certs_bulk_line *l,
                           struct torii_errbuf *eb)
{
    json_t *patched = NULL;
    int rc = TORII_OK;

    l->item = torii_certdb_batch_size(b);
    if (l->id == NULL || !admin_req_id_ok(l->id, CERTS_ID_MAX)) {
        return torii_errf(eb, TORII_EINVAL, "id: missing or invalid");
    }
    l->status = 200;
    l->verb = "updated";
    if (strcmp(method, "PUT") == 0) {
        return admin_certs_op_replace(ctx, b, l->id, in, enrich, NULL, eb);
    }
    if (strcmp(method, "PATCH") == 0) {
        const json_t *patch = json_object_get(in, "patch");
        rc = admin_certs_op_patch(ctx, b, l->id, patch != NULL ? patch : json_null(), 0, enrich,
                                  &patched, eb);
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

/* A failed line: its result (reported as out of memory when even that cannot be made). */
static void certs_bulk_fail(struct certs_bulk_line *l, int rc, const char *msg)
{
    l->res = certs_bulk_error(rc, msg, l->id);
    if (l->res == NULL) {
        l->res = json_null();
    }
}

/* One NDJSON input line into the JSON object *in (the caller decrefs it); l->id from its "id". */
static int certs_bulk_parse(const char *line, size_t len, json_t **in, struct certs_bulk_line *l,
                            struct torii_errbuf *eb)
{
    int rc = admin_certs_parse_json(line, len, in, eb);

    if (rc == TORII_OK && !json_is_object(*in)) {
        rc = torii_errf(eb, TORII_EINVAL, "each line must be a JSON object");
    }
    if (rc == TORII_OK && json_is_string(json_object_get(*in, "id"))) {
        l->id = torii_xstrdup(certs_jstr(*in, "id"));
    }
    return rc;
}

/* One NDJSON input line: parsed and queued into b, or failed (l->res, reference 2.5 shapes). */
static void certs_bulk_line(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                            const char *method, const char *line, size_t len, int enrich,
                            struct certs_bulk_line *l)
{
    struct torii_errbuf eb = {{0}};
    json_t *in = NULL;
    int rc;

    memset(l, 0, sizeof(*l));
    l->verb = "updated";
    l->status = 200;
    rc = certs_bulk_parse(line, len, &in, l, &eb);
    if (rc == TORII_OK) {
        rc = certs_bulk_exec(ctx, b, method, in, enrich, l, &eb);
    }
    if (rc != TORII_OK) {
        certs_bulk_fail(l, rc, eb.msg);
    }
    json_decref(in);
}

/* ---- the preparation pool (POST) ---- */

#define CERTS_BULK_THREADS_MAX 8
/* Fewer lines than this per thread are not worth a thread. */
#define CERTS_BULK_LINES_PER_THREAD 16

struct certs_bulk_pool {
    const struct torii_store *st;
    const struct torii_slice *lines;
    struct certs_bulk_line *ls;
    size_t n;
    int enrich;
    atomic_size_t next; /* the next line to prepare */
};

/* One POST line parsed and prepared (l->prep), or failed (l->res): what certs_bulk_line and
 * certs_bulk_exec do before queueing, on any thread. l->id ends as the entity's id (the one
 * generated when it had none). */
static void certs_bulk_prep_line(const struct torii_store *st, const struct torii_slice *line,
                                 int enrich, struct certs_bulk_line *l)
{
    struct torii_errbuf eb = {{0}};
    json_t *in = NULL;
    int rc;

    l->verb = "created";
    l->status = 201;
    rc = certs_bulk_parse(line->ptr, line->len, &in, l, &eb);
    if (rc == TORII_OK) {
        rc = admin_certs_op_prepare_create(st, in, enrich, &l->prep, &eb);
        if (json_is_string(json_object_get(in, "id"))) {
            free(l->id);
            l->id = torii_xstrdup(certs_jstr(in, "id"));
        }
    }
    if (rc != TORII_OK) {
        certs_bulk_fail(l, rc, eb.msg);
    }
    json_decref(in);
}

static void *certs_bulk_pool_main(void *arg)
{
    struct certs_bulk_pool *p = arg;

    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);

        if (i >= p->n) {
            return NULL;
        }
        certs_bulk_prep_line(p->st, &p->lines[i], p->enrich, &p->ls[i]);
    }
}

/* Threads for n lines: want (0: one per CPU this process may run on), at most
 * CERTS_BULK_THREADS_MAX, at least one, no more than the lines keep busy. */
static unsigned certs_bulk_threads(unsigned want, size_t n)
{
    cpu_set_t set;
    size_t useful = n / CERTS_BULK_LINES_PER_THREAD;

    if (want == 0) {
        CPU_ZERO(&set);
        want = sched_getaffinity(0, sizeof(set), &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
    }
    want = want > CERTS_BULK_THREADS_MAX ? CERTS_BULK_THREADS_MAX : want;
    want = (size_t)want > useful ? (unsigned)useful : want;
    return want == 0 ? 1 : want;
}

/* Prepare every POST line: the admin thread and the threads started here take lines one by
 * one until none is left; all are joined before returning. A thread that cannot be started
 * leaves its share to the others. */
static void certs_bulk_prepare_all(struct certs_bulk_pool *p, unsigned threads)
{
    pthread_t tid[CERTS_BULK_THREADS_MAX];
    unsigned started = 0;

    while (started + 1 < threads
           && pthread_create(&tid[started], NULL, certs_bulk_pool_main, p) == 0) {
        started++;
    }
    (void)certs_bulk_pool_main(p);
    for (unsigned k = 0; k < started; k++) {
        (void)pthread_join(tid[k], NULL);
    }
}

/* Queue a prepared POST line into b, in input order. */
static void certs_bulk_queue_prepared(struct torii_certdb_batch *b, struct certs_bulk_line *l)
{
    struct torii_errbuf eb = {{0}};
    int rc;

    if (l->res != NULL) {
        return;
    }
    l->item = torii_certdb_batch_size(b);
    rc = torii_certdb_batch_create_prepared(b, &l->prep, NULL, &eb);
    if (rc != TORII_OK) {
        certs_bulk_fail(l, rc, eb.msg);
    }
}

/* Every line queued into b, in order: POST lines prepared by the pool first. */
static void certs_bulk_queue(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                             const char *method, const struct torii_slice *lines, size_t n,
                             int enrich, struct certs_bulk_line *ls)
{
    struct certs_bulk_pool pool = {
        .st = ctx->store, .lines = lines, .ls = ls, .n = n, .enrich = enrich};

    if (strcmp(method, "POST") != 0) {
        for (size_t i = 0; i < n; i++) {
            certs_bulk_line(ctx, b, method, lines[i].ptr, lines[i].len, enrich, &ls[i]);
        }
        return;
    }
    atomic_init(&pool.next, 0);
    certs_bulk_prepare_all(&pool, certs_bulk_threads(ctx->bulk_threads, n));
    for (size_t i = 0; i < n; i++) {
        certs_bulk_queue_prepared(b, &ls[i]);
    }
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
    admin_certs_log_write(l->verb, l->id);
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

    certs_bulk_queue(ctx, b, req->method, lines, n, enrich, ls);
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
        torii_certdb_prep_free(ls[i].prep);
    }
    free(ls);
    free(lines);
    torii_certdb_batch_free(b);
}

void admin_certs_bulk_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                            const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct certs_buf out = {NULL, 0, 0};

    if (!admin_req_media_type_is(req, "Content-Type", CERTS_NDJSON)
        && !(admin_req_method_is(req, "DELETE")
             && admin_req_media_type_is(req, "X-Content-Type", CERTS_NDJSON))) {
        json_decref(reply->json);
        reply->status = 400;
        reply->json = json_pack("{s:s, s:s}", "error", "bad_content_type", "error_description",
                                "Unsupported content type, expected " CERTS_NDJSON);
        return;
    }
    certs_bulk_run(ctx, req, admin_certs_enrich_wanted(q), &out);
    json_decref(reply->json);
    reply->json = NULL;
    reply->status = 200;
    reply->raw = out.p != NULL ? out.p : torii_xstrdup("");
    reply->raw_len = out.len;
    reply->content_type = CERTS_NDJSON;
}
