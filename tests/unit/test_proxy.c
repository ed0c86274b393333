/* test_proxy.c - route compilation and matching (with the errors naming route and key),
 * Host parsing, the one-pass request/response head rewriting (hop-by-hop removal, forwarding
 * headers replaced, framing re-emitted) and the strict response parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "testroutes.h"
#include "torii/http.h"
#include "torii/proxy.h"

static void test_routes_match_exact_before_wildcard(void **state)
{
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};
    const struct torii_route *m;

    (void)state;
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"*.example.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"App.Example.Test\"],\"backend\":{\"targets\":"
            "[\"https://127.0.0.1:2\",\"https://127.0.0.1\"],"
            "\"timeouts\":{\"connect_ms\":100,\"read_ms\":200,\"idle_ms\":300},"
            "\"tls\":{\"sni\":\"backend.test\"}},"
            "\"client_auth\":{\"mode\":\"required\",\"trusted_cas\":[\"ca1\"]}}]",
            &r, &eb),
        TORII_OK);
    assert_int_equal(torii_routes_count(r), 2);
    assert_int_equal(torii_routes_n_targets(r), 3);
    m = torii_routes_match(r, "app.example.test", 16);
    assert_non_null(m);
    assert_int_equal(m->index, 1);
    assert_int_equal(m->backend.connect_ms, 100);
    assert_int_equal(m->backend.read_ms, 200);
    assert_int_equal(m->backend.idle_ms, 300);
    assert_int_equal(m->backend.targets[1].port, 443);
    assert_true(m->backend.targets[1].tls);
    assert_int_equal(m->backend.targets[0].port, 2);
    assert_true(m->backend.targets[0].tls);
    assert_string_equal(m->backend.tls.sni, "backend.test");
    m = torii_routes_match(r, "APP.example.test.", 17);
    assert_non_null(m);
    assert_int_equal(m->index, 1);
    m = torii_routes_match(r, "b.example.test", 14);
    assert_non_null(m);
    assert_int_equal(m->index, 0);
    assert_null(torii_routes_match(r, "x.b.example.test", 16)); /* one label only */
    assert_null(torii_routes_match(r, "example.test", 12));
    assert_null(torii_routes_match(r, "other.test", 10));
    assert_non_null(torii_routes_client_auth(r, "app.example.test", 16));
    assert_null(torii_routes_client_auth(r, "b.example.test", 14));
    torii_routes_free(r);
}

static void expect_error(const char *json, const char *fragment)
{
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(testroutes_compile_json(json, &r, &eb), TORII_EINVAL);
    assert_null(r);
    if (strstr(eb.msg, fragment) == NULL) {
        fail_msg("error '%s' does not name '%s'", eb.msg, fragment);
    }
}

static void test_routes_bad_config_names_route_and_key(void **state)
{
    (void)state;
    expect_error("{}", "routes");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]},"
                 "\"bogus\":1}]",
                 "routes[0].bogus");
    expect_error("[{\"hosts\":[],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]", "routes[0].hosts");
    expect_error("[{\"hosts\":[\"a b\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
                 "routes[0].hosts[0]");
    expect_error("[{\"hosts\":[\"a.test\"]}]", "routes[0].backend");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[]}}]",
                 "routes[0].backend.targets");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1\"]}}]",
                 "routes[0].backend.targets[0]");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"ftp://127.0.0.1:1\"]}}]",
                 "routes[0].backend.targets[0]");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:99999\"]}}]",
                 "routes[0].backend.targets[0]");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"timeouts\":{\"read_ms\":0}}}]",
                 "routes[0].backend.timeouts.read_ms");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"tls\":{\"verify\":false}}}]",
                 "routes[0].backend.tls.verify");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]},"
                 "\"client_auth\":{\"mode\":\"sometimes\"}}]",
                 "routes[0].client_auth.mode");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]},"
                 "\"client_auth\":{\"mode\":\"required\"}}]",
                 "routes[0].client_auth.trusted_cas");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
                 " {\"hosts\":[\"A.test\"],\"backend\":{\"targets\":[\"127.0.0.1:2\"]}}]",
                 "routes[1].hosts: a.test is already served by routes[0]");
}

