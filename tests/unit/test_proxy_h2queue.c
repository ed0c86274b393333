/* test_proxy_h2queue.c - the worker's queue of HTTP/2 connections holding their output
 * (src/proxy/h2queue.c): held output goes out only in a loop turn with nothing else ready,
 * or by the hold timer when the loop never runs dry; what is never held; a connection freed
 * while held leaves the queue. The connections are marked busy, so that the flush's step
 * only sets `again` (what torii_proxy__run does for a connection already stepping): `again`
 * says when the flush ran. */
#include <sys/socket.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "h2_int.h"
#include "torii/stream.h"

struct fixture {
    struct event_base *base;
    struct proxy_worker pw;
    struct proxy_conn pc;
    struct proxy_h2 h;
    int sv[2];           /* sv[1] readable while `work` runs: a loop that is never idle */
    struct event *work;  /* at the default priority, like every connection's events */
    unsigned turns;      /* work callbacks */
    unsigned flushed_at; /* turns when pc.again was first seen set (0: not yet) */
    unsigned stop_after; /* work drains sv[1] at this many turns (0: never) */
    unsigned max_turns;  /* the loop is broken off after this many */
};

static int pipe_send(struct torii_stream *s, void *arg)
{
    (void)s;
    (void)arg;
    return TORII_OK;
}

/* One loop turn with work ready. A flush seen done here happened in an earlier turn. */
static void work_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    char b;

    (void)what;
    f->turns++;
    if (f->pc.again && f->flushed_at == 0) {
        f->flushed_at = f->turns - 1;
    }
    if (f->stop_after != 0 && f->turns >= f->stop_after) {
        assert_int_equal(read(fd, &b, 1), 1);
    }
    if (f->turns >= f->max_turns) {
        (void)event_base_loopbreak(f->base);
    }
}

static struct fixture *fx_new(int priorities)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    if (priorities > 1) {
        assert_int_equal(event_base_priority_init(f->base, priorities), 0);
    }
    f->pw.base = f->base;
    assert_int_equal(torii_proxy__h2_wake_init(&f->pw), TORII_OK);
    f->pc.pw = &f->pw;
    f->pc.h2 = &f->h;
    f->pc.busy = 1;
    f->pc.st = torii_stream_pipe(NULL, pipe_send, NULL);
    assert_non_null(f->pc.st);
    f->h.pc = &f->pc;
    f->h.n_streams = 3;
    assert_int_equal(evbuffer_add(torii_stream_output(f->pc.st), "frames", 6), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sv), 0);
    f->work = event_new(f->base, f->sv[1], EV_READ | EV_PERSIST, work_cb, f);
    assert_non_null(f->work);
    return f;
}

static void fx_free(struct fixture *f)
{
    torii_proxy__h2_unqueue(&f->h);
    event_free(f->work);
    torii_stream_free(f->pc.st);
    torii_proxy__h2_wake_clear(&f->pw);
    assert_null(f->pw.h2_flush_ev);
    event_base_free(f->base);
    (void)close(f->sv[0]);
    (void)close(f->sv[1]);
    free(f);
}

/* Loop turns until nothing is active any more (the held output went out), at most max_turns
 * of the work event; flushed_at: the work turns before the flush. */
static void fx_run(struct fixture *f, unsigned max_turns)
{
    f->max_turns = max_turns;
    assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
    if (f->pc.again && f->flushed_at == 0) {
        f->flushed_at = f->turns;
    }
}

static void fx_busy(struct fixture *f, unsigned stop_after)
{
    f->stop_after = stop_after;
    assert_int_equal(write(f->sv[0], "x", 1), 1);
    assert_int_equal(event_add(f->work, NULL), 0);
}

