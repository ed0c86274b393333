/* test_tls_table_src.c - the certificate table in source mode (table.h: torii_table_new_src):
 * an update without a key keeps only what selection needs; the record and the key are read
 * through the source at the first use, once; a replace reads again, a source that lost the
 * certificate fails that certificate cleanly, an update with a key stays eager. Also many
 * certificates sharing names (one node per name, several candidates) through replaces and
 * deletes. */
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
#include <openssl/x509v3.h>

#include "testpki.h"
#include "testtable.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/table.h"

#define SRC_MAX 8

/* A source: id -> (record, key PEM), and how many loads it served. */
struct src_entry {
    char id[32];
    unsigned char *rec;
    size_t len;
    char *key_pem;
};

struct fake_src {
    struct src_entry v[SRC_MAX];
    size_t n;
    int loads;
};

static EVP_PKEY *g_key;

static int fake_load(void *arg, const char *id, torii_table_use_fn use, void *use_arg,
                     struct torii_errbuf *eb)
{
    struct fake_src *s = arg;

    s->loads++;
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].id, id) == 0) {
            struct torii_pki_key_src key = {id, s->v[i].key_pem, NULL, NULL};
            return use(use_arg, s->v[i].rec, s->v[i].len, &key, eb);
        }
    }
    return torii_errf(eb, TORII_ENOTFOUND, "no such id in the fake source");
}

/* A record for dns names (not after: now + days), with or without a key in the entity. */
static unsigned char *make_rec(const char *const *dns, size_t n_dns, int days, int with_key,
                               size_t *len, char **key_pem)
{
    struct testpki_opts o = {.key_type = EVP_PKEY_EC, .dns = dns, .n_dns = n_dns};
    X509 *cert = NULL;
    EVP_PKEY *key = g_key;
    unsigned char *rec = NULL;
    struct torii_errbuf eb = {{0}};

    o.not_before_off_s = -3600;
    o.not_after_off_s = (int64_t)days * 86400;
    EVP_PKEY_up_ref(key);
    assert_int_equal(testpki_make(&o, &cert, &key), 0);
    char *cpem = testpki_cert_pem(cert);
    char *kpem = testpki_key_pem(key, NULL);
    json_t *e = json_pack("{s:s, s:s}", "chain", cpem, "privateKey", with_key ? kpem : "");
    assert_non_null(e);
    assert_int_equal(torii_certrec_build(e, &rec, len, &eb), TORII_OK);
    json_decref(e);
    free(cpem);
    X509_free(cert);
    EVP_PKEY_free(key);
    *key_pem = kpem;
    return rec;
}

/* Put id into the source and the table (no key: source mode). */
static void src_put(struct fake_src *s, struct torii_table *t, const char *id, const char *name,
                    int with_key)
{
    const char *dns[1] = {name};
    struct src_entry *e = NULL;
    struct torii_errbuf eb = {{0}};

    for (size_t i = 0; i < s->n && e == NULL; i++) {
        e = strcmp(s->v[i].id, id) == 0 ? &s->v[i] : NULL;
    }
    if (e == NULL) {
        assert_true(s->n < SRC_MAX);
        e = &s->v[s->n++];
    } else {
        free(e->rec);
        free(e->key_pem);
    }
    (void)snprintf(e->id, sizeof(e->id), "%s", id);
    e->rec = make_rec(dns, 1, 30, with_key, &e->len, &e->key_pem);
    assert_int_equal(torii_table_update(t, id, e->rec, e->len, NULL, &eb), TORII_OK);
}

struct fixture {
    struct fake_src src;
    struct torii_table *t;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct torii_table_src ts = {fake_load, NULL};

    if (f == NULL) {
        return 1;
    }
    ts.arg = &f->src;
    if (torii_table_new_src(&ts, &f->t) != TORII_OK) {
        free(f);
        return 1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    torii_table_free(f->t);
    for (size_t i = 0; i < f->src.n; i++) {
        free(f->src.v[i].rec);
        free(f->src.v[i].key_pem);
    }
    free(f);
    return 0;
}

static void test_src_first_use_loads_once(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;

    src_put(&f->src, f->t, "a", "a.test", 1);
    struct torii_tls_cert *c = testtable_select(f->t, "a.test");
    assert_non_null(c);
    assert_int_equal(f->src.loads, 0); /* selection reads nothing */
    assert_int_equal(torii_tls_cert_get(c, &leaf, &key, &chain), TORII_OK);
    assert_non_null(leaf);
    assert_non_null(key);
    assert_int_equal(f->src.loads, 1);
    assert_int_equal(torii_tls_cert_get(c, &leaf, &key, &chain), TORII_OK);
    assert_int_equal(f->src.loads, 1); /* parsed once */
    torii_tls_cert_unref(c);
}

static void test_src_replace_reads_again_delete_removes(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = NULL;

    src_put(&f->src, f->t, "a", "a.test", 1);
    struct torii_tls_cert *c = testtable_select(f->t, "a.test");
    assert_non_null(c);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, NULL), TORII_OK);
    torii_tls_cert_unref(c);
    src_put(&f->src, f->t, "a", "b.test", 1); /* same id, another name */
    assert_null(testtable_select(f->t, "a.test"));
    c = testtable_select(f->t, "b.test");
    assert_non_null(c);
    assert_int_equal(torii_tls_cert_get(c, &leaf, NULL, NULL), TORII_OK);
    assert_int_equal(f->src.loads, 2);
    assert_int_equal(X509_check_host(leaf, "b.test", 0, 0, NULL), 1);
    torii_tls_cert_unref(c);
    assert_int_equal(torii_table_update(f->t, "a", NULL, 0, NULL, NULL), TORII_OK);
    assert_null(testtable_select(f->t, "b.test"));
    assert_int_equal(torii_table_size(f->t), 0);
}

