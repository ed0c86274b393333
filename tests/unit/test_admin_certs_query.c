/* test_admin_certs_query.c - the search and expiry window of GET /api/certificates
 * (certs_query_window_*) and the web page's route (admin_ui_route over the compiled-in
 * files of ui/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admin_int.h"
#include "certs_query.h"
#include "testpki.h"
#include "torii/pki.h"
#include "ui_assets.h"

static json_t *entity(void)
{
    json_t *e = json_loads("{\"id\":\"cert-1\",\"name\":\"Shop front\",\"domain\":\"shop.test\","
                           "\"description\":\"\",\"subject\":\"CN=shop.test, O=Acme\","
                           "\"sans\":[\"shop.test\",\"WWW.Shop.Test\"],\"tags\":[\"Blue\"],"
                           "\"to\":1000}",
                           0, NULL);
    assert_non_null(e);
    return e;
}

static int window_matches(const char *search, const char *after, const char *before,
                          const json_t *e)
{
    struct certs_query_window w;
    struct torii_errbuf eb = {{0}};
    int m = 0;

    assert_int_equal(certs_query_window_parse(search, after, before, &w, &eb), TORII_OK);
    m = certs_query_window_match(&w, e);
    certs_query_window_clear(&w);
    return m;
}

static void test_search_any_field_case_insensitive(void **state)
{
    json_t *e = entity();

    (void)state;
    assert_true(window_matches(NULL, NULL, NULL, e));
    assert_true(window_matches("", NULL, NULL, e));
    assert_true(window_matches("CERT-1", NULL, NULL, e));   /* id */
    assert_true(window_matches("front", NULL, NULL, e));    /* name */
    assert_true(window_matches("acme", NULL, NULL, e));     /* subject */
    assert_true(window_matches("www.shop", NULL, NULL, e)); /* a SAN, other case */
    assert_true(window_matches("blue", NULL, NULL, e));     /* a tag */
    assert_false(window_matches("shopx", NULL, NULL, e));
    assert_false(window_matches("1000", NULL, NULL, e)); /* `to` is not searched */
    json_decref(e);
}

static void test_expiry_bounds(void **state)
{
    json_t *e = entity();
    json_t *no_to = json_pack("{s:s}", "id", "x");

    (void)state;
    assert_true(window_matches(NULL, "1000", NULL, e)); /* >= after */
    assert_false(window_matches(NULL, "1001", NULL, e));
    assert_true(window_matches(NULL, NULL, "1001", e)); /* < before */
    assert_false(window_matches(NULL, NULL, "1000", e));
    assert_true(window_matches(NULL, "-5", "2000", e));
    assert_false(window_matches("shop", "0", "10", e)); /* every part must hold */
    assert_false(window_matches(NULL, "0", NULL, no_to));
    assert_true(window_matches(NULL, NULL, NULL, no_to));
    json_decref(no_to);
    json_decref(e);
}

static void test_bad_bounds_named(void **state)
{
    struct certs_query_window w;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(certs_query_window_parse(NULL, "12x", NULL, &w, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "expiresAfter"));
    certs_query_window_clear(&w);
    assert_int_equal(certs_query_window_parse("a", NULL, "", &w, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "expiresBefore"));
    certs_query_window_clear(&w);
    assert_int_equal(certs_query_window_parse(NULL, "99999999999999999999", NULL, &w, &eb),
                     TORII_EINVAL);
    certs_query_window_clear(&w);
}

static int ui_get(const char *method, const char *path, const char *query,
                  struct torii_admin_reply *r)
{
    struct torii_http_req req;

    memset(&req, 0, sizeof(req));
    memset(r, 0, sizeof(*r));
    req.method = method;
    req.path = (struct torii_slice){path, strlen(path)};
    req.query = (struct torii_slice){query, strlen(query)};
    req.peer = "127.0.0.1:1";
    return admin_ui_route(&req, r);
}

static const char *reply_header(const struct torii_admin_reply *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcmp(r->hname[i], name) == 0) {
            return r->hvalue[i];
        }
    }
    return NULL;
}

