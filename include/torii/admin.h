/* admin.h - the admin server: its own thread and event_base, bound to admin.listen
 * (loopback by default), serving /api/certificates (and later /api/pki, the web page and
 * /metrics) through the strict HTTP/1.1 engine. Every request is authenticated: bearer token,
 * HTTP Basic (user + token), or Otoroshi-Client-Id/-Secret headers. Tokens: admin.tokens
 * (SHA-256 hashes with scopes) and the all-scopes token from config, TORII_ADMIN_TOKEN
 * (already folded into the config), or <data_dir>/admin.token, generated on first start with
 * mode 0600. Private keys are redacted from responses (docs/api.md, Authentication); every
 * state-changing call goes to the audit log. A non-loopback listener needs admin.tls.
 * Threads: torii_admin_start/stop from the main thread only; everything else runs on the
 * admin thread.
 * Ownership: cfg, store and table are borrowed and must outlive the admin server. */
#ifndef TORII_ADMIN_H
#define TORII_ADMIN_H

#include <stdio.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"
#include "torii/table.h"

struct torii_admin;

struct torii_renewer;
/** The renewal thread serving POST .../_renew (NULL: those answer 503). Main thread only,
 * before torii_admin_start (and NULL again after torii_admin_stop). */
void torii_admin_set_renewer(struct torii_renewer *r);

struct torii_acme;
/** The ACME service serving POST /api/pki/certs/_letsencrypt and the job routes (NULL: those
 * answer 503). Main thread only, before torii_admin_start (and NULL after torii_admin_stop). */
void torii_admin_set_acme(struct torii_acme *a);

struct torii_daemon;
/** Bind the listener (errors reported synchronously) and start the admin thread. With a daemon
 * (daemon.h; borrowed, NULL: none) the admin loop attaches the beat "admin" and answers
 * GET/HEAD /healthz (torii_daemon_alive) and /readyz (torii_daemon_ready) without
 * authentication: 200 "ok" or 503, no details. */
int torii_admin_start(const struct torii_config *cfg, struct torii_store *store,
                      struct torii_table *table, struct torii_daemon *daemon,
                      struct torii_admin **out, struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop the loop, join the thread, free everything; NULL accepted. */
void torii_admin_stop(struct torii_admin *adm);

/** `torii token new [--id ID] [--scopes a,b]` (argv[0] is "token"): print a new random
 * 256-bit token once (hex) and the admin.tokens entry holding its SHA-256. Returns the process
 * exit status (0, or 2 on a usage error, 1 without randomness). */
int torii_admin_token_cmd(int argc, char **argv, FILE *out, FILE *err);

/* ---- built-in PKI (pki_bootstrap.c) ---- */

struct torii_pki_state;

/** First start of the built-in PKI: creates what is missing of `torii-root-ca` (self-signed,
 * 10 years), `torii-intermediate-ca` (signed by the root, 10 years, pathLen 0), both with the
 * key type of pki.ca_key, and the default certificate cfg->default_cert (server certificate
 * for localhost, 127.0.0.1 and the host name, issued by the intermediate, with AIA/CRL URLs
 * under pki.public_url). Existing entities are never replaced, whatever their state; when a
 * CA cannot sign (replaced by one without key) the default certificate falls back to a
 * self-signed one. Each creation is one durable write with its serial index entry.
 * Main thread, before the listeners start. TORII_ESTORE/TORII_ETLS (eb says why). */
int torii_admin_pki_bootstrap(const struct torii_config *cfg, struct torii_store *store,
                              struct torii_errbuf *eb) TORII_MUST_USE;

/** The PKI state served by the public listeners (pkistate.h): created with the durations of
 * cfg->pki, registered as a store watcher, loaded from the store, published, and its
 * refresher started (CRL numbers persisted in the store meta). Call before any other thread
 * uses the store (watchers are registered then). Free with torii_pki_state_free after the
 * workers and the admin server are stopped. */
int torii_admin_pki_state_open(const struct torii_config *cfg, struct torii_store *store,
                               struct torii_pki_state **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
