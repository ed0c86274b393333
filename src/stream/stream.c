/* stream.c - see torii/stream.h. Two events per stream on the same socket: rev (persistent,
 * added while reading or while a connect is in progress) and wev (persistent, added only
 * while output is blocked or a connect is in progress). TLS goes through a BIO of our own:
 * its read side is recv() on the socket that remembers a short read (the socket is drained:
 * the next read would only say EAGAIN, so it says so without the system call); its write
 * side appends records to tls_out, which torii_stream_flush() sends with one send() (writev
 * when the buffer holds several chains). */
#include "torii/stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>

#include "torii/log.h"
#include "torii/mem.h"

#define ST_PLAIN_READ ((size_t)65536 - 256) /* one recv; fits a 64 KiB evbuffer chain */
#define ST_TLS_READ   ((size_t)16384 - 256) /* one SSL_read; fits a 16 KiB chain */
#define ST_READ_MAX   ((size_t)256 * 1024)  /* plaintext taken per readiness */
#define ST_RECORD     ((size_t)16384)       /* TLS record payload */
#define ST_MIN_RECORD ((size_t)4096)        /* below: coalesce chains into one record */
#define ST_TLS_OUT    ((size_t)256 * 1024)  /* records encrypted ahead of the socket */
#define ST_HELLO_MS   20                    /* a suspended ClientHello is tried again this often */

/* The socket's recv and send, as bare system calls: glibc's recv() and send() are
 * cancellation points, which in a threaded process turn asynchronous cancellation on and off
 * around each call (two atomic updates of the thread's state). torii never cancels a thread,
 * so they are paid for nothing, twice per proxied exchange on each side. */
static ssize_t st_recv(int fd, void *buf, size_t len)
{
    return (ssize_t)syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

static ssize_t st_sendto(int fd, const void *buf, size_t len, int flags)
{
    return (ssize_t)syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

struct torii_stream {
    struct event_base *base;
    evutil_socket_t fd;
    SSL *ssl;
    struct event *rev;
    struct event *wev;
    struct event *hello_ev; /* retry of a suspended ClientHello (on-demand certificates) */
    struct evbuffer *in;
    struct evbuffer *out;
    struct evbuffer *tls_out;
    torii_stream_cb cb;
    void *arg;
    size_t lowat;
    uint32_t read_ms;
    uint32_t write_ms;
    uint32_t rev_ms;          /* the timeout rev was added with */
    unsigned reading : 1;     /* the owner wants input */
    unsigned rev_on : 1;      /* rev is added */
    unsigned wev_on : 1;      /* wev is added */
    unsigned connecting : 1;  /* TCP connect in progress */
    unsigned established : 1; /* connected, and the TLS handshake is done */
    unsigned rd_short : 1;    /* the last recv() came back short: the socket is drained */
    unsigned sock_eof : 1;    /* recv() returned 0 */
    unsigned failed : 1;      /* a write failed: nothing more will be sent */
    unsigned rd_done : 1;     /* EOF or error reported: nothing more will be read */
    unsigned outbound : 1;    /* made by torii_stream_connect */
    unsigned shut : 1;        /* close_notify wanted after the output */
    unsigned shut_sent : 1;   /* close_notify queued */
    unsigned wshut : 1;       /* plain: FIN wanted after the output (half-close) */
    unsigned wshut_sent : 1;  /* plain: shutdown(SHUT_WR) done */
    unsigned fin_sent : 1;    /* TLS, accepted: shutdown(SHUT_WR) after close_notify */
    unsigned rd_max : 1;      /* the last read stopped at ST_READ_MAX */
    unsigned rev_timed : 1;   /* rev was added with a timeout since it was last assigned */
    unsigned wev_timed : 1;   /* the same for wev */
    /* A pipe (torii_stream_pipe): no socket; the owner moves the bytes. */
    SSL *ssl_ref;                   /* the connection's SSL, borrowed (torii_stream_ssl) */
    torii_stream_pipe_cb pipe_send; /* takes what flush would send */
    void *pipe_arg;
};

/* ---- the BIO ---------------------------------------------------------------------------- */

/* The method table is process-wide, immutable once built (like OpenSSL's own), and built
 * once by whichever thread creates the first TLS stream. */
static BIO_METHOD *st_method;
static pthread_once_t st_method_once = PTHREAD_ONCE_INIT;

static int st_bio_write(BIO *b, const char *buf, int len)
{
    struct torii_stream *s = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    return evbuffer_add(s->tls_out, buf, (size_t)len) == 0 ? len : -1;
}

static int st_bio_read(BIO *b, char *buf, int len)
{
    struct torii_stream *s = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    if (s->rd_short) {
        BIO_set_retry_read(b);
        return -1;
    }
    n = st_recv(s->fd, buf, (size_t)len);
    if (n > 0) {
        if (n < len) {
            s->rd_short = 1;
        }
        return (int)n;
    }
    if (n == 0) {
        s->sock_eof = 1;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        s->rd_short = 1;
        BIO_set_retry_read(b);
    }
    return -1;
}

static long st_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const struct torii_stream *s = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_EOF:
        return s != NULL && s->sock_eof;
    default:
        return 0;
    }
}

