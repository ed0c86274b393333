/* compact.c - certdb's compact index (TORII_STORE_CERTIDX): per certificate id, the few
 * fields that start-up (TLS table, PKI view, certificate gauges) and the renewer read, so
 * that they read ~150 bytes a certificate instead of its entity and TLS record.
 *
 * Written by the store in the transaction of every TORII_STORE_CERTS write (the derive
 * function, torii_store_opts.certidx: certdb's batches and the fleet's apply alike), rebuilt
 * once for a store that lacks it or was written without it (torii_certdb_migrate: a cursor
 * over ids, one transaction per batch with the cursor in meta, resumable, logged).
 *
 * Value layout (integers little-endian, no padding):
 *   off  size  field
 *     0     4  magic "TIX1"
 *     4     4  xflags (TORII_CERTDB_IDX_*)
 *     8     8  from_ms (the entity's "from"; 0 when not an integer)
 *    16     8  to_ms   (the entity's "to"; 0 when not an integer)
 *    24     2  domain length, then its bytes (the entity's "domain")
 *           4  summary length, then its bytes: torii_certrec_summary of the TLS record (the
 *              whole record for a version 1 record; 0 bytes when the record does not decode)
 * Threads: any (pure functions, and the store's own locking). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certdb_int.h"
#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"

#define IDX_HDR        26u
#define IDX_DOMAIN_MAX 65535u
static const unsigned char idx_magic[4] = {'T', 'I', 'X', '1'};

/* ---- encoding ---- */

static unsigned char *idx_put(unsigned char *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
    }
    return p + bytes;
}

static uint64_t idx_get(const unsigned char *p, unsigned bytes)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < bytes; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* "true" or true, as metadata flags are written. */
static int idx_md_true(const json_t *e, const char *k)
{
    const json_t *v = json_object_get(json_object_get(e, "metadata"), k);

    return json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

static unsigned idx_json_flags(const json_t *e)
{
    static const struct {
        const char *k;
        unsigned f;
    } top[] = {{"valid", TORII_CERTDB_IDX_VALID},         {"revoked", TORII_CERTDB_IDX_REVOKED},
               {"exposed", TORII_CERTDB_IDX_EXPOSED},     {"ca", TORII_CERTDB_IDX_CA},
               {"autoRenew", TORII_CERTDB_IDX_AUTORENEW}, {"letsEncrypt", TORII_CERTDB_IDX_ACME}};
    unsigned f = TORII_CERTDB_IDX_JSON;

    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
        f |= json_is_true(json_object_get(e, top[i].k)) ? top[i].f : 0u;
    }
    f |= idx_md_true(e, "untilExpiration") ? TORII_CERTDB_IDX_COPY : 0u;
    f |= idx_md_true(e, "expired") ? TORII_CERTDB_IDX_MD_EXPIRED : 0u;
    f |= idx_md_true(e, "almostExpired") ? TORII_CERTDB_IDX_MD_ALMOST : 0u;
    f |= json_is_integer(json_object_get(e, "from")) ? TORII_CERTDB_IDX_HAS_FROM : 0u;
    f |= json_is_integer(json_object_get(e, "to")) ? TORII_CERTDB_IDX_HAS_TO : 0u;
    return f;
}

/* The summary of the TLS record: the record itself for a version 1 one; NULL when it does
 * not decode. */
static unsigned char *idx_summary(const struct torii_store_rec *rec, size_t *len)
{
    unsigned char *sum = NULL;
    int rc =
        rec->aux != NULL ? torii_certrec_summary(rec->aux, rec->aux_len, &sum, len) : TORII_EINVAL;

    if (rc == TORII_ENOTFOUND) {
        sum = torii_xmalloc(rec->aux_len);
        memcpy(sum, rec->aux, rec->aux_len);
        *len = rec->aux_len;
    } else if (rc != TORII_OK) {
        sum = NULL;
        *len = 0;
    }
    return sum;
}

