/* renewer.c - renewing one certificate in the store (one transaction), the periodic cycle
 * (renew what is due, keep expiry flags current, raise alerts, delete expired copies), and
 * the renewal thread with its own event_base. Other threads hand it requests through a
 * mutex-protected list plus event_active on work_ev, and wait on a condition variable. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "lifecycle_int.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"
#include "torii/renew.h"

/* ---- one renewal ---------------------------------------------------------------------- */

static const char *renew_str(const json_t *e, const char *k)
{
    const char *s = json_string_value(json_object_get(e, k));
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* The test seam around certdb's commit window: the concurrent write a test lands there is
 * not a lifecycle write (its alerts are not ours to suppress). */
static void renew_between(const char *id, unsigned attempt, void *arg)
{
    const struct torii_renew__seam *seam = arg;

    torii_lifecycle_write_end();
    seam->between(id, attempt, seam->arg);
    torii_lifecycle_write_begin();
}

/* One read-modify-write through certdb, as a lifecycle write (retried once on a conflict). */
static int renew_update(struct torii_store *store, const char *id,
                        const struct torii_renew__seam *seam, torii_certdb_edit_fn edit, void *arg,
                        struct torii_errbuf *eb)
{
    struct torii_certdb_rmw rmw = {.attempts = 2};
    struct torii_renew__seam s = {NULL, NULL};
    int rc;

    if (seam != NULL && seam->between != NULL) {
        s = *seam;
        rmw.between = renew_between;
        rmw.between_arg = &s;
    }
    torii_lifecycle_write_begin();
    rc = torii_certdb_update(store, id, &rmw, edit, arg, eb);
    torii_lifecycle_write_end();
    return rc;
}

struct renew_one_ctx {
    struct torii_store *store;
    const char *id;
    int64_t now_ms;
    const struct torii_renew_policy *pol;
    json_t *renewed; /* the last attempt's new version */
    char copy_id[TORII_RENEW_COPY_ID_LEN + 1];
};

/* What may not be renewed, judged on the entity as read. */
static int renew_check(const struct renew_one_ctx *c, const json_t *old, struct torii_errbuf *eb)
{
    if (json_is_true(json_object_get(old, "revoked"))) {
        return torii_errf(eb, TORII_EINVAL, "a revoked certificate is not renewed");
    }
    if (torii_renew_is_copy(old)) {
        return torii_errf(eb, TORII_EINVAL, "an [UNTIL EXPIRATION] copy is never renewed");
    }
    if (json_is_true(json_object_get(old, "letsEncrypt"))) {
        return torii_errf(eb, TORII_EUNSUPPORTED,
                          "Let's Encrypt certificates are renewed through ACME");
    }
    if (c->pol != NULL && torii_renew_due_of(old, c->now_ms, c->pol) != TORII_RENEW_DUE) {
        /* a concurrent change made it so: not worth a retry */
        return torii_errf(eb, TORII_ECONFLICT, "changed since it was found due: no longer due");
    }
    return TORII_OK;
}

/* The issuing CA of old (NULL for a self-signed certificate). */
static int renew_ca(const struct renew_one_ctx *c, const json_t *old, json_t **ca,
                    struct torii_errbuf *eb)
{
    const char *ca_ref = renew_str(old, "caRef");
    int rc;

    *ca = NULL;
    if (ca_ref != NULL && strcmp(ca_ref, c->id) != 0) {
        rc = torii_lifecycle__load(c->store, ca_ref, ca);
        return rc == TORII_OK ? TORII_OK
                              : torii_errf(eb, TORII_EINVAL, "issuing CA %.200s: %s", ca_ref,
                                           torii_strerror(rc));
    }
    if (!json_is_true(json_object_get(old, "selfSigned"))) {
        return torii_errf(eb, TORII_EINVAL,
                          "neither caRef nor self-signed: the issuer is unknown to torii");
    }
    return TORII_OK;
}

/* One read-renew-write pass: the old version as its copy, the new one under the id (only if
 * nobody wrote it since we read it); certdb moves the serial index along (the old serial
 * now names the copy). */
static int renew_one_edit(struct torii_certdb_batch *b, const struct torii_certdb_entry *rd,
                          unsigned attempt, void *arg, struct torii_errbuf *eb)
{
    struct renew_one_ctx *c = arg;
    json_t *ca = NULL;
    json_t *copy = NULL;
    int rc = TORII_OK;

    if (attempt > 0) {
        /* Someone (the admin API) wrote the entity while we re-issued it: their write
         * stands. Start again from what they wrote. */
        torii_log(TORII_LOG_NOTICE,
                  "renew: certificate changed while being renewed, starting again (id=%s)", c->id);
    }
    json_decref(c->renewed);
    c->renewed = NULL;
    TORII_TRY(renew_check(c, rd->ent, eb));
    TORII_TRY(renew_ca(c, rd->ent, &ca, eb));
    TORII_TRY(
        torii_renew_reissue(rd->ent, ca, torii_store_kek(c->store), c->now_ms, &c->renewed, eb));
    TORII_TRY(torii_rand_alnum(c->copy_id, TORII_RENEW_COPY_ID_LEN));
    TORII_TRY(torii_renew_copy_make(rd->ent, c->copy_id, torii_store_kek(c->store), &copy, eb));
    TORII_TRY(torii_certdb_batch_create(b, copy, NULL, NULL, eb));
    TORII_TRY(torii_certdb_batch_replace(b, rd, c->renewed, NULL, NULL, eb));
out:
    json_decref(ca);
    json_decref(copy);
    return rc;
}

int torii_renew__one(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                     int64_t now_ms, const struct torii_renew_policy *pol,
                     const struct torii_renew__seam *seam, json_t **out, struct torii_errbuf *eb)
{
    struct renew_one_ctx c = {.store = store, .id = id, .now_ms = now_ms, .pol = pol};
    int rc = renew_update(store, id, seam, renew_one_edit, &c, eb);

    if (rc == TORII_OK) {
        torii_log(TORII_LOG_NOTICE, "renew: certificate renewed (id=%s copy=%s to=%lld)", id,
                  c.copy_id, (long long)json_integer_value(json_object_get(c.renewed, "to")));
        torii_alerts_raise(alerts, TORII_ALERT_RENEWAL, c.renewed, NULL);
        if (out != NULL) {
            *out = c.renewed;
            c.renewed = NULL;
        }
    }
    json_decref(c.renewed);
    if (rc == TORII_ECONFLICT) {
        torii_log(TORII_LOG_NOTICE, "renew: renewal skipped: %s (id=%s)", eb != NULL ? eb->msg : "",
                  id);
    } else if (rc != TORII_OK) {
        torii_metrics_inc(TORII_METRIC_RENEWAL_FAILURES);
    } else {
        torii_metrics_inc(TORII_METRIC_RENEWALS);
    }
    return rc;
}

int torii_renew_one(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                    int64_t now_ms, json_t **out, struct torii_errbuf *eb)
{
    return torii_renew__one(store, alerts, id, now_ms, NULL, NULL, out, eb);
}

/* ---- the renewal thread ------------------------------------------------------------------ */

struct renew_req {
    char *id;    /* NULL: cycle or ids */
    json_t *ids; /* owned copy or NULL */
    json_t *out; /* result */
    int rc;
    struct torii_errbuf eb;
    int done;
    int refs; /* waiter + thread; under r->mu */
    struct renew_req *next;
};

struct torii_renewer {
    const struct torii_config *cfg;
    struct torii_store *store;
    struct torii_alerts *alerts;
    struct torii_renew_policy pol;
    struct event_base *base;
    struct event *timer_ev;
    struct event *work_ev;
    struct event *stop_ev;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct renew_req *reqs;            /* under mu; LIFO is fine, each is independent */
    int stopped;                       /* under mu */
    struct torii_renew_acme acme;      /* letsEncrypt certificates (none: skipped); set at start */
    const struct torii_job_gate *gate; /* one doer per job (NULL: always this node) */
    /* Renewal thread only. */
    json_t *failures; /* id -> {"attempts": n, "next": ms} */
    json_t *alerted;  /* id -> {"state": n, "at": ms} */
};

/* What a cycle needs of each stored entity (parsed inside the read transaction). */
struct renew_item {
    char *id;
    int64_t from;
    int64_t to;
    int copy;
    int revoked;
    enum torii_renew_due due;
    enum torii_renew_state stored; /* from metadata flags */
    json_t *acme_ent;              /* letsEncrypt, autoRenew, live: the entity (for ACME) */
};

struct renew_scan {
    struct renew_item *v;
    size_t n;
    size_t cap;
    int64_t now;
    const struct torii_renew_policy *pol;
    struct torii_store *store;
    int del_copies; /* renewal_delete_expired_copies */
    int repeat;     /* alerts_repeat_s > 0 */
    size_t seen;    /* certificates in the index */
};

static enum torii_renew_state renew_stored_idx(unsigned xf)
{
    if ((xf & TORII_CERTDB_IDX_MD_EXPIRED) != 0) {
        return TORII_RENEW_STATE_EXPIRED;
    }
    if ((xf & TORII_CERTDB_IDX_MD_ALMOST) != 0) {
        return TORII_RENEW_STATE_ALMOST_EXPIRED;
    }
    return TORII_RENEW_STATE_OK;
}

static int renew_md_true(const json_t *e, const char *k)
{
    const json_t *v = json_object_get(json_object_get(e, "metadata"), k);
    return json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

static enum torii_renew_state renew_stored_state(const json_t *e)
{
    if (renew_md_true(e, "expired")) {
        return TORII_RENEW_STATE_EXPIRED;
    }
    if (renew_md_true(e, "almostExpired")) {
        return TORII_RENEW_STATE_ALMOST_EXPIRED;
    }
    return TORII_RENEW_STATE_OK;
}

/* torii_renew_due_of from the compact index (the same rule, no entity). */
static enum torii_renew_due renew_due_idx(const struct torii_certdb_idx *ix, int64_t now,
                                          const struct torii_renew_policy *p)
{
    unsigned xf = ix->xflags;
    unsigned need =
        TORII_CERTDB_IDX_AUTORENEW | TORII_CERTDB_IDX_HAS_FROM | TORII_CERTDB_IDX_HAS_TO;

    if ((xf & need) != need || (xf & (TORII_CERTDB_IDX_REVOKED | TORII_CERTDB_IDX_COPY)) != 0
        || !torii_renew_in_last_pct(ix->from_ms, ix->to_ms, now, p->threshold_pct)) {
        return TORII_RENEW_NOT_DUE;
    }
    return (xf & TORII_CERTDB_IDX_ACME) != 0 ? TORII_RENEW_DUE_ACME : TORII_RENEW_DUE;
}

/* 1 when renew_cycle_item would act on it (renew, delete, flag, alert): the others are not
 * kept, and their entities are never read. */
static int renew_item_acts(const struct renew_scan *s, const struct renew_item *it, int acme)
{
    enum torii_renew_state st;

    if (it->copy) {
        return it->to <= s->now && s->del_copies;
    }
    if (acme || it->due != TORII_RENEW_NOT_DUE) {
        return 1;
    }
    if (it->revoked) {
        return 0;
    }
    st = torii_renew_state_of(it->from, it->to, s->now, s->pol);
    if (st == TORII_RENEW_STATE_NOT_YET_VALID) {
        st = TORII_RENEW_STATE_OK;
    }
    return st != it->stored
           || (s->repeat
               && (st == TORII_RENEW_STATE_EXPIRED || st == TORII_RENEW_STATE_ALMOST_EXPIRED));
}

/* A cycle's scan, over certdb's compact index: only the entities of letsEncrypt certificates
 * (the ACME due rule reads them) are loaded. */
static int renew_scan_cb(const struct torii_certdb_idx *ix, void *arg)
{
    struct renew_scan *s = arg;
    unsigned xf = ix->xflags;
    struct renew_item it = {0};
    int acme;

    if ((xf & TORII_CERTDB_IDX_JSON) == 0) {
        return TORII_OK; /* not ours to judge; the admin API reports it */
    }
    s->seen++;
    it.from = ix->from_ms;
    it.to = ix->to_ms;
    it.copy = (xf & TORII_CERTDB_IDX_COPY) != 0;
    it.revoked = (xf & TORII_CERTDB_IDX_REVOKED) != 0;
    it.due = renew_due_idx(ix, s->now, s->pol);
    it.stored = renew_stored_idx(xf);
    acme = (xf & (TORII_CERTDB_IDX_ACME | TORII_CERTDB_IDX_AUTORENEW))
               == (TORII_CERTDB_IDX_ACME | TORII_CERTDB_IDX_AUTORENEW)
           && !it.copy && !it.revoked;
    if (!renew_item_acts(s, &it, acme)) {
        return TORII_OK;
    }
    it.id = torii_xstrndup(ix->id, ix->id_len);
    if (acme && torii_certdb_load(s->store, it.id, &it.acme_ent, NULL) != TORII_OK) {
        free(it.id);
        return TORII_OK; /* deleted since: nothing to renew */
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = torii_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = it;
    return TORII_OK;
}

static void renew_scan_clear(struct renew_scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].id);
        torii_cert_secrets_wipe(s->v[i].acme_ent);
        json_decref(s->v[i].acme_ent);
    }
    TORII_FREE(s->v);
    s->n = 0;
    s->cap = 0;
}

