/* fill.c - bench helper: put N ECDSA P-256 certificates for h<i>.bench.test (ids bench-<i>)
 * into a torii data dir, stored as the admin API stores a generated certificate (the entity
 * JSON with its derived fields, plus the TLS record), one certdb batch (one LMDB transaction)
 * per FILL_BATCH certificates.
 * With PEM_DIR, also writes <PEM_DIR>/h<i>.pem (chain + key) and <PEM_DIR>/list.txt for the
 * peers (HAProxy crt-list, nginx) to load the same certificates.
 *
 * Speed. torii's own path (torii_cert_generate_selfsigned -> torii_cert_enrich ->
 * torii_certrec_build) parses the PEM key and chain several times over, ~2.7 ms a certificate
 * with OpenSSL 3.0's decoders: 100,000 would take 4-5 minutes. So, for a benchmark only:
 *  - ONE key pair is generated and shared by every leaf. Each certificate still differs
 *    (names, serial, issuer hash, signature) and torii still parses each record's own copy of
 *    the key on that certificate's first use, so start-up, memory and first-use figures are
 *    those of distinct certificates;
 *  - each leaf is a template certificate (same profile as gen.c: CA:false, digitalSignature,
 *    serverAuth, SKI) given its own CN, SAN and random serial, then signed;
 *  - the entity and the record of certificate 0 are built by torii's path; the others are
 *    derived from them (the per-certificate fields replaced: id, domain, name, description,
 *    sans, subject, chain; the record re-encoded with the layout documented in
 *    src/pki/certrec.c).
 * Every FILL_CHECK_EVERY-th certificate (and the last) is also built by torii's path and
 * compared: the entity field by field, the record byte for byte. Any drift in torii's formats
 * stops the fill with an error rather than leaving a store torii would not have written.
 * ~0.1 ms a certificate: 100,000 in about 10 s on one core.
 * Stored through certdb (torii_certdb_batch_put_record: the serial index follows).
 * With --ndjson FILE, the entities go to FILE instead, one per line without their derived
 * fields, for POST /api/certificates/_bulk (scripts/bench.sh --only-bulk).
 * usage: torii-fill DATA_DIR COUNT [PEM_DIR] | torii-fill --ndjson FILE COUNT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "torii/certdb.h"
#include "torii/clock.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/store.h"

#define FILL_BATCH       500
#define FILL_CHECK_EVERY 1000
#define FILL_DAYS        365

/* What every certificate shares; built once by fill_init. Main thread only. */
struct fill_ctx {
    EVP_PKEY *key;
    char *key_pem; /* PKCS#8 PEM, as gen.c writes it */
    X509 *tmpl;    /* validity, public key and the constant extensions; rewritten per cert */
    int64_t now_ms;
    json_t *ent;                /* entity of certificate 0 (torii's path), rewritten per cert */
    struct torii_certrec *rec0; /* certificate 0's record, decoded (header fields) */
    unsigned char *rec0_buf;
    size_t rec0_len;
    char subj_pre[64]; /* the entity subject is subj_pre + name + subj_post */
    char subj_post[64];
    BIO *bio;
};

/* One certificate in the making. */
struct fill_cert {
    char name[64];
    char id[64];
    X509 *x; /* borrowed: the context's template, valid until the next fill_make */
    unsigned char *der;
    int der_len;
    char *pem;
};

static void fill_die(const char *what, const struct torii_errbuf *eb)
{
    (void)fprintf(stderr, "fill: %s%s%s\n", what, eb != NULL ? ": " : "",
                  eb != NULL ? eb->msg : "");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double fill_now(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *fill_bio_take(BIO *b)
{
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    char *s;

    if (len <= 0 || (s = malloc((size_t)len + 1)) == NULL) {
        fill_die("BIO", NULL);
    }
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    (void)BIO_reset(b);
    return s;
}

static void fill_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        fill_die("extension", NULL);
    }
    X509_EXTENSION_free(ext);
}

/* Certificate i: the template given its own serial, CN and SAN, then signed. The one X509 is
 * rewritten in place (X509_dup would decode the public key again: 3/4 of the time). */
