/* main.c - argv, config, wiring and the main loop (signals, ticket rotation): no logic. */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "torii/acme.h"
#include "torii/admin.h"
#include "torii/alert.h"
#include "torii/certdb.h"
#include "torii/certstats.h"
#include "torii/clock.h"
#include "torii/conf.h"
#include "torii/ctl.h"
#include "torii/daemon.h"
#include "torii/fleet.h"
#include "torii/handover.h"
#include "torii/jobgate.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkiboot.h"
#include "torii/pkistate.h"
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

static void usage(FILE *f)
{
    (void)fprintf(f, "usage: torii [-c FILE] [--check-config] [--upgrade] [--version]\n"
                     "       torii token new [--id ID] [--scopes read,write,...]\n"
                     "       torii ctl COMMAND ... (admin API client; torii ctl help)\n"
                     "       torii keys migrate|rotate [-c FILE] [--batch N]\n"
                     "  -c FILE          JSON configuration (default: embedded defaults)\n"
                     "  --check-config   validate the configuration and exit\n"
                     "  --upgrade        take over the listening sockets of the torii running\n"
                     "                   on the same data_dir, which then drains and exits\n"
                     "  --version        print the version and exit\n");
}

/* The certificate table's source (table.h): at a certificate's first handshake, its current
 * TLS record and the entity's privateKey as stored (maybe sealed, opened through the PKI).
 * Runs on worker threads, concurrently (one read transaction each). */
static int app_cert_load(void *arg, const char *id, torii_table_use_fn use, void *use_arg,
                         struct torii_errbuf *eb)
{
    struct app *app = arg;
    char *json = NULL;
    size_t json_len = 0;
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    json_t *ent = NULL;
    struct torii_pki_key_src key;
    int rc = torii_store_get(app->store, TORII_STORE_CERTS, id, &json, &json_len, &aux, &aux_len);

    if (rc != TORII_OK) {
        return torii_errf(eb, rc, "cannot read the certificate from the store: %s",
                          torii_strerror(rc));
    }
    ent = json_loadb(json, json_len, 0, NULL);
    key = torii_pki_key_src_of(ent, app->kek);
    key.id = id;
    rc = use(use_arg, aux, aux_len, &key, eb);
    torii_cert_secrets_wipe(ent);
    json_decref(ent);
    torii_secure_free(json, json_len + 1);
    torii_secure_free(aux, aux_len);
    return rc;
}

/* Store change feed -> certificate table. Runs on the writing thread, in commit order. The
 * table keeps what selection needs from the TLS record (no JSON parsed here: O(1) per write,
 * nothing per certificate at start-up but the record) and reads the rest through
 * app_cert_load at the certificate's first handshake. */
static void app_on_store_change(enum torii_store_op_kind kind, enum torii_store_bucket b,
                                const struct torii_store_rec *rec, void *arg)
{
    struct app *app = arg;
    struct torii_errbuf eb = {{0}};
    int del = kind == TORII_STORE_DELETE;
    char id[512];

    if (b != TORII_STORE_CERTS || rec->id_len >= sizeof(id)) {
        return;
    }
    memcpy(id, rec->id, rec->id_len);
    id[rec->id_len] = '\0';
    if (torii_table_update(app->table, id, del ? NULL : rec->aux, del ? 0 : rec->aux_len, NULL, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "main: certificate not served: %s (id=%s)", eb.msg, id);
    }
}

/* Start-up: a certificate from certdb's compact index (its record's summary: names, dates,
 * flags, issuer+serial; the record and key are read at first use), into the table's first
 * load (torii_table_bulk_*: published at once when the scan ends). */
static int app_load_one(const struct torii_certdb_idx *ix, void *arg)
{
    struct torii_table_bulk *bulk = arg;
    struct torii_errbuf eb = {{0}};
    char id[512];

    if (ix->id_len >= sizeof(id)) {
        return TORII_OK;
    }
    memcpy(id, ix->id, ix->id_len);
    id[ix->id_len] = '\0';
    if (ix->sum == NULL) {
        (void)torii_errf(&eb, TORII_EINVAL, "no certificate record that decodes");
    }
    if (ix->sum == NULL || torii_table_bulk_add(bulk, id, ix->sum, ix->sum_len, &eb) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "main: certificate not served: %s (id=%s)", eb.msg, id);
    }
    return TORII_OK;
}

/* The certificate table's first load, on a thread of its own while the main thread loads the
 * PKI state: two scans of the store at once (the two cores), joined before anything writes.
 * Nothing writes the store before the join (pkiboot_run and the API come after). */
struct app_table_load {
    struct app *app;
    int rc;
};

static void *app_table_load_main(void *arg)
{
    struct app_table_load *l = arg;
    struct torii_table_bulk *bulk = NULL;
    size_t n = 0;

    torii_table_reader_register(); /* once, not once per update (writers need it) */
    if (torii_store_count(l->app->store, TORII_STORE_CERTS, &n) != TORII_OK) {
        n = 0; /* only a size hint */
    }
    l->rc = torii_table_bulk_begin(l->app->table, n, &bulk);
    if (l->rc == TORII_OK) {
        l->rc = torii_certdb_idx_foreach(l->app->store, app_load_one, bulk);
        (void)torii_table_bulk_end(bulk); /* what was read is served even when the scan failed */
    }
    torii_table_reader_unregister();
    return NULL;
}

