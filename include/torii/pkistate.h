/* pkistate.h - what the public listeners serve for the built-in PKI: the JWKS document, the
 * CA certificates (AIA caIssuers), one DER CRL per CA, the OCSP responder (RFC 6960) and the
 * OCSP staples of certificates issued by our CAs. Fed by the store change feed (and a first
 * load), the state keeps a compact view of every certificate (issuer hash, serial, flags; the
 * JSON is parsed only for CAs, revoked and exposed entities); OCSP finds a serial through the
 * serial_fn of its options (certdb's serial index: the state keeps no serial index of its own) and
 * publishes an immutable, reference-counted snapshot after each change. Cost: a change touches only
 * the CAs that issued the certificate (O(1) to find, O(log n) to publish; the CRLs of those CAs are
 * rebuilt), the first load is O(1) a record and builds everything once at its publish. A
 * refresher thread re-signs CRLs and staples before their nextUpdate and persists CRL
 * numbers through the meta callbacks.
 * Threads: feed (watch/load callbacks) on the store's writing threads (serialized by the
 * store); start/stop/free on the main thread; the serving calls (jwks, ca, crl, ocsp, staple)
 * on any thread (worker threads included): they take a snapshot reference under a lock held
 * only for a pointer load and a counter increment and never write the store (OCSP, and the
 * refresher's staples, read it through the serial_fn: a read transaction, no lock of the
 * state held by a reader). Ownership: bodies returned by the serving calls are malloc'd copies the
 * caller frees. */
#ifndef TORII_PKISTATE_H
#define TORII_PKISTATE_H

#include <stddef.h>
#include <stdint.h>

#include "torii/err.h"
#include "torii/store.h"

struct torii_kek_ring;

struct torii_pki_state;

/** Persistence of small counters (CRL numbers): meta_get returns a malloc'd string
 * (TORII_OK), TORII_ENOTFOUND or an error; meta_put stores one. meta_get is called from the
 * feed (store readers are allowed there), meta_put only from the refresher thread. */
typedef int (*torii_pki_state_meta_get_cb)(void *arg, const char *key, char **val);
typedef int (*torii_pki_state_meta_put_cb)(void *arg, const char *key, const char *val);

/** The OCSP source of truth (the certdb serial index, set by pkiboot): calls cb(rec, cb_arg)
 * for every stored certificate whose serial is serial_hex (lower-case, no leading zeros; any
 * issuer: the state keeps those of the CA asked), with the record's id, entity JSON and TLS
 * record. Returns TORII_OK (also when there is none), its own failure or cb's. Called from the
 * OCSP serving calls (any thread) and the refresher (staples, wlock held): store reads only. */
typedef int (*torii_pki_state_serial_fn)(void *arg, const char *serial_hex, torii_store_iter_cb cb,
                                         void *cb_arg);

struct torii_pki_state_opts {
    int64_t ocsp_next_update_s;           /* OCSP nextUpdate - thisUpdate; 0 -> 3600 */
    int64_t ocsp_cache_s;                 /* nonce-less responses are reused this long; 0: never */
    int64_t crl_next_update_s;            /* CRL nextUpdate - thisUpdate; 0 -> 86400 */
    torii_pki_state_meta_get_cb meta_get; /* may be NULL (numbers start from the clock) */
    torii_pki_state_meta_put_cb meta_put; /* may be NULL */
    void *meta_arg;
    /* Keys at rest (borrowed, outlives the state; NULL: none loaded): opens the sealed keys
     * of the CAs (OCSP and CRL signing) and of the exposed JWT key pairs (JWKS). */
    const struct torii_kek_ring *kek;
    /* Certificates by serial for OCSP and staples (NULL: every serial is unknown). */
    torii_pki_state_serial_fn serial;
    void *serial_arg;
    /* Certificates the first load will bring (the store's count; 0: unknown): the id and
     * group tables start at that size instead of doubling their way up to it. */
    size_t expected;
};

/** An empty state. TORII_EINVAL for negative durations. */
int torii_pki_state_new(const struct torii_pki_state_opts *o, struct torii_pki_state **out)
    TORII_MUST_USE;
/** Stops the refresher and frees; NULL accepted. No serving call may be in flight. */
void torii_pki_state_free(struct torii_pki_state *st);

/** Start the refresher thread (staples, CRL refresh, counter persistence). TORII_EIO. */
int torii_pki_state_start(struct torii_pki_state *st) TORII_MUST_USE;

/** Store watch callback (torii_store_watch_cb; arg = the state): applies one committed op of
 * TORII_STORE_CERTS and publishes a new snapshot. Other buckets are ignored. A record that
 * does not decode is dropped from the view (logged), never fatal. */
void torii_pki_state_watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                              const struct torii_store_rec *rec, void *arg);
/** Store iterator callback (torii_store_iter_cb) for the first load of TORII_STORE_CERTS;
 * does not publish (call torii_pki_state_publish after the foreach). Always TORII_OK. */
int torii_pki_state_load_cb(const struct torii_store_rec *rec, void *arg);
/** A source of records for the first load: calls cb(rec, cb_arg) for every certificate
 * (e.g. a wrapper of torii_certdb_foreach) and returns its own failure or cb's. */
typedef int (*torii_pki_state_source_fn)(void *src, torii_store_iter_cb cb, void *cb_arg);
/** First load from `each` and publish, under the state's feed lock held across the whole
 * load, so that the lock order is always feed lock -> store read (as in a publish reading
 * the store's meta): never a store read waiting for the feed lock. Start-up thread, before
 * torii_pki_state_start. Returns each's result; nothing is published on failure. */
int torii_pki_state_load(struct torii_pki_state *st, torii_pki_state_source_fn each, void *src)
    TORII_MUST_USE;
