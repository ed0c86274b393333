/* upstream.c - the upstream attached to a client connection while one request is served:
 * attach (pooled or new) and write the rewritten request head, its timeouts per phase, and
 * what happens when it fails: the end of a close-delimited response, one retry of a request
 * sent on a pooled connection the backend had closed, or 502/504. Worker thread only. */
#include <string.h>

#include <event2/buffer.h>

#include "h2up_int.h"
#include "session_int.h"
#include "torii/clock.h"
#include "torii/jwtroute.h"
#include "torii/log.h"
#include "torii/stream.h"

/* Timeouts of the attached upstream for the current phase. */
void torii_proxy__up_timeouts(struct proxy_conn *pc)
{
    struct proxy_upstream *up = pc->up;

    if (up == NULL) {
        return;
    }
    if (up->h2 != NULL) {
        /* While the client uploads, read_ms bounds a stall of the body's DATA (the backend
         * grants no window), as the write timeout does below (h2up_stream.c). */
        torii_h2up__timeouts(up->h2, up->connected ? up->be->read_ms : up->be->connect_ms);
        return;
    }
    if (!up->connected) {
        torii_stream_timeouts(up->st, up->be->connect_ms, up->be->connect_ms);
        return;
    }
    /* While the client uploads, the backend is not expected to answer: only write stalls. */
    torii_stream_timeouts(up->st, pc->phase == PH_BODY ? 0 : up->be->read_ms, up->be->read_ms);
}

struct evbuffer *torii_proxy__up_out(struct proxy_upstream *up)
{
    return up->h2 != NULL ? torii_h2up__out(up->h2) : torii_stream_output(up->st);
}

struct evbuffer *torii_proxy__up_in(struct proxy_upstream *up)
{
    return up->h2 != NULL ? torii_h2up__in(up->h2) : torii_stream_input(up->st);
}

size_t torii_proxy__up_unsent(struct proxy_upstream *up)
{
    return up->h2 != NULL ? evbuffer_get_length(torii_h2up__out(up->h2))
                          : torii_stream_unsent(up->st);
}

/* An HTTP/2 upstream keeps reading (its connection is shared); its flow control holds the
 * backend back instead (h2up.c). */
void torii_proxy__up_read(struct proxy_upstream *up, int on)
{
    if (up->h2 == NULL) {
        torii_stream_read(up->st, on);
    }
}

int torii_proxy__up_flush(struct proxy_upstream *up)
{
    return up->h2 != NULL ? torii_h2up__flush(up->h2) : torii_stream_flush(up->st);
}

static void up_cb(struct torii_stream *st, int what, void *arg);

/* The upstream serves this connection from now on: its events step the connection. */
static void up_attach(struct proxy_conn *pc, struct proxy_upstream *up)
{
    up->pc = pc;
    torii_http_parser_set_body_cb(up->parser, torii_proxy__resp_body_cb, pc);
    if (up->h2 == NULL) {
        torii_stream_setcb(up->st, up_cb, up);
    }
    torii_proxy__up_read(up, 1);
    pc->up = up;
    pc->up_eof = 0;
    pc->up_err = 0;
    pc->up_timeout = 0;
    torii_proxy__up_timeouts(pc);
}

/* Detach the upstream: back to the pool when it can carry another exchange. */
void torii_proxy__up_release(struct proxy_conn *pc, int reusable)
{
    struct proxy_upstream *up = pc->up;

    if (up == NULL) {
        return;
    }
    pc->up = NULL;
    if (reusable) {
        torii_http_parser_next(up->parser);
        torii_proxy__pool_put(up);
    } else {
        torii_proxy__upstream_free(up);
    }
}

int torii_proxy__forward(struct proxy_conn *pc, const struct torii_http_req *req,
                         struct torii_slice host, int allow_pool)
{
    struct proxy_exch *x = &pc->x;
    const struct proxy_conn *tc = torii_proxy__tls_conn(pc); /* its client certificate */
    struct torii_proxy_fwd fwd;
    struct proxy_upstream *up = NULL;
    int rc;

    rc = torii_proxy__upstream_get(pc->pw, x->route, x->target, allow_pool, &up);
    if (rc != TORII_OK) {
        torii_proxy__target_mark_down(pc->pw, x->target);
        return rc;
    }
    up_attach(pc, up);
    x->grpc = torii_h2up__is_grpc(torii_http_req_header(req, "Content-Type"));
    memset(&fwd, 0, sizeof(fwd));
    fwd.client_ip = pc->ip;
    fwd.https = pc->tls;
    fwd.host = host;
    if (tc->client_cert != NULL && tc->verdict == TORII_TLS_CLIENT_VERIFIED) {
        fwd.client_cert.ptr = tc->client_cert;
        fwd.client_cert.len = strlen(tc->client_cert);
        if (tc->client_cert_chain != NULL) {
            fwd.client_cert_chain.ptr = tc->client_cert_chain;
            fwd.client_cert_chain.len = strlen(tc->client_cert_chain);
        }
    }
    fwd.body = x->req_body;
    fwd.upgrade = x->upgrade;
    fwd.body_length = x->req_len;
    if (x->route->jwt != NULL) {
        fwd.drop = torii_route_jwt_drop(x->route->jwt, &fwd.n_drop);
        fwd.extra = (struct torii_slice){pc->jwt_hdrs, pc->jwt_hdrs_len};
    }
    if (torii_proxy_req_head_write(torii_proxy__up_out(pc->up), req, &fwd) != TORII_OK) {
        return TORII_ENOMEM;
    }
    torii_http_parser_set_no_body(pc->up->parser, x->head_req);
    torii_http_parser_allow_switch(pc->up->parser, x->upgrade.len > 0);
    x->rs = RS_HEAD;
    if (x->tu0_us == 0) {
        x->tu0_us = torii_proxy__now_us(pc->pw);
    }
    return TORII_OK;
}

