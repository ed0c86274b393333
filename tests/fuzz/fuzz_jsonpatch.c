/* fuzz_jsonpatch.c - libFuzzer target: RFC 6902 JSON Patch and RFC 7386 merge patch as
 * PATCH /api/certificates applies them. Input: 1 control byte (bit 0: merge patch), then a
 * document and a patch, both JSON, separated by the first NUL byte. Bounds on work (size,
 * depth) are the code under test's to enforce: a timeout or an out-of-memory report here is a
 * finding. The corpus holds the size-doubling and nesting-doubling patches that once took the
 * daemon down. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "jsonpatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The result-size bound the admin passes (its body limit); small here so that the fuzzer
 * reaches it, and every input stays cheap. */
#define FUZZ_MAX_BYTES (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct torii_errbuf eb;
    const uint8_t *sep;
    json_t *doc = NULL;
    json_t *patch = NULL;
    json_t *out = NULL;
    int merge;

    if (size < 2) {
        return 0;
    }
    merge = data[0] & 1;
    data++;
    size--;
    sep = memchr(data, '\0', size);
    if (sep == NULL) {
        return 0;
    }
    doc = json_loadb((const char *)data, (size_t)(sep - data), JSON_DECODE_ANY, NULL);
    patch =
        json_loadb((const char *)sep + 1, size - (size_t)(sep - data) - 1, JSON_DECODE_ANY, NULL);
    if (doc == NULL || patch == NULL) {
        goto out;
    }
    if ((merge ? admin_mergepatch_apply(doc, patch, FUZZ_MAX_BYTES, &out, &eb)
               : admin_jsonpatch_apply(doc, patch, FUZZ_MAX_BYTES, &out, &eb))
        == TORII_OK) {
        char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        free(s);
    }
out:
    json_decref(out);
    json_decref(patch);
    json_decref(doc);
    return 0;
}
