/* table.c - the RCU certificate table (see table.h for the contract).
 *
 * Two liburcu lock-free hash tables (default flavour, urcu-memb):
 *   names: lower-cased name ("a.example.com" or "*.example.com") -> struct name_node, an
 *          immutable array of the candidate certificates carrying that name;
 *   ids:   entity id -> the certificate currently installed under that id (the certificate
 *          object is its own node, table_int.h). Writers use it to find a certificate's
 *          previous names; readers use it to resolve the default certificate, which is kept
 *          by id, and torii_table_get.
 *   serials: SHA-256(issuer name DER) || serialNumber DER -> the certificates whose leaf has
 *          that issuer and serial, each its own node (duplicate keys, read with
 *          cds_lfht_next_duplicate). Readers use it to find the store entity of a presented
 *          client certificate (revocation).
 * Nodes never change after publication. A writer (serialized by t->lock) builds a fresh node
 * for every name the changed certificate had or now has (copy on write), swaps it in with
 * cds_lfht_replace / add / del, and hands the old node to call_rcu, which drops its
 * certificate references after a grace period. Every node holds one reference on each
 * certificate it lists, so a certificate lives as long as any node or any handshake holds it.
 * The certificates themselves (building from a record, parsing at first use) are table_cert.c.
 *
 * TSan cannot see the ordering liburcu provides (it is not instrumented), so publication is
 * modelled with a C11 release store / acquire load of each node's hash, and grace periods with
 * __tsan_release / __tsan_acquire on one token (see grace_*).
 */
#include "torii/table.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

#include "table_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define TABLE_MIN_BUCKETS 64

#if defined(__SANITIZE_THREAD__)
#define TABLE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TABLE_TSAN 1
#endif
#endif

#ifdef TABLE_TSAN
#include <sanitizer/tsan_interface.h>

/* Sync token for TSan only (any thread; never read or written). Readers release it when they
 * leave a read-side section and writers before they queue a callback; callbacks and code after
 * a grace period acquire it: exactly the ordering a grace period guarantees. */
static char grace_token;

static void grace_release(void)
{
    __tsan_release(&grace_token);
}

static void grace_acquire(void)
{
    __tsan_acquire(&grace_token);
}
#else
static void grace_release(void)
{
}

static void grace_acquire(void)
{
}
#endif

/* Per thread: this thread is registered with liburcu through this module. */
static _Thread_local int reader_registered;

static struct torii_tls_cert *cert_of(const struct torii_sni_attr *a)
{
    return caa_container_of(a, struct torii_tls_cert, attr);
}

static const char *node_key(const struct name_node *n)
{
    return (const char *)&n->cands[n->n];
}

/* ---- nodes ---- */

static int name_match(struct cds_lfht_node *node, const void *key)
{
    const struct name_node *n = caa_container_of(node, struct name_node, ht);
    const struct lookup_key *k = key;

    if (atomic_load_explicit(&n->pub_hash, memory_order_acquire) != k->hash) {
        return 0;
    }
    return n->key_len == k->len && memcmp(node_key(n), k->ptr, k->len) == 0;
}

static int serial_match(struct cds_lfht_node *node, const void *key)
{
    const struct torii_tls_cert *c = caa_container_of(node, struct torii_tls_cert, sht);
    const struct lookup_key *k = key;
    struct torii_slice sk;

    if (atomic_load_explicit(&c->spub_hash, memory_order_acquire) != k->hash) {
        return 0;
    }
    sk = torii_tls__cert_skey(c);
    return sk.len == k->len && memcmp(sk.ptr, k->ptr, k->len) == 0;
}

static int id_match(struct cds_lfht_node *node, const void *key)
{
    const struct torii_tls_cert *c = caa_container_of(node, struct torii_tls_cert, ht);
    const struct lookup_key *k = key;

    if (atomic_load_explicit(&c->pub_hash, memory_order_acquire) != k->hash) {
        return 0;
    }
    return c->id_len == k->len && memcmp(c->data, k->ptr, k->len) == 0;
}

