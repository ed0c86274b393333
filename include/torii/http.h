/* http.h - strict HTTP/1.1 server engine on a bufferevent, parsing with llhttp (strict mode)
 * plus our own framing policy (RFC 9112). One torii_http_conn per client connection; the
 * engine reads requests, buffers bodies up to limits.max_body, calls the handler once per
 * complete request, and writes responses in request order (pipelining), keeping the
 * connection alive per RFC 9112 section 9.
 * Two layers: torii_http_parser is fed bytes and emits events (no I/O, testable alone; the
 * streaming proxy drives it directly, in request mode on clients and in response mode on
 * upstream connections); torii_http_conn drives one parser over a bufferevent (admin).
 * Threads: loop thread only (the thread running the event_base the bufferevent belongs to).
 * A parser belongs to one thread at a time.
 * Ownership: torii_http_conn_start takes the bufferevent (bev_owned) on success and frees it
 * when the connection ends. A torii_http_req and every slice in it are borrowed for the
 * duration of the handler call only. The handler must call torii_http_respond exactly once
 * before returning, or torii_http_defer (then torii_http_deferred_respond later). */
#ifndef TORII_HTTP_H
#define TORII_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "torii/err.h"
#include "torii/mem.h"

struct torii_http_limits {
    size_t max_header_bytes;    /* whole head (request line + fields); over -> 431 */
    size_t max_headers;         /* number of fields; over -> 431 */
    size_t max_target;          /* request-target length; over -> 414 */
    size_t max_body;            /* declared or received body; over -> 413 */
    uint32_t header_timeout_ms; /* to receive a complete header section; then 408 + close */
    uint32_t idle_timeout_ms;   /* keep-alive idle between requests (and I/O stalls); then close */
    uint32_t max_requests;      /* per connection, 0 = unlimited */
};

/* A chunk-size line of a chunked body (hex size, chunk extensions, CRLF) is at most this many
 * bytes, in both directions (RFC 9112 section 7.1.1): longer is a 400 (502 from an upstream).
 * Trailer sections are bounded like head sections, by max_header_bytes and max_headers. */
#define TORII_HTTP_MAX_CHUNK_LINE 4096

/** Safe defaults: 16 KiB headers, 100 fields, 8 KiB target, 1 MiB body, 10 s, 60 s. */
void torii_http_limits_default(struct torii_http_limits *lim);

struct torii_http_header {
    struct torii_slice name;
    struct torii_slice value; /* leading and trailing OWS removed */
};

struct torii_http_req {
    const char *method;        /* NUL-terminated, e.g. "GET" */
    struct torii_slice target; /* as received */
    struct torii_slice path;   /* target up to '?' (origin-form), not decoded; for absolute-form
                                  the path after the authority ("/" when empty); "*" for OPTIONS * */
    struct torii_slice query;  /* after '?', empty if none */
    int version_minor;         /* 0 or 1 */
    const struct torii_http_header *headers;
    size_t n_headers;
    const struct torii_http_header *trailers; /* chunked trailer fields, never merged above */
    size_t n_trailers;
    const unsigned char *body; /* de-chunked; NULL when empty */
    size_t body_len;
    int keep_alive;   /* the connection may carry another request after this one */
    const char *peer; /* "ip:port", for logs */
    const char *sni;  /* TLS server name or NULL */
};

/** First header with that name (case-insensitive), or NULL. */
const struct torii_slice *torii_http_req_header(const struct torii_http_req *req, const char *name);

/** A walk over the elements of a comma-separated field value (RFC 9110 section 5.6.1), e.g.
 * Connection or Upgrade: each element without the OWS (SP, HTAB) around it, empty elements
 * skipped. Quotes mean nothing to it (a comma inside a quoted-string splits). Set it up with
 * torii_http_list_init; it borrows the value. Any thread (no state but the struct). */
struct torii_http_list {
    struct torii_slice v;
    size_t i; /* offset of the next unread byte of v */
};

/** Start a walk over v (borrowed for the walk). */
static inline void torii_http_list_init(struct torii_http_list *it, struct torii_slice v)
{
    it->v = v;
    it->i = 0;
}

