/* ondemand.c - the handshake side of on-demand certificates (acme.h): a ClientHello naming a
 * host with no certificate of its own, that the decision callback says to wait for, is
 * suspended: the client-hello callback returns SSL_CLIENT_HELLO_RETRY and the stream layer
 * calls SSL_do_handshake again a little later (stream.c), without blocking the worker. Each
 * retry looks at the table again: the new certificate is served as soon as it is there; at
 * the deadline (wait_ms after the first hello), or as soon as no order for the name is in
 * flight any more (it failed, or the ask URL refused), the default certificate is. The wait lives
 * in the SSL's ex_data slot `od` (freed with the SSL). Threads: worker threads (each SSL belongs to
 * one). */
#include <stdint.h>
#include <stdlib.h>

#include "tls_int.h"
#include "torii/clock.h"

struct tls_od_wait {
    int64_t deadline_ms; /* monotonic */
    int waiting;         /* 0 once the handshake went on */
};

int torii_tls__on_demand_waiting(SSL *ssl)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    const struct tls_od_wait *w = ex != NULL ? SSL_get_ex_data(ssl, ex->od) : NULL;

    return w != NULL && w->waiting;
}

/* The first hello for host: ask whether to wait; record the wait. */
static int tls_od_first(SSL *ssl, const struct torii_tls__od *od, const char *host, int ex_od)
{
    struct tls_od_wait *w;

    if (host == NULL || !od->decide(od->arg, host)) {
        return 0;
    }
    w = malloc(sizeof(*w));
    if (w == NULL) {
        return -1;
    }
    w->deadline_ms = torii_clock_mono_us() / 1000 + od->wait_ms;
    w->waiting = 1;
    if (SSL_set_ex_data(ssl, ex_od, w) != 1) {
        free(w);
        return -1;
    }
    return 1;
}

int torii_tls__on_demand(SSL *ssl, const struct torii_tls__od *od, const char *host, int have_cert)
{
    const struct torii_tls__ex *ex = torii_tls__ex();
    struct tls_od_wait *w;

    if (od->decide == NULL || ex == NULL) {
        return 0;
    }
    w = SSL_get_ex_data(ssl, ex->od);
    if (w == NULL) {
        return have_cert ? 0 : tls_od_first(ssl, od, host, ex->od);
    }
    if (!w->waiting) {
        return 0;
    }
    if (!have_cert && torii_clock_mono_us() / 1000 < w->deadline_ms && host != NULL
        && od->pending(od->arg, host)) {
        return 1;
    }
    w->waiting = 0;
    if (od->done != NULL) {
        od->done(od->arg, have_cert);
    }
    return 0;
}
