/* renew.c - renewal of ACME certificates, called by the renewal thread (renew.h's hook):
 * when it is due (ACME Renewal Information, RFC 9773, when the directory offers renewalInfo:
 * due once the suggested window has started; else in the last third of the validity) and the
 * renewal itself (an order for the same names, queued on the ACME thread and waited for,
 * the entity updated in place). The ARI look-up uses its own connection (the renewal thread
 * never touches the ACME thread's client). Only public certificates are parsed here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme_int.h"
#include "torii/codec.h"
#include "torii/log.h"
#include "torii/mem.h"

int torii_acme_ari_cert_id(const char *chain_pem, char *out, size_t out_len)
{
    int rc = TORII_EINVAL;
    BIO *bio = chain_pem != NULL ? BIO_new_mem_buf(chain_pem, -1) : NULL;
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    const ASN1_OCTET_STRING *aki = x != NULL ? X509_get0_authority_key_id(x) : NULL;
    const ASN1_INTEGER *serial = x != NULL ? X509_get0_serialNumber(x) : NULL;
    unsigned char *der = NULL;
    char *a = NULL;
    char *s = NULL;
    int len = serial != NULL ? i2d_ASN1_INTEGER(serial, &der) : -1;

    /* The serial's DER content octets: after the tag and a short-form length. */
    if (aki != NULL && len > 2 && len < 128 && der[1] == len - 2) {
        a = torii_b64_encode(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki), 1, NULL);
        s = torii_b64_encode(der + 2, (size_t)len - 2, 1, NULL);
        if (a != NULL && s != NULL && (size_t)snprintf(out, out_len, "%s.%s", a, s) < out_len) {
            rc = TORII_OK;
        }
    }
    free(a);
    free(s);
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(bio);
    return rc;
}

/* Exactly `digits` decimal digits at *p into *out, then the separator sep (none: '\0'). */
static int acme_time_field(const char **p, int digits, char sep, int *out)
{
    int v = 0;

    for (int i = 0; i < digits; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9') {
            return 0;
        }
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += digits;
    if (sep != '\0') {
        if (**p != sep) {
            return 0;
        }
        (*p)++;
    }
    *out = v;
    return 1;
}

/* RFC 3339 UTC time ("2026-01-02T03:04:05Z", optional fraction) in ms. */
static int acme_rfc3339_ms(const char *t, int64_t *out)
{
    struct tm tm;
    const char *p = t;

    memset(&tm, 0, sizeof(tm));
    if (t == NULL || !acme_time_field(&p, 4, '-', &tm.tm_year)
        || !acme_time_field(&p, 2, '-', &tm.tm_mon) || !acme_time_field(&p, 2, 'T', &tm.tm_mday)
        || !acme_time_field(&p, 2, ':', &tm.tm_hour) || !acme_time_field(&p, 2, ':', &tm.tm_min)
        || !acme_time_field(&p, 2, '\0', &tm.tm_sec)) {
        return TORII_EINVAL;
    }
    if (*p == '.') {
        p += 1 + strspn(p + 1, "0123456789");
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "z") != 0 && strcmp(p, "+00:00") != 0) {
        return TORII_EINVAL;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) * 1000;
    return TORII_OK;
}

int torii_acme_ari_window_due(const json_t *info, int64_t now_ms, int *due)
{
    const json_t *w = json_object_get(info, "suggestedWindow");
    int64_t start = 0;
    int64_t end = 0;

    if (acme_rfc3339_ms(json_string_value(json_object_get(w, "start")), &start) != TORII_OK
        || acme_rfc3339_ms(json_string_value(json_object_get(w, "end")), &end) != TORII_OK
        || end < start) {
        return TORII_EPROTO;
    }
    *due = now_ms >= start;
    return TORII_OK;
}

/* The renewalInfo URL of the chain's leaf; TORII_ENOTFOUND when the directory has none. */
static int acme_ari_url(struct acme_client *c, const char *chain_pem, char **url,
                        struct torii_errbuf *eb)
{
    char id[256];
    const char *base;
    size_t n;
    int rc = acme_directory(c, eb);

