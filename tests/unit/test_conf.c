/* test_conf.c - the configuration loader: every problem of a file is collected (key path +
 * problem, one entry each), an unreadable file is named with its errno text, acme{} is
 * validated (unknown members, bad values, defaults), no two listeners share an address and port,
 * tls.strict_host, access_log (bool or object with path/format), shutdown_timeout_s, and the keys a
 * reload cannot change; fleet.etcd (defaults, unknown keys, the pairs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testfile.h"
#include "torii/conf.h"

/* A temporary file holding text; its path in path (64 bytes). */
static void write_conf(char *path, const char *text)
{
    assert_int_equal(testfile_write(path, 64, "conf", text), 0);
}

/* Check text; returns the status, errs filled (caller frees), the config freed. */
static int check_text(const char *text, struct torii_conf_errs *errs)
{
    char path[64];
    struct torii_config *cfg = NULL;
    int rc;

    write_conf(path, text);
    rc = torii_config_check(path, &cfg, errs);
    assert_non_null(cfg); /* the file was read: the config is there for the route checks */
    torii_config_free(cfg);
    (void)unlink(path);
    return rc;
}

/* errs holds an entry containing fragment. */
static void assert_has(const struct torii_conf_errs *errs, const char *fragment)
{
    for (size_t i = 0; i < errs->n; i++) {
        if (strstr(errs->msgs[i], fragment) != NULL) {
            return;
        }
    }
    for (size_t i = 0; i < errs->n; i++) {
        print_message("  errs[%zu] = %s\n", i, errs->msgs[i]);
    }
    fail_msg("no error contains '%s'", fragment);
}

static int setup(void **state)
{
    (void)state;
    (void)unsetenv("TORII_ADMIN_TOKEN");
    return 0;
}

static void test_valid_file_and_defaults(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    char path[64];
    struct torii_config *cfg = NULL;

    (void)state;
    write_conf(path, "{\"// note\": \"comment\", \"listen\": {\"https\": \"127.0.0.1:8443\"},"
                     " \"tls\": {\"strict_sni\": true}}");
    assert_int_equal(torii_config_check(path, &cfg, &errs), TORII_OK);
    assert_int_equal(errs.n, 0);
    assert_string_equal(cfg->listen_https, "127.0.0.1:8443");
    assert_true(cfg->strict_sni);
    assert_true(cfg->strict_host); /* on by default */
    torii_config_free(cfg);
    (void)unlink(path);
}

static void test_strict_host_option(void **state)
{
    struct torii_errbuf eb = {{0}};
    char path[64];
    struct torii_config *cfg = NULL;

    (void)state;
    write_conf(path, "{\"tls\": {\"strict_host\": false}}");
    assert_int_equal(torii_config_load(path, &cfg, &eb), TORII_OK);
    assert_false(cfg->strict_host);
    torii_config_free(cfg);
    (void)unlink(path);
    write_conf(path, "{\"tls\": {\"strict_host\": \"no\"}}");
    assert_int_equal(torii_config_load(path, &cfg, &eb), TORII_EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(eb.msg, "tls.strict_host: expected true or false"));
    (void)unlink(path);
}

static void test_every_problem_is_reported(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};

    (void)state;
    assert_int_equal(check_text("{\"bogus\": 1, \"listen\": {\"https\": \"nowhere\", \"x\": 1},"
                                " \"workers\": \"two\", \"log_level\": \"loud\","
                                " \"admin\": {\"token\": \"short\"},"
                                " \"exporters\": [{\"type\": \"carrier-pigeon\"},"
                                "                 {\"type\": \"file\"}],"
                                " \"pki\": {\"ca_key\": \"dsa\", \"ocsp_cache_s\": -1}}",
                                &errs),
                     TORII_EINVAL);
    assert_has(&errs, "config: unknown key \"bogus\"");
    assert_has(&errs, "config: unknown key \"listen.x\"");
    assert_has(&errs, "config: listen.https: bad address \"nowhere\"");
    assert_has(&errs, "config: workers: expected an integer");
    assert_has(&errs, "config: log_level: expected");
    assert_has(&errs, "config: admin.token must be at least 16 characters");
    assert_has(&errs, "config: exporters[0].type");
    assert_has(&errs, "config: exporters[1].path: required");
    assert_has(&errs, "config: pki.ca_key");
    assert_has(&errs, "config: pki.ocsp_cache_s");
    assert_int_equal(errs.n, 10);
    torii_conf_errs_free(&errs);
    assert_int_equal(errs.n, 0);
}

