/* jwtauth.c - routes[].jwt (jwtroute.h, docs/jwt.md): the policy compiled from the route's
 * configuration, the token read from the request (Authorization: Bearer, a named header or a
 * cookie), its verification against the key set of the PKI snapshot (no store access, no lock
 * beyond the snapshot's reference), and the claims copied into backend request headers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy_int.h"
#include "torii/clock.h"
#include "torii/jwtroute.h"
#include "torii/log.h"
#include "torii/pkistate.h"

#define JWT_LEEWAY_MAX_S 3600

struct jwt_claim_hdr {
    char *claim;
    char *header;
};

struct torii_route_jwt {
    unsigned route;
    char **kids; /* NULL: every key of the set */
    size_t n_kids;
    char *issuer;
    char **auds;
    size_t n_auds;
    unsigned algs;
    int64_t leeway_s;
    char *header; /* token source: a header (NULL when cookie) */
    int bearer;   /* header is Authorization: "Bearer <token>" */
    char *cookie;
    struct jwt_claim_hdr *claims;
    size_t n_claims;
    struct torii_slice *drop; /* the claims' header names */
};

/* ---- configuration ------------------------------------------------------------------------ */

static int jwt_is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int jwt_is_token(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (!jwt_is_tchar((unsigned char)*p)) {
            return 0;
        }
    }
    return s[0] != '\0';
}

/* Fields the proxy sets, frames or drops itself: a claim may not be sent under these names. */
static int jwt_header_reserved(const char *h)
{
    static const char *const names[] = {
        "Host",      "Content-Length", "Transfer-Encoding", "Connection",        "Keep-Alive",
        "TE",        "Trailer",        "Upgrade",           "Proxy-Connection",  "Expect",
        "Cookie",    "Authorization",  "X-Forwarded-For",   "X-Forwarded-Proto", "X-Forwarded-Host",
        "Forwarded", "Client-Cert",    "Client-Cert-Chain", "HTTP2-Settings",    NULL};
    struct torii_slice s = {h, strlen(h)};

    for (size_t i = 0; names[i] != NULL; i++) {
        if (torii_slice_eq_ci(s, names[i])) {
            return 1;
        }
    }
    return 0;
}

static int jwt_check_keys(json_t *obj, const char *const *allowed, const char *where,
                          struct torii_errbuf *eb)
{
    const char *k;
    json_t *v;

    json_object_foreach (obj, k, v) {
        int ok = strncmp(k, "//", 2) == 0;
        for (size_t i = 0; !ok && allowed[i] != NULL; i++) {
            ok = strcmp(allowed[i], k) == 0;
        }
        if (!ok) {
            return torii_errf(eb, TORII_EINVAL, "%s.%s: unknown key", where, k);
        }
    }
    return TORII_OK;
}

/* A string or a non-empty array of at most max non-empty strings of at most maxlen bytes. */
static int jwt_str_list(json_t *v, size_t max, size_t maxlen, char ***out, size_t *n,
                        const char *where, const char *key, struct torii_errbuf *eb)
{
    size_t cnt = json_is_array(v) ? json_array_size(v) : 1;

    if (!(json_is_string(v) || json_is_array(v)) || cnt == 0 || cnt > max) {
        return torii_errf(eb, TORII_EINVAL,
                          "%s.%s: expected a string or an array of 1..%zu strings", where, key,
                          max);
    }
    *out = torii_xcalloc(cnt, sizeof(char *));
    for (size_t i = 0; i < cnt; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > maxlen
            || strlen(json_string_value(s)) != json_string_length(s)) {
            return torii_errf(eb, TORII_EINVAL, "%s.%s[%zu]: expected a string of 1..%zu bytes",
                              where, key, i, maxlen);
        }
        (*out)[(*n)++] = torii_xstrdup(json_string_value(s));
    }
    return TORII_OK;
}

static int jwt_parse_algs(json_t *v, unsigned *algs, const char *where, struct torii_errbuf *eb)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return torii_errf(eb, TORII_EINVAL, "%s.algorithms: expected a non-empty array", where);
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *a = json_array_get(v, i);
        unsigned bit = json_is_string(a)
                           ? torii_jwt_alg_parse(json_string_value(a), json_string_length(a))
                           : 0;
        if (bit == 0) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.algorithms[%zu]: expected one of ES256, ES384, RS256, PS256, "
                              "EdDSA (never none or an HMAC)",
                              where, i);
        }
        *algs |= bit;
    }
    return TORII_OK;
}

