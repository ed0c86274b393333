/* teststore.h - a torii store opened in a fresh temporary directory, for unit tests that need
 * a real LMDB environment (admin routes, lifecycle, webhooks...).
 * Threads: the test's main thread; the store itself follows store.h once open.
 * Ownership: the caller owns the struct (usually inside its fixture); teststore_remove frees
 * the store and deletes the directory. */
#ifndef TORII_TESTSTORE_H
#define TORII_TESTSTORE_H

#include <stddef.h>

#include "torii/err.h"
#include "torii/store.h"

struct teststore {
    char dir[64];           /* "/tmp/torii-<tag>-XXXXXX", made by mkdtemp */
    struct torii_store *st; /* open store; NULL before open and after remove */
};

/** Create /tmp/torii-<tag>-XXXXXX and open a store in it with an initial map of map_size bytes
 * (0 = the store's default). TORII_OK, or an error code with a message naming the directory in
 * eb (NULL accepted); on failure nothing is left open. */
int teststore_open(struct teststore *ts, const char *tag, size_t map_size, struct torii_errbuf *eb);

/** Free the store, unlink data.mdb, lock.mdb and the n_extra files named in extra (relative
 * to the directory; missing ones are fine), then rmdir the directory. Returns rmdir's result:
 * 0 when the directory is gone, -1 when something else was left in it (a test can assert the
 * store wrote nothing more). Safe on a struct that was never opened (returns 0). */
int teststore_remove(struct teststore *ts, const char *const *extra, size_t n_extra);

#endif
