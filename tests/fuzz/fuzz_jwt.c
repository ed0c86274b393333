/* fuzz_jwt.c - libFuzzer target: the JWT verifier (jwt.h) on what a client may send. A key set
 * holds one Ed25519 key (kid "ed", fixed seed, so signatures are deterministic) and one P-256
 * key (kid "ec"). Input: 1 control byte, then
 * - bit 0 clear: the rest is a token, verified as is (parsing, header checks, ECDSA signature
 *   conversion; a forged signature never verifies, so the claims are not reached);
 * - bit 0 set: the rest is "<header JSON>\n<claims JSON>"; the harness encodes both, signs
 *   them with the Ed25519 key and verifies the token, so the header and claim checks run on
 *   arbitrary JSON behind a valid signature.
 * Bit 1 picks a policy with an issuer, an audience and a leeway. The verdict must be consistent
 * with the return code. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "torii/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW_MS 1700000000000LL

static struct torii_jwt_keyset *fuzz_ks;
static EVP_PKEY *fuzz_ed;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const unsigned char seed[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                           23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)argc;
    (void)argv;
    fuzz_ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    fuzz_ks = torii_jwt_keyset_new();
    if (ec == NULL || fuzz_ed == NULL
        || torii_jwt_keyset_add(fuzz_ks, "ed", 2, fuzz_ed, INT64_MAX, NULL) != TORII_OK
        || torii_jwt_keyset_add(fuzz_ks, "ec", 2, ec, INT64_MAX, NULL) != TORII_OK) {
        abort(); /* the harness itself is broken: nothing to fuzz */
    }
    torii_jwt_keyset_seal(fuzz_ks);
    EVP_PKEY_free(ec);
    return 0;
}

static size_t fuzz_b64url(const unsigned char *d, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, d, (int)n);
    size_t m = len > 0 ? (size_t)len : 0;

    while (m > 0 && out[m - 1] == '=') {
        m--;
    }
    for (size_t i = 0; i < m; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    return m;
}

/* "b64(h).b64(c).b64(Ed25519 signature)" into a malloc'd buffer; NULL when signing fails. */
static char *fuzz_signed(const uint8_t *h, size_t h_len, const uint8_t *c, size_t c_len,
                         size_t *len)
{
    char *tok = malloc((h_len + c_len) / 3 * 4 + 128);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[64];
    size_t sig_len = sizeof(sig);
    size_t n;

    if (tok == NULL || ctx == NULL) {
        free(tok);
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    n = fuzz_b64url(h, h_len, tok);
    tok[n++] = '.';
    n += fuzz_b64url(c, c_len, tok + n);
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, fuzz_ed) != 1
        || EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)tok, n) != 1) {
        free(tok);
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    tok[n++] = '.';
    n += fuzz_b64url(sig, sig_len, tok + n);
    EVP_MD_CTX_free(ctx);
    *len = n;
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const aud[] = {"api"};
    struct torii_jwt_policy p = {0};
    enum torii_jwt_verdict v;
    json_t *claims = NULL;
    char *tok = NULL;
    size_t len = 0;
    int rc;

    if (size < 1 || size > 3 * TORII_JWT_MAX_TOKEN) {
        return 0;
    }
    if ((data[0] & 2) != 0) {
        p.issuer = "https://idp.test";
        p.audiences = aud;
        p.n_audiences = 1;
        p.leeway_s = 30;
    }
    if ((data[0] & 1) != 0) {
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);
        if (nl == NULL) {
            return 0;
        }
        tok = fuzz_signed(data + 1, (size_t)(nl - data - 1), nl + 1, size - (size_t)(nl - data) - 1,
                          &len);
        if (tok == NULL) {
            return 0;
        }
    }
    rc = torii_jwt_verify(fuzz_ks, &p, tok != NULL ? tok : (const char *)data + 1,
                          tok != NULL ? len : size - 1, FUZZ_NOW_MS, &v, &claims, NULL);
    if ((rc == TORII_OK) != (v == TORII_JWT_OK) || (rc == TORII_OK) != (claims != NULL)) {
        abort();
    }
    json_decref(claims);
    free(tok);
    return 0;
}
