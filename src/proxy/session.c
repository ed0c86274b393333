/* session.c - the state machine of the streaming HTTP/1.1 proxy engine (the other duties are
 * in admission.c, upstream.c, pump.c, pool.c and accesslog.c; session_int.h is the seam): one
 * struct proxy_conn per client connection, at most one request in flight (pipelined requests wait
 * in the input buffer and are answered in order), and one struct proxy_upstream attached while that
 * request is served.
 *
 * Request side (client -> upstream): the strict request parser reads the head; the head is
 * rewritten in one pass into the upstream's output; a Content-Length body is moved between
 * evbuffers (evbuffer_remove_buffer: no copy), a chunked body goes through the parser and is
 * re-framed. Response side (upstream -> client): the strict response parser reads the head
 * (1xx dropped), the head is rewritten, a Content-Length body is moved, a chunked or
 * close-delimited one is re-framed as chunked for HTTP/1.1 clients or sent close-delimited to
 * HTTP/1.0 clients.
 * I/O: both sides are torii_streams; every callback steps the state machine, then flushes
 * what it queued, once per side (pc_run), so an exchange costs few system calls.
 * Back-pressure: a side stops reading while the other side's unsent output is above
 * PX_HIGH_WM and resumes when it drains (the flush, or the stream's write callback at
 * PX_LOW_WM).
 * Requests torii answers itself: a /.well-known/ request body is buffered (PH_LOCAL, at most
 * TORII_WELLKNOWN_MAX_BODY) before the handler runs. When a response (ours, or the backend's)
 * is complete before the request body is, the rest of the body is read and dropped
 * (PH_DRAIN, at most PX_DRAIN_MAX bytes or PX_DRAIN_MS) so the connection can carry the next
 * request; when the framing does not allow that, the response says close.
 * Re-entrancy: every callback ends in pc_run(), which steps the state machine and is the only
 * place where a connection is freed (pc->dead), guarded against nested calls (pc->busy).
 * Every connection ends in pc_close(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/stream.h"
#include "tunnel.h"

static void pc_set_read(struct proxy_conn *pc, int on)
{
    torii_stream_read(pc->st, on);
}

static void pc_set_up_read(struct proxy_conn *pc, int on)
{
    if (pc->up == NULL) {
        return;
    }
    torii_proxy__up_read(pc->up, on);
}

static void pc_timer_schedule(struct proxy_conn *pc, int64_t now_us, int64_t at_us)
{
    int64_t d = at_us > now_us ? at_us - now_us : 0;
    struct timeval tv;

    tv.tv_sec = (time_t)(d / 1000000);
    tv.tv_usec = (suseconds_t)(d % 1000000);
    (void)event_add(pc->timer, &tv);
    pc->t_fire_us = at_us;
}

/* Timers change modes twice per request; the event is moved only when the new deadline is
 * earlier than the pending one. A timer that fires early re-arms itself for the rest
 * (pc_timer_cb), one that finds no mode does nothing: about one timer operation per timeout
 * period instead of two per request. */
void torii_proxy__timer_arm(struct proxy_conn *pc, enum pc_timer mode, uint32_t ms)
{
    int64_t now;

    pc->tmode = mode;
    if (mode == PT_NONE || ms == 0) {
        pc->tmode = PT_NONE;
        return;
    }
    now = torii_proxy__now_us(pc->pw);
    pc->t_deadline_us = now + (int64_t)ms * 1000;
    if (pc->t_fire_us != 0 && pc->t_fire_us <= pc->t_deadline_us) {
        return;
    }
    pc_timer_schedule(pc, now, pc->t_deadline_us);
}

/* 1 while the body of the current request has not been read to its end. */
static int pc_body_pending(const struct proxy_conn *pc)
{
    return pc->x.req_body != TORII_HTTP_BODY_NONE && !pc->x.req_done;
}

/* May the rest of the current request body be read and dropped after the response, keeping
 * the connection? Only when we know where it ends and it is bounded: a Content-Length
 * remainder of at most PX_DRAIN_MAX, or a chunked body (cut off at PX_DRAIN_MAX). A client
 * waiting for a 100 Continue we never sent may send its body or not (RFC 9110 section
 * 10.1.1): the connection cannot be framed and closes. */
