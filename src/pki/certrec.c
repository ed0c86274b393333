/* certrec.c - the compact binary TLS record stored next to a certificate entity.
 *
 * Layout (version 3, all integers little-endian, no padding):
 *   off  size  field
 *     0     4  magic "TCRT"
 *     4     2  version (3)
 *     6     2  reserved (0)
 *     8     4  flags (TORII_CERTREC_*)
 *    12     8  not_before_ms (int64)
 *    20     8  not_after_ms (int64)
 *    28     4  key_type (int32, EVP_PKEY_base_id; 0 without a key)
 *    32     4  n_names (<= TORII_CERTREC_MAX_NAMES)
 *    36     4  n_chain (1..TORII_CERTREC_MAX_CHAIN)
 *    40        n_names x { u32 len (1..255), len bytes }      lower-case names, IPs as text
 *              n_chain x { u32 len (1..PKI_REC_MAX_DER), DER } leaf first
 *              u32 key_len (0), no bytes                      the key is stored once, in
 *                                                             the entity's privateKey
 *              u32 ih_len (0 or 32), ih_len bytes             SHA-256 of the leaf's issuer
 *                                                             name (DER)
 *              u32 sn_len (0 or 3..64), sn_len bytes          the leaf's serialNumber as a
 *                                                             DER INTEGER; 0 iff ih_len is 0
 *                                                             (a serial too long to index)
 * A summary (torii_certrec_summary: certdb's compact index) is a version 3 record with
 * reserved = 1 and n_chain = 0: no chain, only what selection and the PKI view read.
 * Version 2 is the same with key_len = the length of a copy of the key (i2d_PrivateKey DER)
 * when HAS_KEY is set; version 1 is version 2 without the last two fields. Both still decode
 * (stores written by older versions keep working; version 1 certificates are not in the
 * issuer+serial index); their key copy is never used and torii_certrec_drop_key (torii keys
 * migrate) removes it. The blob must end exactly after the last field.
 * HAS_KEY and key_type describe the entity's privateKey, which the TLS table and the client
 * identities open through torii_pki_key_open. */
#include <ctype.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "pki_int.h"
#include "torii/pki.h"

#define PKI_REC_VERSION  3u
#define PKI_REC_V2       2u
#define PKI_REC_V1       1u
#define PKI_REC_HDR      40u
#define PKI_REC_SUMMARY  1u /* the reserved field of a summary */
#define PKI_REC_NAME_MAX 255u
#define PKI_REC_MAX_DER  (1u << 20)

/* The record's first 4 bytes ("TCRT", no NUL). */
static const unsigned char pki_rec_magic[4] = {'T', 'C', 'R', 'T'};

/* ---- names ---- */

struct pki_names {
    char *v[TORII_CERTREC_MAX_NAMES];
    size_t n;
    size_t n_dns;
};

static void pki_names_clear(struct pki_names *ns)
{
    size_t i;

    for (i = 0; i < ns->n; i++) {
        free(ns->v[i]);
    }
    ns->n = 0;
}

/* Hostname-ish characters only: a CN like "Otoroshi Root CA" is not a name to serve. */
static int pki_name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > PKI_REC_NAME_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '.' || c == '*' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Add a DNS-style name (lower-cased, one trailing dot stripped, deduplicated). Names that are
 * not hostname-shaped are skipped. TORII_EINVAL when the table is full. */
static int pki_names_add_dns(struct pki_names *ns, const char *s, size_t len)
{
    char *v;
    size_t i;

    if (len > 0 && s[len - 1] == '.') {
        len--;
    }
    if (!pki_name_ok(s, len)) {
        return TORII_OK;
    }
    v = torii_xstrndup(s, len);
    for (i = 0; i < len; i++) {
        v[i] = (char)tolower((unsigned char)v[i]);
    }
    for (i = 0; i < ns->n; i++) {
        if (strcmp(ns->v[i], v) == 0) {
            free(v);
            return TORII_OK;
        }
    }
    if (ns->n >= TORII_CERTREC_MAX_NAMES) {
        free(v);
        return TORII_EINVAL;
    }
    ns->v[ns->n++] = v;
    return TORII_OK;
}

