/* codec.c - base64 and percent-decoding; see codec.h. */
#include "torii/codec.h"

#include <stdint.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "torii/mem.h"

/* Value of a base64 character in either alphabet, or -1. */
static int codec_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

static int codec_b64_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One decoder for both entry points. mime: whitespace is skipped anywhere and the first '='
 * ends the data (only '=' and whitespace may follow; trailing bits are not checked, as PEM
 * readers do); otherwise the strict rules of torii_b64_decode. */
static int codec_b64(const char *s, size_t len, int mime, unsigned char **out, size_t *out_len)
{
    unsigned char *buf = torii_xmalloc(len / 4 * 3 + 3);
    uint32_t acc = 0;
    size_t bits = 0;
    size_t n = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        int v;
        if (mime && codec_b64_space((unsigned char)s[i])) {
            continue;
        }
        if (mime && s[i] == '=') {
            break;
        }
        v = codec_b64_val((unsigned char)s[i]);
        if (v < 0) {
            goto bad;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    for (; i < len; i++) {
        if (s[i] != '=' && !codec_b64_space((unsigned char)s[i])) {
            goto bad;
        }
    }
    if (bits >= 6 || (!mime && acc != 0)) { /* a lone 6-bit group; RFC 4648 3.5 pad bits */
        goto bad;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return TORII_OK;
bad:
    free(buf);
    return TORII_EINVAL;
}

int torii_b64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
    size_t pad = 0;

    while (pad < 2 && len > 0 && s[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0)) {
        return TORII_EINVAL;
    }
    return codec_b64(s, len, 0, out, out_len);
}

int torii_b64_decode_mime(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
    return codec_b64(s, len, 1, out, out_len);
}

static int codec_hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int torii_pct_decode(const char *s, size_t len, int plus_space, char **out, size_t *out_len)
{
    char *buf = torii_xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? codec_hex_val((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? codec_hex_val((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(buf);
                return TORII_EINVAL;
            }
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == 0) {
            free(buf);
            return TORII_EINVAL;
        }
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return TORII_OK;
}

int torii_hex_decode(const char *s, size_t len, unsigned char *out, size_t out_len)
{
    if (s == NULL || len != 2 * out_len) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i < out_len; i++) {
        int hi = codec_hex_val((unsigned char)s[2 * i]);
        int lo = codec_hex_val((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return TORII_EINVAL;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return TORII_OK;
}

size_t torii_b64_encode_to(const void *data, size_t len, int url, char *out)
{
    const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    size_t n = 0;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[n++] = abc[v >> 18];
        out[n++] = abc[(v >> 12) & 63];
        out[n++] = abc[(v >> 6) & 63];
        out[n++] = abc[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        out[n++] = abc[v >> 18];
        out[n++] = abc[(v >> 12) & 63];
        if (i + 1 < len) {
            out[n++] = abc[(v >> 6) & 63];
        } else if (!url) {
            out[n++] = '=';
        }
        if (!url) {
            out[n++] = '=';
        }
    }
    out[n] = '\0';
    return n;
}

char *torii_b64_encode(const void *data, size_t len, int url, size_t *out_len)
{
    char *s = torii_xmalloc(TORII_B64_ENCODED_MAX(len) + 1);
    size_t n = torii_b64_encode_to(data, len, url, s);

    if (out_len != NULL) {
        *out_len = n;
    }
    return s;
}