static void fill_make(struct fill_ctx *f, long i, struct fill_cert *c)
{
    unsigned char serial[16];
    char san[80];
    X509_NAME *subj = X509_NAME_new();
    BIGNUM *bn;
    int loc;

    memset(c, 0, sizeof(*c));
    (void)snprintf(c->name, sizeof(c->name), "h%ld.bench.test", i);
    (void)snprintf(c->id, sizeof(c->id), "bench-%ld", i);
    c->x = f->tmpl;
    /* 128 random bits, positive, never zero: as gen.c. */
    if (subj == NULL || RAND_bytes(serial, sizeof(serial)) != 1) {
        fill_die("certificate", NULL);
    }
    serial[sizeof(serial) - 1] |= 1;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c->x)) == NULL
        || X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                      (const unsigned char *)c->name, -1, -1, 0)
               != 1
        || X509_set_subject_name(c->x, subj) != 1 || X509_set_issuer_name(c->x, subj) != 1) {
        fill_die("certificate names", NULL);
    }
    BN_free(bn);
    X509_NAME_free(subj);
    while ((loc = X509_get_ext_by_NID(c->x, NID_subject_alt_name, -1)) >= 0) {
        X509_EXTENSION_free(X509_delete_ext(c->x, loc));
    }
    (void)snprintf(san, sizeof(san), "DNS:%s", c->name);
    fill_ext(c->x, NID_subject_alt_name, san);
    if (X509_sign(c->x, f->key, EVP_sha256()) <= 0) {
        fill_die("sign", NULL);
    }
    c->der_len = i2d_X509(c->x, &c->der);
    if (c->der_len <= 0 || PEM_write_bio_X509(f->bio, c->x) != 1) {
        fill_die("encode", NULL);
    }
    c->pem = fill_bio_take(f->bio);
}

static void fill_cert_clear(struct fill_cert *c)
{
    OPENSSL_free(c->der);
    free(c->pem);
    memset(c, 0, sizeof(*c));
}

/* torii's own path, as POST /api/pki/certs would store it: the entity gen.c builds, enriched,
 * and its record. */
static void fill_slow(struct fill_ctx *f, const struct fill_cert *c, json_t **ent,
                      unsigned char **rec, size_t *rec_len)
{
    struct torii_errbuf eb = {{0}};
    json_t *e = torii_cert_template();

    if (e == NULL || json_object_set_new(e, "id", json_string(c->id)) != 0
        || json_object_set_new(e, "domain", json_string(c->name)) != 0
        || json_object_set_new(e, "name", json_string(c->name)) != 0
        || json_object_set_new(e, "description", json_sprintf("Certificate for %s", c->name)) != 0
        || json_object_set_new(e, "chain", json_string(c->pem)) != 0
        || json_object_set_new(e, "privateKey", json_string(f->key_pem)) != 0
        || json_object_set_new(e, "autoRenew", json_true()) != 0) {
        fill_die("entity", NULL);
    }
    if (torii_cert_enrich(e, f->now_ms, &eb) != TORII_OK) {
        fill_die("torii_cert_enrich", &eb);
    }
    if (torii_certrec_build(e, rec, rec_len, &eb) != TORII_OK) {
        fill_die("torii_certrec_build", &eb);
    }
    *ent = e;
}

static unsigned char *fill_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        *p++ = (unsigned char)(v >> (8 * i));
    }
    return p;
}

static unsigned char *fill_put_bytes(unsigned char *p, const void *b, size_t n)
{
    p = fill_put_u32(p, (uint32_t)n);
    if (n > 0) {
        memcpy(p, b, n);
    }
    return p + n;
}

