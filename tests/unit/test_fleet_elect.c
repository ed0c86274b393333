/* test_fleet_elect.c - one doer per job (src/fleet/elect.c, revs.c): the election state
 * machine (lease, expiry, take, loss), the fencing gate (held turns false the moment the
 * lease's local deadline passes; enter fences the calling thread only), the request bodies
 * (acquisition transaction, fence compare), lease answers parsed or refused, and the
 * id -> mod_revision table behind compare-and-swap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "fleet_int.h" /* module-internal: the revs table, the fleet's election state */
#include "torii/clock.h"
#include "torii/codec.h"
#include "torii/fleet.h"
#include "torii/jobgate.h"

#define S 1000000 /* one second in us */

static void test_job_names(void **state)
{
    (void)state;
    assert_int_equal(torii_fleet_job_index("renewal"), 0);
    assert_int_equal(torii_fleet_job_index("acme"), 1);
    assert_int_equal(torii_fleet_job_index("crl"), 2);
    assert_int_equal(torii_fleet_job_index("tickets"), 3);
    assert_int_equal(torii_fleet_job_index("renewals"), -1);
    assert_int_equal(torii_fleet_job_index(""), -1);
    assert_int_equal(torii_fleet_job_index(NULL), -1);
    assert_string_equal(torii_fleet_job_name(1), "acme");
    assert_string_equal(torii_fleet_job_name(9), "?");
}

static void test_elect_take_and_hold(void **state)
{
    struct torii_fleet_elect e = {0};
    int64_t fence = -1;

    (void)state;
    /* no lease: nothing to try, nothing held */
    assert_false(torii_fleet_elect_should_try(&e, 0, 0, 10 * S));
    torii_fleet_elect_won(&e, 0, 42); /* a win without a lease is ignored */
    assert_false(torii_fleet_elect_held(&e, 0, 10 * S, &fence));
    assert_int_equal(fence, 0);
    /* lease granted at t=10 s for 3 s */
    torii_fleet_elect_lease(&e, 7, 3, 10 * S);
    assert_int_equal(e.deadline_us, 13 * S);
    assert_true(torii_fleet_elect_should_try(&e, 0, 0, 11 * S));
    assert_false(torii_fleet_elect_should_try(&e, 0, 99, 11 * S)); /* someone holds it */
    assert_false(torii_fleet_elect_should_try(&e, -1, 0, 11 * S)); /* unknown job */
    torii_fleet_elect_won(&e, 0, 42);
    assert_true(torii_fleet_elect_held(&e, 0, 11 * S, &fence));
    assert_int_equal(fence, 42);
    assert_false(torii_fleet_elect_held(&e, 1, 11 * S, NULL));    /* only the job won */
    assert_false(torii_fleet_elect_should_try(&e, 0, 0, 11 * S)); /* already held */
    /* the key seen with our fence: still held; a keepalive moves the deadline */
    torii_fleet_elect_seen(&e, 0, 42);
    torii_fleet_elect_lease(&e, 7, 3, 12 * S);
    assert_true(torii_fleet_elect_held(&e, 0, 14 * S, NULL));
}

static void test_elect_fencing(void **state)
{
    struct torii_fleet_elect e = {0};

    (void)state;
    torii_fleet_elect_lease(&e, 7, 3, 10 * S);
    torii_fleet_elect_won(&e, 0, 42);
    /* held() turns false exactly at the local deadline, before any expiry is processed */
    assert_true(torii_fleet_elect_held(&e, 0, 13 * S - 1, NULL));
    assert_false(torii_fleet_elect_held(&e, 0, 13 * S, NULL));
    torii_fleet_elect_expire(&e, 13 * S - 1);
    assert_int_equal(e.lease, 7);
    torii_fleet_elect_expire(&e, 13 * S);
    assert_int_equal(e.lease, 0);
    assert_int_equal(e.fence[0], 0);
    /* the key created again by another node (another create_revision): lost */
    torii_fleet_elect_lease(&e, 8, 3, 20 * S);
    torii_fleet_elect_won(&e, 1, 50);
    torii_fleet_elect_seen(&e, 1, 61);
    assert_false(torii_fleet_elect_held(&e, 1, 21 * S, NULL));
    /* the key gone: lost */
    torii_fleet_elect_won(&e, 1, 70);
    torii_fleet_elect_seen(&e, 1, 0);
    assert_false(torii_fleet_elect_held(&e, 1, 21 * S, NULL));
}

