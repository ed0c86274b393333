/* test_pki_state_size.c - the PKI view's id and group tables start at the size the first load
 * needs (torii_pki_state_opts.expected: the store's count) instead of doubling up to it:
 * the smallest power of two at or above it, never below STATE_BUCKETS_MIN, never above
 * STATE_BUCKETS_MAX (a larger store grows them as before). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "state_int.h"
#include "torii/pkistate.h"

static void test_buckets_rule(void **state)
{
    (void)state;
    assert_int_equal(torii_pki__state_buckets(0), STATE_BUCKETS_MIN);
    assert_int_equal(torii_pki__state_buckets(STATE_BUCKETS_MIN), STATE_BUCKETS_MIN);
    assert_int_equal(torii_pki__state_buckets(STATE_BUCKETS_MIN + 1), 2 * STATE_BUCKETS_MIN);
    assert_int_equal(torii_pki__state_buckets(1000000), 1u << 20);
    assert_int_equal(torii_pki__state_buckets((size_t)1 << 40), STATE_BUCKETS_MAX);
}

static void test_state_sized_from_expected(void **state)
{
    struct torii_pki_state_opts o = {.expected = 5000};
    struct torii_pki_state *st = NULL;

    (void)state;
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    assert_int_equal(st->ids_mask + 1, 8192);
    assert_int_equal(st->grps_mask + 1, 8192);
    torii_pki_state_free(st);
    o.expected = 0;
    assert_int_equal(torii_pki_state_new(&o, &st), TORII_OK);
    assert_int_equal(st->ids_mask + 1, STATE_BUCKETS_MIN);
    torii_pki_state_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_rule),
        cmocka_unit_test(test_state_sized_from_expected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