static void st_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "torii-stream");

    if (m != NULL
        && (BIO_meth_set_write(m, st_bio_write) != 1 || BIO_meth_set_read(m, st_bio_read) != 1
            || BIO_meth_set_ctrl(m, st_bio_ctrl) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    st_method = m;
}

/* ---- events ----------------------------------------------------------------------------- */

static void st_tv(struct timeval *tv, uint32_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

/* While connecting or handshaking, one deadline bounds both: the smaller non-zero timeout. */
static uint32_t st_connect_ms(const struct torii_stream *s)
{
    if (s->read_ms == 0 || (s->write_ms != 0 && s->write_ms < s->read_ms)) {
        return s->write_ms;
    }
    return s->read_ms;
}

/* Add a persistent event with a timeout of ms (0: none); *timed says whether it has one now.
 * libevent keeps the period a persistent event was last added with and sets it again after
 * each activation, even once the event is added with none (event_add(NULL) only cancels the
 * pending expiry): a backend connection whose connect deadline gave way to no timeout still
 * timed out after that long without input. Going to none re-assigns the event, which forgets
 * the period. Returns 1 when it did (a pending activation, if any, went with it). */
static int st_event_add(struct event *ev, uint32_t ms, unsigned *timed)
{
    struct event_base *base = NULL;
    evutil_socket_t fd = -1;
    short what = 0;
    event_callback_fn cb = NULL;
    void *arg = NULL;
    struct timeval tv;
    int reassigned = 0;

    if (ms != 0) {
        st_tv(&tv, ms);
        (void)event_add(ev, &tv);
        *timed = 1;
        return 0;
    }
    if (*timed) {
        event_get_assignment(ev, &base, &fd, &what, &cb, &arg);
        (void)event_del(ev);
        reassigned = event_assign(ev, base, fd, what, cb, arg) == 0;
        *timed = !reassigned;
    }
    (void)event_add(ev, NULL);
    return reassigned;
}

/* Add or remove rev to match what is wanted; re-adding only changes the timeout. */
static void st_rev_update(struct torii_stream *s)
{
    int connecting = s->outbound && !s->established;
    int want = !s->rd_done && (s->reading || connecting);
    uint32_t ms = connecting ? st_connect_ms(s) : s->read_ms;
    unsigned timed = s->rev_timed;

    if (s->rev == NULL) {
        return;
    }
    if (want) {
        if (s->rev_on && s->rev_ms == ms) {
            return;
        }
        if (st_event_add(s->rev, ms, &timed) && s->ssl != NULL && SSL_has_pending(s->ssl)) {
            event_active(s->rev, EV_READ, 1); /* records already read: the socket will not say */
        }
        s->rev_timed = timed;
        s->rev_on = 1;
        s->rev_ms = ms;
    } else if (s->rev_on) {
        (void)event_del(s->rev);
        s->rev_on = 0;
    }
}

static void st_write_cb(evutil_socket_t fd, short ev, void *arg);

/* Arm or disarm wev (made on first need: most connections never fill their socket).
 * TORII_ENOMEM when it cannot be made. */
static int st_wev_set(struct torii_stream *s, int on)
{
    unsigned timed = s->wev_timed;

    if (on && s->wev == NULL
        && (s->wev = event_new(s->base, s->fd, EV_WRITE | EV_PERSIST, st_write_cb, s)) == NULL) {
        return TORII_ENOMEM;
    }
    if (on && !s->wev_on) {
        (void)st_event_add(s->wev, s->connecting ? st_connect_ms(s) : s->write_ms, &timed);
        s->wev_timed = timed;
        s->wev_on = 1;
    } else if (!on && s->wev_on) {
        (void)event_del(s->wev);
        s->wev_on = 0;
    }
    return TORII_OK;
}

/* ---- writing ---------------------------------------------------------------------------- */

size_t torii_stream_unsent(const struct torii_stream *s)
{
    return evbuffer_get_length(s->out) + (s->tls_out != NULL ? evbuffer_get_length(s->tls_out) : 0);
}

/* Did sending since `before` bytes were unsent bring the output down to the low-water mark?
 * Then the owner hears WRITE. */
static int st_drained(const struct torii_stream *s, size_t before)
{
    size_t now = torii_stream_unsent(s);

    return now <= s->lowat && now < before;
}

/* One system call for what buf holds: send() when it is one contiguous chain (the usual
 * case: one TLS record, one head; it skips the vector and file layers of writev), else
 * evbuffer_write's writev. What was sent is drained. more: MSG_MORE (send() only). */
static ssize_t st_send_once(struct torii_stream *s, struct evbuffer *buf, size_t len, int more)
{
    struct evbuffer_iovec v;
    ssize_t n;

    if (evbuffer_peek(buf, -1, NULL, &v, 1) != 1 || v.iov_len != len) {
        return evbuffer_write(buf, s->fd);
    }
    n = st_sendto(s->fd, v.iov_base, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    if (n > 0) {
        (void)evbuffer_drain(buf, (size_t)n);
    }
    return n;
}

/* Write buf to the socket until it is empty or the socket is full. 1 = blocked, 0 = all
 * sent, -1 = failed. A partial write means the socket is full: no second try. more: the
 * caller ends the sending side right after (st_send_fin), so the kernel may hold the last
 * segment for the FIN to join it; bytes held behind a full socket go out with its ACKs. */
static int st_send(struct torii_stream *s, struct evbuffer *buf, int more)
{
    size_t len;

    while ((len = evbuffer_get_length(buf)) > 0) {
        ssize_t n = st_send_once(s, buf, len, more);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return 1;
            }
            return -1;
        }
        if ((size_t)n < len) {
            return 1;
        }
    }
    return 0;
}

/* An accepted TLS stream whose close_notify is queued: nothing can follow it, so the TCP
 * sending side ends with it, and the FIN leaves in the same segment as the last records (one
 * packet less than the FIN of the close that follows). Its own connections' peers (outbound)
 * are left to the close. 1 when the FIN is due with this send. */
static int st_fin_due(const struct torii_stream *s)
{
    return s->shut_sent && !s->fin_sent && !s->outbound;
}

static void st_send_fin(struct torii_stream *s)
{
    s->fin_sent = 1;
    (void)shutdown(s->fd, SHUT_WR); /* the peer may be gone: nothing to tell it */
}

/* Encrypt plaintext into records until tls_out holds ST_TLS_OUT. A record takes the first
 * chain as it is when that is large enough, else up to ST_RECORD bytes pulled together.
 * TORII_EAGAIN: the TLS layer waits for input first. */
static int st_encrypt(struct torii_stream *s)
{
    size_t len;

    while ((len = evbuffer_get_length(s->out)) > 0
           && evbuffer_get_length(s->tls_out) < ST_TLS_OUT) {
        struct evbuffer_iovec v;
        size_t n = len < ST_RECORD ? len : ST_RECORD;
        unsigned char *p;
        int r;

        if (evbuffer_peek(s->out, -1, NULL, &v, 1) >= 1 && v.iov_len >= ST_MIN_RECORD) {
            n = v.iov_len < n ? v.iov_len : n;
            p = v.iov_base;
        } else if ((p = evbuffer_pullup(s->out, (ssize_t)n)) == NULL) {
            return TORII_ENOMEM;
        }
        r = SSL_write(s->ssl, p, (int)n);
        if (r <= 0) {
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                return TORII_EAGAIN; /* resumes after the next read */
            }
            ERR_clear_error();
            return TORII_EIO;
        }
        (void)evbuffer_drain(s->out, (size_t)r);
    }
    return TORII_OK;
}

