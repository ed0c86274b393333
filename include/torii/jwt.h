/* jwt.h - JSON Web Tokens at the edge: compact JWS (RFC 7515) parsing and verification against
 * an immutable key set, JWT claim checks (RFC 7519), and signing (docs/jwt.md).
 * Accepted algorithms (RFC 7518, RFC 8037), each only with its key type: ES256 (P-256),
 * ES384 (P-384), RS256 and PS256 (RSA >= 2048 bits), EdDSA (Ed25519). Never "none", never an
 * HMAC (HS*): a public key is not a secret. Tokens over TORII_JWT_MAX_TOKEN bytes are refused
 * before any decoding. A token must name its key with "kid"; the key set is the only source of
 * keys (jku, jwk, x5u and x5c header parameters are refused, see docs/jwt.md).
 * Types: struct torii_jwt_keyset (kid -> public key, allowed algorithms, notAfter), built once,
 * then sealed and shared by reference; struct torii_jwt_policy (what a route accepts).
 * Threads: verification and signing on any thread; a key set is built on one thread, then
 * any thread (immutable after publish).
 * Ownership: a key set takes its own reference on each EVP_PKEY; claims returned by a
 * verification are a new json_t reference the caller json_decref()s. Private keys are never
 * decoded here: signing takes an EVP_PKEY the pki module decoded. */
#ifndef TORII_JWT_H
#define TORII_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "torii/err.h"

#define TORII_JWT_MAX_TOKEN    8192 /* bytes of a compact token */
#define TORII_JWT_MAX_DEPTH    8    /* JSON nesting of header and claims */
#define TORII_JWT_MAX_AUD      32   /* entries of an "aud" array */
#define TORII_JWT_MAX_KID      256  /* bytes of a kid */
#define TORII_JWT_KID_KEYS_MAX 4    /* keys under one kid (the live key + rotated ones) */
/* A key kid is "<store id>.<t>", t = base64url of the first 16 bytes of the key's RFC 7638
 * thumbprint (22 characters); a route's "keys" entry <id> accepts both "<id>" and "<id>.<t>". */
#define TORII_JWT_KID_THUMB_BYTES 16
#define TORII_JWT_KID_THUMB_LEN   22

/** JWS algorithms, as bits of an allow-list. */
enum torii_jwt_alg {
    TORII_JWT_ES256 = 1u << 0,
    TORII_JWT_ES384 = 1u << 1,
    TORII_JWT_RS256 = 1u << 2,
    TORII_JWT_PS256 = 1u << 3,
    TORII_JWT_EDDSA = 1u << 4,
};
#define TORII_JWT_ALGS_ALL 0x1fu

/** The "alg" name of one algorithm bit ("ES256"...); NULL for anything else. */
const char *torii_jwt_alg_name(unsigned alg);
/** The bit of an "alg" name (exact, case-sensitive as RFC 7515 4.1.1 says); 0 when the name
 * is not one we accept (none, HS256, RS384...). */
unsigned torii_jwt_alg_parse(const char *name, size_t len);
/** The algorithms a public key may verify: ES256 for P-256, ES384 for P-384, RS256|PS256 for
 * RSA of 2048 bits or more, EdDSA for Ed25519; 0 for every other key (RSA below 2048, other
 * curves, Ed448, DSA...). */
unsigned torii_jwt_key_algs(EVP_PKEY *key);

/** Why a token was refused (or TORII_JWT_OK); also the outcome label of the metrics. */
enum torii_jwt_verdict {
    TORII_JWT_OK = 0,
    TORII_JWT_MALFORMED,     /* not three base64url parts, bad JSON, bad claim types, too big */
    TORII_JWT_BAD_ALG,       /* none, HS*, unknown alg, alg not allowed for the key or route */
    TORII_JWT_BAD_HEADER,    /* crit, jku/jwk/x5u/x5c, cty, zip, b64, an unknown typ */
    TORII_JWT_UNKNOWN_KEY,   /* no kid, kid not in the set (or not allowed), key expired */
    TORII_JWT_BAD_SIGNATURE, /* the signature does not verify with any key of the kid */
    TORII_JWT_EXPIRED,       /* now >= exp + leeway, or no exp */
    TORII_JWT_NOT_YET_VALID, /* now + leeway < nbf, or iat in the future */
    TORII_JWT_BAD_ISSUER,    /* iss missing or not the expected one */
    TORII_JWT_BAD_AUDIENCE,  /* aud missing, none matches, or present when none is expected */
};
/** "ok", "malformed", "bad_alg", ...: a static string, never NULL. */
const char *torii_jwt_verdict_name(enum torii_jwt_verdict v);

/* ---- metrics: torii_jwt_verifications_total{route,outcome} ---- */

/** Outcomes counted besides the verdicts: no token where the route reads it, and a claim that
 * cannot be sent as a header (not a string, number or boolean; a control character). */
#define TORII_JWT_OUTCOME_MISSING   ((unsigned)TORII_JWT_BAD_AUDIENCE + 1u)
#define TORII_JWT_OUTCOME_BAD_CLAIM ((unsigned)TORII_JWT_BAD_AUDIENCE + 2u)
#define TORII_JWT_OUTCOMES          ((unsigned)TORII_JWT_BAD_AUDIENCE + 3u)
/** Routes counted one by one (by index); higher indexes share the route label "other". */
#define TORII_JWT_METRIC_ROUTES 1024u