/* "*": the default route, for any host no other route names (IP addresses, unlisted
 * names, no SNI); exact names and one-label wildcards come first. */
/* backend.protocol and backend.h2_connections (HTTP/2 towards backends). */
static void test_routes_backend_protocol(void **state)
{
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};
    const struct torii_route *m;

    (void)state;
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"b.test\"],\"backend\":{\"targets\":[\"http://127.0.0.1:2\"],"
            "\"protocol\":\"h2c\",\"h2_connections\":3}},"
            " {\"hosts\":[\"c.test\"],\"backend\":{\"targets\":[\"https://127.0.0.1:3\"],"
            "\"protocol\":\"h2\"}}]",
            &r, &eb),
        TORII_OK);
    m = torii_routes_match(r, "a.test", 6);
    assert_int_equal(m->backend.protocol, TORII_ROUTE_HTTP1);
    m = torii_routes_match(r, "b.test", 6);
    assert_int_equal(m->backend.protocol, TORII_ROUTE_H2C);
    assert_int_equal(m->backend.h2_connections, 3);
    m = torii_routes_match(r, "c.test", 6);
    assert_int_equal(m->backend.protocol, TORII_ROUTE_H2);
    assert_int_equal(m->backend.h2_connections, 2);
    /* no HTTP/1.1 Upgrade towards an HTTP/2 backend: none by default, an error when asked */
    assert_int_equal(m->n_upgrades, 0);
    assert_int_equal(torii_routes_match(r, "a.test", 6)->n_upgrades, 1);
    torii_routes_free(r);
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"http://127.0.0.1:1\"],"
                 "\"protocol\":\"h2c\"},\"upgrades\":[\"websocket\"]}]",
                 "routes[0].upgrades: an HTTP/1.1 Upgrade cannot be carried to an HTTP/2 backend");
    assert_int_equal(
        testroutes_compile_json("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"http://"
                                "127.0.0.1:1\"],\"protocol\":\"h2c\"},\"upgrades\":[]}]",
                                &r, &eb),
        TORII_OK);
    torii_routes_free(r);
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"protocol\":\"http2\"}}]",
                 "routes[0].backend.protocol: expected \"http1\", \"h2\" or \"h2c\"");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"protocol\":2}}]",
                 "routes[0].backend.protocol");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"protocol\":\"h2\"}}]",
                 "routes[0].backend.targets[0]: protocol \"h2\" needs https:// targets");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"https://127.0.0.1:1\"],"
                 "\"protocol\":\"h2c\"}}]",
                 "routes[0].backend.targets[0]: protocol \"h2c\" needs http:// targets");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"protocol\":\"h2c\",\"h2_connections\":0}}]",
                 "routes[0].backend.h2_connections: expected an integer in 1..64");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"h2_connections\":2}}]",
                 "routes[0].backend.h2_connections: only with protocol");
}

