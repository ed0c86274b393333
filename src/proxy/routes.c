/* routes.c - routes[] of the configuration validated and compiled into an immutable table:
 * host patterns in one sorted array (bsearch, exact name before one-label wildcard), backend
 * targets resolved once. Every error names the route index and key. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "torii/jwtroute.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/proxy.h"

#define ROUTES_DEF_CONNECT_MS 5000
#define ROUTES_DEF_READ_MS    60000
#define ROUTES_DEF_IDLE_MS    60000
#define ROUTES_DEF_MAX_IDLE   32
#define ROUTES_DEF_H2_CONNS   2
#define ROUTES_MAX_MS         3600000

struct routes_host {
    const char *name; /* borrowed from its route */
    const struct torii_route *route;
};

struct torii_routes {
    struct torii_route *routes;
    size_t n;
    struct routes_host *hosts; /* sorted by name; "*" is not in it */
    size_t n_hosts;
    const struct torii_route *def; /* the route with "*": any host the others do not name */
    size_t n_targets;
};

static int routes_is_comment(const char *k)
{
    return strncmp(k, "//", 2) == 0;
}

/* Unknown members are errors (typos must not silently change routing). */
static int routes_check_keys(json_t *obj, const char *const *allowed, const char *where,
                             struct torii_errbuf *eb)
{
    const char *k;
    json_t *v;

    json_object_foreach (obj, k, v) {
        int ok = routes_is_comment(k);
        for (size_t i = 0; !ok && allowed[i] != NULL; i++) {
            ok = strcmp(allowed[i], k) == 0;
        }
        if (!ok) {
            return torii_errf(eb, TORII_EINVAL, "%s.%s: unknown key", where, k);
        }
    }
    return TORII_OK;
}

static int routes_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* A host pattern: a DNS name, "*." followed by one, or "*" alone (any host no other route
 * names). Lower-cased into out. */
static int routes_host_pattern(const char *s, char *out, size_t outlen)
{
    size_t len = strlen(s);
    size_t i = 0;

    if (len == 0 || len >= outlen || len > TORII_SNI_NAME_MAX) {
        return TORII_EINVAL;
    }
    if (s[len - 1] == '.') {
        len--;
    }
    if (len == 1 && s[0] == '*') { /* the default route */
        out[0] = '*';
        out[1] = '\0';
        return TORII_OK;
    }
    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        out[0] = '*';
        out[1] = '.';
        i = 2;
        if (len == 2) {
            return TORII_EINVAL;
        }
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
        }
        if (!routes_host_char(c)) {
            return TORII_EINVAL;
        }
        if (c == '.' && (i == 0 || out[i - 1] == '.')) {
            return TORII_EINVAL; /* empty label */
        }
        out[i] = (char)c;
    }
    out[len] = '\0';
    return TORII_OK;
}

static int routes_get_ms(json_t *obj, const char *key, uint32_t *dst, const char *where,
                         struct torii_errbuf *eb)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > ROUTES_MAX_MS) {
        return torii_errf(eb, TORII_EINVAL, "%s.%s: expected milliseconds in 1..%d", where, key,
                          ROUTES_MAX_MS);
    }
    *dst = (uint32_t)json_integer_value(v);
    return TORII_OK;
}

static int routes_get_str(json_t *obj, const char *key, char **dst, const char *where,
                          struct torii_errbuf *eb)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        return torii_errf(eb, TORII_EINVAL, "%s.%s: expected a non-empty string", where, key);
    }
    *dst = torii_xstrdup(json_string_value(v));
    return TORII_OK;
}

