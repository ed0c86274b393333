/* alert.h - certificate alerts and the exporters that carry them out of the process.
 * An alert is the reference's AlertEvent envelope ({"@id", "@timestamp", "@type":
 * "AlertEvent", "@product", "@serviceId", "@service", "@env", "alert", "certificate"}) whose
 * certificate never holds privateKey nor password (torii_cert_redacted). Exporters come
 * from the validated config (conf.h exporters[]): webhook (libcurl POST of a JSON array,
 * batched, retried with backoff), file (JSON lines, reopened on torii_alerts_reopen) and log.
 * Each exporter has its own bounded queue and thread, so raising an alert never blocks:
 * when a queue is full the alert is dropped for that exporter, counted
 * (TORII_METRIC_ALERTS_DROPPED) and logged (rate-limited).
 * Threads: torii_alerts_new/free/watch_store from the main thread; torii_alerts_raise and
 * torii_alerts_reopen from any thread (internally locked); exporter threads are private.
 * Ownership: entities passed in are borrowed; the alerts object borrows cfg and store, which
 * must outlive it. */
#ifndef TORII_ALERT_H
#define TORII_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

enum torii_alert_type {
    TORII_ALERT_ALMOST_EXPIRED = 0,
    TORII_ALERT_EXPIRED,
    TORII_ALERT_RENEWAL,
    TORII_ALERT_RENEWAL_FAILED,
    TORII_ALERT_CREATED,
    TORII_ALERT_UPDATED,
    TORII_ALERT_DELETED,
    TORII_ALERT_TYPES
};

/** "CertAlmostExpiredAlert", ...; NULL for an out-of-range type. */
const char *torii_alert_type_name(enum torii_alert_type t);
/** Name -> type; TORII_EINVAL for an unknown name. */
int torii_alert_type_parse(const char *name, enum torii_alert_type *out) TORII_MUST_USE;

/** The envelope for one alert: a new object (caller json_decref()s), NULL only on OOM.
 * entity (borrowed) is redacted (no privateKey, no password); NULL gives "certificate":
 * null. extra (borrowed, may be NULL) members are merged in at the top level (e.g. "error"
 * for CertRenewalFailedAlert); they cannot replace the envelope's own members. @id is a
 * random UUID, @timestamp now_ms. */
json_t *torii_alert_envelope(enum torii_alert_type t, const json_t *entity, const json_t *extra,
                             int64_t now_ms);

struct torii_alerts;

/** Build the exporters of cfg->exporter_list and start their threads (none configured:
 * a valid object that drops nothing and sends nothing). store is used by webhooks for
 * tls.trusted_ca / tls.client_cert (read at each send). Calls curl_global_init: main thread,
 * before other threads use libcurl. TORII_EIO (eb says why) when a file cannot be opened or
 * a thread not started. */
int torii_alerts_new(const struct torii_config *cfg, struct torii_store *store,
                     struct torii_alerts **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Stop the exporter threads (a webhook batch still queued gets one last attempt, bounded by
 * its timeout), free everything; NULL accepted. */
void torii_alerts_free(struct torii_alerts *al);

/** 1 when at least one exporter wants alerts of type t (cheap; lets callers skip work). */
int torii_alerts_wanted(const struct torii_alerts *al, enum torii_alert_type t);

/** Raise one alert: build the envelope (see torii_alert_envelope) and queue it for every
 * exporter that wants t. Never blocks on I/O. al NULL is a no-op. */
void torii_alerts_raise(struct torii_alerts *al, enum torii_alert_type t, const json_t *entity,
                        const json_t *extra);

/** Reopen file exporters before their next write (SIGHUP, for logrotate). Any thread. */
void torii_alerts_reopen(struct torii_alerts *al);

/** Reload: replace the exporters with those of cfg (borrowed from now on: it must outlive
 * the alerts object or the next reload). The old exporters deliver what they hold, then go.
 * On failure the old ones stay (eb names the problem). Main thread. */
int torii_alerts_reload(struct torii_alerts *al, const struct torii_config *cfg,
                        struct torii_store *store, struct torii_errbuf *eb) TORII_MUST_USE;

/** Register a store watcher that raises CertCreatedAlert / CertUpdatedAlert /
 * CertDeletedAlert for writes to the certificate bucket made by the API (writes made by the
 * lifecycle module itself, inside torii_lifecycle_write_begin/end, raise their own alerts
 * instead). DELETE carries {"id": ...} as certificate (the entity is gone). Main thread,
 * before other threads use the store. */
int torii_alerts_watch_store(struct torii_alerts *al, struct torii_store *store) TORII_MUST_USE;

/** Mark the calling thread's store writes as lifecycle writes (no API alerts) until _end. */
void torii_lifecycle_write_begin(void);
void torii_lifecycle_write_end(void);

#endif
