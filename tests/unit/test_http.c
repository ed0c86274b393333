/* test_http.c - the HTTP/1.1 engine: the parser fed raw bytes (whole and one byte at a time),
 * and the connection engine over a bufferevent_pair (responses, pipelining, keep-alive,
 * 100-continue, HEAD, timeouts) plus a corpus of malformed requests, each with its expected
 * status, "Connection: close" and the connection closed. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "testclock.h"
#include "torii/http.h"
#include "torii/log.h"
#include "torii/mem.h"

/* ---- parser-level helpers -------------------------------------------------------------- */

struct parse_result {
    int status;   /* 0 when every request parsed */
    int requests; /* complete requests */
    char last_body[256];
    size_t n_headers, n_trailers;
};

/* Feed data step bytes at a time (0 = all at once), starting over after each request. */
static struct parse_result parse_all(const struct torii_http_limits *lim, const char *data,
                                     size_t len, size_t step)
{
    struct torii_http_parser *p = NULL;
    struct parse_result r;
    size_t off = 0;
    size_t pending_end = 0;

    memset(&r, 0, sizeof(r));
    assert_int_equal(torii_http_parser_new(lim, &p), TORII_OK);
    while (off < len) {
        size_t end = step == 0 ? len : (off + step > len ? len : off + step);
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (end < pending_end) {
            end = pending_end;
        }
        ev = torii_http_parser_feed(p, data + off, end - off, &used);
        off += used;
        pending_end = end;
        if (ev == TORII_HTTP_PARSE_ERROR) {
            r.status = torii_http_parser_error(p, NULL);
            break;
        }
        if (ev == TORII_HTTP_PARSE_DONE) {
            const struct torii_http_req *req = torii_http_parser_req(p);
            assert_non_null(req);
            r.requests++;
            r.n_headers = req->n_headers;
            r.n_trailers = req->n_trailers;
            (void)snprintf(r.last_body, sizeof(r.last_body), "%.*s", (int)req->body_len,
                           req->body != NULL ? (const char *)req->body : "");
            torii_http_parser_next(p);
        }
    }
    torii_http_parser_free(p);
    return r;
}

static void test_parser_get_fields_split(void **state)
{
    static const char raw[] = "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\n"
                              "X-Pad:   padded  \r\nAccept: */*\r\n\r\n";
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    const struct torii_http_req *req;
    const struct torii_slice *v;
    size_t used = 0;

    (void)state;
    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    assert_true(torii_http_parser_idle(p));
    assert_int_equal(torii_http_parser_feed(p, raw, sizeof(raw) - 1, &used), TORII_HTTP_PARSE_DONE);
    assert_int_equal(used, sizeof(raw) - 1);
    req = torii_http_parser_req(p);
    assert_non_null(req);
    assert_string_equal(req->method, "GET");
    assert_int_equal(req->version_minor, 1);
    assert_int_equal(req->path.len, 4);
    assert_memory_equal(req->path.ptr, "/a/b", 4);
    assert_int_equal(req->query.len, 5);
    assert_memory_equal(req->query.ptr, "x=1&y", 5);
    assert_int_equal(req->n_headers, 3);
    v = torii_http_req_header(req, "x-pad");
    assert_non_null(v);
    assert_int_equal(v->len, 6);
    assert_memory_equal(v->ptr, "padded", 6);
    assert_null(torii_http_req_header(req, "Missing"));
    assert_true(req->keep_alive);
    assert_null(req->body);
    torii_http_parser_next(p);
    assert_true(torii_http_parser_idle(p));
    torii_http_parser_free(p);
}

static void test_parser_chunked_trailers_bytewise(void **state)
{
    static const char raw[] = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3;ext=1\r\nabc\r\n5\r\ndefgh\r\n0\r\nX-Trailer: t\r\n\r\n";
    struct torii_http_limits lim;
    struct parse_result r;

    (void)state;
    torii_http_limits_default(&lim);
    for (size_t step = 0; step <= 3; step++) {
        r = parse_all(&lim, raw, sizeof(raw) - 1, step);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.requests, 1);
        assert_string_equal(r.last_body, "abcdefgh");
        assert_int_equal(r.n_headers, 2); /* the trailer is not merged into the headers */
        assert_int_equal(r.n_trailers, 1);
    }
}

/* A chunk-size line (size, extensions, CRLF) of exactly TORII_HTTP_MAX_CHUNK_LINE bytes
 * passes, one byte more is a 400, whole or fed in pieces. */
static void test_parser_chunk_line_limit(void **state)
{
    static const char head[] = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char tail[] = "\r\nhello\r\n0\r\n\r\n";
    size_t cap = sizeof(head) + TORII_HTTP_MAX_CHUNK_LINE + sizeof(tail) + 8;
    char *b = torii_xmalloc(cap);
    struct torii_http_limits lim;

    (void)state;
    torii_http_limits_default(&lim);
    for (size_t extra = 0; extra <= 1; extra++) {
        /* "5;" + name + CRLF */
        size_t ext = TORII_HTTP_MAX_CHUNK_LINE - 4 + extra;
        size_t o = (size_t)snprintf(b, cap, "%s5;", head);
        memset(b + o, 'n', ext);
        o += ext;
        o += (size_t)snprintf(b + o, cap - o, "%s", tail);
        for (size_t step = 0; step <= 7; step += 7) {
            struct parse_result r = parse_all(&lim, b, o, step);
            assert_int_equal(r.status, extra ? 400 : 0);
            assert_int_equal(r.requests, extra ? 0 : 1);
            if (!extra) {
                assert_string_equal(r.last_body, "hello");
            }
        }
    }
    free(b);
}

