/* pump.c - the bytes of an exchange. Request side: a Content-Length body is moved between
 * evbuffers (no copy), a chunked one goes through the parser and is re-framed (trailers
 * filtered); sinks are the upstream (PH_BODY), the local buffer (PH_LOCAL) or nowhere
 * (PH_DRAIN). Response side: the head is rewritten, a Content-Length body moved, a chunked or
 * close-delimited one re-framed as chunked for HTTP/1.1 clients or sent close-delimited to
 * HTTP/1.0 clients. Each pump stops at the other side's PX_HIGH_WM. Worker thread only. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/stream.h"

/* Trailer fields that may pass (RFC 9110 section 6.5.1: never framing, routing or
 * connection fields). */
static int px_trailer_ok(struct torii_slice n)
{
    static const char *const bad[] = {"Content-Length",   "Transfer-Encoding", "Host",
                                      "Connection",       "Keep-Alive",        "TE",
                                      "Trailer",          "Upgrade",           "Content-Type",
                                      "Content-Encoding", "Content-Range",     "Authorization",
                                      "Set-Cookie",       "Cache-Control",     NULL};

    for (size_t i = 0; bad[i] != NULL; i++) {
        if (torii_slice_eq_ci(n, bad[i])) {
            return 0;
        }
    }
    return 1;
}

int torii_proxy__last_chunk(struct evbuffer *out, const struct torii_http_header *t, size_t n)
{
    int ok = evbuffer_add(out, "0\r\n", 3) == 0;

    for (size_t i = 0; ok && i < n; i++) {
        if (px_trailer_ok(t[i].name)) {
            ok = evbuffer_add(out, t[i].name.ptr, t[i].name.len) == 0
                 && evbuffer_add(out, ": ", 2) == 0
                 && evbuffer_add(out, t[i].value.ptr, t[i].value.len) == 0
                 && evbuffer_add(out, "\r\n", 2) == 0;
        }
    }
    return ok && evbuffer_add(out, "\r\n", 2) == 0 ? TORII_OK : TORII_ENOMEM;
}