static int pki_names_add_raw(struct pki_names *ns, const char *s)
{
    size_t i;

    for (i = 0; i < ns->n; i++) {
        if (strcmp(ns->v[i], s) == 0) {
            return TORII_OK;
        }
    }
    if (ns->n >= TORII_CERTREC_MAX_NAMES) {
        return TORII_EINVAL;
    }
    ns->v[ns->n++] = torii_xstrdup(s);
    return TORII_OK;
}

/* The DNS and IP names of the leaf's SAN extension. */
static int pki_names_from_sans(X509 *leaf, struct pki_names *ns)
{
    int rc = TORII_OK;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);

    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && rc == TORII_OK; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char ip[64];
        size_t before = ns->n;

        if (g->type == GEN_DNS) {
            rc = pki_names_add_dns(ns, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                                   (size_t)ASN1_STRING_length(g->d.dNSName));
            ns->n_dns += ns->n > before ? 1 : 0;
        } else if (g->type == GEN_IPADD
                   && torii_pki__ip_text(g->d.iPAddress, ip, sizeof(ip)) == TORII_OK) {
            rc = pki_names_add_raw(ns, ip);
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

/* The leaf's last subject CN (used when it has no DNS SAN). */
static int pki_names_from_cn(X509 *leaf, struct pki_names *ns)
{
    X509_NAME *subj = X509_get_subject_name(leaf);
    unsigned char *cn = NULL;
    int idx = -1;
    int last = -1;
    int len;
    int rc = TORII_OK;

    while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0) {
        last = idx;
    }
    if (last < 0) {
        return TORII_OK;
    }
    len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
    if (len > 0) {
        rc = pki_names_add_dns(ns, (const char *)cn, (size_t)len);
    }
    OPENSSL_free(cn);
    return rc;
}

static int pki_names_collect(X509 *leaf, struct pki_names *ns, struct torii_errbuf *eb)
{
    int rc = pki_names_from_sans(leaf, ns);

    if (rc == TORII_OK && ns->n_dns == 0) {
        rc = pki_names_from_cn(leaf, ns);
    }
    if (rc != TORII_OK) {
        (void)torii_errf(eb, rc, "certrec: more than %d names", TORII_CERTREC_MAX_NAMES);
    }
    ERR_clear_error();
    return rc;
}

/* ---- little-endian writer/reader ---- */

static unsigned char *pki_put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xffu);
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *pki_put_u32(unsigned char *p, uint32_t v)
{
    int i;

    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
    }
    return p + 4;
}

static unsigned char *pki_put_u64(unsigned char *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
    }
    return p + 8;
}

static unsigned char *pki_put_bytes(unsigned char *p, const void *d, size_t len)
{
    p = pki_put_u32(p, (uint32_t)len);
    if (len > 0) {
        memcpy(p, d, len);
    }
    return p + len;
}

static uint16_t pki_get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t pki_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t pki_get_u64(const unsigned char *p)
{
    return (uint64_t)pki_get_u32(p) | ((uint64_t)pki_get_u32(p + 4) << 32);
}

/* ---- build ---- */

static const char *pki_json_str(const json_t *e, const char *field)
{
    return json_string_value(json_object_get(e, field));
}

/* The leaf's issuer+serial identity. A serial whose DER exceeds TORII_CERTREC_SERIAL_MAX
 * (RFC 5280 4.1.2.2 allows 20 octets) leaves both empty: the certificate is then simply not
 * indexed, which is better than refusing to serve it. */
