/* headscan.c - the one-pass reader of a complete, ordinary message head (http_head_scan).
 * The full parser reads a head twice (its section scanner, then llhttp) and copies every
 * span through callbacks; most heads are short, complete in one read and plain. This reader
 * takes such a head in one pass and hands its spans to the parser, which records them and
 * applies the same policy as for a head read by llhttp. It accepts a strict subset of what
 * the scanner and llhttp (strict mode) both accept, and gives up (returns 0) at the first
 * byte outside it, before anything is recorded: the full parser then reads the same bytes
 * from the start, so what is accepted, rejected and reported never depends on which path
 * read a head (tests/unit/test_http_headscan.c feeds both the same heads).
 * The subset: HTTP/1.1; a request line of a common method, an origin-form target of URL
 * characters without '#' and one SP each side; a status line of 200-599 with a reason of
 * visible characters and spaces; field names of tchar; values of visible characters and
 * spaces; no Transfer-Encoding, Upgrade or Proxy-Connection field; at most one
 * Content-Length, of digits only (a response must have one); Connection only as
 * "keep-alive". http_parts_scan applies the same subset to a head given as parts (an HTTP/2
 * stream's), as if written as text. Pure functions, any thread. */
#include <stddef.h>
#include <string.h>

#include <llhttp.h>

#include "http_int.h"

/* Byte classes of the one-pass reader (bits). */
enum hs_class {
    HS_TCHAR = 1, /* a field-name byte (RFC 9110 tchar) */
    HS_VALUE = 2, /* a field-value or reason byte: VCHAR or SP */
    HS_URL = 4,   /* a request-target byte: alphanumeric or one of -._~!$&'()*+,;=:@/?% */
};

static const unsigned char hs_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 7, 2, 3, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 2, 6, 2, 6,
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 2, 2, 3, 7,
    3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 3, 2, 7, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static size_t hs_run(const char *d, size_t i, size_t len, unsigned k)
{
    while (i < len && (hs_class[(unsigned char)d[i]] & k) != 0) {
        i++;
    }
    return i;
}

/* hs_run(d, i, len, HS_TCHAR), four bytes a step while four are left (field names). */
static size_t hs_name_run(const char *d, size_t i, size_t len)
{
    while (len - i >= 4) {
        if ((hs_class[(unsigned char)d[i]] & HS_TCHAR) == 0) {
            return i;
        }
        if ((hs_class[(unsigned char)d[i + 1]] & HS_TCHAR) == 0) {
            return i + 1;
        }
        if ((hs_class[(unsigned char)d[i + 2]] & HS_TCHAR) == 0) {
            return i + 2;
        }
        if ((hs_class[(unsigned char)d[i + 3]] & HS_TCHAR) == 0) {
            return i + 3;
        }
        i += 4;
    }
    return hs_run(d, i, len, HS_TCHAR);
}

/* hs_run(d, i, len, HS_VALUE), eight bytes at a time while none of them ends the run (a byte
 * under 0x20 or over 0x7e). In the mask, the lowest flagged byte is exact (no borrow or carry
 * comes from the bytes below it), so on a little-endian machine its index is where the run
 * ends; elsewhere, and for the last bytes, the byte loop finds it. */
static size_t hs_value_run(const char *d, size_t i, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;

    while (len - i >= 8) {
        uint64_t x;
        uint64_t m;
        memcpy(&x, d + i, sizeof(x));
        m = (((x - ones * 0x20) & ~x) | ((x + ones) | x)) & highs;
        if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)__builtin_ctzll(m) / 8;
#else
            break;
#endif
        }
        i += 8;
    }
    return hs_run(d, i, len, HS_VALUE);
}

/* torii_slice_eq_ci compares the lengths first; inlined, a literal's length is a constant. */
static inline int hs_name_is(const char *n, size_t len, const char *name)
{
    return torii_slice_eq_ci((struct torii_slice){n, len}, name);
}

/* The methods of the subset: llhttp's method and the name with its SP. */
static const struct {
    const char *s;
    size_t n;
    uint8_t method;
} hs_methods[] = {{"GET ", 4, HTTP_GET},       {"HEAD ", 5, HTTP_HEAD},
                  {"POST ", 5, HTTP_POST},     {"PUT ", 4, HTTP_PUT},
                  {"DELETE ", 7, HTTP_DELETE}, {"OPTIONS ", 8, HTTP_OPTIONS},
                  {"PATCH ", 6, HTTP_PATCH}};

/* "METHOD SP origin-form SP HTTP/1.1 CRLF": the offset after it, 0 outside the subset. */
static size_t hs_request_line(const char *d, size_t len, struct http_fast_head *h)
{
    size_t i = 0;
    size_t e;

    for (size_t m = 0; m < sizeof(hs_methods) / sizeof(hs_methods[0]); m++) {
        if (len > hs_methods[m].n && memcmp(d, hs_methods[m].s, hs_methods[m].n) == 0) {
            h->method = hs_methods[m].method;
            i = hs_methods[m].n;
            break;
        }
    }
    if (i == 0 || d[i] != '/') {
        return 0;
    }
    e = hs_run(d, i, len, HS_URL);
    if (len - e < 11 || memcmp(d + e, " HTTP/1.1\r\n", 11) != 0) {
        return 0;
    }
    h->line_off = i;
    h->line_len = e - i;
    return e + 11;
}

