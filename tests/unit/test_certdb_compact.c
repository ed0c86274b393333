/* test_certdb_compact.c - certdb's compact index (TORII_STORE_CERTIDX): an entry written with
 * every certificate write in the same transaction (create, replace, delete), also on the
 * fleet's path (torii_store_apply_meta of CERTS ops, as src/fleet/apply.c does), what it keeps
 * (record summary, dates, flags, domain), a store written without the derive function marked
 * stale and still read correctly, the one-time rebuild and its resumption from the cursor,
 * and record summaries (decode, refused as a stored record). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testpki.h"
#include "teststore.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

struct fx {
    struct teststore ts; /* the directory and the store (reopened with or without the index) */
};

static void fx_open(struct fx *f, int with_index)
{
    struct torii_store_opts o = {.dir = f->ts.dir, .initial_map_size = 8u << 20};
    struct torii_errbuf eb = {{0}};

    o.certidx = with_index ? torii_certdb_idx_derive : NULL;
    assert_int_equal(torii_store_open(&o, &f->ts.st, &eb), TORII_OK);
}

static void fx_reopen(struct fx *f, int with_index)
{
    torii_store_free(f->ts.st);
    f->ts.st = NULL;
    fx_open(f, with_index);
}

static int setup(void **state)
{
    struct fx *f = torii_xcalloc(1, sizeof(*f));
    struct torii_errbuf eb = {{0}};

    assert_int_equal(teststore_open(&f->ts, "certidx", 8u << 20, &eb), TORII_OK);
    fx_reopen(f, 1);
    assert_int_equal(torii_certdb_migrate(f->ts.st, &eb), TORII_OK); /* empty: complete at once */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    assert_int_equal(teststore_remove(&f->ts, NULL, 0), 0);
    free(f);
    return 0;
}

/* A self-signed leaf entity for name (valid from a minute ago). */
static json_t *leaf(const char *id, const char *name)
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
    assert_int_equal(testpki_make(&po, &c, &k), 0);
    e = testpki_entity(id, &c, 1, k, NULL);
    assert_non_null(e);
    X509_free(c);
    EVP_PKEY_free(k);
    return e;
}

static void create(struct fx *f, const char *id, const char *name)
{
    struct torii_cert_prep_opts o = {.mode = TORII_CERT_PREP_ENRICH,
                                     .now_ms = torii_clock_now_ms()};
    struct torii_errbuf eb = {{0}};
    json_t *e = leaf(id, name);

    assert_int_equal(torii_certdb_create(f->ts.st, e, &o, NULL, &eb), TORII_OK);
    json_decref(e);
}

/* The stored index value of id, decoded into *ix (value in *val, to free). 0: none. */
static int idx_get(struct fx *f, const char *id, struct torii_certdb_idx *ix, unsigned char **val)
{
    char *json = NULL;
    size_t vlen = 0;
    int rc = torii_store_get(f->ts.st, TORII_STORE_CERTIDX, id, &json, NULL, val, &vlen);

    free(json);
    if (rc == TORII_ENOTFOUND) {
        return 0;
    }
    assert_int_equal(rc, TORII_OK);
    assert_int_equal(torii_certdb_idx_decode(id, strlen(id), *val, vlen, ix), TORII_OK);
    return 1;
}

