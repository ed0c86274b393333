/* test_admin_certs.c - /api/certificates driven through admin_certs_route with hand-built requests
 * against a real LMDB store in a temp dir and certificates from tests/support/testpki. Every
 * rejected request is checked to leave the store exactly as it was (count and content). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "admin_int.h"
#include "jsonpatch.h"
#include "testpki.h"
#include "teststore.h"
#include "torii/err.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

/* Keys and certificates shared by every test (generated once). */
struct certs_pki {
    X509 *ca;
    EVP_PKEY *ca_key;
    char *ca_pem;
    char *a_chain; /* a.example.test + www.a.example.test, signed by ca, chain = leaf + ca */
    char *a_key;
    char *a2_chain; /* a re-issue of a with the same key (renewal) */
    char *b_chain;  /* b.example.test */
    char *b_key;
    char *c_chain; /* c.example.test, expired */
    char *c_key;
    char *other_key; /* unrelated key (mismatch cases) */
};

static struct certs_pki pki;

struct fixture {
    struct teststore ts;
    struct torii_admin_ctx ctx;
};

static char *concat(const char *a, const char *b)
{
    size_t len = strlen(a) + strlen(b) + 1;
    char *s = torii_xmalloc(len);

    (void)snprintf(s, len, "%s%s", a, b);
    return s;
}

static char *make_leaf(const char *cn, const char *const *dns, size_t n_dns, int64_t not_after,
                       EVP_PKEY **key)
{
    struct testpki_opts o;
    X509 *c = NULL;
    char *leaf = NULL;
    char *chain = NULL;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = cn;
    o.dns = dns;
    o.n_dns = n_dns;
    o.not_before_off_s = not_after < 0 ? -7200 : -60;
    o.not_after_off_s = not_after;
    o.issuer = pki.ca;
    o.issuer_key = pki.ca_key;
    assert_int_equal(testpki_make(&o, &c, key), 0);
    leaf = testpki_cert_pem(c);
    chain = concat(leaf, pki.ca_pem);
    free(leaf);
    X509_free(c);
    return chain;
}

static int group_setup(void **state)
{
    static const char *const a_dns[] = {"a.example.test", "www.a.example.test"};
    static const char *const b_dns[] = {"b.example.test"};
    static const char *const c_dns[] = {"c.example.test"};
    struct testpki_opts o;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Torii Test CA";
    o.is_ca = 1;
    o.not_before_off_s = -3600;
    assert_int_equal(testpki_make(&o, &pki.ca, &pki.ca_key), 0);
    pki.ca_pem = testpki_cert_pem(pki.ca);

    pki.a_chain = make_leaf("a.example.test", a_dns, 2, 0, &k);
    pki.a_key = testpki_key_pem(k, NULL);
    pki.a2_chain = make_leaf("a.example.test", a_dns, 2, (int64_t)86400 * 30, &k); /* same key */
    EVP_PKEY_free(k);
    k = NULL;
    pki.b_chain = make_leaf("b.example.test", b_dns, 1, 0, &k);
    pki.b_key = testpki_key_pem(k, NULL);
    EVP_PKEY_free(k);
    k = NULL;
    pki.c_chain = make_leaf("c.example.test", c_dns, 1, -3600, &k);
    pki.c_key = testpki_key_pem(k, NULL);
    EVP_PKEY_free(k);
    k = NULL;
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "other";
    assert_int_equal(testpki_make(&o, &x, &k), 0);
    pki.other_key = testpki_key_pem(k, NULL);
    EVP_PKEY_free(k);
    X509_free(x);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    X509_free(pki.ca);
    EVP_PKEY_free(pki.ca_key);
    free(pki.ca_pem);
    free(pki.a_chain);
    free(pki.a_key);
    free(pki.a2_chain);
    free(pki.b_chain);
    free(pki.b_key);
    free(pki.c_chain);
    free(pki.c_key);
    free(pki.other_key);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = torii_xcalloc(1, sizeof(*f));
    struct torii_errbuf eb = {{0}};

    if (teststore_open(&f->ts, "certs-api", 8u << 20, &eb) != TORII_OK) {
        fail_msg("store open: %s", eb.msg);
    }
    f->ctx.store = f->ts.st;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    /* fails if the store left anything else behind */
    assert_int_equal(teststore_remove(&f->ts, NULL, 0), 0);
    free(f);
    return 0;
}

/* ---- request driver ---- */

struct resp {
    int rc;
    int status;
    json_t *json;
    char *raw;
    char hdr[ADMIN_REPLY_MAX_HEADERS][2][64];
    size_t n_hdr;
};

static struct resp call_h(struct fixture *f, const char *method, const char *target,
                          const char *ctype, const char *body, const char *hname, const char *hval)
{
    struct torii_http_req req;
    struct torii_http_header h[2];
    struct torii_admin_reply reply;
    struct resp r;
    const char *q = strchr(target, '?');
    size_t nh = 0;

    memset(&req, 0, sizeof(req));
    memset(&reply, 0, sizeof(reply));
    memset(&r, 0, sizeof(r));
    req.method = method;
    req.target = (struct torii_slice){target, strlen(target)};
    req.path = (struct torii_slice){target, q != NULL ? (size_t)(q - target) : strlen(target)};
    req.query =
        q != NULL ? (struct torii_slice){q + 1, strlen(q + 1)} : (struct torii_slice){"", 0};
    req.version_minor = 1;
    if (ctype != NULL) {
        h[nh++] = (struct torii_http_header){{"Content-Type", 12}, {ctype, strlen(ctype)}};
    }
    if (hname != NULL) {
        h[nh++] = (struct torii_http_header){{hname, strlen(hname)}, {hval, strlen(hval)}};
    }
    req.headers = h;
    req.n_headers = nh;
    req.body = (const unsigned char *)body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.peer = "127.0.0.1:1";

    r.rc = admin_certs_route(&f->ctx, &req, &reply);
    r.status = reply.status;
    r.json = json_incref(reply.json);
    if (reply.raw != NULL) {
        r.raw = torii_xstrndup(reply.raw, reply.raw_len);
    }
    for (size_t i = 0; i < reply.n_headers && i < ADMIN_REPLY_MAX_HEADERS; i++) {
        (void)snprintf(r.hdr[i][0], sizeof(r.hdr[i][0]), "%s", reply.hname[i]);
        (void)snprintf(r.hdr[i][1], sizeof(r.hdr[i][1]), "%s", reply.hvalue[i]);
        r.n_hdr++;
    }
    admin_reply_clear(&reply);
    return r;
}