static void test_load_names_first_and_counts_the_rest(void **state)
{
    struct torii_errbuf eb = {{0}};
    char path[64];
    struct torii_config *cfg = NULL;

    (void)state;
    write_conf(path, "{\"a\": 1, \"b\": 2, \"c\": 3}");
    assert_int_equal(torii_config_load(path, &cfg, &eb), TORII_EINVAL);
    assert_null(cfg);
    assert_string_equal(eb.msg, "config: unknown key \"a\" (and 2 more problems)");
    (void)unlink(path);
}

static void test_unreadable_or_broken_file(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cfg = NULL;
    char path[64];

    (void)state;
    assert_int_equal(torii_config_check("/nonexistent/torii.json", &cfg, &errs), TORII_EINVAL);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "config: /nonexistent/torii.json: No such file or directory");
    torii_conf_errs_free(&errs);
    assert_int_equal(torii_config_check("/tmp", &cfg, &errs), TORII_EINVAL);
    assert_null(cfg);
    assert_string_equal(errs.msgs[0], "config: /tmp: Is a directory");
    torii_conf_errs_free(&errs);
    write_conf(path, "{\"workers\": 1,\n \"x\" }");
    assert_int_equal(torii_config_check(path, &cfg, &errs), TORII_EINVAL);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], ":2:")); /* line 2 */
    assert_null(strstr(errs.msgs[0], ":-1:-1:")); /* never the "no position" marker */
    torii_conf_errs_free(&errs);
    (void)unlink(path);
}

static void test_acme_validated(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};

    (void)state;
    /* an unknown member is refused, and directory_url is required */
    assert_int_equal(check_text("{\"acme\": {\"email\": \"ops@example.test\"}}", &errs),
                     TORII_EINVAL);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "config: unknown key \"acme.email\"");
    assert_string_equal(errs.msgs[1], "config: acme.directory_url: required when acme{} is given");
    torii_conf_errs_free(&errs);
    assert_int_equal(check_text("{\"acme\": {}}", &errs), TORII_EINVAL);
    torii_conf_errs_free(&errs);
    /* bad values, each named */
    assert_int_equal(check_text("{\"acme\": {\"directory_url\": \"ftp://x\", \"contacts\": "
                                "[\"ops@x\"], \"key\": \"dsa\", \"challenges\": [\"dns-01\"], "
                                "\"eab\": {\"kid\": \"k\"}}}",
                                &errs),
                     TORII_EINVAL);
    assert_int_equal(errs.n, 6);
    assert_string_equal(errs.msgs[0],
                        "config: acme.directory_url: expected an http:// or https:// URL");
    assert_string_equal(errs.msgs[1], "config: acme.contacts[0]: expected a \"mailto:\" URL");
    assert_string_equal(errs.msgs[2], "config: acme.key: expected ecdsa-p256, ecdsa-p384, "
                                      "rsa-2048, rsa-3072 or rsa-4096");
    assert_string_equal(errs.msgs[3], "config: acme.eab: needs both \"kid\" and \"hmac_key\"");
    torii_conf_errs_free(&errs);
}

