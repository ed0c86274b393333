/* test_proxy_session.c - the streaming proxy engine (src/proxy/session.c and its duties)
 * without the daemon: a worker's proxy state (torii_proxy__worker_init) on an event_base of
 * the test, a client connection handed to torii_proxy__accept from one end of a socketpair
 * (the test speaks TLS or plain HTTP on the other end), and a fake backend listening on
 * 127.0.0.1 that the test answers by hand. Covers a request proxied and answered (the head
 * rewritten both ways), keep-alive reuse of a pooled backend connection (same client and a
 * new client), chunked bodies pumped both ways (re-framed, trailers filtered), the refusals
 * of the admission checks (400, 404, 421, 503, 405, 308) and the access log line in both
 * formats.
 *
 * Every wait is bounded: run_until() steps the loop in short passes and polls the client and
 * the backend between passes until a condition holds or TEST_WAIT_MS have passed; the
 * condition is asserted afterwards. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy_int.h"
#include "testclock.h"
#include "testfile.h"
#include "testpki.h"
#include "torii/conf.h"
#include "torii/daemon.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/proxy.h"
#include "torii/table.h"
#include "torii/tls.h"

#define TEST_WAIT_MS 20000 /* generous: a loaded machine still finishes far below */
#define BUF_MAX      (256 * 1024)
#define BE_MAX       4

/* ---- time and the loop -------------------------------------------------------------------- */

static void break_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    (void)event_base_loopbreak(arg);
}

/* One pass of the loop: returns after the active callbacks ran, or after 5 ms at the latest. */
static void loop_once(struct event_base *base)
{
    struct event *t = evtimer_new(base, break_cb, base);
    struct timeval tv = {0, 5000};

    assert_non_null(t);
    assert_int_equal(evtimer_add(t, &tv), 0);
    assert_int_not_equal(event_base_loop(base, EVLOOP_ONCE), -1);
    event_free(t);
}

/* ---- a byte buffer ------------------------------------------------------------------------ */

struct buf {
    char d[BUF_MAX + 1];
    size_t n;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= BUF_MAX);
    memcpy(b->d + b->n, p, n);
    b->n += n;
    b->d[b->n] = '\0';
}

/* ---- the client (the test's end of a socketpair, TLS or plain) ---------------------------- */

struct client {
    int fd;
    SSL *ssl; /* NULL: plain */
    int hs_done;
    int eof;
    struct buf out; /* still to send */
    struct buf in;  /* everything received */
};

static void client_pump(struct client *c)
{
    char tmp[16384];

    if (c->fd < 0) {
        return;
    }
    if (c->ssl != NULL && !c->hs_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            return;
        }
        c->hs_done = 1;
    }
    while (c->out.n > 0) {
        ssize_t w = c->ssl != NULL ? SSL_write(c->ssl, c->out.d, (int)c->out.n)
                                   : send(c->fd, c->out.d, c->out.n, MSG_NOSIGNAL);
        if (w <= 0) {
            break;
        }
        memmove(c->out.d, c->out.d + w, c->out.n - (size_t)w);
        c->out.n -= (size_t)w;
    }
    for (int i = 0; i < 64 && !c->eof; i++) {
        ssize_t r = c->ssl != NULL ? SSL_read(c->ssl, tmp, sizeof(tmp))
                                   : recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (r > 0) {
            buf_add(&c->in, tmp, (size_t)r);
            continue;
        }
        if (c->ssl != NULL) {
            int e = SSL_get_error(c->ssl, (int)r);
            c->eof = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
        } else {
            c->eof = r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        }
        break;
    }
    ERR_clear_error();
}

static void client_send(struct client *c, const char *text)
{
    buf_add(&c->out, text, strlen(text));
}

static void client_close(struct client *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) {
        (void)close(c->fd);
    }
    c->fd = -1;
}

/* ---- the fake backend (127.0.0.1, answered by the test) ----------------------------------- */

struct backend {
    int lfd;
    unsigned short port;
    int fds[BE_MAX];
    struct buf in[BE_MAX];
    int eof[BE_MAX];
    unsigned n; /* connections accepted */
};

static void backend_start(struct backend *b)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    memset(b, 0, sizeof(*b));
    b->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(b->lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(b->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(b->lfd, 16), 0);
    assert_int_equal(getsockname(b->lfd, (struct sockaddr *)&sa, &len), 0);
    b->port = ntohs(sa.sin_port);
}

