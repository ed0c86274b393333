/* test_fleet_chal.c - the pure parts of the fleet's shared ACME answers (src/fleet/chal.c):
 * etcd key suffixes (tokens and DNS names only), values (a TLS-ALPN-01 record leaves sealed
 * for its name), and one etcd event applied to a real challenge table: answers appear, are
 * withdrawn, and anything malformed, altered or moved to another name is refused and never
 * answered. (The etcd side: tests/integration/test_fleet_acme.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/acme.h"
#include "torii/fleet.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define TOKEN   "tok_EN-123abc"
#define KEYAUTH TOKEN ".thumbPRINT_-9"

static struct torii_kek_ring *ring_of(unsigned char fill)
{
    struct torii_kek_ring *r = torii_kek_ring_new();
    unsigned char k[TORII_KEK_LEN];

    memset(k, fill, sizeof(k));
    assert_int_equal(torii_kek_ring_add(r, k, 1, NULL), TORII_OK);
    return r;
}

static void test_suffix(void **state)
{
    char out[300];
    char big[400];

    (void)state;
    assert_int_equal(torii_fleet_chal_suffix("http-01", TOKEN, out, sizeof(out)), TORII_OK);
    assert_string_equal(out, "h/" TOKEN);
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", "a-1.fleet.test", out, sizeof(out)),
                     TORII_OK);
    assert_string_equal(out, "t/a-1.fleet.test");
    /* not a token: path characters, dots, empty */
    assert_int_equal(torii_fleet_chal_suffix("http-01", "a/b", out, sizeof(out)), TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("http-01", "a.b", out, sizeof(out)), TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("http-01", "", out, sizeof(out)), TORII_EINVAL);
    /* not a lower-case DNS name */
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", "A.test", out, sizeof(out)),
                     TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", "a..test", out, sizeof(out)),
                     TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", ".a.test", out, sizeof(out)),
                     TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", "a.test.", out, sizeof(out)),
                     TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("tls-alpn-01", "a/../b", out, sizeof(out)),
                     TORII_EINVAL);
    /* DNS-01 answers live in DNS, not here; NULL; too long for the buffer */
    assert_int_equal(torii_fleet_chal_suffix("dns-01", "a.test", out, sizeof(out)), TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix(NULL, "a.test", out, sizeof(out)), TORII_EINVAL);
    assert_int_equal(torii_fleet_chal_suffix("http-01", TOKEN, out, 5), TORII_EINVAL);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(torii_fleet_chal_suffix("http-01", big, out, sizeof(out)), TORII_EINVAL);
}

static void test_http01_roundtrip(void **state)
{
    struct torii_kek_ring *kek = ring_of(1);
    struct torii_acme_chal *ch = NULL;
    unsigned char *val = NULL;
    size_t vlen = 0;
    char out[TORII_ACME_KEYAUTH_MAX + 1];
    uint64_t n[2];
    struct torii_errbuf eb = {{0}};
    static const char sfx[] = "h/" TOKEN;

    (void)state;
    assert_int_equal(torii_acme_chal_new(&ch), TORII_OK);
    assert_int_equal(
        torii_fleet_chal_value(kek, "http-01", TOKEN, KEYAUTH, NULL, 0, &val, &vlen, &eb),
        TORII_OK);
    assert_int_equal(vlen, strlen(KEYAUTH));
    assert_memory_equal(val, KEYAUTH, vlen);
    assert_int_equal(torii_acme_chal_http01(ch, TOKEN, strlen(TOKEN), out, sizeof(out)),
                     TORII_ENOTFOUND);
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), val, vlen, 0, &eb),
                     TORII_OK);
    assert_int_equal(torii_acme_chal_http01(ch, TOKEN, strlen(TOKEN), out, sizeof(out)), TORII_OK);
    assert_string_equal(out, KEYAUTH);
    torii_acme_chal_answered(ch, n);
    assert_int_equal(n[0], 1);
    assert_int_equal(n[1], 0);
    /* the DELETE event withdraws it */
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), NULL, 0, 1, &eb), TORII_OK);
    assert_int_equal(torii_acme_chal_http01(ch, TOKEN, strlen(TOKEN), out, sizeof(out)),
                     TORII_ENOTFOUND);
    torii_acme_chal_answered(ch, n);
    assert_int_equal(n[0], 1);
    free(val);
    torii_acme_chal_free(ch);
    torii_kek_ring_free(kek);
}

