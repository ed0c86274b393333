/* certs_query.c - `fields`, `filtered` and `sorted` of GET /api/certificates (certs_query.h).
 * Decisions (reference 2.3, where the reference leaves room):
 * - A path is a dotted list of object member names (no escaping: a member whose name holds a
 *   '.' cannot be addressed); it never descends into arrays.
 * - filtered compares ASCII case-insensitively; non-string values by their compact JSON text;
 *   an array matches when any element does (as filter.<field>). Every term must match.
 * - sorted compares numbers by value (the reference compares their text, which orders 10
 *   before 9), everything else by its text; ties keep the store order (the caller's job).
 * Every item that cannot be honoured is a TORII_EINVAL naming it: nothing is ignored. */
#include "certs_query.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torii/log.h"
#include "torii/mem.h"
#include "torii/pki.h"

enum certs_query_kind {
    CQ_FIELDS,
    CQ_FILTERED,
    CQ_SORTED,
};

static const char *const cq_names[] = {"fields", "filtered", "sorted"};

void certs_query_terms_clear(struct certs_query_terms *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->t[i].path);
        free(t->t[i].text);
    }
    TORII_FREE(t->t);
    t->n = 0;
}

/* Split term->path (owned, modified in place) into its segments. */
static int cq_split_path(struct certs_query_term *term, enum certs_query_kind kind,
                         struct torii_errbuf *eb)
{
    char esc[128];
    char *p = term->path;

    for (;;) {
        char *dot = strchr(p, '.');

        if (dot != NULL) {
            *dot = '\0';
        }
        if (*p == '\0' || term->n == CERTS_QUERY_MAX_SEGS) {
            return torii_errf(eb, TORII_EINVAL,
                              "%s: field path '%s' needs 1 to %d non-empty names separated by '.'",
                              cq_names[kind],
                              torii_log_escape(term->path, strlen(term->path), esc, sizeof(esc)),
                              CERTS_QUERY_MAX_SEGS);
        }
        term->seg[term->n++] = p;
        if (dot == NULL) {
            return TORII_OK;
        }
        p = dot + 1;
    }
}

/* The part of an item after its path: filtered text (lower-cased) or sorted direction. */
static int cq_item_rest(struct certs_query_term *term, enum certs_query_kind kind, const char *rest,
                        struct torii_errbuf *eb)
{
    if (kind == CQ_FILTERED) {
        if (rest == NULL) {
            return torii_errf(eb, TORII_EINVAL, "filtered: expected field:text items, got '%.64s'",
                              term->path);
        }
        term->text = torii_xstrdup(rest);
        for (char *c = term->text; *c != '\0'; c++) {
            *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
        }
        return TORII_OK;
    }
    if (kind == CQ_SORTED) {
        if (rest != NULL && strcmp(rest, "true") != 0 && strcmp(rest, "false") != 0) {
            return torii_errf(eb, TORII_EINVAL,
                              "sorted: expected field:true (ascending) or field:false "
                              "(descending), got '%.64s'",
                              rest);
        }
        term->ascending = rest == NULL || strcmp(rest, "true") == 0;
        return TORII_OK;
    }
    if (rest != NULL) {
        return torii_errf(eb, TORII_EINVAL, "fields: unexpected ':' in '%.64s'", term->path);
    }
    return TORII_OK;
}

/* One comma-separated item of len bytes into term. */
static int cq_item(const char *item, size_t len, enum certs_query_kind kind,
                   struct certs_query_term *term, struct torii_errbuf *eb)
{
    char *copy = torii_xstrndup(item, len);
    char *colon = strchr(copy, ':');
    const char *rest = NULL;
    int rc = TORII_OK;

    if (colon != NULL) {
        *colon = '\0';
        rest = colon + 1;
    }
    term->path = torii_xstrdup(copy);
    rc = cq_item_rest(term, kind, rest, eb);
    if (rc == TORII_OK) {
        rc = cq_split_path(term, kind, eb);
    }
    free(copy);
    return rc;
}

static int cq_parse(const char *s, enum certs_query_kind kind, struct certs_query_terms *out,
                    struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct certs_query_terms t = {NULL, 0};
    size_t len = strlen(s);
    size_t i = 0;

    t.t = torii_xcalloc(CERTS_QUERY_MAX_TERMS, sizeof(*t.t));
    while (len > 0 && i <= len) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t end = comma != NULL ? (size_t)(comma - s) : len;

        TORII_ENSURE(t.n < CERTS_QUERY_MAX_TERMS,
                     torii_errf(eb, TORII_EINVAL, "%s: more than %d items", cq_names[kind],
                                CERTS_QUERY_MAX_TERMS));
        t.n++;
        TORII_TRY(cq_item(s + i, end - i, kind, &t.t[t.n - 1], eb));
        i = end + 1;
    }
    *out = t;
    t.t = NULL;
    t.n = 0;
out:
    certs_query_terms_clear(&t);
    return rc;
}

