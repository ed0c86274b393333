/* ondemand.c - on-demand certificates (acme.on_demand, docs/acme.md): the decision taken
 * for a handshake that names a host without a certificate, and its safety limits:
 *   - the name must match acme.on_demand.allow (else: "denied");
 *   - one order per name at a time: a second handshake joins the order in flight ("joined");
 *   - a name whose order failed, or that the ask URL refused, waits failure_ttl_s
 *     ("failed_recently");
 *   - new orders are rate-limited globally (per minute) and per registered domain (per hour;
 *     the registered domain is taken as the last two labels) ("rate_limited");
 *   - else an order starts ("started"); on the ACME thread it first asks
 *     GET <ask>?domain=<name>, which must answer 200 ("ask_refused" otherwise).
 * In a fleet, a node that does not do job "acme" forwards an allowed name to the doer
 * through the wishes hook once per OD_GRACE_MS ("forwarded"; handshakes meanwhile wait for
 * the certificate the doer orders); the doer decides on each wish as on a handshake
 * (torii_acme_on_demand_wish) and reports the end of its order through the hook.
 * Decisions come from worker threads (TLS client-hello callback) and take only a mutex over
 * small fixed tables; nothing here waits for the network except acme_od_ask (ACME thread). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"

#define OD_NAMES   256 /* names remembered: in flight or failed recently */
#define OD_DOMAINS 256 /* registered domains with a per-hour count */
#define OD_NAME    254

/* OD_ISSUED: the order succeeded; for OD_GRACE_MS waiting handshakes keep waiting for the
 * certificate to reach the table (the store's watcher puts it there). */
enum od_state { OD_FREE = 0, OD_PENDING, OD_FAILED, OD_ISSUED, OD_FORWARDED };
#define OD_GRACE_MS 5000

struct od_name {
    char name[OD_NAME];
    enum od_state st;
    int64_t until_ms; /* OD_FAILED: not retried before */
};

struct od_domain {
    char name[OD_NAME];
    int64_t window_ms; /* start of its hour */
    unsigned n;
};

struct torii_acme_od {
    const struct torii_conf_on_demand *conf;
    pthread_mutex_t mu;
    struct torii_acme *acme; /* under mu: the running service (NULL: none, nothing starts) */
    const struct torii_acme_wishes *wishes; /* under mu: the fleet's hook (NULL: none) */
    struct od_name names[OD_NAMES];
    struct od_domain domains[OD_DOMAINS];
    int64_t global_window_ms; /* start of the current minute */
    unsigned global_n;
    uint64_t counts[ACME_OD_N];
};

static const char *const od_decision_names[ACME_OD_N] = {
    "started",     "joined", "denied",   "failed_recently", "rate_limited",
    "ask_refused", "served", "fallback", "forwarded"};

struct torii_acme_od *torii_acme_od_new(const struct torii_conf_on_demand *conf)
{
    struct torii_acme_od *od;

    if (conf == NULL || !conf->enabled) {
        return NULL;
    }
    od = torii_xcalloc(1, sizeof(*od));
    od->conf = conf;
    if (pthread_mutex_init(&od->mu, NULL) != 0) {
        torii_fatal("acme: cannot create the on-demand mutex");
    }
    return od;
}

void acme_od_attach(struct torii_acme_od *od, struct torii_acme *a,
                    const struct torii_acme_wishes *wishes)
{
    if (od != NULL) {
        (void)pthread_mutex_lock(&od->mu);
        od->acme = a;
        od->wishes = wishes;
        (void)pthread_mutex_unlock(&od->mu);
    }
}

void torii_acme_od_free(struct torii_acme_od *od)
{
    if (od == NULL) {
        return;
    }
    (void)pthread_mutex_destroy(&od->mu);
    free(od);
}

void acme_od_count(struct torii_acme_od *od, enum acme_od_decision d)
{
    if (od != NULL) {
        __atomic_fetch_add(&od->counts[d], 1, __ATOMIC_RELAXED);
    }
}

