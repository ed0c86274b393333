/* config.c - embedded defaults, JSON file, environment; one immutable struct torii_config.
 * The file is validated strictly: unknown keys and wrong types are errors naming the key. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
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

/* The environment's value of name, or NULL. */
static const char *conf_env(const char *name)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): torii never calls setenv, so getenv only reads */
    return getenv(name);
}

static void conf_defaults(struct torii_config *c)
{
    const char *state = conf_env("STATE_DIRECTORY"); /* systemd StateDirectory= */
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
    c->strict_host = 1;
    c->ticket_rotate_s = 3600;
    c->access_log = 1;
    conf_set_str(&c->access_log_format, "json");
    c->shutdown_timeout_s = 30;
    c->max_header_bytes = 16384;
    c->max_headers = 100;
    c->max_target = 8192;
    c->max_body = (size_t)1 << 30;
    c->admin_max_body = (size_t)8 << 20;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->tunnel_idle_timeout_ms = 300000;
    c->http2 = 1;
    c->h2_max_streams = 100;
    c->h2_max_header_list = 65536;
    c->h2_header_table = 4096;
    c->h2_max_resets = 200;
    c->h2_max_control = 200;
    c->h2_max_continuations = 8;
    c->max_conns_per_worker = 20000;
    c->renewal_interval_s = 3600;
    c->renewal_threshold_pct = 20;
    c->renewal_jitter_s = 600;
    c->renewal_initial_delay_s = 60;
    c->renewal_retry_min_s = 60;
    c->renewal_retry_max_s = 21600;
    c->renewal_delete_expired_copies = 1;
    c->alerts_almost_expired_days = 15;
    c->alerts_repeat_s = 0;
    c->debug_clock_hook = 0;
    conf_set_str(&c->health_public_path, "");
    c->admin_auth_fail_limit = 10;
    c->admin_auth_fail_window_s = 60;
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
/* A day in seconds, wide enough for the products of the bounds below. */
#define CONF_DAY_S 86400LL

static const struct conf_key conf_keys[] = {
    {"data_dir", CONF_STR, OFF(data_dir), 0},
    {"workers", CONF_UINT, OFF(workers), 256},
    {"log_level", CONF_STR, OFF(log_level), 0},
    {"access_log", CONF_BOOL, OFF(access_log), 0},
    {"access_log.enabled", CONF_BOOL, OFF(access_log), 0},
    {"access_log.path", CONF_STR, OFF(access_log_path), 0},
    {"access_log.format", CONF_STR, OFF(access_log_format), 0},
    {"shutdown_timeout_s", CONF_UINT, OFF(shutdown_timeout_s), 86400},
    {"listen.https", CONF_STR, OFF(listen_https), 0},
    {"listen.http", CONF_STR, OFF(listen_http), 0},
    {"admin.listen", CONF_STR, OFF(admin_listen), 0},
    {"admin.token", CONF_STR, OFF(admin_token), 0},
    {"admin.client_id", CONF_STR, OFF(admin_client_id), 0},
    {"admin.max_body", CONF_SIZE, OFF(admin_max_body), (unsigned long long)1 << 31},
    {"admin.tokens", CONF_ARRAY, OFF(admin_tokens), 0},
    {"admin.audit_log", CONF_STR, OFF(admin_audit_log), 0},
    {"admin.hosts", CONF_ARRAY, OFF(admin_hosts), 0},
    {"admin.tls", CONF_OBJECT, OFF(admin_tls), 0},
    {"admin.auth_fail_limit", CONF_UINT, OFF(admin_auth_fail_limit), 1000000},
    {"admin.auth_fail_window_s", CONF_UINT, OFF(admin_auth_fail_window_s), 86400},
    {"tls.default_cert", CONF_STR, OFF(default_cert), 0},
    {"tls.strict_sni", CONF_BOOL, OFF(strict_sni), 0},
    {"tls.strict_host", CONF_BOOL, OFF(strict_host), 0},
    {"tls.ticket_rotate_s", CONF_UINT, OFF(ticket_rotate_s), 7 * CONF_DAY_S},
    {"limits.max_header_bytes", CONF_SIZE, OFF(max_header_bytes), 1 << 20},
    {"limits.max_headers", CONF_SIZE, OFF(max_headers), 10000},
    {"limits.max_target", CONF_SIZE, OFF(max_target), 1 << 20},
    {"limits.max_body", CONF_SIZE, OFF(max_body), (unsigned long long)1 << 40},
    {"limits.header_timeout_ms", CONF_MS, OFF(header_timeout_ms), 3600000},
    {"limits.idle_timeout_ms", CONF_MS, OFF(idle_timeout_ms), 3600000},
    {"limits.tunnel_idle_timeout_ms", CONF_MS, OFF(tunnel_idle_timeout_ms), 86400000},
    {"limits.max_conns_per_worker", CONF_MS, OFF(max_conns_per_worker), 1000000},
    {"proxy.http2", CONF_BOOL, OFF(http2), 0},
    {"limits.h2_max_concurrent_streams", CONF_UINT, OFF(h2_max_streams), 10000},
    {"limits.h2_max_header_list_size", CONF_SIZE, OFF(h2_max_header_list), 1 << 20},
    {"limits.h2_header_table_size", CONF_SIZE, OFF(h2_header_table), 1 << 16},
    {"limits.h2_max_resets", CONF_UINT, OFF(h2_max_resets), 100000},
    {"limits.h2_max_control_frames", CONF_UINT, OFF(h2_max_control), 100000},
    {"limits.h2_max_continuations", CONF_UINT, OFF(h2_max_continuations), 1000},
    {"renewal.interval_s", CONF_UINT, OFF(renewal_interval_s), 30 * CONF_DAY_S},
    {"renewal.threshold_pct", CONF_UINT, OFF(renewal_threshold_pct), 99},
    {"renewal.jitter_s", CONF_UINT, OFF(renewal_jitter_s), 86400},
    {"renewal.initial_delay_s", CONF_UINT, OFF(renewal_initial_delay_s), 86400},
    {"renewal.retry_min_s", CONF_UINT, OFF(renewal_retry_min_s), 86400},
    {"renewal.retry_max_s", CONF_UINT, OFF(renewal_retry_max_s), 7 * CONF_DAY_S},
    {"renewal.delete_expired_copies", CONF_BOOL, OFF(renewal_delete_expired_copies), 0},
    {"alerts.almost_expired_days", CONF_UINT, OFF(alerts_almost_expired_days), 3650},
    {"alerts.repeat_s", CONF_UINT, OFF(alerts_repeat_s), 30 * CONF_DAY_S},
    {"debug.clock_hook", CONF_BOOL, OFF(debug_clock_hook), 0},
    {"debug.stall_file", CONF_STR, OFF(debug_stall_file), 0},
    {"health.public_path", CONF_STR, OFF(health_public_path), 0},
    {"routes", CONF_ARRAY, OFF(routes), 0},
    {"exporters", CONF_ARRAY, OFF(exporters), 0},
    {"pki", CONF_OBJECT, OFF(pki), 0},
    {"keys.kek_file", CONF_STR, OFF(keys_kek_file), 0},
    {"keys.kek_credential", CONF_STR, OFF(keys_kek_credential), 0},
    {"keys.previous_kek_files", CONF_ARRAY, OFF(keys_previous_kek_files), 0},
    {"keys.previous_kek_credentials", CONF_ARRAY, OFF(keys_previous_kek_credentials), 0},
    {"acme", CONF_OBJECT, OFF(acme_json), 0},
    {"fleet", CONF_OBJECT, OFF(fleet_json), 0},
};

/* Sections whose members are all listed in conf_keys (so unknown members are errors). */
static const char *const conf_sections[] = {"listen",     "admin",  "tls",   "limits",
                                            "renewal",    "alerts", "debug", "health",
                                            "access_log", "keys",   "proxy"};

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

/* Collected problems. */
void torii_conf_errs_add(struct torii_conf_errs *errs, const char *msg)
{
    errs->msgs = torii_xrealloc(errs->msgs, (errs->n + 1) * sizeof(*errs->msgs));
    errs->msgs[errs->n++] = torii_xstrdup(msg);
}

void torii_conf_errs_addf(struct torii_conf_errs *errs, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    torii_conf_errs_add(errs, msg);
}

void torii_conf_errs_free(struct torii_conf_errs *errs)
{
    if (errs == NULL) {
        return;
    }
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->msgs[i]);
    }
    TORII_FREE(errs->msgs);
    errs->n = 0;
}

