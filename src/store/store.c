/* store.c - the LMDB store (see include/torii/store.h for the contract and on-disk layout).
 *
 * Locking. Three locks, always taken in this order: write_mu -> gate -> txn_rw.
 *  - write_mu (error-checking mutex) serializes writers and the watcher calls that follow a
 *    commit, so watchers see changes in commit order. A watcher that writes gets EDEADLK from
 *    the mutex, which we report as TORII_EPERM instead of hanging.
 *  - txn_rw is held shared around every transaction (read or write) of this process, and
 *    exclusive around mdb_env_set_mapsize(), which LMDB only allows with no transaction
 *    active in the process (it unmaps and remaps the file).
 *  - gate is a mutex a resizer holds while it waits for txn_rw: new readers pass through the
 *    gate first, so a stream of readers cannot starve a resize (glibc's rwlock prefers
 *    readers, and its writer-preferring kind is a GNU extension). A thread that already holds
 *    a read (a foreach callback calling get) skips the gate, since blocking there while
 *    holding txn_rw would deadlock with the resizer; a recursive rdlock cannot block on a
 *    reader-preferring rwlock.
 * Growth. MDB_MAP_FULL aborts the write txn; the writer (holding write_mu, no txn) doubles the
 * map under the exclusive lock and retries the whole txn. MDB_MAP_RESIZED (another process
 * grew the map) is handled at txn begin by adopting the new size the same way.
 */
#include "torii/store.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/crypto.h>

#include "store_int.h"
#include "torii/log.h"
#include "torii/mem.h"

#define STORE_DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define STORE_DEFAULT_MAX_MAP  ((size_t)64 << 30)
#define STORE_META_DB          "meta"
#define STORE_SCHEMA_KEY       "schema_version"
/* A foreach hands back its mapped pages every STORE_DROP_EVERY bytes read, and at the end
 * when it read at least STORE_DROP_MIN (see store_map_drop). */
#define STORE_DROP_EVERY ((size_t)32 << 20)
#define STORE_DROP_MIN   ((size_t)8 << 20)

/* Per thread: how many store read holds (txn_rw shared) this thread has, across stores. */
static _Thread_local unsigned store_read_depth;

static const char *const store_bucket_names[TORII_STORE_BUCKETS] = {
    [TORII_STORE_CERTS] = "certs",
    [TORII_STORE_SERIALS] = "serials",
    [TORII_STORE_ACME] = "acme",
    [TORII_STORE_CERTIDX] = "certidx",
};

/* A write transaction body: returns a TORII_* code; on an LMDB failure it sets *mrc to the
 * LMDB code (so the runner can see MDB_MAP_FULL) and returns TORII_ESTORE. */
typedef int (*store_write_body_cb)(struct torii_store *st, MDB_txn *txn, void *ctx, int *mrc,
                                   struct torii_errbuf *eb);

struct store_apply_ctx {
    const struct torii_store_op *ops;
    size_t n;
    const char *meta_key; /* torii_store_apply_meta: written in the same txn; else NULL */
    const char *meta_val;
};

struct store_meta_ctx {
    const char *key;
    const char *val;
};

/* ---- small helpers ---- */

static int store_id_check(const char *id, size_t id_len, struct torii_errbuf *eb)
{
    if (id == NULL || id_len == 0) {
        return torii_errf(eb, TORII_EINVAL, "store: empty id");
    }
    if (id_len > TORII_STORE_ID_MAX) {
        return torii_errf(eb, TORII_EINVAL, "store: id longer than %d bytes", TORII_STORE_ID_MAX);
    }
    if (memchr(id, '\0', id_len) != NULL) {
        return torii_errf(eb, TORII_EINVAL, "store: id contains a NUL byte");
    }
    return TORII_OK;
}

static int store_cstr_id_check(const char *id, size_t *len_out)
{
    size_t len;

    if (id == NULL) {
        return TORII_EINVAL;
    }
    len = strnlen(id, TORII_STORE_ID_MAX + 1);
    if (len == 0 || len > TORII_STORE_ID_MAX) {
        return TORII_EINVAL;
    }
    *len_out = len;
    return TORII_OK;
}

static bool store_bucket_ok(enum torii_store_bucket b)
{
    return (unsigned)b < TORII_STORE_BUCKETS;
}

static int store_op_check(const struct torii_store_op *op, size_t i, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    switch (op->kind) {
    case TORII_STORE_PUT:
    case TORII_STORE_CREATE:
    case TORII_STORE_REPLACE:
    case TORII_STORE_DELETE:
        break;
    case TORII_STORE_REPLACE_IF:
        if (op->expect_json == NULL || op->expect_json_len > UINT32_MAX) {
            return torii_errf(eb, TORII_EINVAL, "store: op %zu: REPLACE_IF without expected JSON",
                              i);
        }
        break;
    default:
        return torii_errf(eb, TORII_EINVAL, "store: op %zu: bad kind %d", i, (int)op->kind);
    }
    if (!store_bucket_ok(op->bucket)) {
        return torii_errf(eb, TORII_EINVAL, "store: op %zu: bad bucket %d", i, (int)op->bucket);
    }
    if ((rc = store_id_check(op->rec.id, op->rec.id_len, eb)) != TORII_OK) {
        return rc;
    }
    if (op->kind == TORII_STORE_DELETE) {
        return TORII_OK;
    }
    if ((op->rec.json == NULL && op->rec.json_len != 0)
        || (op->rec.aux == NULL && op->rec.aux_len != 0)) {
        return torii_errf(eb, TORII_EINVAL, "store: op %zu: NULL json or aux with a length", i);
    }
    if (op->rec.json_len > UINT32_MAX
        || op->rec.aux_len > SIZE_MAX - STORE_HDR_LEN - op->rec.json_len) {
        return torii_errf(eb, TORII_EINVAL, "store: op %zu: record too large", i);
    }
    return TORII_OK;
}

