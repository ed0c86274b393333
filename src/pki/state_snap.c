/* state_snap.c - the snapshots of the PKI view (state_int.h): the rebuilds a publish runs
 * (CRLs, JWKS, JWT keys, the CA array) and the publish itself, which swaps the snapshot
 * pointer under snap_lock (wlock held; readers only take snap_lock to load the pointer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "state_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

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

int torii_pki__crl_signer(const struct torii_pki_state *st)
{
    return !st->has_share || st->share.signer(st->share.ctx);
}

void torii_pki__crl_install(struct torii_pki_state *st, struct pki_ca *c, struct pki_blob *crl,
                            uint64_t n)
{
    torii_pki__blob_unref(c->crl);
    c->crl = crl;
    c->crl_adopted = n;
    if (n > c->crl_number) {
        c->crl_number = n;
    }
    c->crl_refresh_ms = torii_clock_now_ms() + st->o.crl_next_update_s * 1000 / 2;
    st->cas_dirty = 1;
    torii_pki__state_publish_locked(st);
}

/* A CRL built: served at once (a single node), or held until the fleet stored it. */
static void state_crl_built(struct torii_pki_state *st, struct pki_ca *ca, uint64_t number,
                            unsigned char *der, size_t der_len, int64_t now_ms)
{
    struct pki_blob **slot = st->has_share ? &ca->crl_pend : &ca->crl;

    torii_pki__blob_unref(*slot);
    *slot = torii_pki__blob_new(der, der_len);
    if (st->has_share) {
        ca->crl_pend_number = number;
    }
    ca->crl_number = number;
    ca->crl_persist = 1;
    ca->crl_refresh_ms = now_ms + st->o.crl_next_update_s * 1000 / 2;
}

/* The CRL of signer e: the revoked certificates of its subject group (not e itself). A node
 * of a fleet that does not sign keeps serving the fleet's. */
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

    if (!torii_pki__crl_signer(st) || (!ca->crl_dirty && ca->crl_pend != NULL)) {
        ca->crl_dirty = 0;
        return;
    }
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
    if (torii_pki_crl_build(e->entity, st->o.kek, rv, n, number, now_ms, st->o.crl_next_update_s,
                            &der, &der_len, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "pki: CRL not built: %s (ca=%s)", eb.msg, e->id);
    } else {
        state_crl_built(st, ca, number, der, der_len, now_ms);
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
            v = torii_xrealloc(v, cap * sizeof(struct pki_ent *));
        }
        v[n++] = e;
    }
    if (n > 1) {
        qsort(v, n, sizeof(struct pki_ent *), ent_id_cmp);
    }
    for (size_t i = 0; i < n && arr != NULL; i++) {
        (void)json_array_append(arr, v[i]->entity);
    }
    doc = torii_pki_jwks_build(arr, st->o.kek);
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text != NULL) {
        torii_pki__blob_unref(st->jwks);
        st->jwks = torii_pki__blob_new(text, strlen(text));
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
            && state_jwt_usable(
                *torii_pki__state_find(st, live, n, torii_hash64(st->seed, live, n)))) {
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
        s->signer = torii_pki__signer_ref(e->ca->signer);
        s->der = torii_pki__blob_ref(e->ca->der);
        s->crl = torii_pki__blob_ref(e->ca->crl);
        s->cache = torii_pki__cache_ref(e->ca->cache);
        memcpy(s->subject_hash, e->ca->subject_hash, STATE_HASH);
        s->ids = e->ca->ids;
        e->ca->cache_shared = 1;
    }
    torii_pki__snap_cas_unref(st->snap_cas);
    st->snap_cas = c;
    st->cas_dirty = 0;
}

void torii_pki__state_publish_locked(struct torii_pki_state *st)
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
    s->jwks = torii_pki__blob_ref(st->jwks);
    s->jwt_keys = torii_jwt_keyset_ref(st->jwt_keys);
    atomic_fetch_add_explicit(&st->snap_cas->ref, 1, memory_order_relaxed);
    s->cas = st->snap_cas;
    s->n_certs = st->n_signed;
    s->serial = st->o.serial;
    s->serial_arg = st->o.serial_arg;
    s->staples = torii_pki__pmap_share(&st->staples);
    s->n_staples = st->staples.count;
    s->ocsp_next_update_s = st->o.ocsp_next_update_s;
    s->ocsp_cache_s = st->o.ocsp_cache_s;
    (void)pthread_mutex_lock(&st->snap_lock);
    old = st->snap;
    st->snap = s;
    st->publishes++;
    (void)pthread_mutex_unlock(&st->snap_lock);
    torii_pki__snap_unref(old);
    (void)pthread_cond_signal(&st->wake);
}
