/* tunnel.c - the bidirectional byte tunnel (tunnel.h): two endpoints, a pump each way with the
 * proxy's high-water mark, half-close passed on, one idle timer. Worker thread only. */
#include "tunnel.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/metrics.h"

struct proxy_tunnel {
    struct proxy_tun_end end[2];
    struct event *timer;
    uint32_t idle_ms;
    int64_t last_us; /* when the last byte was moved */
    proxy_tun_done_cb done;
    void *arg;
    struct proxy_tun_stats st;
    unsigned eof[2];  /* the side finished sending */
    unsigned shut[2]; /* the side was half-closed by us */
};

/* ---- endpoints over a torii_stream ---- */

static struct evbuffer *tso_input(void *c)
{
    return torii_stream_input(c);
}

static struct evbuffer *tso_output(void *c)
{
    return torii_stream_output(c);
}

static size_t tso_unsent(void *c)
{
    return torii_stream_unsent(c);
}

static void tso_read(void *c, int on)
{
    torii_stream_read(c, on);
}

static int tso_flush(void *c)
{
    return torii_stream_flush(c);
}

static void tso_shut_write(void *c)
{
    torii_stream_shutdown_write(c);
}

const struct proxy_tun_ops torii_proxy__tun_stream_ops = {
    .input = tso_input,
    .output = tso_output,
    .unsent = tso_unsent,
    .read = tso_read,
    .flush = tso_flush,
    .shut_write = tso_shut_write,
};

/* ---- the pump ---- */

#define TUN_IN(t, s)     ((t)->end[s].ops->input((t)->end[s].ctx))
#define TUN_OUT(t, s)    ((t)->end[s].ops->output((t)->end[s].ctx))
#define TUN_UNSENT(t, s) ((t)->end[s].ops->unsent((t)->end[s].ctx))

/* src -> the other side, up to its high-water mark. TORII_OK or TORII_ENOMEM. */
static int tun_move(struct proxy_tunnel *t, int src)
{
    int dst = !src;
    struct evbuffer *in = TUN_IN(t, src);
    size_t n = evbuffer_get_length(in);
    size_t queued = TUN_UNSENT(t, dst);

    if (n == 0 || queued >= PX_HIGH_WM) {
        return TORII_OK;
    }
    if (n > PX_HIGH_WM - queued) {
        n = PX_HIGH_WM - queued; /* the rest waits in the input; src's reading pauses */
    }
    if (evbuffer_remove_buffer(in, TUN_OUT(t, dst), n) != (int)n) {
        return TORII_ENOMEM;
    }
    if (src == TUN_A) {
        t->st.a_to_b += n;
    } else {
        t->st.b_to_a += n;
    }
    t->last_us = torii_clock_mono_us();
    return TORII_OK;
}

/* src's EOF goes on to the other side once everything src sent before it has been queued. */
static void tun_half_close(struct proxy_tunnel *t, int src)
{
    int dst = !src;

    if (t->eof[src] && !t->shut[dst] && evbuffer_get_length(TUN_IN(t, src)) == 0) {
        t->shut[dst] = 1;
        t->end[dst].ops->shut_write(t->end[dst].ctx);
    }
}

/* The direction from src is over: its EOF passed on and everything before it sent. */
static int tun_dir_done(struct proxy_tunnel *t, int src)
{
    return t->shut[!src] && TUN_UNSENT(t, !src) == 0;
}

static void tun_end(struct proxy_tunnel *t, enum proxy_tun_why why)
{
    t->st.why = why;
    if (why == TUN_END_IDLE) {
        torii_metrics_inc(TORII_METRIC_TUNNELS_IDLE);
    }
    (void)event_del(t->timer);
    t->end[TUN_A].ops->read(t->end[TUN_A].ctx, 0);
    t->end[TUN_B].ops->read(t->end[TUN_B].ctx, 0);
    t->done(t->arg, &t->st); /* may free t */
}

/* One pass: move, half-close, flush, reading on/off. TORII_OK or an error. */
static int tun_pass(struct proxy_tunnel *t)
{
    for (int s = 0; s < 2; s++) {
        if (tun_move(t, s) != TORII_OK) {
            return TORII_ENOMEM;
        }
        tun_half_close(t, s);
    }
    for (int s = 0; s < 2; s++) {
        if (t->end[s].ops->flush(t->end[s].ctx) != TORII_OK) {
            return TORII_EIO;
        }
    }
    for (int s = 0; s < 2; s++) {
        t->end[s].ops->read(t->end[s].ctx, !t->eof[s] && TUN_UNSENT(t, !s) < PX_HIGH_WM);
    }
    return TORII_OK;
}

void torii_proxy__tunnel_event(struct proxy_tunnel *t, enum proxy_tun_side side, int what)
{
    if (what & TORII_STREAM_EOF) {
        t->eof[side] = 1;
    }
    if (what & TORII_STREAM_ERROR) {
        tun_end(t, TUN_END_ERROR);
        return;
    }
    if (what & TORII_STREAM_TIMEOUT) {
        tun_end(t, TUN_END_IDLE); /* a side stopped taking our output */
        return;
    }
    if (tun_pass(t) != TORII_OK) {
        tun_end(t, TUN_END_ERROR);
        return;
    }
    if (tun_dir_done(t, TUN_A) && tun_dir_done(t, TUN_B)) {
        tun_end(t, TUN_END_DONE);
    }
}

static void tun_timer_arm(struct proxy_tunnel *t, int64_t at_us)
{
    int64_t d = at_us - torii_clock_mono_us();
    struct timeval tv;

    if (d < 0) {
        d = 0;
    }
    tv.tv_sec = (time_t)(d / 1000000);
    tv.tv_usec = (suseconds_t)(d % 1000000);
    (void)event_add(t->timer, &tv);
}

/* Fires idle_ms after the start or the last re-arm; bytes moved since push the deadline. */
static void tun_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_tunnel *t = arg;
    int64_t deadline = t->last_us + (int64_t)t->idle_ms * 1000;

    (void)fd;
    (void)what;
    if (torii_clock_mono_us() < deadline) {
        tun_timer_arm(t, deadline);
        return;
    }
    tun_end(t, TUN_END_IDLE);
}

int torii_proxy__tunnel_new(const struct proxy_tun_opts *o, struct proxy_tun_end a,
                            struct proxy_tun_end b, struct proxy_tunnel **out)
{
    struct proxy_tunnel *t = torii_xcalloc(1, sizeof(*t));
    int rc = TORII_OK;

    *out = NULL;
    t->end[TUN_A] = a;
    t->end[TUN_B] = b;
    t->idle_ms = o->idle_ms;
    t->done = o->done;
    t->arg = o->arg;
    t->st.t0_us = torii_clock_mono_us();
    t->last_us = t->st.t0_us;
    t->timer = evtimer_new(o->base, tun_timer_cb, t);
    if (t->timer == NULL) {
        free(t);
        rc = TORII_ENOMEM;
        goto out;
    }
    if (t->idle_ms > 0) {
        tun_timer_arm(t, t->last_us + (int64_t)t->idle_ms * 1000);
    }
    torii_metrics_inc(TORII_METRIC_TUNNELS);
    torii_metrics_add(TORII_METRIC_TUNNELS_OPEN, 1);
    *out = t;
out:
    return rc;
}

void torii_proxy__tunnel_free(struct proxy_tunnel *t)
{
    if (t == NULL) {
        return;
    }
    event_free(t->timer);
    torii_metrics_add(TORII_METRIC_TUNNELS_OPEN, -1);
    free(t);
}
