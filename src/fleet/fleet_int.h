/* fleet_int.h - shared inside the fleet module: the etcd client (client.c), the local
 * applier (apply.c) and the node (fleet.c). */
#ifndef TORII_FLEET_INT_H
#define TORII_FLEET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/fleet.h"
#include "torii/store.h"

struct torii_fleet;

/* ---- client.c: the etcd JSON gateway over libcurl ---- */

struct fleet_client {
    const struct torii_conf_fleet *conf;
    pthread_mutex_t mu; /* guards token and cur */
    char *token;        /* auth token of endpoint cur (user/password); NULL: none yet */
    size_t cur;         /* the endpoint tried first */
};

int fleet_client_init(struct fleet_client *c, const struct torii_conf_fleet *conf,
                      struct torii_errbuf *eb) TORII_MUST_USE;
void fleet_client_clear(struct fleet_client *c);

/** POST body to path ("/v3/kv/range"...) on one endpoint after the other (starting with the
 * last that answered), each bounded by timeout_ms; an endpoint that does not answer or
 * answers "unavailable" is skipped. *resp (malloc'd, NUL-terminated) is the 200 body.
 * TORII_EAGAIN when no endpoint answered (eb says the last reason); the error body's code
 * (torii_fleet_gw_error) otherwise. */
int fleet_call(struct fleet_client *c, const char *path, const char *body, char **resp,
               size_t *resp_len, struct torii_errbuf *eb) TORII_MUST_USE;

/** fleet_call of the JSON request req (taken: released here). */
int fleet_call_json(struct fleet_client *c, const char *path, json_t *req, char **resp,
                    size_t *resp_len, struct torii_errbuf *eb) TORII_MUST_USE;

/** A line of a stream; a non-OK return ends the stream with that code. */
typedef int (*fleet_line_cb)(const char *line, size_t len, void *arg);

/** POST body to path and hand each line of the streamed answer to cb, until cb fails, the
 * stream ends or *stop becomes non-zero (checked at least once a second). Endpoints are
 * tried as fleet_call does, connecting within timeout_ms. Returns cb's code, TORII_EAGAIN
 * (no endpoint, or the stream broke), TORII_OK (stopped). */
