/* state.c - the served PKI view (pkistate.h).
 *
 * Writer side (wlock): one compact entry per certificate id, in a chained hash table. The
 * TLS record gives flags, notAfter, issuer-name hash and serial without parsing JSON; the
 * JSON is parsed only for CAs (signing material), revoked entities (time and reason) and
 * exposed ones (JWKS). Each CA entry also carries its current CRL, its CRL number, a
 * generation bumped by any change of a certificate it issued, and the OCSP response cache of
 * that generation.
 * Reader side: an immutable snapshot (JWKS bytes, CAs, a sorted serial view, staples),
 * reference counted; publish swaps the pointer under snap_lock, which readers hold only to
 * load the pointer and take a reference. Blobs (DER, JSON text) are shared by reference
 * between snapshots, so a publish copies pointers, not bytes.
 * CRL numbers (RFC 5280 5.2.3) are max(previous + 1, now in ms): monotonic across restarts
 * even when the persisted value was lost, and persisted by the refresher thread (a watcher
 * must not write the store). Staples are signed by the refresher, never on a handshake. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkistate.h"

#define STATE_BUCKETS        1024
#define STATE_CACHE_SLOTS    64
#define STATE_STAPLE_BATCH   32
#define STATE_REFRESH_MAX_MS 30000
#define STATE_HASH           32 /* SHA-256 */
#define STATE_META_PREFIX    "pki.crl_number."

/* ---- shared blobs ---------------------------------------------------------------------- */

struct pki_blob {
    atomic_long ref;
    size_t len;
    unsigned char data[];
};

static struct pki_blob *blob_new(const void *p, size_t len)
{
    struct pki_blob *b = torii_xmalloc(sizeof(*b) + len + 1);

    atomic_init(&b->ref, 1);
    b->len = len;
    if (len > 0) {
        memcpy(b->data, p, len);
    }
    b->data[len] = 0;
    return b;
}

static struct pki_blob *blob_ref(struct pki_blob *b)
{
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->ref, 1, memory_order_relaxed);
    }
    return b;
}

static void blob_unref(struct pki_blob *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

static int blob_copy_out(const struct pki_blob *b, unsigned char **body, size_t *len)
{
    unsigned char *p = torii_xmalloc(b->len + 1);

    memcpy(p, b->data, b->len);
    p[b->len] = 0;
    *body = p;
    *len = b->len;
    return TORII_OK;
}

/* ---- OCSP response cache of one CA generation (any thread, internally locked) ------------ */

struct pki_cache {
    atomic_long ref;
    pthread_mutex_t lock;
    unsigned next;
    struct {
        unsigned char key[STATE_HASH];
        struct pki_blob *resp;
        int64_t until_ms;
    } slot[STATE_CACHE_SLOTS];
};

static struct pki_cache *cache_new(void)
{
    struct pki_cache *c = torii_xcalloc(1, sizeof(*c));

    atomic_init(&c->ref, 1);
    TORII_ASSERT(pthread_mutex_init(&c->lock, NULL) == 0);
    return c;
}

static struct pki_cache *cache_ref(struct pki_cache *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->ref, 1, memory_order_relaxed);
    }
    return c;
}

static void cache_unref(struct pki_cache *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        blob_unref(c->slot[i].resp);
    }
    (void)pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct pki_blob *cache_get(struct pki_cache *c, const unsigned char *key, int64_t now_ms)
{
    struct pki_blob *b = NULL;

    (void)pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        if (c->slot[i].resp != NULL && c->slot[i].until_ms > now_ms
            && memcmp(c->slot[i].key, key, STATE_HASH) == 0) {
            b = blob_ref(c->slot[i].resp);
            break;
        }
    }
    (void)pthread_mutex_unlock(&c->lock);
    return b;
}

static void cache_put(struct pki_cache *c, const unsigned char *key, struct pki_blob *resp,
                      int64_t until_ms)
{
    struct pki_blob *old;
    unsigned i;

    (void)pthread_mutex_lock(&c->lock);
    i = c->next++ % STATE_CACHE_SLOTS;
    old = c->slot[i].resp;
    memcpy(c->slot[i].key, key, STATE_HASH);
    c->slot[i].resp = blob_ref(resp);
    c->slot[i].until_ms = until_ms;
    (void)pthread_mutex_unlock(&c->lock);
    blob_unref(old);
}

/* ---- snapshot ---------------------------------------------------------------------------- */

/* The CertID hashes of a CA (RFC 6960 4.1.1) for the two digests clients use. */
struct pki_certid_hashes {
    unsigned char sha1_name[SHA_DIGEST_LENGTH];
    unsigned char sha1_key[SHA_DIGEST_LENGTH];
    unsigned char sha256_name[SHA256_DIGEST_LENGTH];
    unsigned char sha256_key[SHA256_DIGEST_LENGTH];
};

