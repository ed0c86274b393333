/* session_int.h - internal to the proxy module: the layouts of a client connection
 * (struct proxy_conn), the request it serves (struct proxy_exch) and an upstream connection
 * (struct proxy_upstream), and the seams between the files of the streaming engine:
 *   session.c   the state machine: phases, timers, the end of an exchange, local answers,
 *               HTTP/1.1 request heads, flush/run, accept and the worker state;
 *   admission.c what a parsed request may do (torii_proxy__dispatch): Host, route, certificate,
 *               client certificate, jwt, health, well-known, redirect;
 *   upstream.c  the upstream attached to a connection: forward a request head, timeouts,
 *               failures and the one retry;
 *   pump.c      bytes of bodies: request body -> upstream (or the local buffer, or dropped),
 *               response -> client (head rewrite, Content-Length moved, chunked re-framed);
 *   pool.c      upstream connections: the idle pool and the passive health of each target;
 *   interim.c   1xx responses of an upstream relayed to the client;
 *   h2up*.c     HTTP/2 upstreams (backend.protocol h2/h2c) behind the same interface
 *               (h2up_int.h);
 *   accesslog.c the access log line (json or combined) and the status metric.
 * Only the files of src/proxy include it; it includes proxy_int.h, nothing includes it back.
 * A request source other than HTTP/1.1 parsing (HTTP/2, WebSocket) enters at
 * torii_proxy__dispatch with a struct torii_http_req and its body framing, and feeds the body
 * through torii_proxy__pump_body's sinks; responses leave through torii_proxy__local or the
 * response pump. Threads: worker thread only (each connection belongs to one loop). */
#ifndef TORII_PROXY_SESSION_INT_H
#define TORII_PROXY_SESSION_INT_H

#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "proxy_int.h"
#include "torii/http.h"
#include "torii/proxy.h"
#include "torii/stream.h"

#define PX_HIGH_WM     ((size_t)512 * 1024) /* stop reading the other side above this */
#define PX_LOW_WM      ((size_t)128 * 1024) /* resume below this */
#define PX_DOWN_MS     10000                /* a failed target is skipped this long */
#define PX_LINGER_MS   1000
#define PX_DRAIN_MAX   ((uint64_t)1024 * 1024) /* request body dropped after an early answer */
#define PX_DRAIN_MS    5000                    /* ... within this long, else close */
#define PX_MAX_INTERIM 8 /* 1xx responses relayed per exchange (interim.c); more: 502 */

enum pc_phase {
    PH_HEAD = 0, /* reading a request head (or idle between requests) */
    PH_BODY,     /* streaming the request body to the upstream */
    PH_WAIT,     /* request sent; the response is being streamed */
    PH_CLOSING,  /* last bytes queued; close once written */
    PH_LOCAL,    /* buffering the body of a request torii answers itself */
    PH_DRAIN,    /* answered: dropping the rest of the request body */
    PH_TUNNEL,   /* switched protocols (101): the bytes go through pc->tun (tunnel_h1.c) */
};

enum rs_phase {
    RS_NONE = 0, /* no upstream response expected */
    RS_HEAD,     /* waiting for the response head */
    RS_BODY,     /* streaming the response body */
};

enum pc_timer {
    PT_NONE = 0,
    PT_IDLE,   /* keep-alive idle between requests */
    PT_HEADER, /* absolute deadline for a complete head (slowloris) */
    PT_BODY,   /* request body inactivity */
    PT_CLOSE,  /* last response being written */
    PT_LINGER, /* discarding input after the last response */
    PT_DRAIN,  /* absolute deadline for dropping the rest of an answered request's body */
};

struct h2up_stream;
struct proxy_tunnel;

struct proxy_upstream {
    struct proxy_worker *pw;
    struct torii_stream *st;
    struct torii_http_parser *parser;
    const struct torii_route_backend *be;
    const struct torii_route_target *t;
    struct proxy_conn *pc;              /* attached client, NULL while pooled */
    struct proxy_upstream *prev, *next; /* idle list of its target */
    int connected;
    int reused;
    struct h2up_stream *h2; /* backend.protocol h2/h2c: a stream on a shared connection, st
                             * NULL (h2up.c; reached through torii_proxy__up_* below) */
};

