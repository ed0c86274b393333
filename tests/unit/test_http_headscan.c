/* test_http_headscan.c - the one-pass head reader (src/http/headscan.c) against the full
 * parser (scanner + llhttp). Messages are fed whole, so each starts at a feed that holds its
 * complete head: a parser with one_pass on (the default) reads it in one pass when it can, one
 * with it off (torii_http_parser_set_one_pass) always by the full parser. Every head of a corpus
 * (hand-written cases, every byte value at each place of a head, and seeded random mutations of
 * valid heads), requests and responses, one message or two pipelined, must give the same events,
 * bytes consumed, request or response, body framing and errors both ways. The owner moves
 * Content-Length bodies itself, as the proxy does (torii_http_parser_set_body_moved). A head
 * given as parts (torii_http_parser_head_parts, an HTTP/2 stream's) must read as its text
 * read by the full parser, whether the parts are taken or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_int.h"
#include "torii/http.h"

#define OUT_MAX 8192

/* A text record of everything a parse showed, to compare two parses. */
struct trace {
    char s[OUT_MAX];
    size_t len;
};

static void tr_add(struct trace *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->s + t->len, sizeof(t->s) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->len += (size_t)n < sizeof(t->s) - t->len ? (size_t)n : sizeof(t->s) - t->len - 1;
    }
}

static void tr_slice(struct trace *t, const char *tag, struct torii_slice s)
{
    tr_add(t, "%s[%.*s]", tag, (int)s.len, s.ptr != NULL ? s.ptr : "");
}

static void tr_fields(struct trace *t, const struct torii_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tr_slice(t, " n", h[i].name);
        tr_slice(t, "=", h[i].value);
    }
}

static void tr_head(struct trace *t, const struct torii_http_parser *p, int response)
{
    uint64_t len = 0;
    enum torii_http_body_kind k = torii_http_parser_body(p, &len);

    tr_add(t, " body=%d/%llu cont=%d", (int)k, (unsigned long long)len,
           torii_http_parser_expects_continue(p));
    if (response) {
        const struct torii_http_resp *r = torii_http_parser_resp(p);
        assert_non_null(r);
        tr_add(t, " st=%d v=%d ka=%d int=%d", r->status, r->version_minor, r->keep_alive,
               r->interim);
        tr_slice(t, " reason", r->reason);
        tr_fields(t, r->headers, r->n_headers);
    } else {
        const struct torii_http_req *r = torii_http_parser_req(p);
        assert_non_null(r);
        tr_add(t, " m=%s v=%d ka=%d", r->method, r->version_minor, r->keep_alive);
        tr_slice(t, " t", r->target);
        tr_slice(t, " p", r->path);
        tr_slice(t, " q", r->query);
        tr_fields(t, r->headers, r->n_headers);
    }
}

/* One message (or the error) from data[*off..len), fed whole; given (>= 0): the event of the
 * first step, its head already taken (torii_http_parser_head_parts, given_used bytes), instead
 * of a feed. Returns 0 when a message ended and another may follow, -1 otherwise. */
static int parse_from(struct torii_http_parser *p, const char *data, size_t len, size_t *off,
                      int response, struct trace *t, int given, size_t given_used)
{
    for (int guard = 0; guard < 100; guard++) {
        size_t end = len;
        size_t used = given_used;
        const char *msg = NULL;
        enum torii_http_parse_ev ev =
            given >= 0 ? (enum torii_http_parse_ev)given
                       : torii_http_parser_feed(p, data + *off, end - *off, &used);

        given = -1;
        given_used = 0;

        *off += used;
        if (ev == TORII_HTTP_PARSE_ERROR) {
            int st = torii_http_parser_error(p, &msg);
            tr_add(t, " ERR %d %s at %zu", st, msg != NULL ? msg : "-", *off);
            return -1;
        }
        if (ev == TORII_HTTP_PARSE_MORE) {
            tr_add(t, " MORE at %zu started=%d", *off, torii_http_parser_started(p));
            return -1;
        }
        tr_add(t, " %s at %zu", ev == TORII_HTTP_PARSE_HEAD ? "HEAD" : "DONE", *off);
        tr_head(t, p, response);
        if (ev == TORII_HTTP_PARSE_HEAD) {
            uint64_t blen = 0;
            if (torii_http_parser_body(p, &blen) != TORII_HTTP_BODY_LENGTH || blen > len - *off) {
                tr_add(t, " body-stop");
                return -1; /* chunked, close-delimited or short: not this test's business */
            }
            *off += (size_t)blen; /* moved by the owner, never fed */
            torii_http_parser_body_taken(p, blen);
            continue;
        }
        torii_http_parser_next(p);
        return 0;
    }
    fail_msg("parse did not end");
    return -1;
}

