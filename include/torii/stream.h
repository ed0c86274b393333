/* stream.h - a non-blocking byte stream over one TCP socket, plain or TLS, for an event loop:
 * the proxy's client and upstream connections. It exists to spend as few system calls and
 * epoll changes per exchange as possible:
 *   - reads happen while reading is enabled, one readiness at a time (level-triggered), and
 *     a short read means "drained for now", so no read is made just to learn EAGAIN;
 *   - TLS records are encrypted into one buffer and written with one system call (send, or
 *     writev when the buffer holds several chains), so a response of many records costs a
 *     few system calls, not one per record;
 *   - writes are optimistic: torii_stream_flush() writes at once and arms the write event
 *     only when the socket is full, so a keep-alive exchange makes no epoll_ctl at all.
 * Plaintext goes through two evbuffers owned by the stream (torii_stream_input/_output);
 * nothing is written until the owner calls torii_stream_flush(). TLS handshake flights are
 * sent by the stream itself; what the TLS layer produces along with application data it
 * reports (a session ticket after the handshake) waits for the owner's next flush, so it
 * leaves with the answer in one write.
 *
 * Callbacks: one function gets a mask of TORII_STREAM_* bits. It is called from the event
 * loop only (never from inside a torii_stream_* call), always as the last thing the stream
 * does in that event, so the callback may free the stream.
 * Threads: a stream belongs to the thread running its event_base.
 * Ownership: the stream owns its socket and SSL object from creation (both are freed by
 * torii_stream_free, also on a failed creation). */
#ifndef TORII_STREAM_H
#define TORII_STREAM_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "torii/err.h"

struct evbuffer;
struct torii_stream;

enum {
    TORII_STREAM_READ = 0x01,      /* new input is in torii_stream_input() */
    TORII_STREAM_WRITE = 0x02,     /* a blocked output drained to the low-water mark */
    TORII_STREAM_EOF = 0x10,       /* the peer finished sending (TLS: with or without
                                    * close_notify); reading stopped */
    TORII_STREAM_ERROR = 0x20,     /* the connection failed (reset, TLS alert, refused) */
    TORII_STREAM_TIMEOUT = 0x40,   /* a read or write timeout (see torii_stream_timeouts) */
    TORII_STREAM_CONNECTED = 0x80, /* torii_stream_connect: TCP (and TLS handshake) done */
};

typedef void (*torii_stream_cb)(struct torii_stream *s, int what, void *arg);

/** A stream over fd, an accepted connected non-blocking socket; ssl NULL for
 * plain TCP, else a server-side SSL (handshake driven by reads). Returns NULL on failure
 * (fd closed, ssl freed). Reading starts disabled. */
struct torii_stream *torii_stream_accept(struct event_base *base, evutil_socket_t fd, SSL *ssl);

/** A stream connecting to sa (non-blocking); ssl NULL for plain TCP, else a client-side SSL
 * (SNI and verification already set) whose handshake follows the TCP connect. CONNECTED is
 * reported when the stream can carry data; output queued before is sent then. Returns NULL
 * when the connect fails at once (ssl freed). */
struct torii_stream *torii_stream_connect(struct event_base *base, const struct sockaddr *sa,
                                          socklen_t salen, SSL *ssl);

/** A pipe: a stream with no socket, for a request source that is not a connection of its own
 * (an HTTP/2 stream). Input is appended by the owner; torii_stream_flush() calls send(s, arg),
 * which takes what it can from torii_stream_output() and returns TORII_OK or an error (then
 * flush fails). ssl_ref (borrowed, may be NULL) is what torii_stream_ssl() returns. Reading
 * on/off is only recorded (torii_stream_reading); timeouts and shutdown do nothing; no
 * callback is ever made. NULL on allocation failure. */
typedef int (*torii_stream_pipe_cb)(struct torii_stream *s, void *arg);
struct torii_stream *torii_stream_pipe(SSL *ssl_ref, torii_stream_pipe_cb send, void *arg);

/** A pipe made by torii_stream_pipe, used again for another source: its buffers emptied, its
 * state as new, with these arguments. */
void torii_stream_pipe_rearm(struct torii_stream *s, SSL *ssl_ref, torii_stream_pipe_cb send,
                             void *arg);

/** 1 while the owner has reading enabled. */
int torii_stream_reading(const struct torii_stream *s);

/** Close the socket and free everything; NULL is accepted. Unsent output is dropped. */
void torii_stream_free(struct torii_stream *s);

void torii_stream_setcb(struct torii_stream *s, torii_stream_cb cb, void *arg);

/** Plaintext received and not yet taken; the owner drains it. The buffer may be replaced by
 * the stream between events: take it anew in each callback, never keep it. */
struct evbuffer *torii_stream_input(struct torii_stream *s);

/** Plaintext to send; sent by torii_stream_flush(). */
struct evbuffer *torii_stream_output(struct torii_stream *s);

/** Bytes accepted for sending and not yet given to the kernel (plaintext + TLS records). */
size_t torii_stream_unsent(const struct torii_stream *s);

/** Enable or disable reading (no system call when the state does not change). */
void torii_stream_read(struct torii_stream *s, int on);

/** Enable reading, and read in this loop iteration without waiting for the socket to be
 * reported readable: for an accepted socket whose first bytes are known to be there
 * (TCP_DEFER_ACCEPT), it saves a round through epoll. When nothing is there, the read costs
 * one recv that says EAGAIN and the stream waits as usual. */
void torii_stream_read_ready(struct torii_stream *s);

/** Read timeout (no input for read_ms while reading is enabled) and write timeout (no progress
 * for write_ms while output is blocked); 0 = none. A torii_stream_connect stream: while
 * connecting, the smaller non-zero one bounds the whole connect and handshake (an accepted
 * stream's handshake is bounded by its owner). TIMEOUT is reported, the stream stays usable.
 * A new value replaces the old one for good: one set back to 0 does not come back later. */
void torii_stream_timeouts(struct torii_stream *s, uint32_t read_ms, uint32_t write_ms);

/** WRITE is reported when blocked output drains to at most lowat bytes (default 0). */
void torii_stream_set_lowat(struct torii_stream *s, size_t lowat);

/** Send what can be sent now without blocking; the rest goes when the socket allows.
 * TORII_OK, or TORII_EIO when the connection failed (the stream should be freed). */
int torii_stream_flush(struct torii_stream *s) TORII_MUST_USE;

/** TLS: end the stream with close_notify, sent right after the output queued so far (in the
 * same write); nothing may be queued after. Takes effect at the next flush. Plain streams:
 * nothing. */
void torii_stream_shutdown(struct torii_stream *s);

/** Half-close: no more output after what is queued so far. TLS: close_notify (as
 * torii_stream_shutdown); plain: shutdown(SHUT_WR) once the output is sent. Reading goes on.
 * Takes effect at the next flush. */
void torii_stream_shutdown_write(struct torii_stream *s);

/** The SSL object (NULL for plain streams); still owned by the stream (a pipe: its ssl_ref). */
SSL *torii_stream_ssl(const struct torii_stream *s);

/** 1 once connected (and the TLS handshake is done, for TLS). */
int torii_stream_established(const struct torii_stream *s);

#endif
