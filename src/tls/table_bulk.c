/* table_bulk.c - the first load of an empty certificate table (table.h, torii_table_bulk_*):
 * certificates are built one by one without publishing, then each hash table is filled in
 * one pass, in the order liburcu keeps its nodes (bit-reversed hash: a split-ordered list).
 * Each insertion then walks only nodes it has just written (in cache), where inserting in
 * store order walks cold nodes for every certificate: at a million certificates that walk
 * was most of the start-up. The tables are sized from the counts first (no resize), the ids
 * come from the caller once each (a repeated id: the last one wins, as with updates), and the
 * candidates of a name keep the order the certificates were added in, as torii_table_update
 * gives them (torii_sni_pick keeps the first of equals).
 * Threads: one loader; the table's writer lock is held from begin to end, so other writers
 * wait and readers see nothing of the load until end publishes it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "table_int.h"
#include "torii/log.h"
#include "torii/mem.h"

#define BULK_RADIX_BITS 11
#define BULK_RADIX      (1u << BULK_RADIX_BITS)
#define BULK_CHUNK      4096       /* insertions per read-side section */
#define BULK_HINT_MAX   (1u << 24) /* a larger hint starts small and grows */

struct torii_table_bulk {
    struct torii_table *t;
    struct torii_tls_cert **certs; /* in the order added; NULL: dropped (a repeated id) */
    size_t n;
    size_t cap;
    size_t n_names; /* names over all certificates */
    int temporary;
};

/* One key to insert: its hash (sort key: the hash bit-reversed), its bytes, its certificate
 * and that one's index in certs. */
struct bulk_item {
    unsigned long rev;
    unsigned long hash;
    const char *ptr;
    struct torii_tls_cert *c;
    uint32_t len;
    uint32_t idx;
};

static unsigned long bulk_bitrev(unsigned long v)
{
    uint64_t x = (uint64_t)v;

    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    x = ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
    x = __builtin_bswap64(x);
    return (unsigned long)(x >> (64 - 8 * sizeof(unsigned long)));
}

/* One stable counting pass by the BULK_RADIX_BITS bits of rev at shift, from src to dst. */
static void bulk_pass(const struct bulk_item *src, struct bulk_item *dst, size_t n, unsigned shift,
                      size_t *count)
{
    size_t sum = 0;

    memset(count, 0, BULK_RADIX * sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        count[(src[i].rev >> shift) & (BULK_RADIX - 1)]++;
    }
    for (size_t d = 0; d < BULK_RADIX; d++) {
        size_t c = count[d];
        count[d] = sum;
        sum += c;
    }
    for (size_t i = 0; i < n; i++) {
        dst[count[(src[i].rev >> shift) & (BULK_RADIX - 1)]++] = src[i];
    }
}

/* Sort items by rev, stably (tmp: room for n items): two counting passes by the top
 * 2 * BULK_RADIX_BITS bits (small digit tables: the scatter stays in cache), then an
 * insertion sort, which has little left to do (runs of equal top bits are short: there are
 * about as many such values as items). */
static void bulk_sort(struct bulk_item *items, struct bulk_item *tmp, size_t n)
{
    const unsigned top = 8 * sizeof(unsigned long);
    size_t *count = torii_xcalloc(BULK_RADIX, sizeof(size_t));

    bulk_pass(items, tmp, n, top - 2 * BULK_RADIX_BITS, count);
    bulk_pass(tmp, items, n, top - BULK_RADIX_BITS, count);
    free(count);
    for (size_t i = 1; i < n; i++) {
        struct bulk_item x = items[i];
        size_t j = i;
        while (j > 0 && items[j - 1].rev > x.rev) {
            items[j] = items[j - 1];
            j--;
        }
        items[j] = x;
    }
}

static struct bulk_item bulk_item(const struct torii_table_bulk *b, const char *p, size_t len,
                                  size_t idx)
{
    unsigned long h = torii_tls__table_hash(b->t, p, len);

    return (struct bulk_item){bulk_bitrev(h), h, p, b->certs[idx], (uint32_t)len, (uint32_t)idx};
}

/* The passes below visit the certificates in hash order, that is at random over a large heap:
 * the items a few places ahead are fetched while the current one is inserted. */
#define BULK_AHEAD 12