struct name_node *torii_tls__name_node_new(const struct lookup_key *k, size_t n)
{
    /* The key goes after the n candidates: a node is published only once it holds all n. */
    struct name_node *node =
        torii_xmalloc(sizeof(*node) + n * sizeof(const struct torii_sni_attr *) + k->len);
    cds_lfht_node_init(&node->ht);
    atomic_init(&node->pub_hash, 0);
    memcpy((char *)&node->cands[n], k->ptr, k->len);
    node->key_len = (uint32_t)k->len;
    node->n = 0;
    return node;
}

static void name_node_free(struct name_node *node)
{
    for (size_t i = 0; i < node->n; i++) {
        torii_tls_cert_unref(cert_of(node->cands[i]));
    }
    free(node);
}

static void name_node_free_cb(struct rcu_head *head)
{
    grace_acquire();
    name_node_free(caa_container_of(head, struct name_node, rcu));
}

/* The ids table's reference on a certificate, dropped after the grace period. */
static void id_unref_cb(struct rcu_head *head)
{
    grace_acquire();
    torii_tls_cert_unref(caa_container_of(head, struct torii_tls_cert, rcu));
}

static void default_free_cb(struct rcu_head *head)
{
    grace_acquire();
    free(caa_container_of(head, struct default_id, rcu));
}

static void defer_free(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
    grace_release();
    call_rcu(head, fn);
}

/* ---- writers ---- */

/* liburcu requires writers (cds_lfht_add/del/replace, call_rcu) to be registered threads;
 * register a thread for the duration of one call when it is not a reader already. */
int torii_tls__writer_enter(void)
{
    if (reader_registered) {
        return 0;
    }
    rcu_register_thread();
    reader_registered = 1;
    return 1;
}

void torii_tls__writer_leave(int temporary)
{
    if (temporary) {
        rcu_unregister_thread();
        reader_registered = 0;
    }
}

/* Rebuild the node of one key of ht (the names table): drop `gone` (may be
 * NULL), add `added` (may be NULL). Called under t->lock, inside rcu_read_lock. */
static void key_apply(struct torii_table *t, struct cds_lfht *ht, struct torii_slice name,
                      const struct torii_tls_cert *gone, struct torii_tls_cert *added)
{
    size_t *nodes = &t->n_names;
    struct lookup_key k = {name.ptr, name.len, torii_tls__table_hash(t, name.ptr, name.len)};
    struct cds_lfht_iter iter;
    struct name_node *old = NULL;
    struct name_node *node = NULL;
    size_t keep = 0;

    cds_lfht_lookup(ht, k.hash, name_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        old = caa_container_of(hn, struct name_node, ht);
        for (size_t i = 0; i < old->n; i++) {
            keep += cert_of(old->cands[i]) != gone;
        }
    }
    if (keep == 0 && added == NULL) {
        if (old != NULL) {
            TORII_ASSERT(cds_lfht_del(ht, &old->ht) == 0);
            defer_free(&old->rcu, name_node_free_cb);
            (*nodes)--;
        }
        return;
    }
    node = torii_tls__name_node_new(&k, keep + (added != NULL));
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        struct torii_tls_cert *c = cert_of(old->cands[i]);
        if (c != gone) {
            torii_tls_cert_ref(c);
            node->cands[node->n++] = &c->attr;
        }
    }
    if (added != NULL) {
        torii_tls_cert_ref(added);
        node->cands[node->n++] = &added->attr;
    }
    atomic_store_explicit(&node->pub_hash, k.hash, memory_order_release);
    if (old != NULL) {
        TORII_ASSERT(cds_lfht_replace(ht, &iter, k.hash, name_match, &k, &node->ht) == 0);
        defer_free(&old->rcu, name_node_free_cb);
    } else {
        cds_lfht_add(ht, k.hash, &node->ht);
        (*nodes)++;
    }
}

/* Walk the sorted name lists of the old and new certificate together, so each name is
 * rebuilt exactly once: cost O(old names + new names). */
