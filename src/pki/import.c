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

/* Take a reference on x and push it on chain. */
static int import_push_ref(STACK_OF(X509) * chain, X509 *x)
{
    if (X509_up_ref(x) != 1) {
        return TORII_ENOMEM;
    }
    if (sk_X509_push(chain, x) <= 0) {
        X509_free(x);
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* The certificate of pool, not yet in chain, that issued cur (by name and signature). */
static X509 *import_issuer_in(X509 *cur, STACK_OF(X509) * pool, STACK_OF(X509) * chain)
{
    for (int i = 0; i < sk_X509_num(pool); i++) {
        X509 *cand = sk_X509_value(pool, i);
        EVP_PKEY *pub = X509_get0_pubkey(cand);
        int seen = 0;

        for (int j = 0; j < sk_X509_num(chain); j++) {
            seen |= X509_cmp(sk_X509_value(chain, j), cand) == 0;
        }
        if (!seen && pub != NULL
            && X509_NAME_cmp(X509_get_issuer_name(cur), X509_get_subject_name(cand)) == 0
            && X509_verify(cur, pub) == 1) {
            return cand;
        }
    }
    return NULL;
}

/* chain = leaf + its issuers found in pool, by issuer name and signature. */
static int import_chain(X509 *leaf, STACK_OF(X509) * pool, STACK_OF(X509) * *out)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *cur = leaf;

    TORII_ENSURE(chain != NULL, TORII_ENOMEM);
    TORII_TRY(import_push_ref(chain, leaf));
    for (int depth = 0; depth < PKI_IMPORT_MAX_DEPTH && !torii_pki__self_signed(cur); depth++) {
        X509 *next = import_issuer_in(cur, pool, chain);
        ERR_clear_error();
        if (next == NULL) {
            break;
        }
        TORII_TRY(import_push_ref(chain, next));
        cur = next;
    }
    *out = chain;
    chain = NULL;
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* The certificate of certs that key belongs to; NULL when none. */
static X509 *import_key_cert(EVP_PKEY *key, STACK_OF(X509) * certs)
{
    X509 *leaf = NULL;

    for (int i = 0; i < sk_X509_num(certs) && leaf == NULL; i++) {
        if (X509_check_private_key(sk_X509_value(certs, i), key) == 1) {
            leaf = sk_X509_value(certs, i);
        }
    }
    ERR_clear_error();
    return leaf;
}

/* id, chain, privateKey, client (from the leaf's EKU) and name (when given) of e. */
static int import_entity_fields(json_t *e, const char *id, const char *name, const char *chain_pem,
                                const char *key_pem, X509 *leaf)
{
    int client = (X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) != 0
                 && (X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) != 0;

    if (json_object_set_new(e, "id", json_string(id)) != 0
        || json_object_set_new(e, "chain", json_string(chain_pem)) != 0
        || json_object_set_new(e, "privateKey", json_string(key_pem)) != 0
        || json_object_set_new(e, "client", json_boolean(client)) != 0) {
        return TORII_ENOMEM;
    }
    if (name != NULL && json_object_set_new(e, "name", json_string(name)) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
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

    leaf = import_key_cert(key, certs);
    TORII_ENSURE(leaf != NULL,
                 torii_errf(eb, TORII_EINVAL, "import: a private key matches no certificate"));
    TORII_TRY(import_chain(leaf, certs, &chain));
    TORII_TRY(torii_pki__chain_pem(chain, &chain_pem));
    TORII_TRY(torii_pki__key_pem(key, &key_pem));
    e = torii_cert_template();
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_TRY(import_entity_fields(e, id, name, chain_pem, key_pem, leaf));
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

/* The key or certificate of one safe bag (*pkey or *x; neither for other bag types). */
static int p12_bag_read(const PKCS12_SAFEBAG *bag, const char *pass, EVP_PKEY **pkey, X509 **x,
                        struct torii_errbuf *eb)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    int rc = TORII_OK;

    switch (PKCS12_SAFEBAG_get_nid(bag)) {
    case NID_keyBag:
        *pkey = EVP_PKCS82PKEY(PKCS12_SAFEBAG_get0_p8inf(bag));
        TORII_ENSURE(*pkey != NULL, torii_errbuf_ossl(eb, "p12: key entry does not parse"));
        break;
    case NID_pkcs8ShroudedKeyBag:
        p8 = PKCS12_decrypt_skey(bag, pass, -1);
        TORII_ENSURE(p8 != NULL, torii_errbuf_ossl(eb, "p12: key entry does not decrypt"));
        *pkey = EVP_PKCS82PKEY(p8);
        TORII_ENSURE(*pkey != NULL, torii_errbuf_ossl(eb, "p12: key entry does not parse"));
        break;
    case NID_certBag:
        if (PKCS12_SAFEBAG_get_bag_nid(bag) == NID_x509Certificate) {
            *x = PKCS12_SAFEBAG_get1_cert(bag);
            TORII_ENSURE(*x != NULL, torii_errbuf_ossl(eb, "p12: certificate does not parse"));
        }
        break;
    default:
        break;
    }
out:
    PKCS8_PRIV_KEY_INFO_free(p8);
    return rc;
}

/* Move *pkey into keys and *x into certs (when set), within the import limits. */
static int p12_keep(STACK_OF(EVP_PKEY) * keys, STACK_OF(X509) * certs, EVP_PKEY **pkey, X509 **x,
                    struct torii_errbuf *eb)
{
    if (*pkey != NULL) {
        if (sk_EVP_PKEY_num(keys) >= PKI_IMPORT_MAX_KEYS) {
            return torii_errf(eb, TORII_EINVAL, "p12: too many keys");
        }
        if (sk_EVP_PKEY_push(keys, *pkey) <= 0) {
            return TORII_ENOMEM;
        }
        *pkey = NULL;
    }
    if (*x != NULL) {
        if (sk_X509_num(certs) >= PKI_IMPORT_MAX_CERTS) {
            return torii_errf(eb, TORII_EINVAL, "p12: too many certificates");
        }
        if (sk_X509_push(certs, *x) <= 0) {
            return TORII_ENOMEM;
        }
        *x = NULL;
    }
    return TORII_OK;
}

static int p12_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char *pass,
                    STACK_OF(EVP_PKEY) * keys, STACK_OF(X509) * certs, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;

    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags) && rc == TORII_OK; i++) {
        rc = p12_bag_read(sk_PKCS12_SAFEBAG_value(bags, i), pass, &pkey, &x, eb);
        if (rc == TORII_OK) {
            rc = p12_keep(keys, certs, &pkey, &x, eb);
        }
    }
    EVP_PKEY_free(pkey);
    X509_free(x);
    return rc != TORII_OK ? TORII_EINVAL : TORII_OK;
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
        TORII_TRY(long_ids ? torii_rand_alnum(id, 64) : torii_uuid_id("cert_", id, sizeof(id)));
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

/* The MAC, when present, verifies with the password. An empty password may have been encoded
 * as absent or as "" (RFC 7292 B.1): *pass becomes the form that verified. */
static int p12_check_mac(PKCS12 *p12, const char **pass, struct torii_errbuf *eb)
{
    if (!PKCS12_mac_present(p12)) {
        return TORII_OK;
    }
    if (*pass != NULL && (*pass)[0] != '\0') {
        return PKCS12_verify_mac(p12, *pass, -1) == 1
                   ? TORII_OK
                   : torii_errf(eb, TORII_EINVAL, "p12: wrong password (MAC does not verify)");
    }
    if (PKCS12_verify_mac(p12, NULL, 0) == 1) {
        *pass = NULL;
    } else if (PKCS12_verify_mac(p12, "", 0) == 1) {
        *pass = "";
    } else {
        *pass = NULL;
        return torii_errf(eb, TORII_EINVAL, "p12: wrong password (MAC does not verify)");
    }
    return TORII_OK;
}

/* The keys and certificates of one authenticated safe (data or encrypted; others skipped). */
static int p12_safe(PKCS7 *p7, const char *pass, STACK_OF(EVP_PKEY) * keys, STACK_OF(X509) * certs,
                    struct torii_errbuf *eb)
{
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    int nid = OBJ_obj2nid(p7->type);
    int rc;

    if (nid == NID_pkcs7_data) {
        bags = PKCS12_unpack_p7data(p7);
    } else if (nid == NID_pkcs7_encrypted) {
        bags = PKCS12_unpack_p7encdata(p7, pass, -1);
    } else {
        return TORII_OK;
    }
    if (bags == NULL) {
        (void)torii_errbuf_ossl(eb, "p12: a safe does not decrypt or parse (wrong password "
                                    "or legacy cipher)");
        return TORII_EINVAL;
    }
    rc = p12_bags(bags, pass, keys, certs, eb);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return rc;
}

/* The whole of der as one PKCS#12 structure (*p12, the caller's even on failure). */
static int p12_decode(const unsigned char *der, size_t len, PKCS12 **p12, struct torii_errbuf *eb)
{
    const unsigned char *p = der;

    if (der == NULL || len == 0 || len >= (size_t)INT32_MAX) {
        return torii_errf(eb, TORII_EINVAL, "p12: empty input");
    }
    ERR_clear_error();
    *p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (*p12 == NULL || p != der + len) {
        (void)torii_errbuf_ossl(eb, "p12: not a PKCS#12 file");
        return TORII_EINVAL;
    }
    return TORII_OK;
}

int torii_pki_import_p12(const unsigned char *der, size_t len, const char *password, int64_t now_ms,
                         json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS7) *asafes = NULL;
    STACK_OF(EVP_PKEY) *keys = sk_EVP_PKEY_new_null();
    STACK_OF(X509) *certs = sk_X509_new_null();
    const char *pass = password;

    TORII_ENSURE(keys != NULL && certs != NULL, TORII_ENOMEM);
    TORII_TRY(p12_decode(der, len, &p12, eb));
    TORII_TRY(p12_check_mac(p12, &pass, eb));
    ERR_clear_error();
    asafes = PKCS12_unpack_authsafes(p12);
    if (asafes == NULL) {
        (void)torii_errbuf_ossl(eb, "p12: contents do not parse");
        rc = TORII_EINVAL;
        goto out;
    }
    for (int i = 0; i < sk_PKCS7_num(asafes) && rc == TORII_OK; i++) {
        rc = p12_safe(sk_PKCS7_value(asafes, i), pass, keys, certs, eb);
    }
    TORII_TRY(rc);
    TORII_ENSURE(sk_EVP_PKEY_num(keys) > 0,
                 torii_errf(eb, TORII_EINVAL, "p12: no private key entry"));
    TORII_TRY(import_entities(keys, certs, 1, "Imported Certificate", now_ms, out, eb));
out:
    ERR_clear_error();
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

/* From *p, the next PEM block: a private key is parsed into keys. *p moves past the block;
 * NULL when there is none left. */
static int bundle_next_key(const char **p, const char *password, STACK_OF(EVP_PKEY) * keys,
                           struct torii_errbuf *eb)
{
    const char *begin = import_find_ci(*p, "-----BEGIN");
    const char *hdr_end = begin != NULL ? strstr(begin + 10, "-----") : NULL;
    const char *end;
    EVP_PKEY *key = NULL;
    int rc;

    if (hdr_end == NULL) {
        *p = NULL;
        return TORII_OK;
    }
    if (!import_label_has(begin + 10, hdr_end, "PRIVATE KEY")) {
        *p = hdr_end + 5;
        return TORII_OK;
    }
    if (sk_EVP_PKEY_num(keys) >= PKI_IMPORT_MAX_KEYS) {
        return torii_errf(eb, TORII_EINVAL, "bundle: too many keys");
    }
    rc = torii_pki__key_parse(begin, password, &key, eb);
    if (rc != TORII_OK) {
        return rc;
    }
    if (sk_EVP_PKEY_push(keys, key) <= 0) {
        EVP_PKEY_free(key);
        return TORII_ENOMEM;
    }
    end = import_find_ci(hdr_end + 5, "-----END");
    if (end == NULL) {
        return torii_errf(eb, TORII_EINVAL, "bundle: key has no END line");
    }
    *p = end + 8;
    return TORII_OK;
}

int torii_pki_import_pem_bundle(const char *text, const char *password, int64_t now_ms,
                                json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(EVP_PKEY) *keys = sk_EVP_PKEY_new_null();
    const char *p = text;

    TORII_ENSURE(keys != NULL, TORII_ENOMEM);
    TORII_ENSURE(text != NULL, torii_errf(eb, TORII_EINVAL, "bundle: empty"));
    TORII_TRY(torii_pki__chain_parse(text, &certs, eb));
    while (p != NULL) {
        TORII_TRY(bundle_next_key(&p, password, keys, eb));
    }
    TORII_ENSURE(sk_EVP_PKEY_num(keys) > 0,
                 torii_errf(eb, TORII_EINVAL, "bundle: no private key found"));
    TORII_TRY(import_entities(keys, certs, 0, NULL, now_ms, out, eb));
out:
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
