/* csr.c - certificate signing requests: generating one from a GenCsrQuery, and signing one
 * with a CA entity.
 *
 * Signing is policy-driven, unlike Otoroshi, which copied every requested extension
 * verbatim (reference 3.2, `_sign`), so a CSR asking for CA:TRUE got a CA certificate. Here
 * the CA decides BasicConstraints (never CA), key usage and validity; only the subject and
 * the subjectAltName are taken from the request, after its signature verified. */
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/pki.h"

#define PKI_CSR_MAX ((size_t)64 * 1024)

static int csr_write(BIO *b, const void *req)
{
    return PEM_write_bio_X509_REQ(b, (X509_REQ *)(uintptr_t)req) == 1 ? TORII_OK : TORII_ENOMEM;
}

static int csr_to_pem(X509_REQ *req, char **out)
{
    return torii_pki__bio_text(csr_write, req, 0, out);
}

static int csr_add_ext(STACK_OF(X509_EXTENSION) * exts, int nid, void *value)
{
    X509_EXTENSION *ext = X509V3_EXT_i2d(nid, 0, value);

    if (ext == NULL) {
        return TORII_ENOMEM;
    }
    if (sk_X509_EXTENSION_push(exts, ext) <= 0) {
        X509_EXTENSION_free(ext);
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* The query's subject, else CN=<first host> (*owned, for the caller to free). */
static int csr_subject(const struct torii_pki__query *q, const X509_NAME **subject,
                       X509_NAME **owned, struct torii_errbuf *eb)
{
    if (q->subject != NULL) {
        *subject = q->subject;
        return TORII_OK;
    }
    if (q->first_host == NULL || strlen(q->first_host) > 64) {
        return torii_errf(eb, TORII_EINVAL,
                          "query: 'subject', 'name' or a short first host is required");
    }
    *owned = X509_NAME_new();
    if (*owned == NULL) {
        return TORII_ENOMEM;
    }
    if (X509_NAME_add_entry_by_NID(*owned, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)q->first_host, -1, -1, 0)
        != 1) {
        return torii_errbuf_ossl(eb, "csr: subject CN");
    }
    *subject = *owned;
    return TORII_OK;
}

static int csr_add_ca(STACK_OF(X509_EXTENSION) * exts)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int rc;

    if (bc == NULL) {
        return TORII_ENOMEM;
    }
    bc->ca = 1;
    rc = csr_add_ext(exts, NID_basic_constraints, bc);
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

/* The requested extensions of req: subjectAltName, and CA:TRUE when the query asks for a CA. */
static int csr_extensions(X509_REQ *req, const struct torii_pki__query *q)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    int rc = exts != NULL ? TORII_OK : TORII_ENOMEM;

    if (rc == TORII_OK && sk_GENERAL_NAME_num(q->sans) > 0) {
        rc = csr_add_ext(exts, NID_subject_alt_name, q->sans);
    }
    if (rc == TORII_OK && q->ca) {
        rc = csr_add_ca(exts);
    }
    if (rc == TORII_OK && sk_X509_EXTENSION_num(exts) > 0
        && X509_REQ_add_extensions(req, exts) != 1) {
        rc = TORII_ENOMEM;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* {"csr", "publicKey", "privateKey"} of a signed request and its key. */
static int csr_create_result(X509_REQ *req, EVP_PKEY *key, json_t **out)
{
    char *req_pem = NULL;
    char *pub_pem = NULL;
    char *key_pem = NULL;
    int rc = TORII_OK;

    TORII_TRY(csr_to_pem(req, &req_pem));
    TORII_TRY(torii_pki__pubkey_pem(key, &pub_pem));
    TORII_TRY(torii_pki__key_pem(key, &key_pem));
    *out = json_pack("{s:s,s:s,s:s}", "csr", req_pem, "publicKey", pub_pem, "privateKey", key_pem);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    free(pub_pem);
    free(req_pem);
    return rc;
}

/* A new key of the query's type, else ECDSA: P-384 for a CA, P-256 otherwise. */
static int csr_key(const struct torii_pki__query *q, EVP_PKEY **key, struct torii_errbuf *eb)
{
    if (q->key_type != 0) {
        return torii_pki__key_generate(q->key_type, q->key_bits, key, eb);
    }
    return torii_pki__key_generate(EVP_PKEY_EC, q->ca ? 384 : 256, key, eb);
}

/* An unsigned request for subject and key, with the query's extensions. */
static int csr_req_new(const X509_NAME *subject, EVP_PKEY *key, const struct torii_pki__query *q,
                       X509_REQ **out)
{
    X509_REQ *req = X509_REQ_new();
    int rc = TORII_OK;

    TORII_ENSURE(req != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_REQ_set_version(req, X509_REQ_VERSION_1) == 1
                     && X509_REQ_set_subject_name(req, subject) == 1
                     && X509_REQ_set_pubkey(req, key) == 1,
                 TORII_ENOMEM);
    TORII_TRY(csr_extensions(req, q));
    *out = req;
    req = NULL;
out:
    X509_REQ_free(req);
    return rc;
}

int torii_pki_csr_create(const json_t *query, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    X509_NAME *subj = NULL;
    const X509_NAME *subject = NULL;

    memset(&q, 0, sizeof(q));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(csr_subject(&q, &subject, &subj, eb));
    TORII_TRY(csr_key(&q, &key, eb));
    TORII_TRY(csr_req_new(subject, key, &q, &req));
    TORII_ENSURE(X509_REQ_sign(req, key, q.md != NULL ? q.md : torii_pki__default_md(key)) > 0,
                 torii_errbuf_ossl(eb, "csr: sign"));
    TORII_TRY(csr_create_result(req, key, out));
out:
    X509_REQ_free(req);
    X509_NAME_free(subj);
    EVP_PKEY_free(key);
    torii_pki__query_clear(&q);
    return rc;
}

/* A CSR is never encrypted: refuse a password prompt instead of reading a terminal. */
/* NOLINTNEXTLINE(readability-non-const-parameter): the pem_password_cb signature */
static int csr_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* The CSR's subject key must be one we would generate ourselves (no 1024-bit RSA). */
static int csr_key_ok(EVP_PKEY *pub, struct torii_errbuf *eb)
{
    int type = EVP_PKEY_get_base_id(pub);
    int bits = EVP_PKEY_get_bits(pub);

    if (type == EVP_PKEY_RSA && bits >= 2048 && bits <= 8192) {
        return TORII_OK;
    }
    if (type == EVP_PKEY_EC && bits >= 256) {
        return TORII_OK;
    }
    if (type == EVP_PKEY_ED25519 || type == EVP_PKEY_ED448) {
        return TORII_OK;
    }
    return torii_errf(eb, TORII_EINVAL, "csr: unsupported subject key (%d bits)", bits);
}

/* The request in csr_pem, its signature verified and its key acceptable. */
static int csr_read(const char *csr_pem, X509_REQ **out, struct torii_errbuf *eb)
{
    BIO *bio = NULL;
    X509_REQ *req = NULL;
    EVP_PKEY *pub;
    int rc = TORII_OK;

    TORII_ENSURE(csr_pem != NULL && strlen(csr_pem) <= PKI_CSR_MAX,
                 torii_errf(eb, TORII_EINVAL, "csr: missing or larger than 64 KiB"));
    bio = BIO_new_mem_buf(csr_pem, -1);
    TORII_ENSURE(bio != NULL, TORII_ENOMEM);
    ERR_clear_error();
    req = PEM_read_bio_X509_REQ(bio, NULL, csr_no_password, NULL);
    if (req == NULL) {
        (void)torii_errbuf_ossl(eb, "csr: no parsable PEM certificate request");
        rc = TORII_EINVAL;
        goto out;
    }
    pub = X509_REQ_get0_pubkey(req);
    TORII_ENSURE(pub != NULL, torii_errf(eb, TORII_EINVAL, "csr: no usable public key"));
    if (X509_REQ_verify(req, pub) != 1) {
        (void)torii_errbuf_ossl(eb, "csr: signature does not verify");
        rc = TORII_EINVAL;
        goto out;
    }
    TORII_TRY(csr_key_ok(pub, eb));
    *out = req;
    req = NULL;
out:
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

/* The subjectAltName of req (*sans, NULL when absent); the request must name something. */
static int csr_names(X509_REQ *req, GENERAL_NAMES **sans, struct torii_errbuf *eb)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    int rc = TORII_OK;

    if (exts != NULL) {
        int crit = 0;
        *sans = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
        TORII_ENSURE(*sans != NULL || crit == -1,
                     torii_errf(eb, TORII_EINVAL, "csr: subjectAltName does not parse"));
    }
    ERR_clear_error();
    TORII_ENSURE(X509_NAME_entry_count(X509_REQ_get_subject_name(req)) > 0
                     || sk_GENERAL_NAME_num(*sans) > 0,
                 torii_errf(eb, TORII_EINVAL, "csr: neither a subject nor a subjectAltName"));
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* {"cert", "csr", "ca"}: the new certificate (taken over), the request, the CA's chain. */
static int csr_sign_result(X509 *c, X509_REQ *req, const struct torii_pki__ca *ca, json_t **out)
{
    STACK_OF(X509) *one = sk_X509_new_null();
    char *cert_pem = NULL;
    char *req_pem = NULL;
    char *ca_pem = NULL;
    int rc = TORII_OK;

    if (one == NULL || sk_X509_push(one, c) <= 0) {
        X509_free(c);
        rc = TORII_ENOMEM;
        goto out;
    }
    TORII_TRY(torii_pki__chain_pem(one, &cert_pem));
    TORII_TRY(csr_to_pem(req, &req_pem));
    TORII_TRY(torii_pki__chain_pem(ca->chain, &ca_pem));
    *out = json_pack("{s:s,s:s,s:s}", "cert", cert_pem, "csr", req_pem, "ca", ca_pem);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    free(ca_pem);
    free(req_pem);
    free(cert_pem);
    sk_X509_pop_free(one, X509_free);
    return rc;
}

int torii_pki_csr_sign(const json_t *ca_entity, const char *csr_pem, int64_t duration_ms,
                       int client, const struct torii_pki_opts *o, json_t **out,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__ca ca;
    struct torii_pki__build b;
    X509_REQ *req = NULL;
    GENERAL_NAMES *sans = NULL;
    X509 *c = NULL;

    memset(&ca, 0, sizeof(ca));
    memset(&b, 0, sizeof(b));
    TORII_TRY(torii_pki__ca_load(ca_entity, o != NULL ? o->kek : NULL, &ca, eb));
    TORII_TRY(csr_read(csr_pem, &req, eb));
    TORII_TRY(csr_names(req, &sans, eb));
    b.subject = X509_REQ_get_subject_name(req);
    b.pubkey = X509_REQ_get0_pubkey(req);
    b.sans = sans;
    b.kind = TORII_PKI__LEAF;
    b.client = client;
    b.now_ms = o != NULL ? o->now_ms : torii_clock_now_ms();
    b.duration_ms = duration_ms > 0 ? duration_ms : 365LL * 86400000LL;
    b.issuer = ca.cert;
    b.signer = ca.key;
    if (o != NULL && o->base_url != NULL) {
        b.base_url = o->base_url;
        b.issuer_id = ca.id;
    }
    TORII_TRY(torii_pki__cert_build(&b, &c, eb));
    TORII_TRY(csr_sign_result(c, req, &ca, out));
out:
    GENERAL_NAMES_free(sans);
    X509_REQ_free(req);
    torii_pki__ca_clear(&ca);
    return rc;
}
