/* rekey.c - keys at rest over the whole store: `torii keys migrate` seals every private key
 * still in clear under the current KEK, `torii keys rotate` also re-seals the keys sealed under
 * a previous one (docs/operations.md, Keys at rest).
 *
 * A cursor walks the certificates in id order: each batch reads from just after the last id
 * the previous batch saw (torii_store_foreach_from, never a rescan from the start), converts
 * up to N records (torii_kek_rec_convert, src/pki) and writes them in ONE durable transaction,
 * each as a compare-and-swap on the JSON it read. A crash loses at most the batch in flight; a
 * rerun finds the done records already sealed under the current KEK and leaves them alone.
 * The serial index is unchanged (a key is not part of it). Threads: the calling thread only,
 * with no other writer (the command holds the instance lock). */
#include <stdlib.h>
#include <string.h>

#include "torii/certdb.h"
#include "torii/mem.h"
#include "torii/pki.h"

/* One record of a batch: a copy of what was read, and what it becomes. */
struct rekey_item {
    char *id;
    size_t id_len;
    char *json;
    size_t json_len;
    unsigned char *aux; /* as read (may hold a clear key: wiped when freed) */
    size_t aux_len;
    struct torii_kek_rec_out conv;
};

struct rekey_batch {
    const struct torii_certdb_rekey_opts *o;
    char *after; /* the cursor: id of the last record seen (NULL: from the start) */
    size_t after_len;
    struct rekey_item *items;
    size_t n;
    int full; /* the read stopped because the batch was full */
    struct torii_errbuf *eb;
};

static void rekey_batch_clear(struct rekey_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].id);
        torii_secure_free(b->items[i].json, b->items[i].json_len);
        torii_secure_free(b->items[i].aux, b->items[i].aux_len);
        torii_kek_rec_out_clear(&b->items[i].conv);
    }
    b->n = 0;
}

static void rekey_cursor_set(struct rekey_batch *b, const struct torii_store_rec *rec)
{
    free(b->after);
    b->after = torii_xstrndup(rec->id, rec->id_len);
    b->after_len = rec->id_len;
}

static void rekey_item_copy(struct rekey_item *it, const struct torii_store_rec *rec)
{
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
}

/* foreach callback from the cursor: the records that change, until the batch is full. */
static int rekey_collect(const struct torii_store_rec *rec, void *arg)
{
    struct rekey_batch *b = arg;
    struct torii_kek_rec in = {rec->id,       rec->id_len, rec->json,
                               rec->json_len, rec->aux,    rec->aux_len};
    struct rekey_item *it;
    int rc;

    if (b->after != NULL && rec->id_len == b->after_len
        && memcmp(rec->id, b->after, rec->id_len) == 0) {
        return TORII_OK; /* the cursor's own record: done by the previous batch */
    }
    if (b->n == b->o->batch) {
        b->full = 1;
        return TORII_ETOOBIG; /* full: the rest is for the next batch */
    }
    it = &b->items[b->n];
    rc = torii_kek_rec_convert(b->o->kek, b->o->rewrap, &in, &it->conv, b->eb);
    if (rc != TORII_OK) {
        torii_kek_rec_out_clear(&it->conv);
        return rc;
    }
    if (it->conv.changed) {
        rekey_item_copy(it, rec);
        b->n++;
    } else {
        torii_kek_rec_out_clear(&it->conv);
    }
    rekey_cursor_set(b, rec);
    return TORII_OK;
}

/* Read the next batch from the cursor: b->n records to rewrite (0 and not full: the end). */
static int rekey_read(struct torii_store *st, struct rekey_batch *b)
{
    int rc;

    b->full = 0;
    rc = torii_store_foreach_from(st, TORII_STORE_CERTS, b->after, b->after_len, rekey_collect, b);
    return rc == TORII_ETOOBIG && b->full ? TORII_OK : rc;
}

/* The batch in one durable transaction; a record changed since it was read fails it. */
static int rekey_write(struct torii_store *st, const struct rekey_batch *b, struct torii_errbuf *eb)
{
    struct torii_store_op *ops = torii_xcalloc(b->n, sizeof(*ops));
    int rc;

    for (size_t i = 0; i < b->n; i++) {
        const struct rekey_item *it = &b->items[i];
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

/* One batch: read from the cursor, write what changed, move on. */
static int rekey_step(struct torii_store *st, struct rekey_batch *b, size_t *done,
                      unsigned *batches)
{
    int rc = rekey_read(st, b);

    if (rc != TORII_OK || b->n == 0) {
        return rc;
    }
    rc = rekey_write(st, b, b->eb);
    if (rc != TORII_OK) {
        return rc;
    }
    *done += b->n;
    rekey_batch_clear(b);
    if (b->o->after_batch != NULL) {
        b->o->after_batch(++*batches, b->o->after_batch_arg);
    }
    return TORII_OK;
}

int torii_certdb_rekey(struct torii_store *st, const struct torii_certdb_rekey_opts *o,
                       size_t *done, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct rekey_batch b = {.o = o, .eb = eb};
    char cur[2 * TORII_KEK_ID_LEN + 1];
    size_t total = 0;
    unsigned batches = 0;

    *done = 0;
    TORII_ENSURE(o->batch > 0 && torii_kek_ring_current_id(o->kek, cur) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "keys: no current KEK or an empty batch"));
    b.items = torii_xcalloc(o->batch, sizeof(*b.items));
    TORII_TRY(torii_store_count(st, TORII_STORE_CERTS, &total));
    /* Each batch moves the cursor past at least one record: bounded by the record count. */
    for (size_t round = 0; round <= total; round++) {
        TORII_TRY(rekey_step(st, &b, done, &batches));
        if (!b.full) {
            break;
        }
    }
out:
    rekey_batch_clear(&b);
    free(b.items);
    free(b.after);
    return rc;
}
