/* exporter.c - one thread and one bounded queue per configured exporter: webhook (libcurl,
 * batched JSON arrays, retry with exponential backoff), file (JSON lines, reopened on
 * request) and log. Raising an alert only takes the queue lock for a pointer push.
 * A webhook's tls.client_cert is never handled as key material here: the stored TLS record
 * becomes an opaque torii_pki_identity, which pki installs on libcurl's SSL_CTX. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "lifecycle_int.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"
#include "torii/renew.h"

struct exporter {
    struct torii_exporters *xs;
    const struct torii_conf_exporter *conf; /* borrowed from the config */
    unsigned mask;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu. */
    json_t **q;
    size_t q_cap;
    size_t q_head;
    size_t q_len;
    int stopping;
    uint64_t drops_unlogged;
    int64_t last_drop_log_ms;
    /* Exporter thread only. */
    FILE *fp;
    CURL *curl;
    /* The client identity the connections pooled in curl were opened with (the SSL_CTX
     * callback runs for new connections only), and why the callback last failed. */
    struct torii_pki_identity *ident;
    struct torii_errbuf tls_eb;
    int tls_failed;
    _Atomic int reopen;
};

struct torii_exporters {
    struct torii_store *store;
    struct exporter *ex;
    size_t n;
};

unsigned torii_exporters__mask(const struct torii_exporters *xs)
{
    unsigned m = 0;

    for (size_t i = 0; xs != NULL && i < xs->n; i++) {
        m |= xs->ex[i].mask;
    }
    return m;
}

static void exporter_drop_log(struct exporter *e, int64_t now)
{
    /* Under e->mu. At most one line per 10 s per exporter. */
    if (e->drops_unlogged > 0 && now - e->last_drop_log_ms >= 10000) {
        torii_log(TORII_LOG_WARN, "alert: exporter queue full, alerts dropped (exporter=%s n=%llu)",
                  e->conf->name, (unsigned long long)e->drops_unlogged);
        e->drops_unlogged = 0;
        e->last_drop_log_ms = now;
    }
}

void torii_exporters__push(struct torii_exporters *xs, enum torii_alert_type t, const json_t *env)
{
    for (size_t i = 0; xs != NULL && i < xs->n; i++) {
        struct exporter *e = &xs->ex[i];
        json_t *copy;

        if ((e->mask & (1u << t)) == 0) {
            continue;
        }
        /* Each queue gets its own copy: no jansson value is shared with the exporter thread
         * (json_decref reads the reference count non-atomically, so even sharing by
         * reference would race with the exporter's json_incref). */
        copy = json_deep_copy(env);
        (void)pthread_mutex_lock(&e->mu);
        if (copy == NULL || e->q_len == e->q_cap || e->stopping) {
            e->drops_unlogged++;
            torii_metrics_inc(TORII_METRIC_ALERTS_DROPPED);
            exporter_drop_log(e, torii_clock_mono_us() / 1000);
        } else {
            e->q[(e->q_head + e->q_len) % e->q_cap] = copy;
            copy = NULL;
            e->q_len++;
            (void)pthread_cond_signal(&e->cv);
        }
        (void)pthread_mutex_unlock(&e->mu);
        json_decref(copy);
    }
}

void torii_exporters__reopen(struct torii_exporters *xs)
{
    for (size_t i = 0; xs != NULL && i < xs->n; i++) {
        atomic_store(&xs->ex[i].reopen, 1);
    }
}

/* ---- waiting -------------------------------------------------------------------------- */