int torii_proxy__can_drain(struct proxy_conn *pc)
{
    const struct proxy_exch *x = &pc->x;

    if (!pc_body_pending(pc)) {
        return 1;
    }
    if (pc->peer_eof
        || (pc->phase == PH_HEAD && pc->rp != NULL && torii_http_parser_expects_continue(pc->rp))) {
        return 0;
    }
    if (x->req_body == TORII_HTTP_BODY_LENGTH) {
        return x->req_left <= PX_DRAIN_MAX;
    }
    return x->req_body == TORII_HTTP_BODY_CHUNKED;
}

void torii_proxy__exchange_end(struct proxy_conn *pc, int up_reusable)
{
    struct proxy_exch *x = &pc->x;
    int keep = x->keep && !pc->peer_eof;
    int drain = 0;

    if (keep && pc_body_pending(pc)) {
        drain = torii_proxy__can_drain(pc);
        keep = drain;
        pc->drain_kind = x->req_body;
        pc->drain_left = x->req_left;
        pc->drain_budget = PX_DRAIN_MAX;
    }
    torii_proxy__up_release(pc, up_reusable);
    if (x->active) {
        torii_proxy__access_log(pc);
    }
    if (x->lbody != NULL) {
        evbuffer_free(x->lbody);
    }
    memset(x, 0, sizeof(*x));
    if (drain) {
        /* The parser stays on this request until its body ends (torii_proxy__pump_drain). */
        pc->phase = PH_DRAIN;
        pc->again = 1;
        torii_proxy__timer_arm(pc, PT_DRAIN, PX_DRAIN_MS);
        return;
    }
    torii_http_parser_next(pc->rp);
    if (keep) {
        pc->phase = PH_HEAD;
        /* Pipelined input (or the head an HTTP/2 stream gave its child) waits: one more pass
         * reads it. Otherwise this pass goes on to settle the idle connection. */
        if (pc->head_given != 0 || evbuffer_get_length(torii_stream_input(pc->st)) > 0) {
            pc->again = 1;
        }
        torii_proxy__timer_arm(pc, PT_NONE, 0);
    } else {
        pc->phase = PH_CLOSING;
        torii_stream_shutdown(pc->st); /* close_notify leaves with the last response */
        torii_proxy__timer_arm(pc, PT_CLOSE, pc->pw->cfg->idle_timeout_ms);
    }
}

/* A response of our own (error, redirect, well-known). The rest of a request body we did not
 * read is dropped afterwards when torii_proxy__can_drain() allows it; otherwise the connection
 * closes. */
void torii_proxy__local(struct proxy_conn *pc, int status, const char *ctype, const void *body,
                        size_t len, const struct torii_http_header *extra, size_t n_extra,
                        int close)
{
    struct evbuffer *out = torii_stream_output(pc->st);
    struct torii_http_response r;
    size_t before = evbuffer_get_length(out);

    if (!torii_proxy__can_drain(pc) || pc->pw->draining) {
        close = 1; /* draining: the client is told, and opens its next connection elsewhere */
    }
    if (close) {
        pc->x.keep = 0;
    }
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.content_type = ctype;
    r.body = body;
    r.len = len;
    r.extra = extra;
    r.n_extra = n_extra;
    r.head_only = pc->x.head_req;
    r.close = !pc->x.keep;
    r.version_minor = pc->x.minor;
    if (torii_http_response_write(out, &r) != TORII_OK) {
        pc->dead = 1;
        return;
    }
    pc->x.status = status;
    pc->x.bytes_out += evbuffer_get_length(out) - before;
    torii_proxy__exchange_end(pc, 0);
}

void torii_proxy__local_error(struct proxy_conn *pc, int status, const char *msg, int close)
{
    char body[256];
    char esc[160];
    size_t i = 0;

    for (const char *s = msg; *s != '\0' && i + 2 < sizeof(esc); s++) {
        esc[i++] = (*s == '"' || *s == '\\') ? '\'' : *s;
    }
    esc[i] = '\0';
    i = (size_t)snprintf(body, sizeof(body), "{\"error\":\"%s\"}", esc);
    torii_proxy__local(pc, status, "application/json", body,
                       i < sizeof(body) ? i : sizeof(body) - 1, NULL, 0, close);
}

