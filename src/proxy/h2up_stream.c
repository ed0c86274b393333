/* h2up_stream.c - one request to an HTTP/2 backend, behind the HTTP/1.1 upstream interface
 * (session_int.h, torii_proxy__up_*). Request: the head torii wrote into out is read back
 * with the strict request parser and submitted as HEADERS (h2up_map.c); the body follows as
 * DATA when nghttp2 asks (torii_h2up__read_body), straight from out for a Content-Length body
 * or de-chunked, its trailers as a trailing HEADERS; out is the back-pressure the session
 * sees. Response: written into in as HTTP/1.1 for the response parser: status line, fields,
 * Content-Length when the backend gave one, else chunked with the trailers in the last chunk;
 * DATA is credited back to the backend only while in is below PX_HIGH_WM (else once the
 * client took it below PX_LOW_WM), so a slow client holds back its own stream only.
 * Timers: connect / read inactivity (backend.timeouts) as for HTTP/1.1 (read_ms also bounds
 * an upload the backend's flow control holds, like the write timeout), and the gRPC deadline
 * of the request's grpc-timeout: a gRPC answer with grpc-status 4 (DEADLINE_EXCEEDED), in the
 * trailers when the response had started. A stream reset after a gRPC response started ends
 * it with grpc-status 14 (UNAVAILABLE) rather than a truncated body. Worker thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "h2up_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

#define H2UP_BODY_AHEAD ((size_t)64 * 1024) /* de-chunked request body read ahead */

static void st_timer_cb(evutil_socket_t fd, short what, void *arg);

struct h2up_stream *torii_h2up__stream_new(struct proxy_upstream *up, struct h2up_conn *hc)
{
    struct h2up_stream *s = torii_xcalloc(1, sizeof(*s));

    s->up = up;
    s->hc = hc;
    s->out = evbuffer_new();
    s->in = evbuffer_new();
    s->body = evbuffer_new();
    s->hdrs = evbuffer_new();
    s->trl = evbuffer_new();
    s->timer = evtimer_new(up->pw->base, st_timer_cb, s);
    if (s->out == NULL || s->in == NULL || s->body == NULL || s->hdrs == NULL || s->trl == NULL
        || s->timer == NULL) {
        s->hc = NULL; /* not linked yet */
        torii_h2up__stream_free(s);
        return NULL;
    }
    return s;
}

void torii_h2up__stream_free(struct h2up_stream *s)
{
    if (s == NULL) {
        return;
    }
    if (s->hc != NULL) {
        nghttp2_session *ng = torii_h2up__conn_session(s->hc);
        if (ng != NULL && s->id > 0 && !s->closed) {
            (void)nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        }
        if (ng != NULL && s->credit > 0) {
            (void)nghttp2_session_consume_connection(ng, s->credit);
        }
        torii_h2up__conn_unlink(s->hc, s);
    }
    if (s->timer != NULL) {
        event_free(s->timer);
    }
    struct evbuffer *bufs[] = {s->out, s->in, s->body, s->hdrs, s->trl};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (bufs[i] != NULL) {
            evbuffer_free(bufs[i]);
        }
    }
    torii_http_parser_free(s->reqp);
    free(s);
}

struct evbuffer *torii_h2up__out(struct h2up_stream *s)
{
    return s->out;
}

struct evbuffer *torii_h2up__in(struct h2up_stream *s)
{
    return s->in;
}

int32_t torii_h2up__stream_id(const struct h2up_stream *s)
{
    return s->id;
}

struct h2up_stream *torii_h2up__stream_next(struct h2up_stream *s)
{
    return s->next;
}

struct h2up_stream **torii_h2up__stream_nextp(struct h2up_stream *s)
{
    return &s->next;
}

void torii_h2up__stream_set_next(struct h2up_stream *s, struct h2up_stream *next)
{
    s->next = next;
}

int torii_h2up__stream_woken(const struct h2up_stream *s)
{
    return s->woken;
}

void torii_h2up__stream_wake(struct h2up_stream *s)
{
    s->woken = 0;
    if (s->up->pc != NULL) {
        torii_proxy__run(s->up->pc);
    }
}

/* ---- timers ---- */

static void st_timer_schedule(struct h2up_stream *s)
{
    int64_t at = s->idle_ms > 0 ? s->active_us + (int64_t)s->idle_ms * 1000 : 0;
    int64_t now = torii_clock_mono_us();
    int64_t d;
    struct timeval tv;

    if (s->deadline_us > 0 && (at == 0 || s->deadline_us < at)) {
        at = s->deadline_us;
    }
    if (at == 0) {
        (void)event_del(s->timer);
        return;
    }
    d = at > now ? at - now : 0;
    tv.tv_sec = (time_t)(d / 1000000);
    tv.tv_usec = (suseconds_t)(d % 1000000);
    (void)event_add(s->timer, &tv);
}

void torii_h2up__timeouts(struct h2up_stream *s, uint32_t ms)
{
    s->idle_ms = ms;
    s->active_us = torii_clock_mono_us();
    st_timer_schedule(s);
}

