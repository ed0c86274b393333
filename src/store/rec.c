/* rec.c - the lowest layer of the store: the layout of a stored record (store.h: u32 json
 * length, json, aux) and the reporting of LMDB failures, used by store.c and certidx.c.
 * Threads: any; pure but for logging. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lmdb.h>

#include "store_int.h"
#include "torii/log.h"

const char *torii_store__mdb_strerror(int mrc, char *buf, size_t len)
{
    if (mrc > 0) {
        /* errno value: mdb_strerror would call the non-reentrant strerror. */
        if (strerror_r(mrc, buf, len) != 0) {
            (void)snprintf(buf, len, "errno %d", mrc);
        }
        return buf;
    }
    return mdb_strerror(mrc);
}

/* The TORII_* code of an LMDB failure: a full or failing disk is told apart from the rest,
 * so the admin API can answer 507 or 503 instead of 500. */
static int store_fail_code(int mrc)
{
    if (mrc == ENOSPC || mrc == EDQUOT) {
        return TORII_ENOSPC;
    }
    return mrc == EIO ? TORII_EIO : TORII_ESTORE;
}

int torii_store__mdb_fail(struct torii_errbuf *eb, int mrc, const char *what, const char *id,
                          size_t id_len)
{
    char tmp[128];
    char esc[STORE_ESC_LEN];
    const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));
    int code = store_fail_code(mrc);

    if (id == NULL) {
        /* MAP_FULL is retried after growth; the runner logs it if growth is impossible. */
        if (mrc != MDB_MAP_FULL) {
            torii_log(TORII_LOG_ERR, "store: %s failed: %s", what, why);
        }
        return torii_errf(eb, code, "store: %s failed: %s", what, why);
    }
    (void)torii_log_escape(id, id_len, esc, sizeof(esc));
    if (mrc != MDB_MAP_FULL) {
        torii_log(TORII_LOG_ERR, "store: %s failed: %s (id=%s)", what, why, esc);
    }
    return torii_errf(eb, code, "store: %s failed: %s (id=%s)", what, why, esc);
}

int torii_store__rec_write(MDB_txn *txn, MDB_dbi dbi, const struct torii_store_rec *rec,
                           unsigned flags)
{
    MDB_val key = {.mv_size = rec->id_len, .mv_data = (void *)(uintptr_t)rec->id};
    MDB_val data = {.mv_size = STORE_HDR_LEN + rec->json_len + rec->aux_len, .mv_data = NULL};
    unsigned char *p;
    uint32_t jl = (uint32_t)rec->json_len;
    int mrc;

    /* MDB_RESERVE: write straight into the map, so no heap copy of a private key exists. */
    mrc = mdb_put(txn, dbi, &key, &data, flags | MDB_RESERVE);
    if (mrc != 0) {
        return mrc;
    }
    p = data.mv_data;
    p[0] = (unsigned char)(jl & 0xffu);
    p[1] = (unsigned char)((jl >> 8) & 0xffu);
    p[2] = (unsigned char)((jl >> 16) & 0xffu);
    p[3] = (unsigned char)((jl >> 24) & 0xffu);
    if (rec->json_len > 0) {
        memcpy(p + STORE_HDR_LEN, rec->json, rec->json_len);
    }
    if (rec->aux_len > 0) {
        memcpy(p + STORE_HDR_LEN + rec->json_len, rec->aux, rec->aux_len);
    }
    return 0;
}

/* Borrowed view of a stored value: rec points into the map until the txn ends. */
int torii_store__rec_decode(const MDB_val *key, const MDB_val *data, struct torii_store_rec *rec)
{
    const unsigned char *p = data->mv_data;
    size_t jl;

    if (data->mv_size < STORE_HDR_LEN) {
        return TORII_ESTORE;
    }
    jl = (size_t)p[0] | ((size_t)p[1] << 8) | ((size_t)p[2] << 16) | ((size_t)p[3] << 24);
    if (jl > data->mv_size - STORE_HDR_LEN) {
        return TORII_ESTORE;
    }
    rec->id = key->mv_data;
    rec->id_len = key->mv_size;
    rec->json = (const char *)(p + STORE_HDR_LEN);
    rec->json_len = jl;
    rec->aux_len = data->mv_size - STORE_HDR_LEN - jl;
    rec->aux = rec->aux_len > 0 ? p + STORE_HDR_LEN + jl : NULL;
    return TORII_OK;
}