/* Empty lines (CRLF, or a bare LF as `echo` sends) before a request are skipped and do not
 * start one: the parser stays idle, and the request that follows parses. */
static void test_parser_empty_lines_before_request(void **state)
{
    static const char req[] = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    struct parse_result r;
    size_t used = 0;

    (void)state;
    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    assert_int_equal(torii_http_parser_feed(p, "\n", 1, &used), TORII_HTTP_PARSE_MORE);
    assert_int_equal(used, 1);
    assert_int_equal(torii_http_parser_feed(p, "\r\n\r", 3, &used), TORII_HTTP_PARSE_MORE);
    assert_int_equal(used, 3);
    assert_true(torii_http_parser_idle(p));
    assert_false(torii_http_parser_started(p));
    torii_http_parser_free(p);
    for (size_t step = 0; step <= 1; step++) {
        r = parse_all(&lim, req, sizeof(req) - 1, step);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.requests, 1);
    }
    /* only before the request line: a bare LF after it is still an error */
    {
        static const char bad[] = "\nGET / HTTP/1.1\nHost: a\r\n\r\n";
        r = parse_all(&lim, bad, sizeof(bad) - 1, 0);
    }
    assert_int_equal(r.status, 400);
}

static void test_parser_pipeline_stops_per_request(void **state)
{
    static const char raw[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
                              "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    size_t off = 0;
    size_t used = 0;
    const char *paths[] = {"/1", "/2", "/3"};

    (void)state;
    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    for (int i = 0; i < 3; i++) {
        enum torii_http_parse_ev ev =
            torii_http_parser_feed(p, raw + off, sizeof(raw) - 1 - off, &used);
        off += used;
        if (ev == TORII_HTTP_PARSE_HEAD) {
            assert_int_equal(i, 1);
            ev = torii_http_parser_feed(p, raw + off, sizeof(raw) - 1 - off, &used);
            off += used;
        }
        assert_int_equal(ev, TORII_HTTP_PARSE_DONE);
        assert_int_equal(torii_http_parser_req(p)->path.len, 2);
        assert_memory_equal(torii_http_parser_req(p)->path.ptr, paths[i], 2);
        torii_http_parser_next(p);
    }
    assert_int_equal(off, sizeof(raw) - 1);
    torii_http_parser_free(p);
}

/* A parser reset after a rejected request, then after a request with a large head, parses the
 * next request as a new parser would (the one a worker hands to another connection). */
static void test_parser_reset_is_like_new(void **state)
{
    static const char bad[] = "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n";
    static const char good[] = "GET /next HTTP/1.1\r\nHost: b\r\n\r\n";
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    char big[8192];
    size_t used = 0;
    int n;

    (void)state;
    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    assert_int_equal(torii_http_parser_feed(p, bad, sizeof(bad) - 1, &used),
                     TORII_HTTP_PARSE_ERROR);
    assert_int_not_equal(torii_http_parser_error(p, NULL), 0);
    torii_http_parser_reset(p);
    assert_int_equal(torii_http_parser_error(p, NULL), 0);
    assert_true(torii_http_parser_idle(p));
    n = snprintf(big, sizeof(big), "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: %06000d\r\n\r\n", 7);
    assert_true(n > 6000 && (size_t)n < sizeof(big));
    assert_int_equal(torii_http_parser_feed(p, big, (size_t)n, &used), TORII_HTTP_PARSE_DONE);
    assert_int_equal(torii_http_parser_req(p)->n_headers, 2);
    torii_http_parser_next(p);
    torii_http_parser_reset(p); /* drops the 8 KiB field buffer */
    assert_int_equal(torii_http_parser_feed(p, good, sizeof(good) - 1, &used),
                     TORII_HTTP_PARSE_DONE);
    assert_int_equal(used, sizeof(good) - 1);
    assert_int_equal(torii_http_parser_req(p)->n_headers, 1);
    assert_memory_equal(torii_http_parser_req(p)->path.ptr, "/next", 5);
    assert_null(torii_http_req_header(torii_http_parser_req(p), "x-big"));
    torii_http_parser_free(p);
}

static void test_parser_http10_keepalive_flags(void **state)
{
    static const char close10[] = "GET / HTTP/1.0\r\n\r\n";
    static const char keep10[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    static const char close11[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n";
    const char *raws[] = {close10, keep10, close11};
    const int want[] = {0, 1, 0};
    struct torii_http_limits lim;

    (void)state;
    torii_http_limits_default(&lim);
    for (size_t i = 0; i < 3; i++) {
        struct torii_http_parser *p = NULL;
        size_t used = 0;
        assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
        assert_int_equal(torii_http_parser_feed(p, raws[i], strlen(raws[i]), &used),
                         TORII_HTTP_PARSE_DONE);
        assert_int_equal(torii_http_parser_req(p)->keep_alive, want[i]);
        torii_http_parser_free(p);
    }
}

/* ---- engine fixture over a bufferevent_pair -------------------------------------------- */

struct fx {
    struct event_base *base;
    struct bufferevent *client;
    struct torii_http_conn *conn;
    struct evbuffer *got;
    int closed;
    int handled;
};

static void fx_close_cb(struct torii_http_conn *conn, void *arg)
{
    struct fx *f = arg;
    (void)conn;
    f->closed = 1;
    f->conn = NULL;
}

static void fx_handler(struct torii_http_exchange *ex, const struct torii_http_req *req, void *arg)
{
    struct fx *f = arg;
    char body[512];
    int n;
    const struct torii_http_header extra[] = {
        {{"X-Ok", 4}, {"yes", 3}},
        {{"X-Bad", 5}, {"a\r\nInjected: 1", 15}},
        {{"Bad Name", 8}, {"v", 1}},
    };

    f->handled++;
    n = snprintf(body, sizeof(body), "%s %.*s q=%.*s body=%.*s h=%zu t=%zu", req->method,
                 (int)req->path.len, req->path.ptr, (int)req->query.len, req->query.ptr,
                 (int)req->body_len, req->body != NULL ? (const char *)req->body : "",
                 req->n_headers, req->n_trailers);
    torii_http_respond(ex, 200, "text/plain", body, (size_t)n, extra, 3);
}

static void fx_client_read(struct bufferevent *bev, void *arg)
{
    struct fx *f = arg;
    (void)evbuffer_add_buffer(f->got, bufferevent_get_input(bev));
}

static void fx_client_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    (void)arg;
}

static void fx_open(struct fx *f, const struct torii_http_limits *lim)
{
    struct bufferevent *pair[2];
    struct torii_http_conn_opts o;

    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(
        bufferevent_pair_new(f->base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair), 0);
    f->client = pair[1];
    f->got = evbuffer_new();
    bufferevent_setcb(f->client, fx_client_read, NULL, fx_client_event, f);
    assert_int_equal(bufferevent_enable(f->client, EV_READ | EV_WRITE), 0);
    memset(&o, 0, sizeof(o));
    o.base = f->base;
    o.lim = lim;
    o.peer = "127.0.0.1:1234";
    o.cb = fx_handler;
    o.arg = f;
    o.close_cb = fx_close_cb;
    o.close_arg = f;
    assert_int_equal(torii_http_conn_open(&o, pair[0], &f->conn), TORII_OK);
}

static void fx_close(struct fx *f)
{
    torii_http_conn_free(f->conn);
    bufferevent_free(f->client);
    evbuffer_free(f->got);
    event_base_free(f->base);
}

/* Run the loop until cond(f) holds or ms pass. */
static void fx_run(struct fx *f, int (*cond)(struct fx *, int), int arg, int ms)
{
    int64_t end = testclock_now_ms() + ms;

    while (testclock_now_ms() < end) {
        (void)event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (cond != NULL && cond(f, arg)) {
            return;
        }
        struct timespec ts = {0, 1000000};
        (void)nanosleep(&ts, NULL);
    }
}

static void fx_send(struct fx *f, const char *data, size_t len)
{
    assert_int_equal(bufferevent_write(f->client, data, len), 0);
}

/* Parsed responses from f->got. */
struct resp {
    int status;
    char connection[32];
    char ctype[64];
    int has_x_bad;
    int has_injected;
    long clen;
    char body[1024];
};

/* Parse up to max responses; head_only: no body follows. Returns the number complete. */
static int parse_responses(struct fx *f, struct resp *out, int max, int head_only)
{
    size_t len = evbuffer_get_length(f->got);
    const char *s = (const char *)evbuffer_pullup(f->got, -1);
    size_t off = 0;
    int n = 0;

    while (n < max && off < len) {
        const char *end = NULL;
        struct resp *r = &out[n];
        const char *line;

        for (size_t i = off; i + 3 < len; i++) {
            if (memcmp(s + i, "\r\n\r\n", 4) == 0) {
                end = s + i;
                break;
            }
        }
        if (end == NULL) {
            break;
        }
        memset(r, 0, sizeof(*r));
        r->clen = -1;
        if (sscanf(s + off, "HTTP/1.1 %d", &r->status) != 1) {
            break;
        }
        for (line = s + off; line < end;) {
            const char *eol = line;
            while (eol < end && *eol != '\r') {
                eol++;
            }
            size_t ll = (size_t)(eol - line);
            if (ll > 12 && strncasecmp(line, "Connection: ", 12) == 0) {
                (void)snprintf(r->connection, sizeof(r->connection), "%.*s", (int)(ll - 12),
                               line + 12);
            } else if (ll > 14 && strncasecmp(line, "Content-Type: ", 14) == 0) {
                (void)snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)(ll - 14), line + 14);
            } else if (ll > 16 && strncasecmp(line, "Content-Length: ", 16) == 0) {
                r->clen = strtol(line + 16, NULL, 10);
            } else if (ll >= 6 && strncasecmp(line, "X-Bad:", 6) == 0) {
                r->has_x_bad = 1;
            } else if (ll >= 9 && strncasecmp(line, "Injected:", 9) == 0) {
                r->has_injected = 1;
            }
            line = eol + 2;
        }
        off = (size_t)(end - s) + 4;
        if (!head_only && r->clen > 0) {
            if (off + (size_t)r->clen > len) {
                break;
            }
            (void)snprintf(r->body, sizeof(r->body), "%.*s", (int)r->clen, s + off);
            off += (size_t)r->clen;
        }
        n++;
    }
    return n;
}

