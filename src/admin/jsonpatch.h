/* jsonpatch.h - internal to the admin module: RFC 6902 JSON Patch (with RFC 6901 JSON
 * Pointers) and RFC 7386 JSON Merge Patch over jansson values, used by PATCH
 * /api/certificates. Both are atomic: they work on a deep copy of the document and hand it
 * back only when every operation succeeded. Peer data is never walked recursively by this
 * code; documents and patches nested deeper than ADMIN_JSON_MAX_DEPTH are rejected first, so
 * jansson's own recursive helpers (deep copy) stay bounded.
 * Threads: any thread (pure functions over caller-owned data).
 * Ownership: doc and patch are borrowed and never modified; *out is a new reference owned by
 * the caller, written only on success. Not to be included outside src/admin (and its tests). */
#ifndef TORII_ADMIN_JSONPATCH_H
#define TORII_ADMIN_JSONPATCH_H

#include <stddef.h>

#include <jansson.h>

#include "torii/err.h"

/** Deepest container nesting accepted in a document or a patch (top-level object = 1). */
#define ADMIN_JSON_MAX_DEPTH 64

/** Size bound (about the compact JSON size) of a patched document when the caller gives 0:
 * the default admin body limit. */
#define ADMIN_JSON_MAX_BYTES ((size_t)8 << 20)

/** Nesting depth of v without recursion: 0 for a scalar, 1 for a flat object or array.
 * Always returns TORII_OK (the work stack uses torii_xrealloc, which aborts on OOM). */
int admin_json_depth(const json_t *v, size_t *out) TORII_MUST_USE;

/** Structural equality per RFC 6902 section 4.6 (numbers compare by value, so 1 equals 1.0;
 * object member order is irrelevant; strings compare byte for byte), without recursion.
 * Returns 1 when equal, 0 otherwise. NULL equals only NULL. */
int admin_json_equal(const json_t *a, const json_t *b);

/** Apply an RFC 6902 patch (a JSON array of operation objects) to a copy of doc.
 * Accepts the six operations add, remove, replace, move, copy and test with RFC 6901
 * pointers ("~0" = '~', "~1" = '/', "-" = end of an array for add). Array indexes must be
 * decimal without leading zeros and in bounds. Rejects with TORII_EINVAL and a message in eb
 * naming the operation index and path: a non-array patch, a non-object operation, an unknown
 * or missing op, a missing/non-string path or from, a missing value, a malformed pointer, a
 * missing target or parent, an out-of-range index, a move into its own child, a failed test,
 * removal of the whole document, and a doc, patch or result deeper than ADMIN_JSON_MAX_DEPTH.
 * The work is bounded while the operations run, not only after: before a value is added,
 * replaced, copied or moved deeper, it is measured (a walk that stops at the bound, nothing
 * copied yet); an operation whose result would be nested deeper than ADMIN_JSON_MAX_DEPTH is
 * TORII_EINVAL, one whose result would pass max_bytes (about the compact JSON size; 0:
 * ADMIN_JSON_MAX_BYTES) is TORII_ETOOBIG, and so is a patch whose measuring walks add up to
 * more than 8 times max_bytes. eb names the operation index either way.
 * Returns TORII_OK, TORII_EINVAL, TORII_ETOOBIG or TORII_ENOMEM. */
int admin_jsonpatch_apply(const json_t *doc, const json_t *patch, size_t max_bytes, json_t **out,
                          struct torii_errbuf *eb) TORII_MUST_USE;

/** Apply an RFC 7386 merge patch to a copy of doc: object members of the patch are merged
 * member by member, null removes a member, any non-object patch replaces the target.
 * Rejects (TORII_EINVAL) a doc, patch or result deeper than ADMIN_JSON_MAX_DEPTH, and
 * (TORII_ETOOBIG) a result larger than max_bytes (0: ADMIN_JSON_MAX_BYTES); the work is at
 * most the size of doc plus patch, both already bounded.
 * Returns TORII_OK, TORII_EINVAL, TORII_ETOOBIG or TORII_ENOMEM. */
int admin_mergepatch_apply(const json_t *doc, const json_t *patch, size_t max_bytes, json_t **out,
                           struct torii_errbuf *eb) TORII_MUST_USE;

#endif
