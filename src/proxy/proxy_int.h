/* proxy_int.h - internal to the proxy module: the per-worker proxy state shared by the worker
 * threads (workers.c) and the streaming engine (session_int.h and the files it lists). Not to
 * be included elsewhere.
 * Threads: worker thread only (each struct proxy_worker belongs to one loop). */
#ifndef TORII_PROXY_INT_H
#define TORII_PROXY_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "h2mem_int.h"
#include "torii/clock.h"
#include "torii/http.h"
#include "torii/proxy.h"

struct proxy_conn;
struct proxy_upstream;
struct h2up_conn;

/* Passive health and idle pool of one target, per worker. */
struct proxy_target_state {
    int64_t down_until_ms;       /* skipped until then (unless every target is down) */
    struct proxy_upstream *idle; /* idle keep-alive connections, most recent first */
    uint32_t n_idle;
    struct h2up_conn *h2; /* backend.protocol h2/h2c: its HTTP/2 connections (h2up.c) */
    uint32_t n_h2;
};

#define PX_RP_FREE 64  /* request parsers a worker keeps for reuse (rpcache.c) */
#define PX_H2_FREE 256 /* HTTP/2 stream shells and stream children kept for reuse (h2cache.c) */

struct h2_stream;
struct proxy_h2;

/* A queue of HTTP/2 client connections (h2queue.c), linked through their struct h2q_link. */
enum h2q_kind { H2Q_WAKE, H2Q_FLUSH, H2Q_N };
struct proxy_h2;
struct h2q {
    struct proxy_h2 *first, *last;
};

struct proxy_worker {
    struct event_base *base;
    const struct torii_config *cfg;
    const struct torii_routes *routes;
    struct torii_tls_ctx *tls;
    struct torii_wellknown *wk;
    struct torii_pki_state *pki;       /* borrowed (NULL: none): the routes[].jwt keys */
    struct torii_acme_chal *acme_chal; /* borrowed (NULL: none): ACME HTTP-01 answers */
    struct torii_http_limits lim;      /* client requests */
    struct torii_http_limits ulim;     /* upstream responses */
    struct proxy_target_state *targets;
    size_t n_targets;
    unsigned *rr; /* round-robin position per route */
    unsigned https_port;
    struct proxy_conn *conns; /* every client connection of this worker */
    unsigned n_conns;
    struct torii_daemon *daemon;       /* health.public_path answers from its state; NULL: none */
    int draining;                      /* TORII_PROXY_DRAIN_*: responses say Connection: close */
    void (*on_conn_closed)(void *arg); /* after a connection is gone (listener resume) */
    void *on_conn_closed_arg;
    /* access log: the cached time string of the current second */
    int64_t log_sec;
    char log_time[32];
    char log_clf[40];
    /* request parsers given back by connections idle between requests (rpcache.c) */
    struct torii_http_parser *rp_free[PX_RP_FREE];
    unsigned n_rp_free;
    /* HTTP/2 streams and their child connections, ended, kept with their buffers, parsers
     * and timer for the next stream of any connection of this worker (h2cache.c) */
    struct h2_stream *h2s_free; /* linked by next */
    unsigned n_h2s_free;
    struct proxy_conn *h2c_free; /* linked by next */
    unsigned n_h2c_free;
    struct h2mem_pool h2mem; /* the nghttp2 sessions' shared frame buffer (h2mem.c) */
    /* HTTP/2 connections queued (h2queue.c): woken by their streams' children, stepped
     * together once per loop turn by h2_wake_ev; holding output, sent by h2_flush_ev at the
     * loop's idle priority (or h2_flush_timer); oldest first */
    struct event *h2_wake_ev;
    struct event *h2_flush_ev; /* NULL: the base has no idle priority, nothing is held */
    struct event *h2_flush_timer;
    struct h2q h2q[H2Q_N];
    /* the time read once per outermost torii_proxy__run (torii_proxy__now_us); 0: not yet */
    int64_t now_us;
    unsigned run_depth; /* torii_proxy__run calls under way (nested: an HTTP/2 stream's child) */
    unsigned h2_flushing : 1;   /* in the flush event: outputs are sent, not held */
    unsigned h2_hold_tried : 1; /* the flush events were tried (made or not) */
};