static void names_apply(struct torii_table *t, const struct torii_tls_cert *oc,
                        struct torii_tls_cert *nc)
{
    struct torii_tls__name_it i;
    struct torii_tls__name_it j;

    torii_tls__name_first(&i, oc);
    torii_tls__name_first(&j, nc);
    while (i.cur.len > 0 || j.cur.len > 0) {
        int cmp;
        if (i.cur.len == 0) {
            cmp = 1;
        } else if (j.cur.len == 0) {
            cmp = -1;
        } else {
            cmp = torii_tls__slice_cmp(i.cur, j.cur);
        }
        if (cmp < 0) {
            key_apply(t, t->names, i.cur, oc, NULL);
            torii_tls__name_step(&i);
        } else if (cmp > 0) {
            key_apply(t, t->names, j.cur, NULL, nc);
            torii_tls__name_step(&j);
        } else {
            key_apply(t, t->names, j.cur, oc, nc);
            torii_tls__name_step(&i);
            torii_tls__name_step(&j);
        }
    }
}

/* The issuer+serial index: at most one key per certificate. */
static void serial_apply(struct torii_table *t, struct torii_tls_cert *oc,
                         struct torii_tls_cert *nc)
{
    /* The new one first: a reader never finds neither (a revoked certificate replaced by
     * a revoked copy stays visible throughout). The old node goes with the certificate, which
     * the ids table keeps alive until after the grace period. */
    if (nc != NULL && nc->skey_len > 0) {
        struct torii_slice nk = torii_tls__cert_skey(nc);
        unsigned long h = torii_tls__table_hash(t, nk.ptr, nk.len);
        atomic_store_explicit(&nc->spub_hash, h, memory_order_release);
        cds_lfht_add(t->serials, h, &nc->sht);
        t->n_serials++;
    }
    if (oc != NULL && oc->skey_len > 0) {
        TORII_ASSERT(cds_lfht_del(t->serials, &oc->sht) == 0);
        t->n_serials--;
    }
}

/* Install nc (may be NULL: remove) under its id, replacing `old` (may be NULL). Takes nc's
 * reference (the ids table's). Called under t->lock, inside rcu_read_lock, with iter on old. */
static void id_apply(struct torii_table *t, const struct lookup_key *k, struct cds_lfht_iter *iter,
                     struct torii_tls_cert *old, struct torii_tls_cert *nc)
{
    if (nc != NULL) {
        atomic_store_explicit(&nc->pub_hash, k->hash, memory_order_release);
        if (old != NULL) {
            TORII_ASSERT(cds_lfht_replace(t->ids, iter, k->hash, id_match, k, &nc->ht) == 0);
        } else {
            cds_lfht_add(t->ids, k->hash, &nc->ht);
            atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
        }
    } else if (old != NULL) {
        TORII_ASSERT(cds_lfht_del(t->ids, &old->ht) == 0);
        atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
    }
    if (old != NULL) {
        defer_free(&old->rcu, id_unref_cb);
    }
}

/* liburcu grows a table lazily: from its call_rcu thread, and only once chains average 8
 * nodes. A bulk load (start-up: 100,000 certificates in a few hundred ms) outruns that, and
 * when the call_rcu thread is short of CPU the lookups walk chains of thousands (start-up
 * took 0.4 s to 10 s for the same store). So the writer grows each table itself, at once,
 * to at least one bucket per two nodes; shrinking stays liburcu's (lazy, on deletes). Called
 * under t->lock, registered, outside any read-side section (cds_lfht_resize's rules). */
void torii_tls__table_fit(struct cds_lfht *ht, size_t nodes, unsigned long *size, size_t reserved)
{
    unsigned long want = *size;

    if (nodes < reserved) {
        nodes = reserved; /* torii_table_reserve: never below what a bulk load announced */
    }
    if (nodes < want / 8 && want > TABLE_MIN_BUCKETS) {
        /* Far below the mark (liburcu may have shrunk it): lower the mark, grow again later. */
        want /= 2;
    }
    *size = want;
    if (nodes <= 2 * want) {
        return;
    }
    while (2 * want < nodes) {
        want *= 2;
    }
    cds_lfht_resize(ht, want);
    *size = want;
}

