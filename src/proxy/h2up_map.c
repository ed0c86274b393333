/* h2up_map.c - the pure pieces of HTTP/2 towards backends: an HTTP/1.1 request head as
 * nghttp2 header fields, response fields as HTTP/1.1 lines, the grpc-timeout header and the
 * gRPC content type. No I/O, no state. Any thread. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2up_int.h"
#include "torii/mem.h"

int torii_h2up__is_grpc(const struct torii_slice *ctype)
{
    static const char pre[] = "application/grpc";
    size_t n = sizeof(pre) - 1;

    if (ctype == NULL || ctype->len < n
        || !torii_slice_eq_ci((struct torii_slice){ctype->ptr, n}, pre)) {
        return 0;
    }
    return ctype->len == n || ctype->ptr[n] == '+' || ctype->ptr[n] == ';';
}

int torii_h2up__grpc_timeout_ms(struct torii_slice v, uint64_t *ms)
{
    uint64_t n = 0;
    uint64_t per_ms_num = 1; /* the value in ms is n * num / den, rounded up */
    uint64_t den = 1;

    /* grpc-timeout: TimeoutValue (1 to 8 ASCII digits) TimeoutUnit (one letter). */
    if (v.len < 2 || v.len > 9) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') {
            return TORII_EINVAL;
        }
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    switch (v.ptr[v.len - 1]) {
    case 'H':
        per_ms_num = 3600000;
        break;
    case 'M':
        per_ms_num = 60000;
        break;
    case 'S':
        per_ms_num = 1000;
        break;
    case 'm':
        break;
    case 'u':
        den = 1000;
        break;
    case 'n':
        den = 1000000;
        break;
    default:
        return TORII_EINVAL;
    }
    n = (n * per_ms_num + den - 1) / den; /* at most 99999999 h: no overflow */
    *ms = n > 0 ? n : 1;
    return TORII_OK;
}

/* Connection-specific fields (RFC 9113 section 8.2.2) and Host (sent as :authority). */
static int map_req_drop(struct torii_slice n)
{
    static const char *const drop[] = {
        "Host",    "Connection", "Keep-Alive",        "Proxy-Connection",
        "Upgrade", "TE",         "Transfer-Encoding", NULL};

    for (size_t i = 0; drop[i] != NULL; i++) {
        if (torii_slice_eq_ci(n, drop[i])) {
            return 1;
        }
    }
    return 0;
}

#define LOWER_ONES  0x0101010101010101ULL
#define LOWER_HIGHS 0x8080808080808080ULL

/* Upper-case ASCII letters of the 8 bytes of w lower-cased, every other byte unchanged (each
 * byte a lane of the 64-bit word). */
static uint64_t lower8(uint64_t w)
{
    uint64_t low7 = w & ~LOWER_HIGHS;                     /* each byte below 0x80 */
    uint64_t ge_a = low7 + LOWER_ONES * (0x80 - 'A');     /* high bit: byte >= 'A' */
    uint64_t gt_z = low7 + LOWER_ONES * (0x80 - 'Z' - 1); /* high bit: byte > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~w & LOWER_HIGHS;     /* 'A'..'Z', no byte >= 0x80 */

    return w | (upper >> 2); /* 0x80 >> 2 = 0x20, the case bit */
}

/* 8 bytes at a time, the last 8 overlapping the ones before (lower-casing twice changes
 * nothing); a name under 8 bytes one by one. Both directions' field names (h2msg.c too). */
const char *torii_h2up__lower(char *dst, struct torii_slice name)
{
    const char *src = name.ptr;
    size_t n = name.len;
    uint64_t w;

    if (n < 8) {
        for (size_t k = 0; k < n; k++) {
            char c = src[k];
            dst[k] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        return dst;
    }
    for (size_t k = 0; k + 8 < n; k += 8) {
        memcpy(&w, src + k, 8);
        w = lower8(w);
        memcpy(dst + k, &w, 8);
    }
    memcpy(&w, src + n - 8, 8);
    w = lower8(w);
    memcpy(dst + n - 8, &w, 8);
    return dst;
}

static nghttp2_nv map_nv(const char *name, size_t nlen, const char *value, size_t vlen)
{
    nghttp2_nv nv;

    nv.name = (uint8_t *)(uintptr_t)name;
    nv.namelen = nlen;
    nv.value = (uint8_t *)(uintptr_t)value;
    nv.valuelen = vlen;
    nv.flags = NGHTTP2_NV_FLAG_NONE;
    return nv;
}

int torii_h2up__req_nv(const struct torii_http_req *req, int tls, nghttp2_nv **nv, size_t *n,
                       char **store)
{
    const struct torii_slice *host = torii_http_req_header(req, "Host");
    size_t names = 0;
    size_t k = 0;
    size_t at = 0;
    nghttp2_nv *v = NULL;
    char *st = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(host != NULL && host->len > 0, TORII_EINVAL);
    for (size_t i = 0; i < req->n_headers; i++) {
        names += req->headers[i].name.len;
    }
    v = torii_xcalloc(req->n_headers + 5, sizeof(*v));
    st = torii_xcalloc(names + 1, 1);
    v[k++] = map_nv(":method", 7, req->method, strlen(req->method));
    v[k++] = map_nv(":scheme", 7, tls ? "https" : "http", tls ? 5 : 4);
    v[k++] = map_nv(":authority", 10, host->ptr, host->len);
    v[k++] = map_nv(":path", 5, req->target.ptr, req->target.len);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct torii_http_header *h = &req->headers[i];
        if (!map_req_drop(h->name)) {
            v[k++] = map_nv(torii_h2up__lower(st + at, h->name), h->name.len, h->value.ptr,
                            h->value.len);
            at += h->name.len;
        }
    }
    if (torii_h2up__is_grpc(torii_http_req_header(req, "Content-Type"))) {
        v[k++] = map_nv("te", 2, "trailers", 8); /* gRPC servers ask for it */
    }
    *nv = v;
    *n = k;
    *store = st;
    v = NULL;
    st = NULL;
out:
    free(v);
    free(st);
    return rc;
}

int torii_h2up__field_line(struct evbuffer *out, struct torii_slice name, struct torii_slice value)
{
    static const char *const skip[] = {"connection",        "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade",    NULL};

    if (name.len == 0 || name.ptr[0] == ':') {
        return TORII_OK;
    }
    for (size_t i = 0; skip[i] != NULL; i++) {
        if (torii_slice_eq_ci(name, skip[i])) {
            return TORII_OK;
        }
    }
    if (evbuffer_add(out, name.ptr, name.len) != 0 || evbuffer_add(out, ": ", 2) != 0
        || evbuffer_add(out, value.ptr, value.len) != 0 || evbuffer_add(out, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

int torii_h2up__status_line(struct evbuffer *out, int status)
{
    const char *reason = torii_http_reason(status);

    if (reason == NULL || reason[0] == '\0') {
        reason = "Status";
    }
    return evbuffer_add_printf(out, "HTTP/1.1 %03d %s\r\n", status, reason) > 0 ? TORII_OK
                                                                                : TORII_ENOMEM;
}
