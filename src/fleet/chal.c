/* chal.c - shared ACME challenge answers (fleet.h): this node's answers published to etcd
 * under <prefix>a/ with a lease, and a watch thread of its own that keeps the local challenge
 * table holding every node's answers. One cycle of the thread: read the answers present
 * (dropping those learned before and gone meanwhile), then watch from the next revision until
 * the stream breaks; retried with backoff (100 ms doubling to 5 s). Each answer put in the
 * table is acknowledged, and a publish waits for every member's acknowledgement
 * (chal_ack.c). The pure parts (etcd key suffixes, values, applying one event) come first.
 * Threads: start/stop on the main thread; the watch thread; publish/withdraw on the ACME
 * thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/acme.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define CHAL_SFX_MAX     (2 + TORII_ACME_KEY_MAX)
#define CHAL_NAME_MAX    FLEET_NAME_MAX
#define CHAL_RANGE_LIMIT (4 * TORII_ACME_CHAL_MAX)
#define CHAL_BACKOFF_MIN 100
#define CHAL_BACKOFF_MAX 5000
#define CHAL_AAD_PREFIX  "acme-alpn:"
#define CHAL_AAD_MAX     (sizeof(CHAL_AAD_PREFIX) + CHAL_NAME_MAX)
#define CHAL_HTTP01      0
#define CHAL_ALPN        1

/* ---- pure: suffixes, values, one event ---- */

static int chal_kind(const char *type)
{
    if (type != NULL && strcmp(type, "http-01") == 0) {
        return CHAL_HTTP01;
    }
    return type != NULL && strcmp(type, "tls-alpn-01") == 0 ? CHAL_ALPN : -1;
}

/* An ACME token: base64url, 1..TORII_ACME_KEY_MAX characters. */
static int chal_is_token(const char *s, size_t len)
{
    if (len == 0 || len > TORII_ACME_KEY_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '-' || ch == '_')) {
            return 0;
        }
    }
    return 1;
}

