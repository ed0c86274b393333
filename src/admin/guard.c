/* guard.c - the guarded dispatch of the admin listener (order in admin_guard.h).
 *
 * Decisions:
 * - The limiter is consulted before the credentials are looked at, so a blocked source learns
 *   nothing more (its valid token is refused too, 429 + Retry-After, until the window ends).
 * - Scopes come from the one table of scopes.c; a request no rule names needs "admin".
 * - State-changing calls (any method but GET/HEAD): Host must be one of the listener's names
 *   (its address, localhost names for a loopback listener, admin.hosts), an Origin header,
 *   when present, must be <scheme>://<one of those>, else 403 (browser and DNS-rebinding
 *   defence); a Content-Type must be one of the JSON/NDJSON/PEM/PKCS types the routes take
 *   (the CORS "simple" types text/plain, forms and multipart are refused, 415), and a body
 *   without one is refused too. No Access-Control-Allow-* header is ever sent.
 * - Responses are redacted here, after the route, unless the call asked ?export=true with the
 *   keys:export scope, or the route generated the key it returns (reply->fresh_key). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "admin_guard.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/store.h"

static const char *const guard_media_types[] = {
    "application/json",     "application/merge-patch+json", "application/json-patch+json",
    "application/x-ndjson", "application/x-pem-file",       "application/pkcs10",
    "application/x-pkcs12", "application/octet-stream",
};

static void guard_add_host(struct admin_guard *g, const char *h)
{
    char *c = torii_xstrdup(h);

    for (char *p = c; *p != '\0'; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    g->hosts = torii_xrealloc(g->hosts, (g->n_hosts + 1) * sizeof(*g->hosts));
    g->hosts[g->n_hosts++] = c;
}

/* name, plus name:port when name carries no port. */
static void guard_add_name(struct admin_guard *g, const char *name, const char *port)
{
    char buf[300];
    const char *rb = strrchr(name, ']');
    const char *colon = strrchr(name, ':');

    guard_add_host(g, name);
    if (colon == NULL || (name[0] == '[' && (rb == NULL || colon < rb))) {
        (void)snprintf(buf, sizeof(buf), "%s:%s", name, port);
        guard_add_host(g, buf);
    }
}

static void guard_hosts_init(struct admin_guard *g, const struct torii_config *cfg,
                             const char *listen_on)
{
    static const char *const loop[] = {"localhost", "127.0.0.1", "[::1]"};
    const char *colon = strrchr(listen_on, ':');
    const char *port = colon != NULL ? colon + 1 : "";
    size_t i;
    json_t *v;

    guard_add_host(g, listen_on);
    if (torii_conf_addr_is_loopback(listen_on)) {
        for (i = 0; i < sizeof(loop) / sizeof(loop[0]); i++) {
            guard_add_name(g, loop[i], port);
        }
    }
    json_array_foreach (cfg->admin_hosts, i, v) {
        if (json_is_string(v)) {
            guard_add_name(g, json_string_value(v), port);
        }
    }
}

int admin_guard_init(struct admin_guard *g, const struct torii_config *cfg, const char *listen_on,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    memset(g, 0, sizeof(*g));
    g->audit.fd = -1;
    g->scheme = "http";
    g->rl.limit = cfg->admin_auth_fail_limit;
    g->rl.window_ms = (int64_t)cfg->admin_auth_fail_window_s * 1000;
    TORII_TRY(admin_tokens_init(cfg, &g->tokens, eb));
    TORII_TRY(admin_audit_open(cfg, &g->audit, eb));
    guard_hosts_init(g, cfg, listen_on);
out:
    if (rc != TORII_OK) {
        admin_guard_clear(g);
    }
    return rc;
}

void admin_guard_clear(struct admin_guard *g)
{
    admin_tokens_clear(&g->tokens);
    admin_audit_close(&g->audit);
    for (size_t i = 0; i < g->n_hosts; i++) {
        free(g->hosts[i]);
    }
    free(g->hosts);
    g->hosts = NULL;
    g->n_hosts = 0;
}

static int guard_host_known(const struct admin_guard *g, struct torii_slice h)
{
    for (size_t i = 0; i < g->n_hosts; i++) {
        if (strlen(g->hosts[i]) == h.len && strncasecmp(g->hosts[i], h.ptr, h.len) == 0) {
            return 1;
        }
    }
    return 0;
}

static int guard_origin_ok(const struct admin_guard *g, struct torii_slice o)
{
    size_t sl = strlen(g->scheme);

    if (o.len <= sl + 3 || strncasecmp(o.ptr, g->scheme, sl) != 0
        || memcmp(o.ptr + sl, "://", 3) != 0) {
        return 0;
    }
    return guard_host_known(g, (struct torii_slice){o.ptr + sl + 3, o.len - sl - 3});
}