static int pki_rec_identity(X509 *leaf, unsigned char ih[TORII_CERTREC_ISSUER_HASH_LEN],
                            size_t *ih_len, unsigned char sn[TORII_CERTREC_SERIAL_MAX],
                            size_t *sn_len, struct torii_errbuf *eb)
{
    unsigned char *der = NULL;
    unsigned int n = 0;
    int len;

    *ih_len = 0;
    *sn_len = 0;
    len = i2d_ASN1_INTEGER(X509_get0_serialNumber(leaf), &der);
    if (len < 3 || len > TORII_CERTREC_SERIAL_MAX) {
        OPENSSL_free(der);
        ERR_clear_error();
        return TORII_OK;
    }
    if (X509_NAME_digest(X509_get_issuer_name(leaf), EVP_sha256(), ih, &n) != 1
        || n != TORII_CERTREC_ISSUER_HASH_LEN) {
        OPENSSL_free(der);
        return torii_errbuf_ossl(eb, "certrec: issuer name digest");
    }
    memcpy(sn, der, (size_t)len);
    OPENSSL_free(der);
    *ih_len = n;
    *sn_len = (size_t)len;
    return TORII_OK;
}

/* The flags that the entity's role fields and the leaf's extensions decide (no key, no
 * dates): REVOKED, CLIENT, KEYPAIR, CA, SELF_SIGNED, NOT_SERVER. */
static uint32_t pki_rec_role_flags(const json_t *entity, X509 *leaf)
{
    uint32_t flags = 0;

    if (json_is_true(json_object_get(entity, "revoked"))) {
        flags |= TORII_CERTREC_REVOKED;
    }
    if (json_is_true(json_object_get(entity, "client"))) {
        flags |= TORII_CERTREC_CLIENT;
    }
    if (json_is_true(json_object_get(entity, "keypair"))) {
        flags |= TORII_CERTREC_KEYPAIR;
    }
    if ((X509_get_extension_flags(leaf) & EXFLAG_CA) != 0) {
        flags |= TORII_CERTREC_CA;
    }
    if (torii_pki__self_signed(leaf)) {
        flags |= TORII_CERTREC_SELF_SIGNED;
    }
    if (X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
        flags |= TORII_CERTREC_NOT_SERVER;
    }
    ERR_clear_error();
    return flags;
}