static void renew_result_add(json_t *res, const char *list, const char *id, const char *k,
                             const char *v)
{
    json_t *arr = json_object_get(res, list);

    if (k == NULL) {
        (void)json_array_append_new(arr, json_string(id));
    } else {
        (void)json_array_append_new(arr, json_pack("{s:s, s:s}", "id", id, k, v));
    }
}

static json_t *renew_result_new(void)
{
    return json_pack("{s:[], s:[], s:[], s:[], s:[]}", "renewed", "failed", "skipped", "flagged",
                     "deleted");
}

/* Backoff bookkeeping for automatic renewals (renewal thread). */
static int renew_backoff_active(struct torii_renewer *r, const char *id, int64_t now)
{
    const json_t *f = json_object_get(r->failures, id);
    return f != NULL && json_integer_value(json_object_get(f, "next")) > now;
}

static void renew_failed(struct torii_renewer *r, const char *id, int64_t now, const char *why)
{
    json_t *f = json_object_get(r->failures, id);
    unsigned attempts = (unsigned)json_integer_value(json_object_get(f, "attempts")) + 1;
    int64_t delay = torii_renew_backoff_ms(attempts, (int64_t)r->cfg->renewal_retry_min_s * 1000,
                                           (int64_t)r->cfg->renewal_retry_max_s * 1000);
    int64_t last_alert = json_integer_value(json_object_get(f, "alert"));
    int alert = attempts == 1
                || (r->cfg->alerts_repeat_s > 0
                    && now - last_alert >= (int64_t)r->cfg->alerts_repeat_s * 1000);

    torii_log(TORII_LOG_ERR,
              "renew: renewal failed, the old certificate stays: %s (id=%s attempt=%u "
              "retry_in_s=%lld)",
              why, id, attempts, (long long)(delay / 1000));
    (void)json_object_set_new(r->failures, id,
                              json_pack("{s:I, s:I, s:I}", "attempts", (json_int_t)attempts, "next",
                                        (json_int_t)now + (json_int_t)delay, "alert",
                                        (json_int_t)(alert ? now : last_alert)));
    if (alert) {
        json_t *ent = NULL;
        json_t *extra = json_pack("{s:s, s:I}", "error", why, "attempts", (json_int_t)attempts);
        if (torii_lifecycle__load(r->store, id, &ent) == TORII_OK) {
            torii_alerts_raise(r->alerts, TORII_ALERT_RENEWAL_FAILED, ent, extra);
        }
        json_decref(ent);
        json_decref(extra);
    }
}

