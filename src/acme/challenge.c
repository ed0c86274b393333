/* challenge.c - RFC 8555 7.5 and 8: one authorization at a time. The challenge type is the
 * first of acme.challenges the CA offers (a wildcard name takes DNS-01 only); its answer is
 * published (HTTP-01 key authorization in the challenge table, DNS-01 TXT record through the
 * hook, TLS-ALPN-01 validation certificate made by src/pki), the CA is told, the
 * authorization is polled (Retry-After honoured, bounded by the order's deadline) and the
 * answer is withdrawn whatever the outcome. ACME thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "acme_int.h"
#include "torii/clock.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define ACME_POLL_FIRST_MS 250
#define ACME_POLL_MAX_MS   4000

static const char *acme_status(const json_t *v)
{
    const char *s = json_string_value(json_object_get(v, "status"));
    return s != NULL ? s : "";
}

static int64_t acme_now_ms(void)
{
    return torii_clock_mono_us() / 1000;
}

/* Wait before the next poll of a resource still in status `status`: the CA's Retry-After
 * (capped), else *delay, doubled for the next time; TORII_ETIMEDOUT past the deadline. */
static int acme_poll_wait(struct acme_client *c, const char *what, const char *status,
                          long retry_after_s, int64_t *delay, struct torii_errbuf *eb)
{
    int rc;

    if (retry_after_s >= 0) {
        *delay = (retry_after_s > ACME_RETRY_MAX_S ? ACME_RETRY_MAX_S : retry_after_s) * 1000;
    }
    if (acme_now_ms() + *delay >= c->deadline_ms) {
        return torii_errf(eb, TORII_ETIMEDOUT,
                          "acme: %s: still %s at the order's deadline (acme.order_timeout_s = %u)",
                          what, status, c->conf->order_timeout_s);
    }
    rc = c->sleep(c->sleep_arg, *delay);
    *delay = *delay * 2 > ACME_POLL_MAX_MS ? ACME_POLL_MAX_MS : *delay * 2;
    return rc;
}

int acme_poll(struct acme_client *c, const char *what, const char *url, const char *until,
              json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};
    json_t *v = NULL;
    int64_t delay = ACME_POLL_FIRST_MS;

    for (unsigned i = 0; i < 100000; i++) {
        json_decref(v);
        v = NULL;
        TORII_TRY(acme_post(c, what, url, NULL, 0, &r, eb));
        TORII_TRY(acme_resp_json(&r, what, &v, eb));
        if (strcmp(acme_status(v), "pending") != 0 && strcmp(acme_status(v), "processing") != 0) {
            break;
        }
        TORII_TRY(acme_poll_wait(c, what, acme_status(v), r.retry_after_s, &delay, eb));
    }
    TORII_ENSURE(strcmp(acme_status(v), until) == 0 || until[0] == '\0',
                 torii_errf(eb, TORII_EPROTO, "acme: %s: status %s (expected %s)", what,
                            acme_status(v), until));
    *out = v;
    v = NULL;
out:
    json_decref(v);
    acme_resp_clear(&r);
    return rc;
}

/* The challenge to answer: the first allowed type the CA offers. */
static const json_t *acme_chal_pick(const struct acme_client *c, const json_t *authz)
{
    int wildcard = json_is_true(json_object_get(authz, "wildcard"));
    const json_t *list = json_object_get(authz, "challenges");

    for (size_t k = 0; k < c->conf->n_challenges; k++) {
        const char *want = c->conf->challenges[k];
        size_t i;
        const json_t *ch;
        if (wildcard && strcmp(want, "dns-01") != 0) {
            continue;
        }
        json_array_foreach (list, i, ch) {
            const char *type = json_string_value(json_object_get(ch, "type"));
            if (json_is_string(json_object_get(ch, "token")) && type != NULL
                && strcmp(type, want) == 0) {
                return ch;
            }
        }
    }
    return NULL;
}

static int acme_chal_index(const char *type)
{
    return strcmp(type, "http-01") == 0 ? 0 : strcmp(type, "tls-alpn-01") == 0 ? 1 : 2;
}

