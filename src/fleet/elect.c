/* elect.c - one doer per job (fleet.h, docs/fleet.md "Jobs"): the election state machine
 * (pure), its request bodies and answers, the elect thread that drives it (a lease granted
 * and kept alive every TTL/3; a poll of <prefix>l/ every TTL/3, or at once when the watch saw a
 * job key go; a transaction that takes each job whose key is absent) and the jobgate.h gate,
 * whose enter fences the calling thread's certificate writes (txn.c adds the compare).
 * Threads: the elect thread; torii_fleet_job_held and the gate from any thread (state under
 * el.mu); the pure functions from any thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet_int.h"
#include "torii/clock.h"
#include "torii/jobgate.h"
#include "torii/log.h"
#include "torii/mem.h"

static const char *const elect_jobs[TORII_FLEET_JOBS] = {TORII_JOB_RENEWAL, TORII_JOB_ACME,
                                                         TORII_JOB_CRL, TORII_JOB_TICKETS};

/* ---- the state machine (pure) ---- */

int torii_fleet_job_index(const char *job)
{
    for (int i = 0; job != NULL && i < TORII_FLEET_JOBS; i++) {
        if (strcmp(job, elect_jobs[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *torii_fleet_job_name(int i)
{
    return i >= 0 && i < TORII_FLEET_JOBS ? elect_jobs[i] : "?";
}

static int elect_job_ok(int job)
{
    return job >= 0 && job < TORII_FLEET_JOBS;
}

void torii_fleet_elect_lease(struct torii_fleet_elect *e, int64_t id, int64_t ttl_s,
                             int64_t sent_us)
{
    if (id == 0 || ttl_s <= 0 || (e->lease != 0 && id != e->lease)) {
        memset(e, 0, sizeof(*e));
        return;
    }
    e->lease = id;
    e->deadline_us = sent_us + ttl_s * 1000000;
}

void torii_fleet_elect_expire(struct torii_fleet_elect *e, int64_t now_us)
{
    if (e->lease != 0 && now_us >= e->deadline_us) {
        memset(e, 0, sizeof(*e));
    }
}

void torii_fleet_elect_seen(struct torii_fleet_elect *e, int job, int64_t create_rev)
{
    if (elect_job_ok(job) && e->fence[job] != 0 && e->fence[job] != create_rev) {
        e->fence[job] = 0;
    }
}

int torii_fleet_elect_should_try(const struct torii_fleet_elect *e, int job, int64_t create_rev,
                                 int64_t now_us)
{
    return elect_job_ok(job) && e->lease != 0 && now_us < e->deadline_us && e->fence[job] == 0
           && create_rev == 0;
}

void torii_fleet_elect_won(struct torii_fleet_elect *e, int job, int64_t create_rev)
{
    if (elect_job_ok(job) && e->lease != 0 && create_rev > 0) {
        e->fence[job] = create_rev;
    }
}

int torii_fleet_elect_held(const struct torii_fleet_elect *e, int job, int64_t now_us,
                           int64_t *fence)
{
    int held = elect_job_ok(job) && e->lease != 0 && now_us < e->deadline_us && e->fence[job] > 0;

    if (fence != NULL) {
        *fence = held ? e->fence[job] : 0;
    }
    return held;
}

/* ---- request bodies and answers (pure) ---- */

char *torii_fleet_job_key(const char *prefix, const char *job)
{
    size_t n = strlen(prefix) + 2 + strlen(job) + 1;
    char *k = torii_xmalloc(n);

    (void)snprintf(k, n, "%sl/%s", prefix, job);
    return k;
}

static json_t *elect_key_b64(const char *prefix, const char *job)
{
    char *k = torii_fleet_job_key(prefix, job);
    json_t *j = fleet_b64(k, strlen(k));

    free(k);
    return j;
}

json_t *torii_fleet_elect_acquire_req(const char *prefix, const char *job, const char *node,
                                      int64_t lease)
{
    json_t *key = elect_key_b64(prefix, job);
    char lid[32];
    json_t *req;

    (void)snprintf(lid, sizeof(lid), "%" PRId64, lease);
    req = json_pack("{s:[{s:O, s:s, s:s, s:s}], s:[{s:{s:O, s:o, s:s}}], s:[{s:{s:O}}]}", "compare",
                    "key", key, "target", "CREATE", "result", "EQUAL", "create_revision", "0",
                    "success", "request_put", "key", key, "value", fleet_b64(node, strlen(node)),
                    "lease", lid, "failure", "request_range", "key", key);
    json_decref(key);
    TORII_ASSERT(req != NULL);
    return req;
}

json_t *torii_fleet_elect_fence_cmp(const char *prefix, const char *job, int64_t fence)
{
    char rev[32];
    json_t *c;

    (void)snprintf(rev, sizeof(rev), "%" PRId64, fence);
    c = json_pack("{s:o, s:s, s:s, s:s}", "key", elect_key_b64(prefix, job), "target", "CREATE",
                  "result", "EQUAL", "create_revision", rev);
    TORII_ASSERT(c != NULL);
    return c;
}

int torii_fleet_gw_lease_parse(const char *body, size_t len, int64_t *id, int64_t *ttl_s,
                               struct torii_errbuf *eb)
{
    json_t *root = NULL;
    const json_t *o;
    int rc = torii_fleet_gw_error(body, len, eb);

    *id = 0;
    *ttl_s = 0;
    if (rc != TORII_ENOTFOUND) {
        return rc;
    }
    root = body != NULL ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    o = json_object_get(root, "result") != NULL ? json_object_get(root, "result") : root;
    TORII_ENSURE(json_is_object(o),
                 torii_errf(eb, TORII_EPROTO, "etcd: a lease answer is not a JSON object"));
    TORII_TRY(fleet_gw_i64(o, "ID", id, eb));
    TORII_TRY(fleet_gw_i64(o, "TTL", ttl_s, eb));
    TORII_ENSURE(*id != 0, torii_errf(eb, TORII_EPROTO, "etcd: a lease answer without an ID"));
out:
    json_decref(root);
    return rc;
}

/* ---- the elect thread ---- */

static int elect_lease_call(struct torii_fleet *f, const char *path, json_t *req, int64_t *id,
                            int64_t *ttl_s, struct torii_errbuf *eb)
{
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_call_json(&f->cl, path, req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_lease_parse(resp, len, id, ttl_s, eb));
out:
    free(resp);
    return rc;
}

static int elect_grant(struct torii_fleet *f, struct torii_errbuf *eb)
{
    int64_t sent = torii_clock_mono_us();
    int64_t id = 0;
    int64_t ttl = 0;
    int rc = TORII_OK;

    TORII_TRY(elect_lease_call(f, "/v3/lease/grant",
                               json_pack("{s:I}", "TTL", (json_int_t)f->o.conf->lease_ttl_s), &id,
                               &ttl, eb));
    TORII_ENSURE(ttl > 0, torii_errf(eb, TORII_EPROTO, "etcd: a lease granted without a TTL"));
    (void)pthread_mutex_lock(&f->el.mu);
    memset(&f->el.st, 0, sizeof(f->el.st));
    torii_fleet_elect_lease(&f->el.st, id, ttl, sent);
    (void)pthread_mutex_unlock(&f->el.mu);
    torii_log(TORII_LOG_INFO, "fleet: job lease %" PRIx64 " granted (TTL %" PRId64 " s)",
              (uint64_t)id, ttl);
out:
    return rc;
}

static int elect_keepalive(struct torii_fleet *f, int64_t lease, struct torii_errbuf *eb)
{
    int64_t sent = torii_clock_mono_us();
    char lid[32];
    int64_t id = 0;
    int64_t ttl = 0;
    int rc = TORII_OK;

    (void)snprintf(lid, sizeof(lid), "%" PRId64, lease);
    TORII_TRY(
        elect_lease_call(f, "/v3/lease/keepalive", json_pack("{s:s}", "ID", lid), &id, &ttl, eb));
    (void)pthread_mutex_lock(&f->el.mu);
    if (f->el.st.lease == lease) { /* not dropped meanwhile (its deadline passed) */
        torii_fleet_elect_lease(&f->el.st, id, ttl, sent);
    }
    (void)pthread_mutex_unlock(&f->el.mu);
    if (ttl <= 0) {
        torii_log(TORII_LOG_WARN, "fleet: job lease %" PRIx64 " expired in etcd", (uint64_t)lease);
    }
out:
    return rc;
}

/* The create_revision of each job key (0: absent), from one range over <prefix>l/. */
static int elect_poll(struct torii_fleet *f, int64_t seen[TORII_FLEET_JOBS],
                      struct torii_errbuf *eb)
{
    size_t klen = strlen(f->o.conf->prefix) + 2; /* "<prefix>l/" */
    struct torii_fleet_range r = {0};
    int rc = TORII_OK;

    TORII_TRY(fleet_range_sub(f, 'l', 0, 1, &r, eb));
    for (size_t i = 0; i < r.n; i++) {
        int job = r.kvs[i].key_len > klen ? torii_fleet_job_index(r.kvs[i].key + klen) : -1;
        if (job >= 0) {
            seen[job] = r.kvs[i].create_rev;
        }
    }
out:
    torii_fleet_range_clear(&r);
    return rc;
}

static void elect_acquire(struct torii_fleet *f, int job, int64_t lease)
{
    struct torii_errbuf eb = {{0}};
    struct torii_fleet_txn r = {0};
    char *resp = NULL;
    size_t len = 0;
    int won = 0;
    json_t *req = torii_fleet_elect_acquire_req(f->o.conf->prefix, torii_fleet_job_name(job),
                                                f->el.node, lease);

    if (fleet_call_json(&f->cl, "/v3/kv/txn", req, &resp, &len, &eb) == TORII_OK
        && torii_fleet_gw_txn_parse(resp, len, &r, &eb) == TORII_OK && r.succeeded) {
        (void)pthread_mutex_lock(&f->el.mu);
        won = f->el.st.lease == lease;
        if (won) {
            torii_fleet_elect_won(&f->el.st, job, r.rev);
        }
        (void)pthread_mutex_unlock(&f->el.mu);
    }
    if (won) {
        torii_log(TORII_LOG_NOTICE, "fleet: this node (%s) now does job %s (fence %" PRId64 ")",
                  f->el.node, torii_fleet_job_name(job), r.rev);
    }
    torii_fleet_txn_clear(&r);
    free(resp);
}

/* Log the jobs held before and no longer. */
static void elect_report_lost(const struct torii_fleet_elect *before,
                              const struct torii_fleet_elect *now)
{
    for (int i = 0; i < TORII_FLEET_JOBS; i++) {
        if (before->fence[i] != 0 && now->fence[i] != before->fence[i]) {
            torii_log(TORII_LOG_WARN,
                      "fleet: this node no longer does job %s (its lease ended or another node "
                      "took it)",
                      torii_fleet_job_name(i));
        }
    }
}

/* The member key goes with each new lease (members.c); a failed put is tried again next tick. */
static void elect_register(struct torii_fleet *f)
{
    struct torii_errbuf eb = {{0}};
    int64_t lease;

    (void)pthread_mutex_lock(&f->el.mu);
    lease = f->el.st.lease;
    (void)pthread_mutex_unlock(&f->el.mu);
    if (lease == 0 || lease == f->el.registered) {
        return;
    }
    if (fleet_member_register(f, lease, &eb) == TORII_OK) {
        f->el.registered = lease;
    } else {
        torii_log(TORII_LOG_WARN, "fleet: cannot register this node as a member (%s): retrying",
                  eb.msg);
    }
}

/* Lease, poll, take what is free. 0 when etcd could not be reached (eb says why). */
static int elect_tick(struct torii_fleet *f, struct torii_errbuf *eb)
{
    int64_t seen[TORII_FLEET_JOBS] = {0};
    int try[TORII_FLEET_JOBS] = {0};
    struct torii_fleet_elect before;
    struct torii_fleet_elect after;
    int64_t lease;
    int rc;

    (void)pthread_mutex_lock(&f->el.mu);
    before = f->el.st;
    torii_fleet_elect_expire(&f->el.st, torii_clock_mono_us());
    lease = f->el.st.lease;
    (void)pthread_mutex_unlock(&f->el.mu);
    rc = lease == 0 ? elect_grant(f, eb) : elect_keepalive(f, lease, eb);
    if (rc == TORII_OK) {
        elect_register(f);
        rc = elect_poll(f, seen, eb);
    }
    (void)pthread_mutex_lock(&f->el.mu);
    for (int i = 0; i < TORII_FLEET_JOBS && rc == TORII_OK; i++) {
        torii_fleet_elect_seen(&f->el.st, i, seen[i]);
        try[i] = torii_fleet_elect_should_try(&f->el.st, i, seen[i], torii_clock_mono_us());
    }
    lease = f->el.st.lease;
    after = f->el.st;
    (void)pthread_mutex_unlock(&f->el.mu);
    elect_report_lost(&before, &after);
    for (int i = 0; i < TORII_FLEET_JOBS; i++) {
        if (try[i]) {
            elect_acquire(f, i, lease);
        }
    }
    return rc == TORII_OK;
}

static void elect_wait(struct torii_fleet *f, unsigned ms)
{
    struct timespec until;

    fleet_deadline(ms, &until);
    (void)pthread_mutex_lock(&f->el.mu);
    while (!f->el.wake && !atomic_load(&f->stop)) {
        if (pthread_cond_timedwait(&f->el.cv, &f->el.mu, &until) != 0) {
            break;
        }
    }
    f->el.wake = 0;
    (void)pthread_mutex_unlock(&f->el.mu);
}

/* A clean stop gives the jobs up at once: revoking the lease deletes their keys. */
static void elect_release(struct torii_fleet *f)
{
    struct torii_errbuf eb = {{0}};
    char lid[32];
    char *resp = NULL;
    size_t len = 0;
    int64_t lease;

    (void)pthread_mutex_lock(&f->el.mu);
    lease = f->el.st.lease;
    memset(&f->el.st, 0, sizeof(f->el.st));
    (void)pthread_mutex_unlock(&f->el.mu);
    if (lease == 0) {
        return;
    }
    (void)snprintf(lid, sizeof(lid), "%" PRId64, lease);
    if (fleet_call_json(&f->cl, "/v3/lease/revoke", json_pack("{s:s}", "ID", lid), &resp, &len, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN,
                  "fleet: cannot revoke the job lease (%s): others take the jobs "
                  "once it expires",
                  eb.msg);
    }
    free(resp);
}

static void *elect_thread(void *arg)
{
    struct torii_fleet *f = arg;
    unsigned period = f->o.conf->lease_ttl_s * 1000 / 3;
    int failing = 0;

    while (!atomic_load(&f->stop)) {
        struct torii_errbuf eb = {{0}};
        int ok = elect_tick(f, &eb);
        if (!ok && !failing) {
            torii_log(TORII_LOG_WARN, "fleet: jobs: etcd: %s; retrying every %u ms",
                      eb.msg[0] != '\0' ? eb.msg : "unreachable", period);
        } else if (ok && failing) {
            torii_log(TORII_LOG_NOTICE, "fleet: jobs: etcd reachable again");
        }
        failing = !ok;
        elect_wait(f, period);
    }
    elect_release(f);
    return NULL;
}

int fleet_elect_start(struct torii_fleet *f, struct torii_errbuf *eb)
{
    char host[128] = "";

    if (pthread_mutex_init(&f->el.mu, NULL) != 0) {
        return torii_errf(eb, TORII_ENOMEM, "fleet: mutex init failed");
    }
    if (pthread_cond_init(&f->el.cv, NULL) != 0) {
        (void)pthread_mutex_destroy(&f->el.mu);
        return torii_errf(eb, TORII_ENOMEM, "fleet: condition init failed");
    }
    if (gethostname(host, sizeof(host) - 1) != 0) {
        (void)snprintf(host, sizeof(host), "torii");
    }
    (void)snprintf(f->el.node, sizeof(f->el.node), "%s pid %ld", host, (long)getpid());
    if (torii_rand_alnum(f->el.id, TORII_FLEET_ID_LEN) != TORII_OK) {
        (void)pthread_cond_destroy(&f->el.cv);
        (void)pthread_mutex_destroy(&f->el.mu);
        return torii_errf(eb, TORII_ENOMEM, "fleet: no random bytes for the node's id");
    }
    if (pthread_create(&f->el.thr, NULL, elect_thread, f) != 0) {
        (void)pthread_cond_destroy(&f->el.cv);
        (void)pthread_mutex_destroy(&f->el.mu);
        return torii_errf(eb, TORII_ENOMEM, "fleet: cannot start the job election thread");
    }
    f->el.started = 1;
    return TORII_OK;
}

void fleet_elect_stop(struct torii_fleet *f)
{
    if (!f->el.started) {
        return;
    }
    fleet_elect_wake(f); /* f->stop is set: the thread releases the lease and ends */
    (void)pthread_join(f->el.thr, NULL);
    (void)pthread_cond_destroy(&f->el.cv);
    (void)pthread_mutex_destroy(&f->el.mu);
    f->el.started = 0;
}

void fleet_elect_wake(struct torii_fleet *f)
{
    if (!f->el.started) {
        return;
    }
    (void)pthread_mutex_lock(&f->el.mu);
    f->el.wake = 1;
    (void)pthread_cond_broadcast(&f->el.cv);
    (void)pthread_mutex_unlock(&f->el.mu);
}

int torii_fleet_job_held(struct torii_fleet *f, const char *job, int64_t *fence_rev)
{
    int held;

    if (f == NULL) {
        if (fence_rev != NULL) {
            *fence_rev = 0;
        }
        return 1;
    }
    (void)pthread_mutex_lock(&f->el.mu);
    held = torii_fleet_elect_held(&f->el.st, torii_fleet_job_index(job), torii_clock_mono_us(),
                                  fence_rev);
    (void)pthread_mutex_unlock(&f->el.mu);
    return held;
}

int fleet_elect_fence_lost(struct torii_fleet *f, int job, int64_t fence)
{
    struct torii_errbuf eb = {{0}};
    struct torii_fleet_range r = {0};
    char *k = torii_fleet_job_key(f->o.conf->prefix, torii_fleet_job_name(job));
    char *resp = NULL;
    size_t len = 0;
    int lost = 0;

    if (fleet_call_json(&f->cl, "/v3/kv/range",
                        json_pack("{s:o, s:b}", "key", fleet_b64(k, strlen(k)), "keys_only", 1),
                        &resp, &len, &eb)
            == TORII_OK
        && torii_fleet_gw_range_parse(resp, len, &r, &eb) == TORII_OK) {
        int64_t cr = r.n > 0 ? r.kvs[0].create_rev : 0;
        lost = cr != fence;
        (void)pthread_mutex_lock(&f->el.mu);
        torii_fleet_elect_seen(&f->el.st, job, cr);
        (void)pthread_mutex_unlock(&f->el.mu);
    }
    torii_fleet_range_clear(&r);
    free(resp);
    free(k);
    return lost;
}

/* ---- the gate (jobgate.h) ---- */

/* The job the calling thread's writes are fenced by (enter), per thread. */
static _Thread_local struct elect_tls {
    const struct torii_fleet *f;
    int job;
    int64_t fence;
} elect_tls;

static int elect_gate_enter(void *ctx, const char *job)
{
    int64_t fence = 0;
    int held = torii_fleet_job_held(ctx, job, &fence);

    elect_tls = held ? (struct elect_tls){ctx, torii_fleet_job_index(job), fence}
                     : (struct elect_tls){NULL, -1, 0};
    return held;
}

static void elect_gate_leave(void *ctx)
{
    (void)ctx;
    elect_tls = (struct elect_tls){NULL, -1, 0};
}

static int elect_gate_held(void *ctx, const char *job)
{
    return torii_fleet_job_held(ctx, job, NULL);
}

void torii_fleet_job_gate(struct torii_fleet *f, struct torii_job_gate *out)
{
    *out = (struct torii_job_gate){
        .enter = elect_gate_enter, .leave = elect_gate_leave, .held = elect_gate_held, .ctx = f};
}

int fleet_elect_fenced(const struct torii_fleet *f, int *job, int64_t *fence)
{
    if (elect_tls.f != f || elect_tls.fence <= 0) {
        return 0;
    }
    *job = elect_tls.job;
    *fence = elect_tls.fence;
    return 1;
}
