/* state_int.h - the served PKI view (pkistate.h): types and helpers shared by its files.
 * Private to src/pki/state*.c. Files by duty:
 *   state_blob.c    - shared pieces: blobs, OCSP response caches, signers, snapshot release
 *   state_index.c   - writer-side index: entries by id, groups by name hash, lists, records,
 *                     the staples map
 *   state_snap.c    - snapshot rebuilds (CRL, JWKS, JWT keys, CAs) and publish
 *   state_read.c    - readers: JWKS, CA, CRL, OCSP, staples, stats
 *   state_refresh.c - the refresher thread (CRL and staple re-signing, CRL number persistence)
 *   state.c         - lifecycle and the store feed (watch/load callbacks)
 * Dependencies between these files go one way (scripts/include_cycles.sh): state.c ->
 * refresh -> read, snap -> index, blob. A fleet's shared CRLs (pkistate.h) are adopted in
 * state.c, signed in state_snap.c and handed to the fleet in state_refresh.c.
 * Threads: functions named *_locked, and every writer-side helper (index, staples, rebuilds)
 * need wlock held; the reader helper (snap OCSP) any thread with a snapshot reference;
 * blob/cache/signer/snapshot references any thread.
 *
 * Writer side (wlock): one compact entry per certificate id, in a growing hash table. The
 * TLS record gives flags, notAfter, issuer-name hash and serial without parsing JSON; the
 * JSON is parsed only for CAs (signing material), revoked entities (time and reason) and
 * exposed ones (JWKS). Entries are grouped by name hash (SHA-256 of the DER name): a group
 * lists the CAs whose subject has that hash and the certificates whose issuer has it (live
 * and revoked apart), so finding a certificate's issuing CA, the revoked certificates of a CA
 * (its CRL) or what a change touches costs O(1), never a scan of the store. Each CA entry
 * also carries its current CRL, its CRL number, and the OCSP response cache of its current
 * generation; any change of a certificate it issued marks the CRL for rebuild and replaces
 * the cache (a fresh cache only when readers saw the old one).
 * Reader side: an immutable snapshot, reference counted: the JWKS bytes, the CAs (an array
 * shared until a CA changes), and a persistent map (pmap.h) of the staples (id -> DER). OCSP
 * keeps no serial index: it asks the serial_fn of the options (certdb's serial index) for the
 * records of a serial and keeps those issued by the CA asked. A change copies one path of a map,
 * not the map, so a publish costs O(log n) plus the CAs that changed; publish swaps the snapshot
 * pointer under snap_lock, which readers hold only to load the pointer and take a reference. Blobs
 * (DER, JSON text) are shared by reference between snapshots. First load: records are applied
 * without publishing (torii_pki_state_load_cb), each in O(1); the one publish after it builds the
 * JWKS and the CRLs once. CRL numbers (RFC 5280 5.2.3) are max(previous + 1, now in ms): monotonic
 * across restarts even when the persisted value was lost, and persisted by the refresher thread (a
 * watcher must not write the store). Staples are signed by the refresher, never on a handshake: new
 * candidates (served certificates issued by a signing CA, without a staple) are queued and
 * signed on the next wake-up; a full pass over the candidates re-signs what is due. */
#ifndef TORII_PKI_STATE_INT_H
#define TORII_PKI_STATE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "pmap.h"
#include "torii/jwt.h"
#include "torii/pki.h"
#include "torii/pkistate.h"

#define STATE_BUCKETS_MIN    1024       /* initial size of the id and group tables (powers of 2) */
#define STATE_BUCKETS_MAX    (1u << 24) /* largest initial size (opts.expected beyond: grown) */
#define STATE_CACHE_SLOTS    64
#define STATE_STAPLE_BATCH   32
#define STATE_REFRESH_MAX_MS 30000
#define STATE_YIELD_MS       100 /* longest wait for a feed call between staple batches */
#define STATE_HASH           32  /* SHA-256 */
#define STATE_META_PREFIX    "pki.crl_number."

/** The initial bucket count of the id and group tables for `expected` entries: the smallest
 * power of two >= expected, within [STATE_BUCKETS_MIN, STATE_BUCKETS_MAX]. */
static inline size_t torii_pki__state_buckets(size_t expected)
{
    size_t n = STATE_BUCKETS_MIN;

    while (n < expected && n < STATE_BUCKETS_MAX) {
        n *= 2;
    }
    return n;
}

/* ---- shared blobs ---------------------------------------------------------------------- */

struct pki_blob {
    atomic_long ref;
    size_t len;
    unsigned char data[];
};

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

/* The CertID hashes of a CA (RFC 6960 4.1.1) for the two digests clients use. */
struct pki_certid_hashes {
    unsigned char sha1_name[SHA_DIGEST_LENGTH];
    unsigned char sha1_key[SHA_DIGEST_LENGTH];
    unsigned char sha256_name[SHA256_DIGEST_LENGTH];
    unsigned char sha256_key[SHA256_DIGEST_LENGTH];
};

