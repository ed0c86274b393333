/* test_pki_pmap.c - the PKI state's internals: the persistent hash map (pmap.h) checked
 * against a plain model through random puts and deletes, with snapshots taken along the way
 * that must never change (degenerate hashes force collision lists and deep splits), and the
 * serial text of a DER INTEGER (fast path against OpenSSL's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/asn1.h>
#include <openssl/rand.h>

#include "pki_int.h"
#include "pmap.h"
#include "torii/err.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define KEYS  600
#define SNAPS 24

struct item {
    struct torii_pki__pmap_leaf hdr;
    int key;
    int val;
};

static long g_live; /* items allocated and not freed (main thread only) */

static void item_free(struct torii_pki__pmap_leaf *l)
{
    g_live--;
    free(l);
}

/* The hash function under test: 0 = good spread, 1 = everything collides, 2 = only the top
 * bits differ (deep splits), 3 = few distinct values (collision lists of several keys). */
static uint64_t hash_of(int mode, int key)
{
    uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ULL;

    switch (mode) {
    case 1:
        return 42;
    case 2:
        return (uint64_t)(key % 7) << 61;
    case 3:
        return h % 5;
    default:
        return h ^ (h >> 29);
    }
}

static struct item *item_new(int mode, int key, int val)
{
    struct item *it = torii_xmalloc(sizeof(*it));

    it->key = key;
    it->val = val;
    torii_pki__pmap_leaf_init(&it->hdr, hash_of(mode, key), (const unsigned char *)&it->key,
                              sizeof(it->key), item_free);
    g_live++;
    return it;
}

static const struct item *find(const struct torii_pki__pmap_node *root, int mode, int key)
{
    return (const struct item *)torii_pki__pmap_get(root, hash_of(mode, key), &key, sizeof(key));
}

struct snap {
    struct torii_pki__pmap_node *root;
    int model[KEYS]; /* value, or -1 when absent */
};

static void check(const struct torii_pki__pmap_node *root, int mode, const int *model)
{
    for (int k = 0; k < KEYS; k++) {
        const struct item *it = find(root, mode, k);
        if (model[k] < 0) {
            assert_null(it);
        } else {
            assert_non_null(it);
            assert_int_equal(it->key, k);
            assert_int_equal(it->val, model[k]);
        }
    }
}

static void run_model(int mode, unsigned steps)
{
    struct torii_pki__pmap m = {NULL, 0};
    struct snap snaps[SNAPS];
    int model[KEYS];
    size_t n_snaps = 0;
    size_t count = 0;
    unsigned rnd = 0;

    g_live = 0;
    for (int k = 0; k < KEYS; k++) {
        model[k] = -1;
    }
    for (unsigned i = 0; i < steps; i++) {
        int k;
        unsigned op;

        assert_int_equal(RAND_bytes((unsigned char *)&rnd, sizeof(rnd)), 1);
        k = (int)(rnd % KEYS);
        op = (rnd >> 16) % 8;
        if (op < 5) {
            struct torii_pki__pmap_leaf *old =
                torii_pki__pmap_put(&m, &item_new(mode, k, (int)i)->hdr);
            assert_true((old != NULL) == (model[k] >= 0));
            torii_pki__pmap_leaf_unref(old);
            count += model[k] < 0;
            model[k] = (int)i;
        } else if (op < 7) {
            struct torii_pki__pmap_leaf *old =
                torii_pki__pmap_del(&m, hash_of(mode, k), &k, sizeof(k));
            assert_true((old != NULL) == (model[k] >= 0));
            if (old != NULL) {
                assert_int_equal(((struct item *)old)->key, k);
                count--;
            }
            torii_pki__pmap_leaf_unref(old);
            model[k] = -1;
        } else if (n_snaps < SNAPS) {
            snaps[n_snaps].root = torii_pki__pmap_share(&m);
            memcpy(snaps[n_snaps].model, model, sizeof(model));
            n_snaps++;
        } else {
            /* Release one snapshot (any order), check the others are intact. */
            size_t j = (rnd >> 8) % n_snaps;
            check(snaps[j].root, mode, snaps[j].model);
            torii_pki__pmap_node_unref(snaps[j].root);
            snaps[j] = snaps[--n_snaps];
        }
        assert_int_equal(m.count, count);
    }
    check(m.root, mode, model);
    for (size_t j = 0; j < n_snaps; j++) {
        check(snaps[j].root, mode, snaps[j].model);
        torii_pki__pmap_node_unref(snaps[j].root);
    }
    torii_pki__pmap_clear(&m);
    assert_null(m.root);
    assert_int_equal(g_live, 0);
}

