/* conn.c - the connection engine: drives one torii_http_parser over a bufferevent, one request
 * at a time. While a response is being written, reading and parsing are paused, so pipelined
 * requests are answered in order and a client that does not read cannot make us buffer.
 * States: READING (parsing), FLUSHING (response queued; resume when the output drains),
 * CLOSING (last response queued; close when it drains), LINGER (drained, discarding what the
 * client still sends for a short while so our response is not lost to a TCP reset).
 * One timer serves every deadline: idle between requests, the absolute header deadline
 * (slowloris: 408), body inactivity (408), write stalls and the linger period.
 * Re-entrancy: callbacks never free the conn directly; conn_run() steps the state machine
 * and is the only place that frees (c->dead), guarded against nested calls (c->busy). */
#include <sys/time.h>

#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "http_int.h"
#include "torii/http.h"
#include "torii/log.h"
#include "torii/mem.h"

#define HTTP_LINGER_MS 1000

enum conn_state {
    CONN_READING = 0,
    CONN_FLUSHING,
    CONN_CLOSING,
    CONN_LINGER,
    CONN_DEFERRED, /* the handler answers later (torii_http_defer); nothing is read */
};

enum timer_mode {
    TIMER_NONE = 0,
    TIMER_IDLE,
    TIMER_HEADER,
    TIMER_BODY,
    TIMER_WRITE,
    TIMER_LINGER,
};

struct torii_http_exchange {
    struct torii_http_conn *conn;
    int responded;
    int deferred;
    int head_only;
    int close;
    int version_minor;
};

struct torii_http_conn {
    struct bufferevent *bev;
    struct torii_http_parser *parser;
    struct torii_http_limits lim;
    char *peer;
    char *sni;
    torii_http_handler_cb cb;
    void *arg;
    torii_http_close_cb close_cb;
    void *close_arg;
    struct event *timer;
    enum timer_mode timer_mode;
    enum conn_state state;
    struct torii_http_exchange ex;
    uint32_t n_requests;
    int busy;
    int again;
    int dead;
    int peer_eof;
    int discarded;
};

static void conn_free(struct torii_http_conn *c)
{
    if (c->timer != NULL) {
        event_free(c->timer);
    }
    bufferevent_free(c->bev);
    torii_http_parser_free(c->parser);
    free(c->peer);
    free(c->sni);
    free(c);
}

static void timer_arm(struct torii_http_conn *c, enum timer_mode mode, uint32_t ms)
{
    struct timeval tv;

    c->timer_mode = mode;
    if (ms == 0) {
        (void)event_del(c->timer);
        c->timer_mode = TIMER_NONE;
        return;
    }
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    if (event_add(c->timer, &tv) != 0) {
        torii_log(TORII_LOG_WARN, "http: cannot arm timer (peer=%s)", c->peer);
    }
}

/* Queue an error response and close once it is written. */
static void conn_reject(struct torii_http_conn *c, int status, const char *msg, int minor)
{
    char esc[96];

    if (torii_log_get_level() >= TORII_LOG_DEBUG) {
        torii_log(TORII_LOG_DEBUG, "http: request rejected: %d %s (peer=%s)", status,
                  torii_log_escape(msg, strlen(msg), esc, sizeof(esc)), c->peer);
    }
    if (http_write_error(bufferevent_get_output(c->bev), status, msg, minor, 1) != TORII_OK) {
        c->dead = 1;
        return;
    }
    c->state = CONN_CLOSING;
    timer_arm(c, TIMER_WRITE, c->lim.idle_timeout_ms);
}

static void conn_dispatch(struct torii_http_conn *c)
{
    struct torii_http_req req = *torii_http_parser_req(c->parser);
    int keep;

    c->n_requests++;
    keep = req.keep_alive && (c->lim.max_requests == 0 || c->n_requests < c->lim.max_requests);
    req.keep_alive = keep;
    req.peer = c->peer;
    req.sni = c->sni;
    c->ex.conn = c;
    c->ex.responded = 0;
    c->ex.deferred = 0;
    c->ex.head_only = strcmp(req.method, "HEAD") == 0;
    c->ex.close = !keep;
    c->ex.version_minor = req.version_minor;
    c->cb(&c->ex, &req, c->arg);
    if (!c->ex.responded && c->ex.deferred) {
        c->state = CONN_DEFERRED;
        (void)bufferevent_disable(c->bev, EV_READ);
        timer_arm(c, TIMER_NONE, 0);
        return;
    }
    if (!c->ex.responded) {
        torii_log(TORII_LOG_ERR, "http: handler did not respond (peer=%s)", c->peer);
        if (http_write_error(bufferevent_get_output(c->bev), 500, "internal error",
                             req.version_minor, 1)
            != TORII_OK) {
            c->dead = 1;
        }
        c->ex.close = 1;
    }
    torii_http_parser_next(c->parser);
    c->state = c->ex.close ? CONN_CLOSING : CONN_FLUSHING;
    timer_arm(c, TIMER_WRITE, c->lim.idle_timeout_ms);
}

