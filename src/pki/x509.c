/* x509.c - lenient PEM location, key loading and small X.509 helpers for the pki module.
 *
 * Why our own PEM locator: Otoroshi finds certificate blocks with a lenient, case-insensitive
 * regex and decodes the base64 MIME-style, so stored entities may carry surrounding text,
 * CRLF line ends or indented lines that OpenSSL's PEM reader rejects. We accept the same
 * inputs, then re-emit clean PEM. */
#include <arpa/inet.h>

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"

/* A chain longer than this is not a certificate chain anyone serves. */
#define PKI_CHAIN_PARSE_MAX 64

/* tolower as a function: glibc's macro form counts as several branches per use. */
static int pki_lower(char c)
{
    return tolower((unsigned char)c);
}

/* Case-insensitive strstr over a NUL-terminated haystack. */
static const char *pki_find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay != '\0'; hay++) {
        size_t i = 0;
        while (i < n && hay[i] != '\0' && pki_lower(hay[i]) == pki_lower(needle[i])) {
            i++;
        }
        if (i == n) {
            return hay;
        }
    }
    return NULL;
}

/* Case-insensitive search inside [p, p+len). */
static int pki_contains_ci(const char *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    size_t i;

    for (i = 0; i + n <= len; i++) {
        size_t j = 0;
        while (j < n && pki_lower(p[i + j]) == pki_lower(needle[j])) {
            j++;
        }
        if (j == n) {
            return 1;
        }
    }
    return 0;
}

/* PEM chain parses since start (metric torii_pki_chain_parses_total): the cost the one-parse
 * write path is measured by. */
uint64_t torii_pki_chain_parse_count(void)
{
    return (uint64_t)torii_metrics_get(TORII_METRIC_CHAIN_PARSE);
}

/* The next CERTIFICATE block from *p (other blocks skipped): *body is where its base64
 * starts, *end its END line (NULL: none), *p moves past its header. 0 when there is none. */
static int pki_cert_block(const char **p, const char **body, const char **end)
{
    for (;;) {
        const char *begin = pki_find_ci(*p, "-----BEGIN");
        const char *label = begin != NULL ? begin + 10 : NULL;
        const char *hdr_end = label != NULL ? strstr(label, "-----") : NULL;
        size_t n;

        if (hdr_end == NULL) {
            return 0;
        }
        *p = hdr_end + 5;
        n = (size_t)(hdr_end - label);
        if (pki_contains_ci(label, n, "CERTIFICATE") && !pki_contains_ci(label, n, "REQUEST")) {
            *body = hdr_end + 5;
            *end = pki_find_ci(*body, "-----END");
            return 1;
        }
    }
}

/* Certificate #idx (from 0) of a chain: the base64 in [body, end) decoded and parsed. */
static int pki_cert_decode(const char *body, const char *end, int lazy, int idx, X509 **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    unsigned char *der = NULL;
    const unsigned char *dp;
    size_t n = 0;
    char what[64];

    TORII_ENSURE(end != NULL,
                 torii_errf(eb, TORII_EINVAL, "chain: certificate #%d has no END line", idx + 1));
    TORII_ENSURE(
        idx < PKI_CHAIN_PARSE_MAX,
        torii_errf(eb, TORII_EINVAL, "chain: more than %d certificates", PKI_CHAIN_PARSE_MAX));
    TORII_ENSURE(
        torii_b64_decode_mime(body, (size_t)(end - body), &der, &n) == TORII_OK && n > 0
            && n <= LONG_MAX,
        torii_errf(eb, TORII_EINVAL, "chain: certificate #%d is not valid base64", idx + 1));
    dp = der;
    *out = lazy ? torii_pki__x509_lazy_d2i(&dp, (long)n) : d2i_X509(NULL, &dp, (long)n);
    if (*out == NULL || dp != der + n) {
        X509_free(*out);
        *out = NULL;
        (void)snprintf(what, sizeof(what), "chain: certificate #%d does not parse", idx + 1);
        (void)torii_errbuf_ossl(eb, what);
        rc = TORII_EINVAL;
    }
out:
    free(der);
    return rc;
}

