/* state_blob.c - the reference-counted pieces the PKI view's writer and its snapshots share
 * (state_int.h): blobs (DER, JSON text), the OCSP response cache of one CA generation, the
 * signers, and the release of snapshots and CA arrays. Any thread (atomic counts; the cache
 * has its own lock). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "state_int.h"
#include "torii/jwt.h"
#include "torii/mem.h"

struct pki_blob *torii_pki__blob_new(const void *p, size_t len)
{
    struct pki_blob *b = torii_xmalloc(sizeof(*b) + len + 1);

    atomic_init(&b->ref, 1);
    b->len = len;
    if (len > 0) {
        memcpy(b->data, p, len);
    }
    b->data[len] = 0;
    return b;
}

struct pki_blob *torii_pki__blob_ref(struct pki_blob *b)
{
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->ref, 1, memory_order_relaxed);
    }
    return b;
}

void torii_pki__blob_unref(struct pki_blob *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->ref, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}

int torii_pki__blob_copy_out(const struct pki_blob *b, unsigned char **body, size_t *len)
{
    unsigned char *p = torii_xmalloc(b->len + 1);

    memcpy(p, b->data, b->len);
    p[b->len] = 0;
    *body = p;
    *len = b->len;
    return TORII_OK;
}
struct pki_cache *torii_pki__cache_new(void)
{
    struct pki_cache *c = torii_xcalloc(1, sizeof(*c));

    atomic_init(&c->ref, 1);
    TORII_ASSERT(pthread_mutex_init(&c->lock, NULL) == 0);
    return c;
}

struct pki_cache *torii_pki__cache_ref(struct pki_cache *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->ref, 1, memory_order_relaxed);
    }
    return c;
}

void torii_pki__cache_unref(struct pki_cache *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        torii_pki__blob_unref(c->slot[i].resp);
    }
    (void)pthread_mutex_destroy(&c->lock);
    free(c);
}

struct pki_blob *torii_pki__cache_get(struct pki_cache *c, const unsigned char *key, int64_t now_ms)
{
    struct pki_blob *b = NULL;

    (void)pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < STATE_CACHE_SLOTS; i++) {
        if (c->slot[i].resp != NULL && c->slot[i].until_ms > now_ms
            && memcmp(c->slot[i].key, key, STATE_HASH) == 0) {
            b = torii_pki__blob_ref(c->slot[i].resp);
            break;
        }
    }
    (void)pthread_mutex_unlock(&c->lock);
    return b;
}

void torii_pki__cache_put(struct pki_cache *c, const unsigned char *key, struct pki_blob *resp,
                          int64_t until_ms)
{
    struct pki_blob *old;
    unsigned i;

    (void)pthread_mutex_lock(&c->lock);
    i = c->next++ % STATE_CACHE_SLOTS;
    old = c->slot[i].resp;
    memcpy(c->slot[i].key, key, STATE_HASH);
    c->slot[i].resp = torii_pki__blob_ref(resp);
    c->slot[i].until_ms = until_ms;
    (void)pthread_mutex_unlock(&c->lock);
    torii_pki__blob_unref(old);
}
struct pki_signer *torii_pki__signer_ref(struct pki_signer *s)
{
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->ref, 1, memory_order_relaxed);
    }
    return s;
}

void torii_pki__signer_unref(struct pki_signer *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) == 1) {
        torii_pki__ca_clear(&s->ca);
        free(s);
    }
}
void torii_pki__snap_cas_unref(struct snap_cas *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        free(c->ca[i].id);
        torii_pki__signer_unref(c->ca[i].signer);
        torii_pki__blob_unref(c->ca[i].der);
        torii_pki__blob_unref(c->ca[i].crl);
        torii_pki__cache_unref(c->ca[i].cache);
    }
    free(c);
}

void torii_pki__snap_unref(struct pki_snap *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    torii_pki__blob_unref(s->jwks);
    torii_jwt_keyset_unref(s->jwt_keys);
    torii_pki__snap_cas_unref(s->cas);
    torii_pki__pmap_node_unref(s->staples);
    free(s);
}