/* Record the problem in eb when rc is an error; returns rc. */
static int conf_note(struct torii_conf_errs *errs, int rc, const struct torii_errbuf *eb)
{
    if (rc != TORII_OK) {
        torii_conf_errs_add(errs, eb->msg[0] != '\0' ? eb->msg : torii_strerror(rc));
    }
    return rc;
}

/* The members of one section ("listen", "tls", ...): every unknown or bad one is noted. */
static void conf_apply_section(struct torii_config *c, const char *name, json_t *v,
                               struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    const char *sub;
    json_t *sv;

    if (!json_is_object(v)) {
        (void)conf_note(errs, torii_errf(&eb, TORII_EINVAL, "config: %s: expected an object", name),
                        &eb);
        return;
    }
    json_object_foreach (v, sub, sv) {
        const struct conf_key *k = NULL;
        char path[128];
        int n;
        if (conf_is_comment(sub)) {
            continue;
        }
        n = snprintf(path, sizeof(path), "%s.%s", name, sub);
        if (n < 0 || (size_t)n >= sizeof(path) || (k = conf_find(path)) == NULL) {
            (void)conf_note(
                errs, torii_errf(&eb, TORII_EINVAL, "config: unknown key \"%s.%.64s\"", name, sub),
                &eb);
            continue;
        }
        (void)conf_note(errs, conf_apply_key(c, k, sv, &eb), &eb);
    }
}

