/* test_admin_routes.c - the admin route table and status map (src/admin/routes.c, reply.c):
 * every row has a handler and a scope (public rows are read-only GETs), every row is what a
 * request of its own method and path finds, each error code maps to exactly one status, and
 * GET /metrics writes the certificate gauges without parsing a single entity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_routes.h"
#include "torii/certstats.h"
#include "torii/conf.h"

/* The path of a pattern with '*' = "id1". */
static void path_of(const char *pat, char *out, size_t len)
{
    size_t o = 0;

    for (; *pat != '\0' && o + 4 < len; pat++) {
        if (*pat == '*') {
            memcpy(out + o, "id1", 3);
            o += 3;
        } else {
            out[o++] = *pat;
        }
    }
    out[o] = '\0';
}

static void test_every_route_has_a_handler_and_a_scope(void **state)
{
    const unsigned known = TORII_SCOPE_READ | TORII_SCOPE_WRITE | TORII_SCOPE_PKI
                           | TORII_SCOPE_ADMIN | TORII_SCOPE_KEYS_EXPORT;

    (void)state;
    assert_true(admin_n_routes > 0);
    for (size_t i = 0; i < admin_n_routes; i++) {
        const struct admin_route *r = &admin_routes[i];
        char path[256];

        path_of(r->pattern, path, sizeof(path));
        if (r->fn == NULL || r->method == NULL || r->pattern[0] != '/') {
            fail_msg("row %zu (%s %s): no handler, method or absolute pattern", i, r->method,
                     r->pattern);
        }
        if ((r->scope & ~known) != 0) {
            fail_msg("row %zu (%s %s): unknown scope bits %#x", i, r->method, r->pattern, r->scope);
        }
        /* a public row is answered without authentication: only reads, never audited */
        if (r->scope == ADMIN_ROUTE_PUBLIC && (strcmp(r->method, "GET") != 0 || r->mutates)) {
            fail_msg("row %zu (%s %s): public but not a read", i, r->method, r->pattern);
        }
        if (admin_route_find(r->method, (struct torii_slice){path, strlen(path)}) != r) {
            fail_msg("row %zu (%s %s): shadowed by an earlier row", i, r->method, r->pattern);
        }
        if (admin_route_handler((struct torii_slice){path, strlen(path)}) != r->fn) {
            fail_msg("row %zu (%s %s): another handler serves its path", i, r->method, r->pattern);
        }
    }
    /* a method no row names finds no row (admin scope), but the path keeps its handler */
    assert_null(admin_route_find("DELETE", (struct torii_slice){"/metrics", 8}));
    assert_ptr_equal(admin_route_handler((struct torii_slice){"/metrics", 8}), admin_lc_metrics);
    /* the fixed names come before the '*' rows that would also match them */
    assert_ptr_equal(admin_route_handler((struct torii_slice){"/api/certificates/_renew", 24}),
                     admin_lc_renew_all);
    assert_null(admin_route_handler((struct torii_slice){"/api/nope", 9}));
}

/* Every code of TORII_ERR_LIST with the one status the admin API answers for it. */
static const struct {
    int code;
    int status;
} expected_status[] = {
    {TORII_OK, 200},      {TORII_ENOMEM, 500},       {TORII_EINVAL, 400},    {TORII_ENOTFOUND, 404},
    {TORII_EEXIST, 409},  {TORII_ESTORE, 500},       {TORII_ETLS, 500},      {TORII_EPROTO, 500},
    {TORII_EIO, 503},     {TORII_ETIMEDOUT, 504},    {TORII_EAGAIN, 503},    {TORII_EPERM, 500},
    {TORII_ETOOBIG, 413}, {TORII_EUNSUPPORTED, 501}, {TORII_ECONFLICT, 409}, {TORII_ENOSPC, 507},
};

static void test_one_status_per_error_code(void **state)
{
    size_t n_codes = 0;

    (void)state;
#define COUNT_CODE(name, val, text) n_codes++;
    TORII_ERR_LIST(COUNT_CODE)
#undef COUNT_CODE
    assert_int_equal(sizeof(expected_status) / sizeof(expected_status[0]), n_codes);
    for (size_t i = 0; i < n_codes; i++) {
        int got = admin_status_of(expected_status[i].code);
        if (got != expected_status[i].status) {
            fail_msg("%s: status %d, documented %d", torii_strerror(expected_status[i].code), got,
                     expected_status[i].status);
        }
    }
    assert_int_equal(admin_status_of(-999), 500); /* an unknown code is a server error */
}

static void feed(struct torii_certstats *cs, const char *id, const char *json)
{
    struct torii_store_rec rec = {
        .id = id, .id_len = strlen(id), .json = json, .json_len = strlen(json)};

    torii_certstats_watch_cb(TORII_STORE_PUT, TORII_STORE_CERTS, &rec, cs);
}

static void test_metrics_scrape_parses_no_entity(void **state)
{
    struct torii_certstats *cs = torii_certstats_new();
    struct torii_admin_ctx ctx;
    struct torii_http_req req;
    uint64_t parsed;

    (void)state;
    memset(&ctx, 0, sizeof(ctx));
    memset(&req, 0, sizeof(req));
    ctx.certstats = cs;
    feed(cs, "a", "{\"domain\":\"a.test\",\"from\":0,\"to\":4102444800000,\"valid\":true}");
    feed(cs, "b", "{\"domain\":\"b.test\",\"from\":0,\"to\":1000,\"valid\":true}");
    parsed = torii_certstats_parses(cs);
    assert_int_equal(parsed, 2);
    req.method = "GET";
    req.path = (struct torii_slice){"/metrics", 8};
    req.target = req.path;
    req.query = (struct torii_slice){"", 0};
    for (int i = 0; i < 3; i++) {
        struct torii_admin_reply reply;

        memset(&reply, 0, sizeof(reply));
        assert_int_equal(admin_route_handler(req.path)(&ctx, &req, &reply), TORII_OK);
        assert_int_equal(reply.status, 200);
        assert_non_null(reply.raw);
        assert_non_null(strstr(reply.raw, "torii_certificates{state=\"all\"} 2\n"));
        assert_non_null(strstr(reply.raw, "torii_certificates{state=\"valid\"} 1\n"));
        assert_non_null(
            strstr(reply.raw, "torii_certificate_valid{id=\"a\",domain=\"a.test\"} 1\n"));
        admin_reply_clear(&reply);
    }
    assert_int_equal(torii_certstats_parses(cs), parsed);
    torii_certstats_free(cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_has_a_handler_and_a_scope),
        cmocka_unit_test(test_one_status_per_error_code),
        cmocka_unit_test(test_metrics_scrape_parses_no_entity),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
