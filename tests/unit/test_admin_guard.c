/* test_admin_guard.c - the guarded dispatch of the admin listener (admin_guard_dispatch) with
 * hand-built requests against a real LMDB store in a temp dir: scopes on every route of the
 * table, redaction (GET, list, bulk, PKI) and export, PUT without the key, the failed-auth
 * limiter with an injected clock, the audit log (written before the route and before the
 * response; a failed audit write changes nothing), and the Host/Origin/Content-Type checks. */
#include <fcntl.h>
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

#include "admin_guard.h"
#include "admin_int.h"
#include "testpki.h"
#include "teststore.h"
#include "torii/err.h"
#include "torii/mem.h"
#include "torii/store.h"

#define ADMIN_SECRET "guard-admin-token-0123456789"
#define HOST         "127.0.0.1:9000"

/* One configured token per single scope, plus read+keys:export. */
static const struct {
    const char *id;
    const char *secret;
    unsigned scopes;
} toks[] = {
    {"r", "secret-read-0123456789", TORII_SCOPE_READ},
    {"w", "secret-write-0123456789", TORII_SCOPE_WRITE},
    {"p", "secret-pki-0123456789", TORII_SCOPE_PKI},
    {"x", "secret-export-0123456789", TORII_SCOPE_KEYS_EXPORT},
    {"rx", "secret-read-export-0123456789", TORII_SCOPE_READ | TORII_SCOPE_KEYS_EXPORT},
};
#define N_TOKS (sizeof(toks) / sizeof(toks[0]))

static char *leaf_chain;
static char *leaf_key;

struct fixture {
    struct teststore ts;
    char audit[96];
    struct torii_config cfg;
    struct torii_conf_token list[N_TOKS];
    struct torii_admin_ctx ctx;
    struct admin_guard g;
    int64_t now_ms;
};

struct resp {
    int status;
    json_t *json;
    char *raw;
    char retry_after[16];
    int acao; /* an Access-Control-Allow-* header was set */
};

struct call {
    const char *method;
    const char *target;
    const char *secret; /* Bearer; NULL: none */
    const char *ctype;
    const char *body;
    const char *host; /* NULL: HOST; "" : no Host header */
    const char *origin;
    const char *peer;
};

static int group_setup(void **state)
{
    static const char *const dns[] = {"g.example.test"};
    struct testpki_opts o;
    X509 *c = NULL;
    EVP_PKEY *k = NULL;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "g.example.test";
    o.dns = dns;
    o.n_dns = 1;
    o.not_before_off_s = -60;
    assert_int_equal(testpki_make(&o, &c, &k), 0);
    leaf_chain = testpki_cert_pem(c);
    leaf_key = testpki_key_pem(k, NULL);
    X509_free(c);
    EVP_PKEY_free(k);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(leaf_chain);
    free(leaf_key);
    return 0;
}

static void sha256(const char *s, unsigned char out[32])
{
    unsigned int n = 32;
    assert_int_equal(EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL), 1);
}

static int setup(void **state)
{
    struct fixture *f = torii_xcalloc(1, sizeof(*f));
    struct torii_errbuf eb = {{0}};

    if (teststore_open(&f->ts, "guard", 8u << 20, &eb) != TORII_OK) {
        fail_msg("store open: %s", eb.msg);
    }
    (void)snprintf(f->audit, sizeof(f->audit), "%s/audit.log", f->ts.dir);
    for (size_t i = 0; i < N_TOKS; i++) {
        (void)snprintf(f->list[i].id, sizeof(f->list[i].id), "%s", toks[i].id);
        sha256(toks[i].secret, f->list[i].sha256);
        f->list[i].scopes = toks[i].scopes;
    }
    f->cfg.data_dir = f->ts.dir;
    f->cfg.admin_token = (char *)(uintptr_t)ADMIN_SECRET;
    f->cfg.admin_client_id = (char *)(uintptr_t) "admin";
    f->cfg.admin_token_list = f->list;
    f->cfg.n_admin_tokens = N_TOKS;
    f->cfg.admin_auth_fail_limit = 3;
    f->cfg.admin_auth_fail_window_s = 60;
    f->ctx.store = f->ts.st;
    f->ctx.cfg = &f->cfg;
    if (admin_guard_init(&f->g, &f->cfg, HOST, &eb) != TORII_OK) {
        fail_msg("guard init: %s", eb.msg);
    }
    f->now_ms = 1000000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    static const char *const files[] = {"audit.log"};

    admin_guard_clear(&f->g);
    assert_int_equal(teststore_remove(&f->ts, files, 1), 0);
    free(f);
    return 0;
}