/* ---- locking ---- */

static void store_read_enter(struct torii_store *st)
{
    if (store_read_depth == 0) {
        TORII_ASSERT(pthread_mutex_lock(&st->gate) == 0);
        TORII_ASSERT(pthread_mutex_unlock(&st->gate) == 0);
    }
    TORII_ASSERT(pthread_rwlock_rdlock(&st->txn_rw) == 0);
    store_read_depth++;
}

static void store_read_exit(struct torii_store *st)
{
    store_read_depth--;
    TORII_ASSERT(pthread_rwlock_unlock(&st->txn_rw) == 0);
}

static void store_resize_enter(struct torii_store *st)
{
    TORII_ASSERT(store_read_depth == 0);
    TORII_ASSERT(pthread_mutex_lock(&st->gate) == 0);
    TORII_ASSERT(pthread_rwlock_wrlock(&st->txn_rw) == 0);
}

static void store_resize_exit(struct torii_store *st)
{
    TORII_ASSERT(pthread_rwlock_unlock(&st->txn_rw) == 0);
    TORII_ASSERT(pthread_mutex_unlock(&st->gate) == 0);
}

/* Take write_mu; refuse (instead of deadlocking) from watchers and read callbacks. */
static int store_write_lock(struct torii_store *st, struct torii_errbuf *eb)
{
    int e;

    if (store_read_depth > 0) {
        return torii_errf(eb, TORII_EPERM, "store: write from inside a read callback");
    }
    e = pthread_mutex_lock(&st->write_mu);
    if (e == EDEADLK) {
        return torii_errf(eb, TORII_EPERM, "store: write from inside a watcher");
    }
    TORII_ASSERT(e == 0);
    return TORII_OK;
}

static void store_write_unlock(struct torii_store *st)
{
    TORII_ASSERT(pthread_mutex_unlock(&st->write_mu) == 0);
}

/* ---- transactions and map size ---- */

/* The map is about to be replaced (caller holds the exclusive hold): forget the span the
 * gets read, it would name addresses of the old map. */
static void store_got_reset(struct torii_store *st)
{
    TORII_ASSERT(pthread_mutex_lock(&st->got_mu) == 0);
    st->got.lo = 0;
    st->got.hi = 0;
    st->got_n = 0;
    st->map.lo = 0;
    st->map.hi = 0;
    TORII_ASSERT(pthread_mutex_unlock(&st->got_mu) == 0);
}

/* Another process grew the map: adopt its size (needs no txn active in this process). */
static int store_map_adopt(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    int mrc;
    char tmp[128];

    if (store_read_depth > 0) {
        /* Nested read: we hold txn_rw ourselves, so we cannot take it exclusively. */
        torii_log(TORII_LOG_WARN, "store: map resized by another process during a nested read");
        rc = torii_errf(eb, TORII_ESTORE, "store: map resized by another process, retry");
        goto out;
    }
    store_resize_enter(st);
    store_got_reset(st);
    mrc = mdb_env_set_mapsize(st->env, 0);
    store_resize_exit(st);
    if (mrc != 0) {
        const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));

        torii_log(TORII_LOG_ERR, "store: map resize adoption failed: %s", why);
        rc = torii_errf(eb, TORII_ESTORE, "store: map resize adoption failed: %s", why);
        goto out;
    }
    torii_log(TORII_LOG_INFO, "store: adopted map size grown by another process");
out:
    return rc;
}

/* Begin a txn; on success the caller holds a read hold, released by store_read_exit() after
 * the txn ends. */
static int store_txn_begin(struct torii_store *st, unsigned flags, MDB_txn **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    MDB_txn *txn = NULL;
    int mrc;
    char tmp[128];

    for (;;) {
        store_read_enter(st);
        mrc = mdb_txn_begin(st->env, NULL, flags, &txn);
        if (mrc == 0) {
            break;
        }
        store_read_exit(st);
        if (mrc != MDB_MAP_RESIZED) {
            const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));

            torii_log(TORII_LOG_ERR, "store: txn begin failed: %s", why);
            rc = torii_errf(eb, TORII_ESTORE, "store: txn begin failed: %s", why);
            goto out;
        }
        TORII_TRY(store_map_adopt(st, eb));
    }
    *out = txn;
out:
    return rc;
}

static int store_env_info(struct torii_store *st, MDB_envinfo *info, MDB_stat *ms)
{
    int mrc = mdb_env_info(st->env, info);

    if (mrc == 0 && ms != NULL) {
        mrc = mdb_env_stat(st->env, ms);
    }
    return mrc == 0 ? TORII_OK : TORII_ESTORE;
}