static int cond_responses(struct fx *f, int want)
{
    struct resp r[8];
    return parse_responses(f, r, 8, 0) >= want;
}

static int cond_closed(struct fx *f, int unused)
{
    (void)unused;
    return f->closed;
}

static void limits_small(struct torii_http_limits *lim)
{
    torii_http_limits_default(lim);
    lim->max_body = 1024;
    lim->max_headers = 20;
    lim->max_header_bytes = 2048;
    lim->max_target = 256;
}

static void test_conn_get_keepalive(void **state)
{
    static const char raw[] = "GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 2, 0), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].ctype, "text/plain");
    assert_string_equal(r[0].body, "GET /x q=y=1 body= h=1 t=0");
    assert_string_equal(r[0].connection, ""); /* HTTP/1.1 default: persistent */
    assert_false(r[0].has_x_bad);
    assert_false(r[0].has_injected);
    assert_false(f.closed);
    fx_close(&f);
}

static void test_conn_post_content_length(void **state)
{
    static const char raw[] = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 2, 0), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "POST /p q= body=hello h=2 t=0");
    fx_close(&f);
}

static void test_conn_chunked_trailers(void **state)
{
    static const char raw[] = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 2, 0), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "POST /c q= body=wikipedia h=2 t=2");
    fx_close(&f);
}