/* Draining: /readyz answers 503 from now on, systemd is told, and the log says it. */
static void app_mark_draining(struct app *app, const char *why)
{
    torii_log(TORII_LOG_NOTICE, "main: %s: draining (shutdown_timeout_s=%u)", why, app->timeout_s);
    torii_daemon_set_state(app->daemon, TORII_DAEMON_DRAINING);
    torii_daemon_notify("STOPPING=1");
}

/* Stop accepting and let what is in flight finish, up to shutdown_timeout_s. soft (upgrade):
 * idle keep-alive connections are closed by their next response, not at once. */
static void app_begin_stop(struct app *app, int soft, const char *why)
{
    if (app->stopping) {
        /* A second signal: no more waiting. */
        app->deadline_us = torii_clock_mono_us();
        torii_log(TORII_LOG_NOTICE, "main: %s again: stopping now", why);
        return;
    }
    app->stopping = 1;
    app->timeout_s = app->gen != NULL ? torii_proxy_gen_config(app->gen)->shutdown_timeout_s
                                      : app->cfg->shutdown_timeout_s;
    app->deadline_us = torii_clock_mono_us() + (int64_t)app->timeout_s * 1000000;
    app_mark_draining(app, why);
    if (app->gen != NULL) {
        app->old[app->n_old++] = app->gen;
        app->gen = NULL;
    }
    for (size_t i = 0; i < app->n_old; i++) {
        torii_proxy_gen_drain(app->old[i], !soft);
    }
    if (app->ho_ev != NULL) {
        (void)event_del(app->ho_ev);
    }
}

/* The configuration of a generation: owned by main, not by the generation (the exporters may
 * borrow it longer). */
static struct torii_config *app_gen_cfg(const struct torii_proxy_gen *g)
{
    return (struct torii_config *)(uintptr_t)torii_proxy_gen_config(g);
}

/* Free a configuration nothing uses any more: not the start-up one, not the exporters', not
 * a running generation's. */
static void app_cfg_release(struct app *app, struct torii_config *cfg)
{
    if (cfg == NULL || cfg == app->cfg || cfg == app->alerts_cfg
        || (app->gen != NULL && torii_proxy_gen_config(app->gen) == cfg)) {
        return;
    }
    for (size_t i = 0; i < app->n_old; i++) {
        if (app->old[i] != NULL && torii_proxy_gen_config(app->old[i]) == cfg) {
            return;
        }
    }
    torii_config_free(cfg);
}

/* A successor started by SIGUSR2 that exited (a failed upgrade) is reaped and logged. Only
 * those: waitpid(-1) would take the exit status of the ACME DNS hook from its waiter. */
static void app_reap_children(struct app *app)
{
    size_t i = 0;

    while (i < app->n_upgrade_pids) {
        int st = 0;
        pid_t pid = app->upgrade_pids[i];
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == 0 || (r < 0 && errno == EINTR)) {
            i++;
            continue;
        }
        if (r == pid) {
            torii_log(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? TORII_LOG_INFO : TORII_LOG_ERR,
                      "main: upgrade process %ld exited (status %d)", (long)pid,
                      WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        app->upgrade_pids[i] = app->upgrade_pids[--app->n_upgrade_pids];
    }
}

/* Every 100 ms: free the generations whose last connection ended; when stopping, end the
 * loop once all have, or at the deadline. */
static void app_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    size_t j = 0;

    (void)fd;
    (void)what;
    app_reap_children(app);
    for (size_t i = 0; i < app->n_old; i++) {
        if (torii_proxy_gen_drained(app->old[i])) {
            struct torii_config *cfg = app_gen_cfg(app->old[i]);
            torii_log(TORII_LOG_INFO, "main: configuration generation %u drained",
                      torii_proxy_gen_id(app->old[i]));
            app->cut += torii_proxy_gen_free(app->old[i]);
            app->old[i] = NULL;
            app_cfg_release(app, cfg);
        } else {
            app->old[j++] = app->old[i];
        }
    }
    app->n_old = j;
    if (app->stopping && (app->n_old == 0 || torii_clock_mono_us() >= app->deadline_us)) {
        (void)event_base_loopexit(app->base, NULL);
    }
}