static struct resp call(struct fixture *f, const char *method, const char *target,
                        const char *ctype, const char *body)
{
    return call_h(f, method, target, ctype, body, NULL, NULL);
}

static void resp_clear(struct resp *r)
{
    json_decref(r->json);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

static const char *resp_header(const struct resp *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdr; i++) {
        if (strcasecmp(r->hdr[i][0], name) == 0) {
            return r->hdr[i][1];
        }
    }
    return NULL;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void expect_error(const struct resp *r, int status, const char *substr)
{
    if (r->status != status) {
        char *s = r->json != NULL ? json_dumps(r->json, JSON_COMPACT) : NULL;
        fail_msg("status %d, want %d (%s)", r->status, status, s != NULL ? s : "-");
    }
    assert_int_equal(r->rc, TORII_OK);
    assert_true(json_is_string(json_object_get(r->json, "error")));
    if (substr != NULL && strstr(jstr(r->json, "error"), substr) == NULL) {
        fail_msg("error \"%s\" lacks \"%s\"", jstr(r->json, "error"), substr);
    }
}

/* ---- store snapshots ---- */

static int snap_cb(const struct torii_store_rec *rec, void *arg)
{
    struct resp *buf = arg; /* raw used as an accumulating string */
    size_t old = buf->raw != NULL ? strlen(buf->raw) : 0;

    buf->raw = torii_xrealloc(buf->raw, old + rec->id_len + rec->json_len + rec->aux_len * 2 + 3);
    memcpy(buf->raw + old, rec->id, rec->id_len);
    buf->raw[old + rec->id_len] = '=';
    memcpy(buf->raw + old + rec->id_len + 1, rec->json, rec->json_len);
    old += rec->id_len + 1 + rec->json_len;
    for (size_t i = 0; i < rec->aux_len; i++) {
        (void)snprintf(buf->raw + old + i * 2, 3, "%02x", rec->aux[i]);
    }
    old += rec->aux_len * 2;
    buf->raw[old] = '\n';
    buf->raw[old + 1] = '\0';
    return TORII_OK;
}

static char *snapshot(struct fixture *f)
{
    struct resp acc;

    memset(&acc, 0, sizeof(acc));
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, snap_cb, &acc), TORII_OK);
    return acc.raw != NULL ? acc.raw : torii_xstrdup("");
}

static size_t count(struct fixture *f)
{
    size_t n = 0;
    assert_int_equal(torii_store_count(f->ts.st, TORII_STORE_CERTS, &n), TORII_OK);
    return n;
}

/* ---- entity bodies ---- */

static char *entity(const char *id, const char *chain, const char *key, const char *extra)
{
    json_t *e = json_object();
    char *s = NULL;

    if (id != NULL) {
        (void)json_object_set_new(e, "id", json_string(id));
    }
    if (chain != NULL) {
        (void)json_object_set_new(e, "chain", json_string(chain));
    }
    if (key != NULL) {
        (void)json_object_set_new(e, "privateKey", json_string(key));
    }
    if (extra != NULL) {
        json_error_t jerr;
        json_t *x = json_loads(extra, 0, &jerr);
        assert_non_null(x);
        assert_int_equal(json_object_update(e, x), 0);
        json_decref(x);
    }
    s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    return s;
}

static void create_ok(struct fixture *f, const char *id, const char *chain, const char *key,
                      const char *extra)
{
    char *body = entity(id, chain, key, extra);
    struct resp r = call(f, "POST", "/api/certificates", "application/json", body);

    if (r.status != 201) {
        fail_msg("create %s: %d %s", id, r.status, jstr(r.json, "error"));
    }
    resp_clear(&r);
    free(body);
}

#define JSON_CT "application/json"

/* ---- tests ---- */

static void test_certs_create_generates_id_and_returns_stored_entity(void **state)
{
    struct fixture *f = *state;
    char *body = entity(NULL, pki.a_chain, pki.a_key, "{\"name\":\"my cert\",\"exposed\":true}");
    struct resp r = call(f, "POST", "/api/certificates", JSON_CT, body);
    struct resp g;
    char path[512];
    const char *id;

    assert_int_equal(r.rc, TORII_OK);
    assert_int_equal(r.status, 201);
    id = jstr(r.json, "id");
    assert_non_null(id);
    assert_int_equal(strncmp(id, "certificate_", 12), 0);
    assert_int_equal(strlen(id), 12 + 36);
    /* derived fields come from the chain, not from the request */
    assert_string_equal(jstr(r.json, "domain"), "a.example.test");
    assert_string_equal(jstr(r.json, "name"), "my cert");
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    assert_true(json_is_true(json_object_get(r.json, "exposed")));
    assert_false(json_is_true(json_object_get(r.json, "ca")));
    assert_int_equal(json_array_size(json_object_get(r.json, "sans")), 2);
    assert_true(json_integer_value(json_object_get(r.json, "to")) > 0);
    assert_non_null(strstr(jstr(r.json, "privateKey"), "PRIVATE KEY"));
    assert_int_equal(count(f), 1);

    /* GET returns exactly what POST answered */
    (void)snprintf(path, sizeof(path), "/api/certificates/%s", id);
    g = call(f, "GET", path, NULL, NULL);
    assert_int_equal(g.status, 200);
    assert_true(admin_json_equal(g.json, r.json));
    resp_clear(&g);

    /* fields projection on a single entity */
    (void)snprintf(path, sizeof(path), "/api/certificates/%s?fields=id,domain,nope", id);
    g = call(f, "GET", path, NULL, NULL);
    assert_int_equal(g.status, 200);
    assert_int_equal(json_object_size(g.json), 2);
    assert_string_equal(jstr(g.json, "domain"), "a.example.test");
    resp_clear(&g);
    resp_clear(&r);
    free(body);
}

static void test_certs_create_existing_id_conflicts(void **state)
{
    struct fixture *f = *state;
    char *body = entity("dup", pki.b_chain, pki.b_key, NULL);
    char *before = NULL;
    char *after = NULL;
    struct resp r;

    create_ok(f, "dup", pki.a_chain, pki.a_key, NULL);
    before = snapshot(f);
    r = call(f, "POST", "/api/certificates", JSON_CT, body);
    expect_error(&r, 409, "entity already exists");
    after = snapshot(f);
    assert_string_equal(before, after);
    resp_clear(&r);
    free(after);
    free(before);
    free(body);
}

