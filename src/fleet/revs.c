/* revs.c - the etcd mod_revision at which this node's LMDB copy of each certificate was last
 * applied, so a compare-and-swap replace compares mod_revision (txn.c) instead of carrying the
 * old value. 16 bytes a certificate: a 64-bit FNV-1a hash of the id and the revision, in an
 * open-addressing table (linear probing, at most half full, never shrinks; a deleted id keeps
 * its slot with revision 0). Two ids with one hash share a slot and its revision, the last
 * applied: a compare-and-swap of the other then sends a revision that is not its own, which
 * etcd refuses (409) unless both were written in the same transaction, in which case the
 * revision is right for both. A collision can cost a conflict, never a lost update.
 * Threads: the caller serializes (the fleet's rev_mu). */
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/mem.h"

#define REVS_MIN_CAP 1024

static uint64_t revs_hash(const char *id, size_t len)
{
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    return h != 0 ? h : 1; /* 0 marks an empty slot */
}

static size_t revs_slot(const struct fleet_revs *m, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);

    while (m->h[i] != 0 && m->h[i] != h) {
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

static void revs_grow(struct fleet_revs *m)
{
    size_t cap = m->cap == 0 ? REVS_MIN_CAP : m->cap * 2;
    uint64_t *h = torii_xcalloc(cap, sizeof(*h));
    int64_t *rev = torii_xcalloc(cap, sizeof(*rev));
    const struct fleet_revs g = {.h = h, .rev = rev, .cap = cap};

    for (size_t i = 0; i < m->cap; i++) {
        if (m->h[i] != 0) {
            size_t j = revs_slot(&g, m->h[i]);
            h[j] = m->h[i];
            rev[j] = m->rev[i];
        }
    }
    free(m->h);
    free(m->rev);
    m->h = h;
    m->rev = rev;
    m->cap = cap;
}

void fleet_revs_set(struct fleet_revs *m, const char *id, size_t len, int64_t rev)
{
    uint64_t h = revs_hash(id, len);
    size_t i;

    if (m->cap == 0 || (m->n + 1) * 2 > m->cap) {
        revs_grow(m);
    }
    i = revs_slot(m, h);
    if (m->h[i] == 0) {
        m->h[i] = h;
        m->n++;
    }
    m->rev[i] = rev;
}

int64_t fleet_revs_get(const struct fleet_revs *m, const char *id, size_t len)
{
    size_t i;

    if (m->cap == 0) {
        return 0;
    }
    i = revs_slot(m, revs_hash(id, len));
    return m->h[i] != 0 ? m->rev[i] : 0;
}

void fleet_revs_clear(struct fleet_revs *m)
{
    free(m->h);
    free(m->rev);
    memset(m, 0, sizeof(*m));
}
