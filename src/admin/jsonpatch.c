/* jsonpatch.c - RFC 6902 JSON Patch, RFC 6901 JSON Pointer and RFC 7386 JSON Merge Patch.
 * Every walk over peer data uses an explicit heap stack instead of recursion (misc-no-recursion);
 * depth is bounded before jansson's recursive helpers (json_deep_copy) see a value. */
#include "jsonpatch.h"

#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "torii/err.h"
#include "torii/mem.h"

/* jansson's object iterator API takes a non-const json_t * even for read-only walks; this is
 * the single place where constness is dropped, and the walkers below never mutate through it. */
static json_t *jp_unconst(const json_t *v)
{
    return (json_t *)(uintptr_t)v;
}

/* ---- an explicit stack (replaces recursion over peer data) ---- */

struct jp_stack {
    unsigned char *items;
    size_t n;
    size_t cap;
    size_t size; /* bytes per item */
};

static void jp_stack_init(struct jp_stack *s, size_t size)
{
    s->items = NULL;
    s->n = 0;
    s->cap = 0;
    s->size = size;
}

static void jp_stack_push(struct jp_stack *s, const void *item)
{
    if (s->n == s->cap) {
        s->cap = s->cap == 0 ? 16 : s->cap * 2;
        s->items = torii_xrealloc(s->items, s->cap * s->size);
    }
    memcpy(s->items + s->n * s->size, item, s->size);
    s->n++;
}

static int jp_stack_pop(struct jp_stack *s, void *out)
{
    if (s->n == 0) {
        return 0;
    }
    s->n--;
    memcpy(out, s->items + s->n * s->size, s->size);
    return 1;
}

static void jp_stack_clear(struct jp_stack *s)
{
    TORII_FREE(s->items);
    s->n = 0;
    s->cap = 0;
}

static int jp_is_container(const json_t *v)
{
    return json_is_object(v) || json_is_array(v);
}

static size_t jp_container_size(const json_t *v)
{
    return json_is_object(v) ? json_object_size(v) : json_array_size(v);
}

/* ---- depth and equality (iterative) ---- */

struct jp_depth_item {
    const json_t *v;
    size_t depth;
};

static void jp_depth_push_child(struct jp_stack *s, const json_t *child, size_t depth)
{
    if (jp_is_container(child)) {
        struct jp_depth_item it = {child, depth};
        jp_stack_push(s, &it);
    }
}

static void jp_depth_push_children(struct jp_stack *s, const struct jp_depth_item *it)
{
    if (json_is_object(it->v)) {
        for (void *iter = json_object_iter(jp_unconst(it->v)); iter != NULL;
             iter = json_object_iter_next(jp_unconst(it->v), iter)) {
            jp_depth_push_child(s, json_object_iter_value(iter), it->depth + 1);
        }
        return;
    }
    for (size_t i = 0; i < json_array_size(it->v); i++) {
        jp_depth_push_child(s, json_array_get(it->v, i), it->depth + 1);
    }
}

int admin_json_depth(const json_t *v, size_t *out)
{
    struct jp_stack stack;
    struct jp_depth_item it;
    size_t max = 0;

    jp_stack_init(&stack, sizeof(it));
    jp_depth_push_child(&stack, v, 1);
    while (jp_stack_pop(&stack, &it)) {
        if (it.depth > max) {
            max = it.depth;
        }
        jp_depth_push_children(&stack, &it);
    }
    jp_stack_clear(&stack);
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
        return la == json_string_length(b)
               && memcmp(json_string_value(a), json_string_value(b), la) == 0;
    }
    return 1; /* true, false, null */
}

/* Compare one pair; when both are containers of the same kind and size, push their children
 * as new pairs (a member missing from b is pushed as (x, NULL), which compares unequal). */
