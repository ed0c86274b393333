/* certstats.c - the certificate gauges of /metrics (certstats.h): an array of what a scrape
 * needs per certificate with a hash index by id (open addressing, linear probing, deletion by
 * backward shift), updated by the store's change feed under a mutex: a write costs O(1)
 * whatever the number of certificates; a scrape sorts the ids (output in id order).
 * The first load runs on a thread of its own (torii_certstats_open returns at once: start-up
 * does not parse every entity). It reads one snapshot of the store while the feed goes on; an
 * id the feed wrote or deleted meanwhile is newer than the snapshot, so the feed's entry (or
 * its tombstone, `gone`) wins and the loader skips that id. Scrapes wait for the load. */
#include "torii/certstats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

#define CS_MIN_SLOTS 64

struct cs_entry {
    char *id;     /* owned */
    uint64_t h;   /* hash of id */
    char *domain; /* owned; "" when absent */
    int64_t from_ms;
    int64_t to_ms;
    int usable;   /* stored valid (key and chain) and not revoked */
    uint8_t fed;  /* written by the feed while loading: the loader leaves it */
    uint8_t gone; /* deleted by the feed while loading (tombstone, dropped when loaded) */
};

struct torii_certstats {
    pthread_mutex_t lock;
    pthread_cond_t loaded_cv;
    struct cs_entry *v; /* in no order; slot[] finds an id */
    size_t n;
    size_t cap;
    uint32_t *slot; /* index in v + 1; 0: empty */
    size_t mask;    /* slots - 1 (a power of two, at least twice n) */
    uint64_t seed;
    uint64_t parses;
    int loading;     /* lock held: the first load runs */
    int has_loader;  /* main thread only */
    atomic_int stop; /* the loader gives up (free) */
    pthread_t loader;
    struct torii_store *st; /* borrowed; read by the loader only */
};

struct torii_certstats *torii_certstats_new(void)
{
    struct torii_certstats *cs = torii_xcalloc(1, sizeof(*cs));

    (void)pthread_mutex_init(&cs->lock, NULL);
    (void)pthread_cond_init(&cs->loaded_cv, NULL);
    atomic_init(&cs->stop, 0);
    cs->mask = CS_MIN_SLOTS - 1;
    cs->slot = torii_xcalloc(CS_MIN_SLOTS, sizeof(*cs->slot));
    if (torii_rand_bytes(&cs->seed, sizeof(cs->seed)) != TORII_OK) {
        cs->seed = 0x9e3779b97f4a7c15ULL; /* admin-written ids only: a fixed seed is fine */
    }
    return cs;
}

static void cs_entry_clear(struct cs_entry *e)
{
    free(e->id);
    free(e->domain);
}

void torii_certstats_free(struct torii_certstats *cs)
{
    if (cs == NULL) {
        return;
    }
    if (cs->has_loader) {
        atomic_store(&cs->stop, 1);
        (void)pthread_join(cs->loader, NULL);
    }
    for (size_t i = 0; i < cs->n; i++) {
        cs_entry_clear(&cs->v[i]);
    }
    free(cs->v);
    free(cs->slot);
    (void)pthread_cond_destroy(&cs->loaded_cv);
    (void)pthread_mutex_destroy(&cs->lock);
    free(cs);
}

/* The slot of id (*found set), or the empty slot where it would go. Lock held. */
static size_t cs_slot(const struct torii_certstats *cs, const char *id, uint64_t h, int *found)
{
    size_t i = (size_t)h & cs->mask;

    *found = 0;
    while (cs->slot[i] != 0) {
        const struct cs_entry *e = &cs->v[cs->slot[i] - 1];
        if (e->h == h && strcmp(e->id, id) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & cs->mask;
    }
    return i;
}

/* Twice the slots, every entry placed again. Lock held. */
static void cs_grow(struct torii_certstats *cs)
{
    size_t slots = (cs->mask + 1) * 2;
    int found = 0;

    free(cs->slot);
    cs->slot = torii_xcalloc(slots, sizeof(*cs->slot));
    cs->mask = slots - 1;
    for (size_t k = 0; k < cs->n; k++) {
        cs->slot[cs_slot(cs, cs->v[k].id, cs->v[k].h, &found)] = (uint32_t)(k + 1);
    }
}

/* Empty slot i, shifting back the entries of the probe run after it. Lock held. */
static void cs_slot_clear(struct torii_certstats *cs, size_t i)
{
    size_t j = i;

    for (;;) {
        cs->slot[i] = 0;
        for (;;) {
            j = (j + 1) & cs->mask;
            if (cs->slot[j] == 0) {
                return;
            }
            size_t home = (size_t)cs->v[cs->slot[j] - 1].h & cs->mask;
            /* stays when its home lies cyclically in (i, j] */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) {
                continue;
            }
            break;
        }
        cs->slot[i] = cs->slot[j];
        i = j;
    }
}

