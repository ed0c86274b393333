/* data.c - the certificate data object of `POST /api/pki/certs/_data` (reference 3.3).
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
#include "torii/codec.h"
#include "torii/pki.h"

static int data_set(json_t *o, const char *k, json_t *v_owned)
{
    if (v_owned == NULL) {
        return TORII_EINVAL;
    }
    return json_object_set_new(o, k, v_owned) == 0 ? TORII_OK : TORII_ENOMEM;
}

struct data_member {
    const char *name;
    json_t *value; /* owned; NULL: the value could not be made (TORII_EINVAL) */
};

/* data_set for each member in order; stops at the first failure, the rest released. */
static int data_set_members(json_t *o, const struct data_member *m, size_t n)
{
    int rc = TORII_OK;

    for (size_t i = 0; i < n; i++) {
        if (rc == TORII_OK) {
            rc = data_set(o, m[i].name, m[i].value);
        } else {
            json_decref(m[i].value);
        }
    }
    return rc;
}

#define DATA_N(a) (sizeof(a) / sizeof((a)[0]))

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
        b64 =
            torii_b64_encode(ASN1_STRING_get0_data(val), (size_t)ASN1_STRING_length(val), 0, NULL);
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

/* issuerDN, subjectDN, validity and serial of c into d; *subject keeps the subject DN. */
static int data_ident(X509 *c, json_t *d, char **subject, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    char *issuer = NULL;
    char serial[TORII_PKI_SERIAL_HEX_MAX];
    int64_t nb = 0;
    int64_t na = 0;

    TORII_ENSURE(torii_pki__time_ms(X509_get0_notBefore(c), &nb) == TORII_OK
                     && torii_pki__time_ms(X509_get0_notAfter(c), &na) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "data: validity dates do not convert"));
    TORII_TRY(torii_pki__dn_string(X509_get_issuer_name(c), &issuer));
    TORII_TRY(torii_pki__dn_string(X509_get_subject_name(c), subject));
    TORII_ENSURE(torii_pki__serial_hex(X509_get0_serialNumber(c), serial, sizeof(serial))
                     == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "data: serial does not print"));
    {
        const struct data_member m[] = {
            {"issuerDN", json_string(issuer)},
            {"subjectDN", json_string(*subject)},
            {"notBefore", json_integer((json_int_t)nb)},
            {"notAfter", json_integer((json_int_t)na)},
            {"serialNumber", json_string(serial)},
            {"serialNumberLng",
             json_integer((json_int_t)data_serial_long(X509_get0_serialNumber(c)))},
        };
        rc = data_set_members(d, m, DATA_N(m));
    }
out:
    free(issuer);
    return rc;
}

/* sigAlgName, sigAlgOID, _signature (base64) and signature (SHA-256 fingerprint of the
 * signature bytes, "AB:CD:..") of c into d. */
static int data_signature(X509 *c, json_t *d, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *aobj = NULL;
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    char fp[3 * EVP_MAX_MD_SIZE + 1];
    char sig_name[64];
    char sig_oid[128];
    char *sig_b64 = NULL;

    X509_get0_signature(&sig, &alg, c);
    TORII_ENSURE(sig != NULL && alg != NULL, torii_errf(eb, TORII_EINVAL, "data: no signature"));
    X509_ALGOR_get0(&aobj, NULL, NULL, alg);
    TORII_ENSURE(OBJ_obj2txt(sig_oid, sizeof(sig_oid), aobj, 1) > 0, TORII_EINVAL);
    data_sig_name(c, sig_name, sizeof(sig_name));
    sig_b64 =
        torii_b64_encode(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), 0, NULL);
    TORII_ENSURE(EVP_Digest(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), hash,
                            &hash_len, EVP_sha256(), NULL)
                     == 1,
                 TORII_ETLS);
    fp[0] = '\0';
    for (unsigned int i = 0; i < hash_len; i++) {
        (void)snprintf(fp + (size_t)3 * i, 4, i + 1 < hash_len ? "%02X:" : "%02X", hash[i]);
    }
    {
        const struct data_member m[] = {
            {"sigAlgName", json_string(sig_name)},
            {"sigAlgOID", json_string(sig_oid)},
            {"_signature", json_string(sig_b64)},
            {"signature", json_string(fp)},
        };
        rc = data_set_members(d, m, DATA_N(m));
    }