static void bulk_prefetch(const struct bulk_item *items, size_t n, size_t i)
{
    if (i + BULK_AHEAD < n) {
        __builtin_prefetch(items[i + BULK_AHEAD].c, 1);
        __builtin_prefetch(items[i + BULK_AHEAD].ptr, 0);
    }
}

static int bulk_item_eq(const struct bulk_item *a, const struct bulk_item *b)
{
    return a->hash == b->hash && a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

/* Inside a read-side section: leave it and enter again every BULK_CHUNK insertions, so a long
 * load does not hold back other threads' grace periods. */
static void bulk_tick(size_t i)
{
    if (i % BULK_CHUNK == BULK_CHUNK - 1) {
        rcu_read_unlock();
        rcu_read_lock();
    }
}

/* Drop every certificate whose id comes again later (the last one added wins). items sorted:
 * equal ids are in one run of equal hashes, in the order added. */
static void bulk_ids_dedup(struct torii_table_bulk *b, struct bulk_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n && items[j].rev == items[i].rev; j++) {
            if (bulk_item_eq(&items[i], &items[j])) {
                torii_tls_cert_unref(items[i].c); /* never published */
                b->certs[items[i].idx] = NULL;
                items[i].c = NULL;
                break;
            }
        }
    }
}

/* The ids table: each certificate is its own node (the table's reference is the one
 * torii_tls__cert_new gave). */
static void bulk_ids(struct torii_table_bulk *b, struct bulk_item *items, struct bulk_item *tmp)
{
    struct torii_table *t = b->t;
    size_t n = 0;
    size_t added = 0;

    for (size_t i = 0; i < b->n; i++) {
        items[n++] = bulk_item(b, b->certs[i]->data, b->certs[i]->id_len, i);
    }
    bulk_sort(items, tmp, n);
    bulk_ids_dedup(b, items, n);
    torii_tls__table_fit(t->ids, n, &t->ids_size, 0);
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        struct torii_tls_cert *c = items[i].c;
        bulk_prefetch(items, n, i);
        if (c == NULL) {
            continue;
        }
        atomic_store_explicit(&c->pub_hash, items[i].hash, memory_order_release);
        cds_lfht_add(t->ids, items[i].hash, &c->ht);
        bulk_tick(added++);
    }
    rcu_read_unlock();
    atomic_store_explicit(&t->count, added, memory_order_relaxed);
}

/* One name node for the items of [from, end) equal to items[from] (a run of one hash), the
 * candidates in the order added; the items used are marked (idx UINT32_MAX). */
static void bulk_name_node(struct torii_table_bulk *b, struct bulk_item *items, size_t from,
                           size_t end)
{
    struct torii_table *t = b->t;
    struct bulk_item key = items[from];
    struct lookup_key k = {key.ptr, key.len, key.hash};
    size_t m = 0;
    struct name_node *node;

    for (size_t j = from; j < end; j++) {
        m += j == from || (items[j].idx != UINT32_MAX && bulk_item_eq(&items[j], &key));
    }
    node = torii_tls__name_node_new(&k, m);
    for (size_t j = from; j < end; j++) {
        if (j == from || (items[j].idx != UINT32_MAX && bulk_item_eq(&items[j], &key))) {
            /* the node's reference was taken in bulk_names */
            node->cands[node->n++] = &items[j].c->attr;
            items[j].idx = UINT32_MAX;
        }
    }
    atomic_store_explicit(&node->pub_hash, k.hash, memory_order_release);
    cds_lfht_add(t->names, k.hash, &node->ht);
    t->n_names++;
}

/* The names table: one node per distinct name, listing every certificate that carries it. */
static void bulk_names(struct torii_table_bulk *b, struct bulk_item *items, struct bulk_item *tmp)
{
    struct torii_table *t = b->t;
    struct torii_tls__name_it it;
    size_t n = 0;

    for (size_t i = 0; i < b->n; i++) {
        if (b->certs[i] == NULL) {
            continue;
        }
        /* one reference per name node, taken here, in the order the certificates lie */
        atomic_fetch_add_explicit(&b->certs[i]->refs, b->certs[i]->n_names, memory_order_relaxed);
        for (torii_tls__name_first(&it, b->certs[i]); it.cur.len > 0; torii_tls__name_step(&it)) {
            items[n++] = bulk_item(b, it.cur.ptr, it.cur.len, i);
        }
    }
    bulk_sort(items, tmp, n);
    torii_tls__table_fit(t->names, n, &t->names_size, 0);
    rcu_read_lock();
    for (size_t i = 0, end = 0; i < n; i++) {
        while (end < n && items[end].rev == items[i].rev) {
            end++; /* [i, end): the run of items[i]'s hash */
        }
        bulk_prefetch(items, n, i);
        if (items[i].idx != UINT32_MAX) {
            bulk_name_node(b, items, i, end);
            bulk_tick(t->n_names);
        }
    }
    rcu_read_unlock();
}