static void test_acme_defaults(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *c = NULL;
    char path[] = "/tmp/torii-conf-acme-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "{\"acme\": {\"directory_url\": \"https://127.0.0.1:14000/dir\", "
                       "\"challenges\": [\"dns-01\", \"http-01\"], \"dns_hook\": \"/bin/h\"}}";

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    (void)close(fd);
    assert_int_equal(torii_config_check(path, &c, &errs), TORII_OK);
    assert_true(c->acme.enabled);
    assert_string_equal(c->acme.key, "ecdsa-p256");
    assert_int_equal(c->acme.n_challenges, 2);
    assert_string_equal(c->acme.challenges[0], "dns-01");
    assert_string_equal(c->acme.challenges[1], "http-01");
    assert_int_equal(c->acme.order_timeout_s, 300);
    torii_config_free(c);
    torii_conf_errs_free(&errs);
    (void)unlink(path);
}

static void test_acme_on_demand(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_conf_on_demand od;

    (void)state;
    /* allow is required; unknown members and bad values are named */
    assert_int_equal(check_text("{\"acme\": {\"directory_url\": \"https://x/dir\", "
                                "\"on_demand\": {\"ask\": \"ftp://x\", \"wait_ms\": 0, "
                                "\"colour\": 1}}}",
                                &errs),
                     TORII_EINVAL);
    assert_int_equal(errs.n, 4);
    assert_string_equal(errs.msgs[0], "config: acme.on_demand.ask: expected an http:// or "
                                      "https:// URL without blanks or fragment");
    assert_string_equal(errs.msgs[1],
                        "config: acme.on_demand.wait_ms: expected an integer from 1 to 120000");
    assert_string_equal(errs.msgs[2], "config: unknown key \"acme.on_demand.colour\"");
    assert_string_equal(errs.msgs[3], "config: acme.on_demand.allow: required (the names that "
                                      "may get a certificate during their handshake)");
    torii_conf_errs_free(&errs);
    assert_int_equal(check_text("{\"acme\": {\"directory_url\": \"https://x/dir\", "
                                "\"on_demand\": {\"allow\": [\"Shop.test\", \"*\"]}}}",
                                &errs),
                     TORII_EINVAL);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "config: acme.on_demand.allow[0]: expected a lower-case "
                                      "DNS name or \"*.\" and one");
    torii_conf_errs_free(&errs);
    /* defaults, and the patterns: exact names, "*." for any depth below, never the base */
    memset(&od, 0, sizeof(od));
    json_t *v = json_loads("{\"allow\": [\"shop.test\", \"*.c.test\"]}", 0, NULL);
    torii_conf__acme_on_demand(&od, v, &errs);
    json_decref(v);
    assert_int_equal(errs.n, 0);
    assert_true(od.enabled);
    assert_int_equal(od.wait_ms, 10000);
    assert_int_equal(od.global_per_min, 10);
    assert_int_equal(od.domain_per_hour, 5);
    assert_int_equal(od.failure_ttl_s, 600);
    assert_true(torii_conf_on_demand_allows(&od, "shop.test"));
    assert_false(torii_conf_on_demand_allows(&od, "www.shop.test"));
    assert_true(torii_conf_on_demand_allows(&od, "a.c.test"));
    assert_true(torii_conf_on_demand_allows(&od, "a.b.c.test"));
    assert_false(torii_conf_on_demand_allows(&od, "c.test"));
    assert_false(torii_conf_on_demand_allows(&od, "xc.test"));
    json_decref(od.allow);
}

/* listen.https, listen.http, admin.listen as given -> the number of problems. */
static size_t listeners(const char *https, const char *http, const char *admin,
                        struct torii_conf_errs *errs)
{
    char text[256];

    (void)snprintf(text, sizeof(text),
                   "{\"listen\": {\"https\": \"%s\", \"http\": \"%s\"},"
                   " \"admin\": {\"listen\": \"%s\"}}",
                   https, http, admin);
    torii_conf_errs_free(errs);
    (void)check_text(text, errs);
    return errs->n;
}

static void test_listeners_must_not_share_address_and_port(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};

    (void)state;
    assert_int_equal(listeners("127.0.0.1:9000", "127.0.0.1:8080", "127.0.0.1:9000", &errs), 1);
    assert_string_equal(errs.msgs[0], "config: listen.https (127.0.0.1:9000) and admin.listen "
                                      "(127.0.0.1:9000): the same port on overlapping addresses; "
                                      "each listener needs its own address and port");
    /* a wildcard overlaps every address of its family */
    assert_int_equal(listeners("0.0.0.0:9000", "127.0.0.1:8080", "127.0.0.1:9000", &errs), 1);
    assert_has(&errs, "listen.https (0.0.0.0:9000) and admin.listen (127.0.0.1:9000)");
    assert_int_equal(listeners("0.0.0.0:8443", "localhost:8443", "127.0.0.1:9000", &errs), 1);
    assert_has(&errs, "listen.https (0.0.0.0:8443) and listen.http (localhost:8443)");
    /* the IPv6 wildcard takes IPv4 too (dual stack) */
    assert_int_equal(listeners("[::]:8443", "127.0.0.1:8080", "127.0.0.1:8443", &errs), 1);
    assert_has(&errs, "listen.https ([::]:8443) and admin.listen (127.0.0.1:8443)");
    /* all three on one port: every pair */
    assert_int_equal(listeners("0.0.0.0:7000", "0.0.0.0:7000", "127.0.0.1:7000", &errs), 3);
    /* fine: other ports, other addresses, a disabled listener, port 0 */
    assert_int_equal(listeners("0.0.0.0:8443", "0.0.0.0:8080", "127.0.0.1:9000", &errs), 0);
    assert_int_equal(listeners("127.0.0.1:9000", "", "127.0.0.2:9000", &errs), 0);
    assert_int_equal(listeners("", "", "127.0.0.1:9000", &errs), 0);
    assert_int_equal(listeners("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", &errs), 0);
    assert_int_equal(listeners("[::1]:9000", "127.0.0.1:8080", "127.0.0.1:9000", &errs), 0);
    torii_conf_errs_free(&errs);
}