/* The request being served. */
struct proxy_exch {
    int active;
    const struct torii_route *route;
    const struct torii_route_target *target;
    int minor;
    int keep; /* the client connection may carry another request */
    int head_req;
    enum torii_http_body_kind req_body;
    uint64_t req_len, req_left;
    int req_done;           /* the request body has been read to its end */
    struct evbuffer *lbody; /* PH_LOCAL: the body being buffered */
    int lbody_over;         /* PH_LOCAL: the body exceeds TORII_WELLKNOWN_MAX_BODY */
    enum rs_phase rs;
    enum torii_http_body_kind resp_body;
    uint64_t resp_left;
    enum torii_proxy_out_framing out;
    int resp_started; /* bytes of the response written to the client */
    int retried;
    int grpc;    /* the request's content-type is application/grpc* (gRPC error answers) */
    int interim; /* 1xx responses relayed to the client (interim.c) */
    int status;
    uint64_t bytes_in, bytes_out;
    int64_t t0_us, tu0_us, tu1_us;
    /* For the access log and a retry: into the request head (valid until the parser moves
     * to the next request) or the SNI. */
    struct torii_slice method;
    struct torii_slice host;
    struct torii_slice path;
    struct torii_slice referer; /* combined access log format */
    struct torii_slice ua;
    struct torii_slice upgrade; /* the protocol asked for upstream (Upgrade), empty: none */
};

struct proxy_conn {
    struct proxy_worker *pw;
    struct proxy_conn *prev, *next;
    struct torii_stream *st;
    struct torii_http_parser *rp;
    struct proxy_upstream *up;
    struct proxy_tunnel *tun; /* PH_TUNNEL: client <-> upstream */
    struct event *timer;
    enum pc_timer tmode;
    int64_t t_deadline_us; /* when tmode expires */
    int64_t t_fire_us;     /* when the pending timer event fires; 0: not pending */
    enum pc_phase phase;
    unsigned tls : 1;
    unsigned busy : 1;
    unsigned again : 1;
    unsigned dead : 1;
    unsigned peer_eof : 1;
    unsigned discarded : 1;
    unsigned up_eof : 1;
    unsigned up_err : 1;
    unsigned up_timeout : 1;
    unsigned certs_done : 1;
    unsigned sni_route_known : 1; /* sni_route is set (once per TLS connection) */
    unsigned had_request : 1;     /* at least one request was answered (or rejected) and counted */
    int verdict;
    const struct torii_route *sni_route; /* the route of the SNI (NULL: none), pc_client_auth */
    char *cov_host; /* last Host checked against the certificate, and the outcome */
    int cov_ok;
    char *client_cert; /* RFC 9440 values, computed once per connection */
    char *client_cert_chain;
    char *jwt_hdrs; /* claim headers of the current request (routes[].jwt), or NULL */
    size_t jwt_hdrs_len;
    uint64_t head_bytes;
    enum torii_http_body_kind drain_kind; /* PH_DRAIN: framing of the body being dropped */
    uint64_t drain_left;                  /* PH_DRAIN, LENGTH: bytes still to drop */
    uint64_t drain_budget;                /* PH_DRAIN, CHUNKED: raw bytes still allowed */
    char ip[INET6_ADDRSTRLEN];
    struct proxy_exch x;
    /* HTTP/2 (h2_int.h): the connection's session when ALPN chose h2, or, for the child
     * connection of one stream (reading a pipe, not in pw->conns), that stream. */
    struct proxy_h2 *h2;
    struct h2_stream *h2s;
    unsigned h2_checked : 1; /* ALPN looked at once the handshake was done */
    unsigned h2_child : 1;   /* the child of a stream (h2s, while the stream has it) */
    unsigned head_given : 2; /* a child's request head its parser took as parts (h2req.c): the
                              * enum torii_http_parse_ev to dispatch at the next step; 0: none */
};

/* ---- session.c: the state machine ---- */

/** Set the connection's timer mode (PT_NONE or ms 0: none) with a deadline ms from now. */
void torii_proxy__timer_arm(struct proxy_conn *pc, enum pc_timer mode, uint32_t ms);
/** 1 when the rest of the current request body may be read and dropped after the response
 * (bounded and framed), keeping the connection; 0 when the connection must close. */
int torii_proxy__can_drain(struct proxy_conn *pc);
/** End the current exchange: the upstream back to the pool (up_reusable) or closed, the
 * access log line, then the next phase (next request, drain the body, or closing). */
