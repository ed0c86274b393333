/* config.c - embedded defaults, JSON file, environment; one immutable struct torii_config.
 * The file is validated strictly: unknown keys and wrong types are errors naming the key. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/log.h"
#include "torii/mem.h"

static void conf_set_str(char **dst, const char *val)
{
    free(*dst);
    *dst = val ? torii_xstrdup(val) : NULL;
}

static void conf_defaults(struct torii_config *c)
{
    const char *state = getenv("STATE_DIRECTORY"); /* systemd StateDirectory= */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    conf_set_str(&c->data_dir, state && state[0] ? state : "./data");
    c->workers = ncpu > 0 ? (unsigned)ncpu : 1;
    conf_set_str(&c->listen_https, "0.0.0.0:8443");
    conf_set_str(&c->listen_http, "0.0.0.0:8080");
    conf_set_str(&c->admin_listen, "127.0.0.1:9000");
    conf_set_str(&c->admin_client_id, "admin");
    conf_set_str(&c->default_cert, TORII_CONF_DEFAULT_CERT_ID);
    conf_set_str(&c->log_level, "info");
    c->strict_sni = 0;
    c->ticket_rotate_s = 3600;
    c->access_log = 1;
    c->max_header_bytes = 16384;
    c->max_headers = 100;
    c->max_target = 8192;
    c->max_body = (size_t)1 << 30;
    c->admin_max_body = (size_t)8 << 20;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->max_conns_per_worker = 20000;
    c->renewal_interval_s = 3600;
}

/* One key of the schema: where it goes and how it is typed. */
enum conf_type { CONF_STR, CONF_UINT, CONF_BOOL, CONF_SIZE, CONF_MS, CONF_ARRAY, CONF_OBJECT };

struct conf_key {
    const char *path; /* dotted */
    enum conf_type type;
    size_t off;
    unsigned long long max;
};

#define OFF(f) offsetof(struct torii_config, f)

static const struct conf_key conf_keys[] = {
    {"data_dir", CONF_STR, OFF(data_dir), 0},
    {"workers", CONF_UINT, OFF(workers), 256},
    {"log_level", CONF_STR, OFF(log_level), 0},
    {"access_log", CONF_BOOL, OFF(access_log), 0},
    {"listen.https", CONF_STR, OFF(listen_https), 0},
    {"listen.http", CONF_STR, OFF(listen_http), 0},
    {"admin.listen", CONF_STR, OFF(admin_listen), 0},
    {"admin.token", CONF_STR, OFF(admin_token), 0},
    {"admin.client_id", CONF_STR, OFF(admin_client_id), 0},
    {"admin.max_body", CONF_SIZE, OFF(admin_max_body), (unsigned long long)1 << 31},
    {"tls.default_cert", CONF_STR, OFF(default_cert), 0},
    {"tls.strict_sni", CONF_BOOL, OFF(strict_sni), 0},
    {"tls.ticket_rotate_s", CONF_UINT, OFF(ticket_rotate_s), 86400 * 7},
    {"limits.max_header_bytes", CONF_SIZE, OFF(max_header_bytes), 1 << 20},
    {"limits.max_headers", CONF_SIZE, OFF(max_headers), 10000},
    {"limits.max_target", CONF_SIZE, OFF(max_target), 1 << 20},
    {"limits.max_body", CONF_SIZE, OFF(max_body), (unsigned long long)1 << 40},
    {"limits.header_timeout_ms", CONF_MS, OFF(header_timeout_ms), 3600000},
    {"limits.idle_timeout_ms", CONF_MS, OFF(idle_timeout_ms), 3600000},
    {"limits.max_conns_per_worker", CONF_MS, OFF(max_conns_per_worker), 1000000},
    {"renewal.interval_s", CONF_UINT, OFF(renewal_interval_s), 86400 * 30},
    {"routes", CONF_ARRAY, OFF(routes), 0},
    {"exporters", CONF_ARRAY, OFF(exporters), 0},
    {"acme", CONF_OBJECT, OFF(acme), 0},
    {"pki", CONF_OBJECT, OFF(pki), 0},
    {"alerts", CONF_OBJECT, OFF(alerts), 0},
};

