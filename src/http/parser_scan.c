/* parser_scan.c - bytes in: torii_http_parser_feed, which offers a message to the one-pass
 * reader first, then runs layer 1 of the parser (parser.c tells the three) and llhttp in turn;
 * and layer 1 itself, the section scanner over a head, a trailer section and each chunk-size
 * line: CRLF line endings, no NUL or other control bytes, no obs-fold, field-name shape and the
 * size limits, before llhttp sees the bytes.
 * Threads: the thread that owns the parser. No I/O. */
#include <string.h>

#include "parser_int.h"

/* Scan head or trailer bytes. Returns how many bytes belong to the section (stopping after
 * the LF of its empty line, which sets *end), or sets p->failed at the first bad byte. */
enum scan_run {
    RUN_LINE = 1,  /* the request line: anything but controls */
    RUN_NAME = 2,  /* a field name: and neither ':' nor whitespace */
    RUN_VALUE = 4, /* a field value: anything but controls other than HTAB */
};

/* For each byte, the runs it ends (bits of enum scan_run): controls end every run but HTAB
 * does not end a value; ':' and SP end a name. */
static const unsigned char scan_stop[256] = {
    7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Length of the run at d (at most max bytes) of bytes that need no decision of the scanner:
 * it stops at the first byte that ends the part or may be an error. */
static size_t scan_plain_run(const char *d, size_t max, enum scan_run kind)
{
    size_t i = 0;

    while (i < max && !(scan_stop[(unsigned char)d[i]] & kind)) {
        i++;
    }
    return i;
}

/* A chunk-size line (size, extensions, CRLF): llhttp checks its syntax, the scanner bounds its
 * length (RFC 9112 section 7.1.1: extensions are unbounded otherwise). Returns the bytes up to
 * and including its LF, or sets p->failed. */
static size_t scan_chunk_line(struct torii_http_parser *p, const char *d, size_t len)
{
    size_t room = TORII_HTTP_MAX_CHUNK_LINE - p->line_len;
    size_t n = len < room ? len : room;
    const char *lf = n > 0 ? memchr(d, '\n', n) : NULL;

    if (lf != NULL) {
        p->mode = SCAN_OFF;
        return (size_t)(lf - d) + 1;
    }
    p->line_len += n;
    if (n < len) {
        (void)http_parser_fail(p, 400, "chunk-size line too long (chunk extensions)");
    }
    return n;
}

/* One byte of a request line or a field line that is neither CR nor LF: -1 (p->failed set)
 * when the scanner rejects it. */
static int scan_line_byte(struct torii_http_parser *p, unsigned char c, int field_line)
{
    if (c == '\0') {
        return http_parser_fail(p, 400, "NUL in request head");
    }
    if (!field_line) {
        if (c < 0x20 || c == 0x7f) {
            return http_parser_fail(p, 400, "control character in request line");
        }
        return 0;
    }
    if (p->line_len == 0) {
        if (c == ' ' || c == '\t') {
            return http_parser_fail(p, 400, "obsolete line folding");
        }
        if (++p->n_fields > p->lim.max_headers) {
            return http_parser_fail(p, 431,
                                    p->mode == SCAN_TRAILER ? "too many trailer fields"
                                                            : "too many header fields");
        }
    }
    if (p->colon_seen) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return http_parser_fail(p, 400, "control character in field value");
        }
        return 0;
    }
    if (c == ':') {
        if (p->line_len == 0) {
            return http_parser_fail(p, 400, "empty header field name"); /* RFC 9110 section 5.1 */
        }
        p->colon_seen = 1;
    } else if (c == ' ' || c == '\t') {
        return http_parser_fail(p, 400, "whitespace before colon");
    }
    return 0;
}

/* The end of a line (its LF after a CR). Returns 1 when it ends the section, 0 to go on, -1
 * when the line is rejected. */
static int scan_line_end(struct torii_http_parser *p, int field_line, int lead)
{
    if (p->line_len == 0) {
        if (lead) {
            return 0; /* empty line before the request line (RFC 9112 section 2.2) */
        }
        p->mode = SCAN_OFF;
        return 1;
    }
    if (field_line && !p->colon_seen) {
        return http_parser_fail(p, 400, "header field without colon");
    }
    p->line_no++;
    p->line_len = 0;
    p->colon_seen = 0;
    return 0;
}

/* Fast path: a run of plain bytes in the middle of the request line, a name or a value,
 * within the section's byte budget. Returns its length. */
static size_t scan_fast_run(struct torii_http_parser *p, const char *d, size_t len, int field_line)
{
    size_t room = p->lim.max_header_bytes - p->sec_bytes;
    enum scan_run kind = !field_line ? RUN_LINE : p->colon_seen ? RUN_VALUE : RUN_NAME;
    size_t run = scan_plain_run(d, len < room ? len : room, kind);

    p->sec_bytes += run;
    p->line_len += run;
    return run;
}

