/* import.c - PKCS#12 and PEM bundle imports (reference 3.2 `_p12`, `_bundle`), `_valid`,
 * and the serial of an entity's leaf.
 *
 * Both imports are all-or-nothing: every key must pair with a certificate, and any block
 * that fails to parse fails the whole import. Otoroshi marked every PKCS#12 entry
 * client=true; here `client` is derived from the leaf's extended key usage. */
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

#define PKI_IMPORT_MAX_KEYS  64
#define PKI_IMPORT_MAX_CERTS 256
#define PKI_IMPORT_MAX_DEPTH 16

/* OpenSSL declares no stack of keys publicly. */
DEFINE_STACK_OF(EVP_PKEY)

/* chain = leaf + its issuers found in pool, by issuer name and signature. */
static int import_chain(X509 *leaf, STACK_OF(X509) * pool, STACK_OF(X509) * *out)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *cur = leaf;
    int depth;
    int i;

    TORII_ENSURE(chain != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_up_ref(leaf) == 1, TORII_ENOMEM);
    if (sk_X509_push(chain, leaf) <= 0) {
        X509_free(leaf);
        rc = TORII_ENOMEM;
        goto out;
    }
    for (depth = 0; depth < PKI_IMPORT_MAX_DEPTH && !torii_pki__self_signed(cur); depth++) {
        X509 *next = NULL;
        for (i = 0; i < sk_X509_num(pool); i++) {
            X509 *cand = sk_X509_value(pool, i);
            EVP_PKEY *pub = X509_get0_pubkey(cand);
            int j;
            int seen = 0;

            for (j = 0; j < sk_X509_num(chain); j++) {
                seen |= X509_cmp(sk_X509_value(chain, j), cand) == 0;
            }
            if (!seen && pub != NULL
                && X509_NAME_cmp(X509_get_issuer_name(cur), X509_get_subject_name(cand)) == 0
                && X509_verify(cur, pub) == 1) {
                next = cand;
                break;
            }
        }
        ERR_clear_error();
        if (next == NULL) {
            break;
        }
        TORII_ENSURE(X509_up_ref(next) == 1, TORII_ENOMEM);
        if (sk_X509_push(chain, next) <= 0) {
            X509_free(next);
            rc = TORII_ENOMEM;
            goto out;
        }
        cur = next;
    }
    *out = chain;
    chain = NULL;
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* One enriched entity for key + the certificate it matches in certs. */
static int import_entity(EVP_PKEY *key, STACK_OF(X509) * certs, const char *id, const char *name,
                         int64_t now_ms, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = NULL;
    char *chain_pem = NULL;
    char *key_pem = NULL;
    json_t *e = NULL;
    int i;
    int client;

    for (i = 0; i < sk_X509_num(certs) && leaf == NULL; i++) {
        if (X509_check_private_key(sk_X509_value(certs, i), key) == 1) {
            leaf = sk_X509_value(certs, i);
        }
    }
    ERR_clear_error();
    TORII_ENSURE(leaf != NULL,
                 torii_errf(eb, TORII_EINVAL, "import: a private key matches no certificate"));
    TORII_TRY(import_chain(leaf, certs, &chain));
    TORII_TRY(torii_pki__chain_pem(chain, &chain_pem));
    TORII_TRY(torii_pki__key_pem(key, &key_pem));
    client = (X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) != 0
             && (X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) != 0;
    e = torii_cert_template();
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(e, "id", json_string(id)) == 0
                     && json_object_set_new(e, "chain", json_string(chain_pem)) == 0
                     && json_object_set_new(e, "privateKey", json_string(key_pem)) == 0
                     && json_object_set_new(e, "client", json_boolean(client)) == 0,
                 TORII_ENOMEM);
    if (name != NULL) {
        TORII_ENSURE(json_object_set_new(e, "name", json_string(name)) == 0, TORII_ENOMEM);
    }
    TORII_TRY(torii_cert_enrich(e, now_ms, eb));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    free(chain_pem);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* ---- PKCS#12 ---- */

