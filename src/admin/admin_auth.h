/* admin_auth.h - internal to the admin module: the admin token (config, or
 * <data_dir>/admin.token, generated on first start with mode 0600) and the per-request
 * credential check (Bearer, Basic, Otoroshi-Client-Id/-Secret).
 * Threads: admin_auth_load_token from the starting thread; admin_auth_check from any thread
 * (pure over its arguments).
 * Ownership: the token returned by admin_auth_load_token is owned by the caller, who wipes it
 * (torii_secure_free). Not to be included outside src/admin (and its tests). */
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

/** 1 when req carries valid credentials for (client_id, token): "Authorization: Bearer
 * <token>", "Authorization: Basic base64(<client_id>:<token>)", or Otoroshi-Client-Id +
 * Otoroshi-Client-Secret. Secrets are compared in constant time after a length check.
 * 0 otherwise (missing, malformed or wrong). */
int admin_auth_check(const char *client_id, const char *token, const struct torii_http_req *req);

#endif
