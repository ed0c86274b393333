/* fleet_conf.c - the fleet{} section (docs/fleet.md): fleet.etcd names the etcd cluster that
 * is the source of truth of a fleet of torii nodes (endpoints, TLS, user/password, key
 * prefix, limits that follow the cluster's settings). Validated strictly: every unknown
 * member and bad value is noted, naming the key; defaults are filled in. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/mem.h"

static char *conf_fleet_str(json_t *v, const char *key, size_t max, struct torii_conf_errs *errs)
{
    const char *s = json_string_value(v);

    if (!torii_conf__token_ok(s, max)) {
        torii_conf_errs_addf(errs,
                             "config: fleet.etcd.%s: expected a non-empty string without "
                             "blanks (at most %zu bytes)",
                             key, max);
        return NULL;
    }
    return torii_xstrdup(s);
}

static void conf_fleet_uint(unsigned *dst, json_t *v, const char *key, unsigned min, unsigned max,
                            struct torii_conf_errs *errs)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        torii_conf_errs_addf(errs, "config: fleet.etcd.%s: expected an integer from %u to %u", key,
                             min, max);
        return;
    }
    *dst = (unsigned)json_integer_value(v);
}

static void conf_fleet_endpoints(struct torii_conf_fleet *f, json_t *v,
                                 struct torii_conf_errs *errs)
{
    size_t i;
    json_t *e;

    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 16) {
        torii_conf_errs_addf(errs, "config: fleet.etcd.endpoints: expected 1 to 16 URLs");
        return;
    }
    json_array_foreach (v, i, e) {
        const char *s = json_string_value(e);
        if (!torii_conf__token_ok(s, 256)
            || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)) {
            torii_conf_errs_addf(errs,
                                 "config: fleet.etcd.endpoints[%zu]: expected an http:// or "
                                 "https:// URL such as \"http://127.0.0.1:2379\"",
                                 i);
            return;
        }
    }
    json_decref(f->endpoints);
    f->endpoints = json_incref(v);
}

static void conf_fleet_member(struct torii_conf_fleet *f, const char *k, json_t *v,
                              struct torii_conf_errs *errs)
{
    if (strcmp(k, "endpoints") == 0) {
        conf_fleet_endpoints(f, v, errs);
    } else if (strcmp(k, "prefix") == 0) {
        free(f->prefix);
        f->prefix = conf_fleet_str(v, k, 128, errs);
    } else if (strcmp(k, "ca_file") == 0) {
        f->ca_file = conf_fleet_str(v, k, 4096, errs);
    } else if (strcmp(k, "cert_file") == 0) {
        f->cert_file = conf_fleet_str(v, k, 4096, errs);
    } else if (strcmp(k, "key_file") == 0) {
        f->key_file = conf_fleet_str(v, k, 4096, errs);
    } else if (strcmp(k, "user") == 0) {
        f->user = conf_fleet_str(v, k, 256, errs);
    } else if (strcmp(k, "password") == 0) {
        f->password =
            json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 1024
                ? torii_xstrdup(json_string_value(v))
                : NULL;
        if (f->password == NULL) {
            torii_conf_errs_addf(errs, "config: fleet.etcd.password: expected a non-empty string");
        }
    } else if (strcmp(k, "timeout_ms") == 0) {
        conf_fleet_uint(&f->timeout_ms, v, k, 100, 600000, errs);
    } else if (strcmp(k, "max_txn_ops") == 0) {
        conf_fleet_uint(&f->max_txn_ops, v, k, 8, 100000, errs);
    } else if (strcmp(k, "max_txn_bytes") == 0) {
        conf_fleet_uint(&f->max_txn_bytes, v, k, 65536, 1u << 30, errs);
    } else if (strcmp(k, "page_size") == 0) {
        conf_fleet_uint(&f->page_size, v, k, 1, 100000, errs);
    } else if (strcmp(k, "lease_ttl_s") == 0) {
        conf_fleet_uint(&f->lease_ttl_s, v, k, 2, 300, errs);
    } else if (strncmp(k, "//", 2) != 0) {
        torii_conf_errs_addf(errs, "config: unknown key \"fleet.etcd.%.64s\"", k);
    }
}

/* The pairs that go together, and what fleet mode needs. */
static void conf_fleet_check(const struct torii_conf_fleet *f, struct torii_conf_errs *errs)
{
    if (f->endpoints == NULL) {
        torii_conf_errs_addf(errs, "config: fleet.etcd.endpoints: required (the etcd cluster's "
                                   "client URLs)");
    }
    if ((f->cert_file == NULL) != (f->key_file == NULL)) {
        torii_conf_errs_addf(errs, "config: fleet.etcd.cert_file and fleet.etcd.key_file go "
                                   "together: give both or neither");
    }
    if ((f->user == NULL) != (f->password == NULL)) {
        torii_conf_errs_addf(errs, "config: fleet.etcd.user and fleet.etcd.password go together: "
                                   "give both or neither");
    }
}

static void conf_fleet_etcd(struct torii_conf_fleet *f, json_t *etcd, struct torii_conf_errs *errs)
{
    const char *k;
    json_t *v;

    if (!json_is_object(etcd)) {
        torii_conf_errs_addf(errs, "config: fleet.etcd: expected an object");
        return;
    }
    f->enabled = 1;
    json_object_foreach (etcd, k, v) {
        conf_fleet_member(f, k, v, errs);
    }
    conf_fleet_check(f, errs);
}

void torii_conf_fleet_validate(struct torii_config *c, struct torii_conf_errs *errs)
{
    struct torii_conf_fleet *f = &c->fleet;
    const char *k;
    json_t *v;

    torii_conf_fleet_clear(f);
    f->prefix = torii_xstrdup("/torii/");
    f->timeout_ms = 5000;
    f->max_txn_ops = 128;
    f->max_txn_bytes = 1u << 20;
    f->page_size = 500;
    f->lease_ttl_s = 10;
    if (c->fleet_json == NULL) {
        return;
    }
    json_object_foreach (c->fleet_json, k, v) {
        if (strcmp(k, "etcd") == 0) {
            conf_fleet_etcd(f, v, errs);
        } else if (strncmp(k, "//", 2) != 0) {
            torii_conf_errs_addf(errs, "config: unknown key \"fleet.%.64s\"", k);
        }
    }
    if (!f->enabled) {
        torii_conf_errs_addf(errs, "config: fleet: expected an \"etcd\" member (the only fleet "
                                   "backend)");
    } else if (c->keys_kek_file == NULL && c->keys_kek_credential == NULL) {
        torii_conf_errs_addf(errs, "config: fleet.etcd needs keys.kek_file or "
                                   "keys.kek_credential: private keys reach etcd only sealed "
                                   "with the KEK");
    }
}

void torii_conf_fleet_clear(struct torii_conf_fleet *f)
{
    json_decref(f->endpoints);
    free(f->prefix);
    free(f->ca_file);
    free(f->cert_file);
    free(f->key_file);
    free(f->user);
    if (f->password != NULL) {
        torii_secure_free(f->password, strlen(f->password));
    }
    memset(f, 0, sizeof(*f));
}
