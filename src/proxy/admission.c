/* admission.c - what a parsed request may do (torii_proxy__dispatch), checked in order: the
 * health path, /.well-known/ (answered here, a body buffered first), a valid Host (an
 * absolute-form target must agree with it), plain HTTP redirected to https, a route for the
 * Host (404 when there are no routes, 421 otherwise), the connection's certificate covering
 * the Host (tls.strict_host), the route's client-certificate policy (421/403), routes[].jwt
 * (401); then the request goes to a target (upstream.c). Worker thread only. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/daemon.h"
#include "torii/jwtroute.h"
#include "torii/mem.h"
#include "torii/stream.h"

/* Does the connection's certificate cover host? Cached per TLS connection (one Host usually;
 * the streams of an HTTP/2 connection share the cache). */
static int pc_cert_covers(struct proxy_conn *req_pc, const char *host, size_t len)
{
    struct proxy_conn *pc = torii_proxy__tls_conn(req_pc);
    SSL *ssl = torii_stream_ssl(pc->st);
    struct torii_tls_cert *cert = ssl != NULL ? torii_tls_conn_cert(ssl) : NULL;
    X509 *leaf = NULL;
    int ok = 0;

    if (pc->cov_host != NULL && strlen(pc->cov_host) == len
        && memcmp(pc->cov_host, host, len) == 0) {
        return pc->cov_ok;
    }
    if (cert != NULL && torii_tls_cert_get(cert, &leaf, NULL, NULL) == TORII_OK && leaf != NULL) {
        if (host[0] == '[') {
            char ip[64];
            if (len > 2 && len - 2 < sizeof(ip)) {
                memcpy(ip, host + 1, len - 2);
                ip[len - 2] = '\0';
                ok = X509_check_ip_asc(leaf, ip, 0) == 1;
            }
        } else if (strspn(host, "0123456789.") == len) {
            ok = X509_check_ip_asc(leaf, host, 0) == 1;
        } else {
            ok = X509_check_host(leaf, host, len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
        }
    }
    ERR_clear_error();
    free(pc->cov_host);
    pc->cov_host = torii_xstrndup(host, len);
    pc->cov_ok = ok;
    return ok;
}

/* Edge client certificates: 421 when the route's policy is not the one the handshake applied
 * (SNI of another route), 403 when a certificate is required or presented and unacceptable.
 * Returns 0 to go on, or the status answered. */
static int pc_client_auth(struct proxy_conn *pc, const struct torii_route *route)
{
    struct proxy_conn *tc = torii_proxy__tls_conn(pc);
    SSL *ssl = torii_stream_ssl(pc->st);
    const struct torii_route *sr;
    const char *why = NULL;

    if (!tc->sni_route_known) { /* the SNI is the connection's: matched once */
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        tc->sni_route = torii_routes_match(pc->pw->routes, sni, sni != NULL ? strlen(sni) : 0);
        tc->sni_route_known = 1;
    }
    /* the route whose policy the handshake applied (the default route's without SNI) */
    sr = tc->sni_route;
    if (sr != route
        && (route->client_auth.mode != TORII_TLS_CLIENT_AUTH_NONE
            || (sr != NULL && sr->client_auth.mode != TORII_TLS_CLIENT_AUTH_NONE))) {
        torii_proxy__local_error(
            pc, 421, "client certificate policy differs: connect with this host as SNI", 0);
        return 421;
    }
    if (!tc->certs_done) { /* once per TLS connection (an HTTP/2 one: for all its streams) */
        tc->certs_done = 1;
        tc->verdict = (int)torii_tls_conn_client_verdict(ssl, &why);
        if (tc->verdict == TORII_TLS_CLIENT_VERIFIED
            && torii_tls_client_cert_headers(ssl, &tc->client_cert, &tc->client_cert_chain)
                   != TORII_OK) {
            tc->verdict = TORII_TLS_CLIENT_REJECTED;
        }
        ERR_clear_error();
    }
    if (tc->verdict == TORII_TLS_CLIENT_REJECTED
        || (route->client_auth.mode == TORII_TLS_CLIENT_AUTH_REQUIRED
            && tc->verdict != TORII_TLS_CLIENT_VERIFIED)) {
        torii_proxy__local_error(pc, 403, "client certificate not accepted", 0);
        return 403;
    }
    return 0;
}

/* routes[].jwt: 401 when the token does not pass (before any byte of the body is read, like
 * the 421 above); else its claim headers are kept for torii_proxy__forward. Returns 0 to go on. */
static int pc_jwt(struct proxy_conn *pc, const struct torii_http_req *req)
{
    static const struct torii_http_header www = {{"WWW-Authenticate", 16},
                                                 {"Bearer error=\"invalid_token\"", 28}};
    char body[96];
    unsigned outcome;
    int n;

    free(pc->jwt_hdrs);
    pc->jwt_hdrs = NULL;
    outcome = torii_proxy__jwt_check(pc->pw->pki, pc->x.route->jwt, req, &pc->jwt_hdrs,
                                     &pc->jwt_hdrs_len);
    if (outcome == TORII_JWT_OK) {
        return 0;
    }
    n = snprintf(body, sizeof(body), "{\"error\":\"invalid_token\",\"reason\":\"%s\"}",
                 torii_jwt_outcome_name(outcome));
    torii_proxy__local(pc, 401, "application/json", body, n > 0 ? (size_t)n : 0, &www, 1, 0);
    return 401;
}

static void pc_send_continue(struct proxy_conn *pc)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    if (pc->rp != NULL && torii_http_parser_expects_continue(pc->rp)) {
        if (evbuffer_add(torii_stream_output(pc->st), cont, sizeof(cont) - 1) != 0) {
            pc->dead = 1;
        }
    }
}

