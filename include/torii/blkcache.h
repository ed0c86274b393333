/* blkcache.h - the per-thread block cache: blocks a thread freed, kept by size class for its
 * next allocations of the same size, so that the big buffers of a proxy worker (OpenSSL's
 * ~17 KB TLS record buffers, released after every record with SSL_MODE_RELEASE_BUFFERS;
 * libevent's evbuffer chains; nghttp2's stream blocks) stay hot in the cache and come back
 * without glibc's arena work (bins, coalescing, trimming the heap with madvise).
 *
 * The blocks are plain malloc blocks: nothing is put in front of them, a block is filed by
 * its malloc_usable_size (16-byte classes: a block of class k holds at least 16 k - 8 bytes),
 * a request of n bytes is served from the class whose every block holds n, and a miss is a
 * plain malloc(n). So a block may be freed with free(), or handed to any thread's cache,
 * whichever thread allocated it: a block a worker allocated and the main thread frees (a
 * connection closed at stop) simply goes back to glibc.
 *
 * Bounds: a cache keeps blocks of usable size <= TORII_BLKCACHE_MAX_BLOCK only, at most
 * max_per_class blocks and half of max_bytes of one class, and max_bytes in all (struct
 * torii_blkcache_opts); a block refused is freed at once. A full cache frees blocks of the
 * other classes in turn to keep the newest one, so the classes a worker stopped asking for
 * (after a burst of handshakes) drain and the hot ones stay. Nothing of a connection is kept: an
 * idle connection holds what it held before (the cache holds blocks no connection uses, bounded per
 * worker).
 *
 * Why process-wide hooks: OpenSSL (CRYPTO_set_mem_functions) and libevent
 * (event_set_mem_functions) take one allocator for the whole process and nothing per SSL,
 * SSL_CTX, event_base or evbuffer; both accept it only before their first allocation. So
 * torii_blkcache_hooks_install (main, first thing) routes every allocation of both libraries
 * through torii_blkcache_malloc / _realloc / _release, which use the calling thread's cache
 * when it has one (a proxy worker: torii_blkcache_attach at its start, torii_blkcache_detach
 * at its end) and are plain malloc / realloc / free on every other thread (main, admin,
 * renewer, ACME, fleet...). nghttp2 takes an allocator per session and uses the same
 * functions through src/proxy/h2mem.c.
 *
 * Sanitizers: in a build with AddressSanitizer (TORII_SANITIZE=address,...) the hooks are not
 * installed (torii_blkcache_hooks_install returns TORII_EUNSUPPORTED), because a cached block
 * is never freed as far as ASan knows, so a use after free of an OpenSSL or libevent block
 * would go unseen; the worker's cache still serves nghttp2's blocks (as the h2mem cache did
 * before this module). ThreadSanitizer builds keep the hooks: reuse on the owning thread is
 * not a race. The cache itself is unit-tested in every build (tests/unit/test_core_blkcache.c).
 *
 * Secrets: a block comes back with the bytes its last user left, as from malloc; OpenSSL
 * wipes its key material before freeing it (OPENSSL_clear_free), as it does with glibc.
 *
 * Ownership: a cache owns the blocks it keeps (freed by torii_blkcache_free /
 * torii_blkcache_detach); a block handed out belongs to the caller, to be given back with
 * torii_blkcache_release or free(). Threads: a struct torii_blkcache is used by one thread at
 * a time; the thread functions below may be called from any thread and touch only the
 * calling thread's cache; torii_blkcache_hooks_install from main only, before any OpenSSL or
 * libevent call and before any other thread exists. */
#ifndef TORII_BLKCACHE_H
#define TORII_BLKCACHE_H

#include <stddef.h>

#include "torii/err.h"

/** The largest usable size a cache keeps: OpenSSL's record buffers are ~17 KB, nghttp2's
 * frame chunks 16 KB, libevent's chains powers of two, up to the 64 KiB chain of a plain
 * read (src/stream: 65,536 bytes, 65,544 usable). */
#define TORII_BLKCACHE_MAX_BLOCK ((size_t)66 * 1024 - 8)

