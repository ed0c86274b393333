/* h2req.c - the request head of an HTTP/2 stream towards its child connection (h2_int.h).
 * The stream keeps its regular fields as they came (struct h2s_fields: bytes and spans, no
 * text). When the child starts, the head goes to it in one of two ways that read the same:
 *  - as parts (torii_http_parser_head_parts): method, :path, then host (:authority, else
 *    host), the fields in their order, the joined cookie and content-length, exactly the
 *    lines the text below would hold. The child's parser takes them at once when that text is
 *    an ordinary head its one-pass reader would take (src/http/headscan.c), with the same
 *    limits and policy, and the child dispatches the event at its next step (pc->head_given):
 *    no text is written or scanned;
 *  - otherwise (a websocket CONNECT, a chunked body, more fields than the one-pass reader
 *    takes, a byte outside its subset, ...) as that HTTP/1.1 text, written into the child's
 *    input and parsed there by the full parser.
 * The body held so far follows in the child's input either way. Worker thread only. */
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "h2_int.h"
#include "torii/stream.h"

#define H2F_KEEP_BYTES 4096 /* storage a kept stream's field store holds on to */
#define H2F_KEEP_SPANS 64

static int h2f_reserve(struct h2s_fields *f, size_t bytes)
{
    size_t cap = f->cap > 0 ? f->cap : 512;
    char *b;

    while (cap < f->len + bytes) {
        cap *= 2;
    }
    if (cap != f->cap) {
        if ((b = realloc(f->buf, cap)) == NULL) {
            return TORII_ENOMEM;
        }
        f->buf = b;
        f->cap = cap;
    }
    if (f->n == f->cap_span) {
        size_t n = f->cap_span > 0 ? f->cap_span * 2 : 16;
        struct h2s_span *s = realloc(f->span, n * sizeof(*s));
        if (s == NULL) {
            return TORII_ENOMEM;
        }
        f->span = s;
        f->cap_span = n;
    }
    return TORII_OK;
}

int torii_proxy__h2f_add(struct h2s_fields *f, const void *name, size_t nlen, const void *value,
                         size_t vlen)
{
    struct h2s_span *s;

    /* bounded by limits.h2_max_header_list_size (well under 4 GiB) before it gets here */
    if (nlen + vlen > UINT32_MAX - f->len || h2f_reserve(f, nlen + vlen) != TORII_OK) {
        return TORII_ENOMEM;
    }
    s = &f->span[f->n++];
    s->name_off = (uint32_t)f->len;
    s->name_len = (uint32_t)nlen;
    memcpy(f->buf + f->len, name, nlen);
    f->len += nlen;
    s->val_off = (uint32_t)f->len;
    s->val_len = (uint32_t)vlen;
    if (vlen > 0) {
        memcpy(f->buf + f->len, value, vlen);
    }
    f->len += vlen;
    return TORII_OK;
}

void torii_proxy__h2f_clear(struct h2s_fields *f)
{
    f->len = 0;
    f->n = 0;
    if (f->cap > H2F_KEEP_BYTES) {
        free(f->buf);
        f->buf = NULL;
        f->cap = 0;
    }
    if (f->cap_span > H2F_KEEP_SPANS) {
        free(f->span);
        f->span = NULL;
        f->cap_span = 0;
    }
}

void torii_proxy__h2f_free(struct h2s_fields *f)
{
    if (f != NULL) {
        free(f->buf);
        free(f->span);
        free(f);
    }
}

static struct torii_slice h2f_name(const struct h2s_fields *f, size_t i)
{
    return (struct torii_slice){f->buf + f->span[i].name_off, f->span[i].name_len};
}

static struct torii_slice h2f_value(const struct h2s_fields *f, size_t i)
{
    return (struct torii_slice){f->buf + f->span[i].val_off, f->span[i].val_len};
}

static int h2s_line(struct evbuffer *in, struct torii_slice name, struct torii_slice value)
{
    return evbuffer_add(in, name.ptr, name.len) == 0 && evbuffer_add(in, ": ", 2) == 0
                   && evbuffer_add(in, value.ptr, value.len) == 0
                   && evbuffer_add(in, "\r\n", 2) == 0
               ? 0
               : -1;
}

/* RFC 8441 section 5: the HTTP/1.1 handshake of RFC 6455 for a websocket CONNECT. */
static int h2s_ws_lines(struct evbuffer *in)
{
    unsigned char nonce[16];
    char key[32];

    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        return -1;
    }
    (void)EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
    return evbuffer_add_printf(in,
                               "connection: upgrade\r\nupgrade: websocket\r\n"
                               "sec-websocket-key: %s\r\n",
                               key)
                   < 0
               ? -1
               : 0;
}

