/* table_cert.c - the certificates of the TLS table (table_int.h): built from a TLS record
 * with only what selection needs (source mode) or with a copy of their materials (eager), and
 * parsed at first use: leaf, chain and key, through the table's source when nothing was kept.
 * Keys are opened only through pki (torii_pki_key_open). */
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "table_int.h"
#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"

#define TABLE_ID_MAX 511 /* the store's longest id (store.h) */

struct tls_parsed {
    X509 *leaf;
    STACK_OF(X509) * chain; /* the certificates after the leaf; may be empty */
    EVP_PKEY *key;
};

/* Eager materials: the record and the key source copied at update (a table without a source,
 * or an update that passes a key). NULL in source mode, where nothing but what selection needs
 * is kept and the materials are read from the store at first use. */
struct cert_mat {
    unsigned char *blob; /* private copy of the record */
    size_t blob_len;
    char *key_text;                   /* the entity's privateKey as stored (maybe sealed) */
    char *key_password;               /* NULL: none */
    const struct torii_kek_ring *kek; /* borrowed: outlives the table */
};

static void parsed_free(struct tls_parsed *p)
{
    if (p == NULL) {
        return;
    }
    X509_free(p->leaf);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    free(p);
}

static void mat_free(struct cert_mat *m)
{
    if (m == NULL) {
        return;
    }
    if (m->blob != NULL) {
        torii_secure_free(m->blob, m->blob_len);
    }
    if (m->key_text != NULL) {
        torii_secure_free(m->key_text, strlen(m->key_text));
    }
    if (m->key_password != NULL) {
        torii_secure_free(m->key_password, strlen(m->key_password));
    }
    free(m);
}

static void cert_free(struct torii_tls_cert *c)
{
    parsed_free(atomic_load_explicit(&c->parsed, memory_order_acquire));
    mat_free(c->mat);
    free(c);
}

void torii_tls_cert_ref(struct torii_tls_cert *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    }
}

void torii_tls_cert_unref(struct torii_tls_cert *c)
{
    if (c == NULL) {
        return;
    }
    size_t prev = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    TORII_ASSERT(prev > 0);
    if (prev == 1) {
        cert_free(c);
    }
}

const char *torii_tls_cert_id(const struct torii_tls_cert *c)
{
    return c->data;
}

int torii_tls_cert_key_type(const struct torii_tls_cert *c)
{
    return c->attr.key_type;
}

uint32_t torii_tls_cert_flags(const struct torii_tls_cert *c)
{
    return c->attr.flags;
}

static int x509_from_der(struct torii_slice der, X509 **out)
{
    const unsigned char *p = (const unsigned char *)der.ptr;
    X509 *x = NULL;

    if (der.len == 0 || der.len > LONG_MAX) {
        return TORII_ETLS;
    }
    x = d2i_X509(NULL, &p, (long)der.len);
    if (x == NULL || p != (const unsigned char *)der.ptr + der.len) {
        X509_free(x);
        return TORII_ETLS;
    }
    *out = x;
    return TORII_OK;
}

/* The certificates sent after the leaf: the record's chain minus any self-signed one. A
 * self-signed certificate is a trust anchor the client must already hold (RFC 8446 4.4.2,
 * RFC 5246 7.4.2 let the server omit it); sending it costs bytes on every handshake. Built
 * once per certificate (parse time); the stored chain is unchanged. */
