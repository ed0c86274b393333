/* test_admin_conflict.c - read-modify-write of /api/certificates/:id racing another writer.
 * PUT and PATCH (single and bulk) write back with TORII_STORE_REPLACE_IF against the JSON they
 * read; the admin seam (struct admin_rmw_seam) lands the concurrent write - a real renewal
 * through torii_renew_one, another admin request, a delete - exactly between that read and
 * the write, so the race is deterministic. The request must answer 409 (404 when deleted)
 * with a JSON error and leave the concurrent write in place, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "admin_int.h"
#include "testpki.h"
#include "teststore.h"
#include "torii/clock.h"
#include "torii/err.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"
#include "torii/store.h"

#define LEAF_ID "leaf"

enum race {
    RACE_NONE = 0, /* the seam only counts */
    RACE_RENEW,    /* torii_renew_one, as the renewal thread would */
    RACE_PATCH,    /* another admin request changing the description */
    RACE_DELETE,   /* the entity is deleted */
};

struct fixture {
    struct teststore ts;
    struct torii_admin_ctx ctx;
    struct admin_rmw_seam seam;
    enum race race;
    int calls;        /* seam invocations */
    char *after_race; /* store snapshot right after the concurrent write */
};

/* ---- request driver ---- */

struct resp {
    int status;
    json_t *json;
    char *raw;
};

static struct resp call(struct fixture *f, const char *method, const char *target,
                        const char *ctype, const char *body)
{
    struct torii_http_req req;
    struct torii_http_header h[1];
    struct torii_admin_reply reply;
    struct resp r;

    memset(&req, 0, sizeof(req));
    memset(&reply, 0, sizeof(reply));
    memset(&r, 0, sizeof(r));
    req.method = method;
    req.target = (struct torii_slice){target, strlen(target)};
    req.path = req.target;
    req.query = (struct torii_slice){"", 0};
    req.version_minor = 1;
    if (ctype != NULL) {
        h[0] = (struct torii_http_header){{"Content-Type", 12}, {ctype, strlen(ctype)}};
        req.headers = h;
        req.n_headers = 1;
    }
    req.body = (const unsigned char *)body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.peer = "127.0.0.1:1";
    assert_int_equal(admin_certs_route(&f->ctx, &req, &reply), TORII_OK);
    r.status = reply.status;
    r.json = json_incref(reply.json);
    if (reply.raw != NULL) {
        r.raw = torii_xstrndup(reply.raw, reply.raw_len);
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

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void expect_status(const struct resp *r, int status)
{
    if (r->status != status) {
        char *s = r->json != NULL ? json_dumps(r->json, JSON_COMPACT) : NULL;
        fail_msg("status %d, want %d (%s)", r->status, status, s != NULL ? s : "-");
    }
}

/* ---- store helpers ---- */

static int snap_cb(const struct torii_store_rec *rec, void *arg)
{
    char **acc = arg;
    size_t old = *acc != NULL ? strlen(*acc) : 0;
    size_t add = rec->id_len + 1 + rec->json_len + rec->aux_len * 2 + 1;

    *acc = torii_xrealloc(*acc, old + add + 1);
    memcpy(*acc + old, rec->id, rec->id_len);
    (*acc)[old + rec->id_len] = '=';
    memcpy(*acc + old + rec->id_len + 1, rec->json, rec->json_len);
    old += rec->id_len + 1 + rec->json_len;
    for (size_t i = 0; i < rec->aux_len; i++) {
        (void)snprintf(*acc + old + i * 2, 3, "%02x", rec->aux[i]);
    }
    old += rec->aux_len * 2;
    (*acc)[old] = '\n';
    (*acc)[old + 1] = '\0';
    return TORII_OK;
}

/* Every record of both buckets, JSON and TLS record, as one string. */
static char *snapshot(struct fixture *f)
{
    char *acc = NULL;

    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, snap_cb, &acc), TORII_OK);
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_SERIALS, snap_cb, &acc), TORII_OK);
    return acc != NULL ? acc : torii_xstrdup("");
}

static json_t *stored(struct fixture *f, const char *id)
{
    char *text = NULL;
    size_t len = 0;
    json_t *e;

    assert_int_equal(torii_store_get(f->ts.st, TORII_STORE_CERTS, id, &text, &len, NULL, NULL),
                     TORII_OK);
    e = json_loadb(text, len, 0, NULL);
    assert_non_null(e);
    free(text);
    return e;
}

static size_t count(struct fixture *f)
{
    size_t n = 0;

    assert_int_equal(torii_store_count(f->ts.st, TORII_STORE_CERTS, &n), TORII_OK);
    return n;
}

/* ---- the concurrent writer ---- */