struct snap_ca {
    char *id;
    json_t *entity; /* signers only (ref); NULL for CAs without a usable key */
    struct pki_blob *der;
    struct pki_blob *crl;
    struct pki_cache *cache;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
};

struct snap_cert {
    unsigned char issuer_hash[STATE_HASH];
    char serial_hex[TORII_PKI_SERIAL_HEX_MAX];
    int revoked;
    int64_t revoked_at_ms;
    int reason;
    int64_t not_after_ms;
};

struct snap_staple {
    char *id;
    struct pki_blob *der;
};

struct pki_snap {
    atomic_long ref;
    struct pki_blob *jwks;
    struct snap_ca *cas;
    size_t n_cas;
    struct snap_cert *certs; /* sorted by issuer hash, then serial */
    size_t n_certs;
    struct snap_staple *staples; /* sorted by id */
    size_t n_staples;
    int64_t ocsp_next_update_s;
    int64_t ocsp_cache_s;
};

static void snap_unref(struct pki_snap *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    blob_unref(s->jwks);
    for (size_t i = 0; i < s->n_cas; i++) {
        free(s->cas[i].id);
        json_decref(s->cas[i].entity);
        blob_unref(s->cas[i].der);
        blob_unref(s->cas[i].crl);
        cache_unref(s->cas[i].cache);
    }
    free(s->cas);
    free(s->certs);
    for (size_t i = 0; i < s->n_staples; i++) {
        free(s->staples[i].id);
        blob_unref(s->staples[i].der);
    }
    free(s->staples);
    free(s);
}

/* ---- writer-side entries ------------------------------------------------------------------ */

struct pki_ent {
    struct pki_ent *next; /* hash chain */
    char *id;
    uint32_t flags; /* TORII_CERTREC_* */
    int64_t not_after_ms;
    int has_issuer;
    unsigned char issuer_hash[STATE_HASH];
    char serial_hex[TORII_PKI_SERIAL_HEX_MAX];
    int64_t revoked_at_ms;
    int reason;
    json_t *entity; /* CAs and exposed entities only */
    int exposed;
    /* CA part (is_ca: the entity says ca=true) */
    int is_ca;
    int signer; /* the CA loads with its key */
    X509 *ca_cert;
    struct pki_blob *ca_der;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
    int crl_dirty;
    int crl_persist;
    int crl_number_loaded;
    uint64_t crl_number;
    int64_t crl_refresh_ms;
    struct pki_blob *crl;
    struct pki_cache *cache;
    /* staple (served certificates issued by a signer) */
    struct pki_blob *staple;
    int64_t staple_refresh_ms;
};

struct torii_pki_state {
    struct torii_pki_state_opts o;
    pthread_mutex_t wlock; /* writer side: entries, rebuilds, publish */
    pthread_cond_t wake;   /* refresher */
    struct pki_ent *buckets[STATE_BUCKETS];
    size_t n_ents;
    int jwks_dirty;
    struct pki_blob *jwks;     /* writer's current document */
    pthread_mutex_t snap_lock; /* readers: pointer load + reference only */
    struct pki_snap *snap;
    uint64_t publishes;
    pthread_t thread;
    int thread_started;
    int stop;
};

static unsigned state_hash_id(const char *id)
{
    unsigned h = 2166136261u; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return h % STATE_BUCKETS;
}

static struct pki_ent **state_find(struct torii_pki_state *st, const char *id)
{
    struct pki_ent **pp = &st->buckets[state_hash_id(id)];

    while (*pp != NULL && strcmp((*pp)->id, id) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void ent_free(struct pki_ent *e)
{
    if (e == NULL) {
        return;
    }
    free(e->id);
    json_decref(e->entity);
    X509_free(e->ca_cert);
    blob_unref(e->ca_der);
    blob_unref(e->crl);
    cache_unref(e->cache);
    blob_unref(e->staple);
    free(e);
}

/* Bump the generation of every CA whose subject is this issuer: its CRL is rebuilt and its
 * OCSP cache dropped (a new cache object; old snapshots keep theirs until released). */
static void state_touch_issuer(struct torii_pki_state *st, const unsigned char *issuer_hash)
{
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *c = st->buckets[b]; c != NULL; c = c->next) {
            if (c->is_ca && memcmp(c->subject_hash, issuer_hash, STATE_HASH) == 0) {
                c->crl_dirty = 1;
                cache_unref(c->cache);
                c->cache = cache_new();
            }
        }
    }
}

static void state_name_hash(const X509_NAME *name, unsigned char *out)
{
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(name, &der);

    memset(out, 0, STATE_HASH);
    if (len > 0) {
        (void)SHA256(der, (size_t)len, out);
    }
    OPENSSL_free(der);
}