/* Replace or insert e (taken) under its id. Lock held. */
static void cs_put(struct torii_certstats *cs, struct cs_entry *e)
{
    int found = 0;
    size_t at;

    e->h = torii_hash64(cs->seed, e->id, strlen(e->id));
    at = cs_slot(cs, e->id, e->h, &found);
    if (found) {
        cs_entry_clear(&cs->v[cs->slot[at] - 1]);
        cs->v[cs->slot[at] - 1] = *e;
        return;
    }
    if (cs->n == cs->cap) {
        cs->cap = cs->cap == 0 ? 64 : cs->cap * 2;
        cs->v = torii_xrealloc(cs->v, cs->cap * sizeof(*cs->v));
    }
    cs->v[cs->n] = *e;
    cs->slot[at] = (uint32_t)(cs->n + 1);
    cs->n++;
    if (2 * cs->n > cs->mask + 1) {
        cs_grow(cs);
    }
}

/* Remove the entry of slot at: the last entry moves into its place. Lock held. */
static void cs_remove(struct torii_certstats *cs, size_t at)
{
    size_t k = cs->slot[at] - 1;
    int found = 0;

    cs_entry_clear(&cs->v[k]);
    cs_slot_clear(cs, at);
    if (k != cs->n - 1) {
        cs->v[k] = cs->v[cs->n - 1];
        cs->slot[cs_slot(cs, cs->v[k].id, cs->v[k].h, &found)] = (uint32_t)(k + 1);
    }
    cs->n--;
}

/* Forget id (while loading: a tombstone, so the loader does not bring it back). Lock held;
 * id taken. */
static void cs_drop(struct torii_certstats *cs, char *id)
{
    int found = 0;
    size_t at = cs_slot(cs, id, torii_hash64(cs->seed, id, strlen(id)), &found);

    if (cs->loading) {
        struct cs_entry e = {.id = id, .domain = torii_xstrdup(""), .fed = 1, .gone = 1};
        cs_put(cs, &e);
        return;
    }
    free(id);
    if (found) {
        cs_remove(cs, at);
    }
}

/* The one parse of a written entity (none when its writer handed it parsed: a watch callback
 * of a certdb write). 0 when it is not a JSON object. */
static int cs_entry_of(const struct torii_store_rec *rec, const json_t *parsed,
                       struct cs_entry *out)
{
    json_t *e = parsed != NULL ? json_incref((json_t *)(uintptr_t)parsed)
                               : json_loadb(rec->json, rec->json_len, 0, NULL);
    const char *dom = json_string_value(json_object_get(e, "domain"));
    int ok = json_is_object(e);

    if (ok) {
        out->domain = torii_xstrdup(dom != NULL ? dom : "");
        out->from_ms = (int64_t)json_integer_value(json_object_get(e, "from"));
        out->to_ms = (int64_t)json_integer_value(json_object_get(e, "to"));
        out->usable = json_is_true(json_object_get(e, "valid"))
                      && !json_is_true(json_object_get(e, "revoked"));
    }
    json_decref(e);
    return ok;
}