struct renew_flag_ctx {
    struct torii_alerts *alerts;
    const char *id;
    int64_t now;
    const struct torii_renew_policy *pol;
    int *written;
    json_t *e;                        /* the version written */
    const struct torii_kek_ring *kek; /* the store's: opens a sealed key to recompute valid */
};

/* metadata.expired / almostExpired (and valid) for state st; TORII_ENOMEM. */
static int renew_flag_set(json_t *e, const struct torii_kek_ring *kek, enum torii_renew_state st,
                          enum torii_renew_state stored, int64_t now, struct torii_errbuf *eb)
{
    json_t *md = json_object_get(e, "metadata");

    if (!json_is_object(md)) {
        md = json_object();
        if (md == NULL || json_object_set_new(e, "metadata", md) != 0) {
            return TORII_ENOMEM;
        }
    }
    (void)json_object_del(md, "expired");
    (void)json_object_del(md, "almostExpired");
    if (st == TORII_RENEW_STATE_EXPIRED) {
        (void)json_object_set_new(md, "expired", json_string("true"));
        (void)json_object_set_new(e, "valid", json_false());
    } else if (st == TORII_RENEW_STATE_ALMOST_EXPIRED) {
        (void)json_object_set_new(md, "almostExpired", json_string("true"));
    }
    if (stored == TORII_RENEW_STATE_EXPIRED && st != TORII_RENEW_STATE_EXPIRED) {
        /* Back inside its window (clock set back): recompute valid. */
        return torii_cert_enrich_kek(e, kek, now, eb);
    }
    return TORII_OK;
}