/* The record of certificate c, from certificate 0's header fields (layout: src/pki/certrec.c). */
static unsigned char *fill_fast_rec(const struct fill_ctx *f, const struct fill_cert *c,
                                    size_t *len)
{
    const struct torii_certrec *r0 = f->rec0;
    unsigned char ih[EVP_MAX_MD_SIZE];
    unsigned int ih_len = 0;
    unsigned char *sn = NULL;
    int sn_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(c->x), &sn);
    size_t nlen = strlen(c->name);
    size_t total = 40 + (4 + nlen) + (4 + (size_t)c->der_len) + 4 /* no key bytes */
                   + (4 + TORII_CERTREC_ISSUER_HASH_LEN) + (4 + (size_t)sn_len);
    unsigned char *buf = malloc(total);
    unsigned char *p = buf;

    if (buf == NULL || sn_len < 3 || sn_len > TORII_CERTREC_SERIAL_MAX
        || X509_NAME_digest(X509_get_issuer_name(c->x), EVP_sha256(), ih, &ih_len) != 1
        || ih_len != TORII_CERTREC_ISSUER_HASH_LEN) {
        fill_die("record", NULL);
    }
    memcpy(p, f->rec0_buf, 12); /* magic, version, reserved, flags */
    p += 12;
    memcpy(p, f->rec0_buf + 12, 16); /* not_before_ms, not_after_ms: one validity for all */
    p += 16;
    p = fill_put_u32(p, (uint32_t)r0->key_type);
    p = fill_put_u32(p, 1); /* names: the SAN */
    p = fill_put_u32(p, 1); /* chain: the leaf */
    p = fill_put_bytes(p, c->name, nlen);
    p = fill_put_bytes(p, c->der, (size_t)c->der_len);
    p = fill_put_u32(p, 0); /* the key is stored once, in the entity's privateKey */
    p = fill_put_bytes(p, ih, ih_len);
    p = fill_put_bytes(p, sn, (size_t)sn_len);
    OPENSSL_free(sn);
    if ((size_t)(p - buf) != total) {
        fill_die("record size", NULL);
    }
    *len = total;
    return buf;
}

/* The entity of certificate c: certificate 0's, with the per-certificate fields replaced (in
 * place: every call replaces the same fields). Borrowed; valid until the next call. */
static json_t *fill_fast_ent(struct fill_ctx *f, const struct fill_cert *c)
{
    char subject[256];
    json_t *e = f->ent;

    (void)snprintf(subject, sizeof(subject), "%s%s%s", f->subj_pre, c->name, f->subj_post);
    if (json_object_set_new(e, "id", json_string(c->id)) != 0
        || json_object_set_new(e, "domain", json_string(c->name)) != 0
        || json_object_set_new(e, "name", json_string(c->name)) != 0
        || json_object_set_new(e, "description", json_sprintf("Certificate for %s", c->name)) != 0
        || json_object_set_new(e, "chain", json_string(c->pem)) != 0
        || json_object_set_new(e, "subject", json_string(subject)) != 0
        || json_object_set_new(e, "sans", json_pack("[s]", c->name)) != 0) {
        fill_die("entity", NULL);
    }
    return e;
}

static void fill_init(struct fill_ctx *f)
{
    struct torii_errbuf eb = {{0}};
    struct fill_cert c0;
    time_t t;
    const char *subject;
    const char *at;

    memset(f, 0, sizeof(*f));
    f->now_ms = torii_clock_now_ms();
    f->bio = BIO_new(BIO_s_mem());
    f->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (f->bio == NULL || f->key == NULL
        || PEM_write_bio_PrivateKey(f->bio, f->key, NULL, NULL, 0, NULL, NULL) != 1) {
        fill_die("key", NULL);
    }
    f->key_pem = fill_bio_take(f->bio);
    f->tmpl = X509_new();
    t = (time_t)(f->now_ms / 1000);
    if (f->tmpl == NULL || X509_set_version(f->tmpl, X509_VERSION_3) != 1
        || X509_time_adj_ex(X509_getm_notBefore(f->tmpl), 0, 0, &t) == NULL
        || X509_time_adj_ex(X509_getm_notAfter(f->tmpl), FILL_DAYS, 0, &t) == NULL
        || X509_set_pubkey(f->tmpl, f->key) != 1) {
        fill_die("template", NULL);
    }
    fill_ext(f->tmpl, NID_basic_constraints, "critical,CA:FALSE");
    fill_ext(f->tmpl, NID_key_usage, "critical,digitalSignature");
    fill_ext(f->tmpl, NID_ext_key_usage, "serverAuth");
    fill_ext(f->tmpl, NID_subject_key_identifier, "hash");
    fill_make(f, 0, &c0);
    fill_slow(f, &c0, &f->ent, &f->rec0_buf, &f->rec0_len);
    f->rec0 = malloc(sizeof(*f->rec0));
    if (f->rec0 == NULL || torii_certrec_decode(f->rec0_buf, f->rec0_len, f->rec0) != TORII_OK
        || f->rec0->n_names != 1 || f->rec0->n_chain != 1 || f->rec0_len < 40) {
        fill_die("record of certificate 0 is not the expected shape", &eb);
    }
    subject = json_string_value(json_object_get(f->ent, "subject"));
    at = subject != NULL ? strstr(subject, c0.name) : NULL;
    if (at == NULL || (size_t)(at - subject) >= sizeof(f->subj_pre)
        || strlen(at + strlen(c0.name)) >= sizeof(f->subj_post)) {
        fill_die("subject of certificate 0 does not hold its name", NULL);
    }
    (void)snprintf(f->subj_pre, sizeof(f->subj_pre), "%.*s", (int)(at - subject), subject);
    (void)snprintf(f->subj_post, sizeof(f->subj_post), "%s", at + strlen(c0.name));
    fill_cert_clear(&c0);
}

