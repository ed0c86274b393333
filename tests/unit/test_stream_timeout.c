/* test_stream_timeout.c - a stream's read or write timeout set back to 0 (none) stays off:
 *   - an outbound stream's connect deadline is gone once the owner sets no read timeout, also
 *     after input arrived (what an HTTP/2 backend connection does: torii_stream_timeouts
 *     (connect_ms, connect_ms), then (0, 0) once it carries streams);
 *   - a write timeout set back to 0 stays off while the output blocks again after progress;
 *   - and the same streams still time out when a timeout is set (the test can fail).
 * libevent re-arms a persistent event with the last period it was added with after every
 * activation, even once it was added without one: before the fix, these streams reported
 * TIMEOUT one old period after their next input or write progress.
 * Each wait is bounded: the loop runs in short passes until a condition holds or a limit
 * passes, and the condition is asserted afterwards. The checks for "no TIMEOUT" watch for 8
 * times the old period; a slow machine only makes such a check weaker, never fail. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
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

#include "testclock.h"
#include "torii/stream.h"

#define OLD_MS   100                        /* the timeout that is set, then cleared */
#define QUIET_MS 800                        /* how long a cleared timeout is watched */
#define WAIT_MS  10000                      /* bound of a wait for something that must happen */
#define BIG      ((size_t)16 * 1024 * 1024) /* more than the socket buffers hold */

struct fx {
    struct event_base *base;
    int lfd;
    struct sockaddr_in addr;
    int raw; /* the peer, driven by the test */
    struct torii_stream *s;
    int n_timeout, n_connected, n_read, n_bad;
};

static void stream_cb(struct torii_stream *s, int what, void *arg)
{
    struct fx *fx = arg;

    fx->n_timeout += (what & TORII_STREAM_TIMEOUT) != 0;
    fx->n_connected += (what & TORII_STREAM_CONNECTED) != 0;
    fx->n_bad += (what & (TORII_STREAM_EOF | TORII_STREAM_ERROR)) != 0;
    if (what & TORII_STREAM_READ) {
        fx->n_read++;
        (void)evbuffer_drain(torii_stream_input(s), evbuffer_get_length(torii_stream_input(s)));
    }
}

