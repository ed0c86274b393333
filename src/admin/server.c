/* server.c - the admin server: one thread running its own event_base, an evconnlistener on
 * admin.listen (plain on loopback, else TLS with client certificates: admin.tls), every
 * connection served by the strict HTTP/1.1 engine (http.h). Dispatch goes through the guard
 * (guard.c: rate limit, tokens and scopes, browser checks, audit, redaction), then the route
 * modules, else 404. Replies are serialized here (compact JSON unless a route set raw bytes).
 * Threads: torii_admin_start/stop on the main thread; accept, dispatch and routes on the
 * admin thread. The main thread reaches the loop only through stop_ev (event_active).
 * Ownership: the server owns its base, listener, connections, TLS context and the guard
 * (token hashes wiped on free); everything in torii_admin_opts is borrowed. */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin_guard.h"
#include "admin_int.h"
#include "torii/admin.h"
#include "torii/clock.h"
#include "torii/daemon.h"
#include "torii/http.h"
#include "torii/log.h"
#include "torii/mem.h"

#define ADMIN_DEFAULT_LISTEN "127.0.0.1:9000"
#define ADMIN_BACKLOG        128
#define ADMIN_BACKOFF_MS     100 /* accept paused this long on descriptor exhaustion */

struct admin_conn {
    struct torii_admin *adm;
    struct torii_http_conn *conn;
    struct admin_conn *prev, *next;
};

struct torii_admin {
    struct torii_admin_ctx ctx;
    struct torii_http_limits lim;
    struct admin_guard guard; /* tokens, limiter, audit log, accepted hosts */
    int guard_ready;
    SSL_CTX *ssl_ctx; /* admin.tls; NULL: plain HTTP (loopback only) */
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *stop_ev;
    struct event *backoff_ev;       /* re-enables the listener after EMFILE and friends */
    struct torii_daemon *daemon;    /* borrowed; NULL: no health routes */
    struct torii_daemon_beat *beat; /* the admin loop's liveness beat */
    pthread_t thread;
    int thread_started;
    struct admin_conn *conns;            /* admin thread only (main thread after join) */
    struct admin_acme_waits *acme_waits; /* synchronous ACME orders parked (acme_wait.c) */
};

/* ---- dispatch ---------------------------------------------------------------------------- */

/* Serialize r and answer ex, or (ex NULL) the deferred request of conn. */
static void admin_send_to(struct torii_http_exchange *ex, struct torii_http_conn *conn,
                          struct torii_admin_reply *r)
{
    struct torii_http_header hdrs[ADMIN_REPLY_MAX_HEADERS];
    const char *ctype = r->content_type != NULL ? r->content_type : "application/json";
    char *dumped = NULL;
    const void *body = NULL;
    size_t len = 0;
    int status = r->status != 0 ? r->status : 200;

    if (r->json != NULL) {
        dumped = json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dumped == NULL) {
            static const char oom[] = "{\"error\":\"cannot serialize the reply\"}";
            status = 500;
            ctype = "application/json";
            body = oom;
            len = sizeof(oom) - 1;
        } else {
            body = dumped;
            len = strlen(dumped);
        }
    } else if (r->raw != NULL) {
        body = r->raw;
        len = r->raw_len;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        hdrs[i].name.ptr = r->hname[i];
        hdrs[i].name.len = strlen(r->hname[i]);
        hdrs[i].value.ptr = r->hvalue[i];
        hdrs[i].value.len = strlen(r->hvalue[i]);
    }
    if (ex != NULL) {
        torii_http_respond(ex, status, ctype, body, len, hdrs, r->n_headers);
    } else {
        torii_http_deferred_respond(conn, status, ctype, body, len, hdrs, r->n_headers);
    }
    free(dumped);
}

static void admin_send(struct torii_http_exchange *ex, struct torii_admin_reply *r)
{
    admin_send_to(ex, NULL, r);
}

void admin_send_deferred(struct torii_http_conn *conn, struct torii_admin_reply *r)
{
    admin_send_to(NULL, conn, r);
}

static int admin_path_is(struct torii_slice path, const char *lit)
{
    return path.len == strlen(lit) && memcmp(path.ptr, lit, path.len) == 0;
}

/* GET/HEAD /healthz and /readyz: no authentication, no details (200 "ok" or 503). */
static int admin_health_route(const struct torii_admin *adm, const struct torii_http_req *req,
                              struct torii_admin_reply *reply)
{
    static const char ok[] = "ok\n";
    static const char down[] = "unavailable\n";
    int good;

