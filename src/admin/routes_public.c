/* routes_public.c - the public document of the admin listener, served without authentication:
 *   GET /.well-known/jwks.json   the JWK Set of the exposed key pairs (RFC 7517)
 * It is the PKI snapshot's document (pkistate.h), rebuilt by the PKI state when the store
 * changes: the same bytes as on the public listeners, no store access per request.
 * Threads: admin thread only. */
#include <string.h>

#include "admin_routes.h"
#include "torii/pkistate.h"

int admin_public_jwks(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply)
{
    char *body = NULL;
    size_t len = 0;

    if (ctx->pki == NULL) {
        return TORII_ENOTFOUND;
    }
    if (!admin_req_is_get(req)) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
        return TORII_OK;
    }
    if (!admin_req_query_none(req, reply)) {
        return TORII_OK;
    }
    if (torii_pki_state_jwks(ctx->pki, &body, &len) != TORII_OK) {
        admin_reply_error(reply, 503, "JWKS not available yet");
        return TORII_OK;
    }
    reply->status = 200;
    reply->raw = body;
    reply->raw_len = len;
    return TORII_OK;
}