/* Run the loop in passes of at most 20 ms until *flag != 0 or ms have passed. */
static void run_until(struct fx *fx, const int *flag, int64_t ms)
{
    int64_t end = testclock_now_ms() + ms;
    struct timeval tv = {0, 20000};

    while ((flag == NULL || *flag == 0) && testclock_now_ms() < end) {
        assert_int_equal(event_base_loopexit(fx->base, &tv), 0);
        assert_int_not_equal(event_base_dispatch(fx->base), -1);
    }
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    socklen_t len = sizeof(fx->addr);
    int rcvbuf = 65536; /* inherited by the accepted peer: the output blocks sooner */

    assert_non_null(fx);
    fx->base = event_base_new();
    fx->raw = -1;
    fx->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_non_null(fx->base);
    assert_true(fx->lfd >= 0);
    fx->addr.sin_family = AF_INET;
    fx->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(setsockopt(fx->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(bind(fx->lfd, (struct sockaddr *)&fx->addr, sizeof(fx->addr)), 0);
    assert_int_equal(listen(fx->lfd, 4), 0);
    assert_int_equal(getsockname(fx->lfd, (struct sockaddr *)&fx->addr, &len), 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    torii_stream_free(fx->s);
    if (fx->raw >= 0) {
        (void)close(fx->raw);
    }
    (void)close(fx->lfd);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

/* An outbound plain stream to the listener, connected, the peer accepted into fx->raw, with
 * the connect deadline of OLD_MS still set and reading on. */
static void fx_connect(struct fx *fx)
{
    fx->s = torii_stream_connect(fx->base, (struct sockaddr *)&fx->addr, sizeof(fx->addr), NULL);
    assert_non_null(fx->s);
    torii_stream_setcb(fx->s, stream_cb, fx);
    torii_stream_timeouts(fx->s, OLD_MS, OLD_MS);
    torii_stream_read(fx->s, 1);
    fx->raw = accept(fx->lfd, NULL, NULL);
    assert_true(fx->raw >= 0);
    run_until(fx, &fx->n_connected, WAIT_MS);
    assert_int_equal(fx->n_connected, 1);
}

/* The peer sends a few bytes; the stream reads them. */
static void peer_says(struct fx *fx)
{
    int before = fx->n_read;

    assert_int_equal(send(fx->raw, "ping", 4, 0), 4);
    run_until(fx, &fx->n_read, WAIT_MS); /* n_read was reset to 0 by the caller */
    assert_true(fx->n_read > before);
}

static void test_read_timeout_cleared_after_connect_stays_off(void **state)
{
    struct fx *fx = *state;

    fx_connect(fx);
    torii_stream_timeouts(fx->s, 0, 0); /* what an HTTP/2 connection with streams does */
    fx->n_read = 0;
    peer_says(fx);
    run_until(fx, &fx->n_timeout, QUIET_MS);
    assert_int_equal(fx->n_timeout, 0);
    /* Input again, then silence: still no timeout. */
    fx->n_read = 0;
    peer_says(fx);
    run_until(fx, &fx->n_timeout, QUIET_MS);
    assert_int_equal(fx->n_timeout, 0);
    assert_int_equal(fx->n_bad, 0);
}

static void test_read_timeout_set_again_fires(void **state)
{
    struct fx *fx = *state;
    int64_t t0;

    fx_connect(fx);
    torii_stream_timeouts(fx->s, 0, 0);
    fx->n_read = 0;
    peer_says(fx);
    t0 = testclock_now_ms(); /* before the deadline is armed: a lower bound that always holds */
    torii_stream_timeouts(fx->s, OLD_MS, 0);
    run_until(fx, &fx->n_timeout, WAIT_MS);
    assert_int_equal(fx->n_timeout, 1);
    assert_true(testclock_now_ms() - t0 >= OLD_MS - 10);
}

/* Fill the output until the socket blocks (the peer does not read). */
static void fill_until_blocked(struct fx *fx, unsigned char *data)
{
    assert_int_equal(evbuffer_add(torii_stream_output(fx->s), data, BIG), 0);
    assert_int_equal(torii_stream_flush(fx->s), TORII_OK);
    assert_true(torii_stream_unsent(fx->s) > 0);
}

/* The peer takes some of the output, until the stream's write event saw progress (not all:
 * the output stays blocked). */
static void peer_takes_some(struct fx *fx)
{
    static unsigned char sink[65536];
    size_t before = torii_stream_unsent(fx->s);
    int64_t end = testclock_now_ms() + WAIT_MS;

    while (torii_stream_unsent(fx->s) == before && testclock_now_ms() < end) {
        (void)recv(fx->raw, sink, sizeof(sink), MSG_DONTWAIT);
        run_until(fx, NULL, 20);
    }
    assert_true(torii_stream_unsent(fx->s) < before);
    assert_true(torii_stream_unsent(fx->s) > 0); /* still blocked */
}

static void test_write_timeout_cleared_stays_off_after_progress(void **state)
{
    struct fx *fx = *state;
    unsigned char *data = calloc(1, BIG);

    assert_non_null(data);
    fx_connect(fx);
    torii_stream_timeouts(fx->s, 0, OLD_MS);
    fill_until_blocked(fx, data);
    run_until(fx, &fx->n_timeout, WAIT_MS);
    assert_int_equal(fx->n_timeout, 1); /* the write timeout works */
    fx->n_timeout = 0;
    torii_stream_timeouts(fx->s, 0, 0);
    peer_takes_some(fx);
    run_until(fx, &fx->n_timeout, QUIET_MS);
    assert_int_equal(fx->n_timeout, 0);
    assert_int_equal(fx->n_bad, 0);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_timeout_cleared_after_connect_stays_off, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout_set_again_fires, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_write_timeout_cleared_stays_off_after_progress,
                                        fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