/* The gRPC deadline passed: the client gets grpc-status 4 in a response of its own, or in the
 * trailers of the one under way; the backend's stream is cancelled. */
static void st_deadline(struct h2up_stream *s)
{
    static const char tr[] = "grpc-status: 4\r\ngrpc-message: deadline exceeded\r\n";
    int ok = 1;

    torii_log(TORII_LOG_INFO, "proxy: gRPC deadline exceeded (upstream=%s)", s->up->t->name);
    if (!s->resp_head) {
        ok = evbuffer_add_printf(s->in,
                                 "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n%s"
                                 "content-length: 0\r\n\r\n",
                                 tr)
             > 0;
    } else if (!s->resp_len) {
        ok = evbuffer_add_printf(s->in, "0\r\n%s\r\n", tr) > 0;
    } else {
        ok = 0; /* a Content-Length body cannot carry trailers: cut */
    }
    if (!ok && s->up->pc != NULL) {
        s->up->pc->up_err = 1;
    }
    s->resp_head = 1;
    s->resp_end = 1;
    if (s->hc != NULL && s->id > 0 && !s->closed) {
        nghttp2_session *ng = torii_h2up__conn_session(s->hc);
        if (ng != NULL) {
            (void)nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        }
        s->closed = 1;
    }
}

static void st_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2up_stream *s = arg;
    struct proxy_conn *pc = s->up->pc;
    int64_t now = torii_clock_mono_us();

    (void)fd;
    (void)what;
    if (s->resp_end || pc == NULL) {
        return;
    }
    if (s->credit > 0
        || (!s->req_end
            && (s->deferred || evbuffer_get_length(s->out) + evbuffer_get_length(s->body) == 0))) {
        /* We hold the backend back (slow client), or the request body waits for the client:
         * not the backend's silence. A body stalled for lack of window is. */
        s->active_us = now;
    }
    if (s->deadline_us > 0 && now >= s->deadline_us) {
        st_deadline(s);
    } else if (s->idle_ms > 0 && now >= s->active_us + (int64_t)s->idle_ms * 1000) {
        pc->up_timeout = 1;
    } else {
        st_timer_schedule(s); /* activity since: the rest of the period */
        return;
    }
    torii_proxy__run(pc);
}

/* ---- request ---- */

/* The deadline of a gRPC request: its grpc-timeout (an unreadable one is ignored, as gRPC
 * servers do, and logged). */
static void st_deadline_from(struct h2up_stream *s, const struct torii_http_req *req)
{
    const struct torii_slice *v = torii_http_req_header(req, "grpc-timeout");
    uint64_t ms = 0;

    if (v == NULL) {
        return;
    }
    if (torii_h2up__grpc_timeout_ms(*v, &ms) != TORII_OK) {
        torii_log(TORII_LOG_DEBUG, "proxy: grpc-timeout \"%.*s\" not understood, no deadline",
                  (int)(v->len < 32 ? v->len : 32), v->ptr);
        return;
    }
    s->deadline_us = torii_clock_mono_us() + (int64_t)ms * 1000;
    st_timer_schedule(s);
}

static int st_submit(struct h2up_stream *s, const struct torii_http_req *req)
{
    nghttp2_nv *nv = NULL;
    size_t n = 0;
    char *store = NULL;
    int rc = TORII_OK;
    int id;

    s->req_kind = torii_http_parser_body(s->reqp, &s->req_left);
    s->head_req = strcmp(req->method, "HEAD") == 0;
    s->grpc = torii_h2up__is_grpc(torii_http_req_header(req, "Content-Type"));
    if (s->grpc) {
        st_deadline_from(s, req);
    }
    TORII_TRY(torii_h2up__req_nv(req, torii_h2up__conn_tls(s->hc), &nv, &n, &store));
    id = torii_h2up__conn_submit(s->hc, s, nv, n, s->req_kind != TORII_HTTP_BODY_NONE);
    if (id < 0) {
        torii_log(TORII_LOG_WARN, "proxy: HTTP/2 request to %s not sent: %s", s->up->t->name,
                  nghttp2_strerror(id));
        rc = TORII_EIO;
        goto out;
    }
    s->id = id;
    s->submitted = 1;
    s->req_end = s->req_kind == TORII_HTTP_BODY_NONE;
out:
    free(nv);
    free(store);
    return rc;
}