static int p12_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char *pass,
                    STACK_OF(EVP_PKEY) * keys, STACK_OF(X509) * certs, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    int i;

    for (i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);

        switch (PKCS12_SAFEBAG_get_nid(bag)) {
        case NID_keyBag:
            pkey = EVP_PKCS82PKEY(PKCS12_SAFEBAG_get0_p8inf(bag));
            TORII_ENSURE(pkey != NULL, torii_errbuf_ossl(eb, "p12: key entry does not parse"));
            break;
        case NID_pkcs8ShroudedKeyBag:
            p8 = PKCS12_decrypt_skey(bag, pass, -1);
            TORII_ENSURE(p8 != NULL, torii_errbuf_ossl(eb, "p12: key entry does not decrypt"));
            pkey = EVP_PKCS82PKEY(p8);
            TORII_ENSURE(pkey != NULL, torii_errbuf_ossl(eb, "p12: key entry does not parse"));
            break;
        case NID_certBag:
            if (PKCS12_SAFEBAG_get_bag_nid(bag) == NID_x509Certificate) {
                x = PKCS12_SAFEBAG_get1_cert(bag);
                TORII_ENSURE(x != NULL, torii_errbuf_ossl(eb, "p12: certificate does not parse"));
            }
            break;
        default:
            break;
        }
        if (pkey != NULL) {
            TORII_ENSURE(sk_EVP_PKEY_num(keys) < PKI_IMPORT_MAX_KEYS,
                         torii_errf(eb, TORII_EINVAL, "p12: too many keys"));
            TORII_ENSURE(sk_EVP_PKEY_push(keys, pkey) > 0, TORII_ENOMEM);
            pkey = NULL;
        }
        if (x != NULL) {
            TORII_ENSURE(sk_X509_num(certs) < PKI_IMPORT_MAX_CERTS,
                         torii_errf(eb, TORII_EINVAL, "p12: too many certificates"));
            TORII_ENSURE(sk_X509_push(certs, x) > 0, TORII_ENOMEM);
            x = NULL;
        }
        PKCS8_PRIV_KEY_INFO_free(p8);
        p8 = NULL;
    }
out:
    if (rc != TORII_OK) {
        rc = TORII_EINVAL;
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(pkey);
    X509_free(x);
    return rc;
}

static int import_entities(STACK_OF(EVP_PKEY) * keys, STACK_OF(X509) * certs, int long_ids,
                           const char *name, int64_t now_ms, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *arr = json_array();
    json_t *e = NULL;
    char id[72];
    int i;

    TORII_ENSURE(arr != NULL, TORII_ENOMEM);
    for (i = 0; i < sk_EVP_PKEY_num(keys); i++) {
        /* Reference 1.5: PKCS#12 imports get 64 random alphanumerics, bundles cert_<uuid>. */
        if (long_ids) {
            TORII_TRY(torii_rand_alnum(id, 64));
        } else {
            TORII_TRY(torii_uuid_id("cert_", id, sizeof(id)));
        }
        TORII_TRY(import_entity(sk_EVP_PKEY_value(keys, i), certs, id, name, now_ms, &e, eb));
        TORII_ENSURE(json_array_append_new(arr, e) == 0, TORII_ENOMEM);
        e = NULL;
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(e);
    json_decref(arr);
    return rc;
}

int torii_pki_import_p12(const unsigned char *der, size_t len, const char *password, int64_t now_ms,
                         json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS7) *asafes = NULL;
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(EVP_PKEY) *keys = sk_EVP_PKEY_new_null();
    STACK_OF(X509) *certs = sk_X509_new_null();
    const unsigned char *p = der;
    const char *pass = password;
    int i;

    TORII_ENSURE(keys != NULL && certs != NULL, TORII_ENOMEM);
    TORII_ENSURE(der != NULL && len > 0 && len < (size_t)INT32_MAX,
                 torii_errf(eb, TORII_EINVAL, "p12: empty input"));
    ERR_clear_error();
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (p12 == NULL || p != der + len) {
        (void)torii_errbuf_ossl(eb, "p12: not a PKCS#12 file");
        rc = TORII_EINVAL;
        goto out;
    }
    if (PKCS12_mac_present(p12)) {
        /* An empty password may have been encoded as absent or as "" (RFC 7292 B.1). */
        if (pass == NULL || pass[0] == '\0') {
            if (PKCS12_verify_mac(p12, NULL, 0) == 1) {
                pass = NULL;
            } else if (PKCS12_verify_mac(p12, "", 0) == 1) {
                pass = "";
            } else {
                pass = NULL;
                rc = torii_errf(eb, TORII_EINVAL, "p12: wrong password (MAC does not verify)");
                goto out;
            }
        } else if (PKCS12_verify_mac(p12, pass, -1) != 1) {
            rc = torii_errf(eb, TORII_EINVAL, "p12: wrong password (MAC does not verify)");
            goto out;
        }
    }
    ERR_clear_error();
    asafes = PKCS12_unpack_authsafes(p12);
    if (asafes == NULL) {
        (void)torii_errbuf_ossl(eb, "p12: contents do not parse");
        rc = TORII_EINVAL;
        goto out;
    }
    for (i = 0; i < sk_PKCS7_num(asafes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(asafes, i);
        int nid = OBJ_obj2nid(p7->type);

        if (nid == NID_pkcs7_data) {
            bags = PKCS12_unpack_p7data(p7);
        } else if (nid == NID_pkcs7_encrypted) {
            bags = PKCS12_unpack_p7encdata(p7, pass, -1);
        } else {
            continue;
        }
        if (bags == NULL) {
            (void)torii_errbuf_ossl(eb, "p12: a safe does not decrypt or parse (wrong password "
                                        "or legacy cipher)");
            rc = TORII_EINVAL;
            goto out;
        }
        TORII_TRY(p12_bags(bags, pass, keys, certs, eb));
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
        bags = NULL;
    }
    TORII_ENSURE(sk_EVP_PKEY_num(keys) > 0,
                 torii_errf(eb, TORII_EINVAL, "p12: no private key entry"));
    TORII_TRY(import_entities(keys, certs, 1, "Imported Certificate", now_ms, out, eb));
out:
    ERR_clear_error();
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    sk_PKCS7_pop_free(asafes, PKCS7_free);
    PKCS12_free(p12);
    sk_EVP_PKEY_pop_free(keys, EVP_PKEY_free);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* ---- PEM bundle ---- */

static const char *import_find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++) {
        if (strncasecmp(hay, needle, n) == 0) {
            return hay;
        }
    }
    return NULL;
}

