/* workers.c - worker threads, per-worker SO_REUSEPORT listeners, the per-worker connection
 * limit, the accept backoff on descriptor exhaustion and each loop's daemon beat; each
 * accepted connection goes to the proxy engine (session.c, session_int.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "proxy_int.h"
#include "torii/blkcache.h"
#include "torii/daemon.h"
#include "torii/http.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/proxy.h"

enum worker_listener_kind { WORKER_HTTPS = 0, WORKER_HTTP, WORKER_LISTENERS };

/* Accept backoff on EMFILE/ENFILE/ENOBUFS/ENOMEM: listeners off for this long, doubled while
 * accept keeps failing, back to the minimum after an accepted connection. */
#define WORKER_BACKOFF_MIN_MS 50
#define WORKER_BACKOFF_MAX_MS 1000

struct worker {
    struct torii_workers *owner;
    unsigned index;
    pthread_t thread;
    int started;
    struct event_base *base;
    struct event *stop_ev;  /* activated from the main thread to end the loop */
    struct event *drain_ev; /* activated from the main thread: stop accepting, drain */
    _Atomic int drain_mode; /* TORII_PROXY_DRAIN_* asked by the main thread */
    struct evconnlistener *lev[WORKER_LISTENERS];
    struct proxy_worker pw; /* loop thread only (main thread after join) */
    int pw_ready;
    int paused;                     /* listeners disabled at max_conns_per_worker */
    struct event *backoff_ev;       /* re-enables the listeners after an accept backoff */
    unsigned backoff_ms;            /* last backoff; 0 after an accepted connection */
    int backoff_pending;            /* backoff_ev armed: listeners stay off until it fires */
    struct torii_daemon_beat *beat; /* liveness (daemon.h); NULL without a daemon */
};

struct torii_workers {
    const struct torii_config *cfg;
    struct torii_table *table;
    struct torii_tls_ctx *tls;
    const struct torii_routes *routes;
    struct torii_daemon *daemon;
    struct torii_pki_state *pki;
    struct torii_acme_chal *acme_chal;
    unsigned n;
    struct worker *w;
    const struct torii_listen_socks *inherit; /* during start only */
    _Atomic unsigned n_running;               /* worker loops not yet returned */
};

static void worker_listeners_enable(struct worker *w, int on)
{
    for (int i = 0; i < WORKER_LISTENERS; i++) {
        if (w->lev[i] != NULL) {
            (void)(on ? evconnlistener_enable(w->lev[i]) : evconnlistener_disable(w->lev[i]));
        }
    }
    w->paused = !on;
}

static void worker_conn_closed(void *arg)
{
    struct worker *w = arg;

    torii_metrics_add(TORII_METRIC_CONN_OPEN, -1);
    if (w->pw.draining && w->pw.n_conns == 0) {
        (void)event_base_loopbreak(w->base); /* drained: the loop ends */
        return;
    }
    if (w->paused && !w->backoff_pending && w->pw.n_conns < w->owner->cfg->max_conns_per_worker) {
        worker_listeners_enable(w, 1);
    }
}

