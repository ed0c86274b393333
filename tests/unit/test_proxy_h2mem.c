/* test_proxy_h2mem.c - the nghttp2 sessions of one worker sharing their first frame-buffer
 * chunk (src/proxy/h2mem.c): real server and client sessions driven interleaved, one
 * nghttp2_session_mem_send at a time per session (a session stops between the chunks of a
 * HEADERS + CONTINUATION while the others pack theirs: back-pressure), with SETTINGS,
 * requests, responses with DATA and header blocks that need CONTINUATION, a send from
 * another session's callback (the guard), and the bytes each emits compared with those of
 * the same session on nghttp2's default allocator; the blocks of streams coming back from the
 * thread's block cache (torii/blkcache.h). Also the bytes an idle session holds. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "h2mem_int.h"
#include "torii/blkcache.h"

#define N_PAIRS   3
#define N_REQS    3
#define BIG_FIELD 40000 /* a response field larger than one frame: CONTINUATION */
#define BODY      40000 /* response DATA per stream: three frames */
#define MAX_STEPS 100000

/* One server (or client) session: on the pool (m != NULL) or on the default allocator. */
struct peer {
    nghttp2_session *s;
    struct h2mem *m;
    struct evbuffer *out;
    struct peer *nest; /* sent from this one's on_frame_send callback (the guard) */
    size_t body_left[2 * N_REQS + 2];
    size_t sent_frames;
};

static char big_value[BIG_FIELD];

/* A field of a frame to submit (nghttp2 copies it; the cast only drops const). */
#define NV(n, v, vlen, flags)                                                                      \
    {                                                                                              \
        (uint8_t *)(uintptr_t)(n), (uint8_t *)(uintptr_t)(v), sizeof(n) - 1, (vlen), (flags)       \
    }

