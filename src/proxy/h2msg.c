/* h2msg.c - the HTTP/2 message checks of a request's fields (RFC 9113 section 8.2, 8.3),
 * made again here whatever nghttp2 checked first, so that nothing an HTTP/1.1 backend could
 * read as a different message (a smuggled request) leaves an HTTP/2 stream. Pure functions;
 * and the field list of a response HEADERS frame (struct h2_nvbuf). Threads: any. */
#include <string.h>
#include <strings.h>

#include "h2_int.h"
#include "h2up_int.h"
#include "torii/mem.h"

void torii_proxy__h2_nv_init(struct h2_nvbuf *b, const struct torii_http_header *f, size_t n,
                             size_t extra)
{
    size_t bytes = 0;

    for (size_t i = 0; i < n; i++) {
        bytes += f[i].name.len;
    }
    b->n = 0;
    b->used = 0;
    b->nv = n + extra <= H2_NV_STACK ? b->nv_s : torii_xcalloc(n + extra, sizeof(*b->nv));
    b->names = bytes <= sizeof(b->names_s) ? b->names_s : torii_xcalloc(1, bytes);
}

/* Bytes of 8 at once (SWAR: each byte of a 64-bit word a lane; names and values are short,
 * a loop per byte costs several instructions per byte). */
#define H2_ONES  0x0101010101010101ULL
#define H2_HIGHS 0x8080808080808080ULL

/* 1 when one of the 8 bytes of w equals c. */
static int h2_has8(uint64_t w, uint8_t c)
{
    uint64_t x = w ^ (H2_ONES * c);

    return ((x - H2_ONES) & ~x & H2_HIGHS) != 0;
}

void torii_proxy__h2_nv_add(struct h2_nvbuf *b, struct torii_slice name, struct torii_slice value)
{
    char *lc = b->names + b->used;

    (void)torii_h2up__lower(lc, name);
    b->used += name.len;
    /* nghttp2_nv wants non-const pointers; nghttp2 copies what they point to */
    b->nv[b->n++] = (nghttp2_nv){(uint8_t *)lc, (uint8_t *)(uintptr_t)value.ptr, name.len,
                                 value.len, NGHTTP2_NV_FLAG_NONE};
}

void torii_proxy__h2_nv_free(struct h2_nvbuf *b)
{
    if (b->nv != b->nv_s) {
        free(b->nv);
    }
    if (b->names != b->names_s) {
        free(b->names);
    }
}

/* tchar of RFC 9110 section 5.6.2, lower case only (RFC 9113 section 8.2.1). */
static int h2_name_char(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
        return 1; /* nearly every byte of a usual name, without the strchr */
    }
    return c != 0 && strchr("!#$%&'*+.^_`|~", c) != NULL;
}

/* p[0..n) is the string literal s (its length known at compile time). */
#define H2_IS(p, n, s) ((n) == sizeof(s) - 1 && memcmp((p), (s), sizeof(s) - 1) == 0)

int torii_proxy__h2_conn_specific(const char *name, size_t n)
{
    const char *want;

    switch (n) { /* the length and the first letter rule out most names before any compare */
    case 7:
        want = "upgrade";
        break;
    case 10:
        want = (name[0] | 0x20) == 'c' ? "connection" : "keep-alive";
        break;
    case 16:
        want = "proxy-connection";
        break;
    case 17:
        want = "transfer-encoding";
        break;
    default:
        return 0;
    }
    return (name[0] | 0x20) == want[0] && strncasecmp(name, want, n) == 0;
}

int torii_proxy__h2_trailer_ok(const char *name, size_t n)
{
    static const char *const never[] = {"te",   "trailer",       "content-length",
                                        "host", "authorization", NULL};

    if (n == 0 || name[0] == ':' || torii_proxy__h2_conn_specific(name, n)) {
        return 0;
    }
    for (size_t i = 0; never[i] != NULL; i++) {
        if (strlen(never[i]) == n && strncasecmp(name, never[i], n) == 0) {
            return 0;
        }
    }
    return 1;
}

