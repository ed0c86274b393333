/* store.h - the durable source of truth: LMDB environment in the data dir holding records
 * (id -> JSON text + an opaque "aux" blob) in named buckets, plus small meta values.
 * The narrow interface (get, put/delete through apply, foreach, watch) is what callers see,
 * so another engine (etcd) can later sit beside LMDB without touching them.
 * Threads: any thread (internally locked). Writes are serialized; each torii_store_apply()
 * is one durable LMDB transaction (no MDB_NOSYNC), committed before watchers run and before
 * it returns. The map grows (doubling) when full; stale reader slots are cleared at open.
 * Ownership: records passed in are borrowed for the call; torii_store_get() returns malloc'd
 * copies the caller frees; records handed to iterator and watch callbacks are borrowed for
 * the duration of the callback only.
 * Files: the LMDB env lives directly in opts->dir (created 0700): <dir>/data.mdb and
 * <dir>/lock.mdb, mode 0600. Layout: one named DB per bucket ("certs", "serials", "acme",
 * "certidx"), key = id bytes (no NUL, 1..511 bytes), value = [u32 json_len,
 * little-endian][json][aux], where aux runs to the end of the value; plus DB "meta": key -> string
 * value (no NUL), holding "schema_version" = decimal TORII_STORE_SCHEMA_VERSION, written on first
 * open. */
#ifndef TORII_STORE_H
#define TORII_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "torii/err.h"

struct torii_store;

/** Buckets (LMDB named databases). */
enum torii_store_bucket {
    TORII_STORE_CERTS = 0, /* certificate entities: JSON + aux = TLS record (pki.h) */
    TORII_STORE_SERIALS,   /* "<issuer id>:<serial hex>" -> cert id (aux unused) */
    TORII_STORE_ACME,      /* ACME account and orders */
    /* certdb's compact index (certdb.h): id -> what start-up and the renewer read of a
     * certificate, derived from each TORII_STORE_CERTS write in the same transaction by
     * torii_store_opts.certidx; written otherwise only by torii_certdb_migrate. */
    TORII_STORE_CERTIDX,
    TORII_STORE_BUCKETS
};

#define TORII_STORE_SCHEMA_VERSION 1
/** Longest id or meta key in bytes (LMDB's default key size limit). */
#define TORII_STORE_ID_MAX 511
/** Most watchers one store accepts. */
#define TORII_STORE_WATCHERS_MAX 8

struct torii_kek_ring;
struct torii_store_rec;

/** Derive the TORII_STORE_CERTIDX value of a certificate record being written (json and aux
 * as given to the store; parsed: the op's torii_store_op.parsed, what rec->json parses to, or
 * NULL): *out malloc'd (the store frees it). TORII_OK, or TORII_ENOMEM. */
typedef int (*torii_store_derive_fn)(const struct torii_store_rec *rec, const void *parsed,
                                     unsigned char **out, size_t *out_len);

/** Meta key present while TORII_STORE_CERTIDX matches TORII_STORE_CERTS; a CERTS write by a
 * store opened without torii_store_opts.certidx removes it (and TORII_STORE_CERTIDX_CURSOR) in
 * the same transaction, so the index is rebuilt (torii_certdb_migrate) rather than trusted. */
#define TORII_STORE_CERTIDX_DONE "certidx_complete"
/** Meta key: the last id the index rebuild has done (resumable). */
#define TORII_STORE_CERTIDX_CURSOR "certidx_cursor"

struct torii_store_opts {
    const char *dir;         /* directory for the LMDB env; created 0700 if missing */
    size_t initial_map_size; /* 0 = 64 MiB */
    size_t max_map_size;     /* 0 = 64 GiB */
    /* Keys at rest (borrowed, outlives the store; NULL: none loaded): the KEK ring the
     * private keys held in this store are sealed with. The store never uses it; it travels
     * with the handle so that certdb seals every key it writes and every key user that is
     * given the store opens keys with the same ring (torii_store_kek). */
    const struct torii_kek_ring *kek;
    /* certdb's compact index (torii_certdb_idx_derive): every CERTS op also writes or deletes
     * the id's TORII_STORE_CERTIDX entry, in the same transaction. NULL: the index is marked
     * stale instead (TORII_STORE_CERTIDX_DONE). */
    torii_store_derive_fn certidx;
};

/** A record. id and json are not NUL-terminated (use id_len/json_len); id_len must be 1..511
 * (TORII_STORE_ID_MAX) with no NUL byte; json may be NULL only when json_len is 0; aux may be
 * NULL/0. json_len must fit in 32 bits. */
struct torii_store_rec {
    const char *id;
    size_t id_len;
    const char *json;
    size_t json_len;
    const unsigned char *aux;
    size_t aux_len;
};