static void race_between(const char *id, void *arg)
{
    struct fixture *f = arg;
    struct torii_errbuf eb = {{0}};
    enum race race = f->race;

    assert_string_equal(id, LEAF_ID);
    f->calls++;
    f->race = RACE_NONE; /* one concurrent write per request */
    if (race == RACE_RENEW) {
        json_t *out = NULL;
        if (torii_renew_one(f->ts.st, NULL, id, torii_clock_now_ms(), &out, &eb) != TORII_OK) {
            fail_msg("concurrent renewal: %s", eb.msg);
        }
        json_decref(out);
    } else if (race == RACE_PATCH) {
        struct resp r;
        f->ctx.seam = NULL; /* the other request has no race window of its own */
        r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/json",
                 "[{\"op\":\"replace\",\"path\":\"/description\","
                 "\"value\":\"concurrent\"}]");
        f->ctx.seam = &f->seam;
        expect_status(&r, 200);
        resp_clear(&r);
    } else if (race == RACE_DELETE) {
        assert_int_equal(torii_store_delete(f->ts.st, TORII_STORE_CERTS, id, &eb), TORII_OK);
    }
    if (race != RACE_NONE) {
        free(f->after_race);
        f->after_race = snapshot(f);
    }
}

/* ---- fixtures ---- */

static char *leaf_entity_json(void)
{
    static const char *const dns[] = {"race.example.test"};
    struct testpki_opts o;
    X509 *c = NULL;
    EVP_PKEY *k = NULL;
    json_t *e;
    char *s;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "race.example.test";
    o.dns = dns;
    o.n_dns = 1;
    o.not_before_off_s = -60;
    assert_int_equal(testpki_make(&o, &c, &k), 0); /* self-signed: renewable with its own key */
    e = testpki_entity(LEAF_ID, &c, 1, k, NULL);
    assert_non_null(e);
    assert_int_equal(json_object_set_new(e, "autoRenew", json_true()), 0);
    s = json_dumps(e, JSON_COMPACT);
    assert_non_null(s);
    json_decref(e);
    X509_free(c);
    EVP_PKEY_free(k);
    return s;
}

static int setup(void **state)
{
    struct fixture *f = torii_xcalloc(1, sizeof(*f));
    struct torii_errbuf eb = {{0}};
    char *body = leaf_entity_json();
    struct resp r;

    if (teststore_open(&f->ts, "admin-rmw", 8u << 20, &eb) != TORII_OK) {
        fail_msg("store open: %s", eb.msg);
    }
    f->ctx.store = f->ts.st;
    f->seam.between = race_between;
    f->seam.arg = f;
    f->ctx.seam = &f->seam;
    r = call(f, "POST", "/api/certificates", "application/json", body);
    expect_status(&r, 201);
    assert_int_equal(f->calls, 0); /* a create reads nothing: no race window */
    resp_clear(&r);
    free(body);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(teststore_remove(&f->ts, NULL, 0), 0);
    free(f->after_race);
    free(f);
    return 0;
}

/* The request lost the race: 409, a JSON error, and the store exactly as the concurrent
 * writer left it. */
static void expect_conflict(struct fixture *f, const struct resp *r)
{
    char *now = snapshot(f);

    expect_status(r, 409);
    assert_true(json_is_string(json_object_get(r->json, "error")));
    assert_non_null(strstr(jstr(r->json, "error"), "changed concurrently"));
    assert_int_equal(f->calls, 1);
    assert_non_null(f->after_race);
    assert_string_equal(now, f->after_race);
    free(now);
}

/* ---- tests ---- */

static void test_patch_racing_a_renewal_returns_409_and_keeps_the_renewal(void **state)
{
    struct fixture *f = *state;
    json_t *before = stored(f, LEAF_ID);
    json_t *after = NULL;
    struct resp r;

    f->race = RACE_RENEW;
    r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/json-patch+json",
             "[{\"op\":\"replace\",\"path\":\"/description\",\"value\":\"mine\"}]");
    expect_conflict(f, &r);
    after = stored(f, LEAF_ID);
    /* The renewal stands (new chain, its [UNTIL EXPIRATION] copy) and the patch is not in. */
    assert_string_not_equal(jstr(after, "chain"), jstr(before, "chain"));
    assert_string_not_equal(jstr(after, "description"), "mine");
    assert_int_equal(count(f), 2);
    resp_clear(&r);
    json_decref(before);
    json_decref(after);
}

static void test_merge_patch_racing_a_renewal_returns_409(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    f->race = RACE_RENEW;
    r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/merge-patch+json",
             "{\"description\":\"mine\"}");
    expect_conflict(f, &r);
    resp_clear(&r);
}

static void test_put_racing_another_request_returns_409_and_keeps_its_write(void **state)
{
    struct fixture *f = *state;
    json_t *e = stored(f, LEAF_ID);
    json_t *after = NULL;
    char *body;
    struct resp r;

    /* A GET-then-PUT round trip, with another client's PATCH landing in between. */
    assert_int_equal(json_object_set_new(e, "description", json_string("mine")), 0);
    body = json_dumps(e, JSON_COMPACT);
    f->race = RACE_PATCH;
    r = call(f, "PUT", "/api/certificates/" LEAF_ID, "application/json", body);
    expect_conflict(f, &r);
    after = stored(f, LEAF_ID);
    assert_string_equal(jstr(after, "description"), "concurrent");
    resp_clear(&r);
    free(body);
    json_decref(e);
    json_decref(after);
}