static void conf_apply_json(struct torii_config *c, json_t *root, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    const char *name;
    json_t *v;

    if (!json_is_object(root)) {
        (void)conf_note(
            errs, torii_errf(&eb, TORII_EINVAL, "config: the top level must be a JSON object"),
            &eb);
        return;
    }
    json_object_foreach (root, name, v) {
        const struct conf_key *k = conf_find(name);
        if (conf_is_comment(name)) {
            continue;
        }
        if (k != NULL && !(json_is_object(v) && conf_is_section(name))) {
            (void)conf_note(errs, conf_apply_key(c, k, v, &eb), &eb);
        } else if (conf_is_section(name)) {
            conf_apply_section(c, name, v, errs);
        } else {
            (void)conf_note(
                errs, torii_errf(&eb, TORII_EINVAL, "config: unknown key \"%.64s\"", name), &eb);
        }
    }
}

/* ---- pki{} ------------------------------------------------------------------------ */

/* pki.ca_key values: the key of the first-start CAs. */
static const char *const conf_pki_ca_keys[] = {"ecdsa-p256", "ecdsa-p384", "ecdsa-p521",
                                               "rsa-2048",   "rsa-3072",   "rsa-4096"};

/* http(s)://host[:port][/path] without whitespace, quotes, commas or a trailing '/'. */
static int conf_pki_url_ok(const char *u)
{
    size_t n = strlen(u);
    const char *host = NULL;

    if (strncmp(u, "http://", 7) == 0) {
        host = u + 7;
    } else if (strncmp(u, "https://", 8) == 0) {
        host = u + 8;
    }
    if (host == NULL || host[0] == '\0' || host[0] == '/' || n > 512 || u[n - 1] == '/') {
        return 0;
    }
    for (const char *p = u; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == ',' || *p == '\\'
            || *p == '?' || *p == '#') {
            return 0;
        }
    }
    return 1;
}

/* Default public URL: the plain http listener (the https one when http is off); a wildcard
 * address is replaced by the machine's host name. */