static struct resp run(struct fixture *f, const struct call *c)
{
    struct torii_http_req req;
    struct torii_http_header h[6];
    struct torii_admin_reply reply;
    struct resp r;
    char auth[128];
    const char *q = strchr(c->target, '?');
    const char *host = c->host != NULL ? c->host : HOST;
    size_t nh = 0;

    memset(&req, 0, sizeof(req));
    memset(&reply, 0, sizeof(reply));
    memset(&r, 0, sizeof(r));
    req.method = c->method;
    req.target = (struct torii_slice){c->target, strlen(c->target)};
    req.path =
        (struct torii_slice){c->target, q != NULL ? (size_t)(q - c->target) : strlen(c->target)};
    req.query =
        q != NULL ? (struct torii_slice){q + 1, strlen(q + 1)} : (struct torii_slice){"", 0};
    req.version_minor = 1;
    if (c->secret != NULL) {
        (void)snprintf(auth, sizeof(auth), "Bearer %s", c->secret);
        h[nh++] = (struct torii_http_header){{"Authorization", 13}, {auth, strlen(auth)}};
    }
    if (host[0] != '\0') {
        h[nh++] = (struct torii_http_header){{"Host", 4}, {host, strlen(host)}};
    }
    if (c->ctype != NULL) {
        h[nh++] = (struct torii_http_header){{"Content-Type", 12}, {c->ctype, strlen(c->ctype)}};
    }
    if (c->origin != NULL) {
        h[nh++] = (struct torii_http_header){{"Origin", 6}, {c->origin, strlen(c->origin)}};
    }
    req.headers = h;
    req.n_headers = nh;
    req.body = (const unsigned char *)c->body;
    req.body_len = c->body != NULL ? strlen(c->body) : 0;
    req.peer = c->peer != NULL ? c->peer : "127.0.0.1:5555";

    admin_guard_dispatch(&f->g, &f->ctx, &req, f->now_ms, &reply);
    r.status = reply.status != 0 ? reply.status : 200;
    r.json = json_incref(reply.json);
    if (reply.raw != NULL) {
        r.raw = torii_xstrndup(reply.raw, reply.raw_len);
    }
    for (size_t i = 0; i < reply.n_headers; i++) {
        if (strcasecmp(reply.hname[i], "Retry-After") == 0) {
            (void)snprintf(r.retry_after, sizeof(r.retry_after), "%s", reply.hvalue[i]);
        }
        r.acao |= strncasecmp(reply.hname[i], "Access-Control-", 15) == 0;
    }
    admin_reply_clear(&reply);
    return r;
}

