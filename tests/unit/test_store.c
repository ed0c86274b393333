/* test_store.c - unit tests for the LMDB store: round trips, atomicity, watchers, map growth,
 * schema version, concurrent readers and stale reader slots left by a killed process. */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "torii/log.h"
#include "torii/mem.h"
#include "torii/store.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

struct fixture {
    char root[64]; /* mkdtemp directory */
    char dir[96];  /* <root>/db: the store, created by torii_store_open */
    struct torii_store *st;
};

/* ---- helpers ---- */

static void remove_dir_contents(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) { /* NOLINT(concurrency-mt-unsafe): one thread */
        char path[PATH_MAX];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        (void)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && errno == EISDIR) {
            (void)rmdir(path);
        }
    }
    (void)closedir(d);
}

static int open_store(struct fixture *f, size_t initial, size_t max)
{
    struct torii_store_opts opts = {
        .dir = f->dir, .initial_map_size = initial, .max_map_size = max};
    struct torii_errbuf eb = {{0}};

    return torii_store_open(&opts, &f->st, &eb);
}

static void reopen_store(struct fixture *f, size_t initial, size_t max)
{
    torii_store_free(f->st);
    f->st = NULL;
    assert_int_equal(open_store(f, initial, max), TORII_OK);
}

static struct torii_store_rec mkrec(const char *id, const char *json)
{
    struct torii_store_rec r = {
        .id = id, .id_len = strlen(id), .json = json, .json_len = json ? strlen(json) : 0};
    return r;
}

static int put_json(struct torii_store *st, enum torii_store_bucket b, const char *id,
                    const char *json, enum torii_store_op_kind kind)
{
    struct torii_store_rec r = mkrec(id, json);
    struct torii_errbuf eb = {{0}};

    return torii_store_put(st, b, &r, kind, &eb);
}

static void assert_json(struct torii_store *st, enum torii_store_bucket b, const char *id,
                        const char *want)
{
    char *json = NULL;
    size_t len = 0;

    assert_int_equal(torii_store_get(st, b, id, &json, &len, NULL, NULL), TORII_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(json, want);
    free(json);
}

static void assert_missing(struct torii_store *st, enum torii_store_bucket b, const char *id)
{
    char *json = NULL;

    assert_int_equal(torii_store_get(st, b, id, &json, NULL, NULL, NULL), TORII_ENOTFOUND);
    assert_null(json);
}

static size_t count_of(struct torii_store *st, enum torii_store_bucket b)
{
    size_t n = 0;

    assert_int_equal(torii_store_count(st, b, &n), TORII_OK);
    return n;
}

static void fill_pattern(unsigned char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (unsigned char)((i * 31u + (size_t)seed * 7u) & 0xffu);
    }
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    struct fixture *f = torii_xcalloc(1, sizeof(*f));

    torii_log_set_level(TORII_LOG_WARN);
    (void)snprintf(f->root, sizeof(f->root), "/tmp/torii-store-XXXXXX");
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    (void)snprintf(f->dir, sizeof(f->dir), "%s/db", f->root);
    if (open_store(f, 0, 0) != TORII_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    torii_store_free(f->st);
    remove_dir_contents(f->dir);
    (void)rmdir(f->dir);
    remove_dir_contents(f->root);
    (void)rmdir(f->root);
    free(f);
    return 0;
}

/* ---- round trips ---- */

static void test_store_put_get_with_aux_round_trips(void **state)
{
    struct fixture *f = *state;
    unsigned char aux[300];
    struct torii_store_rec r = mkrec("cert-1", "{\"id\":\"cert-1\"}");
    struct torii_errbuf eb = {{0}};
    char *json = NULL;
    unsigned char *aux_out = NULL;
    size_t jl = 0;
    size_t al = 0;

    fill_pattern(aux, sizeof(aux), 1);
    r.aux = aux;
    r.aux_len = sizeof(aux);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_PUT, &eb), TORII_OK);
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, "cert-1", &json, &jl, &aux_out, &al),
                     TORII_OK);
    assert_int_equal(jl, r.json_len);
    assert_memory_equal(json, r.json, jl);
    assert_int_equal(json[jl], '\0');
    assert_int_equal(al, sizeof(aux));
    assert_memory_equal(aux_out, aux, al);
    free(json);
    free(aux_out);

    /* Buckets are separate namespaces. */
    assert_missing(f->st, TORII_STORE_SERIALS, "cert-1");
    assert_missing(f->st, TORII_STORE_ACME, "cert-1");
}

static void test_store_get_without_aux_returns_null_aux(void **state)
{
    struct fixture *f = *state;
    char *json = NULL;
    unsigned char *aux = (unsigned char *)f; /* must be overwritten with NULL */
    size_t al = 99;

    assert_int_equal(put_json(f->st, TORII_STORE_SERIALS, "ca:01", "\"c1\"", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(torii_store_get(f->st, TORII_STORE_SERIALS, "ca:01", &json, NULL, &aux, &al),
                     TORII_OK);
    assert_string_equal(json, "\"c1\"");
    assert_null(aux);
    assert_int_equal(al, 0);
    free(json);

    /* Empty JSON is stored as such and read back as "". */
    assert_int_equal(put_json(f->st, TORII_STORE_SERIALS, "empty", NULL, TORII_STORE_PUT),
                     TORII_OK);
    assert_json(f->st, TORII_STORE_SERIALS, "empty", "");
}

static void test_store_put_existing_replaces(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "1", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "22", TORII_STORE_PUT), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, "a", "22");
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "333", TORII_STORE_REPLACE), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, "a", "333");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 1);
}

static void test_store_delete_removes_and_missing_returns_enotfound(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};

    assert_int_equal(put_json(f->st, TORII_STORE_ACME, "acct", "{}", TORII_STORE_CREATE), TORII_OK);
    assert_int_equal(torii_store_delete(f->st, TORII_STORE_ACME, "acct", &eb), TORII_OK);
    assert_missing(f->st, TORII_STORE_ACME, "acct");
    assert_int_equal(count_of(f->st, TORII_STORE_ACME), 0);
    assert_int_equal(torii_store_delete(f->st, TORII_STORE_ACME, "acct", &eb), TORII_ENOTFOUND);
    assert_non_null(strstr(eb.msg, "not found"));
}

struct collect {
    char ids[16][16];
    size_t n;
    size_t stop_after; /* 0 = never */
};

