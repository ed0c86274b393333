/* test_tls_table_bulk.c - the first load of an empty table (table.h: torii_table_bulk_*):
 * the table it publishes answers every select, get and issuer+serial query exactly as the
 * same certificates put one by one with torii_table_update (candidates of a shared name in
 * the order added, so the first of equals wins in both); a repeated id keeps the last one; a
 * record that does not decode is left out with an error; nothing shows before end; begin on a
 * table that is not empty is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "testpki.h"
#include "testtable.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/table.h"

#define N_RECS   24 /* distinct certificates (names) */
#define N_COPIES 40 /* ids per certificate: 960 entries, many per name and per serial */

struct rec {
    unsigned char *der;
    size_t len;
    X509 *leaf;
    char name[32];
};

static struct rec g_recs[N_RECS];

static int no_load(void *arg, const char *id, torii_table_use_fn use, void *use_arg,
                   struct torii_errbuf *eb)
{
    (void)arg;
    (void)id;
    (void)use;
    (void)use_arg;
    return torii_errf(eb, TORII_ENOTFOUND, "no source in this test");
}

/* Record i: names r<i>.bulk.test and *.w<i % 3>.bulk.test, not after now + 10 + i days. */
static void make_rec(size_t i, EVP_PKEY *key)
{
    char wild[32];
    const char *dns[2] = {g_recs[i].name, wild};
    struct testpki_opts o = {.key_type = EVP_PKEY_EC, .dns = dns, .n_dns = 2};
    EVP_PKEY *k = key;
    struct torii_errbuf eb = {{0}};

    (void)snprintf(g_recs[i].name, sizeof(g_recs[i].name), "r%zu.bulk.test", i);
    (void)snprintf(wild, sizeof(wild), "*.w%zu.bulk.test", i % 3);
    o.not_before_off_s = -3600;
    o.not_after_off_s = (int64_t)(10 + i) * 86400;
    EVP_PKEY_up_ref(k);
    assert_int_equal(testpki_make(&o, &g_recs[i].leaf, &k), 0);
    char *cpem = testpki_cert_pem(g_recs[i].leaf);
    char *kpem = testpki_key_pem(k, NULL);
    json_t *e = json_pack("{s:s, s:s}", "chain", cpem, "privateKey", kpem);
    assert_non_null(e);
    assert_int_equal(torii_certrec_build(e, &g_recs[i].der, &g_recs[i].len, &eb), TORII_OK);
    json_decref(e);
    free(cpem);
    free(kpem);
    EVP_PKEY_free(k);
}

static struct torii_table *table_new(void)
{
    struct torii_table_src ts = {no_load, NULL};
    struct torii_table *t = NULL;

    assert_int_equal(torii_table_new_src(&ts, &t), TORII_OK);
    return t;
}

/* Entry j of the load: id "b-<j>", record j % N_RECS (copies of a record interleaved). */
static void entry(size_t j, char *id, size_t cap, const struct rec **r)
{
    (void)snprintf(id, cap, "b-%zu", j);
    *r = &g_recs[j % N_RECS];
}

/* The id selected for name, or "" when none. */
static void sel_id(struct torii_table *t, const char *name, char *out, size_t cap)
{
    struct torii_tls_cert *c = testtable_select(t, name);

    out[0] = '\0';
    if (c != NULL) {
        (void)snprintf(out, cap, "%s", torii_tls_cert_id(c));
        torii_tls_cert_unref(c);
    }
}