static void test_pmap_matches_model_with_snapshots(void **state)
{
    (void)state;
    run_model(0, 20000);
}

static void test_pmap_all_keys_colliding(void **state)
{
    (void)state;
    run_model(1, 4000);
}

static void test_pmap_top_bits_only_and_few_hashes(void **state)
{
    (void)state;
    run_model(2, 6000);
    run_model(3, 6000);
}

static void test_pmap_empty_map_and_missing_keys(void **state)
{
    struct torii_pki__pmap m = {NULL, 0};
    int k = 7;

    (void)state;
    g_live = 0;
    assert_null(torii_pki__pmap_share(&m));
    assert_null(find(NULL, 0, k));
    assert_null(torii_pki__pmap_del(&m, hash_of(0, k), &k, sizeof(k)));
    torii_pki__pmap_leaf_unref(torii_pki__pmap_put(&m, &item_new(0, k, 1)->hdr));
    k = 8;
    assert_null(torii_pki__pmap_del(&m, hash_of(0, k), &k, sizeof(k)));
    assert_int_equal(m.count, 1);
    torii_pki__pmap_node_unref(NULL);
    torii_pki__pmap_leaf_unref(NULL);
    torii_pki__pmap_clear(&m);
    assert_int_equal(g_live, 0);
}

/* ---- serial text ---- */

/* What OpenSSL prints for der (or the error code). */
static int slow_hex(const unsigned char *der, size_t len, char *buf, size_t size)
{
    const unsigned char *p = der;
    ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, (long)len);
    int rc = ai != NULL ? torii_pki__serial_hex(ai, buf, size) : TORII_EINVAL;

    ASN1_INTEGER_free(ai);
    return rc;
}

static void same_as_openssl(const unsigned char *der, size_t len, size_t size)
{
    char want[160] = "";
    char got[160] = "";
    int rw = slow_hex(der, len, want, size);
    int rg = torii_pki__serial_hex_der(der, len, got, size);

    assert_int_equal(rg, rw);
    if (rw == TORII_OK) {
        assert_string_equal(got, want);
    }
}

static void test_serial_hex_der_matches_openssl(void **state)
{
    static const unsigned char cases[][8] = {
        {0x02, 0x01, 0x00},             /* zero */
        {0x02, 0x01, 0x0a},             /* one digit */
        {0x02, 0x01, 0x7f},             /* top of one byte */
        {0x02, 0x02, 0x00, 0x80},       /* positive with its sign octet */
        {0x02, 0x02, 0x00, 0x01},       /* non-minimal: OpenSSL decides */
        {0x02, 0x01, 0xff},             /* negative */
        {0x02, 0x02, 0xff, 0x7f},       /* negative, two octets */
        {0x02, 0x03, 0x01, 0x00, 0x00}, /* inner zeros kept */
        {0x04, 0x01, 0x01},             /* not an INTEGER */
        {0x02, 0x05, 0x01},             /* length past the end */
    };
    static const size_t lens[] = {3, 3, 3, 4, 4, 3, 4, 5, 3, 3};
    unsigned char der[70];

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        same_as_openssl(cases[i], lens[i], TORII_PKI_SERIAL_HEX_MAX);
    }
    /* Random positive and negative serials of every length, and buffers too small. */
    for (unsigned n = 1; n <= 62; n++) {
        for (int r = 0; r < 20; r++) {
            der[0] = 0x02;
            der[1] = (unsigned char)n;
            assert_int_equal(RAND_bytes(der + 2, (int)n), 1);
            if (r % 3 == 0) {
                der[2] &= 0x7f;
            }
            if (r % 5 == 0 && n > 1) {
                der[2] = 0x00;
                der[3] |= 0x80;
            }
            same_as_openssl(der, n + 2, TORII_PKI_SERIAL_HEX_MAX);
            same_as_openssl(der, n + 2, 2 * n - 1);
            same_as_openssl(der, n + 2, 4);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pmap_matches_model_with_snapshots),
        cmocka_unit_test(test_pmap_all_keys_colliding),
        cmocka_unit_test(test_pmap_top_bits_only_and_few_hashes),
        cmocka_unit_test(test_pmap_empty_map_and_missing_keys),
        cmocka_unit_test(test_serial_hex_der_matches_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
