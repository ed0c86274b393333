/* headers.c - request and response heads rewritten for the other side, in one pass into one
 * reserved region of the output evbuffer: hop-by-hop fields dropped (RFC 9110 section 7.6.1),
 * framing re-emitted, forwarding fields replaced (X-Forwarded-*, RFC 7239 Forwarded). */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "torii/http.h"
#include "torii/mem.h"
#include "torii/proxy.h"

#define HDR_MAX_CONN_TOKENS 32

struct hdr_tokens {
    struct torii_slice t[HDR_MAX_CONN_TOKENS];
    size_t n;
};

static int hdr_eq(struct torii_slice a, struct torii_slice b)
{
    if (a.len != b.len) {
        return 0;
    }
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.ptr[i];
        unsigned char y = (unsigned char)b.ptr[i];
        if (x >= 'A' && x <= 'Z') {
            x = (unsigned char)(x - 'A' + 'a');
        }
        if (y >= 'A' && y <= 'Z') {
            y = (unsigned char)(y - 'A' + 'a');
        }
        if (x != y) {
            return 0;
        }
    }
    return 1;
}

/* Collect the comma-separated tokens of every field called name (the first
 * HDR_MAX_CONN_TOKENS); for_hop: without "keep-alive", which names Keep-Alive, a field hdr_hop
 * drops anyway (it still counts towards the limit). */
static void hdr_list_tokens(const struct torii_http_header *h, size_t n, struct torii_slice name,
                            int for_hop, struct hdr_tokens *out)
{
    size_t seen = 0;

    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        struct torii_http_list it;
        struct torii_slice tok;
        if (h[i].name.len != name.len || !hdr_eq(h[i].name, name)) {
            continue;
        }
        torii_http_list_init(&it, h[i].value);
        while (torii_http_list_next(&it, &tok)) {
            if (seen < HDR_MAX_CONN_TOKENS) {
                seen++;
                if (!for_hop || !torii_slice_eq_ci(tok, "keep-alive")) {
                    out->t[out->n++] = tok;
                }
            }
        }
    }
}

/* Collect the field names listed in every Connection field. */
static void hdr_conn_tokens(const struct torii_http_header *h, size_t n, struct hdr_tokens *out)
{
    hdr_list_tokens(h, n, (struct torii_slice){"Connection", 10}, 0, out);
}

/* The same, for hdr_hop: the usual "Connection: keep-alive" then lists nothing to compare
 * each field with. */
static void hdr_hop_tokens(const struct torii_http_header *h, size_t n, struct hdr_tokens *out)
{
    hdr_list_tokens(h, n, (struct torii_slice){"Connection", 10}, 1, out);
}

/* Hop-by-hop or framing: never forwarded as is, in either direction. The length filters
 * most fields before any string compare. */
static int hdr_hop(struct torii_slice n, const struct hdr_tokens *tok)
{
    int hop = 0;

    switch (n.len) {
    case 2:
        hop = torii_slice_eq_ci(n, "TE");
        break;
    case 7:
        hop = torii_slice_eq_ci(n, "Upgrade");
        break;
    case 10:
        hop = torii_slice_eq_ci(n, "Connection") || torii_slice_eq_ci(n, "Keep-Alive");
        break;
    case 14:
        hop = torii_slice_eq_ci(n, "Content-Length");
        break;
    case 16:
        hop = torii_slice_eq_ci(n, "Proxy-Connection");
        break;
    case 17:
        hop = torii_slice_eq_ci(n, "Transfer-Encoding");
        break;
    default:
        break;
    }
    for (size_t i = 0; !hop && i < tok->n; i++) {
        hop = hdr_eq(n, tok->t[i]);
    }
    return hop;
}

/* Request-only drops: fields we answer (Expect), replace (forwarding, client certificate) or
 * must never pass (HTTP2-Settings belongs to the h2c upgrade we strip). */
