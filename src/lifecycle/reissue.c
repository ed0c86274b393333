/* reissue.c - the lifecycle side of re-issuing a certificate: the PKI module makes the new
 * certificate (torii_pki_cert_renew; private keys never leave src/pki, STYLE 2.1), and this
 * file adds the lifecycle metadata, and builds the "[UNTIL EXPIRATION]" copy of the old one. */
#include <stdio.h>
#include <string.h>

#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/renew.h"

int torii_renew_reissue(const json_t *entity, const json_t *ca_entity,
                        const struct torii_kek_ring *kek, int64_t now_ms, json_t **out,
                        struct torii_errbuf *eb)
{
    struct torii_pki_opts o = {.now_ms = now_ms, .kek = kek};
    json_t *res = NULL;
    json_t *md;
    char ms[32];
    int rc = TORII_OK;

    TORII_TRY(torii_pki_cert_renew(entity, ca_entity, &o, &res, eb));
    md = json_object_get(res, "metadata");
    if (!json_is_object(md)) {
        md = json_object();
        TORII_ENSURE(md != NULL && json_object_set_new(res, "metadata", md) == 0, TORII_ENOMEM);
    }
    /* A fresh validity: the expiry flags of the old certificate no longer hold. */
    (void)json_object_del(md, "expired");
    (void)json_object_del(md, "almostExpired");
    (void)snprintf(ms, sizeof(ms), "%lld", (long long)now_ms);
    TORII_ENSURE(json_object_set_new(md, "renewedAt", json_string(ms)) == 0, TORII_ENOMEM);
    *out = res;
    res = NULL;
out:
    json_decref(res);
    return rc;
}

json_t *torii_renew_copy_of(const json_t *old_entity, const char *copy_id)
{
    json_t *c = json_deep_copy(old_entity);
    json_t *md;
    const char *name;
    char *nn;
    size_t n;

    if (c == NULL) {
        return NULL;
    }
    name = json_string_value(json_object_get(old_entity, "name"));
    if (name == NULL) {
        name = "none";
    }
    n = strlen(TORII_RENEW_COPY_PREFIX) + strlen(name) + 1;
    nn = torii_xmalloc(n);
    (void)snprintf(nn, n, "%s%s", TORII_RENEW_COPY_PREFIX, name);
    md = json_object_get(c, "metadata");
    if (!json_is_object(md)) {
        md = json_object();
        if (md == NULL || json_object_set_new(c, "metadata", md) != 0) {
            free(nn);
            json_decref(c);
            return NULL;
        }
    }
    if (json_object_set_new(c, "id", json_string(copy_id)) != 0
        || json_object_set_new(c, "name", json_string(nn)) != 0
        || json_object_set_new(c, "autoRenew", json_false()) != 0
        || json_object_set_new(md, "untilExpiration", json_string("true")) != 0
        || json_object_set_new(md, "nextCertificate",
                               json_string(json_string_value(json_object_get(old_entity, "id"))))
               != 0) {
        json_decref(c);
        c = NULL;
    }
    free(nn);
    return c;
}

int torii_renew_copy_make(const json_t *old_entity, const char *copy_id,
                          const struct torii_kek_ring *kek, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *c = torii_renew_copy_of(old_entity, copy_id);

    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki_entity_key_rebind(
        kek, c, json_string_value(json_object_get(old_entity, "id")), eb));
    *out = c;
    c = NULL;
out:
    torii_cert_secrets_wipe(c);
    json_decref(c);
    return rc;
}
