/* test_stream.c - torii_stream over real loopback TCP sockets and a real event_base: plain
 * and TLS (a self-signed P-256 certificate made here, verified by the client), CONNECTED,
 * data both ways, multi-MiB transfers with back-pressure (the receiver toggles reading, the
 * sender only queues more on WRITE), output queued before CONNECTED, EOF (peer freed, peer
 * half-closed, close_notify from torii_stream_shutdown after a large output, TLS without
 * close_notify), ERROR (refused connect, a peer that does not speak TLS, a client that sends
 * garbage), read, write and connect timeouts, and the unsent accounting. A raw TLS server on
 * memory BIOs covers what a torii_stream peer never does: a record split across reads and
 * 0.5-RTT data right behind the server's flight.
 *
 * Every wait is bounded: RUN_UNTIL() breaks the loop with a timer. A callback that
 * re-activates its own event would never give that timer a chance on a default base, so the
 * fixtures' bases cap the callbacks per dispatch (event_config_set_max_dispatch_interval);
 * only test_tls_partial_record_does_not_stall_loop uses a default base, like the daemon's,
 * and there a helper thread guarantees the end. A watchdog alarm() ends a hung run. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "testclock.h"
#include "torii/log.h"
#include "torii/stream.h"

#define MiB ((size_t)1024 * 1024)

/* ---- time and loop helpers ---------------------------------------------------------------- */

static void ms_to_tv(struct timeval *tv, int64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static void break_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    (void)event_base_loopbreak(arg);
}

/* One pass of the loop: returns after the active callbacks ran, or after ms at the latest. */
static void loop_once(struct event_base *base, int64_t ms)
{
    struct event *t = evtimer_new(base, break_cb, base);
    struct timeval tv;

    assert_non_null(t);
    ms_to_tv(&tv, ms > 0 ? ms : 0);
    assert_int_equal(evtimer_add(t, &tv), 0);
    assert_int_not_equal(event_base_loop(base, EVLOOP_ONCE), -1);
    event_free(t);
}

/* Run base until cond holds or ms have passed; the caller asserts cond afterwards. */
#define RUN_UNTIL(base, cond, ms)                                                                  \
    do {                                                                                           \
        int64_t run_end_ = testclock_now_ms() + (ms);                                              \
        while (!(cond) && testclock_now_ms() < run_end_) {                                         \
            loop_once((base), run_end_ - testclock_now_ms());                                      \
        }                                                                                          \
    } while (0)

/* Run base for ms, whatever happens. */
static void run_for(struct event_base *base, int64_t ms)
{
    int64_t end = testclock_now_ms() + ms;

    while (testclock_now_ms() < end) {
        loop_once(base, end - testclock_now_ms());
    }
}

/* A base whose dispatch gives timers their turn even if a callback keeps re-activating. */
static struct event_base *base_new_bounded(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    assert_non_null(cfg);
    assert_int_equal(event_config_set_max_dispatch_interval(cfg, NULL, 64, 0), 0);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    assert_non_null(base);
    return base;
}

/* ---- sockets ------------------------------------------------------------------------------ */

/* A socket bound to 127.0.0.1:0; listening when backlog >= 0. */
static evutil_socket_t tcp_bound(struct sockaddr_in *addr, int backlog)
{
    socklen_t len = sizeof(*addr);
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    if (backlog >= 0) {
        assert_int_equal(listen(fd, backlog), 0);
    }
    return fd;
}

/* Accept one connection (waits up to 2 s); the socket is non-blocking, as
 * torii_stream_accept wants it. */
static evutil_socket_t tcp_accept(evutil_socket_t lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    evutil_socket_t fd;

    assert_int_equal(poll(&p, 1, 2000), 1);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
    return fd;
}

/* A blocking connect of a raw socket to addr. */
static evutil_socket_t tcp_connect_raw(const struct sockaddr_in *addr)
{
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    return fd;
}

/* Send all of buf on fd (blocking or not; waits up to 2 s for room). */
static void send_all(evutil_socket_t fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            assert_int_equal(poll(&pf, 1, 2000), 1);
            continue;
        }
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Read what is there on a raw socket (non-blocking); returns the byte count. */
static size_t recv_drain(evutil_socket_t fd)
{
    unsigned char buf[65536];
    size_t total = 0;
    ssize_t n;

    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        total += (size_t)n;
    }
    return total;
}

/* ---- TLS material (made once per run) ------------------------------------------------------ */

struct tls_env {
    X509 *cert;
    EVP_PKEY *key;
    SSL_CTX *sctx;
    SSL_CTX *cctx;
};

/* Set by the group setup and read by the tests; main thread only. */
static struct tls_env g_tls;

static X509 *make_self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name;
    X509_EXTENSION *ext;
    X509V3_CTX v3;

    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1
        || ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1
        || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || X509_set_pubkey(x, key) != 1) {
        X509_free(x);
        return NULL;
    }
    name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                                   -1, 0)
            != 1
        || X509_set_issuer_name(x, name) != 1) {
        X509_free(x);
        return NULL;
    }
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1 || X509_sign(x, key, EVP_sha256()) <= 0) {
        X509_EXTENSION_free(ext);
        X509_free(x);
        return NULL;
    }
    X509_EXTENSION_free(ext);
    return x;
}

