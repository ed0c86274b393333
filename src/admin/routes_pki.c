/* routes_pki.c - the /api/pki admin routes (Otoroshi-compatible, reference 3.2), POST
 * /api/certificates/_bundle.
 *
 * Decisions:
 * - Every issued or imported certificate is stored (unless ?persist=false) through certdb,
 *   in one transaction with its serial index entries, so the OCSP responder and the TLS
 *   table see it as soon as the reply is sent; persisted entity responses carry "certId".
 * - Certificates signed from a CSR (cas/:ca/certs/_sign) are stored too, without a private
 *   key, so the responder answers "good" for them instead of "unknown".
 * - Bad input (JSON, key spec, CA that is not a CA or has no key, wrong p12 password, corrupt
 *   PEM/DER) is a 400 {"error": ...} naming the problem; nothing is stored then. Unknown CA
 *   ids are 404 {"error": "ca not found !"} as in the reference.
 * - _letencrypt/_letsencrypt belong to the ACME routes (acme.c, dispatched first).
 * Private keys are never logged. Threads: admin thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "jsonpatch.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define PKI_PREFIX    "/api/pki/"
#define PKI_BUNDLE    "/api/certificates/_bundle"
#define PKI_MAX_QUERY 16

/* ---- request helpers ---------------------------------------------------------------------- */

/* The body as a NUL-terminated string; TORII_EINVAL when it holds a NUL byte. */
static int pki_body_text(const struct torii_http_req *req, char **out)
{
    size_t len = req->body != NULL ? req->body_len : 0;

    if (len > 0 && memchr(req->body, '\0', len) != NULL) {
        return TORII_EINVAL;
    }
    *out = torii_xstrndup(len > 0 ? (const char *)req->body : "", len);
    return TORII_OK;
}

/* JSON body (an empty body is {}); no duplicate keys, bounded depth. */
static int pki_body_json(const struct torii_http_req *req, json_t **out, struct torii_errbuf *eb)
{
    int rc = admin_req_json_parse(req->body, req->body_len, ADMIN_REQ_JSON_EMPTY_OBJECT, out, eb);

    if (rc == TORII_ETOOBIG) {
        rc = torii_errf(eb, TORII_EINVAL, "JSON nested too deep");
    }
    return rc;
}

static int pki_persist_wanted(const struct admin_req_query *q)
{
    return admin_req_query_bool(q, "persist", 1);
}

static void pki_reply_json(struct torii_admin_reply *r, int status, json_t *v_owned)
{
    json_decref(r->json);
    r->json = v_owned;
    r->status = v_owned != NULL ? status : 500;
    if (v_owned == NULL) {
        admin_reply_error(r, 500, "out of memory");
    }
}

static void pki_reply_rc(struct torii_admin_reply *r, int rc, const char *prefix,
                         const struct torii_errbuf *eb)
{
    admin_reply_error(r, admin_status_of(rc), "%s%s", prefix,
                      eb->msg[0] != '\0' ? eb->msg : torii_strerror(rc));
}

/* Store entity (unless persist=false) and reply with it (+ certId when stored). */
static void pki_reply_entity(struct torii_admin_ctx *ctx, const struct admin_req_query *q,
                             json_t *e, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *arr = NULL;
    int rc = TORII_OK;

    if (pki_persist_wanted(q)) {
        arr = json_pack("[O]", e);
        rc = arr != NULL ? torii_certdb_create_all(ctx->store, arr, &eb) : TORII_ENOMEM;
        json_decref(arr);
        if (rc != TORII_OK) {
            json_decref(e);
            pki_reply_rc(reply, rc, "", &eb);
            return;
        }
        torii_log(TORII_LOG_INFO, "admin: PKI certificate stored (id=%s)",
                  json_string_value(json_object_get(e, "id")));
        (void)json_object_set(e, "certId", json_object_get(e, "id"));
    }
    pki_reply_json(reply, 200, e);
}

static struct torii_pki_opts pki_opts(struct torii_admin_ctx *ctx)
{
    struct torii_pki_opts o = {
        .now_ms = torii_clock_now_ms(),
        .base_url = json_string_value(json_object_get(ctx->cfg->pki, "public_url")),
        .id = NULL,
        .kek = torii_store_kek(ctx->store), /* opens a sealed CA key */
    };
    return o;
}

