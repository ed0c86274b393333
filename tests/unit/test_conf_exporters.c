/* test_conf_exporters.c - the exporters[] section (src/conf/exporters_conf.c) through
 * torii_conf_exporters_validate: every member of each type parsed, the defaults, disabled
 * entries left out, each kind of bad entry refused with exactly one problem naming its index
 * and key, every entry checked (the bad ones noted, the good ones kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "torii/conf.h"

/* torii_conf_exporters_validate of the JSON array text in c (zeroed first); errs filled. */
static void validate(struct torii_config *c, const char *text, struct torii_conf_errs *errs)
{
    json_error_t jerr;

    memset(c, 0, sizeof(*c));
    c->exporters = json_loads(text, 0, &jerr);
    if (c->exporters == NULL) {
        fail_msg("test JSON does not parse: %s: %s", text, jerr.text);
    }
    torii_conf_exporters_validate(c, errs);
}

static void release(struct torii_config *c, struct torii_conf_errs *errs)
{
    torii_conf_exporters_clear(c);
    assert_null(c->exporter_list);
    assert_int_equal(c->n_exporters, 0);
    json_decref(c->exporters);
    torii_conf_errs_free(errs);
}

/* The one-entry array text has exactly one problem, want, and no exporter is kept. */
static void expect_one(const char *text, const char *want)
{
    struct torii_config c;
    struct torii_conf_errs errs = {NULL, 0};

    validate(&c, text, &errs);
    if (errs.n != 1 || strcmp(errs.msgs[0], want) != 0) {
        for (size_t i = 0; i < errs.n; i++) {
            print_message("  errs[%zu] = %s\n", i, errs.msgs[i]);
        }
        fail_msg("%s: expected exactly \"%s\"", text, want);
    }
    assert_int_equal(c.n_exporters, 0);
    release(&c, &errs);
}

static void test_webhook_every_member(void **state)
{
    struct torii_config c;
    struct torii_conf_errs errs = {NULL, 0};
    const struct torii_conf_exporter *e;

    (void)state;
    validate(&c,
             "[{\"type\": \"webhook\", \"name\": \"ops\", \"url\": \"https://127.0.0.1:9/h\","
             " \"// why\": \"comments are allowed\","
             " \"headers\": {\"X-Team\": \"certs\", \"Authorization\": \"Bearer t\"},"
             " \"tls\": {\"trusted_ca\": \"ca-1\", \"client_cert\": \"cli-1\", \"verify\": false,"
             " \"// note\": 1},"
             " \"alerts\": [\"CertExpiredAlert\", \"CertRenewalFailedAlert\"], \"queue_size\": 7,"
             " \"batch_size\": 3, \"batch_ms\": 0, \"timeout_ms\": 100, \"retry_min_ms\": 10,"
             " \"retry_max_ms\": 20, \"max_retries\": 0}]",
             &errs);
    assert_int_equal(errs.n, 0);
    assert_int_equal(c.n_exporters, 1);
    e = &c.exporter_list[0];
    assert_int_equal(e->type, TORII_CONF_EXPORTER_WEBHOOK);
    assert_string_equal(e->name, "ops");
    assert_string_equal(e->url, "https://127.0.0.1:9/h");
    assert_int_equal(e->n_headers, 2);
    assert_string_equal(e->headers[0], "X-Team: certs");
    assert_string_equal(e->headers[1], "Authorization: Bearer t");
    assert_string_equal(e->trusted_ca, "ca-1");
    assert_string_equal(e->client_cert, "cli-1");
    assert_int_equal(e->tls_verify, 0);
    assert_int_equal(e->n_alerts, 2);
    assert_string_equal(e->alerts[0], "CertExpiredAlert");
    assert_string_equal(e->alerts[1], "CertRenewalFailedAlert");
    assert_int_equal(e->queue_size, 7);
    assert_int_equal(e->batch_size, 3);
    assert_int_equal(e->batch_ms, 0);
    assert_int_equal(e->timeout_ms, 100);
    assert_int_equal(e->retry_min_ms, 10);
    assert_int_equal(e->retry_max_ms, 20);
    assert_int_equal(e->max_retries, 0);
    assert_null(e->path);
    release(&c, &errs);
}

static void test_defaults_and_disabled_entries(void **state)
{
    struct torii_config c;
    struct torii_conf_errs errs = {NULL, 0};
    const struct torii_conf_exporter *e;

    (void)state;
    validate(&c,
             "[{\"type\": \"log\"}, {\"type\": \"file\", \"path\": \"/x\", \"enabled\": false},"
             " {\"type\": \"file\", \"path\": \"/var/a.jsonl\", \"enabled\": true},"
             " {\"type\": \"webhook\", \"url\": \"http://127.0.0.1:1/\"}]",
             &errs);
    assert_int_equal(errs.n, 0);
    assert_int_equal(c.n_exporters, 3); /* the disabled one is left out */
    e = &c.exporter_list[0];
    assert_int_equal(e->type, TORII_CONF_EXPORTER_LOG);
    assert_string_equal(e->name, "log-0");
    assert_int_equal(e->n_alerts, 0);
    assert_int_equal(e->queue_size, 1000);
    e = &c.exporter_list[1];
    assert_int_equal(e->type, TORII_CONF_EXPORTER_FILE);
    assert_string_equal(e->name, "file-2"); /* named by its index in the array */
    assert_string_equal(e->path, "/var/a.jsonl");
    e = &c.exporter_list[2];
    assert_string_equal(e->name, "webhook-3");
    assert_int_equal(e->n_headers, 0);
    assert_null(e->trusted_ca);
    assert_null(e->client_cert);
    assert_int_equal(e->tls_verify, 1);
    assert_int_equal(e->batch_size, 100);
    assert_int_equal(e->batch_ms, 1000);
    assert_int_equal(e->timeout_ms, 10000);
    assert_int_equal(e->retry_min_ms, 1000);
    assert_int_equal(e->retry_max_ms, 60000);
    assert_int_equal(e->max_retries, 10);
    release(&c, &errs);
}