/* Sections whose members are all listed in conf_keys (so unknown members are errors). */
static const char *const conf_sections[] = {"listen", "admin", "tls", "limits", "renewal"};

static const struct conf_key *conf_find(const char *path)
{
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
        if (strcmp(conf_keys[i].path, path) == 0) {
            return &conf_keys[i];
        }
    }
    return NULL;
}

static int conf_is_section(const char *name)
{
    for (size_t i = 0; i < sizeof(conf_sections) / sizeof(conf_sections[0]); i++) {
        if (strcmp(conf_sections[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* JSON has no comments: members named "//" or starting with "//" are ignored. */
static int conf_is_comment(const char *name)
{
    return strncmp(name, "//", 2) == 0;
}

static int conf_apply_key(struct torii_config *c, const struct conf_key *k, json_t *v,
                          struct torii_errbuf *eb)
{
    char *base = (char *)c;

    switch (k->type) {
    case CONF_STR:
        if (!json_is_string(v)) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: expected a string", k->path);
        }
        conf_set_str((char **)(void *)(base + k->off), json_string_value(v));
        return TORII_OK;
    case CONF_BOOL:
        if (!json_is_boolean(v)) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: expected true or false", k->path);
        }
        *(int *)(void *)(base + k->off) = json_is_true(v);
        return TORII_OK;
    case CONF_UINT:
    case CONF_SIZE:
    case CONF_MS: {
        json_int_t n;
        if (!json_is_integer(v) || (n = json_integer_value(v)) < 0
            || (unsigned long long)n > k->max) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: expected an integer from 0 to %llu",
                              k->path, k->max);
        }
        if (k->type == CONF_SIZE) {
            *(size_t *)(void *)(base + k->off) = (size_t)n;
        } else if (k->type == CONF_MS) {
            *(uint32_t *)(void *)(base + k->off) = (uint32_t)n;
        } else {
            *(unsigned *)(void *)(base + k->off) = (unsigned)n;
        }
        return TORII_OK;
    }
    case CONF_ARRAY:
    case CONF_OBJECT: {
        json_t **dst = (json_t **)(void *)(base + k->off);
        if ((k->type == CONF_ARRAY && !json_is_array(v))
            || (k->type == CONF_OBJECT && !json_is_object(v))) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: expected an %s", k->path,
                              k->type == CONF_ARRAY ? "array" : "object");
        }
        json_decref(*dst);
        *dst = json_incref(v);
        return TORII_OK;
    }
    default:
        return torii_errf(eb, TORII_EINVAL, "config: %s: internal type error", k->path);
    }
}

static int conf_apply_json(struct torii_config *c, json_t *root, struct torii_errbuf *eb)
{
    const char *name;
    json_t *v;
    int rc = TORII_OK;

    if (!json_is_object(root)) {
        return torii_errf(eb, TORII_EINVAL, "config: the top level must be a JSON object");
    }
    json_object_foreach (root, name, v) {
        const struct conf_key *k = conf_find(name);
        if (conf_is_comment(name)) {
            continue;
        }
        if (k != NULL) {
            TORII_TRY(conf_apply_key(c, k, v, eb));
        } else if (conf_is_section(name)) {
            const char *sub;
            json_t *sv;
            if (!json_is_object(v)) {
                return torii_errf(eb, TORII_EINVAL, "config: %s: expected an object", name);
            }
            json_object_foreach (v, sub, sv) {
                char path[128];
                if (conf_is_comment(sub)) {
                    continue;
                }
                int n = snprintf(path, sizeof(path), "%s.%s", name, sub);
                if (n < 0 || (size_t)n >= sizeof(path) || (k = conf_find(path)) == NULL) {
                    return torii_errf(eb, TORII_EINVAL, "config: unknown key \"%s.%.64s\"", name,
                                      sub);
                }
                TORII_TRY(conf_apply_key(c, k, sv, eb));
            }
        } else {
            return torii_errf(eb, TORII_EINVAL, "config: unknown key \"%.64s\"", name);
        }
    }
out:
    return rc;
}

