/* jws.c - RFC 8555 section 6: the directory, the nonce pool (Replay-Nonce of every answer is
 * kept; newNonce only when the pool is empty), signed POSTs (flattened JWS, ES256 with the
 * account key through src/pki, "kid" once the account exists, "jwk" before), the badNonce
 * retry (section 6.5) and problem documents (section 6.7) turned into one clear sentence.
 * ACME thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "torii/codec.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define ACME_ERR_NS "urn:ietf:params:acme:error:"

int acme_resp_json(const struct acme_resp *r, const char *what, json_t **out,
                   struct torii_errbuf *eb)
{
    json_error_t je;
    json_t *v = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);

    if (!json_is_object(v)) {
        json_decref(v);
        return torii_errf(eb, TORII_EPROTO, "acme: %s: the CA's answer (HTTP %ld) is not JSON",
                          what, r->status);
    }
    *out = v;
    return TORII_OK;
}

char *acme_b64_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    char *b;
    size_t n;

    if (s == NULL) {
        return NULL;
    }
    n = strlen(s);
    b = torii_b64_encode(s, n, 1, NULL);
    free(s);
    return b;
}

int acme_problem(const char *what, const json_t *prob, long retry_after_s, struct torii_errbuf *eb)
{
    const char *type = json_string_value(json_object_get(prob, "type"));
    const char *detail = json_string_value(json_object_get(prob, "detail"));
    const json_t *sub = json_array_get(json_object_get(prob, "subproblems"), 0);
    const char *sub_detail = json_string_value(json_object_get(sub, "detail"));
    char retry[64] = "";

    if (type != NULL && strncmp(type, ACME_ERR_NS, strlen(ACME_ERR_NS)) == 0) {
        type += strlen(ACME_ERR_NS);
    }
    if (type != NULL && strcmp(type, "rateLimited") == 0 && retry_after_s >= 0) {
        (void)snprintf(retry, sizeof(retry), " (retry after %ld s)", retry_after_s);
    }
    return torii_errf(eb, TORII_EPROTO, "acme: %s: %s: %s%s%s%s%s", what,
                      type != NULL ? type : "error", detail != NULL ? detail : "no detail",
                      sub_detail != NULL ? " (" : "", sub_detail != NULL ? sub_detail : "",
                      sub_detail != NULL ? ")" : "", retry);
}

int acme_directory(struct acme_client *c, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};

    if (c->dir != NULL) {
        return TORII_OK;
    }
    TORII_TRY(acme_net_do(c, c->conf->directory_url, NULL, 0, &r, eb));
    TORII_ENSURE(r.status == 200, torii_errf(eb, TORII_EPROTO, "acme: directory %s: HTTP %ld",
                                             c->conf->directory_url, r.status));
    TORII_TRY(acme_resp_json(&r, "directory", &c->dir, eb));
    TORII_ENSURE(acme_dir_url(c, "newNonce") != NULL && acme_dir_url(c, "newAccount") != NULL
                     && acme_dir_url(c, "newOrder") != NULL,
                 torii_errf(eb, TORII_EPROTO,
                            "acme: directory %s: newNonce, newAccount or "
                            "newOrder missing",
                            c->conf->directory_url));
out:
    if (rc != TORII_OK) {
        json_decref(c->dir);
        c->dir = NULL;
    }
    acme_resp_clear(&r);
    return rc;
}

const char *acme_dir_url(const struct acme_client *c, const char *name)
{
    return json_string_value(json_object_get(c->dir, name));
}

static void acme_nonce_keep(struct acme_client *c, struct acme_resp *r)
{
    if (r->nonce == NULL) {
        return;
    }
    if (c->n_nonces == ACME_NONCE_POOL) {
        free(c->nonces[0]);
        memmove(&c->nonces[0], &c->nonces[1], (ACME_NONCE_POOL - 1) * sizeof(c->nonces[0]));
        c->n_nonces--;
    }
    c->nonces[c->n_nonces++] = r->nonce;
    r->nonce = NULL;
}

/* A nonce from the pool (owned by the caller), else a fresh one from newNonce. */
static int acme_nonce_take(struct acme_client *c, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};

    if (c->n_nonces == 0) {
        TORII_TRY(acme_net_do(c, acme_dir_url(c, "newNonce"), NULL, 1, &r, eb));
        acme_nonce_keep(c, &r);
        TORII_ENSURE(
            c->n_nonces > 0,
            torii_errf(eb, TORII_EPROTO, "acme: newNonce: no Replay-Nonce (HTTP %ld)", r.status));
    }
    *out = c->nonces[--c->n_nonces];