/* One read-modify-write pass of torii_renew__flag. */
static int renew_flag_edit(struct torii_certdb_batch *b, const struct torii_certdb_entry *rd,
                           unsigned attempt, void *arg, struct torii_errbuf *eb)
{
    struct renew_flag_ctx *c = arg;
    json_t *e = rd->ent;
    enum torii_renew_state st;
    enum torii_renew_state stored;
    int rc = TORII_OK;

    if (attempt > 0) {
        /* Written meanwhile: judge the new content once more rather than overwrite it. */
        torii_log(TORII_LOG_INFO,
                  "renew: certificate changed while its expiry state was stored, re-reading "
                  "(id=%s)",
                  c->id);
    }
    json_decref(c->e);
    c->e = NULL;
    *c->written = -1;
    if (json_is_true(json_object_get(e, "revoked")) || torii_renew_is_copy(e)) {
        return TORII_OK;
    }
    /* Judged on the entity as it is now, not as a scan saw it: an API write may have put a
     * new certificate there since. */
    st = torii_renew_state_of(json_integer_value(json_object_get(e, "from")),
                              json_integer_value(json_object_get(e, "to")), c->now, c->pol);
    if (st == TORII_RENEW_STATE_NOT_YET_VALID) {
        st = TORII_RENEW_STATE_OK;
    }
    stored = renew_stored_state(e);
    if (st == stored) {
        return TORII_OK;
    }
    c->e = json_deep_copy(e);
    TORII_ENSURE(c->e != NULL, TORII_ENOMEM);
    TORII_TRY(renew_flag_set(c->e, c->kek, st, stored, c->now, eb));
    TORII_TRY(torii_certdb_batch_replace(b, rd, c->e, NULL, NULL, eb));
    *c->written = (int)st;
out:
    return rc;
}

int torii_renew__flag(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                      int64_t now_ms, const struct torii_renew_policy *pol,
                      const struct torii_renew__seam *seam, int *written, struct torii_errbuf *eb)
{
    struct renew_flag_ctx c = {alerts, id, now_ms, pol, written, NULL, torii_store_kek(store)};
    int rc;

    *written = -1;
    rc = renew_update(store, id, seam, renew_flag_edit, &c, eb);
    if (rc != TORII_OK) {
        *written = -1;
    } else if (*written == TORII_RENEW_STATE_EXPIRED
               || *written == TORII_RENEW_STATE_ALMOST_EXPIRED) {
        int expired = *written == TORII_RENEW_STATE_EXPIRED;
        torii_log(TORII_LOG_WARN, "renew: certificate %s (id=%s to=%lld)",
                  expired ? "expired" : "almost expired", id,
                  (long long)json_integer_value(json_object_get(c.e, "to")));
        torii_alerts_raise(alerts, expired ? TORII_ALERT_EXPIRED : TORII_ALERT_ALMOST_EXPIRED, c.e,
                           NULL);
    }
    json_decref(c.e);
    return rc;
}