int torii_certdb_idx_derive(const struct torii_store_rec *rec, const void *parsed,
                            unsigned char **out, size_t *out_len)
{
    /* the writer's parsed entity when it handed one (no second parse), else our own */
    json_t *own =
        parsed == NULL && rec->json != NULL ? json_loadb(rec->json, rec->json_len, 0, NULL) : NULL;
    const json_t *e = parsed != NULL ? (const json_t *)parsed : own;
    const char *dom = json_string_value(json_object_get(e, "domain"));
    size_t dlen = dom != NULL ? strlen(dom) : 0;
    unsigned xf = json_is_object(e) ? idx_json_flags(e) : 0u;
    size_t slen = 0;
    unsigned char *sum = idx_summary(rec, &slen);
    unsigned char *p;

    dlen = dlen > IDX_DOMAIN_MAX ? 0 : dlen; /* never that long; then left out */
    *out_len = IDX_HDR + dlen + 4 + slen;
    *out = torii_xmalloc(*out_len);
    p = *out;
    memcpy(p, idx_magic, sizeof(idx_magic));
    p = idx_put(p + 4, xf, 4);
    p = idx_put(p, (uint64_t)json_integer_value(json_object_get(e, "from")), 8);
    p = idx_put(p, (uint64_t)json_integer_value(json_object_get(e, "to")), 8);
    p = idx_put(p, dlen, 2);
    memcpy(p, dom != NULL ? dom : "", dlen);
    p = idx_put(p + dlen, slen, 4);
    if (slen > 0) {
        memcpy(p, sum, slen);
    }
    free(sum);
    torii_cert_secrets_wipe(own);
    json_decref(own);
    return TORII_OK;
}

int torii_certdb_idx_decode(const char *id, size_t id_len, const unsigned char *v, size_t len,
                            struct torii_certdb_idx *out)
{
    size_t dlen;
    size_t slen;

    if (v == NULL || len < IDX_HDR || memcmp(v, idx_magic, sizeof(idx_magic)) != 0) {
        return TORII_EINVAL;
    }
    dlen = (size_t)idx_get(v + 24, 2);
    if (len - IDX_HDR < dlen + 4) {
        return TORII_EINVAL;
    }
    slen = (size_t)idx_get(v + IDX_HDR + dlen, 4);
    if (len - IDX_HDR - dlen - 4 != slen) {
        return TORII_EINVAL;
    }
    *out = (struct torii_certdb_idx){
        .id = id,
        .id_len = id_len,
        .xflags = (unsigned)idx_get(v + 4, 4),
        .from_ms = (int64_t)idx_get(v + 8, 8),
        .to_ms = (int64_t)idx_get(v + 16, 8),
        .domain = (const char *)v + IDX_HDR,
        .domain_len = dlen,
        .sum = slen > 0 ? v + IDX_HDR + dlen + 4 : NULL,
        .sum_len = slen,
    };
    return TORII_OK;
}

/* ---- reading ---- */

struct idx_walk {
    torii_certdb_idx_cb cb;
    void *arg;
};

static int idx_walk_stored(const struct torii_store_rec *rec, void *arg)
{
    struct idx_walk *w = arg;
    struct torii_certdb_idx ix;
    char esc[128];

    if (torii_certdb_idx_decode(rec->id, rec->id_len, rec->aux, rec->aux_len, &ix) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "certdb: corrupt index entry (id=%s)",
                  torii_log_escape(rec->id, rec->id_len, esc, sizeof(esc)));
        return TORII_OK;
    }
    return w->cb(&ix, w->arg);
}

/* The index derived on the fly from each record (a store whose index is not complete). */
static int idx_walk_derived(const struct torii_store_rec *rec, void *arg)
{
    struct idx_walk *w = arg;
    struct torii_certdb_idx ix;
    unsigned char *v = NULL;
    size_t len = 0;
    int rc = torii_certdb_idx_derive(rec, NULL, &v, &len);

    if (rc == TORII_OK) {
        rc = torii_certdb_idx_decode(rec->id, rec->id_len, v, len, &ix);
    }
    if (rc == TORII_OK) {
        rc = w->cb(&ix, w->arg);
    }
    free(v);
    return rc;
}

int torii_certdb_idx_complete(struct torii_store *st)
{
    char *v = NULL;
    int rc = torii_store_meta_get(st, TORII_STORE_CERTIDX_DONE, &v);

    free(v);
    return rc == TORII_OK;
}