static void state_certid_hashes(X509 *x, struct pki_certid_hashes *h)
{
    unsigned char *der = NULL;
    int len = i2d_X509_NAME(X509_get_subject_name(x), &der);
    const ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(x);

    memset(h, 0, sizeof(*h));
    if (len > 0) {
        (void)SHA1(der, (size_t)len, h->sha1_name);
        (void)SHA256(der, (size_t)len, h->sha256_name);
    }
    OPENSSL_free(der);
    if (key != NULL) {
        (void)SHA1(key->data, (size_t)key->length, h->sha1_key);
        (void)SHA256(key->data, (size_t)key->length, h->sha256_key);
    }
}

/* Serial DER INTEGER (from the TLS record) -> the text torii_pki_cert_serial_hex gives. */
static int state_serial_hex(const struct torii_slice *der, char *out, size_t len)
{
    const unsigned char *p = (const unsigned char *)der->ptr;
    ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, (long)der->len);
    int rc = ai != NULL ? torii_pki__serial_hex(ai, out, len) : TORII_EINVAL;

    ASN1_INTEGER_free(ai);
    return rc;
}

/* CA part of an entry from its entity and leaf DER. */
static void ent_load_ca(struct pki_ent *e, const struct torii_slice *leaf)
{
    struct torii_pki__ca ca;
    const unsigned char *p = (const unsigned char *)leaf->ptr;

    e->ca_cert = d2i_X509(NULL, &p, (long)leaf->len);
    if (e->ca_cert == NULL) {
        ERR_clear_error();
        e->is_ca = 0;
        return;
    }
    e->ca_der = blob_new(leaf->ptr, leaf->len);
    state_name_hash(X509_get_subject_name(e->ca_cert), e->subject_hash);
    state_certid_hashes(e->ca_cert, &e->ids);
    if (torii_pki__ca_load(e->entity, &ca, NULL) == TORII_OK) {
        e->signer = 1;
        torii_pki__ca_clear(&ca);
    }
    ERR_clear_error();
    e->cache = cache_new();
    e->crl_dirty = 1;
}