static int jp_equal_step(struct jp_stack *s, const struct jp_pair *p)
{
    if (p->a == NULL || p->b == NULL) {
        return p->a == p->b;
    }
    if (!jp_is_container(p->a)) {
        return jp_scalar_equal(p->a, p->b);
    }
    if (json_typeof(p->a) != json_typeof(p->b)
        || jp_container_size(p->a) != jp_container_size(p->b)) {
        return 0;
    }
    if (json_is_object(p->a)) {
        for (void *iter = json_object_iter(jp_unconst(p->a)); iter != NULL;
             iter = json_object_iter_next(jp_unconst(p->a), iter)) {
            struct jp_pair c = {
                json_object_iter_value(iter),
                json_object_getn(p->b, json_object_iter_key(iter), json_object_iter_key_len(iter))};
            jp_stack_push(s, &c);
        }
        return 1;
    }
    for (size_t i = 0; i < json_array_size(p->a); i++) {
        struct jp_pair c = {json_array_get(p->a, i), json_array_get(p->b, i)};
        jp_stack_push(s, &c);
    }
    return 1;
}

int admin_json_equal(const json_t *a, const json_t *b)
{
    struct jp_stack stack;
    struct jp_pair p = {a, b};
    int equal = 1;

    jp_stack_init(&stack, sizeof(p));
    jp_stack_push(&stack, &p);
    while (equal && jp_stack_pop(&stack, &p)) {
        equal = jp_equal_step(&stack, &p);
    }
    jp_stack_clear(&stack);
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

/* ---- size and depth of a value, bounded ---- */

/* Compact-JSON size of an integer. */
static size_t jp_int_bytes(json_int_t i)
{
    size_t n = i < 0 ? 2 : 1;
    json_int_t q = i / 10;

    while (q != 0) {
        n++;
        q /= 10;
    }
    return n;
}

/* Compact-JSON size of a scalar (strings counted unescaped), or of a container's brackets. */
static size_t jp_node_bytes(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_length(v) + 2;
    case JSON_INTEGER:
        return jp_int_bytes(json_integer_value(v));
    case JSON_REAL:
        return 24;
    case JSON_FALSE:
        return 5;
    case JSON_TRUE:
    case JSON_NULL:
        return 4;
    default:
        return 2;
    }
}

struct jp_measure {
    size_t bytes; /* about the compact JSON size */
    size_t depth; /* as admin_json_depth */
};

/* Account for one node (at depth `depth` when a container) and queue its children. */
static void jp_measure_node(struct jp_stack *s, const struct jp_depth_item *it,
                            struct jp_measure *m)
{
    m->bytes += jp_node_bytes(it->v);
    if (!jp_is_container(it->v)) {
        return;
    }
    if (it->depth > m->depth) {
        m->depth = it->depth;
    }
    if (json_is_object(it->v)) {
        for (void *iter = json_object_iter(jp_unconst(it->v)); iter != NULL;
             iter = json_object_iter_next(jp_unconst(it->v), iter)) {
            struct jp_depth_item c = {json_object_iter_value(iter), it->depth + 1};
            m->bytes += json_object_iter_key_len(iter) + 4; /* "key": and a comma */
            jp_stack_push(s, &c);
        }
        return;
    }
    for (size_t i = 0; i < json_array_size(it->v); i++) {
        struct jp_depth_item c = {json_array_get(it->v, i), it->depth + 1};
        m->bytes += 1; /* a comma */
        jp_stack_push(s, &c);
    }
}

/* Size and depth of v without recursion. Stops as soon as the size passes limit: TORII_ETOOBIG
 * (m->bytes is then only known to exceed limit). The walk never visits more than about limit
 * bytes worth of nodes, so measuring costs no more than the bound allows. */