/* Standing alerts repeat every alerts.repeat_s (renewal thread). */
static void renew_repeat(struct torii_renewer *r, const struct renew_item *it,
                         enum torii_renew_state st, int64_t now)
{
    const json_t *a = json_object_get(r->alerted, it->id);
    json_t *e = NULL;

    if (r->cfg->alerts_repeat_s == 0
        || (st != TORII_RENEW_STATE_EXPIRED && st != TORII_RENEW_STATE_ALMOST_EXPIRED)) {
        return;
    }
    if (a != NULL
        && now - json_integer_value(json_object_get(a, "at"))
               < (int64_t)r->cfg->alerts_repeat_s * 1000) {
        return;
    }
    if (torii_lifecycle__load(r->store, it->id, &e) == TORII_OK) {
        torii_alerts_raise(r->alerts,
                           st == TORII_RENEW_STATE_EXPIRED ? TORII_ALERT_EXPIRED
                                                           : TORII_ALERT_ALMOST_EXPIRED,
                           e, NULL);
        (void)json_object_set_new(r->alerted, it->id,
                                  json_pack("{s:i, s:I}", "state", (int)st, "at", (json_int_t)now));
    }
    json_decref(e);
}

static void renew_delete_copy(struct torii_renewer *r, const struct renew_item *it, json_t *res)
{
    struct torii_errbuf eb = {{0}};
    int rc;

    /* Its serial index entries go with it (certdb), when they still name this copy. */
    torii_lifecycle_write_begin();
    rc = torii_certdb_delete(r->store, it->id, &eb);
    torii_lifecycle_write_end();
    if (rc == TORII_OK) {
        torii_log(TORII_LOG_INFO, "renew: expired [UNTIL EXPIRATION] copy deleted (id=%s)", it->id);
        renew_result_add(res, "deleted", it->id, NULL, NULL);
    } else if (rc != TORII_ENOTFOUND) {
        torii_log(TORII_LOG_WARN, "renew: cannot delete an expired copy: %s (id=%s)",
                  eb.msg[0] ? eb.msg : torii_strerror(rc), it->id);
    }
}

/* A letsEncrypt certificate through the ACME hook: its due rule (ARI or the last third),
 * its renewal in place, failures retried with backoff and alerted as any other. 1 when it
 * was renewed. */
static int renew_acme_item(struct torii_renewer *r, const struct torii_renew_acme *acme,
                           const struct renew_item *it, int64_t now, json_t *res)
{
    struct torii_errbuf eb = {{0}};

    if (!acme->due(acme->arg, it->acme_ent, now)) {
        return 0;
    }
    if (renew_backoff_active(r, it->id, now)) {
        renew_result_add(res, "skipped", it->id, "reason", "retry backoff");
        return 0;
    }
    if (acme->renew(acme->arg, it->id, it->acme_ent, &eb) != TORII_OK) {
        renew_failed(r, it->id, now, eb.msg);
        renew_result_add(res, "failed", it->id, "error", eb.msg);
        return 0;
    }
    (void)json_object_del(r->failures, it->id);
    (void)json_object_del(r->alerted, it->id);
    renew_result_add(res, "renewed", it->id, NULL, NULL);
    return 1;
}

/* The expiry state of a live certificate, stored when it changed; standing alerts repeat. */
static void renew_flag_item(struct torii_renewer *r, const struct renew_item *it, int64_t now,
                            json_t *res)
{
    struct torii_errbuf eb = {{0}};
    enum torii_renew_state st = torii_renew_state_of(it->from, it->to, now, &r->pol);
    int written = -1;
    int rc;

    if (st == TORII_RENEW_STATE_NOT_YET_VALID) {
        st = TORII_RENEW_STATE_OK;
    }
    if (st == it->stored) {
        renew_repeat(r, it, st, now);
        return;
    }
    rc = torii_renew__flag(r->store, r->alerts, it->id, now, &r->pol, NULL, &written, &eb);
    if (rc == TORII_ECONFLICT) {
        torii_log(TORII_LOG_NOTICE,
                  "renew: certificate keeps changing, expiry state left for the next run "
                  "(id=%s)",
                  it->id);
    } else if (rc != TORII_OK) {
        torii_log(TORII_LOG_WARN, "renew: cannot store the expiry state: %s (id=%s)", eb.msg,
                  it->id);
    } else if (written == TORII_RENEW_STATE_EXPIRED
               || written == TORII_RENEW_STATE_ALMOST_EXPIRED) {
        (void)json_object_set_new(r->alerted, it->id,
                                  json_pack("{s:i, s:I}", "state", written, "at", (json_int_t)now));
        renew_result_add(res, "flagged", it->id, "state",
                         written == TORII_RENEW_STATE_EXPIRED ? "expired" : "almostExpired");
    } else if (written == TORII_RENEW_STATE_OK) {
        (void)json_object_del(r->alerted, it->id);
    }
}

