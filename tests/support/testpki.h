/* testpki.h - test-only helpers that generate keys and certificates in memory with chosen
 * names and validity dates (no private key is ever committed to the repo).
 * Threads: any thread. Ownership: returned objects/strings are owned by the caller. */
#ifndef TORII_TESTPKI_H
#define TORII_TESTPKI_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct testpki_opts {
    int key_type;        /* EVP_PKEY_EC (P-256) or EVP_PKEY_RSA */
    int bits;            /* RSA bits (default 2048) or EC curve bits 256/384 */
    const char *cn;      /* subject CN, may be NULL */
    const char *const *dns; /* DNS SANs */
    size_t n_dns;
    const char *const *ips; /* IP SANs, textual */
    size_t n_ips;
    int64_t not_before_off_s; /* relative to now (may be negative) */
    int64_t not_after_off_s;  /* relative to now; 0 = +365 days */
    int is_ca;           /* basicConstraints CA:TRUE, keyCertSign */
    int client;          /* EKU clientAuth instead of serverAuth */
    X509 *issuer;        /* NULL = self-signed */
    EVP_PKEY *issuer_key;
};

/** Generate a key (or reuse *key if non-NULL) and a certificate; 0 on success. */
int testpki_make(const struct testpki_opts *o, X509 **cert, EVP_PKEY **key);
/** PEM text (malloc'd, NUL-terminated). password non-NULL -> encrypted PKCS#8 (AES-256-CBC). */
char *testpki_cert_pem(X509 *c);
char *testpki_key_pem(EVP_PKEY *k, const char *password);

#endif
