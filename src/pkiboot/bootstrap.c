/* bootstrap.c - the built-in PKI at start-up: the first-start CAs and default
 * certificate (reference 1.7, with our ids and ECDSA by default), and the wiring of the
 * served PKI state to the store (watcher, first load, CRL numbers in the store meta).
 * Threads: main thread, before the listeners and the admin server start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/pkiboot.h"
#include "torii/pkistate.h"
#include "torii/store.h"

#define BOOT_ROOT_ID  "torii-root-ca"
#define BOOT_INTER_ID "torii-intermediate-ca"
#define BOOT_CA_MS    (3650LL * 86400 * 1000)
#define BOOT_LEAF_MS  (365LL * 86400 * 1000)

/* pki.ca_key ("ecdsa-p384", "rsa-2048", ...; validated by the config) -> {algo, size}. */
static json_t *boot_key_spec(const struct torii_config *cfg)
{
    const char *k = json_string_value(json_object_get(cfg->pki, "ca_key"));
    const char *dash = k != NULL ? strchr(k, '-') : NULL;
    long bits = 0;

    if (dash == NULL) {
        return json_pack("{s:s, s:i}", "algo", "ecdsa", "size", 384);
    }
    bits = strtol(dash + (dash[1] == 'p' ? 2 : 1), NULL, 10);
    return json_pack("{s:s, s:i}", "algo", strncmp(k, "rsa", 3) == 0 ? "rsa" : "ecdsa", "size",
                     (int)bits);
}

static const char *boot_base_url(const struct torii_config *cfg)
{
    return json_string_value(json_object_get(cfg->pki, "public_url"));
}

/* Name, description and flags of a first-start entity, then one durable write. */
static int boot_store(struct torii_store *st, json_t *e, const char *name, const char *desc,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *arr = json_array();

    TORII_ENSURE(arr != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(e, "name", json_string(name)) == 0
                     && json_object_set_new(e, "description", json_string(desc)) == 0
                     && json_object_set_new(e, "autoRenew", json_true()) == 0
                     && json_array_append(arr, e) == 0,
                 TORII_ENOMEM);
    TORII_TRY(torii_certdb_create_all(st, arr, eb));
    torii_log(TORII_LOG_NOTICE, "pki: created %s (id=%s)", name,
              json_string_value(json_object_get(e, "id")));
out:
    json_decref(arr);
    return rc;
}

static int boot_root(const struct torii_config *cfg, struct torii_store *st, json_t **out,
                     struct torii_errbuf *eb)
{
    int rc = torii_certdb_load(st, BOOT_ROOT_ID, out, NULL);
    struct torii_pki_opts o = {.now_ms = torii_clock_now_ms(), .id = BOOT_ROOT_ID};
    json_t *q = NULL;
    json_t *e = NULL;

    if (rc != TORII_ENOTFOUND) {
        return rc == TORII_OK ? rc : torii_errf(eb, rc, "pki: cannot read %s", BOOT_ROOT_ID);
    }
    q = json_pack("{s:s, s:o, s:b, s:I}", "subject",
                  "CN=torii Root CA, OU=torii Certificates, O=torii", "key", boot_key_spec(cfg),
                  "ca", 1, "duration", (json_int_t)BOOT_CA_MS);
    TORII_ENSURE(q != NULL, TORII_ENOMEM);
    o.base_url = boot_base_url(cfg);
    TORII_TRY(torii_pki_ca_create(q, &o, &e, eb));
    TORII_TRY(boot_store(st, e, "torii Root CA", "torii root CA (auto-generated)", eb));
    *out = e;
    e = NULL;
out:
    json_decref(q);
    json_decref(e);
    return rc;
}

static int boot_intermediate(const struct torii_config *cfg, struct torii_store *st,
                             const json_t *root, json_t **out, struct torii_errbuf *eb)
{
    int rc = torii_certdb_load(st, BOOT_INTER_ID, out, NULL);
    struct torii_pki_opts o = {
        .now_ms = torii_clock_now_ms(), .id = BOOT_INTER_ID, .kek = torii_store_kek(st)};
    json_t *q = NULL;
    json_t *e = NULL;

    if (rc != TORII_ENOTFOUND) {
        return rc == TORII_OK ? rc : torii_errf(eb, rc, "pki: cannot read %s", BOOT_INTER_ID);
    }
    q = json_pack("{s:s, s:o, s:b, s:b, s:I}", "subject",
                  "CN=torii Intermediate CA, OU=torii Certificates, O=torii", "key",
                  boot_key_spec(cfg), "ca", 1, "includeAIA", 1, "duration", (json_int_t)BOOT_CA_MS);
    TORII_ENSURE(q != NULL, TORII_ENOMEM);
    o.base_url = boot_base_url(cfg);
    TORII_TRY(torii_pki_subca_create(root, q, &o, &e, eb));
    TORII_TRY(
        boot_store(st, e, "torii Intermediate CA", "torii intermediate CA (auto-generated)", eb));
    *out = e;
    e = NULL;
out:
    json_decref(q);
    json_decref(e);
    return rc;
}

