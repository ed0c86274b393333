/* test_pki_kek.c - the KEK envelope (src/pki/kek.c) and the KEK sources (kek_source.c):
 * round trip and layout, the record id as associated data, tampering, wrong/unknown KEK,
 * rotation (current + previous), KEK files (raw, hex, permissions, symlinks) and systemd
 * credentials. */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "testpki.h"
#include "torii/pki.h"

static const unsigned char plain_key[] = "0\x82 not really DER, but private all the same";

struct kfx {
    char dir[64];
    unsigned char k1[TORII_KEK_LEN];
    unsigned char k2[TORII_KEK_LEN];
};

static int setup(void **state)
{
    struct kfx *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return 1;
    }
    (void)snprintf(f->dir, sizeof(f->dir), "/tmp/torii-kek-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return 1;
    }
    for (int i = 0; i < TORII_KEK_LEN; i++) {
        f->k1[i] = (unsigned char)(i + 1);
        f->k2[i] = (unsigned char)(0xA0 + i);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct kfx *f = *state;
    char cmd[128];

    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        return 1;
    }
    free(f);
    return 0;
}

static struct torii_kek_ring *ring_of(const unsigned char *cur, const unsigned char *prev)
{
    struct torii_kek_ring *r = torii_kek_ring_new();

    assert_int_equal(torii_kek_ring_add(r, cur, 1, NULL), TORII_OK);
    if (prev != NULL) {
        assert_int_equal(torii_kek_ring_add(r, prev, 0, NULL), TORII_OK);
    }
    return r;
}

static void seal(const struct torii_kek_ring *r, const char *id, unsigned char **env, size_t *len)
{
    assert_int_equal(
        torii_kek_seal(r, id, strlen(id), plain_key, sizeof(plain_key), env, len, NULL), TORII_OK);
}

static int open_env(const struct torii_kek_ring *r, const char *id, const unsigned char *env,
                    size_t len, struct torii_errbuf *eb)
{
    unsigned char *out = NULL;
    size_t out_len = 0;
    int rc = torii_kek_open(r, id, strlen(id), env, len, &out, &out_len, eb);

    if (rc == TORII_OK) {
        assert_int_equal(out_len, sizeof(plain_key));
        assert_memory_equal(out, plain_key, sizeof(plain_key));
        torii_secure_free(out, out_len);
    } else {
        assert_null(out);
    }
    return rc;
}

static void test_kek_roundtrip_and_layout(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *r = ring_of(f->k1, NULL);
    unsigned char *e1 = NULL;
    unsigned char *e2 = NULL;
    size_t l1 = 0;
    size_t l2 = 0;
    unsigned char md[32];
    char hex[2 * TORII_KEK_ID_LEN + 1];
    char cur[2 * TORII_KEK_ID_LEN + 1];

    seal(r, "cert-a", &e1, &l1);
    seal(r, "cert-a", &e2, &l2);
    assert_int_equal(l1, 4 + 1 + 8 + 12 + sizeof(plain_key) + 16);
    assert_memory_equal(e1, "TKEK", 4);
    assert_int_equal(e1[4], 1);
    assert_true(torii_kek_is_sealed(e1, l1));
    assert_false(torii_kek_is_sealed(plain_key, sizeof(plain_key)));
    /* the KEK id is the first 8 bytes of SHA-256 of the KEK */
    assert_int_equal(EVP_Digest(f->k1, sizeof(f->k1), md, NULL, EVP_sha256(), NULL), 1);
    assert_memory_equal(e1 + 5, md, TORII_KEK_ID_LEN);
    torii_kek_id_hex(md, hex);
    assert_int_equal(torii_kek_ring_current_id(r, cur), TORII_OK);
    assert_string_equal(hex, cur);
    /* a fresh nonce each time: same key, same record, different envelopes */
    assert_memory_not_equal(e1 + 13, e2 + 13, 12);
    for (size_t i = 0; i + 14 <= l1; i++) {
        assert_memory_not_equal(e1 + i, "not really DER", 14);
    }
    assert_int_equal(open_env(r, "cert-a", e1, l1, NULL), TORII_OK);
    assert_int_equal(open_env(r, "cert-a", e2, l2, NULL), TORII_OK);
    free(e1);
    free(e2);
    torii_kek_ring_free(r);
}