static void test_elect_lease_answers(void **state)
{
    struct torii_fleet_elect e = {0};

    (void)state;
    torii_fleet_elect_lease(&e, 7, 3, 10 * S);
    torii_fleet_elect_won(&e, 2, 42);
    /* etcd says the lease is gone (TTL 0): every job dropped */
    torii_fleet_elect_lease(&e, 7, 0, 11 * S);
    assert_int_equal(e.lease, 0);
    assert_false(torii_fleet_elect_held(&e, 2, 11 * S, NULL));
    /* an answer about another lease than ours: dropped too */
    torii_fleet_elect_lease(&e, 7, 3, 10 * S);
    torii_fleet_elect_won(&e, 2, 42);
    torii_fleet_elect_lease(&e, 9, 3, 11 * S);
    assert_int_equal(e.lease, 0);
    assert_int_equal(e.fence[2], 0);
    /* no ID: nothing */
    torii_fleet_elect_lease(&e, 0, 3, 11 * S);
    assert_int_equal(e.lease, 0);
}

static char *b64_of(const char *s)
{
    return torii_b64_encode(s, strlen(s), 0, NULL);
}

static void test_acquire_body(void **state)
{
    json_t *req = torii_fleet_elect_acquire_req("/it/", "renewal", "host pid 12", 7587);
    const json_t *cmp = json_array_get(json_object_get(req, "compare"), 0);
    const json_t *put =
        json_object_get(json_array_get(json_object_get(req, "success"), 0), "request_put");
    const json_t *rng =
        json_object_get(json_array_get(json_object_get(req, "failure"), 0), "request_range");
    char *key = b64_of("/it/l/renewal");
    char *val = b64_of("host pid 12");

    (void)state;
    assert_int_equal(json_array_size(json_object_get(req, "compare")), 1);
    assert_string_equal(json_string_value(json_object_get(cmp, "key")), key);
    assert_string_equal(json_string_value(json_object_get(cmp, "target")), "CREATE");
    assert_string_equal(json_string_value(json_object_get(cmp, "result")), "EQUAL");
    assert_string_equal(json_string_value(json_object_get(cmp, "create_revision")), "0");
    assert_string_equal(json_string_value(json_object_get(put, "key")), key);
    assert_string_equal(json_string_value(json_object_get(put, "value")), val);
    assert_string_equal(json_string_value(json_object_get(put, "lease")), "7587");
    assert_string_equal(json_string_value(json_object_get(rng, "key")), key);
    free(key);
    free(val);
    json_decref(req);
}

static void test_fence_cmp(void **state)
{
    json_t *c = torii_fleet_elect_fence_cmp("/p/", "acme", 1234567890123);
    char *key = b64_of("/p/l/acme");
    char *k2 = torii_fleet_job_key("/p/", "tickets");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(c, "key")), key);
    assert_string_equal(json_string_value(json_object_get(c, "target")), "CREATE");
    assert_string_equal(json_string_value(json_object_get(c, "result")), "EQUAL");
    assert_string_equal(json_string_value(json_object_get(c, "create_revision")), "1234567890123");
    assert_string_equal(k2, "/p/l/tickets");
    free(k2);
    free(key);
    json_decref(c);
}

static int lease_parse(const char *body, int64_t *id, int64_t *ttl, struct torii_errbuf *eb)
{
    return torii_fleet_gw_lease_parse(body, strlen(body), id, ttl, eb);
}

static void test_lease_parse(void **state)
{
    struct torii_errbuf eb = {{0}};
    int64_t id = 0;
    int64_t ttl = 0;

    (void)state;
    /* grant (unary) */
    assert_int_equal(
        lease_parse("{\"header\":{\"revision\":\"9\"},\"ID\":\"7587869\",\"TTL\":\"10\"}", &id,
                    &ttl, &eb),
        TORII_OK);
    assert_int_equal(id, 7587869);
    assert_int_equal(ttl, 10);
    /* keepalive (a stream message) */
    assert_int_equal(
        lease_parse("{\"result\":{\"header\":{},\"ID\":\"12\",\"TTL\":\"3\"}}", &id, &ttl, &eb),
        TORII_OK);
    assert_int_equal(id, 12);
    assert_int_equal(ttl, 3);
    /* keepalive of a lease etcd no longer has: TTL omitted (proto3 default 0) */
    assert_int_equal(lease_parse("{\"result\":{\"header\":{},\"ID\":\"12\"}}", &id, &ttl, &eb),
                     TORII_OK);
    assert_int_equal(ttl, 0);
    /* errors and malformed answers */
    assert_int_equal(
        lease_parse("{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: no leader\"}}", &id,
                    &ttl, &eb),
        TORII_EAGAIN);
    assert_non_null(strstr(eb.msg, "no leader"));
    assert_int_equal(lease_parse("{\"ID\":\"x1\",\"TTL\":\"3\"}", &id, &ttl, &eb), TORII_EPROTO);
    assert_non_null(strstr(eb.msg, "\"ID\""));
    assert_int_equal(lease_parse("{\"TTL\":\"3\"}", &id, &ttl, &eb), TORII_EPROTO);
    assert_non_null(strstr(eb.msg, "without an ID"));
    assert_int_equal(lease_parse("[1]", &id, &ttl, &eb), TORII_EPROTO);
    assert_int_equal(lease_parse("not json", &id, &ttl, &eb), TORII_EPROTO);
}

