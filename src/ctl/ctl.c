/* ctl.c - `torii ctl`: the command table, option parsing (every option is checked against
 * the command's list: nothing is silently ignored), where the URL and token come from, and
 * the exit codes (ctl.h). */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl_int.h"
#include "torii/mem.h"

#define CTL_DEFAULT_URL "http://127.0.0.1:9000"

struct ctl_cmd {
    const char *name;
    const char *const *values; /* options taking a value */
    const char *const *flags;  /* options without one */
    size_t min_pos, max_pos;
    int (*run)(struct ctl *c, const struct ctl_args *a);
    const char *usage;
};

static const char *const ctl_no_opts[] = {NULL};
static const char *const ctl_list_v[] = {"search", "badge",     "filter",          "sort",
                                         "page",   "page-size", "expiring-within", NULL};
static const char *const ctl_json_f[] = {"json", NULL};
static const char *const ctl_import_v[] = {"chain", "key", "p12", "password", "id", "name", NULL};
static const char *const ctl_issue_v[] = {"subject", "host",   "ca",      "key-type", "key-size",
                                          "days",    "digest", "key-out", NULL};
static const char *const ctl_issue_f[] = {"ca-cert", "client", "aia", NULL};
static const char *const ctl_le_v[] = {"timeout", NULL};
static const char *const ctl_le_f[] = {"no-wait", NULL};
static const char *const ctl_revoke_v[] = {"reason", NULL};
static const char *const ctl_export_v[] = {"out", NULL};
static const char *const ctl_watch_v[] = {"interval", "count", "timeout", NULL};

static const struct ctl_cmd ctl_cmds[] = {
    {"list", ctl_list_v, ctl_json_f, 0, 0, ctl_cmd_list,
     "list [--json] [--search TEXT] [--badge B]... [--filter FIELD=VALUE]... "
     "[--expiring-within DAYS] [--sort FIELD[:desc]] [--page N] [--page-size N]"},
    {"get", ctl_no_opts, ctl_no_opts, 1, 1, ctl_cmd_get, "get ID"},
    {"import", ctl_import_v, ctl_no_opts, 0, 0, ctl_cmd_import,
     "import (--chain FILE [--key FILE] | --p12 FILE) [--password P] [--id ID] [--name NAME]"},
    {"issue", ctl_issue_v, ctl_issue_f, 0, 0, ctl_cmd_issue,
     "issue --subject DN [--host H]... [--ca CA_ID] [--ca-cert] [--client] [--aia] "
     "[--key-type ecdsa|rsa] [--key-size N] [--days N] [--digest SHA-256] [--key-out FILE]"},
    {"letsencrypt", ctl_le_v, ctl_le_f, 1, CTL_MAX_ARGS, ctl_cmd_letsencrypt,
     "letsencrypt HOST... [--no-wait] [--timeout SECONDS]"},
    {"renew", ctl_no_opts, ctl_no_opts, 1, 1, ctl_cmd_renew, "renew ID"},
    {"revoke", ctl_revoke_v, ctl_no_opts, 1, 1, ctl_cmd_revoke, "revoke ID [--reason REASON]"},
    {"delete", ctl_no_opts, ctl_no_opts, 1, 1, ctl_cmd_delete, "delete ID"},
    {"export", ctl_export_v, ctl_no_opts, 1, 1, ctl_cmd_export, "export ID [--out FILE]"},
    {"watch", ctl_watch_v, ctl_no_opts, 0, 0, ctl_cmd_watch,
     "watch [--interval SECONDS] [--count N] [--timeout SECONDS]"},
};

static const char *const ctl_global_v[] = {"url", "token", "token-file", NULL};

const char *ctl_arg(const struct ctl_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_opt; i++) {
        if (strcmp(a->opt[i].name, name) == 0) {
            return a->opt[i].value;
        }
    }
    return NULL;
}

