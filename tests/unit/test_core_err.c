/* test_core_err.c - error texts (core/err.c): torii_strerror for every code, torii_errf, and
 * torii_errno_text, the thread-safe errno text that replaces strerror in the daemon. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/err.h"

static void test_errno_text_matches_libc(void **state)
{
    (void)state;
    /* Single-threaded here, so strerror is a fair reference. */
    assert_string_equal(torii_errno_text(ENOENT).s, strerror(ENOENT));
    assert_string_equal(torii_errno_text(EACCES).s, strerror(EACCES));
    assert_string_equal(torii_errno_text(EADDRINUSE).s, strerror(EADDRINUSE));
}

static void test_errno_text_two_in_one_expression(void **state)
{
    char line[512];
    char want[512];

    (void)state;
    (void)snprintf(line, sizeof(line), "%s | %s", torii_errno_text(ENOENT).s,
                   torii_errno_text(EPERM).s);
    (void)snprintf(want, sizeof(want), "%s | ", strerror(ENOENT));
    (void)strncat(want, strerror(EPERM), sizeof(want) - strlen(want) - 1);
    assert_string_equal(line, want);
}

static void test_errno_text_unknown(void **state)
{
    const char *t;
    struct torii_errno_text v = torii_errno_text(987654);

    (void)state;
    t = v.s;
    assert_true(strlen(t) > 0);
    assert_non_null(strstr(t, "987654"));
}

#define ERR_THREAD_ROUNDS 2000

struct err_thread_arg {
    int err;
    char want[128];
    int bad;
};

static void *err_thread(void *p)
{
    struct err_thread_arg *a = p;

    for (int i = 0; i < ERR_THREAD_ROUNDS; i++) {
        if (strcmp(torii_errno_text(a->err).s, a->want) != 0) {
            a->bad++;
        }
    }
    return NULL;
}

static void test_errno_text_threads(void **state)
{
    struct err_thread_arg args[2] = {{.err = ENOENT}, {.err = ECONNREFUSED}};
    pthread_t th[2];

    (void)state;
    for (int i = 0; i < 2; i++) {
        (void)snprintf(args[i].want, sizeof(args[i].want), "%s", strerror(args[i].err));
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, err_thread, &args[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
    }
}

static void test_strerror_codes(void **state)
{
    (void)state;
    assert_string_equal(torii_strerror(TORII_OK), "success");
    assert_string_equal(torii_strerror(TORII_EIO), "I/O error");
    assert_string_equal(torii_strerror(TORII_ENOSPC), "no space left for the store");
    assert_string_equal(torii_strerror(-999), "unknown error");
}

static void test_errf(void **state)
{
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(torii_errf(&eb, TORII_EINVAL, "bad %s: %d", "port", 70000), TORII_EINVAL);
    assert_string_equal(eb.msg, "bad port: 70000");
    assert_int_equal(torii_errf(NULL, TORII_EIO, "ignored"), TORII_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_text_matches_libc),
        cmocka_unit_test(test_errno_text_two_in_one_expression),
        cmocka_unit_test(test_errno_text_unknown),
        cmocka_unit_test(test_errno_text_threads),
        cmocka_unit_test(test_strerror_codes),
        cmocka_unit_test(test_errf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
