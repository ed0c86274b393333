/* parser.c - the request parser: bytes in, events out, no I/O.
 * Three layers, in the order a byte meets them:
 *  1. our section scanner (parser_scan.c, with torii_http_parser_feed, which runs it and
 *     llhttp in turn), over the head, the trailer section and each chunk-size line: CRLF line
 *     endings (no bare CR or LF), no NUL or other control bytes in field lines, no obs-fold, a
 *     non-empty field name with no whitespace before the colon (RFC 9112 sections 2.2, 5.1,
 *     5.2; RFC 9110 section 5.1), and the size limits (431; a chunk-size line, with its
 *     extensions, of at most TORII_HTTP_MAX_CHUNK_LINE bytes, else 400: RFC 9112 section
 *     7.1.1). Empty lines before a request line are skipped (RFC 9112 section 2.2) and do not
 *     start a request. It runs before llhttp so llhttp's build mode cannot loosen these
 *     rules.
 *  2. llhttp (HTTP_REQUEST, no lenient flag): request line, tokens, chunked framing,
 *     Content-Length syntax and duplicates. Any error it reports is a 400 (501 for a bad
 *     Transfer-Encoding list).
 *  3. policy on the complete head (head_policy, parser_policy.c): version, Host,
 *     Content-Length vs Transfer-Encoding, Expect, request-target form, body limits.
 * This file holds the field store, llhttp's callbacks, the one-pass commit (a head read by
 * headscan.c) and the rest of the public API; the layout is in parser_int.h.
 * llhttp is paused after the head of a request with a body, after each chunk (so the scanner
 * can take the next chunk-size line), after the last chunk (so the scanner can take the
 * trailer section) and after each request, so pipelined bytes are never
 * consumed ahead of the request being answered. */
#include <string.h>

#include <llhttp.h>

#include "parser_int.h"
#include "torii/http.h"
#include "torii/mem.h"

int http_parser_fail(struct torii_http_parser *p, int status, const char *msg)
{
    if (!p->failed) {
        p->failed = 1;
        p->err_status = status;
        p->err_msg = msg;
    }
    return -1;
}

static int store_append(struct field_store *fs, const char *at, size_t len)
{
    if (len == 0) {
        return TORII_OK; /* an empty span (an empty request-target): fs->buf may be NULL */
    }
    if (fs->len + len > fs->cap) {
        size_t ncap = fs->cap ? fs->cap : 512;
        while (ncap < fs->len + len) {
            ncap *= 2;
        }
        fs->buf = torii_xrealloc(fs->buf, ncap);
        fs->cap = ncap;
    }
    memcpy(fs->buf + fs->len, at, len);
    fs->len += len;
    return TORII_OK;
}

static struct field_rec *store_new_rec(struct field_store *fs)
{
    if (fs->n == fs->cap_recs) {
        fs->cap_recs = fs->cap_recs ? fs->cap_recs * 2 : 16;
        fs->recs = torii_xrealloc(fs->recs, fs->cap_recs * sizeof(*fs->recs));
    }
    memset(&fs->recs[fs->n], 0, sizeof(fs->recs[0]));
    fs->recs[fs->n].name_off = fs->len;
    fs->recs[fs->n].val_off = fs->len;
    return &fs->recs[fs->n++];
}

/* Room for n entries in fs->arr. The array keeps its capacity across requests: no allocation
 * per request. */
static void store_arr_reserve(struct field_store *fs, size_t n)
{
    if (fs->cap_arr < n || fs->arr == NULL) {
        fs->cap_arr = n > 16 ? n : 16;
        free(fs->arr);
        fs->arr = torii_xcalloc(fs->cap_arr, sizeof(*fs->arr));
    }
}