int torii_table_update(struct torii_table *t, const char *id, const unsigned char *rec,
                       size_t rec_len, const struct torii_pki_key_src *key, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_tls_cert *nc = NULL;
    struct torii_tls_cert *old = NULL;
    struct cds_lfht_iter iter;
    struct cds_lfht_node *hn = NULL;
    struct lookup_key k = {0};
    int temporary = 0;

    TORII_ENSURE(t != NULL && id != NULL && id[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "tls: table update needs an id"));
    if (rec != NULL) {
        TORII_TRY(torii_tls__cert_new(&t->src, id, rec, rec_len, key, &nc, eb));
    }
    k.ptr = id;
    k.len = strlen(id);
    k.hash = torii_tls__table_hash(t, id, k.len);

    temporary = torii_tls__writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    rcu_read_lock();
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        old = caa_container_of(hn, struct torii_tls_cert, ht);
    }
    names_apply(t, old, nc);
    serial_apply(t, old, nc);
    id_apply(t, &k, &iter, old, nc);
    nc = NULL; /* the id node holds our reference now */
    rcu_read_unlock();
    if (atomic_load_explicit(&t->count, memory_order_relaxed) >= t->reserved) {
        t->reserved = 0; /* reached: the usual rule from now on */
    }
    torii_tls__table_fit(t->names, t->n_names, &t->names_size, t->reserved);
    torii_tls__table_fit(t->ids, atomic_load_explicit(&t->count, memory_order_relaxed),
                         &t->ids_size, t->reserved);
    torii_tls__table_fit(t->serials, t->n_serials, &t->serials_size, t->reserved);
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    torii_tls__writer_leave(temporary);
out:
    torii_tls_cert_unref(nc);
    return rc;
}

void torii_table_reserve(struct torii_table *t, size_t n)
{
    int temporary;

    if (t == NULL) {
        return;
    }
    temporary = torii_tls__writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    t->reserved = n;
    torii_tls__table_fit(t->names, t->n_names, &t->names_size, n);
    torii_tls__table_fit(t->ids, atomic_load_explicit(&t->count, memory_order_relaxed),
                         &t->ids_size, n);
    torii_tls__table_fit(t->serials, t->n_serials, &t->serials_size, n);
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    torii_tls__writer_leave(temporary);
}

void torii_table_set_default(struct torii_table *t, const char *id)
{
    struct default_id *d = NULL;
    struct default_id *old = NULL;
    int temporary;

    if (t == NULL) {
        return;
    }
    if (id != NULL && id[0] != '\0') {
        size_t len = strlen(id);
        d = torii_xmalloc(sizeof(*d) + len + 1);
        memcpy(d->id, id, len + 1);
        d->len = len;
        d->hash = torii_tls__table_hash(t, id, len);
    }
    temporary = torii_tls__writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    old = atomic_exchange_explicit(&t->def, d, memory_order_acq_rel);
    if (old != NULL) {
        defer_free(&old->rcu, default_free_cb);
    }
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    torii_tls__writer_leave(temporary);
}

/* ---- readers ---- */

void torii_table_reader_register(void)
{
    if (!reader_registered) {
        rcu_register_thread();
        reader_registered = 1;
    }
}

void torii_table_reader_unregister(void)
{
    if (reader_registered) {
        rcu_unregister_thread();
        reader_registered = 0;
    }
}

/* Inside rcu_read_lock. */
static struct torii_tls_cert *lookup_name(struct torii_table *t, const char *key, size_t len,
                                          const struct torii_sni_query *q)
{
    struct lookup_key k = {key, len, torii_tls__table_hash(t, key, len)};
    struct cds_lfht_iter iter;

    cds_lfht_lookup(t->names, k.hash, name_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn == NULL) {
        return NULL;
    }
    const struct name_node *node = caa_container_of(hn, struct name_node, ht);
    int i = torii_sni_pick(node->cands, node->n, q);
    return i >= 0 ? cert_of(node->cands[i]) : NULL;
}