/* The entry of name, or NULL. Under mu. */
static struct od_name *od_find(struct torii_acme_od *od, const char *name)
{
    for (size_t i = 0; i < OD_NAMES; i++) {
        if (od->names[i].st != OD_FREE && strcmp(od->names[i].name, name) == 0) {
            return &od->names[i];
        }
    }
    return NULL;
}

/* A free entry (an expired failure is reused), or NULL when every one is in use. */
static struct od_name *od_slot(struct torii_acme_od *od, int64_t now_ms)
{
    for (size_t i = 0; i < OD_NAMES; i++) {
        struct od_name *e = &od->names[i];
        if (e->st == OD_FREE || (e->st != OD_PENDING && e->until_ms <= now_ms)) {
            return e;
        }
    }
    return NULL;
}

/* The registered domain of name: its last two labels. */
static const char *od_registered(const char *name)
{
    const char *last = strrchr(name, '.');
    const char *p = name;
    const char *prev = NULL;

    if (last == NULL) {
        return name;
    }
    for (const char *q = strchr(p, '.'); q != NULL && q != last; q = strchr(q + 1, '.')) {
        prev = q;
    }
    return prev != NULL ? prev + 1 : name;
}

/* The per-hour entry of registered domain reg: its own, else an unused or expired one
 * (NULL when all are in use: no new domain this hour). Under mu. */
static struct od_domain *od_domain_of(struct torii_acme_od *od, const char *reg, int64_t now_ms)
{
    struct od_domain *spare = NULL;

    for (size_t i = 0; i < OD_DOMAINS; i++) {
        struct od_domain *d = &od->domains[i];
        if (strcmp(d->name, reg) == 0) {
            return d;
        }
        if (spare == NULL && (d->name[0] == '\0' || now_ms - d->window_ms >= 3600000)) {
            spare = d;
        }
    }
    return spare;
}

/* 1 (and counted) when one more order for name fits the rate limits. Under mu. */
static int od_rate_take(struct torii_acme_od *od, const char *name, int64_t now_ms)
{
    const char *reg = od_registered(name);
    struct od_domain *d = od_domain_of(od, reg, now_ms);

    if (od->global_n > 0 && now_ms - od->global_window_ms >= 60000) {
        od->global_n = 0;
    }
    if (od->global_n == 0) {
        od->global_window_ms = now_ms;
    }
    if (d == NULL || od->global_n >= od->conf->global_per_min) {
        return 0;
    }
    if (strcmp(d->name, reg) != 0 || now_ms - d->window_ms >= 3600000) {
        (void)snprintf(d->name, sizeof(d->name), "%s", reg);
        d->window_ms = now_ms;
        d->n = 0;
    }
    if (d->n >= od->conf->domain_per_hour) {
        return 0;
    }
    d->n++;
    od->global_n++;
    return 1;
}

/* The decision for name under mu; *e gets the entry to fill when an order must start. */
static enum acme_od_decision od_decide_locked(struct torii_acme_od *od, const char *name,
                                              int64_t now_ms, struct od_name **e)
{
    struct od_name *found = od_find(od, name);

    *e = NULL;
    if (found != NULL
        && (found->st == OD_PENDING || (found->st == OD_ISSUED && found->until_ms > now_ms))) {
        return ACME_OD_JOINED;
    }
    if (found != NULL && found->st == OD_FAILED && found->until_ms > now_ms) {
        return ACME_OD_FAILED_RECENTLY;
    }
    *e = found != NULL ? found : od_slot(od, now_ms);
    if (*e == NULL || !od_rate_take(od, name, now_ms)) {
        *e = NULL;
        return ACME_OD_RATE_LIMITED;
    }
    (void)snprintf((*e)->name, sizeof((*e)->name), "%s", name);
    (*e)->st = OD_PENDING;
    return ACME_OD_STARTED;
}