/* One reason per role that keeps a certificate out of SNI selection (torii_sni_usable). */
static int pki_rec_add_warnings(json_t *arr, uint32_t flags)
{
    static const struct {
        uint32_t flag;
        const char *text;
    } why[] = {
        {TORII_CERTREC_CA, "not served by SNI: CA certificate (basicConstraints CA:TRUE)"},
        {TORII_CERTREC_KEYPAIR, "not served by SNI: key pair entity (keypair: true)"},
        {TORII_CERTREC_CLIENT, "not served by SNI: client certificate (client: true)"},
        {TORII_CERTREC_NOT_SERVER, "not served by SNI: its key usage or extended key usage "
                                   "does not allow TLS server authentication"},
    };

    for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++) {
        /* A CA's key usage (keyCertSign) says nothing more than CA:TRUE already did. */
        if ((flags & why[i].flag) == 0
            || (why[i].flag == TORII_CERTREC_NOT_SERVER && (flags & TORII_CERTREC_CA) != 0)) {
            continue;
        }
        if (json_array_append_new(arr, json_string(why[i].text)) != 0) {
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

int torii_certrec_sni_warnings_of(uint32_t flags, json_t **out)
{
    json_t *arr = json_array();

    if (arr == NULL || out == NULL || pki_rec_add_warnings(arr, flags) != TORII_OK) {
        json_decref(arr);
        return arr == NULL ? TORII_ENOMEM : TORII_EINVAL;
    }
    *out = arr;
    return TORII_OK;
}

uint32_t torii_certrec_flags(const unsigned char *blob, size_t len)
{
    if (blob == NULL || len < PKI_REC_HDR
        || memcmp(blob, pki_rec_magic, sizeof(pki_rec_magic)) != 0) {
        return 0;
    }
    return pki_get_u32(blob + 8);
}

int torii_certrec_serial_hex(const struct torii_certrec *rec, char *buf, size_t len)
{
    if (rec->serial.len == 0) {
        return TORII_ENOTFOUND;
    }
    return torii_pki__serial_hex_der((const unsigned char *)rec->serial.ptr, rec->serial.len, buf,
                                     len);
}

int torii_certrec_sni_warnings(const json_t *entity, json_t **out)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    json_t *arr = json_array();

    TORII_ENSURE(arr != NULL, TORII_ENOMEM);
    TORII_ENSURE(json_is_object(entity) && out != NULL, TORII_EINVAL);
    TORII_TRY(torii_pki__chain_parse(pki_json_str(entity, "chain"), &chain, NULL));
    TORII_TRY(pki_rec_add_warnings(arr, pki_rec_role_flags(entity, sk_X509_value(chain, 0))));
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return rc;
}

/* What a record holds besides names: DERs of the chain, the sealed key, the leaf identity. */
struct pki_rec_parts {
    uint32_t flags;
    int64_t nb;
    int64_t na;
    int key_type;
    int n_chain;
    unsigned char *der[TORII_CERTREC_MAX_CHAIN];
    int der_len[TORII_CERTREC_MAX_CHAIN];
    unsigned char ih[TORII_CERTREC_ISSUER_HASH_LEN];
    unsigned char sn[TORII_CERTREC_SERIAL_MAX];
    size_t ih_len;
    size_t sn_len;
    struct pki_names names;
};

static void pki_rec_parts_clear(struct pki_rec_parts *r)
{
    for (int i = 0; i < TORII_CERTREC_MAX_CHAIN; i++) {
        OPENSSL_free(r->der[i]);
    }
    pki_names_clear(&r->names);
}

/* The key's flags and type (its bytes stay in the entity's privateKey). */
static void pki_rec_key(X509 *leaf, EVP_PKEY *key, struct pki_rec_parts *r)
{
    r->flags |= TORII_CERTREC_HAS_KEY;
    r->key_type = EVP_PKEY_get_base_id(key);
    if (torii_pki__cert_key_match(leaf, key)) {
        r->flags |= TORII_CERTREC_KEY_MATCHES;
    }
    ERR_clear_error();
}

/* Everything but the names' and chain's encoding. */
static int pki_rec_parts_fill(const json_t *entity, STACK_OF(X509) * chain, EVP_PKEY *key,
                              struct pki_rec_parts *r, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    X509 *leaf = sk_X509_value(chain, 0);

    r->n_chain = sk_X509_num(chain);
    TORII_ENSURE(r->n_chain <= TORII_CERTREC_MAX_CHAIN,
                 torii_errf(eb, TORII_EINVAL, "certrec: chain longer than %d certificates",
                            TORII_CERTREC_MAX_CHAIN));
    if (key != NULL) {
        pki_rec_key(leaf, key, r);
    }
    r->flags |= pki_rec_role_flags(entity, leaf);
    TORII_ENSURE(torii_pki__time_ms(X509_get0_notBefore(leaf), &r->nb) == TORII_OK
                     && torii_pki__time_ms(X509_get0_notAfter(leaf), &r->na) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "certrec: leaf validity dates do not convert"));
    TORII_TRY(pki_rec_identity(leaf, r->ih, &r->ih_len, r->sn, &r->sn_len, eb));
    TORII_TRY(pki_names_collect(leaf, &r->names, eb));
    for (int i = 0; i < r->n_chain; i++) {
        r->der_len[i] = i2d_X509(sk_X509_value(chain, i), &r->der[i]);
        TORII_ENSURE(
            r->der_len[i] > 0 && (unsigned)r->der_len[i] <= PKI_REC_MAX_DER,
            torii_errf(eb, TORII_EINVAL, "certrec: certificate #%d does not encode", i + 1));
    }
out:
    return rc;
}