void torii_proxy__up_fail(struct proxy_conn *pc, int status, const char *msg)
{
    if (pc->x.resp_started) {
        pc->dead = 1; /* mid-response: the client sees a truncated message */
        return;
    }
    torii_proxy__up_release(pc, 0);
    if (pc->x.grpc) {
        /* A gRPC client reads the outcome from grpc-status, not from an error page. */
        struct torii_http_header h[2] = {
            {{"grpc-status", 11}, {status == 504 ? "4" : "14", status == 504 ? 1 : 2}},
            {{"grpc-message", 12}, {msg, strlen(msg)}},
        };
        torii_proxy__local(pc, 200, "application/grpc", NULL, 0, h, 2, 0);
        return;
    }
    torii_proxy__local_error(pc, status, msg, 0);
}

/* A pooled connection closed by the backend while idle (a race every keep-alive client
 * has): send the request again on a new connection, once. */
static void up_retry(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    const struct torii_http_req *req = torii_http_parser_req(pc->rp);
    const struct torii_slice *hv = torii_http_req_header(req, "Host");
    struct torii_slice host = x->host;

    torii_proxy__up_release(pc, 0);
    x->retried = 1;
    if (hv != NULL) {
        host = *hv;
    }
    if (torii_proxy__forward(pc, req, host, 0) != TORII_OK) {
        torii_proxy__up_release(pc, 0);
        torii_proxy__local_error(pc, 502, "upstream connection failed", 0);
    }
}

/* EOF, error or timeout on the attached upstream. */
void torii_proxy__up_trouble(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct proxy_upstream *up = pc->up;
    int started;

    if (pc->up_eof && x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_EOF) {
        struct evbuffer *out = torii_stream_output(pc->st);
        if (evbuffer_get_length(torii_proxy__up_in(up)) > 0) {
            return; /* still data to move first */
        }
        if (x->out == TORII_PROXY_OUT_CHUNKED) {
            if (torii_proxy__last_chunk(out, NULL, 0) != TORII_OK) {
                pc->dead = 1;
                return;
            }
            x->bytes_out += 5;
        }
        torii_http_parser_body_taken(up->parser, 0);
        torii_proxy__resp_complete(pc);
        return;
    }
    if (pc->up_eof && x->rs != RS_NONE && evbuffer_get_length(torii_proxy__up_in(up)) > 0) {
        return; /* move what arrived before the EOF first (the client may be slow) */
    }
    started = torii_http_parser_started(up->parser) || x->resp_started;
    if (!started && up->reused && !x->retried && x->req_body == TORII_HTTP_BODY_NONE
        && !pc->up_timeout) {
        up_retry(pc);
        return;
    }
    if (!up->connected) {
        torii_proxy__target_mark_down(pc->pw, up->t);
        torii_log(TORII_LOG_WARN, "proxy: upstream %s (upstream=%s)",
                  pc->up_timeout ? "connect timed out" : "connect failed", up->t->name);
        torii_proxy__up_fail(pc, pc->up_timeout ? 504 : 502,
                             pc->up_timeout ? "upstream connect timed out"
                                            : "upstream connection failed");
        return;
    }
    if (pc->up_timeout) {
        if (!started) {
            torii_proxy__target_mark_down(pc->pw, up->t);
        }
        torii_log(TORII_LOG_WARN, "proxy: upstream timed out (upstream=%s)", up->t->name);
        torii_proxy__up_fail(pc, 504, "upstream timed out");
        return;
    }
    torii_proxy__up_fail(pc, 502, pc->up_eof ? "upstream closed the connection" : "upstream error");
}

static void up_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_upstream *up = arg;
    struct proxy_conn *pc = up->pc;

    (void)st;
    if (pc->phase == PH_TUNNEL) {
        torii_proxy__tunnel_h1_event(pc, 1, what); /* may free pc */
        return;
    }
    if (what & TORII_STREAM_CONNECTED) {
        up->connected = 1;
        torii_proxy__up_timeouts(pc);
    }
    if (what & TORII_STREAM_EOF) {
        pc->up_eof = 1;
    }
    if (what & TORII_STREAM_TIMEOUT) {
        pc->up_timeout = 1;
    }
    if (what & TORII_STREAM_ERROR) {
        pc->up_err = 1;
    }
    torii_proxy__run(pc);
}
