/* compact.c - rewrite a closed store's data file so that it holds nothing but the current
 * records. LMDB never overwrites a record in place: a replaced record's old bytes stay in the
 * file, in free pages and in the unused gap inside live pages, and a compacting copy
 * (MDB_CP_COMPACT) keeps those gaps (it copies pages whole). After keys were sealed in place
 * (torii keys migrate/rotate) those old bytes are clear private keys. So the records are
 * copied one by one into a fresh environment (whose pages start zeroed) next to the old one,
 * which then replaces data.mdb (rename). Main thread of a command, with the instance lock held
 * and no torii_store open on the directory. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "torii/store.h"

struct compact {
    MDB_env *src;
    MDB_env *dst;
    MDB_txn *rtx;
    MDB_txn *wtx;
};

/* Copy the named database `name` record by record (ids come in order: appended). */
static int compact_db(struct compact *c, const MDB_val *name)
{
    char dbname[TORII_STORE_ID_MAX + 1];
    MDB_dbi s;
    MDB_dbi d;
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    unsigned flags = 0;
    int mrc;

    if (name->mv_size == 0 || name->mv_size > TORII_STORE_ID_MAX) {
        return MDB_INCOMPATIBLE;
    }
    memcpy(dbname, name->mv_data, name->mv_size);
    dbname[name->mv_size] = '\0';
    mrc = mdb_dbi_open(c->rtx, dbname, 0, &s);
    if (mrc == 0) {
        mrc = mdb_dbi_flags(c->rtx, s, &flags);
    }
    if (mrc == 0) {
        mrc = mdb_dbi_open(c->wtx, dbname, (flags & ~MDB_DUPSORT) | MDB_CREATE, &d);
    }
    if (mrc == 0 && (flags & MDB_DUPSORT) != 0) {
        mrc = MDB_INCOMPATIBLE; /* the store has none */
    }
    if (mrc == 0) {
        mrc = mdb_cursor_open(c->rtx, s, &cur);
    }
    for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
        mrc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (mrc == 0) {
            mrc = mdb_put(c->wtx, d, &k, &v, MDB_APPEND);
        }
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

/* Every named database of the source (the keys of its main database) into the destination. */
static int compact_all(struct compact *c)
{
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    MDB_dbi main_db;
    int mrc = mdb_dbi_open(c->rtx, NULL, 0, &main_db);

    if (mrc == 0) {
        mrc = mdb_cursor_open(c->rtx, main_db, &cur);
    }
    for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
        mrc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (mrc == 0) {
            mrc = compact_db(c, &k);
        }
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int compact_envs(struct compact *c, const char *dir, const char *tmp)
{
    MDB_envinfo info;
    int mrc = mdb_env_create(&c->src);

    if (mrc == 0) {
        mrc = mdb_env_set_maxdbs(c->src, TORII_STORE_BUCKETS + 1);
    }
    if (mrc == 0) {
        mrc = mdb_env_open(c->src, dir, MDB_NOTLS | MDB_RDONLY, 0600);
    }
    if (mrc == 0) {
        mrc = mdb_env_info(c->src, &info);
    }
    if (mrc == 0) {
        mrc = mdb_env_create(&c->dst);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_maxdbs(c->dst, TORII_STORE_BUCKETS + 1);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_mapsize(c->dst, info.me_mapsize);
    }
    if (mrc == 0) {
        mrc = mdb_env_open(c->dst, tmp, MDB_NOTLS, 0600);
    }
    if (mrc == 0) {
        mrc = mdb_txn_begin(c->src, NULL, MDB_RDONLY, &c->rtx);
    }
    if (mrc == 0) {
        mrc = mdb_txn_begin(c->dst, NULL, 0, &c->wtx);
    }
    if (mrc == 0) {
        mrc = compact_all(c);
    }
    if (mrc == 0) {
        mrc = mdb_txn_commit(c->wtx);
        c->wtx = NULL;
    }
    if (mrc == 0) {
        mrc = mdb_env_sync(c->dst, 1);
    }
    return mrc;
}

static void compact_close(struct compact *c)
{
    if (c->wtx != NULL) {
        mdb_txn_abort(c->wtx);
    }
    if (c->rtx != NULL) {
        mdb_txn_abort(c->rtx);
    }
    if (c->dst != NULL) {
        mdb_env_close(c->dst);
    }
    if (c->src != NULL) {
        mdb_env_close(c->src);
    }
}

int torii_store_compact(const char *dir, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct compact c = {0};
    char tmp[4096];
    char from[4096 + 16];
    char to[4096 + 16];
    char lock[4096 + 16];
    int dfd = -1;
    int mrc;

    TORII_ENSURE(dir != NULL && dir[0] != '\0'
                     && snprintf(tmp, sizeof(tmp), "%s/.compact", dir) < (int)sizeof(tmp),
                 torii_errf(eb, TORII_EINVAL, "store: bad data directory"));
    (void)snprintf(from, sizeof(from), "%s/data.mdb", tmp);
    (void)snprintf(lock, sizeof(lock), "%s/lock.mdb", tmp);
    (void)snprintf(to, sizeof(to), "%s/data.mdb", dir);
    (void)unlink(from); /* a compaction that died half-way */
    (void)unlink(lock);
    TORII_ENSURE(
        mkdir(tmp, 0700) == 0 || errno == EEXIST,
        torii_errf(eb, TORII_EIO, "store: cannot create %s: %s", tmp, torii_errno_text(errno).s));
    mrc = compact_envs(&c, dir, tmp);
    compact_close(&c);
    TORII_ENSURE(mrc == 0, torii_errf(eb, TORII_ESTORE, "store: compacting %s failed: %s", dir,
                                      mdb_strerror(mrc)));
    TORII_ENSURE(rename(from, to) == 0, torii_errf(eb, TORII_EIO, "store: cannot replace %s: %s",
                                                   to, torii_errno_text(errno).s));
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    TORII_ENSURE(dfd >= 0 && fsync(dfd) == 0, torii_errf(eb, TORII_EIO, "store: cannot sync %s: %s",
                                                         dir, torii_errno_text(errno).s));
out:
    if (dfd >= 0) {
        (void)close(dfd);
    }
    (void)unlink(from);
    (void)unlink(lock);
    (void)rmdir(tmp);
    return rc;
}
