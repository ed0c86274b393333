/* h2queue.c - the worker's two queues of HTTP/2 client connections (h2_int.h).
 * Woken: a child's response, body or end wakes its connection; every connection woken in a
 * loop turn is stepped, oldest first, by one event at the loop's normal priority (one
 * activation per turn, not per response).
 * Unflushed: a connection whose step queued frames while some of its streams are still open
 * holds them (below H2_HOLD_MAX bytes) until the loop has nothing else to run. One event at
 * the loop's idle priority sends them all, so the responses of the streams that complete over
 * back-to-back turns leave in one TLS record and one send(), as a loop that runs its ready
 * work before its I/O would send them. A timer (H2_HOLD_US) bounds the hold when the loop
 * never idles. Worker thread only. */
#include <event2/event.h>

#include "h2_int.h"
#include "torii/stream.h"

/* Bound on the connections one event steps or flushes; the rest go at its next run. */
#define H2Q_PER_RUN  1024
#define H2_HOLD_MAX  ((size_t)16384) /* one full TLS record: sent at once */
#define H2_HOLD_US   1000            /* longest hold when the loop never idles */
#define H2Q_IDLE_PRI 2               /* the worker's base: 3 priorities, events at 1 */

static void h2q_unlink(struct h2q *q, struct proxy_h2 *h, enum h2q_kind k)
{
    struct h2q_link *l = &h->q[k];

    if (l->prev != NULL) {
        l->prev->q[k].next = l->next;
    } else {
        q->first = l->next;
    }
    if (l->next != NULL) {
        l->next->q[k].prev = l->prev;
    } else {
        q->last = l->prev;
    }
    l->prev = l->next = NULL;
    l->in = 0;
}

/* Append h (not queued yet); 1 when the queue was empty. */
static int h2q_push(struct h2q *q, struct proxy_h2 *h, enum h2q_kind k)
{
    struct h2q_link *l = &h->q[k];
    int was_empty = q->first == NULL;

    l->in = 1;
    l->next = NULL;
    l->prev = q->last;
    if (q->last != NULL) {
        q->last->q[k].next = h;
    } else {
        q->first = h;
    }
    q->last = h;
    return was_empty;
}

void torii_proxy__h2_wake(struct proxy_h2 *h)
{
    struct proxy_worker *pw = h->pc->pw;

    if (h->pc->busy) {
        h->pc->again = 1; /* the connection is stepping: one more round */
        return;
    }
    if (!h->q[H2Q_WAKE].in && h2q_push(&pw->h2q[H2Q_WAKE], h, H2Q_WAKE)) {
        event_active(pw->h2_wake_ev, EV_READ, 0);
    }
}

static void h2q_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *pw = arg;
    struct h2q *q = &pw->h2q[H2Q_WAKE];

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < H2Q_PER_RUN && q->first != NULL; i++) {
        struct proxy_h2 *h = q->first;
        h2q_unlink(q, h, H2Q_WAKE);
        torii_proxy__run(h->pc); /* may free h, or wake others (appended) */
    }
    if (q->first != NULL) {
        event_active(pw->h2_wake_ev, EV_READ, 0);
    }
}

int torii_proxy__h2_hold(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;
    struct proxy_h2 *h = pc->h2;
    size_t unsent;

    /* With no stream left open, no response of this connection can join these frames. */
    if (pw->h2_flushing || pw->h2_flush_ev == NULL || h->n_streams == 0 || h->closing || h->goaway
        || pc->phase == PH_CLOSING) {
        return 0;
    }
    unsent = torii_stream_unsent(h->pc->st);
    if (unsent == 0 || unsent >= H2_HOLD_MAX) {
        return 0;
    }
    if (!h->q[H2Q_FLUSH].in && h2q_push(&pw->h2q[H2Q_FLUSH], h, H2Q_FLUSH)) {
        const struct timeval tv = {0, H2_HOLD_US};
        event_active(pw->h2_flush_ev, EV_READ, 0);
        (void)evtimer_add(pw->h2_flush_timer, &tv); /* no room: the idle event still runs */
    }
    return 1;
}

/* The loop ran out of other work (or the hold timer fired): every held output goes out. */
static void h2q_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *pw = arg;
    struct h2q *q = &pw->h2q[H2Q_FLUSH];

    (void)fd;
    (void)what;
    pw->h2_flushing = 1;
    for (unsigned i = 0; i < H2Q_PER_RUN && q->first != NULL; i++) {
        struct proxy_h2 *h = q->first;
        h2q_unlink(q, h, H2Q_FLUSH);
        torii_proxy__run(h->pc); /* flushes now (pw->h2_flushing); may free h */
    }
    pw->h2_flushing = 0;
    if (q->first != NULL) {
        event_active(pw->h2_flush_ev, EV_READ, 0);
    } else {
        (void)evtimer_del(pw->h2_flush_timer);
        event_del_noblock(pw->h2_flush_ev); /* the other of the two may be active too */
    }
}

int torii_proxy__h2_wake_init(struct proxy_worker *pw)
{
    if (pw->h2_wake_ev == NULL) {
        pw->h2_wake_ev = event_new(pw->base, -1, 0, h2q_wake_cb, pw);
    }
    if (pw->h2_wake_ev == NULL) {
        return TORII_ENOMEM;
    }
    if (!pw->h2_hold_tried) {
        /* No idle priority on this base (3 priorities): frames are sent at once. */
        pw->h2_hold_tried = 1;
        struct event *ev = event_new(pw->base, -1, 0, h2q_flush_cb, pw);
        struct event *tm = evtimer_new(pw->base, h2q_flush_cb, pw);
        if (ev == NULL || tm == NULL) {
            event_free(ev);
            event_free(tm);
            return TORII_ENOMEM;
        }
        if (event_priority_set(ev, H2Q_IDLE_PRI) == 0) {
            pw->h2_flush_ev = ev;
            pw->h2_flush_timer = tm;
        } else {
            event_free(ev);
            event_free(tm);
        }
    }
    return TORII_OK;
}

void torii_proxy__h2_unqueue(struct proxy_h2 *h)
{
    struct proxy_worker *pw = h->pc->pw;

    for (enum h2q_kind k = 0; k < H2Q_N; k++) {
        if (h->q[k].in) {
            h2q_unlink(&pw->h2q[k], h, k);
        }
    }
}

void torii_proxy__h2_wake_clear(struct proxy_worker *pw)
{
    for (enum h2q_kind k = 0; k < H2Q_N; k++) {
        while (pw->h2q[k].first != NULL) {
            h2q_unlink(&pw->h2q[k], pw->h2q[k].first, k);
        }
    }
    if (pw->h2_wake_ev != NULL) {
        event_free(pw->h2_wake_ev);
        pw->h2_wake_ev = NULL;
    }
    if (pw->h2_flush_ev != NULL) {
        event_free(pw->h2_flush_ev);
        event_free(pw->h2_flush_timer);
        pw->h2_flush_ev = pw->h2_flush_timer = NULL;
    }
}