static int group_setup(void **state)
{
    (void)state;
    memset(&g_tls, 0, sizeof(g_tls));
    g_tls.key = EVP_EC_gen("P-256");
    if (g_tls.key == NULL || (g_tls.cert = make_self_signed(g_tls.key)) == NULL) {
        return -1;
    }
    g_tls.sctx = SSL_CTX_new(TLS_server_method());
    g_tls.cctx = SSL_CTX_new(TLS_client_method());
    if (g_tls.sctx == NULL || g_tls.cctx == NULL
        || SSL_CTX_use_certificate(g_tls.sctx, g_tls.cert) != 1
        || SSL_CTX_use_PrivateKey(g_tls.sctx, g_tls.key) != 1
        || X509_STORE_add_cert(SSL_CTX_get_cert_store(g_tls.cctx), g_tls.cert) != 1) {
        return -1;
    }
    SSL_CTX_set_verify(g_tls.cctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(g_tls.sctx);
    SSL_CTX_free(g_tls.cctx);
    X509_free(g_tls.cert);
    EVP_PKEY_free(g_tls.key);
    memset(&g_tls, 0, sizeof(g_tls));
    return 0;
}

/* A client SSL that verifies the test certificate and the name "localhost". */
static SSL *client_ssl(void)
{
    SSL *ssl = SSL_new(g_tls.cctx);
    char host[] = "localhost";

    assert_non_null(ssl);
    assert_int_equal(SSL_set_tlsext_host_name(ssl, host), 1);
    assert_int_equal(SSL_set1_host(ssl, "localhost"), 1);
    return ssl;
}

static SSL *server_ssl(void)
{
    SSL *ssl = SSL_new(g_tls.sctx);

    assert_non_null(ssl);
    return ssl;
}

/* ---- one end of a connection: records callbacks, checks input, pumps output ---------------- */

struct side {
    struct torii_stream *s;
    struct side *peer; /* the other end, when it is a stream too */
    struct event *resume;
    int tls;
    int events; /* OR of every mask reported */
    int n_cb, n_read, n_write, n_eof, n_error, n_timeout, n_connected;
    int after_end; /* callbacks after EOF or ERROR */
    int ended;
    int64_t first_timeout_ms;
    /* receiving */
    int reading; /* what was last asked with torii_stream_read */
    int read_while_off;
    int toggle_every; /* turn reading off after every n-th READ; a timer turns it back on */
    int n_pauses;
    int echo; /* answer every READ with one byte */
    struct evbuffer *got;
    const unsigned char *expect; /* when set, input is compared with it instead of kept */
    size_t expect_len;
    size_t rcvd;
    int mismatch;
    /* sending: chunk by chunk, the next one only when the last flush left nothing unsent or
     * on WRITE */
    const unsigned char *src;
    size_t src_len, chunk, lowat, queued;
    size_t max_unsent;
    int n_blocked;
    int unsent_over_queued; /* unsent beyond what was queued and not yet received */
    int write_over_lowat;   /* WRITE while unsent > lowat */
    int flush_failed;
};

static void side_read(struct side *sd, int on)
{
    sd->reading = on;
    torii_stream_read(sd->s, on);
}

static void side_check_unsent(struct side *sd)
{
    size_t unsent = torii_stream_unsent(sd->s);
    size_t pending = sd->queued - (sd->peer != NULL ? sd->peer->rcvd : 0);
    /* TLS counts records: 22 bytes of framing per record of at least 4 KiB, plus tickets. */
    size_t limit = pending + (sd->tls ? pending / 128 + 1024 : 0);

    if (unsent > limit) {
        sd->unsent_over_queued++;
    }
    if (unsent > sd->max_unsent) {
        sd->max_unsent = unsent;
    }
}

static void side_pump(struct side *sd)
{
    while (sd->src != NULL && sd->queued < sd->src_len) {
        size_t n = sd->src_len - sd->queued < sd->chunk ? sd->src_len - sd->queued : sd->chunk;

        assert_int_equal(evbuffer_add(torii_stream_output(sd->s), sd->src + sd->queued, n), 0);
        sd->queued += n;
        if (torii_stream_flush(sd->s) != TORII_OK) {
            sd->flush_failed++;
            return;
        }
        side_check_unsent(sd);
        if (torii_stream_unsent(sd->s) > 0) {
            sd->n_blocked++;
            return; /* wait for WRITE */
        }
    }
}

static void side_take_input(struct side *sd)
{
    struct evbuffer *in = torii_stream_input(sd->s);
    unsigned char buf[16384];
    size_t len;

    if (sd->expect == NULL) {
        sd->rcvd += evbuffer_get_length(in);
        assert_int_equal(evbuffer_add_buffer(sd->got, in), 0);
        return;
    }
    while ((len = evbuffer_get_length(in)) > 0) {
        size_t n = len < sizeof(buf) ? len : sizeof(buf);
        assert_int_equal(evbuffer_remove(in, buf, n), (int)n);
        if (sd->rcvd + n > sd->expect_len || memcmp(buf, sd->expect + sd->rcvd, n) != 0) {
            sd->mismatch++;
        }
        sd->rcvd += n;
    }
}

static void side_resume_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct side *sd = arg;

    (void)fd;
    (void)ev;
    if (!sd->ended) {
        side_read(sd, 1);
    }
}

static void side_cb(struct torii_stream *s, int what, void *arg)
{
    struct side *sd = arg;

    assert_ptr_equal(s, sd->s);
    sd->n_cb++;
    sd->events |= what;
    if (sd->ended) {
        sd->after_end++;
    }
    if (what & TORII_STREAM_CONNECTED) {
        sd->n_connected++;
    }
    if (what & TORII_STREAM_READ) {
        sd->n_read++;
        if (!sd->reading) {
            sd->read_while_off++;
        }
        side_take_input(sd);
        if (sd->echo) {
            assert_int_equal(evbuffer_add(torii_stream_output(s), "k", 1), 0);
            if (torii_stream_flush(s) != TORII_OK) {
                sd->flush_failed++;
            }
        }
        if (sd->toggle_every > 0 && sd->n_read % sd->toggle_every == 0) {
            struct timeval tv = {0, 2000};
            side_read(sd, 0);
            sd->n_pauses++;
            assert_int_equal(evtimer_add(sd->resume, &tv), 0);
        }
    }
    if (what & TORII_STREAM_WRITE) {
        sd->n_write++;
        if (torii_stream_unsent(s) > sd->lowat) {
            sd->write_over_lowat++;
        }
        side_pump(sd);
    }
    if (what & TORII_STREAM_TIMEOUT) {
        if (sd->n_timeout++ == 0) {
            sd->first_timeout_ms = testclock_now_ms();
        }
    }
    if (what & TORII_STREAM_EOF) {
        sd->n_eof++;
    }
    if (what & TORII_STREAM_ERROR) {
        sd->n_error++;
    }
    if (what & (TORII_STREAM_EOF | TORII_STREAM_ERROR)) {
        sd->ended = 1;
    }
}

/* ---- fixture: a base, a listener, two sides (a connects, b is accepted) -------------------- */

struct late_send {
    evutil_socket_t fd;
    const unsigned char *p;
    size_t len;
    unsigned delay_ms;
    int64_t sent_ms; /* when the thread sent the rest (read after pthread_join) */
};

struct rawtls {
    SSL *ssl;
    BIO *rbio; /* socket -> SSL */
    BIO *wbio; /* SSL -> socket */
    evutil_socket_t fd;
    struct event *ev;
    int failed;
    const char *half_rtt; /* sent as 0.5-RTT data with the server's first flight */
    struct evbuffer *got; /* application data received */
};

struct fx {
    struct event_base *base;
    struct event_base *base2; /* a second loop, when a test needs one */
    evutil_socket_t lfd;
    struct sockaddr_in addr;
    struct side a;       /* torii_stream_connect */
    struct side b;       /* torii_stream_accept */
    evutil_socket_t raw; /* a raw peer socket, when a test uses one */
    struct rawtls rt;    /* a raw TLS server, when a test uses one */
    struct event *timer;
    pthread_t th;
    int th_started;
    struct late_send ls;
    unsigned char *data; /* test payloads */
    unsigned char *data2;
};

static void side_init(struct fx *fx, struct side *sd, struct side *peer)
{
    memset(sd, 0, sizeof(*sd));
    sd->peer = peer;
    sd->got = evbuffer_new();
    sd->resume = evtimer_new(fx->base, side_resume_cb, sd);
    assert_non_null(sd->got);
    assert_non_null(sd->resume);
}

