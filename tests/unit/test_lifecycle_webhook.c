/* test_lifecycle_webhook.c - the webhook exporter over HTTPS with a client certificate from
 * the store (tls.client_cert) and a trusted CA from the store (tls.trusted_ca), against an
 * in-process TLS server that requires a client certificate and keeps connections alive. The
 * key is reached only through pki (torii_pki_identity): the server must see the stored
 * certificate, a changed certificate must move to a new connection, an unchanged one must
 * reuse the pooled connection, and an entity without a key must never be presented. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "testpki.h"
#include "teststore.h"
#include "torii/alert.h"
#include "torii/clock.h"
#include "torii/conf.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define MAX_REQS 8

/* ---- an HTTPS receiver requiring client certificates ---- */

struct hit {
    char cn[64];   /* the client certificate's CN ("" without one) */
    int conn;      /* 1-based index of the TLS connection it came on */
    int has_alert; /* the body is a JSON array holding an alert */
    int has_key;   /* the body mentions key material (must never happen) */
};

struct server {
    SSL_CTX *ctx;
    int lfd;
    int port;
    pthread_t thread;
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    struct hit hits[MAX_REQS];
    int n_hits;
    int n_conns;     /* TLS connections accepted (handshake done) */
    int n_refused;   /* handshakes that failed (no or untrusted client certificate) */
    int n_tcp_conns; /* TCP connections accepted */
};

/* SSL_read with the socket's receive timeout as a chance to see stop. <= 0: closed. */
static int srv_read(struct server *s, SSL *ssl, char *buf, int len)
{
    for (;;) {
        int n = SSL_read(ssl, buf, len);
        if (n > 0) {
            return n;
        }
        if (SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ || atomic_load(&s->stop)) {
            return 0;
        }
    }
}

/* SSL_accept, retrying on the socket's receive timeout until stop: a client slower than the
 * timeout (a sanitized build, a loaded machine) is not a refused one. 1 when done. */
static int srv_handshake(struct server *s, SSL *ssl)
{
    for (;;) {
        int r = SSL_accept(ssl);
        if (r == 1) {
            return 1;
        }
        if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ || atomic_load(&s->stop)) {
            return 0;
        }
    }
}

/* One request: headers, then Content-Length bytes of body (in buf). 0 at end of stream. */
static int srv_request(struct server *s, SSL *ssl, char *buf, size_t cap, size_t *body_off)
{
    size_t len = 0;
    char *end = NULL;
    const char *cl;
    size_t want;

    while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
        int n;
        if (len + 1 >= cap) {
            return 0;
        }
        n = srv_read(s, ssl, buf + len, (int)(cap - 1 - len));
        if (n <= 0) {
            return 0;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    *body_off = (size_t)(end + 4 - buf);
    cl = strstr(buf, "Content-Length: ");
    want = *body_off + (cl != NULL && cl < end ? (size_t)strtoul(cl + 16, NULL, 10) : 0);
    while (len < want && len + 1 < cap) {
        int n = srv_read(s, ssl, buf + len, (int)(cap - 1 - len));
        if (n <= 0) {
            return 0;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    return len >= want;
}

static void srv_serve(struct server *s, int fd)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct timeval tv = {0, 100000};
    SSL *ssl = SSL_new(s->ctx);
    char *buf = torii_xcalloc(1, 1 << 16);
    int conn;

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || srv_handshake(s, ssl) != 1) {
        (void)pthread_mutex_lock(&s->mu);
        s->n_refused++;
        (void)pthread_cond_broadcast(&s->cv);
        (void)pthread_mutex_unlock(&s->mu);
        goto out;
    }
    (void)pthread_mutex_lock(&s->mu);
    conn = ++s->n_conns;
    (void)pthread_mutex_unlock(&s->mu);
    for (;;) {
        size_t body = 0;
        struct hit h;
        X509 *peer;

        memset(buf, 0, 1 << 16);
        if (!srv_request(s, ssl, buf, 1 << 16, &body)) {
            break;
        }
        memset(&h, 0, sizeof(h));
        h.conn = conn;
        peer = SSL_get1_peer_certificate(ssl);
        if (peer != NULL) {
            (void)X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, h.cn,
                                            (int)sizeof(h.cn));
            X509_free(peer);
        }
        h.has_alert = buf[body] == '[' && strstr(buf + body, "\"alert\"") != NULL;
        h.has_key =
            strstr(buf + body, "PRIVATE KEY") != NULL || strstr(buf + body, "privateKey") != NULL;
        if (SSL_write(ssl, ok, (int)sizeof(ok) - 1) <= 0) {
            break;
        }
        (void)pthread_mutex_lock(&s->mu);
        if (s->n_hits < MAX_REQS) {
            s->hits[s->n_hits++] = h;
        }
        (void)pthread_cond_broadcast(&s->cv);
        (void)pthread_mutex_unlock(&s->mu);
    }
    (void)SSL_shutdown(ssl);
out:
    ERR_clear_error();
    SSL_free(ssl);
    free(buf);
    (void)close(fd);
}

