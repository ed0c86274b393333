/* exporters_conf.c - the exporters[] array of the configuration (docs/operations.md): each
 * entry a webhook, file or log exporter of alerts. Validated strictly: an unknown member, a
 * wrong type or a bad value is the entry's problem, named by its index and key; every entry
 * is checked. Enabled, valid entries are parsed into c->exporter_list with their defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/mem.h"

/* The exporter types, in the order of enum torii_conf_exporter_type. */
static const char *const conf_exporter_types[] = {"webhook", "file", "log"};
#define CONF_EXPORTER_N_TYPES (sizeof(conf_exporter_types) / sizeof(conf_exporter_types[0]))

static int conf_exporter_is_comment(const char *k)
{
    return strncmp(k, "//", 2) == 0;
}

static void conf_exporter_clear(struct torii_conf_exporter *e)
{
    free(e->name);
    for (size_t i = 0; i < e->n_alerts; i++) {
        free(e->alerts[i]);
    }
    free(e->alerts);
    free(e->url);
    for (size_t i = 0; i < e->n_headers; i++) {
        free(e->headers[i]);
    }
    free(e->headers);
    free(e->trusted_ca);
    free(e->client_cert);
    free(e->path);
    memset(e, 0, sizeof(*e));
}

void torii_conf_exporters_clear(struct torii_config *c)
{
    for (size_t i = 0; i < c->n_exporters; i++) {
        conf_exporter_clear(&c->exporter_list[i]);
    }
    TORII_FREE(c->exporter_list);
    c->n_exporters = 0;
}

/* 1 when k is one of the n names of list. */
static int conf_exporter_name_in(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], k) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Members allowed per exporter type (besides "//" comments). */
static int conf_exporter_member_ok(enum torii_conf_exporter_type t, const char *k)
{
    static const char *const common[] = {"type", "name", "enabled", "alerts", "queue_size"};
    static const char *const webhook[] = {"url",          "headers",      "tls",
                                          "batch_size",   "batch_ms",     "timeout_ms",
                                          "retry_min_ms", "retry_max_ms", "max_retries"};

    if (conf_exporter_name_in(k, common, sizeof(common) / sizeof(common[0]))) {
        return 1;
    }
    if (t == TORII_CONF_EXPORTER_WEBHOOK) {
        return conf_exporter_name_in(k, webhook, sizeof(webhook) / sizeof(webhook[0]));
    }
    return t == TORII_CONF_EXPORTER_FILE && strcmp(k, "path") == 0;
}

static int conf_uint_member(const json_t *o, const char *k, unsigned min, unsigned max,
                            unsigned *out, const char *where, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, k);
    json_int_t n;

    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_integer(v) || (n = json_integer_value(v)) < (json_int_t)min
        || n > (json_int_t)max) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.%s: expected an integer from %u to %u",
                          where, k, min, max);
    }
    *out = (unsigned)n;
    return TORII_OK;
}

static int conf_str_member(const json_t *o, const char *k, char **out, const char *where,
                           struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, k);

    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.%s: expected a non-empty string", where, k);
    }
    free(*out);
    *out = torii_xstrdup(json_string_value(v));
    return TORII_OK;
}

static int conf_alert_type_ok(const char *s)
{
    static const char *const types[] = {TORII_CONF_ALERT_TYPES};

    return conf_exporter_name_in(s, types, sizeof(types) / sizeof(types[0]));
}

static int conf_exporter_alerts(const json_t *o, struct torii_conf_exporter *e, const char *where,
                                struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(o, "alerts");
    size_t i;
    json_t *it;

    if (v == NULL) {
        return TORII_OK;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return torii_errf(eb, TORII_EINVAL,
                          "config: %s.alerts: expected a non-empty array of alert types", where);
    }
    e->alerts = torii_xcalloc(json_array_size(v) + 1, sizeof(char *));
    json_array_foreach (v, i, it) {
        if (!json_is_string(it) || !conf_alert_type_ok(json_string_value(it))) {
            return torii_errf(eb, TORII_EINVAL, "config: %s.alerts[%zu]: unknown alert type", where,
                              i);
        }
        e->alerts[e->n_alerts++] = torii_xstrdup(json_string_value(it));
    }
    return TORII_OK;
}

static int conf_header_ok(const char *name, const char *value)
{
    if (name[0] == '\0') {
        return 0;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (*p <= ' ' || *p >= 127 || *p == ':') {
            return 0;
        }
    }
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\r' || *p == '\n') {
            return 0;
        }
    }
    return 1;
}

/* A webhook's headers {} (hdrs, not NULL) as "Name: value" lines in e->headers. */
static int conf_exporter_headers(json_t *hdrs, struct torii_conf_exporter *e, const char *where,
                                 struct torii_errbuf *eb)
{
    const char *k;
    json_t *v;

