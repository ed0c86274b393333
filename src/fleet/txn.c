/* txn.c - a certdb commit as etcd transactions (/v3/kv/txn). Each certificate op is guarded
 * by a compare on its key: create_revision == 0 for a create; for a compare-and-swap replace,
 * mod_revision == the revision at which this node's copy was applied (revs.c), once the copy
 * is checked to be the JSON the caller read; existence for a plain replace or delete; index
 * entries ride along unguarded. A write made under a job gate (jobgate.h) also compares the
 * job key's create_revision with the fence, so a deposed doer's write fails. When the
 * compares fail, the failure branch reads which keys exist, so the caller gets EEXIST,
 * ENOTFOUND or ECONFLICT.
 * A commit larger than max_txn_ops or max_txn_bytes is split between certificates: each
 * slice is atomic, the whole is not (docs/fleet.md). Values leave with their private key
 * sealed under the KEK. Also: seeding an empty fleet from the local store.
 * Threads: any writer thread (the commit), the watch thread (the seed). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

/* One transaction being built. */
struct txn_b {
    json_t *cmp;
    json_t *ok;
    json_t *fail;
    json_t *keys;                        /* base64 key -> its index in ok */
    enum torii_store_op_kind kind[1024]; /* per compare: the op it guards */
    size_t bytes;
    int wait; /* wait for the watch to apply a committed txn (not while seeding) */
};

json_t *fleet_b64(const void *p, size_t n)
{
    char *s = torii_b64_encode(p, n, 0, NULL);
    json_t *j = json_string(s);

    torii_secure_free(s, strlen(s));
    TORII_ASSERT(j != NULL);
    return j;
}

static json_t *txn_key(const struct torii_fleet *f, const struct torii_store_op *op)
{
    const char *pfx = f->o.conf->prefix;
    size_t plen = strlen(pfx);
    size_t klen = plen + 2 + op->rec.id_len;
    char *k = torii_xmalloc(klen + 1);
    json_t *j;

    (void)snprintf(k, klen + 1, "%s%c/%.*s", pfx, op->bucket == TORII_STORE_CERTS ? 'c' : 's',
                   (int)op->rec.id_len, op->rec.id);
    j = fleet_b64(k, plen + 2 + op->rec.id_len);
    free(k);
    return j;
}

/* The value etcd gets for a certificate: the JSON with its privateKey sealed (a key already
 * sealed is kept as is; without a privateKey the text goes unchanged). */
static int txn_sealed(const struct torii_fleet *f, const struct torii_store_op *op, char **out,
                      struct torii_errbuf *eb)
{
    json_t *e = json_loadb(op->rec.json, op->rec.json_len, 0, NULL);
    const char *pk = json_string_value(json_object_get(e, "privateKey"));
    char *id = torii_xstrndup(op->rec.id, op->rec.id_len);
    char *sealed = NULL;
    int rc = TORII_OK;

    *out = NULL;
    if (op->bucket != TORII_STORE_CERTS || e == NULL || pk == NULL || pk[0] == '\0'
        || torii_kek_text_is_sealed(pk)) {
        *out = torii_xstrndup(op->rec.json, op->rec.json_len);
        goto out;
    }
    TORII_TRY(torii_pki_key_seal(f->o.kek, id, pk, &sealed, eb));
    TORII_ENSURE(torii_kek_text_is_sealed(sealed),
                 torii_errf(eb, TORII_EINVAL, "fleet: the key of %.64s did not seal", id));
    (void)json_object_set_new(e, "privateKey", json_string(sealed));
    *out = json_dumps(e, JSON_COMPACT);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    if (sealed != NULL) {
        torii_secure_free(sealed, strlen(sealed));
    }
    free(id);
    json_decref(e);
    return rc;
}

