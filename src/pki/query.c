/* query.c - parsing an Otoroshi GenCsrQuery (reference 3.1): key spec, digest, hosts
 * (DNS names and IPs), subject DN string or name map, flags and duration; and the one check
 * of a DNS name torii puts in a certificate.
 *
 * Fixed on purpose (reference 13): an unsupported key size is an error instead of a silent
 * P-256; only the digest of signatureAlg/digestAlg is used, so an RSA-named algorithm with
 * an EC key (Otoroshi's default) does not fail. */
#include <arpa/inet.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

#define PKI_DN_MAX    4096
#define PKI_HOSTS_MAX 1000

/* ---- hosts ---- */

int torii_pki__dns_name_ok(const char *s)
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

int torii_pki__san_add(GENERAL_NAMES *sans, const char *host, const char *what,
                       struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    GENERAL_NAME *g = NULL;
    unsigned char bin[16];

    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
        g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_IPADD, host, 0);
    } else {
        TORII_ENSURE(
            torii_pki__dns_name_ok(host),
            torii_errf(eb, TORII_EINVAL, "%s '%.64s' is not a DNS name or IP", what, host));
        g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, host, 0);
    }
    TORII_ENSURE(g != NULL, torii_errbuf_ossl(eb, what));
    TORII_ENSURE(sk_GENERAL_NAME_push(sans, g) > 0, TORII_ENOMEM);
    g = NULL;
out:
    GENERAL_NAME_free(g);
    return rc;
}

/* ---- small parsers ---- */

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

int torii_pki__key_check(int type, int bits, struct torii_errbuf *eb)
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
    return torii_pki__key_check(*type, *bits, eb);
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

/* One "ATTRIBUTE=value" RDN (rdn is cut in place; val: scratch of strlen(rdn) + 1 bytes for
 * the unescaped value) added to name. */
static int pki_dn_rdn(X509_NAME *name, char *rdn, char *val, struct torii_errbuf *eb)
{
    char *eq = strchr(rdn, '=');
    const char *v;
    size_t n = 0;

    if (eq == NULL) {
        return torii_errf(eb, TORII_EINVAL, "subject: '%.40s' is not ATTRIBUTE=value", rdn);
    }
    *eq = '\0';
    v = pki_trim(eq + 1);
    for (size_t j = 0; v[j] != '\0'; j++) {
        if (v[j] == '\\' && v[j + 1] != '\0') {
            j++;
        }
        val[n++] = v[j];
    }
    val[n] = '\0';
    return pki_dn_add(name, rdn, val, eb);
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
            buf[i] = '\0';
            TORII_TRY(pki_dn_rdn(name, buf + start, val, eb));
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
    size_t i;
    const json_t *h;

    if (hosts == NULL || json_is_null(hosts)) {
        return TORII_OK;
    }
    TORII_ENSURE(json_is_array(hosts) && json_array_size(hosts) <= PKI_HOSTS_MAX,
                 torii_errf(eb, TORII_EINVAL, "query: 'hosts' must be an array of names"));
    json_array_foreach (hosts, i, h) {
        const char *s = json_string_value(h);

        TORII_ENSURE(s != NULL,
                     torii_errf(eb, TORII_EINVAL, "query: hosts[%zu] is not a string", i));
        TORII_TRY(torii_pki__san_add(q->sans, s, "query: host", eb));
        if (q->first_host == NULL) {
            q->first_host = torii_xstrdup(s);
        }
    }
out:
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

static int pki_query_key(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    return torii_pki__keyspec_parse(q, &r->key_type, &r->key_bits, eb);
}

static int pki_query_hosts(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    return pki_hosts_parse(json_object_get(q, "hosts"), r, eb);
}

/* "subject": a DN string (empty: none). */
static int pki_query_dn(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(q, "subject");

    if (v == NULL || json_is_null(v)) {
        return TORII_OK;
    }
    if (!json_is_string(v)) {
        return torii_errf(eb, TORII_EINVAL, "query: 'subject' must be a string");
    }
    if (json_string_length(v) == 0) {
        return TORII_OK;
    }
    return torii_pki__dn_parse(json_string_value(v), &r->subject, eb);
}

/* "name" (an object of attributes), when there is no "subject". */
static int pki_query_name(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(q, "name");

    if (r->subject != NULL || v == NULL || json_is_null(v)) {
        return TORII_OK;
    }
    if (!json_is_object(v)) {
        return torii_errf(eb, TORII_EINVAL, "query: 'name' must be an object");
    }
    return pki_name_map(v, &r->subject, eb);
}

static int pki_query_flags(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    int rc = pki_bool_field(q, "client", &r->client, eb);

    if (rc == TORII_OK) {
        rc = pki_bool_field(q, "ca", &r->ca, eb);
    }
    if (rc == TORII_OK) {
        rc = pki_bool_field(q, "includeAIA", &r->include_aia, eb);
    }
    return rc;
}

static int pki_query_duration(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(q, "duration");
    double d;

    if (v == NULL || json_is_null(v)) {
        return TORII_OK;
    }
    d = json_number_value(v);
    if (!json_is_number(v) || d < 1000.0 || d > (double)TORII_PKI__MAX_DURATION_MS) {
        return torii_errf(eb, TORII_EINVAL,
                          "query: 'duration' must be a number of ms (1 s to 100 years)");
    }
    r->duration_ms = (int64_t)d;
    return TORII_OK;
}

/* A string member or null/absent (*out NULL); anything else is refused. */
static int pki_query_str(const json_t *q, const char *key, const char **out,
                         struct torii_errbuf *eb)
{
    const json_t *v = json_object_get(q, key);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        return TORII_OK;
    }
    if (!json_is_string(v)) {
        return torii_errf(eb, TORII_EINVAL, "query: '%s' must be a string", key);
    }
    *out = json_string_value(v);
    return TORII_OK;
}