static void test_certs_create_bad_inputs_rejected_store_unchanged(void **state)
{
    struct fixture *f = *state;
    char *garbage = entity("g1",
                           "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                           "-----END CERTIFICATE-----\n",
                           NULL, NULL);
    char *mismatch = entity("g2", pki.a_chain, pki.other_key, NULL);
    char *empty_chain = entity("g3", "", pki.a_key, NULL);
    char *no_chain = entity("g4", NULL, pki.a_key, NULL);
    char *wrong_type = entity("g5", pki.a_chain, pki.a_key, "{\"exposed\":\"yes\"}");
    char *wrong_tags = entity("g6", pki.a_chain, pki.a_key, "{\"tags\":[1,2]}");
    char *unknown = entity("g7", pki.a_chain, pki.a_key, "{\"colour\":\"blue\"}");
    char *bad_key = entity("g8", pki.a_chain,
                           "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                           "-----END PRIVATE KEY-----\n",
                           NULL);
    char *bad_id = entity("a/b", pki.a_chain, pki.a_key, NULL);
    char *num_id = entity(NULL, pki.a_chain, pki.a_key, "{\"id\":42}");
    char *garbage_noenrich = entity("g9", "garbage", NULL, NULL);
    const struct {
        const char *ctype;
        const char *body;
        const char *target;
        int status;
        const char *msg;
    } cases[] = {
        {JSON_CT, garbage, "/api/certificates", 400, NULL},
        {JSON_CT, mismatch, "/api/certificates", 400, "does not match"},
        {JSON_CT, empty_chain, "/api/certificates", 400, "chain"},
        {JSON_CT, no_chain, "/api/certificates", 400, "chain"},
        {JSON_CT, wrong_type, "/api/certificates", 400, "exposed"},
        {JSON_CT, wrong_tags, "/api/certificates", 400, "tags"},
        {JSON_CT, unknown, "/api/certificates", 400, "unknown field 'colour'"},
        {JSON_CT, bad_key, "/api/certificates", 400, NULL},
        {JSON_CT, bad_id, "/api/certificates", 400, "id"},
        {JSON_CT, num_id, "/api/certificates", 400, "id"},
        {JSON_CT, garbage_noenrich, "/api/certificates?enrich=false", 400, NULL},
        {JSON_CT, "{\"id\":\"x\",", "/api/certificates", 400, "invalid JSON"},
        {JSON_CT, "", "/api/certificates", 400, "invalid JSON"},
        {JSON_CT, "[1,2]", "/api/certificates", 400, "object"},
        {JSON_CT, "{\"id\":\"x\",\"id\":\"y\"}", "/api/certificates", 400, "invalid JSON"},
        {"text/plain", garbage, "/api/certificates", 415, "content type"},
        {NULL, mismatch, "/api/certificates", 415, "content type"},
        {"application/jsonx", mismatch, "/api/certificates", 415, "content type"},
    };
    char *before = NULL;

    create_ok(f, "keep", pki.b_chain, pki.b_key, NULL);
    before = snapshot(f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct resp r = call(f, "POST", cases[i].target, cases[i].ctype, cases[i].body);
        char *after = NULL;

        if (r.status != cases[i].status) {
            fail_msg("case %zu: status %d, want %d (%s)", i, r.status, cases[i].status,
                     jstr(r.json, "error"));
        }
        expect_error(&r, cases[i].status, cases[i].msg);
        after = snapshot(f);
        assert_string_equal(before, after);
        assert_int_equal(count(f), 1);
        free(after);
        resp_clear(&r);
    }
    free(before);
    free(garbage);
    free(mismatch);
    free(empty_chain);
    free(no_chain);
    free(wrong_type);
    free(wrong_tags);
    free(unknown);
    free(bad_key);
    free(bad_id);
    free(num_id);
    free(garbage_noenrich);
}

static void test_certs_create_charset_param_and_no_enrich(void **state)
{
    struct fixture *f = *state;
    char *body =
        entity("raw", pki.b_chain, pki.b_key, "{\"subject\":\"as sent\",\"domain\":\"d\"}");
    struct resp r =
        call(f, "POST", "/api/certificates?enrich=false", "application/json; charset=utf-8", body);

    assert_int_equal(r.status, 201);
    /* enrich=false keeps derived fields as sent (but the chain still had to parse) */
    assert_string_equal(jstr(r.json, "subject"), "as sent");
    assert_string_equal(jstr(r.json, "domain"), "d");
    resp_clear(&r);
    free(body);
}

static void test_certs_list_paging_filter_fields(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    create_ok(f, "id1", pki.a_chain, pki.a_key, "{\"exposed\":true,\"tags\":[\"t1\",\"t2\"]}");
    create_ok(f, "id2", pki.b_chain, pki.b_key, "{\"tags\":[\"t2\"]}");
    create_ok(f, "id3", pki.c_chain, pki.c_key, "{\"metadata\":{\"k\":\"v\"}}");

    r = call(f, "GET", "/api/certificates", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 3);
    assert_string_equal(resp_header(&r, "X-Count"), "3");
    assert_string_equal(resp_header(&r, "X-Page"), "1");
    assert_string_equal(resp_header(&r, "X-Offset"), "0");
    assert_non_null(resp_header(&r, "X-Page-Size"));
    resp_clear(&r);

    r = call(f, "GET", "/api/certificates?page=2&pageSize=2", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "id3");
    assert_string_equal(resp_header(&r, "X-Count"), "3");
    assert_string_equal(resp_header(&r, "X-Offset"), "2");
    assert_string_equal(resp_header(&r, "X-Page"), "2");
    assert_string_equal(resp_header(&r, "X-Page-Size"), "2");
    resp_clear(&r);

    r = call(f, "GET", "/api/certificates?page=9&pageSize=2", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 0);
    resp_clear(&r);

    /* string, boolean and array filters; X-Count stays the unfiltered total */
    r = call(f, "GET", "/api/certificates?filter.domain=b.example.test", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "id2");
    assert_string_equal(resp_header(&r, "X-Count"), "3");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.exposed=true", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "id1");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.tags=t2", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 2);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.sans=www.a.example.test&filter.tags=t1", NULL,
             NULL);
    assert_int_equal(json_array_size(r.json), 1);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.valid=false", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1); /* the expired one */
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "id3");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.nosuchfield=x", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 0);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filter.domain=a%2Eexample.test", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    resp_clear(&r);

    r = call(f, "GET", "/api/certificates?fields=id,tags&pageSize=1", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    assert_int_equal(json_object_size(json_array_get(r.json, 0)), 2);
    assert_non_null(json_object_get(json_array_get(r.json, 0), "tags"));
    resp_clear(&r);

    {
        static const char *const bad[] = {
            "/api/certificates?page=0",           "/api/certificates?page=-1",
            "/api/certificates?page=abc",         "/api/certificates?pageSize=0",
            "/api/certificates?pageSize=1.5",     "/api/certificates?pageSize=",
            "/api/certificates?page=99999999999",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            r = call(f, "GET", bad[i], NULL, NULL);
            expect_error(&r, 400, "page");
            resp_clear(&r);
        }
    }
    r = call(f, "GET", "/api/certificates?filter.x=%zz", NULL, NULL);
    expect_error(&r, 400, "percent");
    resp_clear(&r);
}