static int collect_cb(const struct torii_store_rec *rec, void *arg)
{
    struct collect *c = arg;

    if (c->n < 16 && rec->id_len < 16) {
        memcpy(c->ids[c->n], rec->id, rec->id_len);
        c->ids[c->n][rec->id_len] = '\0';
    }
    c->n++;
    if (c->stop_after != 0 && c->n >= c->stop_after) {
        return TORII_EAGAIN;
    }
    return TORII_OK;
}

static void test_store_foreach_visits_in_id_order_and_stops_on_cb_error(void **state)
{
    struct fixture *f = *state;
    struct collect c = {0};
    const char *ids[] = {"m", "b", "z", "a", "c"};

    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(put_json(f->st, TORII_STORE_CERTS, ids[i], "{}", TORII_STORE_CREATE),
                         TORII_OK);
    }
    assert_int_equal(put_json(f->st, TORII_STORE_SERIALS, "other", "{}", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(torii_store_foreach(f->st, TORII_STORE_CERTS, collect_cb, &c), TORII_OK);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.ids[0], "a");
    assert_string_equal(c.ids[1], "b");
    assert_string_equal(c.ids[2], "c");
    assert_string_equal(c.ids[3], "m");
    assert_string_equal(c.ids[4], "z");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 5);
    assert_int_equal(count_of(f->st, TORII_STORE_SERIALS), 1);

    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(torii_store_foreach(f->st, TORII_STORE_CERTS, collect_cb, &c), TORII_EAGAIN);
    assert_int_equal(c.n, 2);

    memset(&c, 0, sizeof(c));
    assert_int_equal(torii_store_foreach(f->st, TORII_STORE_ACME, collect_cb, &c), TORII_OK);
    assert_int_equal(c.n, 0);
}

/* ---- failure semantics ---- */

static void test_store_create_existing_returns_eexist_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_store_rec r = mkrec("dup", "\"new\"");

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "dup", "\"old\"", TORII_STORE_CREATE),
                     TORII_OK);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_CREATE, &eb),
                     TORII_EEXIST);
    assert_non_null(strstr(eb.msg, "certs/dup"));
    assert_json(f->st, TORII_STORE_CERTS, "dup", "\"old\"");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 1);
}

static void test_store_replace_missing_returns_enotfound(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "nope", "{}", TORII_STORE_REPLACE),
                     TORII_ENOTFOUND);
    assert_missing(f->st, TORII_STORE_CERTS, "nope");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 0);
}

struct watch_log {
    size_t n;
    enum torii_store_op_kind kinds[16];
    enum torii_store_bucket buckets[16];
    char ids[16][16];
    int json_null[16];
    int visible[16]; /* 1 if torii_store_get saw the committed state from inside the watcher */
    int write_rc;    /* result of a write attempted from inside the watcher */
    struct torii_store *st;
};

static void watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                     const struct torii_store_rec *rec, void *arg)
{
    struct watch_log *w = arg;
    char *json = NULL;
    int rc;

    if (w->n >= 16 || rec->id_len >= 16) {
        return;
    }
    w->kinds[w->n] = kind;
    w->buckets[w->n] = b;
    memcpy(w->ids[w->n], rec->id, rec->id_len);
    w->ids[w->n][rec->id_len] = '\0';
    w->json_null[w->n] = rec->json == NULL && rec->aux == NULL;
    rc = torii_store_get(w->st, b, w->ids[w->n], &json, NULL, NULL, NULL);
    w->visible[w->n] = kind == TORII_STORE_DELETE ? rc == TORII_ENOTFOUND : rc == TORII_OK;
    free(json);
    w->n++;
}

static void watch_second_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                            const struct torii_store_rec *rec, void *arg)
{
    struct watch_log *w = arg;

    (void)kind;
    (void)b;
    (void)rec;
    w->n++;
}

static void test_store_multi_op_apply_failing_midway_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct watch_log w = {.st = f->st};
    struct torii_store_op ops[4] = {
        {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS, .rec = mkrec("x", "1")},
        {.kind = TORII_STORE_DELETE, .bucket = TORII_STORE_CERTS, .rec = mkrec("keep", NULL)},
        {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_SERIALS, .rec = mkrec("y", "2")},
        {.kind = TORII_STORE_CREATE, .bucket = TORII_STORE_CERTS, .rec = mkrec("exists", "3")},
    };

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "keep", "\"k\"", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "exists", "\"e\"", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(torii_store_watch(f->st, watch_cb, &w), TORII_OK);

    assert_int_equal(torii_store_apply(f->st, ops, 4, &eb), TORII_EEXIST);
    assert_missing(f->st, TORII_STORE_CERTS, "x");
    assert_missing(f->st, TORII_STORE_SERIALS, "y");
    assert_json(f->st, TORII_STORE_CERTS, "keep", "\"k\"");
    assert_json(f->st, TORII_STORE_CERTS, "exists", "\"e\"");

    /* Failing on a missing id midway (DELETE) is atomic too. */
    ops[3].kind = TORII_STORE_DELETE;
    ops[3].rec = mkrec("missing", NULL);
    assert_int_equal(torii_store_apply(f->st, ops, 4, &eb), TORII_ENOTFOUND);
    assert_missing(f->st, TORII_STORE_CERTS, "x");
    assert_json(f->st, TORII_STORE_CERTS, "keep", "\"k\"");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 2);
    assert_int_equal(count_of(f->st, TORII_STORE_SERIALS), 0);
    assert_int_equal(w.n, 0); /* no watcher call for a failed apply */
}

static struct torii_store_op replace_if(const char *id, const char *json, const char *expect)
{
    struct torii_store_op op = {.kind = TORII_STORE_REPLACE_IF,
                                .bucket = TORII_STORE_CERTS,
                                .rec = mkrec(id, json),
                                .expect_json = expect,
                                .expect_json_len = expect != NULL ? strlen(expect) : 0};
    return op;
}

