/* issue.c - issuing certificates from a parsed GenCsrQuery (query.c; reference 3.1, 3.4): key
 * generation, the X.509 profiles, the one issuing pipeline (key, certificate, chain and PEMs)
 * that CAs, leaves, key pairs and the first-start self-signed certificate (gen.c) all go
 * through, and the entity built around a new certificate.
 *
 * Fixed on purpose (reference 13): caIssuers names the issuer, not the certificate's own
 * serial; client certificates keep client=true in the entity. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/pki.h"

int torii_pki__key_generate(int type, int bits, EVP_PKEY **out, struct torii_errbuf *eb)
{
    EVP_PKEY *k = NULL;
    int rc = torii_pki__key_check(type, bits, eb);

    if (rc != TORII_OK) {
        return rc;
    }
    if (type == EVP_PKEY_RSA) {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
                              bits == 256   ? "P-256"
                              : bits == 384 ? "P-384"
                                            : "P-521");
    }
    if (k == NULL) {
        return torii_errbuf_ossl(eb, "issue: key generation");
    }
    *out = k;
    return TORII_OK;
}

int torii_pki__base_url_check(const char *url, struct torii_errbuf *eb)
{
    size_t i;

    if (url == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return torii_errf(eb, TORII_EINVAL, "issue: public base URL must start with http(s)://");
    }
    for (i = 0; url[i] != '\0'; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '\\') {
            return torii_errf(eb, TORII_EINVAL, "issue: bad character in public base URL");
        }
    }
    return i < 512 ? TORII_OK : torii_errf(eb, TORII_EINVAL, "issue: public base URL too long");
}

/* ---- building one certificate ---- */

static int pki_add_ext(X509 *c, X509V3_CTX *ctx, int nid, const char *value,
                       struct torii_errbuf *eb)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        return torii_errbuf_ossl(eb, "issue: extension");
    }
    ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? TORII_OK : TORII_ENOMEM;
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void pki_pct_encode(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (; *s != '\0' && n + 4 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

static int pki_add_aia(X509 *c, X509V3_CTX *ctx, const char *base_url, const char *issuer_id,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char id[3 * 128 + 1];
    char *v = NULL;
    size_t blen;
    size_t cap;

    TORII_TRY(torii_pki__base_url_check(base_url, eb));
    TORII_ENSURE(strlen(issuer_id) <= 128,
                 torii_errf(eb, TORII_EINVAL, "issue: issuer id too long for AIA"));
    pki_pct_encode(issuer_id, id, sizeof(id));
    blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/') {
        blen--;
    }
    cap = 2 * blen + strlen(id) + 128;
    v = torii_xmalloc(cap);
    (void)snprintf(
        v, cap, "OCSP;URI:%.*s/.well-known/torii/ocsp,caIssuers;URI:%.*s/.well-known/torii/ca/%s",
        (int)blen, base_url, (int)blen, base_url, id);
    TORII_TRY(pki_add_ext(c, ctx, NID_info_access, v, eb));
    (void)snprintf(v, cap, "URI:%.*s/.well-known/torii/crl/%s", (int)blen, base_url, id);
    TORII_TRY(pki_add_ext(c, ctx, NID_crl_distribution_points, v, eb));
out:
    free(v);
    return rc;
}

int torii_pki__serial_random(X509 *c)
{
    int rc = TORII_OK;
    unsigned char serial[16];
    BIGNUM *bn = NULL;

    /* 128 random bits read as an unsigned integer: positive (RFC 5280 4.1.2.2). */
    TORII_TRY(torii_rand_bytes(serial, sizeof(serial)));
    serial[sizeof(serial) - 1] |= 1; /* never zero */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    TORII_ENSURE(bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) != NULL,
                 TORII_ENOMEM);
out:
    BN_free(bn);
    return rc;
}

