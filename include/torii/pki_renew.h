/* pki_renew.h - renewing a certificate entity: a new leaf from the old one. Part of pki.h.
 * Threads: any thread (pure function).
 * Ownership: inputs are borrowed; *out is a new entity the caller json_decref()s. */
#ifndef TORII_PKI_RENEW_H
#define TORII_PKI_RENEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/pki_issue.h"

/* ---- renewal ---- */

/** Renew a certificate entity (docs/operations.md, Renewal): a copy of its leaf (subject,
 * SANs, key usages, EKU and every other extension kept; SCTs dropped) with a new random
 * serial, notBefore = now (backdated 5 minutes when the validity is longer than a day), the
 * same validity length clamped to the issuer's notAfter, the same signature digest, and:
 * - a leaf (entity ca not true) gets a NEW key of the same type and size (RSA bits, EC
 *   curve, Ed25519/Ed448), a new SKI, privateKey = its PKCS#8 PEM and password = null;
 * - a CA keeps its key, subject and SKI, so what it issued still verifies against it.
 * issuer_entity is the issuing CA entity (see "CA entity" in pki_issue.h; the AKI follows its SKI)
 * or NULL for a self-signed certificate, which is then re-signed by the key it carries.
 * *out is a new enriched entity (caller json_decref()s), written only on success: a deep
 * copy of entity (same id, user fields and metadata) with chain = new leaf + the CA
 * entity's chain (the new leaf alone when self-signed). o may be NULL (now = the clock);
 * only o->now_ms is used. Borrowed arguments are not modified; no private key is returned
 * other than the renewed entity's own. TORII_EINVAL (eb says why) when the entity's chain
 * or key does not parse or match, the dates are unusable, issuer_entity is not a usable CA
 * entity, the issuer expires before now, or issuer_entity is NULL and the leaf is not
 * self-signed; TORII_EUNSUPPORTED for a key type it cannot regenerate; TORII_ETLS when
 * OpenSSL fails. */
int torii_pki_cert_renew(const json_t *entity, const json_t *issuer_entity,
                         const struct torii_pki_opts *o, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
