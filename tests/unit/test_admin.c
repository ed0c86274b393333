/* test_admin.c - the admin server over real loopback sockets: authentication (none, Bearer,
 * Basic, Otoroshi headers, wrong secrets), 404 for unknown paths after auth, the token file
 * (created 0600, reused on restart), bind errors reported by torii_admin_start, and the
 * reply helpers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "admin_int.h" /* module-internal: reply helpers */
#include "torii/admin.h"
#include "torii/conf.h"
#include "torii/log.h"

#define TOKEN "test-token-0123456789abcdef"

struct afx {
    char dir[64];
    char listen[64];
    int port;
    struct torii_config cfg;
    struct torii_admin *adm;
};

static int free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    port = ntohs(sin.sin_port);
    (void)close(fd);
    return port;
}

static int afx_setup(void **state)
{
    struct afx *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/torii-admin-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    f->port = free_port();
    (void)snprintf(f->listen, sizeof(f->listen), "127.0.0.1:%d", f->port);
    f->cfg.data_dir = f->dir;
    f->cfg.admin_listen = f->listen;
    f->cfg.admin_client_id = (char *)(uintptr_t) "admin";
    f->cfg.admin_max_body = 64 * 1024;
    f->cfg.header_timeout_ms = 2000;
    f->cfg.idle_timeout_ms = 2000;
    *state = f;
    return 0;
}

static int afx_teardown(void **state)
{
    struct afx *f = *state;
    char path[128];

    torii_admin_stop(f->adm);
    (void)snprintf(path, sizeof(path), "%s/admin.token", f->dir);
    (void)unlink(path);
    (void)rmdir(f->dir);
    free(f);
    return 0;
}

static void afx_start(struct afx *f)
{
    struct torii_errbuf eb = {{0}};
    int rc = torii_admin_start(&(struct torii_admin_opts){.cfg = &f->cfg}, &f->adm, &eb);
    if (rc != TORII_OK) {
        print_error("torii_admin_start: %s\n", eb.msg);
    }
    assert_int_equal(rc, TORII_OK);
}

/* One request on a fresh connection; returns the status, body copied into body. */
static int http_call(int port, const char *req, char *body, size_t bodylen)
{
    struct sockaddr_in sin;
    struct timeval tv = {5, 0};
    char buf[8192];
    size_t len = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int status = -1;
    const char *hend;
    const char *cl;

    assert_true(fd >= 0);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        hend = strstr(buf, "\r\n\r\n");
        cl = strstr(buf, "Content-Length: ");
        if (hend != NULL && cl != NULL && cl < hend
            && (size_t)(hend + 4 - buf) + (size_t)strtoul(cl + 16, NULL, 10) <= len) {
            break;
        }
    }
    (void)close(fd);
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
        return -1;
    }
    hend = strstr(buf, "\r\n\r\n");
    (void)snprintf(body, bodylen, "%s", hend != NULL ? hend + 4 : "");
    assert_non_null(strstr(buf, "Content-Type: application/json\r\n"));
    return status;
}

static void test_admin_no_credentials_401(void **state)
{
    struct afx *f = *state;
    char body[1024];

    f->cfg.admin_token = (char *)(uintptr_t)TOKEN;
    afx_start(f);
    assert_int_equal(
        http_call(f->port, "GET /api/nope?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", body, sizeof(body)),
        401);
    assert_string_equal(body, "{\"error\":\"You're not authorized - GET /api/nope\"}");
    /* Peer bytes in the path are escaped, never echoed raw. */
    assert_int_equal(
        http_call(f->port, "GET /a%22b\"c HTTP/1.1\r\nHost: a\r\n\r\n", body, sizeof(body)), 401);
    assert_string_equal(body, "{\"error\":\"You're not authorized - GET /a%22b\\\\x22c\"}");
}

static void test_admin_three_auth_forms_pass(void **state)
{
    struct afx *f = *state;
    char body[1024];
    char req[512];
    /* base64("admin:" TOKEN) */
    static const char basic[] = "YWRtaW46dGVzdC10b2tlbi0wMTIzNDU2Nzg5YWJjZGVm";

    f->cfg.admin_token = (char *)(uintptr_t)TOKEN;
    afx_start(f);
    assert_int_equal(http_call(f->port,
                               "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN
                               "\r\n\r\n",
                               body, sizeof(body)),
                     404);
    assert_string_equal(body, "{\"error\":\"not found\"}");
    (void)snprintf(req, sizeof(req),
                   "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Basic %s\r\n\r\n", basic);
    assert_int_equal(http_call(f->port, req, body, sizeof(body)), 404);
    assert_int_equal(http_call(f->port,
                               "GET /nope HTTP/1.1\r\nHost: a\r\nOtoroshi-Client-Id: admin\r\n"
                               "Otoroshi-Client-Secret: " TOKEN "\r\n\r\n",
                               body, sizeof(body)),
                     404);
    assert_int_equal(http_call(f->port,
                               "GET /nope HTTP/1.1\r\nHost: a\r\nauthorization: bearer   " TOKEN
                               "\r\n\r\n",
                               body, sizeof(body)),
                     404);
}

