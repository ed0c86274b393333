/* main_signals.c - the daemon's signals and events (main_int.h): stop, reload, log
 * reopening, upgrade and hand-over, reaping, stale LMDB readers, ticket rotation, and the stop
 * sequence. */
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>

#include "main_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pkistate.h"

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
        if (torii_app_gen_start(app, cfg, 0, routes, &in, &g, &eb) == TORII_OK) {
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

/* SIGUSR2: start the new binary with --upgrade; it takes our sockets (torii_app_on_handover). */
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
void torii_app_on_handover(evutil_socket_t fd, short what, void *arg)
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
    torii_app_services_stop(app);
    if (torii_handover_give(conn, socks, n, &eb) != TORII_OK) {
        torii_log(TORII_LOG_ERR, "main: upgrade aborted, serving on: %s", eb.msg);
        eb.msg[0] = '\0';
        if (torii_app_services_start(app, &eb) != TORII_OK) {
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

int torii_app_events(struct app *app, struct event **sigs, struct torii_errbuf *eb)
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

void torii_app_close(struct app *app, struct event **sigs)
{
    torii_app_services_stop(app);
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
