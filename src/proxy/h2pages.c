/* h2pages.c - the page arena of a worker's nghttp2 sessions (h2mem_int.h): pages mapped in
 * slabs and handed out untouched, so that a block a session never writes (the stream map of
 * a connection that opened no stream, the HPACK rings of one that sent no header) costs no
 * resident memory. Blocks given back are kept for the next sessions: pages found all zero
 * need no clearing, the others are cleared when handed out again. Nothing is unmapped before
 * the worker ends. Worker thread only. */
#include <sys/mman.h>

#include <stdlib.h>
#include <string.h>

#include "h2mem_int.h"

#define H2PAGES_SLAB 64 /* pages mapped at once: 256 KiB, far below a huge page */

struct h2pages_slab {
    struct h2pages_slab *next;
    uint8_t *base;
};

/* A block onto a free list; 0, or -1 when the list cannot grow (the block stays mapped,
 * unused, until the worker ends). */
static int h2pages_push(struct h2pages_list *l, void *p)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p;
    return 0;
}

static void *h2pages_pop(struct h2pages_list *l)
{
    return l->n > 0 ? l->v[--l->n] : NULL;
}

/* A page never handed out (a new slab when the last one is used up). */
static void *h2pages_fresh(struct h2pages *a)
{
    struct h2pages_slab *s;
    void *base;

    if (a->n_fresh == 0) {
        s = malloc(sizeof(*s));
        if (s == NULL) {
            return NULL;
        }
        base = mmap(NULL, (size_t)H2PAGES_SLAB * H2MEM_PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) {
            free(s);
            return NULL;
        }
        /* never a huge page: one would make every page of it resident */
        (void)madvise(base, (size_t)H2PAGES_SLAB * H2MEM_PAGE, MADV_NOHUGEPAGE);
        s->base = base;
        s->next = a->slabs;
        a->slabs = s;
        a->fresh = base;
        a->n_fresh = H2PAGES_SLAB;
    }
    a->n_fresh--;
    a->fresh += H2MEM_PAGE;
    return a->fresh - H2MEM_PAGE;
}

void *torii_proxy__h2pages_zeroed(struct h2pages *a)
{
    void *p = h2pages_pop(&a->clean);

    if (p == NULL) {
        p = h2pages_pop(&a->dirty);
        if (p != NULL) {
            memset(p, 0, H2MEM_PAGE);
        }
    }
    if (p == NULL) {
        p = h2pages_fresh(a);
    }
    if (p != NULL) {
        a->out++;
    }
    return p;
}

static int h2pages_all_zero(const void *page)
{
    const uint64_t *w = page;

    for (size_t i = 0; i < H2MEM_PAGE / sizeof(*w); i++) {
        if (w[i] != 0) {
            return 0;
        }
    }
    return 1;
}

void torii_proxy__h2pages_put(struct h2pages *a, void *page)
{
    a->out--;
    (void)h2pages_push(h2pages_all_zero(page) ? &a->clean : &a->dirty, page);
}

void *torii_proxy__h2pages_ring(struct h2pages *a)
{
    uint8_t *p = h2pages_pop(&a->rings);

    if (p == NULL) {
        /* a page cut into ring slots: this one and the rest for the next rings */
        p = h2pages_pop(&a->dirty);
        p = p != NULL ? p : h2pages_pop(&a->clean);
        p = p != NULL ? p : h2pages_fresh(a);
        for (size_t off = H2MEM_PAGE - H2MEM_RING; p != NULL && off > 0; off -= H2MEM_RING) {
            (void)h2pages_push(&a->rings, p + off);
        }
    }
    if (p != NULL) {
        a->out++;
    }
    return p;
}

void torii_proxy__h2pages_put_ring(struct h2pages *a, void *slot)
{
    a->out--;
    (void)h2pages_push(&a->rings, slot);
}

void torii_proxy__h2pages_clear(struct h2pages *a)
{
    while (a->slabs != NULL) {
        struct h2pages_slab *s = a->slabs;
        a->slabs = s->next;
        (void)munmap(s->base, (size_t)H2PAGES_SLAB * H2MEM_PAGE);
        free(s);
    }
    free(a->clean.v);
    free(a->dirty.v);
    free(a->rings.v);
    memset(a, 0, sizeof(*a));
}
