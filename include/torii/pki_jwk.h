/* pki_jwk.h - certificate entities as JSON Web Keys: the JWKS document (RFC 7517) and JWTs
 * signed or verified with an entity's key pair. Part of pki.h.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: inputs are borrowed; outputs are new references or malloc'd strings. */
#ifndef TORII_PKI_JWK_H
#define TORII_PKI_JWK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

struct torii_kek_ring;

/* ---- JWKS (RFC 7517) ---- */

/** {"keys":[...]} from an array of entities (borrowed). One JWK per entity that is exposed,
 * not revoked, and has a chain and a privateKey that parse and match: RSA -> kty, n, e, alg
 * RS256; EC -> kty, crv, x, y, alg ES256/ES384/ES512 by curve; Ed25519 -> kty OKP, crv
 * Ed25519, x, alg EdDSA (RFC 8037); kid = entity id, use "sig",
 * x5c (standard base64 DER of the chain), x5t#S256 (base64url SHA-256 of the leaf DER);
 * base64url without padding. Other key types and broken entries are skipped (logged at WARN
 * with the id); they never break the document. Each key is listed a second time, after all
 * of the above, under its key kid "<id>.<thumbprint>" (docs/jwt.md, Key ids). A non-array
 * counts as empty. NULL on OOM. */
json_t *torii_pki_jwks_build(const json_t *entities, const struct torii_kek_ring *kek);

/** Mint a JWT with an entity's key pair (core of POST /api/certificates/:id/_sign): a copy of
 * claims (a JSON object, borrowed) with iat = now and exp = now + lifetime_s (any iat/exp the
 * caller gave are replaced), signed with the entity's private key as torii_jwt_sign does
 * (header kid = the key kid "<id>.<thumbprint>", docs/jwt.md; alg from the key). *out is a malloc'd
 * NUL-terminated token. TORII_EINVAL (eb says why) for: claims not an object, lifetime_s
 * outside 1..366 days, a revoked or not exposed entity (no verifier could find its key), no private
 * key or one that does not match the leaf, a key type without a JWS algorithm, exp past the leaf's
 * notAfter. TORII_ETOOBIG for a token over 8 KiB. */
int torii_pki_jwt_sign(const json_t *entity, const struct torii_kek_ring *kek, const json_t *claims,
                       int64_t lifetime_s, int64_t now_ms, char **out, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Check a token against one entity's key (core of POST /api/certificates/:id/_verify): the
 * public key of the leaf of its chain under kid = entity id and its key kid, usable until the
 * leaf's notAfter; policy p (borrowed; its kids are ignored) as torii_jwt_verify. A revoked
 * entity's key verifies nothing (*verdict unknown_key). Returns torii_jwt_verify's code
 * (TORII_EPERM for a refused token, *verdict says why, eb the detail), or TORII_EINVAL when the
 * entity has no usable public key (eb says why). On TORII_OK *claims (may be NULL) is a new
 * reference. */
struct torii_jwt_policy;
enum torii_jwt_verdict;
int torii_pki_jwt_verify(const json_t *entity, const struct torii_jwt_policy *p, const char *tok,
                         size_t len, int64_t now_ms, enum torii_jwt_verdict *verdict,
                         json_t **claims, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