static void side_clear(struct side *sd)
{
    torii_stream_free(sd->s);
    sd->s = NULL;
    if (sd->resume != NULL) {
        event_free(sd->resume);
        sd->resume = NULL;
    }
    if (sd->got != NULL) {
        evbuffer_free(sd->got);
        sd->got = NULL;
    }
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return -1;
    }
    fx->raw = -1;
    fx->rt.fd = -1;
    fx->base = base_new_bounded();
    fx->lfd = tcp_bound(&fx->addr, 16);
    side_init(fx, &fx->a, &fx->b);
    side_init(fx, &fx->b, &fx->a);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    if (fx->th_started) {
        (void)pthread_join(fx->th, NULL);
    }
    side_clear(&fx->a);
    side_clear(&fx->b);
    if (fx->timer != NULL) {
        event_free(fx->timer);
    }
    if (fx->rt.ev != NULL) {
        event_free(fx->rt.ev);
    }
    if (fx->rt.ssl != NULL) {
        SSL_free(fx->rt.ssl);
    }
    if (fx->rt.got != NULL) {
        evbuffer_free(fx->rt.got);
    }
    if (fx->rt.fd >= 0) {
        (void)close(fx->rt.fd);
    }
    if (fx->raw >= 0) {
        (void)close(fx->raw);
    }
    if (fx->lfd >= 0) {
        (void)close(fx->lfd);
    }
    event_base_free(fx->base);
    if (fx->base2 != NULL) {
        event_base_free(fx->base2);
    }
    free(fx->data);
    free(fx->data2);
    free(fx);
    ERR_clear_error();
    return 0;
}

/* Connect a (on base_a) to the listener and accept b (on base_b); with tls, a is the TLS client
 * of b. Returns when a got CONNECTED and b is established. */
static void fx_pair_on(struct fx *fx, int tls, struct event_base *base_a, struct event_base *base_b)
{
    evutil_socket_t fd;
    int64_t end = testclock_now_ms() + 3000;

    fx->a.tls = fx->b.tls = tls;
    fx->a.s = torii_stream_connect(base_a, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                   tls ? client_ssl() : NULL);
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    assert_int_equal(torii_stream_established(fx->a.s), 0);
    fd = tcp_accept(fx->lfd);
    fx->b.s = torii_stream_accept(base_b, fd, tls ? server_ssl() : NULL);
    assert_non_null(fx->b.s);
    torii_stream_setcb(fx->b.s, side_cb, &fx->b);
    if (tls) {
        side_read(&fx->b, 1); /* an accepted stream's handshake runs on its reads */
    }
    while ((fx->a.n_connected == 0 || !torii_stream_established(fx->b.s))
           && testclock_now_ms() < end) {
        loop_once(base_a, base_a == base_b ? end - testclock_now_ms() : 1);
        if (base_b != base_a) {
            loop_once(base_b, 1);
        }
    }
    assert_int_equal(fx->a.n_connected, 1);
    assert_int_equal(fx->a.events, TORII_STREAM_CONNECTED);
    assert_int_equal(torii_stream_established(fx->a.s), 1);
    assert_int_equal(torii_stream_established(fx->b.s), 1);
    assert_int_equal(fx->b.n_connected, 0); /* CONNECTED is for torii_stream_connect only */
    assert_int_equal(fx->b.n_cb, 0);
    side_read(&fx->b, 0); /* back to the initial state: not reading */
}

static void fx_pair(struct fx *fx, int tls)
{
    fx_pair_on(fx, tls, fx->base, fx->base);
}

static unsigned char *random_bytes(size_t len)
{
    unsigned char *p = malloc(len);

    assert_non_null(p);
    assert_int_equal(RAND_bytes(p, (int)len), 1);
    return p;
}

/* Send a short message from one side and wait until the other has it all. */
static void exchange(struct fx *fx, struct side *from, struct side *to, const char *msg)
{
    size_t len = strlen(msg);
    size_t before = evbuffer_get_length(to->got);

    assert_int_equal(evbuffer_add(torii_stream_output(from->s), msg, len), 0);
    assert_int_equal(torii_stream_flush(from->s), TORII_OK);
    RUN_UNTIL(fx->base, evbuffer_get_length(to->got) >= before + len, 2000);
    assert_int_equal(evbuffer_get_length(to->got), before + len);
    assert_memory_equal(evbuffer_pullup(to->got, -1) + before, msg, len);
    assert_int_equal(torii_stream_unsent(from->s), 0);
}

/* ---- plain -------------------------------------------------------------------------------- */

static void test_plain_connect_reports_connected_and_data_flows(void **state)
{
    struct fx *fx = *state;

    fx_pair(fx, 0);
    assert_null(torii_stream_ssl(fx->a.s));
    assert_null(torii_stream_ssl(fx->b.s));
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->a, &fx->b, "hello from the client");
    exchange(fx, &fx->b, &fx->a, "and hello back from the server");
    exchange(fx, &fx->a, &fx->b, "x");
    assert_int_equal(fx->a.events, TORII_STREAM_CONNECTED | TORII_STREAM_READ);
    assert_int_equal(fx->b.events, TORII_STREAM_READ);
    assert_int_equal(fx->a.n_error + fx->b.n_error + fx->a.n_eof + fx->b.n_eof, 0);
}

static void test_plain_output_queued_while_connecting_is_sent(void **state)
{
    struct fx *fx = *state;
    static const char msg[] = "queued before the connect completed";
    evutil_socket_t fd;

    fx->a.s =
        torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr), NULL);
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), msg, sizeof(msg) - 1), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->a.s), sizeof(msg) - 1);
    fd = tcp_accept(fx->lfd);
    fx->b.s = torii_stream_accept(fx->base, fd, NULL);
    assert_non_null(fx->b.s);
    torii_stream_setcb(fx->b.s, side_cb, &fx->b);
    side_read(&fx->b, 1);
    RUN_UNTIL(fx->base, evbuffer_get_length(fx->b.got) >= sizeof(msg) - 1, 2000);
    assert_int_equal(fx->a.n_connected, 1);
    assert_int_equal(evbuffer_get_length(fx->b.got), sizeof(msg) - 1);
    assert_memory_equal(evbuffer_pullup(fx->b.got, -1), msg, sizeof(msg) - 1);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
}

/* 8 MiB of random bytes with back-pressure both ways: the receiver pauses reading every few
 * READs, the sender queues 1 MiB at a time and more only on WRITE (lowat 256 KiB). */
static void test_plain_large_transfer_with_backpressure_intact(void **state)
{
    struct fx *fx = *state;
    const size_t total = 8 * MiB;

    fx->data = random_bytes(total);
    fx_pair(fx, 0);
    fx->b.expect = fx->data;
    fx->b.expect_len = total;
    fx->b.toggle_every = 4;
    side_read(&fx->b, 1);
    fx->a.src = fx->data;
    fx->a.src_len = total;
    fx->a.chunk = MiB;
    fx->a.lowat = (size_t)256 * 1024;
    torii_stream_set_lowat(fx->a.s, fx->a.lowat);
    side_pump(&fx->a);
    RUN_UNTIL(fx->base, fx->b.rcvd >= total || fx->a.flush_failed || fx->b.ended, 8000);
    assert_int_equal(fx->b.rcvd, total);
    assert_int_equal(fx->b.mismatch, 0);
    assert_int_equal(fx->a.queued, total);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    assert_int_equal(fx->a.flush_failed, 0);
    assert_int_equal(fx->a.unsent_over_queued, 0);
    assert_true(fx->a.max_unsent <= fx->a.chunk + fx->a.lowat);
    assert_int_equal(fx->a.write_over_lowat, 0);
    assert_true(fx->a.n_blocked > 0); /* the back-pressure path really ran */
    assert_true(fx->a.n_write > 0);
    assert_true(fx->b.n_pauses > 0);
    assert_int_equal(fx->b.read_while_off, 0);
    assert_int_equal(fx->a.n_error + fx->b.n_error + fx->a.n_eof + fx->b.n_eof, 0);
}

