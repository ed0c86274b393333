/* handover.c - binary upgrade: the running torii hands its listening sockets to its successor
 * over a unix socket in the data dir (SCM_RIGHTS), so no connection waits in a socket that
 * closes. Protocol (SOCK_SEQPACKET, one message each):
 *   new -> old  "TAKEOVER <pid>"
 *   old -> new  "SOCK <kind> <slot> <addr>" with one descriptor, per listening socket
 *   old -> new  "END <n>"
 *   new -> old  "SERVING"          (the new workers accept on them)
 *   old -> new  "DRAINING"         (the old one has stopped accepting and drains)
 * Every wait is bounded (TORII_HANDOVER_TIMEOUT_S); a failure before SERVING leaves the old
 * process serving as before. */
#include "torii/handover.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "torii/mem.h"

#define HO_MSG_MAX 512

static int ho_addr(const char *data_dir, struct sockaddr_un *sun, struct torii_errbuf *eb)
{
    int n;

    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", data_dir, TORII_HANDOVER_SOCK);
    if (n < 0 || (size_t)n >= sizeof(sun->sun_path)) {
        return torii_errf(eb, TORII_EINVAL, "upgrade: data_dir %s is too long for a unix socket",
                          data_dir);
    }
    return TORII_OK;
}

/* A decimal number in [min, max] at the start of s; the text after it, or NULL when there is
 * no such number. */
static const char *ho_num(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || v < min || v > max) {
        return NULL;
    }
    *out = v;
    return end;
}

static void ho_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = TORII_HANDOVER_TIMEOUT_S};

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int torii_handover_listen(const char *data_dir, int *out, struct torii_errbuf *eb)
{
    struct sockaddr_un sun;
    int fd = -1;
    int rc = TORII_OK;

    /* Exclusivity is the data-dir lock's (daemon.h): the caller holds it, or is the successor
     * replacing the socket of the process it took over. A leftover socket is replaced. */
    TORII_TRY(ho_addr(data_dir, &sun, eb));
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    TORII_ENSURE(fd >= 0,
                 torii_errf(eb, TORII_EIO, "upgrade: socket: %s", torii_errno_text(errno).s));
    if (unlink(sun.sun_path) != 0 && errno != ENOENT) {
        rc = torii_errf(eb, TORII_EIO, "upgrade: cannot remove %s: %s", sun.sun_path,
                        torii_errno_text(errno).s);
        goto out;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(sun.sun_path, 0600) != 0
        || listen(fd, 4) != 0) {
        rc = torii_errf(eb, TORII_EIO, "upgrade: cannot listen on %s: %s", sun.sun_path,
                        torii_errno_text(errno).s);
        goto out;
    }
    *out = fd;
    fd = -1;
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

/* One message, with at most one descriptor (fd < 0: none). */
static int ho_send(int s, const char *msg, int fd, struct torii_errbuf *eb)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)msg, .iov_len = strlen(msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    memset(&u, 0, sizeof(u));
    if (fd >= 0) {
        struct cmsghdr *c;
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    if (sendmsg(s, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
        return torii_errf(eb, TORII_EIO, "upgrade: send: %s", torii_errno_text(errno).s);
    }
    return TORII_OK;
}

/* One message into buf (NUL-terminated), and its descriptor in *fd (-1: none). */
static int ho_recv(int s, char *buf, size_t cap, int *fd, struct torii_errbuf *eb)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c;
    ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);

    *fd = -1;
    if (n <= 0) {
        return torii_errf(eb, TORII_EIO, "upgrade: %s",
                          n == 0 ? "the other process closed the connection"
                                 : torii_errno_text(errno).s);
    }
    buf[n] = '\0';
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
            && c->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(fd, CMSG_DATA(c), sizeof(int));
        }
    }
    return TORII_OK;
}

int torii_handover_accept(int lfd, int *conn, long *peer_pid, struct torii_errbuf *eb)
{
    char msg[HO_MSG_MAX];
    int s = accept(lfd, NULL, NULL);
    int fd = -1;
    const char *end = NULL;
    int rc = TORII_OK;

    TORII_ENSURE(s >= 0,
                 torii_errf(eb, TORII_EIO, "upgrade: accept: %s", torii_errno_text(errno).s));
    /* Blocking I/O, bounded by the timeouts; never inherited by an exec'd successor. */
    if (fcntl(s, F_SETFD, FD_CLOEXEC) != 0 || fcntl(s, F_SETFL, 0) != 0) {
        rc = torii_errf(eb, TORII_EIO, "upgrade: fcntl: %s", torii_errno_text(errno).s);
        goto out;
    }
    ho_timeouts(s);
    TORII_TRY(ho_recv(s, msg, sizeof(msg), &fd, eb));
    if (fd >= 0) {
        (void)close(fd);
    }
    end = strncmp(msg, "TAKEOVER ", 9) == 0 ? ho_num(msg + 9, 1, LONG_MAX, peer_pid) : NULL;
    if (end == NULL || *end != '\0') {
        rc = torii_errf(eb, TORII_EINVAL, "upgrade: unexpected request \"%.32s\"", msg);
        goto out;
    }
    *conn = s;
    s = -1;
out:
    if (s >= 0) {
        (void)close(s);
    }
    return rc;
}