static void txn_cmp(struct txn_b *t, json_t *key, enum torii_store_op_kind kind, int64_t mod_rev)
{
    json_t *c = json_pack("{s:O}", "key", key);
    char rev[32];

    if (kind == TORII_STORE_CREATE) {
        (void)json_object_set_new(c, "target", json_string("CREATE"));
        (void)json_object_set_new(c, "result", json_string("EQUAL"));
        (void)json_object_set_new(c, "create_revision", json_string("0"));
    } else if (kind == TORII_STORE_REPLACE_IF) {
        (void)snprintf(rev, sizeof(rev), "%" PRId64, mod_rev);
        (void)json_object_set_new(c, "target", json_string("MOD"));
        (void)json_object_set_new(c, "result", json_string("EQUAL"));
        (void)json_object_set_new(c, "mod_revision", json_string(rev));
    } else {
        (void)json_object_set_new(c, "target", json_string("CREATE"));
        (void)json_object_set_new(c, "result", json_string("NOT_EQUAL"));
        (void)json_object_set_new(c, "create_revision", json_string("0"));
    }
    t->kind[json_array_size(t->cmp)] = kind;
    (void)json_array_append_new(t->cmp, c);
    (void)json_array_append_new(
        t->fail, json_pack("{s:{s:O, s:b}}", "request_range", "key", key, "keys_only", 1));
}

static int txn_changed(const char *id, struct torii_errbuf *eb)
{
    return torii_errf(eb, TORII_ECONFLICT,
                      "fleet: the entity %.64s changed since it was read (compare-and-swap)", id);
}