static void test_kek_other_record_and_tampering_refused(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *r = ring_of(f->k1, NULL);
    struct torii_errbuf eb = {{0}};
    unsigned char *e = NULL;
    size_t l = 0;
    /* a byte of the nonce, of the ciphertext, of the tag */
    size_t at[] = {13, 25, 25 + sizeof(plain_key) + 3};

    seal(r, "cert-a", &e, &l);
    assert_int_equal(open_env(r, "cert-b", e, l, &eb), TORII_EPERM);
    assert_non_null(strstr(eb.msg, "'cert-b'"));
    assert_non_null(strstr(eb.msg, "altered or belongs to another record"));
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        e[at[i]] ^= 0x01;
        assert_int_equal(open_env(r, "cert-a", e, l, &eb), TORII_EPERM);
        e[at[i]] ^= 0x01;
    }
    assert_int_equal(open_env(r, "cert-a", e, l - 1, &eb), TORII_EPERM); /* truncated tag */
    e[4] = 2;                                                            /* unknown version */
    assert_int_equal(open_env(r, "cert-a", e, l, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "not a sealed key"));
    e[4] = 1;
    assert_int_equal(open_env(r, "cert-a", plain_key, sizeof(plain_key), &eb), TORII_EINVAL);
    assert_int_equal(open_env(r, "cert-a", e, 25 + 16, &eb), TORII_EINVAL); /* no ciphertext */
    assert_int_equal(open_env(r, "cert-a", e, l, NULL), TORII_OK);
    free(e);
    torii_kek_ring_free(r);
}

static void test_kek_wrong_kek_named_without_key_bytes(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *r1 = ring_of(f->k1, NULL);
    struct torii_kek_ring *r2 = ring_of(f->k2, NULL);
    struct torii_kek_ring *none = torii_kek_ring_new();
    struct torii_errbuf eb = {{0}};
    unsigned char *e = NULL;
    size_t l = 0;
    char id1[2 * TORII_KEK_ID_LEN + 1];

    seal(r1, "cert-a", &e, &l);
    assert_int_equal(torii_kek_ring_current_id(r1, id1), TORII_OK);
    assert_int_equal(open_env(r2, "cert-a", e, l, &eb), TORII_ENOTFOUND);
    assert_non_null(strstr(eb.msg, "'cert-a'"));
    assert_non_null(strstr(eb.msg, id1));
    assert_non_null(strstr(eb.msg, "not loaded"));
    assert_null(strstr(eb.msg, "0102030405"));
    assert_int_equal(open_env(none, "cert-a", e, l, &eb), TORII_ENOTFOUND);
    assert_int_equal(open_env(NULL, "cert-a", e, l, &eb), TORII_ENOTFOUND);
    /* a KEK id edited to one that is loaded: refused by the tag */
    assert_int_equal(torii_kek_ring_current_id(r2, id1), TORII_OK);
    {
        unsigned char *e2 = NULL;
        size_t l2 = 0;

        seal(r2, "cert-a", &e2, &l2);
        memcpy(e + 5, e2 + 5, TORII_KEK_ID_LEN);
        assert_int_equal(open_env(r2, "cert-a", e, l, &eb), TORII_EPERM);
        free(e2);
    }
    assert_int_equal(torii_kek_seal(none, "x", 1, plain_key, 3, &e, &l, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "no KEK loaded"));
    free(e);
    torii_kek_ring_free(r1);
    torii_kek_ring_free(r2);
    torii_kek_ring_free(none);
}

static void test_kek_rotation_ring(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *old = ring_of(f->k1, NULL);
    struct torii_kek_ring *rot = ring_of(f->k2, f->k1);
    struct torii_errbuf eb = {{0}};
    unsigned char *e_old = NULL;
    unsigned char *e_new = NULL;
    size_t l_old = 0;
    size_t l_new = 0;

    seal(old, "cert-a", &e_old, &l_old);
    seal(rot, "cert-a", &e_new, &l_new);
    assert_int_equal(torii_kek_ring_count(rot), 2);
    /* new envelopes use the current KEK, old ones still open with the previous */
    assert_memory_not_equal(e_old + 5, e_new + 5, TORII_KEK_ID_LEN);
    assert_int_equal(open_env(rot, "cert-a", e_old, l_old, NULL), TORII_OK);
    assert_int_equal(open_env(rot, "cert-a", e_new, l_new, NULL), TORII_OK);
    assert_int_equal(open_env(old, "cert-a", e_new, l_new, &eb), TORII_ENOTFOUND);
    assert_int_equal(torii_kek_ring_add(rot, f->k1, 0, &eb), TORII_EEXIST);
    assert_non_null(strstr(eb.msg, "twice"));
    free(e_old);
    free(e_new);
    torii_kek_ring_free(old);
    torii_kek_ring_free(rot);
}