/* Host, Origin and Content-Type of a state-changing call; 0 with reply filled when refused. */
static int guard_browser_ok(const struct admin_guard *g, const struct torii_http_req *req,
                            struct torii_admin_reply *reply)
{
    const struct torii_slice *host = torii_http_req_header(req, "Host");
    const struct torii_slice *origin = torii_http_req_header(req, "Origin");
    const struct torii_slice *ct = torii_http_req_header(req, "Content-Type");
    char esc[128];

    if (host == NULL || !guard_host_known(g, *host)) {
        admin_reply_error(
            reply, 403, "Host '%s' is not a name of this admin listener (see admin.hosts)",
            host != NULL ? torii_log_escape(host->ptr, host->len, esc, sizeof(esc)) : "");
        return 0;
    }
    if (origin != NULL && !guard_origin_ok(g, *origin)) {
        admin_reply_error(reply, 403, "Origin '%s' is not this admin listener",
                          torii_log_escape(origin->ptr, origin->len, esc, sizeof(esc)));
        return 0;
    }
    if (ct == NULL) {
        if (req->body_len > 0) {
            admin_reply_error(reply, 415, "a request body needs a Content-Type");
            return 0;
        }
        return 1;
    }
    for (size_t i = 0; i < sizeof(guard_media_types) / sizeof(guard_media_types[0]); i++) {
        if (admin_req_media_type_is(req, "Content-Type", guard_media_types[i])) {
            return 1;
        }
    }
    admin_reply_error(reply, 415, "unsupported content type '%s' (JSON, NDJSON, PEM or PKCS types)",
                      torii_log_escape(ct->ptr, ct->len, esc, sizeof(esc)));
    return 0;
}

static int guard_export_asked(const struct torii_http_req *req)
{
    struct admin_req_query q = {NULL, 0};
    const char *v;
    int yes = 0;

    if (req->query.len == 0 || admin_req_query_parse(req->query, 0, &q) != TORII_OK) {
        return 0;
    }
    v = admin_req_query_get(&q, "export");
    yes = v != NULL && strcmp(v, "true") == 0;
    admin_req_query_clear(&q);
    return yes;
}

static void guard_routes(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply)
{
    admin_route_fn fn = admin_route_handler(req->path);

    if (fn == NULL || fn(ctx, req, reply) == TORII_ENOTFOUND) {
        admin_reply_clear(reply);
        admin_reply_error(reply, 404, "not found");
    }
}

/* The token of req, or NULL with reply filled (429 while the source is blocked, else 401). */
static const struct admin_token *guard_authenticate(struct admin_guard *g,
                                                    const struct torii_http_req *req,
                                                    const char *src, int64_t now_ms,
                                                    struct torii_admin_reply *reply)
{
    char path[512];
    char retry[16];
    unsigned wait_s = admin_rl_blocked(&g->rl, src, now_ms);
    const struct admin_token *tok = NULL;

    (void)torii_log_escape(req->path.ptr, req->path.len, path, sizeof(path));
    if (wait_s > 0) {
        torii_log(TORII_LOG_WARN, "admin: too many failed authentications (source=%s)", src);
        admin_reply_error(reply, 429, "too many failed authentications, retry in %u s", wait_s);
        (void)snprintf(retry, sizeof(retry), "%u", wait_s);
        admin_reply_header(reply, "Retry-After", retry);
        return NULL;
    }
    tok = admin_tokens_check(&g->tokens, req);
    if (tok == NULL) {
        admin_rl_fail(&g->rl, src, now_ms);
        /* Never the supplied secret: peer, request line and credential form only. */
        torii_log(TORII_LOG_WARN,
                  "admin: authentication failed (peer=%s method=%s path=\"%s\" scheme=%s)",
                  req->peer, req->method, path, admin_auth_scheme(req));
        admin_reply_error(reply, 401, "You're not authorized - %s %s", req->method, path);
    }
    return tok;
}

static int guard_scope_ok(const struct admin_token *tok, unsigned need,
                          const struct torii_http_req *req, struct torii_admin_reply *reply)
{
    char missing[64];
    char path[256];

    if ((tok->scopes & need) == need) {
        return 1;
    }
    admin_scope_names(need & ~tok->scopes, missing, sizeof(missing));
    (void)torii_log_escape(req->path.ptr, req->path.len, path, sizeof(path));
    torii_log(TORII_LOG_WARN, "admin: scope refused (token=%s method=%s path=\"%s\" needs=%s)",
              tok->id, req->method, path, missing);
    admin_reply_error(reply, 403, "token '%s' lacks the scope %s needed for %s %s", tok->id,
                      missing, req->method, path);
    return 0;
}