static void app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app_begin_stop(arg, 0, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void app_reopen_logs(struct app *app)
{
    struct torii_errbuf eb = {{0}};
    const struct torii_config *cfg = app->gen != NULL ? torii_proxy_gen_config(app->gen) : app->cfg;

    if (torii_log_access_open(cfg->access_log_path, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: %s (the access log stays where it was)", eb.msg);
    }
    torii_alerts_reopen(app->alerts);
}

static void app_on_usr1(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    torii_log(TORII_LOG_NOTICE, "main: SIGUSR1, reopening the access log and alert files");
    app_reopen_logs(arg);
}

/* A new configuration, checked like at start plus the keys a reload cannot change; every
 * problem is logged. */
static int app_reload_load(struct app *app, struct torii_config **cfg, struct torii_routes **routes)
{
    struct torii_conf_errs errs = {NULL, 0};
    int rc = torii_config_check(app->path, cfg, &errs);

    if (*cfg != NULL && torii_routes_check(*cfg, routes, &errs) != TORII_OK) {
        rc = TORII_EINVAL;
    }
    if (*cfg != NULL && torii_config_reload_check(app->cfg, *cfg, &errs) != TORII_OK) {
        rc = TORII_EINVAL;
    }
    if (rc == TORII_OK && app->n_old >= APP_MAX_OLD) {
        torii_conf_errs_add(&errs, "reload: too many configurations still draining; try later");
        rc = TORII_EINVAL;
    }
    for (size_t i = 0; i < errs.n; i++) {
        torii_log(TORII_LOG_ERR, "main: reload refused: %s", errs.msgs[i]);
    }
    torii_conf_errs_free(&errs);
    return rc;
}

/* The renewal thread's ACME hook (renew.h) over the ACME service. */
static int app_acme_due(void *arg, const json_t *entity, int64_t now_ms)
{
    return torii_acme_renew_due(arg, entity, now_ms);
}

static int app_acme_renew(void *arg, const char *id, const json_t *entity, struct torii_errbuf *eb)
{
    return torii_acme_renew(arg, id, entity, eb);
}

/* torii_tls_on_demand_cb and _done_cb over the on-demand decisions. */
static int app_on_demand(void *arg, const char *name)
{
    return torii_acme_on_demand(arg, name);
}

static int app_on_demand_pending(void *arg, const char *name)
{
    return torii_acme_on_demand_pending(arg, name);
}

static void app_on_demand_done(void *arg, int served)
{
    torii_acme_on_demand_outcome(arg, served);
}

/* torii_tls_acme_alpn_cb over the ACME challenge table. */
static int app_acme_alpn(void *arg, const char *name, unsigned char **rec, size_t *rec_len)
{
    return torii_acme_chal_alpn(arg, name, rec, rec_len);
}

static int app_gen_start(struct app *app, struct torii_config *cfg, int own_cfg,
                         struct torii_routes *routes, const struct torii_listen_socks *inherit,
                         struct torii_proxy_gen **out, struct torii_errbuf *eb)
{
    struct torii_proxy_gen_opts o = {
        .cfg = cfg,
        .own_cfg = own_cfg,
        .routes = routes,
        .table = app->table,
        .ocsp_staple = torii_pki_state_staple_cb,
        .ocsp_staple_arg = app->pki,
        .acme_alpn = cfg->acme.enabled ? app_acme_alpn : NULL,
        .acme_alpn_arg = app->acme_chal,
        .acme_chal = app->acme_chal,
        .on_demand = app->acme_od != NULL ? app_on_demand : NULL,
        .on_demand_done = app_on_demand_done,
        .on_demand_pending = app_on_demand_pending,
        .on_demand_arg = app->acme_od,
        .on_demand_wait_ms = cfg->acme.on_demand.wait_ms,
        .inherit = inherit,
        .daemon = app->daemon,
        .pki = app->pki,
        .tickets = app->tickets,
        .id = ++app->gen_seq,
    };

    return torii_proxy_gen_start(&o, out, eb);
}

/* Publish a started generation: new connections get it, the old one drains. */
static void app_gen_publish(struct app *app, struct torii_proxy_gen *g)
{
    const struct torii_config *cfg = torii_proxy_gen_config(g);
    struct timeval rot = {.tv_sec = cfg->ticket_rotate_s};
    enum torii_log_level lvl;

    torii_proxy_gen_drain(app->gen, 0);
    app->old[app->n_old++] = app->gen;
    app->gen = g;
    if (torii_log_level_parse(cfg->log_level, &lvl) == TORII_OK) {
        torii_log_set_level(lvl);
    }
    torii_fleet_tickets_period(app->fleet_tickets, cfg->ticket_rotate_s);
    (void)event_del(app->rotate);
    if (cfg->ticket_rotate_s != 0 && event_add(app->rotate, &rot) != 0) {
        torii_log(TORII_LOG_ERR, "main: cannot schedule session ticket rotation");
    }
}

/* exporters[] changed: the alerts get the new exporters (the old ones deliver what they hold).
 * A failure here (a webhook client certificate missing from the store, say) keeps the old
 * exporters: logged, the rest of the reload stands. */
static void app_exporters_reload(struct app *app, struct torii_config *cfg)
{
    struct torii_errbuf eb = {{0}};
    const struct torii_config *prev = app->alerts_cfg;

    if (json_equal(prev->exporters, cfg->exporters)
        || (prev->exporters == NULL && cfg->exporters == NULL)) {
        return;
    }
    if (torii_alerts_reload(app->alerts, cfg, app->store, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: exporters not reloaded, the previous ones stay: %s",
                  eb.msg);
        return;
    }
    app->alerts_cfg = cfg;
    torii_log(TORII_LOG_NOTICE, "main: exporters reloaded (%zu)", cfg->n_exporters);
    app_cfg_release(app, (struct torii_config *)(uintptr_t)prev);
}

static void app_on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    struct torii_errbuf eb = {{0}};
    struct torii_config *cfg = NULL;
    struct torii_routes *routes = NULL;
    struct torii_proxy_gen *g = NULL;
    struct torii_listen_sock *socks = NULL;
    struct torii_listen_socks in = {NULL, 0};
    char msg[96];

    (void)sig;
    (void)what;
    if (app->stopping) {
        return;
    }
    (void)snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld",
                   (long long)torii_clock_mono_us());
    torii_daemon_notify(msg);
    torii_log(TORII_LOG_NOTICE, "main: SIGHUP, reloading %s", app->path ? app->path : "(defaults)");
    if (app_reload_load(app, &cfg, &routes) == TORII_OK) {
        socks = torii_xcalloc((size_t)app->cfg->workers * 2, sizeof(*socks));
        in.v = socks;
        in.n = torii_proxy_gen_listeners(app->gen, socks, (size_t)app->cfg->workers * 2);
        if (app_gen_start(app, cfg, 0, routes, &in, &g, &eb) == TORII_OK) {
            app_gen_publish(app, g);
            app_exporters_reload(app, cfg);
            torii_log(TORII_LOG_NOTICE, "main: configuration reloaded (generation %u)",
                      torii_proxy_gen_id(g));
            cfg = NULL; /* main's, freed with the last user (app_cfg_release) */
            routes = NULL;
        } else {
            torii_log(TORII_LOG_ERR, "main: reload refused: %s", eb.msg);
        }
    }
    if (g == NULL) {
        torii_log(TORII_LOG_ERR, "main: reload refused: the running configuration stays");
    }
    free(socks);
    torii_routes_free(routes);
    torii_config_free(cfg);
    app_reopen_logs(app); /* the access log (maybe moved) and alert files, reload or not */
    torii_daemon_notify("READY=1");
}

