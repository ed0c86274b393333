/* issue.c - issuing certificates from an Otoroshi GenCsrQuery (reference 3.1, 3.4): query
 * parsing, DN parsing, key generation, the X.509 profiles, and the entity built around a
 * new certificate.
 *
 * Fixed on purpose (reference 13): an unsupported key size is an error instead of a silent
 * P-256; only the digest of signatureAlg/digestAlg is used, so an RSA-named algorithm with
 * an EC key (Otoroshi's default) does not fail; caIssuers names the issuer, not the
 * certificate's own serial; client certificates keep client=true in the entity. */
#include <arpa/inet.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/clock.h"
#include "torii/pki.h"

#define PKI_DAY_MS       86400000LL
#define PKI_MAX_DURATION (100LL * 366 * PKI_DAY_MS)
#define PKI_CN_MAX       64 /* RFC 5280 ub-common-name */
#define PKI_DN_MAX       4096
#define PKI_HOSTS_MAX    1000

/* ---- small parsers ---- */

static int pki_dns_ok(const char *s)
{
    size_t len = strlen(s);
    size_t i;

    if (len == 0 || len > 253) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = isalnum(c) != 0;
        if (!(alnum || c == '-' || c == '.' || c == '_' || (c == '*' && i == 0))) {
            return 0;
        }
    }
    return 1;
}

static int pki_bool_field(const json_t *q, const char *k, int *out, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(q, k);

    if (v == NULL || json_is_null(v)) {
        *out = 0;
        return TORII_OK;
    }
    if (!json_is_boolean(v)) {
        return torii_errf(eb, TORII_EINVAL, "query: '%s' must be a boolean", k);
    }
    *out = json_is_true(v);
    return TORII_OK;
}

static int pki_md_parse(const char *s, const EVP_MD **out, struct torii_errbuf *eb)
{
    char up[64];
    size_t n = 0;
    size_t i;

    for (i = 0; s[i] != '\0' && n + 1 < sizeof(up); i++) {
        if (s[i] != '-' && s[i] != '_') {
            up[n++] = (char)toupper((unsigned char)s[i]);
        }
    }
    up[n] = '\0';
    if (strncmp(up, "SHA512", 6) == 0) {
        *out = EVP_sha512();
    } else if (strncmp(up, "SHA384", 6) == 0) {
        *out = EVP_sha384();
    } else if (strncmp(up, "SHA256", 6) == 0) {
        *out = EVP_sha256();
    } else {
        return torii_errf(eb, TORII_EINVAL,
                          "query: unsupported signature/digest algorithm '%.40s' (SHA-256, "
                          "SHA-384 or SHA-512)",
                          s);
    }
    return TORII_OK;
}

static int pki_key_check(int type, int bits, struct torii_errbuf *eb)
{
    if (type == EVP_PKEY_RSA && (bits == 2048 || bits == 3072 || bits == 4096)) {
        return TORII_OK;
    }
    if (type == EVP_PKEY_EC && (bits == 256 || bits == 384 || bits == 521)) {
        return TORII_OK;
    }
    return torii_errf(eb, TORII_EINVAL,
                      "query: unsupported %s key size %d (RSA 2048/3072/4096, ECDSA "
                      "256/384/521)",
                      type == EVP_PKEY_RSA ? "RSA" : "ECDSA", bits);
}

static int pki_algo_parse(const json_t *algo, const json_t *size, int *type, int *bits,
                          struct torii_errbuf *eb)
{
    const char *a;

    if (!json_is_string(algo)) {
        return torii_errf(eb, TORII_EINVAL, "query: key algorithm must be a string");
    }
    a = json_string_value(algo);
    if (strcasecmp(a, "rsa") == 0) {
        *type = EVP_PKEY_RSA;
        *bits = 2048;
    } else if (strcasecmp(a, "ecdsa") == 0 || strcasecmp(a, "ec") == 0) {
        *type = EVP_PKEY_EC;
        *bits = 256;
    } else {
        return torii_errf(eb, TORII_EINVAL,
                          "query: unsupported key algorithm '%.32s' (rsa or ecdsa)", a);
    }
    if (size != NULL && !json_is_null(size)) {
        if (!json_is_integer(size)) {
            return torii_errf(eb, TORII_EINVAL, "query: key size must be an integer");
        }
        if (json_integer_value(size) < 0 || json_integer_value(size) > 65536) {
            return torii_errf(eb, TORII_EINVAL, "query: unsupported key size %lld",
                              (long long)json_integer_value(size));
        }
        *bits = (int)json_integer_value(size);
    }
    return pki_key_check(*type, *bits, eb);
}