static void test_conn_pipeline_three_in_order(void **state)
{
    static const char raw[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                              "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[4];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 3, 2000);
    assert_int_equal(parse_responses(&f, r, 4, 0), 3);
    assert_string_equal(r[0].body, "GET /1 q= body= h=1 t=0");
    assert_string_equal(r[1].body, "POST /2 q= body=abc h=2 t=0");
    assert_string_equal(r[2].body, "GET /3 q= body= h=1 t=0");
    assert_false(f.closed);
    fx_close(&f);
}

static void test_conn_http10_close_and_keepalive(void **state)
{
    static const char keep[] = "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    static const char plain[] = "GET /c HTTP/1.0\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[3];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, keep, sizeof(keep) - 1);
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 3, 0), 1);
    assert_string_equal(r[0].connection, "keep-alive");
    assert_false(f.closed);
    fx_send(&f, plain, sizeof(plain) - 1);
    fx_run(&f, cond_closed, 0, 2000);
    assert_int_equal(parse_responses(&f, r, 3, 0), 2);
    assert_string_equal(r[1].connection, "close");
    assert_string_equal(r[1].body, "GET /c q= body= h=0 t=0");
    assert_true(f.closed);
    fx_close(&f);
}

static void test_conn_connection_close_honoured(void **state)
{
    static const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                              "GET /never HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[3];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 1, 2000);
    bufferevent_flush(f.client, EV_WRITE, BEV_FINISHED);
    fx_run(&f, cond_closed, 0, 2000);
    assert_int_equal(parse_responses(&f, r, 3, 0), 1);
    assert_string_equal(r[0].connection, "close");
    assert_int_equal(f.handled, 1);
    assert_true(f.closed);
    fx_close(&f);
}

static int cond_got_bytes(struct fx *f, int n)
{
    return evbuffer_get_length(f->got) >= (size_t)n;
}

static void test_conn_expect_100_continue(void **state)
{
    static const char head[] = "PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                               "Expect: 100-continue\r\n\r\n";
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, head, sizeof(head) - 1);
    fx_run(&f, cond_got_bytes, (int)sizeof(cont) - 1, 2000);
    assert_int_equal(evbuffer_get_length(f.got), sizeof(cont) - 1);
    assert_memory_equal(evbuffer_pullup(f.got, -1), cont, sizeof(cont) - 1);
    assert_int_equal(f.handled, 0);
    (void)evbuffer_drain(f.got, sizeof(cont) - 1);
    fx_send(&f, "data", 4);
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 2, 0), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "PUT /e q= body=data h=3 t=0");
    fx_close(&f);
}

static void test_conn_head_has_no_body(void **state)
{
    static const char raw[] = "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];
    const char *s;
    size_t len;

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_got_bytes, 20, 2000);
    fx_run(&f, NULL, 0, 50);
    assert_int_equal(parse_responses(&f, r, 2, 1), 1);
    assert_int_equal(r[0].status, 200);
    assert_true(r[0].clen > 0); /* the length of the GET body */
    len = evbuffer_get_length(f.got);
    s = (const char *)evbuffer_pullup(f.got, -1);
    assert_memory_equal(s + len - 4, "\r\n\r\n", 4); /* nothing after the head */
    fx_close(&f);
}

static void test_conn_header_timeout_408(void **state)
{
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[2];

    (void)state;
    limits_small(&lim);
    lim.header_timeout_ms = 150;
    fx_open(&f, &lim);
    /* Slowloris: trickle bytes; the deadline counts from the first one. */
    fx_send(&f, "GET / HTTP/1.1\r\n", 16);
    for (int i = 0; i < 4 && !f.closed; i++) {
        fx_run(&f, NULL, 0, 50);
        fx_send(&f, "X", 1);
    }
    fx_run(&f, cond_responses, 1, 2000);
    assert_int_equal(parse_responses(&f, r, 2, 0), 1);
    assert_int_equal(r[0].status, 408);
    assert_string_equal(r[0].connection, "close");
    assert_string_equal(r[0].body, "{\"error\":\"request timeout\"}");
    fx_run(&f, cond_closed, 0, 2000);
    assert_true(f.closed);
    fx_close(&f);
}

static void test_conn_idle_timeout_closes(void **state)
{
    struct torii_http_limits lim;
    struct fx f;

    (void)state;
    limits_small(&lim);
    lim.idle_timeout_ms = 100;
    fx_open(&f, &lim);
    fx_run(&f, cond_closed, 0, 2000);
    assert_true(f.closed);
    assert_int_equal(evbuffer_get_length(f.got), 0);
    fx_close(&f);
}

