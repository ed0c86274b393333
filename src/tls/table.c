/* table.c - the RCU certificate table (see table.h for the contract).
 *
 * Two liburcu lock-free hash tables (default flavour, urcu-memb):
 *   names: lower-cased name ("a.example.com" or "*.example.com") -> struct name_node, an
 *          immutable array of the candidate certificates carrying that name;
 *   ids:   entity id -> struct id_node, the certificate currently installed under that id.
 *          Writers use it to find a certificate's previous names; readers use it to resolve the
 *          default certificate, which is kept by id, and torii_table_get.
 *   serials: SHA-256(issuer name DER) || serialNumber DER -> struct name_node (same layout as
 *          the names table: the certificates whose leaf has that issuer and serial). Readers
 *          use it to find the store entity of a presented client certificate (revocation).
 * Nodes never change after publication. A writer (serialized by t->lock) builds a fresh node
 * for every name the changed certificate had or now has (copy on write), swaps it in with
 * cds_lfht_replace / add / del, and hands the old node to call_rcu, which drops its
 * certificate references after a grace period. Every node holds one reference on each
 * certificate it lists, so a certificate lives as long as any node or any handshake holds it.
 *
 * TSan cannot see the ordering liburcu provides (it is not instrumented), so publication is
 * modelled with a C11 release store / acquire load of each node's hash, and grace periods with
 * __tsan_release / __tsan_acquire on one token (see grace_*).
 */
#include "torii/table.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

#include "torii/clock.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/metrics.h"
#include "torii/pki.h"

#define TABLE_MIN_BUCKETS 64

#if defined(__SANITIZE_THREAD__)
#define TABLE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TABLE_TSAN 1
#endif
#endif

#ifdef TABLE_TSAN
#include <sanitizer/tsan_interface.h>

/* Sync token for TSan only (any thread; never read or written). Readers release it when they
 * leave a read-side section and writers before they queue a callback; callbacks and code after
 * a grace period acquire it: exactly the ordering a grace period guarantees. */
static char grace_token;

static void grace_release(void)
{
    __tsan_release(&grace_token);
}

static void grace_acquire(void)
{
    __tsan_acquire(&grace_token);
}
#else
static void grace_release(void)
{
}

static void grace_acquire(void)
{
}
#endif

/* Per thread: this thread is registered with liburcu through this module. */
static _Thread_local int reader_registered;

struct tls_parsed {
    X509 *leaf;
    STACK_OF(X509) * chain; /* the certificates after the leaf; may be empty */
    EVP_PKEY *key;
};

struct torii_tls_cert {
    struct torii_sni_attr attr; /* immutable */
    atomic_size_t refs;
    char *id;
    unsigned char *blob; /* private copy of the record; chain points into it */
    size_t blob_len;
    uint32_t n_chain;
    struct torii_slice chain[TORII_CERTREC_MAX_CHAIN];
    char *key_text;                   /* the entity's privateKey as stored (maybe sealed) */
    char *key_password;               /* NULL: none */
    const struct torii_kek_ring *kek; /* borrowed: outlives the table */
    size_t n_names;
    struct torii_slice *names; /* normalized, sorted, unique; into name_buf */
    char *name_buf;
    _Atomic(struct tls_parsed *) parsed; /* set once, by compare-exchange */
    atomic_int parse_failed;
    size_t skey_len; /* 0: not in the issuer+serial index */
    unsigned char skey[TORII_TABLE_SERIAL_KEY_MAX];
};

struct name_node {
    struct cds_lfht_node ht;
    struct rcu_head rcu;
    atomic_ulong pub_hash; /* stored last (release): publishes the fields below */
    size_t key_len;
    char *key; /* points past cands[] */
    size_t n;
    const struct torii_sni_attr *cands[]; /* &cert->attr, one reference each */
};

struct id_node {
    struct cds_lfht_node ht;
    struct rcu_head rcu;
    atomic_ulong pub_hash;
    struct torii_tls_cert *cert; /* one reference; key is cert->id */
};

struct default_id {
    struct rcu_head rcu;
    unsigned long hash;
    size_t len;
    char id[];
};