int torii_handover_give(int conn, const struct torii_listen_sock *socks, size_t n,
                        struct torii_errbuf *eb)
{
    char msg[HO_MSG_MAX];
    int fd = -1;
    int rc = TORII_OK;

    for (size_t i = 0; i < n; i++) {
        (void)snprintf(msg, sizeof(msg), "SOCK %d %u %s", socks[i].kind, socks[i].slot,
                       socks[i].addr);
        TORII_TRY(ho_send(conn, msg, socks[i].fd, eb));
    }
    (void)snprintf(msg, sizeof(msg), "END %zu", n);
    TORII_TRY(ho_send(conn, msg, -1, eb));
    TORII_TRY(ho_recv(conn, msg, sizeof(msg), &fd, eb));
    TORII_ENSURE(strcmp(msg, "SERVING") == 0,
                 torii_errf(eb, TORII_EINVAL, "upgrade: unexpected answer \"%.32s\"", msg));
    TORII_TRY(ho_send(conn, "DRAINING", -1, eb));
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

/* "SOCK <kind> <slot> <addr>": kind and slot into ls; the address text, or NULL. */
static const char *ho_sock_fields(const char *msg, struct torii_listen_sock *ls)
{
    const char *p = strncmp(msg, "SOCK ", 5) == 0 ? msg + 5 : NULL;
    long kind = 0;
    long slot = 0;

    p = p != NULL ? ho_num(p, INT_MIN, INT_MAX, &kind) : NULL;
    p = p != NULL && *p == ' ' ? ho_num(p + 1, 0, UINT_MAX, &slot) : NULL;
    if (p == NULL || *p != ' ') {
        return NULL;
    }
    while (*p == ' ') {
        p++;
    }
    ls->kind = (int)kind;
    ls->slot = (unsigned)slot;
    return p;
}

static int ho_take_one(const char *msg, int fd, struct torii_listen_socks *got,
                       struct torii_errbuf *eb)
{
    struct torii_listen_sock *v = (struct torii_listen_sock *)(uintptr_t)got->v;
    struct torii_listen_sock ls = {0};
    const char *addr = ho_sock_fields(msg, &ls);

    if (fd < 0 || addr == NULL || strlen(addr) >= sizeof(ls.addr)) {
        if (fd >= 0) {
            (void)close(fd);
        }
        return torii_errf(eb, TORII_EINVAL, "upgrade: bad socket message \"%.64s\"", msg);
    }
    (void)snprintf(ls.addr, sizeof(ls.addr), "%s", addr);
    ls.fd = fd;
    v = torii_xrealloc(v, (got->n + 1) * sizeof(*v));
    v[got->n++] = ls;
    got->v = v;
    return TORII_OK;
}

/* Connect to the running torii's handover socket in data_dir; *out is the connection. */
static int ho_connect(const char *data_dir, int *out, struct torii_errbuf *eb)
{
    struct sockaddr_un sun;
    int s = -1;
    int rc = TORII_OK;

    TORII_TRY(ho_addr(data_dir, &sun, eb));
    s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    TORII_ENSURE(s >= 0,
                 torii_errf(eb, TORII_EIO, "upgrade: socket: %s", torii_errno_text(errno).s));
    ho_timeouts(s);
    if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        rc = torii_errf(eb, TORII_EIO, "upgrade: no running torii at %s: %s", sun.sun_path,
                        torii_errno_text(errno).s);
        goto out;
    }
    *out = s;
    s = -1;
out:
    if (s >= 0) {
        (void)close(s);
    }
    return rc;
}

int torii_handover_take(const char *data_dir, int *conn, struct torii_listen_socks *got,
                        struct torii_errbuf *eb)
{
    char msg[HO_MSG_MAX];
    int s = -1;
    int fd = -1;
    int rc = TORII_OK;

    got->v = NULL;
    got->n = 0;
    TORII_TRY(ho_connect(data_dir, &s, eb));
    (void)snprintf(msg, sizeof(msg), "TAKEOVER %ld", (long)getpid());
    TORII_TRY(ho_send(s, msg, -1, eb));
    for (unsigned i = 0; i < TORII_HANDOVER_MAX_SOCKS; i++) {
        TORII_TRY(ho_recv(s, msg, sizeof(msg), &fd, eb));
        if (strncmp(msg, "END ", 4) == 0) {
            break;
        }
        TORII_TRY(ho_take_one(msg, fd, got, eb));
        fd = -1;
    }
    *conn = s;
    s = -1;
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    if (s >= 0) {
        (void)close(s);
    }
    if (rc != TORII_OK) {
        torii_handover_socks_free(got);
    }
    return rc;
}

int torii_handover_serving(int conn, struct torii_errbuf *eb)
{
    char msg[HO_MSG_MAX];
    int fd = -1;
    int rc = TORII_OK;

    TORII_TRY(ho_send(conn, "SERVING", -1, eb));
    TORII_TRY(ho_recv(conn, msg, sizeof(msg), &fd, eb));
    TORII_ENSURE(strcmp(msg, "DRAINING") == 0,
                 torii_errf(eb, TORII_EINVAL, "upgrade: unexpected answer \"%.32s\"", msg));
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

void torii_handover_socks_free(struct torii_listen_socks *got)
{
    for (size_t i = 0; i < got->n; i++) {
        (void)close(got->v[i].fd);
    }
    free((void *)(uintptr_t)got->v);
    got->v = NULL;
    got->n = 0;
}
