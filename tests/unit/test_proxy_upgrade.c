/* test_proxy_upgrade.c - HTTP/1.1 protocol switches: the upgrade decision
 * (torii_proxy_upgrade_decide), the heads written for a switch (Connection: upgrade +
 * Upgrade both ways), routes[].upgrades, the response parser's 101 when a switch was asked,
 * and the byte tunnel (tunnel.c) over in-memory endpoints: watermark, half-close, errors and
 * the idle timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "session_int.h"
#include "testroutes.h"
#include "torii/http.h"
#include "torii/proxy.h"
#include "tunnel.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static char ws_name[] = "websocket";
static char foo_name[] = "foo";
static char h2c_name[] = "h2c";
static char *ws_only[] = {ws_name};
/* A valid WebSocket opening handshake's fields. */
static const char *const ws_ok[] = {"Connection",
                                    "Upgrade",
                                    "Upgrade",
                                    "websocket",
                                    "Sec-WebSocket-Key",
                                    KEY,
                                    "Sec-WebSocket-Version",
                                    "13",
                                    NULL};

/* A GET request with the given extra header lines (name, value pairs, NULL-terminated). */
static struct torii_http_req mkreq(struct torii_http_header *h, size_t *n, const char *method,
                                   int minor, const char *const *kv)
{
    struct torii_http_req r;

    memset(&r, 0, sizeof(r));
    r.method = method;
    r.target = (struct torii_slice){"/chat", 5};
    r.path = r.target;
    r.version_minor = minor;
    *n = 0;
    for (size_t i = 0; kv[i] != NULL; i += 2) {
        h[*n].name = (struct torii_slice){kv[i], strlen(kv[i])};
        h[*n].value = (struct torii_slice){kv[i + 1], strlen(kv[i + 1])};
        (*n)++;
    }
    r.headers = h;
    r.n_headers = *n;
    return r;
}

/* The verdict for one request. */
static struct torii_proxy_upgrade_verdict decide(const char *method, int minor,
                                                 enum torii_http_body_kind body,
                                                 char *const *allowed, size_t n_allowed,
                                                 const char *const *kv)
{
    struct torii_http_header h[16];
    size_t n;
    struct torii_http_req r = mkreq(h, &n, method, minor, kv);
    struct torii_proxy_upgrade_verdict v;

    torii_proxy_upgrade_decide(&r, body, allowed, n_allowed, &v);
    return v;
}

static void test_upgrade_websocket_forwarded(void **state)
{
    static const char *const kv[] = {
        "Connection", "keep-alive, Upgrade",   "Upgrade", "WebSocket", "Sec-WebSocket-Key",
        KEY,          "Sec-WebSocket-Version", "13",      NULL};
    struct torii_proxy_upgrade_verdict v = decide("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, kv);

    (void)state;
    assert_int_equal(v.what, TORII_PROXY_UPGRADE_FORWARD);
    assert_true(v.websocket);
    assert_int_equal(v.token.len, 9);
    assert_memory_equal(v.token.ptr, "WebSocket", 9);
}

static void test_upgrade_none_and_h2c(void **state)
{
    static const char *const plain[] = {"Accept", "*/*", NULL};
    static const char *const h2c[] = {
        "Connection",     "Upgrade, HTTP2-Settings",  "Upgrade", "h2c",
        "HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA", NULL};
    static const char *const h2c_ws[] = {"Connection",
                                         "upgrade",
                                         "Upgrade",
                                         "h2c, websocket",
                                         "Sec-WebSocket-Key",
                                         KEY,
                                         "Sec-WebSocket-Version",
                                         "13",
                                         NULL};
    static char *h2c_allowed[] = {h2c_name};
    struct torii_proxy_upgrade_verdict v;

    (void)state;
    v = decide("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, plain);
    assert_int_equal(v.what, TORII_PROXY_UPGRADE_NONE);
    /* h2c alone: a plain request, even on a route that would list it */
    v = decide("GET", 1, TORII_HTTP_BODY_NONE, h2c_allowed, 1, h2c);
    assert_int_equal(v.what, TORII_PROXY_UPGRADE_NONE);
    /* h2c dropped from an offer, the rest decided */
    v = decide("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, h2c_ws);
    assert_int_equal(v.what, TORII_PROXY_UPGRADE_FORWARD);
    assert_int_equal(v.token.len, 9);
}

/* Each refused case: the status and a message naming what was wrong. */
static void refused(const char *method, int minor, enum torii_http_body_kind body,
                    char *const *allowed, size_t n_allowed, const char *const *kv,
                    const char *needle)
{
    struct torii_proxy_upgrade_verdict v = decide(method, minor, body, allowed, n_allowed, kv);

    assert_int_equal(v.what, TORII_PROXY_UPGRADE_REFUSE);
    assert_int_equal(v.status, 400);
    if (strstr(v.msg, needle) == NULL) {
        fail_msg("message \"%s\" does not name \"%s\"", v.msg, needle);
    }
}

static void test_upgrade_refused(void **state)
{
    static const char *const no_conn[] = {
        "Upgrade", "websocket", "Sec-WebSocket-Key", KEY, "Sec-WebSocket-Version", "13", NULL};
    static const char *const bad_key[] = {"Connection",
                                          "upgrade",
                                          "Upgrade",
                                          "websocket",
                                          "Sec-WebSocket-Key",
                                          "c2hvcnQ=",
                                          "Sec-WebSocket-Version",
                                          "13",
                                          NULL};
    static const char *const no_key[] = {
        "Connection", "upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", NULL};
    static const char *const no_ver[] = {"Connection",        "upgrade", "Upgrade", "websocket",
                                         "Sec-WebSocket-Key", KEY,       NULL};
    static const char *const two[] = {"Connection", "upgrade", "Upgrade", "websocket, foo/2", NULL};
    static const char *const foo[] = {"Connection", "upgrade", "Upgrade", "foo", NULL};

    (void)state;
    refused("GET", 1, TORII_HTTP_BODY_NONE, NULL, 0, ws_ok, "'websocket' is not allowed");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, foo, "'foo' is not allowed");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, no_conn, "without Connection: upgrade");
    refused("GET", 0, TORII_HTTP_BODY_NONE, ws_only, 1, ws_ok, "HTTP/1.0");
    refused("GET", 1, TORII_HTTP_BODY_LENGTH, ws_only, 1, ws_ok, "with a body");
    refused("GET", 1, TORII_HTTP_BODY_CHUNKED, ws_only, 1, ws_ok, "with a body");
    refused("POST", 1, TORII_HTTP_BODY_NONE, ws_only, 1, ws_ok, "method POST");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, bad_key, "Sec-WebSocket-Key");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, no_key, "Sec-WebSocket-Key");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, no_ver, "Sec-WebSocket-Version");
    refused("GET", 1, TORII_HTTP_BODY_NONE, ws_only, 1, two, "more than one protocol");
}