/* host:port into t (address, host, port, name). Start-up only: may block on DNS. */
static int routes_resolve(const char *host, unsigned long pv, struct torii_route_target *t,
                          const char *where, struct torii_errbuf *eb)
{
    char port[8];
    char name[300];
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    int gai;

    (void)snprintf(port, sizeof(port), "%lu", pv);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0 || res == NULL || res->ai_addrlen > sizeof(t->addr)) {
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return torii_errf(eb, TORII_EINVAL, "%s: cannot resolve %s: %s", where, host,
                          gai != 0 ? gai_strerror(gai) : "no address");
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = (int)res->ai_addrlen;
    freeaddrinfo(res);
    t->host = torii_xstrdup(host);
    t->port = (uint16_t)pv;
    (void)snprintf(name, sizeof(name), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    t->name = torii_xstrdup(name);
    return TORII_OK;
}

/* "[http://|https://]host:port" -> target, resolved now (start-up only: may block on DNS). */
static int routes_target(const char *spec, struct torii_route_target *t, const char *where,
                         struct torii_errbuf *eb)
{
    const char *s = spec;
    const char *hs;
    const char *he;
    const char *ps = NULL;
    char host[256];
    unsigned long pv;
    char *end = NULL;

    if (strncmp(s, "http://", 7) == 0) {
        s += 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        s += 8;
        t->tls = 1;
    } else if (strstr(s, "://") != NULL) {
        return torii_errf(eb, TORII_EINVAL, "%s: scheme must be http or https", where);
    }
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (he == NULL) {
            return torii_errf(eb, TORII_EINVAL, "%s: unterminated IPv6 literal", where);
        }
        if (he[1] == ':') {
            ps = he + 2;
        } else if (he[1] != '\0') {
            return torii_errf(eb, TORII_EINVAL, "%s: expected host:port", where);
        }
    } else {
        hs = s;
        he = strchr(s, ':');
        if (he != NULL) {
            ps = he + 1;
        } else {
            he = s + strlen(s);
        }
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(host)) {
        return torii_errf(eb, TORII_EINVAL, "%s: bad host", where);
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (strpbrk(host, "/@?# ") != NULL) {
        return torii_errf(eb, TORII_EINVAL, "%s: bad host (no path or userinfo allowed)", where);
    }
    if (ps == NULL) {
        if (s == spec) {
            return torii_errf(eb, TORII_EINVAL, "%s: expected host:port", where);
        }
        pv = t->tls ? 443 : 80;
    } else {
        pv = strtoul(ps, &end, 10);
        if (ps[0] < '0' || ps[0] > '9' || *end != '\0' || pv == 0 || pv > 65535) {
            return torii_errf(eb, TORII_EINVAL, "%s: bad port (expected host:port)", where);
        }
    }
    return routes_resolve(host, pv, t, where, eb);
}

/* backend.tls with a plain target would send the request in clear and ignore the TLS
 * settings (trusted CA, client certificate): an error, never a silent downgrade. */
static int routes_tls_targets(const struct torii_route_backend *be, const char *where,
                              struct torii_errbuf *eb)
{
    for (size_t i = 0; i < be->n_targets; i++) {
        if (!be->targets[i].tls) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.tls: given, but %s.targets[%zu] (%s) is plain http: "
                              "write https://%s, or remove tls",
                              where, where, i, be->targets[i].name, be->targets[i].name);
        }
    }
    return TORII_OK;
}

static int routes_backend_targets(json_t *b, struct torii_route_backend *be, size_t *n_targets,
                                  const char *where, struct torii_errbuf *eb)
{
    json_t *targets = json_object_get(b, "targets");
    char w[128];
    int rc = TORII_OK;

    if (!json_is_array(targets) || json_array_size(targets) == 0) {
        return torii_errf(eb, TORII_EINVAL, "%s.targets: expected a non-empty array", where);
    }
    be->targets = torii_xcalloc(json_array_size(targets), sizeof(*be->targets));
    for (size_t i = 0; i < json_array_size(targets); i++) {
        json_t *t = json_array_get(targets, i);
        (void)snprintf(w, sizeof(w), "%s.targets[%zu]", where, i);
        if (!json_is_string(t)) {
            return torii_errf(eb, TORII_EINVAL, "%s: expected a string", w);
        }
        TORII_TRY(routes_target(json_string_value(t), &be->targets[i], w, eb));
        be->targets[i].index = (unsigned)(*n_targets)++;
        be->n_targets++;
    }
out:
    return rc;
}