/* Read the request head back from out; submit it once complete. */
static int st_head(struct h2up_stream *s)
{
    struct torii_http_limits lim = s->up->pw->lim;
    int rc = TORII_OK;

    if (s->reqp == NULL) {
        /* torii wrote this head: room for the fields it added, no body limit (streamed). */
        lim.max_header_bytes *= 2;
        lim.max_headers += 32;
        lim.max_body = SIZE_MAX;
        TORII_TRY(torii_http_parser_new(&lim, &s->reqp));
    }
    for (int i = 0; i < 64 && !s->submitted; i++) {
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (evbuffer_peek(s->out, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        ev = torii_http_parser_feed(s->reqp, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(s->out, used);
        TORII_ENSURE(ev != TORII_HTTP_PARSE_ERROR, TORII_EINVAL);
        if (ev == TORII_HTTP_PARSE_HEAD || ev == TORII_HTTP_PARSE_DONE) {
            TORII_TRY(st_submit(s, torii_http_parser_req(s->reqp)));
        }
    }
out:
    return rc;
}

static int st_body_cb(void *arg, const unsigned char *data, size_t len)
{
    struct h2up_stream *s = arg;

    return evbuffer_add(s->body, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* Chunked request body: de-chunk what out holds into body, up to H2UP_BODY_AHEAD. At the end,
 * the trailers the session let through go as a trailing HEADERS. */
static int st_dechunk(struct h2up_stream *s)
{
    for (int i = 0; i < 64 && !s->req_end && evbuffer_get_length(s->body) < H2UP_BODY_AHEAD; i++) {
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (evbuffer_peek(s->out, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        torii_http_parser_set_body_cb(s->reqp, st_body_cb, s);
        ev = torii_http_parser_feed(s->reqp, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(s->out, used);
        if (ev == TORII_HTTP_PARSE_ERROR) {
            return TORII_EINVAL;
        }
        if (ev == TORII_HTTP_PARSE_DONE) {
            const struct torii_http_req *req = torii_http_parser_req(s->reqp);
            s->req_end = 1;
            s->req_trl = req->n_trailers > 0;
        }
    }
    return TORII_OK;
}

static int st_trailers(struct h2up_stream *s)
{
    const struct torii_http_req *req = torii_http_parser_req(s->reqp);
    nghttp2_nv *nv = torii_xcalloc(req->n_trailers, sizeof(*nv));
    char *names = NULL;
    size_t total = 0;
    size_t at = 0;
    int rc;

    for (size_t i = 0; i < req->n_trailers; i++) {
        total += req->trailers[i].name.len;
    }
    names = torii_xcalloc(total + 1, 1);
    for (size_t i = 0; i < req->n_trailers; i++) {
        const struct torii_http_header *h = &req->trailers[i];
        nv[i].name = (uint8_t *)(uintptr_t)torii_h2up__lower(names + at, h->name);
        nv[i].namelen = h->name.len;
        nv[i].value = (uint8_t *)(uintptr_t)h->value.ptr;
        nv[i].valuelen = h->value.len;
        at += h->name.len;
    }
    rc = nghttp2_submit_trailer(torii_h2up__conn_session(s->hc), s->id, nv, req->n_trailers);
    free(nv);
    free(names);
    return rc == 0 ? TORII_OK : TORII_EIO;
}

/* nghttp2 asks for DATA: from out (Content-Length) or the de-chunked body. Nothing yet:
 * deferred until the next flush. The session is woken when out falls below PX_HIGH_WM. */
ssize_t torii_h2up__read_body(struct h2up_stream *s, uint8_t *buf, size_t length,
                              uint32_t *data_flags)
{
    size_t before = evbuffer_get_length(s->out);
    struct evbuffer *src = s->out;
    size_t n;

    if (s->req_kind == TORII_HTTP_BODY_CHUNKED) {
        if (st_dechunk(s) != TORII_OK) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        src = s->body;
        n = evbuffer_get_length(src);
    } else {
        n = before < s->req_left ? before : (size_t)s->req_left;
    }
    n = n < length ? n : length;
    if (n > 0 && evbuffer_remove(src, buf, n) != (int)n) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (s->req_kind == TORII_HTTP_BODY_LENGTH) {
        s->req_left -= n;
        s->req_end = s->req_left == 0;
    }
    if (n > 0) {
        s->active_us = torii_clock_mono_us(); /* the backend's window took body bytes */
    }
    if (before >= PX_HIGH_WM && evbuffer_get_length(s->out) < PX_HIGH_WM) {
        s->woken = 1;
    }
    if (s->req_end && evbuffer_get_length(s->body) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->req_trl) {
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end it */
            if (st_trailers(s) != TORII_OK) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

int torii_h2up__flush(struct h2up_stream *s)
{
    nghttp2_session *ng;

    if (s->hc == NULL || (ng = torii_h2up__conn_session(s->hc)) == NULL) {
        return TORII_OK; /* the connection failed: the session was told */
    }
    if (!s->submitted && st_head(s) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "proxy: request to %s cannot be sent as HTTP/2", s->up->t->name);
        return TORII_EIO;
    }
    if (s->deferred && !s->closed && evbuffer_get_length(s->out) > 0) {
        s->deferred = 0;
        (void)nghttp2_session_resume_data(ng, s->id);
    }
    if (s->credit > 0 && evbuffer_get_length(s->in) < PX_LOW_WM) {
        (void)(s->closed ? nghttp2_session_consume_connection(ng, s->credit)
                         : nghttp2_session_consume(ng, s->id, s->credit));
        s->credit = 0;
    }
    return torii_h2up__conn_send(s->hc);
}