static int hdr_req_drop(struct torii_slice n)
{
    unsigned char c = n.len > 0 ? (unsigned char)(n.ptr[0] | 0x20) : 0;

    switch (c) {
    case 'e':
        return torii_slice_eq_ci(n, "Expect");
    case 'x':
        return torii_slice_eq_ci(n, "X-Forwarded-For") || torii_slice_eq_ci(n, "X-Forwarded-Proto")
               || torii_slice_eq_ci(n, "X-Forwarded-Host");
    case 'f':
        return torii_slice_eq_ci(n, "Forwarded");
    case 'c':
        return torii_slice_eq_ci(n, "Client-Cert") || torii_slice_eq_ci(n, "Client-Cert-Chain");
    case 'h':
        return torii_slice_eq_ci(n, "Host") || torii_slice_eq_ci(n, "HTTP2-Settings");
    default:
        return 0;
    }
}

/* A field the caller asked to drop (fwd->drop: e.g. the claim headers of routes[].jwt). */
static int hdr_listed(struct torii_slice n, const struct torii_proxy_fwd *fwd)
{
    for (size_t i = 0; i < fwd->n_drop; i++) {
        if (hdr_eq(n, fwd->drop[i])) {
            return 1;
        }
    }
    return 0;
}

/* A cursor over a reserved region. */
struct hdr_out {
    char *p;
    size_t len;
    size_t cap;
};

static void out_put(struct hdr_out *o, const char *s, size_t n)
{
    if (o->p != NULL && n > 0 && o->len + n <= o->cap) {
        memcpy(o->p + o->len, s, n);
    }
    o->len += n;
}

static void out_str(struct hdr_out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static void out_slice(struct hdr_out *o, struct torii_slice s)
{
    out_put(o, s.ptr, s.len);
}

/* "name: value" and CRLF, with one bound check. */
static void out_line(struct hdr_out *o, struct torii_slice name, struct torii_slice v)
{
    size_t n = name.len + v.len + 4;

    if (o->p != NULL && o->len + n <= o->cap) {
        char *w = o->p + o->len;
        if (name.len > 0) {
            memcpy(w, name.ptr, name.len);
        }
        w += name.len;
        w[0] = ':';
        w[1] = ' ';
        if (v.len > 0) {
            memcpy(w + 2, v.ptr, v.len);
        }
        w[2 + v.len] = '\r';
        w[3 + v.len] = '\n';
    }
    o->len += n;
}

static void out_field(struct hdr_out *o, const char *name, struct torii_slice v)
{
    out_line(o, (struct torii_slice){name, strlen(name)}, v);
}

/* Decimal digits of v (snprintf costs a thousand instructions; this runs per response). */
static void out_u64(struct hdr_out *o, uint64_t v)
{
    char b[24];
    size_t i = sizeof(b);

    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    out_put(o, b + i, sizeof(b) - i);
}

/* RFC 9110 tchar. */
static int hdr_tchar(unsigned char c)
{
    if ((unsigned)(c | 0x20) - 'a' < 26u || (unsigned)c - '0' < 10u) {
        return 1;
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

static int hdr_tchar_only(struct torii_slice s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (!hdr_tchar((unsigned char)s.ptr[i])) {
            return 0;
        }
    }
    return s.len > 0;
}

/* RFC 7239 section 4: a value that is not a token goes in a quoted-string. Host values come
 * from our own validation (no '"' or '\\'), but escape anyway: the runs between those bytes
 * go out whole. */
static void out_fwd_value(struct hdr_out *o, struct torii_slice v)
{
    size_t run = 0;

    if (hdr_tchar_only(v)) {
        out_slice(o, v);
        return;
    }
    out_put(o, "\"", 1);
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] == '"' || v.ptr[i] == '\\') {
            out_put(o, v.ptr + run, i - run);
            out_put(o, "\\", 1);
            run = i; /* the byte itself opens the next run */
        }
    }
    out_put(o, v.ptr + run, v.len - run);
    out_put(o, "\"", 1);
}

