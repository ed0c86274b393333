/* test_core_blkcache.c - the per-thread block cache (core/blkcache.c): a block handed out
 * only once it was given back and never twice, a request served only by a block that holds
 * it, the bounds (size, count per class, bytes), the classes sharing a hashed slot, a thread's
 * cache freed at detach, blocks freed on another thread than the one that allocated them, and
 * the process-wide hooks routing OpenSSL's and libevent's allocations through it. Runs in
 * every build; the hooks' test knows they are off under AddressSanitizer. */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "torii/blkcache.h"

#define N_BLOCKS 8
/* Sizes of 16 k + 8 bytes are exactly a glibc block's usable size, so a block comes back
 * for the same request under every allocator (glibc, or a sanitizer's exact sizes). */
#define REC_SIZE ((size_t)17000) /* about an OpenSSL record buffer */
#define X_SIZE   ((size_t)8200)  /* N_BLOCKS of them fit in one class's share of a default cache */

/* What torii_blkcache_hooks_install answered, first thing in main. */
static int hooks_rc = TORII_EIO;

static struct torii_blkcache *cache_new(size_t max_bytes, unsigned per_class)
{
    const struct torii_blkcache_opts o = {max_bytes, per_class};
    struct torii_blkcache *c = NULL;

    assert_int_equal(torii_blkcache_new(&o, &c), TORII_OK);
    assert_non_null(c);
    return c;
}

static size_t cache_blocks(const struct torii_blkcache *c)
{
    struct torii_blkcache_stats st;

    torii_blkcache_stats(c, &st);
    return st.blocks;
}

/* Four of eight blocks given back, four taken: each taken one is one of those given back,
 * none twice, each holds the request, and the four still live are untouched. */
static void test_never_twice(void **state)
{
    struct torii_blkcache *c = cache_new(0, 0);
    unsigned char *live[N_BLOCKS], *got[4];

    (void)state;
    assert_null(torii_blkcache_get(c, 152));
    for (int i = 0; i < N_BLOCKS; i++) {
        live[i] = malloc(152);
        assert_non_null(live[i]);
        memset(live[i], 'a' + i, 152);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(torii_blkcache_put(c, live[i]), 1);
    }
    for (int i = 0; i < 4; i++) {
        int was_put = 0;
        got[i] = torii_blkcache_get(c, 140 + (size_t)i);
        assert_non_null(got[i]);
        assert_true(malloc_usable_size(got[i]) >= 140 + (size_t)i);
        for (int j = 0; j < i; j++) {
            assert_ptr_not_equal(got[i], got[j]);
        }
        for (int j = 0; j < 4; j++) {
            was_put |= got[i] == live[j];
        }
        assert_true(was_put);
        memset(got[i], 'z', 140);
    }
    assert_null(torii_blkcache_get(c, 152)); /* all four out again */
    for (int i = 4; i < N_BLOCKS; i++) {
        for (int k = 0; k < 152; k++) {
            assert_int_equal(live[i][k], 'a' + i);
        }
        free(live[i]);
    }
    for (int i = 0; i < 4; i++) {
        free(got[i]);
    }
    torii_blkcache_free(c);
}

/* A request is served by a block of its own class only: not by a smaller block, and a larger
 * class is not searched; big blocks (record buffers) come back for the same size. */
static void test_classes(void **state)
{
    struct torii_blkcache *c = cache_new(0, 0);
    void *small = malloc(104), *rec = malloc(REC_SIZE), *p;

    (void)state;
    assert_non_null(small);
    assert_non_null(rec);
    assert_int_equal(torii_blkcache_put(c, small), 1);
    assert_null(torii_blkcache_get(c, malloc_usable_size(small) + 1)); /* does not hold it */
    assert_null(torii_blkcache_get(c, 400));
    assert_int_equal(torii_blkcache_put(c, rec), 1);
    assert_null(torii_blkcache_get(c, REC_SIZE + 4096));
    p = torii_blkcache_get(c, REC_SIZE);
    assert_ptr_equal(p, rec);
    assert_ptr_equal(torii_blkcache_get(c, malloc_usable_size(small)), small);
    free(small);
    free(rec);
    torii_blkcache_free(c);
}

/* Large classes share hashed slots: whatever two of them meet, a block is only ever served
 * for a size it holds, every block still kept is served back for its own size, and a block
 * refused is the caller's (freed here). */
