/* h2.c - one client connection speaking HTTP/2 (ALPN h2; h2_int.h): the nghttp2 server
 * session over the connection's TLS stream, its callbacks, and the defences:
 *   - concurrent streams, header list size and HPACK table size as SETTINGS (nghttp2 refuses
 *     what goes over; header lists over the limit are answered 431 per stream);
 *   - rapid reset (CVE-2023-44487): every RST_STREAM from the client on a stream not yet
 *     answered spends one unit of a per-connection budget (limits.h2_max_resets), each
 *     completed response earns one back; an empty budget is GOAWAY ENHANCE_YOUR_CALM;
 *   - CONTINUATION floods: more than limits.h2_max_continuations CONTINUATION frames in one
 *     header block is GOAWAY ENHANCE_YOUR_CALM;
 *   - SETTINGS, PING, PRIORITY and empty DATA floods: more than limits.h2_max_control_frames
 *     in one second is GOAWAY ENHANCE_YOUR_CALM;
 *   - slow readers: the connection's output stops at PX_HIGH_WM (the stream's write timeout
 *     ends a client that reads nothing), each stream holds at most PX_HIGH_WM of response
 *     (h2stream.c), and a stream whose output waits on a flow-control window the client
 *     keeps closed for idle_timeout_ms is reset (CANCEL).
 * Each defence has a counter in /metrics. GOAWAY (NO_ERROR) is sent when the worker drains
 * (reload, upgrade, stop) and after idle_timeout_ms without a stream; the connection closes
 * once its streams are done. Worker thread only. */
#include <string.h>

#include <event2/event.h>

#include "h2_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/stream.h"
#include "torii/tls.h"

#define H2_STREAM_WINDOW ((int32_t)256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE */
#define H2_CONN_WINDOW   ((int32_t)1024 * 1024)

void torii_proxy__h2_calm(struct proxy_h2 *h, int metric, const char *what)
{
    if (h->closing) {
        return;
    }
    h->closing = 1;
    torii_metrics_inc((enum torii_metric)metric);
    torii_log(TORII_LOG_WARN, "h2: %s from %s: GOAWAY ENHANCE_YOUR_CALM", what, h->pc->ip);
    (void)nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* SETTINGS, PING, PRIORITY and empty DATA frames in the current second. 0, or -1: flood. */
static int h2_control_frame(struct proxy_h2 *h)
{
    int64_t sec = torii_proxy__now_us(h->pc->pw) / 1000000;

    if (sec != h->ctl_sec) {
        h->ctl_sec = sec;
        h->ctl_count = 0;
    }
    if (++h->ctl_count > h->pc->pw->cfg->h2_max_control) {
        torii_proxy__h2_calm(h, TORII_METRIC_H2_DEF_CONTROL_FLOOD, "control frame flood");
        return -1;
    }
    return 0;
}

static int h2_on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg)
{
    struct proxy_h2 *h = arg;
    int ctl = 0;

    (void)s;
    switch (hd->type) {
    case NGHTTP2_HEADERS:
        h->cont_count = 0;
        break;
    case NGHTTP2_CONTINUATION:
        if (++h->cont_count > h->pc->pw->cfg->h2_max_continuations) {
            torii_proxy__h2_calm(h, TORII_METRIC_H2_DEF_CONTINUATION, "CONTINUATION flood");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
        ctl = !(hd->flags & NGHTTP2_FLAG_ACK);
        break;
    case NGHTTP2_PRIORITY:
        ctl = 1;
        break;
    case NGHTTP2_DATA:
        ctl = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
        break;
    default:
        break;
    }
    return ctl && h2_control_frame(h) != 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* The stream of id: the one of the last callback when it is the same (the fields of a header
 * block come one callback each), else nghttp2's look-up (a hash map). */
static struct h2_stream *h2_stream_of(struct proxy_h2 *h, int32_t id)
{
    struct h2_stream *st = h->cur;

    if (st != NULL && st->id == id) {
        return st;
    }
    st = nghttp2_session_get_stream_user_data(h->s, id);
    if (st != NULL) {
        h->cur = st;
    }
    return st;
}

static int h2_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct proxy_h2 *h = arg;

    (void)s;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* trailers */
    }
    h->last_active_us = torii_proxy__now_us(h->pc->pw);
    return torii_proxy__h2s_new(h, f->hd.stream_id) != NULL ? 0
                                                            : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct h2_stream *st = h2_stream_of(arg, f->hd.stream_id);

    (void)flags;
    (void)s;
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return torii_proxy__h2s_trailer(st, name, nlen, value, vlen); /* after the body */
    }
    return torii_proxy__h2s_field(st, name, nlen, value, vlen);
}

