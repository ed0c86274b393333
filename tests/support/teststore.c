/* teststore.c - temporary stores for unit tests (see teststore.h). */
#include "teststore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int teststore_open(struct teststore *ts, const char *tag, size_t map_size, struct torii_errbuf *eb)
{
    struct torii_store_opts opts;
    int n;
    int rc;

    memset(ts, 0, sizeof(*ts));
    n = snprintf(ts->dir, sizeof(ts->dir), "/tmp/torii-%s-XXXXXX", tag);
    if (n < 0 || (size_t)n >= sizeof(ts->dir)) {
        ts->dir[0] = '\0';
        return torii_errf(eb, TORII_EINVAL, "teststore: tag '%s' is too long", tag);
    }
    if (mkdtemp(ts->dir) == NULL) {
        rc = torii_errf(eb, TORII_EIO, "teststore: mkdtemp %s: %s", ts->dir, strerror(errno));
        ts->dir[0] = '\0';
        return rc;
    }
    memset(&opts, 0, sizeof(opts));
    opts.dir = ts->dir;
    opts.initial_map_size = map_size;
    rc = torii_store_open(&opts, &ts->st, eb);
    if (rc != TORII_OK) {
        ts->st = NULL;
        (void)rmdir(ts->dir);
        ts->dir[0] = '\0';
    }
    return rc;
}

static void teststore_unlink(const char *dir, const char *name)
{
    char path[128];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);

    if (n > 0 && (size_t)n < sizeof(path)) {
        (void)unlink(path);
    }
}

int teststore_remove(struct teststore *ts, const char *const *extra, size_t n_extra)
{
    torii_store_free(ts->st);
    ts->st = NULL;
    if (ts->dir[0] == '\0') {
        return 0;
    }
    teststore_unlink(ts->dir, "data.mdb");
    teststore_unlink(ts->dir, "lock.mdb");
    for (size_t i = 0; i < n_extra; i++) {
        teststore_unlink(ts->dir, extra[i]);
    }
    return rmdir(ts->dir);
}
