/* test_admin_certs_bulk.c - POST /api/certificates/_bulk prepared by the pool (certs_bulk.c):
 * a mixed batch (valid, invalid, duplicate, mismatched key, self-signed, CA-signed, RSA and
 * EC keys in PKCS#8, traditional and encrypted PEM, lines that are not JSON objects) answers
 * the same bytes and stores the same entities whether one thread or several prepare it, and
 * each line gets the result its content calls for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "admin_certs.h"
#include "admin_int.h"
#include "testpki.h"
#include "teststore.h"
#include "torii/certdb.h"
#include "torii/mem.h"

/* Copies of the mixed batch's pattern per request: enough lines for every pool thread. */
#define BULK_ROUNDS 12

/* The certificates and keys the lines are made of (PEM). */
struct bulk_pki {
    char *ca_signed; /* EC P-256 leaf + its CA */
    char *ca_key;    /* the leaf's key, PKCS#8 */
    char *self;      /* self-signed EC P-384 */
    char *self_key;  /* PKCS#8 */
    char *rsa;       /* self-signed RSA 2048 */
    char *rsa_key;   /* PKCS#8 */
    char *rsa_other; /* another RSA key (mismatch) */
    char *ec_trad;   /* the ca_signed key as "BEGIN EC PRIVATE KEY" */
    char *ec_enc;    /* the self key, encrypted PKCS#8 ("pw") */
};

static struct bulk_pki pki;

static char *pem_cat(char *a, char *b)
{
    size_t len = strlen(a) + strlen(b) + 1;
    char *s = torii_xmalloc(len);

    (void)snprintf(s, len, "%s%s", a, b);
    free(a);
    free(b);
    return s;
}

static char *make_cert(struct testpki_opts *o, EVP_PKEY **key)
{
    X509 *c = NULL;
    char *pem = NULL;

    assert_int_equal(testpki_make(o, &c, key), 0);
    pem = testpki_cert_pem(c);
    X509_free(c);
    return pem;
}

static int group_setup(void **state)
{
    static const char *const dns[] = {"bulk.example.test"};
    struct testpki_opts o = {.key_type = EVP_PKEY_EC, .cn = "Bulk CA", .is_ca = 1};
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *k = NULL;

    (void)state;
    assert_int_equal(testpki_make(&o, &ca, &ca_key), 0);
    o = (struct testpki_opts){
        .key_type = EVP_PKEY_EC, .cn = "bulk.example.test", .dns = dns, .n_dns = 1};
    o.issuer = ca;
    o.issuer_key = ca_key;
    pki.ca_signed = pem_cat(make_cert(&o, &k), testpki_cert_pem(ca));
    pki.ca_key = testpki_key_pem(k, NULL);
    pki.ec_trad = testpki_key_pem_traditional(k, NULL);
    EVP_PKEY_free(k);
    k = NULL;
    o = (struct testpki_opts){.key_type = EVP_PKEY_EC, .bits = 384, .cn = "self.example.test"};
    pki.self = make_cert(&o, &k);
    pki.self_key = testpki_key_pem(k, NULL);
    pki.ec_enc = testpki_key_pem(k, "pw");
    EVP_PKEY_free(k);
    k = NULL;
    o = (struct testpki_opts){.key_type = EVP_PKEY_RSA, .cn = "rsa.example.test"};
    pki.rsa = make_cert(&o, &k);
    pki.rsa_key = testpki_key_pem(k, NULL);
    EVP_PKEY_free(k);
    k = NULL;
    free(make_cert(&o, &k));
    pki.rsa_other = testpki_key_pem(k, NULL);
    EVP_PKEY_free(k);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return 0;
}

static int group_teardown(void **state)
{
    char **all[] = {&pki.ca_signed, &pki.ca_key,    &pki.self,    &pki.self_key, &pki.rsa,
                    &pki.rsa_key,   &pki.rsa_other, &pki.ec_trad, &pki.ec_enc};

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
    return 0;
}

