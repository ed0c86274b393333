/* test_fleet_ack.c - the pure parts of the fleet's member registry (src/fleet/members.c) and
 * of the acknowledgements of shared ACME answers (src/fleet/chal_ack.c): node ids, member
 * values (untrusted: anything but the documented shape is refused), acknowledgement keys and
 * values, the lease of a watched key, and the decision "every live member following the
 * answers acknowledged this revision" as members join and leave. (The etcd side:
 * tests/integration/test_fleet_acme.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "torii/fleet.h"

#define ID_A "AAAAaaaa00000001"
#define ID_B "BBBBbbbb00000002"
#define ID_C "CCCCcccc00000003"

static void test_ids(void **state)
{
    (void)state;
    assert_true(torii_fleet_id_ok(ID_A, 16));
    assert_false(torii_fleet_id_ok(ID_A, 15));                /* too short */
    assert_false(torii_fleet_id_ok("AAAAaaaa000000011", 17)); /* too long */
    assert_false(torii_fleet_id_ok("AAAAaaaa0000000/", 16));
    assert_false(torii_fleet_id_ok("AAAAaaaa0000000-", 16));
    assert_false(torii_fleet_id_ok("AAAAaaaa 0000000", 16));
    assert_false(torii_fleet_id_ok("", 0));
}

static void member_ok(const char *id, const char *val, const char *name, int acme)
{
    struct torii_fleet_member m;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(torii_fleet_member_parse(id, strlen(id), val, strlen(val), &m, &eb), TORII_OK);
    assert_string_equal(m.id, id);
    assert_string_equal(m.name, name);
    assert_int_equal(m.acme, acme);
}

static void member_bad(const char *id, const char *val)
{
    struct torii_fleet_member m;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(
        torii_fleet_member_parse(id, strlen(id), val, val != NULL ? strlen(val) : 0, &m, &eb),
        TORII_EPROTO);
    assert_non_null(strstr(eb.msg, "fleet: member m/"));
    assert_string_equal(m.id, ""); /* nothing half-filled */
}

static void test_member_values(void **state)
{
    char *v = torii_fleet_member_value("host-1 pid 42", 1);
    char big[300];

    (void)state;
    assert_non_null(v);
    member_ok(ID_A, v, "host-1 pid 42", 1);
    free(v);
    v = torii_fleet_member_value("h pid 7", 0);
    member_ok(ID_B, v, "h pid 7", 0);
    free(v);
    /* a bad id, whatever the value */
    member_bad("short", "{\"name\":\"h\",\"acme\":true}");
    member_bad("AAAAaaaa0000000/", "{\"name\":\"h\",\"acme\":true}");
    /* values: not JSON, not an object, members missing, extra, duplicated or mistyped */
    member_bad(ID_A, NULL);
    member_bad(ID_A, "");
    member_bad(ID_A, "not json");
    member_bad(ID_A, "[\"h\", true]");
    member_bad(ID_A, "{\"name\":\"h\"}");
    member_bad(ID_A, "{\"acme\":true}");
    member_bad(ID_A, "{\"name\":\"h\",\"acme\":true,\"x\":1}");
    member_bad(ID_A, "{\"name\":\"h\",\"name\":\"i\",\"acme\":true}");
    member_bad(ID_A, "{\"name\":\"h\",\"acme\":1}");
    member_bad(ID_A, "{\"name\":7,\"acme\":true}");
    /* names: empty, a control character, too long */
    member_bad(ID_A, "{\"name\":\"\",\"acme\":true}");
    member_bad(ID_A, "{\"name\":\"a\\nb\",\"acme\":true}");
    member_bad(ID_A, "{\"name\":\"\\u00e9\",\"acme\":true}");
    memset(big, 'x', TORII_FLEET_NODE_MAX + 1);
    big[TORII_FLEET_NODE_MAX + 1] = '\0';
    v = torii_fleet_member_value(big, 1);
    member_bad(ID_A, v);
    free(v);
    big[TORII_FLEET_NODE_MAX] = '\0'; /* exactly the longest name */
    v = torii_fleet_member_value(big, 1);
    member_ok(ID_A, v, big, 1);
    free(v);
}

