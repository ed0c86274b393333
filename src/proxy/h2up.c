/* h2up.c - HTTP/2 connections to backends (backend.protocol "h2" or "h2c"), per target and
 * worker: at most backend.h2_connections, each shared by many streams (h2up_stream.c). A
 * request goes to the least loaded connection that is not draining, or to a new one when all
 * are at the backend's SETTINGS_MAX_CONCURRENT_STREAMS and there is room; past that nghttp2
 * holds it until a stream ends. GOAWAY from the backend drains the connection (no new
 * streams; the refused ones are retried once by upstream.c) and it closes with its last
 * stream. A connection without streams closes after backend.timeouts.idle_ms.
 * Re-entrancy: each event runs nghttp2, then wakes the client connections whose streams moved
 * (torii_proxy__run); a send asked for meanwhile is deferred to the end of that pass, and the
 * connection is freed only there (hc->busy). Worker thread only. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

#include "h2up_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/stream.h"
#include "torii/tls.h"

#define H2UP_PASSES 10000 /* bound of the wake and send passes of one event */

struct h2up_conn {
    struct proxy_worker *pw;
    const struct torii_route_backend *be;
    const struct torii_route_target *t;
    struct torii_stream *st;
    nghttp2_session *ng;
    struct h2mem mem;            /* the allocator of ng (h2mem.c) */
    struct h2up_conn *next;      /* the target's list */
    struct h2up_stream *streams; /* attached streams (h2up_stream.c links them) */
    uint32_t n_streams;
    unsigned listed : 1;    /* in the target's list: may take new streams unless goaway */
    unsigned connected : 1; /* TCP (and TLS with ALPN h2) done */
    unsigned goaway : 1;    /* the backend sent GOAWAY: draining */
    unsigned failed : 1;    /* the streams were told; only freeing is left */
    unsigned busy : 1;
    unsigned again : 1;
};

nghttp2_session *torii_h2up__conn_session(struct h2up_conn *hc)
{
    return hc->failed ? NULL : hc->ng;
}

int torii_h2up__conn_tls(const struct h2up_conn *hc)
{
    return hc->t->tls;
}

static struct h2up_stream *hc_find(struct h2up_conn *hc, int32_t id)
{
    for (struct h2up_stream *s = hc->streams; s != NULL; s = torii_h2up__stream_next(s)) {
        if (torii_h2up__stream_id(s) == id) {
            return s;
        }
    }
    return NULL;
}

static void hc_unlist(struct h2up_conn *hc)
{
    struct proxy_target_state *ts = &hc->pw->targets[hc->t->index];
    struct h2up_conn **pp = &ts->h2;

    if (!hc->listed) {
        return;
    }
    while (*pp != NULL && *pp != hc) {
        pp = &(*pp)->next;
    }
    if (*pp == hc) {
        *pp = hc->next;
        ts->n_h2--;
    }
    hc->listed = 0;
    hc->next = NULL;
}

static void hc_free(struct h2up_conn *hc)
{
    hc_unlist(hc);
    nghttp2_session_del(hc->ng);
    torii_stream_free(hc->st);
    free(hc);
}

/* The connection cannot carry its streams any more: each is told (ev: H2UP_EV_*), and
 * forgets it. */
static void hc_fail(struct h2up_conn *hc, int ev)
{
    hc_unlist(hc);
    hc->failed = 1;
    while (hc->streams != NULL) {
        struct h2up_stream *s = hc->streams;
        hc->streams = torii_h2up__stream_next(s);
        hc->n_streams--;
        torii_h2up__stream_set_next(s, NULL);
        torii_h2up__stream_conn_event(s, ev);
    }
}

/* ---- nghttp2 callbacks (user_data: the connection) ---- */

static int hc_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *arg)
{
    struct h2up_stream *s = hc_find(arg, f->hd.stream_id);

    (void)ng;
    (void)flags;
    return s == NULL ? 0 : torii_h2up__on_header(s, f, name, namelen, value, valuelen);
}

static int hc_on_frame(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    struct h2up_conn *hc = arg;
    struct h2up_stream *s;

    (void)ng;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        /* Draining: the streams up to last_stream_id finish here, nothing new starts. */
        torii_log(TORII_LOG_INFO, "proxy: backend %s sent GOAWAY (last stream %d, code %u)",
                  hc->t->name, f->goaway.last_stream_id, f->goaway.error_code);
        hc->goaway = 1;
        hc_unlist(hc);
        return 0;
    }
    s = hc_find(hc, f->hd.stream_id);
    return s == NULL ? 0 : torii_h2up__on_frame(s, f);
}