static void conf_pki_default_url(const struct torii_config *c, char *out, size_t len)
{
    const char *addr = c->listen_http[0] != '\0' ? c->listen_http : c->listen_https;
    const char *scheme = c->listen_http[0] != '\0' ? "http" : "https";
    const char *colon = strrchr(addr, ':');
    char host[256];

    if (colon == NULL || addr[0] == '\0') {
        (void)snprintf(out, len, "http://localhost");
        return;
    }
    if (strncmp(addr, "0.0.0.0:", 8) == 0 || strncmp(addr, "[::]:", 5) == 0) {
        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0') {
            (void)snprintf(host, sizeof(host), "localhost");
        }
        host[sizeof(host) - 1] = '\0';
        (void)snprintf(out, len, "%s://%s%s", scheme, host, colon);
        return;
    }
    (void)snprintf(out, len, "%s://%s", scheme, addr);
}

static int conf_pki_uint(json_t *pki, const char *k, json_int_t min, json_int_t max, json_int_t def,
                         struct torii_errbuf *eb)
{
    json_t *v = json_object_get(pki, k);

    if (v == NULL) {
        return json_object_set_new(pki, k, json_integer(def)) == 0 ? TORII_OK : TORII_ENOMEM;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        return torii_errf(eb, TORII_EINVAL, "config: pki.%s: expected an integer from %lld to %lld",
                          k, (long long)min, (long long)max);
    }
    return TORII_OK;
}

/* One member of pki{}: TORII_OK or the problem in eb. The integers are checked after. */
static int conf_pki_member(const char *k, json_t *v, struct torii_errbuf *eb)
{
    if (strcmp(k, "public_url") == 0) {
        if (!json_is_string(v) || !conf_pki_url_ok(json_string_value(v))) {
            return torii_errf(eb, TORII_EINVAL,
                              "config: pki.public_url: expected an http:// or https:// URL "
                              "without a trailing '/', query or fragment");
        }
    } else if (strcmp(k, "ca_key") == 0) {
        int ok = 0;
        for (size_t i = 0; json_is_string(v) && i < sizeof(conf_pki_ca_keys) / sizeof(char *);
             i++) {
            ok |= strcmp(json_string_value(v), conf_pki_ca_keys[i]) == 0;
        }
        if (!ok) {
            return torii_errf(eb, TORII_EINVAL,
                              "config: pki.ca_key: expected ecdsa-p256, ecdsa-p384, "
                              "ecdsa-p521, rsa-2048, rsa-3072 or rsa-4096");
        }
    } else if (strcmp(k, "ocsp_next_update_s") != 0 && strcmp(k, "ocsp_cache_s") != 0
               && strcmp(k, "crl_next_update_s") != 0) {
        return torii_errf(eb, TORII_EINVAL, "config: unknown key \"pki.%.64s\"", k);
    }
    return TORII_OK;
}

/* Validate pki{} strictly (every problem noted) and fill in the defaults, so users of
 * cfg->pki read every key. */
static void conf_pki_parse(struct torii_config *c, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    json_t *pki = c->pki != NULL ? json_deep_copy(c->pki) : json_object();
    const char *k;
    json_t *v;
    char url[600];

    if (pki == NULL) {
        torii_conf_errs_add(errs, "config: pki: out of memory");
        return;
    }
    json_object_foreach (pki, k, v) {
        if (!conf_is_comment(k)) {
            (void)conf_note(errs, conf_pki_member(k, v, &eb), &eb);
        }
    }
    if (json_object_get(pki, "public_url") == NULL) {
        conf_pki_default_url(c, url, sizeof(url));
        (void)json_object_set_new(pki, "public_url", json_string(url));
    }
    if (json_object_get(pki, "ca_key") == NULL) {
        (void)json_object_set_new(pki, "ca_key", json_string("ecdsa-p384"));
    }
    (void)conf_note(errs, conf_pki_uint(pki, "ocsp_next_update_s", 60, 7 * CONF_DAY_S, 3600, &eb),
                    &eb);
    (void)conf_note(errs, conf_pki_uint(pki, "ocsp_cache_s", 0, 3600, 60, &eb), &eb);
    (void)conf_note(
        errs, conf_pki_uint(pki, "crl_next_update_s", 300, 365 * CONF_DAY_S, 86400, &eb), &eb);
    json_decref(c->pki);
    c->pki = pki;
}