/* One certificate of a cycle. In a fleet, one node does each job (jobgate.h), asked for each
 * certificate: a node that lost the job stops at once, and its writes carry the fence. */
static void renew_cycle_item(struct torii_renewer *r, const struct renew_item *it, int64_t now,
                             json_t *res)
{
    struct torii_errbuf eb = {{0}};
    int mine = torii_job_enter(r->gate, TORII_JOB_RENEWAL);
    int rc;

    if (it->copy) {
        if (mine && it->to <= now && r->cfg->renewal_delete_expired_copies) {
            renew_delete_copy(r, it, res);
        }
        return;
    }
    if (it->acme_ent != NULL && r->acme.due != NULL) {
        if (torii_job_held(r->gate, TORII_JOB_ACME) && renew_acme_item(r, &r->acme, it, now, res)) {
            return; /* fresh validity */
        }
    } else if (!mine) {
        return; /* another node of the fleet does job renewal */
    } else if (it->due == TORII_RENEW_DUE_ACME) {
        torii_log(TORII_LOG_INFO, "renew: due but Let's Encrypt: left to ACME (id=%s)", it->id);
        renew_result_add(res, "skipped", it->id, "reason", "letsEncrypt (ACME)");
    } else if (it->due == TORII_RENEW_DUE) {
        if (renew_backoff_active(r, it->id, now)) {
            renew_result_add(res, "skipped", it->id, "reason", "retry backoff");
        } else if ((rc = torii_renew__one(r->store, r->alerts, it->id, now, &r->pol, NULL, NULL,
                                          &eb))
                   == TORII_OK) {
            (void)json_object_del(r->failures, it->id);
            (void)json_object_del(r->alerted, it->id);
            renew_result_add(res, "renewed", it->id, NULL, NULL);
            return; /* fresh validity; flags were cleared by the renewal */
        } else if (rc == TORII_ECONFLICT) {
            /* Changed under us (the API wrote it, or this node lost the job): not a failure,
             * no backoff; its expiry state below is judged on what was written. */
            renew_result_add(res, "skipped", it->id, "reason", eb.msg);
        } else {
            renew_failed(r, it->id, now, eb.msg);
            renew_result_add(res, "failed", it->id, "error", eb.msg);
        }
    }
    if (!it->revoked && mine) {
        renew_flag_item(r, it, now, res);
    }
}

/* One full cycle; returns the summary (never NULL unless OOM). */
static json_t *renew_cycle(struct torii_renewer *r)
{
    struct renew_scan s = {.now = torii_clock_now_ms(),
                           .pol = &r->pol,
                           .store = r->store,
                           .del_copies = r->cfg->renewal_delete_expired_copies,
                           .repeat = r->cfg->alerts_repeat_s != 0};
    json_t *res = renew_result_new();
    int rc;

    if (res == NULL) {
        return NULL;
    }
    rc = torii_certdb_idx_foreach(r->store, renew_scan_cb, &s);
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "renew: cannot scan the store: %s", torii_strerror(rc));
    }
    for (size_t i = 0; i < s.n; i++) {
        renew_cycle_item(r, &s.v[i], s.now, res);
    }
    torii_job_leave(r->gate);
    torii_log(json_array_size(json_object_get(res, "renewed")) > 0
                      || json_array_size(json_object_get(res, "failed")) > 0
                  ? TORII_LOG_NOTICE
                  : TORII_LOG_DEBUG,
              "renew: cycle done (certificates=%zu renewed=%zu failed=%zu flagged=%zu)", s.seen,
              json_array_size(json_object_get(res, "renewed")),
              json_array_size(json_object_get(res, "failed")),
              json_array_size(json_object_get(res, "flagged")));
    renew_scan_clear(&s);
    return res;
}

/* Explicit ids: renewed due or not; failures are reported, not retried. */
static json_t *renew_ids(struct torii_renewer *r, const json_t *ids)
{
    json_t *res = renew_result_new();
    size_t i;
    json_t *v;

    if (res == NULL) {
        return NULL;
    }
    json_array_foreach ((json_t *)(uintptr_t)ids, i, v) {
        struct torii_errbuf eb = {{0}};
        const char *id = json_string_value(v);
        if (torii_renew_one(r->store, r->alerts, id, torii_clock_now_ms(), NULL, &eb) == TORII_OK) {
            (void)json_object_del(r->failures, id);
            (void)json_object_del(r->alerted, id);
            renew_result_add(res, "renewed", id, NULL, NULL);
        } else {
            renew_result_add(res, "failed", id, "error", eb.msg);
        }
    }
    return res;
}

