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
 * Files: <dir>/store.mdb (data.mdb, lock.mdb inside), mode 0600. */
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
    TORII_STORE_BUCKETS
};

#define TORII_STORE_SCHEMA_VERSION 1

struct torii_store_opts {
    const char *dir;         /* directory for the LMDB env; created 0700 if missing */
    size_t initial_map_size; /* 0 = 64 MiB */
    size_t max_map_size;     /* 0 = 64 GiB */
};

/** A record. json is not NUL-terminated (use json_len); aux may be NULL/0. */
struct torii_store_rec {
    const char *id;
    size_t id_len;
    const char *json;
    size_t json_len;
    const unsigned char *aux;
    size_t aux_len;
};

enum torii_store_op_kind {
    TORII_STORE_PUT = 0,  /* create or replace */
    TORII_STORE_CREATE,   /* fails the whole apply with TORII_EEXIST if id exists */
    TORII_STORE_REPLACE,  /* fails the whole apply with TORII_ENOTFOUND if id is missing */
    TORII_STORE_DELETE,   /* fails the whole apply with TORII_ENOTFOUND if id is missing */
};

struct torii_store_op {
    enum torii_store_op_kind kind;
    enum torii_store_bucket bucket;
    struct torii_store_rec rec; /* for DELETE only id/id_len are read */
};

/** Open (creating if needed) the store; records the schema version on first open and fails
 * with TORII_EUNSUPPORTED if the stored version is newer than ours. */
int torii_store_open(const struct torii_store_opts *opts, struct torii_store **out,
                     struct torii_errbuf *eb) TORII_MUST_USE;
/** Close; NULL accepted. No call may be in flight. */
void torii_store_free(struct torii_store *st);

/** Apply ops atomically in one durable transaction. On success, watchers are called once per
 * op, in order, before returning. Returns TORII_OK, TORII_EEXIST, TORII_ENOTFOUND,
 * TORII_ESTORE (eb says why), TORII_EINVAL. */
int torii_store_apply(struct torii_store *st, const struct torii_store_op *ops, size_t n,
                      struct torii_errbuf *eb) TORII_MUST_USE;

/** Convenience wrappers around torii_store_apply with one op. */
int torii_store_put(struct torii_store *st, enum torii_store_bucket b,
                    const struct torii_store_rec *rec, enum torii_store_op_kind kind,
                    struct torii_errbuf *eb) TORII_MUST_USE;
int torii_store_delete(struct torii_store *st, enum torii_store_bucket b, const char *id,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/** Copy a record out. *json_out is NUL-terminated (len excludes the NUL); aux_out may be NULL
 * if the caller does not want it. Returns TORII_OK, TORII_ENOTFOUND, TORII_ESTORE. */
int torii_store_get(struct torii_store *st, enum torii_store_bucket b, const char *id,
                    char **json_out, size_t *json_len, unsigned char **aux_out, size_t *aux_len)
    TORII_MUST_USE;

/** Iterator callback; return TORII_OK to go on, anything else stops and is returned. */
typedef int (*torii_store_iter_cb)(const struct torii_store_rec *rec, void *arg);

/** Call cb for each record of bucket b in id order inside one read transaction. */
int torii_store_foreach(struct torii_store *st, enum torii_store_bucket b, torii_store_iter_cb cb,
                        void *arg) TORII_MUST_USE;

/** Number of records in bucket b. */
int torii_store_count(struct torii_store *st, enum torii_store_bucket b, size_t *out) TORII_MUST_USE;

/** Change feed: called after each committed op (kind PUT/CREATE/REPLACE/DELETE) from the
 * writing thread, serialized by the store's write lock. For DELETE, json/aux are NULL. */
typedef void (*torii_store_watch_cb)(enum torii_store_op_kind kind, enum torii_store_bucket b,
                                     const struct torii_store_rec *rec, void *arg);
/** Register a watcher (at most 8). Call before other threads use the store. */
int torii_store_watch(struct torii_store *st, torii_store_watch_cb cb, void *arg) TORII_MUST_USE;

/** Small string values in the meta database (e.g. "schema_version"). */
int torii_store_meta_get(struct torii_store *st, const char *key, char **val_out) TORII_MUST_USE;
int torii_store_meta_put(struct torii_store *st, const char *key, const char *val,
                         struct torii_errbuf *eb) TORII_MUST_USE;

#endif