static void test_certs_put_replaces_and_forces_id(void **state)
{
    struct fixture *f = *state;
    char *body = entity("ignored", pki.b_chain, pki.b_key, "{\"name\":\"renamed\"}");
    struct resp r;

    create_ok(f, "p1", pki.b_chain, pki.b_key, NULL);
    r = call(f, "PUT", "/api/certificates/p1", JSON_CT, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "id"), "p1");
    assert_string_equal(jstr(r.json, "name"), "renamed");
    assert_int_equal(count(f), 1);
    resp_clear(&r);

    r = call(f, "PUT", "/api/certificates/missing", JSON_CT, body);
    expect_error(&r, 404, "entity not found");
    assert_int_equal(count(f), 1);
    resp_clear(&r);

    r = call(f, "PUT", "/api/certificates/p1", "text/plain", body);
    expect_error(&r, 415, NULL);
    resp_clear(&r);
    free(body);

    /* invalid replacement: store unchanged */
    {
        char *before = snapshot(f);
        char *after = NULL;
        char *bad = entity(NULL, pki.b_chain, pki.a_key, NULL);
        r = call(f, "PUT", "/api/certificates/p1", JSON_CT, bad);
        expect_error(&r, 400, "does not match");
        after = snapshot(f);
        assert_string_equal(before, after);
        resp_clear(&r);
        free(bad);
        free(after);
        free(before);
    }
}

static void test_certs_get_then_put_keeps_private_key(void **state)
{
    struct fixture *f = *state;
    struct resp g;
    struct resp r;
    char *body = NULL;
    char *before = NULL;
    char *after = NULL;
    json_t *e = NULL;

    create_ok(f, "k1", pki.a_chain, pki.a_key, NULL);
    g = call(f, "GET", "/api/certificates/k1", NULL, NULL);
    assert_int_equal(g.status, 200);

    /* the client drops the key (e.g. a UI that does not echo secrets) and edits a field */
    e = json_deep_copy(g.json);
    (void)json_object_set_new(e, "privateKey", json_string(""));
    (void)json_object_set_new(e, "description", json_string("edited"));
    body = json_dumps(e, JSON_COMPACT);
    r = call(f, "PUT", "/api/certificates/k1", JSON_CT, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "privateKey"), jstr(g.json, "privateKey"));
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    assert_string_equal(jstr(r.json, "description"), "edited");
    resp_clear(&r);
    free(body);

    /* missing privateKey, renewed chain with the same key: still kept */
    (void)json_object_del(e, "privateKey");
    (void)json_object_set_new(e, "chain", json_string(pki.a2_chain));
    body = json_dumps(e, JSON_COMPACT);
    r = call(f, "PUT", "/api/certificates/k1", JSON_CT, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "privateKey"), jstr(g.json, "privateKey"));
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    resp_clear(&r);
    free(body);

    /* a different certificate (other key) without a key: the old key is not grafted on, and
     * it is not silently dropped either: 400 naming privateKey, nothing written */
    (void)json_object_set_new(e, "chain", json_string(pki.b_chain));
    body = json_dumps(e, JSON_COMPACT);
    before = snapshot(f);
    r = call(f, "PUT", "/api/certificates/k1", JSON_CT, body);
    expect_error(&r, 400, "privateKey: the new chain's leaf has another public key");
    after = snapshot(f);
    assert_string_equal(before, after);
    resp_clear(&r);
    free(body);
    free(before);
    free(after);

    /* a body copied from a redacted response is refused on create (no key to keep) */
    (void)json_object_set_new(e, "id", json_string("k1-copy"));
    (void)json_object_set_new(e, "chain", json_string(pki.a_chain));
    (void)json_object_set_new(e, "privateKey", json_string(""));
    (void)json_object_set_new(e, "privateKeyRedacted", json_true());
    body = json_dumps(e, JSON_COMPACT);
    r = call(f, "POST", "/api/certificates", JSON_CT, body);
    expect_error(&r, 400, "redacted");
    resp_clear(&r);
    free(body);
    json_decref(e);
    resp_clear(&g);
}

