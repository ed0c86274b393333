/* renew.h - certificate lifecycle: the due-ness rule, the expiry state kept in each entity,
 * re-issuing a certificate, and the renewal thread that runs both every
 * renewal.interval_s (+ jitter) and on demand (admin POST .../_renew).
 * Renewal rules (fixing reference section 5.3 as its section 13 advises):
 * - due: autoRenew, not revoked, not letsEncrypt (those go through the ACME hook,
 *   torii_renewer_opts.acme; without one they are logged and skipped),
 *   not an "[UNTIL EXPIRATION]" copy, not expired, and remaining validity below
 *   threshold_pct of the total ((to - now) * 100 < pct * (to - from), integer math).
 * - a leaf with caRef is re-issued by that CA with a NEW key of the same type and size; a
 *   self-signed certificate is re-self-signed with a new key; a CA (self-signed root or
 *   sub-CA with caRef) KEEPS ITS KEY, so certificates it issued still verify against the
 *   renewed CA (same subject, same key, same subject key identifier).
 * - the new certificate is a copy of the old one (subject, SANs, key usages, EKU, other
 *   extensions) with a new random serial, notBefore = now and the same validity length
 *   (clamped to the issuer's notAfter), signed with the same digest.
 * - one durable store transaction: the renewed entity keeps its id; the previous version is
 *   saved with a random 64-char id as "[UNTIL EXPIRATION] <name>" (metadata untilExpiration
 *   =true, nextCertificate=<id>, autoRenew=false), never renewed, deleted once expired.
 * Threads: the pure functions any thread; torii_renewer_start/stop from the main thread;
 * torii_renewer_request from any thread but the renewal thread (it blocks until done).
 * Ownership: entities are borrowed; results are new references for the caller. */
#ifndef TORII_RENEW_H
#define TORII_RENEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/alert.h"
#include "torii/conf.h"
#include "torii/err.h"
#include "torii/jobgate.h"
#include "torii/store.h"

struct torii_kek_ring;

#define TORII_RENEW_COPY_PREFIX "[UNTIL EXPIRATION] "
#define TORII_RENEW_COPY_ID_LEN 64

struct torii_renew_policy {
    unsigned threshold_pct;    /* 1..99; renew and flag "almost expired" in the last N% */
    int64_t almost_expired_ms; /* also flag "almost expired" this close to notAfter; 0 = off */
};

/** Fill from the config (renewal.threshold_pct, alerts.almost_expired_days). */
void torii_renew_policy_from_config(const struct torii_config *cfg, struct torii_renew_policy *p);

enum torii_renew_state {
    TORII_RENEW_STATE_OK = 0,
    TORII_RENEW_STATE_ALMOST_EXPIRED, /* last threshold_pct %, or within almost_expired_ms */
    TORII_RENEW_STATE_EXPIRED,        /* now >= notAfter */
    TORII_RENEW_STATE_NOT_YET_VALID,  /* now < notBefore */
};

/** Expiry state from the validity window [from_ms, to_ms) at now_ms. A window with
 * to_ms <= from_ms counts as expired once now >= to_ms, else almost expired. */
enum torii_renew_state torii_renew_state_of(int64_t from_ms, int64_t to_ms, int64_t now_ms,
                                            const struct torii_renew_policy *p);

/** 1 when (to - now) * 100 < pct * (to - from) and now < to (overflow-safe). */
int torii_renew_in_last_pct(int64_t from_ms, int64_t to_ms, int64_t now_ms, unsigned pct);

enum torii_renew_due {
    TORII_RENEW_NOT_DUE = 0,
    TORII_RENEW_DUE,      /* renew now */
    TORII_RENEW_DUE_ACME, /* due, but letsEncrypt: ACME's job (skipped, logged) */
};

/** The due-ness rule above, on an entity's fields (autoRenew, revoked, letsEncrypt,
 * metadata.untilExpiration, from, to). Malformed fields count as "not due". */
enum torii_renew_due torii_renew_due_of(const json_t *entity, int64_t now_ms,
                                        const struct torii_renew_policy *p);

/** 1 when the entity is an "[UNTIL EXPIRATION]" copy (metadata.untilExpiration "true"). */
int torii_renew_is_copy(const json_t *entity);

/** Retry delay after `attempt` consecutive failures (1 = first): min_ms * 2^(attempt-1),
 * capped at max_ms (no overflow for any attempt). attempt 0 gives 0. */
int64_t torii_renew_backoff_ms(unsigned attempt, int64_t min_ms, int64_t max_ms);

