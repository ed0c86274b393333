/* fuzz_http.c - see fuzz_http.h. */
#include "fuzz_http.h"

#include <stdlib.h>
#include <string.h>

static int fuzz_body_sink(void *arg, const unsigned char *data, size_t len)
{
    size_t *total = arg;

    (void)data;
    *total += len;
    return TORII_OK;
}

/* Small limits so that every limit check is reachable with short inputs. */
static void fuzz_limits(struct torii_http_limits *lim, uint8_t knob)
{
    torii_http_limits_default(lim);
    lim->max_header_bytes = 512 + (size_t)(knob & 0x0f) * 256;
    lim->max_headers = 8 + (knob >> 4);
    lim->max_target = 256;
    lim->max_body = 4096;
}

/* Touch what a consumer reads after HEAD/DONE (the body at DONE only), so that ASan sees
 * every slice. */
static void fuzz_http_touch(const struct torii_http_parser *p, int response, int done)
{
    volatile size_t sum = 0;
    const struct torii_http_header *h = NULL;
    size_t n = 0;

    if (response) {
        const struct torii_http_resp *r = torii_http_parser_resp(p);
        if (r == NULL) {
            return;
        }
        h = r->headers;
        n = r->n_headers;
        for (size_t i = 0; done && i < r->n_trailers; i++) {
            sum += r->trailers[i].name.len + r->trailers[i].value.len;
        }
    } else {
        const struct torii_http_req *r = torii_http_parser_req(p);
        if (r == NULL) {
            return;
        }
        h = r->headers;
        n = r->n_headers;
        sum += strlen(r->method) + r->target.len + r->path.len + r->query.len;
        for (size_t i = 0; done && r->body != NULL && i < r->body_len; i++) {
            sum += r->body[i]; /* body and trailers are set at DONE only */
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < h[i].name.len; k++) {
            sum += (unsigned char)h[i].name.ptr[k];
        }
        sum += h[i].value.len;
    }
    (void)sum;
}

void fuzz_http_run(const uint8_t *data, size_t size, int response)
{
    struct torii_http_limits lim;
    struct torii_http_parser *p = NULL;
    size_t total = 0;
    size_t off = 2;
    uint8_t step;

    if (size < 2) {
        return;
    }
    fuzz_limits(&lim, data[0]);
    step = data[1] == 0 ? 1 : data[1];
    if ((response ? torii_http_parser_new_response(&lim, &p) : torii_http_parser_new(&lim, &p))
        != TORII_OK) {
        return;
    }
    if (data[1] & 1) {
        torii_http_parser_set_body_cb(p, fuzz_body_sink, &total);
    }
    if (response && (data[1] & 2)) {
        torii_http_parser_set_no_body(p, 1);
    }
    while (off < size) {
        size_t chunk = size - off < step ? size - off : step;
        size_t used = 0;
        enum torii_http_parse_ev ev =
            torii_http_parser_feed(p, (const char *)data + off, chunk, &used);
        off += used;
        if (ev == TORII_HTTP_PARSE_ERROR) {
            const char *msg = NULL;
            (void)torii_http_parser_error(p, &msg);
            break;
        }
        if (ev == TORII_HTTP_PARSE_HEAD || ev == TORII_HTTP_PARSE_DONE) {
            fuzz_http_touch(p, response, ev == TORII_HTTP_PARSE_DONE);
        }
        if (ev == TORII_HTTP_PARSE_DONE) {
            torii_http_parser_next(p);
        } else if (ev == TORII_HTTP_PARSE_MORE && used < chunk) {
            break; /* contract: MORE consumes everything; never spin */
        }
    }
    torii_http_parser_free(p);
}
