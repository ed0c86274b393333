/* instance.c - sd_notify without libsystemd, the data-dir instance lock and the listen
 * address probe (one torii per data dir and per address). */
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_int.h"
#include "torii/log.h"

void torii_daemon_notify(const char *msg)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): torii never calls setenv, so getenv only reads */
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t plen;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@')
        || (plen = strlen(path)) >= sizeof(sun.sun_path)) {
        return;
    }
    memcpy(sun.sun_path, path, plen);
    if (sun.sun_path[0] == '@') {
        sun.sun_path[0] = '\0';
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        torii_log_errno(TORII_LOG_WARN, "daemon: sd_notify socket failed");
        return;
    }
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen))
        < 0) {
        torii_log_errno(TORII_LOG_WARN, "daemon: sd_notify failed");
    }
    (void)close(fd);
}

/* The pid recorded in a lock file held by another process ("?" when unreadable). */
static void daemon_lock_holder(int fd, char *out, size_t len)
{
    ssize_t n = pread(fd, out, len - 1, 0);
    size_t i = 0;

    if (n <= 0) {
        (void)snprintf(out, len, "?");
        return;
    }
    while (i < (size_t)n && out[i] >= '0' && out[i] <= '9') {
        i++;
    }
    out[i] = '\0';
    if (i == 0) {
        (void)snprintf(out, len, "?");
    }
}

static int daemon_lock_write_pid(int fd, const char *path, struct torii_errbuf *eb)
{
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != (ssize_t)n) {
        return torii_errf(eb, TORII_EIO, "cannot write the instance lock %s: %s", path,
                          torii_errno_text(errno).s);
    }
    return TORII_OK;
}

int torii_daemon_lock(struct torii_daemon *d, const char *data_dir, struct torii_errbuf *eb)
{
    char path[4096];
    char holder[32];
    int fd = -1;
    int rc = TORII_OK;
    int n = snprintf(path, sizeof(path), "%s/torii.lock", data_dir);

    TORII_ENSURE(n > 0 && (size_t)n < sizeof(path),
                 torii_errf(eb, TORII_EINVAL, "data dir path too long: %.64s...", data_dir));
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    TORII_ENSURE(fd >= 0, torii_errf(eb, TORII_EIO, "cannot open the instance lock %s: %s", path,
                                     torii_errno_text(errno).s));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err != EWOULDBLOCK) {
            rc = torii_errf(eb, TORII_EIO, "cannot lock %s: %s", path, torii_errno_text(err).s);
            goto out;
        }
        daemon_lock_holder(fd, holder, sizeof(holder));
        rc = torii_errf(eb, TORII_EPERM,
                        "data dir %s is in use by another torii (pid %s holds %s): one instance "
                        "per data dir",
                        data_dir, holder, path);
        goto out;
    }
    TORII_TRY(daemon_lock_write_pid(fd, path, eb));
    d->lock_fd = fd;
    fd = -1;
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

static int daemon_addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
}

int torii_daemon_probe_listen(const char *key, const char *addr, struct torii_errbuf *eb)
{
    struct sockaddr_storage ss;
    int sslen = 0;
    int one = 1;
    int fd = -1;
    int rc = TORII_OK;

    TORII_TRY(torii_config_parse_addr(addr, &ss, &sslen, eb));
    if (daemon_addr_port(&ss) == 0) {
        goto out;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TORII_ENSURE(fd >= 0, torii_errf(eb, TORII_EIO, "%s: socket(%s): %s", key, addr,
                                     torii_errno_text(errno).s));
    /* SO_REUSEADDR only: TIME_WAIT leftovers of a predecessor do not count, a listener does. */
    TORII_ENSURE(
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0,
        torii_errf(eb, TORII_EIO, "%s: setsockopt(%s): %s", key, addr, torii_errno_text(errno).s));
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0) {
        int err = errno;
        rc = torii_errf(eb, TORII_EIO,
                        err == EADDRINUSE
                            ? "%s: address %s is already in use (another torii or another server "
                              "listens there): %s"
                            : "%s: cannot bind %s: %s",
                        key, addr, torii_errno_text(err).s);
        goto out;
    }
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

int torii_daemon_lock_wait(struct torii_daemon *d, const char *data_dir, unsigned timeout_ms,
                           struct torii_errbuf *eb)
{
    const struct timespec step = {.tv_sec = 0, .tv_nsec = 50L * 1000 * 1000};
    unsigned waited = 0;
    int rc;

    while ((rc = torii_daemon_lock(d, data_dir, eb)) == TORII_EPERM && waited < timeout_ms) {
        (void)nanosleep(&step, NULL);
        waited += 50;
    }
    return rc;
}

void torii_daemon_unlock(struct torii_daemon *d)
{
    if (d != NULL && d->lock_fd >= 0) {
        (void)close(d->lock_fd); /* releases the flock */
        d->lock_fd = -1;
    }
}
