/* test_core_codec.c - base64 (both ways) and percent-decoding (core/codec.c): both alphabets,
 * padding rules, trailing bits, and every way an input can be malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/codec.h"

static void expect_b64(const char *in, const char *want, size_t want_len)
{
    unsigned char *out = NULL;
    size_t n = 0;

    assert_int_equal(torii_b64_decode(in, strlen(in), &out, &n), TORII_OK);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(out[n], 0);
    free(out);
}

static void expect_b64_bad(const char *in)
{
    static unsigned char sentinel[] = "untouched";
    unsigned char *out = sentinel;
    size_t n = 7;

    assert_int_equal(torii_b64_decode(in, strlen(in), &out, &n), TORII_EINVAL);
    assert_ptr_equal(out, sentinel); /* written only on success */
    assert_int_equal(n, 7);
}

static void test_b64_rfc4648_vectors(void **state)
{
    (void)state;
    expect_b64("", "", 0);
    expect_b64("Zg==", "f", 1);
    expect_b64("Zm8=", "fo", 2);
    expect_b64("Zm9v", "foo", 3);
    expect_b64("Zm9vYg==", "foob", 4);
    expect_b64("Zm9vYmE=", "fooba", 5);
    expect_b64("Zm9vYmFy", "foobar", 6);
    /* unpadded (base64url style) */
    expect_b64("Zg", "f", 1);
    expect_b64("Zm8", "fo", 2);
}

static void test_b64_alphabets(void **state)
{
    (void)state;
    expect_b64("+/8=", "\xfb\xff", 2);
    expect_b64("-_8", "\xfb\xff", 2);
}

static void test_b64_malformed(void **state)
{
    (void)state;
    expect_b64_bad("Z");        /* 1 mod 4 */
    expect_b64_bad("Zm9vY");    /* 1 mod 4 */
    expect_b64_bad("Zg=");      /* padding does not complete a quantum */
    expect_b64_bad("Zg===");    /* three '=' */
    expect_b64_bad("Z=g=");     /* padding in the middle */
    expect_b64_bad("Zm 9v");    /* whitespace */
    expect_b64_bad("Zm9v\n");   /* newline */
    expect_b64_bad("Zh==");     /* non-zero trailing bits */
    expect_b64_bad("Zm9=");     /* non-zero trailing bits */
    expect_b64_bad("Zm9v*A=="); /* outside both alphabets */
}

static void test_b64_embedded_nul(void **state)
{
    unsigned char *out = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(torii_b64_decode("Zg\0=", 4, &out, &n), TORII_EINVAL);
    assert_null(out);
}

