/* test_core_metrics.c - the lock-free counters and the Prometheus text writer: escaping, name
 * and label validation, number formatting, one HELP/TYPE per family, concurrent adds. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/metrics.h"

static int setup(void **state)
{
    (void)state;
    torii_metrics_reset();
    return 0;
}

static void test_prom_sample_escapes_label_values(void **state)
{
    struct torii_prom p = {0};
    const char *labels[] = {"id", "a\"b\\c\nd", "domain", "x.example"};

    (void)state;
    assert_int_equal(torii_prom_sample(&p, "torii_x", labels, 2, 1), 0);
    assert_string_equal(torii_prom_text(&p, NULL),
                        "torii_x{id=\"a\\\"b\\\\c\\nd\",domain=\"x.example\"} 1\n");
    torii_prom_clear(&p);
}

static void test_prom_sample_formats_numbers(void **state)
{
    struct torii_prom p = {0};

    (void)state;
    assert_int_equal(torii_prom_sample(&p, "a", NULL, 0, 1796620969.5), 0);
    assert_int_equal(torii_prom_sample(&p, "b", NULL, 0, -3), 0);
    assert_int_equal(torii_prom_sample(&p, "c", NULL, 0, 0.0 / 0.0), 0);
    assert_int_equal(torii_prom_sample(&p, "d", NULL, 0, 1.0 / 0.0), 0);
    assert_int_equal(torii_prom_sample(&p, "e", NULL, 0, 1796620969000.0 / 1000.0), 0);
    assert_string_equal(torii_prom_text(&p, NULL),
                        "a 1796620969.5\nb -3\nc NaN\nd +Inf\ne 1796620969\n");
    torii_prom_clear(&p);
}

static void test_prom_bad_names_are_rejected_and_write_nothing(void **state)
{
    struct torii_prom p = {0};
    const char *bad_key[] = {"1x", "v"};
    const char *reserved[] = {"__name__", "v"};
    size_t len = 0;

    (void)state;
    assert_int_equal(torii_prom_sample(&p, "9bad", NULL, 0, 1), -2);
    assert_int_equal(torii_prom_sample(&p, "bad-name", NULL, 0, 1), -2);
    assert_int_equal(torii_prom_sample(&p, "", NULL, 0, 1), -2);
    assert_int_equal(torii_prom_sample(&p, "ok", bad_key, 1, 1), -2);
    assert_int_equal(torii_prom_sample(&p, "ok", reserved, 1, 1), -2);
    assert_int_equal(torii_prom_family(&p, "ok", "histogramm", "x"), -2);
    assert_int_equal(torii_prom_family(&p, "a b", "gauge", "x"), -2);
    (void)torii_prom_text(&p, &len);
    assert_int_equal(len, 0);
    torii_prom_clear(&p);
}

static void test_prom_family_escapes_help(void **state)
{
    struct torii_prom p = {0};

    (void)state;
    assert_int_equal(torii_prom_family(&p, "ns:x_total", "counter", "a\\b\nc \"q\""), 0);
    assert_string_equal(torii_prom_text(&p, NULL),
                        "# HELP ns:x_total a\\\\b\\nc \"q\"\n# TYPE ns:x_total counter\n");
    torii_prom_clear(&p);
}

/* Every family of the built-in counters is declared once, before its samples. */
static void test_prom_counters_declare_each_family_once(void **state)
{
    struct torii_prom p = {0};
    char *text;
    char *save = NULL;
    char *line;
    char types[64][96];
    size_t n_types = 0;

    (void)state;
    torii_metrics_add(TORII_METRIC_HANDSHAKE_OK, 5);
    torii_metrics_http_status(204);
    torii_metrics_http_status(503);
    torii_metrics_http_status(99);  /* ignored */
    torii_metrics_http_status(600); /* ignored */
    torii_prom_counters(&p);
    text = torii_prom_take(&p, NULL);
    assert_non_null(strstr(text, "torii_tls_handshakes_total{outcome=\"ok\"} 5\n"));
    assert_non_null(strstr(text, "torii_tls_handshakes_total{outcome=\"failed\"} 0\n"));
    assert_non_null(strstr(text, "torii_http_requests_total{class=\"2xx\"} 1\n"));
    assert_non_null(strstr(text, "torii_http_requests_total{class=\"5xx\"} 1\n"));
    assert_non_null(strstr(text, "torii_http_requests_total{class=\"1xx\"} 0\n"));
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char *name = line + 7;
            *strchr(name, ' ') = '\0';
            for (size_t i = 0; i < n_types; i++) {
                assert_string_not_equal(types[i], name);
            }
            assert_true(n_types < 64);
            (void)snprintf(types[n_types++], sizeof(types[0]), "%s", name);
        } else if (line[0] != '#') {
            size_t nl = strcspn(line, "{ ");
            assert_true(n_types > 0);
            /* A sample belongs to the family declared last. */
            assert_int_equal(strlen(types[n_types - 1]), nl);
            assert_memory_equal(types[n_types - 1], line, nl);
        }
    }
    free(text);
}

