/* test_lifecycle.c - the lifecycle module: the due-ness rule and expiry states, retry
 * backoff, the alert envelope and its redaction, the lifecycle side of re-issuing (the X.509
 * side is tested in test_pki_issue.c), renewal in one store transaction with its
 * [UNTIL EXPIRATION] copy, writes racing an API write (compare-and-swap: retried once or
 * skipped, never overwriting), and a file exporter end to end. */
#include <sys/stat.h>

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lifecycle_int.h" /* module-internal: the race seam */
#include "testpki.h"
#include "teststore.h"
#include "torii/alert.h"
#include "torii/clock.h"
#include "torii/conf.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"
#include "torii/store.h"

#define DAY_MS ((int64_t)86400000)

static const struct torii_renew_policy pol20 = {20, 0};

/* ---- due-ness and states ---- */

static json_t *entity_dates(int64_t from, int64_t to, const char *extra)
{
    json_t *e = json_pack("{s:s, s:I, s:I, s:b}", "id", "x", "from", (json_int_t)from, "to",
                          (json_int_t)to, "autoRenew", 1);
    if (extra != NULL) {
        json_t *x = json_loads(extra, 0, NULL);
        assert_non_null(x);
        assert_int_equal(json_object_update(e, x), 0);
        json_decref(x);
    }
    return e;
}

