/* store_int.h - shared inside the store module: the store object (store.c owns its LMDB
 * environment and locks; remote.c the fleet write-through). */
#ifndef TORII_STORE_INT_H
#define TORII_STORE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "torii/store.h"

struct store_watcher {
    torii_store_watch_cb cb;
    void *arg;
};

/* A part of the map that reads have touched: [lo, hi); hi == 0: none. */
struct store_span {
    uintptr_t lo;
    uintptr_t hi;
};

struct torii_store {
    MDB_env *env;
    MDB_dbi dbi[TORII_STORE_BUCKETS];
    MDB_dbi meta;
    size_t max_map_size;
    int stale_readers_cleared;
    pthread_mutex_t write_mu;
    pthread_mutex_t gate;
    pthread_rwlock_t txn_rw;
    struct store_watcher watchers[TORII_STORE_WATCHERS_MAX];
    size_t nwatchers;
    struct torii_store_remote remote; /* commit == NULL: none (local mode) */
    const struct torii_kek_ring *kek; /* borrowed: torii_store_opts.kek */
    torii_store_derive_fn certidx;    /* torii_store_opts.certidx (NULL: index marked stale) */
    pthread_mutex_t got_mu;           /* guards got and got_n */
    struct store_span got;            /* the map torii_store_get read since the last drop; reset
                                       * when the map is replaced (under the exclusive hold) */
    unsigned got_n;                   /* torii_store_get reads since the last drop */
    struct store_span map;            /* the map's whole mapping, from /proc/self/maps; hi == 0:
                                       * not known yet (reset with got) */
};

/** The mapping of this process that holds p (the LMDB map is one mapping), from
 * /proc/self/maps, in *out; false when it cannot be told (mapfind.c). Any thread. */
bool torii_store__map_find(const void *p, struct store_span *out);
/** Create dir (0700) when missing; TORII_EIO when it cannot be made or is not a directory
 * (dir.c). Main thread, at open. */
int torii_store__dir_prepare(const char *dir, struct torii_errbuf *eb);
/** chmod 0600 the LMDB files of dir that are looser (an older run's). */
void torii_store__files_tighten(const char *dir);

/* The record layout: a 4-byte little-endian json length, then json, then aux. */
#define STORE_HDR_LEN 4u
/* Room for an id escaped by torii_log_escape (truncated for long ids). */
#define STORE_ESC_LEN 160

/** Write rec into dbi as the store lays it out (store.h); the LMDB code (rec.c). */
int torii_store__rec_write(MDB_txn *txn, MDB_dbi dbi, const struct torii_store_rec *rec,
                           unsigned flags);
/** Borrowed view of a stored value: rec points into the map until the txn ends; TORII_ESTORE
 * when the value is shorter than its header says (rec.c). */
int torii_store__rec_decode(const MDB_val *key, const MDB_val *data, struct torii_store_rec *rec);
/** The text of an LMDB code or errno value mrc (buf holds an errno text) (rec.c). */
const char *torii_store__mdb_strerror(int mrc, char *buf, size_t len);
/** Log and report an LMDB failure mrc of `what` on id (may be NULL) (rec.c). */
int torii_store__mdb_fail(struct torii_errbuf *eb, int mrc, const char *what, const char *id,
                          size_t id_len);
/** The index follows CERTS op in txn (certidx.c); on an LMDB failure *mrc is set. */
int torii_store__idx_follow(struct torii_store *st, MDB_txn *txn, const struct torii_store_op *op,
                            int *mrc, struct torii_errbuf *eb);
/** torii_store__idx_follow for each of ops, in order. */
int torii_store__idx_follow_all(struct torii_store *st, MDB_txn *txn,
                                const struct torii_store_op *ops, size_t n, int *mrc,
                                struct torii_errbuf *eb);

#endif
