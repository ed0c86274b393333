/* state_refresh.c - the refresher thread of the PKI view: re-signs CRLs before their
 * nextUpdate, signs staples for new candidates and re-signs the due ones in bounded batches
 * (yielding wlock to waiting feed calls), and persists CRL numbers outside wlock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include "state_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

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
        && torii_pki__snap_ocsp(s, req, req_len, now_ms, &resp) == TORII_OK) {
        torii_pki__blob_unref(e->staple);
        e->staple = resp;
        e->staple_refresh_ms = now_ms + st->o.ocsp_next_update_s * 1000 / 2;
        torii_pki__staple_set(st, e, resp);
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
    return torii_pki__ent_served(e, now_ms)
           && (e->staple == NULL || now_ms >= e->staple_refresh_ms);
}

/* Sign up to a batch of due staples and re-sign due CRLs. full: every candidate (the served
 * certificates of each signed group) is checked, and what is due beyond the batch is queued,
 * so the following passes work through the queue instead of rescanning; else only the queue
 * (new candidates, and the rest of a full pass) is worked on. Returns 1 when more work is
 * left. wlock held. */
/* One refresher pass's running totals. */
struct refresh_pass {
    struct pki_snap *s;
    int64_t now_ms;
    int64_t next_ms; /* the earliest staple refresh seen */
    int signed_n;
    int changed;
    int more;
};

/* Mark the CRLs due for re-signing; publish when there are. */
static void state_crls_due(struct torii_pki_state *st, int64_t now_ms)
{
    int changed = 0;

    for (size_t i = 0; i < st->n_cas; i++) {
        struct pki_ca *c = st->cas[i]->ca;
        if (c->signer != NULL && c->crl != NULL && now_ms >= c->crl_refresh_ms) {
            c->crl_dirty = 1;
            changed = 1;
        }
    }
    if (changed) {
        torii_pki__state_publish_locked(st);
    }
}

/* The staples of signed group g (signer ca): signed while the batch has room, queued after. */
static void state_refresh_group(struct torii_pki_state *st, struct pki_ent *ca, struct pki_group *g,
                                struct refresh_pass *p)
{
    for (struct pki_ent *e = g->live; e != NULL; e = e->m_next) {
        if (e == ca || !torii_pki__ent_served(e, p->now_ms)) {
            continue;
        }
        if (state_staple_due(e, p->now_ms) && p->signed_n >= STATE_STAPLE_BATCH) {
            if (!e->pending) {
                torii_pki__pending_push(st, e);
            }
            p->more = 1;
            continue;
        }
        if (state_staple_due(e, p->now_ms)) {
            p->signed_n++;
            torii_pki__pending_unlink(st, e);
            p->changed |= state_staple_sign(st, p->s, ca, e, p->now_ms);
        }
        p->next_ms = e->staple_refresh_ms < p->next_ms ? e->staple_refresh_ms : p->next_ms;
    }
}

/* Every candidate checked; what is due beyond the batch is queued. */
static void state_refresh_full(struct torii_pki_state *st, struct refresh_pass *p)
{
    for (size_t i = 0; i < st->n_cas; i++) {
        struct pki_ent *ca = st->cas[i];

        /* Each signed group once, through the signer that answers for it. */
        if (ca->ca->signer != NULL && torii_pki__state_signer_for(ca->ca->grp) == ca) {
            state_refresh_group(st, ca, ca->ca->grp, p);
        }
    }
    if (!p->more) {
        /* Every candidate was seen: what is still queued needs nothing now. */
        while (st->pending != NULL) {
            torii_pki__pending_unlink(st, st->pending);
        }
    }
    st->last_full_ms = p->now_ms;
    st->next_full_ms = p->next_ms;
}

/* Only the queue (new candidates, and the rest of a full pass). */
static void state_refresh_queue(struct torii_pki_state *st, struct refresh_pass *p)
{
    while (st->pending != NULL) {
        struct pki_ent *e = st->pending;
        struct pki_ent *ca = torii_pki__state_signer_for(e->grp);

        if (ca == NULL || ca == e || !state_staple_due(e, p->now_ms)) {
            torii_pki__pending_unlink(st, e);
            continue;
        }
        if (p->signed_n >= STATE_STAPLE_BATCH) {
            p->more = 1;
            break;
        }
        p->signed_n++;
        torii_pki__pending_unlink(st, e);
        p->changed |= state_staple_sign(st, p->s, ca, e, p->now_ms);
        if (e->staple_refresh_ms < st->next_full_ms) {
            st->next_full_ms = e->staple_refresh_ms;
        }
    }
}

