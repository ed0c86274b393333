/* http_int.h - internal to the http module: helpers shared by the parser, the response
 * writer and the connection engine. Not to be included outside src/http. */
#ifndef TORII_HTTP_INT_H
#define TORII_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "torii/http.h"

/** 1 when s[0..len) is a non-empty RFC 9110 token (tchar only). */
int http_is_token(const char *s, size_t len);

/** Append an error response with the JSON body {"error": msg} (msg escaped). close adds
 * "Connection: close". Returns TORII_OK or TORII_ENOMEM. */
int http_write_error(struct evbuffer *out, int status, const char *msg, int version_minor,
                     int close) TORII_MUST_USE;

/** At most this many fields in a head read by http_head_scan (more: the full parser). */
#define HTTP_FAST_MAX_FIELDS TORII_HTTP_PARTS_MAX

/** A head read in one pass (headscan.c): offsets into the bytes given to http_head_scan. */
struct http_fast_head {
    size_t head_len;           /* up to and with the LF of the empty line */
    uint8_t method;            /* request: llhttp method */
    uint16_t status;           /* response */
    size_t line_off, line_len; /* request: the target; response: the reason phrase */
    int has_cl;                /* one Content-Length field, of digits only */
    uint64_t cl;
    size_t n;
    struct {
        size_t name_off, name_len, val_off, val_len; /* the value without leading spaces */
    } f[HTTP_FAST_MAX_FIELDS];
};

/** 1 when d[0..len) starts with a complete head within the subset headscan.c describes
 * (filled into *h), 0 otherwise (incomplete, or a byte outside it: the full parser reads
 * the head then). response: a status line instead of a request line. */
int http_head_scan(const char *d, size_t len, int response, struct http_fast_head *h);

/** http_head_scan for a request head given as parts, as if written "method SP target SP
 * HTTP/1.1 CRLF", then "name: value CRLF" per field and CRLF: 1 when that text is within the
 * subset (h: method, line_len, the framing fields, n, and head_len the size of the text; no
 * offsets), 0 otherwise. */
int http_parts_scan(const char *method, struct torii_slice target,
                    const struct torii_http_header *f, size_t n, struct http_fast_head *h);

/* fields.c: field values and the request-target, for both head readers' policy. */

/** The tokens of a Connection value v (a comma-separated list, case-insensitive): *has_close
 * set to 1 when it holds "close", *has_keep when it holds "keep-alive" (else left as they are:
 * several Connection fields accumulate). */
void http_conn_tokens(struct torii_slice v, int *has_close, int *has_keep);

/** Content-Length = 1*DIGIT; a list of identical values collapses (RFC 9110 section 8.6).
 * seen and val carry an earlier field's value. TORII_OK with *val, else TORII_EINVAL. */
int http_parse_content_length(struct torii_slice v, int *seen, uint64_t *val);

/** The path and query of req->target (origin-form, or the part after the authority of an
 * absolute-form target; "/" when empty). */
void http_split_target(struct torii_http_req *req);

/** 1 when the request-target has a form HTTP/1.1 allows: origin-form, absolute-form with an
 * http(s) scheme, or "*" when options (an OPTIONS request). */
int http_target_form_ok(const struct torii_http_req *req, int options);

#endif