/* The gate over a fleet's election state (no thread, no etcd): held follows the lease's local
 * deadline; enter fences only the calling thread, leave and a refused enter unfence it. */
static void test_gate_fences(void **state)
{
    struct torii_fleet f;
    struct torii_job_gate g;
    int64_t now = torii_clock_mono_us();
    int64_t fence = 0;
    int job = -1;

    (void)state;
    memset(&f, 0, sizeof(f));
    assert_int_equal(pthread_mutex_init(&f.el.mu, NULL), 0);
    torii_fleet_job_gate(&f, &g);
    assert_false(torii_job_enter(&g, TORII_JOB_RENEWAL)); /* no lease yet */
    assert_false(fleet_elect_fenced(&f, &job, &fence));
    torii_fleet_elect_lease(&f.el.st, 5, 60, now);
    torii_fleet_elect_won(&f.el.st, 0, 77);
    assert_true(torii_job_held(&g, TORII_JOB_RENEWAL));
    assert_false(fleet_elect_fenced(&f, &job, &fence)); /* held does not fence */
    assert_false(torii_job_held(&g, TORII_JOB_ACME));
    assert_false(torii_job_held(&g, "nosuchjob"));
    assert_true(torii_job_enter(&g, TORII_JOB_RENEWAL));
    assert_true(fleet_elect_fenced(&f, &job, &fence));
    assert_int_equal(job, 0);
    assert_int_equal(fence, 77);
    assert_true(torii_fleet_job_held(&f, "renewal", &fence));
    assert_int_equal(fence, 77);
    torii_job_leave(&g);
    assert_false(fleet_elect_fenced(&f, &job, &fence));
    /* the deadline passed locally: not held, a refused enter leaves nothing fenced */
    assert_true(torii_job_enter(&g, TORII_JOB_RENEWAL));
    f.el.st.deadline_us = torii_clock_mono_us() - 1;
    assert_false(torii_fleet_job_held(&f, "renewal", &fence));
    assert_int_equal(fence, 0);
    assert_false(torii_job_enter(&g, TORII_JOB_RENEWAL));
    assert_false(fleet_elect_fenced(&f, &job, &fence));
    /* no fleet (a single node) and no gate: always the doer */
    assert_true(torii_fleet_job_held(NULL, "renewal", &fence));
    assert_true(torii_job_enter(NULL, TORII_JOB_ACME));
    assert_true(torii_job_held(NULL, TORII_JOB_ACME));
    (void)pthread_mutex_destroy(&f.el.mu);
}

static void test_revs(void **state)
{
    struct fleet_revs m = {0};
    char id[32];

    (void)state;
    assert_int_equal(fleet_revs_get(&m, "a", 1), 0);
    fleet_revs_set(&m, "a", 1, 5);
    fleet_revs_set(&m, "ab", 2, 6);
    assert_int_equal(fleet_revs_get(&m, "a", 1), 5);
    assert_int_equal(fleet_revs_get(&m, "ab", 2), 6);
    assert_int_equal(fleet_revs_get(&m, "abc", 3), 0);
    fleet_revs_set(&m, "a", 1, 9); /* a later revision replaces */
    assert_int_equal(fleet_revs_get(&m, "a", 1), 9);
    fleet_revs_set(&m, "a", 1, 0); /* deleted: forgotten */
    assert_int_equal(fleet_revs_get(&m, "a", 1), 0);
    for (int i = 0; i < 5000; i++) { /* grows past its first capacity, keeps every entry */
        (void)snprintf(id, sizeof(id), "cert-%d", i);
        fleet_revs_set(&m, id, strlen(id), 100 + i);
    }
    for (int i = 0; i < 5000; i++) {
        (void)snprintf(id, sizeof(id), "cert-%d", i);
        assert_int_equal(fleet_revs_get(&m, id, strlen(id)), 100 + i);
    }
    assert_true(m.cap >= 2 * m.n);
    assert_int_equal(fleet_revs_get(&m, "ab", 2), 6);
    fleet_revs_clear(&m);
    assert_int_equal(fleet_revs_get(&m, "ab", 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_names),     cmocka_unit_test(test_elect_take_and_hold),
        cmocka_unit_test(test_elect_fencing), cmocka_unit_test(test_elect_lease_answers),
        cmocka_unit_test(test_acquire_body),  cmocka_unit_test(test_fence_cmp),
        cmocka_unit_test(test_lease_parse),   cmocka_unit_test(test_gate_fences),
        cmocka_unit_test(test_revs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