static int pki_chain_parse(const char *text, int lazy, STACK_OF(X509) * *out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    X509 *cert = NULL;
    const char *p = text;
    const char *body = NULL;
    const char *end = NULL;
    int idx = 0;

    torii_metrics_inc(TORII_METRIC_CHAIN_PARSE);
    TORII_ENSURE(text != NULL, torii_errf(eb, TORII_EINVAL, "chain: missing"));
    chain = sk_X509_new_null();
    TORII_ENSURE(chain != NULL, TORII_ENOMEM);
    while (pki_cert_block(&p, &body, &end)) {
        const char *close;

        TORII_TRY(pki_cert_decode(body, end, lazy, idx, &cert, eb));
        TORII_ENSURE(sk_X509_push(chain, cert) > 0, TORII_ENOMEM);
        cert = NULL;
        idx++;
        close = strstr(end + 8, "-----");
        p = close != NULL ? close + 5 : end + 8;
    }
    TORII_ENSURE(sk_X509_num(chain) > 0,
                 torii_errf(eb, TORII_EINVAL, "chain: no PEM certificate found"));
    *out = chain;
    chain = NULL;
out:
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

int torii_pki__chain_parse(const char *text, STACK_OF(X509) * *out, struct torii_errbuf *eb)
{
    return pki_chain_parse(text, 0, out, eb);
}

int torii_pki__chain_parse_lazy(const char *text, STACK_OF(X509) * *out, struct torii_errbuf *eb)
{
    return pki_chain_parse(text, 1, out, eb);
}

struct pki_pass {
    const char *pw;
};

static int pki_pass_cb(char *buf, int size, int rwflag, void *u)
{
    const struct pki_pass *pp = u;
    size_t n;

    (void)rwflag;
    /* 0 = no password: decryption then fails instead of prompting on a terminal. */
    if (pp == NULL || pp->pw == NULL || size <= 0) {
        return 0;
    }
    n = strlen(pp->pw);
    if (n > (size_t)size) {
        return 0;
    }
    memcpy(buf, pp->pw, n);
    return (int)n;
}

/* Copy of [b, e) with CR removed, lines trimmed, blank lines dropped (except the one ending
 * RFC 1421 headers), and the armour lines upper-cased, so
 * OpenSSL's strict PEM reader accepts what a lenient user pasted. */
static int pki_pem_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* [*s, *le) without the blanks around it. */
static void pki_pem_trim(const char **s, const char **le)
{
    while (*s < *le && pki_pem_space(**s)) {
        (*s)++;
    }
    while (*le > *s && pki_pem_space((*le)[-1])) {
        (*le)--;
    }
}

/* Append the trimmed line [s, le) to o at *n, armour lines upper-cased, then a newline. */
static void pki_pem_line(char *o, size_t *n, const char *s, const char *le)
{
    int armour = (le - s) >= 5 && memcmp(s, "-----", 5) == 0;

    for (; s < le; s++) {
        o[(*n)++] = armour ? (char)toupper((unsigned char)*s) : *s;
    }
    o[(*n)++] = '\n';
}

static char *pki_pem_clean(const char *b, const char *e, size_t *out_len)
{
    char *o = torii_xmalloc((size_t)(e - b) + 2);
    size_t n = 0;
    const char *line = b;
    int prev_header = 0;

    while (line < e) {
        const char *nl = memchr(line, '\n', (size_t)(e - line));
        const char *le = nl != NULL ? nl : e;
        const char *s = line;

        pki_pem_trim(&s, &le);
        if (le > s) {
            prev_header = memchr(s, ':', (size_t)(le - s)) != NULL;
            pki_pem_line(o, &n, s, le);
        } else if (prev_header) {
            /* RFC 1421 headers (Proc-Type, DEK-Info) end with an empty line: keep it. */
            o[n++] = '\n';
            prev_header = 0;
        }
        line = nl != NULL ? nl + 1 : e;
    }
    o[n] = '\0';
    *out_len = n;
    return o;
}

#define PKI_P8_BEGIN "-----BEGIN PRIVATE KEY-----\n"
#define PKI_P8_END   "-----END PRIVATE KEY-----\n"

static int pki_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+'
           || c == '/';
}

/* 1 when [s, e) is canonical PEM base64: lines of 4..64 characters of the standard alphabet,
 * each a multiple of 4 long and ending in '\n', '=' only as the (one or two characters of)
 * padding at the end of the last line. */
static int pki_b64_lines_ok(const char *s, const char *e)
{
    size_t col = 0;
    int pad = 0;

    for (const char *p = s; p < e; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '\n') {
            if (col == 0 || col % 4 != 0 || (pad > 0 && p + 1 != e)) {
                return 0;
            }
            col = 0;
        } else if (++col > 64 || (c == '=' ? ++pad > 2 : !pki_b64_char(c) || pad > 0)) {
            return 0;
        }
    }
    return s < e && col == 0;
}

/* The key type of a DER PrivateKeyInfo that a decoder told its type decodes as the PEM reader
 * would: RSA, or EC on a NIST named curve; TORII_PKI__DEC_KINDS for anything else. */