/* ---- CA lookup ------------------------------------------------------------------------------ */

static int pki_load_entity(struct torii_admin_ctx *ctx, const char *id, json_t **out)
{
    return torii_certdb_load(ctx->store, id, out, NULL);
}

/* A CA by entity id, else by the hex serial of its certificate (reference 3.2): one exact
 * lookup in the serial index. */
static int pki_load_ca(struct torii_admin_ctx *ctx, const char *ref, json_t **out)
{
    char *id = NULL;
    int rc = pki_load_entity(ctx, ref, out);

    if (rc != TORII_ENOTFOUND) {
        return rc;
    }
    if (torii_certdb_serial_lookup(ctx->store, NULL, ref, &id) == TORII_OK) {
        rc = pki_load_entity(ctx, id, out);
    }
    free(id);
    return rc;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static void pki_keys(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                     const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct torii_pki_opts o = pki_opts(ctx);
    json_t *spec = NULL;
    json_t *e = NULL;
    int rc = pki_body_json(req, &spec, &eb);

    if (rc == TORII_OK && !json_is_object(spec)) {
        rc = torii_errf(&eb, TORII_EINVAL, "body must be a JSON object {\"algo\", \"size\"}");
    }
    if (rc == TORII_OK) {
        rc = torii_pki_keypair_create(json_object_size(spec) > 0 ? spec : NULL, &o, &e, &eb);
    }
    json_decref(spec);
    if (rc != TORII_OK) {
        pki_reply_rc(reply, rc, "", &eb);
        return;
    }
    reply->fresh_key = 1; /* the caller asked for this key: shown once, here */
    pki_reply_entity(ctx, q, e, reply);
}

static void pki_csrs(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *query = NULL;
    json_t *out = NULL;
    int rc = pki_body_json(req, &query, &eb);

    if (rc == TORII_OK) {
        rc = torii_pki_csr_create(query, &out, &eb);
    }
    json_decref(query);
    if (rc != TORII_OK) {
        pki_reply_rc(reply, rc, "", &eb);
        return;
    }
    reply->fresh_key = 1; /* the CSR's key was made for the caller: shown once, here */
    pki_reply_json(reply, 200, out);
}

enum pki_gen { PKI_GEN_SELF, PKI_GEN_ROOT, PKI_GEN_LEAF, PKI_GEN_SUBCA };

static void pki_generate(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         const struct admin_req_query *q, const char *ca_ref, enum pki_gen kind,
                         struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct torii_pki_opts o = pki_opts(ctx);
    json_t *query = NULL;
    json_t *ca = NULL;
    json_t *e = NULL;
    int rc = pki_body_json(req, &query, &eb);

    if (rc == TORII_OK && !json_is_object(query)) {
        rc = torii_errf(&eb, TORII_EINVAL, "body must be a JSON object (GenCsrQuery)");
    }
    if (rc == TORII_OK && ca_ref != NULL) {
        rc = pki_load_ca(ctx, ca_ref, &ca);
        if (rc == TORII_ENOTFOUND) {
            json_decref(query);
            admin_reply_error(reply, 404, "ca not found !");
            return;
        }
        if (rc == TORII_OK && !json_is_true(json_object_get(ca, "ca"))) {
            rc = torii_errf(&eb, TORII_EINVAL, "issuer '%s' is not a CA (ca=false)", ca_ref);
        }
    }
    if (rc == TORII_OK) {
        switch (kind) {
        case PKI_GEN_SELF:
            rc = torii_pki_cert_selfsigned(query, &o, &e, &eb);
            break;
        case PKI_GEN_ROOT:
            rc = torii_pki_ca_create(query, &o, &e, &eb);
            break;
        case PKI_GEN_LEAF:
            rc = torii_pki_cert_issue(ca, query, &o, &e, &eb);
            break;
        case PKI_GEN_SUBCA:
            rc = torii_pki_subca_create(ca, query, &o, &e, &eb);
            break;
        default:
            rc = TORII_EINVAL;
            break;
        }
    }
    json_decref(query);
    json_decref(ca);
    if (rc != TORII_OK) {
        pki_reply_rc(reply, rc, "", &eb);
        return;
    }
    reply->fresh_key = 1; /* generated for the caller: shown once, here */
    pki_reply_entity(ctx, q, e, reply);
}

/* The entity of a certificate signed from a CSR: no key, chain = cert + the CA's chain. */
static int pki_signed_entity(const json_t *signed_out, const json_t *ca, int client, json_t **out,
                             struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *e = torii_cert_template();
    const char *cert = json_string_value(json_object_get(signed_out, "cert"));
    const char *chain = json_string_value(json_object_get(ca, "chain"));
    char *full = NULL;
    size_t n;

    TORII_ENSURE(e != NULL && cert != NULL && chain != NULL, TORII_ENOMEM);
    n = strlen(cert) + strlen(chain) + 2;
    full = torii_xmalloc(n);
    (void)snprintf(full, n, "%s%s%s", cert,
                   cert[0] != '\0' && cert[strlen(cert) - 1] == '\n' ? "" : "\n", chain);
    TORII_ENSURE(json_object_set_new(e, "chain", json_string(full)) == 0
                     && json_object_set(e, "caRef", json_object_get(ca, "id")) == 0
                     && json_object_set_new(e, "client", json_boolean(client)) == 0,
                 TORII_ENOMEM);
    TORII_TRY(torii_cert_enrich(e, torii_clock_now_ms(), eb));
    *out = e;
    e = NULL;
out:
    free(full);
    json_decref(e);
    return rc;
}

static void pki_sign(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                     const struct admin_req_query *q, const char *ca_ref,
                     struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    struct torii_pki_opts o = pki_opts(ctx);
    const char *dur = admin_req_query_get(q, "duration");
    int client = admin_req_query_bool(q, "client", 0);
    long long duration = 0;
    char *csr = NULL;
    json_t *ca = NULL;
    json_t *out = NULL;
    json_t *ent = NULL;
    json_t *arr = NULL;
    int rc;

    if (dur != NULL) {
        char *end = NULL;
        duration = strtoll(dur, &end, 10);
        if (dur[0] == '\0' || end == NULL || *end != '\0' || duration <= 0) {
            admin_reply_error(reply, 400, "duration: expected a positive number of ms");
            return;
        }
    }
    rc = pki_load_ca(ctx, ca_ref, &ca);
    if (rc == TORII_ENOTFOUND) {
        admin_reply_error(reply, 404, "ca not found !");
        return;
    }
    if (rc == TORII_OK && pki_body_text(req, &csr) != TORII_OK) {
        rc = torii_errf(&eb, TORII_EINVAL, "CSR: body holds a NUL byte");
    }
    if (rc == TORII_OK) {
        rc = torii_pki_csr_sign(ca, csr, (int64_t)duration, client, &o, &out, &eb);
    }
    if (rc == TORII_OK && pki_persist_wanted(q)) {
        rc = pki_signed_entity(out, ca, client, &ent, &eb);
        if (rc == TORII_OK) {
            arr = json_pack("[O]", ent);
            rc = arr != NULL ? torii_certdb_create_all(ctx->store, arr, &eb) : TORII_ENOMEM;
        }
        if (rc == TORII_OK) {
            (void)json_object_set(out, "certId", json_object_get(ent, "id"));
        }
    }
    free(csr);
    json_decref(ca);
    json_decref(ent);
    json_decref(arr);
    if (rc != TORII_OK) {
        json_decref(out);
        pki_reply_rc(reply, rc, "", &eb);
        return;
    }
    pki_reply_json(reply, 200, out);
}

static void pki_p12(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                    const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *arr = NULL;
    json_t *ids = NULL;
    size_t i;
    json_t *e;
    int rc;

    if (req->body == NULL || req->body_len == 0) {
        admin_reply_error(reply, 400, "Bad p12 : empty body");
        return;
    }
    rc = torii_pki_import_p12(req->body, req->body_len, admin_req_query_get(q, "password"),
                              torii_clock_now_ms(), &arr, &eb);
    if (rc != TORII_OK) {
        pki_reply_rc(reply, rc, "Bad p12 : ", &eb);
        return;
    }
    if (pki_persist_wanted(q)) {
        rc = torii_certdb_create_all(ctx->store, arr, &eb);
        if (rc != TORII_OK) {
            json_decref(arr);
            pki_reply_rc(reply, rc, "", &eb);
            return;
        }
    }
    ids = json_array();
    json_array_foreach (arr, i, e) {
        (void)json_array_append(ids, json_object_get(e, "id"));
    }
    json_decref(arr);
    pki_reply_json(reply, 200, json_pack("{s:b, s:o}", "done", 1, "certIds", ids));
}

static void pki_bundle(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                       const struct admin_req_query *q, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *arr = NULL;
    char *text = NULL;
    int rc = pki_body_text(req, &text);

    if (rc != TORII_OK) {
        rc = torii_errf(&eb, TORII_EINVAL, "the body holds a NUL byte");
    } else {
        rc = torii_pki_import_pem_bundle(text, admin_req_query_get(q, "password"),
                                         torii_clock_now_ms(), &arr, &eb);
    }
    admin_req_wipe_str(text);
    if (rc == TORII_OK && pki_persist_wanted(q)) {
        rc = torii_certdb_create_all(ctx->store, arr, &eb);
    }
    if (rc != TORII_OK) {
        json_decref(arr);
        if (rc == TORII_EINVAL) {
            pki_reply_json(reply, 400,
                           json_pack("{s:s, s:s}", "error", "error while importing PEM bundle",
                                     "error_description", eb.msg));
        } else {
            pki_reply_rc(reply, rc, "", &eb);
        }
        return;
    }
    if (json_array_size(arr) == 1) {
        json_t *one = json_incref(json_array_get(arr, 0));
        json_decref(arr);
        pki_reply_json(reply, 201, one);
    } else {
        pki_reply_json(reply, 201, arr);
    }
}

static void pki_valid(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *e = NULL;
    int rc = pki_body_json(req, &e, &eb);

    if (rc == TORII_OK && !json_is_object(e)) {
        rc = torii_errf(&eb, TORII_EINVAL, "body must be a certificate entity (JSON object)");
    }
    if (rc != TORII_OK) {
        json_decref(e);
        pki_reply_rc(reply, rc, "", &eb);
        return;
    }
    (void)json_object_del(e, "certId"); /* what our own entity responses add */
    pki_reply_json(reply, 200, torii_pki_cert_valid(e, torii_clock_now_ms()));
    json_decref(e);
}

static void pki_data(const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *out = NULL;
    char *text = NULL;
    int rc = pki_body_text(req, &text);

    if (rc != TORII_OK) {
        rc = torii_errf(&eb, TORII_EINVAL, "the body holds a NUL byte");
    } else {
        rc = torii_pki_cert_data(text, &out, &eb);
    }
    free(text);
    if (rc != TORII_OK) {
        pki_reply_rc(reply, rc, "Bad certificate : ", &eb);
        return;
    }
    pki_reply_json(reply, 200, out);
}

/* ---- routing -------------------------------------------------------------------------------- */

/* Split the path after PKI_PREFIX into at most 4 '/'-separated segments. */
static size_t pki_segments(struct torii_slice rest, struct torii_slice *seg, size_t max)
{
    size_t n = 0;
    size_t i = 0;

    while (i <= rest.len && n < max + 1) {
        const char *slash = i < rest.len ? memchr(rest.ptr + i, '/', rest.len - i) : NULL;
        size_t end = slash != NULL ? (size_t)(slash - rest.ptr) : rest.len;

        if (n < max) {
            seg[n] = (struct torii_slice){rest.ptr + i, end - i};
        }
        n++;
        i = end + 1;
        if (slash == NULL) {
            break;
        }
    }
    return n;
}

/* Query parameters each endpoint takes; anything else is a 400 naming it. */
static const char *const pki_q_persist[] = {"persist", NULL};
static const char *const pki_q_import[] = {"password", "persist", NULL};
static const char *const pki_q_sign[] = {"duration", "client", "persist", NULL};

static const char *const *pki_query_allowed(const struct torii_slice *seg, size_t n, int bundle)
{
    if (bundle || (n == 2 && admin_req_slice_is(seg[1], "_p12"))) {
        return pki_q_import;
    }
    if (n == 4) {
        return pki_q_sign;
    }
    if ((n == 1 && admin_req_slice_is(seg[0], "csrs"))
        || (n == 2
            && (admin_req_slice_is(seg[1], "_valid") || admin_req_slice_is(seg[1], "_data")))) {
        return NULL;
    }
    return pki_q_persist;
}

/* 1 when q passes the endpoint's allow-list and its booleans are true or false; else 0 with a
 * 400 naming the parameter. */
static int pki_query_ok(const struct admin_req_query *q, const char *const *allowed,
                        struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};

    if (admin_req_query_check(q, allowed, &eb) != TORII_OK
        || admin_req_query_bool_check(q, "persist", &eb) != TORII_OK
        || admin_req_query_bool_check(q, "client", &eb) != TORII_OK) {
        admin_reply_error(reply, 400, "%s", eb.msg);
        return 0;
    }
    return 1;
}

