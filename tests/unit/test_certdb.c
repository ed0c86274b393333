/* test_certdb.c - certdb: create/get, replace-if and its conflict, the read-modify-write
 * retry, delete, batches (per-item results, all-or-nothing), the serial index (exact lookups,
 * following replaces and deletes; several ids under one key), one chain parse per write, key
 * seal/open, and stores written by previous formats (no serial-only keys; one id per key)
 * brought up to date. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testpki.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

struct fx {
    char dir[64];
    struct torii_store *st;
    X509 *ca;
    EVP_PKEY *ca_key;
};

static int setup(void **state)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct torii_store_opts o = {0};
    struct torii_errbuf eb = {{0}};
    struct testpki_opts po = {0};

    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/torii-certdb-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    o.dir = f->dir;
    o.initial_map_size = 8u << 20;
    assert_int_equal(torii_store_open(&o, &f->st, &eb), TORII_OK);
    po.key_type = EVP_PKEY_EC;
    po.cn = "certdb test CA";
    po.is_ca = 1;
    po.not_before_off_s = -60;
    assert_int_equal(testpki_make(&po, &f->ca, &f->ca_key), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    torii_store_free(f->st);
    X509_free(f->ca);
    EVP_PKEY_free(f->ca_key);
    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A leaf entity for name, issued by the fixture CA (ca != 0) or self-signed. */
static json_t *leaf(struct fx *f, const char *id, const char *name, int by_ca)
{
    const char *const dns[] = {name};
    struct testpki_opts po = {0};
    X509 *c = NULL;
    EVP_PKEY *k = NULL;
    json_t *e;

    po.key_type = EVP_PKEY_EC;
    po.cn = name;
    po.dns = dns;
    po.n_dns = 1;
    po.not_before_off_s = -60;
    po.issuer = by_ca ? f->ca : NULL;
    po.issuer_key = by_ca ? f->ca_key : NULL;
    assert_int_equal(testpki_make(&po, &c, &k), 0);
    e = testpki_entity(id, &c, 1, k, NULL);
    assert_non_null(e);
    if (by_ca) {
        assert_int_equal(json_object_set_new(e, "caRef", json_string("the-ca")), 0);
    }
    X509_free(c);
    EVP_PKEY_free(k);
    return e;
}

/* Enrich as the API does: validity judged now. */
static struct torii_cert_prep_opts enrich_now(void)
{
    struct torii_cert_prep_opts o = {.mode = TORII_CERT_PREP_ENRICH,
                                     .now_ms = torii_clock_now_ms()};
    return o;
}
#define enrich (*(const struct torii_cert_prep_opts[]){enrich_now()})

static char *serial_of(const json_t *e)
{
    char hex[TORII_PKI_SERIAL_HEX_MAX];

    assert_int_equal(torii_pki_cert_serial_hex(e, hex, sizeof(hex), NULL), TORII_OK);
    return torii_xstrdup(hex);
}

static void assert_lookup(struct torii_store *st, const char *issuer, const char *hex,
                          const char *want)
{
    char *id = NULL;
    int rc = torii_certdb_serial_lookup(st, issuer, hex, &id);

    if (want == NULL) {
        assert_int_equal(rc, TORII_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, TORII_OK);
    assert_string_equal(id, want);
    free(id);
}

static void test_create_get_and_index(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry rd = {0};
    json_t *e = leaf(f, "a", "a.certdb.test", 1);
    json_t *dup = leaf(f, "a", "other.certdb.test", 1);
    uint64_t before = torii_pki_chain_parse_count();
    char *hex;
    char upper[TORII_PKI_SERIAL_HEX_MAX + 2];

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_pki_chain_parse_count() - before, 1); /* one parse per write */
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_int_equal(torii_certdb_get(f->st, "a", TORII_CERTDB_WITH_AUX, &rd, &eb), TORII_OK);
    assert_true(json_equal(rd.ent, e));
    assert_non_null(rd.aux);
    assert_true((torii_certrec_flags(rd.aux, rd.aux_len) & TORII_CERTREC_KEY_MATCHES) != 0);
    torii_certdb_entry_clear(&rd);
    /* Exact lookups, by issuer and serial, and by serial alone (any case, leading zeros). */
    hex = serial_of(e);
    assert_lookup(f->st, "the-ca", hex, "a");
    assert_lookup(f->st, NULL, hex, "a");
    (void)snprintf(upper, sizeof(upper), "00%s", hex);
    for (char *p = upper; *p != '\0'; p++) {
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    }
    assert_lookup(f->st, NULL, upper, "a");
    assert_lookup(f->st, "another-ca", hex, NULL);
    assert_int_equal(torii_certdb_serial_lookup(f->st, NULL, "xyz", &hex), TORII_EINVAL);
    /* The id is taken: nothing changes. */
    assert_int_equal(torii_certdb_create(f->st, dup, &enrich, NULL, &eb), TORII_EEXIST);
    assert_string_equal(eb.msg, "entity already exists");
    assert_int_equal(torii_certdb_get(f->st, "a", 0, &rd, &eb), TORII_OK);
    assert_true(json_equal(rd.ent, e));
    torii_certdb_entry_clear(&rd);
    assert_int_equal(torii_certdb_get(f->st, "nope", 0, &rd, &eb), TORII_ENOTFOUND);
    free(hex);
    json_decref(e);
    json_decref(dup);
}

