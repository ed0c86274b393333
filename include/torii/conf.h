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

/** Alert types an exporter may filter on (alert.h raises exactly these). */
#define TORII_CONF_ALERT_TYPES                                                                     \
    "CertAlmostExpiredAlert", "CertExpiredAlert", "CertRenewalAlert", "CertRenewalFailedAlert",    \
        "CertCreatedAlert", "CertUpdatedAlert", "CertDeletedAlert"

enum torii_conf_exporter_type {
    TORII_CONF_EXPORTER_WEBHOOK = 0, /* libcurl POST of a JSON array of alerts */
    TORII_CONF_EXPORTER_FILE,        /* JSON lines appended to a file, reopened on SIGHUP */
    TORII_CONF_EXPORTER_LOG,         /* one log line per alert */
};

/** One entry of exporters[] (enabled ones only), validated strictly at load. */
struct torii_conf_exporter {
    enum torii_conf_exporter_type type;
    char *name;    /* "name", default "<type>-<index>" */
    char **alerts; /* alert types wanted ("alerts": [...]); n_alerts 0 = every type */
    size_t n_alerts;
    size_t queue_size; /* bounded queue; overflow is counted and logged (1000) */
    /* webhook */
    char *url;      /* http:// or https:// */
    char **headers; /* "Name: value" lines (headers {}) */
    size_t n_headers;
    char *trusted_ca;      /* tls.trusted_ca: store id of the CA to trust; NULL = system */
    char *client_cert;     /* tls.client_cert: store id of the client certificate; NULL */
    int tls_verify;        /* tls.verify (true) */
    unsigned batch_size;   /* alerts per POST (100) */
    unsigned batch_ms;     /* wait this long for more alerts before a POST (1000) */
    unsigned timeout_ms;   /* per POST (10000) */
    unsigned retry_min_ms; /* first retry delay, doubled per failure (1000) */
    unsigned retry_max_ms; /* retry delay cap (60000) */
    unsigned max_retries;  /* then the batch is dropped; 0 = retry forever (10) */
    /* file */
    char *path;
};

/* Scopes of an admin token (admin.tokens[].scopes). "admin" grants every scope. */
#define TORII_SCOPE_READ        0x01u
#define TORII_SCOPE_WRITE       0x02u
#define TORII_SCOPE_PKI         0x04u
#define TORII_SCOPE_KEYS_EXPORT 0x08u
#define TORII_SCOPE_ADMIN       0x10u
#define TORII_SCOPE_ALL         0x1fu
#define TORII_CONF_TOKEN_ID_MAX 64

/** One configured admin token: only the SHA-256 of the secret is held. */
struct torii_conf_token {
    char id[TORII_CONF_TOKEN_ID_MAX + 1];
    unsigned char sha256[32];
    unsigned scopes; /* TORII_SCOPE_* bits */
};

/** The bit of a scope name ("read", "write", "pki", "keys:export", "admin"), 0 if unknown. */
unsigned torii_conf_scope_bit(const char *name);
/** The name of one scope bit, or NULL. */
const char *torii_conf_scope_name(unsigned bit);

/** acme{} (docs/acme.md), validated by torii_conf_acme_validate. Strings are owned. */
/* acme.on_demand (docs/acme.md): certificates ordered during the handshake of a name that
 * has none. */
struct torii_conf_on_demand {
    int enabled;              /* on_demand{} given */
    json_t *allow;            /* patterns (lower case): "name" or "*.suffix" (any depth) */
    char *ask;                /* GET <ask>?domain=<name> must answer 200; NULL: no ask */
    unsigned wait_ms;         /* how long a handshake waits for its certificate (10000) */
    unsigned global_per_min;  /* new orders per minute, all names together (10) */
    unsigned domain_per_hour; /* new orders per hour per registered domain (5) */
    unsigned failure_ttl_s;   /* a name whose order failed (or ask refused) waits this (600) */
};

