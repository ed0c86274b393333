/* test_conf_config.c - the configuration parser (src/conf/config.c) key by key: every
 * embedded default, every key of the schema given a value of the wrong type or out of range
 * (exactly one problem, naming the key and what was expected) and accepted at its bounds,
 * unknown keys refused in every section (comments allowed), contradictory settings refused
 * by torii_config_check, and the environment applied after the file.
 * (test_conf.c covers the collection of problems, listeners and reload checks.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testfile.h"
#include "torii/conf.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A temporary file holding text; its path in path (64 bytes). */
static void write_conf(char *path, const char *text)
{
    assert_int_equal(testfile_write(path, 64, "confcfg", text), 0);
}

/* torii_config_check of text; errs filled (caller frees), the config freed. */
static int check_text(const char *text, struct torii_conf_errs *errs)
{
    char path[64];
    struct torii_config *cfg = NULL;
    int rc;

    write_conf(path, text);
    rc = torii_config_check(path, &cfg, errs);
    torii_config_free(cfg);
    (void)unlink(path);
    return rc;
}

static void print_errs(const struct torii_conf_errs *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        print_message("  errs[%zu] = %s\n", i, errs->msgs[i]);
    }
}

/* text has exactly one problem, and it is want. */
static void expect_one(const char *text, const char *want)
{
    struct torii_conf_errs errs = {NULL, 0};
    int rc = check_text(text, &errs);

    if (rc != TORII_EINVAL || errs.n != 1 || strcmp(errs.msgs[0], want) != 0) {
        print_errs(&errs);
        fail_msg("%s: expected exactly \"%s\"", text, want);
    }
    torii_conf_errs_free(&errs);
}

/* No problem of text mentions fragment. */
static void expect_none_with(const char *text, const char *fragment)
{
    struct torii_conf_errs errs = {NULL, 0};

    (void)check_text(text, &errs);
    for (size_t i = 0; i < errs.n; i++) {
        if (strstr(errs.msgs[i], fragment) != NULL) {
            print_errs(&errs);
            fail_msg("%s: unexpected problem about \"%s\"", text, fragment);
        }
    }
    torii_conf_errs_free(&errs);
}

/* The JSON document giving value to the dotted key path ("a.b" -> {"a":{"b":value}}). */
static void doc_for(const char *path, const char *value, char *out, size_t cap)
{
    const char *dot = strchr(path, '.');
    int n;

    if (dot == NULL) {
        n = snprintf(out, cap, "{\"%s\": %s}", path, value);
    } else {
        n = snprintf(out, cap, "{\"%.*s\": {\"%s\": %s}}", (int)(dot - path), path, dot + 1, value);
    }
    assert_true(n > 0 && (size_t)n < cap);
}

static int setup(void **state)
{
    (void)state;
    (void)unsetenv("TORII_ADMIN_TOKEN");
    (void)unsetenv("STATE_DIRECTORY");
    return 0;
}

/* ---- defaults ----------------------------------------------------------------------------- */