static void test_replace_if_conflict_and_index_moves(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_entry stale = {0};
    struct torii_certdb_batch *b = NULL;
    json_t *e = leaf(f, "r", "r.certdb.test", 1);
    json_t *next = leaf(f, "r", "r2.certdb.test", 1);
    json_t *late = NULL;
    char *old_hex = NULL;
    char *new_hex = NULL;
    uint64_t before;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    old_hex = serial_of(e);
    assert_int_equal(torii_certdb_get(f->st, "r", TORII_CERTDB_WITH_AUX, &rd, &eb), TORII_OK);
    assert_int_equal(torii_certdb_get(f->st, "r", TORII_CERTDB_WITH_AUX, &stale, &eb), TORII_OK);
    /* A new certificate under the same id: one parse, index follows the serial. */
    b = torii_certdb_batch_new(f->st);
    before = torii_pki_chain_parse_count();
    assert_int_equal(torii_certdb_batch_replace(b, &rd, next, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_pki_chain_parse_count() - before, 1);
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb), TORII_OK);
    torii_certdb_batch_free(b);
    new_hex = serial_of(next);
    assert_lookup(f->st, "the-ca", new_hex, "r");
    assert_lookup(f->st, NULL, new_hex, "r");
    assert_lookup(f->st, "the-ca", old_hex, NULL);
    assert_lookup(f->st, NULL, old_hex, NULL);
    /* A write from what was read before that replace: refused, nothing written. */
    late = json_deep_copy(stale.ent);
    assert_int_equal(json_object_set_new(late, "description", json_string("late")), 0);
    b = torii_certdb_batch_new(f->st);
    assert_int_equal(torii_certdb_batch_replace(b, &stale, late, NULL, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb), TORII_ECONFLICT);
    assert_non_null(strstr(eb.msg, "changed concurrently"));
    torii_certdb_batch_free(b);
    torii_certdb_entry_clear(&rd);
    assert_int_equal(torii_certdb_get(f->st, "r", 0, &rd, &eb), TORII_OK);
    assert_true(json_equal(rd.ent, next));
    assert_lookup(f->st, NULL, new_hex, "r");
    torii_certdb_entry_clear(&rd);
    torii_certdb_entry_clear(&stale);
    free(old_hex);
    free(new_hex);
    json_decref(e);
    json_decref(next);
    json_decref(late);
}

/* ---- the read-modify-write loop ---- */

struct rmw {
    struct fx *f;
    unsigned edits;
    unsigned races; /* concurrent writes still to land in the window */
    unsigned seen_attempt;
};

static int rmw_edit(struct torii_certdb_batch *b, const struct torii_certdb_entry *read,
                    unsigned attempt, void *arg, struct torii_errbuf *eb)
{
    struct rmw *r = arg;
    json_t *e = json_deep_copy(read->ent);
    const char *d = json_string_value(json_object_get(read->ent, "description"));
    int rc;

    r->edits++;
    r->seen_attempt = attempt;
    (void)json_object_set_new(e, "description", json_sprintf("%s+mine", d));
    rc = torii_certdb_batch_replace(b, read, e, NULL, NULL, eb);
    json_decref(e);
    return rc;
}