int torii_pki__keyspec_parse(const json_t *q, int *type, int *bits, struct torii_errbuf *eb)
{
    const json_t *key;

    *type = 0;
    *bits = 0;
    if (q == NULL || json_is_null(q)) {
        return TORII_OK;
    }
    if (!json_is_object(q)) {
        return torii_errf(eb, TORII_EINVAL, "query: must be a JSON object");
    }
    key = json_object_get(q, "key");
    if (key != NULL && !json_is_null(key)) {
        if (!json_is_object(key)) {
            return torii_errf(eb, TORII_EINVAL, "query: 'key' must be an object {algo, size}");
        }
        return pki_algo_parse(json_object_get(key, "algo"), json_object_get(key, "size"), type,
                              bits, eb);
    }
    /* POST /api/pki/keys sends {algo, size} directly; other bodies use keyType/keySize. */
    if (json_object_get(q, "algo") != NULL) {
        return pki_algo_parse(json_object_get(q, "algo"), json_object_get(q, "size"), type, bits,
                              eb);
    }
    if (json_object_get(q, "keyType") != NULL) {
        return pki_algo_parse(json_object_get(q, "keyType"), json_object_get(q, "keySize"), type,
                              bits, eb);
    }
    return TORII_OK;
}

/* Attribute names users write in upper case that OpenSSL knows under another spelling. */
static const char *pki_attr_alias(const char *up)
{
    static const char *const map[][2] = {
        {"E", "emailAddress"},
        {"EMAIL", "emailAddress"},
        {"EMAILADDRESS", "emailAddress"},
        {"SERIALNUMBER", "serialNumber"},
        {"STREET", "street"},
        {"SURNAME", "SN"},
        {"GIVENNAME", "GN"},
        {"T", "title"},
        {"TITLE", "title"},
        {"S", "ST"},
    };
    size_t i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i][0], up) == 0) {
            return map[i][1];
        }
    }
    return up;
}

static char *pki_trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
        *--e = '\0';
    }
    return s;
}

/* One "K=V" with the value already unescaped. */
static int pki_dn_add(X509_NAME *name, char *key, const char *value, struct torii_errbuf *eb)
{
    char up[64];
    size_t i;
    int nid;

    key = pki_trim(key);
    if (key[0] == '\0' || strlen(key) >= sizeof(up)) {
        return torii_errf(eb, TORII_EINVAL, "subject: bad attribute name");
    }
    if (value[0] == '\0') {
        return torii_errf(eb, TORII_EINVAL, "subject: attribute '%s' has an empty value", key);
    }
    nid = OBJ_txt2nid(key);
    if (nid == NID_undef) {
        for (i = 0; key[i] != '\0'; i++) {
            up[i] = (char)toupper((unsigned char)key[i]);
        }
        up[i] = '\0';
        nid = OBJ_txt2nid(pki_attr_alias(up));
    }
    if (nid == NID_undef) {
        return torii_errf(eb, TORII_EINVAL, "subject: unknown attribute '%s'", key);
    }
    if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, (const unsigned char *)value, -1, -1,
                                   0)
        != 1) {
        (void)torii_errbuf_ossl(eb, "subject: bad value");
        return torii_errf(eb, TORII_EINVAL, "subject: bad value for attribute '%s'", key);
    }
    return TORII_OK;
}