void torii_proxy__reject(struct proxy_conn *pc)
{
    const struct torii_http_req *req = torii_http_parser_req(pc->rp);
    const char *msg = NULL;
    int status = torii_http_parser_error(pc->rp, &msg);

    if (!pc->x.active) {
        memset(&pc->x, 0, sizeof(pc->x));
        pc->x.active = 1;
        pc->x.t0_us = torii_proxy__now_us(pc->pw);
        pc->x.minor = req != NULL ? req->version_minor : 1;
        pc->x.bytes_in = pc->head_bytes;
        if (req != NULL) {
            pc->x.method.ptr = req->method;
            pc->x.method.len = req->method != NULL ? strlen(req->method) : 0;
            pc->x.path = torii_proxy__log_target(req);
        }
    }
    torii_proxy__up_release(pc, 0);
    if (pc->x.resp_started) {
        pc->dead = 1;
        return;
    }
    torii_proxy__local_error(pc, status != 0 ? status : 400,
                             msg != NULL ? msg : "malformed request", 1);
}

/* The parser read a request head (HEAD, DONE), or failed: dispatch, or reject. */
static void pc_head_event(struct proxy_conn *pc, enum torii_http_parse_ev ev)
{
    uint64_t len = 0;
    enum torii_http_body_kind kind;

    if (ev == TORII_HTTP_PARSE_ERROR) {
        torii_proxy__reject(pc);
    } else if (ev != TORII_HTTP_PARSE_MORE) {
        kind = torii_http_parser_body(pc->rp, &len);
        torii_proxy__dispatch(pc, torii_http_parser_req(pc->rp), kind, len);
    }
}

/* Parse request heads; dispatches each one (first the head an HTTP/2 stream gave its child
 * as parts, h2req.c). */
static void pc_read_heads(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);

    if (pc->head_given != 0) {
        enum torii_http_parse_ev ev = (enum torii_http_parse_ev)pc->head_given;
        pc->head_given = 0;
        pc_head_event(pc, ev);
    }

    /* The parser comes with the first bytes of a request and goes back to the worker when
     * the connection is idle again (rpcache.c): an idle connection does not carry one. */
    if (pc->rp == NULL && evbuffer_get_length(in) > 0 && torii_proxy__rp_take(pc) != TORII_OK) {
        pc->dead = 1;
        return;
    }

    while (pc->phase == PH_HEAD && !pc->dead) {
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        ev = torii_http_parser_feed(pc->rp, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(in, used);
        pc->head_bytes += used;
        pc_head_event(pc, ev);
    }
}

/* Client input: request heads, then the body of the current request (to the upstream, to
 * the local buffer, or dropped), in the order the phases follow each other. */
static void pc_pump_client(struct proxy_conn *pc)
{
    if (pc->phase == PH_HEAD && evbuffer_get_length(torii_stream_output(pc->st)) < PX_HIGH_WM) {
        pc_read_heads(pc);
    }
    if (!pc->dead && pc->phase == PH_LOCAL) {
        torii_proxy__pump_body(pc);
    }
    if (!pc->dead && pc->phase == PH_DRAIN) {
        torii_proxy__pump_drain(pc);
    }
    if (!pc->dead && pc->phase == PH_BODY) {
        torii_proxy__pump_body(pc);
    }
}

/* PH_LOCAL, PH_DRAIN: keep reading the body; a client that leaves ends the exchange. */
static void pc_settle_body(struct proxy_conn *pc)
{
    if (!pc->peer_eof) {
        pc_set_read(pc, 1);
    } else if (pc->phase == PH_LOCAL) {
        pc->dead = 1; /* upload aborted */
    } else {
        torii_proxy__drain_stop(pc); /* the answer may still be unwritten */
    }
}

/* PH_HEAD: between requests (idle timer; a stopping worker closes the connection at once)
 * or inside a head (absolute header deadline). */
