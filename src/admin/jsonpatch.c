/* jsonpatch.c - RFC 6902 JSON Patch, RFC 6901 JSON Pointer and RFC 7386 JSON Merge Patch.
 * Every walk over peer data uses an explicit heap stack instead of recursion (misc-no-recursion);
 * depth is bounded before jansson's recursive helpers (json_deep_copy) see a value. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "jsonpatch.h"
#include "torii/err.h"
#include "torii/mem.h"

/* jansson's object iterator API takes a non-const json_t * even for read-only walks; this is
 * the single place where constness is dropped, and the walkers below never mutate through it. */
static json_t *jp_unconst(const json_t *v)
{
    return (json_t *)(uintptr_t)v;
}

/* ---- depth and equality (iterative) ---- */

struct jp_depth_item {
    const json_t *v;
    size_t depth;
};

int admin_json_depth(const json_t *v, size_t *out)
{
    struct jp_depth_item *stack = NULL;
    size_t n = 0;
    size_t cap = 16;
    size_t max = 0;

    if (!json_is_object(v) && !json_is_array(v)) {
        *out = 0;
        return TORII_OK;
    }
    stack = torii_xmalloc(cap * sizeof(*stack));
    stack[n++] = (struct jp_depth_item){v, 1};
    while (n > 0) {
        struct jp_depth_item it = stack[--n];
        size_t nchild = json_is_object(it.v) ? json_object_size(it.v) : json_array_size(it.v);

        if (it.depth > max) {
            max = it.depth;
        }
        if (n + nchild > cap) {
            while (n + nchild > cap) {
                cap *= 2;
            }
            stack = torii_xrealloc(stack, cap * sizeof(*stack));
        }
        if (json_is_object(it.v)) {
            void *iter = json_object_iter(jp_unconst(it.v));
            while (iter != NULL) {
                const json_t *child = json_object_iter_value(iter);
                if (json_is_object(child) || json_is_array(child)) {
                    stack[n++] = (struct jp_depth_item){child, it.depth + 1};
                }
                iter = json_object_iter_next(jp_unconst(it.v), iter);
            }
        } else {
            for (size_t i = 0; i < nchild; i++) {
                const json_t *child = json_array_get(it.v, i);
                if (json_is_object(child) || json_is_array(child)) {
                    stack[n++] = (struct jp_depth_item){child, it.depth + 1};
                }
            }
        }
    }
    free(stack);
    *out = max;
    return TORII_OK;
}

struct jp_pair {
    const json_t *a;
    const json_t *b;
};

static int jp_scalar_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            return json_integer_value(a) == json_integer_value(b);
        }
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) {
        return 0;
    }
    if (json_is_string(a)) {
        size_t la = json_string_length(a);
        return la == json_string_length(b) && memcmp(json_string_value(a), json_string_value(b), la) == 0;
    }
    return 1; /* true, false, null */
}

int admin_json_equal(const json_t *a, const json_t *b)
{
    struct jp_pair *stack = NULL;
    size_t n = 0;
    size_t cap = 16;
    int equal = 1;

    stack = torii_xmalloc(cap * sizeof(*stack));
    stack[n++] = (struct jp_pair){a, b};
    while (n > 0 && equal) {
        struct jp_pair p = stack[--n];
        size_t nchild = 0;

        if (p.a == NULL || p.b == NULL) {
            equal = p.a == p.b;
            continue;
        }
        if (json_is_object(p.a) || json_is_array(p.a)) {
            if (json_typeof(p.a) != json_typeof(p.b)) {
                equal = 0;
                continue;
            }
            nchild = json_is_object(p.a) ? json_object_size(p.a) : json_array_size(p.a);
            if (nchild != (json_is_object(p.b) ? json_object_size(p.b) : json_array_size(p.b))) {
                equal = 0;
                continue;
            }
        } else {
            equal = jp_scalar_equal(p.a, p.b);
            continue;
        }
        if (n + nchild > cap) {
            while (n + nchild > cap) {
                cap *= 2;
            }
            stack = torii_xrealloc(stack, cap * sizeof(*stack));
        }
        if (json_is_object(p.a)) {
            void *iter = json_object_iter(jp_unconst(p.a));
            while (iter != NULL) {
                const char *key = json_object_iter_key(iter);
                size_t klen = json_object_iter_key_len(iter);
                /* A member missing from b pushes (x, NULL), which compares unequal. */
                stack[n++] = (struct jp_pair){json_object_iter_value(iter),
                                              json_object_getn(p.b, key, klen)};
                iter = json_object_iter_next(jp_unconst(p.a), iter);
            }
        } else {
            for (size_t i = 0; i < nchild; i++) {
                stack[n++] = (struct jp_pair){json_array_get(p.a, i), json_array_get(p.b, i)};
            }
        }
    }
    free(stack);
    return equal;
}