static void resp_clear(struct resp *r)
{
    json_decref(r->json);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* The whole reply as text (JSON or raw). */
static char *resp_text(const struct resp *r)
{
    if (r->json != NULL) {
        return json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    return torii_xstrdup(r->raw != NULL ? r->raw : "");
}

static int resp_has_key(const struct resp *r)
{
    char *t = resp_text(r);
    int has = strstr(t, "PRIVATE KEY") != NULL;

    free(t);
    return has;
}

static char *entity_body(const char *id)
{
    json_t *e = json_pack("{s:s, s:s, s:s}", "id", id, "chain", leaf_chain, "privateKey", leaf_key);
    char *s = json_dumps(e, JSON_COMPACT);

    json_decref(e);
    return s;
}

static void create(struct fixture *f, const char *id)
{
    char *body = entity_body(id);
    struct call c = {
        "POST", "/api/certificates", ADMIN_SECRET, "application/json", body, NULL, NULL, NULL};
    struct resp r = run(f, &c);

    assert_int_equal(r.status, 201);
    resp_clear(&r);
    free(body);
}

/* ---- scopes: every route of the table ---- */

/* The path of a pattern with '*' = "x". */
static void pattern_path(const char *pat, char *out, size_t len)
{
    size_t o = 0;

    for (; *pat != '\0' && o + 2 < len; pat++) {
        out[o++] = *pat == '*' ? 'x' : *pat;
    }
    out[o] = '\0';
}

static void test_scopes_every_route(void **state)
{
    struct fixture *f = *state;

    assert_true(admin_n_routes > 20);
    for (size_t i = 0; i < admin_n_routes; i++) {
        const struct admin_route *rule = &admin_routes[i];
        char path[128];

        pattern_path(rule->pattern, path, sizeof(path));
        assert_ptr_equal(admin_route_find(rule->method, (struct torii_slice){path, strlen(path)}),
                         rule);
        for (size_t t = 0; t < N_TOKS; t++) {
            struct call c = {rule->method, path, toks[t].secret, "application/json",
                             NULL,         NULL, NULL,           NULL};
            struct resp r = run(f, &c);
            int allowed = (toks[t].scopes & rule->scope) == rule->scope;

            if (allowed ? (r.status == 403 || r.status == 401) : r.status != 403) {
                fail_msg("%s %s with token %s: status %d, expected %s", rule->method, path,
                         toks[t].id, r.status, allowed ? "not 401/403" : "403");
            }
            resp_clear(&r);
        }
        /* the all-scopes token passes every route */
        {
            struct call c = {rule->method, path, ADMIN_SECRET, "application/json",
                             NULL,         NULL, NULL,         NULL};
            struct resp r = run(f, &c);
            assert_true(r.status != 401 && r.status != 403);
            resp_clear(&r);
        }
    }
}

static void test_scopes_unknown_route_needs_admin(void **state)
{
    struct fixture *f = *state;
    struct call c = {"GET", "/api/nope", toks[0].secret, NULL, NULL, NULL, NULL, NULL};
    struct resp r = run(f, &c);

    assert_int_equal(r.status, 403);
    resp_clear(&r);
    c.secret = ADMIN_SECRET;
    r = run(f, &c);
    assert_int_equal(r.status, 404);
    resp_clear(&r);
    /* HEAD is GET */
    assert_ptr_equal(admin_route_find("HEAD", (struct torii_slice){"/metrics", 8}),
                     admin_route_find("GET", (struct torii_slice){"/metrics", 8}));
    /* '*' is one non-empty segment */
    assert_null(admin_route_find("GET", (struct torii_slice){"/api/certificates//valid", 24}));
}

/* ---- redaction and export ---- */

static void test_redaction_get_list_and_export(void **state)
{
    struct fixture *f = *state;
    struct call get = {"GET", "/api/certificates/red1", toks[4].secret, NULL, NULL, NULL, NULL,
                       NULL};
    struct call list = {"GET", "/api/certificates", toks[0].secret, NULL, NULL, NULL, NULL, NULL};
    struct resp r;

    create(f, "red1");
    r = run(f, &get);
    assert_int_equal(r.status, 200);
    assert_false(resp_has_key(&r));
    assert_string_equal(json_string_value(json_object_get(r.json, "privateKey")), "");
    assert_true(json_is_true(json_object_get(r.json, "privateKeyRedacted")));
    assert_false(r.acao);
    resp_clear(&r);

    r = run(f, &list);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 1);
    assert_false(resp_has_key(&r));
    resp_clear(&r);
    list.target = "/api/certificates?fields=id,privateKey";
    r = run(f, &list);
    assert_int_equal(r.status, 200);
    assert_false(resp_has_key(&r));
    resp_clear(&r);
    /* filtering on a secret would be an oracle */
    list.target = "/api/certificates?filter.password=x";
    r = run(f, &list);
    assert_int_equal(r.status, 400);
    resp_clear(&r);

    /* export: refused without keys:export, granted with it */
    list.target = "/api/certificates?export=true";
    r = run(f, &list);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "keys:export"));
    resp_clear(&r);
    get.target = "/api/certificates/red1?export=true";
    r = run(f, &get);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "privateKey")), leaf_key);
    resp_clear(&r);
    get.target = "/api/certificates/red1?export=false";
    r = run(f, &get);
    assert_false(resp_has_key(&r));
    resp_clear(&r);
}