static int jwt_parse_from(json_t *v, struct torii_route_jwt *j, const char *where,
                          struct torii_errbuf *eb)
{
    json_t *h = json_object_get(v, "header");
    json_t *c = json_object_get(v, "cookie");
    static const char *const keys[] = {"header", "cookie", NULL};
    char w[96];
    int rc = TORII_OK;

    (void)snprintf(w, sizeof(w), "%s.from", where);
    TORII_ENSURE(json_is_object(v), torii_errf(eb, TORII_EINVAL, "%s: expected an object", w));
    TORII_TRY(jwt_check_keys(v, keys, w, eb));
    TORII_ENSURE((h == NULL) != (c == NULL),
                 torii_errf(eb, TORII_EINVAL, "%s: expected exactly one of header, cookie", w));
    if (h != NULL) {
        TORII_ENSURE(json_is_string(h) && jwt_is_token(json_string_value(h)),
                     torii_errf(eb, TORII_EINVAL, "%s.header: expected a header name", w));
        free(j->header);
        j->header = torii_xstrdup(json_string_value(h));
        j->bearer = strcasecmp(j->header, "Authorization") == 0;
    } else {
        TORII_ENSURE(json_is_string(c) && jwt_is_token(json_string_value(c)),
                     torii_errf(eb, TORII_EINVAL, "%s.cookie: expected a cookie name", w));
        free(j->header);
        j->header = NULL;
        j->cookie = torii_xstrdup(json_string_value(c));
    }
out:
    return rc;
}

static int jwt_parse_claims(json_t *v, struct torii_route_jwt *j, const char *where,
                            struct torii_errbuf *eb)
{
    const char *k;
    json_t *h;
    size_t n = json_is_object(v) ? json_object_size(v) : 0;

    if (!json_is_object(v)) {
        return torii_errf(eb, TORII_EINVAL,
                          "%s.claims_to_headers: expected an object (claim -> header name)", where);
    }
    j->claims = torii_xcalloc(n ? n : 1, sizeof(*j->claims));
    j->drop = torii_xcalloc(n ? n : 1, sizeof(*j->drop));
    json_object_foreach (v, k, h) {
        const char *hn = json_is_string(h) ? json_string_value(h) : "";
        if (k[0] == '\0' || !jwt_is_token(hn) || jwt_header_reserved(hn)) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s.claims_to_headers.%s: expected a header name (a token, not one "
                              "the proxy sets, frames or reads)",
                              where, k);
        }
        for (size_t i = 0; i < j->n_claims; i++) {
            if (strcasecmp(j->claims[i].header, hn) == 0) {
                return torii_errf(eb, TORII_EINVAL,
                                  "%s.claims_to_headers.%s: header %s is already given to claim %s",
                                  where, k, hn, j->claims[i].claim);
            }
        }
        j->claims[j->n_claims].claim = torii_xstrdup(k);
        j->claims[j->n_claims].header = torii_xstrdup(hn);
        j->drop[j->n_claims].ptr = j->claims[j->n_claims].header;
        j->drop[j->n_claims].len = strlen(hn);
        j->n_claims++;
    }
    return TORII_OK;
}

static int jwt_parse_leeway(json_t *v, struct torii_route_jwt *j, const char *where,
                            struct torii_errbuf *eb)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0
        || json_integer_value(v) > JWT_LEEWAY_MAX_S) {
        return torii_errf(eb, TORII_EINVAL, "%s.leeway_s: expected seconds in 0..%d", where,
                          JWT_LEEWAY_MAX_S);
    }
    j->leeway_s = json_integer_value(v);
    return TORII_OK;
}

static int jwt_parse_keys(json_t *m, struct torii_route_jwt *j, const char *where,
                          struct torii_errbuf *eb)
{
    if (!json_is_array(m) || json_array_size(m) == 0) {
        return torii_errf(eb, TORII_EINVAL,
                          "%s.keys: expected a non-empty array of store ids (omit it to "
                          "accept every exposed key)",
                          where);
    }
    return jwt_str_list(m, SIZE_MAX, TORII_JWT_MAX_KID, &j->kids, &j->n_kids, where, "keys", eb);
}

