/* acme_int.h - internal to src/acme: the HTTP transport (net.c), the signed-request layer
 * with its nonce pool (jws.c), the RFC 8555 flow (order.c, account.c), challenge set-up
 * (chal.c, hook.c) and the store write (store.c). Everything here runs on the ACME thread
 * except the challenge table lookups (any thread, chal.c). */
#ifndef TORII_ACME_INT_H
#define TORII_ACME_INT_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "torii/acme.h"
#include "torii/conf.h"
#include "torii/err.h"
#include "torii/store.h"

#define ACME_MAX_LINKS    8
#define ACME_NONCE_POOL   4
#define ACME_BADNONCE_MAX 5          /* retries of one request on badNonce */
#define ACME_MAX_BODY     (1u << 20) /* a CA's answer, certificate chains included */
#define ACME_HTTP_TIMEOUT 30         /* seconds, one request */
#define ACME_RETRY_MAX_S  60         /* cap on an honoured Retry-After */
#define ACME_THUMB_MAX    64

/** One answer of the CA. */
struct acme_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *location;
    char *nonce;
    char *content_type;
    long retry_after_s;          /* -1: no Retry-After */
    char *links[ACME_MAX_LINKS]; /* Link rel="alternate" targets */
    size_t n_links;
    char *up; /* Link rel="up" */
};
void acme_resp_clear(struct acme_resp *r);

/** Sleep up to ms unless the service is stopping: TORII_OK, or TORII_EAGAIN when stopping. */
typedef int (*acme_sleep_fn)(void *arg, int64_t ms);

/** One client: a curl handle, the directory, the nonce pool and the account. */
struct acme_client {
    const struct torii_conf_acme *conf;   /* borrowed */
    struct torii_store *store;            /* borrowed */
    struct torii_acme_chal *chal;         /* borrowed */
    const struct torii_acme_share *share; /* borrowed; NULL: answers stay local */
    acme_sleep_fn sleep;
    void *sleep_arg;
    const int *stop; /* read atomically: non-zero aborts a transfer in progress */
    CURL *curl;
    json_t *dir;
    char *nonces[ACME_NONCE_POOL];
    size_t n_nonces;
    char *key_pem; /* account key (secret) */
    json_t *jwk;
    char thumb[ACME_THUMB_MAX];
    char *kid;                        /* account URL */
    int64_t deadline_ms;              /* of the order in progress (monotonic) */
    struct torii_acme_counts *counts; /* updated atomically */
};

/* net.c */
int acme_net_open(struct acme_client *c, struct torii_errbuf *eb) TORII_MUST_USE;
void acme_net_close(struct acme_client *c);
/** GET (body NULL, head 0), HEAD (head 1) or POST with a JOSE body. TORII_EIO (eb names the
 * URL and curl's reason) when no answer came; any HTTP status is TORII_OK. */
int acme_net_do(struct acme_client *c, const char *url, const char *body, int head,
                struct acme_resp *r, struct torii_errbuf *eb) TORII_MUST_USE;
/** CURLOPT_HEADERFUNCTION: one response header line into r (acme_resp). Exported for
 * tests/fuzz/fuzz_acme.c. */
size_t acme_net_header(char *line, size_t size, size_t nmemb, void *arg);

/* jws.c */
/** The directory (once per client). */
int acme_directory(struct acme_client *c, struct torii_errbuf *eb) TORII_MUST_USE;
/** A directory URL by name ("newOrder"); NULL when the CA does not offer it. */
const char *acme_dir_url(const struct acme_client *c, const char *name);
/** Signed POST of payload (NULL: POST-as-GET) to url, with kid (or the JWK when use_jwk),
 * retried on badNonce. A problem document (4xx/5xx) becomes TORII_EPROTO with its message
 * in eb prefixed by what ("acme: newOrder: ..."); rate limits name the retry time. */
int acme_post(struct acme_client *c, const char *what, const char *url, const json_t *payload,
              int use_jwk, struct acme_resp *r, struct torii_errbuf *eb) TORII_MUST_USE;
/** The body of r as a JSON object, or TORII_EPROTO naming what. */
int acme_resp_json(const struct acme_resp *r, const char *what, json_t **out,
                   struct torii_errbuf *eb) TORII_MUST_USE;
/** The flattened JWS {protected, payload, signature} (RFC 7515 7.2.2) of prot and payload
 * (NULL: "", POST-as-GET): ES256 with the account key key_pem, or HS256 with hmac_key
 * (base64url) when it is not NULL. *out is new. */