static void test_store_replace_if_changed_returns_econflict_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct watch_log w = {.st = f->st};
    struct torii_store_op ops[2] = {
        {.kind = TORII_STORE_CREATE, .bucket = TORII_STORE_CERTS, .rec = mkrec("copy", "{}")},
        replace_if("a", "{\"v\":3}", "{\"v\":1}"),
    };

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":1}", TORII_STORE_PUT),
                     TORII_OK);
    /* Someone else writes "a" after our read of {"v":1}. */
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":2}", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(torii_store_watch(f->st, watch_cb, &w), TORII_OK);
    assert_int_equal(torii_store_apply(f->st, ops, 2, &eb), TORII_ECONFLICT);
    assert_non_null(strstr(eb.msg, "changed"));
    assert_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":2}");
    assert_missing(f->st, TORII_STORE_CERTS, "copy"); /* the whole apply failed */
    assert_int_equal(w.n, 0);
    /* Same prefix, other length; and an empty expectation: still conflicts. */
    ops[1] = replace_if("a", "{}", "{\"v\":2}x");
    assert_int_equal(torii_store_apply(f->st, &ops[1], 1, &eb), TORII_ECONFLICT);
    ops[1] = replace_if("a", "{}", "");
    assert_int_equal(torii_store_apply(f->st, &ops[1], 1, &eb), TORII_ECONFLICT);
    assert_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":2}");
    assert_int_equal(w.n, 0);
    assert_string_equal(torii_strerror(TORII_ECONFLICT), "changed concurrently");
}

static void test_store_replace_if_unchanged_replaces_and_reports_replace(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct watch_log w = {.st = f->st};
    struct torii_store_op ops[2] = {
        {.kind = TORII_STORE_CREATE, .bucket = TORII_STORE_CERTS, .rec = mkrec("copy", "{}")},
        replace_if("a", "{\"v\":2}", "{\"v\":1}"),
    };

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":1}", TORII_STORE_PUT),
                     TORII_OK);
    assert_int_equal(torii_store_watch(f->st, watch_cb, &w), TORII_OK);
    assert_int_equal(torii_store_apply(f->st, ops, 2, &eb), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":2}");
    assert_json(f->st, TORII_STORE_CERTS, "copy", "{}");
    assert_int_equal(w.n, 2);
    assert_int_equal(w.kinds[1], TORII_STORE_REPLACE); /* watchers never see REPLACE_IF */
    assert_string_equal(w.ids[1], "a");
    /* The same op again: its expectation is now stale. */
    assert_int_equal(torii_store_apply(f->st, &ops[1], 1, &eb), TORII_ECONFLICT);
    /* An empty stored JSON matches an empty expectation. */
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "e", "", TORII_STORE_PUT), TORII_OK);
    ops[1] = replace_if("e", "{}", "");
    assert_int_equal(torii_store_apply(f->st, &ops[1], 1, &eb), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, "e", "{}");
}

static void test_store_replace_if_missing_or_without_expectation_fails(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_store_op op = replace_if("nope", "{}", "{}");
    struct torii_store_rec r = mkrec("a", "{}");

    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_ENOTFOUND);
    assert_missing(f->st, TORII_STORE_CERTS, "nope");
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":1}", TORII_STORE_PUT),
                     TORII_OK);
    op = replace_if("a", "{}", NULL);
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    /* torii_store_put has no way to pass an expectation. */
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_REPLACE_IF, &eb),
                     TORII_EINVAL);
    assert_json(f->st, TORII_STORE_CERTS, "a", "{\"v\":1}");
}

static void test_store_watchers_see_ops_in_order_after_commit(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct watch_log w = {.st = f->st};
    struct watch_log w2 = {0};
    struct torii_store_op ops[3] = {
        {.kind = TORII_STORE_CREATE, .bucket = TORII_STORE_CERTS, .rec = mkrec("c1", "{}")},
        {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_SERIALS, .rec = mkrec("s1", "\"c1\"")},
        {.kind = TORII_STORE_DELETE, .bucket = TORII_STORE_CERTS, .rec = mkrec("old", NULL)},
    };

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "old", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(torii_store_watch(f->st, watch_cb, &w), TORII_OK);
    assert_int_equal(torii_store_watch(f->st, watch_second_cb, &w2), TORII_OK);
    assert_int_equal(torii_store_apply(f->st, ops, 3, &eb), TORII_OK);
    assert_int_equal(w.n, 3);
    assert_int_equal(w2.n, 3);
    assert_int_equal(w.kinds[0], TORII_STORE_CREATE);
    assert_int_equal(w.buckets[0], TORII_STORE_CERTS);
    assert_string_equal(w.ids[0], "c1");
    assert_int_equal(w.kinds[1], TORII_STORE_PUT);
    assert_int_equal(w.buckets[1], TORII_STORE_SERIALS);
    assert_string_equal(w.ids[1], "s1");
    assert_int_equal(w.kinds[2], TORII_STORE_DELETE);
    assert_string_equal(w.ids[2], "old");
    assert_int_equal(w.json_null[2], 1);
    assert_int_equal(w.json_null[0], 0);
    /* Every watcher call already sees the whole committed transaction. */
    assert_int_equal(w.visible[0], 1);
    assert_int_equal(w.visible[1], 1);
    assert_int_equal(w.visible[2], 1);

    assert_int_equal(put_json(f->st, TORII_STORE_ACME, "o1", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.ids[3], "o1");
}

/* What each watch callback saw of torii_store_watch_parsed, in order. */
struct parsed_log {
    const void *seen[4];
    size_t n;
};

static void watch_parsed_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                            const struct torii_store_rec *rec, void *arg)
{
    struct parsed_log *l = arg;

    (void)kind;
    (void)b;
    (void)rec;
    if (l->n < 4) {
        l->seen[l->n++] = torii_store_watch_parsed();
    }
}

static void test_store_watchers_get_the_parsed_form_the_writer_handed(void **state)
{
    struct fixture *f = *state;
    struct parsed_log l = {{0}, 0};
    int parsed_a = 1; /* stands for a parsed value: only the pointer is handed over */
    struct torii_store_op ops[3] = {
        {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS, .rec = mkrec("a", "1")},
        {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS, .rec = mkrec("b", "2")},
        {.kind = TORII_STORE_DELETE, .bucket = TORII_STORE_CERTS, .rec = mkrec("a", NULL)},
    };

    ops[0].parsed = &parsed_a;
    ops[2].parsed = &parsed_a; /* a delete has no JSON: watchers get NULL */
    assert_int_equal(torii_store_watch(f->st, watch_parsed_cb, &l), TORII_OK);
    assert_int_equal(torii_store_apply(f->st, ops, 3, NULL), TORII_OK);
    assert_int_equal(l.n, 3);
    assert_ptr_equal(l.seen[0], &parsed_a);
    assert_null(l.seen[1]);
    assert_null(l.seen[2]);
    assert_null(torii_store_watch_parsed()); /* outside a callback */
}

