/* alert.c - the alert sink (exporters, reload) and the store watcher that turns API writes
 * into CertCreated/Updated/DeletedAlert. Alert types and the envelope: event.c. */
#include "torii/alert.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lifecycle_int.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"

struct torii_alerts {
    pthread_rwlock_t lock;      /* xs: read to push or reopen, written by a reload */
    struct torii_exporters *xs; /* replaced by torii_alerts_reload */
    _Atomic unsigned mask;
    int curl_inited;
    int lock_inited;
};

int torii_alerts_new(const struct torii_config *cfg, struct torii_store *store,
                     struct torii_alerts **out, struct torii_errbuf *eb)
{
    struct torii_alerts *al = torii_xcalloc(1, sizeof(*al));
    int rc = TORII_OK;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = torii_errf(eb, TORII_EIO, "alerts: curl_global_init failed");
        goto out;
    }
    al->curl_inited = 1;
    TORII_ENSURE(pthread_rwlock_init(&al->lock, NULL) == 0,
                 torii_errf(eb, TORII_ENOMEM, "alerts: pthread_rwlock_init failed"));
    al->lock_inited = 1;
    TORII_TRY(torii_exporters__new(cfg, store, &al->xs, eb));
    atomic_store(&al->mask, torii_exporters__mask(al->xs));
    *out = al;
    al = NULL;
out:
    torii_alerts_free(al);
    return rc;
}

void torii_alerts_free(struct torii_alerts *al)
{
    if (al == NULL) {
        return;
    }
    torii_exporters__free(al->xs);
    if (al->lock_inited) {
        (void)pthread_rwlock_destroy(&al->lock);
    }
    if (al->curl_inited) {
        curl_global_cleanup();
    }
    free(al);
}

int torii_alerts_wanted(const struct torii_alerts *al, enum torii_alert_type t)
{
    return al != NULL && (unsigned)t < TORII_ALERT_TYPES
           && (atomic_load(&al->mask) & (1u << t)) != 0;
}

void torii_alerts_raise(struct torii_alerts *al, enum torii_alert_type t, const json_t *entity,
                        const json_t *extra)
{
    json_t *env;

    if ((unsigned)t >= TORII_ALERT_TYPES) {
        return;
    }
    torii_metrics_inc(TORII_METRIC_ALERTS_RAISED);
    if (!torii_alerts_wanted(al, t)) {
        return;
    }
    env = torii_alert_envelope(t, entity, extra, torii_clock_now_ms());
    if (env == NULL) {
        torii_log(TORII_LOG_ERR, "alert: cannot build %s: out of memory", torii_alert_type_name(t));
        return;
    }
    (void)pthread_rwlock_rdlock(&al->lock);
    torii_exporters__push(al->xs, t, env);
    (void)pthread_rwlock_unlock(&al->lock);
    json_decref(env);
}

void torii_alerts_reopen(struct torii_alerts *al)
{
    if (al != NULL) {
        (void)pthread_rwlock_rdlock(&al->lock);
        torii_exporters__reopen(al->xs);
        (void)pthread_rwlock_unlock(&al->lock);
    }
}

int torii_alerts_reload(struct torii_alerts *al, const struct torii_config *cfg,
                        struct torii_store *store, struct torii_errbuf *eb)
{
    struct torii_exporters *xs = NULL;
    struct torii_exporters *old;
    int rc = TORII_OK;

    TORII_TRY(torii_exporters__new(cfg, store, &xs, eb));
    (void)pthread_rwlock_wrlock(&al->lock);
    old = al->xs;
    al->xs = xs;
    atomic_store(&al->mask, torii_exporters__mask(xs));
    (void)pthread_rwlock_unlock(&al->lock);
    torii_exporters__free(old); /* delivers what it still holds (one last webhook attempt) */
out:
    return rc;
}

/* Runs on the writing thread, under the store's write lock: parse, redact, queue; no I/O. */
static void alerts_on_store_change(enum torii_store_op_kind kind, enum torii_store_bucket b,
                                   const struct torii_store_rec *rec, void *arg)
{
    struct torii_alerts *al = arg;
    enum torii_alert_type t;
    json_t *ent = NULL;

    if (b != TORII_STORE_CERTS || torii_lifecycle__writing()) {
        return;
    }
    switch (kind) {
    case TORII_STORE_CREATE:
        t = TORII_ALERT_CREATED;
        break;
    case TORII_STORE_PUT:
    case TORII_STORE_REPLACE:
    case TORII_STORE_REPLACE_IF: /* reported as REPLACE; listed for -Wswitch-enum */
        t = TORII_ALERT_UPDATED;
        break;
    case TORII_STORE_DELETE:
        t = TORII_ALERT_DELETED;
        break;
    default:
        return;
    }
    if (!torii_alerts_wanted(al, t)) {
        torii_metrics_inc(TORII_METRIC_ALERTS_RAISED);
        return;
    }
    if (kind == TORII_STORE_DELETE) {
        ent = json_pack("{s:s%}", "id", rec->id, rec->id_len);
    } else {
        ent = json_loadb(rec->json, rec->json_len, 0, NULL);
    }
    if (ent == NULL) {
        torii_log(TORII_LOG_WARN, "alert: cannot decode the entity for %s",
                  torii_alert_type_name(t));
        return;
    }
    torii_alerts_raise(al, t, ent, NULL);
    json_decref(ent);
}

int torii_alerts_watch_store(struct torii_alerts *al, struct torii_store *store)
{
    return torii_store_watch(store, alerts_on_store_change, al);
}
