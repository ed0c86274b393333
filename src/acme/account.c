/* account.c - the ACME account (RFC 8555 7.3): one per directory URL, its ES256 key made by
 * src/pki and kept with the account URL in TORII_STORE_ACME under "account:<directory>", so
 * every order and every restart reuses it. Registration sends the contacts and, when
 * acme.eab is set, the external account binding (7.3.4). Contacts changed in the config are
 * sent to the CA (7.3.2). ACME thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

#define ACME_ACCOUNT_PREFIX "account:"

static void acme_account_id(const struct acme_client *c, char *out, size_t len)
{
    (void)snprintf(out, len, ACME_ACCOUNT_PREFIX "%s", c->conf->directory_url);
}

/* The stored account: key (and kid, contacts) into c; TORII_ENOTFOUND when none. */
static int acme_account_load(struct acme_client *c, json_t **stored, struct torii_errbuf *eb)
{
    char id[TORII_STORE_ID_MAX + 1];
    char *text = NULL;
    size_t len = 0;
    json_error_t je;
    int rc;

    acme_account_id(c, id, sizeof(id));
    rc = torii_store_get(c->store, TORII_STORE_ACME, id, &text, &len, NULL, NULL);
    if (rc != TORII_OK) {
        return rc == TORII_ENOTFOUND ? rc : torii_errf(eb, rc, "acme: reading the account");
    }
    *stored = json_loadb(text, len, 0, &je);
    torii_secure_free(text, len);
    if (!json_is_string(json_object_get(*stored, "key"))) {
        json_decref(*stored);
        *stored = NULL;
        return torii_errf(eb, TORII_EINVAL, "acme: stored account %s is corrupt", id);
    }
    return TORII_OK;
}

static int acme_account_save(struct acme_client *c, struct torii_errbuf *eb)
{
    char id[TORII_STORE_ID_MAX + 1];
    char *key = NULL;
    json_t *v = NULL;
    char *text = NULL;
    int rc;
    struct torii_store_rec rec;

    acme_account_id(c, id, sizeof(id));
    /* Keys at rest: sealed under the store's KEK (the record id as associated data). */
    rc = torii_pki_key_seal(torii_store_kek(c->store), id, c->key_pem, &key, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    v = json_pack("{s:s,s:s,s:s?,s:O?}", "directory", c->conf->directory_url, "key", key, "kid",
                  c->kid, "contacts", c->conf->contacts);
    torii_secure_free(key, strlen(key));
    text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
    memset(&rec, 0, sizeof(rec));
    rec.id = id;
    rec.id_len = strlen(id);
    rec.json = text;
    rec.json_len = text != NULL ? strlen(text) : 0;
    rc = text == NULL ? TORII_ENOMEM
                      : torii_store_put(c->store, TORII_STORE_ACME, &rec, TORII_STORE_PUT, eb);
    if (text != NULL) {
        torii_secure_free(text, strlen(text));
    }
    json_decref(v);
    return rc;
}

/* The externalAccountBinding member (7.3.4): an HS256 JWS of the account JWK. */
static int acme_account_eab(struct acme_client *c, const char *url, json_t **out,
                            struct torii_errbuf *eb)
{
    json_t *prot = json_pack("{s:s,s:s,s:s}", "alg", "HS256", "kid", c->conf->eab_kid, "url", url);
    int rc = prot != NULL ? acme_jws_flat(prot, c->jwk, NULL, c->conf->eab_hmac_key, out, eb)
                          : TORII_ENOMEM;

    json_decref(prot);
    return rc;
}

/* The newAccount payload into p (terms agreed, contacts, the EAB when configured). */
static int acme_account_payload(struct acme_client *c, const char *url, json_t *p,
                                struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *eab = NULL;

    if (c->conf->contacts != NULL) {
        TORII_ENSURE(json_object_set(p, "contact", c->conf->contacts) == 0, TORII_ENOMEM);
    }
    if (c->conf->eab_kid != NULL) {
        TORII_TRY(acme_account_eab(c, url, &eab, eb));
        TORII_ENSURE(json_object_set(p, "externalAccountBinding", eab) == 0, TORII_ENOMEM);
    }
out:
    json_decref(eab);
    return rc;
}

static int acme_account_register(struct acme_client *c, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *url = acme_dir_url(c, "newAccount");
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    struct acme_resp r = {.retry_after_s = -1};

    TORII_ENSURE(p != NULL, TORII_ENOMEM);
    TORII_TRY(acme_account_payload(c, url, p, eb));
    TORII_TRY(acme_post(c, "newAccount", url, p, 1, &r, eb));
    TORII_TRY(acme_take_location(&r, "newAccount", &c->kid, eb));
out:
    acme_resp_clear(&r);
    json_decref(p);
    return rc;
}

/* Send the configured contacts when they differ from the stored ones. */
static int acme_account_contacts(struct acme_client *c, const json_t *stored,
                                 struct torii_errbuf *eb)
{
    int rc;
    json_t *p;
    struct acme_resp r = {.retry_after_s = -1};
    const json_t *want = c->conf->contacts;
    const json_t *have = json_object_get(stored, "contacts");

    if ((want == NULL && have == NULL) || (want != NULL && json_equal(want, have))) {
        return TORII_OK;
    }
    p = json_pack("{s:o}", "contact", want != NULL ? json_deep_copy(want) : json_array());
    rc = p != NULL ? acme_post(c, "account update", c->kid, p, 0, &r, eb) : TORII_ENOMEM;
    acme_resp_clear(&r);
    json_decref(p);
    return rc != TORII_OK ? rc : acme_account_save(c, eb);
}

/* The stored account's key and URL (*stored: the record), or a fresh key for a new one. */
static int acme_account_key(struct acme_client *c, json_t **stored, struct torii_errbuf *eb)
{
    char id[TORII_STORE_ID_MAX + 1];
    int rc = acme_account_load(c, stored, eb);

    if (rc == TORII_ENOTFOUND) {
        return torii_pki_acme_key_new(&c->key_pem, eb);
    }
    if (rc != TORII_OK) {
        return rc;
    }
    acme_account_id(c, id, sizeof(id));
    rc = torii_pki_key_text_open(torii_store_kek(c->store), id,
                                 json_string_value(json_object_get(*stored, "key")), &c->key_pem,
                                 eb);
    if (rc != TORII_OK) {
        return rc;
    }
    if (json_is_string(json_object_get(*stored, "kid"))) {
        c->kid = torii_xstrdup(json_string_value(json_object_get(*stored, "kid")));
    }
    return TORII_OK;
}

/* A new account (or a key stored without its URL: a registration that failed half-way,
 * which registers again and gets the existing account): saved before and after. */
static int acme_account_new(struct acme_client *c, struct torii_errbuf *eb)
{
    int rc = acme_account_save(c, eb);

    if (rc == TORII_OK) {
        rc = acme_account_register(c, eb);
    }
    return rc == TORII_OK ? acme_account_save(c, eb) : rc;
}

int acme_account(struct acme_client *c, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *stored = NULL;

    if (c->kid != NULL) {
        return TORII_OK;
    }
    TORII_TRY(acme_account_key(c, &stored, eb));
    TORII_TRY(torii_pki_acme_jwk(c->key_pem, &c->jwk, c->thumb, sizeof(c->thumb), eb));
    rc = c->kid == NULL ? acme_account_new(c, eb) : acme_account_contacts(c, stored, eb);
out:
    json_decref(stored);
    return rc;
}