/* The request for the default certificate: CN=localhost for the given names. */
static int boot_default_request(const char *const *names, size_t n_names, json_t **out)
{
    json_t *hosts = json_array();
    int rc = TORII_OK;

    TORII_ENSURE(hosts != NULL, TORII_ENOMEM);
    for (size_t i = 0; i < n_names; i++) {
        TORII_ENSURE(json_array_append_new(hosts, json_string(names[i])) == 0, TORII_ENOMEM);
    }
    *out = json_pack("{s:s, s:O, s:{s:s, s:i}, s:b, s:I}", "subject", "CN=localhost", "hosts",
                     hosts, "key", "algo", "ecdsa", "size", 256, "includeAIA", 1, "duration",
                     (json_int_t)BOOT_LEAF_MS);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    json_decref(hosts);
    return rc;
}

/* Self-signed fallback. A host name that is not a valid DNS name would fail the generator:
 * then names[0..1] only. */
static int boot_selfsigned(const char *id, const char *const *names, size_t n_names, json_t **e,
                           struct torii_errbuf *eb)
{
    int rc = torii_cert_generate_selfsigned(id, names, n_names, torii_clock_now_ms(), 365, e, eb);

    if (rc != TORII_OK) {
        rc = torii_cert_generate_selfsigned(id, names, 2, torii_clock_now_ms(), 365, e, eb);
    }
    return rc;
}

/* The default certificate: issued by the intermediate, else (no usable CA) self-signed. */
static int boot_default(const struct torii_config *cfg, struct torii_store *st, const json_t *inter,
                        struct torii_errbuf *eb)
{
    char host[256] = "";
    const char *names[3] = {"localhost", "127.0.0.1", host};
    size_t n_names = 2;
    struct torii_pki_opts o = {
        .now_ms = torii_clock_now_ms(), .id = cfg->default_cert, .kek = torii_store_kek(st)};
    struct torii_errbuf ieb = {{0}};
    json_t *existing = NULL;
    json_t *q = NULL;
    json_t *e = NULL;
    int rc = torii_certdb_load(st, cfg->default_cert, &existing, NULL);

    if (rc != TORII_ENOTFOUND) {
        json_decref(existing);
        return rc == TORII_OK ? rc : torii_errf(eb, rc, "pki: cannot read %s", cfg->default_cert);
    }
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0'
        && strcmp(host, "localhost") != 0) {
        n_names = 3;
    }
    TORII_TRY(boot_default_request(names, n_names, &q));
    o.base_url = boot_base_url(cfg);
    if (inter == NULL || torii_pki_cert_issue(inter, q, &o, &e, &ieb) != TORII_OK) {
        if (inter != NULL) {
            torii_log(TORII_LOG_WARN, "pki: default certificate not issued by %s: %s",
                      BOOT_INTER_ID, ieb.msg);
        }
        TORII_TRY(boot_selfsigned(cfg->default_cert, names, n_names, &e, eb));
    }
    TORII_TRY(boot_store(st, e, "torii default certificate",
                         "Default certificate of torii (auto-generated)", eb));
out:
    json_decref(q);
    json_decref(e);
    return rc;
}

int torii_pkiboot_run(const struct torii_config *cfg, struct torii_store *store,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *root = NULL;
    json_t *inter = NULL;
    struct torii_errbuf ceb = {{0}};

    /* A CA that cannot be created (bad key spec is impossible after config validation; an
     * OpenSSL failure is not) must not keep torii from serving: the default certificate then
     * falls back to a self-signed one. Store errors do stop start-up. */
    rc = boot_root(cfg, store, &root, &ceb);
    if (rc == TORII_OK) {
        rc = boot_intermediate(cfg, store, root, &inter, &ceb);
    }
    if (rc == TORII_ESTORE || rc == TORII_ENOMEM) {
        (void)torii_errf(eb, rc, "%s", ceb.msg);
        goto out;
    }
    if (rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "pki: built-in CAs not created: %s", ceb.msg);
    }
    rc = boot_default(cfg, store, inter, eb);
out:
    json_decref(root);
    json_decref(inter);
    return rc;
}

/* ---- state wiring ---- */

static int boot_meta_get(void *arg, const char *key, char **val)
{
    return torii_store_meta_get(arg, key, val);
}

static int boot_meta_put(void *arg, const char *key, const char *val)
{
    return torii_store_meta_put(arg, key, val, NULL);
}

struct boot_each {
    struct torii_store *store;
    torii_store_iter_cb cb;
    void *cb_arg;
};

/* One certificate for the PKI view from certdb's compact index: its record's summary, or,
 * for the few whose entity the view reads (CA, revoked, exposed), the stored record. */