/** The label of an outcome: torii_jwt_verdict_name, "missing", "bad_claim". */
const char *torii_jwt_outcome_name(unsigned outcome);
/** Count one verification of route `route` (its index in routes[]). Lock-free; any thread. */
void torii_jwt_metrics_count(unsigned route, unsigned outcome);
/** The count so far (tests). */
uint64_t torii_jwt_metrics_get(unsigned route, unsigned outcome);
struct torii_prom;
/** The family torii_jwt_verifications_total, with every outcome of each route that counted at
 * least one verification (none before the first). */
void torii_jwt_metrics_write(struct torii_prom *p);

/* ---- key set ---- */

struct torii_jwt_keyset;

/** An empty, unsealed key set (refcount 1). Never NULL (aborts on OOM). */
struct torii_jwt_keyset *torii_jwt_keyset_new(void);

/** Add public key `pub` (a reference is taken; a private key works too, only its public half is
 * used) under kid[0..kid_len), usable until not_after_ms (exclusive; INT64_MAX: no end).
 * Several keys may share a kid (a rotated key kept until its expiry), at most
 * TORII_JWT_KID_KEYS_MAX. TORII_EINVAL for an empty or over-long kid or a sealed set,
 * TORII_EUNSUPPORTED for a key no algorithm accepts (torii_jwt_key_algs == 0), TORII_ETOOBIG
 * when the kid already has TORII_JWT_KID_KEYS_MAX keys; eb says why. */
int torii_jwt_keyset_add(struct torii_jwt_keyset *ks, const char *kid, size_t kid_len,
                         EVP_PKEY *pub, int64_t not_after_ms, struct torii_errbuf *eb)
    TORII_MUST_USE;

/** Seal the set: from then on it is immutable and may be shared between threads. */
void torii_jwt_keyset_seal(struct torii_jwt_keyset *ks);
/** Keys in the set (all kids). */
size_t torii_jwt_keyset_count(const struct torii_jwt_keyset *ks);
/** Take a reference (atomic; any thread). Returns ks. */
struct torii_jwt_keyset *torii_jwt_keyset_ref(struct torii_jwt_keyset *ks);
/** Drop a reference; the last one frees the set and its key references. NULL accepted. */
void torii_jwt_keyset_unref(struct torii_jwt_keyset *ks);

/* ---- verification ---- */

/** What a route accepts. All pointers are borrowed for the call. */
struct torii_jwt_policy {
    unsigned algs;                /* allowed algorithms; 0 = every one the key allows */
    const char *const *kids;      /* keys the route accepts (store ids); NULL = every kid */
    size_t n_kids;                /* entries of kids */
    const char *issuer;           /* expected "iss"; NULL = not checked */
    const char *const *audiences; /* one of them must be in "aud"; NULL = aud must be absent */
    size_t n_audiences;           /* entries of audiences */
    int64_t leeway_s;             /* clock skew tolerated on exp, nbf, iat (0..3600) */
};

/** Verify a compact JWS token tok[0..len) (not NUL-terminated) at now_ms against the sealed
 * key set ks under policy p. Order: size, three parts, header (alg, kid, forbidden
 * parameters), key choice (kid -> keys not expired at now_ms, in p->kids, whose algorithms
 * include alg and p->algs), signature (each key of the kid, newest first), then claims (exp
 * required, nbf, iat, iss, aud). Nothing of the payload is trusted before its signature is.
 * *verdict is always written. On TORII_OK, *claims (may be NULL) receives the claims object
 * (a new reference). TORII_EPERM for a refused token (verdict says why; eb gives detail fit
 * for a log line, never the token), TORII_EINVAL for a NULL argument or a negative leeway,
 * TORII_ENOMEM. No store access, no lock: the caller keeps its key set reference for the
 * call. */
int torii_jwt_verify(const struct torii_jwt_keyset *ks, const struct torii_jwt_policy *p,
                     const char *tok, size_t len, int64_t now_ms, enum torii_jwt_verdict *verdict,
                     json_t **claims, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- signing ---- */

/** Sign claims (a JSON object, borrowed, serialized as is) with key (a private key decoded by
 * the caller; borrowed) as a compact JWS with header {"alg","typ":"JWT","kid"}. alg 0 picks the
 * key's algorithm (ES256/ES384 by curve, RS256 for RSA, EdDSA for Ed25519); otherwise it must
 * be one the key allows. *out is malloc'd and NUL-terminated, *out_len its length (may be
 * NULL). TORII_EINVAL (eb says why) for claims that are not an object, an empty kid, an alg the
 * key does not allow; TORII_ETOOBIG when the token would exceed TORII_JWT_MAX_TOKEN; TORII_ETLS
 * when OpenSSL fails. */
int torii_jwt_sign(EVP_PKEY *key, unsigned alg, const char *kid, const json_t *claims, char **out,
                   size_t *out_len, struct torii_errbuf *eb) TORII_MUST_USE;

/* ---- JWS ECDSA signature form (RFC 7518 3.4) ---- */

/** Raw r||s (2 * n bytes, n = 32 for P-256, 48 for P-384) to the DER ECDSA-Sig-Value OpenSSL
 * verifies, into der[0..cap). TORII_EINVAL when raw_len is not 2 * n or n is not 32/48/66,
 * TORII_ETOOBIG when cap is too small. *der_len receives the length. */
int torii_jwt_ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *der,
                               size_t cap, size_t *der_len) TORII_MUST_USE;
/** DER ECDSA-Sig-Value to raw r||s with each half left-padded to n bytes, into raw[0..2n).
 * TORII_EINVAL when der does not decode (trailing bytes included) or r or s needs more than n
 * bytes. */
int torii_jwt_ecdsa_der_to_raw(const unsigned char *der, size_t der_len, size_t n,
                               unsigned char *raw) TORII_MUST_USE;

#endif