enum torii_store_op_kind {
    TORII_STORE_PUT = 0, /* create or replace */
    TORII_STORE_CREATE,  /* fails the whole apply with TORII_EEXIST if id exists */
    TORII_STORE_REPLACE, /* fails the whole apply with TORII_ENOTFOUND if id is missing */
    TORII_STORE_DELETE,  /* fails the whole apply with TORII_ENOTFOUND if id is missing */
    /* Compare-and-swap replace: fails the whole apply with TORII_ENOTFOUND if id is missing
     * and with TORII_ECONFLICT if the JSON stored under id is not, byte for byte, the op's
     * expect_json (someone wrote it since the caller read it). Aux is not compared. Watchers
     * see it as TORII_STORE_REPLACE. */
    TORII_STORE_REPLACE_IF,
};

struct torii_store_op {
    enum torii_store_op_kind kind;
    enum torii_store_bucket bucket;
    struct torii_store_rec rec; /* for DELETE only id/id_len are read */
    /* REPLACE_IF only (other kinds ignore them): the JSON text the caller read, as
     * torii_store_get returned it. Borrowed for the call; expect_json must not be NULL
     * (expect_json_len may be 0). */
    const char *expect_json;
    size_t expect_json_len;
    /* Optional (NULL: none): what rec.json parses to, made by the writer that had it parsed
     * anyway (certdb: a jansson json_t object), so that watchers need not parse it again
     * (torii_store_watch_parsed). Borrowed for the call; must be equal to rec.json. */
    const void *parsed;
};

/** Open (creating if needed) the store; records the schema version on first open and fails
 * with TORII_EUNSUPPORTED if the stored version is newer than ours. */
int torii_store_open(const struct torii_store_opts *opts, struct torii_store **out,
                     struct torii_errbuf *eb) TORII_MUST_USE;
/** Close; NULL accepted. No call may be in flight. */
void torii_store_free(struct torii_store *st);
/** The KEK ring given in torii_store_opts.kek (NULL: none). Any thread. */
const struct torii_kek_ring *torii_store_kek(const struct torii_store *st);

/** Apply ops atomically in one durable transaction. On success, watchers are called once per
 * op, in order, before returning. On any failure nothing is changed and no watcher runs.
 * n == 0 is a no-op. If the map is full it is doubled (up to max_map_size) and the whole
 * transaction retried. Must not be called from a watcher or from inside a foreach callback
 * (TORII_EPERM: it would deadlock). Returns TORII_OK, TORII_EEXIST, TORII_ENOTFOUND,
 * TORII_ECONFLICT (a REPLACE_IF whose expected JSON no longer matches), TORII_ENOSPC (the
 * disk is full, ENOSPC/EDQUOT, or MDB_MAP_FULL at max_map_size), TORII_EIO (the disk failed,
 * EIO), TORII_ESTORE (any other store failure; eb says why), TORII_EINVAL, TORII_EPERM. */
int torii_store_apply(struct torii_store *st, const struct torii_store_op *ops, size_t n,
                      struct torii_errbuf *eb) TORII_MUST_USE;

/** torii_store_apply plus the meta value meta_key = meta_val written in the same durable
 * transaction (fleet mode records the last etcd revision applied with the records it
 * brought). n may be 0 (the meta value alone); meta_key NULL: torii_store_apply. Codes as
 * torii_store_apply. */