/* A field nghttp2 found invalid (it would drop it silently): the stream is malformed. */
static int h2_on_invalid_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                                size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                                void *arg)
{
    struct h2_stream *st = h2_stream_of(arg, f->hd.stream_id);

    (void)name;
    (void)nlen;
    (void)value;
    (void)vlen;
    (void)flags;
    if (st != NULL && !st->bad) {
        st->bad = 1;
        (void)nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                        NGHTTP2_PROTOCOL_ERROR);
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* A client reset: spends the rapid-reset budget unless the stream was answered. */
static int h2_on_rst(struct proxy_h2 *h, struct h2_stream *st)
{
    if (st == NULL || st->resp_done) {
        return 0;
    }
    if (--h->rst_budget < 0) {
        torii_proxy__h2_calm(h, TORII_METRIC_H2_DEF_RAPID_RESET, "rapid reset");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct proxy_h2 *h = arg;
    struct h2_stream *st = h2_stream_of(h, f->hd.stream_id);
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (st != NULL && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            torii_proxy__h2s_head_done(st, end);
        } else if (st != NULL && end) {
            torii_proxy__h2s_end(st); /* after trailers */
        }
        break;
    case NGHTTP2_DATA:
        if (st != NULL && end) {
            torii_proxy__h2s_end(st);
        }
        break;
    case NGHTTP2_RST_STREAM:
        return h2_on_rst(h, st);
    default:
        break;
    }
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *arg)
{
    struct h2_stream *st = h2_stream_of(arg, id);

    (void)flags;
    if (st == NULL) {
        (void)nghttp2_session_consume_connection(s, len);
        return 0;
    }
    torii_proxy__h2s_data(st, data, len);
    return 0;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    struct proxy_h2 *h = arg;
    struct h2_stream *st = h2_stream_of(h, id);

    (void)code;
    (void)s;
    if (st != NULL) {
        st->closed = 1; /* freed by the next sweep, outside nghttp2 */
        torii_proxy__h2s_due(st);
        h->cur = NULL; /* nghttp2 forgets it: later frames of id find no stream, as before */
    }
    return 0;
}

static int h2_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct proxy_h2 *h = arg;

    (void)s;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        torii_metrics_inc(TORII_METRIC_H2_RST_SENT);
        if (f->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR) {
            /* a malformed request, found by nghttp2 or by h2msg.c */
            torii_metrics_inc(TORII_METRIC_H2_DEF_MALFORMED);
        }
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        torii_metrics_inc(TORII_METRIC_H2_GOAWAY_SENT);
    } else if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM)
               && h->rst_budget < (long)h->pc->pw->cfg->h2_max_resets) {
        h->rst_budget++; /* an answered stream earns a reset back */
    }
    return 0;
}

static int h2_callbacks(nghttp2_session_callbacks **out)
{
    nghttp2_session_callbacks *cb = NULL;

    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return TORII_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, h2_on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cb, h2_on_invalid_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_on_frame_send);
    *out = cb;
    return TORII_OK;
}

/* nghttp2's own flood limits sit above ours, so ours act (and count) first. */
static int h2_options(const struct torii_config *cfg, nghttp2_option **out)
{
    nghttp2_option *o = NULL;

    if (nghttp2_option_new(&o) != 0) {
        return TORII_ENOMEM;
    }
    nghttp2_option_set_no_auto_window_update(o, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(o, cfg->h2_header_table);
    nghttp2_option_set_max_continuations(o, (size_t)cfg->h2_max_continuations + 8);
    nghttp2_option_set_stream_reset_rate_limit(o, (uint64_t)cfg->h2_max_resets * 4 + 1000, 1000);
    nghttp2_option_set_max_outbound_ack(o, (size_t)cfg->h2_max_control * 2 + 1000);
    *out = o;
    return TORII_OK;
}

static int h2_session(struct proxy_h2 *h)
{
    const struct torii_config *cfg = h->pc->pw->cfg;
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->h2_max_header_list},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)cfg->h2_header_table},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* RFC 8441: WebSocket over streams */
    };
    int rc = TORII_OK;

    TORII_TRY(h2_callbacks(&cb));
    TORII_TRY(h2_options(cfg, &opt));
    TORII_ENSURE(torii_proxy__h2mem_server_new(&h->mem, &h->pc->pw->h2mem, &h->s, cb, h, opt) == 0,
                 TORII_ENOMEM);
    TORII_ENSURE(nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]))
                     == 0,
                 TORII_ENOMEM);
    TORII_ENSURE(nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW)
                     == 0,
                 TORII_ENOMEM);
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return rc;
}

