/* wellknown_pki.c - the built-in PKI's public paths, answered on both public listeners for any
 * Host (registered in wellknown.c's dispatch table):
 *   GET  /.well-known/jwks.json                 JWK Set of exposed key pairs (RFC 7517)
 *   POST /.well-known/torii/ocsp                OCSP (RFC 6960 A.1), application/ocsp-request
 *   GET  /.well-known/torii/ocsp/<base64 req>   the same, GET form (url-encoded base64 DER)
 *   GET  /.well-known/torii/ca/<id>             CA certificate, DER (AIA caIssuers, RFC 5280)
 *   GET  /.well-known/torii/crl/<ca id>         current CRL of that CA, DER
 * Everything comes from the PKI state's snapshot (pkistate.h): no store access, no blocking.
 * The state is the wellknown_opts.pki given at start (NULL: these paths answer 404).
 * Threads: worker threads. */
#include <string.h>

#include <event2/buffer.h>

#include "proxy_int.h"
#include "torii/codec.h"
#include "torii/mem.h"
#include "torii/pkistate.h"
#include "torii/proxy.h"

#define WK_OCSP_MAX ((size_t)64 * 1024) /* a request with 32 CertIDs and a nonce is far smaller */

static int wk_is_get(const struct torii_http_req *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

static int wk_error(struct torii_wellknown_reply *reply, int status, const char *msg)
{
    reply->status = status;
    reply->content_type = "application/json";
    return evbuffer_add_printf(reply->body, "{\"error\":\"%s\"}", msg) < 0 ? TORII_ENOMEM
                                                                           : TORII_OK;
}

static int wk_method_not_allowed(struct torii_wellknown_reply *reply, const char *allow)
{
    reply->extra[0].name = (struct torii_slice){"Allow", 5};
    reply->extra[0].value = (struct torii_slice){allow, strlen(allow)};
    reply->n_extra = 1;
    return wk_error(reply, 405, "method not allowed");
}

static int wk_body(struct torii_wellknown_reply *reply, const char *ctype, unsigned char *body,
                   size_t len)
{
    int rc = evbuffer_add(reply->body, body, len) == 0 ? TORII_OK : TORII_ENOMEM;

    free(body);
    reply->status = 200;
    reply->content_type = ctype;
    return rc;
}

/* Percent-decode a path segment into out (NUL-terminated, at most cap - 1 bytes); not empty,
 * no NUL bytes, and no '/' after decoding unless allow_slash. TORII_EINVAL otherwise. */
static int wk_decode(struct torii_slice s, char *out, size_t cap, int allow_slash)
{
    char *dec = NULL;
    size_t n = 0;
    int rc = TORII_EINVAL;

    if (torii_pct_decode(s.ptr, s.len, 0, &dec, &n) != TORII_OK) {
        return TORII_EINVAL;
    }
    if (n == 0 || n >= cap || (!allow_slash && memchr(dec, '/', n) != NULL)) {
        goto out;
    }
    memcpy(out, dec, n + 1);
    rc = TORII_OK;
out:
    free(dec);
    return rc;
}

int torii_wellknown__pki_jwks(struct torii_wellknown *wk, const struct torii_http_req *req,
                              struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    struct torii_pki_state *pki = torii_wellknown__pki(wk);
    char *body = NULL;
    size_t len = 0;

    (void)rest;
    if (pki == NULL) {
        return TORII_ENOTFOUND;
    }
    if (!wk_is_get(req)) {
        return wk_method_not_allowed(reply, "GET, HEAD");
    }
    if (torii_pki_state_jwks(pki, &body, &len) != TORII_OK) {
        return wk_error(reply, 503, "JWKS not available yet");
    }
    return wk_body(reply, "application/json", (unsigned char *)body, len);
}

/* rest = "/<id>" */
static int wk_pki_der(struct torii_pki_state *pki, const struct torii_http_req *req,
                      struct torii_slice rest, int crl, struct torii_wellknown_reply *reply)
{
    char id[TORII_STORE_ID_MAX + 1];
    unsigned char *body = NULL;
    size_t len = 0;
    int rc;

    if (pki == NULL) {
        return TORII_ENOTFOUND;
    }
    if (!wk_is_get(req)) {
        return wk_method_not_allowed(reply, "GET, HEAD");
    }
    if (wk_decode(rest, id, sizeof(id), 0) != TORII_OK) {
        return wk_error(reply, 404, crl ? "CRL not found" : "CA not found");
    }
    rc = crl ? torii_pki_state_crl(pki, id, &body, &len)
             : torii_pki_state_ca_der(pki, id, &body, &len);
    if (rc != TORII_OK) {
        return wk_error(reply, 404, crl ? "CRL not found" : "CA not found");
    }
    return wk_body(reply, crl ? "application/pkix-crl" : "application/pkix-cert", body, len);
}

int torii_wellknown__pki_ca(struct torii_wellknown *wk, const struct torii_http_req *req,
                            struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    return wk_pki_der(torii_wellknown__pki(wk), req, rest, 0, reply);
}

int torii_wellknown__pki_crl(struct torii_wellknown *wk, const struct torii_http_req *req,
                             struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    return wk_pki_der(torii_wellknown__pki(wk), req, rest, 1, reply);
}

/* RFC 6960 A.1 GET: url-encoding of the base64 of the DER request (base64url tolerated). */
static int wk_ocsp_get_der(struct torii_slice rest, unsigned char **der, size_t *len)
{
    char *b64 = NULL;
    size_t n = 0;
    int rc;

    if (torii_pct_decode(rest.ptr, rest.len, 0, &b64, &n) != TORII_OK) {
        return TORII_EINVAL;
    }
    rc = n == 0 ? TORII_EINVAL : torii_b64_decode(b64, n, der, len);
    free(b64);
    return rc;
}

int torii_wellknown__pki_ocsp(struct torii_wellknown *wk, const struct torii_http_req *req,
                              struct torii_slice rest, struct torii_wellknown_reply *reply)
{
    struct torii_pki_state *pki = torii_wellknown__pki(wk);
    unsigned char *der = NULL;
    size_t der_len = 0;
    unsigned char *body = NULL;
    size_t len = 0;
    int rc;

    if (pki == NULL) {
        return TORII_ENOTFOUND;
    }
    if (strcmp(req->method, "POST") == 0) {
        if (rest.len != 0) {
            return wk_error(reply, 404, "not found");
        }
        if (req->body == NULL || req->body_len == 0 || req->body_len > WK_OCSP_MAX) {
            /* An empty request still gets an OCSP answer: malformedRequest. */
            rc = torii_pki_state_ocsp(pki, NULL, 0, &body, &len);
        } else {
            rc = torii_pki_state_ocsp(pki, req->body, req->body_len, &body, &len);
        }
    } else if (wk_is_get(req)) {
        if (rest.len < 2 || rest.ptr[0] != '/' || rest.len > WK_OCSP_MAX) {
            return wk_error(reply, 404, "not found");
        }
        rest.ptr++;
        rest.len--;
        if (wk_ocsp_get_der(rest, &der, &der_len) != TORII_OK) {
            der_len = 0; /* malformedRequest below */
        }
        rc = torii_pki_state_ocsp(pki, der, der_len, &body, &len);
        free(der);
    } else {
        return wk_method_not_allowed(reply, "GET, HEAD, POST");
    }
    if (rc != TORII_OK) {
        return wk_error(reply, 503, "OCSP responder not available");
    }
    return wk_body(reply, "application/ocsp-response", body, len);
}