    if (adm->daemon == NULL) {
        return TORII_ENOTFOUND;
    }
    if (admin_path_is(req->path, "/healthz")) {
        good = torii_daemon_alive(adm->daemon);
    } else if (admin_path_is(req->path, "/readyz")) {
        /* Not ready while certificate writes would be refused (fleet: etcd unreachable). */
        good = torii_daemon_ready(adm->daemon) && torii_store_writable(adm->ctx.store);
    } else {
        return TORII_ENOTFOUND;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
        return TORII_OK;
    }
    reply->status = good ? 200 : 503;
    reply->content_type = "text/plain";
    reply->raw = torii_xstrdup(good ? ok : down);
    reply->raw_len = strlen(reply->raw);
    admin_reply_header(reply, "Cache-Control", "no-store");
    return TORII_OK;
}

static void admin_handle(struct torii_http_exchange *ex, const struct torii_http_req *req,
                         void *arg)
{
    struct torii_admin *adm = arg;
    struct torii_admin_reply reply;

    memset(&reply, 0, sizeof(reply));
    if (admin_health_route(adm, req, &reply) != TORII_OK
        && admin_ui_route(req, &reply) != TORII_OK) {
        /* health probes are answered above, without authentication and without details;
         * everything else goes through the guard (scopes, rate limit, audit, redaction) */
        admin_guard_dispatch(&adm->guard, &adm->ctx, req, torii_clock_mono_us() / 1000, &reply);
    }
    if (reply.defer_job != NULL) {
        if (admin_acme_park(adm->acme_waits, ex, reply.defer_job) == TORII_OK) {
            admin_reply_clear(&reply);
            return;
        }
        admin_reply_clear(&reply);
        admin_reply_error(&reply, admin_status_of(TORII_EAGAIN),
                          "too many synchronous ACME orders waiting; use ?async=true");
    }
    admin_send(ex, &reply);
    admin_reply_clear(&reply);
}

/* ---- connections --------------------------------------------------------------------- */

static void admin_conn_unlink(struct admin_conn *ac)
{
    if (ac->prev != NULL) {
        ac->prev->next = ac->next;
    } else {
        ac->adm->conns = ac->next;
    }
    if (ac->next != NULL) {
        ac->next->prev = ac->prev;
    }
    free(ac);
}

static void admin_conn_closed(struct torii_http_conn *conn, void *arg)
{
    struct admin_conn *ac = arg;

    admin_acme_wait_forget(ac->adm->acme_waits, conn);
    admin_conn_unlink(ac);
}

static void admin_peer_name(const struct sockaddr *sa, int salen, char *out, size_t outlen)
{
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];

    if (getnameinfo(sa, (socklen_t)salen, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV)
        != 0) {
        (void)snprintf(out, outlen, "-");
        return;
    }
    (void)snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static void admin_accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg)
{
    struct torii_admin *adm = arg;
    struct bufferevent *bev;
    struct admin_conn *ac;
    struct torii_http_conn_opts o;
    char peer[NI_MAXHOST + NI_MAXSERV + 4];

    (void)lis;
    if (adm->ssl_ctx != NULL) {
        SSL *ssl = SSL_new(adm->ssl_ctx);
        bev = ssl == NULL
                  ? NULL
                  : bufferevent_openssl_socket_new(adm->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev == NULL) {
            SSL_free(ssl);
        }
    } else {
        bev =
            bufferevent_socket_new(adm->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (bev == NULL) {
        torii_log(TORII_LOG_ERR, "admin: cannot allocate a connection");
        (void)evutil_closesocket(fd);
        return;
    }
    admin_peer_name(sa, salen, peer, sizeof(peer));
    ac = torii_xcalloc(1, sizeof(*ac));
    ac->adm = adm;
    memset(&o, 0, sizeof(o));
    o.base = adm->base;
    o.lim = &adm->lim;
    o.peer = peer;
    o.cb = admin_handle;
    o.arg = adm;
    o.close_cb = admin_conn_closed;
    o.close_arg = ac;
    if (torii_http_conn_open(&o, bev, &ac->conn) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "admin: cannot start a connection (peer=%s)", peer);
        bufferevent_free(bev);
        free(ac);
        return;
    }
    ac->next = adm->conns;
    if (adm->conns != NULL) {
        adm->conns->prev = ac;
    }
    adm->conns = ac;
}

static void admin_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_admin *adm = arg;

    (void)fd;
    (void)what;
    (void)evconnlistener_enable(adm->lis);
}

