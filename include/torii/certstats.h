/* certstats.h - the certificate gauges of /metrics, kept up to date from the store's change
 * feed: each certificate's id, domain, notBefore/notAfter and whether its key and chain are
 * usable and it is not revoked are read once, when the certificate is written, so a scrape
 * formats numbers and never parses an entity (torii_certstats_parses counts the parses).
 * Role: main.c opens it on the store; the admin server's GET /metrics writes from it.
 * Threads: torii_certstats_open/free on the main thread (free after every store writer has
 * stopped: a store watcher cannot be removed, and before the store: free joins the loader
 * thread that open starts); the watcher runs on whichever thread writes the store;
 * torii_certstats_write and torii_certstats_parses from any thread (a mutex; both wait until
 * the first load is done).
 * Ownership: the caller owns the object; ids and domains are copied. */
#ifndef TORII_CERTSTATS_H
#define TORII_CERTSTATS_H

#include <stdint.h>

#include "torii/err.h"
#include "torii/metrics.h"
#include "torii/store.h"

struct torii_certstats;

/** An empty set (torii_certstats_free). */
struct torii_certstats *torii_certstats_new(void);
/** torii_certstats_new, registered as a watcher of st, then loaded from its certificates on a
 * thread of its own (open returns at once: start-up parses no entity for the gauges). What
 * the feed writes or deletes while the load runs wins over the load's older snapshot.
 * Call before any other thread writes the store. TORII_ETOOBIG (no watcher slot left), eb
 * says so, nothing to free then; TORII_ENOMEM when the thread does not start (*out is set:
 * free it). */
int torii_certstats_open(struct torii_store *st, struct torii_certstats **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;
/** NULL accepted. */
void torii_certstats_free(struct torii_certstats *cs);

/** Store watcher (torii_store_watch_cb; arg is the set): a certificate written is parsed once
 * and kept (an entity that is not a JSON object is dropped), a deleted one forgotten. */
void torii_certstats_watch_cb(enum torii_store_op_kind kind, enum torii_store_bucket b,
                              const struct torii_store_rec *rec, void *arg);
/** torii_store_foreach callback (arg is the set): the first load. Returns TORII_OK. */
int torii_certstats_load_cb(const struct torii_store_rec *rec, void *arg);

/** The families torii_certificates{state="all"|"valid"}, torii_certificate_not_after_seconds
 * and torii_certificate_valid (labels id, domain; in id order), with validity judged at
 * now_ms (usable, not revoked, from <= now < to). No entity is parsed. */
void torii_certstats_write(struct torii_certstats *cs, int64_t now_ms, struct torii_prom *out);

/** Entities parsed so far (each write of a certificate, unless its writer handed it parsed
 * (torii_store_watch_parsed: certdb does), and the first load): tests. */
uint64_t torii_certstats_parses(struct torii_certstats *cs);

#endif
