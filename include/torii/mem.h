/* mem.h - allocation helpers (abort on OOM for internal sizes), slices, randomness, ids.
 * Threads: any thread.
 * Ownership: torii_x* return memory the caller frees with free(); torii_secure_free wipes first. */
#ifndef TORII_MEM_H
#define TORII_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "torii/err.h"

/* Never NULL (out of memory aborts); the attribute tells the compiler and the analyzer so. */
#define TORII_RETURNS_NONNULL __attribute__((returns_nonnull))
void *torii_xmalloc(size_t n) TORII_RETURNS_NONNULL;
void *torii_xcalloc(size_t n, size_t sz) TORII_RETURNS_NONNULL;
void *torii_xrealloc(void *p, size_t n) TORII_RETURNS_NONNULL;
char *torii_xstrdup(const char *s) TORII_RETURNS_NONNULL;
char *torii_xstrndup(const char *s, size_t n) TORII_RETURNS_NONNULL;
/** Wipe len bytes then free; NULL accepted. */
void torii_secure_free(void *p, size_t len);

#define TORII_FREE(p)                                                                              \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

/** Peer bytes: never assumed NUL-terminated. */
struct torii_slice {
    const char *ptr;
    size_t len;
};

/** Cryptographically strong random bytes (OpenSSL RAND_bytes). */
int torii_rand_bytes(void *buf, size_t len) TORII_MUST_USE;
/** Random [A-Za-z0-9] string of n chars into out (size >= n+1). */
int torii_rand_alnum(char *out, size_t n) TORII_MUST_USE;
/** "<prefix><uuid v4>" into out (size >= strlen(prefix)+37). */
int torii_uuid_id(const char *prefix, char *out, size_t outlen) TORII_MUST_USE;

/** Case-insensitive ASCII compare of a slice with a C string. Inline: the header rules of
 * the proxy call it a few dozen times per request, and for a literal the compiler knows its
 * length, so most calls end at the length compare. */
static inline int torii_slice_eq_ci(struct torii_slice s, const char *lit)
{
    size_t n = strlen(lit);

    if (s.len != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned a = (unsigned char)s.ptr[i];
        unsigned b = (unsigned char)lit[i];
        /* Equal, or the same letter in the other case. */
        if (a != b && ((a | 0x20u) != (b | 0x20u) || (a | 0x20u) - 'a' > 25u)) {
            return 0;
        }
    }
    return 1;
}

/** A 64-bit hash of len bytes under a seed (FNV-1a, then a 64-bit finalizer so the high bits
 * are as mixed as the low ones: split-ordered hash tables use the bit-reversed value). For
 * hash tables with a per-table random seed; not a cryptographic hash. */
static inline uint64_t torii_hash64(uint64_t seed, const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

#endif