static void test_http01_refusals(void **state)
{
    struct torii_kek_ring *kek = ring_of(1);
    struct torii_acme_chal *ch = NULL;
    unsigned char *val = NULL;
    size_t vlen = 0;
    char out[TORII_ACME_KEYAUTH_MAX + 1];
    struct torii_errbuf eb = {{0}};
    static const char sfx[] = "h/" TOKEN;
    static const char *const bad_values[] = {"",           TOKEN,       TOKEN ".", "other.thumb",
                                             TOKEN ".a b", TOKEN ".x/y"};

    (void)state;
    assert_int_equal(torii_acme_chal_new(&ch), TORII_OK);
    /* a value that is not this token's key authorization is never made nor answered */
    assert_int_equal(
        torii_fleet_chal_value(kek, "http-01", TOKEN, "other.thumb", NULL, 0, &val, &vlen, &eb),
        TORII_EINVAL);
    assert_null(val);
    assert_non_null(strstr(eb.msg, TOKEN));
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        const char *v = bad_values[i];
        eb.msg[0] = '\0';
        assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), (const unsigned char *)v,
                                                strlen(v), 0, &eb),
                         TORII_EINVAL);
        assert_non_null(strstr(eb.msg, "h/" TOKEN));
    }
    /* keys that torii_fleet_chal_suffix never makes */
    static const char *const bad_keys[] = {"x/" TOKEN, "h/",           "h",     "h/a/b",
                                           "h" TOKEN,  "t/UPPER.test", "t/a..b"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        const char *k = bad_keys[i];
        assert_int_equal(torii_fleet_chal_apply(ch, kek, k, strlen(k),
                                                (const unsigned char *)KEYAUTH, strlen(KEYAUTH), 0,
                                                &eb),
                         TORII_EINVAL);
    }
    assert_int_equal(torii_acme_chal_http01(ch, TOKEN, strlen(TOKEN), out, sizeof(out)),
                     TORII_ENOTFOUND);
    torii_acme_chal_free(ch);
    torii_kek_ring_free(kek);
}

/* A real RFC 8737 validation record for name (src/pki). */
static void alpn_record(const char *name, unsigned char **rec, size_t *len)
{
    unsigned char md[32];

    memset(md, 0x5a, sizeof(md));
    assert_int_equal(torii_pki_acme_alpn_record(name, md, rec, len, NULL), TORII_OK);
}

static int has_bytes(const unsigned char *hay, size_t hl, const unsigned char *nd, size_t nl)
{
    for (size_t i = 0; nl <= hl && i <= hl - nl; i++) {
        if (memcmp(hay + i, nd, nl) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_alpn_sealed_roundtrip(void **state)
{
    struct torii_kek_ring *kek = ring_of(2);
    struct torii_acme_chal *ch = NULL;
    unsigned char *rec = NULL, *val = NULL, *got = NULL;
    size_t rec_len = 0, vlen = 0, got_len = 0;
    struct torii_errbuf eb = {{0}};
    static const char sfx[] = "t/alpn.fleet.test";
    uint64_t n[2];

    (void)state;
    alpn_record("alpn.fleet.test", &rec, &rec_len);
    assert_int_equal(torii_acme_chal_new(&ch), TORII_OK);
    assert_int_equal(torii_fleet_chal_value(kek, "tls-alpn-01", "alpn.fleet.test", NULL, rec,
                                            rec_len, &val, &vlen, &eb),
                     TORII_OK);
    /* etcd gets an envelope: not the record, not a 64-byte stretch of it (the key's part) */
    assert_true(torii_kek_is_sealed(val, vlen));
    for (size_t off = 0; off + 64 <= rec_len; off += 64) {
        assert_false(has_bytes(val, vlen, rec + off, 64));
    }
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), val, vlen, 0, &eb),
                     TORII_OK);
    assert_int_equal(torii_acme_chal_alpn(ch, "alpn.fleet.test", &got, &got_len), TORII_OK);
    assert_int_equal(got_len, rec_len);
    assert_memory_equal(got, rec, rec_len);
    torii_acme_chal_answered(ch, n);
    assert_int_equal(n[1], 1);
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), NULL, 0, 1, &eb), TORII_OK);
    torii_secure_free(got, got_len);
    got = NULL;
    assert_int_equal(torii_acme_chal_alpn(ch, "alpn.fleet.test", &got, &got_len), TORII_ENOTFOUND);
    free(val);
    torii_secure_free(rec, rec_len);
    torii_acme_chal_free(ch);
    torii_kek_ring_free(kek);
}