/* Double the map (up to max_map_size). Caller holds write_mu and no txn. */
static int store_map_grow(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    MDB_envinfo info;
    size_t cur;
    size_t next;
    int mrc;
    char tmp[128];

    store_resize_enter(st);
    if (store_env_info(st, &info, NULL) != TORII_OK) {
        rc = torii_errf(eb, TORII_ESTORE, "store: mdb_env_info failed");
        goto out;
    }
    cur = info.me_mapsize;
    if (cur >= st->max_map_size) {
        const char *why = mdb_strerror(MDB_MAP_FULL);

        torii_log(TORII_LOG_ERR, "store: write failed: %s (map_size=%zu max_map_size=%zu)", why,
                  cur, st->max_map_size);
        rc = torii_errf(eb, TORII_ENOSPC, "store: write failed: %s (map_size=%zu, at maximum)", why,
                        cur);
        goto out;
    }
    next = cur > st->max_map_size / 2 ? st->max_map_size : cur * 2;
    store_got_reset(st);
    mrc = mdb_env_set_mapsize(st->env, next);
    if (mrc != 0) {
        const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));

        torii_log(TORII_LOG_ERR, "store: map grow failed: %s (map_size=%zu next=%zu)", why, cur,
                  next);
        rc = torii_errf(eb, TORII_ESTORE, "store: map grow failed: %s", why);
        goto out;
    }
    torii_log(TORII_LOG_NOTICE, "store: map grown (old=%zu new=%zu)", cur, next);
out:
    store_resize_exit(st);
    return rc;
}

/* LMDB reports a short write as EIO: one that hit a full file system (less than a megabyte
 * left where the store lives) is told as ENOSPC, so a full disk stays a 507, not a 503. */
static int store_commit_errno(struct torii_store *st, int mrc)
{
    const char *path = NULL;
    struct statvfs vfs;

    if (mrc != EIO || mdb_env_get_path(st->env, &path) != 0 || path == NULL
        || statvfs(path, &vfs) != 0) {
        return mrc;
    }
    return (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20) ? ENOSPC : mrc;
}

/* Run body in one write txn, growing the map and retrying on MDB_MAP_FULL. The caller holds
 * write_mu (or is torii_store_open, before the store is shared). */
static int store_write_run(struct torii_store *st, store_write_body_cb body, void *ctx,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (;;) {
        MDB_txn *txn = NULL;
        int mrc = 0;

        TORII_TRY(store_txn_begin(st, 0, &txn, eb));
        rc = body(st, txn, ctx, &mrc, eb);
        if (rc == TORII_OK) {
            /* Commit can need pages too (free list), so it can also report MAP_FULL. */
            mrc = store_commit_errno(st, mdb_txn_commit(txn));
            if (mrc != 0) {
                rc = torii_store__mdb_fail(eb, mrc, "commit", NULL, 0);
            }
        } else {
            mdb_txn_abort(txn);
        }
        store_read_exit(st);
        if (rc == TORII_OK || mrc != MDB_MAP_FULL) {
            goto out;
        }
        TORII_TRY(store_map_grow(st, eb));
    }
out:
    return rc;
}

/* ---- records ---- */

static void store_log_corrupt(enum torii_store_bucket b, const char *id, size_t id_len)
{
    char esc[STORE_ESC_LEN];

    (void)torii_log_escape(id, id_len, esc, sizeof(esc));
    torii_log(TORII_LOG_ERR, "store: corrupt record (bucket=%s id=%s)", store_bucket_names[b], esc);
}

/* REPLACE_IF's precondition on the value read inside the write txn: 0 when the stored JSON is
 * exactly what the caller read. Constant time: the JSON may hold a private key (STYLE 2.6.6). */
static int store_expect_differs(const MDB_val *key, const MDB_val *cur,
                                const struct torii_store_op *op)
{
    struct torii_store_rec have;

    if (torii_store__rec_decode(key, cur, &have) != TORII_OK) {
        return 1;
    }
    if (have.json_len != op->expect_json_len) {
        return 1;
    }
    return have.json_len > 0 && CRYPTO_memcmp(have.json, op->expect_json, have.json_len) != 0;
}

static int store_meta_body(struct torii_store *st, MDB_txn *txn, void *vctx, int *mrc,
                           struct torii_errbuf *eb);

