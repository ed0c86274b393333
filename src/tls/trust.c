/* trust.c - trust sets: CAs named by table ids, as an X509_STORE that follows the table.
 *
 * A view ("snapshot") holds the table references it was built from, the store and the CA
 * names. Each acquire looks the ids up again (lock-free table reads) and compares the
 * references with the view's: the table makes a new reference object for every update, and
 * the view holds its references, so equal pointers mean unchanged entries (no ABA). Only on
 * a difference is a new view built. The mutex guards the view pointer and is held just long
 * enough to take references to the store (and copy the names), so views are freed as soon as
 * they are replaced; a rebuild happens under it too (rare: a CA entry changed).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "tls_int.h"
#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"
#include "torii/table.h"
#include "torii/tls.h"

struct trust_view {
    uint64_t gen;
    size_t n;
    struct torii_tls_cert **refs; /* n entries, one reference each; NULL: id absent */
    X509_STORE *store;
    STACK_OF(X509_NAME) * names;
    int anchors;
};

struct torii_tls_trust {
    struct torii_table *table;
    size_t n;
    char **ids;
    pthread_mutex_t lock; /* guards view */
    struct trust_view *view;
};

/* Generations of all views of the process (any thread, atomic): unique, so a session id
 * context derived from one never matches a rebuilt set. */
static atomic_uint_fast64_t trust_next_gen = 1;

static void trust_view_free(struct trust_view *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        torii_tls_cert_unref(v->refs[i]);
    }
    free(v->refs);
    X509_STORE_free(v->store);
    sk_X509_NAME_pop_free(v->names, X509_NAME_free);
    free(v);
}

/* Add the leaf of one entry as an anchor; entries that cannot be trusted are skipped. */
static int trust_view_add(struct trust_view *v, const char *id, struct torii_tls_cert *c)
{
    X509 *leaf = NULL;
    X509_NAME *name = NULL;

    if ((torii_tls_cert_flags(c) & TORII_CERTREC_REVOKED) != 0) {
        torii_log(TORII_LOG_WARN, "tls: trusted CA is revoked, not trusted (id=%s)", id);
        return TORII_OK;
    }
    /* The leaf only: a CA entry usually has no private key. */
    if (torii_tls_cert_leaf_dup(c, &leaf) != TORII_OK) {
        torii_log(TORII_LOG_WARN, "tls: trusted CA does not parse, not trusted (id=%s)", id);
        return TORII_OK;
    }
    if (X509_STORE_add_cert(v->store, leaf) != 1) {
        unsigned long e = ERR_peek_last_error();
        X509_free(leaf);
        /* The same certificate under two ids is fine. */
        if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
            return TORII_ETLS;
        }
        ERR_clear_error();
        return TORII_OK;
    }
    name = X509_NAME_dup(X509_get_subject_name(leaf));
    X509_free(leaf);
    if (name == NULL || sk_X509_NAME_push(v->names, name) <= 0) {
        X509_NAME_free(name);
        return TORII_ENOMEM;
    }
    v->anchors++;
    return TORII_OK;
}

/* Build a view from refs (taken over on success). Called under tr->lock. */
static int trust_view_build(struct torii_tls_trust *tr, struct torii_tls_cert **refs,
                            struct trust_view **out)
{
    int rc = TORII_OK;
    struct trust_view *v = torii_xcalloc(1, sizeof(*v));

    v->store = X509_STORE_new();
    v->names = sk_X509_NAME_new_null();
    TORII_ENSURE(v->store != NULL && v->names != NULL, TORII_ENOMEM);
    /* A trusted intermediate is an anchor of its own (DESIGN: "trusted CA ids"). */
    TORII_ENSURE(X509_STORE_set_flags(v->store, X509_V_FLAG_PARTIAL_CHAIN) == 1, TORII_ETLS);
    for (size_t i = 0; i < tr->n; i++) {
        if (refs[i] == NULL) {
            torii_log(TORII_LOG_WARN, "tls: trusted CA not in the store (id=%s)", tr->ids[i]);
            continue;
        }
        TORII_TRY(trust_view_add(v, tr->ids[i], refs[i]));
    }
    v->gen = atomic_fetch_add_explicit(&trust_next_gen, 1, memory_order_relaxed);
    v->n = tr->n;
    v->refs = refs;
    *out = v;
    v = NULL;
out:
    if (v != NULL) {
        v->n = 0; /* the refs stay the caller's on failure */
        trust_view_free(v);
        ERR_clear_error();
    }
    return rc;
}