/** The next non-empty element into *tok (a slice of the value): 1, or 0 at the end (then
 * every later call returns 0). Inline: the parser's policy walks Connection per request. */
static inline int torii_http_list_next(struct torii_http_list *it, struct torii_slice *tok)
{
    const char *v = it->v.ptr;
    size_t len = it->v.len;
    size_t i = it->i;

    while (i < len) {
        size_t s;
        size_t e;
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        s = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) {
            e--;
        }
        if (e > s) {
            it->i = i;
            tok->ptr = v + s;
            tok->len = e - s;
            return 1;
        }
    }
    it->i = i;
    return 0;
}

/** A response head parsed by a response-mode parser (the upstream side of the proxy). */
struct torii_http_resp {
    int status;
    struct torii_slice reason;
    int version_minor;
    const struct torii_http_header *headers;
    size_t n_headers;
    const struct torii_http_header *trailers; /* chunked trailer fields, never merged above */
    size_t n_trailers;
    int keep_alive; /* the connection may carry another exchange after this one */
    int interim;    /* 1xx (never 101): another response head follows */
};

/** How the body of the current message is framed (RFC 9112 section 6.3). */
enum torii_http_body_kind {
    TORII_HTTP_BODY_NONE = 0, /* no body */
    TORII_HTTP_BODY_LENGTH,   /* Content-Length bytes */
    TORII_HTTP_BODY_CHUNKED,  /* chunked: feed the bytes, the body callback gets the data */
    TORII_HTTP_BODY_EOF,      /* responses only: until the connection closes */
};

/* ---- parser: bytes in, events out ------------------------------------------------------ */

struct torii_http_parser;

enum torii_http_parse_ev {
    TORII_HTTP_PARSE_MORE = 0, /* every byte given was consumed; feed more */
    TORII_HTTP_PARSE_HEAD,     /* the head of a request with a body is complete; the request
                                  (without body) is readable; body bytes follow */
    TORII_HTTP_PARSE_DONE,     /* a whole request (body, trailers) is complete; call
                                  torii_http_parser_next() before feeding the next one */
    TORII_HTTP_PARSE_ERROR,    /* rejected: see torii_http_parser_error(); close after replying */
};

/** Body sink for streaming: when set, body bytes go to cb instead of being buffered (max_body
 * is still enforced). Return TORII_OK, or an error to abort the request with a 500. */
typedef int (*torii_http_body_cb)(void *arg, const unsigned char *data, size_t len);

/** New parser for requests under lim (copied). Aborts on OOM. */
int torii_http_parser_new(const struct torii_http_limits *lim, struct torii_http_parser **out)
    TORII_MUST_USE;
/** New parser for responses (llhttp HTTP_RESPONSE, the same strict section scanner): used by
 * the proxy on upstream connections. Errors are always reported as 502. 1xx heads come out as
 * DONE with resp->interim set; 101 is an error (we never ask for a protocol switch); a
 * response with both Content-Length and Transfer-Encoding, a coding other than "chunked", or
 * a bad Content-Length is an error. Aborts on OOM. */
int torii_http_parser_new_response(const struct torii_http_limits *lim,
                                   struct torii_http_parser **out) TORII_MUST_USE;
/** Response mode: the next response answers a HEAD request (no body whatever its framing). */
void torii_http_parser_set_no_body(struct torii_http_parser *p, int on);
/** Response mode: the next response answers a request that asked for a protocol switch
 * (Upgrade): a 101 is then a complete response without body (DONE, not interim, keep_alive
 * 0); the bytes after its head belong to the new protocol and are never fed. */
void torii_http_parser_allow_switch(struct torii_http_parser *p, int on);
/** Response mode: the current response head, valid from HEAD (or DONE) until
 * torii_http_parser_next(); trailers only at DONE. NULL before the head is complete. */
const struct torii_http_resp *torii_http_parser_resp(const struct torii_http_parser *p);
/** Framing of the current message once its head is complete (NONE before). *length (may be
 * NULL) gets the Content-Length for LENGTH. */
enum torii_http_body_kind torii_http_parser_body(const struct torii_http_parser *p,
                                                 uint64_t *length);