static void pki_dispatch(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         const struct admin_req_query *q, const struct torii_slice *seg, size_t n,
                         struct torii_admin_reply *reply)
{
    char *ca = NULL;

    if (n == 1 && admin_req_slice_is(seg[0], "keys")) {
        pki_keys(ctx, req, q, reply);
    } else if (n == 1 && admin_req_slice_is(seg[0], "csrs")) {
        pki_csrs(req, reply);
    } else if (n == 1 && admin_req_slice_is(seg[0], "certs")) {
        pki_generate(ctx, req, q, NULL, PKI_GEN_SELF, reply);
    } else if (n == 1 && admin_req_slice_is(seg[0], "cas")) {
        pki_generate(ctx, req, q, NULL, PKI_GEN_ROOT, reply);
    } else if (n == 2 && admin_req_slice_is(seg[0], "certs")
               && admin_req_slice_is(seg[1], "_p12")) {
        pki_p12(ctx, req, q, reply);
    } else if (n == 2 && admin_req_slice_is(seg[0], "certs")
               && admin_req_slice_is(seg[1], "_valid")) {
        pki_valid(req, reply);
    } else if (n == 2 && admin_req_slice_is(seg[0], "certs")
               && admin_req_slice_is(seg[1], "_data")) {
        pki_data(req, reply);
    } else if ((n == 3 || n == 4) && admin_req_slice_is(seg[0], "cas") && seg[1].len > 0) {
        if (admin_req_pct_decode(seg[1].ptr, seg[1].len, 1, &ca) != TORII_OK) {
            admin_reply_error(reply, 404, "ca not found !");
        } else if (n == 3 && admin_req_slice_is(seg[2], "certs")) {
            pki_generate(ctx, req, q, ca, PKI_GEN_LEAF, reply);
        } else if (n == 3 && admin_req_slice_is(seg[2], "cas")) {
            pki_generate(ctx, req, q, ca, PKI_GEN_SUBCA, reply);
        } else if (n == 4 && admin_req_slice_is(seg[2], "certs")
                   && admin_req_slice_is(seg[3], "_sign")) {
            pki_sign(ctx, req, q, ca, reply);
        } else {
            admin_reply_error(reply, 404, "resource not found");
        }
        free(ca);
    } else {
        admin_reply_error(reply, 404, "resource not found");
    }
}