static void rmw_race(const char *id, unsigned attempt, void *arg)
{
    struct rmw *r = arg;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_batch *b = NULL;
    json_t *e;

    (void)attempt;
    if (r->races == 0) {
        return;
    }
    r->races--;
    assert_int_equal(torii_certdb_get(r->f->st, id, 0, &rd, &eb), TORII_OK);
    e = json_deep_copy(rd.ent);
    (void)json_object_set_new(e, "description", json_string("theirs"));
    b = torii_certdb_batch_new(r->f->st);
    assert_int_equal(torii_certdb_batch_replace(b, &rd, e, NULL, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb), TORII_OK);
    torii_certdb_batch_free(b);
    torii_certdb_entry_clear(&rd);
    json_decref(e);
}

static const char *stored_description(struct fx *f, const char *id)
{
    static char buf[256];
    json_t *e = NULL;

    assert_int_equal(torii_certdb_load(f->st, id, &e, NULL), TORII_OK);
    (void)snprintf(buf, sizeof(buf), "%s", json_string_value(json_object_get(e, "description")));
    json_decref(e);
    return buf;
}

static void test_update_retries_after_a_conflict(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct rmw r = {f, 0, 1, 0};
    struct torii_certdb_rmw opts = {.attempts = 2, .between = rmw_race, .between_arg = &r};
    json_t *e = leaf(f, "u", "u.certdb.test", 0);

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    /* One concurrent write: the second attempt starts from it and lands. */
    assert_int_equal(torii_certdb_update(f->st, "u", &opts, rmw_edit, &r, &eb), TORII_OK);
    assert_int_equal(r.edits, 2);
    assert_int_equal(r.seen_attempt, 1);
    assert_string_equal(stored_description(f, "u"), "theirs+mine");
    /* Only one attempt allowed: the concurrent write stands, ours is refused. */
    r = (struct rmw){f, 0, 1, 0};
    opts.attempts = 1;
    assert_int_equal(torii_certdb_update(f->st, "u", &opts, rmw_edit, &r, &eb), TORII_ECONFLICT);
    assert_int_equal(r.edits, 1);
    assert_string_equal(stored_description(f, "u"), "theirs");
    assert_int_equal(torii_certdb_update(f->st, "missing", &opts, rmw_edit, &r, &eb),
                     TORII_ENOTFOUND);
    json_decref(e);
}

static void test_delete_takes_the_index_along(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    json_t *e = leaf(f, "d", "d.certdb.test", 0);
    char *hex;
    size_t n = 0;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    hex = serial_of(e);
    assert_lookup(f->st, "d", hex, "d"); /* self-signed: its own issuer */
    assert_int_equal(torii_certdb_delete(f->st, "d", &eb), TORII_OK);
    assert_lookup(f->st, "d", hex, NULL);
    assert_lookup(f->st, NULL, hex, NULL);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    assert_int_equal(torii_certdb_delete(f->st, "d", &eb), TORII_ENOTFOUND);
    free(hex);
    json_decref(e);
}