static void test_ack_keys(void **state)
{
    char *k = torii_fleet_chal_ack_key("/it/", "h/tok_EN-1", ID_A);
    char *p = torii_fleet_chal_ack_key("/it/", "t/a.fleet.test", "");

    (void)state;
    assert_string_equal(k, "/it/k/h/tok_EN-1/" ID_A);
    assert_string_equal(p, "/it/k/t/a.fleet.test/");
    free(k);
    free(p);
}

static void ack_bad(const char *id, const char *val)
{
    struct torii_fleet_ack a;

    assert_int_equal(
        torii_fleet_chal_ack_parse(id, strlen(id), val, val != NULL ? strlen(val) : 0, &a),
        TORII_EPROTO);
    assert_string_equal(a.id, "");
    assert_int_equal(a.rev, 0);
}

static void test_ack_values(void **state)
{
    struct torii_fleet_ack a;

    (void)state;
    assert_int_equal(torii_fleet_chal_ack_parse(ID_A, 16, "1234", 4, &a), TORII_OK);
    assert_string_equal(a.id, ID_A);
    assert_int_equal(a.rev, 1234);
    assert_int_equal(torii_fleet_chal_ack_parse(ID_B, 16, "9223372036854775807", 19, &a), TORII_OK);
    assert_int_equal(a.rev, INT64_MAX);
    ack_bad(ID_A, "9223372036854775808"); /* past int64 */
    ack_bad(ID_A, "99999999999999999999");
    ack_bad(ID_A, "0");
    ack_bad(ID_A, "");
    ack_bad(ID_A, NULL);
    ack_bad(ID_A, "-5");
    ack_bad(ID_A, "+5");
    ack_bad(ID_A, "12 ");
    ack_bad(ID_A, "0x10");
    ack_bad("AAAAaaaa00000001/x", "12"); /* a key deeper than <sfx>/<id> */
    ack_bad("short", "12");
}

/* The watch line of a key attached to a lease carries it; without one, 0. */
static void test_watch_lease(void **state)
{
    static const char line[] =
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":["
        "{\"kv\":{\"key\":\"L2l0L2EvaC90\",\"create_revision\":\"9\",\"mod_revision\":\"9\","
        "\"version\":\"1\",\"value\":\"dC54\",\"lease\":\"7587878137612345678\"}},"
        "{\"kv\":{\"key\":\"L2l0L2EvaC91\",\"create_revision\":\"9\",\"mod_revision\":\"9\","
        "\"version\":\"1\",\"value\":\"dS54\"}}]}}";
    static const char bad[] =
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":["
        "{\"kv\":{\"key\":\"L2l0L2EvaC90\",\"mod_revision\":\"9\",\"lease\":\"x1\"}}]}}";
    struct torii_fleet_watch w = {0};
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(torii_fleet_gw_watch_parse(line, strlen(line), &w, &eb), TORII_OK);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.ev[0].kv.lease, 7587878137612345678LL);
    assert_int_equal(w.ev[1].kv.lease, 0);
    torii_fleet_watch_clear(&w);
    assert_int_not_equal(torii_fleet_gw_watch_parse(bad, strlen(bad), &w, &eb), TORII_OK);
    torii_fleet_watch_clear(&w);
}

static struct torii_fleet_member mem(const char *id, const char *name, int acme)
{
    struct torii_fleet_member m = {.acme = acme};

    (void)snprintf(m.id, sizeof(m.id), "%s", id);
    (void)snprintf(m.name, sizeof(m.name), "%s", name);
    return m;
}

static struct torii_fleet_ack ack(const char *id, int64_t rev)
{
    struct torii_fleet_ack a = {.rev = rev};

    (void)snprintf(a.id, sizeof(a.id), "%s", id);
    return a;
}