int torii_proxy__h2_detect(struct proxy_conn *pc)
{
    struct proxy_h2 *h;

    if (pc->h2 != NULL) {
        return 1;
    }
    if (pc->h2_checked || !pc->tls || pc->h2_child || !torii_stream_established(pc->st)) {
        return 0;
    }
    pc->h2_checked = 1;
    if (!torii_tls_conn_h2(torii_stream_ssl(pc->st))) {
        return 0;
    }
    h = torii_xcalloc(1, sizeof(*h));
    h->pc = pc;
    h->rst_budget = (long)pc->pw->cfg->h2_max_resets;
    h->last_active_us = torii_clock_mono_us();
    pc->h2 = h;
    if (torii_proxy__h2_wake_init(pc->pw) != TORII_OK || h2_session(h) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "h2: cannot set up a session (client=%s)", pc->ip);
        pc->dead = 1;
        return 1;
    }
    torii_metrics_inc(TORII_METRIC_H2_CONNECTIONS);
    return 1;
}

/* Client bytes into the session. A connection error (bad preface, a frame nghttp2 refuses,
 * a flood) leaves the GOAWAY nghttp2 queued to be sent, then the connection closes. */
static void h2_recv(struct proxy_h2 *h)
{
    struct evbuffer *in = torii_stream_input(h->pc->st);

    while (!h->closing && evbuffer_get_length(in) > 0
           && torii_stream_unsent(h->pc->st) < PX_HIGH_WM) {
        struct evbuffer_iovec v;
        ssize_t n;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            torii_log(TORII_LOG_DEBUG, "h2: connection error from %s: %s", h->pc->ip,
                      nghttp2_strerror((int)n));
            h->closing = 1;
            break;
        }
        (void)evbuffer_drain(in, (size_t)n);
        if (n == 0) {
            break;
        }
    }
    if (h->closing) {
        (void)evbuffer_drain(in, evbuffer_get_length(in));
    }
}

/* Frames into the connection's output, up to PX_HIGH_WM unsent; a pass with nothing queued
 * (nghttp2_session_want_write) asks nghttp2 nothing. The unsent count is read before the
 * first send, grown by what each send appends (only this loop writes the connection's
 * output), and read again before stopping at the mark. */
static void h2_send(struct proxy_h2 *h)
{
    struct evbuffer *out = torii_stream_output(h->pc->st);
    size_t unsent = SIZE_MAX; /* not read yet */

    while (nghttp2_session_want_write(h->s)) {
        ssize_t n;
        if (unsent >= PX_HIGH_WM && (unsent = torii_stream_unsent(h->pc->st)) >= PX_HIGH_WM) {
            break;
        }
        n = torii_proxy__h2mem_send(&h->mem, h->s, out);
        if (n < 0) {
            h->pc->dead = 1;
            return;
        }
        if (n == 0) {
            break;
        }
        unsent += (size_t)n;
    }
}

/* Streams that want their child run, and streams nghttp2 closed: those marked due, and
 * those their service marks in turn (a bounded number of rounds; the rest wait for the next
 * sweep, as marks made after it do). */
#define H2_SWEEP_ROUNDS 8
static void h2_sweep(struct proxy_h2 *h)
{
    for (unsigned round = 0; round < H2_SWEEP_ROUNDS && h->due != NULL; round++) {
        struct h2_stream *st = h->due;
        h->due = NULL;
        while (st != NULL) {
            struct h2_stream *next = st->due_next;
            st->due_next = NULL;
            st->due = 0;
            if (st->kick) {
                torii_proxy__h2s_service(st);
            }
            if (st->closed) {
                torii_proxy__h2s_service(st); /* the connection window of its last DATA */
                torii_proxy__h2s_free(st);
                h->last_active_us = torii_proxy__now_us(h->pc->pw);
            }
            st = next;
        }
    }
}

