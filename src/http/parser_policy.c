/* parser_policy.c - layer 3 of the parser (parser.c tells the three): a complete head becomes
 * the request (or response) and meets our rules: version, Host, Content-Length vs
 * Transfer-Encoding, Expect, request-target form and body limits for a request; RFC 9112
 * section 6.3 for a response. Both head readers (llhttp's callbacks and the one-pass commit)
 * end here, in http_on_headers_complete.
 * Threads: the thread that owns the parser. */
#include <stdlib.h>
#include <string.h>

#include "parser_int.h"

/* What head_policy needs from the header fields of a request. */
struct head_fields {
    size_t n_host;
    size_t n_te;
    size_t n_cl;
    int cl_seen;
    uint64_t cl;
    const struct torii_slice *te;
    const struct torii_slice *expect;
    int conn_close;
    int conn_keep;
};

/* Collect the fields into f. Returns 0 or calls http_parser_fail (returns -1). */
static int head_fields_scan(struct torii_http_parser *p, struct head_fields *f)
{
    const struct torii_http_req *req = &p->req;

    for (size_t i = 0; i < req->n_headers; i++) {
        const struct torii_http_header *h = &req->headers[i];
        if (torii_slice_eq_ci(h->name, "Host")) {
            f->n_host++;
        } else if (torii_slice_eq_ci(h->name, "Transfer-Encoding")) {
            f->n_te++;
            f->te = &h->value;
        } else if (torii_slice_eq_ci(h->name, "Content-Length")) {
            f->n_cl++;
            if (http_parse_content_length(h->value, &f->cl_seen, &f->cl) != TORII_OK) {
                return http_parser_fail(p, 400, "invalid Content-Length");
            }
        } else if (torii_slice_eq_ci(h->name, "Expect")) {
            if (f->expect != NULL) {
                return http_parser_fail(p, 417, "unsupported expectation");
            }
            f->expect = &h->value;
        } else if (torii_slice_eq_ci(h->name, "Connection")) {
            http_conn_tokens(h->value, &f->conn_close, &f->conn_keep);
        }
    }
    return 0;
}