/* a and b answer alike: every name, every id, every serial. */
static void assert_same(struct torii_table *a, struct torii_table *b)
{
    char ia[64];
    char ib[64];

    assert_int_equal(torii_table_size(a), torii_table_size(b));
    for (size_t i = 0; i < N_RECS; i++) {
        char host[48];
        sel_id(a, g_recs[i].name, ia, sizeof(ia));
        sel_id(b, g_recs[i].name, ib, sizeof(ib));
        assert_string_not_equal(ia, "");
        assert_string_equal(ia, ib);
        (void)snprintf(host, sizeof(host), "x.w%zu.bulk.test", i % 3);
        sel_id(a, host, ia, sizeof(ia));
        sel_id(b, host, ib, sizeof(ib));
        assert_string_equal(ia, ib);
        assert_int_equal(torii_table_issuer_serial(a, g_recs[i].leaf, NULL),
                         torii_table_issuer_serial(b, g_recs[i].leaf, NULL));
    }
    for (size_t j = 0; j < N_RECS * N_COPIES; j++) {
        struct torii_tls_cert *ca = NULL;
        struct torii_tls_cert *cb = NULL;
        (void)snprintf(ia, sizeof(ia), "b-%zu", j);
        assert_int_equal(torii_table_get(a, ia, &ca), torii_table_get(b, ia, &cb));
        torii_tls_cert_unref(ca);
        torii_tls_cert_unref(cb);
    }
}

static void load_both(struct torii_table **a, struct torii_table **b)
{
    struct torii_table_bulk *bulk = NULL;
    struct torii_errbuf eb = {{0}};
    char id[32];
    const struct rec *r;

    *a = table_new();
    *b = table_new();
    assert_int_equal(torii_table_bulk_begin(*a, 100, &bulk), TORII_OK); /* hint below: grows */
    for (size_t j = 0; j < N_RECS * N_COPIES; j++) {
        entry(j, id, sizeof(id), &r);
        assert_int_equal(torii_table_bulk_add(bulk, id, r->der, r->len, &eb), TORII_OK);
        assert_int_equal(torii_table_update(*b, id, r->der, r->len, NULL, &eb), TORII_OK);
    }
    assert_int_equal(torii_table_bulk_end(bulk), N_RECS * N_COPIES);
}

static void test_bulk_same_as_updates(void **state)
{
    struct torii_table *a;
    struct torii_table *b;
    char id[64];

    (void)state;
    load_both(&a, &b);
    assert_same(a, b);
    sel_id(a, g_recs[0].name, id, sizeof(id));
    assert_string_equal(id, "b-0"); /* the first added of N_COPIES equals */
    assert_int_equal(torii_table_issuer_serial(a, g_recs[5].leaf, NULL), N_COPIES);
    torii_table_free(a);
    torii_table_free(b);
}

/* After a bulk load the table takes updates and deletes like any other. */
static void test_bulk_then_updates(void **state)
{
    struct torii_table *a;
    struct torii_table *b;
    struct torii_errbuf eb = {{0}};
    char id[32];

    (void)state;
    load_both(&a, &b);
    for (size_t j = 0; j < N_RECS * N_COPIES; j += 7) {
        struct torii_table *both[2] = {a, b};
        (void)snprintf(id, sizeof(id), "b-%zu", j);
        for (size_t k = 0; k < 2; k++) {
            const struct rec *r = &g_recs[(j + 1) % N_RECS];
            assert_int_equal(j % 2 == 0
                                 ? torii_table_update(both[k], id, NULL, 0, NULL, &eb)
                                 : torii_table_update(both[k], id, r->der, r->len, NULL, &eb),
                             TORII_OK);
        }
    }
    assert_same(a, b);
    sel_id(a, g_recs[0].name, id, sizeof(id));
    assert_string_equal(id, "b-24"); /* b-0 is gone */
    torii_table_free(a);
    torii_table_free(b);
}