out:
    free(sig_b64);
    return rc;
}

/* domain and rawDomain: the CN, else the first SAN, else the subject DN. */
static int data_domain(X509 *c, json_t *d, const json_t *sans, const char *subject)
{
    int rc = TORII_OK;
    char *cn = torii_pki__cn(c);

    if (cn != NULL) {
        TORII_TRY(data_set(d, "domain", json_string(cn)));
    } else if (json_array_size(sans) > 0) {
        TORII_TRY(data_set(d, "domain", json_incref(json_array_get(sans, 0))));
    } else {
        TORII_TRY(data_set(d, "domain", json_string(subject)));
    }
    TORII_TRY(data_set(d, "rawDomain", cn != NULL ? json_string(cn) : json_null()));
out:
    free(cn);
    return rc;
}

/* Java's basic constraints: -1 when not a CA, the path length, or Integer.MAX_VALUE when
 * unlimited. */
static json_int_t data_constraints(X509 *c, int is_ca)
{
    long pathlen = X509_get_pathlen(c);

    return !is_ca ? -1 : (pathlen < 0 ? 2147483647 : pathlen);
}

/* The certificate allows TLS client authentication (extended key usage). */
static int data_is_client(X509 *c)
{
    return (X509_get_extension_flags(c) & EXFLAG_XKUSAGE) != 0
           && (X509_get_extended_key_usage(c) & XKU_SSL_CLIENT) != 0;
}

/* Public key, names, constraints and extensions of c into d (after the signature fields). */
static int data_subject(X509 *c, json_t *d, const char *subject, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *sans = json_array();
    json_t *crit = json_array();
    json_t *noncrit = json_array();
    char *pub_pem = NULL;
    int is_ca = (X509_get_extension_flags(c) & EXFLAG_CA) != 0;

    TORII_ENSURE(X509_get0_pubkey(c) != NULL,
                 torii_errf(eb, TORII_EINVAL, "data: public key does not parse"));
    TORII_TRY(torii_pki__pubkey_pem(X509_get0_pubkey(c), &pub_pem));
    TORII_ENSURE(sans != NULL && crit != NULL && noncrit != NULL, TORII_ENOMEM);
    TORII_TRY(data_sans(c, sans));
    TORII_TRY(data_extensions(c, crit, noncrit));
    TORII_TRY(data_domain(c, d, sans, subject));
    {
        const struct data_member m[] = {
            {"version", json_integer(X509_get_version(c) + 1)},
            {"type", json_string("X.509")},
            {"publicKey", json_string(pub_pem)},
            {"selfSigned", json_boolean(torii_pki__self_signed(c))},
            {"constraints", json_integer(data_constraints(c, is_ca))},
            {"ca", json_boolean(is_ca)},
            {"client", json_boolean(data_is_client(c))},
            {"subAltNames", json_incref(sans)},
            {"cExtensions", json_incref(crit)},
            {"ncExtensions", json_incref(noncrit)},
        };
        rc = data_set_members(d, m, DATA_N(m));
    }
out:
    json_decref(sans);
    json_decref(crit);
    json_decref(noncrit);
    free(pub_pem);
    return rc;
}

int torii_pki_cert_data(const char *pem, json_t **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    json_t *d = json_object();
    char *subject = NULL;
    X509 *c;

    TORII_ENSURE(d != NULL, TORII_ENOMEM);
    TORII_TRY(torii_pki__chain_parse(pem, &chain, eb));
    c = sk_X509_value(chain, 0);
    TORII_TRY(data_ident(c, d, &subject, eb));
    TORII_TRY(data_signature(c, d, eb));
    TORII_TRY(data_subject(c, d, subject, eb));
    *out = d;
    d = NULL;
out:
    if (rc == TORII_EINVAL && eb != NULL && eb->msg[0] == '\0') {
        (void)torii_errf(eb, TORII_EINVAL, "data: certificate field does not convert");
    }
    ERR_clear_error();
    json_decref(d);
    free(subject);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