/* One NDJSON line: {"id": id, "chain": chain, "privateKey": key, ...extra}. */
static void add_line(json_t *lines, const char *id, const char *chain, const char *key,
                     const char *password)
{
    json_t *e = json_pack("{s:s, s:s}", "id", id, "chain", chain);
    char *s = NULL;

    assert_non_null(e);
    if (key != NULL) {
        assert_int_equal(json_object_set_new(e, "privateKey", json_string(key)), 0);
    }
    if (password != NULL) {
        assert_int_equal(json_object_set_new(e, "password", json_string(password)), 0);
    }
    s = json_dumps(e, JSON_COMPACT);
    assert_non_null(s);
    assert_int_equal(json_array_append_new(lines, json_string(s)), 0);
    free(s);
    json_decref(e);
}

/* The expected status of each line of one round, in order (see bulk_round). */
static const int bulk_status[] = {201, 400, 409, 400, 201, 201, 400, 201,
                                  201, 201, 400, 400, 400, 201, 400};

/* One round of the mixed batch, ids suffixed with r. */
static void bulk_round(json_t *lines, int r)
{
    char id[16][32];

    for (int i = 0; i < 16; i++) {
        (void)snprintf(id[i], sizeof(id[i]), "r%d-%d", r, i);
    }
    add_line(lines, id[0], pki.ca_signed, pki.ca_key, NULL);   /* CA-signed: 201 */
    add_line(lines, id[1], "garbage", NULL, NULL);             /* bad chain: 400 */
    add_line(lines, id[0], pki.ca_signed, pki.ca_key, NULL);   /* duplicate: 409 */
    add_line(lines, id[3], pki.ca_signed, pki.self_key, NULL); /* key of another: 400 */
    add_line(lines, id[4], pki.self, pki.self_key, NULL);      /* self-signed P-384 */
    add_line(lines, id[5], pki.rsa, pki.rsa_key, NULL);        /* self-signed RSA */
    add_line(lines, id[6], pki.rsa, pki.rsa_other, NULL);      /* RSA mismatch: 400 */
    add_line(lines, id[7], pki.ca_signed, pki.ec_trad, NULL);  /* traditional EC */
    add_line(lines, id[8], pki.self, pki.ec_enc, "pw");        /* encrypted PKCS#8 */
    add_line(lines, id[9], pki.ca_signed, NULL, NULL);         /* no key */
    add_line(lines, id[10], pki.self, pki.ec_enc, "wrong");    /* wrong password: 400 */
    assert_int_equal(json_array_append_new(lines, json_string("{not json")), 0); /* 400 */
    assert_int_equal(json_array_append_new(lines, json_string("[1]")), 0);       /* 400 */
    add_line(lines, id[1], pki.self, pki.self_key, NULL); /* id of a failed line */
    add_line(lines, id[14], pki.self,
             "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE "
             "KEY-----\n",
             NULL); /* broken key: 400 */
}

static char *bulk_body(void)
{
    json_t *lines = json_array();
    size_t len = 0;
    size_t i;
    json_t *l;
    char *body;

    for (int r = 0; r < BULK_ROUNDS; r++) {
        bulk_round(lines, r);
    }
    json_array_foreach (lines, i, l) {
        len += json_string_length(l) + 1;
    }
    body = torii_xcalloc(1, len + 1);
    len = 0;
    json_array_foreach (lines, i, l) {
        memcpy(body + len, json_string_value(l), json_string_length(l));
        len += json_string_length(l);
        body[len++] = '\n';
    }
    json_decref(lines);
    return body;
}

/* POST body to _bulk of a fresh store with bulk_threads threads: the response bytes and
 * every stored entity's JSON text (id -> text); the store is removed. */
