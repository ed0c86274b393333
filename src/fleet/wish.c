/* wish.c - on-demand wishes (fleet.h, docs/fleet.md "Jobs"): a node that does not do job
 * "acme" and has a handshake for an allowed name without a certificate puts <prefix>w/<name>
 * (its node name), created only when absent and attached to its lease, so a wish goes away
 * with the node that made it. The doer of job "acme" decides on every wish as on a handshake
 * of its own (torii_acme_on_demand_wish: allow-list, failed recently, rate limits, then the
 * ask URL), orders once per name, and removes the wish when the order ended or at once when
 * refused (logged; the decision counted in /metrics). The certificate reaches every node by
 * the usual replication. A node that becomes the doer reads the wishes present.
 * Threads: the hooks (forward on workers, done on the ACME thread) and fleet_wish_seen (the
 * watch thread) only queue; the wish thread does the etcd requests and the decisions. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_int.h"
#include "torii/acme.h"
#include "torii/jobgate.h"
#include "torii/log.h"
#include "torii/mem.h"

enum { WISH_PUT, WISH_DECIDE, WISH_DROP };

#define WISH_RANGE_LIMIT 1000

/* Queue op for name (an identical op already queued is enough). TORII_ETOOBIG when full. */
static int wish_push(struct fleet_wishes *w, int op, const char *name, int ok)
{
    size_t len = strlen(name);
    int rc = TORII_OK;

    if (len == 0 || len > FLEET_NAME_MAX) {
        return TORII_EINVAL;
    }
    (void)pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++) {
        const struct fleet_wish_item *it = &w->q[(w->head + i) % FLEET_WISH_QUEUE];
        if (it->op == op && it->ok == ok && strcmp(it->name, name) == 0) {
            goto out;
        }
    }
    TORII_ENSURE(w->n < FLEET_WISH_QUEUE, TORII_ETOOBIG);
    w->q[(w->head + w->n) % FLEET_WISH_QUEUE].op = op;
    w->q[(w->head + w->n) % FLEET_WISH_QUEUE].ok = ok;
    memcpy(w->q[(w->head + w->n) % FLEET_WISH_QUEUE].name, name, len + 1);
    w->n++;
    (void)pthread_cond_signal(&w->cv);
out:
    (void)pthread_mutex_unlock(&w->mu);
    return rc;
}

static int wish_forward(void *ctx, const char *name)
{
    struct torii_fleet *f = ctx;
    return wish_push(f->wishes, WISH_PUT, name, 0);
}

static void wish_done(void *ctx, const char *name, int ok)
{
    struct torii_fleet *f = ctx;

    if (wish_push(f->wishes, WISH_DROP, name, ok) != TORII_OK) {
        torii_log(TORII_LOG_WARN,
                  "fleet: on-demand wish for %s not removed (queue full): it "
                  "goes with its node's lease",
                  name);
    }
}

void torii_fleet_wishes(struct torii_fleet *f, struct torii_acme_wishes *out)
{
    memset(out, 0, sizeof(*out));
    if (f != NULL && f->wishes != NULL) {
        *out = (struct torii_acme_wishes){.ctx = f, .forward = wish_forward, .done = wish_done};
    }
}

/* "<prefix>w/<name>" (malloc'd), its length in *len. */
static char *wish_key(const struct torii_fleet *f, const char *name, size_t *len)
{
    size_t n = strlen(f->o.conf->prefix) + 2 + strlen(name);
    char *k = torii_xmalloc(n + 1);

    (void)snprintf(k, n + 1, "%sw/%s", f->o.conf->prefix, name);
    *len = n;
    return k;
}

/* POST req (taken) to path, the answer dropped. */
static int wish_call(struct torii_fleet *f, const char *path, json_t *req, struct torii_errbuf *eb)
{
    char *resp = NULL;
    size_t len = 0;
    int rc = fleet_call_json(&f->cl, path, req, &resp, &len, eb);

    free(resp);
    return rc;
}

/* The wish for name, unless one exists, attached to this node's lease. */
static int wish_put(struct torii_fleet *f, const char *name, struct torii_errbuf *eb)
{
    size_t klen = 0;
    char *key = wish_key(f, name, &klen);
    char lease[32];
    int64_t id;
    int rc = TORII_OK;

    (void)pthread_mutex_lock(&f->el.mu);
    id = f->el.st.lease;
    (void)pthread_mutex_unlock(&f->el.mu);
    TORII_ENSURE(id != 0, torii_errf(eb, TORII_EAGAIN, "this node holds no etcd lease yet"));
    (void)snprintf(lease, sizeof(lease), "%" PRId64, id);
    rc = wish_call(f, "/v3/kv/txn",
                   json_pack("{s:[{s:o, s:s, s:s, s:s}], s:[{s:{s:o, s:o, s:s}}]}", "compare",
                             "key", fleet_b64(key, klen), "target", "CREATE", "result", "EQUAL",
                             "create_revision", "0", "success", "request_put", "key",
                             fleet_b64(key, klen), "value",
                             fleet_b64(f->el.node, strlen(f->el.node)), "lease", lease),
                   eb);
out:
    free(key);
    return rc;
}

static int wish_delete(struct torii_fleet *f, const char *name, struct torii_errbuf *eb)
{
    size_t klen = 0;
    char *key = wish_key(f, name, &klen);
    int rc =
        wish_call(f, "/v3/kv/deleterange", json_pack("{s:o}", "key", fleet_b64(key, klen)), eb);

    free(key);
    return rc;
}