static int parse_one(struct torii_http_parser *p, const char *data, size_t len, size_t *off,
                     int response, struct trace *t)
{
    return parse_from(p, data, len, off, response, t, -1, 0);
}

static void parse_trace(const struct torii_http_limits *lim, const char *data, size_t len,
                        int one_pass, int response, int no_body, struct trace *t)
{
    struct torii_http_parser *p = NULL;
    size_t off = 0;

    t->len = 0;
    t->s[0] = '\0';
    if (response) {
        assert_int_equal(torii_http_parser_new_response(lim, &p), TORII_OK);
    } else {
        assert_int_equal(torii_http_parser_new(lim, &p), TORII_OK);
    }
    torii_http_parser_set_body_moved(p, 1);
    torii_http_parser_set_one_pass(p, one_pass);
    for (int i = 0; i < 3 && off < len; i++) {
        torii_http_parser_set_no_body(p, no_body);
        if (parse_one(p, data, len, &off, response, t) != 0) {
            break;
        }
    }
    torii_http_parser_free(p);
}

static unsigned long n_checked;
static unsigned long n_fast; /* of which the one-pass reader takes the first head */

static void check_same(const struct torii_http_limits *lim, const char *data, size_t len,
                       int response, int no_body)
{
    static struct trace fast;
    static struct trace full;
    struct http_fast_head h;

    n_fast += (unsigned long)http_head_scan(data, len, response, &h);
    parse_trace(lim, data, len, 1, response, no_body, &fast);
    parse_trace(lim, data, len, 0, response, no_body, &full);
    if (fast.len != full.len || memcmp(fast.s, full.s, fast.len) != 0) {
        print_error("input (%zu bytes): %.*s\none pass: %s\nfull: %s\n", len, (int)len, data,
                    fast.s, full.s);
        fail();
    }
    n_checked++;
}

static void check_str(const char *s, int response)
{
    struct torii_http_limits lim;

    torii_http_limits_default(&lim);
    check_same(&lim, s, strlen(s), response, 0);
    if (response) {
        check_same(&lim, s, strlen(s), response, 1);
    }
}

static const char *const req_cases[] = {
    "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "GET /a/b?x=1&y=%41 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: "
    "b\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    "PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    "PUT /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    "PUT /p HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n",
    "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "PATCH /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz",
    "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive \r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 01\r\n\r\nx",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length:  7 \r\n\r\n1234567",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\nx",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp:   \r\nX-Tab:\tv\t\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX Bad: v\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Bad : v\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: \x80\xff\r\n\r\n",
    "GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\r",
    "GET / HTTP/1.1\r\nHost: [::1]:8443\r\nForwarded: for=x\r\n\r\n",
};

static const char *const resp_cases[] = {
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 21:00:00 GMT\r\n"
    "Content-Type: application/octet-stream\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
    "ETag: \"5f-6\"\r\nAccept-Ranges: bytes\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: "
    "2\r\n\r\nno",
    "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    "HTTP/1.1 200 OK\r\n\r\nbody until close",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 099 Odd\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 200 O\tK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/2.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nxx",
    "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nxx",
    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 3\r\n\r\nbad",
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
        check_str(req_cases[i], 0);
    }
    for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
        check_str(resp_cases[i], 1);
    }
}

