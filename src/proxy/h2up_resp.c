/* h2up_resp.c - the response side of a stream to an HTTP/2 backend: HEADERS, DATA and the
 * stream's end written into its in buffer as an HTTP/1.1 response for the session's response
 * parser (1xx dropped; Content-Length kept when the backend gave one, 0 when its HEADERS ended
 * the stream, else chunked with the trailers in the last chunk), DATA credited back to the backend
 * as in drains, and what the connection tells the stream (up, closed, failed). Worker thread only.
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "h2up_int.h"
#include "torii/clock.h"
#include "torii/log.h"

static int rs_slice_is(const uint8_t *p, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(p, lit, len) == 0;
}

int torii_h2up__on_header(struct h2up_stream *s, const nghttp2_frame *f, const uint8_t *name,
                          size_t namelen, const uint8_t *value, size_t valuelen)
{
    struct torii_slice n = {(const char *)name, namelen};
    struct torii_slice v = {(const char *)value, valuelen};

    (void)f;
    s->active_us = torii_clock_mono_us();
    if (s->resp_end) {
        return 0;
    }
    if (!s->resp_head && rs_slice_is(name, namelen, ":status")) {
        /* nghttp2 checked it: three digits. */
        s->status =
            valuelen == 3 ? (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0') : 0;
        return 0;
    }
    if (!s->resp_head && rs_slice_is(name, namelen, "content-length")) {
        s->resp_len = 1;
    }
    return torii_h2up__field_line(s->hdrs, n, v) == TORII_OK ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* The final response head: status line, fields, our framing. end: the HEADERS frame ended
 * the stream (no body, no trailers: gRPC's Trailers-Only form), framed as Content-Length 0 so
 * that an HTTP/2 client gets it as one HEADERS frame with END_STREAM again. */
static int rs_head(struct h2up_stream *s, int end)
{
    int no_body = s->head_req || s->status == 204 || s->status == 304;
    int zero = end && !no_body && !s->resp_len;

    if (no_body || zero) {
        s->resp_len = 1; /* nothing follows the head, no last chunk either */
    }
    if (torii_h2up__status_line(s->in, s->status) != TORII_OK
        || evbuffer_add_buffer(s->in, s->hdrs) != 0
        || (zero && evbuffer_add(s->in, "content-length: 0\r\n", 19) != 0)
        || (!s->resp_len && evbuffer_add(s->in, "transfer-encoding: chunked\r\n", 28) != 0)
        || evbuffer_add(s->in, "\r\n", 2) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->resp_head = 1;
    return 0;
}

/* END_STREAM from the backend: the last chunk and the trailers of a chunked response. */
static int rs_end(struct h2up_stream *s)
{
    s->resp_end = 1;
    if (s->resp_len) {
        if (evbuffer_get_length(s->trl) > 0) {
            torii_log(TORII_LOG_DEBUG,
                      "proxy: trailers of a Content-Length response from %s "
                      "dropped (HTTP/1.1 cannot carry them)",
                      s->up->t->name);
        }
        return 0;
    }
    if (evbuffer_add(s->in, "0\r\n", 3) != 0 || evbuffer_add_buffer(s->in, s->trl) != 0
        || evbuffer_add(s->in, "\r\n", 2) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

int torii_h2up__on_frame(struct h2up_stream *s, const nghttp2_frame *f)
{
    int rc = 0;

    s->active_us = torii_clock_mono_us();
    if (s->resp_end || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)) {
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && !s->resp_head && s->status < 200) {
        /* 1xx: dropped (the session answered 100-continue itself). */
        (void)evbuffer_drain(s->hdrs, evbuffer_get_length(s->hdrs));
        s->status = 0;
        s->resp_len = 0;
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && !s->resp_head) {
        rc = rs_head(s, (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
    } else if (f->hd.type == NGHTTP2_HEADERS) {
        rc = evbuffer_add_buffer(s->trl, s->hdrs) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (rc == 0 && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        rc = rs_end(s);
    }
    s->woken = 1;
    return rc;
}

int torii_h2up__on_data(struct h2up_stream *s, const uint8_t *data, size_t len)
{
    nghttp2_session *ng = torii_h2up__conn_session(s->hc);
    int ok = 1;

    s->active_us = torii_clock_mono_us();
    if (s->resp_end || !s->resp_head || s->head_req) {
        return nghttp2_session_consume(ng, s->id, len) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (!s->resp_len) {
        ok = evbuffer_add_printf(s->in, "%zx\r\n", len) > 0;
    }
    ok = ok && evbuffer_add(s->in, data, len) == 0;
    if (!s->resp_len) {
        ok = ok && evbuffer_add(s->in, "\r\n", 2) == 0;
    }
    if (!ok) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    /* Credit now while the client keeps up; else when it has taken in below PX_LOW_WM. */
    if (s->credit == 0 && evbuffer_get_length(s->in) <= PX_HIGH_WM) {
        (void)nghttp2_session_consume(ng, s->id, len);
    } else {
        s->credit += len;
    }
    s->woken = 1;
    return 0;
}

void torii_h2up__on_close(struct h2up_stream *s, uint32_t code)
{
    struct proxy_conn *pc = s->up->pc;

    s->closed = 1;
    s->woken = 1;
    if (s->resp_end || pc == NULL) {
        return;
    }
    torii_log(TORII_LOG_INFO, "proxy: backend %s ended stream %d (%s)", s->up->t->name, s->id,
              nghttp2_http2_strerror(code));
    if (!s->resp_head && code == NGHTTP2_REFUSED_STREAM) {
        s->up->reused = 1; /* not processed (RFC 9113 section 8.7): upstream.c retries once */
    }
    if (s->resp_head && !s->resp_len && s->grpc
        && evbuffer_add_printf(s->in, "0\r\ngrpc-status: 14\r\ngrpc-message: backend reset the "
                                      "stream\r\n\r\n")
               > 0) {
        s->resp_end = 1; /* a gRPC client reads UNAVAILABLE, not a cut body */
        return;
    }
    pc->up_err = 1;
}

void torii_h2up__stream_conn_event(struct h2up_stream *s, int ev)
{
    struct proxy_conn *pc = s->up->pc;

    if (ev == H2UP_EV_UP) {
        s->up->connected = 1;
        s->woken = 1;
        if (pc != NULL) {
            torii_proxy__up_timeouts(pc);
        }
        return;
    }
    s->hc = NULL; /* the connection goes: its streams are cut off */
    if (s->resp_end || pc == NULL) {
        return; /* the response is whole in in already */
    }
    if (ev == H2UP_EV_EOF) {
        pc->up_eof = 1;
    } else if (ev == H2UP_EV_TIMEOUT) {
        pc->up_timeout = 1;
    } else {
        pc->up_err = 1;
    }
    torii_proxy__run(pc);
}