/* On the doer: the decision for name, its order queued when one must start. Under mu. */
static enum acme_od_decision od_order_locked(struct torii_acme_od *od, const char *name,
                                             int64_t now_ms)
{
    struct torii_errbuf eb = {{0}};
    struct od_name *e = NULL;
    enum acme_od_decision d = od_decide_locked(od, name, now_ms, &e);

    if (e != NULL && acme_submit_on_demand(od->acme, name, &eb) != TORII_OK) {
        e->st = OD_FAILED; /* the queue is full: like a failure, for a while */
        e->until_ms = now_ms + (int64_t)od->conf->failure_ttl_s * 1000;
        d = ACME_OD_RATE_LIMITED;
    }
    return d;
}

/* On another node of a fleet: name forwarded to the doer once per OD_GRACE_MS; handshakes
 * wait meanwhile. Under mu (forward() only queues). */
static enum acme_od_decision od_forward_locked(struct torii_acme_od *od, const char *name,
                                               int64_t now_ms)
{
    struct od_name *e = od_find(od, name);

    if (e != NULL && e->st == OD_FORWARDED && e->until_ms > now_ms) {
        return ACME_OD_JOINED;
    }
    e = e != NULL && e->st != OD_PENDING ? e : od_slot(od, now_ms);
    if (e == NULL || od->wishes->forward(od->wishes->ctx, name) != TORII_OK) {
        return ACME_OD_RATE_LIMITED;
    }
    (void)snprintf(e->name, sizeof(e->name), "%s", name);
    e->st = OD_FORWARDED;
    e->until_ms = now_ms + OD_GRACE_MS;
    return ACME_OD_FORWARDED;
}

int torii_acme_on_demand(struct torii_acme_od *od, const char *name)
{
    int64_t now_ms = torii_clock_mono_us() / 1000;
    enum acme_od_decision d = ACME_OD_DENIED;

    if (od == NULL || strlen(name) >= OD_NAME || !torii_conf_on_demand_allows(od->conf, name)) {
        acme_od_count(od, ACME_OD_DENIED);
        return 0;
    }
    (void)pthread_mutex_lock(&od->mu);
    /* In a fleet only the node doing job "acme" orders; the others forward the name to it
     * (without a fleet's hook they serve the default certificate). */
    if (od->acme != NULL && acme_doer(od->acme)) {
        d = od_order_locked(od, name, now_ms);
    } else if (od->acme != NULL && od->wishes != NULL && od->wishes->forward != NULL) {
        d = od_forward_locked(od, name, now_ms);
    }
    (void)pthread_mutex_unlock(&od->mu);
    acme_od_count(od, d);
    if (d == ACME_OD_STARTED || d == ACME_OD_FORWARDED) {
        torii_log(TORII_LOG_NOTICE, "acme: on-demand %s for %s",
                  d == ACME_OD_STARTED ? "order" : "wish forwarded to the fleet's doer", name);
    }
    return d == ACME_OD_STARTED || d == ACME_OD_JOINED || d == ACME_OD_FORWARDED;
}

enum torii_acme_wish torii_acme_on_demand_wish(struct torii_acme_od *od, const char *name,
                                               const char **why)
{
    int64_t now_ms = torii_clock_mono_us() / 1000;
    enum acme_od_decision d = ACME_OD_DENIED;
    const struct od_name *e;
    int issued = 0;

    if (od != NULL && strlen(name) < OD_NAME && torii_conf_on_demand_allows(od->conf, name)) {
        (void)pthread_mutex_lock(&od->mu);
        if (od->acme != NULL && acme_doer(od->acme)) {
            d = od_order_locked(od, name, now_ms);
            e = od_find(od, name);
            issued = d == ACME_OD_JOINED && e != NULL && e->st == OD_ISSUED;
        }
        (void)pthread_mutex_unlock(&od->mu);
    }
    acme_od_count(od, d);
    *why = od_decision_names[d];
    if (d == ACME_OD_STARTED) {
        torii_log(TORII_LOG_NOTICE, "acme: on-demand order for %s (a wish of another node)", name);
    }
    if (d != ACME_OD_STARTED && d != ACME_OD_JOINED) {
        return TORII_ACME_WISH_REFUSED;
    }
    return issued ? TORII_ACME_WISH_SERVED : TORII_ACME_WISH_ORDERED;
}

