/* certdb.h - the one owner of "a certificate in the store": reading, preparing and writing
 * certificate entities (TORII_STORE_CERTS: entity JSON + TLS record) together with their
 * serial index entries (TORII_STORE_SERIALS). Admin, lifecycle, the PKI bootstrap (and later
 * ACME and the fleet) read and write certificates only through it; `store` stays the generic
 * bucket layer below, and torii_store_apply on these two buckets is called only from here.
 *
 * Writes: every write goes through a batch (torii_certdb_batch_*): each queued entity is
 * prepared from ONE parse of its chain and key (torii_cert_prepare: normalize, enrich, TLS
 * record, serial), and a commit is ONE durable torii_store_apply holding the entities and
 * their index entries. A batch commits all or nothing (TORII_CERTDB_ATOMIC) or reports per
 * item (TORII_CERTDB_PER_ITEM: the `_bulk` semantics - a failed item never stops the others;
 * items normally still land in one transaction, and only when a concurrent writer made that
 * transaction fail are the items applied one by one). Replaces are compare-and-swap on the
 * exact JSON text the caller read; the read-modify-write retry loop is torii_certdb_update.
 *
 * Serial index: key "<issuer id>:<serial hex>" -> the ids of the certificates under it
 * (issuer = caRef, else for a self-signed certificate metadata.nextCertificate (an [UNTIL
 * EXPIRATION] copy keeps its original's key, so a key names it and its copies) or its own id),
 * plus key "<serial hex>" -> ids, for lookups that know no issuer. A value is the ids,
 * '\n'-separated, in the order they were written (the newest writer last); an id leaves a
 * key's list when its certificate is deleted or replaced by one with another key, and the key
 * goes when its list is empty. Serial hex is lower-case without leading zeros
 * (torii_pki_cert_serial_hex). Lookups are exact gets, never scans
 * (torii_certdb_serial_lookup, torii_certdb_serial_lookup_all).
 *
 * Threads: any thread may call any function (the store serializes writes; concurrent writers
 * of one id are resolved by the compare-and-swap). A batch belongs to the thread that made it.
 * No function may be called from a store watcher or a torii_certdb_foreach callback.
 * Ownership: entities passed in are borrowed (prepare modifies them in place); entries and
 * batches returned are owned by the caller (clear/free them: they hold private keys and are
 * wiped). */
#ifndef TORII_CERTDB_H
#define TORII_CERTDB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/pki.h"
#include "torii/store.h"

/** A stored entity as read. */
struct torii_certdb_entry {
    json_t *ent;        /* the parsed entity (a JSON object) */
    char *text;         /* the exact stored JSON, NUL-terminated: the compare-and-swap value */
    size_t len;         /* strlen(text) */
    unsigned char *aux; /* its TLS record; NULL unless TORII_CERTDB_WITH_AUX */
    size_t aux_len;
};

#define TORII_CERTDB_WITH_AUX 1u

/** Wipe and free what e holds; e is zeroed. NULL accepted. */
void torii_certdb_entry_clear(struct torii_certdb_entry *e);

/** Read entity id. TORII_ENOTFOUND ("entity not found"; also an id the store cannot hold),
 * TORII_ESTORE (the stored JSON is not an object, or the store failed; eb says which). */
int torii_certdb_get(struct torii_store *st, const char *id, unsigned flags,
                     struct torii_certdb_entry *out, struct torii_errbuf *eb) TORII_MUST_USE;

