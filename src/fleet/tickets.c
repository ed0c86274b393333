/* tickets.c - the fleet's session ticket keys (docs/fleet.md): one key set (current +
 * previous) at <prefix>t/keys in etcd, sealed with the KEK (tickets_set.c), that every node
 * installs through the hook it was given and follows with a watch, so a session resumes on
 * any node. Rotation every period_s is a transaction comparing the key's mod_revision to the
 * one this node read (create_revision == 0 when there is none): of concurrent rotations
 * exactly one wins, the others read and adopt the winner's set. Whether this node rotates now
 * is decided in tk_should_rotate alone (where the job leader will gate it). A set this node
 * cannot open (another KEK, an altered value) is logged and never replaced by it; it keeps
 * the keys it has.
 * Threads: start/stop/period on the main thread; a watch thread (reads, follows) and a
 * rotation thread (decides, writes); the install hook runs on either, one call at a time. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "fleet_int.h"
#include "torii/clock.h"
#include "torii/daemon.h"
#include "torii/log.h"
#include "torii/mem.h"

#define TK_NAP_MS         100 /* the rotation thread's check interval */
#define TK_BACKOFF_MIN_MS 100
#define TK_BACKOFF_MAX_MS 5000
#define TK_HOLD_MAX_S     60

struct torii_fleet_tickets {
    struct torii_fleet *f;
    torii_fleet_tickets_cb install;
    void *arg;
    const char *stall_file;
    atomic_uint period_s;
    atomic_int stop;
    char *key; /* "<prefix>t/keys" */
    size_t key_len;
    pthread_t thr[2]; /* watch, rotate */
    int started[2];
    int mu_ok;
    pthread_mutex_t mu; /* guards what follows; held while installing */
    int64_t seen;       /* the newest etcd revision observed for key (0: not read yet) */
    int64_t mod_rev;    /* mod_revision of etcd's value; 0: etcd has none */
    int opened;         /* etcd's value opened and is installed (set is it) */
    int have;           /* set holds a set that was in etcd (its k[0] becomes the previous) */
    struct torii_fleet_ticket_set set;
};

static void tk_nap_ms(const struct torii_fleet_tickets *t, unsigned ms)
{
    const struct timespec step = {.tv_sec = 0, .tv_nsec = 20L * 1000 * 1000};

    for (unsigned waited = 0; waited < ms && !atomic_load(&t->stop); waited += 20) {
        (void)nanosleep(&step, NULL);
    }
}

/* Nap for *backoff ms, then double it (up to TK_BACKOFF_MAX_MS). */
static void tk_back_off(const struct torii_fleet_tickets *t, unsigned *backoff)
{
    tk_nap_ms(t, *backoff);
    *backoff = *backoff * 2 > TK_BACKOFF_MAX_MS ? TK_BACKOFF_MAX_MS : *backoff * 2;
}

/* Test hook (debug.stall_file): "fleet-tickets" holds rotations, "fleet-tickets-watch" the
 * watch, "fleet-tickets-all" both. */
static int tk_held(const struct torii_fleet_tickets *t, const char *what)
{
    return torii_daemon_stall_wanted(t->stall_file, what)
           || torii_daemon_stall_wanted(t->stall_file, "fleet-tickets-all");
}

static void tk_watch_hold(const struct torii_fleet_tickets *t)
{
    int64_t until = torii_clock_mono_us() + (int64_t)TK_HOLD_MAX_S * 1000000;

    while (tk_held(t, "fleet-tickets-watch") && torii_clock_mono_us() < until
           && !atomic_load(&t->stop)) {
        tk_nap_ms(t, 20);
    }
}

/* Install a set opened from etcd (or made here) under mu; the hook's failure is logged. */
static void tk_install(struct torii_fleet_tickets *t, const struct torii_fleet_ticket_set *s,
                       int64_t mod_rev)
{
    if (t->install(t->arg, &s->keys) != TORII_OK) {
        torii_log(TORII_LOG_ERR,
                  "fleet: session ticket keys of revision %" PRId64 " refused by TLS; this "
                  "node keeps its keys",
                  mod_rev);
        return;
    }
    t->set = *s;
    t->opened = 1;
    t->have = 1;
    torii_log(TORII_LOG_NOTICE,
              "fleet: session ticket keys of revision %" PRId64 " installed (%zu keys)", mod_rev,
              s->keys.n);
}