static void test_store_watch_limit_returns_etoobig(void **state)
{
    struct fixture *f = *state;
    struct watch_log w = {0};

    for (int i = 0; i < TORII_STORE_WATCHERS_MAX; i++) {
        assert_int_equal(torii_store_watch(f->st, watch_second_cb, &w), TORII_OK);
    }
    assert_int_equal(torii_store_watch(f->st, watch_second_cb, &w), TORII_ETOOBIG);
    assert_int_equal(torii_store_watch(f->st, NULL, &w), TORII_EINVAL);
}

static void watch_writer_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                            const struct torii_store_rec *rec, void *arg)
{
    struct watch_log *w = arg;

    (void)kind;
    (void)b;
    (void)rec;
    w->write_rc = put_json(w->st, TORII_STORE_ACME, "from-watcher", "{}", TORII_STORE_PUT);
}

struct write_in_read {
    struct torii_store *st;
    int rc;
};

static int write_in_read_cb(const struct torii_store_rec *rec, void *arg)
{
    struct write_in_read *x = arg;
    char *json = NULL;

    (void)rec;
    /* Reads are allowed from a callback; writes would deadlock and are refused. */
    assert_int_equal(torii_store_get(x->st, TORII_STORE_CERTS, "r", &json, NULL, NULL, NULL),
                     TORII_OK);
    free(json);
    x->rc = put_json(x->st, TORII_STORE_CERTS, "w", "{}", TORII_STORE_PUT);
    return TORII_OK;
}

static void test_store_write_from_callbacks_returns_eperm(void **state)
{
    struct fixture *f = *state;
    struct watch_log w = {.st = f->st};
    struct write_in_read x = {.st = f->st};

    assert_int_equal(torii_store_watch(f->st, watch_writer_cb, &w), TORII_OK);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "r", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(w.write_rc, TORII_EPERM);
    assert_missing(f->st, TORII_STORE_ACME, "from-watcher");

    assert_int_equal(torii_store_foreach(f->st, TORII_STORE_CERTS, write_in_read_cb, &x), TORII_OK);
    assert_int_equal(x.rc, TORII_EPERM);
    assert_missing(f->st, TORII_STORE_CERTS, "w");
}

static void test_store_invalid_arguments_return_einval(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    char id512[513];
    char id511[512];
    char *json = NULL;
    size_t n = 0;
    struct torii_store_rec r = mkrec("ok", "{}");
    struct torii_store_op op = {.kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS};

    memset(id512, 'a', 512);
    id512[512] = '\0';
    memset(id511, 'b', 511);
    id511[511] = '\0';

    /* ids: empty, too long (512), NULL, embedded NUL; 511 bytes is the largest accepted. */
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "", "{}", TORII_STORE_PUT), TORII_EINVAL);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, id512, "{}", TORII_STORE_PUT),
                     TORII_EINVAL);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, id511, "{}", TORII_STORE_PUT), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, id511, "{}");
    op.rec = r;
    op.rec.id = NULL;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    op.rec = r;
    op.rec.id = "a\0b";
    op.rec.id_len = 3;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "NUL"));

    /* records: NULL json with a length, NULL aux with a length, json longer than 32 bits */
    op.rec = r;
    op.rec.json = NULL;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    op.rec = r;
    op.rec.aux_len = 5;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    op.rec = r;
    op.rec.json_len = (size_t)UINT32_MAX + 1;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);

    /* bad bucket / kind, NULL ops */
    op.rec = r;
    op.bucket = TORII_STORE_BUCKETS;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    op.bucket = TORII_STORE_CERTS;
    op.kind = (enum torii_store_op_kind)42;
    assert_int_equal(torii_store_apply(f->st, &op, 1, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_apply(f->st, NULL, 1, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_apply(f->st, NULL, 0, &eb), TORII_OK);
    assert_int_equal(torii_store_apply(NULL, &op, 1, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, NULL, TORII_STORE_PUT, &eb),
                     TORII_EINVAL);

    /* reads */
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, "", &json, NULL, NULL, NULL),
                     TORII_EINVAL);
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, id512, &json, NULL, NULL, NULL),
                     TORII_EINVAL);
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, NULL, &json, NULL, NULL, NULL),
                     TORII_EINVAL);
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, "ok", NULL, NULL, NULL, NULL),
                     TORII_EINVAL);
    assert_int_equal(
        torii_store_get(f->st, (enum torii_store_bucket)7, "ok", &json, NULL, NULL, NULL),
        TORII_EINVAL);
    assert_null(json);
    assert_int_equal(torii_store_delete(f->st, TORII_STORE_CERTS, "", &eb), TORII_EINVAL);
    assert_int_equal(torii_store_delete(f->st, TORII_STORE_CERTS, id512, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_BUCKETS, &n), TORII_EINVAL);
    assert_int_equal(torii_store_count(f->st, TORII_STORE_CERTS, NULL), TORII_EINVAL);
    assert_int_equal(torii_store_foreach(f->st, TORII_STORE_CERTS, NULL, NULL), TORII_EINVAL);
    assert_int_equal(torii_store_meta_put(f->st, "", "v", &eb), TORII_EINVAL);
    assert_int_equal(torii_store_meta_put(f->st, "k", NULL, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_meta_get(f->st, id512, &json), TORII_EINVAL);

    /* nothing but the 511-byte id was written */
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 1);
}

/* ---- open, reopen, schema ---- */

static void test_store_open_creates_private_dir_and_files(void **state)
{
    struct fixture *f = *state;
    struct stat sb;
    char path[PATH_MAX];

    assert_int_equal(stat(f->dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    (void)snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    (void)snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
}

static void test_store_open_bad_options_fail(void **state)
{
    struct fixture *f = *state;
    struct torii_store *st = NULL;
    struct torii_errbuf eb = {{0}};
    struct torii_store_opts opts = {0};
    char path[PATH_MAX];
    FILE *fp;

    assert_int_equal(torii_store_open(NULL, &st, &eb), TORII_EINVAL);
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EINVAL);
    opts.dir = "";
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EINVAL);

    /* initial map larger than the maximum */
    (void)snprintf(path, sizeof(path), "%s/other", f->root);
    opts.dir = path;
    opts.initial_map_size = MIB;
    opts.max_map_size = 64 * KIB;
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EINVAL);

    /* missing parent directory */
    (void)snprintf(path, sizeof(path), "%s/no/such/dir", f->root);
    opts.initial_map_size = 0;
    opts.max_map_size = 0;
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EIO);

    /* a regular file where the directory should be */
    (void)snprintf(path, sizeof(path), "%s/file", f->root);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EIO);
    assert_non_null(strstr(eb.msg, "not a directory"));

    /* a directory holding something that is not an LMDB file */
    (void)snprintf(path, sizeof(path), "%s/junk", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    {
        char dpath[PATH_MAX + 16];

        (void)snprintf(dpath, sizeof(dpath), "%s/data.mdb", path);
        fp = fopen(dpath, "w");
        assert_non_null(fp);
        for (int i = 0; i < 4096; i++) {
            assert_int_not_equal(fputc('x', fp), EOF);
        }
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_ESTORE);
        remove_dir_contents(path);
        assert_int_equal(rmdir(path), 0);
    }
    assert_null(st);
    torii_store_free(NULL);
}

