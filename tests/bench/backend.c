/* backend.c - torii-backend: a small keep-alive HTTP/1.1 origin server for the proxy's
 * integration tests and benchmarks. One thread per connection, blocking I/O.
 *   GET  /echo          request head as JSON {"method","path","version","headers":[[n,v]...]}
 *   GET  /bytes/N       N bytes (Content-Length)
 *   GET  /chunked/N     N bytes, chunked, with a trailer
 *   GET  /eof/N         N bytes, close-delimited (no framing)
 *   *    /upload        reads the body (Content-Length or chunked):
 *                       {"len":N,"sha256":"...","trailers":"name: value|..."}
 *   GET  /hints/N       N interim 103 Early Hints responses (Link: </hint-I.css>), then 200
 *   GET  /sleep/MS      waits MS milliseconds, then 200
 *   GET  /reset         promises 1 MB, sends 1000 bytes, then resets the connection
 *   GET  /status/N      answers status N with no body
 *   GET  /close         answers with Connection: close
 *   *    /early         answers 200 right after the head, then reads the body (an origin
 *                       rejecting an upload early)
 *   GET  /badframe      invalid framing (Content-Length with Transfer-Encoding); then logs
 *                       "EOF /badframe" when the client closes the connection within 5 s
 *   GET  /stats         {"connections":N,"requests":N}
 * Usage: torii-backend PORT [REQUEST_LOG]   (one line per request: "METHOD PATH") */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define BK_HEAD_MAX 65536

static atomic_ulong bk_conns;    /* any thread */
static atomic_ulong bk_requests; /* any thread */
static FILE *bk_log;             /* any thread (stdio locks) */

struct bk_conn {
    int fd;
    char buf[BK_HEAD_MAX];
    size_t len; /* bytes in buf */
};

static int bk_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read more bytes into the buffer; 0 on EOF, -1 on error. */
static ssize_t bk_fill(struct bk_conn *c)
{
    ssize_t r;

    if (c->len == sizeof(c->buf)) {
        return -1;
    }
    do {
        r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    } while (r < 0 && errno == EINTR);
    if (r > 0) {
        c->len += (size_t)r;
    }
    return r;
}

static void bk_consume(struct bk_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Read exactly n body bytes (from the buffer first), feeding the digest. */
static int bk_read_body(struct bk_conn *c, uint64_t n, EVP_MD_CTX *md)
{
    while (n > 0) {
        size_t take;
        if (c->len == 0 && bk_fill(c) <= 0) {
            return -1;
        }
        take = c->len < n ? c->len : (size_t)n;
        (void)EVP_DigestUpdate(md, c->buf, take);
        bk_consume(c, take);
        n -= take;
    }
    return 0;
}

/* One CRLF-terminated line from the buffer into line (NUL-terminated). */
static int bk_read_line(struct bk_conn *c, char *line, size_t cap)
{
    for (;;) {
        char *e = memchr(c->buf, '\n', c->len);
        if (e != NULL) {
            size_t n = (size_t)(e - c->buf) + 1;
            size_t l = n >= 2 ? n - 2 : 0;
            if (l >= cap) {
                return -1;
            }
            memcpy(line, c->buf, l);
            line[l] = '\0';
            bk_consume(c, n);
            return 0;
        }
        if (bk_fill(c) <= 0) {
            return -1;
        }
    }
}

/* A trailer line appended to trl ("|" between lines; quotes and backslashes dropped). */
static void bk_trailer_add(char *trl, size_t cap, const char *line)
{
    size_t at = strlen(trl);

    if (at > 0 && at + 1 < cap) {
        trl[at++] = '|';
    }
    for (; *line != '\0' && at + 1 < cap; line++) {
        if (*line != '"' && *line != '\\') {
            trl[at++] = *line;
        }
    }
    trl[at] = '\0';
}

static int bk_read_chunked(struct bk_conn *c, EVP_MD_CTX *md, uint64_t *total, char *trl,
                           size_t cap)
{
    char line[1024];

    for (;;) {
        unsigned long long sz;
        char *end = NULL;
        if (bk_read_line(c, line, sizeof(line)) != 0) {
            return -1;
        }
        sz = strtoull(line, &end, 16);
        if (end == line) {
            return -1;
        }
        if (sz == 0) {
            break;
        }
        if (bk_read_body(c, sz, md) != 0 || bk_read_line(c, line, sizeof(line)) != 0) {
            return -1;
        }
        *total += sz;
    }
    do { /* trailers */
        if (bk_read_line(c, line, sizeof(line)) != 0) {
            return -1;
        }
        if (line[0] != '\0') {
            bk_trailer_add(trl, cap, line);
        }
    } while (line[0] != '\0');
    return 0;
}

static void bk_json_str(FILE *f, const char *s, size_t n)
{
    (void)fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            (void)fprintf(f, "\\%c", ch);
        } else if (ch < 0x20 || ch >= 0x7f) {
            (void)fprintf(f, "\\u%04x", ch);
        } else {
            (void)fputc(ch, f);
        }
    }
    (void)fputc('"', f);
}

