/* blkcache.c - the per-thread block cache and the allocation hooks of OpenSSL and libevent
 * (include/torii/blkcache.h says why they are process-wide and who calls what). */
#include "torii/blkcache.h"

#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>

/* AddressSanitizer builds keep OpenSSL and libevent on plain malloc (blkcache.h). */
#if defined(__SANITIZE_ADDRESS__)
#define BLKCACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLKCACHE_ASAN 1
#endif
#endif
#ifndef BLKCACHE_ASAN
#define BLKCACHE_ASAN 0
#endif
/* ThreadSanitizer builds keep the hooks, but their allocator is not glibc's either. */
#if defined(__SANITIZE_THREAD__)
#define BLKCACHE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BLKCACHE_TSAN 1
#endif
#endif
#ifndef BLKCACHE_TSAN
#define BLKCACHE_TSAN 0
#endif
/* glibc's allocator serves malloc (not a sanitizer's): its settings apply. */
#if BLKCACHE_ASAN || BLKCACHE_TSAN
#define BLKCACHE_GLIBC 0
#else
#define BLKCACHE_GLIBC 1
#endif

#define BLKCACHE_DEFAULT_BYTES ((size_t)1024 * 1024)
#define BLKCACHE_DEFAULT_PER   128u
/* One class keeps at most max_bytes / BLKCACHE_CLASS_SHARE: a class given back more often
 * than asked for (blocks that grew by realloc, or came from another thread) cannot take the
 * whole cache. */
#define BLKCACHE_CLASS_SHARE 2u
/* Classes below BLKCACHE_DIRECT (usable sizes up to 2,024 bytes: nghttp2's stream blocks,
 * libevent's small chains) have a slot each; the larger ones (up to
 * TORII_BLKCACHE_MAX_BLOCK) share 2^BLKCACHE_HASH_BITS slots by a hash of the class: a slot
 * holds one class at a time, taken by the first block given back while it is empty. A worker
 * uses a handful of large sizes (record buffers, chain sizes, frame chunks), so two of them
 * rarely meet; when they do, a block of the other class given back is freed and takes one
 * of the holder's with it, so a class no longer given back leaves the slot soon. */
#define BLKCACHE_DIRECT    128u
#define BLKCACHE_HASH_BITS 6u
#define BLKCACHE_SLOTS     (BLKCACHE_DIRECT + (1u << BLKCACHE_HASH_BITS))
#define BLKCACHE_MAX_CLASS ((TORII_BLKCACHE_MAX_BLOCK + 8) / 16)

/* The blocks of one class, a list linked through their first bytes. */
struct blkcache_slot {
    void *head;
    uint32_t k; /* the class of the blocks in head (meaningful while head is not NULL) */
    uint32_t n; /* blocks in head */
};

struct torii_blkcache {
    struct blkcache_slot slot[BLKCACHE_SLOTS];
    size_t max_bytes;
    uint32_t max_per_class;
    size_t class_bytes; /* max_bytes / BLKCACHE_CLASS_SHARE */
    size_t hand;        /* the next slot to lose a block when the cache is full */
    struct torii_blkcache_stats st;
};

/* The calling thread's cache (a proxy worker's), NULL on every other thread. */
static _Thread_local struct torii_blkcache *blkcache_mine;

static struct blkcache_slot *blkcache_slot(struct torii_blkcache *c, size_t k)
{
    uint32_t h;

    if (k < BLKCACHE_DIRECT) {
        return &c->slot[k];
    }
    /* Fibonacci hashing: the top bits of a 32-bit product (the mask only says so). */
    h = (((uint32_t)k * 0x9e3779b1u) >> (32u - BLKCACHE_HASH_BITS))
        & ((1u << BLKCACHE_HASH_BITS) - 1);
    return &c->slot[BLKCACHE_DIRECT + h];
}

int torii_blkcache_new(const struct torii_blkcache_opts *o, struct torii_blkcache **out)
{
    struct torii_blkcache *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL) {
        return TORII_ENOMEM;
    }
    c->max_bytes = o != NULL && o->max_bytes != 0 ? o->max_bytes : BLKCACHE_DEFAULT_BYTES;
    c->max_per_class = o != NULL && o->max_per_class != 0 ? o->max_per_class : BLKCACHE_DEFAULT_PER;
    c->class_bytes = c->max_bytes / BLKCACHE_CLASS_SHARE;
    *out = c;
    return TORII_OK;
}

