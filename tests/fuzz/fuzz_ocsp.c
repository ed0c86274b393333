/* fuzz_ocsp.c - libFuzzer target: the OCSP responder (RFC 6960) on a request as the public
 * listeners receive it: DER in a POST body, or the base64 text of the GET form. A real CA is
 * made once, and the lookup answers "good" with it as issuer for every CertID, so that the
 * whole response-building and signing path runs. Input: 1 control byte (bit 0: GET form), then
 * the body or the base64 text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "torii/codec.h"
#include "torii/pki.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *fuzz_ca;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct torii_pki_opts o = {.now_ms = 1700000000000LL, .base_url = NULL, .id = "fuzz-ca"};
    struct torii_errbuf eb;
    json_t *q = json_pack("{s:s}", "subject", "CN=Fuzz OCSP CA");

    (void)argc;
    (void)argv;
    if (q == NULL || torii_pki_ca_create(q, &o, &fuzz_ca, &eb) != TORII_OK) {
        abort(); /* the harness itself is broken: nothing to fuzz */
    }
    json_decref(q);
    return 0;
}

static int fuzz_lookup(void *ctx, const struct torii_pki_certid *id,
                       struct torii_pki_ocsp_answer *ans)
{
    (void)ctx;
    (void)id;
    ans->status = TORII_PKI_OCSP_GOOD;
    ans->issuer_owned = json_incref(fuzz_ca);
    return TORII_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct torii_errbuf eb;
    unsigned char *req = NULL;
    unsigned char *der = NULL;
    size_t req_len = 0;
    size_t der_len = 0;
    int status = 0;

    if (size < 1 || size > 64 * 1024) {
        return 0;
    }
    if (data[0] & 1) {
        if (torii_b64_decode((const char *)data + 1, size - 1, &req, &req_len) != TORII_OK) {
            return 0;
        }
    }
    if (torii_pki_ocsp_respond(req != NULL ? req : data + 1, req != NULL ? req_len : size - 1,
                               fuzz_lookup, NULL, 1700000000000LL, 3600, &der, &der_len, &status,
                               &eb)
        == TORII_OK) {
        free(der);
    }
    free(req);
    return 0;
}