static void exporter_deadline(struct timespec *ts, int64_t ms)
{
    (void)clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Sleep up to ms unless stopping; returns 1 when stopping. */
static int exporter_sleep(struct exporter *e, int64_t ms)
{
    struct timespec ts;
    int stopping;

    exporter_deadline(&ts, ms);
    (void)pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    stopping = e->stopping;
    (void)pthread_mutex_unlock(&e->mu);
    return stopping;
}

/* Wait for work and take up to max alerts (the batch window applies to webhooks). Returns
 * the count; 0 only when stopping with an empty queue. */
static size_t exporter_take(struct exporter *e, json_t **batch, size_t max, unsigned window_ms)
{
    struct timespec ts;
    size_t n = 0;

    (void)pthread_mutex_lock(&e->mu);
    while (!e->stopping && e->q_len == 0) {
        (void)pthread_cond_wait(&e->cv, &e->mu);
    }
    if (window_ms > 0 && !e->stopping && e->q_len < max) {
        exporter_deadline(&ts, window_ms);
        while (!e->stopping && e->q_len < max) {
            if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) {
                break;
            }
        }
    }
    while (n < max && e->q_len > 0) {
        batch[n++] = e->q[e->q_head];
        e->q[e->q_head] = NULL;
        e->q_head = (e->q_head + 1) % e->q_cap;
        e->q_len--;
    }
    (void)pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- sinks ---------------------------------------------------------------------------- */

static void exporter_log_one(struct exporter *e, json_t *env)
{
    const json_t *cert = json_object_get(env, "certificate");
    const char *id = json_string_value(json_object_get(cert, "id"));
    const char *dom = json_string_value(json_object_get(cert, "domain"));
    const char *err = json_string_value(json_object_get(env, "error"));
    char eid[160];
    char edom[160];
    char eerr[256];

    (void)torii_log_escape(id != NULL ? id : "-", id != NULL ? strlen(id) : 1, eid, sizeof(eid));
    (void)torii_log_escape(dom != NULL ? dom : "-", dom != NULL ? strlen(dom) : 1, edom,
                           sizeof(edom));
    (void)torii_log_escape(err != NULL ? err : "", err != NULL ? strlen(err) : 0, eerr,
                           sizeof(eerr));
    torii_log(TORII_LOG_NOTICE, "alert: %s (exporter=%s id=%s domain=%s%s%s%s)",
              json_string_value(json_object_get(env, "alert")), e->conf->name, eid, edom,
              err != NULL ? " error=\"" : "", eerr, err != NULL ? "\"" : "");
    torii_metrics_inc(TORII_METRIC_ALERTS_SENT);
}

static void exporter_file_one(struct exporter *e, json_t *env)
{
    char *line;

    if (atomic_exchange(&e->reopen, 0) && e->fp != NULL) {
        (void)fclose(e->fp);
        e->fp = NULL;
    }
    if (e->fp == NULL) {
        e->fp = fopen(e->conf->path, "ae");
        if (e->fp == NULL) {
            torii_log_errno(TORII_LOG_ERR, "alert: cannot open %s (exporter=%s)", e->conf->path,
                            e->conf->name);
            torii_metrics_inc(TORII_METRIC_ALERTS_DROPPED);
            return;
        }
    }
    line = json_dumps(env, JSON_COMPACT);
    if (line == NULL || fprintf(e->fp, "%s\n", line) < 0 || fflush(e->fp) != 0) {
        torii_log_errno(TORII_LOG_ERR, "alert: cannot write %s (exporter=%s)", e->conf->path,
                        e->conf->name);
        torii_metrics_inc(TORII_METRIC_ALERTS_DROPPED);
        (void)fclose(e->fp);
        e->fp = NULL;
    } else {
        torii_metrics_inc(TORII_METRIC_ALERTS_SENT);
    }
    free(line);
}

/* PEM chain of a stored entity (tls.trusted_ca): public data only, the entity's secrets are
 * wiped before it is released. */
static int exporter_chain_load(struct torii_store *store, const char *id, char **out)
{
    json_t *ent = NULL;
    const char *s;
    int rc = torii_lifecycle__load(store, id, &ent);

    if (rc != TORII_OK) {
        return rc;
    }
    s = json_string_value(json_object_get(ent, "chain"));
    if (s != NULL && s[0] != '\0') {
        *out = torii_xstrdup(s);
    } else {
        rc = TORII_EINVAL;
    }
    torii_cert_secrets_wipe(ent);
    json_decref(ent);
    return rc;
}

/* The TLS client identity of stored entity id (tls.client_cert), from its TLS record. eb
 * says why it failed (never with key material). */
static int exporter_identity_load(struct torii_store *store, const char *id,
                                  struct torii_pki_identity **out, struct torii_errbuf *eb)
{
    struct torii_certdb_entry e = {0};
    int rc = torii_certdb_get(store, id, TORII_CERTDB_WITH_AUX, &e, NULL);

    if (rc == TORII_ENOTFOUND) {
        (void)torii_errf(eb, rc, "not found in the store");
    } else if (rc != TORII_OK) {
        (void)torii_errf(eb, rc, "store: read failed: %s", torii_strerror(rc));
    } else if (e.aux == NULL) {
        rc = torii_errf(eb, TORII_EINVAL, "no TLS record stored with it");
    } else {
        struct torii_pki_key_src key = torii_pki_key_src_of(e.ent, torii_store_kek(store));

        rc = torii_pki_identity_new(e.aux, e.aux_len, &key, out, eb);
    }
    torii_certdb_entry_clear(&e); /* holds the private key: wiped */
    return rc;
}

/* CURLOPT_SSL_CTX_FUNCTION: called by curl_easy_perform, on this exporter's thread, for each
 * new TLS connection. */
static CURLcode exporter_ssl_ctx_cb(CURL *curl, void *sslctx, void *arg)
{
    struct exporter *e = arg;

    (void)curl;
    if (torii_pki_identity_use(e->ident, sslctx, &e->tls_eb) != TORII_OK) {
        e->tls_failed = 1;
        return CURLE_SSL_CERTPROBLEM;
    }
    return CURLE_OK;
}

/* Load the identity of stored entity c->client_cert for the next transfer. TORII_ENOTFOUND
 * (unusable entity), why filled. */
static int exporter_identity_refresh(struct exporter *e, char *why, size_t why_len)
{
    const char *id = e->conf->client_cert;
    struct torii_pki_identity *ident = NULL;
    struct torii_errbuf eb = {{0}};

    if (exporter_identity_load(e->xs->store, id, &ident, &eb) != TORII_OK) {
        (void)snprintf(why, why_len, "tls.client_cert %s not usable: %s", id, eb.msg);
        return TORII_ENOTFOUND;
    }
    if (torii_pki_identity_eq(e->ident, ident)) {
        torii_pki_identity_free(ident);
        return TORII_OK;
    }
    /* A pooled connection keeps the identity it was opened with, and curl does not see the
     * change: a new certificate (renewed, replaced) starts with a fresh handle, which closes
     * every connection of the old one. */
    if (e->curl != NULL) {
        curl_easy_cleanup(e->curl);
        e->curl = NULL;
    }
    torii_pki_identity_free(e->ident);
    e->ident = ident;
    return TORII_OK;
}

/* Have curl present e->ident on new TLS connections. TORII_EUNSUPPORTED, why filled. */
static int exporter_identity_setopt(struct exporter *e, char *why, size_t why_len)
{
    e->tls_failed = 0;
    e->tls_eb.msg[0] = '\0';
    if (curl_easy_setopt(e->curl, CURLOPT_SSL_CTX_FUNCTION, exporter_ssl_ctx_cb) != CURLE_OK) {
        (void)snprintf(why, why_len, "tls.client_cert needs libcurl built with OpenSSL");
        return TORII_EUNSUPPORTED;
    }
    (void)curl_easy_setopt(e->curl, CURLOPT_SSL_CTX_DATA, e);
    /* A resumed TLS session carries the client identity of the handshake that made it, which
     * the callback cannot change: always authenticate afresh. */
    (void)curl_easy_setopt(e->curl, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    return TORII_OK;
}

/* The store-backed TLS options of a webhook: the CA to trust (tls.trusted_ca, copied by
 * curl) and the client identity (tls.client_cert). TORII_ENOTFOUND or TORII_EUNSUPPORTED,
 * why filled. */
static int exporter_webhook_tls(struct exporter *e, char *why, size_t why_len)
{
    const struct torii_conf_exporter *c = e->conf;
    char *ca_chain = NULL;
    struct curl_blob b;

    if (c->trusted_ca != NULL) {
        if (exporter_chain_load(e->xs->store, c->trusted_ca, &ca_chain) != TORII_OK) {
            (void)snprintf(why, why_len, "tls.trusted_ca %s not found in the store", c->trusted_ca);
            return TORII_ENOTFOUND;
        }
        b = (struct curl_blob){.data = ca_chain, .len = strlen(ca_chain), .flags = CURL_BLOB_COPY};
        (void)curl_easy_setopt(e->curl, CURLOPT_CAINFO_BLOB, &b);
        free(ca_chain);
    }
    return c->client_cert != NULL ? exporter_identity_setopt(e, why, why_len) : TORII_OK;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): the curl write-callback signature */
static size_t exporter_discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb;
}

/* The request headers: JSON content type plus the configured ones. NULL on OOM. */
static struct curl_slist *exporter_webhook_headers(const struct torii_conf_exporter *c)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");

    for (size_t i = 0; hdrs != NULL && i < c->n_headers; i++) {
        struct curl_slist *tmp = curl_slist_append(hdrs, c->headers[i]);
        if (tmp == NULL) {
            curl_slist_free_all(hdrs);
            return NULL;
        }
        hdrs = tmp;
    }
    return hdrs;
}