void torii_blkcache_clear(struct torii_blkcache *c)
{
    for (size_t i = 0; i < BLKCACHE_SLOTS; i++) {
        struct blkcache_slot *s = &c->slot[i];
        while (s->head != NULL) {
            void *p = s->head;
            memcpy(&s->head, p, sizeof(void *));
            free(p);
        }
        s->n = 0;
    }
    c->st.bytes = 0;
    c->st.blocks = 0;
}

void torii_blkcache_free(struct torii_blkcache *c)
{
    if (c == NULL) {
        return;
    }
    torii_blkcache_clear(c);
    free(c);
}

/* The hot paths below are static inline, so that the hooks (one call per allocation of
 * OpenSSL and libevent, a dozen and more per request) run them without further calls. */
static inline void *blkcache_take(struct torii_blkcache *c, size_t size)
{
    size_t k = (size + 23) / 16; /* every block of class k holds 16 k - 8 >= size bytes */
    struct blkcache_slot *s;
    void *p;

    if (k > BLKCACHE_MAX_CLASS) {
        c->st.misses++;
        return NULL;
    }
    s = blkcache_slot(c, k);
    if (s->head == NULL || s->k != k) {
        c->st.misses++;
        return NULL;
    }
    p = s->head;
    memcpy(&s->head, p, sizeof(void *));
    s->n--;
    c->st.bytes -= 16 * k;
    c->st.blocks--;
    c->st.hits++;
    return p;
}

void *torii_blkcache_get(struct torii_blkcache *c, size_t size)
{
    return blkcache_take(c, size);
}

/* Take the head block of s out of the cache and free it. */
static void blkcache_drop(struct torii_blkcache *c, struct blkcache_slot *s)
{
    void *p = s->head;

    memcpy(&s->head, p, sizeof(void *));
    s->n--;
    c->st.bytes -= 16 * (size_t)s->k;
    c->st.blocks--;
    c->st.evicted++;
    free(p);
}

/* Room for one more block: a block of another slot than keep is freed, the slots taken in
 * turn (a clock hand), so the classes no longer asked for drain while the hot ones, given
 * back as fast as they are taken, stay. 0 when no other slot keeps anything. */
static int blkcache_evict(struct torii_blkcache *c, const struct blkcache_slot *keep)
{
    for (size_t i = 0; i < BLKCACHE_SLOTS; i++) {
        struct blkcache_slot *s = &c->slot[c->hand];
        c->hand = (c->hand + 1) % BLKCACHE_SLOTS;
        if (s != keep && s->head != NULL) {
            blkcache_drop(c, s);
            return 1;
        }
    }
    return 0;
}

static int blkcache_refuse(struct torii_blkcache *c)
{
    c->st.refused++;
    return 0;
}

/* The slow end of a put: a slot held by another class, or a full cache (blkcache_keep). */
__attribute__((noinline)) static int blkcache_keep_slow(struct torii_blkcache *c,
                                                        struct blkcache_slot *s, size_t size)
{
    if (s->head != NULL && s->k != size / 16) {
        /* Another class holds the slot: it loses a block, so one no longer given back
         * leaves the slot to this one in a few rounds. */
        blkcache_drop(c, s);
        return blkcache_refuse(c);
    }
    while (c->st.bytes + size > c->max_bytes) {
        if (!blkcache_evict(c, s)) {
            return blkcache_refuse(c);
        }
    }
    return 1;
}

static inline int blkcache_keep(struct torii_blkcache *c, void *p)
{
    size_t k = (malloc_usable_size(p) + 8) / 16; /* usable >= 16 k - 8 */
    size_t size = 16 * k;
    struct blkcache_slot *s;

    if (k < 1 || k > BLKCACHE_MAX_CLASS) {
        return blkcache_refuse(c);
    }
    s = blkcache_slot(c, k);
    if (s->n >= c->max_per_class || (s->n + 1) * size > c->class_bytes) {
        return blkcache_refuse(c);
    }
    if (((s->head != NULL && s->k != k) || c->st.bytes + size > c->max_bytes)
        && !blkcache_keep_slow(c, s, size)) {
        return 0;
    }
    memcpy(p, &s->head, sizeof(void *));
    s->head = p;
    s->k = (uint32_t)k;
    s->n++;
    c->st.bytes += size;
    c->st.blocks++;
    return 1;
}

