/* test_proxy_jwtauth.c - routes[].jwt (src/proxy/jwtauth.c): configuration errors naming
 * routes[i].jwt.<key>; the check of a request (token from Authorization: Bearer, a named
 * header or a cookie; missing, duplicated, refused tokens; claims turned into header lines,
 * unsendable claims refused); the metric counted per route and outcome; the request head
 * rewrite dropping the claim headers a client sent and appending ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "testroutes.h"
#include "torii/clock.h"
#include "torii/jwtroute.h"
#include "torii/metrics.h"
#include "torii/proxy.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, strlen(v)                                                                           \
        }                                                                                          \
    }

/* A route with this jwt object must be refused with a message starting with want. */
static void expect_bad(const char *jwt, const char *want)
{
    char buf[1024];
    struct torii_routes *r = NULL;
    struct torii_errbuf eb = {{0}};

    (void)snprintf(buf, sizeof(buf),
                   "[{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]},"
                   "\"jwt\":%s}]",
                   jwt);
    assert_int_equal(testroutes_compile_json(buf, &r, &eb), TORII_EINVAL);
    assert_null(r);
    if (strncmp(eb.msg, want, strlen(want)) != 0) {
        fail_msg("%s: got \"%s\", want \"%s...\"", jwt, eb.msg, want);
    }
}

static void test_jwt_route_config_errors(void **state)
{
    (void)state;
    expect_bad("true", "routes[0].jwt: expected an object");
    expect_bad("{\"issuer\":\"x\",\"audiance\":\"a\"}", "routes[0].jwt.audiance: unknown key");
    expect_bad("{\"keys\":[]}", "routes[0].jwt.keys: expected a non-empty array");
    expect_bad("{\"keys\":\"k\"}", "routes[0].jwt.keys: expected a non-empty array");
    expect_bad("{\"keys\":[\"\"]}", "routes[0].jwt.keys[0]: expected a string");
    expect_bad("{\"issuer\":\"\"}", "routes[0].jwt.issuer: expected a non-empty string");
    expect_bad("{\"audience\":[]}", "routes[0].jwt.audience: expected a string or an array");
    expect_bad("{\"audience\":[1]}", "routes[0].jwt.audience[0]: expected a string");
    expect_bad("{\"algorithms\":[\"none\"]}", "routes[0].jwt.algorithms[0]: expected one of");
    expect_bad("{\"algorithms\":[\"HS256\"]}", "routes[0].jwt.algorithms[0]: expected one of");
    expect_bad("{\"algorithms\":[\"ES256\",\"RS384\"]}",
               "routes[0].jwt.algorithms[1]: expected one of");
    expect_bad("{\"algorithms\":[]}", "routes[0].jwt.algorithms: expected a non-empty array");
    expect_bad("{\"leeway_s\":3601}", "routes[0].jwt.leeway_s: expected seconds in 0..3600");
    expect_bad("{\"leeway_s\":-1}", "routes[0].jwt.leeway_s: expected seconds");
    expect_bad("{\"from\":{}}", "routes[0].jwt.from: expected exactly one of header, cookie");
    expect_bad("{\"from\":{\"header\":\"A\",\"cookie\":\"b\"}}",
               "routes[0].jwt.from: expected exactly one of");
    expect_bad("{\"from\":{\"query\":\"t\"}}", "routes[0].jwt.from.query: unknown key");
    expect_bad("{\"from\":{\"header\":\"X Token\"}}", "routes[0].jwt.from.header: expected");
    expect_bad("{\"from\":{\"cookie\":\"a;b\"}}", "routes[0].jwt.from.cookie: expected");
    expect_bad("{\"claims_to_headers\":[]}", "routes[0].jwt.claims_to_headers: expected an object");
    expect_bad("{\"claims_to_headers\":{\"sub\":\"Host\"}}",
               "routes[0].jwt.claims_to_headers.sub: expected a header name");
    expect_bad("{\"claims_to_headers\":{\"sub\":\"content-length\"}}",
               "routes[0].jwt.claims_to_headers.sub: expected a header name");
    expect_bad("{\"claims_to_headers\":{\"sub\":\"X-A\\r\\nB\"}}",
               "routes[0].jwt.claims_to_headers.sub: expected a header name");
    expect_bad("{\"claims_to_headers\":{\"sub\":1}}",
               "routes[0].jwt.claims_to_headers.sub: expected a header name");
    expect_bad("{\"claims_to_headers\":{\"sub\":\"X-A\",\"iss\":\"x-a\"}}",
               "routes[0].jwt.claims_to_headers.iss: header x-a is already given to claim sub");
}