/* health.public_path: "" (off) or an absolute path without query, fragment, spaces or control
 * characters, outside /.well-known/ (which torii serves itself). */
static int conf_health_path_ok(const char *p)
{
    size_t n = strlen(p);

    if (n == 0) {
        return 1;
    }
    if (p[0] != '/' || n > 256 || strncmp(p, "/.well-known/", 13) == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            return 0;
        }
    }
    return 1;
}

/* The wildcard address of either family ("0.0.0.0", "[::]"). */
static int conf_addr_any(const struct sockaddr_storage *ss)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

    if (ss->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    return memcmp(&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, &any6, sizeof(any6))
           == 0;
}

static uint16_t conf_addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
}

/* Two listeners that cannot both bind: the same port (not 0) and the same address, or a
 * wildcard on either side (the IPv6 wildcard also takes IPv4 on a dual-stack host). */
static int conf_addr_clash(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    int any_a = conf_addr_any(a);
    int any_b = conf_addr_any(b);

    if (conf_addr_port(a) == 0 || conf_addr_port(a) != conf_addr_port(b)) {
        return 0;
    }
    if ((any_a && a->ss_family == AF_INET6) || (any_b && b->ss_family == AF_INET6)) {
        return 1;
    }
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (any_a || any_b) {
        return 1;
    }
    if (a->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr
               == ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
    }
    return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
                  sizeof(struct in6_addr))
           == 0;
}

/* listen.https, listen.http and admin.listen: each a valid address, no two on one port. */
static void conf_validate_listeners(const struct torii_config *c, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    struct sockaddr_storage ss[3];
    int ok[3] = {0, 0, 0};
    const char *const keys[3] = {"listen.https", "listen.http", "admin.listen"};
    const char *const vals[3] = {c->listen_https, c->listen_http, c->admin_listen};
    int len;

    for (size_t i = 0; i < 3; i++) {
        struct torii_errbuf aeb = {{0}};
        if (i < 2 && vals[i][0] == '\0') {
            continue; /* the public listeners may be disabled */
        }
        if (torii_config_parse_addr(vals[i], &ss[i], &len, &aeb) != TORII_OK) {
            (void)conf_note(errs, torii_errf(&eb, TORII_EINVAL, "config: %s: %s", keys[i], aeb.msg),
                            &eb);
            continue;
        }
        ok[i] = 1;
    }
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = i + 1; j < 3; j++) {
            if (ok[i] && ok[j] && conf_addr_clash(&ss[i], &ss[j])) {
                (void)conf_note(errs,
                                torii_errf(&eb, TORII_EINVAL,
                                           "config: %s (%.64s) and %s (%.64s): the same "
                                           "port on overlapping addresses; each listener needs "
                                           "its own address and port",
                                           keys[i], vals[i], keys[j], vals[j]),
                                &eb);
            }
        }
    }
}

/* A check of conf_validate: when cond is false, note msg. */
static void conf_require(struct torii_conf_errs *errs, int cond, const char *msg)
{
    if (!cond) {
        torii_conf_errs_add(errs, msg);
    }
}

