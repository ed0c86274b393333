/* state.c - the served PKI view (pkistate.h).
 *
 * Writer side (wlock): one compact entry per certificate id, in a growing hash table. The
 * TLS record gives flags, notAfter, issuer-name hash and serial without parsing JSON; the
 * JSON is parsed only for CAs (signing material), revoked entities (time and reason) and
 * exposed ones (JWKS). Entries are grouped by name hash (SHA-256 of the DER name): a group
 * lists the CAs whose subject has that hash and the certificates whose issuer has it (live
 * and revoked apart), so finding a certificate's issuing CA, the revoked certificates of a CA
 * (its CRL) or what a change touches costs O(1), never a scan of the store. Each CA entry
 * also carries its current CRL, its CRL number, and the OCSP response cache of its current
 * generation; any change of a certificate it issued marks the CRL for rebuild and replaces
 * the cache (a fresh cache only when readers saw the old one).
 * Reader side: an immutable snapshot, reference counted: the JWKS bytes, the CAs (an array
 * shared until a CA changes), and two persistent maps (pmap.h): the serial view (issuer hash
 * + serial -> status, for certificates issued by one of our signing CAs) and the staples (id
 * -> DER). A change copies one path of a map, not the map, so a publish costs O(log n) plus
 * the CAs that changed; publish swaps the snapshot pointer under snap_lock, which readers hold
 * only to load the pointer and take a reference. Blobs (DER, JSON text) are shared by
 * reference between snapshots.
 * First load: records are applied without publishing (torii_pki_state_load_cb), each in O(1);
 * the one publish after it builds the JWKS and the CRLs once.
 * CRL numbers (RFC 5280 5.2.3) are max(previous + 1, now in ms): monotonic across restarts
 * even when the persisted value was lost, and persisted by the refresher thread (a watcher
 * must not write the store). Staples are signed by the refresher, never on a handshake: new
 * candidates (served certificates issued by a signing CA, without a staple) are queued and
 * signed on the next wake-up; a full pass over the candidates re-signs what is due. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "pmap.h"
#include "torii/clock.h"
#include "torii/jwt.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkistate.h"

#define STATE_BUCKETS_MIN    1024 /* initial size of the id and group tables (powers of 2) */
#define STATE_CACHE_SLOTS    64
#define STATE_STAPLE_BATCH   32
#define STATE_REFRESH_MAX_MS 30000
#define STATE_YIELD_MS       100 /* longest wait for a feed call between staple batches */
#define STATE_HASH           32  /* SHA-256 */
#define STATE_META_PREFIX    "pki.crl_number."

/* ---- shared blobs ---------------------------------------------------------------------- */

struct pki_blob {
    atomic_long ref;
    size_t len;
    unsigned char data[];
};

static struct pki_blob *blob_new(const void *p, size_t len)
{
    struct pki_blob *b = torii_xmalloc(sizeof(*b) + len + 1);

    atomic_init(&b->ref, 1);
    b->len = len;
    if (len > 0) {
        memcpy(b->data, p, len);
    }
    b->data[len] = 0;
    return b;
}

static struct pki_blob *blob_ref(struct pki_blob *b)
{
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->ref, 1, memory_order_relaxed);
    }
    return b;
}

static void blob_unref(struct pki_blob *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

static int blob_copy_out(const struct pki_blob *b, unsigned char **body, size_t *len)
{
    unsigned char *p = torii_xmalloc(b->len + 1);

    memcpy(p, b->data, b->len);
    p[b->len] = 0;
    *body = p;
    *len = b->len;
    return TORII_OK;
}

/* ---- OCSP response cache of one CA generation (any thread, internally locked) ------------ */

struct pki_cache {
    atomic_long ref;
    pthread_mutex_t lock;
    unsigned next;
    struct {
        unsigned char key[STATE_HASH];
        struct pki_blob *resp;
        int64_t until_ms;
    } slot[STATE_CACHE_SLOTS];
};

static struct pki_cache *cache_new(void)
{
    struct pki_cache *c = torii_xcalloc(1, sizeof(*c));

    atomic_init(&c->ref, 1);
    TORII_ASSERT(pthread_mutex_init(&c->lock, NULL) == 0);
    return c;
}

static struct pki_cache *cache_ref(struct pki_cache *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->ref, 1, memory_order_relaxed);
    }
    return c;
}

static void cache_unref(struct pki_cache *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        blob_unref(c->slot[i].resp);
    }
    (void)pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct pki_blob *cache_get(struct pki_cache *c, const unsigned char *key, int64_t now_ms)
{
    struct pki_blob *b = NULL;

    (void)pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        if (c->slot[i].resp != NULL && c->slot[i].until_ms > now_ms
            && memcmp(c->slot[i].key, key, STATE_HASH) == 0) {
            b = blob_ref(c->slot[i].resp);
            break;
        }
    }
    (void)pthread_mutex_unlock(&c->lock);
    return b;
}

static void cache_put(struct pki_cache *c, const unsigned char *key, struct pki_blob *resp,
                      int64_t until_ms)
{
    struct pki_blob *old;
    unsigned i;

    (void)pthread_mutex_lock(&c->lock);
    i = c->next++ % STATE_CACHE_SLOTS;
    old = c->slot[i].resp;
    memcpy(c->slot[i].key, key, STATE_HASH);
    c->slot[i].resp = blob_ref(resp);
    c->slot[i].until_ms = until_ms;
    (void)pthread_mutex_unlock(&c->lock);
    blob_unref(old);
}

/* ---- snapshot ---------------------------------------------------------------------------- */

/* The CertID hashes of a CA (RFC 6960 4.1.1) for the two digests clients use. */
struct pki_certid_hashes {
    unsigned char sha1_name[SHA_DIGEST_LENGTH];
    unsigned char sha1_key[SHA_DIGEST_LENGTH];
    unsigned char sha256_name[SHA256_DIGEST_LENGTH];
    unsigned char sha256_key[SHA256_DIGEST_LENGTH];
};

/* A signing CA, loaded once (certificate, chain, key) and shared by the writer's entry and
 * the snapshots; read-only once built, so any thread may sign with it. */
struct pki_signer {
    atomic_long ref;
    struct torii_pki__ca ca; /* ca.id is not kept (it pointed into the entity) */
};

static struct pki_signer *signer_ref(struct pki_signer *s)
{
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->ref, 1, memory_order_relaxed);
    }
    return s;
}

static void signer_unref(struct pki_signer *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) == 1) {
        torii_pki__ca_clear(&s->ca);
        free(s);
    }
}

struct snap_ca {
    char *id;
    struct pki_signer *signer; /* NULL for CAs without a usable key */
    struct pki_blob *der;
    struct pki_blob *crl;
    struct pki_cache *cache;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
};

/* Every CA entity, sorted by id; shared by the snapshots published while no CA changes. */
struct snap_cas {
    atomic_long ref;
    size_t n;
    struct snap_ca ca[];
};

