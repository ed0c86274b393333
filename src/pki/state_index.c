/* state_index.c - the writer side of the PKI view (state_int.h): one compact entry per
 * certificate id in a growing hash table, entries grouped by name hash (a group lists the CAs
 * with that subject and the certificates with that issuer, live and revoked apart), the
 * exposed list, the staple queue and the staples map; entries built from store records.
 * wlock held throughout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "state_int.h"
#include "torii/log.h"
#include "torii/mem.h"

/* 1 when e's flags let the TLS listener serve it (time aside). */
static int ent_servable(const struct pki_ent *e)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    const uint32_t deny = TORII_CERTREC_REVOKED | TORII_CERTREC_CA | TORII_CERTREC_CLIENT
                          | TORII_CERTREC_KEYPAIR | TORII_CERTREC_NOT_SERVER;

    return (e->flags & need) == need && (e->flags & deny) == 0;
}

/* 1 when e is a certificate the TLS listener may serve. */
int torii_pki__ent_served(const struct pki_ent *e, int64_t now_ms)
{
    return ent_servable(e) && now_ms < e->not_after_ms;
}

void torii_pki__ent_free(struct pki_ent *e)
{
    if (e == NULL) {
        return;
    }
    json_decref(e->entity);
    if (e->ca != NULL) {
        X509_free(e->ca->cert);
        torii_pki__signer_unref(e->ca->signer);
        torii_pki__blob_unref(e->ca->der);
        torii_pki__blob_unref(e->ca->crl);
        torii_pki__blob_unref(e->ca->crl_pend);
        torii_pki__cache_unref(e->ca->cache);
        free(e->ca);
    }
    torii_pki__blob_unref(e->staple);
    free(e);
}
/* ---- id table ------------------------------------------------------------------------------ */

