/* jwtroute.h - routes[].jwt (docs/jwt.md): the per-route JWT policy compiled from the
 * configuration, the check of one request against it (where the token is read, verification
 * against the PKI's key set, claims turned into backend request headers) and the header names
 * the proxy strips from every request of the route.
 * Threads: parse/free on the main thread (route compile); the check on any worker thread (the
 * compiled policy is immutable). Ownership: the headers returned by a check are malloc'd and
 * belong to the caller. */
#ifndef TORII_JWTROUTE_H
#define TORII_JWTROUTE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/http.h"
#include "torii/jwt.h"
#include "torii/mem.h"

struct torii_route_jwt;

/** Compile routes[i].jwt (v) for route index `route` (the metrics label). Every error names
 * where.<key> (where is e.g. "routes[2].jwt"): unknown keys, wrong types, an empty keys list, an
 * algorithm outside ES256/ES384/RS256/PS256/EdDSA, a leeway outside 0..3600, a from that is not
 * exactly one of header/cookie, a header name that is not a token or that the proxy owns (Host,
 * framing, hop-by-hop, forwarding fields), two claims mapped to one header. TORII_EINVAL. */
int torii_route_jwt_parse(json_t *v, unsigned route, const char *where,
                          struct torii_route_jwt **out, struct torii_errbuf *eb) TORII_MUST_USE;
/** NULL accepted. */
void torii_route_jwt_free(struct torii_route_jwt *j);

/** The header names (claims_to_headers values) removed from every request of the route,
 * whatever its token; *n receives their count. */
const struct torii_slice *torii_route_jwt_drop(const struct torii_route_jwt *j, size_t *n);

/** Check req against the route's policy with key set ks at now_ms: read the token, verify it,
 * build the claim headers. Returns the outcome (0 = TORII_JWT_OK, a torii_jwt_verdict,
 * TORII_JWT_OUTCOME_MISSING or TORII_JWT_OUTCOME_BAD_CLAIM), counts it in the metrics, and on
 * success sets *hdrs to the "Name: value\r\n" lines for the backend (malloc'd, NULL when none)
 * and *hdrs_len. eb (may be NULL) gets the detail of a refusal (never the token). */
unsigned torii_route_jwt_check(const struct torii_route_jwt *j, const struct torii_jwt_keyset *ks,
                               const struct torii_http_req *req, int64_t now_ms, char **hdrs,
                               size_t *hdrs_len, struct torii_errbuf *eb) TORII_MUST_USE;

#endif