static int jp_check_depth(const json_t *v, const char *what, struct torii_errbuf *eb)
{
    size_t depth = 0;
    int rc = admin_json_depth(v, &depth);

    if (rc != TORII_OK) {
        return rc;
    }
    if (depth > ADMIN_JSON_MAX_DEPTH) {
        return torii_errf(eb, TORII_EINVAL, "%s is nested deeper than %d levels", what,
                          ADMIN_JSON_MAX_DEPTH);
    }
    return TORII_OK;
}

/* ---- RFC 6901 pointers ---- */

struct jp_token {
    char *s; /* unescaped, NUL-terminated, may contain NUL bytes (len is authoritative) */
    size_t len;
};

struct jp_ptr {
    struct jp_token *tok;
    size_t n; /* 0 = the whole document */
};

static void jp_ptr_clear(struct jp_ptr *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->tok[i].s);
    }
    TORII_FREE(p->tok);
    p->n = 0;
}

/* Split "/a/b~1c" into unescaped tokens. Accepts "" (whole document) or a string starting with
 * '/'; rejects '~' followed by anything but '0' or '1' (RFC 6901 section 3). */
static int jp_ptr_parse(const char *s, size_t len, struct jp_ptr *out, const char **why)
{
    int rc = TORII_OK;
    struct jp_ptr p = {NULL, 0};
    size_t ntok = 0;
    size_t i = 0;

    if (len == 0) {
        *out = p;
        return TORII_OK;
    }
    if (s[0] != '/') {
        *why = "JSON Pointer must be empty or start with '/'";
        return TORII_EINVAL;
    }
    for (i = 0; i < len; i++) {
        ntok += s[i] == '/';
    }
    p.tok = torii_xcalloc(ntok, sizeof(*p.tok));
    i = 1;
    while (p.n < ntok) {
        size_t end = i;
        size_t k = 0;
        char *t = NULL;

        while (end < len && s[end] != '/') {
            end++;
        }
        t = torii_xmalloc(end - i + 1);
        p.tok[p.n].s = t;
        p.n++;
        for (size_t j = i; j < end; j++) {
            if (s[j] != '~') {
                t[k++] = s[j];
                continue;
            }
            if (j + 1 < end && s[j + 1] == '0') {
                t[k++] = '~';
            } else if (j + 1 < end && s[j + 1] == '1') {
                t[k++] = '/';
            } else {
                *why = "invalid escape in JSON Pointer ('~' must be followed by '0' or '1')";
                rc = TORII_EINVAL;
                goto out;
            }
            j++;
        }
        t[k] = '\0';
        p.tok[p.n - 1].len = k;
        i = end + 1;
    }
    *out = p;
    p.tok = NULL;
    p.n = 0;
out:
    jp_ptr_clear(&p);
    return rc;
}