/* A client that sends only an empty line and closes (`echo | openssl s_client`) sent no
 * request: no response, the connection just closes. */
static void test_conn_empty_line_then_close(void **state)
{
    struct torii_http_limits lim;
    struct fx f;

    (void)state;
    limits_small(&lim);
    for (int crlf = 0; crlf <= 1; crlf++) {
        fx_open(&f, &lim);
        fx_send(&f, crlf ? "\r\n" : "\n", crlf ? 2 : 1);
        bufferevent_flush(f.client, EV_WRITE, BEV_FINISHED);
        fx_run(&f, cond_closed, 0, 2000);
        assert_true(f.closed);
        assert_int_equal(evbuffer_get_length(f.got), 0);
        assert_int_equal(f.handled, 0);
        fx_close(&f);
    }
}

static void test_conn_max_requests_closes(void **state)
{
    static const char raw[] =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[3];

    (void)state;
    limits_small(&lim);
    lim.max_requests = 2;
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_closed, 0, 3000);
    assert_int_equal(parse_responses(&f, r, 3, 0), 2);
    assert_string_equal(r[0].connection, "");
    assert_string_equal(r[1].connection, "close");
    assert_true(f.closed);
    fx_close(&f);
}

/* torii_slice_eq_ci (inline, ASCII) agrees with strncasecmp in the C locale on every pair
 * of bytes, and a length difference or an embedded NUL is never equal. */
static void test_slice_eq_ci_matches_strncasecmp(void **state)
{
    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 1; b < 256; b++) {
            char sa[1] = {(char)a};
            char lit[2] = {(char)b, '\0'};
            int want = strncasecmp(sa, lit, 1) == 0;
            assert_int_equal(torii_slice_eq_ci((struct torii_slice){sa, 1}, lit), want);
        }
    }
    assert_true(torii_slice_eq_ci((struct torii_slice){"cOnTeNt-LeNgTh", 14}, "Content-Length"));
    assert_false(torii_slice_eq_ci((struct torii_slice){"Content-Lengths", 15}, "Content-Length"));
    assert_false(torii_slice_eq_ci((struct torii_slice){"Host", 3}, "Host"));
    assert_false(torii_slice_eq_ci((struct torii_slice){"Ho\0t", 4}, "Host"));
    assert_false(torii_slice_eq_ci((struct torii_slice){"[", 1}, "{"));
    assert_true(torii_slice_eq_ci((struct torii_slice){"", 0}, ""));
}

/* The elements torii_http_list_next finds in v, joined by '|' into out; each must lie inside
 * v. Returns how many. */
static size_t list_join(const char *v, char *out, size_t cap)
{
    struct torii_http_list it;
    struct torii_slice tok = {NULL, 0};
    struct torii_slice sv = {v, strlen(v)};
    size_t used = 0;
    size_t n = 0;

    out[0] = '\0';
    torii_http_list_init(&it, sv);
    while (n < 64 && torii_http_list_next(&it, &tok)) {
        assert_true(tok.len > 0 && tok.ptr >= v && tok.ptr + tok.len <= v + sv.len);
        assert_true(used + tok.len + 2 <= cap);
        if (n > 0) {
            out[used++] = '|';
        }
        memcpy(out + used, tok.ptr, tok.len);
        used += tok.len;
        out[used] = '\0';
        n++;
    }
    assert_false(torii_http_list_next(&it, &tok)); /* the end stays the end */
    return n;
}

static void test_list_iterator_elements(void **state)
{
    /* value, elements joined by '|', count */
    static const struct {
        const char *v, *want;
        size_t n;
    } cases[] = {
        {"", "", 0},
        {",", "", 0},
        {" , ,\t,, ", "", 0},
        {"\t", "", 0},
        {"a", "a", 1},
        {",a,", "a", 1},
        {"close", "close", 1},
        {"keep-alive, Upgrade", "keep-alive|Upgrade", 2},
        {"a,\tb", "a|b", 2},
        {"a\t,b ", "a|b", 2},
        {"x ,  ,y\t\t", "x|y", 2},
        {"a b, c", "a b|c", 2},         /* inner whitespace stays in the element */
        {"\"a,b\", c", "\"a|b\"|c", 3}, /* quotes mean nothing: the comma splits */
        {"a;q=1 , b", "a;q=1|b", 2},
    };
    char out[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = list_join(cases[i].v, out, sizeof(out));
        assert_string_equal(out, cases[i].want);
        assert_int_equal(n, cases[i].n);
    }
}

/* The value's length bounds the walk, not a NUL: a slice cut short of its string. */
static void test_list_iterator_slice_bound(void **state)
{
    struct torii_http_list it;
    struct torii_slice tok;
    static const char v[] = "gzip, br";

    (void)state;
    torii_http_list_init(&it, (struct torii_slice){v, 6});
    assert_true(torii_http_list_next(&it, &tok));
    assert_int_equal(tok.len, 4);
    assert_memory_equal(tok.ptr, "gzip", 4);
    assert_false(torii_http_list_next(&it, &tok));
    torii_http_list_init(&it, (struct torii_slice){v, 7});
    assert_true(torii_http_list_next(&it, &tok));
    assert_true(torii_http_list_next(&it, &tok));
    assert_int_equal(tok.len, 1);
    assert_memory_equal(tok.ptr, "b", 1);
    assert_false(torii_http_list_next(&it, &tok));
}

/* Connection tokens as the request policy reads them (through the list walk): the full parser
 * and the one-pass reader agree. */