/* Write the request head into o (when o->p is NULL, only measure). */
static void req_head_emit(struct hdr_out *o, const struct torii_http_req *req,
                          const struct torii_proxy_fwd *fwd, const struct hdr_tokens *tok)
{
    const char *proto = fwd->https ? "https" : "http";
    struct torii_slice ip = {fwd->client_ip, strlen(fwd->client_ip)};
    int v6 = memchr(ip.ptr, ':', ip.len) != NULL;

    out_str(o, req->method);
    out_put(o, " ", 1);
    if (req->target.len > 0 && req->target.ptr[0] != '/'
        && !(req->target.len == 1 && req->target.ptr[0] == '*')) {
        /* absolute-form -> origin-form (RFC 9112 section 3.2.2) */
        out_slice(o, req->path);
        if (req->query.ptr > req->path.ptr && req->query.ptr <= req->target.ptr + req->target.len
            && req->query.ptr[-1] == '?') {
            out_put(o, "?", 1);
            out_slice(o, req->query);
        }
    } else {
        out_slice(o, req->target);
    }
    out_str(o, " HTTP/1.1\r\n");
    out_field(o, "Host", fwd->host);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct torii_http_header *h = &req->headers[i];
        if (hdr_hop(h->name, tok) || hdr_req_drop(h->name) || hdr_listed(h->name, fwd)) {
            continue;
        }
        out_line(o, h->name, h->value);
    }
    if (fwd->body == TORII_HTTP_BODY_LENGTH) {
        out_str(o, "Content-Length: ");
        out_u64(o, fwd->body_length);
        out_put(o, "\r\n", 2);
    } else if (fwd->body == TORII_HTTP_BODY_CHUNKED) {
        out_str(o, "Transfer-Encoding: chunked\r\n");
    }
    if (fwd->upgrade.len > 0) {
        out_str(o, "Connection: upgrade\r\n");
        out_field(o, "Upgrade", fwd->upgrade);
    }
    out_str(o, "X-Forwarded-For: ");
    out_slice(o, ip);
    out_str(o, "\r\nX-Forwarded-Proto: ");
    out_str(o, proto);
    out_str(o, "\r\n");
    out_field(o, "X-Forwarded-Host", fwd->host);
    out_str(o, "Forwarded: for=");
    if (v6) {
        out_str(o, "\"[");
        out_slice(o, ip);
        out_str(o, "]\"");
    } else {
        out_slice(o, ip);
    }
    out_str(o, ";host=");
    out_fwd_value(o, fwd->host);
    out_str(o, ";proto=");
    out_str(o, proto);
    out_put(o, "\r\n", 2);
    if (fwd->client_cert.len > 0) {
        out_field(o, "Client-Cert", fwd->client_cert);
    }
    if (fwd->client_cert_chain.len > 0) {
        out_field(o, "Client-Cert-Chain", fwd->client_cert_chain);
    }
    if (fwd->extra.len > 0) {
        out_slice(o, fwd->extra);
    }
    out_put(o, "\r\n", 2);
}

/* A head is written once into a reserved region sized by a quick upper bound of its length
 * (guess); should the bound be short, the emit measured the exact length and runs again into
 * a region of that size. */
typedef void (*hdr_emit_fn)(struct hdr_out *o, const void *arg);

static int hdr_write(struct evbuffer *out, size_t guess, hdr_emit_fn emit, const void *arg)
{
    struct evbuffer_iovec v;
    struct hdr_out o = {0};

    for (int pass = 0; pass < 2; pass++) {
        if (evbuffer_reserve_space(out, (ev_ssize_t)guess, &v, 1) != 1 || v.iov_len < guess) {
            return TORII_ENOMEM;
        }
        o.p = v.iov_base;
        o.cap = v.iov_len;
        o.len = 0;
        emit(&o, arg);
        if (o.len <= o.cap) {
            v.iov_len = o.len;
            return evbuffer_commit_space(out, &v, 1) == 0 ? TORII_OK : TORII_ENOMEM;
        }
        guess = o.len; /* nothing was committed: the second reservation replaces the first */
    }
    return TORII_ENOMEM;
}

/* Every field as received, with its ": " and CRLF: what a head that keeps them all takes. */
static size_t hdr_fields_len(const struct torii_http_header *h, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        len += h[i].name.len + h[i].value.len + 4;
    }
    return len;
}

