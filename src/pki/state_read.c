/* state_read.c - the readers of the PKI view (pkistate.h serving calls): each takes a
 * snapshot reference under snap_lock and answers from it; any thread, never blocks on I/O. */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/sha.h>

#include "state_int.h"
#include "torii/clock.h"
#include "torii/mem.h"

/* ---- readers ------------------------------------------------------------------------------- */

static struct pki_snap *state_acquire(struct torii_pki_state *st)
{
    struct pki_snap *s;

    (void)pthread_mutex_lock(&st->snap_lock);
    s = st->snap;
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->ref, 1, memory_order_relaxed);
    }
    (void)pthread_mutex_unlock(&st->snap_lock);
    return s;
}

static int snap_ca_id_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct snap_ca *)elem)->id);
}

static const struct snap_ca *snap_ca_by_id(const struct pki_snap *s, const char *id)
{
    if (id == NULL || s->cas->n == 0) {
        return NULL;
    }
    return bsearch(id, s->cas->ca, s->cas->n, sizeof(s->cas->ca[0]), snap_ca_id_cmp);
}

/* The signing CA named by a CertID's issuer hashes. */
static const struct snap_ca *snap_ca_by_hashes(const struct pki_snap *s, const char *alg,
                                               const unsigned char *nh, size_t nh_len,
                                               const unsigned char *kh, size_t kh_len)
{
    int sha1 = strcmp(alg, "SHA1") == 0;
    int sha256 = strcmp(alg, "SHA256") == 0;

    for (size_t i = 0; i < s->cas->n; i++) {
        const struct snap_ca *c = &s->cas->ca[i];
        if (c->signer == NULL) {
            continue;
        }
        if (sha1 && nh_len == SHA_DIGEST_LENGTH && kh_len == SHA_DIGEST_LENGTH
            && memcmp(nh, c->ids.sha1_name, nh_len) == 0
            && memcmp(kh, c->ids.sha1_key, kh_len) == 0) {
            return c;
        }
        if (sha256 && nh_len == SHA256_DIGEST_LENGTH && kh_len == SHA256_DIGEST_LENGTH
            && memcmp(nh, c->ids.sha256_name, nh_len) == 0
            && memcmp(kh, c->ids.sha256_key, kh_len) == 0) {
            return c;
        }
    }
    return NULL;
}
struct ocsp_lookup_ctx {
    const struct pki_snap *s;
    int64_t now_ms;
};

/* The records of one serial issued by one CA, as the serial_fn returns them. */
struct serial_pick {
    const unsigned char *issuer; /* subject hash of the CA asked */
    struct torii_certrec *cr;    /* decode scratch */
    int found;
    struct view_val best;
};

/* The revocation time and reason of a revoked record (its JSON); left 0 when unreadable. */
static void serial_revoked(const struct torii_store_rec *rec, struct view_val *v)
{
    json_error_t jerr;
    json_t *j = rec->json != NULL ? json_loadb(rec->json, rec->json_len, 0, &jerr) : NULL;
    struct torii_pki_revoked r;

    if (json_is_object(j) && torii_pki_revoked_from_entity(j, &r, NULL) == TORII_OK) {
        v->revoked_at_ms = r.revoked_at_ms;
        v->reason = (int)r.reason;
    }
    json_decref(j);
}

/* torii_store_iter_cb over the records of a serial: keep those issued by the CA asked and,
 * of several (a certificate and its copies), a revoked one first (any copy revoked means the
 * certificate is), else the one valid longest. */
static int serial_pick_cb(const struct torii_store_rec *rec, void *arg)
{
    struct serial_pick *p = arg;
    struct view_val v;

    if (rec->aux == NULL || torii_certrec_decode(rec->aux, rec->aux_len, p->cr) != TORII_OK
        || p->cr->issuer_hash.len != STATE_HASH
        || memcmp(p->cr->issuer_hash.ptr, p->issuer, STATE_HASH) != 0) {
        return TORII_OK;
    }
    memset(&v, 0, sizeof(v));
    v.revoked = (p->cr->flags & TORII_CERTREC_REVOKED) != 0;
    v.not_after_ms = p->cr->not_after_ms;
    if (v.revoked) {
        serial_revoked(rec, &v);
    }
    if (!p->found) {
        p->best = v;
        p->found = 1;
    } else if (!p->best.revoked && (v.revoked || v.not_after_ms > p->best.not_after_ms)) {
        p->best = v;
    }
    return TORII_OK;
}