/** The entity only (the one "load entity by id"); codes as torii_certdb_get. */
int torii_certdb_load(struct torii_store *st, const char *id, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** torii_store_foreach over the certificates (id order, one read transaction). */
int torii_certdb_foreach(struct torii_store *st, torii_store_iter_cb cb, void *arg) TORII_MUST_USE;

/** The id of the certificate with serial serial_hex (any case, leading zeros allowed) issued
 * by issuer_id (NULL: any issuer) into *id_out (malloc'd); of several, the newest writer.
 * TORII_ENOTFOUND, TORII_EINVAL (not hex), TORII_ESTORE. One store get. */
int torii_certdb_serial_lookup(struct torii_store *st, const char *issuer_id,
                               const char *serial_hex, char **id_out) TORII_MUST_USE;

/** Every id under (issuer_id or NULL, serial_hex) into *ids_out (torii_certdb_ids_free),
 * oldest writer first, *n_out >= 1. Codes as torii_certdb_serial_lookup. One store get. */
int torii_certdb_serial_lookup_all(struct torii_store *st, const char *issuer_id,
                                   const char *serial_hex, char ***ids_out, size_t *n_out)
    TORII_MUST_USE;
/** Free what torii_certdb_serial_lookup_all returned; NULL accepted. */
void torii_certdb_ids_free(char **ids, size_t n);

/* ---- batches ---- */

struct torii_certdb_batch;

enum torii_certdb_commit_mode {
    TORII_CERTDB_ATOMIC = 0, /* every item or none; the commit returns the failure */
    TORII_CERTDB_PER_ITEM,   /* each item succeeds or fails alone (torii_certdb_batch_item_rc) */
};

/** A new empty batch over st (never NULL). */
struct torii_certdb_batch *torii_certdb_batch_new(struct torii_store *st);
/** Free (wiping what it holds); NULL accepted. */
void torii_certdb_batch_free(struct torii_certdb_batch *b);
/** Items queued so far; the next queued item gets this index. */
size_t torii_certdb_batch_size(const struct torii_certdb_batch *b);
/** The store b writes to (borrowed). */
struct torii_store *torii_certdb_batch_store(const struct torii_certdb_batch *b);

/** torii_certdb_get as the batch will leave the store: what earlier items of b queued
 * shadows the store. */
int torii_certdb_batch_get(struct torii_certdb_batch *b, const char *id, unsigned flags,
                           struct torii_certdb_entry *out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Queue the creation of entity (prepared in place as o says; its "id" must be set, by the
 * caller or by normalize). TORII_EEXIST ("entity already exists") when the id exists (in the
 * store or earlier in b); TORII_EINVAL from the preparation. *flags (may be NULL) gets the
 * record's TORII_CERTREC_* flags. Nothing is queued on failure. */
int torii_certdb_batch_create(struct torii_certdb_batch *b, json_t *entity,
                              const struct torii_cert_prep_opts *o, uint32_t *flags,
                              struct torii_errbuf *eb) TORII_MUST_USE;

/* A creation in two steps, so that the preparation (the costly part: parsing the chain and
 * key, checking the signatures) of many entities can run on several threads while queueing
 * stays in order on the batch's thread (the `_bulk` pool). */
struct torii_certdb_prep;

/** The preparation step of torii_certdb_batch_create: entity prepared in place as o says (its
 * "id" must be set, by the caller or by normalize), with its stored JSON text, TLS record and
 * serial index keys. Reads nothing from the store (st only lends its KEK ring), so any
 * thread may call it, concurrently with other preparations and with the batch's thread, as
 * long as no two threads touch the same entity. TORII_EINVAL (eb says why). *out (only on
 * success) is the caller's: torii_certdb_batch_create_prepared, or torii_certdb_prep_free. */
int torii_certdb_prepare(const struct torii_store *st, json_t *entity,
                         const struct torii_cert_prep_opts *o, struct torii_certdb_prep **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;
/** Free (wiping what it holds); NULL accepted. */
void torii_certdb_prep_free(struct torii_certdb_prep *p);

/** The queueing step: *p (taken, whatever the result; set to NULL) queued into b as
 * torii_certdb_batch_create queues it: TORII_EEXIST ("entity already exists") when the id
 * exists in the store or earlier in b. The batch's thread only. */
int torii_certdb_batch_create_prepared(struct torii_certdb_batch *b, struct torii_certdb_prep **p,
                                       uint32_t *flags, struct torii_errbuf *eb) TORII_MUST_USE;

/** Queue the replacement of what `read` returned (torii_certdb_batch_get, with aux when o
 * keeps the key) by entity, only if the stored JSON is still read->text at commit
 * (TORII_ECONFLICT then). entity's "id" must equal the read one. */
int torii_certdb_batch_replace(struct torii_certdb_batch *b, const struct torii_certdb_entry *read,
                               json_t *entity, const struct torii_cert_prep_opts *o,
                               uint32_t *flags, struct torii_errbuf *eb) TORII_MUST_USE;

/** Queue a create-or-replace of an entity whose TLS record was built by the caller (bulk
 * loaders such as torii-fill that derive records without torii_cert_prepare). The record must
 * decode (TORII_EINVAL otherwise); the entity is stored as given; its index entries are
 * added (an entry of a replaced version is left as it is). */
int torii_certdb_batch_put_record(struct torii_certdb_batch *b, const json_t *entity,
                                  const unsigned char *aux, size_t aux_len, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Queue the deletion of id (its index entries go with it). TORII_ENOTFOUND when it does not
 * exist. An entity whose JSON does not parse is still deleted. */
int torii_certdb_batch_delete(struct torii_certdb_batch *b, const char *id, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Commit: one durable transaction (see the file comment for the modes). ATOMIC returns
 * TORII_OK, TORII_EEXIST, TORII_ENOTFOUND, TORII_ECONFLICT (eb says "changed concurrently"),
 * TORII_ENOSPC, TORII_EIO, TORII_ESTORE. PER_ITEM returns TORII_OK once every item has its own
 * result. A batch is committed once. */
int torii_certdb_batch_commit(struct torii_certdb_batch *b, enum torii_certdb_commit_mode mode,
                              struct torii_errbuf *eb) TORII_MUST_USE;

/** Result of item i after a commit; *msg (may be NULL) gets its message (borrowed from b). */
int torii_certdb_batch_item_rc(const struct torii_certdb_batch *b, size_t i, const char **msg);

/* ---- read-modify-write ---- */

/** Fills b from what was read (queue a replace of `read`, maybe creates); queueing nothing
 * writes nothing. A non-OK return ends the update with that code (never retried). */
typedef int (*torii_certdb_edit_fn)(struct torii_certdb_batch *b,
                                    const struct torii_certdb_entry *read, unsigned attempt,
                                    void *arg, struct torii_errbuf *eb);

struct torii_certdb_rmw {
    unsigned attempts; /* 1..: how many reads a concurrent write may cost; 0 counts as 1 */
    /* Test seam (NULL in production): called after edit, just before the commit. */
    void (*between)(const char *id, unsigned attempt, void *arg);
    void *between_arg;
};

/** Read id (with its record), let edit fill a batch, commit it ATOMIC; when the commit finds
 * the entity changed since the read (TORII_ECONFLICT) and attempts remain, start again from
 * the new content. Returns edit's failure, the commit's, or TORII_ENOTFOUND. */
int torii_certdb_update(struct torii_store *st, const char *id, const struct torii_certdb_rmw *rmw,
                        torii_certdb_edit_fn edit, void *arg, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Single-item conveniences (a batch of one, ATOMIC). */
int torii_certdb_create(struct torii_store *st, json_t *entity,
                        const struct torii_cert_prep_opts *o, uint32_t *flags,
                        struct torii_errbuf *eb) TORII_MUST_USE;
int torii_certdb_delete(struct torii_store *st, const char *id, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Create every entity of the JSON array `entities` (already enriched by the PKI) in one
 * ATOMIC batch: all stored, with their TLS records and serial index entries, or none.
 * TORII_EEXIST, TORII_EINVAL (a record does not build), TORII_ESTORE; eb says why. */
int torii_certdb_create_all(struct torii_store *st, const json_t *entities, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- store format ---- */

/** Bring a store written by an older torii up to date (idempotent, one scan the first time):
 * the compact index built when it is missing or stale (torii_certdb_idx_rebuild); index
 * entries missing for stored certificates (the serial-only keys, written since
 * certdb schema 2) are added, and every certificate's id joins its keys' id lists (schema 3:
 * schema 2 kept only the newest writer of a key). Call once after torii_store_open, before other
 * threads use the store. TORII_OK, or the store's failure. */
int torii_certdb_migrate(struct torii_store *st, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- compact index (compact.c) ---- */

/* What the index keeps of the entity (xflags). */
#define TORII_CERTDB_IDX_JSON       (1u << 0)  /* the entity JSON parsed (an object) */
#define TORII_CERTDB_IDX_VALID      (1u << 1)  /* "valid": true */
#define TORII_CERTDB_IDX_REVOKED    (1u << 2)  /* "revoked": true */
#define TORII_CERTDB_IDX_EXPOSED    (1u << 3)  /* "exposed": true */
#define TORII_CERTDB_IDX_CA         (1u << 4)  /* "ca": true */
#define TORII_CERTDB_IDX_AUTORENEW  (1u << 5)  /* "autoRenew": true */
#define TORII_CERTDB_IDX_ACME       (1u << 6)  /* "letsEncrypt": true */
#define TORII_CERTDB_IDX_COPY       (1u << 7)  /* metadata.untilExpiration (true or "true") */
#define TORII_CERTDB_IDX_MD_EXPIRED (1u << 8)  /* metadata.expired */
#define TORII_CERTDB_IDX_MD_ALMOST  (1u << 9)  /* metadata.almostExpired */
#define TORII_CERTDB_IDX_HAS_FROM   (1u << 10) /* "from" is an integer */
#define TORII_CERTDB_IDX_HAS_TO     (1u << 11) /* "to" is an integer */

/** One certificate's index entry, decoded; every pointer borrows from the stored value. */
struct torii_certdb_idx {
    const char *id; /* not NUL-terminated */
    size_t id_len;
    unsigned xflags; /* TORII_CERTDB_IDX_* */
    int64_t from_ms; /* the entity's "from" and "to" (0 when not integers) */
    int64_t to_ms;
    const char *domain; /* the entity's "domain" (not NUL-terminated; may be empty) */
    size_t domain_len;
    /* The TLS record's summary (torii_certrec_summary; the whole record for a version 1
     * record); NULL/0 when the record does not decode. */
    const unsigned char *sum;
    size_t sum_len;
};

/** The store's derive function (torii_store_opts.certidx): the index value of a certificate
 * record; parsed (borrowed; NULL: rec->json is parsed here) is what rec->json parses to, a
 * json_t handed on by the writer (torii_store_op.parsed). Any thread; pure. */
int torii_certdb_idx_derive(const struct torii_store_rec *rec, const void *parsed,
                            unsigned char **out, size_t *out_len) TORII_MUST_USE;
/** Decode an index value (stored under id). TORII_EINVAL when malformed. */
int torii_certdb_idx_decode(const char *id, size_t id_len, const unsigned char *v, size_t len,
                            struct torii_certdb_idx *out) TORII_MUST_USE;
/** 1 when the store's index matches its certificates (TORII_STORE_CERTIDX_DONE). */
int torii_certdb_idx_complete(struct torii_store *st);

typedef int (*torii_certdb_idx_cb)(const struct torii_certdb_idx *ix, void *arg);
/** cb for every certificate's index entry, in id order, in one read transaction (cb may read
 * the store, not write it). A store whose index is not complete is served by deriving each
 * entry from the certificates themselves (one full scan: correct, not fast). Returns
 * TORII_OK, cb's first non-OK value, or the store's failure. */
int torii_certdb_idx_foreach(struct torii_store *st, torii_certdb_idx_cb cb, void *arg)
    TORII_MUST_USE;

/** Build the index of a store that has none or a stale one (torii_certdb_migrate calls it):
 * one scan of the certificates, a transaction per 4,096 with the cursor in meta
 * (TORII_STORE_CERTIDX_CURSOR: an interrupted rebuild resumes there), logged; nothing to do
 * when complete. Only before other threads write the store. TORII_OK or the store's codes. */
int torii_certdb_idx_rebuild(struct torii_store *st, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- keys at rest over the whole store (rekey.c) ---- */

struct torii_certdb_rekey_opts {
    const struct torii_kek_ring *kek; /* borrowed; must have a current KEK */
    int rewrap;                       /* 0: migrate (seal clear keys); 1: rotate (also re-seal) */
    size_t batch;                     /* records per durable transaction, >= 1 */
    /* Test seam (NULL in production): called after each committed batch (1, 2, ...). */
    void (*after_batch)(unsigned batches, void *arg);
    void *after_batch_arg;
};

/** Seal every certificate's private key under o->kek's current KEK (migrate), and with
 * o->rewrap re-seal those sealed under a previous KEK of the ring (rotate); drop the key copy
 * of TLS records written before keys were stored once. A cursor over ids, o->batch records
 * per durable transaction (compare-and-swap on the JSON read): resumable after a crash, and a
 * record already sealed under the current KEK is not rewritten. *done = records rewritten.
 * Only with no other writer of the store (the `torii keys` command). TORII_EINVAL (no current
 * KEK, a malformed record), torii_kek_open's codes (a key that does not open: eb names the
 * record and KEK ids), the store's. */
int torii_certdb_rekey(struct torii_store *st, const struct torii_certdb_rekey_opts *o,
                       size_t *done, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
