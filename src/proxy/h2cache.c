/* h2cache.c - what an HTTP/2 stream costs to set up, kept for the next stream (h2_int.h):
 * an ended stream leaves its struct h2_stream with its three evbuffers, its field store and its
 * response parser, and its child leaves its struct proxy_conn with its timer event and its pipe
 * stream (rearmed for the next stream, torii_stream_pipe_rearm), in two per-worker free lists of at
 * most PX_H2_FREE each, shared by every connection of the worker: a new stream (100 at a time on
 * one connection, or one at a time on many) then costs no allocation for these. Nothing of a
 * request survives: the buffers are drained, the parser reset, the structures cleared (a child's
 * timer event may stay pending, with no mode: it then fires for nothing, and the next stream arms
 * it without an event_add). The lists are freed with the worker (torii_proxy__h2_cache_clear).
 * Worker thread only. */
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "h2_int.h"
#include "torii/mem.h"
#include "torii/stream.h"

/* The buffers, the field store and the parser a stream keeps across reuse. */
struct h2s_kept {
    struct h2s_fields *fields;
    struct evbuffer *cookie, *body, *held;
    struct torii_http_parser *rp;
};

static void h2s_keep(const struct h2_stream *st, struct h2s_kept *k)
{
    *k = (struct h2s_kept){st->fields, st->cookie, st->body, st->held, st->rp};
}

static void h2s_kept_free(struct h2s_kept *k)
{
    struct evbuffer *b[3] = {k->cookie, k->body, k->held};

    for (size_t i = 0; i < 3; i++) {
        if (b[i] != NULL) {
            evbuffer_free(b[i]);
        }
    }
    torii_proxy__h2f_free(k->fields);
    torii_http_parser_free(k->rp);
}

struct h2_stream *torii_proxy__h2s_shell(struct proxy_worker *pw)
{
    struct h2_stream *st = pw->h2s_free;
    struct h2s_kept k;

    if (st != NULL) {
        pw->h2s_free = st->next;
        pw->n_h2s_free--;
        h2s_keep(st, &k);
        memset(st, 0, sizeof(*st));
    } else {
        st = torii_xcalloc(1, sizeof(*st));
        k = (struct h2s_kept){calloc(1, sizeof(*k.fields)), evbuffer_new(), evbuffer_new(),
                              evbuffer_new(), NULL};
        if (k.fields == NULL || k.cookie == NULL || k.body == NULL || k.held == NULL) {
            h2s_kept_free(&k);
            free(st);
            return NULL;
        }
    }
    st->fields = k.fields;
    st->cookie = k.cookie;
    st->body = k.body;
    st->held = k.held;
    st->rp = k.rp;
    return st;
}

void torii_proxy__h2s_shell_put(struct proxy_worker *pw, struct h2_stream *st)
{
    struct h2s_kept k;
    struct evbuffer *b[3] = {st->cookie, st->body, st->held};
    int whole = st->fields != NULL;

    h2s_keep(st, &k);
    if (whole) {
        torii_proxy__h2f_clear(st->fields);
    }
    for (size_t i = 0; i < 3; i++) {
        size_t n = b[i] != NULL ? evbuffer_get_length(b[i]) : 0;
        if (b[i] == NULL) {
            whole = 0;
        } else if (n > 0) { /* usually empty by now */
            (void)evbuffer_drain(b[i], n);
        }
    }
    if (!whole || pw->n_h2s_free >= PX_H2_FREE) {
        h2s_kept_free(&k);
        free(st);
        return;
    }
    if (k.rp != NULL && st->rp_fed) {
        torii_http_parser_reset(k.rp); /* else as it was reset (its settings are set anew) */
    }
    st->next = pw->h2s_free;
    pw->h2s_free = st;
    pw->n_h2s_free++;
}

struct proxy_conn *torii_proxy__h2c_take(struct proxy_worker *pw)
{
    struct proxy_conn *pc = pw->h2c_free;
    struct event *timer;
    struct torii_stream *pipe;
    struct torii_http_parser *rp;
    int64_t fire;

    if (pc == NULL) {
        return NULL;
    }
    pw->h2c_free = pc->next;
    pw->n_h2c_free--;
    timer = pc->timer;
    pipe = pc->st;
    rp = pc->rp;
    fire = pc->t_fire_us;
    memset(pc, 0, sizeof(*pc));
    pc->timer = timer;
    pc->st = pipe;
    pc->rp = rp;
    pc->t_fire_us = fire; /* still pending: arming a later deadline costs no event_add */
    if (rp != NULL) {
        torii_proxy__rp_arm(pc);
    }
    return pc;
}

int torii_proxy__h2c_put(struct proxy_worker *pw, struct proxy_conn *pc)
{
    if (pw->n_h2c_free >= PX_H2_FREE || pc->timer == NULL) {
        return 0;
    }
    /* Its timer event stays as it is: firing in the list it finds no mode and does nothing
     * (session.c), and the next stream's deadline is usually later (timer_arm). */
    pc->tmode = PT_NONE;
    if (pc->rp != NULL) {
        torii_http_parser_reset(pc->rp); /* it may have stopped mid-message */
    }
    pc->next = pw->h2c_free;
    pw->h2c_free = pc;
    pw->n_h2c_free++;
    return 1;
}

void torii_proxy__h2_cache_clear(struct proxy_worker *pw)
{
    while (pw->h2s_free != NULL) {
        struct h2_stream *st = pw->h2s_free;
        struct h2s_kept k;
        pw->h2s_free = st->next;
        h2s_keep(st, &k);
        h2s_kept_free(&k);
        free(st);
    }
    pw->n_h2s_free = 0;
    while (pw->h2c_free != NULL) {
        struct proxy_conn *pc = pw->h2c_free;
        pw->h2c_free = pc->next;
        event_free(pc->timer);
        torii_stream_free(pc->st);
        torii_http_parser_free(pc->rp);
        free(pc);
    }
    pw->n_h2c_free = 0;
    torii_proxy__h2_wake_clear(pw);
}