int torii_pki__dn_parse(const char *s, X509_NAME **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509_NAME *name = X509_NAME_new();
    char *buf = NULL;
    char *val = NULL;
    size_t len;
    size_t i;
    size_t start = 0;

    TORII_ENSURE(name != NULL, TORII_ENOMEM);
    len = strlen(s);
    TORII_ENSURE(len > 0 && len <= PKI_DN_MAX,
                 torii_errf(eb, TORII_EINVAL, "subject: empty or longer than %d", PKI_DN_MAX));
    buf = torii_xstrndup(s, len);
    val = torii_xmalloc(len + 1);
    /* RFC 4514: ',' separates RDNs; '\' escapes the next character. */
    for (i = 0; i <= len; i++) {
        if (i < len && buf[i] == '\\') {
            i++;
            continue;
        }
        if (i == len || buf[i] == ',') {
            char *rdn = buf + start;
            char *eq;
            size_t j;
            size_t n = 0;
            char *v;

            buf[i] = '\0';
            eq = strchr(rdn, '=');
            TORII_ENSURE(eq != NULL, torii_errf(eb, TORII_EINVAL,
                                                "subject: '%.40s' is not ATTRIBUTE=value", rdn));
            *eq = '\0';
            v = pki_trim(eq + 1);
            for (j = 0; v[j] != '\0'; j++) {
                if (v[j] == '\\' && v[j + 1] != '\0') {
                    j++;
                }
                val[n++] = v[j];
            }
            val[n] = '\0';
            TORII_TRY(pki_dn_add(name, rdn, val, eb));
            start = i + 1;
        }
    }
    *out = name;
    name = NULL;
out:
    free(buf);
    free(val);
    X509_NAME_free(name);
    return rc;
}

static int pki_hosts_parse(const json_t *hosts, struct torii_pki__query *q, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    GENERAL_NAME *g = NULL;
    size_t i;
    const json_t *h;

    if (hosts == NULL || json_is_null(hosts)) {
        return TORII_OK;
    }
    TORII_ENSURE(json_is_array(hosts) && json_array_size(hosts) <= PKI_HOSTS_MAX,
                 torii_errf(eb, TORII_EINVAL, "query: 'hosts' must be an array of names"));
    json_array_foreach (hosts, i, h) {
        const char *s = json_string_value(h);
        unsigned char bin[16];

        TORII_ENSURE(s != NULL,
                     torii_errf(eb, TORII_EINVAL, "query: hosts[%zu] is not a string", i));
        if (inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1) {
            g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_IPADD, s, 0);
        } else {
            TORII_ENSURE(
                pki_dns_ok(s),
                torii_errf(eb, TORII_EINVAL, "query: host '%.64s' is not a DNS name or IP", s));
            g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, s, 0);
        }
        TORII_ENSURE(g != NULL, torii_errbuf_ossl(eb, "query: host"));
        TORII_ENSURE(sk_GENERAL_NAME_push(q->sans, g) > 0, TORII_ENOMEM);
        g = NULL;
        if (q->first_host == NULL) {
            q->first_host = torii_xstrdup(s);
        }
    }
out:
    GENERAL_NAME_free(g);
    return rc;
}

/* The `name` map as "K=V, K=V" (reference: subject built from name when subject absent). */
static int pki_name_map(const json_t *name, X509_NAME **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509_NAME *n = X509_NAME_new();
    const char *k;
    json_t *v;
    char key[64];

    TORII_ENSURE(n != NULL, TORII_ENOMEM);
    json_object_foreach ((json_t *)(uintptr_t)name, k, v) {
        TORII_ENSURE(json_is_string(v),
                     torii_errf(eb, TORII_EINVAL, "query: name.%.32s must be a string", k));
        TORII_ENSURE(strlen(k) < sizeof(key),
                     torii_errf(eb, TORII_EINVAL, "query: name key too long"));
        (void)snprintf(key, sizeof(key), "%s", k);
        TORII_TRY(pki_dn_add(n, key, json_string_value(v), eb));
    }
    if (X509_NAME_entry_count(n) == 0) {
        X509_NAME_free(n);
        n = NULL;
    }
    *out = n;
    n = NULL;
out:
    X509_NAME_free(n);
    return rc;
}