static void test_routes_default_route(void **state)
{
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};
    const struct torii_route *m;

    (void)state;
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"*.example.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"*\"],\"backend\":{\"targets\":[\"127.0.0.1:2\"]},"
            "  \"client_auth\":{\"mode\":\"required\",\"trusted_cas\":[\"ca1\"]}},"
            " {\"hosts\":[\"app.example.test\"],\"backend\":{\"targets\":"
            "[\"127.0.0.1:3\"]}}]",
            &r, &eb),
        TORII_OK);
    assert_int_equal(torii_routes_match(r, "app.example.test", 16)->index, 2);
    assert_int_equal(torii_routes_match(r, "b.example.test", 14)->index, 0);
    m = torii_routes_match(r, "10.0.0.5", 8);
    assert_non_null(m);
    assert_int_equal(m->index, 1);
    assert_int_equal(torii_routes_match(r, "other.test", 10)->index, 1);
    assert_int_equal(torii_routes_match(r, "x.b.example.test", 16)->index, 1);
    assert_int_equal(torii_routes_match(r, "[::1]", 5)->index, 1);
    assert_int_equal(torii_routes_match(r, NULL, 0)->index, 1); /* no SNI */
    /* the handshake applies the default route's client-certificate policy too */
    assert_non_null(torii_routes_client_auth(r, "10.0.0.5", 8));
    assert_non_null(torii_routes_client_auth(r, NULL, 0));
    assert_null(torii_routes_client_auth(r, "app.example.test", 16));
    torii_routes_free(r);

    /* "*" next to names in one route: that route serves its names and everything else */
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"a.test\",\"*\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
            " {\"hosts\":[\"b.test\"],\"backend\":{\"targets\":[\"127.0.0.1:2\"]}}]",
            &r, &eb),
        TORII_OK);
    assert_int_equal(torii_routes_match(r, "a.test", 6)->index, 0);
    assert_int_equal(torii_routes_match(r, "b.test", 6)->index, 1);
    assert_int_equal(torii_routes_match(r, "c.test", 6)->index, 0);
    torii_routes_free(r);

    /* without "*" nothing changes: unlisted hosts have no route */
    assert_int_equal(
        testroutes_compile_json(
            "[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]", &r, &eb),
        TORII_OK);
    assert_null(torii_routes_match(r, "10.0.0.5", 8));
    assert_null(torii_routes_match(r, NULL, 0));
    torii_routes_free(r);
}

static void test_routes_config_errors_not_silent(void **state)
{
    struct torii_config cfg;
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_routes *r = NULL;
    json_error_t jerr;

    (void)state;
    expect_error("[{\"hosts\":[\"*\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
                 " {\"hosts\":[\"*\"],\"backend\":{\"targets\":[\"127.0.0.1:2\"]}}]",
                 "routes[1].hosts: \"*\" (the default route) is already routes[0]");
    expect_error("[{\"hosts\":[\"**\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}}]",
                 "routes[0].hosts[0]");
    /* backend.tls (CA, client certificate) with a plain target: an error, not plaintext */
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"tls\":{\"trusted_ca\":\"ca\",\"client_cert\":\"cli\"}}}]",
                 "routes[0].backend.tls: given, but routes[0].backend.targets[0] (127.0.0.1:1) "
                 "is plain http");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"https://127.0.0.1:1\","
                 "\"http://127.0.0.1:2\"],\"tls\":{\"client_cert\":\"cli\"}}}]",
                 "routes[0].backend.targets[1] (127.0.0.1:2) is plain http");
    expect_error("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                 "\"tls\":{}}}]",
                 "routes[0].backend.tls: given");
    /* every bad route is reported, not only the first */
    memset(&cfg, 0, sizeof(cfg));
    cfg.routes =
        json_loads("[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"],"
                   "\"tls\":{\"trusted_ca\":\"ca\"}}},"
                   " {\"hosts\":[\"b.test\"],\"bogus\":1},"
                   " {\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:3\"]}}]",
                   0, &jerr);
    assert_non_null(cfg.routes);
    assert_int_equal(torii_routes_check(&cfg, &r, &errs), TORII_EINVAL);
    assert_null(r);
    assert_int_equal(errs.n, 3);
    assert_non_null(strstr(errs.msgs[0], "config: routes[0].backend.tls"));
    assert_non_null(strstr(errs.msgs[1], "config: routes[1].bogus"));
    assert_non_null(strstr(errs.msgs[2], "config: routes[2].hosts: a.test is already served"));
    torii_conf_errs_free(&errs);
    json_decref(cfg.routes);
}

static void test_host_parse_validates_and_normalizes(void **state)
{
    char out[TORII_SNI_NAME_MAX + 1];

    (void)state;
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){"App.Test:8443", 13}, out), 8);
    assert_string_equal(out, "app.test");
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){"a.test.", 7}, out), 6);
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){"[::1]:443", 9}, out), 5);
    assert_string_equal(out, "[::1]");
    assert_true(torii_proxy_host_parse((struct torii_slice){"a/b", 3}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){"a@b", 3}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){"a:x", 3}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){"", 0}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){"[zz]", 4}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){":80", 3}, out) < 0);
}