/* tpl with its "%c" replaced by the byte c (NUL included). */
static void check_tpl(const struct torii_http_limits *lim, const char *tpl, int c, int response)
{
    char buf[256];
    const char *pct = strstr(tpl, "%c");
    size_t pre = (size_t)(pct - tpl);
    size_t post = strlen(pct + 2);

    memcpy(buf, tpl, pre);
    buf[pre] = (char)c;
    memcpy(buf + pre + 1, pct + 2, post);
    check_same(lim, buf, pre + 1 + post, response, 0);
}

/* Every byte value at each place of a head: method, target, name, value, reason. */
static void test_every_byte(void **state)
{
    static const char *const req_tpl[] = {
        "G%cT / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a%cb?c HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a?b%cc HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX%cY: v\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: v%cw\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: %cw\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: w%c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%c\r\n\r\n",
    };
    static const char *const resp_tpl[] = {
        "HTTP/1.1 200 O%cK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nX%cY: v\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nX: v%cw\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1%c\r\n\r\nx",
    };
    struct torii_http_limits lim;

    (void)state;
    torii_http_limits_default(&lim);
    for (int c = 0; c < 256; c++) {
        for (size_t i = 0; i < sizeof(req_tpl) / sizeof(req_tpl[0]); i++) {
            check_tpl(&lim, req_tpl[i], c, 0);
        }
        for (size_t i = 0; i < sizeof(resp_tpl) / sizeof(resp_tpl[0]); i++) {
            check_tpl(&lim, resp_tpl[i], c, 1);
        }
    }
}

/* Every byte value at each place of the first 24 bytes of a long field value, reason and
 * field name: the steps of the value (eight bytes) and name (four) readers end at every
 * offset of a word. */
static void test_value_words(void **state)
{
    struct torii_http_limits lim;
    char tpl[160];

    (void)state;
    torii_http_limits_default(&lim);
    for (int k = 0; k < 24; k++) {
        for (int c = 0; c < 256; c++) {
            (void)snprintf(tpl, sizeof(tpl),
                           "GET / HTTP/1.1\r\nHost: a\r\nX: %.*s%%cwwwwwwwwwww\r\n\r\n", k,
                           "vvvvvvvvvvvvvvvvvvvvvvvv");
            check_tpl(&lim, tpl, c, 0);
            (void)snprintf(tpl, sizeof(tpl),
                           "HTTP/1.1 200 %.*s%%cwwwwwwwwwww\r\nContent-Length: 1\r\n\r\nx", k,
                           "OOOOOOOOOOOOOOOOOOOOOOOO");
            check_tpl(&lim, tpl, c, 1);
            (void)snprintf(tpl, sizeof(tpl),
                           "GET / HTTP/1.1\r\nHost: a\r\n%.*s%%cNNNNNNNNN: v\r\n\r\n", k,
                           "NNNNNNNNNNNNNNNNNNNNNNNN");
            check_tpl(&lim, tpl, c, 0);
        }
    }
}

/* The limits: at, under and over max_headers, max_target and max_header_bytes. */
static void test_limits(void **state)
{
    struct torii_http_limits lim;
    char buf[512];

    (void)state;
    torii_http_limits_default(&lim);
    lim.max_headers = 3;
    lim.max_target = 8;
    lim.max_header_bytes = 64;
    for (int nf = 1; nf <= 5; nf++) {
        for (int tl = 1; tl <= 10; tl++) {
            for (int pad = 0; pad < 24; pad += 3) {
                size_t n = (size_t)snprintf(buf, sizeof(buf), "GET /%.*s HTTP/1.1\r\nHost: a\r\n",
                                            tl - 1, "aaaaaaaaaaaa");
                for (int f = 1; f < nf; f++) {
                    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: %.*s\r\n", f, pad,
                                          "vvvvvvvvvvvvvvvvvvvvvvvvvvvv");
                }
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
                check_same(&lim, buf, n, 0, 0);
            }
        }
    }
}