static void test_upgrade_other_token_listed(void **state)
{
    static const char *const foo[] = {"Connection", "Upgrade", "Upgrade", "FOO", NULL};
    static char *allowed[] = {ws_name, foo_name};
    struct torii_proxy_upgrade_verdict v;

    (void)state;
    /* no WebSocket handshake fields needed for another protocol */
    v = decide("OPTIONS", 1, TORII_HTTP_BODY_NONE, allowed, 2, foo);
    assert_int_equal(v.what, TORII_PROXY_UPGRADE_FORWARD);
    assert_false(v.websocket);
}

/* What out holds, as a string (valid until out changes; the caller drains it). */
static const char *as_str(struct evbuffer *out)
{
    assert_int_equal(evbuffer_add(out, "", 1), 0);
    return (const char *)evbuffer_pullup(out, -1);
}

static void test_upgrade_heads(void **state)
{
    struct torii_http_header h[16];
    struct torii_http_header rh[3] = {
        {{"Upgrade", 7}, {"websocket", 9}},
        {{"Connection", 10}, {"Upgrade", 7}},
        {{"Sec-WebSocket-Accept", 20}, {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28}}};
    struct torii_http_resp resp = {.status = 101, .headers = rh, .n_headers = 3};
    size_t n;
    struct torii_http_req r = mkreq(h, &n, "GET", 1, ws_ok);
    struct torii_proxy_fwd fwd = {.client_ip = "127.0.0.1", .host = {"a.test", 6}};
    struct evbuffer *out = evbuffer_new();
    const char *s;

    (void)state;
    fwd.upgrade = (struct torii_slice){"websocket", 9};
    assert_int_equal(torii_proxy_req_head_write(out, &r, &fwd), TORII_OK);
    s = as_str(out);
    assert_non_null(strstr(s, "\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"));
    assert_null(strstr(s, "Connection: Upgrade")); /* the client's own, hop-by-hop */
    assert_non_null(strstr(s, "Sec-WebSocket-Key: " KEY "\r\n"));
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    /* without fwd.upgrade: nothing of it passes */
    fwd.upgrade = (struct torii_slice){NULL, 0};
    assert_int_equal(torii_proxy_req_head_write(out, &r, &fwd), TORII_OK);
    s = as_str(out);
    assert_null(strstr(s, "pgrade"));
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    assert_int_equal(torii_proxy_resp_head_write(out, &resp, TORII_PROXY_OUT_NONE, 0, 0, 1),
                     TORII_OK);
    s = as_str(out);
    assert_string_equal(s, "HTTP/1.1 101 Switching Protocols\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                           "Upgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_free(out);
}

static void test_upgrade_routes_option(void **state)
{
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};
    const struct torii_route *m;

    (void)state;
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"b.test\"],\"upgrades\":[],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"c.test\"],\"upgrades\":[\"WebSocket\",\"foo/2\"],"
            "\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
            &r, &eb),
        TORII_OK);
    m = torii_routes_match(r, "a.test", 6);
    assert_int_equal(m->n_upgrades, 1);
    assert_string_equal(m->upgrades[0], "websocket");
    assert_int_equal(torii_routes_match(r, "b.test", 6)->n_upgrades, 0);
    m = torii_routes_match(r, "c.test", 6);
    assert_int_equal(m->n_upgrades, 2);
    assert_string_equal(m->upgrades[0], "websocket");
    assert_string_equal(m->upgrades[1], "foo/2");
    torii_routes_free(r);
    assert_int_equal(
        testroutes_compile_json("[{\"hosts\":[\"a.test\"],\"upgrades\":[\"websocket\",\"H2C\"],"
                                "\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
                                &r, &eb),
        TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "routes[0].upgrades[1]: h2c is never forwarded"));
    assert_int_equal(testroutes_compile_json("[{\"hosts\":[\"a.test\"],\"upgrades\":\"websocket\","
                                             "\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
                                             &r, &eb),
                     TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "routes[0].upgrades: expected an array"));
    assert_int_equal(testroutes_compile_json("[{\"hosts\":[\"a.test\"],\"upgrades\":[\"a b\"],"
                                             "\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
                                             &r, &eb),
                     TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "routes[0].upgrades[0]: expected a protocol name"));
}

