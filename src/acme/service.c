/* service.c - the ACME thread and its jobs (acme.h): submit queues a job, the thread runs
 * pending jobs one at a time (acme_order_run), turns the chain and key into an entity
 * (letsEncrypt, autoRenew; an existing entity is updated in place) and stores it through
 * acme_store_issued. The last ACME_JOBS_MAX jobs are remembered for GET .../jobs/:id. Waits
 * (polling, Retry-After) wake up at once on stop. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define ACME_JOBS_MAX 256

enum acme_job_state { JOB_PENDING = 0, JOB_PROCESSING, JOB_VALID, JOB_INVALID };
static const char *const acme_job_names[] = {"pending", "processing", "valid", "invalid"};

struct acme_job {
    char id[33];
    json_t *hosts;
    char *cert_id; /* the entity to update (renewal), then the stored one */
    int on_demand; /* ordered for a handshake (ondemand.c): asked first, outcome reported */
    enum acme_job_state st;
    char error[TORII_ERRBUF_SIZE];
    int64_t created_ms;
    int64_t finished_ms;
};

struct torii_acme {
    struct torii_acme_opts o;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct acme_job *jobs[ACME_JOBS_MAX]; /* oldest first */
    size_t n_jobs;
    struct torii_acme_counts counts;
    struct acme_client client; /* ACME thread only */
    struct torii_acme_od *od;  /* o.od: acme.on_demand (NULL: off) */
};

static void acme_job_free(struct acme_job *j)
{
    json_decref(j->hosts);
    free(j->cert_id);
    free(j);
}

/* acme_sleep_fn: a wait the stop request cuts short. */
static int acme_service_sleep(void *arg, int64_t ms)
{
    struct torii_acme *a = arg;
    struct timespec ts;
    int stopping;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_mutex_lock(&a->mu);
    while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0) {
    }
    stopping = a->stop;
    (void)pthread_mutex_unlock(&a->mu);
    return stopping ? TORII_EAGAIN : TORII_OK;
}

/* In a fleet, another node does job "acme" (jobgate.h). */
static int acme_not_doer(struct torii_errbuf *eb)
{
    return torii_errf(eb, TORII_EAGAIN,
                      "acme: another node of the fleet runs the ACME orders (job \"acme\"): "
                      "submit the order to it");
}

/* Run one job on the ACME thread; the outcome goes into the job (under the mutex). */
static void acme_job_run(struct torii_acme *a, struct acme_job *j)
{
    struct torii_errbuf eb = {{0}};
    char *chain = NULL;
    char *key = NULL;
    char *cert_id = NULL;
    int rc;

    a->client.deadline_ms =
        torii_clock_mono_us() / 1000 + (int64_t)a->o.conf->order_timeout_s * 1000;
    rc = torii_job_enter(a->o.gate, TORII_JOB_ACME) ? TORII_OK : acme_not_doer(&eb);
    if (rc == TORII_OK && j->on_demand) {
        rc = acme_od_ask(&a->client, a->od, json_string_value(json_array_get(j->hosts, 0)), &eb);
    }
    if (rc == TORII_OK) {
        rc = acme_order_run(&a->client, j->hosts, &chain, &key, &eb);
    }
    if (rc == TORII_OK) {
        rc = acme_store_issued(a->o.store, j->cert_id, j->hosts, chain, key, &cert_id, &eb);
    }
    torii_job_leave(a->o.gate);
    if (rc != TORII_OK && eb.msg[0] == '\0') {
        (void)snprintf(eb.msg, sizeof(eb.msg), "acme: %s", torii_strerror(rc));
    }
    (void)pthread_mutex_lock(&a->mu);
    (void)pthread_cond_broadcast(&a->cv); /* torii_acme_wait */
    j->st = rc == TORII_OK ? JOB_VALID : JOB_INVALID;
    j->finished_ms = torii_clock_now_ms();
    if (rc == TORII_OK) {
        free(j->cert_id);
        j->cert_id = cert_id;
        cert_id = NULL;
    } else {
        (void)snprintf(j->error, sizeof(j->error), "%s", eb.msg);
    }
    (void)pthread_mutex_unlock(&a->mu);
    if (j->on_demand) { /* outside a->mu: ondemand.c takes its own mutex, then a->mu */
        acme_od_done(a->od, json_string_value(json_array_get(j->hosts, 0)), rc == TORII_OK,
                     torii_clock_mono_us() / 1000);
    }
    __atomic_fetch_add(rc == TORII_OK ? &a->counts.orders_valid : &a->counts.orders_invalid, 1,
                       __ATOMIC_RELAXED);
    if (rc == TORII_OK) {
        torii_log(TORII_LOG_NOTICE, "acme: job %s: certificate %s issued", j->id, j->cert_id);
    } else {
        torii_log(TORII_LOG_WARN, "acme: job %s failed: %s", j->id, j->error);
        /* Start afresh next time: the directory or nonces may be what went wrong. */
        json_decref(a->client.dir);
        a->client.dir = NULL;
    }
    free(cert_id);
    free(chain);
    if (key != NULL) {
        torii_secure_free(key, strlen(key));
    }
}

