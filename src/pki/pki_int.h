/* pki_int.h - helpers shared inside the pki module (PEM location, key loading, names).
 * Not to be included by other modules. */
#ifndef TORII_PKI_INT_H
#define TORII_PKI_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "torii/err.h"

/** Locate every CERTIFICATE PEM block in text (lenient: case-insensitive armour, garbage and
 * whitespace around and between blocks, CRLF, MIME-style line breaks in the base64) and
 * decode each. TORII_EINVAL when there is no block or a block does not decode. *out is a new
 * stack, leaf first. */
int torii_pki__chain_parse(const char *text, STACK_OF(X509) * *out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Parse a PEM private key (PKCS#8, encrypted PKCS#8, PKCS#1 RSA, SEC1 EC, legacy
 * "Proc-Type: 4,ENCRYPTED"), password may be NULL. TORII_EINVAL for garbage or a wrong or
 * missing password. */
int torii_pki__key_parse(const char *text, const char *password, EVP_PKEY **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** Clean PEM of the whole chain (malloc'd, NUL-terminated). */
int torii_pki__chain_pem(STACK_OF(X509) * chain, char **out) TORII_MUST_USE;

/** ASN1_TIME to ms since the epoch. TORII_EINVAL when it does not convert. */
int torii_pki__time_ms(const ASN1_TIME *t, int64_t *out) TORII_MUST_USE;

/** 1 when issuer == subject and the signature verifies with the certificate's own key. */
int torii_pki__self_signed(X509 *c);

/** 1 when each chain[i] names chain[i+1] as issuer and its signature verifies with it. */
int torii_pki__chain_links(STACK_OF(X509) * chain);

/** One IP SAN in text form into buf (size >= 46). TORII_OK or TORII_EINVAL. */
int torii_pki__ip_text(const ASN1_OCTET_STRING *ip, char *buf, size_t len);

#endif