/* A signing CA, loaded once (certificate, chain, key) and shared by the writer's entry and
 * the snapshots; read-only once built, so any thread may sign with it. */
struct pki_signer {
    atomic_long ref;
    struct torii_pki__ca ca; /* ca.id is not kept (it pointed into the entity) */
};

struct snap_ca {
    char *id;
    struct pki_signer *signer; /* NULL for CAs without a usable key */
    struct pki_blob *der;
    struct pki_blob *crl;
    struct pki_cache *cache;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
};

/* Every CA entity, sorted by id; shared by the snapshots published while no CA changes. */
struct snap_cas {
    atomic_long ref;
    size_t n;
    struct snap_ca ca[];
};

/* The OCSP status of one stored record of a serial (state_read.c). */
struct view_val {
    int revoked;
    int reason;
    int64_t revoked_at_ms;
    int64_t not_after_ms;
};

/* Staples leaf: key = certificate id. */
struct staple_leaf {
    struct torii_pki__pmap_leaf hdr;
    struct pki_blob *der;
    char id[]; /* the key, NUL-terminated */
};

struct pki_snap {
    atomic_long ref;
    uint64_t seed;
    struct pki_blob *jwks;
    struct torii_jwt_keyset *jwt_keys; /* verification keys of the exposed entities */
    struct snap_cas *cas;
    size_t n_certs; /* certificates issued by a signing CA (stat) */
    torii_pki_state_serial_fn serial;
    void *serial_arg;
    struct torii_pki__pmap_node *staples;
    size_t n_staples;
    int64_t ocsp_next_update_s;
    int64_t ocsp_cache_s;
};

/* ---- writer-side entries ------------------------------------------------------------------ */

struct pki_group;

/* CA part of an entry (the entity says ca=true and the record has the CA flag). */
struct pki_ca {
    struct pki_ent *grp_next;  /* next CA of the same subject group, by id */
    struct pki_group *grp;     /* subject group */
    struct pki_signer *signer; /* the CA loads with its key; NULL otherwise */
    X509 *cert;
    struct pki_blob *der;
    unsigned char subject_hash[STATE_HASH];
    struct pki_certid_hashes ids;
    int crl_dirty;
    int crl_persist;
    int crl_number_loaded;
    uint64_t crl_number;
    int64_t crl_refresh_ms;
    struct pki_blob *crl;
    /* Shared CRLs (st->has_share): crl is the adopted one, numbered crl_adopted; a CRL this
     * node signed waits in crl_pend (crl_pend_number) until the refresher published it. */
    uint64_t crl_adopted;
    struct pki_blob *crl_pend;
    uint64_t crl_pend_number;
    struct pki_cache *cache;
    int cache_shared; /* a published snapshot holds cache: replace it, never reuse it */
};

struct pki_ent {
    struct pki_ent *next; /* id table chain */
    uint64_t h;           /* hash of id */
    struct pki_group *grp;
    struct pki_ent *m_prev; /* issuer group: live or revoked list */
    struct pki_ent *m_next;
    struct pki_ent *x_prev; /* exposed list */
    struct pki_ent *x_next;
    struct pki_ent *p_prev; /* staple queue */
    struct pki_ent *p_next;
    int pending;
    uint32_t flags; /* TORII_CERTREC_* */
    int64_t not_after_ms;
    int has_issuer;
    unsigned char issuer_hash[STATE_HASH];
    int64_t revoked_at_ms;
    int reason;
    json_t *entity; /* CAs and exposed entities only */
    int exposed;
    struct pki_ca *ca; /* NULL unless a CA */
    /* staple (served certificates issued by a signer) */
    struct pki_blob *staple;
    int64_t staple_refresh_ms;
    size_t id_len;
    size_t serial_len;
    char *serial_hex; /* into the same allocation, after id; "" without issuer */
    char id[];
};

/* Everything that shares one name hash: CAs with that subject, certificates with that issuer. */
struct pki_group {
    struct pki_group *next; /* group table chain */
    uint64_t h;
    unsigned char hash[STATE_HASH];
    struct pki_ent *cas; /* by id, linked through ca->grp_next */
    size_t n_signers;
    struct pki_ent *live;    /* members not revoked */
    struct pki_ent *revoked; /* members revoked */
};