static void test_certs_patch_json_patch_and_merge_patch(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    char *before = NULL;
    char *after = NULL;

    create_ok(f, "m1", pki.a_chain, pki.a_key, "{\"metadata\":{\"x\":\"1\"}}");

    r = call(f, "PATCH", "/api/certificates/m1", "application/json-patch+json",
             "[{\"op\":\"replace\",\"path\":\"/name\",\"value\":\"patched\"},"
             "{\"op\":\"add\",\"path\":\"/tags/-\",\"value\":\"new\"}]");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "name"), "patched");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "tags"), 0)),
                        "new");
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    resp_clear(&r);

    r = call(f, "PATCH", "/api/certificates/m1", JSON_CT,
             "[{\"op\":\"replace\",\"path\":\"/revoked\",\"value\":true}]");
    assert_int_equal(r.status, 200);
    assert_false(json_is_true(json_object_get(r.json, "valid"))); /* recomputed */
    resp_clear(&r);

    r = call(f, "PATCH", "/api/certificates/m1", "application/merge-patch+json",
             "{\"revoked\":false,\"metadata\":{\"x\":null,\"y\":\"2\"}}");
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(json_object_get(r.json, "metadata"), "x"));
    assert_string_equal(jstr(json_object_get(r.json, "metadata"), "y"), "2");
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    resp_clear(&r);

    /* failures leave the store untouched */
    before = snapshot(f);
    {
        const struct {
            const char *ctype;
            const char *body;
            int status;
            const char *msg;
        } bad[] = {
            {JSON_CT, "[{\"op\":\"replace\",\"path\":\"/id\",\"value\":\"other\"}]", 400,
             "id cannot be changed"},
            {JSON_CT, "[{\"op\":\"remove\",\"path\":\"/id\"}]", 400, "id cannot be changed"},
            {"application/merge-patch+json", "{\"id\":\"zz\"}", 400, "id cannot be changed"},
            {JSON_CT, "[{\"op\":\"remove\",\"path\":\"/nope\"}]", 400, "patch operation 0"},
            {JSON_CT, "[{\"op\":\"test\",\"path\":\"/name\",\"value\":\"x\"}]", 400, "test failed"},
            {JSON_CT, "{\"op\":\"add\"}", 400, "array"},
            {JSON_CT, "[{\"op\":\"replace\",\"path\":\"/chain\",\"value\":\"garbage\"}]", 400,
             NULL},
            {JSON_CT, "[{\"op\":\"replace\",\"path\":\"/exposed\",\"value\":\"yes\"}]", 400,
             "exposed"},
            {JSON_CT, "[{\"op\":\"add\",\"path\":\"/colour\",\"value\":\"red\"}]", 400,
             "unknown field"},
            {JSON_CT, "[{\"op\":\"replace\",\"path\":\"\",\"value\":[]}]", 400, "object"},
            {"application/merge-patch+json", "\"str\"", 400, "object"},
            {JSON_CT, "not json", 400, "invalid JSON"},
            {"text/plain", "[]", 415, "content type"},
            {NULL, "[]", 415, "content type"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            r = call(f, "PATCH", "/api/certificates/m1", bad[i].ctype, bad[i].body);
            if (r.status != bad[i].status) {
                fail_msg("case %zu: %d %s", i, r.status, jstr(r.json, "error"));
            }
            expect_error(&r, bad[i].status, bad[i].msg);
            after = snapshot(f);
            assert_string_equal(before, after);
            free(after);
            resp_clear(&r);
        }
    }
    free(before);
    r = call(f, "PATCH", "/api/certificates/none", JSON_CT, "[]");
    expect_error(&r, 404, "entity not found");
    resp_clear(&r);
}

static void test_certs_delete_then_404(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    create_ok(f, "d1", pki.a_chain, pki.a_key, NULL);
    r = call(f, "DELETE", "/api/certificates/d1", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "deleted")));
    assert_int_equal(count(f), 0);
    resp_clear(&r);
    r = call(f, "DELETE", "/api/certificates/d1", NULL, NULL);
    expect_error(&r, 404, "entity not found");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/d1", NULL, NULL);
    expect_error(&r, 404, "entity not found");
    resp_clear(&r);
}

static void test_certs_valid_recomputed(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    create_ok(f, "v1", pki.a_chain, pki.a_key, NULL);
    create_ok(f, "v2", pki.c_chain, pki.c_key, NULL);
    create_ok(f, "v3", pki.b_chain, NULL, NULL);
    r = call(f, "GET", "/api/certificates/v1/valid", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "valid")));
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/v2/valid", NULL, NULL); /* expired */
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(json_object_get(r.json, "valid")));
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/v3/valid", NULL, NULL); /* no key */
    assert_true(json_is_false(json_object_get(r.json, "valid")));
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/nope/valid", NULL, NULL);
    expect_error(&r, 404, "entity not found");
    resp_clear(&r);
    r = call(f, "POST", "/api/certificates/v1/valid", NULL, NULL);
    expect_error(&r, 405, NULL);
    assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD");
    resp_clear(&r);
}

static void test_certs_template_copies_query(void **state)
{
    struct fixture *f = *state;
    struct resp r = call(
        f, "GET", "/api/certificates/_template?name=hello+world&rawPassword=s3cr3t", NULL, NULL);

    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(jstr(r.json, "id"), "cert_", 5), 0);
    assert_string_equal(jstr(r.json, "name"), "hello world");
    assert_null(json_object_get(r.json, "rawPassword"));
    assert_string_equal(jstr(r.json, "chain"), "");
    assert_int_equal(count(f), 0);
    resp_clear(&r);
}

static json_t *ndjson_line(const char *raw, size_t n)
{
    const char *p = raw;
    json_error_t jerr;

    for (size_t i = 0; i < n; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    return json_loadb(p, (size_t)(strchr(p, '\n') - p), 0, &jerr);
}

static size_t ndjson_count(const char *raw)
{
    size_t n = 0;
    for (const char *p = raw; *p != '\0'; p++) {
        n += *p == '\n';
    }
    return n;
}

static void test_certs_bulk_all_methods(void **state)
{
    struct fixture *f = *state;
    char *l1 = entity("b1", pki.a_chain, pki.a_key, NULL);
    char *l2 = entity("b2", pki.b_chain, pki.b_key, NULL);
    char *bad = entity("b3", "garbage", NULL, NULL);
    size_t len = strlen(l1) * 2 + strlen(l2) + strlen(bad) + 64;
    char *body = torii_xmalloc(len);
    struct resp r;
    json_t *line = NULL;

    (void)snprintf(body, len, "%s\n%s\r\n\n{not json\n%s\n%s\n", l1, l2, bad, l1);
    r = call(f, "POST", "/api/certificates/_bulk", "application/x-ndjson", body);
    assert_int_equal(r.status, 200);
    assert_non_null(r.raw);
    assert_int_equal(ndjson_count(r.raw), 5);
    line = ndjson_line(r.raw, 0);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 201);
    assert_true(json_is_true(json_object_get(line, "created")));
    assert_string_equal(jstr(line, "id"), "b1");
    json_decref(line);
    line = ndjson_line(r.raw, 2);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 400);
    assert_string_equal(jstr(line, "error"), "bad_entity");
    json_decref(line);
    line = ndjson_line(r.raw, 3);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 400);
    assert_string_equal(jstr(line, "id"), "b3");
    json_decref(line);
    line = ndjson_line(r.raw, 4);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 409);
    json_decref(line);
    assert_int_equal(count(f), 2);
    resp_clear(&r);
    free(body);

    /* PUT: update b2 (key kept), unknown id -> 404 */
    {
        char *u = entity("b2", pki.b_chain, NULL, "{\"name\":\"bulk-updated\"}");
        char *m = entity("zz", pki.b_chain, pki.b_key, NULL);
        len = strlen(u) + strlen(m) + 4;
        body = torii_xmalloc(len);
        (void)snprintf(body, len, "%s\n%s\n", u, m);
        r = call(f, "PUT", "/api/certificates/_bulk", "application/x-ndjson", body);
        assert_int_equal(r.status, 200);
        line = ndjson_line(r.raw, 0);
        assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
        assert_true(json_is_true(json_object_get(line, "updated")));
        json_decref(line);
        line = ndjson_line(r.raw, 1);
        assert_int_equal(json_integer_value(json_object_get(line, "status")), 404);
        assert_string_equal(jstr(line, "error"), "not_found");
        json_decref(line);
        resp_clear(&r);
        free(body);
        free(u);
        free(m);
        r = call(f, "GET", "/api/certificates/b2", NULL, NULL);
        assert_string_equal(jstr(r.json, "name"), "bulk-updated");
        assert_true(json_is_true(json_object_get(r.json, "valid")));
        resp_clear(&r);
    }

    /* PATCH */
    r = call(
        f, "PATCH", "/api/certificates/_bulk", "application/x-ndjson",
        "{\"id\":\"b1\",\"patch\":[{\"op\":\"replace\",\"path\":\"/name\",\"value\":\"pb\"}]}\n"
        "{\"id\":\"b1\",\"patch\":[{\"op\":\"remove\",\"path\":\"/nope\"}]}\n"
        "{\"id\":\"b1\"}\n");
    assert_int_equal(r.status, 200);
    assert_int_equal(ndjson_count(r.raw), 3);
    line = ndjson_line(r.raw, 0);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    json_decref(line);
    line = ndjson_line(r.raw, 1);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 400);
    json_decref(line);
    line = ndjson_line(r.raw, 2);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 400);
    json_decref(line);
    resp_clear(&r);

    /* DELETE (X-Content-Type accepted for DELETE) */
    r = call_h(f, "DELETE", "/api/certificates/_bulk", NULL,
               "{\"id\":\"b1\"}\n{\"id\":\"b1\"}\n{\"id\":\"b2\"}", "X-Content-Type",
               "application/x-ndjson");
    assert_int_equal(r.status, 200);
    assert_int_equal(ndjson_count(r.raw), 3);
    line = ndjson_line(r.raw, 1);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 404);
    json_decref(line);
    line = ndjson_line(r.raw, 2);
    assert_true(json_is_true(json_object_get(line, "deleted")));
    json_decref(line);
    assert_int_equal(count(f), 0);
    resp_clear(&r);

    /* wrong content type */
    r = call(f, "POST", "/api/certificates/_bulk", JSON_CT, l1);
    expect_error(&r, 400, "bad_content_type");
    assert_int_equal(count(f), 0);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/_bulk", NULL, NULL);
    expect_error(&r, 405, NULL);
    assert_string_equal(resp_header(&r, "Allow"), "POST, PUT, PATCH, DELETE");
    resp_clear(&r);
    free(l1);
    free(l2);
    free(bad);
}

