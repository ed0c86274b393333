/* rpcache.c - request parsers are held by a client connection only while a request is in
 * flight. A connection idle between requests gives its parser back to its worker, which keeps
 * up to PX_RP_FREE of them for the next request of any of its connections: an idle
 * keep-alive connection costs no parser (issue 14, memory per idle connection), and a busy
 * one costs no allocation per request. (An HTTP/2 stream's child keeps its parser when the
 * child is kept for the next stream, h2cache.c.) Worker thread only. */
#include <event2/buffer.h>

#include "session_int.h"
#include "torii/stream.h"

int torii_proxy__rp_take(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;

    if (pc->rp != NULL) {
        return TORII_OK;
    }
    if (pw->n_rp_free > 0) {
        pc->rp = pw->rp_free[--pw->n_rp_free];
        pw->rp_free[pw->n_rp_free] = NULL;
    } else if (torii_http_parser_new(&pw->lim, &pc->rp) != TORII_OK) {
        return TORII_ENOMEM;
    }
    torii_proxy__rp_arm(pc);
    return TORII_OK;
}

void torii_proxy__rp_arm(struct proxy_conn *pc)
{
    torii_http_parser_set_body_cb(pc->rp, torii_proxy__req_body_cb, pc);
    torii_http_parser_set_body_moved(pc->rp, 1); /* pump.c moves Content-Length bodies */
}

void torii_proxy__rp_put(struct proxy_conn *pc)
{
    struct proxy_worker *pw = pc->pw;
    struct torii_http_parser *p = pc->rp;

    /* a stream's child ends with its one request and keeps its parser (h2cache.c) */
    if (p == NULL || pc->h2_child || pc->phase != PH_HEAD || pc->x.active
        || torii_http_parser_started(p) || evbuffer_get_length(torii_stream_input(pc->st)) > 0) {
        return;
    }
    pc->rp = NULL;
    torii_proxy__rp_give(pw, p);
}

void torii_proxy__rp_give(struct proxy_worker *pw, struct torii_http_parser *p)
{
    if (p == NULL) {
        return;
    }
    if (pw->n_rp_free < PX_RP_FREE) {
        torii_http_parser_reset(p);
        pw->rp_free[pw->n_rp_free++] = p;
    } else {
        torii_http_parser_free(p);
    }
}

void torii_proxy__rp_clear(struct proxy_worker *pw)
{
    while (pw->n_rp_free > 0) {
        torii_http_parser_free(pw->rp_free[--pw->n_rp_free]);
        pw->rp_free[pw->n_rp_free] = NULL;
    }
}