/* Every option of one POST but the store-backed TLS ones (exporter_webhook_tls). The
 * buffers are borrowed until the next curl_easy_reset. */
static void exporter_webhook_setopt(struct exporter *e, const char *body, size_t len,
                                    struct curl_slist *hdrs, char *errbuf)
{
    const struct torii_conf_exporter *c = e->conf;

    (void)curl_easy_setopt(e->curl, CURLOPT_URL, c->url);
    (void)curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    (void)curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(e->curl, CURLOPT_POST, 1L);
    (void)curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
    (void)curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    (void)curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdrs);
    (void)curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    (void)curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    (void)curl_easy_setopt(e->curl, CURLOPT_ERRORBUFFER, errbuf);
    (void)curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, exporter_discard);
    (void)curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    (void)curl_easy_setopt(e->curl, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
}

/* Why curl_easy_perform failed: our SSL_CTX callback's reason when it refused, else curl's. */
static int exporter_perform_failed(const struct exporter *e, CURLcode cc, const char *errbuf,
                                   char *why, size_t why_len)
{
    if (e->tls_failed) {
        (void)snprintf(why, why_len, "tls.client_cert %s: %s", e->conf->client_cert, e->tls_eb.msg);
        return TORII_ETLS;
    }
    (void)snprintf(why, why_len, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
    return TORII_EIO;
}

/* One POST of body; TORII_OK on a 2xx answer. */
static int exporter_webhook_post(struct exporter *e, const char *body, size_t len, char *why,
                                 size_t why_len)
{
    const struct torii_conf_exporter *c = e->conf;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    long code = 0;
    CURLcode cc;
    int rc = TORII_OK;

    if (c->client_cert != NULL) {
        TORII_TRY(exporter_identity_refresh(e, why, why_len));
    }
    if (e->curl == NULL) {
        e->curl = curl_easy_init();
        TORII_ENSURE(e->curl != NULL, TORII_ENOMEM);
    }
    curl_easy_reset(e->curl);
    hdrs = exporter_webhook_headers(c);
    TORII_ENSURE(hdrs != NULL, TORII_ENOMEM);
    exporter_webhook_setopt(e, body, len, hdrs, errbuf);
    TORII_TRY(exporter_webhook_tls(e, why, why_len));
    cc = curl_easy_perform(e->curl);
    if (cc != CURLE_OK) {
        rc = exporter_perform_failed(e, cc, errbuf, why, why_len);
        goto out;
    }
    (void)curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) {
        (void)snprintf(why, why_len, "HTTP status %ld", code);
        rc = TORII_EPROTO;
    }
out:
    if (e->curl != NULL) {
        /* Drop references to our buffers (headers, callback data) before freeing them. */
        curl_easy_reset(e->curl);
    }
    curl_slist_free_all(hdrs);
    return rc;
}