static ssize_t peer_send(struct peer *p)
{
    const uint8_t *data = NULL;
    ssize_t n;

    if (p->m != NULL) {
        return torii_proxy__h2mem_send(p->m, p->s, p->out);
    }
    n = nghttp2_session_mem_send(p->s, &data);
    if (n > 0) {
        assert_int_equal(evbuffer_add(p->out, data, (size_t)n), 0);
    }
    return n;
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *arg)
{
    struct peer *p = arg;
    size_t *left = &p->body_left[id / 2];
    size_t n = *left < len ? *left : len;

    (void)s;
    (void)src;
    for (size_t i = 0; i < n; i++) {
        buf[i] = (uint8_t)('a' + (id + *left - i) % 26);
    }
    *left -= n;
    if (*left == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* A request (END_STREAM): a response whose head needs CONTINUATION on odd streams 1, 5, ... */
static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct peer *p = arg;
    int32_t id = f->hd.stream_id;
    nghttp2_nv nv[] = {
        NV(":status", "200", 3, NGHTTP2_NV_FLAG_NONE),
        NV("x-big", big_value, (id % 4 == 1) ? BIG_FIELD : 10, NGHTTP2_NV_FLAG_NO_INDEX),
    };
    nghttp2_data_provider prd = {.source = {.ptr = p}, .read_callback = body_read};

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST
        || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    p->body_left[id / 2] = BODY;
    assert_int_equal(nghttp2_submit_response(s, id, nv, 2, &prd), 0);
    return 0;
}

/* Every other frame sent, the nested peer sends once from inside this send. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct peer *p = arg;

    (void)s;
    (void)f;
    if (p->nest != NULL && p->sent_frames++ % 2 == 0) {
        assert_true(peer_send(p->nest) >= 0);
    }
    return 0;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb = NULL;

    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    return cb;
}

/* A server (or client) session with empty SETTINGS queued: on the pool when m is given. */
static void peer_new(struct peer *p, struct h2mem *m, struct h2mem_pool *pool, int server)
{
    nghttp2_session_callbacks *cb = callbacks();

    memset(p, 0, sizeof(*p));
    p->m = m;
    p->out = evbuffer_new();
    assert_non_null(p->out);
    if (m != NULL) {
        assert_int_equal(server ? torii_proxy__h2mem_server_new(m, pool, &p->s, cb, p, NULL)
                                : torii_proxy__h2mem_client_new(m, pool, &p->s, cb, p, NULL),
                         0);
    } else {
        assert_int_equal(server ? nghttp2_session_server_new(&p->s, cb, p)
                                : nghttp2_session_client_new(&p->s, cb, p),
                         0);
    }
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(p->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static void peer_free(struct peer *p)
{
    nghttp2_session_del(p->s);
    evbuffer_free(p->out);
}

/* The client's preface, SETTINGS and N_REQS requests (END_STREAM), made once. */
static struct evbuffer *client_bytes(void)
{
    struct peer c;
    nghttp2_nv nv[] = {
        NV(":method", "GET", 3, NGHTTP2_NV_FLAG_NONE),
        NV(":scheme", "https", 5, NGHTTP2_NV_FLAG_NONE),
        NV(":authority", "a.test", 6, NGHTTP2_NV_FLAG_NONE),
        NV(":path", "/", 1, NGHTTP2_NV_FLAG_NONE),
    };
    struct evbuffer *b = evbuffer_new();

    peer_new(&c, NULL, NULL, 0);
    for (int i = 0; i < N_REQS; i++) {
        assert_true(nghttp2_submit_request(c.s, NULL, nv, 4, NULL, NULL) > 0);
    }
    for (int i = 0; i < MAX_STEPS && peer_send(&c) > 0; i++) {
    }
    assert_int_equal(evbuffer_add_buffer(b, c.out), 0);
    peer_free(&c);
    return b;
}

static void feed(struct peer *p, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);
    const uint8_t *d = evbuffer_pullup(in, -1);

    assert_int_equal(nghttp2_session_mem_recv(p->s, d, len), (ssize_t)len);
}

/* One send of each peer in turn until none has anything left (bounded). */
static void drive(struct peer **ps, size_t n)
{
    int busy = 1;

    for (int step = 0; busy; step++) {
        assert_true(step < MAX_STEPS);
        busy = 0;
        for (size_t i = 0; i < n; i++) {
            ssize_t r = peer_send(ps[i]);
            assert_true(r >= 0);
            busy |= r > 0;
        }
    }
}

static void assert_same_bytes(struct peer *a, struct peer *b)
{
    size_t la = evbuffer_get_length(a->out);

    assert_true(la > 0);
    assert_int_equal(la, evbuffer_get_length(b->out));
    assert_memory_equal(evbuffer_pullup(a->out, -1), evbuffer_pullup(b->out, -1), la);
}

static void skip_unless_proven(void)
{
    if (!torii_proxy__h2mem_proven()) {
        print_message("nghttp2 %s: not a version proven for sharing\n",
                      nghttp2_version(0)->version_str);
        skip();
    }
}

/* N_PAIRS pooled servers and their references, the same client bytes to each, all sends
 * interleaved one call at a time. nest: each pooled server sends the next one's frames from
 * its callbacks (the references likewise). */
static void run_servers(struct h2mem_pool *pool, int nest)
{
    struct h2mem mems[N_PAIRS];
    struct peer pooled[N_PAIRS], ref[N_PAIRS];
    struct peer *all[2 * N_PAIRS];
    struct evbuffer *req = client_bytes();

    for (int i = 0; i < N_PAIRS; i++) {
        peer_new(&pooled[i], &mems[i], pool, 1);
        peer_new(&ref[i], NULL, NULL, 1);
        all[2 * i] = &pooled[i];
        all[2 * i + 1] = &ref[i];
    }
    for (int i = 0; nest && i + 1 < N_PAIRS; i++) {
        pooled[i].nest = &pooled[i + 1];
        ref[i].nest = &ref[i + 1];
    }
    for (int i = 0; i < N_PAIRS; i++) {
        feed(&pooled[i], req);
        feed(&ref[i], req);
    }
    assert_int_equal(pool->users, pool->share ? N_PAIRS : 0);
    drive(all, 2 * N_PAIRS);
    for (int i = 0; i < N_PAIRS; i++) {
        assert_ptr_equal(mems[i].shared, pool->share ? pool->frame : NULL);
        assert_same_bytes(&pooled[i], &ref[i]);
        peer_free(&pooled[i]);
        peer_free(&ref[i]);
    }
    assert_int_equal(pool->users, 0);
    evbuffer_free(req);
}

static void test_servers_interleaved(void **state)
{
    struct h2mem_pool pool = {0};

    (void)state;
    skip_unless_proven();
    run_servers(&pool, 0);
    assert_true(pool.share);
    assert_int_equal(pool.nested, 0);
    torii_proxy__h2mem_pool_clear(&pool);
    assert_null(pool.frame);
}

static void test_send_from_callback(void **state)
{
    struct h2mem_pool pool = {0};

    (void)state;
    skip_unless_proven();
    run_servers(&pool, 1);
    assert_true(pool.nested > 0);
    torii_proxy__h2mem_pool_clear(&pool);
}

/* Sharing off (a version not proven): every session has its own chunk, same bytes. */
static void test_not_shared(void **state)
{
    struct h2mem_pool pool = {.decided = 1, .share = 0};

    (void)state;
    run_servers(&pool, 1);
    assert_null(pool.frame);
    torii_proxy__h2mem_pool_clear(&pool);
}

/* Sessions with streams on a pool, twice: the second round's stream blocks come from what the
 * first freed, the frames stay byte for byte those of sessions on the default allocator
 * (run_servers), and the pool's end frees what it kept. */
static void test_streams_reuse_blocks(void **state)
{
    struct h2mem_pool pool = {0};
    struct torii_blkcache_stats st;
    unsigned long first;

    (void)state;
    assert_int_equal(torii_blkcache_attach(NULL), TORII_OK); /* as a worker thread */
    run_servers(&pool, 0);
    torii_blkcache_stats(torii_blkcache_current(), &st);
    first = st.hits;
    assert_true(st.bytes > 0);
    run_servers(&pool, 1);
    torii_blkcache_stats(torii_blkcache_current(), &st);
    assert_true(st.hits > first);
    torii_proxy__h2mem_pool_clear(&pool);
    torii_blkcache_detach(); /* frees what it kept (LeakSanitizer) */
    assert_null(torii_blkcache_current());
}

/* Client sessions (backends): created, then another session packs frames before their
 * first send; their preface, SETTINGS and requests come out intact. */
static void test_clients(void **state)
{
    struct h2mem_pool pool = {0};
    struct h2mem mc[2], ms;
    struct peer pc[2], rc[2], srv;
    struct evbuffer *req = client_bytes();
    struct peer *all[] = {&pc[0], &rc[0], &pc[1], &rc[1]};
    nghttp2_nv nv[] = {
        NV(":method", "GET", 3, NGHTTP2_NV_FLAG_NONE),
        NV(":scheme", "http", 4, NGHTTP2_NV_FLAG_NONE),
        NV(":authority", "b.test", 6, NGHTTP2_NV_FLAG_NONE),
        NV(":path", big_value, BIG_FIELD, NGHTTP2_NV_FLAG_NO_INDEX),
    };

    (void)state;
    skip_unless_proven();
    for (int i = 0; i < 2; i++) {
        peer_new(&pc[i], &mc[i], &pool, 0);
        peer_new(&rc[i], NULL, NULL, 0);
        for (int r = 0; r < N_REQS; r++) {
            assert_true(nghttp2_submit_request(pc[i].s, NULL, nv, 4, NULL, NULL) > 0);
            assert_true(nghttp2_submit_request(rc[i].s, NULL, nv, 4, NULL, NULL) > 0);
        }
    }
    peer_new(&srv, &ms, &pool, 1); /* packs its frames over the clients' first chunk */
    feed(&srv, req);
    drive((struct peer *[]){&srv}, 1);
    assert_int_equal(pool.users, 3);
    drive(all, 4);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(evbuffer_pullup(pc[i].out, NGHTTP2_CLIENT_MAGIC_LEN),
                            NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
        assert_same_bytes(&pc[i], &rc[i]);
        peer_free(&pc[i]);
        peer_free(&rc[i]);
    }
    peer_free(&srv);
    evbuffer_free(req);
    torii_proxy__h2mem_pool_clear(&pool);
}

#define N_IDLE 64

/* N_IDLE idle server sessions: the client's preface and SETTINGS in, the server's SETTINGS
 * and ACK out, no stream. */
static void idle_sessions(struct h2mem_pool *pool, struct h2mem *mems, struct peer *ps)
{
    struct evbuffer *client = client_bytes();
    struct evbuffer *pre = evbuffer_new();

    assert_int_equal(evbuffer_remove_buffer(client, pre, NGHTTP2_CLIENT_MAGIC_LEN + 9),
                     NGHTTP2_CLIENT_MAGIC_LEN + 9);
    for (int i = 0; i < N_IDLE; i++) {
        peer_new(&ps[i], pool != NULL ? &mems[i] : NULL, pool, 1);
        feed(&ps[i], pre);
        drive((struct peer *[]){&ps[i]}, 1);
        evbuffer_drain(ps[i].out, evbuffer_get_length(ps[i].out));
    }
    evbuffer_free(pre);
    evbuffer_free(client);
}

static void free_sessions(struct peer *ps)
{
    for (int i = 0; i < N_IDLE; i++) {
        peer_free(&ps[i]);
    }
}

/* Heap bytes held per idle session. */
static size_t idle_bytes(struct h2mem_pool *pool, struct h2mem *mems, struct peer *ps)
{
    size_t before = mallinfo2().uordblks, after;

    idle_sessions(pool, mems, ps);
    after = mallinfo2().uordblks;
    free_sessions(ps);
    return after > before ? (after - before) / N_IDLE : 0;
}

static void test_idle_bytes(void **state)
{
    static struct h2mem mems[N_IDLE];
    static struct peer ps[N_IDLE];
    struct h2mem_pool pool = {0};
    size_t plain, pooled;

    (void)state;
    skip_unless_proven();
    plain = idle_bytes(NULL, NULL, ps);
    peer_new(&ps[0], &mems[0], &pool, 1); /* the pool's buffer exists before the count */
    peer_free(&ps[0]);
    assert_non_null(pool.frame);
    pooled = idle_bytes(&pool, mems, ps);
    print_message("heap bytes per idle server session: default allocator %zu, pooled %zu\n", plain,
                  pooled);
    assert_int_equal(pool.pages.out, 0);
    torii_proxy__h2mem_pool_clear(&pool);
    if (plain == 0) {
        skip(); /* a malloc without mallinfo2 figures (sanitizers) */
    }
    /* the frame buffer, the stream map and the HPACK rings are the pool's */
    assert_true(pooled + H2MEM_CHUNK + H2MEM_PAGE + 2 * H2MEM_RING <= plain);
}

/* Resident kB of the mapping that holds p (/proc/self/smaps); -1 when not found. */
static long rss_kb_of(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[256];
    unsigned long lo, hi, a = (unsigned long)(uintptr_t)p;
    long kb = -1;
    int in = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = a >= lo && a < hi;
        } else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) {
            break;
        }
    }
    (void)fclose(f);
    return kb;
}