static int trust_view_current(const struct trust_view *v, struct torii_tls_cert *const *refs,
                              size_t n)
{
    if (v == NULL || v->n != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (v->refs[i] != refs[i]) {
            return 0;
        }
    }
    return 1;
}

/* The current table references of the ids (NULL where absent); lock-free reads. */
static struct torii_tls_cert **trust_refs_get(const struct torii_tls_trust *tr)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    struct torii_tls_cert **refs = torii_xcalloc(tr->n + 1, sizeof(struct torii_tls_cert *));

    for (size_t i = 0; i < tr->n; i++) {
        if (torii_table_get(tr->table, tr->ids[i], &refs[i]) != TORII_OK) {
            refs[i] = NULL;
        }
    }
    return refs;
}

static void trust_refs_put(struct torii_tls_cert **refs, size_t n)
{
    if (refs == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        torii_tls_cert_unref(refs[i]);
    }
    free(refs);
}

int torii_tls__trust_acquire(struct torii_tls_trust *tr, X509_STORE **store,
                             STACK_OF(X509_NAME) * *names, uint64_t *gen)
{
    int rc = TORII_OK;
    struct torii_tls_cert **refs = trust_refs_get(tr);
    struct trust_view *fresh = NULL;
    struct trust_view *old = NULL;
    STACK_OF(X509_NAME) *copy = NULL;
    int locked = 0;

    TORII_ASSERT(pthread_mutex_lock(&tr->lock) == 0);
    locked = 1;
    if (!trust_view_current(tr->view, refs, tr->n)) {
        TORII_TRY(trust_view_build(tr, refs, &fresh));
        refs = NULL; /* now the view's */
        old = tr->view;
        tr->view = fresh;
        torii_log(TORII_LOG_INFO, "tls: trust set rebuilt (anchors=%d, ids=%zu)", fresh->anchors,
                  tr->n);
    }
    if (names != NULL) {
        copy = SSL_dup_CA_list(tr->view->names);
        TORII_ENSURE(copy != NULL, TORII_ENOMEM);
    }
    TORII_ENSURE(X509_STORE_up_ref(tr->view->store) == 1, TORII_ETLS);
    *store = tr->view->store;
    if (names != NULL) {
        *names = copy;
        copy = NULL;
    }
    if (gen != NULL) {
        *gen = tr->view->gen;
    }
out:
    if (locked) {
        TORII_ASSERT(pthread_mutex_unlock(&tr->lock) == 0);
    }
    trust_view_free(old);
    sk_X509_NAME_pop_free(copy, X509_NAME_free);
    trust_refs_put(refs, tr->n);
    return rc;
}

int torii_tls_trust_new(struct torii_table *table, const char *const *ca_ids, size_t n,
                        struct torii_tls_trust **out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct torii_tls_trust *tr = NULL;

    TORII_ENSURE(table != NULL && out != NULL && (n == 0 || ca_ids != NULL),
                 torii_errf(eb, TORII_EINVAL, "tls: trust set needs a table"));
    for (size_t i = 0; i < n; i++) {
        TORII_ENSURE(ca_ids[i] != NULL && ca_ids[i][0] != '\0',
                     torii_errf(eb, TORII_EINVAL, "tls: trusted CA #%zu: empty id", i + 1));
    }
    tr = torii_xcalloc(1, sizeof(*tr));
    TORII_ENSURE(pthread_mutex_init(&tr->lock, NULL) == 0, TORII_ENOMEM);
    tr->table = table;
    tr->ids = torii_xcalloc(n + 1, sizeof(*tr->ids));
    for (size_t i = 0; i < n; i++) {
        tr->ids[i] = torii_xstrdup(ca_ids[i]);
    }
    tr->n = n;
    *out = tr;
    tr = NULL;
out:
    if (tr != NULL) {
        free(tr->ids);
        free(tr);
    }
    return rc;
}

void torii_tls_trust_free(struct torii_tls_trust *tr)
{
    if (tr == NULL) {
        return;
    }
    trust_view_free(tr->view);
    for (size_t i = 0; i < tr->n; i++) {
        free(tr->ids[i]);
    }
    free(tr->ids);
    (void)pthread_mutex_destroy(&tr->lock);
    free(tr);
}

int torii_tls_trust_count(struct torii_tls_trust *tr)
{
    int rc = TORII_OK;
    X509_STORE *store = NULL;
    STACK_OF(X509_NAME) *names = NULL;

    TORII_ENSURE(tr != NULL, TORII_EINVAL);
    TORII_TRY(torii_tls__trust_acquire(tr, &store, &names, NULL));
    rc = sk_X509_NAME_num(names);
out:
    X509_STORE_free(store);
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return rc;
}