/* basicConstraints, keyUsage and extendedKeyUsage (NULL: none) of a kind of certificate. */
static int pki_profile(const struct torii_pki__build *b, const char **bc, const char **ku,
                       const char **eku)
{
    int rsa = EVP_PKEY_get_base_id(b->pubkey) == EVP_PKEY_RSA;

    *bc = "critical,CA:FALSE";
    *ku = rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
    *eku = b->client ? "clientAuth" : "serverAuth";
    switch (b->kind) {
    case TORII_PKI__ROOT_CA:
        *bc = "critical,CA:TRUE";
        *ku = "critical,digitalSignature,keyCertSign,cRLSign";
        *eku = NULL;
        return TORII_OK;
    case TORII_PKI__SUB_CA:
        *bc = "critical,CA:TRUE,pathlen:0";
        *ku = "critical,digitalSignature,keyCertSign,cRLSign";
        *eku = NULL;
        return TORII_OK;
    case TORII_PKI__KEYPAIR:
        *ku = "critical,digitalSignature";
        *eku = NULL;
        return TORII_OK;
    case TORII_PKI__LEAF:
        return TORII_OK;
    default:
        return TORII_EINVAL;
    }
}

static int pki_validity_check(const struct torii_pki__build *b, struct torii_errbuf *eb)
{
    if (b->duration_ms <= 0 || b->duration_ms > TORII_PKI__MAX_DURATION_MS || b->now_ms < 0) {
        return torii_errf(eb, TORII_EINVAL, "issue: bad validity");
    }
    return TORII_OK;
}

/* notBefore = now, notAfter = now + duration, never past the issuer's notAfter (the chain
 * would stop validating first). */
static int pki_validity(X509 *c, const struct torii_pki__build *b, struct torii_errbuf *eb)
{
    time_t t = (time_t)(b->now_ms / 1000);

    if (X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, &t) == NULL
        || X509_time_adj_ex(X509_getm_notAfter(c), (int)(b->duration_ms / TORII_PKI__DAY_MS),
                            (long)((b->duration_ms % TORII_PKI__DAY_MS) / 1000), &t)
               == NULL) {
        return torii_errbuf_ossl(eb, "issue: validity");
    }
    if (b->issuer != NULL
        && ASN1_TIME_compare(X509_get0_notAfter(c), X509_get0_notAfter(b->issuer)) > 0
        && X509_set1_notAfter(c, X509_get0_notAfter(b->issuer)) != 1) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* The extensions of the profile, the SANs and (when asked) the AIA. */
static int pki_extensions(X509 *c, X509V3_CTX *ctx, const struct torii_pki__build *b,
                          struct torii_errbuf *eb)
{
    struct {
        int nid;
        const char *value; /* NULL: not added */
    } ext[] = {
        {NID_basic_constraints, NULL},
        {NID_key_usage, NULL},
        {NID_ext_key_usage, NULL},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    int rc = pki_profile(b, &ext[0].value, &ext[1].value, &ext[2].value);

    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]) && rc == TORII_OK; i++) {
        if (ext[i].value != NULL) {
            rc = pki_add_ext(c, ctx, ext[i].nid, ext[i].value, eb);
        }
    }
    if (rc == TORII_OK && b->sans != NULL && sk_GENERAL_NAME_num(b->sans) > 0
        && X509_add1_ext_i2d(c, NID_subject_alt_name, (void *)(uintptr_t)b->sans, 0,
                             X509V3_ADD_DEFAULT)
               != 1) {
        rc = TORII_ENOMEM;
    }
    if (rc == TORII_OK && b->issuer != NULL && b->base_url != NULL && b->issuer_id != NULL) {
        rc = pki_add_aia(c, ctx, b->base_url, b->issuer_id, eb);
    }
    return rc;
}

/* Version, serial, validity, subject, issuer name and public key of c. */
static int pki_head(X509 *c, const struct torii_pki__build *b, struct torii_errbuf *eb)
{
    const X509_NAME *issuer_name =
        b->issuer != NULL ? X509_get_subject_name(b->issuer) : b->subject;
    int rc = TORII_OK;

    TORII_ENSURE(X509_set_version(c, X509_VERSION_3) == 1, TORII_ENOMEM);
    TORII_TRY(torii_pki__serial_random(c));
    TORII_TRY(pki_validity(c, b, eb));
    TORII_ENSURE(X509_set_subject_name(c, b->subject) == 1
                     && X509_set_issuer_name(c, issuer_name) == 1
                     && X509_set_pubkey(c, b->pubkey) == 1,
                 TORII_ENOMEM);
out:
    return rc;
}