/* Names at the length limit, with and without a trailing dot and a port. */
static void test_host_parse_lengths(void **state)
{
    char out[TORII_SNI_NAME_MAX + 1];
    char in[TORII_SNI_NAME_MAX + 8];
    size_t max = TORII_SNI_NAME_MAX;

    (void)state;
    memset(in, 'A', sizeof(in));
    memcpy(in + max, ".:1", 3);
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){in, max}, out), (int)max);
    assert_int_equal(strlen(out), max);
    assert_true(out[0] == 'a' && out[max - 1] == 'a');
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){in, max + 1}, out), (int)max);
    assert_int_equal(torii_proxy_host_parse((struct torii_slice){in, max + 3}, out), (int)max);
    in[max] = 'A';
    assert_true(torii_proxy_host_parse((struct torii_slice){in, max + 1}, out) < 0);
    memcpy(in + max + 1, ".:1", 3);
    assert_true(torii_proxy_host_parse((struct torii_slice){in, max + 2}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){in, max + 4}, out) < 0);
    assert_true(torii_proxy_host_parse((struct torii_slice){in, max + 6}, out) < 0);
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);

    assert_non_null(s);
    assert_int_equal(evbuffer_remove(b, s, n), (int)n);
    s[n] = '\0';
    return s;
}

static void test_req_head_drops_hop_by_hop_and_replaces_forwarding(void **state)
{
    static const struct torii_http_header hs[] = {
        H("Host", "app.test"),
        H("Connection", "keep-alive, X-Private, Upgrade"),
        H("X-Private", "secret"),
        H("Keep-Alive", "timeout=5"),
        H("Proxy-Connection", "keep-alive"),
        H("TE", "trailers"),
        H("Upgrade", "h2c"),
        H("HTTP2-Settings", "AAA"),
        H("Expect", "100-continue"),
        H("X-Forwarded-For", "6.6.6.6"),
        H("x-forwarded-proto", "http"),
        H("X-Forwarded-Host", "evil"),
        H("Forwarded", "for=evil"),
        H("Client-Cert", ":Zm9v:"),
        H("Content-Length", "5"),
        H("Accept", "*/*"),
    };
    struct torii_http_req req;
    struct torii_proxy_fwd fwd;
    struct evbuffer *b = evbuffer_new();
    char *s;

    (void)state;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.target = (struct torii_slice){"/p?q=1", 6};
    req.path = (struct torii_slice){"/p", 2};
    req.query = (struct torii_slice){"q=1", 3};
    req.version_minor = 1;
    req.headers = hs;
    req.n_headers = sizeof(hs) / sizeof(hs[0]);
    memset(&fwd, 0, sizeof(fwd));
    fwd.client_ip = "10.0.0.1";
    fwd.https = 1;
    fwd.host = (struct torii_slice){"app.test", 8};
    fwd.body = TORII_HTTP_BODY_LENGTH;
    fwd.body_length = 5;
    assert_int_equal(torii_proxy_req_head_write(b, &req, &fwd), TORII_OK);
    s = drain(b);
    assert_string_equal(s, "POST /p?q=1 HTTP/1.1\r\n"
                           "Host: app.test\r\n"
                           "Accept: */*\r\n"
                           "Content-Length: 5\r\n"
                           "X-Forwarded-For: 10.0.0.1\r\n"
                           "X-Forwarded-Proto: https\r\n"
                           "X-Forwarded-Host: app.test\r\n"
                           "Forwarded: for=10.0.0.1;host=app.test;proto=https\r\n"
                           "\r\n");
    free(s);

    /* chunked re-framing, IPv6 client, absolute-form target, client certificate */
    req.method = "PUT";
    req.target = (struct torii_slice){"https://app.test:8443/x?y", 25};
    req.path = (struct torii_slice){"/x", 2};
    req.query = (struct torii_slice){"y", 1};
    req.path.ptr = req.target.ptr + 21;
    req.query.ptr = req.target.ptr + 24;
    req.n_headers = 1;
    fwd.client_ip = "2001:db8::1";
    fwd.host = (struct torii_slice){"app.test:8443", 13};
    fwd.body = TORII_HTTP_BODY_CHUNKED;
    fwd.client_cert = (struct torii_slice){":QUJD:", 6};
    assert_int_equal(torii_proxy_req_head_write(b, &req, &fwd), TORII_OK);
    s = drain(b);
    assert_string_equal(s, "PUT /x?y HTTP/1.1\r\n"
                           "Host: app.test:8443\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "X-Forwarded-For: 2001:db8::1\r\n"
                           "X-Forwarded-Proto: https\r\n"
                           "X-Forwarded-Host: app.test:8443\r\n"
                           "Forwarded: for=\"[2001:db8::1]\";host=\"app.test:8443\";proto=https\r\n"
                           "Client-Cert: :QUJD:\r\n"
                           "\r\n");
    free(s);
    evbuffer_free(b);
}