int torii_stream_flush(struct torii_stream *s)
{
    int blocked = 0;

    if (s->failed) {
        return TORII_EIO;
    }
    if (s->pipe_send != NULL) {
        return s->pipe_send(s, s->pipe_arg);
    }
    if (s->connecting) {
        return TORII_OK; /* sent once connected */
    }
    if (s->ssl == NULL) {
        blocked = st_send(s, s->out, 0);
        if (blocked == 0 && s->wshut && !s->wshut_sent) {
            s->wshut_sent = 1;
            (void)shutdown(s->fd, SHUT_WR); /* the peer may be gone: nothing to tell it */
        }
    } else {
        int rc = TORII_OK;
        /* Encrypt up to ST_TLS_OUT ahead, send, again, until sent, blocked or stalled. */
        do {
            if (s->established && (rc = st_encrypt(s)) != TORII_OK && rc != TORII_EAGAIN) {
                blocked = -1;
                break;
            }
            if (s->shut && !s->shut_sent && s->established && evbuffer_get_length(s->out) == 0) {
                s->shut_sent = 1;
                (void)SSL_shutdown(s->ssl); /* close_notify into tls_out */
                ERR_clear_error();
            }
            blocked = st_send(s, s->tls_out, st_fin_due(s));
            if (blocked == 0 && st_fin_due(s)) {
                st_send_fin(s);
            }
        } while (blocked == 0 && rc == TORII_OK && s->established
                 && evbuffer_get_length(s->out) > 0);
    }
    if (blocked < 0) {
        s->failed = 1;
        (void)st_wev_set(s, 0);
        return TORII_EIO;
    }
    if (st_wev_set(s, blocked) != TORII_OK) {
        s->failed = 1;
        return TORII_EIO;
    }
    return TORII_OK;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* One recv into the input. Returns the mask to report. */
static int st_read_plain(struct torii_stream *s)
{
    struct evbuffer_iovec v;
    ssize_t n;

    if (evbuffer_reserve_space(s->in, (ssize_t)ST_PLAIN_READ, &v, 1) < 1) {
        return TORII_STREAM_ERROR;
    }
    n = st_recv(s->fd, v.iov_base, v.iov_len);
    if (n > 0) {
        v.iov_len = (size_t)n;
        return evbuffer_commit_space(s->in, &v, 1) == 0 ? TORII_STREAM_READ : TORII_STREAM_ERROR;
    }
    if (n == 0) {
        s->sock_eof = 1;
        return TORII_STREAM_EOF;
    }
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : TORII_STREAM_ERROR;
}

static void st_log_tls(const struct torii_stream *s, const char *what)
{
    char errs[256];

    torii_ossl_errors(errs, sizeof(errs));
    /* Clients failing their handshakes are everyday noise; a backend that does is not. */
    torii_log(SSL_is_server(s->ssl) ? TORII_LOG_DEBUG : TORII_LOG_WARN, "tls: %s: %s", what,
              errs[0] != '\0' ? errs : "connection closed");
}

static void st_read_cb(evutil_socket_t fd, short ev, void *arg);

static void st_hello_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct torii_stream *s = arg;

    (void)fd;
    (void)ev;
    st_read_cb(s->fd, EV_READ, s);
}

