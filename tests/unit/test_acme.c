/* test_acme.c - the ACME pieces that need no CA: ARI (RFC 9773) against a small fake
 * directory served by this test on loopback (certID in the URL, suggested window in the past
 * or the future, no renewalInfo, a malformed window), the certID of a chain, the request
 * body's names, and the key material of src/pki (JWK thumbprint, ES256 signature). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "teststore.h"
#include "torii/acme.h"
#include "torii/clock.h"
#include "torii/codec.h"
#include "torii/jwt.h"
#include "torii/mem.h"
#include "torii/pki.h"

/* ---- fake directory: one thread answering canned JSON by path ---- */

struct fake {
    int fd;
    int port;
    int ari;            /* the directory lists renewalInfo */
    const char *window; /* the renewalInfo body */
    char last_path[512];
    pthread_t th;
};

static void fake_answer(struct fake *f, int c)
{
    char req[2048];
    char body[1024];
    char resp[2048];
    ssize_t n = read(c, req, sizeof(req) - 1);
    char path[512] = "";

    if (n <= 0) {
        return;
    }
    req[n] = '\0';
    if (sscanf(req, "GET %511s", path) != 1) {
        return;
    }
    (void)snprintf(f->last_path, sizeof(f->last_path), "%s", path);
    if (strcmp(path, "/dir") == 0 && f->ari) {
        (void)snprintf(
            body, sizeof(body),
            "{\"newNonce\":\"http://127.0.0.1:%d/n\",\"newAccount\":\"http://127.0.0.1:%d/a\","
            "\"newOrder\":\"http://127.0.0.1:%d/o\",\"renewalInfo\":\"http://127.0.0.1:%d/ri\"}",
            f->port, f->port, f->port, f->port);
    } else if (strcmp(path, "/dir") == 0) {
        (void)snprintf(
            body, sizeof(body),
            "{\"newNonce\":\"http://127.0.0.1:%d/n\",\"newAccount\":\"http://127.0.0.1:%d/a\","
            "\"newOrder\":\"http://127.0.0.1:%d/o\"}",
            f->port, f->port, f->port);
    } else {
        (void)snprintf(body, sizeof(body), "%s", f->window);
    }
    (void)snprintf(resp, sizeof(resp),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   "%zu\r\nConnection: close\r\n\r\n%s",
                   strlen(body), body);
    (void)!write(c, resp, strlen(resp));
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;

    for (int i = 0; i < 2; i++) { /* the directory, then renewalInfo */
        int c = accept(f->fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        fake_answer(f, c);
        (void)close(c);
    }
    return NULL;
}

static void fake_start(struct fake *f)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->fd >= 0);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    (void)shutdown(f->fd, SHUT_RDWR);
    (void)pthread_join(f->th, NULL);
    (void)close(f->fd);
}

/* A leaf issued by a fresh CA (so it has an authority key identifier), as a chain PEM. */
static char *issued_chain(void)
{
    struct torii_pki_opts o = {.now_ms = torii_clock_now_ms(), .base_url = NULL, .id = NULL};
    json_t *ca = NULL;
    json_t *leaf = NULL;
    json_t *q1 = json_pack("{s:s}", "subject", "CN=ARI test CA");
    json_t *q2 = json_pack("{s:[s]}", "hosts", "ari.test");
    char *chain;

    assert_int_equal(torii_pki_ca_create(q1, &o, &ca, NULL), TORII_OK);
    assert_int_equal(torii_pki_cert_issue(ca, q2, &o, &leaf, NULL), TORII_OK);
    chain = torii_xstrdup(json_string_value(json_object_get(leaf, "chain")));
    json_decref(ca);
    json_decref(leaf);
    json_decref(q1);
    json_decref(q2);
    return chain;
}

static int ari_run(struct fake *f, const char *chain, int *due, struct torii_errbuf *eb)
{
    struct torii_conf_acme conf;
    char url[64];
    int rc;

    memset(&conf, 0, sizeof(conf));
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%d/dir", f->port);
    conf.directory_url = url;
    rc = torii_acme_ari_due(&conf, chain, torii_clock_now_ms(), due, eb);
    return rc;
}