static int boot_each_idx(const struct torii_certdb_idx *ix, void *arg)
{
    struct boot_each *b = arg;
    struct torii_store_rec rec = {ix->id, ix->id_len, NULL, 0, ix->sum, ix->sum_len};
    struct torii_certdb_entry e = {0};
    uint32_t f = ix->sum != NULL ? torii_certrec_flags(ix->sum, ix->sum_len) : 0;
    char id[TORII_STORE_ID_MAX + 1];
    int rc;

    if ((f & (TORII_CERTREC_CA | TORII_CERTREC_REVOKED)) == 0
        && (ix->xflags & TORII_CERTDB_IDX_EXPOSED) == 0) {
        return b->cb(&rec, b->cb_arg);
    }
    memcpy(id, ix->id, ix->id_len);
    id[ix->id_len] = '\0';
    rc = torii_certdb_get(b->store, id, TORII_CERTDB_WITH_AUX, &e, NULL);
    if (rc == TORII_OK) {
        rec = (struct torii_store_rec){ix->id, ix->id_len, e.text, e.len, e.aux, e.aux_len};
        rc = b->cb(&rec, b->cb_arg);
    }
    torii_certdb_entry_clear(&e);
    return rc == TORII_ENOTFOUND ? TORII_OK : rc;
}

static int boot_each_cert(void *src, torii_store_iter_cb cb, void *cb_arg)
{
    struct boot_each b = {src, cb, cb_arg};

    return torii_certdb_idx_foreach(src, boot_each_idx, &b);
}

/* The state's serial_fn: every certificate under the certdb serial index's key serial_hex
 * (all issuers; the state keeps the CA asked), each as a store record with its TLS record. A
 * certificate deleted between the index read and its own is skipped. */
static int boot_serial(void *arg, const char *serial_hex, torii_store_iter_cb cb, void *cb_arg)
{
    char **ids = NULL;
    size_t n = 0;
    int rc = torii_certdb_serial_lookup_all(arg, NULL, serial_hex, &ids, &n);

    if (rc == TORII_ENOTFOUND) {
        return TORII_OK;
    }
    for (size_t i = 0; rc == TORII_OK && i < n; i++) {
        struct torii_certdb_entry e = {0};
        struct torii_store_rec rec;

        rc = torii_certdb_get(arg, ids[i], TORII_CERTDB_WITH_AUX, &e, NULL);
        if (rc == TORII_OK) {
            rec = (struct torii_store_rec){ids[i], strlen(ids[i]), e.text, e.len, e.aux, e.aux_len};
            rc = cb(&rec, cb_arg);
        } else if (rc == TORII_ENOTFOUND) {
            rc = TORII_OK;
        }
        torii_certdb_entry_clear(&e);
    }
    torii_certdb_ids_free(ids, n);
    return rc;
}

static int64_t boot_pki_int(const struct torii_config *cfg, const char *k)
{
    const json_t *v = json_object_get(cfg->pki, k);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int torii_pkiboot_state_open(const struct torii_config *cfg, struct torii_store *store,
                             struct torii_pki_state **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki_state *st = NULL;
    struct torii_pki_state_opts o = {
        .ocsp_next_update_s = boot_pki_int(cfg, "ocsp_next_update_s"),
        .ocsp_cache_s = boot_pki_int(cfg, "ocsp_cache_s"),
        .crl_next_update_s = boot_pki_int(cfg, "crl_next_update_s"),
        .meta_get = boot_meta_get,
        .meta_put = boot_meta_put,
        .meta_arg = store,
        .kek = torii_store_kek(store),
        .serial = boot_serial,
        .serial_arg = store,
    };

    if (torii_store_count(store, TORII_STORE_CERTS, &o.expected) != TORII_OK) {
        o.expected = 0; /* only a size hint */
    }
    rc = torii_pki_state_new(&o, &st);
    TORII_ENSURE(rc == TORII_OK, torii_errf(eb, rc, "pki: bad state options"));
    rc = torii_store_watch(store, torii_pki_state_watch_cb, st);
    if (rc != TORII_OK) {
        torii_pki_state_free(st);
        st = NULL;
        rc = torii_errf(eb, rc, "pki: cannot watch the store");
        goto out;
    }
    rc = torii_pki_state_load(st, boot_each_cert, store);
    TORII_ENSURE(rc == TORII_OK, torii_errf(eb, rc, "pki: cannot load the store"));
    rc = torii_pki_state_start(st);
    TORII_ENSURE(rc == TORII_OK, torii_errf(eb, rc, "pki: cannot start the refresher thread"));
    *out = st;
    st = NULL;
out:
    /* A registered watcher cannot be removed: on failure start-up stops and the store is
     * freed before anything writes again, but keep the state alive until then (leaked). */
    if (st != NULL && rc != TORII_OK) {
        torii_log(TORII_LOG_ERR, "pki: state not started: %s", eb != NULL ? eb->msg : "");
    }
    return rc;
}
