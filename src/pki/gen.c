/* gen.c - the first-start default certificate: an ECDSA P-256 self-signed server certificate
 * made by the issuing pipeline (torii_pki__issue) with the leaf profile of reference 3.4
 * (BasicConstraints CA:false, KeyUsage digitalSignature, EKU serverAuth, SAN = the names, SKI,
 * AKI). */
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

/* The SANs of the names (each a DNS name or an IP literal). */
static int gen_sans(const char *const *names, size_t n, GENERAL_NAMES **out,
                    struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

    TORII_ENSURE(gens != NULL, TORII_ENOMEM);
    for (size_t i = 0; i < n; i++) {
        TORII_TRY(torii_pki__san_add(gens, names[i], "generate: name", eb));
    }
    *out = gens;
    gens = NULL;
out:
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Subject CN=first name, or an empty subject when the name is longer than a CN may be (the
 * SAN alone names it then). */
static int gen_subject(const char *first, X509_NAME **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509_NAME *subj = X509_NAME_new();

    TORII_ENSURE(subj != NULL, TORII_ENOMEM);
    if (strlen(first) <= TORII_PKI__CN_MAX) {
        TORII_ENSURE(X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                (const unsigned char *)first, -1, -1, 0)
                         == 1,
                     torii_errbuf_ossl(eb, "generate: subject CN"));
    }
    *out = subj;
    subj = NULL;
out:
    X509_NAME_free(subj);
    return rc;
}

/* The entity around the generated certificate (enriched). */
static int gen_entity(const char *id, const char *name, const struct torii_pki__issued *is,
                      int64_t now_ms, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *e = torii_cert_template();

    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_object_set_new(e, "id", json_string(id)) == 0,
                 torii_errf(eb, TORII_EINVAL, "generate: id is not valid UTF-8"));
    TORII_ENSURE(
        json_object_set_new(e, "domain", json_string(name)) == 0
            && json_object_set_new(e, "name", json_string(name)) == 0
            && json_object_set_new(e, "description", json_sprintf("Certificate for %s", name)) == 0
            && json_object_set_new(e, "chain", json_string(is->chain_pem)) == 0
            && json_object_set_new(e, "privateKey", json_string(is->key_pem)) == 0
            && json_object_set_new(e, "autoRenew", json_true()) == 0,
        TORII_ENOMEM);
    TORII_TRY(torii_cert_enrich(e, now_ms, eb));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    return rc;
}

static int gen_check_args(const char *id, const char *const *dns_names, size_t n_names,
                          int64_t now_ms, int days, struct torii_errbuf *eb)
{
    if (dns_names == NULL || n_names == 0) {
        return torii_errf(eb, TORII_EINVAL, "generate: at least one name is required");
    }
    if (days <= 0 || days > 36500) {
        return torii_errf(eb, TORII_EINVAL, "generate: days must be in 1..36500");
    }
    if (now_ms < 0) {
        return torii_errf(eb, TORII_EINVAL, "generate: negative time");
    }
    if (id != NULL && id[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "generate: empty id");
    }
    return TORII_OK;
}

int torii_cert_generate_selfsigned(const char *id, const char *const *dns_names, size_t n_names,
                                   int64_t now_ms, int days, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__issued is = {NULL, NULL};
    struct torii_pki__build b;
    X509_NAME *subj = NULL;
    GENERAL_NAMES *gens = NULL;
    char gen_id[64];

    TORII_TRY(gen_check_args(id, dns_names, n_names, now_ms, days, eb));
    if (id == NULL) {
        TORII_TRY(torii_uuid_id("cert_", gen_id, sizeof(gen_id)));
        id = gen_id;
    }
    TORII_TRY(gen_sans(dns_names, n_names, &gens, eb));
    TORII_TRY(gen_subject(dns_names[0], &subj, eb));
    memset(&b, 0, sizeof(b));
    b.subject = subj;
    b.sans = gens;
    b.kind = TORII_PKI__LEAF;
    b.now_ms = now_ms;
    b.duration_ms = (int64_t)days * TORII_PKI__DAY_MS;
    TORII_TRY(torii_pki__issue(&b, EVP_PKEY_EC, 256, NULL, &is, eb));
    TORII_TRY(gen_entity(id, dns_names[0], &is, now_ms, out, eb));
out:
    torii_pki__issued_clear(&is);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
    return rc;
}