/* One record of the serial view. */
struct view_val {
    uint64_t seq; /* the entry it comes from */
    int revoked;
    int reason;
    int64_t revoked_at_ms;
    int64_t not_after_ms;
};

/* Serial view leaf: key = issuer hash || serial hex (no NUL). Two records may carry the same
 * certificate (a copy under another id): all are kept, see view_pick. */
struct view_leaf {
    struct torii_pki__pmap_leaf hdr;
    size_t n;
    struct view_val v[]; /* then the key bytes */
};

struct staple_leaf {
    struct torii_pki__pmap_leaf hdr;
    struct pki_blob *der;
    char id[]; /* the key, NUL-terminated */
};

struct pki_snap {
    atomic_long ref;
    uint64_t seed;
    struct pki_blob *jwks;
    struct torii_jwt_keyset *jwt_keys; /* verification keys of the exposed entities */
    struct snap_cas *cas;
    struct torii_pki__pmap_node *certs; /* serial view */
    size_t n_certs;                     /* records in it */
    struct torii_pki__pmap_node *staples;
    size_t n_staples;
    int64_t ocsp_next_update_s;
    int64_t ocsp_cache_s;
};

static void snap_cas_unref(struct snap_cas *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        free(c->ca[i].id);
        signer_unref(c->ca[i].signer);
        blob_unref(c->ca[i].der);
        blob_unref(c->ca[i].crl);
        cache_unref(c->ca[i].cache);
    }
    free(c);
}

static void snap_unref(struct pki_snap *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    blob_unref(s->jwks);
    torii_jwt_keyset_unref(s->jwt_keys);
    snap_cas_unref(s->cas);
    torii_pki__pmap_node_unref(s->certs);
    torii_pki__pmap_node_unref(s->staples);
    free(s);
}

static void view_leaf_free(struct torii_pki__pmap_leaf *l)
{
    free(l);
}

static void staple_leaf_free(struct torii_pki__pmap_leaf *l)
{
    struct staple_leaf *s = (struct staple_leaf *)l;

    blob_unref(s->der);
    free(s);
}

/* ---- writer-side entries ------------------------------------------------------------------ */

struct pki_group;

/* CA part of an entry (the entity says ca=true and the record has the CA flag). */
struct pki_ca {
    struct pki_ent *grp_next;  /* next CA of the same subject group, by id */
    struct pki_group *grp;     /* subject group */
    struct pki_signer *signer; /* the CA loads with its key; NULL otherwise */
    X509 *cert;
    struct pki_blob *der;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
    int crl_dirty;
    int crl_persist;
    int crl_number_loaded;
    uint64_t crl_number;
    int64_t crl_refresh_ms;
    struct pki_blob *crl;
    struct pki_cache *cache;
    int cache_shared; /* a published snapshot holds cache: replace it, never reuse it */
};

struct pki_ent {
    struct pki_ent *next; /* id table chain */
    uint64_t h;           /* hash of id */
    uint64_t seq;         /* unique per entry (serial view records) */
    struct pki_group *grp;
    struct pki_ent *m_prev; /* issuer group: live or revoked list */
    struct pki_ent *m_next;
    struct pki_ent *x_prev; /* exposed list */
    struct pki_ent *x_next;
    struct pki_ent *p_prev; /* staple queue */
    struct pki_ent *p_next;
    int pending;
    uint32_t flags; /* TORII_CERTREC_* */
    int64_t not_after_ms;
    int has_issuer;
    unsigned char issuer_hash[STATE_HASH];
    int64_t revoked_at_ms;
    int reason;
    json_t *entity; /* CAs and exposed entities only */
    int exposed;
    struct pki_ca *ca; /* NULL unless a CA */
    /* staple (served certificates issued by a signer) */
    struct pki_blob *staple;
    int64_t staple_refresh_ms;
    size_t id_len;
    size_t serial_len;
    char *serial_hex; /* into the same allocation, after id; "" without issuer */
    char id[];
};

/* Everything that shares one name hash: CAs with that subject, certificates with that issuer. */
struct pki_group {
    struct pki_group *next; /* group table chain */
    uint64_t h;
    unsigned char hash[STATE_HASH];
    struct pki_ent *cas; /* by id, linked through ca->grp_next */
    size_t n_signers;
    struct pki_ent *live;    /* members not revoked */
    struct pki_ent *revoked; /* members revoked */
};

struct torii_pki_state {
    struct torii_pki_state_opts o;
    pthread_mutex_t wlock; /* writer side: entries, rebuilds, publish */
    pthread_cond_t wake;   /* refresher */
    uint64_t seed;
    struct pki_ent **ids; /* id table */
    size_t ids_mask;
    size_t n_ents;
    struct pki_group **grps; /* group table */
    size_t grps_mask;
    size_t n_grps;
    struct pki_ent **cas; /* CA entries, sorted by id */
    size_t n_cas;
    size_t cap_cas;
    struct pki_ent *exposed; /* exposed entries */
    struct pki_ent *pending; /* candidates waiting for their first staple */
    uint64_t next_seq;
    struct torii_pki__pmap view; /* serial view (writer's current root) */
    size_t n_view;
    struct torii_pki__pmap staples;
    int jwks_dirty;
    struct pki_blob *jwks;             /* writer's current document */
    struct torii_jwt_keyset *jwt_keys; /* writer's current key set (rebuilt with the JWKS) */
    int cas_dirty;
    struct snap_cas *snap_cas; /* writer's current CA array */
    struct torii_certrec *rec; /* decode scratch (large; one per state) */
    int64_t next_full_ms;      /* refresher: a full pass is due */
    int64_t last_full_ms;
    atomic_int writers_waiting; /* feed calls waiting for wlock (the refresher yields) */
    pthread_mutex_t snap_lock;  /* readers: pointer load + reference only */
    struct pki_snap *snap;
    uint64_t publishes;
    pthread_t thread;
    int thread_started;
    int stop;
};

/* 1 when e's flags let the TLS listener serve it (time aside). */
static int ent_servable(const struct pki_ent *e)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    const uint32_t deny = TORII_CERTREC_REVOKED | TORII_CERTREC_CA | TORII_CERTREC_CLIENT
                          | TORII_CERTREC_KEYPAIR | TORII_CERTREC_NOT_SERVER;

    return (e->flags & need) == need && (e->flags & deny) == 0;
}

/* 1 when e is a certificate the TLS listener may serve. */
static int ent_served(const struct pki_ent *e, int64_t now_ms)
{
    return ent_servable(e) && now_ms < e->not_after_ms;
}

static void ent_free(struct pki_ent *e)
{
    if (e == NULL) {
        return;
    }
    json_decref(e->entity);
    if (e->ca != NULL) {
        X509_free(e->ca->cert);
        signer_unref(e->ca->signer);
        blob_unref(e->ca->der);
        blob_unref(e->ca->crl);
        cache_unref(e->ca->cache);
        free(e->ca);
    }
    blob_unref(e->staple);
    free(e);
}

/* ---- id table ------------------------------------------------------------------------------ */