static void app_on_reader_check(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    int cleared = 0;

    (void)fd;
    (void)what;
    if (torii_store_reader_check(app->store, &cleared) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "main: periodic LMDB reader check failed");
    }
}

/* One torii per listen address: refuse to start when another process listens on one of ours
 * (all our sockets use SO_REUSEPORT, which would otherwise share the port silently). */
static int app_probe_listeners(const struct torii_config *cfg, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (cfg->listen_https[0] != '\0') {
        TORII_TRY(torii_daemon_probe_listen("listen.https", cfg->listen_https, eb));
    }
    if (cfg->listen_http[0] != '\0') {
        TORII_TRY(torii_daemon_probe_listen("listen.http", cfg->listen_http, eb));
    }
    TORII_TRY(torii_daemon_probe_listen("admin.listen", cfg->admin_listen, eb));
out:
    return rc;
}

static void app_on_rotate(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    (void)fd;
    (void)what;
    if (app->tickets != NULL) {
        return; /* fleet mode: the fleet rotates the shared keys */
    }
    if (app->gen != NULL
        && torii_tls_ctx_rotate_tickets(torii_proxy_gen_tls(app->gen)) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: session ticket key rotation failed");
    }
}

static int app_make_data_dir(const char *dir, struct torii_errbuf *eb)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return torii_errf(eb, TORII_EIO, "cannot create data dir %s: %s", dir,
                          torii_errno_text(errno).s);
    }
    return TORII_OK;
}

/* The admin API and the renewal thread: one per data dir, handed over on upgrade. */
static int app_services_start(struct app *app, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_admin_opts ao = {.cfg = app->cfg, .store = app->store, .daemon = app->daemon};
    struct torii_renewer_opts ro = {.cfg = app->cfg, .store = app->store, .alerts = app->alerts};
    struct torii_renew_acme hook = {app_acme_due, app_acme_renew, NULL};
    const struct torii_job_gate *gate = NULL; /* a single node does every job */

    if (app->fleet != NULL) {
        torii_fleet_job_gate(app->fleet, &app->job_gate);
        torii_fleet_wishes(app->fleet, &app->acme_wishes);
        gate = &app->job_gate;
    }
    ro.gate = gate;
    if (app->cfg->acme.enabled) {
        struct torii_acme_opts aco = {.conf = &app->cfg->acme,
                                      .store = app->store,
                                      .chal = app->acme_chal,
                                      .od = app->acme_od,
                                      .gate = gate,
                                      .share = app->fleet_chal != NULL ? &app->acme_share : NULL,
                                      .wishes = app->fleet != NULL ? &app->acme_wishes : NULL};
        TORII_TRY(torii_acme_start(&aco, &app->acme, eb));
        hook.arg = app->acme;
        ro.acme = &hook;
    }
    TORII_TRY(torii_renewer_start(&ro, &app->renewer, eb));
    ao.renewer = app->renewer;
    ao.pki = app->pki;
    ao.certstats = app->certstats;
    ao.acme = app->acme;
    TORII_TRY(torii_admin_start(&ao, &app->admin, eb));
out:
    return rc;
}

static void app_services_stop(struct app *app)
{
    torii_admin_stop(app->admin);
    app->admin = NULL;
    /* An ACME renewal in flight on the renewal thread ends at once (its wait is cut short),
     * so the renewal thread stops promptly; the ACME service is freed after it. */
    torii_acme_cancel(app->acme);
    /* The renewal thread writes to the store, whose watcher raises alerts: stop it first. */
    torii_renewer_stop(app->renewer);
    app->renewer = NULL;
    torii_acme_stop(app->acme);
    app->acme = NULL;
}

/* SIGUSR2: start the new binary with --upgrade; it takes our sockets (app_on_handover). */
static void app_on_usr2(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    static char opt_upgrade[] = "--upgrade";
    static char opt_c[] = "-c";
    char *argv[5] = {app->exe, opt_upgrade, NULL, NULL, NULL};
    pid_t pid;

    (void)sig;
    (void)what;
    if (app->stopping) {
        return;
    }
    if (app->path != NULL) {
        argv[2] = opt_c;
        argv[3] = (char *)(uintptr_t)app->path;
    }
    pid = fork();
    if (pid == 0) {
        (void)execv(app->exe, argv);
        _exit(127);
    }
    if (pid < 0) {
        torii_log_errno(TORII_LOG_ERR, "main: SIGUSR2: cannot start %s", app->exe);
        return;
    }
    torii_log(TORII_LOG_NOTICE, "main: SIGUSR2, started %s --upgrade (pid %ld)", app->exe,
              (long)pid);
    if (app->n_upgrade_pids < APP_MAX_UPGRADES) {
        app->upgrade_pids[app->n_upgrade_pids++] = pid;
    }
}

/* A successor asks for our sockets: give them, then drain. Admin and renewal stop first (the
 * successor runs its own) and come back if the hand-over fails. */
