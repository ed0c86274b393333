/* token_cmd.c - `torii token new`: a fresh admin token and its admin.tokens entry. The token
 * is 32 random bytes (256 bits) in hex, shown once; the configuration holds only its SHA-256.
 * A plain hash is enough here: the token is random and long, not a password a person chose,
 * so no dictionary or brute-force search can reach it and a slow KDF would buy nothing. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "admin_auth.h"
#include "torii/admin.h"
#include "torii/mem.h"

#define TOKEN_CMD_RAW 32

static int token_cmd_usage(FILE *err)
{
    (void)fprintf(err, "usage: torii token new [--id ID] [--scopes read,write,pki,keys:export,"
                       "admin]\n");
    return 2;
}

/* "a,b,c" -> a JSON array of known scope names; NULL (message on err) when one is unknown. */
static json_t *token_cmd_scopes(const char *list, FILE *err)
{
    json_t *arr = json_array();
    const char *p = list;

    while (arr != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char name[32];

        if (n == 0 || n >= sizeof(name)) {
            (void)fprintf(err, "torii: --scopes: empty or too long scope name in \"%s\"\n", list);
            json_decref(arr);
            return NULL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (torii_conf_scope_bit(name) == 0) {
            (void)fprintf(err,
                          "torii: --scopes: unknown scope \"%s\" (expected read, write, pki, "
                          "keys:export or admin)\n",
                          name);
            json_decref(arr);
            return NULL;
        }
        (void)json_array_append_new(arr, json_string(name));
        p += n + (comma != NULL ? 1 : 0);
    }
    return arr;
}

static int token_cmd_print(const char *id, json_t *scopes, FILE *out, FILE *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_CMD_RAW];
    char tok[TOKEN_CMD_RAW * 2 + 1];
    char sha[65];
    json_t *entry = NULL;
    char *text = NULL;
    int status = 1;

    if (torii_rand_bytes(raw, sizeof(raw)) != TORII_OK) {
        (void)fprintf(err, "torii: no randomness for a token\n");
        goto out;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        tok[2 * i] = hex[raw[i] >> 4];
        tok[2 * i + 1] = hex[raw[i] & 15];
    }
    tok[sizeof(tok) - 1] = '\0';
    admin_auth_sha256_hex(tok, strlen(tok), sha);
    entry = json_pack("{s:s, s:s, s:O}", "id", id, "sha256", sha, "scopes", scopes);
    text = entry != NULL ? json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL) {
        (void)fprintf(err, "torii: out of memory\n");
        goto out;
    }
    (void)fprintf(out,
                  "token: %s\n(shown once: torii keeps only its SHA-256)\n"
                  "admin.tokens entry:\n%s\n",
                  tok, text);
    status = 0;
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(tok, sizeof(tok));
    free(text);
    json_decref(entry);
    return status;
}

int torii_admin_token_cmd(int argc, char **argv, FILE *out, FILE *err)
{
    const char *id = "token";
    const char *scopes_s = "read";
    json_t *scopes = NULL;
    int status;

    if (argc < 2 || strcmp(argv[1], "new") != 0) {
        return token_cmd_usage(err);
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            id = argv[++i];
        } else if (strcmp(argv[i], "--scopes") == 0 && i + 1 < argc) {
            scopes_s = argv[++i];
        } else {
            return token_cmd_usage(err);
        }
    }
    if (id[0] == '\0' || strlen(id) > TORII_CONF_TOKEN_ID_MAX || strpbrk(id, " \t\"\\") != NULL) {
        (void)fprintf(err, "torii: --id: expected 1 to %d characters without blanks or quotes\n",
                      TORII_CONF_TOKEN_ID_MAX);
        return 2;
    }
    scopes = token_cmd_scopes(scopes_s, err);
    if (scopes == NULL) {
        return 2;
    }
    status = token_cmd_print(id, scopes, out, err);
    json_decref(scopes);
    return status;
}