static void test_plain_peer_free_reports_eof_once(void **state)
{
    struct fx *fx = *state;

    fx_pair(fx, 0);
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->b, &fx->a, "last words");
    torii_stream_free(fx->b.s);
    fx->b.s = NULL;
    RUN_UNTIL(fx->base, fx->a.n_eof > 0, 2000);
    assert_int_equal(fx->a.n_eof, 1);
    assert_int_equal(fx->a.n_error, 0);
    /* Reading stopped: asking again is a no-op and nothing more is reported. */
    side_read(&fx->a, 1);
    run_for(fx->base, 50);
    assert_int_equal(fx->a.after_end, 0);
    assert_int_equal(fx->a.n_eof, 1);
}

static void test_plain_connect_refused_reports_error(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_in closed;
    /* Bound but not listening: the port stays ours, and a SYN to it is refused. */
    evutil_socket_t hold = tcp_bound(&closed, -1);

    fx->raw = hold;
    fx->a.s =
        torii_stream_connect(fx->base, (const struct sockaddr *)&closed, sizeof(closed), NULL);
    if (fx->a.s == NULL) {
        return; /* refused at once: also allowed by the contract */
    }
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    RUN_UNTIL(fx->base, fx->a.n_error > 0, 2000);
    assert_int_equal(fx->a.n_error, 1);
    assert_int_equal(fx->a.n_connected, 0);
    assert_int_equal(torii_stream_established(fx->a.s), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_EIO);
}

static void test_plain_connect_refused_tls_reports_error(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_in closed;
    evutil_socket_t hold = tcp_bound(&closed, -1);

    fx->raw = hold;
    fx->a.s = torii_stream_connect(fx->base, (const struct sockaddr *)&closed, sizeof(closed),
                                   client_ssl());
    if (fx->a.s == NULL) {
        return;
    }
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    RUN_UNTIL(fx->base, fx->a.n_error > 0, 2000);
    assert_int_equal(fx->a.n_error, 1);
    assert_int_equal(fx->a.n_connected, 0);
}

static void test_plain_read_timeout_reports_timeout_and_stays_usable(void **state)
{
    struct fx *fx = *state;
    int64_t t0;

    fx_pair(fx, 0);
    /* t0 before the deadline is armed: the lower bound holds however slow the machine. */
    t0 = testclock_now_ms();
    torii_stream_timeouts(fx->b.s, 80, 0);
    side_read(&fx->b, 1);
    RUN_UNTIL(fx->base, fx->b.n_timeout > 0, 2000);
    assert_int_equal(fx->b.n_timeout, 1);
    assert_int_equal(fx->b.events, TORII_STREAM_TIMEOUT);
    assert_true(fx->b.first_timeout_ms - t0 >= 70);
    /* Still usable: data arrives. */
    exchange(fx, &fx->a, &fx->b, "late but welcome");
    /* No timeout while reading is off. */
    side_read(&fx->b, 0);
    fx->b.n_timeout = 0;
    run_for(fx->base, 200);
    assert_int_equal(fx->b.n_timeout, 0);
    /* Timeout 0 = none. */
    torii_stream_timeouts(fx->b.s, 0, 0);
    side_read(&fx->b, 1);
    run_for(fx->base, 200);
    assert_int_equal(fx->b.n_timeout, 0);
    assert_int_equal(fx->b.n_error + fx->b.n_eof, 0);
}

static void test_plain_read_off_stops_read_callbacks(void **state)
{
    struct fx *fx = *state;
    static const char more[] = "sent while the reader is paused";

    fx_pair(fx, 0);
    side_read(&fx->b, 1);
    exchange(fx, &fx->a, &fx->b, "first");
    side_read(&fx->b, 0);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), more, sizeof(more) - 1), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    run_for(fx->base, 100);
    assert_int_equal(fx->b.read_while_off, 0);
    assert_int_equal(evbuffer_get_length(fx->b.got), 5);
    assert_int_equal(evbuffer_get_length(torii_stream_input(fx->b.s)), 0);
    side_read(&fx->b, 1);
    RUN_UNTIL(fx->base, evbuffer_get_length(fx->b.got) >= 5 + sizeof(more) - 1, 2000);
    assert_int_equal(evbuffer_get_length(fx->b.got), 5 + sizeof(more) - 1);
    assert_memory_equal(evbuffer_pullup(fx->b.got, -1) + 5, more, sizeof(more) - 1);
}

/* The peer never reads: the output blocks, TIMEOUT comes after write_ms without progress, and
 * once the peer drains, WRITE follows. */
static void test_plain_write_timeout_then_write_when_drained(void **state)
{
    struct fx *fx = *state;
    const size_t total = 4 * MiB;
    int64_t t0;
    size_t drained = 0;

    fx->data = random_bytes(total);
    fx->a.s =
        torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr), NULL);
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    fx->raw = tcp_accept(fx->lfd);
    RUN_UNTIL(fx->base, fx->a.n_connected > 0, 2000);
    assert_int_equal(fx->a.n_connected, 1);
    t0 = testclock_now_ms(); /* before the deadline is armed (see the read timeout test) */
    torii_stream_timeouts(fx->a.s, 0, 100);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), fx->data, total), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    assert_true(torii_stream_unsent(fx->a.s) > 0);
    assert_true(torii_stream_unsent(fx->a.s) <= total);
    RUN_UNTIL(fx->base, fx->a.n_timeout > 0, 2000);
    assert_int_equal(fx->a.n_timeout, 1);
    assert_true(fx->a.first_timeout_ms - t0 >= 90);
    assert_int_equal(fx->a.n_write, 0);
    /* The peer drains everything: WRITE, and nothing unsent. */
    while (drained < total && testclock_now_ms() - t0 < 5000) {
        drained += recv_drain(fx->raw);
        loop_once(fx->base, 1);
    }
    assert_int_equal(drained, total);
    RUN_UNTIL(fx->base, fx->a.n_write > 0, 1000);
    assert_true(fx->a.n_write > 0);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    assert_int_equal(fx->a.n_error + fx->a.n_eof, 0);
}

/* A connect that gets no answer (the listener's accept queue is full, so its SYNs are
 * dropped): the connect deadline reports TIMEOUT, once per deadline. */