/* The mod_revision of certificate id in etcd, whose value must be op's expected JSON. */
static int txn_etcd_rev(struct torii_fleet *f, const struct torii_store_op *op, const char *id,
                        int64_t *rev, struct torii_errbuf *eb)
{
    struct torii_fleet_range r = {0};
    json_t *key = txn_key(f, op);
    char *resp = NULL;
    size_t len = 0;
    int rc = TORII_OK;

    TORII_TRY(
        fleet_call_json(&f->cl, "/v3/kv/range", json_pack("{s:O}", "key", key), &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_range_parse(resp, len, &r, eb));
    TORII_ENSURE(r.n == 1,
                 torii_errf(eb, TORII_ENOTFOUND, "fleet: the entity %.64s is not in etcd", id));
    TORII_ENSURE(r.kvs[0].val_len == op->expect_json_len
                     && memcmp(r.kvs[0].val, op->expect_json, op->expect_json_len) == 0,
                 txn_changed(id, eb));
    *rev = r.kvs[0].mod_rev;
out:
    torii_fleet_range_clear(&r);
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    json_decref(key);
    return rc;
}

/* The mod_revision a compare-and-swap replace of op sends: the revision of this node's copy,
 * which must be the JSON the caller read; a copy never applied since start is looked up in
 * etcd (same test on etcd's value). TORII_ECONFLICT when the caller read an older version. */
static int txn_expect_rev(struct torii_fleet *f, const struct torii_store_op *op, int64_t *rev,
                          struct torii_errbuf *eb)
{
    char *id = torii_xstrndup(op->rec.id, op->rec.id_len);
    char *cur = NULL;
    size_t cur_len = 0;
    int rc = TORII_OK;

    /* The revision first, then the copy: the applier writes them in the other order. */
    (void)pthread_mutex_lock(&f->rev_mu);
    *rev = fleet_revs_get(&f->revs, op->rec.id, op->rec.id_len);
    (void)pthread_mutex_unlock(&f->rev_mu);
    rc = torii_store_get(f->o.store, TORII_STORE_CERTS, id, &cur, &cur_len, NULL, NULL);
    TORII_ENSURE(rc != TORII_ENOTFOUND,
                 torii_errf(eb, TORII_ENOTFOUND, "fleet: the entity %.64s is not here", id));
    TORII_TRY(rc);
    TORII_ENSURE(cur_len == op->expect_json_len && memcmp(cur, op->expect_json, cur_len) == 0,
                 txn_changed(id, eb));
    if (*rev <= 0) {
        TORII_TRY(txn_etcd_rev(f, op, id, rev, eb));
    }
out:
    if (cur != NULL) {
        torii_secure_free(cur, cur_len);
    }
    free(id);
    return rc;
}

/* Add the success op req on key. A later op on a key this transaction already writes replaces
 * the earlier one: etcd refuses a txn that writes a key twice, and the local store, applying
 * ops in order, keeps the last (a renewal rewrites the old serial's index entry twice: for the
 * renewed entity, then for its copy). */
static void txn_op(struct txn_b *t, json_t *key, json_t *req)
{
    const char *k = json_string_value(key);
    const json_t *at = json_object_get(t->keys, k);

    if (at != NULL) {
        (void)json_array_set_new(t->ok, (size_t)json_integer_value(at), req);
        return;
    }
    (void)json_object_set_new(t->keys, k, json_integer((json_int_t)json_array_size(t->ok)));
    (void)json_array_append_new(t->ok, req);
}

/* Add op to t (its compare, its success op). */
static int txn_add(struct torii_fleet *f, struct txn_b *t, const struct torii_store_op *op,
                   struct torii_errbuf *eb)
{
    json_t *key = txn_key(f, op);
    char *val = NULL;
    int64_t rev = 0;
    int rc = TORII_OK;

    if (op->bucket == TORII_STORE_CERTS && op->kind == TORII_STORE_REPLACE_IF) {
        TORII_TRY(txn_expect_rev(f, op, &rev, eb));
    }
    t->bytes += 64 + (op->rec.id_len + strlen(f->o.conf->prefix)) * 3;
    if (op->kind == TORII_STORE_DELETE) {
        txn_op(t, key, json_pack("{s:{s:O}}", "request_delete_range", "key", key));
    } else {
        TORII_TRY(txn_sealed(f, op, &val, eb));
        txn_op(t, key,
               json_pack("{s:{s:O, s:o}}", "request_put", "key", key, "value",
                         fleet_b64(val, strlen(val))));
        t->bytes += strlen(val) * 4 / 3;
    }
    if (op->bucket == TORII_STORE_CERTS && op->kind != TORII_STORE_PUT) {
        txn_cmp(t, key, op->kind, rev);
    }
out:
    if (val != NULL) {
        torii_secure_free(val, strlen(val));
    }
    json_decref(key);
    return rc;
}

static void txn_reset(struct txn_b *t)
{
    json_decref(t->cmp);
    json_decref(t->ok);
    json_decref(t->fail);
    json_decref(t->keys);
    t->cmp = json_array();
    t->ok = json_array();
    t->fail = json_array();
    t->keys = json_object();
    t->bytes = 0;
}

/* Why the compares failed, from the failure branch's key counts. */
static int txn_why(const struct txn_b *t, const struct torii_fleet_txn *r, struct torii_errbuf *eb)
{
    for (size_t i = 0; i < r->n && i < json_array_size(t->cmp); i++) {
        if (t->kind[i] == TORII_STORE_CREATE && r->counts[i] > 0) {
            return torii_errf(eb, TORII_EEXIST, "fleet: the entity already exists in etcd");
        }
        if (t->kind[i] != TORII_STORE_CREATE && r->counts[i] == 0) {
            return torii_errf(eb, TORII_ENOTFOUND, "fleet: the entity is not in etcd");
        }
    }
    return torii_errf(eb, TORII_ECONFLICT, "fleet: the entity changed in etcd since it was read");
}

static int txn_fenced_out(int job, struct torii_errbuf *eb)
{
    torii_log(TORII_LOG_WARN, "fleet: a write of job %s refused: this node no longer does it",
              torii_fleet_job_name(job));
    return torii_errf(eb, TORII_ECONFLICT,
                      "fleet: this node no longer does job %s (another node took it, or its lease "
                      "ended): the write is refused",
                      torii_fleet_job_name(job));
}

/* The compares of t, plus the fence when the calling thread writes for a job (jobgate.h);
 * *job is then its index, else -1. TORII_ECONFLICT when the job is no longer held here. */
static int txn_compares(struct torii_fleet *f, const struct txn_b *t, json_t **cmp, int *job,
                        int64_t *fence, struct torii_errbuf *eb)
{
    int64_t cur = 0;

    *job = -1;
    *cmp = json_copy(t->cmp);
    TORII_ASSERT(*cmp != NULL);
    if (!fleet_elect_fenced(f, job, fence)) {
        *job = -1;
        return TORII_OK;
    }
    if (!torii_fleet_job_held(f, torii_fleet_job_name(*job), &cur) || cur != *fence) {
        return txn_fenced_out(*job, eb);
    }
    (void)json_array_append_new(
        *cmp, torii_fleet_elect_fence_cmp(f->o.conf->prefix, torii_fleet_job_name(*job), *fence));
    return TORII_OK;
}

/* Send t as one txn; on success wait for the watch to bring it into the store. */
static int txn_send(struct torii_fleet *f, struct txn_b *t, struct torii_errbuf *eb)
{
    json_t *cmp = NULL;
    json_t *req = NULL;
    struct torii_fleet_txn r = {0};
    char *resp = NULL;
    size_t len = 0;
    int64_t fence = 0;
    int job = -1;
    int rc = TORII_OK;

    TORII_TRY(txn_compares(f, t, &cmp, &job, &fence, eb));
    req = json_pack("{s:O, s:O, s:O}", "compare", cmp, "success", t->ok, "failure", t->fail);
    TORII_TRY(fleet_call_json(&f->cl, "/v3/kv/txn", req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_txn_parse(resp, len, &r, eb));
    if (r.succeeded && t->wait && !fleet_wait_applied(f, r.rev)) {
        torii_log(TORII_LOG_WARN,
                  "fleet: revision %" PRId64 " not applied locally within "
                  "timeout_ms; the write is in etcd and will arrive",
                  r.rev);
    }
    if (!r.succeeded) {
        rc = txn_why(t, &r, eb);
    }
    if (rc == TORII_ECONFLICT && job >= 0 && fleet_elect_fence_lost(f, job, fence)) {
        rc = txn_fenced_out(job, eb);
    }
out:
    json_decref(cmp);
    if (rc == TORII_EPROTO || rc == TORII_EPERM) {
        torii_log(TORII_LOG_ERR, "%s", eb != NULL ? eb->msg : "fleet: etcd txn failed");
        rc = TORII_EAGAIN;
    }
    torii_fleet_txn_clear(&r);
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    return rc;
}

/* Ops of the group starting at i: a certificate op and the index ops that follow it. */
static size_t txn_group(const struct torii_store_op *ops, size_t n, size_t i)
{
    size_t j = i + 1;

    while (j < n && j - i < 8 && ops[j].bucket != TORII_STORE_CERTS) {
        j++;
    }
    return j - i;
}

static int txn_bucket_check(const struct torii_store_op *ops, size_t n, struct torii_errbuf *eb)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i].bucket != TORII_STORE_CERTS && ops[i].bucket != TORII_STORE_SERIALS) {
            return torii_errf(eb, TORII_EINVAL, "fleet: only certificates go through etcd");
        }
    }
    return TORII_OK;
}

