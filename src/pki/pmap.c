/* pmap.c - persistent hash array mapped trie (see pmap.h).
 *
 * A node has up to 32 slots, indexed by 5 bits of the hash per level (bitmap + popcount, so
 * only present slots take room); a slot holds a leaf or a child node (leafmap tells which).
 * Past the 64 hash bits (level PMAP_LEVELS) a node is a collision list: every slot a leaf,
 * searched by key. Writers go top-down: each node on the path is made writable first (kept
 * when its refcount is 1, else copied, the copy taking a reference on every slot), so a node
 * reachable from a published root is never written. A removal that leaves a child with a
 * single leaf pulls that leaf up, keeping the trie shallow. */
#include "pmap.h"

#include <stdlib.h>
#include <string.h>

#include "torii/err.h"
#include "torii/mem.h"

#define PMAP_BITS   5
#define PMAP_LEVELS 13 /* 13 * 5 >= 64: below this, a collision list */

struct torii_pki__pmap_node {
    atomic_long ref;
    uint32_t bitmap;  /* present positions (a collision list: unused) */
    uint32_t leafmap; /* positions holding a leaf (a collision list: unused) */
    uint32_t n;       /* slots in use */
    uint32_t cap;     /* slots allocated */
    void *slot[];
};

void torii_pki__pmap_leaf_init(struct torii_pki__pmap_leaf *leaf, uint64_t hash,
                               const unsigned char *key, size_t key_len,
                               void (*free_fn)(struct torii_pki__pmap_leaf *leaf))
{
    atomic_init(&leaf->ref, 1);
    leaf->hash = hash;
    leaf->key = key;
    leaf->key_len = key_len;
    leaf->free_fn = free_fn;
}

static void pmap_leaf_ref(struct torii_pki__pmap_leaf *leaf)
{
    atomic_fetch_add_explicit(&leaf->ref, 1, memory_order_relaxed);
}

void torii_pki__pmap_leaf_unref(struct torii_pki__pmap_leaf *leaf)
{
    if (leaf != NULL && atomic_fetch_sub_explicit(&leaf->ref, 1, memory_order_acq_rel) == 1) {
        leaf->free_fn(leaf);
    }
}

static int pmap_key_eq(const struct torii_pki__pmap_leaf *l, uint64_t hash, const void *key,
                       size_t key_len)
{
    return l->hash == hash && l->key_len == key_len && memcmp(l->key, key, key_len) == 0;
}

static unsigned pmap_pos(uint64_t hash, unsigned level)
{
    return (unsigned)(hash >> (level * PMAP_BITS)) & 31u;
}

static unsigned pmap_index(uint32_t bitmap, uint32_t bit)
{
    return (unsigned)__builtin_popcount(bitmap & (bit - 1));
}

static struct torii_pki__pmap_node *pmap_node_alloc(uint32_t cap)
{
    struct torii_pki__pmap_node *n = torii_xmalloc(sizeof(*n) + cap * sizeof(void *));

    atomic_init(&n->ref, 1);
    n->bitmap = 0;
    n->leafmap = 0;
    n->n = 0;
    n->cap = cap;
    return n;
}

/* Is slot i of n (at level) a leaf? */
static int pmap_slot_is_leaf(const struct torii_pki__pmap_node *n, unsigned level, unsigned i)
{
    uint32_t m;

    if (level >= PMAP_LEVELS) {
        return 1;
    }
    /* The i-th set bit of bitmap. */
    m = n->bitmap;
    for (unsigned k = 0; k < i; k++) {
        m &= m - 1;
    }
    return (n->leafmap & (m & -m)) != 0;
}

