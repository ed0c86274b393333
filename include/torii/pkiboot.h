/* pkiboot.h - the built-in PKI at start-up, outside the admin API: the first-start CAs and
 * default certificate, and the PKI state served by the public listeners (wired to the store).
 * Role: main.c calls it once, before the listeners, the admin server and the renewer start.
 * Threads: main thread only. Ownership: cfg and store are borrowed; the PKI state returned by
 * torii_pkiboot_state_open is owned by the caller (torii_pki_state_free, after everything that
 * reads it has stopped). */
#ifndef TORII_PKIBOOT_H
#define TORII_PKIBOOT_H

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

struct torii_pki_state;

/** First start of the built-in PKI: creates what is missing of `torii-root-ca` (self-signed,
 * 10 years), `torii-intermediate-ca` (signed by the root, 10 years, pathLen 0), both with the
 * key type of pki.ca_key, and the default certificate cfg->default_cert (server certificate
 * for localhost, 127.0.0.1 and the host name, issued by the intermediate, with AIA/CRL URLs
 * under pki.public_url). Existing entities are never replaced, whatever their state; when a
 * CA cannot sign (replaced by one without key) the default certificate falls back to a
 * self-signed one. Each creation is one durable write with its serial index entry.
 * Main thread, before the listeners start. TORII_ESTORE/TORII_ETLS (eb says why). */
int torii_pkiboot_run(const struct torii_config *cfg, struct torii_store *store,
                      struct torii_errbuf *eb) TORII_MUST_USE;

/** The PKI state served by the public listeners (pkistate.h): created with the durations of
 * cfg->pki, registered as a store watcher, loaded from the store, published, and its
 * refresher started (CRL numbers persisted in the store meta). Call before any other thread
 * uses the store (watchers are registered then). Free with torii_pki_state_free after the
 * workers and the admin server are stopped. */
int torii_pkiboot_state_open(const struct torii_config *cfg, struct torii_store *store,
                             struct torii_pki_state **out, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