static void write_file(const char *path, const void *d, size_t n, mode_t mode)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(d, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_kek_files(void **state)
{
    struct kfx *f = *state;
    struct torii_errbuf eb = {{0}};
    unsigned char key[TORII_KEK_LEN];
    char p[128];
    char q[128];
    char hex[2 * TORII_KEK_LEN + 2];

    (void)snprintf(p, sizeof(p), "%s/raw", f->dir);
    write_file(p, f->k1, sizeof(f->k1), 0600);
    assert_int_equal(torii_kek_read_file(p, key, &eb), TORII_OK);
    assert_memory_equal(key, f->k1, sizeof(key));
    for (int i = 0; i < TORII_KEK_LEN; i++) {
        (void)snprintf(hex + 2 * i, 3, "%02x", f->k2[i]);
    }
    hex[2 * TORII_KEK_LEN] = '\n';
    (void)snprintf(p, sizeof(p), "%s/hex", f->dir);
    write_file(p, hex, 2 * TORII_KEK_LEN + 1, 0400);
    assert_int_equal(torii_kek_read_file(p, key, &eb), TORII_OK);
    assert_memory_equal(key, f->k2, sizeof(key));
    /* group/world bits refused, naming the file and the fix */
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(torii_kek_read_file(p, key, &eb), TORII_EPERM);
    assert_non_null(strstr(eb.msg, p));
    assert_non_null(strstr(eb.msg, "chmod 600"));
    assert_int_equal(chmod(p, 0604), 0);
    assert_int_equal(torii_kek_read_file(p, key, &eb), TORII_EPERM);
    /* wrong lengths, not hex, a symlink, a directory, a missing file */
    (void)snprintf(q, sizeof(q), "%s/short", f->dir);
    write_file(q, f->k1, 31, 0600);
    assert_int_equal(torii_kek_read_file(q, key, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "32 raw bytes or 64 hex digits"));
    hex[0] = 'z';
    write_file(q, hex, 2 * TORII_KEK_LEN, 0600);
    assert_int_equal(torii_kek_read_file(q, key, &eb), TORII_EINVAL);
    (void)snprintf(q, sizeof(q), "%s/link", f->dir);
    (void)snprintf(p, sizeof(p), "%s/raw", f->dir);
    assert_int_equal(symlink(p, q), 0);
    assert_int_equal(torii_kek_read_file(q, key, &eb), TORII_EIO);
    assert_int_equal(torii_kek_read_file(f->dir, key, &eb), TORII_EINVAL);
    (void)snprintf(q, sizeof(q), "%s/missing", f->dir);
    assert_int_equal(torii_kek_read_file(q, key, &eb), TORII_EIO);
    assert_non_null(strstr(eb.msg, q));
}

static void test_kek_ring_load_sources(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_sources s = {0};
    struct torii_kek_ring *r = NULL;
    struct torii_errbuf eb = {{0}};
    char cur[128];
    char prev[128];
    json_t *prevs;
    unsigned char *e = NULL;
    size_t l = 0;

    (void)snprintf(cur, sizeof(cur), "%s/torii-kek", f->dir);
    (void)snprintf(prev, sizeof(prev), "%s/old", f->dir);
    write_file(cur, f->k2, sizeof(f->k2), 0400);
    write_file(prev, f->k1, sizeof(f->k1), 0600);
    prevs = json_pack("[s]", prev);
    /* nothing configured: no ring, no error */
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_OK);
    assert_null(r);
    s.previous_files = prevs;
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "no current one"));
    /* a systemd credential: $CREDENTIALS_DIRECTORY/<name> */
    s.credential = "torii-kek";
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "CREDENTIALS_DIRECTORY"));
    s.credentials_dir = f->dir;
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_OK);
    assert_int_equal(torii_kek_ring_count(r), 2);
    seal(r, "x", &e, &l);
    torii_kek_ring_free(r);
    r = ring_of(f->k2, NULL); /* the credential's KEK is the current one */
    assert_int_equal(open_env(r, "x", e, l, NULL), TORII_OK);
    torii_kek_ring_free(r);
    r = NULL;
    s.credential = "../torii-kek";
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "plain file name"));
    s.file = cur;
    s.credential = "torii-kek";
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "both"));
    s.credential = NULL;
    json_decref(prevs);
    prevs = json_pack("[i]", 3);
    s.previous_files = prevs;
    assert_int_equal(torii_kek_ring_load(&s, &r, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "keys.previous_kek_files[0]"));
    assert_null(r);
    free(e);
    json_decref(prevs);
}

/* A self-signed P-256 certificate and its key, as an entity with id. */
static json_t *kek_entity(const char *id, EVP_PKEY **key_out)
{
    static const char *const dns[] = {"kek.test"};
    struct testpki_opts o;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    json_t *e;

    memset(&o, 0, sizeof(o));
    o.key_type = EVP_PKEY_EC;
    o.dns = dns;
    o.n_dns = 1;
    assert_int_equal(testpki_make(&o, &cert, &key), 0);
    e = testpki_entity(id, &cert, 1, key, NULL);
    assert_non_null(e);
    X509_free(cert);
    *key_out = key;
    return e;
}

