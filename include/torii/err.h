/* err.h - error codes, the errbuf that carries human detail, and the two guard macros.
 * Threads: any thread (immutable data; an errbuf belongs to its caller).
 * Ownership: a struct torii_errbuf is caller-provided storage; NULL is accepted wherever
 * one is taken. Codes are negative so they never clash with counts. */
#ifndef TORII_ERR_H
#define TORII_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define TORII_MUST_USE       __attribute__((warn_unused_result))
#define TORII_PRINTF(fi, va) __attribute__((format(printf, fi, va)))

/* X-macro: code, value, text. */
#define TORII_ERR_LIST(X)                                                                          \
    X(TORII_OK, 0, "success")                                                                      \
    X(TORII_ENOMEM, -1, "out of memory")                                                           \
    X(TORII_EINVAL, -2, "invalid argument")                                                        \
    X(TORII_ENOTFOUND, -3, "not found")                                                            \
    X(TORII_EEXIST, -4, "already exists")                                                          \
    X(TORII_ESTORE, -5, "store error")                                                             \
    X(TORII_ETLS, -6, "TLS error")                                                                 \
    X(TORII_EPROTO, -7, "protocol error")                                                          \
    X(TORII_EIO, -8, "I/O error")                                                                  \
    X(TORII_ETIMEDOUT, -9, "timed out")                                                            \
    X(TORII_EAGAIN, -10, "try again")                                                              \
    X(TORII_EPERM, -11, "not permitted")                                                           \
    X(TORII_ETOOBIG, -12, "too big")                                                               \
    X(TORII_EUNSUPPORTED, -13, "unsupported")                                                      \
    X(TORII_ECONFLICT, -14, "changed concurrently")                                                \
    X(TORII_ENOSPC, -15, "no space left for the store")

enum torii_err {
#define TORII_ERR_ENUM(name, val, text) name = (val),
    TORII_ERR_LIST(TORII_ERR_ENUM)
#undef TORII_ERR_ENUM
};

/** Static text for a code; never NULL. */
const char *torii_strerror(int code);

/** Text of an errno value, held in the returned value itself (strerror_r, so any thread may
 * call it, unlike strerror). Use it inside one expression: torii_errno_text(errno).s stays
 * valid until the end of the full expression that made the call. */
struct torii_errno_text {
    char s[128];
};
struct torii_errno_text torii_errno_text(int err);

#define TORII_ERRBUF_SIZE 256

/** Human-readable detail of a failure, filled by functions that judge external input. */
struct torii_errbuf {
    char msg[TORII_ERRBUF_SIZE];
};

/** Format into eb (NULL ignored); truncates silently. Returns code, for `return torii_errf(...)`.
 */
int torii_errf(struct torii_errbuf *eb, int code, const char *fmt, ...) TORII_PRINTF(3, 4);

/** Append ": <openssl error queue>" to eb after "what", and clear the OpenSSL error queue.
 * Returns TORII_ETLS. */
int torii_errbuf_ossl(struct torii_errbuf *eb, const char *what);

/** Drain the OpenSSL error queue into one short string (for logs); buf is always terminated. */
void torii_ossl_errors(char *buf, size_t len);

#define TORII_TRY(expr)                                                                            \
    do {                                                                                           \
        if ((rc = (expr)) != TORII_OK) {                                                           \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
#define TORII_ENSURE(cond, code)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            rc = (code);                                                                           \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/** Invariant check, always on; never for peer data. */
#define TORII_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            torii__assert_fail(#cond, __FILE__, __LINE__);                                         \
        }                                                                                          \
    } while (0)
void torii__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#endif
