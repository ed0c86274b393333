/* redact.c - private keys and passwords out of admin responses, and the key fingerprint of
 * the audit log.
 *
 * Redacted shape (chosen so that GET-then-PUT round trips are safe): "privateKey" becomes ""
 * and "privateKeyRedacted": true is added (so a client can tell "hidden" from "no key"),
 * "password" becomes null. A PUT whose privateKey is "" keeps the stored key (certs.c); the
 * marker is a response-only member, dropped on PUT and POST. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "admin_guard.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define REDACT_MAX_DEPTH 16

/* NOLINTNEXTLINE(misc-no-recursion): bounded, at most REDACT_MAX_DEPTH frames deep */
static void redact_walk(json_t *v, int depth)
{
    const char *k;
    json_t *m;
    size_t i;

    if (depth > REDACT_MAX_DEPTH) {
        return;
    }
    if (json_is_array(v)) {
        json_array_foreach (v, i, m) {
            redact_walk(m, depth + 1);
        }
        return;
    }
    if (!json_is_object(v)) {
        return;
    }
    m = json_object_get(v, "privateKey");
    if (json_is_string(m) && json_string_length(m) > 0) {
        (void)json_object_set_new(v, "privateKey", json_string(""));
        (void)json_object_set_new(v, "privateKeyRedacted", json_true());
    }
    if (json_is_string(json_object_get(v, "password"))) {
        (void)json_object_set_new(v, "password", json_null());
    }
    json_object_foreach (v, k, m) {
        if (json_is_object(m) || json_is_array(m)) {
            redact_walk(m, depth + 1);
        }
    }
}

void admin_redact(json_t *v)
{
    redact_walk(v, 0);
}

/* The clear text of one entity's sealed key in place (the opened text is wiped). */
static int export_one(json_t *v, const struct torii_kek_ring *kek, struct torii_errbuf *eb)
{
    const char *text = json_string_value(json_object_get(v, "privateKey"));
    const char *id = json_string_value(json_object_get(v, "id"));
    char *pem = NULL;
    int rc;

    if (!torii_kek_text_is_sealed(text)) {
        return TORII_OK;
    }
    rc = torii_pki_key_text_open(kek, id, text, &pem, eb);
    if (rc == TORII_OK && json_object_set_new(v, "privateKey", json_string(pem)) != 0) {
        rc = TORII_ENOMEM;
    }
    if (pem != NULL) {
        torii_secure_free(pem, strlen(pem));
    }
    return rc;
}

static int export_walk(json_t *v, const struct torii_kek_ring *kek, int depth,
                       struct torii_errbuf *eb);

/* The members of an array or object, one level down; the first failure stops the walk. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded, at most REDACT_MAX_DEPTH frames deep */
static int export_children(json_t *v, const struct torii_kek_ring *kek, int depth,
                           struct torii_errbuf *eb)
{
    const char *k;
    json_t *m;
    size_t i;
    int rc = TORII_OK;

    if (json_is_array(v)) {
        json_array_foreach (v, i, m) {
            rc = rc == TORII_OK ? export_walk(m, kek, depth + 1, eb) : rc;
        }
    } else {
        json_object_foreach (v, k, m) {
            rc = rc == TORII_OK ? export_walk(m, kek, depth + 1, eb) : rc;
        }
    }
    return rc;
}

/* NOLINTNEXTLINE(misc-no-recursion): bounded, at most REDACT_MAX_DEPTH frames deep */
static int export_walk(json_t *v, const struct torii_kek_ring *kek, int depth,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (depth > REDACT_MAX_DEPTH || !(json_is_array(v) || json_is_object(v))) {
        return TORII_OK;
    }
    if (json_is_object(v)) {
        rc = export_one(v, kek, eb);
    }
    return rc == TORII_OK ? export_children(v, kek, depth, eb) : rc;
}

int admin_export_keys(json_t *v, const struct torii_kek_ring *kek, struct torii_errbuf *eb)
{
    int rc = export_walk(v, kek, 0, eb);

    if (rc != TORII_OK) {
        admin_redact(v);
    }
    return rc;
}

int admin_key_fingerprint(const json_t *v, char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const json_t *e = json_is_array(v) ? json_array_get(v, 0) : v;
    const char *chain = json_string_value(json_object_get(e, "chain"));
    unsigned char *der = NULL;
    unsigned char d[32];
    unsigned int dl = sizeof(d);
    BIO *b = NULL;
    X509 *x = NULL;
    int n = 0;
    int ok = 0;

    if (chain == NULL || len < 8 + 64 || strlen(chain) > INT32_MAX) {
        return 0;
    }
    b = BIO_new_mem_buf(chain, (int)strlen(chain));
    x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    n = x != NULL ? i2d_PUBKEY(X509_get0_pubkey(x), &der) : 0;
    if (n > 0 && EVP_Digest(der, (size_t)n, d, &dl, EVP_sha256(), NULL) == 1) {
        memcpy(out, "sha256:", 7);
        for (size_t i = 0; i < 32; i++) {
            out[7 + 2 * i] = hex[d[i] >> 4];
            out[7 + 2 * i + 1] = hex[d[i] & 15];
        }
        out[7 + 64] = '\0';
        ok = 1;
    }
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(b);
    return ok;
}