/* Whether g more ops would take t past the cluster's limits (half the bytes: headroom for the
 * JSON and base64 around the values). */
static int txn_full(const struct txn_b *t, size_t g, size_t max_ops, size_t max_bytes)
{
    size_t n = json_array_size(t->ok);
    return n > 0 && (n + g > max_ops || t->bytes > max_bytes / 2);
}

static int txn_add_group(struct torii_fleet *f, struct txn_b *t, const struct torii_store_op *ops,
                         size_t g, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (size_t j = 0; j < g; j++) {
        TORII_TRY(txn_add(f, t, &ops[j], eb));
    }
out:
    return rc;
}

static int txn_run(struct torii_fleet *f, const struct torii_store_op *ops, size_t n, int wait,
                   struct torii_errbuf *eb)
{
    const struct torii_conf_fleet *c = f->o.conf;
    struct txn_b t = {.wait = wait};
    /* One compare short of the limit: room for a job's fence. */
    size_t max_ops = (c->max_txn_ops < 1024 ? c->max_txn_ops : 1024) - 1;
    int rc = TORII_OK;

    TORII_TRY(txn_bucket_check(ops, n, eb));
    txn_reset(&t);
    for (size_t i = 0; i < n;) {
        size_t g = txn_group(ops, n, i);
        if (txn_full(&t, g, max_ops, c->max_txn_bytes)) {
            TORII_TRY(txn_send(f, &t, eb));
            txn_reset(&t);
        }
        TORII_TRY(txn_add_group(f, &t, ops + i, g, eb));
        i += g;
    }
    if (json_array_size(t.ok) > 0) {
        TORII_TRY(txn_send(f, &t, eb));
    }
out:
    json_decref(t.cmp);
    json_decref(t.ok);
    json_decref(t.fail);
    json_decref(t.keys);
    return rc;
}

