/* apply.c - etcd content into the local store: watch events in revision order (one store
 * transaction per watch response, with the revision recorded in the same transaction), the
 * pages of a full resync and its end (what etcd no longer has is deleted). The TLS record of a
 * certificate is rebuilt here from the entity (torii_cert_prepare, as stored: its key stays
 * sealed; the PKI opens it with the KEK), so etcd holds no record and no clear key.
 * Threads: the fleet's watch thread only (the one writer of these buckets in fleet mode). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

/* The ops of one store transaction and what they point to. */
struct apply_set {
    struct torii_store_op *ops;
    unsigned char **aux; /* per op: the record built (freed with the set) */
    size_t n;
    json_t *state; /* "c/<id>" or "s/<key>" -> true (exists) / false, as the set leaves it */
    struct apply_rev {
        const char *id;
        int64_t rev; /* etcd mod_revision; 0: deleted */
    } * revs;        /* what fleet->revs records once the set is committed */
    size_t nrevs;
};

int fleet_key_local(const char *prefix, const char *k, size_t klen, enum torii_store_bucket *b,
                    const char **id)
{
    size_t plen = strlen(prefix);

    if (klen <= plen + 2 || klen - plen - 2 > TORII_STORE_ID_MAX || memcmp(k, prefix, plen) != 0
        || k[plen + 1] != '/') {
        return 0;
    }
    if (k[plen] == 'c') {
        *b = TORII_STORE_CERTS;
    } else if (k[plen] == 's') {
        *b = TORII_STORE_SERIALS;
    } else {
        return 0;
    }
    *id = k + plen + 2;
    return 1;
}

/* Whether k is a job key of the election ("<prefix>l/..."). */
static int fleet_key_is_job(const char *prefix, const char *k, size_t klen)
{
    size_t plen = strlen(prefix);

    return klen > plen + 2 && memcmp(k, prefix, plen) == 0 && k[plen] == 'l' && k[plen + 1] == '/';
}

static void apply_set_init(struct apply_set *s, size_t cap)
{
    s->ops = torii_xcalloc(cap + 1, sizeof(*s->ops));
    s->aux = torii_xcalloc(cap + 1, sizeof(*s->aux));
    s->revs = torii_xcalloc(cap + 1, sizeof(*s->revs));
    s->n = 0;
    s->nrevs = 0;
    s->state = json_object();
    TORII_ASSERT(s->state != NULL);
}

static void apply_set_clear(struct apply_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        torii_secure_free(s->aux[i], s->ops[i].rec.aux_len);
    }
    free(s->ops);
    free(s->aux);
    free(s->revs);
    json_decref(s->state);
    memset(s, 0, sizeof(*s));
}

/* Whether (b, id) exists locally as the set leaves the store. */
static int apply_exists(struct apply_set *s, struct torii_store *st, enum torii_store_bucket b,
                        const char *id, char **json, size_t *len)
{
    char skey[TORII_STORE_ID_MAX + 3];
    const json_t *v;

    (void)snprintf(skey, sizeof(skey), "%c/%s", b == TORII_STORE_CERTS ? 'c' : 's', id);
    v = json_object_get(s->state, skey);
    if (v != NULL) {
        return json_is_true(v);
    }
    return torii_store_get(st, b, id, json, len, NULL, NULL) == TORII_OK;
}

static void apply_mark(struct apply_set *s, enum torii_store_bucket b, const char *id, int exists)
{
    char skey[TORII_STORE_ID_MAX + 3];

    (void)snprintf(skey, sizeof(skey), "%c/%s", b == TORII_STORE_CERTS ? 'c' : 's', id);
    (void)json_object_set_new(s->state, skey, json_boolean(exists));
}

/* The TLS record of a certificate value (NULL when it does not build: logged). */
static void apply_record(struct torii_fleet *f, const char *id, const char *val, size_t len,
                         struct torii_store_op *op, unsigned char **aux)
{
    struct torii_cert_prep_opts po = {.mode = TORII_CERT_PREP_AS_IS, .kek = f->o.kek};
    struct torii_cert_prepared prep = {0};
    struct torii_errbuf eb = {{0}};
    json_t *e = json_loadb(val, len, 0, NULL);
    char esc[128];