    if (rc != TORII_OK) {
        return rc;
    }
    base = acme_dir_url(c, "renewalInfo");
    if (base == NULL) {
        return TORII_ENOTFOUND; /* no ARI: the caller's own rule */
    }
    if (torii_acme_ari_cert_id(chain_pem, id, sizeof(id)) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "acme: ARI: no authority key id or serial");
    }
    n = strlen(base) + strlen(id) + 2;
    *url = torii_xmalloc(n);
    (void)snprintf(*url, n, "%s/%s", base, id);
    return TORII_OK;
}

int torii_acme_ari_due(const struct torii_conf_acme *conf, const char *chain_pem, int64_t now_ms,
                       int *due, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct acme_client c;
    struct acme_resp r = {.retry_after_s = -1};
    char *url = NULL;
    json_t *info = NULL;

    memset(&c, 0, sizeof(c));
    c.conf = conf;
    TORII_TRY(acme_net_open(&c, eb));
    TORII_TRY(acme_ari_url(&c, chain_pem, &url, eb));
    TORII_TRY(acme_net_do(&c, url, NULL, 0, &r, eb));
    TORII_ENSURE(r.status == 200,
                 torii_errf(eb, TORII_EPROTO, "acme: ARI %s: HTTP %ld", url, r.status));
    TORII_TRY(acme_resp_json(&r, "renewalInfo", &info, eb));
    TORII_ENSURE(torii_acme_ari_window_due(info, now_ms, due) == TORII_OK,
                 torii_errf(eb, TORII_EPROTO, "acme: ARI %s: no usable suggestedWindow", url));
out:
    json_decref(info);
    free(url);
    acme_resp_clear(&r);
    json_decref(c.dir);
    acme_net_close(&c);
    return rc;
}

int torii_acme_renew_due(struct torii_acme *a, const json_t *entity, int64_t now_ms)
{
    struct torii_errbuf eb = {{0}};
    int64_t from = json_integer_value(json_object_get(entity, "from"));
    int64_t to = json_integer_value(json_object_get(entity, "to"));
    const char *id = json_string_value(json_object_get(entity, "id"));
    int due = 0;
    int rc =
        torii_acme_ari_due(torii_acme__conf(a), json_string_value(json_object_get(entity, "chain")),
                           now_ms, &due, &eb);

    if (rc == TORII_OK) {
        return due;
    }
    if (rc != TORII_ENOTFOUND) {
        torii_log(TORII_LOG_WARN, "acme: %s (id=%s); the last third of the validity decides",
                  eb.msg, id != NULL ? id : "?");
    }
    return to > from && now_ms < to && (to - now_ms) * 3 < (to - from);
}

/* The names to renew: the entity's SANs, as a new array. */
static int acme_renew_hosts(const char *id, const json_t *entity, json_t **out,
                            struct torii_errbuf *eb)
{
    json_t *hosts = json_array();
    size_t i;
    const json_t *n;

    json_array_foreach (json_object_get(entity, "sans"), i, n) {
        if (hosts == NULL || json_array_append_new(hosts, json_string(json_string_value(n))) != 0) {
            json_decref(hosts);
            return TORII_ENOMEM;
        }
    }
    if (hosts == NULL || json_array_size(hosts) == 0) {
        json_decref(hosts);
        return torii_errf(eb, TORII_EINVAL, "acme: renewal of %s: no names", id);
    }
    *out = hosts;
    return TORII_OK;
}

int torii_acme_renew(struct torii_acme *a, const char *id, const json_t *entity,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *hosts = NULL;
    json_t *st = NULL;
    char job[33];
    const struct torii_conf_acme *conf = torii_acme__conf(a);

    TORII_TRY(acme_renew_hosts(id, entity, &hosts, eb));
    TORII_TRY(torii_acme_submit(a, hosts, id, job, eb));
    TORII_TRY(torii_acme_wait(a, job, ((int64_t)conf->order_timeout_s + 120) * 1000));
    TORII_TRY(torii_acme_job_get(a, job, &st));
    if (strcmp(json_string_value(json_object_get(st, "status")), "valid") != 0) {
        rc = torii_errf(eb, TORII_EPROTO, "%s",
                        json_is_string(json_object_get(st, "error"))
                            ? json_string_value(json_object_get(st, "error"))
                            : "acme: the renewal order did not finish");
    }
out:
    json_decref(st);
    json_decref(hosts);
    return rc;
}