static int jp_measure(const json_t *v, size_t limit, struct jp_measure *m)
{
    struct jp_stack stack;
    struct jp_depth_item it = {v, 1};
    int rc = TORII_OK;

    memset(m, 0, sizeof(*m));
    jp_stack_init(&stack, sizeof(it));
    jp_stack_push(&stack, &it);
    while (jp_stack_pop(&stack, &it)) {
        jp_measure_node(&stack, &it, m);
        if (m->bytes > limit) {
            rc = TORII_ETOOBIG;
            break;
        }
    }
    jp_stack_clear(&stack);
    return rc;
}

/* The work a patch may do: the working document stays within max_bytes (bytes is an upper
 * bound of its size: removals are not subtracted, the document is measured again when the
 * bound would pass the limit) and every byte measured counts towards max_work, so a patch
 * costs at most a few times the size limit whatever its operations. */
struct jp_budget {
    size_t max_bytes;
    size_t bytes;
    size_t work;
    size_t max_work;
};

#define JP_WORK_FACTOR 8

static int jp_budget_init(struct jp_budget *b, const json_t *doc, size_t max_bytes)
{
    struct jp_measure m;

    b->max_bytes = max_bytes != 0 ? max_bytes : ADMIN_JSON_MAX_BYTES;
    b->max_work =
        b->max_bytes > SIZE_MAX / JP_WORK_FACTOR ? SIZE_MAX : b->max_bytes * JP_WORK_FACTOR;
    (void)jp_measure(doc, SIZE_MAX, &m); /* the stored document: already bounded */
    b->bytes = m.bytes;
    b->work = m.bytes;
    return TORII_OK;
}

/* Measure v (at most limit bytes) and charge the walk to the budget. */
static int jp_budget_measure(struct jp_budget *b, const json_t *v, size_t limit,
                             struct jp_measure *m, const char **why)
{
    int rc = jp_measure(v, limit, m);

    b->work += m->bytes;
    if (b->work > b->max_work) {
        *why = "the patch does too much work (copies and moves of large values)";
        return TORII_ETOOBIG;
    }
    if (rc != TORII_OK) {
        *why = "the patched document would be larger than the admin body limit";
    }
    return rc;
}

#define JP_STR2(x) #x
#define JP_STR(x)  JP_STR2(x)

/* Before v (not copied yet) is added at a pointer of n tokens of doc: the result's depth and
 * size must stay within the bounds. TORII_EINVAL (depth), TORII_ETOOBIG (size, work). */
