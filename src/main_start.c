/* main_start.c - start-up wiring of the daemon (main_int.h): the state opened in order, the
 * certificate table's source, the first generation, the services and the listeners. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "main_int.h"
#include "torii/certdb.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pkiboot.h"
#include "torii/pkistate.h"

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

int torii_app_gen_start(struct app *app, struct torii_config *cfg, int own_cfg,
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

static int app_make_data_dir(const char *dir, struct torii_errbuf *eb)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return torii_errf(eb, TORII_EIO, "cannot create data dir %s: %s", dir,
                          torii_errno_text(errno).s);
    }
    return TORII_OK;
}

/* The admin API and the renewal thread: one per data dir, handed over on upgrade. */
int torii_app_services_start(struct app *app, struct torii_errbuf *eb)
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

void torii_app_services_stop(struct app *app)
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
                                  .od = app->acme_od,
                                  .acme_answers = app->cfg->acme.enabled};
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
    co.fleet = app->fleet;
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
         * sockets and takes the lock once its predecessor hands over (torii_app_serve). */
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

int torii_app_open_state(struct app *app, size_t *ncerts, struct torii_errbuf *eb)
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
int torii_app_serve(struct app *app, struct torii_errbuf *eb)
{
    struct torii_listen_socks in = {NULL, 0};
    int conn = -1;
    int rc = TORII_OK;

    TORII_TRY(app_serve_sockets(app, &conn, &in, eb));
    TORII_TRY(torii_app_gen_start(app, app->cfg, 0, app->routes, &in, &app->gen, eb));
    app->routes = NULL; /* the generation's now */
    TORII_TRY(torii_app_services_start(app, eb));
    TORII_TRY(app_serve_upgraded(app, conn, in.n, eb));
    app->ho_ev = event_new(app->base, app->ho_fd, EV_READ | EV_PERSIST, torii_app_on_handover, app);
    TORII_ENSURE(app->ho_ev != NULL && event_add(app->ho_ev, NULL) == 0, TORII_ENOMEM);
out:
    torii_handover_socks_free(&in);
    if (conn >= 0) {
        (void)close(conn);
    }
    return rc;
}