struct req_emit_arg {
    const struct torii_http_req *req;
    const struct torii_proxy_fwd *fwd;
    struct hdr_tokens tok;
};

static void req_emit_cb(struct hdr_out *o, const void *arg)
{
    const struct req_emit_arg *a = arg;

    req_head_emit(o, a->req, a->fwd, &a->tok);
}

int torii_proxy_req_head_write(struct evbuffer *out, const struct torii_http_req *req,
                               const struct torii_proxy_fwd *fwd)
{
    struct req_emit_arg a; /* a.tok is filled below (its n first), not cleared */
    /* The request line, the fields, Host three times (one quoted and escaped), the client
     * address twice, and the fixed names and framing lines (under 256 bytes). */
    size_t guess = strlen(req->method) + req->target.len
                   + hdr_fields_len(req->headers, req->n_headers) + 4 * fwd->host.len
                   + 2 * strlen(fwd->client_ip) + fwd->upgrade.len + fwd->client_cert.len
                   + fwd->client_cert_chain.len + fwd->extra.len + 320;

    a.req = req;
    a.fwd = fwd;
    hdr_hop_tokens(req->headers, req->n_headers, &a.tok);
    return hdr_write(out, guess, req_emit_cb, &a);
}

static const struct torii_slice *hdr_find(const struct torii_http_header *h, size_t n,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (torii_slice_eq_ci(h[i].name, name)) {
            return &h[i].value;
        }
    }
    return NULL;
}

/* A field of resp that a proxied response keeps: not hop-by-hop, except for HEAD and 304
 * (framing NONE) the upstream's Content-Length, which describes the representation. */
static int resp_field_kept(const struct torii_http_resp *resp, struct torii_slice name,
                           enum torii_proxy_out_framing framing, const struct hdr_tokens *tok)
{
    if (!hdr_hop(name, tok)) {
        return 1;
    }
    return framing == TORII_PROXY_OUT_NONE && resp->status != 204 && resp->status != 101
           && torii_slice_eq_ci(name, "Content-Length");
}

void torii_proxy_resp_fields(const struct torii_http_resp *resp,
                             enum torii_proxy_out_framing framing, torii_proxy_field_cb cb,
                             void *arg)
{
    struct hdr_tokens tok;

    hdr_hop_tokens(resp->headers, resp->n_headers, &tok);
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (resp_field_kept(resp, resp->headers[i].name, framing, &tok)) {
            cb(arg, &resp->headers[i]);
        }
    }
}

static void resp_head_emit(struct hdr_out *o, const struct torii_http_resp *resp,
                           enum torii_proxy_out_framing framing, uint64_t length, int close,
                           int client_minor, const struct hdr_tokens *tok)
{
    out_str(o, "HTTP/1.1 ");
    out_u64(o, resp->status > 0 ? (uint64_t)resp->status : 0);
    out_put(o, " ", 1);
    if (resp->reason.len > 0) {
        out_slice(o, resp->reason);
    } else {
        out_str(o, torii_http_reason(resp->status));
    }
    out_put(o, "\r\n", 2);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct torii_http_header *h = &resp->headers[i];
        if (!resp_field_kept(resp, h->name, framing, tok)) {
            continue;
        }
        out_line(o, h->name, h->value);
    }
    if (framing == TORII_PROXY_OUT_LENGTH) {
        out_str(o, "Content-Length: ");
        out_u64(o, length);
        out_put(o, "\r\n", 2);
    } else if (framing == TORII_PROXY_OUT_CHUNKED) {
        out_str(o, "Transfer-Encoding: chunked\r\n");
    }
    if (resp->status == 101) {
        const struct torii_slice *up = hdr_find(resp->headers, resp->n_headers, "Upgrade");
        if (up != NULL) {
            out_field(o, "Upgrade", *up);
        }
        out_str(o, "Connection: upgrade\r\n");
    } else if (close) {
        out_str(o, "Connection: close\r\n");
    } else if (client_minor == 0) {
        out_str(o, "Connection: keep-alive\r\n");
    }
    out_put(o, "\r\n", 2);
}