/* The index entry matches what certdb stored: summary of its record, entity fields. */
static void assert_entry_matches(struct fx *f, const char *id)
{
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_idx ix;
    struct torii_certrec *full = torii_xcalloc(1, sizeof(*full));
    struct torii_certrec *sum = torii_xcalloc(1, sizeof(*sum));
    unsigned char *val = NULL;
    const char *dom;

    assert_int_equal(torii_certdb_get(f->ts.st, id, TORII_CERTDB_WITH_AUX, &rd, NULL), TORII_OK);
    assert_true(idx_get(f, id, &ix, &val));
    assert_int_equal(torii_certrec_decode(rd.aux, rd.aux_len, full), TORII_OK);
    assert_int_equal(torii_certrec_decode(ix.sum, ix.sum_len, sum), TORII_OK);
    assert_true(sum->summary);
    assert_int_equal(sum->n_chain, 0);
    assert_true(full->n_chain > 0);
    assert_int_equal(sum->flags, full->flags);
    assert_true(sum->not_after_ms == full->not_after_ms);
    assert_int_equal(sum->n_names, full->n_names);
    assert_memory_equal(sum->names[0].ptr, full->names[0].ptr, full->names[0].len);
    assert_memory_equal(sum->serial.ptr, full->serial.ptr, full->serial.len);
    assert_true(ix.from_ms == json_integer_value(json_object_get(rd.ent, "from")));
    assert_true(ix.to_ms == json_integer_value(json_object_get(rd.ent, "to")));
    dom = json_string_value(json_object_get(rd.ent, "domain"));
    assert_int_equal(ix.domain_len, strlen(dom));
    assert_memory_equal(ix.domain, dom, ix.domain_len);
    assert_int_equal(!!(ix.xflags & TORII_CERTDB_IDX_VALID),
                     json_is_true(json_object_get(rd.ent, "valid")));
    assert_int_equal(!!(ix.xflags & TORII_CERTDB_IDX_AUTORENEW),
                     json_is_true(json_object_get(rd.ent, "autoRenew")));
    assert_true((ix.xflags & TORII_CERTDB_IDX_JSON) != 0);
    torii_certdb_entry_clear(&rd);
    free(val);
    free(full);
    free(sum);
}

static void test_written_with_each_certificate(void **state)
{
    struct fx *f = *state;
    struct torii_certdb_idx ix;
    unsigned char *val = NULL;

    assert_true(torii_certdb_idx_complete(f->ts.st));
    create(f, "a", "a.idx.test");
    create(f, "b", "b.idx.test");
    assert_entry_matches(f, "a");
    assert_entry_matches(f, "b");
    assert_true(torii_certdb_idx_complete(f->ts.st)); /* writes with the derive keep it so */
    assert_int_equal(torii_certdb_delete(f->ts.st, "a", NULL), TORII_OK);
    assert_false(idx_get(f, "a", &ix, &val));
    assert_entry_matches(f, "b");
}

/* A replace (read-modify-write, as the API's PUT) rewrites the entry: the flags follow. */
static int edit_revoke(struct torii_certdb_batch *b, const struct torii_certdb_entry *read,
                       unsigned attempt, void *arg, struct torii_errbuf *eb)
{
    json_t *e = json_deep_copy(read->ent);
    struct torii_cert_prep_opts o = {.mode = TORII_CERT_PREP_ENRICH,
                                     .now_ms = torii_clock_now_ms()};
    int rc;

    (void)attempt;
    (void)arg;
    (void)json_object_set_new(e, "autoRenew", json_true());
    (void)json_object_set_new(json_object_get(e, "metadata"), "untilExpiration",
                              json_string("true"));
    rc = torii_certdb_batch_replace(b, read, e, &o, NULL, eb);
    json_decref(e);
    return rc;
}

static void test_replace_rewrites_the_entry(void **state)
{
    struct fx *f = *state;
    struct torii_certdb_rmw rmw = {.attempts = 1};
    struct torii_certdb_idx ix;
    unsigned char *val = NULL;
    struct torii_errbuf eb = {{0}};

    create(f, "r", "r.idx.test");
    assert_true(idx_get(f, "r", &ix, &val));
    assert_int_equal(ix.xflags & (TORII_CERTDB_IDX_AUTORENEW | TORII_CERTDB_IDX_COPY), 0);
    free(val);
    assert_int_equal(torii_certdb_update(f->ts.st, "r", &rmw, edit_revoke, NULL, &eb), TORII_OK);
    assert_true(idx_get(f, "r", &ix, &val));
    assert_int_equal(ix.xflags & (TORII_CERTDB_IDX_AUTORENEW | TORII_CERTDB_IDX_COPY),
                     TORII_CERTDB_IDX_AUTORENEW | TORII_CERTDB_IDX_COPY);
    free(val);
    assert_entry_matches(f, "r");
}