static char *bulk_run(const char *body, unsigned threads, json_t **stored)
{
    struct teststore ts;
    struct torii_errbuf eb = {{0}};
    struct torii_admin_ctx ctx = {.bulk_threads = threads};
    struct torii_http_header h = {{"Content-Type", 12}, {CERTS_NDJSON, strlen(CERTS_NDJSON)}};
    struct torii_http_req req = {.method = "POST", .version_minor = 1, .peer = "127.0.0.1:1"};
    struct torii_admin_reply reply;
    char *raw;

    memset(&reply, 0, sizeof(reply));
    assert_int_equal(teststore_open(&ts, "bulk-pool", 32u << 20, &eb), TORII_OK);
    ctx.store = ts.st;
    req.target = (struct torii_slice){"/api/certificates/_bulk", 23};
    req.path = req.target;
    req.query = (struct torii_slice){"", 0};
    req.headers = &h;
    req.n_headers = 1;
    req.body = (const unsigned char *)body;
    req.body_len = strlen(body);
    assert_int_equal(admin_certs_route(&ctx, &req, &reply), TORII_OK);
    assert_int_equal(reply.status, 200);
    assert_non_null(reply.raw);
    raw = torii_xstrndup(reply.raw, reply.raw_len);
    admin_reply_clear(&reply);
    *stored = json_object();
    for (int r = 0; r < BULK_ROUNDS; r++) {
        for (int i = 0; i < 16; i++) {
            struct torii_certdb_entry e;
            char id[32];

            (void)snprintf(id, sizeof(id), "r%d-%d", r, i);
            if (torii_certdb_get(ts.st, id, 0, &e, &eb) == TORII_OK) {
                (void)json_object_set_new(*stored, id, json_string(e.text));
                torii_certdb_entry_clear(&e);
            }
        }
    }
    assert_int_equal(teststore_remove(&ts, NULL, 0), 0);
    return raw;
}

/* The status of each response line is what its input line calls for. */
static void expect_statuses(const char *raw)
{
    const size_t per = sizeof(bulk_status) / sizeof(bulk_status[0]);
    const char *p = raw;
    size_t n = 0;

    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        json_t *line = NULL;

        assert_non_null(nl);
        line = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(line);
        if (json_integer_value(json_object_get(line, "status")) != bulk_status[n % per]) {
            fail_msg("line %zu: %.*s (want status %d)", n + 1, (int)(nl - p), p,
                     bulk_status[n % per]);
        }
        json_decref(line);
        p = nl + 1;
        n++;
    }
    assert_int_equal(n, per * BULK_ROUNDS);
}

static void test_bulk_pool_answers_as_one_thread(void **state)
{
    char *body = bulk_body();
    json_t *stored1 = NULL;
    json_t *stored4 = NULL;
    char *raw1 = bulk_run(body, 1, &stored1);
    char *raw4 = bulk_run(body, 4, &stored4);
    json_t *e = NULL;

    (void)state;
    expect_statuses(raw1);
    assert_string_equal(raw1, raw4);
    /* 7 entities created per round, stored byte for byte alike */
    assert_int_equal(json_object_size(stored1), 7 * BULK_ROUNDS);
    assert_true(json_equal(stored1, stored4));
    /* the matching keys made valid certificates (the key checks found them matching) */
    e = json_loads(json_string_value(json_object_get(stored1, "r3-5")), 0, NULL);
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_true(json_is_true(json_object_get(e, "selfSigned")));
    json_decref(e);
    e = json_loads(json_string_value(json_object_get(stored1, "r3-0")), 0, NULL);
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_true(json_is_false(json_object_get(e, "selfSigned")));
    json_decref(e);
    e = json_loads(json_string_value(json_object_get(stored1, "r3-9")), 0, NULL);
    assert_true(json_is_false(json_object_get(e, "valid"))); /* no key */
    json_decref(e);
    json_decref(stored1);
    json_decref(stored4);
    free(raw1);
    free(raw4);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_pool_answers_as_one_thread),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