static void test_certs_routing_and_methods(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    r = call(f, "DELETE", "/api/certificates", NULL, NULL);
    expect_error(&r, 405, NULL);
    assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD, POST");
    resp_clear(&r);
    r = call(f, "POST", "/api/certificates/x", JSON_CT, "{}");
    expect_error(&r, 405, NULL);
    assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD, PUT, PATCH, DELETE");
    resp_clear(&r);
    r = call(f, "POST", "/api/certificates/_template", NULL, NULL);
    expect_error(&r, 405, NULL);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/x/other", NULL, NULL);
    expect_error(&r, 404, NULL);
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/%2F", NULL, NULL);
    expect_error(&r, 400, "id: must be");
    resp_clear(&r);

    r = call(f, "GET", "/api/certificatesX", NULL, NULL);
    assert_int_equal(r.rc, TORII_ENOTFOUND);
    resp_clear(&r);
    r = call(f, "GET", "/api/pki/certs", NULL, NULL);
    assert_int_equal(r.rc, TORII_ENOTFOUND);
    resp_clear(&r);
    r = call(f, "POST", "/api/certificates/_renew", NULL, NULL);
    assert_int_equal(r.rc, TORII_ENOTFOUND);
    resp_clear(&r);
    r = call(f, "POST", "/api/certificates/abc/_renew", NULL, NULL);
    assert_int_equal(r.rc, TORII_ENOTFOUND);
    resp_clear(&r);

    /* percent-encoded ids */
    create_ok(f, "with space", pki.b_chain, pki.b_key, NULL);
    r = call(f, "GET", "/api/certificates/with%20space", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "id"), "with space");
    resp_clear(&r);
    r = call(f, "HEAD", "/api/certificates/with%20space", NULL, NULL);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
}

/* ---- issue items 5, 9, 10c, 10d ---- */

/* Send every request of a NULL-terminated list and expect a 400 naming `what`, store unchanged. */
static void expect_400s(struct fixture *f, const char *const (*reqs)[3], const char *const *what)
{
    char *before = snapshot(f);

    for (size_t i = 0; reqs[i][0] != NULL; i++) {
        struct resp r = call(f, reqs[i][0], reqs[i][1], JSON_CT, reqs[i][2]);
        char *after = snapshot(f);

        if (r.status != 400 || strstr(jstr(r.json, "error"), what[i]) == NULL) {
            fail_msg("%s %s: %d %s (want 400 naming %s)", reqs[i][0], reqs[i][1], r.status,
                     jstr(r.json, "error"), what[i]);
        }
        assert_string_equal(before, after);
        free(after);
        resp_clear(&r);
    }
    free(before);
}

/* 10c: an id that is not valid UTF-8 (percent-decoded) is a 400 on every route, never a 500. */
static void test_certs_non_utf8_id_is_400(void **state)
{
    struct fixture *f = *state;
    char *body = entity(NULL, pki.a_chain, pki.a_key, NULL);
    static const char *const reqs[][3] = {
        {"PUT", "/api/certificates/%FF%FE", "{}"},
        {"PUT", "/api/certificates/a%C3", "{}"},
        {"GET", "/api/certificates/%FF", NULL},
        {"DELETE", "/api/certificates/%FF", NULL},
        {"PATCH", "/api/certificates/%FF", "[]"},
        {"GET", "/api/certificates/%FF/valid", NULL},
        {NULL, NULL, NULL},
    };
    static const char *const what[] = {"UTF-8", "UTF-8", "UTF-8", "UTF-8", "UTF-8", "UTF-8"};
    struct resp r = call(f, "PUT", "/api/certificates/%FF%FE", JSON_CT, body);

    (void)state;
    expect_error(&r, 400, "UTF-8");
    resp_clear(&r);
    expect_400s(f, reqs, what);
    /* a valid UTF-8 id still works, percent-encoded */
    create_ok(f, "caf\xc3\xa9", pki.a_chain, pki.a_key, NULL);
    r = call(f, "PUT", "/api/certificates/caf%C3%A9", JSON_CT, body);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    free(body);
}