/* The fleet's path: records applied straight to the store with a meta value (the etcd
 * revision) in the same transaction; the index follows puts and deletes. */
static void test_fleet_apply_path_keeps_the_index(void **state)
{
    struct fx *f = *state;
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_idx ix;
    unsigned char *val = NULL;
    struct torii_store_op op = {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS};
    struct torii_errbuf eb = {{0}};

    create(f, "src", "fleet.idx.test");
    assert_int_equal(torii_certdb_get(f->ts.st, "src", TORII_CERTDB_WITH_AUX, &rd, NULL), TORII_OK);
    op.rec = (struct torii_store_rec){"copy", 4, rd.text, rd.len, rd.aux, rd.aux_len};
    assert_int_equal(torii_store_apply_meta(f->ts.st, &op, 1, "fleet_rev", "7", &eb), TORII_OK);
    assert_true(idx_get(f, "copy", &ix, &val));
    assert_non_null(ix.sum);
    assert_int_equal(torii_certrec_flags(ix.sum, ix.sum_len),
                     torii_certrec_flags(rd.aux, rd.aux_len));
    free(val);
    op.kind = TORII_STORE_DELETE;
    assert_int_equal(torii_store_apply_meta(f->ts.st, &op, 1, "fleet_rev", "8", &eb), TORII_OK);
    assert_false(idx_get(f, "copy", &ix, &val));
    assert_true(torii_certdb_idx_complete(f->ts.st));
    torii_certdb_entry_clear(&rd);
}

static int count_cb(const struct torii_certdb_idx *ix, void *arg)
{
    size_t *n = arg;

    assert_non_null(ix->sum);
    (*n)++;
    return TORII_OK;
}

static size_t idx_count(struct fx *f)
{
    size_t n = 0;

    assert_int_equal(torii_certdb_idx_foreach(f->ts.st, count_cb, &n), TORII_OK);
    return n;
}

/* A store written without the derive function (an older torii, a tool) is marked stale, read
 * correctly all the same (derived on the fly), and rebuilt once by the migration. */
static void test_stale_store_is_rebuilt(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_idx ix;
    unsigned char *val = NULL;

    create(f, "old1", "old1.idx.test");
    fx_reopen(f, 0);
    create(f, "old2", "old2.idx.test");
    assert_int_equal(torii_certdb_delete(f->ts.st, "old1", NULL), TORII_OK);
    assert_false(torii_certdb_idx_complete(f->ts.st));
    fx_reopen(f, 1);
    assert_true(idx_get(f, "old1", &ix, &val)); /* stale: old1 is gone, its entry is not */
    free(val);
    assert_false(idx_get(f, "old2", &ix, &val));
    assert_int_equal(idx_count(f), 1); /* derived from the certificates: old2 only */
    assert_int_equal(torii_certdb_migrate(f->ts.st, &eb), TORII_OK);
    assert_true(torii_certdb_idx_complete(f->ts.st));
    assert_false(idx_get(f, "old1", &ix, &val));
    assert_entry_matches(f, "old2");
    assert_int_equal(idx_count(f), 1);
}

/* An interrupted rebuild resumes after its cursor: what was done before it is kept, not
 * cleared and redone. */