static void pc_settle_head(struct proxy_conn *pc)
{
    pc_set_read(pc, evbuffer_get_length(torii_stream_output(pc->st)) < PX_HIGH_WM);
    if (pc->rp == NULL || !torii_http_parser_started(pc->rp)) {
        torii_proxy__rp_put(pc);
        if (pc->peer_eof || (pc->pw->draining == TORII_PROXY_DRAIN_STOP && pc->had_request)) {
            pc->dead = 1; /* stopping: an idle keep-alive connection closes at once */
        } else if (pc->tmode != PT_IDLE) {
            torii_proxy__timer_arm(pc, PT_IDLE, pc->pw->cfg->idle_timeout_ms);
        }
    } else if (pc->peer_eof) {
        pc->dead = 1; /* truncated request */
    } else if (pc->tmode != PT_HEADER) {
        /* Absolute deadline from the first byte: trickling bytes do not extend it. */
        torii_proxy__timer_arm(pc, PT_HEADER, pc->pw->cfg->header_timeout_ms);
    }
}

/* PH_CLOSING: input is dropped; once the last response is out the connection ends, after a
 * linger when the client was still sending. */
static void pc_settle_closing(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);

    pc_set_read(pc, 1);
    if (evbuffer_get_length(in) > 0) {
        pc->discarded = 1;
        (void)evbuffer_drain(in, evbuffer_get_length(in));
    }
    if (torii_stream_unsent(pc->st) == 0) {
        if (!pc->discarded || pc->peer_eof) {
            pc->dead = 1;
        } else if (pc->tmode != PT_LINGER) {
            /* Keep reading a moment so our last response is not lost to a reset. */
            torii_proxy__timer_arm(pc, PT_LINGER, PX_LINGER_MS);
        }
    }
}

static void pc_step(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    struct evbuffer *out = torii_stream_output(pc->st);

    if (torii_proxy__h2_detect(pc)) {
        torii_proxy__h2_step(pc); /* ALPN h2: h2.c drives the connection */
        return;
    }
    if (pc->phase == PH_TUNNEL) {
        if (!pc->dead) {
            torii_proxy__tunnel_h1_step(pc);
        }
        return;
    }
    pc_pump_client(pc);
    if (!pc->dead && pc->up != NULL && pc->x.rs != RS_NONE) {
        torii_proxy__pump_resp(pc);
    }
    if (pc->phase == PH_TUNNEL) {
        return; /* switched by the response just read: the next pass pumps (pc->again) */
    }
    if (!pc->dead && pc->up != NULL && (pc->up_eof || pc->up_err || pc->up_timeout)) {
        torii_proxy__up_trouble(pc);
    }
    if (pc->dead || pc->again) {
        return;
    }
    switch (pc->phase) {
    case PH_HEAD:
        pc_settle_head(pc);
        break;
    case PH_BODY:
        if (pc->peer_eof) {
            pc->dead = 1; /* upload aborted: the upstream gets a truncated request, closed */
            break;
        }
        pc_set_read(pc, pc->up != NULL
                            && evbuffer_get_length(torii_proxy__up_out(pc->up)) < PX_HIGH_WM);
        break;
    case PH_WAIT:
        /* Keep reading (no epoll change per request): a pipelined request waits in the
         * input, bounded by the high-water mark. */
        pc_set_read(pc, evbuffer_get_length(in) < PX_HIGH_WM);
        break;
    case PH_LOCAL:
    case PH_DRAIN:
        pc_settle_body(pc);
        break;
    case PH_CLOSING:
        pc_settle_closing(pc);
        break;
    default:
        break;
    }
    if (pc->up != NULL) {
        pc_set_up_read(pc, pc->x.rs != RS_NONE && evbuffer_get_length(out) < PX_HIGH_WM);
    }
}