static void test_admin_wrong_secrets_401(void **state)
{
    struct afx *f = *state;
    char body[1024];
    const char *reqs[] = {
        "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN "x\r\n\r\n",
        /* base64("root:" TOKEN): right secret, wrong client id */
        "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Basic "
        "cm9vdDp0ZXN0LXRva2VuLTAxMjM0NTY3ODlhYmNkZWY=\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Basic !!!!\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: a\r\nAuthorization: Digest x\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: a\r\nOtoroshi-Client-Id: admin\r\n"
        "Otoroshi-Client-Secret: nope\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: a\r\nOtoroshi-Client-Secret: " TOKEN "\r\n\r\n",
    };

    f->cfg.admin_token = (char *)(uintptr_t)TOKEN;
    afx_start(f);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        assert_int_equal(http_call(f->port, reqs[i], body, sizeof(body)), 401);
    }
    /* Malformed HTTP never reaches auth: the engine answers 400. */
    assert_int_equal(http_call(f->port, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", body, sizeof(body)),
                     400);
}

static void read_file(const char *path, char *out, size_t outlen)
{
    FILE *fp = fopen(path, "r");
    size_t n;

    assert_non_null(fp);
    n = fread(out, 1, outlen - 1, fp);
    out[n] = '\0';
    (void)fclose(fp);
}

static void test_admin_token_file_created_0600_and_reused(void **state)
{
    struct afx *f = *state;
    char path[128];
    char tok1[128];
    char tok2[128];
    char req[512];
    char body[1024];
    struct stat st;

    f->cfg.admin_token = NULL;
    afx_start(f);
    (void)snprintf(path, sizeof(path), "%s/admin.token", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    read_file(path, tok1, sizeof(tok1));
    assert_int_equal(strlen(tok1), 65); /* 64 hex + newline */
    tok1[64] = '\0';
    (void)snprintf(req, sizeof(req),
                   "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n\r\n", tok1);
    assert_int_equal(http_call(f->port, req, body, sizeof(body)), 404);

    torii_admin_stop(f->adm);
    f->adm = NULL;
    afx_start(f);
    read_file(path, tok2, sizeof(tok2));
    tok2[64] = '\0';
    assert_string_equal(tok1, tok2);
    assert_int_equal(http_call(f->port, req, body, sizeof(body)), 404);
}

static void test_admin_bind_error_reported(void **state)
{
    struct afx *f = *state;
    struct torii_admin *second = NULL;
    struct torii_errbuf eb = {{0}};
    struct torii_config bad;

    f->cfg.admin_token = (char *)(uintptr_t)TOKEN;
    afx_start(f);
    assert_int_equal(torii_admin_start(&(struct torii_admin_opts){.cfg = &f->cfg}, &second, &eb),
                     TORII_EIO);
    assert_null(second);
    assert_non_null(strstr(eb.msg, "cannot listen"));
    bad = f->cfg;
    bad.admin_listen = (char *)(uintptr_t) "nonsense";
    assert_int_equal(torii_admin_start(&(struct torii_admin_opts){.cfg = &bad}, &second, &eb),
                     TORII_EINVAL);
    torii_admin_stop(NULL);
}

static void test_admin_reply_helpers(void **state)
{
    struct torii_admin_reply r;
    char *s;

    (void)state;
    memset(&r, 0, sizeof(r));
    admin_reply_error(&r, 400, "bad %s: %d", "thing", 3);
    assert_int_equal(r.status, 400);
    s = json_dumps(r.json, JSON_COMPACT);
    assert_string_equal(s, "{\"error\":\"bad thing: 3\"}");
    free(s);
    /* Not UTF-8: escaped rather than dropped. */
    admin_reply_error(&r, 404, "no \xff here");
    s = json_dumps(r.json, JSON_COMPACT);
    assert_string_equal(s, "{\"error\":\"no \\\\xff here\"}");
    free(s);
    admin_reply_header(&r, "Allow", "GET");
    assert_int_equal(r.n_headers, 1);
    admin_reply_clear(&r);
    assert_null(r.json);
    assert_int_equal(r.n_headers, 0);
    admin_reply_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admin_no_credentials_401, afx_setup, afx_teardown),
        cmocka_unit_test_setup_teardown(test_admin_three_auth_forms_pass, afx_setup, afx_teardown),
        cmocka_unit_test_setup_teardown(test_admin_wrong_secrets_401, afx_setup, afx_teardown),
        cmocka_unit_test_setup_teardown(test_admin_token_file_created_0600_and_reused, afx_setup,
                                        afx_teardown),
        cmocka_unit_test_setup_teardown(test_admin_bind_error_reported, afx_setup, afx_teardown),
        cmocka_unit_test(test_admin_reply_helpers),
    };
    int rc;

    (void)signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    torii_log_set_level(TORII_LOG_ERR);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    libevent_global_shutdown();
    return rc;
}