static void test_defaults_without_a_file(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_config *c = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    (void)state;
    assert_int_equal(torii_config_load(NULL, &c, &eb), TORII_OK);
    assert_string_equal(c->data_dir, "./data");
    assert_int_equal(c->workers, ncpu > 0 ? (unsigned)ncpu : 1);
    assert_string_equal(c->listen_https, "0.0.0.0:8443");
    assert_string_equal(c->listen_http, "0.0.0.0:8080");
    assert_string_equal(c->admin_listen, "127.0.0.1:9000");
    assert_null(c->admin_token);
    assert_string_equal(c->admin_client_id, "admin");
    assert_int_equal(c->n_admin_tokens, 0);
    assert_null(c->admin_audit_log);
    assert_int_equal(c->admin_auth_fail_limit, 10);
    assert_int_equal(c->admin_auth_fail_window_s, 60);
    assert_string_equal(c->default_cert, TORII_CONF_DEFAULT_CERT_ID);
    assert_false(c->strict_sni);
    assert_true(c->strict_host);
    assert_int_equal(c->ticket_rotate_s, 3600);
    assert_string_equal(c->log_level, "info");
    assert_true(c->access_log);
    assert_null(c->access_log_path);
    assert_string_equal(c->access_log_format, "json");
    assert_int_equal(c->shutdown_timeout_s, 30);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->max_headers, 100);
    assert_int_equal(c->max_target, 8192);
    assert_int_equal(c->max_body, (size_t)1 << 30);
    assert_int_equal(c->admin_max_body, (size_t)8 << 20);
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->max_conns_per_worker, 20000);
    assert_int_equal(c->renewal_interval_s, 3600);
    assert_int_equal(c->renewal_threshold_pct, 20);
    assert_int_equal(c->renewal_jitter_s, 600);
    assert_int_equal(c->renewal_initial_delay_s, 60);
    assert_int_equal(c->renewal_retry_min_s, 60);
    assert_int_equal(c->renewal_retry_max_s, 21600);
    assert_true(c->renewal_delete_expired_copies);
    assert_int_equal(c->alerts_almost_expired_days, 15);
    assert_int_equal(c->alerts_repeat_s, 0);
    assert_false(c->debug_clock_hook);
    assert_null(c->debug_stall_file);
    assert_string_equal(c->health_public_path, "");
    assert_null(c->routes);
    assert_int_equal(c->n_exporters, 0);
    torii_config_free(c);
}

static void test_defaults_data_dir_from_systemd_and_workers_zero(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_config *c = NULL;
    char path[64];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    (void)state;
    assert_int_equal(setenv("STATE_DIRECTORY", "/var/lib/torii", 1), 0);
    write_conf(path, "{\"workers\": 0}");
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_OK);
    assert_string_equal(c->data_dir, "/var/lib/torii");
    assert_int_equal(c->workers, ncpu > 0 ? (unsigned)ncpu : 1); /* 0: one per CPU */
    torii_config_free(c);
    (void)unlink(path);
    (void)unsetenv("STATE_DIRECTORY");
}

/* ---- every key: type and range ------------------------------------------------------------ */

enum kt { K_STR, K_BOOL, K_INT, K_ARRAY, K_OBJECT };

struct key_case {
    const char *path;
    enum kt type;
    unsigned long long max; /* K_INT */
};

/* The schema as documented (docs/operations.md): each key, its type and its upper bound. */
static const struct key_case keys[] = {
    {"data_dir", K_STR, 0},
    {"workers", K_INT, 256},
    {"log_level", K_STR, 0},
    {"access_log.enabled", K_BOOL, 0},
    {"access_log.path", K_STR, 0},
    {"access_log.format", K_STR, 0},
    {"shutdown_timeout_s", K_INT, 86400},
    {"listen.https", K_STR, 0},
    {"listen.http", K_STR, 0},
    {"admin.listen", K_STR, 0},
    {"admin.token", K_STR, 0},
    {"admin.client_id", K_STR, 0},
    {"admin.max_body", K_INT, 1ULL << 31},
    {"admin.tokens", K_ARRAY, 0},
    {"admin.audit_log", K_STR, 0},
    {"admin.hosts", K_ARRAY, 0},
    {"admin.tls", K_OBJECT, 0},
    {"admin.auth_fail_limit", K_INT, 1000000},
    {"admin.auth_fail_window_s", K_INT, 86400},
    {"tls.default_cert", K_STR, 0},
    {"tls.strict_sni", K_BOOL, 0},
    {"tls.strict_host", K_BOOL, 0},
    {"tls.ticket_rotate_s", K_INT, 86400 * 7},
    {"limits.max_header_bytes", K_INT, 1 << 20},
    {"limits.max_headers", K_INT, 10000},
    {"limits.max_target", K_INT, 1 << 20},
    {"limits.max_body", K_INT, 1ULL << 40},
    {"limits.header_timeout_ms", K_INT, 3600000},
    {"limits.idle_timeout_ms", K_INT, 3600000},
    {"limits.max_conns_per_worker", K_INT, 1000000},
    {"renewal.interval_s", K_INT, 86400 * 30},
    {"renewal.threshold_pct", K_INT, 99},
    {"renewal.jitter_s", K_INT, 86400},
    {"renewal.initial_delay_s", K_INT, 86400},
    {"renewal.retry_min_s", K_INT, 86400},
    {"renewal.retry_max_s", K_INT, 86400 * 7},
    {"renewal.delete_expired_copies", K_BOOL, 0},
    {"alerts.almost_expired_days", K_INT, 3650},
    {"alerts.repeat_s", K_INT, 86400 * 30},
    {"debug.clock_hook", K_BOOL, 0},
    {"debug.stall_file", K_STR, 0},
    {"health.public_path", K_STR, 0},
    {"routes", K_ARRAY, 0},
    {"exporters", K_ARRAY, 0},
    {"pki", K_OBJECT, 0},
};