static void test_plain_connect_timeout_reports_timeout_once(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_in full;
    evutil_socket_t fill[8];
    evutil_socket_t lfd = tcp_bound(&full, 0);
    int64_t t0;
    int i;

    fx->raw = lfd;
    for (i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fill[i] >= 0);
        (void)connect(fill[i], (const struct sockaddr *)&full, sizeof(full));
    }
    fx->a.s = torii_stream_connect(fx->base, (const struct sockaddr *)&full, sizeof(full), NULL);
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    t0 = testclock_now_ms(); /* before the deadline is armed (see the read timeout test) */
    torii_stream_timeouts(fx->a.s, 150, 100);
    RUN_UNTIL(fx->base, fx->a.n_cb > 0, 2000);
    run_for(fx->base, 30);
    if (fx->a.events & TORII_STREAM_CONNECTED) {
        for (i = 0; i < 8; i++) {
            (void)close(fill[i]);
        }
        skip(); /* this kernel answered the SYN despite the full queue */
    }
    print_message("connect timeout: %d TIMEOUT after %lld ms, events 0x%x\n", fx->a.n_timeout,
                  (long long)(fx->a.first_timeout_ms - t0), (unsigned)fx->a.events);
    for (i = 0; i < 8; i++) {
        (void)close(fill[i]);
    }
    assert_int_equal(fx->a.events, TORII_STREAM_TIMEOUT);
    assert_true(fx->a.first_timeout_ms - t0 >= 90);
    assert_int_equal(fx->a.n_timeout, 1);
    assert_int_equal(torii_stream_established(fx->a.s), 0);
}

/* The peer half-closes: EOF, and the stream can still send. */
static void test_plain_peer_half_close_eof_then_still_sends(void **state)
{
    struct fx *fx = *state;
    static const char bye[] = "answer after the peer's EOF";
    char buf[64];
    struct pollfd p;
    ssize_t n;

    fx->a.s =
        torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr), NULL);
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    fx->raw = tcp_accept(fx->lfd);
    RUN_UNTIL(fx->base, fx->a.n_connected > 0, 2000);
    side_read(&fx->a, 1);
    send_all(fx->raw, "request", 7);
    assert_int_equal(shutdown(fx->raw, SHUT_WR), 0);
    RUN_UNTIL(fx->base, fx->a.ended, 2000);
    assert_int_equal(fx->a.n_eof, 1);
    assert_int_equal(fx->a.n_error, 0);
    assert_int_equal(evbuffer_get_length(fx->a.got), 7);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), bye, sizeof(bye) - 1), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    p.fd = fx->raw;
    p.events = POLLIN;
    assert_int_equal(poll(&p, 1, 2000), 1);
    n = recv(fx->raw, buf, sizeof(buf), 0);
    assert_int_equal(n, (ssize_t)sizeof(bye) - 1);
    assert_memory_equal(buf, bye, sizeof(bye) - 1);
}

/* ---- TLS ---------------------------------------------------------------------------------- */

static void test_tls_handshake_verified_and_data_both_ways(void **state)
{
    struct fx *fx = *state;
    SSL *c;

    fx_pair(fx, 1);
    c = torii_stream_ssl(fx->a.s);
    assert_non_null(c);
    assert_non_null(torii_stream_ssl(fx->b.s));
    assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
    assert_int_equal(SSL_version(c), TLS1_3_VERSION);
    assert_int_equal(SSL_is_server(torii_stream_ssl(fx->b.s)), 1);
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->a, &fx->b, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    exchange(fx, &fx->b, &fx->a, "HTTP/1.1 204 No Content\r\n\r\n");
    exchange(fx, &fx->a, &fx->b, "1");
    assert_int_equal(fx->a.events, TORII_STREAM_CONNECTED | TORII_STREAM_READ);
    assert_int_equal(fx->b.events, TORII_STREAM_READ);
    /* Everything handed over, tickets included. */
    run_for(fx->base, 20);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
}

static void test_tls_output_queued_before_handshake_is_sent(void **state)
{
    struct fx *fx = *state;
    static const char msg[] = "early request";
    evutil_socket_t fd;

    fx->a.tls = fx->b.tls = 1;
    fx->a.s = torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                   client_ssl());
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), msg, sizeof(msg) - 1), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    fd = tcp_accept(fx->lfd);
    fx->b.s = torii_stream_accept(fx->base, fd, server_ssl());
    assert_non_null(fx->b.s);
    torii_stream_setcb(fx->b.s, side_cb, &fx->b);
    side_read(&fx->b, 1);
    RUN_UNTIL(fx->base, evbuffer_get_length(fx->b.got) >= sizeof(msg) - 1, 3000);
    assert_int_equal(fx->a.n_connected, 1);
    assert_int_equal(evbuffer_get_length(fx->b.got), sizeof(msg) - 1);
    assert_memory_equal(evbuffer_pullup(fx->b.got, -1), msg, sizeof(msg) - 1);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
}

/* 6 MiB each way at once, in many records, with back-pressure on both ends. */
static void test_tls_large_transfer_both_ways_intact(void **state)
{
    struct fx *fx = *state;
    const size_t total = 6 * MiB;

    fx->data = random_bytes(total);
    fx->data2 = random_bytes(total);
    fx_pair(fx, 1);
    fx->a.src = fx->data;
    fx->b.expect = fx->data;
    fx->b.src = fx->data2;
    fx->a.expect = fx->data2;
    fx->a.src_len = fx->b.src_len = fx->a.expect_len = fx->b.expect_len = total;
    fx->a.chunk = fx->b.chunk = MiB;
    fx->a.lowat = fx->b.lowat = (size_t)128 * 1024;
    fx->a.toggle_every = 3;
    fx->b.toggle_every = 5;
    torii_stream_set_lowat(fx->a.s, fx->a.lowat);
    torii_stream_set_lowat(fx->b.s, fx->b.lowat);
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    side_pump(&fx->a);
    side_pump(&fx->b);
    RUN_UNTIL(fx->base,
              (fx->a.rcvd >= total && fx->b.rcvd >= total) || fx->a.ended || fx->b.ended
                  || fx->a.flush_failed || fx->b.flush_failed,
              8000);
    /* A sender with nothing unsent and more to queue waited for a WRITE that never came. */
    assert_false(fx->a.queued < total && torii_stream_unsent(fx->a.s) == 0 && !fx->a.flush_failed);
    assert_false(fx->b.queued < total && torii_stream_unsent(fx->b.s) == 0 && !fx->b.flush_failed);
    assert_int_equal(fx->a.rcvd, total);
    assert_int_equal(fx->b.rcvd, total);
    assert_int_equal(fx->a.mismatch + fx->b.mismatch, 0);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
    assert_int_equal(fx->a.unsent_over_queued + fx->b.unsent_over_queued, 0);
    assert_int_equal(fx->a.write_over_lowat + fx->b.write_over_lowat, 0);
    assert_true(fx->a.n_blocked > 0 && fx->b.n_blocked > 0);
    assert_true(fx->a.n_pauses > 0 && fx->b.n_pauses > 0);
    assert_int_equal(fx->a.read_while_off + fx->b.read_while_off, 0);
    assert_int_equal(fx->a.n_error + fx->b.n_error + fx->a.n_eof + fx->b.n_eof, 0);
}