static void admin_accept_error_cb(struct evconnlistener *lis, void *arg)
{
    struct torii_admin *adm = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)ADMIN_BACKOFF_MS * 1000};

    torii_log(TORII_LOG_WARN, "admin: accept failed: %s", evutil_socket_error_to_string(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* The connection stays queued: accepting again at once would spin. */
        (void)evconnlistener_disable(lis);
        if (event_add(adm->backoff_ev, &tv) != 0) {
            (void)evconnlistener_enable(lis);
        }
    }
}

/* ---- thread and lifecycle ------------------------------------------------------------ */

static void admin_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_admin *adm = arg;

    (void)fd;
    (void)what;
    (void)event_base_loopbreak(adm->base);
}

static void admin_close_conns(struct torii_admin *adm)
{
    admin_acme_waits_clear(adm->acme_waits);
    while (adm->conns != NULL) {
        struct admin_conn *ac = adm->conns;
        adm->conns = ac->next;
        if (adm->conns != NULL) {
            adm->conns->prev = NULL;
        }
        torii_http_conn_free(ac->conn);
        free(ac);
    }
}

static void *admin_thread_main(void *arg)
{
    struct torii_admin *adm = arg;

    if (event_base_dispatch(adm->base) < 0) {
        torii_log(TORII_LOG_ERR, "admin: event loop failed");
    }
    /* End the connections on their own thread, then give libevent one more turn to run the
     * deferred finalizers of the freed bufferevents. */
    admin_close_conns(adm);
    (void)event_base_loop(adm->base, EVLOOP_NONBLOCK);
    (void)event_base_loop(adm->base, EVLOOP_NONBLOCK);
    return NULL;
}

static void admin_free(struct torii_admin *adm)
{
    admin_close_conns(adm);
    if (adm->lis != NULL) {
        evconnlistener_free(adm->lis);
    }
    if (adm->stop_ev != NULL) {
        event_free(adm->stop_ev);
    }
    if (adm->backoff_ev != NULL) {
        event_free(adm->backoff_ev);
    }
    torii_daemon_beat_detach(adm->beat);
    admin_acme_waits_free(adm->acme_waits);
    if (adm->base != NULL) {
        event_base_free(adm->base);
    }
    if (adm->guard_ready) {
        admin_guard_clear(&adm->guard);
    }
    SSL_CTX_free(adm->ssl_ctx);
    free(adm);
}

static void admin_limits(const struct torii_config *cfg, struct torii_http_limits *lim)
{
    torii_http_limits_default(lim);
    lim->max_body = (size_t)8 * 1024 * 1024;
    if (cfg->max_header_bytes != 0) {
        lim->max_header_bytes = cfg->max_header_bytes;
    }
    if (cfg->max_headers != 0) {
        lim->max_headers = cfg->max_headers;
    }
    if (cfg->max_target != 0) {
        lim->max_target = cfg->max_target;
    }
    if (cfg->admin_max_body != 0) {
        lim->max_body = cfg->admin_max_body;
    }
    if (cfg->header_timeout_ms != 0) {
        lim->header_timeout_ms = cfg->header_timeout_ms;
    }
    if (cfg->idle_timeout_ms != 0) {
        lim->idle_timeout_ms = cfg->idle_timeout_ms;
    }
}

/* The listening address, parsed. The keys of every site go through this API: off loopback,
 * only TLS with client certificates from a CA in the store. */
static int admin_listen_addr(const struct torii_config *cfg, const char *listen_on,
                             struct sockaddr_storage *ss, int *sslen, struct torii_errbuf *eb)
{
    int rc = torii_config_parse_addr(listen_on, ss, sslen, eb);

    if (rc == TORII_OK && cfg->admin_tls == NULL && !torii_conf_addr_is_loopback(listen_on)) {
        rc = torii_errf(eb, TORII_EINVAL,
                        "admin: admin.listen %s is not a loopback address: a non-loopback "
                        "admin listener requires TLS with client certificates (admin.tls "
                        "{\"cert\", \"client_cas\"})",
                        listen_on);
    }
    return rc;
}

