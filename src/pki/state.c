/* state.c - the PKI view's lifecycle (new, free) and the store feed (watch and load
 * callbacks, publish). The design is described in state_int.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "state_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

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
        e = torii_pki__ent_build(st, rec);
        if (e == NULL) {
            char esc[128];
            torii_log(TORII_LOG_WARN, "pki: certificate left out of the PKI view (id=%s)",
                      torii_log_escape(rec->id, rec->id_len, esc, sizeof(esc)));
        }
    }
    torii_pki__state_apply(st, rec->id, rec->id_len, e);
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
    torii_pki__state_publish_locked(st);
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

/* torii_pki_state_load's callback: the feed lock is already held. */
static int state_load_locked_cb(const struct torii_store_rec *rec, void *arg)
{
    state_feed(arg, TORII_STORE_PUT, rec);
    return TORII_OK;
}

int torii_pki_state_load(struct torii_pki_state *st, torii_pki_state_source_fn each, void *src)
{
    int rc;

    state_feed_lock(st);
    rc = each(src, state_load_locked_cb, st);
    if (rc == TORII_OK) {
        torii_pki__state_publish_locked(st);
    }
    (void)pthread_mutex_unlock(&st->wlock);
    return rc;
}

void torii_pki_state_publish(struct torii_pki_state *st)
{
    state_feed_lock(st);
    torii_pki__state_publish_locked(st);
    (void)pthread_mutex_unlock(&st->wlock);
}
/* ---- CRLs shared by a fleet ----------------------------------------------------------------- */

void torii_pki_state_crl_share(struct torii_pki_state *st, const struct torii_pki_crl_share *sh)
{
    state_feed_lock(st);
    while (st->share_calls > 0) { /* a publish in flight still uses the old ctx */
        (void)pthread_cond_wait(&st->share_idle, &st->wlock);
    }
    st->share = sh != NULL ? *sh : (struct torii_pki_crl_share){NULL, NULL, NULL};
    st->has_share = st->share.signer != NULL && st->share.publish != NULL;
    st->crl_signer = 0;
    for (size_t i = 0; st->has_share && i < st->n_cas; i++) {
        struct pki_ca *c = st->cas[i]->ca; /* only the fleet's CRLs are served from now on */
        torii_pki__blob_unref(c->crl);
        c->crl = NULL;
        c->crl_adopted = 0;
        st->cas_dirty = 1;
    }
    if (st->has_share) {
        torii_pki__state_publish_locked(st);
    }
    (void)pthread_cond_signal(&st->wake);
    (void)pthread_mutex_unlock(&st->wlock);
}

int torii_pki_state_crl_adopt(struct torii_pki_state *st, const char *ca_id,
                              const unsigned char *der, size_t len, uint64_t *number,
                              struct torii_errbuf *eb)
{
    size_t id_len = strlen(ca_id);
    struct pki_ent **pp;
    struct pki_ca *c;
    uint64_t n = 0;
    int rc = TORII_OK;

    state_feed_lock(st);
    pp = torii_pki__state_find(st, ca_id, id_len, torii_hash64(st->seed, ca_id, id_len));
    c = *pp != NULL ? (*pp)->ca : NULL;
    TORII_ENSURE(c != NULL && c->der != NULL,
                 torii_errf(eb, TORII_ENOTFOUND, "pki: no CA %.80s for its CRL", ca_id));
    TORII_TRY(torii_pki_crl_check(c->der->data, c->der->len, der, len, &n, eb));
    if (number != NULL) {
        *number = n;
    }
    TORII_ENSURE(n > c->crl_adopted, TORII_EEXIST);
    torii_pki__crl_install(st, c, torii_pki__blob_new(der, len), n);
out:
    (void)pthread_mutex_unlock(&st->wlock);
    return rc;
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
    st->ids_mask = torii_pki__state_buckets(o->expected) - 1;
    st->ids = torii_xcalloc(st->ids_mask + 1, sizeof(struct pki_ent *));
    st->grps_mask = st->ids_mask;
    st->grps = torii_xcalloc(st->grps_mask + 1, sizeof(struct pki_group *));
    st->rec = torii_xmalloc(sizeof(*st->rec));
    atomic_init(&st->writers_waiting, 0);
    TORII_ASSERT(pthread_mutex_init(&st->wlock, NULL) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->snap_lock, NULL) == 0);
    TORII_ASSERT(pthread_condattr_init(&ca) == 0);
    TORII_ASSERT(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0);
    TORII_ASSERT(pthread_cond_init(&st->wake, &ca) == 0);
    TORII_ASSERT(pthread_cond_init(&st->share_idle, NULL) == 0);
    (void)pthread_condattr_destroy(&ca);
    st->jwks_dirty = 1;
    *out = st;
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
            torii_pki__ent_free(e);
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
    torii_pki__pmap_clear(&st->staples);
    torii_pki__blob_unref(st->jwks);
    torii_jwt_keyset_unref(st->jwt_keys);
    torii_pki__snap_cas_unref(st->snap_cas);
    torii_pki__snap_unref(st->snap);
    (void)pthread_cond_destroy(&st->wake);
    (void)pthread_cond_destroy(&st->share_idle);
    (void)pthread_mutex_destroy(&st->snap_lock);
    (void)pthread_mutex_destroy(&st->wlock);
    free(st);
}