static struct pki_ent **state_find(struct torii_pki_state *st, const char *id, size_t len,
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
    struct pki_ent **t = torii_xcalloc(n, sizeof(*t));

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
    struct pki_group **t = torii_xcalloc(n, sizeof(*t));

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
static struct pki_ent *state_signer_for(const struct pki_group *g)
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
            cache_unref(c->ca->cache);
            c->ca->cache = cache_new();
            c->ca->cache_shared = 0;
            st->cas_dirty = 1;
        }
    }
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

static void view_add(struct torii_pki_state *st, const struct pki_ent *e)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t len = view_key(e, key);
    uint64_t h = torii_hash64(st->seed, key, len);
    const struct view_leaf *old =
        (const struct view_leaf *)torii_pki__pmap_get(st->view.root, h, key, len);
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

static void view_remove(struct torii_pki_state *st, const struct pki_ent *e)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t len = view_key(e, key);
    uint64_t h = torii_hash64(st->seed, key, len);
    const struct view_leaf *old =
        (const struct view_leaf *)torii_pki__pmap_get(st->view.root, h, key, len);
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

static void staple_set(struct torii_pki_state *st, const struct pki_ent *e, struct pki_blob *der)
{
    struct staple_leaf *l = torii_xmalloc(sizeof(*l) + e->id_len + 1);

    memcpy(l->id, e->id, e->id_len + 1);
    l->der = blob_ref(der);
    torii_pki__pmap_leaf_init(&l->hdr, e->h, (const unsigned char *)l->id, e->id_len,
                              staple_leaf_free);
    torii_pki__pmap_leaf_unref(torii_pki__pmap_put(&st->staples, &l->hdr));
}

static void staple_del(struct torii_pki_state *st, const struct pki_ent *e)
{
    torii_pki__pmap_leaf_unref(torii_pki__pmap_del(&st->staples, e->h, e->id, e->id_len));
}

/* ---- lists ---------------------------------------------------------------------------------- */

static struct pki_ent **member_head(struct pki_group *g, const struct pki_ent *e)
{
    return (e->flags & TORII_CERTREC_REVOKED) != 0 ? &g->revoked : &g->live;
}

static void pending_push(struct torii_pki_state *st, struct pki_ent *e)
{
    e->p_prev = NULL;
    e->p_next = st->pending;
    if (st->pending != NULL) {
        st->pending->p_prev = e;
    }
    st->pending = e;
    e->pending = 1;
}

static void pending_unlink(struct torii_pki_state *st, struct pki_ent *e)
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
        pending_push(st, e);
    }
}

/* ---- attach / detach ------------------------------------------------------------------------ */

/* The CA part of e joins its subject group and the CA list. A group's first signer brings
 * its certificates into the serial view and queues them for staples. */
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
            view_add(st, m);
            pending_offer(st, m);
        }
        for (struct pki_ent *m = g->revoked; m != NULL; m = m->m_next) {
            view_add(st, m);
        }
        st->next_full_ms = 0; /* their staples' due times are not known to the refresher */
    }
    if (st->n_cas == st->cap_cas) {
        st->cap_cas = st->cap_cas == 0 ? 8 : st->cap_cas * 2;
        st->cas = torii_xrealloc(st->cas, st->cap_cas * sizeof(*st->cas));
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
            view_remove(st, m);
        }
        for (struct pki_ent *m = g->revoked; m != NULL; m = m->m_next) {
            view_remove(st, m);
        }
    }
    while (st->cas[i] != e) {
        i++;
    }
    memmove(&st->cas[i], &st->cas[i + 1], (st->n_cas - i - 1) * sizeof(*st->cas));
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
        view_add(st, e);
        pending_offer(st, e);
    }
    state_touch_group(st, g);
}

static void member_detach(struct torii_pki_state *st, struct pki_ent *e)
{
    struct pki_group *g = e->grp;

    state_touch_group(st, g);
    if (g->n_signers > 0) {
        view_remove(st, e);
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
static void ent_load_ca(struct pki_ent *e, const struct torii_slice *leaf)
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
    e->ca->der = blob_new(leaf->ptr, leaf->len);
    state_name_hash(X509_get_subject_name(x), e->ca->subject_hash);
    state_certid_hashes(x, &e->ca->ids);
    if (torii_pki__ca_load(e->entity, &ca, NULL) == TORII_OK) {
        e->ca->signer = torii_xmalloc(sizeof(*e->ca->signer));
        atomic_init(&e->ca->signer->ref, 1);
        ca.id = NULL;
        e->ca->signer->ca = ca;
    }
    ERR_clear_error();
    e->ca->cache = cache_new();
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
static struct pki_ent *ent_build(struct torii_pki_state *st, const struct torii_store_rec *rec)
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
    if (torii_certrec_decode(rec->aux, rec->aux_len, cr) != TORII_OK || cr->n_chain == 0) {
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
    /* The bucket lines state_apply reads first: fetched while the JSON is scanned (the first
     * load is bound by cache misses on these tables). */
    __builtin_prefetch(&st->ids[e->h & st->ids_mask]);
    if (has_issuer) {
        __builtin_prefetch(&st->grps[state_grp_hash(st, (const unsigned char *)cr->issuer_hash.ptr)
                                     & st->grps_mask]);
    }
    e->seq = ++st->next_seq;
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
        ent_load_ca(e, &cr->chain[0]);
    }
    return e;
}

/* Replace (ent != NULL) or remove entry id. Caller holds wlock. Work: O(1) for a certificate;
 * a CA that becomes its group's first signer (or stops being its last) also brings the
 * group's certificates into (out of) the serial view. */
static void state_apply(struct torii_pki_state *st, const char *id, size_t id_len,
                        struct pki_ent *ent)
{
    uint64_t h = ent != NULL ? ent->h : torii_hash64(st->seed, id, id_len);
    struct pki_ent **pp = state_find(st, id, id_len, h);
    struct pki_ent *old = *pp;

    /* The new CA part first, so replacing a signer by a signer of the same subject keeps the
     * group signed throughout (no view rebuild). */
    if (ent != NULL && ent->ca != NULL) {
        /* A replaced CA keeps its CRL number (never goes back). */
        if (old != NULL && old->ca != NULL) {
            ent->ca->crl_number = old->ca->crl_number;
            ent->ca->crl_number_loaded = old->ca->crl_number_loaded;
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
        pending_unlink(st, old);
        if (old->staple != NULL) {
            staple_del(st, old);
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
    ent_free(old);
}

/* ---- rebuilds (wlock held) ---------------------------------------------------------------- */

static void state_load_crl_number(struct torii_pki_state *st, struct pki_ent *e)
{
    char key[sizeof(STATE_META_PREFIX) + 512];
    char *val = NULL;

    e->ca->crl_number_loaded = 1;
    if (st->o.meta_get == NULL) {
        return;
    }
    (void)snprintf(key, sizeof(key), STATE_META_PREFIX "%s", e->id);
    if (st->o.meta_get(st->o.meta_arg, key, &val) == TORII_OK && val != NULL) {
        unsigned long long v = strtoull(val, NULL, 10);
        if (v > e->ca->crl_number) {
            e->ca->crl_number = (uint64_t)v;
        }
    }
    free(val);
}

/* The CRL of signer e: the revoked certificates of its subject group (not e itself). */
static void state_build_crl(struct torii_pki_state *st, struct pki_ent *e, int64_t now_ms)
{
    struct pki_ca *ca = e->ca;
    struct torii_pki_revoked *rv = NULL;
    size_t n = 0;
    size_t cap = 0;
    unsigned char *der = NULL;
    size_t der_len = 0;
    struct torii_errbuf eb = {{0}};
    uint64_t number;

    if (!ca->crl_number_loaded) {
        state_load_crl_number(st, e);
    }
    for (const struct pki_ent *r = ca->grp->revoked; r != NULL; r = r->m_next) {
        if (r == e) {
            continue;
        }
        if (n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            rv = torii_xrealloc(rv, cap * sizeof(*rv));
        }
        memset(&rv[n], 0, sizeof(rv[n]));
        memcpy(rv[n].serial_hex, r->serial_hex, r->serial_len + 1);
        rv[n].revoked_at_ms = r->revoked_at_ms;
        rv[n].reason = (enum torii_pki_reason)r->reason;
        n++;
    }
    number = ca->crl_number + 1;
    if ((uint64_t)now_ms > number) {
        number = (uint64_t)now_ms;
    }
    if (torii_pki_crl_build(e->entity, rv, n, number, now_ms, st->o.crl_next_update_s, &der,
                            &der_len, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "pki: CRL not built: %s (ca=%s)", eb.msg, e->id);
    } else {
        blob_unref(ca->crl);
        ca->crl = blob_new(der, der_len);
        ca->crl_number = number;
        ca->crl_persist = 1;
        ca->crl_refresh_ms = now_ms + st->o.crl_next_update_s * 1000 / 2;
    }
    ca->crl_dirty = 0;
    free(der);
    free(rv);
}

static int ent_id_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct pki_ent *const *)a)->id, (*(const struct pki_ent *const *)b)->id);
}