static int state_refresh_locked(struct torii_pki_state *st, int64_t now_ms, int full)
{
    struct refresh_pass p = {.now_ms = now_ms, .next_ms = now_ms + STATE_REFRESH_MAX_MS};

    state_crls_due(st, now_ms);
    p.s = st->snap;
    if (p.s == NULL) {
        return 0;
    }
    if (full) {
        state_refresh_full(st, &p);
    } else {
        state_refresh_queue(st, &p);
    }
    if (p.changed) {
        torii_pki__state_publish_locked(st);
    }
    return p.more;
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
    struct pki_blob *crl; /* shared CRLs: the CRL to publish (a reference) */
    uint64_t number;
};

/* The CA id of an item (its key after the prefix). */
static const char *persist_id(const struct persist_item *it)
{
    return it->key + strlen(STATE_META_PREFIX);
}

/* The CRLs to persist (their numbers) or, shared, to publish; *n of them. wlock held. */
static struct persist_item *state_persist_collect(struct torii_pki_state *st, size_t *n)
{
    struct persist_item *items = NULL;

    *n = 0;
    for (size_t i = 0; i < st->n_cas; i++) {
        struct pki_ca *c = st->cas[i]->ca;
        struct persist_item *it;
        if (!c->crl_persist || (st->has_share && c->crl_pend == NULL)) {
            continue;
        }
        c->crl_persist = 0;
        items = torii_xrealloc(items, (*n + 1) * sizeof(*items));
        it = &items[(*n)++];
        (void)snprintf(it->key, sizeof(it->key), STATE_META_PREFIX "%s", st->cas[i]->id);
        it->number = st->has_share ? c->crl_pend_number : c->crl_number;
        (void)snprintf(it->val, sizeof(it->val), "%llu", (unsigned long long)it->number);
        it->crl = st->has_share ? torii_pki__blob_ref(c->crl_pend) : NULL;
    }
    return items;
}

/* A published CRL is served (unless a newer one was adopted meanwhile); a CRL that could not be
 * published is signed again at the next pass (1: retry soon). wlock held. */
static int state_published(struct torii_pki_state *st, const struct persist_item *it, int rc)
{
    const char *id = persist_id(it);
    struct pki_ent **pp =
        torii_pki__state_find(st, id, strlen(id), torii_hash64(st->seed, id, strlen(id)));
    struct pki_ca *c = *pp != NULL ? (*pp)->ca : NULL;

    if (c == NULL || c->crl_pend_number != it->number) {
        return 0; /* replaced meanwhile: its own publish follows */
    }
    torii_pki__blob_unref(c->crl_pend);
    c->crl_pend = NULL;
    if (rc == TORII_OK && it->number > c->crl_adopted) {
        torii_pki__crl_install(st, c, torii_pki__blob_ref(it->crl), it->number);
    } else if (rc != TORII_OK) {
        c->crl_dirty = 1;
    }
    return rc != TORII_OK;
}

/* Persist the numbers (meta_put) or publish the shared CRLs, outside wlock: a store write or an
 * etcd request must never wait for a watcher holding wlock. Returns 1 when a publish failed
 * (retry soon). wlock held on entry and exit. */