static int hc_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *arg)
{
    struct h2up_stream *s = hc_find(arg, id);

    (void)flags;
    if (s == NULL) {
        /* A stream we let go of: its bytes still count against the connection window. */
        return nghttp2_session_consume_connection(ng, len) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return torii_h2up__on_data(s, data, len);
}

static int hc_on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
    struct h2up_stream *s = hc_find(arg, id);

    (void)ng;
    if (s != NULL) {
        torii_h2up__on_close(s, code);
    }
    return 0;
}

/* A request that could not start (GOAWAY came first): like a refused stream. */
static int hc_on_not_sent(nghttp2_session *ng, const nghttp2_frame *f, int err, void *arg)
{
    struct h2up_stream *s = hc_find(arg, f->hd.stream_id);

    (void)ng;
    (void)err;
    if (s != NULL && f->hd.type == NGHTTP2_HEADERS) {
        torii_h2up__on_close(s, NGHTTP2_REFUSED_STREAM);
    }
    return 0;
}

static ssize_t hc_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *src, void *arg)
{
    struct h2up_stream *s = hc_find(arg, id);

    (void)ng;
    (void)src;
    if (s == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* gone: the stream is reset */
    }
    return torii_h2up__read_body(s, buf, length, data_flags);
}

int torii_h2up__conn_submit(struct h2up_conn *hc, struct h2up_stream *s, const nghttp2_nv *nv,
                            size_t n, int with_body)
{
    nghttp2_data_provider prd;

    memset(&prd, 0, sizeof(prd));
    prd.read_callback = hc_read_body;
    return nghttp2_submit_request(hc->ng, NULL, nv, n, with_body ? &prd : NULL, s);
}

/* ---- I/O ---- */

static int hc_send_frames(struct h2up_conn *hc)
{
    struct evbuffer *o = torii_stream_output(hc->st);

    for (int i = 0; i < H2UP_PASSES && torii_stream_unsent(hc->st) < PX_HIGH_WM; i++) {
        ssize_t n = torii_proxy__h2mem_send(&hc->mem, hc->ng, o);

        if (n < 0) {
            torii_log(TORII_LOG_WARN, "proxy: HTTP/2 to backend %s: %s", hc->t->name,
                      nghttp2_strerror((int)n));
            return TORII_EIO;
        }
        if (n == 0) {
            break;
        }
    }
    return torii_stream_flush(hc->st);
}

static int hc_recv_frames(struct h2up_conn *hc)
{
    struct evbuffer *in = torii_stream_input(hc->st);

    for (int i = 0; i < H2UP_PASSES && evbuffer_get_length(in) > 0; i++) {
        struct evbuffer_iovec v;
        ssize_t n;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
            break;
        }
        n = nghttp2_session_mem_recv(hc->ng, v.iov_base, v.iov_len);
        if (n < 0) {
            torii_log(TORII_LOG_WARN, "proxy: HTTP/2 from backend %s: %s", hc->t->name,
                      nghttp2_strerror((int)n));
            return TORII_EIO;
        }
        (void)evbuffer_drain(in, (size_t)n);
    }
    return TORII_OK;
}

/* Wake the client connections whose streams moved, until none is left (bounded). */
static void hc_wake(struct h2up_conn *hc)
{
    for (int i = 0; i < H2UP_PASSES; i++) {
        struct h2up_stream *s = hc->streams;

        while (s != NULL && !torii_h2up__stream_woken(s)) {
            s = torii_h2up__stream_next(s);
        }
        if (s == NULL) {
            return;
        }
        torii_h2up__stream_wake(s);
    }
}

/* Sends, wakes and, last, frees a connection that is done. */
static void hc_settle(struct h2up_conn *hc)
{
    int passes = 0;

    do {
        hc->again = 0;
        if (!hc->failed && hc_send_frames(hc) != TORII_OK) {
            hc_fail(hc, H2UP_EV_ERR);
        }
        hc_wake(hc);
    } while (hc->again && !hc->failed && ++passes < H2UP_PASSES);
    if (!hc->failed && (hc->goaway || !nghttp2_session_want_read(hc->ng)) && hc->n_streams == 0) {
        hc_fail(hc, H2UP_EV_ERR); /* drained: nothing left to carry */
    }
    if (!hc->failed && hc->connected) {
        /* Without streams the connection lives idle_ms; with streams their timers (read_ms)
         * rule, a stalled write included (while connecting, hc_new's connect_ms). */
        torii_stream_timeouts(hc->st, hc->n_streams == 0 ? hc->be->idle_ms : 0, 0);
    }
    hc->busy = 0;
    if (hc->failed && hc->streams == NULL) {
        hc_free(hc);
    }
}