static int chain_from_der(const struct torii_certrec *cr, STACK_OF(X509) * *out)
{
    int rc = TORII_OK;
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x = NULL;

    TORII_ENSURE(sk != NULL, TORII_ENOMEM);
    for (uint32_t i = 1; i < cr->n_chain; i++) {
        TORII_TRY(x509_from_der(cr->chain[i], &x));
        if (X509_self_signed(x, 1) == 1) {
            X509_free(x);
            x = NULL;
            continue;
        }
        TORII_ENSURE(sk_X509_push(sk, x) > 0, TORII_ENOMEM);
        x = NULL;
    }
    *out = sk;
    sk = NULL;
out:
    X509_free(x);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

int torii_table_serial_key(const X509 *x, unsigned char *out, size_t *len)
{
    unsigned char *der = NULL;
    unsigned int n = 0;
    int dlen;

    if (x == NULL || out == NULL || len == NULL) {
        return TORII_EINVAL;
    }
    dlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);
    if (dlen < 3 || dlen > TORII_CERTREC_SERIAL_MAX) {
        /* Same rule as the record (certrec.c): such a serial is never indexed. */
        OPENSSL_free(der);
        ERR_clear_error();
        return TORII_ENOTFOUND;
    }
    if (X509_NAME_digest(X509_get_issuer_name(x), EVP_sha256(), out, &n) != 1
        || n != TORII_CERTREC_ISSUER_HASH_LEN) {
        OPENSSL_free(der);
        ERR_clear_error();
        return TORII_ETLS;
    }
    memcpy(out + n, der, (size_t)dlen);
    OPENSSL_free(der);
    *len = n + (size_t)dlen;
    return TORII_OK;
}

/* ---- materials: the record and the key, at first use ---- */

/* What one use of the materials does (parse for a handshake, or copy the leaf out). */
struct mat_use {
    const struct torii_tls_cert *c;
    struct tls_parsed *parsed; /* parse: the result */
    X509 *leaf;                /* leaf_dup: the result */
    int want_key;              /* parse: the key too */
};

/* Leaf, chain and key from a decoded record and its key source. */
static int mat_parse(const struct torii_certrec *cr, const char *id,
                     const struct torii_pki_key_src *key, struct tls_parsed **out,
                     struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct tls_parsed *p = NULL;

    TORII_ENSURE(key != NULL && key->text != NULL && key->text[0] != '\0',
                 torii_errf(eb, TORII_ETLS, "no private key"));
    p = torii_xcalloc(1, sizeof(*p));
    TORII_TRY(x509_from_der(cr->chain[0], &p->leaf));
    TORII_TRY(chain_from_der(cr, &p->chain));
    /* Keys are opened only in pki (the at-rest envelope lives there), at first use. */
    TORII_ENSURE(torii_pki_key_open(key->kek, id, key->text, key->password, &p->key, eb)
                     == TORII_OK,
                 TORII_ETLS);
    *out = p;
    p = NULL;
out:
    parsed_free(p);
    return rc;
}

static int mat_use_cb(void *arg, const unsigned char *rec, size_t rec_len,
                      const struct torii_pki_key_src *key, struct torii_errbuf *eb)
{
    struct mat_use *u = arg;
    struct torii_certrec *cr = torii_xmalloc(sizeof(*cr));
    int rc = TORII_OK;

    TORII_ENSURE(rec != NULL && torii_certrec_decode(rec, rec_len, cr) == TORII_OK
                     && cr->n_chain > 0,
                 torii_errf(eb, TORII_ETLS, "no certificate record or an empty chain"));
    if (u->want_key) {
        rc = mat_parse(cr, u->c->data, key, &u->parsed, eb);
    } else if (x509_from_der(cr->chain[0], &u->leaf) != TORII_OK) {
        rc = torii_errf(eb, TORII_ETLS, "the leaf does not parse");
    }
out:
    free(cr);
    if (rc != TORII_OK) {
        ERR_clear_error();
    }
    return rc;
}

/* Run u over c's materials: its own copy, or what the table's source reads now. */
static int cert_with_mat(const struct torii_tls_cert *c, struct mat_use *u, struct torii_errbuf *eb)
{
    if (c->mat != NULL) {
        struct torii_pki_key_src key = {c->data, c->mat->key_text, c->mat->key_password,
                                        c->mat->kek};
        return mat_use_cb(u, c->mat->blob, c->mat->blob_len, &key, eb);
    }
    if (c->src == NULL || c->src->load == NULL) {
        return torii_errf(eb, TORII_ETLS, "no certificate record kept and no source to read it");
    }
    return c->src->load(c->src->arg, c->data, mat_use_cb, u, eb);
}