/** After HEAD with a LENGTH or EOF body: the caller took the n body bytes itself (moving them
 * between evbuffers without copying) and never fed them. Completes the message: the next
 * feed returns DONE (no trailers), then call torii_http_parser_next() as usual. */
void torii_http_parser_body_taken(struct torii_http_parser *p, uint64_t n);
/** 1 once any byte of the current message has been seen. */
int torii_http_parser_started(const struct torii_http_parser *p);
/** NULL accepted. */
void torii_http_parser_free(struct torii_http_parser *p);
/** Route body bytes to cb (NULL: buffer them, the default). */
void torii_http_parser_set_body_cb(struct torii_http_parser *p, torii_http_body_cb cb, void *arg);
/** on: the owner moves every Content-Length body itself after HEAD and never feeds it (it
 * calls torii_http_parser_body_taken()). Lets a head with such a body be read in one pass
 * (src/http/headscan.c) like a head without one; what is accepted or rejected does not
 * change. Off by default and after torii_http_parser_reset(). */
void torii_http_parser_set_body_moved(struct torii_http_parser *p, int on);
/** on (the default): complete ordinary heads are read in one pass; off: always by the full
 * parser (tests compare the two). */
void torii_http_parser_set_one_pass(struct torii_http_parser *p, int on);

/** A request head given as parts instead of bytes (an HTTP/2 stream's request towards the
 * engine), read as if written "method SP target SP HTTP/1.1 CRLF", then "name: value CRLF"
 * per field (names and values as given) and CRLF, and fed: when that text is within what
 * the one-pass reader takes (src/http/headscan.c) and the parser is at the start of a
 * message, the head is recorded and judged by the same policy as if fed (f copied), *ev gets
 * the event the feed would have returned (HEAD, DONE or ERROR) and *head_bytes the size of
 * the text: TORII_OK. Otherwise TORII_EAGAIN and nothing changed (the caller feeds the text). */
#define TORII_HTTP_PARTS_MAX 32 /* fields of a head torii_http_parser_head_parts may take */
int torii_http_parser_head_parts(struct torii_http_parser *p, const char *method,
                                 struct torii_slice target, const struct torii_http_header *f,
                                 size_t n, enum torii_http_parse_ev *ev, size_t *head_bytes)
    TORII_MUST_USE;

/** Feed len bytes; *consumed is how many were used. Stops (returning the event) right after
 * the head of a request with a body, and right after a complete request, so pipelined bytes
 * stay with the caller. After ERROR every further call returns ERROR and consumes nothing. */
enum torii_http_parse_ev torii_http_parser_feed(struct torii_http_parser *p, const char *data,
                                                size_t len, size_t *consumed);

/** The current request, valid from HEAD (or DONE) until torii_http_parser_next(); body and
 * trailers are only set at DONE. NULL before the head is complete. peer/sni are NULL. */
const struct torii_http_req *torii_http_parser_req(const struct torii_http_parser *p);
/** 1 when the client sent "Expect: 100-continue" (HTTP/1.1) and waits before the body. */
int torii_http_parser_expects_continue(const struct torii_http_parser *p);
/** 1 while no byte of the next request has been seen (the connection is idle). */
int torii_http_parser_idle(const struct torii_http_parser *p);
/** After ERROR: status to answer (400, 408, 413, 414, 417, 431, 501, 505, 500) and a short
 * static message for the JSON body. Rejected requests always close the connection. */
int torii_http_parser_error(const struct torii_http_parser *p, const char **msg);
/** After DONE: forget the request (frees its storage) and get ready for the next one. */
void torii_http_parser_next(struct torii_http_parser *p);
/** Between messages (not started): make p as a new parser of its kind with the same limits,
 * for another connection (no body callback; storage above 4 KiB released). */
void torii_http_parser_reset(struct torii_http_parser *p);

/* ---- response writer ------------------------------------------------------------------- */

struct torii_http_response {
    int status;
    const char *content_type; /* NULL: no Content-Type */
    const void *body;
    size_t len;
    const struct torii_http_header *extra; /* copied; invalid ones dropped (see below) */
    size_t n_extra;
    int head_only;     /* answer to HEAD: Content-Length of the body, but no body */
    int close;         /* send "Connection: close" */
    int version_minor; /* of the request; HTTP/1.0 keep-alive gets "Connection: keep-alive" */
};