/* The one pair: seal makes "TKEK:..." under the current KEK (a copy without one), open takes
 * it back with the same ring and record id only. */
static void test_key_seal_open_pair(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *r = ring_of(f->k1, NULL);
    struct torii_kek_ring *other = ring_of(f->k2, NULL);
    struct torii_errbuf eb = {{0}};
    EVP_PKEY *key = NULL;
    json_t *e = kek_entity("pair", &key);
    const char *pem = json_string_value(json_object_get(e, "privateKey"));
    char *sealed = NULL;
    char *copy = NULL;
    EVP_PKEY *k = NULL;

    assert_int_equal(torii_pki_key_seal(NULL, "pair", pem, &copy, &eb), TORII_OK);
    assert_string_equal(copy, pem);
    assert_int_equal(torii_pki_key_seal(r, "pair", pem, &sealed, &eb), TORII_OK);
    assert_true(torii_kek_text_is_sealed(sealed));
    assert_null(strstr(sealed, "PRIVATE KEY"));
    assert_int_equal(torii_pki_key_open(r, "pair", sealed, NULL, &k, &eb), TORII_OK);
    assert_int_equal(EVP_PKEY_eq(k, key), 1);
    EVP_PKEY_free(k);
    k = NULL;
    assert_int_equal(torii_pki_key_open(r, "pair", copy, NULL, &k, &eb), TORII_OK);
    assert_int_equal(EVP_PKEY_eq(k, key), 1);
    EVP_PKEY_free(k);
    k = NULL;
    assert_int_equal(torii_pki_key_open(NULL, "pair", sealed, NULL, &k, &eb), TORII_ENOTFOUND);
    assert_int_equal(torii_pki_key_open(other, "pair", sealed, NULL, &k, &eb), TORII_ENOTFOUND);
    assert_non_null(strstr(eb.msg, "pair"));
    assert_int_equal(torii_pki_key_open(r, "moved", sealed, NULL, &k, &eb), TORII_EPERM);
    assert_null(k);
    free(sealed);
    free(copy);
    EVP_PKEY_free(key);
    json_decref(e);
    torii_kek_ring_free(r);
    torii_kek_ring_free(other);
}

/* certdb's preparation with a ring: the entity's privateKey is stored sealed, the TLS record
 * holds no key bytes, and the stored entity opens back to the key. */
static void test_prepare_stores_the_key_once_sealed(void **state)
{
    struct kfx *f = *state;
    struct torii_kek_ring *r = ring_of(f->k1, NULL);
    struct torii_cert_prep_opts o = {.mode = TORII_CERT_PREP_ENRICH, .kek = r};
    struct torii_cert_prepared p;
    struct torii_certrec *rec = calloc(1, sizeof(*rec));
    struct torii_errbuf eb = {{0}};
    EVP_PKEY *key = NULL;
    json_t *e = kek_entity("prep", &key);
    EVP_PKEY *k = NULL;

    assert_non_null(rec);
    o.now_ms = (int64_t)time(NULL) * 1000;
    assert_int_equal(torii_cert_prepare(e, &o, &p, &eb), TORII_OK);
    assert_true(torii_kek_text_is_sealed(json_string_value(json_object_get(e, "privateKey"))));
    assert_true(json_is_true(json_object_get(e, "valid")));
    assert_int_equal(torii_certrec_decode(p.aux, p.aux_len, rec), TORII_OK);
    assert_true((rec->flags & TORII_CERTREC_KEY_MATCHES) != 0);
    assert_int_equal(rec->key_der.len, 0);
    assert_int_equal(torii_pki_entity_key_open(r, e, &k, &eb), TORII_OK);
    assert_int_equal(EVP_PKEY_eq(k, key), 1);
    EVP_PKEY_free(k);
    /* Prepared again (a replace keeping the key): still sealed, still opens. */
    torii_cert_prepared_clear(&p);
    assert_int_equal(torii_cert_prepare(e, &o, &p, &eb), TORII_OK);
    assert_true(torii_kek_text_is_sealed(json_string_value(json_object_get(e, "privateKey"))));
    torii_cert_prepared_clear(&p);
    free(rec);
    EVP_PKEY_free(key);
    json_decref(e);
    torii_kek_ring_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kek_roundtrip_and_layout),
        cmocka_unit_test(test_kek_other_record_and_tampering_refused),
        cmocka_unit_test(test_kek_wrong_kek_named_without_key_bytes),
        cmocka_unit_test(test_kek_rotation_ring),
        cmocka_unit_test(test_kek_files),
        cmocka_unit_test(test_kek_ring_load_sources),
        cmocka_unit_test(test_key_seal_open_pair),
        cmocka_unit_test(test_prepare_stores_the_key_once_sealed),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
