/* workers.c - worker threads, per-worker SO_REUSEPORT listeners, TLS accept. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "torii/http.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/proxy.h"

enum worker_listener_kind { WORKER_HTTPS = 0, WORKER_HTTP, WORKER_LISTENERS };

/* A tracked client connection, so shutdown can end them all and the per-worker limit holds. */
struct worker_conn {
    struct worker *w;
    struct torii_http_conn *conn;
    struct worker_conn *prev;
    struct worker_conn *next;
};

struct worker {
    struct torii_workers *owner;
    unsigned index;
    pthread_t thread;
    int started;
    struct event_base *base;
    struct event *stop_ev; /* activated from the main thread to end the loop */
    struct evconnlistener *lev[WORKER_LISTENERS];
    unsigned n_conns;          /* loop thread only */
    struct worker_conn *conns; /* loop thread only (main thread after join) */
    int paused;                /* listeners disabled at max_conns_per_worker */
};

struct torii_workers {
    const struct torii_config *cfg;
    struct torii_table *table;
    struct torii_tls_ctx *tls;
    struct torii_http_limits limits;
    unsigned n;
    struct worker *w;
};

static void worker_handle(struct torii_http_exchange *ex, const struct torii_http_req *req,
                          void *arg)
{
    static const char body[] = "{\"error\":\"no route matched this request\"}";

    (void)req;
    (void)arg;
    torii_http_respond(ex, 404, "application/json", body, sizeof(body) - 1, NULL, 0);
}

static void worker_listeners_enable(struct worker *w, int on)
{
    for (int i = 0; i < WORKER_LISTENERS; i++) {
        if (w->lev[i] != NULL) {
            (void)(on ? evconnlistener_enable(w->lev[i]) : evconnlistener_disable(w->lev[i]));
        }
    }
    w->paused = !on;
}

static void worker_conn_unlink(struct worker_conn *wc)
{
    struct worker *w = wc->w;

    if (wc->prev != NULL) {
        wc->prev->next = wc->next;
    } else {
        w->conns = wc->next;
    }
    if (wc->next != NULL) {
        wc->next->prev = wc->prev;
    }
    w->n_conns--;
    if (w->paused && w->n_conns < w->owner->cfg->max_conns_per_worker) {
        worker_listeners_enable(w, 1);
    }
    free(wc);
}

static void worker_conn_closed(struct torii_http_conn *conn, void *arg)
{
    (void)conn;
    worker_conn_unlink(arg);
}

static void worker_peer(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        (void)inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        (void)snprintf(out, len, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        (void)inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        (void)snprintf(out, len, "[%s]:%u", ip, port);
    } else {
        (void)snprintf(out, len, "?");
    }
}

static void worker_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg, int tls)
{
    struct worker *w = arg;
    struct bufferevent *bev = NULL;
    struct worker_conn *wc;
    struct torii_http_conn_opts opts;
    char peer[INET6_ADDRSTRLEN + 8];
    int one = 1;

    (void)lev;
    (void)salen;
    worker_peer(sa, peer, sizeof(peer));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls) {
        SSL *ssl = torii_tls_conn_new(w->owner->tls);
        if (ssl == NULL) {
            evutil_closesocket(fd);
            return;
        }
        bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
        } else {
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        }
    } else {
        bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL) {
        torii_log(TORII_LOG_WARN, "proxy: cannot create a bufferevent (peer=%s)", peer);
        evutil_closesocket(fd);
        return;
    }
    wc = torii_xcalloc(1, sizeof(*wc));
    wc->w = w;
    opts = (struct torii_http_conn_opts){.base = w->base,
                                         .lim = &w->owner->limits,
                                         .peer = peer,
                                         .cb = worker_handle,
                                         .arg = w,
                                         .close_cb = worker_conn_closed,
                                         .close_arg = wc};
    if (torii_http_conn_open(&opts, bev, &wc->conn) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "proxy: cannot start a connection (peer=%s)", peer);
        bufferevent_free(bev);
        free(wc);
        return;
    }
    wc->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = wc;
    }
    w->conns = wc;
    /* At the limit, stop accepting: the kernel queues (and eventually refuses) new clients
     * instead of us accepting connections we cannot serve. */
    if (++w->n_conns >= w->owner->cfg->max_conns_per_worker) {
        worker_listeners_enable(w, 0);
    }
}

static void worker_accept_https(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                                int salen, void *arg)
{
    worker_accept(lev, fd, sa, salen, arg, 1);
}

static void worker_accept_http(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                               int salen, void *arg)
{
    worker_accept(lev, fd, sa, salen, arg, 0);
}

static void worker_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)arg;
    (void)lev;
    /* EMFILE and friends: log and go on; libevent keeps the listener enabled. */
    torii_log_errno(TORII_LOG_WARN, "proxy: accept failed");
}