void http_store_build(struct field_store *fs)
{
    if (fs->arr_ready) {
        return;
    }
    store_arr_reserve(fs, fs->n);
    for (size_t i = 0; i < fs->n; i++) {
        const struct field_rec *r = &fs->recs[i];
        size_t vl = r->val_len;
        size_t vo = r->val_off;
        /* Field values exclude leading and trailing OWS (RFC 9110 section 5.5). */
        while (vl > 0 && (fs->buf[vo] == ' ' || fs->buf[vo] == '\t')) {
            vo++;
            vl--;
        }
        while (vl > 0 && (fs->buf[vo + vl - 1] == ' ' || fs->buf[vo + vl - 1] == '\t')) {
            vl--;
        }
        fs->arr[i].name.ptr = fs->buf + r->name_off;
        fs->arr[i].name.len = r->name_len;
        fs->arr[i].value.ptr = fs->buf + vo;
        fs->arr[i].value.len = vl;
    }
}

static void store_reset(struct field_store *fs)
{
    fs->len = 0;
    fs->n = 0;
    fs->arr_ready = 0;
}

static void store_free(struct field_store *fs)
{
    TORII_FREE(fs->buf);
    TORII_FREE(fs->recs);
    TORII_FREE(fs->arr);
    fs->cap_arr = 0;
}

static struct torii_http_parser *from_ll(llhttp_t *ll)
{
    return ll->data;
}

/* ---- llhttp callbacks: record bytes, enforce limits, pause at boundaries ---------------- */

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct torii_http_parser *p = from_ll(ll);

    if (!p->in_url) {
        p->in_url = 1;
        p->url_off = p->head.len;
        p->url_len = 0;
    }
    if (len > p->lim.max_target - p->url_len) {
        return http_parser_fail(p, 414, "request-target too long");
    }
    p->url_len += len;
    return store_append(&p->head, at, len);
}

/* Response mode: the reason phrase, kept where a request keeps its target. */
static int on_status(llhttp_t *ll, const char *at, size_t len)
{
    struct torii_http_parser *p = from_ll(ll);

    if (!p->in_url) {
        p->in_url = 1;
        p->url_off = p->head.len;
        p->url_len = 0;
    }
    if (len > 1024 - p->url_len) {
        return http_parser_fail(p, 502, "reason phrase too long");
    }
    p->url_len += len;
    return store_append(&p->head, at, len);
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct torii_http_parser *p = from_ll(ll);
    struct field_rec *r;

    if (p->last != LAST_NAME) {
        r = store_new_rec(p->fs);
        p->last = LAST_NAME;
    } else {
        r = &p->fs->recs[p->fs->n - 1];
    }
    r->name_len += len;
    return store_append(p->fs, at, len);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct torii_http_parser *p = from_ll(ll);
    struct field_rec *r;

    if (p->fs->n == 0) {
        return http_parser_fail(p, 400, "header value without name");
    }
    r = &p->fs->recs[p->fs->n - 1];
    if (p->last != LAST_VALUE) {
        r->val_off = p->fs->len;
        r->val_len = 0;
        p->last = LAST_VALUE;
    }
    r->val_len += len;
    return store_append(p->fs, at, len);
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct torii_http_parser *p = from_ll(ll);

    if (p->last == LAST_NAME && p->fs->n > 0) {
        p->fs->recs[p->fs->n - 1].val_off = p->fs->len;
        p->fs->recs[p->fs->n - 1].val_len = 0;
    }
    p->last = LAST_NONE;
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct torii_http_parser *p = from_ll(ll);

    if (len > p->lim.max_body - p->body_len) {
        return http_parser_fail(p, 413, "request body too large");
    }
    if (p->body_cb != NULL) {
        if (p->body_cb(p->body_arg, (const unsigned char *)at, len) != TORII_OK) {
            return http_parser_fail(p, 500, "request body rejected");
        }
        p->body_len += len;
        return 0;
    }
    if (p->body_len + len > p->body_cap) {
        size_t ncap = p->body_cap ? p->body_cap : 1024;
        unsigned char *nb;
        while (ncap < p->body_len + len) {
            ncap *= 2;
        }
        if (ncap > p->lim.max_body) {
            ncap = p->lim.max_body;
        }
        nb = realloc(p->body, ncap);
        if (nb == NULL) {
            return http_parser_fail(p, 500, "out of memory");
        }
        p->body = nb;
        p->body_cap = ncap;
    }
    memcpy(p->body + p->body_len, at, len);
    p->body_len += len;
    return 0;
}