static void exporter_webhook_batch(struct exporter *e, json_t **batch, size_t n)
{
    json_t *arr = json_array();
    char *body = NULL;
    char why[CURL_ERROR_SIZE + 64];
    unsigned attempt = 0;

    for (size_t i = 0; arr != NULL && i < n; i++) {
        (void)json_array_append(arr, batch[i]);
    }
    body = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (body == NULL) {
        torii_log(TORII_LOG_ERR, "alert: cannot serialize a batch (exporter=%s)", e->conf->name);
        torii_metrics_add(TORII_METRIC_ALERTS_DROPPED, (int64_t)n);
        return;
    }
    for (;;) {
        int stopping;
        why[0] = '\0';
        if (exporter_webhook_post(e, body, strlen(body), why, sizeof(why)) == TORII_OK) {
            torii_metrics_add(TORII_METRIC_ALERTS_SENT, (int64_t)n);
            if (attempt > 0) {
                torii_log(TORII_LOG_NOTICE,
                          "alert: webhook delivered after %u retries "
                          "(exporter=%s n=%zu)",
                          attempt, e->conf->name, n);
            }
            break;
        }
        attempt++;
        (void)pthread_mutex_lock(&e->mu);
        stopping = e->stopping;
        (void)pthread_mutex_unlock(&e->mu);
        if (stopping || (e->conf->max_retries != 0 && attempt > e->conf->max_retries)) {
            torii_log(TORII_LOG_ERR,
                      "alert: webhook failed, batch dropped: %s (exporter=%s n=%zu attempts=%u)",
                      why, e->conf->name, n, attempt);
            torii_metrics_add(TORII_METRIC_ALERTS_DROPPED, (int64_t)n);
            break;
        }
        torii_metrics_inc(TORII_METRIC_ALERTS_RETRIES);
        {
            int64_t delay =
                torii_renew_backoff_ms(attempt, e->conf->retry_min_ms, e->conf->retry_max_ms);
            torii_log(TORII_LOG_WARN,
                      "alert: webhook failed, retrying: %s (exporter=%s n=%zu attempt=%u "
                      "delay_ms=%lld)",
                      why, e->conf->name, n, attempt, (long long)delay);
            if (exporter_sleep(e, delay)) {
                /* Stopping: the loop makes one last attempt, then drops. */
                continue;
            }
        }
    }
    free(body);
}