/* The stream maps and HPACK rings of idle sessions are pages nobody wrote: not resident. A
 * request on one session makes its map resident (the measure sees pages). */
static void test_idle_pages(void **state)
{
    static struct h2mem mems[N_IDLE];
    static struct peer ps[N_IDLE];
    struct h2mem_pool pool = {0};
    struct evbuffer *req = client_bytes();

    (void)state;
    skip_unless_proven();
    idle_sessions(&pool, mems, ps);
    assert_int_equal(pool.pages.out, 3 * N_IDLE);
    for (int i = 0; i < N_IDLE; i++) {
        assert_non_null(mems[i].map);
        assert_int_equal((uintptr_t)mems[i].map % H2MEM_PAGE, 0);
        assert_int_equal(rss_kb_of(mems[i].map), 0);
        assert_int_equal(rss_kb_of(mems[i].rings[0]), 0);
        assert_int_equal(rss_kb_of(mems[i].rings[1]), 0);
    }
    assert_int_equal(evbuffer_drain(req, NGHTTP2_CLIENT_MAGIC_LEN + 9), 0);
    feed(&ps[0], req);
    drive((struct peer *[]){&ps[0]}, 1);
    assert_true(rss_kb_of(mems[0].map) >= H2MEM_PAGE / 1024);
    free_sessions(ps);
    assert_int_equal(pool.pages.out, 0);
    assert_true(pool.pages.dirty.n + pool.pages.clean.n > 0);
    evbuffer_free(req);
    torii_proxy__h2mem_pool_clear(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_servers_interleaved),  cmocka_unit_test(test_send_from_callback),
        cmocka_unit_test(test_not_shared),           cmocka_unit_test(test_clients),
        cmocka_unit_test(test_idle_bytes),           cmocka_unit_test(test_idle_pages),
        cmocka_unit_test(test_streams_reuse_blocks),
    };

    for (size_t i = 0; i < sizeof(big_value); i++) {
        big_value[i] = (char)('a' + (i * 7) % 26);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
