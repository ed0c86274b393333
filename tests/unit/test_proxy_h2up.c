/* test_proxy_h2up.c - the pure pieces of HTTP/2 towards backends (src/proxy/h2up_map.c): the
 * gRPC content type, grpc-timeout in milliseconds (every unit, rounding, malformed values),
 * an HTTP/1.1 request head as HTTP/2 fields (pseudo-headers, Host as :authority,
 * connection-specific fields dropped, names lower-cased, te: trailers for gRPC), response
 * fields as HTTP/1.1 lines and the status line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "h2up_int.h"

static struct torii_slice sl(const char *s)
{
    return (struct torii_slice){s, strlen(s)};
}

static void test_is_grpc(void **state)
{
    static const char *const yes[] = {"application/grpc", "application/grpc+proto",
                                      "Application/GRPC;charset=x", NULL};
    static const char *const no[] = {
        "application/grpcx", "application/json", "application/grp", "text/plain", "", NULL};

    (void)state;
    for (size_t i = 0; yes[i] != NULL; i++) {
        struct torii_slice v = sl(yes[i]);
        assert_int_equal(torii_h2up__is_grpc(&v), 1);
    }
    for (size_t i = 0; no[i] != NULL; i++) {
        struct torii_slice v = sl(no[i]);
        assert_int_equal(torii_h2up__is_grpc(&v), 0);
    }
    assert_int_equal(torii_h2up__is_grpc(NULL), 0);
}

static uint64_t timeout_ms(const char *v)
{
    uint64_t ms = 0;

    assert_int_equal(torii_h2up__grpc_timeout_ms(sl(v), &ms), TORII_OK);
    return ms;
}

static void test_grpc_timeout(void **state)
{
    static const char *const bad[] = {"",   "S",          "10",   "10s", "10 S", "-1S",
                                      "1x", "123456789S", "1.5S", "S10", NULL};
    uint64_t ms = 7;

    (void)state;
    assert_int_equal(timeout_ms("2H"), 7200000);
    assert_int_equal(timeout_ms("3M"), 180000);
    assert_int_equal(timeout_ms("5S"), 5000);
    assert_int_equal(timeout_ms("250m"), 250);
    assert_int_equal(timeout_ms("1500u"), 2);    /* 1.5 ms rounded up */
    assert_int_equal(timeout_ms("1000000n"), 1); /* exactly 1 ms */
    assert_int_equal(timeout_ms("1n"), 1);       /* never 0: at least 1 ms */
    assert_int_equal(timeout_ms("0m"), 1);
    assert_int_equal(timeout_ms("99999999H"), (uint64_t)99999999 * 3600000);
    for (size_t i = 0; bad[i] != NULL; i++) {
        assert_int_equal(torii_h2up__grpc_timeout_ms(sl(bad[i]), &ms), TORII_EINVAL);
    }
    assert_int_equal(ms, 7); /* untouched on error */
}

/* Parse head (HTTP/1.1 as torii writes it) and map it. */
static struct torii_http_parser *parse(const char *head)
{
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    size_t used = 0;
    enum torii_http_parse_ev ev;

    torii_http_limits_default(&lim);
    assert_int_equal(torii_http_parser_new(&lim, &p), TORII_OK);
    ev = torii_http_parser_feed(p, head, strlen(head), &used);
    assert_true(ev == TORII_HTTP_PARSE_HEAD || ev == TORII_HTTP_PARSE_DONE);
    return p;
}

static const char *nv_get(const nghttp2_nv *nv, size_t n, const char *name, char *buf, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (nv[i].namelen == strlen(name) && memcmp(nv[i].name, name, nv[i].namelen) == 0) {
            assert_true(nv[i].valuelen < len);
            memcpy(buf, nv[i].value, nv[i].valuelen);
            buf[nv[i].valuelen] = '\0';
            return buf;
        }
    }
    return NULL;
}

static void test_req_nv(void **state)
{
    struct torii_http_parser *p =
        parse("POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nHost: api.example:8443\r\n"
              "Content-Type: application/grpc\r\nX-Mixed-Case: v\r\nContent-Length: 5\r\n"
              "Connection: keep-alive\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\n"
              "Proxy-Connection: x\r\n\r\n");
    nghttp2_nv *nv = NULL;
    size_t n = 0;
    char *store = NULL;
    char b[128];

    (void)state;
    assert_int_equal(torii_h2up__req_nv(torii_http_parser_req(p), 1, &nv, &n, &store), TORII_OK);
    /* The four pseudo-headers come first (RFC 9113 section 8.3). */
    assert_true(n >= 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(nv[i].name[0], ':');
    }
    assert_string_equal(nv_get(nv, n, ":method", b, sizeof(b)), "POST");
    assert_string_equal(nv_get(nv, n, ":scheme", b, sizeof(b)), "https");
    assert_string_equal(nv_get(nv, n, ":authority", b, sizeof(b)), "api.example:8443");
    assert_string_equal(nv_get(nv, n, ":path", b, sizeof(b)), "/pkg.Svc/Call?x=1");
    assert_string_equal(nv_get(nv, n, "x-mixed-case", b, sizeof(b)), "v");
    assert_string_equal(nv_get(nv, n, "content-length", b, sizeof(b)), "5");
    assert_string_equal(nv_get(nv, n, "te", b, sizeof(b)), "trailers");
    assert_null(nv_get(nv, n, "X-Mixed-Case", b, sizeof(b)));
    static const char *const gone[] = {"host",    "connection",       "keep-alive",
                                       "upgrade", "proxy-connection", NULL};
    for (size_t i = 0; gone[i] != NULL; i++) {
        assert_null(nv_get(nv, n, gone[i], b, sizeof(b)));
    }
    free(nv);
    free(store);
    torii_http_parser_free(p);
}

static void test_req_nv_plain(void **state)
{
    struct torii_http_parser *p =
        parse("GET / HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nAccept: */*\r\n\r\n");
    nghttp2_nv *nv = NULL;
    size_t n = 0;
    char *store = NULL;
    char b[64];

    (void)state;
    assert_int_equal(torii_h2up__req_nv(torii_http_parser_req(p), 0, &nv, &n, &store), TORII_OK);
    assert_int_equal(n, 5); /* 4 pseudo + accept: te is not added for a non-gRPC request */
    assert_string_equal(nv_get(nv, n, ":scheme", b, sizeof(b)), "http");
    assert_null(nv_get(nv, n, "te", b, sizeof(b)));
    free(nv);
    free(store);
    torii_http_parser_free(p);
}

static void test_field_line(void **state)
{
    struct evbuffer *out = evbuffer_new();
    char buf[256];
    size_t len;

    (void)state;
    assert_int_equal(torii_h2up__field_line(out, sl(":status"), sl("200")), TORII_OK);
    assert_int_equal(torii_h2up__field_line(out, sl("connection"), sl("close")), TORII_OK);
    assert_int_equal(torii_h2up__field_line(out, sl("transfer-encoding"), sl("chunked")), TORII_OK);
    assert_int_equal(torii_h2up__field_line(out, sl("grpc-status"), sl("0")), TORII_OK);
    assert_int_equal(torii_h2up__status_line(out, 404), TORII_OK);
    len = evbuffer_remove(out, buf, sizeof(buf) - 1);
    buf[len] = '\0';
    assert_string_equal(buf, "grpc-status: 0\r\nHTTP/1.1 404 Not Found\r\n");
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_grpc),    cmocka_unit_test(test_grpc_timeout),
        cmocka_unit_test(test_req_nv),     cmocka_unit_test(test_req_nv_plain),
        cmocka_unit_test(test_field_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
