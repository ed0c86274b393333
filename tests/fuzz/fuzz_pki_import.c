/* fuzz_pki_import.c - libFuzzer target: the import paths of /api/pki and
 * /api/certificates/_bundle: PKCS#12 (DER) and PEM bundles (certificates and keys in any
 * order, optionally encrypted), and the _data inspection of a PEM certificate.
 * Input: 1 control byte (low 2 bits choose the path, bit 2 supplies a password), then the
 * body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "torii/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* NUL-terminated copy of a text body (the API hands text paths a C string). */
static char *fuzz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct torii_errbuf eb;
    const char *password;
    json_t *out = NULL;
    char *text = NULL;
    int rc = TORII_OK;

    if (size < 1 || size > 64 * 1024) {
        return 0;
    }
    password = (data[0] & 4) ? "fuzz-password" : NULL;
    switch (data[0] & 3) {
    case 0:
        rc = torii_pki_import_p12(data + 1, size - 1, password, 1700000000000LL, &out, &eb);
        break;
    case 1:
        text = fuzz_text(data + 1, size - 1);
        if (text != NULL) {
            rc = torii_pki_import_pem_bundle(text, password, 1700000000000LL, &out, &eb);
        }
        break;
    default:
        text = fuzz_text(data + 1, size - 1);
        if (text != NULL) {
            rc = torii_pki_cert_data(text, &out, &eb);
        }
        break;
    }
    (void)rc;
    free(text);
    json_decref(out);
    return 0;
}