static void cs_apply(struct torii_certstats *cs, enum torii_store_op_kind kind,
                     const struct torii_store_rec *rec)
{
    char *id = torii_xstrndup(rec->id, rec->id_len);
    const json_t *parsed = torii_store_watch_parsed();
    struct cs_entry e = {0};
    int keep = 0;

    if (kind != TORII_STORE_DELETE && rec->json != NULL) {
        keep = cs_entry_of(rec, parsed, &e);
    }
    (void)pthread_mutex_lock(&cs->lock);
    if (kind != TORII_STORE_DELETE && parsed == NULL) {
        cs->parses++;
    }
    if (keep) {
        e.id = id;
        e.fed = (uint8_t)cs->loading;
        cs_put(cs, &e);
    } else {
        cs_drop(cs, id);
    }
    (void)pthread_mutex_unlock(&cs->lock);
}

void torii_certstats_watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                              const struct torii_store_rec *rec, void *arg)
{
    if (b == TORII_STORE_CERTS) {
        cs_apply(arg, kind, rec);
    }
}

int torii_certstats_load_cb(const struct torii_store_rec *rec, void *arg)
{
    cs_apply(arg, TORII_STORE_PUT, rec);
    return TORII_OK;
}

/* The loader's callback, over certdb's compact index (no entity parsed): what the feed has
 * written meanwhile is newer and stays. */
static int cs_load_one(const struct torii_certdb_idx *ix, void *arg)
{
    struct torii_certstats *cs = arg;
    char *id = NULL;
    struct cs_entry e = {0};
    int found = 0;

    if (atomic_load_explicit(&cs->stop, memory_order_relaxed)) {
        return TORII_EAGAIN; /* stopped: free is waiting */
    }
    if ((ix->xflags & TORII_CERTDB_IDX_JSON) == 0) {
        return TORII_OK;
    }
    e.domain = torii_xstrndup(ix->domain, ix->domain_len);
    e.from_ms = ix->from_ms;
    e.to_ms = ix->to_ms;
    e.usable = (ix->xflags & (TORII_CERTDB_IDX_VALID | TORII_CERTDB_IDX_REVOKED))
               == TORII_CERTDB_IDX_VALID;
    id = torii_xstrndup(ix->id, ix->id_len);
    (void)pthread_mutex_lock(&cs->lock);
    cs->parses++;
    size_t at = cs_slot(cs, id, torii_hash64(cs->seed, id, strlen(id)), &found);
    if (found && cs->v[cs->slot[at] - 1].fed) {
        cs_entry_clear(&e);
        free(id);
    } else {
        e.id = id;
        cs_put(cs, &e);
    }
    (void)pthread_mutex_unlock(&cs->lock);
    return TORII_OK;
}

/* End of the load: tombstones dropped, marks cleared, waiting scrapes woken. O(n) once. */
static void cs_load_done(struct torii_certstats *cs)
{
    int found = 0;

    (void)pthread_mutex_lock(&cs->lock);
    for (size_t i = cs->n; i-- > 0;) { /* from the end: a removal moves the last entry */
        if (cs->v[i].gone) {
            cs_remove(cs, cs_slot(cs, cs->v[i].id, cs->v[i].h, &found));
        } else {
            cs->v[i].fed = 0;
        }
    }
    cs->loading = 0;
    (void)pthread_cond_broadcast(&cs->loaded_cv);
    (void)pthread_mutex_unlock(&cs->lock);
}

static void *cs_loader(void *arg)
{
    struct torii_certstats *cs = arg;
    struct torii_store *st = NULL;
    int64_t t0 = torii_clock_mono_us();
    int rc;

    (void)pthread_mutex_lock(&cs->lock);
    st = cs->st;
    (void)pthread_mutex_unlock(&cs->lock);
    rc = torii_certdb_idx_foreach(st, cs_load_one, cs);
    if (rc != TORII_OK && !atomic_load(&cs->stop)) {
        torii_log(TORII_LOG_ERR, "metrics: cannot load the certificates: %s", torii_strerror(rc));
    }
    cs_load_done(cs);
    torii_log(TORII_LOG_INFO, "metrics: certificate gauges loaded in %.1f ms",
              (double)(torii_clock_mono_us() - t0) / 1000.0);
    return NULL;
}

int torii_certstats_open(struct torii_store *st, struct torii_certstats **out,
                         struct torii_errbuf *eb)
{
    struct torii_certstats *cs = torii_certstats_new();
    int rc = torii_store_watch(st, torii_certstats_watch_cb, cs);