int torii_h2up__conn_send(struct h2up_conn *hc)
{
    if (hc->failed) {
        return TORII_EIO;
    }
    if (hc->busy) {
        hc->again = 1;
        return TORII_OK;
    }
    hc->busy = 1;
    hc_settle(hc);
    return TORII_OK;
}

/* TLS: the backend must have chosen h2 (else it would read our frames as HTTP/1.1). */
static int hc_alpn_ok(struct h2up_conn *hc)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL *ssl = torii_stream_ssl(hc->st);

    if (ssl == NULL) {
        return 1;
    }
    SSL_get0_alpn_selected(ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0) {
        return 1;
    }
    torii_log(TORII_LOG_WARN, "proxy: backend %s did not select ALPN h2 (backend.protocol h2)",
              hc->t->name);
    return 0;
}

static void hc_on_connected(struct h2up_conn *hc)
{
    if (!hc_alpn_ok(hc)) {
        hc_fail(hc, H2UP_EV_ERR);
        return;
    }
    hc->connected = 1;
    for (struct h2up_stream *s = hc->streams; s != NULL; s = torii_h2up__stream_next(s)) {
        torii_h2up__stream_conn_event(s, H2UP_EV_UP);
    }
}

static void hc_cb(struct torii_stream *st, int what, void *arg)
{
    struct h2up_conn *hc = arg;

    (void)st;
    hc->busy = 1;
    if (what & TORII_STREAM_CONNECTED) {
        hc_on_connected(hc);
    }
    if (!hc->failed && (what & TORII_STREAM_READ) && hc_recv_frames(hc) != TORII_OK) {
        hc_fail(hc, H2UP_EV_ERR);
    }
    if (!hc->failed && (what & (TORII_STREAM_EOF | TORII_STREAM_ERROR))) {
        hc_fail(hc, (what & TORII_STREAM_EOF) ? H2UP_EV_EOF : H2UP_EV_ERR);
    }
    if (!hc->failed && (what & TORII_STREAM_TIMEOUT)) {
        if (!hc->connected || hc->n_streams > 0) {
            torii_log(TORII_LOG_WARN, "proxy: backend %s: %s", hc->t->name,
                      hc->connected ? "write timed out" : "connect timed out");
        }
        hc_fail(hc, H2UP_EV_TIMEOUT); /* an idle one ends quietly */
    }
    hc_settle(hc);
}

/* The preface settings: no push, our stream window, and a larger connection window. */
static int hc_session(struct h2up_conn *hc)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[2] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2UP_STREAM_WINDOW}};
    int rc = TORII_ENOMEM;

    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
        goto out;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, hc_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, hc_on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, hc_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, hc_on_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, hc_on_not_sent);
    /* Response DATA is credited back as the client takes it (h2up_stream.c). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (torii_proxy__h2mem_client_new(&hc->mem, &hc->pw->h2mem, &hc->ng, cbs, hc, opt) != 0) {
        goto out;
    }
    if (nghttp2_submit_settings(hc->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0
        || nghttp2_session_set_local_window_size(hc->ng, NGHTTP2_FLAG_NONE, 0, H2UP_CONN_WINDOW)
               != 0) {
        goto out;
    }
    rc = TORII_OK;
out:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    return rc;
}

static int hc_new(struct proxy_worker *pw, const struct torii_route *r,
                  const struct torii_route_target *t, struct h2up_conn **out)
{
    struct proxy_target_state *ts = &pw->targets[t->index];
    struct h2up_conn *hc = torii_xcalloc(1, sizeof(*hc));
    SSL *ssl = NULL;
    int rc = TORII_OK;

    hc->pw = pw;
    hc->be = &r->backend;
    hc->t = t;
    TORII_TRY(hc_session(hc));
    if (t->tls) {
        TORII_ENSURE(r->backend.tls_ctx != NULL, TORII_ETLS);
        ssl = torii_tls_upstream_conn_new(r->backend.tls_ctx, t->host);
        TORII_ENSURE(ssl != NULL, TORII_ETLS);
        TORII_ENSURE(SSL_set_alpn_protos(ssl, (const unsigned char *)"\x02h2", 3) == 0, TORII_ETLS);
    }
    hc->st = torii_stream_connect(pw->base, (const struct sockaddr *)&t->addr, t->addrlen, ssl);
    ssl = NULL; /* the stream owns it, also on failure */
    TORII_ENSURE(hc->st != NULL, TORII_EIO);
    torii_stream_set_lowat(hc->st, PX_LOW_WM);
    torii_stream_setcb(hc->st, hc_cb, hc);
    torii_stream_timeouts(hc->st, hc->be->connect_ms, hc->be->connect_ms);
    torii_stream_read(hc->st, 1);
    hc->next = ts->h2;
    ts->h2 = hc;
    ts->n_h2++;
    hc->listed = 1;
    *out = hc;
    hc = NULL;