/* The JWKS of the exposed entities, in id order. */
static void state_build_jwks(struct torii_pki_state *st)
{
    json_t *arr = json_array();
    json_t *doc = NULL;
    char *text = NULL;
    struct pki_ent **v = NULL;
    size_t n = 0;
    size_t cap = 0;

    for (struct pki_ent *e = st->exposed; e != NULL; e = e->x_next) {
        if (e->entity == NULL) {
            continue;
        }
        if (n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            v = torii_xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = e;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), ent_id_cmp);
    }
    for (size_t i = 0; i < n && arr != NULL; i++) {
        (void)json_array_append(arr, v[i]->entity);
    }
    doc = torii_pki_jwks_build(arr);
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text != NULL) {
        blob_unref(st->jwks);
        st->jwks = blob_new(text, strlen(text));
        st->jwks_dirty = 0;
    } else {
        torii_log(TORII_LOG_ERR, "pki: JWKS not rebuilt: out of memory");
    }
    free(v);
    free(text);
    json_decref(doc);
    json_decref(arr);
}

/* The public key of e's leaf under kid[0..kid_len), or under its key kid when kid is NULL
 * (docs/jwt.md, Key ids). The leaf of the entity's chain: no private key is decoded for
 * verification. */
static void state_jwt_key_add(struct torii_jwt_keyset *ks, const struct pki_ent *e, const char *kid,
                              size_t kid_len)
{
    STACK_OF(X509) *chain = NULL;
    struct torii_errbuf eb = {{0}};
    char *keyed = NULL;
    EVP_PKEY *pub;

    if (torii_pki__chain_parse(json_string_value(json_object_get(e->entity, "chain")), &chain, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "pki: JWT key left out: %s (id=%s)", eb.msg, e->id);
        return;
    }
    pub = X509_get0_pubkey(sk_X509_value(chain, 0));
    if (pub != NULL && kid == NULL && torii_pki__jwt_key_kid(e->entity, pub, &keyed) != TORII_OK) {
        (void)torii_errf(&eb, TORII_EINVAL, "no key kid");
        pub = NULL;
    }
    if (keyed != NULL) {
        kid = keyed;
        kid_len = strlen(keyed);
    }
    if (pub == NULL
        || torii_jwt_keyset_add(ks, kid, kid_len, pub, e->not_after_ms, &eb) != TORII_OK) {
        torii_log(TORII_LOG_INFO, "pki: JWT key left out: %s (id=%s)",
                  pub == NULL && eb.msg[0] == '\0' ? "no public key" : eb.msg, e->id);
    }
    free(keyed);
    ERR_clear_error();
    sk_X509_pop_free(chain, X509_free);
}

/* 1 when e may verify tokens: exposed, not revoked, with a private key matching its leaf (the
 * JWKS rule: a published key nobody can sign with helps no one). */
static int state_jwt_usable(const struct pki_ent *e)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;

    return e != NULL && e->exposed && e->entity != NULL && (e->flags & need) == need
           && (e->flags & TORII_CERTREC_REVOKED) == 0
           && !json_is_true(json_object_get(e->entity, "revoked"));
}

/* The live id an "[UNTIL EXPIRATION]" copy was replaced by (metadata untilExpiration "true",
 * nextCertificate), or NULL. */
static const char *state_jwt_live_id(const struct pki_ent *e, size_t *len)
{
    const json_t *md = json_object_get(e->entity, "metadata");
    const char *next = json_string_value(json_object_get(md, "nextCertificate"));
    const char *until = json_string_value(json_object_get(md, "untilExpiration"));

    if (next == NULL || next[0] == '\0' || until == NULL || strcmp(until, "true") != 0) {
        return NULL;
    }
    *len = strlen(next);
    return *len <= TORII_STORE_ID_MAX ? next : NULL;
}

/* The verification key set of the exposed entities. Every key is added under its key kid
 * ("<live id>.<thumbprint>", what _sign puts in tokens: it names that one key, before and after
 * a rotation) and under its entity id. A rotated key pair's "[UNTIL EXPIRATION]" copy
 * (metadata.untilExpiration, nextCertificate = the live id) is also added under the live id:
 * tokens minted before key kids existed carry the live id and must verify until the old key's
 * own notAfter (docs/jwt.md, Rotation). */