int fleet_is_dns_name(const char *s, size_t len)
{
    if (len == 0 || len > CHAL_NAME_MAX || s[0] == '.' || s[len - 1] == '.') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'
                 || (ch == '.' && s[i + 1] != '.');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

static int chal_key_ok(int kind, const char *key, size_t len)
{
    return kind == CHAL_HTTP01 ? chal_is_token(key, len) : fleet_is_dns_name(key, len);
}

int torii_fleet_chal_suffix(const char *type, const char *key, char *out, size_t cap)
{
    int kind = chal_kind(type);
    int n;

    if (kind < 0 || key == NULL || !chal_key_ok(kind, key, strlen(key))) {
        return TORII_EINVAL;
    }
    n = snprintf(out, cap, "%c/%s", kind == CHAL_HTTP01 ? 'h' : 't', key);
    return n > 0 && (size_t)n < cap ? TORII_OK : TORII_EINVAL;
}

/* The associated data a validation record is sealed for: "acme-alpn:<name>". */
static size_t chal_aad(const char *name, char out[CHAL_AAD_MAX + 1])
{
    int n = snprintf(out, CHAL_AAD_MAX + 1, "%s%s", CHAL_AAD_PREFIX, name);

    return n > 0 && (size_t)n <= CHAL_AAD_MAX ? (size_t)n : 0;
}

/* A key authorization for token: "<token>.<base64url thumbprint>". */
static int chal_keyauth_ok(const char *token, const char *v, size_t vlen)
{
    size_t tl = strlen(token);

    return vlen > tl + 1 && vlen <= TORII_ACME_KEYAUTH_MAX && memcmp(v, token, tl) == 0
           && v[tl] == '.' && chal_is_token(v + tl + 1, vlen - tl - 1);
}

int torii_fleet_chal_value(const struct torii_kek_ring *kek, const char *type, const char *key,
                           const char *value, const unsigned char *rec, size_t rec_len,
                           unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
{
    int kind = chal_kind(type);
    char aad[CHAL_AAD_MAX + 1];
    size_t aad_len;

    *out = NULL;
    *out_len = 0;
    if (kind < 0 || key == NULL || !chal_key_ok(kind, key, strlen(key))) {
        return torii_errf(eb, TORII_EINVAL, "fleet: acme answer: bad %s key %.64s",
                          type != NULL ? type : "(no type)", key != NULL ? key : "(none)");
    }
    if (kind == CHAL_HTTP01) {
        if (value == NULL || !chal_keyauth_ok(key, value, strlen(value))) {
            return torii_errf(eb, TORII_EINVAL,
                              "fleet: acme answer h/%s: not a key authorization of the token", key);
        }
        *out_len = strlen(value);
        *out = (unsigned char *)torii_xstrdup(value);
        return TORII_OK;
    }
    aad_len = chal_aad(key, aad);
    if (rec == NULL || rec_len == 0 || aad_len == 0) {
        return torii_errf(eb, TORII_EINVAL, "fleet: acme answer t/%s: no validation record", key);
    }
    return torii_kek_seal(kek, aad, aad_len, rec, rec_len, out, out_len, eb);
}

/* torii_acme_chal_put, its failure named in eb. */
static int chal_table_put(struct torii_acme_chal *table, const char *type, const char *key,
                          const char *value, const unsigned char *rec, size_t rec_len,
                          struct torii_errbuf *eb)
{
    int rc = torii_acme_chal_put(table, type, key, value, rec, rec_len);

    if (rc != TORII_OK) {
        rc = torii_errf(eb, rc, "fleet: acme %s answer %.64s: %s", type, key,
                        rc == TORII_ETOOBIG ? "the challenge table is full" : torii_strerror(rc));
    }
    return rc;
}

/* A TLS-ALPN-01 value: open the record sealed for name and put it in the table. */
static int chal_apply_alpn(struct torii_acme_chal *table, const struct torii_kek_ring *kek,
                           const char *name, const unsigned char *val, size_t vlen,
                           struct torii_errbuf *eb)
{
    char aad[CHAL_AAD_MAX + 1];
    size_t aad_len = chal_aad(name, aad);
    unsigned char *rec = NULL;
    size_t rec_len = 0;
    int rc = TORII_OK;

    TORII_ENSURE(
        aad_len > 0 && torii_kek_is_sealed(val, vlen),
        torii_errf(eb, TORII_EINVAL, "fleet: acme answer t/%s: not a sealed record", name));
    TORII_TRY(torii_kek_open(kek, aad, aad_len, val, vlen, &rec, &rec_len, eb));
    rc = chal_table_put(table, "tls-alpn-01", name, NULL, rec, rec_len, eb);
out:
    torii_secure_free(rec, rec_len);
    return rc;
}

/* The kind and key (NUL-terminated) of an etcd key suffix "h/<token>" or "t/<name>"; -1 for
 * anything torii_fleet_chal_suffix would not make. */
static int chal_sfx_parse(const char *sfx, size_t slen, char key[TORII_ACME_KEY_MAX + 1])
{
    int kind = -1;

    if (slen > 2 && slen <= CHAL_SFX_MAX && sfx[1] == '/') {
        kind = sfx[0] == 'h' ? CHAL_HTTP01 : sfx[0] == 't' ? CHAL_ALPN : -1;
    }
    if (kind < 0 || !chal_key_ok(kind, sfx + 2, slen - 2)) {
        return -1;
    }
    memcpy(key, sfx + 2, slen - 2);
    key[slen - 2] = '\0';
    return kind;
}

/* An HTTP-01 value: the token's key authorization into the table. */
static int chal_apply_http01(struct torii_acme_chal *table, const char *token,
                             const unsigned char *val, size_t vlen, struct torii_errbuf *eb)
{
    char *v;
    int rc;

    if (val == NULL || !chal_keyauth_ok(token, (const char *)val, vlen)) {
        return torii_errf(eb, TORII_EINVAL,
                          "fleet: acme answer h/%s: not a key authorization of the token", token);
    }
    v = torii_xstrndup((const char *)val, vlen);
    rc = chal_table_put(table, "http-01", token, v, NULL, 0, eb);
    free(v);
    return rc;
}

int torii_fleet_chal_apply(struct torii_acme_chal *table, const struct torii_kek_ring *kek,
                           const char *sfx, size_t slen, const unsigned char *val, size_t vlen,
                           int deleted, struct torii_errbuf *eb)
{
    char key[TORII_ACME_KEY_MAX + 1];
    int kind = chal_sfx_parse(sfx, slen, key);

    if (kind < 0) {
        return torii_errf(eb, TORII_EINVAL, "fleet: acme answer: unexpected key a/%.*s",
                          (int)(slen > 80 ? 80 : slen), sfx);
    }
    if (deleted) {
        torii_acme_chal_drop(table, kind == CHAL_HTTP01 ? "http-01" : "tls-alpn-01", key);
        return TORII_OK;
    }
    return kind == CHAL_HTTP01 ? chal_apply_http01(table, key, val, vlen, eb)
                               : chal_apply_alpn(table, kek, key, val, vlen, eb);
}

/* ---- the node: etcd requests ---- */

/* POST req (taken) to path; the answer parsed as a JSON object into *out. */
static int chal_call(struct torii_fleet_chal *c, const char *path, json_t *req, json_t **out,
                     struct torii_errbuf *eb)
{
    char *resp = NULL;
    size_t len = 0;
    int rc = fleet_call_json(&c->cl, path, req, &resp, &len, eb);

    if (rc == TORII_OK) {
        *out = json_loadb(resp, len, 0, NULL);
        rc = json_is_object(*out)
                 ? TORII_OK
                 : torii_errf(eb, TORII_EPROTO, "fleet: etcd %s: not a JSON object", path);
    }
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    return rc;
}

/* A lease of ttl_s seconds: *id. */
static int chal_lease_grant(struct torii_fleet_chal *c, int64_t ttl_s, int64_t *id,
                            struct torii_errbuf *eb)
{
    json_t *resp = NULL;
    const json_t *v;
    const char *s;
    int rc = TORII_OK;

    TORII_TRY(
        chal_call(c, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl_s), &resp, eb));
    v = json_object_get(resp, "ID");
    s = json_string_value(v);
    *id = json_is_integer(v) ? (int64_t)json_integer_value(v)
                             : (s != NULL ? (int64_t)strtoll(s, NULL, 10) : 0);
    TORII_ENSURE(*id > 0, torii_errf(eb, TORII_EPROTO,
                                     "fleet: etcd /v3/lease/grant: no lease ID in the answer"));
out:
    json_decref(resp);
    return rc;
}

static int chal_lease_revoke(struct torii_fleet_chal *c, int64_t id, struct torii_errbuf *eb)
{
    json_t *resp = NULL;
    int rc = chal_call(c, "/v3/lease/revoke", json_pack("{s:I}", "ID", (json_int_t)id), &resp, eb);

    json_decref(resp);
    return rc;
}

/* Put <prefix>a/<sfx> = val under lease: *rev, the revision etcd committed it at. */
static int chal_put(struct torii_fleet_chal *c, const char *sfx, const unsigned char *val,
                    size_t vlen, int64_t lease, int64_t *rev, struct torii_errbuf *eb)
{
    size_t klen = c->pfx_len + strlen(sfx);
    char *k = torii_xmalloc(klen + 1);
    json_t *req;
    char *resp = NULL;
    size_t len = 0;
    struct torii_fleet_txn t = {0};
    int rc = TORII_OK;

    (void)snprintf(k, klen + 1, "%s%s", c->pfx, sfx);
    req = json_pack("{s:[{s:{s:o, s:o, s:I}}]}", "success", "request_put", "key",
                    fleet_b64(k, klen), "value", fleet_b64(val, vlen), "lease", (json_int_t)lease);
    TORII_TRY(fleet_call_json(&c->cl, "/v3/kv/txn", req, &resp, &len, eb));
    TORII_TRY(torii_fleet_gw_txn_parse(resp, len, &t, eb));
    TORII_ENSURE(
        t.succeeded && t.rev > 0,
        torii_errf(eb, TORII_EPROTO, "fleet: etcd did not commit the acme answer %s", sfx));
    *rev = t.rev;
out:
    torii_fleet_txn_clear(&t);
    if (resp != NULL) {
        torii_secure_free(resp, len);
    }
    free(k);
    return rc;
}

/* ---- the node: the watch thread ---- */

/* One etcd key of ours (under pfx) into the table; learned follows, and an answer put in the
 * table is acknowledged. */
static void chal_event(struct torii_fleet_chal *c, const struct torii_fleet_kv *kv, int deleted)
{
    struct torii_errbuf eb = {{0}};
    const char *sfx = kv->key + c->pfx_len;
    size_t slen = kv->key_len - c->pfx_len;
    int rc;

    if (kv->key_len <= c->pfx_len || memcmp(kv->key, c->pfx, c->pfx_len) != 0) {
        return; /* outside our range: etcd would not send it */
    }
    rc = torii_fleet_chal_apply(c->o.table, c->o.kek, sfx, slen, (const unsigned char *)kv->val,
                                kv->val_len, deleted, &eb);
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_WARN, "%s (not answered by this node)", eb.msg);
        return;
    }
    if (deleted) {
        (void)json_object_deln(c->learned, sfx, slen);
    } else {
        (void)json_object_setn_new(c->learned, sfx, slen, json_true());
        fleet_chal_ack(c, sfx, slen, kv);
    }
}

