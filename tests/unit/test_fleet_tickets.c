/* test_fleet_tickets.c - the stored form of the fleet's session ticket key set
 * (src/fleet/tickets_set.c): a round trip under the KEK, no clear key byte in the stored
 * text, distrusted input refused with the member named (shape, version, base64, length,
 * duplicate key names, another record id, another KEK, altered bytes), and the rotation rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "torii/codec.h"
#include "torii/fleet.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define REC "/it/t/keys"

static struct torii_kek_ring *ring_of(unsigned char fill)
{
    unsigned char kek[TORII_KEK_LEN];
    struct torii_kek_ring *r = torii_kek_ring_new();

    memset(kek, fill, sizeof(kek));
    assert_int_equal(torii_kek_ring_add(r, kek, 1, NULL), TORII_OK);
    return r;
}

static void set_of(struct torii_fleet_ticket_set *s, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->keys.n = n;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < TORII_TLS_TICKET_KEY_LEN; j++) {
            s->keys.k[i][j] = (unsigned char)(0x40 + 7 * i + 13 * j);
        }
    }
    s->created_ms = 1765000000123LL;
}

/* 1 when the len bytes at needle appear in hay[0..hlen). */
static int contains(const unsigned char *hay, size_t hlen, const unsigned char *needle, size_t len)
{
    for (size_t i = 0; i + len <= hlen; i++) {
        if (memcmp(hay + i, needle, len) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_round_trip_one_and_two_keys(void **state)
{
    struct torii_kek_ring *r = ring_of(1);
    struct torii_fleet_ticket_set in;
    struct torii_fleet_ticket_set out;
    char *val = NULL;

    (void)state;
    for (size_t n = 1; n <= 2; n++) {
        set_of(&in, n);
        assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL),
                         TORII_OK);
        assert_int_equal(
            torii_fleet_tickets_decode(r, REC, strlen(REC), val, strlen(val), &out, NULL),
            TORII_OK);
        assert_int_equal(out.keys.n, n);
        assert_true(out.created_ms == in.created_ms);
        assert_memory_equal(out.keys.k, in.keys.k, n * TORII_TLS_TICKET_KEY_LEN);
        free(val);
    }
    torii_kek_ring_free(r);
}

/* The stored text, and the envelope under its base64, hold none of the key bytes (the key
 * names, sent in clear in every ticket, included). */
static void test_stored_text_holds_no_clear_key(void **state)
{
    struct torii_kek_ring *r = ring_of(2);
    struct torii_fleet_ticket_set in;
    char *val = NULL;
    const char *b64;
    unsigned char *env = NULL;
    size_t env_len = 0;

    (void)state;
    set_of(&in, 2);
    assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL), TORII_OK);
    b64 = strstr(val, "TKEK:");
    assert_non_null(b64);
    b64 += 5;
    assert_int_equal(torii_b64_decode(b64, strcspn(b64, "\""), &env, &env_len), TORII_OK);
    assert_int_equal(torii_kek_is_sealed(env, env_len), 1);
    for (size_t i = 0; i < 2; i++) {
        for (size_t off = 0; off + 8 <= TORII_TLS_TICKET_KEY_LEN; off += 8) {
            assert_false(contains(env, env_len, in.keys.k[i] + off, 8));
            assert_false(contains((const unsigned char *)val, strlen(val), in.keys.k[i] + off, 8));
        }
    }
    free(env);
    free(val);
    torii_kek_ring_free(r);
}

static void expect_refused(const struct torii_kek_ring *r, const char *rec, const char *val,
                           int code, const char *word)
{
    struct torii_fleet_ticket_set out;
    struct torii_errbuf eb = {{0}};

    memset(&out, 0x7f, sizeof(out));
    assert_int_equal(torii_fleet_tickets_decode(r, rec, strlen(rec), val, strlen(val), &out, &eb),
                     code);
    if (word != NULL && strstr(eb.msg, word) == NULL) {
        fail_msg("\"%s\" does not name %s", eb.msg, word);
    }
    assert_true(out.keys.n == 0 && out.created_ms == 0); /* wiped */
}

static void test_distrusted_shapes_refused(void **state)
{
    struct torii_kek_ring *r = ring_of(3);

    (void)state;
    expect_refused(r, REC, "", TORII_EPROTO, "JSON object");
    expect_refused(r, REC, "[1]", TORII_EPROTO, "JSON object");
    expect_refused(r, REC, "{\"v\":1,\"keys\":\"TKEK:AAAA\",\"clear\":\"x\"}", TORII_EPROTO,
                   "\"clear\"");
    expect_refused(r, REC, "{\"v\":1,\"v\":1,\"keys\":\"TKEK:AAAA\"}", TORII_EPROTO, NULL);
    expect_refused(r, REC, "{\"v\":2,\"keys\":\"TKEK:AAAA\"}", TORII_EPROTO, "\"v\"");
    expect_refused(r, REC, "{\"v\":\"1\",\"keys\":\"TKEK:AAAA\"}", TORII_EPROTO, "\"v\"");
    expect_refused(r, REC, "{\"v\":1}", TORII_EPROTO, "\"keys\"");
    expect_refused(r, REC, "{\"v\":1,\"keys\":\"AAAA\"}", TORII_EPROTO, "\"keys\"");
    expect_refused(r, REC, "{\"v\":1,\"keys\":\"TKEK:\"}", TORII_EPROTO, "\"keys\"");
    expect_refused(r, REC, "{\"v\":1,\"keys\":\"TKEK:%%%%\"}", TORII_EPROTO, "base64");
    /* base64 of something that is not an envelope */
    expect_refused(r, REC, "{\"v\":1,\"keys\":\"TKEK:AAAAAAAA\"}", TORII_EINVAL, NULL);
    torii_kek_ring_free(r);
}