/* One way, the receiver only reading (no traffic back): 8 MiB, unsent back to 0. */
static void test_tls_large_transfer_one_way_unsent_returns_to_zero(void **state)
{
    struct fx *fx = *state;
    const size_t total = 8 * MiB;

    fx->data = random_bytes(total);
    fx_pair(fx, 1);
    fx->a.expect = fx->data;
    fx->a.expect_len = total;
    fx->a.toggle_every = 4;
    side_read(&fx->a, 1);
    fx->b.src = fx->data;
    fx->b.src_len = total;
    fx->b.chunk = 2 * MiB;
    fx->b.lowat = (size_t)64 * 1024;
    torii_stream_set_lowat(fx->b.s, fx->b.lowat);
    side_pump(&fx->b);
    RUN_UNTIL(fx->base, fx->a.rcvd >= total || fx->a.ended || fx->b.flush_failed, 8000);
    assert_int_equal(fx->a.rcvd, total);
    assert_int_equal(fx->a.mismatch, 0);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
    assert_int_equal(fx->b.unsent_over_queued, 0);
    assert_int_equal(fx->b.write_over_lowat, 0);
    assert_true(fx->b.n_blocked > 0 && fx->b.n_write > 0);
    assert_int_equal(fx->a.read_while_off, 0);
    assert_int_equal(fx->a.n_error + fx->b.n_error + fx->a.n_eof + fx->b.n_eof, 0);
}

static void test_tls_shutdown_then_free_reports_eof(void **state)
{
    struct fx *fx = *state;

    fx_pair(fx, 1);
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->b, &fx->a, "goodbye");
    torii_stream_shutdown(fx->b.s);
    assert_int_equal(torii_stream_flush(fx->b.s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0); /* close_notify is small: gone at once */
    torii_stream_free(fx->b.s);
    fx->b.s = NULL;
    RUN_UNTIL(fx->base, fx->a.ended, 2000);
    assert_int_equal(fx->a.n_eof, 1);
    assert_int_equal(fx->a.n_error, 0);
    assert_true(SSL_get_shutdown(torii_stream_ssl(fx->a.s)) & SSL_RECEIVED_SHUTDOWN);
    run_for(fx->base, 30);
    assert_int_equal(fx->a.after_end, 0);
}

/* close_notify goes after all the output queued before torii_stream_shutdown, however large:
 * the peer gets every byte, then EOF (with close_notify) while the socket is still open. */
static void test_tls_shutdown_after_large_output_follows_the_data(void **state)
{
    struct fx *fx = *state;
    const size_t total = 3 * MiB;

    fx->data = random_bytes(total);
    fx_pair(fx, 1);
    fx->a.expect = fx->data;
    fx->a.expect_len = total;
    side_read(&fx->a, 1);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->b.s), fx->data, total), 0);
    torii_stream_shutdown(fx->b.s);
    assert_int_equal(torii_stream_flush(fx->b.s), TORII_OK);
    RUN_UNTIL(fx->base, fx->a.ended, 5000);
    assert_int_equal(fx->a.rcvd, total);
    assert_int_equal(fx->a.mismatch, 0);
    assert_int_equal(fx->a.n_eof, 1);
    assert_int_equal(fx->a.n_error, 0);
    assert_true(SSL_get_shutdown(torii_stream_ssl(fx->a.s)) & SSL_RECEIVED_SHUTDOWN);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
    assert_non_null(fx->b.s); /* b was never freed: the EOF came from close_notify alone */
}

static void test_tls_free_without_close_notify_reports_eof(void **state)
{
    struct fx *fx = *state;

    fx_pair(fx, 1);
    side_read(&fx->a, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->a, &fx->b, "ping");
    torii_stream_free(fx->a.s);
    fx->a.s = NULL;
    RUN_UNTIL(fx->base, fx->b.ended, 2000);
    assert_int_equal(fx->b.n_eof, 1);
    assert_int_equal(fx->b.n_error, 0);
    assert_false(SSL_get_shutdown(torii_stream_ssl(fx->b.s)) & SSL_RECEIVED_SHUTDOWN);
}

static void test_plain_shutdown_is_noop(void **state)
{
    struct fx *fx = *state;

    fx_pair(fx, 0);
    side_read(&fx->a, 1);
    torii_stream_shutdown(fx->b.s);
    assert_int_equal(torii_stream_flush(fx->b.s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
    run_for(fx->base, 30);
    assert_int_equal(fx->a.n_cb, 1); /* CONNECTED only */
    exchange(fx, &fx->b, &fx->a, "still open");
}

/* A client whose "server" answers the ClientHello with plain text. */
static void test_tls_client_to_plain_garbage_peer_reports_error(void **state)
{
    struct fx *fx = *state;
    static const char garbage[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

    fx->a.s = torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                   client_ssl());
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    fx->raw = tcp_accept(fx->lfd);
    send_all(fx->raw, garbage, sizeof(garbage) - 1);
    RUN_UNTIL(fx->base, fx->a.ended, 2000);
    assert_int_equal(fx->a.n_error, 1);
    assert_int_equal(fx->a.n_connected, 0);
    assert_int_equal(torii_stream_established(fx->a.s), 0);
    ERR_clear_error();
}

/* The peer accepts TCP, then closes without a word: the handshake fails, no CONNECTED. */
static void test_tls_client_peer_closes_during_handshake_reports_error(void **state)
{
    struct fx *fx = *state;

    fx->a.s = torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                   client_ssl());
    assert_non_null(fx->a.s);
    torii_stream_setcb(fx->a.s, side_cb, &fx->a);
    (void)close(tcp_accept(fx->lfd));
    RUN_UNTIL(fx->base, fx->a.ended, 2000);
    assert_int_equal(fx->a.n_connected, 0);
    assert_int_equal(fx->a.n_error, 1);
    ERR_clear_error();
}

/* A server stream whose client sends garbage instead of a ClientHello. */
static void test_tls_server_garbage_client_reports_error(void **state)
{
    struct fx *fx = *state;
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

    fx->raw = tcp_connect_raw(&fx->addr);
    fx->b.s = torii_stream_accept(fx->base, tcp_accept(fx->lfd), server_ssl());
    assert_non_null(fx->b.s);
    torii_stream_setcb(fx->b.s, side_cb, &fx->b);
    side_read(&fx->b, 1);
    send_all(fx->raw, garbage, sizeof(garbage) - 1);
    RUN_UNTIL(fx->base, fx->b.ended, 2000);
    assert_int_equal(fx->b.n_error, 1);
    assert_int_equal(torii_stream_established(fx->b.s), 0);
    assert_int_equal(fx->b.n_read, 0);
    ERR_clear_error();
}

static void test_tls_read_off_stops_read_callbacks(void **state)
{
    struct fx *fx = *state;
    static const char more[] = "while paused";

    fx_pair(fx, 1);
    side_read(&fx->b, 1);
    exchange(fx, &fx->a, &fx->b, "first");
    side_read(&fx->b, 0);
    assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), more, sizeof(more) - 1), 0);
    assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    run_for(fx->base, 100);
    assert_int_equal(fx->b.read_while_off, 0);
    assert_int_equal(evbuffer_get_length(fx->b.got), 5);
    side_read(&fx->b, 1);
    RUN_UNTIL(fx->base, evbuffer_get_length(fx->b.got) >= 5 + sizeof(more) - 1, 2000);
    assert_int_equal(evbuffer_get_length(fx->b.got), 5 + sizeof(more) - 1);
    assert_memory_equal(evbuffer_pullup(fx->b.got, -1) + 5, more, sizeof(more) - 1);
}