static void test_batch_per_item_and_atomic(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry stale = {0};
    struct torii_certdb_entry seen = {0};
    struct torii_certdb_batch *b = NULL;
    json_t *y = leaf(f, "y", "y.certdb.test", 1);
    json_t *x = leaf(f, "x", "x.certdb.test", 1);
    json_t *x2 = leaf(f, "x2", "x2.certdb.test", 1);
    json_t *bad = leaf(f, "bad", "bad.certdb.test", 1);
    json_t *y2 = NULL;
    json_t *e = NULL;
    const char *msg = NULL;
    size_t n = 0;

    assert_int_equal(torii_certdb_create(f->st, y, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_get(f->st, "y", TORII_CERTDB_WITH_AUX, &stale, &eb), TORII_OK);
    y2 = json_deep_copy(stale.ent);
    (void)json_object_set_new(y2, "description", json_string("batch"));
    /* A bad entry is refused when queued; the rest of the batch goes on. */
    b = torii_certdb_batch_new(f->st);
    assert_int_equal(torii_certdb_batch_create(b, x, &enrich, NULL, &eb), TORII_OK);
    (void)json_object_set_new(bad, "chain", json_string("not a certificate"));
    assert_int_equal(torii_certdb_batch_create(b, bad, &enrich, NULL, &eb), TORII_EINVAL);
    assert_int_equal(torii_certdb_batch_size(b), 1);
    /* A later item sees an earlier one. */
    assert_int_equal(torii_certdb_batch_get(b, "x", 0, &seen, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(seen.ent, "id")), "x");
    torii_certdb_entry_clear(&seen);
    assert_int_equal(torii_certdb_batch_replace(b, &stale, y2, NULL, NULL, &eb), TORII_OK);
    /* A concurrent writer changes y before the commit. */
    {
        struct torii_certdb_batch *o = torii_certdb_batch_new(f->st);
        json_t *other = json_deep_copy(stale.ent);
        (void)json_object_set_new(other, "description", json_string("other"));
        assert_int_equal(torii_certdb_batch_replace(o, &stale, other, NULL, NULL, &eb), TORII_OK);
        assert_int_equal(torii_certdb_batch_commit(o, TORII_CERTDB_ATOMIC, &eb), TORII_OK);
        torii_certdb_batch_free(o);
        json_decref(other);
    }
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_PER_ITEM, &eb), TORII_OK);
    assert_int_equal(torii_certdb_batch_item_rc(b, 0, &msg), TORII_OK);
    assert_int_equal(torii_certdb_batch_item_rc(b, 1, &msg), TORII_ECONFLICT);
    assert_non_null(strstr(msg, "changed concurrently"));
    torii_certdb_batch_free(b);
    assert_int_equal(torii_certdb_load(f->st, "x", &e, NULL), TORII_OK);
    json_decref(e);
    assert_string_equal(stored_description(f, "y"), "other");
    /* ATOMIC: the stale replace fails the whole batch, x2 is not created. */
    b = torii_certdb_batch_new(f->st);
    assert_int_equal(torii_certdb_batch_create(b, x2, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_batch_replace(b, &stale, y2, NULL, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb), TORII_ECONFLICT);
    assert_int_equal(torii_certdb_batch_item_rc(b, 0, NULL), TORII_ECONFLICT);
    torii_certdb_batch_free(b);
    assert_int_equal(torii_certdb_load(f->st, "x2", &e, NULL), TORII_ENOTFOUND);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_CERTS, &n), TORII_OK);
    assert_int_equal(n, 2);
    torii_certdb_entry_clear(&stale);
    json_decref(x);
    json_decref(x2);
    json_decref(y);
    json_decref(y2);
    json_decref(bad);
}

/* A PUT without a key keeps the stored one (same leaf public key): still one chain parse. */
static void test_put_keeps_the_key_with_one_parse(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_batch *b = NULL;
    struct torii_cert_prep_opts o = enrich_now();
    json_t *e = leaf(f, "k", "k.certdb.test", 0);
    json_t *put = NULL;
    uint64_t before;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_get(f->st, "k", TORII_CERTDB_WITH_AUX, &rd, &eb), TORII_OK);
    put = json_pack("{s:s, s:O, s:s}", "id", "k", "chain", json_object_get(e, "chain"),
                    "description", "new words");
    o.keep_from = rd.ent;
    o.keep_aux = rd.aux;
    o.keep_aux_len = rd.aux_len;
    b = torii_certdb_batch_new(f->st);
    before = torii_pki_chain_parse_count();
    assert_int_equal(torii_certdb_batch_replace(b, &rd, put, &o, NULL, &eb), TORII_OK);
    assert_int_equal(torii_pki_chain_parse_count() - before, 1);
    assert_int_equal(torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb), TORII_OK);
    torii_certdb_batch_free(b);
    assert_string_equal(json_string_value(json_object_get(put, "privateKey")),
                        json_string_value(json_object_get(e, "privateKey")));
    assert_true(json_is_true(json_object_get(put, "valid")));
    torii_certdb_entry_clear(&rd);
    json_decref(put);
    json_decref(e);
}

/* The key is stored once: the record holds no key bytes (only HAS_KEY and the type), and
 * pki opens the stored privateKey back to the leaf's key. */