static int px_slice_eq_ci(struct torii_slice a, struct torii_slice b)
{
    if (a.len != b.len) {
        return 0;
    }
    for (size_t i = 0; i < a.len; i++) {
        char x = a.ptr[i];
        char y = b.ptr[i];
        x = (x >= 'A' && x <= 'Z') ? (char)(x - 'A' + 'a') : x;
        y = (y >= 'A' && y <= 'Z') ? (char)(y - 'A' + 'a') : y;
        if (x != y) {
            return 0;
        }
    }
    return 1;
}

/* The authority of an absolute-form target ("http://host:port/..."). */
static struct torii_slice px_authority(struct torii_slice t)
{
    struct torii_slice a = {NULL, 0};
    const char *p = memchr(t.ptr, ':', t.len);
    size_t s;
    size_t e;

    if (p == NULL) {
        return a;
    }
    s = (size_t)(p - t.ptr) + 1;
    while (s < t.len && t.ptr[s] == '/') {
        s++;
    }
    e = s;
    while (e < t.len && t.ptr[e] != '/' && t.ptr[e] != '?' && t.ptr[e] != '#') {
        e++;
    }
    a.ptr = t.ptr + s;
    a.len = e - s;
    return a;
}

static void pc_redirect(struct proxy_conn *pc, const struct torii_http_req *req, const char *host)
{
    char loc[TORII_SNI_NAME_MAX + 32 + 8192];
    struct torii_http_header h;
    int n;
    struct torii_slice tail = req->target;

    if (tail.len == 0 || tail.ptr[0] != '/') {
        /* absolute-form: keep path and query */
        struct torii_slice a = px_authority(req->target);
        tail.ptr = a.ptr + a.len;
        tail.len = (size_t)(req->target.ptr + req->target.len - tail.ptr);
    }
    if (pc->pw->https_port == 443 || pc->pw->https_port == 0) {
        n = snprintf(loc, sizeof(loc), "https://%s%.*s", host, (int)tail.len, tail.ptr);
    } else {
        n = snprintf(loc, sizeof(loc), "https://%s:%u%.*s", host, pc->pw->https_port, (int)tail.len,
                     tail.ptr);
    }
    if (n <= 0 || (size_t)n >= sizeof(loc)) {
        torii_proxy__local_error(pc, 414, "request-target too long", 1);
        return;
    }
    if (tail.len == 0) {
        loc[n++] = '/';
    }
    h.name.ptr = "Location";
    h.name.len = 8;
    h.value.ptr = loc;
    h.value.len = (size_t)n;
    {
        static const char body[] = "{\"error\":\"use https\"}";
        torii_proxy__local(pc, 308, "application/json", body, sizeof(body) - 1, &h, 1, 0);
    }
}

static void pc_wellknown(struct proxy_conn *pc, const struct torii_http_req *req)
{
    struct torii_wellknown_reply reply;
    int rc;

    memset(&reply, 0, sizeof(reply));
    reply.body = evbuffer_new();
    if (reply.body == NULL) {
        pc->dead = 1;
        return;
    }
    rc = torii_wellknown_handle(pc->pw->wk, req, pc->tls, &reply);
    if (rc == TORII_ENOTFOUND) {
        torii_proxy__local_error(pc, 404, "not found", 0);
    } else if (rc != TORII_OK) {
        torii_proxy__local_error(pc, 500, "internal error", 0);
    } else {
        size_t len = evbuffer_get_length(reply.body);
        const unsigned char *b = len > 0 ? evbuffer_pullup(reply.body, -1) : NULL;
        torii_proxy__local(pc, reply.status, reply.content_type, b, len, reply.extra, reply.n_extra,
                           0);
    }
    evbuffer_free(reply.body);
}