int torii_blkcache_put(struct torii_blkcache *c, void *p)
{
    return blkcache_keep(c, p);
}

void torii_blkcache_stats(const struct torii_blkcache *c, struct torii_blkcache_stats *out)
{
    *out = c->st;
}

/* ---- the calling thread's cache ---- */

int torii_blkcache_attach(const struct torii_blkcache_opts *o)
{
    struct torii_blkcache *c = NULL;
    int rc;

    if (blkcache_mine != NULL) {
        return TORII_EEXIST;
    }
    rc = torii_blkcache_new(o, &c);
    if (rc == TORII_OK) {
        blkcache_mine = c;
    }
    return rc;
}

void torii_blkcache_detach(void)
{
    struct torii_blkcache *c = blkcache_mine;

    blkcache_mine = NULL; /* the frees below go to glibc */
    torii_blkcache_free(c);
}

struct torii_blkcache *torii_blkcache_current(void)
{
    return blkcache_mine;
}

static inline void *blkcache_alloc(size_t size)
{
    struct torii_blkcache *c = blkcache_mine;
    void *p = c != NULL ? blkcache_take(c, size) : NULL;

    return p != NULL ? p : malloc(size);
}

static inline void blkcache_give(void *p)
{
    struct torii_blkcache *c = blkcache_mine;

    if (p != NULL && (c == NULL || !blkcache_keep(c, p))) {
        free(p);
    }
}

void *torii_blkcache_malloc(size_t size)
{
    return blkcache_alloc(size);
}

void torii_blkcache_release(void *p)
{
    blkcache_give(p);
}

void *torii_blkcache_realloc(void *p, size_t size)
{
    if (p == NULL) {
        return torii_blkcache_malloc(size);
    }
    if (size == 0) {
        torii_blkcache_release(p);
        return NULL;
    }
    return realloc(p, size);
}

/* ---- the process-wide hooks ---- */

/* OpenSSL's own allocator answers NULL to a request of 0 bytes (crypto/mem.c): kept so. */
static void *blkcache_ossl_malloc(size_t num, const char *file, int line)
{
    (void)file;
    (void)line;
    return num == 0 ? NULL : blkcache_alloc(num);
}

static void *blkcache_ossl_realloc(void *p, size_t num, const char *file, int line)
{
    (void)file;
    (void)line;
    if (num == 0) {
        torii_blkcache_release(p);
        return NULL;
    }
    return torii_blkcache_realloc(p, num);
}

static void blkcache_ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    blkcache_give(p);
}

int torii_blkcache_hooks_install(void)
{
    int rc = TORII_OK;

    if (BLKCACHE_ASAN) {
        return TORII_EUNSUPPORTED;
    }
    if (CRYPTO_set_mem_functions(blkcache_ossl_malloc, blkcache_ossl_realloc, blkcache_ossl_free)
        != 1) {
        rc = TORII_EIO;
    }
    /* libevent returns nothing: it takes them (its allocator is replaceable in Debian's
     * build, EVENT__DISABLE_MM_REPLACEMENT unset) and uses them from its next allocation. */
    event_set_mem_functions(torii_blkcache_malloc, torii_blkcache_realloc, torii_blkcache_release);
    return rc;
}

int torii_blkcache_heap_keep(size_t bytes)
{
    if (!BLKCACHE_GLIBC) {
        return TORII_EUNSUPPORTED; /* a sanitizer's allocator ignores glibc's settings */
    }
    if (bytes > INT_MAX) {
        return TORII_EINVAL;
    }
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): main only, before any other thread exists */
    return mallopt(M_TRIM_THRESHOLD, (int)bytes) == 1 ? TORII_OK : TORII_EINVAL;
}

void torii_blkcache_heap_trim(void)
{
    if (BLKCACHE_GLIBC) {
        (void)malloc_trim(0);
    }
}
