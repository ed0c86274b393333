/* codec.h - text codecs shared by every module that reads encoded peer bytes: base64
 * (RFC 4648 sections 4 and 5), hex, and percent-decoding (RFC 3986 section 2.1). Strict by
 * default: any byte outside the alphabet is an error, so callers never have to re-check the
 * output.
 * Threads: any thread (pure functions).
 * Ownership: (base64, percent) *out is malloc'd, NUL-terminated for convenience (not counted in
 * *out_len), owned by the caller, and written only on success. */
#ifndef TORII_CODEC_H
#define TORII_CODEC_H

#include <stddef.h>

#include "torii/err.h"

/** Decode base64: the standard alphabet or the URL-safe one ('-' and '_'), padded or not
 * (but never with padding in the middle, or more than two '=').
 * TORII_EINVAL for any other byte, a length that cannot be base64 (1 mod 4 after removing
 * padding), or non-zero trailing bits. */
int torii_b64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
    TORII_MUST_USE;

/** Decode MIME-style base64 as found between PEM armour lines (RFC 7468): the standard or
 * URL-safe alphabet, whitespace (space, tab, CR, LF) skipped anywhere, the first '=' ends the
 * data and only '=' and whitespace may follow. TORII_EINVAL for any other byte or a dangling
 * 6-bit group. */
int torii_b64_decode_mime(const char *s, size_t len, unsigned char **out, size_t *out_len)
    TORII_MUST_USE;

/** Encode base64 (RFC 4648 section 4, padded) or, with url, base64url without padding
 * (section 5). malloc'd, NUL-terminated; NULL when len is too large. */
char *torii_b64_encode(const unsigned char *data, size_t len, int url);

/** Percent-decode s[0..len). plus_space: '+' means ' ' (form encoding). TORII_EINVAL for a '%'
 * not followed by two hex digits, or a decoded NUL byte. */
int torii_pct_decode(const char *s, size_t len, int plus_space, char **out, size_t *out_len)
    TORII_MUST_USE;

/** Decode exactly 2 * out_len hex digits (either case) into out. TORII_EINVAL for any other
 * length or a non-hex character (out may then be partly written). */
int torii_hex_decode(const char *s, size_t len, unsigned char *out, size_t out_len) TORII_MUST_USE;

#endif
