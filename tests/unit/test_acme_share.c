/* test_acme_share.c - the ACME thread's publish/withdraw (src/acme/chal.c) with a share hook
 * (torii_acme_opts.share, the fleet's in fleet mode): the answer goes to the local table and
 * to the hook with the order's remaining time as its lease; a hook failure fails the publish
 * and leaves no local answer behind; withdraw leaves both; without a hook answers stay local. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acme_int.h"
#include "torii/clock.h"

struct fake_share {
    int fail;
    int published;
    int withdrawn;
    char type[32];
    char key[TORII_ACME_KEY_MAX + 1];
    char value[TORII_ACME_KEYAUTH_MAX + 1];
    int64_t ttl_s;
};

static int fake_publish(void *ctx, const char *type, const char *key, const char *value,
                        const unsigned char *rec, size_t rec_len, int64_t ttl_s,
                        struct torii_errbuf *eb)
{
    struct fake_share *f = ctx;

    (void)rec;
    (void)rec_len;
    f->published++;
    (void)snprintf(f->type, sizeof(f->type), "%s", type);
    (void)snprintf(f->key, sizeof(f->key), "%s", key);
    (void)snprintf(f->value, sizeof(f->value), "%s", value != NULL ? value : "");
    f->ttl_s = ttl_s;
    return f->fail ? torii_errf(eb, TORII_EAGAIN, "fake: etcd unreachable") : TORII_OK;
}

static void fake_withdraw(void *ctx, const char *type, const char *key)
{
    struct fake_share *f = ctx;

    (void)type;
    (void)key;
    f->withdrawn++;
}

static int local_has(struct torii_acme_chal *ch, const char *token)
{
    char out[TORII_ACME_KEYAUTH_MAX + 1];

    return torii_acme_chal_http01(ch, token, strlen(token), out, sizeof(out)) == TORII_OK;
}

/* A client with share (NULL: none), its order's deadline left_ms from now, an empty table. */
static void client_init(struct acme_client *c, const struct torii_acme_share *share,
                        int64_t left_ms)
{
    memset(c, 0, sizeof(*c));
    c->share = share;
    c->deadline_ms = torii_clock_mono_us() / 1000 + left_ms;
    assert_int_equal(torii_acme_chal_new(&c->chal), TORII_OK);
}

static void test_publish_shares(void **state)
{
    struct fake_share f = {0};
    struct torii_acme_share share = {&f, fake_publish, fake_withdraw};
    struct acme_client c;
    struct torii_errbuf eb = {{0}};

    (void)state;
    client_init(&c, &share, 120000);
    assert_int_equal(acme_chal_publish(&c, "http-01", "tok", "tok.th", NULL, 0, &eb), TORII_OK);
    assert_true(local_has(c.chal, "tok"));
    assert_int_equal(f.published, 1);
    assert_string_equal(f.type, "http-01");
    assert_string_equal(f.key, "tok");
    assert_string_equal(f.value, "tok.th");
    /* the order's 120 s left plus the margin (a second may have passed) */
    assert_true(f.ttl_s >= 119 + ACME_SHARE_MARGIN_S && f.ttl_s <= 120 + ACME_SHARE_MARGIN_S);
    acme_chal_withdraw(&c, "http-01", "tok");
    assert_false(local_has(c.chal, "tok"));
    assert_int_equal(f.withdrawn, 1);
    torii_acme_chal_free(c.chal);
}

static void test_publish_failure_leaves_nothing(void **state)
{
    struct fake_share f = {.fail = 1};
    struct torii_acme_share share = {&f, fake_publish, fake_withdraw};
    struct acme_client c;
    struct torii_errbuf eb = {{0}};

    (void)state;
    client_init(&c, &share, -5000); /* past: the margin alone */
    assert_int_equal(acme_chal_publish(&c, "http-01", "tok", "tok.th", NULL, 0, &eb), TORII_EAGAIN);
    assert_string_equal(eb.msg, "fake: etcd unreachable");
    assert_int_equal(f.ttl_s, ACME_SHARE_MARGIN_S);
    assert_false(local_has(c.chal, "tok"));
    torii_acme_chal_free(c.chal);
}

static void test_local_only(void **state)
{
    struct acme_client c;
    struct torii_errbuf eb = {{0}};

    (void)state;
    client_init(&c, NULL, 0);
    assert_int_equal(acme_chal_publish(&c, "http-01", "tok", "tok.th", NULL, 0, &eb), TORII_OK);
    assert_true(local_has(c.chal, "tok"));
    acme_chal_withdraw(&c, "http-01", "tok");
    assert_false(local_has(c.chal, "tok"));
    torii_acme_chal_free(c.chal);
}

/* A full local table: the error names the answer and the reason, the hook is not asked. */
static void test_table_full_named(void **state)
{
    struct fake_share f = {0};
    struct torii_acme_share share = {&f, fake_publish, fake_withdraw};
    struct acme_client c;
    struct torii_errbuf eb = {{0}};
    char tok[16];

    (void)state;
    client_init(&c, &share, 0);
    for (int i = 0; i < TORII_ACME_CHAL_MAX; i++) {
        (void)snprintf(tok, sizeof(tok), "t%d", i);
        assert_int_equal(torii_acme_chal_put(c.chal, "http-01", tok, "v", NULL, 0), TORII_OK);
    }
    assert_int_equal(acme_chal_publish(&c, "http-01", "tok", "tok.th", NULL, 0, &eb),
                     TORII_ETOOBIG);
    assert_non_null(strstr(eb.msg, "tok"));
    assert_non_null(strstr(eb.msg, "table is full"));
    assert_int_equal(f.published, 0);
    torii_acme_chal_free(c.chal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_shares),
        cmocka_unit_test(test_publish_failure_leaves_nothing),
        cmocka_unit_test(test_local_only),
        cmocka_unit_test(test_table_full_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