static void test_rebuild_resumes_from_the_cursor(void **state)
{
    struct fx *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_idx ix;
    unsigned char *val = NULL;
    struct torii_store_op mark = {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTIDX};
    unsigned char *mval = NULL;
    size_t mlen = 0;
    struct torii_store_rec none = {"m", 1, "{}", 2, NULL, 0};

    fx_reopen(f, 0);
    create(f, "m", "m.idx.test");
    create(f, "n", "n.idx.test");
    create(f, "p", "p.idx.test");
    fx_reopen(f, 1);
    /* "done" up to "m", with an entry the rebuild must not touch (it is before the cursor) */
    assert_int_equal(torii_certdb_idx_derive(&none, NULL, &mval, &mlen), TORII_OK);
    mark.rec = (struct torii_store_rec){"m", 1, NULL, 0, mval, mlen};
    assert_int_equal(
        torii_store_apply_meta(f->ts.st, &mark, 1, TORII_STORE_CERTIDX_CURSOR, "m", &eb), TORII_OK);
    assert_int_equal(torii_certdb_idx_rebuild(f->ts.st, &eb), TORII_OK);
    assert_true(torii_certdb_idx_complete(f->ts.st));
    assert_true(idx_get(f, "m", &ix, &val));
    assert_null(ix.sum); /* kept as the interrupted run left it */
    free(val);
    assert_entry_matches(f, "n");
    assert_entry_matches(f, "p");
    free(mval);
}

/* The writer's parsed entity (torii_store_op.parsed) derives the same bytes as a parse of the
 * JSON text, so a bulk commit may skip the second parse. */
static void test_derive_from_parsed_equals_from_text(void **state)
{
    static const char js[] = "{\"id\":\"d\",\"domain\":\"d.idx.test\",\"from\":1000,"
                             "\"to\":2000,\"valid\":true,\"revoked\":false,\"exposed\":true,"
                             "\"ca\":false,\"autoRenew\":true,\"letsEncrypt\":false}";
    struct torii_store_rec rec = {"d", 1, js, sizeof(js) - 1, NULL, 0};
    json_t *parsed = json_loads(js, 0, NULL);
    unsigned char *a = NULL;
    unsigned char *b = NULL;
    size_t alen = 0;
    size_t blen = 0;
    struct torii_certdb_idx ix;

    (void)state;
    assert_non_null(parsed);
    assert_int_equal(torii_certdb_idx_derive(&rec, NULL, &a, &alen), TORII_OK);
    assert_int_equal(torii_certdb_idx_derive(&rec, parsed, &b, &blen), TORII_OK);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    assert_int_equal(torii_certdb_idx_decode("d", 1, b, blen, &ix), TORII_OK);
    assert_int_equal(ix.from_ms, 1000);
    assert_int_equal(ix.to_ms, 2000);
    assert_int_equal(ix.domain_len, strlen("d.idx.test"));
    assert_true((ix.xflags & TORII_CERTDB_IDX_JSON) != 0);
    json_decref(parsed); /* borrowed by derive, still ours */
    free(a);
    free(b);
}

static void test_summary_is_not_a_stored_record(void **state)
{
    struct fx *f = *state;
    struct torii_certdb_entry rd = {0};
    struct torii_certdb_batch *b = NULL;
    unsigned char *sum = NULL;
    size_t slen = 0;
    unsigned char *again = NULL;
    size_t alen = 0;
    struct torii_errbuf eb = {{0}};

    create(f, "s", "s.idx.test");
    assert_int_equal(torii_certdb_get(f->ts.st, "s", TORII_CERTDB_WITH_AUX, &rd, NULL), TORII_OK);
    assert_int_equal(torii_certrec_summary(rd.aux, rd.aux_len, &sum, &slen), TORII_OK);
    assert_true(slen < rd.aux_len);
    assert_int_equal(torii_certrec_summary(sum, slen, &again, &alen), TORII_ENOTFOUND);
    b = torii_certdb_batch_new(f->ts.st);
    assert_int_equal(torii_certdb_batch_put_record(b, rd.ent, sum, slen, &eb), TORII_EINVAL);
    assert_int_equal(torii_certdb_batch_size(b), 0);
    torii_certdb_batch_free(b);
    torii_certdb_entry_clear(&rd);
    free(sum);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_written_with_each_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_rewrites_the_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_apply_path_keeps_the_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_store_is_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_resumes_from_the_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary_is_not_a_stored_record, setup, teardown),
        cmocka_unit_test(test_derive_from_parsed_equals_from_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
