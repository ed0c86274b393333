/* crl.c - the CRLs of the fleet (fleet.h, docs/fleet.md "Jobs"). The PKI view (pkistate.h)
 * owns what a CRL is, signs it and numbers it; this file only carries it. A node signs only
 * while it does job "crl" and follows etcd (crl_signer); the CRL it signed is stored at
 * <prefix>r/<CA id> (the DER bytes) by a transaction that compares the key's mod_revision
 * with the one this node last saw and the job's fence, and only when its number is above
 * the number of that CRL: so the stored numbers of a CA only ever increase, even across a
 * change of doer, and a deposed doer cannot store. Every node (the doer too) adopts the
 * stored CRLs: from the watch, after the certificates of the same response (the CA is known
 * by then), and from a read of <prefix>r/ each time the watch starts.
 * Threads: start/stop on the main thread (fleet.c); the publish on the PKI view's refresher;
 * seen/load on the watch thread; crls.seen under crls.mu. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_int.h"
#include "torii/jobgate.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pkistate.h"

#define CRL_RANGE_LIMIT 1000

/* "<prefix>r/<id>" (malloc'd), its length in *len. */
static char *crl_key(const struct torii_fleet *f, const char *id, size_t *len)
{
    size_t n = strlen(f->o.conf->prefix) + 2 + strlen(id);
    char *k = torii_xmalloc(n + 1);

    (void)snprintf(k, n + 1, "%sr/%s", f->o.conf->prefix, id);
    *len = n;
    return k;
}

/* What this node last saw of CA id's stored CRL: its mod_revision (0: none) and number. */
static void crl_seen_get(struct torii_fleet *f, const char *id, int64_t *rev, uint64_t *number)
{
    const json_t *v;

    (void)pthread_mutex_lock(&f->crls.mu);
    v = json_object_get(f->crls.seen, id);
    *rev = (int64_t)json_integer_value(json_array_get(v, 0));
    *number = (uint64_t)json_integer_value(json_array_get(v, 1));
    (void)pthread_mutex_unlock(&f->crls.mu);
}

/* Record revision rev (0: deleted; older ones ignored) and number (0: unknown, the one known
 * stays) of CA id's stored CRL. */
static void crl_seen_set(struct torii_fleet *f, const char *id, int64_t rev, uint64_t number)
{
    const json_t *v;
    int64_t old_rev;
    uint64_t old_n;

    (void)pthread_mutex_lock(&f->crls.mu);
    v = json_object_get(f->crls.seen, id);
    old_rev = (int64_t)json_integer_value(json_array_get(v, 0));
    old_n = (uint64_t)json_integer_value(json_array_get(v, 1));
    if (rev == 0 || rev >= old_rev) {
        (void)json_object_set_new(
            f->crls.seen, id,
            json_pack("[I, I]", (json_int_t)rev, (json_int_t)(number > old_n ? number : old_n)));
    }
    (void)pthread_mutex_unlock(&f->crls.mu);
}

/* torii_pki_crl_share.signer: the doer of job "crl", once it follows etcd (its view is the
 * fleet's). */
static int crl_signer(void *ctx)
{
    struct torii_fleet *f = ctx;

    return atomic_load(&f->up) && torii_fleet_job_held(f, TORII_JOB_CRL, NULL);
}

/* The transaction storing der at key: the key's mod_revision is rev, the job's key has fence. */
static json_t *crl_txn_req(const struct torii_fleet *f, const char *key, size_t klen, int64_t rev,
                           int64_t fence, const unsigned char *der, size_t len)
{
    char r[32];
    json_t *req;

    (void)snprintf(r, sizeof(r), "%" PRId64, rev);
    req = json_pack("{s:[{s:o, s:s, s:s, s:s}, o], s:[{s:{s:o, s:o}}]}", "compare", "key",
                    fleet_b64(key, klen), "target", "MOD", "result", "EQUAL", "mod_revision", r,
                    torii_fleet_elect_fence_cmp(f->o.conf->prefix, TORII_JOB_CRL, fence), "success",
                    "request_put", "key", fleet_b64(key, klen), "value", fleet_b64(der, len));
    TORII_ASSERT(req != NULL);
    return req;
}

