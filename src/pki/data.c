/* data.c - the certificate data object of `POST /api/pki/certs/_data` (reference 3.3) and
 * the normalized DN printer it shares with the issuing code.
 *
 * Names follow what Otoroshi's JVM code prints (sigAlgName "SHA256WITHRSA", serial in
 * lower-case hex, constraints as Java's getBasicConstraints). One deliberate change:
 * extension values are base64 of the DER value instead of raw bytes read as UTF-8. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

struct data_rdn {
    char name[64];
    char *value;
};

int torii_pki__dn_string(const X509_NAME *name, char **out)
{
    int rc = TORII_OK;
    int n = X509_NAME_entry_count(name);
    struct data_rdn *rdns = torii_xcalloc((size_t)(n > 0 ? n : 1), sizeof(*rdns));
    X509_NAME *one = NULL;
    BIO *b = NULL;
    char *s = NULL;
    size_t cap = 1;
    size_t used = 0;
    unsigned long fl = (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_FN_SN;
    int i;
    int j;

    /* RFC 2253 order: most specific (last encoded) first. */
    for (i = 0; i < n; i++) {
        const X509_NAME_ENTRY *ent = X509_NAME_get_entry(name, n - 1 - i);
        const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(ent);
        int nid = OBJ_obj2nid(obj);
        char *data = NULL;
        char *eq;
        long len;
        size_t k;

        if (nid == NID_surname) {
            (void)snprintf(rdns[i].name, sizeof(rdns[i].name), "SURNAME");
        } else if (nid != NID_undef) {
            (void)snprintf(rdns[i].name, sizeof(rdns[i].name), "%s", OBJ_nid2sn(nid));
        } else {
            TORII_ENSURE(OBJ_obj2txt(rdns[i].name, sizeof(rdns[i].name), obj, 1) > 0, TORII_EINVAL);
        }
        for (k = 0; rdns[i].name[k] != '\0'; k++) {
            char c = rdns[i].name[k];
            rdns[i].name[k] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
        }
        one = X509_NAME_new();
        b = BIO_new(BIO_s_mem());
        TORII_ENSURE(one != NULL && b != NULL, TORII_ENOMEM);
        TORII_ENSURE(X509_NAME_add_entry(one, ent, -1, 0) == 1, TORII_ENOMEM);
        TORII_ENSURE(X509_NAME_print_ex(b, one, 0, fl) >= 0, TORII_EINVAL);
        len = BIO_get_mem_data(b, &data);
        TORII_ENSURE(len >= 0, TORII_ENOMEM);
        eq = len > 0 ? memchr(data, '=', (size_t)len) : NULL;
        rdns[i].value = eq != NULL ? torii_xstrndup(eq + 1, (size_t)(len - (eq + 1 - data)))
                                   : torii_xstrndup(data != NULL ? data : "", (size_t)len);
        cap += strlen(rdns[i].name) + strlen(rdns[i].value) + 3;
        BIO_free(b);
        b = NULL;
        X509_NAME_free(one);
        one = NULL;
    }
    /* Stable insertion sort by attribute name, descending. */
    for (i = 1; i < n; i++) {
        struct data_rdn cur = rdns[i];
        j = i - 1;
        while (j >= 0 && strcmp(rdns[j].name, cur.name) < 0) {
            rdns[j + 1] = rdns[j];
            j--;
        }
        rdns[j + 1] = cur;
    }
    s = torii_xmalloc(cap);
    s[0] = '\0';
    for (i = 0; i < n; i++) {
        int w =
            snprintf(s + used, cap - used, "%s%s=%s", i ? ", " : "", rdns[i].name, rdns[i].value);
        TORII_ASSERT(w >= 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    *out = s;
    s = NULL;
out:
    free(s);
    for (i = 0; i < n; i++) {
        free(rdns[i].value);
    }
    free(rdns);
    BIO_free(b);
    X509_NAME_free(one);
    return rc;
}

static int data_set(json_t *o, const char *k, json_t *v_owned)
{
    if (v_owned == NULL) {
        return TORII_EINVAL;
    }
    return json_object_set_new(o, k, v_owned) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* "SHA256WITHRSA" / "SHA384WITHECDSA" as the JVM names them; OpenSSL's long name else. */
static void data_sig_name(const X509 *c, char *buf, size_t len)
{
    int sig_nid = X509_get_signature_nid(c);
    int md_nid = NID_undef;
    int pk_nid = NID_undef;
    const char *pk = NULL;
    char md[32];
    size_t i;
    size_t n = 0;

    if (OBJ_find_sigid_algs(sig_nid, &md_nid, &pk_nid) == 1 && md_nid != NID_undef) {
        if (pk_nid == NID_rsaEncryption) {
            pk = "RSA";
        } else if (pk_nid == NID_X9_62_id_ecPublicKey) {
            pk = "ECDSA";
        } else if (pk_nid == NID_rsassaPss) {
            pk = "RSAANDMGF1";
        }
    }
    if (pk == NULL) {
        (void)snprintf(buf, len, "%s", sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : "UNKNOWN");
        return;
    }
    for (i = 0; OBJ_nid2sn(md_nid)[i] != '\0' && n + 1 < sizeof(md); i++) {
        char ch = OBJ_nid2sn(md_nid)[i];
        if (ch != '-') {
            md[n++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
        }
    }
    md[n] = '\0';
    (void)snprintf(buf, len, "%sWITH%s", md, pk);
}

static int data_extensions(const X509 *c, json_t *crit, json_t *noncrit)
{
    int rc = TORII_OK;
    int i;

    for (i = 0; i < X509_get_ext_count(c); i++) {
        X509_EXTENSION *ext = X509_get_ext(c, i);
        const ASN1_OCTET_STRING *val = X509_EXTENSION_get_data(ext);
        char oid[128];
        char *b64 = NULL;
        json_t *item;

        TORII_ENSURE(OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(ext), 1) > 0,
                     TORII_EINVAL);
        b64 = torii_pki__b64(ASN1_STRING_get0_data(val), (size_t)ASN1_STRING_length(val), 0);
        TORII_ENSURE(b64 != NULL, TORII_ENOMEM);
        item = json_pack("{s:s,s:s}", "oid", oid, "value", b64);
        free(b64);
        TORII_ENSURE(item != NULL, TORII_ENOMEM);
        TORII_ENSURE(json_array_append_new(X509_EXTENSION_get_critical(ext) ? crit : noncrit, item)
                         == 0,
                     TORII_ENOMEM);
    }
out:
    return rc;
}

static int data_sans(X509 *c, json_t *arr)
{
    int rc = TORII_OK;
    GENERAL_NAMES *gens = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char ip[64];
        json_t *v = NULL;

        if (g->type == GEN_DNS) {
            v = json_stringn((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                             (size_t)ASN1_STRING_length(g->d.dNSName));
        } else if (g->type == GEN_IPADD
                   && torii_pki__ip_text(g->d.iPAddress, ip, sizeof(ip)) == TORII_OK) {
            v = json_string(ip);
        }
        if (v != NULL) {
            TORII_ENSURE(json_array_append_new(arr, v) == 0, TORII_ENOMEM);
        }
    }
out:
    ERR_clear_error();
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Java's BigInteger.longValue(): the low 64 bits, two's complement. */
static int64_t data_serial_long(const ASN1_INTEGER *serial)
{
    const unsigned char *d = ASN1_STRING_get0_data(serial);
    int n = ASN1_STRING_length(serial);
    uint64_t v = 0;
    int i;

    for (i = n > 8 ? n - 8 : 0; i < n; i++) {
        v = (v << 8) | d[i];
    }
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) {
        v = ~v + 1;
    }
    return (int64_t)v;
}

static char *data_cn(X509 *c)
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

int torii_pki_cert_data(const char *pem, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    json_t *d = NULL;
    json_t *sans = NULL;
    json_t *crit = NULL;
    json_t *noncrit = NULL;
    char *issuer = NULL;
    char *subject = NULL;
    char *pub_pem = NULL;
    char *sig_b64 = NULL;
    char *cn = NULL;
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    char fp[3 * EVP_MAX_MD_SIZE + 1];
    char serial[TORII_PKI_SERIAL_HEX_MAX];
    char sig_name[64];
    char sig_oid[128];
    int64_t nb = 0;
    int64_t na = 0;
    long pathlen;
    int is_ca;
    int client;
    unsigned int i;
    X509 *c;

    TORII_TRY(torii_pki__chain_parse(pem, &chain, eb));
    c = sk_X509_value(chain, 0);
    TORII_ENSURE(torii_pki__time_ms(X509_get0_notBefore(c), &nb) == TORII_OK
                     && torii_pki__time_ms(X509_get0_notAfter(c), &na) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "data: validity dates do not convert"));
    TORII_TRY(torii_pki__dn_string(X509_get_issuer_name(c), &issuer));
    TORII_TRY(torii_pki__dn_string(X509_get_subject_name(c), &subject));
    TORII_ENSURE(torii_pki__serial_hex(X509_get0_serialNumber(c), serial, sizeof(serial))
                     == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "data: serial does not print"));
    X509_get0_signature(&sig, &alg, c);
    TORII_ENSURE(sig != NULL && alg != NULL, torii_errf(eb, TORII_EINVAL, "data: no signature"));
    {
        const ASN1_OBJECT *aobj = NULL;
        X509_ALGOR_get0(&aobj, NULL, NULL, alg);
        TORII_ENSURE(OBJ_obj2txt(sig_oid, sizeof(sig_oid), aobj, 1) > 0, TORII_EINVAL);
    }
    data_sig_name(c, sig_name, sizeof(sig_name));
    sig_b64 = torii_pki__b64(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), 0);
    TORII_ENSURE(sig_b64 != NULL, TORII_ENOMEM);
    TORII_ENSURE(EVP_Digest(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), hash,
                            &hash_len, EVP_sha256(), NULL)
                     == 1,
                 TORII_ETLS);
    fp[0] = '\0';
    for (i = 0; i < hash_len; i++) {
        (void)snprintf(fp + (size_t)3 * i, 4, i + 1 < hash_len ? "%02X:" : "%02X", hash[i]);
    }
    TORII_ENSURE(X509_get0_pubkey(c) != NULL,
                 torii_errf(eb, TORII_EINVAL, "data: public key does not parse"));
    TORII_TRY(torii_pki__pubkey_pem(X509_get0_pubkey(c), &pub_pem));
    is_ca = (X509_get_extension_flags(c) & EXFLAG_CA) != 0;
    pathlen = X509_get_pathlen(c);
    client = (X509_get_extension_flags(c) & EXFLAG_XKUSAGE) != 0
             && (X509_get_extended_key_usage(c) & XKU_SSL_CLIENT) != 0;
    sans = json_array();
    crit = json_array();
    noncrit = json_array();
    TORII_ENSURE(sans != NULL && crit != NULL && noncrit != NULL, TORII_ENOMEM);
    TORII_TRY(data_sans(c, sans));
    TORII_TRY(data_extensions(c, crit, noncrit));
    cn = data_cn(c);

    d = json_object();
    TORII_ENSURE(d != NULL, TORII_ENOMEM);
    TORII_TRY(data_set(d, "issuerDN", json_string(issuer)));
    TORII_TRY(data_set(d, "subjectDN", json_string(subject)));
    TORII_TRY(data_set(d, "notBefore", json_integer((json_int_t)nb)));
    TORII_TRY(data_set(d, "notAfter", json_integer((json_int_t)na)));
    TORII_TRY(data_set(d, "serialNumber", json_string(serial)));
    TORII_TRY(data_set(d, "serialNumberLng",
                       json_integer((json_int_t)data_serial_long(X509_get0_serialNumber(c)))));
    TORII_TRY(data_set(d, "sigAlgName", json_string(sig_name)));
    TORII_TRY(data_set(d, "sigAlgOID", json_string(sig_oid)));
    TORII_TRY(data_set(d, "_signature", json_string(sig_b64)));
    TORII_TRY(data_set(d, "signature", json_string(fp)));
    if (cn != NULL) {
        TORII_TRY(data_set(d, "domain", json_string(cn)));
    } else if (json_array_size(sans) > 0) {
        TORII_TRY(data_set(d, "domain", json_incref(json_array_get(sans, 0))));
    } else {
        TORII_TRY(data_set(d, "domain", json_string(subject)));
    }
    TORII_TRY(data_set(d, "rawDomain", cn != NULL ? json_string(cn) : json_null()));
    TORII_TRY(data_set(d, "version", json_integer(X509_get_version(c) + 1)));
    TORII_TRY(data_set(d, "type", json_string("X.509")));
    TORII_TRY(data_set(d, "publicKey", json_string(pub_pem)));
    TORII_TRY(data_set(d, "selfSigned", json_boolean(torii_pki__self_signed(c))));
    /* Java: -1 when not a CA, the path length, or Integer.MAX_VALUE when unlimited. */
    TORII_TRY(data_set(d, "constraints",
                       json_integer(!is_ca ? -1 : (pathlen < 0 ? 2147483647 : pathlen))));
    TORII_TRY(data_set(d, "ca", json_boolean(is_ca)));
    TORII_TRY(data_set(d, "client", json_boolean(client)));
    TORII_TRY(data_set(d, "subAltNames", json_incref(sans)));
    TORII_TRY(data_set(d, "cExtensions", json_incref(crit)));
    TORII_TRY(data_set(d, "ncExtensions", json_incref(noncrit)));
    *out = d;
    d = NULL;
out:
    if (rc == TORII_EINVAL && eb != NULL && eb->msg[0] == '\0') {
        (void)torii_errf(eb, TORII_EINVAL, "data: certificate field does not convert");
    }
    ERR_clear_error();
    json_decref(d);
    json_decref(sans);
    json_decref(crit);
    json_decref(noncrit);
    free(cn);
    free(sig_b64);
    free(pub_pem);
    free(subject);
    free(issuer);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
