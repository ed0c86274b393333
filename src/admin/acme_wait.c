/* acme_wait.c - synchronous POST /api/pki/certs/_letsencrypt without blocking the admin loop:
 * the route queues the order and marks the reply deferred (reply->defer_job); the server
 * then parks the request here (torii_http_defer) and a timer on the admin loop looks at the
 * parked jobs every ADMIN_ACME_TICK_MS. A finished job is answered with the stored entity
 * (private key redacted, as every reply without keys:export) or 502 with the order's error.
 * A connection that ends first is forgotten (admin_acme_wait_forget from its close callback).
 * Threads: admin thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin_guard.h"
#include "admin_int.h"
#include "torii/acme.h"
#include "torii/certdb.h"
#include "torii/mem.h"

#define ADMIN_ACME_TICK_MS 100
#define ADMIN_ACME_PARKED  64
#define ADMIN_ACME_REFUSED 502 /* the order failed: its error is the CA's or the challenge's */

struct acme_parked {
    struct torii_http_conn *conn;
    char job[33];
};

struct admin_acme_waits {
    struct torii_admin_ctx *ctx;
    struct event *tick;
    struct acme_parked p[ADMIN_ACME_PARKED];
    size_t n;
};

void admin_acme_wait(struct torii_admin_ctx *ctx, const char *job_id,
                     struct torii_admin_reply *reply)
{
    (void)ctx;
    free(reply->defer_job);
    reply->defer_job = torii_xstrdup(job_id);
    reply->status = 202;
}

/* The reply of a finished job; 0 while it runs. */
static int acme_wait_reply(struct admin_acme_waits *w, const char *job, struct torii_admin_reply *r)
{
    json_t *st = NULL;
    json_t *e = NULL;
    struct torii_errbuf eb = {{0}};
    const char *s;
    int done = 1;
    int rc = torii_acme_job_get(w->ctx->acme, job, &st);

    if (rc != TORII_OK) {
        admin_reply_error(r, admin_status_of(rc), "ACME job %s is gone", job);
        return 1;
    }
    s = json_string_value(json_object_get(st, "status"));
    if (strcmp(s, "valid") == 0) {
        rc = torii_certdb_load(w->ctx->store, json_string_value(json_object_get(st, "certId")), &e,
                               &eb);
        if (rc == TORII_OK) {
            admin_redact(e);
            r->status = 200;
            r->json = e;
        } else {
            admin_reply_error(r, admin_status_of(rc), "%s", eb.msg);
        }
    } else if (strcmp(s, "invalid") == 0) {
        /* Not an error code of torii: the order's outcome, the CA's refusal (a gateway). */
        admin_reply_error(r, ADMIN_ACME_REFUSED, "%s",
                          json_string_value(json_object_get(st, "error")));
    } else {
        done = 0;
    }
    json_decref(st);
    return done;
}

static void acme_wait_tick(evutil_socket_t fd, short what, void *arg)
{
    struct admin_acme_waits *w = arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)ADMIN_ACME_TICK_MS * 1000};
    size_t i = 0;

    (void)fd;
    (void)what;
    while (i < w->n) {
        struct torii_admin_reply r;
        struct torii_http_conn *conn = w->p[i].conn;
        memset(&r, 0, sizeof(r));
        if (!acme_wait_reply(w, w->p[i].job, &r)) {
            i++;
            continue;
        }
        w->p[i] = w->p[--w->n]; /* forgotten before the answer: it may end the connection */
        admin_send_deferred(conn, &r);
        admin_reply_clear(&r);
    }
    if (w->n > 0) {
        (void)event_add(w->tick, &tv);
    }
}

int admin_acme_waits_new(struct event_base *base, struct torii_admin_ctx *ctx,
                         struct admin_acme_waits **out)
{
    struct admin_acme_waits *w = torii_xcalloc(1, sizeof(*w));

    w->ctx = ctx;
    w->tick = evtimer_new(base, acme_wait_tick, w);
    if (w->tick == NULL) {
        free(w);
        return TORII_ENOMEM;
    }
    *out = w;
    return TORII_OK;
}

void admin_acme_waits_free(struct admin_acme_waits *w)
{
    if (w == NULL) {
        return;
    }
    event_free(w->tick);
    free(w);
}

int admin_acme_park(struct admin_acme_waits *w, struct torii_http_exchange *ex, const char *job_id)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)ADMIN_ACME_TICK_MS * 1000};

    if (w->n == ADMIN_ACME_PARKED) {
        return TORII_ETOOBIG;
    }
    w->p[w->n].conn = torii_http_exchange_conn(ex);
    (void)snprintf(w->p[w->n].job, sizeof(w->p[w->n].job), "%s", job_id);
    w->n++;
    torii_http_defer(ex);
    if (!evtimer_pending(w->tick, NULL)) {
        (void)event_add(w->tick, &tv);
    }
    return TORII_OK;
}

void admin_acme_waits_clear(struct admin_acme_waits *w)
{
    if (w == NULL) {
        return;
    }
    w->n = 0;
    (void)event_del(w->tick);
}

void admin_acme_wait_forget(struct admin_acme_waits *w, const struct torii_http_conn *conn)
{
    for (size_t i = 0; w != NULL && i < w->n; i++) {
        if (w->p[i].conn == conn) {
            w->p[i] = w->p[--w->n];
            return;
        }
    }
}
