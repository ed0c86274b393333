/* test_fleet.c - the etcd JSON gateway bodies (range, txn, watch events, created, compacted,
 * error bodies) parsed from canned answers, malformed ones refused naming the member; the
 * prefix range end. (fleet.etcd in the configuration: test_conf.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/fleet.h"

/* "/it/c/a" = L2l0L2MvYQ==, "{}" = e30=, "/it/s/k" = L2l0L3Mvaw== */
static const char range_body[] =
    "{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"5\",\"raft_term\":\"2\"},"
    "\"kvs\":[{\"key\":\"L2l0L2MvYQ==\",\"create_revision\":\"4\",\"mod_revision\":\"5\","
    "\"version\":\"2\",\"value\":\"e30=\"},{\"key\":\"L2l0L3Mvaw==\",\"create_revision\":\"3\","
    "\"mod_revision\":\"3\",\"version\":\"1\"}],\"more\":true,\"count\":\"3\"}";

static int gw_range(const char *body, struct torii_fleet_range *r, struct torii_errbuf *eb)
{
    return torii_fleet_gw_range_parse(body, strlen(body), r, eb);
}

static void test_range(void **state)
{
    struct torii_fleet_range r;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(gw_range(range_body, &r, &eb), TORII_OK);
    assert_int_equal(r.rev, 5);
    assert_int_equal(r.n, 2);
    assert_true(r.more);
    assert_int_equal(r.count, 3);
    assert_string_equal(r.kvs[0].key, "/it/c/a");
    assert_string_equal(r.kvs[0].val, "{}");
    assert_int_equal(r.kvs[0].mod_rev, 5);
    assert_int_equal(r.kvs[0].create_rev, 4);
    assert_string_equal(r.kvs[1].key, "/it/s/k");
    assert_string_equal(r.kvs[1].val, ""); /* proto3 omits an empty value */
    torii_fleet_range_clear(&r);

    /* count_only: no kvs at all */
    assert_int_equal(gw_range("{\"header\":{\"revision\":\"9\"},\"count\":\"12\"}", &r, &eb),
                     TORII_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.count, 12);
    assert_false(r.more);
    torii_fleet_range_clear(&r);
}

static void test_range_refuses_bad_shapes(void **state)
{
    static const struct {
        const char *body;
        const char *says;
    } bad[] = {
        {"{\"header\":{\"revision\":\"5x\"}}", "revision"},
        {"{\"header\":{\"revision\":[]}}", "revision"},
        {"{\"kvs\":[]}", "header"},
        {"{\"header\":{\"revision\":\"1\"},\"kvs\":{}}", "kvs"},
        {"{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"***\"}]}", "key"},
        {"{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"value\":\"e30=\"}]}", "no key"},
        {"{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"YQBi\"}]}", "NUL"},
        {"{\"header\":{\"revision\":\"1\"},\"kvs\":[7]}", "not an object"},
        {"{\"header\":{\"revision\":\"1\"},\"more\":\"yes\"}", "more"},
        {"{\"header\":{\"revision\":\"1\"},\"count\":\"99999999999999999999999\"}", "count"},
        {"[1,2]", "not a JSON object"},
        {"{\"header\":", "not a JSON object"},
        {"", "empty"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct torii_fleet_range r;
        struct torii_errbuf eb = {{0}};
        assert_int_equal(gw_range(bad[i].body, &r, &eb), TORII_EPROTO);
        if (strstr(eb.msg, bad[i].says) == NULL) {
            fail_msg("body %zu: '%s' does not say '%s'", i, eb.msg, bad[i].says);
        }
        assert_int_equal(r.n, 0);
        assert_null(r.kvs);
    }
}

static void test_error_bodies(void **state)
{
    struct torii_errbuf eb = {{0}};
    struct torii_fleet_range r;
    const char *compacted = "{\"error\":\"etcdserver: mvcc: required revision has been "
                            "compacted\",\"code\":11,\"message\":\"etcdserver: mvcc: required "
                            "revision has been compacted\"}";
    const char *noleader = "{\"error\":\"etcdserver: no leader\",\"code\":14,"
                           "\"message\":\"etcdserver: no leader\"}";
    const char *token = "{\"error\":\"etcdserver: invalid auth token\",\"code\":16,"
                        "\"message\":\"etcdserver: invalid auth token\"}";
    const char *stream = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: "
                         "request timed out\",\"http_status\":\"Service Unavailable\"}}";

    (void)state;
    assert_int_equal(torii_fleet_gw_error(compacted, strlen(compacted), &eb), TORII_ECONFLICT);
    assert_non_null(strstr(eb.msg, "compacted"));
    assert_int_equal(torii_fleet_gw_error(noleader, strlen(noleader), &eb), TORII_EAGAIN);
    assert_non_null(strstr(eb.msg, "no leader"));
    assert_int_equal(torii_fleet_gw_error(token, strlen(token), &eb), TORII_EPERM);
    assert_int_equal(torii_fleet_gw_error(stream, strlen(stream), &eb), TORII_EAGAIN);
    assert_non_null(strstr(eb.msg, "timed out"));
    assert_int_equal(torii_fleet_gw_error(range_body, strlen(range_body), &eb), TORII_ENOTFOUND);
    /* an error body where a range was expected is that error, not a parse failure */
    assert_int_equal(gw_range(compacted, &r, &eb), TORII_ECONFLICT);
}

static void test_txn(void **state)
{
    struct torii_fleet_txn t;
    struct torii_errbuf eb = {{0}};
    const char *won = "{\"header\":{\"revision\":\"7\"},\"succeeded\":true,\"responses\":["
                      "{\"response_put\":{\"header\":{\"revision\":\"7\"}}},"
                      "{\"response_delete_range\":{\"header\":{},\"deleted\":\"1\"}}]}";
    const char *lost = "{\"header\":{\"revision\":\"8\"},\"responses\":["
                       "{\"response_range\":{\"header\":{},\"kvs\":[{\"key\":\"L2l0L2MvYQ==\","
                       "\"mod_revision\":\"3\"}],\"count\":\"1\"}},"
                       "{\"response_range\":{\"header\":{}}}]}";
    const char *bad = "{\"header\":{\"revision\":\"8\"},\"responses\":[{\"response_range\":3}]}";

    (void)state;
    assert_int_equal(torii_fleet_gw_txn_parse(won, strlen(won), &t, &eb), TORII_OK);
    assert_true(t.succeeded);
    assert_int_equal(t.rev, 7);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.counts[0], -1);
    torii_fleet_txn_clear(&t);
    assert_int_equal(torii_fleet_gw_txn_parse(lost, strlen(lost), &t, &eb), TORII_OK);
    assert_false(t.succeeded); /* omitted false */
    assert_int_equal(t.rev, 8);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.counts[0], 1);
    assert_int_equal(t.counts[1], 0); /* omitted count: no key */
    torii_fleet_txn_clear(&t);
    assert_int_equal(torii_fleet_gw_txn_parse(bad, strlen(bad), &t, &eb), TORII_EPROTO);
    assert_non_null(strstr(eb.msg, "response_range"));
    assert_null(t.counts);
}