static void test_resp_head_reframes(void **state)
{
    static const struct torii_http_header hs[] = {
        H("Server", "b"),     H("Connection", "close, X-Hop"),
        H("X-Hop", "1"),      H("Transfer-Encoding", "chunked"),
        H("Keep-Alive", "x"),
    };
    static const struct torii_http_header cl[] = {H("Content-Length", "42")};
    struct torii_http_resp resp;
    struct evbuffer *b = evbuffer_new();
    char *s;

    (void)state;
    memset(&resp, 0, sizeof(resp));
    resp.status = 200;
    resp.reason = (struct torii_slice){"OK", 2};
    resp.headers = hs;
    resp.n_headers = sizeof(hs) / sizeof(hs[0]);
    assert_int_equal(torii_proxy_resp_head_write(b, &resp, TORII_PROXY_OUT_CHUNKED, 0, 0, 1),
                     TORII_OK);
    s = drain(b);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nServer: b\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    assert_int_equal(torii_proxy_resp_head_write(b, &resp, TORII_PROXY_OUT_CLOSE, 0, 1, 0),
                     TORII_OK);
    s = drain(b);
    assert_string_equal(s, "HTTP/1.1 200 OK\r\nServer: b\r\nConnection: close\r\n\r\n");
    free(s);
    /* HEAD: the upstream's Content-Length is kept; HTTP/1.0 keep-alive announced */
    resp.headers = cl;
    resp.n_headers = 1;
    assert_int_equal(torii_proxy_resp_head_write(b, &resp, TORII_PROXY_OUT_NONE, 0, 0, 0),
                     TORII_OK);
    s = drain(b);
    assert_string_equal(s,
                        "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nConnection: keep-alive\r\n\r\n");
    free(s);
    evbuffer_free(b);
}

/* Feed a whole response; returns the final event. */
static enum torii_http_parse_ev feed_resp(struct torii_http_parser *p, const char *raw)
{
    size_t used = 0;
    return torii_http_parser_feed(p, raw, strlen(raw), &used);
}