int torii_tls_cert_leaf_dup(const struct torii_tls_cert *c, X509 **out)
{
    struct mat_use u = {c, NULL, NULL, 0};
    struct torii_errbuf eb = {{0}};

    if (c == NULL || out == NULL) {
        return TORII_EINVAL;
    }
    if (cert_with_mat(c, &u, &eb) != TORII_OK || u.leaf == NULL) {
        ERR_clear_error();
        return TORII_ETLS;
    }
    *out = u.leaf;
    return TORII_OK;
}

/* First-use parse cost, for /metrics (lock-free, no allocation: sharded relaxed adds). Every
 * parse done is counted, a failed one or the losing copy of a race included: it cost the
 * handshake that did it as much. */
static void cert_parse_account(int64_t us)
{
    if (us < 0) {
        us = 0;
    }
    torii_metrics_inc(TORII_METRIC_CERT_PARSE);
    torii_metrics_add(TORII_METRIC_CERT_PARSE_SECONDS, us);
    torii_metrics_max(TORII_METRIC_CERT_PARSE_MAX_SECONDS, us);
}

/* Parse c's materials (counted), or fail and remember it. */
static int cert_parse(struct torii_tls_cert *c, struct tls_parsed **out)
{
    struct mat_use u = {c, NULL, NULL, 1};
    struct torii_errbuf eb = {{0}};
    int64_t t0 = torii_clock_mono_us();
    int rc = cert_with_mat(c, &u, &eb);

    cert_parse_account(torii_clock_mono_us() - t0);
    if (rc == TORII_OK && u.parsed == NULL) {
        rc = torii_errf(&eb, TORII_ETLS, "the source gave no materials");
    }
    if (rc != TORII_OK) {
        if (!atomic_exchange_explicit(&c->parse_failed, 1, memory_order_relaxed)) {
            torii_log(TORII_LOG_WARN, "tls: certificate does not parse: %s (id=%s)",
                      eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), c->data);
        }
        return TORII_ETLS;
    }
    *out = u.parsed;
    return TORII_OK;
}