enum scan_step {
    STEP_FAIL = -1, /* stop before this byte: failed */
    STEP_BYTE = 0,  /* an ordinary byte of the line */
    STEP_NEXT = 1,  /* consumed: go on with the next byte */
    STEP_END = 2,   /* stop after this byte: the section is complete */
};

/* The line-ending handling of byte c (CR LF, and the bare forms). */
static enum scan_step scan_crlf(struct torii_http_parser *p, unsigned char c, int field_line,
                                int lead)
{
    int r;

    if (p->saw_cr) {
        if (c != '\n') {
            (void)http_parser_fail(p, 400, "bare CR in request head");
            return STEP_FAIL;
        }
        p->saw_cr = 0;
        r = scan_line_end(p, field_line, lead);
        return r == 0 ? STEP_NEXT : r > 0 ? STEP_END : STEP_FAIL;
    }
    if (c == '\r') {
        p->saw_cr = 1;
        return STEP_NEXT;
    }
    if (c == '\n') {
        if (lead && !p->response) {
            return STEP_NEXT; /* a bare LF empty line before a request: what `echo` sends */
        }
        (void)http_parser_fail(p, 400, "bare LF in request head");
        return STEP_FAIL;
    }
    return STEP_BYTE;
}

static size_t scan_section(struct torii_http_parser *p, const char *d, size_t len, int *end)
{
    if (p->mode == SCAN_CHUNK) {
        return scan_chunk_line(p, d, len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c;
        int field_line = p->mode == SCAN_TRAILER || p->line_no > 0;
        /* Nothing but empty lines so far before the request line: they start no request. */
        int lead = p->mode == SCAN_HEAD && p->line_no == 0 && p->line_len == 0;
        enum scan_step step;

        p->started |= p->response;
        if (!p->saw_cr && p->line_len > 0 && p->sec_bytes < p->lim.max_header_bytes) {
            i += scan_fast_run(p, d + i, len - i, field_line);
            if (i == len) {
                break;
            }
        }
        c = (unsigned char)d[i];
        if (++p->sec_bytes > p->lim.max_header_bytes) {
            (void)http_parser_fail(p, 431,
                                   p->mode == SCAN_TRAILER ? "trailer section too large"
                                                           : "request header section too large");
            return i;
        }
        step = scan_crlf(p, c, field_line, lead);
        if (step == STEP_NEXT) {
            continue;
        }
        if (step != STEP_BYTE) {
            *end = step == STEP_END;
            return step == STEP_END ? i + 1 : i;
        }
        p->started = 1;
        if (scan_line_byte(p, c, field_line) != 0) {
            return i;
        }
        p->line_len++;
    }
    return len;
}

static void fail_from_llhttp(struct torii_http_parser *p, llhttp_errno_t e)
{
    if (p->failed) {
        return;
    }
    if (e == HPE_INVALID_TRANSFER_ENCODING) {
        (void)http_parser_fail(p, 501, "unsupported transfer coding");
        return;
    }
    /* llhttp reasons are static strings. */
    const char *why = llhttp_get_error_reason(&p->ll);
    (void)http_parser_fail(p, 400, why != NULL ? why : "malformed request");
}

enum torii_http_parse_ev torii_http_parser_feed(struct torii_http_parser *p, const char *data,
                                                size_t len, size_t *consumed)
{
    size_t off = 0;

    *consumed = 0;
    if (p->failed) {
        return TORII_HTTP_PARSE_ERROR;
    }
    if (p->msg_done) {
        return TORII_HTTP_PARSE_DONE;
    }
    if (len > 0) {
        int fast = http_parser_fast(p, data, len, consumed);
        if (fast >= 0) {
            return (enum torii_http_parse_ev)fast;
        }
    }
    while (off < len) {
        size_t n = len - off;
        int end = 0;
        llhttp_errno_t e;

        if (p->mode != SCAN_OFF) {
            n = scan_section(p, data + off, n, &end);
            if (p->failed) {
                *consumed = off;
                return TORII_HTTP_PARSE_ERROR;
            }
        }
        p->head_pause = 0;
        p->trailer_pause = 0;
        p->chunk_pause = 0;
        e = llhttp_execute(&p->ll, data + off, n);
        if (e == HPE_OK) {
            off += n;
            continue;
        }
        if (e != HPE_PAUSED) {
            fail_from_llhttp(p, e);
            *consumed = off;
            return TORII_HTTP_PARSE_ERROR;
        }
        off = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        llhttp_resume(&p->ll);
        *consumed = off;
        if (p->msg_done) {
            return TORII_HTTP_PARSE_DONE;
        }
        if (p->head_pause) {
            return TORII_HTTP_PARSE_HEAD;
        }
        if (p->trailer_pause) {
            http_section_begin(p, SCAN_TRAILER);
        } else if (p->chunk_pause) {
            http_section_begin(p, SCAN_CHUNK);
        }
    }
    *consumed = off;
    return TORII_HTTP_PARSE_MORE;
}
