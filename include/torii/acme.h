/* acme.h - the ACME client (RFC 8555, docs/acme.md): certificates from a public CA (Let's
 * Encrypt, or any CA of acme.directory_url) for names this proxy answers, with HTTP-01
 * (answered by the plain http listener), TLS-ALPN-01 (RFC 8737, answered by the https
 * listener) and DNS-01 (through the operator's acme.dns_hook). Orders run as jobs on the
 * ACME thread, one at a time; nothing here ever runs on a worker or the admin loop, so a
 * slow or dead CA delays nothing but the jobs.
 * Threads: torii_acme_start/stop on the main thread; submit and job lookups from any thread
 * (the admin thread); the challenge table (torii_acme_chal) from any thread.
 * Ownership: options are borrowed and must outlive the service; returned JSON is new. */
#ifndef TORII_ACME_H
#define TORII_ACME_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/jobgate.h"
#include "torii/store.h"

/* ---- challenge answers ----
 * What the listeners answer while a challenge is pending: the key authorization of an
 * HTTP-01 token, and the validation certificate of a TLS-ALPN-01 name (a TLS record, pki.h).
 * Filled by this node's ACME thread and, in fleet mode, by the fleet's challenge watch with
 * the answers of the other nodes (torii_acme_share). A mutex guards the table; lookups copy
 * out and count the answers given (torii_acme_chal_answered). */

struct torii_acme_chal;

#define TORII_ACME_CHAL_MAX    64
#define TORII_ACME_KEY_MAX     256 /* token or name */
#define TORII_ACME_KEYAUTH_MAX 256

int torii_acme_chal_new(struct torii_acme_chal **out) TORII_MUST_USE;
/** NULL accepted. */
void torii_acme_chal_free(struct torii_acme_chal *ch);

/** Answer HTTP-01 token (len bytes) with its key authorization: TORII_OK with out
 * NUL-terminated, or TORII_ENOTFOUND (unknown token, or none pending). */
int torii_acme_chal_http01(struct torii_acme_chal *ch, const char *token, size_t len, char *out,
                           size_t out_len) TORII_MUST_USE;

/** The TLS-ALPN-01 validation certificate for name (lower case), as a TLS record copy in
 * *rec_out (malloc'd, free with torii_secure_free): TORII_OK or TORII_ENOTFOUND. */
int torii_acme_chal_alpn(struct torii_acme_chal *ch, const char *name, unsigned char **rec_out,
                         size_t *rec_len) TORII_MUST_USE;

/** Publish (type "http-01": key = token, value = key authorization; "tls-alpn-01": key = name,
 * rec = validation record) or withdraw (torii_acme_chal_drop) an answer. TORII_ETOOBIG when
 * the table is full, TORII_EINVAL for an over-long key or value. The ACME thread and the
 * fleet's challenge watch. */
int torii_acme_chal_put(struct torii_acme_chal *ch, const char *type, const char *key,
                        const char *value, const unsigned char *rec, size_t rec_len) TORII_MUST_USE;
void torii_acme_chal_drop(struct torii_acme_chal *ch, const char *type, const char *key);
/** Lookups the table answered since it was made: out[0] HTTP-01, out[1] TLS-ALPN-01 (the
 * CA's validation requests that reached this node). Any thread. */
void torii_acme_chal_answered(struct torii_acme_chal *ch, uint64_t out[2]);

/* ---- sharing the answers (fleet mode) ----
 * A node that publishes an answer in its table also hands it to share->publish, which
 * returns once every node holds it (fleet: committed in etcd and acknowledged by every live
 * member following the answers, or timeout_ms passed; src/fleet/chal.c, chal_ack.c),
 * before the CA is told to validate; share->withdraw follows the local withdrawal, whatever the
 * outcome. ttl_s bounds the life of a shared answer whose node dies (the order's remaining
 * time). A publish error fails the challenge (the local answer is withdrawn). Both are
 * called on the ACME thread only. */
struct torii_acme_share {
    void *ctx;
    int (*publish)(void *ctx, const char *type, const char *key, const char *value,
                   const unsigned char *rec, size_t rec_len, int64_t ttl_s,
                   struct torii_errbuf *eb);
    void (*withdraw)(void *ctx, const char *type, const char *key);
};