struct resp_emit_arg {
    const struct torii_http_resp *resp;
    enum torii_proxy_out_framing framing;
    uint64_t length;
    int close;
    int client_minor;
    struct hdr_tokens tok;
};

static void resp_emit_cb(struct hdr_out *o, const void *arg)
{
    const struct resp_emit_arg *a = arg;

    resp_head_emit(o, a->resp, a->framing, a->length, a->close, a->client_minor, &a->tok);
}

int torii_proxy_resp_head_write(struct evbuffer *out, const struct torii_http_resp *resp,
                                enum torii_proxy_out_framing framing, uint64_t length, int close,
                                int client_minor)
{
    struct resp_emit_arg a; /* a.tok is filled below (its n first), not cleared */
    /* The status line (a reason of ours is under 64 bytes), the fields, and the framing and
     * connection lines of ours (under 128 bytes). */
    size_t guess = resp->reason.len + hdr_fields_len(resp->headers, resp->n_headers) + 256;

    a.resp = resp;
    a.framing = framing;
    a.length = length;
    a.close = close;
    a.client_minor = client_minor;
    hdr_hop_tokens(resp->headers, resp->n_headers, &a.tok);
    return hdr_write(out, guess, resp_emit_cb, &a);
}

static int hdr_reg_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '.' || c == '_' || c == '~';
}

/* "[v6]" at the start of host: the length up to and with ']', 0 when malformed. */
static size_t host_ip_literal_end(struct torii_slice host)
{
    const char *rb = memchr(host.ptr, ']', host.len);
    size_t end;

    if (rb == NULL) {
        return 0;
    }
    end = (size_t)(rb - host.ptr) + 1;
    for (size_t i = 1; i + 1 < end; i++) {
        unsigned char c = (unsigned char)host.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':'
              || c == '.')) {
            return 0;
        }
    }
    return end > 2 ? end : 0;
}

/* A registered name up to ':' or the end, lower-cased into out as it is checked (at most
 * TORII_SNI_NAME_MAX + 1 bytes: a trailing dot goes later): its length, 0 when empty,
 * malformed or longer than any name. */
static size_t host_reg_name_copy(struct torii_slice host, char *out)
{
    size_t end = 0;

    while (end < host.len && host.ptr[end] != ':') {
        unsigned char c = (unsigned char)host.ptr[end];
        if ((unsigned)c - 'A' < 26u) {
            c = (unsigned char)(c | 0x20);
        } else if (!hdr_reg_char(c)) {
            return 0;
        }
        if (end > TORII_SNI_NAME_MAX) {
            return 0;
        }
        out[end++] = (char)c;
    }
    return end;
}

/* What follows the host at end: nothing, or ":" and a port of digits only (may be empty,
 * RFC 3986 section 3.2.3). */
static int host_port_ok(struct torii_slice host, size_t end)
{
    if (end == host.len) {
        return 1;
    }
    if (host.ptr[end] != ':' || host.len - end > 6) {
        return 0;
    }
    for (size_t i = end + 1; i < host.len; i++) {
        if (host.ptr[i] < '0' || host.ptr[i] > '9') {
            return 0;
        }
    }
    return 1;
}

int torii_proxy_host_parse(struct torii_slice host, char *out)
{
    int literal;
    size_t end;

    if (host.len == 0 || host.len > TORII_SNI_NAME_MAX + 6) {
        return TORII_EINVAL;
    }
    literal = host.ptr[0] == '[';
    end = literal ? host_ip_literal_end(host) : host_reg_name_copy(host, out);
    if (end == 0 || !host_port_ok(host, end)) {
        return TORII_EINVAL;
    }
    if (!literal && host.ptr[end - 1] == '.') {
        end--;
    }
    if (end == 0 || end > TORII_SNI_NAME_MAX) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; literal && i < end; i++) {
        char c = host.ptr[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[end] = '\0';
    return (int)end;
}

/* ---- upgrades (RFC 9110 section 7.8, RFC 6455 section 4.1) ------------------------------ */

/* Refused with "<pre><token, cut at 40><post>". */
static void upg_refuse(struct torii_proxy_upgrade_verdict *v, const char *pre,
                       struct torii_slice tok, const char *post)
{
    v->what = TORII_PROXY_UPGRADE_REFUSE;
    v->status = 400;
    (void)snprintf(v->msg, sizeof(v->msg), "%s%.*s%s", pre, (int)(tok.len < 40 ? tok.len : 40),
                   tok.ptr, post);
}

static int upg_listed(struct torii_slice tok, char *const *allowed, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct torii_slice a = {allowed[i], strlen(allowed[i])};
        if (hdr_eq(tok, a)) {
            return 1;
        }
    }
    return 0;
}