    if (e == NULL || torii_cert_prepare(e, &po, &prep, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "fleet: certificate %s from etcd has no usable TLS record: %s",
                  torii_log_escape(id, strlen(id), esc, sizeof(esc)),
                  e == NULL ? "not JSON" : eb.msg);
    } else {
        *aux = prep.aux;
        op->rec.aux = prep.aux;
        op->rec.aux_len = prep.aux_len;
        prep.aux = NULL;
    }
    torii_cert_prepared_clear(&prep);
    json_decref(e);
}

/* Note the revision of certificate id once the set is committed. */
static void apply_note_rev(struct apply_set *s, enum torii_store_bucket b, const char *id,
                           int64_t rev)
{
    if (b == TORII_STORE_CERTS) {
        s->revs[s->nrevs++] = (struct apply_rev){id, rev};
    }
}

/* Queue a put of (b, id) = val at revision rev, unless the store already holds exactly val. */
static void apply_put(struct torii_fleet *f, struct apply_set *s, enum torii_store_bucket b,
                      const char *id, const char *val, size_t len, int64_t rev)
{
    char *cur = NULL;
    size_t cur_len = 0;
    int same = apply_exists(s, f->o.store, b, id, &cur, &cur_len) && cur != NULL && cur_len == len
               && memcmp(cur, val, len) == 0;
    struct torii_store_op *op = &s->ops[s->n];

    if (cur != NULL) {
        torii_secure_free(cur, cur_len);
    }
    apply_mark(s, b, id, 1);
    apply_note_rev(s, b, id, rev);
    if (same) {
        return;
    }
    *op = (struct torii_store_op){
        .kind = TORII_STORE_PUT,
        .bucket = b,
        .rec = {.id = id, .id_len = strlen(id), .json = val, .json_len = len}};
    if (b == TORII_STORE_CERTS) {
        apply_record(f, id, val, len, op, &s->aux[s->n]);
    }
    s->n++;
}

static void apply_del(struct torii_fleet *f, struct apply_set *s, enum torii_store_bucket b,
                      const char *id)
{
    char *cur = NULL;
    size_t cur_len = 0;

    if (apply_exists(s, f->o.store, b, id, &cur, &cur_len)) {
        s->ops[s->n++] = (struct torii_store_op){
            .kind = TORII_STORE_DELETE, .bucket = b, .rec = {.id = id, .id_len = strlen(id)}};
    }
    if (cur != NULL) {
        torii_secure_free(cur, cur_len);
    }
    apply_mark(s, b, id, 0);
    apply_note_rev(s, b, id, 0);
}

/* Commit the set (recording rev as the last applied revision when > 0), then its
 * certificates' revisions: a copy is in LMDB before its revision is recorded, and a
 * compare-and-swap reads the revision before the copy (txn.c), so it never pairs an older
 * copy with a newer revision (at worst a newer copy with an older revision: a 409). No lock is
 * held across the store's commit and its watchers. */
static int apply_commit(struct torii_fleet *f, struct apply_set *s, int64_t rev,
                        struct torii_errbuf *eb)
{
    char val[32];
    int rc;

    (void)snprintf(val, sizeof(val), "%" PRId64, rev);
    rc = torii_store_apply_meta(f->o.store, s->ops, s->n, rev > 0 ? FLEET_META_REV : NULL, val, eb);
    (void)pthread_mutex_lock(&f->rev_mu);
    for (size_t i = 0; i < s->nrevs && rc == TORII_OK; i++) {
        fleet_revs_set(&f->revs, s->revs[i].id, strlen(s->revs[i].id), s->revs[i].rev);
    }
    (void)pthread_mutex_unlock(&f->rev_mu);
    if (rc == TORII_OK && rev > 0) {
        (void)pthread_mutex_lock(&f->mu);
        f->applied = rev;
        (void)pthread_cond_broadcast(&f->cv);
        (void)pthread_mutex_unlock(&f->mu);
    }
    return rc;
}