/* The entity a mutating call touched: the reply's id, else the path segment after
 * /api/certificates/ (raw), else NULL. */
static const char *guard_entity(const struct torii_http_req *req,
                                const struct torii_admin_reply *reply, char *buf, size_t len)
{
    static const char pre[] = "/api/certificates/";
    const json_t *e = json_is_array(reply->json) ? json_array_get(reply->json, 0) : reply->json;
    const char *id = json_string_value(json_object_get(e, "id"));
    size_t n = 0;

    if (id != NULL) {
        return id;
    }
    if (req->path.len > sizeof(pre) - 1 && memcmp(req->path.ptr, pre, sizeof(pre) - 1) == 0) {
        const char *s = req->path.ptr + sizeof(pre) - 1;
        while (s + n < req->path.ptr + req->path.len && s[n] != '/') {
            n++;
        }
        (void)torii_log_escape(s, n, buf, len);
        return n > 0 && s[0] != '_' ? buf : NULL;
    }
    return NULL;
}

static int guard_audit(struct admin_guard *g, const struct admin_token *tok, const char *src,
                       const struct torii_http_req *req, const struct torii_admin_reply *reply)
{
    char ent[300];
    char fp[80];
    struct admin_audit_rec r = {
        .phase = reply != NULL ? "result" : "intent",
        .token = tok->id,
        .source = src,
        .method = req->method,
        .path = req->path,
    };

    if (reply != NULL) {
        r.status = reply->status != 0 ? reply->status : 200;
        r.entity = guard_entity(req, reply, ent, sizeof(ent));
        r.key_fp =
            reply->status < 300 && admin_key_fingerprint(reply->json, fp, sizeof(fp)) ? fp : NULL;
    }
    return admin_audit_write(&g->audit, &r);
}

/* ?export=true: the clear keys (sealed ones opened with the store's KEK ring); a key that does
 * not open fails the reply rather than return its envelope or nothing. */
static void guard_export(const struct torii_admin_ctx *ctx, struct torii_admin_reply *reply)
{
    struct torii_errbuf eb = {{0}};
    int rc = admin_export_keys(reply->json, torii_store_kek(ctx->store), &eb);

    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: export refused: %s", eb.msg);
        admin_reply_clear(reply);
        admin_reply_error(reply, 500, "export: %s", eb.msg);
    }
}

void admin_guard_dispatch(struct admin_guard *g, struct torii_admin_ctx *ctx,
                          const struct torii_http_req *req, int64_t now_ms,
                          struct torii_admin_reply *reply)
{
    char src[ADMIN_RL_KEY];
    const struct admin_token *tok = NULL;
    const struct admin_route *rule = admin_route_find(req->method, req->path);
    int is_get = admin_req_is_get(req);
    int exporting = 0;
    int mutates = 0;
    unsigned need = TORII_SCOPE_ADMIN;

    if (rule != NULL && rule->scope == ADMIN_ROUTE_PUBLIC) {
        /* public documents (JWKS): answered without authentication */
        if (rule->fn(ctx, req, reply) == TORII_ENOTFOUND) {
            admin_reply_clear(reply);
            admin_reply_error(reply, 404, "not found");
        }
        return;
    }
    admin_rl_source(req->peer, src);
    tok = guard_authenticate(g, req, src, now_ms, reply);
    if (tok == NULL) {
        return;
    }
    need = rule != NULL ? rule->scope : TORII_SCOPE_ADMIN;
    mutates = rule != NULL ? rule->mutates : !is_get;
    exporting = is_get && guard_export_asked(req);
    need |= exporting ? TORII_SCOPE_KEYS_EXPORT : 0u;
    if (!guard_scope_ok(tok, need, req, reply) || (!is_get && !guard_browser_ok(g, req, reply))) {
        return;
    }
    if (mutates && guard_audit(g, tok, src, req, NULL) != TORII_OK) {
        admin_reply_error(reply, 503, "audit log unavailable: nothing was changed");
        return;
    }
    guard_routes(ctx, req, reply);
    if (mutates && guard_audit(g, tok, src, req, reply) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: the result of %s was not audited (token=%s)", req->method,
                  tok->id);
    }
    if (!exporting && !reply->fresh_key) {
        admin_redact(reply->json);
    } else if (exporting) {
        guard_export(ctx, reply);
    }
}