void torii_proxy__exchange_end(struct proxy_conn *pc, int up_reusable);
/** Answer the current request ourselves (body borrowed, copied out), then end the exchange.
 * close: the connection closes after it (also forced when the body cannot be drained). */
void torii_proxy__local(struct proxy_conn *pc, int status, const char *ctype, const void *body,
                        size_t len, const struct torii_http_header *extra, size_t n_extra,
                        int close);
/** torii_proxy__local with a JSON body {"error": msg}. */
void torii_proxy__local_error(struct proxy_conn *pc, int status, const char *msg, int close);
/** The HTTP/1.1 request parser failed: answer its status (400 by default) and close. */
void torii_proxy__reject(struct proxy_conn *pc);
/** Step the state machine and flush, until nothing is left to do; frees the connection when
 * it is dead. Safe from nested callbacks (deferred to the outer call). */
void torii_proxy__run(struct proxy_conn *pc);

/** The child connection of an HTTP/2 stream, over a pipe stream (torii_stream_pipe: send,
 * arg; a kept child's pipe rearmed): a connection of the same worker, peer and TLS session as
 * parent, not listed in pw->conns. NULL on allocation failure. */
struct proxy_conn *torii_proxy__conn_pipe(struct proxy_conn *parent, torii_stream_pipe_cb send,
                                          void *arg);

/* ---- h2.c, h2stream.c, h2cache.c: HTTP/2 to clients (h2_int.h) ---- */

/** A stream child kept by the worker (cleared; its timer event kept, maybe still pending
 * at t_fire_us, its pipe stream if it had one, to be rearmed, and its request parser if it
 * had one, reset and armed), or NULL when none is kept. */
struct proxy_conn *torii_proxy__h2c_take(struct proxy_worker *pw);
/** Keep a closed stream child (everything but its timer event, pipe stream and request parser
 * already freed; the timer's mode set to none, the event left as it is; the parser reset) for
 * the next stream: 1, or 0 when the list is full (the caller frees it). */
int torii_proxy__h2c_put(struct proxy_worker *pw, struct proxy_conn *pc);
/** Free the kept streams and children, and the HTTP/2 wake event (the worker stops). */
void torii_proxy__h2_cache_clear(struct proxy_worker *pw);
/** The connection whose TLS session a request came on: pc, or for a stream child the
 * HTTP/2 connection of its stream (its per-connection caches serve every stream). */
struct proxy_conn *torii_proxy__tls_conn(struct proxy_conn *pc);

/** Once the handshake is done: when ALPN chose h2, set up pc->h2. 1 when pc now speaks
 * HTTP/2 (or failed: pc->dead), 0 to go on with HTTP/1.1. */
int torii_proxy__h2_detect(struct proxy_conn *pc);
/** The state machine step of an HTTP/2 connection (instead of the HTTP/1.1 one). */
void torii_proxy__h2_step(struct proxy_conn *pc);
/** The connection's timer fired: idle close, stalled streams. */
void torii_proxy__h2_timer(struct proxy_conn *pc);
/** Called instead of sending an HTTP/2 connection's output (h2queue.c): 1 when it is held,
 * to be sent when the worker's loop has nothing else ready (or after at most a millisecond);
 * 0 when it is to be sent now (nothing queued, a full record's worth, closing, the flush
 * itself, or a base without the idle priority). */
int torii_proxy__h2_hold(struct proxy_conn *pc);
/** The streams of pc (0 unless it speaks HTTP/2) with a request in flight; the streams that
 * became tunnels (RFC 8441 websocket after its 200) are added to *tunnels instead. */
unsigned torii_proxy__h2_busy(const struct proxy_conn *pc, unsigned *tunnels);
/** Free pc->h2 and end every stream's child (pc closes). */
void torii_proxy__h2_free(struct proxy_conn *pc);
/** The child's upstream response head (parsed; framing as the response pump chose it, length
 * for LENGTH): the stream submits it as HEADERS (with_body: DATA follows), the fields kept by
 * torii_proxy_resp_fields; the body then goes raw into the child's output (never chunked).
 * *bytes gets the size of the fields as HTTP/1.1 lines (the access log's bytes_out). */
int torii_proxy__h2s_resp_head(struct proxy_conn *child, const struct torii_http_resp *resp,
                               enum torii_proxy_out_framing framing, uint64_t length, int with_body,
                               size_t *bytes) TORII_MUST_USE;