/* ---- on-demand wishes (fleet mode, docs/fleet.md "Jobs") ----
 * A node that does not do job "acme" forwards the on-demand names its handshakes ask for to
 * the node that does: forward() is called on a worker thread under the decision lock and
 * must not block (it queues). The doer hands each wish it receives to
 * torii_acme_on_demand_wish, and done() tells it when the order for a wished name ended (the
 * ACME thread, under the decision lock, must not block either). */
struct torii_acme_wishes {
    void *ctx;
    int (*forward)(void *ctx, const char *name);
    void (*done)(void *ctx, const char *name, int ok);
};

/* ---- the service ---- */

struct torii_acme;

struct torii_acme_opts {
    const struct torii_conf_acme *conf; /* validated acme{} (conf.h) */
    struct torii_store *store;
    struct torii_acme_chal *chal;
    struct torii_acme_od *od; /* on-demand decisions (torii_acme_od_new); NULL: off */
    /* One doer per job (jobgate.h; NULL: a single node, always): orders run, are accepted
     * (torii_acme_submit) and start on demand only while job "acme" is this node's; the
     * ACME thread's writes carry the job's fence. Borrowed, outlives the service. */
    const struct torii_job_gate *gate;
    const struct torii_acme_share *share;   /* answers shared with a fleet; NULL: local only */
    const struct torii_acme_wishes *wishes; /* fleet: on-demand names for the doer; NULL: none */
};

/** Start the ACME thread (idle until a job comes). TORII_EINVAL when acme is not enabled. */
/** `torii keys migrate|rotate` over the ACME account keys (TORII_STORE_ACME "account:*"):
 * each key converted by torii_kek_text_convert (rewrap: rotate) and written back, all in one
 * durable transaction (a handful of records). *done = accounts rewritten. Only with no other
 * writer of the store (the command). torii_kek_open's codes, the store's. */
int torii_acme_accounts_rekey(struct torii_store *st, const struct torii_kek_ring *kek, int rewrap,
                              size_t *done, struct torii_errbuf *eb) TORII_MUST_USE;

int torii_acme_start(const struct torii_acme_opts *o, struct torii_acme **out,
                     struct torii_errbuf *eb) TORII_MUST_USE;
/** Begin stopping: the job in progress is abandoned at its next request or wait (a transfer
 * in progress is aborted), waiters (torii_acme_wait) return TORII_EAGAIN, new jobs never
 * run. NULL accepted. Main thread. */
void torii_acme_cancel(struct torii_acme *a);
/** torii_acme_cancel, then join the thread and free everything. No other thread may be
 * inside a torii_acme_* call (stop the renewal thread first). NULL accepted. */
void torii_acme_stop(struct torii_acme *a);

/** The names of an API body {"host": "a"} or {"hosts": ["a", "b"]} (exactly one of both,
 * 1..100 DNS names, "*." wildcards allowed, no IP, no duplicates) as a new array of
 * lower-case names. TORII_EINVAL naming the problem. */