static void app_on_handover(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    struct torii_errbuf eb = {{0}};
    size_t cap = (size_t)app->cfg->workers * 2;
    struct torii_listen_sock *socks = NULL;
    size_t n;
    int conn = -1;
    long pid = 0;

    (void)fd;
    (void)what;
    if (app->stopping || torii_handover_accept(app->ho_fd, &conn, &pid, &eb) != TORII_OK) {
        goto out;
    }
    socks = torii_xcalloc(cap, sizeof(*socks));
    n = torii_proxy_gen_listeners(app->gen, socks, cap);
    torii_log(TORII_LOG_NOTICE, "main: upgrade: pid %ld takes over %zu listening sockets", pid, n);
    app_services_stop(app);
    if (torii_handover_give(conn, socks, n, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: upgrade aborted, serving on: %s", eb.msg);
        eb.msg[0] = '\0';
        if (app_services_start(app, &eb) != TORII_OK) {
            torii_log(TORII_LOG_ERR, "main: %s", eb.msg);
            app_begin_stop(app, 0, "admin restart failed");
        }
        goto out;
    }
    app->successor = pid;
    torii_daemon_unlock(app->daemon); /* the successor takes the data-dir lock now */
    app_begin_stop(app, 1, "upgrade");
out:
    if (eb.msg[0] != '\0' && pid == 0) {
        torii_log(TORII_LOG_WARN, "main: %s", eb.msg);
    }
    if (conn >= 0) {
        (void)close(conn);
    }
    free(socks);
}
/* Once at start: whether stored keys are sealed, and under which KEK. */
static void app_kek_notice(const struct app *app)
{
    char cur[2 * TORII_KEK_ID_LEN + 1];

    if (torii_kek_ring_current_id(app->kek, cur) != TORII_OK) {
        torii_log(TORII_LOG_WARN,
                  "main: no KEK configured (keys.kek_file or keys.kek_credential): private keys "
                  "in %s are not encrypted at rest (docs/operations.md, Keys at rest)",
                  app->cfg->data_dir);
        return;
    }
    torii_log(TORII_LOG_NOTICE, "main: keys at rest: current KEK %s, %zu KEK%s loaded", cur,
              torii_kek_ring_count(app->kek), torii_kek_ring_count(app->kek) == 1 ? "" : "s");
}

/* The certificate table and the PKI state, each loaded by one scan of the store, at once. */
static int app_load_state(struct app *app, struct torii_errbuf *eb)
{
    struct app_table_load l = {app, TORII_OK};
    pthread_t th;
    int threaded = pthread_create(&th, NULL, app_table_load_main, &l) == 0;
    int rc;

    if (!threaded) {
        (void)app_table_load_main(&l); /* no thread to be had: one after the other */
    }
    rc = torii_pkiboot_state_open(app->cfg, app->store, &app->pki, eb);
    if (threaded) {
        (void)pthread_join(th, NULL);
    }
    if (rc == TORII_OK && l.rc != TORII_OK) {
        rc = torii_errf(eb, l.rc, "cannot load the certificates: %s", torii_strerror(l.rc));
    }
    return rc;
}

/* Fleet mode (docs/fleet.md): etcd becomes the source of truth of the certificates, after
 * this node's own PKI bootstrap (an empty fleet is seeded from this store); with acme{}, the
 * challenge answers are shared too (the ACME service gets acme_share). */
static int app_tickets_install(void *arg, const struct torii_tls_ticket_keys *ks)
{
    return torii_tls_tickets_install(arg, ks);
}

static int app_fleet_start(struct app *app, struct torii_errbuf *eb)
{
    struct torii_fleet_opts fo = {.conf = &app->cfg->fleet,
                                  .store = app->store,
                                  .kek = app->kek,
                                  .stall_file = app->cfg->debug_stall_file,
                                  .pki = app->pki,
                                  .od = app->acme_od};
    struct torii_fleet_tickets_opts to = {.period_s = app->cfg->ticket_rotate_s,
                                          .install = app_tickets_install};
    struct torii_fleet_chal_opts co = {
        .conf = &app->cfg->fleet, .kek = app->kek, .table = app->acme_chal};
    int rc = TORII_OK;

    if (!app->cfg->fleet.enabled) {
        return TORII_OK;
    }
    TORII_TRY(torii_fleet_start(&fo, &app->fleet, eb));
    /* Session tickets resume on every node: one key set shared by all generations. */
    TORII_ENSURE(torii_tls_tickets_new(&app->tickets) == TORII_OK,
                 torii_errf(eb, TORII_EIO, "cannot make a session ticket key"));
    to.fleet = app->fleet;
    to.arg = app->tickets;
    TORII_TRY(torii_fleet_tickets_start(&to, &app->fleet_tickets, eb));
    if (app->cfg->acme.enabled) { /* any node may answer the CA (docs/fleet.md) */
        TORII_TRY(torii_fleet_chal_start(&co, &app->fleet_chal, eb));
        app->acme_share = (struct torii_acme_share){.ctx = app->fleet_chal,
                                                    .publish = torii_fleet_chal_publish,
                                                    .withdraw = torii_fleet_chal_withdraw};
    }
out:
    return rc;
}

/* The daemon handle and the data dir; unless upgrading, the instance lock and a probe of the
 * listen addresses. */
static int app_open_instance(struct app *app, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(torii_daemon_new(app->cfg, &app->daemon, eb));
    TORII_TRY(app_make_data_dir(app->cfg->data_dir, eb));
    if (!app->upgrade) {
        /* One torii per data dir and per listen address; a successor (upgrade) inherits the
         * sockets and takes the lock once its predecessor hands over (app_serve). */
        TORII_TRY(torii_daemon_lock(app->daemon, app->cfg->data_dir, eb));
        TORII_TRY(app_probe_listeners(app->cfg, eb));
    }
out:
    return rc;
}

/* The KEK ring and the store sealed with it, migrated from an older torii's layout. */
static int app_open_store(struct app *app, struct torii_errbuf *eb)
{
    struct torii_store_opts sopts = {.dir = app->cfg->data_dir, .certidx = torii_certdb_idx_derive};
    int rc = TORII_OK;

    TORII_TRY(torii_admin_kek_load(app->cfg, &app->kek, eb));
    app_kek_notice(app);
    sopts.kek = app->kek; /* certdb seals every key it writes with it */
    TORII_TRY(torii_store_open(&sopts, &app->store, eb));
    TORII_TRY(torii_certdb_migrate(app->store, eb)); /* stores written by an older torii */
out:
    return rc;
}

/* The certificate table, the ACME challenge answers and on-demand decisions the listeners
 * read, and the store watch that keeps them current. */
static int app_open_table(struct app *app)
{
    int rc = TORII_OK;

    TORII_TRY(torii_table_new_src(&(struct torii_table_src){app_cert_load, app}, &app->table));
    TORII_TRY(torii_acme_chal_new(&app->acme_chal));
    app->acme_od = app->cfg->acme.enabled ? torii_acme_od_new(&app->cfg->acme.on_demand) : NULL;
    torii_table_set_default(app->table, app->cfg->default_cert);
    TORII_TRY(torii_store_watch(app->store, app_on_store_change, app));
out:
    return rc;
}

/* The state read from the store (table, PKI, certificate gauges), the PKI bootstrap and the
 * fleet; *ncerts the certificates stored then. */
static int app_open_certs(struct app *app, size_t *ncerts, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(app_load_state(app, eb));
    TORII_TRY(torii_certstats_open(app->store, &app->certstats, eb));
    TORII_TRY(torii_pkiboot_run(app->cfg, app->store, eb));
    TORII_TRY(app_fleet_start(app, eb));
    TORII_TRY(torii_store_count(app->store, TORII_STORE_CERTS, ncerts));
out:
    return rc;
}

/* The alerts (raised on store changes) and the access log. */
static int app_open_outputs(struct app *app, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(torii_alerts_new(app->cfg, app->store, &app->alerts, eb));
    app->alerts_cfg = app->cfg;
    TORII_TRY(torii_alerts_watch_store(app->alerts, app->store));
    TORII_TRY(torii_log_access_open(app->cfg->access_log_path, eb));
out:
    return rc;
}

static int app_open_state(struct app *app, size_t *ncerts, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(app_open_instance(app, eb));
    TORII_TRY(app_open_store(app, eb));
    TORII_TRY(app_open_table(app));
    TORII_TRY(app_open_certs(app, ncerts, eb));
    TORII_TRY(app_open_outputs(app, eb));
out:
    return rc;
}

#define APP_NSIGS 5

static int app_events(struct app *app, struct event **sigs, struct torii_errbuf *eb)
{
    static const int nums[APP_NSIGS] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    static const event_callback_fn cbs[APP_NSIGS] = {app_on_signal, app_on_signal, app_on_hup,
                                                     app_on_usr1, app_on_usr2};
    struct timeval rot = {.tv_sec = app->cfg->ticket_rotate_s};
    struct timeval tick = {.tv_sec = 0, .tv_usec = 100000};
    struct timeval rdc = {.tv_sec = APP_READER_CHECK_S};
    int rc = TORII_OK;

    app->base = event_base_new();
    TORII_ENSURE(app->base != NULL, torii_errf(eb, TORII_ENOMEM, "event_base_new failed"));
    for (int i = 0; i < APP_NSIGS; i++) {
        sigs[i] = evsignal_new(app->base, nums[i], cbs[i], app);
        TORII_ENSURE(sigs[i] != NULL && event_add(sigs[i], NULL) == 0,
                     torii_errf(eb, TORII_EIO, "cannot watch signal %d", nums[i]));
    }
    app->rotate = event_new(app->base, -1, EV_PERSIST, app_on_rotate, app);
    app->reap = event_new(app->base, -1, EV_PERSIST, app_on_reap, app);
    app->rdcheck = event_new(app->base, -1, EV_PERSIST, app_on_reader_check, app);
    TORII_ENSURE(app->rotate != NULL && app->reap != NULL && app->rdcheck != NULL, TORII_ENOMEM);
    TORII_ENSURE(event_add(app->rotate, app->cfg->ticket_rotate_s ? &rot : NULL) == 0
                     && event_add(app->reap, &tick) == 0 && event_add(app->rdcheck, &rdc) == 0,
                 TORII_EIO);
out:
    return rc;
}

/* --upgrade: every socket received must be one this configuration listens on, in a worker
 * slot it has; otherwise a connection queued in it would be lost. */
static int app_check_inherited(const struct app *app, const struct torii_listen_socks *in,
                               struct torii_errbuf *eb)
{
    for (size_t i = 0; i < in->n; i++) {
        const struct torii_listen_sock *ls = &in->v[i];
        const char *mine = ls->kind == 0 ? app->cfg->listen_https : app->cfg->listen_http;
        if (ls->slot >= app->cfg->workers || strcmp(ls->addr, mine) != 0) {
            return torii_errf(eb, TORII_EINVAL,
                              "upgrade: the running torii listens on %s (worker %u): workers and "
                              "listen.* must be the same for an upgrade; restart instead",
                              ls->addr, ls->slot);
        }
    }
    return TORII_OK;
}

/* The listening sockets' source: with --upgrade, the running torii's (*conn, in: checked
 * against this configuration); otherwise a fresh hand-over socket for a successor. */
static int app_serve_sockets(struct app *app, int *conn, struct torii_listen_socks *in,
                             struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (app->upgrade) {
        TORII_TRY(torii_handover_take(app->cfg->data_dir, conn, in, eb));
        TORII_TRY(app_check_inherited(app, in, eb));
    } else {
        TORII_TRY(torii_handover_listen(app->cfg->data_dir, &app->ho_fd, eb));
    }
out:
    return rc;
}

/* --upgrade, once serving on the n inherited sockets: tell the predecessor (conn), take the
 * data-dir lock it releases, then listen for a successor of our own. */
static int app_serve_upgraded(struct app *app, int conn, size_t n, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (conn >= 0) {
        TORII_TRY(torii_handover_serving(conn, eb));
        torii_log(TORII_LOG_NOTICE, "main: upgrade: took over %zu listening sockets (pid %ld)", n,
                  (long)getpid());
        TORII_TRY(torii_daemon_lock_wait(app->daemon, app->cfg->data_dir, APP_LOCK_WAIT_MS, eb));
    }
    if (app->upgrade) {
        TORII_TRY(torii_handover_listen(app->cfg->data_dir, &app->ho_fd, eb));
    }
out:
    return rc;
}

/* The first generation and the services; with --upgrade, on the running torii's sockets. */
static int app_serve(struct app *app, struct torii_errbuf *eb)
{
    struct torii_listen_socks in = {NULL, 0};
    int conn = -1;
    int rc = TORII_OK;

    TORII_TRY(app_serve_sockets(app, &conn, &in, eb));
    TORII_TRY(app_gen_start(app, app->cfg, 0, app->routes, &in, &app->gen, eb));
    app->routes = NULL; /* the generation's now */
    TORII_TRY(app_services_start(app, eb));
    TORII_TRY(app_serve_upgraded(app, conn, in.n, eb));
    app->ho_ev = event_new(app->base, app->ho_fd, EV_READ | EV_PERSIST, app_on_handover, app);
    TORII_ENSURE(app->ho_ev != NULL && event_add(app->ho_ev, NULL) == 0, TORII_ENOMEM);
out:
    torii_handover_socks_free(&in);
    if (conn >= 0) {
        (void)close(conn);
    }
    return rc;
}

static void app_close(struct app *app, struct event **sigs)
{
    app_services_stop(app);
    if (app->gen != NULL) {
        app->old[app->n_old++] = app->gen;
        app->gen = NULL;
    }
    for (size_t i = 0; i < app->n_old; i++) {
        struct torii_config *cfg = app_gen_cfg(app->old[i]);
        app->cut += torii_proxy_gen_free(app->old[i]);
        app->old[i] = NULL;
        app_cfg_release(app, cfg);
    }
    app->n_old = 0;
    torii_alerts_free(app->alerts); /* flushes the exporters' queues */
    if (app->alerts_cfg != app->cfg) {
        torii_config_free((struct torii_config *)(uintptr_t)app->alerts_cfg);
    }
    app->alerts_cfg = NULL;
    torii_log_access_close();
    for (int i = 0; i < APP_NSIGS; i++) {
        if (sigs[i] != NULL) {
            event_free(sigs[i]);
        }
    }
    if (app->rotate != NULL) {
        event_free(app->rotate);
    }
    if (app->reap != NULL) {
        event_free(app->reap);
    }
    if (app->ho_ev != NULL) {
        event_free(app->ho_ev);
    }
    if (app->ho_fd >= 0) {
        (void)close(app->ho_fd); /* not unlinked: a successor may have bound the path */
    }
    if (app->rdcheck != NULL) {
        event_free(app->rdcheck);
    }
    torii_daemon_unwatch(app->daemon); /* its check timer is on base */
    if (app->base != NULL) {
        event_base_free(app->base);
    }
    torii_routes_free(app->routes);
    app->routes = NULL;
    torii_table_free(app->table);
    torii_fleet_chal_stop(app->fleet_chal); /* it fills acme_chal: stopped before */
    app->fleet_chal = NULL;
    torii_acme_chal_free(app->acme_chal); /* after the workers and the ACME thread */
    app->acme_chal = NULL;
    torii_acme_od_free(app->acme_od); /* likewise */
    app->acme_od = NULL;
    torii_fleet_tickets_stop(app->fleet_tickets); /* its hook fills app->tickets */
    app->fleet_tickets = NULL;
    torii_tls_tickets_free(app->tickets); /* after the generations */
    app->tickets = NULL;
    torii_fleet_stop(app->fleet); /* after the services (writers), before the store */
    app->fleet = NULL;
    torii_pki_state_free(app->pki);       /* after every store writer stopped */
    torii_certstats_free(app->certstats); /* likewise */
    torii_store_free(app->store);
    torii_daemon_free(app->daemon); /* releases the instance lock, after the store is closed */
    app->daemon = NULL;
    torii_kek_ring_free(app->kek);
    app->kek = NULL;
}

static int app_run(struct app *app)
{
    struct torii_errbuf eb = {{0}};
    struct event *sigs[APP_NSIGS] = {NULL};
    int64_t t0 = torii_clock_mono_us();
    size_t ncerts = 0;
    char msg[64];
    int rc = TORII_OK;

    app->ho_fd = -1;
    TORII_TRY(app_open_state(app, &ncerts, &eb));
    TORII_TRY(app_events(app, sigs, &eb));
    TORII_TRY(app_serve(app, &eb));
    TORII_TRY(torii_daemon_watch(app->daemon, app->base));
    torii_daemon_set_state(app->daemon, TORII_DAEMON_READY);
    torii_log(TORII_LOG_NOTICE,
              "main: torii %s ready: %zu certificates, start-up %.1f ms (admin=%s data=%s)",
              TORII_VERSION, ncerts, (double)(torii_clock_mono_us() - t0) / 1000.0,
              app->cfg->admin_listen, app->cfg->data_dir);
    (void)snprintf(msg, sizeof(msg), "MAINPID=%ld\nREADY=1\nSTATUS=serving", (long)getpid());
    torii_daemon_notify(msg);
    if (event_base_dispatch(app->base) < 0) {
        rc = torii_errf(&eb, TORII_EIO, "main loop failed");
    }
out:
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: %s", eb.msg[0] ? eb.msg : torii_strerror(rc));
    }
    app_close(app, sigs);
    if (app->cut > 0) {
        torii_log(TORII_LOG_ERR,
                  "main: shutdown_timeout_s (%us) cut %u connection%s with a request in flight",
                  app->timeout_s, app->cut, app->cut == 1 ? "" : "s");
        rc = rc == TORII_OK ? TORII_EIO : rc;
    }
    return rc;
}