/* What etcd holds at revision at_rev: a value of mod_revision mod_rev (val, or mine when this
 * node wrote it), or nothing (mod_rev 0). Older observations than the newest are ignored. */
static void tk_observe(struct torii_fleet_tickets *t, int64_t at_rev, int64_t mod_rev,
                       const char *val, size_t len, const struct torii_fleet_ticket_set *mine)
{
    struct torii_fleet_ticket_set s = {0};
    struct torii_errbuf eb = {{0}};

    (void)pthread_mutex_lock(&t->mu);
    if (at_rev < t->seen) {
        goto out; /* older than what was seen already */
    }
    t->seen = at_rev;
    if (mod_rev == t->mod_rev) {
        goto out; /* the same value (opened or not) */
    }
    t->mod_rev = mod_rev;
    t->opened = 0;
    if (mod_rev == 0) {
        torii_log(TORII_LOG_NOTICE, "fleet: no session ticket key set in etcd (%s)", t->key);
    } else if (mine != NULL) {
        tk_install(t, mine, mod_rev);
    } else if (torii_fleet_tickets_decode(t->f->o.kek, t->key, t->key_len, val, len, &s, &eb)
               == TORII_OK) {
        tk_install(t, &s, mod_rev);
    } else {
        torii_log(TORII_LOG_ERR,
                  "fleet: session ticket keys at %s (revision %" PRId64 ") not usable: %s; "
                  "this node keeps its keys and will not replace that set (delete the key to "
                  "have a new set made)",
                  t->key, mod_rev, eb.msg);
    }
out:
    (void)pthread_mutex_unlock(&t->mu);
    OPENSSL_cleanse(&s, sizeof(s));
}

/* Read the key set from etcd and observe it; *rev = the revision read at. */
static int tk_read(struct torii_fleet_tickets *t, int64_t *rev, struct torii_errbuf *eb)
{
    json_t *req = json_pack("{s:o}", "key", fleet_b64(t->key, t->key_len));
    struct torii_fleet_range r = {0};
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    TORII_TRY(fleet_call_json(&t->f->cl, "/v3/kv/range", req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_range_parse(resp, len, &r, eb));
    if (r.n > 0 && r.kvs[0].val != NULL) {
        tk_observe(t, r.rev, r.kvs[0].mod_rev, r.kvs[0].val, r.kvs[0].val_len, NULL);
    } else {
        tk_observe(t, r.rev, 0, NULL, 0, NULL);
    }
    *rev = r.rev;
out:
    torii_fleet_range_clear(&r);
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    return rc;
}

static int tk_on_line(const char *line, size_t len, void *arg)
{
    struct torii_fleet_tickets *t = arg;
    struct torii_fleet_watch w = {0};
    struct torii_errbuf eb = {{0}};
    int rc = torii_fleet_gw_watch_parse(line, len, &w, &eb);

    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "fleet: session ticket keys: watch: %s", eb.msg);
    } else if (w.compact_rev > 0 || w.canceled) {
        rc = TORII_ECONFLICT; /* read again, then watch from there */
    } else if (w.n > 0) {
        tk_watch_hold(t);
    }
    for (size_t i = 0; rc == TORII_OK && i < w.n; i++) {
        const struct torii_fleet_kv *kv = &w.ev[i].kv;
        int64_t at = kv->mod_rev > 0 ? kv->mod_rev : w.rev;
        if (kv->key_len != t->key_len || memcmp(kv->key, t->key, t->key_len) != 0) {
            continue;
        }
        if (w.ev[i].deleted || kv->val == NULL) {
            tk_observe(t, at, 0, NULL, 0, NULL);
        } else {
            tk_observe(t, at, kv->mod_rev, kv->val, kv->val_len, NULL);
        }
    }
    torii_fleet_watch_clear(&w);
    return rc;
}

