/* http.h - strict HTTP/1.1 server engine on a bufferevent, parsing with llhttp (strict mode)
 * plus our own framing policy (RFC 9112). One torii_http_conn per client connection; the
 * engine reads requests, buffers bodies up to limits.max_body, calls the handler once per
 * complete request, and writes responses in request order (pipelining), keeping the
 * connection alive per RFC 9112 section 9.
 * Threads: loop thread only (the thread running the event_base the bufferevent belongs to).
 * Ownership: torii_http_conn_start takes the bufferevent (bev_owned) on success and frees it
 * when the connection ends. A torii_http_req and every slice in it are borrowed for the
 * duration of the handler call only. The handler must call torii_http_respond exactly once
 * before returning. */
#ifndef TORII_HTTP_H
#define TORII_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "torii/err.h"
#include "torii/mem.h"

struct torii_http_limits {
    size_t max_header_bytes;   /* whole header section; over -> 431 */
    size_t max_headers;        /* number of fields; over -> 431 */
    size_t max_target;         /* request-target length; over -> 414 */
    size_t max_body;           /* declared or received body; over -> 413 */
    uint32_t header_timeout_ms; /* to receive a complete header section; then 408 + close */
    uint32_t idle_timeout_ms;  /* keep-alive idle between requests; then close */
    uint32_t max_requests;     /* per connection, 0 = unlimited */
};

/** Safe defaults: 16 KiB headers, 100 fields, 8 KiB target, 1 MiB body, 10 s, 60 s. */
void torii_http_limits_default(struct torii_http_limits *lim);

struct torii_http_header {
    struct torii_slice name;
    struct torii_slice value;
};

struct torii_http_req {
    const char *method;     /* NUL-terminated, e.g. "GET" */
    struct torii_slice target; /* as received */
    struct torii_slice path;   /* target up to '?' (origin-form), not decoded */
    struct torii_slice query;  /* after '?', empty if none */
    int version_minor;      /* 0 or 1 */
    const struct torii_http_header *headers;
    size_t n_headers;
    const unsigned char *body; /* de-chunked; NULL when empty */
    size_t body_len;
    const char *peer;       /* "ip:port", for logs */
    const char *sni;        /* TLS server name or NULL */
};

/** First header with that name (case-insensitive), or NULL. */
const struct torii_slice *torii_http_req_header(const struct torii_http_req *req,
                                                const char *name);

struct torii_http_exchange;

typedef void (*torii_http_handler_cb)(struct torii_http_exchange *ex,
                                      const struct torii_http_req *req, void *arg);

/** Queue the response to the current request. Adds Date, Content-Length and Connection as
 * needed; extra headers are copied. body is copied. HEAD requests get no body. */
void torii_http_respond(struct torii_http_exchange *ex, int status, const char *content_type,
                        const void *body, size_t len, const struct torii_http_header *extra,
                        size_t n_extra);

/** Serve HTTP/1.1 on bev_owned. sni (may be NULL) is copied. On failure the caller still owns
 * bev_owned. */
int torii_http_conn_start(struct event_base *base, struct bufferevent *bev_owned,
                          const struct torii_http_limits *lim, const char *peer,
                          const char *sni, torii_http_handler_cb cb, void *arg) TORII_MUST_USE;

/** Reason phrase for a status code ("Unknown" otherwise). */
const char *torii_http_reason(int status);

#endif
