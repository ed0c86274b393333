/* hsload.c - a small TLS load generator for scripts/bench.sh: sequential connections, each a
 * full handshake (or a resumed one with -k), one HTTP/1.1 request, read the response, close.
 * Bounded by a connection count and a time limit. Loopback targets only.
 * usage: torii-hsload -p PORT [-h 127.0.0.1] [-n COUNT] [-t SECONDS] [-s SNI|-S FMT -r RANGE]
 *                     [-k [-1]] [-w] [-o OFFSET] [-q]
 *   -k offers the newest session on each connection; with -1 each ticket is used once (RFC
 *   8446 C.4, as browsers do): a session that brought no new ticket is not offered again, so
 *   resumed/connections is the server's resumption rate for such clients.
 *   -S "h%d.bench.test" -r 10000: random SNI per connection; with -w the names are taken in
 *   order from OFFSET (warm-up / first-use passes). Prints the mean connection time too; -q
 *   prints "connections errors seconds mean_conn_ms resumed". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

static double hs_now(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hs_connect(const char *host, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd;

    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        return -1;
    }
    /* Loopback only, by construction: refuse anything else. */
    if ((ntohl(sin.sin_addr.s_addr) >> 24) != 127) {
        (void)fprintf(stderr, "hsload: refusing non-loopback target %s\n", host);
        exit(2);
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        (void)close(fd);
        return -1;
    }
    return fd;
}

/* 1 when both sessions carry the same ticket (or neither has one). */
static int hs_same_ticket(const SSL_SESSION *a, const SSL_SESSION *b)
{
    const unsigned char *ta = NULL;
    const unsigned char *tb = NULL;
    size_t la = 0;
    size_t lb = 0;

    SSL_SESSION_get0_ticket(a, &ta, &la);
    SSL_SESSION_get0_ticket(b, &tb, &lb);
    return la == lb && (la == 0 || memcmp(ta, tb, la) == 0);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *sni = NULL;
    const char *fmt = NULL;
    int port = 0;
    long count = 1000;
    long range = 1;
    double limit = 10.0;
    int resume = 0;
    int once = 0;
    int quiet = 0;
    int seq = 0;
    long offset = 0;
    double total_conn_s = 0;
    long done = 0;
    long errors = 0;
    long resumed = 0;
    SSL_SESSION *sess = NULL;
    SSL_CTX *ctx;
    double t0;
    double el;
    int opt;

    while ((opt = getopt(argc, argv, "h:p:n:t:s:S:r:k1qwo:")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 't':
            limit = atof(optarg);
            break;
        case 's':
            sni = optarg;
            break;
        case 'S':
            fmt = optarg;
            break;
        case 'r':
            range = atol(optarg);
            break;
        case 'k':
            resume = 1;
            break;
        case '1':
            once = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'w':
            seq = 1;
            break;
        case 'o':
            offset = atol(optarg);
            break;
        default:
            (void)fprintf(stderr,
                          "usage: %s -p PORT [-n N] [-t S] [-s SNI|-S FMT -r N] [-k [-1]]\n",
                          argv[0]);
            return 2;
        }
    }
    if (port <= 0 || count <= 0 || range <= 0) {
        (void)fprintf(stderr, "hsload: -p PORT is required\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (!resume) {
        (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        (void)SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    t0 = hs_now();
    while (done < count && hs_now() - t0 < limit) {
        char name[256];
        char req[512];
        char buf[4096];
        double c0 = hs_now();
        int fd = hs_connect(host, port);
        SSL *ssl;
        int n;

        if (fd < 0) {
            errors++;
            continue;
        }
        ssl = SSL_new(ctx);
        if (ssl == NULL) {
            (void)close(fd);
            return 1;
        }
        (void)SSL_set_fd(ssl, fd);
        if (fmt != NULL) {
            /* FMT holds one "%d", replaced by a random number below RANGE. */
            const char *pct = strstr(fmt, "%d");
            unsigned int r;
            (void)RAND_bytes((unsigned char *)&r, sizeof(r));
            if (seq) {
                r = (unsigned int)((offset + done) % range);
            }
            if (pct == NULL) {
                (void)snprintf(name, sizeof(name), "%s", fmt);
            } else {
                (void)snprintf(name, sizeof(name), "%.*s%u%s", (int)(pct - fmt), fmt,
                               r % (unsigned)range, pct + 2);
            }
        } else {
            (void)snprintf(name, sizeof(name), "%s", sni ? sni : "localhost");
        }
        if (sni != NULL || fmt != NULL) {
            (void)SSL_set_tlsext_host_name(ssl, name);
        }
        if (resume && sess != NULL) {
            (void)SSL_set_session(ssl, sess);
        }
        if (SSL_connect(ssl) != 1) {
            errors++;
            ERR_clear_error();
            SSL_free(ssl);
            (void)close(fd);
            continue;
        }
        n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     name);
        if (SSL_write(ssl, req, n) != n) {
            errors++;
        } else {
            while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
            }
        }
        total_conn_s += hs_now() - c0;
        if (SSL_session_reused(ssl)) {
            resumed++;
        }
        if (resume) {
            SSL_SESSION *s = SSL_get1_session(ssl);
            if (once && s != NULL && sess != NULL && hs_same_ticket(s, sess)) {
                SSL_SESSION_free(s); /* no new ticket: the used one is not offered again */
                s = NULL;
            }
            if (s != NULL || once) {
                SSL_SESSION_free(sess);
                sess = s;
            }
        }
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
        (void)close(fd);
        ERR_clear_error();
        done++;
    }
    el = hs_now() - t0;
    if (!quiet) {
        (void)printf("connections=%ld errors=%ld resumed=%ld seconds=%.3f rate=%.1f "
                     "mean_conn_ms=%.3f\n",
                     done, errors, resumed, el, (double)done / el,
                     done ? total_conn_s * 1000.0 / (double)done : 0.0);
    } else {
        (void)printf("%ld %ld %.3f %.3f %ld\n", done, errors, el,
                     done ? total_conn_s * 1000.0 / (double)done : 0.0, resumed);
    }
    SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
    return errors > done ? 1 : 0;
}