int certs_query_fields_parse(const char *s, struct certs_query_terms *out, struct torii_errbuf *eb)
{
    return cq_parse(s, CQ_FIELDS, out, eb);
}

int certs_query_filtered_parse(const char *s, struct certs_query_terms *out,
                               struct torii_errbuf *eb)
{
    return cq_parse(s, CQ_FILTERED, out, eb);
}

int certs_query_sorted_parse(const char *s, struct certs_query_terms *out, struct torii_errbuf *eb)
{
    return cq_parse(s, CQ_SORTED, out, eb);
}

/* ---- evaluation ---- */

static const json_t *cq_get(const json_t *e, const struct certs_query_term *term)
{
    const json_t *v = e;

    for (size_t i = 0; i < term->n && v != NULL; i++) {
        v = json_is_object(v) ? json_object_get(v, term->seg[i]) : NULL;
    }
    return v;
}

/* Set a copy of v at term's path in p, creating (or replacing non-object) parents. */
static int cq_project_one(json_t *p, const struct certs_query_term *term, const json_t *v)
{
    json_t *cur = p;
    json_t *copy = NULL;

    for (size_t i = 0; i + 1 < term->n; i++) {
        json_t *child = json_object_get(cur, term->seg[i]);

        if (!json_is_object(child)) {
            child = json_object();
            if (child == NULL || json_object_set_new(cur, term->seg[i], child) != 0) {
                return TORII_ENOMEM;
            }
        }
        cur = child;
    }
    copy = json_deep_copy(v);
    if (copy == NULL || json_object_set_new(cur, term->seg[term->n - 1], copy) != 0) {
        return TORII_ENOMEM;
    }
    return TORII_OK;
}

json_t *certs_query_project(const json_t *e, const struct certs_query_terms *fields)
{
    json_t *p = json_object();

    for (size_t i = 0; p != NULL && i < fields->n; i++) {
        const json_t *v = cq_get(e, &fields->t[i]);

        if (v != NULL && cq_project_one(p, &fields->t[i], v) != TORII_OK) {
            json_decref(p);
            p = NULL;
        }
    }
    return p;
}

/* The text a value is compared by: *owned is set when it had to be serialized. */
static const char *cq_text(const json_t *v, size_t *len, char **owned)
{
    *owned = NULL;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    *owned = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    *len = *owned != NULL ? strlen(*owned) : 0;
    return *owned != NULL ? *owned : "";
}

static int cq_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* needle is already lower-cased. */
static int cq_contains_ci(const char *hay, size_t hlen, const char *needle)
{
    size_t nlen = strlen(needle);

    for (size_t i = 0; nlen <= hlen && i <= hlen - nlen; i++) {
        size_t k = 0;

        while (k < nlen && cq_lower((unsigned char)hay[i + k]) == (unsigned char)needle[k]) {
            k++;
        }
        if (k == nlen) {
            return 1;
        }
    }
    return 0;
}

static int cq_value_contains(const json_t *v, const char *needle)
{
    char *owned = NULL;
    size_t len = 0;
    const char *text = NULL;
    int found = 0;

    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && !found; i++) {
            text = cq_text(json_array_get(v, i), &len, &owned);
            found = cq_contains_ci(text, len, needle);
            free(owned);
        }
        return found;
    }
    text = cq_text(v, &len, &owned);
    found = cq_contains_ci(text, len, needle);
    free(owned);
    return found;
}

int certs_query_filtered_match(const struct certs_query_terms *filtered, const json_t *e)
{
    for (size_t i = 0; i < filtered->n; i++) {
        const json_t *v = cq_get(e, &filtered->t[i]);

        if (v == NULL || !cq_value_contains(v, filtered->t[i].text)) {
            return 0;
        }
    }
    return 1;
}

static int cq_cmp_values(const json_t *a, const json_t *b)
{
    char *oa = NULL;
    char *ob = NULL;
    size_t la = 0;
    size_t lb = 0;
    const char *ta = NULL;
    const char *tb = NULL;
    int c = 0;

    if (a == NULL || b == NULL) {
        return (a != NULL) - (b != NULL);
    }
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a);
        double y = json_number_value(b);
        return (x > y) - (x < y);
    }
    ta = cq_text(a, &la, &oa);
    tb = cq_text(b, &lb, &ob);
    c = memcmp(ta, tb, la < lb ? la : lb);
    if (c == 0) {
        c = (la > lb) - (la < lb);
    }
    free(oa);
    free(ob);
    return c;
}

int certs_query_sorted_cmp(const struct certs_query_terms *sorted, const json_t *a, const json_t *b)
{
    for (size_t i = 0; i < sorted->n; i++) {
        int c = cq_cmp_values(cq_get(a, &sorted->t[i]), cq_get(b, &sorted->t[i]));

        if (c != 0) {
            return sorted->t[i].ascending ? c : -c;
        }
    }
    return 0;
}