int torii_pki__query_parse(const json_t *q, struct torii_pki__query *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki__query r;
    const json_t *v;
    const char *sig = NULL;

    memset(&r, 0, sizeof(r));
    r.sans = sk_GENERAL_NAME_new_null();
    TORII_ENSURE(r.sans != NULL, TORII_ENOMEM);
    if (q == NULL || json_is_null(q)) {
        q = NULL;
    } else {
        TORII_ENSURE(json_is_object(q),
                     torii_errf(eb, TORII_EINVAL, "query: must be a JSON object"));
    }
    TORII_TRY(torii_pki__keyspec_parse(q, &r.key_type, &r.key_bits, eb));
    TORII_TRY(pki_hosts_parse(json_object_get(q, "hosts"), &r, eb));
    v = json_object_get(q, "subject");
    if (v != NULL && !json_is_null(v)) {
        TORII_ENSURE(json_is_string(v),
                     torii_errf(eb, TORII_EINVAL, "query: 'subject' must be a string"));
        if (json_string_length(v) > 0) {
            TORII_TRY(torii_pki__dn_parse(json_string_value(v), &r.subject, eb));
        }
    }
    v = json_object_get(q, "name");
    if (r.subject == NULL && v != NULL && !json_is_null(v)) {
        TORII_ENSURE(json_is_object(v),
                     torii_errf(eb, TORII_EINVAL, "query: 'name' must be an object"));
        TORII_TRY(pki_name_map(v, &r.subject, eb));
    }
    TORII_TRY(pki_bool_field(q, "client", &r.client, eb));
    TORII_TRY(pki_bool_field(q, "ca", &r.ca, eb));
    TORII_TRY(pki_bool_field(q, "includeAIA", &r.include_aia, eb));
    v = json_object_get(q, "duration");
    if (v != NULL && !json_is_null(v)) {
        double d = json_number_value(v);
        TORII_ENSURE(json_is_number(v) && d >= 1000.0 && d <= (double)PKI_MAX_DURATION,
                     torii_errf(eb, TORII_EINVAL,
                                "query: 'duration' must be a number of ms (1 s to 100 years)"));
        r.duration_ms = (int64_t)d;
    }
    v = json_object_get(q, "signatureAlg");
    if (v != NULL && !json_is_null(v)) {
        TORII_ENSURE(json_is_string(v),
                     torii_errf(eb, TORII_EINVAL, "query: 'signatureAlg' must be a string"));
        sig = json_string_value(v);
    }
    v = json_object_get(q, "digestAlg");
    if (v != NULL && !json_is_null(v)) {
        TORII_ENSURE(json_is_string(v),
                     torii_errf(eb, TORII_EINVAL, "query: 'digestAlg' must be a string"));
        if (sig == NULL) {
            sig = json_string_value(v);
        }
    }
    if (sig != NULL) {
        TORII_TRY(pki_md_parse(sig, &r.md, eb));
    }
    r.echo = json_object();
    TORII_ENSURE(r.echo != NULL, TORII_ENOMEM);
    {
        static const char *const keep[] = {"hosts",     "key",       "name",     "subject",
                                           "client",    "ca",        "duration", "signatureAlg",
                                           "digestAlg", "includeAIA"};
        size_t i;
        for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            v = json_object_get(q, keep[i]);
            if (v != NULL) {
                TORII_ENSURE(json_object_set_new(r.echo, keep[i], json_deep_copy(v)) == 0,
                             TORII_ENOMEM);
            }
        }
    }
    *out = r;
    memset(&r, 0, sizeof(r));
out:
    torii_pki__query_clear(&r);
    return rc;
}

void torii_pki__query_clear(struct torii_pki__query *q)
{
    if (q == NULL) {
        return;
    }
    X509_NAME_free(q->subject);
    GENERAL_NAMES_free(q->sans);
    free(q->first_host);
    json_decref(q->echo);
    memset(q, 0, sizeof(*q));
}

