/* session.c - the streaming HTTP/1.1 proxy engine: one struct proxy_conn per client
 * connection, at most one request in flight (pipelined requests wait in the input buffer and
 * are answered in order), and one struct proxy_upstream attached while that request is served.
 *
 * Request side (client -> upstream): the strict request parser reads the head; the head is
 * rewritten in one pass into the upstream's output; a Content-Length body is moved between
 * evbuffers (evbuffer_remove_buffer: no copy), a chunked body goes through the parser and is
 * re-framed. Response side (upstream -> client): the strict response parser reads the head
 * (1xx dropped), the head is rewritten, a Content-Length body is moved, a chunked or
 * close-delimited one is re-framed as chunked for HTTP/1.1 clients or sent close-delimited to
 * HTTP/1.0 clients.
 * I/O: both sides are torii_streams; every callback steps the state machine, then flushes
 * what it queued, once per side (pc_run), so an exchange costs few system calls.
 * Back-pressure: a side stops reading while the other side's unsent output is above
 * PX_HIGH_WM and resumes when it drains (the flush, or the stream's write callback at
 * PX_LOW_WM).
 * Requests torii answers itself: a /.well-known/ request body is buffered (PH_LOCAL, at most
 * TORII_WELLKNOWN_MAX_BODY) before the handler runs. When a response (ours, or the backend's)
 * is complete before the request body is, the rest of the body is read and dropped
 * (PH_DRAIN, at most PX_DRAIN_MAX bytes or PX_DRAIN_MS) so the connection can carry the next
 * request; when the framing does not allow that, the response says close.
 * Re-entrancy: every callback ends in pc_run(), which steps the state machine and is the only
 * place where a connection is freed (pc->dead), guarded against nested calls (pc->busy).
 * Every connection ends in pc_close(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "proxy_int.h"
#include "torii/clock.h"
#include "torii/daemon.h"
#include "torii/jwtroute.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/stream.h"

#define PX_HIGH_WM   ((size_t)512 * 1024) /* stop reading the other side above this */
#define PX_LOW_WM    ((size_t)128 * 1024) /* resume below this */
#define PX_DOWN_MS   10000                /* a failed target is skipped this long */
#define PX_LINGER_MS 1000
#define PX_DRAIN_MAX ((uint64_t)1024 * 1024) /* request body dropped after an early answer */
#define PX_DRAIN_MS  5000                    /* ... within this long, else close */

enum pc_phase {
    PH_HEAD = 0, /* reading a request head (or idle between requests) */
    PH_BODY,     /* streaming the request body to the upstream */
    PH_WAIT,     /* request sent; the response is being streamed */
    PH_CLOSING,  /* last bytes queued; close once written */
    PH_LOCAL,    /* buffering the body of a request torii answers itself */
    PH_DRAIN,    /* answered: dropping the rest of the request body */
};

enum rs_phase {
    RS_NONE = 0, /* no upstream response expected */
    RS_HEAD,     /* waiting for the response head */
    RS_BODY,     /* streaming the response body */
};

enum pc_timer {
    PT_NONE = 0,
    PT_IDLE,   /* keep-alive idle between requests */
    PT_HEADER, /* absolute deadline for a complete head (slowloris) */
    PT_BODY,   /* request body inactivity */
    PT_CLOSE,  /* last response being written */
    PT_LINGER, /* discarding input after the last response */
    PT_DRAIN,  /* absolute deadline for dropping the rest of an answered request's body */
};

struct proxy_upstream {
    struct proxy_worker *pw;
    struct torii_stream *st;
    struct torii_http_parser *parser;
    const struct torii_route_backend *be;
    const struct torii_route_target *t;
    struct proxy_conn *pc;              /* attached client, NULL while pooled */
    struct proxy_upstream *prev, *next; /* idle list of its target */
    int connected;
    int reused;
};

/* The request being served. */
struct proxy_exch {
    int active;
    const struct torii_route *route;
    const struct torii_route_target *target;
    int minor;
    int keep; /* the client connection may carry another request */
    int head_req;
    enum torii_http_body_kind req_body;
    uint64_t req_len, req_left;
    int req_done;           /* the request body has been read to its end */
    struct evbuffer *lbody; /* PH_LOCAL: the body being buffered */
    int lbody_over;         /* PH_LOCAL: the body exceeds TORII_WELLKNOWN_MAX_BODY */
    enum rs_phase rs;
    enum torii_http_body_kind resp_body;
    uint64_t resp_left;
    enum torii_proxy_out_framing out;
    int resp_started; /* bytes of the response written to the client */
    int retried;
    int status;
    uint64_t bytes_in, bytes_out;
    int64_t t0_us, tu0_us, tu1_us;
    /* For the access log and a retry: into the request head (valid until the parser moves
     * to the next request) or the SNI. */
    struct torii_slice method;
    struct torii_slice host;
    struct torii_slice path;
    struct torii_slice referer; /* combined access log format */
    struct torii_slice ua;
};

struct proxy_conn {
    struct proxy_worker *pw;
    struct proxy_conn *prev, *next;
    struct torii_stream *st;
    struct torii_http_parser *rp;
    struct proxy_upstream *up;
    struct event *timer;
    enum pc_timer tmode;
    int64_t t_deadline_us; /* when tmode expires */
    int64_t t_fire_us;     /* when the pending timer event fires; 0: not pending */
    enum pc_phase phase;
    unsigned tls : 1;
    unsigned busy : 1;
    unsigned again : 1;
    unsigned dead : 1;
    unsigned peer_eof : 1;
    unsigned discarded : 1;
    unsigned up_eof : 1;
    unsigned up_err : 1;
    unsigned up_timeout : 1;
    unsigned certs_done : 1;
    unsigned had_request : 1; /* at least one request was answered (or rejected) and counted */
    int verdict;
    char *cov_host; /* last Host checked against the certificate, and the outcome */
    int cov_ok;
    char *client_cert; /* RFC 9440 values, computed once per connection */
    char *client_cert_chain;
    char *jwt_hdrs; /* claim headers of the current request (routes[].jwt), or NULL */
    size_t jwt_hdrs_len;
    uint64_t head_bytes;
    enum torii_http_body_kind drain_kind; /* PH_DRAIN: framing of the body being dropped */
    uint64_t drain_left;                  /* PH_DRAIN, LENGTH: bytes still to drop */
    uint64_t drain_budget;                /* PH_DRAIN, CHUNKED: raw bytes still allowed */
    char ip[INET6_ADDRSTRLEN];
    struct proxy_exch x;
};

static void pc_run(struct proxy_conn *pc);