/* "HTTP/1.1 SP 3DIGIT SP reason CRLF" with a status of 200-599: the offset after it, or 0. */
static size_t hs_status_line(const char *d, size_t len, struct http_fast_head *h)
{
    size_t e;

    if (len < 14 || memcmp(d, "HTTP/1.1 ", 9) != 0 || d[9] < '2' || d[9] > '5' || d[10] < '0'
        || d[10] > '9' || d[11] < '0' || d[11] > '9' || d[12] != ' ') {
        return 0;
    }
    h->status = (uint16_t)((d[9] - '0') * 100 + (d[10] - '0') * 10 + (d[11] - '0'));
    e = hs_value_run(d, 13, len);
    if (e == 13 || len - e < 2 || d[e] != '\r' || d[e + 1] != '\n') {
        return 0;
    }
    h->line_off = 13;
    h->line_len = e - 13;
    return e + 2;
}

/* The fields that change the framing or the connection: 1 to go on, 0 outside the subset. */
static int hs_special(struct http_fast_head *h, const char *n, size_t nl, const char *v, size_t vl)
{
    switch (nl) {
    case 7:
        return !hs_name_is(n, nl, "Upgrade");
    case 10:
        return !hs_name_is(n, nl, "Connection") || hs_name_is(v, vl, "keep-alive");
    case 14:
        if (!hs_name_is(n, nl, "Content-Length")) {
            return 1;
        }
        if (h->has_cl || vl == 0 || vl > 18) {
            return 0;
        }
        h->has_cl = 1;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9') {
                return 0;
            }
            h->cl = h->cl * 10 + (uint64_t)(v[i] - '0');
        }
        return 1;
    case 16:
        return !hs_name_is(n, nl, "Proxy-Connection");
    case 17:
        return !hs_name_is(n, nl, "Transfer-Encoding");
    default:
        return 1;
    }
}

/* Field lines up to and with the empty line, from i: the head's length, or 0. */
static size_t hs_fields(const char *d, size_t i, size_t len, struct http_fast_head *h)
{
    while (i < len) {
        size_t ne;
        size_t vs;
        size_t ve;

        if (d[i] == '\r') {
            return len - i >= 2 && d[i + 1] == '\n' ? i + 2 : 0;
        }
        ne = hs_name_run(d, i, len);
        if (ne == i || ne >= len || d[ne] != ':' || h->n == HTTP_FAST_MAX_FIELDS) {
            return 0;
        }
        vs = ne + 1;
        while (vs < len && d[vs] == ' ') {
            vs++;
        }
        ve = hs_value_run(d, vs, len);
        if (len - ve < 2 || d[ve] != '\r' || d[ve + 1] != '\n') {
            return 0;
        }
        h->f[h->n].name_off = i;
        h->f[h->n].name_len = ne - i;
        h->f[h->n].val_off = vs;
        h->f[h->n].val_len = ve - vs; /* trailing spaces kept: the parser trims them */
        if (!hs_special(h, d + i, ne - i, d + vs, ve - vs)) {
            return 0;
        }
        h->n++;
        i = ve + 2;
    }
    return 0;
}

int http_head_scan(const char *d, size_t len, int response, struct http_fast_head *h)
{
    size_t i;

    /* Everything but the field table (about 1 KiB), whose entries below h->n are written
     * before they are read: two heads per keep-alive request clear 80 bytes, not 2 KiB. */
    memset(h, 0, offsetof(struct http_fast_head, f));
    i = response ? hs_status_line(d, len, h) : hs_request_line(d, len, h);
    if (i == 0 || (h->head_len = hs_fields(d, i, len, h)) == 0) {
        return 0;
    }
    return !response || h->has_cl;
}

int http_parts_scan(const char *method, struct torii_slice target,
                    const struct torii_http_header *f, size_t n, struct http_fast_head *h)
{
    size_t ml = strlen(method);
    size_t m = 0;

    memset(h, 0, offsetof(struct http_fast_head, f)); /* f stays unused: the parts are f */
    while (m < sizeof(hs_methods) / sizeof(hs_methods[0])
           && (hs_methods[m].n != ml + 1 || memcmp(method, hs_methods[m].s, ml) != 0)) {
        m++;
    }
    if (m == sizeof(hs_methods) / sizeof(hs_methods[0]) || target.len == 0 || target.ptr[0] != '/'
        || hs_run(target.ptr, 0, target.len, HS_URL) != target.len || n > HTTP_FAST_MAX_FIELDS) {
        return 0;
    }
    h->method = hs_methods[m].method;
    h->line_len = target.len;
    h->head_len = ml + 1 + target.len + 11 + 2; /* "M SP target SP HTTP/1.1 CRLF" ... CRLF */
    for (size_t i = 0; i < n; i++) {
        const struct torii_http_header *x = &f[i];
        if (x->name.len == 0 || hs_run(x->name.ptr, 0, x->name.len, HS_TCHAR) != x->name.len
            || (x->value.len > 0 && x->value.ptr[0] == ' ')
            || hs_value_run(x->value.ptr, 0, x->value.len) != x->value.len
            || !hs_special(h, x->name.ptr, x->name.len, x->value.ptr, x->value.len)) {
            return 0;
        }
        h->head_len += x->name.len + 2 + x->value.len + 2; /* "name: value CRLF" */
    }
    h->n = n;
    return 1;
}
