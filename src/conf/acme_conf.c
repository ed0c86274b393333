/* acme_conf.c - the acme{} section (docs/acme.md): the ACME CA's directory, the account
 * (contacts, external account binding), the key of issued certificates, the challenge types
 * in order of preference, the DNS-01 hook and the preferred chain. Validated strictly: every
 * unknown member and bad value is noted, naming the key; defaults are filled in. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/mem.h"

static const char *const conf_acme_keys[] = {"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072",
                                             "rsa-4096"};
static const char *const conf_acme_chal[] = {"http-01", "tls-alpn-01", "dns-01"};

/* The index of s in list[0..n), or -1. */
static int conf_acme_index(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (strcmp(s, list[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int torii_conf__token_ok(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') {
            return 0;
        }
    }
    return 1;
}

static char *conf_acme_str(json_t *v, const char *key, size_t max, int url,
                           struct torii_conf_errs *errs)
{
    const char *s = json_string_value(v);

    if (!torii_conf__token_ok(s, max)
        || (url && strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)) {
        torii_conf_errs_addf(errs, "config: acme.%s: expected %s", key,
                             url ? "an http:// or https:// URL"
                                 : "a non-empty string without blanks");
        return NULL;
    }
    return torii_xstrdup(s);
}

static void conf_acme_contacts(struct torii_conf_acme *a, json_t *v, struct torii_conf_errs *errs)
{
    size_t i;
    json_t *x;

    if (!json_is_array(v) || json_array_size(v) > 8) {
        torii_conf_errs_addf(errs, "config: acme.contacts: expected an array of at most 8 URLs");
        return;
    }
    json_array_foreach (v, i, x) {
        const char *s = json_string_value(x);
        if (!torii_conf__token_ok(s, 256) || strncmp(s, "mailto:", 7) != 0) {
            torii_conf_errs_addf(errs, "config: acme.contacts[%zu]: expected a \"mailto:\" URL", i);
            return;
        }
    }
    json_decref(a->contacts);
    a->contacts = json_incref(v);
}

static void conf_acme_eab(struct torii_conf_acme *a, json_t *v, struct torii_conf_errs *errs)
{
    const char *k;
    json_t *x;

    if (!json_is_object(v)) {
        torii_conf_errs_addf(errs, "config: acme.eab: expected an object {\"kid\", \"hmac_key\"}");
        return;
    }
    json_object_foreach (v, k, x) {
        if (strcmp(k, "kid") == 0) {
            a->eab_kid = conf_acme_str(x, "eab.kid", 512, 0, errs);
        } else if (strcmp(k, "hmac_key") == 0) {
            a->eab_hmac_key = conf_acme_str(x, "eab.hmac_key", 1024, 0, errs);
        } else {
            torii_conf_errs_addf(errs, "config: unknown key \"acme.eab.%.64s\"", k);
        }
    }
    if (a->eab_kid == NULL || a->eab_hmac_key == NULL) {
        torii_conf_errs_addf(errs, "config: acme.eab: needs both \"kid\" and \"hmac_key\"");
    }
}

static void conf_acme_challenges(struct torii_conf_acme *a, json_t *v, struct torii_conf_errs *errs)
{
    size_t i;
    json_t *x;
    size_t nc = sizeof(conf_acme_chal) / sizeof(conf_acme_chal[0]);

    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > nc) {
        torii_conf_errs_addf(errs, "config: acme.challenges: expected a non-empty array of "
                                   "\"http-01\", \"tls-alpn-01\", \"dns-01\"");
        return;
    }
    a->n_challenges = 0;
    json_array_foreach (v, i, x) {
        const char *s = json_string_value(x);
        int idx = conf_acme_index(s, conf_acme_chal, nc);
        if (idx < 0) {
            torii_conf_errs_addf(errs, "config: acme.challenges[%zu]: unknown challenge type", i);
            return;
        }
        for (size_t j = 0; j < a->n_challenges; j++) {
            if (strcmp(a->challenges[j], s) == 0) {
                torii_conf_errs_addf(errs, "config: acme.challenges[%zu]: listed twice", i);
                return;
            }
        }
        a->challenges[a->n_challenges++] = conf_acme_chal[idx];
    }
}

static void conf_acme_uint(unsigned *dst, json_t *v, const char *key, unsigned min, unsigned max,
                           struct torii_conf_errs *errs)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        torii_conf_errs_addf(errs, "config: acme.%s: expected an integer from %u to %u", key, min,
                             max);
        return;
    }
    *dst = (unsigned)json_integer_value(v);
}