/* backend.tls (v): trusted CA, client certificate, SNI; every target must be https. */
static int routes_backend_tls(json_t *v, struct torii_route_backend *be, const char *where,
                              struct torii_errbuf *eb)
{
    static const char *const tls_keys[] = {"trusted_ca", "client_cert", "sni", NULL};
    char w[128];
    int rc = TORII_OK;

    (void)snprintf(w, sizeof(w), "%s.tls", where);
    if (!json_is_object(v)) {
        return torii_errf(eb, TORII_EINVAL, "%s: expected an object", w);
    }
    TORII_TRY(routes_check_keys(v, tls_keys, w, eb));
    TORII_TRY(routes_get_str(v, "trusted_ca", &be->tls.trusted_ca, w, eb));
    TORII_TRY(routes_get_str(v, "client_cert", &be->tls.client_cert, w, eb));
    TORII_TRY(routes_get_str(v, "sni", &be->tls.sni, w, eb));
    if (be->tls.sni != NULL) {
        char tmp[TORII_SNI_NAME_MAX + 1];
        if (routes_host_pattern(be->tls.sni, tmp, sizeof(tmp)) != TORII_OK || tmp[0] == '*') {
            return torii_errf(eb, TORII_EINVAL, "%s.sni: expected a host name", w);
        }
    }
    be->has_tls = 1;
    TORII_TRY(routes_tls_targets(be, where, eb));
out:
    return rc;
}

/* backend.timeouts (v): connect_ms, read_ms, idle_ms. */
static int routes_backend_timeouts(json_t *v, struct torii_route_backend *be, const char *where,
                                   struct torii_errbuf *eb)
{
    static const char *const to_keys[] = {"connect_ms", "read_ms", "idle_ms", NULL};
    char w[128];
    int rc = TORII_OK;

    (void)snprintf(w, sizeof(w), "%s.timeouts", where);
    if (!json_is_object(v)) {
        return torii_errf(eb, TORII_EINVAL, "%s: expected an object", w);
    }
    TORII_TRY(routes_check_keys(v, to_keys, w, eb));
    TORII_TRY(routes_get_ms(v, "connect_ms", &be->connect_ms, w, eb));
    TORII_TRY(routes_get_ms(v, "read_ms", &be->read_ms, w, eb));
    TORII_TRY(routes_get_ms(v, "idle_ms", &be->idle_ms, w, eb));
out:
    return rc;
}

/* backend.max_idle, backend.protocol and backend.h2_connections: how connections to the
 * targets are made and kept (after the targets: h2 needs https ones, h2c plain ones). */
static int routes_backend_conns(json_t *b, struct torii_route_backend *be, const char *where,
                                struct torii_errbuf *eb)
{
    json_t *v = json_object_get(b, "max_idle");
    const char *p;
    int want_tls;

    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000) {
            return torii_errf(eb, TORII_EINVAL, "%s.max_idle: expected an integer in 0..100000",
                              where);
        }
        be->max_idle = (uint32_t)json_integer_value(v);
    }
    v = json_object_get(b, "protocol");
    p = v != NULL ? json_string_value(v) : "http1";

    if (p == NULL || (strcmp(p, "http1") != 0 && strcmp(p, "h2") != 0 && strcmp(p, "h2c") != 0)) {
        return torii_errf(eb, TORII_EINVAL, "%s.protocol: expected \"http1\", \"h2\" or \"h2c\"",
                          where);
    }
    be->protocol = strcmp(p, "h2") == 0    ? TORII_ROUTE_H2
                   : strcmp(p, "h2c") == 0 ? TORII_ROUTE_H2C
                                           : TORII_ROUTE_HTTP1;
    want_tls = be->protocol == TORII_ROUTE_H2;
    for (size_t i = 0; be->protocol != TORII_ROUTE_HTTP1 && i < be->n_targets; i++) {
        if (be->targets[i].tls != want_tls) {
            return torii_errf(eb, TORII_EINVAL, "%s.targets[%zu]: protocol \"%s\" needs %s targets",
                              where, i, p, want_tls ? "https://" : "http://");
        }
    }
    be->h2_connections = ROUTES_DEF_H2_CONNS;
    v = json_object_get(b, "h2_connections");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 64) {
            return torii_errf(eb, TORII_EINVAL, "%s.h2_connections: expected an integer in 1..64",
                              where);
        }
        if (be->protocol == TORII_ROUTE_HTTP1) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.h2_connections: only with protocol \"h2\" or \"h2c\"", where);
        }
        be->h2_connections = (uint32_t)json_integer_value(v);
    }
    return TORII_OK;
}