static void renew_schedule(struct torii_renewer *r, int64_t delay_ms)
{
    struct timeval tv;

    if (delay_ms < 0) {
        return;
    }
    tv.tv_sec = (time_t)(delay_ms / 1000);
    tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
    if (event_add(r->timer_ev, &tv) != 0) {
        torii_log(TORII_LOG_ERR, "renew: cannot schedule the next run");
    }
}

int64_t torii_renew__first_delay_ms(unsigned interval_s, unsigned initial_delay_s)
{
    return (int64_t)(initial_delay_s < interval_s ? initial_delay_s : interval_s) * 1000;
}

int64_t torii_renew__period_delay_ms(unsigned interval_s, unsigned jitter_s, uint32_t rnd)
{
    int64_t jitter_max = (int64_t)jitter_s * 1000;

    if (jitter_max > (int64_t)interval_s * 500) {
        jitter_max = (int64_t)interval_s * 500;
    }
    return (int64_t)interval_s * 1000
           + (jitter_max > 0 ? (int64_t)(rnd % (uint64_t)jitter_max) : 0);
}

/* Next run: the period plus jitter, or sooner when a failed renewal is due for a retry. */
static void renew_schedule_next(struct torii_renewer *r)
{
    int64_t now = torii_clock_now_ms();
    int64_t next = -1;
    const char *id;
    json_t *f;

    if (r->cfg->renewal_interval_s > 0) {
        uint32_t rnd = 0;
        if (torii_rand_bytes(&rnd, sizeof(rnd)) != TORII_OK) {
            rnd = 0;
        }
        next =
            torii_renew__period_delay_ms(r->cfg->renewal_interval_s, r->cfg->renewal_jitter_s, rnd);
    }
    json_object_foreach (r->failures, id, f) {
        int64_t d = json_integer_value(json_object_get(f, "next")) - now;
        if (d < 1000) {
            d = 1000;
        }
        if (next < 0 || d < next) {
            next = d;
        }
    }
    renew_schedule(r, next);
}

static void renew_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_renewer *r = arg;

    (void)fd;
    (void)what;
    json_decref(renew_cycle(r));
    renew_schedule_next(r);
}

static void renew_req_release(struct torii_renewer *r, struct renew_req *q)
{
    /* Under r->mu. */
    if (--q->refs == 0) {
        free(q->id);
        json_decref(q->ids);
        json_decref(q->out);
        free(q);
    }
    (void)r;
}

static void renew_req_run(struct torii_renewer *r, struct renew_req *q)
{
    if (q->id != NULL) {
        q->rc = torii_renew_one(r->store, r->alerts, q->id, torii_clock_now_ms(), &q->out, &q->eb);
        if (q->rc == TORII_OK) {
            (void)json_object_del(r->failures, q->id);
            (void)json_object_del(r->alerted, q->id);
        }
        return;
    }
    q->out = q->ids != NULL ? renew_ids(r, q->ids) : renew_cycle(r);
    q->rc = q->out != NULL ? TORII_OK : TORII_ENOMEM;
    if (q->ids == NULL) {
        /* A full cycle ran: restart the period from now. */
        (void)event_del(r->timer_ev);
        renew_schedule_next(r);
    }
}

static void renew_work_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_renewer *r = arg;
    struct renew_req *list;

    (void)fd;
    (void)what;
    (void)pthread_mutex_lock(&r->mu);
    list = r->reqs;
    r->reqs = NULL;
    (void)pthread_mutex_unlock(&r->mu);
    while (list != NULL) {
        struct renew_req *q = list;
        list = q->next;
        renew_req_run(r, q);
        (void)pthread_mutex_lock(&r->mu);
        q->done = 1;
        (void)pthread_cond_broadcast(&r->cv);
        renew_req_release(r, q);
        (void)pthread_mutex_unlock(&r->mu);
    }
}

static void renew_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct torii_renewer *r = arg;

    (void)fd;
    (void)what;
    (void)event_base_loopbreak(r->base);
}