static void conf_validate(struct torii_config *c, struct torii_conf_errs *errs)
{
    enum torii_log_level lvl;

    conf_validate_listeners(c, errs);
    conf_require(errs, torii_log_level_parse(c->log_level, &lvl) == TORII_OK,
                 "config: log_level: expected err, warn, notice, info or debug");
    conf_require(errs, c->data_dir[0] != '\0', "config: data_dir is empty");
    conf_require(errs,
                 strcmp(c->access_log_format, "json") == 0
                     || strcmp(c->access_log_format, "combined") == 0,
                 "config: access_log.format: expected json or combined");
    conf_require(errs, c->access_log_path == NULL || c->access_log_path[0] == '/',
                 "config: access_log.path: expected an absolute path");
    conf_require(errs, c->default_cert[0] != '\0', "config: tls.default_cert is empty");
    conf_require(errs, c->admin_token == NULL || strlen(c->admin_token) >= 16,
                 "config: admin.token must be at least 16 characters");
    conf_require(errs, c->renewal_threshold_pct >= 1,
                 "config: renewal.threshold_pct: expected 1 to 99");
    conf_require(errs,
                 c->renewal_retry_min_s >= 1 && c->renewal_retry_min_s <= c->renewal_retry_max_s,
                 "config: renewal.retry_min_s must be >= 1 and <= renewal.retry_max_s");
    if (!conf_health_path_ok(c->health_public_path)) {
        struct torii_errbuf eb;
        (void)torii_errf(&eb, TORII_EINVAL,
                         "config: health.public_path: expected \"\" or a path starting with "
                         "'/' (no query, spaces or /.well-known/), got \"%.64s\"",
                         c->health_public_path);
        torii_conf_errs_add(errs, eb.msg);
    }
    torii_conf_exporters_validate(c, errs);
    conf_pki_parse(c, errs);
    torii_conf_admin_validate(c, errs);
    torii_conf_acme_validate(c, errs);
    torii_conf_fleet_validate(c, errs);
    if (c->workers == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = ncpu > 0 ? (unsigned)ncpu : 1;
    }
}

/* The file as JSON, or NULL with the problem noted: "config: FILE: <errno text>" when it
 * cannot be read, "config: FILE:LINE:COLUMN: <parser text>" when it is not JSON. */
static json_t *conf_read_file(const char *path, struct torii_conf_errs *errs)
{
    struct torii_errbuf eb = {{0}};
    struct stat st = {0};
    json_error_t jerr;
    json_t *root = NULL;
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        (void)conf_note(
            errs, torii_errf(&eb, TORII_EINVAL, "config: %s: %s", path, torii_errno_text(errno).s),
            &eb);
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        (void)conf_note(
            errs,
            torii_errf(&eb, TORII_EINVAL, "config: %s: %s", path,
                       S_ISDIR(st.st_mode) ? torii_errno_text(EISDIR).s : "not a regular file"),
            &eb);
        goto out;
    }
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        (void)conf_note(errs,
                        torii_errf(&eb, TORII_EINVAL, "config: %s:%d:%d: %s", path, jerr.line,
                                   jerr.column, jerr.text),
                        &eb);
    }
out:
    (void)fclose(f);
    return root;
}

int torii_config_check(const char *path, struct torii_config **out, struct torii_conf_errs *errs)
{
    struct torii_config *c = torii_xcalloc(1, sizeof(*c));
    json_t *root = NULL;
    const char *env;
    size_t n0 = errs->n;

    *out = NULL;
    conf_defaults(c);
    if (path != NULL) {
        root = conf_read_file(path, errs);
        if (root == NULL) {
            torii_config_free(c);
            return TORII_EINVAL;
        }
        conf_apply_json(c, root, errs);
        json_decref(root);
    }
    env = conf_env("TORII_ADMIN_TOKEN");
    if (env != NULL && env[0] != '\0') {
        conf_set_str(&c->admin_token, env);
    }
    conf_validate(c, errs);
    *out = c;
    return errs->n > n0 ? TORII_EINVAL : TORII_OK;
}

