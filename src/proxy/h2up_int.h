/* h2up_int.h - internal to the proxy module: HTTP/2 towards backends (backend.protocol "h2"
 * over TLS with ALPN h2, "h2c" with prior knowledge over cleartext), with libnghttp2's client
 * session.
 *   h2up.c      the connections: a bounded number per target and worker
 *               (backend.h2_connections), shared by many streams (SETTINGS_MAX_CONCURRENT_STREAMS
 *               respected: nghttp2 holds a request back until a slot frees), frames in and out,
 *               GOAWAY (the connection drains, new requests go to another one), failures;
 *   h2up_stream.c one request as a stream: it sits behind the HTTP/1.1 upstream interface of
 *               session_int.h (torii_proxy__up_*): the request head torii writes is read back
 *               and sent as HEADERS, the body (Content-Length or chunked, with its trailers) as
 *               DATA as the backend's flow control allows; the response is written as HTTP/1.1
 *               (chunked, trailers in the last chunk) for the response parser; its DATA is
 *               credited back to the backend only as the client takes it; per-stream timers
 *               (connect, read, the grpc-timeout deadline);
 *   h2up_map.c  the pure pieces: header mapping both ways, grpc-timeout, gRPC detection.
 * Ownership: a stream belongs to its struct proxy_upstream (freed with it); a connection to
 * its target's list in the worker (proxy_target_state.h2) and lives while it has streams or
 * is idle within backend.timeouts.idle_ms. Threads: worker thread only. */
#ifndef TORII_PROXY_H2UP_INT_H
#define TORII_PROXY_H2UP_INT_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "session_int.h"

struct h2up_conn;

/* One request (h2up_stream.c, h2up_resp.c). */
struct h2up_stream {
    struct proxy_upstream *up;
    struct h2up_conn *hc; /* NULL once the connection failed */
    struct h2up_stream *next;
    int32_t id;
    struct evbuffer *out;  /* the request as HTTP/1.1, written by the session */
    struct evbuffer *in;   /* the response as HTTP/1.1, read by the session */
    struct evbuffer *body; /* chunked request: de-chunked bytes not yet sent */
    struct evbuffer *hdrs; /* response fields being received (head or trailers) */
    struct evbuffer *trl;  /* response trailer lines */
    struct torii_http_parser *reqp;
    enum torii_http_body_kind req_kind;
    uint64_t req_left;
    struct event *timer;
    uint32_t idle_ms;
    int64_t active_us;   /* last frame of this stream */
    int64_t deadline_us; /* grpc-timeout, 0: none */
    size_t credit;       /* response DATA taken in, not yet credited to the backend */
    int status;          /* :status of the head being received */
    unsigned submitted : 1, req_end : 1, req_trl : 1, deferred : 1, head_req : 1, grpc : 1;
    unsigned resp_head : 1, resp_len : 1, resp_end : 1, closed : 1, woken : 1;
};

/* Window the backend may send ahead on one stream, and on the whole connection. */
#define H2UP_STREAM_WINDOW ((int32_t)256 * 1024)
#define H2UP_CONN_WINDOW   ((int32_t)8 * 1024 * 1024)

/* What a connection tells its streams (torii_h2up__stream_conn_event). */
enum {
    H2UP_EV_UP = 1,  /* connected (TLS: ALPN h2 chosen) */
    H2UP_EV_EOF,     /* closed by the backend */
    H2UP_EV_ERR,     /* failed (reset, TLS, protocol error, ALPN refused) */
    H2UP_EV_TIMEOUT, /* connect or write timed out */
};

/* ---- h2up.c: connections ---- */

/** A new upstream for target t of route r (backend.protocol h2 or h2c): a stream on the
 * least loaded connection of the target that is not draining, or on a new one when they are
 * all full and there is room (backend.h2_connections). TORII_ETLS, TORII_EIO. */
int torii_h2up__get(struct proxy_worker *pw, const struct torii_route *r,
                    const struct torii_route_target *t, struct proxy_upstream **out) TORII_MUST_USE;
/** Close every HTTP/2 connection of the worker (their streams are gone already). */
void torii_h2up__clear(struct proxy_worker *pw);
/** Frames out: what nghttp2 has to send, bounded by PX_HIGH_WM of unsent bytes, then a flush.
 * Deferred when the connection is inside its own callback. TORII_OK or TORII_EIO. */
int torii_h2up__conn_send(struct h2up_conn *hc) TORII_MUST_USE;
/** The session of hc (NULL once the connection failed). */
nghttp2_session *torii_h2up__conn_session(struct h2up_conn *hc);
/** 1 when hc is an "h2" (TLS) connection: the scheme of its requests. */
int torii_h2up__conn_tls(const struct h2up_conn *hc);
/** A stream of hc ended (freed): forget it; a draining connection that has none left
 * closes. */