/* The answers learned before and absent from present (and not this node's own) leave the
 * table; learned becomes present. */
static void chal_forget_gone(struct torii_fleet_chal *c, json_t *present)
{
    const char *sfx;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(c->learned, tmp, sfx, v)
    {
        int own;
        struct torii_fleet_kv kv = {.key = NULL};
        if (json_object_get(present, sfx) != NULL) {
            continue;
        }
        (void)pthread_mutex_lock(&c->mu);
        own = json_object_get(c->leases, sfx) != NULL;
        (void)pthread_mutex_unlock(&c->mu);
        if (!own) {
            size_t klen = c->pfx_len + strlen(sfx);
            kv.key = torii_xmalloc(klen + 1);
            (void)snprintf(kv.key, klen + 1, "%s%s", c->pfx, sfx);
            kv.key_len = klen;
            chal_event(c, &kv, 1);
            free(kv.key);
        }
    }
    (void)json_object_update(c->learned, present);
}

/* Read the answers present: into the table, the gone ones out; *rev the range's revision. */
static int chal_load(struct torii_fleet_chal *c, int64_t *rev, struct torii_errbuf *eb)
{
    json_t *present = json_object();
    struct torii_fleet_range r = {0};
    int rc = TORII_OK;

    TORII_ENSURE(present != NULL, TORII_ENOMEM);
    TORII_TRY(fleet_kv_range_prefix(&c->cl, c->pfx, CHAL_RANGE_LIMIT, 0, &r, eb));
    if (r.more) {
        torii_log(TORII_LOG_WARN, "fleet: more than %d acme answers in etcd: only the first read",
                  CHAL_RANGE_LIMIT);
    }
    for (size_t i = 0; i < r.n; i++) {
        chal_event(c, &r.kvs[i], 0);
        if (r.kvs[i].key_len > c->pfx_len) {
            (void)json_object_set_new(present, r.kvs[i].key + c->pfx_len, json_true());
        }
    }
    chal_forget_gone(c, present);
    *rev = r.rev;
out:
    torii_fleet_range_clear(&r);
    json_decref(present);
    return rc;
}