static void conn_on_head(struct torii_http_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    /* RFC 9110 section 10.1.1: the client waits for this before sending the body. */
    if (torii_http_parser_expects_continue(c->parser)) {
        if (bufferevent_write(c->bev, cont, sizeof(cont) - 1) != 0) {
            c->dead = 1;
        }
    }
}

/* Parse what is buffered, one request at a time; never frees. */
static void conn_read_input(struct torii_http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (c->state == CONN_READING && !c->dead) {
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;
        const struct torii_http_req *req;
        const char *msg = NULL;
        int status;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        ev = torii_http_parser_feed(c->parser, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(in, used);
        switch (ev) {
        case TORII_HTTP_PARSE_MORE:
            break;
        case TORII_HTTP_PARSE_HEAD:
            conn_on_head(c);
            break;
        case TORII_HTTP_PARSE_DONE:
            conn_dispatch(c);
            break;
        case TORII_HTTP_PARSE_ERROR:
        default:
            req = torii_http_parser_req(c->parser);
            status = torii_http_parser_error(c->parser, &msg);
            conn_reject(c, status != 0 ? status : 400, msg != NULL ? msg : "malformed request",
                        req != NULL ? req->version_minor : 1);
            break;
        }
    }
}

static void conn_step(struct torii_http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->state == CONN_FLUSHING && evbuffer_get_length(out) == 0) {
        c->state = CONN_READING;
        if (!c->peer_eof) {
            (void)bufferevent_enable(c->bev, EV_READ);
        }
    }
    if (c->state == CONN_READING) {
        conn_read_input(c);
    }
    if (c->dead) {
        return;
    }
    switch (c->state) {
    case CONN_READING:
        if (torii_http_parser_idle(c->parser)) {
            if (c->peer_eof) {
                c->dead = 1; /* the client is done and nothing is pending */
            } else if (c->timer_mode != TIMER_IDLE) {
                timer_arm(c, TIMER_IDLE, c->lim.idle_timeout_ms);
            }
        } else if (c->peer_eof) {
            c->dead = 1; /* truncated request: nobody is left to answer */
        } else if (torii_http_parser_req(c->parser) == NULL) {
            /* Absolute deadline from the first byte: trickling bytes do not extend it. */
            if (c->timer_mode != TIMER_HEADER) {
                timer_arm(c, TIMER_HEADER, c->lim.header_timeout_ms);
            }
        } else {
            timer_arm(c, TIMER_BODY, c->lim.idle_timeout_ms);
        }
        break;
    case CONN_FLUSHING:
        (void)bufferevent_disable(c->bev, EV_READ);
        break;
    case CONN_CLOSING:
        if (evbuffer_get_length(in) > 0) {
            c->discarded = 1;
            (void)evbuffer_drain(in, evbuffer_get_length(in));
        }
        if (evbuffer_get_length(out) == 0) {
            if (!c->discarded || c->peer_eof) {
                c->dead = 1;
            } else {
                c->state = CONN_LINGER;
                timer_arm(c, TIMER_LINGER, HTTP_LINGER_MS);
            }
        }
        break;
    case CONN_LINGER:
        (void)evbuffer_drain(in, evbuffer_get_length(in));
        if (c->peer_eof) {
            c->dead = 1;
        }
        break;
    default:
        break;
    }
}

