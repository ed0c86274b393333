/* routes_jwt.c - tokens minted and checked with a stored key pair, for services that must not hold
 * the private key (docs/jwt.md, docs/api.md): POST /api/certificates/:id/_sign    {"claims": {...},
 * "lifetime_s": N} -> {"token": "..."} POST /api/certificates/:id/_verify  {"token": "...",
 * "audience", "issuer", "leeway_s"}
 *                                       -> {"valid": true, "claims": {...}}
 *                                          or {"valid": false, "error": "<verdict>", ...}
 * The private key is decoded by the pki module only (torii_pki_jwt_sign) and never returned.
 * Threads: admin thread only. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin_routes.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/jwt.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define JWT_CERTS_PREFIX      "/api/certificates/"
#define JWT_LIFETIME_DEFAULT  300
#define JWT_LIFETIME_MAX      86400
#define JWT_CLAIMS_MAX        4096 /* bytes of the compact claims JSON */
#define JWT_VERIFY_AUDS_MAX   TORII_JWT_MAX_AUD
#define JWT_VERIFY_LEEWAY_MAX 3600

static int admin_jwt_keys(json_t *body, const char *const *allowed, struct torii_admin_reply *reply)
{
    const char *k;
    json_t *v;

    json_object_foreach (body, k, v) {
        int ok = 0;
        for (size_t i = 0; !ok && allowed[i] != NULL; i++) {
            ok = strcmp(allowed[i], k) == 0;
        }
        if (!ok) {
            admin_reply_error(reply, 400, "%s: unknown key", k);
            return 0;
        }
    }
    return 1;
}

/* The claims of _sign: an object, at most JWT_CLAIMS_MAX bytes, without iat/exp (torii sets
 * them from lifetime_s). */
static int admin_jwt_claims_ok(const json_t *claims, struct torii_admin_reply *reply)
{
    char *text;
    size_t len;

    if (!json_is_object(claims)) {
        admin_reply_error(reply, 400, "claims: expected a JSON object");
        return 0;
    }
    if (json_object_get(claims, "iat") != NULL || json_object_get(claims, "exp") != NULL) {
        admin_reply_error(reply, 400, "claims: iat and exp are set by torii (use lifetime_s)");
        return 0;
    }
    text = json_dumps(claims, JSON_COMPACT);
    len = text != NULL ? strlen(text) : SIZE_MAX;
    free(text);
    if (len > JWT_CLAIMS_MAX) {
        admin_reply_error(reply, 400, "claims: at most %d bytes of JSON", JWT_CLAIMS_MAX);
        return 0;
    }
    return 1;
}

static void admin_jwt_sign(const struct torii_kek_ring *kek, const json_t *entity, json_t *body,
                           struct torii_admin_reply *reply)
{
    static const char *const keys[] = {"claims", "lifetime_s", NULL};
    const json_t *claims = json_object_get(body, "claims");
    const json_t *lt = json_object_get(body, "lifetime_s");
    struct torii_errbuf eb = {{0}};
    char *tok = NULL;
    int rc;

    if (!admin_jwt_keys(body, keys, reply) || !admin_jwt_claims_ok(claims, reply)) {
        return;
    }
    if (lt != NULL
        && (!json_is_integer(lt) || json_integer_value(lt) < 1
            || json_integer_value(lt) > JWT_LIFETIME_MAX)) {
        admin_reply_error(reply, 400, "lifetime_s: expected seconds in 1..%d", JWT_LIFETIME_MAX);
        return;
    }
    rc = torii_pki_jwt_sign(entity, kek, claims,
                            lt != NULL ? json_integer_value(lt) : JWT_LIFETIME_DEFAULT,
                            torii_clock_now_ms(), &tok, &eb);
    if (rc != TORII_OK) {
        admin_reply_error(reply, admin_status_of(rc), "%s", eb.msg);
        return;
    }
    reply->json = json_pack("{s:s}", "token", tok);
    reply->status = reply->json != NULL ? 200 : 500;
    free(tok);
    admin_reply_header(reply, "Cache-Control", "no-store");
}

/* audience a (a string or an array of non-empty strings) into auds and p; 0 when malformed. */
static int admin_jwt_audiences(const json_t *a, const char **auds, struct torii_jwt_policy *p)
{
    size_t n = json_is_array(a) ? json_array_size(a) : 1;

    for (size_t i = 0; i < n && n <= JWT_VERIFY_AUDS_MAX; i++) {
        const json_t *s = json_is_array(a) ? json_array_get(a, i) : a;
        auds[p->n_audiences++] = json_is_string(s) ? json_string_value(s) : NULL;
    }
    for (size_t i = 0; i < p->n_audiences; i++) {
        if (auds[i] == NULL || auds[i][0] == '\0') {
            p->n_audiences = 0;
        }
    }
    if (p->n_audiences == 0 || n > JWT_VERIFY_AUDS_MAX) {
        return 0;
    }
    p->audiences = auds;
    return 1;
}

/* audience (a string or an array of strings), issuer, leeway_s of a _verify body into p; the
 * strings stay borrowed from body. */