static void test_parser_connection_list_tokens(void **state)
{
    static const char *const raws[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: ,\t close ,,\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: te,CLOSE\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: upgrade ,keep-alive\t\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive-x\r\n\r\n",
    };
    static const int want[] = {0, 1, 0, 1, 0, 0};
    struct torii_http_limits lim;

    (void)state;
    torii_http_limits_default(&lim);
    for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++) {
        for (int one_pass = 0; one_pass < 2; one_pass++) {
            struct torii_http_parser *p = NULL;
            size_t used = 0;
            assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
            torii_http_parser_set_one_pass(p, one_pass);
            assert_int_equal(torii_http_parser_feed(p, raws[i], strlen(raws[i]), &used),
                             TORII_HTTP_PARSE_DONE);
            assert_int_equal(torii_http_parser_req(p)->keep_alive, want[i]);
            torii_http_parser_free(p);
        }
    }
}

/* One head through a new parser: its outcome (DONE or ERROR). */
static enum torii_http_parse_ev parse_one_head(const char *raw, size_t len)
{
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    enum torii_http_parse_ev ev;
    size_t used = 0;

    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    ev = torii_http_parser_feed(p, raw, len, &used);
    torii_http_parser_free(p);
    return ev;
}

/* Every byte value at every offset of a long field name and a long field value (both sides
 * of the scanner's 8-byte words) is judged the same: a value takes HTAB, SP, VCHAR and
 * obs-text; a name takes tchar, and ':' ends it. */
static void test_parser_byte_in_long_runs(void **state)
{
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";

    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        int name_ok = (b >= '0' && b <= '9') || ((b | 0x20u) >= 'a' && (b | 0x20u) <= 'z')
                      || (b != 0 && strchr(tchar_extra, (int)b) != NULL) || b == ':';
        int value_ok = b == '\t' || (b >= 0x20 && b != 0x7f);
        for (size_t off = 2; off < 20; off++) {
            static const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\n";
            const size_t np = sizeof(pre) - 1;
            char raw[96];
            char name[] = "X-aaaaaaaaaaaaaaaaaaaa: v\r\n\r\n";
            char value[] = "X-V: vvvvvvvvvvvvvvvvvvvvvv\r\n\r\n";

            name[off] = (char)b;
            memcpy(raw, pre, np);
            memcpy(raw + np, name, sizeof(name) - 1);
            assert_int_equal(parse_one_head(raw, np + sizeof(name) - 1),
                             name_ok ? TORII_HTTP_PARSE_DONE : TORII_HTTP_PARSE_ERROR);
            value[5 + off] = (char)b;
            memcpy(raw + np, value, sizeof(value) - 1);
            assert_int_equal(parse_one_head(raw, np + sizeof(value) - 1),
                             value_ok ? TORII_HTTP_PARSE_DONE : TORII_HTTP_PARSE_ERROR);
        }
    }
}

