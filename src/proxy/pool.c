/* pool.c - upstream connections of a worker: a new one per target (plain or TLS), the idle
 * keep-alive pool of each target (most recent first, at most backend.max_idle; an idle one
 * that reads anything, closes or times out is dropped), and the passive health of targets
 * (a failed one is skipped PX_DOWN_MS) behind the round-robin pick. Worker thread only. */
#include <stdlib.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

#include "h2up_int.h"
#include "session_int.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/stream.h"

static int64_t px_now_ms(void)
{
    return torii_clock_mono_us() / 1000;
}

void torii_proxy__upstream_free(struct proxy_upstream *up)
{
    if (up == NULL) {
        return;
    }
    torii_h2up__stream_free(up->h2);
    torii_stream_free(up->st);
    torii_http_parser_free(up->parser);
    free(up);
}

static void pool_unlink(struct proxy_upstream *up)
{
    struct proxy_target_state *ts = &up->pw->targets[up->t->index];

    if (up->prev != NULL) {
        up->prev->next = up->next;
    } else {
        ts->idle = up->next;
    }
    if (up->next != NULL) {
        up->next->prev = up->prev;
    }
    up->prev = NULL;
    up->next = NULL;
    ts->n_idle--;
}

/* An idle pooled connection that reads anything, closes or times out is dropped. */
static void pool_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_upstream *up = arg;

    (void)st;
    (void)what;
    pool_unlink(up);
    torii_proxy__upstream_free(up);
}

void torii_proxy__pool_put(struct proxy_upstream *up)
{
    struct proxy_target_state *ts = &up->pw->targets[up->t->index];

    if (up->h2 != NULL) {
        torii_proxy__upstream_free(up); /* the stream ends; its connection stays (h2up.c) */
        return;
    }
    if (!up->connected || ts->n_idle >= up->be->max_idle
        || evbuffer_get_length(torii_stream_input(up->st)) > 0 || torii_stream_unsent(up->st) > 0) {
        torii_proxy__upstream_free(up);
        return;
    }
    up->pc = NULL;
    torii_http_parser_set_no_body(up->parser, 0);
    torii_stream_setcb(up->st, pool_cb, up);
    torii_stream_timeouts(up->st, up->be->idle_ms, 0);
    torii_stream_read(up->st, 1);
    up->next = ts->idle;
    up->prev = NULL;
    if (ts->idle != NULL) {
        ts->idle->prev = up;
    }
    ts->idle = up;
    ts->n_idle++;
}

void torii_proxy__target_mark_down(struct proxy_worker *pw, const struct torii_route_target *t)
{
    pw->targets[t->index].down_until_ms = px_now_ms() + PX_DOWN_MS;
}

const struct torii_route_target *torii_proxy__target_pick(struct proxy_worker *pw,
                                                          const struct torii_route *r)
{
    const struct torii_route_backend *be = &r->backend;
    unsigned start = pw->rr[r->index]++;
    int64_t now = 0; /* read once, and only when a target has been marked down */

    TORII_ASSERT(be->n_targets > 0); /* routes.c refuses an empty targets array */

    for (size_t i = 0; i < be->n_targets; i++) {
        const struct torii_route_target *t = &be->targets[(start + i) % be->n_targets];
        int64_t until = pw->targets[t->index].down_until_ms;
        if (until == 0 || until <= (now != 0 ? now : (now = px_now_ms()))) {
            return t;
        }
    }
    return &be->targets[start % be->n_targets]; /* all down: try anyway */
}

/* A new connection to target t of route r (connecting, TLS when the target says so). */
static int upstream_new(struct proxy_worker *pw, const struct torii_route *r,
                        const struct torii_route_target *t, struct proxy_upstream **out)
{
    struct proxy_upstream *up = torii_xcalloc(1, sizeof(*up));
    SSL *ssl = NULL;
    int rc = TORII_OK;

    up->pw = pw;
    up->be = &r->backend;
    up->t = t;
    TORII_TRY(torii_http_parser_new_response(&pw->ulim, &up->parser));
    torii_http_parser_set_body_moved(up->parser, 1); /* pump.c moves Content-Length bodies */
    if (t->tls) {
        TORII_ENSURE(r->backend.tls_ctx != NULL, TORII_ETLS);
        ssl = torii_tls_upstream_conn_new(r->backend.tls_ctx, t->host);
        TORII_ENSURE(ssl != NULL, TORII_ETLS);
    }
    up->st = torii_stream_connect(pw->base, (const struct sockaddr *)&t->addr, t->addrlen, ssl);
    ssl = NULL; /* the stream owns it, also on failure */
    TORII_ENSURE(up->st != NULL, TORII_EIO);
    torii_stream_set_lowat(up->st, PX_LOW_WM);
    *out = up;
    up = NULL;
out:
    if (ssl != NULL) {
        SSL_free(ssl);
    }
    torii_proxy__upstream_free(up);
    return rc;
}

int torii_proxy__upstream_get(struct proxy_worker *pw, const struct torii_route *r,
                              const struct torii_route_target *t, int allow_pool,
                              struct proxy_upstream **out)
{
    struct proxy_target_state *ts = &pw->targets[t->index];
    struct proxy_upstream *up = NULL;
    int rc = TORII_OK;

    if (r->backend.protocol != TORII_ROUTE_HTTP1) {
        TORII_TRY(torii_h2up__get(pw, r, t, &up));
    } else if (allow_pool && ts->idle != NULL) {
        up = ts->idle;
        pool_unlink(up);
        up->reused = 1;
    } else {
        TORII_TRY(upstream_new(pw, r, t, &up));
    }
    *out = up;
    up = NULL;
out:
    torii_proxy__upstream_free(up);
    return rc;
}

void torii_proxy__pool_clear(struct proxy_worker *pw)
{
    for (size_t i = 0; pw->targets != NULL && i < pw->n_targets; i++) {
        struct proxy_upstream *up = pw->targets[i].idle;

        /* Detach the whole list, then free it. */
        pw->targets[i].idle = NULL;
        pw->targets[i].n_idle = 0;
        while (up != NULL) {
            struct proxy_upstream *next = up->next;
            torii_proxy__upstream_free(up);
            up = next;
        }
    }
    torii_h2up__clear(pw);
}