int torii_pki__cert_build(const struct torii_pki__build *b, X509 **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *c = X509_new();
    X509V3_CTX ctx;
    const EVP_MD *md = b->md != NULL ? b->md : torii_pki__default_md(b->signer);

    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_TRY(pki_validity_check(b, eb));
    TORII_TRY(pki_head(c, b, eb));
    X509V3_set_ctx(&ctx, b->issuer != NULL ? b->issuer : c, c, NULL, NULL, 0);
    TORII_TRY(pki_extensions(c, &ctx, b, eb));
    TORII_ENSURE(X509_sign(c, b->signer, md) > 0, torii_errbuf_ossl(eb, "issue: sign"));
    *out = c;
    c = NULL;
out:
    X509_free(c);
    return rc;
}

/* ---- the entity around a new certificate ---- */

static int pki_set(json_t *e, const char *k, json_t *v_owned)
{
    if (v_owned == NULL) {
        return TORII_EINVAL;
    }
    return json_object_set_new(e, k, v_owned) == 0 ? TORII_OK : TORII_ENOMEM;
}

static int pki_is_ca_kind(enum torii_pki__kind kind)
{
    return kind == TORII_PKI__ROOT_CA || kind == TORII_PKI__SUB_CA;
}

int torii_pki__issue(struct torii_pki__build *b, int type, int bits, const struct torii_pki__ca *ca,
                     struct torii_pki__issued *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    EVP_PKEY *key = NULL;
    X509 *c = NULL;

    memset(out, 0, sizeof(*out));
    TORII_TRY(torii_pki__key_generate(type, bits, &key, eb));
    b->pubkey = key;
    b->issuer = ca != NULL ? ca->cert : NULL;
    b->signer = ca != NULL ? ca->key : key;
    TORII_TRY(torii_pki__cert_build(b, &c, eb));
    TORII_TRY(torii_pki__leaf_chain_pem(c, ca != NULL ? ca->chain : NULL, &out->chain_pem));
    TORII_TRY(torii_pki__key_pem(key, &out->key_pem));
out:
    if (rc != TORII_OK) {
        torii_pki__issued_clear(out);
    }
    b->pubkey = NULL;
    b->signer = NULL;
    X509_free(c);
    EVP_PKEY_free(key);
    return rc;
}

void torii_pki__issued_clear(struct torii_pki__issued *x)
{
    if (x->key_pem != NULL) {
        torii_secure_free(x->key_pem, strlen(x->key_pem));
    }
    free(x->chain_pem);
    memset(x, 0, sizeof(*x));
}

/* The subject of a query: its own, else CN=hosts[0] (*owned, for the caller to free). */
static int pki_query_subject(const struct torii_pki__query *q, const X509_NAME **subject,
                             X509_NAME **owned, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    *owned = NULL;
    if (q->subject != NULL) {
        *subject = q->subject;
        return TORII_OK;
    }
    TORII_ENSURE(
        q->first_host != NULL && strlen(q->first_host) <= TORII_PKI__CN_MAX,
        torii_errf(eb, TORII_EINVAL, "query: 'subject', 'name' or a short first host is required"));
    *owned = X509_NAME_new();
    TORII_ENSURE(*owned != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_NAME_add_entry_by_NID(*owned, NID_commonName, MBSTRING_UTF8,
                                            (const unsigned char *)q->first_host, -1, -1, 0)
                     == 1,
                 torii_errbuf_ossl(eb, "issue: subject CN"));
    *subject = *owned;
out:
    return rc;
}

/* metadata.csr: the query as Otoroshi echoes it, with the effective key and duration. */
static int pki_query_echo(const struct torii_pki__query *q, int type, int bits, int64_t duration_ms,
                          char **out)
{
    int rc = TORII_OK;

    TORII_ENSURE(
        json_object_set_new(
            q->echo, "key",
            json_pack("{s:s,s:i}", "algo", type == EVP_PKEY_RSA ? "rsa" : "ecdsa", "size", bits))
                == 0
            && json_object_set_new(q->echo, "duration", json_integer((json_int_t)duration_ms)) == 0,
        TORII_ENOMEM);
    *out = json_dumps(q->echo, JSON_COMPACT | JSON_PRESERVE_ORDER);
    TORII_ENSURE(*out != NULL, TORII_ENOMEM);
out:
    return rc;
}

