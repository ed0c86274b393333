/* h2mem.c - the per-session nghttp2 allocator that serves every session's first frame-buffer
 * chunk from one buffer of the worker, and its stream map and HPACK rings from the worker's
 * page arena (h2pages.c); and the send that copies each frame out at once (h2mem_int.h says
 * why that is safe). Worker thread only. */
#include <stdlib.h>
#include <string.h>

#include "h2mem_int.h"
#include "torii/blkcache.h"
#include "torii/mem.h"

/* nghttp2 versions whose source the proof in h2mem_int.h was made on: 1.52.x. */
#define H2MEM_PROVEN_MIN 0x013400
#define H2MEM_PROVEN_MAX 0x0134ff

int torii_proxy__h2mem_proven(void)
{
    const nghttp2_info *v = nghttp2_version(0);

    return v != NULL && v->version_num >= H2MEM_PROVEN_MIN && v->version_num <= H2MEM_PROVEN_MAX;
}

/* What nghttp2_session_*_new3 takes besides the allocator. */
struct h2mem_new_args {
    const nghttp2_session_callbacks *cb;
    void *user;
    const nghttp2_option *opt;
};

/* After the worker's end, the pool goes with the last block it lent. */
static void h2mem_pool_done(struct h2mem_pool *pool)
{
    if (pool->closed && pool->users == 0 && pool->pages.out == 0) {
        TORII_FREE(pool->frame);
        torii_proxy__h2pages_clear(&pool->pages);
    }
}

/* The session's allocations while it is created (h2mem_int.h): its HPACK rings (the only
 * mallocs of H2MEM_RING), its stream map (the only calloc of H2MEM_PAGE) and its first
 * frame-buffer chunk (the only realloc(NULL, H2MEM_CHUNK)) come from the pool. */
static int h2mem_lends(const struct h2mem *m)
{
    return m->creating && m->pool->share && !m->pool->closed;
}

static void *h2mem_malloc(size_t size, void *ud)
{
    struct h2mem *m = ud;
    int i = m->rings[0] == NULL ? 0 : 1;

    if (size == H2MEM_RING && h2mem_lends(m) && m->rings[i] == NULL && !m->got_rings) {
        m->rings[i] = torii_proxy__h2pages_ring(&m->pool->pages);
        m->got_rings = i == 1 || m->rings[i] == NULL;
        if (m->rings[i] != NULL) {
            return m->rings[i];
        }
    }
    return torii_blkcache_malloc(size);
}

static void *h2mem_calloc(size_t n, size_t size, void *ud)
{
    struct h2mem *m = ud;

    if (n <= H2MEM_PAGE && size <= H2MEM_PAGE && n * size == H2MEM_PAGE && h2mem_lends(m)
        && !m->got_map) {
        m->got_map = 1;
        m->map = torii_proxy__h2pages_zeroed(&m->pool->pages);
        if (m->map != NULL) {
            return m->map;
        }
    }
    return calloc(n, size);
}

/* 1 when ptr was lent by the pool (given back to it). */
static int h2mem_give_back(struct h2mem *m, void *ptr)
{
    struct h2mem_pool *pool = m->pool;

    if (ptr == m->shared) {
        m->shared = NULL; /* kept for the other sessions */
        pool->users--;
    } else if (ptr == m->map) {
        m->map = NULL;
        torii_proxy__h2pages_put(&pool->pages, ptr);
    } else if (ptr == m->rings[0] || ptr == m->rings[1]) {
        m->rings[ptr == m->rings[0] ? 0 : 1] = NULL;
        torii_proxy__h2pages_put_ring(&pool->pages, ptr);
    } else {
        return 0;
    }
    h2mem_pool_done(pool);
    return 1;
}

static void h2mem_free(void *ptr, void *ud)
{
    struct h2mem *m = ud;

    if (ptr != NULL && !h2mem_give_back(m, ptr)) {
        torii_blkcache_release(ptr); /* the worker's block cache (torii/blkcache.h) */
    }
}

/* The size of a block the pool lent (0: not one). */
static size_t h2mem_lent_size(const struct h2mem *m, const void *ptr)
{
    if (ptr == m->shared) {
        return H2MEM_CHUNK;
    }
    if (ptr == m->map) {
        return H2MEM_PAGE;
    }
    return ptr == m->rings[0] || ptr == m->rings[1] ? H2MEM_RING : 0;
}

static void *h2mem_realloc(void *ptr, size_t size, void *ud)
{
    struct h2mem *m = ud;
    struct h2mem_pool *pool = m->pool;
    size_t lent = ptr != NULL ? h2mem_lent_size(m, ptr) : 0;
    uint8_t *p;

    if (ptr == NULL && size == H2MEM_CHUNK && h2mem_lends(m) && !m->got_frame) {
        m->got_frame = 1; /* the first chunk only: any later one is the session's own */
        if (pool->frame == NULL) {
            pool->frame = malloc(H2MEM_CHUNK);
        }
        if (pool->frame != NULL) {
            m->shared = pool->frame;
            pool->users++;
            return m->shared;
        }
    }
    if (lent == 0) {
        return torii_blkcache_realloc(ptr, size);
    }
    p = malloc(size); /* a lent block grown (not done by 1.52): a private copy */
    if (p != NULL) {
        memcpy(p, ptr, size < lent ? size : lent);
        (void)h2mem_give_back(m, ptr);
    }
    return p;
}