static void test_redaction_writes_bulk_and_pki(void **state)
{
    struct fixture *f = *state;
    char *body = entity_body("red2");
    char *line = NULL;
    struct call c = {
        "POST", "/api/certificates", ADMIN_SECRET, "application/json", body, NULL, NULL, NULL};
    struct resp r = run(f, &c);

    /* the write's own response is redacted too */
    assert_int_equal(r.status, 201);
    assert_false(resp_has_key(&r));
    resp_clear(&r);

    /* bulk */
    line = entity_body("red3");
    c = (struct call){
        "POST", "/api/certificates/_bulk", ADMIN_SECRET, "application/x-ndjson", line, NULL, NULL,
        NULL};
    r = run(f, &c);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.raw, "\"created\":true"));
    assert_false(resp_has_key(&r));
    resp_clear(&r);

    /* PKI: a generated key is returned once, then redacted like any other */
    c = (struct call){"POST",
                      "/api/pki/certs",
                      toks[2].secret,
                      "application/json",
                      "{\"hosts\":[\"gen.example.test\"],\"subject\":\"CN=gen.example.test\"}",
                      NULL,
                      NULL,
                      NULL};
    r = run(f, &c);
    assert_int_equal(r.status, 200);
    assert_true(resp_has_key(&r));
    {
        char target[512];
        struct call g = {"GET", target, ADMIN_SECRET, NULL, NULL, NULL, NULL, NULL};
        struct resp r2;
        (void)snprintf(target, sizeof(target), "/api/certificates/%s",
                       json_string_value(json_object_get(r.json, "certId")));
        r2 = run(f, &g);
        assert_int_equal(r2.status, 200);
        assert_false(resp_has_key(&r2));
        resp_clear(&r2);
    }
    resp_clear(&r);

    /* PKI import (the caller's own key): redacted */
    {
        size_t n = strlen(leaf_chain) + strlen(leaf_key) + 1;
        char *pem = torii_xmalloc(n);
        (void)snprintf(pem, n, "%s%s", leaf_chain, leaf_key);
        c = (struct call){"POST",
                          "/api/certificates/_bundle",
                          toks[1].secret,
                          "application/x-pem-file",
                          pem,
                          NULL,
                          NULL,
                          NULL};
        r = run(f, &c);
        assert_int_equal(r.status, 201);
        assert_false(resp_has_key(&r));
        resp_clear(&r);
        free(pem);
    }
    free(line);
    free(body);
}