int torii_config_load(const char *path, struct torii_config **out, struct torii_errbuf *eb)
{
    struct torii_conf_errs errs = {NULL, 0};
    struct torii_config *c = NULL;
    int rc = torii_config_check(path, &c, &errs);

    if (rc != TORII_OK) {
        if (errs.n > 1) {
            (void)torii_errf(eb, rc, "%s (and %zu more problems)", errs.msgs[0], errs.n - 1);
        } else {
            (void)torii_errf(eb, rc, "%s", errs.n == 1 ? errs.msgs[0] : torii_strerror(rc));
        }
        torii_config_free(c);
        c = NULL;
    }
    *out = c;
    torii_conf_errs_free(&errs);
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
    json_decref(c->admin_tokens);
    free(c->admin_token_list);
    free(c->admin_audit_log);
    json_decref(c->admin_hosts);
    json_decref(c->admin_tls);
    free(c->default_cert);
    free(c->log_level);
    free(c->debug_stall_file);
    free(c->health_public_path);
    free(c->access_log_path);
    free(c->access_log_format);
    json_decref(c->routes);
    json_decref(c->exporters);
    json_decref(c->pki);
    free(c->keys_kek_file);
    free(c->keys_kek_credential);
    json_decref(c->keys_previous_kek_files);
    json_decref(c->keys_previous_kek_credentials);
    json_decref(c->acme_json);
    torii_conf_acme_clear(&c->acme);
    json_decref(c->fleet_json);
    torii_conf_fleet_clear(&c->fleet);
    torii_conf_exporters_clear(c);
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

/* ---- reload ---------------------------------------------------------------------------- */

static int conf_str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void conf_fixed(struct torii_conf_errs *errs, int same, const char *key)
{
    char msg[256];

    if (!same) {
        (void)snprintf(msg, sizeof(msg),
                       "config: %s: cannot change on reload; restart torii to apply it", key);
        torii_conf_errs_add(errs, msg);
    }
}

static int conf_json_eq(const json_t *a, const json_t *b)
{
    return (a == NULL && b == NULL) || json_equal(a, b);
}

int torii_config_reload_check(const struct torii_config *cur, const struct torii_config *next,
                              struct torii_conf_errs *errs)
{
    size_t n0 = errs->n;

    conf_fixed(errs, conf_str_eq(cur->data_dir, next->data_dir), "data_dir");
    conf_fixed(errs, cur->workers == next->workers, "workers");
    conf_fixed(errs, conf_str_eq(cur->admin_listen, next->admin_listen), "admin.listen");
    conf_fixed(errs, conf_str_eq(cur->admin_token, next->admin_token), "admin.token");
    conf_fixed(errs, conf_str_eq(cur->admin_client_id, next->admin_client_id), "admin.client_id");
    conf_fixed(errs, cur->admin_max_body == next->admin_max_body, "admin.max_body");
    conf_fixed(errs, conf_str_eq(cur->default_cert, next->default_cert), "tls.default_cert");
    conf_fixed(errs,
               cur->renewal_interval_s == next->renewal_interval_s
                   && cur->renewal_threshold_pct == next->renewal_threshold_pct
                   && cur->renewal_jitter_s == next->renewal_jitter_s
                   && cur->renewal_initial_delay_s == next->renewal_initial_delay_s
                   && cur->renewal_retry_min_s == next->renewal_retry_min_s
                   && cur->renewal_retry_max_s == next->renewal_retry_max_s
                   && cur->renewal_delete_expired_copies == next->renewal_delete_expired_copies,
               "renewal");
    conf_fixed(errs,
               cur->alerts_almost_expired_days == next->alerts_almost_expired_days
                   && cur->alerts_repeat_s == next->alerts_repeat_s,
               "alerts");
    conf_fixed(errs, cur->debug_clock_hook == next->debug_clock_hook, "debug.clock_hook");
    conf_fixed(errs,
               conf_str_eq(cur->keys_kek_file, next->keys_kek_file)
                   && conf_str_eq(cur->keys_kek_credential, next->keys_kek_credential)
                   && conf_json_eq(cur->keys_previous_kek_files, next->keys_previous_kek_files)
                   && conf_json_eq(cur->keys_previous_kek_credentials,
                                   next->keys_previous_kek_credentials),
               "keys");
    /* pki.public_url defaults to http://<listen.http>: moving that listener moves it. */
    conf_fixed(errs, json_equal(cur->pki, next->pki) || (cur->pki == NULL && next->pki == NULL),
               "pki (pki.public_url, by default http://<listen.http>)");
    conf_fixed(errs,
               json_equal(cur->acme_json, next->acme_json)
                   || (cur->acme_json == NULL && next->acme_json == NULL),
               "acme");
    conf_fixed(errs, conf_json_eq(cur->fleet_json, next->fleet_json), "fleet");
    return errs->n > n0 ? TORII_EINVAL : TORII_OK;
}