static enum torii_pki__dec_kind pki_p8_kind(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    const ASN1_OBJECT *oid = NULL;
    const X509_ALGOR *alg = NULL;
    const void *pval = NULL;
    int ptype = 0;
    int curve = NID_undef;
    enum torii_pki__dec_kind kind = TORII_PKI__DEC_KINDS;

    if (p8 != NULL && p == der + len && PKCS8_pkey_get0(&oid, NULL, NULL, &alg, p8) == 1) {
        X509_ALGOR_get0(NULL, &ptype, &pval, alg);
        curve = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(pval) : NID_undef;
        if (OBJ_obj2nid(oid) == NID_rsaEncryption) {
            kind = TORII_PKI__DEC_P8_RSA;
        } else if (OBJ_obj2nid(oid) == NID_X9_62_id_ecPublicKey
                   && (curve == NID_X9_62_prime256v1 || curve == NID_secp384r1
                       || curve == NID_secp521r1)) {
            kind = TORII_PKI__DEC_P8_EC;
        }
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    return kind;
}

/* A canonical unencrypted "PRIVATE KEY" block (PKCS#8) of an RSA or NIST-curve EC key: its
 * DER decoded here and handed to the thread's decoder of that key type, which does the work
 * of the PEM decoder's chain in half the time. NULL for any other block. */
static EVP_PKEY *pki_key_decode_p8(const char *pem, size_t len)
{
    const size_t nb = sizeof(PKI_P8_BEGIN) - 1;
    const size_t ne = sizeof(PKI_P8_END) - 1;
    unsigned char *der = NULL;
    size_t der_len = 0;
    EVP_PKEY *key = NULL;
    enum torii_pki__dec_kind kind;

    if (len <= nb + ne || memcmp(pem, PKI_P8_BEGIN, nb) != 0
        || memcmp(pem + len - ne, PKI_P8_END, ne) != 0
        || !pki_b64_lines_ok(pem + nb, pem + len - ne)
        || torii_b64_decode_mime(pem + nb, len - nb - ne, &der, &der_len) != TORII_OK) {
        return NULL;
    }
    kind = pki_p8_kind(der, der_len);
    if (kind != TORII_PKI__DEC_KINDS) {
        key = torii_pki__decode_cached(kind, der, der_len);
    }
    torii_secure_free(der, der_len);
    ERR_clear_error();
    return key;
}

/* An unencrypted PEM key through the thread's decoders; NULL when it does not decode (the
 * caller then takes the general path, which says why). */
static EVP_PKEY *pki_key_decode_fast(const char *pem, size_t len)
{
    EVP_PKEY *key = pki_key_decode_p8(pem, len);

    if (key != NULL) {
        return key;
    }
    return torii_pki__decode_cached(TORII_PKI__DEC_PEM_KEYPAIR, (const unsigned char *)pem, len);
}

/* The first PEM block whose label says PRIVATE KEY in text: [*begin, *close) from its BEGIN
 * line to the end of its END line; *encrypted when the block says ENCRYPTED. */
static int pki_key_block(const char *text, const char **begin, const char **close, int *encrypted,
                         struct torii_errbuf *eb)
{
    const char *p = text;
    const char *hdr_end = NULL;
    const char *end;

    for (;;) {
        *begin = pki_find_ci(p, "-----BEGIN");
        hdr_end = *begin != NULL ? strstr(*begin + 10, "-----") : NULL;
        if (hdr_end == NULL) {
            return torii_errf(eb, TORII_EINVAL, "privateKey: no PEM private key block found");
        }
        if (pki_contains_ci(*begin + 10, (size_t)(hdr_end - *begin - 10), "PRIVATE KEY")) {
            break;
        }
        p = hdr_end + 5;
    }
    end = pki_find_ci(hdr_end + 5, "-----END");
    if (end == NULL) {
        return torii_errf(eb, TORII_EINVAL, "privateKey: PEM block has no END");
    }
    *close = strstr(end + 8, "-----");
    if (*close == NULL) {
        return torii_errf(eb, TORII_EINVAL, "privateKey: PEM END line not terminated");
    }
    *close += 5;
    *encrypted = pki_contains_ci(*begin, (size_t)(end - *begin), "ENCRYPTED");
    return TORII_OK;
}

/* A clean PEM key block: the thread's decoder first (unencrypted), else OpenSSL's reader with
 * the password. */
static int pki_key_decode(const char *clean, size_t clean_len, int encrypted, const char *password,
                          EVP_PKEY **out, struct torii_errbuf *eb)
{
    struct pki_pass pp = {password};
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;

    ERR_clear_error();
    key = encrypted ? NULL : pki_key_decode_fast(clean, clean_len);
    if (key == NULL) {
        bio = BIO_new_mem_buf(clean, (int)clean_len);
        if (bio == NULL) {
            return TORII_ENOMEM;
        }
        key = PEM_read_bio_PrivateKey(bio, NULL, pki_pass_cb, &pp);
        BIO_free(bio);
    }
    if (key == NULL) {
        const char *what = !encrypted         ? "privateKey: not a parsable PEM private key"
                           : password == NULL ? "privateKey: encrypted and no password given"
                                              : "privateKey: wrong password";
        (void)torii_errbuf_ossl(eb, what);
        return TORII_EINVAL;
    }
    *out = key;
    return TORII_OK;
}

int torii_pki__key_parse(const char *text, const char *password, EVP_PKEY **out,
                         struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const char *begin = NULL;
    const char *close = NULL;
    char *clean = NULL;
    size_t clean_len = 0;
    int encrypted = 0;

    TORII_ENSURE(text != NULL, torii_errf(eb, TORII_EINVAL, "privateKey: missing"));
    TORII_ENSURE(!torii_kek_text_is_sealed(text),
                 torii_errf(eb, TORII_EPERM,
                            "privateKey: sealed with a KEK (docs/operations.md, Keys at rest); "
                            "this use does not open sealed keys (docs/operations.md)"));
    TORII_TRY(pki_key_block(text, &begin, &close, &encrypted, eb));
    clean = pki_pem_clean(begin, close, &clean_len);
    rc = pki_key_decode(clean, clean_len, encrypted, password, out, eb);
out:
    if (clean != NULL) {
        OPENSSL_cleanse(clean, clean_len);
    }
    free(clean);
    return rc;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil algorithm). */
static int64_t pki_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int torii_pki__time_ms(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    int64_t days;

    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return TORII_EINVAL;
    }
    days = pki_days_from_civil((int64_t)tm.tm_year + 1900, (int64_t)tm.tm_mon + 1, tm.tm_mday);
    *out = ((days * 24 + tm.tm_hour) * 60 + tm.tm_min) * 60000 + (int64_t)tm.tm_sec * 1000;
    return TORII_OK;
}