/* RFC 6901 section 4: an array index is "0" or a decimal without leading zeros. */
static int jp_index(const struct jp_token *t, size_t *out)
{
    size_t v = 0;

    if (t->len == 0 || t->len > 18 || (t->len > 1 && t->s[0] == '0')) {
        return TORII_EINVAL;
    }
    for (size_t i = 0; i < t->len; i++) {
        if (t->s[i] < '0' || t->s[i] > '9') {
            return TORII_EINVAL;
        }
        v = v * 10 + (size_t)(t->s[i] - '0');
    }
    *out = v;
    return TORII_OK;
}

static int jp_is_dash(const struct jp_token *t)
{
    return t->len == 1 && t->s[0] == '-';
}

/* Child of container c named by t, or NULL (with why) when it does not exist. */
static json_t *jp_child(json_t *c, const struct jp_token *t, const char **why)
{
    size_t idx = 0;

    if (json_is_object(c)) {
        json_t *v = json_object_getn(c, t->s, t->len);
        if (v == NULL) {
            *why = "path not found";
        }
        return v;
    }
    if (json_is_array(c)) {
        if (jp_index(t, &idx) != TORII_OK) {
            *why = jp_is_dash(t) ? "index '-' refers to a nonexistent element"
                                 : "invalid array index";
            return NULL;
        }
        if (idx >= json_array_size(c)) {
            *why = "array index out of range";
            return NULL;
        }
        return json_array_get(c, idx);
    }
    *why = "path not found (traverses a scalar)";
    return NULL;
}

/* Container holding the last token of p (p->n >= 1). */
static json_t *jp_parent(json_t *root, const struct jp_ptr *p, const char **why)
{
    json_t *cur = root;

    for (size_t i = 0; i + 1 < p->n && cur != NULL; i++) {
        cur = jp_child(cur, &p->tok[i], why);
    }
    if (cur != NULL && !json_is_object(cur) && !json_is_array(cur)) {
        *why = "parent of the target is not an object or array";
        return NULL;
    }
    return cur;
}

static json_t *jp_get(json_t *root, const struct jp_ptr *p, const char **why)
{
    json_t *parent = NULL;

    if (p->n == 0) {
        return root;
    }
    parent = jp_parent(root, p, why);
    return parent != NULL ? jp_child(parent, &p->tok[p->n - 1], why) : NULL;
}

/* RFC 6902 section 4.1. Always consumes value_owned. The whole-document case replaces *root. */
static int jp_add(json_t **root, const struct jp_ptr *p, json_t *value_owned, const char **why)
{
    int rc = TORII_OK;
    json_t *parent = NULL;
    const struct jp_token *last = NULL;
    size_t idx = 0;

    if (p->n == 0) {
        json_decref(*root);
        *root = value_owned;
        return TORII_OK;
    }
    parent = jp_parent(*root, p, why);
    TORII_ENSURE(parent != NULL, TORII_EINVAL);
    last = &p->tok[p->n - 1];
    if (json_is_object(parent)) {
        rc = json_object_setn_new(parent, last->s, last->len, value_owned) == 0 ? TORII_OK
                                                                                : TORII_ENOMEM;
        value_owned = NULL;
        goto out;
    }
    if (jp_is_dash(last)) {
        rc = json_array_append_new(parent, value_owned) == 0 ? TORII_OK : TORII_ENOMEM;
        value_owned = NULL;
        goto out;
    }
    if (jp_index(last, &idx) != TORII_OK) {
        *why = "invalid array index";
        rc = TORII_EINVAL;
        goto out;
    }
    if (idx > json_array_size(parent)) {
        *why = "array index out of range";
        rc = TORII_EINVAL;
        goto out;
    }
    rc = json_array_insert_new(parent, idx, value_owned) == 0 ? TORII_OK : TORII_ENOMEM;
    value_owned = NULL;
out:
    json_decref(value_owned);
    return rc;
}

