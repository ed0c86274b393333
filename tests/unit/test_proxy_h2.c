/* test_proxy_h2.c - the HTTP/2 message checks of src/proxy/h2msg.c (RFC 9113 section 8.2
 * and 8.3), one case per rule, and the pipe stream (torii_stream_pipe) that carries an
 * HTTP/2 stream's request into the HTTP/1.1 engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "h2_int.h"
#include "torii/stream.h"

static enum h2_field_kind kind(const char *name, const char *value, size_t vlen)
{
    const char *why = NULL;
    enum h2_field_kind k = torii_proxy__h2_field_kind((const uint8_t *)name, strlen(name),
                                                      (const uint8_t *)value, vlen, &why);

    assert_true(k == H2F_MALFORMED ? why != NULL : why == NULL);
    return k;
}

#define KIND(n, v) kind((n), (v), strlen(v))

static void test_regular_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND("accept", "*/*"), H2F_REGULAR);
    assert_int_equal(KIND("x-custom_1", "a b\tc"), H2F_REGULAR);
    assert_int_equal(KIND("te", "trailers"), H2F_REGULAR);
    assert_int_equal(KIND("content-length", "5"), H2F_REGULAR);
    assert_int_equal(KIND("x-empty", ""), H2F_REGULAR);
}

#define TRL(n) torii_proxy__h2_trailer_ok((n), strlen(n))

static void test_trailer_fields(void **state)
{
    (void)state;
    assert_int_equal(TRL("grpc-status"), 1);
    assert_int_equal(TRL("grpc-message"), 1);
    assert_int_equal(TRL("X-Checksum"), 1);
    assert_int_equal(TRL(""), 0);
    assert_int_equal(TRL(":status"), 0);
    assert_int_equal(TRL("Connection"), 0);
    assert_int_equal(TRL("keep-alive"), 0);
    assert_int_equal(TRL("Transfer-Encoding"), 0);
    assert_int_equal(TRL("upgrade"), 0);
    assert_int_equal(TRL("TE"), 0);
    assert_int_equal(TRL("trailer"), 0);
    assert_int_equal(TRL("content-length"), 0);
    assert_int_equal(TRL("Host"), 0);
    assert_int_equal(TRL("grpc-statu"), 1);
}

static void test_pseudo_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND(":method", "GET"), H2F_PSEUDO);
    assert_int_equal(KIND(":scheme", "https"), H2F_PSEUDO);
    assert_int_equal(KIND(":authority", "a.test"), H2F_PSEUDO);
    assert_int_equal(KIND(":path", "/"), H2F_PSEUDO);
    assert_int_equal(KIND(":status", "200"), H2F_MALFORMED);
    assert_int_equal(KIND(":protocol", "websocket"), H2F_PSEUDO);
    assert_int_equal(KIND(":foo", "x"), H2F_MALFORMED);
}

static void test_malformed_fields(void **state)
{
    (void)state;
    assert_int_equal(KIND("X-Upper", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("sp ace", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("colon:inside", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("", "1"), H2F_MALFORMED);
    assert_int_equal(KIND("connection", "close"), H2F_MALFORMED);
    assert_int_equal(KIND("keep-alive", "5"), H2F_MALFORMED);
    assert_int_equal(KIND("proxy-connection", "x"), H2F_MALFORMED);
    assert_int_equal(KIND("transfer-encoding", "chunked"), H2F_MALFORMED);
    assert_int_equal(KIND("upgrade", "h2c"), H2F_MALFORMED);
    assert_int_equal(KIND("te", "gzip"), H2F_MALFORMED);
    assert_int_equal(KIND("te", "trailers, gzip"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "1\r\nx-b: 2"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "1\n"), H2F_MALFORMED);
    assert_int_equal(kind("x-a", "1\0002", 3), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", " lead"), H2F_MALFORMED);
    assert_int_equal(KIND("x-a", "trail\t"), H2F_MALFORMED);
}

static int pseudo(const char *m, const char *s, const char *a, const char *p, const char *h)
{
    const char *why = NULL;
    int rc = torii_proxy__h2_pseudo_check(m, s, a, p, h, &why);

    assert_true(rc == 0 ? why == NULL : why != NULL);
    return rc;
}

static void test_pseudo_set(void **state)
{
    (void)state;
    assert_int_equal(pseudo("GET", "https", "a.test", "/x?y=1", NULL), 0);
    assert_int_equal(pseudo("GET", "https", NULL, "/", "a.test"), 0);
    assert_int_equal(pseudo("GET", "https", "a.test", "/", "A.TEST"), 0);
    assert_int_equal(pseudo("OPTIONS", "https", "a.test", "*", NULL), 0);
    assert_int_equal(pseudo(NULL, "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", NULL, "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", NULL, NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "x", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "*", NULL), -1);
    assert_int_equal(pseudo("GET", "http", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GE T", "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("", "https", "a.test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/a b", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/\x7f", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a .test", "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", NULL, "/", NULL), -1);
    assert_int_equal(pseudo("GET", "https", "a.test", "/", "b.test"), -1);
}

static int pipe_sent;

static int pipe_send(struct torii_stream *s, void *arg)
{
    struct evbuffer *out = torii_stream_output(s);

    pipe_sent += (int)evbuffer_get_length(out);
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    return *(int *)arg;
}

static void test_pipe_stream(void **state)
{
    int rc = TORII_OK;
    struct torii_stream *s = torii_stream_pipe(NULL, pipe_send, &rc);

    (void)state;
    assert_non_null(s);
    assert_true(torii_stream_established(s));
    assert_null(torii_stream_ssl(s));
    assert_int_equal(torii_stream_reading(s), 0);
    torii_stream_read(s, 1);
    assert_int_equal(torii_stream_reading(s), 1);
    torii_stream_timeouts(s, 10, 10); /* no events: nothing armed */
    torii_stream_shutdown(s);
    assert_int_equal(evbuffer_add(torii_stream_output(s), "hello", 5), 0);
    assert_int_equal(torii_stream_unsent(s), 5);
    assert_int_equal(torii_stream_flush(s), TORII_OK);
    assert_int_equal(pipe_sent, 5);
    assert_int_equal(torii_stream_unsent(s), 0);
    rc = TORII_EIO;
    assert_int_equal(torii_stream_flush(s), TORII_EIO);
    assert_int_equal(evbuffer_add(torii_stream_input(s), "in", 2), 0);
    assert_int_equal(evbuffer_get_length(torii_stream_input(s)), 2);
    torii_stream_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regular_fields), cmocka_unit_test(test_trailer_fields),
        cmocka_unit_test(test_pseudo_fields),  cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_pseudo_set),     cmocka_unit_test(test_pipe_stream),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
