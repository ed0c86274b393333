/* cmds.c - the single-certificate commands of `torii ctl`: get, import, issue, letsencrypt,
 * renew, revoke, delete, export. Each prints the API's JSON answer (indented) on success.
 * Private keys: `issue` drops the generated key from what it prints (--key-out writes it to a
 * 0600 file); `export` is the one command that prints a key, on purpose (keys:export scope). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_int.h"
#include "torii/mem.h"

#define CTL_PATH_MAX_EXTRA 64

/* "/api/certificates/<id escaped><suffix>" (free()). */
static char *ctl_cert_path(struct ctl *c, const char *id, const char *suffix)
{
    char *e = ctl_escape(c, id);
    size_t n = strlen(e) + strlen(suffix) + CTL_PATH_MAX_EXTRA;
    char *p = torii_xmalloc(n);

    (void)snprintf(p, n, "/api/certificates/%s%s", e, suffix);
    free(e);
    return p;
}

/* METHOD on the certificate a->pos[0] (+suffix) with an optional JSON body; prints the answer. */
static int ctl_on_cert(struct ctl *c, const struct ctl_args *a, const char *method,
                       const char *suffix, const json_t *body, const char *ctype)
{
    char *path = ctl_cert_path(c, a->pos[0], suffix);
    json_t *res = NULL;
    int rc = ctl_call_json(c, method, path, body, ctype, &res);

    if (rc == TORII_CTL_EXIT_OK && res != NULL) {
        ctl_print_json(c, res);
    }
    json_decref(res);
    free(path);
    return rc;
}

int ctl_cmd_get(struct ctl *c, const struct ctl_args *a)
{
    return ctl_on_cert(c, a, "GET", "", NULL, NULL);
}

int ctl_cmd_renew(struct ctl *c, const struct ctl_args *a)
{
    return ctl_on_cert(c, a, "POST", "/_renew", NULL, NULL);
}

int ctl_cmd_delete(struct ctl *c, const struct ctl_args *a)
{
    return ctl_on_cert(c, a, "DELETE", "", NULL, NULL);
}

int ctl_cmd_revoke(struct ctl *c, const struct ctl_args *a)
{
    const char *reason = ctl_arg(a, "reason");
    char at[32];
    json_t *body = NULL;
    int rc = TORII_CTL_EXIT_OK;

    (void)snprintf(at, sizeof(at), "%lld", (long long)time(NULL) * 1000LL);
    body = json_pack("{s:b,s:{s:s,s:s}}", "revoked", 1, "metadata", "revocationReason",
                     reason != NULL ? reason : "UNSPECIFIED", "revokedAt", at);
    rc = ctl_on_cert(c, a, "PATCH", "", body, "application/merge-patch+json");
    json_decref(body);
    return rc;
}

int ctl_cmd_export(struct ctl *c, const struct ctl_args *a)
{
    const char *out = ctl_arg(a, "out");
    char *path = ctl_cert_path(c, a->pos[0], "?export=true");
    json_t *res = NULL;
    char *text = NULL;
    int rc = ctl_call(c, "GET", path, NULL, NULL, 0, &res, NULL);

    if (rc != TORII_CTL_EXIT_OK || res == NULL) {
        goto out;
    }
    if (out == NULL) {
        ctl_print_json(c, res);
        goto out;
    }
    text = json_dumps(res, JSON_INDENT(2));
    rc = text != NULL ? ctl_write_private(c, out, text, strlen(text)) : TORII_CTL_EXIT_API;
out:
    if (text != NULL) {
        torii_secure_free(text, strlen(text) + 1);
    }
    json_decref(res);
    free(path);
    return rc;
}

static int ctl_import_p12(struct ctl *c, const char *file, const char *password)
{
    char *buf = NULL;
    size_t len = 0;
    char *pw = ctl_escape(c, password != NULL ? password : "");
    size_t n = strlen(pw) + CTL_PATH_MAX_EXTRA;
    char *path = torii_xmalloc(n);
    json_t *res = NULL;
    int rc = ctl_read_file(c, file, &buf, &len);

    (void)snprintf(path, n, "/api/pki/certs/_p12?password=%s", pw);
    if (rc == TORII_CTL_EXIT_OK) {
        rc = ctl_call(c, "POST", path, "application/x-pkcs12", buf, len, &res, NULL);
    }
    if (rc == TORII_CTL_EXIT_OK && res != NULL) {
        ctl_print_json(c, res);
    }
    json_decref(res);
    torii_secure_free(path, n);
    torii_secure_free(pw, strlen(pw));
    if (buf != NULL) {
        torii_secure_free(buf, len + 1);
    }
    return rc;
}

static int ctl_import_pem(struct ctl *c, const struct ctl_args *a)
{
    const char *keyf = ctl_arg(a, "key");
    const char *opt[] = {"id", "name", "password"};
    char *chain = NULL;
    char *key = NULL;
    size_t clen = 0;
    size_t klen = 0;
    json_t *body = json_object();
    json_t *res = NULL;
    int rc = ctl_read_file(c, ctl_arg(a, "chain"), &chain, &clen);

    if (rc == TORII_CTL_EXIT_OK && keyf != NULL) {
        rc = ctl_read_file(c, keyf, &key, &klen);
    }
    if (rc != TORII_CTL_EXIT_OK) {
        goto out;
    }
    (void)json_object_set_new(body, "chain", json_stringn(chain, clen));
    (void)json_object_set_new(body, "privateKey", json_stringn(key != NULL ? key : "", klen));
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        if (ctl_arg(a, opt[i]) != NULL) {
            (void)json_object_set_new(body, opt[i], json_string(ctl_arg(a, opt[i])));
        }
    }
    rc = ctl_call_json(c, "POST", "/api/certificates", body, NULL, &res);
    if (rc == TORII_CTL_EXIT_OK && res != NULL) {
        ctl_print_json(c, res);
    }
out:
    json_decref(res);
    json_decref(body);
    torii_secure_free(chain, clen + 1);
    torii_secure_free(key, klen + 1);
    return rc;
}

int ctl_cmd_import(struct ctl *c, const struct ctl_args *a)
{
    int pem = ctl_has(a, "chain");
    int p12 = ctl_has(a, "p12");

    if (pem == p12 || (p12 && (ctl_has(a, "key") || ctl_has(a, "id") || ctl_has(a, "name")))) {
        (void)fprintf(c->err, "torii ctl import: give --chain FILE [--key FILE] (PEM) or --p12 "
                              "FILE (with no --key, --id or --name), not both\n");
        return TORII_CTL_EXIT_USAGE;
    }
    return p12 ? ctl_import_p12(c, ctl_arg(a, "p12"), ctl_arg(a, "password"))
               : ctl_import_pem(c, a);
}

long ctl_num_opt(struct ctl *c, const struct ctl_args *a, const char *name, long dflt)
{
    const char *s = ctl_arg(a, name);
    char *end = NULL;
    long v = 0;

    if (s == NULL) {
        return dflt;
    }
    v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < 1 || v > CTL_NUM_MAX) {
        (void)fprintf(c->err, "torii ctl: --%s must be an integer from 1 to %ld, got '%s'\n", name,
                      CTL_NUM_MAX, s);
        return -1;
    }
    return v;
}