/* id, chain, privateKey and caRef of an issued entity. */
static int pki_issued_fields(json_t *e, const char *id, const struct torii_pki__issued *is,
                             const struct torii_pki__ca *ca)
{
    int rc = pki_set(e, "id", json_string(id));

    if (rc == TORII_OK) {
        rc = pki_set(e, "chain", json_string(is->chain_pem));
    }
    if (rc == TORII_OK) {
        rc = pki_set(e, "privateKey", json_string(is->key_pem));
    }
    if (rc == TORII_OK) {
        rc = pki_set(e, "caRef", ca != NULL ? json_string(ca->id) : json_null());
    }
    return rc;
}

static int pki_issued_flags(json_t *e, int client, int keypair)
{
    int rc = pki_set(e, "client", json_boolean(client));

    return rc == TORII_OK ? pki_set(e, "keypair", json_boolean(keypair)) : rc;
}

/* The entity around an issued certificate (enriched). */
static int pki_issued_entity(const char *id, const struct torii_pki__issued *is,
                             const struct torii_pki__ca *ca, int client, int keypair,
                             const char *csr, int64_t now_ms, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *e = torii_cert_template();
    json_t *meta;

    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_TRY(pki_issued_fields(e, id, is, ca));
    TORII_TRY(pki_issued_flags(e, client, keypair));
    meta = json_object_get(e, "metadata");
    TORII_ENSURE(json_is_object(meta), TORII_ENOMEM);
    TORII_TRY(pki_set(meta, "csr", json_string(csr)));
    TORII_TRY(torii_cert_enrich(e, now_ms, eb));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    return rc;
}

/* The build description of a query: kind, defaults for key and duration, AIA. */
static int pki_query_build(const struct torii_pki__query *q, const struct torii_pki__ca *ca,
                           enum torii_pki__kind kind, const struct torii_pki_opts *o,
                           struct torii_pki__build *b, int *type, int *bits,
                           struct torii_errbuf *eb)
{
    memset(b, 0, sizeof(*b));
    *type = q->key_type;
    *bits = q->key_bits;
    if (*type == 0) {
        *type = EVP_PKEY_EC;
        *bits = pki_is_ca_kind(kind) ? 384 : 256;
    }
    if (q->include_aia && ca != NULL && o->base_url == NULL) {
        return torii_errf(eb, TORII_EINVAL,
                          "query: includeAIA needs a public base URL (not configured)");
    }
    b->sans = q->sans;
    b->kind = kind;
    b->client = q->client;
    b->now_ms = o->now_ms;
    b->duration_ms = q->duration_ms;
    if (b->duration_ms == 0) {
        b->duration_ms =
            (pki_is_ca_kind(kind) || kind == TORII_PKI__KEYPAIR ? 3650 : 365) * TORII_PKI__DAY_MS;
    }
    b->md = q->md;
    if (q->include_aia && ca != NULL) {
        b->base_url = o->base_url;
        b->issuer_id = ca->id;
    }
    return TORII_OK;
}

/* The id asked for in o (checked), else a new random one in id (33 bytes). */
static int pki_entity_id(const struct torii_pki_opts *o, char *id, struct torii_errbuf *eb)
{
    if (o->id == NULL) {
        return torii_rand_alnum(id, 32);
    }
    if (o->id[0] == '\0' || strlen(o->id) >= 256) {
        return torii_errf(eb, TORII_EINVAL, "issue: bad id");
    }
    return TORII_OK;
}

int torii_pki__issue_entity(const struct torii_pki__query *q, const struct torii_pki__ca *ca,
                            enum torii_pki__kind kind, const struct torii_pki_opts *o, json_t **out,
                            struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki_opts def = {0};
    struct torii_pki__issued is = {NULL, NULL};
    struct torii_pki__build b;
    const X509_NAME *subject = NULL;
    X509_NAME *subj = NULL;
    char *csr = NULL;
    char id[40];
    int type;
    int bits;

    if (o == NULL) {
        def.now_ms = torii_clock_now_ms();
        o = &def;
    }
    TORII_TRY(pki_entity_id(o, id, eb));
    TORII_TRY(pki_query_subject(q, &subject, &subj, eb));
    TORII_TRY(pki_query_build(q, ca, kind, o, &b, &type, &bits, eb));
    b.subject = subject;
    TORII_TRY(torii_pki__issue(&b, type, bits, ca, &is, eb));
    TORII_TRY(pki_query_echo(q, type, bits, b.duration_ms, &csr));
    TORII_TRY(pki_issued_entity(o->id != NULL ? o->id : id, &is, ca,
                                kind == TORII_PKI__LEAF && q->client, kind == TORII_PKI__KEYPAIR,
                                csr, o->now_ms, out, eb));
out:
    free(csr);
    torii_pki__issued_clear(&is);
    X509_NAME_free(subj);
    return rc;
}