/* A well-formed envelope with the wrong content: sealed here with the same KEK. */
static char *sealed_value(const struct torii_kek_ring *r, const unsigned char *plain, size_t len)
{
    unsigned char *env = NULL;
    size_t env_len = 0;
    char *b64;
    char *val = torii_xmalloc(4096);

    assert_int_equal(torii_kek_seal(r, REC, strlen(REC), plain, len, &env, &env_len, NULL),
                     TORII_OK);
    b64 = torii_b64_encode(env, env_len, 0, NULL);
    (void)snprintf(val, 4096, "{\"v\":1,\"keys\":\"TKEK:%s\"}", b64);
    free(b64);
    free(env);
    return val;
}

static void test_sealed_content_checked(void **state)
{
    struct torii_kek_ring *r = ring_of(4);
    unsigned char plain[8 + 3 * TORII_TLS_TICKET_KEY_LEN] = {0};
    char *val;

    (void)state;
    plain[7] = 1;                                                   /* created_ms = 1 */
    val = sealed_value(r, plain, 8 + 3 * TORII_TLS_TICKET_KEY_LEN); /* three keys */
    expect_refused(r, REC, val, TORII_EPROTO, "bytes sealed");
    free(val);
    val = sealed_value(r, plain, 8 + TORII_TLS_TICKET_KEY_LEN - 1); /* a short key */
    expect_refused(r, REC, val, TORII_EPROTO, "bytes sealed");
    free(val);
    val = sealed_value(r, plain, 8 + 2 * TORII_TLS_TICKET_KEY_LEN); /* two keys, one name */
    expect_refused(r, REC, val, TORII_EPROTO, "one name");
    free(val);
    plain[7] = 0; /* created_ms = 0 */
    plain[8] = 1;
    val = sealed_value(r, plain, 8 + TORII_TLS_TICKET_KEY_LEN);
    expect_refused(r, REC, val, TORII_EPROTO, "creation time");
    free(val);
    torii_kek_ring_free(r);
}

/* A value moved under another key (prefix), sealed under another KEK, or altered, does not
 * open; a ring holding the sealing KEK as a previous one still opens it. */
static void test_other_record_other_kek_altered_refused(void **state)
{
    struct torii_kek_ring *r = ring_of(5);
    struct torii_kek_ring *other = ring_of(6);
    struct torii_kek_ring *both = ring_of(6);
    unsigned char prev[TORII_KEK_LEN];
    struct torii_fleet_ticket_set in;
    struct torii_fleet_ticket_set out;
    char *val = NULL;
    char *p;

    (void)state;
    memset(prev, 5, sizeof(prev));
    assert_int_equal(torii_kek_ring_add(both, prev, 0, NULL), TORII_OK);
    set_of(&in, 2);
    assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL), TORII_OK);
    expect_refused(r, "/other/t/keys", val, TORII_EPERM, NULL);
    expect_refused(other, REC, val, TORII_ENOTFOUND, NULL);
    assert_int_equal(
        torii_fleet_tickets_decode(both, REC, strlen(REC), val, strlen(val), &out, NULL), TORII_OK);
    p = strstr(val, "TKEK:") + 40; /* a byte of the ciphertext */
    *p = *p == 'A' ? 'B' : 'A';
    expect_refused(r, REC, val, TORII_EPERM, NULL);
    free(val);
    /* Nothing to seal: no keys, or no creation time. */
    in.keys.n = 0;
    assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL),
                     TORII_EINVAL);
    in.keys.n = 3;
    assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL),
                     TORII_EINVAL);
    in.keys.n = 1;
    in.created_ms = 0;
    assert_int_equal(torii_fleet_tickets_encode(r, REC, strlen(REC), &in, &val, NULL),
                     TORII_EINVAL);
    torii_kek_ring_free(r);
    torii_kek_ring_free(other);
    torii_kek_ring_free(both);
}

static void test_due_rule(void **state)
{
    const int64_t c = 1765000000000LL;

    (void)state;
    assert_false(torii_fleet_tickets_due(c, 3600, c));
    assert_false(torii_fleet_tickets_due(c, 3600, c + 3599999));
    assert_true(torii_fleet_tickets_due(c, 3600, c + 3600000));
    assert_true(torii_fleet_tickets_due(c, 1, c + 5000));
    assert_false(torii_fleet_tickets_due(c, 0, c + 1000LL * 86400 * 365)); /* never */
    /* From the future: within a period it waits, beyond it is due. */
    assert_false(torii_fleet_tickets_due(c + 1000, 3600, c));
    assert_true(torii_fleet_tickets_due(c + 3600001, 3600, c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_one_and_two_keys),
        cmocka_unit_test(test_stored_text_holds_no_clear_key),
        cmocka_unit_test(test_distrusted_shapes_refused),
        cmocka_unit_test(test_sealed_content_checked),
        cmocka_unit_test(test_other_record_other_kek_altered_refused),
        cmocka_unit_test(test_due_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