static void check_int_key(const struct key_case *k, char *doc, size_t cap)
{
    char want[160];
    char v[32];

    (void)snprintf(want, sizeof(want), "config: %s: expected an integer from 0 to %llu", k->path,
                   k->max);
    doc_for(k->path, "\"12\"", doc, cap);
    expect_one(doc, want);
    doc_for(k->path, "-1", doc, cap);
    expect_one(doc, want);
    doc_for(k->path, "1.5", doc, cap);
    expect_one(doc, want);
    (void)snprintf(v, sizeof(v), "%llu", k->max + 1);
    doc_for(k->path, v, doc, cap);
    expect_one(doc, want);
    /* The bound itself is no type or range problem (other checks may still apply). */
    (void)snprintf(v, sizeof(v), "%llu", k->max);
    doc_for(k->path, v, doc, cap);
    (void)snprintf(want, sizeof(want), "config: %s: expected an integer", k->path);
    expect_none_with(doc, want);
}

/* Per type (enum kt order, but K_INT: check_int_key): wrong values and the problem's text. */
static const struct {
    const char *bad[2];
    const char *expected;
} type_cases[] = {
    {{"7", "null"}, "a string"}, {{"\"true\"", "1"}, "true or false"}, {{NULL, NULL}, NULL},
    {{"{}", NULL}, "an array"},  {{"[]", NULL}, "an object"},
};

static void test_every_key_refuses_wrong_types_naming_it(void **state)
{
    char doc[256];
    char want[160];

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct key_case *k = &keys[i];
        if (k->type == K_INT) {
            check_int_key(k, doc, sizeof(doc));
            continue;
        }
        (void)snprintf(want, sizeof(want), "config: %s: expected %s", k->path,
                       type_cases[k->type].expected);
        for (size_t v = 0; v < 2 && type_cases[k->type].bad[v] != NULL; v++) {
            doc_for(k->path, type_cases[k->type].bad[v], doc, sizeof(doc));
            expect_one(doc, want);
        }
    }
}

static void test_values_are_applied(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_config *c = NULL;
    char path[64];

    (void)state;
    write_conf(path, "{\"data_dir\": \"/srv/torii\", \"workers\": 3, \"log_level\": \"debug\","
                     " \"listen\": {\"https\": \"127.0.0.1:1443\", \"http\": \"\"},"
                     " \"admin\": {\"listen\": \"127.0.0.1:1900\", \"client_id\": \"ops\","
                     "  \"max_body\": 1024, \"audit_log\": \"/tmp/a.log\"},"
                     " \"tls\": {\"default_cert\": \"edge\", \"ticket_rotate_s\": 60},"
                     " \"limits\": {\"max_body\": 0, \"idle_timeout_ms\": 1, \"max_headers\": 7},"
                     " \"renewal\": {\"interval_s\": 0, \"retry_min_s\": 5, \"retry_max_s\": 5},"
                     " \"alerts\": {\"repeat_s\": 3600},"
                     " \"debug\": {\"clock_hook\": true, \"stall_file\": \"/tmp/s\"},"
                     " \"health\": {\"public_path\": \"/lb\"}, \"routes\": []}");
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_OK);
    assert_string_equal(c->data_dir, "/srv/torii");
    assert_int_equal(c->workers, 3);
    assert_string_equal(c->log_level, "debug");
    assert_string_equal(c->listen_https, "127.0.0.1:1443");
    assert_string_equal(c->listen_http, ""); /* disabled */
    assert_string_equal(c->admin_listen, "127.0.0.1:1900");
    assert_string_equal(c->admin_client_id, "ops");
    assert_int_equal(c->admin_max_body, 1024);
    assert_string_equal(c->admin_audit_log, "/tmp/a.log");
    assert_string_equal(c->default_cert, "edge");
    assert_int_equal(c->ticket_rotate_s, 60);
    assert_int_equal(c->max_body, 0);
    assert_int_equal(c->idle_timeout_ms, 1);
    assert_int_equal(c->max_headers, 7);
    assert_int_equal(c->renewal_interval_s, 0);
    assert_int_equal(c->renewal_retry_min_s, 5);
    assert_int_equal(c->renewal_retry_max_s, 5);
    assert_int_equal(c->alerts_repeat_s, 3600);
    assert_true(c->debug_clock_hook);
    assert_string_equal(c->debug_stall_file, "/tmp/s");
    assert_string_equal(c->health_public_path, "/lb");
    assert_non_null(c->routes);
    assert_int_equal(json_array_size(c->routes), 0);
    torii_config_free(c);
    (void)unlink(path);
}

