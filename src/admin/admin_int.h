/* admin_int.h - internal to the admin module: the shared context and the reply shape that
 * route handlers fill and the server writes. Not to be included outside src/admin. */
#ifndef TORII_ADMIN_INT_H
#define TORII_ADMIN_INT_H

#include <jansson.h>

#include "torii/conf.h"
#include "torii/http.h"
#include "torii/store.h"
#include "torii/table.h"

struct torii_admin_ctx {
    struct torii_store *store;      /* borrowed */
    struct torii_table *table;      /* borrowed */
    const struct torii_config *cfg; /* borrowed */
};

#define ADMIN_REPLY_MAX_HEADERS 8

struct torii_admin_reply {
    int status;
    json_t *json; /* owned; serialized compactly if set */
    char *raw;    /* owned; used when json is NULL (e.g. NDJSON, HTML) */
    size_t raw_len;
    const char *content_type; /* static string; default application/json */
    size_t n_headers;
    char *hname[ADMIN_REPLY_MAX_HEADERS];  /* owned */
    char *hvalue[ADMIN_REPLY_MAX_HEADERS]; /* owned */
};

/** Fill reply with {"error": msg} and status. */
void admin_reply_error(struct torii_admin_reply *r, int status, const char *fmt, ...)
    TORII_PRINTF(3, 4);
/** Add a response header (copied). */
void admin_reply_header(struct torii_admin_reply *r, const char *name, const char *value);
void admin_reply_clear(struct torii_admin_reply *r);

/** /api/certificates routes. Returns TORII_OK when the path belongs to it (reply filled, even
 * for errors), TORII_ENOTFOUND when it does not. */
int admin_certs_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply);

#endif
