/* lifecycle_int.h - helpers shared inside src/lifecycle. Not to be included elsewhere.
 * Files depend one way (scripts/include_cycles.sh): renewer -> alert -> exporter -> event. */
#ifndef TORII_LIFECYCLE_INT_H
#define TORII_LIFECYCLE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/alert.h"
#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

/** 1 when the calling thread is inside torii_lifecycle_write_begin/end (event.c). */
int torii_lifecycle__writing(void);

/** Exporter set (exporter.c). */
struct torii_exporters;
int torii_exporters__new(const struct torii_config *cfg, struct torii_store *store,
                         struct torii_exporters **out, struct torii_errbuf *eb) TORII_MUST_USE;
void torii_exporters__free(struct torii_exporters *xs);
/** Bit (1u << type) set for each alert type at least one exporter wants. */
unsigned torii_exporters__mask(const struct torii_exporters *xs);
/** Queue a deep copy of env for each exporter that wants t (the caller keeps env). */
void torii_exporters__push(struct torii_exporters *xs, enum torii_alert_type t, const json_t *env);
void torii_exporters__reopen(struct torii_exporters *xs);

/** Load an entity from the certificate bucket (event.c, through torii_certdb_load): *out a new
 * object. TORII_ENOTFOUND, TORII_ESTORE (stored JSON is not an object, or the store failed). */
int torii_lifecycle__load(struct torii_store *store, const char *id, json_t **out) TORII_MUST_USE;

/* ---- read-modify-write of entities (renewer.c) ---- */

struct torii_renew_policy;

/** Test seam for the read-modify-write window: `between` (may be NULL) is called on the
 * writing thread after the entity was read and just before it is written back, with the
 * attempt number (0, then 1 for the retry after a conflict). NULL in production. */
struct torii_renew__seam {
    void (*between)(const char *id, unsigned attempt, void *arg);
    void *arg;
};

/** torii_renew_one, plus: pol non-NULL (the automatic cycle) renews only while the entity
 * just read is still due by pol, else TORII_ECONFLICT ("no longer due"; no retry). The
 * write is a TORII_STORE_REPLACE_IF of the JSON read, so a write that landed in between
 * (the admin API's) is never overwritten: on such a conflict the whole renewal starts again
 * from a fresh read, once; a second conflict gives TORII_ECONFLICT and changes nothing.
 * TORII_ECONFLICT does not count as a renewal failure. */
int torii_renew__one(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                     int64_t now_ms, const struct torii_renew_policy *pol,
                     const struct torii_renew__seam *seam, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Store the expiry state entity `id` has at now_ms by pol (metadata.expired /
 * almostExpired, valid) when its stored flags differ, judged on the entity as read now;
 * raises CertExpiredAlert / CertAlmostExpiredAlert for those states. *written = the
 * torii_renew_state stored, or -1 when nothing had to change (or it is revoked or a copy).
 * A conflicting write is handled as in torii_renew__one (re-read and judged again, once).
 * TORII_ENOTFOUND, TORII_EINVAL, TORII_ESTORE, TORII_ECONFLICT. */
int torii_renew__flag(struct torii_store *store, struct torii_alerts *alerts, const char *id,
                      int64_t now_ms, const struct torii_renew_policy *pol,
                      const struct torii_renew__seam *seam, int *written, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- scheduling (renewer.c; pure, for tests) ---- */

/** Delay of the first run after start: renewal.initial_delay_s, bounded by
 * renewal.interval_s (the first run is never later than one period). */
int64_t torii_renew__first_delay_ms(unsigned interval_s, unsigned initial_delay_s);
/** Delay of the next periodic run: the interval plus a jitter of rnd modulo
 * min(jitter_s, interval_s / 2) (in ms), so a run is never later than 1.5 periods. */
int64_t torii_renew__period_delay_ms(unsigned interval_s, unsigned jitter_s, uint32_t rnd);

#endif