struct torii_conf_acme {
    int enabled;         /* acme{} given with a directory_url */
    char *directory_url; /* the CA's directory (https://...) */
    json_t *contacts;    /* "mailto:" URLs of the account; NULL: none */
    char *ca_bundle;     /* PEM file trusted for the CA's HTTPS; NULL: the system's */
    char *eab_kid;       /* external account binding (both or neither) */
    char *eab_hmac_key;  /* base64url; a secret: never logged */
    char key[16];        /* key of issued certificates: "ecdsa-p256" (default), "rsa-2048".. */
    const char *challenges[3]; /* static names in order of preference (http-01, tls-alpn-01) */
    size_t n_challenges;
    char *dns_hook;              /* command run as: HOOK set|clear NAME VALUE; NULL: none */
    unsigned dns_hook_timeout_s; /* (60) */
    char *preferred_chain;       /* issuer CN of the chain to prefer; NULL: the default chain */
    unsigned order_timeout_s;    /* bound on one order, polling included (300) */
    struct torii_conf_on_demand on_demand;
};

struct torii_config;
struct torii_conf_errs;
/** Check c->acme_json into c->acme (defaults when absent); problems appended to errs. */
void torii_conf_acme_validate(struct torii_config *c, struct torii_conf_errs *errs);
/** Check acme.on_demand (v) into od (conf/acme_ondemand_conf.c). */
void torii_conf__acme_on_demand(struct torii_conf_on_demand *od, json_t *v,
                                struct torii_conf_errs *errs);
/** 1 when name (lower case) matches a pattern of od->allow. Any thread. */
int torii_conf_on_demand_allows(const struct torii_conf_on_demand *od, const char *name);
/** 1 when s is a printable string without blanks, quotes or backslashes, 1..max bytes (the
 * file names, URLs and tokens of acme{} and fleet{}). */
int torii_conf__token_ok(const char *s, size_t max);
/** Free what c->acme owns. */
void torii_conf_acme_clear(struct torii_conf_acme *a);

/** fleet.etcd (docs/fleet.md), validated by torii_conf_fleet_validate (conf/fleet_conf.c).
 * Strings are owned; password is a secret (never logged). */
struct torii_conf_fleet {
    int enabled;            /* fleet.etcd given */
    json_t *endpoints;      /* array of "http(s)://host:port" strings, tried in order */
    char *prefix;           /* key prefix of this fleet in etcd ("/torii/") */
    char *ca_file;          /* PEM trusted for https:// endpoints; NULL: the system's */
    char *cert_file;        /* client certificate (PEM) for etcd; with key_file */
    char *key_file;         /* its private key (PEM) */
    char *user;             /* etcd user (with password); NULL: no authentication */
    char *password;         /* a secret: never logged */
    unsigned timeout_ms;    /* bound on one etcd call (5000) */
    unsigned max_txn_ops;   /* etcd --max-txn-ops: ops per transaction (128) */
    unsigned max_txn_bytes; /* etcd --max-request-bytes minus headroom (1048576) */
    unsigned page_size;     /* keys per range page in a full resync (500) */
    unsigned lease_ttl_s;   /* TTL of this node's job lease (10): one doer per job */
};
/** Check c->fleet_json into c->fleet; problems appended to errs. */
void torii_conf_fleet_validate(struct torii_config *c, struct torii_conf_errs *errs);
/** Free what f owns. */
void torii_conf_fleet_clear(struct torii_conf_fleet *f);

/** Check c->exporters into c->exporter_list (the enabled entries, defaults filled in;
 * conf/exporters_conf.c); each bad entry's first problem appended to errs. */
void torii_conf_exporters_validate(struct torii_config *c, struct torii_conf_errs *errs);
/** Free c->exporter_list and what it owns; n_exporters becomes 0. */
void torii_conf_exporters_clear(struct torii_config *c);