/* The next pending job (marked processing), or NULL when stopping. */
static struct acme_job *acme_next(struct torii_acme *a)
{
    struct acme_job *j = NULL;

    (void)pthread_mutex_lock(&a->mu);
    while (!a->stop && j == NULL) {
        for (size_t i = 0; i < a->n_jobs && j == NULL; i++) {
            j = a->jobs[i]->st == JOB_PENDING ? a->jobs[i] : NULL;
        }
        if (j == NULL) {
            (void)pthread_cond_wait(&a->cv, &a->mu);
        }
    }
    if (j != NULL && !a->stop) {
        j->st = JOB_PROCESSING;
    } else {
        j = NULL;
    }
    (void)pthread_mutex_unlock(&a->mu);
    return j;
}

static void *acme_thread(void *arg)
{
    struct torii_acme *a = arg;
    struct acme_job *j;

    while ((j = acme_next(a)) != NULL) {
        acme_job_run(a, j);
    }
    return NULL;
}

int torii_acme_start(const struct torii_acme_opts *o, struct torii_acme **out,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_acme *a = NULL;
    pthread_condattr_t ca;

    TORII_ENSURE(o->conf != NULL && o->conf->enabled && o->store != NULL && o->chal != NULL,
                 torii_errf(eb, TORII_EINVAL, "acme: not configured (acme.directory_url)"));
    a = torii_xcalloc(1, sizeof(*a));
    a->o = *o;
    a->client.conf = o->conf;
    a->client.store = o->store;
    a->client.chal = o->chal;
    a->client.share = o->share;
    a->client.sleep = acme_service_sleep;
    a->client.sleep_arg = a;
    a->client.counts = &a->counts;
    a->client.stop = &a->stop;
    a->od = o->od;
    TORII_TRY(acme_net_open(&a->client, eb));
    TORII_ENSURE(pthread_condattr_init(&ca) == 0, TORII_ENOMEM);
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    TORII_ENSURE(pthread_mutex_init(&a->mu, NULL) == 0 && pthread_cond_init(&a->cv, &ca) == 0,
                 TORII_ENOMEM);
    (void)pthread_condattr_destroy(&ca);
    TORII_ENSURE(pthread_create(&a->th, NULL, acme_thread, a) == 0,
                 torii_errf(eb, TORII_ENOMEM, "acme: cannot start the ACME thread"));
    a->started = 1;
    acme_od_attach(a->od, a, o->wishes);
    *out = a;
    a = NULL;
out:
    if (a != NULL) {
        acme_net_close(&a->client);
        free(a);
    }
    return rc;
}

void torii_acme_cancel(struct torii_acme *a)
{
    if (a == NULL) {
        return;
    }
    acme_od_attach(a->od, NULL, NULL); /* no new on-demand order from now on */
    (void)pthread_mutex_lock(&a->mu);
    __atomic_store_n(&a->stop, 1, __ATOMIC_RELAXED);
    (void)pthread_cond_broadcast(&a->cv);
    (void)pthread_mutex_unlock(&a->mu);
}

void torii_acme_stop(struct torii_acme *a)
{
    if (a == NULL) {
        return;
    }
    torii_acme_cancel(a);
    if (a->started) {
        (void)pthread_join(a->th, NULL);
    }
    for (size_t i = 0; i < a->n_jobs; i++) {
        acme_job_free(a->jobs[i]);
    }
    for (size_t i = 0; i < a->client.n_nonces; i++) {
        free(a->client.nonces[i]);
    }
    acme_net_close(&a->client);
    json_decref(a->client.dir);
    json_decref(a->client.jwk);
    if (a->client.key_pem != NULL) {
        torii_secure_free(a->client.key_pem, strlen(a->client.key_pem));
    }
    free(a->client.kid);
    (void)pthread_cond_destroy(&a->cv);
    (void)pthread_mutex_destroy(&a->mu);
    free(a);
}

/* Room for one more job: the oldest finished one is forgotten. Mutex held. */
static int acme_jobs_room(struct torii_acme *a)
{
    if (a->n_jobs < ACME_JOBS_MAX) {
        return 1;
    }
    for (size_t i = 0; i < a->n_jobs; i++) {
        if (a->jobs[i]->st == JOB_VALID || a->jobs[i]->st == JOB_INVALID) {
            acme_job_free(a->jobs[i]);
            for (size_t k = i + 1; k < a->n_jobs; k++) {
                a->jobs[k - 1] = a->jobs[k];
            }
            a->n_jobs--;
            return 1;
        }
    }
    return 0;
}