static int jp_budget_add(struct jp_budget *b, const json_t *doc, const json_t *v, size_t n,
                         const char **why)
{
    struct jp_measure m;
    struct jp_measure d;
    int rc = jp_budget_measure(b, v, b->max_bytes, &m, why);

    if (rc != TORII_OK) {
        return rc;
    }
    if (n + m.depth > ADMIN_JSON_MAX_DEPTH) {
        *why = "the patched document would be nested deeper than " JP_STR(
            ADMIN_JSON_MAX_DEPTH) " levels";
        return TORII_EINVAL;
    }
    if (n == 0) {
        b->bytes = m.bytes; /* the whole document is replaced */
        return TORII_OK;
    }
    if (b->bytes + m.bytes > b->max_bytes) {
        /* The bound is stale when values were removed: measure the document itself. */
        rc = jp_budget_measure(b, doc, b->max_bytes - m.bytes, &d, why);
        if (rc != TORII_OK) {
            return rc;
        }
        b->bytes = d.bytes;
    }
    b->bytes += m.bytes;
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
            *why =
                jp_is_dash(t) ? "index '-' refers to a nonexistent element" : "invalid array index";
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
        if (a->tok[i].len != b->tok[i].len
            || memcmp(a->tok[i].s, b->tok[i].s, a->tok[i].len) != 0) {
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

/* One decoded operation; the strings and value borrow from the patch. */
struct jp_op {
    size_t idx;
    enum jp_opcode code;
    const char *name;
    const char *path_s;
    const char *from_s;  /* move and copy only */
    const json_t *value; /* add, replace and test only */
    struct jp_ptr path;
    struct jp_ptr from;
    const char *why;
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
static int jp_fail(struct torii_errbuf *eb, int rc, const struct jp_op *op)
{
    if (rc == TORII_ENOMEM) {
        return torii_errf(eb, rc, "patch operation %zu: out of memory", op->idx);
    }
    rc = rc == TORII_ETOOBIG ? TORII_ETOOBIG : TORII_EINVAL;
    if (op->from_s != NULL) {
        return torii_errf(eb, rc, "patch operation %zu (%s %.80s from %.80s): %s", op->idx,
                          op->name, op->path_s, op->from_s, op->why);
    }
    return torii_errf(eb, rc, "patch operation %zu (%s %.80s): %s", op->idx, op->name, op->path_s,
                      op->why);
}

/* Validate the members of operation object `o` (RFC 6902 section 4) into op. Errors before
 * "path" is known are reported here; later ones are left in op->why for jp_fail. */
static int jp_op_decode(const json_t *o, struct jp_op *op, struct torii_errbuf *eb)
{
    const json_t *jop = json_object_get(o, "op");
    const json_t *jpath = json_object_get(o, "path");
    const json_t *jfrom = json_object_get(o, "from");

    if (!json_is_object(o)) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: not a JSON object", op->idx);
    }
    if (!json_is_string(jop)) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: missing or non-string \"op\"",
                          op->idx);
    }
    op->name = json_string_value(jop);
    if (jp_opcode_parse(op->name, &op->code) != TORII_OK) {
        return torii_errf(eb, TORII_EINVAL, "patch operation %zu: unknown op \"%.40s\"", op->idx,
                          op->name);
    }
    if (!json_is_string(jpath)) {
        return torii_errf(eb, TORII_EINVAL,
                          "patch operation %zu (%s): missing or non-string \"path\"", op->idx,
                          op->name);
    }
    op->path_s = json_string_value(jpath);
    if (op->code == JP_MOVE || op->code == JP_COPY) {
        if (!json_is_string(jfrom)) {
            op->why = "missing or non-string \"from\"";
            return jp_fail(eb, TORII_EINVAL, op);
        }
        op->from_s = json_string_value(jfrom);
        if (jp_ptr_parse(op->from_s, json_string_length(jfrom), &op->from, &op->why) != TORII_OK) {
            return jp_fail(eb, TORII_EINVAL, op);
        }
    }
    if (op->code == JP_ADD || op->code == JP_REPLACE || op->code == JP_TEST) {
        op->value = json_object_get(o, "value");
        if (op->value == NULL) {
            op->why = "missing \"value\"";
            return jp_fail(eb, TORII_EINVAL, op);
        }
    }
    if (jp_ptr_parse(op->path_s, json_string_length(jpath), &op->path, &op->why) != TORII_OK) {
        return jp_fail(eb, TORII_EINVAL, op);
    }
    return TORII_OK;
}

/* RFC 6902 section 4.4: remove then add; "from" must not be a proper prefix of "path". A move
 * deeper into the document is checked for depth first (its size does not change). */
static int jp_move(json_t **doc, struct jp_op *op, struct jp_budget *b)
{
    json_t *v = NULL;
    struct jp_measure m;
    int rc = TORII_OK;

    if (jp_is_proper_prefix(&op->from, &op->path)) {
        op->why = "cannot move a value into one of its own children";
        return TORII_EINVAL;
    }
    v = jp_get(*doc, &op->from, &op->why);
    if (v == NULL) {
        return TORII_EINVAL;
    }
    if (jp_ptr_equal(&op->from, &op->path)) {
        return TORII_OK; /* moving a value onto itself changes nothing */
    }
    if (op->path.n > op->from.n) {
        TORII_TRY(jp_budget_measure(b, v, SIZE_MAX, &m, &op->why));
        if (op->path.n + m.depth > ADMIN_JSON_MAX_DEPTH) {
            op->why = "the patched document would be nested deeper than " JP_STR(
                ADMIN_JSON_MAX_DEPTH) " levels";
            return TORII_EINVAL;
        }
    }
    /* from is not "" here: "" is a prefix of every other pointer. */
    json_incref(v);
    rc = jp_remove(*doc, &op->from, &op->why);
    if (rc != TORII_OK) {
        json_decref(v);
        return rc;
    }
    return jp_add(doc, &op->path, v, &op->why);
out:
    return rc;
}