static int64_t px_now_ms(void)
{
    return torii_clock_mono_us() / 1000;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void pc_set_read(struct proxy_conn *pc, int on)
{
    torii_stream_read(pc->st, on);
}

static void pc_set_up_read(struct proxy_conn *pc, int on)
{
    if (pc->up == NULL) {
        return;
    }
    torii_stream_read(pc->up->st, on);
}

static void pc_timer_schedule(struct proxy_conn *pc, int64_t now_us, int64_t at_us)
{
    int64_t d = at_us > now_us ? at_us - now_us : 0;
    struct timeval tv;

    tv.tv_sec = (time_t)(d / 1000000);
    tv.tv_usec = (suseconds_t)(d % 1000000);
    (void)event_add(pc->timer, &tv);
    pc->t_fire_us = at_us;
}

/* Timers change modes twice per request; the event is moved only when the new deadline is
 * earlier than the pending one. A timer that fires early re-arms itself for the rest
 * (pc_timer_cb), one that finds no mode does nothing: about one timer operation per timeout
 * period instead of two per request. */
static void pc_timer_arm(struct proxy_conn *pc, enum pc_timer mode, uint32_t ms)
{
    int64_t now;

    pc->tmode = mode;
    if (mode == PT_NONE || ms == 0) {
        pc->tmode = PT_NONE;
        return;
    }
    now = torii_clock_mono_us();
    pc->t_deadline_us = now + (int64_t)ms * 1000;
    if (pc->t_fire_us != 0 && pc->t_fire_us <= pc->t_deadline_us) {
        return;
    }
    pc_timer_schedule(pc, now, pc->t_deadline_us);
}

/* ---- access log --------------------------------------------------------------------------- */

#define PX_LOG_FIELD_MAX 256 /* characters of one logged field */

/* A JSON string of at most PX_LOG_FIELD_MAX characters of s ("null" when s.ptr is NULL). */
static size_t log_json_slice(char *o, size_t cap, struct torii_slice s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    size_t len = s.len < PX_LOG_FIELD_MAX ? s.len : PX_LOG_FIELD_MAX;

    if (s.ptr == NULL) {
        if (cap > 4) {
            memcpy(o, "null", 4);
            return 4;
        }
        return 0;
    }
    if (n + 1 < cap) {
        o[n++] = '"';
    }
    for (size_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') {
            o[n++] = '\\';
            o[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o[n++] = '\\';
            o[n++] = 'u';
            o[n++] = '0';
            o[n++] = '0';
            o[n++] = hex[c >> 4];
            o[n++] = hex[c & 15];
        } else {
            o[n++] = (char)c;
        }
    }
    if (n + 1 < cap) {
        o[n++] = '"';
    }
    return n;
}

static struct torii_slice px_or_empty(struct torii_slice s)
{
    if (s.ptr == NULL) {
        s.ptr = "";
        s.len = 0;
    }
    return s;
}

/* The path and query of a request as logged ("path" field, cut at PX_LOG_FIELD_MAX): the
 * query follows the path in the request-target, so one slice covers both. */
static struct torii_slice px_log_target(const struct torii_http_req *req)
{
    struct torii_slice s = req->path;

    if (s.ptr != NULL && req->query.len > 0 && req->query.ptr == s.ptr + s.len + 1) {
        s.len += 1 + req->query.len;
    }
    return s;
}

static size_t log_json_str(char *o, size_t cap, const char *s)
{
    struct torii_slice v = {s, s != NULL ? strlen(s) : 0};

    return log_json_slice(o, cap, v);
}

/* The cached time strings of the current second (ISO 8601 and the common log format). */
static void px_log_clock(struct proxy_worker *pw, int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;

    if (now_ms / 1000 == pw->log_sec) {
        return;
    }
    pw->log_sec = now_ms / 1000;
    if (gmtime_r(&t, &tm) == NULL
        || strftime(pw->log_time, sizeof(pw->log_time), "%Y-%m-%dT%H:%M:%S", &tm) == 0
        || strftime(pw->log_clf, sizeof(pw->log_clf), "%d/%b/%Y:%H:%M:%S +0000", &tm) == 0) {
        (void)snprintf(pw->log_time, sizeof(pw->log_time), "1970-01-01T00:00:00");
        (void)snprintf(pw->log_clf, sizeof(pw->log_clf), "01/Jan/1970:00:00:00 +0000");
    }
}

/* A field of the combined format: "-" when absent, quotes and controls escaped as \xHH. */
static size_t log_clf_slice(char *o, size_t cap, struct torii_slice s)
{
    char esc[PX_LOG_FIELD_MAX * 4 + 1];
    int w;

    if (s.ptr == NULL || s.len == 0) {
        w = snprintf(o, cap, "-");
    } else {
        w = snprintf(o, cap, "%s",
                     torii_log_escape(s.ptr, s.len < PX_LOG_FIELD_MAX ? s.len : PX_LOG_FIELD_MAX,
                                      esc, sizeof(esc)));
    }
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}

/* Apache/nginx "combined", plus the host and the duration in ms:
 * ip - - [time] "METHOD target HTTP/1.x" status bytes "referer" "user-agent" host ms */
static size_t pc_log_combined(struct proxy_conn *pc, char *line, size_t cap, int64_t end_us)
{
    const struct proxy_exch *x = &pc->x;
    size_t n = 0;
    int w = snprintf(line, cap, "%s - - [%s] \"", pc->ip, pc->pw->log_clf);

    n = w > 0 ? (size_t)w : 0;
    n += log_clf_slice(line + n, cap - n, x->method);
    n += (size_t)snprintf(line + n, cap - n, " ");
    n += log_clf_slice(line + n, cap - n, x->path);
    n += (size_t)snprintf(line + n, cap - n, " HTTP/1.%d\" %d %llu \"", x->minor, x->status,
                          (unsigned long long)x->bytes_out);
    n += log_clf_slice(line + n, cap - n, x->referer);
    n += (size_t)snprintf(line + n, cap - n, "\" \"");
    n += log_clf_slice(line + n, cap - n, x->ua);
    n += (size_t)snprintf(line + n, cap - n, "\" ");
    n += log_clf_slice(line + n, cap - n, x->host);
    if (n < cap) {
        w = snprintf(line + n, cap - n, " %.3f\n", (double)(end_us - x->t0_us) / 1000.0);
        n += w > 0 ? (size_t)w : 0;
    }
    return n;
}

static size_t pc_log_json(struct proxy_conn *pc, char *line, size_t cap, int64_t now_ms,
                          int64_t end_us)
{
    const struct proxy_exch *x = &pc->x;
    const char *sni = NULL;
    size_t n = 0;
    int w;

    if (pc->tls) {
        sni = SSL_get_servername(torii_stream_ssl(pc->st), TLSEXT_NAMETYPE_host_name);
    }
    w = snprintf(line, cap, "{\"time\":\"%s.%03dZ\",\"client\":", pc->pw->log_time,
                 (int)(now_ms % 1000));
    n = w > 0 ? (size_t)w : 0;
    n += log_json_str(line + n, cap - n, pc->ip);
    n += (size_t)snprintf(line + n, cap - n, ",\"sni\":");
    n += log_json_str(line + n, cap - n, sni);
    n += (size_t)snprintf(line + n, cap - n, ",\"host\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->host));
    n += (size_t)snprintf(line + n, cap - n, ",\"method\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->method));
    n += (size_t)snprintf(line + n, cap - n, ",\"path\":");
    n += log_json_slice(line + n, cap - n, px_or_empty(x->path));
    n += (size_t)snprintf(
        line + n, cap - n,
        ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"upstream\":", x->status,
        (unsigned long long)x->bytes_in, (unsigned long long)x->bytes_out);
    n += log_json_str(line + n, cap - n, x->target != NULL ? x->target->name : NULL);
    if (n < cap) {
        w = snprintf(
            line + n, cap - n, ",\"duration_ms\":%.3f,\"upstream_ms\":%.3f}\n",
            (double)(end_us - x->t0_us) / 1000.0,
            x->tu0_us != 0 ? (double)((x->tu1_us ? x->tu1_us : end_us) - x->tu0_us) / 1000.0 : 0.0);
        n += w > 0 ? (size_t)w : 0;
    }
    return n;
}

static void pc_access_log(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;
    char line[2048];
    size_t n;
    int64_t now_ms = torii_clock_now_ms();
    int64_t end_us = torii_clock_mono_us();

    pc->had_request = 1;
    torii_metrics_http_status(pc->x.status);
    if (!pw->cfg->access_log) {
        return;
    }
    px_log_clock(pw, now_ms);
    if (pw->cfg->access_log_format[0] == 'c') {
        n = pc_log_combined(pc, line, sizeof(line), end_us);
    } else {
        n = pc_log_json(pc, line, sizeof(line), now_ms, end_us);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    torii_log_access_write(line, n);
}

/* ---- upstream connections and the pool ------------------------------------------------------ */

static void up_free(struct proxy_upstream *up)
{
    if (up == NULL) {
        return;
    }
    torii_stream_free(up->st);
    torii_http_parser_free(up->parser);
    free(up);
}

static void pool_unlink(struct proxy_upstream *up)
{
    struct proxy_target_state *ts = &up->pw->targets[up->t->index];

    if (up->prev != NULL) {
        up->prev->next = up->next;
    } else {
        ts->idle = up->next;
    }
    if (up->next != NULL) {
        up->next->prev = up->prev;
    }
    up->prev = NULL;
    up->next = NULL;
    ts->n_idle--;
}

/* An idle pooled connection that reads anything, closes or times out is dropped. */
static void pool_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_upstream *up = arg;

    (void)st;
    (void)what;
    pool_unlink(up);
    up_free(up);
}

static void pool_put(struct proxy_upstream *up)
{
    struct proxy_target_state *ts = &up->pw->targets[up->t->index];

    if (!up->connected || ts->n_idle >= up->be->max_idle
        || evbuffer_get_length(torii_stream_input(up->st)) > 0 || torii_stream_unsent(up->st) > 0) {
        up_free(up);
        return;
    }
    up->pc = NULL;
    torii_http_parser_set_no_body(up->parser, 0);
    torii_stream_setcb(up->st, pool_cb, up);
    torii_stream_timeouts(up->st, up->be->idle_ms, 0);
    torii_stream_read(up->st, 1);
    up->next = ts->idle;
    up->prev = NULL;
    if (ts->idle != NULL) {
        ts->idle->prev = up;
    }
    ts->idle = up;
    ts->n_idle++;
}

static int pc_resp_body_cb(void *arg, const unsigned char *data, size_t len);
static void up_cb(struct torii_stream *st, int what, void *arg);

/* Timeouts of the attached upstream for the current phase. */
static void up_timeouts(struct proxy_conn *pc)
{
    struct proxy_upstream *up = pc->up;

    if (up == NULL) {
        return;
    }
    if (!up->connected) {
        torii_stream_timeouts(up->st, up->be->connect_ms, up->be->connect_ms);
        return;
    }
    /* While the client uploads, the backend is not expected to answer: only write stalls. */
    torii_stream_timeouts(up->st, pc->phase == PH_BODY ? 0 : up->be->read_ms, up->be->read_ms);
}

static void target_mark_down(struct proxy_worker *pw, const struct torii_route_target *t)
{
    pw->targets[t->index].down_until_ms = px_now_ms() + PX_DOWN_MS;
}

static const struct torii_route_target *target_pick(struct proxy_worker *pw,
                                                    const struct torii_route *r)
{
    const struct torii_route_backend *be = &r->backend;
    unsigned start = pw->rr[r->index]++;
    int64_t now = px_now_ms();

    for (size_t i = 0; i < be->n_targets; i++) {
        const struct torii_route_target *t = &be->targets[(start + i) % be->n_targets];
        if (pw->targets[t->index].down_until_ms <= now) {
            return t;
        }
    }
    return &be->targets[start % be->n_targets]; /* all down: try anyway */
}

/* Attach an upstream for target t: a pooled one when allowed, else a new connection. */
static int up_acquire(struct proxy_conn *pc, const struct torii_route *r,
                      const struct torii_route_target *t, int allow_pool)
{
    struct proxy_worker *pw = pc->pw;
    struct proxy_target_state *ts = &pw->targets[t->index];
    struct proxy_upstream *up = NULL;
    SSL *ssl = NULL;
    int rc = TORII_OK;

    if (allow_pool && ts->idle != NULL) {
        up = ts->idle;
        pool_unlink(up);
        up->reused = 1;
    } else {
        up = torii_xcalloc(1, sizeof(*up));
        up->pw = pw;
        up->be = &r->backend;
        up->t = t;
        TORII_TRY(torii_http_parser_new_response(&pw->ulim, &up->parser));
        if (t->tls) {
            TORII_ENSURE(r->backend.tls_ctx != NULL, TORII_ETLS);
            ssl = torii_tls_upstream_conn_new(r->backend.tls_ctx, t->host);
            TORII_ENSURE(ssl != NULL, TORII_ETLS);
        }
        up->st = torii_stream_connect(pw->base, (const struct sockaddr *)&t->addr, t->addrlen, ssl);
        ssl = NULL; /* the stream owns it, also on failure */
        TORII_ENSURE(up->st != NULL, TORII_EIO);
        torii_stream_set_lowat(up->st, PX_LOW_WM);
    }
    up->pc = pc;
    torii_http_parser_set_body_cb(up->parser, pc_resp_body_cb, pc);
    torii_stream_setcb(up->st, up_cb, up);
    torii_stream_read(up->st, 1);
    pc->up = up;
    pc->up_eof = 0;
    pc->up_err = 0;
    pc->up_timeout = 0;
    up = NULL;
    up_timeouts(pc);
out:
    if (ssl != NULL) {
        SSL_free(ssl);
    }
    up_free(up);
    return rc;
}

/* Detach the upstream: back to the pool when it can carry another exchange. */
static void pc_up_release(struct proxy_conn *pc, int reusable)
{
    struct proxy_upstream *up = pc->up;

    if (up == NULL) {
        return;
    }
    pc->up = NULL;
    if (reusable) {
        torii_http_parser_next(up->parser);
        pool_put(up);
    } else {
        up_free(up);
    }
}

/* ---- exchanges ---------------------------------------------------------------------------- */

/* 1 while the body of the current request has not been read to its end. */
static int pc_body_pending(const struct proxy_conn *pc)
{
    return pc->x.req_body != TORII_HTTP_BODY_NONE && !pc->x.req_done;
}

/* May the rest of the current request body be read and dropped after the response, keeping
 * the connection? Only when we know where it ends and it is bounded: a Content-Length
 * remainder of at most PX_DRAIN_MAX, or a chunked body (cut off at PX_DRAIN_MAX). A client
 * waiting for a 100 Continue we never sent may send its body or not (RFC 9110 section
 * 10.1.1): the connection cannot be framed and closes. */
static int pc_can_drain(struct proxy_conn *pc)
{
    const struct proxy_exch *x = &pc->x;

    if (!pc_body_pending(pc)) {
        return 1;
    }
    if (pc->peer_eof
        || (pc->phase == PH_HEAD && pc->rp != NULL && torii_http_parser_expects_continue(pc->rp))) {
        return 0;
    }
    if (x->req_body == TORII_HTTP_BODY_LENGTH) {
        return x->req_left <= PX_DRAIN_MAX;
    }
    return x->req_body == TORII_HTTP_BODY_CHUNKED;
}

static void pc_exchange_end(struct proxy_conn *pc, int up_reusable)
{
    struct proxy_exch *x = &pc->x;
    int keep = x->keep && !pc->peer_eof;
    int drain = 0;

    if (keep && pc_body_pending(pc)) {
        drain = pc_can_drain(pc);
        keep = drain;
        pc->drain_kind = x->req_body;
        pc->drain_left = x->req_left;
        pc->drain_budget = PX_DRAIN_MAX;
    }
    pc_up_release(pc, up_reusable);
    if (x->active) {
        pc_access_log(pc);
    }
    if (x->lbody != NULL) {
        evbuffer_free(x->lbody);
    }
    memset(x, 0, sizeof(*x));
    if (drain) {
        /* The parser stays on this request until its body ends (pc_pump_drain). */
        pc->phase = PH_DRAIN;
        pc->again = 1;
        pc_timer_arm(pc, PT_DRAIN, PX_DRAIN_MS);
        return;
    }
    torii_http_parser_next(pc->rp);
    if (keep) {
        pc->phase = PH_HEAD;
        pc->again = 1; /* pipelined input may wait */
        pc_timer_arm(pc, PT_NONE, 0);
    } else {
        pc->phase = PH_CLOSING;
        torii_stream_shutdown(pc->st); /* close_notify leaves with the last response */
        pc_timer_arm(pc, PT_CLOSE, pc->pw->cfg->idle_timeout_ms);
    }
}

/* A response of our own (error, redirect, well-known). The rest of a request body we did not
 * read is dropped afterwards when pc_can_drain() allows it; otherwise the connection closes. */
static void pc_local(struct proxy_conn *pc, int status, const char *ctype, const void *body,
                     size_t len, const struct torii_http_header *extra, size_t n_extra, int close)
{
    struct evbuffer *out = torii_stream_output(pc->st);
    struct torii_http_response r;
    size_t before = evbuffer_get_length(out);

    if (!pc_can_drain(pc) || pc->pw->draining) {
        close = 1; /* draining: the client is told, and opens its next connection elsewhere */
    }
    if (close) {
        pc->x.keep = 0;
    }
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.content_type = ctype;
    r.body = body;
    r.len = len;
    r.extra = extra;
    r.n_extra = n_extra;
    r.head_only = pc->x.head_req;
    r.close = !pc->x.keep;
    r.version_minor = pc->x.minor;
    if (torii_http_response_write(out, &r) != TORII_OK) {
        pc->dead = 1;
        return;
    }
    pc->x.status = status;
    pc->x.bytes_out += evbuffer_get_length(out) - before;
    pc_exchange_end(pc, 0);
}

static void pc_local_error(struct proxy_conn *pc, int status, const char *msg, int close)
{
    char body[256];
    char esc[160];
    size_t i = 0;

    for (const char *s = msg; *s != '\0' && i + 2 < sizeof(esc); s++) {
        esc[i++] = (*s == '"' || *s == '\\') ? '\'' : *s;
    }
    esc[i] = '\0';
    i = (size_t)snprintf(body, sizeof(body), "{\"error\":\"%s\"}", esc);
    pc_local(pc, status, "application/json", body, i < sizeof(body) ? i : sizeof(body) - 1, NULL, 0,
             close);
}

/* Trailer fields that may pass (RFC 9110 section 6.5.1: never framing, routing or
 * connection fields). */
static int px_trailer_ok(struct torii_slice n)
{
    static const char *const bad[] = {"Content-Length",   "Transfer-Encoding", "Host",
                                      "Connection",       "Keep-Alive",        "TE",
                                      "Trailer",          "Upgrade",           "Content-Type",
                                      "Content-Encoding", "Content-Range",     "Authorization",
                                      "Set-Cookie",       "Cache-Control",     NULL};

    for (size_t i = 0; bad[i] != NULL; i++) {
        if (torii_slice_eq_ci(n, bad[i])) {
            return 0;
        }
    }
    return 1;
}

static int px_last_chunk(struct evbuffer *out, const struct torii_http_header *t, size_t n)
{
    int ok = evbuffer_add(out, "0\r\n", 3) == 0;

    for (size_t i = 0; ok && i < n; i++) {
        if (px_trailer_ok(t[i].name)) {
            ok = evbuffer_add(out, t[i].name.ptr, t[i].name.len) == 0
                 && evbuffer_add(out, ": ", 2) == 0
                 && evbuffer_add(out, t[i].value.ptr, t[i].value.len) == 0
                 && evbuffer_add(out, "\r\n", 2) == 0;
        }
    }
    return ok && evbuffer_add(out, "\r\n", 2) == 0 ? TORII_OK : TORII_ENOMEM;
}

static int px_chunk(struct evbuffer *out, const void *data, size_t len)
{
    char sz[24];
    int n = snprintf(sz, sizeof(sz), "%zx\r\n", len);

    if (n <= 0 || evbuffer_add(out, sz, (size_t)n) != 0 || evbuffer_add(out, data, len) != 0
        || evbuffer_add(out, "\r\n", 2) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

/* Request parser body callback (chunked request bodies): re-frame into the upstream, or
 * buffer for a local answer (PH_LOCAL), or drop (PH_DRAIN). */
static int pc_req_body_cb(void *arg, const unsigned char *data, size_t len)
{
    struct proxy_conn *pc = arg;
    struct proxy_exch *x = &pc->x;

    if (len == 0) {
        return TORII_OK;
    }
    if (x->lbody != NULL) {
        if (len > TORII_WELLKNOWN_MAX_BODY - evbuffer_get_length(x->lbody)) {
            x->lbody_over = 1; /* answered 413 by pc_pump_body */
            return TORII_OK;
        }
        x->bytes_in += len;
        return evbuffer_add(x->lbody, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
    }
    if (pc->up == NULL) {
        return TORII_OK; /* being dropped (PH_DRAIN) */
    }
    x->bytes_in += len;
    return px_chunk(torii_stream_output(pc->up->st), data, len);
}

/* Response parser body callback (chunked responses): re-frame, or raw for HTTP/1.0. */
static int pc_resp_body_cb(void *arg, const unsigned char *data, size_t len)
{
    struct proxy_conn *pc = arg;
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    int rc;

    if (len == 0) {
        return TORII_OK;
    }
    if (pc->x.out == TORII_PROXY_OUT_CHUNKED) {
        rc = px_chunk(out, data, len);
    } else {
        rc = evbuffer_add(out, data, len) == 0 ? TORII_OK : TORII_ENOMEM;
    }
    pc->x.bytes_out += evbuffer_get_length(out) - before;
    return rc;
}

/* ---- request dispatch --------------------------------------------------------------------- */

/* Does the connection's certificate cover host? Cached per connection (one Host usually). */
static int pc_cert_covers(struct proxy_conn *pc, const char *host, size_t len)
{
    SSL *ssl = torii_stream_ssl(pc->st);
    struct torii_tls_cert *cert = ssl != NULL ? torii_tls_conn_cert(ssl) : NULL;
    X509 *leaf = NULL;
    int ok = 0;

    if (pc->cov_host != NULL && strlen(pc->cov_host) == len
        && memcmp(pc->cov_host, host, len) == 0) {
        return pc->cov_ok;
    }
    if (cert != NULL && torii_tls_cert_get(cert, &leaf, NULL, NULL) == TORII_OK && leaf != NULL) {
        if (host[0] == '[') {
            char ip[64];
            if (len > 2 && len - 2 < sizeof(ip)) {
                memcpy(ip, host + 1, len - 2);
                ip[len - 2] = '\0';
                ok = X509_check_ip_asc(leaf, ip, 0) == 1;
            }
        } else if (strspn(host, "0123456789.") == len) {
            ok = X509_check_ip_asc(leaf, host, 0) == 1;
        } else {
            ok = X509_check_host(leaf, host, len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
        }
    }
    ERR_clear_error();
    free(pc->cov_host);
    pc->cov_host = torii_xstrndup(host, len);
    pc->cov_ok = ok;
    return ok;
}

/* Edge client certificates: 421 when the route's policy is not the one the handshake applied
 * (SNI of another route), 403 when a certificate is required or presented and unacceptable.
 * Returns 0 to go on, or the status answered. */
static int pc_client_auth(struct proxy_conn *pc, const struct torii_route *route)
{
    SSL *ssl = torii_stream_ssl(pc->st);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    /* the route whose policy the handshake applied (the default route's without SNI) */
    const struct torii_route *sr =
        torii_routes_match(pc->pw->routes, sni, sni != NULL ? strlen(sni) : 0);
    const char *why = NULL;

    if (sr != route
        && (route->client_auth.mode != TORII_TLS_CLIENT_AUTH_NONE
            || (sr != NULL && sr->client_auth.mode != TORII_TLS_CLIENT_AUTH_NONE))) {
        pc_local_error(pc, 421, "client certificate policy differs: connect with this host as SNI",
                       0);
        return 421;
    }
    if (!pc->certs_done) {
        pc->certs_done = 1;
        pc->verdict = (int)torii_tls_conn_client_verdict(ssl, &why);
        if (pc->verdict == TORII_TLS_CLIENT_VERIFIED
            && torii_tls_client_cert_headers(ssl, &pc->client_cert, &pc->client_cert_chain)
                   != TORII_OK) {
            pc->verdict = TORII_TLS_CLIENT_REJECTED;
        }
        ERR_clear_error();
    }
    if (pc->verdict == TORII_TLS_CLIENT_REJECTED
        || (route->client_auth.mode == TORII_TLS_CLIENT_AUTH_REQUIRED
            && pc->verdict != TORII_TLS_CLIENT_VERIFIED)) {
        pc_local_error(pc, 403, "client certificate not accepted", 0);
        return 403;
    }
    return 0;
}

/* routes[].jwt: 401 when the token does not pass (before any byte of the body is read, like
 * the 421 above); else its claim headers are kept for pc_forward. Returns 0 to go on. */
static int pc_jwt(struct proxy_conn *pc, const struct torii_http_req *req)
{
    static const struct torii_http_header www = {{"WWW-Authenticate", 16},
                                                 {"Bearer error=\"invalid_token\"", 28}};
    char body[96];
    unsigned outcome;
    int n;

    free(pc->jwt_hdrs);
    pc->jwt_hdrs = NULL;
    outcome = torii_proxy__jwt_check(pc->pw->pki, pc->x.route->jwt, req, &pc->jwt_hdrs,
                                     &pc->jwt_hdrs_len);
    if (outcome == TORII_JWT_OK) {
        return 0;
    }
    n = snprintf(body, sizeof(body), "{\"error\":\"invalid_token\",\"reason\":\"%s\"}",
                 torii_jwt_outcome_name(outcome));
    pc_local(pc, 401, "application/json", body, n > 0 ? (size_t)n : 0, &www, 1, 0);
    return 401;
}

static void pc_send_continue(struct proxy_conn *pc)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    if (pc->rp != NULL && torii_http_parser_expects_continue(pc->rp)) {
        if (evbuffer_add(torii_stream_output(pc->st), cont, sizeof(cont) - 1) != 0) {
            pc->dead = 1;
        }
    }
}

static int pc_forward(struct proxy_conn *pc, const struct torii_http_req *req,
                      struct torii_slice host, int allow_pool)
{
    struct proxy_exch *x = &pc->x;
    struct torii_proxy_fwd fwd;
    int rc;

    rc = up_acquire(pc, x->route, x->target, allow_pool);
    if (rc != TORII_OK) {
        target_mark_down(pc->pw, x->target);
        return rc;
    }
    memset(&fwd, 0, sizeof(fwd));
    fwd.client_ip = pc->ip;
    fwd.https = pc->tls;
    fwd.host = host;
    if (pc->client_cert != NULL && pc->verdict == TORII_TLS_CLIENT_VERIFIED) {
        fwd.client_cert.ptr = pc->client_cert;
        fwd.client_cert.len = strlen(pc->client_cert);
        if (pc->client_cert_chain != NULL) {
            fwd.client_cert_chain.ptr = pc->client_cert_chain;
            fwd.client_cert_chain.len = strlen(pc->client_cert_chain);
        }
    }
    fwd.body = x->req_body;
    fwd.body_length = x->req_len;
    if (x->route->jwt != NULL) {
        fwd.drop = torii_route_jwt_drop(x->route->jwt, &fwd.n_drop);
        fwd.extra = (struct torii_slice){pc->jwt_hdrs, pc->jwt_hdrs_len};
    }
    if (torii_proxy_req_head_write(torii_stream_output(pc->up->st), req, &fwd) != TORII_OK) {
        return TORII_ENOMEM;
    }
    torii_http_parser_set_no_body(pc->up->parser, x->head_req);
    x->rs = RS_HEAD;
    if (x->tu0_us == 0) {
        x->tu0_us = torii_clock_mono_us();
    }
    return TORII_OK;
}

static int px_slice_eq_ci(struct torii_slice a, struct torii_slice b)
{
    if (a.len != b.len) {
        return 0;
    }
    for (size_t i = 0; i < a.len; i++) {
        char x = a.ptr[i];
        char y = b.ptr[i];
        x = (x >= 'A' && x <= 'Z') ? (char)(x - 'A' + 'a') : x;
        y = (y >= 'A' && y <= 'Z') ? (char)(y - 'A' + 'a') : y;
        if (x != y) {
            return 0;
        }
    }
    return 1;
}

/* The authority of an absolute-form target ("http://host:port/..."). */
static struct torii_slice px_authority(struct torii_slice t)
{
    struct torii_slice a = {NULL, 0};
    const char *p = memchr(t.ptr, ':', t.len);
    size_t s;
    size_t e;

    if (p == NULL) {
        return a;
    }
    s = (size_t)(p - t.ptr) + 1;
    while (s < t.len && t.ptr[s] == '/') {
        s++;
    }
    e = s;
    while (e < t.len && t.ptr[e] != '/' && t.ptr[e] != '?' && t.ptr[e] != '#') {
        e++;
    }
    a.ptr = t.ptr + s;
    a.len = e - s;
    return a;
}

static void pc_redirect(struct proxy_conn *pc, const struct torii_http_req *req, const char *host)
{
    char loc[TORII_SNI_NAME_MAX + 32 + 8192];
    struct torii_http_header h;
    int n;
    struct torii_slice tail = req->target;

    if (tail.len == 0 || tail.ptr[0] != '/') {
        /* absolute-form: keep path and query */
        struct torii_slice a = px_authority(req->target);
        tail.ptr = a.ptr + a.len;
        tail.len = (size_t)(req->target.ptr + req->target.len - tail.ptr);
    }
    if (pc->pw->https_port == 443 || pc->pw->https_port == 0) {
        n = snprintf(loc, sizeof(loc), "https://%s%.*s", host, (int)tail.len, tail.ptr);
    } else {
        n = snprintf(loc, sizeof(loc), "https://%s:%u%.*s", host, pc->pw->https_port, (int)tail.len,
                     tail.ptr);
    }
    if (n <= 0 || (size_t)n >= sizeof(loc)) {
        pc_local_error(pc, 414, "request-target too long", 1);
        return;
    }
    if (tail.len == 0) {
        loc[n++] = '/';
    }
    h.name.ptr = "Location";
    h.name.len = 8;
    h.value.ptr = loc;
    h.value.len = (size_t)n;
    {
        static const char body[] = "{\"error\":\"use https\"}";
        pc_local(pc, 308, "application/json", body, sizeof(body) - 1, &h, 1, 0);
    }
}

static void pc_wellknown(struct proxy_conn *pc, const struct torii_http_req *req)
{
    struct torii_wellknown_reply reply;
    int rc;

    memset(&reply, 0, sizeof(reply));
    reply.body = evbuffer_new();
    if (reply.body == NULL) {
        pc->dead = 1;
        return;
    }
    rc = torii_wellknown_handle(pc->pw->wk, req, pc->tls, &reply);
    if (rc == TORII_ENOTFOUND) {
        pc_local_error(pc, 404, "not found", 0);
    } else if (rc != TORII_OK) {
        pc_local_error(pc, 500, "internal error", 0);
    } else {
        size_t len = evbuffer_get_length(reply.body);
        const unsigned char *b = len > 0 ? evbuffer_pullup(reply.body, -1) : NULL;
        pc_local(pc, reply.status, reply.content_type, b, len, reply.extra, reply.n_extra, 0);
    }
    evbuffer_free(reply.body);
}

/* A request with a body that torii answers itself: buffer the body first (PH_LOCAL). Over
 * TORII_WELLKNOWN_MAX_BODY: 413, and the connection closes (the rest is not read). */
static void pc_local_body_start(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;

    if (x->req_body == TORII_HTTP_BODY_LENGTH && x->req_len > TORII_WELLKNOWN_MAX_BODY) {
        pc_local_error(pc, 413, "request body too large", 1);
        return;
    }
    x->lbody = evbuffer_new();
    if (x->lbody == NULL) {
        pc->dead = 1;
        return;
    }
    pc_send_continue(pc);
    pc->phase = PH_LOCAL;
    pc_timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
}

/* The buffered body is complete: answer with it. */
static void pc_local_body_done(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct torii_http_req req = *torii_http_parser_req(pc->rp);
    struct evbuffer *body = x->lbody;
    size_t len = evbuffer_get_length(body);

    x->lbody = NULL;
    x->req_done = 1;
    pc_timer_arm(pc, PT_NONE, 0);
    req.body = len > 0 ? evbuffer_pullup(body, -1) : NULL;
    req.body_len = len;
    if (len > 0 && req.body == NULL) {
        pc->dead = 1;
    } else {
        pc_wellknown(pc, &req);
    }
    evbuffer_free(body);
}

/* health.public_path, for load balancers: 200 "ok" while torii is ready (daemon.h), else 503;
 * on both listeners, for any Host. Returns 1 when the request was answered. */
static int pc_health(struct proxy_conn *pc, const struct torii_http_req *req)
{
    static const char ok[] = "ok\n";
    static const char down[] = "unavailable\n";
    static const struct torii_http_header allow = {{"Allow", 5}, {"GET, HEAD", 9}};
    const char *p = pc->pw->cfg->health_public_path;
    int ready;

    if (pc->pw->daemon == NULL || p == NULL || p[0] == '\0' || req->path.len != strlen(p)
        || memcmp(req->path.ptr, p, req->path.len) != 0) {
        return 0;
    }
    if (strcmp(req->method, "GET") != 0 && !pc->x.head_req) {
        static const char body[] = "{\"error\":\"method not allowed\"}";
        pc_local(pc, 405, "application/json", body, sizeof(body) - 1, &allow, 1, 0);
        return 1;
    }
    ready = torii_daemon_ready(pc->pw->daemon);
    pc_local(pc, ready ? 200 : 503, "text/plain", ready ? ok : down,
             ready ? sizeof(ok) - 1 : sizeof(down) - 1, NULL, 0, 0);
    return 1;
}

static void pc_note_log_headers(struct proxy_conn *pc, const struct torii_http_req *req)
{
    const struct torii_slice *v = torii_http_req_header(req, "Referer");

    if (v != NULL) {
        pc->x.referer = *v;
    }
    v = torii_http_req_header(req, "User-Agent");
    if (v != NULL) {
        pc->x.ua = *v;
    }
}

static void pc_dispatch(struct proxy_conn *pc)
{
    const struct torii_http_req *req = torii_http_parser_req(pc->rp);
    struct proxy_exch *x = &pc->x;
    const struct torii_slice *hv = torii_http_req_header(req, "Host");
    struct torii_slice host = {NULL, 0};
    char hn[TORII_SNI_NAME_MAX + 1];
    const char *sni = NULL;
    int n;

    memset(x, 0, sizeof(*x));
    x->active = 1;
    x->t0_us = torii_clock_mono_us();
    x->minor = req->version_minor;
    x->keep = req->keep_alive;
    x->head_req = strcmp(req->method, "HEAD") == 0;
    x->req_body = torii_http_parser_body(pc->rp, &x->req_len);
    x->req_left = x->req_len;
    x->bytes_in = pc->head_bytes;
    pc->head_bytes = 0;
    x->method.ptr = req->method;
    x->method.len = strlen(req->method);
    x->path = px_log_target(req);
    if (pc->tls) {
        sni = SSL_get_servername(torii_stream_ssl(pc->st), TLSEXT_NAMETYPE_host_name);
    }
    if (hv != NULL) {
        host = *hv;
    }
    if (req->target.len > 0 && req->target.ptr[0] != '/' && req->target.ptr[0] != '*') {
        /* absolute-form: the authority must be the Host (RFC 9112 section 3.2.2), and
         * userinfo is not allowed in http(s) URIs (RFC 9110 section 4.2.4). */
        struct torii_slice a = px_authority(req->target);
        if (memchr(a.ptr, '@', a.len) != NULL) {
            pc_local_error(pc, 400, "userinfo in request-target", 1);
            return;
        }
        if (hv == NULL) {
            host = a;
        } else if (!px_slice_eq_ci(a, *hv)) {
            pc_local_error(pc, 400, "request-target authority differs from Host", 1);
            return;
        }
    }
    if (host.len == 0 && sni != NULL) {
        host.ptr = sni; /* HTTP/1.0 without Host */
        host.len = strlen(sni);
    }
    x->host = host;
    pc_note_log_headers(pc, req);
    n = host.len > 0 ? torii_proxy_host_parse(host, hn) : TORII_EINVAL;
    if (pc_health(pc, req)) {
        return;
    }
    if (req->path.len >= 13 && memcmp(req->path.ptr, "/.well-known/", 13) == 0) {
        if (x->req_body == TORII_HTTP_BODY_NONE) {
            pc_wellknown(pc, req);
        } else {
            pc_local_body_start(pc);
        }
        return;
    }
    if (n <= 0) {
        pc_local_error(pc, 400, "missing or invalid Host", 1);
        return;
    }
    if (!pc->tls) {
        pc_redirect(pc, req, hn);
        return;
    }
    x->route = torii_routes_match(pc->pw->routes, hn, (size_t)n);
    if (x->route == NULL) {
        /* No routes at all: nothing is misdirected, there is just nothing here. */
        if (torii_routes_count(pc->pw->routes) == 0) {
            pc_local_error(pc, 404, "no route matched this request", 0);
        } else {
            pc_local_error(pc, 421, "no route for this host", 0);
        }
        return;
    }
    /* tls.strict_host off: a Host the certificate does not name may still be served (a
     * default route behind an IP, say); the client-certificate check below stays. */
    if (pc->pw->cfg->strict_host && !pc_cert_covers(pc, hn, (size_t)n)) {
        pc_local_error(pc, 421, "host not covered by this connection's certificate", 0);
        return;
    }
    if (pc_client_auth(pc, x->route) != 0) {
        return;
    }
    if (x->route->jwt != NULL && pc_jwt(pc, req) != 0) {
        return;
    }
    x->target = target_pick(pc->pw, x->route);
    if (pc_forward(pc, req, host, 1) != TORII_OK) {
        pc_up_release(pc, 0);
        pc_local_error(pc, 502, "upstream connection failed", 0);
        return;
    }
    pc_send_continue(pc);
    if (x->req_body == TORII_HTTP_BODY_NONE) {
        pc->phase = PH_WAIT;
        pc_timer_arm(pc, PT_NONE, 0);
    } else {
        pc->phase = PH_BODY;
        pc_timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
    }
    up_timeouts(pc);
}

/* ---- pumps -------------------------------------------------------------------------------- */

static void pc_reject(struct proxy_conn *pc)
{
    const struct torii_http_req *req = torii_http_parser_req(pc->rp);
    const char *msg = NULL;
    int status = torii_http_parser_error(pc->rp, &msg);

    if (!pc->x.active) {
        memset(&pc->x, 0, sizeof(pc->x));
        pc->x.active = 1;
        pc->x.t0_us = torii_clock_mono_us();
        pc->x.minor = req != NULL ? req->version_minor : 1;
        pc->x.bytes_in = pc->head_bytes;
        if (req != NULL) {
            pc->x.method.ptr = req->method;
            pc->x.method.len = req->method != NULL ? strlen(req->method) : 0;
            pc->x.path = px_log_target(req);
        }
    }
    pc_up_release(pc, 0);
    if (pc->x.resp_started) {
        pc->dead = 1;
        return;
    }
    pc_local_error(pc, status != 0 ? status : 400, msg != NULL ? msg : "malformed request", 1);
}

/* Parse request heads; dispatches each one. */
static void pc_read_heads(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);

    /* The parser comes with the first bytes: a connection that never sends a request (a
     * pre-connect, a handshake-only client) does not carry one. */
    if (pc->rp == NULL && evbuffer_get_length(in) > 0) {
        if (torii_http_parser_new(&pc->pw->lim, &pc->rp) != TORII_OK) {
            pc->dead = 1;
            return;
        }
        torii_http_parser_set_body_cb(pc->rp, pc_req_body_cb, pc);
    }

    while (pc->phase == PH_HEAD && !pc->dead) {
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        ev = torii_http_parser_feed(pc->rp, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(in, used);
        pc->head_bytes += used;
        switch (ev) {
        case TORII_HTTP_PARSE_MORE:
            break;
        case TORII_HTTP_PARSE_HEAD:
        case TORII_HTTP_PARSE_DONE:
            pc_dispatch(pc);
            break;
        case TORII_HTTP_PARSE_ERROR:
        default:
            pc_reject(pc);
            break;
        }
    }
}

static void pc_req_done(struct proxy_conn *pc)
{
    pc->x.req_done = 1;
    pc->phase = PH_WAIT;
    pc_timer_arm(pc, PT_NONE, 0);
    up_timeouts(pc);
}

/* The request body -> its sink: the upstream (PH_BODY; a chunked body re-framed by
 * pc_req_body_cb) or the local buffer (PH_LOCAL), until the body ends or the upstream's
 * output is full. Then the request is done, or answered locally. */
static void pc_pump_body(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    struct proxy_exch *x = &pc->x;
    enum pc_phase phase = pc->phase;
    struct evbuffer *sink = x->lbody;
    size_t avail;
    int progress = 0;

    if (phase == PH_BODY) {
        if (pc->up == NULL) {
            return;
        }
        sink = torii_stream_output(pc->up->st);
    }
    while (pc->phase == phase && !pc->dead
           && (phase == PH_LOCAL || evbuffer_get_length(sink) < PX_HIGH_WM)
           && (avail = evbuffer_get_length(in)) > 0) {
        enum torii_http_parse_ev ev = TORII_HTTP_PARSE_MORE;

        if (x->req_body == TORII_HTTP_BODY_LENGTH) {
            size_t n = avail < x->req_left ? avail : (size_t)x->req_left;
            if (evbuffer_remove_buffer(in, sink, n) != (int)n) {
                pc->dead = 1;
                return;
            }
            x->req_left -= n;
            x->bytes_in += n;
            if (x->req_left == 0) {
                torii_http_parser_body_taken(pc->rp, x->req_len);
                ev = TORII_HTTP_PARSE_DONE;
            }
        } else {
            struct evbuffer_iovec v;
            size_t used = 0;

            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
                break;
            }
            ev = torii_http_parser_feed(pc->rp, v.iov_base, v.iov_len, &used);
            (void)evbuffer_drain(in, used);
            if (x->lbody_over) {
                pc_local_error(pc, 413, "request body too large", 1);
                return;
            }
            if (ev == TORII_HTTP_PARSE_ERROR) {
                pc_reject(pc);
                return;
            }
            if (ev == TORII_HTTP_PARSE_DONE && phase == PH_BODY) {
                const struct torii_http_req *req = torii_http_parser_req(pc->rp);
                if (px_last_chunk(sink, req->trailers, req->n_trailers) != TORII_OK) {
                    pc->dead = 1;
                    return;
                }
            }
        }
        progress = 1;
        if (ev == TORII_HTTP_PARSE_DONE) {
            if (phase == PH_BODY) {
                pc_req_done(pc);
            } else {
                pc_local_body_done(pc);
            }
        }
    }
    if (progress && pc->phase == phase) {
        pc_timer_arm(pc, PT_BODY, pc->pw->cfg->idle_timeout_ms);
    }
}

/* Dropping the body cannot go on (over the limits, bad framing, the client left): close once
 * the response is out. */
static void pc_drain_stop(struct proxy_conn *pc)
{
    pc->phase = PH_CLOSING;
    pc->again = 1;
    torii_stream_shutdown(pc->st);
    pc_timer_arm(pc, PT_CLOSE, pc->pw->cfg->idle_timeout_ms);
}

static void pc_drain_done(struct proxy_conn *pc)
{
    torii_http_parser_next(pc->rp);
    pc->phase = PH_HEAD;
    pc->again = 1; /* pipelined input may wait */
    pc_timer_arm(pc, PT_NONE, 0);
}

/* The rest of an answered request's body -> nowhere (PH_DRAIN), then the next request. */
static void pc_pump_drain(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    size_t avail;

    while (pc->phase == PH_DRAIN && !pc->dead && (avail = evbuffer_get_length(in)) > 0) {
        struct evbuffer_iovec v;
        size_t used = 0;
        size_t n;
        enum torii_http_parse_ev ev;

        if (pc->drain_kind == TORII_HTTP_BODY_LENGTH) {
            n = avail < pc->drain_left ? avail : (size_t)pc->drain_left;
            (void)evbuffer_drain(in, n);
            pc->drain_left -= n;
            if (pc->drain_left == 0) {
                torii_http_parser_body_taken(pc->rp, 0);
                pc_drain_done(pc);
            }
            continue;
        }
        /* Chunked: the parser finds the end; at most drain_budget raw bytes are fed. */
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        n = v.iov_len < pc->drain_budget ? v.iov_len : (size_t)pc->drain_budget;
        ev = torii_http_parser_feed(pc->rp, v.iov_base, n, &used);
        (void)evbuffer_drain(in, used);
        pc->drain_budget -= used;
        if (ev == TORII_HTTP_PARSE_DONE) {
            pc_drain_done(pc);
        } else if (ev != TORII_HTTP_PARSE_MORE || pc->drain_budget == 0) {
            pc_drain_stop(pc);
        }
    }
}

static void pc_resp_complete(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    const struct torii_http_resp *resp = torii_http_parser_resp(pc->up->parser);
    int reusable = resp != NULL && resp->keep_alive && x->resp_body != TORII_HTTP_BODY_EOF
                   && pc->phase == PH_WAIT && !pc->up_eof && !pc->up_err;

    x->tu1_us = torii_clock_mono_us();
    if (pc->phase == PH_BODY && !pc_can_drain(pc)) {
        /* Answered before the whole request body arrived, and the rest cannot be skipped
         * (pc_can_drain): this connection ends after the response. Otherwise the upstream,
         * which saw part of the body only, is closed and the rest is dropped (PH_DRAIN). */
        x->keep = 0;
    }
    pc_exchange_end(pc, reusable);
}

static int pc_resp_head(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct proxy_upstream *up = pc->up;
    const struct torii_http_resp *resp = torii_http_parser_resp(up->parser);
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    uint64_t len = 0;
    enum torii_http_body_kind kind = torii_http_parser_body(up->parser, &len);

    switch (kind) {
    case TORII_HTTP_BODY_LENGTH:
        x->out = TORII_PROXY_OUT_LENGTH;
        break;
    case TORII_HTTP_BODY_CHUNKED:
    case TORII_HTTP_BODY_EOF:
        x->out = x->minor == 1 ? TORII_PROXY_OUT_CHUNKED : TORII_PROXY_OUT_CLOSE;
        break;
    case TORII_HTTP_BODY_NONE:
    default:
        x->out = TORII_PROXY_OUT_NONE;
        break;
    }
    if (x->out == TORII_PROXY_OUT_CLOSE || (pc->phase == PH_BODY && !pc_can_drain(pc))
        || pc->peer_eof || pc->pw->draining) {
        x->keep = 0;
    }
    if (torii_proxy_resp_head_write(out, resp, x->out, len, !x->keep, x->minor) != TORII_OK) {
        return TORII_ENOMEM;
    }
    x->status = resp->status;
    x->resp_started = 1;
    x->resp_body = kind;
    x->resp_left = len;
    x->bytes_out += evbuffer_get_length(out) - before;
    x->rs = RS_BODY;
    return TORII_OK;
}

static void pc_up_fail(struct proxy_conn *pc, int status, const char *msg)
{
    if (pc->x.resp_started) {
        pc->dead = 1; /* mid-response: the client sees a truncated message */
        return;
    }
    pc_up_release(pc, 0);
    pc_local_error(pc, status, msg, 0);
}

/* Upstream response -> client, until done or the client's output is full. */
static void pc_pump_resp(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct evbuffer *out = torii_stream_output(pc->st);

    while (pc->up != NULL && x->rs != RS_NONE && !pc->dead
           && evbuffer_get_length(out) < PX_HIGH_WM) {
        struct evbuffer *in = torii_stream_input(pc->up->st);
        size_t avail = evbuffer_get_length(in);
        struct evbuffer_iovec v;
        size_t used = 0;
        enum torii_http_parse_ev ev;

        if (avail == 0) {
            break;
        }
        if (x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_LENGTH) {
            size_t n = avail < x->resp_left ? avail : (size_t)x->resp_left;
            if (evbuffer_remove_buffer(in, out, n) != (int)n) {
                pc->dead = 1;
                return;
            }
            x->resp_left -= n;
            x->bytes_out += n;
            if (x->resp_left == 0) {
                torii_http_parser_body_taken(pc->up->parser, 0);
                pc_resp_complete(pc);
            }
            continue;
        }
        if (x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_EOF) {
            if (x->out == TORII_PROXY_OUT_CHUNKED) {
                char sz[24];
                int k = snprintf(sz, sizeof(sz), "%zx\r\n", avail);
                if (k <= 0 || evbuffer_add(out, sz, (size_t)k) != 0) {
                    pc->dead = 1;
                    return;
                }
                x->bytes_out += (size_t)k + 2;
            }
            if (evbuffer_remove_buffer(in, out, avail) != (int)avail) {
                pc->dead = 1;
                return;
            }
            if (x->out == TORII_PROXY_OUT_CHUNKED && evbuffer_add(out, "\r\n", 2) != 0) {
                pc->dead = 1;
                return;
            }
            x->bytes_out += avail;
            continue;
        }
        /* Head, or a chunked body: through the parser. */
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        ev = torii_http_parser_feed(pc->up->parser, v.iov_base, v.iov_len, &used);
        (void)evbuffer_drain(in, used);
        switch (ev) {
        case TORII_HTTP_PARSE_MORE:
            break;
        case TORII_HTTP_PARSE_HEAD:
            if (pc_resp_head(pc) != TORII_OK) {
                pc->dead = 1;
                return;
            }
            break;
        case TORII_HTTP_PARSE_DONE: {
            const struct torii_http_resp *resp = torii_http_parser_resp(pc->up->parser);
            if (resp->interim) {
                /* 1xx: we answered 100 ourselves, and no other is forwarded. */
                torii_http_parser_next(pc->up->parser);
                torii_http_parser_set_no_body(pc->up->parser, x->head_req);
                break;
            }
            if (x->rs == RS_HEAD && pc_resp_head(pc) != TORII_OK) {
                pc->dead = 1;
                return;
            }
            if (x->out == TORII_PROXY_OUT_CHUNKED) {
                size_t before = evbuffer_get_length(out);
                if (px_last_chunk(out, resp->trailers, resp->n_trailers) != TORII_OK) {
                    pc->dead = 1;
                    return;
                }
                x->bytes_out += evbuffer_get_length(out) - before;
            }
            pc_resp_complete(pc);
            break;
        }
        case TORII_HTTP_PARSE_ERROR:
        default:
            if (x->tu0_us != 0 && x->target != NULL) {
                torii_log(TORII_LOG_WARN, "proxy: invalid response from upstream (upstream=%s)",
                          x->target->name);
            }
            pc_up_fail(pc, 502, "invalid response from upstream");
            return;
        }
    }
}

/* EOF, error or timeout on the attached upstream. */
static void pc_up_trouble(struct proxy_conn *pc)
{
    struct proxy_exch *x = &pc->x;
    struct proxy_upstream *up = pc->up;
    int started;

    if (pc->up_eof && x->rs == RS_BODY && x->resp_body == TORII_HTTP_BODY_EOF) {
        struct evbuffer *out = torii_stream_output(pc->st);
        if (evbuffer_get_length(torii_stream_input(up->st)) > 0) {
            return; /* still data to move first */
        }
        if (x->out == TORII_PROXY_OUT_CHUNKED) {
            if (px_last_chunk(out, NULL, 0) != TORII_OK) {
                pc->dead = 1;
                return;
            }
            x->bytes_out += 5;
        }
        torii_http_parser_body_taken(up->parser, 0);
        pc_resp_complete(pc);
        return;
    }
    if (pc->up_eof && x->rs != RS_NONE && evbuffer_get_length(torii_stream_input(up->st)) > 0) {
        return; /* move what arrived before the EOF first (the client may be slow) */
    }
    started = torii_http_parser_started(up->parser) || x->resp_started;
    if (!started && up->reused && !x->retried && x->req_body == TORII_HTTP_BODY_NONE
        && !pc->up_timeout) {
        /* A pooled connection closed by the backend while idle (a race every keep-alive
         * client has): send the request again on a new connection, once. */
        const struct torii_http_req *req = torii_http_parser_req(pc->rp);
        const struct torii_slice *hv = torii_http_req_header(req, "Host");
        struct torii_slice host = x->host;
        pc_up_release(pc, 0);
        x->retried = 1;
        if (hv != NULL) {
            host = *hv;
        }
        if (pc_forward(pc, req, host, 0) != TORII_OK) {
            pc_up_release(pc, 0);
            pc_local_error(pc, 502, "upstream connection failed", 0);
        }
        return;
    }
    if (!up->connected) {
        target_mark_down(pc->pw, up->t);
        torii_log(TORII_LOG_WARN, "proxy: upstream %s (upstream=%s)",
                  pc->up_timeout ? "connect timed out" : "connect failed", up->t->name);
        pc_up_fail(pc, pc->up_timeout ? 504 : 502,
                   pc->up_timeout ? "upstream connect timed out" : "upstream connection failed");
        return;
    }
    if (pc->up_timeout) {
        if (!started) {
            target_mark_down(pc->pw, up->t);
        }
        torii_log(TORII_LOG_WARN, "proxy: upstream timed out (upstream=%s)", up->t->name);
        pc_up_fail(pc, 504, "upstream timed out");
        return;
    }
    pc_up_fail(pc, 502, pc->up_eof ? "upstream closed the connection" : "upstream error");
}

/* ---- the state machine -------------------------------------------------------------------- */

/* Client input: request heads, then the body of the current request (to the upstream, to
 * the local buffer, or dropped), in the order the phases follow each other. */
static void pc_pump_client(struct proxy_conn *pc)
{
    if (pc->phase == PH_HEAD && evbuffer_get_length(torii_stream_output(pc->st)) < PX_HIGH_WM) {
        pc_read_heads(pc);
    }
    if (!pc->dead && pc->phase == PH_LOCAL) {
        pc_pump_body(pc);
    }
    if (!pc->dead && pc->phase == PH_DRAIN) {
        pc_pump_drain(pc);
    }
    if (!pc->dead && pc->phase == PH_BODY) {
        pc_pump_body(pc);
    }
}

/* PH_LOCAL, PH_DRAIN: keep reading the body; a client that leaves ends the exchange. */
static void pc_settle_body(struct proxy_conn *pc)
{
    if (!pc->peer_eof) {
        pc_set_read(pc, 1);
    } else if (pc->phase == PH_LOCAL) {
        pc->dead = 1; /* upload aborted */
    } else {
        pc_drain_stop(pc); /* the answer may still be unwritten */
    }
}

static void pc_step(struct proxy_conn *pc)
{
    struct evbuffer *in = torii_stream_input(pc->st);
    struct evbuffer *out = torii_stream_output(pc->st);

    pc_pump_client(pc);
    if (!pc->dead && pc->up != NULL && pc->x.rs != RS_NONE) {
        pc_pump_resp(pc);
    }
    if (!pc->dead && pc->up != NULL && (pc->up_eof || pc->up_err || pc->up_timeout)) {
        pc_up_trouble(pc);
    }
    if (pc->dead || pc->again) {
        return;
    }
    switch (pc->phase) {
    case PH_HEAD:
        pc_set_read(pc, evbuffer_get_length(out) < PX_HIGH_WM);
        if (pc->rp == NULL || !torii_http_parser_started(pc->rp)) {
            if (pc->peer_eof || (pc->pw->draining == TORII_PROXY_DRAIN_STOP && pc->had_request)) {
                pc->dead = 1; /* stopping: an idle keep-alive connection closes at once */
            } else if (pc->tmode != PT_IDLE) {
                pc_timer_arm(pc, PT_IDLE, pc->pw->cfg->idle_timeout_ms);
            }
        } else if (pc->peer_eof) {
            pc->dead = 1; /* truncated request */
        } else if (pc->tmode != PT_HEADER) {
            /* Absolute deadline from the first byte: trickling bytes do not extend it. */
            pc_timer_arm(pc, PT_HEADER, pc->pw->cfg->header_timeout_ms);
        }
        break;
    case PH_BODY:
        if (pc->peer_eof) {
            pc->dead = 1; /* upload aborted: the upstream gets a truncated request, closed */
            break;
        }
        pc_set_read(pc, pc->up != NULL
                            && evbuffer_get_length(torii_stream_output(pc->up->st)) < PX_HIGH_WM);
        break;
    case PH_WAIT:
        /* Keep reading (no epoll change per request): a pipelined request waits in the
         * input, bounded by the high-water mark. */
        pc_set_read(pc, evbuffer_get_length(in) < PX_HIGH_WM);
        break;
    case PH_LOCAL:
    case PH_DRAIN:
        pc_settle_body(pc);
        break;
    case PH_CLOSING:
        pc_set_read(pc, 1);
        if (evbuffer_get_length(in) > 0) {
            pc->discarded = 1;
            (void)evbuffer_drain(in, evbuffer_get_length(in));
        }
        if (torii_stream_unsent(pc->st) == 0) {
            if (!pc->discarded || pc->peer_eof) {
                pc->dead = 1;
            } else if (pc->tmode != PT_LINGER) {
                /* Keep reading a moment so our last response is not lost to a reset. */
                pc_timer_arm(pc, PT_LINGER, PX_LINGER_MS);
            }
        }
        break;
    default:
        break;
    }
    if (pc->up != NULL) {
        pc_set_up_read(pc, pc->x.rs != RS_NONE && evbuffer_get_length(out) < PX_HIGH_WM);
    }
}

static void pc_close(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;

    /* Counted whatever the access_log setting (pc_access_log counts, then logs if asked). */
    if (pc->x.active) {
        pc_access_log(pc);
    }
    if (!pc->had_request) {
        /* Nothing, or only empty lines (ignored, RFC 9112 section 2.2), before the close: a
         * connection outcome, not a request. */
        torii_metrics_inc(TORII_METRIC_CONN_NO_REQUEST);
    }
    pc_up_release(pc, 0);
    if (pc->x.lbody != NULL) {
        evbuffer_free(pc->x.lbody);
        pc->x.lbody = NULL;
    }
    if (pc->prev != NULL) {
        pc->prev->next = pc->next;
    } else {
        pw->conns = pc->next;
    }
    if (pc->next != NULL) {
        pc->next->prev = pc->prev;
    }
    pw->n_conns--;
    if (pc->timer != NULL) {
        event_free(pc->timer);
    }
    /* close_notify when all was written and the client still listens: without it, OpenSSL
     * clients treat the EOF as an error and drop the session instead of resuming it. Never
     * blocks; never after a truncated response (it would make the truncation look clean). */
    if (!pc->peer_eof && torii_stream_unsent(pc->st) == 0) {
        torii_stream_shutdown(pc->st);
        if (torii_stream_flush(pc->st) != TORII_OK) {
            ERR_clear_error(); /* the peer is gone: nothing to tell it */
        }
    }
    torii_stream_free(pc->st);
    torii_http_parser_free(pc->rp);
    free(pc->cov_host);
    free(pc->client_cert);
    free(pc->client_cert_chain);
    free(pc->jwt_hdrs);
    free(pc);
}

/* Hand what the step queued to the kernel: one flush per side per event. Sending may free
 * room that lets a paused side go on (the high-water marks), or end a closing connection:
 * then the state machine steps again. */
static void pc_flush(struct proxy_conn *pc)
{
    size_t before = torii_stream_unsent(pc->st);
    size_t after;

    if (pc->phase == PH_WAIT && evbuffer_get_length(torii_stream_output(pc->st)) == 0) {
        before = 0; /* waiting for the response: what TLS queued (a ticket) goes with it */
    } else if (torii_stream_flush(pc->st) != TORII_OK) {
        pc->dead = 1;
        return;
    }
    after = torii_stream_unsent(pc->st);
    if (after < before
        && ((before >= PX_HIGH_WM && after < PX_HIGH_WM)
            || (after == 0 && pc->phase == PH_CLOSING))) {
        pc->again = 1;
    }
    if (pc->up == NULL) {
        return;
    }
    before = torii_stream_unsent(pc->up->st);
    if (torii_stream_flush(pc->up->st) != TORII_OK) {
        pc->up_err = 1;
        pc->again = 1;
        return;
    }
    after = torii_stream_unsent(pc->up->st);
    if (before >= PX_HIGH_WM && after < PX_HIGH_WM) {
        pc->again = 1;
    }
}

static void pc_run(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;

    if (pc->busy) {
        pc->again = 1;
        return;
    }
    pc->busy = 1;
    do {
        pc->again = 0;
        pc_step(pc);
        if (!pc->dead) {
            pc_flush(pc);
        }
    } while (pc->again && !pc->dead);
    pc->busy = 0;
    if (pc->dead) {
        pc_close(pc);
        if (pw->on_conn_closed != NULL) {
            pw->on_conn_closed(pw->on_conn_closed_arg);
        }
    }
}

/* ---- callbacks (thin) ----------------------------------------------------------------------- */

static void pc_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_conn *pc = arg;

    (void)st;
    if (what & TORII_STREAM_EOF) {
        pc->peer_eof = 1;
    }
    if (what & (TORII_STREAM_ERROR | TORII_STREAM_TIMEOUT)) {
        pc->dead = 1;
    }
    pc_run(pc);
}

static void pc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *pc = arg;
    enum pc_timer mode = pc->tmode;
    int64_t now = torii_clock_mono_us();

    (void)fd;
    (void)what;
    pc->t_fire_us = 0;
    if (mode == PT_NONE) {
        return;
    }
    if (now < pc->t_deadline_us) {
        pc_timer_schedule(pc, now, pc->t_deadline_us); /* armed earlier for an earlier mode */
        return;
    }
    pc->tmode = PT_NONE;
    if ((mode == PT_HEADER || mode == PT_BODY) && !pc->x.resp_started && pc->phase != PH_CLOSING) {
        pc_local_error(pc, 408, "request timeout", 1);
        pc_set_read(pc, 0);
    } else if (mode == PT_DRAIN && pc->phase == PH_DRAIN) {
        pc_drain_stop(pc);
    } else {
        pc->dead = 1;
    }
    pc_run(pc);
}

static void up_cb(struct torii_stream *st, int what, void *arg)
{
    struct proxy_upstream *up = arg;
    struct proxy_conn *pc = up->pc;

    (void)st;
    if (what & TORII_STREAM_CONNECTED) {
        up->connected = 1;
        up_timeouts(pc);
    }
    if (what & TORII_STREAM_EOF) {
        pc->up_eof = 1;
    }
    if (what & TORII_STREAM_TIMEOUT) {
        pc->up_timeout = 1;
    }
    if (what & TORII_STREAM_ERROR) {
        pc->up_err = 1;
    }
    pc_run(pc);
}

/* ---- accept and worker state -------------------------------------------------------------- */

static void px_peer_ip(const struct sockaddr *sa, char *out, size_t len)
{
    const void *a = NULL;

    if (sa->sa_family == AF_INET) {
        a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    }
    if (a == NULL || inet_ntop(sa->sa_family, a, out, (socklen_t)len) == NULL) {
        (void)snprintf(out, len, "unknown");
    }
}

void torii_proxy__accept(struct proxy_worker *pw, evutil_socket_t fd, const struct sockaddr *sa,
                         int tls)
{
    struct proxy_conn *pc = torii_xcalloc(1, sizeof(*pc));
    SSL *ssl = NULL;
    int one = 1;

    pc->pw = pw;
    pc->tls = tls ? 1 : 0;
    px_peer_ip(sa, pc->ip, sizeof(pc->ip));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls && (ssl = torii_tls_conn_new(pw->tls)) == NULL) {
        evutil_closesocket(fd);
        free(pc);
        return;
    }
    pc->st = torii_stream_accept(pw->base, fd, ssl); /* owns fd and ssl from here */
    pc->timer = evtimer_new(pw->base, pc_timer_cb, pc);
    if (pc->st == NULL || pc->timer == NULL) {
        torii_log(TORII_LOG_WARN, "proxy: cannot set up a connection (client=%s)", pc->ip);
        torii_stream_free(pc->st);
        if (pc->timer != NULL) {
            event_free(pc->timer);
        }
        free(pc);
        return;
    }
    torii_stream_setcb(pc->st, pc_cb, pc);
    torii_stream_set_lowat(pc->st, PX_LOW_WM);
    /* A client that stops reading our output is dropped after the idle timeout. */
    torii_stream_timeouts(pc->st, 0, pw->cfg->idle_timeout_ms);
    torii_stream_read(pc->st, 1);
    pc_timer_arm(pc, PT_IDLE, pw->cfg->idle_timeout_ms);
    pc->next = pw->conns;
    if (pw->conns != NULL) {
        pw->conns->prev = pc;
    }
    pw->conns = pc;
    pw->n_conns++;
}

int torii_proxy__worker_init(struct proxy_worker *pw, struct event_base *base,
                             const struct torii_config *cfg, const struct torii_routes *routes,
                             struct torii_tls_ctx *tls)
{
    struct torii_wellknown_opts wo = {.cfg = cfg, .table = NULL, .pki = pw->pki};
    struct sockaddr_storage ss;
    int sslen = 0;
    int rc = TORII_OK;

    pw->base = base;
    pw->cfg = cfg;
    pw->routes = routes;
    pw->tls = tls;
    torii_http_limits_default(&pw->lim);
    pw->lim.max_header_bytes = cfg->max_header_bytes;
    pw->lim.max_headers = cfg->max_headers;
    pw->lim.max_target = cfg->max_target;
    pw->lim.max_body = cfg->max_body;
    pw->lim.header_timeout_ms = cfg->header_timeout_ms;
    pw->lim.idle_timeout_ms = cfg->idle_timeout_ms;
    torii_http_limits_default(&pw->ulim);
    pw->ulim.max_header_bytes = cfg->max_header_bytes > 65536 ? cfg->max_header_bytes : 65536;
    pw->ulim.max_headers = cfg->max_headers > 200 ? cfg->max_headers : 200;
    pw->ulim.max_body = SIZE_MAX;
    pw->n_targets = torii_routes_n_targets(routes);
    pw->targets = torii_xcalloc(pw->n_targets ? pw->n_targets : 1, sizeof(*pw->targets));
    pw->rr = torii_xcalloc(torii_routes_count(routes) + 1, sizeof(*pw->rr));
    pw->https_port = 443;
    if (cfg->listen_https[0] != '\0'
        && torii_config_parse_addr(cfg->listen_https, &ss, &sslen, NULL) == TORII_OK) {
        pw->https_port = ss.ss_family == AF_INET6
                             ? ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port)
                             : ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    }
    pw->log_sec = -1;
    TORII_TRY(torii_wellknown_new(&wo, &pw->wk));
out:
    return rc;
}

void torii_proxy__worker_drain(struct proxy_worker *pw, int mode)
{
    struct proxy_conn *pc = pw->conns;

    pw->draining = mode;
    while (pc != NULL) {
        struct proxy_conn *next = pc->next;
        pc_run(pc); /* idle ones close (stop), the others answer with Connection: close */
        pc = next;
    }
}

unsigned torii_proxy__worker_clear(struct proxy_worker *pw)
{
    unsigned cut = 0;

    while (pw->conns != NULL) {
        struct proxy_conn *pc = pw->conns;
        if (pc->x.active || pc->phase != PH_HEAD
            || (pc->rp != NULL && torii_http_parser_started(pc->rp))) {
            cut++; /* a request in flight, cut off */
        }
        pc->x.active = 0; /* no access log line at shutdown */
        pc_close(pc);
    }
    for (size_t i = 0; pw->targets != NULL && i < pw->n_targets; i++) {
        while (pw->targets[i].idle != NULL) {
            struct proxy_upstream *up = pw->targets[i].idle;
            pool_unlink(up);
            up_free(up);
        }
    }
    TORII_FREE(pw->targets);
    TORII_FREE(pw->rr);
    torii_wellknown_free(pw->wk);
    pw->wk = NULL;
    return cut;
}