/* ---- search and expiry window ---- */

static int cq_parse_ms(const char *name, const char *s, int64_t *out, struct torii_errbuf *eb)
{
    char *end = NULL;
    long long v = 0;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0) {
        return torii_errf(eb, TORII_EINVAL,
                          "%s: expected milliseconds since the epoch, got '%.64s'", name, s);
    }
    *out = (int64_t)v;
    return TORII_OK;
}

int certs_query_window_parse(const char *search, const char *after, const char *before,
                             struct certs_query_window *out, struct torii_errbuf *eb)
{
    int rc = TORII_OK;

    memset(out, 0, sizeof(*out));
    if (search != NULL && search[0] != '\0') {
        out->search = torii_xstrdup(search);
        for (char *c = out->search; *c != '\0'; c++) {
            *c = (char)cq_lower((unsigned char)*c);
        }
    }
    if (after != NULL) {
        TORII_TRY(cq_parse_ms("expiresAfter", after, &out->after, eb));
        out->has_after = 1;
    }
    if (before != NULL) {
        TORII_TRY(cq_parse_ms("expiresBefore", before, &out->before, eb));
        out->has_before = 1;
    }
out:
    return rc;
}

void certs_query_window_clear(struct certs_query_window *w)
{
    TORII_FREE(w->search);
}

static int cq_search_match(const char *needle, const json_t *e)
{
    static const char *const fields[] = {"id",      "name", "domain", "description",
                                         "subject", "sans", "tags"};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const json_t *v = json_object_get(e, fields[i]);

        if (v != NULL && cq_value_contains(v, needle)) {
            return 1;
        }
    }
    return 0;
}

int certs_query_window_match(const struct certs_query_window *w, const json_t *e)
{
    const json_t *to = json_object_get(e, "to");
    double ms = json_is_number(to) ? json_number_value(to) : 0;

    if (w->search != NULL && !cq_search_match(w->search, e)) {
        return 0;
    }
    if ((w->has_after || w->has_before) && !json_is_number(to)) {
        return 0;
    }
    return (!w->has_after || ms >= (double)w->after) && (!w->has_before || ms < (double)w->before);
}

/* ---- computed sort keys: keyType and badges ---- */

#define CQ_DAY_MS ((int64_t)86400 * 1000)

static const char *const cq_computed[] = {"keyType", "badges"};

unsigned certs_query_computed(const struct certs_query_terms *sorted)
{
    unsigned mask = 0;

    for (size_t i = 0; i < sorted->n; i++) {
        for (size_t k = 0; k < sizeof(cq_computed) / sizeof(cq_computed[0]); k++) {
            if (sorted->t[i].n == 1 && strcmp(sorted->t[i].seg[0], cq_computed[k]) == 0) {
                mask |= 1u << k;
            }
        }
    }
    return mask;
}

static int cq_true(const json_t *e, const char *k)
{
    return json_is_true(json_object_get(e, k));
}

/* The web page's badges of e, in its order, comma-separated. */
static void cq_badges(const json_t *e, int64_t now_ms, char *buf, size_t len)
{
    static const char *const flags[] = {"ca",          "client",    "keypair", "selfSigned",
                                        "letsEncrypt", "autoRenew", "exposed", "revoked"};
    const json_t *to = json_object_get(e, "to");
    double to_ms = json_is_number(to) ? json_number_value(to) : 0;
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (cq_true(e, flags[i])) {
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "," : "", flags[i]);
        }
    }
    if (!cq_true(e, "revoked") && json_is_number(to)) {
        const char *b = to_ms < (double)now_ms ? "expired"
                        : to_ms < (double)(now_ms + CERTS_QUERY_ALMOST_DAYS * CQ_DAY_MS)
                            ? "almostExpired"
                            : NULL;
        if (b != NULL) {
            (void)snprintf(buf + used, len - used, "%s%s", used ? "," : "", b);
        }
    }
}

int certs_query_computed_add(json_t *e, unsigned mask, int64_t now_ms)
{
    char buf[160];

    if ((mask & 1u) != 0) {
        if (torii_pki_cert_key_type(e, buf, sizeof(buf)) != TORII_OK) {
            buf[0] = '\0'; /* unreadable: sorts first */
        }
        if (json_object_set_new(e, cq_computed[0], json_string(buf)) != 0) {
            return TORII_ENOMEM;
        }
    }
    if ((mask & 2u) != 0) {
        cq_badges(e, now_ms, buf, sizeof(buf));
        if (json_object_set_new(e, cq_computed[1], json_string(buf)) != 0) {
            return TORII_ENOMEM;
        }
    }
    return TORII_OK;
}

void certs_query_computed_del(json_t *e, unsigned mask)
{
    for (size_t k = 0; k < sizeof(cq_computed) / sizeof(cq_computed[0]); k++) {
        if ((mask & (1u << k)) != 0) {
            (void)json_object_del(e, cq_computed[k]);
        }
    }
}