static void backend_pump(struct backend *b)
{
    char tmp[16384];
    int fd;

    while (b->n < BE_MAX && (fd = accept(b->lfd, NULL, NULL)) >= 0) {
        assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
        b->fds[b->n++] = fd;
    }
    for (unsigned i = 0; i < b->n; i++) {
        for (int k = 0; k < 64 && !b->eof[i]; k++) {
            ssize_t r = recv(b->fds[i], tmp, sizeof(tmp), MSG_DONTWAIT);
            if (r > 0) {
                buf_add(&b->in[i], tmp, (size_t)r);
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                b->eof[i] = 1;
            }
            break;
        }
    }
}

static void backend_send(struct backend *b, unsigned i, const char *text)
{
    size_t len = strlen(text);

    assert_true(i < b->n);
    assert_int_equal(send(b->fds[i], text, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void backend_stop(struct backend *b)
{
    for (unsigned i = 0; i < b->n; i++) {
        (void)close(b->fds[i]);
    }
    (void)close(b->lfd);
}

/* ---- fixture ------------------------------------------------------------------------------ */

static struct {
    X509 *cert;
    EVP_PKEY *key;
} g;

struct fx {
    struct event_base *base;
    struct torii_config *cfg;
    struct torii_routes *routes;
    struct torii_table *table;
    struct torii_tls_ctx *tls;
    SSL_CTX *cctx;
    struct proxy_worker pw;
    struct backend be;
    struct torii_daemon *daemon;
    char conf_path[64];
    char log_path[64];
};

static int group_setup(void **state)
{
    struct testpki_opts o;
    const char *names[] = {"app.test"};

    (void)state;
    (void)signal(SIGPIPE, SIG_IGN); /* as the daemon does: a peer gone is an error, not a kill */
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "app.test";
    o.dns = names;
    o.n_dns = 1;
    o.not_before_off_s = -3600;
    assert_int_equal(testpki_make(&o, &g.cert, &g.key), 0);
    torii_table_reader_register();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    X509_free(g.cert);
    EVP_PKEY_free(g.key);
    torii_table_reader_unregister();
    return 0;
}

/* A temporary file holding text; its path in path (64 bytes). */
static void write_file(char *path, const char *text)
{
    assert_int_equal(testfile_write(path, 64, "psess", text), 0);
}

static void table_put_edge(struct torii_table *t)
{
    X509 *chain[1] = {g.cert};
    json_t *e = testpki_entity("edge", chain, 1, g.key, NULL);
    unsigned char *rec = NULL;
    size_t len = 0;
    struct torii_errbuf eb = {{0}};

    assert_non_null(e);
    assert_int_equal(torii_certrec_build(e, &rec, &len, &eb), TORII_OK);
    struct torii_pki_key_src ks = torii_pki_key_src_of(e, NULL);
    assert_int_equal(torii_table_update(t, "edge", rec, len, &ks, &eb), TORII_OK);
    torii_secure_free(rec, len);
    json_decref(e);
    torii_table_set_default(t, "edge");
}

/* A worker whose config is extra (JSON members, may be "") plus the routes: app.test and
 * nocert.test (a name the certificate does not cover) to the backend, unless no_routes. */
static struct fx *fx_new(const char *extra, int no_routes)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct torii_errbuf eb = {{0}};
    struct torii_tls_opts to = {0};
    char routes[256] = "";
    char text[1024];

    f->base = event_base_new();
    assert_non_null(f->base);
    backend_start(&f->be);
    if (!no_routes) {
        (void)snprintf(routes, sizeof(routes),
                       "{\"hosts\":[\"app.test\",\"nocert.test\"],"
                       "\"backend\":{\"targets\":[\"127.0.0.1:%u\"]}}",
                       f->be.port);
    }
    (void)snprintf(text, sizeof(text), "{%s%s\"routes\":[%s]}", extra, extra[0] != '\0' ? "," : "",
                   routes);
    write_file(f->conf_path, text);
    assert_int_equal(torii_config_load(f->conf_path, &f->cfg, &eb), TORII_OK);
    assert_int_equal(torii_routes_compile(f->cfg, &f->routes, &eb), TORII_OK);
    assert_int_equal(torii_table_new(&f->table), TORII_OK);
    table_put_edge(f->table);
    to.table = f->table;
    assert_int_equal(torii_tls_ctx_new(&to, &f->tls, &eb), TORII_OK);
    f->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(f->cctx);
    SSL_CTX_set_verify(f->cctx, SSL_VERIFY_NONE, NULL);
    (void)SSL_CTX_set_mode(f->cctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    assert_int_equal(torii_proxy__worker_init(&f->pw, f->base, f->cfg, f->routes, f->tls),
                     TORII_OK);
    return f;
}

static void fx_free(struct fx *f)
{
    (void)torii_proxy__worker_clear(&f->pw);
    torii_daemon_free(f->daemon);
    SSL_CTX_free(f->cctx);
    torii_tls_ctx_free(f->tls);
    torii_table_free(f->table);
    torii_routes_free(f->routes);
    torii_config_free(f->cfg);
    backend_stop(&f->be);
    event_base_free(f->base);
    (void)unlink(f->conf_path);
    if (f->log_path[0] != '\0') {
        torii_log_access_close();
        (void)unlink(f->log_path);
    }
    free(f);
}

/* A new client connection served by the worker: TLS with sni (NULL: none) when tls. */
static void fx_connect(struct fx *f, struct client *c, int tls, const char *sni)
{
    int sv[2];
    struct sockaddr_in peer;

    memset(c, 0, sizeof(*c));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    c->fd = sv[0];
    if (tls) {
        c->ssl = SSL_new(f->cctx);
        assert_non_null(c->ssl);
        assert_int_equal(SSL_set_fd(c->ssl, c->fd), 1);
        if (sni != NULL) {
            assert_int_equal(SSL_set_tlsext_host_name(c->ssl, sni), 1);
        }
        SSL_set_connect_state(c->ssl);
    }
    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    peer.sin_port = htons(40000);
    torii_proxy__accept(&f->pw, sv[1], (const struct sockaddr *)&peer, tls);
}

/* Step the loop, the client and the backend until cond holds (bounded by TEST_WAIT_MS). */
#define RUN_UNTIL(f, c, cond)                                                                      \
    do {                                                                                           \
        int64_t end_ = testclock_now_ms() + TEST_WAIT_MS;                                          \
        while (!(cond) && testclock_now_ms() < end_) {                                             \
            client_pump(c);                                                                        \
            backend_pump(&(f)->be);                                                                \
            loop_once((f)->base);                                                                  \
            client_pump(c);                                                                        \
            backend_pump(&(f)->be);                                                                \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

/* The last chunk and the end of the trailer section have arrived in a chunked body. */
static int chunked_done(const char *body)
{
    const char *z = strncmp(body, "0\r\n", 3) == 0 ? body - 2 : strstr(body, "\r\n0\r\n");

    return z != NULL && strstr(z + 3, "\r\n\r\n") != NULL;
}

/* 1 when b holds, from offset from on, a complete message: head and a body of its
 * Content-Length, or a chunked body up to its end, or no body. */
static int has_message(const struct buf *b, size_t from)
{
    const char *s = b->n > from ? b->d + from : "";
    const char *e = strstr(s, "\r\n\r\n");
    const char *cl;

    if (e == NULL) {
        return 0;
    }
    cl = strstr(s, "Content-Length: ");
    if (cl != NULL && cl < e) {
        return (size_t)(b->d + b->n - (e + 4)) >= strtoul(cl + 16, NULL, 10);
    }
    if (strstr(s, "Transfer-Encoding: chunked") != NULL) {
        return chunked_done(e + 4);
    }
    return 1;
}

/* A complete request has arrived at backend connection i (from offset from on). */
static int has_request(const struct backend *b, unsigned i, size_t from)
{
    return i < b->n && has_message(&b->in[i], from);
}

/* The body of backend connection i contains text. */
static int backend_body_has(const struct backend *b, unsigned i, const char *text)
{
    const char *e = i < b->n ? strstr(b->in[i].d, "\r\n\r\n") : NULL;

    return e != NULL && strstr(e + 4, text) != NULL;
}

/* The status of the first response in client input. */
static int status_of(const struct client *c)
{
    if (c->in.n < 12 || strncmp(c->in.d, "HTTP/1.", 7) != 0) {
        return -1;
    }
    return atoi(c->in.d + 9);
}

/* Decode a chunked body (starting after the head) into out; returns its length. */
static size_t dechunk(const char *p, char *out, size_t cap)
{
    size_t n = 0;

    for (int guard = 0; guard < 1000; guard++) {
        char *end = NULL;
        unsigned long len = strtoul(p, &end, 16);
        assert_non_null(end);
        assert_memory_equal(end, "\r\n", 2);
        if (len == 0) {
            return n;
        }
        assert_true(n + len < cap);
        memcpy(out + n, end + 2, len);
        n += len;
        p = end + 2 + len;
        assert_memory_equal(p, "\r\n", 2);
        p += 2;
    }
    fail_msg("unterminated chunked body");
    return 0;
}

/* ---- a request proxied -------------------------------------------------------------------- */

static void test_request_proxied_and_answered(void **state)
{
    struct fx *f = fx_new("", 0);
    struct client c;
    const char *req;

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    client_send(&c, "GET /hello?x=1 HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, x-hop\r\n"
                    "X-Hop: gone\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n");
    RUN_UNTIL(f, &c, has_request(&f->be, 0, 0));
    req = f->be.in[0].d;
    assert_true(strncmp(req, "GET /hello?x=1 HTTP/1.1\r\n", 25) == 0);
    assert_non_null(strstr(req, "\r\nHost: app.test\r\n"));
    assert_non_null(strstr(req, "\r\nAccept: */*\r\n"));
    assert_non_null(strstr(req, "\r\nX-Forwarded-For: 127.0.0.1\r\n"));
    assert_non_null(strstr(req, "\r\nX-Forwarded-Proto: https\r\n"));
    assert_null(strstr(req, "6.6.6.6"));
    assert_null(strstr(req, "X-Hop"));
    backend_send(&f->be, 0,
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello");
    RUN_UNTIL(f, &c, has_message(&c.in, 0));
    assert_int_equal(status_of(&c), 200);
    assert_non_null(strstr(c.in.d, "\r\nContent-Length: 5\r\n"));
    assert_null(strstr(c.in.d, "Keep-Alive"));
    assert_int_equal(strcmp(strstr(c.in.d, "\r\n\r\n") + 4, "hello"), 0);
    assert_int_equal(f->pw.n_conns, 1); /* kept alive */
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

/* One exchange on client c: req to backend connection i, answered with resp. */
static void exchange(struct fx *f, struct client *c, unsigned i, const char *req, const char *resp)
{
    size_t from_c = c->in.n;
    size_t from_b = i < f->be.n ? f->be.in[i].n : 0;

    client_send(c, req);
    RUN_UNTIL(f, c, has_request(&f->be, i, from_b));
    backend_send(&f->be, i, resp);
    RUN_UNTIL(f, c, has_message(&c->in, from_c));
}

static void test_keepalive_reuses_pooled_backend_connection(void **state)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct fx *f = fx_new("", 0);
    struct client c;
    struct client c2;

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    exchange(f, &c, 0, "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\n", ok);
    /* The upstream went back to the pool: idle and counted. */
    assert_int_equal(f->pw.targets[0].n_idle, 1);
    exchange(f, &c, 0, "GET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n", ok);
    assert_non_null(strstr(f->be.in[0].d, "GET /2 HTTP/1.1"));
    assert_int_equal(f->be.n, 1);
    /* A new client connection takes the same pooled backend connection. */
    fx_connect(f, &c2, 1, "app.test");
    exchange(f, &c2, 0, "GET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n", ok);
    assert_non_null(strstr(f->be.in[0].d, "GET /3 HTTP/1.1"));
    assert_int_equal(f->be.n, 1);
    /* A backend that says close is not pooled: the next request opens a new connection. */
    exchange(f, &c2, 0, "GET /4 HTTP/1.1\r\nHost: app.test\r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    assert_int_equal(f->pw.targets[0].n_idle, 0);
    exchange(f, &c2, 1, "GET /5 HTTP/1.1\r\nHost: app.test\r\n\r\n", ok);
    assert_int_equal(f->be.n, 2);
    assert_non_null(strstr(c.in.d, "\r\n\r\nok"));
    client_close(&c);
    client_close(&c2);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

/* A connection idle between requests gives its request parser back to the worker; the next
 * request of any connection takes it (reset: nothing of the previous request shows). */
static void test_idle_connection_gives_parser_back(void **state)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct fx *f = fx_new("", 0);
    struct client c;
    struct client c2;
    char big[8192];
    size_t from_b;

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    assert_int_equal(f->pw.n_rp_free, 0);
    exchange(f, &c, 0, "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\n", ok);
    assert_int_equal(f->pw.n_rp_free, 1);
    fx_connect(f, &c2, 1, "app.test");
    (void)snprintf(big, sizeof(big), "GET /2 HTTP/1.1\r\nHost: app.test\r\nX-Big: %06000d\r\n\r\n",
                   7);
    exchange(f, &c2, 0, big, ok);
    assert_non_null(strstr(f->be.in[0].d, "X-Big: 000"));
    assert_int_equal(f->pw.n_rp_free, 1); /* the same parser, taken and given back */
    /* A head in progress keeps its parser until the request is complete. */
    from_b = f->be.in[0].n;
    client_send(&c, "GET /3 HTTP/1.1\r\nHo");
    RUN_UNTIL(f, &c, f->pw.n_rp_free == 0);
    client_send(&c, "st: app.test\r\n\r\n");
    RUN_UNTIL(f, &c, has_request(&f->be, 0, from_b));
    assert_non_null(strstr(f->be.in[0].d + from_b, "GET /3 HTTP/1.1\r\n"));
    assert_null(strstr(f->be.in[0].d + from_b, "X-Big"));
    backend_send(&f->be, 0, ok);
    RUN_UNTIL(f, &c, f->pw.n_rp_free == 1);
    client_close(&c);
    client_close(&c2);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

static void test_chunked_bodies_pumped_both_ways(void **state)
{
    struct fx *f = fx_new("", 0);
    struct client c;
    char body[256];
    const char *p;
    size_t n;

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    client_send(&c, "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n");
    RUN_UNTIL(f, &c, backend_body_has(&f->be, 0, "hello\r\n"));
    /* The first chunk went through before the rest of the body exists. */
    assert_null(strstr(f->be.in[0].d, "\r\n0\r\n"));
    client_send(&c, "6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\nContent-Length: 3\r\n\r\n");
    RUN_UNTIL(f, &c, has_request(&f->be, 0, 0));
    p = strstr(f->be.in[0].d, "\r\n\r\n");
    assert_non_null(strstr(f->be.in[0].d, "Transfer-Encoding: chunked"));
    n = dechunk(p + 4, body, sizeof(body));
    assert_int_equal(n, 11);
    assert_memory_equal(body, "hello world", 11);
    assert_non_null(strstr(p, "\r\nX-Sum: 11\r\n")); /* a trailer that may pass */
    assert_null(strstr(p, "Content-Length"));        /* framing fields never do */
    backend_send(&f->be, 0,
                 "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                 "4\r\ndefg\r\n0\r\n\r\n");
    RUN_UNTIL(f, &c, has_message(&c.in, 0));
    assert_int_equal(status_of(&c), 201);
    n = dechunk(strstr(c.in.d, "\r\n\r\n") + 4, body, sizeof(body));
    assert_int_equal(n, 7);
    assert_memory_equal(body, "abcdefg", 7);
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

static void test_close_delimited_response_rechunked_for_http11(void **state)
{
    struct fx *f = fx_new("", 0);
    struct client c;
    char body[64];

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    client_send(&c, "GET /eof HTTP/1.1\r\nHost: app.test\r\n\r\n");
    RUN_UNTIL(f, &c, has_request(&f->be, 0, 0));
    backend_send(&f->be, 0, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof");
    (void)shutdown(f->be.fds[0], SHUT_WR);
    RUN_UNTIL(f, &c, has_message(&c.in, 0));
    assert_non_null(strstr(c.in.d, "Transfer-Encoding: chunked"));
    assert_int_equal(dechunk(strstr(c.in.d, "\r\n\r\n") + 4, body, sizeof(body)), 9);
    assert_memory_equal(body, "until-eof", 9);
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

/* Pipelined requests: the second waits in the input while the first is served, then goes to
 * the same backend connection; the answers come back in order. */
static void test_pipelined_requests_answered_in_order(void **state)
{
    struct fx *f = fx_new("", 0);
    struct client c;
    const char *second;

    (void)state;
    fx_connect(f, &c, 1, "app.test");
    client_send(&c, "GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n"
                    "GET /second HTTP/1.1\r\nHost: app.test\r\n\r\n");
    RUN_UNTIL(f, &c, has_request(&f->be, 0, 0));
    assert_null(strstr(f->be.in[0].d, "/second")); /* one request in flight at a time */
    backend_send(&f->be, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
    RUN_UNTIL(f, &c, strstr(f->be.in[0].d, "GET /second HTTP/1.1") != NULL);
    backend_send(&f->be, 0, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond");
    RUN_UNTIL(f, &c, strstr(c.in.d, "\r\n\r\nsecond") != NULL);
    second = strstr(c.in.d, "\r\n\r\nsecond");
    assert_true(strstr(c.in.d, "\r\n\r\nfirst") < second);
    assert_int_equal(f->be.n, 1);
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fx_free(f);
}

/* ---- admission refusals ------------------------------------------------------------------- */

/* Send req on a new connection; returns the status answered (the text stays in c). */
static int refused(struct fx *f, struct client *c, int tls, const char *sni, const char *req)
{
    fx_connect(f, c, tls, sni);
    client_send(c, req);
    RUN_UNTIL(f, c, has_message(&c->in, 0));
    return status_of(c);
}

static void expect_refusal(struct fx *f, int tls, const char *sni, const char *req, int status,
                           const char *error)
{
    struct client c;

    assert_int_equal(refused(f, &c, tls, sni, req), status);
    if (error != NULL && strstr(c.in.d, error) == NULL) {
        fail_msg("response to '%s' lacks '%s':\n%s", req, error, c.in.d);
    }
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
}

static void test_admission_refusals(void **state)
{
    struct fx *f = fx_new("", 0);

    (void)state;
    expect_refusal(f, 1, "app.test", "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", 400,
                   "missing or invalid Host");
    expect_refusal(f, 1, NULL, "GET / HTTP/1.0\r\n\r\n", 400, "missing or invalid Host");
    expect_refusal(f, 1, "app.test", "GET http://u@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
                   400, "userinfo in request-target");
    expect_refusal(f, 1, "app.test", "GET http://other.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
                   400, "request-target authority differs from Host");
    expect_refusal(f, 1, "app.test", "GET / HTTP/1.1\r\nHost: unrouted.test\r\n\r\n", 421,
                   "no route for this host");
    expect_refusal(f, 1, "app.test", "GET / HTTP/1.1\r\nHost: nocert.test\r\n\r\n", 421,
                   "host not covered by this connection's certificate");
    expect_refusal(f, 1, "app.test", "GET /.well-known/nothing HTTP/1.1\r\nHost: app.test\r\n\r\n",
                   404, "not found");
    /* Plain HTTP: a redirect to the https listener, path and query kept. */
    expect_refusal(f, 0, NULL, "GET /p?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n", 308,
                   "\r\nLocation: https://app.test:8443/p?q=1\r\n");
    /* No byte reached the backend. */
    backend_pump(&f->be);
    assert_int_equal(f->be.n, 0);
    fx_free(f);
}

static void test_admission_no_routes_is_404(void **state)
{
    struct fx *f = fx_new("", 1);

    (void)state;
    expect_refusal(f, 1, "app.test", "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", 404,
                   "no route matched this request");
    fx_free(f);
}

static void test_admission_health_path(void **state)
{
    struct fx *f = fx_new("\"health\":{\"public_path\":\"/lb-health\"}", 0);
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(torii_daemon_new(f->cfg, &f->daemon, &eb), TORII_OK);
    f->pw.daemon = f->daemon;
    /* Starting (not ready): 503, on either listener and for any Host. */
    expect_refusal(f, 1, "app.test", "GET /lb-health HTTP/1.1\r\nHost: app.test\r\n\r\n", 503,
                   "unavailable");
    expect_refusal(f, 0, NULL, "GET /lb-health HTTP/1.1\r\nHost: whatever.test\r\n\r\n", 503,
                   "unavailable");
    expect_refusal(f, 1, "app.test", "POST /lb-health HTTP/1.1\r\nHost: app.test\r\n\r\n", 405,
                   "\r\nAllow: GET, HEAD\r\n");
    fx_free(f);
}

/* ---- access log --------------------------------------------------------------------------- */

/* Lines of text, each ending in a newline; -1 when the last one does not. */
static int count_lines(const char *text)
{
    int n = 0;
    size_t len = strlen(text);

    for (size_t i = 0; i < len; i++) {
        n += text[i] == '\n';
    }
    return len > 0 && text[len - 1] != '\n' ? -1 : n;
}

#define LOGGED_REQ                                                                                 \
    "GET /a%20b?x=1 HTTP/1.1\r\nHost: app.test\r\nReferer: http://r.test/\r\n"                     \
    "User-Agent: ua \"quoted\"\r\n\r\n"

/* The access log file of f after one proxied exchange of LOGGED_REQ (malloc'd text); *out:
 * the bytes the client received. */
static char *logged_exchange(struct fx *f, size_t *out)
{
    struct torii_errbuf eb = {{0}};
    struct client c;
    char *text = torii_xcalloc(1, 4096);
    FILE *fp;
    size_t n;

    write_file(f->log_path, "");
    assert_int_equal(torii_log_access_open(f->log_path, &eb), TORII_OK);
    fx_connect(f, &c, 1, "app.test");
    exchange(f, &c, 0, LOGGED_REQ, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    *out = c.in.n;
    client_close(&c);
    RUN_UNTIL(f, &c, f->pw.n_conns == 0);
    fp = fopen(f->log_path, "r");
    assert_non_null(fp);
    n = fread(text, 1, 4095, fp);
    assert_int_equal(fclose(fp), 0);
    text[n] = '\0';
    return text;
}

static void test_access_log_json(void **state)
{
    struct fx *f = fx_new("\"access_log\":{\"enabled\":true,\"format\":\"json\"}", 0);
    size_t out = 0;
    char *text = logged_exchange(f, &out);
    json_error_t jerr;
    json_t *j;
    char target[32];

    (void)state;
    assert_int_equal(count_lines(text), 1);
    j = json_loads(text, JSON_DISABLE_EOF_CHECK, &jerr);
    if (j == NULL) {
        fail_msg("not JSON (%s): %s", jerr.text, text);
    }
    (void)snprintf(target, sizeof(target), "127.0.0.1:%u", f->be.port);
    assert_string_equal(json_string_value(json_object_get(j, "client")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(j, "sni")), "app.test");
    assert_string_equal(json_string_value(json_object_get(j, "host")), "app.test");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/a%20b?x=1");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_in")), strlen(LOGGED_REQ));
    assert_int_equal(json_integer_value(json_object_get(j, "bytes_out")), out);
    assert_string_equal(json_string_value(json_object_get(j, "upstream")), target);
    assert_true(json_is_number(json_object_get(j, "duration_ms")));
    assert_true(json_is_number(json_object_get(j, "upstream_ms")));
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "time")), "20", 2), 0);
    json_decref(j);
    free(text);
    fx_free(f);
}

static void test_access_log_combined(void **state)
{
    struct fx *f = fx_new("\"access_log\":{\"enabled\":true,\"format\":\"combined\"}", 0);
    size_t out = 0;
    char *text = logged_exchange(f, &out);
    char want[160];
    const char *p;
    double ms = -1;
    char month[4];
    int day = 0;
    int year = 0;

    (void)state;
    /* ip - - [dd/Mon/yyyy:hh:mm:ss +0000] "GET target HTTP/1.1" 200 bytes "ref" "ua" host ms */
    assert_int_equal(strncmp(text, "127.0.0.1 - - [", 15), 0);
    assert_int_equal(sscanf(text + 15, "%2d/%3s/%4d:", &day, month, &year), 3);
    assert_true(day >= 1 && day <= 31 && year >= 2000);
    (void)snprintf(want, sizeof(want),
                   " +0000] \"GET /a%%20b?x=1 HTTP/1.1\" 200 %zu \"http://r.test/\" "
                   "\"ua \\x22quoted\\x22\" app.test ",
                   out);
    p = strstr(text, want);
    if (p == NULL) {
        fail_msg("no '%s' in: %s", want, text);
    }
    assert_int_equal(sscanf(p + strlen(want), "%lf", &ms), 1);
    assert_true(ms >= 0);
    assert_int_equal(count_lines(text), 1);
    free(text);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_proxied_and_answered),
        cmocka_unit_test(test_keepalive_reuses_pooled_backend_connection),
        cmocka_unit_test(test_idle_connection_gives_parser_back),
        cmocka_unit_test(test_chunked_bodies_pumped_both_ways),
        cmocka_unit_test(test_close_delimited_response_rechunked_for_http11),
        cmocka_unit_test(test_pipelined_requests_answered_in_order),
        cmocka_unit_test(test_admission_refusals),
        cmocka_unit_test(test_admission_no_routes_is_404),
        cmocka_unit_test(test_admission_health_path),
        cmocka_unit_test(test_access_log_json),
        cmocka_unit_test(test_access_log_combined),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
