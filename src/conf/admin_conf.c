/* admin_conf.c - the admin.* members that are more than scalars: admin.tokens (id, SHA-256 of
 * the secret, scopes), admin.hosts (names accepted in Host and Origin) and admin.tls (store ids
 * of the listener certificate and of the client CAs). Every problem is noted, naming the key. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "torii/codec.h"
#include "torii/conf.h"
#include "torii/mem.h"

static const char *const conf_scope_names[] = {"read", "write", "pki", "keys:export", "admin"};

unsigned torii_conf_scope_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(conf_scope_names) / sizeof(conf_scope_names[0]); i++) {
        if (strcmp(conf_scope_names[i], name) == 0) {
            return 1u << i;
        }
    }
    return 0;
}

const char *torii_conf_scope_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(conf_scope_names) / sizeof(conf_scope_names[0]); i++) {
        if (bit == 1u << i) {
            return conf_scope_names[i];
        }
    }
    return NULL;
}

/* 64 hex digits into 32 bytes; 0 on a bad string. */
static int conf_sha256_hex(const char *s, unsigned char out[32])
{
    return s != NULL && torii_hex_decode(s, strlen(s), out, 32) == TORII_OK;
}

static int conf_token_id_ok(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;

    if (n == 0 || n > TORII_CONF_TOKEN_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            return 0;
        }
    }
    return 1;
}

static unsigned conf_token_scopes(const json_t *v, size_t idx, struct torii_conf_errs *errs)
{
    unsigned bits = 0;
    size_t i;
    json_t *s;

    if (!json_is_array(v) || json_array_size(v) == 0) {
        torii_conf_errs_addf(errs,
                             "config: admin.tokens[%zu].scopes: expected a non-empty array of "
                             "read, write, pki, keys:export, admin",
                             idx);
        return 0;
    }
    json_array_foreach (v, i, s) {
        unsigned b = json_is_string(s) ? torii_conf_scope_bit(json_string_value(s)) : 0;
        if (b == 0) {
            torii_conf_errs_addf(errs,
                                 "config: admin.tokens[%zu].scopes[%zu]: unknown scope (expected "
                                 "read, write, pki, keys:export or admin)",
                                 idx, i);
            return 0;
        }
        bits |= b;
    }
    return (bits & TORII_SCOPE_ADMIN) != 0 ? TORII_SCOPE_ALL : bits;
}

/* One admin.tokens item into t; 0 (problems noted) when it is not valid. */
static int conf_token_parse(json_t *o, size_t idx, struct torii_conf_token *t,
                            struct torii_conf_errs *errs)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *k;
    json_t *v;

    if (!json_is_object(o)) {
        torii_conf_errs_addf(
            errs, "config: admin.tokens[%zu]: expected an object {id, sha256, scopes}", idx);
        return 0;
    }
    json_object_foreach (o, k, v) {
        if (strcmp(k, "id") != 0 && strcmp(k, "sha256") != 0 && strcmp(k, "scopes") != 0) {
            torii_conf_errs_addf(errs, "config: admin.tokens[%zu]: unknown key \"%.64s\"", idx, k);
            return 0;
        }
    }
    if (!conf_token_id_ok(id)) {
        torii_conf_errs_addf(errs,
                             "config: admin.tokens[%zu].id: expected 1 to %d printable ASCII "
                             "characters without blanks or quotes",
                             idx, TORII_CONF_TOKEN_ID_MAX);
        return 0;
    }
    if (!conf_sha256_hex(json_string_value(json_object_get(o, "sha256")), t->sha256)) {
        torii_conf_errs_addf(errs,
                             "config: admin.tokens[%zu].sha256: expected 64 hex digits (see "
                             "`torii token new`)",
                             idx);
        return 0;
    }
    (void)snprintf(t->id, sizeof(t->id), "%s", id);
    t->scopes = conf_token_scopes(json_object_get(o, "scopes"), idx, errs);
    return t->scopes != 0;
}

static void conf_admin_tokens(struct torii_config *c, struct torii_conf_errs *errs)
{
    size_t n = json_array_size(c->admin_tokens);

    free(c->admin_token_list);
    c->admin_token_list = NULL;
    c->n_admin_tokens = 0;
    if (n == 0) {
        return;
    }
    c->admin_token_list = torii_xcalloc(n, sizeof(*c->admin_token_list));
    for (size_t i = 0; i < n; i++) {
        struct torii_conf_token *t = &c->admin_token_list[c->n_admin_tokens];
        if (!conf_token_parse(json_array_get(c->admin_tokens, i), i, t, errs)) {
            continue;
        }
        for (size_t j = 0; j < c->n_admin_tokens; j++) {
            if (strcmp(c->admin_token_list[j].id, t->id) == 0) {
                torii_conf_errs_addf(errs, "config: admin.tokens[%zu].id: \"%s\" is used twice", i,
                                     t->id);
            }
        }
        c->n_admin_tokens++;
    }
}

/* An array (non-empty when required) of non-empty strings, or absent when not required;
 * problems noted. */
static void conf_admin_str_array(const json_t *v, const char *key, int required,
                                 struct torii_conf_errs *errs)
{
    size_t i;
    json_t *s;

    if (v == NULL && !required) {
        return;
    }
    if (!json_is_array(v) || (required && json_array_size(v) == 0)) {
        torii_conf_errs_addf(errs, "config: %s: expected a%s array of strings", key,
                             required ? " non-empty" : "n");
        return;
    }
    json_array_foreach (v, i, s) {
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > 255) {
            torii_conf_errs_addf(errs, "config: %s[%zu]: expected a non-empty string", key, i);
        }
    }
}

static void conf_admin_tls(json_t *tls, struct torii_conf_errs *errs)
{
    const char *k;
    json_t *v;

    if (tls == NULL) {
        return;
    }
    json_object_foreach (tls, k, v) {
        if (strcmp(k, "cert") != 0 && strcmp(k, "client_cas") != 0) {
            torii_conf_errs_addf(errs, "config: unknown key \"admin.tls.%.64s\"", k);
        }
    }
    v = json_object_get(tls, "cert");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        torii_conf_errs_addf(errs,
                             "config: admin.tls.cert: expected the store id of the listener's "
                             "certificate");
    }
    conf_admin_str_array(json_object_get(tls, "client_cas"), "admin.tls.client_cas", 1, errs);
}

int torii_conf_addr_is_loopback(const char *s)
{
    struct sockaddr_storage ss;
    int len = 0;

    if (s == NULL || torii_config_parse_addr(s, &ss, &len, NULL) != TORII_OK) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)&ss)->sin6_addr);
}

void torii_conf_admin_validate(struct torii_config *c, struct torii_conf_errs *errs)
{
    conf_admin_tokens(c, errs);
    conf_admin_str_array(c->admin_hosts, "admin.hosts", 0, errs);
    conf_admin_tls(c->admin_tls, errs);
    if (c->admin_audit_log != NULL && c->admin_audit_log[0] == '\0') {
        torii_conf_errs_addf(errs, "config: admin.audit_log: expected a file path");
    }
    if (c->admin_auth_fail_limit > 0 && c->admin_auth_fail_window_s == 0) {
        torii_conf_errs_addf(errs, "config: admin.auth_fail_window_s must be >= 1 when "
                                   "admin.auth_fail_limit is set");
    }
}
