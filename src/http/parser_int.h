/* parser_int.h - internal to the request/response parser (parser.c, parser_scan.c,
 * parser_policy.c): the parser's layout and the calls between its three layers. parser.c holds
 * the field store, the llhttp callbacks, the one-pass commit and the public API; parser_scan.c
 * the section scanner (layer 1); parser_policy.c the policy on a complete head (layer 3).
 * Threads: the thread that owns the parser (one at a time), like every torii_http_parser call.
 * Ownership: every function borrows p; failures are recorded in p (http_parser_fail), not
 * returned as codes. Not to be included outside these three files. */
#ifndef TORII_HTTP_PARSER_INT_H
#define TORII_HTTP_PARSER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "http_int.h"
#include "torii/http.h"

enum scan_mode {
    SCAN_OFF = 0, /* body bytes: llhttp alone */
    SCAN_HEAD,    /* request line + field lines + empty line */
    SCAN_TRAILER, /* trailer field lines + empty line */
    SCAN_CHUNK,   /* one chunk-size line (size, extensions, CRLF): its length only */
};

enum last_cb {
    LAST_NONE = 0,
    LAST_NAME,
    LAST_VALUE,
};

/* Fields are recorded as offsets while their bytes arrive (the buffer may move), and turned
 * into slices once the section is complete and the buffer no longer grows. */
struct field_rec {
    size_t name_off, name_len, val_off, val_len;
};

struct field_store {
    char *buf;
    size_t len, cap;
    struct field_rec *recs;
    size_t n, cap_recs;
    struct torii_http_header *arr;
    size_t cap_arr;
};

struct torii_http_parser {
    llhttp_t ll;
    struct torii_http_limits lim;
    int response;     /* parses responses (HTTP_RESPONSE) */
    int no_body;      /* response mode: the request was HEAD */
    int allow_switch; /* response mode: the request asked for a protocol switch (101 ok) */

    /* Section scanner. */
    enum scan_mode mode;
    size_t sec_bytes;
    size_t line_len;
    size_t n_fields;
    unsigned line_no;
    int saw_cr;
    int colon_seen;
    int started;

    /* Head and trailers, as received. */
    struct field_store head;
    struct field_store trl;
    struct field_store *fs;
    enum last_cb last;
    size_t url_off, url_len;
    int in_url;

    /* Body. */
    unsigned char *body;
    size_t body_len, body_cap;
    torii_http_body_cb body_cb;
    void *body_arg;

    struct torii_http_req req;
    struct torii_http_resp resp;
    enum torii_http_body_kind body_kind;
    uint64_t body_length;
    int head_ready;
    int head_pause;
    int trailer_pause;
    int chunk_pause; /* a chunk ended: the scanner takes the next chunk-size line */
    int last_chunk;  /* the last chunk (size 0) was seen: trailers follow */
    int msg_done;
    int expect_continue;
    int body_moved;  /* the owner moves Content-Length bodies (torii_http_parser_body_taken) */
    int ll_closed;   /* llhttp ended a message that does not keep the connection */
    int no_one_pass; /* torii_http_parser_set_one_pass(p, 0) */

    int failed;
    int err_status;
    const char *err_msg;
};
/** Record the first failure of p (status and a static message); later ones are dropped.
 * Returns -1, for `return http_parser_fail(...)`. */
int http_parser_fail(struct torii_http_parser *p, int status, const char *msg);

/* parser_scan.c: the section scanner. */

/** Start scanning a section of kind mode (SCAN_OFF: none; body bytes go to llhttp alone). */
void http_section_begin(struct torii_http_parser *p, enum scan_mode mode);

/** Scan up to len bytes of the current section at d. Returns how many belong to it (stopping
 * after the LF of its empty line, which sets *end; a chunk-size line ends the scan without
 * *end), or fails p (http_parser_fail) at the first bad byte and returns the bytes before it. */
size_t http_scan_section(struct torii_http_parser *p, const char *d, size_t len, int *end);

/* parser_policy.c: our rules on a complete head (p->req or p->resp filled from the head). */

/** A request head: version, Host, framing, Expect, target form, body limits; sets the body
 * kind, keep-alive and, for a Content-Length body kept in memory, the body buffer. *has_body:
 * a body follows. Returns 0, or -1 after http_parser_fail. */
int http_head_policy(struct torii_http_parser *p, int *has_body);

/** A response head (RFC 9112 section 6.3). Returns the llhttp on_headers_complete verdict:
 * 0 go on, 1 no body, HPE_PAUSED pause (a body follows), or -1 after http_parser_fail. */
int http_resp_policy(struct torii_http_parser *p);

#endif
