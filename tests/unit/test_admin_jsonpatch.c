/* test_admin_jsonpatch.c - RFC 6902 JSON Patch / RFC 6901 pointers / RFC 7386 merge patch: a corpus
 * of valid patches (with the expected document) and invalid ones (with the expected error text),
 * plus atomicity, depth limits and equality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsonpatch.h"
#include "torii/err.h"
#include "torii/mem.h"

struct patch_case {
    const char *doc;
    const char *patch;
    const char *expect; /* NULL when the patch must fail */
    const char *err;    /* substring of the error message when it fails */
};

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (v == NULL) {
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    }
    return v;
}

static void run_case(const struct patch_case *c, int merge)
{
    json_t *doc = load(c->doc);
    json_t *patch = load(c->patch);
    json_t *before = json_deep_copy(doc);
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};
    int rc = merge ? admin_mergepatch_apply(doc, patch, 0, &out, &eb)
                   : admin_jsonpatch_apply(doc, patch, 0, &out, &eb);

    if (c->expect != NULL) {
        json_t *want = load(c->expect);
        if (rc != TORII_OK) {
            fail_msg("patch %s on %s failed: %s", c->patch, c->doc, eb.msg);
        }
        if (!admin_json_equal(out, want)) {
            char *got = json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT);
            print_error("got %s want %s\n", got, c->expect);
            free(got);
            fail_msg("patch %s on %s: unexpected result", c->patch, c->doc);
        }
        json_decref(want);
    } else {
        if (rc != TORII_EINVAL) {
            fail_msg("patch %s on %s: expected TORII_EINVAL, got %d", c->patch, c->doc, rc);
        }
        assert_null(out);
        if (strstr(eb.msg, c->err) == NULL) {
            fail_msg("patch %s: error \"%s\" lacks \"%s\"", c->patch, eb.msg, c->err);
        }
    }
    /* The input document is never modified, whatever the outcome. */
    assert_true(admin_json_equal(doc, before));
    json_decref(out);
    json_decref(before);
    json_decref(patch);
    json_decref(doc);
}

/* ---- valid JSON Patch corpus (RFC 6902 appendix A and more) ---- */