static void fill_fini(struct fill_ctx *f)
{
    EVP_PKEY_free(f->key);
    if (f->key_pem != NULL) {
        OPENSSL_cleanse(f->key_pem, strlen(f->key_pem));
    }
    free(f->key_pem);
    X509_free(f->tmpl);
    json_decref(f->ent);
    free(f->rec0);
    torii_secure_free(f->rec0_buf, f->rec0_len);
    BIO_free(f->bio);
}

/* Certificate c both ways: the derived entity and record must equal torii's. */
static void fill_check(struct fill_ctx *f, const struct fill_cert *c, const json_t *fast_ent,
                       const unsigned char *fast_rec, size_t fast_len)
{
    json_t *ent = NULL;
    unsigned char *rec = NULL;
    size_t len = 0;

    fill_slow(f, c, &ent, &rec, &len);
    if (!json_equal(ent, fast_ent)) {
        /* Without the private key (a throwaway one, but keys never go to logs). */
        json_t *ra = torii_cert_redacted(ent);
        json_t *rb = torii_cert_redacted(fast_ent);
        char *a = json_dumps(ra, JSON_COMPACT);
        char *b = json_dumps(rb, JSON_COMPACT);
        (void)fprintf(stderr, "fill: torii: %s\nfill: fill:  %s\n", a != NULL ? a : "?",
                      b != NULL ? b : "?");
        fill_die("entity differs from torii's own (update tests/bench/fill.c)", NULL);
    }
    if (len != fast_len || memcmp(rec, fast_rec, len) != 0) {
        fill_die("record differs from torii_certrec_build's (update tests/bench/fill.c)", NULL);
    }
    json_decref(ent);
    torii_secure_free(rec, len);
}

/* Write certificate i's PEM (chain + key) and its crt-list line for the peers. */
static void fill_pem(const struct fill_ctx *f, const struct fill_cert *c, const char *pem_dir,
                     long i, FILE *list)
{
    char path[4096];
    FILE *pf;

    (void)snprintf(path, sizeof(path), "%s/h%ld.pem", pem_dir, i);
    if ((pf = fopen(path, "w")) == NULL) {
        perror(path);
        exit(1);
    }
    (void)fprintf(pf, "%s%s", c->pem, f->key_pem);
    (void)fclose(pf);
    (void)fprintf(list, "%s %s\n", path, c->name);
}

/* One entity per line, as an API client would POST it to /api/certificates/_bulk (the
 * derived fields dropped: torii computes them). */