/* Five turns with the work event ready: the held output waits for the sixth. */
static void test_hold_until_idle(void **state)
{
    struct fixture *f = fx_new(3);

    (void)state;
    fx_busy(f, 5);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 1);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 1); /* still queued once */
    assert_ptr_equal(f->pw.h2q[H2Q_FLUSH].first, &f->h);
    assert_null(f->h.q[H2Q_FLUSH].next);
    assert_true(event_pending(f->pw.h2_flush_timer, EV_TIMEOUT, NULL));
    fx_run(f, 100);
    assert_int_equal(f->flushed_at, 5);
    assert_null(f->pw.h2q[H2Q_FLUSH].first);
    assert_int_equal(f->h.q[H2Q_FLUSH].in, 0);
    assert_false(event_pending(f->pw.h2_flush_timer, EV_TIMEOUT, NULL));
    assert_false(event_pending(f->pw.h2_flush_ev, EV_READ, NULL));
    fx_free(f);
}

/* A loop that never runs dry: the hold timer sends the output all the same. */
static void test_hold_bounded(void **state)
{
    struct fixture *f = fx_new(3);

    (void)state;
    fx_busy(f, 0);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 1);
    fx_run(f, 1000000);
    assert_true(f->flushed_at > 0);
    assert_null(f->pw.h2q[H2Q_FLUSH].first);
    assert_true(event_pending(f->work, EV_READ, NULL)); /* the work was still there */
    fx_free(f);
}

/* What is sent at once: nothing queued, a full record, no stream open, a closing connection,
 * the flush itself, a base without the idle priority. */
static void test_hold_refused(void **state)
{
    struct fixture *f = fx_new(3);
    struct evbuffer *out = torii_stream_output(f->pc.st);
    static char big[16384];

    (void)state;
    f->h.n_streams = 0;
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    f->h.n_streams = 1;
    f->h.closing = 1;
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    f->h.closing = 0;
    f->h.goaway = 1;
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    f->h.goaway = 0;
    f->pc.phase = PH_CLOSING;
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    f->pc.phase = PH_WAIT;
    f->pw.h2_flushing = 1;
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    f->pw.h2_flushing = 0;
    assert_int_equal(evbuffer_add(out, big, sizeof(big) - 6), 0);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0); /* 16 KiB: a full record */
    assert_int_equal(evbuffer_drain(out, evbuffer_get_length(out)), 0);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0); /* nothing to send */
    assert_null(f->pw.h2q[H2Q_FLUSH].first);
    assert_int_equal(evbuffer_add(out, "x", 1), 0);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 1);
    fx_free(f);

    f = fx_new(1);
    assert_null(f->pw.h2_flush_ev);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 0);
    fx_free(f);
}

/* A connection freed while held leaves the queue (ASan: no use after free), and the flush
 * event that then finds the queue empty cancels the timer. */
static void test_hold_freed(void **state)
{
    struct fixture *f = fx_new(3);
    struct proxy_conn *pc = calloc(1, sizeof(*pc));
    struct proxy_h2 *h = calloc(1, sizeof(*h));

    (void)state;
    assert_non_null(pc);
    assert_non_null(h);
    pc->pw = &f->pw;
    pc->h2 = h;
    pc->st = f->pc.st;
    h->pc = pc;
    h->n_streams = 1;
    assert_int_equal(torii_proxy__h2_hold(pc), 1);
    assert_int_equal(torii_proxy__h2_hold(&f->pc), 1);
    assert_ptr_equal(f->pw.h2q[H2Q_FLUSH].first, h);
    torii_proxy__h2_free(pc);
    assert_null(pc->h2);
    assert_ptr_equal(f->pw.h2q[H2Q_FLUSH].first, &f->h);
    assert_null(f->h.q[H2Q_FLUSH].prev);
    fx_run(f, 10);
    assert_int_equal(f->pc.again, 1);
    assert_false(event_pending(f->pw.h2_flush_timer, EV_TIMEOUT, NULL));
    free(pc);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_until_idle),
        cmocka_unit_test(test_hold_bounded),
        cmocka_unit_test(test_hold_refused),
        cmocka_unit_test(test_hold_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