/* The issuer+serial table: each certificate with a key is its own node (duplicates allowed). */
static void bulk_serials(struct torii_table_bulk *b, struct bulk_item *items, struct bulk_item *tmp)
{
    struct torii_table *t = b->t;
    size_t n = 0;

    for (size_t i = 0; i < b->n; i++) {
        if (b->certs[i] != NULL && b->certs[i]->skey_len > 0) {
            struct torii_slice sk = torii_tls__cert_skey(b->certs[i]);
            items[n++] = bulk_item(b, sk.ptr, sk.len, i);
        }
    }
    bulk_sort(items, tmp, n);
    torii_tls__table_fit(t->serials, n, &t->serials_size, 0);
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        struct torii_tls_cert *c = items[i].c;
        bulk_prefetch(items, n, i);
        atomic_store_explicit(&c->spub_hash, items[i].hash, memory_order_release);
        cds_lfht_add(t->serials, items[i].hash, &c->sht);
        t->n_serials++;
        bulk_tick(i);
    }
    rcu_read_unlock();
}

int torii_table_bulk_begin(struct torii_table *t, size_t hint, struct torii_table_bulk **out)
{
    struct torii_table_bulk *b;
    int temporary;

    if (t == NULL || out == NULL) {
        return TORII_EINVAL;
    }
    temporary = torii_tls__writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    if (atomic_load_explicit(&t->count, memory_order_relaxed) != 0 || t->n_names != 0) {
        TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
        torii_tls__writer_leave(temporary);
        return TORII_EEXIST;
    }
    b = torii_xcalloc(1, sizeof(*b));
    b->t = t;
    b->temporary = temporary;
    b->cap = hint > 0 && hint < BULK_HINT_MAX ? hint : 1024;
    b->certs = torii_xmalloc(b->cap * sizeof(struct torii_tls_cert *));
    *out = b;
    return TORII_OK;
}

int torii_table_bulk_add(struct torii_table_bulk *b, const char *id, const unsigned char *rec,
                         size_t rec_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_tls_cert *c = NULL;

    TORII_ENSURE(b != NULL && id != NULL && id[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "tls: table load needs an id"));
    TORII_ENSURE(b->n < UINT32_MAX - 1,
                 torii_errf(eb, TORII_ETOOBIG, "tls: table load: too many certificates"));
    TORII_TRY(torii_tls__cert_new(&b->t->src, id, rec, rec_len, NULL, &c, eb));
    if (b->n == b->cap) {
        b->cap *= 2;
        b->certs = torii_xrealloc(b->certs, b->cap * sizeof(struct torii_tls_cert *));
    }
    b->certs[b->n++] = c;
    b->n_names += c->n_names;
out:
    return rc;
}

size_t torii_table_bulk_end(struct torii_table_bulk *b)
{
    struct torii_table *t;
    size_t cap;
    struct bulk_item *items;
    struct bulk_item *tmp;
    size_t count;

    if (b == NULL) {
        return 0;
    }
    t = b->t;
    cap = b->n > b->n_names ? b->n : b->n_names;
    items = torii_xmalloc((cap + 1) * sizeof(*items));
    tmp = torii_xmalloc((cap + 1) * sizeof(*tmp));
    bulk_ids(b, items, tmp);
    bulk_names(b, items, tmp);
    bulk_serials(b, items, tmp);
    free(items);
    free(tmp);
    count = atomic_load_explicit(&t->count, memory_order_relaxed);
    t->reserved = 0;
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    torii_tls__writer_leave(b->temporary);
    free(b->certs);
    free(b);
    return count;
}