struct pki_ent **torii_pki__state_find(struct torii_pki_state *st, const char *id, size_t len,
                                       uint64_t h)
{
    struct pki_ent **pp = &st->ids[h & st->ids_mask];

    while (*pp != NULL
           && ((*pp)->h != h || (*pp)->id_len != len || memcmp((*pp)->id, id, len) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void state_ids_grow(struct torii_pki_state *st)
{
    size_t n = (st->ids_mask + 1) * 2;
    struct pki_ent **t = torii_xcalloc(n, sizeof(struct pki_ent *));

    for (size_t b = 0; b <= st->ids_mask; b++) {
        while (st->ids[b] != NULL) {
            struct pki_ent *e = st->ids[b];
            st->ids[b] = e->next;
            e->next = t[e->h & (n - 1)];
            t[e->h & (n - 1)] = e;
        }
    }
    free(st->ids);
    st->ids = t;
    st->ids_mask = n - 1;
}

/* ---- groups -------------------------------------------------------------------------------- */

static uint64_t state_grp_hash(const struct torii_pki_state *st, const unsigned char *hash)
{
    uint64_t h;

    /* Already a SHA-256: its first bytes are as good as any mix of them. */
    memcpy(&h, hash, sizeof(h));
    return h ^ st->seed;
}

static struct pki_group **state_grp_slot(struct torii_pki_state *st, const unsigned char *hash,
                                         uint64_t h)
{
    struct pki_group **pp = &st->grps[h & st->grps_mask];

    while (*pp != NULL && ((*pp)->h != h || memcmp((*pp)->hash, hash, STATE_HASH) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void state_grps_grow(struct torii_pki_state *st)
{
    size_t n = (st->grps_mask + 1) * 2;
    struct pki_group **t = torii_xcalloc(n, sizeof(struct pki_group *));

    for (size_t b = 0; b <= st->grps_mask; b++) {
        while (st->grps[b] != NULL) {
            struct pki_group *g = st->grps[b];
            st->grps[b] = g->next;
            g->next = t[g->h & (n - 1)];
            t[g->h & (n - 1)] = g;
        }
    }
    free(st->grps);
    st->grps = t;
    st->grps_mask = n - 1;
}

static struct pki_group *state_grp_get(struct torii_pki_state *st, const unsigned char *hash)
{
    uint64_t h = state_grp_hash(st, hash);
    struct pki_group **pp = state_grp_slot(st, hash, h);
    struct pki_group *g = *pp;

    if (g != NULL) {
        return g;
    }
    g = torii_xcalloc(1, sizeof(*g));
    g->h = h;
    memcpy(g->hash, hash, STATE_HASH);
    *pp = g;
    if (++st->n_grps > st->grps_mask + 1) {
        state_grps_grow(st);
    }
    return g;
}

static void state_grp_release(struct torii_pki_state *st, struct pki_group *g)
{
    struct pki_group **pp;

    if (g->cas != NULL || g->live != NULL || g->revoked != NULL) {
        return;
    }
    pp = state_grp_slot(st, g->hash, g->h);
    TORII_ASSERT(*pp == g);
    *pp = g->next;
    st->n_grps--;
    free(g);
}

/* The CA that signs for certificates of group g: its first signer by id, or NULL. */
struct pki_ent *torii_pki__state_signer_for(const struct pki_group *g)
{
    for (struct pki_ent *c = g != NULL ? g->cas : NULL; c != NULL; c = c->ca->grp_next) {
        if (c->ca->signer != NULL) {
            return c;
        }
    }
    return NULL;
}

/* A certificate issued under g changed: every CA of g rebuilds its CRL at the next publish
 * and drops its OCSP cache (a new cache object; old snapshots keep theirs until released). */
static void state_touch_group(struct torii_pki_state *st, struct pki_group *g)
{
    for (struct pki_ent *c = g->cas; c != NULL; c = c->ca->grp_next) {
        c->ca->crl_dirty = 1;
        if (c->ca->cache_shared) {
            torii_pki__cache_unref(c->ca->cache);
            c->ca->cache = torii_pki__cache_new();
            c->ca->cache_shared = 0;
            st->cas_dirty = 1;
        }
    }
}

/* ---- lists ---------------------------------------------------------------------------------- */

static struct pki_ent **member_head(struct pki_group *g, const struct pki_ent *e)
{
    return (e->flags & TORII_CERTREC_REVOKED) != 0 ? &g->revoked : &g->live;
}

void torii_pki__pending_push(struct torii_pki_state *st, struct pki_ent *e)
{
    e->p_prev = NULL;
    e->p_next = st->pending;
    if (st->pending != NULL) {
        st->pending->p_prev = e;
    }
    st->pending = e;
    e->pending = 1;
}

void torii_pki__pending_unlink(struct torii_pki_state *st, struct pki_ent *e)
{
    if (!e->pending) {
        return;
    }
    if (e->p_prev != NULL) {
        e->p_prev->p_next = e->p_next;
    } else {
        st->pending = e->p_next;
    }
    if (e->p_next != NULL) {
        e->p_next->p_prev = e->p_prev;
    }
    e->p_prev = NULL;
    e->p_next = NULL;
    e->pending = 0;
}

/* Queue e for its first staple when it may need one (its group has a signer). */
static void pending_offer(struct torii_pki_state *st, struct pki_ent *e)
{
    if (!e->pending && e->staple == NULL && ent_servable(e)) {
        torii_pki__pending_push(st, e);
    }
}

/* ---- attach / detach ------------------------------------------------------------------------ */

/* The CA part of e joins its subject group and the CA list. A group's first signer brings
 * its certificates into the signed count and queues them for staples. */
static void ca_attach(struct torii_pki_state *st, struct pki_ent *e)
{
    struct pki_group *g = state_grp_get(st, e->ca->subject_hash);
    struct pki_ent **pp = &g->cas;
    size_t i = st->n_cas;

    e->ca->grp = g;
    while (*pp != NULL && strcmp((*pp)->id, e->id) < 0) {
        pp = &(*pp)->ca->grp_next;
    }
    e->ca->grp_next = *pp;
    *pp = e;
    if (e->ca->signer != NULL && g->n_signers++ == 0) {
        for (struct pki_ent *m = g->live; m != NULL; m = m->m_next) {
            st->n_signed++;
            pending_offer(st, m);
        }
        for (struct pki_ent *m = g->revoked; m != NULL; m = m->m_next) {
            st->n_signed++;
        }
        st->next_full_ms = 0; /* their staples' due times are not known to the refresher */
    }
    if (st->n_cas == st->cap_cas) {
        st->cap_cas = st->cap_cas == 0 ? 8 : st->cap_cas * 2;
        st->cas = torii_xrealloc(st->cas, st->cap_cas * sizeof(struct pki_ent *));
    }
    while (i > 0 && strcmp(st->cas[i - 1]->id, e->id) > 0) {
        st->cas[i] = st->cas[i - 1];
        i--;
    }
    st->cas[i] = e;
    st->n_cas++;
    st->cas_dirty = 1;
}

static void ca_detach(struct torii_pki_state *st, struct pki_ent *e)
{
    struct pki_group *g = e->ca->grp;
    struct pki_ent **pp = &g->cas;
    size_t i = 0;

    while (*pp != e) {
        pp = &(*pp)->ca->grp_next;
    }
    *pp = e->ca->grp_next;
    e->ca->grp_next = NULL;
    if (e->ca->signer != NULL && --g->n_signers == 0) {
        for (struct pki_ent *m = g->live; m != NULL; m = m->m_next) {
            st->n_signed--;
        }
        for (struct pki_ent *m = g->revoked; m != NULL; m = m->m_next) {
            st->n_signed--;
        }
    }
    while (st->cas[i] != e) {
        i++;
    }
    memmove(&st->cas[i], &st->cas[i + 1], (st->n_cas - i - 1) * sizeof(struct pki_ent *));
    st->n_cas--;
    st->cas_dirty = 1;
    state_grp_release(st, g);
}

static void member_attach(struct torii_pki_state *st, struct pki_ent *e)
{
    struct pki_group *g = state_grp_get(st, e->issuer_hash);
    struct pki_ent **head = member_head(g, e);

    e->grp = g;
    e->m_prev = NULL;
    e->m_next = *head;
    if (*head != NULL) {
        (*head)->m_prev = e;
    }
    *head = e;
    if (g->n_signers > 0) {
        st->n_signed++;
        pending_offer(st, e);
    }
    state_touch_group(st, g);
}

static void member_detach(struct torii_pki_state *st, struct pki_ent *e)
{
    struct pki_group *g = e->grp;

    state_touch_group(st, g);
    if (g->n_signers > 0) {
        st->n_signed--;
    }
    if (e->m_prev != NULL) {
        e->m_prev->m_next = e->m_next;
    } else {
        *member_head(g, e) = e->m_next;
    }
    if (e->m_next != NULL) {
        e->m_next->m_prev = e->m_prev;
    }
    e->grp = NULL;
    state_grp_release(st, g);
}

static void exposed_attach(struct torii_pki_state *st, struct pki_ent *e)
{
    e->x_prev = NULL;
    e->x_next = st->exposed;
    if (st->exposed != NULL) {
        st->exposed->x_prev = e;
    }
    st->exposed = e;
    st->jwks_dirty = 1;
}

static void exposed_detach(struct torii_pki_state *st, struct pki_ent *e)
{
    if (e->x_prev != NULL) {
        e->x_prev->x_next = e->x_next;
    } else {
        st->exposed = e->x_next;
    }
    if (e->x_next != NULL) {
        e->x_next->x_prev = e->x_prev;
    }
    st->jwks_dirty = 1;
}

/* ---- entries from records ------------------------------------------------------------------ */

static void state_name_hash(const X509_NAME *name, unsigned char *out)
{
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(name, &der);

    memset(out, 0, STATE_HASH);
    if (len > 0) {
        (void)SHA256(der, (size_t)len, out);
    }
    OPENSSL_free(der);
}

static void state_certid_hashes(X509 *x, struct pki_certid_hashes *h)
{
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(X509_get_subject_name(x), &der);
    const ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(x);

    memset(h, 0, sizeof(*h));
    if (len > 0) {
        (void)SHA1(der, (size_t)len, h->sha1_name);
        (void)SHA256(der, (size_t)len, h->sha256_name);
    }
    OPENSSL_free(der);
    if (key != NULL) {
        (void)SHA1(key->data, (size_t)key->length, h->sha1_key);
        (void)SHA256(key->data, (size_t)key->length, h->sha256_key);
    }
}

/* CA part of an entry from its entity and leaf DER; e->ca stays NULL when the leaf does not
 * parse. */
static void ent_load_ca(const struct torii_pki_state *st, struct pki_ent *e,
                        const struct torii_slice *leaf)
{
    struct torii_pki__ca ca;
    const unsigned char *p = (const unsigned char *)leaf->ptr;
    X509 *x = d2i_X509(NULL, &p, (long)leaf->len);

    if (x == NULL) {
        ERR_clear_error();
        return;
    }
    e->ca = torii_xcalloc(1, sizeof(*e->ca));
    e->ca->cert = x;
    e->ca->der = torii_pki__blob_new(leaf->ptr, leaf->len);
    state_name_hash(X509_get_subject_name(x), e->ca->subject_hash);
    state_certid_hashes(x, &e->ca->ids);
    if (torii_pki__ca_load(e->entity, st->o.kek, &ca, NULL) == TORII_OK) {
        e->ca->signer = torii_xmalloc(sizeof(*e->ca->signer));
        atomic_init(&e->ca->signer->ref, 1);
        ca.id = NULL;
        e->ca->signer->ca = ca;
    }
    ERR_clear_error();
    e->ca->cache = torii_pki__cache_new();
    e->ca->crl_dirty = 1;
}

/* 1 when needle occurs in hay[0..len). The scan looks for needle[k] (pick a byte that is rare
 * in the haystack: the JSON is mostly base64 PEM, where '"' or 'e' are frequent and 'x' is
 * not), then compares around it. */
static int state_contains(const char *hay, size_t len, const char *needle, size_t k)
{
    size_t n = strlen(needle);
    const char *p = hay + k;
    const char *end = hay + len;

    if (n == 0 || k >= n || len < n) {
        return n == 0;
    }
    while (p + (n - k) <= end) {
        p = memchr(p, needle[k], (size_t)(end - p) - (n - k - 1));
        if (p == NULL) {
            return 0;
        }
        if (memcmp(p - k, needle, n) == 0) {
            return 1;
        }
        p++;
    }
    return 0;
}

/* A new entry from a store record (NULL when the record does not decode). wlock held (the
 * decode scratch is the state's). */
struct pki_ent *torii_pki__ent_build(struct torii_pki_state *st, const struct torii_store_rec *rec)
{
    struct torii_certrec *cr = st->rec;
    char serial[TORII_PKI_SERIAL_HEX_MAX] = "";
    struct pki_ent *e = NULL;
    size_t slen = 0;
    int has_issuer = 0;
    int is_ca = 0;
    int parse_json;

    if (rec->aux == NULL || rec->id_len == 0) {
        return NULL;
    }
    if (torii_certrec_decode(rec->aux, rec->aux_len, cr) != TORII_OK
        || (cr->n_chain == 0 && !cr->summary)) {
        return NULL;
    }
    if (cr->issuer_hash.len == STATE_HASH && cr->serial.len > 0
        && torii_pki__serial_hex_der((const unsigned char *)cr->serial.ptr, cr->serial.len, serial,
                                     sizeof(serial))
               == TORII_OK) {
        has_issuer = 1;
        slen = strlen(serial);
    }
    e = torii_xcalloc(1, sizeof(*e) + rec->id_len + 1 + slen + 1);
    memcpy(e->id, rec->id, rec->id_len);
    e->id_len = rec->id_len;
    e->serial_hex = e->id + rec->id_len + 1;
    memcpy(e->serial_hex, serial, slen + 1);
    e->serial_len = slen;
    e->h = torii_hash64(st->seed, e->id, e->id_len);
    /* The bucket lines torii_pki__state_apply reads first: fetched while the JSON is scanned (the
     * first load is bound by cache misses on these tables). */
    __builtin_prefetch(&st->ids[e->h & st->ids_mask]);
    if (has_issuer) {
        __builtin_prefetch(&st->grps[state_grp_hash(st, (const unsigned char *)cr->issuer_hash.ptr)
                                     & st->grps_mask]);
    }
    e->flags = cr->flags;
    e->not_after_ms = cr->not_after_ms;
    if (has_issuer) {
        memcpy(e->issuer_hash, cr->issuer_hash.ptr, STATE_HASH);
        e->has_issuer = 1;
    }
    /* The JSON only when it matters; entities are stored compact, so "exposed":true is a
     * cheap pre-filter (a false positive only costs a parse). */
    parse_json =
        (cr->flags & (TORII_CERTREC_CA | TORII_CERTREC_REVOKED)) != 0
        || (rec->json != NULL && state_contains(rec->json, rec->json_len, "\"exposed\":true", 2));
    if (parse_json && rec->json != NULL) {
        json_error_t jerr;
        json_t *j = json_loadb(rec->json, rec->json_len, 0, &jerr);

        if (json_is_object(j)) {
            struct torii_pki_revoked r;

            e->exposed = json_is_true(json_object_get(j, "exposed"));
            is_ca = json_is_true(json_object_get(j, "ca")) && (cr->flags & TORII_CERTREC_CA) != 0;
            if ((cr->flags & TORII_CERTREC_REVOKED) != 0
                && torii_pki_revoked_from_entity(j, &r, NULL) == TORII_OK) {
                e->revoked_at_ms = r.revoked_at_ms;
                e->reason = (int)r.reason;
            }
            if (e->exposed || is_ca) {
                e->entity = json_incref(j);
            }
        }
        json_decref(j);
    }
    if (is_ca) {
        ent_load_ca(st, e, &cr->chain[0]);
    }
    return e;
}

/* Replace (ent != NULL) or remove entry id. Caller holds wlock. Work: O(1) for a certificate;
 * a CA that becomes its group's first signer (or stops being its last) also brings the
 * group's certificates into (out of) the signed count and the staple candidates. */
void torii_pki__state_apply(struct torii_pki_state *st, const char *id, size_t id_len,
                            struct pki_ent *ent)
{
    uint64_t h = ent != NULL ? ent->h : torii_hash64(st->seed, id, id_len);
    struct pki_ent **pp = torii_pki__state_find(st, id, id_len, h);
    struct pki_ent *old = *pp;

    /* The new CA part first, so replacing a signer by a signer of the same subject keeps the
     * group signed throughout (no view rebuild). */
    if (ent != NULL && ent->ca != NULL) {
        /* A replaced CA keeps its CRL number (never goes back). */
        if (old != NULL && old->ca != NULL) {
            ent->ca->crl_number = old->ca->crl_number;
            ent->ca->crl_number_loaded = old->ca->crl_number_loaded;
            if (st->has_share) { /* the fleet's CRL stays served until the next one */
                ent->ca->crl = torii_pki__blob_ref(old->ca->crl);
                ent->ca->crl_adopted = old->ca->crl_adopted;
                ent->ca->crl_dirty = 1;
            }
        }
        ca_attach(st, ent);
    }
    if (old != NULL) {
        *pp = old->next;
        st->n_ents--;
        if (old->grp != NULL) {
            member_detach(st, old);
        }
        if (old->exposed) {
            exposed_detach(st, old);
        }
        torii_pki__pending_unlink(st, old);
        if (old->staple != NULL) {
            torii_pki__staple_del(st, old);
        }
        if (old->ca != NULL) {
            ca_detach(st, old);
        }
    }
    if (ent != NULL) {
        pp = &st->ids[h & st->ids_mask];
        ent->next = *pp;
        *pp = ent;
        if (++st->n_ents > st->ids_mask + 1) {
            state_ids_grow(st);
        }
        if (ent->exposed) {
            exposed_attach(st, ent);
        }
        if (ent->has_issuer) {
            member_attach(st, ent);
        }
    }
    torii_pki__ent_free(old);
}

/* ---- staples (writer's map) ---------------------------------------------------------------- */

static void staple_leaf_free(struct torii_pki__pmap_leaf *l)
{
    struct staple_leaf *s = (struct staple_leaf *)l;

    torii_pki__blob_unref(s->der);
    free(s);
}
void torii_pki__staple_set(struct torii_pki_state *st, const struct pki_ent *e,
                           struct pki_blob *der)
{
    struct staple_leaf *l = torii_xmalloc(sizeof(*l) + e->id_len + 1);

    memcpy(l->id, e->id, e->id_len + 1);
    l->der = torii_pki__blob_ref(der);
    torii_pki__pmap_leaf_init(&l->hdr, e->h, (const unsigned char *)l->id, e->id_len,
                              staple_leaf_free);
    torii_pki__pmap_leaf_unref(torii_pki__pmap_put(&st->staples, &l->hdr));
}

void torii_pki__staple_del(struct torii_pki_state *st, const struct pki_ent *e)
{
    torii_pki__pmap_leaf_unref(torii_pki__pmap_del(&st->staples, e->h, e->id, e->id_len));
}
