/* pki_import.h - imports (PKCS#12, PEM bundles) and inspection of a certificate (its data
 * object, validity, serial). Part of pki.h.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: inputs are borrowed; *out values are new references (json) or malloc'd. */
#ifndef TORII_PKI_IMPORT_H
#define TORII_PKI_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

/* ---- imports and inspection ---- */

/** PKCS#12 import: every private key entry becomes one enriched entity (id random 64 chars,
 * name "Imported Certificate", chain = the certificate matching the key + its issuers found
 * in the file, privateKey unencrypted PKCS#8, client = the leaf's EKU has clientAuth).
 * password NULL means "" (both encodings are tried). *out is a new JSON array, written only
 * on success. TORII_EINVAL for a wrong password, corrupt DER, a file without key entries or
 * a key without its certificate; nothing is returned then. Legacy RC2/3DES files need
 * OpenSSL's legacy provider to be loaded by the caller. */
int torii_pki_import_p12(const unsigned char *der, size_t len, const char *password, int64_t now_ms,
                         json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** PEM bundle import: certificates and private keys in any order (CSRs and other blocks
 * ignored; keys may be encrypted with password). Each key is paired with the certificate it
 * matches, and the chain is built from the other certificates by issuer name and signature.
 * One enriched entity per key (id "cert_<uuid>"). *out is a new JSON array. TORII_EINVAL
 * for no key, a key matching no certificate, or any block that does not parse. */
int torii_pki_import_pem_bundle(const char *text, const char *password, int64_t now_ms,
                                json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** Certificate data of the first certificate of a PEM text (reference 3.3): issuerDN,
 * subjectDN, notBefore, notAfter, serialNumber (lower-case hex), serialNumberLng (low 64
 * bits, signed, as Java's longValue), sigAlgName ("SHA256WITHRSA"), sigAlgOID, _signature,
 * signature, domain, rawDomain, version, type, publicKey, selfSigned, constraints, ca,
 * client, subAltNames, cExtensions, ncExtensions. Extension values are base64 of the DER
 * (Otoroshi emits the raw bytes as UTF-8, which is not valid JSON text). */
int torii_pki_cert_data(const char *pem, json_t **out, struct torii_errbuf *eb) TORII_MUST_USE;

/** {"valid": bool} for an entity (borrowed, not modified): the `valid` an enrich at now_ms
 * would compute; false when the entity does not enrich. NULL only on OOM. */
json_t *torii_pki_cert_valid(const json_t *entity, int64_t now_ms);

/** Serial of the entity's leaf certificate as lower-case hex without leading zeros (the key
 * of a serial -> id index; same text as torii_pki_certid.serial_hex). buf >= 83 bytes.
 * TORII_EINVAL when the chain does not parse. */
int torii_pki_cert_serial_hex(const json_t *entity, char *buf, size_t len, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Key type of the entity's leaf certificate ("RSA 2048", "EC P-256", "EC P-384", "EC P-521",
 * "EC" for another curve, "Ed25519", "Ed448", "other") into buf, read from the certificate's
 * DER without decoding it (cheap enough for every item of a sorted list). TORII_EINVAL (buf
 * empty) when the chain holds no readable certificate. Any thread. */
int torii_pki_cert_key_type(const json_t *entity, char *buf, size_t len) TORII_MUST_USE;

#endif