static int routes_backend(json_t *b, struct torii_route_backend *be, size_t *n_targets,
                          const char *where, struct torii_errbuf *eb)
{
    static const char *const keys[] = {"targets",        "tls", "timeouts", "max_idle", "protocol",
                                       "h2_connections", NULL};
    json_t *v;
    int rc = TORII_OK;

    be->connect_ms = ROUTES_DEF_CONNECT_MS;
    be->read_ms = ROUTES_DEF_READ_MS;
    be->idle_ms = ROUTES_DEF_IDLE_MS;
    be->max_idle = ROUTES_DEF_MAX_IDLE;
    if (!json_is_object(b)) {
        return torii_errf(eb, TORII_EINVAL, "%s: expected an object", where);
    }
    TORII_TRY(routes_check_keys(b, keys, where, eb));
    TORII_TRY(routes_backend_targets(b, be, n_targets, where, eb));
    if ((v = json_object_get(b, "tls")) != NULL) {
        TORII_TRY(routes_backend_tls(v, be, where, eb));
    }
    if ((v = json_object_get(b, "timeouts")) != NULL) {
        TORII_TRY(routes_backend_timeouts(v, be, where, eb));
    }
    TORII_TRY(routes_backend_conns(b, be, where, eb));
out:
    return rc;
}

static int routes_client_auth(json_t *ca, struct torii_route_client_auth *out, const char *where,
                              struct torii_errbuf *eb)
{
    static const char *const keys[] = {"mode", "trusted_cas", NULL};
    json_t *mode;
    json_t *cas;
    const char *m;
    int rc = TORII_OK;

    if (!json_is_object(ca)) {
        return torii_errf(eb, TORII_EINVAL, "%s: expected an object", where);
    }
    TORII_TRY(routes_check_keys(ca, keys, where, eb));
    mode = json_object_get(ca, "mode");
    m = json_is_string(mode) ? json_string_value(mode) : NULL;
    if (m == NULL && mode != NULL) {
        return torii_errf(eb, TORII_EINVAL, "%s.mode: expected none, optional or required", where);
    }
    if (m == NULL || strcmp(m, "none") == 0) {
        out->mode = TORII_TLS_CLIENT_AUTH_NONE;
    } else if (strcmp(m, "optional") == 0) {
        out->mode = TORII_TLS_CLIENT_AUTH_OPTIONAL;
    } else if (strcmp(m, "required") == 0) {
        out->mode = TORII_TLS_CLIENT_AUTH_REQUIRED;
    } else {
        return torii_errf(eb, TORII_EINVAL, "%s.mode: expected none, optional or required", where);
    }
    cas = json_object_get(ca, "trusted_cas");
    if (cas != NULL) {
        if (!json_is_array(cas)) {
            return torii_errf(eb, TORII_EINVAL, "%s.trusted_cas: expected an array of ids", where);
        }
        out->trusted_cas = torii_xcalloc(json_array_size(cas) + 1, sizeof(char *));
        for (size_t i = 0; i < json_array_size(cas); i++) {
            json_t *id = json_array_get(cas, i);
            if (!json_is_string(id) || json_string_length(id) == 0) {
                return torii_errf(eb, TORII_EINVAL,
                                  "%s.trusted_cas[%zu]: expected a certificate id", where, i);
            }
            out->trusted_cas[out->n_trusted_cas++] = torii_xstrdup(json_string_value(id));
        }
    }
    out->policy.mode = out->mode;
    if (out->mode != TORII_TLS_CLIENT_AUTH_NONE && out->n_trusted_cas == 0) {
        return torii_errf(eb, TORII_EINVAL, "%s.trusted_cas: required when mode is %s", where, m);
    }
out:
    return rc;
}