static void test_ari_cert_id(void **state)
{
    char *chain = issued_chain();
    char id[256];
    BIO *bio = BIO_new_mem_buf(chain, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    const char *dot;
    unsigned char *a = NULL;
    size_t alen = 0;

    (void)state;
    assert_int_equal(torii_acme_ari_cert_id(chain, id, sizeof(id)), TORII_OK);
    dot = strchr(id, '.');
    assert_non_null(dot);
    /* the first part is the AKI keyIdentifier, base64url without padding */
    assert_null(strchr(id, '='));
    assert_int_equal(torii_b64_decode(id, (size_t)(dot - id), &a, &alen), TORII_OK);
    assert_int_equal(alen, (size_t)ASN1_STRING_length(aki));
    assert_memory_equal(a, ASN1_STRING_get0_data(aki), alen);
    assert_int_equal(torii_acme_ari_cert_id("garbage", id, sizeof(id)), TORII_EINVAL);
    free(a);
    X509_free(x);
    BIO_free(bio);
    free(chain);
}

static void test_ari_window(void **state)
{
    char *chain = issued_chain();
    char id[256];
    char want[300];
    struct fake f = {.ari = 1,
                     .window = "{\"suggestedWindow\":{\"start\":\"2001-01-01T00:00:00Z\","
                               "\"end\":\"2001-01-02T00:00:00.5Z\"}}"};
    struct torii_errbuf eb = {{0}};
    int due = -1;

    (void)state;
    assert_int_equal(torii_acme_ari_cert_id(chain, id, sizeof(id)), TORII_OK);
    /* the window has started: due, and the certID went into the URL */
    fake_start(&f);
    assert_int_equal(ari_run(&f, chain, &due, &eb), TORII_OK);
    fake_stop(&f);
    assert_int_equal(due, 1);
    (void)snprintf(want, sizeof(want), "/ri/%s", id);
    assert_string_equal(f.last_path, want);
    /* a window in the future: not due */
    f.window = "{\"suggestedWindow\":{\"start\":\"2999-01-01T00:00:00Z\","
               "\"end\":\"2999-01-02T00:00:00Z\"}}";
    fake_start(&f);
    assert_int_equal(ari_run(&f, chain, &due, &eb), TORII_OK);
    fake_stop(&f);
    assert_int_equal(due, 0);
    /* a malformed window (end before start): an error, the caller's own rule decides */
    f.window = "{\"suggestedWindow\":{\"start\":\"2001-01-02T00:00:00Z\","
               "\"end\":\"2001-01-01T00:00:00Z\"}}";
    fake_start(&f);
    assert_int_equal(ari_run(&f, chain, &due, &eb), TORII_EPROTO);
    fake_stop(&f);
    assert_non_null(strstr(eb.msg, "no usable suggestedWindow"));
    free(chain);
}

static void test_ari_absent(void **state)
{
    char *chain = issued_chain();
    struct fake f = {.ari = 0, .window = "{}"};
    int due = -1;

    (void)state;
    fake_start(&f);
    assert_int_equal(ari_run(&f, chain, &due, NULL), TORII_ENOTFOUND);
    fake_stop(&f);
    assert_int_equal(due, -1);
    assert_string_equal(f.last_path, "/dir");
    free(chain);
}

static void test_ari_window_parse(void **state)
{
    int due = -1;
    json_t *w = json_pack("{s:{s:s,s:s}}", "suggestedWindow", "start", "2020-05-01T10:00:00Z",
                          "end", "2020-05-03T10:00:00+00:00");

    (void)state;
    /* 2020-05-01T10:00:00Z is 1588327200 s */
    assert_int_equal(torii_acme_ari_window_due(w, 1588327200000 - 1, &due), TORII_OK);
    assert_int_equal(due, 0);
    assert_int_equal(torii_acme_ari_window_due(w, 1588327200000, &due), TORII_OK);
    assert_int_equal(due, 1);
    json_decref(w);
    w = json_pack("{s:{s:s,s:s}}", "suggestedWindow", "start", "2020-05-01T10:00:00+02:00", "end",
                  "2020-05-03T10:00:00Z");
    assert_int_equal(torii_acme_ari_window_due(w, 0, &due), TORII_EPROTO);
    json_decref(w);
    assert_int_equal(torii_acme_ari_window_due(NULL, 0, &due), TORII_EPROTO);
}

static void test_hosts_parse(void **state)
{
    json_t *out = NULL;
    json_t *b;
    struct torii_errbuf eb = {{0}};

    (void)state;
    b = json_pack("{s:[s,s]}", "hosts", "A.Example.test", "*.x.test");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_OK);
    assert_string_equal(json_string_value(json_array_get(out, 0)), "a.example.test");
    assert_string_equal(json_string_value(json_array_get(out, 1)), "*.x.test");
    json_decref(out);
    json_decref(b);
    b = json_pack("{s:s}", "host", "1.2.3.4");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_EINVAL);
    assert_string_equal(eb.msg,
                        "acme: \"1.2.3.4\" is not a DNS name (\"*.\" allowed as the first label)");
    json_decref(b);
    b = json_pack("{s:[s,s]}", "hosts", "a.test", "A.test");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_EINVAL);
    assert_string_equal(eb.msg, "acme: \"a.test\" is listed twice");
    json_decref(b);
    b = json_pack("{s:s}", "host", "a..test");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_EINVAL);
    json_decref(b);
    b = json_pack("{s:s,s:[s]}", "host", "a.test", "hosts", "b.test");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_EINVAL);
    assert_string_equal(eb.msg, "acme: give either \"host\" or \"hosts\"");
    json_decref(b);
    b = json_pack("{s:[]}", "hosts");
    assert_int_equal(torii_acme_hosts_parse(b, &out, &eb), TORII_EINVAL);
    json_decref(b);
}