/** The monotonic clock (microseconds) for timestamps and timers: read once per outermost
 * torii_proxy__run and kept until it returns (the HTTP/2 connection's step and its streams'
 * children share one reading), read anew outside a run. Worker thread. */
static inline int64_t torii_proxy__now_us(struct proxy_worker *pw)
{
    if (pw->run_depth == 0) {
        return torii_clock_mono_us();
    }
    if (pw->now_us == 0) {
        pw->now_us = torii_clock_mono_us();
    }
    return pw->now_us;
}

/** Set up / tear down the proxy state of a worker (pool, health, well-known). */
int torii_proxy__worker_init(struct proxy_worker *pw, struct event_base *base,
                             const struct torii_config *cfg, const struct torii_routes *routes,
                             struct torii_tls_ctx *tls) TORII_MUST_USE;
/** Closes every client and pooled upstream connection, then frees the state. Returns the
 * number of client connections that had a request in flight (cut off). */
unsigned torii_proxy__worker_clear(struct proxy_worker *pw);

#define TORII_PROXY_DRAIN_SOFT 1 /* reload/upgrade: idle connections close on their own */
#define TORII_PROXY_DRAIN_STOP 2 /* stop: idle keep-alive connections close at once */
/** From now on every response says Connection: close; in STOP mode the connections idle
 * after a request are closed now. Loop thread. */
void torii_proxy__worker_drain(struct proxy_worker *pw, int mode);

/** Sets the options of a listening socket: TCP_NODELAY (inherited by the accepted sockets),
 * and for the https listener (tls) TCP_DEFER_ACCEPT, which torii_proxy__accept relies on to
 * read at once. addr names the socket in the error. Any thread. */
int torii_proxy__listen_opts(evutil_socket_t fd, int tls, const char *addr, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Serve a new client connection on fd (taken in every case). tls: the https listener, whose
 * connections are read at once, in this loop iteration (its listener defers the accept until
 * the first bytes came). */
void torii_proxy__accept(struct proxy_worker *pw, evutil_socket_t fd, const struct sockaddr *sa,
                         int tls);

/* ---- /.well-known/ handlers of the built-in PKI (wellknown_pki.c) ---- */
/* Signature of wellknown.c's dispatch entries; rest = the path after the entry's prefix. */
int torii_wellknown__pki_jwks(struct torii_wellknown *wk, const struct torii_http_req *req,
                              struct torii_slice rest, struct torii_wellknown_reply *reply);
int torii_wellknown__pki_ocsp(struct torii_wellknown *wk, const struct torii_http_req *req,
                              struct torii_slice rest, struct torii_wellknown_reply *reply);
int torii_wellknown__pki_ca(struct torii_wellknown *wk, const struct torii_http_req *req,
                            struct torii_slice rest, struct torii_wellknown_reply *reply);
int torii_wellknown__pki_crl(struct torii_wellknown *wk, const struct torii_http_req *req,
                             struct torii_slice rest, struct torii_wellknown_reply *reply);

/* ---- ACME HTTP-01 (wellknown_acme.c) ---- */
int torii_wellknown__acme_http01(struct torii_wellknown *wk, const struct torii_http_req *req,
                                 struct torii_slice rest, struct torii_wellknown_reply *reply);
/** The challenge table of the wellknown_opts (borrowed; NULL: none). */
struct torii_acme_chal *torii_wellknown__acme(const struct torii_wellknown *wk);

/* ---- routes[].jwt (jwtauth.c) ---- */
/** The PKI state of the wellknown_opts (borrowed; NULL: none). */
struct torii_pki_state *torii_wellknown__pki(const struct torii_wellknown *wk);
struct torii_route_jwt;
/** Check req against a route's jwt with the current key set of pki's snapshot (NULL: no key,
 * every token refused) and the current time: 0 (TORII_JWT_OK; *hdrs gets the claim header
 * lines, malloc'd or NULL) or the refusal's outcome (jwt.h), counted in the metrics and
 * logged at debug. */
unsigned torii_proxy__jwt_check(struct torii_pki_state *pki, const struct torii_route_jwt *j,
                                const struct torii_http_req *req, char **hdrs, size_t *hdrs_len);

#endif
