/* h2_int.h - internal to the proxy module: HTTP/2 to clients (RFC 9113) with libnghttp2
 * (framing, HPACK, flow control), mapped onto the HTTP/1.1 streaming engine (session_int.h).
 *   h2.c       one client connection that negotiated ALPN h2: the nghttp2 session, its
 *              callbacks, the defences (rapid reset, CONTINUATION and control-frame floods,
 *              stalled readers), GOAWAY on drain, reload and idle;
 *   h2stream.c one stream: the adapter that makes it a request of the engine. The stream's
 *              request is checked (RFC 9113 section 8) and written as an HTTP/1.1 request
 *              into a pipe stream (torii_stream_pipe) that a per-stream struct proxy_conn (the
 *              "child") reads like a client connection: the same admission, routes, pools,
 *              pumps, header rules and access log. The child's HTTP/1.1 response is parsed
 *              back out of the pipe into a HEADERS frame, DATA frames and the trailer
 *              section of a chunked response as a final HEADERS frame (gRPC's grpc-status);
 *              an upstream's final response skips that: the child hands its parsed head
 *              and trailers over (torii_proxy__h2s_resp_*) and writes the body raw;
 *              an RFC 8441 websocket CONNECT is a GET with Upgrade to the child, and after
 *              its 101 the stream is endpoint A of the child's tunnel (torii_proxy__h2s_tun_ops);
 *   h2req.c    the request head towards the child: the stream's fields, handed over as
 *              parts the child's parser takes without text (torii_http_parser_head_parts)
 *              when the head is an ordinary one, else written as HTTP/1.1 text;
 *   h2msg.c    the message checks of a request's fields (pure functions);
 *   h2cache.c  ended streams and children kept per worker for the next stream.
 * Ownership: the connection (struct proxy_conn with pc->h2) owns its struct proxy_h2, which
 * owns every struct h2_stream, which owns its child proxy_conn (child->h2s points back).
 * Threads: worker thread only. */
#ifndef TORII_PROXY_H2_INT_H
#define TORII_PROXY_H2_INT_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "h2mem_int.h"
#include "session_int.h"

struct proxy_h2;

/* The regular fields of a request as they came (names lower case): their bytes and spans
 * (offsets into buf), kept with the stream's shell (h2cache.c). */
struct h2s_span {
    uint32_t name_off, name_len, val_off, val_len;
};
struct h2s_fields {
    char *buf;
    size_t len, cap;
    struct h2s_span *span;
    size_t n, cap_span;
};

/* One client stream. */
struct h2_stream {
    struct proxy_h2 *h;
    int32_t id;
    struct proxy_conn *child; /* the engine's view of the request; NULL once gone */
    struct h2_stream *prev, *next;
    struct h2_stream *due_next; /* in h->due while due */
    struct h2s_fields *fields;  /* the regular request fields (h2req.c) */
    struct evbuffer *cookie;    /* cookie crumbs joined with "; " (RFC 9113 section 8.2.3) */
    char *method, *scheme, *authority, *path, *host;
    char *protocol; /* :protocol of an extended CONNECT (RFC 8441) */
    char strs[256]; /* the strings above while they fit (h2s_str), else malloc */
    size_t strs_used;
    size_t hdr_bytes;               /* header list size so far (RFC 9113 section 6.5.2) */
    int64_t content_length;         /* -1: none */
    uint64_t unconsumed;            /* DATA bytes not yet returned to flow control */
    struct torii_http_parser *rp;   /* the child's response, parsed back */
    struct evbuffer *body;          /* response body ready for DATA frames */
    struct evbuffer *held;          /* request body (framed) held until END_STREAM or H2S_HOLD */
    struct evbuffer *trailers;      /* request trailer fields as HTTP/1.1 lines, or NULL */
    size_t trl_bytes;               /* trailer section size so far (as hdr_bytes) */
    int64_t stall_us;               /* since when output waits on the client's window; 0: not */
    struct torii_http_header *rtrl; /* direct: the response's trailer fields, copied; or NULL */
    size_t n_rtrl;
    unsigned regular_seen : 1; /* a regular field came (pseudo-header fields must precede) */
    unsigned bad : 1;          /* malformed: reset, the rest of the block ignored */
    unsigned too_big : 1;      /* header list over the limit: answered 431 */
    unsigned chunked : 1;      /* the request body is framed chunked towards the engine */
    unsigned req_ended : 1;    /* END_STREAM received */
    unsigned head_ok : 1;      /* the request head passed the checks */
    unsigned started : 1;      /* the child was made and got the request head */
    unsigned resp_head : 1;    /* response HEADERS submitted */
    unsigned resp_done : 1;    /* the whole response is in body (or was headers only) */
    unsigned resp_trl : 1;     /* its trailers (in rp) go as HEADERS after the last DATA */
    unsigned deferred : 1;     /* the DATA provider waits for body */
    unsigned closed : 1;       /* nghttp2 closed the stream */
    unsigned kick : 1;         /* the child should run (new input, or room for output) */
    unsigned due : 1;          /* in h->due: kicked or closed, the next sweep looks at it */
    unsigned head_req : 1;
    unsigned linked : 1;   /* in h->streams */
    unsigned ws : 1;       /* extended CONNECT websocket: a GET with Upgrade to the child */
    unsigned tunnel : 1;   /* the backend switched (101): answered 200, DATA both ways */
    unsigned tun_eof : 1;  /* the backend's EOF was passed on: END_STREAM after body */
    unsigned expect : 1;   /* expect: 100-continue: the child starts at once, its 100 relayed */
    unsigned direct : 1;   /* the child handed over the upstream's parsed response head: the
                            * pipe then carries its body raw (no re-parse) */
    unsigned resp_end : 1; /* direct: the child's response ended; done once the pipe is empty */
    unsigned rp_fed : 1;   /* rp was fed (a response written by the engine): reset it for reuse */
};