static int bk_respond(int fd, int status, const char *extra, const char *body, size_t len,
                      int close)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nContent-Type: application/json\r\n"
                     "%s%s\r\n",
                     status, len, extra, close ? "Connection: close\r\n" : "");
    if (n <= 0 || bk_write_all(fd, head, (size_t)n) != 0) {
        return -1;
    }
    return len > 0 ? bk_write_all(fd, body, len) : 0;
}

static int bk_send_pattern(int fd, uint64_t n, int chunked)
{
    static char block[16384];
    char sz[32];

    if (block[0] == '\0') {
        for (size_t i = 0; i < sizeof(block); i++) {
            block[i] = (char)('a' + i % 26);
        }
    }
    while (n > 0) {
        size_t k = n < sizeof(block) ? (size_t)n : sizeof(block);
        if (chunked) {
            int l = snprintf(sz, sizeof(sz), "%zx\r\n", k);
            if (bk_write_all(fd, sz, (size_t)l) != 0) {
                return -1;
            }
        }
        if (bk_write_all(fd, block, k) != 0 || (chunked && bk_write_all(fd, "\r\n", 2) != 0)) {
            return -1;
        }
        n -= k;
    }
    if (chunked) {
        return bk_write_all(fd, "0\r\nX-Trailer: done\r\n\r\n", 23);
    }
    return 0;
}

static const char *bk_header(char **names, char **vals, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return vals[i];
        }
    }
    return NULL;
}

static char *bk_find_end(char *b, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') {
            return b + i;
        }
    }
    return NULL;
}

