/* keys_cmd.c - `torii keys migrate` and `torii keys rotate` (docs/operations.md, Keys at
 * rest): seal every private key of the store under the current KEK, in place.
 *
 * migrate seals the copies still in clear; rotate also re-seals the copies sealed under a
 * previous KEK (keys.previous_kek_*). Both walk the certificates in id order, N records per
 * store transaction (each one durable), so a crash loses at most the batch in flight; a rerun
 * skips what is done (a record already sealed under the current KEK is not rewritten). The
 * daemon must be stopped (the instance lock is taken). At the end the data file is compacted:
 * LMDB keeps replaced bytes in free pages, and those bytes are the clear keys.
 *
 * Record access is two functions (keys_batch_read, keys_batch_write) over the store; the
 * conversion of one record is torii_kek_rec_convert (src/pki). Main thread of the command. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torii/admin.h"
#include "torii/conf.h"
#include "torii/daemon.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define KEYS_BATCH_DEFAULT 64
#define KEYS_BATCH_MAX     10000

/* One record of a batch: a copy of what was read, and what it becomes. */
struct keys_item {
    char *id;
    size_t id_len;
    char *json;
    size_t json_len;
    unsigned char *aux; /* as read (may hold a clear key: wiped when freed) */
    size_t aux_len;
    struct torii_kek_rec_out conv;
};

struct keys_batch {
    const struct torii_kek_ring *ring;
    int rewrap;
    char *after; /* id of the last record read (NULL: from the start) */
    size_t after_len;
    struct keys_item *items;
    size_t n;
    size_t max;
    int full; /* the read stopped because the batch was full */
    struct torii_errbuf *eb;
};

static void keys_batch_clear(struct keys_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].id);
        free(b->items[i].json);
        torii_secure_free(b->items[i].aux, b->items[i].aux_len);
        torii_kek_rec_out_clear(&b->items[i].conv);
    }
    b->n = 0;
}

static int keys_after(const struct keys_batch *b, const struct torii_store_rec *rec)
{
    size_t n = rec->id_len < b->after_len ? rec->id_len : b->after_len;
    int c;

    if (b->after == NULL) {
        return 1;
    }
    c = memcmp(rec->id, b->after, n);
    return c > 0 || (c == 0 && rec->id_len > b->after_len);
}

/* foreach callback: the next records after b->after that change, until the batch is full. */
static int keys_collect(const struct torii_store_rec *rec, void *arg)
{
    struct keys_batch *b = arg;
    struct torii_kek_rec in = {rec->id,       rec->id_len, rec->json,
                               rec->json_len, rec->aux,    rec->aux_len};
    struct keys_item *it;
    int rc;

    if (!keys_after(b, rec)) {
        return TORII_OK;
    }
    if (b->n == b->max) {
        b->full = 1;
        return TORII_ETOOBIG; /* full: stop here, the rest is for the next batch */
    }
    it = &b->items[b->n];
    rc = torii_kek_rec_convert(b->ring, b->rewrap, &in, &it->conv, b->eb);
    if (rc != TORII_OK || !it->conv.changed) {
        torii_kek_rec_out_clear(&it->conv);
        if (rc == TORII_OK) {
            free(b->after);
            b->after = torii_xstrndup(rec->id, rec->id_len);
            b->after_len = rec->id_len;
        }
        return rc;
    }
    it->id = torii_xstrndup(rec->id, rec->id_len);
    it->id_len = rec->id_len;
    it->json = torii_xstrndup(rec->json, rec->json_len);
    it->json_len = rec->json_len;
    it->aux = NULL;
    it->aux_len = rec->aux_len;
    if (rec->aux_len > 0) {
        it->aux = torii_xmalloc(rec->aux_len);
        memcpy(it->aux, rec->aux, rec->aux_len);
    }
    b->n++;
    free(b->after);
    b->after = torii_xstrndup(rec->id, rec->id_len);
    b->after_len = rec->id_len;
    return TORII_OK;
}

/* Read the next batch: b->n records to rewrite (0: nothing left). */
static int keys_batch_read(struct torii_store *st, struct keys_batch *b)
{
    int rc;

    b->full = 0;
    rc = torii_store_foreach(st, TORII_STORE_CERTS, keys_collect, b);
    return rc == TORII_ETOOBIG && b->full ? TORII_OK : rc;
}

/* Write the batch in one durable transaction; a record changed since it was read fails it. */
static int keys_batch_write(struct torii_store *st, const struct keys_batch *b,
                            struct torii_errbuf *eb)
{
    struct torii_store_op *ops = torii_xcalloc(b->n, sizeof(*ops));
    int rc;

    for (size_t i = 0; i < b->n; i++) {
        const struct keys_item *it = &b->items[i];
        const char *json = it->conv.json != NULL ? it->conv.json : it->json;

        ops[i].kind = TORII_STORE_REPLACE_IF;
        ops[i].bucket = TORII_STORE_CERTS;
        ops[i].rec =
            (struct torii_store_rec){it->id, it->id_len, json, strlen(json), it->aux, it->aux_len};
        ops[i].expect_json = it->json;
        ops[i].expect_json_len = it->json_len;
        if (it->conv.aux != NULL) {
            ops[i].rec.aux = it->conv.aux;
            ops[i].rec.aux_len = it->conv.aux_len;
        }
    }
    rc = torii_store_apply(st, ops, b->n, eb);
    free(ops);
    return rc;
}

/* The whole walk: batches until nothing is left to convert. crash_after > 0 (tests only) kills
 * the process with SIGKILL once that many batches are committed. */