/* A request with a body that torii answers itself: buffer the body first (PH_LOCAL). Over
 * TORII_WELLKNOWN_MAX_BODY: 413, and the connection closes (the rest is not read). */
static void pc_local_body_start(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;

    if (x->req_body == TORII_HTTP_BODY_LENGTH && x->req_len > TORII_WELLKNOWN_MAX_BODY) {
        torii_proxy__local_error(pc, 413, "request body too large", 1);
        return;
    }
    x->lbody = evbuffer_new();
    if (x->lbody == NULL) {
        pc->dead = 1;
        return;
    }
    pc_send_continue(pc);
    pc->phase = PH_LOCAL;
    torii_proxy__timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
}

/* The buffered body is complete: answer with it. */
void torii_proxy__local_body_done(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct torii_http_req req = *torii_http_parser_req(pc->rp);
    struct evbuffer *body = x->lbody;
    size_t len = evbuffer_get_length(body);

    x->lbody = NULL;
    x->req_done = 1;
    torii_proxy__timer_arm(pc, PT_NONE, 0);
    req.body = len > 0 ? evbuffer_pullup(body, -1) : NULL;
    req.body_len = len;
    if (len > 0 && req.body == NULL) {
        pc->dead = 1;
    } else {
        pc_wellknown(pc, &req);
    }
    evbuffer_free(body);
}

/* health.public_path, for load balancers: 200 "ok" while torii is ready (daemon.h), else 503;
 * on both listeners, for any Host. Returns 1 when the request was answered. */
static int pc_health(struct proxy_conn *pc, const struct torii_http_req *req)
{
    static const char ok[] = "ok\n";
    static const char down[] = "unavailable\n";
    static const struct torii_http_header allow = {{"Allow", 5}, {"GET, HEAD", 9}};
    const char *p = pc->pw->cfg->health_public_path;
    int ready;

    if (pc->pw->daemon == NULL || p == NULL || p[0] == '\0' || req->path.len != strlen(p)
        || memcmp(req->path.ptr, p, req->path.len) != 0) {
        return 0;
    }
    if (strcmp(req->method, "GET") != 0 && !pc->x.head_req) {
        static const char body[] = "{\"error\":\"method not allowed\"}";
        torii_proxy__local(pc, 405, "application/json", body, sizeof(body) - 1, &allow, 1, 0);
        return 1;
    }
    ready = torii_daemon_ready(pc->pw->daemon);
    torii_proxy__local(pc, ready ? 200 : 503, "text/plain", ready ? ok : down,
                       ready ? sizeof(ok) - 1 : sizeof(down) - 1, NULL, 0, 0);
    return 1;
}

static void pc_note_log_headers(struct proxy_conn *pc, const struct torii_http_req *req)
{
    const struct torii_slice *v = torii_http_req_header(req, "Referer");

    if (v != NULL) {
        pc->x.referer = *v;
    }
    v = torii_http_req_header(req, "User-Agent");
    if (v != NULL) {
        pc->x.ua = *v;
    }
}

/* A new exchange for req: what the access log and the rest of the exchange need. */
static void dispatch_begin(struct proxy_conn *pc, const struct torii_http_req *req,
                           enum torii_http_body_kind body, uint64_t body_len)
{
    struct proxy_exch *x = &pc->x;

    memset(x, 0, sizeof(*x));
    x->active = 1;
    x->t0_us = torii_proxy__now_us(pc->pw);
    x->minor = req->version_minor;
    x->keep = req->keep_alive;
    x->head_req = strcmp(req->method, "HEAD") == 0;
    x->req_body = body;
    x->req_len = body_len;
    x->req_left = x->req_len;
    x->bytes_in = pc->head_bytes;
    pc->head_bytes = 0;
    x->method.ptr = req->method;
    x->method.len = strlen(req->method);
    x->path = torii_proxy__log_target(req);
}

/* The request's host into *host: the Host header, or the authority of an absolute-form
 * target, or the SNI (HTTP/1.0 without Host). Returns 0, or -1 when answered (400). */
static int dispatch_host(struct proxy_conn *pc, const struct torii_http_req *req,
                         struct torii_slice *host)
{
    const struct torii_slice *hv = torii_http_req_header(req, "Host");
    const char *sni = NULL;