static struct torii_config *load_text(const char *text)
{
    struct torii_errbuf eb = {{0}};
    char path[64];
    struct torii_config *cfg = NULL;

    write_conf(path, text);
    if (torii_config_load(path, &cfg, &eb) != TORII_OK) {
        print_message("  %s\n", eb.msg);
    }
    (void)unlink(path);
    return cfg;
}

static void test_access_log_and_shutdown_timeout(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cfg = load_text("{}");

    (void)state;
    assert_non_null(cfg);
    assert_true(cfg->access_log);
    assert_null(cfg->access_log_path);
    assert_string_equal(cfg->access_log_format, "json");
    assert_int_equal(cfg->shutdown_timeout_s, 30);
    torii_config_free(cfg);
    cfg = load_text("{\"access_log\": false, \"shutdown_timeout_s\": 5}");
    assert_non_null(cfg);
    assert_false(cfg->access_log);
    assert_int_equal(cfg->shutdown_timeout_s, 5);
    torii_config_free(cfg);
    cfg = load_text("{\"access_log\": {\"path\": \"/var/log/torii/access.log\","
                    " \"format\": \"combined\", \"enabled\": true}}");
    assert_non_null(cfg);
    assert_true(cfg->access_log);
    assert_string_equal(cfg->access_log_path, "/var/log/torii/access.log");
    assert_string_equal(cfg->access_log_format, "combined");
    torii_config_free(cfg);
    assert_int_equal(check_text("{\"access_log\": {\"path\": \"rel.log\", \"format\": \"clf\","
                                " \"rotate\": 1}, \"shutdown_timeout_s\": -1}",
                                &errs),
                     TORII_EINVAL);
    assert_has(&errs, "access_log.path: expected an absolute path");
    assert_has(&errs, "access_log.format: expected json or combined");
    assert_has(&errs, "unknown key \"access_log.rotate\"");
    assert_has(&errs, "shutdown_timeout_s: expected an integer");
    torii_conf_errs_free(&errs);
}

static void test_reload_check_names_fixed_keys(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cur = load_text("{\"workers\": 2, \"data_dir\": \"/tmp/a\"}");
    struct torii_config *ok =
        load_text("{\"workers\": 2, \"data_dir\": \"/tmp/a\", \"log_level\": \"debug\","
                  " \"limits\": {\"max_body\": 10}, \"listen\": {\"https\": \"127.0.0.1:1\"},"
                  " \"tls\": {\"strict_sni\": true}, \"access_log\": {\"format\": \"combined\"}}");
    struct torii_config *bad = load_text(
        "{\"workers\": 3, \"data_dir\": \"/tmp/b\", \"admin\": {\"listen\": \"127.0.0.1:1\"},"
        " \"exporters\": [{\"type\": \"log\"}], \"renewal\": {\"interval_s\": 5},"
        " \"listen\": {\"http\": \"127.0.0.1:2\"}}");

    (void)state;
    assert_non_null(cur);
    assert_non_null(ok);
    assert_non_null(bad);
    assert_int_equal(torii_config_reload_check(cur, ok, &errs), TORII_OK);
    assert_int_equal(errs.n, 0);
    assert_int_equal(torii_config_reload_check(cur, bad, &errs), TORII_EINVAL);
    assert_has(&errs, "config: workers: cannot change on reload");
    assert_has(&errs, "config: data_dir: cannot change on reload");
    assert_has(&errs, "config: admin.listen: cannot change on reload");
    assert_has(&errs, "config: renewal: cannot change on reload");
    assert_has(&errs, "config: pki (pki.public_url, by default http://<listen.http>): cannot");
    assert_int_equal(errs.n, 5); /* exporters may change */
    torii_conf_errs_free(&errs);
    torii_config_free(cur);
    torii_config_free(ok);
    torii_config_free(bad);
}

