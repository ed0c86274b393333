/* routes.c - the one table of admin routes: method + path pattern -> scope, audit and handler.
 * The guarded dispatch (guard.c) consults it before any route runs; tests walk it. A request
 * that no row names needs "admin". ?export=true (GET of certificates) needs keys:export on top
 * (guard.c). Order matters: the first pattern that matches a path owns it, so the fixed
 * names (_bulk, _renew, ...) come before the '*' rows they would also match. */
#include <stdio.h>
#include <string.h>

#include "admin_routes.h"
#include "torii/conf.h"

#define R   TORII_SCOPE_READ
#define W   TORII_SCOPE_WRITE
#define P   TORII_SCOPE_PKI
#define A   TORII_SCOPE_ADMIN
#define PUB ADMIN_ROUTE_PUBLIC

const struct admin_route admin_routes[] = {
    {"GET", "/.well-known/jwks.json", PUB, 0, admin_public_jwks},
    {"GET", "/metrics", R, 0, admin_lc_metrics},
    {"POST", "/api/_debug/clock", A, 1, admin_lc_debug_clock},
    {"GET", "/api/certificates", R, 0, admin_certs_route},
    {"POST", "/api/certificates", W, 1, admin_certs_route},
    {"GET", "/api/certificates/_template", R, 0, admin_certs_route},
    {"POST", "/api/certificates/_bulk", W, 1, admin_certs_route},
    {"PUT", "/api/certificates/_bulk", W, 1, admin_certs_route},
    {"PATCH", "/api/certificates/_bulk", W, 1, admin_certs_route},
    {"DELETE", "/api/certificates/_bulk", W, 1, admin_certs_route},
    {"POST", "/api/certificates/_renew", W, 1, admin_lc_renew_all},
    {"POST", "/api/certificates/_bundle", W, 1, admin_pki_route},
    {"GET", "/api/certificates/*", R, 0, admin_certs_route},
    {"PUT", "/api/certificates/*", W, 1, admin_certs_route},
    {"PATCH", "/api/certificates/*", W, 1, admin_certs_route},
    {"DELETE", "/api/certificates/*", W, 1, admin_certs_route},
    {"GET", "/api/certificates/*/valid", R, 0, admin_certs_route},
    {"POST", "/api/certificates/*/_renew", W, 1, admin_lc_renew_one},
    /* JWT with a stored key pair: signing uses the private key (never exports it), so it is
     * audited and takes the key-using scope; verifying needs only the public key. */
    {"POST", "/api/certificates/*/_sign", P, 1, admin_jwt_sign_route},
    {"POST", "/api/certificates/*/_verify", R, 0, admin_jwt_verify_route},
    {"POST", "/api/pki/keys", P, 1, admin_pki_route},
    {"POST", "/api/pki/csrs", P, 0, admin_pki_route},
    {"POST", "/api/pki/certs", P, 1, admin_pki_route},
    {"POST", "/api/pki/cas", P, 1, admin_pki_route},
    {"POST", "/api/pki/certs/_p12", P, 1, admin_pki_route},
    {"POST", "/api/pki/certs/_letencrypt", P, 1, admin_acme_order_route},
    {"POST", "/api/pki/certs/_letsencrypt", P, 1, admin_acme_order_route},
    {"GET", "/api/pki/acme/jobs/*", P, 0, admin_acme_job_route},
    {"POST", "/api/pki/certs/_valid", R, 0, admin_pki_route},
    {"POST", "/api/pki/certs/_data", R, 0, admin_pki_route},
    {"POST", "/api/pki/cas/*/certs", P, 1, admin_pki_route},
    {"POST", "/api/pki/cas/*/cas", P, 1, admin_pki_route},
    {"POST", "/api/pki/cas/*/certs/_sign", P, 1, admin_pki_route},
};

const size_t admin_n_routes = sizeof(admin_routes) / sizeof(admin_routes[0]);

/* Paths no row names, by the prefix of the module that answers them (404/400/405 with its
 * own message): "/api/certificates/", "/api/certificates//valid", "/api/pki/unknown". */
static const struct {
    const char *prefix;
    admin_route_fn fn;
} route_owners[] = {
    {"/api/certificates/", admin_certs_route},
    {"/api/pki/", admin_pki_route},
};

/* 1 when path matches pattern: literal bytes, '*' = one non-empty segment without '/'. */
static int route_match(const char *pat, struct torii_slice path)
{
    size_t i = 0;

    for (; *pat != '\0'; pat++) {
        if (*pat == '*') {
            size_t start = i;
            while (i < path.len && path.ptr[i] != '/') {
                i++;
            }
            if (i == start) {
                return 0;
            }
        } else if (i >= path.len || path.ptr[i++] != *pat) {
            return 0;
        }
    }
    return i == path.len;
}

/* Index of the first row whose pattern matches path, or admin_n_routes. */
static size_t route_first(struct torii_slice path)
{
    size_t i = 0;

    while (i < admin_n_routes && !route_match(admin_routes[i].pattern, path)) {
        i++;
    }
    return i;
}

const struct admin_route *admin_route_find(const char *method, struct torii_slice path)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    size_t first = route_first(path);

    for (size_t i = first; i < admin_n_routes; i++) {
        if (strcmp(admin_routes[i].pattern, admin_routes[first].pattern) == 0
            && strcmp(admin_routes[i].method, m) == 0) {
            return &admin_routes[i];
        }
    }
    return NULL;
}

admin_route_fn admin_route_handler(struct torii_slice path)
{
    size_t first = route_first(path);

    if (first < admin_n_routes) {
        return admin_routes[first].fn;
    }
    for (size_t i = 0; i < sizeof(route_owners) / sizeof(route_owners[0]); i++) {
        size_t n = strlen(route_owners[i].prefix);
        if (path.len >= n && memcmp(path.ptr, route_owners[i].prefix, n) == 0) {
            return route_owners[i].fn;
        }
    }
    return NULL;
}

void admin_scope_names(unsigned scopes, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (unsigned bit = 1; bit <= TORII_SCOPE_ADMIN && off < len; bit <<= 1) {
        const char *name = torii_conf_scope_name(bit);
        int n;
        if ((scopes & bit) == 0 || name == NULL) {
            continue;
        }
        n = snprintf(buf + off, len - off, "%s%s", off > 0 ? "," : "", name);
        if (n < 0) {
            return;
        }
        off += (size_t)n;
    }
}