int fleet_commit(void *ctx, const struct torii_store_op *ops, size_t n, struct torii_errbuf *eb)
{
    struct torii_fleet *f = ctx;

    if (!atomic_load(&f->up)) {
        return torii_errf(eb, TORII_EAGAIN,
                          "fleet: etcd is unreachable from this node: certificate writes are "
                          "refused until it is back (reads and TLS are served from the local "
                          "copy)");
    }
    return txn_run(f, ops, n, 1, eb);
}

/* ---- seeding an empty fleet ---- */

struct seed_ctx {
    enum torii_store_bucket b;
    json_t *recs; /* [bucket, id, json] */
};

static int seed_cb(const struct torii_store_rec *rec, void *arg)
{
    struct seed_ctx *s = arg;

    (void)json_array_append_new(s->recs, json_pack("[i, s%, s%]", (int)s->b, rec->id, rec->id_len,
                                                   rec->json, rec->json_len));
    return TORII_OK;
}

int fleet_seed(struct torii_fleet *f, struct torii_errbuf *eb)
{
    struct seed_ctx s = {.recs = json_array()};
    struct torii_store_op *ops = NULL;
    size_t n;
    int rc = TORII_OK;

    TORII_ENSURE(s.recs != NULL, TORII_ENOMEM);
    s.b = TORII_STORE_CERTS;
    TORII_TRY(torii_store_foreach(f->o.store, TORII_STORE_CERTS, seed_cb, &s));
    s.b = TORII_STORE_SERIALS;
    TORII_TRY(torii_store_foreach(f->o.store, TORII_STORE_SERIALS, seed_cb, &s));
    n = json_array_size(s.recs);
    ops = torii_xcalloc(n + 1, sizeof(*ops));
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(s.recs, i);
        const json_t *id = json_array_get(r, 1);
        const json_t *js = json_array_get(r, 2);
        ops[i] = (struct torii_store_op){
            .kind = json_integer_value(json_array_get(r, 0)) == TORII_STORE_CERTS
                        ? TORII_STORE_CREATE
                        : TORII_STORE_PUT,
            .bucket = (enum torii_store_bucket)json_integer_value(json_array_get(r, 0)),
            .rec = {.id = json_string_value(id),
                    .id_len = json_string_length(id),
                    .json = json_string_value(js),
                    .json_len = json_string_length(js)}};
    }
    torii_log(TORII_LOG_NOTICE,
              "fleet: the fleet prefix %s is empty: seeding it with this "
              "node's %zu certificates and index entries",
              f->o.conf->prefix, n);
    TORII_TRY(txn_run(f, ops, n, 0, eb));
out:
    free(ops);
    json_decref(s.recs);
    return rc;
}