static void test_src_lost_certificate_fails_once(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = NULL;

    src_put(&f->src, f->t, "gone", "gone.test", 1);
    (void)snprintf(f->src.v[0].id, sizeof(f->src.v[0].id), "renamed"); /* the source lost it */
    struct torii_tls_cert *c = testtable_select(f->t, "gone.test");
    assert_non_null(c);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, NULL), TORII_ETLS);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, NULL), TORII_ETLS);
    assert_int_equal(f->src.loads, 1); /* the failure is remembered */
    assert_int_equal(torii_tls_cert_leaf_dup(c, &leaf), TORII_ETLS);
    torii_tls_cert_unref(c);
}

static void test_src_record_without_key_not_served(void **state)
{
    struct fixture *f = *state;

    src_put(&f->src, f->t, "nokey", "nokey.test", 0);
    assert_int_equal(torii_table_size(f->t), 1);
    assert_null(testtable_select(f->t, "nokey.test"));
    assert_int_equal(f->src.loads, 0);
}

static void test_src_leaf_dup_and_eager_update(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = NULL;
    struct torii_errbuf eb = {{0}};

    src_put(&f->src, f->t, "a", "a.test", 1);
    struct torii_tls_cert *c = testtable_select(f->t, "a.test");
    assert_non_null(c);
    assert_int_equal(torii_tls_cert_leaf_dup(c, &leaf), TORII_OK);
    assert_int_equal(f->src.loads, 1);
    X509_free(leaf);
    torii_tls_cert_unref(c);
    /* with a key: the record and key are copied, the source is not asked */
    struct torii_pki_key_src key = {"a", f->src.v[0].key_pem, NULL, NULL};
    assert_int_equal(torii_table_update(f->t, "a", f->src.v[0].rec, f->src.v[0].len, &key, &eb),
                     TORII_OK);
    c = testtable_select(f->t, "a.test");
    assert_non_null(c);
    assert_int_equal(torii_tls_cert_get(c, NULL, NULL, NULL), TORII_OK);
    assert_int_equal(f->src.loads, 1);
    torii_tls_cert_unref(c);
}

/* Many certificates on shared names: every one carries "*.shared.test" and its own name;
 * the latest notAfter wins the shared name; replaces and deletes keep both indexes right. */
#define N_SHARED 300

static void put_shared(struct torii_table *t, int i, int days)
{
    char own[32];
    char id[16];
    const char *dns[2] = {own, "*.shared.test"};
    struct torii_errbuf eb = {{0}};
    size_t len = 0;
    char *kpem = NULL;

    (void)snprintf(own, sizeof(own), "n%d.own.test", i);
    (void)snprintf(id, sizeof(id), "s%d", i);
    unsigned char *rec = make_rec(dns, 2, days, 1, &len, &kpem);
    assert_int_equal(torii_table_update(t, id, rec, len, NULL, &eb), TORII_OK);
    free(rec);
    free(kpem);
}

static void test_src_shared_names_replace_delete(void **state)
{
    struct fixture *f = *state;
    char name[32];

    for (int i = 0; i < N_SHARED; i++) {
        put_shared(f->t, i, 10 + (i % 50)); /* s49, s99, ... expire last (59 days) */
    }
    put_shared(f->t, 7, 90); /* replaced: now the latest */
    struct torii_tls_cert *c = testtable_select(f->t, "x.shared.test");
    assert_non_null(c);
    assert_string_equal(torii_tls_cert_id(c), "s7");
    torii_tls_cert_unref(c);
    for (int i = 0; i < N_SHARED; i += 3) {
        (void)snprintf(name, sizeof(name), "s%d", i);
        assert_int_equal(torii_table_update(f->t, name, NULL, 0, NULL, NULL), TORII_OK);
    }
    assert_int_equal(torii_table_size(f->t), N_SHARED - (N_SHARED + 2) / 3);
    for (int i = 0; i < N_SHARED; i++) {
        (void)snprintf(name, sizeof(name), "n%d.own.test", i);
        c = testtable_select(f->t, name);
        if (i % 3 == 0) {
            assert_null(c);
            continue;
        }
        assert_non_null(c);
        (void)snprintf(name, sizeof(name), "s%d", i);
        assert_string_equal(torii_tls_cert_id(c), name);
        torii_tls_cert_unref(c);
    }
    c = testtable_select(f->t, "x.shared.test");
    assert_non_null(c);
    assert_string_equal(torii_tls_cert_id(c), "s7"); /* 7 % 3 != 0: still there */
    torii_tls_cert_unref(c);
    assert_int_equal(f->src.loads, 0);
}

static int group_setup(void **state)
{
    (void)state;
    g_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    torii_table_reader_register();
    return g_key != NULL ? 0 : 1;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_key);
    torii_table_reader_unregister();
    return 0;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_src_first_use_loads_once),        T(test_src_replace_reads_again_delete_removes),
        T(test_src_lost_certificate_fails_once), T(test_src_record_without_key_not_served),
        T(test_src_leaf_dup_and_eager_update),   T(test_src_shared_names_replace_delete),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
