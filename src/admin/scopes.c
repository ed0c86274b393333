/* scopes.c - the one table of admin routes and the scope each needs. The guarded dispatch
 * consults it before any route runs; tests walk it. A route missing here needs "admin".
 * ?export=true (GET of certificates) needs keys:export on top (guard.c). */
#include <stdio.h>
#include <string.h>

#include "admin_guard.h"

#define R TORII_SCOPE_READ
#define W TORII_SCOPE_WRITE
#define P TORII_SCOPE_PKI
#define A TORII_SCOPE_ADMIN

const struct admin_scope_rule admin_scope_rules[] = {
    {"GET", "/metrics", R, 0},
    {"POST", "/api/_debug/clock", A, 1},
    {"GET", "/api/certificates", R, 0},
    {"POST", "/api/certificates", W, 1},
    {"GET", "/api/certificates/_template", R, 0},
    {"POST", "/api/certificates/_bulk", W, 1},
    {"PUT", "/api/certificates/_bulk", W, 1},
    {"PATCH", "/api/certificates/_bulk", W, 1},
    {"DELETE", "/api/certificates/_bulk", W, 1},
    {"POST", "/api/certificates/_renew", W, 1},
    {"POST", "/api/certificates/_bundle", W, 1},
    {"GET", "/api/certificates/*", R, 0},
    {"PUT", "/api/certificates/*", W, 1},
    {"PATCH", "/api/certificates/*", W, 1},
    {"DELETE", "/api/certificates/*", W, 1},
    {"GET", "/api/certificates/*/valid", R, 0},
    {"POST", "/api/certificates/*/_renew", W, 1},
    /* JWT with a stored key pair: signing uses the private key (never exports it), so it is
     * audited and takes the key-using scope; verifying needs only the public key. */
    {"POST", "/api/certificates/*/_sign", P, 1},
    {"POST", "/api/certificates/*/_verify", R, 0},
    {"POST", "/api/pki/keys", P, 1},
    {"POST", "/api/pki/csrs", P, 0},
    {"POST", "/api/pki/certs", P, 1},
    {"POST", "/api/pki/cas", P, 1},
    {"POST", "/api/pki/certs/_p12", P, 1},
    {"POST", "/api/pki/certs/_valid", R, 0},
    {"POST", "/api/pki/certs/_data", R, 0},
    {"POST", "/api/pki/cas/*/certs", P, 1},
    {"POST", "/api/pki/cas/*/cas", P, 1},
    {"POST", "/api/pki/cas/*/certs/_sign", P, 1},
    {"POST", "/api/pki/certs/_letencrypt", P, 1},
    {"POST", "/api/pki/certs/_letsencrypt", P, 1},
    {"GET", "/api/pki/acme/jobs/*", P, 0},
};

const size_t admin_scope_n_rules = sizeof(admin_scope_rules) / sizeof(admin_scope_rules[0]);

/* 1 when path matches pattern: literal bytes, '*' = one non-empty segment without '/'. */
static int scope_match(const char *pat, struct torii_slice path)
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

const struct admin_scope_rule *admin_scope_find(const char *method, struct torii_slice path)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;

    for (size_t i = 0; i < admin_scope_n_rules; i++) {
        if (strcmp(admin_scope_rules[i].method, m) == 0
            && scope_match(admin_scope_rules[i].pattern, path)) {
            return &admin_scope_rules[i];
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
