/* prepare.c - an entity made ready for the store from ONE parse of its chain and key
 * (torii_cert_prepare): normalize, keep the stored key on a key-less replace, enrich, build
 * the TLS record, read the leaf serial for the serial index. certdb is its caller; the
 * counter torii_pki_chain_parse_count proves there is one parse per write.
 * Threads: any (pure over caller-owned data). */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/mem.h"
#include "torii/pki.h"

void torii_cert_prepared_clear(struct torii_cert_prepared *p)
{
    if (p != NULL) {
        torii_secure_free(p->aux, p->aux_len);
        memset(p, 0, sizeof(*p));
    }
}

/* The leaf of a stored record (its first chain DER), or NULL. */
static X509 *prep_record_leaf(const unsigned char *blob, size_t len)
{
    struct torii_certrec *rec = NULL;
    const unsigned char *p;
    X509 *x = NULL;

    if (blob == NULL) {
        return NULL;
    }
    rec = torii_xcalloc(1, sizeof(*rec));
    if (torii_certrec_decode(blob, len, rec) == TORII_OK && rec->n_chain > 0
        && rec->chain[0].len <= INT32_MAX) {
        p = (const unsigned char *)rec->chain[0].ptr;
        x = torii_pki__x509_lazy_d2i(&p, (long)rec->chain[0].len);
    }
    free(rec);
    ERR_clear_error();
    return x;
}

/* A replace without a key keeps the stored one when the leaf public key is unchanged. */
static int prep_keep_key(json_t *entity, X509 *leaf, const struct torii_cert_prep_opts *o,
                         struct torii_errbuf *eb)
{
    const char *old_key = json_string_value(json_object_get(o->keep_from, "privateKey"));
    const char *new_key = json_string_value(json_object_get(entity, "privateKey"));
    json_t *pw = json_object_get(o->keep_from, "password");
    X509 *stored = NULL;
    int rc = TORII_OK;

    if (o->keep_from == NULL || old_key == NULL || old_key[0] == '\0'
        || (new_key != NULL && new_key[0] != '\0')) {
        return TORII_OK;
    }
    stored = prep_record_leaf(o->keep_aux, o->keep_aux_len);
    if (stored != NULL && torii_pki__cert_key_match(leaf, torii_pki__cert_pub(stored))) {
        if (json_object_set_new(entity, "privateKey", json_string(old_key)) != 0
            || json_object_set_new(entity, "password",
                                   json_is_string(pw) ? json_incref(pw) : json_null())
                   != 0) {
            rc = TORII_ENOMEM;
        }
    } else if (stored != NULL) {
        rc = torii_errf(eb, TORII_EINVAL,
                        "privateKey: the new chain's leaf has another public key than the stored "
                        "private key; send the private key of the new certificate");
    }
    X509_free(stored);
    ERR_clear_error();
    return rc;
}

/* Normalize (unless AS_IS), run the caller's check, set certType (NORMALIZE). */
static int prep_normalize(json_t *entity, const struct torii_cert_prep_opts *o,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    if (o->mode != TORII_CERT_PREP_AS_IS) {
        TORII_TRY(torii_cert_normalize(entity, eb));
    }
    if (o->check != NULL) {
        TORII_TRY(o->check(entity, o->check_arg, eb));
    }
    if (o->mode == TORII_CERT_PREP_NORMALIZE) {
        TORII_ENSURE(json_object_set_new(entity, "certType", json_string(torii_cert_type(entity)))
                         == 0,
                     TORII_ENOMEM);
    }
out:
    return rc;
}

/* The chain (ENRICH insists on a non-empty one, as torii_cert_enrich does), the kept key, the
 * key. */
static int prep_parse(json_t *entity, const struct torii_cert_prep_opts *o, STACK_OF(X509) * *chain,
                      EVP_PKEY **key, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *pk;

    TORII_ENSURE(o->mode != TORII_CERT_PREP_ENRICH
                     || json_string_length(json_object_get(entity, "chain")) > 0,
                 torii_errf(eb, TORII_EINVAL, "chain: empty"));
    TORII_ENSURE(json_is_object(entity),
                 torii_errf(eb, TORII_EINVAL, "certrec: entity is not an object"));
    TORII_TRY(torii_pki__chain_parse_lazy(json_string_value(json_object_get(entity, "chain")),
                                          chain, eb));
    TORII_TRY(prep_keep_key(entity, sk_X509_value(*chain, 0), o, eb));
    pk = json_string_value(json_object_get(entity, "privateKey"));
    if (pk != NULL && pk[0] != '\0') {
        TORII_TRY(torii_pki_entity_key_open(o->kek, entity, key, eb));
    }
out:
    return rc;
}

/* The key as it is stored: sealed under the current KEK when one is loaded (a clear text is
 * wiped before jansson frees it). */
static int prep_seal_key(json_t *entity, const struct torii_cert_prep_opts *o,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *pk = json_string_value(json_object_get(entity, "privateKey"));
    const char *id = json_string_value(json_object_get(entity, "id"));
    char *sealed = NULL;

    if (pk == NULL || pk[0] == '\0' || o->kek == NULL || torii_kek_text_is_sealed(pk)) {
        return TORII_OK;
    }
    TORII_TRY(torii_pki_key_seal(o->kek, id, pk, &sealed, eb));
    if (strcmp(sealed, pk) != 0) {
        OPENSSL_cleanse((char *)(uintptr_t)pk, strlen(pk));
        TORII_ENSURE(json_object_set_new(entity, "privateKey", json_string(sealed)) == 0,
                     TORII_ENOMEM);
    }
out:
    if (sealed != NULL) {
        torii_secure_free(sealed, strlen(sealed));
    }
    return rc;
}

/* The TLS record (no key bytes), then the key in its stored form. */
static int prep_record(json_t *entity, const struct torii_cert_prep_opts *o, STACK_OF(X509) * chain,
                       EVP_PKEY *key, struct torii_cert_prepared *p, struct torii_errbuf *eb)
{
    int rc = torii_pki__certrec_from(entity, chain, key, &p->aux, &p->aux_len, eb);

    return rc == TORII_OK ? prep_seal_key(entity, o, eb) : rc;
}

int torii_cert_prepare(json_t *entity, const struct torii_cert_prep_opts *o,
                       struct torii_cert_prepared *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    struct torii_cert_prepared p;

    memset(&p, 0, sizeof(p));
    TORII_TRY(prep_normalize(entity, o, eb));
    TORII_TRY(prep_parse(entity, o, &chain, &key, eb));
    if (o->mode == TORII_CERT_PREP_ENRICH) {
        TORII_TRY(torii_pki__enrich_from(entity, chain, key, o->now_ms, eb));
    }
    TORII_TRY(prep_record(entity, o, chain, key, &p, eb));
    if (o->after != NULL) {
        TORII_TRY(o->after(entity, o->after_arg, eb));
    }
    p.flags = torii_certrec_flags(p.aux, p.aux_len);
    if (torii_pki__serial_hex(X509_get0_serialNumber(sk_X509_value(chain, 0)), p.serial_hex,
                              sizeof(p.serial_hex))
        != TORII_OK) {
        p.serial_hex[0] = '\0';
    }
    *out = p;
    memset(&p, 0, sizeof(p));
out:
    torii_cert_prepared_clear(&p);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return rc;
}