static void test_store_reopen_keeps_data(void **state)
{
    struct fixture *f = *state;
    unsigned char aux[64];
    struct torii_store_rec r = mkrec("persist", "{\"v\":1}");
    struct torii_errbuf eb = {{0}};
    unsigned char *aux_out = NULL;
    char *json = NULL;
    size_t al = 0;

    fill_pattern(aux, sizeof(aux), 9);
    r.aux = aux;
    r.aux_len = sizeof(aux);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_CREATE, &eb),
                     TORII_OK);
    assert_int_equal(torii_store_meta_put(f->st, "node", "n1", &eb), TORII_OK);
    reopen_store(f, 0, 0);
    assert_int_equal(
        torii_store_get(f->st, TORII_STORE_CERTS, "persist", &json, NULL, &aux_out, &al), TORII_OK);
    assert_string_equal(json, "{\"v\":1}");
    assert_int_equal(al, sizeof(aux));
    assert_memory_equal(aux_out, aux, al);
    free(json);
    free(aux_out);
    assert_int_equal(torii_store_meta_get(f->st, "node", &json), TORII_OK);
    assert_string_equal(json, "n1");
    free(json);
}

/* 1 when needle[0..n) occurs in the file at path. */
static int file_holds(const char *path, const void *needle, size_t n)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = torii_xmalloc(64u << 20);
    size_t len;
    int found = 0;

    assert_non_null(fp);
    len = fread(buf, 1, 64u << 20, fp);
    (void)fclose(fp);
    for (size_t i = 0; !found && i + n <= len; i++) {
        found = memcmp(buf + i, needle, n) == 0;
    }
    free(buf);
    return found;
}

/* Replaced bytes stay in an LMDB file (free pages, gaps in live pages) until compacted; the
 * compaction keeps every current record, JSON, aux and meta, and nothing else. */
static void test_store_compact_drops_replaced_bytes(void **state)
{
    struct fixture *f = *state;
    static const char old[] = "{\"secret\":\"OLD-SECRET-0123456789\"}";
    struct torii_store_rec r = mkrec("small", old);
    struct torii_errbuf eb = {{0}};
    unsigned char aux[3000];
    unsigned char *aux_out = NULL;
    size_t al = 0;
    char *json = NULL;
    char data[600];

    (void)snprintf(data, sizeof(data), "%s/data.mdb", f->dir);
    fill_pattern(aux, sizeof(aux), 5);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_CREATE, &eb),
                     TORII_OK);
    r = mkrec("big", "{\"v\":2}");
    r.aux = aux;
    r.aux_len = sizeof(aux);
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_CREATE, &eb),
                     TORII_OK);
    assert_int_equal(torii_store_meta_put(f->st, "node", "n1", &eb), TORII_OK);
    r = mkrec("small", "{\"secret\":\"sealed\"}");
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_REPLACE, &eb),
                     TORII_OK);
    torii_store_free(f->st);
    f->st = NULL;
    assert_true(file_holds(data, "OLD-SECRET-0123456789", 21)); /* the probe works */
    assert_int_equal(torii_store_compact(f->dir, &eb), TORII_OK);
    assert_false(file_holds(data, "OLD-SECRET-0123456789", 21));
    assert_int_equal(open_store(f, 0, 0), TORII_OK);
    assert_json(f->st, TORII_STORE_CERTS, "small", "{\"secret\":\"sealed\"}");
    assert_json(f->st, TORII_STORE_CERTS, "big", "{\"v\":2}");
    assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, "big", &json, NULL, &aux_out, &al),
                     TORII_OK);
    assert_true(al == sizeof(aux) && memcmp(aux_out, aux, al) == 0);
    free(json);
    free(aux_out);
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 2);
    assert_int_equal(torii_store_meta_get(f->st, "node", &json), TORII_OK);
    assert_string_equal(json, "n1");
    free(json);
    torii_store_free(f->st);
    f->st = NULL;
    assert_int_equal(torii_store_compact("", &eb), TORII_EINVAL);
    assert_int_equal(open_store(f, 0, 0), TORII_OK);
}

static void test_store_meta_round_trip_and_missing_key(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    char *val = NULL;

    assert_int_equal(torii_store_meta_get(f->st, "schema_version", &val), TORII_OK);
    assert_string_equal(val, "1");
    free(val);
    val = NULL;
    assert_int_equal(torii_store_meta_get(f->st, "absent", &val), TORII_ENOTFOUND);
    assert_null(val);
    assert_int_equal(torii_store_meta_put(f->st, "k", "v1", &eb), TORII_OK);
    assert_int_equal(torii_store_meta_put(f->st, "k", "v2", &eb), TORII_OK);
    assert_int_equal(torii_store_meta_get(f->st, "k", &val), TORII_OK);
    assert_string_equal(val, "v2");
    free(val);
    /* Meta keys are not records. */
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 0);
}

static void test_store_newer_schema_returns_eunsupported(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_store_opts opts = {.dir = f->dir};
    struct torii_store *st = NULL;
    char v[16];

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "kept", "{}", TORII_STORE_PUT), TORII_OK);
    (void)snprintf(v, sizeof(v), "%d", TORII_STORE_SCHEMA_VERSION + 1);
    assert_int_equal(torii_store_meta_put(f->st, "schema_version", v, &eb), TORII_OK);
    torii_store_free(f->st);
    f->st = NULL;

    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EUNSUPPORTED);
    assert_null(st);
    assert_non_null(strstr(eb.msg, "newer"));
    /* A second attempt fails the same way: the failed open wrote nothing. */
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_EUNSUPPORTED);
    assert_null(st);
}