static void worker_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg, int tls)
{
    struct worker *w = arg;
    unsigned before = w->pw.n_conns;

    (void)lev;
    (void)salen;
    torii_proxy__accept(&w->pw, fd, sa, tls);
    w->backoff_ms = 0;
    if (w->pw.n_conns > before) {
        torii_metrics_inc(TORII_METRIC_CONN_ACCEPTED);
        torii_metrics_add(TORII_METRIC_CONN_OPEN, 1);
    }
    /* At the limit, stop accepting: the kernel queues (and eventually refuses) new clients
     * instead of us accepting connections we cannot serve. */
    if (w->pw.n_conns >= w->owner->cfg->max_conns_per_worker) {
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

static void worker_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    w->backoff_pending = 0;
    if (w->pw.n_conns < w->owner->cfg->max_conns_per_worker) {
        worker_listeners_enable(w, 1); /* backoff_ms stays set: the next failure doubles it */
    }
}

static void worker_accept_error(struct evconnlistener *lev, void *arg)
{
    struct worker *w = arg;
    int err = errno;
    struct timeval tv;

    (void)lev;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        torii_log_errno(TORII_LOG_WARN, "proxy: worker %u: accept failed", w->index);
        return;
    }
    /* Out of descriptors: the pending connection stays queued and the listener stays readable,
     * so accepting again at once would spin. Stop accepting for a while instead. */
    if (w->backoff_ms == 0) {
        torii_log(TORII_LOG_WARN, "proxy: worker %u: accept failed: %s; backing off", w->index,
                  torii_errno_text(err).s);
        w->backoff_ms = WORKER_BACKOFF_MIN_MS;
    } else if (w->backoff_ms < WORKER_BACKOFF_MAX_MS) {
        w->backoff_ms =
            w->backoff_ms * 2 < WORKER_BACKOFF_MAX_MS ? w->backoff_ms * 2 : WORKER_BACKOFF_MAX_MS;
    }
    worker_listeners_enable(w, 0);
    w->backoff_pending = 1;
    tv.tv_sec = w->backoff_ms / 1000;
    tv.tv_usec = (suseconds_t)(w->backoff_ms % 1000) * 1000;
    if (event_add(w->backoff_ev, &tv) != 0) {
        torii_log(TORII_LOG_ERR, "proxy: worker %u: cannot arm the accept backoff", w->index);
        w->backoff_pending = 0;
        worker_listeners_enable(w, 1);
    }
}

/* Options of a listening socket, bound here or inherited over a binary upgrade (set again: an
 * older binary may not have set them). TCP_NODELAY: accepted sockets inherit it on Linux, so
 * no connection needs its own setsockopt. TCP_DEFER_ACCEPT (https only): the kernel hands a
 * connection over once its first bytes (the ClientHello) are there, so the worker wakes once
 * per new connection, not twice, and reads it at once (torii_proxy__accept). A client that
 * connects and sends nothing waits in the kernel, for about WORKER_DEFER_S, then is handed
 * over like any other (its handshake deadline starts then). Plain HTTP keeps the immediate
 * hand-over: its clients are counted and timed from the connect. */
#define WORKER_DEFER_S 1