static void test_prom_escape_label_truncates_safely(void **state)
{
    char out[6];

    (void)state;
    assert_string_equal(torii_prom_escape_label("\"\"\"", out, sizeof(out)), "\\\"\\\"\\");
    assert_string_equal(torii_prom_escape_label("ab", out, sizeof(out)), "ab");
}

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        torii_metrics_inc(TORII_METRIC_CONN_ACCEPTED);
    }
    return NULL;
}

static void test_metrics_concurrent_adds_are_not_lost(void **state)
{
    pthread_t t[8];

    (void)state;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_int_equal(torii_metrics_get(TORII_METRIC_CONN_ACCEPTED), 800000);
    torii_metrics_add(TORII_METRIC_CONN_OPEN, 3);
    torii_metrics_add(TORII_METRIC_CONN_OPEN, -2);
    assert_int_equal(torii_metrics_get(TORII_METRIC_CONN_OPEN), 1);
    assert_int_equal(torii_metrics_get(TORII_METRIC_COUNT), 0); /* out of range */
}

/* Durations are kept in microseconds and written in seconds, exactly; a max gauge keeps the
 * largest value from any thread rather than a sum. */
static void *maxer(void *arg)
{
    torii_metrics_max(TORII_METRIC_CERT_PARSE_MAX_SECONDS, *(const int64_t *)arg);
    return NULL;
}

static void test_metrics_durations_and_max(void **state)
{
    struct torii_prom p = {0};
    pthread_t t[3];
    int64_t v[3] = {700, 250, 1999};
    char *text;

    (void)state;
    torii_metrics_inc(TORII_METRIC_CERT_PARSE);
    torii_metrics_inc(TORII_METRIC_CERT_PARSE);
    torii_metrics_add(TORII_METRIC_CERT_PARSE_SECONDS, 215);
    torii_metrics_add(TORII_METRIC_CERT_PARSE_SECONDS, 1000000);
    torii_metrics_max(TORII_METRIC_CERT_PARSE_MAX_SECONDS, 300);
    torii_metrics_max(TORII_METRIC_CERT_PARSE_MAX_SECONDS, 120); /* lower: ignored */
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE_MAX_SECONDS), 300);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, maxer, &v[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_int_equal(torii_metrics_get(TORII_METRIC_CERT_PARSE_MAX_SECONDS), 1999);
    torii_prom_counters(&p);
    text = torii_prom_take(&p, NULL);
    assert_non_null(strstr(text, "\ntorii_tls_cert_parse_total 2\n"));
    assert_non_null(strstr(text, "\ntorii_tls_cert_parse_seconds_total 1.000215\n"));
    assert_non_null(strstr(text, "\ntorii_tls_cert_parse_max_seconds 0.001999\n"));
    assert_non_null(strstr(text, "# TYPE torii_tls_cert_parse_max_seconds gauge\n"));
    free(text);
    torii_metrics_reset();
    torii_metrics_add(TORII_METRIC_CERT_PARSE_SECONDS, 3000000);
    torii_prom_counters(&p);
    text = torii_prom_take(&p, NULL);
    assert_non_null(strstr(text, "\ntorii_tls_cert_parse_seconds_total 3\n"));
    assert_non_null(strstr(text, "\ntorii_tls_cert_parse_max_seconds 0\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_prom_sample_escapes_label_values, setup),
        cmocka_unit_test_setup(test_prom_sample_formats_numbers, setup),
        cmocka_unit_test_setup(test_prom_bad_names_are_rejected_and_write_nothing, setup),
        cmocka_unit_test_setup(test_prom_family_escapes_help, setup),
        cmocka_unit_test_setup(test_prom_counters_declare_each_family_once, setup),
        cmocka_unit_test_setup(test_prom_escape_label_truncates_safely, setup),
        cmocka_unit_test_setup(test_metrics_concurrent_adds_are_not_lost, setup),
        cmocka_unit_test_setup(test_metrics_durations_and_max, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