static int store_apply_body(struct torii_store *st, MDB_txn *txn, void *vctx, int *mrc,
                            struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const struct store_apply_ctx *ctx = vctx;

    for (size_t i = 0; i < ctx->n; i++) {
        const struct torii_store_op *op = &ctx->ops[i];
        MDB_dbi dbi = st->dbi[op->bucket];
        MDB_val key = {.mv_size = op->rec.id_len, .mv_data = (void *)(uintptr_t)op->rec.id};
        MDB_val cur;
        char esc[STORE_ESC_LEN];
        const char *what = "put";
        int e = 0;

        switch (op->kind) {
        case TORII_STORE_PUT:
            e = torii_store__rec_write(txn, dbi, &op->rec, 0);
            break;
        case TORII_STORE_CREATE:
            e = torii_store__rec_write(txn, dbi, &op->rec, MDB_NOOVERWRITE);
            if (e == MDB_KEYEXIST) {
                (void)torii_log_escape(op->rec.id, op->rec.id_len, esc, sizeof(esc));
                rc = torii_errf(eb, TORII_EEXIST, "store: %s/%s already exists",
                                store_bucket_names[op->bucket], esc);
                goto out;
            }
            break;
        case TORII_STORE_REPLACE:
            e = mdb_get(txn, dbi, &key, &cur);
            if (e == 0) {
                e = torii_store__rec_write(txn, dbi, &op->rec, 0);
            }
            break;
        case TORII_STORE_REPLACE_IF:
            e = mdb_get(txn, dbi, &key, &cur);
            if (e == 0 && store_expect_differs(&key, &cur, op)) {
                (void)torii_log_escape(op->rec.id, op->rec.id_len, esc, sizeof(esc));
                rc = torii_errf(eb, TORII_ECONFLICT, "store: %s/%s changed since it was read",
                                store_bucket_names[op->bucket], esc);
                goto out;
            }
            if (e == 0) {
                e = torii_store__rec_write(txn, dbi, &op->rec, 0);
            }
            break;
        case TORII_STORE_DELETE:
            what = "delete";
            e = mdb_del(txn, dbi, &key, NULL);
            break;
        default:
            e = EINVAL; /* unreachable: kinds are checked before the txn */
            break;
        }
        if (e == MDB_NOTFOUND) {
            (void)torii_log_escape(op->rec.id, op->rec.id_len, esc, sizeof(esc));
            rc = torii_errf(eb, TORII_ENOTFOUND, "store: %s/%s not found",
                            store_bucket_names[op->bucket], esc);
            goto out;
        }
        if (e != 0) {
            *mrc = e;
            rc = torii_store__mdb_fail(eb, e, what, op->rec.id, op->rec.id_len);
            goto out;
        }
    }
    TORII_TRY(torii_store__idx_follow_all(st, txn, ctx->ops, ctx->n, mrc, eb));
    if (ctx->meta_key != NULL) {
        struct store_meta_ctx m = {.key = ctx->meta_key, .val = ctx->meta_val};
        rc = store_meta_body(st, txn, &m, mrc, eb);
    }
out:
    return rc;
}

/* The op whose watchers run on this thread: its `parsed` (torii_store_watch_parsed). */
static _Thread_local const void *store_watch_parsed;

const void *torii_store_watch_parsed(void)
{
    return store_watch_parsed;
}

static void store_notify(struct torii_store *st, const struct torii_store_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct torii_store_rec rec = ops[i].rec;
        /* Watchers need not know about preconditions: a REPLACE_IF that applied replaced. */
        enum torii_store_op_kind kind =
            ops[i].kind == TORII_STORE_REPLACE_IF ? TORII_STORE_REPLACE : ops[i].kind;

        if (ops[i].kind == TORII_STORE_DELETE) {
            rec.json = NULL;
            rec.json_len = 0;
            rec.aux = NULL;
            rec.aux_len = 0;
        }
        store_watch_parsed = ops[i].kind != TORII_STORE_DELETE ? ops[i].parsed : NULL;
        for (size_t w = 0; w < st->nwatchers; w++) {
            st->watchers[w].cb(kind, ops[i].bucket, &rec, st->watchers[w].arg);
        }
        store_watch_parsed = NULL;
    }
}

/* ---- open / close ---- */

static int store_schema_parse(const MDB_val *v, long long *out)
{
    const unsigned char *p = v->mv_data;
    long long n = 0;

    if (v->mv_size == 0 || v->mv_size > 18) {
        return TORII_ESTORE;
    }
    for (size_t i = 0; i < v->mv_size; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return TORII_ESTORE;
        }
        n = n * 10 + (p[i] - '0');
    }
    *out = n;
    return TORII_OK;
}

static int store_init_body(struct torii_store *st, MDB_txn *txn, void *ctx, int *mrc,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    MDB_val key = {.mv_size = strlen(STORE_SCHEMA_KEY),
                   .mv_data = (void *)(uintptr_t)STORE_SCHEMA_KEY};
    MDB_val val;
    char ver[24];
    long long disk = 0;
    int e;

    (void)ctx;
    e = mdb_dbi_open(txn, STORE_META_DB, MDB_CREATE, &st->meta);
    if (e != 0) {
        *mrc = e;
        rc = torii_store__mdb_fail(eb, e, "open", STORE_META_DB, strlen(STORE_META_DB));
        goto out;
    }
    e = mdb_get(txn, st->meta, &key, &val);
    if (e == 0) {
        if (store_schema_parse(&val, &disk) != TORII_OK) {
            torii_log(TORII_LOG_ERR, "store: open failed: corrupt %s", STORE_SCHEMA_KEY);
            rc = torii_errf(eb, TORII_ESTORE, "store: corrupt %s in meta", STORE_SCHEMA_KEY);
            goto out;
        }
        if (disk > TORII_STORE_SCHEMA_VERSION) {
            torii_log(TORII_LOG_ERR,
                      "store: open failed: schema version %lld is newer than supported (%d)", disk,
                      TORII_STORE_SCHEMA_VERSION);
            rc = torii_errf(eb, TORII_EUNSUPPORTED,
                            "store: schema version %lld on disk is newer than supported (%d)", disk,
                            TORII_STORE_SCHEMA_VERSION);
            goto out;
        }
    } else if (e == MDB_NOTFOUND) {
        int n = snprintf(ver, sizeof(ver), "%d", TORII_STORE_SCHEMA_VERSION);

        TORII_ASSERT(n > 0 && (size_t)n < sizeof(ver));
        val.mv_size = (size_t)n;
        val.mv_data = ver;
        e = mdb_put(txn, st->meta, &key, &val, 0);
    }
    if (e != 0) {
        *mrc = e;
        rc = torii_store__mdb_fail(eb, e, "open", STORE_SCHEMA_KEY, strlen(STORE_SCHEMA_KEY));
        goto out;
    }
    for (int b = 0; b < TORII_STORE_BUCKETS; b++) {
        e = mdb_dbi_open(txn, store_bucket_names[b], MDB_CREATE, &st->dbi[b]);
        if (e != 0) {
            *mrc = e;
            rc = torii_store__mdb_fail(eb, e, "open", store_bucket_names[b],
                                       strlen(store_bucket_names[b]));
            goto out;
        }
    }
out:
    return rc;
}