static void test_put_without_key_keeps_key(void **state)
{
    struct fixture *f = *state;
    struct call get = {"GET", "/api/certificates/keep1", ADMIN_SECRET, NULL, NULL, NULL, NULL,
                       NULL};
    struct call put = {
        "PUT", "/api/certificates/keep1", toks[1].secret, "application/json", NULL, NULL, NULL,
        NULL};
    struct resp r;
    char *body = NULL;

    create(f, "keep1");
    r = run(f, &get);
    assert_true(json_is_true(json_object_get(r.json, "privateKeyRedacted")));
    (void)json_object_set_new(r.json, "description", json_string("edited"));
    body = json_dumps(r.json, JSON_COMPACT);
    resp_clear(&r);
    put.body = body;
    r = run(f, &put); /* the redacted GET body sent back as is */
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    get.target = "/api/certificates/keep1?export=true";
    r = run(f, &get);
    assert_string_equal(json_string_value(json_object_get(r.json, "privateKey")), leaf_key);
    assert_string_equal(json_string_value(json_object_get(r.json, "description")), "edited");
    resp_clear(&r);
    free(body);
}

/* ---- rate limit ---- */

static void test_rate_limit_failed_auth(void **state)
{
    struct fixture *f = *state;
    struct call bad = {"GET", "/api/certificates", "wrong-token-0123456789", NULL, NULL, NULL,
                       NULL,  "10.0.0.1:1000"};
    struct call good = {"GET", "/api/certificates", toks[0].secret, NULL, NULL, NULL,
                        NULL,  "10.0.0.1:2000"};
    struct resp r;

    for (int i = 0; i < 3; i++) {
        r = run(f, &bad);
        assert_int_equal(r.status, 401);
        resp_clear(&r);
        f->now_ms += 1000;
    }
    /* blocked: even a valid token from that source, any port */
    r = run(f, &good);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "57");
    resp_clear(&r);
    /* another source is not */
    good.peer = "10.0.0.2:2000";
    r = run(f, &good);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    /* the window ends */
    f->now_ms += 58000;
    good.peer = "10.0.0.1:3000";
    r = run(f, &good);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
}

static void test_rate_limit_bounded_table(void **state)
{
    struct admin_rl *rl = torii_xcalloc(1, sizeof(*rl));
    char src[ADMIN_RL_KEY];

    (void)state;
    rl->limit = 1;
    rl->window_ms = 60000;
    for (int i = 0; i < ADMIN_RL_SLOTS + 10; i++) {
        (void)snprintf(src, sizeof(src), "10.1.%d.%d", i / 256, i % 256);
        admin_rl_fail(rl, src, 1000 + i);
    }
    /* the oldest were forgotten, the newest are blocked */
    assert_int_equal(admin_rl_blocked(rl, "10.1.0.0", 2000), 0);
    (void)snprintf(src, sizeof(src), "10.1.%d.%d", (ADMIN_RL_SLOTS + 9) / 256,
                   (ADMIN_RL_SLOTS + 9) % 256);
    assert_true(admin_rl_blocked(rl, src, 2000) > 0);
    admin_rl_source("[::1]:80", src);
    assert_string_equal(src, "[::1]");
    free(rl);
}

/* ---- audit ---- */

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "re");
    char *buf = torii_xcalloc(1, 65536);
    size_t n = 0;

    if (fp != NULL) {
        n = fread(buf, 1, 65535, fp);
        (void)fclose(fp);
    }
    buf[n] = '\0';
    return buf;
}

struct seam_arg {
    const char *path;
    int saw_intent;
};

static void audit_seam(const char *id, void *arg)
{
    struct seam_arg *a = arg;
    char *text = read_file(a->path);

    (void)id;
    a->saw_intent = strstr(text, "\"phase\":\"intent\",\"token\":\"w\"") != NULL
                    && strstr(text, "\"method\":\"PUT\"") != NULL;
    free(text);
}

