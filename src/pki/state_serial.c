/* state_serial.c - the OCSP serial view of the PKI state (state_int.h): issuer-name hash +
 * serial -> status, for the certificates issued by one of our signing CAs, in a persistent
 * map (pmap.h) that snapshots share. The one place that knows its key and leaf layout: the
 * writer adds and removes records (wlock held), readers look one up in a snapshot. */
#include <stdlib.h>
#include <string.h>

#include "state_int.h"
#include "torii/mem.h"

/* Serial view leaf: key = issuer hash || serial hex (no NUL). Two records may carry the same
 * certificate (a copy under another id): all are kept, see view_pick. */
struct view_leaf {
    struct torii_pki__pmap_leaf hdr;
    size_t n;
    struct view_val v[]; /* then the key bytes */
};
static void view_leaf_free(struct torii_pki__pmap_leaf *l)
{
    free(l);
}
/* ---- serial view and staples (writer's maps) ------------------------------------------------ */

static size_t view_key(const struct pki_ent *e, unsigned char *key)
{
    memcpy(key, e->issuer_hash, STATE_HASH);
    memcpy(key + STATE_HASH, e->serial_hex, e->serial_len);
    return STATE_HASH + e->serial_len;
}

/* A new leaf with the values of old (may be NULL) minus `drop` (0: none), plus add (may be
 * NULL). NULL when nothing is left. */
static struct view_leaf *view_leaf_new(uint64_t h, const unsigned char *key, size_t key_len,
                                       const struct view_leaf *old, uint64_t drop,
                                       const struct view_val *add)
{
    size_t n = 0;
    struct view_leaf *l;
    unsigned char *k;

    for (size_t i = 0; old != NULL && i < old->n; i++) {
        n += old->v[i].seq != drop;
    }
    n += add != NULL;
    if (n == 0) {
        return NULL;
    }
    l = torii_xmalloc(sizeof(*l) + n * sizeof(l->v[0]) + key_len);
    l->n = 0;
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        if (old->v[i].seq != drop) {
            l->v[l->n++] = old->v[i];
        }
    }
    if (add != NULL) {
        l->v[l->n++] = *add;
    }
    k = (unsigned char *)&l->v[n];
    memcpy(k, key, key_len);
    torii_pki__pmap_leaf_init(&l->hdr, h, k, key_len, view_leaf_free);
    return l;
}

/* Key, hash and current leaf (NULL: none) of e's record in the writer's view. */
static const struct view_leaf *view_slot(const struct torii_pki_state *st, const struct pki_ent *e,
                                         unsigned char *key, size_t *len, uint64_t *h)
{
    *len = view_key(e, key);
    *h = torii_hash64(st->seed, key, *len);
    return (const struct view_leaf *)torii_pki__pmap_get(st->view.root, *h, key, *len);
}

void torii_pki__view_add(struct torii_pki_state *st, const struct pki_ent *e)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t len;
    uint64_t h;
    const struct view_leaf *old = view_slot(st, e, key, &len, &h);
    struct view_val v = {
        .seq = e->seq,
        .revoked = (e->flags & TORII_CERTREC_REVOKED) != 0,
        .reason = e->reason,
        .revoked_at_ms = e->revoked_at_ms,
        .not_after_ms = e->not_after_ms,
    };
    struct view_leaf *l = view_leaf_new(h, key, len, old, 0, &v);

    torii_pki__pmap_leaf_unref(torii_pki__pmap_put(&st->view, &l->hdr));
    st->n_view++;
}

void torii_pki__view_remove(struct torii_pki_state *st, const struct pki_ent *e)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t len;
    uint64_t h;
    const struct view_leaf *old = view_slot(st, e, key, &len, &h);
    struct view_leaf *l;

    TORII_ASSERT(old != NULL);
    l = view_leaf_new(h, key, len, old, e->seq, NULL);
    if (l == NULL) {
        torii_pki__pmap_leaf_unref(torii_pki__pmap_del(&st->view, h, key, len));
    } else {
        torii_pki__pmap_leaf_unref(torii_pki__pmap_put(&st->view, &l->hdr));
    }
    st->n_view--;
}

/* Of several records of one certificate: a revoked one first (any copy revoked means the
 * certificate is), else the one valid longest. */
static const struct view_val *view_pick(const struct view_leaf *l)
{
    const struct view_val *best = &l->v[0];

    for (size_t i = 1; i < l->n; i++) {
        const struct view_val *v = &l->v[i];
        if (best->revoked) {
            break;
        }
        if (v->revoked || v->not_after_ms > best->not_after_ms) {
            best = v;
        }
    }
    return best;
}

const struct view_val *torii_pki__view_find(const struct pki_snap *s, const unsigned char *issuer,
                                            const char *serial_hex)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t slen = strlen(serial_hex);
    const struct view_leaf *l;

    if (slen >= TORII_PKI_SERIAL_HEX_MAX) {
        return NULL;
    }
    memcpy(key, issuer, STATE_HASH);
    memcpy(key + STATE_HASH, serial_hex, slen + 1); /* the NUL is not part of the key */
    l = (const struct view_leaf *)torii_pki__pmap_get(
        s->certs, torii_hash64(s->seed, key, STATE_HASH + slen), key, STATE_HASH + slen);
    return l != NULL ? view_pick(l) : NULL;
}
