/* store_int.h - shared inside the store module: the store object (store.c owns its LMDB
 * environment and locks; remote.c the fleet write-through). */
#ifndef TORII_STORE_INT_H
#define TORII_STORE_INT_H

#include <pthread.h>
#include <stddef.h>

#include <lmdb.h>

#include "torii/store.h"

struct store_watcher {
    torii_store_watch_cb cb;
    void *arg;
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
};

#endif