static const struct patch_case valid_patches[] = {
    /* A.1 add an object member */
    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
     "{\"baz\":\"qux\",\"foo\":\"bar\"}", NULL},
    /* A.2 add an array element */
    {"{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
     "{\"foo\":[\"bar\",\"qux\",\"baz\"]}", NULL},
    /* A.3 remove an object member */
    {"{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
     "{\"foo\":\"bar\"}", NULL},
    /* A.4 remove an array element */
    {"{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
     "{\"foo\":[\"bar\",\"baz\"]}", NULL},
    /* A.5 replace a value */
    {"{\"baz\":\"qux\",\"foo\":\"bar\"}",
     "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
     "{\"baz\":\"boo\",\"foo\":\"bar\"}", NULL},
    /* A.6 move a value */
    {"{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
     "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
     "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}", NULL},
    /* A.7 move an array element */
    {"{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
     "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
     "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}", NULL},
    /* A.8 test success */
    {"{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
     "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
     "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
     "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}", NULL},
    /* A.10 add a nested member object */
    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
     "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}", NULL},
    /* A.11 unrecognized members of an operation are ignored */
    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
     "{\"foo\":\"bar\",\"baz\":\"qux\"}", NULL},
    /* A.14 ~ escapes */
    {"{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
     "{\"/\":9,\"~1\":10}", NULL},
    {"{\"/\":9,\"~1\":10}", "[{\"op\":\"replace\",\"path\":\"/~1\",\"value\":1}]",
     "{\"/\":1,\"~1\":10}", NULL},
    /* A.16 add an array value */
    {"{\"foo\":[\"bar\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
     "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}", NULL},
    /* empty patch */
    {"{\"a\":1}", "[]", "{\"a\":1}", NULL},
    /* add replaces an existing member */
    {"{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":2}]", "{\"a\":2}", NULL},
    /* add with null value */
    {"{}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":null}]", "{\"a\":null}", NULL},
    /* add at the end index (== size) */
    {"[1,2]", "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]", "[1,2,3]", NULL},
    /* add at index 0 */
    {"[1,2]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]", "[0,1,2]", NULL},
    /* empty key */
    {"{}", "[{\"op\":\"add\",\"path\":\"/\",\"value\":1}]", "{\"\":1}", NULL},
    /* whole-document add and replace */
    {"{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":[1]}]", "[1]", NULL},
    {"{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"b\":2}}]", "{\"b\":2}", NULL},
    /* copy, then mutate the copy: the source must not change */
    {"{\"a\":{\"x\":1}}",
     "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/b\"},"
     "{\"op\":\"add\",\"path\":\"/b/y\",\"value\":2}]",
     "{\"a\":{\"x\":1},\"b\":{\"x\":1,\"y\":2}}", NULL},
    /* a value added from the patch and then mutated */
    {"{}",
     "[{\"op\":\"add\",\"path\":\"/a\",\"value\":{\"x\":1}},"
     "{\"op\":\"add\",\"path\":\"/a/y\",\"value\":2},"
     "{\"op\":\"add\",\"path\":\"/b\",\"value\":{\"x\":1}}]",
     "{\"a\":{\"x\":1,\"y\":2},\"b\":{\"x\":1}}", NULL},
    /* move onto itself is a no-op */
    {"{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]", "{\"a\":1}", NULL},
    /* move up to the parent level */
    {"{\"a\":{\"b\":{\"c\":1}}}", "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"/a\"}]",
     "{\"a\":{\"c\":1}}", NULL},
    /* test: numbers compare by value, objects ignore member order */
    {"{\"n\":1,\"o\":{\"a\":1,\"b\":[true,null]}}",
     "[{\"op\":\"test\",\"path\":\"/n\",\"value\":1.0},"
     "{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"b\":[true,null],\"a\":1}},"
     "{\"op\":\"test\",\"path\":\"\",\"value\":{\"o\":{\"b\":[true,null],\"a\":1},\"n\":1}}]",
     "{\"n\":1,\"o\":{\"a\":1,\"b\":[true,null]}}", NULL},
    /* a replace of the tags array followed by an append, as an admin would */
    {"{\"id\":\"c1\",\"tags\":[]}",
     "[{\"op\":\"replace\",\"path\":\"/tags\",\"value\":[\"a\"]},"
     "{\"op\":\"add\",\"path\":\"/tags/-\",\"value\":\"b\"}]",
     "{\"id\":\"c1\",\"tags\":[\"a\",\"b\"]}", NULL},
};

/* ---- invalid JSON Patch corpus ---- */

