/* admin_int.h - internal to the admin module: the shared context, the reply shape that
 * route handlers fill and the server writes, and the request and stored-entity helpers every
 * route file uses (request.c). Not to be included outside src/admin. */
#ifndef TORII_ADMIN_INT_H
#define TORII_ADMIN_INT_H

#include <stddef.h>

#include <jansson.h>

#include "torii/conf.h"
#include "torii/err.h"
#include "torii/http.h"
#include "torii/store.h"

/** Test seam for the read-modify-write window of PUT and PATCH /api/certificates/:id (and
 * their bulk lines): `between` (may be NULL) runs on the admin thread after the stored entity
 * was read and just before the write that expects it unchanged (TORII_STORE_REPLACE_IF), so
 * a test can land a concurrent write there. */
struct admin_rmw_seam {
    void (*between)(const char *id, void *arg);
    void *arg;
};

struct torii_renewer;
struct torii_pki_state;
struct torii_certstats;
struct torii_acme;

struct torii_admin_ctx {
    struct torii_store *store;         /* borrowed */
    const struct torii_config *cfg;    /* borrowed */
    struct torii_renewer *renewer;     /* borrowed; NULL: POST .../_renew answers 503 */
    struct torii_pki_state *pki;       /* borrowed; NULL: no JWKS on the admin listener */
    struct torii_certstats *certstats; /* borrowed; NULL: /metrics without certificates */
    struct torii_acme *acme;           /* borrowed; NULL: the ACME routes answer 503 */
    const struct admin_rmw_seam *seam; /* borrowed; tests only, NULL in production */
    /* Threads preparing the lines of a `_bulk` POST (certs_bulk.c); 0 (production): one per
     * CPU the process may run on, at most 8. */
    unsigned bulk_threads;
};

#define ADMIN_REPLY_MAX_HEADERS 8

struct torii_admin_reply {
    int status;
    json_t *json; /* owned; serialized compactly if set */
    char *raw;    /* owned; used when json is NULL (e.g. NDJSON, HTML) */
    size_t raw_len;
    const char *content_type; /* static string; default application/json */
    int fresh_key;            /* set by a route that generated the key it returns: not redacted */
    char *defer_job;          /* owned; set by admin_acme_wait: answer when this ACME job ends */
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
/** 405 {"error": "method not allowed"} with an Allow header (allow: e.g. "GET, HEAD"). */
void admin_reply_method_not_allowed(struct torii_admin_reply *r, const char *allow);
/** The one error-code -> HTTP status map of the admin API (docs/api.md, Errors): TORII_OK 200,
 * TORII_EINVAL 400, TORII_ENOTFOUND 404, TORII_EEXIST and TORII_ECONFLICT 409, TORII_ETOOBIG
 * 413, TORII_EUNSUPPORTED 501 (an operation torii does not implement for this entity, e.g.
 * renewing a Let's Encrypt certificate), TORII_EIO and TORII_EAGAIN 503, TORII_ETIMEDOUT 504,
 * TORII_ENOSPC 507, anything else (TORII_ENOMEM, TORII_ESTORE, TORII_ETLS, ...) 500. */
int admin_status_of(int rc);

/** /api/certificates routes (rows of admin_routes.h). Returns TORII_OK when the path belongs
 * to it (reply filled, even for errors), TORII_ENOTFOUND when it does not. */
int admin_certs_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                      struct torii_admin_reply *reply);

/** The web page (routes_ui.c): GET/HEAD /ui and /ui/..., answered without authentication.
 * TORII_OK (reply filled) or TORII_ENOTFOUND for any other path. */
int admin_ui_route(const struct torii_http_req *req, struct torii_admin_reply *reply);

/* ---- ACME routes (acme.c, acme_wait.c) ---- */

/** Mark reply deferred until job_id ends (the server parks the request). */
void admin_acme_wait(struct torii_admin_ctx *ctx, const char *job_id,
                     struct torii_admin_reply *reply);
struct admin_acme_waits;
struct event_base;
struct torii_http_exchange;
struct torii_http_conn;
int admin_acme_waits_new(struct event_base *base, struct torii_admin_ctx *ctx,
                         struct admin_acme_waits **out) TORII_MUST_USE;
void admin_acme_waits_free(struct admin_acme_waits *w);
/** Park ex until its job ends (torii_http_defer). TORII_ETOOBIG when too many are parked. */
int admin_acme_park(struct admin_acme_waits *w, struct torii_http_exchange *ex, const char *job_id)
    TORII_MUST_USE;
/** Forget every parked request (their connections are being freed). NULL accepted. */
void admin_acme_waits_clear(struct admin_acme_waits *w);
/** conn ended: forget its parked request (NULL w accepted). */
void admin_acme_wait_forget(struct admin_acme_waits *w, const struct torii_http_conn *conn);
/** Send r as the answer of conn's deferred request (server.c). */
void admin_send_deferred(struct torii_http_conn *conn, struct torii_admin_reply *r);

/* ---- PKI routes (routes_pki.c) ---- */

/** /api/pki/... and POST /api/certificates/_bundle. Same contract as admin_certs_route. */
int admin_pki_route(struct torii_admin_ctx *ctx, const struct torii_http_req *req,
                    struct torii_admin_reply *reply);

/* ---- request helpers shared by the route files (request.c) ---- */

