/* fuzz_h2.c - libFuzzer target: torii's HTTP/2 message checks of a request (src/proxy/h2msg.c,
 * RFC 9113 section 8) applied the way h2stream.c applies them: each field classified
 * (pseudo-header, regular, malformed), pseudo-headers only before regular fields, then the
 * pseudo-header set checked as a whole; the trailer and connection-specific filters on every
 * name. Input: 1 control byte, then
 *   bit 0 clear: a field list, each field a 1-byte name length, a 2-byte (big-endian) value
 *                length, the name and the value, as nghttp2 would hand them over (but not
 *                checked by it first: the checks must hold on their own);
 *   bit 0 set:   client bytes after the connection preface (frames: SETTINGS, HEADERS,
 *                CONTINUATION, DATA...) into an nghttp2 server session with torii's settings
 *                and options (h2.c), whose header callbacks run the same checks; a HEADERS
 *                block after the request's is a trailer section (names filtered only). */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2_int.h"

/* NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile int fuzz_sink;

/* One request header block as h2stream.c collects it. */
struct fuzz_req {
    char *method, *scheme, *authority, *path, *host;
    int regular_seen;
    int bad;
};

static void fuzz_req_clear(struct fuzz_req *q)
{
    free(q->method);
    free(q->scheme);
    free(q->authority);
    free(q->path);
    free(q->host);
    memset(q, 0, sizeof(*q));
}

static int fuzz_eq(const uint8_t *p, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* Keep a copy of value in *slot; a second one is malformed (as h2stream.c's h2s_pseudo). */
static void fuzz_keep(struct fuzz_req *q, char **slot, const uint8_t *value, size_t vlen)
{
    if (*slot != NULL) {
        q->bad = 1;
        return;
    }
    *slot = malloc(vlen + 1);
    if (*slot == NULL) {
        q->bad = 1;
        return;
    }
    memcpy(*slot, value, vlen);
    (*slot)[vlen] = '\0';
}

static void fuzz_field(struct fuzz_req *q, const uint8_t *name, size_t nlen, const uint8_t *value,
                       size_t vlen)
{
    const char *why = NULL;
    enum h2_field_kind kind;

    fuzz_sink = torii_proxy__h2_trailer_ok((const char *)name, nlen);
    fuzz_sink = torii_proxy__h2_conn_specific((const char *)name, nlen);
    if (q->bad) {
        return;
    }
    kind = torii_proxy__h2_field_kind(name, nlen, value, vlen, &why);
    if (kind == H2F_PSEUDO && q->regular_seen) {
        kind = H2F_MALFORMED;
        why = "pseudo-header field after a regular one";
    }
    if (kind == H2F_MALFORMED) {
        if (why == NULL) {
            abort(); /* every malformed field has a reason to log */
        }
        q->bad = 1;
    } else if (kind == H2F_PSEUDO) {
        if (fuzz_eq(name, nlen, ":method")) {
            fuzz_keep(q, &q->method, value, vlen);
        } else if (fuzz_eq(name, nlen, ":scheme")) {
            fuzz_keep(q, &q->scheme, value, vlen);
        } else if (fuzz_eq(name, nlen, ":authority")) {
            fuzz_keep(q, &q->authority, value, vlen);
        } else if (fuzz_eq(name, nlen, ":path")) {
            fuzz_keep(q, &q->path, value, vlen);
        } else if (fuzz_eq(name, nlen, ":protocol")) {
            /* RFC 8441 extended CONNECT: h2stream.c checks it with the method (a :protocol
             * without CONNECT, or other than websocket, is refused there), not the set check */
        } else {
            abort(); /* field_kind let another pseudo-header through */
        }
    } else {
        q->regular_seen = 1;
        if (fuzz_eq(name, nlen, "host")) {
            fuzz_keep(q, &q->host, value, vlen);
        }
    }
}

static void fuzz_req_done(struct fuzz_req *q)
{
    const char *why = NULL;

    if (!q->bad
        && torii_proxy__h2_pseudo_check(q->method, q->scheme, q->authority, q->path, q->host, &why)
               != 0
        && why == NULL) {
        abort(); /* a refusal without a reason */
    }
    fuzz_req_clear(q);
}

static void fuzz_fields(const uint8_t *p, size_t n)
{
    struct fuzz_req q;

    memset(&q, 0, sizeof(q));
    while (n >= 3) {
        size_t nlen = p[0];
        size_t vlen = ((size_t)p[1] << 8) | p[2];
        p += 3;
        n -= 3;
        if (nlen + vlen > n) {
            break;
        }
        fuzz_field(&q, p, nlen, p + nlen, vlen);
        p += nlen + vlen;
        n -= nlen + vlen;
    }
    fuzz_req_done(&q);
}

/* ---- raw frames into an nghttp2 server session ---- */

struct fuzz_conn {
    struct fuzz_req q;
    int32_t req_stream; /* the stream whose request block q collects; 0: none */
    int trailers;       /* the current block is a trailer section */
};

static ssize_t fuzz_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)s;
    (void)data;
    (void)flags;
    (void)arg;
    return (ssize_t)len;
}

static int fuzz_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct fuzz_conn *fc = arg;

    (void)s;
    fc->trailers = f->headers.cat != NGHTTP2_HCAT_REQUEST;
    if (!fc->trailers) {
        fuzz_req_clear(&fc->q);
        fc->req_stream = f->hd.stream_id;
    }
    return 0;
}

static int fuzz_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                       const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct fuzz_conn *fc = arg;

    (void)s;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    if (fc->trailers) {
        fuzz_sink = torii_proxy__h2_trailer_ok((const char *)name, nlen);
    } else if (f->hd.stream_id == fc->req_stream) {
        fuzz_field(&fc->q, name, nlen, value, vlen);
    }
    return 0;
}

static int fuzz_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct fuzz_conn *fc = arg;

    (void)s;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST
        && f->hd.stream_id == fc->req_stream) {
        fuzz_req_done(&fc->q);
        fc->req_stream = 0;
    }
    return 0;
}

static void fuzz_frames(const uint8_t *p, size_t n)
{
    static const char preface[] = NGHTTP2_CLIENT_MAGIC;
    /* torii's defaults (limits.*) and H2_STREAM_WINDOW-like window, as h2_session sets them. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 65536},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
    };
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *s = NULL;
    struct fuzz_conn fc;

    memset(&fc, 0, sizeof(fc));
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) {
        goto out;
    }
    nghttp2_session_callbacks_set_send_callback(cb, fuzz_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, fuzz_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, fuzz_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, fuzz_frame_recv);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_continuations(opt, 8 + 8);
    nghttp2_option_set_stream_reset_rate_limit(opt, 200 * 4 + 1000, 1000);
    nghttp2_option_set_max_outbound_ack(opt, 200 * 2 + 1000);
    if (nghttp2_session_server_new2(&s, cb, &fc, opt) != 0
        || nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        goto out;
    }
    if (nghttp2_session_mem_recv(s, (const uint8_t *)preface, sizeof(preface) - 1) >= 0
        && nghttp2_session_mem_recv(s, p, n) >= 0) {
        fuzz_sink = nghttp2_session_send(s);
    }
out:
    nghttp2_session_del(s);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    fuzz_req_clear(&fc.q);
}

/* NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (size_t)64 * 1024) {
        return 0;
    }
    if (data[0] & 1) {
        fuzz_frames(data + 1, size - 1);
    } else {
        fuzz_fields(data + 1, size - 1);
    }
    return 0;
}