static const struct patch_case invalid_patches[] = {
    /* not an array */
    {"{}", "{\"op\":\"add\",\"path\":\"/a\",\"value\":1}", NULL, "must be an array"},
    {"{}", "\"add\"", NULL, "must be an array"},
    {"{}", "null", NULL, "must be an array"},
    /* operation not an object */
    {"{}", "[1]", NULL, "patch operation 0: not a JSON object"},
    /* bad or missing op */
    {"{}", "[{\"path\":\"/a\",\"value\":1}]", NULL, "missing or non-string \"op\""},
    {"{}", "[{\"op\":7,\"path\":\"/a\"}]", NULL, "missing or non-string \"op\""},
    {"{}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]", NULL, "unknown op \"frobnicate\""},
    {"{}", "[{\"op\":\"ADD\",\"path\":\"/a\",\"value\":1}]", NULL, "unknown op"},
    /* missing members */
    {"{}", "[{\"op\":\"add\",\"value\":1}]", NULL, "missing or non-string \"path\""},
    {"{}", "[{\"op\":\"add\",\"path\":5,\"value\":1}]", NULL, "non-string \"path\""},
    {"{}", "[{\"op\":\"add\",\"path\":\"/a\"}]", NULL, "missing \"value\""},
    {"{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/a\"}]", NULL, "missing \"value\""},
    {"{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\"}]", NULL, "missing \"value\""},
    {"{\"a\":1}", "[{\"op\":\"move\",\"path\":\"/b\"}]", NULL, "\"from\""},
    {"{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\",\"from\":1}]", NULL, "\"from\""},
    /* invalid pointers */
    {"{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"a\"}]", NULL, "start with '/'"},
    {"{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/a~2\"}]", NULL, "invalid escape"},
    {"{\"a~\":1}", "[{\"op\":\"remove\",\"path\":\"/a~\"}]", NULL, "invalid escape"},
    {"{\"a\":1}", "[{\"op\":\"copy\",\"from\":\"a\",\"path\":\"/b\"}]", NULL, "start with '/'"},
    /* missing targets */
    {"{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/b\"}]", NULL, "path not found"},
    {"{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":1}]", NULL, "path not found"},
    {"{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/b/c\",\"value\":1}]", NULL, "path not found"},
    {"{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a/c\",\"value\":1}]", NULL,
     "not an object or array"},
    {"{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/x\",\"value\":1}]", NULL, "path not found"},
    {"{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/x\",\"path\":\"/y\"}]", NULL, "path not found"},
    {"{\"a\":1}", "[{\"op\":\"copy\",\"from\":\"/x\",\"path\":\"/y\"}]", NULL, "path not found"},
    {"{\"a\":{\"b\":1}}", "[{\"op\":\"remove\",\"path\":\"/a/b/c\"}]", NULL,
     "not an object or array"},
    {"{\"a\":{\"b\":1}}", "[{\"op\":\"add\",\"path\":\"/a/b/c/d\",\"value\":1}]", NULL,
     "traverses a scalar"},
    /* test failure */
    {"{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":2}]", NULL, "test failed"},
    {"{\"a\":\"1\"}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":1}]", NULL, "test failed"},
    {"{\"a\":[1,2]}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[2,1]}]", NULL, "test failed"},
    {"{\"a\":{\"x\":1}}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":{\"x\":1,\"y\":2}}]", NULL,
     "test failed"},
    /* move into its own child */
    {"{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/c\"}]", NULL,
     "own children"},
    {"{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"\",\"path\":\"/a/c\"}]", NULL,
     "own children"},
    /* array index rules */
    {"[1,2]", "[{\"op\":\"add\",\"path\":\"/3\",\"value\":9}]", NULL, "out of range"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/2\"}]", NULL, "out of range"},
    {"[1,2]", "[{\"op\":\"replace\",\"path\":\"/5\",\"value\":0}]", NULL, "out of range"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/01\"}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"add\",\"path\":\"/01\",\"value\":0}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/-1\"}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/+1\"}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/1e0\"}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/\"}]", NULL, "invalid array index"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/-\"}]", NULL, "nonexistent"},
    {"[1,2]", "[{\"op\":\"replace\",\"path\":\"/-\",\"value\":0}]", NULL, "nonexistent"},
    {"[1,2]", "[{\"op\":\"remove\",\"path\":\"/99999999999999999999999\"}]", NULL,
     "invalid array index"},
    /* the whole document cannot be removed */
    {"{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]", NULL, "whole document"},
    /* error names the failing operation's index and path; earlier ops are rolled back */
    {"{\"a\":1}",
     "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2},"
     "{\"op\":\"remove\",\"path\":\"/zz\"}]",
     NULL, "patch operation 1 (remove /zz)"},
};

static void test_jsonpatch_valid_corpus_applies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_patches) / sizeof(valid_patches[0]); i++) {
        run_case(&valid_patches[i], 0);
    }
}

static void test_jsonpatch_invalid_corpus_rejected(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_patches) / sizeof(invalid_patches[0]); i++) {
        run_case(&invalid_patches[i], 0);
    }
}

static void test_jsonpatch_failure_is_atomic(void **state)
{
    json_t *doc = load("{\"a\":1,\"arr\":[1,2,3]}");
    json_t *patch = load("[{\"op\":\"remove\",\"path\":\"/a\"},"
                         "{\"op\":\"add\",\"path\":\"/arr/-\",\"value\":4},"
                         "{\"op\":\"test\",\"path\":\"/arr/3\",\"value\":5}]");
    json_t *want = load("{\"a\":1,\"arr\":[1,2,3]}");
    json_t *out = (json_t *)(uintptr_t)0x1;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, &eb), TORII_EINVAL);
    /* out-params are written only on success */
    assert_ptr_equal(out, (json_t *)(uintptr_t)0x1);
    assert_non_null(strstr(eb.msg, "patch operation 2 (test /arr/3)"));
    assert_true(admin_json_equal(doc, want));
    json_decref(want);
    json_decref(patch);
    json_decref(doc);
}