/* torii_pki_crl_share.publish. */
static int crl_publish(void *ctx, const char *ca_id, uint64_t number, const unsigned char *der,
                       size_t len, struct torii_errbuf *eb)
{
    struct torii_fleet *f = ctx;
    struct torii_fleet_txn t = {0};
    int64_t fence = 0;
    int64_t rev = 0;
    uint64_t known = 0;
    size_t klen = 0;
    char *key = crl_key(f, ca_id, &klen);
    char *resp = NULL;
    size_t rlen = 0;
    int rc = TORII_OK;

    TORII_ENSURE(torii_fleet_job_held(f, TORII_JOB_CRL, &fence),
                 torii_errf(eb, TORII_ECONFLICT, "fleet: this node no longer does job crl"));
    crl_seen_get(f, ca_id, &rev, &known);
    TORII_ENSURE(number > known, torii_errf(eb, TORII_ECONFLICT,
                                            "fleet: the fleet's CRL is number %" PRIu64, known));
    TORII_TRY(fleet_call_json(&f->cl, "/v3/kv/txn", crl_txn_req(f, key, klen, rev, fence, der, len),
                              &resp, &rlen, eb));
    TORII_TRY(torii_fleet_gw_txn_parse(resp, rlen, &t, eb));
    TORII_ENSURE(t.succeeded, torii_errf(eb, TORII_ECONFLICT,
                                         "fleet: the fleet's CRL changed since revision %" PRId64
                                         " or job crl moved (compare failed)",
                                         rev));
    crl_seen_set(f, ca_id, t.rev, number);
    torii_log(TORII_LOG_INFO, "fleet: CRL %" PRIu64 " of CA %s stored at revision %" PRId64, number,
              ca_id, t.rev);
out:
    torii_fleet_txn_clear(&t);
    free(resp);
    free(key);
    return rc;
}

void fleet_crl_seen(struct torii_fleet *f, const struct torii_fleet_kv *kv, int deleted)
{
    size_t plen = strlen(f->o.conf->prefix);
    struct torii_errbuf eb = {{0}};
    const char *id = kv->key + plen + 2;
    uint64_t n = 0;
    int rc;

    if (f->o.pki == NULL || kv->key_len <= plen + 2 || kv->key_len - plen - 2 > TORII_STORE_ID_MAX
        || memcmp(kv->key, f->o.conf->prefix, plen) != 0 || kv->key[plen] != 'r'
        || kv->key[plen + 1] != '/') {
        return;
    }
    if (deleted) {
        crl_seen_set(f, id, 0, 0);
        return;
    }
    rc = torii_pki_state_crl_adopt(f->o.pki, id, (const unsigned char *)kv->val, kv->val_len, &n,
                                   &eb);
    if (rc == TORII_OK) {
        torii_log(TORII_LOG_INFO, "fleet: serving the fleet's CRL %" PRIu64 " of CA %s", n, id);
    } else if (rc != TORII_EEXIST) {
        torii_log(rc == TORII_ENOTFOUND ? TORII_LOG_INFO : TORII_LOG_WARN,
                  "fleet: the fleet's CRL of CA %s (revision %" PRId64 ") not served: %s", id,
                  kv->mod_rev, eb.msg);
        n = 0;
    }
    crl_seen_set(f, id, kv->mod_rev, n);
}

void fleet_crl_load(struct torii_fleet *f)
{
    struct torii_fleet_range r = {0};
    struct torii_errbuf eb = {{0}};

    if (f->o.pki == NULL) {
        return;
    }
    if (fleet_range_sub(f, 'r', CRL_RANGE_LIMIT, 0, &r, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "fleet: the fleet's CRLs not read: %s", eb.msg);
    }
    for (size_t i = 0; i < r.n; i++) {
        fleet_crl_seen(f, &r.kvs[i], 0);
    }
    torii_fleet_range_clear(&r);
}

int fleet_crl_start(struct torii_fleet *f, struct torii_errbuf *eb)
{
    f->crls.seen = json_object();
    if (f->crls.seen == NULL || pthread_mutex_init(&f->crls.mu, NULL) != 0) {
        json_decref(f->crls.seen);
        f->crls.seen = NULL;
        return torii_errf(eb, TORII_ENOMEM, "fleet: cannot set up the CRL sharing");
    }
    return TORII_OK;
}

void fleet_crl_share(struct torii_fleet *f)
{
    struct torii_pki_crl_share sh = {crl_signer, crl_publish, f};

    if (f->o.pki != NULL) {
        torii_pki_state_crl_share(f->o.pki, &sh);
    }
}

void fleet_crl_stop(struct torii_fleet *f)
{
    if (f->crls.seen == NULL) {
        return;
    }
    if (f->o.pki != NULL) {
        torii_pki_state_crl_share(f->o.pki, NULL);
    }
    (void)pthread_mutex_destroy(&f->crls.mu);
    json_decref(f->crls.seen);
    f->crls.seen = NULL;
}