static void test_renew_due_last_20_percent_is_due(void **state)
{
    json_t *e = entity_dates(0, 100 * DAY_MS, NULL);

    (void)state;
    /* 19 % left -> due; exactly 20 % left -> not yet (strictly below); 21 % -> not due. */
    assert_int_equal(torii_renew_due_of(e, 81 * DAY_MS, &pol20), TORII_RENEW_DUE);
    assert_int_equal(torii_renew_due_of(e, 80 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
    assert_int_equal(torii_renew_due_of(e, 79 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
    /* Expired certificates are never auto-renewed. */
    assert_int_equal(torii_renew_due_of(e, 100 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
    assert_int_equal(torii_renew_due_of(e, 200 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
    json_decref(e);
}

static void test_renew_due_flags_exclude(void **state)
{
    static const char *const not_due[] = {
        "{\"autoRenew\": false}",
        "{\"revoked\": true}",
        "{\"metadata\": {\"untilExpiration\": \"true\"}}",
        "{\"from\": \"0\"}",
        "{\"to\": null}",
    };
    json_t *e;

    (void)state;
    for (size_t i = 0; i < sizeof(not_due) / sizeof(not_due[0]); i++) {
        e = entity_dates(0, 100 * DAY_MS, not_due[i]);
        assert_int_equal(torii_renew_due_of(e, 90 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
        json_decref(e);
    }
    e = entity_dates(0, 100 * DAY_MS, "{\"letsEncrypt\": true}");
    assert_int_equal(torii_renew_due_of(e, 90 * DAY_MS, &pol20), TORII_RENEW_DUE_ACME);
    json_decref(e);
    assert_int_equal(torii_renew_due_of(NULL, 0, &pol20), TORII_RENEW_NOT_DUE);
    e = json_array();
    assert_int_equal(torii_renew_due_of(e, 0, &pol20), TORII_RENEW_NOT_DUE);
    json_decref(e);
}

static void test_renew_threshold_is_configurable_and_overflow_safe(void **state)
{
    const struct torii_renew_policy pol50 = {50, 0};
    json_t *e = entity_dates(0, 100 * DAY_MS, NULL);

    (void)state;
    assert_int_equal(torii_renew_due_of(e, 51 * DAY_MS, &pol50), TORII_RENEW_DUE);
    assert_int_equal(torii_renew_due_of(e, 51 * DAY_MS, &pol20), TORII_RENEW_NOT_DUE);
    json_decref(e);
    /* Huge windows do not overflow the integer math. */
    assert_int_equal(torii_renew_in_last_pct(INT64_MIN / 2, INT64_MAX / 2, INT64_MAX / 2 - 1, 20),
                     1);
    assert_int_equal(torii_renew_in_last_pct(INT64_MIN / 2, INT64_MAX / 2, 0, 20), 0);
    /* An empty window is "last %" until it ends. */
    assert_int_equal(torii_renew_in_last_pct(10, 10, 5, 20), 1);
}

static void test_renew_state_of_each_state(void **state)
{
    const struct torii_renew_policy days = {20, 15 * DAY_MS};

    (void)state;
    assert_int_equal(torii_renew_state_of(0, 100 * DAY_MS, 10 * DAY_MS, &pol20),
                     TORII_RENEW_STATE_OK);
    assert_int_equal(torii_renew_state_of(0, 100 * DAY_MS, 81 * DAY_MS, &pol20),
                     TORII_RENEW_STATE_ALMOST_EXPIRED);
    assert_int_equal(torii_renew_state_of(0, 100 * DAY_MS, 100 * DAY_MS, &pol20),
                     TORII_RENEW_STATE_EXPIRED);
    assert_int_equal(torii_renew_state_of(10 * DAY_MS, 100 * DAY_MS, 0, &pol20),
                     TORII_RENEW_STATE_NOT_YET_VALID);
    /* Whichever comes first: 20 % of 10 years is 2 years, 15 days comes much later. */
    assert_int_equal(torii_renew_state_of(0, 3650 * DAY_MS, 3000 * DAY_MS, &days),
                     TORII_RENEW_STATE_ALMOST_EXPIRED);
    /* For a 30-day certificate, 15 days before the end comes before its last 20 % (6 d). */
    assert_int_equal(torii_renew_state_of(0, 30 * DAY_MS, 16 * DAY_MS, &days),
                     TORII_RENEW_STATE_ALMOST_EXPIRED);
    assert_int_equal(torii_renew_state_of(0, 30 * DAY_MS, 14 * DAY_MS, &days),
                     TORII_RENEW_STATE_OK);
}

static void test_renew_backoff_doubles_and_caps(void **state)
{
    (void)state;
    assert_int_equal(torii_renew_backoff_ms(0, 1000, 60000), 0);
    assert_int_equal(torii_renew_backoff_ms(1, 1000, 60000), 1000);
    assert_int_equal(torii_renew_backoff_ms(2, 1000, 60000), 2000);
    assert_int_equal(torii_renew_backoff_ms(6, 1000, 60000), 32000);
    assert_int_equal(torii_renew_backoff_ms(7, 1000, 60000), 60000);
    assert_int_equal(torii_renew_backoff_ms(4000000000u, 1000, 60000), 60000);
    assert_int_equal(torii_renew_backoff_ms(80, INT64_MAX / 4, INT64_MAX), INT64_MAX);
    assert_int_equal(torii_renew_backoff_ms(3, 5000, 1000), 1000); /* min above max */
    assert_int_equal(torii_renew_backoff_ms(3, 0, 1000), 0);
}

/* Item 4: interval 2 s with the default initial delay (60) and jitter 60: every run, the first
 * included, comes within one and a half periods, whatever the random draw. */
static void test_renew_delays_bounded_by_the_interval(void **state)
{
    static const uint32_t draws[] = {0, 1, 999, 1000, 59999, 60000, 123456789u, UINT32_MAX};

    (void)state;
    assert_true(torii_renew__first_delay_ms(2, 60) <= 2000);
    assert_int_equal(torii_renew__first_delay_ms(2, 60), 2000);
    assert_int_equal(torii_renew__first_delay_ms(3600, 60), 60000);
    assert_int_equal(torii_renew__first_delay_ms(3600, 0), 0);
    for (size_t i = 0; i < sizeof(draws) / sizeof(draws[0]); i++) {
        int64_t d = torii_renew__period_delay_ms(2, 60, draws[i]);
        assert_true(d >= 2000 && d < 3000);
        d = torii_renew__period_delay_ms(3600, 60, draws[i]);
        assert_true(d >= 3600000 && d < 3660000);
        assert_int_equal(torii_renew__period_delay_ms(5, 0, draws[i]), 5000);
    }
    assert_int_equal(torii_renew__period_delay_ms(1, 60, UINT32_MAX), 1000 + UINT32_MAX % 500);
}

/* ---- alerts ---- */

static void test_alert_type_names_round_trip_and_match_config(void **state)
{
    static const char *const conf_names[] = {TORII_CONF_ALERT_TYPES};
    enum torii_alert_type t;

    (void)state;
    assert_int_equal(sizeof(conf_names) / sizeof(conf_names[0]), TORII_ALERT_TYPES);
    for (unsigned i = 0; i < TORII_ALERT_TYPES; i++) {
        assert_string_equal(torii_alert_type_name((enum torii_alert_type)i), conf_names[i]);
        assert_int_equal(torii_alert_type_parse(conf_names[i], &t), TORII_OK);
        assert_int_equal(t, i);
    }
    assert_null(torii_alert_type_name(TORII_ALERT_TYPES));
    assert_int_equal(torii_alert_type_parse("certExpiredAlert", &t), TORII_EINVAL);
    assert_int_equal(torii_alert_type_parse(NULL, &t), TORII_EINVAL);
}

static void test_alert_envelope_is_redacted(void **state)
{
    json_t *ent =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "id", "c1", "domain", "a.test", "privateKey",
                  "-----BEGIN PRIVATE KEY-----\nxx\n", "password", "pw", "metadata", "k", "v");
    json_t *extra = json_pack("{s:s, s:s, s:s, s:s}", "error", "boom", "alert", "Forged",
                              "privateKey", "leak", "@type", "Forged");
    json_t *env = torii_alert_envelope(TORII_ALERT_EXPIRED, ent, extra, 1234);
    char *text;

    (void)state;
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "@type")), "AlertEvent");
    assert_string_equal(json_string_value(json_object_get(env, "alert")), "CertExpiredAlert");
    assert_int_equal(json_integer_value(json_object_get(env, "@timestamp")), 1234);
    assert_int_equal(strlen(json_string_value(json_object_get(env, "@id"))), 36);
    assert_string_equal(json_string_value(json_object_get(env, "error")), "boom");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(env, "certificate"), "domain")),
        "a.test");
    text = json_dumps(env, JSON_COMPACT);
    assert_null(strstr(text, "privateKey"));
    assert_null(strstr(text, "PRIVATE KEY"));
    assert_null(strstr(text, "password"));
    assert_null(strstr(text, "leak"));
    assert_null(strstr(text, "Forged"));
    /* The caller's entity is untouched. */
    assert_non_null(json_object_get(ent, "privateKey"));
    free(text);
    json_decref(env);
    env = torii_alert_envelope(TORII_ALERT_DELETED, NULL, NULL, 1);
    assert_true(json_is_null(json_object_get(env, "certificate")));
    json_decref(env);
    assert_null(torii_alert_envelope(TORII_ALERT_TYPES, ent, NULL, 1));
    json_decref(extra);
    json_decref(ent);
}

/* ---- re-issuing ---- */

struct pki_fixture {
    struct testpki_ca_leaf pk; /* CA "ca" and leaf "leaf" (10 days, 1 left, autoRenew) */
    struct teststore ts;       /* opened by the tests that need it */
};

static int pki_setup(void **state)
{
    struct pki_fixture *f = torii_xcalloc(1, sizeof(*f));

    if (testpki_ca_leaf_make(&f->pk) != 0) {
        free(f);
        return -1;
    }
    assert_int_equal(json_object_set_new(f->pk.leaf_ent, "autoRenew", json_true()), 0);
    *state = f;
    return 0;
}

static int pki_teardown(void **state)
{
    struct pki_fixture *f = *state;

    (void)teststore_remove(&f->ts, NULL, 0);
    testpki_ca_leaf_clear(&f->pk);
    free(f);
    return 0;
}

/* The leaf certificate of an entity's chain (caller frees). */
static X509 *entity_leaf(const json_t *e)
{
    X509 *x = testpki_entity_leaf(e);

    assert_non_null(x);
    return x;
}

/* The X.509 side of re-issuing is torii_pki_cert_renew's (tests in test_pki_issue.c); here
 * only what the lifecycle adds: the expiry flags go, renewedAt comes, and errors pass through. */
static void test_renew_reissue_adds_lifecycle_metadata(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    int64_t now = torii_clock_now_ms();
    json_t *in = json_deep_copy(f->pk.leaf_ent);
    json_t *md =
        json_pack("{s:s, s:s, s:s}", "almostExpired", "true", "expired", "true", "keep", "me");
    json_t *out = NULL;
    char ms[32];
    X509 *nc;

    assert_int_equal(json_object_set_new(in, "metadata", md), 0);
    assert_int_equal(torii_renew_reissue(in, f->pk.ca_ent, NULL, now, &out, &eb), TORII_OK);
    md = json_object_get(out, "metadata");
    assert_null(json_object_get(md, "almostExpired"));
    assert_null(json_object_get(md, "expired"));
    assert_string_equal(json_string_value(json_object_get(md, "keep")), "me");
    (void)snprintf(ms, sizeof(ms), "%lld", (long long)now);
    assert_string_equal(json_string_value(json_object_get(md, "renewedAt")), ms);
    assert_true(json_is_true(json_object_get(out, "valid")));
    nc = entity_leaf(out);
    assert_int_equal(X509_verify(nc, f->pk.ca_key), 1);
    X509_free(nc);
    json_decref(out);
    out = NULL;
    /* Refusals come from the PKI module. */
    assert_int_equal(torii_renew_reissue(in, NULL, NULL, now, &out, &eb), TORII_EINVAL);
    assert_null(out);
    json_decref(in);
}

static void store_put_entity(struct torii_store *st, const json_t *e)
{
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    char *json = json_dumps(e, JSON_COMPACT);
    const char *id = json_string_value(json_object_get(e, "id"));
    struct torii_store_rec rec;

    assert_int_equal(torii_certrec_build(e, &aux, &aux_len, NULL), TORII_OK);
    rec = (struct torii_store_rec){id, strlen(id), json, strlen(json), aux, aux_len};
    assert_int_equal(torii_store_put(st, TORII_STORE_CERTS, &rec, TORII_STORE_PUT, NULL), TORII_OK);
    free(json);
    torii_secure_free(aux, aux_len);
}

/* The fixture's store, holding the CA and the leaf. */
static void fixture_store_open(struct pki_fixture *f)
{
    assert_int_equal(teststore_open(&f->ts, "ut-life", 0, NULL), TORII_OK);
    store_put_entity(f->ts.st, f->pk.ca_ent);
    store_put_entity(f->ts.st, f->pk.leaf_ent);
}

struct copy_find {
    int n;
    char id[80];
};

static int find_copy_cb(const struct torii_store_rec *rec, void *arg)
{
    struct copy_find *c = arg;
    json_t *e = json_loadb(rec->json, rec->json_len, 0, NULL);

    if (torii_renew_is_copy(e)) {
        c->n++;
        (void)snprintf(c->id, sizeof(c->id), "%.*s", (int)rec->id_len, rec->id);
    }
    json_decref(e);
    return TORII_OK;
}

static void test_renew_one_stores_renewal_and_copy(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct copy_find cf = {0};
    json_t *out = NULL;
    json_t *copy = NULL;
    json_t *le;
    char *text;
    char name[128];
    char serial[TORII_PKI_SERIAL_HEX_MAX];
    char key[128];
    size_t len;

    fixture_store_open(f);
    assert_int_equal(torii_renew_one(f->ts.st, NULL, "leaf", torii_clock_now_ms(), &out, &eb),
                     TORII_OK);
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, find_copy_cb, &cf), TORII_OK);
    assert_int_equal(cf.n, 1);
    assert_int_equal(strlen(cf.id), TORII_RENEW_COPY_ID_LEN);
    assert_int_equal(torii_store_get(f->ts.st, TORII_STORE_CERTS, cf.id, &text, &len, NULL, NULL),
                     TORII_OK);
    copy = json_loads(text, 0, NULL);
    free(text);
    (void)snprintf(name, sizeof(name), "[UNTIL EXPIRATION] %s",
                   json_string_value(json_object_get(f->pk.leaf_ent, "name")));
    assert_string_equal(json_string_value(json_object_get(copy, "name")), name);
    assert_string_equal(json_string_value(json_object_get(copy, "chain")),
                        json_string_value(json_object_get(f->pk.leaf_ent, "chain")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(copy, "metadata"), "nextCertificate")),
        "leaf");
    assert_true(json_is_false(json_object_get(copy, "autoRenew")));
    assert_int_equal(torii_store_get(f->ts.st, TORII_STORE_CERTS, "leaf", &text, &len, NULL, NULL),
                     TORII_OK);
    le = json_loads(text, 0, NULL);
    free(text);
    assert_string_equal(json_string_value(json_object_get(le, "chain")),
                        json_string_value(json_object_get(out, "chain")));
    json_decref(le);
    /* The serial index follows: old serial -> the copy, new serial -> the id. */
    assert_int_equal(torii_pki_cert_serial_hex(f->pk.leaf_ent, serial, sizeof(serial), NULL),
                     TORII_OK);
    (void)snprintf(key, sizeof(key), "ca:%s", serial);
    assert_int_equal(torii_store_get(f->ts.st, TORII_STORE_SERIALS, key, &text, &len, NULL, NULL),
                     TORII_OK);
    assert_string_equal(text, cf.id);
    free(text);
    assert_int_equal(torii_pki_cert_serial_hex(out, serial, sizeof(serial), NULL), TORII_OK);
    (void)snprintf(key, sizeof(key), "ca:%s", serial);
    assert_int_equal(torii_store_get(f->ts.st, TORII_STORE_SERIALS, key, &text, &len, NULL, NULL),
                     TORII_OK);
    assert_string_equal(text, "leaf");
    free(text);
    /* Refusals. */
    assert_int_equal(torii_renew_one(f->ts.st, NULL, "nope", 0, NULL, &eb), TORII_ENOTFOUND);
    assert_int_equal(torii_renew_one(f->ts.st, NULL, cf.id, 0, NULL, &eb), TORII_EINVAL);
    assert_int_equal(json_object_set_new(f->pk.leaf_ent, "letsEncrypt", json_true()), 0);
    store_put_entity(f->ts.st, f->pk.leaf_ent);
    assert_int_equal(torii_renew_one(f->ts.st, NULL, "leaf", 0, NULL, &eb), TORII_EUNSUPPORTED);
    assert_int_equal(json_object_set_new(f->pk.leaf_ent, "letsEncrypt", json_false()), 0);
    assert_int_equal(json_object_set_new(f->pk.leaf_ent, "caRef", json_string("missing-ca")), 0);
    store_put_entity(f->ts.st, f->pk.leaf_ent);
    assert_int_equal(torii_renew_one(f->ts.st, NULL, "leaf", 0, NULL, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "missing-ca"));
    json_decref(copy);
    json_decref(out);
}

