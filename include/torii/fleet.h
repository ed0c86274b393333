/* fleet.h - fleet mode (docs/fleet.md): etcd is the source of truth of the certificates of a
 * fleet of torii nodes; this node's LMDB store is its durable local copy.
 *
 * Writes: torii_fleet_start installs a write-through on the store (torii_store_set_remote),
 * so every certdb commit becomes etcd transactions (one per max_txn_ops / max_txn_bytes
 * slice) guarded per key: create_revision == 0 for creates, mod_revision == the revision of
 * this node's copy (which must be the text the caller read) for compare-and-swap replaces,
 * existence for replaces and deletes, plus the job's fence for writes made under a job gate
 * (one doer per job, below). A commit returns once
 * the watch brought its revision back into LMDB (bounded by timeout_ms). Private keys are
 * sealed with the KEK before they leave (fleet mode refuses to start without a KEK).
 * Reads: a watch thread applies etcd events to LMDB in revision order, each response in one
 * LMDB transaction that also records the last applied revision (meta "fleet_revision"), and
 * thereby the certificate table and PKI view (store watchers). It reconnects with backoff and
 * resumes from that revision + 1, or resyncs fully in pages when etcd compacted it.
 *
 * Key layout in etcd: <prefix>c/<cert id> -> entity JSON (keys sealed); <prefix>s/<index
 * key> -> cert id (the serial index); <prefix>t/keys -> the session ticket key set, sealed
 * (torii_fleet_tickets_*); <prefix>r/<CA id> -> the CA's current DER CRL (crl.c);
 * <prefix>w/<name> -> an on-demand wish (wish.c); <prefix>l/<job> -> a job's doer (elect.c);
 * <prefix>a/ -> ACME challenge answers (chal.c); <prefix>k/ -> their acknowledgements
 * (chal_ack.c); <prefix>m/<node id> -> a member of the fleet (members.c).
 *
 * Threads: start/stop on the main thread; the commit hook runs on any writer thread;
 * torii_fleet_writable from any thread. The JSON gateway functions (torii_fleet_gw_*) are
 * pure and may be called from any thread.
 * Ownership: the fleet borrows opts' config, store and KEK ring until torii_fleet_stop;
 * parsed results are owned by the caller (clear them). */
#ifndef TORII_FLEET_H
#define TORII_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"
#include "torii/tls.h"

struct torii_kek_ring;
struct torii_fleet;
struct torii_pki_state;
struct torii_acme_od;
struct torii_acme_wishes;

struct torii_fleet_opts {
    const struct torii_conf_fleet *conf; /* validated fleet.etcd (enabled) */
    struct torii_store *store;
    const struct torii_kek_ring *kek; /* required: keys are sealed before they reach etcd */
    const char *stall_file;           /* debug.stall_file (tests; NULL: none): "fleet-apply" */
    /* The PKI view (borrowed; NULL: CRLs not shared): its CRLs are signed by the doer of job
     * "crl" and stored at <prefix>r/<CA id> (crl.c), every node serving the stored ones. */
    struct torii_pki_state *pki;
    /* On-demand decisions (borrowed; NULL: acme.on_demand off): names the other nodes forward
     * are decided on by the doer of job "acme" (wish.c). */
    struct torii_acme_od *od;
    /* 1 when this node follows the shared ACME answers (acme{} on, torii_fleet_chal_start
     * follows): its member key says so, and the doers of ACME orders wait for its
     * acknowledgements (chal_ack.c). */
    int acme_answers;
};

/** Start fleet mode: checks the KEK, installs the write-through and starts the watch thread
 * (which fills or resyncs LMDB, seeds an empty fleet from LMDB once, then follows etcd).
 * etcd need not be reachable: the node serves from LMDB and refuses writes (TORII_EAGAIN,
 * 503) until it is. TORII_EINVAL (no KEK; eb says so), TORII_ENOMEM. */
