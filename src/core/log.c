/* log.c - stderr logging, one write(2) per line so threads do not interleave. */
#include "torii/log.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
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

/* 1 when stderr is the journal: lines start with a syslog priority "<N>" (sd-daemon(3)). */
static _Atomic int log_journal = 0;

/* The access log's descriptor: a fixed number, repointed with dup2() (atomic), so that
 * writers never see a closed descriptor. -1: stderr. */
static _Atomic int log_access_fd = -1;

/* Parse "<dev>:<ino>" (decimal, as systemd writes $JOURNAL_STREAM); 0 when malformed. */
static int log_parse_dev_ino(const char *js, unsigned long long *dev, unsigned long long *ino)
{
    char *end = NULL;

    errno = 0;
    *dev = strtoull(js, &end, 10);
    if (errno != 0 || end == js || *end != ':') {
        return 0;
    }
    js = end + 1;
    *ino = strtoull(js, &end, 10);
    return errno == 0 && end != js && *end == '\0';
}

void torii_log_detect_journal(void)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): torii never calls setenv, so getenv only reads */
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    struct stat st;

    if (js == NULL || !log_parse_dev_ino(js, &dev, &ino) || fstat(STDERR_FILENO, &st) != 0) {
        return;
    }
    atomic_store(&log_journal,
                 (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino);
}

int torii_log_access_open(const char *path, struct torii_errbuf *eb)
{
    int cur = atomic_load(&log_access_fd);
    int fd = path != NULL ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)
                          : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int rc = TORII_OK;

    if (fd < 0) {
        return torii_errf(eb, TORII_EIO, "access_log.path: cannot open %s: %s",
                          path != NULL ? path : "stderr", torii_errno_text(errno).s);
    }
    if (cur < 0) {
        atomic_store(&log_access_fd, fd);
        return TORII_OK;
    }
    if (dup2(fd, cur) < 0 || fcntl(cur, F_SETFD, FD_CLOEXEC) != 0) {
        rc = torii_errf(eb, TORII_EIO, "access_log.path: cannot switch to %s: %s",
                        path != NULL ? path : "stderr", torii_errno_text(errno).s);
    }
    (void)close(fd);
    return rc;
}

void torii_log_access_write(const char *line, size_t len)
{
    int fd = atomic_load(&log_access_fd);

    /* One write per line: lines of concurrent workers never interleave. */
    if (write(fd >= 0 ? fd : STDERR_FILENO, line, len) < 0) {
        return;
    }
}

void torii_log_access_close(void)
{
    int fd = atomic_exchange(&log_access_fd, -1);

    if (fd >= 0) {
        (void)fsync(fd);
        (void)close(fd);
    }
}

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
    n = 0;
    if (atomic_load(&log_journal)) {
        static const char prio[] = {'3', '4', '5', '6', '7'}; /* LOG_ERR .. LOG_DEBUG */
        line[n++] = '<';
        line[n++] = prio[lvl];
        line[n++] = '>';
    }
    n += strftime(line + n, sizeof(line) - n, "%Y-%m-%dT%H:%M:%S", &tm);
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
        w = snprintf(line + n, sizeof(line) - n, ": %s", torii_errno_text(errnum).s);
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
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): start-up only, before other threads call exit */
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