static void pc_close(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;

    torii_proxy__h2s_child_gone(pc); /* an HTTP/2 stream's child: the stream forgets it */
    torii_proxy__h2_free(pc);
    /* Counted whatever the access_log setting (torii_proxy__access_log counts, then logs if asked).
     */
    torii_proxy__tunnel_free(pc->tun);
    pc->tun = NULL;
    if (pc->x.active) {
        torii_proxy__access_log(pc);
    }
    if (!pc->had_request && !pc->h2_child) {
        /* Nothing, or only empty lines (ignored, RFC 9112 section 2.2), before the close: a
         * connection outcome, not a request. */
        torii_metrics_inc(TORII_METRIC_CONN_NO_REQUEST);
    }
    torii_proxy__up_release(pc, 0);
    if (pc->x.lbody != NULL) {
        evbuffer_free(pc->x.lbody);
        pc->x.lbody = NULL;
    }
    if (pc->h2_child) {
        /* not in pw->conns */
    } else if (pc->prev != NULL) {
        pc->prev->next = pc->next;
    } else {
        pw->conns = pc->next;
    }
    if (!pc->h2_child && pc->next != NULL) {
        pc->next->prev = pc->prev;
    }
    pw->n_conns -= pc->h2_child ? 0 : 1;
    /* close_notify when all was written and the client still listens: without it, OpenSSL
     * clients treat the EOF as an error and drop the session instead of resuming it. Never
     * blocks; never after a truncated response (it would make the truncation look clean). */
    if (!pc->peer_eof && torii_stream_unsent(pc->st) == 0) {
        torii_stream_shutdown(pc->st);
        if (torii_stream_flush(pc->st) != TORII_OK) {
            ERR_clear_error(); /* the peer is gone: nothing to tell it */
        }
    }
    free(pc->cov_host);
    free(pc->client_cert);
    free(pc->client_cert_chain);
    free(pc->jwt_hdrs);
    if (pc->h2_child) { /* its parser, pipe and itself serve the next stream (h2cache.c) */
        if (torii_proxy__h2c_put(pw, pc)) {
            return;
        }
        torii_proxy__rp_give(pw, pc->rp);
    } else {
        torii_http_parser_free(pc->rp);
    }
    torii_stream_free(pc->st);
    if (pc->timer != NULL) {
        event_free(pc->timer);
    }
    free(pc);
}

/* Hand what the step queued to the kernel: one flush per side per event. Sending may free
 * room that lets a paused side go on (the high-water marks), or end a closing connection:
 * then the state machine steps again. */
static void pc_flush(struct proxy_conn *pc)
{
    size_t before = 0;
    size_t after;

    /* Waiting for the response with nothing to send: what TLS queued (a ticket) goes with it.
     * HTTP/2: frames are held while the loop has other work (h2queue.c). */
    if ((pc->phase != PH_WAIT || evbuffer_get_length(torii_stream_output(pc->st)) > 0)
        && (pc->h2 == NULL || !torii_proxy__h2_hold(pc))) {
        before = torii_stream_unsent(pc->st);
        if (torii_stream_flush(pc->st) != TORII_OK) {
            pc->dead = 1;
            return;
        }
    }
    after = before > 0 ? torii_stream_unsent(pc->st) : 0; /* (nothing can have gone) */
    if (after < before
        && ((before >= PX_HIGH_WM && after < PX_HIGH_WM)
            || (after == 0 && pc->phase == PH_CLOSING))) {
        pc->again = 1;
    }
    if (pc->up == NULL) {
        return;
    }
    before = torii_proxy__up_unsent(pc->up);
    if (torii_proxy__up_flush(pc->up) != TORII_OK) {
        pc->up_err = 1;
        pc->again = 1;
        return;
    }
    if (before >= PX_HIGH_WM && torii_proxy__up_unsent(pc->up) < PX_HIGH_WM) {
        pc->again = 1;
    }
}

void torii_proxy__run(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;

    if (pc->busy) {
        pc->again = 1;
        return;
    }
    pc->busy = 1;
    if (pw->run_depth++ == 0) {
        pw->now_us = 0; /* read again, once, when needed */
    }
    do {
        pc->again = 0;
        pc_step(pc);
        if (!pc->dead) {
            pc_flush(pc);
        }
    } while (pc->again && !pc->dead);
    pw->run_depth--;
    pc->busy = 0;
    if (pc->dead) {
        int child = pc->h2_child;
        pc_close(pc);
        if (!child && pw->on_conn_closed != NULL) {
            pw->on_conn_closed(pw->on_conn_closed_arg);
        }
    }
}

static void pc_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_conn *pc = arg;

    (void)st;
    if (pc->phase == PH_TUNNEL) {
        torii_proxy__tunnel_h1_event(pc, 0, what); /* may free pc */
        return;
    }
    if (what & TORII_STREAM_EOF) {
        pc->peer_eof = 1;
    }
    if (what & (TORII_STREAM_ERROR | TORII_STREAM_TIMEOUT)) {
        pc->dead = 1;
    }
    torii_proxy__run(pc);
}