/* Seeded random mutations of valid heads: one to three bytes replaced, inserted or removed. */
static void test_mutations(void **state)
{
    static const char *const base[] = {
        "GET /a?b=c HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nConnection: keep-alive\r\n"
        "\r\nabcGET / HTTP/1.1\r\nHost: b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nX-A: b\r\n\r\nabc"
        "HTTP/1.1 204 No Content\r\n\r\n",
    };
    static const char alphabet[] = "\r\n :,/?#%\t\x7f\x80\x01\0aZ09-Content-LengthTransfer";
    struct torii_http_limits lim;
    uint32_t seed = 20261206;
    char buf[512];

    (void)state;
    torii_http_limits_default(&lim);
    for (int it = 0; it < 20000; it++) {
        int response = it & 1;
        size_t len = strlen(base[response]);
        int edits = 1 + (int)((seed >> 8) % 3);
        memcpy(buf, base[response], len);
        for (int e = 0; e < edits; e++) {
            size_t pos;
            char c;
            seed = seed * 1103515245u + 12345u;
            pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            c = (seed >> 20) % 2 ? alphabet[(seed >> 8) % (sizeof(alphabet) - 1)]
                                 : (char)((seed >> 8) & 0xff);
            switch ((seed >> 28) % 3) {
            case 0:
                buf[pos] = c;
                break;
            case 1:
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = c;
                len++;
                break;
            default:
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            }
        }
        check_same(&lim, buf, len, response, (seed >> 4) % 5 == 0);
    }
}

/* ---- a head given as parts (torii_http_parser_head_parts, an HTTP/2 stream's) ---------- */

#define PARTS_MAX_FIELDS 40

/* One head as parts: method, target, fields and a body (its text: parts_text). */
struct parts {
    const char *method;
    struct torii_slice target;
    struct torii_http_header f[PARTS_MAX_FIELDS];
    size_t n;
    const char *body;
};

static unsigned long n_parts;
static unsigned long n_parts_taken;