/* RFC 6902 section 4.2; the whole document cannot be removed. */
static int jp_remove(json_t *root, const struct jp_ptr *p, const char **why)
{
    json_t *parent = NULL;
    const struct jp_token *last = NULL;
    size_t idx = 0;

    if (p->n == 0) {
        *why = "cannot remove the whole document";
        return TORII_EINVAL;
    }
    parent = jp_parent(root, p, why);
    if (parent == NULL || jp_child(parent, &p->tok[p->n - 1], why) == NULL) {
        return TORII_EINVAL;
    }
    last = &p->tok[p->n - 1];
    if (json_is_object(parent)) {
        return json_object_deln(parent, last->s, last->len) == 0 ? TORII_OK : TORII_EINVAL;
    }
    if (jp_index(last, &idx) != TORII_OK) {
        *why = "invalid array index";
        return TORII_EINVAL;
    }
    return json_array_remove(parent, idx) == 0 ? TORII_OK : TORII_EINVAL;
}

/* RFC 6902 section 4.3: the target must exist. Always consumes value_owned. */
static int jp_replace(json_t **root, const struct jp_ptr *p, json_t *value_owned, const char **why)
{
    json_t *parent = NULL;
    const struct jp_token *last = NULL;
    size_t idx = 0;

    if (p->n == 0) {
        json_decref(*root);
        *root = value_owned;
        return TORII_OK;
    }
    parent = jp_parent(*root, p, why);
    if (parent == NULL || jp_child(parent, &p->tok[p->n - 1], why) == NULL) {
        json_decref(value_owned);
        return TORII_EINVAL;
    }
    last = &p->tok[p->n - 1];
    if (json_is_object(parent)) {
        return json_object_setn_new(parent, last->s, last->len, value_owned) == 0 ? TORII_OK
                                                                                  : TORII_ENOMEM;
    }
    if (jp_index(last, &idx) != TORII_OK) {
        json_decref(value_owned);
        *why = "invalid array index";
        return TORII_EINVAL;
    }
    return json_array_set_new(parent, idx, value_owned) == 0 ? TORII_OK : TORII_ENOMEM;
}

/* True when the first n tokens of a and b are identical. */
static int jp_tokens_match(const struct jp_ptr *a, const struct jp_ptr *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a->tok[i].len != b->tok[i].len || memcmp(a->tok[i].s, b->tok[i].s, a->tok[i].len) != 0) {
            return 0;
        }
    }
    return 1;
}

/* True when pointer a is a proper prefix of pointer b (b names a descendant of a). */
static int jp_is_proper_prefix(const struct jp_ptr *a, const struct jp_ptr *b)
{
    return a->n < b->n && jp_tokens_match(a, b, a->n);
}

static int jp_ptr_equal(const struct jp_ptr *a, const struct jp_ptr *b)
{
    return a->n == b->n && jp_tokens_match(a, b, a->n);
}

/* ---- JSON Patch ---- */

enum jp_opcode {
    JP_ADD = 0,
    JP_REMOVE,
    JP_REPLACE,
    JP_MOVE,
    JP_COPY,
    JP_TEST,
};

static int jp_opcode_parse(const char *s, enum jp_opcode *out)
{
    static const char *const names[] = {"add", "remove", "replace", "move", "copy", "test"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum jp_opcode)i;
            return TORII_OK;
        }
    }
    return TORII_EINVAL;
}

/* Fill eb with "patch operation <i> (<op> <path>[ from <from>]): <why>". */
static int jp_fail(struct torii_errbuf *eb, int rc, size_t idx, const char *op, const char *path,
                   const char *from, const char *why)
{
    if (rc == TORII_ENOMEM) {
        return torii_errf(eb, rc, "patch operation %zu: out of memory", idx);
    }
    if (from != NULL) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu (%s %.80s from %.80s): %s", idx,
                          op, path, from, why);
    }
    return torii_errf(eb, TORII_EINVAL, "patch operation %zu (%s %.80s): %s", idx, op,
                      path != NULL ? path : "?", why);
}