static void test_audit_before_response(void **state)
{
    struct fixture *f = *state;
    struct seam_arg sa = {f->audit, 0};
    struct admin_rmw_seam seam = {audit_seam, &sa};
    char *body = entity_body("aud1");
    struct call put = {"PUT",          "/api/certificates/aud1",
                       toks[1].secret, "application/json",
                       body,           NULL,
                       NULL,           "127.0.0.7:1"};
    struct resp r;
    char *text = NULL;
    char fp[80];
    json_t *e = json_pack("{s:s}", "chain", leaf_chain);

    create(f, "aud1");
    f->ctx.seam = &seam;
    r = run(f, &put);
    f->ctx.seam = NULL;
    assert_int_equal(r.status, 200);
    assert_true(sa.saw_intent); /* written before the route changed anything */
    resp_clear(&r);
    /* and the result line is there when dispatch returns, i.e. before the response is sent */
    text = read_file(f->audit);
    assert_true(admin_key_fingerprint(e, fp, sizeof(fp)));
    assert_non_null(strstr(text, "\"phase\":\"result\",\"token\":\"w\",\"source\":\"127.0.0.7\","
                                 "\"method\":\"PUT\",\"path\":\"/api/certificates/aud1\","
                                 "\"entity\":\"aud1\",\"status\":200"));
    assert_non_null(strstr(text, fp));
    assert_null(strstr(text, "PRIVATE KEY"));
    /* reads are not audited */
    assert_null(strstr(text, "\"method\":\"GET\""));
    free(text);
    json_decref(e);
    free(body);
}

static void test_audit_failure_changes_nothing(void **state)
{
    struct fixture *f = *state;
    char *body = entity_body("aud2");
    struct call post = {
        "POST", "/api/certificates", ADMIN_SECRET, "application/json", body, NULL, NULL, NULL};
    struct call get = {"GET", "/api/certificates/aud2", ADMIN_SECRET, NULL, NULL, NULL, NULL, NULL};
    struct resp r;
    int ro = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(ro >= 0);
    (void)close(f->g.audit.fd);
    f->g.audit.fd = ro; /* writes fail */
    r = run(f, &post);
    assert_int_equal(r.status, 503);
    resp_clear(&r);
    r = run(f, &get);
    assert_int_equal(r.status, 404);
    resp_clear(&r);
    free(body);
}

/* ---- browser safety ---- */

static void test_host_origin_content_type(void **state)
{
    struct fixture *f = *state;
    char *body = entity_body("br1");
    struct call c = {"POST", "/api/certificates", ADMIN_SECRET, "application/json",
                     body,   "evil.example:9000", NULL,         NULL};
    struct resp r = run(f, &c);

    assert_int_equal(r.status, 403); /* DNS rebinding: foreign Host */
    resp_clear(&r);
    c.host = "";
    r = run(f, &c);
    assert_int_equal(r.status, 403);
    resp_clear(&r);
    c.host = NULL;
    c.origin = "http://evil.example";
    r = run(f, &c);
    assert_int_equal(r.status, 403);
    resp_clear(&r);
    c.origin = "null";
    r = run(f, &c);
    assert_int_equal(r.status, 403);
    resp_clear(&r);
    c.origin = NULL;
    c.ctype = "text/plain";
    r = run(f, &c);
    assert_int_equal(r.status, 415);
    resp_clear(&r);
    c.ctype = NULL;
    r = run(f, &c);
    assert_int_equal(r.status, 415);
    resp_clear(&r);
    /* nothing was created by the refused calls */
    {
        struct call g = {"GET", "/api/certificates/br1", ADMIN_SECRET, NULL, NULL, NULL, NULL,
                         NULL};
        r = run(f, &g);
        assert_int_equal(r.status, 404);
        resp_clear(&r);
    }
    c.ctype = "application/json";
    c.origin = "http://localhost:9000";
    c.host = "LOCALHOST:9000";
    r = run(f, &c);
    assert_int_equal(r.status, 201);
    assert_false(r.acao);
    resp_clear(&r);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scopes_every_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes_unknown_route_needs_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_get_list_and_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_writes_bulk_and_pki, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_without_key_keeps_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_failed_auth, setup, teardown),
        cmocka_unit_test(test_rate_limit_bounded_table),
        cmocka_unit_test_setup_teardown(test_audit_before_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_failure_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_origin_content_type, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
