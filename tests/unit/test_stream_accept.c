/* test_stream_accept.c - an accepted stream's first read and last write, against a raw peer
 * socket the test drives itself (non-blocking OpenSSL on the socket, no torii_stream):
 *   - torii_stream_read_ready() reads a ClientHello that came with the connection in the
 *     loop pass that follows, and a stream with nothing to read just waits for its input;
 *   - an accepted TLS stream's close_notify is followed at once by the TCP FIN (the socket
 *     is still open), in order after the last data; an outbound stream's close_notify is not
 *     (its peer sees the FIN with the close only).
 * Every wait is bounded: loops step in short passes until a condition holds or WAIT_MS have
 * passed, and the condition is asserted afterwards. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "testclock.h"
#include "testpki.h"
#include "torii/stream.h"

#define WAIT_MS 10000 /* generous: a loaded machine finishes far below */

struct fx {
    struct event_base *base;
    SSL_CTX *sctx; /* server side: the test certificate */
    SSL_CTX *cctx; /* client side: no verification (not what is tested here) */
    int lfd;
    struct sockaddr_in addr;
    int raw;      /* the raw peer socket */
    SSL *raw_ssl; /* TLS on raw, driven by the test */
    struct torii_stream *s;
    int events; /* OR of every mask the stream reported */
    int n_cb;
    struct evbuffer *got;
};

static void stream_cb(struct torii_stream *s, int what, void *arg)
{
    struct fx *fx = arg;

    fx->events |= what;
    fx->n_cb++;
    assert_int_equal(evbuffer_add_buffer(fx->got, torii_stream_input(s)), 0);
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    const char *dns[] = {"localhost"};
    struct testpki_opts o = {
        .key_type = EVP_PKEY_EC, .bits = 256, .cn = "localhost", .dns = dns, .n_dns = 1};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    socklen_t len = sizeof(fx->addr);

    if (fx == NULL || testpki_make(&o, &cert, &key) != 0) {
        return -1;
    }
    fx->raw = -1;
    fx->base = event_base_new();
    fx->got = evbuffer_new();
    fx->sctx = SSL_CTX_new(TLS_server_method());
    fx->cctx = SSL_CTX_new(TLS_client_method());
    fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    fx->addr.sin_family = AF_INET;
    fx->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fx->base == NULL || fx->got == NULL || fx->sctx == NULL || fx->cctx == NULL
        || SSL_CTX_use_certificate(fx->sctx, cert) != 1
        || SSL_CTX_use_PrivateKey(fx->sctx, key) != 1 || fx->lfd < 0
        || bind(fx->lfd, (struct sockaddr *)&fx->addr, sizeof(fx->addr)) != 0
        || getsockname(fx->lfd, (struct sockaddr *)&fx->addr, &len) != 0
        || listen(fx->lfd, 8) != 0) {
        return -1;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    torii_stream_free(fx->s);
    SSL_free(fx->raw_ssl);
    if (fx->raw >= 0) {
        (void)close(fx->raw);
    }
    (void)close(fx->lfd);
    SSL_CTX_free(fx->sctx);
    SSL_CTX_free(fx->cctx);
    evbuffer_free(fx->got);
    event_base_free(fx->base);
    free(fx);
    ERR_clear_error();
    return 0;
}

/* The raw peer: a non-blocking socket connected to the listener (client) or accepted from
 * it (server), with an SSL in that role. */
static void raw_client(struct fx *fx)
{
    fx->raw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fx->raw >= 0);
    assert_int_equal(connect(fx->raw, (struct sockaddr *)&fx->addr, sizeof(fx->addr)), 0);
    assert_int_equal(evutil_make_socket_nonblocking(fx->raw), 0);
    fx->raw_ssl = SSL_new(fx->cctx);
    assert_non_null(fx->raw_ssl);
    assert_int_equal(SSL_set_fd(fx->raw_ssl, fx->raw), 1);
    SSL_set_connect_state(fx->raw_ssl);
}