static int keys_run(struct torii_store *st, const struct torii_kek_ring *ring, int rewrap,
                    size_t batch, unsigned crash_after, size_t *done, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct keys_batch b = {.ring = ring, .rewrap = rewrap, .max = batch, .eb = eb};
    size_t total = 0;
    unsigned batches = 0;

    b.items = torii_xcalloc(batch, sizeof(*b.items));
    TORII_TRY(torii_store_count(st, TORII_STORE_CERTS, &total));
    /* Each batch moves the cursor past at least one record: bounded by the record count. */
    for (size_t round = 0; round <= total; round++) {
        TORII_TRY(keys_batch_read(st, &b));
        if (b.n == 0) {
            break;
        }
        TORII_TRY(keys_batch_write(st, &b, eb));
        *done += b.n;
        keys_batch_clear(&b);
        if (crash_after > 0 && ++batches == crash_after) {
            (void)raise(SIGKILL);
        }
    }
out:
    keys_batch_clear(&b);
    free(b.items);
    free(b.after);
    return rc;
}

int torii_admin_kek_load(const struct torii_config *cfg, struct torii_kek_ring **out,
                         struct torii_errbuf *eb)
{
    struct torii_kek_sources s = {
        .file = cfg->keys_kek_file,
        .credential = cfg->keys_kek_credential,
        .previous_files = cfg->keys_previous_kek_files,
        .previous_credentials = cfg->keys_previous_kek_credentials,
        .credentials_dir = getenv("CREDENTIALS_DIRECTORY"),
    };

    return torii_kek_ring_load(&s, out, eb);
}

static int keys_usage(FILE *err)
{
    (void)fprintf(err, "usage: torii keys migrate|rotate [-c FILE] [--batch N]\n");
    return 2;
}

struct keys_args {
    const char *conf;
    int rewrap;
    unsigned long batch;
    unsigned long crash_after;
};

static int keys_parse_num(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);

    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v == 0 || v > max) {
        return TORII_EINVAL;
    }
    *out = v;
    return TORII_OK;
}

static int keys_parse(int argc, char **argv, struct keys_args *a, FILE *err)
{
    a->batch = KEYS_BATCH_DEFAULT;
    if (argc < 2 || (strcmp(argv[1], "migrate") != 0 && strcmp(argv[1], "rotate") != 0)) {
        return keys_usage(err);
    }
    a->rewrap = strcmp(argv[1], "rotate") == 0;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "-c") == 0 && v != NULL) {
            a->conf = v;
        } else if (strcmp(argv[i], "--batch") == 0 && v != NULL
                   && keys_parse_num(v, KEYS_BATCH_MAX, &a->batch) == TORII_OK) {
        } else if (strcmp(argv[i], "--test-crash-after-batches") == 0 && v != NULL
                   && keys_parse_num(v, 1000000, &a->crash_after) == TORII_OK) {
        } else {
            (void)fprintf(err, "torii keys: bad argument '%s'\n", argv[i]);
            return keys_usage(err);
        }
        i++;
    }
    return 0;
}

/* Ring, lock, store, walk, close, compact. */
static int keys_exec(const struct torii_config *cfg, const struct keys_args *a, FILE *out,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_kek_ring *ring = NULL;
    struct torii_daemon *d = NULL;
    struct torii_store *st = NULL;
    struct torii_store_opts so = {.dir = cfg->data_dir};
    char cur[2 * TORII_KEK_ID_LEN + 1];
    size_t done = 0;

    TORII_TRY(torii_admin_kek_load(cfg, &ring, eb));
    TORII_ENSURE(ring != NULL, torii_errf(eb, TORII_EINVAL,
                                          "no KEK configured: set keys.kek_file or "
                                          "keys.kek_credential (docs/operations.md)"));
    TORII_TRY(torii_daemon_new(cfg, &d, eb));
    TORII_TRY(torii_daemon_lock(d, cfg->data_dir, eb));
    TORII_TRY(torii_store_open(&so, &st, eb));
    rc = keys_run(st, ring, a->rewrap, a->batch, (unsigned)a->crash_after, &done, eb);
    torii_store_free(st);
    st = NULL;
    TORII_TRY(rc);
    TORII_TRY(torii_store_compact(cfg->data_dir, eb));
    TORII_TRY(torii_kek_ring_current_id(ring, cur));
    (void)fprintf(out, "torii keys %s: %zu record%s sealed under KEK %s; data file compacted\n",
                  a->rewrap ? "rotate" : "migrate", done, done == 1 ? "" : "s", cur);
out:
    torii_store_free(st);
    torii_daemon_free(d);
    torii_kek_ring_free(ring);
    return rc;
}

int torii_admin_keys_cmd(int argc, char **argv, FILE *out, FILE *err)
{
    struct keys_args a = {0};
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *cfg = NULL;
    struct torii_errbuf eb = {{0}};
    int status = keys_parse(argc, argv, &a, err);

    if (status != 0) {
        return status;
    }
    if (torii_config_check(a.conf, &cfg, &errs) != TORII_OK) {
        for (size_t i = 0; i < errs.n; i++) {
            (void)fprintf(err, "torii: %s\n", errs.msgs[i]);
        }
        status = 1;
    } else if (keys_exec(cfg, &a, out, &eb) != TORII_OK) {
        (void)fprintf(err, "torii keys %s: %s\n", argv[1], eb.msg);
        status = 1;
    }
    torii_conf_errs_free(&errs);
    torii_config_free(cfg);
    return status;
}