static int routes_hosts(json_t *hosts, struct torii_route *r, const char *where,
                        struct torii_errbuf *eb)
{
    if (!json_is_array(hosts) || json_array_size(hosts) == 0) {
        return torii_errf(eb, TORII_EINVAL, "%s.hosts: expected a non-empty array of names", where);
    }
    r->hosts = torii_xcalloc(json_array_size(hosts), sizeof(char *));
    for (size_t i = 0; i < json_array_size(hosts); i++) {
        json_t *h = json_array_get(hosts, i);
        char name[TORII_SNI_NAME_MAX + 1];
        if (!json_is_string(h)
            || routes_host_pattern(json_string_value(h), name, sizeof(name)) != TORII_OK) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.hosts[%zu]: expected a host name, *.domain or *", where, i);
        }
        r->hosts[r->n_hosts++] = torii_xstrdup(name);
    }
    return TORII_OK;
}

/* upgrades (v, NULL: absent): the protocols an HTTP/1.1 Upgrade may switch to, lower-cased;
 * ["websocket"] by default, [] for none; h2c never (HTTP/2 is offered by ALPN only); none
 * towards an HTTP/2 backend (an error when asked for). */
static int routes_upgrades(json_t *v, struct torii_route *r, const char *where,
                           struct torii_errbuf *eb)
{
    size_t n = v != NULL ? json_array_size(v) : 1;

    if (v != NULL && !json_is_array(v)) {
        return torii_errf(eb, TORII_EINVAL, "%s.upgrades: expected an array of protocol names",
                          where);
    }
    if (r->backend.protocol != TORII_ROUTE_HTTP1 && n > 0) {
        if (v == NULL) { /* the default: none towards an HTTP/2 backend */
            r->upgrades = torii_xcalloc(1, sizeof(char *));
            return TORII_OK;
        }
        return torii_errf(eb, TORII_EINVAL,
                          "%s.upgrades: an HTTP/1.1 Upgrade cannot be carried to an HTTP/2 "
                          "backend (backend.protocol h2/h2c): use []",
                          where);
    }
    r->upgrades = torii_xcalloc(n + 1, sizeof(char *));
    if (v == NULL) {
        r->upgrades[r->n_upgrades++] = torii_xstrdup("websocket");
        return TORII_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const char *t = json_string_value(json_array_get(v, i));
        size_t len = t != NULL ? strlen(t) : 0;
        if (len == 0 || len > 64
            || strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789!#$%&'*+-.^_`|~/")
                   != len) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.upgrades[%zu]: expected a protocol name (a token, e.g. "
                              "\"websocket\")",
                              where, i);
        }
        if (strcasecmp(t, "h2c") == 0) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.upgrades[%zu]: h2c is never forwarded (HTTP/2 is offered by "
                              "ALPN only)",
                              where, i);
        }
        r->upgrades[r->n_upgrades] = torii_xstrdup(t);
        for (char *c = r->upgrades[r->n_upgrades]; *c != '\0'; c++) {
            *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
        }
        r->n_upgrades++;
    }
    return TORII_OK;
}

/* routes[].http2 (absent: on). */
static int routes_http2(json_t *v, struct torii_route *r, const char *where,
                        struct torii_errbuf *eb)
{
    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_boolean(v)) {
        return torii_errf(eb, TORII_EINVAL, "%s.http2: expected true or false", where);
    }
    r->no_http2 = json_is_false(v);
    return TORII_OK;
}

