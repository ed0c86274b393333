/* fleet.c - a node of the fleet: start/stop, and the watch thread that keeps LMDB following
 * etcd. One cycle: when this node never synced, seed an empty fleet prefix from LMDB (once)
 * and fill from etcd in pages; then watch from the last applied revision + 1. The watch
 * answering "compacted" forces a full resync in pages (pinned to one revision, ending with
 * the deletion of what etcd no longer has); a broken stream or an unreachable etcd is
 * retried with backoff (100 ms doubling to 5 s) while the node serves from LMDB and refuses
 * writes. Threads: start/stop on the main thread; the watch thread; commit (txn.c) on any. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet_int.h"
#include "torii/clock.h"
#include "torii/daemon.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define FLEET_BACKOFF_MIN_MS 100
#define FLEET_BACKOFF_MAX_MS 5000
#define FLEET_STALL_MAX_S    60
#define FLEET_RESYNC_TRIES   3

static void fleet_nap_ms(const struct torii_fleet *f, unsigned ms)
{
    const struct timespec step = {.tv_sec = 0, .tv_nsec = 20L * 1000 * 1000};

    for (unsigned waited = 0; waited < ms && !atomic_load(&f->stop); waited += 20) {
        (void)nanosleep(&step, NULL);
    }
}

/* Test hook (debug.stall_file naming "fleet-apply"): hold the applier, bounded. */
static void fleet_stall(const struct torii_fleet *f)
{
    int64_t until = torii_clock_mono_us() + (int64_t)FLEET_STALL_MAX_S * 1000000;

    if (!torii_daemon_stall_wanted(f->o.stall_file, "fleet-apply")) {
        return;
    }
    torii_log(TORII_LOG_WARN, "fleet: debug.stall_file: holding the applier");
    while (torii_daemon_stall_wanted(f->o.stall_file, "fleet-apply")
           && torii_clock_mono_us() < until && !atomic_load(&f->stop)) {
        fleet_nap_ms(f, 20);
    }
}

void fleet_deadline(unsigned ms, struct timespec *until)
{
    (void)clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += (time_t)(ms / 1000);
    until->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

int fleet_wait_applied(struct torii_fleet *f, int64_t rev)
{
    struct timespec until;
    int ok;

    fleet_deadline(f->o.conf->timeout_ms, &until);
    (void)pthread_mutex_lock(&f->mu);
    while (f->applied < rev && !atomic_load(&f->stop)) {
        if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0) {
            break;
        }
    }
    ok = f->applied >= rev;
    (void)pthread_mutex_unlock(&f->mu);
    return ok;
}

static int fleet_writable(void *ctx)
{
    const struct torii_fleet *f = ctx;
    return atomic_load(&f->up);
}

/* A range over the prefix from key (NULL: its start), at rev (0: current). */
static int fleet_range(struct torii_fleet *f, const char *key, size_t klen, int64_t rev,
                       unsigned limit, int count_only, struct torii_fleet_range *out,
                       struct torii_errbuf *eb)
{
    const char *pfx = f->o.conf->prefix;
    json_t *req =
        json_pack("{s:o, s:o, s:I, s:I, s:b}", "key",
                  key != NULL ? fleet_b64(key, klen) : fleet_b64(pfx, strlen(pfx)), "range_end",
                  fleet_b64(f->pfx_end, f->pfx_end_len), "limit", (json_int_t)limit, "revision",
                  (json_int_t)rev, "count_only", count_only);
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_call_json(&f->cl, "/v3/kv/range", req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_range_parse(resp, len, out, eb));
out:
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    return rc;
}

/* One full resync in pages at one revision. TORII_ECONFLICT: that revision was compacted
 * meanwhile (start again). */
static int fleet_resync_once(struct torii_fleet *f, struct torii_errbuf *eb)
{
    json_t *seen = json_object();
    char *next = NULL;
    size_t next_len = 0;
    int64_t rev = 0;
    size_t pages = 0;
    int rc = TORII_OK;

    TORII_ENSURE(seen != NULL, TORII_ENOMEM);
    for (int more = 1; more && !atomic_load(&f->stop);) {
        struct torii_fleet_range r = {0};
        rc = fleet_range(f, next, next_len, rev, f->o.conf->page_size, 0, &r, eb);
        if (rc == TORII_OK) {
            rev = rev == 0 ? r.rev : rev;
            rc = fleet_apply_page(f, r.kvs, r.n, seen, eb);
        }
        more = rc == TORII_OK && r.more && r.n > 0;
        if (more) {
            free(next);
            next_len = r.kvs[r.n - 1].key_len + 1;
            next = torii_xmalloc(next_len);
            memcpy(next, r.kvs[r.n - 1].key, next_len); /* key + NUL: the next key up */
        }
        torii_fleet_range_clear(&r);
        TORII_TRY(rc);
        pages++;
    }
    TORII_ENSURE(!atomic_load(&f->stop), TORII_EAGAIN);
    TORII_TRY(fleet_apply_finish(f, seen, rev, eb));
    torii_log(TORII_LOG_NOTICE,
              "fleet: full sync from etcd at revision %" PRId64 ": %zu keys in "
              "%zu pages",
              rev, json_object_size(seen), pages);
out:
    free(next);
    json_decref(seen);
    return rc;
}