int torii_acme_hosts_parse(const json_t *body, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Queue an order for hosts (borrowed, parsed by torii_acme_hosts_parse); cert_id names the
 * stored entity to update in place (renewal), NULL for a new one. *job_id (33 bytes) gets the
 * job's id. TORII_EAGAIN when too many jobs are queued (retry later), or when another node of
 * the fleet does job "acme" (eb says so: submit to that node). */
int torii_acme_submit(struct torii_acme *a, const json_t *hosts, const char *cert_id,
                      char job_id[33], struct torii_errbuf *eb) TORII_MUST_USE;

/** A job's state: {"id", "status": "pending"|"processing"|"valid"|"invalid", "hosts",
 * "certId" (when valid), "error" (when invalid), "created", "finished" (ms)}. TORII_ENOTFOUND
 * for an unknown (or long forgotten) id. */
int torii_acme_job_get(struct torii_acme *a, const char *job_id, json_t **out) TORII_MUST_USE;

/** Wait (at most timeout_ms) until job_id has ended: TORII_OK, TORII_ETIMEDOUT, TORII_EAGAIN
 * (stopping) or TORII_ENOTFOUND. Any thread but the ACME thread. */
int torii_acme_wait(struct torii_acme *a, const char *job_id, int64_t timeout_ms) TORII_MUST_USE;

/* ---- on-demand certificates (acme.on_demand, ondemand.c) ----
 * The decision state outlives the service (the workers ask it until they stop): main makes
 * it before the workers and frees it after them; the service attaches itself to it while it
 * runs (torii_acme_opts.od). */

struct torii_acme_od;
/** NULL when conf is off. Main thread. */
struct torii_acme_od *torii_acme_od_new(const struct torii_conf_on_demand *conf);
/** NULL accepted. Main thread, after the workers and the service stopped. */
void torii_acme_od_free(struct torii_acme_od *od);
/** A handshake names `name` (lower case), which has no certificate: 1 when it should wait
 * for one (an order for it started now, or one is in flight; in a fleet, on a node that does
 * not do job "acme": the name forwarded to the doer, whose certificate replication brings),
 * 0 when it gets the default certificate (no service, name not allowed, failed recently,
 * rate-limited). Never blocks on
 * the network (the ask URL is asked by the ACME thread). Any thread (workers); NULL: 0. */
int torii_acme_on_demand(struct torii_acme_od *od, const char *name);
/** 1 while an order for name is in flight (or has just succeeded and its certificate is on
 * its way to the table): a waiting handshake keeps waiting. Any thread; NULL: 0. */
int torii_acme_on_demand_pending(struct torii_acme_od *od, const char *name);
enum torii_acme_wish {
    TORII_ACME_WISH_ORDERED, /* an order started or is in flight: done() follows */
    TORII_ACME_WISH_SERVED,  /* an order for it succeeded moments ago */
    TORII_ACME_WISH_REFUSED, /* nothing is ordered; *why names the decision */
};
/** Another node's wish for name (torii_acme_wishes), on the doer of job "acme": the policy of a
 * handshake here (allow-list, failed recently, rate limits; the ask URL is asked before the
 * order, and its refusal ends it: done(ok 0)). Counted in the on-demand decisions. Any
 * thread; NULL od: refused. */
enum torii_acme_wish torii_acme_on_demand_wish(struct torii_acme_od *od, const char *name,
                                               const char **why);
/** A waiting handshake ended: served its new certificate (1) or the default one at its
 * deadline (0); counted for /metrics. Any thread; NULL accepted. */
void torii_acme_on_demand_outcome(struct torii_acme_od *od, int served);

/* ---- renewal (the renewal thread's hook, renew.h) ---- */

/** 1 when the ACME certificate entity is due at now_ms: ARI's suggested window has started
 * (RFC 9773, when the directory offers renewalInfo), else it is in the last third of its
 * validity (also when the ARI look-up fails, logged). Renewal thread. */
int torii_acme_renew_due(struct torii_acme *a, const json_t *entity, int64_t now_ms);
/** Renew entity `id` in place: an order for its names on the ACME thread, waited for (at most
 * acme.order_timeout_s + 120 s). TORII_OK or the order's error in eb. Renewal thread. */
int torii_acme_renew(struct torii_acme *a, const char *id, const json_t *entity,
                     struct torii_errbuf *eb) TORII_MUST_USE;

/** ARI's certID of the chain's leaf (RFC 9773 4.1): base64url(AKI keyIdentifier) "."
 * base64url(serial DER content). TORII_EINVAL without AKI or on a bad chain. */
int torii_acme_ari_cert_id(const char *chain_pem, char *out, size_t out_len) TORII_MUST_USE;
/** *due = now_ms is at or past suggestedWindow.start of a renewalInfo object; TORII_EPROTO
 * when the window is missing or malformed (RFC 3339 UTC times, end >= start). */
int torii_acme_ari_window_due(const json_t *info, int64_t now_ms, int *due) TORII_MUST_USE;
/** Ask conf's CA: the directory, then renewalInfo/<certID> (own connection). TORII_ENOTFOUND
 * when the directory has no renewalInfo; other errors in eb. */
int torii_acme_ari_due(const struct torii_conf_acme *conf, const char *chain_pem, int64_t now_ms,
                       int *due, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- metrics ---- */

/** Counters for /metrics: orders by outcome ("valid", "invalid"), challenge failures by type.
 * /metrics also has torii_acme_challenge_answers_total{type} (torii_acme_chal_answered). */
struct torii_acme_counts {
    uint64_t orders_valid;
    uint64_t orders_invalid;
    uint64_t chal_failed[3]; /* http-01, tls-alpn-01, dns-01 */
};
/** A snapshot (zeros when a is NULL). Any thread. */
void torii_acme_counts_get(const struct torii_acme *a, struct torii_acme_counts *out);

struct torii_prom;
/** The families torii_acme_orders_total{outcome} and
 * torii_acme_challenge_failures_total{type} into p; nothing when a is NULL. Any thread. */
void torii_acme_metrics_write(const struct torii_acme *a, struct torii_prom *p);

#endif