/* The optional members of a route after its backend: client_auth, jwt, upgrades, http2. */
static int routes_options(json_t *jr, struct torii_route *r, const char *where,
                          struct torii_errbuf *eb)
{
    char w[96];
    json_t *v;
    int rc = TORII_OK;

    if ((v = json_object_get(jr, "client_auth")) != NULL) {
        (void)snprintf(w, sizeof(w), "%s.client_auth", where);
        TORII_TRY(routes_client_auth(v, &r->client_auth, w, eb));
    }
    if ((v = json_object_get(jr, "jwt")) != NULL) {
        (void)snprintf(w, sizeof(w), "%s.jwt", where);
        TORII_TRY(torii_route_jwt_parse(v, r->index, w, &r->jwt, eb));
    }
    TORII_TRY(routes_upgrades(json_object_get(jr, "upgrades"), r, where, eb));
    rc = routes_http2(json_object_get(jr, "http2"), r, where, eb);
out:
    return rc;
}

static int routes_one(json_t *jr, struct torii_route *r, size_t *n_targets, struct torii_errbuf *eb)
{
    static const char *const keys[] = {"hosts",    "backend", "client_auth", "jwt",
                                       "upgrades", "http2",   NULL};
    char where[64];
    char w[96];
    json_t *v;
    int rc = TORII_OK;

    (void)snprintf(where, sizeof(where), "routes[%u]", r->index);
    if (!json_is_object(jr)) {
        return torii_errf(eb, TORII_EINVAL, "%s: expected an object", where);
    }
    TORII_TRY(routes_check_keys(jr, keys, where, eb));
    TORII_TRY(routes_hosts(json_object_get(jr, "hosts"), r, where, eb));
    v = json_object_get(jr, "backend");
    if (v == NULL) {
        return torii_errf(eb, TORII_EINVAL, "%s.backend: missing", where);
    }
    (void)snprintf(w, sizeof(w), "%s.backend", where);
    TORII_TRY(routes_backend(v, &r->backend, n_targets, w, eb));
    rc = routes_options(jr, r, where, eb);
out:
    return rc;
}

static int routes_host_cmp(const void *a, const void *b)
{
    return strcmp(((const struct routes_host *)a)->name, ((const struct routes_host *)b)->name);
}

/* Note a problem of routes[] as "config: <message>". */
static void routes_note(struct torii_conf_errs *errs, const struct torii_errbuf *eb)
{
    char line[TORII_ERRBUF_SIZE + 16];

    (void)snprintf(line, sizeof(line), "config: %s", eb->msg);
    torii_conf_errs_add(errs, line);
}

/* The host index: every name once, at most one default route ("*"). Problems noted. */
static void routes_index(struct torii_routes *rt, size_t nh, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};

    rt->hosts = torii_xcalloc(nh ? nh : 1, sizeof(*rt->hosts));
    for (size_t i = 0; i < rt->n; i++) {
        for (size_t j = 0; j < rt->routes[i].n_hosts; j++) {
            const char *h = rt->routes[i].hosts[j];
            if (strcmp(h, "*") != 0) {
                rt->hosts[rt->n_hosts].name = h;
                rt->hosts[rt->n_hosts].route = &rt->routes[i];
                rt->n_hosts++;
            } else if (rt->def != NULL && rt->def != &rt->routes[i]) {
                (void)torii_errf(&eb, TORII_EINVAL,
                                 "routes[%zu].hosts: \"*\" (the default route) is already "
                                 "routes[%u]: only one route may have it",
                                 i, rt->def->index);
                routes_note(errs, &eb);
            } else {
                rt->def = &rt->routes[i];
            }
        }
    }
    qsort(rt->hosts, rt->n_hosts, sizeof(*rt->hosts), routes_host_cmp);
    for (size_t i = 1; i < rt->n_hosts; i++) {
        if (strcmp(rt->hosts[i - 1].name, rt->hosts[i].name) == 0) {
            unsigned a = rt->hosts[i - 1].route->index;
            unsigned b = rt->hosts[i].route->index;
            (void)torii_errf(&eb, TORII_EINVAL,
                             "routes[%u].hosts: %s is already served by routes[%u]", a > b ? a : b,
                             rt->hosts[i].name, a > b ? b : a);
            routes_note(errs, &eb);
        }
    }
}