struct torii_table {
    struct cds_lfht *names;
    struct cds_lfht *ids;
    struct cds_lfht *serials;
    _Atomic(struct default_id *) def;
    pthread_mutex_t lock; /* serializes writers */
    atomic_size_t count;
    uint64_t seed;
    /* Writer side (t->lock): nodes in names and serials, and the bucket counts each table was
     * last grown to by table_fit (ids: count). */
    size_t n_names;
    size_t n_serials;
    unsigned long names_size;
    unsigned long ids_size;
    unsigned long serials_size;
};

struct lookup_key {
    const char *ptr;
    size_t len;
    unsigned long hash;
};

static struct torii_tls_cert *cert_of(const struct torii_sni_attr *a)
{
    return caa_container_of(a, struct torii_tls_cert, attr);
}

/* ---- hashing ---- */

static unsigned long table_hash(const struct torii_table *t, const char *s, size_t len)
{
    return (unsigned long)torii_hash64(t->seed, s, len);
}

/* ---- certificates ---- */

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

static void cert_free(struct torii_tls_cert *c)
{
    parsed_free(atomic_load_explicit(&c->parsed, memory_order_acquire));
    if (c->blob != NULL) {
        OPENSSL_cleanse(c->blob, c->blob_len);
        free(c->blob);
    }
    if (c->key_text != NULL) {
        torii_secure_free(c->key_text, strlen(c->key_text));
    }
    if (c->key_password != NULL) {
        torii_secure_free(c->key_password, strlen(c->key_password));
    }
    free(c->names);
    free(c->name_buf);
    free(c->id);
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
    return c->id;
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
static int chain_from_der(const struct torii_tls_cert *c, STACK_OF(X509) * *out)
{
    int rc = TORII_OK;
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x = NULL;

    TORII_ENSURE(sk != NULL, TORII_ENOMEM);
    for (uint32_t i = 1; i < c->n_chain; i++) {
        TORII_TRY(x509_from_der(c->chain[i], &x));
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

int torii_tls_cert_leaf_dup(const struct torii_tls_cert *c, X509 **out)
{
    X509 *x = NULL;

    if (c == NULL || out == NULL || c->n_chain == 0) {
        return TORII_EINVAL;
    }
    if (x509_from_der(c->chain[0], &x) != TORII_OK) {
        ERR_clear_error();
        return TORII_ETLS;
    }
    *out = x;
    return TORII_OK;
}

static int cert_parse(const struct torii_tls_cert *c, struct tls_parsed **out,
                      struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct tls_parsed *p = torii_xcalloc(1, sizeof(*p));

    TORII_ENSURE(c->n_chain > 0 && c->key_text != NULL,
                 torii_errf(eb, TORII_ETLS, "no chain or no private key"));
    TORII_TRY(x509_from_der(c->chain[0], &p->leaf));
    TORII_TRY(chain_from_der(c, &p->chain));
    /* Keys are opened only in pki (the at-rest envelope lives there), at first use. */
    TORII_ENSURE(torii_pki_key_open(c->kek, c->id, c->key_text, c->key_password, &p->key, eb)
                     == TORII_OK,
                 TORII_ETLS);
    *out = p;
    p = NULL;
out:
    parsed_free(p);
    if (rc != TORII_OK) {
        ERR_clear_error();
    }
    return rc;
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

int torii_tls_cert_get(struct torii_tls_cert *c, X509 **leaf, EVP_PKEY **key,
                       STACK_OF(X509) * *chain)
{
    int rc = TORII_OK;
    struct tls_parsed *p = NULL;
    struct tls_parsed *mine = NULL;
    struct torii_errbuf eb = {{0}};
    int64_t t0;

    TORII_ENSURE(c != NULL, TORII_EINVAL);
    p = atomic_load_explicit(&c->parsed, memory_order_acquire);
    if (p == NULL) {
        TORII_ENSURE(!atomic_load_explicit(&c->parse_failed, memory_order_relaxed), TORII_ETLS);
        t0 = torii_clock_mono_us();
        rc = cert_parse(c, &mine, &eb);
        cert_parse_account(torii_clock_mono_us() - t0);
        if (rc != TORII_OK) {
            if (!atomic_exchange_explicit(&c->parse_failed, 1, memory_order_relaxed)) {
                torii_log(TORII_LOG_WARN, "tls: certificate does not parse: %s (id=%s)",
                          eb.msg[0] != '\0' ? eb.msg : torii_strerror(rc), c->id);
            }
            goto out;
        }
        /* Two threads may parse at once on first use; one publishes, the other drops its copy. */
        if (atomic_compare_exchange_strong_explicit(&c->parsed, &p, mine, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            p = mine;
            mine = NULL;
        }
    }
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

static int slice_cmp(const void *a, const void *b)
{
    const struct torii_slice *x = a;
    const struct torii_slice *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    if (c != 0) {
        return c;
    }
    return (x->len > y->len) - (x->len < y->len);
}

static int slice_eq(struct torii_slice a, struct torii_slice b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
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

static void cert_set_names(struct torii_tls_cert *c, const struct torii_certrec *cr)
{
    size_t total = 0;
    size_t used = 0;
    size_t n = 0;

    for (uint32_t i = 0; i < cr->n_names; i++) {
        total += cr->names[i].len + 3; /* "*." prefix kept, NUL added */
    }
    c->name_buf = torii_xmalloc(total + 1);
    c->names = torii_xcalloc(cr->n_names + 1, sizeof(*c->names));
    for (uint32_t i = 0; i < cr->n_names; i++) {
        char *dst = c->name_buf + used;
        int len = name_key_normalize(cr->names[i], dst);
        if (len <= 0) {
            torii_log(TORII_LOG_DEBUG, "tls: %s: name %u skipped (id=%s)", __func__, i, c->id);
            continue;
        }
        c->names[n].ptr = dst;
        c->names[n].len = (size_t)len;
        n++;
        used += (size_t)len + 1;
    }
    qsort(c->names, n, sizeof(*c->names), slice_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u == 0 || !slice_eq(c->names[u - 1], c->names[i])) {
            c->names[u++] = c->names[i];
        }
    }
    c->n_names = u;
}

/* The issuer+serial key, from the record (version 2). A legacy version 1 record has no
 * identity fields; for a revoked one (the only kind the index must find) the leaf is parsed
 * here once, so a store written before version 2 still rejects its revoked client
 * certificates. Other v1 records stay out of the index (no parsing at start-up). */
static void cert_set_serial_key(struct torii_tls_cert *c, const struct torii_certrec *cr)
{
    X509 *leaf = NULL;

    if (cr->issuer_hash.len == TORII_CERTREC_ISSUER_HASH_LEN && cr->serial.len > 0
        && cr->serial.len <= TORII_CERTREC_SERIAL_MAX) {
        memcpy(c->skey, cr->issuer_hash.ptr, cr->issuer_hash.len);
        memcpy(c->skey + cr->issuer_hash.len, cr->serial.ptr, cr->serial.len);
        c->skey_len = cr->issuer_hash.len + cr->serial.len;
        return;
    }
    if (cr->version >= 2 || (c->attr.flags & TORII_CERTREC_REVOKED) == 0 || c->n_chain == 0) {
        return;
    }
    if (x509_from_der(c->chain[0], &leaf) == TORII_OK
        && torii_table_serial_key(leaf, c->skey, &c->skey_len) != TORII_OK) {
        c->skey_len = 0;
    }
    ERR_clear_error();
    X509_free(leaf);
}

/* The key source, copied (the text is wiped when the certificate is freed). */
static void cert_set_key(struct torii_tls_cert *c, const struct torii_pki_key_src *key)
{
    if (key == NULL || key->text == NULL || key->text[0] == '\0') {
        return;
    }
    c->key_text = torii_xstrdup(key->text);
    if (key->password != NULL && key->password[0] != '\0') {
        c->key_password = torii_xstrdup(key->password);
    }
    c->kek = key->kek;
}

static int cert_new(const char *id, const unsigned char *rec, size_t rec_len,
                    const struct torii_pki_key_src *key, struct torii_tls_cert **out,
                    struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_certrec *cr = NULL;
    struct torii_tls_cert *c = NULL;

    TORII_ENSURE(rec_len > 0, torii_errf(eb, TORII_EINVAL, "tls: empty certificate record"));
    cr = torii_xmalloc(sizeof(*cr));
    c = torii_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    atomic_init(&c->parsed, NULL);
    atomic_init(&c->parse_failed, 0);
    c->id = torii_xstrdup(id);
    c->blob = torii_xmalloc(rec_len);
    memcpy(c->blob, rec, rec_len);
    c->blob_len = rec_len;
    /* Decode our own copy so every slice points into memory this certificate owns. */
    if (torii_certrec_decode(c->blob, rec_len, cr) != TORII_OK) {
        rc = torii_errf(eb, TORII_EINVAL, "tls: malformed certificate record");
        goto out;
    }
    TORII_ENSURE(cr->n_chain <= TORII_CERTREC_MAX_CHAIN && cr->n_names <= TORII_CERTREC_MAX_NAMES,
                 torii_errf(eb, TORII_EINVAL, "tls: malformed certificate record"));
    c->attr.flags = cr->flags;
    c->attr.not_before_ms = cr->not_before_ms;
    c->attr.not_after_ms = cr->not_after_ms;
    c->attr.key_type = cr->key_type;
    c->n_chain = cr->n_chain;
    memcpy(c->chain, cr->chain, cr->n_chain * sizeof(cr->chain[0]));
    /* A version 1 or 2 record's own key copy (cr->key_der) is never used: the key is the
     * entity's privateKey, opened at first use. */
    cert_set_key(c, key);
    if (c->n_chain == 0 || c->key_text == NULL) {
        /* Nothing to serve with, whatever the flags claim. */
        c->attr.flags &= ~(uint32_t)TORII_CERTREC_HAS_KEY;
    }
    cert_set_names(c, cr);
    cert_set_serial_key(c, cr);
    *out = c;
    c = NULL;
out:
    if (c != NULL) {
        cert_free(c);
    }
    free(cr);
    return rc;
}

/* ---- nodes ---- */

static int name_match(struct cds_lfht_node *node, const void *key)
{
    const struct name_node *n = caa_container_of(node, struct name_node, ht);
    const struct lookup_key *k = key;

    if (atomic_load_explicit(&n->pub_hash, memory_order_acquire) != k->hash) {
        return 0;
    }
    return n->key_len == k->len && memcmp(n->key, k->ptr, k->len) == 0;
}

static int id_match(struct cds_lfht_node *node, const void *key)
{
    const struct id_node *n = caa_container_of(node, struct id_node, ht);
    const struct lookup_key *k = key;

    if (atomic_load_explicit(&n->pub_hash, memory_order_acquire) != k->hash) {
        return 0;
    }
    return strlen(n->cert->id) == k->len && memcmp(n->cert->id, k->ptr, k->len) == 0;
}

static struct name_node *name_node_new(const struct lookup_key *k, size_t n)
{
    struct name_node *node =
        torii_xmalloc(sizeof(*node) + n * sizeof(const struct torii_sni_attr *) + k->len + 1);
    cds_lfht_node_init(&node->ht);
    atomic_init(&node->pub_hash, 0);
    node->key = (char *)&node->cands[n];
    memcpy(node->key, k->ptr, k->len);
    node->key[k->len] = '\0';
    node->key_len = k->len;
    node->n = 0;
    return node;
}

static void name_node_free(struct name_node *node)
{
    for (size_t i = 0; i < node->n; i++) {
        torii_tls_cert_unref(cert_of(node->cands[i]));
    }
    free(node);
}

static void name_node_free_cb(struct rcu_head *head)
{
    grace_acquire();
    name_node_free(caa_container_of(head, struct name_node, rcu));
}

static void id_node_free_cb(struct rcu_head *head)
{
    struct id_node *node = caa_container_of(head, struct id_node, rcu);

    grace_acquire();
    torii_tls_cert_unref(node->cert);
    free(node);
}

static void default_free_cb(struct rcu_head *head)
{
    grace_acquire();
    free(caa_container_of(head, struct default_id, rcu));
}

static void defer_free(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
    grace_release();
    call_rcu(head, fn);
}

/* ---- writers ---- */

/* liburcu requires writers (cds_lfht_add/del/replace, call_rcu) to be registered threads;
 * register a thread for the duration of one call when it is not a reader already. */
static int writer_enter(void)
{
    if (reader_registered) {
        return 0;
    }
    rcu_register_thread();
    reader_registered = 1;
    return 1;
}

static void writer_leave(int temporary)
{
    if (temporary) {
        rcu_unregister_thread();
        reader_registered = 0;
    }
}

/* Rebuild the node of one key of ht (the names or the serials table): drop `gone` (may be
 * NULL), add `added` (may be NULL). Called under t->lock, inside rcu_read_lock. */
static void key_apply(struct torii_table *t, struct cds_lfht *ht, struct torii_slice name,
                      const struct torii_tls_cert *gone, struct torii_tls_cert *added)
{
    size_t *nodes = ht == t->names ? &t->n_names : &t->n_serials;
    struct lookup_key k = {name.ptr, name.len, table_hash(t, name.ptr, name.len)};
    struct cds_lfht_iter iter;
    struct name_node *old = NULL;
    struct name_node *node = NULL;
    size_t keep = 0;

    cds_lfht_lookup(ht, k.hash, name_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        old = caa_container_of(hn, struct name_node, ht);
        for (size_t i = 0; i < old->n; i++) {
            keep += cert_of(old->cands[i]) != gone;
        }
    }
    if (keep == 0 && added == NULL) {
        if (old != NULL) {
            TORII_ASSERT(cds_lfht_del(ht, &old->ht) == 0);
            defer_free(&old->rcu, name_node_free_cb);
            (*nodes)--;
        }
        return;
    }
    node = name_node_new(&k, keep + (added != NULL));
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        struct torii_tls_cert *c = cert_of(old->cands[i]);
        if (c != gone) {
            torii_tls_cert_ref(c);
            node->cands[node->n++] = &c->attr;
        }
    }
    if (added != NULL) {
        torii_tls_cert_ref(added);
        node->cands[node->n++] = &added->attr;
    }
    atomic_store_explicit(&node->pub_hash, k.hash, memory_order_release);
    if (old != NULL) {
        TORII_ASSERT(cds_lfht_replace(ht, &iter, k.hash, name_match, &k, &node->ht) == 0);
        defer_free(&old->rcu, name_node_free_cb);
    } else {
        cds_lfht_add(ht, k.hash, &node->ht);
        (*nodes)++;
    }
}

/* Walk the sorted name lists of the old and new certificate together, so each name is
 * rebuilt exactly once: cost O(old names + new names). */
static void names_apply(struct torii_table *t, const struct torii_tls_cert *oc,
                        struct torii_tls_cert *nc)
{
    size_t i = 0;
    size_t j = 0;
    size_t on = oc != NULL ? oc->n_names : 0;
    size_t nn = nc != NULL ? nc->n_names : 0;

    while (i < on || j < nn) {
        int cmp;
        if (i == on) {
            cmp = 1;
        } else if (j == nn) {
            cmp = -1;
        } else {
            cmp = slice_cmp(&oc->names[i], &nc->names[j]);
        }
        if (cmp < 0) {
            key_apply(t, t->names, oc->names[i++], oc, NULL);
        } else if (cmp > 0) {
            key_apply(t, t->names, nc->names[j++], NULL, nc);
        } else {
            key_apply(t, t->names, nc->names[j], oc, nc);
            i++;
            j++;
        }
    }
}

/* The issuer+serial index: at most one key per certificate. */
static void serial_apply(struct torii_table *t, const struct torii_tls_cert *oc,
                         struct torii_tls_cert *nc)
{
    struct torii_slice ok = {NULL, 0};
    struct torii_slice nk = {NULL, 0};

    if (oc != NULL && oc->skey_len > 0) {
        ok = (struct torii_slice){(const char *)oc->skey, oc->skey_len};
    }
    if (nc != NULL && nc->skey_len > 0) {
        nk = (struct torii_slice){(const char *)nc->skey, nc->skey_len};
    }
    if (ok.len > 0 && nk.len > 0 && slice_eq(ok, nk)) {
        key_apply(t, t->serials, nk, oc, nc);
        return;
    }
    if (ok.len > 0) {
        key_apply(t, t->serials, ok, oc, NULL);
    }
    if (nk.len > 0) {
        key_apply(t, t->serials, nk, NULL, nc);
    }
}

/* Install nc (may be NULL: remove) under its id, replacing `old` (may be NULL). Takes nc's
 * reference. Called under t->lock, inside rcu_read_lock, with iter on old. */
static void id_apply(struct torii_table *t, const struct lookup_key *k, struct cds_lfht_iter *iter,
                     struct id_node *old, struct torii_tls_cert *nc)
{
    if (nc != NULL) {
        struct id_node *node = torii_xmalloc(sizeof(*node));
        cds_lfht_node_init(&node->ht);
        node->cert = nc;
        atomic_init(&node->pub_hash, 0);
        atomic_store_explicit(&node->pub_hash, k->hash, memory_order_release);
        if (old != NULL) {
            TORII_ASSERT(cds_lfht_replace(t->ids, iter, k->hash, id_match, k, &node->ht) == 0);
        } else {
            cds_lfht_add(t->ids, k->hash, &node->ht);
            atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
        }
    } else if (old != NULL) {
        TORII_ASSERT(cds_lfht_del(t->ids, &old->ht) == 0);
        atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
    }
    if (old != NULL) {
        defer_free(&old->rcu, id_node_free_cb);
    }
}

/* liburcu grows a table lazily: from its call_rcu thread, and only once chains average 8
 * nodes. A bulk load (start-up: 100,000 certificates in a few hundred ms) outruns that, and
 * when the call_rcu thread is short of CPU the lookups walk chains of thousands (start-up
 * took 0.4 s to 10 s for the same store). So the writer grows each table itself, at once,
 * to at least one bucket per two nodes; shrinking stays liburcu's (lazy, on deletes). Called
 * under t->lock, registered, outside any read-side section (cds_lfht_resize's rules). */
static void table_fit(struct cds_lfht *ht, size_t nodes, unsigned long *size)
{
    unsigned long want = *size;

    if (nodes < want / 8 && want > TABLE_MIN_BUCKETS) {
        /* Far below the mark (liburcu may have shrunk it): lower the mark, grow again later. */
        want /= 2;
    }
    *size = want;
    if (nodes <= 2 * want) {
        return;
    }
    while (2 * want < nodes) {
        want *= 2;
    }
    cds_lfht_resize(ht, want);
    *size = want;
}

int torii_table_update(struct torii_table *t, const char *id, const unsigned char *rec,
                       size_t rec_len, const struct torii_pki_key_src *key, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_tls_cert *nc = NULL;
    struct id_node *old = NULL;
    struct cds_lfht_iter iter;
    struct cds_lfht_node *hn = NULL;
    struct lookup_key k = {0};
    int temporary = 0;

    TORII_ENSURE(t != NULL && id != NULL && id[0] != '\0',
                 torii_errf(eb, TORII_EINVAL, "tls: table update needs an id"));
    if (rec != NULL) {
        TORII_TRY(cert_new(id, rec, rec_len, key, &nc, eb));
    }
    k.ptr = id;
    k.len = strlen(id);
    k.hash = table_hash(t, id, k.len);

    temporary = writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    rcu_read_lock();
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        old = caa_container_of(hn, struct id_node, ht);
    }
    names_apply(t, old != NULL ? old->cert : NULL, nc);
    serial_apply(t, old != NULL ? old->cert : NULL, nc);
    id_apply(t, &k, &iter, old, nc);
    nc = NULL; /* the id node holds our reference now */
    rcu_read_unlock();
    table_fit(t->names, t->n_names, &t->names_size);
    table_fit(t->ids, atomic_load_explicit(&t->count, memory_order_relaxed), &t->ids_size);
    table_fit(t->serials, t->n_serials, &t->serials_size);
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    writer_leave(temporary);
out:
    torii_tls_cert_unref(nc);
    return rc;
}

void torii_table_set_default(struct torii_table *t, const char *id)
{
    struct default_id *d = NULL;
    struct default_id *old = NULL;
    int temporary;

    if (t == NULL) {
        return;
    }
    if (id != NULL && id[0] != '\0') {
        size_t len = strlen(id);
        d = torii_xmalloc(sizeof(*d) + len + 1);
        memcpy(d->id, id, len + 1);
        d->len = len;
        d->hash = table_hash(t, id, len);
    }
    temporary = writer_enter();
    TORII_ASSERT(pthread_mutex_lock(&t->lock) == 0);
    old = atomic_exchange_explicit(&t->def, d, memory_order_acq_rel);
    if (old != NULL) {
        defer_free(&old->rcu, default_free_cb);
    }
    TORII_ASSERT(pthread_mutex_unlock(&t->lock) == 0);
    writer_leave(temporary);
}

/* ---- readers ---- */

void torii_table_reader_register(void)
{
    if (!reader_registered) {
        rcu_register_thread();
        reader_registered = 1;
    }
}

void torii_table_reader_unregister(void)
{
    if (reader_registered) {
        rcu_unregister_thread();
        reader_registered = 0;
    }
}

/* Inside rcu_read_lock. */
static struct torii_tls_cert *lookup_name(struct torii_table *t, const char *key, size_t len,
                                          const struct torii_sni_query *q)
{
    struct lookup_key k = {key, len, table_hash(t, key, len)};
    struct cds_lfht_iter iter;

    cds_lfht_lookup(t->names, k.hash, name_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn == NULL) {
        return NULL;
    }
    const struct name_node *node = caa_container_of(hn, struct name_node, ht);
    int i = torii_sni_pick(node->cands, node->n, q);
    return i >= 0 ? cert_of(node->cands[i]) : NULL;
}

/* Inside rcu_read_lock. */
static struct torii_tls_cert *lookup_default(struct torii_table *t, const struct torii_sni_query *q)
{
    const struct default_id *d = atomic_load_explicit(&t->def, memory_order_acquire);
    struct cds_lfht_iter iter;

    if (d == NULL) {
        return NULL;
    }
    struct lookup_key k = {d->id, d->len, d->hash};
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn == NULL) {
        return NULL;
    }
    const struct id_node *node = caa_container_of(hn, struct id_node, ht);
    const struct torii_sni_attr *a = &node->cert->attr;
    return torii_sni_pick(&a, 1, q) == 0 ? node->cert : NULL;
}

int torii_table_select(struct torii_table *t, const struct torii_sni_query *q,
                       struct torii_tls_cert **out, enum torii_sni_match *match)
{
    char name[TORII_SNI_NAME_MAX + 1];
    char wild[TORII_SNI_KEY_MAX + 1];
    struct torii_tls_cert *c = NULL;
    enum torii_sni_match m = TORII_SNI_DEFAULT;
    int n = TORII_EINVAL;

    if (t == NULL || q == NULL || out == NULL) {
        return TORII_EINVAL;
    }
    if (q->name != NULL) {
        n = torii_sni_name_normalize(q->name, q->name_len, name);
    }
    rcu_read_lock();
    if (n > 0) {
        c = lookup_name(t, name, (size_t)n, q);
        m = TORII_SNI_EXACT;
        if (c == NULL) {
            int w = torii_sni_wildcard_key(name, (size_t)n, wild);
            if (w > 0) {
                c = lookup_name(t, wild, (size_t)w, q);
                m = TORII_SNI_WILDCARD;
            }
        }
    }
    if (c == NULL) {
        c = lookup_default(t, q);
        m = TORII_SNI_DEFAULT;
    }
    if (c != NULL) {
        /* Safe inside the read-side section: the node we found holds a reference until at
         * least the end of the grace period. */
        torii_tls_cert_ref(c);
    }
    grace_release();
    rcu_read_unlock();
    if (c == NULL) {
        return TORII_ENOTFOUND;
    }
    *out = c;
    if (match != NULL) {
        *match = m;
    }
    return TORII_OK;
}

int torii_table_get(struct torii_table *t, const char *id, struct torii_tls_cert **out)
{
    struct lookup_key k;
    struct cds_lfht_iter iter;
    struct torii_tls_cert *c = NULL;

    if (t == NULL || id == NULL || out == NULL || id[0] == '\0') {
        return TORII_EINVAL;
    }
    k.ptr = id;
    k.len = strlen(id);
    k.hash = table_hash(t, id, k.len);
    rcu_read_lock();
    cds_lfht_lookup(t->ids, k.hash, id_match, &k, &iter);
    struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
    if (hn != NULL) {
        c = caa_container_of(hn, struct id_node, ht)->cert;
        torii_tls_cert_ref(c); /* the node holds one until after the grace period */
    }
    grace_release();
    rcu_read_unlock();
    if (c == NULL) {
        return TORII_ENOTFOUND;
    }
    *out = c;
    return TORII_OK;
}

int torii_table_issuer_serial(struct torii_table *t, const X509 *x, int *revoked)
{
    unsigned char key[TORII_TABLE_SERIAL_KEY_MAX];
    struct lookup_key k;
    struct cds_lfht_iter iter;
    size_t len = 0;
    int count = 0;
    int rev = 0;
    int rc;

    if (t == NULL || x == NULL) {
        return TORII_EINVAL;
    }
    rc = torii_table_serial_key(x, key, &len);
    if (rc == TORII_OK) {
        k.ptr = (const char *)key;
        k.len = len;
        k.hash = table_hash(t, k.ptr, len);
        rcu_read_lock();
        cds_lfht_lookup(t->serials, k.hash, name_match, &k, &iter);
        struct cds_lfht_node *hn = cds_lfht_iter_get_node(&iter);
        if (hn != NULL) {
            const struct name_node *node = caa_container_of(hn, struct name_node, ht);
            for (size_t i = 0; i < node->n; i++) {
                rev |= (node->cands[i]->flags & TORII_CERTREC_REVOKED) != 0;
            }
            count = node->n > INT_MAX ? INT_MAX : (int)node->n;
        }
        grace_release();
        rcu_read_unlock();
    } else if (rc != TORII_ENOTFOUND) {
        return rc;
    }
    if (revoked != NULL) {
        *revoked = rev;
    }
    return count;
}

/* ---- life cycle ---- */

int torii_table_new(struct torii_table **out)
{
    int rc = TORII_OK;
    struct torii_table *t = torii_xcalloc(1, sizeof(*t));
    const int flags = CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING;

    atomic_init(&t->def, NULL);
    atomic_init(&t->count, 0);
    TORII_ENSURE(pthread_mutex_init(&t->lock, NULL) == 0, TORII_ENOMEM);
    TORII_TRY(torii_rand_bytes(&t->seed, sizeof(t->seed)));
    t->names = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->ids = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->serials = cds_lfht_new(TABLE_MIN_BUCKETS, TABLE_MIN_BUCKETS, 0, flags, NULL);
    t->names_size = TABLE_MIN_BUCKETS;
    t->ids_size = TABLE_MIN_BUCKETS;
    t->serials_size = TABLE_MIN_BUCKETS;
    TORII_ENSURE(t->names != NULL && t->ids != NULL && t->serials != NULL, TORII_ENOMEM);
    *out = t;
    t = NULL;
out:
    if (t != NULL) {
        if (t->names != NULL) {
            (void)cds_lfht_destroy(t->names, NULL);
        }
        if (t->ids != NULL) {
            (void)cds_lfht_destroy(t->ids, NULL);
        }
        if (t->serials != NULL) {
            (void)cds_lfht_destroy(t->serials, NULL);
        }
        (void)pthread_mutex_destroy(&t->lock);
        free(t);
    }
    return rc;
}

void torii_table_free(struct torii_table *t)
{
    struct cds_lfht_iter iter;
    struct name_node *nn;
    struct id_node *in;
    int temporary;

    if (t == NULL) {
        return;
    }
    temporary = writer_enter();
    rcu_read_lock();
    cds_lfht_for_each_entry(t->names, &iter, nn, ht)
    {
        TORII_ASSERT(cds_lfht_del(t->names, &nn->ht) == 0);
        defer_free(&nn->rcu, name_node_free_cb);
    }
    cds_lfht_for_each_entry(t->serials, &iter, nn, ht)
    {
        TORII_ASSERT(cds_lfht_del(t->serials, &nn->ht) == 0);
        defer_free(&nn->rcu, name_node_free_cb);
    }
    cds_lfht_for_each_entry(t->ids, &iter, in, ht)
    {
        TORII_ASSERT(cds_lfht_del(t->ids, &in->ht) == 0);
        defer_free(&in->rcu, id_node_free_cb);
    }
    rcu_read_unlock();
    /* Wait for the grace period and run every callback queued so far (ours included), so no
     * node outlives the table. */
    synchronize_rcu();
    rcu_barrier();
    grace_acquire();
    writer_leave(temporary);
    free(atomic_load_explicit(&t->def, memory_order_acquire));
    if (cds_lfht_destroy(t->names, NULL) != 0 || cds_lfht_destroy(t->ids, NULL) != 0
        || cds_lfht_destroy(t->serials, NULL) != 0) {
        torii_log(TORII_LOG_ERR, "tls: %s: cds_lfht_destroy failed", __func__);
    }
    (void)pthread_mutex_destroy(&t->lock);
    free(t);
}

size_t torii_table_size(struct torii_table *t)
{
    return t != NULL ? atomic_load_explicit(&t->count, memory_order_relaxed) : 0;
}