/* ---- public issuing calls ---- */

int torii_pki_ca_create(const json_t *query, const struct torii_pki_opts *o, json_t **out,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;

    memset(&q, 0, sizeof(q));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(torii_pki__issue_entity(&q, NULL, TORII_PKI__ROOT_CA, o, out, eb));
out:
    torii_pki__query_clear(&q);
    return rc;
}

int torii_pki_subca_create(const json_t *ca_entity, const json_t *query,
                           const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;
    struct torii_pki__ca ca;

    memset(&q, 0, sizeof(q));
    memset(&ca, 0, sizeof(ca));
    TORII_TRY(torii_pki__ca_load(ca_entity, o != NULL ? o->kek : NULL, &ca, eb));
    /* pathLenConstraint 0 on the issuer forbids any CA below it (RFC 5280 4.2.1.9). */
    TORII_ENSURE(
        X509_get_pathlen(ca.cert) != 0,
        torii_errf(eb, TORII_EINVAL, "issuer '%s' has pathLen 0 and cannot sign a sub-CA", ca.id));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(torii_pki__issue_entity(&q, &ca, TORII_PKI__SUB_CA, o, out, eb));
out:
    torii_pki__query_clear(&q);
    torii_pki__ca_clear(&ca);
    return rc;
}

int torii_pki_cert_issue(const json_t *ca_entity, const json_t *query,
                         const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;
    struct torii_pki__ca ca;

    memset(&q, 0, sizeof(q));
    memset(&ca, 0, sizeof(ca));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    if (q.ca) {
        rc = torii_pki_subca_create(ca_entity, query, o, out, eb);
        goto out;
    }
    TORII_TRY(torii_pki__ca_load(ca_entity, o != NULL ? o->kek : NULL, &ca, eb));
    TORII_TRY(torii_pki__issue_entity(&q, &ca, TORII_PKI__LEAF, o, out, eb));
out:
    torii_pki__query_clear(&q);
    torii_pki__ca_clear(&ca);
    return rc;
}

int torii_pki_cert_selfsigned(const json_t *query, const struct torii_pki_opts *o, json_t **out,
                              struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;

    memset(&q, 0, sizeof(q));
    TORII_TRY(torii_pki__query_parse(query, &q, eb));
    TORII_TRY(
        torii_pki__issue_entity(&q, NULL, q.ca ? TORII_PKI__ROOT_CA : TORII_PKI__LEAF, o, out, eb));
out:
    torii_pki__query_clear(&q);
    return rc;
}

int torii_pki_keypair_create(const json_t *key_spec, const struct torii_pki_opts *o, json_t **out,
                             struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query q;
    unsigned char rnd[8];
    char hex[17];
    char cn[32];
    json_t *e = NULL;
    size_t i;

    memset(&q, 0, sizeof(q));
    q.sans = sk_GENERAL_NAME_new_null();
    q.echo = json_object();
    q.subject = X509_NAME_new();
    TORII_ENSURE(q.sans != NULL && q.echo != NULL && q.subject != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki__keyspec_parse(key_spec, &q.key_type, &q.key_bits, eb));
    TORII_TRY(torii_rand_bytes(rnd, sizeof(rnd)));
    for (i = 0; i < sizeof(rnd); i++) {
        (void)snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    (void)snprintf(cn, sizeof(cn), "keypair-%s", hex);
    TORII_ENSURE(X509_NAME_add_entry_by_NID(q.subject, NID_commonName, MBSTRING_UTF8,
                                            (const unsigned char *)cn, -1, -1, 0)
                     == 1,
                 TORII_ENOMEM);
    TORII_TRY(torii_pki__issue_entity(&q, NULL, TORII_PKI__KEYPAIR, o, &e, eb));
    TORII_TRY(pki_set(e, "name", json_sprintf("KeyPair - %s", hex)));
    TORII_TRY(pki_set(e, "description", json_sprintf("Key pair %s", hex)));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    torii_pki__query_clear(&q);
    return rc;
}
