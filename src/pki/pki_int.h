/* pki_int.h - helpers shared inside the pki module (PEM location, key loading, names).
 * Not to be included by other modules. */
#ifndef TORII_PKI_INT_H
#define TORII_PKI_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "torii/err.h"

struct torii_kek_ring;

/** Locate every CERTIFICATE PEM block in text (lenient: case-insensitive armour, garbage and
 * whitespace around and between blocks, CRLF, MIME-style line breaks in the base64) and
 * decode each. TORII_EINVAL when there is no block or a block does not decode. *out is a new
 * stack, leaf first. */
int torii_pki__chain_parse(const char *text, STACK_OF(X509) * *out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** torii_pki__chain_parse without decoding the certificates' public keys (pubkey.c): for
 * the write path, whose questions about a key go through torii_pki__cert_pub (X509_get0_pubkey
 * and the OpenSSL calls that read the key themselves see none). */
int torii_pki__chain_parse_lazy(const char *text, STACK_OF(X509) * *out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** d2i_X509 leaving the public key undecoded (pubkey.c). */
X509 *torii_pki__x509_lazy_d2i(const unsigned char **pp, long len);

/** The certificate's public key: X509_get0_pubkey, else (a lazily parsed certificate) decoded
 * now and kept on c. Borrowed from c; NULL when it does not decode. */
EVP_PKEY *torii_pki__cert_pub(X509 *c);

/** The kinds of decoder kept per thread (pubkey.c). */
enum torii_pki__dec_kind {
    TORII_PKI__DEC_PEM_KEYPAIR = 0, /* a PEM private key (unencrypted) */
    TORII_PKI__DEC_SPKI,            /* a DER SubjectPublicKeyInfo */
    TORII_PKI__DEC_P8_EC,           /* a DER PrivateKeyInfo of an EC key */
    TORII_PKI__DEC_P8_RSA,          /* a DER PrivateKeyInfo of an RSA key */
    TORII_PKI__DEC_KINDS
};

/** Decode data (len bytes) through the calling thread's decoder of that kind: a new
 * key, or NULL when it does not decode. */
EVP_PKEY *torii_pki__decode_cached(enum torii_pki__dec_kind kind, const unsigned char *data,
                                   size_t len);

/** 1 when key (private or public) is the key of certificate c (X509_check_private_key for
 * lazily parsed certificates too). */
int torii_pki__cert_key_match(X509 *c, EVP_PKEY *key);

/** Parse the entity's chain (non-empty; lazily, as torii_pki__chain_parse_lazy) and, when
 * privateKey is set, its key (with password; sealed: opened with kek, NULL when none is
 * loaded). *key is NULL without a key. TORII_EINVAL (eb says why). The caller frees both. */
int torii_pki__entity_parse(const json_t *entity, const struct torii_kek_ring *kek,
                            STACK_OF(X509) * *chain, EVP_PKEY **key, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** The derived fields of torii_cert_enrich from an already parsed chain and key (entity is
 * normalized). TORII_EINVAL when the key does not match the leaf. */
int torii_pki__enrich_from(json_t *entity, STACK_OF(X509) * chain, EVP_PKEY *key, int64_t now_ms,
                           struct torii_errbuf *eb) TORII_MUST_USE;

/** The TLS record (torii_certrec_build) from an already parsed chain and key (key may be NULL). */
int torii_pki__certrec_from(const json_t *entity, STACK_OF(X509) * chain, EVP_PKEY *key,
                            unsigned char **out, size_t *out_len, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Parse a PEM private key (PKCS#8, encrypted PKCS#8, PKCS#1 RSA, SEC1 EC, legacy
 * "Proc-Type: 4,ENCRYPTED"), password may be NULL. TORII_EINVAL for garbage or a wrong or
 * missing password. */
int torii_pki__key_parse(const char *text, const char *password, EVP_PKEY **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** Clean PEM of the whole chain (malloc'd, NUL-terminated; encode.c). */
int torii_pki__chain_pem(STACK_OF(X509) * chain, char **out) TORII_MUST_USE;

/** Clean PEM of leaf followed by rest (an issuer's chain; NULL: none), malloc'd: the chain of
 * a certificate just signed. */
int torii_pki__leaf_chain_pem(X509 *leaf, const STACK_OF(X509) * rest, char **out) TORII_MUST_USE;

/** ASN1_TIME to ms since the epoch. TORII_EINVAL when it does not convert. */
int torii_pki__time_ms(const ASN1_TIME *t, int64_t *out) TORII_MUST_USE;

/** 1 when issuer == subject and the signature verifies with the certificate's own key. */
int torii_pki__self_signed(X509 *c);

/** 1 when each chain[i] names chain[i+1] as issuer and its signature verifies with it. */
int torii_pki__chain_links(STACK_OF(X509) * chain);

/** One IP SAN in text form into buf (size >= 46). TORII_OK or TORII_EINVAL. */
int torii_pki__ip_text(const ASN1_OCTET_STRING *ip, char *buf, size_t len);

/* ---- issuing helpers (ca.c, issue.c, csr.c, import.c, data.c, ocsp.c, crl.c, jwks.c) ---- */

#include <jansson.h>
#include <openssl/x509v3.h>

/** RFC 7638 JWK thumbprint (SHA-256) of a public RSA, EC or Ed25519 key. TORII_EUNSUPPORTED
 * for other key types. */
int torii_pki__jwk_thumbprint(EVP_PKEY *pub, unsigned char out[32]) TORII_MUST_USE;

/** The key kid of an entity's key pub (docs/jwt.md, Key ids): "<base>.<t>", base = the entity
 * id, or the live id (metadata.nextCertificate) for an "[UNTIL EXPIRATION]" copy, and t = the
 * base64url of the first TORII_JWT_KID_THUMB_BYTES of the RFC 7638 thumbprint. *out is
 * malloc'd. TORII_ETOOBIG when it would exceed TORII_JWT_MAX_KID. */
int torii_pki__jwt_key_kid(const json_t *entity, EVP_PKEY *pub, char **out) TORII_MUST_USE;

/** A CA entity loaded for signing: leaf certificate, its private key and the whole chain.
 * Clear with torii_pki__ca_clear (wipes nothing itself: OpenSSL frees the key). */
struct torii_pki__ca {
    X509 *cert;             /* chain[0], borrowed from chain */
    EVP_PKEY *key;          /* owned */
    STACK_OF(X509) * chain; /* owned, leaf first */
    const char *id;         /* borrowed from the entity */
};

/** Load a CA entity: it must be a JSON object with ca=true, not revoked, a parsable chain
 * whose leaf has BasicConstraints CA:TRUE, and a private key matching that leaf.
 * TORII_EINVAL with a message naming the entity otherwise. A sealed key is opened with kek
 * (NULL: none loaded) through torii_pki_key_open. */
int torii_pki__ca_load(const json_t *entity, const struct torii_kek_ring *kek,
                       struct torii_pki__ca *ca, struct torii_errbuf *eb) TORII_MUST_USE;
void torii_pki__ca_clear(struct torii_pki__ca *ca);

struct torii_pki_certid;
struct torii_pki_ocsp_answer;

/** Lookup for torii_pki__ocsp_respond: as torii_pki_ocsp_lookup_cb, but the issuer is named
 * by *signer, a CA the caller keeps loaded (borrowed for the call; ans->issuer_owned stays
 * NULL). The signer may be used by several threads at once: it is only read. */
typedef int (*torii_pki__ocsp_lookup_cb)(void *ctx, const struct torii_pki_certid *id,
                                         struct torii_pki_ocsp_answer *ans,
                                         const struct torii_pki__ca **signer);

/** torii_pki_ocsp_respond with a torii_pki__ocsp_lookup_cb: same response, but no CA entity
 * is parsed per response (the PKI state answers OCSP and signs staples this way). */
int torii_pki__ocsp_respond(const unsigned char *req_der, size_t req_len,
                            torii_pki__ocsp_lookup_cb cb, void *cb_ctx, int64_t now_ms,
                            int64_t next_update_s, unsigned char **der, size_t *der_len,
                            int *resp_status, struct torii_errbuf *eb) TORII_MUST_USE;

#define TORII_PKI__DAY_MS          86400000LL
#define TORII_PKI__MAX_DURATION_MS (100LL * 366 * TORII_PKI__DAY_MS) /* longest validity */
#define TORII_PKI__CN_MAX          64                                /* RFC 5280 ub-common-name */

/** What torii_pki__cert_build makes. */
enum torii_pki__kind {
    TORII_PKI__LEAF,    /* CA:FALSE, server (or client) usages */
    TORII_PKI__ROOT_CA, /* CA:TRUE, no path length */
    TORII_PKI__SUB_CA,  /* CA:TRUE, pathLen 0 */
    TORII_PKI__KEYPAIR, /* CA:FALSE, digitalSignature only, no EKU */
};

struct torii_pki__build {
    const X509_NAME *subject;
    EVP_PKEY *pubkey;          /* subject public key */
    const GENERAL_NAMES *sans; /* NULL or empty: no SAN extension */
    enum torii_pki__kind kind;
    int client;           /* leaf: EKU clientAuth instead of serverAuth */
    int64_t now_ms;       /* notBefore */
    int64_t duration_ms;  /* > 0 */
    X509 *issuer;         /* NULL: self-signed */
    EVP_PKEY *signer;     /* issuer key, or the subject key when self-signed */
    const EVP_MD *md;     /* NULL: the signer's default (torii_pki__default_md) */
    const char *base_url; /* AIA + CRL DP when non-NULL and issuer_id non-NULL */
    const char *issuer_id;
};

/** Build and sign one certificate with the profile of `kind` (random positive 128-bit
 * serial, SKI, AKI, key usages); notAfter is clamped to the issuer's notAfter. */
int torii_pki__cert_build(const struct torii_pki__build *b, X509 **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** What the issuing pipeline returns: the new certificate's chain (its issuer's chain after
 * it) and its private key, as PEM. Clear with torii_pki__issued_clear (wipes the key). */
struct torii_pki__issued {
    char *chain_pem;
    char *key_pem;
};

/** The one issuing pipeline (issue.c): generate a key (type, bits: torii_pki__key_generate),
 * build and sign the certificate b describes for it (b->pubkey, b->issuer and b->signer are
 * filled in here: the issuer from ca, or self-signed with the new key when ca is NULL), then
 * its chain and key as PEM into *out. CAs, leaves, key pairs and the first-start certificate
 * (gen.c) are all made by it. */
int torii_pki__issue(struct torii_pki__build *b, int type, int bits, const struct torii_pki__ca *ca,
                     struct torii_pki__issued *out, struct torii_errbuf *eb) TORII_MUST_USE;
void torii_pki__issued_clear(struct torii_pki__issued *x);

/** Digest for signatures made with key: SHA-384 for P-384, SHA-512 for P-521, NULL for
 * EdDSA, SHA-256 otherwise. */
const EVP_MD *torii_pki__default_md(EVP_PKEY *key);

/** Check a key spec (query.c): EVP_PKEY_RSA 2048/3072/4096 or EVP_PKEY_EC 256/384/521.
 * TORII_EINVAL naming the spec otherwise. */
int torii_pki__key_check(int type, int bits, struct torii_errbuf *eb) TORII_MUST_USE;

/** Generate a key: EVP_PKEY_RSA 2048/3072/4096 or EVP_PKEY_EC 256/384/521.
 * TORII_EINVAL for anything else. */
int torii_pki__key_generate(int type, int bits, EVP_PKEY **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* ---- text forms (encode.c) ---- */

/** Writes obj into a memory BIO: TORII_OK or the error code the caller reports. */
typedef int (*torii_pki__bio_write_cb)(BIO *b, const void *obj);

/** The one way to text through a memory BIO: run write on a new memory BIO and return what it
 * wrote as a malloc'd NUL-terminated string (possibly empty). secret: the BIO is wiped before
 * it is freed (key material; free *out with torii_secure_free). */
int torii_pki__bio_text(torii_pki__bio_write_cb write, const void *obj, int secret, char **out)
    TORII_MUST_USE;

/** X509_NAME_print_ex(name, flags) as a malloc'd string (RFC 2253 text and its variants). */
int torii_pki__name_text(const X509_NAME *name, unsigned long flags, char **out) TORII_MUST_USE;

/** The subject CN of c (the most specific one) in UTF-8, malloc'd; NULL when there is none or
 * it holds a NUL byte. */
char *torii_pki__cn(X509 *c);

/** Unencrypted PKCS#8 PEM of a private key (malloc'd; free with torii_secure_free). */
int torii_pki__key_pem(EVP_PKEY *key, char **out) TORII_MUST_USE;

/** SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), malloc'd. */
int torii_pki__pubkey_pem(EVP_PKEY *key, char **out) TORII_MUST_USE;

/** Serial as lower-case hex without leading zeros ("0" for zero), as Java prints it. */
int torii_pki__serial_hex(const ASN1_INTEGER *serial, char *buf, size_t len) TORII_MUST_USE;

/** torii_pki__serial_hex of a DER INTEGER (tag, length, content), same text and same codes;
 * TORII_EINVAL as well when der does not decode. Positive minimal short-form encodings (what
 * certificates carry) are printed directly, without a BIGNUM (start-up reads one per stored
 * certificate). */
int torii_pki__serial_hex_der(const unsigned char *der, size_t der_len, char *buf, size_t len)
    TORII_MUST_USE;

/** Otoroshi's normalized DN ("OU=b, O=c, CN=a"; reference 1.2), malloc'd: attribute names
 * upper-cased (SN renamed SURNAME), sorted by name descending (ties keep RFC 2253 order),
 * joined with ", "; values RFC 2253-escaped, UTF-8 kept; unknown attributes as dotted OIDs.
 * Used for the entity's `subject` and for `_data`. */
int torii_pki__dn_string(const X509_NAME *name, char **out) TORII_MUST_USE;

/** Parsed GenCsrQuery (reference 3.1); see torii_pki__query_parse. */
struct torii_pki__query {
    X509_NAME *subject;  /* NULL when the query gives neither subject nor name */
    GENERAL_NAMES *sans; /* never NULL, may be empty */
    char *first_host;    /* hosts[0] or NULL */
    int key_type;        /* 0 (default for the use), EVP_PKEY_RSA or EVP_PKEY_EC */
    int key_bits;        /* 0 with key_type 0 */
    int client;
    int ca;
    int include_aia;
    int64_t duration_ms; /* 0: default for the use */
    const EVP_MD *md;    /* NULL: default for the signer */
    json_t *echo;        /* the query as Otoroshi echoes it (metadata.csr) */
};

/** Parse a GenCsrQuery (NULL = {}). TORII_EINVAL naming the field on a type error, an
 * unsupported key algorithm or size, a bad host, an unparsable subject or digest. */
int torii_pki__query_parse(const json_t *q, struct torii_pki__query *out, struct torii_errbuf *eb)
    TORII_MUST_USE;
void torii_pki__query_clear(struct torii_pki__query *q);

/** 1 when s may be a DNS name in a certificate: 1 to 253 characters among letters, digits,
 * '-', '.', '_', with an optional leading "*." wildcard. The one check (query.c). */
int torii_pki__dns_name_ok(const char *s);

/** Append host to sans: an iPAddress when it is an IPv4/IPv6 literal, else a dNSName checked
 * with torii_pki__dns_name_ok. TORII_EINVAL naming host (prefixed by what) otherwise. */
int torii_pki__san_add(GENERAL_NAMES *sans, const char *host, const char *what,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/** Parse only a key spec {algo, size} (or keyType/keySize); absent -> *type = 0. */
int torii_pki__keyspec_parse(const json_t *q, int *type, int *bits, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Parse a DN string "CN=x, O=y" (RFC 4514 escapes with '\'); attributes are encoded in
 * the order written. TORII_EINVAL on an unknown attribute or an empty value. */
int torii_pki__dn_parse(const char *s, X509_NAME **out, struct torii_errbuf *eb) TORII_MUST_USE;

struct torii_pki_opts;

/** Generate a key per q (default EC P-384 for CAs, P-256 otherwise), build the certificate
 * of `kind` signed by ca (NULL: self-signed) and return the enriched entity (reference
 * 3.2 "entity response"). q->subject NULL falls back to CN=hosts[0]. */
int torii_pki__issue_entity(const struct torii_pki__query *q, const struct torii_pki__ca *ca,
                            enum torii_pki__kind kind, const struct torii_pki_opts *o, json_t **out,
                            struct torii_errbuf *eb) TORII_MUST_USE;

/** Check a public base URL for AIA/CRL (http(s)://, no whitespace, comma or quote). */
int torii_pki__base_url_check(const char *url, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- renewal helpers (issue.c, renew.c) ---- */

/** Give c a new random positive 128-bit serial (RFC 5280 4.1.2.2), the one every
 * certificate torii signs gets. */
int torii_pki__serial_random(X509 *c) TORII_MUST_USE;

/* The text form of a sealed privateKey: this prefix + standard base64 of the KEK envelope
 * (kek.c tells it apart, kek_rec.c makes and opens it). */
#define KEK_TEXT_PREFIX     "TKEK:"
#define KEK_TEXT_PREFIX_LEN 5u

#endif