int acme_jws_flat(const json_t *prot, const json_t *payload, const char *key_pem,
                  const char *hmac_key, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;
/** Move r's Location into *out (freeing what *out held); TORII_EPROTO naming what without. */
int acme_take_location(struct acme_resp *r, const char *what, char **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Base64url of the JSON text of v (compact), malloc'd; NULL on OOM. */
char *acme_b64_json(const json_t *v);
/** A problem document (RFC 7807) as one sentence into eb, prefixed by what. TORII_EPROTO. */
int acme_problem(const char *what, const json_t *prob, long retry_after_s, struct torii_errbuf *eb);

/* account.c */
/** Load the account of conf->directory_url from the store, else create the key and register
 * (with contacts and EAB); the key and URL are kept in TORII_STORE_ACME. */
int acme_account(struct acme_client *c, struct torii_errbuf *eb) TORII_MUST_USE;

/* order.c */
/** Issue a certificate for hosts: *chain_pem and *key_pem are new (the key: secure free). */
int acme_order_run(struct acme_client *c, const json_t *hosts, char **chain_pem, char **key_pem,
                   struct torii_errbuf *eb) TORII_MUST_USE;

/* chal.c */
#define ACME_SHARE_MARGIN_S 60 /* a shared answer outlives its order's deadline by this */
/** An answer into the local table, then to c->share (fleet: every node learns it before this
 * returns, bounded); a share failure drops the local answer. eb names type and key. */
int acme_chal_publish(struct acme_client *c, const char *type, const char *key, const char *value,
                      const unsigned char *rec, size_t rec_len, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Withdraw an answer from the local table, then from c->share. */
void acme_chal_withdraw(struct acme_client *c, const char *type, const char *key);

/* challenge.c */
/** Make the chosen challenge of one authorization answerable, tell the CA, wait for the
 * authorization to be valid, then withdraw the answer. */
int acme_authz_run(struct acme_client *c, const char *authz_url, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** The challenge of authorization authz to answer (*ch, borrowed): the first of
 * c->conf->challenges the CA offers; TORII_EUNSUPPORTED naming what it offers otherwise.
 * Exported for tests/fuzz/fuzz_acme.c. */
int acme_authz_pick(const struct acme_client *c, const json_t *authz, const json_t **ch,
                    struct torii_errbuf *eb) TORII_MUST_USE;
/** Poll url (POST-as-GET) until its status is none of pending/processing/ready-when-waiting;
 * *out is the last object. Honours Retry-After (capped), bounded by c->deadline_ms. */
int acme_poll(struct acme_client *c, const char *what, const char *url, const char *until,
              json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/* hook.c */
/** Run conf->dns_hook ACTION NAME VALUE, waited for up to dns_hook_timeout_s; a non-zero exit,
 * a signal or the timeout are TORII_EIO naming the hook's outcome. */
int acme_hook_run(const struct torii_conf_acme *conf, const char *action, const char *name,
                  const char *value, struct torii_errbuf *eb) TORII_MUST_USE;

/* chain.c */
/** The chain to keep among the default (r) and its alternates: the first whose topmost
 * issuer CN is conf->preferred_chain, else the default. *out is new. */
int acme_chain_pick(struct acme_client *c, struct acme_resp *r, char **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* service.c */
/** The on-demand state (NULL: off). */
const struct torii_acme_od *torii_acme__od(const struct torii_acme *a);
/** The validated acme{} the service runs with. */
const struct torii_conf_acme *torii_acme__conf(const struct torii_acme *a);
/** The challenge table the service publishes to. */
struct torii_acme_chal *torii_acme__chal(const struct torii_acme *a);

/* ondemand.c */
/** On-demand decisions and handshake outcomes, as counted for /metrics. */
enum acme_od_decision {
    ACME_OD_STARTED = 0,
    ACME_OD_JOINED,
    ACME_OD_DENIED,
    ACME_OD_FAILED_RECENTLY,
    ACME_OD_RATE_LIMITED,
    ACME_OD_ASK_REFUSED,
    ACME_OD_SERVED,    /* a waiting handshake got its new certificate */
    ACME_OD_FALLBACK,  /* a waiting handshake reached its deadline: default certificate */
    ACME_OD_FORWARDED, /* fleet: the name forwarded to the doer of job "acme" */
    ACME_OD_N
};
struct torii_prom;
/** The service that on-demand orders go to (NULL: none; decisions say no) and the fleet's
 * wishes hook (NULL: none). Main thread. */
void acme_od_attach(struct torii_acme_od *od, struct torii_acme *a,
                    const struct torii_acme_wishes *wishes);
void acme_od_count(struct torii_acme_od *od, enum acme_od_decision d);
/** ACME thread: the on-demand order for name ended. */
void acme_od_done(struct torii_acme_od *od, const char *name, int ok, int64_t now_ms);
/** ACME thread: the ask URL approves name (200), or there is none; TORII_EPERM otherwise. */
int acme_od_ask(struct acme_client *c, struct torii_acme_od *od, const char *name,
                struct torii_errbuf *eb) TORII_MUST_USE;
void acme_od_metrics(const struct torii_acme_od *od, struct torii_prom *p);
/** service.c: queue an on-demand order for name (the caller holds the name's entry). */
int acme_submit_on_demand(struct torii_acme *a, const char *name, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** service.c: 1 when this node may order (jobgate.h job "acme"; always without a gate). Any
 * thread. */
int acme_doer(const struct torii_acme *a);

/* store.c */
/** THE one write of an issued certificate, through certdb: chain and key (PEM) as a
 * letsEncrypt, autoRenew entity. cert_id names the stored entity to update in place
 * (renewal: its previous version kept as its "[UNTIL EXPIRATION]" copy in the same
 * transaction); NULL, or an id no longer stored, creates a new entity for hosts (named after
 * the first). *id_out (malloc'd) gets the stored entity's id. */
int acme_store_issued(struct torii_store *store, const char *cert_id, const json_t *hosts,
                      const char *chain, const char *key, char **id_out, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