static void test_b64_mime(void **state)
{
    const char *pem = "\r\n  Zm9v\nYmFy\r\n";
    const char *padded = "Zm9v\nYg==\n";
    unsigned char *out = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(torii_b64_decode_mime(pem, strlen(pem), &out, &n), TORII_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "foobar", 6);
    free(out);
    assert_int_equal(torii_b64_decode_mime(padded, strlen(padded), &out, &n), TORII_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "foob", 4);
    free(out);
    out = NULL;
    assert_int_equal(torii_b64_decode_mime("Zm9v*", 5, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_b64_decode_mime("Zg==x", 5, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_b64_decode_mime("Zm9vY", 5, &out, &n), TORII_EINVAL);
    assert_null(out);
}

static void test_hex_decode(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(torii_hex_decode("00ff7Aa5", 8, out, 4), TORII_OK);
    assert_memory_equal(out, "\x00\xff\x7a\xa5", 4);
    assert_int_equal(torii_hex_decode("00ff7A", 6, out, 4), TORII_EINVAL);    /* short */
    assert_int_equal(torii_hex_decode("00ff7Aa5b", 9, out, 4), TORII_EINVAL); /* long */
    assert_int_equal(torii_hex_decode("00fg7Aa5", 8, out, 4), TORII_EINVAL);  /* not hex */
    assert_int_equal(torii_hex_decode(NULL, 0, out, 0), TORII_EINVAL);
}

static void test_pct_decode(void **state)
{
    char *out = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(torii_pct_decode("a%2Fb%2fc+d", 11, 0, &out, &n), TORII_OK);
    assert_string_equal(out, "a/b/c+d");
    assert_int_equal(n, 7);
    free(out);
    assert_int_equal(torii_pct_decode("a+b%20c", 7, 1, &out, &n), TORII_OK);
    assert_string_equal(out, "a b c");
    free(out);
    assert_int_equal(torii_pct_decode("", 0, 0, &out, &n), TORII_OK);
    assert_int_equal(n, 0);
    free(out);
    /* Only len bytes are read: a '%' at the end of the slice is truncated, not read past. */
    assert_int_equal(torii_pct_decode("ab%41", 4, 0, &out, &n), TORII_EINVAL);
}

static void test_pct_malformed(void **state)
{
    char *out = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(torii_pct_decode("%", 1, 0, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_pct_decode("%4", 2, 0, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_pct_decode("%4g", 3, 0, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_pct_decode("%00", 3, 0, &out, &n), TORII_EINVAL);
    assert_int_equal(torii_pct_decode("a\0b", 3, 0, &out, &n), TORII_EINVAL);
    assert_null(out);
}

static void expect_b64_enc(const char *in, const char *std, const char *url)
{
    char buf[64];
    size_t n = 0;
    char *s;

    assert_true(TORII_B64_ENCODED_MAX(strlen(in)) < sizeof(buf));
    assert_int_equal(torii_b64_encode_to(in, strlen(in), 0, buf), strlen(std));
    assert_string_equal(buf, std);
    s = torii_b64_encode(in, strlen(in), 1, &n);
    assert_string_equal(s, url);
    assert_int_equal(n, strlen(url));
    free(s);
}

/* RFC 4648 section 10 vectors, padded and URL-safe without padding. */
static void test_b64_encode_vectors(void **state)
{
    (void)state;
    expect_b64_enc("", "", "");
    expect_b64_enc("f", "Zg==", "Zg");
    expect_b64_enc("fo", "Zm8=", "Zm8");
    expect_b64_enc("foo", "Zm9v", "Zm9v");
    expect_b64_enc("foob", "Zm9vYg==", "Zm9vYg");
    expect_b64_enc("fooba", "Zm9vYmE=", "Zm9vYmE");
    expect_b64_enc("foobar", "Zm9vYmFy", "Zm9vYmFy");
    /* The two alphabets differ only in 62 and 63. */
    expect_b64_enc("\xfb\xff\xbf", "+/+/", "-_-_");
}

/* Every byte value and every length up to 3 blocks: what is encoded decodes back. */
static void test_b64_encode_roundtrip(void **state)
{
    unsigned char in[256];
    (void)state;

    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (unsigned char)(255 - i);
    }
    for (size_t len = 0; len <= sizeof(in); len += len < 9 ? 1 : 37) {
        for (int url = 0; url <= 1; url++) {
            size_t n = 0;
            size_t m = 0;
            unsigned char *back = NULL;
            char *s = torii_b64_encode(in, len, url, &n);

            assert_true(n <= TORII_B64_ENCODED_MAX(len));
            assert_int_equal(torii_b64_decode(s, n, &back, &m), TORII_OK);
            assert_int_equal(m, len);
            assert_memory_equal(back, in, len);
            free(back);
            free(s);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_rfc4648_vectors),
        cmocka_unit_test(test_b64_encode_vectors),
        cmocka_unit_test(test_b64_encode_roundtrip),
        cmocka_unit_test(test_b64_alphabets),
        cmocka_unit_test(test_b64_malformed),
        cmocka_unit_test(test_b64_embedded_nul),
        cmocka_unit_test(test_b64_mime),
        cmocka_unit_test(test_hex_decode),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_pct_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