static int jp_test(json_t *doc, struct jp_op *op)
{
    const json_t *cur = jp_get(doc, &op->path, &op->why);

    if (cur == NULL) {
        return TORII_EINVAL;
    }
    if (!admin_json_equal(cur, op->value)) {
        op->why = "test failed: value differs";
        return TORII_EINVAL;
    }
    return TORII_OK;
}

/* Values taken from the patch or copied within the document are deep copies, so later
 * operations never mutate (or alias) the patch or another part of the document. Each is
 * measured against the budget before it is copied. */
static int jp_op_exec(json_t **doc, struct jp_op *op, struct jp_budget *b)
{
    const json_t *src = op->value;
    json_t *v = NULL;
    int rc = TORII_OK;

    switch (op->code) {
    case JP_REMOVE:
        return jp_remove(*doc, &op->path, &op->why);
    case JP_MOVE:
        return jp_move(doc, op, b);
    case JP_TEST:
        return jp_test(*doc, op);
    case JP_COPY:
        src = jp_get(*doc, &op->from, &op->why);
        if (src == NULL) {
            return TORII_EINVAL;
        }
        break;
    case JP_ADD:
    case JP_REPLACE:
        break;
    default:
        op->why = "unknown op";
        return TORII_EINVAL;
    }
    TORII_TRY(jp_budget_add(b, *doc, src, op->path.n, &op->why));
    v = json_deep_copy(src);
    TORII_ENSURE(v != NULL, TORII_ENOMEM);
    rc = op->code == JP_REPLACE ? jp_replace(doc, &op->path, v, &op->why)
                                : jp_add(doc, &op->path, v, &op->why);
out:
    return rc;
}

static int jp_apply_one(json_t **doc, const json_t *o, size_t idx, struct jp_budget *b,
                        struct torii_errbuf *eb)
{
    struct jp_op op;
    int rc = TORII_OK;

    memset(&op, 0, sizeof(op));
    op.idx = idx;
    op.name = "?";
    op.path_s = "?";
    op.why = "invalid operation";
    rc = jp_op_decode(o, &op, eb);
    if (rc == TORII_OK) {
        rc = jp_op_exec(doc, &op, b);
        if (rc != TORII_OK) {
            rc = jp_fail(eb, rc, &op);
        }
    }
    jp_ptr_clear(&op.path);
    jp_ptr_clear(&op.from);
    return rc;
}

static int jp_check_inputs(const json_t *doc, const json_t *patch, const char *what,
                           struct torii_errbuf *eb)
{
    int rc = jp_check_depth(doc, "document", eb);

    return rc != TORII_OK ? rc : jp_check_depth(patch, what, eb);
}