static int jp_apply_one(json_t **doc, const json_t *op, size_t idx, struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    struct jp_ptr path = {NULL, 0};
    struct jp_ptr from = {NULL, 0};
    const json_t *jop = NULL;
    const json_t *jpath = NULL;
    const json_t *jfrom = NULL;
    const json_t *value = NULL;
    const char *opname = "?";
    const char *pathstr = NULL;
    const char *fromstr = NULL;
    const char *why = "invalid operation";
    enum jp_opcode code = JP_ADD;
    json_t *v = NULL;

    if (!json_is_object(op)) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: not a JSON object", idx);
    }
    jop = json_object_get(op, "op");
    if (!json_is_string(jop)) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: missing or non-string \"op\"",
                          idx);
    }
    opname = json_string_value(jop);
    if (jp_opcode_parse(opname, &code) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: unknown op \"%.40s\"", idx,
                          opname);
    }
    jpath = json_object_get(op, "path");
    if (!json_is_string(jpath)) {
        return torii_errf(eb, TORII_EINVAL,
                          "patch operation %zu (%s): missing or non-string \"path\"", idx, opname);
    }
    pathstr = json_string_value(jpath);
    if (code == JP_MOVE || code == JP_COPY) {
        jfrom = json_object_get(op, "from");
        if (!json_is_string(jfrom)) {
            why = "missing or non-string \"from\"";
            rc = TORII_EINVAL;
            goto out;
        }
        fromstr = json_string_value(jfrom);
        if (jp_ptr_parse(fromstr, json_string_length(jfrom), &from, &why) != TORII_OK) {
            rc = TORII_EINVAL;
            goto out;
        }
    }
    if (code == JP_ADD || code == JP_REPLACE || code == JP_TEST) {
        value = json_object_get(op, "value");
        if (value == NULL) {
            why = "missing \"value\"";
            rc = TORII_EINVAL;
            goto out;
        }
    }
    if (jp_ptr_parse(pathstr, json_string_length(jpath), &path, &why) != TORII_OK) {
        rc = TORII_EINVAL;
        goto out;
    }

    switch (code) {
    case JP_ADD:
        /* The patch's value is copied so later operations never mutate (or alias) the patch. */
        v = json_deep_copy(value);
        TORII_ENSURE(v != NULL, TORII_ENOMEM);
        rc = jp_add(doc, &path, v, &why);
        v = NULL;
        break;
    case JP_REMOVE:
        rc = jp_remove(*doc, &path, &why);
        break;
    case JP_REPLACE:
        v = json_deep_copy(value);
        TORII_ENSURE(v != NULL, TORII_ENOMEM);
        rc = jp_replace(doc, &path, v, &why);
        v = NULL;
        break;
    case JP_MOVE:
        /* RFC 6902 section 4.4: "from" must not be a proper prefix of "path". */
        if (jp_is_proper_prefix(&from, &path)) {
            why = "cannot move a value into one of its own children";
            rc = TORII_EINVAL;
            break;
        }
        if (jp_get(*doc, &from, &why) == NULL) {
            rc = TORII_EINVAL;
            break;
        }
        if (jp_ptr_equal(&from, &path)) {
            break; /* moving a value onto itself changes nothing */
        }
        /* from is not "" here: "" is a prefix of every other pointer. */
        v = json_incref(jp_get(*doc, &from, &why));
        rc = jp_remove(*doc, &from, &why);
        if (rc == TORII_OK) {
            rc = jp_add(doc, &path, v, &why);
            v = NULL;
        }
        break;
    case JP_COPY:
        v = jp_get(*doc, &from, &why);
        TORII_ENSURE(v != NULL, TORII_EINVAL);
        v = json_deep_copy(v);
        TORII_ENSURE(v != NULL, TORII_ENOMEM);
        rc = jp_add(doc, &path, v, &why);
        v = NULL;
        break;
    case JP_TEST: {
        const json_t *cur = jp_get(*doc, &path, &why);
        if (cur == NULL) {
            rc = TORII_EINVAL;
        } else if (!admin_json_equal(cur, value)) {
            why = "test failed: value differs";
            rc = TORII_EINVAL;
        }
        break;
    }
    default:
        rc = TORII_EINVAL;
        break;
    }
