/* admin_auth.h - internal to the admin module: the admin tokens (the all-scopes token from
 * config, or <data_dir>/admin.token generated on first start with mode 0600, plus the hashed
 * admin.tokens) and the per-request credential check (Bearer, Basic,
 * Otoroshi-Client-Id/-Secret).
 * Threads: admin_auth_load_token and admin_tokens_init from the starting thread;
 * admin_tokens_check from the admin thread (pure over its arguments).
 * Ownership: the token returned by admin_auth_load_token is owned by the caller, who wipes it
 * (torii_secure_free); the table keeps hashes only. Not to be included outside src/admin (and
 * its tests). */
#ifndef TORII_ADMIN_AUTH_H
#define TORII_ADMIN_AUTH_H

#include <stddef.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/http.h"

/** The admin token: cfg->admin_token when set, else the content of <data_dir>/admin.token,
 * else 32 random bytes hex-encoded into that file (O_CREAT|O_EXCL, mode 0600). The file path
 * is logged, the token never. Returns TORII_OK, TORII_EIO (file errors, in eb) or
 * TORII_EINVAL (token file empty or too short). */
int admin_auth_load_token(const struct torii_config *cfg, char **token_out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Which credential form a request used (for logs). */
const char *admin_auth_scheme(const struct torii_http_req *req);

/** The admin tokens of a server: the configured admin.tokens (hashes and scopes) and the
 * all-scopes token of admin_auth_load_token (id "admin", held as its hash only). */
struct admin_token {
    char id[TORII_CONF_TOKEN_ID_MAX + 1];
    unsigned char sha256[32];
    unsigned scopes; /* TORII_SCOPE_* */
};
struct admin_tokens {
    struct admin_token *t; /* owned */
    size_t n;
    char *client_id; /* owned: the Basic / Otoroshi-Client-Id user of the "admin" token */
};

/** Build the table from cfg: admin.tokens, then (always) the token of admin_auth_load_token
 * with every scope. TORII_OK or admin_auth_load_token's codes. */
int admin_tokens_init(const struct torii_config *cfg, struct admin_tokens *out,
                      struct torii_errbuf *eb) TORII_MUST_USE;
void admin_tokens_clear(struct admin_tokens *tt);

/** The token req authenticates as, or NULL (missing, malformed or wrong credentials).
 * Credentials: "Authorization: Bearer <secret>", "Authorization: Basic base64(<user>:<secret>)"
 * or Otoroshi-Client-Id (user) + Otoroshi-Client-Secret. The secret's SHA-256 is compared with
 * every token's in constant time (CRYPTO_memcmp, no early exit); a user, when given, must be
 * the token's id or (for any token) admin.client_id. */
const struct admin_token *admin_tokens_check(const struct admin_tokens *tt,
                                             const struct torii_http_req *req);

/** SHA-256 of s as 64 lower-case hex digits into out (65 bytes). */
void admin_auth_sha256_hex(const char *s, size_t len, char out[65]);

#endif