static int admin_jwt_policy(const json_t *body, const char **auds, struct torii_jwt_policy *p,
                            struct torii_admin_reply *reply)
{
    const json_t *a = json_object_get(body, "audience");
    const json_t *iss = json_object_get(body, "issuer");
    const json_t *lw = json_object_get(body, "leeway_s");

    if (a != NULL && !admin_jwt_audiences(a, auds, p)) {
        admin_reply_error(reply, 400, "audience: expected a string or 1..%d strings",
                          JWT_VERIFY_AUDS_MAX);
        return 0;
    }
    if (iss != NULL && (!json_is_string(iss) || json_string_length(iss) == 0)) {
        admin_reply_error(reply, 400, "issuer: expected a non-empty string");
        return 0;
    }
    p->issuer = iss != NULL ? json_string_value(iss) : NULL;
    if (lw != NULL
        && (!json_is_integer(lw) || json_integer_value(lw) < 0
            || json_integer_value(lw) > JWT_VERIFY_LEEWAY_MAX)) {
        admin_reply_error(reply, 400, "leeway_s: expected seconds in 0..%d", JWT_VERIFY_LEEWAY_MAX);
        return 0;
    }
    p->leeway_s = lw != NULL ? json_integer_value(lw) : 0;
    return 1;
}

static void admin_jwt_verify(const json_t *entity, json_t *body, struct torii_admin_reply *reply)
{
    static const char *const keys[] = {"token", "audience", "issuer", "leeway_s", NULL};
    const json_t *tok = json_object_get(body, "token");
    const char *auds[JWT_VERIFY_AUDS_MAX];
    struct torii_jwt_policy p = {0};
    struct torii_errbuf eb = {{0}};
    enum torii_jwt_verdict verdict = TORII_JWT_MALFORMED;
    json_t *claims = NULL;
    int rc;

    if (!admin_jwt_keys(body, keys, reply) || !admin_jwt_policy(body, auds, &p, reply)) {
        return;
    }
    if (!json_is_string(tok)) {
        admin_reply_error(reply, 400, "token: expected a string (a compact JWS)");
        return;
    }
    rc = torii_pki_jwt_verify(entity, &p, json_string_value(tok), json_string_length(tok),
                              torii_clock_now_ms(), &verdict, &claims, &eb);
    if (rc == TORII_OK) {
        reply->json = json_pack("{s:b,s:o}", "valid", 1, "claims", claims);
    } else if (rc == TORII_EPERM) {
        reply->json = json_pack("{s:b,s:s,s:s}", "valid", 0, "error",
                                torii_jwt_verdict_name(verdict), "detail", eb.msg);
    } else {
        admin_reply_error(reply, admin_status_of(rc), "%s", eb.msg);
        return;
    }
    reply->status = reply->json != NULL ? 200 : 500;
}

static void admin_jwt_run(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                          const char *act, char *id, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    json_t *body = NULL;
    json_t *entity = NULL;
    int rc;

    if (admin_req_json_parse(req->body, req->body_len, 0, &body, &eb) != TORII_OK
        || !json_is_object(body)) {
        admin_reply_error(reply, 400, "body: expected a JSON object%s%s", eb.msg[0] ? ": " : "",
                          eb.msg);
        goto out;
    }
    rc = torii_certdb_load(ctx->store, id, &entity, &eb);
    if (rc != TORII_OK) {
        admin_reply_error(reply, admin_status_of(rc), "%s", eb.msg);
        goto out;
    }
    if (strcmp(act, "sign") == 0) {
        admin_jwt_sign(torii_store_kek(ctx->store), entity, body, reply);
    } else {
        admin_jwt_verify(entity, body, reply);
    }
out:
    json_decref(entity); /* holds the private key: dropped here, never in a reply */
    json_decref(body);
}

/* POST /api/certificates/:id/<act> (the path matched the row's pattern: one id segment). */
static int admin_jwt_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           const char *act, struct torii_admin_reply *reply)
{
    const size_t plen = strlen(JWT_CERTS_PREFIX);
    const size_t alen = strlen(act) + 2; /* "/_<act>" */
    char *id = NULL;

    if (req->path.len <= plen + alen) {
        return TORII_ENOTFOUND;
    }
    if (!admin_req_method_is(req, "POST")) {
        admin_reply_method_not_allowed(reply, "POST");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    if (admin_req_id_decode(req->path.ptr + plen, req->path.len - plen - alen, TORII_STORE_ID_MAX,
                            &id)
        != TORII_OK) {
        admin_reply_error(reply, 400,
                          "id: must be 1 to %d bytes of UTF-8 without control characters or '/'",
                          TORII_STORE_ID_MAX);
        return TORII_OK;
    }
    admin_jwt_run(ctx, req, act, id, reply);
    free(id);
    return TORII_OK;
}

int admin_jwt_sign_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply)
{
    return admin_jwt_route(ctx, req, "sign", reply);
}

int admin_jwt_verify_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           struct torii_admin_reply *reply)
{
    return admin_jwt_route(ctx, req, "verify", reply);
}