static int state_contains(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; i + n <= len; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A new entry from a store record (NULL when the record does not decode). */
static struct pki_ent *ent_build(const struct torii_store_rec *rec)
{
    struct torii_certrec *cr = NULL;
    struct pki_ent *e = NULL;
    int parse_json;

    if (rec->aux == NULL || rec->id_len == 0) {
        return NULL;
    }
    cr = torii_xcalloc(1, sizeof(*cr));
    if (torii_certrec_decode(rec->aux, rec->aux_len, cr) != TORII_OK || cr->n_chain == 0) {
        free(cr);
        return NULL;
    }
    e = torii_xcalloc(1, sizeof(*e));
    e->id = torii_xstrndup(rec->id, rec->id_len);
    e->flags = cr->flags;
    e->not_after_ms = cr->not_after_ms;
    if (cr->issuer_hash.len == STATE_HASH && cr->serial.len > 0
        && state_serial_hex(&cr->serial, e->serial_hex, sizeof(e->serial_hex)) == TORII_OK) {
        memcpy(e->issuer_hash, cr->issuer_hash.ptr, STATE_HASH);
        e->has_issuer = 1;
    }
    /* The JSON only when it matters; entities are stored compact, so "exposed":true is a
     * cheap pre-filter (a false positive only costs a parse). */
    parse_json =
        (cr->flags & (TORII_CERTREC_CA | TORII_CERTREC_REVOKED)) != 0
        || (rec->json != NULL && state_contains(rec->json, rec->json_len, "\"exposed\":true"));
    if (parse_json && rec->json != NULL) {
        json_error_t jerr;
        json_t *j = json_loadb(rec->json, rec->json_len, 0, &jerr);

        if (json_is_object(j)) {
            struct torii_pki_revoked r;

            e->exposed = json_is_true(json_object_get(j, "exposed"));
            e->is_ca =
                json_is_true(json_object_get(j, "ca")) && (cr->flags & TORII_CERTREC_CA) != 0;
            if ((cr->flags & TORII_CERTREC_REVOKED) != 0
                && torii_pki_revoked_from_entity(j, &r, NULL) == TORII_OK) {
                e->revoked_at_ms = r.revoked_at_ms;
                e->reason = (int)r.reason;
            }
            if (e->exposed || e->is_ca) {
                e->entity = json_incref(j);
            }
        }
        json_decref(j);
    }
    if (e->is_ca) {
        ent_load_ca(e, &cr->chain[0]);
    }
    free(cr);
    return e;
}

/* Replace (ent != NULL) or remove entry id. Caller holds wlock. */
static void state_apply(struct torii_pki_state *st, const char *id, struct pki_ent *ent)
{
    struct pki_ent **pp = state_find(st, id);
    struct pki_ent *old = *pp;

    if (old != NULL) {
        *pp = old->next;
        st->n_ents--;
        if (old->has_issuer) {
            state_touch_issuer(st, old->issuer_hash);
        }
        if (old->exposed) {
            st->jwks_dirty = 1;
        }
        /* A replaced CA keeps its CRL number (never goes back) and its staple-free cache. */
        if (ent != NULL && ent->is_ca && old->is_ca) {
            ent->crl_number = old->crl_number;
            ent->crl_number_loaded = old->crl_number_loaded;
        }
    }
    if (ent != NULL) {
        ent->next = st->buckets[state_hash_id(ent->id)];
        st->buckets[state_hash_id(ent->id)] = ent;
        st->n_ents++;
        if (ent->exposed) {
            st->jwks_dirty = 1;
        }
        if (ent->has_issuer) {
            state_touch_issuer(st, ent->issuer_hash);
        }
    }
    ent_free(old);
}

/* ---- rebuilds (wlock held) ---------------------------------------------------------------- */

static void state_load_crl_number(struct torii_pki_state *st, struct pki_ent *ca)
{
    char key[sizeof(STATE_META_PREFIX) + 512];
    char *val = NULL;

    ca->crl_number_loaded = 1;
    if (st->o.meta_get == NULL) {
        return;
    }
    (void)snprintf(key, sizeof(key), STATE_META_PREFIX "%s", ca->id);
    if (st->o.meta_get(st->o.meta_arg, key, &val) == TORII_OK && val != NULL) {
        unsigned long long v = strtoull(val, NULL, 10);
        if (v > ca->crl_number) {
            ca->crl_number = (uint64_t)v;
        }
    }
    free(val);
}

static void state_build_crl(struct torii_pki_state *st, struct pki_ent *ca, int64_t now_ms)
{
    struct torii_pki_revoked *rv = NULL;
    size_t n = 0;
    size_t cap = 0;
    unsigned char *der = NULL;
    size_t der_len = 0;
    struct torii_errbuf eb = {{0}};
    uint64_t number;

    if (!ca->crl_number_loaded) {
        state_load_crl_number(st, ca);
    }
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *e = st->buckets[b]; e != NULL; e = e->next) {
            if ((e->flags & TORII_CERTREC_REVOKED) == 0 || !e->has_issuer || e == ca
                || memcmp(e->issuer_hash, ca->subject_hash, STATE_HASH) != 0) {
                continue;
            }
            if (n == cap) {
                cap = cap == 0 ? 16 : cap * 2;
                rv = torii_xrealloc(rv, cap * sizeof(*rv));
            }
            memset(&rv[n], 0, sizeof(rv[n]));
            memcpy(rv[n].serial_hex, e->serial_hex, sizeof(rv[n].serial_hex));
            rv[n].revoked_at_ms = e->revoked_at_ms;
            rv[n].reason = (enum torii_pki_reason)e->reason;
            n++;
        }
    }
    number = ca->crl_number + 1;
    if ((uint64_t)now_ms > number) {
        number = (uint64_t)now_ms;
    }
    if (torii_pki_crl_build(ca->entity, rv, n, number, now_ms, st->o.crl_next_update_s, &der,
                            &der_len, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "pki: CRL not built: %s (ca=%s)", eb.msg, ca->id);
    } else {
        blob_unref(ca->crl);
        ca->crl = blob_new(der, der_len);
        ca->crl_number = number;
        ca->crl_persist = 1;
        ca->crl_refresh_ms = now_ms + st->o.crl_next_update_s * 1000 / 2;
    }
    ca->crl_dirty = 0;
    free(der);
    free(rv);
}

static void state_build_jwks(struct torii_pki_state *st)
{
    json_t *arr = json_array();
    json_t *doc = NULL;
    char *text = NULL;

    for (size_t b = 0; b < STATE_BUCKETS && arr != NULL; b++) {
        for (struct pki_ent *e = st->buckets[b]; e != NULL; e = e->next) {
            if (e->exposed && e->entity != NULL) {
                (void)json_array_append(arr, e->entity);
            }
        }
    }
    doc = torii_pki_jwks_build(arr);
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text != NULL) {
        blob_unref(st->jwks);
        st->jwks = blob_new(text, strlen(text));
        st->jwks_dirty = 0;
    } else {
        torii_log(TORII_LOG_ERR, "pki: JWKS not rebuilt: out of memory");
    }
    free(text);
    json_decref(doc);
    json_decref(arr);
}

static struct pki_ent *state_signer_for(struct torii_pki_state *st, const unsigned char *issuer)
{
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *c = st->buckets[b]; c != NULL; c = c->next) {
            if (c->signer && memcmp(c->subject_hash, issuer, STATE_HASH) == 0) {
                return c;
            }
        }
    }
    return NULL;
}

static int snap_cert_cmp(const void *a, const void *b)
{
    const struct snap_cert *x = a;
    const struct snap_cert *y = b;
    int c = memcmp(x->issuer_hash, y->issuer_hash, STATE_HASH);

    return c != 0 ? c : strcmp(x->serial_hex, y->serial_hex);
}

static int snap_staple_cmp(const void *a, const void *b)
{
    return strcmp(((const struct snap_staple *)a)->id, ((const struct snap_staple *)b)->id);
}