int fleet_apply_events(struct torii_fleet *f, const struct torii_fleet_event *ev, size_t n,
                       int64_t rev, struct torii_errbuf *eb)
{
    struct apply_set s;
    int64_t applied;
    int jobs = 0;
    int rc;

    (void)pthread_mutex_lock(&f->mu);
    applied = f->applied;
    (void)pthread_mutex_unlock(&f->mu);
    apply_set_init(&s, n);
    for (size_t i = 0; i < n; i++) {
        enum torii_store_bucket b;
        const char *id;
        jobs |= fleet_key_is_job(f->o.conf->prefix, ev[i].kv.key, ev[i].kv.key_len);
        if (ev[i].kv.mod_rev <= applied
            || !fleet_key_local(f->o.conf->prefix, ev[i].kv.key, ev[i].kv.key_len, &b, &id)) {
            continue; /* a replay after a reconnect, or not a key of ours */
        }
        if (ev[i].deleted) {
            apply_del(f, &s, b, id);
        } else {
            apply_put(f, &s, b, id, ev[i].kv.val, ev[i].kv.val_len, ev[i].kv.mod_rev);
        }
    }
    rc = rev > applied ? apply_commit(f, &s, rev, eb) : TORII_OK;
    apply_set_clear(&s);
    for (size_t i = 0; rc == TORII_OK && i < n; i++) { /* after the certificates they name */
        if (ev[i].kv.mod_rev > applied) {
            fleet_crl_seen(f, &ev[i].kv, ev[i].deleted);
            fleet_wish_seen(f, &ev[i].kv, ev[i].deleted);
        }
    }
    if (jobs) {
        fleet_elect_wake(f); /* a job key was taken or let go: the election looks now */
    }
    return rc;
}

int fleet_apply_page(struct torii_fleet *f, const struct torii_fleet_kv *kvs, size_t n,
                     json_t *seen, struct torii_errbuf *eb)
{
    struct apply_set s;
    int rc;

    apply_set_init(&s, n);
    for (size_t i = 0; i < n; i++) {
        enum torii_store_bucket b;
        const char *id;
        if (!fleet_key_local(f->o.conf->prefix, kvs[i].key, kvs[i].key_len, &b, &id)) {
            continue;
        }
        (void)json_object_set_new(seen, id - 2, json_true());
        apply_put(f, &s, b, id, kvs[i].val, kvs[i].val_len, kvs[i].mod_rev);
    }
    rc = apply_commit(f, &s, 0, eb);
    apply_set_clear(&s);
    return rc;
}

struct apply_sweep {
    json_t *seen;
    char tag;
    json_t *gone; /* "c/<id>" names to delete */
};

static int apply_sweep_cb(const struct torii_store_rec *rec, void *arg)
{
    struct apply_sweep *sw = arg;
    char skey[TORII_STORE_ID_MAX + 3];

    (void)snprintf(skey, sizeof(skey), "%c/%.*s", sw->tag, (int)rec->id_len, rec->id);
    if (json_object_get(sw->seen, skey) == NULL) {
        (void)json_array_append_new(sw->gone, json_string(skey));
    }
    return TORII_OK;
}

int fleet_apply_finish(struct torii_fleet *f, json_t *seen, int64_t rev, struct torii_errbuf *eb)
{
    struct apply_sweep sw = {.seen = seen, .gone = json_array()};
    struct apply_set s = {0};
    int rc = TORII_OK;

    TORII_ENSURE(sw.gone != NULL, TORII_ENOMEM);
    sw.tag = 'c';
    TORII_TRY(torii_store_foreach(f->o.store, TORII_STORE_CERTS, apply_sweep_cb, &sw));
    sw.tag = 's';
    TORII_TRY(torii_store_foreach(f->o.store, TORII_STORE_SERIALS, apply_sweep_cb, &sw));
    apply_set_init(&s, json_array_size(sw.gone));
    for (size_t i = 0; i < json_array_size(sw.gone); i++) {
        const char *k = json_string_value(json_array_get(sw.gone, i));
        apply_del(f, &s, k[0] == 'c' ? TORII_STORE_CERTS : TORII_STORE_SERIALS, k + 2);
    }
    if (s.n > 0) {
        torii_log(TORII_LOG_NOTICE,
                  "fleet: resync at revision %" PRId64 " removes %zu local "
                  "entries etcd no longer has",
                  rev, s.n);
    }
    rc = apply_commit(f, &s, rev, eb);
out:
    if (s.ops != NULL) {
        apply_set_clear(&s);
    }
    json_decref(sw.gone);
    return rc;
}

int64_t fleet_applied_rev(struct torii_store *st)
{
    char *v = NULL;
    long long x = 0;

    if (torii_store_meta_get(st, FLEET_META_REV, &v) == TORII_OK) {
        x = strtoll(v, NULL, 10);
        free(v);
    }
    return x > 0 ? (int64_t)x : 0;
}