/* The client-hello callback suspended the handshake (SSL_CLIENT_HELLO_RETRY: it waits for
 * a certificate, tls.h): try again in ST_HELLO_MS, without blocking the loop. */
static int st_hello_later(struct torii_stream *s)
{
    struct timeval tv = {0, (suseconds_t)ST_HELLO_MS * 1000};

    if (s->hello_ev == NULL && (s->hello_ev = evtimer_new(s->base, st_hello_cb, s)) == NULL) {
        return TORII_ENOMEM;
    }
    return evtimer_add(s->hello_ev, &tv) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* Why SSL_read returned r <= 0: 0 (wants more I/O), TORII_STREAM_EOF or TORII_STREAM_ERROR. */
static int st_tls_read_end(struct torii_stream *s, int r)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return TORII_STREAM_EOF; /* close_notify */
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
        return st_hello_later(s) == TORII_OK ? 0 : TORII_STREAM_ERROR;
    default:
        if (s->sock_eof && s->established) {
            ERR_clear_error(); /* EOF without close_notify: allowed */
            return TORII_STREAM_EOF;
        }
        st_log_tls(s, s->established ? "read failed" : "handshake failed");
        return TORII_STREAM_ERROR;
    }
}

/* TLS: handshake progress and records, up to ST_READ_MAX bytes of plaintext. */
static int st_read_tls(struct torii_stream *s)
{
    size_t got = 0;
    int what = 0;

    s->rd_max = 0;
    if (!s->established && !SSL_is_server(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                st_log_tls(s, "upstream handshake failed");
                what = TORII_STREAM_ERROR;
            }
            return what;
        }
        s->established = 1;
        what |= TORII_STREAM_CONNECTED;
    }
    while (got < ST_READ_MAX) {
        struct evbuffer_iovec v;
        int r;

        if (s->rd_short && !SSL_has_pending(s->ssl)) {
            break; /* the next SSL_read could only say WANT_READ */
        }
        if (evbuffer_reserve_space(s->in, (ssize_t)ST_TLS_READ, &v, 1) < 1) {
            return what | TORII_STREAM_ERROR;
        }
        r = SSL_read(s->ssl, v.iov_base, (int)(v.iov_len < INT_MAX ? v.iov_len : INT_MAX));
        if (r > 0) {
            v.iov_len = (size_t)r;
            if (evbuffer_commit_space(s->in, &v, 1) != 0) {
                return what | TORII_STREAM_ERROR;
            }
            got += (size_t)r;
            what |= TORII_STREAM_READ;
            continue;
        }
        what |= st_tls_read_end(s, r);
        break;
    }
    if (got >= ST_READ_MAX) {
        s->rd_max = 1;
    }
    if (!s->established && SSL_is_init_finished(s->ssl)) {
        s->established = 1;
    }
    return what;
}