static int chal_on_line(const char *line, size_t len, void *arg)
{
    struct torii_fleet_chal *c = arg;
    struct torii_fleet_watch w = {0};
    struct torii_errbuf eb = {{0}};
    int rc = torii_fleet_gw_watch_parse(line, len, &w, &eb);

    if (rc == TORII_OK && (w.compact_rev > 0 || w.canceled)) {
        rc = TORII_ECONFLICT; /* read the answers again, then watch from there */
    } else if (rc == TORII_OK) {
        for (size_t i = 0; i < w.n; i++) {
            chal_event(c, &w.ev[i].kv, w.ev[i].deleted);
        }
    } else {
        torii_log(TORII_LOG_ERR, "fleet: acme answers watch: %s", eb.msg);
    }
    torii_fleet_watch_clear(&w);
    return rc;
}

/* One cycle: read the answers present, then follow their changes until the stream breaks. */
static int chal_cycle(struct torii_fleet_chal *c, struct torii_errbuf *eb)
{
    int64_t rev = 0;
    json_t *req;
    char *body = NULL;
    int rc = TORII_OK;

    TORII_TRY(chal_load(c, &rev, eb));
    req = json_pack("{s:{s:o, s:o, s:I}}", "create_request", "key", fleet_b64(c->pfx, c->pfx_len),
                    "range_end", fleet_b64(c->pfx_end, c->pfx_end_len), "start_revision",
                    (json_int_t)rev + 1);
    body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    TORII_ENSURE(body != NULL, TORII_ENOMEM);
    rc = fleet_stream(&c->cl, "/v3/watch", body, chal_on_line, c, &c->stop, eb);
out:
    free(body);
    return rc;
}