/* 1 when the raw r||s signature sig64 of msg verifies with the JWK's public key. */
static int jwk_verifies(const json_t *jwk, const char *msg, const unsigned char *sig64)
{
    unsigned char *x = NULL;
    unsigned char *y = NULL;
    size_t xl = 0;
    size_t yl = 0;
    unsigned char pt[65];
    unsigned char der[80];
    size_t der_len = 0;
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    OSSL_PARAM p[3];
    char group[] = "prime256v1";
    int ok = 0;
    const char *xs = json_string_value(json_object_get(jwk, "x"));
    const char *ys = json_string_value(json_object_get(jwk, "y"));

    if (torii_b64_decode(xs, strlen(xs), &x, &xl) != TORII_OK
        || torii_b64_decode(ys, strlen(ys), &y, &yl) != TORII_OK || xl != 32 || yl != 32) {
        goto out;
    }
    pt[0] = 4;
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    p[0] = OSSL_PARAM_construct_utf8_string("group", group, 0);
    p[1] = OSSL_PARAM_construct_octet_string("pub", pt, sizeof(pt));
    p[2] = OSSL_PARAM_construct_end();
    ok = EVP_PKEY_fromdata_init(pc) == 1 && EVP_PKEY_fromdata(pc, &k, EVP_PKEY_PUBLIC_KEY, p) == 1
         && torii_jwt_ecdsa_raw_to_der(sig64, 64, der, sizeof(der), &der_len) == TORII_OK
         && EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, k) == 1
         && EVP_DigestVerify(m, der, der_len, (const unsigned char *)msg, strlen(msg)) == 1;
out:
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(pc);
    free(x);
    free(y);
    return ok;
}

/* The account key's JWS signature verifies with its JWK's public key (P-256, raw r||s). */
static void test_account_key(void **state)
{
    char *pem = NULL;
    json_t *jwk = NULL;
    char thumb[64];
    char thumb2[64];
    char *sig = NULL;
    unsigned char *raw = NULL;
    size_t raw_len = 0;

    (void)state;
    assert_int_equal(torii_pki_acme_key_new(&pem, NULL), TORII_OK);
    assert_int_equal(torii_pki_acme_jwk(pem, &jwk, thumb, sizeof(thumb), NULL), TORII_OK);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    assert_int_equal(strlen(thumb), 43); /* SHA-256 in base64url, no padding */
    json_decref(jwk);
    assert_int_equal(torii_pki_acme_jwk(pem, &jwk, thumb2, sizeof(thumb2), NULL), TORII_OK);
    assert_string_equal(thumb, thumb2); /* stable */
    json_decref(jwk);
    jwk = NULL;
    assert_int_equal(torii_pki_acme_jwk(pem, &jwk, thumb2, sizeof(thumb2), NULL), TORII_OK);
    assert_int_equal(torii_pki_acme_sign(pem, "eyJhIjoxfQ.e30", &sig, NULL), TORII_OK);
    assert_int_equal(torii_b64_decode(sig, strlen(sig), &raw, &raw_len), TORII_OK);
    assert_int_equal(raw_len, 64);
    assert_true(jwk_verifies(jwk, "eyJhIjoxfQ.e30", raw));
    assert_false(jwk_verifies(jwk, "eyJhIjoxfQ.e31", raw));
    json_decref(jwk);
    jwk = NULL;
    assert_int_equal(torii_pki_acme_jwk("not a key", &jwk, thumb2, sizeof(thumb2), NULL),
                     TORII_EINVAL);
    free(raw);
    free(sig);
    json_decref(jwk);
    torii_secure_free(pem, strlen(pem));
}

/* A ring holding cur (current) and prev (previous, may be NULL). */
static struct torii_kek_ring *acme_ring(unsigned char cur, int with_prev, unsigned char prev)
{
    struct torii_kek_ring *r = torii_kek_ring_new();
    unsigned char k[TORII_KEK_LEN];