/* The head as HTTP/1.1 text into in. */
static int h2s_head_text(struct h2_stream *st, struct evbuffer *in)
{
    const char *host = st->authority != NULL ? st->authority : st->host;
    const char *line[] = {st->method, " ", st->path, " HTTP/1.1\r\nhost: ", host, "\r\n"};
    int rc = 0;

    for (size_t i = 0; i < sizeof(line) / sizeof(line[0]) && rc == 0; i++) {
        rc = evbuffer_add(in, line[i], strlen(line[i]));
    }
    if (rc == 0 && st->ws) {
        rc = h2s_ws_lines(in);
    }
    for (size_t i = 0; i < st->fields->n && rc == 0; i++) {
        rc = h2s_line(in, h2f_name(st->fields, i), h2f_value(st->fields, i));
    }
    if (rc == 0 && evbuffer_get_length(st->cookie) > 0
        && (evbuffer_add(in, "cookie: ", 8) != 0 || evbuffer_add_buffer(in, st->cookie) != 0
            || evbuffer_add(in, "\r\n", 2) != 0)) {
        rc = -1;
    }
    if (rc == 0 && st->content_length >= 0) {
        rc = evbuffer_add_printf(in, "content-length: %lld\r\n", (long long)st->content_length) > 0
                 ? 0
                 : -1;
    } else if (rc == 0 && st->chunked) {
        rc = evbuffer_add(in, "transfer-encoding: chunked\r\n", 28);
    }
    if (rc == 0) {
        rc = evbuffer_add(in, "\r\n", 2);
    }
    return rc == 0 ? TORII_OK : TORII_ENOMEM;
}

/* The head as parts to the child's parser: TORII_OK (taken: the event waits in
 * child->head_given), TORII_EAGAIN (not an ordinary head: the text then) or TORII_ENOMEM. */
static int h2s_head_parts(struct h2_stream *st, struct proxy_conn *child)
{
    const struct h2s_fields *f = st->fields;
    const char *host = st->authority != NULL ? st->authority : st->host;
    struct torii_http_header h[TORII_HTTP_PARTS_MAX];
    size_t n = 0;
    size_t head_bytes = 0;
    char cl[24];
    enum torii_http_parse_ev ev = TORII_HTTP_PARSE_ERROR;

    if (st->ws || st->chunked || f->n + 3 > TORII_HTTP_PARTS_MAX) {
        return TORII_EAGAIN;
    }
    h[n++] = (struct torii_http_header){{"host", 4}, {host, strlen(host)}};
    for (size_t i = 0; i < f->n; i++) {
        h[n++] = (struct torii_http_header){h2f_name(f, i), h2f_value(f, i)};
    }
    if (evbuffer_get_length(st->cookie) > 0) {
        const char *c = (const char *)evbuffer_pullup(st->cookie, -1);
        if (c == NULL) {
            return TORII_ENOMEM;
        }
        h[n++] = (struct torii_http_header){{"cookie", 6}, {c, evbuffer_get_length(st->cookie)}};
    }
    if (st->content_length >= 0) {
        size_t k = torii_proxy__h2_digits(cl, (uint64_t)st->content_length);
        h[n++] = (struct torii_http_header){{"content-length", 14}, {cl + k, sizeof(cl) - k}};
    }
    if (child->rp == NULL && torii_proxy__rp_take(child) != TORII_OK) {
        return TORII_ENOMEM;
    }
    if (torii_http_parser_head_parts(child->rp, st->method,
                                     (struct torii_slice){st->path, strlen(st->path)}, h, n, &ev,
                                     &head_bytes)
        != TORII_OK) {
        return TORII_EAGAIN;
    }
    child->head_given = (unsigned)ev;
    child->head_bytes += head_bytes;
    return TORII_OK;
}

int torii_proxy__h2s_give_head(struct h2_stream *st)
{
    struct evbuffer *in = torii_stream_input(st->child->st);
    int rc = h2s_head_parts(st, st->child);

    if (rc == TORII_EAGAIN) {
        rc = h2s_head_text(st, in);
    }
    if (rc == TORII_OK && evbuffer_add_buffer(in, st->held) != 0) {
        rc = TORII_ENOMEM;
    }
    return rc;
}