static int px_chunk(struct evbuffer *out, const void *data, size_t len)
{
    char sz[24];
    int n = snprintf(sz, sizeof(sz), "%zx\r\n", len);

    if (n <= 0 || evbuffer_add(out, sz, (size_t)n) != 0 || evbuffer_add(out, data, len) != 0
        || evbuffer_add(out, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* Request parser body callback (chunked request bodies): re-frame into the upstream, or
 * buffer for a local answer (PH_LOCAL), or drop (PH_DRAIN). */
int torii_proxy__req_body_cb(void *arg, const unsigned char *data, size_t len)
{
    struct proxy_conn *pc = arg;
    struct proxy_exch *x = &pc->x;

    if (len == 0) {
        return TORII_OK;
    }
    if (x->lbody != NULL) {
        if (len > TORII_WELLKNOWN_MAX_BODY - evbuffer_get_length(x->lbody)) {
            x->lbody_over = 1; /* answered 413 by torii_proxy__pump_body */
            return TORII_OK;
        }
        x->bytes_in += len;
        return evbuffer_add(x->lbody, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
    }
    if (pc->up == NULL) {
        return TORII_OK; /* being dropped (PH_DRAIN) */
    }
    x->bytes_in += len;
    return px_chunk(torii_proxy__up_out(pc->up), data, len);
}

/* Response parser body callback (chunked responses): re-frame, or raw for HTTP/1.0. */
int torii_proxy__resp_body_cb(void *arg, const unsigned char *data, size_t len)
{
    struct proxy_conn *pc = arg;
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    int rc;

    if (len == 0) {
        return TORII_OK;
    }
    if (pc->x.out == TORII_PROXY_OUT_CHUNKED) {
        rc = px_chunk(out, data, len);
    } else {
        rc = evbuffer_add(out, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
    }
    pc->x.bytes_out += evbuffer_get_length(out) - before;
    return rc;
}

static void pc_req_done(struct proxy_conn *pc)
{
    pc->x.req_done = 1;
    pc->phase = PH_WAIT;
    torii_proxy__timer_arm(pc, PT_NONE, 0);
    torii_proxy__up_timeouts(pc);
}

/* The request body -> its sink: the upstream (PH_BODY; a chunked body re-framed by
 * torii_proxy__req_body_cb) or the local buffer (PH_LOCAL), until the body ends or the upstream's
 * output is full. Then the request is done, or answered locally. */
/* Outcome of one step of the request body pump. */
enum pump_step {
    PB_STOP = -2, /* answered, rejected or dead: the pump returns */
    PB_WAIT = -1, /* nothing to feed now */
    PB_MORE = 0,  /* progress, the body goes on */
    PB_DONE = 1,  /* the body ended */
};

/* Content-Length: up to what is left of the body, moved without copy. */
static enum pump_step pump_body_length(struct proxy_conn *pc, struct evbuffer *in,
                                       struct evbuffer *sink, size_t avail)
{
    struct proxy_exch *x = &pc->x;
    size_t n = avail < x->req_left ? avail : (size_t)x->req_left;

    if (evbuffer_remove_buffer(in, sink, n) != (int)n) {
        pc->dead = 1;
        return PB_STOP;
    }
    x->req_left -= n;
    x->bytes_in += n;
    if (x->req_left > 0) {
        return PB_MORE;
    }
    torii_http_parser_body_taken(pc->rp, x->req_len);
    return PB_DONE;
}

/* Chunked: through the parser (torii_proxy__req_body_cb re-frames into the sink); the last
 * chunk and the trailers that may pass follow when the body ends (PH_BODY). */
static enum pump_step pump_body_chunked(struct proxy_conn *pc, struct evbuffer *in,
                                        struct evbuffer *sink, enum pc_phase phase)
{
    struct evbuffer_iovec v;
    size_t used = 0;
    enum torii_http_parse_ev ev;

    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        return PB_WAIT;
    }
    ev = torii_http_parser_feed(pc->rp, v.iov_base, v.iov_len, &used);
    (void)evbuffer_drain(in, used);
    if (pc->x.lbody_over) {
        torii_proxy__local_error(pc, 413, "request body too large", 1);
        return PB_STOP;
    }
    if (ev == TORII_HTTP_PARSE_ERROR) {
        torii_proxy__reject(pc);
        return PB_STOP;
    }
    if (ev != TORII_HTTP_PARSE_DONE) {
        return PB_MORE;
    }
    if (phase == PH_BODY) {
        const struct torii_http_req *req = torii_http_parser_req(pc->rp);
        if (torii_proxy__last_chunk(sink, req->trailers, req->n_trailers) != TORII_OK) {
            pc->dead = 1;
            return PB_STOP;
        }
    }
    return PB_DONE;
}

void torii_proxy__pump_body(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    enum pc_phase phase = pc->phase;
    struct evbuffer *sink = pc->x.lbody;
    size_t avail;
    int progress = 0;

    if (phase == PH_BODY) {
        if (pc->up == NULL) {
            return;
        }
        sink = torii_proxy__up_out(pc->up);
    }
    while (pc->phase == phase && !pc->dead
           && (phase == PH_LOCAL || evbuffer_get_length(sink) < PX_HIGH_WM)
           && (avail = evbuffer_get_length(in)) > 0) {
        enum pump_step r = pc->x.req_body == TORII_HTTP_BODY_LENGTH
                               ? pump_body_length(pc, in, sink, avail)
                               : pump_body_chunked(pc, in, sink, phase);
        if (r == PB_STOP) {
            return;
        }
        if (r == PB_WAIT) {
            break;
        }
        progress = 1;
        if (r == PB_DONE && phase == PH_BODY) {
            pc_req_done(pc);
        } else if (r == PB_DONE) {
            torii_proxy__local_body_done(pc);
        }
    }
    if (progress && pc->phase == phase) {
        torii_proxy__timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
    }
}

/* Dropping the body cannot go on (over the limits, bad framing, the client left): close once
 * the response is out. */
void torii_proxy__drain_stop(struct proxy_conn *pc)
{
    pc->phase = PH_CLOSING;
    pc->again = 1;
    torii_stream_shutdown(pc->st);
    torii_proxy__timer_arm(pc, PT_CLOSE, pc->pw->cfg->idle_timeout_ms);
}

static void pc_drain_done(struct proxy_conn *pc)
{
    torii_http_parser_next(pc->rp);
    pc->phase = PH_HEAD;
    pc->again = 1; /* pipelined input may wait */
    torii_proxy__timer_arm(pc, PT_NONE, 0);
}

/* The rest of an answered request's body -> nowhere (PH_DRAIN), then the next request. */
void torii_proxy__pump_drain(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    size_t avail;

    while (pc->phase == PH_DRAIN && !pc->dead && (avail = evbuffer_get_length(in)) > 0) {
        struct evbuffer_iovec v;
        size_t used = 0;
        size_t n;
        enum torii_http_parse_ev ev;

        if (pc->drain_kind == TORII_HTTP_BODY_LENGTH) {
            n = avail < pc->drain_left ? avail : (size_t)pc->drain_left;
            (void)evbuffer_drain(in, n);
            pc->drain_left -= n;
            if (pc->drain_left == 0) {
                torii_http_parser_body_taken(pc->rp, 0);
                pc_drain_done(pc);
            }
            continue;
        }
        /* Chunked: the parser finds the end; at most drain_budget raw bytes are fed. */
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        n = v.iov_len < pc->drain_budget ? v.iov_len : (size_t)pc->drain_budget;
        ev = torii_http_parser_feed(pc->rp, v.iov_base, n, &used);
        (void)evbuffer_drain(in, used);
        pc->drain_budget -= used;
        if (ev == TORII_HTTP_PARSE_DONE) {
            pc_drain_done(pc);
        } else if (ev != TORII_HTTP_PARSE_MORE || pc->drain_budget == 0) {
            torii_proxy__drain_stop(pc);
        }
    }
}

void torii_proxy__resp_complete(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    const struct torii_http_resp *resp = torii_http_parser_resp(pc->up->parser);
    int reusable = resp != NULL && resp->keep_alive && x->resp_body != TORII_HTTP_BODY_EOF
                   && pc->phase == PH_WAIT && !pc->up_eof && !pc->up_err;

    if (pc->pw->cfg->access_log) {
        x->tu1_us = torii_proxy__now_us(pc->pw); /* read by the access log only (it falls back to
                                                  * the end of the exchange) */
    }
    if (pc->h2s != NULL) {
        torii_proxy__h2s_resp_end(pc);
    }
    if (pc->phase == PH_BODY && !torii_proxy__can_drain(pc)) {
        /* Answered before the whole request body arrived, and the rest cannot be skipped
         * (torii_proxy__can_drain): this connection ends after the response. Otherwise the
         * upstream, which saw part of the body only, is closed and the rest is dropped (PH_DRAIN).
         */
        x->keep = 0;
    }
    torii_proxy__exchange_end(pc, reusable);
}

/* The response head towards an HTTP/2 stream's child: handed to the stream as parsed (no
 * HTTP/1.1 text to parse back), the body then raw (CLOSE: neither re-framed nor ended by a
 * last chunk; the stream frames it). */
static int pc_resp_head_h2(struct proxy_conn *pc, const struct torii_http_resp *resp, uint64_t len,
                           int with_body)
{
    struct proxy_exch *x = &pc->x;
    size_t bytes = 0;

    if (torii_proxy__h2s_resp_head(pc, resp, x->out, len, with_body, &bytes) != TORII_OK) {
        return TORII_ENOMEM;
    }
    if (x->out == TORII_PROXY_OUT_CHUNKED) {
        x->out = TORII_PROXY_OUT_CLOSE;
    }
    x->bytes_out += bytes;
    return TORII_OK;
}

/* with_body: a body follows the head (the parser's HEAD event), else the response is
 * complete. */
static int pc_resp_head(struct proxy_conn *pc, int with_body)
{
    struct proxy_exch *x = &pc->x;
    struct proxy_upstream *up = pc->up;
    const struct torii_http_resp *resp = torii_http_parser_resp(up->parser);
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    uint64_t len = 0;
    enum torii_http_body_kind kind = torii_http_parser_body(up->parser, &len);

    switch (kind) {
    case TORII_HTTP_BODY_LENGTH:
        x->out = TORII_PROXY_OUT_LENGTH;
        break;
    case TORII_HTTP_BODY_CHUNKED:
    case TORII_HTTP_BODY_EOF:
        x->out = x->minor == 1 ? TORII_PROXY_OUT_CHUNKED : TORII_PROXY_OUT_CLOSE;
        break;
    case TORII_HTTP_BODY_NONE:
    default:
        x->out = TORII_PROXY_OUT_NONE;
        break;
    }
    if (x->out == TORII_PROXY_OUT_CLOSE || (pc->phase == PH_BODY && !torii_proxy__can_drain(pc))
        || pc->peer_eof || pc->pw->draining) {
        x->keep = 0;
    }
    if (pc->h2s != NULL) {
        if (pc_resp_head_h2(pc, resp, len, with_body) != TORII_OK) {
            return TORII_ENOMEM;
        }
    } else if (torii_proxy_resp_head_write(out, resp, x->out, len, !x->keep, x->minor)
               != TORII_OK) {
        return TORII_ENOMEM;
    }
    x->status = resp->status;
    x->resp_started = 1;
    x->resp_body = kind;
    x->resp_left = len;
    x->bytes_out += evbuffer_get_length(out) - before;
    x->rs = RS_BODY;
    return TORII_OK;
}

/* A close-delimited response body: what arrived (avail bytes of in), as one chunk for an
 * HTTP/1.1 client or raw for HTTP/1.0. */
static int pump_resp_eof_body(struct proxy_conn *pc, struct evbuffer *in, struct evbuffer *out,
                              size_t avail)
{
    struct proxy_exch *x = &pc->x;

    if (x->out == TORII_PROXY_OUT_CHUNKED) {
        char sz[24];
        int k = snprintf(sz, sizeof(sz), "%zx\r\n", avail);
        if (k <= 0 || evbuffer_add(out, sz, (size_t)k) != 0) {
            return TORII_ENOMEM;
        }
        x->bytes_out += (size_t)k + 2;
    }
    if (evbuffer_remove_buffer(in, out, avail) != (int)avail) {
        return TORII_ENOMEM;
    }
    if (x->out == TORII_PROXY_OUT_CHUNKED && evbuffer_add(out, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    x->bytes_out += avail;
    return TORII_OK;
}

/* The response parser reached the end of a message: a 1xx is relayed (interim.c), else the
 * response is complete (its head written first when it had no body, the last chunk when
 * re-framed). */
static int pump_resp_done(struct proxy_conn *pc, struct evbuffer *out)
{
    struct proxy_exch *x = &pc->x;
    const struct torii_http_resp *resp = torii_http_parser_resp(pc->up->parser);

    if (resp->interim) {
        int rc = torii_proxy__interim(pc, resp);
        if (rc == TORII_EPROTO) {
            torii_proxy__up_fail(pc, 502, "too many interim (1xx) responses from upstream");
            return TORII_OK;
        }
        if (rc != TORII_OK) {
            return rc;
        }
        torii_http_parser_next(pc->up->parser);
        torii_http_parser_set_no_body(pc->up->parser, x->head_req);
        return TORII_OK;
    }
    if (resp->status == 101) {
        return torii_proxy__tunnel_begin(pc); /* switched protocols: no message end */
    }
    if (x->rs == RS_HEAD && pc_resp_head(pc, 0) != TORII_OK) {
        return TORII_ENOMEM;
    }
    if (x->out == TORII_PROXY_OUT_CHUNKED) {
        size_t before = evbuffer_get_length(out);
        if (torii_proxy__last_chunk(out, resp->trailers, resp->n_trailers) != TORII_OK) {
            return TORII_ENOMEM;
        }
        x->bytes_out += evbuffer_get_length(out) - before;
    } else if (pc->h2s != NULL && resp->n_trailers > 0
               && torii_proxy__h2s_resp_trailers(pc, resp) != TORII_OK) {
        return TORII_ENOMEM;
    }
    torii_proxy__resp_complete(pc);
    return TORII_OK;
}

/* Upstream response -> client, until done or the client's output is full. */
/* A Content-Length response body: up to what is left, moved without copy. */
static int pump_resp_length(struct proxy_conn *pc, struct evbuffer *in, struct evbuffer *out,
                            size_t avail)
{
    struct proxy_exch *x = &pc->x;
    size_t n = avail < x->resp_left ? avail : (size_t)x->resp_left;

    if (evbuffer_remove_buffer(in, out, n) != (int)n) {
        return TORII_ENOMEM;
    }
    x->resp_left -= n;
    x->bytes_out += n;
    if (x->resp_left == 0) {
        torii_http_parser_body_taken(pc->up->parser, 0);
        torii_proxy__resp_complete(pc);
    }
    return TORII_OK;
}

/* The response head, or a chunked body: through the parser. */
static enum pump_step pump_resp_parsed(struct proxy_conn *pc, struct evbuffer *in,
                                       struct evbuffer *out)
{
    struct proxy_exch *x = &pc->x;
    struct evbuffer_iovec v;
    size_t used = 0;
    enum torii_http_parse_ev ev;
    int rc = TORII_OK;

    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        return PB_WAIT;
    }
    ev = torii_http_parser_feed(pc->up->parser, v.iov_base, v.iov_len, &used);
    (void)evbuffer_drain(in, used);
    if (ev == TORII_HTTP_PARSE_HEAD) {
        rc = pc_resp_head(pc, 1);
    } else if (ev == TORII_HTTP_PARSE_DONE) {
        rc = pump_resp_done(pc, out);
    } else if (ev != TORII_HTTP_PARSE_MORE) {
        if (x->tu0_us != 0 && x->target != NULL) {
            torii_log(TORII_LOG_WARN, "proxy: invalid response from upstream (upstream=%s)",
                      x->target->name);
        }
        torii_proxy__up_fail(pc, 502, "invalid response from upstream");
        return PB_STOP;
    }
    if (rc != TORII_OK) {
        pc->dead = 1;
        return PB_STOP;
    }
    return PB_MORE;
}

void torii_proxy__pump_resp(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct evbuffer *out = torii_stream_output(pc->st);

    while (pc->up != NULL && x->rs != RS_NONE && !pc->dead
           && evbuffer_get_length(out) < PX_HIGH_WM) {
        struct evbuffer *in = torii_proxy__up_in(pc->up);
        size_t avail = evbuffer_get_length(in);
        int rc;

        if (avail == 0) {
            break;
        }
        if (x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_LENGTH) {
            rc = pump_resp_length(pc, in, out, avail);
        } else if (x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_EOF) {
            rc = pump_resp_eof_body(pc, in, out, avail);
        } else {
            enum pump_step r = pump_resp_parsed(pc, in, out);
            if (r == PB_STOP || r == PB_WAIT) {
                return;
            }
            continue;
        }
        if (rc != TORII_OK) {
            pc->dead = 1;
            return;
        }
    }
}