static int jwt_parse_issuer(json_t *m, struct torii_route_jwt *j, const char *where,
                            struct torii_errbuf *eb)
{
    if (!json_is_string(m) || json_string_length(m) == 0
        || strlen(json_string_value(m)) != json_string_length(m)) {
        return torii_errf(eb, TORII_EINVAL, "%s.issuer: expected a non-empty string", where);
    }
    j->issuer = torii_xstrdup(json_string_value(m));
    return TORII_OK;
}

static int jwt_parse_audience(json_t *m, struct torii_route_jwt *j, const char *where,
                              struct torii_errbuf *eb)
{
    return jwt_str_list(m, TORII_JWT_MAX_AUD, 1024, &j->auds, &j->n_auds, where, "audience", eb);
}

static int jwt_parse_algorithms(json_t *m, struct torii_route_jwt *j, const char *where,
                                struct torii_errbuf *eb)
{
    return jwt_parse_algs(m, &j->algs, where, eb);
}

/* The members of a route's "jwt" object, in this order, each parsed when present. */
static const struct jwt_member {
    const char *name;
    int (*parse)(json_t *m, struct torii_route_jwt *j, const char *where, struct torii_errbuf *eb);
} jwt_members[] = {
    {"keys", jwt_parse_keys},
    {"issuer", jwt_parse_issuer},
    {"audience", jwt_parse_audience},
    {"algorithms", jwt_parse_algorithms},
    {"leeway_s", jwt_parse_leeway},
    {"from", jwt_parse_from},
    {"claims_to_headers", jwt_parse_claims},
};

static int jwt_parse_members(json_t *v, struct torii_route_jwt *j, const char *where,
                             struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    for (size_t i = 0; i < sizeof(jwt_members) / sizeof(jwt_members[0]); i++) {
        json_t *m = json_object_get(v, jwt_members[i].name);
        if (m != NULL) {
            TORII_TRY(jwt_members[i].parse(m, j, where, eb));
        }
    }
out:
    return rc;
}

int torii_route_jwt_parse(json_t *v, unsigned route, const char *where,
                          struct torii_route_jwt **out, struct torii_errbuf *eb)
{
    static const char *const keys[] = {"keys",     "issuer", "audience",          "algorithms",
                                       "leeway_s", "from",   "claims_to_headers", NULL};
    struct torii_route_jwt *j = NULL;
    int rc = TORII_OK;

    *out = NULL;
    TORII_ENSURE(json_is_object(v), torii_errf(eb, TORII_EINVAL, "%s: expected an object", where));
    TORII_TRY(jwt_check_keys(v, keys, where, eb));
    j = torii_xcalloc(1, sizeof(*j));
    j->route = route;
    j->header = torii_xstrdup("Authorization");
    j->bearer = 1;
    TORII_TRY(jwt_parse_members(v, j, where, eb));
    *out = j;
    j = NULL;
out:
    torii_route_jwt_free(j);
    return rc;
}

static void jwt_free_list(char **l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++) {
        free(l[i]);
    }
    free(l);
}

void torii_route_jwt_free(struct torii_route_jwt *j)
{
    if (j == NULL) {
        return;
    }
    jwt_free_list(j->kids, j->n_kids);
    jwt_free_list(j->auds, j->n_auds);
    free(j->issuer);
    free(j->header);
    free(j->cookie);
    for (size_t i = 0; j->claims != NULL && i < j->n_claims; i++) {
        free(j->claims[i].claim);
        free(j->claims[i].header);
    }
    free(j->claims);
    free(j->drop);
    free(j);
}

const struct torii_slice *torii_route_jwt_drop(const struct torii_route_jwt *j, size_t *n)
{
    *n = j != NULL ? j->n_claims : 0;
    return j != NULL ? j->drop : NULL;
}

/* ---- the check ---------------------------------------------------------------------------- */