int torii_fleet_start(const struct torii_fleet_opts *o, struct torii_fleet **out,
                      struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop the watch thread and remove the write-through. NULL accepted. */
void torii_fleet_stop(struct torii_fleet *f);

/* ---- shared session ticket keys (tickets.c, tickets_set.c) ----
 * One key set for the whole fleet at <prefix>t/keys, sealed with the KEK: every node installs
 * it (through the hook) and follows it with a watch; a set older than period_s is rotated by
 * one node with a compare-and-swap on its mod_revision (losers adopt the winner's set).
 * Threads: start/period/stop on the main thread; the hook is called on the module's threads
 * (one call at a time) and must not block. Ownership: the fleet is borrowed and must outlive
 * the tickets (stop them first); keys handed to the hook are borrowed for the call. */

struct torii_fleet_tickets;

/** Install a key set (k[0] current) in the TLS contexts; TORII_OK when taken. */
typedef int (*torii_fleet_tickets_cb)(void *arg, const struct torii_tls_ticket_keys *ks);

struct torii_fleet_tickets_opts {
    struct torii_fleet *fleet; /* started */
    unsigned period_s;         /* tls.ticket_rotate_s; 0: made once, never rotated */
    torii_fleet_tickets_cb install;
    void *arg;
};

/** Start following (and rotating) the fleet's ticket keys; etcd need not be reachable (the
 * hook is called once a set is read). TORII_EINVAL (eb says why), TORII_ENOMEM. */
int torii_fleet_tickets_start(const struct torii_fleet_tickets_opts *o,
                              struct torii_fleet_tickets **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** A new rotation period (a reload of tls.ticket_rotate_s). NULL accepted. */
void torii_fleet_tickets_period(struct torii_fleet_tickets *t, unsigned period_s);
/** Stop the threads, wipe the keys held. NULL accepted. */
void torii_fleet_tickets_stop(struct torii_fleet_tickets *t);

/** A key set as stored: the keys and when the current one was made (Unix ms). */
struct torii_fleet_ticket_set {
    struct torii_tls_ticket_keys keys;
    int64_t created_ms;
};

/** The stored value of a set for etcd key rec[0..rec_len): {"v":1,"keys":"TKEK:<base64>"},
 * the envelope sealing created_ms and the keys under kek's current KEK for record id rec.
 * *out malloc'd, NUL-terminated (holds no clear key byte). TORII_EINVAL for a set without
 * 1 or 2 keys or a creation time; torii_kek_seal's codes. */
int torii_fleet_tickets_encode(const struct torii_kek_ring *kek, const char *rec, size_t rec_len,
                               const struct torii_fleet_ticket_set *s, char **out,
                               struct torii_errbuf *eb) TORII_MUST_USE;
/** Parse and open a stored value (distrusted: read from etcd). TORII_EPROTO (eb names the
 * member or the length) for anything but the shape above, 1 or 2 keys with distinct names
 * and a positive creation time; torii_kek_open's codes (another KEK, altered, another key).
 * *out is wiped on failure. */
int torii_fleet_tickets_decode(const struct torii_kek_ring *kek, const char *rec, size_t rec_len,
                               const char *val, size_t len, struct torii_fleet_ticket_set *out,
                               struct torii_errbuf *eb) TORII_MUST_USE;
/** 1 when a set created at created_ms is due for rotation at now_ms (period_s 0: never; a
 * set from more than a period in the future is due too). */
int torii_fleet_tickets_due(int64_t created_ms, unsigned period_s, int64_t now_ms);

/* ---- one doer per job (elect.c, docs/fleet.md "Jobs") ----
 * Each node holds one etcd lease (fleet.etcd.lease_ttl_s, kept alive every TTL/3) and
 * contends for every job: a transaction creates <prefix>l/<job> (value: the node's name) with
 * the lease attached, only when the key is absent (create_revision == 0). The node that
 * created it holds the job until its lease ends (crash, partition: etcd deletes the key after
 * the TTL; a clean stop revokes the lease at once). Others poll every TTL/3 and are woken by
 * the watch when the key is deleted, then take over. Fencing: held() turns false as soon as
 * the lease's local deadline (send time of the last successful grant or keepalive + TTL)
 * passes, before etcd can expire it; writes made under the gate carry a compare on the leader
 * key's create_revision (the fence), so a deposed leader's write fails. */

struct torii_job_gate;

/** 1 when this node holds job now ("renewal", "acme", "crl", "tickets"; 0 for any other),
 * with *fence_rev (may be NULL) = the create_revision of <prefix>l/<job>: writes of the job
 * compare it (etcd compare target CREATE, EQUAL) to fail once the node was deposed. f NULL (a
 * single node): 1, fence 0. Any thread. */
int torii_fleet_job_held(struct torii_fleet *f, const char *job, int64_t *fence_rev);

/** The jobgate.h gate of this node: enter/held ask torii_fleet_job_held, and enter fences the
 * calling thread's certificate writes (fleet_commit adds the compare) until leave. */
void torii_fleet_job_gate(struct torii_fleet *f, struct torii_job_gate *out);

/** The acme.h wishes hook of this node (opts.od set; else *out is zeroed): forward() puts
 * <prefix>w/<name> (created only when absent, attached to the node's lease, so it goes with
 * the node), done() removes it once the doer's order ended. The doer of job "acme" hands each
 * wish to torii_acme_on_demand_wish and removes the refused ones at once (logged; counted in
 * the on-demand decisions). Hooks never block: a thread of the fleet does the requests. */
void torii_fleet_wishes(struct torii_fleet *f, struct torii_acme_wishes *out);

/* The election state machine (pure; the elect thread drives it under a mutex). */
#define TORII_FLEET_JOBS 4
struct torii_fleet_elect {
    int64_t lease;                   /* lease ID; 0: none */
    int64_t deadline_us;             /* monotonic: the lease is ours before this instant */
    int64_t fence[TORII_FLEET_JOBS]; /* create_revision of the job's key when held; 0: not */
};
/** Index of a job name, -1 when unknown. */
int torii_fleet_job_index(const char *job);
/** Name of job index i (0..TORII_FLEET_JOBS-1). */
const char *torii_fleet_job_name(int i);
/** A grant or keepalive answer for lease id with ttl_s, for a request sent at sent_us. A new
 * lease drops every job (their keys went with the old one); ttl_s <= 0 (the lease is gone)
 * or an answer for another lease drops the lease and every job. */
void torii_fleet_elect_lease(struct torii_fleet_elect *e, int64_t id, int64_t ttl_s,
                             int64_t sent_us);
/** Drop the lease and every job once now_us reaches the deadline. */
void torii_fleet_elect_expire(struct torii_fleet_elect *e, int64_t now_us);
/** The key of job was seen with create_rev (0: absent): a held job whose key is gone or was
 * created again (by another node) is lost. */
void torii_fleet_elect_seen(struct torii_fleet_elect *e, int job, int64_t create_rev);
/** 1 when the node should try to take job now: a live lease, job not held, its key absent. */
int torii_fleet_elect_should_try(const struct torii_fleet_elect *e, int job, int64_t create_rev,
                                 int64_t now_us);
/** The acquisition transaction won: job held with fence create_rev (ignored without a lease). */
void torii_fleet_elect_won(struct torii_fleet_elect *e, int job, int64_t create_rev);
/** 1 when job is held at now_us (live lease before its deadline); *fence (may be NULL). */
int torii_fleet_elect_held(const struct torii_fleet_elect *e, int job, int64_t now_us,
                           int64_t *fence);

/** The key of job under prefix: "<prefix>l/<job>" (malloc'd). */
char *torii_fleet_job_key(const char *prefix, const char *job);
/** The /v3/kv/txn request that takes job: compare create_revision == 0, put the node's name
 * with the lease attached, else read the key. A new object. */
json_t *torii_fleet_elect_acquire_req(const char *prefix, const char *job, const char *node,
                                      int64_t lease);
/** The compare that fences a write with job's fence: create_revision of the job's key equals
 * fence. A new object. */
json_t *torii_fleet_elect_fence_cmp(const char *prefix, const char *job, int64_t fence);
/** Parse a /v3/lease/grant or /v3/lease/keepalive answer (the latter wrapped in "result"):
 * *id and *ttl_s (0 when etcd says the lease is gone). Error bodies as torii_fleet_gw_error;
 * TORII_EPROTO for anything else malformed. */
int torii_fleet_gw_lease_parse(const char *body, size_t len, int64_t *id, int64_t *ttl_s,
                               struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- the etcd v3 JSON gateway (gw.c): request bodies and distrustful parsing ---- */

struct torii_fleet_kv {
    char *key; /* decoded, NUL-terminated (key_len excludes it) */
    size_t key_len;
    char *val; /* decoded, NUL-terminated; NULL for a DELETE event or keys_only */
    size_t val_len;
    int64_t mod_rev;
    int64_t create_rev;
    int64_t lease; /* the lease the key is attached to; 0: none */
};

/** A range response. */
struct torii_fleet_range {
    int64_t rev; /* header.revision */
    struct torii_fleet_kv *kvs;
    size_t n;
    int more;      /* more keys past the limit */
    int64_t count; /* total keys in the range */
};
void torii_fleet_range_clear(struct torii_fleet_range *r);

/** Parse a /v3/kv/range response body. TORII_EPROTO (eb names the member) on anything that is
 * not the documented shape; an error body is reported as torii_fleet_gw_error does. */
int torii_fleet_gw_range_parse(const char *body, size_t len, struct torii_fleet_range *out,
                               struct torii_errbuf *eb) TORII_MUST_USE;

/** A txn response: whether the compares held, the revision, and for each response_range of
 * the branch taken its key count (-1 for other responses), at most cap of them. */
struct torii_fleet_txn {
    int succeeded;
    int64_t rev;
    int64_t *counts;
    size_t n;
};
void torii_fleet_txn_clear(struct torii_fleet_txn *t);
int torii_fleet_gw_txn_parse(const char *body, size_t len, struct torii_fleet_txn *out,
                             struct torii_errbuf *eb) TORII_MUST_USE;

/** One watch stream message (one line of the stream). */
struct torii_fleet_event {
    int deleted; /* 1: DELETE, 0: PUT */
    struct torii_fleet_kv kv;
};
struct torii_fleet_watch {
    int created;
    int canceled;
    int64_t rev;         /* header.revision */
    int64_t compact_rev; /* > 0: the revision asked for was compacted (etcd's oldest) */
    struct torii_fleet_event *ev;
    size_t n;
};
void torii_fleet_watch_clear(struct torii_fleet_watch *w);
int torii_fleet_gw_watch_parse(const char *line, size_t len, struct torii_fleet_watch *out,
                               struct torii_errbuf *eb) TORII_MUST_USE;

/** An error body ({"error": ..., "code": N, "message": ...}, or {"error": {...}} in a stream):
 * returns TORII_ENOTFOUND when body is not one; else fills eb with etcd's message and returns
 * TORII_ECONFLICT for a compacted revision (code 11, "compacted"), TORII_EPERM for
 * authentication failures (codes 7, 16), TORII_EAGAIN for unavailability (codes 4, 14:
 * no leader, timeouts) and TORII_EPROTO for the rest. */
int torii_fleet_gw_error(const char *body, size_t len, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- the member registry (members.c) ----
 * Each node keeps <prefix>m/<id> = {"name": "<host> pid <pid>", "acme": true|false} attached
 * to its job lease (the elect thread puts it after each grant), so the key lives as long as
 * the node's lease: a node stopped cleanly leaves at once, a crashed or cut-off one after
 * lease_ttl_s. id: 16 random [A-Za-z0-9] characters drawn at start. "acme": the node follows
 * the shared ACME answers. Values read back are untrusted. The pure functions: any thread. */

#define TORII_FLEET_ID_LEN   16
#define TORII_FLEET_NODE_MAX 191

struct torii_fleet_member {
    char id[TORII_FLEET_ID_LEN + 1];
    char name[TORII_FLEET_NODE_MAX + 1];
    int acme;
};

/** 1 when s[0..len) is a node id: TORII_FLEET_ID_LEN characters [A-Za-z0-9]. */
int torii_fleet_id_ok(const char *s, size_t len);
/** The value of a member key, {"name":...,"acme":...} (malloc'd; NULL on allocation failure). */
char *torii_fleet_member_value(const char *name, int acme);
/** A member key's id (the key past "<prefix>m/", idlen bytes) and value (vlen bytes, untrusted)
 * into *out. TORII_EPROTO (eb says why) for an id that is not one, or a value other than an
 * object of exactly "name" (1..TORII_FLEET_NODE_MAX printable ASCII) and "acme" (a boolean). */
int torii_fleet_member_parse(const char *id, size_t idlen, const char *val, size_t vlen,
                             struct torii_fleet_member *out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- shared ACME challenge answers (chal.c) ----
 * In fleet mode every node's challenge table (acme.h) also holds the answers the other nodes
 * publish, so the CA may reach any node behind the load balancer. An answer lives in etcd at
 * <prefix>a/h/<token> (HTTP-01: the key authorization) or <prefix>a/t/<name> (TLS-ALPN-01:
 * the validation record sealed with the KEK for "acme-alpn:<name>"), attached to a lease of
 * the order's remaining time, so a dead node's answers expire. A watch thread of its own
 * (on <prefix>a/ only) reads the answers present, then follows their changes into the
 * table, acknowledging each answer it holds (<prefix>k/, below); after a broken stream it
 * reads them again and drops those gone meanwhile. The publisher waits for the
 * acknowledgements of every live member following the answers before it returns.
 * Threads: start/stop on the main thread (stop before the table is freed); publish and
 * withdraw on the ACME thread (the torii_acme_share hook); the pure functions on any.
 * Ownership: borrows opts' config, KEK ring, table and fleet until torii_fleet_chal_stop
 * (stop it before the fleet). */

struct torii_acme_chal;
struct torii_fleet_chal;

struct torii_fleet_chal_opts {
    const struct torii_conf_fleet *conf; /* validated fleet.etcd (enabled) */
    struct torii_fleet *fleet;           /* this node, started (its member id; borrowed) */
    const struct torii_kek_ring *kek;    /* required: validation keys reach etcd sealed */
    struct torii_acme_chal *table;       /* the table the listeners answer from */
};

/** Start the challenge watch (etcd need not be reachable: it retries with backoff).
 * TORII_EINVAL (no KEK), TORII_ENOMEM. */
int torii_fleet_chal_start(const struct torii_fleet_chal_opts *o, struct torii_fleet_chal **out,
                           struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop the watch thread; answers still published expire with their leases. NULL accepted. */
void torii_fleet_chal_stop(struct torii_fleet_chal *c);

/** torii_acme_share.publish (ctx: the torii_fleet_chal): the answer into etcd under a lease of
 * ttl_s seconds; returns once etcd committed it and every live member that follows the
 * answers (this node included) acknowledged it (chal_ack.c), or once timeout_ms passed (a
 * warning names the members that did not confirm; the CA is then told anyway). TORII_EINVAL
 * for a key that is not a token or a DNS name, TORII_EAGAIN when etcd is unreachable; eb
 * names the answer. */
int torii_fleet_chal_publish(void *ctx, const char *type, const char *key, const char *value,
                             const unsigned char *rec, size_t rec_len, int64_t ttl_s,
                             struct torii_errbuf *eb) TORII_MUST_USE;
/** torii_acme_share.withdraw: revoke the answer's lease (etcd deletes it; every node drops
 * it). A failure is logged: the answer then expires with its lease. */
void torii_fleet_chal_withdraw(void *ctx, const char *type, const char *key);

/** The etcd key suffix of an answer ("h/<token>" for "http-01", "t/<name>" for
 * "tls-alpn-01") into out. TORII_EINVAL for another type, a token that is not base64url, a
 * name that is not a lower-case DNS name, or one too long for out. Pure. */
int torii_fleet_chal_suffix(const char *type, const char *key, char *out, size_t cap)
    TORII_MUST_USE;
/** The etcd value of an answer: the key authorization (HTTP-01), or rec sealed with the
 * current KEK for "acme-alpn:<key>" (TLS-ALPN-01). *out malloc'd. Pure. */
int torii_fleet_chal_value(const struct torii_kek_ring *kek, const char *type, const char *key,
                           const char *value, const unsigned char *rec, size_t rec_len,
                           unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** One etcd event of the suffix sfx[0..slen) into table: a PUT publishes the answer (a
 * TLS-ALPN-01 record opened with the KEK), a DELETE withdraws it. TORII_EINVAL for a suffix
 * that torii_fleet_chal_suffix would not make or a malformed value; torii_kek_open's codes
 * for a record that does not open (sealed for another name, altered, unknown KEK);
 * torii_acme_chal_put's otherwise. Any thread. */
int torii_fleet_chal_apply(struct torii_acme_chal *table, const struct torii_kek_ring *kek,
                           const char *sfx, size_t slen, const unsigned char *val, size_t vlen,
                           int deleted, struct torii_errbuf *eb) TORII_MUST_USE;

/* Acknowledgements (chal_ack.c): each node's challenge watch, once it put an answer of
 * revision R in its table, writes <prefix>k/<suffix>/<node id> = "R" (decimal) attached to the
 * answer's own lease, so the acknowledgements go with the answer (withdrawn or expired). */

/** A node's acknowledgement: its id and the revision of the answer it holds. */
struct torii_fleet_ack {
    char id[TORII_FLEET_ID_LEN + 1];
    int64_t rev;
};

/** The etcd key "<prefix>k/<sfx>/<id>" (id "": the prefix of sfx's acknowledgements),
 * malloc'd. */
char *torii_fleet_chal_ack_key(const char *prefix, const char *sfx, const char *id);
/** An acknowledgement read from etcd (untrusted): id = the key past "<prefix>k/<sfx>/" (idlen
 * bytes), val its value, into *out. TORII_EPROTO for an id that is not a node id or a value
 * that is not a positive decimal revision (1..19 digits). */
int torii_fleet_chal_ack_parse(const char *id, size_t idlen, const char *val, size_t vlen,
                               struct torii_fleet_ack *out) TORII_MUST_USE;
/** Which nodes have not acknowledged revision rev (an acknowledgement of rev or later counts):
 * the members m[0..n) with acme set, and this node (self) whatever its member key says or
 * even without one. Their indices into missing (at most cap; index n stands for self when it
 * is not among m); returns how many are missing (0: every one acknowledged). Pure. */
size_t torii_fleet_chal_unacked(const struct torii_fleet_member *m, size_t n, const char *self,
                                const struct torii_fleet_ack *acks, size_t na, int64_t rev,
                                size_t *missing, size_t cap);

/** The range end of a prefix (the prefix with its last byte incremented; "\0" for all keys
 * when every byte is 0xff), malloc'd, length in *len. */
char *torii_fleet_prefix_end(const char *prefix, size_t plen, size_t *len);

#endif
