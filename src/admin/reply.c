/* reply.c - the reply that route handlers fill and the server writes: an {"error": ...}
 * helper, 405 with Allow, the one error-code -> status map, extra headers, and clearing. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin_int.h"
#include "torii/log.h"
#include "torii/mem.h"

void admin_reply_error(struct torii_admin_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    char esc[1024];
    va_list ap;
    json_t *s;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_decref(r->json);
    r->json = NULL;
    TORII_FREE(r->raw);
    r->raw_len = 0;
    r->content_type = NULL;
    r->status = status;
    /* jansson takes UTF-8 only: a message quoting peer bytes may not be. */
    s = json_string(msg);
    if (s == NULL) {
        s = json_string(torii_log_escape(msg, strlen(msg), esc, sizeof(esc)));
    }
    r->json = json_object();
    if (r->json == NULL || s == NULL) {
        json_decref(s);
        json_decref(r->json);
        r->json = NULL;
        r->status = 500;
        return;
    }
    if (json_object_set_new(r->json, "error", s) != 0) { /* steals s even on failure */
        json_decref(r->json);
        r->json = NULL;
        r->status = 500;
    }
}

void admin_reply_header(struct torii_admin_reply *r, const char *name, const char *value)
{
    if (r->n_headers >= ADMIN_REPLY_MAX_HEADERS) {
        torii_log(TORII_LOG_WARN, "admin: too many reply headers, dropping %s", name);
        return;
    }
    r->hname[r->n_headers] = torii_xstrdup(name);
    r->hvalue[r->n_headers] = torii_xstrdup(value);
    r->n_headers++;
}

void admin_reply_method_not_allowed(struct torii_admin_reply *r, const char *allow)
{
    admin_reply_error(r, 405, "method not allowed");
    admin_reply_header(r, "Allow", allow);
}

void admin_reply_clear(struct torii_admin_reply *r)
{
    if (r == NULL) {
        return;
    }
    json_decref(r->json);
    free(r->raw);
    free(r->defer_job);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->hname[i]);
        free(r->hvalue[i]);
    }
    memset(r, 0, sizeof(*r));
}

int admin_status_of(int rc)
{
    switch (rc) {
    case TORII_OK:
        return 200;
    case TORII_EINVAL:
        return 400;
    case TORII_ENOTFOUND:
        return 404;
    case TORII_EEXIST:
    case TORII_ECONFLICT:
        return 409;
    case TORII_ETOOBIG:
        return 413;
    case TORII_EIO:    /* the store's disk failed: retry later, maybe elsewhere */
    case TORII_EAGAIN: /* busy (the renewal thread): retry later */
        return 503;
    case TORII_EUNSUPPORTED: /* an operation torii does not implement for this entity */
        return 501;
    case TORII_ETIMEDOUT:
        return 504;
    case TORII_ENOSPC: /* the store's disk is full: 507 Insufficient Storage */
        return 507;
    default:
        return 500;
    }
}