/* "Bearer" 1*SP token (RFC 6750 2.1; the scheme is case-insensitive, RFC 9110 11.1). */
static int jwt_bearer(struct torii_slice v, struct torii_slice *tok)
{
    size_t i = 6;

    if (v.len <= 7 || strncasecmp(v.ptr, "Bearer", 6) != 0 || v.ptr[6] != ' ') {
        return 0;
    }
    while (i < v.len && v.ptr[i] == ' ') {
        i++;
    }
    tok->ptr = v.ptr + i;
    tok->len = v.len - i;
    return tok->len > 0;
}

/* The value of cookie `name` in one Cookie field (RFC 6265 4.2.1: "a=1; b=2"), quotes removed.
 * Returns how many times it appears; *tok is the last one. */
static int jwt_cookie_in(struct torii_slice v, const char *name, struct torii_slice *tok)
{
    size_t nl = strlen(name);
    size_t i = 0;
    int found = 0;

    while (i < v.len) {
        size_t s;
        size_t e;
        while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == ';')) {
            i++;
        }
        s = i;
        while (i < v.len && v.ptr[i] != ';') {
            i++;
        }
        e = i;
        if (e - s > nl && memcmp(v.ptr + s, name, nl) == 0 && v.ptr[s + nl] == '=') {
            tok->ptr = v.ptr + s + nl + 1;
            tok->len = e - (s + nl + 1);
            if (tok->len >= 2 && tok->ptr[0] == '"' && tok->ptr[tok->len - 1] == '"') {
                tok->ptr++;
                tok->len -= 2;
            }
            found++;
        }
    }
    return found;
}

/* The token where the route reads it: TORII_OK, TORII_ENOTFOUND (none), TORII_EINVAL (given
 * more than once: which one would the backend believe?). */
static int jwt_token(const struct torii_route_jwt *j, const struct torii_http_req *req,
                     struct torii_slice *tok, struct torii_errbuf *eb)
{
    int found = 0;

    for (size_t i = 0; i < req->n_headers; i++) {
        const struct torii_http_header *h = &req->headers[i];
        if (j->cookie != NULL && torii_slice_eq_ci(h->name, "Cookie")) {
            found += jwt_cookie_in(h->value, j->cookie, tok);
        } else if (j->header != NULL && torii_slice_eq_ci(h->name, j->header)) {
            if (j->bearer && !jwt_bearer(h->value, tok)) {
                continue; /* another scheme (Basic...): not our token */
            }
            if (!j->bearer) {
                *tok = h->value;
            }
            found++;
        }
    }
    if (found > 1) {
        return torii_errf(eb, TORII_EINVAL, "jwt: %s given %d times",
                          j->cookie != NULL ? "cookie" : "token header", found);
    }
    if (found == 0 || tok->len == 0) {
        return torii_errf(eb, TORII_ENOTFOUND, "jwt: no token in %s %s",
                          j->cookie != NULL ? "cookie" : "header",
                          j->cookie != NULL ? j->cookie : j->header);
    }
    return TORII_OK;
}

/* The header value of one claim (a string, number or boolean without control characters);
 * *tmp holds what had to be formatted (free it). 0 when the claim cannot be sent. */
static int jwt_claim_value(const json_t *c, struct torii_slice *v, char **tmp)
{
    *tmp = NULL;
    if (json_is_string(c)) {
        v->ptr = json_string_value(c);
        v->len = json_string_length(c);
    } else if (json_is_integer(c)) {
        *tmp = torii_xmalloc(24);
        (void)snprintf(*tmp, 24, "%" PRId64, (int64_t)json_integer_value(c));
    } else if (json_is_number(c) || json_is_boolean(c)) {
        *tmp = json_dumps(c, JSON_ENCODE_ANY | JSON_COMPACT);
        if (*tmp == NULL) {
            return 0;
        }
    } else {
        return 0;
    }
    if (*tmp != NULL) {
        v->ptr = *tmp;
        v->len = strlen(*tmp);
    }
    for (size_t i = 0; i < v->len; i++) {
        unsigned char ch = (unsigned char)v->ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return 0; /* CR, LF, NUL...: would split or truncate the header */
        }
    }
    return 1;
}

static void jwt_buf_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = torii_xrealloc(*buf, *cap);
    }
    if (n > 0) {
        memcpy(*buf + *len, s, n);
    }
    *len += n;
    (*buf)[*len] = '\0';
}

/* "Name: value\r\n" for each configured claim present in the token. TORII_EINVAL (eb names
 * the claim) when one cannot be sent. */