int torii_store_apply_meta(struct torii_store *st, const struct torii_store_op *ops, size_t n,
                           const char *meta_key, const char *meta_val, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Write-through of certificate writes (fleet mode, docs/fleet.md). When one is set, certdb
 * hands the ops of each commit (buckets CERTS and SERIALS) to commit() instead of
 * torii_store_apply: commit makes them durable in the fleet's source of truth (etcd), which
 * then brings them back into this store (torii_store_apply_meta from the fleet's watch
 * thread) before commit returns. commit returns torii_store_apply's codes, plus TORII_EAGAIN
 * when the source of truth cannot be reached (eb says why). Called from any writer thread. */
struct torii_store_remote {
    int (*commit)(void *ctx, const struct torii_store_op *ops, size_t n, struct torii_errbuf *eb);
    /* 1 when commit can currently reach the source of truth (readiness for writes). */
    int (*writable)(void *ctx);
    void *ctx;
};
/** Set (r copied; r->ctx borrowed until torii_store_free) or clear (NULL) the write-through.
 * Call before other threads write to the store. */
void torii_store_set_remote(struct torii_store *st, const struct torii_store_remote *r);
/** The write-through, or NULL in local mode. Any thread. */
const struct torii_store_remote *torii_store_remote_of(const struct torii_store *st);
/** 1 when certificate writes can currently succeed: always in local mode; in fleet mode when
 * the source of truth is reachable (/readyz). Any thread. */
int torii_store_writable(const struct torii_store *st);

/** Convenience wrappers around torii_store_apply with one op (kind REPLACE_IF needs an
 * expected value: use torii_store_apply; torii_store_put refuses it with TORII_EINVAL). */
int torii_store_put(struct torii_store *st, enum torii_store_bucket b,
                    const struct torii_store_rec *rec, enum torii_store_op_kind kind,
                    struct torii_errbuf *eb) TORII_MUST_USE;
int torii_store_delete(struct torii_store *st, enum torii_store_bucket b, const char *id,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/** Copy a record out. *json_out is NUL-terminated (len excludes the NUL); json_len, aux_out and
 * aux_len may be NULL if the caller does not want them. *aux_out is NULL when the record has no
 * aux. Outputs are written only on success; the caller frees them (aux may hold a private key:
 * wipe it before freeing). Returns TORII_OK, TORII_ENOTFOUND, TORII_ESTORE, TORII_EINVAL. */
int torii_store_get(struct torii_store *st, enum torii_store_bucket b, const char *id,
                    char **json_out, size_t *json_len, unsigned char **aux_out, size_t *aux_len)
    TORII_MUST_USE;

/** Iterator callback; return TORII_OK to go on, anything else stops and is returned. */
typedef int (*torii_store_iter_cb)(const struct torii_store_rec *rec, void *arg);

/** Call cb for each record of bucket b in id order (bytewise) inside one read transaction.
 * cb may read the store (get/count/foreach) but must not write to it. Returns TORII_OK, the
 * first non-OK value cb returned, TORII_ESTORE, TORII_EINVAL. */
int torii_store_foreach(struct torii_store *st, enum torii_store_bucket b, torii_store_iter_cb cb,
                        void *arg) TORII_MUST_USE;

/** torii_store_foreach from the first id >= from[0..from_len) (bytewise; from NULL or
 * from_len 0: the first record): a cursor over ids, for walks resumed batch after batch. */
int torii_store_foreach_from(struct torii_store *st, enum torii_store_bucket b, const char *from,
                             size_t from_len, torii_store_iter_cb cb, void *arg) TORII_MUST_USE;

/** Number of records in bucket b. Returns TORII_OK, TORII_ESTORE, TORII_EINVAL. */
int torii_store_count(struct torii_store *st, enum torii_store_bucket b, size_t *out)
    TORII_MUST_USE;

/** Change feed: called after each committed op (kind PUT/CREATE/REPLACE/DELETE; a
 * REPLACE_IF is reported as REPLACE) from the writing thread, serialized by the store's
 * write lock. For DELETE, json/aux are NULL. */
typedef void (*torii_store_watch_cb)(enum torii_store_op_kind kind, enum torii_store_bucket b,
                                     const struct torii_store_rec *rec, void *arg);
/** Inside a watch callback: the op's `parsed` (what rec->json parses to, as its writer
 * handed it; borrowed for the callback), or NULL (the watcher parses rec->json itself). NULL
 * outside a callback. The writing thread. */
const void *torii_store_watch_parsed(void);
/** Register a watcher (at most TORII_STORE_WATCHERS_MAX, else TORII_ETOOBIG). Call before other
 * threads use the store. A watcher may read the store but must not write to it (TORII_EPERM). */
int torii_store_watch(struct torii_store *st, torii_store_watch_cb cb, void *arg) TORII_MUST_USE;

/** Small string values in the meta database (e.g. "schema_version"). Keys are 1..511 bytes.
 * meta_get returns a malloc'd NUL-terminated copy (TORII_OK, TORII_ENOTFOUND, TORII_ESTORE,
 * TORII_EINVAL); meta_put is one durable write transaction, no watcher runs (TORII_OK,
 * TORII_ESTORE, TORII_EINVAL, TORII_EPERM as for apply). */
int torii_store_meta_get(struct torii_store *st, const char *key, char **val_out) TORII_MUST_USE;
int torii_store_meta_put(struct torii_store *st, const char *key, const char *val,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** Health numbers, for /metrics and the "store nearly full" alert. */
struct torii_store_stat {
    size_t map_size;           /* current map size in bytes */
    size_t max_map_size;       /* growth limit in bytes */
    size_t used_bytes;         /* high-water mark of pages in use, in bytes */
    int stale_readers_cleared; /* stale reader slots cleared by torii_store_open */
};
/** Fill *out. Returns TORII_OK, TORII_ESTORE, TORII_EINVAL. */
int torii_store_stat_get(struct torii_store *st, struct torii_store_stat *out) TORII_MUST_USE;

/** Clear reader slots left by dead processes (done at open; call periodically in long-lived
 * multi-process setups). *cleared (may be NULL) gets the count. Returns TORII_OK, TORII_ESTORE,
 * TORII_EINVAL. */
int torii_store_reader_check(struct torii_store *st, int *cleared) TORII_MUST_USE;

/** Remove every record of bucket b in one durable transaction; no watcher runs (certdb's
 * index rebuild). TORII_OK, TORII_EINVAL, the codes of torii_store_apply. */
int torii_store_clear(struct torii_store *st, enum torii_store_bucket b, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Rewrite <dir>/data.mdb without its free pages (compact.c), replacing it atomically: bytes
 * of replaced or deleted records (e.g. keys before they were sealed) leave the file. Only
 * with no torii_store open on dir and the instance lock held (a command, not the daemon).
 * TORII_ESTORE (LMDB), TORII_EIO (file system), TORII_EINVAL; eb says why. */
int torii_store_compact(const char *dir, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