static void test_bulk_repeated_id_last_wins(void **state)
{
    struct torii_table *t = table_new();
    struct torii_table_bulk *bulk = NULL;
    struct torii_errbuf eb = {{0}};
    char id[64];

    (void)state;
    assert_int_equal(torii_table_bulk_begin(t, 0, &bulk), TORII_OK);
    assert_int_equal(torii_table_bulk_add(bulk, "x", g_recs[0].der, g_recs[0].len, &eb), TORII_OK);
    assert_int_equal(torii_table_bulk_add(bulk, "y", g_recs[2].der, g_recs[2].len, &eb), TORII_OK);
    assert_int_equal(torii_table_bulk_add(bulk, "x", g_recs[1].der, g_recs[1].len, &eb), TORII_OK);
    assert_int_equal(torii_table_bulk_end(bulk), 2);
    sel_id(t, g_recs[1].name, id, sizeof(id));
    assert_string_equal(id, "x");
    sel_id(t, g_recs[0].name, id, sizeof(id));
    assert_string_equal(id, ""); /* the first "x" is gone with its names */
    assert_int_equal(torii_table_issuer_serial(t, g_recs[0].leaf, NULL), 0);
    assert_int_equal(torii_table_issuer_serial(t, g_recs[1].leaf, NULL), 1);
    torii_table_free(t);
}

static void test_bulk_bad_record_left_out(void **state)
{
    static const unsigned char junk[] = {0x01, 0x02, 0x03};
    struct torii_table *t = table_new();
    struct torii_table_bulk *bulk = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(torii_table_bulk_begin(t, 4, &bulk), TORII_OK);
    assert_int_equal(torii_table_bulk_add(bulk, "bad", junk, sizeof(junk), &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "malformed"));
    assert_int_equal(torii_table_bulk_add(bulk, "", g_recs[0].der, g_recs[0].len, &eb),
                     TORII_EINVAL);
    assert_int_equal(torii_table_bulk_add(bulk, "ok", g_recs[0].der, g_recs[0].len, &eb), TORII_OK);
    assert_int_equal(torii_table_bulk_end(bulk), 1);
    torii_table_free(t);
}

/* Nothing is visible before end; begin on a table that holds something is refused. */
static void test_bulk_publish_at_end_only(void **state)
{
    struct torii_table *t = table_new();
    struct torii_table_bulk *bulk = NULL;
    struct torii_errbuf eb = {{0}};
    struct torii_tls_cert *c = NULL;
    char id[64];

    (void)state;
    assert_int_equal(torii_table_bulk_begin(NULL, 0, &bulk), TORII_EINVAL);
    assert_int_equal(torii_table_bulk_begin(t, 0, &bulk), TORII_OK);
    assert_int_equal(torii_table_bulk_add(bulk, "p", g_recs[3].der, g_recs[3].len, &eb), TORII_OK);
    sel_id(t, g_recs[3].name, id, sizeof(id));
    assert_string_equal(id, "");
    assert_int_equal(torii_table_get(t, "p", &c), TORII_ENOTFOUND);
    assert_int_equal(torii_table_size(t), 0);
    assert_int_equal(torii_table_bulk_end(bulk), 1);
    sel_id(t, g_recs[3].name, id, sizeof(id));
    assert_string_equal(id, "p");
    assert_int_equal(torii_table_bulk_begin(t, 0, &bulk), TORII_EEXIST);
    assert_int_equal(torii_table_update(t, "p", NULL, 0, NULL, &eb), TORII_OK); /* lock free */
    assert_int_equal(torii_table_size(t), 0);
    assert_int_equal(torii_table_bulk_end(NULL), 0);
    torii_table_free(t);
}

static int group_setup(void **state)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)state;
    if (key == NULL) {
        return 1;
    }
    torii_table_reader_register();
    for (size_t i = 0; i < N_RECS; i++) {
        make_rec(i, key);
    }
    EVP_PKEY_free(key);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_RECS; i++) {
        free(g_recs[i].der);
        X509_free(g_recs[i].leaf);
    }
    torii_table_reader_unregister();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_same_as_updates),
        cmocka_unit_test(test_bulk_then_updates),
        cmocka_unit_test(test_bulk_repeated_id_last_wins),
        cmocka_unit_test(test_bulk_bad_record_left_out),
        cmocka_unit_test(test_bulk_publish_at_end_only),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
