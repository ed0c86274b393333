/* admin_guard.h - internal to the admin module: what stands between a request and the routes.
 * The route table (routes.c, admin_routes.h), the per-source limiter of failed authentications and
 * the audit log (audit.c), the redaction of private keys and passwords (redact.c), and the guarded
 * dispatch that runs them in order (guard.c):
 *   public documents -> rate limit -> authentication -> scope (and keys:export for
 *   ?export=true) -> Host/Origin/Content-Type on state-changing calls -> audit intent ->
 *   route -> audit result -> redaction.
 * Threads: admin thread only (no locking: the limiter and the audit file belong to it).
 * Not to be included outside src/admin (and its tests). */
#ifndef TORII_ADMIN_GUARD_H
#define TORII_ADMIN_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "admin_auth.h"
#include "admin_int.h"
#include "admin_routes.h"
#include "torii/conf.h"
#include "torii/err.h"
#include "torii/http.h"

/* ---- failed authentications per source (audit.c) ---- */

#define ADMIN_RL_SLOTS 256
#define ADMIN_RL_KEY   64

struct admin_rl_slot {
    char key[ADMIN_RL_KEY]; /* source address without the port; "" = free */
    int64_t start_ms;       /* window start (first failure) */
    int64_t last_ms;        /* last failure, for eviction */
    unsigned fails;
};

/** Fixed memory: when every slot is taken, the least recently failing source is forgotten. */
struct admin_rl {
    unsigned limit; /* failures per window; 0 = no limit */
    int64_t window_ms;
    struct admin_rl_slot slot[ADMIN_RL_SLOTS];
};

/** The source part of a peer "ip:port" / "[v6]:port" into key (ADMIN_RL_KEY bytes). */
void admin_rl_source(const char *peer, char *key);
/** 0 when source may try, else the seconds (>= 1) until it may (Retry-After). */
unsigned admin_rl_blocked(const struct admin_rl *rl, const char *source, int64_t now_ms);
/** Count one failed authentication of source at now_ms. */
void admin_rl_fail(struct admin_rl *rl, const char *source, int64_t now_ms);

/* ---- audit log (audit.c) ---- */

struct admin_audit {
    int fd; /* -1: closed */
    char *path;
};

/** One audit line: JSON {"time", "phase" ("intent" or "result"), "token", "source", "method",
 * "path", "entity", "status", "keyFingerprint"}; strings may be NULL (JSON null), status 0 for
 * an intent. Never key material. */
struct admin_audit_rec {
    const char *phase;
    const char *token;
    const char *source;
    const char *method;
    struct torii_slice path;
    const char *entity;
    int status;
    const char *key_fp;
};

/** Open (create 0600, append) cfg->admin_audit_log, else <data_dir>/audit.log. TORII_EIO. */
int admin_audit_open(const struct torii_config *cfg, struct admin_audit *a, struct torii_errbuf *eb)
    TORII_MUST_USE;
void admin_audit_close(struct admin_audit *a);
/** Append one line and fdatasync it. TORII_EIO when the line is not durably written. */
int admin_audit_write(struct admin_audit *a, const struct admin_audit_rec *rec) TORII_MUST_USE;

/* ---- redaction (redact.c) ---- */

/** Replace, in every object of v (depth-bounded walk), a non-empty string "privateKey" by ""
 * with "privateKeyRedacted": true added, and a string "password" by null. */
void admin_redact(json_t *v);
/** ?export=true: every sealed privateKey in v (objects with an "id", up to the redaction
 * depth) is replaced by its clear text, opened with kek through torii_pki_key_text_open.
 * TORII_OK, or the first key that does not open (eb names its id; v is then redacted). */
int admin_export_keys(json_t *v, const struct torii_kek_ring *kek, struct torii_errbuf *eb);
/** "sha256:<hex>" of the SubjectPublicKeyInfo DER of the first certificate in the "chain" of
 * v (an entity, or the first element of an array of entities) into out; 0 when there is none. */
int admin_key_fingerprint(const json_t *v, char *out, size_t len);

/* ---- TLS of the admin listener (tls_listener.c) ---- */

/** The server context for admin.tls: certificate and key of the store entity admin.tls.cert,
 * client certificates required, verified against the entities of admin.tls.client_cas.
 * TORII_EINVAL (an id not in the store, nothing configured), TORII_ETLS (eb names the id). */
int admin_tls_ctx_new(const struct torii_config *cfg, struct torii_store *st, SSL_CTX **out,
                      struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- the guarded dispatch (guard.c) ---- */

struct admin_guard {
    struct admin_tokens tokens;
    struct admin_rl rl;
    struct admin_audit audit;
    char **hosts; /* owned: accepted Host values (host:port) */
    size_t n_hosts;
    const char *scheme; /* "http" or "https", for Origin */
};

/** Tokens, limiter, audit file and accepted hosts from cfg (listen_on: the listener address).
 * On error everything is released. */
int admin_guard_init(struct admin_guard *g, const struct torii_config *cfg, const char *listen_on,
                     struct torii_errbuf *eb) TORII_MUST_USE;
void admin_guard_clear(struct admin_guard *g);

/** Serve req through the guard and the routes into reply. now_ms: the limiter's clock. */
void admin_guard_dispatch(struct admin_guard *g, struct torii_admin_ctx *ctx,
                          const struct torii_http_req *req, int64_t now_ms,
                          struct torii_admin_reply *reply);

#endif