struct torii_config {
    char *data_dir;        /* "./data", or $STATE_DIRECTORY under systemd */
    unsigned workers;      /* 0 in the file = number of CPUs */
    char *listen_https;    /* "0.0.0.0:8443"; "" disables */
    char *listen_http;     /* "0.0.0.0:8080"; "" disables */
    char *admin_listen;    /* "127.0.0.1:9000" */
    char *admin_token;     /* NULL: read or generate <data_dir>/admin.token */
    char *admin_client_id; /* "admin" */
    json_t *admin_tokens;  /* admin.tokens[] as given (parsed into admin_token_list) */
    struct torii_conf_token *admin_token_list; /* validated admin.tokens */
    size_t n_admin_tokens;
    char *admin_audit_log;             /* NULL: <data_dir>/audit.log */
    json_t *admin_hosts;               /* admin.hosts[]: extra names accepted in Host/Origin */
    json_t *admin_tls;                 /* admin.tls{cert, client_cas} as given */
    unsigned admin_auth_fail_limit;    /* failed authentications per source and window (10) */
    unsigned admin_auth_fail_window_s; /* (60) */
    char *default_cert;                /* TORII_CONF_DEFAULT_CERT_ID */
    int strict_sni;                    /* 0 */
    int strict_host;          /* 1: 421 for a Host the connection's certificate does not name */
    unsigned ticket_rotate_s; /* session ticket key rotation, 3600 */
    char *log_level;          /* "info" */
    int access_log;           /* 1 ("access_log": bool, or access_log.enabled) */
    /* Daemon: access_log.path (NULL: stderr; reopened on SIGUSR1 and reload), .format
     * ("json" or "combined"), and how long SIGTERM/upgrade let requests in flight finish. */
    char *access_log_path;
    char *access_log_format;
    unsigned shutdown_timeout_s; /* 30 */
    /* HTTP limits (public and admin listeners). */
    size_t max_header_bytes;             /* 16384 */
    size_t max_headers;                  /* 100 */
    size_t max_target;                   /* 8192 */
    size_t max_body;                     /* proxy: 1 GiB; admin uses admin_max_body */
    size_t admin_max_body;               /* 8 MiB */
    uint32_t header_timeout_ms;          /* 10000 */
    uint32_t idle_timeout_ms;            /* 60000 */
    uint32_t tunnel_idle_timeout_ms;     /* 300000: upgraded connection without a byte; 0: none */
    uint32_t max_conns_per_worker;       /* 20000 */
    unsigned renewal_interval_s;         /* 3600; 0 = renew on demand only */
    unsigned renewal_threshold_pct;      /* renew in the last N% of the validity (20) */
    unsigned renewal_jitter_s;           /* random extra delay per period, up to (600) */
    unsigned renewal_initial_delay_s;    /* first run after start (60) */
    unsigned renewal_retry_min_s;        /* first retry of a failed renewal (60) */
    unsigned renewal_retry_max_s;        /* retry backoff cap (21600) */
    int renewal_delete_expired_copies;   /* delete "[UNTIL EXPIRATION]" copies once expired (1) */
    unsigned alerts_almost_expired_days; /* also "almost expired" this close to notAfter (15) */
    unsigned alerts_repeat_s;            /* repeat a standing alert this often; 0 = once (0) */
    int debug_clock_hook;                /* POST /api/_debug/clock enabled (0) */
    char *debug_stall_file;              /* tests: the loop named in it blocks (daemon.h) */
    char *health_public_path;            /* readiness path on the public listeners ("": off) */
    json_t *routes;                      /* routes[] as given (validated by the proxy module) */
    json_t *exporters;                   /* exporters[] as given (parsed into exporter_list) */
    json_t *pki;                         /* pki{} as given */
    json_t *acme_json;                   /* acme{} as given (parsed into acme) */
    struct torii_conf_acme acme;
    struct torii_conf_exporter *exporter_list; /* enabled exporters, validated */
    size_t n_exporters;
    /* Keys at rest (docs/operations.md; loaded by torii_kek_ring_load in src/pki). */
    char *keys_kek_file;                   /* current KEK file; NULL: none */
    char *keys_kek_credential;             /* current KEK as a systemd credential name */
    json_t *keys_previous_kek_files;       /* previous KEKs (opening only), paths */
    json_t *keys_previous_kek_credentials; /* previous KEKs, credential names */

