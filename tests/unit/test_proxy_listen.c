/* test_proxy_listen.c - the options of the proxy's listening sockets
 * (torii_proxy__listen_opts): TCP_NODELAY on both listeners and on the sockets they accept
 * (inherited from the listener: no connection sets it itself), TCP_DEFER_ACCEPT on the https
 * listener only, a plain listener that still hands over a client that has sent nothing, and
 * the error that names the socket. Real loopback sockets; every wait is a bounded poll(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy_int.h"

#define WAIT_MS 10000 /* generous: a loaded machine answers far below */

static int sockopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* A listener on 127.0.0.1:0 with the proxy's options (tls: the https listener). */
static int listener(int tls, struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    struct torii_errbuf eb = {{0}};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(torii_proxy__listen_opts(fd, tls, "127.0.0.1:test", &eb), TORII_OK);
    return fd;
}

static int client(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    return fd;
}

/* The next connection of lfd, waited for up to WAIT_MS. */
static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int fd;

    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    return fd;
}

static void test_https_listener_defers_and_passes_nodelay(void **state)
{
    struct sockaddr_in addr;
    int lfd = listener(1, &addr);
    int c;
    int s;
    char b = 0;

    (void)state;
    assert_int_equal(sockopt_int(lfd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_true(sockopt_int(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT) > 0);
    /* A client that speaks first (a ClientHello) is handed over with its bytes. */
    c = client(&addr);
    assert_int_equal(send(c, "\x16", 1, MSG_NOSIGNAL), 1);
    s = accept_one(lfd);
    assert_int_equal(sockopt_int(s, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(recv(s, &b, 1, MSG_DONTWAIT), 1);
    assert_int_equal(b, 0x16);
    (void)close(s);
    (void)close(c);
    (void)close(lfd);
}

static void test_http_listener_hands_over_silent_clients(void **state)
{
    struct sockaddr_in addr;
    int lfd = listener(0, &addr);
    int c;
    int s;

    (void)state;
    assert_int_equal(sockopt_int(lfd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(sockopt_int(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT), 0);
    c = client(&addr); /* sends nothing: counted and timed by the proxy from the connect */
    s = accept_one(lfd);
    assert_int_equal(sockopt_int(s, IPPROTO_TCP, TCP_NODELAY), 1);
    (void)close(s);
    (void)close(c);
    (void)close(lfd);
}

static void test_listen_opts_failure_names_the_socket(void **state)
{
    struct torii_errbuf eb = {{0}};
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(torii_proxy__listen_opts(p[0], 1, "127.0.0.1:8443", &eb), TORII_EIO);
    assert_non_null(strstr(eb.msg, "127.0.0.1:8443"));
    (void)close(p[0]);
    (void)close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_listener_defers_and_passes_nodelay),
        cmocka_unit_test(test_http_listener_hands_over_silent_clients),
        cmocka_unit_test(test_listen_opts_failure_names_the_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