/** 1 when the request method is exactly `method`. */
int admin_req_method_is(const struct torii_http_req *req, const char *method);
/** 1 for GET and HEAD, which are served alike (the HTTP engine drops a HEAD reply's body). */
int admin_req_is_get(const struct torii_http_req *req);
/** 1 when s holds exactly the bytes of lit. */
int admin_req_slice_is(struct torii_slice s, const char *lit);
/** 1 when the request path is exactly lit (no query string). */
int admin_req_path_is(const struct torii_http_req *req, const char *lit);
/** 1 when the media type of header `name` (first occurrence; parameters such as charset and
 * surrounding blanks ignored) equals type, case-insensitively. 0 when the header is absent. */
int admin_req_media_type_is(const struct torii_http_req *req, const char *name, const char *type);

/** Percent-decode len bytes of s (and '+' as a space when plus_space) into a new
 * NUL-terminated string *out, owned by the caller. Both hex cases are accepted. Rejects with
 * TORII_EINVAL, *out untouched: a truncated or non-hex escape, %00 and a raw NUL byte. */
int admin_req_pct_decode(const char *s, size_t len, int plus_space, char **out) TORII_MUST_USE;
/** 1 when the len bytes of s are valid UTF-8 that a JSON string can hold (jansson's rule). */
int admin_req_utf8_ok(const char *s, size_t len);
/** 1 when id is 1..max_len bytes of valid UTF-8 with no control character (< 0x20, 0x7f) and
 * no '/' (it could not be addressed in a path). */
int admin_req_id_ok(const char *id, size_t max_len);
/** A path segment decoded (no '+' rule) into an id that passes admin_req_id_ok: TORII_OK with
 * *out owned by the caller, else TORII_EINVAL with *out untouched. */
int admin_req_id_decode(const char *s, size_t len, size_t max_len, char **out) TORII_MUST_USE;

struct admin_req_param {
    char *k; /* owned, decoded */
    char *v; /* owned, decoded ("" for a key without '='); wiped on clear */
};

struct admin_req_query {
    struct admin_req_param *p; /* owned; in query-string order */
    size_t n;
};

/** Split a query string ("a=1&b=2") into percent-decoded pairs ('+' = space); empty items are
 * skipped, repeated keys kept in order. max limits the pairs (0: no limit). On TORII_OK *out
 * is filled (clear it with admin_req_query_clear); TORII_EINVAL (bad encoding, more than max
 * pairs) leaves *out untouched. */
int admin_req_query_parse(struct torii_slice qs, size_t max, struct admin_req_query *out)
    TORII_MUST_USE;
/** Free the pairs, wiping the values (they may be passwords). */
void admin_req_query_clear(struct admin_req_query *q);
/** The value of the first pair named key (borrowed from q), or NULL. */
const char *admin_req_query_get(const struct admin_req_query *q, const char *key);
/** Every parameter of q must be named by allowed (a NULL-terminated list, NULL for none; an
 * entry ending in '.' allows any longer name with that prefix, e.g. "filter.") and given
 * once: TORII_OK, else TORII_EINVAL with "unknown query parameter 'x'" or "query parameter 'x'
 * is given more than once" in eb. Nothing in a query string is silently ignored. */
int admin_req_query_check(const struct admin_req_query *q, const char *const *allowed,
                          struct torii_errbuf *eb) TORII_MUST_USE;
/** For routes that take no query parameter: 1 when the request has none; else 0 with reply
 * filled (400 naming the first parameter, or the bad percent-encoding). */
int admin_req_query_none(const struct torii_http_req *req, struct torii_admin_reply *reply);
/** TORII_OK when parameter key is absent, "true" or "false"; else TORII_EINVAL (eb says so). */
int admin_req_query_bool_check(const struct admin_req_query *q, const char *key,
                               struct torii_errbuf *eb) TORII_MUST_USE;
/** A boolean parameter: dflt when absent; otherwise with dflt 1 anything but "false" is 1,
 * with dflt 0 only "true" is 1. */
int admin_req_query_bool(const struct admin_req_query *q, const char *key, int dflt);

#define ADMIN_REQ_JSON_ANY          0x1u /* any JSON value on top, not only an object or array */
#define ADMIN_REQ_JSON_EMPTY_OBJECT 0x2u /* admin_req_json_parse: an empty body is {} */

/** jansson's json_loadb over a body (buf may be NULL, read as empty) with duplicate object
 * keys rejected (RFC 8259 section 4 leaves their meaning open). NULL on error, *jerr says why.
 * No depth bound: for callers that only look at the top level. */
json_t *admin_req_json_load(const void *buf, size_t len, unsigned flags, json_error_t *jerr);
/** admin_req_json_load, then nesting bounded by ADMIN_JSON_MAX_DEPTH (jsonpatch.h). *out is a
 * new reference, written only on success. TORII_EINVAL ("invalid JSON: <why> (line L, column
 * C)" in eb), TORII_ETOOBIG ("JSON nested deeper than N levels" in eb), TORII_ENOMEM. */
int admin_req_json_parse(const void *buf, size_t len, unsigned flags, json_t **out,
                         struct torii_errbuf *eb) TORII_MUST_USE;

/** torii_secure_free of a NUL-terminated string (entity JSON, passwords); NULL is ignored. */
void admin_req_wipe_str(char *s);

#endif