void torii_h2up__conn_unlink(struct h2up_conn *hc, struct h2up_stream *s);
/** Submit the request of s (nv copied by nghttp2; with_body: DATA follows from
 * torii_h2up__read_body). The stream id, or a negative nghttp2 error. */
int torii_h2up__conn_submit(struct h2up_conn *hc, struct h2up_stream *s, const nghttp2_nv *nv,
                            size_t n, int with_body);

/* ---- h2up_stream.c: one request ---- */

/** A stream for up on hc (not yet submitted: its head comes with the first flush), not yet
 * in hc's list; NULL when out of memory. */
struct h2up_stream *torii_h2up__stream_new(struct proxy_upstream *up, struct h2up_conn *hc);
/** NULL accepted: the stream is reset when still open, its timer freed. */
void torii_h2up__stream_free(struct h2up_stream *s);
struct evbuffer *torii_h2up__out(struct h2up_stream *s);
struct evbuffer *torii_h2up__in(struct h2up_stream *s);
/** Read the request written to out so far (head -> HEADERS, body -> DATA), credit the
 * response DATA the client took, send. TORII_OK or an error (the upstream failed). */
int torii_h2up__flush(struct h2up_stream *s) TORII_MUST_USE;
/** Inactivity timer of the stream (0: none); the deadline stays. */
void torii_h2up__timeouts(struct h2up_stream *s, uint32_t ms);
/** What the connection says (H2UP_EV_*); on any but UP the stream forgets it. */
void torii_h2up__stream_conn_event(struct h2up_stream *s, int ev);
/** 1 when the stream moved since its client connection last stepped. */
int torii_h2up__stream_woken(const struct h2up_stream *s);
/** Let the client connection step now (clears the woken mark). */
void torii_h2up__stream_wake(struct h2up_stream *s);
/** The stream id (0 before the request is submitted). */
int32_t torii_h2up__stream_id(const struct h2up_stream *s);
/** The connection's list of streams. */
struct h2up_stream *torii_h2up__stream_next(struct h2up_stream *s);
struct h2up_stream **torii_h2up__stream_nextp(struct h2up_stream *s);
void torii_h2up__stream_set_next(struct h2up_stream *s, struct h2up_stream *next);
/** nghttp2 callbacks routed to the stream (user data of its id). */
int torii_h2up__on_header(struct h2up_stream *s, const nghttp2_frame *f, const uint8_t *name,
                          size_t namelen, const uint8_t *value, size_t valuelen);
int torii_h2up__on_frame(struct h2up_stream *s, const nghttp2_frame *f);
int torii_h2up__on_data(struct h2up_stream *s, const uint8_t *data, size_t len);
void torii_h2up__on_close(struct h2up_stream *s, uint32_t error_code);
/** The stream's data source for nghttp2. */
ssize_t torii_h2up__read_body(struct h2up_stream *s, uint8_t *buf, size_t length,
                              uint32_t *data_flags);

/* ---- h2up_map.c: pure ---- */

/** 1 when a Content-Type value (NULL: none) is application/grpc or application/grpc+... /
 * application/grpc;... (case-insensitive). */
int torii_h2up__is_grpc(const struct torii_slice *ctype);
/** A grpc-timeout value ("1-8 digits" + H, M, S, m, u or n) in milliseconds, rounded up (at
 * least 1 ms). TORII_OK, or TORII_EINVAL for anything else. */
int torii_h2up__grpc_timeout_ms(struct torii_slice v, uint64_t *ms) TORII_MUST_USE;
/** The request headers for nghttp2 from an HTTP/1.1 request head torii wrote: :method,
 * :scheme, :authority (from Host), :path, then every field but Host and the connection-specific
 * ones (RFC 9113 section 8.2.2; TE only as "trailers", added for gRPC), names lower-cased into
 * *store (malloc'd, freed by the caller with the array). Values point into req. TORII_OK,
 * TORII_EINVAL (no Host), TORII_ENOMEM. */
int torii_h2up__req_nv(const struct torii_http_req *req, int tls, nghttp2_nv **nv, size_t *n,
                       char **store) TORII_MUST_USE;
/** One response field from nghttp2 as an HTTP/1.1 line "name: value\r\n" into out, unless it
 * is a pseudo-header or connection-specific. TORII_OK or TORII_ENOMEM. */
int torii_h2up__field_line(struct evbuffer *out, struct torii_slice name, struct torii_slice value)
    TORII_MUST_USE;
/** name lower-cased into dst (name.len bytes, not overlapping name; HTTP/2 field names are
 * lower case); dst. The one lower-casing of field names, both directions. */
const char *torii_h2up__lower(char *dst, struct torii_slice name);
/** The HTTP/1.1 status line of status into out. TORII_OK or TORII_ENOMEM. */
int torii_h2up__status_line(struct evbuffer *out, int status) TORII_MUST_USE;

#endif