/* The keys section (keys at rest): parsed, typed, unknown members refused, fixed on reload. */
static void test_keys_section(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *none = load_text("{}");
    struct torii_config *cfg = load_text(
        "{\"keys\": {\"kek_file\": \"/etc/torii/kek\", \"previous_kek_files\": [\"/etc/old\"],"
        " \"previous_kek_credentials\": []}}");

    (void)state;
    assert_non_null(none);
    assert_null(none->keys_kek_file);
    assert_null(none->keys_kek_credential);
    assert_non_null(cfg);
    assert_string_equal(cfg->keys_kek_file, "/etc/torii/kek");
    assert_int_equal(json_array_size(cfg->keys_previous_kek_files), 1);
    assert_int_equal(torii_config_reload_check(cfg, cfg, &errs), TORII_OK);
    assert_int_equal(torii_config_reload_check(none, cfg, &errs), TORII_EINVAL);
    assert_has(&errs, "config: keys: cannot change on reload");
    torii_conf_errs_free(&errs);
    assert_int_equal(check_text("{\"keys\": {\"kek\": \"x\", \"kek_credential\": 3,"
                                " \"previous_kek_files\": \"/etc/old\"}}",
                                &errs),
                     TORII_EINVAL);
    assert_has(&errs, "unknown key \"keys.kek\"");
    assert_has(&errs, "keys.kek_credential: expected a string");
    assert_has(&errs, "keys.previous_kek_files: expected an array");
    torii_conf_errs_free(&errs);
    torii_config_free(none);
    torii_config_free(cfg);
}

static void test_fleet_section(void **state)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cfg =
        load_text("{\"keys\": {\"kek_file\": \"/etc/torii/kek\"}, \"fleet\": {\"etcd\": "
                  "{\"endpoints\": [\"http://127.0.0.1:2379\", \"https://127.0.0.1:2479\"]}}}");

    (void)state;
    assert_non_null(cfg);
    assert_true(cfg->fleet.enabled);
    assert_string_equal(cfg->fleet.prefix, "/torii/");
    assert_int_equal(cfg->fleet.timeout_ms, 5000);
    assert_int_equal(cfg->fleet.max_txn_ops, 128);
    assert_int_equal(json_array_size(cfg->fleet.endpoints), 2);
    torii_config_free(cfg);
    cfg = load_text("{}");
    assert_false(cfg->fleet.enabled);
    torii_config_free(cfg);

    assert_int_equal(
        check_text("{\"fleet\": {\"etcd\": {\"endpoints\": [\"127.0.0.1:2379\"], \"user\": \"u\","
                   " \"cert_file\": \"/c\", \"timeout_ms\": 5, \"bogus\": 1}, \"redis\": {}}}",
                   &errs),
        TORII_EINVAL);
    assert_has(&errs, "fleet.etcd.endpoints[0]");
    assert_has(&errs, "fleet.etcd.user and fleet.etcd.password");
    assert_has(&errs, "fleet.etcd.cert_file and fleet.etcd.key_file");
    assert_has(&errs, "fleet.etcd.timeout_ms");
    assert_has(&errs, "unknown key \"fleet.etcd.bogus\"");
    assert_has(&errs, "unknown key \"fleet.redis\"");
    torii_conf_errs_free(&errs);
    assert_int_equal(check_text("{\"fleet\": {\"etcd\": {}}}", &errs), TORII_EINVAL);
    assert_has(&errs, "fleet.etcd.endpoints: required");
    torii_conf_errs_free(&errs);
    /* a fleet without a KEK is refused by the check, not only at start */
    assert_int_equal(
        check_text("{\"fleet\": {\"etcd\": {\"endpoints\": [\"http://127.0.0.1:2379\"]}}}", &errs),
        TORII_EINVAL);
    assert_has(&errs, "fleet.etcd needs keys.kek_file or keys.kek_credential");
    torii_conf_errs_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file_and_defaults),
        cmocka_unit_test(test_strict_host_option),
        cmocka_unit_test(test_every_problem_is_reported),
        cmocka_unit_test(test_load_names_first_and_counts_the_rest),
        cmocka_unit_test(test_unreadable_or_broken_file),
        cmocka_unit_test(test_acme_validated),
        cmocka_unit_test(test_acme_defaults),
        cmocka_unit_test(test_acme_on_demand),
        cmocka_unit_test(test_listeners_must_not_share_address_and_port),
        cmocka_unit_test(test_access_log_and_shutdown_timeout),
        cmocka_unit_test(test_reload_check_names_fixed_keys),
        cmocka_unit_test(test_keys_section),
        cmocka_unit_test(test_fleet_section),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