int ctl_has(const struct ctl_args *a, const char *name)
{
    for (size_t i = 0; i < a->n_opt; i++) {
        if (strcmp(a->opt[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int ctl_in(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void ctl_usage(FILE *f)
{
    (void)fprintf(f, "usage: torii ctl [--url URL] [--token TOKEN | --token-file FILE] COMMAND "
                     "...\ncommands:\n");
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
        (void)fprintf(f, "  %s\n", ctl_cmds[i].usage);
    }
    (void)fprintf(f, "environment: TORII_ADMIN_URL, TORII_ADMIN_TOKEN, TORII_ADMIN_TOKEN_FILE\n"
                     "exit codes: 0 ok, 1 usage, 2 not found, 3 authentication/scope refused, "
                     "4 conflict or other API error, 5 cannot connect\n");
}

/* One "--name[=value]" at argv[*i] into a (the value may be the next word). */
static int ctl_parse_opt(const struct ctl_cmd *cmd, int argc, char **argv, int *i,
                         struct ctl_args *a, FILE *err)
{
    char *arg = argv[*i] + 2;
    char *eq = strchr(arg, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    struct ctl_opt *o = &a->opt[a->n_opt];

    for (size_t k = 0; k < 3; k++) {
        const char *const *list = k == 0 ? ctl_global_v : k == 1 ? cmd->values : cmd->flags;
        for (size_t j = 0; list[j] != NULL; j++) {
            if (strlen(list[j]) != nlen || strncmp(list[j], arg, nlen) != 0) {
                continue;
            }
            o->name = list[j];
            if (k == 2) {
                if (eq != NULL) {
                    (void)fprintf(err, "torii ctl %s: --%s takes no value\n", cmd->name, o->name);
                    return TORII_CTL_EXIT_USAGE;
                }
            } else if (eq != NULL) {
                o->value = eq + 1;
            } else if (*i + 1 < argc) {
                o->value = argv[++*i];
            } else {
                (void)fprintf(err, "torii ctl %s: --%s needs a value\n", cmd->name, o->name);
                return TORII_CTL_EXIT_USAGE;
            }
            a->n_opt++;
            return TORII_CTL_EXIT_OK;
        }
    }
    (void)fprintf(err, "torii ctl %s: unknown option '%s'\n", cmd->name, argv[*i]);
    return TORII_CTL_EXIT_USAGE;
}

static int ctl_parse(const struct ctl_cmd *cmd, int argc, char **argv, struct ctl_args *a,
                     FILE *err)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        if (a->n_opt == CTL_MAX_ARGS || a->n_pos == CTL_MAX_ARGS) {
            (void)fprintf(err, "torii ctl %s: more than %d options or words\n", cmd->name,
                          CTL_MAX_ARGS);
            return TORII_CTL_EXIT_USAGE;
        }
        if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') {
            if (ctl_parse_opt(cmd, argc, argv, &i, a, err) != TORII_CTL_EXIT_OK) {
                return TORII_CTL_EXIT_USAGE;
            }
        } else {
            a->pos[a->n_pos++] = argv[i];
        }
    }
    if (a->n_pos < cmd->min_pos || a->n_pos > cmd->max_pos) {
        (void)fprintf(err, "usage: torii ctl %s\n", cmd->usage);
        return TORII_CTL_EXIT_USAGE;
    }
    return TORII_CTL_EXIT_OK;
}

/* The token: --token, else --token-file, else TORII_ADMIN_TOKEN, else TORII_ADMIN_TOKEN_FILE. */
static int ctl_token(struct ctl *c, const struct ctl_args *a)
{
    const char *t = ctl_arg(a, "token");
    const char *file = ctl_arg(a, "token-file");
    char *buf = NULL;
    size_t len = 0;

    if (t == NULL && file == NULL) {
        /* NOLINTBEGIN(concurrency-mt-unsafe): single-threaded, never calls setenv */
        t = getenv("TORII_ADMIN_TOKEN");
        file = t == NULL ? getenv("TORII_ADMIN_TOKEN_FILE") : NULL;
        /* NOLINTEND(concurrency-mt-unsafe) */
    }
    if (t != NULL) {
        c->token = torii_xstrdup(t);
        return TORII_CTL_EXIT_OK;
    }
    if (file == NULL) {
        return TORII_CTL_EXIT_OK; /* the API answers 401, exit 3 */
    }
    if (ctl_read_file(c, file, &buf, &len) != TORII_CTL_EXIT_OK) {
        return TORII_CTL_EXIT_USAGE;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) {
        buf[--len] = '\0';
    }
    c->token = torii_xstrndup(buf, len);
    torii_secure_free(buf, len + 1);
    return TORII_CTL_EXIT_OK;
}

static int ctl_setup(struct ctl *c, const struct ctl_args *a)
{
    const char *url = ctl_arg(a, "url");
    size_t n = 0;

    if (url == NULL) {
        /* NOLINTNEXTLINE(concurrency-mt-unsafe): single-threaded, never calls setenv */
        url = getenv("TORII_ADMIN_URL");
    }
    c->url = torii_xstrdup(url != NULL && url[0] != '\0' ? url : CTL_DEFAULT_URL);
    n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/') {
        c->url[--n] = '\0';
    }
    if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0) {
        (void)fprintf(c->err, "torii ctl: admin URL '%s' must start with http:// or https://\n",
                      c->url);
        return TORII_CTL_EXIT_USAGE;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        (void)fprintf(c->err, "torii ctl: cannot initialize libcurl\n");
        return TORII_CTL_EXIT_CONNECT;
    }
    return ctl_token(c, a);
}

static void ctl_free(struct ctl *c)
{
    if (c->token != NULL) {
        torii_secure_free(c->token, strlen(c->token));
    }
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
    }
    free(c->url);
}