/* The text the parts stand for: "method SP target SP HTTP/1.1", "name: value" lines, body. */
static size_t parts_text(const struct parts *m, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "%s %.*s HTTP/1.1\r\n", m->method, (int)m->target.len,
                                m->target.ptr);

    for (size_t i = 0; i < m->n; i++) {
        assert_true(n + m->f[i].name.len + m->f[i].value.len + 8 < cap);
        memcpy(buf + n, m->f[i].name.ptr, m->f[i].name.len);
        n += m->f[i].name.len;
        memcpy(buf + n, ": ", 2);
        memcpy(buf + n + 2, m->f[i].value.ptr, m->f[i].value.len);
        n += 2 + m->f[i].value.len;
        memcpy(buf + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(buf + n, cap - n, "\r\n%s", m->body != NULL ? m->body : "");
    return n;
}

/* The parts against their text read by the full parser: taken, the same events, request,
 * framing, errors and bytes; not taken, the parser unchanged (the text fed to it afterwards
 * reads the same). Returns 1 when they were taken. */
static int check_parts_lim(const struct torii_http_limits *lim, const struct parts *m)
{
    static struct trace full;
    static struct trace got;
    static char text[OUT_MAX];
    size_t len = parts_text(m, text, sizeof(text));
    struct torii_http_parser *p = NULL;
    enum torii_http_parse_ev ev = TORII_HTTP_PARSE_MORE;
    size_t used = 7;
    size_t off = 0;
    int more;
    int rc;

    parse_trace(lim, text, len, 0, 0, 0, &full);
    assert_int_equal(torii_http_parser_new(lim, &p), TORII_OK);
    torii_http_parser_set_body_moved(p, 1);
    got.len = 0;
    got.s[0] = '\0';
    rc = torii_http_parser_head_parts(p, m->method, m->target, m->f, m->n, &ev, &used);
    if (rc == TORII_OK) {
        assert_true(ev == TORII_HTTP_PARSE_HEAD || ev == TORII_HTTP_PARSE_DONE
                    || ev == TORII_HTTP_PARSE_ERROR);
        more = parse_from(p, text, len, &off, 0, &got, (int)ev, used);
        n_parts_taken++;
    } else {
        assert_int_equal(rc, TORII_EAGAIN);
        assert_false(torii_http_parser_started(p));
        more = parse_one(p, text, len, &off, 0, &got);
    }
    for (int i = 1; i < 3 && more == 0 && off < len; i++) { /* what follows, as parse_trace */
        more = parse_one(p, text, len, &off, 0, &got);
    }
    torii_http_parser_free(p);
    if (got.len != full.len || memcmp(got.s, full.s, got.len) != 0) {
        print_error("text (%zu bytes): %.*s\nparts (%s): %s\nfull: %s\n", len, (int)len, text,
                    rc == TORII_OK ? "taken" : "not taken", got.s, full.s);
        fail();
    }
    n_parts++;
    return rc == TORII_OK;
}

static int check_parts(const struct parts *m)
{
    struct torii_http_limits lim;

    torii_http_limits_default(&lim);
    return check_parts_lim(&lim, m);
}

static struct torii_slice sl(const char *s)
{
    return (struct torii_slice){s, strlen(s)};
}

/* The parts of "GET /a?b HTTP/1.1" with host a.test and the fields given (name, value). */
static void parts_base(struct parts *m, const char *method, const char *target,
                       const char *const *nv, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->method = method;
    m->target = sl(target);
    m->f[m->n++] = (struct torii_http_header){sl("host"), sl("a.test")};
    for (size_t i = 0; i + 1 < 2 * n; i += 2) {
        m->f[m->n++] = (struct torii_http_header){sl(nv[i]), sl(nv[i + 1])};
    }
}

/* Hand cases: methods, targets, framing and connection fields, odd names and values. */
static void test_parts_cases(void **state)
{
    static const char *const methods[] = {"GET",   "HEAD",  "POST",    "PUT", "DELETE", "OPTIONS",
                                          "PATCH", "TRACE", "CONNECT", "get", "G T",    ""};
    static const char *const targets[] = {"/",    "/a/b?x=1&y=%41",  "*",     "",  "/a#f",
                                          "/a b", "http://a.test/x", "/\x80", "a", "//x"};
    static const char *const fields[][2] = {
        {"user-agent", "h2load nghttp2/1.52.0"},
        {"content-length", "0"},
        {"content-length", "5"},
        {"content-length", "01"},
        {"content-length", "1,1"},
        {"content-length", "+1"},
        {"content-length", ""},
        {"content-length", "99999999999999999999"},
        {"transfer-encoding", "chunked"},
        {"connection", "keep-alive"},
        {"connection", "close"},
        {"upgrade", "websocket"},
        {"proxy-connection", "close"},
        {"expect", "100-continue"},
        {"expect", "nothing"},
        {"host", "b.test"},
        {"te", "trailers"},
        {"cookie", "a=b; c=d"},
        {"x-empty", ""},
        {"x-tab", "a\tb"},
        {"x-obs", "\x80\xff"},
        {"x-sp", " lead"},
        {"x-sp", "trail "},
        {"X-Up", "v"},
        {"x bad", "v"},
        {"x:bad", "v"},
        {"", "v"},
    };
    struct parts m;

    (void)state;
    parts_base(&m, "GET", "/a?b", NULL, 0);
    assert_true(check_parts(&m)); /* the usual head is taken */
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
            parts_base(&m, methods[i], targets[t], NULL, 0);
            (void)check_parts(&m);
        }
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j += 3) {
            const char *nv[] = {fields[i][0], fields[i][1], fields[j][0], fields[j][1]};
            parts_base(&m, "POST", "/", nv, 2);
            m.body = "hello";
            (void)check_parts(&m);
        }
    }
    parts_base(&m, "GET", "/", NULL, 0);
    m.n = 0; /* no host */
    (void)check_parts(&m);
}

/* Every byte value in the target, a name and a value; 30 to 34 fields (the one-pass reader
 * takes at most TORII_HTTP_PARTS_MAX). */