/** Bounds of a cache; 0 in a field: its default. */
struct torii_blkcache_opts {
    size_t max_bytes;       /* blocks kept, counted as 16 x class (default 1 MiB) */
    unsigned max_per_class; /* blocks of one class kept (default 128) */
};

/** Counters of a cache (for tests and diagnostics). */
struct torii_blkcache_stats {
    size_t bytes;          /* kept now, counted as 16 x class */
    size_t blocks;         /* kept now */
    unsigned long hits;    /* requests served from the cache */
    unsigned long misses;  /* requests the cache could not serve (the caller mallocs) */
    unsigned long refused; /* blocks given back and not kept (too large, a bound reached) */
    unsigned long evicted; /* blocks kept, then freed to make room for others */
};

struct torii_blkcache;

/** A new, empty cache with the bounds of o (NULL: the defaults) into *out: TORII_OK or
 * TORII_ENOMEM. */
int torii_blkcache_new(const struct torii_blkcache_opts *o, struct torii_blkcache **out)
    TORII_MUST_USE;
/** Free every block c keeps, then c. NULL accepted. */
void torii_blkcache_free(struct torii_blkcache *c);
/** A block of at least size bytes from c (contents undefined), or NULL when c keeps none of
 * that class (the caller then mallocs). */
void *torii_blkcache_get(struct torii_blkcache *c, size_t size);
/** Keep p (a malloc block no longer used, not NULL) in c: 1 (blocks of other classes may be
 * freed to make room), or 0 when it is too large or a bound of its class is reached (the
 * caller then frees it). */
int torii_blkcache_put(struct torii_blkcache *c, void *p);
/** Free every block c keeps (c stays usable). */
void torii_blkcache_clear(struct torii_blkcache *c);
/** c's counters into *out. */
void torii_blkcache_stats(const struct torii_blkcache *c, struct torii_blkcache_stats *out);

/** Give the calling thread a cache with the bounds of o (NULL: the defaults): TORII_OK,
 * TORII_EEXIST when it has one already, TORII_ENOMEM (the thread then runs on malloc). */
int torii_blkcache_attach(const struct torii_blkcache_opts *o) TORII_MUST_USE;
/** The calling thread's cache is freed with every block it keeps; the thread runs on
 * malloc/free from now on. Without a cache: nothing. */
void torii_blkcache_detach(void);
/** The calling thread's cache, or NULL. */
struct torii_blkcache *torii_blkcache_current(void);

/** As malloc(size), from the calling thread's cache when it has a block of that class. */
void *torii_blkcache_malloc(size_t size);
/** As realloc(p, size) (p NULL: torii_blkcache_malloc; size 0: torii_blkcache_release, NULL). */
void *torii_blkcache_realloc(void *p, size_t size);
/** As free(p), into the calling thread's cache when it keeps it. NULL accepted. */
void torii_blkcache_release(void *p);

/** Route OpenSSL's and libevent's allocations through the functions above, for the whole
 * process: TORII_OK; TORII_EUNSUPPORTED in an AddressSanitizer build (nothing installed);
 * TORII_EIO when OpenSSL refused (it allocated already: it keeps its allocator; libevent's
 * hooks are installed all the same). main only, before any OpenSSL or libevent call. */
int torii_blkcache_hooks_install(void) TORII_MUST_USE;

/** The free memory glibc keeps at the top of each arena instead of giving it back to the
 * kernel (M_TRIM_THRESHOLD; glibc's default is 128 KiB). A worker with many answers in flight
 * holds several MiB of buffers at once and frees them a moment later: with the default, its
 * arena gave the pages back (madvise) and faulted them in again at the next burst, about 2.5 %
 * of the worker's CPU with 200 HTTP/2 streams in flight. TORII_OK, or TORII_EUNSUPPORTED in an
 * AddressSanitizer or ThreadSanitizer build (their allocators ignore it). main only, before other
 * threads exist. */
int torii_blkcache_heap_keep(size_t bytes) TORII_MUST_USE;
/** Give the free memory of every arena back to the kernel now (malloc_trim): after start-up,
 * whose temporary allocations the kept top would otherwise hold. Any thread. */
void torii_blkcache_heap_trim(void);

#endif
