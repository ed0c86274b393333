/* jwt_tool.c - torii-jwt, a test driver of the JWT module (jwt.h) for the integration tests:
 *   torii-jwt verify JWKS_FILE TOKEN_FILE [--iss ISS] [--aud AUD]... [--leeway S]
 *     builds a key set from a JWK Set the way torii publishes it (kid, and the leaf
 *     certificate of x5c, whose notAfter bounds the key), verifies the token (surrounding
 *     whitespace trimmed) now, prints the verdict ("ok", "expired", ...); exit 0 when ok,
 *     1 when refused, 2 on a usage or input error.
 *   torii-jwt sign KEY_PEM KID CLAIMS_JSON_FILE
 *     prints a token signed by torii_jwt_sign (the key's default algorithm).
 * Threads: single-threaded test program. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "torii/clock.h"
#include "torii/codec.h"
#include "torii/jwt.h"

#define TOOL_MAX_AUD 8

static char *tool_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    if (f == NULL) {
        perror(path);
        return NULL;
    }
    buf = malloc(65536 + 1);
    if (buf != NULL) {
        n = fread(buf, 1, 65536, f);
        buf[n] = '\0';
    }
    (void)fclose(f);
    while (buf != NULL && n > 0
           && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
    *len = n;
    return buf;
}

/* One JWK: kid + x5c[0] -> key set. 0 or -1. */
static int tool_jwk_add(struct torii_jwt_keyset *ks, const json_t *jwk)
{
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    const char *x5c = json_string_value(json_array_get(json_object_get(jwk, "x5c"), 0));
    unsigned char *der = NULL;
    size_t der_len = 0;
    const unsigned char *p;
    X509 *x = NULL;
    int64_t not_after = INT64_MAX;
    struct tm tm;
    struct torii_errbuf eb = {{0}};
    int rc = -1;

    if (kid == NULL || x5c == NULL || torii_b64_decode(x5c, strlen(x5c), &der, &der_len) != 0) {
        fprintf(stderr, "torii-jwt: JWK without kid or x5c\n");
        goto out;
    }
    p = der;
    x = d2i_X509(NULL, &p, (long)der_len);
    if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
        fprintf(stderr, "torii-jwt: x5c of %s does not parse\n", kid);
        goto out;
    }
    not_after = (int64_t)timegm(&tm) * 1000;
    if (torii_jwt_keyset_add(ks, kid, strlen(kid), X509_get0_pubkey(x), not_after, &eb) != 0) {
        fprintf(stderr, "torii-jwt: key %s skipped: %s\n", kid, eb.msg);
    }
    rc = 0;
out:
    X509_free(x);
    free(der);
    return rc;
}

static int tool_verify(int argc, char **argv)
{
    const char *aud[TOOL_MAX_AUD];
    struct torii_jwt_policy p = {0};
    struct torii_jwt_keyset *ks = torii_jwt_keyset_new();
    struct torii_errbuf eb = {{0}};
    enum torii_jwt_verdict v = TORII_JWT_MALFORMED;
    json_error_t jerr;
    json_t *jwks = json_load_file(argv[2], 0, &jerr);
    size_t len = 0;
    char *tok = tool_read(argv[3], &len);
    size_t i;
    const json_t *k;
    int rc = 2;

    p.audiences = aud;
    for (int a = 4; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--iss") == 0) {
            p.issuer = argv[a + 1];
        } else if (strcmp(argv[a], "--aud") == 0 && p.n_audiences < TOOL_MAX_AUD) {
            aud[p.n_audiences++] = argv[a + 1];
        } else if (strcmp(argv[a], "--leeway") == 0) {
            p.leeway_s = atoll(argv[a + 1]);
        } else {
            fprintf(stderr, "torii-jwt: unknown option %s\n", argv[a]);
            goto out;
        }
    }
    if (jwks == NULL || tok == NULL) {
        fprintf(stderr, "torii-jwt: cannot read the JWKS or the token\n");
        goto out;
    }
    json_array_foreach (json_object_get(jwks, "keys"), i, k) {
        if (tool_jwk_add(ks, k) != 0) {
            goto out;
        }
    }
    torii_jwt_keyset_seal(ks);
    rc = torii_jwt_verify(ks, &p, tok, len, torii_clock_now_ms(), &v, NULL, &eb) == 0 ? 0 : 1;
    printf("%s\n", torii_jwt_verdict_name(v));
    if (rc != 0) {
        fprintf(stderr, "torii-jwt: %s\n", eb.msg);
    }
out:
    free(tok);
    json_decref(jwks);
    torii_jwt_keyset_unref(ks);
    return rc;
}

static int tool_sign(char **argv)
{
    FILE *f = fopen(argv[2], "r");
    EVP_PKEY *key = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    json_error_t jerr;
    json_t *claims = json_load_file(argv[4], 0, &jerr);
    struct torii_errbuf eb = {{0}};
    char *tok = NULL;
    int rc = 2;

    if (f != NULL) {
        (void)fclose(f);
    }
    if (key == NULL || claims == NULL) {
        fprintf(stderr, "torii-jwt: cannot read the key or the claims\n");
    } else if (torii_jwt_sign(key, 0, argv[3], claims, &tok, NULL, &eb) != 0) {
        fprintf(stderr, "torii-jwt: %s\n", eb.msg);
    } else {
        printf("%s\n", tok);
        rc = 0;
    }
    free(tok);
    json_decref(claims);
    EVP_PKEY_free(key);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "verify") == 0) {
        return tool_verify(argc, argv);
    }
    if (argc == 5 && strcmp(argv[1], "sign") == 0) {
        return tool_sign(argv);
    }
    fprintf(stderr, "usage: torii-jwt verify JWKS TOKEN [--iss I] [--aud A]... [--leeway S]\n"
                    "       torii-jwt sign KEY_PEM KID CLAIMS_JSON\n");
    return 2;
}