/* Bound socket with SO_REUSEPORT, so each worker has its own accept queue. */
static int worker_bind(const char *addr, evutil_socket_t *out, struct torii_errbuf *eb)
{
    struct sockaddr_storage ss;
    int sslen;
    int one = 1;
    evutil_socket_t fd = -1;
    int rc = TORII_OK;

    TORII_TRY(torii_config_parse_addr(addr, &ss, &sslen, eb));
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TORII_ENSURE(fd >= 0, torii_errf(eb, TORII_EIO, "socket(%s): %s", addr, strerror(errno)));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rc = torii_errf(eb, TORII_EIO, "setsockopt(%s): %s", addr, strerror(errno));
        goto out;
    }
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0) {
        rc = torii_errf(eb, TORII_EIO, "bind(%s): %s", addr, strerror(errno));
        goto out;
    }
    if (listen(fd, 4096) != 0) {
        rc = torii_errf(eb, TORII_EIO, "listen(%s): %s", addr, strerror(errno));
        goto out;
    }
    *out = fd;
    fd = -1;
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

/* event_base_loopbreak() from another thread is lost if the loop has not started yet (the
 * loop clears the flag on entry); an activated event is not. */
static void worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    (void)event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    torii_table_reader_register();
    if (event_base_dispatch(w->base) < 0) {
        torii_log(TORII_LOG_ERR, "proxy: worker %u: event loop failed", w->index);
    }
    torii_table_reader_unregister();
    return NULL;
}

static int worker_setup(struct torii_workers *ws, struct worker *w, struct torii_errbuf *eb)
{
    const char *addrs[WORKER_LISTENERS] = {ws->cfg->listen_https, ws->cfg->listen_http};
    evconnlistener_cb cbs[WORKER_LISTENERS] = {worker_accept_https, worker_accept_http};
    int rc = TORII_OK;

    w->owner = ws;
    w->base = event_base_new();
    TORII_ENSURE(w->base != NULL, torii_errf(eb, TORII_ENOMEM, "proxy: event_base_new failed"));
    w->stop_ev = event_new(w->base, -1, 0, worker_stop_cb, w);
    TORII_ENSURE(w->stop_ev != NULL, torii_errf(eb, TORII_ENOMEM, "proxy: event_new failed"));
    for (int i = 0; i < WORKER_LISTENERS; i++) {
        evutil_socket_t fd = -1;
        if (addrs[i][0] == '\0') {
            continue;
        }
        TORII_TRY(worker_bind(addrs[i], &fd, eb));
        w->lev[i] = evconnlistener_new(w->base, cbs[i], w, LEV_OPT_CLOSE_ON_FREE, -1, fd);
        if (w->lev[i] == NULL) {
            (void)close(fd);
            rc = torii_errf(eb, TORII_EIO, "proxy: evconnlistener_new(%s) failed", addrs[i]);
            goto out;
        }
        evconnlistener_set_error_cb(w->lev[i], worker_accept_error);
    }
out:
    return rc;
}

int torii_workers_start(const struct torii_config *cfg, struct torii_table *table,
                        struct torii_tls_ctx *tls, struct torii_workers **out,
                        struct torii_errbuf *eb)
{
    struct torii_workers *ws = torii_xcalloc(1, sizeof(*ws));
    int rc = TORII_OK;

    ws->cfg = cfg;
    ws->table = table;
    ws->tls = tls;
    torii_http_limits_default(&ws->limits);
    ws->limits.max_header_bytes = cfg->max_header_bytes;
    ws->limits.max_headers = cfg->max_headers;
    ws->limits.max_target = cfg->max_target;
    ws->limits.max_body = cfg->max_body;
    ws->limits.header_timeout_ms = cfg->header_timeout_ms;
    ws->limits.idle_timeout_ms = cfg->idle_timeout_ms;
    ws->n = cfg->workers;
    ws->w = torii_xcalloc(ws->n, sizeof(*ws->w));
    for (unsigned i = 0; i < ws->n; i++) {
        ws->w[i].index = i;
        TORII_TRY(worker_setup(ws, &ws->w[i], eb));
    }
    for (unsigned i = 0; i < ws->n; i++) {
        if (pthread_create(&ws->w[i].thread, NULL, worker_main, &ws->w[i]) != 0) {
            rc = torii_errf(eb, TORII_EIO, "proxy: cannot start worker thread %u", i);
            goto out;
        }
        ws->w[i].started = 1;
    }
    torii_log(TORII_LOG_INFO, "proxy: %u workers serving https=%s http=%s", ws->n,
              cfg->listen_https[0] ? cfg->listen_https : "off",
              cfg->listen_http[0] ? cfg->listen_http : "off");
    *out = ws;
    ws = NULL;
out:
    torii_workers_stop(ws);
    return rc;
}

void torii_workers_stop(struct torii_workers *ws)
{
    if (ws == NULL) {
        return;
    }
    for (unsigned i = 0; i < ws->n; i++) {
        if (ws->w[i].stop_ev != NULL) {
            event_active(ws->w[i].stop_ev, EV_READ, 0);
        }
    }
    for (unsigned i = 0; i < ws->n; i++) {
        struct worker *w = &ws->w[i];
        if (w->started) {
            (void)pthread_join(w->thread, NULL);
        }
        while (w->conns != NULL) {
            struct worker_conn *wc = w->conns;
            torii_http_conn_free(wc->conn);
            w->conns = wc->next;
            free(wc);
        }
        for (int j = 0; j < WORKER_LISTENERS; j++) {
            if (w->lev[j] != NULL) {
                evconnlistener_free(w->lev[j]);
            }
        }
        if (w->stop_ev != NULL) {
            event_free(w->stop_ev);
        }
        if (w->base != NULL) {
            event_base_free(w->base);
        }
    }
    free(ws->w);
    free(ws);
}
