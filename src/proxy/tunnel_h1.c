/* tunnel_h1.c - HTTP/1.1 protocol switches through the proxy (RFC 9110 section 7.8): the
 * request's Upgrade checked against the route (torii_proxy_upgrade_decide, headers.c) and
 * forwarded, and on the upstream's 101 the client connection and its upstream become the two
 * endpoints of a tunnel (tunnel.h) until it ends; the exchange's access log line then carries
 * the bytes each way and the whole duration. A non-101 answer stays a normal response.
 * Worker thread only. */
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "session_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/stream.h"
#include "tunnel.h"

int torii_proxy__upgrade_admit(struct proxy_conn *pc, const struct torii_http_req *req)
{
    const struct torii_route *r = pc->x.route;
    struct torii_proxy_upgrade_verdict v;

    torii_proxy_upgrade_decide(req, pc->x.req_body, r->upgrades, r->n_upgrades, &v);
    if (v.what == TORII_PROXY_UPGRADE_REFUSE) {
        torii_proxy__local_error(pc, v.status, v.msg, 1);
        return -1;
    }
    pc->x.upgrade = v.what == TORII_PROXY_UPGRADE_FORWARD ? v.token : (struct torii_slice){0};
    return 0;
}

/* The tunnel ended: its bytes and end into the exchange (logged when the connection closes). */
static void tunnel_h1_done(void *arg, const struct proxy_tun_stats *st)
{
    static const char *const why[] = {"closed", "failed", "idle"};
    struct proxy_conn *pc = arg;

    pc->x.bytes_in += st->a_to_b;
    pc->x.bytes_out += st->b_to_a;
    pc->x.tu1_us = torii_clock_mono_us();
    torii_log(TORII_LOG_DEBUG, "proxy: tunnel %s (client=%s upstream=%s in=%llu out=%llu)",
              why[st->why], pc->ip, pc->x.target != NULL ? pc->x.target->name : "-",
              (unsigned long long)st->a_to_b, (unsigned long long)st->b_to_a);
    pc->dead = 1;
    torii_proxy__run(pc); /* frees pc unless a run is in progress (it frees it then) */
}

/* The upstream's 101 switches to the protocol asked for, and only that one. */
static int tunnel_h1_switch_ok(const struct proxy_conn *pc, const struct torii_http_resp *resp)
{
    struct torii_slice want = pc->x.upgrade;

    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct torii_http_header *h = &resp->headers[i];
        if (torii_slice_eq_ci(h->name, "Upgrade")) {
            return h->value.len == want.len && strncasecmp(h->value.ptr, want.ptr, want.len) == 0;
        }
    }
    return 0;
}

int torii_proxy__tunnel_begin(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    const struct torii_http_resp *resp = torii_http_parser_resp(pc->up->parser);
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    uint32_t idle = pc->pw->cfg->tunnel_idle_timeout_ms;
    struct proxy_tun_opts o = {pc->pw->base, idle, tunnel_h1_done, pc};
    struct proxy_tun_end a = {&torii_proxy__tun_stream_ops, pc->st};
    struct proxy_tun_end b = {&torii_proxy__tun_stream_ops, pc->up->st};
    int rc = TORII_OK;

    if (x->upgrade.len == 0 || !tunnel_h1_switch_ok(pc, resp)) {
        torii_log(TORII_LOG_WARN,
                  "proxy: upstream switched to a protocol not asked for "
                  "(upstream=%s)",
                  x->target != NULL ? x->target->name : "-");
        torii_proxy__up_fail(pc, 502, "upstream switched to a protocol not asked for");
        goto out;
    }
    TORII_TRY(torii_proxy_resp_head_write(out, resp, TORII_PROXY_OUT_NONE, 0, 0, x->minor));
    if (pc->h2s != NULL) {
        a = (struct proxy_tun_end){&torii_proxy__h2s_tun_ops, pc}; /* an HTTP/2 stream */
    }
    TORII_TRY(torii_proxy__tunnel_new(&o, a, b, &pc->tun));
    x->status = resp->status;
    x->resp_started = 1;
    x->bytes_out += evbuffer_get_length(out) - before;
    x->rs = RS_NONE;
    pc->phase = PH_TUNNEL;
    pc->again = 1; /* bytes that came with the head: pumped by the next step */
    torii_proxy__timer_arm(pc, PT_NONE, 0);
    /* A side that stops taking our output for the idle time ends the tunnel (TIMEOUT). */
    torii_stream_timeouts(pc->st, 0, idle);
    torii_stream_timeouts(pc->up->st, 0, idle);
    torii_stream_set_lowat(pc->up->st, PX_LOW_WM);
out:
    return rc;
}

void torii_proxy__tunnel_h1_step(struct proxy_conn *pc)
{
    torii_proxy__tunnel_event(pc->tun, TUN_A, pc->peer_eof ? TORII_STREAM_EOF : 0);
    if (!pc->dead && pc->up_eof) {
        torii_proxy__tunnel_event(pc->tun, TUN_B, TORII_STREAM_EOF);
    }
}

void torii_proxy__tunnel_h1_event(struct proxy_conn *pc, int upstream, int what)
{
    if (what & TORII_STREAM_EOF) {
        if (upstream) {
            pc->up_eof = 1;
        } else {
            pc->peer_eof = 1;
        }
    }
    /* May end the tunnel: pc is freed then, and not touched after. */
    torii_proxy__tunnel_event(pc->tun, upstream ? TUN_B : TUN_A, what);
}