static void test_store_older_schema_opens_and_corrupt_schema_returns_estore(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_store_opts opts = {.dir = f->dir};
    struct torii_store *st = NULL;

    assert_int_equal(torii_store_meta_put(f->st, "schema_version", "0", &eb), TORII_OK);
    reopen_store(f, 0, 0); /* older schema opens */
    assert_int_equal(torii_store_meta_put(f->st, "schema_version", "not-a-number", &eb), TORII_OK);
    torii_store_free(f->st);
    f->st = NULL;
    assert_int_equal(torii_store_open(&opts, &st, &eb), TORII_ESTORE);
    assert_non_null(strstr(eb.msg, "corrupt"));
    assert_null(st);
}

/* ---- map growth ---- */

#define BIG_AUX (256 * KIB)

static void test_store_map_grows_from_tiny_initial_size(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    struct torii_store_stat sst;
    unsigned char *aux = torii_xmalloc(BIG_AUX);
    struct torii_store_op ops[4];
    char ids[4][16];

    reopen_store(f, 64 * KIB, 0);
    /* 24 single puts of 256 KiB, then 4 batches of 4 in one txn: 10 MiB in all. */
    for (unsigned i = 0; i < 24; i++) {
        struct torii_store_rec r;

        (void)snprintf(ids[0], sizeof(ids[0]), "big-%02u", i);
        fill_pattern(aux, BIG_AUX, i);
        r = mkrec(ids[0], "{\"big\":true}");
        r.aux = aux;
        r.aux_len = BIG_AUX;
        assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_CREATE, &eb),
                         TORII_OK);
    }
    for (unsigned batch = 0; batch < 4; batch++) {
        unsigned char *bufs[4];

        for (unsigned j = 0; j < 4; j++) {
            unsigned k = 24 + batch * 4 + j;

            bufs[j] = torii_xmalloc(BIG_AUX);
            fill_pattern(bufs[j], BIG_AUX, k);
            (void)snprintf(ids[j], sizeof(ids[j]), "big-%02u", k);
            ops[j].kind = TORII_STORE_PUT;
            ops[j].bucket = TORII_STORE_CERTS;
            ops[j].rec = mkrec(ids[j], "{\"big\":true}");
            ops[j].rec.aux = bufs[j];
            ops[j].rec.aux_len = BIG_AUX;
        }
        assert_int_equal(torii_store_apply(f->st, ops, 4, &eb), TORII_OK);
        for (unsigned j = 0; j < 4; j++) {
            free(bufs[j]);
        }
    }
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 40);
    for (unsigned i = 0; i < 40; i++) {
        char id[16];
        char *json = NULL;
        unsigned char *got = NULL;
        size_t al = 0;

        (void)snprintf(id, sizeof(id), "big-%02u", i);
        fill_pattern(aux, BIG_AUX, i);
        assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, id, &json, NULL, &got, &al),
                         TORII_OK);
        assert_int_equal(al, BIG_AUX);
        assert_memory_equal(got, aux, BIG_AUX);
        free(json);
        free(got);
    }
    assert_int_equal(torii_store_stat_get(f->st, &sst), TORII_OK);
    assert_true(sst.map_size >= 10 * MIB);
    assert_true(sst.used_bytes >= 10 * MIB);
    assert_true(sst.used_bytes <= sst.map_size);

    /* The grown size survives a reopen with the tiny initial size. */
    reopen_store(f, 64 * KIB, 0);
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 40);
    free(aux);
}

static void test_store_map_full_at_max_returns_enospc_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    unsigned char *aux = torii_xcalloc(1, 1024 * KIB);
    struct torii_store_rec r = mkrec("huge", "{}");
    struct torii_store_stat sst;

    reopen_store(f, 64 * KIB, 256 * KIB);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "small", "{}", TORII_STORE_PUT), TORII_OK);
    r.aux = aux;
    r.aux_len = 1024 * KIB;
    /* The map at its maximum is a full store: TORII_ENOSPC, 507 from the admin API. */
    assert_int_equal(torii_store_put(f->st, TORII_STORE_CERTS, &r, TORII_STORE_PUT, &eb),
                     TORII_ENOSPC);
    assert_non_null(strstr(eb.msg, "MDB_MAP_FULL"));
    assert_missing(f->st, TORII_STORE_CERTS, "huge");
    assert_int_equal(torii_store_stat_get(f->st, &sst), TORII_OK);
    assert_int_equal(sst.map_size, 256 * KIB);
    assert_int_equal(sst.max_map_size, 256 * KIB);
    /* Still usable afterwards. */
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "small2", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 2);
    free(aux);
}

/* ---- concurrency ---- */

struct reader_ctx {
    struct torii_store *st;
    atomic_int *stop;
    atomic_int *failures;
    atomic_long *rounds;
};

struct pair_seen {
    char a[32];
    char b[32];
    int seen;
};

static int pair_cb(const struct torii_store_rec *rec, void *arg)
{
    struct pair_seen *p = arg;
    char *dst = NULL;

    if (rec->id_len == 1 && rec->id[0] == 'a') {
        dst = p->a;
    } else if (rec->id_len == 1 && rec->id[0] == 'b') {
        dst = p->b;
    }
    if (dst != NULL && rec->json_len < 32) {
        memcpy(dst, rec->json, rec->json_len);
        dst[rec->json_len] = '\0';
        p->seen++;
    }
    return TORII_OK;
}

static void *reader_main(void *arg)
{
    struct reader_ctx *c = arg;

    while (!atomic_load(c->stop)) {
        struct pair_seen p = {{0}, {0}, 0};
        char *json = NULL;
        size_t n = 0;

        /* One foreach = one read txn: "a" and "b" are written together, so they must match. */
        if (torii_store_foreach(c->st, TORII_STORE_CERTS, pair_cb, &p) != TORII_OK || p.seen != 2
            || strcmp(p.a, p.b) != 0) {
            atomic_fetch_add(c->failures, 1);
        }
        if (torii_store_get(c->st, TORII_STORE_CERTS, "a", &json, NULL, NULL, NULL) != TORII_OK) {
            atomic_fetch_add(c->failures, 1);
        }
        free(json);
        if (torii_store_count(c->st, TORII_STORE_CERTS, &n) != TORII_OK || n < 2) {
            atomic_fetch_add(c->failures, 1);
        }
        atomic_fetch_add(c->rounds, 1);
    }
    return NULL;
}

