/* keytype.c - the key type of an entity's leaf certificate as a short text ("RSA 2048",
 * "EC P-256", "Ed25519"), read by walking the certificate's DER down to its
 * SubjectPublicKeyInfo instead of decoding it with d2i_X509: a list request sorted by key type
 * reads every matching certificate, and OpenSSL 3's decoder costs ~150 us per certificate
 * where this walk costs a few. Only public bytes are read (the certificate, never the key).
 * Every length is checked against what is left: the text comes from the store, but a store
 * may have been written by anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki_int.h"
#include "torii/codec.h"
#include "torii/pki.h"

/* One DER element: tag, content [p, p + len), and where the next element starts. */
struct kt_elem {
    unsigned tag;
    const unsigned char *p;
    size_t len;
    const unsigned char *next;
};

/* Read the element at [p, end): TORII_OK or TORII_EINVAL (truncated, long-form tag, a length
 * of more than 4 bytes or past end). */
static int kt_read(const unsigned char *p, const unsigned char *end, struct kt_elem *e)
{
    size_t len = 0;

    if (end - p < 2 || (p[0] & 0x1f) == 0x1f) {
        return TORII_EINVAL;
    }
    e->tag = p[0];
    if (p[1] < 0x80) {
        len = p[1];
        p += 2;
    } else {
        size_t n = p[1] & 0x7fu;

        if (n == 0 || n > 4 || (size_t)(end - p) < 2 + n) {
            return TORII_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            len = (len << 8) | p[2 + i];
        }
        p += 2 + n;
    }
    if (len > (size_t)(end - p)) {
        return TORII_EINVAL;
    }
    *e = (struct kt_elem){e->tag, p, len, p + len};
    return TORII_OK;
}

/* The first element inside e (a constructed element). */
static int kt_first(const struct kt_elem *e, struct kt_elem *out)
{
    return kt_read(e->p, e->p + e->len, out);
}

/* The element after e inside parent. */
static int kt_after(const struct kt_elem *parent, const struct kt_elem *e, struct kt_elem *out)
{
    return kt_read(e->next, parent->p + parent->len, out);
}

static int kt_oid_is(const struct kt_elem *e, const char *der, size_t n)
{
    return e->tag == 0x06 && e->len == n && memcmp(e->p, der, n) == 0;
}

#define KT_OID(e, lit) kt_oid_is((e), (lit), sizeof(lit) - 1)

/* RSA: the modulus bit count from the BIT STRING's RSAPublicKey. */
static int kt_rsa(const struct kt_elem *bits, char *buf, size_t len)
{
    struct kt_elem seq;
    struct kt_elem mod;
    size_t n = 0;

    if (bits->tag != 0x03 || bits->len < 1 || kt_read(bits->p + 1, bits->p + bits->len, &seq)
        || kt_first(&seq, &mod) || mod.tag != 0x02 || mod.len == 0) {
        return TORII_EINVAL;
    }
    n = mod.len - (mod.p[0] == 0 ? 1 : 0);
    return snprintf(buf, len, "RSA %zu", n * 8) < (int)len ? TORII_OK : TORII_EINVAL;
}

/* The key type text of a SubjectPublicKeyInfo. */
static int kt_spki(const struct kt_elem *spki, char *buf, size_t len)
{
    struct kt_elem alg;
    struct kt_elem oid;
    struct kt_elem param;
    struct kt_elem bits;
    const char *text = NULL;

    if (spki->tag != 0x30 || kt_first(spki, &alg) || kt_first(&alg, &oid)
        || kt_after(spki, &alg, &bits)) {
        return TORII_EINVAL;
    }
    if (KT_OID(&oid, "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01")) {
        return kt_rsa(&bits, buf, len);
    }
    if (KT_OID(&oid, "\x2a\x86\x48\xce\x3d\x02\x01")) {
        if (kt_after(&alg, &oid, &param)) {
            return TORII_EINVAL;
        }
        text = KT_OID(&param, "\x2a\x86\x48\xce\x3d\x03\x01\x07") ? "EC P-256"
               : KT_OID(&param, "\x2b\x81\x04\x00\x22")           ? "EC P-384"
               : KT_OID(&param, "\x2b\x81\x04\x00\x23")           ? "EC P-521"
                                                                  : "EC";
    } else {
        text = KT_OID(&oid, "\x2b\x65\x70")   ? "Ed25519"
               : KT_OID(&oid, "\x2b\x65\x71") ? "Ed448"
                                              : "other";
    }
    return snprintf(buf, len, "%s", text) < (int)len ? TORII_OK : TORII_EINVAL;
}

/* The SubjectPublicKeyInfo of a DER certificate: the 7th field of tbsCertificate when it has
 * an explicit version, else the 6th. */
static int kt_cert(const unsigned char *der, size_t der_len, char *buf, size_t len)
{
    struct kt_elem cert;
    struct kt_elem tbs;
    struct kt_elem f;

    if (kt_read(der, der + der_len, &cert) || cert.tag != 0x30 || kt_first(&cert, &tbs)
        || tbs.tag != 0x30 || kt_first(&tbs, &f)) {
        return TORII_EINVAL;
    }
    /* [0] version, serial, signature, issuer, validity, subject, then the key. */
    for (int i = f.tag == 0xa0 ? 6 : 5; i > 0; i--) {
        if (kt_after(&tbs, &f, &f)) {
            return TORII_EINVAL;
        }
    }
    return kt_spki(&f, buf, len);
}

int torii_pki_cert_key_type(const json_t *entity, char *buf, size_t len)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    const char *pem = json_string_value(json_object_get(entity, "chain"));
    const char *b = pem != NULL ? strstr(pem, begin) : NULL;
    const char *e = b != NULL ? strstr(b, "-----END CERTIFICATE-----") : NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int rc = TORII_EINVAL;

    if (len == 0) {
        return TORII_EINVAL;
    }
    buf[0] = '\0';
    if (e == NULL) {
        return TORII_EINVAL;
    }
    b += sizeof(begin) - 1;
    if (torii_b64_decode_mime(b, (size_t)(e - b), &der, &der_len) == TORII_OK) {
        rc = kt_cert(der, der_len, buf, len);
    }
    free(der);
    if (rc != TORII_OK) {
        buf[0] = '\0';
    }
    return rc;
}