static void *renew_thread_main(void *arg)
{
    struct torii_renewer *r = arg;

    /* Nothing may be pending (interval 0): keep looping until stop_ev breaks the loop. */
    if (event_base_loop(r->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
        torii_log(TORII_LOG_ERR, "renew: event loop failed");
    }
    return NULL;
}

static void renewer_free(struct torii_renewer *r)
{
    if (r->timer_ev != NULL) {
        event_free(r->timer_ev);
    }
    if (r->work_ev != NULL) {
        event_free(r->work_ev);
    }
    if (r->stop_ev != NULL) {
        event_free(r->stop_ev);
    }
    if (r->base != NULL) {
        event_base_free(r->base);
    }
    json_decref(r->failures);
    json_decref(r->alerted);
    (void)pthread_cond_destroy(&r->cv);
    (void)pthread_mutex_destroy(&r->mu);
    free(r);
}

int torii_renewer_start(const struct torii_renewer_opts *o, struct torii_renewer **out,
                        struct torii_errbuf *eb)
{
    const struct torii_config *cfg = o->cfg;
    struct torii_renewer *r = torii_xcalloc(1, sizeof(*r));
    int err;
    int rc = TORII_OK;

    r->cfg = cfg;
    r->store = o->store;
    r->alerts = o->alerts;
    r->gate = o->gate;
    if (o->acme != NULL) {
        r->acme = *o->acme;
    }
    torii_renew_policy_from_config(cfg, &r->pol);
    if (pthread_mutex_init(&r->mu, NULL) != 0 || pthread_cond_init(&r->cv, NULL) != 0) {
        torii_fatal("renew: cannot create a mutex or condition variable");
    }
    r->failures = json_object();
    r->alerted = json_object();
    r->base = event_base_new();
    TORII_ENSURE(r->base != NULL && r->failures != NULL && r->alerted != NULL,
                 torii_errf(eb, TORII_ENOMEM, "renew: cannot create the event base"));
    r->timer_ev = evtimer_new(r->base, renew_timer_cb, r);
    r->work_ev = event_new(r->base, -1, 0, renew_work_cb, r);
    r->stop_ev = event_new(r->base, -1, 0, renew_stop_cb, r);
    TORII_ENSURE(r->timer_ev != NULL && r->work_ev != NULL && r->stop_ev != NULL,
                 torii_errf(eb, TORII_ENOMEM, "renew: cannot create events"));
    if (cfg->renewal_interval_s > 0) {
        if (cfg->renewal_initial_delay_s > cfg->renewal_interval_s) {
            torii_log(TORII_LOG_NOTICE,
                      "renew: first run after interval_s=%u, not initial_delay_s=%u (the first "
                      "run is never later than one period)",
                      cfg->renewal_interval_s, cfg->renewal_initial_delay_s);
        }
        renew_schedule(
            r, torii_renew__first_delay_ms(cfg->renewal_interval_s, cfg->renewal_initial_delay_s));
    }
    err = pthread_create(&r->thread, NULL, renew_thread_main, r);
    TORII_ENSURE(err == 0, torii_errf(eb, TORII_EIO, "renew: cannot start the thread (%d)", err));
    r->started = 1;
    torii_log(TORII_LOG_INFO,
              "renew: thread started (interval_s=%u threshold_pct=%u almost_expired_days=%u)",
              cfg->renewal_interval_s, r->pol.threshold_pct, cfg->alerts_almost_expired_days);
    *out = r;
    r = NULL;
out:
    if (r != NULL) {
        renewer_free(r);
    }
    return rc;
}

void torii_renewer_stop(struct torii_renewer *r)
{
    struct renew_req *list;

    if (r == NULL) {
        return;
    }
    if (r->started) {
        event_active(r->stop_ev, EV_READ, 0);
        (void)pthread_join(r->thread, NULL);
    }
    /* Requests that arrived too late: answer them so no waiter hangs. */
    (void)pthread_mutex_lock(&r->mu);
    r->stopped = 1;
    list = r->reqs;
    r->reqs = NULL;
    while (list != NULL) {
        struct renew_req *q = list;
        list = q->next;
        q->rc = torii_errf(&q->eb, TORII_EAGAIN, "shutting down");
        q->done = 1;
        renew_req_release(r, q);
    }
    (void)pthread_cond_broadcast(&r->cv);
    (void)pthread_mutex_unlock(&r->mu);
    renewer_free(r);
}

int torii_renewer_request(struct torii_renewer *r, const char *id, const json_t *ids,
                          int64_t timeout_ms, json_t **out, struct torii_errbuf *eb)
{
    struct renew_req *q = torii_xcalloc(1, sizeof(*q));
    struct timespec ts;
    int rc;

    if (ids != NULL) {
        q->ids = json_deep_copy(ids);
        if (q->ids == NULL) {
            free(q);
            return TORII_ENOMEM;
        }
    }
    q->id = id != NULL ? torii_xstrdup(id) : NULL;
    q->refs = 2;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_mutex_lock(&r->mu);
    if (r->stopped) {
        (void)pthread_mutex_unlock(&r->mu);
        free(q->id);
        json_decref(q->ids);
        free(q);
        return torii_errf(eb, TORII_EAGAIN, "shutting down");
    }
    q->next = r->reqs;
    r->reqs = q;
    (void)pthread_mutex_unlock(&r->mu);
    event_active(r->work_ev, EV_READ, 0);
    (void)pthread_mutex_lock(&r->mu);
    while (!q->done) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0 && !q->done) {
            break;
        }
    }
    if (!q->done) {
        rc = torii_errf(eb, TORII_ETIMEDOUT, "the renewal thread did not answer in time");
    } else {
        rc = q->rc;
        if (rc != TORII_OK && eb != NULL) {
            *eb = q->eb;
        }
        if (rc == TORII_OK && out != NULL) {
            *out = q->out;
            q->out = NULL;
        }
    }
    renew_req_release(r, q);
    (void)pthread_mutex_unlock(&r->mu);
    return rc;
}