/* Inside rcu_read_lock. */
static struct torii_tls_cert *lookup_default(struct torii_table *t, const struct torii_sni_query *q)
{
    const struct default_id *d = atomic_load_explicit(&t->def, memory_order_acquire);
    struct cds_lfht_iter iter;

    if (d == NULL) {
        return NULL;
    }
    struct lookup_key k = {d->id, d->len, d->hash};
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn == NULL) {
        return NULL;
    }
    struct torii_tls_cert *c = caa_container_of(hn, struct torii_tls_cert, ht);
    const struct torii_sni_attr *a = &c->attr;
    return torii_sni_pick(&a, 1, q) == 0 ? c : NULL;
}

int torii_table_select(struct torii_table *t, const struct torii_sni_query *q,
                       struct torii_tls_cert **out, enum torii_sni_match *match)
{
    char name[TORII_SNI_NAME_MAX + 1];
    char wild[TORII_SNI_KEY_MAX + 1];
    struct torii_tls_cert *c = NULL;
    enum torii_sni_match m = TORII_SNI_DEFAULT;
    int n = TORII_EINVAL;

    if (t == NULL || q == NULL || out == NULL) {
        return TORII_EINVAL;
    }
    if (q->name != NULL) {
        n = torii_sni_name_normalize(q->name, q->name_len, name);
    }
    rcu_read_lock();
    if (n > 0) {
        c = lookup_name(t, name, (size_t)n, q);
        m = TORII_SNI_EXACT;
        if (c == NULL) {
            int w = torii_sni_wildcard_key(name, (size_t)n, wild);
            if (w > 0) {
                c = lookup_name(t, wild, (size_t)w, q);
                m = TORII_SNI_WILDCARD;
            }
        }
    }
    if (c == NULL) {
        c = lookup_default(t, q);
        m = TORII_SNI_DEFAULT;
    }
    if (c != NULL) {
        /* Safe inside the read-side section: the node we found holds a reference until at
         * least the end of the grace period. */
        torii_tls_cert_ref(c);
    }
    grace_release();
    rcu_read_unlock();
    if (c == NULL) {
        return TORII_ENOTFOUND;
    }
    *out = c;
    if (match != NULL) {
        *match = m;
    }
    return TORII_OK;
}

int torii_table_get(struct torii_table *t, const char *id, struct torii_tls_cert **out)
{
    struct lookup_key k;
    struct cds_lfht_iter iter;
    struct torii_tls_cert *c = NULL;

    if (t == NULL || id == NULL || out == NULL || id[0] == '\0') {
        return TORII_EINVAL;
    }
    k.ptr = id;
    k.len = strlen(id);
    k.hash = torii_tls__table_hash(t, id, k.len);
    rcu_read_lock();
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        c = caa_container_of(hn, struct torii_tls_cert, ht);
        torii_tls_cert_ref(c); /* the node holds one until after the grace period */
    }
    grace_release();
    rcu_read_unlock();
    if (c == NULL) {
        return TORII_ENOTFOUND;
    }
    *out = c;
    return TORII_OK;
}

int torii_table_issuer_serial(struct torii_table *t, const X509 *x, int *revoked)
{
    unsigned char key[TORII_TABLE_SERIAL_KEY_MAX];
    struct lookup_key k;
    struct cds_lfht_iter iter;
    size_t len = 0;
    int count = 0;
    int rev = 0;
    int rc;

    if (t == NULL || x == NULL) {
        return TORII_EINVAL;
    }
    rc = torii_table_serial_key(x, key, &len);
    if (rc == TORII_OK) {
        k.ptr = (const char *)key;
        k.len = len;
        k.hash = torii_tls__table_hash(t, k.ptr, len);
        rcu_read_lock();
        cds_lfht_lookup(t->serials, k.hash, serial_match, &k, &iter);
        for (struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
             hn != NULL && count < INT_MAX; hn = cds_lfht_iter_get_node(&iter)) {
            const struct torii_tls_cert *c = caa_container_of(hn, struct torii_tls_cert, sht);
            rev |= (c->attr.flags & TORII_CERTREC_REVOKED) != 0;
            count++;
            cds_lfht_next_duplicate(t->serials, serial_match, &k, &iter);
        }
        grace_release();
        rcu_read_unlock();
    } else if (rc != TORII_ENOTFOUND) {
        return rc;
    }
    if (revoked != NULL) {
        *revoked = rev;
    }
    return count;
}