/* An evbuffer_reserve_space() that read nothing leaves an empty chain behind (16-64 KiB):
 * an idle connection must not keep one, so an empty input is replaced by a fresh buffer. */
static int st_trim_input(struct torii_stream *s)
{
    struct evbuffer *fresh;

    if (evbuffer_get_length(s->in) > 0) {
        return TORII_OK;
    }
    if ((fresh = evbuffer_new()) == NULL) {
        return TORII_ENOMEM;
    }
    evbuffer_free(s->in);
    s->in = fresh;
    return TORII_OK;
}

static void st_connected(struct torii_stream *s);

static void st_read_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct torii_stream *s = arg;
    unsigned was_established = s->established;
    int what;
    int was_blocked;
    size_t before;

    (void)fd;
    if (s->connecting) {
        if (ev & EV_TIMEOUT) {
            if (!s->wev_on) {
                s->cb(s, TORII_STREAM_TIMEOUT, s->arg);
            }
        } else {
            st_connected(s);
        }
        return;
    }
    if (ev & EV_TIMEOUT) {
        s->cb(s, TORII_STREAM_TIMEOUT, s->arg);
        return;
    }
    s->rd_short = 0;
    was_blocked = s->wev_on;
    before = torii_stream_unsent(s);
    what = s->ssl != NULL ? st_read_tls(s) : st_read_plain(s);
    if (!(what & TORII_STREAM_READ) && st_trim_input(s) != TORII_OK) {
        what |= TORII_STREAM_ERROR;
    }
    if (s->ssl != NULL && (what & TORII_STREAM_ERROR)) {
        (void)st_send(s, s->tls_out, 0); /* the alert that says why, best effort */
    } else if (s->ssl != NULL && (!(what & TORII_STREAM_READ) || (what & TORII_STREAM_CONNECTED))
               && torii_stream_flush(s) != TORII_OK) {
        /* Handshake flights, and output that waited for the handshake. With application
         * data read, the owner answers and flushes: a ticket leaves with that answer. */
        what |= TORII_STREAM_ERROR;
    }
    if (what & (TORII_STREAM_EOF | TORII_STREAM_ERROR)) {
        s->reading = 0;
        s->rd_done = 1;
        st_rev_update(s);
    } else if (s->established != was_established) {
        st_rev_update(s); /* from the handshake deadline to the read timeout */
    }
    if (!(what & (TORII_STREAM_EOF | TORII_STREAM_ERROR)) && s->ssl != NULL && s->reading
        && s->rd_max && SSL_has_pending(s->ssl)) {
        event_active(s->rev, EV_READ, 1); /* stopped at ST_READ_MAX with records buffered */
    }
    if (was_blocked && !(what & TORII_STREAM_ERROR) && st_drained(s, before)) {
        what |= TORII_STREAM_WRITE;
    }
    if (what != 0) {
        s->cb(s, what, s->arg);
    }
}

