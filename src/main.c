/* main.c - argv, the configuration, the run (main_int.h lists the other files): no
 * logic. */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "main_int.h"
#include "torii/blkcache.h"
#include "torii/clock.h"
#include "torii/ctl.h"
#include "torii/log.h"

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

static int app_run(struct app *app)
{
    struct torii_errbuf eb = {{0}};
    struct event *sigs[APP_NSIGS] = {NULL};
    int64_t t0 = torii_clock_mono_us();
    size_t ncerts = 0;
    char msg[64];
    int rc = TORII_OK;

    app->ho_fd = -1;
    TORII_TRY(torii_app_open_state(app, &ncerts, &eb));
    TORII_TRY(torii_app_events(app, sigs, &eb));
    TORII_TRY(torii_app_serve(app, &eb));
    TORII_TRY(torii_daemon_watch(app->daemon, app->base));
    torii_daemon_set_state(app->daemon, TORII_DAEMON_READY);
    torii_blkcache_heap_trim(); /* what start-up freed goes back, whatever the kept top */
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
    torii_app_close(app, sigs);
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

/* Before any OpenSSL or libevent call: their allocations go through the workers' block
 * caches (torii/blkcache.h); a refusal leaves them on malloc, which works the same. */
/* Free memory an arena keeps at its top (torii_blkcache_heap_keep). */
#define APP_HEAP_KEEP ((size_t)8 * 1024 * 1024)

static void app_alloc_hooks(void)
{
    int rc = torii_blkcache_hooks_install();

    if (rc != TORII_OK && rc != TORII_EUNSUPPORTED) {
        torii_log(TORII_LOG_WARN, "main: allocator hooks not installed (%s): plain malloc",
                  torii_strerror(rc));
    }
    rc = torii_blkcache_heap_keep(APP_HEAP_KEEP);
    if (rc != TORII_OK && rc != TORII_EUNSUPPORTED) {
        torii_log(TORII_LOG_WARN, "main: the heap's trim threshold was refused (%s)",
                  torii_strerror(rc));
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

    app_alloc_hooks();
    /* Then, before anything else: no core dump may carry a key or a KEK out of this process. */
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