static int gw_watch(const char *line, struct torii_fleet_watch *w, struct torii_errbuf *eb)
{
    return torii_fleet_gw_watch_parse(line, strlen(line), w, eb);
}

static void test_watch(void **state)
{
    struct torii_fleet_watch w;
    struct torii_errbuf eb = {{0}};
    const char *created = "{\"result\":{\"header\":{\"revision\":\"7\"},\"created\":true}}";
    const char *events = "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":["
                         "{\"kv\":{\"key\":\"L2l0L2MvYQ==\",\"create_revision\":\"8\","
                         "\"mod_revision\":\"8\",\"version\":\"1\",\"value\":\"e30=\"}},"
                         "{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2l0L3Mvaw==\","
                         "\"mod_revision\":\"9\"}}]}}";
    const char *compacted = "{\"result\":{\"header\":{\"revision\":\"12\"},\"canceled\":true,"
                            "\"compact_revision\":\"10\"}}";

    (void)state;
    assert_int_equal(gw_watch(created, &w, &eb), TORII_OK);
    assert_true(w.created);
    assert_int_equal(w.rev, 7);
    assert_int_equal(w.n, 0);
    torii_fleet_watch_clear(&w);
    assert_int_equal(gw_watch(events, &w, &eb), TORII_OK);
    assert_int_equal(w.n, 2);
    assert_false(w.ev[0].deleted);
    assert_string_equal(w.ev[0].kv.key, "/it/c/a");
    assert_string_equal(w.ev[0].kv.val, "{}");
    assert_int_equal(w.ev[0].kv.mod_rev, 8);
    assert_true(w.ev[1].deleted);
    assert_null(w.ev[1].kv.val);
    assert_int_equal(w.ev[1].kv.mod_rev, 9);
    torii_fleet_watch_clear(&w);
    assert_int_equal(gw_watch(compacted, &w, &eb), TORII_OK);
    assert_true(w.canceled);
    assert_int_equal(w.compact_rev, 10);
    torii_fleet_watch_clear(&w);
}

static void test_watch_refuses_bad_shapes(void **state)
{
    static const char *const bad[] = {
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"type\":\"BOGUS\","
        "\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":7}]}}",
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":\"x\"}}",
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"created\":1}}",
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"compact_revision\":\"-\"}}",
        "{\"nothing\":1}",
        "not json",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct torii_fleet_watch w;
        struct torii_errbuf eb = {{0}};
        if (gw_watch(bad[i], &w, &eb) != TORII_EPROTO) {
            fail_msg("watch line %zu accepted", i);
        }
        assert_int_equal(w.n, 0);
        assert_true(eb.msg[0] != '\0');
    }
}

static void test_prefix_end(void **state)
{
    size_t n = 0;
    char *e;

    (void)state;
    e = torii_fleet_prefix_end("/torii/", 7, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(e, "/torii0", 7);
    free(e);
    e = torii_fleet_prefix_end("a\xff\xff", 3, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(e, "b", 1);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range),        cmocka_unit_test(test_range_refuses_bad_shapes),
        cmocka_unit_test(test_error_bodies), cmocka_unit_test(test_txn),
        cmocka_unit_test(test_watch),        cmocka_unit_test(test_watch_refuses_bad_shapes),
        cmocka_unit_test(test_prefix_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
