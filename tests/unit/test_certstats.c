/* test_certstats.c - the certificate gauges of /metrics (certstats.h): loaded from the store,
 * kept up to date by its change feed, and written by a scrape without parsing any entity
 * (the parse counter does not move while scraping; it moves by one per certificate written). */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "torii/certstats.h"
#include "torii/metrics.h"
#include "torii/store.h"

#define NOW_MS   1800000000000LL
#define DAY_MS   86400000LL
#define N_LOADED 5

struct fixture {
    char root[64];
    char dir[96];
    struct torii_store *st;
    struct torii_certstats *cs;
};

static int put_entity(struct torii_store *st, const char *id, const char *json)
{
    struct torii_store_rec rec = {
        .id = id, .id_len = strlen(id), .json = json, .json_len = strlen(json)};

    return torii_store_put(st, TORII_STORE_CERTS, &rec, TORII_STORE_PUT, NULL);
}

/* An entity with the fields the gauges read, valid for a day around NOW_MS. */
static void entity_json(char *buf, size_t len, const char *domain, int valid, int revoked)
{
    (void)snprintf(buf, len,
                   "{\"domain\":\"%s\",\"from\":%lld,\"to\":%lld,\"valid\":%s,\"revoked\":%s,"
                   "\"chain\":\"-----BEGIN CERTIFICATE-----\"}",
                   domain, NOW_MS - DAY_MS, NOW_MS + DAY_MS, valid ? "true" : "false",
                   revoked ? "true" : "false");
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct torii_store_opts o = {0};
    char json[256];
    char id[16];

    if (f == NULL) {
        return -1;
    }
    (void)snprintf(f->root, sizeof(f->root), "/tmp/torii-certstats-XXXXXX");
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    (void)snprintf(f->dir, sizeof(f->dir), "%s/db", f->root);
    o.dir = f->dir;
    if (torii_store_open(&o, &f->st, NULL) != TORII_OK) {
        return -1;
    }
    for (int i = 0; i < N_LOADED; i++) {
        (void)snprintf(id, sizeof(id), "c%d", i);
        entity_json(json, sizeof(json), "a.test", i != 0, 0);
        if (put_entity(f->st, id, json) != TORII_OK) {
            return -1;
        }
    }
    if (torii_certstats_open(f->st, &f->cs, NULL) != TORII_OK) {
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char path[160];

    torii_store_free(f->st);
    torii_certstats_free(f->cs);
    (void)snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    (void)unlink(path);
    (void)snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
    (void)unlink(path);
    (void)rmdir(f->dir);
    (void)rmdir(f->root);
    free(f);
    return 0;
}

/* The scrape's text (caller frees). */
static char *scrape(struct torii_certstats *cs, int64_t now_ms)
{
    struct torii_prom p = {0};
    size_t len = 0;
    char *text;

    torii_certstats_write(cs, now_ms, &p);
    text = torii_prom_take(&p, &len);
    assert_non_null(text);
    return text;
}

static void assert_has(const char *text, const char *line)
{
    if (strstr(text, line) == NULL) {
        fail_msg("missing \"%s\" in:\n%s", line, text);
    }
}

static void test_scrapes_do_not_parse(void **state)
{
    struct fixture *f = *state;
    uint64_t loaded = torii_certstats_parses(f->cs);

    assert_int_equal(loaded, N_LOADED); /* the first load: one parse per certificate */
    for (int i = 0; i < 3; i++) {
        char *text = scrape(f->cs, NOW_MS);
        assert_has(text, "torii_certificates{state=\"all\"} 5\n");
        assert_has(text, "torii_certificates{state=\"valid\"} 4\n");
        assert_has(text, "torii_certificate_valid{id=\"c0\",domain=\"a.test\"} 0\n");
        assert_has(text, "torii_certificate_valid{id=\"c1\",domain=\"a.test\"} 1\n");
        free(text);
    }
    assert_int_equal(torii_certstats_parses(f->cs), loaded);
}

static void test_follows_the_store(void **state)
{
    struct fixture *f = *state;
    uint64_t before = torii_certstats_parses(f->cs);
    char json[256];
    char *text;

    entity_json(json, sizeof(json), "b.test", 1, 1); /* revoked: not valid */
    assert_int_equal(put_entity(f->st, "c1", json), TORII_OK);
    entity_json(json, sizeof(json), "new.test", 1, 0);
    assert_int_equal(put_entity(f->st, "a-first", json), TORII_OK);
    assert_int_equal(torii_store_delete(f->st, TORII_STORE_CERTS, "c2", NULL), TORII_OK);
    assert_int_equal(put_entity(f->st, "c3", "[\"not an object\"]"), TORII_OK);
    assert_int_equal(torii_certstats_parses(f->cs), before + 3); /* the delete parses nothing */
    text = scrape(f->cs, NOW_MS);
    assert_has(text, "torii_certificates{state=\"all\"} 4\n"); /* c0 c1 c4 a-first */
    assert_has(text, "torii_certificates{state=\"valid\"} 2\n");
    assert_has(text, "torii_certificate_valid{id=\"c1\",domain=\"b.test\"} 0\n");
    assert_null(strstr(text, "id=\"c2\""));
    assert_null(strstr(text, "id=\"c3\""));
    /* in id order, as the store iterates */
    assert_true(strstr(text, "id=\"a-first\"") < strstr(text, "id=\"c0\""));
    free(text);
    /* validity is judged at scrape time: after notAfter nothing is valid */
    text = scrape(f->cs, NOW_MS + 2 * DAY_MS);
    assert_has(text, "torii_certificates{state=\"valid\"} 0\n");
    assert_has(text,
               "torii_certificate_not_after_seconds{id=\"c0\",domain=\"a.test\"} 1800086400\n");
    free(text);
    assert_int_equal(torii_certstats_parses(f->cs), before + 3);
}

/* A write whose writer handed the entity parsed (as certdb does) is not parsed again: the
 * gauges come from what it handed. */
static void test_takes_the_parsed_entity_of_a_write(void **state)
{
    struct fixture *f = *state;
    uint64_t before = torii_certstats_parses(f->cs);
    char json[256];
    json_t *parsed = NULL;
    struct torii_store_op op = {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS};
    char *text;

    entity_json(json, sizeof(json), "handed.test", 1, 0);
    parsed = json_loads(json, 0, NULL);
    assert_non_null(parsed);
    op.rec =
        (struct torii_store_rec){.id = "h1", .id_len = 2, .json = json, .json_len = strlen(json)};
    op.parsed = parsed;
    assert_int_equal(torii_store_apply(f->st, &op, 1, NULL), TORII_OK);
    json_decref(parsed);
    assert_int_equal(torii_certstats_parses(f->cs), before);
    text = scrape(f->cs, NOW_MS);
    assert_has(text, "torii_certificate_valid{id=\"h1\",domain=\"handed.test\"} 1\n");
    free(text);
    op.parsed = NULL; /* the same write without it is parsed */
    assert_int_equal(torii_store_apply(f->st, &op, 1, NULL), TORII_OK);
    assert_int_equal(torii_certstats_parses(f->cs), before + 1);
}

#define N_RACE  3000
#define N_BATCH 50

struct race_batch {
    struct torii_store_op ops[N_BATCH];
    char ids[N_BATCH][16];
    size_t n;
};

/* Queue a put (domain) or a delete (domain NULL) of r<i>; commit every N_BATCH. */
static void race_op(struct torii_store *st, struct race_batch *b, int i, const char *json)
{
    struct torii_store_op *op = &b->ops[b->n];

    (void)snprintf(b->ids[b->n], sizeof(b->ids[b->n]), "r%05d", i);
    memset(op, 0, sizeof(*op));
    op->kind = json != NULL ? TORII_STORE_PUT : TORII_STORE_DELETE;
    op->bucket = TORII_STORE_CERTS;
    op->rec.id = b->ids[b->n];
    op->rec.id_len = strlen(b->ids[b->n]);
    op->rec.json = json;
    op->rec.json_len = json != NULL ? strlen(json) : 0;
    if (++b->n == N_BATCH) {
        assert_int_equal(torii_store_apply(st, b->ops, b->n, NULL), TORII_OK);
        b->n = 0;
    }
}

/* The first load runs on its own thread while the feed goes on: every id ends as the store
 * has it (rewritten ones with the feed's domain, deleted ones absent), whatever the order in
 * which the loader and the feed reached it. */
static void test_feed_during_load(void **state)
{
    struct fixture *f = *state;
    struct torii_certstats *cs = NULL;
    struct race_batch *b = calloc(1, sizeof(*b));
    char old_json[256];
    char new_json[256];
    char line[128];
    char *text;

    assert_non_null(b);
    entity_json(old_json, sizeof(old_json), "old.test", 1, 0);
    entity_json(new_json, sizeof(new_json), "new.test", 1, 0);
    for (int i = 0; i < N_RACE; i++) {
        race_op(f->st, b, i, old_json);
    }
    assert_int_equal(torii_certstats_open(f->st, &cs, NULL), TORII_OK);
    for (int i = N_RACE - 1; i >= 0; i--) { /* from the end: ahead of the loader */
        if (i % 3 == 0) {
            race_op(f->st, b, i, NULL);
        } else if (i % 2 == 0) {
            race_op(f->st, b, i, new_json);
        }
    }
    assert_int_equal(b->n == 0 ? TORII_OK : torii_store_apply(f->st, b->ops, b->n, NULL), TORII_OK);
    text = scrape(cs, NOW_MS);
    for (int i = 0; i < N_RACE; i++) {
        (void)snprintf(line, sizeof(line), "torii_certificate_valid{id=\"r%05d\",domain=", i);
        const char *at = strstr(text, line);
        if (i % 3 == 0) {
            assert_null(at);
            continue;
        }
        assert_non_null(at);
        at += strlen(line);
        assert_memory_equal(at, i % 2 == 0 ? "\"new.test\"" : "\"old.test\"", 10);
    }
    /* c0..c4 of the fixture, and two thirds of the others */
    (void)snprintf(line, sizeof(line), "torii_certificates{state=\"all\"} %d\n",
                   N_LOADED + N_RACE - (N_RACE + 2) / 3);
    assert_has(text, line);
    free(text);
    free(b);
    torii_certstats_free(cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scrapes_do_not_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follows_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takes_the_parsed_entity_of_a_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_feed_during_load, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