static void *srv_main(void *arg)
{
    struct server *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        int fd;

        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        (void)pthread_mutex_lock(&s->mu);
        s->n_tcp_conns++;
        (void)pthread_mutex_unlock(&s->mu);
        srv_serve(s, fd); /* one connection at a time: a second one waits in the backlog */
    }
    return NULL;
}

static void srv_start(struct server *s, X509 *cert, EVP_PKEY *key, X509 *client_ca)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    X509_STORE *trust;

    memset(s, 0, sizeof(*s));
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
    trust = SSL_CTX_get_cert_store(s->ctx);
    assert_int_equal(X509_STORE_add_cert(trust, client_ca), 1);
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* No tickets or session cache: every connection proves its certificate. */
    SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
    assert_int_equal(SSL_CTX_set_num_tickets(s->ctx, 0), 1);
    assert_int_equal(pthread_mutex_init(&s->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&s->cv, NULL), 0);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 8), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void srv_stop(struct server *s)
{
    atomic_store(&s->stop, 1);
    (void)pthread_join(s->thread, NULL);
    (void)close(s->lfd);
    SSL_CTX_free(s->ctx);
    (void)pthread_cond_destroy(&s->cv);
    (void)pthread_mutex_destroy(&s->mu);
}

/* Wait (bounded, no sleep) until the server recorded n requests; returns the count. */
static int srv_wait_hits(struct server *s, int n)
{
    struct timespec dl;
    int got;

    (void)clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    (void)pthread_mutex_lock(&s->mu);
    while (s->n_hits < n) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    got = s->n_hits;
    (void)pthread_mutex_unlock(&s->mu);
    return got;
}

/* ---- fixture: certificates, store, exporter config ---- */

struct fixture {
    X509 *srv_ca;
    EVP_PKEY *srv_ca_key;
    X509 *srv;
    EVP_PKEY *srv_key;
    X509 *cli_ca;
    EVP_PKEY *cli_ca_key;
    struct teststore ts;
    struct server server;
    char url[64];
    char name[16];
    char trusted[16];
    char client[16];
    struct torii_conf_exporter ex;
    struct torii_config cfg;
};

/* A client certificate entity issued by the fixture's client CA; password-protected key
 * (exercises the decryption done when the record is built) unless without_key. */
static json_t *client_entity(struct fixture *f, const char *id, const char *cn, int without_key)
{
    struct testpki_opts o;
    X509 *chain[2] = {NULL, f->cli_ca};
    EVP_PKEY *k = NULL;
    json_t *e;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = cn;
    o.client = 1;
    o.not_before_off_s = -60;
    o.issuer = f->cli_ca;
    o.issuer_key = f->cli_ca_key;
    assert_int_equal(testpki_make(&o, &chain[0], &k), 0);
    e = testpki_entity(id, chain, 2, without_key ? NULL : k, without_key ? NULL : "s3cret");
    assert_non_null(e);
    assert_int_equal(torii_cert_normalize(e, NULL), TORII_OK);
    assert_int_equal(torii_cert_enrich(e, torii_clock_now_ms(), NULL), TORII_OK);
    X509_free(chain[0]);
    EVP_PKEY_free(k);
    return e;
}