static void test_put_racing_a_renewal_returns_409(void **state)
{
    struct fixture *f = *state;
    json_t *e = stored(f, LEAF_ID);
    char *body;
    struct resp r;

    assert_int_equal(json_object_set_new(e, "description", json_string("mine")), 0);
    body = json_dumps(e, JSON_COMPACT);
    f->race = RACE_RENEW;
    r = call(f, "PUT", "/api/certificates/" LEAF_ID, "application/json", body);
    expect_conflict(f, &r);
    assert_int_equal(count(f), 2);
    resp_clear(&r);
    free(body);
    json_decref(e);
}

static void test_bulk_patch_racing_a_renewal_reports_a_409_line(void **state)
{
    struct fixture *f = *state;
    json_t *line = NULL;
    char *now = NULL;
    struct resp r;

    f->race = RACE_RENEW;
    r = call(f, "PATCH", "/api/certificates/_bulk", "application/x-ndjson",
             "{\"id\":\"" LEAF_ID "\",\"patch\":[{\"op\":\"replace\",\"path\":\"/description\","
             "\"value\":\"mine\"}]}\n");
    expect_status(&r, 200);
    assert_non_null(r.raw);
    line = json_loads(r.raw, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(line);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 409);
    assert_string_equal(jstr(line, "error"), "conflict");
    assert_string_equal(jstr(line, "id"), LEAF_ID);
    assert_non_null(strstr(jstr(line, "error_description"), "changed concurrently"));
    now = snapshot(f);
    assert_string_equal(now, f->after_race);
    free(now);
    json_decref(line);
    resp_clear(&r);
}

static void test_bulk_put_racing_another_request_reports_a_409_line(void **state)
{
    struct fixture *f = *state;
    json_t *e = stored(f, LEAF_ID);
    json_t *line = NULL;
    char *body = NULL;
    char *nd = NULL;
    struct resp r;

    assert_int_equal(json_object_set_new(e, "description", json_string("mine")), 0);
    body = json_dumps(e, JSON_COMPACT);
    nd = torii_xmalloc(strlen(body) + 2);
    (void)snprintf(nd, strlen(body) + 2, "%s\n", body);
    f->race = RACE_PATCH;
    r = call(f, "PUT", "/api/certificates/_bulk", "application/x-ndjson", nd);
    expect_status(&r, 200);
    line = json_loads(r.raw, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(line);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 409);
    assert_string_equal(jstr(line, "error"), "conflict");
    json_decref(line);
    json_decref(e);
    free(body);
    free(nd);
    resp_clear(&r);
}

static void test_patch_of_an_entity_deleted_meanwhile_returns_404(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    f->race = RACE_DELETE;
    r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/json",
             "[{\"op\":\"replace\",\"path\":\"/description\",\"value\":\"mine\"}]");
    expect_status(&r, 404);
    assert_true(json_is_string(json_object_get(r.json, "error")));
    assert_int_equal(f->calls, 1);
    assert_int_equal(count(f), 0);
    resp_clear(&r);
}

static void test_unraced_put_and_patch_still_apply(void **state)
{
    struct fixture *f = *state;
    json_t *e = stored(f, LEAF_ID);
    json_t *after = NULL;
    char *body;
    struct resp r;

    r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/json",
             "[{\"op\":\"replace\",\"path\":\"/description\",\"value\":\"patched\"}]");
    expect_status(&r, 200);
    assert_string_equal(jstr(r.json, "description"), "patched");
    resp_clear(&r);
    assert_int_equal(f->calls, 1);
    (void)json_object_del(e, "privateKey"); /* a PUT without the key keeps the stored one */
    assert_int_equal(json_object_set_new(e, "description", json_string("put")), 0);
    body = json_dumps(e, JSON_COMPACT);
    r = call(f, "PUT", "/api/certificates/" LEAF_ID, "application/json", body);
    expect_status(&r, 200);
    resp_clear(&r);
    assert_int_equal(f->calls, 2);
    after = stored(f, LEAF_ID);
    assert_string_equal(jstr(after, "description"), "put");
    assert_true(strlen(jstr(after, "privateKey")) > 0);
    free(body);
    json_decref(e);
    json_decref(after);
}

static void test_failed_validation_never_reaches_the_race_window(void **state)
{
    struct fixture *f = *state;
    char *before = snapshot(f);
    char *now = NULL;
    struct resp r;

    f->race = RACE_RENEW;
    r = call(f, "PATCH", "/api/certificates/" LEAF_ID, "application/json",
             "[{\"op\":\"replace\",\"path\":\"/id\",\"value\":\"other\"}]");
    expect_status(&r, 400);
    assert_int_equal(f->calls, 0);
    now = snapshot(f);
    assert_string_equal(now, before);
    free(now);
    free(before);
    resp_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_patch_racing_a_renewal_returns_409_and_keeps_the_renewal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_patch_racing_a_renewal_returns_409, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_put_racing_another_request_returns_409_and_keeps_its_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_racing_a_renewal_returns_409, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_patch_racing_a_renewal_reports_a_409_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bulk_put_racing_another_request_reports_a_409_line,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_of_an_entity_deleted_meanwhile_returns_404,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unraced_put_and_patch_still_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_validation_never_reaches_the_race_window, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
