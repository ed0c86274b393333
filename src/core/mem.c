/* mem.c - allocation helpers, randomness and ids. */
#include "torii/mem.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "torii/log.h"

__attribute__((noreturn)) static void mem_oom(size_t n)
{
    torii_log(TORII_LOG_ERR, "mem: allocation of %zu bytes failed, aborting", n);
    abort();
}

void *torii_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        mem_oom(n);
    }
    return p;
}

void *torii_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        mem_oom(n * sz);
    }
    return p;
}

void *torii_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        mem_oom(n);
    }
    return q;
}

char *torii_xstrdup(const char *s)
{
    return torii_xstrndup(s, strlen(s));
}

char *torii_xstrndup(const char *s, size_t n)
{
    char *p = torii_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void torii_secure_free(void *p, size_t len)
{
    if (p == NULL) {
        return;
    }
    OPENSSL_cleanse(p, len);
    free(p);
}

int torii_rand_bytes(void *buf, size_t len)
{
    if (len > (size_t)INT32_MAX || RAND_bytes(buf, (int)len) != 1) {
        return TORII_EIO;
    }
    return TORII_OK;
}

int torii_rand_alnum(char *out, size_t n)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[64];
    size_t i = 0;

    while (i < n) {
        if (torii_rand_bytes(r, sizeof(r)) != TORII_OK) {
            return TORII_EIO;
        }
        for (size_t j = 0; j < sizeof(r) && i < n; j++) {
            if (r[j] < 248) { /* 248 = 4 * 62: reject to keep the draw uniform */
                out[i++] = set[r[j] % 62];
            }
        }
    }
    out[n] = '\0';
    return TORII_OK;
}

int torii_uuid_id(const char *prefix, char *out, size_t outlen)
{
    unsigned char u[16];
    int n;

    if (torii_rand_bytes(u, sizeof(u)) != TORII_OK) {
        return TORII_EIO;
    }
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    n = snprintf(out, outlen,
                 "%s%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix,
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
                 u[13], u[14], u[15]);
    if (n < 0 || (size_t)n >= outlen) {
        return TORII_EINVAL;
    }
    return TORII_OK;
}