/* ---- read-modify-write races with the admin API ---- */

static json_t *stored_entity(struct torii_store *st, const char *id)
{
    char *text = NULL;
    size_t len = 0;
    json_t *e;

    assert_int_equal(torii_store_get(st, TORII_STORE_CERTS, id, &text, &len, NULL, NULL), TORII_OK);
    e = json_loadb(text, len, 0, NULL);
    torii_secure_free(text, len);
    assert_non_null(e);
    return e;
}

static json_t *with_field(const json_t *e, const char *k, json_t *v_owned)
{
    json_t *c = json_deep_copy(e);

    assert_int_equal(json_object_set_new(c, k, v_owned), 0);
    return c;
}

/* Plays the admin API: a PUT of api[attempt] lands between the lifecycle's read and write. */
struct race {
    struct torii_store *st;
    json_t *api[2];
    unsigned calls;
};

static void race_between(const char *id, unsigned attempt, void *arg)
{
    struct race *r = arg;

    assert_string_equal(id, "leaf");
    assert_int_equal(attempt, r->calls);
    r->calls++;
    if (attempt < 2 && r->api[attempt] != NULL) {
        store_put_entity(r->st, r->api[attempt]);
    }
}

static void race_clear(struct race *r)
{
    json_decref(r->api[0]);
    json_decref(r->api[1]);
    memset(r, 0, sizeof(*r));
}

