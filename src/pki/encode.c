/* encode.c - text forms of PKI objects, one implementation each: any OpenSSL writer through a
 * memory BIO (torii_pki__bio_text), PEM of keys and chains, serial numbers as hex, distinguished
 * names (RFC 2253 text and Otoroshi's normalized DN) and the subject CN. */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "torii/mem.h"

/* ---- through a memory BIO ---- */

int torii_pki__bio_text(torii_pki__bio_write_cb write, const void *obj, int secret, char **out)
{
    int rc = TORII_OK;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    TORII_ENSURE(b != NULL, TORII_ENOMEM);
    TORII_TRY(write(b, obj));
    len = BIO_get_mem_data(b, &data);
    TORII_ENSURE(len >= 0, TORII_ENOMEM);
    *out = torii_xstrndup(data != NULL ? data : "", (size_t)len);
out:
    if (b != NULL && secret) {
        /* The BIO held key text: wipe it before it goes back to the allocator. */
        len = BIO_get_mem_data(b, &data);
        if (len > 0 && data != NULL) {
            OPENSSL_cleanse(data, (size_t)len);
        }
    }
    BIO_free(b);
    return rc;
}

static int encode_key_write(BIO *b, const void *key)
{
    return PEM_write_bio_PrivateKey(b, (EVP_PKEY *)(uintptr_t)key, NULL, NULL, 0, NULL, NULL) == 1
               ? TORII_OK
               : TORII_ETLS;
}

int torii_pki__key_pem(EVP_PKEY *key, char **out)
{
    return torii_pki__bio_text(encode_key_write, key, 1, out);
}

static int encode_pubkey_write(BIO *b, const void *key)
{
    return PEM_write_bio_PUBKEY(b, (EVP_PKEY *)(uintptr_t)key) == 1 ? TORII_OK : TORII_ETLS;
}

int torii_pki__pubkey_pem(EVP_PKEY *key, char **out)
{
    return torii_pki__bio_text(encode_pubkey_write, key, 0, out);
}

struct encode_chain {
    X509 *leaf;                  /* NULL: none */
    const STACK_OF(X509) * rest; /* NULL: none */
};