/* Reading while there is room, closing when the session is over, the periodic timer. */
static void h2_settle(struct proxy_h2 *h)
{
    struct proxy_conn *pc = h->pc;
    int over =
        h->closing || (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s));
    uint32_t idle = pc->pw->cfg->idle_timeout_ms;

    if (pc->peer_eof || (over && torii_stream_unsent(pc->st) == 0)) {
        pc->dead = 1;
        return;
    }
    if (over) {
        pc->phase = PH_CLOSING; /* the flush steps again once the output is out */
        torii_stream_read(pc->st, 0);
        return;
    }
    torii_stream_read(pc->st, torii_stream_unsent(pc->st) < PX_HIGH_WM);
    if (pc->tmode != PT_IDLE && idle > 0) {
        torii_proxy__timer_arm(pc, PT_IDLE, idle / 2 > 0 ? idle / 2 : 1);
    }
}

void torii_proxy__h2_step(struct proxy_conn *pc)
{
    struct proxy_h2 *h = pc->h2;

    if (pc->dead || h == NULL) {
        return;
    }
    h2_recv(h);
    h2_sweep(h);
    if (pc->pw->draining && !h->goaway) {
        h->goaway = 1;
        (void)nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
                                    nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR,
                                    NULL, 0);
    }
    h2_send(h);
    if (!pc->dead) {
        h2_sweep(h); /* streams the sent frames closed, children with room again */
        h2_send(h);
    }
    if (!pc->dead) {
        h2_settle(h);
    }
}

/* Reset streams whose output has waited on a window the client keeps closed. */
static void h2_stalls(struct proxy_h2 *h, int64_t now, int64_t limit_us)
{
    int conn_closed = nghttp2_session_get_remote_window_size(h->s) <= 0;

    for (struct h2_stream *st = h->streams; st != NULL; st = st->next) {
        int waiting =
            !st->closed && evbuffer_get_length(st->body) > 0
            && (conn_closed || nghttp2_session_get_stream_remote_window_size(h->s, st->id) <= 0);
        if (!waiting) {
            st->stall_us = 0;
        } else if (st->stall_us == 0) {
            st->stall_us = now;
        } else if (now - st->stall_us >= limit_us) {
            st->stall_us = 0;
            torii_metrics_inc(TORII_METRIC_H2_DEF_SLOW_READER);
            torii_log(TORII_LOG_DEBUG, "h2: stream %d from %s: window closed too long, reset",
                      (int)st->id, h->pc->ip);
            torii_proxy__h2s_reset(st, NGHTTP2_CANCEL);
        }
    }
}

void torii_proxy__h2_timer(struct proxy_conn *pc)
{
    struct proxy_h2 *h = pc->h2;
    int64_t now = torii_clock_mono_us();
    int64_t limit = (int64_t)pc->pw->cfg->idle_timeout_ms * 1000;

    if (h == NULL || h->s == NULL) {
        pc->dead = 1;
        return;
    }
    if (h->n_streams == 0 && now - h->last_active_us >= limit && !h->goaway) {
        h->goaway = 1; /* idle: GOAWAY, closed once it is out */
        (void)nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
        return;
    }
    h2_stalls(h, now, limit);
}

unsigned torii_proxy__h2_busy(const struct proxy_conn *pc, unsigned *tunnels)
{
    unsigned n = 0;

    if (pc->h2 == NULL) {
        return 0;
    }
    for (const struct h2_stream *st = pc->h2->streams; st != NULL; st = st->next) {
        if (st->tunnel) {
            (*tunnels)++; /* a websocket stream after its 200: long-lived, like an HTTP/1.1 one */
        } else {
            n++;
        }
    }
    return n;
}

void torii_proxy__h2_free(struct proxy_conn *pc)
{
    struct proxy_h2 *h = pc->h2;

    if (h == NULL) {
        return;
    }
    h->due = NULL; /* every stream goes */
    while (h->streams != NULL) {
        torii_proxy__h2s_free(h->streams);
    }
    nghttp2_session_del(h->s);
    torii_proxy__h2_unqueue(h);
    free(h);
    pc->h2 = NULL;
}