static int h2_value_ok(const uint8_t *v, size_t n)
{
    uint64_t w;
    size_t i = 0;

    if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')) {
        return 0;
    }
    for (; i + 8 <= n; i += 8) { /* no NUL, CR or LF: 8 bytes a test */
        memcpy(&w, v + i, 8);
        if (h2_has8(w, '\0') || h2_has8(w, '\r') || h2_has8(w, '\n')) {
            return 0;
        }
    }
    for (; i < n; i++) {
        if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n') {
            return 0;
        }
    }
    return 1;
}

static enum h2_field_kind h2_pseudo_kind(const uint8_t *name, size_t nlen, const char **why)
{
    if (H2_IS(name, nlen, ":method") || H2_IS(name, nlen, ":scheme")
        || H2_IS(name, nlen, ":authority") || H2_IS(name, nlen, ":path")
        || H2_IS(name, nlen, ":protocol")) {
        return H2F_PSEUDO;
    }
    *why = "unknown pseudo-header field";
    return H2F_MALFORMED;
}

enum h2_field_kind torii_proxy__h2_field_kind(const uint8_t *name, size_t nlen,
                                              const uint8_t *value, size_t vlen, const char **why)
{
    *why = NULL;
    if (nlen == 0) {
        *why = "empty field name";
        return H2F_MALFORMED;
    }
    if (!h2_value_ok(value, vlen)) {
        *why = "NUL, CR, LF or surrounding whitespace in a field value";
        return H2F_MALFORMED;
    }
    if (name[0] == ':') {
        return h2_pseudo_kind(name, nlen, why);
    }
    for (size_t i = 0; i < nlen; i++) {
        if (!h2_name_char(name[i])) {
            *why = "field name not a lower-case token";
            return H2F_MALFORMED;
        }
    }
    if (torii_proxy__h2_conn_specific((const char *)name, nlen)) {
        *why = "connection-specific field";
        return H2F_MALFORMED;
    }
    if (H2_IS(name, nlen, "te") && !H2_IS(value, vlen, "trailers")) {
        *why = "te other than \"trailers\"";
        return H2F_MALFORMED;
    }
    return H2F_REGULAR;
}

/* Visible ASCII only (no space, no control, nothing above 0x7e): what a request line or Host
 * field may carry of a pseudo-header value. */
static int h2_visible(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int h2_token(const char *s)
{
    for (; *s != '\0'; s++) {
        uint8_t c = (uint8_t)*s;
        if (!(c >= 'A' && c <= 'Z') && !h2_name_char(c)) { /* methods are upper case */
            return 0;
        }
    }
    return 1;
}

int torii_proxy__h2_pseudo_check(const char *method, const char *scheme, const char *authority,
                                 const char *path, const char *host, const char **why)
{
    *why = NULL;
    if (method == NULL || scheme == NULL || path == NULL) {
        *why = ":method, :scheme or :path missing";
    } else if (method[0] == '\0' || !h2_token(method)) {
        *why = ":method is not a token";
    } else if (strcmp(scheme, "https") != 0) {
        *why = ":scheme is not https";
    } else if (path[0] != '/' && !(strcmp(path, "*") == 0 && strcmp(method, "OPTIONS") == 0)) {
        *why = ":path is not an absolute path";
    } else if (!h2_visible(path) || (authority != NULL && !h2_visible(authority))
               || (host != NULL && !h2_visible(host))) {
        *why = "space or control character in :path, :authority or host";
    } else if (authority == NULL && host == NULL) {
        *why = "neither :authority nor host";
    } else if (authority != NULL && host != NULL && strcasecmp(authority, host) != 0) {
        *why = ":authority and host differ";
    }
    return *why != NULL ? -1 : 0;
}

size_t torii_proxy__h2_digits(char b[24], uint64_t v)
{
    size_t k = 24;

    do {
        b[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return k;
}
