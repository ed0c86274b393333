/* response.c - response serialization (status line, Date, framing headers), reason phrases,
 * limits defaults and request helpers. Pure functions over an evbuffer: no I/O. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "http_int.h"
#include "torii/clock.h"
#include "torii/http.h"

void torii_http_limits_default(struct torii_http_limits *lim)
{
    lim->max_header_bytes = (size_t)16 * 1024;
    lim->max_headers = 100;
    lim->max_target = (size_t)8 * 1024;
    lim->max_body = (size_t)1024 * 1024;
    lim->header_timeout_ms = 10000;
    lim->idle_timeout_ms = 60000;
    lim->max_requests = 0;
}

const struct torii_slice *torii_http_req_header(const struct torii_http_req *req, const char *name)
{
    size_t len = strlen(name); /* once: most fields end at the length compare */

    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name.len == len && torii_slice_eq_ci(req->headers[i].name, name)) {
            return &req->headers[i].value;
        }
    }
    return NULL;
}

const char *torii_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

int http_is_token(const char *s, size_t len)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c != '\0' && strchr(extra, c) != NULL);
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* A field value we may emit: no CR, LF or NUL (RFC 9110 section 5.5); other bytes pass. */
static int value_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
            return 0;
        }
    }
    return 1;
}

static int name_is_owned(struct torii_slice n)
{
    return torii_slice_eq_ci(n, "Content-Length") || torii_slice_eq_ci(n, "Transfer-Encoding")
           || torii_slice_eq_ci(n, "Connection") || torii_slice_eq_ci(n, "Date");
}

/* IMF-fixdate (RFC 9110 section 5.6.7), independent of the locale. */
static void http_date(char *out, size_t outlen)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(torii_clock_now_ms() / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0
        || tm.tm_mon > 11) {
        (void)snprintf(out, outlen, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    (void)snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                   mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Extra headers that pass: a token name, a value without CR/LF/NUL, not engine-owned. */
static int extra_ok(const struct torii_http_response *r, const struct torii_http_header *h)
{
    return http_is_token(h->name.ptr, h->name.len) && value_ok(h->value.ptr, h->value.len)
           && !name_is_owned(h->name)
           && !(r->content_type != NULL && torii_slice_eq_ci(h->name, "Content-Type"));
}

static int write_head(struct evbuffer *hb, const struct torii_http_response *r, int status,
                      int no_body)
{
    char date[64];
    int ok;

    http_date(date, sizeof(date));
    ok = evbuffer_add_printf(hb, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
                             torii_http_reason(status), date)
         >= 0;
    if (ok && r->content_type != NULL && r->content_type[0] != '\0'
        && value_ok(r->content_type, strlen(r->content_type))) {
        ok = evbuffer_add_printf(hb, "Content-Type: %s\r\n", r->content_type) >= 0;
    }
    if (ok && !no_body) {
        ok = evbuffer_add_printf(hb, "Content-Length: %zu\r\n", r->len) >= 0;
    }
    if (ok && r->close) {
        ok = evbuffer_add_printf(hb, "Connection: close\r\n") >= 0;
    } else if (ok && r->version_minor == 0) {
        ok = evbuffer_add_printf(hb, "Connection: keep-alive\r\n") >= 0;
    }
    for (size_t i = 0; ok && i < r->n_extra; i++) {
        const struct torii_http_header *h = &r->extra[i];
        if (extra_ok(r, h)) {
            ok = evbuffer_add(hb, h->name.ptr, h->name.len) == 0 && evbuffer_add(hb, ": ", 2) == 0
                 && evbuffer_add(hb, h->value.ptr, h->value.len) == 0
                 && evbuffer_add(hb, "\r\n", 2) == 0;
        }
    }
    return ok && evbuffer_add(hb, "\r\n", 2) == 0 ? TORII_OK : TORII_ENOMEM;
}

int torii_http_response_write(struct evbuffer *out, const struct torii_http_response *r)
{
    struct evbuffer *hb = evbuffer_new();
    int status = r->status;
    int no_body;
    int rc = TORII_OK;

    TORII_ENSURE(hb != NULL, TORII_ENOMEM);
    if (status < 100 || status > 599) {
        status = 500;
    }
    /* RFC 9110 sections 6.4.1, 15.3.5, 15.4.5: 1xx, 204 and 304 never carry content. */
    no_body = status < 200 || status == 204 || status == 304;
    TORII_TRY(write_head(hb, r, status, no_body));
    if (!no_body && !r->head_only && r->len > 0) {
        TORII_ENSURE(evbuffer_add(hb, r->body, r->len) == 0, TORII_ENOMEM);
    }
    /* Whole response or nothing: out never holds a partial one. */
    TORII_ENSURE(evbuffer_add_buffer(out, hb) == 0, TORII_ENOMEM);
out:
    if (hb != NULL) {
        evbuffer_free(hb);
    }
    return rc;
}

int http_write_error(struct evbuffer *out, int status, const char *msg, int version_minor,
                     int close)
{
    char body[512];
    size_t o = 0;
    static const char pre[] = "{\"error\":\"";
    struct torii_http_response r;

    memcpy(body, pre, sizeof(pre) - 1);
    o = sizeof(pre) - 1;
    for (const char *s = msg; *s != '\0' && o + 8 < sizeof(body); s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            body[o++] = '\\';
            body[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(body + o, sizeof(body) - o, "\\u%04x", c);
        } else {
            body[o++] = (char)c;
        }
    }
    body[o++] = '"';
    body[o++] = '}';
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.content_type = "application/json";
    r.body = body;
    r.len = o;
    r.close = close;
    r.version_minor = version_minor;
    return torii_http_response_write(out, &r);
}

int torii_http_error_write(struct evbuffer *out, int status, const char *msg, int version_minor,
                           int close)
{
    return http_write_error(out, status, msg, version_minor, close);
}