/* 10d: a patch of a derived field is a 400 naming it (nothing silently dropped); setting one to
 * its current value passes; enrich=false keeps them as sent but never loses certType. */
static void test_certs_patch_derived_fields_rejected(void **state)
{
    struct fixture *f = *state;
    static const char *const reqs[][3] = {
        {"PATCH", "/api/certificates/dv",
         "[{\"op\":\"replace\",\"path\":\"/valid\",\"value\":false}]"},
        {"PATCH", "/api/certificates/dv",
         "[{\"op\":\"replace\",\"path\":\"/subject\",\"value\":\"CN=x\"}]"},
        {"PATCH", "/api/certificates/dv", "[{\"op\":\"replace\",\"path\":\"/from\",\"value\":1}]"},
        {"PATCH", "/api/certificates/dv", "[{\"op\":\"replace\",\"path\":\"/ca\",\"value\":true}]"},
        {"PATCH", "/api/certificates/dv",
         "[{\"op\":\"replace\",\"path\":\"/certType\",\"value\":\"ca\"}]"},
        {"PATCH", "/api/certificates/dv", "[{\"op\":\"remove\",\"path\":\"/certType\"}]"},
        {"PATCH", "/api/certificates/dv?enrich=false",
         "[{\"op\":\"replace\",\"path\":\"/certType\",\"value\":\"ca\"}]"},
        {NULL, NULL, NULL},
    };
    static const char *const what[] = {
        "'valid' is derived",    "'subject' is derived",  "'from' is derived",    "'ca' is derived",
        "'certType' is derived", "'certType' is derived", "'certType' is derived"};
    struct resp r;

    (void)state;
    create_ok(f, "dv", pki.a_chain, pki.a_key, NULL);
    expect_400s(f, reqs, what);
    r = call(f, "PATCH", "/api/certificates/dv", "application/merge-patch+json",
             "{\"subject\":\"CN=x\"}");
    expect_error(&r, 400, "'subject' is derived");
    resp_clear(&r);
    /* unchanged values pass */
    r = call(f, "PATCH", "/api/certificates/dv", JSON_CT,
             "[{\"op\":\"replace\",\"path\":\"/valid\",\"value\":true},"
             "{\"op\":\"replace\",\"path\":\"/name\",\"value\":\"n\"}]");
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    /* enrich=false: derived fields kept as sent, certType kept */
    r = call(f, "PATCH", "/api/certificates/dv?enrich=false", JSON_CT,
             "[{\"op\":\"replace\",\"path\":\"/subject\",\"value\":\"as sent\"}]");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "subject"), "as sent");
    assert_string_equal(jstr(r.json, "certType"), "certificate");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/dv", NULL, NULL);
    assert_string_equal(jstr(r.json, "certType"), "certificate");
    resp_clear(&r);
}

/* 10d: POST and PUT with enrich=false keep certType (from the flags). */
static void test_certs_no_enrich_keeps_cert_type(void **state)
{
    struct fixture *f = *state;
    char *body = entity("ne", pki.b_chain, pki.b_key, "{\"client\":true}");
    struct resp r = call(f, "POST", "/api/certificates?enrich=false", JSON_CT, body);

    (void)state;
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "certType"), "client");
    resp_clear(&r);
    r = call(f, "PUT", "/api/certificates/ne?enrich=false", JSON_CT, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "certType"), "client");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/ne", NULL, NULL);
    assert_string_equal(jstr(r.json, "certType"), "client");
    resp_clear(&r);
    free(body);
}

/* 5: a response sent back unchanged (with certId or warnings, which responses carry) is
 * accepted by PUT and POST; the members are dropped. */
static void test_certs_put_accepts_response_only_fields(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    char *body = NULL;

    (void)state;
    create_ok(f, "ro", pki.a_chain, pki.a_key, NULL);
    r = call(f, "GET", "/api/certificates/ro", NULL, NULL);
    assert_int_equal(json_object_set_new(r.json, "certId", json_string("ro")), 0);
    assert_int_equal(json_object_set_new(r.json, "warnings", json_pack("[s]", "w")), 0);
    body = json_dumps(r.json, JSON_COMPACT);
    resp_clear(&r);
    r = call(f, "PUT", "/api/certificates/ro", JSON_CT, body);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(r.json, "certId"));
    assert_null(json_object_get(r.json, "warnings"));
    resp_clear(&r);
    free(body);
    body = entity("ro2", pki.b_chain, pki.b_key, "{\"certId\":\"ro2\"}");
    r = call(f, "POST", "/api/certificates", JSON_CT, body);
    assert_int_equal(r.status, 201);
    assert_null(json_object_get(r.json, "certId"));
    resp_clear(&r);
    free(body);
}

/* 5: unknown or repeated query parameters and unusable values are a 400 naming them. */
static void test_certs_unknown_query_parameters_rejected(void **state)
{
    struct fixture *f = *state;
    static const char *const reqs[][3] = {
        {"GET", "/api/certificates?nosuch=1", NULL},
        {"GET", "/api/certificates?page=1&page=2", NULL},
        {"GET", "/api/certificates?filtered=name", NULL},
        {"GET", "/api/certificates?sorted=name:up", NULL},
        {"GET", "/api/certificates?fields=metadata..k", NULL},
        {"GET", "/api/certificates?keypair=yes", NULL},
        {"GET", "/api/certificates?enrich=false", NULL},
        {"GET", "/api/certificates/q1?filter.x=1", NULL},
        {"GET", "/api/certificates/q1?fields=a.", NULL},
        {"PUT", "/api/certificates/q1?enrich=maybe", "{}"},
        {"PATCH", "/api/certificates/q1?dryRun=true", "[]"},
        {"DELETE", "/api/certificates/q1?force=true", NULL},
        {"GET", "/api/certificates/q1/valid?x", NULL},
        {"POST", "/api/certificates?persist=false", "{}"},
        {"POST", "/api/certificates/_bulk?_group=2", ""},
        {NULL, NULL, NULL},
    };
    static const char *const what[] = {
        "'nosuch'", "'page' is given more than once",
        "filtered", "sorted",
        "fields",   "'keypair' must be true or false",
        "'enrich'", "'filter.x'",
        "fields",   "'enrich' must be true or false",
        "'dryRun'", "'force'",
        "'x'",      "'persist'",
        "'_group'",
    };

    (void)state;
    create_ok(f, "q1", pki.a_chain, pki.a_key, NULL);
    expect_400s(f, reqs, what);
}