    if (!json_is_object(hdrs)) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.headers: expected an object", where);
    }
    e->headers = torii_xcalloc(json_object_size(hdrs) + 1, sizeof(char *));
    json_object_foreach (hdrs, k, v) {
        size_t n;
        if (!json_is_string(v) || !conf_header_ok(k, json_string_value(v))) {
            return torii_errf(eb, TORII_EINVAL, "config: %s.headers.%.64s: bad header", where, k);
        }
        n = strlen(k) + json_string_length(v) + 3;
        e->headers[e->n_headers] = torii_xmalloc(n);
        (void)snprintf(e->headers[e->n_headers], n, "%s: %s", k, json_string_value(v));
        e->n_headers++;
    }
    return TORII_OK;
}

/* A webhook's tls {} (tls, not NULL): trusted_ca, client_cert, verify. */
static int conf_exporter_tls(json_t *tls, struct torii_conf_exporter *e, const char *where,
                             struct torii_errbuf *eb)
{
    static const char *const members[] = {"trusted_ca", "client_cert", "verify"};
    char tls_where[48];
    const char *k;
    json_t *v;
    int rc;

    if (!json_is_object(tls)) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.tls: expected an object", where);
    }
    json_object_foreach (tls, k, v) {
        if (!conf_exporter_is_comment(k)
            && !conf_exporter_name_in(k, members, sizeof(members) / sizeof(members[0]))) {
            return torii_errf(eb, TORII_EINVAL, "config: %s.tls: unknown key \"%.64s\"", where, k);
        }
    }
    (void)snprintf(tls_where, sizeof(tls_where), "%s.tls", where);
    rc = conf_str_member(tls, "trusted_ca", &e->trusted_ca, tls_where, eb);
    if (rc == TORII_OK) {
        rc = conf_str_member(tls, "client_cert", &e->client_cert, tls_where, eb);
    }
    v = json_object_get(tls, "verify");
    if (rc != TORII_OK || v == NULL) {
        return rc;
    }
    if (!json_is_boolean(v)) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.tls.verify: expected a boolean", where);
    }
    e->tls_verify = json_is_true(v);
    return TORII_OK;
}

/* A webhook's batching and retry timings. */
static int conf_exporter_timings(const json_t *o, struct torii_conf_exporter *e, const char *where,
                                 struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    TORII_TRY(conf_uint_member(o, "batch_size", 1, 10000, &e->batch_size, where, eb));
    TORII_TRY(conf_uint_member(o, "batch_ms", 0, 600000, &e->batch_ms, where, eb));
    TORII_TRY(conf_uint_member(o, "timeout_ms", 100, 600000, &e->timeout_ms, where, eb));
    TORII_TRY(conf_uint_member(o, "retry_min_ms", 10, 3600000, &e->retry_min_ms, where, eb));
    TORII_TRY(conf_uint_member(o, "retry_max_ms", 10, 86400000, &e->retry_max_ms, where, eb));
    TORII_TRY(conf_uint_member(o, "max_retries", 0, 1000000, &e->max_retries, where, eb));
    TORII_ENSURE(e->retry_min_ms <= e->retry_max_ms,
                 torii_errf(eb, TORII_EINVAL,
                            "config: %s: retry_min_ms must not exceed retry_max_ms", where));
out:
    return rc;
}

static int conf_exporter_webhook(json_t *o, struct torii_conf_exporter *e, const char *where,
                                 struct torii_errbuf *eb)
{
    json_t *hdrs = json_object_get(o, "headers");
    json_t *tls = json_object_get(o, "tls");
    int rc = TORII_OK;

    TORII_TRY(conf_str_member(o, "url", &e->url, where, eb));
    TORII_ENSURE(
        e->url != NULL
            && (strncmp(e->url, "http://", 7) == 0 || strncmp(e->url, "https://", 8) == 0),
        torii_errf(eb, TORII_EINVAL, "config: %s.url: expected an http:// or https:// URL", where));
    if (hdrs != NULL) {
        TORII_TRY(conf_exporter_headers(hdrs, e, where, eb));
    }
    if (tls != NULL) {
        TORII_TRY(conf_exporter_tls(tls, e, where, eb));
    }
    TORII_TRY(conf_exporter_timings(o, e, where, eb));
out:
    return rc;
}

/* o's "type" into e->type, and every member of o known for that type. */
static int conf_exporter_type(json_t *o, struct torii_conf_exporter *e, const char *where,
                              struct torii_errbuf *eb)
{
    const json_t *t = json_object_get(o, "type");
    const char *k;
    json_t *v;
    size_t ti = 0;