/* Serve one request; returns 1 to keep the connection, 0 to close. */
static int bk_serve_one(struct bk_conn *c)
{
    char *names[200];
    char *vals[200];
    size_t nh = 0;
    char *end;
    char *line;
    char *next;
    char method[16];
    char path[2048];
    char version[16];
    int keep;
    const char *te;
    const char *cl;
    const char *conn;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint64_t body = 0;
    unsigned char dig[32];
    unsigned int dl = 0;
    char *out = NULL;
    size_t outlen = 0;
    FILE *f;
    int rc = 0;
    size_t head_len;
    int is_chunked;
    int has_cl;
    uint64_t clen;
    char trl[512] = "";

    while ((end = bk_find_end(c->buf, c->len)) == NULL) {
        if (bk_fill(c) <= 0) {
            goto out;
        }
    }
    head_len = (size_t)(end - c->buf) + 4;
    *end = '\0';
    line = c->buf;
    next = strstr(line, "\r\n");
    if (next != NULL) {
        *next = '\0';
        next += 2;
    }
    if (sscanf(line, "%15s %2047s %15s", method, path, version) != 3) {
        goto out;
    }
    while (next != NULL && *next != '\0' && nh < 200) {
        char *e = strstr(next, "\r\n");
        char *colon;
        if (e != NULL) {
            *e = '\0';
        }
        colon = strchr(next, ':');
        if (colon != NULL) {
            *colon = '\0';
            names[nh] = next;
            vals[nh] = colon + 1;
            while (*vals[nh] == ' ') {
                vals[nh]++;
            }
            nh++;
        }
        next = e != NULL ? e + 2 : NULL;
    }
    atomic_fetch_add(&bk_requests, 1);
    if (bk_log != NULL) {
        (void)fprintf(bk_log, "%s %s\n", method, path);
        (void)fflush(bk_log);
    }
    conn = bk_header(names, vals, nh, "Connection");
    keep = strcmp(version, "HTTP/1.1") == 0 && !(conn != NULL && strcasecmp(conn, "close") == 0);
    te = bk_header(names, vals, nh, "Transfer-Encoding");
    cl = bk_header(names, vals, nh, "Content-Length");
    is_chunked = te != NULL;
    has_cl = cl != NULL;
    clen = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    /* The echo body is built before the head buffer is reused by the body reader. */
    f = open_memstream(&out, &outlen);
    (void)fprintf(f, "{\"method\":");
    bk_json_str(f, method, strlen(method));
    (void)fprintf(f, ",\"path\":");
    bk_json_str(f, path, strlen(path));
    (void)fprintf(f, ",\"version\":");
    bk_json_str(f, version, strlen(version));
    (void)fprintf(f, ",\"headers\":[");
    for (size_t i = 0; i < nh; i++) {
        (void)fprintf(f, "%s[", i ? "," : "");
        bk_json_str(f, names[i], strlen(names[i]));
        (void)fputc(',', f);
        bk_json_str(f, vals[i], strlen(vals[i]));
        (void)fputc(']', f);
    }
    (void)fprintf(f, "]}");
    (void)fclose(f);
    bk_consume(c, head_len);
    if (strcmp(path, "/early") == 0
        && bk_respond(c->fd, 200, "", "{\"early\":true}", 14, !keep) != 0) {
        goto out;
    }
    (void)EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    if (is_chunked) {
        if (bk_read_chunked(c, md, &body, trl, sizeof(trl)) != 0) {
            goto out;
        }
    } else if (has_cl) {
        body = clen;
        if (bk_read_body(c, body, md) != 0) {
            goto out;
        }
    }
    (void)EVP_DigestFinal_ex(md, dig, &dl);
    if (strcmp(path, "/upload") == 0) {
        char res[800];
        int n = snprintf(res, sizeof(res), "{\"len\":%llu,\"sha256\":\"", (unsigned long long)body);
        for (unsigned i = 0; i < dl; i++) {
            n += snprintf(res + n, sizeof(res) - (size_t)n, "%02x", dig[i]);
        }
        n += snprintf(res + n, sizeof(res) - (size_t)n, "\",\"trailers\":\"%s\"}", trl);
        rc = bk_respond(c->fd, 200, "", res, (size_t)n, !keep) == 0 && keep;
    } else if (strncmp(path, "/bytes/", 7) == 0 || strncmp(path, "/chunked/", 9) == 0) {
        int ch = path[1] == 'c';
        uint64_t n = strtoull(path + (ch ? 9 : 7), NULL, 10);
        char head[256];
        int l = ch ? snprintf(head, sizeof(head),
                              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              "Content-Type: application/octet-stream\r\n%s\r\n",
                              keep ? "" : "Connection: close\r\n")
                   : snprintf(head, sizeof(head),
                              "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n"
                              "Content-Type: application/octet-stream\r\n%s\r\n",
                              (unsigned long long)n, keep ? "" : "Connection: close\r\n");
        if (bk_write_all(c->fd, head, (size_t)l) == 0
            && (strcmp(method, "HEAD") == 0 || bk_send_pattern(c->fd, n, ch) == 0)) {
            rc = keep;
        }
    } else if (strncmp(path, "/eof/", 5) == 0) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        if (bk_write_all(c->fd, head, sizeof(head) - 1) == 0) {
            (void)bk_send_pattern(c->fd, strtoull(path + 5, NULL, 10), 0);
        }
        rc = 0;
    } else if (strncmp(path, "/sleep/", 7) == 0) {
        long ms = strtol(path + 7, NULL, 10);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        (void)nanosleep(&ts, NULL);
        rc = bk_respond(c->fd, 200, "", "{\"slept\":true}", 14, !keep) == 0 && keep;
    } else if (strcmp(path, "/reset") == 0) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)bk_write_all(c->fd, head, sizeof(head) - 1);
        (void)bk_send_pattern(c->fd, 1000, 0);
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        rc = 0;
    } else if (strncmp(path, "/status/", 8) == 0) {
        char head[128];
        int l = snprintf(head, sizeof(head), "HTTP/1.1 %ld X\r\n\r\n", strtol(path + 8, NULL, 10));
        rc = bk_write_all(c->fd, head, (size_t)l) == 0 && keep;
    } else if (strcmp(path, "/early") == 0) {
        rc = keep; /* answered before the body */
    } else if (strncmp(path, "/hints/", 7) == 0) {
        long k = strtol(path + 7, NULL, 10);
        rc = 1;
        for (long i = 0; rc && i < k && i < 100; i++) {
            char hint[96];
            int l = snprintf(
                hint, sizeof(hint),
                "HTTP/1.1 103 Early Hints\r\nLink: </hint-%ld.css>; rel=preload\r\n\r\n", i);
            rc = bk_write_all(c->fd, hint, (size_t)l) == 0;
        }
        rc = rc && bk_respond(c->fd, 200, "", "{\"hinted\":true}", 15, !keep) == 0 && keep;
    } else if (strcmp(path, "/badframe") == 0) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
        char b[256];
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (bk_write_all(c->fd, head, sizeof(head) - 1) == 0 && recv(c->fd, b, sizeof(b), 0) == 0
            && bk_log != NULL) {
            (void)fprintf(bk_log, "EOF /badframe\n");
            (void)fflush(bk_log);
        }
        rc = 0;
    } else if (strcmp(path, "/close") == 0) {
        (void)bk_respond(c->fd, 200, "", "{}", 2, 1);
        rc = 0;
    } else if (strcmp(path, "/stats") == 0) {
        char res[128];
        int n = snprintf(res, sizeof(res), "{\"connections\":%lu,\"requests\":%lu}",
                         atomic_load(&bk_conns), atomic_load(&bk_requests));
        rc = bk_respond(c->fd, 200, "", res, (size_t)n, !keep) == 0 && keep;
    } else {
        rc = bk_respond(c->fd, 200, "", out, outlen, !keep) == 0 && keep;
    }
out:
    free(out);
    EVP_MD_CTX_free(md);
    return rc;
}

static void *bk_conn_main(void *arg)
{
    struct bk_conn *c = arg;

    while (bk_serve_one(c)) {
    }
    (void)close(c->fd);
    free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    int one = 1;
    int lfd;

    if (argc < 2) {
        (void)fprintf(stderr, "usage: torii-backend PORT [REQUEST_LOG]\n");
        return 2;
    }
    (void)signal(SIGPIPE, SIG_IGN);
    if (argc > 2) {
        bk_log = fopen(argv[2], "a");
    }
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0) {
        perror("torii-backend: listen");
        return 1;
    }
    for (;;) {
        pthread_t th;
        pthread_attr_t at;
        struct bk_conn *c;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        atomic_fetch_add(&bk_conns, 1);
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            (void)close(fd);
            continue;
        }
        c->fd = fd;
        (void)pthread_attr_init(&at);
        (void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        (void)pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&th, &at, bk_conn_main, c) != 0) {
            (void)close(fd);
            free(c);
        }
        (void)pthread_attr_destroy(&at);
    }
}