struct fx {
    EVP_PKEY *key;
    struct torii_jwt_keyset *ks;
    struct torii_routes *r;
};

static char *mint(EVP_PKEY *key, const char *kid, json_t *claims)
{
    struct torii_errbuf eb = {{0}};
    char *tok = NULL;

    assert_int_equal(torii_jwt_sign(key, 0, kid, claims, &tok, NULL, &eb), TORII_OK);
    json_decref(claims);
    return tok;
}

static json_t *claims_now(void)
{
    int64_t now = torii_clock_now_ms() / 1000;

    return json_pack("{s:s,s:s,s:s,s:I,s:I}", "sub", "alice", "iss", "https://idp.test", "aud",
                     "api", "iat", (json_int_t)now, "exp", (json_int_t)(now + 300));
}

static void fx_setup(struct fx *f, const char *jwt)
{
    char buf[1024];
    struct torii_errbuf eb = {{0}};

    f->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(f->key);
    f->ks = torii_jwt_keyset_new();
    assert_int_equal(torii_jwt_keyset_add(f->ks, "k1", 2, f->key, INT64_MAX, &eb), TORII_OK);
    torii_jwt_keyset_seal(f->ks);
    (void)snprintf(buf, sizeof(buf),
                   "[{\"hosts\":[\"x.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]}},"
                   "{\"hosts\":[\"a.test\"],\"backend\":{\"targets\":[\"127.0.0.1:1\"]},"
                   "\"jwt\":%s}]",
                   jwt);
    assert_int_equal(testroutes_compile_json(buf, &f->r, &eb), TORII_OK);
    assert_null(torii_routes_get(f->r, 0)->jwt);
    assert_non_null(torii_routes_get(f->r, 1)->jwt);
}

static void fx_clear(struct fx *f)
{
    torii_routes_free(f->r);
    torii_jwt_keyset_unref(f->ks);
    EVP_PKEY_free(f->key);
}

/* Check one request with these headers; *hdrs receives the header lines (or NULL). */
static unsigned check(struct fx *f, const struct torii_http_header *h, size_t n, char **hdrs)
{
    struct torii_http_req req;
    struct torii_errbuf eb = {{0}};
    size_t len = 0;
    char *tmp = NULL;
    unsigned o;

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.headers = h;
    req.n_headers = n;
    req.peer = "127.0.0.1:1";
    o = torii_route_jwt_check(torii_routes_get(f->r, 1)->jwt, f->ks, &req, torii_clock_now_ms(),
                              &tmp, &len, &eb);
    assert_true(tmp == NULL || strlen(tmp) == len);
    if (hdrs != NULL) {
        *hdrs = tmp;
    } else {
        free(tmp);
    }
    return o;
}