static size_t pki_rec_size(const struct pki_rec_parts *r)
{
    size_t total = PKI_REC_HDR + 4 + 4 + r->ih_len + 4 + r->sn_len;

    for (size_t i = 0; i < r->names.n; i++) {
        total += 4 + strlen(r->names.v[i]);
    }
    for (int i = 0; i < r->n_chain; i++) {
        total += 4 + (size_t)r->der_len[i];
    }
    return total;
}

static unsigned char *pki_rec_encode(const struct pki_rec_parts *r, size_t total)
{
    unsigned char *buf = torii_xmalloc(total);
    unsigned char *p = buf;

    memcpy(p, pki_rec_magic, sizeof(pki_rec_magic));
    p += sizeof(pki_rec_magic);
    p = pki_put_u16(p, PKI_REC_VERSION);
    p = pki_put_u16(p, 0);
    p = pki_put_u32(p, r->flags);
    p = pki_put_u64(p, (uint64_t)r->nb);
    p = pki_put_u64(p, (uint64_t)r->na);
    p = pki_put_u32(p, (uint32_t)r->key_type);
    p = pki_put_u32(p, (uint32_t)r->names.n);
    p = pki_put_u32(p, (uint32_t)r->n_chain);
    for (size_t i = 0; i < r->names.n; i++) {
        p = pki_put_bytes(p, r->names.v[i], strlen(r->names.v[i]));
    }
    for (int i = 0; i < r->n_chain; i++) {
        p = pki_put_bytes(p, r->der[i], (size_t)r->der_len[i]);
    }
    p = pki_put_u32(p, 0); /* no key bytes */
    p = pki_put_bytes(p, r->ih, r->ih_len);
    p = pki_put_bytes(p, r->sn, r->sn_len);
    TORII_ASSERT((size_t)(p - buf) == total);
    return buf;
}

int torii_pki__certrec_from(const json_t *entity, STACK_OF(X509) * chain, EVP_PKEY *key,
                            unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct pki_rec_parts r;

    memset(&r, 0, sizeof(r));
    TORII_TRY(pki_rec_parts_fill(entity, chain, key, &r, eb));
    *out_len = pki_rec_size(&r);
    *out = pki_rec_encode(&r, *out_len);
out:
    pki_rec_parts_clear(&r);
    return rc;
}