int admin_jsonpatch_apply(const json_t *doc, const json_t *patch, size_t max_bytes, json_t **out,
                          struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *work = NULL;
    struct jp_budget budget;

    TORII_ENSURE(doc != NULL && out != NULL, TORII_EINVAL);
    if (!json_is_array(patch)) {
        rc = torii_errf(eb, TORII_EINVAL, "JSON Patch must be an array of operations");
        goto out;
    }
    TORII_TRY(jp_check_inputs(doc, patch, "patch", eb));
    TORII_TRY(jp_budget_init(&budget, doc, max_bytes));
    work = json_deep_copy(doc);
    TORII_ENSURE(work != NULL, TORII_ENOMEM);
    for (size_t i = 0; i < json_array_size(patch) && rc == TORII_OK; i++) {
        rc = jp_apply_one(&work, json_array_get(patch, i), i, &budget, eb);
    }
    TORII_TRY(rc);
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

/* Merge one member of a patch object into t; nested objects are queued on s. */
static int jp_merge_member(struct jp_stack *s, json_t *t, const char *key, size_t klen,
                           const json_t *pv)
{
    json_t *tv = NULL;

    if (json_is_null(pv)) {
        (void)json_object_deln(t, key, klen); /* absent is fine */
        return TORII_OK;
    }
    if (!json_is_object(pv)) {
        return json_object_setn_new(t, key, klen, json_deep_copy(pv)) == 0 ? TORII_OK
                                                                           : TORII_ENOMEM;
    }
    tv = json_object_getn(t, key, klen);
    if (!json_is_object(tv)) {
        tv = json_object();
        if (json_object_setn_new(t, key, klen, tv) != 0) {
            return TORII_ENOMEM;
        }
    }
    {
        struct jp_merge_item it = {tv, pv};
        jp_stack_push(s, &it);
    }
    return TORII_OK;
}

static int jp_merge_object(struct jp_stack *s, const struct jp_merge_item *it)
{
    int rc = TORII_OK;

    for (void *iter = json_object_iter(jp_unconst(it->p)); iter != NULL && rc == TORII_OK;
         iter = json_object_iter_next(jp_unconst(it->p), iter)) {
        rc = jp_merge_member(s, it->t, json_object_iter_key(iter), json_object_iter_key_len(iter),
                             json_object_iter_value(iter));
    }
    return rc;
}

/* The merged result is at most doc plus patch (each patch member is visited once): measured
 * once at the end against the size bound. */
static int jp_check_size(const json_t *v, size_t max_bytes, struct torii_errbuf *eb)
{
    struct jp_measure m;
    size_t max = max_bytes != 0 ? max_bytes : ADMIN_JSON_MAX_BYTES;

    if (jp_measure(v, max, &m) != TORII_OK) {
        return torii_errf(eb, TORII_ETOOBIG,
                          "patched document would be larger than the admin body limit (%zu bytes)",
                          max);
    }
    return TORII_OK;
}

/* Merge patch into a copy of doc (*work, the caller's even on failure), iteratively. */
static int jp_merge_run(const json_t *doc, const json_t *patch, json_t **work)
{
    struct jp_stack stack;
    struct jp_merge_item it;
    int rc = TORII_OK;

    jp_stack_init(&stack, sizeof(it));
    if (!json_is_object(patch)) {
        /* RFC 7386 section 2: a non-object patch replaces the target wholesale. */
        *work = json_deep_copy(patch);
    } else {
        *work = json_is_object(doc) ? json_deep_copy(doc) : json_object();
        it = (struct jp_merge_item){*work, patch};
        jp_stack_push(&stack, &it);
    }
    if (*work == NULL) {
        rc = TORII_ENOMEM;
    }
    while (rc == TORII_OK && jp_stack_pop(&stack, &it)) {
        rc = jp_merge_object(&stack, &it);
    }
    jp_stack_clear(&stack);
    return rc;
}

int admin_mergepatch_apply(const json_t *doc, const json_t *patch, size_t max_bytes, json_t **out,
                           struct torii_errbuf *eb)
{
    int rc = TORII_OK;
    json_t *work = NULL;

    TORII_ENSURE(doc != NULL && patch != NULL && out != NULL, TORII_EINVAL);
    TORII_TRY(jp_check_inputs(doc, patch, "merge patch", eb));
    TORII_TRY(jp_merge_run(doc, patch, &work));
    TORII_TRY(jp_check_depth(work, "patched document", eb));
    TORII_TRY(jp_check_size(work, max_bytes, eb));
    *out = work;
    work = NULL;
out:
    json_decref(work);
    if (rc == TORII_ENOMEM) {
        (void)torii_errf(eb, rc, "merge patch: out of memory");
    }
    return rc;
}