/* The configuration and its routes; every problem found is printed on its own line. */
static int app_load_config(const char *path, struct app *app)
{
    struct torii_conf_errs errs = {NULL, 0};
    int rc = torii_config_check(path, &app->cfg, &errs);

    if (app->cfg != NULL && torii_routes_check(app->cfg, &app->routes, &errs) != TORII_OK) {
        rc = TORII_EINVAL;
    }
    for (size_t i = 0; i < errs.n; i++) {
        (void)fprintf(stderr, "torii: %s\n", errs.msgs[i]);
    }
    if (rc != TORII_OK) {
        (void)fprintf(stderr, "torii: configuration %s is not valid (%zu problem%s)\n",
                      path ? path : "(defaults)", errs.n, errs.n == 1 ? "" : "s");
        torii_routes_free(app->routes);
        app->routes = NULL;
        torii_config_free(app->cfg);
        app->cfg = NULL;
    }
    torii_conf_errs_free(&errs);
    return rc;
}

/* The path to exec for an upgrade: where this binary was started from (the package manager
 * replaces the file there). */
static void app_self_exe(const char *argv0, char *out, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", out, len - 1);

    if (n > 0) {
        out[n] = '\0';
        /* "/usr/sbin/torii (deleted)" once the file has been replaced: the new one is there. */
        if ((size_t)n > 10 && strcmp(out + n - 10, " (deleted)") == 0) {
            out[n - 10] = '\0';
        }
    } else {
        (void)snprintf(out, len, "%s", argv0);
    }
}