/* Three members following the answers, the publisher A among them. */
static void test_unacked_all_members(void **state)
{
    struct torii_fleet_member m[3] = {mem(ID_A, "a", 1), mem(ID_B, "b", 1), mem(ID_C, "c", 1)};
    struct torii_fleet_ack acks[3] = {ack(ID_A, 10), ack(ID_C, 9), ack(ID_B, 10)};
    size_t miss[4];

    (void)state;
    /* nobody yet: all three missing, in member order; the count needed with no acks */
    assert_int_equal(torii_fleet_chal_unacked(m, 3, ID_A, NULL, 0, 10, miss, 4), 3);
    assert_int_equal(miss[0], 0);
    assert_int_equal(miss[2], 2);
    /* A and B acknowledged 10, C only an older revision (a previous answer of the same key) */
    assert_int_equal(torii_fleet_chal_unacked(m, 3, ID_A, acks, 3, 10, miss, 4), 1);
    assert_int_equal(miss[0], 2);
    /* C acknowledges a later revision: it counts */
    acks[1].rev = 11;
    assert_int_equal(torii_fleet_chal_unacked(m, 3, ID_A, acks, 3, 10, miss, 4), 0);
    /* only the count, whatever cap says */
    acks[1].rev = 9;
    assert_int_equal(torii_fleet_chal_unacked(m, 3, ID_A, acks, 3, 10, NULL, 0), 1);
}

/* Members come and go: a member that left is not waited for, one that joined is; a node
 * without acme{} is never waited for; an acknowledgement of a node that is not a member
 * (dead, its key gone with its lease) changes nothing. */
static void test_unacked_join_leave(void **state)
{
    struct torii_fleet_member m[3] = {mem(ID_A, "a", 1), mem(ID_B, "b", 1), mem(ID_C, "c", 0)};
    struct torii_fleet_ack acks[2] = {ack(ID_A, 5), ack("ZZZZzzzz99999999", 5)};
    size_t miss[4];

    (void)state;
    /* C does not follow the answers: only B is missing */
    assert_int_equal(torii_fleet_chal_unacked(m, 3, ID_A, acks, 2, 5, miss, 4), 1);
    assert_int_equal(miss[0], 1);
    /* B left (its lease ended): nobody is missing */
    assert_int_equal(torii_fleet_chal_unacked(m, 1, ID_A, acks, 2, 5, miss, 4), 0);
    /* C turns acme on (a new member value): now C is awaited */
    m[2].acme = 1;
    m[1] = m[2];
    assert_int_equal(torii_fleet_chal_unacked(m, 2, ID_A, acks, 2, 5, miss, 4), 1);
    assert_int_equal(miss[0], 1);
}

/* The publisher is always awaited: without its member key yet (index n), or with acme false
 * in a stale member value. */
static void test_unacked_self(void **state)
{
    struct torii_fleet_member m[1] = {mem(ID_B, "b", 1)};
    struct torii_fleet_member s[1] = {mem(ID_A, "a", 0)};
    struct torii_fleet_ack acks[2] = {ack(ID_B, 3), ack(ID_A, 3)};
    size_t miss[2];

    (void)state;
    assert_int_equal(torii_fleet_chal_unacked(m, 1, ID_A, acks, 1, 3, miss, 2), 1);
    assert_int_equal(miss[0], 1); /* n: this node */
    assert_int_equal(torii_fleet_chal_unacked(m, 1, ID_A, acks, 2, 3, miss, 2), 0);
    assert_int_equal(torii_fleet_chal_unacked(s, 1, ID_A, acks, 1, 3, miss, 2), 1);
    assert_int_equal(miss[0], 0);
    assert_int_equal(torii_fleet_chal_unacked(NULL, 0, ID_A, NULL, 0, 3, miss, 2), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_member_values),
        cmocka_unit_test(test_ack_keys),
        cmocka_unit_test(test_ack_values),
        cmocka_unit_test(test_watch_lease),
        cmocka_unit_test(test_unacked_all_members),
        cmocka_unit_test(test_unacked_join_leave),
        cmocka_unit_test(test_unacked_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
