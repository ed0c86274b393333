/* pki_entity.h - the certificate entity JSON (Otoroshi-compatible fields and defaults):
 * template, normalize, enrich (fields derived from the PEM chain and key), certType, the
 * redacted copy and secret wiping, and the first-start self-signed entity. Part of pki.h.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: json_t arguments are borrowed unless stated; returned objects are new
 * references the caller json_decref()s. */
#ifndef TORII_PKI_ENTITY_H
#define TORII_PKI_ENTITY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/mem.h"

struct torii_kek_ring;

/* ---- entity ---- */

/** A fresh entity with every field at its default (id "cert_<uuid>"). NULL on OOM. */
json_t *torii_cert_template(void);

/** Check the types of known fields of a user-supplied entity and fill in every missing field
 * with its default (seed/reference defaults). Unknown top-level fields are rejected
 * (TORII_EINVAL naming the field). Output-only fields (certType) are dropped. JSON null on a
 * non-nullable field counts as absent; a blank password becomes null; a missing id becomes
 * "certificate_<uuid>"; from/to default to now. Nothing is changed when a check fails.
 * Fields are re-ordered as the reference serializer writes them. */
int torii_cert_normalize(json_t *entity, struct torii_errbuf *eb) TORII_MUST_USE;

/** Normalize (as above), then parse chain (PEM, leaf first) and privateKey (PEM, optionally
 * encrypted with password)
 * and set the derived fields: subject, domain, sans (DNS + IP), from, to (ms), ca,
 * selfSigned, valid (not expired at now_ms, not revoked, key matches leaf, chain links up),
 * and certType. The chain is re-emitted as clean PEM. Returns TORII_EINVAL with a message in
 * eb for: empty/garbage chain, garbage key, wrong password, key not matching the leaf.
 * No privateKey ("") is allowed (trust anchor; valid=false). subject is the reference's
 * normalized DN: attribute names upper-cased, sorted descending, ", "-joined. domain = CN,
 * else first SAN, else the RFC 2253 subject. name/description still at "none" (domain was
 * unknown at normalize) get the derived domain. On error the entity may be normalized but
 * no derived field is changed. */
int torii_cert_enrich(json_t *entity, int64_t now_ms, struct torii_errbuf *eb) TORII_MUST_USE;
/** torii_cert_enrich of a stored entity, whose privateKey may be sealed: opened with kek (NULL:
 * none loaded) through torii_pki_key_open. */
int torii_cert_enrich_kek(json_t *entity, const struct torii_kek_ring *kek, int64_t now_ms,
                          struct torii_errbuf *eb) TORII_MUST_USE;

/** The certType the entity's flags give (client, ca, letsEncrypt, keypair, selfSigned, in that
 * order, else certificate), as torii_cert_enrich sets it. A static string. */
const char *torii_cert_type(const json_t *entity);

/** Copy of the entity with privateKey and password removed (for alerts and logs). */
json_t *torii_cert_redacted(const json_t *entity);

/** Overwrite the bytes of the entity's privateKey and password strings with zeros, in place,
 * before the last json_decref of an entity that was read only for its public parts (jansson
 * does not wipe what it frees). Absent fields and non-strings are skipped; NULL is ignored. */
void torii_cert_secrets_wipe(json_t *entity);

/** Generate the first-start default certificate: a fresh ECDSA P-256 key and a self-signed
 * server certificate (CN = dns_names[0] when <= 64 chars, SAN = all names (IP literals become
 * IP SANs), BasicConstraints CA:false, KeyUsage digitalSignature, EKU serverAuth, random
 * 128-bit serial, valid from now_ms for `days` days), returned as a normalized and enriched
 * entity with autoRenew true. id NULL -> "cert_<uuid>". Names are borrowed.
 * TORII_EINVAL (eb says why) for no names, a name that is neither a DNS name nor an IP,
 * days outside 1..36500; TORII_ETLS when OpenSSL fails. *out is written only on success. */
int torii_cert_generate_selfsigned(const char *id, const char *const *dns_names, size_t n_names,
                                   int64_t now_ms, int days, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