static int encode_chain_write(BIO *b, const void *arg)
{
    const struct encode_chain *c = arg;

    if (c->leaf != NULL && PEM_write_bio_X509(b, c->leaf) != 1) {
        return TORII_ENOMEM;
    }
    for (int i = 0; c->rest != NULL && i < sk_X509_num(c->rest); i++) {
        if (PEM_write_bio_X509(b, sk_X509_value(c->rest, i)) != 1) {
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

int torii_pki__chain_pem(STACK_OF(X509) * chain, char **out)
{
    struct encode_chain c = {NULL, chain};

    return torii_pki__bio_text(encode_chain_write, &c, 0, out);
}

int torii_pki__leaf_chain_pem(X509 *leaf, const STACK_OF(X509) * rest, char **out)
{
    struct encode_chain c = {leaf, rest};

    return torii_pki__bio_text(encode_chain_write, &c, 0, out);
}

struct encode_name {
    const X509_NAME *name;
    unsigned long flags;
};

static int encode_name_write(BIO *b, const void *arg)
{
    const struct encode_name *n = arg;

    return X509_NAME_print_ex(b, n->name, 0, n->flags) >= 0 ? TORII_OK : TORII_EINVAL;
}

int torii_pki__name_text(const X509_NAME *name, unsigned long flags, char **out)
{
    struct encode_name n = {name, flags};

    return torii_pki__bio_text(encode_name_write, &n, 0, out);
}

char *torii_pki__cn(X509 *c)
{
    X509_NAME *subj = X509_get_subject_name(c);
    unsigned char *utf8 = NULL;
    char *r = NULL;
    int idx = -1;
    int last = -1;
    int len;

    while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0) {
        last = idx;
    }
    if (last < 0) {
        return NULL;
    }
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
    if (len > 0 && memchr(utf8, '\0', (size_t)len) == NULL) {
        r = torii_xstrndup((const char *)utf8, (size_t)len);
    }
    OPENSSL_free(utf8);
    return r;
}

/* ---- serial numbers ---- */

int torii_pki__serial_hex(const ASN1_INTEGER *serial, char *buf, size_t len)
{
    int rc = TORII_OK;
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = NULL;
    const char *p;
    size_t i;
    size_t n;

    TORII_ENSURE(bn != NULL, TORII_EINVAL);
    hex = BN_bn2hex(bn);
    TORII_ENSURE(hex != NULL, TORII_ENOMEM);
    p = hex;
    n = 0;
    if (*p == '-') {
        TORII_ENSURE(len > 1, TORII_EINVAL);
        buf[n++] = '-';
        p++;
    }
    while (p[0] == '0' && p[1] != '\0') {
        p++;
    }
    TORII_ENSURE(strlen(p) + n < len, TORII_EINVAL);
    for (i = 0; p[i] != '\0'; i++) {
        char c = p[i];
        buf[n++] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    buf[n] = '\0';
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

int torii_pki__serial_hex_der(const unsigned char *der, size_t der_len, char *buf, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = der;
    ASN1_INTEGER *ai = NULL;
    size_t n = 0;
    int rc;

    /* Fast path: INTEGER, short-form length, positive (top bit clear), minimal (no leading
     * 0x00 before a byte below 0x80). Anything else goes through OpenSSL, errors included. */
    if (der_len >= 3 && der_len <= 129 && der[0] == 0x02 && der[1] == der_len - 2
        && (der[2] & 0x80) == 0 && !(der[2] == 0 && der_len > 3 && (der[3] & 0x80) == 0)) {
        for (size_t i = 2; i < der_len; i++) {
            unsigned nib[2] = {der[i] >> 4, der[i] & 15u};
            for (int k = 0; k < 2; k++) {
                /* Leading zeros dropped, one kept for zero itself. */
                if (n == 0 && nib[k] == 0 && !(i + 1 == der_len && k == 1)) {
                    continue;
                }
                if (n + 1 >= len) {
                    return TORII_EINVAL;
                }
                buf[n++] = digits[nib[k]];
            }
        }
        buf[n] = '\0';
        return TORII_OK;
    }
    ai = d2i_ASN1_INTEGER(NULL, &p, (long)der_len);
    rc = ai != NULL ? torii_pki__serial_hex(ai, buf, len) : TORII_EINVAL;
    ASN1_INTEGER_free(ai);
    ERR_clear_error();
    return rc;
}

/* ---- Otoroshi's normalized DN ---- */

struct data_rdn {
    char name[64];
    char *value;
};

/* The attribute name of ent, upper case: its short name (SURNAME for sn), else its OID. */
static int dn_rdn_name(const X509_NAME_ENTRY *ent, char *name, size_t len)
{
    const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(ent);
    int nid = OBJ_obj2nid(obj);

    if (nid == NID_surname) {
        (void)snprintf(name, len, "SURNAME");
    } else if (nid != NID_undef) {
        (void)snprintf(name, len, "%s", OBJ_nid2sn(nid));
    } else if (OBJ_obj2txt(name, (int)len, obj, 1) <= 0) {
        return TORII_EINVAL;
    }
    for (size_t k = 0; name[k] != '\0'; k++) {
        char c = name[k];
        name[k] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    return TORII_OK;
}

/* Name and RFC 2253 value text of one entry into r. */
static int dn_rdn_read(const X509_NAME_ENTRY *ent, struct data_rdn *r)
{
    unsigned long fl = (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_FN_SN;
    X509_NAME *one = NULL;
    char *text = NULL;
    const char *eq;
    int rc = TORII_OK;

    TORII_TRY(dn_rdn_name(ent, r->name, sizeof(r->name)));
    one = X509_NAME_new();
    TORII_ENSURE(one != NULL, TORII_ENOMEM);
    TORII_ENSURE(X509_NAME_add_entry(one, ent, -1, 0) == 1, TORII_ENOMEM);
    TORII_TRY(torii_pki__name_text(one, fl, &text));
    eq = strchr(text, '=');
    r->value = torii_xstrdup(eq != NULL ? eq + 1 : text);
out:
    free(text);
    X509_NAME_free(one);
    return rc;
}

/* Stable insertion sort by attribute name, descending. */
static void dn_rdn_sort(struct data_rdn *rdns, int n)
{
    for (int i = 1; i < n; i++) {
        struct data_rdn cur = rdns[i];
        int j = i - 1;
        while (j >= 0 && strcmp(rdns[j].name, cur.name) < 0) {
            rdns[j + 1] = rdns[j];
            j--;
        }
        rdns[j + 1] = cur;
    }
}

/* "NAME=value, NAME=value..." (malloc'd). */
static char *dn_rdn_join(const struct data_rdn *rdns, int n)
{
    size_t cap = 1;
    size_t used = 0;
    char *s;

    for (int i = 0; i < n; i++) {
        cap += strlen(rdns[i].name) + strlen(rdns[i].value) + 3;
    }
    s = torii_xmalloc(cap);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w =
            snprintf(s + used, cap - used, "%s%s=%s", i ? ", " : "", rdns[i].name, rdns[i].value);
        TORII_ASSERT(w >= 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    return s;
}

int torii_pki__dn_string(const X509_NAME *name, char **out)
{
    int rc = TORII_OK;
    int n = X509_NAME_entry_count(name);
    struct data_rdn *rdns = torii_xcalloc((size_t)(n > 0 ? n : 1), sizeof(*rdns));

    /* RFC 2253 order: most specific (last encoded) first. */
    for (int i = 0; i < n && rc == TORII_OK; i++) {
        rc = dn_rdn_read(X509_NAME_get_entry(name, n - 1 - i), &rdns[i]);
    }
    if (rc == TORII_OK) {
        dn_rdn_sort(rdns, n);
        *out = dn_rdn_join(rdns, n);
    }
    for (int i = 0; i < n; i++) {
        free(rdns[i].value);
    }
    free(rdns);
    return rc;
}