/* Status at request time (RFC 6960 2.2): revoked with the stored time and reason; good while
 * in validity; unknown for serials we never issued and for expired certificates. */
static int state_ocsp_lookup(void *arg, const struct torii_pki_certid *id,
                             struct torii_pki_ocsp_answer *ans, const struct torii_pki__ca **signer)
{
    const struct ocsp_lookup_ctx *ctx = arg;
    const struct snap_ca *ca = snap_ca_by_hashes(ctx->s, id->hash_alg, id->name_hash,
                                                 id->name_hash_len, id->key_hash, id->key_hash_len);
    struct serial_pick p = {0};
    int rc;

    if (ca == NULL) {
        return TORII_OK;
    }
    *signer = &ca->signer->ca;
    if (ctx->s->serial == NULL) {
        return TORII_OK;
    }
    p.issuer = ca->subject_hash;
    p.cr = torii_xmalloc(sizeof(*p.cr));
    rc = ctx->s->serial(ctx->s->serial_arg, id->serial_hex, serial_pick_cb, &p);
    free(p.cr);
    if (rc != TORII_OK || !p.found) {
        return rc;
    }
    if (p.best.revoked) {
        ans->status = TORII_PKI_OCSP_REVOKED;
        ans->revoked_at_ms = p.best.revoked_at_ms;
        ans->reason = (enum torii_pki_reason)p.best.reason;
    } else if (ctx->now_ms <= p.best.not_after_ms) {
        ans->status = TORII_PKI_OCSP_GOOD;
    }
    return TORII_OK;
}

/* The CA of a request's first CertID and whether the request carries a nonce. */
static const struct snap_ca *state_req_ca(const struct pki_snap *s, const unsigned char *req,
                                          size_t req_len, int *has_nonce)
{
    const unsigned char *p = req;
    OCSP_REQUEST *r = d2i_OCSP_REQUEST(NULL, &p, (long)req_len);
    const struct snap_ca *ca = NULL;
    ASN1_OCTET_STRING *nh = NULL;
    ASN1_OCTET_STRING *kh = NULL;
    ASN1_OBJECT *md = NULL;
    OCSP_CERTID *cid;

    *has_nonce = 1;
    if (r == NULL || p != req + req_len || OCSP_request_onereq_count(r) < 1) {
        goto out;
    }
    *has_nonce = OCSP_REQUEST_get_ext_by_NID(r, NID_id_pkix_OCSP_Nonce, -1) >= 0;
    cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, 0));
    if (cid != NULL && OCSP_id_get0_info(&nh, &md, &kh, NULL, cid) == 1) {
        int nid = OBJ_obj2nid(md);
        ca = snap_ca_by_hashes(s, nid == NID_undef ? "" : OBJ_nid2sn(nid),
                               ASN1_STRING_get0_data(nh), (size_t)ASN1_STRING_length(nh),
                               ASN1_STRING_get0_data(kh), (size_t)ASN1_STRING_length(kh));
    }
out:
    OCSP_REQUEST_free(r);
    ERR_clear_error();
    return ca;
}

int torii_pki__snap_ocsp(const struct pki_snap *s, const unsigned char *req, size_t req_len,
                         int64_t now_ms, struct pki_blob **out)
{
    struct ocsp_lookup_ctx ctx = {s, now_ms};
    struct torii_errbuf eb = {{0}};
    const struct snap_ca *ca = NULL;
    unsigned char key[STATE_HASH];
    unsigned char *der = NULL;
    size_t der_len = 0;
    int status = -1;
    int has_nonce = 1;
    int rc;

    if (req != NULL && req_len > 0 && req_len < (1u << 20)) {
        ca = state_req_ca(s, req, req_len, &has_nonce);
    }
    if (s->ocsp_cache_s == 0) {
        ca = NULL; /* caching disabled */
    }
    if (ca != NULL && !has_nonce && ca->cache != NULL) {
        (void)SHA256(req, req_len, key);
        *out = torii_pki__cache_get(ca->cache, key, now_ms);
        if (*out != NULL) {
            return TORII_OK;
        }
    }
    rc = torii_pki__ocsp_respond(req, req_len, state_ocsp_lookup, &ctx, now_ms,
                                 s->ocsp_next_update_s, &der, &der_len, &status, &eb);
    if (rc != TORII_OK) {
        return rc;
    }
    *out = torii_pki__blob_new(der, der_len);
    free(der);
    if (ca != NULL && !has_nonce && ca->cache != NULL && status == 0) {
        torii_pki__cache_put(ca->cache, key, *out, now_ms + s->ocsp_cache_s * 1000);
    }
    return TORII_OK;
}