/** The trailer fields of that response (copied: sent after the last DATA). */
int torii_proxy__h2s_resp_trailers(struct proxy_conn *child, const struct torii_http_resp *resp)
    TORII_MUST_USE;
/** That response is complete: the stream ends once the child's output is taken. */
void torii_proxy__h2s_resp_end(struct proxy_conn *child);
/** A child connection ends (pc_close): its stream forgets it. */
void torii_proxy__h2s_child_gone(struct proxy_conn *child);
/** Tunnel endpoint ops of a stream's child after a 101 (ctx: the child): its pipe, and the
 * half-close becomes the stream's END_STREAM (RFC 8441). */
extern const struct proxy_tun_ops torii_proxy__h2s_tun_ops;

/* ---- admission.c ---- */

/** A request head has been read (req borrowed for the exchange; body: its framing and, for
 * LENGTH, its length): start the exchange, run the admission checks in order (health path,
 * well-known, Host, https redirect, route, certificate coverage, client certificate, jwt) and
 * either answer locally or forward to a target (next phase PH_BODY or PH_WAIT). */
void torii_proxy__dispatch(struct proxy_conn *pc, const struct torii_http_req *req,
                           enum torii_http_body_kind body, uint64_t body_len);
/** PH_LOCAL: the buffered body is complete; answer the well-known request with it. */
void torii_proxy__local_body_done(struct proxy_conn *pc);

/* ---- upstream.c ---- */

/** Attach an upstream for the current exchange's target (pooled when allow_pool) and write
 * the request head (req, host borrowed) into its output. TORII_OK, or an error with the
 * target marked down (the caller releases and answers 502). */
int torii_proxy__forward(struct proxy_conn *pc, const struct torii_http_req *req,
                         struct torii_slice host, int allow_pool) TORII_MUST_USE;
/** Detach the upstream: back to the pool when reusable, else closed. NULL upstream: no-op. */
void torii_proxy__up_release(struct proxy_conn *pc, int reusable);
/** Timeouts of the attached upstream for the current phase. */
void torii_proxy__up_timeouts(struct proxy_conn *pc);
/** The upstream failed: status answered if no byte of the response was sent, else the
 * connection dies (the client sees a truncated message). */
void torii_proxy__up_fail(struct proxy_conn *pc, int status, const char *msg);
/** EOF, error or timeout on the attached upstream: finish a close-delimited response, retry
 * once on a new connection, or fail with 502/504. */
void torii_proxy__up_trouble(struct proxy_conn *pc);

/* The upstream's byte interface, for HTTP/1.1 (its stream) and HTTP/2 upstreams (h2up.c:
 * the request written as HTTP/1.1 into up_out is sent as a stream; the response comes back as
 * HTTP/1.1, chunked with its trailers, in up_in). */
struct evbuffer *torii_proxy__up_out(struct proxy_upstream *up);
struct evbuffer *torii_proxy__up_in(struct proxy_upstream *up);
size_t torii_proxy__up_unsent(struct proxy_upstream *up);
void torii_proxy__up_read(struct proxy_upstream *up, int on);
int torii_proxy__up_flush(struct proxy_upstream *up) TORII_MUST_USE;

/* ---- rpcache.c ---- */

/** Give pc a request parser (one the worker kept, else a new one). TORII_OK or TORII_ENOMEM. */
int torii_proxy__rp_take(struct proxy_conn *pc) TORII_MUST_USE;
/** pc's parser (pc->rp, reset) feeds pc's request body sinks, as one from torii_proxy__rp_take. */
void torii_proxy__rp_arm(struct proxy_conn *pc);
/** pc is idle between requests (PH_HEAD, nothing started, no input): its parser goes back to
 * the worker (or is freed beyond PX_RP_FREE). Otherwise nothing. */
void torii_proxy__rp_put(struct proxy_conn *pc);
/** A parser nobody uses any more (p may be NULL, or stopped mid-message): reset and kept by
 * the worker, or freed beyond PX_RP_FREE. */
void torii_proxy__rp_give(struct proxy_worker *pw, struct torii_http_parser *p);
/** Free the parsers the worker keeps (worker tear-down). */
void torii_proxy__rp_clear(struct proxy_worker *pw);

/* ---- pump.c ---- */