static void store_locks_init(struct torii_store *st)
{
    pthread_mutexattr_t ma;

    TORII_ASSERT(pthread_mutexattr_init(&ma) == 0);
    TORII_ASSERT(pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->write_mu, &ma) == 0);
    TORII_ASSERT(pthread_mutexattr_destroy(&ma) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->gate, NULL) == 0);
    TORII_ASSERT(pthread_rwlock_init(&st->txn_rw, NULL) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->got_mu, NULL) == 0);
}

int torii_store_open(const struct torii_store_opts *opts, struct torii_store **out,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_store *st = NULL;
    size_t initial;
    int mrc;
    int dead = 0;
    char tmp[128];

    if (opts == NULL || out == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
        rc = torii_errf(eb, TORII_EINVAL, "store: no data directory");
        goto out;
    }
    initial = opts->initial_map_size ? opts->initial_map_size : STORE_DEFAULT_MAP_SIZE;
    st = torii_xcalloc(1, sizeof(*st));
    store_locks_init(st);
    st->max_map_size = opts->max_map_size ? opts->max_map_size : STORE_DEFAULT_MAX_MAP;
    st->kek = opts->kek;
    st->certidx = opts->certidx;
    if (initial > st->max_map_size) {
        rc = torii_errf(eb, TORII_EINVAL, "store: initial_map_size %zu > max_map_size %zu", initial,
                        st->max_map_size);
        goto out;
    }
    TORII_TRY(torii_store__dir_prepare(opts->dir, eb));

    mrc = mdb_env_create(&st->env);
    if (mrc == 0) {
        mrc = mdb_env_set_maxdbs(st->env, TORII_STORE_BUCKETS + 1);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_mapsize(st->env, initial);
    }
    if (mrc == 0) {
        /* Durable: no MDB_NOSYNC/NOMETASYNC. MDB_NOTLS: read txns are not tied to a thread. */
        mrc = mdb_env_open(st->env, opts->dir, MDB_NOTLS, 0600);
    }
    if (mrc != 0) {
        const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));

        torii_log(TORII_LOG_ERR, "store: open failed: %s (dir=%s)", why, opts->dir);
        rc = torii_errf(eb, TORII_ESTORE, "store: open %s failed: %s", opts->dir, why);
        goto out;
    }
    TORII_ASSERT(mdb_env_get_maxkeysize(st->env) >= TORII_STORE_ID_MAX);
    torii_store__files_tighten(opts->dir);

    mrc = mdb_reader_check(st->env, &dead);
    if (mrc != 0) {
        const char *why = torii_store__mdb_strerror(mrc, tmp, sizeof(tmp));

        torii_log(TORII_LOG_ERR, "store: open failed: reader check: %s (dir=%s)", why, opts->dir);
        rc = torii_errf(eb, TORII_ESTORE, "store: reader check failed: %s", why);
        goto out;
    }
    st->stale_readers_cleared = dead;
    torii_log(dead > 0 ? TORII_LOG_NOTICE : TORII_LOG_DEBUG,
              "store: cleared %d stale reader slot(s) (dir=%s)", dead, opts->dir);

    TORII_TRY(store_write_run(st, store_init_body, NULL, eb));
    *out = st;
    st = NULL;
out:
    torii_store_free(st);
    return rc;
}

const struct torii_kek_ring *torii_store_kek(const struct torii_store *st)
{
    return st != NULL ? st->kek : NULL;
}
void torii_store_free(struct torii_store *st)
{
    if (st == NULL) {
        return;
    }
    /* Closing the env also closes the DBI handles. */
    mdb_env_close(st->env);
    TORII_ASSERT(pthread_rwlock_destroy(&st->txn_rw) == 0);
    TORII_ASSERT(pthread_mutex_destroy(&st->got_mu) == 0);
    TORII_ASSERT(pthread_mutex_destroy(&st->gate) == 0);
    TORII_ASSERT(pthread_mutex_destroy(&st->write_mu) == 0);
    free(st);
}

/* ---- writes ---- */

static int store_apply_run(struct torii_store *st, const struct store_apply_ctx *cctx,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    bool locked = false;
    struct store_apply_ctx ctx = *cctx;
    const struct torii_store_op *ops = ctx.ops;
    size_t n = ctx.n;
    size_t klen = 0;

    if (st == NULL || (ops == NULL && n > 0)) {
        rc = torii_errf(eb, TORII_EINVAL, "store: apply: NULL argument");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        TORII_TRY(store_op_check(&ops[i], i, eb));
    }
    if (ctx.meta_key != NULL
        && (ctx.meta_val == NULL || store_cstr_id_check(ctx.meta_key, &klen) != TORII_OK)) {
        rc = torii_errf(eb, TORII_EINVAL, "store: apply: bad meta key or value");
        goto out;
    }
    if (n == 0 && ctx.meta_key == NULL) {
        goto out;
    }
    TORII_TRY(store_write_lock(st, eb));
    locked = true;
    TORII_TRY(store_write_run(st, store_apply_body, &ctx, eb));
    store_notify(st, ops, n);
out:
    if (locked) {
        store_write_unlock(st);
    }
    return rc;
}

