/* h2mem_int.h - internal to the proxy module: the memory of the nghttp2 sessions of one
 * worker (h2.c: clients, h2up.c: backends), given through a per-session nghttp2_mem.
 *
 * What an idle session holds (nghttp2 1.52): the session (2,928 bytes), the HPACK rings
 * (2 x 1,024), the stream map (4,096, all zero while no stream is in it), and the outbound
 * frame buffer: one chunk of H2MEM_CHUNK bytes plus 48 of chain, kept for the session's
 * life, and more chunks only while a header block too large for one frame is sent.
 *
 * The stream map and the HPACK rings of a session come from the worker's page arena
 * (h2pages.c): pages handed out untouched, so a session that never opens a stream nor sends
 * a header holds no resident memory for them.
 *
 * The first chunk of every session of a worker is ONE buffer of that worker (the pool's).
 * Why that is safe, from nghttp2 1.52's source (lib/nghttp2_session.c, nghttp2_buf.c):
 *   - the chunk is allocated once, in nghttp2_session_*_new3 (nghttp2_bufs_init3, the only
 *     realloc(NULL, H2MEM_CHUNK) there), and is the head of aob.framebufs for the session's
 *     life: nghttp2_bufs_reset keeps it, only nghttp2_bufs_realloc (a read_length_callback,
 *     which torii does not set) would replace it, and then it frees it (ignored here);
 *   - a frame is packed into it only inside nghttp2_session_mem_send (session_prep_frame in
 *     state POP_ITEM), which then rewinds to the head and returns [pos, last) of it from the
 *     SAME call; the caller (torii_proxy__h2mem_send) copies those bytes at once;
 *   - nothing reads the chunk's bytes afterwards: the next call sees pos == last and moves
 *     on (session_after_frame_sent2: the next chunk of a HEADERS + CONTINUATION, private
 *     mallocs, or a reset of the chain's pointers, which live in the private 48 bytes). So
 *     a caller that stops calling between two chunks of one frame (back-pressure) loses
 *     nothing when other sessions pack in the meantime;
 *   - torii never uses nghttp2_session_send (its WOULDBLOCK rewinds into the chunk) nor
 *     DATA with NGHTTP2_DATA_FLAG_NO_COPY (its frame header stays in the chunk);
 *   - a client session writes the connection preface into the chunk at creation, to be
 *     returned by its first send: torii_proxy__h2mem_client_new takes it out at once and
 *     torii_proxy__h2mem_send emits it first.
 * The guard: the session inside torii_proxy__h2mem_send is recorded (the lender); a send of
 * another session from one of its callbacks (between the pack and the copy) saves the shared
 * bytes and puts them back after its own copy (counted in nested). Sharing is on only for
 * the nghttp2 versions whose source was read (torii_proxy__h2mem_proven); else every session
 * has its own chunk, as with the default allocator.
 * Lending happens only while a session is created (the blocks named above, once each), and
 * only on a proven version; everything else is malloc/calloc/realloc/free, malloc and free
 * through the worker thread's block cache (torii/blkcache.h: nghttp2 1.52 allocates and
 * frees about five blocks per stream: its stream, outbound items, the header buffer; any
 * version: the cache relies on nothing but malloc_usable_size).
 * Ownership: the pool belongs to its worker (struct proxy_worker), a struct h2mem to the
 * owner of its session and must outlive nghttp2_session_del. Threads: worker thread only. */
#ifndef TORII_PROXY_H2MEM_INT_H
#define TORII_PROXY_H2MEM_INT_H

#include <sys/types.h>

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

/* NGHTTP2_FRAMEBUF_CHUNKLEN of nghttp2 1.52 (lib/nghttp2_frame.h): a frame header, a pad
 * length byte and the largest payload of the default SETTINGS_MAX_FRAME_SIZE. */
#define H2MEM_CHUNK (9 + 1 + 16384)
#define H2MEM_PAGE  4096 /* the stream map of nghttp2 1.52: 256 buckets of 16 bytes */
#define H2MEM_RING  1024 /* an HPACK ring of nghttp2 1.52: 128 entry pointers */

struct h2mem;
struct h2pages_slab;

/* Blocks given back, for the next sessions (h2pages.c). */
struct h2pages_list {
    void **v;
    size_t n, cap;
};