static int jwt_claim_headers(const struct torii_route_jwt *j, const json_t *claims, char **hdrs,
                             size_t *hdrs_len, struct torii_errbuf *eb)
{
    char *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    int rc = TORII_OK;

    for (size_t i = 0; i < j->n_claims; i++) {
        const json_t *c = json_object_get(claims, j->claims[i].claim);
        struct torii_slice v = {NULL, 0};
        char *tmp = NULL;
        if (c == NULL) {
            continue; /* absent: the backend sees no such header (client copies are dropped) */
        }
        if (!jwt_claim_value(c, &v, &tmp)) {
            free(tmp);
            rc = torii_errf(eb, TORII_EINVAL,
                            "jwt: claim %s is not a string, number or boolean fit for a header",
                            j->claims[i].claim);
            goto out;
        }
        jwt_buf_put(&buf, &len, &cap, j->claims[i].header, strlen(j->claims[i].header));
        jwt_buf_put(&buf, &len, &cap, ": ", 2);
        jwt_buf_put(&buf, &len, &cap, v.ptr, v.len);
        jwt_buf_put(&buf, &len, &cap, "\r\n", 2);
        free(tmp);
    }
    *hdrs = buf;
    *hdrs_len = len;
    buf = NULL;
out:
    free(buf);
    return rc;
}

unsigned torii_route_jwt_check(const struct torii_route_jwt *j, const struct torii_jwt_keyset *ks,
                               const struct torii_http_req *req, int64_t now_ms, char **hdrs,
                               size_t *hdrs_len, struct torii_errbuf *eb)
{
    struct torii_jwt_policy p = {0};
    struct torii_slice tok = {NULL, 0};
    enum torii_jwt_verdict verdict = TORII_JWT_MALFORMED;
    json_t *claims = NULL;
    unsigned outcome;
    int rc;

    *hdrs = NULL;
    *hdrs_len = 0;
    rc = jwt_token(j, req, &tok, eb);
    if (rc != TORII_OK) {
        outcome = rc == TORII_ENOTFOUND ? TORII_JWT_OUTCOME_MISSING : TORII_JWT_MALFORMED;
        goto out;
    }
    p.algs = j->algs;
    p.kids = (const char *const *)j->kids;
    p.n_kids = j->n_kids;
    p.issuer = j->issuer;
    p.audiences = (const char *const *)j->auds;
    p.n_audiences = j->n_auds;
    p.leeway_s = j->leeway_s;
    rc = torii_jwt_verify(ks, &p, tok.ptr, tok.len, now_ms, &verdict, &claims, eb);
    outcome = rc == TORII_OK ? TORII_JWT_OK
                             : (verdict != TORII_JWT_OK ? (unsigned)verdict : TORII_JWT_MALFORMED);
    if (rc == TORII_OK && jwt_claim_headers(j, claims, hdrs, hdrs_len, eb) != TORII_OK) {
        outcome = TORII_JWT_OUTCOME_BAD_CLAIM;
    }
out:
    torii_jwt_metrics_count(j->route, outcome);
    json_decref(claims);
    return outcome;
}

/* ---- the proxy's hook (admission.c) ------------------------------------------------------- */

unsigned torii_proxy__jwt_check(struct torii_pki_state *pki, const struct torii_route_jwt *j,
                                const struct torii_http_req *req, char **hdrs, size_t *hdrs_len)
{
    struct torii_jwt_keyset *ks = pki != NULL ? torii_pki_state_jwt_keys(pki) : NULL;
    struct torii_errbuf eb = {{0}};
    unsigned outcome;

    if (ks == NULL) { /* no PKI: no key, every token is refused */
        ks = torii_jwt_keyset_new();
        torii_jwt_keyset_seal(ks);
    }
    outcome = torii_route_jwt_check(j, ks, req, torii_clock_now_ms(), hdrs, hdrs_len, &eb);
    torii_jwt_keyset_unref(ks);
    if (outcome != TORII_JWT_OK) {
        torii_log(TORII_LOG_DEBUG, "proxy: %s: token refused (%s): %s", req->peer,
                  torii_jwt_outcome_name(outcome), eb.msg);
    }
    return outcome;
}
