/* jwt_int.h - helpers shared inside the jwt module (key set lookup, claim checks).
 * Not to be included by other modules. */
#ifndef TORII_JWT_INT_H
#define TORII_JWT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "torii/jwt.h"

/** One key of a set. */
struct torii_jwt__key {
    char *kid; /* NUL-terminated copy */
    size_t kid_len;
    EVP_PKEY *key; /* own reference */
    unsigned algs;
    int64_t not_after_ms;
};

/** The keys under kid[0..len) in a sealed set, newest notAfter first: *first and the count
 * (0 when the kid is unknown; never more than TORII_JWT_KID_KEYS_MAX). */
size_t torii_jwt__keyset_find(const struct torii_jwt_keyset *ks, const char *kid, size_t len,
                              const struct torii_jwt__key **first);

/** The claim checks of torii_jwt_verify on a parsed claims object. TORII_JWT_OK or why not;
 * eb says which claim. */
enum torii_jwt_verdict torii_jwt__claims_check(const json_t *claims,
                                               const struct torii_jwt_policy *p, int64_t now_ms,
                                               struct torii_errbuf *eb);

/** 1 when the JSON text s[0..len) nests objects and arrays at most max deep (strings skipped;
 * the text is not otherwise validated). */
int torii_jwt__json_depth_ok(const char *s, size_t len, int max);

#endif
