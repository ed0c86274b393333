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

/** Lifecycle routes (lifecycle.c): POST /api/certificates/_renew, POST
 * /api/certificates/:id/_renew, GET /metrics, POST /api/_debug/clock. Same contract. */
int admin_lifecycle_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                          struct torii_admin_reply *reply);

/* ---- PKI routes and the serial index (pki.c) ---- */

/** /api/pki/... and POST /api/certificates/_bundle. Same contract as admin_certs_route. */
int admin_pki_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                    struct torii_admin_reply *reply);
/** Unauthenticated public documents of the admin listener: GET /.well-known/jwks.json.
 * TORII_OK (reply filled) or TORII_ENOTFOUND. */
int admin_pki_public_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                           struct torii_admin_reply *reply);

#define ADMIN_SERIAL_KEY_MAX (TORII_STORE_ID_MAX + 1)

/** Store ops keeping TORII_STORE_SERIALS ("<issuer id>:<serial hex>" -> cert id) right when
 * old_entity (NULL: none) becomes new_entity (NULL: deleted). The issuer id is caRef, or the
 * entity's own id when it is self-signed; other certificates are not indexed. The old key is
 * deleted only when it exists, points at this id and differs from the new one. ops point into
 * *out (do not copy it). Entities whose chain does not parse give no op. */
struct admin_serial_ops {
    size_t n;
    struct torii_store_op op[2];
    char del_key[ADMIN_SERIAL_KEY_MAX];
    char put_key[ADMIN_SERIAL_KEY_MAX];
    char put_val[ADMIN_SERIAL_KEY_MAX];
};
void admin_serial_index_ops(struct torii_store *st, const json_t *old_entity,
                            const json_t *new_entity, struct admin_serial_ops *out);

/** Store new enriched entities (a JSON array) in one torii_store_apply: each record
 * (TORII_STORE_CREATE, TLS record built here) with its serial index entry. TORII_EINVAL when
 * a record does not build, TORII_EEXIST, TORII_ESTORE (eb says why); nothing stored then. */
int admin_pki_persist(struct torii_store *st, const json_t *entities, struct torii_errbuf *eb)
    TORII_MUST_USE;

#endif