static void pc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *pc = arg;
    enum pc_timer mode = pc->tmode;
    int64_t now = torii_clock_mono_us();

    (void)fd;
    (void)what;
    pc->t_fire_us = 0;
    if (mode == PT_NONE) {
        return;
    }
    if (now < pc->t_deadline_us) {
        pc_timer_schedule(pc, now, pc->t_deadline_us); /* armed earlier for an earlier mode */
        return;
    }
    pc->tmode = PT_NONE;
    if (pc->h2 != NULL) {
        torii_proxy__h2_timer(pc);
    } else if ((mode == PT_HEADER || mode == PT_BODY) && !pc->x.resp_started
               && pc->phase != PH_CLOSING) {
        torii_proxy__local_error(pc, 408, "request timeout", 1);
        pc_set_read(pc, 0);
    } else if (mode == PT_DRAIN && pc->phase == PH_DRAIN) {
        torii_proxy__drain_stop(pc);
    } else {
        pc->dead = 1;
    }
    torii_proxy__run(pc);
}

static void px_peer_ip(const struct sockaddr *sa, char *out, size_t len)
{
    const void *a = NULL;

    if (sa->sa_family == AF_INET) {
        a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    }
    if (a == NULL || inet_ntop(sa->sa_family, a, out, (socklen_t)len) == NULL) {
        (void)snprintf(out, len, "unknown");
    }
}

void torii_proxy__accept(struct proxy_worker *pw, evutil_socket_t fd, const struct sockaddr *sa,
                         int tls)
{
    struct proxy_conn *pc = torii_xcalloc(1, sizeof(*pc));
    SSL *ssl = NULL;

    pc->pw = pw;
    pc->tls = tls ? 1 : 0;
    px_peer_ip(sa, pc->ip, sizeof(pc->ip));
    /* TCP_NODELAY comes from the listener (torii_proxy__listen_opts). */
    if (tls && (ssl = torii_tls_conn_new(pw->tls)) == NULL) {
        evutil_closesocket(fd);
        free(pc);
        return;
    }
    pc->st = torii_stream_accept(pw->base, fd, ssl); /* owns fd and ssl from here */
    pc->timer = evtimer_new(pw->base, pc_timer_cb, pc);
    if (pc->st == NULL || pc->timer == NULL) {
        torii_log(TORII_LOG_WARN, "proxy: cannot set up a connection (client=%s)", pc->ip);
        torii_stream_free(pc->st);
        if (pc->timer != NULL) {
            event_free(pc->timer);
        }
        free(pc);
        return;
    }
    torii_stream_setcb(pc->st, pc_cb, pc);
    torii_stream_set_lowat(pc->st, PX_LOW_WM);
    /* A client that stops reading our output is dropped after the idle timeout. */
    torii_stream_timeouts(pc->st, 0, pw->cfg->idle_timeout_ms);
    if (tls) {
        torii_stream_read_ready(pc->st); /* TCP_DEFER_ACCEPT: the ClientHello is there */
    } else {
        torii_stream_read(pc->st, 1);
    }
    torii_proxy__timer_arm(pc, PT_IDLE, pw->cfg->idle_timeout_ms);
    pc->next = pw->conns;
    if (pw->conns != NULL) {
        pw->conns->prev = pc;
    }
    pw->conns = pc;
    pw->n_conns++;
}

struct proxy_conn *torii_proxy__conn_pipe(struct proxy_conn *parent, torii_stream_pipe_cb send,
                                          void *arg)
{
    struct proxy_conn *pc = torii_proxy__h2c_take(parent->pw); /* its timer and pipe kept */
    SSL *ssl = torii_stream_ssl(parent->st);

    if (pc == NULL) {
        pc = torii_xcalloc(1, sizeof(*pc));
        pc->timer = evtimer_new(parent->pw->base, pc_timer_cb, pc);
        if (pc->timer == NULL) {
            free(pc);
            return NULL;
        }
    }
    if (pc->st != NULL) {
        torii_stream_pipe_rearm(pc->st, ssl, send, arg);
    } else if ((pc->st = torii_stream_pipe(ssl, send, arg)) == NULL) {
        event_free(pc->timer);
        free(pc);
        return NULL;
    }
    pc->pw = parent->pw;
    pc->tls = parent->tls;
    pc->h2_child = 1;
    memcpy(pc->ip, parent->ip, sizeof(pc->ip));
    torii_proxy__timer_arm(pc, PT_IDLE, pc->pw->cfg->idle_timeout_ms);
    return pc;
}