static int fleet_resync(struct torii_fleet *f, struct torii_errbuf *eb)
{
    int rc = TORII_ECONFLICT;

    for (int i = 0; i < FLEET_RESYNC_TRIES && rc == TORII_ECONFLICT; i++) {
        rc = fleet_resync_once(f, eb);
    }
    return rc;
}

/* A node that never synced: seed an empty fleet from LMDB (once), then fill from etcd. */
/* How many certificates the fleet holds (<prefix>c/ only: job, ticket and ACME answer keys
 * do not make a fleet non-empty), in *count. */
static int fleet_count_certs(struct torii_fleet *f, int64_t *count, struct torii_errbuf *eb)
{
    struct torii_fleet_range r = {0};
    size_t plen = strlen(f->o.conf->prefix);
    char *key = torii_xmalloc(plen + 3);
    size_t end_len = 0;
    char *end = NULL;
    json_t *req = NULL;
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    memcpy(key, f->o.conf->prefix, plen);
    memcpy(key + plen, "c/", 3);
    end = torii_fleet_prefix_end(key, plen + 2, &end_len);
    req = json_pack("{s:o, s:o, s:b}", "key", fleet_b64(key, plen + 2), "range_end",
                    fleet_b64(end, end_len), "count_only", 1);
    TORII_TRY(fleet_call_json(&f->cl, "/v3/kv/range", req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_range_parse(resp, len, &r, eb));
    *count = r.count;
out:
    free(resp);
    free(end);
    free(key);
    torii_fleet_range_clear(&r);
    return rc;
}

static int fleet_first_sync(struct torii_fleet *f, struct torii_errbuf *eb)
{
    int64_t count = 0;
    size_t local = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_count_certs(f, &count, eb));
    TORII_TRY(torii_store_count(f->o.store, TORII_STORE_CERTS, &local));
    if (count == 0 && local > 0) {
        TORII_TRY(fleet_seed(f, eb));
    } else if (local > 0) {
        torii_log(TORII_LOG_NOTICE,
                  "fleet: joining a fleet of %" PRId64 " certificates: this node's "
                  "%zu local certificates are replaced by the fleet's",
                  count, local);
    }
    TORII_TRY(fleet_resync(f, eb));
out:
    return rc;
}

static int fleet_on_line(const char *line, size_t len, void *arg)
{
    struct torii_fleet *f = arg;
    struct torii_fleet_watch w = {0};
    struct torii_errbuf eb = {{0}};
    int64_t last = 0;
    int rc = torii_fleet_gw_watch_parse(line, len, &w, &eb);

    if (rc == TORII_OK && (w.compact_rev > 0 || w.canceled)) {
        torii_log(TORII_LOG_WARN,
                  "fleet: etcd compacted past revision %" PRId64 " (oldest %" PRId64
                  "): full resync",
                  f->applied + 1, w.compact_rev);
        rc = TORII_ECONFLICT;
    } else if (rc == TORII_OK && w.created) {
        fleet_crl_load(f);
        atomic_store(&f->up, 1);
        torii_log(TORII_LOG_NOTICE, "fleet: following etcd from revision %" PRId64, f->applied + 1);
    } else if (rc == TORII_OK && w.n > 0) {
        fleet_stall(f);
        for (size_t i = 0; i < w.n; i++) {
            last = w.ev[i].kv.mod_rev > last ? w.ev[i].kv.mod_rev : last;
        }
        rc = fleet_apply_events(f, w.ev, w.n, last, &eb);
    }
    if (rc != TORII_OK && rc != TORII_ECONFLICT) {
        torii_log(TORII_LOG_ERR, "fleet: watch: %s", eb.msg);
    }
    torii_fleet_watch_clear(&w);
    return rc;
}

static int fleet_watch(struct torii_fleet *f, struct torii_errbuf *eb)
{
    const char *pfx = f->o.conf->prefix;
    json_t *req;
    char *body;
    int rc;

    (void)pthread_mutex_lock(&f->mu);
    req = json_pack("{s:{s:o, s:o, s:I}}", "create_request", "key", fleet_b64(pfx, strlen(pfx)),
                    "range_end", fleet_b64(f->pfx_end, f->pfx_end_len), "start_revision",
                    (json_int_t)f->applied + 1);
    (void)pthread_mutex_unlock(&f->mu);
    body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL) {
        return TORII_ENOMEM;
    }
    rc = fleet_stream(&f->cl, "/v3/watch", body, fleet_on_line, f, &f->stop, eb);
    free(body);
    return rc;
}

/* One cycle: sync when needed, then follow until the stream breaks. */
static int fleet_cycle(struct torii_fleet *f, int *resync, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    int64_t applied;

    (void)pthread_mutex_lock(&f->mu);
    applied = f->applied;
    (void)pthread_mutex_unlock(&f->mu);
    if (applied == 0) {
        TORII_TRY(fleet_first_sync(f, eb));
    } else if (*resync) {
        TORII_TRY(fleet_resync(f, eb));
    }
    *resync = 0;
    rc = fleet_watch(f, eb);
    *resync = rc == TORII_ECONFLICT;
out:
    return rc;
}