/* 5: filtered (case-insensitive substring, dotted paths), sorted (true ascending, false
 * descending, numbers by value) and dotted fields, as the reference. */
static void test_certs_list_filtered_sorted_dotted_fields(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    json_t *first = NULL;

    (void)state;
    create_ok(f, "s1", pki.a_chain, pki.a_key, "{\"metadata\":{\"owner\":\"Alice\",\"t\":\"1\"}}");
    create_ok(f, "s2", pki.b_chain, pki.b_key, "{\"metadata\":{\"owner\":\"bob\"}}");
    create_ok(f, "s3", pki.c_chain, pki.c_key, NULL);

    r = call(f, "GET", "/api/certificates?filtered=domain:A.EXAMPLE", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "s1");
    assert_string_equal(resp_header(&r, "X-Count"), "3");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filtered=metadata.owner:o,domain:example", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "s2");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?filtered=sans:WWW.", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    resp_clear(&r);

    r = call(f, "GET", "/api/certificates?sorted=domain:false", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 3);
    assert_string_equal(jstr(json_array_get(r.json, 0), "id"), "s3");
    assert_string_equal(jstr(json_array_get(r.json, 2), "id"), "s1");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates?sorted=to:true&page=1&pageSize=1&fields=id", NULL, NULL);
    assert_int_equal(json_array_size(r.json), 1);
    first = json_array_get(r.json, 0);
    assert_string_equal(jstr(first, "id"), "s3"); /* the expired one ends first */
    assert_int_equal(json_object_size(first), 1);
    resp_clear(&r);

    r = call(f, "GET", "/api/certificates?fields=id,metadata.owner,_loc.tenant&filter.id=s1", NULL,
             NULL);
    first = json_array_get(r.json, 0);
    assert_int_equal(json_object_size(first), 3);
    assert_string_equal(jstr(json_object_get(first, "metadata"), "owner"), "Alice");
    assert_int_equal(json_object_size(json_object_get(first, "metadata")), 1);
    assert_string_equal(jstr(json_object_get(first, "_loc"), "tenant"), "default");
    resp_clear(&r);
    r = call(f, "GET", "/api/certificates/s2?fields=metadata.owner", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(json_object_get(r.json, "metadata"), "owner"), "bob");
    assert_int_equal(json_object_size(r.json), 1);
    resp_clear(&r);
}

/* Build "[op,op,...]" of n copies of one operation text. */
static char *repeat_ops(const char *const *ops, size_t n_ops, size_t times)
{
    size_t cap = 2;
    char *s = NULL;
    size_t len = 0;

    for (size_t i = 0; i < n_ops; i++) {
        cap += (strlen(ops[i]) + 1) * times;
    }
    s = torii_xmalloc(cap + 1);
    s[len++] = '[';
    for (size_t t = 0; t < times; t++) {
        for (size_t i = 0; i < n_ops; i++) {
            size_t n = strlen(ops[i]);
            memcpy(s + len, ops[i], n);
            len += n;
            s[len++] = ',';
        }
    }
    s[len - 1] = ']';
    s[len] = '\0';
    return s;
}

/* 9: the size-doubling and nesting-doubling patches are refused (413 / 400) while applying,
 * naming the operation, and change nothing. */
static void test_certs_patch_work_bounded(void **state)
{
    struct fixture *f = *state;
    static const char *const grow[] = {"{\"op\":\"copy\",\"from\":\"\",\"path\":\"/x\"}",
                                       "{\"op\":\"copy\",\"from\":\"/x\",\"path\":\"/y\"}"};
    char *patch = repeat_ops(grow, 2, 40);
    char *before = NULL;
    char *after = NULL;
    char deep[2048];
    size_t len = 0;
    struct resp r;

    (void)state;
    create_ok(f, "pw", pki.a_chain, pki.a_key, NULL);
    before = snapshot(f);
    r = call(f, "PATCH", "/api/certificates/pw", JSON_CT, patch);
    expect_error(&r, 413, "patch operation ");
    resp_clear(&r);
    free(patch);
    /* copies of the document into its own deepest member: /metadata, /metadata/metadata, ... */
    len += (size_t)snprintf(deep, sizeof(deep), "[");
    for (int k = 0, depth = 1; k < 12; k++, depth *= 2) {
        len += (size_t)snprintf(deep + len, sizeof(deep) - len,
                                "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"", k > 0 ? "," : "");
        for (int d = 0; d < depth && d < 40; d++) {
            len += (size_t)snprintf(deep + len, sizeof(deep) - len, "/_loc");
        }
        len += (size_t)snprintf(deep + len, sizeof(deep) - len, "\"}");
    }
    (void)snprintf(deep + len, sizeof(deep) - len, "]");
    r = call(f, "PATCH", "/api/certificates/pw", JSON_CT, deep);
    if (r.status != 400 || strstr(jstr(r.json, "error"), "nested deeper") == NULL) {
        fail_msg("nesting patch: %d %s", r.status, jstr(r.json, "error"));
    }
    resp_clear(&r);
    /* bodies nested deeper than the bound: parsed (jansson stops at its own 2048) and refused */
    {
        char *body = torii_xmalloc(6001);
        memset(body, '[', 3000);
        memset(body + 3000, ']', 3000);
        body[6000] = '\0';
        r = call(f, "PATCH", "/api/certificates/pw", JSON_CT, body);
        expect_error(&r, 400, "JSON");
        resp_clear(&r);
        body[200] = '\0';
        memset(body + 100, ']', 100);
        r = call(f, "PUT", "/api/certificates/pw", JSON_CT, body);
        expect_error(&r, 400, "nested deeper than 64");
        resp_clear(&r);
        free(body);
    }
    after = snapshot(f);
    assert_string_equal(before, after);
    free(after);
    free(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_certs_create_generates_id_and_returns_stored_entity,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_create_existing_id_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_create_bad_inputs_rejected_store_unchanged,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_create_charset_param_and_no_enrich, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_certs_list_paging_filter_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_put_replaces_and_forces_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_get_then_put_keeps_private_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_patch_json_patch_and_merge_patch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_certs_delete_then_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_valid_recomputed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_template_copies_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_bulk_all_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_routing_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_non_utf8_id_is_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_patch_derived_fields_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_no_enrich_keeps_cert_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs_put_accepts_response_only_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_certs_unknown_query_parameters_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_certs_list_filtered_sorted_dotted_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_certs_patch_work_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