/* WRITE must be reported whenever blocked output drains to lowat, also when the drain happens
 * inside the read event: a TLS read that yields no application data (here a KeyUpdate from
 * the peer) flushes. Two loops make the order certain: b (receiver) drains a's socket on its
 * own loop, sends a KeyUpdate, then a's loop sees its socket readable and writable at once;
 * reading was enabled after the output blocked, so the read event runs first. */
static void test_tls_write_reported_when_read_event_drains_output(void **state)
{
    struct fx *fx = *state;
    static unsigned char zeros[65536];
    size_t queued = 0;
    int64_t end;

    fx->base2 = base_new_bounded();
    fx_pair_on(fx, 1, fx->base, fx->base2);
    run_for(fx->base, 10); /* a takes its session tickets */
    side_read(&fx->a, 1);
    run_for(fx->base, 10);
    side_read(&fx->a, 0);
    /* Fill a's socket: 64 KiB at a time until a flush leaves something unsent. */
    while (torii_stream_unsent(fx->a.s) == 0 && queued < 64 * MiB) {
        assert_int_equal(evbuffer_add(torii_stream_output(fx->a.s), zeros, sizeof(zeros)), 0);
        queued += sizeof(zeros);
        assert_int_equal(torii_stream_flush(fx->a.s), TORII_OK);
    }
    assert_true(torii_stream_unsent(fx->a.s) > 0);
    side_read(&fx->a, 1);
    /* b reads all that reached its socket (a's loop does not run meanwhile). */
    side_read(&fx->b, 1);
    end = testclock_now_ms() + 2000;
    while (testclock_now_ms() < end) {
        size_t before = fx->b.rcvd;
        run_for(fx->base2, 20);
        if (fx->b.rcvd == before) {
            break;
        }
    }
    assert_true(fx->b.rcvd > 0);
    /* A TLS 1.3 KeyUpdate: a record a's read turns into no application data. */
    assert_int_equal(SSL_key_update(torii_stream_ssl(fx->b.s), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    assert_int_equal(SSL_do_handshake(torii_stream_ssl(fx->b.s)), 1);
    assert_int_equal(torii_stream_flush(fx->b.s), TORII_OK);
    assert_int_equal(torii_stream_unsent(fx->b.s), 0);
    /* Now both loops, until all arrived and WRITE came (or 3 s). */
    end = testclock_now_ms() + 3000;
    while ((fx->b.rcvd < queued || fx->a.n_write == 0) && testclock_now_ms() < end) {
        loop_once(fx->base, 1);
        loop_once(fx->base2, 1);
    }
    print_message("sender: queued %zu, unsent %zu, WRITE %d; receiver got %zu\n", queued,
                  torii_stream_unsent(fx->a.s), fx->a.n_write, fx->b.rcvd);
    assert_int_equal(fx->b.rcvd, queued);
    assert_int_equal(torii_stream_unsent(fx->a.s), 0);
    assert_int_equal(fx->a.n_error + fx->b.n_error, 0);
    assert_true(fx->a.n_write > 0); /* the blocked output drained to lowat (0) */
}

/* ---- TLS: a raw server (memory BIOs) that can send half a record -------------------------- */

/* Hand what the SSL wrote to the socket. */
static void rawtls_push(struct rawtls *r)
{
    unsigned char buf[4096];
    int n;

    while ((n = BIO_read(r->wbio, buf, sizeof(buf))) > 0) {
        send_all(r->fd, buf, (size_t)n);
    }
}

static void rawtls_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct rawtls *r = arg;
    unsigned char buf[4096];
    ssize_t n;
    int rc;

    (void)ev;
    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        assert_int_equal(BIO_write(r->rbio, buf, (int)n), (int)n);
    }
    if (r->half_rtt != NULL) {
        size_t done = 0;
        rc = SSL_read_early_data(r->ssl, buf, sizeof(buf), &done);
        if (rc == SSL_READ_EARLY_DATA_FINISH) {
            size_t len = strlen(r->half_rtt);
            if (SSL_write_early_data(r->ssl, r->half_rtt, len, &done) != 1 || done != len) {
                r->failed = 1;
            }
            r->half_rtt = NULL;
        } else if (rc == SSL_READ_EARLY_DATA_ERROR
                   && SSL_get_error(r->ssl, 0) != SSL_ERROR_WANT_READ) {
            r->failed = 1;
        }
    } else if (!SSL_is_init_finished(r->ssl)) {
        rc = SSL_do_handshake(r->ssl);
        if (rc != 1 && SSL_get_error(r->ssl, rc) != SSL_ERROR_WANT_READ) {
            r->failed = 1;
        }
    }
    if (r->got != NULL && SSL_is_init_finished(r->ssl)) {
        while ((rc = SSL_read(r->ssl, buf, sizeof(buf))) > 0) {
            assert_int_equal(evbuffer_add(r->got, buf, (size_t)rc), 0);
        }
    }
    rawtls_push(r);
}

/* Accept a connection on fx's listener and serve a TLS handshake with it from base. */
static void rawtls_start(struct fx *fx, struct event_base *base)
{
    struct rawtls *r = &fx->rt;

    r->fd = tcp_accept(fx->lfd);
    r->ssl = server_ssl();
    r->rbio = BIO_new(BIO_s_mem());
    r->wbio = BIO_new(BIO_s_mem());
    assert_non_null(r->rbio);
    assert_non_null(r->wbio);
    SSL_set_bio(r->ssl, r->rbio, r->wbio);
    assert_int_equal(SSL_set_num_tickets(r->ssl, 0), 1);
    SSL_set_accept_state(r->ssl);
    r->ev = event_new(base, r->fd, EV_READ | EV_PERSIST, rawtls_cb, r);
    assert_non_null(r->ev);
    assert_int_equal(event_add(r->ev, NULL), 0);
}