static enum torii_http_parse_ev feed_all(struct torii_http_parser *p, const char *s, size_t *used)
{
    return torii_http_parser_feed(p, s, strlen(s), used);
}

static void test_upgrade_parser_101(void **state)
{
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n\r\n";
    char msg[sizeof(head) + 8];
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    size_t used = 0;

    (void)state;
    (void)snprintf(msg, sizeof(msg), "%s\x81\x02hi", head);
    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
    torii_http_parser_allow_switch(p, 1);
    assert_int_equal(feed_all(p, msg, &used), TORII_HTTP_PARSE_DONE);
    assert_int_equal(used, sizeof(head) - 1); /* the frame stays with the caller */
    assert_int_equal(torii_http_parser_resp(p)->status, 101);
    assert_false(torii_http_parser_resp(p)->interim);
    assert_false(torii_http_parser_resp(p)->keep_alive);
    assert_int_equal(torii_http_parser_body(p, NULL), TORII_HTTP_BODY_NONE);
    torii_http_parser_free(p);
    /* not asked for: an error */
    assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
    assert_int_equal(feed_all(p, msg, &used), TORII_HTTP_PARSE_ERROR);
    torii_http_parser_free(p);
}

/* ---- the tunnel over in-memory endpoints ---- */

struct fake_end {
    struct evbuffer *in, *out;
    int reading;
    int shut;
    int fail_flush;
};

static struct evbuffer *fe_input(void *c)
{
    return ((struct fake_end *)c)->in;
}

static struct evbuffer *fe_output(void *c)
{
    return ((struct fake_end *)c)->out;
}

static size_t fe_unsent(void *c)
{
    return evbuffer_get_length(((struct fake_end *)c)->out);
}

static void fe_read(void *c, int on)
{
    ((struct fake_end *)c)->reading = on;
}

static int fe_flush(void *c)
{
    return ((struct fake_end *)c)->fail_flush ? TORII_EIO : TORII_OK;
}

static void fe_shut(void *c)
{
    ((struct fake_end *)c)->shut = 1;
}

static const struct proxy_tun_ops fe_ops = {fe_input, fe_output, fe_unsent,
                                            fe_read,  fe_flush,  fe_shut};

struct tun_fixture {
    struct event_base *base;
    struct fake_end a, b;
    struct proxy_tunnel *t;
    int done;
    struct proxy_tun_stats st;
};

static void fx_done(void *arg, const struct proxy_tun_stats *st)
{
    struct tun_fixture *f = arg;

    f->done++;
    f->st = *st;
}

static void fx_init(struct tun_fixture *f, uint32_t idle_ms)
{
    struct proxy_tun_opts o;

    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    f->a.in = evbuffer_new();
    f->a.out = evbuffer_new();
    f->b.in = evbuffer_new();
    f->b.out = evbuffer_new();
    o = (struct proxy_tun_opts){f->base, idle_ms, fx_done, f};
    assert_int_equal(torii_proxy__tunnel_new(&o, (struct proxy_tun_end){&fe_ops, &f->a},
                                             (struct proxy_tun_end){&fe_ops, &f->b}, &f->t),
                     TORII_OK);
}