int torii_routes_check(const struct torii_config *cfg, struct torii_routes **out,
                       struct torii_conf_errs *errs)
{
    struct torii_routes *rt = torii_xcalloc(1, sizeof(*rt));
    struct torii_errbuf eb = {{0}};
    json_t *arr = cfg->routes;
    size_t n0 = errs->n;
    size_t nh = 0;

    *out = NULL;
    if (arr != NULL && !json_is_array(arr)) {
        (void)torii_errf(&eb, TORII_EINVAL, "routes: expected an array");
        routes_note(errs, &eb);
        torii_routes_free(rt);
        return TORII_EINVAL;
    }
    rt->n = arr != NULL ? json_array_size(arr) : 0;
    rt->routes = torii_xcalloc(rt->n ? rt->n : 1, sizeof(*rt->routes));
    for (size_t i = 0; i < rt->n; i++) {
        rt->routes[i].index = (unsigned)i;
        if (routes_one(json_array_get(arr, i), &rt->routes[i], &rt->n_targets, &eb) != TORII_OK) {
            routes_note(errs, &eb);
        }
        nh += rt->routes[i].n_hosts;
    }
    routes_index(rt, nh, errs);
    if (errs->n > n0) {
        torii_routes_free(rt);
        return TORII_EINVAL;
    }
    *out = rt;
    return TORII_OK;
}

int torii_routes_compile(const struct torii_config *cfg, struct torii_routes **out,
                         struct torii_errbuf *eb)
{
    struct torii_conf_errs errs = {NULL, 0};
    int rc = torii_routes_check(cfg, out, &errs);

    if (rc != TORII_OK) {
        /* without the "config: " prefix of the list */
        const char *m = errs.n > 0 ? errs.msgs[0] + strlen("config: ") : torii_strerror(rc);
        if (errs.n > 1) {
            (void)torii_errf(eb, rc, "%s (and %zu more problems)", m, errs.n - 1);
        } else {
            (void)torii_errf(eb, rc, "%s", m);
        }
    }
    torii_conf_errs_free(&errs);
    return rc;
}

void torii_routes_free(struct torii_routes *rt)
{
    if (rt == NULL) {
        return;
    }
    for (size_t i = 0; i < rt->n; i++) {
        struct torii_route *r = &rt->routes[i];
        for (size_t j = 0; j < r->n_hosts; j++) {
            free(r->hosts[j]);
        }
        free(r->hosts);
        for (size_t j = 0; j < r->backend.n_targets; j++) {
            free(r->backend.targets[j].name);
            free(r->backend.targets[j].host);
        }
        free(r->backend.targets);
        free(r->backend.tls.trusted_ca);
        free(r->backend.tls.client_cert);
        free(r->backend.tls.sni);
        for (size_t j = 0; j < r->client_auth.n_trusted_cas; j++) {
            free(r->client_auth.trusted_cas[j]);
        }
        free(r->client_auth.trusted_cas);
        torii_tls_trust_free(r->client_auth.policy.trust);
        torii_tls_upstream_free(r->backend.tls_ctx);
        torii_route_jwt_free(r->jwt);
        for (size_t j = 0; j < r->n_upgrades; j++) {
            free(r->upgrades[j]);
        }
        free(r->upgrades);
    }
    free(rt->routes);
    free(rt->hosts);
    free(rt);
}