int torii_certrec_build(const json_t *entity, unsigned char **out, size_t *out_len,
                        struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *pk;
    const char *pw;

    TORII_ENSURE(json_is_object(entity),
                 torii_errf(eb, TORII_EINVAL, "certrec: entity is not an object"));
    TORII_TRY(torii_pki__chain_parse(pki_json_str(entity, "chain"), &chain, eb));
    pk = pki_json_str(entity, "privateKey");
    pw = pki_json_str(entity, "password");
    if (pk != NULL && pk[0] != '\0') {
        TORII_TRY(torii_pki__key_parse(pk, pw != NULL && pw[0] != '\0' ? pw : NULL, &key, eb));
    }
    rc = torii_pki__certrec_from(entity, chain, key, out, out_len, eb);
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* ---- decode ---- */

struct pki_reader {
    const unsigned char *p;
    size_t left;
};

static int pki_read_slice(struct pki_reader *r, uint32_t min, uint32_t max, struct torii_slice *s)
{
    uint32_t len;

    if (r->left < 4) {
        return TORII_EINVAL;
    }
    len = pki_get_u32(r->p);
    r->p += 4;
    r->left -= 4;
    if (len < min || len > max || len > r->left) {
        return TORII_EINVAL;
    }
    s->ptr = (const char *)r->p;
    s->len = len;
    r->p += len;
    r->left -= len;
    return TORII_OK;
}

/* The v2 identity fields: both empty, or a 32-byte hash and a short-form DER INTEGER. */
static int pki_read_identity(struct pki_reader *r, struct torii_certrec *rec)
{
    const unsigned char *sn;

    if (pki_read_slice(r, 0, TORII_CERTREC_ISSUER_HASH_LEN, &rec->issuer_hash) != TORII_OK
        || pki_read_slice(r, 0, TORII_CERTREC_SERIAL_MAX, &rec->serial) != TORII_OK) {
        return TORII_EINVAL;
    }
    if (rec->issuer_hash.len == 0 && rec->serial.len == 0) {
        return TORII_OK;
    }
    sn = (const unsigned char *)rec->serial.ptr;
    /* TORII_CERTREC_SERIAL_MAX < 130, so the DER length is always in short form. */
    if (rec->issuer_hash.len != TORII_CERTREC_ISSUER_HASH_LEN || rec->serial.len < 3
        || sn[0] != 0x02 || sn[1] != rec->serial.len - 2) {
        return TORII_EINVAL;
    }
    return TORII_OK;
}

/* The fixed header: magic, version, flags, dates, key type, counts. */
static int pki_read_header(const unsigned char *buf, size_t len, struct torii_certrec *rec)
{
    uint32_t version;

    if (buf == NULL || rec == NULL || len < PKI_REC_HDR
        || memcmp(buf, pki_rec_magic, sizeof(pki_rec_magic)) != 0) {
        return TORII_EINVAL;
    }
    version = pki_get_u16(buf + 4);
    rec->summary = pki_get_u16(buf + 6) == PKI_REC_SUMMARY && version == PKI_REC_VERSION;
    if (version < PKI_REC_V1 || version > PKI_REC_VERSION
        || (pki_get_u16(buf + 6) != 0 && !rec->summary)) {
        return TORII_EINVAL;
    }
    rec->version = version;
    rec->n_names = pki_get_u32(buf + 32);
    rec->n_chain = pki_get_u32(buf + 36);
    if (rec->n_names > TORII_CERTREC_MAX_NAMES || rec->n_chain < (rec->summary ? 0u : 1u)
        || rec->n_chain > (rec->summary ? 0u : TORII_CERTREC_MAX_CHAIN)) {
        return TORII_EINVAL;
    }
    rec->flags = pki_get_u32(buf + 8);
    rec->not_before_ms = (int64_t)pki_get_u64(buf + 12);
    rec->not_after_ms = (int64_t)pki_get_u64(buf + 20);
    rec->key_type = (int32_t)pki_get_u32(buf + 28);
    return TORII_OK;
}

/* The key slice: key bytes only before version 3, empty without a key. */
static int pki_read_key(struct pki_reader *r, struct torii_certrec *rec)
{
    int has_key = (rec->flags & TORII_CERTREC_HAS_KEY) != 0;
    int old = rec->version < PKI_REC_VERSION;
    int rc;

    if (has_key ? rec->key_type <= 0 : rec->key_type != 0) {
        return TORII_EINVAL;
    }
    rc = pki_read_slice(r, has_key && old ? 1 : 0, has_key && old ? PKI_REC_MAX_DER : 0,
                        &rec->key_der);
    if (rec->key_der.len == 0) {
        rec->key_der.ptr = NULL;
    }
    return rc;
}

/* The names, then the chain's DER certificates. */
static int pki_read_lists(struct pki_reader *r, struct torii_certrec *rec)
{
    int rc = TORII_OK;

    for (uint32_t i = 0; i < rec->n_names && rc == TORII_OK; i++) {
        rc = pki_read_slice(r, 1, PKI_REC_NAME_MAX, &rec->names[i]);
    }
    for (uint32_t i = 0; i < rec->n_chain && rc == TORII_OK; i++) {
        rc = pki_read_slice(r, 1, PKI_REC_MAX_DER, &rec->chain[i]);
    }
    return rc;
}

int torii_certrec_decode(const unsigned char *buf, size_t len, struct torii_certrec *rec)
{
    int rc = TORII_OK;
    struct pki_reader r;

    TORII_TRY(pki_read_header(buf, len, rec));
    r.p = buf + PKI_REC_HDR;
    r.left = len - PKI_REC_HDR;
    TORII_TRY(pki_read_lists(&r, rec));
    TORII_TRY(pki_read_key(&r, rec));
    rec->issuer_hash = (struct torii_slice){NULL, 0};
    rec->serial = (struct torii_slice){NULL, 0};
    if (rec->version >= PKI_REC_V2) {
        TORII_TRY(pki_read_identity(&r, rec));
    }
    TORII_ENSURE(r.left == 0, TORII_EINVAL);
out:
    return rc;
}

int torii_certrec_drop_key(const unsigned char *rec, size_t len, unsigned char **out,
                           size_t *out_len)
{
    int rc = TORII_OK;
    struct torii_certrec *cr = torii_xmalloc(sizeof(*cr)); /* large: off the stack */
    size_t off;
    size_t tail;
    unsigned char *p;

    *out = NULL;
    *out_len = 0;
    TORII_TRY(torii_certrec_decode(rec, len, cr));
    if (cr->key_der.len == 0) {
        goto out;
    }
    /* Same bytes without the key: header (version 3), then up to the key's length field, a
     * zero length, then everything after the key. A version 1 record gains empty identity
     * slices (version 3 has them). */
    off = (size_t)((const unsigned char *)cr->key_der.ptr - rec) - 4;
    tail = len - off - 4 - cr->key_der.len;
    *out_len = off + 4 + tail + (cr->version == PKI_REC_V1 ? 8 : 0);
    *out = torii_xmalloc(*out_len);
    memcpy(*out, rec, off);
    (void)pki_put_u16(*out + 4, PKI_REC_VERSION);
    p = pki_put_u32(*out + off, 0);
    memcpy(p, rec + off + 4 + cr->key_der.len, tail);
    if (cr->version == PKI_REC_V1) {
        p = pki_put_u32(p + tail, 0);
        (void)pki_put_u32(p, 0);
    }
out:
    free(cr);
    return rc;
}

/* The summary's size and bytes: rec's header, names and identity, no chain, no key. */
static size_t pki_sum_size(const struct torii_certrec *rec)
{
    size_t total = PKI_REC_HDR + 4 + 4 + rec->issuer_hash.len + 4 + rec->serial.len;

    for (uint32_t i = 0; i < rec->n_names; i++) {
        total += 4 + rec->names[i].len;
    }
    return total;
}

int torii_certrec_summary(const unsigned char *blob, size_t len, unsigned char **out,
                          size_t *out_len)
{
    int rc = TORII_OK;
    struct torii_certrec *rec = torii_xmalloc(sizeof(*rec));
    unsigned char *p;

    TORII_TRY(torii_certrec_decode(blob, len, rec));
    TORII_ENSURE(rec->version >= PKI_REC_V2 && !rec->summary, TORII_ENOTFOUND);
    *out_len = pki_sum_size(rec);
    *out = torii_xmalloc(*out_len);
    memcpy(*out, blob, PKI_REC_HDR);
    pki_put_u16(*out + 4, PKI_REC_VERSION);
    pki_put_u16(*out + 6, PKI_REC_SUMMARY);
    pki_put_u32(*out + 36, 0);
    p = *out + PKI_REC_HDR;
    for (uint32_t i = 0; i < rec->n_names; i++) {
        p = pki_put_bytes(p, rec->names[i].ptr, rec->names[i].len);
    }
    p = pki_put_u32(p, 0); /* no key bytes */
    p = pki_put_bytes(p, rec->issuer_hash.ptr, rec->issuer_hash.len);
    p = pki_put_bytes(p, rec->serial.ptr, rec->serial.len);
    TORII_ASSERT((size_t)(p - *out) == *out_len);
out:
    free(rec);
    return rc;
}
