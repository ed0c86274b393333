/* admin_certs.h - internal to the admin module: the /api/certificates route files share these.
 *   routes_certs.c - routing, listing, the single-entity replies (GET/POST/PUT/PATCH/DELETE)
 *   certs_bulk.c   - POST/PUT/PATCH/DELETE /api/certificates/_bulk (NDJSON)
 *   certs_write.c  - the write operations both use (create, replace, patch through certdb)
 * Dependencies go one way: routes_certs.c -> certs_bulk.c -> certs_write.c.
 * Ownership: entities passed in are borrowed and prepared in place; *out results are owned by
 * the caller. Threads: admin thread only, but for admin_certs_parse_json and
 * admin_certs_op_prepare_create (any thread: the `_bulk` pool runs them). Not to be included
 * outside src/admin (and tests). */
#ifndef TORII_ADMIN_CERTS_H
#define TORII_ADMIN_CERTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin_int.h"
#include "torii/certdb.h"
#include "torii/err.h"

#define CERTS_ID_MAX    256
#define CERTS_ID_PREFIX "certificate_"
#define CERTS_NDJSON    "application/x-ndjson"
#define CERTS_ID_RULE   "id: must be 1 to 256 bytes of UTF-8 without control characters or '/'"

/** A JSON body or bulk line: any JSON value, duplicate keys rejected, depth bounded (too deep
 * is TORII_EINVAL like any other bad input). */
int admin_certs_parse_json(const char *buf, size_t len, json_t **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** ?enrich (default true). */
int admin_certs_enrich_wanted(const struct admin_req_query *q);
/** Log "admin: certificate <what> (id=...)" at info, the id escaped. */
void admin_certs_log_write(const char *what, const char *id);

/** Commit a single request's batch all or nothing (durable before the reply); a conflict is
 * logged at notice naming id. */
int admin_certs_commit(struct torii_certdb_batch *b, const char *id, struct torii_errbuf *eb)
    TORII_MUST_USE;

/* Operations shared by the single and bulk endpoints: each queues into b and says why in eb. */

/** The preparation of a creation (torii_certdb_prepare) after the API's own checks (an id is
 * generated when entity has none): no store read, no batch, so the `_bulk` pool runs it on
 * its threads (any thread; one entity per thread). */
int admin_certs_op_prepare_create(const struct torii_store *st, json_t *entity, int enrich,
                                  struct torii_certdb_prep **out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Queue the creation of entity (an id is generated when it has none): prepare, then queue. */
int admin_certs_op_create(struct torii_certdb_batch *b, json_t *entity, int enrich, uint32_t *flags,
                          struct torii_errbuf *eb) TORII_MUST_USE;
/** Queue the replacement of id by entity (compare-and-swap on what b reads); id must not
 * point into entity (its "id" member is replaced). */
int admin_certs_op_replace(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b,
                           const char *id, json_t *entity, int enrich, uint32_t *flags,
                           struct torii_errbuf *eb) TORII_MUST_USE;
/** Queue a JSON Patch (merge: a merge patch) of id; *out is the entity to be stored. */
int admin_certs_op_patch(struct torii_admin_ctx *ctx, struct torii_certdb_batch *b, const char *id,
                         const json_t *patch, int merge, int enrich, json_t **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** The _bulk endpoint (certs_bulk.c): the method and query were checked by the caller. */
void admin_certs_bulk_reply(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                            const struct admin_req_query *q, struct torii_admin_reply *reply);

#endif