static void conf_acme_member(struct torii_conf_acme *a, const char *k, json_t *v,
                             struct torii_conf_errs *errs)
{
    if (strcmp(k, "directory_url") == 0) {
        a->directory_url = conf_acme_str(v, k, 1024, 1, errs);
    } else if (strcmp(k, "contacts") == 0) {
        conf_acme_contacts(a, v, errs);
    } else if (strcmp(k, "ca_bundle") == 0) {
        a->ca_bundle = conf_acme_str(v, k, 4096, 0, errs);
    } else if (strcmp(k, "eab") == 0) {
        conf_acme_eab(a, v, errs);
    } else if (strcmp(k, "key") == 0) {
        if (conf_acme_index(json_string_value(v), conf_acme_keys, 5) < 0) {
            torii_conf_errs_addf(errs,
                                 "config: acme.key: expected ecdsa-p256, ecdsa-p384, rsa-2048, "
                                 "rsa-3072 or rsa-4096");
        } else {
            (void)snprintf(a->key, sizeof(a->key), "%s", json_string_value(v));
        }
    } else if (strcmp(k, "challenges") == 0) {
        conf_acme_challenges(a, v, errs);
    } else if (strcmp(k, "dns_hook") == 0) {
        a->dns_hook = conf_acme_str(v, k, 4096, 0, errs);
    } else if (strcmp(k, "dns_hook_timeout_s") == 0) {
        conf_acme_uint(&a->dns_hook_timeout_s, v, k, 1, 3600, errs);
    } else if (strcmp(k, "preferred_chain") == 0) {
        a->preferred_chain = json_is_string(v) && json_string_length(v) <= 256
                                 ? torii_xstrdup(json_string_value(v))
                                 : NULL;
        if (a->preferred_chain == NULL) {
            torii_conf_errs_addf(errs,
                                 "config: acme.preferred_chain: expected an issuer CN string");
        }
    } else if (strcmp(k, "on_demand") == 0) {
        torii_conf__acme_on_demand(&a->on_demand, v, errs);
    } else if (strcmp(k, "order_timeout_s") == 0) {
        conf_acme_uint(&a->order_timeout_s, v, k, 5, 86400, errs);
    } else if (strncmp(k, "//", 2) != 0) {
        torii_conf_errs_addf(errs, "config: unknown key \"acme.%.64s\"", k);
    }
}

void torii_conf_acme_validate(struct torii_config *c, struct torii_conf_errs *errs)
{
    struct torii_conf_acme *a = &c->acme;
    const char *k;
    json_t *v;

    (void)snprintf(a->key, sizeof(a->key), "ecdsa-p256");
    a->challenges[0] = conf_acme_chal[0];
    a->challenges[1] = conf_acme_chal[1];
    a->n_challenges = 2;
    a->dns_hook_timeout_s = 60;
    a->order_timeout_s = 300;
    if (c->acme_json == NULL) {
        return;
    }
    json_object_foreach (c->acme_json, k, v) {
        conf_acme_member(a, k, v, errs);
    }
    if (a->directory_url == NULL) {
        torii_conf_errs_addf(errs, "config: acme.directory_url: required when acme{} is given");
    }
    for (size_t i = 0; i < a->n_challenges; i++) {
        if (strcmp(a->challenges[i], "dns-01") == 0 && a->dns_hook == NULL) {
            torii_conf_errs_addf(errs, "config: acme.challenges: \"dns-01\" needs acme.dns_hook");
        }
    }
    a->enabled = a->directory_url != NULL;
}

void torii_conf_acme_clear(struct torii_conf_acme *a)
{
    free(a->directory_url);
    json_decref(a->contacts);
    free(a->ca_bundle);
    free(a->eab_kid);
    if (a->eab_hmac_key != NULL) {
        torii_secure_free(a->eab_hmac_key, strlen(a->eab_hmac_key));
    }
    free(a->dns_hook);
    free(a->preferred_chain);
    json_decref(a->on_demand.allow);
    free(a->on_demand.ask);
    memset(a, 0, sizeof(*a));
}