static void store_put(struct torii_store *st, json_t *e_owned)
{
    unsigned char *aux = NULL;
    size_t aux_len = 0;
    char *json = json_dumps(e_owned, JSON_COMPACT);
    const char *id = json_string_value(json_object_get(e_owned, "id"));
    struct torii_store_rec rec;

    assert_non_null(json);
    assert_int_equal(torii_certrec_build(e_owned, &aux, &aux_len, NULL), TORII_OK);
    rec = (struct torii_store_rec){id, strlen(id), json, strlen(json), aux, aux_len};
    assert_int_equal(torii_store_put(st, TORII_STORE_CERTS, &rec, TORII_STORE_PUT, NULL), TORII_OK);
    torii_secure_free(json, strlen(json));
    torii_secure_free(aux, aux_len);
    json_decref(e_owned);
}

static int setup(void **state)
{
    static const char *const ips[] = {"127.0.0.1"};
    struct fixture *f = torii_xcalloc(1, sizeof(*f));
    struct testpki_opts o;
    json_t *e;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Webhook Server CA";
    o.is_ca = 1;
    o.not_before_off_s = -3600;
    assert_int_equal(testpki_make(&o, &f->srv_ca, &f->srv_ca_key), 0);
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "127.0.0.1";
    o.ips = ips;
    o.n_ips = 1;
    o.not_before_off_s = -60;
    o.issuer = f->srv_ca;
    o.issuer_key = f->srv_ca_key;
    assert_int_equal(testpki_make(&o, &f->srv, &f->srv_key), 0);
    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.cn = "Webhook Client CA";
    o.is_ca = 1;
    o.not_before_off_s = -3600;
    assert_int_equal(testpki_make(&o, &f->cli_ca, &f->cli_ca_key), 0);

    assert_int_equal(teststore_open(&f->ts, "ut-hook", 0, NULL), TORII_OK);
    /* The server's CA, public only (no key), as tls.trusted_ca. */
    e = testpki_entity_enriched("srvca", &f->srv_ca, 1, NULL);
    assert_non_null(e);
    store_put(f->ts.st, e);

    srv_start(&f->server, f->srv, f->srv_key, f->cli_ca);
    (void)snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/hook", f->server.port);
    (void)snprintf(f->name, sizeof(f->name), "hook");
    (void)snprintf(f->trusted, sizeof(f->trusted), "srvca");
    (void)snprintf(f->client, sizeof(f->client), "client");
    f->ex.type = TORII_CONF_EXPORTER_WEBHOOK;
    f->ex.name = f->name;
    f->ex.queue_size = 16;
    f->ex.url = f->url;
    f->ex.trusted_ca = f->trusted;
    f->ex.client_cert = f->client;
    f->ex.tls_verify = 1;
    f->ex.batch_size = 1;
    f->ex.timeout_ms = 10000;
    f->ex.retry_min_ms = 10;
    f->ex.retry_max_ms = 20;
    f->ex.max_retries = 1;
    f->cfg.exporter_list = &f->ex;
    f->cfg.n_exporters = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    srv_stop(&f->server);
    (void)teststore_remove(&f->ts, NULL, 0);
    X509_free(f->srv_ca);
    EVP_PKEY_free(f->srv_ca_key);
    X509_free(f->srv);
    EVP_PKEY_free(f->srv_key);
    X509_free(f->cli_ca);
    EVP_PKEY_free(f->cli_ca_key);
    free(f);
    return 0;
}

static void raise_one(struct torii_alerts *al, const char *id)
{
    json_t *e = json_pack("{s:s, s:s}", "id", id, "domain", "a.test");

    assert_non_null(e);
    torii_alerts_raise(al, TORII_ALERT_RENEWAL, e, NULL);
    json_decref(e);
}

/* ---- tests ---- */