/* A connection's place in one of the worker's queues (h2queue.c; struct h2q). */
struct h2q_link {
    struct proxy_h2 *prev, *next;
    unsigned in : 1; /* queued */
};

struct proxy_h2 {
    struct proxy_conn *pc; /* the client connection */
    nghttp2_session *s;
    struct h2mem mem;         /* the allocator of s (h2mem.c) */
    struct h2q_link q[H2Q_N]; /* in pw->h2q[kind] while queued */
    struct h2_stream *streams;
    struct h2_stream *due; /* the streams kicked or closed since the last sweep (by due_next) */
    struct h2_stream *cur; /* the stream of the last callback (h2.c); NULL once closed or freed */
    unsigned n_streams;
    int64_t last_active_us; /* a stream ended or began */
    int64_t ctl_sec;        /* control-frame window (second) and its count */
    unsigned ctl_count;
    unsigned cont_count;  /* CONTINUATION frames of the current header block */
    long rst_budget;      /* client resets left before GOAWAY ENHANCE_YOUR_CALM */
    unsigned goaway : 1;  /* GOAWAY (drain) sent */
    unsigned closing : 1; /* connection error: close once the GOAWAY is out */
};

/* ---- h2queue.c ---- */

/** Schedule a step of the connection (safe from a child's callbacks): the connections woken
 * during a loop turn are stepped together, oldest first, by one event of the worker. */
void torii_proxy__h2_wake(struct proxy_h2 *h);
/** Take the connection out of the worker's queues (it is being freed). */
void torii_proxy__h2_unqueue(struct proxy_h2 *h);
/** Make the worker's wake and flush events if it has none (each HTTP/2 connection's
 * set-up). TORII_OK or TORII_ENOMEM. */
int torii_proxy__h2_wake_init(struct proxy_worker *pw) TORII_MUST_USE;
/** Free the worker's queues' events (the worker stops; no connection is left). */
void torii_proxy__h2_wake_clear(struct proxy_worker *pw);
/** The client connection misbehaved (kind: a TORII_METRIC_H2_DEF_* counter): GOAWAY
 * ENHANCE_YOUR_CALM and close once it is out. */
void torii_proxy__h2_calm(struct proxy_h2 *h, int metric, const char *what);

/* ---- h2stream.c ---- */

/** A new stream for HEADERS of id (a request). */
struct h2_stream *torii_proxy__h2s_new(struct proxy_h2 *h, int32_t id);
/** One header field of the request block (name lower case, checked by nghttp2 first). */
int torii_proxy__h2s_field(struct h2_stream *st, const uint8_t *name, size_t nlen,
                           const uint8_t *value, size_t vlen);
/** One field of the request's trailer section (a HEADERS frame after the head): checked as
 * a head's field; the fields torii_proxy__h2_trailer_ok allows go in the last chunk of the
 * request towards the engine (docs/operations.md, HTTP/2). */
int torii_proxy__h2s_trailer(struct h2_stream *st, const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen);
/** The request header block is complete (end_stream: no body): hand it to a child. */
void torii_proxy__h2s_head_done(struct h2_stream *st, int end_stream);
/** Request body bytes, and its end. */
void torii_proxy__h2s_data(struct h2_stream *st, const uint8_t *data, size_t len);
void torii_proxy__h2s_end(struct h2_stream *st);
/** The stream wants its child run (kick), or nghttp2 closed it: the next sweep of the
 * connection (h2.c) services it, without walking the other streams. */
void torii_proxy__h2s_kick(struct h2_stream *st);
void torii_proxy__h2s_due(struct h2_stream *st);
/** Run a kicked child, return consumed input to flow control; then the child goes when its
 * response is complete. */
