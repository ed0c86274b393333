/* tunnel.h - internal to the proxy module: a bidirectional byte tunnel between two endpoints
 * (after an HTTP/1.1 protocol switch, or an HTTP/2 extended CONNECT stream: RFC 8441). The tunnel
 * moves bytes both ways without looking at them: from an endpoint's input to the other's
 * output, pausing a side's reading while the other's unsent output is over PX_HIGH_WM and
 * resuming when it drains. An EOF is passed on as a half-close (the other endpoint's
 * shut_write, once what came before it is out); the tunnel ends when both directions are
 * finished, on an error of either side, or after idle_ms without a byte either way.
 * Ownership: the owner keeps its endpoints (the tunnel borrows them, never frees them) and
 * reports their events with torii_proxy__tunnel_event; the tunnel calls done exactly once, as
 * the last thing it does, and the owner frees the tunnel then (or later) with
 * torii_proxy__tunnel_free, before its endpoints. Threads: the loop thread of the endpoints. */
#ifndef TORII_PROXY_TUNNEL_H
#define TORII_PROXY_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "torii/err.h"
#include "torii/stream.h"

/* An endpoint: a transport the tunnel reads from and writes to (ctx: the owner's object). */
struct proxy_tun_ops {
    struct evbuffer *(*input)(void *ctx);  /* bytes received, taken by the tunnel */
    struct evbuffer *(*output)(void *ctx); /* bytes to send, queued by the tunnel */
    size_t (*unsent)(void *ctx);           /* queued and not yet given to the transport */
    void (*read)(void *ctx, int on);       /* start or stop reading */
    int (*flush)(void *ctx);               /* send what can be sent: TORII_OK or an error */
    void (*shut_write)(void *ctx);         /* nothing more after what is queued (half-close) */
};

struct proxy_tun_end {
    const struct proxy_tun_ops *ops;
    void *ctx;
};

/** Endpoint ops over a struct torii_stream (ctx: the stream). */
extern const struct proxy_tun_ops torii_proxy__tun_stream_ops;

enum proxy_tun_side { TUN_A = 0, TUN_B = 1 }; /* A: the client, B: the backend */

enum proxy_tun_why {
    TUN_END_DONE = 0, /* both directions finished (EOF passed on and sent) */
    TUN_END_ERROR,    /* a side failed or reset */
    TUN_END_IDLE,     /* idle_ms without a byte, or an endpoint's write stalled that long */
};

struct proxy_tun_stats {
    uint64_t a_to_b; /* bytes moved from A to B */
    uint64_t b_to_a;
    int64_t t0_us; /* start (monotonic) */
    enum proxy_tun_why why;
};

typedef void (*proxy_tun_done_cb)(void *arg, const struct proxy_tun_stats *st);

struct proxy_tun_opts {
    struct event_base *base;
    uint32_t idle_ms; /* 0: no idle timeout */
    proxy_tun_done_cb done;
    void *arg;
};

struct proxy_tunnel;

/** A tunnel between a and b (borrowed); counted in torii_tunnels_open/_total. Bytes already in
 * an input are moved at the first event (the owner reports one, or calls
 * torii_proxy__tunnel_event(t, side, 0) to start). TORII_ENOMEM. */
int torii_proxy__tunnel_new(const struct proxy_tun_opts *o, struct proxy_tun_end a,
                            struct proxy_tun_end b, struct proxy_tunnel **out) TORII_MUST_USE;
/** An event of one endpoint (TORII_STREAM_* bits; 0: data or room may be there): pump both
 * ways, pass EOFs on, flush, and maybe end (done is called, and t must not be used after). */
void torii_proxy__tunnel_event(struct proxy_tunnel *t, enum proxy_tun_side side, int what);
/** Stop and free (NULL accepted); done is not called. */
void torii_proxy__tunnel_free(struct proxy_tunnel *t);

#endif