/* The admin event loop: its base, the listener on ss, the stop and backoff events, the beat. */
static int admin_loop_new(struct torii_admin *adm, const char *listen_on,
                          const struct sockaddr_storage *ss, int sslen, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    adm->base = event_base_new();
    TORII_ENSURE(adm->base != NULL,
                 torii_errf(eb, TORII_ENOMEM, "admin: cannot create the event base"));
    adm->lis =
        evconnlistener_new_bind(adm->base, admin_accept_cb, adm,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                ADMIN_BACKLOG, (const struct sockaddr *)ss, sslen);
    if (adm->lis == NULL) {
        int err = EVUTIL_SOCKET_ERROR();
        rc = torii_errf(eb, TORII_EIO, "admin: cannot listen on %s: %s", listen_on,
                        evutil_socket_error_to_string(err));
        goto out;
    }
    evconnlistener_set_error_cb(adm->lis, admin_accept_error_cb);
    TORII_ENSURE(admin_acme_waits_new(adm->base, &adm->ctx, &adm->acme_waits) == TORII_OK,
                 torii_errf(eb, TORII_ENOMEM, "admin: cannot create the ACME wait timer"));
    adm->stop_ev = event_new(adm->base, -1, 0, admin_stop_cb, adm);
    adm->backoff_ev = evtimer_new(adm->base, admin_backoff_cb, adm);
    TORII_ENSURE(adm->stop_ev != NULL && adm->backoff_ev != NULL,
                 torii_errf(eb, TORII_ENOMEM, "admin: cannot create the stop event"));
    if (adm->daemon != NULL) {
        rc = torii_daemon_beat_attach(adm->daemon, adm->base, "admin", &adm->beat);
        TORII_ENSURE(rc == TORII_OK, torii_errf(eb, rc, "admin: cannot attach the loop beat"));
    }
out:
    return rc;
}

int torii_admin_start(const struct torii_admin_opts *opts, struct torii_admin **out,
                      struct torii_errbuf *eb)
{
    const struct torii_config *cfg = opts->cfg;
    struct torii_admin *adm = torii_xcalloc(1, sizeof(*adm));
    const char *listen_on = cfg->admin_listen != NULL && cfg->admin_listen[0] != '\0'
                                ? cfg->admin_listen
                                : ADMIN_DEFAULT_LISTEN;
    struct sockaddr_storage ss;
    int sslen = 0;
    int err;
    int rc = TORII_OK;

    adm->ctx.store = opts->store;
    adm->ctx.cfg = cfg;
    adm->ctx.renewer = opts->renewer;
    adm->ctx.pki = opts->pki;
    adm->ctx.certstats = opts->certstats;
    adm->ctx.acme = opts->acme;
    adm->daemon = opts->daemon;
    admin_limits(cfg, &adm->lim);
    TORII_TRY(admin_listen_addr(cfg, listen_on, &ss, &sslen, eb));
    if (cfg->admin_tls != NULL) {
        TORII_TRY(admin_tls_ctx_new(cfg, opts->store, &adm->ssl_ctx, eb));
    }
    TORII_TRY(admin_guard_init(&adm->guard, cfg, listen_on, eb));
    adm->guard_ready = 1;
    adm->guard.scheme = adm->ssl_ctx != NULL ? "https" : "http";
    TORII_TRY(admin_loop_new(adm, listen_on, &ss, sslen, eb));
    err = pthread_create(&adm->thread, NULL, admin_thread_main, adm);
    TORII_ENSURE(err == 0, torii_errf(eb, TORII_EIO, "admin: cannot start the thread (%d)", err));
    adm->thread_started = 1;
    torii_log(TORII_LOG_INFO, "admin: listening (addr=%s tls=%s)", listen_on,
              adm->ssl_ctx != NULL ? "client-certificates" : "off");
    *out = adm;
    adm = NULL;
out:
    if (adm != NULL) {
        admin_free(adm);
    }
    return rc;
}

void torii_admin_stop(struct torii_admin *adm)
{
    if (adm == NULL) {
        return;
    }
    if (adm->thread_started) {
        /* Thread-safe with evthread_use_pthreads(); an active event is not lost even when the
         * loop has not started yet (a loopbreak would be). */
        event_active(adm->stop_ev, EV_READ, 0);
        (void)pthread_join(adm->thread, NULL);
    }
    admin_free(adm);
}