static void fill_ndjson_line(FILE *out, json_t *ent)
{
    static const char *const derived[] = {"domain", "subject", "sans",       "from",    "to",
                                          "ca",     "valid",   "selfSigned", "certType"};
    json_t *line = json_deep_copy(ent);
    char *s;

    for (size_t i = 0; line != NULL && i < sizeof(derived) / sizeof(derived[0]); i++) {
        (void)json_object_del(line, derived[i]);
    }
    s = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    if (s == NULL) {
        fill_die("json_dumps", NULL);
    }
    (void)fprintf(out, "%s\n", s);
    torii_secure_free(s, strlen(s));
    json_decref(line);
}

/* One batch [base, base + FILL_BATCH) into the store through certdb (one transaction) or, with
 * nd, into the NDJSON file. */
static long fill_batch(struct fill_ctx *f, struct torii_store *st, FILE *nd, long base, long n,
                       const char *pem_dir, FILE *list)
{
    struct torii_errbuf eb = {{0}};
    struct torii_certdb_batch *b = nd == NULL ? torii_certdb_batch_new(st) : NULL;
    long checked = 0;

    for (long i = base; i < n && i < base + FILL_BATCH; i++) {
        struct fill_cert c;
        unsigned char *rec;
        size_t rec_len = 0;
        json_t *ent;

        fill_make(f, i, &c);
        ent = fill_fast_ent(f, &c);
        rec = fill_fast_rec(f, &c, &rec_len);
        if (i % FILL_CHECK_EVERY == 0 || i == n - 1) {
            fill_check(f, &c, ent, rec, rec_len);
            checked++;
        }
        if (list != NULL) {
            fill_pem(f, &c, pem_dir, i, list);
        }
        if (nd != NULL) {
            fill_ndjson_line(nd, ent);
        } else if (torii_certdb_batch_put_record(b, ent, rec, rec_len, &eb) != TORII_OK) {
            fill_die("certdb", &eb);
        }
        torii_secure_free(rec, rec_len);
        fill_cert_clear(&c);
    }
    if (b != NULL && torii_certdb_batch_commit(b, TORII_CERTDB_ATOMIC, &eb) != TORII_OK) {
        fill_die("store write", &eb);
    }
    torii_certdb_batch_free(b);
    return checked;
}

int main(int argc, char **argv)
{
    struct torii_store_opts so = {0};
    struct torii_store *st = NULL;
    struct torii_errbuf eb = {{0}};
    int ndjson = argc >= 2 && strcmp(argv[1], "--ndjson") == 0;
    const char *pem_dir = !ndjson && argc == 4 ? argv[3] : NULL;
    struct fill_ctx f;
    FILE *list = NULL;
    FILE *nd = NULL;
    double t0 = fill_now();
    long checked = 0;
    long n;

    if ((ndjson ? argc != 4 || (n = atol(argv[3])) <= 0
                : argc < 3 || argc > 4 || (n = atol(argv[2])) <= 0)) {
        (void)fprintf(stderr, "usage: torii-fill DATA_DIR COUNT [PEM_DIR]\n"
                              "       torii-fill --ndjson FILE COUNT\n");
        return 2;
    }
    if (pem_dir != NULL) {
        char path[4096];
        (void)snprintf(path, sizeof(path), "%s/list.txt", pem_dir);
        if ((list = fopen(path, "w")) == NULL) {
            perror(path);
            return 1;
        }
    }
    if (ndjson && (nd = fopen(argv[2], "w")) == NULL) {
        perror(argv[2]);
        return 1;
    }
    so.dir = argv[ndjson ? 2 : 1];
    so.certidx = torii_certdb_idx_derive; /* certdb's compact index follows */
    if (!ndjson && torii_store_open(&so, &st, &eb) != TORII_OK) {
        fill_die("store", &eb);
    }
    fill_init(&f);
    for (long base = 0; base < n; base += FILL_BATCH) {
        checked += fill_batch(&f, st, nd, base, n, pem_dir, list);
    }
    torii_store_free(st);
    fill_fini(&f);
    if (list != NULL) {
        (void)fclose(list);
    }
    if (nd != NULL && fclose(nd) != 0) {
        perror(argv[2]);
        return 1;
    }
    (void)printf("fill: %ld certificates in %s (%.1f s; %ld checked against torii's own path)\n", n,
                 so.dir, fill_now() - t0, checked);
    return 0;
}