/* Queue job j (taken, freed on failure); job_id (may be NULL) gets its id. */
static int acme_queue(struct torii_acme *a, struct acme_job *j, char *job_id,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    j->created_ms = torii_clock_now_ms();
    (void)pthread_mutex_lock(&a->mu);
    if (acme_jobs_room(a)) {
        a->jobs[a->n_jobs++] = j;
        (void)pthread_cond_broadcast(&a->cv);
        if (job_id != NULL) {
            memcpy(job_id, j->id, sizeof(j->id));
        }
        j = NULL;
    } else {
        rc = torii_errf(eb, TORII_EAGAIN, "acme: %d orders already queued", ACME_JOBS_MAX);
    }
    (void)pthread_mutex_unlock(&a->mu);
    if (j != NULL) {
        acme_job_free(j);
    }
    return rc;
}

int acme_submit_on_demand(struct torii_acme *a, const char *name, struct torii_errbuf *eb)
{
    struct acme_job *j = torii_xcalloc(1, sizeof(*j));

    j->on_demand = 1;
    j->hosts = json_pack("[s]", name);
    if (j->hosts == NULL || torii_rand_alnum(j->id, 32) != TORII_OK) {
        acme_job_free(j);
        return TORII_ENOMEM;
    }
    return acme_queue(a, j, NULL, eb);
}

int acme_doer(const struct torii_acme *a)
{
    return torii_job_held(a->o.gate, TORII_JOB_ACME);
}

const struct torii_acme_od *torii_acme__od(const struct torii_acme *a)
{
    return a->od;
}

int torii_acme_submit(struct torii_acme *a, const json_t *hosts, const char *cert_id,
                      char job_id[33], struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_job *j = torii_xcalloc(1, sizeof(*j));

    TORII_ENSURE(torii_job_held(a->o.gate, TORII_JOB_ACME), acme_not_doer(eb));
    TORII_TRY(torii_rand_alnum(j->id, 32));
    j->hosts = json_deep_copy(hosts);
    TORII_ENSURE(j->hosts != NULL, TORII_ENOMEM);
    j->cert_id = cert_id != NULL ? torii_xstrdup(cert_id) : NULL;
    rc = acme_queue(a, j, job_id, eb);
    j = NULL;
out:
    if (j != NULL) {
        acme_job_free(j);
    }
    return rc;
}

int torii_acme_job_get(struct torii_acme *a, const char *job_id, json_t **out)
{
    int rc = TORII_ENOTFOUND;

    (void)pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_jobs; i++) {
        const struct acme_job *j = a->jobs[i];
        if (strcmp(j->id, job_id) != 0) {
            continue;
        }
        *out = json_pack("{s:s,s:s,s:O,s:I}", "id", j->id, "status", acme_job_names[j->st], "hosts",
                         j->hosts, "created", (json_int_t)j->created_ms);
        rc = *out != NULL ? TORII_OK : TORII_ENOMEM;
        if (rc == TORII_OK && j->finished_ms != 0) {
            (void)json_object_set_new(*out, "finished", json_integer(j->finished_ms));
        }
        if (rc == TORII_OK && j->st == JOB_VALID) {
            (void)json_object_set_new(*out, "certId", json_string(j->cert_id));
        }
        if (rc == TORII_OK && j->st == JOB_INVALID) {
            (void)json_object_set_new(*out, "error", json_string(j->error));
        }
        break;
    }
    (void)pthread_mutex_unlock(&a->mu);
    return rc;
}

void torii_acme_counts_get(const struct torii_acme *a, struct torii_acme_counts *out)
{
    memset(out, 0, sizeof(*out));
    if (a == NULL) {
        return;
    }
    out->orders_valid = __atomic_load_n(&a->counts.orders_valid, __ATOMIC_RELAXED);
    out->orders_invalid = __atomic_load_n(&a->counts.orders_invalid, __ATOMIC_RELAXED);
    for (size_t i = 0; i < 3; i++) {
        out->chal_failed[i] = __atomic_load_n(&a->counts.chal_failed[i], __ATOMIC_RELAXED);
    }
}

const struct torii_conf_acme *torii_acme__conf(const struct torii_acme *a)
{
    return a->o.conf;
}

struct torii_acme_chal *torii_acme__chal(const struct torii_acme *a)
{
    return a->o.chal;
}

/* The state of job_id; -1 when unknown. Mutex held. */
static int acme_job_state(const struct torii_acme *a, const char *job_id)
{
    for (size_t i = 0; i < a->n_jobs; i++) {
        if (strcmp(a->jobs[i]->id, job_id) == 0) {
            return (int)a->jobs[i]->st;
        }
    }
    return -1;
}

int torii_acme_wait(struct torii_acme *a, const char *job_id, int64_t timeout_ms)
{
    int rc = TORII_ETIMEDOUT;
    struct timespec ts;
    int st;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    (void)pthread_mutex_lock(&a->mu);
    for (;;) {
        st = acme_job_state(a, job_id);
        if (st < 0) {
            rc = TORII_ENOTFOUND;
            break;
        }
        if (st == JOB_VALID || st == JOB_INVALID) {
            rc = TORII_OK;
            break;
        }
        if (a->stop) {
            rc = TORII_EAGAIN;
            break;
        }
        if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0) {
            break;
        }
    }
    (void)pthread_mutex_unlock(&a->mu);
    return rc;
}