static void *chal_thread(void *arg)
{
    struct torii_fleet_chal *c = arg;
    unsigned backoff = CHAL_BACKOFF_MIN;

    while (!atomic_load(&c->stop)) {
        struct torii_errbuf eb = {{0}};
        int rc = chal_cycle(c, &eb);
        if (atomic_load(&c->stop)) {
            break;
        }
        if (rc == TORII_ECONFLICT) {
            backoff = CHAL_BACKOFF_MIN;
        } else {
            torii_log(TORII_LOG_WARN, "fleet: acme answers watch: %s; retrying in %u ms",
                      eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), backoff);
        }
        fleet_chal_nap_ms(c, backoff);
        backoff = backoff * 2 > CHAL_BACKOFF_MAX ? CHAL_BACKOFF_MAX : backoff * 2;
    }
    return NULL;
}

int torii_fleet_chal_start(const struct torii_fleet_chal_opts *o, struct torii_fleet_chal **out,
                           struct torii_errbuf *eb)
{
    struct torii_fleet_chal *c = NULL;
    const char *pfx = o->conf != NULL ? o->conf->prefix : NULL;
    int rc = TORII_OK;

    *out = NULL;
    TORII_ENSURE(pfx != NULL && o->conf->enabled && o->table != NULL && o->fleet != NULL,
                 torii_errf(eb, TORII_EINVAL, "fleet: not configured"));
    TORII_ENSURE(torii_kek_ring_count(o->kek) > 0,
                 torii_errf(eb, TORII_EINVAL,
                            "fleet: shared acme answers need a KEK (validation keys reach etcd "
                            "only sealed with it)"));
    c = torii_xcalloc(1, sizeof(*c));
    c->o = *o;
    c->leases = json_object();
    c->learned = json_object();
    TORII_ENSURE(c->leases != NULL && c->learned != NULL, TORII_ENOMEM);
    TORII_TRY(fleet_client_init(&c->cl, o->conf, eb));
    TORII_ENSURE(pthread_mutex_init(&c->mu, NULL) == 0,
                 torii_errf(eb, TORII_ENOMEM, "fleet: mutex init failed"));
    c->pfx_len = strlen(pfx) + 2;
    c->pfx = torii_xmalloc(c->pfx_len + 1);
    (void)snprintf(c->pfx, c->pfx_len + 1, "%sa/", pfx);
    c->pfx_end = torii_fleet_prefix_end(c->pfx, c->pfx_len, &c->pfx_end_len);
    TORII_ENSURE(pthread_create(&c->thr, NULL, chal_thread, c) == 0,
                 torii_errf(eb, TORII_ENOMEM, "fleet: cannot start the acme answers watch"));
    c->started = 1;
    *out = c;
    c = NULL;
out:
    torii_fleet_chal_stop(c);
    return rc;
}