static int on_chunk_header(llhttp_t *ll)
{
    struct torii_http_parser *p = from_ll(ll);

    if (ll->content_length == 0) {
        p->last_chunk = 1;
        p->trailer_pause = 1; /* the scanner takes the trailer section */
        return HPE_PAUSED;
    }
    if (ll->content_length > (uint64_t)(p->lim.max_body - p->body_len)) {
        return http_parser_fail(p, 413, "request body too large");
    }
    return 0;
}

/* After a chunk's data and CRLF: the scanner takes the next chunk-size line. After the last
 * chunk's trailer section the message is complete instead. */
static int on_chunk_complete(llhttp_t *ll)
{
    struct torii_http_parser *p = from_ll(ll);

    if (p->last_chunk) {
        return 0;
    }
    p->chunk_pause = 1;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *ll)
{
    struct torii_http_parser *p = from_ll(ll);

    http_store_build(&p->trl);
    p->req.trailers = p->trl.arr;
    p->req.n_trailers = p->trl.n;
    p->resp.trailers = p->trl.arr;
    p->resp.n_trailers = p->trl.n;
    p->req.body = p->body_len > 0 && p->body_cb == NULL ? p->body : NULL;
    p->req.body_len = p->body_len;
    p->msg_done = 1;
    p->mode = SCAN_OFF;
    p->ll_closed = !llhttp_should_keep_alive(ll);
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = http_on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

/* ---- public API ------------------------------------------------------------------------- */

static void parser_clear_request(struct torii_http_parser *p)
{
    store_reset(&p->head);
    store_reset(&p->trl);
    p->fs = &p->head;
    p->last = LAST_NONE;
    p->in_url = 0;
    p->url_off = 0;
    p->url_len = 0;
    TORII_FREE(p->body);
    p->body_len = 0;
    p->body_cap = 0;
    memset(&p->req, 0, sizeof(p->req));
    memset(&p->resp, 0, sizeof(p->resp));
    p->body_kind = TORII_HTTP_BODY_NONE;
    p->body_length = 0;
    p->head_ready = 0;
    p->head_pause = 0;
    p->trailer_pause = 0;
    p->chunk_pause = 0;
    p->last_chunk = 0;
    p->msg_done = 0;
    p->expect_continue = 0;
    p->started = 0;
    http_section_begin(p, SCAN_HEAD);
}

static struct torii_http_parser *parser_make(const struct torii_http_limits *lim, int response)
{
    struct torii_http_parser *p = torii_xcalloc(1, sizeof(*p));

    p->lim = *lim;
    p->response = response;
    llhttp_init(&p->ll, response ? HTTP_RESPONSE : HTTP_REQUEST, &parser_settings);
    /* Strict: no leniency of any kind (the defaults, spelled out). */
    llhttp_set_lenient_headers(&p->ll, 0);
    llhttp_set_lenient_chunked_length(&p->ll, 0);
    llhttp_set_lenient_keep_alive(&p->ll, 0);
    llhttp_set_lenient_transfer_encoding(&p->ll, 0);
    p->ll.data = p;
    parser_clear_request(p);
    return p;
}

int torii_http_parser_new(const struct torii_http_limits *lim, struct torii_http_parser **out)
{
    *out = parser_make(lim, 0);
    return TORII_OK;
}

int torii_http_parser_new_response(const struct torii_http_limits *lim,
                                   struct torii_http_parser **out)
{
    *out = parser_make(lim, 1);
    return TORII_OK;
}

void torii_http_parser_set_no_body(struct torii_http_parser *p, int on)
{
    p->no_body = on;
}

void torii_http_parser_allow_switch(struct torii_http_parser *p, int on)
{
    p->allow_switch = on;
}

const struct torii_http_resp *torii_http_parser_resp(const struct torii_http_parser *p)
{
    return p->response && p->head_ready ? &p->resp : NULL;
}

enum torii_http_body_kind torii_http_parser_body(const struct torii_http_parser *p,
                                                 uint64_t *length)
{
    if (length != NULL) {
        *length = p->body_length;
    }
    return p->head_ready ? p->body_kind : TORII_HTTP_BODY_NONE;
}

void torii_http_parser_body_taken(struct torii_http_parser *p, uint64_t n)
{
    /* llhttp is left mid-body: start it over for the next message (same type, callbacks
     * and strictness). */
    llhttp_reset(&p->ll);
    p->ll_closed = 0;
    http_store_build(&p->trl);
    p->body_len = (size_t)n;
    p->req.body = NULL;
    p->req.body_len = (size_t)n;
    p->req.trailers = p->trl.arr;
    p->req.n_trailers = 0;
    p->resp.trailers = p->trl.arr;
    p->resp.n_trailers = 0;
    p->mode = SCAN_OFF;
    p->msg_done = 1;
}

int torii_http_parser_started(const struct torii_http_parser *p)
{
    return p->started;
}

void torii_http_parser_free(struct torii_http_parser *p)
{
    if (p == NULL) {
        return;
    }
    store_free(&p->head);
    store_free(&p->trl);
    free(p->body);
    free(p);
}

void torii_http_parser_set_body_cb(struct torii_http_parser *p, torii_http_body_cb cb, void *arg)
{
    p->body_cb = cb;
    p->body_arg = arg;
}

void torii_http_parser_set_body_moved(struct torii_http_parser *p, int on)
{
    p->body_moved = on != 0;
}

void torii_http_parser_set_one_pass(struct torii_http_parser *p, int on)
{
    p->no_one_pass = !on;
}

/* A head read in one pass (http_head_scan, http_parts_scan) is recorded as llhttp's callbacks
 * would have (target or reason, each field), then judged by the same policy (commit_end). */
static void commit_begin(struct torii_http_parser *p, const struct http_fast_head *h,
                         const char *line)
{
    p->started = 1;
    p->mode = SCAN_OFF;
    p->sec_bytes = h->head_len;
    p->n_fields = h->n;
    p->in_url = 1;
    p->url_off = p->head.len;
    p->url_len = h->line_len;
    if (line != NULL) {
        (void)store_append(&p->head, line, h->line_len);
    }
}

static void commit_field(struct torii_http_parser *p, const char *n, size_t nl, const char *v,
                         size_t vl)
{
    struct field_rec *r = store_new_rec(p->fs);

    r->name_len = nl;
    (void)store_append(p->fs, n, nl);
    r->val_off = p->fs->len;
    r->val_len = vl;
    (void)store_append(p->fs, v, vl);
}

/* A head read as text (http_head_scan): its bytes copied at once, the target or reason and
 * each field pointing into the copy, the array http_store_build would have made of the spans
 * commit_begin and commit_field copy one by one (values without their trailing spaces; the
 * reader's subset has no leading ones and no tabs). The head's store is empty at the start of
 * a message. */
static void commit_text(struct torii_http_parser *p, const struct http_fast_head *h, const char *d)
{
    struct field_store *fs = &p->head;
    const char *b;

    commit_begin(p, h, NULL);
    p->url_off = h->line_off;
    store_reset(fs);
    (void)store_append(fs, d, h->head_len);
    store_arr_reserve(fs, h->n);
    b = fs->buf;
    for (size_t i = 0; i < h->n; i++) {
        struct torii_http_header *f = &fs->arr[i];
        size_t vl = h->f[i].val_len;
        while (vl > 0 && b[h->f[i].val_off + vl - 1] == ' ') {
            vl--;
        }
        f->name.ptr = b + h->f[i].name_off;
        f->name.len = h->f[i].name_len;
        f->value.ptr = b + h->f[i].val_off;
        f->value.len = vl;
    }
    fs->n = h->n;
    fs->arr_ready = 1;
}

static enum torii_http_parse_ev commit_end(struct torii_http_parser *p,
                                           const struct http_fast_head *h, size_t *consumed)
{
    int v;

    p->ll.method = h->method;
    p->ll.http_major = 1;
    p->ll.http_minor = 1;
    p->ll.status_code = h->status;
    v = http_on_headers_complete(&p->ll);
    if (v < 0) {
        return TORII_HTTP_PARSE_ERROR; /* nothing consumed, as when llhttp stops there */
    }
    *consumed = h->head_len;
    if (v == HPE_PAUSED) {
        return TORII_HTTP_PARSE_HEAD;
    }
    (void)on_message_complete(&p->ll);
    p->ll_closed = 0; /* HTTP/1.1 without Connection: close (the reader's subset) */
    return TORII_HTTP_PARSE_DONE;
}

/* The one-pass reader may take the head h (within the limits, no body llhttp would have to
 * read), and p is at the start of a message (parser_fast_state). */
static int parser_fast_ok(const struct torii_http_parser *p, const struct http_fast_head *h)
{
    return h->head_len < p->lim.max_header_bytes && h->n <= p->lim.max_headers
           && h->line_len <= (p->response ? 1024 : p->lim.max_target)
           && (h->cl == 0 || p->body_moved || (p->response && p->no_body));
}

static int parser_fast_state(const struct torii_http_parser *p)
{
    return !p->no_one_pass && !p->failed && !p->msg_done && p->mode == SCAN_HEAD
           && p->sec_bytes == 0 && !p->ll_closed;
}

int torii_http_parser_head_parts(struct torii_http_parser *p, const char *method,
                                 struct torii_slice target, const struct torii_http_header *f,
                                 size_t n, enum torii_http_parse_ev *ev, size_t *head_bytes)
{
    struct http_fast_head h;

    if (p->response || !parser_fast_state(p) || !http_parts_scan(method, target, f, n, &h)
        || !parser_fast_ok(p, &h)) {
        return TORII_EAGAIN;
    }
    commit_begin(p, &h, target.ptr);
    for (size_t i = 0; i < n; i++) {
        commit_field(p, f[i].name.ptr, f[i].name.len, f[i].value.ptr, f[i].value.len);
    }
    *head_bytes = 0; /* nothing consumed on ERROR */
    *ev = commit_end(p, &h, head_bytes);
    return TORII_OK;
}

/* The one-pass reader's entry (parser_int.h). */
int http_parser_fast(struct torii_http_parser *p, const char *d, size_t len, size_t *consumed)
{
    struct http_fast_head h;

    if (!parser_fast_state(p) || !http_head_scan(d, len, p->response, &h)
        || !parser_fast_ok(p, &h)) {
        return -1;
    }
    commit_text(p, &h, d);
    return (int)commit_end(p, &h, consumed);
}

const struct torii_http_req *torii_http_parser_req(const struct torii_http_parser *p)
{
    return p->head_ready ? &p->req : NULL;
}

int torii_http_parser_expects_continue(const struct torii_http_parser *p)
{
    return p->expect_continue;
}

int torii_http_parser_idle(const struct torii_http_parser *p)
{
    return !p->started && !p->failed;
}

int torii_http_parser_error(const struct torii_http_parser *p, const char **msg)
{
    if (msg != NULL) {
        *msg = p->failed ? p->err_msg : NULL;
    }
    if (!p->failed) {
        return 0;
    }
    return p->response ? 502 : p->err_status;
}

void torii_http_parser_next(struct torii_http_parser *p)
{
    parser_clear_request(p);
}

void torii_http_parser_reset(struct torii_http_parser *p)
{
    struct field_store *fs[2] = {&p->head, &p->trl};

    parser_clear_request(p);
    llhttp_reset(&p->ll);
    p->no_body = p->allow_switch = p->failed = p->err_status = 0;
    p->body_moved = p->ll_closed = 0;
    p->err_msg = NULL;
    torii_http_parser_set_body_cb(p, NULL, NULL);
    for (size_t i = 0; i < 2; i++) { /* a parser kept for reuse keeps up to 4 KiB of storage */
        if (fs[i]->cap > 4096 || fs[i]->cap_recs > 4096 / sizeof(*fs[i]->recs)) {
            store_free(fs[i]);
            fs[i]->cap = fs[i]->cap_recs = 0;
        }
    }
}
