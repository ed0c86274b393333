/* fleet_int.h - shared inside the fleet module: the etcd client (client.c), the local
 * applier (apply.c) and the node (fleet.c). */
#ifndef TORII_FLEET_INT_H
#define TORII_FLEET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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
};

/** Wait (bounded by timeout_ms) until the revision rev is applied locally; 1 when it is. */
int fleet_wait_applied(struct torii_fleet *f, int64_t rev);

/** base64 of n bytes as a JSON string. */
json_t *fleet_b64(const void *p, size_t n);

#endif