/* Sec-WebSocket-Key: 16 bytes in base64, 22 characters and "==". */
static int upg_ws_key_ok(const struct torii_slice *k)
{
    if (k == NULL || k->len != 24 || k->ptr[22] != '=' || k->ptr[23] != '=') {
        return 0;
    }
    for (size_t i = 0; i < 22; i++) {
        unsigned char c = (unsigned char)k->ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+'
              || c == '/')) {
            return 0;
        }
    }
    return 1;
}

/* The opening handshake of a WebSocket client: 0, or refused in v. */
static int upg_ws_check(const struct torii_http_req *req, struct torii_proxy_upgrade_verdict *v)
{
    struct torii_slice m = {req->method, strlen(req->method)};
    struct torii_slice none = {"", 0};

    if (strcmp(req->method, "GET") != 0) {
        upg_refuse(v, "WebSocket handshake: method ", m, " (must be GET)");
        return -1;
    }
    if (!upg_ws_key_ok(torii_http_req_header(req, "Sec-WebSocket-Key"))) {
        upg_refuse(v, "WebSocket handshake: missing or invalid Sec-WebSocket-Key", none, "");
        return -1;
    }
    if (torii_http_req_header(req, "Sec-WebSocket-Version") == NULL) {
        upg_refuse(v, "WebSocket handshake: missing Sec-WebSocket-Version", none, "");
        return -1;
    }
    return 0;
}

void torii_proxy_upgrade_decide(const struct torii_http_req *req, enum torii_http_body_kind body,
                                char *const *allowed, size_t n_allowed,
                                struct torii_proxy_upgrade_verdict *v)
{
    struct hdr_tokens t;
    struct torii_slice tok = {"", 0};
    struct torii_slice upgrade = {"upgrade", 7};
    size_t n = 0;
    int listed = 0;

    memset(v, 0, sizeof(*v));
    hdr_list_tokens(req->headers, req->n_headers, (struct torii_slice){"Upgrade", 7}, 0, &t);
    for (size_t i = 0; i < t.n; i++) {
        if (!torii_slice_eq_ci(t.t[i], "h2c")) { /* never: HTTP/2 is offered by ALPN only */
            tok = t.t[i];
            n++;
        }
    }
    if (n == 0) {
        return;
    }
    hdr_conn_tokens(req->headers, req->n_headers, &t);
    for (size_t i = 0; i < t.n; i++) {
        listed |= hdr_eq(t.t[i], upgrade);
    }
    if (n > 1) {
        upg_refuse(v, "Upgrade: more than one protocol offered (", tok, " and others)");
    } else if (!upg_listed(tok, allowed, n_allowed)) {
        upg_refuse(v, "Upgrade: protocol '", tok, "' is not allowed on this route");
    } else if (!listed) {
        upg_refuse(v, "Upgrade: '", tok, "' without Connection: upgrade");
    } else if (req->version_minor != 1) {
        upg_refuse(v, "Upgrade: '", tok, "' in an HTTP/1.0 request");
    } else if (body != TORII_HTTP_BODY_NONE) {
        upg_refuse(v, "Upgrade: '", tok, "' in a request with a body");
    } else if (!torii_slice_eq_ci(tok, "websocket") || upg_ws_check(req, v) == 0) {
        v->what = TORII_PROXY_UPGRADE_FORWARD;
        v->token = tok;
        v->websocket = torii_slice_eq_ci(tok, "websocket");
    }
}
