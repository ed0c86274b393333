/* h2stream.c - one HTTP/2 stream as a request of the HTTP/1.1 streaming engine (h2_int.h).
 * Request: the fields are checked as they come (h2msg.c; nghttp2 checked them first), then
 * written as one HTTP/1.1 request head into the input of a pipe stream read by a child
 * struct proxy_conn (torii_proxy__conn_pipe): the engine's own parser, admission (Host,
 * route, certificate coverage: 421), header rules, pools and pumps apply unchanged. DATA goes
 * to the same input, raw under a content-length, else re-framed chunked; the flow-control
 * window is given back only as the engine takes the bytes (bounded buffering per stream).
 * Response: a backend's final response is handed over by the child as parsed
 * (torii_proxy__h2s_resp_head, _resp_trailers, _resp_end: no HTTP/1.1 text between), its body
 * written raw into the pipe; what the engine writes itself (local answers, 1xx, 101) is parsed
 * back with a response parser. The
 * head becomes a HEADERS frame (connection-specific fields dropped, names lower-cased), the
 * body is held in st->body (at most PX_HIGH_WM; the rest waits in the pipe, which stops the
 * engine reading the upstream) and leaves as DATA frames, the trailer section of a chunked
 * body as a final HEADERS frame with END_STREAM (nghttp2_submit_trailer from the DATA
 * provider, whose last DATA then goes without END_STREAM). Worker thread only. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "h2_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/stream.h"
#include "tunnel.h"

#define H2S_IN_LOW   ((size_t)64 * 1024) /* window given back while the input is below */
#define H2S_HOLD     ((size_t)64 * 1024) /* body held before the request goes on */
#define H2S_MAX_NAME 256                 /* longer response field names are not relayed */

/* nghttp2_nv wants non-const pointers; nghttp2_submit_response copies what they point to. */
static uint8_t *h2s_u8(const void *p)
{
    return (uint8_t *)(uintptr_t)p;
}

struct h2_stream *torii_proxy__h2s_new(struct proxy_h2 *h, int32_t id)
{
    struct h2_stream *st = torii_proxy__h2s_shell(h->pc->pw);

    if (st == NULL) {
        return NULL;
    }
    st->h = h;
    st->id = id;
    st->content_length = -1;
    if (nghttp2_session_set_stream_user_data(h->s, id, st) != 0) {
        torii_proxy__h2s_free(st);
        return NULL;
    }
    st->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = st;
    }
    h->streams = st;
    h->n_streams++;
    st->linked = 1;
    torii_metrics_inc(TORII_METRIC_H2_STREAMS);
    return st;
}

void torii_proxy__h2s_due(struct h2_stream *st)
{
    if (!st->due) {
        st->due = 1;
        st->due_next = st->h->due;
        st->h->due = st;
    }
}

void torii_proxy__h2s_kick(struct h2_stream *st)
{
    st->kick = 1;
    torii_proxy__h2s_due(st);
}

void torii_proxy__h2s_reset(struct h2_stream *st, uint32_t code)
{
    if (!st->closed) {
        (void)nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, code);
    }
}

/* Counted as a defence when the RST_STREAM PROTOCOL_ERROR leaves (h2.c). */
static void h2s_malformed(struct h2_stream *st, const char *why)
{
    st->bad = 1;
    torii_log(TORII_LOG_DEBUG, "h2: stream %d from %s malformed: %s", (int)st->id, st->h->pc->ip,
              why);
    torii_proxy__h2s_reset(st, NGHTTP2_PROTOCOL_ERROR);
}

/* A copy of a pseudo-header field's or host's value (NUL-terminated): in st->strs while it
 * fits, else allocated. */
static char *h2s_str(struct h2_stream *st, const void *v, size_t n)
{
    char *p;

    if (n >= sizeof(st->strs) - st->strs_used) {
        return torii_xstrndup(v, n);
    }
    p = st->strs + st->strs_used;
    memcpy(p, v, n);
    p[n] = '\0';
    st->strs_used += n + 1;
    return p;
}

static void h2s_str_free(struct h2_stream *st, char *p)
{
    if (p != NULL && (uintptr_t)p - (uintptr_t)st->strs >= sizeof(st->strs)) {
        free(p); /* not in st->strs */
    }
}