/* Drop a reference on every slot of n and free it; the levels tell leaves from nodes. */
/* NOLINTNEXTLINE(misc-no-recursion): one frame per level, at most PMAP_LEVELS + 1 deep */
static void pmap_node_release(struct torii_pki__pmap_node *n, unsigned level)
{
    if (n == NULL || atomic_fetch_sub_explicit(&n->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (level >= PMAP_LEVELS) {
        for (uint32_t i = 0; i < n->n; i++) {
            torii_pki__pmap_leaf_unref(n->slot[i]);
        }
    } else {
        uint32_t m = n->bitmap;
        for (uint32_t i = 0; i < n->n; i++) {
            uint32_t bit = m & -m;
            m &= m - 1;
            if ((n->leafmap & bit) != 0) {
                torii_pki__pmap_leaf_unref(n->slot[i]);
            } else {
                pmap_node_release(n->slot[i], level + 1);
            }
        }
    }
    free(n);
}

void torii_pki__pmap_node_unref(struct torii_pki__pmap_node *root)
{
    pmap_node_release(root, 0);
}

/* n made writable by the caller, with room for `extra` more slots. The parent's reference on
 * a shared n moves to the copy. */
static struct torii_pki__pmap_node *pmap_writable(struct torii_pki__pmap_node *n, unsigned level,
                                                  uint32_t extra)
{
    struct torii_pki__pmap_node *c;

    if (atomic_load_explicit(&n->ref, memory_order_acquire) == 1) {
        if (n->n + extra > n->cap) {
            uint32_t cap = n->n + extra;
            n = torii_xrealloc(n, sizeof(*n) + cap * sizeof(void *));
            n->cap = cap;
        }
        return n;
    }
    c = pmap_node_alloc(n->n + extra);
    c->bitmap = n->bitmap;
    c->leafmap = n->leafmap;
    c->n = n->n;
    memcpy(c->slot, n->slot, n->n * sizeof(void *));
    for (uint32_t i = 0, m = n->bitmap; i < n->n; i++) {
        uint32_t bit = m & -m;
        m &= m - 1;
        if (level >= PMAP_LEVELS || (n->leafmap & bit) != 0) {
            pmap_leaf_ref(n->slot[i]);
        } else {
            atomic_fetch_add_explicit(&((struct torii_pki__pmap_node *)n->slot[i])->ref, 1,
                                      memory_order_relaxed);
        }
    }
    pmap_node_release(n, level); /* never the last reference: n was shared */
    return c;
}

static void pmap_slot_insert(struct torii_pki__pmap_node *n, unsigned idx, void *p)
{
    memmove(&n->slot[idx + 1], &n->slot[idx], (n->n - idx) * sizeof(void *));
    n->slot[idx] = p;
    n->n++;
}

static void pmap_slot_remove(struct torii_pki__pmap_node *n, unsigned idx)
{
    memmove(&n->slot[idx], &n->slot[idx + 1], (n->n - idx - 1) * sizeof(void *));
    n->n--;
}

/* Insert leaf into the subtree n (may be NULL) at level; returns the new subtree root. */
/* NOLINTNEXTLINE(misc-no-recursion): one frame per level, at most PMAP_LEVELS + 1 deep */
static struct torii_pki__pmap_node *pmap_insert(struct torii_pki__pmap_node *n, unsigned level,
                                                struct torii_pki__pmap_leaf *leaf,
                                                struct torii_pki__pmap_leaf **old)
{
    uint32_t bit;
    unsigned idx;

    if (n == NULL) {
        n = pmap_node_alloc(1);
        if (level < PMAP_LEVELS) {
            bit = 1u << pmap_pos(leaf->hash, level);
            n->bitmap = bit;
            n->leafmap = bit;
        }
        n->slot[0] = leaf;
        n->n = 1;
        return n;
    }
    if (level >= PMAP_LEVELS) {
        n = pmap_writable(n, level, 1);
        for (uint32_t i = 0; i < n->n; i++) {
            struct torii_pki__pmap_leaf *l = n->slot[i];
            if (pmap_key_eq(l, leaf->hash, leaf->key, leaf->key_len)) {
                *old = l;
                n->slot[i] = leaf;
                return n;
            }
        }
        n->slot[n->n++] = leaf;
        return n;
    }
    bit = 1u << pmap_pos(leaf->hash, level);
    idx = pmap_index(n->bitmap, bit);
    if ((n->bitmap & bit) == 0) {
        n = pmap_writable(n, level, 1);
        pmap_slot_insert(n, idx, leaf);
        n->bitmap |= bit;
        n->leafmap |= bit;
        return n;
    }
    n = pmap_writable(n, level, 0);
    if ((n->leafmap & bit) != 0) {
        struct torii_pki__pmap_leaf *l = n->slot[idx];
        struct torii_pki__pmap_leaf *none = NULL;
        struct torii_pki__pmap_node *child;

        if (pmap_key_eq(l, leaf->hash, leaf->key, leaf->key_len)) {
            *old = l;
            n->slot[idx] = leaf;
            return n;
        }
        /* Two keys on one position: push both one level down (n owns l's reference). */
        child = pmap_insert(NULL, level + 1, l, &none);
        child = pmap_insert(child, level + 1, leaf, &none);
        n->slot[idx] = child;
        n->leafmap &= ~bit;
        return n;
    }
    n->slot[idx] = pmap_insert(n->slot[idx], level + 1, leaf, old);
    return n;
}

/* Remove key from the subtree n, where it is known to be; returns the new subtree root (NULL
 * when it became empty). */
/* NOLINTNEXTLINE(misc-no-recursion): one frame per level, at most PMAP_LEVELS + 1 deep */
static struct torii_pki__pmap_node *pmap_remove(struct torii_pki__pmap_node *n, unsigned level,
                                                uint64_t hash, const void *key, size_t key_len,
                                                struct torii_pki__pmap_leaf **old)
{
    uint32_t bit;
    unsigned idx;

    n = pmap_writable(n, level, 0);
    if (level >= PMAP_LEVELS) {
        for (uint32_t i = 0; i < n->n; i++) {
            if (pmap_key_eq(n->slot[i], hash, key, key_len)) {
                *old = n->slot[i];
                pmap_slot_remove(n, i);
                break;
            }
        }
    } else {
        bit = 1u << pmap_pos(hash, level);
        idx = pmap_index(n->bitmap, bit);
        TORII_ASSERT((n->bitmap & bit) != 0);
        if ((n->leafmap & bit) != 0) {
            *old = n->slot[idx];
            pmap_slot_remove(n, idx);
            n->bitmap &= ~bit;
            n->leafmap &= ~bit;
        } else {
            struct torii_pki__pmap_node *child =
                pmap_remove(n->slot[idx], level + 1, hash, key, key_len, old);

            if (child == NULL) {
                pmap_slot_remove(n, idx);
                n->bitmap &= ~bit;
            } else if (child->n == 1 && pmap_slot_is_leaf(child, level + 1, 0)) {
                /* child is ours alone (just made writable): take its leaf, free it. */
                n->slot[idx] = child->slot[0];
                n->leafmap |= bit;
                free(child);
            } else {
                n->slot[idx] = child;
            }
        }
    }
    if (n->n == 0) {
        free(n);
        return NULL;
    }
    return n;
}

const struct torii_pki__pmap_leaf *torii_pki__pmap_get(const struct torii_pki__pmap_node *root,
                                                       uint64_t hash, const void *key,
                                                       size_t key_len)
{
    const struct torii_pki__pmap_node *n = root;

    for (unsigned level = 0; n != NULL; level++) {
        uint32_t bit;
        unsigned idx;

        if (level >= PMAP_LEVELS) {
            for (uint32_t i = 0; i < n->n; i++) {
                if (pmap_key_eq(n->slot[i], hash, key, key_len)) {
                    return n->slot[i];
                }
            }
            return NULL;
        }
        bit = 1u << pmap_pos(hash, level);
        if ((n->bitmap & bit) == 0) {
            return NULL;
        }
        idx = pmap_index(n->bitmap, bit);
        if ((n->leafmap & bit) != 0) {
            const struct torii_pki__pmap_leaf *l = n->slot[idx];
            return pmap_key_eq(l, hash, key, key_len) ? l : NULL;
        }
        n = n->slot[idx];
    }
    return NULL;
}

struct torii_pki__pmap_leaf *torii_pki__pmap_put(struct torii_pki__pmap *m,
                                                 struct torii_pki__pmap_leaf *leaf_owned)
{
    struct torii_pki__pmap_leaf *old = NULL;

    m->root = pmap_insert(m->root, 0, leaf_owned, &old);
    if (old == NULL) {
        m->count++;
    }
    return old;
}

struct torii_pki__pmap_leaf *torii_pki__pmap_del(struct torii_pki__pmap *m, uint64_t hash,
                                                 const void *key, size_t key_len)
{
    struct torii_pki__pmap_leaf *old = NULL;

    if (torii_pki__pmap_get(m->root, hash, key, key_len) == NULL) {
        return NULL;
    }
    m->root = pmap_remove(m->root, 0, hash, key, key_len, &old);
    TORII_ASSERT(old != NULL);
    m->count--;
    return old;
}

struct torii_pki__pmap_node *torii_pki__pmap_share(const struct torii_pki__pmap *m)
{
    if (m->root != NULL) {
        atomic_fetch_add_explicit(&m->root->ref, 1, memory_order_relaxed);
    }
    return m->root;
}

void torii_pki__pmap_clear(struct torii_pki__pmap *m)
{
    pmap_node_release(m->root, 0);
    m->root = NULL;
    m->count = 0;
}