/** Append a complete response to out: status line, Date, Content-Type, Content-Length,
 * Connection, then the extra headers. Extra headers whose name is not a token, whose value
 * holds CR, LF or NUL, or that the engine owns (Content-Length, Transfer-Encoding,
 * Connection, Date) are dropped. 1xx, 204 and 304 get neither body nor Content-Length.
 * Returns TORII_OK or TORII_ENOMEM. */
int torii_http_response_write(struct evbuffer *out, const struct torii_http_response *r)
    TORII_MUST_USE;

/* ---- connection engine ----------------------------------------------------------------- */

struct torii_http_exchange;
struct torii_http_conn;

typedef void (*torii_http_handler_cb)(struct torii_http_exchange *ex,
                                      const struct torii_http_req *req, void *arg);
/** Called once when the engine ends a connection by itself (not from torii_http_conn_free),
 * just before the conn is freed; it must not call back into the engine for this conn. */
typedef void (*torii_http_close_cb)(struct torii_http_conn *conn, void *arg);

/** Queue the response to the current request. Adds Date, Content-Length and Connection as
 * needed; extra headers are copied. body is copied. HEAD requests get no body. */
void torii_http_respond(struct torii_http_exchange *ex, int status, const char *content_type,
                        const void *body, size_t len, const struct torii_http_header *extra,
                        size_t n_extra);

/** Answer the current request later: called by the handler instead of torii_http_respond.
 * The connection then reads nothing more and has no timer until its owner calls
 * torii_http_deferred_respond (the owner bounds the wait). If the connection ends first, its
 * close_cb runs as usual: the owner must forget it there. */
void torii_http_defer(struct torii_http_exchange *ex);
/** The connection of an exchange (to answer a deferred request). */
struct torii_http_conn *torii_http_exchange_conn(struct torii_http_exchange *ex);
/** The response to the deferred request of conn (same arguments as torii_http_respond); the
 * connection then goes on as after any response. conn may be freed by this call (close_cb
 * runs then): do not use it afterwards. Loop thread, never from inside conn's handler. */
void torii_http_deferred_respond(struct torii_http_conn *conn, int status, const char *content_type,
                                 const void *body, size_t len,
                                 const struct torii_http_header *extra, size_t n_extra);

/** Serve HTTP/1.1 on bev_owned. sni (may be NULL) is copied. On failure the caller still owns
 * bev_owned. */
int torii_http_conn_start(struct event_base *base, struct bufferevent *bev_owned,
                          const struct torii_http_limits *lim, const char *peer, const char *sni,
                          torii_http_handler_cb cb, void *arg) TORII_MUST_USE;

struct torii_http_conn_opts {
    struct event_base *base;
    const struct torii_http_limits *lim; /* copied */
    const char *peer;                    /* copied; may be NULL */
    const char *sni;                     /* copied; may be NULL */
    torii_http_handler_cb cb;
    void *arg;
    torii_http_close_cb close_cb; /* may be NULL */
    void *close_arg;
};

/** Like torii_http_conn_start, returning the connection so an owner can track it (and end it
 * with torii_http_conn_free, e.g. at shutdown). *out is valid until close_cb runs. */
int torii_http_conn_open(const struct torii_http_conn_opts *opts, struct bufferevent *bev_owned,
                         struct torii_http_conn **out) TORII_MUST_USE;
/** End the connection now (no response, no close_cb), freeing the bufferevent. Loop thread
 * only, never from inside this connection's handler. NULL accepted. */
void torii_http_conn_free(struct torii_http_conn *conn);

/** Append a complete error response with the JSON body {"error": msg} (msg escaped); close
 * adds "Connection: close". TORII_OK or TORII_ENOMEM. */
int torii_http_error_write(struct evbuffer *out, int status, const char *msg, int version_minor,
                           int close) TORII_MUST_USE;

/** Reason phrase for a status code ("Unknown" otherwise). */
const char *torii_http_reason(int status);

#endif