static void test_shared_slots(void **state)
{
    struct torii_blkcache *c = cache_new((size_t)8 << 20, 4);
    void *kept[256] = {NULL};
    size_t n_all = 0, n_served = 0;

    (void)state;
    for (size_t size = 2056; size <= TORII_BLKCACHE_MAX_BLOCK && n_all < 256; size += 240) {
        void *b = malloc(size);
        assert_non_null(b);
        if (torii_blkcache_put(c, b)) {
            kept[n_all++] = b;
        } else {
            free(b);
        }
    }
    assert_true(cache_blocks(c) > 0);
    for (size_t size = 2056; size <= TORII_BLKCACHE_MAX_BLOCK; size += 240) {
        void *b = torii_blkcache_get(c, size);
        int was_kept = 0;
        if (b == NULL) {
            continue;
        }
        assert_true(malloc_usable_size(b) >= size);
        for (size_t i = 0; i < n_all; i++) {
            was_kept |= kept[i] == b;
        }
        assert_true(was_kept);
        free(b);
        n_served++;
    }
    assert_true(n_served > 0);
    assert_int_equal(cache_blocks(c), 0); /* every block kept was served back for its size */
    torii_blkcache_free(c);
}

/* The bounds: too large, count per class, half of the bytes per class, bytes in all
 * (the newest block kept, older ones of other classes freed for it). */
static void test_bounds(void **state)
{
    struct torii_blkcache *c = cache_new(8192, 3);
    struct torii_blkcache_stats st;
    void *big = malloc(TORII_BLKCACHE_MAX_BLOCK + 4096), *last = NULL;

    (void)state;
    assert_non_null(big);
    assert_int_equal(torii_blkcache_put(c, big), 0);
    free(big);
    for (int i = 0; i < 10; i++) {
        void *b = malloc(72);
        assert_non_null(b);
        if (!torii_blkcache_put(c, b)) {
            free(b);
        }
    }
    assert_int_equal(cache_blocks(c), 3); /* max_per_class */
    for (int i = 0; i < 2; i++) {
        big = malloc(2040); /* two of them: half of 8192 */
        assert_non_null(big);
        assert_int_equal(torii_blkcache_put(c, big), 1);
    }
    big = malloc(2040);
    assert_non_null(big);
    assert_int_equal(torii_blkcache_put(c, big), 0); /* its class holds its share */
    free(big);
    for (int i = 0; i < 10; i++) {
        last = malloc(1000 + (size_t)i * 96); /* a class each */
        assert_non_null(last);
        assert_int_equal(torii_blkcache_put(c, last), 1); /* kept, older ones freed */
        torii_blkcache_stats(c, &st);
        assert_true(st.bytes <= 8192);
    }
    assert_true(st.evicted > 0);
    assert_int_equal(st.refused, 1 + 7 + 1);
    assert_ptr_equal(torii_blkcache_get(c, malloc_usable_size(last)), last);
    free(last);
    torii_blkcache_clear(c);
    torii_blkcache_stats(c, &st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.blocks, 0);
    assert_null(torii_blkcache_get(c, 72));
    torii_blkcache_free(c);
    torii_blkcache_free(NULL);
}

/* A thread with a cache: what it releases comes back to it; detach frees what it keeps
 * (LeakSanitizer would see a block lost); after it, plain malloc/free. */
static void test_attach_detach(void **state)
{
    struct torii_blkcache_stats st;
    void *a, *b;

    (void)state;
    assert_null(torii_blkcache_current());
    a = torii_blkcache_malloc(REC_SIZE); /* no cache: plain malloc, release frees */
    assert_non_null(a);
    torii_blkcache_release(a);
    torii_blkcache_release(NULL);
    assert_int_equal(torii_blkcache_attach(NULL), TORII_OK);
    assert_int_equal(torii_blkcache_attach(NULL), TORII_EEXIST);
    a = torii_blkcache_malloc(REC_SIZE);
    assert_non_null(a);
    torii_blkcache_release(a);
    b = torii_blkcache_malloc(REC_SIZE);
    assert_ptr_equal(a, b);
    b = torii_blkcache_realloc(b, REC_SIZE * 2); /* plain realloc */
    assert_non_null(b);
    assert_null(torii_blkcache_realloc(b, 0)); /* released */
    b = torii_blkcache_realloc(NULL, 300);
    assert_non_null(b);
    torii_blkcache_release(b);
    torii_blkcache_stats(torii_blkcache_current(), &st);
    assert_int_equal(st.hits, 1);
    assert_true(st.blocks >= 1);
    torii_blkcache_detach();
    assert_null(torii_blkcache_current());
    torii_blkcache_detach(); /* nothing */
}

/* ---- blocks crossing threads ---- */

struct xthread {
    void *blocks[N_BLOCKS];
    int cached; /* the thread releases with a cache of its own */
    unsigned long hits;
};