/* A pseudo-header field: each at most once. */
static int h2s_pseudo(struct h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                      size_t vlen)
{
    char **dst = NULL;

    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
        dst = &st->method;
    } else if (nlen == 7 && memcmp(name, ":scheme", 7) == 0) {
        dst = &st->scheme;
    } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
        dst = &st->authority;
    } else if (nlen == 9 && memcmp(name, ":protocol", 9) == 0) {
        dst = &st->protocol;
    } else {
        dst = &st->path;
    }
    if (*dst != NULL) {
        h2s_malformed(st, "pseudo-header field repeated");
        return 0;
    }
    *dst = h2s_str(st, value, vlen);
    return 0;
}

/* content-length: digits only; repeated values must agree. */
static int h2s_content_length(struct h2_stream *st, const uint8_t *v, size_t n)
{
    int64_t cl = 0;

    if (n == 0 || n > 18) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit(v[i])) {
            return -1;
        }
        cl = cl * 10 + (v[i] - '0');
    }
    if (st->content_length >= 0 && st->content_length != cl) {
        return -1;
    }
    st->content_length = cl;
    return 0;
}

/* A regular field: host and cookie are kept apart, the rest (te only as "trailers") becomes an
 * HTTP/1.1 line. */
static int h2s_regular(struct h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                       size_t vlen)
{
    st->regular_seen = 1;
    if (nlen == 4 && memcmp(name, "host", 4) == 0) {
        if (st->host != NULL) {
            h2s_malformed(st, "host repeated");
        } else {
            st->host = h2s_str(st, value, vlen);
        }
        return 0;
    }
    if (nlen == 2 && memcmp(name, "te", 2) == 0) {
        /* only "trailers" (h2msg.c): the engine and an h2c backend learn the client takes them */
        return torii_proxy__h2f_add(st->fields, "te", 2, "trailers", 8) == TORII_OK
                   ? 0
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (nlen == 6 && memcmp(name, "cookie", 6) == 0) {
        if ((evbuffer_get_length(st->cookie) > 0 && evbuffer_add(st->cookie, "; ", 2) != 0)
            || evbuffer_add(st->cookie, value, vlen) != 0) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    if (st->protocol != NULL && nlen == 17 && memcmp(name, "sec-websocket-key", 17) == 0) {
        return 0; /* none in RFC 8441; ours is generated (h2s_write_head) */
    }
    if (nlen == 6 && memcmp(name, "expect", 6) == 0 && vlen == 12
        && strncasecmp((const char *)value, "100-continue", 12) == 0) {
        st->expect = 1; /* the body waits for the engine's 100: no holding (head_done) */
    }
    if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
        if (h2s_content_length(st, value, vlen) != 0) {
            h2s_malformed(st, "bad or conflicting content-length");
        }
        return 0; /* written once with the framing */
    }
    return torii_proxy__h2f_add(st->fields, name, nlen, value, vlen) == TORII_OK
               ? 0
               : NGHTTP2_ERR_CALLBACK_FAILURE;
}

int torii_proxy__h2s_field(struct h2_stream *st, const uint8_t *name, size_t nlen,
                           const uint8_t *value, size_t vlen)
{
    const char *why = NULL;
    enum h2_field_kind kind;

    if (st->bad || st->too_big || st->head_ok) {
        return 0; /* reset already, or the head is complete */
    }
    st->hdr_bytes += nlen + vlen + 32;
    if (st->hdr_bytes > st->h->pc->pw->cfg->h2_max_header_list) {
        st->too_big = 1;
        torii_metrics_inc(TORII_METRIC_H2_DEF_HEADER_LIST);
        return 0;
    }
    kind = torii_proxy__h2_field_kind(name, nlen, value, vlen, &why);
    if (kind == H2F_PSEUDO && st->regular_seen) {
        kind = H2F_MALFORMED;
        why = "pseudo-header field after a regular one";
    }
    if (kind == H2F_MALFORMED) {
        h2s_malformed(st, why);
        return 0;
    }
    return kind == H2F_PSEUDO ? h2s_pseudo(st, name, nlen, value, vlen)
                              : h2s_regular(st, name, nlen, value, vlen);
}

int torii_proxy__h2s_trailer(struct h2_stream *st, const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen)
{
    const char *why = NULL;

    if (st->bad || !st->head_ok || st->req_ended) {
        return 0; /* reset or answered already */
    }
    st->trl_bytes += nlen + vlen + 32;
    if (st->trl_bytes > st->h->pc->pw->cfg->h2_max_header_list) {
        torii_metrics_inc(TORII_METRIC_H2_DEF_HEADER_LIST);
        h2s_malformed(st, "trailer section over limits.h2_max_header_list_size");
        return 0;
    }
    if (torii_proxy__h2_field_kind(name, nlen, value, vlen, &why) != H2F_REGULAR) {
        h2s_malformed(st, why != NULL ? why : "pseudo-header field in trailers");
        return 0;
    }
    if (!torii_proxy__h2_trailer_ok((const char *)name, nlen)) {
        torii_log(TORII_LOG_DEBUG, "h2: stream %d from %s: trailer field '%.*s' not forwarded",
                  (int)st->id, st->h->pc->ip, (int)(nlen < 64 ? nlen : 64), (const char *)name);
        return 0;
    }
    if (st->trailers == NULL && (st->trailers = evbuffer_new()) == NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (evbuffer_add(st->trailers, name, nlen) != 0 || evbuffer_add(st->trailers, ": ", 2) != 0
        || evbuffer_add(st->trailers, value, vlen) != 0
        || evbuffer_add(st->trailers, "\r\n", 2) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

/* A response of our own, without body, for a request that never reaches the engine. */
static void h2s_answer(struct h2_stream *st, int status)
{
    char code[8];
    nghttp2_nv nv[2] = {
        {h2s_u8(":status"), h2s_u8(code), 7, 3, NGHTTP2_NV_FLAG_NONE},
        {h2s_u8("content-length"), h2s_u8("0"), 14, 1, NGHTTP2_NV_FLAG_NONE},
    };

    (void)snprintf(code, sizeof(code), "%03d", status);
    st->resp_head = 1;
    st->resp_done = 1;
    if (nghttp2_submit_response(st->h->s, st->id, nv, 2, NULL) != 0) {
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
    }
}

static int h2s_pipe_send(struct torii_stream *pipe, void *arg);
static int h2s_resp_body(void *arg, const unsigned char *data, size_t len);

/* The child that serves the request, with the response parser reading it back. */
static int h2s_start_child(struct h2_stream *st)
{
    struct proxy_conn *pc = st->h->pc;

    if (st->rp == NULL && torii_http_parser_new_response(&pc->pw->ulim, &st->rp) != TORII_OK) {
        return TORII_ENOMEM;
    }
    torii_http_parser_set_body_cb(st->rp, h2s_resp_body, st);
    st->head_req = strcmp(st->method, "HEAD") == 0;
    torii_http_parser_set_no_body(st->rp, st->head_req);
    torii_http_parser_allow_switch(st->rp, st->ws);
    st->child = torii_proxy__conn_pipe(pc, h2s_pipe_send, st);
    if (st->child == NULL) {
        return TORII_ENOMEM;
    }
    st->child->h2s = st;
    return torii_proxy__h2s_give_head(st);
}

/* The request goes to a child: its head, and the body held so far. */
static void h2s_start(struct h2_stream *st)
{
    st->started = 1;
    if (h2s_start_child(st) != TORII_OK) {
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        st->bad = 1;
        return;
    }
    torii_proxy__h2s_kick(st);
}

/* CONNECT: only RFC 8441's websocket, which becomes a GET with Upgrade (plain CONNECT: 501,
 * other protocols: 400). 0 to go on, -1: answered. */
static int h2s_connect(struct h2_stream *st)
{
    if (st->protocol == NULL) {
        h2s_answer(st, 501); /* no CONNECT tunnels here */
        return -1;
    }
    if (strcmp(st->protocol, "websocket") != 0 || st->authority == NULL) {
        torii_log(TORII_LOG_DEBUG, "h2: stream %d from %s: extended CONNECT for '%s' refused",
                  (int)st->id, st->h->pc->ip, st->protocol);
        h2s_answer(st, 400);
        return -1;
    }
    h2s_str_free(st, st->method);
    st->method = h2s_str(st, "GET", 3);
    st->ws = 1;
    return 0;
}

void torii_proxy__h2s_head_done(struct h2_stream *st, int end_stream)
{
    const char *why = NULL;

    if (st->bad || st->head_ok) {
        return;
    }
    if (st->too_big) {
        h2s_answer(st, 431);
        return;
    }
    if (st->method != NULL && strcmp(st->method, "CONNECT") == 0) {
        if (h2s_connect(st) != 0) {
            return; /* answered */
        }
    } else if (st->protocol != NULL) {
        h2s_malformed(st, ":protocol without CONNECT");
        return;
    }
    if (torii_proxy__h2_pseudo_check(st->method, st->scheme, st->authority, st->path, st->host,
                                     &why)
        != 0) {
        h2s_malformed(st, why);
        return;
    }
    st->head_ok = 1;
    st->req_ended = end_stream ? 1 : 0;
    st->chunked = st->content_length < 0 && !end_stream && !st->ws;
    st->h->pc->had_request = 1;
    if (end_stream || st->ws || st->expect) {
        h2s_start(st);
    }
}

/* Give DATA back to flow control once the engine has taken it (or nobody will). */
static void h2s_give_back(struct h2_stream *st)
{
    if (st->unconsumed == 0) {
        return;
    }
    if (!st->closed && st->child != NULL
        && evbuffer_get_length(torii_stream_input(st->child->st)) >= H2S_IN_LOW) {
        return;
    }
    if (st->closed) {
        (void)nghttp2_session_consume_connection(st->h->s, (size_t)st->unconsumed);
    } else {
        (void)nghttp2_session_consume(st->h->s, st->id, (size_t)st->unconsumed);
    }
    st->unconsumed = 0;
    torii_proxy__h2_wake(st->h);
}

void torii_proxy__h2s_data(struct h2_stream *st, const uint8_t *data, size_t len)
{
    struct evbuffer *in;
    int rc = 0;

    st->unconsumed += len;
    if (st->bad || !st->head_ok || (st->started && st->child == NULL)) {
        h2s_give_back(st); /* reset, or answered: dropped */
        return;
    }
    in = st->started ? torii_stream_input(st->child->st) : st->held;
    if (st->chunked && len > 0) {
        rc = evbuffer_add_printf(in, "%zx\r\n", len) < 0 || evbuffer_add(in, data, len) != 0
             || evbuffer_add(in, "\r\n", 2) != 0;
    } else if (len > 0) {
        rc = evbuffer_add(in, data, len) != 0;
    }
    if (rc != 0) {
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        st->bad = 1;
    } else if (!st->started && evbuffer_get_length(st->held) >= H2S_HOLD) {
        h2s_start(st); /* a large body streams from here on */
    }
    torii_proxy__h2s_kick(st);
}

/* The request had trailers and a content-length, its body still held: it goes chunked
 * instead (one chunk), the only HTTP/1.1 framing with a trailer section. */
static int h2s_rechunk(struct h2_stream *st)
{
    size_t n = evbuffer_get_length(st->held);
    char sz[24];
    int k = snprintf(sz, sizeof(sz), "%zx\r\n", n);

    st->chunked = 1;
    st->content_length = -1;
    if (n == 0) {
        return TORII_OK;
    }
    if (k <= 0 || evbuffer_prepend(st->held, sz, (size_t)k) != 0
        || evbuffer_add(st->held, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* The end of a chunked request body into in: the last chunk with the trailer fields kept. A
 * content-length body already under way cannot carry them: they are dropped, logged. */
static int h2s_last_chunk(struct h2_stream *st, struct evbuffer *in)
{
    size_t ntrl = st->trailers != NULL ? evbuffer_get_length(st->trailers) : 0;

    if (ntrl > 0 && !st->chunked && !st->started && !st->ws && h2s_rechunk(st) != TORII_OK) {
        return TORII_ENOMEM;
    }
    if (!st->chunked) {
        if (ntrl > 0) {
            torii_log(TORII_LOG_NOTICE,
                      "h2: stream %d from %s: request trailers not forwarded (a content-length "
                      "body over %zu bytes was already under way)",
                      (int)st->id, st->h->pc->ip, H2S_HOLD);
        }
        return TORII_OK;
    }
    if (in == NULL) {
        return TORII_OK;
    }
    if (evbuffer_add(in, "0\r\n", 3) != 0
        || (ntrl > 0 && evbuffer_add_buffer(in, st->trailers) != 0)
        || evbuffer_add(in, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

void torii_proxy__h2s_end(struct h2_stream *st)
{
    struct evbuffer *in;

    if (st->req_ended || st->bad || !st->head_ok) {
        return;
    }
    st->req_ended = 1;
    in = st->started ? (st->child != NULL ? torii_stream_input(st->child->st) : NULL) : st->held;
    if (h2s_last_chunk(st, in) != TORII_OK) {
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        st->bad = 1;
        return;
    }
    if (!st->started) {
        h2s_start(st); /* the whole body passed nghttp2's content-length check */
    }
    torii_proxy__h2s_kick(st);
}

/* ---- the response, read back from the pipe ---- */

static int h2s_resp_body(void *arg, const unsigned char *data, size_t len)
{
    struct h2_stream *st = arg;

    return evbuffer_add(st->body, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* The fields of a response head into b (the status into code): connection-specific fields
 * dropped. */
static void h2s_head_nv(const struct h2_stream *st, const struct torii_http_resp *r,
                        struct h2_nvbuf *b, char *code)
{
    (void)snprintf(code, 8, "%03d", st->tunnel ? 200 : r->status);
    b->nv[b->n++] = (nghttp2_nv){h2s_u8(":status"), h2s_u8(code), 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct torii_http_header *f = &r->headers[i];
        if (torii_proxy__h2_conn_specific(f->name.ptr, f->name.len) || f->name.len >= H2S_MAX_NAME
            || (st->tunnel && torii_slice_eq_ci(f->name, "Sec-WebSocket-Accept"))) {
            continue; /* a name that long is refused by the response parser's limits first */
        }
        torii_proxy__h2_nv_add(b, f->name, f->value);
    }
}

/* The response head as a HEADERS frame; with_body: DATA frames follow. An interim (1xx)
 * head is a HEADERS frame of its own before the final one (RFC 9113 section 8.1). */
static int h2s_submit_head(struct h2_stream *st, const struct torii_http_resp *r, int with_body)
{
    struct h2_nvbuf b;
    char code[8];
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = torii_proxy__h2s_read};
    int rc;

    torii_proxy__h2_nv_init(&b, r->headers, r->n_headers, 1);
    h2s_head_nv(st, r, &b, code);
    if (r->interim) {
        rc = nghttp2_submit_headers(st->h->s, NGHTTP2_FLAG_NONE, st->id, NULL, b.nv, b.n, NULL);
    } else {
        rc = nghttp2_submit_response(st->h->s, st->id, b.nv, b.n, with_body ? &prd : NULL);
        st->resp_head = 1;
    }
    torii_proxy__h2_nv_free(&b);
    return rc == 0 ? TORII_OK : TORII_EIO;
}

/* One parser event on the child's output. 1: go on, 0: stop, -1: failed. */
static int h2s_parse_ev(struct h2_stream *st, enum torii_http_parse_ev ev)
{
    const struct torii_http_resp *r = torii_http_parser_resp(st->rp);

    if (ev != TORII_HTTP_PARSE_MORE && r == NULL) {
        return -1; /* an error, or no head: nothing to relay */
    }
    switch (ev) {
    case TORII_HTTP_PARSE_MORE:
        return 1;
    case TORII_HTTP_PARSE_HEAD:
        return h2s_submit_head(st, r, 1) == TORII_OK ? 1 : -1;
    case TORII_HTTP_PARSE_DONE:
        if (r->interim) { /* the engine's 100 (Expect) or the upstream's 103...: relayed */
            int rc = h2s_submit_head(st, r, 0);
            torii_http_parser_next(st->rp);
            torii_http_parser_set_no_body(st->rp, st->head_req);
            torii_http_parser_allow_switch(st->rp, st->ws);
            return rc == TORII_OK ? 1 : -1;
        }
        if (st->ws && r->status == 101) { /* switched: 200, then the tunnel's bytes as DATA */
            st->tunnel = 1;
            torii_proxy__h2s_kick(st);
            return h2s_submit_head(st, r, 1) == TORII_OK ? 0 : -1;
        }
        /* trailers only after a head submitted with its DATA provider */
        st->resp_trl = st->resp_head && r->n_trailers > 0 && !st->head_req;
        if (!st->resp_head && h2s_submit_head(st, r, 0) != TORII_OK) {
            return -1;
        }
        st->resp_done = 1;
        return 0;
    default:
        return -1;
    }
}

/* Raw bytes the child wrote (tunnel bytes after its 101, or the body of a response handed
 * over directly) into the body, up to PX_HIGH_WM; the rest stays in the pipe, which pauses
 * the child's reading of the backend. */
static int h2s_raw_take(struct h2_stream *st, struct evbuffer *out)
{
    size_t have = evbuffer_get_length(st->body), n = evbuffer_get_length(out), left = n;

    if (have < PX_HIGH_WM && n > 0) {
        n = n < PX_HIGH_WM - have ? n : PX_HIGH_WM - have;
        if (evbuffer_remove_buffer(out, st->body, n) != (int)n) {
            return TORII_ENOMEM;
        }
        left -= n;
    }
    if ((st->tun_eof || st->resp_end) && left == 0) {
        st->resp_done = 1; /* END_STREAM (or the trailers) once the body is out */
        st->resp_trl = st->resp_end && st->n_rtrl > 0 && !st->head_req;
    }
    return TORII_OK;
}

/* Parse what the child wrote, up to PX_HIGH_WM of body waiting for the client. The
 * connection is woken only when that made progress (bytes taken from the pipe, the response
 * complete): a pass that found nothing new (the service of a kicked stream, before its child
 * runs) asks for no other step. */
static int h2s_parse(struct h2_stream *st, struct evbuffer *out)
{
    size_t before = evbuffer_get_length(st->body), pending = evbuffer_get_length(out);
    unsigned done = st->resp_done;
    int go = 1, moved;

    while (go > 0 && !st->resp_done && !st->tunnel && !st->direct
           && evbuffer_get_length(st->body) < PX_HIGH_WM) {
        struct evbuffer_iovec v;
        size_t used = 0;
        if (evbuffer_peek(out, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        st->rp_fed = 1;
        go = h2s_parse_ev(st, torii_http_parser_feed(st->rp, v.iov_base, v.iov_len, &used));
        (void)evbuffer_drain(out, used);
        if (used == 0 && go > 0) {
            break;
        }
    }
    if (go < 0) {
        const char *why = NULL;
        (void)torii_http_parser_error(st->rp, &why);
        torii_log(TORII_LOG_WARN, "h2: stream %d from %s: the response could not be relayed: %s",
                  (int)st->id, st->h->pc->ip, why != NULL ? why : "nghttp2 refused it");
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        st->resp_done = 1;
        (void)evbuffer_drain(out, evbuffer_get_length(out));
        return TORII_EIO;
    }
    if ((st->tunnel || st->direct) && !st->resp_done && h2s_raw_take(st, out) != TORII_OK) {
        return TORII_ENOMEM;
    }
    moved = st->resp_done != done || evbuffer_get_length(out) != pending;
    if (st->deferred && (st->resp_done || evbuffer_get_length(st->body) > before)) {
        st->deferred = 0;
        moved = 1; /* resumed: a step sends it */
        (void)nghttp2_session_resume_data(st->h->s, st->id);
    }
    if (moved) {
        torii_proxy__h2_wake(st->h);
    }
    return TORII_OK;
}

static int h2s_pipe_send(struct torii_stream *pipe, void *arg)
{
    struct h2_stream *st = arg;
    struct evbuffer *out = torii_stream_output(pipe);

    if (st->child == NULL || st->resp_done) {
        size_t n = evbuffer_get_length(out); /* usually none: the child is ending */
        if (n > 0) {
            (void)evbuffer_drain(out, n); /* nobody to send it to */
        }
        return TORII_OK;
    }
    h2s_give_back(st);
    if (evbuffer_get_length(out) == 0 && !st->resp_end) {
        return TORII_OK;
    }
    return h2s_parse(st, out);
}

/* The response's trailers as a final HEADERS frame (END_STREAM), from the DATA provider once
 * the last DATA is out: fields that may not be trailers dropped, the list bounded as a
 * request's (limits.h2_max_header_list_size). 1: submitted, 0: none to send, -1: failed. */
static int h2s_trailers(struct h2_stream *st)
{
    const struct torii_http_resp *r = st->direct ? NULL : torii_http_parser_resp(st->rp);
    const struct torii_http_header *t = st->direct ? st->rtrl : r != NULL ? r->trailers : NULL;
    size_t n = st->direct ? st->n_rtrl : r != NULL ? r->n_trailers : 0;
    struct h2_nvbuf b;
    size_t bytes = 0;
    int rc = 0;

    if (!st->resp_trl || n == 0) {
        return 0;
    }
    torii_proxy__h2_nv_init(&b, t, n, 0);
    for (size_t i = 0; i < n; i++) {
        const struct torii_http_header *f = &t[i];
        if (!torii_proxy__h2_trailer_ok(f->name.ptr, f->name.len) || f->name.len >= H2S_MAX_NAME) {
            continue;
        }
        bytes += f->name.len + f->value.len + 32;
        torii_proxy__h2_nv_add(&b, f->name, f->value);
    }
    if (bytes > st->h->pc->pw->cfg->h2_max_header_list) {
        torii_log(TORII_LOG_WARN, "h2: stream %d from %s: response trailers over %zu bytes",
                  (int)st->id, st->h->pc->ip, st->h->pc->pw->cfg->h2_max_header_list);
        rc = -1;
    } else if (b.n > 0) {
        rc = nghttp2_submit_trailer(st->h->s, st->id, b.nv, b.n) == 0 ? 1 : -1;
    }
    torii_proxy__h2_nv_free(&b);
    return rc;
}

ssize_t torii_proxy__h2s_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    struct h2_stream *st = src->ptr;
    int n;

    (void)s;
    (void)id;
    (void)arg;
    n = evbuffer_remove(st->body, buf, len);
    if (n < 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (st->resp_done && evbuffer_get_length(st->body) == 0) {
        int trl = h2s_trailers(st);
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (trl != 0) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end it, or the reset */
        }
        if (trl < 0) {
            torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        }
        st->resp_trl = 0;
        return n;
    }
    if (n > 0) {
        if (st->child != NULL) {
            torii_proxy__h2s_kick(st); /* room: parse more of the child's output */
        }
        return n;
    }
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
}

/* ---- the upstream's response handed over by the child (no HTTP/1.1 text between) ---- */

struct h2s_head_ctx {
    struct h2_nvbuf *b;
    size_t bytes;
};

static void h2s_head_field(void *arg, const struct torii_http_header *f)
{
    struct h2s_head_ctx *c = arg;

    c->bytes += f->name.len + f->value.len + 4;
    /* the connection-specific fields are hop-by-hop: torii_proxy_resp_fields dropped them */
    if (f->name.len < H2S_MAX_NAME) {
        torii_proxy__h2_nv_add(c->b, f->name, f->value);
    }
}

int torii_proxy__h2s_resp_head(struct proxy_conn *child, const struct torii_http_resp *resp,
                               enum torii_proxy_out_framing framing, uint64_t length, int with_body,
                               size_t *bytes)
{
    struct h2_stream *st = child->h2s;
    struct h2_nvbuf b;
    struct h2s_head_ctx c = {&b, 0};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = torii_proxy__h2s_read};
    char code[24], cl[24];
    size_t k;
    int rc;

    /* What the engine wrote before (its 100 Continue, an interim response) goes first. */
    if (evbuffer_get_length(torii_stream_output(child->st)) > 0
        && h2s_parse(st, torii_stream_output(child->st)) != TORII_OK) {
        return TORII_EIO;
    }
    st->direct = 1;
    st->resp_head = 1;
    torii_proxy__h2_nv_init(&b, resp->headers, resp->n_headers, 2);
    k = torii_proxy__h2_digits(code,
                               (uint64_t)(resp->status > 0 ? resp->status : 0)); /* 3 digits */
    b.nv[b.n++] = (nghttp2_nv){h2s_u8(":status"), h2s_u8(code + k), 7, sizeof(code) - k,
                               NGHTTP2_NV_FLAG_NONE};
    torii_proxy_resp_fields(resp, framing, h2s_head_field, &c);
    if (framing == TORII_PROXY_OUT_LENGTH) {
        k = torii_proxy__h2_digits(cl, length);
        b.nv[b.n++] = (nghttp2_nv){h2s_u8("content-length"), h2s_u8(cl + k), 14, sizeof(cl) - k,
                                   NGHTTP2_NV_FLAG_NONE};
        c.bytes += 18 + sizeof(cl) - k;
    }
    rc = nghttp2_submit_response(st->h->s, st->id, b.nv, b.n, with_body ? &prd : NULL);
    torii_proxy__h2_nv_free(&b);
    *bytes = c.bytes + 19; /* and a status line */
    if (rc != 0) {
        torii_log(TORII_LOG_WARN, "h2: stream %d from %s: the response could not be relayed: %s",
                  (int)st->id, st->h->pc->ip, nghttp2_strerror(rc));
        return TORII_EIO;
    }
    if (!with_body) {
        st->resp_end = 1;
    }
    torii_proxy__h2_wake(st->h);
    return TORII_OK;
}

int torii_proxy__h2s_resp_trailers(struct proxy_conn *child, const struct torii_http_resp *resp)
{
    struct h2_stream *st = child->h2s;
    size_t n = resp->n_trailers, bytes = n * sizeof(*st->rtrl);
    char *p;

    for (size_t i = 0; i < n; i++) {
        bytes += resp->trailers[i].name.len + resp->trailers[i].value.len;
    }
    free(st->rtrl);
    st->rtrl = torii_xcalloc(1, bytes > 0 ? bytes : 1);
    p = (char *)(st->rtrl + n);
    for (size_t i = 0; i < n; i++) {
        const struct torii_http_header *f = &resp->trailers[i];
        memcpy(p, f->name.ptr, f->name.len);
        st->rtrl[i].name = (struct torii_slice){p, f->name.len};
        p += f->name.len;
        memcpy(p, f->value.ptr, f->value.len);
        st->rtrl[i].value = (struct torii_slice){p, f->value.len};
        p += f->value.len;
    }
    st->n_rtrl = n;
    return TORII_OK;
}

void torii_proxy__h2s_resp_end(struct proxy_conn *child)
{
    struct h2_stream *st = child->h2s;

    if (st->direct) {
        st->resp_end = 1;
        torii_proxy__h2s_kick(st);
        torii_proxy__h2_wake(st->h);
    }
}

/* ---- the child's life ---- */

static void h2s_child_end(struct h2_stream *st)
{
    struct proxy_conn *c = st->child;

    if (c == NULL) {
        return;
    }
    st->child = NULL;
    c->h2s = NULL;
    c->dead = 1;
    torii_proxy__run(c);
}

void torii_proxy__h2s_child_gone(struct proxy_conn *child)
{
    struct h2_stream *st = child->h2s;

    if (st == NULL) {
        return;
    }
    if (!st->resp_done) {
        (void)h2s_parse(st, torii_stream_output(child->st));
    }
    st->child = NULL;
    child->h2s = NULL;
    if (!st->resp_done) {
        torii_proxy__h2s_reset(st, NGHTTP2_INTERNAL_ERROR);
        st->resp_done = 1;
    }
    h2s_give_back(st);
    torii_proxy__h2_wake(st->h);
}

void torii_proxy__h2s_service(struct h2_stream *st)
{
    st->kick = 0;
    if (st->child != NULL) {
        if (st->tunnel && st->req_ended && st->child->phase == PH_TUNNEL) {
            st->child->peer_eof = 1; /* END_STREAM: half-close towards the backend */
        }
        if (!st->resp_done) {
            (void)h2s_parse(st, torii_stream_output(st->child->st));
        }
        if (!st->resp_done || st->tunnel) {
            torii_proxy__run(st->child); /* may end it: torii_proxy__h2s_child_gone */
        } /* else its exchange ended (access log, upstream back to the pool): it ends below */
    }
    h2s_give_back(st);
    if (st->child != NULL && st->resp_done && !st->tunnel) {
        h2s_child_end(st); /* the exchange is over (its access log line is written) */
    }
}

void torii_proxy__h2s_free(struct h2_stream *st)
{
    struct proxy_h2 *h = st->h;

    h2s_child_end(st);
    if (h->cur == st) {
        h->cur = NULL;
    }
    for (struct h2_stream **pp = &h->due; st->due && *pp != NULL; pp = &(*pp)->due_next) {
        if (*pp == st) { /* marked again by its own last service */
            *pp = st->due_next;
            st->due = 0;
            break;
        }
    }
    if (st->linked) {
        if (st->prev != NULL) {
            st->prev->next = st->next;
        } else {
            h->streams = st->next;
        }
        if (st->next != NULL) {
            st->next->prev = st->prev;
        }
        h->n_streams--;
    }
    if (st->trailers != NULL) {
        evbuffer_free(st->trailers);
    }
    h2s_str_free(st, st->method);
    h2s_str_free(st, st->scheme);
    h2s_str_free(st, st->authority);
    h2s_str_free(st, st->path);
    h2s_str_free(st, st->host);
    h2s_str_free(st, st->protocol);
    free(st->rtrl);
    torii_proxy__h2s_shell_put(h->pc->pw, st); /* its buffers and parser serve another */
}

struct proxy_conn *torii_proxy__tls_conn(struct proxy_conn *pc)
{
    return pc->h2s != NULL ? pc->h2s->h->pc : pc;
}

/* ---- the tunnel endpoint of a child after a 101 (RFC 8441) ---- */

static struct evbuffer *h2s_tun_input(void *c)
{
    return torii_stream_input(((struct proxy_conn *)c)->st);
}

static struct evbuffer *h2s_tun_output(void *c)
{
    return torii_stream_output(((struct proxy_conn *)c)->st);
}

static size_t h2s_tun_unsent(void *c)
{
    return torii_stream_unsent(((struct proxy_conn *)c)->st);
}

static void h2s_tun_read(void *c, int on)
{
    torii_stream_read(((struct proxy_conn *)c)->st, on);
}

static int h2s_tun_flush(void *c)
{
    return torii_stream_flush(((struct proxy_conn *)c)->st);
}

/* The backend's EOF: the stream ends (END_STREAM) after what came before it. */
static void h2s_tun_shut(void *c)
{
    struct h2_stream *st = ((struct proxy_conn *)c)->h2s;

    if (st != NULL) {
        st->tun_eof = 1;
        torii_proxy__h2s_kick(st);
        torii_proxy__h2_wake(st->h);
    }
}

const struct proxy_tun_ops torii_proxy__h2s_tun_ops = {
    .input = h2s_tun_input,
    .output = h2s_tun_output,
    .unsent = h2s_tun_unsent,
    .read = h2s_tun_read,
    .flush = h2s_tun_flush,
    .shut_write = h2s_tun_shut,
};