static void assert_field(const json_t *e, const char *k, const char *want)
{
    assert_string_equal(json_string_value(json_object_get(e, k)), want);
}

static void test_renew_one_conflict_starts_again_and_keeps_the_api_write(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct race r = {0};
    struct torii_renew__seam seam = {race_between, &r};
    struct copy_find cf = {0};
    int64_t now = torii_clock_now_ms();
    json_t *out = NULL;
    json_t *e;

    fixture_store_open(f);
    r.st = f->ts.st;
    r.api[0] = with_field(f->pk.leaf_ent, "description", json_string("edited by the API"));
    assert_int_equal(torii_renew__one(f->ts.st, NULL, "leaf", now, &pol20, &seam, &out, &eb),
                     TORII_OK);
    assert_int_equal(r.calls, 2);
    /* The renewal started again from the API's version: its edit survives in both. */
    e = stored_entity(f->ts.st, "leaf");
    assert_field(e, "description", "edited by the API");
    assert_field(e, "chain", json_string_value(json_object_get(out, "chain")));
    assert_true(json_integer_value(json_object_get(e, "to")) > now + 9 * DAY_MS);
    json_decref(e);
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, find_copy_cb, &cf), TORII_OK);
    assert_int_equal(cf.n, 1); /* the failed attempt left no copy behind */
    e = stored_entity(f->ts.st, cf.id);
    assert_field(e, "description", "edited by the API");
    assert_field(e, "chain", json_string_value(json_object_get(f->pk.leaf_ent, "chain")));
    json_decref(e);
    json_decref(out);
    race_clear(&r);
}