/* base64url(SHA-256(key authorization)): the DNS-01 TXT value and the TLS-ALPN-01 digest. */
static int acme_keyauth_digest(const char *keyauth, unsigned char md[32], char **b64)
{
    unsigned mdlen = 0;

    if (EVP_Digest(keyauth, strlen(keyauth), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        return TORII_ETLS;
    }
    *b64 = torii_b64_encode(md, 32, 1, NULL);
    return *b64 != NULL ? TORII_OK : TORII_ENOMEM;
}

struct acme_answer {
    const char *type;
    const char *name; /* the identifier, "*." removed */
    char token[TORII_ACME_KEY_MAX + 1];
    char keyauth[TORII_ACME_KEYAUTH_MAX + 1];
    char txt_name[300];
    int published;
};

/* TLS-ALPN-01: the validation certificate for a's name into the challenge table. */
static int acme_answer_alpn(struct acme_client *c, const struct acme_answer *a,
                            const unsigned char md[32], struct torii_errbuf *eb)
{
    unsigned char *rec = NULL;
    size_t rec_len = 0;
    int rc = torii_pki_acme_alpn_record(a->name, md, &rec, &rec_len, eb);

    if (rc == TORII_OK) {
        rc = acme_chal_publish(c, a->type, a->name, NULL, rec, rec_len, eb);
    }
    torii_secure_free(rec, rec_len);
    return rc;
}

static int acme_answer_publish(struct acme_client *c, struct acme_answer *a,
                               struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char md[32];
    char *b64 = NULL;

    TORII_TRY(acme_keyauth_digest(a->keyauth, md, &b64));
    if (strcmp(a->type, "http-01") == 0) {
        TORII_TRY(acme_chal_publish(c, a->type, a->token, a->keyauth, NULL, 0, eb));
    } else if (strcmp(a->type, "dns-01") == 0) {
        (void)snprintf(a->txt_name, sizeof(a->txt_name), "_acme-challenge.%s", a->name);
        TORII_TRY(acme_hook_run(c->conf, "set", a->txt_name, b64, eb));
    } else {
        TORII_TRY(acme_answer_alpn(c, a, md, eb));
    }
    a->published = 1;
out:
    free(b64);
    return rc;
}

static void acme_answer_withdraw(struct acme_client *c, const struct acme_answer *a)
{
    struct torii_errbuf eb = {{0}};

    if (!a->published) {
        return;
    }
    if (strcmp(a->type, "dns-01") == 0) {
        if (acme_hook_run(c->conf, "clear", a->txt_name, "", &eb) != TORII_OK) {
            torii_log(TORII_LOG_WARN, "%s (the TXT record may be left behind)", eb.msg);
        }
    } else {
        acme_chal_withdraw(c, a->type, strcmp(a->type, "http-01") == 0 ? a->token : a->name);
    }
}

/* The reason an authorization failed: its challenge's error, else its status. */
static int acme_authz_failed(struct acme_client *c, const struct acme_answer *a,
                             const json_t *authz, struct torii_errbuf *eb)
{
    size_t i;
    const json_t *ch;
    char what[400];

    __atomic_fetch_add(&c->counts->chal_failed[acme_chal_index(a->type)], 1, __ATOMIC_RELAXED);
    (void)snprintf(what, sizeof(what), "%s challenge for %s", a->type, a->name);
    json_array_foreach (json_object_get(authz, "challenges"), i, ch) {
        if (json_is_object(json_object_get(ch, "error"))) {
            return acme_problem(what, json_object_get(ch, "error"), -1, eb);
        }
    }
    return torii_errf(eb, TORII_EPROTO, "acme: %s: authorization %s", what, acme_status(authz));
}

/* Fill a from the authorization and its chosen challenge. */
static int acme_answer_init(struct acme_client *c, const json_t *authz, const json_t *ch,
                            struct acme_answer *a, struct torii_errbuf *eb)
{
    const char *token = json_string_value(json_object_get(ch, "token"));
    const char *name =
        json_string_value(json_object_get(json_object_get(authz, "identifier"), "value"));
    int n;

    memset(a, 0, sizeof(*a));
    a->type = c->conf->challenges[0];
    for (size_t k = 0; k < c->conf->n_challenges; k++) {
        if (strcmp(c->conf->challenges[k], json_string_value(json_object_get(ch, "type"))) == 0) {
            a->type = c->conf->challenges[k];
        }
    }
    a->name = name != NULL && strncmp(name, "*.", 2) == 0 ? name + 2 : name;
    if (a->name == NULL || strlen(token) > TORII_ACME_KEY_MAX) {
        return torii_errf(eb, TORII_EPROTO, "acme: authorization without identifier or token");
    }
    memcpy(a->token, token, strlen(token) + 1);
    n = snprintf(a->keyauth, sizeof(a->keyauth), "%s.%s", token, c->thumb);
    return n > 0 && (size_t)n < sizeof(a->keyauth)
               ? TORII_OK
               : torii_errf(eb, TORII_EPROTO, "acme: challenge token too long");
}

/* The names the CA offers for an authorization, for the error message. */
static void acme_offered(const json_t *authz, char *out, size_t len)
{
    size_t i;
    const json_t *ch;
    size_t used = 0;

    out[0] = '\0';
    json_array_foreach (json_object_get(authz, "challenges"), i, ch) {
        const char *type = json_string_value(json_object_get(ch, "type"));
        int n = snprintf(out + used, len - used, "%s%s", used > 0 ? ", " : "",
                         type != NULL ? type : "?");
        if (n < 0 || (size_t)n >= len - used) {
            break;
        }
        used += (size_t)n;
    }
}

/* The challenge to answer for a pending authorization; TORII_EUNSUPPORTED naming what the CA
 * offers when none of acme.challenges is. */
int acme_authz_pick(const struct acme_client *c, const json_t *authz, const json_t **ch,
                    struct torii_errbuf *eb)
{
    char offered[128];
    const char *name =
        json_string_value(json_object_get(json_object_get(authz, "identifier"), "value"));

    *ch = acme_chal_pick(c, authz);
    if (*ch != NULL) {
        return TORII_OK;
    }
    acme_offered(authz, offered, sizeof(offered));
    return torii_errf(
        eb, TORII_EUNSUPPORTED, "acme: %s: none of acme.challenges is offered (the CA offers %s%s)",
        name != NULL ? name : "(no identifier)", offered,
        json_is_true(json_object_get(authz, "wildcard")) ? "; a wildcard name needs dns-01" : "");
}

/* Answer challenge ch of a pending authorization and wait for the CA's verdict. */
static int acme_authz_answer(struct acme_client *c, const char *authz_url, const json_t *authz,
                             const json_t *ch, struct acme_answer *a, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};
    json_t *empty = json_object();
    json_t *done = NULL;

    TORII_ENSURE(empty != NULL, TORII_ENOMEM);
    TORII_TRY(acme_answer_init(c, authz, ch, a, eb));
    TORII_TRY(acme_answer_publish(c, a, eb));
    TORII_TRY(
        acme_post(c, "challenge", json_string_value(json_object_get(ch, "url")), empty, 0, &r, eb));
    TORII_TRY(acme_poll(c, "authorization", authz_url, "", &done, eb));
    if (strcmp(acme_status(done), "valid") != 0) {
        rc = acme_authz_failed(c, a, done, eb);
    }
out:
    json_decref(done);
    json_decref(empty);
    acme_resp_clear(&r);
    return rc;
}

int acme_authz_run(struct acme_client *c, const char *authz_url, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_resp r = {.retry_after_s = -1};
    json_t *authz = NULL;
    const json_t *ch = NULL;
    struct acme_answer a;

    memset(&a, 0, sizeof(a));
    TORII_TRY(acme_post(c, "authorization", authz_url, NULL, 0, &r, eb));
    TORII_TRY(acme_resp_json(&r, "authorization", &authz, eb));
    if (strcmp(acme_status(authz), "valid") == 0) {
        goto out;
    }
    TORII_ENSURE(strcmp(acme_status(authz), "pending") == 0,
                 torii_errf(eb, TORII_EPROTO, "acme: authorization %s: status %s", authz_url,
                            acme_status(authz)));
    TORII_TRY(acme_authz_pick(c, authz, &ch, eb));
    rc = acme_authz_answer(c, authz_url, authz, ch, &a, eb);
out:
    acme_answer_withdraw(c, &a);
    json_decref(authz);
    acme_resp_clear(&r);
    return rc;
}