    memset(k, cur, sizeof(k));
    assert_int_equal(torii_kek_ring_add(r, k, 1, NULL), TORII_OK);
    if (with_prev) {
        memset(k, prev, sizeof(k));
        assert_int_equal(torii_kek_ring_add(r, k, 0, NULL), TORII_OK);
    }
    return r;
}

/* The "key" of an ACME record, opened with ring (NULL when it does not open). */
static char *acme_stored_key(struct torii_store *st, const char *id,
                             const struct torii_kek_ring *ring, int *sealed)
{
    char *text = NULL;
    char *pem = NULL;
    json_t *v;

    assert_int_equal(torii_store_get(st, TORII_STORE_ACME, id, &text, NULL, NULL, NULL), TORII_OK);
    v = json_loads(text, 0, NULL);
    *sealed = torii_kek_text_is_sealed(json_string_value(json_object_get(v, "key")));
    if (torii_pki_key_text_open(ring, id, json_string_value(json_object_get(v, "key")), &pem, NULL)
        != TORII_OK) {
        pem = NULL;
    }
    json_decref(v);
    free(text);
    return pem;
}

/* `torii keys migrate|rotate` over the account keys: sealed for their record id, left alone
 * once sealed, re-sealed by a rotation (then the new KEK alone opens them); other ACME records
 * untouched. */
static void test_accounts_rekey(void **state)
{
    struct teststore ts;
    struct torii_kek_ring *k1 = acme_ring(1, 0, 0);
    struct torii_kek_ring *rot = acme_ring(2, 1, 1);
    struct torii_kek_ring *k2 = acme_ring(2, 0, 0);
    struct torii_errbuf eb = {{0}};
    const char *id = "account:https://acme.test/dir";
    char *pem = NULL;
    char *json = NULL;
    char *got = NULL;
    size_t done = 9;
    int sealed = 0;
    json_t *acc_v;

    (void)state;
    assert_int_equal(teststore_open(&ts, "acmerekey", 0, NULL), TORII_OK);
    assert_int_equal(torii_pki_acme_key_new(&pem, NULL), TORII_OK);
    acc_v = json_pack("{s:s,s:s}", "directory", "https://acme.test/dir", "key", pem);
    json = json_dumps(acc_v, JSON_COMPACT);
    json_decref(acc_v);
    struct torii_store_rec acc = {id, strlen(id), json, strlen(json), NULL, 0};
    struct torii_store_rec other = {"order:x", 7, "{\"key\":1}", 9, NULL, 0};
    assert_int_equal(torii_store_put(ts.st, TORII_STORE_ACME, &acc, TORII_STORE_PUT, NULL),
                     TORII_OK);
    assert_int_equal(torii_store_put(ts.st, TORII_STORE_ACME, &other, TORII_STORE_PUT, NULL),
                     TORII_OK);
    assert_int_equal(torii_acme_accounts_rekey(ts.st, k1, 0, &done, &eb), TORII_OK);
    assert_int_equal(done, 1);
    got = acme_stored_key(ts.st, id, k1, &sealed);
    assert_true(sealed);
    assert_non_null(got);
    assert_string_equal(got, pem);
    torii_secure_free(got, strlen(got));
    assert_int_equal(torii_acme_accounts_rekey(ts.st, k1, 0, &done, &eb), TORII_OK);
    assert_int_equal(done, 0);
    assert_int_equal(torii_acme_accounts_rekey(ts.st, k2, 1, &done, &eb), TORII_ENOTFOUND);
    assert_int_equal(torii_acme_accounts_rekey(ts.st, rot, 1, &done, &eb), TORII_OK);
    assert_int_equal(done, 1);
    got = acme_stored_key(ts.st, id, k2, &sealed);
    assert_non_null(got);
    assert_string_equal(got, pem);
    torii_secure_free(got, strlen(got));
    assert_null(acme_stored_key(ts.st, id, k1, &sealed));
    free(json);
    torii_secure_free(pem, strlen(pem));
    torii_kek_ring_free(k1);
    torii_kek_ring_free(k2);
    torii_kek_ring_free(rot);
    assert_int_equal(teststore_remove(&ts, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ari_cert_id),    cmocka_unit_test(test_ari_window),
        cmocka_unit_test(test_ari_absent),     cmocka_unit_test(test_ari_window_parse),
        cmocka_unit_test(test_hosts_parse),    cmocka_unit_test(test_account_key),
        cmocka_unit_test(test_accounts_rekey),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