static int state_persist(struct torii_pki_state *st)
{
    size_t n = 0;
    struct persist_item *items = state_persist_collect(st, &n);
    int *rcs = n > 0 ? torii_xcalloc(n, sizeof(*rcs)) : NULL;
    struct torii_pki_crl_share sh = st->share; /* as collected: attach waits for share_calls */
    int shared = st->has_share;
    int retry = 0;

    if (n == 0 || (!shared && st->o.meta_put == NULL)) {
        goto out;
    }
    st->share_calls++;
    (void)pthread_mutex_unlock(&st->wlock);
    for (size_t i = 0; i < n; i++) {
        struct torii_errbuf eb = {{0}};
        if (!shared) {
            rcs[i] = st->o.meta_put(st->o.meta_arg, items[i].key, items[i].val);
        } else {
            rcs[i] = sh.publish(sh.ctx, persist_id(&items[i]), items[i].number, items[i].crl->data,
                                items[i].crl->len, &eb);
        }
        if (rcs[i] != TORII_OK) {
            torii_log(TORII_LOG_WARN, "pki: CRL %llu of CA %s not %s: %s",
                      (unsigned long long)items[i].number, persist_id(&items[i]),
                      shared ? "stored for the fleet" : "number persisted",
                      eb.msg[0] != '\0' ? eb.msg : torii_strerror(rcs[i]));
        }
    }
    (void)pthread_mutex_lock(&st->wlock);
    if (--st->share_calls == 0) {
        (void)pthread_cond_broadcast(&st->share_idle);
    }
    for (size_t i = 0; shared && st->has_share && i < n; i++) {
        retry |= state_published(st, &items[i], rcs[i]);
    }
out:
    for (size_t i = 0; i < n; i++) {
        torii_pki__blob_unref(items[i].crl);
    }
    free(rcs);
    free(items);
    return retry;
}

/* Shared CRLs: a node that just became the signer re-signs every CRL (numbered above the
 * fleet's); a retry due re-signs the dirty ones. 1 when CRLs were re-signed (to publish).
 * wlock held. */
static int state_share_look(struct torii_pki_state *st, int retry)
{
    int signer;

    if (!st->has_share) {
        return 0;
    }
    signer = st->share.signer(st->share.ctx);
    if (signer && !st->crl_signer) {
        for (size_t i = 0; i < st->n_cas; i++) {
            st->cas[i]->ca->crl_dirty = 1;
        }
        retry = 1;
    }
    st->crl_signer = signer;
    if (retry && signer) {
        torii_pki__state_publish_locked(st);
        return 1;
    }
    return 0;
}

/* Wait until woken or the next full pass is due (STATE_REFRESH_MAX_MS); with shared CRLs in
 * slices of at most a second, looking at the signer between them. 1 when the full pass is
 * due. wlock held. */
static int state_wait(struct torii_pki_state *st, int retry)
{
    int64_t until = torii_clock_mono_us() + (int64_t)STATE_REFRESH_MAX_MS * 1000;

    for (int i = 0; i < STATE_REFRESH_MAX_MS / 1000 + 1 && !st->stop; i++) {
        int64_t left = until - torii_clock_mono_us();
        int64_t slice = st->has_share && left > 1000000 ? 1000000 : left;
        struct timespec ts;
        if (left <= 0) {
            return 1;
        }
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(slice / 1000000);
        ts.tv_nsec += (long)(slice % 1000000) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&st->wake, &st->wlock, &ts) != ETIMEDOUT) {
            return 0;
        }
        if (state_share_look(st, retry)) {
            return 0; /* the refresher's loop publishes them */
        }
        retry = 0;
    }
    return 1;
}

/* Between staple batches, a waiting feed call (a store writer, blocked in its watcher) goes
 * first: wait for its publish, which signals us (bounded, in case it does not publish). A
 * plain unlock/lock would just take the mutex back. wlock held. */
static void state_yield(struct torii_pki_state *st)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += STATE_YIELD_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(&st->wake, &st->wlock, &ts);
}

static void *state_thread(void *arg)
{
    struct torii_pki_state *st = arg;
    int timed_out = 1; /* the first pass is a full one */

    (void)pthread_mutex_lock(&st->wlock);
    while (!st->stop) {
        int64_t now_ms = torii_clock_now_ms();
        /* A full pass when woken by the clock, when something is due, and at least every
         * STATE_REFRESH_MAX_MS however often publishes wake us; else the queue only. */
        int full = timed_out || now_ms >= st->next_full_ms || now_ms < st->last_full_ms
                   || now_ms - st->last_full_ms >= STATE_REFRESH_MAX_MS;
        int more;
        int retry;

        (void)state_share_look(st, 0);
        more = state_refresh_locked(st, now_ms, full);
        retry = state_persist(st);
        timed_out = 0;
        if (more && atomic_load_explicit(&st->writers_waiting, memory_order_relaxed) > 0) {
            state_yield(st);
        }
        if (more || st->stop) {
            continue;
        }
        timed_out = state_wait(st, retry);
    }
    (void)pthread_mutex_unlock(&st->wlock);
    return NULL;
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