static void test_jwt_route_check_bearer(void **state)
{
    struct fx f;
    char *tok;
    char bearer[2048];
    char *hdrs = NULL;
    uint64_t ok0;

    (void)state;
    fx_setup(&f, "{\"issuer\":\"https://idp.test\",\"audience\":\"api\","
                 "\"claims_to_headers\":{\"sub\":\"X-Jwt-Sub\",\"n\":\"X-N\",\"b\":\"X-B\"}}");
    ok0 = torii_jwt_metrics_get(1, TORII_JWT_OK);
    tok = mint(f.key, "k1", claims_now());
    (void)snprintf(bearer, sizeof(bearer), "bearer   %s", tok);
    {
        const struct torii_http_header h[] = {H("Accept", "*/*"), H("authorization", bearer)};
        assert_int_equal(check(&f, h, 2, &hdrs), TORII_JWT_OK);
        assert_string_equal(hdrs, "X-Jwt-Sub: alice\r\n");
        free(hdrs);
        /* a second Authorization: ambiguous */
        const struct torii_http_header h2[] = {H("Authorization", bearer),
                                               H("Authorization", bearer)};
        assert_int_equal(check(&f, h2, 2, NULL), TORII_JWT_MALFORMED);
    }
    assert_int_equal(torii_jwt_metrics_get(1, TORII_JWT_OK), ok0 + 1);
    {
        const struct torii_http_header h[] = {H("Authorization", "Basic dTpw")};
        uint64_t m0 = torii_jwt_metrics_get(1, TORII_JWT_OUTCOME_MISSING);
        assert_int_equal(check(&f, h, 1, NULL), TORII_JWT_OUTCOME_MISSING);
        assert_int_equal(check(&f, NULL, 0, NULL), TORII_JWT_OUTCOME_MISSING);
        assert_int_equal(torii_jwt_metrics_get(1, TORII_JWT_OUTCOME_MISSING), m0 + 2);
    }
    {
        const struct torii_http_header h[] = {H("Authorization", "Bearer a.b.c")};
        assert_int_equal(check(&f, h, 1, NULL), TORII_JWT_MALFORMED);
    }
    free(tok);
    /* numbers and booleans as JSON text; other types and control characters refused */
    {
        json_t *c = claims_now();
        json_object_set_new(c, "n", json_integer(42));
        json_object_set_new(c, "b", json_true());
        tok = mint(f.key, "k1", c);
        (void)snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
        const struct torii_http_header h[] = {H("Authorization", bearer)};
        assert_int_equal(check(&f, h, 1, &hdrs), TORII_JWT_OK);
        assert_string_equal(hdrs, "X-Jwt-Sub: alice\r\nX-N: 42\r\nX-B: true\r\n");
        free(hdrs);
        free(tok);
    }
    {
        json_t *c = claims_now();
        json_object_set_new(c, "sub", json_string("alice\r\nX-Admin: 1"));
        tok = mint(f.key, "k1", c);
        (void)snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
        const struct torii_http_header h[] = {H("Authorization", bearer)};
        assert_int_equal(check(&f, h, 1, &hdrs), TORII_JWT_OUTCOME_BAD_CLAIM);
        assert_null(hdrs);
        free(tok);
    }
    {
        json_t *c = claims_now();
        json_object_set_new(c, "n", json_pack("[i]", 1));
        tok = mint(f.key, "k1", c);
        (void)snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
        const struct torii_http_header h[] = {H("Authorization", bearer)};
        assert_int_equal(check(&f, h, 1, NULL), TORII_JWT_OUTCOME_BAD_CLAIM);
        free(tok);
    }
    {
        json_t *c = claims_now();
        json_object_set_new(c, "aud", json_string("other"));
        tok = mint(f.key, "k1", c);
        (void)snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
        const struct torii_http_header h[] = {H("Authorization", bearer)};
        assert_int_equal(check(&f, h, 1, NULL), TORII_JWT_BAD_AUDIENCE);
        free(tok);
    }
    fx_clear(&f);
}