    while (ti < CONF_EXPORTER_N_TYPES
           && !(json_is_string(t) && strcmp(json_string_value(t), conf_exporter_types[ti]) == 0)) {
        ti++;
    }
    if (ti == CONF_EXPORTER_N_TYPES) {
        return torii_errf(eb, TORII_EINVAL,
                          "config: %s.type: expected \"webhook\", \"file\" or \"log\"", where);
    }
    e->type = (enum torii_conf_exporter_type)ti;
    json_object_foreach (o, k, v) {
        if (!conf_exporter_is_comment(k) && !conf_exporter_member_ok(e->type, k)) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: unknown key \"%.64s\" for type %s",
                              where, k, conf_exporter_types[ti]);
        }
    }
    return TORII_OK;
}

/* The defaults of every member of an exporter (docs/operations.md). */
static void conf_exporter_defaults(struct torii_conf_exporter *e)
{
    e->tls_verify = 1;
    e->batch_size = 100;
    e->batch_ms = 1000;
    e->timeout_ms = 10000;
    e->retry_min_ms = 1000;
    e->retry_max_ms = 60000;
    e->max_retries = 10;
}

/* The members of the exporter's type: a webhook's, a file exporter's path. */
static int conf_exporter_typed(json_t *o, struct torii_conf_exporter *e, const char *where,
                               struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (e->type == TORII_CONF_EXPORTER_WEBHOOK) {
        TORII_TRY(conf_exporter_webhook(o, e, where, eb));
    } else if (e->type == TORII_CONF_EXPORTER_FILE) {
        TORII_TRY(conf_str_member(o, "path", &e->path, where, eb));
        TORII_ENSURE(
            e->path != NULL,
            torii_errf(eb, TORII_EINVAL, "config: %s.path: required for a file exporter", where));
    }
out:
    return rc;
}

/* The members every type has: name (default "<type>-<index>"), alerts, queue_size. */
static int conf_exporter_common(const json_t *o, size_t idx, struct torii_conf_exporter *e,
                                const char *where, struct torii_errbuf *eb)
{
    unsigned qs = 1000;
    int rc = conf_str_member(o, "name", &e->name, where, eb);

    if (rc != TORII_OK) {
        return rc;
    }
    if (e->name == NULL) {
        char def[48];
        (void)snprintf(def, sizeof(def), "%s-%zu", conf_exporter_types[e->type], idx);
        e->name = torii_xstrdup(def);
    }
    rc = conf_exporter_alerts(o, e, where, eb);
    if (rc == TORII_OK) {
        rc = conf_uint_member(o, "queue_size", 1, 1000000, &qs, where, eb);
    }
    e->queue_size = qs;
    return rc;
}

/* One exporters[i]; *skip set when "enabled": false. */
static int conf_exporter_parse(json_t *o, size_t idx, struct torii_conf_exporter *e, int *skip,
                               struct torii_errbuf *eb)
{
    char where[32];
    const json_t *en = json_object_get(o, "enabled");
    int rc;

    (void)snprintf(where, sizeof(where), "exporters[%zu]", idx);
    *skip = 0;
    if (!json_is_object(o)) {
        return torii_errf(eb, TORII_EINVAL, "config: %s: expected an object", where);
    }
    rc = conf_exporter_type(o, e, where, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    if (en != NULL && !json_is_boolean(en)) {
        return torii_errf(eb, TORII_EINVAL, "config: %s.enabled: expected a boolean", where);
    }
    *skip = en != NULL && json_is_false(en);
    conf_exporter_defaults(e);
    rc = conf_exporter_common(o, idx, e, where, eb);
    if (rc == TORII_OK) {
        rc = conf_exporter_typed(o, e, where, eb);
    }
    return rc;
}

/* An error unless no exporter before e (c->exporter_list[0 .. n_exporters)) has its name. */
static int conf_exporter_name_unique(const struct torii_config *c,
                                     const struct torii_conf_exporter *e, size_t idx,
                                     struct torii_errbuf *eb)
{
    for (size_t j = 0; j < c->n_exporters; j++) {
        if (strcmp(c->exporter_list[j].name, e->name) == 0) {
            return torii_errf(eb, TORII_EINVAL,
                              "config: exporters[%zu].name: duplicate name \"%.64s\"", idx,
                              e->name);
        }
    }
    return TORII_OK;
}

void torii_conf_exporters_validate(struct torii_config *c, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    size_t n = json_array_size(c->exporters);
    size_t i;
    json_t *o;

    torii_conf_exporters_clear(c);
    if (n == 0) {
        return;
    }
    c->exporter_list = torii_xcalloc(n, sizeof(*c->exporter_list));
    json_array_foreach (c->exporters, i, o) {
        struct torii_conf_exporter *e = &c->exporter_list[c->n_exporters];
        int skip = 0;
        int rc = conf_exporter_parse(o, i, e, &skip, &eb);
        if (rc == TORII_OK && !skip) {
            rc = conf_exporter_name_unique(c, e, i, &eb);
        }
        if (rc != TORII_OK) {
            torii_conf_errs_add(errs, eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc));
        }
        if (rc != TORII_OK || skip) {
            conf_exporter_clear(e);
            continue;
        }
        c->n_exporters++;
    }
}