/* The page arena of a worker (h2pages.c); all zero is an empty one. */
struct h2pages {
    struct h2pages_slab *slabs; /* every mapping, unmapped when the worker ends */
    uint8_t *fresh;             /* the newest slab's pages never handed out, and how many */
    size_t n_fresh;
    struct h2pages_list clean; /* pages given back all zero */
    struct h2pages_list dirty; /* pages given back written: cleared when handed out again */
    struct h2pages_list rings; /* ring slots given back (pages cut in four) */
    unsigned long out;         /* pages and slots handed out, not yet back */
};

/* One per worker; all zero is a pool not yet used. */
struct h2mem_pool {
    uint8_t *frame;       /* the shared first chunk, allocated with the first session */
    struct h2mem *lender; /* the session inside torii_proxy__h2mem_send; NULL: none */
    unsigned users;       /* sessions whose first chunk is frame */
    unsigned long nested; /* sends while another session's frame was being returned */
    struct h2pages pages; /* the sessions' stream maps and HPACK rings */
    unsigned decided : 1; /* share below is known */
    unsigned share : 1;   /* torii_proxy__h2mem_proven() */
    unsigned closed : 1;  /* the worker ended: frame goes with its last user */
};

/* One per session; embedded in the session's owner. */
struct h2mem {
    nghttp2_mem mem; /* mem_user_data: this */
    struct h2mem_pool *pool;
    uint8_t *shared;        /* pool->frame while it is this session's first chunk */
    void *map;              /* its stream map's page (pool->pages) while it has it */
    void *rings[2];         /* its HPACK rings' slots (pool->pages) while it has them */
    unsigned creating : 1;  /* inside nghttp2_session_*_new3: the pool may lend */
    unsigned got_frame : 1; /* the pool was asked for each block once (lent or not) */
    unsigned got_map : 1;
    unsigned got_rings : 1;
    unsigned preface : 1; /* client: the connection preface is still to be emitted */
};

/* ---- h2pages.c ---- */

/** A page of zeros (H2MEM_PAGE bytes, page-aligned), untouched when it was never used; NULL
 * when no memory can be mapped. */
void *torii_proxy__h2pages_zeroed(struct h2pages *a);
/** Give back a page of torii_proxy__h2pages_zeroed. */
void torii_proxy__h2pages_put(struct h2pages *a, void *page);
/** A ring slot (H2MEM_RING bytes, contents undefined); NULL as above. */
void *torii_proxy__h2pages_ring(struct h2pages *a);
/** Give back a slot of torii_proxy__h2pages_ring. */
void torii_proxy__h2pages_put_ring(struct h2pages *a, void *slot);
/** Unmap everything; nothing may be handed out any more. */
void torii_proxy__h2pages_clear(struct h2pages *a);

/* ---- h2mem.c ---- */

/** 1 when the running libnghttp2 is a version whose source the proof above was made on. */
int torii_proxy__h2mem_proven(void);
/** A server (client) session whose allocator is m, on the pool of its worker: as
 * nghttp2_session_server_new2 (client_new2); m must stay valid until nghttp2_session_del.
 * 0, or a negative nghttp2 error. */
int torii_proxy__h2mem_server_new(struct h2mem *m, struct h2mem_pool *pool, nghttp2_session **out,
                                  const nghttp2_session_callbacks *cb, void *user,
                                  const nghttp2_option *opt);
int torii_proxy__h2mem_client_new(struct h2mem *m, struct h2mem_pool *pool, nghttp2_session **out,
                                  const nghttp2_session_callbacks *cb, void *user,
                                  const nghttp2_option *opt);
/** One nghttp2_session_mem_send of s (made with m), its bytes appended to out: their
 * number, 0 when nghttp2 has nothing to send, or a negative nghttp2 error. The only way
 * torii sends frames of such a session. */
ssize_t torii_proxy__h2mem_send(struct h2mem *m, nghttp2_session *s, struct evbuffer *out);
/** The worker ends: the pool's buffer is freed now, or with the last session still using it
 * (no new session shares it). NULL accepted. */
void torii_proxy__h2mem_pool_clear(struct h2mem_pool *pool);

#endif