out:
    json_decref(v);
    jp_ptr_clear(&path);
    jp_ptr_clear(&from);
    if (rc != TORII_OK) {
        rc = jp_fail(eb, rc, idx, opname, pathstr, fromstr, why);
    }
    return rc;
}

int admin_jsonpatch_apply(const json_t *doc, const json_t *patch, json_t **out,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *work = NULL;

    TORII_ENSURE(doc != NULL && out != NULL, TORII_EINVAL);
    if (!json_is_array(patch)) {
        rc = torii_errf(eb, TORII_EINVAL, "JSON Patch must be an array of operations");
        goto out;
    }
    TORII_TRY(jp_check_depth(doc, "document", eb));
    TORII_TRY(jp_check_depth(patch, "patch", eb));
    work = json_deep_copy(doc);
    TORII_ENSURE(work != NULL, TORII_ENOMEM);
    for (size_t i = 0; i < json_array_size(patch); i++) {
        TORII_TRY(jp_apply_one(&work, json_array_get(patch, i), i, eb));
    }
    TORII_TRY(jp_check_depth(work, "patched document", eb));
    *out = work;
    work = NULL;
out:
    json_decref(work);
    return rc;
}

/* ---- RFC 7386 merge patch ---- */

/* One pending merge: patch object p into object t (t lives inside the result). */
struct jp_merge_item {
    json_t *t;
    const json_t *p;
};

int admin_mergepatch_apply(const json_t *doc, const json_t *patch, json_t **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *work = NULL;
    struct jp_merge_item *stack = NULL;
    size_t n = 0;
    size_t cap = 16;

    TORII_ENSURE(doc != NULL && patch != NULL && out != NULL, TORII_EINVAL);
    TORII_TRY(jp_check_depth(doc, "document", eb));
    TORII_TRY(jp_check_depth(patch, "merge patch", eb));
    if (!json_is_object(patch)) {
        /* RFC 7386 section 2: a non-object patch replaces the target wholesale. */
        work = json_deep_copy(patch);
        TORII_ENSURE(work != NULL, TORII_ENOMEM);
    } else {
        work = json_is_object(doc) ? json_deep_copy(doc) : json_object();
        TORII_ENSURE(work != NULL, TORII_ENOMEM);
        stack = torii_xmalloc(cap * sizeof(*stack));
        stack[n++] = (struct jp_merge_item){work, patch};
    }
    while (n > 0) {
        struct jp_merge_item it = stack[--n];
        void *iter = json_object_iter(jp_unconst(it.p));

        while (iter != NULL) {
            const char *key = json_object_iter_key(iter);
            size_t klen = json_object_iter_key_len(iter);
            const json_t *pv = json_object_iter_value(iter);

            iter = json_object_iter_next(jp_unconst(it.p), iter);
            if (json_is_null(pv)) {
                (void)json_object_deln(it.t, key, klen); /* absent is fine */
                continue;
            }
            if (json_is_object(pv)) {
                json_t *tv = json_object_getn(it.t, key, klen);
                if (!json_is_object(tv)) {
                    tv = json_object();
                    TORII_ENSURE(tv != NULL, TORII_ENOMEM);
                    TORII_ENSURE(json_object_setn_new(it.t, key, klen, tv) == 0, TORII_ENOMEM);
                }
                if (n == cap) {
                    cap *= 2;
                    stack = torii_xrealloc(stack, cap * sizeof(*stack));
                }
                stack[n++] = (struct jp_merge_item){tv, pv};
                continue;
            }
            TORII_ENSURE(json_object_setn_new(it.t, key, klen, json_deep_copy(pv)) == 0,
                         TORII_ENOMEM);
        }
    }
    TORII_TRY(jp_check_depth(work, "patched document", eb));
    *out = work;
    work = NULL;
out:
    free(stack);
    json_decref(work);
    if (rc == TORII_ENOMEM) {
        (void)torii_errf(eb, rc, "merge patch: out of memory");
    }
    return rc;
}