static void test_common_members_refused(void **state)
{
    (void)state;
    expect_one("[5]", "config: exporters[0]: expected an object");
    expect_one("[{}]", "config: exporters[0].type: expected \"webhook\", \"file\" or \"log\"");
    expect_one("[{\"type\": \"pigeon\"}]",
               "config: exporters[0].type: expected \"webhook\", \"file\" or \"log\"");
    expect_one("[{\"type\": 1}]",
               "config: exporters[0].type: expected \"webhook\", \"file\" or \"log\"");
    expect_one("[{\"type\": \"file\", \"path\": \"/a\", \"url\": \"http://127.0.0.1/\"}]",
               "config: exporters[0]: unknown key \"url\" for type file");
    expect_one("[{\"type\": \"log\", \"path\": \"/a\"}]",
               "config: exporters[0]: unknown key \"path\" for type log");
    expect_one("[{\"type\": \"log\", \"enabled\": \"no\"}]",
               "config: exporters[0].enabled: expected a boolean");
    expect_one("[{\"type\": \"log\", \"name\": \"\"}]",
               "config: exporters[0].name: expected a non-empty string");
    expect_one("[{\"type\": \"log\", \"alerts\": []}]",
               "config: exporters[0].alerts: expected a non-empty array of alert types");
    expect_one("[{\"type\": \"log\", \"alerts\": [\"CertExpiredAlert\", \"Nope\"]}]",
               "config: exporters[0].alerts[1]: unknown alert type");
    expect_one("[{\"type\": \"log\", \"queue_size\": 0}]",
               "config: exporters[0].queue_size: expected an integer from 1 to 1000000");
    expect_one("[{\"type\": \"file\"}]", "config: exporters[0].path: required for a file exporter");
}

static void test_webhook_members_refused(void **state)
{
    (void)state;
    expect_one("[{\"type\": \"webhook\"}]",
               "config: exporters[0].url: expected an http:// or https:// URL");
    expect_one("[{\"type\": \"webhook\", \"url\": \"ftp://127.0.0.1/\"}]",
               "config: exporters[0].url: expected an http:// or https:// URL");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"headers\": []}]",
               "config: exporters[0].headers: expected an object");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\","
               " \"headers\": {\"X-A\": \"a\\r\\nX-B: b\"}}]",
               "config: exporters[0].headers.X-A: bad header");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\","
               " \"headers\": {\"X:A\": \"a\"}}]",
               "config: exporters[0].headers.X:A: bad header");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"headers\": {\"X\": 1}}]",
               "config: exporters[0].headers.X: bad header");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"tls\": true}]",
               "config: exporters[0].tls: expected an object");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"tls\": {\"ca\": 1}}]",
               "config: exporters[0].tls: unknown key \"ca\"");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\","
               " \"tls\": {\"trusted_ca\": \"\"}}]",
               "config: exporters[0].tls.trusted_ca: expected a non-empty string");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\","
               " \"tls\": {\"client_cert\": 7}}]",
               "config: exporters[0].tls.client_cert: expected a non-empty string");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\","
               " \"tls\": {\"verify\": 0}}]",
               "config: exporters[0].tls.verify: expected a boolean");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"timeout_ms\": 99}]",
               "config: exporters[0].timeout_ms: expected an integer from 100 to 600000");
    expect_one("[{\"type\": \"webhook\", \"url\": \"http://127.0.0.1/\", \"retry_min_ms\": 500,"
               " \"retry_max_ms\": 400}]",
               "config: exporters[0]: retry_min_ms must not exceed retry_max_ms");
}

static void test_every_entry_checked(void **state)
{
    struct torii_config c;
    struct torii_conf_errs errs = {NULL, 0};

    (void)state;
    validate(&c,
             "[{\"type\": \"log\", \"name\": \"a\"}, {\"type\": \"nope\"},"
             " {\"type\": \"log\", \"name\": \"a\"}, {\"type\": \"file\", \"path\": \"/b\"},"
             " {\"type\": \"log\", \"name\": \"a\", \"enabled\": false}]",
             &errs);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0],
                        "config: exporters[1].type: expected \"webhook\", \"file\" or \"log\"");
    assert_string_equal(errs.msgs[1], "config: exporters[2].name: duplicate name \"a\"");
    assert_int_equal(c.n_exporters, 2); /* a disabled entry may repeat a name */
    assert_string_equal(c.exporter_list[0].name, "a");
    assert_string_equal(c.exporter_list[1].name, "file-3");
    release(&c, &errs);
}

static void test_validate_again_replaces(void **state)
{
    struct torii_config c;
    struct torii_conf_errs errs = {NULL, 0};

    (void)state;
    validate(&c, "[{\"type\": \"log\"}, {\"type\": \"log\", \"name\": \"b\"}]", &errs);
    assert_int_equal(c.n_exporters, 2);
    json_decref(c.exporters);
    c.exporters = json_array();
    torii_conf_exporters_validate(&c, &errs);
    assert_int_equal(errs.n, 0);
    assert_int_equal(c.n_exporters, 0);
    assert_null(c.exporter_list);
    release(&c, &errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook_every_member),
        cmocka_unit_test(test_defaults_and_disabled_entries),
        cmocka_unit_test(test_common_members_refused),
        cmocka_unit_test(test_webhook_members_refused),
        cmocka_unit_test(test_every_entry_checked),
        cmocka_unit_test(test_validate_again_replaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