int fleet_stream(struct fleet_client *c, const char *path, const char *body, fleet_line_cb cb,
                 void *arg, const atomic_int *stop, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- apply.c: etcd content into the local store ---- */

#define FLEET_META_REV "fleet_revision"

/** The store key (bucket, id) of etcd key k under prefix; 0 when k is not one of ours. */
int fleet_key_local(const char *prefix, const char *k, size_t klen, enum torii_store_bucket *b,
                    const char **id);

/** Apply watch events to the store in one transaction, recording rev as the last applied
 * revision. A certificate whose TLS record does not build is stored without one (logged). */
int fleet_apply_events(struct torii_fleet *f, const struct torii_fleet_event *ev, size_t n,
                       int64_t rev, struct torii_errbuf *eb) TORII_MUST_USE;

/** Apply one page of a full resync (puts only; no revision recorded); each key applied is
 * added to seen (key -> true). */
int fleet_apply_page(struct torii_fleet *f, const struct torii_fleet_kv *kvs, size_t n,
                     json_t *seen, struct torii_errbuf *eb) TORII_MUST_USE;

/** End of a full resync at revision rev: delete every local certificate and index entry not
 * in seen, and record rev, in one transaction. */
int fleet_apply_finish(struct torii_fleet *f, json_t *seen, int64_t rev, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** The last applied revision (0: never synced). */
int64_t fleet_applied_rev(struct torii_store *st);

/* ---- txn.c: a certdb commit as etcd transactions ---- */

/** The write-through (torii_store_remote.commit). */
int fleet_commit(void *ctx, const struct torii_store_op *ops, size_t n, struct torii_errbuf *eb);

/** Seed an empty fleet prefix from the local store (puts in transactions of max_txn_ops). */
int fleet_seed(struct torii_fleet *f, struct torii_errbuf *eb) TORII_MUST_USE;

/** gw.c's int64 member reader (a decimal string or an integer; absent is 0). */
int fleet_gw_i64(const json_t *o, const char *k, int64_t *out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- revs.c: the etcd mod_revision of each certificate as applied to LMDB ---- */

/** id -> mod_revision, keyed by a 64-bit hash of the id (open addressing). A collision can
 * only make a compare-and-swap fail (409), never let a stale write through: see revs.c. */
struct fleet_revs {
    uint64_t *h; /* 0: empty slot */
    int64_t *rev;
    size_t cap; /* power of two, or 0 */
    size_t n;
};
/** Record rev (0: forget) for id. */
void fleet_revs_set(struct fleet_revs *m, const char *id, size_t len, int64_t rev);
/** The recorded revision of id; 0 when none. */
int64_t fleet_revs_get(const struct fleet_revs *m, const char *id, size_t len);
void fleet_revs_clear(struct fleet_revs *m);

/* ---- elect.c: one doer per job ---- */

struct fleet_elect {
    pthread_t thr;
    int started;
    pthread_mutex_t mu; /* guards st and wake */
    pthread_cond_t cv;
    int wake;
    struct torii_fleet_elect st;
    char node[192];                  /* this node's name, the value of the keys it holds */
    char id[TORII_FLEET_ID_LEN + 1]; /* this node's member id (drawn at start; then read-only) */
    int64_t registered;              /* the lease the member key was put with (elect thread only) */
};

int fleet_elect_start(struct torii_fleet *f, struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop the elect thread (revoking the lease: others take over at once). */
void fleet_elect_stop(struct torii_fleet *f);
/** The watch saw a change of a job key: poll now. */
void fleet_elect_wake(struct torii_fleet *f);
/** 1 when the calling thread's writes are fenced by a job of f (jobgate enter): *job, *fence. */
int fleet_elect_fenced(const struct torii_fleet *f, int *job, int64_t *fence);
/** A fenced write failed: 1 when the job's key no longer has the fence (the job is then
 * dropped locally), 0 when it still has it or etcd could not say. */
int fleet_elect_fence_lost(struct torii_fleet *f, int job, int64_t fence);

/* ---- members.c: the member registry, and the plain requests (put, ranges) ---- */

#define FLEET_MEMBERS_MAX 256 /* members (and acknowledgements of one answer) read at most */

/** Put key = val[0..vlen) attached to lease (0: none). */
int fleet_kv_put(struct fleet_client *cl, const char *key, const void *val, size_t vlen,
                 int64_t lease, struct torii_errbuf *eb) TORII_MUST_USE;
/** The keys under pfx (at most limit; keys_only: no values), read now. */
int fleet_kv_range_prefix(struct fleet_client *cl, const char *pfx, unsigned limit, int keys_only,
                          struct torii_fleet_range *out, struct torii_errbuf *eb) TORII_MUST_USE;
/** The keys under <prefix><sub>/ (at most limit; keys_only: no values), read now. */
int fleet_range_sub(struct torii_fleet *f, char sub, unsigned limit, int keys_only,
                    struct torii_fleet_range *out, struct torii_errbuf *eb) TORII_MUST_USE;
/** Put this node's member key, attached to lease. Elect thread. */
int fleet_member_register(struct torii_fleet *f, int64_t lease, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** The members registered now (malformed ones are logged and left out): *out (malloc'd,
 * room for *n + 1), *n. Any thread. */
int fleet_members_read(struct torii_fleet *f, struct torii_fleet_member **out, size_t *n,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- chal.c, chal_ack.c: the shared ACME answers and their acknowledgements ---- */

struct torii_fleet_chal {
    struct torii_fleet_chal_opts o;
    struct fleet_client cl;
    char *pfx; /* <prefix>a/ */
    size_t pfx_len;
    char *pfx_end;
    size_t pfx_end_len;
    pthread_t thr;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;
    json_t *leases;  /* suffix -> lease id: the answers this node published (mu) */
    json_t *learned; /* suffix -> true: answers the table holds from etcd (watch thread) */
};

/** Sleep ms in 20 ms steps, less once c is stopping. */
void fleet_chal_nap_ms(const struct torii_fleet_chal *c, unsigned ms);
/** The answer sfx[0..slen) of kv (with its revision and lease) is in this node's table: write
 * this node's acknowledgement (a failure is logged). Watch thread. */
void fleet_chal_ack(struct torii_fleet_chal *c, const char *sfx, size_t slen,
                    const struct torii_fleet_kv *kv);
/** Wait (bounded by timeout_ms) until every live member following the answers acknowledged
 * revision rev of this node's answer sfx; a warning names those that did not. ACME thread. */
void fleet_chal_wait_acked(struct torii_fleet_chal *c, const char *sfx, int64_t rev);

/* ---- crl.c: the CRLs of the fleet (<prefix>r/<CA id> -> DER) ---- */

struct fleet_crls {
    pthread_mutex_t mu;
    json_t *seen; /* CA id -> [mod_revision, CRL number] as last seen in etcd (mu) */
};

/** Set up the CRL sharing (before the watch thread). */
int fleet_crl_start(struct torii_fleet *f, struct torii_errbuf *eb) TORII_MUST_USE;
/** Share the PKI view's CRLs from now on (opts.pki; nothing without one). */
void fleet_crl_share(struct torii_fleet *f);
/** Stop sharing (waits for a publish in flight). */
void fleet_crl_stop(struct torii_fleet *f);
/** A key seen by the watch or a resync page (any key: others are ignored), applied after the
 * certificates of the same response: a CRL is adopted by the PKI view. Watch thread. */
void fleet_crl_seen(struct torii_fleet *f, const struct torii_fleet_kv *kv, int deleted);
/** The watch (re)started: read every stored CRL (those of CAs not applied yet come again
 * through the watch). Watch thread. */
void fleet_crl_load(struct torii_fleet *f);

/* ---- wish.c: on-demand wishes (<prefix>w/<name> -> the wishing node) ---- */

#define FLEET_NAME_MAX   253 /* a DNS name */
#define FLEET_WISH_QUEUE 256

/** 1 when s[0..len) is a lower-case DNS name: [a-z0-9-] labels separated by single dots,
 * 1..FLEET_NAME_MAX characters (chal.c). */
int fleet_is_dns_name(const char *s, size_t len);

struct fleet_wish_item {
    int op; /* wish.c's WISH_* */
    int ok;
    char name[FLEET_NAME_MAX + 1];
};

struct fleet_wishes {
    pthread_t thr;
    int started;
    pthread_mutex_t mu; /* guards q, head, n */
    pthread_cond_t cv;
    struct fleet_wish_item q[FLEET_WISH_QUEUE];
    size_t head;
    size_t n;
    int held; /* the wish thread: job acme was this node's at its last look */
};

/** Start the wish thread (opts.od; nothing without one). */
int fleet_wish_start(struct torii_fleet *f, struct torii_errbuf *eb) TORII_MUST_USE;
void fleet_wish_stop(struct torii_fleet *f);
/** A key seen by the watch (others ignored): on the doer of job acme, a new wish is decided
 * on. Watch thread. */
void fleet_wish_seen(struct torii_fleet *f, const struct torii_fleet_kv *kv, int deleted);

/* ---- fleet.c: the node ---- */

struct torii_fleet {
    struct torii_fleet_opts o;
    struct fleet_client cl;
    char *pfx_end; /* range end of the prefix */
    size_t pfx_end_len;
    pthread_t thr;
    int started;
    atomic_int stop;
    atomic_int up; /* the watch is synced and following etcd */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t applied; /* last revision applied to LMDB (guarded by mu) */
    /* Guards revs. The applier records a revision after its copy is in LMDB, a commit reads
     * the revision before the copy (apply.c, txn.c). */
    pthread_mutex_t rev_mu;
    struct fleet_revs revs; /* certificate id -> mod_revision applied (under rev_mu) */
    struct fleet_elect el;
    struct fleet_crls crls;
    struct fleet_wishes *wishes; /* with opts.od; NULL otherwise */
};

/** *until = now + ms on CLOCK_REALTIME (the clock of pthread_cond_timedwait). */
void fleet_deadline(unsigned ms, struct timespec *until);

/** Wait (bounded by timeout_ms) until the revision rev is applied locally; 1 when it is. */
int fleet_wait_applied(struct torii_fleet *f, int64_t rev);

/** base64 of n bytes as a JSON string. */
json_t *fleet_b64(const void *p, size_t n);

#endif