static void test_store_concurrent_readers_during_growth_stay_consistent(void **state)
{
    struct fixture *f = *state;
    struct torii_errbuf eb = {{0}};
    atomic_int stop = 0;
    atomic_int failures = 0;
    atomic_long rounds = 0;
    struct reader_ctx ctx = {.st = NULL, .stop = &stop, .failures = &failures, .rounds = &rounds};
    pthread_t th[4];
    unsigned char *aux = torii_xcalloc(1, 32 * KIB);
    struct torii_store_stat sst;

    reopen_store(f, 64 * KIB, 0);
    ctx.st = f->st;
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "a", "0", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "b", "0", TORII_STORE_PUT), TORII_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &ctx), 0);
    }
    for (unsigned i = 1; i <= 160; i++) {
        char v[16];
        char id[16];
        struct torii_store_op ops[3];

        (void)snprintf(v, sizeof(v), "%u", i);
        (void)snprintf(id, sizeof(id), "bulk-%03u", i);
        fill_pattern(aux, 32 * KIB, i);
        ops[0] = (struct torii_store_op){
            .kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS, .rec = mkrec("a", v)};
        ops[1] = (struct torii_store_op){
            .kind = TORII_STORE_REPLACE, .bucket = TORII_STORE_CERTS, .rec = mkrec("b", v)};
        ops[2] = (struct torii_store_op){
            .kind = TORII_STORE_CREATE, .bucket = TORII_STORE_CERTS, .rec = mkrec(id, "{}")};
        ops[2].rec.aux = aux;
        ops[2].rec.aux_len = 32 * KIB;
        assert_int_equal(torii_store_apply(f->st, ops, 3, &eb), TORII_OK);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    assert_int_equal(atomic_load(&failures), 0);
    assert_true(atomic_load(&rounds) > 0);
    assert_json(f->st, TORII_STORE_CERTS, "a", "160");
    assert_json(f->st, TORII_STORE_CERTS, "b", "160");
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 162);
    assert_int_equal(torii_store_stat_get(f->st, &sst), TORII_OK);
    assert_true(sst.map_size >= 4 * MIB);
    free(aux);
}

/* ---- mapped pages ---- */

/* RssFile of this process, in KiB (0 when /proc is not there). */
static long rss_file_kib(void)
{
    char line[128];
    long v = 0;
    FILE *fp = fopen("/proc/self/status", "r");

    if (fp == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, "RssFile:", 8) == 0) {
            v = strtol(line + 8, NULL, 10);
        }
    }
    (void)fclose(fp);
    return v;
}

struct big_scan {
    size_t n;
    int bad;
};

static int big_scan_cb(const struct torii_store_rec *rec, void *arg)
{
    struct big_scan *b = arg;
    unsigned char want[64];
    unsigned seed = 0;

    /* ids are "big-<n>"; aux is fill_pattern(seed n), checked at both ends. */
    if (rec->id_len < 5 || rec->aux_len != 64 * KIB) {
        b->bad++;
        return TORII_OK;
    }
    for (size_t i = 4; i < rec->id_len; i++) {
        seed = seed * 10 + (unsigned)(rec->id[i] - '0');
    }
    fill_pattern(want, sizeof(want), seed);
    if (memcmp(rec->aux, want, sizeof(want)) != 0) {
        b->bad++;
    }
    if (rec->aux[64 * KIB - 1] != (unsigned char)(((64 * KIB - 1) * 31u + seed * 7u) & 0xffu)) {
        b->bad++;
    }
    b->n++;
    return TORII_OK;
}

enum { BIG_N = 1280, BIG_BATCH = 64 }; /* 80 MiB of values, 64 KiB each */

/* BIG_N records "big-<n>", each with 64 KiB of aux = fill_pattern(seed n); aux is scratch room
 * for BIG_BATCH values. */
static void big_fill(struct fixture *f, unsigned char *aux)
{
    struct torii_errbuf eb = {{0}};
    char ids[BIG_BATCH][16];
    struct torii_store_op ops[BIG_BATCH];

    for (int i = 0; i < BIG_N; i += BIG_BATCH) {
        for (int j = 0; j < BIG_BATCH; j++) {
            (void)snprintf(ids[j], sizeof(ids[j]), "big-%d", i + j);
            fill_pattern(aux + (size_t)j * 64 * KIB, 64 * KIB, (unsigned)(i + j));
            ops[j] = (struct torii_store_op){
                .kind = TORII_STORE_PUT, .bucket = TORII_STORE_CERTS, .rec = mkrec(ids[j], "{}")};
            ops[j].rec.aux = aux + (size_t)j * 64 * KIB;
            ops[j].rec.aux_len = 64 * KIB;
        }
        assert_int_equal(torii_store_apply(f->st, ops, BIG_BATCH, &eb), TORII_OK);
    }
}

/* A scan of a large store hands its mapped pages back (RSS), and the data reads the same on
 * the next scan and get. */
static void test_store_large_foreach_does_not_keep_pages_mapped(void **state)
{
    struct fixture *f = *state;
    unsigned char *aux = torii_xmalloc((size_t)BIG_BATCH * 64 * KIB);
    struct big_scan b = {0, 0};
    long before;
    unsigned char *got = NULL;
    size_t got_len = 0;
    char *json = NULL;

    big_fill(f, aux);
    for (int pass = 0; pass < 2; pass++) {
        before = rss_file_kib();
        b.n = 0;
        assert_int_equal(torii_store_foreach(f->st, TORII_STORE_CERTS, big_scan_cb, &b), TORII_OK);
        assert_int_equal(b.n, BIG_N);
        assert_int_equal(b.bad, 0);
        /* 80 MiB read; what stays mapped is a few pages of branches at most. */
        assert_true(rss_file_kib() - before < 16 * 1024);
    }
    assert_int_equal(
        torii_store_get(f->st, TORII_STORE_CERTS, "big-777", &json, NULL, &got, &got_len),
        TORII_OK);
    assert_int_equal(got_len, 64 * KIB);
    fill_pattern(aux, 64 * KIB, 777);
    assert_memory_equal(got, aux, 64 * KIB);
    free(json);
    free(got);
    free(aux);
}

/* Single gets (a certificate's first handshake) hand their mapped pages back too, every 64
 * reads: 640 gets of 64 KiB (40 MiB) leave much less than that mapped, and read right. */