static void *xthread_release(void *arg)
{
    struct xthread *x = arg;
    struct torii_blkcache_stats st;

    if (x->cached && torii_blkcache_attach(NULL) != TORII_OK) {
        return NULL;
    }
    for (int i = 0; i < N_BLOCKS; i++) {
        torii_blkcache_release(x->blocks[i]);
        x->blocks[i] = NULL;
    }
    for (int i = 0; x->cached && i < N_BLOCKS; i++) {
        x->blocks[i] = torii_blkcache_malloc(X_SIZE); /* from this thread's cache */
        memset(x->blocks[i], 'x', X_SIZE);
    }
    if (x->cached) {
        torii_blkcache_stats(torii_blkcache_current(), &st);
        x->hits = st.hits;
        torii_blkcache_detach();
    }
    return NULL;
}

/* Blocks one thread allocated, freed on a thread without a cache (plain free) and on one
 * with its own cache (kept there, served to it); the allocating thread's cache is untouched. */
static void test_cross_thread(void **state)
{
    struct xthread x = {{NULL}, 0, 0};
    pthread_t t;

    (void)state;
    assert_int_equal(torii_blkcache_attach(NULL), TORII_OK);
    for (int cached = 0; cached <= 1; cached++) {
        for (int i = 0; i < N_BLOCKS; i++) {
            x.blocks[i] = torii_blkcache_malloc(X_SIZE);
            assert_non_null(x.blocks[i]);
        }
        x.cached = cached;
        assert_int_equal(pthread_create(&t, NULL, xthread_release, &x), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(cache_blocks(torii_blkcache_current()), 0);
    }
    assert_int_equal(x.hits, N_BLOCKS);
    for (int i = 0; i < N_BLOCKS; i++) {
        torii_blkcache_release(x.blocks[i]); /* allocated there, kept here */
    }
    assert_int_equal(cache_blocks(torii_blkcache_current()), N_BLOCKS);
    torii_blkcache_detach();
}

/* The hooks: OpenSSL's and libevent's blocks go through the thread's cache (not under
 * AddressSanitizer, where they stay off). */
static void test_hooks(void **state)
{
    struct torii_blkcache_stats st;
    struct evbuffer *eb;
    void *p, *q;

    (void)state;
    if (hooks_rc == TORII_EUNSUPPORTED) {
        skip(); /* an AddressSanitizer build */
    }
    assert_int_equal(hooks_rc, TORII_OK);
    assert_int_equal(torii_blkcache_attach(NULL), TORII_OK);
    p = OPENSSL_malloc(REC_SIZE);
    assert_non_null(p);
    OPENSSL_free(p);
    q = OPENSSL_malloc(REC_SIZE);
    assert_ptr_equal(p, q);
    OPENSSL_free(q);
    assert_null(OPENSSL_malloc(0));
    eb = evbuffer_new();
    assert_non_null(eb);
    evbuffer_free(eb);
    eb = evbuffer_new();
    assert_non_null(eb);
    evbuffer_free(eb);
    torii_blkcache_stats(torii_blkcache_current(), &st);
    assert_true(st.hits >= 2);
    torii_blkcache_detach();
}

/* The heap's kept top: 4 MiB freed at the top of the arena stay in it under an 8 MiB trim
 * threshold (glibc's default, 128 KiB, gives them back at the free), and the explicit trim
 * gives them back. Not under AddressSanitizer, whose allocator ignores both. */
static void test_heap_keep(void **state)
{
    enum { N = 64, SZ = 64 * 1024 };
    void *p[N];
    int rc = torii_blkcache_heap_keep((size_t)8 * 1024 * 1024);

    (void)state;
    if (rc == TORII_EUNSUPPORTED) {
        skip();
    }
    assert_int_equal(rc, TORII_OK);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(SZ); /* below the mmap threshold: from the arena's top */
        assert_non_null(p[i]);
        memset(p[i], 1, SZ);
    }
    for (int i = N - 1; i >= 0; i--) {
        free(p[i]);
    }
    assert_true(mallinfo2().keepcost >= (size_t)N * SZ / 2);
    torii_blkcache_heap_trim();
    assert_true(mallinfo2().keepcost < (size_t)N * SZ / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_twice),   cmocka_unit_test(test_classes),
        cmocka_unit_test(test_shared_slots),  cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_attach_detach), cmocka_unit_test(test_cross_thread),
        cmocka_unit_test(test_hooks),         cmocka_unit_test(test_heap_keep),
    };

    hooks_rc = torii_blkcache_hooks_install(); /* before any OpenSSL or libevent call */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