int torii_tls_cert_get(struct torii_tls_cert *c, X509 **leaf, EVP_PKEY **key,
                       STACK_OF(X509) * *chain)
{
    int rc = TORII_OK;
    struct tls_parsed *p = NULL;
    struct tls_parsed *mine = NULL;

    TORII_ENSURE(c != NULL, TORII_EINVAL);
    p = atomic_load_explicit(&c->parsed, memory_order_acquire);
    if (p == NULL) {
        TORII_ENSURE(!atomic_load_explicit(&c->parse_failed, memory_order_relaxed), TORII_ETLS);
        TORII_TRY(cert_parse(c, &mine));
        /* Two threads may parse at once on first use; one publishes, the other drops its copy. */
        if (atomic_compare_exchange_strong_explicit(&c->parsed, &p, mine, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            p = mine;
            mine = NULL;
        }
    }
    TORII_ENSURE(p != NULL, TORII_ETLS); /* a failed exchange loaded the winner's copy */
    if (leaf != NULL) {
        *leaf = p->leaf;
    }
    if (key != NULL) {
        *key = p->key;
    }
    if (chain != NULL) {
        *chain = p->chain;
    }
out:
    parsed_free(mine);
    return rc;
}

/* ---- building a certificate from its record ---- */

static int names_cmp(const void *a, const void *b)
{
    return torii_tls__slice_cmp(*(const struct torii_slice *)a, *(const struct torii_slice *)b);
}

/* A record name as a table key: a normalized host name, or "*." + one. Returns its length, or
 * TORII_EINVAL for anything else (partial wildcards such as "f*.example.com" included). */
static int name_key_normalize(struct torii_slice in, char *out)
{
    if (in.len >= 2 && in.ptr[0] == '*' && in.ptr[1] == '.') {
        int n = torii_sni_name_normalize(in.ptr + 2, in.len - 2, out + 2);
        if (n < 0 || out[2] == '.') {
            return TORII_EINVAL;
        }
        out[0] = '*';
        out[1] = '.';
        return n + 2;
    }
    return torii_sni_name_normalize(in.ptr, in.len, out);
}

/* What a certificate is built from: the record's names normalized, sorted and unique
 * (slices into buf), and its issuer+serial key. */
struct cert_parts {
    char *buf;
    struct torii_slice *names;
    size_t n_names;
    size_t names_bytes; /* each name with its NUL */
    unsigned char skey[TORII_TABLE_SERIAL_KEY_MAX];
    size_t skey_len;
};

static void parts_names(struct cert_parts *pt, const struct torii_certrec *cr, const char *id)
{
    size_t total = 0;
    size_t used = 0;
    size_t n = 0;

    for (uint32_t i = 0; i < cr->n_names; i++) {
        total += cr->names[i].len + 3; /* "*." prefix kept, NUL added */
    }
    pt->buf = torii_xmalloc(total + 1);
    pt->names = torii_xcalloc(cr->n_names + 1, sizeof(*pt->names));
    for (uint32_t i = 0; i < cr->n_names; i++) {
        char *dst = pt->buf + used;
        int len = name_key_normalize(cr->names[i], dst);
        if (len <= 0) {
            torii_log(TORII_LOG_DEBUG, "tls: %s: name %u skipped (id=%s)", __func__, i, id);
            continue;
        }
        pt->names[n++] = (struct torii_slice){dst, (size_t)len};
        used += (size_t)len + 1;
    }
    qsort(pt->names, n, sizeof(*pt->names), names_cmp);
    for (size_t i = 0; i < n; i++) {
        if (pt->n_names == 0 || !torii_tls__slice_eq(pt->names[pt->n_names - 1], pt->names[i])) {
            pt->names[pt->n_names++] = pt->names[i];
            pt->names_bytes += pt->names[i].len + 1;
        }
    }
}

/* The issuer+serial key, from the record (version 2). A legacy version 1 record has no
 * identity fields; for a revoked one (the only kind the index must find) the leaf is parsed
 * here once, so a store written before version 2 still rejects its revoked client
 * certificates. Other v1 records stay out of the index (no parsing at start-up). */
static void parts_serial_key(struct cert_parts *pt, const struct torii_certrec *cr)
{
    X509 *leaf = NULL;

    if (cr->issuer_hash.len == TORII_CERTREC_ISSUER_HASH_LEN && cr->serial.len > 0
        && cr->serial.len <= TORII_CERTREC_SERIAL_MAX) {
        memcpy(pt->skey, cr->issuer_hash.ptr, cr->issuer_hash.len);
        memcpy(pt->skey + cr->issuer_hash.len, cr->serial.ptr, cr->serial.len);
        pt->skey_len = cr->issuer_hash.len + cr->serial.len;
        return;
    }
    if (cr->version >= 2 || (cr->flags & TORII_CERTREC_REVOKED) == 0 || cr->n_chain == 0) {
        return;
    }
    if (x509_from_der(cr->chain[0], &leaf) == TORII_OK
        && torii_table_serial_key(leaf, pt->skey, &pt->skey_len) != TORII_OK) {
        pt->skey_len = 0;
    }
    ERR_clear_error();
    X509_free(leaf);
}

/* The eager materials: the record and the key source, copied (wiped when the certificate
 * goes). */
static struct cert_mat *mat_new(const unsigned char *rec, size_t rec_len,
                                const struct torii_pki_key_src *key)
{
    struct cert_mat *m = torii_xcalloc(1, sizeof(*m));

    m->blob = torii_xmalloc(rec_len);
    memcpy(m->blob, rec, rec_len);
    m->blob_len = rec_len;
    if (key != NULL && key->text != NULL && key->text[0] != '\0') {
        m->key_text = torii_xstrdup(key->text);
        if (key->password != NULL && key->password[0] != '\0') {
            m->key_password = torii_xstrdup(key->password);
        }
        m->kek = key->kek;
    }
    return m;
}

/* The one allocation: fixed part, id, names, issuer+serial key. */
static struct torii_tls_cert *cert_alloc(const char *id, size_t id_len,
                                         const struct torii_certrec *cr,
                                         const struct cert_parts *pt)
{
    size_t size = sizeof(struct torii_tls_cert) + id_len + 1 + pt->names_bytes + pt->skey_len;
    struct torii_tls_cert *c = torii_xcalloc(1, size);
    char *p = c->data + id_len + 1;

    atomic_init(&c->refs, 1);
    atomic_init(&c->parsed, NULL);
    atomic_init(&c->parse_failed, 0);
    atomic_init(&c->pub_hash, 0);
    atomic_init(&c->spub_hash, 0);
    cds_lfht_node_init(&c->ht);
    cds_lfht_node_init(&c->sht);
    memcpy(c->data, id, id_len);
    c->id_len = (uint16_t)id_len;
    c->n_names = (uint16_t)pt->n_names;
    for (size_t i = 0; i < pt->n_names; i++) {
        memcpy(p, pt->names[i].ptr, pt->names[i].len);
        p += pt->names[i].len + 1;
    }
    c->skey_off = (uint16_t)(p - c->data);
    c->skey_len = (uint8_t)pt->skey_len;
    memcpy(p, pt->skey, pt->skey_len);
    c->attr.flags = cr->flags;
    c->attr.not_before_ms = cr->not_before_ms;
    c->attr.not_after_ms = cr->not_after_ms;
    c->attr.key_type = cr->key_type;
    return c;
}

/* A certificate from its record. Eager (materials copied) when the table has no source or a
 * key is given; otherwise only what selection needs is kept (source mode). */
int torii_tls__cert_new(const struct torii_table_src *src, const char *id, const unsigned char *rec,
                        size_t rec_len, const struct torii_pki_key_src *key,
                        struct torii_tls_cert **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    size_t id_len = strlen(id);
    struct torii_certrec *cr = torii_xmalloc(sizeof(*cr));
    struct cert_parts pt = {0};
    struct torii_tls_cert *c = NULL;
    int has_key = key != NULL && key->text != NULL && key->text[0] != '\0';

    TORII_ENSURE(id_len <= TABLE_ID_MAX,
                 torii_errf(eb, TORII_EINVAL, "tls: id longer than %d bytes", TABLE_ID_MAX));
    TORII_ENSURE(rec_len > 0, torii_errf(eb, TORII_EINVAL, "tls: empty certificate record"));
    TORII_ENSURE(torii_certrec_decode(rec, rec_len, cr) == TORII_OK,
                 torii_errf(eb, TORII_EINVAL, "tls: malformed certificate record"));
    /* A summary (certdb's index) has no chain: only a source can give the materials. */
    TORII_ENSURE(!cr->summary || (src != NULL && src->load != NULL && !has_key),
                 torii_errf(eb, TORII_EINVAL, "tls: a record summary needs the table's source"));
    parts_names(&pt, cr, id);
    parts_serial_key(&pt, cr);
    c = cert_alloc(id, id_len, cr, &pt);
    if (src == NULL || src->load == NULL || has_key) {
        /* A version 1 or 2 record's own key copy (cr->key_der) is never used: the key is the
         * entity's privateKey, opened at first use. */
        c->mat = mat_new(rec, rec_len, key);
        if (!has_key) {
            c->attr.flags &= ~(uint32_t)TORII_CERTREC_HAS_KEY;
        }
    } else {
        c->src = src;
    }
    if (cr->n_chain == 0 && !cr->summary) {
        /* Nothing to serve with, whatever the flags claim. */
        c->attr.flags &= ~(uint32_t)TORII_CERTREC_HAS_KEY;
    }
    *out = c;
out:
    free(pt.buf);
    free(pt.names);
    free(cr);
    return rc;
}