static void fx_free(struct tun_fixture *f)
{
    torii_proxy__tunnel_free(f->t);
    evbuffer_free(f->a.in);
    evbuffer_free(f->a.out);
    evbuffer_free(f->b.in);
    evbuffer_free(f->b.out);
    event_base_free(f->base);
}

static void test_tunnel_watermark_and_half_close(void **state)
{
    struct tun_fixture f;
    size_t big = PX_HIGH_WM * 2 + 100;
    char *blob = calloc(1, big);

    (void)state;
    assert_non_null(blob);
    fx_init(&f, 0);
    assert_int_equal(evbuffer_add(f.a.in, blob, big), 0);
    assert_int_equal(evbuffer_add(f.b.in, "pong", 4), 0);
    torii_proxy__tunnel_event(f.t, TUN_A, 0);
    /* A -> B stops at the high-water mark and A's reading pauses; B -> A flows */
    assert_int_equal(evbuffer_get_length(f.b.out), PX_HIGH_WM);
    assert_false(f.a.reading);
    assert_true(f.b.reading);
    assert_int_equal(evbuffer_get_length(f.a.out), 4);
    /* A finished sending: not passed on while its bytes wait */
    torii_proxy__tunnel_event(f.t, TUN_A, TORII_STREAM_EOF);
    assert_false(f.b.shut);
    for (int i = 0; i < 4 && evbuffer_get_length(f.a.in) > 0; i++) {
        (void)evbuffer_drain(f.b.out, evbuffer_get_length(f.b.out)); /* B's peer took it */
        torii_proxy__tunnel_event(f.t, TUN_B, TORII_STREAM_WRITE);
    }
    assert_int_equal(evbuffer_get_length(f.a.in), 0);
    assert_true(f.b.shut);     /* then the EOF goes on */
    assert_false(f.a.shut);    /* B still talks */
    assert_false(f.a.reading); /* EOF: no more reading */
    assert_int_equal(f.done, 0);
    /* B finishes too: A half-closed; done once both outputs are sent */
    torii_proxy__tunnel_event(f.t, TUN_B, TORII_STREAM_EOF);
    assert_true(f.a.shut);
    assert_int_equal(f.done, 0); /* B's output not sent yet */
    (void)evbuffer_drain(f.b.out, evbuffer_get_length(f.b.out));
    (void)evbuffer_drain(f.a.out, evbuffer_get_length(f.a.out));
    torii_proxy__tunnel_event(f.t, TUN_A, TORII_STREAM_WRITE);
    assert_int_equal(f.done, 1);
    assert_int_equal(f.st.why, TUN_END_DONE);
    assert_int_equal(f.st.a_to_b, big);
    assert_int_equal(f.st.b_to_a, 4);
    fx_free(&f);
    free(blob);
}

static void test_tunnel_errors(void **state)
{
    struct tun_fixture f;

    (void)state;
    fx_init(&f, 0);
    torii_proxy__tunnel_event(f.t, TUN_B, TORII_STREAM_ERROR);
    assert_int_equal(f.done, 1);
    assert_int_equal(f.st.why, TUN_END_ERROR);
    fx_free(&f);
    fx_init(&f, 0);
    f.b.fail_flush = 1;
    assert_int_equal(evbuffer_add(f.a.in, "x", 1), 0);
    torii_proxy__tunnel_event(f.t, TUN_A, 0);
    assert_int_equal(f.done, 1);
    assert_int_equal(f.st.why, TUN_END_ERROR);
    fx_free(&f);
    fx_init(&f, 0);
    torii_proxy__tunnel_event(f.t, TUN_A, TORII_STREAM_TIMEOUT); /* a write stalled */
    assert_int_equal(f.done, 1);
    assert_int_equal(f.st.why, TUN_END_IDLE);
    fx_free(&f);
}

static void test_tunnel_idle_timeout(void **state)
{
    struct tun_fixture f;

    (void)state;
    fx_init(&f, 5);
    /* The idle timer is the only event: the loop runs until it fires and ends the tunnel
     * (then no event is left: 1). */
    assert_int_equal(event_base_dispatch(f.base), 1);
    assert_int_equal(f.done, 1);
    assert_int_equal(f.st.why, TUN_END_IDLE);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_websocket_forwarded),
        cmocka_unit_test(test_upgrade_none_and_h2c),
        cmocka_unit_test(test_upgrade_refused),
        cmocka_unit_test(test_upgrade_other_token_listed),
        cmocka_unit_test(test_upgrade_heads),
        cmocka_unit_test(test_upgrade_routes_option),
        cmocka_unit_test(test_upgrade_parser_101),
        cmocka_unit_test(test_tunnel_watermark_and_half_close),
        cmocka_unit_test(test_tunnel_errors),
        cmocka_unit_test(test_tunnel_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
