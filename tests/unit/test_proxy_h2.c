/* test_proxy_h2.c - the HTTP/2 message checks of src/proxy/h2msg.c (RFC 9113 section 8.2
 * and 8.3), one case per rule, the pipe stream (torii_stream_pipe) that carries an
 * HTTP/2 stream's request into the HTTP/1.1 engine, and the per-worker free lists of ended
 * streams and stream children (src/proxy/h2cache.c): reuse, nothing of the last request
 * left, the bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "h2_int.h"
#include "torii/stream.h"

static enum h2_field_kind kind(const char *name, const char *value, size_t vlen)
{
    const char *why = NULL;
    enum h2_field_kind k = torii_proxy__h2_field_kind((const uint8_t *)name, strlen(name),
                                                      (const uint8_t *)value, vlen, &why);

    assert_true(k == H2F_MALFORMED ? why != NULL : why == NULL);
    return k;
}

#define KIND(n, v) kind((n), (v), strlen(v))

static void test_regular_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND("accept", "*/*"), H2F_REGULAR);
    assert_int_equal(KIND("x-custom_1", "a b\tc"), H2F_REGULAR);
    assert_int_equal(KIND("te", "trailers"), H2F_REGULAR);
    assert_int_equal(KIND("content-length", "5"), H2F_REGULAR);
    assert_int_equal(KIND("x-empty", ""), H2F_REGULAR);
}

#define TRL(n) torii_proxy__h2_trailer_ok((n), strlen(n))

static void test_trailer_fields(void **state)
{
    (void)state;
    assert_int_equal(TRL("grpc-status"), 1);
    assert_int_equal(TRL("grpc-message"), 1);
    assert_int_equal(TRL("X-Checksum"), 1);
    assert_int_equal(TRL(""), 0);
    assert_int_equal(TRL(":status"), 0);
    assert_int_equal(TRL("Connection"), 0);
    assert_int_equal(TRL("keep-alive"), 0);
    assert_int_equal(TRL("Transfer-Encoding"), 0);
    assert_int_equal(TRL("upgrade"), 0);
    assert_int_equal(TRL("TE"), 0);
    assert_int_equal(TRL("trailer"), 0);
    assert_int_equal(TRL("content-length"), 0);
    assert_int_equal(TRL("Host"), 0);
    assert_int_equal(TRL("grpc-statu"), 1);
}

static void test_pseudo_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND(":method", "GET"), H2F_PSEUDO);
    assert_int_equal(KIND(":scheme", "https"), H2F_PSEUDO);
    assert_int_equal(KIND(":authority", "a.test"), H2F_PSEUDO);
    assert_int_equal(KIND(":path", "/"), H2F_PSEUDO);
    assert_int_equal(KIND(":status", "200"), H2F_MALFORMED);
    assert_int_equal(KIND(":protocol", "websocket"), H2F_PSEUDO);
    assert_int_equal(KIND(":foo", "x"), H2F_MALFORMED);
}