static void test_key_seal_open_round_trip(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_entry rd = {0};
    struct torii_certrec *rec = torii_xcalloc(1, sizeof(*rec));
    json_t *e = leaf(f, "s", "s.certdb.test", 0);
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    const unsigned char *p;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_get(f->st, "s", TORII_CERTDB_WITH_AUX, &rd, &eb), TORII_OK);
    assert_int_equal(torii_certrec_decode(rd.aux, rd.aux_len, rec), TORII_OK);
    assert_int_equal(rec->version, 3);
    assert_true((rec->flags & TORII_CERTREC_HAS_KEY) != 0);
    assert_int_equal(rec->key_type, EVP_PKEY_EC);
    assert_int_equal(rec->key_der.len, 0);
    assert_int_equal(torii_pki_entity_key_open(NULL, rd.ent, &k, &eb), TORII_OK);
    p = (const unsigned char *)rec->chain[0].ptr;
    x = d2i_X509(NULL, &p, (long)rec->chain[0].len);
    assert_non_null(x);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(torii_pki_key_open(NULL, "s", "junk", NULL, &k, &eb), TORII_EINVAL);
    X509_free(x);
    EVP_PKEY_free(k);
    free(rec);
    torii_certdb_entry_clear(&rd);
    json_decref(e);
}

/* A store as the previous torii wrote it: entities with their records and only the
 * "<issuer>:<serial>" index entries, no certdb schema. migrate adds the serial-only keys
 * once; everything written before still reads. */
static void test_old_format_store_is_migrated(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    json_t *e = leaf(f, "old", "old.certdb.test", 1);
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    char *text = NULL;
    char *hex = NULL;
    char *ver = NULL;
    char key[600];
    struct torii_store_rec rec = {0};
    json_t *back = NULL;
    size_t n = 0;

    assert_int_equal(torii_cert_enrich(e, torii_clock_now_ms(), &eb), TORII_OK);
    assert_int_equal(torii_certrec_build(e, &aux, &aux_len, &eb), TORII_OK);
    text = json_dumps(e, JSON_COMPACT);
    rec = (struct torii_store_rec){"old", 3, text, strlen(text), aux, aux_len};
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &rec, TORII_STORE_CREATE, &eb),
                     TORII_OK);
    hex = serial_of(e);
    (void)snprintf(key, sizeof(key), "the-ca:%s", hex);
    rec = (struct torii_store_rec){key, strlen(key), "old", 3, NULL, 0};
    assert_int_equal(torii_store_put(f->st, TORII_STORE_SERIALS, &rec, TORII_STORE_PUT, &eb),
                     TORII_OK);
    assert_lookup(f->st, NULL, hex, NULL); /* the old format has no serial-only key */
    assert_int_equal(torii_certdb_migrate(f->st, &eb), TORII_OK);
    assert_lookup(f->st, NULL, hex, "old");
    assert_lookup(f->st, "the-ca", hex, "old");
    assert_int_equal(torii_store_meta_get(f->st, "certdb_schema", &ver), TORII_OK);
    assert_string_equal(ver, "2");
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 2);
    assert_int_equal(torii_certdb_migrate(f->st, &eb), TORII_OK); /* once only */
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 2);
    assert_int_equal(torii_certdb_load(f->st, "old", &back, &eb), TORII_OK);
    assert_true(json_equal(back, e));
    assert_int_equal(torii_certdb_delete(f->st, "old", &eb), TORII_OK);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    json_decref(back);
    free(ver);
    free(hex);
    free(text);
    torii_secure_free(aux, aux_len);
    json_decref(e);
}

/* The ids under (issuer, serial), oldest first, '\n'-joined ("" when none). */
static void assert_ids(struct torii_store *st, const char *issuer, const char *hex,
                       const char *want)
{
    char **ids = NULL;
    size_t n = 0;
    char got[256] = "";
    int rc = torii_certdb_serial_lookup_all(st, issuer, hex, &ids, &n);

    assert_int_equal(rc, want[0] != '\0' ? TORII_OK : TORII_ENOTFOUND);
    for (size_t i = 0; i < n; i++) {
        (void)snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i > 0 ? "\n" : "",
                       ids[i]);
    }
    assert_string_equal(got, want);
    torii_certdb_ids_free(ids, n);
}

/* A certificate and a copy of it (an [UNTIL EXPIRATION] copy shares its original's serial
 * and issuer): the key names both; deleting one leaves the other; the key goes with the
 * last. */
