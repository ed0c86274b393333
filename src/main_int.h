/* main_int.h - internal to the daemon's executable (src/main*.c, no logic: wiring): the
 * state of the running process (struct app) and what its files ask of one another.
 *   main.c          argv, the configuration (--check-config), the run and its report;
 *   main_start.c    start-up wiring: instance lock, store, certificate table, PKI state,
 *                   fleet, outputs, the first generation, admin API and renewal, listeners
 *                   (inherited on --upgrade);
 *   main_signals.c  signals and events: stop (TERM, INT), reload (HUP), log reopening (USR1),
 *                   upgrade (USR2 and the hand-over of the sockets), reaping of drained
 *                   generations and successors, stale LMDB readers, ticket rotation, and the
 *                   stop sequence.
 * Ownership: struct app owns everything it points to (freed by torii_app_close).
 * Threads: the main thread only. */
#ifndef TORII_MAIN_INT_H
#define TORII_MAIN_INT_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "torii/acme.h"
#include "torii/admin.h"
#include "torii/alert.h"
#include "torii/certstats.h"
#include "torii/conf.h"
#include "torii/daemon.h"
#include "torii/err.h"
#include "torii/fleet.h"
#include "torii/handover.h"
#include "torii/jobgate.h"
#include "torii/pki.h"
#include "torii/proxy.h"
#include "torii/renew.h"
#include "torii/store.h"
#include "torii/table.h"
#include "torii/tls.h"

#define APP_MAX_OLD 8 /* generations still draining at once (then a reload is refused) */
/* LMDB reader slots of crashed processes (an mdb_copy backup killed mid-copy) are reclaimed
 * this often, and at open: a stale slot pins old pages, so the file would keep growing. */
#define APP_READER_CHECK_S 10
/* SIGUSR2 successors tracked for reaping at once (more are not expected: each takes over). */
#define APP_MAX_UPGRADES 8
/* An upgraded process waits this long for its predecessor to release the data-dir lock. */
#define APP_LOCK_WAIT_MS 30000

struct app {
    struct torii_config *cfg;              /* the start-up config: admin, renewal, alerts, store */
    const struct torii_config *alerts_cfg; /* the one the exporters borrow (reloadable) */
    const char *path;                      /* -c FILE, re-read on SIGHUP */
    char exe[PATH_MAX];                    /* this binary's path, exec'd on SIGUSR2 */
    int upgrade;                           /* --upgrade: take the sockets of the running torii */
    struct torii_store *store;
    struct torii_table *table;
    struct torii_admin *admin;
    struct torii_pki_state *pki;
    struct torii_certstats *certstats; /* the certificate gauges of /metrics */
    struct torii_alerts *alerts;
    struct torii_renewer *renewer;
    struct torii_acme_chal *acme_chal; /* pending ACME challenge answers (listeners read it) */
    struct torii_acme *acme;           /* the ACME thread; NULL without acme{} */
    struct torii_acme_od *acme_od;     /* on-demand decisions (workers ask); NULL: off */
    /* Successors started by SIGUSR2, reaped by pid: other children (the ACME DNS hook) are
     * waited for by whoever started them. */
    pid_t upgrade_pids[APP_MAX_UPGRADES];
    size_t n_upgrade_pids;
    struct torii_routes *routes;               /* compiled in main() (also for --check-config) */
    struct torii_kek_ring *kek;                /* keys at rest: NULL when no KEK is set */
    struct torii_fleet *fleet;                 /* fleet mode (fleet.etcd); NULL: local */
    struct torii_job_gate job_gate;            /* the fleet's one doer per job */
    struct torii_fleet_tickets *fleet_tickets; /* fleet mode: the shared ticket keys */
    struct torii_tls_tickets *tickets;   /* fleet mode: every generation's ticket keys; NULL: own */
    struct torii_proxy_gen *gen;         /* the generation new connections get */
    struct torii_fleet_chal *fleet_chal; /* fleet + acme: shared challenge answers */
    struct torii_acme_share acme_share;  /* the ACME service's hook onto fleet_chal */
    struct torii_acme_wishes acme_wishes;         /* fleet: on-demand names for the doer */
    struct torii_proxy_gen *old[APP_MAX_OLD + 1]; /* draining */
    size_t n_old;
    unsigned gen_seq;
    struct event_base *base;
    struct event *rotate;
    struct event *reap;          /* frees drained generations; ends the loop when stopping */
    struct event *ho_ev;         /* the upgrade socket */
    struct event *rdcheck;       /* LMDB stale readers */
    struct torii_daemon *daemon; /* instance lock, watchdog, health state */
    int ho_fd;
    int stopping;
    unsigned timeout_s;  /* stopping: shutdown_timeout_s of the configuration at work */
    int64_t deadline_us; /* stopping: requests still in flight then are cut */
    unsigned cut;
    long successor; /* pid that took over our sockets */
};

#define APP_NSIGS 5 /* signal events: TERM, INT, HUP, USR1, USR2 */

/* ---- main_start.c ---- */

/** Open the state in order: instance lock (and probe of the listen addresses), store,
 * certificate table, PKI state and certificates (fleet mode: from etcd), outputs. *ncerts:
 * the certificates loaded. */
int torii_app_open_state(struct app *app, size_t *ncerts, struct torii_errbuf *eb);
/** The first generation and the services; with --upgrade, on the running torii's sockets. */
int torii_app_serve(struct app *app, struct torii_errbuf *eb);
/** A generation of the proxy on cfg and routes (own_cfg: it owns cfg), on inherit's sockets
 * when given. */
int torii_app_gen_start(struct app *app, struct torii_config *cfg, int own_cfg,
                        struct torii_routes *routes, const struct torii_listen_socks *inherit,
                        struct torii_proxy_gen **out, struct torii_errbuf *eb);
/** The admin API and the renewal thread: one per data dir, handed over on upgrade. */
int torii_app_services_start(struct app *app, struct torii_errbuf *eb);
void torii_app_services_stop(struct app *app);

/* ---- main_signals.c ---- */

/** The signal events (sigs: APP_NSIGS of them), the reaper, the stale-reader check and the
 * ticket rotation on app->base. */
int torii_app_events(struct app *app, struct event **sigs, struct torii_errbuf *eb);
/** The upgrade socket's callback: a successor asks for our sockets. */
void torii_app_on_handover(evutil_socket_t fd, short what, void *arg);
/** The stop sequence: services, generations (drained until the deadline), state, events. */
void torii_app_close(struct app *app, struct event **sigs);

#endif
