/* table_int.h - the internals of the TLS table, shared by table.c (the hash tables, RCU
 * publication), table_bulk.c (the first load of an empty table, in hash order) and
 * table_cert.c (building a certificate from its record, its materials at first use); no
 * other file includes it. table.c and table_bulk.c -> table_cert.c, never the other way.
 * Threads: torii_tls__cert_new on the writer; the writer helpers under the table's lock; the
 * rest as in table.h.
 * Ownership: a certificate is reference counted (torii_tls_cert_ref/unref, table.h). */
#ifndef TORII_TABLE_INT_H
#define TORII_TABLE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "torii/mem.h"
#include "torii/table.h"

struct tls_parsed;
struct cert_mat;

/* One allocation per certificate: the fixed part, then data[] = id NUL, the normalized names
 * (sorted bytewise, unique, each NUL-terminated), then the issuer+serial key. The certificate
 * is also the node of the ids table (ht, rcu, pub_hash) and of the serials table (sht,
 * spub_hash): a replace always installs a new certificate object, so a certificate is in
 * each table at most once, and the ids table's reference keeps both nodes alive. */
struct torii_tls_cert {
    struct torii_sni_attr attr; /* immutable */
    atomic_size_t refs;
    _Atomic(struct tls_parsed *) parsed; /* set once, by compare-exchange */
    struct cert_mat *mat;                /* eager materials; NULL: read through src */
    const struct torii_table_src *src;   /* the table's (borrowed); NULL with mat */
    struct cds_lfht_node ht;             /* ids table */
    struct rcu_head rcu;                 /* the ids table's reference, dropped after a grace */
    atomic_ulong pub_hash;               /* ids table: stored last (release) */
    struct cds_lfht_node sht;            /* serials table (when skey_len > 0) */
    atomic_ulong spub_hash;              /* serials table: stored last (release) */
    atomic_int parse_failed;
    uint16_t id_len;
    uint16_t n_names;
    uint16_t skey_off; /* offset of the issuer+serial key in data */
    uint8_t skey_len;  /* 0: not in the issuer+serial index */
    char data[];
};

/** A certificate (one reference, *out) from its TLS record: eager (record and key copied)
 * when src is NULL or has no load function, or when key has a text; otherwise only what
 * selection needs, the materials read through src at first use. TORII_EINVAL (eb) for an
 * over-long id, an empty or malformed record. */
int torii_tls__cert_new(const struct torii_table_src *src, const char *id, const unsigned char *rec,
                        size_t rec_len, const struct torii_pki_key_src *key,
                        struct torii_tls_cert **out, struct torii_errbuf *eb) TORII_MUST_USE;

static inline int torii_tls__slice_cmp(struct torii_slice x, struct torii_slice y)
{
    size_t n = x.len < y.len ? x.len : y.len;
    int c = memcmp(x.ptr, y.ptr, n);
    if (c != 0) {
        return c;
    }
    return (x.len > y.len) - (x.len < y.len);
}

static inline int torii_tls__slice_eq(struct torii_slice a, struct torii_slice b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static inline struct torii_slice torii_tls__cert_skey(const struct torii_tls_cert *c)
{
    return (struct torii_slice){c->data + c->skey_off, c->skey_len};
}

/* The sorted names of a certificate, walked in order (cost: their length). */
struct torii_tls__name_it {
    const char *next;
    size_t left;
    struct torii_slice cur; /* len 0: past the end */
};

static inline void torii_tls__name_step(struct torii_tls__name_it *it)
{
    if (it->left == 0) {
        it->cur = (struct torii_slice){NULL, 0};
        return;
    }
    it->cur = (struct torii_slice){it->next, strlen(it->next)};
    it->next += it->cur.len + 1;
    it->left--;
}

/** c may be NULL (no names). */
static inline void torii_tls__name_first(struct torii_tls__name_it *it,
                                         const struct torii_tls_cert *c)
{
    it->left = c != NULL ? c->n_names : 0;
    it->next = c != NULL ? c->data + c->id_len + 1 : NULL;
    torii_tls__name_step(it);
}

/* ---- the table itself (table.c; table_bulk.c fills an empty one) ---- */

struct name_node {
    struct cds_lfht_node ht;
    struct rcu_head rcu;
    atomic_ulong pub_hash; /* stored last (release): publishes the fields below */
    uint32_t key_len;
    uint32_t n;
    const struct torii_sni_attr *cands[]; /* &cert->attr, one reference each; then the key */
};

struct default_id {
    struct rcu_head rcu;
    unsigned long hash;
    size_t len;
    char id[];
};

struct torii_table {
    struct torii_table_src src; /* load == NULL: no source (every update passes its materials) */
    struct cds_lfht *names;
    struct cds_lfht *ids;
    struct cds_lfht *serials;
    _Atomic(struct default_id *) def;
    pthread_mutex_t lock; /* serializes writers */
    atomic_size_t count;
    uint64_t seed;
    /* Writer side (t->lock): nodes in names and serials, and the bucket counts each table was
     * last grown to by table_fit (ids: count). */
    size_t n_names;
    size_t n_serials;
    unsigned long names_size;
    unsigned long ids_size;
    unsigned long serials_size;
    size_t reserved; /* torii_table_reserve: until the table holds that many */
};

struct lookup_key {
    const char *ptr;
    size_t len;
    unsigned long hash;
};

static inline unsigned long torii_tls__table_hash(const struct torii_table *t, const char *s,
                                                  size_t len)
{
    return (unsigned long)torii_hash64(t->seed, s, len);
}

/** A name node for key k with room for n candidates (none yet, not published). */
struct name_node *torii_tls__name_node_new(const struct lookup_key *k, size_t n);
/** Register the calling thread with liburcu for one writer call when it is not a reader;
 * returns what torii_tls__writer_leave needs. */
int torii_tls__writer_enter(void);
void torii_tls__writer_leave(int temporary);
/** Grow ht at once to at least one bucket per two of `nodes` (never below `reserved`); under
 * t->lock, registered, outside any read-side section. */
void torii_tls__table_fit(struct cds_lfht *ht, size_t nodes, unsigned long *size, size_t reserved);

#endif
