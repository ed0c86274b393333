/* interim.c - the 1xx responses of an HTTP/1.1 upstream relayed to the client before the final
 * response (RFC 9110 section 15.2): 102 Processing, 103 Early Hints and any other 1xx but 100
 * (torii answers Expect: 100-continue itself once the request is admitted and forwarded,
 * admission.c, and strips Expect upstream, so an upstream's 100 is not the client's) and 101
 * (tunnel_h1.c). Never to an HTTP/1.0 client; at most PX_MAX_INTERIM per exchange, the
 * connection-specific and framing fields removed. An HTTP/2 client gets them through its
 * stream's child as HEADERS frames (h2stream.c). Worker thread only. */
#include <stdio.h>

#include <event2/buffer.h>

#include "h2_int.h"
#include "session_int.h"
#include "torii/stream.h"

/* A field of a 1xx that may pass: not connection-specific, not framing. */
static int interim_field_ok(struct torii_slice n)
{
    return !torii_proxy__h2_conn_specific(n.ptr, n.len) && !torii_slice_eq_ci(n, "TE")
           && !torii_slice_eq_ci(n, "Trailer") && !torii_slice_eq_ci(n, "Content-Length");
}

int torii_proxy__interim(struct proxy_conn *pc, const struct torii_http_resp *resp)
{
    struct proxy_exch *x = &pc->x;
    struct evbuffer *out = torii_stream_output(pc->st);
    size_t before = evbuffer_get_length(out);
    int ok;

    if (resp->status == 100 || x->minor == 0) {
        return TORII_OK; /* not the client's (see above), or not understood by it */
    }
    if (++x->interim > PX_MAX_INTERIM) {
        return TORII_EPROTO;
    }
    ok = evbuffer_add_printf(out, "HTTP/1.1 %d ", resp->status) > 0;
    if (ok && resp->reason.len > 0) {
        ok = evbuffer_add(out, resp->reason.ptr, resp->reason.len) == 0;
    } else if (ok) {
        ok = evbuffer_add_printf(out, "%s", torii_http_reason(resp->status)) > 0;
    }
    ok = ok && evbuffer_add(out, "\r\n", 2) == 0;
    for (size_t i = 0; ok && i < resp->n_headers; i++) {
        const struct torii_http_header *f = &resp->headers[i];
        if (interim_field_ok(f->name)) {
            ok = evbuffer_add(out, f->name.ptr, f->name.len) == 0 && evbuffer_add(out, ": ", 2) == 0
                 && evbuffer_add(out, f->value.ptr, f->value.len) == 0
                 && evbuffer_add(out, "\r\n", 2) == 0;
        }
    }
    ok = ok && evbuffer_add(out, "\r\n", 2) == 0;
    x->bytes_out += evbuffer_get_length(out) - before;
    return ok ? TORII_OK : TORII_ENOMEM;
}