static void state_build_jwt_keys(struct torii_pki_state *st)
{
    struct torii_jwt_keyset *ks = torii_jwt_keyset_new();

    /* Every entity under its own id first, so that the per-kid limit
     * (TORII_JWT_KID_KEYS_MAX) can only ever drop rotated keys, never a live one. */
    for (struct pki_ent *e = st->exposed; e != NULL; e = e->x_next) {
        if (state_jwt_usable(e)) {
            state_jwt_key_add(ks, e, e->id, e->id_len);
            state_jwt_key_add(ks, e, NULL, 0);
        }
    }
    for (struct pki_ent *e = st->exposed; e != NULL; e = e->x_next) {
        size_t n = 0;
        const char *live = state_jwt_live_id(e, &n);

        if (live != NULL && state_jwt_usable(e)
            && state_jwt_usable(*state_find(st, live, n, torii_hash64(st->seed, live, n)))) {
            state_jwt_key_add(ks, e, live, n);
        }
    }
    torii_jwt_keyset_seal(ks);
    torii_jwt_keyset_unref(st->jwt_keys);
    st->jwt_keys = ks;
}

/* The CA array readers see; from then on their caches are shared. */
static void state_build_cas(struct torii_pki_state *st)
{
    struct snap_cas *c = torii_xcalloc(1, sizeof(*c) + st->n_cas * sizeof(c->ca[0]));

    atomic_init(&c->ref, 1);
    for (size_t i = 0; i < st->n_cas; i++) {
        const struct pki_ent *e = st->cas[i];
        struct snap_ca *s = &c->ca[c->n++];

        s->id = torii_xstrdup(e->id);
        s->signer = signer_ref(e->ca->signer);
        s->der = blob_ref(e->ca->der);
        s->crl = blob_ref(e->ca->crl);
        s->cache = cache_ref(e->ca->cache);
        memcpy(s->subject_hash, e->ca->subject_hash, STATE_HASH);
        s->ids = e->ca->ids;
        e->ca->cache_shared = 1;
    }
    snap_cas_unref(st->snap_cas);
    st->snap_cas = c;
    st->cas_dirty = 0;
}

static void state_publish_locked(struct torii_pki_state *st)
{
    struct pki_snap *s = torii_xcalloc(1, sizeof(*s));
    struct pki_snap *old;
    int64_t now_ms = torii_clock_now_ms();

    if (st->jwks_dirty || st->jwks == NULL || st->jwt_keys == NULL) {
        state_build_jwt_keys(st);
        state_build_jwks(st);
    }
    for (size_t i = 0; i < st->n_cas; i++) {
        struct pki_ent *e = st->cas[i];
        if (e->ca->signer != NULL && (e->ca->crl_dirty || e->ca->crl == NULL)) {
            state_build_crl(st, e, now_ms);
            st->cas_dirty = 1;
        }
    }
    if (st->cas_dirty || st->snap_cas == NULL) {
        state_build_cas(st);
    }
    atomic_init(&s->ref, 1);
    s->seed = st->seed;
    s->jwks = blob_ref(st->jwks);
    s->jwt_keys = torii_jwt_keyset_ref(st->jwt_keys);
    atomic_fetch_add_explicit(&st->snap_cas->ref, 1, memory_order_relaxed);
    s->cas = st->snap_cas;
    s->certs = torii_pki__pmap_share(&st->view);
    s->n_certs = st->n_view;
    s->staples = torii_pki__pmap_share(&st->staples);
    s->n_staples = st->staples.count;
    s->ocsp_next_update_s = st->o.ocsp_next_update_s;
    s->ocsp_cache_s = st->o.ocsp_cache_s;
    (void)pthread_mutex_lock(&st->snap_lock);
    old = st->snap;
    st->snap = s;
    st->publishes++;
    (void)pthread_mutex_unlock(&st->snap_lock);
    snap_unref(old);
    (void)pthread_cond_signal(&st->wake);
}

/* ---- readers ------------------------------------------------------------------------------- */

static struct pki_snap *state_acquire(struct torii_pki_state *st)
{
    struct pki_snap *s;

    (void)pthread_mutex_lock(&st->snap_lock);
    s = st->snap;
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->ref, 1, memory_order_relaxed);
    }
    (void)pthread_mutex_unlock(&st->snap_lock);
    return s;
}

static int snap_ca_id_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct snap_ca *)elem)->id);
}

static const struct snap_ca *snap_ca_by_id(const struct pki_snap *s, const char *id)
{
    if (id == NULL || s->cas->n == 0) {
        return NULL;
    }
    return bsearch(id, s->cas->ca, s->cas->n, sizeof(s->cas->ca[0]), snap_ca_id_cmp);
}

/* The signing CA named by a CertID's issuer hashes. */
static const struct snap_ca *snap_ca_by_hashes(const struct pki_snap *s, const char *alg,
                                               const unsigned char *nh, size_t nh_len,
                                               const unsigned char *kh, size_t kh_len)
{
    int sha1 = strcmp(alg, "SHA1") == 0;
    int sha256 = strcmp(alg, "SHA256") == 0;

    for (size_t i = 0; i < s->cas->n; i++) {
        const struct snap_ca *c = &s->cas->ca[i];
        if (c->signer == NULL) {
            continue;
        }
        if (sha1 && nh_len == SHA_DIGEST_LENGTH && kh_len == SHA_DIGEST_LENGTH
            && memcmp(nh, c->ids.sha1_name, nh_len) == 0
            && memcmp(kh, c->ids.sha1_key, kh_len) == 0) {
            return c;
        }
        if (sha256 && nh_len == SHA256_DIGEST_LENGTH && kh_len == SHA256_DIGEST_LENGTH
            && memcmp(nh, c->ids.sha256_name, nh_len) == 0
            && memcmp(kh, c->ids.sha256_key, kh_len) == 0) {
            return c;
        }
    }
    return NULL;
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

static const struct view_val *snap_cert_find(const struct pki_snap *s, const unsigned char *issuer,
                                             const char *serial_hex)
{
    unsigned char key[STATE_HASH + TORII_PKI_SERIAL_HEX_MAX];
    size_t slen = strlen(serial_hex);
    const struct view_leaf *l;

    if (slen >= TORII_PKI_SERIAL_HEX_MAX) {
        return NULL;
    }
    memcpy(key, issuer, STATE_HASH);
    memcpy(key + STATE_HASH, serial_hex, slen);
    l = (const struct view_leaf *)torii_pki__pmap_get(
        s->certs, torii_hash64(s->seed, key, STATE_HASH + slen), key, STATE_HASH + slen);
    return l != NULL ? view_pick(l) : NULL;
}

struct ocsp_lookup_ctx {
    const struct pki_snap *s;
    int64_t now_ms;
};

/* Status at request time (RFC 6960 2.2): revoked with the stored time and reason; good while
 * in validity; unknown for serials we never issued and for expired certificates. */
static int state_ocsp_lookup(void *arg, const struct torii_pki_certid *id,
                             struct torii_pki_ocsp_answer *ans, const struct torii_pki__ca **signer)
{
    const struct ocsp_lookup_ctx *ctx = arg;
    const struct snap_ca *ca = snap_ca_by_hashes(ctx->s, id->hash_alg, id->name_hash,
                                                 id->name_hash_len, id->key_hash, id->key_hash_len);
    const struct view_val *c;

    if (ca == NULL) {
        return TORII_OK;
    }
    *signer = &ca->signer->ca;
    c = snap_cert_find(ctx->s, ca->subject_hash, id->serial_hex);
    if (c == NULL) {
        return TORII_OK;
    }
    if (c->revoked) {
        ans->status = TORII_PKI_OCSP_REVOKED;
        ans->revoked_at_ms = c->revoked_at_ms;
        ans->reason = (enum torii_pki_reason)c->reason;
    } else if (ctx->now_ms <= c->not_after_ms) {
        ans->status = TORII_PKI_OCSP_GOOD;
    }
    return TORII_OK;
}

/* The CA of a request's first CertID and whether the request carries a nonce. */
static const struct snap_ca *state_req_ca(const struct pki_snap *s, const unsigned char *req,
                                          size_t req_len, int *has_nonce)
{
    const unsigned char *p = req;
    OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
    const struct snap_ca *ca = NULL;
    ASN1_OCTET_STRING *nh = NULL;
    ASN1_OCTET_STRING *kh = NULL;
    ASN1_OBJECT *md = NULL;
    OCSP_CERTID *cid;

    *has_nonce = 1;
    if (r == NULL || p != req + req_len || OCSP_request_onereq_count(r) < 1) {
        goto out;
    }
    *has_nonce = OCSP_REQUEST_get_ext_by_NID(r, NID_id_pkix_OCSP_Nonce, -1) >= 0;
    cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, 0));
    if (cid != NULL && OCSP_id_get0_info(&nh, &md, &kh, NULL, cid) == 1) {
        int nid = OBJ_obj2nid(md);
        ca = snap_ca_by_hashes(s, nid == NID_undef ? "" : OBJ_nid2sn(nid),
                               ASN1_STRING_get0_data(nh), (size_t)ASN1_STRING_length(nh),
                               ASN1_STRING_get0_data(kh), (size_t)ASN1_STRING_length(kh));
    }