static void h2mem_init(struct h2mem *m, struct h2mem_pool *pool)
{
    memset(m, 0, sizeof(*m));
    if (!pool->decided) {
        pool->share = torii_proxy__h2mem_proven() ? 1 : 0;
        pool->decided = 1;
    }
    m->pool = pool;
    m->mem.mem_user_data = m;
    m->mem.malloc = h2mem_malloc;
    m->mem.free = h2mem_free;
    m->mem.calloc = h2mem_calloc;
    m->mem.realloc = h2mem_realloc;
    m->creating = 1;
}

/* The client's first send is the preface nghttp2 wrote into the first chunk at creation:
 * taken now, before another session packs a frame there, and emitted by the first
 * torii_proxy__h2mem_send. */
static int h2mem_take_preface(struct h2mem *m, nghttp2_session *s)
{
    const uint8_t *data = NULL;
    ssize_t n = nghttp2_session_mem_send(s, &data);

    if (n < 0) {
        return (int)n;
    }
    if ((size_t)n != NGHTTP2_CLIENT_MAGIC_LEN
        || memcmp(data, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN) != 0) {
        return NGHTTP2_ERR_PROTO; /* not the library this file was written against */
    }
    m->preface = 1;
    return 0;
}

static int h2mem_session_new(struct h2mem *m, struct h2mem_pool *pool, nghttp2_session **out,
                             const struct h2mem_new_args *a, int server)
{
    int rv;

    h2mem_init(m, pool);
    rv = server ? nghttp2_session_server_new3(out, a->cb, a->user, a->opt, &m->mem)
                : nghttp2_session_client_new3(out, a->cb, a->user, a->opt, &m->mem);
    m->creating = 0;
    if (rv != 0) {
        *out = NULL; /* nghttp2 leaves the freed session there */
    } else if (!server && m->shared != NULL) {
        rv = h2mem_take_preface(m, *out);
        if (rv != 0) {
            nghttp2_session_del(*out);
            *out = NULL;
        }
    }
    return rv;
}

int torii_proxy__h2mem_server_new(struct h2mem *m, struct h2mem_pool *pool, nghttp2_session **out,
                                  const nghttp2_session_callbacks *cb, void *user,
                                  const nghttp2_option *opt)
{
    const struct h2mem_new_args a = {cb, user, opt};

    return h2mem_session_new(m, pool, out, &a, 1);
}

int torii_proxy__h2mem_client_new(struct h2mem *m, struct h2mem_pool *pool, nghttp2_session **out,
                                  const nghttp2_session_callbacks *cb, void *user,
                                  const nghttp2_option *opt)
{
    const struct h2mem_new_args a = {cb, user, opt};

    return h2mem_session_new(m, pool, out, &a, 0);
}

/* The send itself: the lender recorded while nghttp2 packs and returns, the bytes copied. */
static ssize_t h2mem_send_once(struct h2mem *m, nghttp2_session *s, struct evbuffer *out)
{
    struct h2mem_pool *pool = m->pool;
    struct h2mem *outer = pool->lender;
    const uint8_t *data = NULL;
    ssize_t n;

    pool->lender = m;
    n = nghttp2_session_mem_send(s, &data);
    if (n > 0 && evbuffer_add(out, data, (size_t)n) != 0) {
        n = NGHTTP2_ERR_NOMEM;
    }
    pool->lender = outer;
    return n;
}

ssize_t torii_proxy__h2mem_send(struct h2mem *m, nghttp2_session *s, struct evbuffer *out)
{
    struct h2mem_pool *pool = m->pool;
    const struct h2mem *outer = pool->lender;
    uint8_t *saved = NULL;
    ssize_t n;

    if (m->preface) {
        if (evbuffer_add(out, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN) != 0) {
            return NGHTTP2_ERR_NOMEM;
        }
        m->preface = 0;
        return NGHTTP2_CLIENT_MAGIC_LEN;
    }
    if (outer != NULL && outer->shared != NULL && m->shared != NULL) {
        /* From a callback of the lender, whose frame is in the buffer, not yet copied. */
        saved = malloc(H2MEM_CHUNK);
        if (saved == NULL) {
            return NGHTTP2_ERR_NOMEM;
        }
        memcpy(saved, pool->frame, H2MEM_CHUNK);
        pool->nested++;
    }
    n = h2mem_send_once(m, s, out);
    if (saved != NULL) {
        memcpy(pool->frame, saved, H2MEM_CHUNK);
        free(saved);
    }
    return n;
}

void torii_proxy__h2mem_pool_clear(struct h2mem_pool *pool)
{
    if (pool == NULL) {
        return;
    }
    pool->closed = 1;
    h2mem_pool_done(pool);
}