static void test_parts_bytes(void **state)
{
    static const char *const at[] = {"/a%cb", "x%cy", "v%cw"};
    char b[3][8];
    struct parts m;

    (void)state;
    for (int c = 0; c < 256; c++) {
        for (size_t k = 0; k < 3; k++) {
            const char *pct = strstr(at[k], "%c");
            size_t pre = (size_t)(pct - at[k]);
            const char *nv[] = {"x", "v"};
            memcpy(b[k], at[k], pre);
            b[k][pre] = (char)c;
            memcpy(b[k] + pre + 1, pct + 2, strlen(pct + 2) + 1);
            parts_base(&m, "GET", k == 0 ? "/" : "/", nv, 1);
            if (k == 0) {
                m.target = (struct torii_slice){b[0], 4};
            } else if (k == 1) {
                m.f[1].name = (struct torii_slice){b[1], 3};
            } else {
                m.f[1].value = (struct torii_slice){b[2], 3};
            }
            (void)check_parts(&m);
        }
    }
    for (size_t n = 30; n <= 34; n++) {
        parts_base(&m, "GET", "/", NULL, 0);
        while (m.n < n) {
            m.f[m.n++] = (struct torii_http_header){sl("x-many"), sl("v")};
        }
        assert_int_equal(check_parts(&m), n <= TORII_HTTP_PARTS_MAX);
    }
}

/* The limits, at, under and over: max_headers, max_target, max_header_bytes. */
static void test_parts_limits(void **state)
{
    static const char pad[] = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
    char target[16];
    struct torii_http_limits lim;
    struct parts m;

    (void)state;
    torii_http_limits_default(&lim);
    lim.max_headers = 3;
    lim.max_target = 8;
    lim.max_header_bytes = 64;
    for (size_t nf = 1; nf <= 5; nf++) {
        for (int tl = 1; tl <= 10; tl++) {
            for (size_t vl = 0; vl < 24; vl++) {
                (void)snprintf(target, sizeof(target), "/%.*s", tl - 1, "aaaaaaaaaaaa");
                parts_base(&m, "GET", target, NULL, 0);
                while (m.n < nf) {
                    m.f[m.n++] = (struct torii_http_header){sl("x-f"), {pad, vl}};
                }
                (void)check_parts_lim(&lim, &m);
            }
        }
    }
}

/* The reader itself on the bench's two heads (wrk's request, nginx's response). */
static void test_scan(void **state)
{
    static const char req[] = "GET /x?y HTTP/1.1\r\nHost: h0.bench.test\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 100\r\n"
                               "Connection: keep-alive\r\n\r\nxxxx";
    struct http_fast_head h;

    (void)state;
    assert_int_equal(http_head_scan(req, sizeof(req) - 1, 0, &h), 1);
    assert_int_equal(h.head_len, sizeof(req) - 1);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.line_len, 4);
    assert_memory_equal(req + h.line_off, "/x?y", 4);
    assert_memory_equal(req + h.f[0].val_off, "h0.bench.test", h.f[0].val_len);
    assert_int_equal(http_head_scan(req, sizeof(req) - 2, 0, &h), 0); /* incomplete */
    assert_int_equal(http_head_scan(resp, sizeof(resp) - 1, 1, &h), 1);
    assert_int_equal(h.head_len, sizeof(resp) - 5);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.has_cl, 1);
    assert_int_equal(h.cl, 100);
    assert_memory_equal(resp + h.line_off, "OK", 2);
}

static void test_count(void **state)
{
    (void)state;
    /* the corpus really ran: hand cases, 256 x 12 byte cases, the limits, 20,000 mutations;
     * and a good part of it went through the one-pass reader */
    assert_true(n_checked > 20000 + 256 * 12 + 300);
    assert_true(n_fast > 2000);
    /* and the parts: most taken, a good part not */
    assert_true(n_parts > 256 * 3 + 1000);
    assert_true(n_parts_taken > 500 && n_parts_taken < n_parts - 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),       cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_limits),      cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_scan),        cmocka_unit_test(test_parts_cases),
        cmocka_unit_test(test_parts_bytes), cmocka_unit_test(test_parts_limits),
        cmocka_unit_test(test_count),       cmocka_unit_test(test_value_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