/* ---- unknown keys ------------------------------------------------------------------------- */

static void test_unknown_keys_refused_everywhere(void **state)
{
    static const char *const sections[] = {"listen", "admin", "tls",    "limits",    "renewal",
                                           "alerts", "debug", "health", "access_log"};
    char doc[256];
    char want[160];

    (void)state;
    expect_one("{\"worker\": 2}", "config: unknown key \"worker\"");
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        (void)snprintf(doc, sizeof(doc), "{\"%s\": {\"bogus\": 1}}", sections[i]);
        (void)snprintf(want, sizeof(want), "config: unknown key \"%s.bogus\"", sections[i]);
        expect_one(doc, want);
    }
    expect_one("{\"pki\": {\"bogus\": 1}}", "config: unknown key \"pki.bogus\"");
    expect_one("{\"exporters\": [{\"type\": \"log\", \"url\": \"http://x.test/\"}]}",
               "config: exporters[0]: unknown key \"url\" for type log");
    expect_one("{\"exporters\": [{\"type\": \"webhook\", \"url\": \"http://127.0.0.1:1/\","
               " \"tls\": {\"bogus\": true}}]}",
               "config: exporters[0].tls: unknown key \"bogus\"");
    /* A section given as something else than an object. */
    expect_one("{\"limits\": 5}", "config: limits: expected an object");
    /* Comments ("//..." members) are not keys, at the top and in sections. */
    expect_none_with("{\"// why\": \"x\", \"limits\": {\"// note\": 1, \"max_headers\": 5}}",
                     "unknown key");
    {
        struct torii_conf_errs errs = {NULL, 0};
        assert_int_equal(
            check_text("{\"// why\": \"x\", \"limits\": {\"// note\": 1, \"max_headers\": 5}}",
                       &errs),
            TORII_OK);
        torii_conf_errs_free(&errs);
    }
}

/* ---- contradictory and invalid combinations ------------------------------------------------ */