out:
    OCSP_REQUEST_free(r);
    ERR_clear_error();
    return ca;
}

static int snap_ocsp(const struct pki_snap *s, const unsigned char *req, size_t req_len,
                     int64_t now_ms, struct pki_blob **out)
{
    struct ocsp_lookup_ctx ctx = {s, now_ms};
    struct torii_errbuf eb = {{0}};
    const struct snap_ca *ca = NULL;
    unsigned char key[STATE_HASH];
    unsigned char *der = NULL;
    size_t der_len = 0;
    int status = -1;
    int has_nonce = 1;
    int rc;

    if (req != NULL && req_len > 0 && req_len < (1u << 20)) {
        ca = state_req_ca(s, req, req_len, &has_nonce);
    }
    if (s->ocsp_cache_s == 0) {
        ca = NULL; /* caching disabled */
    }
    if (ca != NULL && !has_nonce && ca->cache != NULL) {
        (void)SHA256(req, req_len, key);
        *out = cache_get(ca->cache, key, now_ms);
        if (*out != NULL) {
            return TORII_OK;
        }
    }
    rc = torii_pki__ocsp_respond(req, req_len, state_ocsp_lookup, &ctx, now_ms,
                                 s->ocsp_next_update_s, &der, &der_len, &status, &eb);
    if (rc != TORII_OK) {
        return rc;
    }
    *out = blob_new(der, der_len);
    free(der);
    if (ca != NULL && !has_nonce && ca->cache != NULL && status == 0) {
        cache_put(ca->cache, key, *out, now_ms + s->ocsp_cache_s * 1000);
    }
    return TORII_OK;
}

int torii_pki_state_ocsp(struct torii_pki_state *st, const unsigned char *req, size_t req_len,
                         unsigned char **body, size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    struct pki_blob *b = NULL;
    int rc;

    if (s == NULL) {
        return TORII_ENOTFOUND;
    }
    rc = snap_ocsp(s, req, req_len, torii_clock_now_ms(), &b);
    if (rc == TORII_OK) {
        rc = blob_copy_out(b, body, len);
    }
    blob_unref(b);
    snap_unref(s);
    return rc;
}

int torii_pki_state_jwks(struct torii_pki_state *st, char **body, size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    int rc = TORII_ENOTFOUND;

    if (s != NULL && s->jwks != NULL) {
        rc = blob_copy_out(s->jwks, (unsigned char **)(void *)body, len);
    } else if (s != NULL) {
        *body = torii_xstrdup("{\"keys\":[]}");
        *len = strlen(*body);
        rc = TORII_OK;
    }
    snap_unref(s);
    return rc;
}

struct torii_jwt_keyset *torii_pki_state_jwt_keys(struct torii_pki_state *st)
{
    struct pki_snap *s = state_acquire(st);
    struct torii_jwt_keyset *ks = NULL;

    if (s != NULL && s->jwt_keys != NULL) {
        ks = torii_jwt_keyset_ref(s->jwt_keys);
    }
    snap_unref(s);
    if (ks == NULL) {
        ks = torii_jwt_keyset_new();
        torii_jwt_keyset_seal(ks);
    }
    return ks;
}