int torii_proxy__worker_init(struct proxy_worker *pw, struct event_base *base,
                             const struct torii_config *cfg, const struct torii_routes *routes,
                             struct torii_tls_ctx *tls)
{
    struct torii_wellknown_opts wo = {
        .cfg = cfg, .table = NULL, .pki = pw->pki, .acme_chal = pw->acme_chal};
    struct sockaddr_storage ss;
    int sslen = 0;
    int rc = TORII_OK;

    pw->base = base;
    pw->cfg = cfg;
    pw->routes = routes;
    pw->tls = tls;
    torii_http_limits_default(&pw->lim);
    pw->lim.max_header_bytes = cfg->max_header_bytes;
    pw->lim.max_headers = cfg->max_headers;
    pw->lim.max_target = cfg->max_target;
    pw->lim.max_body = cfg->max_body;
    pw->lim.header_timeout_ms = cfg->header_timeout_ms;
    pw->lim.idle_timeout_ms = cfg->idle_timeout_ms;
    torii_http_limits_default(&pw->ulim);
    pw->ulim.max_header_bytes = cfg->max_header_bytes > 65536 ? cfg->max_header_bytes : 65536;
    pw->ulim.max_headers = cfg->max_headers > 200 ? cfg->max_headers : 200;
    pw->ulim.max_body = SIZE_MAX;
    pw->n_targets = torii_routes_n_targets(routes);
    pw->targets = torii_xcalloc(pw->n_targets ? pw->n_targets : 1, sizeof(*pw->targets));
    pw->rr = torii_xcalloc(torii_routes_count(routes) + 1, sizeof(*pw->rr));
    pw->https_port = 443;
    if (cfg->listen_https[0] != '\0'
        && torii_config_parse_addr(cfg->listen_https, &ss, &sslen, NULL) == TORII_OK) {
        pw->https_port = ss.ss_family == AF_INET6
                             ? ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port)
                             : ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    }
    pw->log_sec = -1;
    TORII_TRY(torii_wellknown_new(&wo, &pw->wk));
out:
    return rc;
}

void torii_proxy__worker_drain(struct proxy_worker *pw, int mode)
{
    struct proxy_conn *pc = pw->conns;

    pw->draining = mode;
    while (pc != NULL) {
        struct proxy_conn *next = pc->next;
        torii_proxy__run(pc); /* idle ones close (stop), the others answer with Connection: close */
        pc = next;
    }
}

unsigned torii_proxy__worker_clear(struct proxy_worker *pw)
{
    unsigned cut = 0;
    unsigned tunnels = 0;
    struct proxy_conn *pc = pw->conns;

    while (pc != NULL) {
        struct proxy_conn *next = pc->next; /* pc_close unlinks pc from pw->conns */
        if (pc->phase == PH_TUNNEL) {
            tunnels++; /* long-lived by nature: closed at the deadline, not a cut request */
        } else if (torii_proxy__h2_busy(pc, &tunnels) > 0 || pc->x.active || pc->phase != PH_HEAD
                   || (pc->rp != NULL && torii_http_parser_started(pc->rp))) {
            cut++; /* a request in flight, cut off */
        }
        pc->x.active = 0; /* no access log line at shutdown */
        pc_close(pc);
        pc = next;
    }
    if (tunnels > 0) {
        torii_log(TORII_LOG_NOTICE, "proxy: %u tunnel%s closed at the drain deadline", tunnels,
                  tunnels == 1 ? "" : "s");
    }
    torii_proxy__pool_clear(pw);
    torii_proxy__rp_clear(pw);
    torii_proxy__h2_cache_clear(pw);
    torii_proxy__h2mem_pool_clear(&pw->h2mem);
    TORII_FREE(pw->targets);
    TORII_FREE(pw->rr);
    torii_wellknown_free(pw->wk);
    pw->wk = NULL;
    return cut;
}
