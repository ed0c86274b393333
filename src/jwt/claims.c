/* claims.c - the registered claim checks of RFC 7519 section 4.1 (exp, nbf, iat, iss, aud),
 * with a clock leeway, and the nesting bound applied before any JSON text is parsed. */
#include <math.h>
#include <string.h>

#include "jwt_int.h"

/* NumericDate upper bound: 9999-12-31T23:59:59Z. Larger values are refused as malformed
 * rather than compared (a double that large says nothing sensible about time). */
#define JWT_DATE_MAX 253402300799.0

int torii_jwt__json_depth_ok(const char *s, size_t len, int max)
{
    int depth = 0;
    int in_str = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                return 0;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

/* A NumericDate claim: 0 absent, 1 present (*v set), -1 malformed. */
static int claims_date(const json_t *c, const char *name, double *v)
{
    const json_t *j = json_object_get(c, name);
    double d;

    if (j == NULL) {
        return 0;
    }
    if (!json_is_number(j)) {
        return -1;
    }
    d = json_number_value(j);
    if (!isfinite(d) || d < 0 || d > JWT_DATE_MAX) {
        return -1;
    }
    *v = d;
    return 1;
}

static int claims_str_eq(const json_t *j, const char *want)
{
    size_t n = strlen(want);

    /* Length first: a JSON string may hold "\u0000" and must not match a prefix. */
    return json_is_string(j) && json_string_length(j) == n
           && memcmp(json_string_value(j), want, n) == 0;
}

static enum torii_jwt_verdict claims_times(const json_t *c, const struct torii_jwt_policy *p,
                                           int64_t now_ms, struct torii_errbuf *eb)
{
    double now = (double)now_ms / 1000.0;
    double leeway = (double)p->leeway_s;
    double exp = 0;
    double nbf = 0;
    double iat = 0;
    int has;

    has = claims_date(c, "exp", &exp);
    if (has < 0) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: exp is not a NumericDate");
        return TORII_JWT_MALFORMED;
    }
    if (has == 0) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: token has no exp");
        return TORII_JWT_EXPIRED;
    }
    /* RFC 7519 4.1.4: the current time must be before exp. */
    if (now >= exp + leeway) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: token expired");
        return TORII_JWT_EXPIRED;
    }
    has = claims_date(c, "nbf", &nbf);
    if (has < 0) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: nbf is not a NumericDate");
        return TORII_JWT_MALFORMED;
    }
    if (has > 0 && now + leeway < nbf) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: token not valid yet (nbf)");
        return TORII_JWT_NOT_YET_VALID;
    }
    has = claims_date(c, "iat", &iat);
    if (has < 0) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: iat is not a NumericDate");
        return TORII_JWT_MALFORMED;
    }
    if (has > 0 && now + leeway < iat) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: token issued in the future (iat)");
        return TORII_JWT_NOT_YET_VALID;
    }
    return TORII_JWT_OK;
}

static int claims_aud_match(const json_t *aud, const struct torii_jwt_policy *p)
{
    for (size_t i = 0; i < p->n_audiences; i++) {
        if (p->audiences[i] != NULL && claims_str_eq(aud, p->audiences[i])) {
            return 1;
        }
    }
    return 0;
}

/* RFC 7519 4.1.3: a recipient that does not identify itself with a value of aud rejects the
 * token, so a token with aud is refused by a route that expects none. */
static enum torii_jwt_verdict claims_aud(const json_t *c, const struct torii_jwt_policy *p,
                                         struct torii_errbuf *eb)
{
    const json_t *aud = json_object_get(c, "aud");
    size_t i;
    const json_t *v;
    int hit = 0;

    if (aud == NULL) {
        if (p->audiences == NULL || p->n_audiences == 0) {
            return TORII_JWT_OK;
        }
        (void)torii_errf(eb, TORII_EPERM, "jwt: token has no aud");
        return TORII_JWT_BAD_AUDIENCE;
    }
    if (json_is_array(aud)) {
        if (json_array_size(aud) > TORII_JWT_MAX_AUD) {
            (void)torii_errf(eb, TORII_EPERM, "jwt: aud has more than %d entries",
                             TORII_JWT_MAX_AUD);
            return TORII_JWT_MALFORMED;
        }
        json_array_foreach (aud, i, v) {
            if (!json_is_string(v)) {
                (void)torii_errf(eb, TORII_EPERM, "jwt: aud holds a non-string");
                return TORII_JWT_MALFORMED;
            }
            hit |= claims_aud_match(v, p);
        }
    } else if (json_is_string(aud)) {
        hit = claims_aud_match(aud, p);
    } else {
        (void)torii_errf(eb, TORII_EPERM, "jwt: aud is neither a string nor an array");
        return TORII_JWT_MALFORMED;
    }
    if (!hit) {
        (void)torii_errf(eb, TORII_EPERM,
                         p->n_audiences == 0 ? "jwt: token has an aud but the route expects none"
                                             : "jwt: no accepted audience in aud");
        return TORII_JWT_BAD_AUDIENCE;
    }
    return TORII_JWT_OK;
}

enum torii_jwt_verdict torii_jwt__claims_check(const json_t *claims,
                                               const struct torii_jwt_policy *p, int64_t now_ms,
                                               struct torii_errbuf *eb)
{
    enum torii_jwt_verdict v;
    const json_t *iss;

    if (!json_is_object(claims)) {
        (void)torii_errf(eb, TORII_EPERM, "jwt: claims are not a JSON object");
        return TORII_JWT_MALFORMED;
    }
    v = claims_times(claims, p, now_ms, eb);
    if (v != TORII_JWT_OK) {
        return v;
    }
    if (p->issuer != NULL) {
        iss = json_object_get(claims, "iss");
        if (!claims_str_eq(iss, p->issuer)) {
            (void)torii_errf(eb, TORII_EPERM,
                             iss == NULL ? "jwt: token has no iss" : "jwt: unexpected iss");
            return TORII_JWT_BAD_ISSUER;
        }
    }
    return claims_aud(claims, p, eb);
}
