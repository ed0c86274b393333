/* wellknown.c - the /.well-known/ paths torii answers itself, on both listeners, before route
 * matching. One static dispatch table: add an entry (prefix, listeners, handler) and a
 * handler; the contract is in proxy.h. */
#include <string.h>

#include "proxy_int.h"
#include "torii/mem.h"
#include "torii/proxy.h"

struct torii_wellknown {
    struct torii_wellknown_opts opts;
};

struct torii_pki_state *torii_wellknown__pki(const struct torii_wellknown *wk)
{
    return wk->opts.pki;
}

struct torii_acme_chal *torii_wellknown__acme(const struct torii_wellknown *wk)
{
    return wk->opts.acme_chal;
}

/* rest: the path after the entry's prefix (not decoded, may be empty). */
typedef int (*wellknown_fn)(struct torii_wellknown *wk, const struct torii_http_req *req,
                            struct torii_slice rest, struct torii_wellknown_reply *reply);

#define WELLKNOWN_HTTPS 1u
#define WELLKNOWN_HTTP  2u
#define WELLKNOWN_BOTH  (WELLKNOWN_HTTPS | WELLKNOWN_HTTP)

struct wellknown_entry {
    const char *prefix; /* full path prefix, "/.well-known/..." */
    int exact;          /* the path must equal prefix */
    unsigned listeners; /* WELLKNOWN_* */
    wellknown_fn fn;
};

/* The dispatch table: first match wins: the PKI (JWKS, OCSP, CA issuers, CRL) and ACME
 * (http-01, plain listener only) handlers. */
static const struct wellknown_entry wellknown_table[] = {
    {"/.well-known/jwks.json", 1, WELLKNOWN_BOTH, torii_wellknown__pki_jwks},
    {"/.well-known/torii/ocsp", 0, WELLKNOWN_BOTH, torii_wellknown__pki_ocsp},
    {"/.well-known/torii/ca/", 0, WELLKNOWN_BOTH, torii_wellknown__pki_ca},
    {"/.well-known/torii/crl/", 0, WELLKNOWN_BOTH, torii_wellknown__pki_crl},
    {"/.well-known/acme-challenge/", 0, WELLKNOWN_HTTP, torii_wellknown__acme_http01},
    {NULL, 0, 0, NULL},
};

int torii_wellknown_new(const struct torii_wellknown_opts *opts, struct torii_wellknown **out)
{
    struct torii_wellknown *wk = torii_xcalloc(1, sizeof(*wk));

    wk->opts = *opts;
    *out = wk;
    return TORII_OK;
}

void torii_wellknown_free(struct torii_wellknown *wk)
{
    free(wk);
}

int torii_wellknown_handle(struct torii_wellknown *wk, const struct torii_http_req *req, int https,
                           struct torii_wellknown_reply *reply)
{
    unsigned lst = https ? WELLKNOWN_HTTPS : WELLKNOWN_HTTP;

    for (const struct wellknown_entry *e = wellknown_table; e->prefix != NULL; e++) {
        size_t pl = strlen(e->prefix);
        struct torii_slice rest;
        if ((e->listeners & lst) == 0 || req->path.len < pl
            || memcmp(req->path.ptr, e->prefix, pl) != 0 || (e->exact && req->path.len != pl)) {
            continue;
        }
        rest.ptr = req->path.ptr + pl;
        rest.len = req->path.len - pl;
        reply->status = 200;
        return e->fn(wk, req, rest, reply);
    }
    return TORII_ENOTFOUND;
}