int torii_store_apply(struct torii_store *st, const struct torii_store_op *ops, size_t n,
                      struct torii_errbuf *eb)
{
    struct store_apply_ctx ctx = {.ops = ops, .n = n};
    return store_apply_run(st, &ctx, eb);
}

int torii_store_apply_meta(struct torii_store *st, const struct torii_store_op *ops, size_t n,
                           const char *meta_key, const char *meta_val, struct torii_errbuf *eb)
{
    struct store_apply_ctx ctx = {.ops = ops, .n = n, .meta_key = meta_key, .meta_val = meta_val};
    return store_apply_run(st, &ctx, eb);
}

int torii_store_put(struct torii_store *st, enum torii_store_bucket b,
                    const struct torii_store_rec *rec, enum torii_store_op_kind kind,
                    struct torii_errbuf *eb)
{
    struct torii_store_op op;

    if (rec == NULL) {
        return torii_errf(eb, TORII_EINVAL, "store: put: NULL record");
    }
    memset(&op, 0, sizeof(op)); /* no expected value: a REPLACE_IF is refused */
    op.kind = kind;
    op.bucket = b;
    op.rec = *rec;
    return torii_store_apply(st, &op, 1, eb);
}

int torii_store_delete(struct torii_store *st, enum torii_store_bucket b, const char *id,
                       struct torii_errbuf *eb)
{
    struct torii_store_op op = {.kind = TORII_STORE_DELETE, .bucket = b};
    size_t len = 0;

    if (store_cstr_id_check(id, &len) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "store: delete: empty, NULL or too long id");
    }
    op.rec.id = id;
    op.rec.id_len = len;
    return torii_store_apply(st, &op, 1, eb);
}

/* ---- reads ---- */

static void store_got_note(struct torii_store *st, const MDB_val *k, const MDB_val *v);

/* mdb_get, through a cursor so that key, too, points into the map: at the key in its leaf
 * page (MDB_SET_KEY), which store_got_note counts as read. */
static int store_get_node(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, dbi, &cur);

    if (mrc == 0) {
        mrc = mdb_cursor_get(cur, key, data, MDB_SET_KEY);
        mdb_cursor_close(cur);
    }
    return mrc;
}

int torii_store_get(struct torii_store *st, enum torii_store_bucket b, const char *id,
                    char **json_out, size_t *json_len, unsigned char **aux_out, size_t *aux_len)
{
    int rc = TORII_OK;
    MDB_txn *txn = NULL;
    MDB_val key;
    MDB_val data;
    struct torii_store_rec rec;
    char *json = NULL;
    unsigned char *aux = NULL;
    size_t len = 0;
    int mrc;

    TORII_ENSURE(st != NULL && json_out != NULL && store_bucket_ok(b), TORII_EINVAL);
    TORII_TRY(store_cstr_id_check(id, &len));
    TORII_TRY(store_txn_begin(st, MDB_RDONLY, &txn, NULL));
    key.mv_size = len;
    key.mv_data = (void *)(uintptr_t)id;
    mrc = store_get_node(txn, st->dbi[b], &key, &data);
    if (mrc == MDB_NOTFOUND) {
        rc = TORII_ENOTFOUND;
        goto out;
    }
    if (mrc != 0) {
        rc = torii_store__mdb_fail(NULL, mrc, "get", id, len);
        goto out;
    }
    if (torii_store__rec_decode(&key, &data, &rec) != TORII_OK) {
        store_log_corrupt(b, id, len);
        rc = TORII_ESTORE;
        goto out;
    }
    json = torii_xmalloc(rec.json_len + 1);
    if (rec.json_len > 0) {
        memcpy(json, rec.json, rec.json_len);
    }
    json[rec.json_len] = '\0';
    if (aux_out != NULL && rec.aux_len > 0) {
        aux = torii_xmalloc(rec.aux_len);
        memcpy(aux, rec.aux, rec.aux_len);
    }
    store_got_note(st, &key, &data);
    *json_out = json;
    json = NULL;
    if (json_len != NULL) {
        *json_len = rec.json_len;
    }
    if (aux_out != NULL) {
        *aux_out = aux;
        aux = NULL;
    }
    if (aux_len != NULL) {
        *aux_len = rec.aux_len;
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
        store_read_exit(st);
    }
    free(json);
    free(aux);
    return rc;
}

static void store_span_add(struct store_span *sp, const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;

    if (sp->hi == 0 || a < sp->lo) {
        sp->lo = a;
    }
    if (a + len > sp->hi) {
        sp->hi = a + len;
    }
}

/* Reading maps the file's pages into this process, and they stay mapped (counted in its RSS)
 * until something unmaps them: a scan of a large store, such as the start-up loads (every
 * record, twice: the certificate table and the PKI view, which keep their own copies of what
 * they need), would leave the whole file resident, ~4 KB a certificate. The map is read-only
 * and shared (no MDB_WRITEMAP), so MADV_DONTNEED only drops this process's page-table
 * entries: the data stays in the page cache and the next access maps it back (fault-around
 * maps 16 pages at a time); pointers into the map stay valid. What a read-only txn returns
 * always points into the map (mdb_page_get), so the span of the records read, rounded out to
 * pages, is map and nothing else. Caller holds a read hold, so the map is not being replaced. */
