/* admin_routes.h - internal to the admin module: the ONE table of admin routes (routes.c).
 * Each row declares a method, a path pattern, the scope a token needs, whether the call is
 * audited, and the handler that serves it; the guarded dispatch (guard.c) reads the scope
 * and the handler from the same row, so a route cannot exist without its scope. Handlers
 * live in the routes_*.c files.
 * Threads: admin thread only. Not to be included outside src/admin (and its tests). */
#ifndef TORII_ADMIN_ROUTES_H
#define TORII_ADMIN_ROUTES_H

#include <stddef.h>

#include "admin_int.h"
#include "torii/http.h"

/** A route handler: fills reply (errors included) and returns TORII_OK, or TORII_ENOTFOUND
 * when the path is not one it serves after all (the dispatch answers 404). A handler checks
 * the method itself (405 with the Allow of its resource): the dispatch hands it every request
 * whose path matches the row's pattern, whatever the method. */
typedef int (*admin_route_fn)(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                              struct torii_admin_reply *reply);

/** scope value of a public row: served before authentication, never audited. */
#define ADMIN_ROUTE_PUBLIC 0u

/** One route: method ("GET" also serves HEAD), path pattern (literal bytes, '*' = exactly one
 * non-empty segment without '/'), the TORII_SCOPE_* bits it needs (ADMIN_ROUTE_PUBLIC: none,
 * no authentication), whether it changes state (audited) and its handler. */
struct admin_route {
    const char *method;
    const char *pattern;
    unsigned scope;
    int mutates;
    admin_route_fn fn;
};

/** Every route of the admin listener but the health probes (server.c), in match order. */
extern const struct admin_route admin_routes[];
extern const size_t admin_n_routes;

/** The row of (method, path): among the rows of the first pattern (in table order) that
 * matches path, the one for method (HEAD is GET). NULL: no such row; such a request needs the
 * admin scope (deny by default) and is audited when its method is not GET/HEAD. */
const struct admin_route *admin_route_find(const char *method, struct torii_slice path);

/** The handler of path, whatever the method: the handler of the first row whose pattern
 * matches, else the module owning the path's prefix (/api/certificates, /api/pki/: it answers
 * 400/404/405 itself for the paths it knows no row for), else NULL (404). */
admin_route_fn admin_route_handler(struct torii_slice path);

/** "read", "write", ... for the names of every bit of scopes, comma-separated, into buf. */
void admin_scope_names(unsigned scopes, char *buf, size_t len);

/* ---- handlers ---- */

/* admin_certs_route (routes_certs.c) and admin_pki_route (routes_pki.c) are declared in
 * admin_int.h: each serves several rows and dispatches by path itself. */

/* routes_lifecycle.c */
int admin_lc_renew_all(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                       struct torii_admin_reply *reply);
int admin_lc_renew_one(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                       struct torii_admin_reply *reply);
int admin_lc_metrics(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                     struct torii_admin_reply *reply);
int admin_lc_debug_clock(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply);

/* routes_jwt.c */
int admin_jwt_sign_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply);
int admin_jwt_verify_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           struct torii_admin_reply *reply);

/* acme.c: POST /api/pki/certs/_letencrypt|_letsencrypt (an order; synchronous unless
 * ?async=true) and GET /api/pki/acme/jobs/:id; 503 without an ACME service. */
int admin_acme_order_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           struct torii_admin_reply *reply);
int admin_acme_job_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                         struct torii_admin_reply *reply);

/* routes_public.c: GET /.well-known/jwks.json from the PKI snapshot (404 without one). */
int admin_public_jwks(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply);

#endif