static void test_webhook_presents_the_stored_client_certificate(void **state)
{
    struct fixture *f = *state;
    struct torii_alerts *al = NULL;
    struct torii_errbuf eb = {{0}};

    store_put(f->ts.st, client_entity(f, "client", "webhook-client-a", 0));
    assert_int_equal(torii_alerts_new(&f->cfg, f->ts.st, &al, &eb), TORII_OK);

    raise_one(al, "one");
    assert_int_equal(srv_wait_hits(&f->server, 1), 1);
    assert_string_equal(f->server.hits[0].cn, "webhook-client-a");
    assert_true(f->server.hits[0].has_alert);
    assert_false(f->server.hits[0].has_key);

    /* Same certificate: the pooled connection is reused. */
    raise_one(al, "two");
    assert_int_equal(srv_wait_hits(&f->server, 2), 2);
    assert_string_equal(f->server.hits[1].cn, "webhook-client-a");
    assert_int_equal(f->server.hits[1].conn, f->server.hits[0].conn);

    /* The stored certificate changes (renewed, replaced): never sent on the old connection. */
    store_put(f->ts.st, client_entity(f, "client", "webhook-client-b", 0));
    raise_one(al, "three");
    assert_int_equal(srv_wait_hits(&f->server, 3), 3);
    assert_string_equal(f->server.hits[2].cn, "webhook-client-b");
    assert_int_not_equal(f->server.hits[2].conn, f->server.hits[1].conn);
    assert_false(f->server.hits[2].has_key);

    torii_alerts_free(al);
    (void)pthread_mutex_lock(&f->server.mu);
    assert_int_equal(f->server.n_refused, 0);
    assert_int_equal(f->server.n_hits, 3);
    (void)pthread_mutex_unlock(&f->server.mu);
}

static void test_webhook_never_connects_with_a_client_cert_without_key(void **state)
{
    struct fixture *f = *state;
    struct torii_alerts *al = NULL;
    struct torii_errbuf eb = {{0}};

    store_put(f->ts.st, client_entity(f, "client", "webhook-client-nokey", 1));
    assert_int_equal(torii_alerts_new(&f->cfg, f->ts.st, &al, &eb), TORII_OK);
    raise_one(al, "one");
    torii_alerts_free(al); /* retries, then the last attempt, then drops: all before return */
    (void)pthread_mutex_lock(&f->server.mu);
    assert_int_equal(f->server.n_tcp_conns, 0);
    assert_int_equal(f->server.n_hits, 0);
    (void)pthread_mutex_unlock(&f->server.mu);
}

static void test_webhook_with_an_unknown_client_cert_id_never_connects(void **state)
{
    struct fixture *f = *state;
    struct torii_alerts *al = NULL;
    struct torii_errbuf eb = {{0}};

    (void)snprintf(f->client, sizeof(f->client), "missing");
    assert_int_equal(torii_alerts_new(&f->cfg, f->ts.st, &al, &eb), TORII_OK);
    raise_one(al, "one");
    torii_alerts_free(al);
    (void)pthread_mutex_lock(&f->server.mu);
    assert_int_equal(f->server.n_tcp_conns, 0);
    (void)pthread_mutex_unlock(&f->server.mu);
}

static void test_webhook_without_client_cert_is_refused_by_the_server(void **state)
{
    struct fixture *f = *state;
    struct torii_alerts *al = NULL;
    struct torii_errbuf eb = {{0}};

    /* Control: the server really requires the certificate the other tests present. */
    f->ex.client_cert = NULL;
    assert_int_equal(torii_alerts_new(&f->cfg, f->ts.st, &al, &eb), TORII_OK);
    raise_one(al, "one");
    torii_alerts_free(al);
    (void)pthread_mutex_lock(&f->server.mu);
    assert_true(f->server.n_refused > 0);
    assert_int_equal(f->server.n_hits, 0);
    (void)pthread_mutex_unlock(&f->server.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_webhook_presents_the_stored_client_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_webhook_never_connects_with_a_client_cert_without_key,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_with_an_unknown_client_cert_id_never_connects,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_without_client_cert_is_refused_by_the_server,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