static int accept_fd(struct fx *fx)
{
    struct pollfd p = {.fd = fx->lfd, .events = POLLIN};
    int fd;

    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    fd = accept(fx->lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
    return fd;
}

/* One step of the raw side's handshake: 1 done, 0 wants I/O. */
static int raw_handshake(struct fx *fx)
{
    int r = SSL_do_handshake(fx->raw_ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(fx->raw_ssl, r);

    assert_true(e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    return r == 1;
}

/* Drive both handshakes until both ends are done (bounded). */
static void handshake(struct fx *fx)
{
    int64_t end = testclock_now_ms() + WAIT_MS;
    int done = 0;

    while ((!done || !torii_stream_established(fx->s)) && testclock_now_ms() < end) {
        done = done || raw_handshake(fx);
        assert_int_not_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), -1);
        if (!done || !torii_stream_established(fx->s)) {
            struct pollfd p = {.fd = fx->raw, .events = POLLIN};
            (void)poll(&p, 1, 5);
        }
    }
    assert_true(done);
    assert_true(torii_stream_established(fx->s));
}

/* Wait (bounded) for the raw socket to be readable, then: what recv() with MSG_PEEK says. */
static ssize_t raw_peek_after_wait(struct fx *fx)
{
    struct pollfd p = {.fd = fx->raw, .events = POLLIN};
    char b;

    (void)poll(&p, 1, WAIT_MS);
    return recv(fx->raw, &b, 1, MSG_PEEK | MSG_DONTWAIT);
}

/* Read TLS data on the raw side until close_notify (bounded); what came before it is
 * appended to out. */
static void raw_read_to_close_notify(struct fx *fx, char *out, size_t cap)
{
    int64_t end = testclock_now_ms() + WAIT_MS;
    size_t n = 0;

    while (testclock_now_ms() < end) {
        int r = SSL_read(fx->raw_ssl, out + n, (int)(cap - n - 1));
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (SSL_get_error(fx->raw_ssl, r) == SSL_ERROR_ZERO_RETURN) {
            break;
        }
        assert_int_equal(SSL_get_error(fx->raw_ssl, r), SSL_ERROR_WANT_READ);
        struct pollfd p = {.fd = fx->raw, .events = POLLIN};
        (void)poll(&p, 1, 50);
    }
    out[n] = '\0';
    assert_true(SSL_get_shutdown(fx->raw_ssl) & SSL_RECEIVED_SHUTDOWN);
}

static void test_read_ready_reads_the_waiting_client_hello(void **state)
{
    struct fx *fx = *state;
    struct pollfd p;

    raw_client(fx);
    assert_int_equal(raw_handshake(fx), 0); /* the ClientHello is on its way */
    fx->s = torii_stream_accept(fx->base, accept_fd(fx), SSL_new(fx->sctx));
    assert_non_null(fx->s);
    torii_stream_setcb(fx->s, stream_cb, fx);
    p = (struct pollfd){.fd = fx->raw, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0); /* nothing answered yet */
    torii_stream_read_ready(fx->s);
    assert_int_equal(torii_stream_reading(fx->s), 1);
    assert_int_not_equal(event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), -1);
    /* The server's flight left in that pass: the raw client can go on. */
    p = (struct pollfd){.fd = fx->raw, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    handshake(fx);
    assert_int_equal(fx->events & TORII_STREAM_ERROR, 0);
}

static void test_read_ready_without_input_waits_for_it(void **state)
{
    struct fx *fx = *state;
    int64_t end;

    fx->raw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fx->raw >= 0);
    assert_int_equal(connect(fx->raw, (struct sockaddr *)&fx->addr, sizeof(fx->addr)), 0);
    fx->s = torii_stream_accept(fx->base, accept_fd(fx), NULL);
    assert_non_null(fx->s);
    torii_stream_setcb(fx->s, stream_cb, fx);
    torii_stream_read_ready(fx->s);
    assert_int_not_equal(event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), -1);
    assert_int_equal(fx->n_cb, 0); /* nothing to report: no EOF, no error */
    assert_int_equal(torii_stream_reading(fx->s), 1);
    assert_int_equal(send(fx->raw, "late", 4, MSG_NOSIGNAL), 4);
    end = testclock_now_ms() + WAIT_MS;
    while (evbuffer_get_length(fx->got) < 4 && testclock_now_ms() < end) {
        assert_int_not_equal(event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), -1);
        struct pollfd p = {.fd = fx->raw, .events = 0};
        (void)poll(&p, 1, 5);
    }
    assert_int_equal(evbuffer_get_length(fx->got), 4);
    assert_memory_equal(evbuffer_pullup(fx->got, -1), "late", 4);
    assert_int_equal(fx->events, TORII_STREAM_READ);
}

static void test_accepted_close_notify_comes_with_the_fin(void **state)
{
    struct fx *fx = *state;
    char got[64];

    raw_client(fx);
    fx->s = torii_stream_accept(fx->base, accept_fd(fx), SSL_new(fx->sctx));
    assert_non_null(fx->s);
    torii_stream_setcb(fx->s, stream_cb, fx);
    torii_stream_read(fx->s, 1);
    handshake(fx);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->s), "last words", 10), 0);
    torii_stream_shutdown(fx->s);
    assert_int_equal(torii_stream_flush(fx->s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->s), 0);
    raw_read_to_close_notify(fx, got, sizeof(got));
    assert_string_equal(got, "last words");
    /* The stream still exists, and its socket is open: the FIN came with close_notify. */
    assert_int_equal(raw_peek_after_wait(fx), 0);
}

static void test_outbound_close_notify_leaves_the_fin_to_the_close(void **state)
{
    struct fx *fx = *state;
    char got[64];
    int64_t end = testclock_now_ms() + WAIT_MS;

    fx->s = torii_stream_connect(fx->base, (struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                 SSL_new(fx->cctx));
    assert_non_null(fx->s);
    torii_stream_setcb(fx->s, stream_cb, fx);
    fx->raw = accept_fd(fx);
    fx->raw_ssl = SSL_new(fx->sctx);
    assert_non_null(fx->raw_ssl);
    assert_int_equal(SSL_set_fd(fx->raw_ssl, fx->raw), 1);
    SSL_set_accept_state(fx->raw_ssl);
    while (!(fx->events & TORII_STREAM_CONNECTED) && testclock_now_ms() < end) {
        (void)raw_handshake(fx);
        assert_int_not_equal(event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), -1);
        struct pollfd p = {.fd = fx->raw, .events = POLLIN};
        (void)poll(&p, 1, 5);
    }
    assert_true(fx->events & TORII_STREAM_CONNECTED);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->s), "request", 7), 0);
    torii_stream_shutdown(fx->s);
    assert_int_equal(torii_stream_flush(fx->s), TORII_OK);
    raw_read_to_close_notify(fx, got, sizeof(got));
    assert_string_equal(got, "request");
    assert_int_equal(recv(fx->raw, got, 1, MSG_PEEK | MSG_DONTWAIT), -1); /* no FIN yet */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    torii_stream_free(fx->s);
    fx->s = NULL;
    /* The close ends it: a FIN, or a reset when the tickets the raw server sent were unread. */
    if (raw_peek_after_wait(fx) != 0) {
        assert_int_equal(errno, ECONNRESET);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_ready_reads_the_waiting_client_hello, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_ready_without_input_waits_for_it, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_accepted_close_notify_comes_with_the_fin, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_outbound_close_notify_leaves_the_fin_to_the_close,
                                        fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