void torii_fleet_chal_stop(struct torii_fleet_chal *c)
{
    if (c == NULL) {
        return;
    }
    atomic_store(&c->stop, 1);
    if (c->started) {
        (void)pthread_join(c->thr, NULL);
    }
    (void)pthread_mutex_destroy(&c->mu);
    fleet_client_clear(&c->cl);
    json_decref(c->leases);
    json_decref(c->learned);
    free(c->pfx);
    free(c->pfx_end);
    free(c);
}

/* ---- the node: publish and withdraw (ACME thread) ---- */

/* Remember (id > 0) or forget (id 0) the lease of this node's answer sfx; *old gets the lease
 * it replaces (0: none). */
static void chal_lease_set(struct torii_fleet_chal *c, const char *sfx, int64_t id, int64_t *old)
{
    (void)pthread_mutex_lock(&c->mu);
    *old = (int64_t)json_integer_value(json_object_get(c->leases, sfx));
    if (id > 0) {
        (void)json_object_set_new(c->leases, sfx, json_integer((json_int_t)id));
    } else {
        (void)json_object_del(c->leases, sfx);
    }
    (void)pthread_mutex_unlock(&c->mu);
}

static void chal_revoke_logged(struct torii_fleet_chal *c, const char *sfx, int64_t id)
{
    struct torii_errbuf eb = {{0}};

    if (id > 0 && chal_lease_revoke(c, id, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN,
                  "fleet: acme answer %s: cannot revoke its lease (%s): it "
                  "expires with it",
                  sfx, eb.msg);
    }
}

/* Publish sfx = val[0..vlen) under a new lease of ttl_s; *rev its revision. */
static int chal_publish(struct torii_fleet_chal *c, const char *sfx, const unsigned char *val,
                        size_t vlen, int64_t ttl_s, int64_t *rev, struct torii_errbuf *eb)
{
    int64_t lease = 0;
    int64_t old = 0;
    int rc = TORII_OK;

    TORII_TRY(chal_lease_grant(c, ttl_s > 0 ? ttl_s : 1, &lease, eb));
    rc = chal_put(c, sfx, val, vlen, lease, rev, eb);
    if (rc != TORII_OK) {
        chal_revoke_logged(c, sfx, lease);
        goto out;
    }
    chal_lease_set(c, sfx, lease, &old);
    chal_revoke_logged(c, sfx, old);
out:
    return rc;
}

int torii_fleet_chal_publish(void *ctx, const char *type, const char *key, const char *value,
                             const unsigned char *rec, size_t rec_len, int64_t ttl_s,
                             struct torii_errbuf *eb)
{
    struct torii_fleet_chal *c = ctx;
    struct torii_errbuf e = {{0}};
    char sfx[CHAL_SFX_MAX + 1];
    unsigned char *val = NULL;
    size_t vlen = 0;
    int64_t rev = 0;
    int rc = TORII_OK;

    TORII_ENSURE(torii_fleet_chal_suffix(type, key, sfx, sizeof(sfx)) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL,
                            "fleet: acme %s answer %.64s: not a token or a DNS name",
                            type != NULL ? type : "(no type)", key != NULL ? key : "(none)"));
    rc = torii_fleet_chal_value(c->o.kek, type, key, value, rec, rec_len, &val, &vlen, &e);
    if (rc == TORII_OK) {
        rc = chal_publish(c, sfx, val, vlen, ttl_s, &rev, &e);
    }
    TORII_ENSURE(rc == TORII_OK,
                 torii_errf(eb, rc, "fleet: cannot share the acme %s answer %s with the fleet: %s",
                            type, sfx, e.msg));
    fleet_chal_wait_acked(c, sfx, rev);
out:
    torii_secure_free(val, vlen);
    return rc;
}

void torii_fleet_chal_withdraw(void *ctx, const char *type, const char *key)
{
    struct torii_fleet_chal *c = ctx;
    char sfx[CHAL_SFX_MAX + 1];
    int64_t old = 0;

    if (torii_fleet_chal_suffix(type, key, sfx, sizeof(sfx)) != TORII_OK) {
        return; /* never published */
    }
    chal_lease_set(c, sfx, 0, &old);
    chal_revoke_logged(c, sfx, old);
}
