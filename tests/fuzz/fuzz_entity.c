/* fuzz_entity.c - libFuzzer target: a certificate entity as POST/PUT /api/certificates
 * receive it (JSON), through normalize and enrich (PEM chain and private key parsing, the
 * derived fields), then the public copy the API and the alerts print. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "torii/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct torii_errbuf eb;
    json_t *e = json_loadb((const char *)data, size, 0, NULL);
    json_t *pub = NULL;
    char *s = NULL;

    if (e == NULL) {
        return 0;
    }
    if (torii_cert_enrich(e, 1700000000000LL, &eb) == TORII_OK) {
        pub = torii_cert_redacted(e);
        s = json_dumps(pub, JSON_COMPACT);
    }
    free(s);
    json_decref(pub);
    torii_cert_secrets_wipe(e);
    json_decref(e);
    return 0;
}