void acme_od_done(struct torii_acme_od *od, const char *name, int ok, int64_t now_ms)
{
    struct od_name *e;

    if (od == NULL) {
        return;
    }
    (void)pthread_mutex_lock(&od->mu);
    e = od_find(od, name);
    if (e != NULL) {
        e->st = ok ? OD_ISSUED : OD_FAILED;
        e->until_ms = now_ms + (ok ? OD_GRACE_MS : (int64_t)od->conf->failure_ttl_s * 1000);
    }
    if (od->wishes != NULL && od->wishes->done != NULL) {
        od->wishes->done(od->wishes->ctx, name, ok); /* a wish for name is served or refused */
    }
    (void)pthread_mutex_unlock(&od->mu);
}

int acme_od_ask(struct acme_client *c, struct torii_acme_od *od, const char *name,
                struct torii_errbuf *eb)
{
    const char *ask = od->conf->ask;
    struct acme_resp r = {.retry_after_s = -1};
    char *esc = NULL;
    char *url = NULL;
    size_t n;
    int rc = TORII_OK;

    if (ask == NULL) {
        return TORII_OK;
    }
    esc = curl_easy_escape(c->curl, name, 0);
    TORII_ENSURE(esc != NULL, TORII_ENOMEM);
    n = strlen(ask) + strlen(esc) + 10;
    url = torii_xmalloc(n);
    (void)snprintf(url, n, "%s%cdomain=%s", ask, strchr(ask, '?') != NULL ? '&' : '?', esc);
    TORII_TRY(acme_net_do(c, url, NULL, 0, &r, eb));
    if (r.status != 200) {
        acme_od_count(od, ACME_OD_ASK_REFUSED);
        rc = torii_errf(eb, TORII_EPERM, "acme: on-demand: %s refused %s (HTTP %ld)", ask, name,
                        r.status);
    }
out:
    acme_resp_clear(&r);
    curl_free(esc);
    free(url);
    return rc;
}

int torii_acme_on_demand_pending(struct torii_acme_od *od, const char *name)
{
    int64_t now_ms = torii_clock_mono_us() / 1000;
    const struct od_name *e;
    int pending;

    if (od == NULL) {
        return 0;
    }
    (void)pthread_mutex_lock(&od->mu);
    e = od_find(od, name);
    pending = e != NULL
              && (e->st == OD_PENDING
                  || ((e->st == OD_ISSUED || e->st == OD_FORWARDED) && e->until_ms > now_ms));
    (void)pthread_mutex_unlock(&od->mu);
    return pending;
}

void torii_acme_on_demand_outcome(struct torii_acme_od *od, int served)
{
    acme_od_count(od, served ? ACME_OD_SERVED : ACME_OD_FALLBACK);
}

void acme_od_metrics(const struct torii_acme_od *od, struct torii_prom *p)
{
    if (od == NULL) {
        return;
    }
    TORII_ASSERT(torii_prom_family(p, "torii_acme_on_demand_total", "counter",
                                   "On-demand TLS decisions and handshake outcomes, by decision")
                 == TORII_OK);
    for (size_t i = 0; i < ACME_OD_N; i++) {
        const char *const l[] = {"decision", od_decision_names[i]};
        TORII_ASSERT(torii_prom_sample(p, "torii_acme_on_demand_total", l, 1,
                                       (double)__atomic_load_n(&od->counts[i], __ATOMIC_RELAXED))
                     == TORII_OK);
    }
}