/* signatureAlg, else digestAlg: the digest to sign with. */
static int pki_query_md(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    const char *sig = NULL;
    const char *digest = NULL;
    int rc = pki_query_str(q, "signatureAlg", &sig, eb);

    if (rc == TORII_OK) {
        rc = pki_query_str(q, "digestAlg", &digest, eb);
    }
    if (rc == TORII_OK && sig == NULL) {
        sig = digest;
    }
    if (rc == TORII_OK && sig != NULL) {
        rc = pki_md_parse(sig, &r->md, eb);
    }
    return rc;
}

/* The query members as given, for metadata.csr. */
static int pki_query_echo_of(const json_t *q, struct torii_pki__query *r, struct torii_errbuf *eb)
{
    static const char *const keep[] = {"hosts",     "key",       "name",     "subject",
                                       "client",    "ca",        "duration", "signatureAlg",
                                       "digestAlg", "includeAIA"};

    (void)eb;
    r->echo = json_object();
    if (r->echo == NULL) {
        return TORII_ENOMEM;
    }
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const json_t *v = json_object_get(q, keep[i]);
        if (v != NULL && json_object_set_new(r->echo, keep[i], json_deep_copy(v)) != 0) {
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

int torii_pki__query_parse(const json_t *q, struct torii_pki__query *out, struct torii_errbuf *eb)
{
    static int (*const steps[])(const json_t *q, struct torii_pki__query *r,
                                struct torii_errbuf *eb) = {
        pki_query_key,   pki_query_hosts,    pki_query_dn, pki_query_name,
        pki_query_flags, pki_query_duration, pki_query_md, pki_query_echo_of,
    };
    int rc = TORII_OK;
    struct torii_pki__query r;

    memset(&r, 0, sizeof(r));
    r.sans = sk_GENERAL_NAME_new_null();
    TORII_ENSURE(r.sans != NULL, TORII_ENOMEM);
    if (q == NULL || json_is_null(q)) {
        q = NULL;
    } else {
        TORII_ENSURE(json_is_object(q),
                     torii_errf(eb, TORII_EINVAL, "query: must be a JSON object"));
    }
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == TORII_OK; i++) {
        rc = steps[i](q, &r, eb);
    }
    TORII_TRY(rc);
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