static void test_response_write_drops_bad_headers(void **state)
{
    struct evbuffer *b = evbuffer_new();
    const struct torii_http_header extra[] = {
        {{"X-A", 3}, {"1", 1}},
        {{"X-B", 3}, {"x\ry", 3}},
        {{"Content-Length", 14}, {"9", 1}},
        {{"Set-Cookie", 10}, {"a=b", 3}},
    };
    struct torii_http_response r;
    char *s;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.status = 204;
    r.extra = extra;
    r.n_extra = 4;
    r.version_minor = 1;
    assert_int_equal(torii_http_response_write(b, &r), TORII_OK);
    s = torii_xstrndup((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
    assert_non_null(strstr(s, "HTTP/1.1 204 No Content\r\nDate: "));
    assert_non_null(strstr(s, " GMT\r\n"));
    assert_non_null(strstr(s, "\r\nX-A: 1\r\n"));
    assert_non_null(strstr(s, "\r\nSet-Cookie: a=b\r\n"));
    assert_null(strstr(s, "X-B"));
    assert_null(strstr(s, "Content-Length"));
    free(s);
    evbuffer_free(b);
    assert_string_equal(torii_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(torii_http_reason(299), "Unknown");
}

/* ---- malformed corpus ------------------------------------------------------------------ */

struct bad_case {
    const char *name;
    const char *raw; /* NULL: built by make_big() */
    size_t len;      /* 0: strlen */
    int status;
};

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"

static const struct bad_case bad_cases[] = {
    {"header section too large", NULL, 0, 431},
    {"too many fields", NULL, 1, 431},
    {"target too long", NULL, 2, 414},
    {"declared body too large", P11 "Content-Length: 2000\r\n\r\n", 0, 413},
    {"chunk larger than max_body", P11 "Transfer-Encoding: chunked\r\n\r\n800\r\n", 0, 413},
    {"chunks add up past max_body", NULL, 3, 413},
    {"CL and TE", P11 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400},
    {"TE and CL", P11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 0, 400},
    {"TE gzip", P11 "Transfer-Encoding: gzip\r\n\r\nabc", 0, 501},
    {"TE gzip, chunked", P11 "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, 501},
    {"TE chunked, chunked", P11 "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0, 501},
    {"TE twice", P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0,
     501},
    {"CL plus sign", P11 "Content-Length: +3\r\n\r\nabc", 0, 400},
    {"CL negative", P11 "Content-Length: -3\r\n\r\nabc", 0, 400},
    {"CL trailing junk", P11 "Content-Length: 3x\r\n\r\nabc", 0, 400},
    {"CL empty", P11 "Content-Length: \r\n\r\n", 0, 400},
    {"CL differing list", P11 "Content-Length: 3, 4\r\n\r\nabc", 0, 400},
    {"CL differing duplicates", P11 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 0, 400},
    {"CL overflow", P11 "Content-Length: 99999999999999999999999\r\n\r\n", 0, 400},
    {"bare CR in value", H11 "X: a\rb\r\n\r\n", 0, 400},
    {"bare CR line end", H11 "X: a\r\r\n\r\n", 0, 400},
    {"bare LF line end", "GET / HTTP/1.1\nHost: a\n\n", 0, 400},
    {"bare LF in fields", H11 "X: a\n\r\n", 0, 400},
    {"NUL in value", H11 "X: a\0b\r\n\r\n", sizeof(H11 "X: a\0b\r\n\r\n") - 1, 400},
    {"control char in value", H11 "X: a\x01z\r\n\r\n", 0, 400},
    {"whitespace before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, 400},
    {"tab before colon", H11 "X\t: a\r\n\r\n", 0, 400},
    {"obs-fold", H11 "X: a\r\n b\r\n\r\n", 0, 400},
    {"leading whitespace first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, 400},
    {"field without colon", H11 "NoColon\r\n\r\n", 0, 400},
    {"missing Host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", 0, 400},
    {"two Host lines", H11 "Host: b\r\n\r\n", 0, 400},
    {"HTTP/1.0 with TE", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400},
    {"chunk size overflow", P11 "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 0, 400},
    {"non-hex chunk size", P11 "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 0, 400},
    {"negative chunk size", P11 "Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", 0, 400},
    {"bare LF after chunk size", P11 "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 0,
     400},
    {"bare LF in trailer", P11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n", 0, 400},
    {"obs-fold in trailer", P11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", 0,
     400},
    {"invalid method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, 400},
    {"HTTP/2.0 over 1.1 framing", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 505},
    {"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, 400},
    {"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 0, 501},
    {"unknown expectation", P11 "Content-Length: 1\r\nExpect: 200-ok\r\n\r\nx", 0, 417},
    {"empty request-target", "CONNECT \r\n\r\n", 0, 400},
    {"empty field name", H11 ": v\r\n\r\n", 0, 400},
    {"empty field name first", "GET / HTTP/1.1\r\n: v\r\nHost: a\r\n\r\n", 0, 400},
    {"empty field name in trailer", P11 "Transfer-Encoding: chunked\r\n\r\n0\r\n: v\r\n\r\n", 0,
     400},
    {"chunk extension of 70,000 bytes", NULL, 4, 400},
    {"chunk extension too long in a later chunk", NULL, 5, 400},
    {"chunk-size line too long (zeros)", NULL, 6, 400},
    {"too many trailer fields", NULL, 7, 431},
    {"trailer section too large", NULL, 8, 431},
};

/* Oversized inputs, built at run time. */
static char *make_big(size_t which, size_t *len)
{
    size_t cap = 128 * 1024;
    char *b = torii_xmalloc(cap);
    size_t o = 0;

    switch (which) {
    case 0: /* one 3000-byte value, limit 2048 */
        o += (size_t)snprintf(b, cap, H11 "X: ");
        memset(b + o, 'a', 3000);
        o += 3000;
        o += (size_t)snprintf(b + o, cap - o, "\r\n\r\n");
        break;
    case 1: /* 21 fields, limit 20 */
        o += (size_t)snprintf(b, cap, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < 21; i++) {
            o += (size_t)snprintf(b + o, cap - o, "X-%d: v\r\n", i);
        }
        o += (size_t)snprintf(b + o, cap - o, "\r\n");
        break;
    case 2: /* 300-byte target, limit 256 */
        o += (size_t)snprintf(b, cap, "GET /");
        memset(b + o, 'p', 300);
        o += 300;
        o += (size_t)snprintf(b + o, cap - o, " HTTP/1.1\r\nHost: a\r\n\r\n");
        break;
    case 4: /* a 70,000-byte extension on the first chunk-size line */
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n5;");
        memset(b + o, 'a', 70000);
        o += 70000;
        o += (size_t)snprintf(b + o, cap - o, "\r\nhello\r\n0\r\n\r\n");
        break;
    case 5: /* a good chunk, then one whose extension passes TORII_HTTP_MAX_CHUNK_LINE */
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2;");
        memset(b + o, 'e', TORII_HTTP_MAX_CHUNK_LINE);
        o += TORII_HTTP_MAX_CHUNK_LINE;
        o += (size_t)snprintf(b + o, cap - o, "\r\nde\r\n0\r\n\r\n");
        break;
    case 6: /* leading zeros: a chunk size of 5 written in 5000 digits */
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n");
        memset(b + o, '0', 4999);
        o += 4999;
        o += (size_t)snprintf(b + o, cap - o, "5\r\nhello\r\n0\r\n\r\n");
        break;
    case 7: /* 21 trailer fields, limit 20 */
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n");
        for (int i = 0; i < 21; i++) {
            o += (size_t)snprintf(b + o, cap - o, "T-%d: v\r\n", i);
        }
        o += (size_t)snprintf(b + o, cap - o, "\r\n");
        break;
    case 8: /* one 3000-byte trailer value, limit 2048 */
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n0\r\nT: ");
        memset(b + o, 't', 3000);
        o += 3000;
        o += (size_t)snprintf(b + o, cap - o, "\r\n\r\n");
        break;
    case 3: /* two chunks of 600, limit 1024 */
    default:
        o += (size_t)snprintf(b, cap, P11 "Transfer-Encoding: chunked\r\n\r\n258\r\n");
        memset(b + o, 'c', 600);
        o += 600;
        o += (size_t)snprintf(b + o, cap - o, "\r\n258\r\n");
        memset(b + o, 'd', 600);
        o += 600;
        o += (size_t)snprintf(b + o, cap - o, "\r\n0\r\n\r\n");
        break;
    }
    *len = o;
    return b;
}

static void test_corpus_parser_statuses(void **state)
{
    struct torii_http_limits lim;

    (void)state;
    limits_small(&lim);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        char *big = NULL;
        const char *raw = c->raw;
        size_t len = c->len;

        if (raw == NULL) {
            big = make_big(c->len, &len);
            raw = big;
        } else if (len == 0) {
            len = strlen(raw);
        }
        for (size_t step = 0; step <= 1; step++) {
            struct parse_result r = parse_all(&lim, raw, len, step);
            if (r.status != c->status) {
                print_error("case \"%s\" (step %zu): got %d, want %d\n", c->name, step, r.status,
                            c->status);
            }
            assert_int_equal(r.status, c->status);
            assert_int_equal(r.requests, 0);
        }
        free(big);
    }
}

static void test_corpus_conn_replies_and_closes(void **state)
{
    struct torii_http_limits lim;

    (void)state;
    limits_small(&lim);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        char *big = NULL;
        const char *raw = c->raw;
        size_t len = c->len;
        struct fx f;
        struct resp r[2];
        int n;

        if (raw == NULL) {
            big = make_big(c->len, &len);
            raw = big;
        } else if (len == 0) {
            len = strlen(raw);
        }
        fx_open(&f, &lim);
        fx_send(&f, raw, len);
        fx_run(&f, cond_responses, 1, 2000);
        /* Like a client that read "Connection: close": close our side too. */
        bufferevent_flush(f.client, EV_WRITE, BEV_FINISHED);
        fx_run(&f, cond_closed, 0, 2000);
        n = parse_responses(&f, r, 2, 0);
        if (n != 1 || r[0].status != c->status || !f.closed) {
            print_error("case \"%s\": n=%d status=%d closed=%d\n", c->name, n,
                        n > 0 ? r[0].status : 0, f.closed);
        }
        assert_int_equal(n, 1);
        assert_int_equal(r[0].status, c->status);
        assert_string_equal(r[0].connection, "close");
        assert_string_equal(r[0].ctype, "application/json");
        assert_memory_equal(r[0].body, "{\"error\":\"", 10);
        assert_int_equal(f.handled, 0);
        assert_true(f.closed);
        fx_close(&f);
        free(big);
    }
}

/* A bad request after a good one: the good one is answered, then the error, then close. */
static void test_corpus_after_good_request(void **state)
{
    static const char raw[] =
        "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost : a\r\n\r\n";
    struct torii_http_limits lim;
    struct fx f;
    struct resp r[3];

    (void)state;
    limits_small(&lim);
    fx_open(&f, &lim);
    fx_send(&f, raw, sizeof(raw) - 1);
    fx_run(&f, cond_responses, 2, 2000);
    bufferevent_flush(f.client, EV_WRITE, BEV_FINISHED);
    fx_run(&f, cond_closed, 0, 2000);
    assert_int_equal(parse_responses(&f, r, 3, 0), 2);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[1].status, 400);
    assert_string_equal(r[1].body, "{\"error\":\"whitespace before colon\"}");
    assert_true(f.closed);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_get_fields_split),
        cmocka_unit_test(test_parser_chunked_trailers_bytewise),
        cmocka_unit_test(test_parser_chunk_line_limit),
        cmocka_unit_test(test_parser_reset_is_like_new),
        cmocka_unit_test(test_parser_empty_lines_before_request),
        cmocka_unit_test(test_parser_pipeline_stops_per_request),
        cmocka_unit_test(test_parser_http10_keepalive_flags),
        cmocka_unit_test(test_conn_get_keepalive),
        cmocka_unit_test(test_conn_post_content_length),
        cmocka_unit_test(test_conn_chunked_trailers),
        cmocka_unit_test(test_conn_pipeline_three_in_order),
        cmocka_unit_test(test_conn_http10_close_and_keepalive),
        cmocka_unit_test(test_conn_connection_close_honoured),
        cmocka_unit_test(test_conn_expect_100_continue),
        cmocka_unit_test(test_conn_head_has_no_body),
        cmocka_unit_test(test_conn_header_timeout_408),
        cmocka_unit_test(test_conn_idle_timeout_closes),
        cmocka_unit_test(test_conn_empty_line_then_close),
        cmocka_unit_test(test_conn_max_requests_closes),
        cmocka_unit_test(test_slice_eq_ci_matches_strncasecmp),
        cmocka_unit_test(test_list_iterator_elements),
        cmocka_unit_test(test_list_iterator_slice_bound),
        cmocka_unit_test(test_parser_connection_list_tokens),
        cmocka_unit_test(test_parser_byte_in_long_runs),
        cmocka_unit_test(test_response_write_drops_bad_headers),
        cmocka_unit_test(test_corpus_parser_statuses),
        cmocka_unit_test(test_corpus_conn_replies_and_closes),
        cmocka_unit_test(test_corpus_after_good_request),
    };
    int rc;

    (void)signal(SIGPIPE, SIG_IGN);
    torii_log_set_level(TORII_LOG_WARN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    libevent_global_shutdown();
    return rc;
}