static void store_map_drop(struct torii_store *st, struct store_span *sp)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    unsigned flags = 0;
    uintptr_t lo;
    uintptr_t hi;

    if (sp->hi == 0 || page == 0 || (page & (page - 1)) != 0
        || mdb_env_get_flags(st->env, &flags) != 0 || (flags & MDB_WRITEMAP) != 0) {
        return;
    }
    lo = sp->lo & ~(page - 1);
    hi = (sp->hi + page - 1) & ~(page - 1);
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
        torii_log_errno(TORII_LOG_DEBUG, "store: madvise failed");
    }
    sp->lo = 0;
    sp->hi = 0;
}

/* Single-record reads (a certificate's first handshake, API reads) map pages too, and the
 * kernel maps the cached pages near each fault with it (fault-around, whole large folios):
 * ~75 KB of RSS per certificate read at 1M, spread over the whole file. Every STORE_GOT_DROP
 * reads, the whole map is dropped (only its span of the reads when the map's extent cannot
 * be told): the hot branch pages come back with a few minor faults. Caller holds a read hold,
 * so the span is in the current map (a remap resets it: store_got_reset). */
#define STORE_GOT_DROP 64u

static void store_got_note(struct torii_store *st, const MDB_val *k, const MDB_val *v)
{
    TORII_ASSERT(pthread_mutex_lock(&st->got_mu) == 0);
    store_span_add(&st->got, k->mv_data, k->mv_size);
    store_span_add(&st->got, v->mv_data, v->mv_size);
    if (++st->got_n >= STORE_GOT_DROP) {
        struct store_span all = st->map;

        if (all.hi != 0 || torii_store__map_find(v->mv_data, &st->map)) {
            all = st->map;
            store_map_drop(st, &all);
            st->got.lo = 0;
            st->got.hi = 0;
        } else {
            store_map_drop(st, &st->got);
        }
        st->got_n = 0;
    }
    TORII_ASSERT(pthread_mutex_unlock(&st->got_mu) == 0);
}

int torii_store_foreach(struct torii_store *st, enum torii_store_bucket b, torii_store_iter_cb cb,
                        void *arg)
{
    return torii_store_foreach_from(st, b, NULL, 0, cb, arg);
}

static MDB_cursor_op store_first_op(const char *from, size_t from_len)
{
    return from != NULL && from_len > 0 ? MDB_SET_RANGE : MDB_FIRST;
}

int torii_store_foreach_from(struct torii_store *st, enum torii_store_bucket b, const char *from,
                             size_t from_len, torii_store_iter_cb cb, void *arg)
{
    int rc = TORII_OK;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val key = {from_len, (void *)(uintptr_t)from};
    MDB_val data;
    MDB_cursor_op op = store_first_op(from, from_len);
    struct store_span span = {0, 0};
    size_t read = 0;
    size_t since_drop = 0;
    int mrc;

    TORII_ENSURE(st != NULL && cb != NULL && store_bucket_ok(b), TORII_EINVAL);
    TORII_TRY(store_txn_begin(st, MDB_RDONLY, &txn, NULL));
    mrc = mdb_cursor_open(txn, st->dbi[b], &cur);
    if (mrc != 0) {
        rc = torii_store__mdb_fail(NULL, mrc, "foreach", NULL, 0);
        goto out;
    }
    for (;;) {
        struct torii_store_rec rec;

        mrc = mdb_cursor_get(cur, &key, &data, op);
        op = MDB_NEXT;
        if (mrc == MDB_NOTFOUND) {
            break;
        }
        if (mrc != 0) {
            rc = torii_store__mdb_fail(NULL, mrc, "foreach", NULL, 0);
            goto out;
        }
        if (torii_store__rec_decode(&key, &data, &rec) != TORII_OK) {
            store_log_corrupt(b, key.mv_data, key.mv_size);
            rc = TORII_ESTORE;
            goto out;
        }
        store_span_add(&span, key.mv_data, key.mv_size);
        store_span_add(&span, data.mv_data, data.mv_size);
        TORII_TRY(cb(&rec, arg));
        read += key.mv_size + data.mv_size;
        since_drop += key.mv_size + data.mv_size;
        if (since_drop >= STORE_DROP_EVERY) {
            store_map_drop(st, &span);
            since_drop = 0;
        }
    }
out:
    if (read >= STORE_DROP_MIN) {
        store_map_drop(st, &span);
    }
    mdb_cursor_close(cur);
    if (txn != NULL) {
        mdb_txn_abort(txn);
        store_read_exit(st);
    }
    return rc;
}

int torii_store_count(struct torii_store *st, enum torii_store_bucket b, size_t *out)
{
    int rc = TORII_OK;
    MDB_txn *txn = NULL;
    MDB_stat ms;
    int mrc;

    TORII_ENSURE(st != NULL && out != NULL && store_bucket_ok(b), TORII_EINVAL);
    TORII_TRY(store_txn_begin(st, MDB_RDONLY, &txn, NULL));
    mrc = mdb_stat(txn, st->dbi[b], &ms);
    if (mrc != 0) {
        rc = torii_store__mdb_fail(NULL, mrc, "count", NULL, 0);
        goto out;
    }
    *out = ms.ms_entries;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
        store_read_exit(st);
    }
    return rc;
}