int torii_proxy__listen_opts(evutil_socket_t fd, int tls, const char *addr, struct torii_errbuf *eb)
{
    int one = 1;
    int defer = WORKER_DEFER_S;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0
        || (tls && setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer)) != 0)) {
        return torii_errf(eb, TORII_EIO, "setsockopt(%s): %s", addr, torii_errno_text(errno).s);
    }
    return TORII_OK;
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
    TORII_ENSURE(fd >= 0,
                 torii_errf(eb, TORII_EIO, "socket(%s): %s", addr, torii_errno_text(errno).s));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rc = torii_errf(eb, TORII_EIO, "setsockopt(%s): %s", addr, torii_errno_text(errno).s);
        goto out;
    }
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0) {
        rc = torii_errf(eb, TORII_EIO, "bind(%s): %s", addr, torii_errno_text(errno).s);
        goto out;
    }
    if (listen(fd, 4096) != 0) {
        rc = torii_errf(eb, TORII_EIO, "listen(%s): %s", addr, torii_errno_text(errno).s);
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

/* Drain: the listeners close (their sockets live on in the next workers, if any), then
 * the loop ends with the last connection. */
static void worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    /* An accept backoff would re-enable listeners that are gone. */
    (void)event_del(w->backoff_ev);
    w->backoff_pending = 0;
    for (int i = 0; i < WORKER_LISTENERS; i++) {
        if (w->lev[i] != NULL) {
            evconnlistener_free(w->lev[i]);
            w->lev[i] = NULL;
        }
    }
    torii_proxy__worker_drain(&w->pw, atomic_load(&w->drain_mode));
    if (w->pw.n_conns == 0) {
        (void)event_base_loopbreak(w->base);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int rc = torii_blkcache_attach(NULL); /* this thread's freed blocks, for its next ones */

    if (rc != TORII_OK) {
        torii_log(TORII_LOG_WARN, "proxy: worker %u: no block cache (%s), plain malloc", w->index,
                  torii_strerror(rc));
    }
    torii_table_reader_register();
    if (event_base_dispatch(w->base) < 0) {
        torii_log(TORII_LOG_ERR, "proxy: worker %u: event loop failed", w->index);
    }
    torii_daemon_beat_ended(w->beat);
    torii_table_reader_unregister();
    torii_blkcache_detach();
    atomic_fetch_sub(&w->owner->n_running, 1);
    return NULL;
}

/* The inherited socket for this listener (same kind, worker slot and address), duplicated
 * into *fd; -1 when there is none. */
static int worker_inherited(const struct torii_workers *ws, int kind, unsigned slot,
                            const char *addr, evutil_socket_t *fd, struct torii_errbuf *eb)
{
    const struct torii_listen_socks *in = ws->inherit;

    *fd = -1;
    for (size_t i = 0; in != NULL && i < in->n; i++) {
        const struct torii_listen_sock *ls = &in->v[i];
        if (ls->kind == kind && ls->slot == slot && strcmp(ls->addr, addr) == 0) {
            *fd = fcntl(ls->fd, F_DUPFD_CLOEXEC, 3);
            if (*fd < 0) {
                return torii_errf(eb, TORII_EIO, "proxy: cannot take over the socket of %s: %s",
                                  addr, torii_errno_text(errno).s);
            }
            break;
        }
    }
    return TORII_OK;
}

/* One listener per configured address: a socket inherited over a binary upgrade, or a new
 * one bound with SO_REUSEPORT. */
static int worker_listen(struct torii_workers *ws, struct worker *w, struct torii_errbuf *eb)
{
    const char *addrs[WORKER_LISTENERS] = {ws->cfg->listen_https, ws->cfg->listen_http};
    evconnlistener_cb cbs[WORKER_LISTENERS] = {worker_accept_https, worker_accept_http};
    int rc = TORII_OK;

    for (int i = 0; i < WORKER_LISTENERS; i++) {
        evutil_socket_t fd = -1;
        if (addrs[i][0] == '\0') {
            continue;
        }
        TORII_TRY(worker_inherited(ws, i, w->index, addrs[i], &fd, eb));
        if (fd < 0) {
            TORII_TRY(worker_bind(addrs[i], &fd, eb));
        }
        if ((rc = torii_proxy__listen_opts(fd, i == WORKER_HTTPS, addrs[i], eb)) != TORII_OK) {
            (void)close(fd);
            goto out;
        }
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

static int worker_setup(struct torii_workers *ws, struct worker *w, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    w->owner = ws;
    w->base = event_base_new();
    TORII_ENSURE(w->base != NULL, torii_errf(eb, TORII_ENOMEM, "proxy: event_base_new failed"));
    /* Three priorities, every event at the middle one (the default) but HTTP/2's held
     * output, sent at the lowest when nothing else is ready (h2queue.c). */
    TORII_ENSURE(event_base_priority_init(w->base, 3) == 0,
                 torii_errf(eb, TORII_ENOMEM, "proxy: event_base_priority_init failed"));
    w->stop_ev = event_new(w->base, -1, 0, worker_stop_cb, w);
    w->backoff_ev = evtimer_new(w->base, worker_backoff_cb, w);
    w->drain_ev = event_new(w->base, -1, 0, worker_drain_cb, w);
    TORII_ENSURE(w->stop_ev != NULL && w->backoff_ev != NULL && w->drain_ev != NULL,
                 torii_errf(eb, TORII_ENOMEM, "proxy: event_new failed"));
    if (ws->daemon != NULL) {
        char name[24];
        (void)snprintf(name, sizeof(name), "worker-%u", w->index);
        rc = torii_daemon_beat_attach(ws->daemon, w->base, name, &w->beat);
        TORII_ENSURE(rc == TORII_OK,
                     torii_errf(eb, rc, "proxy: cannot attach the beat of %s", name));
    }
    w->pw.pki = ws->pki;
    w->pw.acme_chal = ws->acme_chal;
    TORII_TRY(torii_proxy__worker_init(&w->pw, w->base, ws->cfg, ws->routes, ws->tls));
    w->pw_ready = 1;
    w->pw.daemon = ws->daemon;
    w->pw.on_conn_closed = worker_conn_closed;
    w->pw.on_conn_closed_arg = w;
    TORII_TRY(worker_listen(ws, w, eb));
out:
    return rc;
}

int torii_workers_start(const struct torii_workers_opts *o, struct torii_workers **out,
                        struct torii_errbuf *eb)
{
    struct torii_workers *ws = torii_xcalloc(1, sizeof(*ws));
    const struct torii_config *cfg = o->cfg;
    int rc = TORII_OK;

    ws->daemon = o->daemon;
    ws->cfg = cfg;
    ws->table = o->table;
    ws->tls = o->tls;
    ws->routes = o->routes;
    ws->pki = o->pki;
    ws->acme_chal = o->acme_chal;
    ws->inherit = o->inherit;
    ws->n = cfg->workers;
    ws->w = torii_xcalloc(ws->n, sizeof(*ws->w));
    for (unsigned i = 0; i < ws->n; i++) {
        ws->w[i].index = i;
        TORII_TRY(worker_setup(ws, &ws->w[i], eb));
    }
    ws->inherit = NULL;
    for (unsigned i = 0; i < ws->n; i++) {
        atomic_fetch_add(&ws->n_running, 1);
        if (pthread_create(&ws->w[i].thread, NULL, worker_main, &ws->w[i]) != 0) {
            atomic_fetch_sub(&ws->n_running, 1);
            rc = torii_errf(eb, TORII_EIO, "proxy: cannot start worker thread %u", i);
            goto out;
        }
        ws->w[i].started = 1;
    }
    torii_log(TORII_LOG_INFO, "proxy: %u workers serving https=%s http=%s (%zu routes)", ws->n,
              cfg->listen_https[0] ? cfg->listen_https : "off",
              cfg->listen_http[0] ? cfg->listen_http : "off", torii_routes_count(o->routes));
    *out = ws;
    ws = NULL;
out:
    (void)torii_workers_stop(ws);
    return rc;
}

size_t torii_workers_listeners(const struct torii_workers *ws, struct torii_listen_sock *out,
                               size_t cap)
{
    const char *addrs[WORKER_LISTENERS] = {ws->cfg->listen_https, ws->cfg->listen_http};
    size_t n = 0;

    for (unsigned i = 0; i < ws->n; i++) {
        for (int k = 0; k < WORKER_LISTENERS; k++) {
            if (ws->w[i].lev[k] == NULL || n >= cap) {
                continue;
            }
            out[n].kind = k;
            out[n].slot = i;
            (void)snprintf(out[n].addr, sizeof(out[n].addr), "%s", addrs[k]);
            out[n].fd = evconnlistener_get_fd(ws->w[i].lev[k]);
            n++;
        }
    }
    return n;
}

void torii_workers_drain(struct torii_workers *ws, int stop)
{
    for (unsigned i = 0; ws != NULL && i < ws->n; i++) {
        atomic_store(&ws->w[i].drain_mode, stop ? TORII_PROXY_DRAIN_STOP : TORII_PROXY_DRAIN_SOFT);
        event_active(ws->w[i].drain_ev, EV_READ, 0);
    }
}

int torii_workers_drained(const struct torii_workers *ws)
{
    return ws == NULL || atomic_load(&ws->n_running) == 0;
}

unsigned torii_workers_stop(struct torii_workers *ws)
{
    unsigned cut = 0;

    if (ws == NULL) {
        return 0;
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
        if (w->pw_ready) {
            w->pw.on_conn_closed = NULL;
            cut += torii_proxy__worker_clear(&w->pw);
        }
        for (int j = 0; j < WORKER_LISTENERS; j++) {
            if (w->lev[j] != NULL) {
                evconnlistener_free(w->lev[j]);
            }
        }
        if (w->stop_ev != NULL) {
            event_free(w->stop_ev);
        }
        if (w->backoff_ev != NULL) {
            event_free(w->backoff_ev);
        }
        if (w->drain_ev != NULL) {
            event_free(w->drain_ev);
        }
        torii_daemon_beat_detach(w->beat);
        if (w->base != NULL) {
            event_base_free(w->base);
        }
    }
    free(ws->w);
    free(ws);
    return cut;
}
