/* wellknown_acme.c - ACME HTTP-01 (RFC 8555 8.3) on the plain http listener, for any Host:
 *   GET /.well-known/acme-challenge/<token>   the key authorization of a pending challenge
 * (text/plain), 404 for any other token. Answers come from the ACME challenge table
 * (acme.h), which the ACME thread fills while an order waits for validation.
 * The table is the wellknown_opts.acme_chal given at start (NULL: every token is unknown).
 * Threads: worker threads. */
#include <string.h>

#include <event2/buffer.h>

#include "proxy_int.h"
#include "torii/acme.h"
#include "torii/proxy.h"

int torii_wellknown__acme_http01(struct torii_wellknown *wk, const struct torii_http_req *req,
                                 struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    char keyauth[TORII_ACME_KEYAUTH_MAX + 1];
    static const char unknown[] = "{\"error\":\"unknown challenge token\"}";

    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        reply->status = 405;
        reply->extra[0].name = (struct torii_slice){"Allow", 5};
        reply->extra[0].value = (struct torii_slice){"GET, HEAD", 9};
        reply->n_extra = 1;
        reply->content_type = "application/json";
        return evbuffer_add(reply->body, "{\"error\":\"method not allowed\"}", 30) == 0
                   ? TORII_OK
                   : TORII_ENOMEM;
    }
    if (torii_acme_chal_http01(torii_wellknown__acme(wk), rest.ptr, rest.len, keyauth,
                               sizeof(keyauth))
        != TORII_OK) {
        reply->status = 404;
        reply->content_type = "application/json";
        return evbuffer_add(reply->body, unknown, sizeof(unknown) - 1) == 0 ? TORII_OK
                                                                            : TORII_ENOMEM;
    }
    reply->content_type = "text/plain";
    return evbuffer_add(reply->body, keyauth, strlen(keyauth)) == 0 ? TORII_OK : TORII_ENOMEM;
}