static void test_jsonpatch_error_message_names_move_from(void **state)
{
    json_t *doc = load("{\"a\":{}}");
    json_t *patch = load("[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b\"}]");
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, &eb), TORII_EINVAL);
    assert_string_equal(eb.msg, "patch operation 0 (move /a/b from /a): cannot move a value into "
                                "one of its own children");
    json_decref(patch);
    json_decref(doc);
}

static void test_jsonpatch_null_eb_is_accepted(void **state)
{
    json_t *doc = load("{}");
    json_t *patch = load("[{\"op\":\"remove\",\"path\":\"/x\"}]");
    json_t *out = NULL;

    (void)state;
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, NULL), TORII_EINVAL);
    assert_null(out);
    json_decref(patch);
    json_decref(doc);
}

static void test_jsonpatch_strings_with_nul_bytes(void **state)
{
    json_t *doc = load("{\"a\":\"x\\u0000y\"}");
    json_t *ok = load("[{\"op\":\"test\",\"path\":\"/a\",\"value\":\"x\\u0000y\"}]");
    json_t *bad = load("[{\"op\":\"test\",\"path\":\"/a\",\"value\":\"x\"}]");
    json_t *out = NULL;

    (void)state;
    assert_int_equal(admin_jsonpatch_apply(doc, ok, 0, &out, NULL), TORII_OK);
    json_decref(out);
    out = NULL;
    assert_int_equal(admin_jsonpatch_apply(doc, bad, 0, &out, NULL), TORII_EINVAL);
    json_decref(bad);
    json_decref(ok);
    json_decref(doc);
}

/* Build [[[...]]] nested n levels deep without recursion. */
static json_t *nested_arrays(size_t n)
{
    json_t *v = json_array();
    for (size_t i = 1; i < n; i++) {
        json_t *outer = json_array();
        assert_int_equal(json_array_append_new(outer, v), 0);
        v = outer;
    }
    return v;
}

static void test_jsonpatch_depth_limits(void **state)
{
    json_t *ok = nested_arrays(ADMIN_JSON_MAX_DEPTH);
    json_t *deep = nested_arrays(ADMIN_JSON_MAX_DEPTH + 1);
    json_t *mid = nested_arrays(ADMIN_JSON_MAX_DEPTH - 2);
    json_t *scalar = json_integer(0);
    json_t *empty = load("[]");
    json_t *obj = load("{}");
    json_t *doc = load("{\"a\":{\"b\":{}}}");
    json_t *patch = json_array();
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};
    size_t depth = 99;

    (void)state;
    assert_int_equal(admin_json_depth(ok, &depth), TORII_OK);
    assert_int_equal(depth, ADMIN_JSON_MAX_DEPTH);
    assert_int_equal(admin_json_depth(scalar, &depth), TORII_OK);
    assert_int_equal(depth, 0);
    /* a document at the limit is fine */
    assert_int_equal(admin_jsonpatch_apply(ok, empty, 0, &out, &eb), TORII_OK);
    json_decref(out);
    out = NULL;
    /* too-deep document */
    assert_int_equal(admin_jsonpatch_apply(deep, empty, 0, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "document is nested deeper than 64"));
    assert_int_equal(admin_mergepatch_apply(deep, obj, 0, &out, &eb), TORII_EINVAL);
    /* a patch whose value is too deep */
    assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:O}", "op", "add", "path",
                                                            "/x", "value", deep)),
                     0);
    assert_int_equal(admin_jsonpatch_apply(obj, patch, 0, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "patch is nested deeper"));
    json_decref(patch);
    /* document and patch each within bounds (3 and 64), the result is not (3 + 62) */
    patch = json_array();
    assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:O}", "op", "add", "path",
                                                            "/a/b/c", "value", mid)),
                     0);
    assert_int_equal(admin_json_depth(patch, &depth), TORII_OK);
    assert_int_equal(depth, ADMIN_JSON_MAX_DEPTH);
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, &eb), TORII_EINVAL);
    assert_non_null(strstr(eb.msg, "patch operation 0 (add /a/b/c)"));
    assert_non_null(strstr(eb.msg, "patched document would be nested deeper than 64"));
    assert_null(out);
    json_decref(patch);
    json_decref(doc);
    json_decref(obj);
    json_decref(empty);
    json_decref(scalar);
    json_decref(mid);
    json_decref(deep);
    json_decref(ok);
}