int torii_certdb_idx_foreach(struct torii_store *st, torii_certdb_idx_cb cb, void *arg)
{
    struct idx_walk w = {cb, arg};

    if (torii_certdb_idx_complete(st)) {
        return torii_store_foreach(st, TORII_STORE_CERTIDX, idx_walk_stored, &w);
    }
    return torii_store_foreach(st, TORII_STORE_CERTS, idx_walk_derived, &w);
}

/* ---- the one-time rebuild ---- */

#define IDX_MIG_BATCH 4096

struct idx_mig {
    struct torii_store_op ops[IDX_MIG_BATCH];
    unsigned char *vals[IDX_MIG_BATCH];
    size_t n;
    char *from; /* the cursor: the last id done (skipped when met again) */
};

static void idx_mig_reset(struct idx_mig *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->vals[i]);
        free((char *)(uintptr_t)m->ops[i].rec.id);
    }
    m->n = 0;
}

static int idx_mig_collect(const struct torii_store_rec *rec, void *arg)
{
    struct idx_mig *m = arg;
    struct torii_store_op *op;
    size_t len = 0;

    if (m->from != NULL && rec->id_len == strlen(m->from)
        && memcmp(rec->id, m->from, rec->id_len) == 0) {
        return TORII_OK;
    }
    if (m->n == IDX_MIG_BATCH) {
        return TORII_EAGAIN; /* batch full: commit, then go on from the cursor */
    }
    op = &m->ops[m->n];
    TORII_ASSERT(torii_certdb_idx_derive(rec, NULL, &m->vals[m->n], &len) == TORII_OK);
    *op = (struct torii_store_op){.kind = TORII_STORE_PUT,
                                  .bucket = TORII_STORE_CERTIDX,
                                  .rec = {.id = torii_xstrndup(rec->id, rec->id_len),
                                          .id_len = rec->id_len,
                                          .aux = m->vals[m->n],
                                          .aux_len = len}};
    m->n++;
    return TORII_OK;
}

/* One batch from the cursor, committed with the new cursor; *done set after the last. */
static int idx_mig_batch(struct torii_store *st, struct idx_mig *m, int *done,
                         struct torii_errbuf *eb)
{
    int rc = torii_store_foreach_from(st, TORII_STORE_CERTS, m->from,
                                      m->from != NULL ? strlen(m->from) : 0, idx_mig_collect, m);

    if (rc != TORII_OK && rc != TORII_EAGAIN) {
        return torii_errf(eb, rc, "certdb: index rebuild: cannot read the certificates: %s",
                          torii_strerror(rc));
    }
    *done = rc == TORII_OK;
    if (m->n == 0) {
        return TORII_OK;
    }
    free(m->from);
    m->from = torii_xstrdup(m->ops[m->n - 1].rec.id);
    rc = torii_store_apply_meta(st, m->ops, m->n, TORII_STORE_CERTIDX_CURSOR, m->from, eb);
    idx_mig_reset(m);
    return rc;
}

int torii_certdb_idx_rebuild(struct torii_store *st, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct idx_mig *m = torii_xcalloc(1, sizeof(*m));
    int64_t t0 = torii_clock_mono_us();
    size_t total = 0;
    int done = 0;

    if (torii_certdb_idx_complete(st)) {
        goto out;
    }
    TORII_TRY(torii_store_count(st, TORII_STORE_CERTS, &total));
    if (torii_store_meta_get(st, TORII_STORE_CERTIDX_CURSOR, &m->from) != TORII_OK) {
        m->from = NULL; /* from scratch: entries of a stale index go first */
        TORII_TRY(torii_store_clear(st, TORII_STORE_CERTIDX, eb));
    }
    torii_log(total > 0 ? TORII_LOG_NOTICE : TORII_LOG_DEBUG,
              "certdb: building the compact index of %zu certificates (%s; one time)", total,
              m->from != NULL ? "resumed" : "from the start");
    while (!done) {
        TORII_TRY(idx_mig_batch(st, m, &done, eb));
    }
    TORII_TRY(torii_store_meta_put(st, TORII_STORE_CERTIDX_DONE, "1", eb));
    torii_log(total > 0 ? TORII_LOG_NOTICE : TORII_LOG_DEBUG,
              "certdb: compact index built (%zu certificates, %.1f s)", total,
              (double)(torii_clock_mono_us() - t0) / 1e6);
out:
    idx_mig_reset(m);
    free(m->from);
    free(m);
    return rc;
}