out:
    if (ssl != NULL) {
        SSL_free(ssl);
    }
    if (hc != NULL) {
        nghttp2_session_del(hc->ng);
        free(hc);
    }
    return rc;
}

/* The connection for a new stream: one with a free slot, else a new one while there is room,
 * else the least loaded (nghttp2 queues the request until a slot frees). */
static int hc_pick(struct proxy_worker *pw, const struct torii_route *r,
                   const struct torii_route_target *t, struct h2up_conn **out)
{
    struct proxy_target_state *ts = &pw->targets[t->index];
    struct h2up_conn *best = NULL;

    for (struct h2up_conn *hc = ts->h2; hc != NULL; hc = hc->next) {
        uint32_t max =
            nghttp2_session_get_remote_settings(hc->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (hc->n_streams < max && (best == NULL || hc->n_streams < best->n_streams)) {
            best = hc;
        }
    }
    if (best == NULL && ts->n_h2 < r->backend.h2_connections) {
        return hc_new(pw, r, t, out);
    }
    for (struct h2up_conn *hc = ts->h2; best == NULL && hc != NULL; hc = hc->next) {
        if (best == NULL || hc->n_streams < best->n_streams) {
            best = hc;
        }
    }
    if (best == NULL) {
        return hc_new(pw, r, t, out);
    }
    *out = best;
    return TORII_OK;
}

int torii_h2up__get(struct proxy_worker *pw, const struct torii_route *r,
                    const struct torii_route_target *t, struct proxy_upstream **out)
{
    struct proxy_upstream *up = torii_xcalloc(1, sizeof(*up));
    struct h2up_conn *hc = NULL;
    int rc = TORII_OK;

    up->pw = pw;
    up->be = &r->backend;
    up->t = t;
    TORII_TRY(torii_http_parser_new_response(&pw->ulim, &up->parser));
    TORII_TRY(hc_pick(pw, r, t, &hc));
    up->h2 = torii_h2up__stream_new(up, hc);
    TORII_ENSURE(up->h2 != NULL, TORII_ENOMEM);
    torii_h2up__stream_set_next(up->h2, hc->streams);
    hc->streams = up->h2;
    hc->n_streams++;
    up->connected = hc->connected;
    up->reused = hc->connected; /* an open connection may have been closed meanwhile */
    *out = up;
    up = NULL;
out:
    torii_proxy__upstream_free(up);
    return rc;
}

void torii_h2up__conn_unlink(struct h2up_conn *hc, struct h2up_stream *s)
{
    struct h2up_stream **pp = &hc->streams;

    while (*pp != NULL && *pp != s) {
        pp = torii_h2up__stream_nextp(*pp);
    }
    if (*pp != s) {
        return;
    }
    *pp = torii_h2up__stream_next(s);
    hc->n_streams--;
    if (hc->busy) {
        return; /* hc_settle decides */
    }
    if (hc->failed && hc->streams == NULL) {
        hc_free(hc);
    } else if (!hc->failed && hc->n_streams == 0) {
        hc->busy = 1;
        hc_settle(hc); /* sends the resets; a draining connection closes */
    }
}

void torii_h2up__clear(struct proxy_worker *pw)
{
    for (size_t i = 0; pw->targets != NULL && i < pw->n_targets; i++) {
        struct h2up_conn *hc = pw->targets[i].h2;

        /* Detach the whole list, then free it (no stream is left by now). */
        pw->targets[i].h2 = NULL;
        pw->targets[i].n_h2 = 0;
        while (hc != NULL) {
            struct h2up_conn *next = hc->next;
            hc->listed = 0;
            hc_fail(hc, H2UP_EV_ERR);
            hc_free(hc);
            hc = next;
        }
    }
}