/* The single place where a connection ends by itself. */
static void conn_run(struct torii_http_conn *c)
{
    if (c->busy) {
        c->again = 1;
        return;
    }
    c->busy = 1;
    do {
        c->again = 0;
        conn_step(c);
    } while (c->again && !c->dead);
    c->busy = 0;
    if (c->dead) {
        if (c->close_cb != NULL) {
            c->close_cb(c, c->close_arg);
        }
        conn_free(c);
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_run(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_run(arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct torii_http_conn *c = arg;

    (void)bev;
    if (what & BEV_EVENT_EOF) {
        c->peer_eof = 1;
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        c->dead = 1;
    }
    conn_run(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_http_conn *c = arg;
    enum timer_mode mode = c->timer_mode;

    (void)fd;
    (void)what;
    c->timer_mode = TIMER_NONE;
    switch (mode) {
    case TIMER_HEADER:
    case TIMER_BODY:
        if (c->state == CONN_READING) {
            const struct torii_http_req *req = torii_http_parser_req(c->parser);
            conn_reject(c, 408, "request timeout", req != NULL ? req->version_minor : 1);
            (void)bufferevent_disable(c->bev, EV_READ);
        } else {
            c->dead = 1;
        }
        break;
    case TIMER_NONE:
    case TIMER_IDLE:
    case TIMER_WRITE:
    case TIMER_LINGER:
    default:
        c->dead = 1;
        break;
    }
    conn_run(c);
}

int torii_http_conn_open(const struct torii_http_conn_opts *o, struct bufferevent *bev_owned,
                         struct torii_http_conn **out)
{
    struct torii_http_conn *c = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(o->base != NULL && o->lim != NULL && o->cb != NULL && bev_owned != NULL,
                 TORII_EINVAL);
    c = torii_xcalloc(1, sizeof(*c));
    c->lim = *o->lim;
    c->peer = torii_xstrdup(o->peer != NULL ? o->peer : "-");
    c->sni = o->sni != NULL ? torii_xstrdup(o->sni) : NULL;
    c->cb = o->cb;
    c->arg = o->arg;
    c->close_cb = o->close_cb;
    c->close_arg = o->close_arg;
    TORII_TRY(torii_http_parser_new(&c->lim, &c->parser));
    c->timer = evtimer_new(o->base, conn_timer_cb, c);
    TORII_ENSURE(c->timer != NULL, TORII_ENOMEM);
    c->bev = bev_owned;
    bufferevent_setcb(bev_owned, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(bev_owned, EV_WRITE, 0, 0);
    if (bufferevent_enable(bev_owned, EV_READ | EV_WRITE) != 0) {
        bufferevent_setcb(bev_owned, NULL, NULL, NULL, NULL);
        c->bev = NULL;
        rc = TORII_EIO;
        goto out;
    }
    timer_arm(c, TIMER_IDLE, c->lim.idle_timeout_ms);
    /* Input may already be buffered (e.g. read during a TLS handshake): process it from the
     * loop, never from inside this call. */
    if (evbuffer_get_length(bufferevent_get_input(bev_owned)) > 0) {
        bufferevent_trigger(bev_owned, EV_READ, BEV_OPT_DEFER_CALLBACKS);
    }
    *out = c;
    c = NULL;
out:
    if (c != NULL) {
        if (c->timer != NULL) {
            event_free(c->timer);
        }
        torii_http_parser_free(c->parser);
        free(c->peer);
        free(c->sni);
        free(c);
    }
    return rc;
}

int torii_http_conn_start(struct event_base *base, struct bufferevent *bev_owned,
                          const struct torii_http_limits *lim, const char *peer, const char *sni,
                          torii_http_handler_cb cb, void *arg)
{
    struct torii_http_conn_opts o;
    struct torii_http_conn *c = NULL;

    memset(&o, 0, sizeof(o));
    o.base = base;
    o.lim = lim;
    o.peer = peer;
    o.sni = sni;
    o.cb = cb;
    o.arg = arg;
    return torii_http_conn_open(&o, bev_owned, &c);
}

void torii_http_conn_free(struct torii_http_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    conn_free(conn);
}

void torii_http_defer(struct torii_http_exchange *ex)
{
    ex->deferred = 1;
}

struct torii_http_conn *torii_http_exchange_conn(struct torii_http_exchange *ex)
{
    return ex->conn;
}

void torii_http_deferred_respond(struct torii_http_conn *c, int status, const char *content_type,
                                 const void *body, size_t len,
                                 const struct torii_http_header *extra, size_t n_extra)
{
    if (c == NULL || c->state != CONN_DEFERRED) {
        torii_log(TORII_LOG_ERR, "http: deferred response without a deferred request");
        return;
    }
    c->ex.deferred = 0;
    torii_http_respond(&c->ex, status, content_type, body, len, extra, n_extra);
    torii_http_parser_next(c->parser);
    c->state = c->ex.close ? CONN_CLOSING : CONN_FLUSHING;
    timer_arm(c, TIMER_WRITE, c->lim.idle_timeout_ms);
    conn_run(c);
}

void torii_http_respond(struct torii_http_exchange *ex, int status, const char *content_type,
                        const void *body, size_t len, const struct torii_http_header *extra,
                        size_t n_extra)
{
    struct torii_http_conn *c = ex->conn;
    struct torii_http_response r;

    if (ex->responded) {
        torii_log(TORII_LOG_ERR, "http: second response to one request ignored (peer=%s)", c->peer);
        return;
    }
    ex->responded = 1;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.content_type = content_type;
    r.body = body;
    r.len = len;
    r.extra = extra;
    r.n_extra = n_extra;
    r.head_only = ex->head_only;
    r.close = ex->close;
    r.version_minor = ex->version_minor;
    if (torii_http_response_write(bufferevent_get_output(c->bev), &r) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "http: cannot queue response (peer=%s)", c->peer);
        c->dead = 1;
    }
}
