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
 * Ownership: everything in torii_admin_opts is borrowed and must outlive the admin server. */
#ifndef TORII_ADMIN_H
#define TORII_ADMIN_H

#include <stdio.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

struct torii_admin;
struct torii_daemon;
struct torii_renewer;
struct torii_pki_state;
struct torii_certstats;
struct torii_acme;

/** What the admin server works with; all borrowed, each must outlive the server. */
struct torii_admin_opts {
    const struct torii_config *cfg; /* required */
    struct torii_store *store;      /* the certificate store (NULL only in listener tests) */
    /* The loop's beat "admin" and the unauthenticated GET/HEAD /healthz
     * (torii_daemon_alive) and /readyz (torii_daemon_ready): 200 "ok" or 503, no details.
     * NULL: no beat, no health routes. */
    struct torii_daemon *daemon;
    struct torii_renewer *renewer; /* POST .../_renew; NULL: those answer 503 */
    /* The PKI snapshot: GET /.well-known/jwks.json of the admin listener; NULL: 404. */
    struct torii_pki_state *pki;
    /* The certificate gauges of GET /metrics (certstats.h); NULL: those families are left
     * out. */
    struct torii_certstats *certstats;
    /* The ACME service (acme.h): POST /api/pki/certs/_letsencrypt, the job routes and the
     * ACME families of /metrics; NULL: those routes answer 503. */
    struct torii_acme *acme;
};

/** Bind the listener (errors reported synchronously) and start the admin thread. */
int torii_admin_start(const struct torii_admin_opts *opts, struct torii_admin **out,
                      struct torii_errbuf *eb) TORII_MUST_USE;
/** Stop the loop, join the thread, free everything; NULL accepted. */
void torii_admin_stop(struct torii_admin *adm);

/** `torii token new [--id ID] [--scopes a,b]` (argv[0] is "token"): print a new random
 * 256-bit token once (hex) and the admin.tokens entry holding its SHA-256. Returns the process
 * exit status (0, or 2 on a usage error, 1 without randomness). */
int torii_admin_token_cmd(int argc, char **argv, FILE *out, FILE *err);

/** `torii keys migrate|rotate [-c FILE] [--batch N]` (argv[0] is "keys"; keys_cmd.c,
 * docs/operations.md "Keys at rest"): seal every private key of the store under the current KEK
 * (and drop the key copy of TLS records written by older versions) (rotate: also re-seal those
 * under previous KEKs), N records per durable transaction, resumable, then compact the data file.
 * The daemon must be stopped. Main thread. Returns the exit status (0; 1 on failure, the reason on
 * err; 2 on a usage error). */
int torii_admin_keys_cmd(int argc, char **argv, FILE *out, FILE *err);

struct torii_config;
struct torii_kek_ring;
/** The KEK ring of cfg's "keys" section ($CREDENTIALS_DIRECTORY for credentials): *out NULL
 * when no KEK is configured. Main thread, at start. */
int torii_admin_kek_load(const struct torii_config *cfg, struct torii_kek_ring **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

#endif
