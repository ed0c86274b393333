/* test_proxy_pool.c - the choice of a backend target (src/proxy/pool.c): round robin over the
 * route's targets, a target marked down (passive health) skipped while the others are up,
 * and every target tried in turn when all of them are down. The clock is read only once a
 * target has been marked down; these cases check that the choice is the same either way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session_int.h"

#define NT 3

struct pick_fix {
    struct proxy_worker pw;
    struct proxy_target_state st[NT];
    unsigned rr[1];
    struct torii_route_target t[NT];
    struct torii_route r;
};

static void fix_init(struct pick_fix *f)
{
    memset(f, 0, sizeof(*f));
    for (unsigned i = 0; i < NT; i++) {
        f->t[i].index = i;
    }
    f->pw.targets = f->st;
    f->pw.n_targets = NT;
    f->pw.rr = f->rr;
    f->r.index = 0;
    f->r.backend.targets = f->t;
    f->r.backend.n_targets = NT;
}

static unsigned pick(struct pick_fix *f)
{
    return torii_proxy__target_pick(&f->pw, &f->r)->index;
}

static void test_round_robin(void **state)
{
    struct pick_fix f;

    (void)state;
    fix_init(&f);
    for (unsigned i = 0; i < 2 * NT; i++) {
        assert_int_equal(pick(&f), i % NT);
    }
}

static void test_down_skipped(void **state)
{
    struct pick_fix f;

    (void)state;
    fix_init(&f);
    torii_proxy__target_mark_down(&f.pw, &f.t[1]);
    assert_true(f.st[1].down_until_ms > 0);
    assert_int_equal(pick(&f), 0);
    assert_int_equal(pick(&f), 2); /* 1 is down: its turn goes to the next one */
    assert_int_equal(pick(&f), 2);
    assert_int_equal(pick(&f), 0);
    /* A mark that has run out no longer counts. */
    f.st[1].down_until_ms = 1;
    assert_int_equal(pick(&f), 1);
}

static void test_all_down(void **state)
{
    struct pick_fix f;

    (void)state;
    fix_init(&f);
    for (unsigned i = 0; i < NT; i++) {
        torii_proxy__target_mark_down(&f.pw, &f.t[i]);
    }
    for (unsigned i = 0; i < 2 * NT; i++) {
        assert_int_equal(pick(&f), i % NT); /* all down: each is tried anyway, in turn */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_down_skipped),
        cmocka_unit_test(test_all_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