static void *exporter_main(void *arg)
{
    struct exporter *e = arg;
    const struct torii_conf_exporter *c = e->conf;
    size_t max = c->type == TORII_CONF_EXPORTER_WEBHOOK ? c->batch_size : 64;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    json_t **batch = torii_xcalloc(max, sizeof(*batch));

    for (;;) {
        size_t n =
            exporter_take(e, batch, max, c->type == TORII_CONF_EXPORTER_WEBHOOK ? c->batch_ms : 0);
        if (n == 0) {
            break; /* stopping and drained */
        }
        if (c->type == TORII_CONF_EXPORTER_WEBHOOK) {
            exporter_webhook_batch(e, batch, n);
        }
        for (size_t i = 0; i < n; i++) {
            if (c->type == TORII_CONF_EXPORTER_FILE) {
                exporter_file_one(e, batch[i]);
            } else if (c->type == TORII_CONF_EXPORTER_LOG) {
                exporter_log_one(e, batch[i]);
            }
            json_decref(batch[i]);
            batch[i] = NULL;
        }
    }
    free(batch);
    return NULL;
}

/* Deadlines are on CLOCK_MONOTONIC (exporter_deadline): the condition must use it too. */
static int exporter_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int err;

    if (pthread_condattr_init(&a) != 0) {
        return -1;
    }
    err = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (err == 0) {
        err = pthread_cond_init(cv, &a);
    }
    (void)pthread_condattr_destroy(&a);
    return err == 0 ? 0 : -1;
}

static unsigned exporter_mask(const struct torii_conf_exporter *c)
{
    unsigned m = 0;

    if (c->n_alerts == 0) {
        return (1u << TORII_ALERT_TYPES) - 1;
    }
    for (size_t i = 0; i < c->n_alerts; i++) {
        enum torii_alert_type t;
        if (torii_alert_type_parse(c->alerts[i], &t) == TORII_OK) {
            m |= 1u << t;
        }
    }
    return m;
}