static void test_renew_one_conflict_no_longer_due_is_skipped(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct race r = {0};
    struct torii_renew__seam seam = {race_between, &r};
    struct copy_find cf = {0};
    json_t *out = NULL;
    json_t *e;
    size_t n = 0;

    fixture_store_open(f);
    r.st = f->ts.st;
    r.api[0] = with_field(f->pk.leaf_ent, "autoRenew", json_false());
    assert_int_equal(
        torii_renew__one(f->ts.st, NULL, "leaf", torii_clock_now_ms(), &pol20, &seam, &out, &eb),
        TORII_ECONFLICT);
    assert_non_null(strstr(eb.msg, "no longer due"));
    assert_int_equal(r.calls, 1); /* re-read, judged not due: not re-issued */
    assert_null(out);
    e = stored_entity(f->ts.st, "leaf");
    assert_true(json_equal(e, r.api[0]));
    json_decref(e);
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, find_copy_cb, &cf), TORII_OK);
    assert_int_equal(cf.n, 0);
    assert_int_equal(torii_store_count(f->ts.st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    race_clear(&r);
}

static void test_renew_one_conflict_twice_changes_nothing(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct race r = {0};
    struct torii_renew__seam seam = {race_between, &r};
    struct copy_find cf = {0};
    json_t *out = NULL;
    json_t *e;
    size_t n = 0;

    fixture_store_open(f);
    r.st = f->ts.st;
    r.api[0] = with_field(f->pk.leaf_ent, "description", json_string("one"));
    r.api[1] = with_field(f->pk.leaf_ent, "description", json_string("two"));
    /* An explicit renewal (no policy) is retried once, then gives up. */
    assert_int_equal(
        torii_renew__one(f->ts.st, NULL, "leaf", torii_clock_now_ms(), NULL, &seam, &out, &eb),
        TORII_ECONFLICT);
    assert_int_equal(r.calls, 2);
    assert_null(out);
    e = stored_entity(f->ts.st, "leaf");
    assert_true(json_equal(e, r.api[1]));
    json_decref(e);
    assert_int_equal(torii_store_foreach(f->ts.st, TORII_STORE_CERTS, find_copy_cb, &cf), TORII_OK);
    assert_int_equal(cf.n, 0);
    assert_int_equal(torii_store_count(f->ts.st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    race_clear(&r);
}

static void test_renew_flag_conflict_judges_what_was_written(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct race r = {0};
    struct torii_renew__seam seam = {race_between, &r};
    int64_t now = torii_clock_now_ms();
    json_t *fresh = NULL;
    json_t *e;
    int written = 0;

    /* The stored leaf has 1 day of 10 left: almost expired. The API replaces it with a fresh
     * certificate in the window: the flag must not land on the fresh one. */
    fixture_store_open(f);
    assert_int_equal(torii_renew_reissue(f->pk.leaf_ent, f->pk.ca_ent, NULL, now, &fresh, &eb),
                     TORII_OK);
    r.st = f->ts.st;
    r.api[0] = json_incref(fresh);
    assert_int_equal(torii_renew__flag(f->ts.st, NULL, "leaf", now, &pol20, &seam, &written, &eb),
                     TORII_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(written, -1);
    e = stored_entity(f->ts.st, "leaf");
    assert_true(json_equal(e, fresh));
    assert_null(json_object_get(json_object_get(e, "metadata"), "almostExpired"));
    json_decref(e);
    race_clear(&r);

    /* Without interference the flag is stored, once. */
    store_put_entity(f->ts.st, f->pk.leaf_ent);
    assert_int_equal(torii_renew__flag(f->ts.st, NULL, "leaf", now, &pol20, NULL, &written, &eb),
                     TORII_OK);
    assert_int_equal(written, TORII_RENEW_STATE_ALMOST_EXPIRED);
    e = stored_entity(f->ts.st, "leaf");
    assert_field(json_object_get(e, "metadata"), "almostExpired", "true");
    json_decref(e);
    assert_int_equal(torii_renew__flag(f->ts.st, NULL, "leaf", now, &pol20, NULL, &written, &eb),
                     TORII_OK);
    assert_int_equal(written, -1);

    /* Two conflicting writes in a row: give up, the API's last write stands. */
    store_put_entity(f->ts.st, f->pk.leaf_ent);
    r.st = f->ts.st;
    r.api[0] = with_field(f->pk.leaf_ent, "description", json_string("x"));
    r.api[1] = with_field(f->pk.leaf_ent, "description", json_string("y"));
    assert_int_equal(torii_renew__flag(f->ts.st, NULL, "leaf", now, &pol20, &seam, &written, &eb),
                     TORII_ECONFLICT);
    assert_int_equal(r.calls, 2);
    assert_int_equal(written, -1);
    e = stored_entity(f->ts.st, "leaf");
    assert_true(json_equal(e, r.api[1]));
    json_decref(e);
    race_clear(&r);
    json_decref(fresh);
}

/* ---- exporters ---- */

static void test_file_exporter_writes_filtered_redacted_lines(void **state)
{
    struct pki_fixture *f = *state;
    struct torii_config cfg;
    struct torii_conf_exporter ex;
    struct torii_alerts *al = NULL;
    char path[] = "/tmp/torii-ut-alerts.XXXXXX";
    char tname[] = "CertRenewalAlert";
    char ename[] = "f";
    char *types[] = {tname};
    char line[65536];
    FILE *fp;
    int fd = mkstemp(path);
    int n = 0;

    assert_true(fd >= 0);
    (void)close(fd);
    memset(&cfg, 0, sizeof(cfg));
    memset(&ex, 0, sizeof(ex));
    ex.type = TORII_CONF_EXPORTER_FILE;
    ex.name = ename;
    ex.path = path;
    ex.alerts = types;
    ex.n_alerts = 1;
    ex.queue_size = 4;
    cfg.exporter_list = &ex;
    cfg.n_exporters = 1;
    assert_int_equal(torii_alerts_new(&cfg, NULL, &al, NULL), TORII_OK);
    assert_true(torii_alerts_wanted(al, TORII_ALERT_RENEWAL));
    assert_false(torii_alerts_wanted(al, TORII_ALERT_EXPIRED));
    torii_alerts_raise(al, TORII_ALERT_RENEWAL, f->pk.leaf_ent, NULL);
    torii_alerts_raise(al, TORII_ALERT_EXPIRED, f->pk.leaf_ent, NULL); /* filtered out */
    torii_alerts_free(al);                                             /* drains the queue */
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        json_t *a = json_loads(line, 0, NULL);
        assert_non_null(a);
        assert_string_equal(json_string_value(json_object_get(a, "alert")), "CertRenewalAlert");
        assert_null(strstr(line, "PRIVATE KEY"));
        json_decref(a);
        n++;
    }
    (void)fclose(fp);
    (void)unlink(path);
    assert_int_equal(n, 1);
}

static void test_alerts_without_exporters_want_nothing(void **state)
{
    struct torii_config cfg;
    struct torii_alerts *al = NULL;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(torii_alerts_new(&cfg, NULL, &al, NULL), TORII_OK);
    for (unsigned t = 0; t < TORII_ALERT_TYPES; t++) {
        assert_false(torii_alerts_wanted(al, (enum torii_alert_type)t));
    }
    torii_alerts_raise(al, TORII_ALERT_EXPIRED, NULL, NULL);
    torii_alerts_raise(NULL, TORII_ALERT_EXPIRED, NULL, NULL);
    torii_alerts_free(al);
    torii_alerts_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renew_due_last_20_percent_is_due),
        cmocka_unit_test(test_renew_due_flags_exclude),
        cmocka_unit_test(test_renew_threshold_is_configurable_and_overflow_safe),
        cmocka_unit_test(test_renew_state_of_each_state),
        cmocka_unit_test(test_renew_backoff_doubles_and_caps),
        cmocka_unit_test(test_renew_delays_bounded_by_the_interval),
        cmocka_unit_test(test_alert_type_names_round_trip_and_match_config),
        cmocka_unit_test(test_alert_envelope_is_redacted),
        cmocka_unit_test_setup_teardown(test_renew_reissue_adds_lifecycle_metadata, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(test_renew_one_stores_renewal_and_copy, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(
            test_renew_one_conflict_starts_again_and_keeps_the_api_write, pki_setup, pki_teardown),
        cmocka_unit_test_setup_teardown(test_renew_one_conflict_no_longer_due_is_skipped, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(test_renew_one_conflict_twice_changes_nothing, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(test_renew_flag_conflict_judges_what_was_written, pki_setup,
                                        pki_teardown),
        cmocka_unit_test_setup_teardown(test_file_exporter_writes_filtered_redacted_lines,
                                        pki_setup, pki_teardown),
        cmocka_unit_test(test_alerts_without_exporters_want_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