/* 1 when e is a certificate the TLS listener may serve. */
static int ent_served(const struct pki_ent *e, int64_t now_ms)
{
    const uint32_t need = TORII_CERTREC_HAS_KEY | TORII_CERTREC_KEY_MATCHES;
    const uint32_t deny = TORII_CERTREC_REVOKED | TORII_CERTREC_CA | TORII_CERTREC_CLIENT
                          | TORII_CERTREC_KEYPAIR | TORII_CERTREC_NOT_SERVER;

    return (e->flags & need) == need && (e->flags & deny) == 0 && now_ms < e->not_after_ms;
}

static void state_publish_locked(struct torii_pki_state *st)
{
    struct pki_snap *s = torii_xcalloc(1, sizeof(*s));
    struct pki_snap *old;
    size_t cap_ca = 0;
    size_t cap_cert = 0;
    size_t cap_st = 0;
    int64_t now_ms = torii_clock_now_ms();

    if (st->jwks_dirty || st->jwks == NULL) {
        state_build_jwks(st);
    }
    atomic_init(&s->ref, 1);
    s->jwks = blob_ref(st->jwks);
    s->ocsp_next_update_s = st->o.ocsp_next_update_s;
    s->ocsp_cache_s = st->o.ocsp_cache_s;
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *e = st->buckets[b]; e != NULL; e = e->next) {
            if (e->is_ca && e->signer && (e->crl_dirty || e->crl == NULL)) {
                state_build_crl(st, e, now_ms);
            }
            if (e->is_ca) {
                struct snap_ca *c;
                if (s->n_cas == cap_ca) {
                    cap_ca = cap_ca == 0 ? 8 : cap_ca * 2;
                    s->cas = torii_xrealloc(s->cas, cap_ca * sizeof(*s->cas));
                }
                c = &s->cas[s->n_cas++];
                memset(c, 0, sizeof(*c));
                c->id = torii_xstrdup(e->id);
                c->entity = e->signer ? json_incref(e->entity) : NULL;
                c->der = blob_ref(e->ca_der);
                c->crl = blob_ref(e->crl);
                c->cache = cache_ref(e->cache);
                memcpy(c->subject_hash, e->subject_hash, STATE_HASH);
                c->ids = e->ids;
            }
            if (e->staple != NULL) {
                if (s->n_staples == cap_st) {
                    cap_st = cap_st == 0 ? 16 : cap_st * 2;
                    s->staples = torii_xrealloc(s->staples, cap_st * sizeof(*s->staples));
                }
                s->staples[s->n_staples].id = torii_xstrdup(e->id);
                s->staples[s->n_staples].der = blob_ref(e->staple);
                s->n_staples++;
            }
        }
    }
    /* The serial view: only certificates whose issuer is one of our signing CAs. */
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *e = st->buckets[b]; e != NULL; e = e->next) {
            struct snap_cert *c;
            int ours = 0;
            if (!e->has_issuer) {
                continue;
            }
            for (size_t i = 0; i < s->n_cas && !ours; i++) {
                ours = s->cas[i].entity != NULL
                       && memcmp(s->cas[i].subject_hash, e->issuer_hash, STATE_HASH) == 0;
            }
            if (!ours) {
                continue;
            }
            if (s->n_certs == cap_cert) {
                cap_cert = cap_cert == 0 ? 64 : cap_cert * 2;
                s->certs = torii_xrealloc(s->certs, cap_cert * sizeof(*s->certs));
            }
            c = &s->certs[s->n_certs++];
            memset(c, 0, sizeof(*c));
            memcpy(c->issuer_hash, e->issuer_hash, STATE_HASH);
            memcpy(c->serial_hex, e->serial_hex, sizeof(c->serial_hex));
            c->revoked = (e->flags & TORII_CERTREC_REVOKED) != 0;
            c->revoked_at_ms = e->revoked_at_ms;
            c->reason = e->reason;
            c->not_after_ms = e->not_after_ms;
        }
    }
    if (s->n_certs > 1) {
        qsort(s->certs, s->n_certs, sizeof(*s->certs), snap_cert_cmp);
    }
    if (s->n_staples > 1) {
        qsort(s->staples, s->n_staples, sizeof(*s->staples), snap_staple_cmp);
    }
    (void)pthread_mutex_lock(&st->snap_lock);
    old = st->snap;
    st->snap = s;
    st->publishes++;
    (void)pthread_mutex_unlock(&st->snap_lock);
    snap_unref(old);
    (void)pthread_cond_signal(&st->wake);
}

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

static const struct snap_ca *snap_ca_by_id(const struct pki_snap *s, const char *id)
{
    for (size_t i = 0; i < s->n_cas; i++) {
        if (strcmp(s->cas[i].id, id) == 0) {
            return &s->cas[i];
        }
    }
    return NULL;
}