static int conf_validate(struct torii_config *c, struct torii_errbuf *eb)
{
    struct sockaddr_storage ss;
    enum torii_log_level lvl;
    int len;
    int rc = TORII_OK;
    const struct {
        const char *key;
        const char *val;
        int optional;
    } addrs[] = {
        {"listen.https", c->listen_https, 1},
        {"listen.http", c->listen_http, 1},
        {"admin.listen", c->admin_listen, 0},
    };

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct torii_errbuf aeb;
        if (addrs[i].optional && addrs[i].val[0] == '\0') {
            continue;
        }
        if (torii_config_parse_addr(addrs[i].val, &ss, &len, &aeb) != TORII_OK) {
            return torii_errf(eb, TORII_EINVAL, "config: %s: %s", addrs[i].key, aeb.msg);
        }
    }
    if (torii_log_level_parse(c->log_level, &lvl) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL,
                          "config: log_level: expected err, warn, notice, info or debug");
    }
    TORII_ENSURE(c->data_dir[0] != '\0', torii_errf(eb, TORII_EINVAL, "config: data_dir is empty"));
    TORII_ENSURE(c->default_cert[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "config: tls.default_cert is empty"));
    TORII_ENSURE(
        c->admin_token == NULL || strlen(c->admin_token) >= 16,
        torii_errf(eb, TORII_EINVAL, "config: admin.token must be at least 16 characters"));
    if (c->workers == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = ncpu > 0 ? (unsigned)ncpu : 1;
    }
out:
    return rc;
}

int torii_config_load(const char *path, struct torii_config **out, struct torii_errbuf *eb)
{
    struct torii_config *c = torii_xcalloc(1, sizeof(*c));
    json_t *root = NULL;
    json_error_t jerr;
    const char *env;
    int rc = TORII_OK;

    conf_defaults(c);
    if (path != NULL) {
        root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL) {
            rc = torii_errf(eb, TORII_EINVAL, "config: %s:%d:%d: %s", path, jerr.line, jerr.column,
                            jerr.text);
            goto out;
        }
        TORII_TRY(conf_apply_json(c, root, eb));
    }
    env = getenv("TORII_ADMIN_TOKEN");
    if (env != NULL && env[0] != '\0') {
        conf_set_str(&c->admin_token, env);
    }
    TORII_TRY(conf_validate(c, eb));
    *out = c;
    c = NULL;
out:
    json_decref(root);
    torii_config_free(c);
    return rc;
}

void torii_config_free(struct torii_config *c)
{
    if (c == NULL) {
        return;
    }
    free(c->data_dir);
    free(c->listen_https);
    free(c->listen_http);
    free(c->admin_listen);
    if (c->admin_token != NULL) {
        torii_secure_free(c->admin_token, strlen(c->admin_token));
    }
    free(c->admin_client_id);
    free(c->default_cert);
    free(c->log_level);
    json_decref(c->routes);
    json_decref(c->acme);
    json_decref(c->exporters);
    json_decref(c->pki);
    json_decref(c->alerts);
    free(c);
}

int torii_config_parse_addr(const char *s, struct sockaddr_storage *ss, int *sslen,
                            struct torii_errbuf *eb)
{
    char host[64];
    const char *colon;
    const char *hs = s;
    size_t hlen;
    char *end = NULL;
    long port;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':') {
            return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": expected [v6]:port", s);
        }
        hs = s + 1;
        hlen = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": expected host:port", s);
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": bad host", s);
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535) {
        return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": bad port", s);
    }
    if (strcmp(host, "localhost") == 0) {
        (void)snprintf(host, sizeof(host), "127.0.0.1");
    }
    if (s[0] != '[') {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": not an IPv4 address", s);
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return torii_errf(eb, TORII_EINVAL, "bad address \"%.64s\": not an IPv6 address", s);
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*sin6);
    }
    return TORII_OK;
}
