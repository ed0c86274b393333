/* gen.c - a proxy generation: one configuration at work (its config, compiled routes, TLS
 * context and worker threads). A reload starts a new generation on the listening sockets of
 * the current one, then drains the old one: connections keep the generation that accepted
 * them until they end, and a generation is freed once its last connection is gone. */
#include <stdio.h>
#include <string.h>

#include "torii/log.h"
#include "torii/mem.h"
#include "torii/proxy.h"

struct torii_proxy_gen {
    struct torii_config *cfg; /* freed with the generation when own_cfg */
    int own_cfg;
    struct torii_routes *routes;
    struct torii_tls_ctx *tls;
    struct torii_workers *workers;
    unsigned id;
};

int torii_proxy_gen_start(const struct torii_proxy_gen_opts *o, struct torii_proxy_gen **out,
                          struct torii_errbuf *eb)
{
    struct torii_proxy_gen *g = torii_xcalloc(1, sizeof(*g));
    struct torii_tls_opts topts = {0};
    struct torii_workers_opts wopts;
    int rc = TORII_OK;

    g->cfg = o->cfg;
    g->own_cfg = o->own_cfg;
    g->routes = o->routes;
    g->id = o->id;
    TORII_TRY(torii_routes_bind_tls(g->routes, o->table, eb));
    topts.table = o->table;
    topts.strict_sni = g->cfg->strict_sni;
    topts.client_auth_lookup = torii_routes_tls_lookup;
    topts.client_auth_arg = g->routes;
    topts.ocsp_staple = o->ocsp_staple;
    topts.ocsp_staple_arg = o->ocsp_staple_arg;
    topts.acme_alpn = o->acme_alpn;
    topts.acme_alpn_arg = o->acme_alpn_arg;
    topts.http2 = g->cfg->http2;
    topts.h2_allowed = torii_routes_h2_allowed;
    topts.h2_arg = g->routes;
    topts.on_demand = o->on_demand;
    topts.on_demand_done = o->on_demand_done;
    topts.on_demand_pending = o->on_demand_pending;
    topts.on_demand_arg = o->on_demand_arg;
    topts.on_demand_wait_ms = o->on_demand_wait_ms;
    topts.tickets = o->tickets;
    TORII_TRY(torii_tls_ctx_new(&topts, &g->tls, eb));
    wopts = (struct torii_workers_opts){.cfg = g->cfg,
                                        .table = o->table,
                                        .tls = g->tls,
                                        .routes = g->routes,
                                        .daemon = o->daemon,
                                        .pki = o->pki,
                                        .acme_chal = o->acme_chal,
                                        .inherit = o->inherit};
    TORII_TRY(torii_workers_start(&wopts, &g->workers, eb));
    *out = g;
    g = NULL;
out:
    if (g != NULL) {
        g->own_cfg = 0; /* on failure the caller keeps its config */
        g->routes = NULL;
        torii_tls_ctx_free(g->tls);
        free(g);
    }
    return rc;
}

void torii_proxy_gen_drain(struct torii_proxy_gen *g, int stop)
{
    if (g != NULL) {
        torii_workers_drain(g->workers, stop);
    }
}

int torii_proxy_gen_drained(const struct torii_proxy_gen *g)
{
    return torii_workers_drained(g != NULL ? g->workers : NULL);
}

unsigned torii_proxy_gen_free(struct torii_proxy_gen *g)
{
    unsigned cut;

    if (g == NULL) {
        return 0;
    }
    cut = torii_workers_stop(g->workers);
    torii_tls_ctx_free(g->tls);
    torii_routes_free(g->routes); /* its trust sets read the table: before it goes */
    if (g->own_cfg) {
        torii_config_free(g->cfg);
    }
    free(g);
    return cut;
}

struct torii_tls_ctx *torii_proxy_gen_tls(const struct torii_proxy_gen *g)
{
    return g->tls;
}

const struct torii_config *torii_proxy_gen_config(const struct torii_proxy_gen *g)
{
    return g->cfg;
}

unsigned torii_proxy_gen_id(const struct torii_proxy_gen *g)
{
    return g->id;
}

size_t torii_proxy_gen_listeners(const struct torii_proxy_gen *g, struct torii_listen_sock *out,
                                 size_t cap)
{
    return torii_workers_listeners(g->workers, out, cap);
}