static void *late_send_main(void *arg)
{
    struct late_send *ls = arg;
    struct timespec ts = {(time_t)(ls->delay_ms / 1000), (long)(ls->delay_ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    ls->sent_ms = testclock_now_ms();
    (void)send(ls->fd, ls->p, ls->len, MSG_NOSIGNAL);
    return NULL;
}

static void stamp_cb(evutil_socket_t fd, short ev, void *arg)
{
    int64_t *at = arg;

    (void)fd;
    (void)ev;
    *at = testclock_now_ms();
}

/* A record that arrives in two parts: while the rest is on its way, the event loop must keep
 * running (timers, other connections) and not spin on the partial record. This test runs on
 * a default event_base (what the daemon's workers use); the second part is sent by a thread
 * after 1 s, which bounds the test even if the loop is stuck until then. */
static void test_tls_partial_record_does_not_stall_loop(void **state)
{
    struct fx *fx = *state;
    struct side *c = &fx->a;
    struct timeval tv = {0, 20000};
    static unsigned char rec[2048];
    unsigned char msg[1000];
    int64_t fired = 0;
    int64_t t0;
    clock_t cpu0;
    double cpu_s;
    int n;

    fx->base2 = event_base_new();
    assert_non_null(fx->base2);
    memset(msg, 'm', sizeof(msg));
    c->tls = 1;
    c->s = torii_stream_connect(fx->base2, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                client_ssl());
    assert_non_null(c->s);
    torii_stream_setcb(c->s, side_cb, c);
    rawtls_start(fx, fx->base2);
    RUN_UNTIL(fx->base2,
              (c->n_connected > 0 && SSL_is_init_finished(fx->rt.ssl)) || c->ended || fx->rt.failed,
              3000);
    assert_int_equal(c->n_connected, 1);
    assert_true(SSL_is_init_finished(fx->rt.ssl));
    side_read(c, 1);
    run_for(fx->base2, 20);

    /* One record: the first 100 bytes now, the rest from a thread 1 s later. */
    assert_int_equal(SSL_write(fx->rt.ssl, msg, sizeof(msg)), (int)sizeof(msg));
    n = BIO_read(fx->rt.wbio, rec, sizeof(rec));
    assert_true(n > 100);
    assert_int_equal(BIO_pending(fx->rt.wbio), 0);
    send_all(fx->rt.fd, rec, 100);
    fx->ls.fd = fx->rt.fd;
    fx->ls.p = rec + 100;
    fx->ls.len = (size_t)n - 100;
    fx->ls.delay_ms = 1000;
    fx->timer = evtimer_new(fx->base2, stamp_cb, &fired);
    assert_non_null(fx->timer);
    assert_int_equal(evtimer_add(fx->timer, &tv), 0);
    t0 = testclock_now_ms();
    cpu0 = clock();
    assert_int_equal(pthread_create(&fx->th, NULL, late_send_main, &fx->ls), 0);
    fx->th_started = 1;
    RUN_UNTIL(fx->base2, c->rcvd >= sizeof(msg) || c->ended, 3000);
    fx->th_started = 0;
    assert_int_equal(pthread_join(fx->th, NULL), 0);
    RUN_UNTIL(fx->base2, fired != 0, 1000);
    cpu_s = (double)(clock() - cpu0) / CLOCKS_PER_SEC;
    print_message("partial record: 20 ms timer fired after %lld ms; %.2f s CPU in %lld ms\n",
                  (long long)(fired - t0), cpu_s, (long long)(testclock_now_ms() - t0));
    assert_int_equal(c->rcvd, sizeof(msg));
    assert_memory_equal(evbuffer_pullup(c->got, -1), msg, sizeof(msg));
    assert_int_equal(c->n_error + c->n_eof, 0);
    assert_true(fired != 0);
    /* The loop went on while the record was incomplete: the timer fired before the rest was
     * sent (an order of events, not a duration, so a slow machine does not change it). */
    assert_true(fired < fx->ls.sent_ms);
    assert_true(cpu_s < 0.5); /* and did not spin */
}

/* A server that sends 0.5-RTT data right behind its handshake flight: the client's read gives
 * CONNECTED and READ at once. The client's Finished, and the output queued before CONNECTED,
 * must still be sent ("output queued before is sent then"), without the owner flushing. */
static void test_tls_connected_with_data_still_sends_finished_and_queued_output(void **state)
{
    struct fx *fx = *state;
    struct side *c = &fx->a;
    static const char req[] = "queued before CONNECTED";

    c->tls = 1;
    c->s = torii_stream_connect(fx->base, (const struct sockaddr *)&fx->addr, sizeof(fx->addr),
                                client_ssl());
    assert_non_null(c->s);
    torii_stream_setcb(c->s, side_cb, c);
    assert_int_equal(evbuffer_add(torii_stream_output(c->s), req, sizeof(req) - 1), 0);
    assert_int_equal(torii_stream_flush(c->s), TORII_OK);
    fx->rt.half_rtt = "0.5-RTT data";
    fx->rt.got = evbuffer_new();
    assert_non_null(fx->rt.got);
    rawtls_start(fx, fx->base);
    RUN_UNTIL(fx->base, c->n_connected > 0 || c->ended || fx->rt.failed, 3000);
    assert_int_equal(fx->rt.failed, 0);
    assert_int_equal(c->n_connected, 1);
    print_message("client: events 0x%x, unsent %zu after CONNECTED\n", (unsigned)c->events,
                  torii_stream_unsent(c->s));
    assert_int_equal(c->events, TORII_STREAM_CONNECTED | TORII_STREAM_READ);
    assert_int_equal(evbuffer_get_length(c->got), strlen("0.5-RTT data"));
    RUN_UNTIL(fx->base, evbuffer_get_length(fx->rt.got) >= sizeof(req) - 1 || fx->rt.failed, 1000);
    assert_true(SSL_is_init_finished(fx->rt.ssl)); /* the client's Finished arrived */
    assert_int_equal(evbuffer_get_length(fx->rt.got), sizeof(req) - 1);
    assert_memory_equal(evbuffer_pullup(fx->rt.got, -1), req, sizeof(req) - 1);
    assert_int_equal(torii_stream_unsent(c->s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_connect_reports_connected_and_data_flows,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_output_queued_while_connecting_is_sent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_large_transfer_with_backpressure_intact,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_peer_free_reports_eof_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_connect_refused_reports_error, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_connect_refused_tls_reports_error, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_read_timeout_reports_timeout_and_stays_usable,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_read_off_stops_read_callbacks, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_write_timeout_then_write_when_drained, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_connect_timeout_reports_timeout_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_peer_half_close_eof_then_still_sends, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_verified_and_data_both_ways, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_output_queued_before_handshake_is_sent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_large_transfer_both_ways_intact, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_large_transfer_one_way_unsent_returns_to_zero,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_shutdown_then_free_reports_eof, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_shutdown_after_large_output_follows_the_data,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_free_without_close_notify_reports_eof, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_plain_shutdown_is_noop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_to_plain_garbage_peer_reports_error,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_peer_closes_during_handshake_reports_error,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_server_garbage_client_reports_error, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_read_off_stops_read_callbacks, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_write_reported_when_read_event_drains_output,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_partial_record_does_not_stall_loop, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_tls_connected_with_data_still_sends_finished_and_queued_output, fx_setup,
            fx_teardown),
    };
    int rc;

    (void)signal(SIGPIPE, SIG_IGN);
    (void)alarm(120); /* watchdog: a hung loop ends the run instead of the ctest timeout */
    if (evthread_use_pthreads() != 0) {
        return 1;
    }
    torii_log_set_level(TORII_LOG_ERR);
    rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    libevent_global_shutdown();
    return rc;
}