int torii_pki_state_ocsp(struct torii_pki_state *st, const unsigned char *req, size_t req_len,
                         unsigned char **body, size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    struct pki_blob *b = NULL;
    int rc;

    if (s == NULL) {
        return TORII_ENOTFOUND;
    }
    rc = torii_pki__snap_ocsp(s, req, req_len, torii_clock_now_ms(), &b);
    if (rc == TORII_OK) {
        rc = torii_pki__blob_copy_out(b, body, len);
    }
    torii_pki__blob_unref(b);
    torii_pki__snap_unref(s);
    return rc;
}

int torii_pki_state_jwks(struct torii_pki_state *st, char **body, size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    int rc = TORII_ENOTFOUND;

    if (s != NULL && s->jwks != NULL) {
        rc = torii_pki__blob_copy_out(s->jwks, (unsigned char **)(void *)body, len);
    } else if (s != NULL) {
        *body = torii_xstrdup("{\"keys\":[]}");
        *len = strlen(*body);
        rc = TORII_OK;
    }
    torii_pki__snap_unref(s);
    return rc;
}

struct torii_jwt_keyset *torii_pki_state_jwt_keys(struct torii_pki_state *st)
{
    struct pki_snap *s = state_acquire(st);
    struct torii_jwt_keyset *ks = NULL;

    if (s != NULL && s->jwt_keys != NULL) {
        ks = torii_jwt_keyset_ref(s->jwt_keys);
    }
    torii_pki__snap_unref(s);
    if (ks == NULL) {
        ks = torii_jwt_keyset_new();
        torii_jwt_keyset_seal(ks);
    }
    return ks;
}

/* A copy of the CA id's certificate (crl 0) or CRL (crl 1) in the current snapshot. */
static int state_ca_blob(struct torii_pki_state *st, const char *id, int crl, unsigned char **body,
                         size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct snap_ca *ca = s != NULL ? snap_ca_by_id(s, id) : NULL;
    const struct pki_blob *b = ca == NULL ? NULL : crl ? ca->crl : ca->der;
    int rc = TORII_ENOTFOUND;

    if (b != NULL) {
        rc = torii_pki__blob_copy_out(b, body, len);
    }
    torii_pki__snap_unref(s);
    return rc;
}

int torii_pki_state_ca_der(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    return state_ca_blob(st, id, 0, body, len);
}

int torii_pki_state_crl(struct torii_pki_state *st, const char *id, unsigned char **body,
                        size_t *len)
{
    return state_ca_blob(st, id, 1, body, len);
}

int torii_pki_state_staple(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct staple_leaf *hit = NULL;
    int rc = TORII_ENOTFOUND;

    if (s != NULL && id != NULL && s->staples != NULL) {
        size_t n = strlen(id);
        hit = (const struct staple_leaf *)torii_pki__pmap_get(s->staples,
                                                              torii_hash64(s->seed, id, n), id, n);
    }
    if (hit != NULL) {
        rc = torii_pki__blob_copy_out(hit->der, body, len);
    }
    torii_pki__snap_unref(s);
    return rc;
}

int torii_pki_state_staple_cb(void *st, const char *id, unsigned char **body, size_t *len)
{
    return torii_pki_state_staple(st, id, body, len);
}

void torii_pki_state_stat_get(struct torii_pki_state *st, struct torii_pki_state_stat *out)
{
    struct pki_snap *s = state_acquire(st);

    memset(out, 0, sizeof(*out));
    if (s != NULL) {
        out->certs = s->n_certs;
        out->cas = s->cas->n;
        for (size_t i = 0; i < s->cas->n; i++) {
            out->signers += s->cas->ca[i].signer != NULL;
        }
        out->staples = s->n_staples;
    }
    (void)pthread_mutex_lock(&st->snap_lock);
    out->publishes = st->publishes;
    (void)pthread_mutex_unlock(&st->snap_lock);
    torii_pki__snap_unref(s);
}