static void test_malformed_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND("X-Upper", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("sp ace", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("colon:inside", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("connection", "close"), H2F_MALFORMED);
    assert_int_equal(KIND("keep-alive", "5"), H2F_MALFORMED);
    assert_int_equal(KIND("proxy-connection", "x"), H2F_MALFORMED);
    assert_int_equal(KIND("transfer-encoding", "chunked"), H2F_MALFORMED);
    assert_int_equal(KIND("upgrade", "h2c"), H2F_MALFORMED);
    assert_int_equal(KIND("te", "gzip"), H2F_MALFORMED);
    assert_int_equal(KIND("te", "trailers, gzip"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "1\r\nx-b: 2"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "1\n"), H2F_MALFORMED);
    assert_int_equal(kind("x-a", "1\0002", 3), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", " lead"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "trail\t"), H2F_MALFORMED);
    /* the value is tested 8 bytes at a time: a bad byte in every lane and in the tail */
    for (size_t at = 1; at < 19; at++) {
        char v[20] = "abcdefghijklmnopqrs";
        const char bad[3] = {'\0', '\r', '\n'};
        for (size_t k = 0; k < 3; k++) {
            v[at] = bad[k];
            assert_int_equal(kind("x-a", v, 19), H2F_MALFORMED);
        }
    }
    assert_int_equal(KIND("x-a", "\x80\xff\x0e\x0c\x0b\x09\x8d\x8a\xc3\xa9 x"), H2F_REGULAR);
    assert_int_equal(KIND("connectio", "x"), H2F_REGULAR);
    assert_int_equal(KIND("keep-alivE", "x"), H2F_MALFORMED);
    assert_int_equal(KIND("xonnection", "x"), H2F_REGULAR);
    assert_int_equal(KIND(":method2", "GET"), H2F_MALFORMED);
}

/* Names of a response HEADERS frame are lower-cased 8 bytes at a time: only A-Z change. */
static void test_nv_lower(void **state)
{
    const char *in[] = {"Content-Type",
                        "X-ABCDEFGHIJKLMNOPQRSTUVWXYZ@[`{~",
                        "ETag",
                        "\xc3\x89\xc1\xda-Z",
                        "a",
                        "Location",
                        "Content-Encoding"};
    const char *want[] = {"content-type",
                          "x-abcdefghijklmnopqrstuvwxyz@[`{~",
                          "etag",
                          "\xc3\x89\xc1\xda-z",
                          "a",
                          "location",
                          "content-encoding"};
    struct torii_http_header f[7];
    struct h2_nvbuf b;

    (void)state;
    for (size_t i = 0; i < 7; i++) {
        f[i].name = (struct torii_slice){in[i], strlen(in[i])};
        f[i].value = (struct torii_slice){"v", 1};
    }
    torii_proxy__h2_nv_init(&b, f, 7, 0);
    for (size_t i = 0; i < 7; i++) {
        torii_proxy__h2_nv_add(&b, f[i].name, f[i].value);
    }
    assert_int_equal(b.n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(b.nv[i].namelen, strlen(want[i]));
        assert_memory_equal(b.nv[i].name, want[i], strlen(want[i]));
    }
    torii_proxy__h2_nv_free(&b);
}

static int pseudo(const char *m, const char *s, const char *a, const char *p, const char *h)
{
    const char *why = NULL;
    int rc = torii_proxy__h2_pseudo_check(m, s, a, p, h, &why);

    assert_true(rc == 0 ? why == NULL : why != NULL);
    return rc;
}

static void test_pseudo_set(void **state)
{
    (void)state;
    assert_int_equal(pseudo("GET", "https", "a.test", "/x?y=1", NULL), 0);
    assert_int_equal(pseudo("GET", "https", NULL, "/", "a.test"), 0);
    assert_int_equal(pseudo("GET", "https", "a.test", "/", "A.TEST"), 0);
    assert_int_equal(pseudo("OPTIONS", "https", "a.test", "*", NULL), 0);
    assert_int_equal(pseudo(NULL, "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", NULL, "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", NULL, NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "x", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "*", NULL), -1);
    assert_int_equal(pseudo("GET", "http", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GE T", "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("", "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/a b", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/\x7f", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a .test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", NULL, "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/", "b.test"), -1);
}

static int pipe_sent;

static int pipe_send(struct torii_stream *s, void *arg)
{
    struct evbuffer *out = torii_stream_output(s);

    pipe_sent += (int)evbuffer_get_length(out);
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    return *(int *)arg;
}

static void test_pipe_stream(void **state)
{
    int rc = TORII_OK;
    struct torii_stream *s = torii_stream_pipe(NULL, pipe_send, &rc);

    (void)state;
    assert_non_null(s);
    assert_true(torii_stream_established(s));
    assert_null(torii_stream_ssl(s));
    assert_int_equal(torii_stream_reading(s), 0);
    torii_stream_read(s, 1);
    assert_int_equal(torii_stream_reading(s), 1);
    torii_stream_timeouts(s, 10, 10); /* no events: nothing armed */
    torii_stream_shutdown(s);
    assert_int_equal(evbuffer_add(torii_stream_output(s), "hello", 5), 0);
    assert_int_equal(torii_stream_unsent(s), 5);
    assert_int_equal(torii_stream_flush(s), TORII_OK);
    assert_int_equal(pipe_sent, 5);
    assert_int_equal(torii_stream_unsent(s), 0);
    rc = TORII_EIO;
    assert_int_equal(torii_stream_flush(s), TORII_EIO);
    assert_int_equal(evbuffer_add(torii_stream_input(s), "in", 2), 0);
    assert_int_equal(evbuffer_get_length(torii_stream_input(s)), 2);
    torii_stream_free(s);
}

/* A pipe used again (a kept stream child's, h2cache.c) comes back as new: both buffers
 * emptied, reading off, no shutdown, the new send callback and argument. */
static void test_pipe_rearm(void **state)
{
    int rc_old = TORII_EIO;
    int rc_new = TORII_OK;
    struct torii_stream *s = torii_stream_pipe(NULL, pipe_send, &rc_old);
    struct evbuffer *in;
    struct evbuffer *out;

    (void)state;
    assert_non_null(s);
    in = torii_stream_input(s);
    out = torii_stream_output(s);
    torii_stream_read(s, 1);
    torii_stream_shutdown(s);
    assert_int_equal(evbuffer_add(in, "left", 4), 0);
    assert_int_equal(evbuffer_add(out, "unsent", 6), 0);
    torii_stream_pipe_rearm(s, NULL, pipe_send, &rc_new);
    assert_ptr_equal(torii_stream_input(s), in); /* the same buffers, kept */
    assert_ptr_equal(torii_stream_output(s), out);
    assert_int_equal(evbuffer_get_length(in), 0);
    assert_int_equal(torii_stream_unsent(s), 0);
    assert_int_equal(torii_stream_reading(s), 0);
    assert_true(torii_stream_established(s));
    pipe_sent = 0;
    assert_int_equal(evbuffer_add(out, "abc", 3), 0);
    assert_int_equal(torii_stream_flush(s), TORII_OK); /* the new argument: rc_new */
    assert_int_equal(pipe_sent, 3);
    torii_stream_free(s);
}

struct kept_fields {
    char names[8][32];
    size_t n;
};

static void kept_field(void *arg, const struct torii_http_header *h)
{
    struct kept_fields *k = arg;

    assert_true(k->n < 8 && h->name.len < 32);
    memcpy(k->names[k->n], h->name.ptr, h->name.len);
    k->names[k->n++][h->name.len] = '\0';
}

#define HF(n, v)                                                                                   \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

/* The fields an HTTP/2 stream gets from a parsed response (torii_proxy_resp_fields): those
 * the HTTP/1.1 head writer keeps, in order; the upstream's Content-Length only for a response
 * without body of ours (HEAD, 304), never for a 204. */
static void test_resp_fields(void **state)
{
    const struct torii_http_header h[] = {
        HF("Content-Type", "text/plain"),
        HF("Connection", "close, X-Hop"),
        HF("X-Hop", "1"),
        HF("Keep-Alive", "timeout=5"),
        HF("Content-Length", "5"),
        HF("Transfer-Encoding", "chunked"),
        HF("TE", "trailers"),
        HF("X-End", "2"),
    };
    struct torii_http_resp r = {.status = 200, .headers = h, .n_headers = 8};
    struct kept_fields k = {0};

    (void)state;
    torii_proxy_resp_fields(&r, TORII_PROXY_OUT_LENGTH, kept_field, &k);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.names[0], "Content-Type");
    assert_string_equal(k.names[1], "X-End");
    memset(&k, 0, sizeof(k));
    torii_proxy_resp_fields(&r, TORII_PROXY_OUT_NONE, kept_field, &k);
    assert_int_equal(k.n, 3);
    assert_string_equal(k.names[1], "Content-Length");
    memset(&k, 0, sizeof(k));
    r.status = 204;
    torii_proxy_resp_fields(&r, TORII_PROXY_OUT_NONE, kept_field, &k);
    assert_int_equal(k.n, 2);
}

/* An ended stream comes back cleared: its buffers empty, its parser reset from the middle of
 * a response, no field of the last request. */
static void test_stream_shell_reused(void **state)
{
    static const char partial[] = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n";
    struct proxy_worker pw;
    struct h2_stream *st;
    struct h2_stream *again;
    size_t used = 0;

    (void)state;
    memset(&pw, 0, sizeof(pw));
    torii_http_limits_default(&pw.ulim);
    st = torii_proxy__h2s_shell(&pw);
    assert_non_null(st);
    assert_null(st->rp);
    assert_int_equal(torii_http_parser_new_response(&pw.ulim, &st->rp), TORII_OK);
    assert_int_equal(torii_http_parser_feed(st->rp, partial, sizeof(partial) - 1, &used),
                     TORII_HTTP_PARSE_MORE);
    assert_true(torii_http_parser_started(st->rp));
    st->rp_fed = 1; /* as h2s_parse marks it: only a fed parser is reset */
    assert_int_equal(evbuffer_add(st->body, "body", 4), 0);
    assert_int_equal(torii_proxy__h2f_add(st->fields, "x", 1, "y", 1), TORII_OK);
    assert_int_equal(evbuffer_add(st->held, "held", 4), 0);
    st->id = 7;
    st->resp_done = 1;
    torii_proxy__h2s_shell_put(&pw, st);
    assert_int_equal(pw.n_h2s_free, 1);

    again = torii_proxy__h2s_shell(&pw);
    assert_ptr_equal(again, st);
    assert_int_equal(pw.n_h2s_free, 0);
    assert_int_equal(again->id, 0);
    assert_int_equal(again->resp_done, 0);
    assert_null(again->method);
    assert_int_equal(evbuffer_get_length(again->body), 0);
    assert_int_equal(again->fields->n, 0);
    assert_int_equal(again->fields->len, 0);
    assert_int_equal(evbuffer_get_length(again->held), 0);
    assert_non_null(again->rp);
    assert_false(torii_http_parser_started(again->rp));
    assert_null(torii_http_parser_resp(again->rp));
    assert_int_equal(again->rp_fed, 0);
    torii_proxy__h2s_shell_put(&pw, again);
    torii_proxy__h2_cache_clear(&pw);
    assert_int_equal(pw.n_h2s_free, 0);
    assert_null(pw.h2s_free);
}

/* At most PX_H2_FREE ended streams are kept; the rest are freed. */
static void test_stream_shells_bounded(void **state)
{
    struct proxy_worker pw;
    struct h2_stream *sts[PX_H2_FREE + 5];

    (void)state;
    memset(&pw, 0, sizeof(pw));
    for (size_t i = 0; i < PX_H2_FREE + 5; i++) {
        sts[i] = torii_proxy__h2s_shell(&pw);
        assert_non_null(sts[i]);
    }
    for (size_t i = 0; i < PX_H2_FREE + 5; i++) {
        torii_proxy__h2s_shell_put(&pw, sts[i]);
    }
    assert_int_equal(pw.n_h2s_free, PX_H2_FREE);
    torii_proxy__h2_cache_clear(&pw);
    assert_int_equal(pw.n_h2s_free, 0);
}

static void nop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A closed stream child is kept cleared with its timer, left pending without a mode (the
 * next stream arms it without an event_add); PX_H2_FREE at most. */
static void test_stream_children_kept(void **state)
{
    struct event_base *base = event_base_new();
    struct proxy_worker pw;
    struct proxy_conn *pcs[PX_H2_FREE + 1];
    struct timeval tv = {10, 0};
    unsigned kept = 0;

    (void)state;
    assert_non_null(base);
    memset(&pw, 0, sizeof(pw));
    pw.base = base;
    assert_null(torii_proxy__h2c_take(&pw));
    for (size_t i = 0; i < PX_H2_FREE + 1; i++) {
        pcs[i] = calloc(1, sizeof(*pcs[i]));
        assert_non_null(pcs[i]);
        pcs[i]->timer = evtimer_new(base, nop_timer, pcs[i]);
        assert_non_null(pcs[i]->timer);
        assert_int_equal(event_add(pcs[i]->timer, &tv), 0);
        pcs[i]->dead = 1;
        pcs[i]->tmode = PT_IDLE;
        pcs[i]->t_fire_us = 1000 + (int64_t)i;
    }
    for (size_t i = 0; i < PX_H2_FREE + 1; i++) {
        if (torii_proxy__h2c_put(&pw, pcs[i])) {
            kept++;
            assert_int_equal(pcs[i]->tmode, PT_NONE);
            assert_true(event_pending(pcs[i]->timer, EV_TIMEOUT, NULL));
        } else {
            event_free(pcs[i]->timer);
            free(pcs[i]);
        }
    }
    assert_int_equal(kept, PX_H2_FREE);
    assert_int_equal(pw.n_h2c_free, PX_H2_FREE);
    {
        struct proxy_conn *pc = torii_proxy__h2c_take(&pw);
        assert_ptr_equal(pc, pcs[PX_H2_FREE - 1]); /* the last kept, first out */
        assert_ptr_equal(pc->timer, pcs[PX_H2_FREE - 1]->timer);
        assert_int_equal(pc->dead, 0);
        assert_int_equal(pc->tmode, PT_NONE);
        assert_int_equal(pc->t_fire_us, 1000 + PX_H2_FREE - 1);
        assert_null(pc->next);
        assert_int_equal(torii_proxy__h2c_put(&pw, pc), 1);
    }
    torii_proxy__h2_cache_clear(&pw);
    assert_int_equal(pw.n_h2c_free, 0);
    assert_null(pw.h2c_free);
    event_base_free(base);
}

/* The worker's wake list: connections woken in a turn are stepped once each, oldest first,
 * by one event; a second wake of a queued connection adds nothing; a connection freed while
 * queued leaves the list (ASan: no use after free); a wake while the connection steps asks
 * it for one more round instead. The connections are marked busy, so that a step only sets
 * `again` (what torii_proxy__run does for a connection already stepping). */
static void test_wake_batched(void **state)
{
    struct event_base *base = event_base_new();
    struct proxy_worker pw;
    struct proxy_conn *pcs[3];
    struct proxy_h2 *hs[3];

    (void)state;
    assert_non_null(base);
    memset(&pw, 0, sizeof(pw));
    pw.base = base;
    assert_int_equal(torii_proxy__h2_wake_init(&pw), TORII_OK);
    for (int i = 0; i < 3; i++) {
        pcs[i] = calloc(1, sizeof(*pcs[i]));
        hs[i] = calloc(1, sizeof(*hs[i]));
        assert_non_null(pcs[i]);
        assert_non_null(hs[i]);
        pcs[i]->pw = &pw;
        pcs[i]->h2 = hs[i];
        hs[i]->pc = pcs[i];
    }
    torii_proxy__h2_wake(hs[0]);
    assert_true(event_pending(pw.h2_wake_ev, EV_READ, NULL)); /* active, once */
    torii_proxy__h2_wake(hs[1]);
    torii_proxy__h2_wake(hs[2]);
    torii_proxy__h2_wake(hs[0]);
    assert_ptr_equal(pw.h2q[H2Q_WAKE].first, hs[0]);
    assert_ptr_equal(hs[0]->q[H2Q_WAKE].next, hs[1]);
    assert_ptr_equal(hs[1]->q[H2Q_WAKE].next, hs[2]);
    assert_null(hs[2]->q[H2Q_WAKE].next);
    assert_ptr_equal(pw.h2q[H2Q_WAKE].last, hs[2]);
    torii_proxy__h2_free(pcs[1]); /* freed while queued */
    assert_null(pcs[1]->h2);
    assert_ptr_equal(hs[0]->q[H2Q_WAKE].next, hs[2]);
    assert_ptr_equal(hs[2]->q[H2Q_WAKE].prev, hs[0]);
    for (int i = 0; i < 3; i++) {
        pcs[i]->busy = 1;
    }
    assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0); /* 1: nothing left pending */
    assert_null(pw.h2q[H2Q_WAKE].first);
    assert_null(pw.h2q[H2Q_WAKE].last);
    assert_int_equal(pcs[0]->again, 1);
    assert_int_equal(pcs[1]->again, 0);
    assert_int_equal(pcs[2]->again, 1);
    assert_int_equal(hs[0]->q[H2Q_WAKE].in, 0);
    assert_int_equal(hs[2]->q[H2Q_WAKE].in, 0);
    pcs[2]->again = 0;
    torii_proxy__h2_wake(hs[2]); /* busy: one more round, not queued */
    assert_int_equal(pcs[2]->again, 1);
    assert_null(pw.h2q[H2Q_WAKE].first);
    assert_false(event_pending(pw.h2_wake_ev, EV_READ, NULL));
    for (int i = 0; i < 3; i++) {
        free(pcs[i]->h2);
        free(pcs[i]);
    }
    torii_proxy__h2_cache_clear(&pw);
    assert_null(pw.h2_wake_ev);
    event_base_free(base);
}

/* The connection's due list (what h2_sweep visits): a stream marked twice is listed once, a
 * kick marks it too, and a stream freed while listed (marked again by its own last service)
 * leaves the list wherever it is in it (ASan: no use after free). */
static void test_due_list(void **state)
{
    struct proxy_worker pw;
    struct proxy_conn pc;
    struct proxy_h2 h;
    struct h2_stream *st[3];

    (void)state;
    memset(&pw, 0, sizeof(pw));
    memset(&pc, 0, sizeof(pc));
    memset(&h, 0, sizeof(h));
    pc.pw = &pw;
    h.pc = &pc;
    for (int i = 0; i < 3; i++) {
        st[i] = torii_proxy__h2s_shell(&pw);
        assert_non_null(st[i]);
        st[i]->h = &h;
    }
    torii_proxy__h2s_due(st[0]);
    torii_proxy__h2s_kick(st[1]);
    torii_proxy__h2s_due(st[0]);
    torii_proxy__h2s_due(st[2]);
    assert_ptr_equal(h.due, st[2]);
    assert_ptr_equal(st[2]->due_next, st[1]);
    assert_ptr_equal(st[1]->due_next, st[0]);
    assert_null(st[0]->due_next);
    assert_int_equal(st[1]->kick, 1);
    assert_int_equal(st[0]->kick, 0);
    torii_proxy__h2s_free(st[1]); /* in the middle */
    assert_ptr_equal(h.due, st[2]);
    assert_ptr_equal(st[2]->due_next, st[0]);
    torii_proxy__h2s_free(st[2]); /* the first */
    assert_ptr_equal(h.due, st[0]);
    torii_proxy__h2s_free(st[0]); /* the last one */
    assert_null(h.due);
    torii_proxy__h2_cache_clear(&pw);
    assert_int_equal(pw.n_h2s_free, 0);
}

/* A kept stream child keeps its request parser: reset (it may have stopped mid-message) and
 * armed again when taken; an idle stream child never gives it to the worker's pool. */
static void test_stream_child_parser_kept(void **state)
{
    static const char part[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Half: ";
    struct event_base *base = event_base_new();
    struct proxy_worker pw;
    struct proxy_conn *pc = calloc(1, sizeof(*pc));
    struct torii_http_parser *rp;
    size_t used = 0;

    (void)state;
    assert_non_null(base);
    assert_non_null(pc);
    memset(&pw, 0, sizeof(pw));
    pw.base = base;
    torii_http_limits_default(&pw.lim);
    pc->pw = &pw;
    pc->h2_child = 1;
    pc->timer = evtimer_new(base, nop_timer, pc);
    assert_non_null(pc->timer);
    assert_int_equal(torii_proxy__rp_take(pc), TORII_OK);
    rp = pc->rp;
    torii_proxy__rp_put(pc); /* idle, but a stream's child: kept */
    assert_ptr_equal(pc->rp, rp);
    assert_int_equal(pw.n_rp_free, 0);
    assert_int_equal(torii_http_parser_feed(rp, part, sizeof(part) - 1, &used),
                     TORII_HTTP_PARSE_MORE);
    assert_true(torii_http_parser_started(rp));
    assert_int_equal(torii_proxy__h2c_put(&pw, pc), 1);
    assert_false(torii_http_parser_started(rp)); /* reset */
    pc = torii_proxy__h2c_take(&pw);
    assert_non_null(pc);
    assert_ptr_equal(pc->rp, rp);
    assert_int_equal(pw.n_rp_free, 0);
    {
        static const char post[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                   "\r\n3\r\nabc\r\n0\r\n\r\n";
        size_t off = 0;
        /* armed: a chunked body goes to the child's sink callback (its request body pump) */
        assert_int_equal(torii_http_parser_feed(rp, post, sizeof(post) - 1, &used),
                         TORII_HTTP_PARSE_HEAD);
        off = used;
        pc->x.req_body = TORII_HTTP_BODY_CHUNKED;
        pc->x.lbody = evbuffer_new();
        assert_non_null(pc->x.lbody);
        pc->phase = PH_LOCAL;
        assert_int_equal(torii_http_parser_feed(rp, post + off, sizeof(post) - 1 - off, &used),
                         TORII_HTTP_PARSE_DONE);
        assert_int_equal(evbuffer_get_length(pc->x.lbody), 3);
        evbuffer_free(pc->x.lbody);
        pc->x.lbody = NULL;
    }
    assert_int_equal(torii_proxy__h2c_put(&pw, pc), 1);
    torii_proxy__h2_cache_clear(&pw); /* frees the parser with the child */
    assert_int_equal(pw.n_h2c_free, 0);
    torii_proxy__rp_clear(&pw);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regular_fields),
        cmocka_unit_test(test_trailer_fields),
        cmocka_unit_test(test_pseudo_fields),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_nv_lower),
        cmocka_unit_test(test_pseudo_set),
        cmocka_unit_test(test_pipe_stream),
        cmocka_unit_test(test_stream_shell_reused),
        cmocka_unit_test(test_stream_shells_bounded),
        cmocka_unit_test(test_stream_children_kept),
        cmocka_unit_test(test_pipe_rearm),
        cmocka_unit_test(test_resp_fields),
        cmocka_unit_test(test_stream_child_parser_kept),
        cmocka_unit_test(test_wake_batched),
        cmocka_unit_test(test_due_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