/* The answer of torii_pki__self_signed is kept on the certificate (ex_data: 0 unknown, 1 no,
 * 2 yes), so the one-parse write path verifies the signature once, not once per question. */
static int pki_ss_idx = -1;
static pthread_once_t pki_ss_once = PTHREAD_ONCE_INIT;

static void pki_ss_init(void)
{
    pki_ss_idx = X509_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int torii_pki__self_signed(X509 *c)
{
    EVP_PKEY *pub = NULL;
    int memo = pthread_once(&pki_ss_once, pki_ss_init) == 0 && pki_ss_idx >= 0;
    intptr_t known = memo ? (intptr_t)X509_get_ex_data(c, pki_ss_idx) : 0;
    int ok;

    if (known != 0) {
        return known == 2;
    }
    /* Issuer DN != subject DN cannot be self-signed: no key decode, no signature check. */
    if (X509_NAME_cmp(X509_get_issuer_name(c), X509_get_subject_name(c)) != 0) {
        ok = 0;
    } else {
        pub = torii_pki__cert_pub(c);
        ok = pub != NULL && X509_verify(c, pub) == 1;
    }
    ERR_clear_error();
    if (memo) {
        (void)X509_set_ex_data(c, pki_ss_idx, (void *)(intptr_t)(ok ? 2 : 1));
    }
    return ok;
}

int torii_pki__chain_links(STACK_OF(X509) * chain)
{
    int i;

    for (i = 0; i + 1 < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        X509 *issuer = sk_X509_value(chain, i + 1);
        EVP_PKEY *pub = NULL;

        if (X509_NAME_cmp(X509_get_issuer_name(c), X509_get_subject_name(issuer)) != 0
            || (pub = torii_pki__cert_pub(issuer)) == NULL || X509_verify(c, pub) != 1) {
            ERR_clear_error();
            return 0;
        }
    }
    return 1;
}

int torii_pki__ip_text(const ASN1_OCTET_STRING *ip, char *buf, size_t len)
{
    const unsigned char *d = ASN1_STRING_get0_data(ip);
    int n = ASN1_STRING_length(ip);

    if (n == 4) {
        return inet_ntop(AF_INET, d, buf, (socklen_t)len) != NULL ? TORII_OK : TORII_EINVAL;
    }
    if (n == 16) {
        return inet_ntop(AF_INET6, d, buf, (socklen_t)len) != NULL ? TORII_OK : TORII_EINVAL;
    }
    return TORII_EINVAL;
}
