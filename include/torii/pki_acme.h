/* pki_acme.h - the ACME client's key material (acmekey.c). Part of pki.h.
 * The ACME client (acme.h) holds keys as PEM text only; they are generated, decoded and used
 * here, so that private keys are decoded only in src/pki.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: inputs are borrowed; strings returned are malloc'd (keys: free with
 * torii_secure_free). */
#ifndef TORII_PKI_ACME_H
#define TORII_PKI_ACME_H

#include <stddef.h>

#include <jansson.h>

#include "torii/err.h"

/** A fresh ECDSA P-256 account key as unencrypted PKCS#8 PEM. TORII_ETLS when OpenSSL fails. */
int torii_pki_acme_key_new(char **pem_out, struct torii_errbuf *eb) TORII_MUST_USE;

/** The public JWK of an account key ({"crv","kty","x","y"}, new) and its RFC 7638 thumbprint
 * (base64url SHA-256, NUL-terminated into thumb[thumb_len], 44 bytes suffice). TORII_EINVAL
 * when key_pem is not an ECDSA P-256 private key. */
int torii_pki_acme_jwk(const char *key_pem, json_t **jwk_out, char *thumb, size_t thumb_len,
                       struct torii_errbuf *eb) TORII_MUST_USE;

/** ES256 JWS signature (RFC 7518 3.4, raw r||s, base64url) of signing_input ("<protected>.
 * <payload>") with the account key. */
int torii_pki_acme_sign(const char *key_pem, const char *signing_input, char **sig_out,
                        struct torii_errbuf *eb) TORII_MUST_USE;

/** HS256 MAC (base64url) of signing_input with the external account binding key given in
 * base64url (RFC 8555 7.3.4). TORII_EINVAL when the key does not decode. */
int torii_pki_acme_hs256(const char *key_b64url, const char *signing_input, char **sig_out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** A CSR for hosts (a JSON array of names, borrowed) with a fresh key (key_spec {algo, size}
 * as in a GenCsrQuery, NULL: ECDSA P-256): *csr_b64url is its DER in base64url, *key_pem the
 * new key. TORII_EINVAL for a bad name or key spec. */
int torii_pki_acme_csr(const json_t *hosts, const json_t *key_spec, char **csr_b64url,
                       char **key_pem, struct torii_errbuf *eb) TORII_MUST_USE;

/** The TLS-ALPN-01 validation certificate for name (RFC 8737 3): a fresh P-256 key, a
 * self-signed certificate with that one dNSName and the critical acmeIdentifier extension
 * holding digest (SHA-256 of the key authorization), as an opaque validation blob (*rec_out,
 * free with torii_secure_free: it holds the key) for the handshake that asks for acme-tls/1;
 * torii_pki_acme_alpn_identity turns it into the identity to present. */
int torii_pki_acme_alpn_record(const char *name, const unsigned char digest[32],
                               unsigned char **rec_out, size_t *rec_len, struct torii_errbuf *eb)
    TORII_MUST_USE;

struct torii_pki_identity;
/** The identity (certificate and key) of a blob made by torii_pki_acme_alpn_record (borrowed).
 * *out is new (torii_pki_identity_free). TORII_EINVAL for a blob it did not make. Any thread. */
int torii_pki_acme_alpn_identity(const unsigned char *blob, size_t len,
                                 struct torii_pki_identity **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