/* The index of the command word: options before it are globals ("--url U" or "--url=U"). */
static int ctl_command_at(int argc, char **argv)
{
    int at = 1;

    while (at < argc && strncmp(argv[at], "--", 2) == 0 && strcmp(argv[at], "--help") != 0) {
        at += strchr(argv[at], '=') == NULL && ctl_in(ctl_global_v, argv[at] + 2) ? 2 : 1;
    }
    return at;
}

static const struct ctl_cmd *ctl_find(const char *name)
{
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
        if (strcmp(ctl_cmds[i].name, name) == 0) {
            return &ctl_cmds[i];
        }
    }
    return NULL;
}

static int ctl_run(const struct ctl_cmd *cmd, const struct ctl_args *a, FILE *out, FILE *err)
{
    struct ctl c = {.out = out, .err = err};
    int rc = TORII_CTL_EXIT_OK;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        (void)fprintf(err, "torii ctl: cannot initialize libcurl\n");
        return TORII_CTL_EXIT_CONNECT;
    }
    rc = ctl_setup(&c, a);
    if (rc == TORII_CTL_EXIT_OK) {
        rc = cmd->run(&c, a);
    }
    ctl_free(&c);
    curl_global_cleanup();
    return rc;
}

int torii_ctl_main(int argc, char **argv, FILE *out, FILE *err)
{
    struct ctl_args a;
    const struct ctl_cmd *cmd = NULL;
    char **rest = NULL;
    int at = ctl_command_at(argc, argv);
    int n = 0;
    int rc = TORII_CTL_EXIT_USAGE;

    if (at < argc && (strcmp(argv[at], "help") == 0 || strcmp(argv[at], "--help") == 0)) {
        ctl_usage(out);
        return TORII_CTL_EXIT_OK;
    }
    cmd = at < argc ? ctl_find(argv[at]) : NULL;
    if (cmd == NULL) {
        if (at < argc) {
            (void)fprintf(err, "torii ctl: unknown command '%s'\n", argv[at]);
        }
        ctl_usage(err);
        return TORII_CTL_EXIT_USAGE;
    }
    /* the globals before the command and the command's own words, without the command */
    rest = torii_xcalloc((size_t)argc, sizeof(*rest));
    for (int i = 1; i < argc; i++) {
        if (i != at) {
            rest[n++] = argv[i];
        }
    }
    if (ctl_parse(cmd, n, rest, &a, err) == TORII_CTL_EXIT_OK) {
        rc = ctl_run(cmd, &a, out, err);
    }
    free(rest);
    return rc;
}
