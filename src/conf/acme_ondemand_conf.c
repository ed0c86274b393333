/* acme_ondemand_conf.c - acme.on_demand (docs/acme.md): which names may get a certificate
 * ordered during their handshake, who is asked, and the safety limits:
 *   {"allow": ["shop.example", "*.customers.example"], "ask": "http://127.0.0.1:5555/ok",
 *    "wait_ms": 10000, "global_per_min": 10, "domain_per_hour": 5, "failure_ttl_s": 600}
 * allow is required and never empty: on-demand issuance for any name would let anyone who
 * points a DNS name at this proxy spend its CA rate limits. Threads: main thread
 * (validation); torii_conf_on_demand_allows from any thread (read-only). */
#include <string.h>

#include "torii/conf.h"
#include "torii/mem.h"

#define OD_PATTERNS_MAX 1024
#define OD_NAME_MAX     253

/* "name" or "*.suffix": lower-case letters, digits, '-' and '.', no empty label. */
static int od_pattern_ok(const char *s)
{
    const char *p = strncmp(s, "*.", 2) == 0 ? s + 2 : s;
    size_t n = strlen(p);

    if (n == 0 || n > OD_NAME_MAX || p[0] == '.' || p[n - 1] == '.' || strstr(p, "..") != NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

static void od_allow(struct torii_conf_on_demand *od, json_t *v, struct torii_conf_errs *errs)
{
    size_t i;
    json_t *x;

    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > OD_PATTERNS_MAX) {
        torii_conf_errs_addf(errs, "config: acme.on_demand.allow: expected 1 to %d name patterns",
                             OD_PATTERNS_MAX);
        return;
    }
    json_array_foreach (v, i, x) {
        if (!json_is_string(x) || !od_pattern_ok(json_string_value(x))) {
            torii_conf_errs_addf(errs,
                                 "config: acme.on_demand.allow[%zu]: expected a lower-case DNS "
                                 "name or \"*.\" and one",
                                 i);
            return;
        }
    }
    json_decref(od->allow);
    od->allow = json_incref(v);
}

static void od_uint(unsigned *dst, json_t *v, const char *key, unsigned max,
                    struct torii_conf_errs *errs)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        torii_conf_errs_addf(errs, "config: acme.on_demand.%s: expected an integer from 1 to %u",
                             key, max);
        return;
    }
    *dst = (unsigned)json_integer_value(v);
}

static void od_ask(struct torii_conf_on_demand *od, json_t *v, struct torii_conf_errs *errs)
{
    const char *s = json_string_value(v);

    if (s == NULL || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        || strlen(s) > 1024 || strpbrk(s, " \t\r\n#") != NULL) {
        torii_conf_errs_addf(errs, "config: acme.on_demand.ask: expected an http:// or https:// "
                                   "URL without blanks or fragment");
        return;
    }
    free(od->ask);
    od->ask = torii_xstrdup(s);
}

static void od_member(struct torii_conf_on_demand *od, const char *k, json_t *v,
                      struct torii_conf_errs *errs)
{
    if (strcmp(k, "allow") == 0) {
        od_allow(od, v, errs);
    } else if (strcmp(k, "ask") == 0) {
        od_ask(od, v, errs);
    } else if (strcmp(k, "wait_ms") == 0) {
        od_uint(&od->wait_ms, v, k, 120000, errs);
    } else if (strcmp(k, "global_per_min") == 0) {
        od_uint(&od->global_per_min, v, k, 10000, errs);
    } else if (strcmp(k, "domain_per_hour") == 0) {
        od_uint(&od->domain_per_hour, v, k, 10000, errs);
    } else if (strcmp(k, "failure_ttl_s") == 0) {
        od_uint(&od->failure_ttl_s, v, k, 86400 * 7, errs);
    } else if (strncmp(k, "//", 2) != 0) {
        torii_conf_errs_addf(errs, "config: unknown key \"acme.on_demand.%.64s\"", k);
    }
}

void torii_conf__acme_on_demand(struct torii_conf_on_demand *od, json_t *v,
                                struct torii_conf_errs *errs)
{
    const char *k;
    json_t *x;

    od->wait_ms = 10000;
    od->global_per_min = 10;
    od->domain_per_hour = 5;
    od->failure_ttl_s = 600;
    if (!json_is_object(v)) {
        torii_conf_errs_addf(errs, "config: acme.on_demand: expected an object");
        return;
    }
    json_object_foreach (v, k, x) {
        od_member(od, k, x, errs);
    }
    if (json_object_get(v, "allow") == NULL) {
        torii_conf_errs_addf(errs, "config: acme.on_demand.allow: required (the names that may "
                                   "get a certificate during their handshake)");
    }
    od->enabled = od->allow != NULL;
}

int torii_conf_on_demand_allows(const struct torii_conf_on_demand *od, const char *name)
{
    size_t i;
    json_t *x;
    size_t n = strlen(name);

    json_array_foreach (od->allow, i, x) {
        const char *p = json_string_value(x);
        if (strncmp(p, "*.", 2) == 0) {
            size_t m = strlen(p) - 1; /* ".suffix" */
            if (n > m && strcmp(name + n - m, p + 1) == 0) {
                return 1;
            }
        } else if (strcmp(p, name) == 0) {
            return 1;
        }
    }
    return 0;
}
