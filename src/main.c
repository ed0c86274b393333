/* main.c - argv, config, wiring and the main loop (signals, ticket rotation): no logic. */
#include <sys/stat.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "torii/admin.h"
#include "torii/alert.h"
#include "torii/clock.h"
#include "torii/conf.h"
#include "torii/daemon.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkistate.h"
#include "torii/proxy.h"
#include "torii/renew.h"
#include "torii/store.h"
#include "torii/table.h"
#include "torii/tls.h"

struct app {
    struct torii_config *cfg;
    struct torii_store *store;
    struct torii_table *table;
    struct torii_tls_ctx *tls;
    struct torii_workers *workers;
    struct torii_admin *admin;
    struct torii_pki_state *pki;
    struct torii_alerts *alerts;
    struct torii_renewer *renewer;
    struct torii_routes *routes; /* compiled in main() (also for --check-config) */
    struct torii_daemon *daemon; /* instance lock, watchdog, health state */
    struct event_base *base;
};

/* LMDB reader slots of crashed processes (an mdb_copy backup killed mid-copy) are reclaimed
 * this often, and at open: a stale slot pins old pages, so the file would keep growing. */
#define APP_READER_CHECK_S 10

static void usage(FILE *f)
{
    (void)fprintf(f, "usage: torii [-c FILE] [--check-config] [--version]\n"
                     "       torii token new [--id ID] [--scopes read,write,...]\n"
                     "  -c FILE          JSON configuration (default: embedded defaults)\n"
                     "  --check-config   validate the configuration and exit\n"
                     "  --version        print the version and exit\n");
}

/* Store change feed -> certificate table. Runs on the writing thread, in commit order. */
static void app_on_store_change(enum torii_store_op_kind kind, enum torii_store_bucket b,
                                const struct torii_store_rec *rec, void *arg)
{
    struct app *app = arg;
    struct torii_errbuf eb = {{0}};
    char id[512];

    if (b != TORII_STORE_CERTS || rec->id_len >= sizeof(id)) {
        return;
    }
    memcpy(id, rec->id, rec->id_len);
    id[rec->id_len] = '\0';
    if (torii_table_update(app->table, id, kind == TORII_STORE_DELETE ? NULL : rec->aux,
                           kind == TORII_STORE_DELETE ? 0 : rec->aux_len, &eb)
        != TORII_OK) {
        torii_log(TORII_LOG_WARN, "main: certificate not served: %s (id=%s)", eb.msg, id);
    }
}

static int app_load_one(const struct torii_store_rec *rec, void *arg)
{
    app_on_store_change(TORII_STORE_PUT, TORII_STORE_CERTS, rec, arg);
    return TORII_OK;
}

static void app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    (void)what;
    torii_log(TORII_LOG_NOTICE, "main: signal %d, shutting down", (int)sig);
    torii_daemon_set_state(app->daemon, TORII_DAEMON_DRAINING);
    torii_daemon_notify("STOPPING=1");
    (void)event_base_loopexit(app->base, NULL);
}

static void app_on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    char msg[64];

    (void)sig;
    (void)what;
    (void)snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld",
                   (long long)torii_clock_mono_us());
    torii_daemon_notify(msg);
    torii_log(TORII_LOG_NOTICE, "main: SIGHUP, reopening alert files");
    torii_alerts_reopen(app->alerts);
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
    if (torii_tls_ctx_rotate_tickets(app->tls) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: session ticket key rotation failed");
    }
}

static int app_make_data_dir(const char *dir, struct torii_errbuf *eb)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return torii_errf(eb, TORII_EIO, "cannot create data dir %s: %s", dir, strerror(errno));
    }
    return TORII_OK;
}