/* Method, target form, Host and message framing. Returns 0 or calls http_parser_fail. */
static int head_framing_check(struct torii_http_parser *p, const struct head_fields *f)
{
    const struct torii_http_req *req = &p->req;

    if (p->ll.method == HTTP_CONNECT) {
        return http_parser_fail(p, 501, "CONNECT not supported");
    }
    if (!http_target_form_ok(req, p->ll.method == HTTP_OPTIONS)) {
        return http_parser_fail(p, 400, "invalid request-target");
    }
    if (f->n_host > 1) {
        return http_parser_fail(p, 400, "duplicate Host header");
    }
    if (f->n_host == 0 && req->version_minor == 1) {
        return http_parser_fail(p, 400, "missing Host header");
    }
    if (f->n_te > 0 && f->n_cl > 0) {
        return http_parser_fail(p, 400, "both Content-Length and Transfer-Encoding");
    }
    if (f->n_te > 0 && req->version_minor == 0) {
        return http_parser_fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (f->n_te > 1 || (f->te != NULL && !torii_slice_eq_ci(*f->te, "chunked"))) {
        return http_parser_fail(p, 501, "unsupported transfer coding");
    }
    if (f->cl > p->lim.max_body) {
        return http_parser_fail(p, 413, "request body too large");
    }
    return 0;
}

/* Our rules on a complete head. Returns 0 or calls http_parser_fail (returns -1). */
static int head_policy(struct torii_http_parser *p, int *has_body)
{
    const struct torii_http_req *req = &p->req;
    struct head_fields f = {0};

    if (req->target.len == 0) {
        return http_parser_fail(p, 400,
                                "empty request-target"); /* "CONNECT \r\n": no version either */
    }
    if (p->ll.http_major != 1 || p->ll.http_minor > 1) {
        return http_parser_fail(p, 505, "HTTP version not supported");
    }
    if (head_fields_scan(p, &f) != 0 || head_framing_check(p, &f) != 0) {
        return -1;
    }
    *has_body = f.te != NULL || f.cl > 0;
    p->body_kind = f.te != NULL ? TORII_HTTP_BODY_CHUNKED
                   : f.cl > 0   ? TORII_HTTP_BODY_LENGTH
                                : TORII_HTTP_BODY_NONE;
    p->body_length = f.te != NULL ? 0 : f.cl;
    if (f.expect != NULL && req->version_minor == 1) {
        /* An HTTP/1.0 client cannot know 100 Continue: ignore (RFC 9110 section 10.1.1). */
        if (!torii_slice_eq_ci(*f.expect, "100-continue")) {
            return http_parser_fail(p, 417, "unsupported expectation");
        }
        p->expect_continue = *has_body;
    }
    /* RFC 9112 section 9.3. */
    p->req.keep_alive = req->version_minor == 1 ? !f.conn_close : f.conn_keep && !f.conn_close;
    if (f.cl > 0 && p->body_cb == NULL) {
        p->body = malloc((size_t)f.cl);
        if (p->body == NULL) {
            return http_parser_fail(p, 500, "out of memory");
        }
        p->body_cap = (size_t)f.cl;
    }
    return 0;
}

/* Our rules on a complete response head (RFC 9112 section 6.3). Returns the llhttp
 * on_headers_complete verdict: 0 go on, 1 no body, HPE_PAUSED pause (body follows), or -1. */
static int resp_policy(struct torii_http_parser *p)
{
    struct torii_http_resp *r = &p->resp;
    size_t n_te = 0;
    size_t n_cl = 0;
    int cl_seen = 0;
    uint64_t cl = 0;
    const struct torii_slice *te = NULL;
    int conn_close = 0;
    int conn_keep = 0;

    if (p->ll.http_major != 1 || p->ll.http_minor > 1) {
        return http_parser_fail(p, 502, "upstream HTTP version not supported");
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct torii_http_header *h = &r->headers[i];
        if (torii_slice_eq_ci(h->name, "Transfer-Encoding")) {
            n_te++;
            te = &h->value;
        } else if (torii_slice_eq_ci(h->name, "Content-Length")) {
            n_cl++;
            if (http_parse_content_length(h->value, &cl_seen, &cl) != TORII_OK) {
                return http_parser_fail(p, 502, "invalid Content-Length from upstream");
            }
        } else if (torii_slice_eq_ci(h->name, "Connection")) {
            http_conn_tokens(h->value, &conn_close, &conn_keep);
        }
    }
    if (r->status == 101 && !p->allow_switch) {
        return http_parser_fail(p, 502, "protocol switch not requested");
    }
    if (r->status == 101) {
        r->keep_alive = 0; /* the connection now carries the other protocol */
        p->body_kind = TORII_HTTP_BODY_NONE;
        return 1;
    }
    if (r->status < 100 || r->status > 599) {
        return http_parser_fail(p, 502, "invalid status code from upstream");
    }
    if (n_te > 0 && n_cl > 0) {
        return http_parser_fail(p, 502, "both Content-Length and Transfer-Encoding from upstream");
    }
    if (n_te > 1 || (te != NULL && !torii_slice_eq_ci(*te, "chunked"))
        || (te != NULL && r->version_minor == 0)) {
        return http_parser_fail(p, 502, "unsupported transfer coding from upstream");
    }
    r->keep_alive = r->version_minor == 1 ? !conn_close : conn_keep && !conn_close;
    p->body_length = 0;
    if (r->status < 200) {
        r->interim = 1;
        p->body_kind = TORII_HTTP_BODY_NONE;
        return 1;
    }
    /* RFC 9110 sections 9.3.2, 15.3.5, 15.4.5: no content, whatever the framing says. */
    if (p->no_body || r->status == 204 || r->status == 304) {
        p->body_kind = TORII_HTTP_BODY_NONE;
        return 1;
    }
    if (te != NULL) {
        p->body_kind = TORII_HTTP_BODY_CHUNKED;
        p->head_pause = 1;
        return HPE_PAUSED;
    }
    if (cl_seen) {
        if (cl == 0) {
            p->body_kind = TORII_HTTP_BODY_NONE;
            return 0;
        }
        p->body_kind = TORII_HTTP_BODY_LENGTH;
        p->body_length = cl;
        p->head_pause = 1;
        return HPE_PAUSED;
    }
    p->body_kind = TORII_HTTP_BODY_EOF;
    r->keep_alive = 0;
    p->head_pause = 1;
    return HPE_PAUSED;
}

/* The head is complete and accepted: what follows is a body or the next message, and fields
 * seen from now on are trailers. */
static void head_done(struct torii_http_parser *p)
{
    p->ll.upgrade = 0;
    p->head_ready = 1;
    p->fs = &p->trl;
    p->last = LAST_NONE;
    if (p->body_kind == TORII_HTTP_BODY_CHUNKED) {
        http_section_begin(p, SCAN_CHUNK); /* the first chunk-size line */
    }
}

static int resp_headers_complete(struct torii_http_parser *p)
{
    llhttp_t *ll = &p->ll;
    int v;

    http_store_build(&p->head);
    memset(&p->resp, 0, sizeof(p->resp));
    p->resp.status = ll->status_code;
    p->resp.reason.ptr = p->head.buf != NULL ? p->head.buf + p->url_off : "";
    p->resp.reason.len = p->url_len;
    p->resp.version_minor = ll->http_minor;
    p->resp.headers = p->head.arr;
    p->resp.n_headers = p->head.n;
    v = resp_policy(p);
    if (v < 0) {
        return -1;
    }
    head_done(p);
    return v;
}

int http_on_headers_complete(llhttp_t *ll)
{
    struct torii_http_parser *p = ll->data;
    int has_body = 0;

    if (p->response) {
        return resp_headers_complete(p);
    }

    http_store_build(&p->head);
    memset(&p->req, 0, sizeof(p->req));
    p->req.method = llhttp_method_name((llhttp_method_t)ll->method);
    p->req.target.ptr = p->head.buf != NULL ? p->head.buf + p->url_off : "";
    p->req.target.len = p->url_len;
    http_split_target(&p->req);
    p->req.version_minor = ll->http_minor;
    p->req.headers = p->head.arr;
    p->req.n_headers = p->head.n;
    if (head_policy(p, &has_body) != 0) {
        return -1;
    }
    /* No protocol switch (head_done clears llhttp's upgrade): a request carrying Upgrade is
     * answered as plain HTTP/1.1. */
    head_done(p);
    if (has_body) {
        p->head_pause = 1;
        return HPE_PAUSED;
    }
    return 0;
}