static void st_write_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct torii_stream *s = arg;
    size_t before;

    (void)fd;
    if (ev & EV_TIMEOUT) {
        s->cb(s, TORII_STREAM_TIMEOUT, s->arg);
        return;
    }
    if (s->connecting) {
        st_connected(s);
        return;
    }
    before = torii_stream_unsent(s);
    if (torii_stream_flush(s) != TORII_OK) {
        s->cb(s, TORII_STREAM_ERROR, s->arg);
        return;
    }
    if (st_drained(s, before)) {
        s->cb(s, TORII_STREAM_WRITE, s->arg);
    }
}

/* The TCP connect finished (or failed). TLS: the handshake starts; CONNECTED follows it. */
static void st_connected(struct torii_stream *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    int one = 1;

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == EINPROGRESS || err == EALREADY) {
        return; /* spurious wake-up */
    }
    s->connecting = 0;
    (void)st_wev_set(s, 0);
    if (err != 0) {
        s->failed = 1;
        s->cb(s, TORII_STREAM_ERROR, s->arg);
        return;
    }
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (s->ssl != NULL) {
        int r = SSL_do_handshake(s->ssl); /* ClientHello into tls_out */
        if (r != 1 && SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ) {
            st_log_tls(s, "upstream handshake failed");
            s->cb(s, TORII_STREAM_ERROR, s->arg);
            return;
        }
        if (torii_stream_flush(s) != TORII_OK) {
            s->cb(s, TORII_STREAM_ERROR, s->arg);
        }
        return;
    }
    s->established = 1;
    st_rev_update(s);
    if (torii_stream_flush(s) != TORII_OK) {
        s->cb(s, TORII_STREAM_ERROR, s->arg);
        return;
    }
    s->cb(s, TORII_STREAM_CONNECTED, s->arg);
}

/* ---- life ------------------------------------------------------------------------------- */

static void st_nop_cb(struct torii_stream *s, int what, void *arg)
{
    (void)s;
    (void)what;
    (void)arg;
}

/* Everything but the connect: buffers, events, the BIO. On failure the caller frees s. */
static int st_init(struct torii_stream *s, struct event_base *base, evutil_socket_t fd, SSL *ssl)
{
    BIO *bio = NULL;

    s->base = base;
    s->fd = fd;
    s->ssl = ssl;
    s->cb = st_nop_cb;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->rev = event_new(base, fd, EV_READ | EV_PERSIST, st_read_cb, s);
    if (s->in == NULL || s->out == NULL || s->rev == NULL) {
        return TORII_ENOMEM;
    }
    if (ssl == NULL) {
        return TORII_OK;
    }
    if (pthread_once(&st_method_once, st_method_init) != 0 || st_method == NULL
        || (s->tls_out = evbuffer_new()) == NULL || (bio = BIO_new(st_method)) == NULL) {
        ERR_clear_error();
        return TORII_ENOMEM;
    }
    BIO_set_data(bio, s);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns the BIO */
    SSL_set_read_ahead(ssl, 1);
    return TORII_OK;
}

struct torii_stream *torii_stream_accept(struct event_base *base, evutil_socket_t fd, SSL *ssl)
{
    struct torii_stream *s = torii_xcalloc(1, sizeof(*s));

    if (st_init(s, base, fd, ssl) != TORII_OK) {
        s->fd = fd;
        s->ssl = ssl;
        torii_stream_free(s);
        return NULL;
    }
    if (ssl != NULL) {
        SSL_set_accept_state(ssl);
    } else {
        s->established = 1;
    }
    /* The handshake is driven by reads: it progresses while the owner has reading on. */
    st_rev_update(s);
    return s;
}

struct torii_stream *torii_stream_connect(struct event_base *base, const struct sockaddr *sa,
                                          socklen_t salen, SSL *ssl)
{
    struct torii_stream *s = torii_xcalloc(1, sizeof(*s));
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    s->fd = fd;
    s->ssl = ssl;
    if (fd < 0 || st_init(s, base, fd, ssl) != TORII_OK) {
        torii_stream_free(s);
        return NULL;
    }
    if (ssl != NULL) {
        SSL_set_connect_state(ssl);
    }
    s->outbound = 1;
    s->connecting = 1;
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
        torii_stream_free(s);
        return NULL;
    }
    /* Completion (even an immediate one) is taken from the write event. */
    if (st_wev_set(s, 1) != TORII_OK) {
        torii_stream_free(s);
        return NULL;
    }
    st_rev_update(s);
    return s;
}

