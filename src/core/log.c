/* log.c - stderr logging, one write(2) per line so threads do not interleave. */
#include "torii/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Read by every thread, written at start-up (atomic for the debug hook). */
static _Atomic int log_level = TORII_LOG_INFO;

static const char *const log_names[] = {"err", "warn", "notice", "info", "debug"};

void torii_log_set_level(enum torii_log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

enum torii_log_level torii_log_get_level(void)
{
    return (enum torii_log_level)atomic_load(&log_level);
}

int torii_log_level_parse(const char *s, enum torii_log_level *out)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcmp(s, log_names[i]) == 0) {
            *out = (enum torii_log_level)i;
            return TORII_OK;
        }
    }
    return TORII_EINVAL;
}

TORII_PRINTF(3, 0)
static void log_vwrite(enum torii_log_level lvl, int errnum, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int w;

    if ((int)lvl > atomic_load(&log_level)) {
        return;
    }
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    (void)gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L, log_names[lvl]);
    if (w > 0) {
        n += (size_t)w;
    }
    w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (w > 0) {
        n += (size_t)w;
    }
    if (n >= sizeof(line) - 1) {
        n = sizeof(line) - 2;
    }
    if (errnum != 0) {
        char eb[128];
        const char *es = eb;
#if (_POSIX_C_SOURCE >= 200112L) && !defined(_GNU_SOURCE)
        if (strerror_r(errnum, eb, sizeof(eb)) != 0) {
            (void)snprintf(eb, sizeof(eb), "errno %d", errnum);
        }
#else
        es = strerror_r(errnum, eb, sizeof(eb));
#endif
        w = snprintf(line + n, sizeof(line) - n, ": %s", es);
        if (w > 0) {
            n += (size_t)w;
        }
        if (n >= sizeof(line) - 1) {
            n = sizeof(line) - 2;
        }
    }
    line[n++] = '\n';
    /* Best effort: nothing sensible to do if stderr is gone. */
    if (write(STDERR_FILENO, line, n) < 0) {
        return;
    }
}

void torii_log(enum torii_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lvl, 0, fmt, ap);
    va_end(ap);
}

void torii_log_errno(enum torii_log_level lvl, const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lvl, e, fmt, ap);
    va_end(ap);
}

void torii_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(TORII_LOG_ERR, 0, fmt, ap);
    va_end(ap);
    exit(1);
}

char *torii_log_escape(const char *s, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (outlen == 0) {
        return out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            if (o + 1 >= outlen) {
                break;
            }
            out[o++] = (char)c;
        } else {
            if (o + 4 >= outlen) {
                break;
            }
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}