int torii_pki__key_generate(int type, int bits, EVP_PKEY **out, struct torii_errbuf *eb)
{
    EVP_PKEY *k = NULL;
    int rc = pki_key_check(type, bits, eb);

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

int torii_pki__cert_build(const struct torii_pki__build *b, X509 **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *c = X509_new();
    X509V3_CTX ctx;
    time_t t = (time_t)(b->now_ms / 1000);
    const EVP_MD *md = b->md != NULL ? b->md : torii_pki__default_md(b->signer);
    int rsa = EVP_PKEY_get_base_id(b->pubkey) == EVP_PKEY_RSA;
    const char *bc = "critical,CA:FALSE";
    const char *ku =
        rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
    const char *eku = b->client ? "clientAuth" : "serverAuth";

    TORII_ENSURE(c != NULL, TORII_ENOMEM);
    TORII_ENSURE(b->duration_ms > 0 && b->duration_ms <= PKI_MAX_DURATION && b->now_ms >= 0,
                 torii_errf(eb, TORII_EINVAL, "issue: bad validity"));
    TORII_ENSURE(X509_set_version(c, X509_VERSION_3) == 1, TORII_ENOMEM);
    TORII_TRY(torii_pki__serial_random(c));
    TORII_ENSURE(X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, &t) != NULL
                     && X509_time_adj_ex(X509_getm_notAfter(c), (int)(b->duration_ms / PKI_DAY_MS),
                                         (long)((b->duration_ms % PKI_DAY_MS) / 1000), &t)
                            != NULL,
                 torii_errbuf_ossl(eb, "issue: validity"));
    /* A certificate cannot outlive its issuer (the chain would stop validating first). */
    if (b->issuer != NULL
        && ASN1_TIME_compare(X509_get0_notAfter(c), X509_get0_notAfter(b->issuer)) > 0) {
        TORII_ENSURE(X509_set1_notAfter(c, X509_get0_notAfter(b->issuer)) == 1, TORII_ENOMEM);
    }
    TORII_ENSURE(X509_set_subject_name(c, b->subject) == 1
                     && X509_set_issuer_name(c, b->issuer != NULL ? X509_get_subject_name(b->issuer)
                                                                  : b->subject)
                            == 1
                     && X509_set_pubkey(c, b->pubkey) == 1,
                 TORII_ENOMEM);
    X509V3_set_ctx(&ctx, b->issuer != NULL ? b->issuer : c, c, NULL, NULL, 0);
    switch (b->kind) {
    case TORII_PKI__ROOT_CA:
        bc = "critical,CA:TRUE";
        ku = "critical,digitalSignature,keyCertSign,cRLSign";
        eku = NULL;
        break;
    case TORII_PKI__SUB_CA:
        bc = "critical,CA:TRUE,pathlen:0";
        ku = "critical,digitalSignature,keyCertSign,cRLSign";
        eku = NULL;
        break;
    case TORII_PKI__KEYPAIR:
        ku = "critical,digitalSignature";
        eku = NULL;
        break;
    case TORII_PKI__LEAF:
        break;
    default:
        rc = TORII_EINVAL;
        goto out;
    }
    TORII_TRY(pki_add_ext(c, &ctx, NID_basic_constraints, bc, eb));
    TORII_TRY(pki_add_ext(c, &ctx, NID_key_usage, ku, eb));
    if (eku != NULL) {
        TORII_TRY(pki_add_ext(c, &ctx, NID_ext_key_usage, eku, eb));
    }
    TORII_TRY(pki_add_ext(c, &ctx, NID_subject_key_identifier, "hash", eb));
    TORII_TRY(pki_add_ext(c, &ctx, NID_authority_key_identifier, "keyid:always", eb));
    if (b->sans != NULL && sk_GENERAL_NAME_num(b->sans) > 0) {
        TORII_ENSURE(X509_add1_ext_i2d(c, NID_subject_alt_name, (void *)(uintptr_t)b->sans, 0,
                                       X509V3_ADD_DEFAULT)
                         == 1,
                     TORII_ENOMEM);
    }
    if (b->issuer != NULL && b->base_url != NULL && b->issuer_id != NULL) {
        TORII_TRY(pki_add_aia(c, &ctx, b->base_url, b->issuer_id, eb));
    }
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

int torii_pki__issue_entity(const struct torii_pki__query *q, const struct torii_pki__ca *ca,
                            enum torii_pki__kind kind, const struct torii_pki_opts *o, json_t **out,
                            struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_pki_opts def = {0, NULL, NULL};
    struct torii_pki__build b;
    EVP_PKEY *key = NULL;
    X509 *c = NULL;
    X509_NAME *subj = NULL;
    STACK_OF(X509) *chain = NULL;
    char *chain_pem = NULL;
    char *key_pem = NULL;
    char *csr = NULL;
    json_t *e = NULL;
    json_t *meta;
    char id[40];
    int type = q->key_type;
    int bits = q->key_bits;
    int i;

    if (o == NULL) {
        def.now_ms = torii_clock_now_ms();
        o = &def;
    }
    if (type == 0) {
        type = EVP_PKEY_EC;
        bits = pki_is_ca_kind(kind) ? 384 : 256;
    }
    if (o->id != NULL) {
        TORII_ENSURE(o->id[0] != '\0' && strlen(o->id) < 256,
                     torii_errf(eb, TORII_EINVAL, "issue: bad id"));
    } else {
        TORII_TRY(torii_rand_alnum(id, 32));
    }
    if (q->subject == NULL) {
        TORII_ENSURE(q->first_host != NULL && strlen(q->first_host) <= PKI_CN_MAX,
                     torii_errf(eb, TORII_EINVAL,
                                "query: 'subject', 'name' or a short first host is required"));
        subj = X509_NAME_new();
        TORII_ENSURE(subj != NULL, TORII_ENOMEM);
        TORII_ENSURE(X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                (const unsigned char *)q->first_host, -1, -1, 0)
                         == 1,
                     torii_errbuf_ossl(eb, "issue: subject CN"));
    }
    if (q->include_aia && ca != NULL) {
        TORII_ENSURE(o->base_url != NULL,
                     torii_errf(eb, TORII_EINVAL,
                                "query: includeAIA needs a public base URL (not configured)"));
    }
    TORII_TRY(torii_pki__key_generate(type, bits, &key, eb));

    memset(&b, 0, sizeof(b));
    b.subject = q->subject != NULL ? q->subject : subj;
    b.pubkey = key;
    b.sans = q->sans;
    b.kind = kind;
    b.client = q->client;
    b.now_ms = o->now_ms;
    b.duration_ms = q->duration_ms;
    if (b.duration_ms == 0) {
        b.duration_ms =
            (pki_is_ca_kind(kind) || kind == TORII_PKI__KEYPAIR ? 3650 : 365) * PKI_DAY_MS;
    }
    b.issuer = ca != NULL ? ca->cert : NULL;
    b.signer = ca != NULL ? ca->key : key;
    b.md = q->md;
    if (q->include_aia && ca != NULL) {
        b.base_url = o->base_url;
        b.issuer_id = ca->id;
    }
    TORII_TRY(torii_pki__cert_build(&b, &c, eb));

    chain = sk_X509_new_null();
    TORII_ENSURE(chain != NULL && sk_X509_push(chain, c) > 0, TORII_ENOMEM);
    c = NULL;
    for (i = 0; ca != NULL && i < sk_X509_num(ca->chain); i++) {
        X509 *x = sk_X509_value(ca->chain, i);
        TORII_ENSURE(X509_up_ref(x) == 1, TORII_ENOMEM);
        if (sk_X509_push(chain, x) <= 0) {
            X509_free(x);
            rc = TORII_ENOMEM;
            goto out;
        }
    }
    TORII_TRY(torii_pki__chain_pem(chain, &chain_pem));
    TORII_TRY(torii_pki__key_pem(key, &key_pem));

    /* metadata.csr: the query as Otoroshi echoes it, with the effective key and duration. */
    TORII_ENSURE(
        json_object_set_new(
            q->echo, "key",
            json_pack("{s:s,s:i}", "algo", type == EVP_PKEY_RSA ? "rsa" : "ecdsa", "size", bits))
                == 0
            && json_object_set_new(q->echo, "duration", json_integer((json_int_t)b.duration_ms))
                   == 0,
        TORII_ENOMEM);
    csr = json_dumps(q->echo, JSON_COMPACT | JSON_PRESERVE_ORDER);
    TORII_ENSURE(csr != NULL, TORII_ENOMEM);

    e = torii_cert_template();
    TORII_ENSURE(e != NULL, TORII_ENOMEM);
    TORII_TRY(pki_set(e, "id", json_string(o->id != NULL ? o->id : id)));
    TORII_TRY(pki_set(e, "chain", json_string(chain_pem)));
    TORII_TRY(pki_set(e, "privateKey", json_string(key_pem)));
    TORII_TRY(pki_set(e, "caRef", ca != NULL ? json_string(ca->id) : json_null()));
    TORII_TRY(pki_set(e, "client", json_boolean(kind == TORII_PKI__LEAF && q->client)));
    TORII_TRY(pki_set(e, "keypair", json_boolean(kind == TORII_PKI__KEYPAIR)));
    meta = json_object_get(e, "metadata");
    TORII_ENSURE(json_is_object(meta), TORII_ENOMEM);
    TORII_TRY(pki_set(meta, "csr", json_string(csr)));
    TORII_TRY(torii_cert_enrich(e, o->now_ms, eb));
    *out = e;
    e = NULL;
out:
    json_decref(e);
    free(csr);
    if (key_pem != NULL) {
        torii_secure_free(key_pem, strlen(key_pem));
    }
    free(chain_pem);
    sk_X509_pop_free(chain, X509_free);
    X509_free(c);
    X509_NAME_free(subj);
    EVP_PKEY_free(key);
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
    TORII_TRY(torii_pki__ca_load(ca_entity, &ca, eb));
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