/* The signing CA named by a CertID's issuer hashes. */
static const struct snap_ca *snap_ca_by_hashes(const struct pki_snap *s, const char *alg,
                                               const unsigned char *nh, size_t nh_len,
                                               const unsigned char *kh, size_t kh_len)
{
    int sha1 = strcmp(alg, "SHA1") == 0;
    int sha256 = strcmp(alg, "SHA256") == 0;

    for (size_t i = 0; i < s->n_cas; i++) {
        const struct snap_ca *c = &s->cas[i];
        if (c->entity == NULL) {
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

static const struct snap_cert *snap_cert_find(const struct pki_snap *s, const unsigned char *issuer,
                                              const char *serial_hex)
{
    struct snap_cert key;

    memset(&key, 0, sizeof(key));
    memcpy(key.issuer_hash, issuer, STATE_HASH);
    (void)snprintf(key.serial_hex, sizeof(key.serial_hex), "%s", serial_hex);
    return bsearch(&key, s->certs, s->n_certs, sizeof(*s->certs), snap_cert_cmp);
}

struct ocsp_lookup_ctx {
    const struct pki_snap *s;
    int64_t now_ms;
};

/* Status at request time (RFC 6960 2.2): revoked with the stored time and reason; good while
 * in validity; unknown for serials we never issued and for expired certificates. */
static int state_ocsp_lookup(void *arg, const struct torii_pki_certid *id,
                             struct torii_pki_ocsp_answer *ans)
{
    const struct ocsp_lookup_ctx *ctx = arg;
    const struct snap_ca *ca = snap_ca_by_hashes(ctx->s, id->hash_alg, id->name_hash,
                                                 id->name_hash_len, id->key_hash, id->key_hash_len);
    const struct snap_cert *c;

    if (ca == NULL) {
        return TORII_OK;
    }
    ans->issuer_owned = json_incref(ca->entity);
    c = snap_cert_find(ctx->s, ca->subject_hash, id->serial_hex);
    if (c == NULL) {
        return TORII_OK;
    }
    if (c->revoked) {
        ans->status = TORII_PKI_OCSP_REVOKED;
        ans->revoked_at_ms = c->revoked_at_ms;
        ans->reason = (enum torii_pki_reason)c->reason;
    } else if (ctx->now_ms <= c->not_after_ms) {
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

static int snap_ocsp(const struct pki_snap *s, const unsigned char *req, size_t req_len,
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
        *out = cache_get(ca->cache, key, now_ms);
        if (*out != NULL) {
            return TORII_OK;
        }
    }
    rc = torii_pki_ocsp_respond(req, req_len, state_ocsp_lookup, &ctx, now_ms,
                                s->ocsp_next_update_s, &der, &der_len, &status, &eb);
    if (rc != TORII_OK) {
        return rc;
    }
    *out = blob_new(der, der_len);
    free(der);
    if (ca != NULL && !has_nonce && ca->cache != NULL && status == 0) {
        cache_put(ca->cache, key, *out, now_ms + s->ocsp_cache_s * 1000);
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
    rc = snap_ocsp(s, req, req_len, torii_clock_now_ms(), &b);
    if (rc == TORII_OK) {
        rc = blob_copy_out(b, body, len);
    }
    blob_unref(b);
    snap_unref(s);
    return rc;
}

int torii_pki_state_jwks(struct torii_pki_state *st, char **body, size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    int rc = TORII_ENOTFOUND;

    if (s != NULL && s->jwks != NULL) {
        rc = blob_copy_out(s->jwks, (unsigned char **)(void *)body, len);
    } else if (s != NULL) {
        *body = torii_xstrdup("{\"keys\":[]}");
        *len = strlen(*body);
        rc = TORII_OK;
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_ca_der(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct snap_ca *ca = s != NULL ? snap_ca_by_id(s, id) : NULL;
    int rc = TORII_ENOTFOUND;

    if (ca != NULL && ca->der != NULL) {
        rc = blob_copy_out(ca->der, body, len);
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_crl(struct torii_pki_state *st, const char *id, unsigned char **body,
                        size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    const struct snap_ca *ca = s != NULL ? snap_ca_by_id(s, id) : NULL;
    int rc = TORII_ENOTFOUND;

    if (ca != NULL && ca->crl != NULL) {
        rc = blob_copy_out(ca->crl, body, len);
    }
    snap_unref(s);
    return rc;
}

int torii_pki_state_staple(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len)
{
    struct pki_snap *s = state_acquire(st);
    struct snap_staple key = {(char *)(uintptr_t)id, NULL};
    const struct snap_staple *hit = NULL;
    int rc = TORII_ENOTFOUND;

    if (s != NULL && id != NULL && s->n_staples > 0) {
        hit = bsearch(&key, s->staples, s->n_staples, sizeof(*s->staples), snap_staple_cmp);
    }
    if (hit != NULL) {
        rc = blob_copy_out(hit->der, body, len);
    }
    snap_unref(s);
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
        out->cas = s->n_cas;
        for (size_t i = 0; i < s->n_cas; i++) {
            out->signers += s->cas[i].entity != NULL;
        }
        out->staples = s->n_staples;
    }
    (void)pthread_mutex_lock(&st->snap_lock);
    out->publishes = st->publishes;
    (void)pthread_mutex_unlock(&st->snap_lock);
    snap_unref(s);
}

/* ---- feed ---------------------------------------------------------------------------------- */

static void state_feed(struct torii_pki_state *st, enum torii_store_op_kind kind,
                       const struct torii_store_rec *rec)
{
    char id[TORII_STORE_ID_MAX + 1];
    struct pki_ent *e = NULL;

    if (rec->id_len == 0 || rec->id_len > TORII_STORE_ID_MAX) {
        return;
    }
    memcpy(id, rec->id, rec->id_len);
    id[rec->id_len] = '\0';
    if (kind != TORII_STORE_DELETE) {
        e = ent_build(rec);
        if (e == NULL) {
            char esc[128];
            torii_log(TORII_LOG_WARN, "pki: certificate left out of the PKI view (id=%s)",
                      torii_log_escape(id, rec->id_len, esc, sizeof(esc)));
        }
    }
    state_apply(st, id, e);
}

void torii_pki_state_watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                              const struct torii_store_rec *rec, void *arg)
{
    struct torii_pki_state *st = arg;

    if (b != TORII_STORE_CERTS) {
        return;
    }
    (void)pthread_mutex_lock(&st->wlock);
    state_feed(st, kind, rec);
    state_publish_locked(st);
    (void)pthread_mutex_unlock(&st->wlock);
}

int torii_pki_state_load_cb(const struct torii_store_rec *rec, void *arg)
{
    struct torii_pki_state *st = arg;

    (void)pthread_mutex_lock(&st->wlock);
    state_feed(st, TORII_STORE_PUT, rec);
    (void)pthread_mutex_unlock(&st->wlock);
    return TORII_OK;
}

void torii_pki_state_publish(struct torii_pki_state *st)
{
    (void)pthread_mutex_lock(&st->wlock);
    state_publish_locked(st);
    (void)pthread_mutex_unlock(&st->wlock);
}

/* ---- refresher ----------------------------------------------------------------------------- */

/* A DER OCSPRequest for e's serial, issued by ca (SHA-1 CertID, what clients send). */
static int state_staple_request(const struct pki_ent *ca, const struct pki_ent *e,
                                unsigned char **der, size_t *len)
{
    int rc = TORII_ETLS;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *cid = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    unsigned char *buf = NULL;
    int n;

    if (req == NULL || BN_hex2bn(&bn, e->serial_hex) == 0
        || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL) {
        goto out;
    }
    cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca->ca_cert),
                           X509_get0_pubkey_bitstr(ca->ca_cert), serial);
    if (cid == NULL || OCSP_request_add0_id(req, cid) == NULL) {
        OCSP_CERTID_free(cid);
        goto out;
    }
    n = i2d_OCSP_REQUEST(req, &buf);
    if (n > 0) {
        *der = torii_xmalloc((size_t)n);
        memcpy(*der, buf, (size_t)n);
        *len = (size_t)n;
        rc = TORII_OK;
    }
out:
    OPENSSL_free(buf);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return rc;
}

/* Sign up to a batch of due staples and re-sign due CRLs. Returns 1 when more work is left.
 * wlock held. */
static int state_refresh_locked(struct torii_pki_state *st, int64_t now_ms)
{
    struct pki_snap *s = NULL;
    int changed = 0;
    int signed_n = 0;
    int more = 0;

    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        for (struct pki_ent *c = st->buckets[b]; c != NULL; c = c->next) {
            if (c->is_ca && c->signer && c->crl != NULL && now_ms >= c->crl_refresh_ms) {
                c->crl_dirty = 1;
                changed = 1;
            }
        }
    }
    if (changed) {
        state_publish_locked(st);
        changed = 0;
    }
    s = st->snap;
    for (size_t b = 0; b < STATE_BUCKETS && s != NULL; b++) {
        for (struct pki_ent *e = st->buckets[b]; e != NULL; e = e->next) {
            struct pki_ent *ca;
            unsigned char *req = NULL;
            size_t req_len = 0;
            struct pki_blob *resp = NULL;

            if (!e->has_issuer || !ent_served(e, now_ms)
                || (e->staple != NULL && now_ms < e->staple_refresh_ms)) {
                continue;
            }
            ca = state_signer_for(st, e->issuer_hash);
            if (ca == NULL || ca == e) {
                continue;
            }
            if (signed_n >= STATE_STAPLE_BATCH) {
                more = 1;
                break;
            }
            signed_n++;
            if (state_staple_request(ca, e, &req, &req_len) == TORII_OK
                && snap_ocsp(s, req, req_len, now_ms, &resp) == TORII_OK) {
                blob_unref(e->staple);
                e->staple = resp;
                e->staple_refresh_ms = now_ms + st->o.ocsp_next_update_s * 1000 / 2;
                changed = 1;
            } else {
                /* Try again on a later pass rather than spinning. */
                e->staple_refresh_ms = now_ms + 60000;
            }
            free(req);
        }
    }
    if (changed) {
        state_publish_locked(st);
    }
    return more;
}

void torii_pki_state_refresh(struct torii_pki_state *st, int64_t now_ms)
{
    (void)pthread_mutex_lock(&st->wlock);
    while (state_refresh_locked(st, now_ms)) {
    }
    (void)pthread_mutex_unlock(&st->wlock);
}

struct persist_item {
    char key[sizeof(STATE_META_PREFIX) + TORII_STORE_ID_MAX];
    char val[24];
};

static void *state_thread(void *arg)
{
    struct torii_pki_state *st = arg;

    (void)pthread_mutex_lock(&st->wlock);
    while (!st->stop) {
        struct persist_item *items = NULL;
        size_t n = 0;
        struct timespec ts;
        int more = state_refresh_locked(st, torii_clock_now_ms());

        for (size_t b = 0; b < STATE_BUCKETS; b++) {
            for (struct pki_ent *c = st->buckets[b]; c != NULL; c = c->next) {
                if (!c->crl_persist) {
                    continue;
                }
                c->crl_persist = 0;
                items = torii_xrealloc(items, (n + 1) * sizeof(*items));
                (void)snprintf(items[n].key, sizeof(items[n].key), STATE_META_PREFIX "%s", c->id);
                (void)snprintf(items[n].val, sizeof(items[n].val), "%llu",
                               (unsigned long long)c->crl_number);
                n++;
            }
        }
        if (n > 0 && st->o.meta_put != NULL) {
            /* Outside wlock: a store write must never wait for a watcher holding wlock. */
            (void)pthread_mutex_unlock(&st->wlock);
            for (size_t i = 0; i < n; i++) {
                if (st->o.meta_put(st->o.meta_arg, items[i].key, items[i].val) != TORII_OK) {
                    torii_log(TORII_LOG_WARN, "pki: CRL number not persisted (key=%s)",
                              items[i].key);
                }
            }
            (void)pthread_mutex_lock(&st->wlock);
        }
        free(items);
        if (more || st->stop) {
            continue;
        }
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += STATE_REFRESH_MAX_MS / 1000;
        (void)pthread_cond_timedwait(&st->wake, &st->wlock, &ts);
    }
    (void)pthread_mutex_unlock(&st->wlock);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

int torii_pki_state_new(const struct torii_pki_state_opts *o, struct torii_pki_state **out)
{
    struct torii_pki_state *st;
    pthread_condattr_t ca;

    if (o == NULL || o->ocsp_next_update_s < 0 || o->ocsp_cache_s < 0 || o->crl_next_update_s < 0) {
        return TORII_EINVAL;
    }
    st = torii_xcalloc(1, sizeof(*st));
    st->o = *o;
    if (st->o.ocsp_next_update_s == 0) {
        st->o.ocsp_next_update_s = 3600;
    }
    if (st->o.crl_next_update_s == 0) {
        st->o.crl_next_update_s = 86400;
    }
    TORII_ASSERT(pthread_mutex_init(&st->wlock, NULL) == 0);
    TORII_ASSERT(pthread_mutex_init(&st->snap_lock, NULL) == 0);
    TORII_ASSERT(pthread_condattr_init(&ca) == 0);
    TORII_ASSERT(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0);
    TORII_ASSERT(pthread_cond_init(&st->wake, &ca) == 0);
    (void)pthread_condattr_destroy(&ca);
    st->jwks_dirty = 1;
    *out = st;
    return TORII_OK;
}

int torii_pki_state_start(struct torii_pki_state *st)
{
    int err = pthread_create(&st->thread, NULL, state_thread, st);

    if (err != 0) {
        return TORII_EIO;
    }
    st->thread_started = 1;
    return TORII_OK;
}

void torii_pki_state_free(struct torii_pki_state *st)
{
    if (st == NULL) {
        return;
    }
    if (st->thread_started) {
        (void)pthread_mutex_lock(&st->wlock);
        st->stop = 1;
        (void)pthread_cond_signal(&st->wake);
        (void)pthread_mutex_unlock(&st->wlock);
        (void)pthread_join(st->thread, NULL);
    }
    for (size_t b = 0; b < STATE_BUCKETS; b++) {
        while (st->buckets[b] != NULL) {
            struct pki_ent *e = st->buckets[b];
            st->buckets[b] = e->next;
            ent_free(e);
        }
    }
    blob_unref(st->jwks);
    snap_unref(st->snap);
    (void)pthread_cond_destroy(&st->wake);
    (void)pthread_mutex_destroy(&st->snap_lock);
    (void)pthread_mutex_destroy(&st->wlock);
    free(st);
}
