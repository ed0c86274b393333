/* fields.c - small helpers the framing policy of both head readers (parser.c, headscan.c)
 * uses: list tokens and Content-Length in field values, the parts and the form of a
 * request-target. Pure functions, any thread. */
#include <string.h>

#include "http_int.h"

void http_conn_tokens(struct torii_slice v, int *has_close, int *has_keep)
{
    struct torii_http_list it;
    struct torii_slice el;

    torii_http_list_init(&it, v);
    while (torii_http_list_next(&it, &el)) {
        if (torii_slice_eq_ci(el, "close")) {
            *has_close = 1;
        } else if (torii_slice_eq_ci(el, "keep-alive")) {
            *has_keep = 1;
        }
    }
}

int http_parse_content_length(struct torii_slice v, int *seen, uint64_t *val)
{
    size_t i = 0;

    for (;;) {
        uint64_t n = 0;
        size_t digits = 0;
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t')) {
            i++;
        }
        while (i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9') {
            if (++digits > 18) {
                return TORII_EINVAL; /* > 10^18: far past any limit, and no overflow */
            }
            n = n * 10 + (uint64_t)(v.ptr[i] - '0');
            i++;
        }
        if (digits == 0) {
            return TORII_EINVAL;
        }
        if (*seen && n != *val) {
            return TORII_EINVAL;
        }
        *seen = 1;
        *val = n;
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t')) {
            i++;
        }
        if (i == v.len) {
            return TORII_OK;
        }
        if (v.ptr[i] != ',') {
            return TORII_EINVAL;
        }
        i++;
    }
}

void http_split_target(struct torii_http_req *req)
{
    static const char slash[] = "/";
    const char *t = req->target.ptr;
    size_t len = req->target.len;
    size_t ps = 0;
    size_t pe;

    if (len > 0 && t[0] != '/' && !(len == 1 && t[0] == '*')) {
        /* absolute-form: skip "scheme://authority" */
        const char *sep = memchr(t, ':', len);
        ps = sep != NULL ? (size_t)(sep - t) + 1 : len;
        while (ps < len && t[ps] == '/') {
            ps++;
        }
        while (ps < len && t[ps] != '/' && t[ps] != '?') {
            ps++;
        }
    }
    pe = ps;
    while (pe < len && t[pe] != '?') {
        pe++;
    }
    req->path.ptr = t + ps;
    req->path.len = pe - ps;
    if (req->path.len == 0) {
        req->path.ptr = slash;
        req->path.len = 1;
    }
    if (pe < len) {
        req->query.ptr = t + pe + 1;
        req->query.len = len - pe - 1;
    } else {
        req->query.ptr = t + len;
        req->query.len = 0;
    }
}

int http_target_form_ok(const struct torii_http_req *req, int options)
{
    struct torii_slice t = req->target;

    if (t.len == 0) {
        return 0;
    }
    if (t.ptr[0] == '/') {
        return 1;
    }
    if (t.len == 1 && t.ptr[0] == '*') {
        return options;
    }
    if (t.len > 7 && torii_slice_eq_ci((struct torii_slice){t.ptr, 7}, "http://")) {
        return 1;
    }
    return t.len > 8 && torii_slice_eq_ci((struct torii_slice){t.ptr, 8}, "https://");
}