static int app_run(struct app *app)
{
    struct torii_errbuf eb = {{0}};
    struct torii_store_opts sopts = {.dir = app->cfg->data_dir};
    struct torii_tls_opts topts = {0};
    struct event *sigs[3] = {NULL, NULL, NULL};
    struct event *rotate = NULL;
    struct event *rdcheck = NULL;
    struct timeval rot = {.tv_sec = app->cfg->ticket_rotate_s};
    struct timeval rdc = {.tv_sec = APP_READER_CHECK_S};
    int64_t t0 = torii_clock_mono_us();
    size_t ncerts = 0;
    int rc = TORII_OK;

    TORII_TRY(torii_daemon_new(app->cfg, &app->daemon, &eb));
    TORII_TRY(app_make_data_dir(app->cfg->data_dir, &eb));
    TORII_TRY(torii_daemon_lock(app->daemon, app->cfg->data_dir, &eb));
    TORII_TRY(app_probe_listeners(app->cfg, &eb));
    TORII_TRY(torii_store_open(&sopts, &app->store, &eb));
    TORII_TRY(torii_table_new(&app->table));
    torii_table_set_default(app->table, app->cfg->default_cert);
    TORII_TRY(torii_store_watch(app->store, app_on_store_change, app));
    TORII_TRY(torii_store_foreach(app->store, TORII_STORE_CERTS, app_load_one, app));
    TORII_TRY(torii_admin_pki_state_open(app->cfg, app->store, &app->pki, &eb));
    TORII_TRY(torii_admin_pki_bootstrap(app->cfg, app->store, &eb));
    TORII_TRY(torii_store_count(app->store, TORII_STORE_CERTS, &ncerts));
    TORII_TRY(torii_alerts_new(app->cfg, app->store, &app->alerts, &eb));
    TORII_TRY(torii_alerts_watch_store(app->alerts, app->store));
    topts.table = app->table;
    topts.strict_sni = app->cfg->strict_sni;
    TORII_TRY(torii_routes_bind_tls(app->routes, app->table, &eb));
    topts.client_auth_lookup = torii_routes_tls_lookup;
    topts.client_auth_arg = app->routes;
    topts.ocsp_staple = torii_pki_state_staple_cb;
    topts.ocsp_staple_arg = app->pki;
    TORII_TRY(torii_tls_ctx_new(&topts, &app->tls, &eb));

    app->base = event_base_new();
    TORII_ENSURE(app->base != NULL, torii_errf(&eb, TORII_ENOMEM, "event_base_new failed"));
    sigs[0] = evsignal_new(app->base, SIGTERM, app_on_signal, app);
    sigs[1] = evsignal_new(app->base, SIGINT, app_on_signal, app);
    sigs[2] = evsignal_new(app->base, SIGHUP, app_on_hup, app);
    rotate = event_new(app->base, -1, EV_PERSIST, app_on_rotate, app);
    rdcheck = event_new(app->base, -1, EV_PERSIST, app_on_reader_check, app);
    TORII_ENSURE(sigs[0] && sigs[1] && sigs[2] && rotate && rdcheck, TORII_ENOMEM);
    TORII_ENSURE(event_add(sigs[0], NULL) == 0 && event_add(sigs[1], NULL) == 0
                     && event_add(sigs[2], NULL) == 0
                     && event_add(rotate, app->cfg->ticket_rotate_s ? &rot : NULL) == 0
                     && event_add(rdcheck, &rdc) == 0,
                 TORII_EIO);

    torii_wellknown_pki_set(app->pki);
    TORII_TRY(torii_workers_start(app->cfg, app->table, app->tls, app->routes, app->daemon,
                                  &app->workers, &eb));
    TORII_TRY(torii_renewer_start(app->cfg, app->store, app->alerts, &app->renewer, &eb));
    torii_admin_set_renewer(app->renewer);
    TORII_TRY(torii_admin_start(app->cfg, app->store, app->table, app->daemon, &app->admin, &eb));
    TORII_TRY(torii_daemon_watch(app->daemon, app->base));
    torii_daemon_set_state(app->daemon, TORII_DAEMON_READY);
    torii_log(TORII_LOG_NOTICE,
              "main: torii %s ready: %zu certificates, start-up %.1f ms (admin=%s data=%s)",
              TORII_VERSION, ncerts, (double)(torii_clock_mono_us() - t0) / 1000.0,
              app->cfg->admin_listen, app->cfg->data_dir);
    torii_daemon_notify("READY=1\nSTATUS=serving");
    if (event_base_dispatch(app->base) < 0) {
        rc = torii_errf(&eb, TORII_EIO, "main loop failed");
    }
out:
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: %s", eb.msg[0] ? eb.msg : torii_strerror(rc));
    }
    torii_admin_stop(app->admin);
    torii_admin_set_renewer(NULL);
    torii_workers_stop(app->workers);
    /* The renewal thread writes to the store, whose watcher raises alerts: stop it first. */
    torii_renewer_stop(app->renewer);
    torii_alerts_free(app->alerts);
    for (int i = 0; i < 3; i++) {
        if (sigs[i] != NULL) {
            event_free(sigs[i]);
        }
    }
    if (rotate != NULL) {
        event_free(rotate);
    }
    if (rdcheck != NULL) {
        event_free(rdcheck);
    }
    torii_daemon_unwatch(app->daemon); /* its check timer is on base */
    if (app->base != NULL) {
        event_base_free(app->base);
    }
    torii_tls_ctx_free(app->tls);
    torii_routes_free(app->routes); /* its trust sets read the table: before it goes */
    app->routes = NULL;
    torii_table_free(app->table);
    torii_wellknown_pki_set(NULL);
    torii_pki_state_free(app->pki); /* after every store writer stopped */
    torii_store_free(app->store);
    torii_daemon_free(app->daemon); /* releases the instance lock, after the store is closed */
    app->daemon = NULL;
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

int main(int argc, char **argv)
{
    struct app app = {0};
    const char *path = NULL;
    int check_only = 0;
    enum torii_log_level lvl;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return torii_admin_token_cmd(argc - 1, argv + 1, stdout, stderr);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = 1;
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
    if (evthread_use_pthreads() != 0) {
        torii_fatal("main: evthread_use_pthreads failed");
    }
    rc = app_run(&app);
    torii_config_free(app.cfg);
    libevent_global_shutdown();
    return rc == TORII_OK ? 0 : 1;
}
