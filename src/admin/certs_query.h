/* certs_query.h - internal to the admin module: the listing query parameters of GET
 * /api/certificates that take field paths (reference 2.3): `fields=a,b.c` (projection, dotted
 * paths select nested members), `filtered=field:text,...` (case-insensitive substring on dotted
 * paths, every term must match) and `sorted=field:bool,...` (true ascending, false descending,
 * as the reference's code does). Parsing rejects what it cannot honour, naming it.
 * Threads: any thread (pure functions over caller-owned data). */
#ifndef TORII_ADMIN_CERTS_QUERY_H
#define TORII_ADMIN_CERTS_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"

/** Longest dotted path accepted in fields, filtered and sorted (segments). */
#define CERTS_QUERY_MAX_SEGS 8
/** Most terms in one fields, filtered or sorted parameter. */
#define CERTS_QUERY_MAX_TERMS 64

struct certs_query_term {
    char *path;                            /* owned copy of the dotted path */
    const char *seg[CERTS_QUERY_MAX_SEGS]; /* into path, NUL-separated */
    size_t n;
    char *text;    /* filtered: the text, lower-cased (owned); NULL otherwise */
    int ascending; /* sorted */
};

struct certs_query_terms {
    struct certs_query_term *t; /* owned */
    size_t n;
};

/** Parse `fields` ("a,b.c"): TORII_OK, or TORII_EINVAL naming the bad item (empty name, empty
 * or too many path segments, too many terms). */
int certs_query_fields_parse(const char *s, struct certs_query_terms *out, struct torii_errbuf *eb)
    TORII_MUST_USE;
/** Parse `filtered` ("name:foo,metadata.owner:bar"; each item field:text, text may be empty). */
int certs_query_filtered_parse(const char *s, struct certs_query_terms *out,
                               struct torii_errbuf *eb) TORII_MUST_USE;
/** Parse `sorted` ("name:true,to:false"; field alone or field:true ascending, field:false
 * descending). */
int certs_query_sorted_parse(const char *s, struct certs_query_terms *out, struct torii_errbuf *eb)
    TORII_MUST_USE;
void certs_query_terms_clear(struct certs_query_terms *t);

/** A new object holding only the selected members of e (nested objects rebuilt along dotted
 * paths; values copied). Missing paths are left out. NULL only when out of memory. */
json_t *certs_query_project(const json_t *e, const struct certs_query_terms *fields);
/** 1 when e matches every filtered term: the value at the path (a string, or the compact JSON
 * text of any other value; for an array, any element) contains the text, ASCII
 * case-insensitively. A missing path does not match. */
int certs_query_filtered_match(const struct certs_query_terms *filtered, const json_t *e);
/** Order of a and b by the sorted terms (<0, 0, >0): numbers compare by value, anything else by
 * its text (strings as they are, other values as compact JSON) byte by byte; a missing value
 * sorts before any present one. */
int certs_query_sorted_cmp(const struct certs_query_terms *sorted, const json_t *a,
                           const json_t *b);

/* ---- search and expiry window (the web page's and `torii ctl list`'s filters) ---- */

struct certs_query_window {
    char *search;   /* lower-cased needle (owned); NULL: no search */
    int64_t after;  /* `to` >= after (ms) when has_after */
    int64_t before; /* `to` < before (ms) when has_before */
    int has_after;
    int has_before;
};

/** Parse `search` (any text, may be NULL), `expiresAfter` and `expiresBefore` (NULL or a
 * decimal count of ms since the epoch, may be negative): TORII_OK, or TORII_EINVAL naming the
 * parameter. Clear *out with certs_query_window_clear either way. */
int certs_query_window_parse(const char *search, const char *after, const char *before,
                             struct certs_query_window *out, struct torii_errbuf *eb)
    TORII_MUST_USE;
void certs_query_window_clear(struct certs_query_window *w);
/** 1 when e passes w: the needle is in id, name, domain, description, subject, a SAN or a tag
 * (ASCII case-insensitively), and its `to` (a number; missing: no match when a bound is set)
 * is within the bounds. */
int certs_query_window_match(const struct certs_query_window *w, const json_t *e);

/* ---- computed sort keys ---- */

/** Days before `to` in which the badges sort key says almostExpired (the web page's badge). */
#define CERTS_QUERY_ALMOST_DAYS 30

/** Which computed sort keys the sorted terms name, as a mask: "keyType" (the leaf's key type,
 * torii_pki_cert_key_type: "EC P-256", "RSA 2048", ...) and "badges" (the web page's badges
 * that apply, comma-separated in a fixed order: ca, client, keypair, selfSigned, letsEncrypt,
 * autoRenew, exposed, revoked, then expired or almostExpired). No entity member has these
 * names; 0 when none is named. */
unsigned certs_query_computed(const struct certs_query_terms *sorted);
/** Set the computed members of mask on e (a list's own copy of an entity), at now_ms.
 * TORII_ENOMEM. */
int certs_query_computed_add(json_t *e, unsigned mask, int64_t now_ms) TORII_MUST_USE;
/** Remove them again (before e is shown). */
void certs_query_computed_del(json_t *e, unsigned mask);

#endif