struct torii_pki_state {
    struct torii_pki_state_opts o;
    pthread_mutex_t wlock; /* writer side: entries, rebuilds, publish */
    pthread_cond_t wake;   /* refresher */
    uint64_t seed;
    struct pki_ent **ids; /* id table */
    size_t ids_mask;
    size_t n_ents;
    struct pki_group **grps; /* group table */
    size_t grps_mask;
    size_t n_grps;
    struct pki_ent **cas; /* CA entries, sorted by id */
    size_t n_cas;
    size_t cap_cas;
    struct pki_ent *exposed; /* exposed entries */
    struct pki_ent *pending; /* candidates waiting for their first staple */
    size_t n_signed;         /* entries issued by a signing CA (stat.certs) */
    struct torii_pki__pmap staples;
    int jwks_dirty;
    struct pki_blob *jwks;             /* writer's current document */
    struct torii_jwt_keyset *jwt_keys; /* writer's current key set (rebuilt with the JWKS) */
    int cas_dirty;
    struct snap_cas *snap_cas; /* writer's current CA array */
    struct torii_certrec *rec; /* decode scratch (large; one per state) */
    int64_t next_full_ms;      /* refresher: a full pass is due */
    int64_t last_full_ms;
    atomic_int writers_waiting; /* feed calls waiting for wlock (the refresher yields) */
    pthread_mutex_t snap_lock;  /* readers: pointer load + reference only */
    struct pki_snap *snap;
    uint64_t publishes;
    pthread_t thread;
    int thread_started;
    int stop;
    int has_share; /* CRLs shared by a fleet (pkistate.h; share set once, under wlock) */
    struct torii_pki_crl_share share;
    int crl_signer;            /* refresher: share.signer() at its last look */
    int share_calls;           /* the refresher is inside share.publish (wlock released) */
    pthread_cond_t share_idle; /* signalled when share_calls drops to 0 */
};

/* ---- state_blob.c: blobs, caches, signers, snapshot release (any thread) ----------------- */

struct pki_blob *torii_pki__blob_new(const void *p, size_t len);
struct pki_blob *torii_pki__blob_ref(struct pki_blob *b);
void torii_pki__blob_unref(struct pki_blob *b);
/** A malloc'd, NUL-terminated copy of b's bytes into *body (caller frees). */
int torii_pki__blob_copy_out(const struct pki_blob *b, unsigned char **body, size_t *len);
struct pki_cache *torii_pki__cache_new(void);
struct pki_cache *torii_pki__cache_ref(struct pki_cache *c);
void torii_pki__cache_unref(struct pki_cache *c);
/** A reference to the cached response under key (SHA-256 of the request), or NULL. */
struct pki_blob *torii_pki__cache_get(struct pki_cache *c, const unsigned char *key,
                                      int64_t now_ms);
void torii_pki__cache_put(struct pki_cache *c, const unsigned char *key, struct pki_blob *resp,
                          int64_t until_ms);
struct pki_signer *torii_pki__signer_ref(struct pki_signer *s);
void torii_pki__signer_unref(struct pki_signer *s);
void torii_pki__snap_cas_unref(struct snap_cas *c);
void torii_pki__snap_unref(struct pki_snap *s);

/* ---- state_index.c: the writer-side index (wlock held) ---------------------------------- */

/** 1 when e is a certificate the TLS listener may serve at now_ms. */
int torii_pki__ent_served(const struct pki_ent *e, int64_t now_ms);
void torii_pki__ent_free(struct pki_ent *e);
/** The slot of id in the id table (*slot is NULL when absent); h = torii_hash64(seed, id). */
struct pki_ent **torii_pki__state_find(struct torii_pki_state *st, const char *id, size_t len,
                                       uint64_t h);
/** The CA that signs for certificates of group g: its first signer by id, or NULL. */
struct pki_ent *torii_pki__state_signer_for(const struct pki_group *g);
void torii_pki__pending_push(struct torii_pki_state *st, struct pki_ent *e);
void torii_pki__pending_unlink(struct torii_pki_state *st, struct pki_ent *e);
/** A new entry from a store record (NULL when the record does not decode). */
struct pki_ent *torii_pki__ent_build(struct torii_pki_state *st, const struct torii_store_rec *rec);
/** Replace (ent != NULL) or remove entry id; takes ent. */
void torii_pki__state_apply(struct torii_pki_state *st, const char *id, size_t id_len,
                            struct pki_ent *ent);

/** Staples map (writer's): set e's staple to der (a new reference), or drop it. wlock held. */
void torii_pki__staple_set(struct torii_pki_state *st, const struct pki_ent *e,
                           struct pki_blob *der);
void torii_pki__staple_del(struct torii_pki_state *st, const struct pki_ent *e);

/* ---- state_snap.c ------------------------------------------------------------------------ */

/** Serve crl (a reference, taken), numbered n, as the fleet's CRL of c, and publish. wlock
 * held. */
void torii_pki__crl_install(struct torii_pki_state *st, struct pki_ca *c, struct pki_blob *crl,
                            uint64_t n);
/** 1 when this node signs CRLs: no share, or the share's signer() says so. wlock held. */
int torii_pki__crl_signer(const struct torii_pki_state *st);
/** Rebuild what is dirty (JWKS, JWT keys, CRLs, CA array) and swap in a new snapshot. wlock
 * held. */
void torii_pki__state_publish_locked(struct torii_pki_state *st);

/* ---- state_read.c ----------------------------------------------------------------------- */

/** The DER OCSP response to req from snapshot s (cached when nonce-less). Any thread holding s. */
int torii_pki__snap_ocsp(const struct pki_snap *s, const unsigned char *req, size_t req_len,
                         int64_t now_ms, struct pki_blob **out);

#endif