static void test_contradictory_settings_refused(void **state)
{
    (void)state;
    expect_one("{\"renewal\": {\"retry_min_s\": 600, \"retry_max_s\": 60}}",
               "config: renewal.retry_min_s must be >= 1 and <= renewal.retry_max_s");
    expect_one("{\"renewal\": {\"retry_min_s\": 0}}",
               "config: renewal.retry_min_s must be >= 1 and <= renewal.retry_max_s");
    expect_one("{\"renewal\": {\"threshold_pct\": 0}}",
               "config: renewal.threshold_pct: expected 1 to 99");
    expect_one("{\"listen\": {\"http\": \"127.0.0.1:9000\"}}",
               "config: listen.http (127.0.0.1:9000) and admin.listen (127.0.0.1:9000): the same "
               "port on overlapping addresses; each listener needs its own address and port");
    expect_one("{\"exporters\": [{\"type\": \"webhook\", \"url\": \"http://127.0.0.1:1/\","
               " \"retry_min_ms\": 5000, \"retry_max_ms\": 100}]}",
               "config: exporters[0]: retry_min_ms must not exceed retry_max_ms");
    expect_one("{\"exporters\": [{\"type\": \"log\", \"name\": \"a\"},"
               " {\"type\": \"log\", \"name\": \"a\"}]}",
               "config: exporters[1].name: duplicate name \"a\"");
    expect_one("{\"health\": {\"public_path\": \"/.well-known/health\"}}",
               "config: health.public_path: expected \"\" or a path starting with '/' (no "
               "query, spaces or /.well-known/), got \"/.well-known/health\"");
    expect_one("{\"health\": {\"public_path\": \"lb\"}}",
               "config: health.public_path: expected \"\" or a path starting with '/' (no "
               "query, spaces or /.well-known/), got \"lb\"");
    expect_one("{\"access_log\": {\"format\": \"clf\"}}",
               "config: access_log.format: expected json or combined");
    expect_one("{\"access_log\": {\"path\": \"access.log\"}}",
               "config: access_log.path: expected an absolute path");
    expect_one("{\"data_dir\": \"\"}", "config: data_dir is empty");
    expect_one("{\"tls\": {\"default_cert\": \"\"}}", "config: tls.default_cert is empty");
    expect_one("{\"log_level\": \"trace\"}",
               "config: log_level: expected err, warn, notice, info or debug");
    expect_one("{\"admin\": {\"token\": \"0123456789abcde\"}}",
               "config: admin.token must be at least 16 characters");
    expect_one("{\"admin\": {\"listen\": \"\"}}", "config: admin.listen: bad address \"\": "
                                                  "expected host:port");
    expect_one("{\"pki\": {\"ca_key\": \"dsa-1024\"}}",
               "config: pki.ca_key: expected ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa-2048, "
               "rsa-3072 or rsa-4096");
}

static void test_load_reports_the_first_problem_and_the_count(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_config *c = NULL;
    char path[64];

    (void)state;
    write_conf(path, "{\"workers\": -1, \"limits\": {\"max_headers\": \"x\"}}");
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_EINVAL);
    assert_null(c);
    assert_string_equal(eb.msg,
                        "config: workers: expected an integer from 0 to 256 (and 1 more problems)");
    (void)unlink(path);
}

/* ---- the environment ---------------------------------------------------------------------- */

static void test_environment_token_overrides_the_file(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_config *c = NULL;
    char path[64];

    (void)state;
    write_conf(path, "{\"admin\": {\"token\": \"file-token-0123456789\"}}");
    assert_int_equal(setenv("TORII_ADMIN_TOKEN", "env-token-0123456789", 1), 0);
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_OK);
    assert_string_equal(c->admin_token, "env-token-0123456789");
    torii_config_free(c);
    /* checked like the file's: too short is refused, named */
    assert_int_equal(setenv("TORII_ADMIN_TOKEN", "short", 1), 0);
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_EINVAL);
    assert_null(c);
    assert_string_equal(eb.msg, "config: admin.token must be at least 16 characters");
    /* empty: not set */
    assert_int_equal(setenv("TORII_ADMIN_TOKEN", "", 1), 0);
    assert_int_equal(torii_config_load(path, &c, &eb), TORII_OK);
    assert_string_equal(c->admin_token, "file-token-0123456789");
    torii_config_free(c);
    (void)unsetenv("TORII_ADMIN_TOKEN");
    (void)unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_a_file),
        cmocka_unit_test(test_defaults_data_dir_from_systemd_and_workers_zero),
        cmocka_unit_test(test_every_key_refuses_wrong_types_naming_it),
        cmocka_unit_test(test_values_are_applied),
        cmocka_unit_test(test_unknown_keys_refused_everywhere),
        cmocka_unit_test(test_contradictory_settings_refused),
        cmocka_unit_test(test_load_reports_the_first_problem_and_the_count),
        cmocka_unit_test(test_environment_token_overrides_the_file),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