int torii_store_watch(struct torii_store *st, torii_store_watch_cb cb, void *arg)
{
    if (st == NULL || cb == NULL) {
        return TORII_EINVAL;
    }
    if (st->nwatchers >= TORII_STORE_WATCHERS_MAX) {
        return TORII_ETOOBIG;
    }
    st->watchers[st->nwatchers].cb = cb;
    st->watchers[st->nwatchers].arg = arg;
    st->nwatchers++;
    return TORII_OK;
}

/* ---- meta ---- */

int torii_store_meta_get(struct torii_store *st, const char *key, char **val_out)
{
    int rc = TORII_OK;
    MDB_txn *txn = NULL;
    MDB_val k;
    MDB_val v;
    size_t len = 0;
    char *val = NULL;
    int mrc;

    TORII_ENSURE(st != NULL && val_out != NULL, TORII_EINVAL);
    TORII_TRY(store_cstr_id_check(key, &len));
    TORII_TRY(store_txn_begin(st, MDB_RDONLY, &txn, NULL));
    k.mv_size = len;
    k.mv_data = (void *)(uintptr_t)key;
    mrc = mdb_get(txn, st->meta, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        rc = TORII_ENOTFOUND;
        goto out;
    }
    if (mrc != 0) {
        rc = torii_store__mdb_fail(NULL, mrc, "meta get", key, len);
        goto out;
    }
    val = torii_xstrndup(v.mv_data, v.mv_size);
    *val_out = val;
    val = NULL;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
        store_read_exit(st);
    }
    free(val);
    return rc;
}

static int store_meta_body(struct torii_store *st, MDB_txn *txn, void *vctx, int *mrc,
                           struct torii_errbuf *eb)
{
    const struct store_meta_ctx *ctx = vctx;
    MDB_val k = {.mv_size = strlen(ctx->key), .mv_data = (void *)(uintptr_t)ctx->key};
    MDB_val v = {.mv_size = strlen(ctx->val), .mv_data = (void *)(uintptr_t)ctx->val};
    int e = mdb_put(txn, st->meta, &k, &v, 0);

    if (e != 0) {
        *mrc = e;
        return torii_store__mdb_fail(eb, e, "meta put", ctx->key, k.mv_size);
    }
    return TORII_OK;
}

int torii_store_meta_put(struct torii_store *st, const char *key, const char *val,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    bool locked = false;
    size_t len = 0;
    struct store_meta_ctx ctx = {.key = key, .val = val};

    if (st == NULL || val == NULL || store_cstr_id_check(key, &len) != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "store: meta put: bad key or value");
        goto out;
    }
    TORII_TRY(store_write_lock(st, eb));
    locked = true;
    TORII_TRY(store_write_run(st, store_meta_body, &ctx, eb));
out:
    if (locked) {
        store_write_unlock(st);
    }
    return rc;
}

/* ---- health ---- */

int torii_store_stat_get(struct torii_store *st, struct torii_store_stat *out)
{
    int rc = TORII_OK;
    MDB_envinfo info;
    MDB_stat ms;

    TORII_ENSURE(st != NULL && out != NULL, TORII_EINVAL);
    /* Shared hold: the map size must not change under mdb_env_info. */
    store_read_enter(st);
    rc = store_env_info(st, &info, &ms);
    store_read_exit(st);
    TORII_TRY(rc);
    out->map_size = info.me_mapsize;
    out->max_map_size = st->max_map_size;
    out->used_bytes = ((size_t)info.me_last_pgno + 1) * ms.ms_psize;
    out->stale_readers_cleared = st->stale_readers_cleared;
out:
    return rc;
}

int torii_store_reader_check(struct torii_store *st, int *cleared)
{
    int dead = 0;
    int mrc;
    char tmp[128];

    if (st == NULL) {
        return TORII_EINVAL;
    }
    mrc = mdb_reader_check(st->env, &dead);
    if (mrc != 0) {
        torii_log(TORII_LOG_ERR, "store: reader check failed: %s",
                  torii_store__mdb_strerror(mrc, tmp, sizeof(tmp)));
        return TORII_ESTORE;
    }
    if (dead > 0) {
        torii_log(TORII_LOG_NOTICE, "store: cleared %d stale reader slot(s)", dead);
    }
    if (cleared != NULL) {
        *cleared = dead;
    }
    return TORII_OK;
}

/* ---- clear ---- */
static int store_clear_body(struct torii_store *st, MDB_txn *txn, void *vctx, int *mrc,
                            struct torii_errbuf *eb)
{
    const enum torii_store_bucket *b = vctx;
    int e = mdb_drop(txn, st->dbi[*b], 0);

    if (e != 0) {
        *mrc = e;
        return torii_store__mdb_fail(eb, e, "clear", store_bucket_names[*b],
                                     strlen(store_bucket_names[*b]));
    }
    return TORII_OK;
}

int torii_store_clear(struct torii_store *st, enum torii_store_bucket b, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (st == NULL || !store_bucket_ok(b)) {
        return torii_errf(eb, TORII_EINVAL, "store: clear: bad argument");
    }
    TORII_TRY(store_write_lock(st, eb));
    rc = store_write_run(st, store_clear_body, &b, eb);
    store_write_unlock(st);
out:
    return rc;
}