out:
    acme_resp_clear(&r);
    return rc;
}

int acme_jws_flat(const json_t *prot, const json_t *payload, const char *key_pem,
                  const char *hmac_key, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *p64 = acme_b64_json(prot);
    char *pl64 = payload != NULL ? acme_b64_json(payload) : torii_xstrdup("");
    char *input = NULL;
    char *sig = NULL;
    size_t n;

    TORII_ENSURE(p64 != NULL && pl64 != NULL, TORII_ENOMEM);
    n = strlen(p64) + strlen(pl64) + 2;
    input = torii_xmalloc(n);
    (void)snprintf(input, n, "%s.%s", p64, pl64);
    if (hmac_key != NULL) {
        TORII_TRY(torii_pki_acme_hs256(hmac_key, input, &sig, eb));
    } else {
        TORII_TRY(torii_pki_acme_sign(key_pem, input, &sig, eb));
    }
    *out = json_pack("{s:s,s:s,s:s}", "protected", p64, "payload", pl64, "signature", sig);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    free(p64);
    free(pl64);
    free(input);
    free(sig);
    return rc;
}

int acme_take_location(struct acme_resp *r, const char *what, char **out, struct torii_errbuf *eb)
{
    if (r->location == NULL) {
        return torii_errf(eb, TORII_EPROTO, "acme: %s: no Location in the answer (HTTP %ld)", what,
                          r->status);
    }
    free(*out);
    *out = r->location;
    r->location = NULL;
    return TORII_OK;
}

/* The flattened JWS text of one request. */
static int acme_jws(struct acme_client *c, const char *url, const char *nonce,
                    const json_t *payload, int use_jwk, char **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *prot = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    json_t *jws = NULL;

    TORII_ENSURE(prot != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(prot, use_jwk ? "jwk" : "kid",
                                     use_jwk ? json_incref(c->jwk) : json_string(c->kid))
                     == 0,
                 TORII_ENOMEM);
    TORII_TRY(acme_jws_flat(prot, payload, c->key_pem, NULL, &jws, eb));
    *out = json_dumps(jws, JSON_COMPACT);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    json_decref(jws);
    json_decref(prot);
    return rc;
}

/* 1 when r is a badNonce problem. */
static int acme_is_bad_nonce(const struct acme_resp *r)
{
    json_t *v = NULL;
    int bad = 0;

    if (r->status == 400 && acme_resp_json(r, "", &v, NULL) == TORII_OK) {
        bad = json_is_string(json_object_get(v, "type"))
              && strcmp(json_string_value(json_object_get(v, "type")), ACME_ERR_NS "badNonce") == 0;
    }
    json_decref(v);
    return bad;
}

int acme_post(struct acme_client *c, const char *what, const char *url, const json_t *payload,
              int use_jwk, struct acme_resp *r, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *nonce = NULL;
    char *body = NULL;
    json_t *prob = NULL;

    for (int attempt = 0; attempt <= ACME_BADNONCE_MAX; attempt++) {
        free(nonce);
        free(body);
        nonce = NULL;
        body = NULL;
        TORII_TRY(acme_nonce_take(c, &nonce, eb));
        TORII_TRY(acme_jws(c, url, nonce, payload, use_jwk, &body, eb));
        TORII_TRY(acme_net_do(c, url, body, 0, r, eb));
        acme_nonce_keep(c, r);
        if (!acme_is_bad_nonce(r)) {
            break;
        }
    }
    if (r->status >= 400) {
        if (acme_resp_json(r, what, &prob, eb) == TORII_OK) {
            rc = acme_problem(what, prob, r->retry_after_s, eb);
        } else {
            rc = torii_errf(eb, TORII_EPROTO, "acme: %s: HTTP %ld", what, r->status);
        }
    }
out:
    json_decref(prob);
    free(nonce);
    free(body);
    return rc;
}