/* ---- life cycle ---- */

int torii_table_new(struct torii_table **out)
{
    return torii_table_new_src(NULL, out);
}

int torii_table_new_src(const struct torii_table_src *src, struct torii_table **out)
{
    int rc = TORII_OK;
    struct torii_table *t = torii_xcalloc(1, sizeof(*t));

    if (src != NULL) {
        t->src = *src;
    }
    const int flags = CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING;

    atomic_init(&t->def, NULL);
    atomic_init(&t->count, 0);
    TORII_ENSURE(pthread_mutex_init(&t->lock, NULL) == 0, TORII_ENOMEM);
    TORII_TRY(torii_rand_bytes(&t->seed, sizeof(t->seed)));
    t->names = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->ids = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->serials = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->names_size = TABLE_MIN_BUCKETS;
    t->ids_size = TABLE_MIN_BUCKETS;
    t->serials_size = TABLE_MIN_BUCKETS;
    TORII_ENSURE(t->names != NULL && t->ids != NULL && t->serials != NULL, TORII_ENOMEM);
    *out = t;
    t = NULL;
out:
    if (t != NULL) {
        if (t->names != NULL) {
            (void)cds_lfht_destroy(t->names, NULL);
        }
        if (t->ids != NULL) {
            (void)cds_lfht_destroy(t->ids, NULL);
        }
        if (t->serials != NULL) {
            (void)cds_lfht_destroy(t->serials, NULL);
        }
        (void)pthread_mutex_destroy(&t->lock);
        free(t);
    }
    return rc;
}

void torii_table_free(struct torii_table *t)
{
    struct cds_lfht_iter iter;
    struct name_node *nn;
    struct cds_lfht_node *hn;
    int temporary;

    if (t == NULL) {
        return;
    }
    temporary = torii_tls__writer_enter();
    rcu_read_lock();
    cds_lfht_for_each_entry(t->names, &iter, nn, ht)
    {
        TORII_ASSERT(cds_lfht_del(t->names, &nn->ht) == 0);
        defer_free(&nn->rcu, name_node_free_cb);
    }
    /* Node-level walks: the certificate's nodes are not at offset 0, and the _entry form
     * computes the container of the final NULL. */
    cds_lfht_for_each(t->serials, &iter, hn)
    {
        TORII_ASSERT(cds_lfht_del(t->serials, hn) == 0); /* freed with its id node */
    }
    cds_lfht_for_each(t->ids, &iter, hn)
    {
        struct torii_tls_cert *c = caa_container_of(hn, struct torii_tls_cert, ht);
        TORII_ASSERT(cds_lfht_del(t->ids, hn) == 0);
        defer_free(&c->rcu, id_unref_cb);
    }
    rcu_read_unlock();
    /* Wait for the grace period and run every callback queued so far (ours included), so no
     * node outlives the table. */
    synchronize_rcu();
    rcu_barrier();
    grace_acquire();
    torii_tls__writer_leave(temporary);
    free(atomic_load_explicit(&t->def, memory_order_acquire));
    if (cds_lfht_destroy(t->names, NULL) != 0 || cds_lfht_destroy(t->ids, NULL) != 0
        || cds_lfht_destroy(t->serials, NULL) != 0) {
        torii_log(TORII_LOG_ERR, "tls: %s: cds_lfht_destroy failed", __func__);
    }
    (void)pthread_mutex_destroy(&t->lock);
    free(t);
}

size_t torii_table_size(struct torii_table *t)
{
    return t != NULL ? atomic_load_explicit(&t->count, memory_order_relaxed) : 0;
}