/* Set up one exporter (queue, lock, file, thread); the caller counts it in xs->n once its
 * lock exists (*made), so that torii_exporters__free tears down what was made. */
static int exporter_start(struct exporter *e, size_t *made, struct torii_errbuf *eb)
{
    int err;
    int rc = TORII_OK;

    e->q_cap = e->conf->queue_size > 0 ? e->conf->queue_size : 1000;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    e->q = torii_xcalloc(e->q_cap, sizeof(*e->q));
    TORII_ENSURE(pthread_mutex_init(&e->mu, NULL) == 0, TORII_ENOMEM);
    if (exporter_cond_init(&e->cv) != 0) {
        (void)pthread_mutex_destroy(&e->mu);
        rc = TORII_ENOMEM;
        goto out;
    }
    (*made)++;
    if (e->conf->type == TORII_CONF_EXPORTER_FILE) {
        e->fp = fopen(e->conf->path, "ae");
        TORII_ENSURE(e->fp != NULL,
                     torii_errf(eb, TORII_EIO, "alerts: exporter %s: cannot open %s: %s",
                                e->conf->name, e->conf->path, torii_errno_text(errno).s));
    }
    err = pthread_create(&e->thread, NULL, exporter_main, e);
    TORII_ENSURE(err == 0, torii_errf(eb, TORII_EIO, "alerts: exporter %s: no thread (%d)",
                                      e->conf->name, err));
    e->started = 1;
out:
    return rc;
}

int torii_exporters__new(const struct torii_config *cfg, struct torii_store *store,
                         struct torii_exporters **out, struct torii_errbuf *eb)
{
    struct torii_exporters *xs = torii_xcalloc(1, sizeof(*xs));
    int rc = TORII_OK;

    xs->store = store;
    xs->ex = torii_xcalloc(cfg->n_exporters + 1, sizeof(*xs->ex));
    for (size_t i = 0; i < cfg->n_exporters; i++) {
        struct exporter *e = &xs->ex[i];
        e->xs = xs;
        e->conf = &cfg->exporter_list[i];
        e->mask = exporter_mask(e->conf);
        TORII_TRY(exporter_start(e, &xs->n, eb));
        torii_log(TORII_LOG_INFO, "alerts: exporter started (name=%s type=%s)", e->conf->name,
                  e->conf->type == TORII_CONF_EXPORTER_WEBHOOK ? "webhook"
                  : e->conf->type == TORII_CONF_EXPORTER_FILE  ? "file"
                                                               : "log");
    }
    *out = xs;
    xs = NULL;
out:
    torii_exporters__free(xs);
    return rc;
}

void torii_exporters__free(struct torii_exporters *xs)
{
    if (xs == NULL) {
        return;
    }
    for (size_t i = 0; i < xs->n; i++) {
        struct exporter *e = &xs->ex[i];
        (void)pthread_mutex_lock(&e->mu);
        e->stopping = 1;
        (void)pthread_cond_broadcast(&e->cv);
        (void)pthread_mutex_unlock(&e->mu);
        if (e->started) {
            (void)pthread_join(e->thread, NULL);
        }
        (void)pthread_mutex_lock(&e->mu);
        exporter_drop_log(e, INT64_MAX / 2);
        (void)pthread_mutex_unlock(&e->mu);
        while (e->q_len > 0) {
            json_decref(e->q[e->q_head]);
            e->q_head = (e->q_head + 1) % e->q_cap;
            e->q_len--;
        }
        free(e->q);
        if (e->fp != NULL) {
            (void)fclose(e->fp);
        }
        if (e->curl != NULL) {
            curl_easy_cleanup(e->curl);
        }
        torii_pki_identity_free(e->ident);
        (void)pthread_cond_destroy(&e->cv);
        (void)pthread_mutex_destroy(&e->mu);
    }
    free(xs->ex);
    free(xs);
}