static int import_label_has(const char *b, const char *e, const char *needle)
{
    size_t n = strlen(needle);

    for (; b + n <= e; b++) {
        if (strncasecmp(b, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

int torii_pki_import_pem_bundle(const char *text, const char *password, int64_t now_ms,
                                json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(EVP_PKEY) *keys = sk_EVP_PKEY_new_null();
    EVP_PKEY *key = NULL;
    const char *p = text;

    TORII_ENSURE(keys != NULL, TORII_ENOMEM);
    TORII_ENSURE(text != NULL, torii_errf(eb, TORII_EINVAL, "bundle: empty"));
    TORII_TRY(torii_pki__chain_parse(text, &certs, eb));
    for (;;) {
        const char *begin = import_find_ci(p, "-----BEGIN");
        const char *hdr_end;
        const char *end;

        if (begin == NULL) {
            break;
        }
        hdr_end = strstr(begin + 10, "-----");
        if (hdr_end == NULL) {
            break;
        }
        if (!import_label_has(begin + 10, hdr_end, "PRIVATE KEY")) {
            p = hdr_end + 5;
            continue;
        }
        TORII_ENSURE(sk_EVP_PKEY_num(keys) < PKI_IMPORT_MAX_KEYS,
                     torii_errf(eb, TORII_EINVAL, "bundle: too many keys"));
        TORII_TRY(torii_pki__key_parse(begin, password, &key, eb));
        TORII_ENSURE(sk_EVP_PKEY_push(keys, key) > 0, TORII_ENOMEM);
        key = NULL;
        end = import_find_ci(hdr_end + 5, "-----END");
        TORII_ENSURE(end != NULL, torii_errf(eb, TORII_EINVAL, "bundle: key has no END line"));
        p = end + 8;
    }
    TORII_ENSURE(sk_EVP_PKEY_num(keys) > 0,
                 torii_errf(eb, TORII_EINVAL, "bundle: no private key found"));
    TORII_TRY(import_entities(keys, certs, 0, NULL, now_ms, out, eb));
out:
    EVP_PKEY_free(key);
    sk_EVP_PKEY_pop_free(keys, EVP_PKEY_free);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* ---- _valid, serial ---- */

json_t *torii_pki_cert_valid(const json_t *entity, int64_t now_ms)
{
    json_t *copy = json_deep_copy(entity);
    int valid = 0;

    if (copy != NULL && torii_cert_enrich(copy, now_ms, NULL) == TORII_OK) {
        valid = json_is_true(json_object_get(copy, "valid"));
    }
    json_decref(copy);
    return json_pack("{s:b}", "valid", valid);
}

int torii_pki_cert_serial_hex(const json_t *entity, char *buf, size_t len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;

    TORII_TRY(
        torii_pki__chain_parse(json_string_value(json_object_get(entity, "chain")), &chain, eb));
    TORII_ENSURE(torii_pki__serial_hex(X509_get0_serialNumber(sk_X509_value(chain, 0)), buf, len)
                     == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "serial: does not print"));
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