void torii_proxy__h2s_service(struct h2_stream *st);
/** Reset the stream with code (counted) unless it is closed already. */
void torii_proxy__h2s_reset(struct h2_stream *st, uint32_t code);
/** Free the stream and end its child (no access log line if it never answered). */
void torii_proxy__h2s_free(struct h2_stream *st);
/** nghttp2 DATA provider read callback of a response. */
ssize_t torii_proxy__h2s_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *arg);

/* ---- h2req.c ---- */

/** Append a field (name, value copied). TORII_OK or TORII_ENOMEM. */
int torii_proxy__h2f_add(struct h2s_fields *f, const void *name, size_t nlen, const void *value,
                         size_t vlen) TORII_MUST_USE;
/** Forget the fields (storage kept). */
void torii_proxy__h2f_clear(struct h2s_fields *f);
/** NULL accepted. */
void torii_proxy__h2f_free(struct h2s_fields *f);
/** The request head of st (checked) to its new child, then the body held so far: as parts
 * the child's parser takes at once (its event runs at the child's next step: pc->head_given),
 * or as HTTP/1.1 text into the child's input. TORII_OK or TORII_ENOMEM. */
int torii_proxy__h2s_give_head(struct h2_stream *st) TORII_MUST_USE;

/* ---- h2cache.c ---- */

/** A cleared stream with its three buffers and its field store (empty) and, when it had one, its
 * response parser (reset): from the worker's free list, else new. NULL on allocation failure. */
struct h2_stream *torii_proxy__h2s_shell(struct proxy_worker *pw);
/** Take back a stream whose strings, trailers and child are already gone: its buffers are
 * drained and its parser reset for the free list (freed when the list is full). */
void torii_proxy__h2s_shell_put(struct proxy_worker *pw, struct h2_stream *st);

/* ---- h2msg.c ---- */

#define H2_NV_STACK    32   /* fields of a HEADERS frame built without allocation */
#define H2_NAMES_STACK 2048 /* bytes of their lower-cased names, likewise */

/* The fields of a HEADERS frame being built: nghttp2_nv entries and lower-cased copies of
 * the names, on the stack for a usual head, allocated beyond (torii_proxy__h2_nv_*). */
struct h2_nvbuf {
    nghttp2_nv *nv;
    size_t n;
    char *names;
    size_t used;
    nghttp2_nv nv_s[H2_NV_STACK];
    char names_s[H2_NAMES_STACK];
};
/** Room for extra entries plus the n fields of f (their names). */
void torii_proxy__h2_nv_init(struct h2_nvbuf *b, const struct torii_http_header *f, size_t n,
                             size_t extra);
/** One more entry: the name lower-cased into b, the value borrowed (copied by nghttp2 when
 * the frame is submitted). Within the room given to torii_proxy__h2_nv_init. */
void torii_proxy__h2_nv_add(struct h2_nvbuf *b, struct torii_slice name, struct torii_slice value);
/** The decimal digits of v at the end of b (snprintf costs a thousand instructions; this runs
 * per request and response): their offset in b. */
size_t torii_proxy__h2_digits(char b[24], uint64_t v);
/** Free what torii_proxy__h2_nv_init allocated. */
void torii_proxy__h2_nv_free(struct h2_nvbuf *b);

enum h2_field_kind {
    H2F_REGULAR = 0,
    H2F_PSEUDO,    /* a request pseudo-header (:method, :scheme, :authority, :path, :protocol) */
    H2F_MALFORMED, /* a stream error (PROTOCOL_ERROR) */
};
/** Classify a request field (RFC 9113 section 8.2 and 8.3): names lower-case tokens,
 * values without NUL, CR, LF or surrounding whitespace, no connection-specific field, TE
 * only "trailers", only the request pseudo-headers (with RFC 8441's :protocol). *why: a
 * static reason. */
enum h2_field_kind torii_proxy__h2_field_kind(const uint8_t *name, size_t nlen,
                                              const uint8_t *value, size_t vlen, const char **why);
/** 1 for a field that only makes sense on one HTTP/1.1 connection (RFC 9113 section 8.2.2:
 * connection, keep-alive, proxy-connection, transfer-encoding, upgrade; any case). */
int torii_proxy__h2_conn_specific(const char *name, size_t n);
/** 1 for a field that may go in the trailers of a response (RFC 9110 section 6.5.1, RFC 9113
 * section 8.1): never a pseudo-header, a connection-specific field, TE, Trailer, framing
 * (content-length), routing (host) or authorization; any case. */
int torii_proxy__h2_trailer_ok(const char *name, size_t n);
/** The pseudo-header set of a request is complete and consistent (RFC 9113 section
 * 8.3.1): :method, :scheme "https" and :path present (no CONNECT: refused earlier), :path
 * starting with '/' (or "*" for OPTIONS), :authority and host agreeing when both are sent.
 * 0, or -1 with *why. */
int torii_proxy__h2_pseudo_check(const char *method, const char *scheme, const char *authority,
                                 const char *path, const char *host, const char **why);

#endif