    if (rc != TORII_OK) {
        torii_certstats_free(cs);
        return torii_errf(eb, rc, "metrics: cannot watch the store");
    }
    /* Registered: from here on the set must outlive the store's writers, even on failure. */
    *out = cs;
    cs->st = st;
    cs->loading = 1;
    if (pthread_create(&cs->loader, NULL, cs_loader, cs) != 0) {
        cs->loading = 0;
        return torii_errf(eb, TORII_ENOMEM, "metrics: cannot start the loader thread");
    }
    cs->has_loader = 1;
    return TORII_OK;
}

/* Wait for the first load (bounded by it). Lock held. */
static void cs_wait_loaded(struct torii_certstats *cs)
{
    while (cs->loading) {
        (void)pthread_cond_wait(&cs->loaded_cv, &cs->lock);
    }
}

static void cs_sample(struct torii_prom *p, const char *name, const struct cs_entry *e,
                      double value)
{
    const char *labels[4] = {"id", e->id, "domain", e->domain};

    if (torii_prom_sample(p, name, labels, 2, value) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "metrics: cannot format a sample of %s", name);
    }
}

/* One entry of a scrape's order. */
struct cs_ref {
    const struct cs_entry *e;
};

static int cs_id_cmp(const void *a, const void *b)
{
    const struct cs_ref *x = a;
    const struct cs_ref *y = b;

    return strcmp(x->e->id, y->e->id);
}

void torii_certstats_write(struct torii_certstats *cs, int64_t now_ms, struct torii_prom *out)
{
    struct cs_ref *order = NULL;
    static const char *const all[] = {"state", "all"};
    static const char *const valid[] = {"state", "valid"};
    struct torii_prom not_after = {0};
    struct torii_prom usable = {0};
    size_t n_valid = 0;
    size_t n;

    (void)pthread_mutex_lock(&cs->lock);
    cs_wait_loaded(cs);
    n = cs->n;
    order = torii_xcalloc(n + 1, sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        order[i].e = &cs->v[i];
    }
    qsort(order, n, sizeof(*order), cs_id_cmp); /* in id order, as the store iterates */
    for (size_t i = 0; i < n; i++) {
        const struct cs_entry *e = order[i].e;
        int ok = e->usable && e->from_ms <= now_ms && now_ms < e->to_ms;

        cs_sample(&not_after, "torii_certificate_not_after_seconds", e, (double)e->to_ms / 1000.0);
        cs_sample(&usable, "torii_certificate_valid", e, ok ? 1 : 0);
        n_valid += ok ? 1 : 0;
    }
    (void)pthread_mutex_unlock(&cs->lock);
    free(order);
    /* Names, types and keys below are constants: formatting them cannot fail. */
    TORII_ASSERT(torii_prom_family(out, "torii_certificates", "gauge",
                                   "Certificates in the store (all, and valid now)")
                 == TORII_OK);
    TORII_ASSERT(torii_prom_sample(out, "torii_certificates", all, 1, (double)n) == TORII_OK);
    TORII_ASSERT(torii_prom_sample(out, "torii_certificates", valid, 1, (double)n_valid)
                 == TORII_OK);
    TORII_ASSERT(torii_prom_family(out, "torii_certificate_not_after_seconds", "gauge",
                                   "notAfter of each certificate, in seconds since the epoch")
                 == TORII_OK);
    torii_prom_append(out, &not_after);
    TORII_ASSERT(torii_prom_family(out, "torii_certificate_valid", "gauge",
                                   "1 when the certificate is usable now (key and chain, within "
                                   "its dates, not revoked)")
                 == TORII_OK);
    torii_prom_append(out, &usable);
    torii_prom_clear(&not_after);
    torii_prom_clear(&usable);
}

uint64_t torii_certstats_parses(struct torii_certstats *cs)
{
    uint64_t n;

    (void)pthread_mutex_lock(&cs->lock);
    cs_wait_loaded(cs);
    n = cs->parses;
    (void)pthread_mutex_unlock(&cs->lock);
    return n;
}