/** Rebuild what changed (JWKS, CRLs) and publish a new snapshot. */
void torii_pki_state_publish(struct torii_pki_state *st);
/** Run one refresher pass now (tests): staples and CRLs due at now_ms are re-signed. */
void torii_pki_state_refresh(struct torii_pki_state *st, int64_t now_ms);

/** The JWKS document ({"keys":[...]}, built once per change). TORII_OK. */
int torii_pki_state_jwks(struct torii_pki_state *st, char **body, size_t *len) TORII_MUST_USE;
struct torii_jwt_keyset;

/** The JWT verification keys of the current snapshot (jwt.h): one key per exposed, unrevoked
 * entity whose private key matches its leaf (the JWKS rule), kid = entity id, the public key
 * of the chain's leaf, notAfter = the leaf's; an "[UNTIL EXPIRATION]" copy of a rotated entity
 * is also listed under the live entity's id until its own notAfter. Rebuilt with the JWKS on
 * each change that touches an exposed entity, never per request. Returns a new reference
 * (torii_jwt_keyset_unref), never NULL (an empty sealed set before the first publish). */
struct torii_jwt_keyset *torii_pki_state_jwt_keys(struct torii_pki_state *st);
/** DER of the certificate of CA entity `id` (any entity with ca=true). TORII_ENOTFOUND. */
int torii_pki_state_ca_der(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len) TORII_MUST_USE;
/** Current DER CRL of CA `id` (a CA entity with its key). TORII_ENOTFOUND. */
int torii_pki_state_crl(struct torii_pki_state *st, const char *id, unsigned char **body,
                        size_t *len) TORII_MUST_USE;
/** Answer a DER OCSPRequest: status computed now from the certificates the serial_fn
 * returns for each CertID's serial, issued by the CA asked (good, revoked with time and
 * reason, unknown for serials we never issued; of several copies a revoked one, else the
 * one valid longest), signed by the issuing CA, nonce echoed.
 * Responses to nonce-less requests are cached per CA for ocsp_cache_s and dropped on any
 * change of that CA's certificates. Always a DER OCSPResponse (malformedRequest,
 * unauthorized... included) unless TORII_ENOMEM/TORII_ETLS. */
int torii_pki_state_ocsp(struct torii_pki_state *st, const unsigned char *req, size_t req_len,
                         unsigned char **body, size_t *len) TORII_MUST_USE;
/** The OCSP staple of certificate `id` (a DER OCSPResponse, good, fresh), when it was issued
 * by one of our CAs and the refresher has signed one. TORII_ENOTFOUND otherwise. */
int torii_pki_state_staple(struct torii_pki_state *st, const char *id, unsigned char **body,
                           size_t *len) TORII_MUST_USE;

/** torii_pki_state_staple with a void * state: a torii_tls_ocsp_staple_cb (tls.h). */
int torii_pki_state_staple_cb(void *st, const char *id, unsigned char **body, size_t *len)
    TORII_MUST_USE;

/* ---- CRLs shared by a fleet (docs/fleet.md, "Jobs"; src/pki/state_share.c) ----
 * Without a share (a single node) every node signs and serves its own CRLs, numbered
 * max(previous + 1, now in ms) and persisted through meta_put. With one, a CRL is signed only
 * while signer() says so (the fleet's job "crl"), numbered above every CRL adopted, and handed
 * to publish() by the refresher thread; it is served only once adopted: every node, the
 * signer included, serves the CRL the fleet stored (torii_pki_state_crl_adopt), so all
 * answer with the same bytes for the same number. The refresher asks signer() at least once a
 * second: a node that becomes the signer re-signs every CRL at once. */
struct torii_pki_crl_share {
    /* 1 while this node signs the fleet's CRLs. Any thread, never blocks. */
    int (*signer)(void *ctx);
    /* Store the CRL of CA ca_id, numbered number, for the fleet; TORII_OK once stored (the
     * state adopts it then), TORII_ECONFLICT when a CRL with that number or a higher one is
     * stored or this node no longer signs, else a failure (retried a second later). The
     * refresher thread, no lock of the state held; bounded by the fleet's timeout. */
    int (*publish)(void *ctx, const char *ca_id, uint64_t number, const unsigned char *der,
                   size_t len, struct torii_errbuf *eb);
    void *ctx;
};

/** Use sh (copied; ctx borrowed until the share is removed) from now on: the CRLs this node
 * built alone are no longer served (until one is adopted, a CRL path answers 404). NULL
 * removes it, once no publish is in flight (the CRLs then stay as adopted). Main thread. */
void torii_pki_state_crl_share(struct torii_pki_state *st, const struct torii_pki_crl_share *sh);

/** The fleet's CRL of CA ca_id (DER, distrusted): checked against the CA's certificate
 * (torii_pki_crl_check) and served from now on when its number is above the one served;
 * *number gets its number (may be NULL). TORII_ENOTFOUND when no CA ca_id is known (yet),
 * TORII_EEXIST when its number is not above the one served (nothing changes), TORII_EINVAL
 * when it does not check. Any thread (takes the feed lock: not from a store watcher). */
int torii_pki_state_crl_adopt(struct torii_pki_state *st, const char *ca_id,
                              const unsigned char *der, size_t len, uint64_t *number,
                              struct torii_errbuf *eb) TORII_MUST_USE;

/** Counts for tests and diagnostics. */
struct torii_pki_state_stat {
    size_t certs;   /* certificates issued by a signing CA */
    size_t cas;     /* CA entities */
    size_t signers; /* CA entities with a usable key */
    size_t staples; /* staples held */
    uint64_t publishes;
};
void torii_pki_state_stat_get(struct torii_pki_state *st, struct torii_pki_state_stat *out);

#endif
