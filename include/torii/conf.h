/* conf.h - the daemon configuration: embedded defaults, a JSON file (-c FILE), then the
 * environment (TORII_ADMIN_TOKEN). Parsed once at start into an immutable struct.
 * Threads: any thread (immutable after publish).
 * Ownership: torii_config_load returns a config the caller frees with torii_config_free;
 * every string and json_t inside belongs to it. */
#ifndef TORII_CONF_H
#define TORII_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

#define TORII_CONF_DEFAULT_CERT_ID "torii-default-cert"

struct torii_config {
    char *data_dir;           /* "./data", or $STATE_DIRECTORY under systemd */
    unsigned workers;         /* 0 in the file = number of CPUs */
    char *listen_https;       /* "0.0.0.0:8443"; "" disables */
    char *listen_http;        /* "0.0.0.0:8080"; "" disables */
    char *admin_listen;       /* "127.0.0.1:9000" */
    char *admin_token;        /* NULL: read or generate <data_dir>/admin.token */
    char *admin_client_id;    /* "admin" */
    char *default_cert;       /* TORII_CONF_DEFAULT_CERT_ID */
    int strict_sni;           /* 0 */
    unsigned ticket_rotate_s; /* session ticket key rotation, 3600 */
    char *log_level;          /* "info" */
    int access_log;           /* 1 */
    /* HTTP limits (public and admin listeners). */
    size_t max_header_bytes;       /* 16384 */
    size_t max_headers;            /* 100 */
    size_t max_target;             /* 8192 */
    size_t max_body;               /* proxy: 1 GiB; admin uses admin_max_body */
    size_t admin_max_body;         /* 8 MiB */
    uint32_t header_timeout_ms;    /* 10000 */
    uint32_t idle_timeout_ms;      /* 60000 */
    uint32_t max_conns_per_worker; /* 20000 */
    unsigned renewal_interval_s;   /* 3600 */
    json_t *routes;                /* routes[] as given (validated by the proxy module) */
    json_t *acme;                  /* acme{} as given */
    json_t *exporters;             /* exporters[] as given */
    json_t *pki;                   /* pki{} as given */
    json_t *alerts;                /* alerts{} as given */
};

/** Load defaults, then path (NULL = none), then the environment. Unknown keys, wrong types
 * and bad values are TORII_EINVAL with the key named in eb. */
int torii_config_load(const char *path, struct torii_config **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
void torii_config_free(struct torii_config *cfg);

/** Split "host:port" / "[v6]:port" into a sockaddr. TORII_EINVAL on bad syntax. */
struct sockaddr_storage;
int torii_config_parse_addr(const char *s, struct sockaddr_storage *ss, int *sslen,
                            struct torii_errbuf *eb) TORII_MUST_USE;

#endif
