/* parser_int.h - internal to the request/response parser (parser.c, parser_scan.c,
 * parser_policy.c): the parser's layout and the calls between its parts. parser.c holds the
 * field store, the llhttp callbacks, the one-pass commit and most of the public API;
 * parser_scan.c torii_http_parser_feed and the section scanner (layer 1); parser_policy.c the
 * complete head and our policy on it (layer 3).
 * Threads: the thread that owns the parser (one at a time), like every torii_http_parser call.
 * Ownership: every function borrows p (or fs); failures are recorded in p
 * (http_parser_fail), not returned as codes. Not to be included outside these three files. */
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
    int arr_ready; /* arr holds the n fields already (commit_text): no recs, nothing to build */
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

/* parser.c */

/** Record the first failure of p (status and a static message); later ones are dropped.
 * Returns -1, for `return http_parser_fail(...)`. */
int http_parser_fail(struct torii_http_parser *p, int status, const char *msg);

/** The head recorded in fs as slices (field values without OWS around them, RFC 9110 section
 * 5.5) in fs->arr; fs->arr keeps its capacity across messages. */
void http_store_build(struct field_store *fs);

/** A message that starts at d: read its head in one pass when it is complete and ordinary
 * (headscan.c), as torii_http_parser_feed returns it (*consumed set). Returns -1 when the full
 * parser must read it instead; nothing is changed then. */
int http_parser_fast(struct torii_http_parser *p, const char *d, size_t len, size_t *consumed);

/* The section scanner (parser_scan.c, with torii_http_parser_feed). */

/** Start scanning a section of kind mode (SCAN_OFF: none; body bytes go to llhttp alone).
 * Inline: every message starts a section. */
static inline void http_section_begin(struct torii_http_parser *p, enum scan_mode mode)
{
    p->mode = mode;
    p->sec_bytes = 0;
    p->line_len = 0;
    p->n_fields = 0;
    p->line_no = 0;
    p->saw_cr = 0;
    p->colon_seen = 0;
}

/* The complete head (parser_policy.c). */

/** llhttp's on_headers_complete, also called by the one-pass commit: fills p->req (or p->resp)
 * from the recorded head and applies our rules. Returns 0 go on, 1 no body (response mode),
 * HPE_PAUSED when a body follows (p->head_pause set), or -1 after http_parser_fail. */
int http_on_headers_complete(llhttp_t *ll);

#endif
