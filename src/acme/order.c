/* order.c - one certificate order (RFC 8555 7.4): newOrder for the names, every
 * authorization, finalize with a CSR for a fresh key (made by src/pki; acme.key), the order
 * polled to "valid", then the chain downloaded (acme.preferred_chain). ACME thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

static int acme_order_new(struct acme_client *c, const json_t *hosts, char **url, json_t **order,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *ids = json_array();
    json_t *p = NULL;
    struct acme_resp r = {.retry_after_s = -1};
    size_t i;
    const json_t *h;

    TORII_ENSURE(ids != NULL, TORII_ENOMEM);
    json_array_foreach (hosts, i, h) {
        TORII_ENSURE(json_array_append_new(ids, json_pack("{s:s,s:O}", "type", "dns", "value", h))
                         == 0,
                     TORII_ENOMEM);
    }
    p = json_pack("{s:O}", "identifiers", ids);
    TORII_ENSURE(p != NULL, TORII_ENOMEM);
    TORII_TRY(acme_post(c, "newOrder", acme_dir_url(c, "newOrder"), p, 0, &r, eb));
    TORII_TRY(acme_resp_json(&r, "newOrder", order, eb));
    TORII_TRY(acme_take_location(&r, "newOrder", url, eb));
out:
    acme_resp_clear(&r);
    json_decref(p);
    json_decref(ids);
    return rc;
}

/* acme.key as a GenCsrQuery key spec. */
static json_t *acme_key_spec(const struct torii_conf_acme *conf)
{
    const char *dash = strchr(conf->key, '-');
    const char *bits = dash != NULL ? dash + 1 : "256";
    int rsa = strncmp(conf->key, "rsa", 3) == 0;
    /* acme.key was validated (acme_conf.c): "rsa-<bits>" or "ecdsa-p<bits>" */
    long size = strtol(rsa ? bits : bits + 1, NULL, 10);

    return json_pack("{s:s,s:i}", "algo", rsa ? "rsa" : "ecdsa", "size", (int)size);
}

/* Finalize with a CSR for a fresh key; *key_pem is that key. */
static int acme_order_finalize(struct acme_client *c, const json_t *hosts, const json_t *order,
                               char **key_pem, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *spec = acme_key_spec(c->conf);
    char *csr = NULL;
    json_t *p = NULL;
    struct acme_resp r = {.retry_after_s = -1};
    const char *fin = json_string_value(json_object_get(order, "finalize"));

    TORII_ENSURE(fin != NULL, torii_errf(eb, TORII_EPROTO, "acme: order without finalize URL"));
    TORII_ENSURE(spec != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki_acme_csr(hosts, spec, &csr, key_pem, eb));
    p = json_pack("{s:s}", "csr", csr);
    TORII_ENSURE(p != NULL, TORII_ENOMEM);
    TORII_TRY(acme_post(c, "finalize", fin, p, 0, &r, eb));
out:
    acme_resp_clear(&r);
    json_decref(p);
    json_decref(spec);
    free(csr);
    return rc;
}

static int acme_order_download(struct acme_client *c, const json_t *order, char **chain,
                               struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};
    const char *url = json_string_value(json_object_get(order, "certificate"));

    TORII_ENSURE(url != NULL,
                 torii_errf(eb, TORII_EPROTO, "acme: valid order without certificate URL"));
    TORII_TRY(acme_post(c, "certificate", url, NULL, 0, &r, eb));
    TORII_ENSURE(
        r.status == 200 && strstr(r.body, "-----BEGIN CERTIFICATE-----") != NULL,
        torii_errf(eb, TORII_EPROTO, "acme: certificate: no PEM chain (HTTP %ld)", r.status));
    TORII_TRY(acme_chain_pick(c, &r, chain, eb));
out:
    acme_resp_clear(&r);
    return rc;
}

/* A new order for hosts with every authorization answered: *url is the order's URL. */
static int acme_order_authorized(struct acme_client *c, const json_t *hosts, char **url,
                                 struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *order = NULL;
    size_t i;
    const json_t *az;

    TORII_TRY(acme_directory(c, eb));
    TORII_TRY(acme_account(c, eb));
    TORII_TRY(acme_order_new(c, hosts, url, &order, eb));
    json_array_foreach (json_object_get(order, "authorizations"), i, az) {
        TORII_TRY(acme_authz_run(c, json_string_value(az), eb));
    }
out:
    json_decref(order);
    return rc;
}

int acme_order_run(struct acme_client *c, const json_t *hosts, char **chain_pem, char **key_pem,
                   struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *url = NULL;
    json_t *ready = NULL;
    json_t *valid = NULL;
    char *key = NULL;

    TORII_TRY(acme_order_authorized(c, hosts, &url, eb));
    TORII_TRY(acme_poll(c, "order", url, "ready", &ready, eb));
    TORII_TRY(acme_order_finalize(c, hosts, ready, &key, eb));
    TORII_TRY(acme_poll(c, "order", url, "valid", &valid, eb));
    TORII_TRY(acme_order_download(c, valid, chain_pem, eb));
    *key_pem = key;
    key = NULL;
out:
    if (key != NULL) {
        torii_secure_free(key, strlen(key));
    }
    json_decref(valid);
    json_decref(ready);
    free(url);
    return rc;
}