int main(int argc, char **argv)
{
    struct app app = {0};
    struct torii_errbuf heb = {{0}};
    const char *path = NULL;
    int check_only = 0;
    enum torii_log_level lvl;
    int rc;

    /* First of all: no core dump may carry a key or a KEK out of this process. */
    if (torii_daemon_harden(&heb) != TORII_OK) {
        (void)fprintf(stderr, "torii: %s\n", heb.msg);
        return 1;
    }
    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return torii_admin_token_cmd(argc - 1, argv + 1, stdout, stderr);
    }
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
        return torii_ctl_main(argc - 1, argv + 1, stdout, stderr);
    }
    if (argc >= 2 && strcmp(argv[1], "keys") == 0) {
        return torii_admin_keys_cmd(argc - 1, argv + 1, stdout, stderr);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = 1;
        } else if (strcmp(argv[i], "--upgrade") == 0) {
            app.upgrade = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            (void)printf("torii %s (%s)\n", TORII_VERSION, OpenSSL_version(OPENSSL_VERSION));
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (app_load_config(path, &app) != TORII_OK) {
        return 1;
    }
    if (check_only) {
        (void)printf("torii: configuration %s is valid\n", path ? path : "(defaults)");
        torii_routes_free(app.routes);
        torii_config_free(app.cfg);
        return 0;
    }
    if (torii_log_level_parse(app.cfg->log_level, &lvl) == TORII_OK) {
        torii_log_set_level(lvl);
    }
    (void)signal(SIGPIPE, SIG_IGN);
    torii_log_detect_journal();
    app.path = path;
    app_self_exe(argv[0], app.exe, sizeof(app.exe));
    if (evthread_use_pthreads() != 0) {
        torii_fatal("main: evthread_use_pthreads failed");
    }
    rc = app_run(&app);
    if (app.successor != 0) {
        torii_log(TORII_LOG_NOTICE,
                  "main: torii %s exiting (status %d, pid %ld): handed over to pid %ld",
                  TORII_VERSION, rc == TORII_OK ? 0 : 1, (long)getpid(), app.successor);
    } else {
        torii_log(TORII_LOG_NOTICE, "main: torii %s exiting (status %d, pid %ld)", TORII_VERSION,
                  rc == TORII_OK ? 0 : 1, (long)getpid());
    }
    torii_config_free(app.cfg);
    libevent_global_shutdown();
    return rc == TORII_OK ? 0 : 1;
}