static void test_ui_route(void **state)
{
    struct torii_admin_reply r;

    (void)state;
    assert_int_equal(admin_ui_n_assets, 3);
    assert_int_equal(ui_get("GET", "/ui/", "", &r), TORII_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/html; charset=utf-8");
    assert_non_null(strstr(r.raw, "<script src=\"/ui/app.js\" defer></script>"));
    assert_non_null(strstr(reply_header(&r, "Content-Security-Policy"), "script-src 'self'"));
    assert_string_equal(reply_header(&r, "X-Frame-Options"), "DENY");
    admin_reply_clear(&r);
    assert_int_equal(ui_get("HEAD", "/ui/app.js", "", &r), TORII_OK);
    assert_string_equal(r.content_type, "text/javascript; charset=utf-8");
    assert_int_equal(r.raw_len, strlen(r.raw));
    admin_reply_clear(&r);
    assert_int_equal(ui_get("GET", "/ui", "", &r), TORII_OK);
    assert_int_equal(r.status, 301);
    assert_string_equal(reply_header(&r, "Location"), "/ui/");
    admin_reply_clear(&r);
    assert_int_equal(ui_get("GET", "/ui/app.js.map", "", &r), TORII_OK);
    assert_int_equal(r.status, 404);
    admin_reply_clear(&r);
    assert_int_equal(ui_get("DELETE", "/ui/", "", &r), TORII_OK);
    assert_int_equal(r.status, 405);
    admin_reply_clear(&r);
    assert_int_equal(ui_get("GET", "/ui/", "x=1", &r), TORII_OK);
    assert_int_equal(r.status, 400);
    admin_reply_clear(&r);
    assert_int_equal(ui_get("GET", "/uix", "", &r), TORII_ENOTFOUND);
    assert_int_equal(ui_get("GET", "/api/certificates", "", &r), TORII_ENOTFOUND);
    admin_reply_clear(&r);
}

/* The key type text of a fresh self-signed certificate of key type/bits. */
static void check_key_type(int type, int bits, const char *want)
{
    struct testpki_opts o = {.key_type = type, .bits = bits, .cn = "kt.test"};
    X509 *c = NULL;
    EVP_PKEY *k = NULL;
    json_t *e = NULL;
    char buf[32];

    assert_int_equal(testpki_make(&o, &c, &k), 0);
    e = testpki_entity("kt", &c, 1, NULL, NULL);
    assert_non_null(e);
    assert_int_equal(torii_pki_cert_key_type(e, buf, sizeof(buf)), TORII_OK);
    assert_string_equal(buf, want);
    json_decref(e);
    X509_free(c);
    EVP_PKEY_free(k);
}

static void test_key_type(void **state)
{
    json_t *bad = json_loads("{\"chain\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n"
                             "-----END CERTIFICATE-----\"}",
                             0, NULL);
    char buf[32] = "x";

    (void)state;
    check_key_type(EVP_PKEY_EC, 256, "EC P-256");
    check_key_type(EVP_PKEY_EC, 384, "EC P-384");
    check_key_type(EVP_PKEY_RSA, 2048, "RSA 2048");
    check_key_type(EVP_PKEY_RSA, 3072, "RSA 3072");
    /* a truncated certificate, no chain at all, a buffer too small: errors, buf empty */
    assert_non_null(bad);
    assert_int_equal(torii_pki_cert_key_type(bad, buf, sizeof(buf)), TORII_EINVAL);
    assert_string_equal(buf, "");
    json_decref(bad);
    bad = json_object();
    assert_int_equal(torii_pki_cert_key_type(bad, buf, sizeof(buf)), TORII_EINVAL);
    json_decref(bad);
}

/* The computed sort keys: set for sorting, named only when asked, removed before showing. */
static void test_computed_sort_keys(void **state)
{
    struct certs_query_terms t = {NULL, 0};
    struct torii_errbuf eb = {{0}};
    json_t *e =
        json_loads("{\"ca\":true,\"selfSigned\":true,\"revoked\":false,\"to\":4000000000000,"
                   "\"chain\":\"\"}",
                   0, NULL);
    json_t *soon = json_loads("{\"client\":true,\"to\":2000}", 0, NULL);
    unsigned mask = 0;

    (void)state;
    assert_int_equal(certs_query_sorted_parse("name:true", &t, &eb), TORII_OK);
    assert_int_equal(certs_query_computed(&t), 0);
    certs_query_terms_clear(&t);
    assert_int_equal(certs_query_sorted_parse("badges:false,keyType,metadata.keyType", &t, &eb),
                     TORII_OK);
    mask = certs_query_computed(&t);
    assert_int_equal(mask, 3);
    assert_int_equal(certs_query_computed_add(e, mask, 1000), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "badges")), "ca,selfSigned");
    assert_string_equal(json_string_value(json_object_get(e, "keyType")), "");
    assert_int_equal(certs_query_computed_add(e, mask, 5000000000000), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(e, "badges")), "ca,selfSigned,expired");
    assert_int_equal(certs_query_computed_add(soon, mask, 1000), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(soon, "badges")), "client,almostExpired");
    /* sorted descending by badges: "client,..." before "ca,..." */
    assert_true(certs_query_sorted_cmp(&t, soon, e) < 0);
    certs_query_computed_del(e, mask);
    assert_null(json_object_get(e, "badges"));
    assert_null(json_object_get(e, "keyType"));
    certs_query_terms_clear(&t);
    json_decref(e);
    json_decref(soon);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_any_field_case_insensitive),
        cmocka_unit_test(test_expiry_bounds),
        cmocka_unit_test(test_bad_bounds_named),
        cmocka_unit_test(test_ui_route),
        cmocka_unit_test(test_key_type),
        cmocka_unit_test(test_computed_sort_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