/* Read, then follow from the next revision until the stream breaks or stop. */
static int tk_follow(struct torii_fleet_tickets *t, struct torii_errbuf *eb)
{
    json_t *req = NULL;
    char *body = NULL;
    int64_t rev = 0;
    int rc = TORII_OK;

    TORII_TRY(tk_read(t, &rev, eb));
    req = json_pack("{s:{s:o, s:I}}", "create_request", "key", fleet_b64(t->key, t->key_len),
                    "start_revision", (json_int_t)rev + 1);
    body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    TORII_ENSURE(body != NULL, TORII_ENOMEM);
    rc = fleet_stream(&t->f->cl, "/v3/watch", body, tk_on_line, t, &t->stop, eb);
out:
    json_decref(req);
    free(body);
    return rc;
}

static void *tk_watch_thread(void *arg)
{
    struct torii_fleet_tickets *t = arg;
    unsigned backoff = TK_BACKOFF_MIN_MS;

    while (!atomic_load(&t->stop)) {
        struct torii_errbuf eb = {{0}};
        int64_t t0 = torii_clock_mono_us();
        int rc = tk_follow(t, &eb);
        if (atomic_load(&t->stop)) {
            break;
        }
        if (torii_clock_mono_us() - t0 > (int64_t)TK_BACKOFF_MAX_MS * 1000) {
            backoff = TK_BACKOFF_MIN_MS; /* it was following: retry soon */
        }
        if (rc != TORII_ECONFLICT) {
            torii_log(TORII_LOG_WARN, "fleet: session ticket keys: %s; retrying in %u ms",
                      eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), backoff);
        }
        tk_back_off(t, &backoff);
    }
    return NULL;
}

/* Whether this node rotates the fleet's set now (under mu): when etcd has none, or when the
 * set it holds is due (tls.ticket_rotate_s). Never a set it could not open. The one place to
 * gate on the job leader once it exists (issue 15 item 2). */
static int tk_should_rotate(const struct torii_fleet_tickets *t, int64_t now_ms)
{
    if (t->seen == 0 || !atomic_load(&t->f->up)) {
        return 0; /* not read yet, or the fleet not synced (an empty fleet is seeded first) */
    }
    if (t->mod_rev == 0) {
        return 1;
    }
    return t->opened
           && torii_fleet_tickets_due(t->set.created_ms, atomic_load(&t->period_s), now_ms)
           && !tk_held(t, "fleet-tickets");
}

/* The next set (under mu): a fresh current key, the current one as the previous. */
static int tk_next(const struct torii_fleet_tickets *t, int64_t now_ms,
                   struct torii_fleet_ticket_set *s)
{
    memset(s, 0, sizeof(*s));
    s->created_ms = now_ms;
    s->keys.n = 1;
    if (RAND_bytes(s->keys.k[0], TORII_TLS_TICKET_KEY_LEN) != 1) {
        return TORII_EIO;
    }
    if (t->have) {
        memcpy(s->keys.k[1], t->set.keys.k[0], TORII_TLS_TICKET_KEY_LEN);
        s->keys.n = 2;
    }
    return TORII_OK;
}