/** The last chunk and the trailers that may pass (RFC 9110 section 6.5.1) into out. */
int torii_proxy__last_chunk(struct evbuffer *out, const struct torii_http_header *t, size_t n)
    TORII_MUST_USE;
/** HTTP parser body callbacks (arg: the proxy_conn): a chunked request body to the upstream
 * (re-framed), the local buffer or nowhere; a chunked response body to the client. */
int torii_proxy__req_body_cb(void *arg, const unsigned char *data, size_t len);
int torii_proxy__resp_body_cb(void *arg, const unsigned char *data, size_t len);
/** Client input -> the request body's sink (PH_BODY: upstream, PH_LOCAL: local buffer). */
void torii_proxy__pump_body(struct proxy_conn *pc);
/** PH_DRAIN: client input -> nowhere, until the body ends; then the next request. */
void torii_proxy__pump_drain(struct proxy_conn *pc);
/** Dropping the body cannot go on: close once the response is out. */
void torii_proxy__drain_stop(struct proxy_conn *pc);
/** Upstream input -> client, until the response is done or the client's output is full. */
void torii_proxy__pump_resp(struct proxy_conn *pc);
/** The response is complete: end the exchange (upstream pooled when it can be). */
void torii_proxy__resp_complete(struct proxy_conn *pc);

/* ---- interim.c ---- */

/** The upstream's 1xx response (not 101) to the client before the final one: TORII_OK
 * (relayed, or not for this client: a 100, an HTTP/1.0 client), TORII_EPROTO past
 * PX_MAX_INTERIM (the caller answers 502), TORII_ENOMEM. */
int torii_proxy__interim(struct proxy_conn *pc, const struct torii_http_resp *resp) TORII_MUST_USE;

/* ---- tunnel_h1.c: HTTP/1.1 protocol switches ---- */

/** Check the request's Upgrade against the route (before forwarding): 0 with x.upgrade set
 * (or empty: a plain request), or -1 when refused (answered, the connection closes). */
int torii_proxy__upgrade_admit(struct proxy_conn *pc, const struct torii_http_req *req);
/** The upstream answered 101 to the current exchange: the 101 to the client and PH_TUNNEL
 * (or 502 when it switched to something not asked for). TORII_OK or TORII_ENOMEM. */
int torii_proxy__tunnel_begin(struct proxy_conn *pc) TORII_MUST_USE;
/** PH_TUNNEL, from the state machine's step: pump (EOFs seen so far passed on). */
void torii_proxy__tunnel_h1_step(struct proxy_conn *pc);
/** PH_TUNNEL: an event of the client (upstream 0) or upstream stream; may free pc. */
void torii_proxy__tunnel_h1_event(struct proxy_conn *pc, int upstream, int what);

/* ---- pool.c ---- */

/** An upstream for target t of route r, detached (no callbacks): the most recent idle one
 * when allow_pool and there is one (reused = 1), else a new connection (TLS to t when t->tls).
 * TORII_ETLS, TORII_EIO, or a parser allocation error. */
int torii_proxy__upstream_get(struct proxy_worker *pw, const struct torii_route *r,
                              const struct torii_route_target *t, int allow_pool,
                              struct proxy_upstream **out) TORII_MUST_USE;
/** Back to the idle pool of its target if it is connected, has nothing pending and the pool
 * has room; otherwise freed. Takes up. */
void torii_proxy__pool_put(struct proxy_upstream *up);
/** Close and free (NULL accepted). Not for pooled ones (see torii_proxy__pool_clear). */
void torii_proxy__upstream_free(struct proxy_upstream *up);
/** Close every idle pooled connection of the worker. */
void torii_proxy__pool_clear(struct proxy_worker *pw);
/** Passive health: t is skipped for PX_DOWN_MS (unless every target is down). */
void torii_proxy__target_mark_down(struct proxy_worker *pw, const struct torii_route_target *t);
/** The next target of route r, round robin over the targets that are not down. */
const struct torii_route_target *torii_proxy__target_pick(struct proxy_worker *pw,
                                                          const struct torii_route *r);

/* ---- accesslog.c ---- */

/** Count the exchange's status and, when access_log is on, write its line (json or combined,
 * cfg->access_log_format). */
void torii_proxy__access_log(struct proxy_conn *pc);
/** The path and query of a request as logged (one slice into the request head). */
struct torii_slice torii_proxy__log_target(const struct torii_http_req *req);

#endif