static void test_json_equal_cases(void **state)
{
    static const char *const equal[][2] = {
        {"1", "1.0"},     {"{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}"},
        {"[]", "[]"},     {"\"x\"", "\"x\""},
        {"null", "null"}, {"[{\"a\":[1,{}]}]", "[{\"a\":[1,{}]}]"},
    };
    static const char *const differ[][2] = {
        {"1", "2"},
        {"true", "false"},
        {"null", "false"},
        {"\"a\"", "\"a\\u0000\""},
        {"{\"a\":1}", "{\"b\":1}"},
        {"{\"a\":1}", "{\"a\":1,\"b\":1}"},
        {"[1]", "{\"0\":1}"},
        {"[1,[2]]", "[1,[3]]"},
        {"0", "false"},
        {"\"1\"", "1"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(equal) / sizeof(equal[0]); i++) {
        json_t *a = load(equal[i][0]);
        json_t *b = load(equal[i][1]);
        assert_true(admin_json_equal(a, b));
        assert_true(admin_json_equal(b, a));
        json_decref(a);
        json_decref(b);
    }
    for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
        json_t *a = load(differ[i][0]);
        json_t *b = load(differ[i][1]);
        assert_false(admin_json_equal(a, b));
        assert_false(admin_json_equal(b, a));
        json_decref(a);
        json_decref(b);
    }
}

/* ---- RFC 7386 merge patch (appendix A examples and more) ---- */

static const struct patch_case merge_cases[] = {
    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}", NULL},
    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}", NULL},
    {"{\"a\":\"b\"}", "{\"a\":null}", "{}", NULL},
    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}", NULL},
    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}", NULL},
    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}", NULL},
    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}", NULL},
    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}", NULL},
    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]", NULL},
    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]", NULL},
    {"{\"a\":\"foo\"}", "null", "null", NULL},
    {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\"", NULL},
    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}", NULL},
    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}", NULL},
    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}", NULL},
    /* a realistic certificate edit: metadata member removed, another added, flag flipped */
    {"{\"id\":\"c\",\"metadata\":{\"x\":\"1\",\"y\":\"2\"},\"exposed\":false}",
     "{\"metadata\":{\"x\":null,\"z\":\"3\"},\"exposed\":true}",
     "{\"id\":\"c\",\"metadata\":{\"y\":\"2\",\"z\":\"3\"},\"exposed\":true}", NULL},
};

static void test_mergepatch_corpus_applies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(merge_cases) / sizeof(merge_cases[0]); i++) {
        run_case(&merge_cases[i], 1);
    }
}

static void test_mergepatch_too_deep_patch_rejected(void **state)
{
    json_t *doc = load("{}");
    json_t *deep = nested_arrays(ADMIN_JSON_MAX_DEPTH + 1);
    json_t *patch = json_pack("{s:O}", "a", deep);
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(admin_mergepatch_apply(doc, patch, 0, &out, &eb), TORII_EINVAL);
    assert_null(out);
    assert_non_null(strstr(eb.msg, "merge patch is nested deeper"));
    json_decref(patch);
    json_decref(deep);
    json_decref(doc);
}

/* Item 9: copies of the document into its own deepest member double the nesting at each step
 * (and json_deep_copy used to recurse ~75,000 times on the admin thread's stack): refused by
 * the operation that would pass the depth limit, before anything is copied. */
static void test_jsonpatch_nesting_doubling_refused_while_applying(void **state)
{
    json_t *doc = load("{\"a\":{}}");
    json_t *before = json_deep_copy(doc);
    json_t *patch = json_array();
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};
    char path[4096] = "/a";
    size_t len = 2;

    (void)state;
    /* step k copies the whole document into its deepest member /a/a/.../a */
    for (int k = 0; k < 12; k++) {
        assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:s}", "op", "copy",
                                                                "from", "", "path", path)),
                         0);
        for (size_t i = 0, n = len; i < n && len + 2 < sizeof(path); i += 2) {
            memcpy(path + len, "/a", 3);
            len += 2;
        }
    }
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, &eb), TORII_EINVAL);
    assert_null(out);
    assert_non_null(strstr(eb.msg, "patch operation "));
    assert_non_null(strstr(eb.msg, "would be nested deeper than 64"));
    assert_true(admin_json_equal(doc, before));
    json_decref(patch);
    json_decref(before);
    json_decref(doc);
}

