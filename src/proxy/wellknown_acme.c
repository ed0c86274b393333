/* wellknown_acme.c - ACME HTTP-01 (RFC 8555 8.3) on the plain http listener, for any Host:
 *   GET /.well-known/acme-challenge/<token>   the key authorization of a pending challenge
 * (text/plain), 404 for any other token. Answers come from the ACME challenge table
 * (acme.h), which the ACME thread fills while an order waits for validation.
 * Threads: worker threads; torii_wellknown_acme_set on the main thread before they start. */
#include <string.h>

#include <event2/buffer.h>

#include "proxy_int.h"
#include "torii/acme.h"
#include "torii/proxy.h"

/* Set by the main thread before the workers start, read-only afterwards (thread creation
 * orders the accesses). NULL: every token is unknown. */
static struct torii_acme_chal *wellknown_acme;

void torii_wellknown_acme_set(struct torii_acme_chal *chal)
{
    wellknown_acme = chal;
}

int torii_wellknown__acme_http01(struct torii_wellknown *wk, const struct torii_http_req *req,
                                 struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    char keyauth[TORII_ACME_KEYAUTH_MAX + 1];
    static const char unknown[] = "{\"error\":\"unknown challenge token\"}";

    (void)wk;
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
    if (torii_acme_chal_http01(wellknown_acme, rest.ptr, rest.len, keyauth, sizeof(keyauth))
        != TORII_OK) {
        reply->status = 404;
        reply->content_type = "application/json";
        return evbuffer_add(reply->body, unknown, sizeof(unknown) - 1) == 0 ? TORII_OK
                                                                            : TORII_ENOMEM;
    }
    reply->content_type = "text/plain";
    return evbuffer_add(reply->body, keyauth, strlen(keyauth)) == 0 ? TORII_OK : TORII_ENOMEM;
}