static void test_response_parser_framing(void **state)
{
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    uint64_t len = 0;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
        "HTTP/1.1 200 OK\nA: b\n\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n: v\r\n\r\n",
    };

    (void)state;
    torii_http_limits_default(&lim);
    lim.max_body = SIZE_MAX;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
        if (feed_resp(p, bad[i]) != TORII_HTTP_PARSE_ERROR) {
            fail_msg("accepted: %s", bad[i]);
        }
        assert_int_equal(torii_http_parser_error(p, NULL), 502);
        torii_http_parser_free(p);
    }
    assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
    /* 1xx is interim */
    assert_int_equal(feed_resp(p, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
                     TORII_HTTP_PARSE_DONE);
    assert_true(torii_http_parser_resp(p)->interim);
    torii_http_parser_next(p);
    /* Content-Length body: HEAD event, taken by the caller */
    assert_int_equal(feed_resp(p, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
                     TORII_HTTP_PARSE_HEAD);
    assert_int_equal(torii_http_parser_body(p, &len), TORII_HTTP_BODY_LENGTH);
    assert_int_equal(len, 3);
    torii_http_parser_body_taken(p, 3);
    torii_http_parser_next(p);
    /* HEAD response: no body whatever the framing */
    torii_http_parser_set_no_body(p, 1);
    assert_int_equal(feed_resp(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
                     TORII_HTTP_PARSE_DONE);
    torii_http_parser_next(p);
    torii_http_parser_set_no_body(p, 0);
    /* 304 with Content-Length: no body */
    assert_int_equal(feed_resp(p, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
                     TORII_HTTP_PARSE_DONE);
    assert_int_equal(torii_http_parser_body(p, NULL), TORII_HTTP_BODY_NONE);
    torii_http_parser_next(p);
    /* no framing: close-delimited, not reusable */
    assert_int_equal(feed_resp(p, "HTTP/1.1 200 OK\r\n\r\n"), TORII_HTTP_PARSE_HEAD);
    assert_int_equal(torii_http_parser_body(p, NULL), TORII_HTTP_BODY_EOF);
    assert_false(torii_http_parser_resp(p)->keep_alive);
    torii_http_parser_free(p);

    /* chunked with trailers kept apart */
    assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
    assert_int_equal(feed_resp(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     TORII_HTTP_PARSE_HEAD);
    assert_int_equal(torii_http_parser_body(p, NULL), TORII_HTTP_BODY_CHUNKED);
    assert_int_equal(feed_resp(p, "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"), TORII_HTTP_PARSE_DONE);
    assert_int_equal(torii_http_parser_resp(p)->n_trailers, 1);
    assert_int_equal(torii_http_parser_resp(p)->n_headers, 1);
    torii_http_parser_free(p);
}

/* A chunked response from a hostile backend: the head passes, then a chunk-size line over
 * TORII_HTTP_MAX_CHUNK_LINE bytes, or a trailer section over the limits: 502. */
static void test_response_parser_bounds(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct torii_http_limits lim;
    size_t cap = 256 * 1024;
    char *b = torii_xmalloc(cap);

    (void)state;
    torii_http_limits_default(&lim);
    lim.max_body = SIZE_MAX;
    for (int which = 0; which < 4; which++) {
        struct torii_http_parser *p = NULL;
        size_t o = 0;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        assert_int_equal(torii_http_parser_new_response(&lim, &p), TORII_OK);
        assert_int_equal(feed_resp(p, head), TORII_HTTP_PARSE_HEAD);
        if (which == 0) { /* a 70,000-byte extension on the first chunk */
            o = (size_t)snprintf(b, cap, "5;");
            memset(b + o, 'a', 70000);
            o += 70000;
        } else if (which == 1) { /* a good chunk, then a long extension */
            o = (size_t)snprintf(b, cap, "3;k=v\r\nabc\r\n4;");
            memset(b + o, 'a', TORII_HTTP_MAX_CHUNK_LINE);
            o += TORII_HTTP_MAX_CHUNK_LINE;
        } else { /* endless trailer fields (2), one endless trailer value (3) */
            o = (size_t)snprintf(b, cap, "0\r\n");
            while (which == 2 && o + 16 < cap) {
                o += (size_t)snprintf(b + o, cap - o, "X-T: v\r\n");
            }
            if (which == 3) {
                o += (size_t)snprintf(b + o, cap - o, "X-T: ");
                memset(b + o, 'v', 100000);
                o += 100000;
            }
        }
        ev = torii_http_parser_feed(p, b, o, &used);
        if (ev != TORII_HTTP_PARSE_ERROR) {
            fail_msg("case %d accepted (event %d, %zu of %zu bytes)", which, (int)ev, used, o);
        }
        assert_int_equal(torii_http_parser_error(p, NULL), 502);
        torii_http_parser_free(p);
    }
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_match_exact_before_wildcard),
        cmocka_unit_test(test_routes_bad_config_names_route_and_key),
        cmocka_unit_test(test_routes_backend_protocol),
        cmocka_unit_test(test_routes_default_route),
        cmocka_unit_test(test_routes_config_errors_not_silent),
        cmocka_unit_test(test_host_parse_validates_and_normalizes),
        cmocka_unit_test(test_host_parse_lengths),
        cmocka_unit_test(test_req_head_drops_hop_by_hop_and_replaces_forwarding),
        cmocka_unit_test(test_resp_head_reframes),
        cmocka_unit_test(test_response_parser_framing),
        cmocka_unit_test(test_response_parser_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