static void *fleet_thread(void *arg)
{
    struct torii_fleet *f = arg;
    unsigned backoff = FLEET_BACKOFF_MIN_MS;
    int resync = 0;

    while (!atomic_load(&f->stop)) {
        struct torii_errbuf eb = {{0}};
        int was_up = atomic_load(&f->up);
        int rc = fleet_cycle(f, &resync, &eb);
        if (atomic_load(&f->stop)) {
            break;
        }
        if (atomic_exchange(&f->up, 0) || was_up) {
            backoff = FLEET_BACKOFF_MIN_MS; /* it was following: retry soon */
        }
        if (rc == TORII_ECONFLICT) {
            fleet_nap_ms(f, FLEET_BACKOFF_MIN_MS); /* resync next, without a long wait */
            continue;
        }
        torii_log(TORII_LOG_WARN, "fleet: etcd: %s; writes refused, retrying in %u ms",
                  eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), backoff);
        fleet_nap_ms(f, backoff);
        backoff = backoff * 2 > FLEET_BACKOFF_MAX_MS ? FLEET_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

static int fleet_check_kek(const struct torii_fleet_opts *o, struct torii_errbuf *eb)
{
    char id[2 * TORII_KEK_ID_LEN + 1];

    if (o->kek == NULL || torii_kek_ring_current_id(o->kek, id) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL,
                          "fleet: fleet.etcd needs a KEK (keys.kek_file or keys.kek_credential): "
                          "private keys reach etcd only sealed with it");
    }
    return TORII_OK;
}

/* The election, the wishes and the CRLs, then the write-through and the watch thread that
 * feeds them; the CRLs are shared once it runs. */
static int fleet_threads_start(struct torii_fleet *f, struct torii_errbuf *eb)
{
    struct torii_store_remote r = {.commit = fleet_commit, .writable = fleet_writable, .ctx = f};
    int rc = TORII_OK;

    TORII_TRY(fleet_elect_start(f, eb));
    TORII_TRY(fleet_wish_start(f, eb));
    TORII_TRY(fleet_crl_start(f, eb));
    torii_store_set_remote(f->o.store, &r);
    TORII_ENSURE(pthread_create(&f->thr, NULL, fleet_thread, f) == 0,
                 torii_errf(eb, TORII_ENOMEM, "fleet: cannot start the watch thread"));
    f->started = 1;
    fleet_crl_share(f);
out:
    return rc;
}

int torii_fleet_start(const struct torii_fleet_opts *o, struct torii_fleet **out,
                      struct torii_errbuf *eb)
{
    struct torii_fleet *f = NULL;
    int rc = TORII_OK;

    *out = NULL;
    TORII_ENSURE(o != NULL && o->conf != NULL && o->conf->enabled && o->store != NULL,
                 torii_errf(eb, TORII_EINVAL, "fleet: not configured"));
    TORII_TRY(fleet_check_kek(o, eb));
    f = torii_xcalloc(1, sizeof(*f));
    f->o = *o;
    TORII_TRY(fleet_client_init(&f->cl, o->conf, eb));
    TORII_ENSURE(pthread_mutex_init(&f->mu, NULL) == 0 && pthread_cond_init(&f->cv, NULL) == 0
                     && pthread_mutex_init(&f->rev_mu, NULL) == 0,
                 torii_errf(eb, TORII_ENOMEM, "fleet: mutex init failed"));
    f->pfx_end = torii_fleet_prefix_end(o->conf->prefix, strlen(o->conf->prefix), &f->pfx_end_len);
    f->applied = fleet_applied_rev(o->store);
    TORII_TRY(fleet_threads_start(f, eb));
    torii_log(TORII_LOG_NOTICE,
              "fleet: etcd mode, prefix %s, %zu endpoints, local copy at "
              "revision %" PRId64,
              o->conf->prefix, json_array_size(o->conf->endpoints), f->applied);
    *out = f;
    f = NULL;
out:
    torii_fleet_stop(f);
    return rc;
}

void torii_fleet_stop(struct torii_fleet *f)
{
    if (f == NULL) {
        return;
    }
    atomic_store(&f->stop, 1);
    (void)pthread_mutex_lock(&f->mu);
    (void)pthread_cond_broadcast(&f->cv);
    (void)pthread_mutex_unlock(&f->mu);
    if (f->started) {
        (void)pthread_join(f->thr, NULL);
    }
    fleet_crl_stop(f); /* waits for a CRL publish in flight */
    fleet_wish_stop(f);
    /* After the watch thread (it wakes the elect thread): revokes the job lease, so other
     * nodes take the jobs at once. */
    fleet_elect_stop(f);
    torii_store_set_remote(f->o.store, NULL);
    fleet_client_clear(&f->cl);
    (void)pthread_cond_destroy(&f->cv);
    (void)pthread_mutex_destroy(&f->mu);
    (void)pthread_mutex_destroy(&f->rev_mu);
    fleet_revs_clear(&f->revs);
    free(f->pfx_end);
    free(f);
}