int torii_pki_state_ca_der(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct snap_ca *ca = s != NULL ? snap_ca_by_id(s, id) : NULL;
    int rc = TORII_ENOTFOUND;

    if (ca != NULL && ca->der != NULL) {
        rc = blob_copy_out(ca->der, body, len);
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_crl(struct torii_pki_state *st, const char *id, unsigned char **body,
                        size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct snap_ca *ca = s != NULL ? snap_ca_by_id(s, id) : NULL;
    int rc = TORII_ENOTFOUND;

    if (ca != NULL && ca->crl != NULL) {
        rc = blob_copy_out(ca->crl, body, len);
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_staple(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct staple_leaf *hit = NULL;
    int rc = TORII_ENOTFOUND;

    if (s != NULL && id != NULL && s->staples != NULL) {
        size_t n = strlen(id);
        hit = (const struct staple_leaf *)torii_pki__pmap_get(s->staples,
                                                              torii_hash64(s->seed, id, n), id, n);
    }
    if (hit != NULL) {
        rc = blob_copy_out(hit->der, body, len);
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_staple_cb(void *st, const char *id, unsigned char **body, size_t *len)
{
    return torii_pki_state_staple(st, id, body, len);
}

void torii_pki_state_stat_get(struct torii_pki_state *st, struct torii_pki_state_stat *out)
{
    struct pki_snap *s = state_acquire(st);

    memset(out, 0, sizeof(*out));
    if (s != NULL) {
        out->certs = s->n_certs;
        out->cas = s->cas->n;
        for (size_t i = 0; i < s->cas->n; i++) {
            out->signers += s->cas->ca[i].signer != NULL;
        }
        out->staples = s->n_staples;
    }
    (void)pthread_mutex_lock(&st->snap_lock);
    out->publishes = st->publishes;
    (void)pthread_mutex_unlock(&st->snap_lock);
    snap_unref(s);
}

/* ---- feed ---------------------------------------------------------------------------------- */

/* wlock held. */
static void state_feed(struct torii_pki_state *st, enum torii_store_op_kind kind,
                       const struct torii_store_rec *rec)
{
    struct pki_ent *e = NULL;

    if (rec->id_len == 0 || rec->id_len > TORII_STORE_ID_MAX) {
        return;
    }
    if (kind != TORII_STORE_DELETE) {
        e = ent_build(st, rec);
        if (e == NULL) {
            char esc[128];
            torii_log(TORII_LOG_WARN, "pki: certificate left out of the PKI view (id=%s)",
                      torii_log_escape(rec->id, rec->id_len, esc, sizeof(esc)));
        }
    }
    state_apply(st, rec->id, rec->id_len, e);
}

/* wlock for a feed call: tells a refresher signing a long batch to make way. */
static void state_feed_lock(struct torii_pki_state *st)
{
    atomic_fetch_add_explicit(&st->writers_waiting, 1, memory_order_relaxed);
    (void)pthread_mutex_lock(&st->wlock);
    atomic_fetch_sub_explicit(&st->writers_waiting, 1, memory_order_relaxed);
}

void torii_pki_state_watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                              const struct torii_store_rec *rec, void *arg)
{
    struct torii_pki_state *st = arg;

    if (b != TORII_STORE_CERTS) {
        return;
    }
    state_feed_lock(st);
    state_feed(st, kind, rec);
    state_publish_locked(st);
    (void)pthread_mutex_unlock(&st->wlock);
}

int torii_pki_state_load_cb(const struct torii_store_rec *rec, void *arg)
{
    struct torii_pki_state *st = arg;

    state_feed_lock(st);
    state_feed(st, TORII_STORE_PUT, rec);
    (void)pthread_mutex_unlock(&st->wlock);
    return TORII_OK;
}

void torii_pki_state_publish(struct torii_pki_state *st)
{
    state_feed_lock(st);
    state_publish_locked(st);
    (void)pthread_mutex_unlock(&st->wlock);
}

/* ---- refresher ----------------------------------------------------------------------------- */

/* A DER OCSPRequest for e's serial, issued by ca (SHA-1 CertID, what clients send). */
static int state_staple_request(const struct pki_ca *ca, const struct pki_ent *e,
                                unsigned char **der, size_t *len)
{
    int rc = TORII_ETLS;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *cid = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    unsigned char *buf = NULL;
    int n;

    if (req == NULL || BN_hex2bn(&bn, e->serial_hex) == 0
        || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL) {
        goto out;
    }
    cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca->cert),
                           X509_get0_pubkey_bitstr(ca->cert), serial);
    if (cid == NULL || OCSP_request_add0_id(req, cid) == NULL) {
        OCSP_CERTID_free(cid);
        goto out;
    }
    n = i2d_OCSP_REQUEST(req, &buf);
    if (n > 0) {
        *der = torii_xmalloc((size_t)n);
        memcpy(*der, buf, (size_t)n);
        *len = (size_t)n;
        rc = TORII_OK;
    }
out:
    OPENSSL_free(buf);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return rc;
}

/* Sign e's staple with the snapshot s (e is served and issued by signer ca). Returns 1 when
 * the staple changed. */
static int state_staple_sign(struct torii_pki_state *st, const struct pki_snap *s,
                             const struct pki_ent *ca, struct pki_ent *e, int64_t now_ms)
{
    unsigned char *req = NULL;
    size_t req_len = 0;
    struct pki_blob *resp = NULL;
    int changed = 0;

    if (state_staple_request(ca->ca, e, &req, &req_len) == TORII_OK
        && snap_ocsp(s, req, req_len, now_ms, &resp) == TORII_OK) {
        blob_unref(e->staple);
        e->staple = resp;
        e->staple_refresh_ms = now_ms + st->o.ocsp_next_update_s * 1000 / 2;
        staple_set(st, e, resp);
        changed = 1;
    } else {
        /* Try again on a later pass rather than spinning. */
        e->staple_refresh_ms = now_ms + 60000;
    }
    free(req);
    return changed;
}

/* 1 when candidate e (a member of a signed group) needs a staple at now_ms. */
static int state_staple_due(const struct pki_ent *e, int64_t now_ms)
{
    return ent_served(e, now_ms) && (e->staple == NULL || now_ms >= e->staple_refresh_ms);
}

/* Sign up to a batch of due staples and re-sign due CRLs. full: every candidate (the served
 * certificates of each signed group) is checked, and what is due beyond the batch is queued,
 * so the following passes work through the queue instead of rescanning; else only the queue
 * (new candidates, and the rest of a full pass) is worked on. Returns 1 when more work is
 * left. wlock held. */
static int state_refresh_locked(struct torii_pki_state *st, int64_t now_ms, int full)
{
    struct pki_snap *s = NULL;
    int64_t next_ms = now_ms + STATE_REFRESH_MAX_MS;
    int changed = 0;
    int signed_n = 0;
    int more = 0;

    for (size_t i = 0; i < st->n_cas; i++) {
        struct pki_ca *c = st->cas[i]->ca;
        if (c->signer != NULL && c->crl != NULL && now_ms >= c->crl_refresh_ms) {
            c->crl_dirty = 1;
            changed = 1;
        }
    }
    if (changed) {
        state_publish_locked(st);
        changed = 0;
    }
    s = st->snap;
    if (s == NULL) {
        return 0;
    }
    if (full) {
        for (size_t i = 0; i < st->n_cas; i++) {
            struct pki_ent *ca = st->cas[i];
            struct pki_group *g = ca->ca->grp;

            /* Each signed group once, through the signer that answers for it. */
            if (ca->ca->signer == NULL || state_signer_for(g) != ca) {
                continue;
            }
            for (struct pki_ent *e = g->live; e != NULL; e = e->m_next) {
                if (e == ca || !ent_served(e, now_ms)) {
                    continue;
                }
                if (!state_staple_due(e, now_ms)) {
                    next_ms = e->staple_refresh_ms < next_ms ? e->staple_refresh_ms : next_ms;
                    continue;
                }
                if (signed_n >= STATE_STAPLE_BATCH) {
                    if (!e->pending) {
                        pending_push(st, e);
                    }
                    more = 1;
                    continue;
                }
                signed_n++;
                pending_unlink(st, e);
                changed |= state_staple_sign(st, s, ca, e, now_ms);
                next_ms = e->staple_refresh_ms < next_ms ? e->staple_refresh_ms : next_ms;
            }
        }
        if (!more) {
            /* Every candidate was seen: what is still queued needs nothing now. */
            while (st->pending != NULL) {
                pending_unlink(st, st->pending);
            }
        }
        st->last_full_ms = now_ms;
        st->next_full_ms = next_ms;
    } else {
        while (st->pending != NULL) {
            struct pki_ent *e = st->pending;
            struct pki_ent *ca = state_signer_for(e->grp);

            if (ca == NULL || ca == e || !state_staple_due(e, now_ms)) {
                pending_unlink(st, e);
                continue;
            }
            if (signed_n >= STATE_STAPLE_BATCH) {
                more = 1;
                break;
            }
            signed_n++;
            pending_unlink(st, e);
            changed |= state_staple_sign(st, s, ca, e, now_ms);
            if (e->staple_refresh_ms < st->next_full_ms) {
                st->next_full_ms = e->staple_refresh_ms;
            }
        }
    }
    if (changed) {
        state_publish_locked(st);
    }
    return more;
}

void torii_pki_state_refresh(struct torii_pki_state *st, int64_t now_ms)
{
    (void)pthread_mutex_lock(&st->wlock);
    if (state_refresh_locked(st, now_ms, 1)) {
        while (state_refresh_locked(st, now_ms, 0)) {
        }
    }
    (void)pthread_mutex_unlock(&st->wlock);
}

struct persist_item {
    char key[sizeof(STATE_META_PREFIX) + TORII_STORE_ID_MAX];
    char val[24];
};

static void *state_thread(void *arg)
{
    struct torii_pki_state *st = arg;
    int timed_out = 1; /* the first pass is a full one */

    (void)pthread_mutex_lock(&st->wlock);
    while (!st->stop) {
        struct persist_item *items = NULL;
        size_t n = 0;
        struct timespec ts;
        int64_t now_ms = torii_clock_now_ms();
        /* A full pass when woken by the clock, when something is due, and at least every
         * STATE_REFRESH_MAX_MS however often publishes wake us; else the queue only. */
        int full = timed_out || now_ms >= st->next_full_ms || now_ms < st->last_full_ms
                   || now_ms - st->last_full_ms >= STATE_REFRESH_MAX_MS;
        int more = state_refresh_locked(st, now_ms, full);

        for (size_t i = 0; i < st->n_cas; i++) {
            const struct pki_ent *c = st->cas[i];
            if (!c->ca->crl_persist) {
                continue;
            }
            c->ca->crl_persist = 0;
            items = torii_xrealloc(items, (n + 1) * sizeof(*items));
            (void)snprintf(items[n].key, sizeof(items[n].key), STATE_META_PREFIX "%s", c->id);
            (void)snprintf(items[n].val, sizeof(items[n].val), "%llu",
                           (unsigned long long)c->ca->crl_number);
            n++;
        }
        if (n > 0 && st->o.meta_put != NULL) {
            /* Outside wlock: a store write must never wait for a watcher holding wlock. */
            (void)pthread_mutex_unlock(&st->wlock);
            for (size_t i = 0; i < n; i++) {
                if (st->o.meta_put(st->o.meta_arg, items[i].key, items[i].val) != TORII_OK) {
                    torii_log(TORII_LOG_WARN, "pki: CRL number not persisted (key=%s)",
                              items[i].key);
                }
            }
            (void)pthread_mutex_lock(&st->wlock);
        }
        free(items);
        timed_out = 0;
        if (more && atomic_load_explicit(&st->writers_waiting, memory_order_relaxed) > 0) {
            /* Between batches, a waiting feed call (a store writer, blocked in its watcher)
             * goes first: wait for its publish, which signals us (bounded, in case it does
             * not publish). A plain unlock/lock would just take the mutex back. */
            (void)clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += STATE_YIELD_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&st->wake, &st->wlock, &ts);
        }
        if (more || st->stop) {
            continue;
        }
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += STATE_REFRESH_MAX_MS / 1000;
        timed_out = pthread_cond_timedwait(&st->wake, &st->wlock, &ts) == ETIMEDOUT;
    }
    (void)pthread_mutex_unlock(&st->wlock);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

int torii_pki_state_new(const struct torii_pki_state_opts *o, struct torii_pki_state **out)
{
    struct torii_pki_state *st;
    pthread_condattr_t ca;

    if (o == NULL || o->ocsp_next_update_s < 0 || o->ocsp_cache_s < 0 || o->crl_next_update_s < 0) {
        return TORII_EINVAL;
    }
    st = torii_xcalloc(1, sizeof(*st));
    st->o = *o;
    if (st->o.ocsp_next_update_s == 0) {
        st->o.ocsp_next_update_s = 3600;
    }
    if (st->o.crl_next_update_s == 0) {
        st->o.crl_next_update_s = 86400;
    }
    if (RAND_bytes((unsigned char *)&st->seed, sizeof(st->seed)) != 1) {
        ERR_clear_error();
        st->seed = (uint64_t)torii_clock_mono_us() ^ (uint64_t)(uintptr_t)st;
    }
    st->ids = torii_xcalloc(STATE_BUCKETS_MIN, sizeof(*st->ids));
    st->ids_mask = STATE_BUCKETS_MIN - 1;
    st->grps = torii_xcalloc(STATE_BUCKETS_MIN, sizeof(*st->grps));
    st->grps_mask = STATE_BUCKETS_MIN - 1;
    st->rec = torii_xmalloc(sizeof(*st->rec));
    atomic_init(&st->writers_waiting, 0);
    TORII_ASSERT(pthread_mutex_init(&st->wlock, NULL) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->snap_lock, NULL) == 0);
    TORII_ASSERT(pthread_condattr_init(&ca) == 0);
    TORII_ASSERT(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0);
    TORII_ASSERT(pthread_cond_init(&st->wake, &ca) == 0);
    (void)pthread_condattr_destroy(&ca);
    st->jwks_dirty = 1;
    *out = st;
    return TORII_OK;
}

int torii_pki_state_start(struct torii_pki_state *st)
{
    int err = pthread_create(&st->thread, NULL, state_thread, st);

    if (err != 0) {
        return TORII_EIO;
    }
    st->thread_started = 1;
    return TORII_OK;
}

void torii_pki_state_free(struct torii_pki_state *st)
{
    if (st == NULL) {
        return;
    }
    if (st->thread_started) {
        (void)pthread_mutex_lock(&st->wlock);
        st->stop = 1;
        (void)pthread_cond_signal(&st->wake);
        (void)pthread_mutex_unlock(&st->wlock);
        (void)pthread_join(st->thread, NULL);
    }
    for (size_t b = 0; b <= st->ids_mask; b++) {
        while (st->ids[b] != NULL) {
            struct pki_ent *e = st->ids[b];
            st->ids[b] = e->next;
            ent_free(e);
        }
    }
    for (size_t b = 0; b <= st->grps_mask; b++) {
        while (st->grps[b] != NULL) {
            struct pki_group *g = st->grps[b];
            st->grps[b] = g->next;
            free(g);
        }
    }
    free(st->ids);
    free(st->grps);
    free(st->cas);
    free(st->rec);
    torii_pki__pmap_clear(&st->view);
    torii_pki__pmap_clear(&st->staples);
    blob_unref(st->jwks);
    torii_jwt_keyset_unref(st->jwt_keys);
    snap_cas_unref(st->snap_cas);
    snap_unref(st->snap);
    (void)pthread_cond_destroy(&st->wake);
    (void)pthread_mutex_destroy(&st->snap_lock);
    (void)pthread_mutex_destroy(&st->wlock);
    free(st);
}