static void test_alpn_refusals(void **state)
{
    struct torii_kek_ring *kek = ring_of(3);
    struct torii_kek_ring *other = ring_of(4);
    struct torii_acme_chal *ch = NULL;
    unsigned char *rec = NULL, *val = NULL, *got = NULL;
    size_t rec_len = 0, vlen = 0, got_len = 0;
    struct torii_errbuf eb = {{0}};
    static const char sfx[] = "t/a.fleet.test";
    static const char moved[] = "t/b.fleet.test";

    (void)state;
    alpn_record("a.fleet.test", &rec, &rec_len);
    assert_int_equal(torii_acme_chal_new(&ch), TORII_OK);
    assert_int_equal(torii_fleet_chal_value(kek, "tls-alpn-01", "a.fleet.test", NULL, rec, rec_len,
                                            &val, &vlen, &eb),
                     TORII_OK);
    /* the record in clear (not sealed) */
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), rec, rec_len, 0, &eb),
                     TORII_EINVAL);
    /* the envelope moved to another name: it was sealed for a.fleet.test only */
    assert_int_equal(torii_fleet_chal_apply(ch, kek, moved, strlen(moved), val, vlen, 0, &eb),
                     TORII_EPERM);
    assert_int_equal(torii_acme_chal_alpn(ch, "b.fleet.test", &got, &got_len), TORII_ENOTFOUND);
    /* a node with another KEK cannot open it (eb names the KEK id, not bytes) */
    assert_int_equal(torii_fleet_chal_apply(ch, other, sfx, strlen(sfx), val, vlen, 0, &eb),
                     TORII_ENOTFOUND);
    /* one byte altered */
    val[vlen - 1] ^= 1;
    assert_int_equal(torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), val, vlen, 0, &eb),
                     TORII_EPERM);
    assert_int_equal(torii_acme_chal_alpn(ch, "a.fleet.test", &got, &got_len), TORII_ENOTFOUND);
    /* no record at all */
    free(val);
    val = NULL;
    assert_int_equal(
        torii_fleet_chal_value(kek, "tls-alpn-01", "a.fleet.test", NULL, NULL, 0, &val, &vlen, &eb),
        TORII_EINVAL);
    torii_secure_free(rec, rec_len);
    torii_acme_chal_free(ch);
    torii_kek_ring_free(kek);
    torii_kek_ring_free(other);
}

/* More answers than the table holds: the refusal names the answer and the reason. */
static void test_table_full(void **state)
{
    struct torii_kek_ring *kek = ring_of(5);
    struct torii_acme_chal *ch = NULL;
    struct torii_errbuf eb = {{0}};
    char sfx[64], ka[128];
    int rc = TORII_OK;

    (void)state;
    assert_int_equal(torii_acme_chal_new(&ch), TORII_OK);
    for (int i = 0; i <= TORII_ACME_CHAL_MAX && rc == TORII_OK; i++) {
        (void)snprintf(sfx, sizeof(sfx), "h/t%d", i);
        (void)snprintf(ka, sizeof(ka), "t%d.th", i);
        rc = torii_fleet_chal_apply(ch, kek, sfx, strlen(sfx), (const unsigned char *)ka,
                                    strlen(ka), 0, &eb);
        if (i < TORII_ACME_CHAL_MAX) {
            assert_int_equal(rc, TORII_OK);
        }
    }
    assert_int_equal(rc, TORII_ETOOBIG);
    assert_non_null(strstr(eb.msg, "table is full"));
    torii_acme_chal_free(ch);
    torii_kek_ring_free(kek);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suffix),          cmocka_unit_test(test_http01_roundtrip),
        cmocka_unit_test(test_http01_refusals), cmocka_unit_test(test_alpn_sealed_roundtrip),
        cmocka_unit_test(test_alpn_refusals),   cmocka_unit_test(test_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
