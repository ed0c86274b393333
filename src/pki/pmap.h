/* pmap.h - a persistent hash map (hash array mapped trie, 32-way, path copying) for the PKI
 * state's snapshots (the staples, state_index.c and state_snap.c): a snapshot keeps the root it was
 * published with, and the writer's next change copies only the nodes on one path (O(log32 n)),
 * never the whole map. Nodes a snapshot can reach are never written: a node is changed in place
 * only while the writer holds its one reference (refcount 1 on it and on every node above it).
 * Threads: the map handle (struct torii_pki__pmap) and put/del are writer-only (the state's wlock);
 * a shared root (torii_pki__pmap_share) and the leaves under it are immutable, readable from any
 * thread (immutable after publish), released with torii_pki__pmap_node_unref. Ownership: leaves are
 * reference counted; the map holds one reference per node that lists the leaf, and calls the leaf's
 * free_fn when the last goes. Not to be included by other modules. */
#ifndef TORII_PKI_PMAP_H
#define TORII_PKI_PMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct torii_pki__pmap_node;

/** A leaf: embed it first in the owner's struct. key points at bytes the leaf owns (usually in
 * the same allocation); hash is the owner's 64-bit hash of the key. */
struct torii_pki__pmap_leaf {
    atomic_long ref;
    uint64_t hash;
    const unsigned char *key;
    size_t key_len;
    void (*free_fn)(struct torii_pki__pmap_leaf *leaf);
};

/** The writer's handle: the current root and the number of leaves. Zero-initialised = empty. */
struct torii_pki__pmap {
    struct torii_pki__pmap_node *root;
    size_t count;
};

/** Set up a new leaf with one reference (the caller's). */
void torii_pki__pmap_leaf_init(struct torii_pki__pmap_leaf *leaf, uint64_t hash,
                               const unsigned char *key, size_t key_len,
                               void (*free_fn)(struct torii_pki__pmap_leaf *leaf));
/** Drop one reference on leaf; NULL accepted. */
void torii_pki__pmap_leaf_unref(struct torii_pki__pmap_leaf *leaf);

/** Release everything the handle holds (shared roots stay valid); the map is empty after. */
void torii_pki__pmap_clear(struct torii_pki__pmap *m);

/** A reference on the current root for a snapshot (NULL for an empty map). */
struct torii_pki__pmap_node *torii_pki__pmap_share(const struct torii_pki__pmap *m);
/** Drop a reference on a shared root; NULL accepted. Any thread. */
void torii_pki__pmap_node_unref(struct torii_pki__pmap_node *root);

/** The leaf with this key under root (a handle's root or a shared one), borrowed for as long
 * as the caller holds root; NULL when absent. */
const struct torii_pki__pmap_leaf *torii_pki__pmap_get(const struct torii_pki__pmap_node *root,
                                                       uint64_t hash, const void *key,
                                                       size_t key_len);

/** Insert leaf_owned (its reference moves to the map), replacing a leaf with the same key: the
 * replaced leaf is returned with the map's reference moved to the caller (NULL when none). */
struct torii_pki__pmap_leaf *torii_pki__pmap_put(struct torii_pki__pmap *m,
                                                 struct torii_pki__pmap_leaf *leaf_owned);

/** Remove the leaf with this key and return it with the map's reference moved to the caller;
 * NULL (and nothing copied) when absent. */
struct torii_pki__pmap_leaf *torii_pki__pmap_del(struct torii_pki__pmap *m, uint64_t hash,
                                                 const void *key, size_t key_len);

#endif