static void test_store_many_gets_do_not_keep_pages_mapped(void **state)
{
    struct fixture *f = *state;
    unsigned char *aux = torii_xmalloc((size_t)BIG_BATCH * 64 * KIB);
    char id[16];
    long before;

    big_fill(f, aux);
    before = rss_file_kib();
    for (int i = 0; i < 640; i++) {
        unsigned n = (unsigned)(i * 7) % BIG_N;
        unsigned char *got = NULL;
        size_t got_len = 0;
        char *json = NULL;

        (void)snprintf(id, sizeof(id), "big-%u", n);
        assert_int_equal(torii_store_get(f->st, TORII_STORE_CERTS, id, &json, NULL, &got, &got_len),
                         TORII_OK);
        assert_int_equal(got_len, 64 * KIB);
        fill_pattern(aux, 64 * KIB, n);
        assert_memory_equal(got, aux, 64 * KIB);
        free(json);
        free(got);
    }
    assert_true(rss_file_kib() - before < 16 * 1024);
    free(aux);
}

/* ---- multi-process ---- */

static int child_hold_read_cb(const struct torii_store_rec *rec, void *arg)
{
    int fd = *(int *)arg;

    (void)rec;
    if (write(fd, "r", 1) != 1) {
        _exit(3);
    }
    for (;;) {
        (void)pause();
    }
}

/* Child body: open the store, then either hold a read txn forever (hold_read) or just keep
 * the env open; tell the parent through fd once ready. Never returns. */
static void child_run(const char *dir, int fd, int hold_read)
{
    struct torii_store_opts opts = {.dir = dir};
    struct torii_store *st = NULL;

    (void)alarm(60); /* never outlive a failed test */
    if (torii_store_open(&opts, &st, NULL) != TORII_OK) {
        _exit(2);
    }
    if (hold_read) {
        /* Only returns if the callback never ran (no record) or failed. */
        if (torii_store_foreach(st, TORII_STORE_CERTS, child_hold_read_cb, &fd) != TORII_OK) {
            _exit(5);
        }
        _exit(4);
    }
    if (write(fd, "h", 1) != 1) {
        _exit(3);
    }
    for (;;) {
        (void)pause();
    }
}

static pid_t spawn_child(const char *dir, int hold_read)
{
    int p[2];
    pid_t pid;
    char c = 0;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        (void)close(p[0]);
        child_run(dir, p[1], hold_read);
    }
    (void)close(p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    (void)close(p[0]);
    return pid;
}

static void kill_child(pid_t pid)
{
    int status = 0;

    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
}

static void test_store_stale_reader_of_killed_process_cleared_at_open(void **state)
{
    struct fixture *f = *state;
    struct torii_store_stat sst;
    pid_t holder;
    pid_t reader;
    int cleared = -1;

    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "r1", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(torii_store_stat_get(f->st, &sst), TORII_OK);
    assert_int_equal(sst.stale_readers_cleared, 0);
    torii_store_free(f->st);
    f->st = NULL;

    /* The holder keeps the env open so the lock file's reader table is not reset when we
     * reopen (the first opener of an env reinitialises it). */
    holder = spawn_child(f->dir, 0);
    reader = spawn_child(f->dir, 1);
    kill_child(reader);

    assert_int_equal(open_store(f, 0, 0), TORII_OK);
    assert_int_equal(torii_store_stat_get(f->st, &sst), TORII_OK);
    assert_int_equal(sst.stale_readers_cleared, 1);
    assert_int_equal(torii_store_reader_check(f->st, &cleared), TORII_OK);
    assert_int_equal(cleared, 0);
    kill_child(holder);
    assert_json(f->st, TORII_STORE_CERTS, "r1", "{}");
}

static void test_store_map_grown_by_other_process_is_adopted(void **state)
{
    struct fixture *f = *state;
    struct torii_store_stat before;
    struct torii_store_stat after;
    pid_t pid;
    int status = 0;

    reopen_store(f, 64 * KIB, 0);
    assert_int_equal(torii_store_stat_get(f->st, &before), TORII_OK);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct torii_store_opts opts = {.dir = f->dir, .initial_map_size = 64 * KIB};
        struct torii_store *st = NULL;
        unsigned char *aux = torii_xcalloc(1, 64 * KIB);

        (void)alarm(60);
        if (torii_store_open(&opts, &st, NULL) != TORII_OK) {
            _exit(2);
        }
        for (unsigned i = 0; i < 32; i++) {
            char id[16];
            struct torii_store_rec r;

            (void)snprintf(id, sizeof(id), "child-%02u", i);
            r = mkrec(id, "{}");
            r.aux = aux;
            r.aux_len = 64 * KIB;
            if (torii_store_put(st, TORII_STORE_CERTS, &r, TORII_STORE_PUT, NULL) != TORII_OK) {
                _exit(3);
            }
        }
        /* No cleanup: _exit skips the leak checker, like a crash would. */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* Our env still maps the small size: reads and writes must adopt the grown map. */
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 32);
    assert_json(f->st, TORII_STORE_CERTS, "child-31", "{}");
    assert_int_equal(put_json(f->st, TORII_STORE_CERTS, "parent", "{}", TORII_STORE_PUT), TORII_OK);
    assert_int_equal(count_of(f->st, TORII_STORE_CERTS), 33);
    assert_int_equal(torii_store_stat_get(f->st, &after), TORII_OK);
    assert_true(after.map_size > before.map_size);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_put_get_with_aux_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_compact_drops_replaced_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_get_without_aux_returns_null_aux, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_put_existing_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_delete_removes_and_missing_returns_enotfound,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_foreach_visits_in_id_order_and_stops_on_cb_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_store_create_existing_returns_eexist_and_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_replace_missing_returns_enotfound, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_multi_op_apply_failing_midway_changes_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_store_replace_if_changed_returns_econflict_and_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_store_replace_if_unchanged_replaces_and_reports_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_replace_if_missing_or_without_expectation_fails,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_watchers_see_ops_in_order_after_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_watchers_get_the_parsed_form_the_writer_handed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_watch_limit_returns_etoobig, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_write_from_callbacks_returns_eperm, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_invalid_arguments_return_einval, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_open_creates_private_dir_and_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_open_bad_options_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_meta_round_trip_and_missing_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_newer_schema_returns_eunsupported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_store_older_schema_opens_and_corrupt_schema_returns_estore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_map_grows_from_tiny_initial_size, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_store_map_full_at_max_returns_enospc_and_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_concurrent_readers_during_growth_stay_consistent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_stale_reader_of_killed_process_cleared_at_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_large_foreach_does_not_keep_pages_mapped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_many_gets_do_not_keep_pages_mapped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_map_grown_by_other_process_is_adopted, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