int admin_pki_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                    struct torii_admin_reply *reply)
{
    const size_t plen = sizeof(PKI_PREFIX) - 1;
    struct torii_slice seg[5];
    struct admin_req_query q;
    size_t n = 0;
    int bundle = admin_req_path_is(req, PKI_BUNDLE);

    if (!bundle && (req->path.len < plen || memcmp(req->path.ptr, PKI_PREFIX, plen) != 0)) {
        return TORII_ENOTFOUND;
    }
    if (!bundle) {
        n = pki_segments((struct torii_slice){req->path.ptr + plen, req->path.len - plen}, seg, 4);
        if (n == 2 && admin_req_slice_is(seg[0], "certs")
            && (admin_req_slice_is(seg[1], "_letencrypt")
                || admin_req_slice_is(seg[1], "_letsencrypt"))) {
            return TORII_ENOTFOUND; /* the ACME routes */
        }
    }
    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return TORII_OK;
    }
    if (admin_req_query_parse(req->query, PKI_MAX_QUERY, &q) != TORII_OK) {
        admin_reply_error(reply, 400, "invalid query string");
        return TORII_OK;
    }
    if (n <= 4 && !pki_query_ok(&q, pki_query_allowed(seg, n, bundle), reply)) {
        /* replied */
    } else if (bundle) {
        pki_bundle(ctx, req, &q, reply);
    } else if (n > 4) {
        admin_reply_error(reply, 404, "resource not found");
    } else {
        pki_dispatch(ctx, req, &q, seg, n, reply);
    }
    admin_req_query_clear(&q);
    return TORII_OK;
}