static json_t *size_doubling_patch(size_t pairs)
{
    json_t *patch = json_array();

    for (size_t i = 0; i < pairs; i++) {
        assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:s}", "op", "copy",
                                                                "from", "", "path", "/x")),
                         0);
        assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:s}", "op", "copy",
                                                                "from", "/x", "path", "/y")),
                         0);
    }
    return patch;
}

/* Item 9: pairs of copies double the document's size (18 pairs used to take 4 GB): refused with
 * TORII_ETOOBIG by the first operation that would pass the size bound. */
static void test_jsonpatch_size_doubling_refused_while_applying(void **state)
{
    json_t *doc = load("{\"s\":\"0123456789abcdef0123456789abcdef\"}");
    json_t *patch = size_doubling_patch(40);
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 64 * 1024, &out, &eb), TORII_ETOOBIG);
    assert_null(out);
    assert_non_null(strstr(eb.msg, "patch operation "));
    assert_non_null(strstr(eb.msg, "larger than the admin body limit"));
    /* with the default bound (8 MiB) too */
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 0, &out, &eb), TORII_ETOOBIG);
    assert_null(out);
    json_decref(patch);
    /* a few pairs stay within the bound and apply */
    patch = size_doubling_patch(3);
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 64 * 1024, &out, &eb), TORII_OK);
    json_decref(out);
    json_decref(patch);
    json_decref(doc);
}

/* Copying a large value and removing it again keeps the size down but not the work: bounded. */
static void test_jsonpatch_work_is_bounded(void **state)
{
    char *big = torii_xmalloc(20001);
    json_t *doc = NULL;
    json_t *patch = json_array();
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    memset(big, 'x', 20000);
    big[20000] = '\0';
    doc = json_pack("{s:s}", "s", big);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(json_array_append_new(patch, json_pack("{s:s, s:s, s:s}", "op", "copy",
                                                                "from", "/s", "path", "/t")),
                         0);
        assert_int_equal(
            json_array_append_new(patch, json_pack("{s:s, s:s}", "op", "remove", "path", "/t")), 0);
    }
    assert_int_equal(admin_jsonpatch_apply(doc, patch, 64 * 1024, &out, &eb), TORII_ETOOBIG);
    assert_null(out);
    assert_non_null(strstr(eb.msg, "too much work"));
    free(big);
    json_decref(patch);
    json_decref(doc);
}

/* A merge patch result over the size bound is TORII_ETOOBIG. */
static void test_mergepatch_size_bounded(void **state)
{
    json_t *doc = load("{\"a\":\"0123456789\"}");
    json_t *patch = load("{\"b\":\"0123456789012345678901234567890123456789\"}");
    json_t *out = NULL;
    struct torii_errbuf eb = {{0}};

    (void)state;
    assert_int_equal(admin_mergepatch_apply(doc, patch, 40, &out, &eb), TORII_ETOOBIG);
    assert_null(out);
    assert_non_null(strstr(eb.msg, "larger than the admin body limit"));
    assert_int_equal(admin_mergepatch_apply(doc, patch, 0, &out, &eb), TORII_OK);
    json_decref(out);
    json_decref(patch);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonpatch_valid_corpus_applies),
        cmocka_unit_test(test_jsonpatch_invalid_corpus_rejected),
        cmocka_unit_test(test_jsonpatch_failure_is_atomic),
        cmocka_unit_test(test_jsonpatch_error_message_names_move_from),
        cmocka_unit_test(test_jsonpatch_null_eb_is_accepted),
        cmocka_unit_test(test_jsonpatch_strings_with_nul_bytes),
        cmocka_unit_test(test_jsonpatch_depth_limits),
        cmocka_unit_test(test_json_equal_cases),
        cmocka_unit_test(test_mergepatch_corpus_applies),
        cmocka_unit_test(test_mergepatch_too_deep_patch_rejected),
        cmocka_unit_test(test_jsonpatch_nesting_doubling_refused_while_applying),
        cmocka_unit_test(test_jsonpatch_size_doubling_refused_while_applying),
        cmocka_unit_test(test_jsonpatch_work_is_bounded),
        cmocka_unit_test(test_mergepatch_size_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