/** Re-issue `entity` (see the rules above) through torii_pki_cert_renew: ca_entity is the
 * issuing CA entity (caRef) or NULL for a self-signed certificate. *out is a new enriched
 * entity with the same id and user fields, a new chain (new leaf + the CA entity's chain),
 * a new privateKey (leaves) or the same one (CAs), metadata flags expired/almostExpired
 * removed, metadata.renewedAt = now. No private key is handled here. TORII_EINVAL (eb says
 * why) when the chain or key does not parse, the CA is not a usable CA (not ca, revoked,
 * no key, key does not match), or the certificate is neither self-signed nor has a CA;
 * TORII_EUNSUPPORTED for a key type that cannot be regenerated; TORII_ETLS when OpenSSL
 * fails. */
int torii_renew_reissue(const json_t *entity, const json_t *ca_entity,
                        const struct torii_kek_ring *kek, int64_t now_ms, json_t **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;
/* kek (borrowed; NULL: none loaded) opens the sealed keys of entity and ca_entity. */

/** The "[UNTIL EXPIRATION]" copy of old_entity (see above) with id copy_id: a new object. */
json_t *torii_renew_copy_of(const json_t *old_entity, const char *copy_id);
/** torii_renew_copy_of for the store: a sealed privateKey (bound to the old id) is re-sealed
 * for copy_id under kek's current KEK (torii_pki_entity_key_rebind). *out is a new object. */
int torii_renew_copy_make(const json_t *old_entity, const char *copy_id,
                          const struct torii_kek_ring *kek, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Renew certificate `id` in the store now (due or not; see torii_renewer_request for the
 * refusals), in one transaction as described above, then raise CertRenewalAlert. The
 * entity is written back only if nobody wrote it since it was read (TORII_STORE_REPLACE_IF);
 * otherwise the renewal starts again once from what was written.
 * *out (may be NULL) receives the renewed entity. TORII_ENOTFOUND, TORII_EINVAL (revoked,
 * a copy, bad CA...), TORII_EUNSUPPORTED (letsEncrypt), TORII_ESTORE, TORII_ECONFLICT (written
 * by someone else during both attempts; nothing changed); eb says why. */
int torii_renew_one(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                    int64_t now_ms, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- the renewal thread ---- */

struct torii_renewer;

/** Renewal of letsEncrypt certificates, provided by the ACME module (acme.h) so this module
 * needs nothing of ACME: due (1: renew now; ARI's window or the last third of the validity)
 * and renew (a new order for the entity's names, the entity updated in place; TORII_OK or
 * the error in eb, then retried with backoff and alerted like any renewal). Both run on the
 * renewal thread for autoRenew, live, non-copy letsEncrypt entities (borrowed). */
struct torii_renew_acme {
    int (*due)(void *arg, const json_t *entity, int64_t now_ms);
    int (*renew)(void *arg, const char *id, const json_t *entity, struct torii_errbuf *eb);
    void *arg;
};

/** What the renewal thread works with; all borrowed, each must outlive the thread. */
struct torii_renewer_opts {
    const struct torii_config *cfg; /* required */
    struct torii_store *store;      /* required */
    struct torii_alerts *alerts;    /* NULL: no alerts */
    /* The ACME hook (copied; its arg must outlive the thread); NULL: letsEncrypt
     * certificates are logged and skipped. */
    const struct torii_renew_acme *acme;
    /* One doer per job (jobgate.h; NULL: a single node, always): the automatic cycle renews,
     * flags and deletes copies only while job "renewal" is this node's, and hands letsEncrypt
     * certificates to the ACME hook only while job "acme" is; asked before each certificate.
     * Explicit requests (torii_renewer_request with id or ids) are not gated. */
    const struct torii_job_gate *gate;
};

/** Start the renewal thread (own event_base). First run after renewal.initial_delay_s, then
 * every renewal.interval_s + random jitter (0: on demand only). */
int torii_renewer_start(const struct torii_renewer_opts *o, struct torii_renewer **out,
                        struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop and join; a request in flight completes first; NULL accepted. */
void torii_renewer_stop(struct torii_renewer *r);

/** Run on the renewal thread and wait for the result (at most timeout_ms):
 * - id != NULL: renew that certificate, due or not (refused: unknown id -> TORII_ENOTFOUND;
 *   revoked or an [UNTIL EXPIRATION] copy -> TORII_EINVAL; letsEncrypt ->
 *   TORII_EUNSUPPORTED). *out = the renewed entity.
 * - id == NULL, ids == NULL: one full cycle now (renew every due certificate, update expiry
 *   flags, raise alerts, delete expired copies). *out = {"renewed":[ids], "failed":
 *   [{"id","error"}], "skipped":[{"id","reason"}]}.
 * - id == NULL, ids a JSON array of strings: renew each of them (due or not). *out as for
 *   a cycle (unknown ids are listed under "failed").
 * TORII_ETIMEDOUT when the thread did not answer in time (the work still completes). */
int torii_renewer_request(struct torii_renewer *r, const char *id, const json_t *ids,
                          int64_t timeout_ms, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
