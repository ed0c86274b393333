/* certidx.c - the store's side of certdb's compact index (store.h, TORII_STORE_CERTIDX):
 * inside the transaction of a TORII_STORE_CERTS op, the id's index entry derived and written
 * (or deleted), or the index marked stale when the store has no derive function.
 * Threads: the writing thread, inside a write transaction (store.c holds the write lock). */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Delete key from dbi; absent is fine. 0 or the LMDB error. */
static int store_del_any(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len)
{
    MDB_val k = {.mv_size = len, .mv_data = (void *)(uintptr_t)key};
    int e = mdb_del(txn, dbi, &k, NULL);

    return e == MDB_NOTFOUND ? 0 : e;
}

/* The compact index follows a CERTS op in its transaction: the derived entry written or
 * deleted; without a derive function, the index is marked stale instead (store.h). */
int torii_store__idx_follow(struct torii_store *st, MDB_txn *txn, const struct torii_store_op *op,
                            int *mrc, struct torii_errbuf *eb)
{
    struct torii_store_rec ix = {.id = op->rec.id, .id_len = op->rec.id_len};
    unsigned char *val = NULL;
    int e;

    if (op->bucket != TORII_STORE_CERTS) {
        return TORII_OK;
    }
    if (st->certidx == NULL) {
        e = store_del_any(txn, st->meta, TORII_STORE_CERTIDX_DONE,
                          strlen(TORII_STORE_CERTIDX_DONE));
        if (e == 0) {
            e = store_del_any(txn, st->meta, TORII_STORE_CERTIDX_CURSOR,
                              strlen(TORII_STORE_CERTIDX_CURSOR));
        }
    } else if (op->kind == TORII_STORE_DELETE) {
        e = store_del_any(txn, st->dbi[TORII_STORE_CERTIDX], op->rec.id, op->rec.id_len);
    } else if (st->certidx(&op->rec, op->parsed, &val, &ix.aux_len) != TORII_OK) {
        return torii_errf(eb, TORII_ENOMEM, "store: cannot derive the index entry");
    } else {
        ix.aux = val;
        e = torii_store__rec_write(txn, st->dbi[TORII_STORE_CERTIDX], &ix, 0);
        free(val);
    }
    if (e != 0) {
        *mrc = e;
        return torii_store__mdb_fail(eb, e, "index", op->rec.id, op->rec.id_len);
    }
    return TORII_OK;
}

int torii_store__idx_follow_all(struct torii_store *st, MDB_txn *txn,
                                const struct torii_store_op *ops, size_t n, int *mrc,
                                struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (size_t i = 0; i < n && rc == TORII_OK; i++) { /* in op order: the last one wins */
        rc = torii_store__idx_follow(st, txn, &ops[i], mrc, eb);
    }
    return rc;
}