static const struct torii_route *routes_find(const struct torii_routes *rt, const char *key)
{
    size_t lo = 0;
    size_t hi = rt->n_hosts;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, rt->hosts[mid].name);
        if (c == 0) {
            return rt->hosts[mid].route;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const struct torii_route *torii_routes_match(const struct torii_routes *rt, const char *host,
                                             size_t len)
{
    char name[TORII_SNI_NAME_MAX + 1];
    char key[TORII_SNI_KEY_MAX + 1];
    const struct torii_route *r;
    int n;

    if (rt == NULL) {
        return NULL;
    }
    if (host == NULL || rt->n_hosts == 0) {
        return rt->def;
    }
    n = torii_sni_name_normalize(host, len, name);
    if (n <= 0) {
        return rt->def; /* e.g. "[::1]": no name route can match it */
    }
    r = routes_find(rt, name);
    if (r == NULL && torii_sni_wildcard_key(name, (size_t)n, key) > 0) {
        r = routes_find(rt, key);
    }
    return r != NULL ? r : rt->def;
}

size_t torii_routes_count(const struct torii_routes *rt)
{
    return rt != NULL ? rt->n : 0;
}

const struct torii_route *torii_routes_get(const struct torii_routes *rt, size_t i)
{
    return rt != NULL && i < rt->n ? &rt->routes[i] : NULL;
}

size_t torii_routes_n_targets(const struct torii_routes *rt)
{
    return rt != NULL ? rt->n_targets : 0;
}

const struct torii_route_client_auth *torii_routes_client_auth(const struct torii_routes *rt,
                                                               const char *name, size_t len)
{
    const struct torii_route *r = torii_routes_match(rt, name, len);

    if (r == NULL || r->client_auth.mode == TORII_TLS_CLIENT_AUTH_NONE) {
        return NULL;
    }
    return &r->client_auth;
}

const struct torii_tls_client_auth *torii_routes_tls_lookup(void *arg, const char *host, size_t len)
{
    const struct torii_route_client_auth *ca = torii_routes_client_auth(arg, host, len);

    return ca != NULL ? &ca->policy : NULL;
}

int torii_routes_h2_allowed(void *arg, const char *name, size_t len)
{
    const struct torii_route *r = torii_routes_match(arg, name, len);

    return r == NULL || !r->no_http2;
}

int torii_routes_bind_tls(struct torii_routes *rt, struct torii_table *table,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (size_t i = 0; rt != NULL && i < rt->n; i++) {
        struct torii_route *r = &rt->routes[i];
        struct torii_tls_upstream_opts uo;
        int any_tls = 0;

        if (r->client_auth.mode != TORII_TLS_CLIENT_AUTH_NONE
            && r->client_auth.policy.trust == NULL) {
            rc =
                torii_tls_trust_new(table, (const char *const *)r->client_auth.trusted_cas,
                                    r->client_auth.n_trusted_cas, &r->client_auth.policy.trust, eb);
            if (rc != TORII_OK) {
                char m[TORII_ERRBUF_SIZE] = "";
                if (eb != NULL) {
                    memcpy(m, eb->msg, sizeof(m));
                }
                rc = torii_errf(eb, rc, "routes[%zu].client_auth: %s", i, m);
                goto out;
            }
        }
        for (size_t j = 0; j < r->backend.n_targets; j++) {
            any_tls |= r->backend.targets[j].tls;
        }
        if (!any_tls || r->backend.tls_ctx != NULL) {
            continue;
        }
        memset(&uo, 0, sizeof(uo));
        uo.table = table;
        uo.trusted_ca_id = r->backend.tls.trusted_ca;
        uo.client_cert_id = r->backend.tls.client_cert;
        uo.sni = r->backend.tls.sni;
        rc = torii_tls_upstream_new(&uo, &r->backend.tls_ctx, eb);
        if (rc != TORII_OK) {
            char m[TORII_ERRBUF_SIZE] = "";
            if (eb != NULL) {
                memcpy(m, eb->msg, sizeof(m));
            }
            rc = torii_errf(eb, rc, "routes[%zu].backend.tls: %s", i, m);
            goto out;
        }
    }
out:
    return rc;
}