/* Write s if the key is still at expect (0: absent). A loser reads the winner's set. */
static int tk_swap(struct torii_fleet_tickets *t, int64_t expect,
                   const struct torii_fleet_ticket_set *s, struct torii_errbuf *eb)
{
    json_t *key = fleet_b64(t->key, t->key_len);
    json_t *cmp = expect == 0 ? json_pack("{s:O, s:s, s:s, s:s}", "key", key, "target", "CREATE",
                                          "result", "EQUAL", "create_revision", "0")
                              : json_pack("{s:O, s:s, s:s, s:I}", "key", key, "target", "MOD",
                                          "result", "EQUAL", "mod_revision", (json_int_t)expect);
    struct torii_fleet_txn r = {0};
    char *val = NULL;
    char *resp = NULL;
    size_t len = 0;
    int64_t rev = 0;
    int rc = TORII_OK;

    TORII_TRY(torii_fleet_tickets_encode(t->f->o.kek, t->key, t->key_len, s, &val, eb));
    TORII_TRY(
        fleet_call_json(&t->f->cl, "/v3/kv/txn",
                        json_pack("{s:[O], s:[{s:{s:O, s:o}}]}", "compare", cmp, "success",
                                  "request_put", "key", key, "value", fleet_b64(val, strlen(val))),
                        &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_txn_parse(resp, len, &r, eb));
    if (r.succeeded) {
        torii_log(TORII_LOG_NOTICE, "fleet: session ticket keys %s (revision %" PRId64 ")",
                  expect == 0 ? "created" : "rotated", r.rev);
        tk_observe(t, r.rev, r.rev, NULL, 0, s);
    } else {
        torii_log(TORII_LOG_INFO,
                  "fleet: session ticket keys: another node rotated first; adopting its set");
        TORII_TRY(tk_read(t, &rev, eb));
    }
out:
    torii_fleet_txn_clear(&r);
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    if (val != NULL) {
        torii_secure_free(val, strlen(val));
    }
    json_decref(cmp);
    json_decref(key);
    return rc;
}

static void *tk_rotate_thread(void *arg)
{
    struct torii_fleet_tickets *t = arg;
    unsigned backoff = TK_BACKOFF_MIN_MS;

    while (!atomic_load(&t->stop)) {
        struct torii_fleet_ticket_set s;
        struct torii_errbuf eb = {{0}};
        int64_t now = torii_clock_now_ms();
        int64_t expect = 0;
        int rc = TORII_ENOTFOUND; /* nothing to do */

        (void)pthread_mutex_lock(&t->mu);
        if (tk_should_rotate(t, now)) {
            expect = t->mod_rev;
            rc = tk_next(t, now, &s);
        }
        (void)pthread_mutex_unlock(&t->mu);
        if (rc == TORII_OK) {
            rc = tk_swap(t, expect, &s, &eb);
        }
        OPENSSL_cleanse(&s, sizeof(s));
        if (rc != TORII_OK && rc != TORII_ENOTFOUND) {
            torii_log(TORII_LOG_WARN,
                      "fleet: session ticket keys not rotated: %s; retrying in %u ms",
                      eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), backoff);
            tk_back_off(t, &backoff);
            continue;
        }
        backoff = TK_BACKOFF_MIN_MS;
        tk_nap_ms(t, TK_NAP_MS);
    }
    return NULL;
}

int torii_fleet_tickets_start(const struct torii_fleet_tickets_opts *o,
                              struct torii_fleet_tickets **out, struct torii_errbuf *eb)
{
    static void *(*const fns[2])(void *) = {tk_watch_thread, tk_rotate_thread};
    struct torii_fleet_tickets *t = NULL;
    const char *pfx;
    int rc = TORII_OK;

    *out = NULL;
    TORII_ENSURE(o != NULL && o->fleet != NULL && o->install != NULL,
                 torii_errf(eb, TORII_EINVAL, "fleet: ticket keys need a fleet and a hook"));
    pfx = o->fleet->o.conf->prefix;
    t = torii_xcalloc(1, sizeof(*t));
    t->f = o->fleet;
    t->install = o->install;
    t->arg = o->arg;
    t->stall_file = o->fleet->o.stall_file;
    atomic_store(&t->period_s, o->period_s);
    t->key_len = strlen(pfx) + strlen("t/keys");
    t->key = torii_xmalloc(t->key_len + 1);
    (void)snprintf(t->key, t->key_len + 1, "%st/keys", pfx);
    t->mu_ok = pthread_mutex_init(&t->mu, NULL) == 0;
    TORII_ENSURE(t->mu_ok, torii_errf(eb, TORII_ENOMEM, "fleet: mutex init failed"));
    for (int i = 0; i < 2; i++) {
        TORII_ENSURE(pthread_create(&t->thr[i], NULL, fns[i], t) == 0,
                     torii_errf(eb, TORII_ENOMEM, "fleet: cannot start a ticket key thread"));
        t->started[i] = 1;
    }
    *out = t;
    t = NULL;
out:
    torii_fleet_tickets_stop(t);
    return rc;
}

void torii_fleet_tickets_period(struct torii_fleet_tickets *t, unsigned period_s)
{
    if (t != NULL) {
        atomic_store(&t->period_s, period_s);
    }
}

void torii_fleet_tickets_stop(struct torii_fleet_tickets *t)
{
    if (t == NULL) {
        return;
    }
    atomic_store(&t->stop, 1);
    for (int i = 0; i < 2; i++) {
        if (t->started[i]) {
            (void)pthread_join(t->thr[i], NULL);
        }
    }
    if (t->mu_ok) {
        (void)pthread_mutex_destroy(&t->mu);
    }
    OPENSSL_cleanse(&t->set, sizeof(t->set));
    free(t->key);
    free(t);
}