/* On the doer: decide on the wish for name; a refused one is removed at once. */
static void wish_decide(struct torii_fleet *f, const char *name)
{
    struct torii_errbuf eb = {{0}};
    const char *why = "";
    enum torii_acme_wish r = torii_acme_on_demand_wish(f->o.od, name, &why);

    if (r == TORII_ACME_WISH_ORDERED) {
        return; /* removed when the order ends (wish_done) */
    }
    if (r == TORII_ACME_WISH_REFUSED) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wish for %s refused (%s): removed", name, why);
    }
    if (wish_delete(f, name, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wish for %s not removed: %s", name, eb.msg);
    }
}

static void wish_run(struct torii_fleet *f, const struct fleet_wish_item *it)
{
    struct torii_errbuf eb = {{0}};

    if (it->op == WISH_DECIDE) {
        wish_decide(f, it->name);
    } else if (it->op == WISH_PUT && wish_put(f, it->name, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wish for %s not sent to the doer: %s", it->name,
                  eb.msg);
    } else if (it->op == WISH_DROP && wish_delete(f, it->name, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wish for %s not removed: %s", it->name, eb.msg);
    } else if (it->op == WISH_DROP) {
        torii_log(TORII_LOG_INFO, "fleet: on-demand order for %s ended (%s): wish removed",
                  it->name, it->ok ? "issued" : "failed");
    }
}

/* The doer reads the wishes present (made before it took the job). */
static void wish_load(struct torii_fleet *f)
{
    struct torii_fleet_range r = {0};
    struct torii_errbuf eb = {{0}};

    if (fleet_range_sub(f, 'w', WISH_RANGE_LIMIT, 1, &r, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wishes not read: %s", eb.msg);
    }
    for (size_t i = 0; i < r.n; i++) {
        fleet_wish_seen(f, &r.kvs[i], 0);
    }
    torii_fleet_range_clear(&r);
}

/* The next item into *it (1), waiting at most a second (0: none). */
static int wish_next(struct torii_fleet *f, struct fleet_wish_item *it)
{
    struct fleet_wishes *w = f->wishes;
    struct timespec until;
    int got = 0;

    fleet_deadline(1000, &until);
    (void)pthread_mutex_lock(&w->mu);
    while (w->n == 0 && !atomic_load(&f->stop)) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) {
            break;
        }
    }
    if (w->n > 0) {
        *it = w->q[w->head];
        w->head = (w->head + 1) % FLEET_WISH_QUEUE;
        w->n--;
        got = 1;
    }
    (void)pthread_mutex_unlock(&w->mu);
    return got;
}

static void *wish_thread(void *arg)
{
    struct torii_fleet *f = arg;
    struct fleet_wish_item it;

    while (!atomic_load(&f->stop)) {
        int got = wish_next(f, &it);
        int held = atomic_load(&f->up) && torii_fleet_job_held(f, TORII_JOB_ACME, NULL);
        if (held && !f->wishes->held) {
            wish_load(f);
        }
        f->wishes->held = held;
        if (got && (it.op != WISH_DECIDE || held)) {
            wish_run(f, &it);
        }
    }
    return NULL;
}

void fleet_wish_seen(struct torii_fleet *f, const struct torii_fleet_kv *kv, int deleted)
{
    size_t plen = strlen(f->o.conf->prefix);
    const char *name = kv->key + plen + 2;

    if (f->wishes == NULL || deleted || kv->key_len <= plen + 2
        || memcmp(kv->key, f->o.conf->prefix, plen) != 0 || kv->key[plen] != 'w'
        || kv->key[plen + 1] != '/' || !torii_fleet_job_held(f, TORII_JOB_ACME, NULL)) {
        return;
    }
    if (!fleet_is_dns_name(name, kv->key_len - plen - 2)) {
        torii_log(TORII_LOG_WARN, "fleet: an on-demand wish for a name that is not a lower-case "
                                  "DNS name ignored");
        return;
    }
    if (wish_push(f->wishes, WISH_DECIDE, name, 0) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: on-demand wish for %s not decided on (queue full)", name);
    }
}

int fleet_wish_start(struct torii_fleet *f, struct torii_errbuf *eb)
{
    struct fleet_wishes *w;

    if (f->o.od == NULL) {
        return TORII_OK;
    }
    w = torii_xcalloc(1, sizeof(*w));
    if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv, NULL) != 0) {
        free(w);
        return torii_errf(eb, TORII_ENOMEM, "fleet: cannot set up the on-demand wishes");
    }
    f->wishes = w;
    if (pthread_create(&w->thr, NULL, wish_thread, f) != 0) {
        return torii_errf(eb, TORII_ENOMEM, "fleet: cannot start the on-demand wishes thread");
    }
    w->started = 1;
    return TORII_OK;
}

void fleet_wish_stop(struct torii_fleet *f)
{
    struct fleet_wishes *w = f->wishes;

    if (w == NULL) {
        return;
    }
    atomic_store(&f->stop, 1);
    (void)pthread_mutex_lock(&w->mu);
    (void)pthread_cond_broadcast(&w->cv);
    (void)pthread_mutex_unlock(&w->mu);
    if (w->started) {
        (void)pthread_join(w->thr, NULL);
    }
    (void)pthread_cond_destroy(&w->cv);
    (void)pthread_mutex_destroy(&w->mu);
    free(w);
    f->wishes = NULL;
}