static void test_index_key_holds_every_id(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    json_t *e = leaf(f, "orig", "orig.certdb.test", 1);
    json_t *copy = NULL;
    char *hex = NULL;
    size_t n = 0;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    copy = json_deep_copy(e);
    assert_int_equal(json_object_set_new(copy, "id", json_string("copy")), 0);
    assert_int_equal(torii_certdb_create(f->st, copy, &enrich, NULL, &eb), TORII_OK);
    hex = serial_of(e);
    assert_ids(f->st, "the-ca", hex, "orig\ncopy");
    assert_ids(f->st, NULL, hex, "orig\ncopy");
    assert_lookup(f->st, "the-ca", hex, "copy"); /* the newest writer */
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 2);
    assert_int_equal(torii_certdb_delete(f->st, "copy", &eb), TORII_OK);
    assert_ids(f->st, "the-ca", hex, "orig");
    assert_ids(f->st, NULL, hex, "orig");
    assert_lookup(f->st, NULL, hex, "orig");
    assert_int_equal(torii_certdb_create(f->st, copy, &enrich, NULL, &eb), TORII_OK);
    assert_int_equal(torii_certdb_delete(f->st, "orig", &eb), TORII_OK);
    assert_ids(f->st, "the-ca", hex, "copy");
    assert_int_equal(torii_certdb_delete(f->st, "copy", &eb), TORII_OK);
    assert_ids(f->st, "the-ca", hex, "");
    assert_ids(f->st, NULL, hex, "");
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    free(hex);
    json_decref(e);
    json_decref(copy);
}

/* A store whose index kept one id per key (schema 2: the newest writer): migrate makes every
 * certificate's id join its keys' lists, once. */
static void test_single_id_index_is_migrated_to_lists(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    json_t *e = leaf(f, "first", "first.certdb.test", 1);
    json_t *copy = NULL;
    char *hex = NULL;
    char *ver = NULL;
    char key[600];
    struct torii_store_rec rec = {0};
    size_t n = 0;

    assert_int_equal(torii_certdb_create(f->st, e, &enrich, NULL, &eb), TORII_OK);
    copy = json_deep_copy(e);
    assert_int_equal(json_object_set_new(copy, "id", json_string("second")), 0);
    assert_int_equal(torii_certdb_create(f->st, copy, &enrich, NULL, &eb), TORII_OK);
    hex = serial_of(e);
    /* What schema 2 left: both keys name the newest writer alone. */
    (void)snprintf(key, sizeof(key), "the-ca:%s", hex);
    rec = (struct torii_store_rec){key, strlen(key), "second", 6, NULL, 0};
    assert_int_equal(torii_store_put(f->st, TORII_STORE_SERIALS, &rec, TORII_STORE_PUT, &eb),
                     TORII_OK);
    rec = (struct torii_store_rec){hex, strlen(hex), "second", 6, NULL, 0};
    assert_int_equal(torii_store_put(f->st, TORII_STORE_SERIALS, &rec, TORII_STORE_PUT, &eb),
                     TORII_OK);
    assert_int_equal(torii_store_meta_put(f->st, "certdb_index_lists", "0", &eb), TORII_OK);
    assert_ids(f->st, "the-ca", hex, "second");
    assert_int_equal(torii_certdb_migrate(f->st, &eb), TORII_OK);
    assert_ids(f->st, "the-ca", hex, "second\nfirst");
    assert_ids(f->st, NULL, hex, "second\nfirst");
    assert_int_equal(torii_store_meta_get(f->st, "certdb_index_lists", &ver), TORII_OK);
    assert_string_equal(ver, "1");
    assert_int_equal(torii_certdb_migrate(f->st, &eb), TORII_OK); /* once only */
    assert_ids(f->st, "the-ca", hex, "second\nfirst");
    assert_int_equal(torii_certdb_delete(f->st, "second", &eb), TORII_OK);
    assert_ids(f->st, NULL, hex, "first");
    assert_int_equal(torii_certdb_delete(f->st, "first", &eb), TORII_OK);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_SERIALS, &n), TORII_OK);
    assert_int_equal(n, 0);
    free(ver);
    free(hex);
    json_decref(e);
    json_decref(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_and_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_if_conflict_and_index_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_retries_after_a_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_takes_the_index_along, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_per_item_and_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_keeps_the_key_with_one_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_seal_open_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_format_store_is_migrated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_key_holds_every_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_id_index_is_migrated_to_lists, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