/* A cleared stream becomes a pipe (its buffers set by the caller). */
static void st_pipe_set(struct torii_stream *s, SSL *ssl_ref, torii_stream_pipe_cb send, void *arg)
{
    s->fd = -1;
    s->cb = st_nop_cb;
    s->ssl_ref = ssl_ref;
    s->pipe_send = send;
    s->pipe_arg = arg;
    s->established = 1;
}

struct torii_stream *torii_stream_pipe(SSL *ssl_ref, torii_stream_pipe_cb send, void *arg)
{
    struct torii_stream *s = torii_xcalloc(1, sizeof(*s));

    st_pipe_set(s, ssl_ref, send, arg);
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    if (s->in == NULL || s->out == NULL) {
        torii_stream_free(s);
        return NULL;
    }
    return s;
}

void torii_stream_pipe_rearm(struct torii_stream *s, SSL *ssl_ref, torii_stream_pipe_cb send,
                             void *arg)
{
    struct evbuffer *in = s->in, *out = s->out;

    (void)evbuffer_drain(in, evbuffer_get_length(in));
    (void)evbuffer_drain(out, evbuffer_get_length(out));
    memset(s, 0, sizeof(*s));
    st_pipe_set(s, ssl_ref, send, arg);
    s->in = in;
    s->out = out;
}

int torii_stream_reading(const struct torii_stream *s)
{
    return s->reading;
}

void torii_stream_free(struct torii_stream *s)
{
    if (s == NULL) {
        return;
    }
    if (s->rev != NULL) {
        event_free(s->rev);
    }
    if (s->wev != NULL) {
        event_free(s->wev);
    }
    if (s->hello_ev != NULL) {
        event_free(s->hello_ev);
    }
    if (s->ssl != NULL) {
        SSL_free(s->ssl);
    }
    ERR_clear_error();
    if (s->fd >= 0) {
        (void)close(s->fd);
    }
    if (s->in != NULL) {
        evbuffer_free(s->in);
    }
    if (s->out != NULL) {
        evbuffer_free(s->out);
    }
    if (s->tls_out != NULL) {
        evbuffer_free(s->tls_out);
    }
    free(s);
}

void torii_stream_setcb(struct torii_stream *s, torii_stream_cb cb, void *arg)
{
    s->cb = cb != NULL ? cb : st_nop_cb;
    s->arg = arg;
}

struct evbuffer *torii_stream_input(struct torii_stream *s)
{
    return s->in;
}

struct evbuffer *torii_stream_output(struct torii_stream *s)
{
    return s->out;
}

void torii_stream_read(struct torii_stream *s, int on)
{
    if ((on != 0) == s->reading) {
        return;
    }
    if (on && s->rd_done) {
        return; /* nothing more will come */
    }
    s->reading = on ? 1 : 0;
    st_rev_update(s);
    if (on && s->ssl != NULL && SSL_has_pending(s->ssl)) {
        event_active(s->rev, EV_READ, 1); /* records already read from the socket */
    }
}

void torii_stream_read_ready(struct torii_stream *s)
{
    torii_stream_read(s, 1);
    if (s->reading && s->rev != NULL) {
        event_active(s->rev, EV_READ, 1);
    }
}

void torii_stream_timeouts(struct torii_stream *s, uint32_t read_ms, uint32_t write_ms)
{
    if (s->read_ms == read_ms && s->write_ms == write_ms) {
        return;
    }
    s->read_ms = read_ms;
    s->write_ms = write_ms;
    if (s->rev_on) {
        st_rev_update(s);
    }
    if (s->wev_on) {
        (void)st_wev_set(s, 0);
        if (st_wev_set(s, 1) != TORII_OK) {
            s->failed = 1;
        }
    }
}

void torii_stream_set_lowat(struct torii_stream *s, size_t lowat)
{
    s->lowat = lowat;
}

void torii_stream_shutdown(struct torii_stream *s)
{
    s->shut = s->ssl != NULL ? 1 : 0;
}

void torii_stream_shutdown_write(struct torii_stream *s)
{
    s->shut = s->ssl != NULL ? 1 : 0;
    s->wshut = s->ssl == NULL ? 1 : 0;
}

SSL *torii_stream_ssl(const struct torii_stream *s)
{
    return s->ssl != NULL ? s->ssl : s->ssl_ref;
}

int torii_stream_established(const struct torii_stream *s)
{
    return s->established;
}