    /* HTTP/2 to clients (docs/operations.md, "HTTP/2"). */
    int http2;                     /* proxy.http2: ALPN h2 offered on the https listener (1) */
    unsigned h2_max_streams;       /* limits.h2_max_concurrent_streams (100) */
    size_t h2_max_header_list;     /* limits.h2_max_header_list_size (65536) */
    size_t h2_header_table;        /* limits.h2_header_table_size: HPACK, both ways (4096) */
    unsigned h2_max_resets;        /* limits.h2_max_resets: rapid reset budget (200) */
    unsigned h2_max_control;       /* limits.h2_max_control_frames per second (200) */
    unsigned h2_max_continuations; /* limits.h2_max_continuations per header block (8) */
    json_t *fleet_json;            /* fleet{} as given (parsed into fleet) */
    struct torii_conf_fleet fleet;
};

/** Problems found in a configuration, one line each ("config: KEY: problem"), in the order
 * they were found. Owned by the caller: torii_conf_errs_free. */
struct torii_conf_errs {
    char **msgs;
    size_t n;
};
void torii_conf_errs_add(struct torii_conf_errs *errs, const char *msg);
/** torii_conf_errs_add of a formatted message (truncated at 511 bytes). */
void torii_conf_errs_addf(struct torii_conf_errs *errs, const char *fmt, ...) TORII_PRINTF(2, 3);
void torii_conf_errs_free(struct torii_conf_errs *errs);

/** admin.tokens, admin.hosts and admin.tls of c checked (problems appended to errs) and the
 * tokens parsed into c->admin_token_list. Called by torii_config_check. */
void torii_conf_admin_validate(struct torii_config *c, struct torii_conf_errs *errs);
/** 1 when s ("host:port") names a loopback address (127.0.0.0/8, ::1, localhost). */
int torii_conf_addr_is_loopback(const char *s);

/** Load defaults, then path (NULL = none), then the environment. Unknown keys, wrong types
 * and bad values are TORII_EINVAL with the key named in eb (the first problem; the others
 * are counted in the message: torii_config_check lists them all). */
int torii_config_load(const char *path, struct torii_config **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** The same load, but it does not stop at the first problem: every problem found is appended
 * to errs (not NULL). A file that cannot be read ("config: FILE: No such file or directory")
 * or is not JSON is one problem. Returns TORII_OK, or TORII_EINVAL when errs got any entry;
 * *out is then still set when the file was read (keys with bad values keep their defaults),
 * so that later checks (routes) can run over it, or NULL. */
int torii_config_check(const char *path, struct torii_config **out, struct torii_conf_errs *errs)
    TORII_MUST_USE;
void torii_config_free(struct torii_config *cfg);

/** Reload (SIGHUP): the keys of next that cannot change in a running daemon (data_dir,
 * workers, admin.*, tls.default_cert, renewal, alerts, debug, pki) must equal
 * those of cur; each one that differs is appended to errs, named ("config: workers: cannot
 * change on reload; restart torii to apply it"). TORII_OK or TORII_EINVAL. */
int torii_config_reload_check(const struct torii_config *cur, const struct torii_config *next,
                              struct torii_conf_errs *errs) TORII_MUST_USE;

/** Split "host:port" / "[v6]:port" into a sockaddr. TORII_EINVAL on bad syntax. */
struct sockaddr_storage;
int torii_config_parse_addr(const char *s, struct sockaddr_storage *ss, int *sslen,
                            struct torii_errbuf *eb) TORII_MUST_USE;

#endif