    host->ptr = NULL;
    host->len = 0;
    if (pc->tls) {
        sni = SSL_get_servername(torii_stream_ssl(pc->st), TLSEXT_NAMETYPE_host_name);
    }
    if (hv != NULL) {
        *host = *hv;
    }
    if (req->target.len > 0 && req->target.ptr[0] != '/' && req->target.ptr[0] != '*') {
        /* absolute-form: the authority must be the Host (RFC 9112 section 3.2.2), and
         * userinfo is not allowed in http(s) URIs (RFC 9110 section 4.2.4). */
        struct torii_slice a = px_authority(req->target);
        if (a.len > 0 && memchr(a.ptr, '@', a.len) != NULL) {
            torii_proxy__local_error(pc, 400, "userinfo in request-target", 1);
            return -1;
        }
        if (hv == NULL) {
            *host = a;
        } else if (!px_slice_eq_ci(a, *hv)) {
            torii_proxy__local_error(pc, 400, "request-target authority differs from Host", 1);
            return -1;
        }
    }
    if (host->len == 0 && sni != NULL) {
        host->ptr = sni; /* HTTP/1.0 without Host */
        host->len = strlen(sni);
    }
    return 0;
}

/* A routed request on the https listener (hn: the normalized host, n its length): the route's
 * checks, then a target. */
static void dispatch_route(struct proxy_conn *pc, const struct torii_http_req *req,
                           struct torii_slice host, const char *hn, size_t n)
{
    struct proxy_exch *x = &pc->x;

    x->route = torii_routes_match(pc->pw->routes, hn, n);
    if (x->route == NULL) {
        /* No routes at all: nothing is misdirected, there is just nothing here. */
        if (torii_routes_count(pc->pw->routes) == 0) {
            torii_proxy__local_error(pc, 404, "no route matched this request", 0);
        } else {
            torii_proxy__local_error(pc, 421, "no route for this host", 0);
        }
        return;
    }
    /* tls.strict_host off: a Host the certificate does not name may still be served (a
     * default route behind an IP, say); the client-certificate check below stays. HTTP/2 streams
     * alike: clients coalescing connections on the certificate's names get 421 when it is on. */
    if (pc->pw->cfg->strict_host && !pc_cert_covers(pc, hn, n)) {
        torii_proxy__local_error(pc, 421, "host not covered by this connection's certificate", 0);
        return;
    }
    if (pc_client_auth(pc, x->route) != 0) {
        return;
    }
    if (x->route->jwt != NULL && pc_jwt(pc, req) != 0) {
        return;
    }
    if (torii_proxy__upgrade_admit(pc, req) != 0) {
        return;
    }
    x->target = torii_proxy__target_pick(pc->pw, x->route);
    if (torii_proxy__forward(pc, req, host, 1) != TORII_OK) {
        torii_proxy__up_release(pc, 0);
        torii_proxy__local_error(pc, 502, "upstream connection failed", 0);
        return;
    }
    pc_send_continue(pc);
    if (x->req_body == TORII_HTTP_BODY_NONE) {
        pc->phase = PH_WAIT;
        torii_proxy__timer_arm(pc, PT_NONE, 0);
    } else {
        pc->phase = PH_BODY;
        torii_proxy__timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
    }
    torii_proxy__up_timeouts(pc);
}

void torii_proxy__dispatch(struct proxy_conn *pc, const struct torii_http_req *req,
                           enum torii_http_body_kind body, uint64_t body_len)
{
    struct torii_slice host;
    char hn[TORII_SNI_NAME_MAX + 1];
    int n;

    dispatch_begin(pc, req, body, body_len);
    if (dispatch_host(pc, req, &host) != 0) {
        return;
    }
    pc->x.host = host;
    pc_note_log_headers(pc, req);
    n = host.len > 0 ? torii_proxy_host_parse(host, hn) : TORII_EINVAL;
    if (pc_health(pc, req)) {
        return;
    }
    if (req->path.len >= 13 && memcmp(req->path.ptr, "/.well-known/", 13) == 0) {
        if (body == TORII_HTTP_BODY_NONE) {
            pc_wellknown(pc, req);
        } else {
            pc_local_body_start(pc);
        }
        return;
    }
    if (n <= 0) {
        torii_proxy__local_error(pc, 400, "missing or invalid Host", 1);
        return;
    }
    if (!pc->tls) {
        pc_redirect(pc, req, hn);
        return;
    }
    dispatch_route(pc, req, host, hn, (size_t)n);
}