static void test_jwt_route_check_sources(void **state)
{
    struct fx f;
    char *tok;
    char v[2048];

    (void)state;
    fx_setup(&f, "{\"issuer\":\"https://idp.test\",\"audience\":[\"api\"],"
                 "\"from\":{\"cookie\":\"sid\"},\"keys\":[\"k1\"],\"algorithms\":[\"ES256\"]}");
    tok = mint(f.key, "k1", claims_now());
    (void)snprintf(v, sizeof(v), "a=1; sid=\"%s\"; b=2", tok);
    {
        const struct torii_http_header h[] = {H("Cookie", "x=y"), H("Cookie", v)};
        assert_int_equal(check(&f, h, 2, NULL), TORII_JWT_OK);
        const struct torii_http_header h2[] = {H("Cookie", v), H("cookie", v)};
        assert_int_equal(check(&f, h2, 2, NULL), TORII_JWT_MALFORMED);
        const struct torii_http_header h3[] = {H("Cookie", "sidx=1; xsid=2")};
        assert_int_equal(check(&f, h3, 1, NULL), TORII_JWT_OUTCOME_MISSING);
    }
    fx_clear(&f);
    fx_setup(&f, "{\"issuer\":\"https://idp.test\",\"audience\":\"api\","
                 "\"from\":{\"header\":\"X-Token\"},\"keys\":[\"k2\"]}");
    {
        const struct torii_http_header h[] = {H("x-token", tok)};
        /* keys names only k2, which the set does not hold */
        assert_int_equal(check(&f, h, 1, NULL), TORII_JWT_UNKNOWN_KEY);
    }
    fx_clear(&f);
    free(tok);
}

static void test_jwt_route_head_rewrite(void **state)
{
    static const struct torii_slice drop[] = {{"X-Jwt-Sub", 9}};
    const struct torii_http_header hs[] = {H("x-jwt-sub", "mallory"), H("Accept", "*/*"),
                                           H("X-JWT-SUB", "eve")};
    struct torii_http_req req;
    struct torii_proxy_fwd fwd;
    struct evbuffer *b = evbuffer_new();
    char s[1024];
    size_t n;

    (void)state;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.target = (struct torii_slice){"/", 1};
    req.path = req.target;
    req.headers = hs;
    req.n_headers = 3;
    memset(&fwd, 0, sizeof(fwd));
    fwd.client_ip = "10.0.0.1";
    fwd.host = (struct torii_slice){"a.test", 6};
    fwd.drop = drop;
    fwd.n_drop = 1;
    fwd.extra = (struct torii_slice){"X-Jwt-Sub: alice\r\n", 18};
    assert_int_equal(torii_proxy_req_head_write(b, &req, &fwd), TORII_OK);
    n = evbuffer_get_length(b);
    assert_true(n < sizeof(s));
    assert_int_equal(evbuffer_remove(b, s, n), (int)n);
    s[n] = '\0';
    assert_string_equal(s, "GET / HTTP/1.1\r\n"
                           "Host: a.test\r\n"
                           "Accept: */*\r\n"
                           "X-Forwarded-For: 10.0.0.1\r\n"
                           "X-Forwarded-Proto: http\r\n"
                           "X-Forwarded-Host: a.test\r\n"
                           "Forwarded: for=10.0.0.1;host=a.test;proto=http\r\n"
                           "X-Jwt-Sub: alice\r\n"
                           "\r\n");
    evbuffer_free(b);
}

static void test_jwt_route_metrics_text(void **state)
{
    struct torii_prom p = {0};
    const char *t;

    (void)state;
    torii_jwt_metrics_count(5000, TORII_JWT_EXPIRED); /* beyond the table: route "other" */
    torii_jwt_metrics_count(3, TORII_JWT_OUTCOMES);   /* no such outcome: not counted */
    torii_jwt_metrics_write(&p);
    t = torii_prom_text(&p, NULL);
    assert_non_null(strstr(t, "# TYPE torii_jwt_verifications_total counter\n"));
    assert_non_null(
        strstr(t, "torii_jwt_verifications_total{route=\"other\",outcome=\"expired\"} 1\n"));
    assert_null(strstr(t, "route=\"3\""));
    torii_prom_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_route_config_errors),
        cmocka_unit_test(test_jwt_route_check_bearer),
        cmocka_unit_test(test_jwt_route_check_sources),
        cmocka_unit_test(test_jwt_route_head_rewrite),
        cmocka_unit_test(test_jwt_route_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
